// The journal (smtpbulk_send.h): lines as recorded, read back on open, a torn last line
// cut, a foreign line refused, concurrent records all kept, a flush durable before
// close (a child that flushes and dies without closing leaves its lines), and a write
// failure reported on the next record.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "smtpbulk_send.h"

namespace {

struct TmpDir {
  std::string path;
  TmpDir() {
    char t[] = "/tmp/sbjournal.XXXXXX";
    path = mkdtemp(t);
  }
  ~TmpDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::string> v;
  for (std::string l; std::getline(f, l);) v.push_back(l);
  return v;
}

// A result as the engine would hand it.
struct FakeResult {
  smtpbulk_result_t r{};
  smtpbulk_rcpt_result_t rc[2]{};
  FakeResult(smtpbulk_status_t st, int code, const char* enh, const char* text) {
    r.status = st;
    r.reply = {code, enh, text};
    r.category = code / 100 == 2 ? SMTPBULK_CAT_DELIVERED : SMTPBULK_CAT_HARD_BOUNCE;
    r.host = "127.0.0.1";
    r.attempts = 1;
    r.latency_ns = 2500000;
    rc[0] = {"a@x.test", {250, "2.1.5", "ok"}};
    rc[1] = {"b@x.test", {code / 100 == 2 ? 250 : code, enh, text}};
    r.rcpts = rc;
    r.n_rcpts = 2;
  }
};

smtpbulk_journal_entry_t entry(const char* id, const smtpbulk_result_t* r, uint64_t hash = 0) {
  smtpbulk_journal_entry_t e{};
  e.struct_size = sizeof(e);
  e.id = id;
  e.result = r;
  e.input_hash = hash;
  e.position = "in.jsonl:1";
  return e;
}

json_t* parse(const std::string& line) {
  json_error_t err;
  return json_loads(line.c_str(), 0, &err);
}

}  // namespace

TEST(Journal, RecordsReadBackOnOpen) {
  TmpDir d;
  std::string p = d.path + "/j.jsonl";
  smtpbulk_journal_t* j = nullptr;
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 50, &j, nullptr), 0);
  FakeResult ok(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok: queued as 4Dd1Xy3Hj0");
  FakeResult bad(SMTPBULK_REJECTED, 550, "5.1.1", "no such user");
  auto e1 = entry("m1", &ok.r, 0xabc);
  ASSERT_EQ(smtpbulk_journal_record(j, &e1), 0);
  auto e2 = entry("m2", &bad.r);
  ASSERT_EQ(smtpbulk_journal_record(j, &e2), 0);
  auto e3 = entry("m3", nullptr);
  e3.error = "missing field: to";
  ASSERT_EQ(smtpbulk_journal_record(j, &e3), 0);
  smtpbulk_journal_state_t st;
  ASSERT_EQ(smtpbulk_journal_lookup(j, "m2", &st), 0);  // at once, before any write
  EXPECT_EQ(st.status, SMTPBULK_REJECTED);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);

  auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), 3u);
  json_t* o = parse(lines[0]);
  ASSERT_NE(o, nullptr) << lines[0];
  EXPECT_STREQ(json_string_value(json_object_get(o, "id")), "m1");
  EXPECT_STREQ(json_string_value(json_object_get(o, "status")), "delivered");
  EXPECT_STREQ(json_string_value(json_object_get(o, "category")), "delivered");
  EXPECT_EQ(json_integer_value(json_object_get(o, "code")), 250);
  EXPECT_STREQ(json_string_value(json_object_get(o, "enhanced")), "2.0.0");
  EXPECT_STREQ(json_string_value(json_object_get(o, "queue_id")), "4Dd1Xy3Hj0");
  EXPECT_STREQ(json_string_value(json_object_get(o, "host")), "127.0.0.1");
  EXPECT_STREQ(json_string_value(json_object_get(o, "position")), "in.jsonl:1");
  EXPECT_STREQ(json_string_value(json_object_get(o, "hash")), "0000000000000abc");
  EXPECT_EQ(json_array_size(json_object_get(o, "rcpts")), 2u);
  EXPECT_DOUBLE_EQ(json_real_value(json_object_get(o, "latency_ms")), 2.5);
  json_decref(o);
  o = parse(lines[2]);
  EXPECT_STREQ(json_string_value(json_object_get(o, "status")), "bad_input");
  EXPECT_STREQ(json_string_value(json_object_get(o, "error")), "missing field: to");
  json_decref(o);

  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 50, &j, nullptr), 0);
  uint64_t read = 0, rec = 0;
  smtpbulk_journal_counts(j, &read, &rec);
  EXPECT_EQ(read, 3u);
  EXPECT_EQ(rec, 0u);
  ASSERT_EQ(smtpbulk_journal_lookup(j, "m1", &st), 0);
  EXPECT_EQ(st.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(st.input_hash, 0xabcu);
  EXPECT_EQ(st.bad_input, 0);
  ASSERT_EQ(smtpbulk_journal_lookup(j, "m3", &st), 0);
  EXPECT_EQ(st.bad_input, 1);
  EXPECT_EQ(smtpbulk_journal_lookup(j, "m4", &st), -ENOENT);
  // A later line for the same id is its verdict now (a retry of a failed message).
  FakeResult again(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok");
  auto e2b = entry("m2", &again.r);
  ASSERT_EQ(smtpbulk_journal_record(j, &e2b), 0);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 50, &j, nullptr), 0);
  ASSERT_EQ(smtpbulk_journal_lookup(j, "m2", &st), 0);
  EXPECT_EQ(st.status, SMTPBULK_DELIVERED);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
  EXPECT_EQ(lines_of(p).size(), 4u);
}

