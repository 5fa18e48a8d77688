// The watchdog's timeouts and the retry policies: hangs, global hangs, 4xx retries
// with backoff, 421. Short timeouts here; the defaults are the seed's (60 s, 120 s).
#include <gtest/gtest.h>

#include <atomic>

#include <chrono>
#include <mutex>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

extern "C" {
#include "sink_server.h"
}

using namespace sbtest;

namespace {

smtpbulk_counters_t counters(smtpbulk_t* sb) {
  smtpbulk_counters_t c{};
  smtpbulk_get_counters(sb, &c);
  return c;
}

bool wait_connections(ScriptedPeer& peer, int n) {
  return wait_until([&] { return peer.connections() >= n; });
}

}  // namespace

class WatchdogStalledTest : public ::testing::TestWithParam<unsigned> {};

// One connection never answers the first final dot. With the timeout, the watchdog
// ends it and what it held is retried: every message is delivered, the stuck ones on their
// second attempt.
TEST_P(WatchdogStalledTest, StuckMessagesRescued) {
  const unsigned mode = GetParam();
  PeerScript s;
  // The first body to arrive, on whichever connection got it, is never answered: with
  // "connection 0" instead, that connection might get no message at all.
  std::atomic<int> bodies{0};
  s.on_data = [&](int, const std::string&) -> std::string { return bodies++ == 0 ? "HANG" : ""; };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.pipeline = mode;
  // The dot's own timeout: a slow start (sanitizers) cannot look like a hang.
  e.opts.timeout_dot_ms = 300;
  e.opts.watchdog_tick_ms = 20;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(wait_connections(peer, 2));
  std::vector<uint64_t> ids;
  for (int i = 0; i < 30; i++) ids.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0) << "only " << e.results.total() << " results";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 30u);
  EXPECT_EQ(e.results.duplicates(), 0u);
  size_t retried = 0;
  for (uint64_t id : ids) retried += e.results.get(id).attempts == 2;
  EXPECT_GE(retried, 1u);
  EXPECT_GE(counters(e.sb).hangs, 1u);
  EXPECT_EQ(counters(e.sb).timed_out, 0u);
}

INSTANTIATE_TEST_SUITE_P(Modes, WatchdogStalledTest, ::testing::Values(0u, 1u, 2u));

TEST(Watchdog, HangRetriesUsedUpEndTimedOut) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string { return "HANG"; };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_dot_ms = 200;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_hang = 1;  // the seed's default: one more try after a hang
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_TIMED_OUT);
  EXPECT_EQ(r.error, SMTPBULK_ETIMEDOUT);
  EXPECT_EQ(r.attempts, 2u);
  // The peer records a body on its own thread, which may not have run yet.
  ASSERT_TRUE(wait_until([&] { return peer.bodies().size() >= 2; }));
  EXPECT_EQ(peer.bodies().size(), 2u);
  smtpbulk_counters_t c = counters(e.sb);
  EXPECT_EQ(c.timed_out, 1u);
  EXPECT_EQ(c.hangs, 2u);
  EXPECT_GE(c.reconnects, 1u);
}

TEST(Watchdog, SilentServerTimesOutAtTheGreetingAndTheHostGivesUp) {
  PeerScript s;
  s.greeting = "HANG";  // accepts, never greets
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_ms = 150;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_EHOSTDOWN);
  // Counted by the engine: the peer's own count may lag (the kernel completes a
  // connection before the peer's thread accepts it).
  EXPECT_EQ(counters(e.sb).connect_fails, 2u);
  EXPECT_EQ(counters(e.sb).hangs, 2u);
}

TEST(Watchdog, GlobalHangReconnectsThenGivesUp) {
  // Every MAIL goes unanswered; the per-connection timeout is far off, so only the
  // global one can notice. One global hang is survived (everything reconnects and the
  // messages go again, free of charge); the second ends them TIMED_OUT.
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.rfind("MAIL", 0) == 0 ? "HANG" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.timeout_ms = 60000;
  e.opts.global_timeout_ms = 300;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_global_hang = 1;
  ASSERT_EQ(e.start(), 0);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; i++) ids.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_TIMED_OUT], 3u);
  for (uint64_t id : ids) EXPECT_EQ(e.results.get(id).error, SMTPBULK_ETIMEDOUT);
  smtpbulk_counters_t c = counters(e.sb);
  EXPECT_EQ(c.global_hangs, 2u);
  EXPECT_EQ(c.hangs, 0u);
  // Both connections started again after the first: a worker that was not running may
  // make its reconnection only after the second verdict, so wait for it.
  EXPECT_TRUE(wait_connections(peer, 4)) << peer.connections() << " connections";
}

