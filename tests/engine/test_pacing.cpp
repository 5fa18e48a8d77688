// Pacing (engine/pacer.h) and the adaptive slow-down, against our own sink, which counts
// the messages it accepts in each second and can answer 421 4.7.0 beyond a rate, and
// against a scripted peer with throttling replies. Every message ends with one result.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "engine_helpers.h"
#include "own_sink.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

// Our sink, answering 421 4.7.0 beyond max_rate messages a second (0: never).
struct RateSink : OwnSinkServer {
  explicit RateSink(uint32_t max_rate = 0) : OwnSinkServer(with(max_rate)) {}
  static sink_options with(uint32_t max_rate) {
    sink_options o = defaults();
    o.max_rate = max_rate;
    return o;
  }
};

const std::string kBody = "Subject: paced\r\n\r\nhello\r\n";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// The numbers: 2,000 at 500/s over 8 connections and 2 workers take 4 s, and no
// second at the server holds more than rate + burst.
TEST(Pacing, TheRateHoldsOverEveryConnectionAndWorker) {
  RateSink sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 8);
  e.opts.workers = 2;
  e.opts.host_rate = {500, 1000, 10};
  ASSERT_EQ(e.start(), 0);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(2000, 30000));
  double took = seconds_since(t0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 2000u);
  EXPECT_EQ(e.results.duplicates(), 0u);
  // (2000 - burst) / 500 = 3.98 s; GCRA cannot go faster, and 10% is the margin for a
  // loaded machine's late timers.
  EXPECT_GT(took, 3.98 * 0.9 + 0.3) << "faster than the rate allows";
  EXPECT_LT(took, 3.98 * 1.1);
  uint64_t sum = 0;
  for (uint64_t n : sink.per_second()) {
    // rate + burst, and 2 for the MAILs whose way to the server crossed a second's
    // boundary (the server counts a MAIL when it arrives, the pacer when it starts).
    EXPECT_LE(n, 500u + 10u + 2u);
    sum += n;
  }
  EXPECT_EQ(sum, 2000u);
  EXPECT_GT(stats_of(e.sb).paced, 0u);
}

// A paced message waits in the engine's queue, on no connection: the connections are
// free, and the global timeout does not mistake the wait for a hang.
TEST(Pacing, PacedMessagesWaitInTheQueueAndNoGlobalHangComes) {
  RateSink sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 2);
  e.opts.host_rate = {2, 3000, 1};  // one every 1.5 s
  e.opts.global_timeout_ms = 1000;
  e.opts.timeout_ms = 1000;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 3; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(1, 10000));
  smtpbulk_counters_t c{};
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_GE(c.queued, 1u);  // still queued, not taken by a connection
  ASSERT_TRUE(e.results.wait(3, 20000));
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.global_hangs, 0u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 3u);
}

// The global rate holds over hosts that have none of their own.
TEST(Pacing, TheGlobalRateHoldsOverEveryHost) {
  RateSink sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 2);
  e.add_host(sink.port(), 2);
  e.opts.global_rate = {200, 1000, 5};
  ASSERT_EQ(e.start(), 0);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 400; i++) e.send({"r@example.com"}, kBody, "s@example.com", i % 2);
  ASSERT_TRUE(e.results.wait(400, 30000));
  EXPECT_GT(seconds_since(t0), (400.0 - 5) / 200 - 0.01);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 400u);
  for (uint64_t n : sink.per_second()) EXPECT_LE(n, 200u + 5u + 2u);
}

