// The seed's callbacks: each fires when it should, with the message concerned, and
// every return code does what it says to the connection.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

struct Ev {
  smtpbulk_event_kind_t kind;
  int connection, error;
  uint64_t id;
  std::string line;
};

// Records every event; decide() picks the return code (default 1).
struct Recorder {
  std::mutex mu;
  std::vector<Ev> evs;
  std::function<int(const smtpbulk_event_t*)> decide;
  smtpbulk_callbacks_t cbs{};

  Recorder() {
    cbs.struct_size = sizeof(cbs);
    cbs.connect_pass = cbs.connect_fail = cbs.reconnect_pass = cbs.reconnect_fail = cb;
    cbs.pass = cbs.fail = cbs.hang = cbs.global_hang = cbs.read = cbs.complete = cb;
    cbs.arg = this;
  }
  static int cb(const smtpbulk_event_t* ev, void* arg) {
    auto* r = static_cast<Recorder*>(arg);
    std::function<int(const smtpbulk_event_t*)> d;
    {
      std::lock_guard<std::mutex> g(r->mu);
      r->evs.push_back({ev->kind, ev->connection, ev->error, ev->message_id,
                        ev->line ? std::string(ev->line, ev->line_len) : std::string()});
      d = r->decide;
    }
    return d ? d(ev) : SMTPBULK_CB_DEFAULT;
  }
  size_t count(smtpbulk_event_kind_t k, int conn = -2) {
    std::lock_guard<std::mutex> g(mu);
    size_t n = 0;
    for (auto& e : evs) n += e.kind == k && (conn == -2 || e.connection == conn);
    return n;
  }
  std::vector<Ev> of(smtpbulk_event_kind_t k) {
    std::lock_guard<std::mutex> g(mu);
    std::vector<Ev> v;
    for (auto& e : evs)
      if (e.kind == k) v.push_back(e);
    return v;
  }
};

void wait_for(const std::function<bool()>& f, int ms = 5000) {
  for (int i = 0; i < ms / 10 && !f(); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace

TEST(Callbacks, EventsFireWithTheMessageConcerned) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.find("bad") != std::string::npos ? "550 5.1.1 unknown\r\n" : "";
  };
  ScriptedPeer peer(s);
  Recorder rec;
  {
    TestEngine e(peer.port(), 1);
    e.opts.callbacks = &rec.cbs;
    ASSERT_EQ(e.start(), 0);
    uint64_t good = e.send({"ok@x.test"}, "hi\r\n");
    uint64_t bad = e.send({"bad@x.test"}, "hi\r\n");
    ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
    wait_for([&] { return rec.count(SMTPBULK_EV_COMPLETE) > 0; });
    EXPECT_EQ(rec.count(SMTPBULK_EV_CONNECT_PASS, 0), 1u);
    auto pass = rec.of(SMTPBULK_EV_PASS);
    ASSERT_EQ(pass.size(), 1u);
    EXPECT_EQ(pass[0].id, good);
    EXPECT_EQ(pass[0].connection, 0);
    auto fail = rec.of(SMTPBULK_EV_FAIL);
    ASSERT_EQ(fail.size(), 1u);
    EXPECT_EQ(fail[0].id, bad);
    EXPECT_EQ(fail[0].error, SMTPBULK_ESERVER);
    EXPECT_GE(rec.count(SMTPBULK_EV_COMPLETE), 1u);
    // read: every reply line, whole: the greeting, each EHLO line, the 550.
    auto reads = rec.of(SMTPBULK_EV_READ);
    ASSERT_FALSE(reads.empty());
    EXPECT_EQ(reads[0].line, "220 peer.test ESMTP scripted");
    bool saw550 = false, sawEhloLine = false;
    for (auto& r : reads) {
      saw550 |= r.line == "550 5.1.1 unknown";
      sawEhloLine |= r.line == "250-PIPELINING";
    }
    EXPECT_TRUE(saw550);
    EXPECT_TRUE(sawEhloLine);
  }
  EXPECT_EQ(rec.count(SMTPBULK_EV_CONNECT_FAIL), 0u);
}