TEST(Watchdog, IdleEngineIsNotAGlobalHang) {
  PeerScript s;
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.global_timeout_ms = 500;
  e.opts.watchdog_tick_ms = 20;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  // Idle for more than twice global_timeout_ms: the time the rule is about, not a
  // wait for an event (a slow run only makes the idle time longer).
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(counters(e.sb).global_hangs, 0u);
  EXPECT_EQ(peer.connections(), 1);
}

TEST(Retries, TempFailRetriedAfterAPauseThenDelivered) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_data = [&](int, const std::string&) -> std::string {
    return n++ < 2 ? "451 4.3.0 try later\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 3;
  e.opts.defer_ms = 60;
  ASSERT_EQ(e.start(), 0);
  auto t0 = std::chrono::steady_clock::now();
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_GE(ms, 60 + 120);  // 60 ms, then doubled: a lower bound only
  smtpbulk_counters_t c = counters(e.sb);
  EXPECT_EQ(c.deferred, 2u);
  EXPECT_EQ(c.deferred_now, 0u);
  EXPECT_EQ(peer.connections(), 1);  // a 4xx is an answer: the connection stays
}

TEST(Retries, TempFailUsedUpEndsFailedWithTheLastReply) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.rfind("RCPT", 0) == 0 ? "450 4.2.0 mailbox busy\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 3;
  e.opts.defer_ms = 10;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_ESERVER);
  EXPECT_EQ(r.code, 450);
  EXPECT_EQ(r.text, "mailbox busy");
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(peer.bodies().size(), 0u);
}

TEST(Retries, PermanentRefusalIsNotRetried) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string { return "554 5.7.1 no\r\n"; };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 3;
  e.opts.defer_ms = 10;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_REJECTED);
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(counters(e.sb).deferred, 0u);
}

TEST(Retries, Reply421IsNotChargedAsAnAttempt) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (c.rfind("MAIL", 0) == 0 && n++ < 2) return "421 4.3.2 shutting down\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 1;  // a charged retry would be one too many
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_GE(peer.connections(), 3);
}

TEST(Retries, Endless421EndsFailed) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.rfind("MAIL", 0) == 0 ? "421 4.3.0 shutting down\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 2;
  e.opts.retry_fail = 3;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_ESHUTDOWN);
  EXPECT_EQ(r.attempts, 3u + 2u);  // three free 421s, then the two charged attempts
}

TEST(Retries, DestroyCancelsMessagesWaitingForTheirRetry) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string { return "451 4.3.0 later\r\n"; };
  ScriptedPeer peer(s);
  {
    TestEngine e(peer.port(), 1);
    e.opts.defer_ms = 60000;
    ASSERT_EQ(e.start(), 0);
    e.send({"r@x.test"}, "hi\r\n");
    ASSERT_TRUE(wait_until([&] { return counters(e.sb).deferred_now != 0; }));
    ASSERT_EQ(counters(e.sb).deferred_now, 1u);
    EXPECT_EQ(e.results.total(), 0u);
    smtpbulk_destroy(e.sb);
    e.sb = nullptr;
    EXPECT_EQ(e.results.total(), 1u);
    EXPECT_EQ(e.results.by_status()[SMTPBULK_CANCELLED], 1u);
  }
}

