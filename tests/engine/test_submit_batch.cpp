// smtpbulk_submit_batch(): every message of a batch gets one result; a batch larger than
// the queue bound does not wait forever for room the sleeping workers never made (it
// wakes them before it blocks); a bad message stops the batch there, the ones before it
// submitted. (What batching saves — wake-ups per message — is measured in bench/send.sh
// with strace -c, not asserted here.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine_helpers.h"
#include "own_sink.h"

using namespace sbtest;

namespace {

std::vector<smtpbulk_message_t> batch_of(size_t n, const char* const* rcpt, const std::string& body,
                                         std::vector<int>& tags) {
  tags.resize(n);
  std::vector<smtpbulk_message_t> v(n);
  for (size_t i = 0; i < n; i++) {
    v[i] = make_msg(rcpt, 1, body.data(), body.size());
    tags[i] = (int)i;
    v[i].user_data = &tags[i];
  }
  return v;
}

}  // namespace

TEST(SubmitBatch, EveryMessageOfABatchGetsOneResult) {
  OwnSinkServer sink;
  TestEngine e(sink.port(), 4);
  ASSERT_EQ(e.start(), 0);
  static const char* rcpt[] = {"r@example.org"};
  std::string body = "Subject: batch\r\n\r\nhello\r\n";
  std::vector<int> tags;
  size_t total = 0;
  for (int round = 0; round < 20; round++) {
    auto v = batch_of(50, rcpt, body, tags);
    size_t done = 99;
    ASSERT_EQ(smtpbulk_submit_batch(e.sb, v.data(), v.size(), 0, &done), 0);
    EXPECT_EQ(done, 50u);
    total += done;
    ASSERT_TRUE(e.results.wait(total, kEventMs)) << "round " << round;
  }
  EXPECT_EQ(e.results.total(), 1000u);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 1000u);
  EXPECT_TRUE(wait_until([&] { return sink.totals().messages == 1000; }));
}

TEST(SubmitBatch, ABatchBeyondTheQueueBoundWakesTheWorkersBeforeItWaits) {
  OwnSinkServer sink;
  TestEngine e(sink.port(), 2);
  e.opts.queue_bound = 8;
  ASSERT_EQ(e.start(), 0);
  static const char* rcpt[] = {"r@example.org"};
  std::string body = "Subject: bound\r\n\r\nx\r\n";
  std::vector<int> tags;
  auto v = batch_of(500, rcpt, body, tags);
  size_t done = 0;
  ASSERT_EQ(smtpbulk_submit_batch(e.sb, v.data(), v.size(), 0, &done), 0);
  EXPECT_EQ(done, 500u);
  ASSERT_TRUE(e.results.wait(500, kEventMs));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 500u);
  // Non-blocking: a full queue stops the batch with EAGAIN, the rest not submitted.
  auto w = batch_of(500, rcpt, body, tags);
  int rc = smtpbulk_submit_batch(e.sb, w.data(), w.size(), SMTPBULK_SUBMIT_NONBLOCK, &done);
  ASSERT_TRUE(rc == -EAGAIN || rc == 0) << smtpbulk_strerror(rc);
  if (rc == -EAGAIN) EXPECT_LT(done, 500u);
  ASSERT_TRUE(e.results.wait(500 + done, kEventMs));
  EXPECT_EQ(e.results.total(), 500 + done);
}

TEST(SubmitBatch, ABadMessageStopsTheBatchThere) {
  OwnSinkServer sink;
  TestEngine e(sink.port(), 1);
  ASSERT_EQ(e.start(), 0);
  static const char* rcpt[] = {"r@example.org"};
  static const char* bad[] = {"not<an>address"};
  std::string body = "Subject: x\r\n\r\nx\r\n";
  std::vector<int> tags;
  auto v = batch_of(10, rcpt, body, tags);
  v[6].rcpts = bad;
  size_t done = 0;
  EXPECT_EQ(smtpbulk_submit_batch(e.sb, v.data(), v.size(), 0, &done), SMTPBULK_EBADADDR);
  EXPECT_EQ(done, 6u);
  v[7].host = 5;  // no such host
  EXPECT_EQ(smtpbulk_submit_batch(e.sb, v.data() + 7, 3, 0, &done), SMTPBULK_ENOHOST);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(smtpbulk_submit_batch(e.sb, v.data() + 8, 2, 0, &done), 0);
  EXPECT_EQ(done, 2u);
  ASSERT_TRUE(e.results.wait(8, kEventMs));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 8u);
  EXPECT_EQ(smtpbulk_submit_batch(nullptr, v.data(), 1, 0, &done), -EINVAL);
  EXPECT_EQ(smtpbulk_submit_batch(e.sb, nullptr, 1, 0, &done), -EINVAL);
  EXPECT_EQ(smtpbulk_submit_batch(e.sb, nullptr, 0, 0, &done), 0);
}
