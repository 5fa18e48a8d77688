// Reply parser: complete, partial, multi-line, enhanced codes, malformed, over-long.
#include <gtest/gtest.h>

#include <string>

extern "C" {
#include "smtp_reply.h"
}

static int parse(const std::string& s, smtp_reply* r) {
  return smtp_reply_parse(s.data(), s.size(), r);
}

TEST(Reply, SingleLine) {
  smtp_reply r;
  std::string s = "250 2.1.0 Ok\r\n";
  ASSERT_EQ(parse(s, &r), (int)s.size());
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(std::string(r.enh, r.enh_len), "2.1.0");
  EXPECT_EQ(r.nlines, 1u);
}

TEST(Reply, CodeOnlyLineIsValid) {
  smtp_reply r;
  ASSERT_EQ(parse("354\r\n", &r), 5);
  EXPECT_EQ(r.code, 354);
  EXPECT_EQ(r.enh, nullptr);
}

TEST(Reply, PartialNeedsMore) {
  smtp_reply r;
  EXPECT_EQ(parse("25", &r), SMTP_REPLY_NEED_MORE);
  EXPECT_EQ(parse("250 Ok", &r), SMTP_REPLY_NEED_MORE);
  EXPECT_EQ(parse("250-first\r\n250 sec", &r), SMTP_REPLY_NEED_MORE);
  EXPECT_EQ(parse("250-first\r\n", &r), SMTP_REPLY_NEED_MORE);
}

TEST(Reply, MultiLineConsumesOnlyFirstReply) {
  smtp_reply r;
  std::string a = "250-mx.test hi\r\n250-PIPELINING\r\n250 SIZE 100\r\n";
  std::string s = a + "354 go\r\n";
  ASSERT_EQ(parse(s, &r), (int)a.size());
  EXPECT_EQ(r.nlines, 3u);
  size_t pos = 0;
  const char* t;
  size_t tl;
  std::vector<std::string> lines;
  while (smtp_reply_next_line(&r, &pos, 0, &t, &tl)) lines.emplace_back(t, tl);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "mx.test hi");
  EXPECT_EQ(lines[2], "SIZE 100");
}

TEST(Reply, EnhancedCodeStrippedFromText) {
  smtp_reply r;
  std::string s = "550-5.1.1 No such user\r\n550 5.1.1 Try again\r\n";
  ASSERT_EQ(parse(s, &r), (int)s.size());
  EXPECT_EQ(std::string(r.enh, r.enh_len), "5.1.1");
  size_t pos = 0;
  const char* t;
  size_t tl;
  ASSERT_TRUE(smtp_reply_next_line(&r, &pos, 1, &t, &tl));
  EXPECT_EQ(std::string(t, tl), "No such user");
}

TEST(Reply, EnhancedCodeClassMustMatch) {
  smtp_reply r;
  ASSERT_GT(parse("550 2.1.1 odd\r\n", &r), 0);
  EXPECT_EQ(r.enh, nullptr);  // class 2 on a 5xx reply is not an enhanced code
  ASSERT_GT(parse("250 2.1.5x\r\n", &r), 0);
  EXPECT_EQ(r.enh, nullptr);
}

TEST(Reply, BareLfTolerated) {
  smtp_reply r;
  ASSERT_EQ(parse("250 ok\n", &r), 7);
  EXPECT_EQ(r.code, 250);
}

TEST(Reply, Malformed) {
  smtp_reply r;
  EXPECT_EQ(parse("abc\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("25x ok\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("250xok\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("199 low\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("600 high\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("250-a\r\n251 b\r\n", &r), SMTP_REPLY_EMALFORMED);  // codes differ
  EXPECT_EQ(parse("25\r\n", &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("hello", &r), SMTP_REPLY_EMALFORMED);  // early, without a line end
  EXPECT_EQ(parse(std::string("250 a\0b\r\n", 9), &r), SMTP_REPLY_EMALFORMED);
  EXPECT_EQ(parse("250 a\rb\r\n", &r), SMTP_REPLY_EMALFORMED);
}

TEST(Reply, LineOverRfcLimitIsTooLong) {
  smtp_reply r;
  std::string ok = "250 " + std::string(SMTP_REPLY_LINE_MAX - 6, 'a') + "\r\n";
  ASSERT_EQ(ok.size(), (size_t)SMTP_REPLY_LINE_MAX);
  EXPECT_EQ(parse(ok, &r), SMTP_REPLY_LINE_MAX);
  std::string bad = "250 " + std::string(SMTP_REPLY_LINE_MAX, 'a');
  EXPECT_EQ(parse(bad, &r), SMTP_REPLY_ETOOLONG);  // no line end within the limit
  EXPECT_EQ(parse(bad + "\r\n", &r), SMTP_REPLY_ETOOLONG);
}

TEST(Reply, EndlessMultiLineIsTooLong) {
  smtp_reply r;
  std::string s;
  while (s.size() <= SMTP_REPLY_MAX) s += "250-" + std::string(100, 'x') + "\r\n";
  EXPECT_EQ(parse(s, &r), SMTP_REPLY_ETOOLONG);
}

// A 4xx that says the connection has carried what the server takes on one.
TEST(Reply, SaysTooMany) {
  auto says = [](const std::string& s) {
    smtp_reply r;
    EXPECT_GT(parse(s, &r), 0) << s;
    return smtp_reply_says_too_many(&r);
  };
  EXPECT_TRUE(says("452 4.5.3 Too many recipients: Too many messages sent\r\n"));  // OpenSMTPD
  EXPECT_TRUE(says("451 4.7.0 TOO MANY messages in this session\r\n"));
  EXPECT_TRUE(says("450-4.7.0 slow down\r\n450 4.7.0 too many messages\r\n"));  // any line
  EXPECT_FALSE(says("451 4.3.0 try later\r\n"));
  EXPECT_FALSE(says("552 5.5.3 Too many recipients\r\n"));  // permanent: not this
  EXPECT_FALSE(says("452 too man\r\n"));
}

// A recipient refused for a full transaction goes in the next one; another 452 (a full
// mailbox, a full disk) is a 4xx like any other.
TEST(Reply, TooManyRecipients) {
  auto says = [](const std::string& s) {
    smtp_reply r;
    EXPECT_GT(parse(s, &r), 0) << s;
    return smtp_reply_too_many_rcpts(&r);
  };
  EXPECT_TRUE(says("452 4.5.3 Error: too many recipients\r\n"));        // Postfix
  EXPECT_TRUE(says("452 4.5.3 Too many recipients\r\n"));
  EXPECT_TRUE(says("452 Too many recipients\r\n"));                     // no enhanced code
  EXPECT_TRUE(says("552 5.5.3 Too many recipients\r\n"));               // RFC 821's code
  EXPECT_TRUE(says("452-4.5.3 recipient limit\r\n452 4.5.3 reached\r\n"));
  EXPECT_FALSE(says("452 4.2.2 Mailbox full\r\n"));
  EXPECT_FALSE(says("452 4.3.1 Insufficient system storage\r\n"));
  EXPECT_FALSE(says("451 4.5.3 too many recipients\r\n"));              // not its code
  EXPECT_FALSE(says("550 5.5.3 Too many recipients\r\n"));
}
