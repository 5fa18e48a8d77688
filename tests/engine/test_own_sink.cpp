// The engine against our own sink (in-process, same backend): CHUNKING at full speed,
// and fault injection with every message accounted for.
#include <gtest/gtest.h>

#include <mutex>
#include <string>

#include "engine_helpers.h"
#include "own_sink.h"

using namespace sbtest;

namespace {

// The faults given, on threads threads.
struct OwnSink : OwnSinkServer {
  explicit OwnSink(sink_faults faults = {}, unsigned threads = 2)
      : OwnSinkServer(with(faults, threads)) {}
  static sink_options with(sink_faults faults, unsigned threads) {
    sink_options o = defaults();
    o.threads = threads;
    o.cfg.faults = faults;
    return o;
  }
};

const std::string kBody = "Subject: t\r\n\r\n" + std::string(500, 'x') + "\r\n";

}  // namespace

TEST(OwnSink, ChunkingEveryMessageDeliveredOnce) {
  OwnSink sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 8);
  e.opts.queue_bound = 5000;
  ASSERT_EQ(e.start(), 0);
  const char* rc[] = {"a@example.com", "b@example.com"};
  const int kMessages = 50000;
  for (int i = 0; i < kMessages; i++) {
    smtpbulk_message_t m = make_msg(rc, 2, kBody.data(), kBody.size(), SMTPBULK_MSG_BORROW_BODY);
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
  }
  ASSERT_EQ(smtpbulk_drain(e.sb, 120000), 0);
  EXPECT_EQ(e.results.total(), (size_t)kMessages);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)kMessages);
  sink_totals t = sink.totals();
  EXPECT_EQ(t.messages, (uint64_t)kMessages);
  EXPECT_EQ(t.recipients, 2u * kMessages);
  EXPECT_EQ(t.bytes, (uint64_t)kMessages * kBody.size());  // BDAT: exact bytes, no stuffing
}

TEST(OwnSink, FaultsEveryMessageEndsOnceAndCountsAddUp) {
  sink_faults f{};
  f.tempfail_rcpt = 10;
  f.reject_rcpt = 5;
  f.tempfail_data = 5;
  f.close_after = 50;  // connections keep dropping: messages in flight are retried
  OwnSink sink(f);
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 4);
  e.opts.max_attempts = 2;  // a 4xx is retried once (after 5 ms); twice in a row fails
  e.opts.defer_ms = 5;
  ASSERT_EQ(e.start(), 0);
  const char* rc[] = {"a@example.com"};
  const int kMessages = 5000;
  for (int i = 0; i < kMessages; i++) {
    smtpbulk_message_t m = make_msg(rc, 1, kBody.data(), kBody.size(), SMTPBULK_MSG_BORROW_BODY);
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
  }
  ASSERT_EQ(smtpbulk_drain(e.sb, 120000), 0);
  EXPECT_EQ(e.results.total(), (size_t)kMessages);
  EXPECT_EQ(e.results.duplicates(), 0u);
  auto st = e.results.by_status();
  EXPECT_EQ(st[SMTPBULK_DELIVERED] + st[SMTPBULK_FAILED] + st[SMTPBULK_REJECTED], (size_t)kMessages);
  EXPECT_GT(st[SMTPBULK_FAILED], 0u);
  EXPECT_GT(st[SMTPBULK_REJECTED], 0u);
  smtpbulk_counters_t cc;
  smtpbulk_get_counters(e.sb, &cc);
  EXPECT_GT(cc.deferred, st[SMTPBULK_FAILED]);  // most 4xx were retried and got through
  EXPECT_EQ(cc.deferred_now, 0u);
  // What the sink accepted is exactly what we call delivered.
  EXPECT_EQ(sink.totals().messages, st[SMTPBULK_DELIVERED]);
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_GT(c.connects, 4u);  // reconnected after each 421
}

TEST(OwnSink, HungConnectionHoldsOnlyItsWindow) {
  sink_faults f{};
  f.hang_after = 1;  // every connection answers one message, then goes silent
  OwnSink sink(f, 1);
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 2);
  e.opts.window = 4;
  ASSERT_EQ(e.start(), 0);
  const char* rc[] = {"a@example.com"};
  for (int i = 0; i < 20; i++) {
    smtpbulk_message_t m = make_msg(rc, 1, kBody.data(), kBody.size());
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
  }
  // Each connection delivers 1 and holds at most its window (4) minus that one. Both
  // deliveries must come (whenever each connection's worker runs); nothing else can
  // end before the 60 s timeout, so the short drain cannot fail a correct engine.
  ASSERT_TRUE(wait_until([&] { return e.results.by_status()[SMTPBULK_DELIVERED] >= 2; }));
  EXPECT_EQ(smtpbulk_drain(e.sb, 100), -ETIMEDOUT);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 2u);
  EXPECT_EQ(e.results.total(), 2u);
  smtpbulk_destroy(e.sb);  // the rest are cancelled, each exactly once
  e.sb = nullptr;
  EXPECT_EQ(e.results.total(), 20u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_CANCELLED], 18u);
}

// The worker receives the way it was asked: multishot into the pool on io_uring unless
// plain_recv; plainly on epoll. Hundreds of connections at once share the pool.
TEST(OwnSink, ReceiveModeAsAskedAndManyConnectionsShareThePool) {
  OwnSink sink;
  ASSERT_NE(sink.srv, nullptr);
  LogCapture log;  // before the engine: it must outlive the workers that log to it
  TestEngine e(sink.port(), 300);
  e.opts.debug = 5;
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
  ASSERT_EQ(e.start(), 0);
  const char* rc[] = {"a@example.com"};
  const int kMessages = 6000;
  for (int i = 0; i < kMessages; i++) {
    smtpbulk_message_t m = make_msg(rc, 1, kBody.data(), kBody.size(), SMTPBULK_MSG_BORROW_BODY);
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
  }
  ASSERT_EQ(smtpbulk_drain(e.sb, 120000), 0);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)kMessages);
  EXPECT_EQ(sink.totals().messages, (uint64_t)kMessages);
  std::string text = log.get();
  bool pooled = !strcmp(smtpbulk_backend_name(e.sb), "io_uring") && !e.opts.plain_recv;
  EXPECT_EQ(text.find("multishot pooled receives") != std::string::npos, pooled) << text;
  EXPECT_EQ(text.find(" plain receives") != std::string::npos, !pooled) << text;
}