TEST(Journal, TornLastLineIsCutAndForeignLinesRefused) {
  TmpDir d;
  std::string p = d.path + "/j.jsonl";
  {
    std::ofstream f(p);
    f << "{\"id\":\"a\",\"status\":\"delivered\"}\n{\"id\":\"b\",\"stat";  // killed mid-line
  }
  smtpbulk_journal_t* j = nullptr;
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 50, &j, nullptr), 0);
  smtpbulk_journal_state_t st;
  EXPECT_EQ(smtpbulk_journal_lookup(j, "a", &st), 0);
  EXPECT_EQ(smtpbulk_journal_lookup(j, "b", &st), -ENOENT);  // not durable: sent again
  FakeResult ok(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok");
  auto e = entry("b", &ok.r);
  ASSERT_EQ(smtpbulk_journal_record(j, &e), 0);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
  auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), 2u);
  for (auto& l : lines) {
    json_t* o = parse(l);
    EXPECT_NE(o, nullptr) << l;
    json_decref(o);
  }

  std::string q = d.path + "/other.txt";
  {
    std::ofstream f(q);
    f << "{\"id\":\"a\",\"status\":\"delivered\"}\nnot json at all\n";
  }
  uint64_t bad = 0;
  EXPECT_EQ(smtpbulk_journal_open(q.c_str(), 50, &j, &bad), SMTPBULK_EJOURNAL);
  EXPECT_EQ(bad, 2u);
  EXPECT_EQ(j, nullptr);
  EXPECT_EQ(lines_of(q).size(), 2u);  // left as it was
}

TEST(Journal, ConcurrentRecordsAllKept) {
  TmpDir d;
  std::string p = d.path + "/j.jsonl";
  smtpbulk_journal_t* j = nullptr;
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 20, &j, nullptr), 0);
  FakeResult ok(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok");
  const int kThreads = 4, kEach = 5000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kEach; i++) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        auto e = entry(id.c_str(), &ok.r);
        EXPECT_EQ(smtpbulk_journal_record(j, &e), 0);
      }
    });
  for (auto& t : ts) t.join();
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
  auto lines = lines_of(p);
  ASSERT_EQ(lines.size(), (size_t)kThreads * kEach);
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 20, &j, nullptr), 0);
  smtpbulk_journal_state_t st;
  for (int t = 0; t < kThreads; t++)
    for (int i = 0; i < kEach; i += 97)
      EXPECT_EQ(smtpbulk_journal_lookup(j, (std::to_string(t) + "-" + std::to_string(i)).c_str(), &st), 0);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
}

