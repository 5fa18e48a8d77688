// Integration with a real server: Postfix smtp-sink, started by each test.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

static const std::string kBody =
    "From: a@example.com\r\nTo: b@example.com\r\nSubject: load\r\n\r\n" +
    std::string(900, 'x') + "\r\n";

TEST(SmtpSink, HundredThousandMessagesEachExactlyOneDeliveredResult) {
  SmtpSink sink;
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 8);
  e.opts.queue_bound = 20000;
  ASSERT_EQ(e.start(), 0) << smtpbulk_backend_name(e.sb);
  const int kMessages = 100000;
  const char* rcpt[] = {"rcpt@example.com"};
  std::vector<uint64_t> ids;
  ids.reserve(kMessages);
  for (int i = 0; i < kMessages; i++) {
    smtpbulk_message_t m = make_msg(rcpt, 1, kBody.data(), kBody.size(), SMTPBULK_MSG_BORROW_BODY);
    uint64_t id;
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, &id), 0);
    ids.push_back(id);
  }
  ASSERT_EQ(smtpbulk_drain(e.sb, 300000), 0);
  EXPECT_EQ(e.results.total(), (size_t)kMessages);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)kMessages);
  for (uint64_t id : ids) ASSERT_TRUE(e.results.has(id)) << "no result for " << id;
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.delivered, (uint64_t)kMessages);
  EXPECT_EQ(c.queued, 0u);
  // Every connection comes up, but not necessarily before the others have carried
  // all the mail (its worker may not have run yet).
  EXPECT_TRUE(wait_until([&] {
    smtpbulk_get_counters(e.sb, &c);
    return c.connects >= 8;
  })) << c.connects << " connections ready";
}

TEST(SmtpSink, BoundedQueueNeverExceedsItsBound) {
  SmtpSink sink;
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 8);
  e.opts.queue_bound = 1000;
  ASSERT_EQ(e.start(), 0);
  const int kMessages = 200000;
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::thread producer([&] {
    const char* rcpt[] = {"rcpt@example.com"};
    for (int i = 0; i < kMessages; i++) {
      smtpbulk_message_t m = make_msg(rcpt, 1, kBody.data(), 200, SMTPBULK_MSG_BORROW_BODY);
      if (smtpbulk_submit(e.sb, &m, 0, nullptr) != 0) failures++;
    }
    done = true;
  });
  uint64_t peak_seen = 0;
  for (int i = 0; i < 120000 && !done; i++) {  // sample while it runs (bounded: 2 min)
    smtpbulk_counters_t c;
    smtpbulk_get_counters(e.sb, &c);
    peak_seen = std::max(peak_seen, c.queued);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  producer.join();
  ASSERT_EQ(smtpbulk_drain(e.sb, 300000), 0);
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(peak_seen, 1000u);
  EXPECT_LE(c.queued_max, 1000u);
  EXPECT_GE(c.queued_max, 500u);  // the producer really ran into the bound
  EXPECT_EQ(c.delivered, (uint64_t)kMessages);
  EXPECT_EQ(e.results.total(), (size_t)kMessages);
}

TEST(SmtpSink, NonBlockingSubmitSaysEagainWhenFull) {
  PeerScript s;
  s.greeting = "HANG";
  ScriptedPeer peer(s);
  auto* e = new TestEngine(peer.port(), 1);
  e->opts.queue_bound = 10;
  ASSERT_EQ(e->start(), 0);
  const char* rcpt[] = {"r@x.test"};
  smtpbulk_message_t m = make_msg(rcpt, 1);
  for (int i = 0; i < 10; i++) ASSERT_EQ(smtpbulk_submit(e->sb, &m, SMTPBULK_SUBMIT_NONBLOCK, nullptr), 0);
  EXPECT_EQ(smtpbulk_submit(e->sb, &m, SMTPBULK_SUBMIT_NONBLOCK, nullptr), -EAGAIN);
  smtpbulk_destroy(e->sb);
  e->sb = nullptr;
  EXPECT_EQ(e->results.by_status()[SMTPBULK_CANCELLED], 10u);
  delete e;
}