TEST(Callbacks, ConnectFailAndRemoveStopsTheRetries) {
  // Nothing listens: connect_fail fires; 101 removes the connection at once instead
  // of the retry_fail attempts, so the host is down and the message fails.
  uint16_t port = free_port();
  Recorder rec;
  rec.decide = [](const smtpbulk_event_t* ev) {
    return ev->kind == SMTPBULK_EV_CONNECT_FAIL ? SMTPBULK_CB_REMOVE : SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(port, 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.retry_fail = 5;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_EHOSTDOWN);
  EXPECT_EQ(rec.count(SMTPBULK_EV_CONNECT_FAIL), 1u);
  EXPECT_EQ(rec.of(SMTPBULK_EV_CONNECT_FAIL)[0].error, -ECONNREFUSED);
}

TEST(Callbacks, ConnectFailDefaultRetriesUpToRetryFail) {
  uint16_t port = free_port();
  Recorder rec;
  TestEngine e(port, 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.retry_fail = 3;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(rec.count(SMTPBULK_EV_CONNECT_FAIL), 3u);
}

TEST(Callbacks, RemoveFromConnectPassSendsEverythingThroughTheOther) {
  PeerScript s;
  ScriptedPeer peer(s);
  Recorder rec;
  rec.decide = [](const smtpbulk_event_t* ev) {
    return ev->kind == SMTPBULK_EV_CONNECT_PASS && ev->connection == 0 ? SMTPBULK_CB_REMOVE
                                                                         : SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(peer.port(), 2);
  e.opts.callbacks = &rec.cbs;
  ASSERT_EQ(e.start(), 0);
  wait_for([&] { return rec.count(SMTPBULK_EV_CONNECT_PASS) == 2; });
  std::vector<uint64_t> ids;
  for (int i = 0; i < 20; i++) ids.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  for (uint64_t id : ids) {
    EXPECT_EQ(e.results.get(id).status, SMTPBULK_DELIVERED);
    EXPECT_EQ(e.results.get(id).connection, 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // reconnect_ms is 10
  EXPECT_EQ(peer.connections(), 2);  // connection 0 said QUIT and never came back
  EXPECT_EQ(rec.count(SMTPBULK_EV_RECONNECT_PASS), 0u);
}

TEST(Callbacks, PauseTakesNoNewMessagesUntilTheQueueIsEmpty) {
  // Every message takes the peer 10 ms, so the queue stays full for a while. Once the
  // test has queued everything it arms the pause: 104 from connection 0's next pass.
  // From then on connection 0 takes nothing while the queue holds messages; once the
  // queue is empty it takes work again.
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return "";
  };
  ScriptedPeer peer(s);
  Recorder rec;
  std::atomic<bool> armed{false};
  std::atomic<int> paused{0}, after_pause{0};
  rec.decide = [&](const smtpbulk_event_t* ev) {
    if (ev->kind != SMTPBULK_EV_PASS || ev->connection != 0) return (int)SMTPBULK_CB_DEFAULT;
    if (paused.load()) after_pause++;
    if (armed && paused++ == 0) return (int)SMTPBULK_CB_PAUSE;
    return (int)SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(peer.port(), 2);
  e.opts.callbacks = &rec.cbs;
  e.opts.pipeline = 0;  // one message at a time per connection
  ASSERT_EQ(e.start(), 0);
  wait_for([&] { return rec.count(SMTPBULK_EV_CONNECT_PASS) == 2; });
  for (int i = 0; i < 40; i++) e.send({"r@x.test"}, "hi\r\n");
  armed = true;
  ASSERT_EQ(smtpbulk_drain(e.sb, 20000), 0);
  EXPECT_EQ(paused.load(), 1);
  EXPECT_EQ(after_pause.load(), 0);  // nothing while the queue held messages
  EXPECT_EQ(peer.connections(), 2);  // it stayed connected
  // The queue ran empty: connection 0 is back (workers look every 50 ms while one of
  // their connections is parked).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::vector<uint64_t> second;
  for (int i = 0; i < 20; i++) second.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_EQ(smtpbulk_drain(e.sb, 20000), 0);
  size_t back = 0;
  for (uint64_t id : second) back += e.results.get(id).connection == 0;
  EXPECT_GT(back, 0u);
}

class ReconnectAtEndTest : public ::testing::TestWithParam<int> {};

TEST_P(ReconnectAtEndTest, QuitsThenReconnectsWhenTheQueueIsEmpty) {
  const int code = GetParam();  // 102 or 103
  PeerScript s;
  ScriptedPeer peer(s);
  Recorder rec;
  std::atomic<int> once{0};
  rec.decide = [&](const smtpbulk_event_t* ev) {
    if (ev->kind == SMTPBULK_EV_PASS && ev->connection == 0 && once++ == 0) return code;
    return (int)SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(peer.port(), 2);
  e.opts.callbacks = &rec.cbs;
  e.opts.pipeline = 0;
  ASSERT_EQ(e.start(), 0);
  wait_for([&] { return rec.count(SMTPBULK_EV_CONNECT_PASS) == 2; });
  for (int i = 0; i < 30; i++) e.send({"r@x.test"}, "hi\r\n");
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 30u);
  wait_for([&] { return rec.count(SMTPBULK_EV_RECONNECT_PASS, 0) == 1; });
  EXPECT_EQ(rec.count(SMTPBULK_EV_RECONNECT_PASS, 0), 1u);
  EXPECT_EQ(peer.connections(), 3);
  auto cmds = peer.commands();
  EXPECT_EQ(std::count(cmds.begin(), cmds.end(), "QUIT"), 1);
}

INSTANTIATE_TEST_SUITE_P(Codes, ReconnectAtEndTest, ::testing::Values(102, 103));

class ReconnectNowTest : public ::testing::TestWithParam<int> {};

TEST_P(ReconnectNowTest, EndsAtOnceAndWhatWasInFlightGoesAgainFree) {
  const int code = GetParam();  // 202 or 203
  PeerScript s;
  ScriptedPeer peer(s);
  Recorder rec;
  std::atomic<int> once{0};
  rec.decide = [&](const smtpbulk_event_t* ev) {
    if (ev->kind == SMTPBULK_EV_PASS && once++ == 0) return code;
    return (int)SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(peer.port(), 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.max_attempts = 1;  // a charged retry would fail the message
  e.opts.reconnect_ms = 60000;  // "now" must not wait for Sleep.Fail
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 20; i++) e.send({"r@x.test"}, "hi\r\n");
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 20u);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_EQ(peer.connections(), 2);
  EXPECT_EQ(rec.count(SMTPBULK_EV_RECONNECT_PASS), 1u);
}

INSTANTIATE_TEST_SUITE_P(Codes, ReconnectNowTest, ::testing::Values(202, 203));

TEST(Callbacks, DefaultCodeChangesNothing) {
  PeerScript s;
  ScriptedPeer peer(s);
  Recorder rec;
  rec.decide = [](const smtpbulk_event_t*) { return (int)SMTPBULK_CB_DEFAULT; };
  TestEngine e(peer.port(), 2);
  e.opts.callbacks = &rec.cbs;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 50; i++) e.send({"r@x.test"}, "hi\r\n");
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 50u);
  EXPECT_EQ(rec.count(SMTPBULK_EV_PASS), 50u);
  EXPECT_EQ(peer.connections(), 2);
}

TEST(Callbacks, HangFiresForEachMessageInFlight) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_data = [&](int, const std::string&) -> std::string { return n++ == 0 ? "HANG" : ""; };
  ScriptedPeer peer(s);
  Recorder rec;
  TestEngine e(peer.port(), 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.timeout_dot_ms = 200;  // only the final reply's wait is timed this short
  e.opts.watchdog_tick_ms = 20;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"r@x.test"}, "hi\r\n");
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);  // on the reconnection
  auto hangs = rec.of(SMTPBULK_EV_HANG);
  ASSERT_EQ(hangs.size(), 1u);
  EXPECT_EQ(hangs[0].id, id);
  EXPECT_EQ(hangs[0].error, SMTPBULK_ETIMEDOUT);
  EXPECT_EQ(rec.count(SMTPBULK_EV_RECONNECT_PASS), 1u);
}