// The soak: 50,000 messages against our sink that temp-fails 10% of RCPTs, holds 1% of
// replies past the timeout and closes connections (with 421) every 100 messages.
// Every message ends with exactly one result, and the counts add up with the sink's.
TEST(Soak, FiftyThousandMessagesThroughFaults) {
  const char* b = std::getenv("SMTPBULK_TEST_BACKEND");
  if (b && !strcmp(b, "io_uring_plain")) GTEST_SKIP() << "the receive path is not the point";
  sink_faults f{};
  f.tempfail_rcpt = 10;
  f.delay_pct = 1;
  f.delay_ms = 250;
  f.close_after = 100;
  sink_options so{};
  so.host = "127.0.0.1";
  so.threads = 2;
  so.backend = test_backend();
  so.cfg.name = "sink.test";
  so.cfg.size_max = 10000000;
  so.cfg.faults = f;
  sink_server* srv = nullptr;
  const char* why = nullptr;
  ASSERT_EQ(sink_server_start(&so, &srv, &why), 0) << why;
  {
    TestEngine e(sink_server_port(srv), 32);
    e.opts.timeout_ms = 100;  // shorter than the sink's delay: those connections hang
    e.opts.watchdog_tick_ms = 20;
    e.opts.retry_hang = SMTPBULK_UNLIMITED;
    e.opts.max_attempts = 4;
    e.opts.defer_ms = 5;
    e.opts.queue_bound = 5000;
    ASSERT_EQ(e.start(), 0);
    const std::string body = "Subject: soak\r\n\r\n" + std::string(300, 'x') + "\r\n";
    const char* rc[] = {"a@example.com"};
    const int kMessages = 50000;
    for (int i = 0; i < kMessages; i++) {
      smtpbulk_message_t m = make_msg(rc, 1, body.data(), body.size(), SMTPBULK_MSG_BORROW_BODY);
      ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
    }
    ASSERT_EQ(smtpbulk_drain(e.sb, 300000), 0) << e.results.total() << " results";
    EXPECT_EQ(e.results.total(), (size_t)kMessages);
    EXPECT_EQ(e.results.duplicates(), 0u);
    auto st = e.results.by_status();
    EXPECT_EQ(st[SMTPBULK_DELIVERED] + st[SMTPBULK_FAILED] + st[SMTPBULK_TIMED_OUT],
              (size_t)kMessages);
    smtpbulk_counters_t c = counters(e.sb);
    EXPECT_GT(c.hangs, 0u);
    EXPECT_GT(c.deferred, 0u);
    EXPECT_GT(c.reconnects, 0u);
    EXPECT_EQ(c.completed, (uint64_t)kMessages);
    // 0.1^4 of messages fail four times in a row: a handful at most.
    EXPECT_LT(st[SMTPBULK_FAILED], 100u);
    sink_totals t;
    sink_server_totals(srv, &t);
    // A hung message may have been accepted by the sink after we gave up on the
    // connection (its reply was held back), then sent again: the sink counts at least
    // what we call delivered, and the surplus is bounded by the hangs.
    EXPECT_GE(t.messages, st[SMTPBULK_DELIVERED]);
    EXPECT_LE(t.messages, st[SMTPBULK_DELIVERED] + 16 * c.hangs);  // window <= 16
  }
  sink_server_stop(srv);
}

TEST(Watchdog, PhaseTimeoutOverridesTheGeneralOne) {
  // timeout_ms is far off; only RCPT's own timeout can end this hang.
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.rfind("RCPT", 0) == 0 ? "HANG" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_ms = 60000;
  e.opts.timeout_rcpt_ms = 200;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_hang = 1;
  ASSERT_EQ(e.start(), 0);
  auto t0 = std::chrono::steady_clock::now();
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"), 10000);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.status, SMTPBULK_TIMED_OUT);
  EXPECT_LT(ms, 30000);  // far below timeout_ms: the phase's timeout decided
  EXPECT_EQ(counters(e.sb).hangs, 2u);
}

TEST(Watchdog, OtherPhasesKeepTheGeneralTimeout) {
  // A 200 ms RCPT timeout does not cut short a slow EHLO reply (400 ms): that phase
  // keeps the general 60 s.
  PeerScript slow;
  slow.on_cmd = [](int, const std::string& c) -> std::string {
    if (c.rfind("EHLO", 0) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(400));
    return "";
  };
  ScriptedPeer peer(slow);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_rcpt_ms = 200;
  e.opts.watchdog_tick_ms = 20;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(counters(e.sb).hangs, 0u);
}

TEST(Watchdog, Rfc5321PresetFillsThePhasesNotSet) {
  PeerScript s;
  ScriptedPeer peer(s);
  LogCapture log;
  TestEngine e(peer.port(), 1);
  e.opts.rfc5321_timeouts = 1;
  e.opts.timeout_rcpt_ms = 1234;  // set: kept
  e.opts.debug = 5;
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
  ASSERT_EQ(e.start(), 0);
  smtpbulk_destroy(e.sb);
  e.sb = nullptr;
  std::string text = log.get();
  EXPECT_NE(text.find("greeting 300000, mail 300000, rcpt 1234, data 120000, block "
                          "180000, dot 600000"),
            std::string::npos)
      << text;
}
