// The sender controls together, as a mailing platform meets them at once: a pacer, a
// cap of messages per connection and of a connection's age, a server that throttles
// (421 4.7.0 beyond its rate), takes two recipients per transaction (452 4.5.3), temp-
// fails some recipients (retried alone with retry_temp_rcpts) and closes connections
// now and then. Whatever path a message takes, it ends with exactly one result, and
// no recipient is reported delivered more often than the server took one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine_helpers.h"
extern "C" {
#include "sink_server.h"
}

using namespace sbtest;

TEST(Soak, SenderControlsMixedEveryMessageOneResult) {
  const char* b = std::getenv("SMTPBULK_TEST_BACKEND");
  if (b && !strcmp(b, "io_uring_plain")) GTEST_SKIP() << "the receive path is not the point";
  sink_options so{};
  so.host = "127.0.0.1";
  so.threads = 2;
  so.backend = test_backend();
  so.max_rate = 1500;  // 421 4.7.0 beyond it
  so.cfg.name = "sink.test";
  so.cfg.size_max = 10000000;
  so.cfg.max_rcpts = 2;
  so.cfg.faults.tempfail_rcpt = 5;
  so.cfg.faults.close_after = 40;
  sink_server* srv = nullptr;
  const char* why = nullptr;
  ASSERT_EQ(sink_server_start(&so, &srv, &why), 0) << why;
  const int kMessages = 6000;
  size_t rcpts_sent = 0;
  {
    TestEngine e(sink_server_port(srv), 8);
    e.opts.host_rate = {3000, 1000, 50};
    e.opts.max_per_conn = 25;
    e.opts.max_conn_age_ms = 400;
    e.opts.idle_close_ms = 200;
    e.opts.retry_temp_rcpts = 1;
    e.opts.max_attempts = 8;
    e.opts.defer_ms = 5;
    e.opts.throttle_cooloff_ms = 500;
    e.opts.throttle_retries = SMTPBULK_UNLIMITED;
    e.opts.queue_bound = 2000;
    ASSERT_EQ(e.start(), 0);
    const std::string body = "Subject: soak\r\n\r\n" + std::string(200, 'x') + "\r\n";
    const char* one[] = {"a@example.com"};
    const char* five[] = {"a@example.com", "b@example.com", "c@example.com", "d@example.com",
                          "e@example.com"};
    for (int i = 0; i < kMessages; i++) {
      bool many = i % 3 == 0;  // a third of them split over three transactions
      smtpbulk_message_t m = make_msg(many ? five : one, many ? 5 : 1, body.data(), body.size(),
                                      SMTPBULK_MSG_BORROW_BODY);
      rcpts_sent += many ? 5 : 1;
      ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
    }
    ASSERT_EQ(smtpbulk_drain(e.sb, 240000), 0) << e.results.total() << " results";
    EXPECT_EQ(e.results.total(), (size_t)kMessages);
    EXPECT_EQ(e.results.duplicates(), 0u);
    auto st = e.results.by_status();
    size_t ended = 0;
    for (auto& kv : st) ended += kv.second;
    EXPECT_EQ(ended, (size_t)kMessages);
    EXPECT_EQ(st[SMTPBULK_TIMED_OUT], 0u);
    smtpbulk_counters_t c{};
    smtpbulk_get_counters(e.sb, &c);
    EXPECT_EQ(c.completed, (uint64_t)kMessages);
    EXPECT_GT(c.reconnects, 0u);
    EXPECT_GT(c.deferred, 0u);
    smtpbulk_stats_t s = stats_of(e.sb);
    EXPECT_GT(s.throttled, 0u) << "the sink never throttled: the test lost its point";
    EXPECT_GT(s.slowdowns, 0u);
    // Recipients reported delivered: never more than the server accepted.
    size_t delivered_rcpts = 0;
    for (uint64_t id = 1; id <= (uint64_t)kMessages; id++) {
      Result r = e.results.get(id);
      for (int code : r.rcpt_codes) delivered_rcpts += code / 100 == 2;
      if (r.status == SMTPBULK_DELIVERED)
        for (int code : r.rcpt_codes) EXPECT_EQ(code / 100, 2) << "message " << id;
    }
    sink_totals t;
    sink_server_totals(srv, &t);
    EXPECT_LE(delivered_rcpts, t.recipients);
    EXPECT_LE(delivered_rcpts, rcpts_sent);
    // With unlimited throttle retries and 8 attempts against 5% temp-failures, nearly
    // everything gets through.
    EXPECT_GE(st[SMTPBULK_DELIVERED], (size_t)kMessages * 95 / 100);
  }
  sink_server_stop(srv);
}