TEST(SmtpSink, SoftRejectedRecipientsFail) {
  SmtpSink sink({"-r", "rcpt"});
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 2);
  e.opts.defer_ms = 20;  // each 4xx is tried again after 20 ms, then 40 ms
  ASSERT_EQ(e.start(), 0);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 100; i++) ids.push_back(e.send({"r@example.com"}, kBody));
  ASSERT_EQ(smtpbulk_drain(e.sb, 60000), 0);
  for (auto id : ids) {
    Result r = e.results.get(id);
    EXPECT_EQ(r.status, SMTPBULK_FAILED);
    EXPECT_EQ(r.rcpt_codes[0] / 100, 4);
    EXPECT_EQ(r.attempts, 3u);  // max_attempts' default
  }
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.deferred, 200u);
}

// Postfix smtp-sink's own fault injection against the retry policies.
TEST(SmtpSink, DelayedRepliesAreHangs) {
  SmtpSink sink({"-W", "rcpt:2"});  // every RCPT answered after 2 s
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 2);
  e.opts.timeout_ms = 300;
  e.opts.watchdog_tick_ms = 20;
  e.opts.retry_hang = 1;
  ASSERT_EQ(e.start(), 0);
  uint64_t a = e.send({"r@example.com"}, kBody), b = e.send({"r@example.com"}, kBody);
  ASSERT_EQ(smtpbulk_drain(e.sb, 20000), 0);
  for (uint64_t id : {a, b}) {
    Result r = e.results.get(id);
    EXPECT_EQ(r.status, SMTPBULK_TIMED_OUT);
    EXPECT_EQ(r.attempts, 2u);
  }
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_GE(c.hangs, 4u);
  EXPECT_EQ(c.timed_out, 2u);
}

TEST(SmtpSink, Reply421IsRiddenOutThenFails) {
  SmtpSink sink({"-Q", "mail"});  // 421 and disconnect after every MAIL
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 1);
  e.opts.retry_fail = 2;   // 421s ridden out free of charge
  e.opts.max_attempts = 2; // then charged attempts
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@example.com"}, kBody));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_ESHUTDOWN);
  EXPECT_EQ(r.attempts, 4u);
}

TEST(SmtpSink, DisconnectWithoutReplyIsChargedTrouble) {
  SmtpSink sink({"-q", "data"});  // hangs up after DATA without a word
  ASSERT_TRUE(sink.ok()) << sink.error();
  TestEngine e(sink.port(), 1);
  e.opts.max_attempts = 3;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@example.com"}, kBody));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_ECLOSED);
  EXPECT_EQ(r.attempts, 3u);
}

TEST(SmtpSink, FacadeSendsThroughTheSamePath) {
  SmtpSink sink;
  ASSERT_TRUE(sink.ok()) << sink.error();
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  o.connections = 4;
  o.queue_bound = 500;
  Collector col;
  o.on_result = Collector::cb;
  o.result_arg = &col;
  smtpbulk_t* smtp = smtpbulk_new(sink.hostport().c_str(), &o);
  ASSERT_NE(smtp, nullptr) << strerror(errno);
  for (int i = 0; i < 5000; i++) {
    ASSERT_EQ(smtpbulk_mail(smtp, "sender@example.com"), 0);
    ASSERT_EQ(smtpbulk_to(smtp, "a@example.com"), 0);
    ASSERT_EQ(smtpbulk_to(smtp, "b@example.com"), 0);
    ASSERT_EQ(smtpbulk_data(smtp), 0);
    ASSERT_EQ(smtpbulk_datasend(smtp, kBody.data(), kBody.size()), 0);
    ASSERT_EQ(smtpbulk_dataend(smtp), 0);
  }
  EXPECT_EQ(smtpbulk_quit(smtp, "facade"), 0);
  EXPECT_EQ(col.total(), 5000u);
  EXPECT_EQ(col.by_status()[SMTPBULK_DELIVERED], 5000u);
  smtpbulk_free(smtp);
}