// A process that flushes and is then killed (no close) leaves every flushed line; one
// killed without a flush leaves what the writer thread had written by then, whole lines.
TEST(Journal, FlushedLinesSurviveAKill) {
  TmpDir d;
  std::string p = d.path + "/j.jsonl";
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    smtpbulk_journal_t* j = nullptr;
    if (smtpbulk_journal_open(p.c_str(), 1000, &j, nullptr)) _exit(1);
    FakeResult ok(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok");
    for (int i = 0; i < 1000; i++) {
      std::string id = "k" + std::to_string(i);
      auto e = entry(id.c_str(), &ok.r);
      if (smtpbulk_journal_record(j, &e)) _exit(1);
    }
    if (smtpbulk_journal_flush(j)) _exit(1);
    for (int i = 1000; i < 1500; i++) {  // recorded, not flushed: may or may not be there
      std::string id = "k" + std::to_string(i);
      auto e = entry(id.c_str(), &ok.r);
      smtpbulk_journal_record(j, &e);
    }
    char c = 'x';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  close(ready[1]);
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  smtpbulk_journal_t* j = nullptr;
  ASSERT_EQ(smtpbulk_journal_open(p.c_str(), 50, &j, nullptr), 0);
  uint64_t read_n = 0;
  smtpbulk_journal_counts(j, &read_n, nullptr);
  EXPECT_GE(read_n, 1000u);
  EXPECT_LE(read_n, 1500u);
  smtpbulk_journal_state_t st;
  for (int i = 0; i < 1000; i++) EXPECT_EQ(smtpbulk_journal_lookup(j, ("k" + std::to_string(i)).c_str(), &st), 0);
  ASSERT_EQ(smtpbulk_journal_close(j), 0);
}

TEST(Journal, WriteFailureIsReported) {
  smtpbulk_journal_t* j = nullptr;
  ASSERT_EQ(smtpbulk_journal_open("/dev/full", 10, &j, nullptr), 0);
  FakeResult ok(SMTPBULK_DELIVERED, 250, "2.0.0", "Ok");
  auto e = entry("x", &ok.r);
  ASSERT_EQ(smtpbulk_journal_record(j, &e), 0);
  EXPECT_EQ(smtpbulk_journal_flush(j), -ENOSPC);
  EXPECT_EQ(smtpbulk_journal_record(j, &e), -ENOSPC);  // broken: the caller must stop
  EXPECT_EQ(smtpbulk_journal_close(j), -ENOSPC);
}

TEST(Journal, BadArguments) {
  smtpbulk_journal_t* j = nullptr;
  EXPECT_EQ(smtpbulk_journal_open(nullptr, 0, &j, nullptr), -EINVAL);
  EXPECT_EQ(smtpbulk_journal_open("/nonexistent-dir/j", 0, &j, nullptr), -ENOENT);
  EXPECT_EQ(smtpbulk_journal_record(nullptr, nullptr), -EINVAL);
  EXPECT_EQ(smtpbulk_hash64("", 0) != 0, true);
  EXPECT_NE(smtpbulk_hash64("a", 1), smtpbulk_hash64("b", 1));
}

TEST(Journal, DeferralsCountedOverRuns) {
  TmpDir d;
  std::string path = d.path + "/j.jsonl";
  FakeResult f(SMTPBULK_FAILED, 451, "4.3.0", "try later");
  for (int run = 0; run < 2; run++) {
    smtpbulk_journal_t* j = nullptr;
    ASSERT_EQ(smtpbulk_journal_open(path.c_str(), 10, &j, nullptr), 0);
    smtpbulk_journal_state_t js{};
    if (run == 1) {
      ASSERT_EQ(smtpbulk_journal_lookup(j, "m1", &js), 0);
      EXPECT_EQ(js.deferrals, 2u) << "read back from the file";
      EXPECT_EQ(js.next_attempt, 2000);
      ASSERT_EQ(smtpbulk_journal_lookup(j, "m2", &js), 0);
      EXPECT_EQ(js.deferrals, 0u);
    }
    auto e = entry("m1", &f.r);
    e.next_attempt = 1000 + 1000 * run;
    ASSERT_EQ(smtpbulk_journal_record(j, &e), 0);
    if (run == 0) {
      e.next_attempt = 2000;
      ASSERT_EQ(smtpbulk_journal_record(j, &e), 0);
      auto e2 = entry("m2", &f.r);  // given up: no next attempt
      ASSERT_EQ(smtpbulk_journal_record(j, &e2), 0);
    }
    ASSERT_EQ(smtpbulk_journal_lookup(j, "m1", &js), 0);
    EXPECT_EQ(js.deferrals, run == 0 ? 2u : 3u);
    ASSERT_EQ(smtpbulk_journal_close(j), 0);
  }
}