// A server that answers 421 4.7.0 beyond 300 messages a second: the sender slows down,
// settles below that, and delivers everything; the throttles stop once it settled.
TEST(Pacing, AThrottlingServerIsMetBelowItsLimit) {
  RateSink sink(300);
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 8);
  e.opts.workers = 2;
  e.opts.throttle_cooloff_ms = 1000;
  e.opts.breaker_failures = 3;  // a throttle is no failure: the breaker stays shut
  ASSERT_EQ(e.start(), 0);
  // About 6 s at the settled 250/s: well inside the ten quiet cool-offs (11 s)
  // after which the host would climb on and meet the limit again.
  const int kMessages = 1500;
  for (int i = 0; i < kMessages; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(kMessages / 2, 60000));
  uint64_t throttled_half = sink.totals().throttled;
  // Slowed now. (Not asked at the end: on a slow machine the send outlasts the ten
  // quiet cool-offs, after which the host climbs on and may be unpaced again.)
  EXPECT_EQ(stats_of(e.sb).hosts_slowed, 1u);
  ASSERT_TRUE(e.results.wait(kMessages, 60000));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)kMessages);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_GT(throttled_half, 0u);
  // Settled: no throttle in the second half of the send.
  EXPECT_EQ(sink.totals().throttled, throttled_half);
  smtpbulk_stats_t st = stats_of(e.sb);
  EXPECT_GE(st.slowdowns, 1u);
  EXPECT_GE(st.throttled, st.slowdowns);
  EXPECT_EQ(st.breaker_opens, 0u);
}

// Throttling replies that are no 421 (Outlook's 451 4.7.650, a text pattern of the
// caller's): the message goes again free of charge, later, and is delivered; with
// throttle_factor_pct 100 the same reply is a 4xx like any other, charged.
TEST(Pacing, ThrottlingRepliesSendTheMessageAgainFree) {
  std::atomic<int> mails{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (c.rfind("MAIL", 0) == 0) {
      int n = mails++;
      if (n == 0) return "451 4.7.650 The mail server has been temporarily rate limited\r\n";
      if (n == 1) return "450 please go slower, says the custom pattern\r\n";
    }
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  static const char* const kPatterns[] = {"go slower", nullptr};
  e.opts.throttle_patterns = kPatterns;
  e.opts.throttle_cooloff_ms = 200;
  e.opts.max_attempts = 1;  // a charged retry would fail it
  e.opts.breaker_failures = 1;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@example.com"}, kBody), 20000);
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r.attempts, 3u);
  smtpbulk_stats_t st = stats_of(e.sb);
  EXPECT_EQ(st.throttled, 2u);
  EXPECT_GE(st.slowdowns, 1u);
  EXPECT_EQ(st.breaker_opens, 0u);
  EXPECT_EQ(st.totals.deferred, 0u);  // no defer_ms wait: the pace decides
}

TEST(Pacing, WithoutAdaptationAThrottleIsA4xx) {
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return c.rfind("MAIL", 0) == 0 ? "451 4.7.650 temporarily rate limited\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.throttle_factor_pct = 100;
  e.opts.max_attempts = 1;
  e.opts.breaker_failures = SMTPBULK_UNLIMITED;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@example.com"}, kBody), 20000);
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.category, SMTPBULK_CAT_THROTTLED);  // still said, in the category
  EXPECT_EQ(stats_of(e.sb).slowdowns, 0u);
}

// A server that throttles for ever: each message ends (throttle_retries free tries,
// then its 421s and attempts), FAILED and THROTTLED.
TEST(Pacing, EndlessThrottlingEndsEveryMessage) {
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return c.rfind("MAIL", 0) == 0 ? "BYE:421 4.7.0 [TSS04] Messages temporarily deferred\r\n"
                                   : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.throttle_cooloff_ms = 10;
  e.opts.throttle_retries = 1;
  e.opts.retry_fail = 1;
  e.opts.max_attempts = 1;
  ASSERT_EQ(e.start(), 0);
  // Three tries each (a free throttle, a free 421, the charged one), at the slowed
  // pace's floor of one a second: about 6 s.
  for (int i = 0; i < 2; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(2, 60000));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_FAILED], 2u);
  EXPECT_EQ(e.results.by_category()[SMTPBULK_CAT_THROTTLED], 2u);
  EXPECT_EQ(e.results.duplicates(), 0u);
}
