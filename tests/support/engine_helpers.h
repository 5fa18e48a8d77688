// Helpers for tests that run the whole engine: the backend under test (from the
// environment, so ctest runs every engine test on io_uring and on epoll), a thread-safe
// result collector that notices duplicate results, and a one-call submit.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "smtpbulk.h"

namespace sbtest {

// How long a test waits for an event that must come. Far longer than the event takes
// (milliseconds): it only bounds a test whose event never comes, and leaves room for a
// loaded machine, where a worker thread may not run for the better part of a second.
constexpr int kEventMs = 10000;

// Waits until pred() holds or timeout_ms pass; true when it held. For events the test
// has no other way to hear of (counters, another thread's state): it polls every 2 ms.
inline bool wait_until(const std::function<bool()>& pred, int timeout_ms = kEventMs) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// A gate that threads (a scripted peer's, a callback's) wait at until the test, or
// another thread, opens it; once open it stays open. Every wait is bounded, so a peer
// held at a gate that never opens still lets the test end (and fail).
class Gate {
 public:
  void open() {
    std::lock_guard<std::mutex> g(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool is_open() {
    std::lock_guard<std::mutex> g(mu_);
    return open_;
  }
  // True when the gate was (or became) open within timeout_ms.
  bool wait(int timeout_ms = kEventMs) {
    std::unique_lock<std::mutex> g(mu_);
    return cv_.wait_for(g, std::chrono::milliseconds(timeout_ms), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// SMTPBULK_TEST_BACKEND: io_uring (multishot receives into pooled buffers),
// io_uring_plain (a receive buffer per connection) or epoll.
inline smtpbulk_backend_t test_backend() {
  const char* b = std::getenv("SMTPBULK_TEST_BACKEND");
  if (b && !strcmp(b, "epoll")) return SMTPBULK_BACKEND_EPOLL;
  if (b && !strncmp(b, "io_uring", 8)) return SMTPBULK_BACKEND_IO_URING;
  return SMTPBULK_BACKEND_AUTO;
}

inline void apply_test_backend(smtpbulk_options_t* o) {
  const char* b = std::getenv("SMTPBULK_TEST_BACKEND");
  o->backend = test_backend();
  o->plain_recv = b && !strcmp(b, "io_uring_plain");
}

// Collects debug lines (options.on_log); declare it before the engine that logs to it.
struct LogCapture {
  std::mutex mu;
  std::string text;
  static void cb(int, const char* line, void* arg) {
    auto* l = static_cast<LogCapture*>(arg);
    std::lock_guard<std::mutex> g(l->mu);
    l->text += line;
    l->text += '\n';
  }
  std::string get() {
    std::lock_guard<std::mutex> g(mu);
    return text;
  }
};

struct Result {
  uint64_t id = 0;
  smtpbulk_status_t status = SMTPBULK_CANCELLED;
  int error = 0;
  int code = 0;
  std::string enhanced, text;
  std::vector<int> rcpt_codes;
  std::vector<std::string> rcpt_texts;
  unsigned attempts = 0;
  int host_index = -2, connection = -2;
  void* user_data = nullptr;
  smtpbulk_category_t category = SMTPBULK_CAT_OTHER;
  uint64_t latency_ns = 0;
  smtpbulk_phases_t phases{};
};

inline Result copy_result(const smtpbulk_result_t* r) {
  Result x;
  x.id = r->id;
  x.status = r->status;
  x.error = r->error;
  x.code = r->reply.code;
  x.enhanced = r->reply.enhanced;
  x.text = r->reply.text;
  for (size_t i = 0; i < r->n_rcpts; i++) {
    x.rcpt_codes.push_back(r->rcpts[i].reply.code);
    x.rcpt_texts.push_back(r->rcpts[i].reply.text);
  }
  x.attempts = r->attempts;
  x.host_index = r->host_index;
  x.connection = r->connection;
  x.user_data = r->user_data;
  x.category = r->category;
  x.latency_ns = r->latency_ns;
  x.phases = r->phases;
  return x;
}

class Collector {
 public:
  static void cb(const smtpbulk_result_t* r, void* arg) {
    static_cast<Collector*>(arg)->add(copy_result(r));
  }
  void add(Result r) {
    std::lock_guard<std::mutex> g(mu_);
    if (!by_id_.emplace(r.id, r).second) duplicates_++;
    total_++;
    cv_.notify_all();
  }
  bool wait(size_t n, int ms) {
    std::unique_lock<std::mutex> g(mu_);
    return cv_.wait_for(g, std::chrono::milliseconds(ms), [&] { return total_ >= n; });
  }
  Result get(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = by_id_.find(id);
    return it == by_id_.end() ? Result{} : it->second;
  }
  bool has(uint64_t id) {
    std::lock_guard<std::mutex> g(mu_);
    return by_id_.count(id) != 0;
  }
  size_t total() {
    std::lock_guard<std::mutex> g(mu_);
    return total_;
  }
  size_t duplicates() {
    std::lock_guard<std::mutex> g(mu_);
    return duplicates_;
  }
  std::map<int, size_t> by_error() {
    std::lock_guard<std::mutex> g(mu_);
    std::map<int, size_t> m;
    for (auto& kv : by_id_) m[kv.second.error]++;
    return m;
  }
  std::map<smtpbulk_category_t, size_t> by_category() {
    std::lock_guard<std::mutex> g(mu_);
    std::map<smtpbulk_category_t, size_t> m;
    for (auto& kv : by_id_) m[kv.second.category]++;
    return m;
  }
  std::map<smtpbulk_status_t, size_t> by_status() {
    std::lock_guard<std::mutex> g(mu_);
    std::map<smtpbulk_status_t, size_t> m;
    for (auto& kv : by_id_) m[kv.second.status]++;
    return m;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Result> by_id_;
  size_t total_ = 0, duplicates_ = 0;
};

// A message for any host, from s@x.test unless told otherwise.
// The engine's stats' totals, copied (hosts left out); zeros when it has none.
inline smtpbulk_stats_t stats_of(smtpbulk_t* sb) {
  smtpbulk_stats_t* st = nullptr;
  smtpbulk_stats_t copy{};
  if (smtpbulk_get_stats(sb, &st) == 0) {
    copy = *st;
    copy.hosts = nullptr;
    smtpbulk_stats_free(st);
  }
  return copy;
}

inline smtpbulk_message_t make_msg(const char* const* rcpts, size_t n, const void* body = "",
                                   size_t len = 0, unsigned flags = 0,
                                   const char* from = "s@x.test") {
  smtpbulk_message_t m{};
  m.struct_size = sizeof(m);
  m.from = from;
  m.rcpts = rcpts;
  m.n_rcpts = n;
  m.body = body;
  m.body_len = len;
  m.host = -1;
  m.flags = flags;
  return m;
}

// Options for one host at 127.0.0.1:port, small retry delays, the backend under test.
struct TestEngine {
  smtpbulk_options_t opts{};
  std::vector<smtpbulk_host_t> hosts;
  Collector results;
  smtpbulk_t* sb = nullptr;

  explicit TestEngine(uint16_t port, unsigned connections = 1) {
    smtpbulk_options_init(&opts);
    add_host(port, connections);
    apply_test_backend(&opts);
    opts.workers = 2;
    opts.reconnect_ms = 10;
    opts.hello = "client.test";
    opts.on_result = Collector::cb;
    opts.result_arg = &results;
  }
  void add_host(uint16_t port, unsigned connections) {
    smtpbulk_host_t h{};
    h.host = "127.0.0.1";
    h.port = port;
    h.connections = connections;
    hosts.push_back(h);
  }
  int start() {
    opts.hosts = hosts.data();
    opts.n_hosts = hosts.size();
    int rc = smtpbulk_create(&opts, &sb);
    if (rc) return rc;
    return smtpbulk_start(sb);
  }
  ~TestEngine() { smtpbulk_destroy(sb); }

  // Submit; returns the id (0 on failure, with a test failure recorded).
  uint64_t send(const std::vector<std::string>& rcpts, const std::string& body,
                const char* from = "sender@example.com", int host = -1) {
    std::vector<const char*> r;
    for (auto& s : rcpts) r.push_back(s.c_str());
    smtpbulk_message_t m = make_msg(r.data(), r.size(), body.data(), body.size(), 0, from);
    m.host = host;
    uint64_t id = 0;
    int rc = smtpbulk_submit(sb, &m, 0, &id);
    EXPECT_EQ(rc, 0) << smtpbulk_strerror(rc);
    return id;
  }
  Result wait_one(uint64_t id, int ms = 10000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!results.has(id) && std::chrono::steady_clock::now() < end)
      results.wait(results.total() + 1, 20);
    EXPECT_TRUE(results.has(id)) << "no result for message " << id;
    return results.get(id);
  }
};

}  // namespace sbtest