TEST(Callbacks, ReconnectFailFiresAfterTheConnectionWasUp) {
  // The first connection works and is then closed by the server; later attempts are
  // refused (the peer is gone): reconnect_fail, not connect_fail.
  auto peer = std::make_unique<ScriptedPeer>(PeerScript{});
  uint16_t port = peer->port();
  Recorder rec;
  TestEngine e(port, 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  wait_for([&] { return rec.count(SMTPBULK_EV_CONNECT_PASS) == 1; });
  peer.reset();  // closes the connection and the listener
  wait_for([&] { return rec.count(SMTPBULK_EV_RECONNECT_FAIL) >= 2; });
  EXPECT_EQ(rec.count(SMTPBULK_EV_RECONNECT_FAIL), 2u);
  EXPECT_EQ(rec.count(SMTPBULK_EV_CONNECT_FAIL), 0u);
}

TEST(Callbacks, GlobalHangFires) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.rfind("MAIL", 0) == 0 ? "HANG" : "";
  };
  ScriptedPeer peer(s);
  Recorder rec;
  TestEngine e(peer.port(), 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.global_timeout_ms = 200;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_global_hang = 1;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_TIMED_OUT);
  EXPECT_EQ(rec.count(SMTPBULK_EV_GLOBAL_HANG), 2u);
  EXPECT_EQ(rec.of(SMTPBULK_EV_GLOBAL_HANG)[0].connection, -1);
}

TEST(Callbacks, TooSmallStructRefused) {
  Recorder rec;
  rec.cbs.struct_size = 8;
  TestEngine e(free_port(), 1);
  e.opts.callbacks = &rec.cbs;
  EXPECT_EQ(e.start(), -EINVAL);
}

TEST(Callbacks, ParkingTheOnlyConnectionDoesNotStrandTheQueue) {
  // 102 from the host's only connection while messages wait: nobody else can take
  // them, so "the end of the batch" cannot wait for the queue to empty. The connection
  // comes back at once and every message is delivered.
  PeerScript s;
  ScriptedPeer peer(s);
  Recorder rec;
  std::atomic<int> once{0};
  rec.decide = [&](const smtpbulk_event_t* ev) {
    if (ev->kind == SMTPBULK_EV_PASS && once++ == 0) return (int)SMTPBULK_CB_REMOVE_RECONNECT;
    return (int)SMTPBULK_CB_DEFAULT;
  };
  TestEngine e(peer.port(), 1);
  e.opts.callbacks = &rec.cbs;
  e.opts.pipeline = 0;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 10; i++) e.send({"r@x.test"}, "hi\r\n");
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0) << e.results.total() << " results";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 10u);
  EXPECT_EQ(peer.connections(), 2);
}
