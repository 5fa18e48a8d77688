// EHLO capability parsing.
#include <gtest/gtest.h>

#include <string>

extern "C" {
#include "smtp_caps.h"
}

static smtp_caps caps_of(const std::string& s) {
  smtp_reply r;
  EXPECT_EQ(smtp_reply_parse(s.data(), s.size(), &r), (int)s.size());
  smtp_caps c;
  smtp_caps_parse(&r, &c);
  return c;
}

TEST(Caps, AllKnownKeywords) {
  auto c = caps_of(
      "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
      "250-SMTPUTF8\r\n250-CHUNKING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n"
      "250-STARTTLS\r\n250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2 SCRAM-SHA-256 OAUTHBEARER\r\n");
  unsigned all = SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_SMTPUTF8 |
                 SMTP_CAP_CHUNKING | SMTP_CAP_DSN | SMTP_CAP_ENHANCED | SMTP_CAP_STARTTLS |
                 SMTP_CAP_AUTH;
  EXPECT_EQ(c.flags, all);
  EXPECT_EQ(c.size_max, 35882577u);
  EXPECT_EQ(c.auth, (unsigned)(SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_CRAM_MD5 |
                               SMTP_AUTH_XOAUTH2 | SMTP_AUTH_SCRAM_SHA_256 |
                               SMTP_AUTH_OAUTHBEARER));
}

TEST(Caps, CaseInsensitiveAndOldAuthForm) {
  auto c = caps_of("250-x\r\n250-pipelining\r\n250-AUTH=login plain\r\n250 size\r\n");
  EXPECT_TRUE(c.flags & SMTP_CAP_PIPELINING);
  EXPECT_TRUE(c.flags & SMTP_CAP_SIZE);
  EXPECT_EQ(c.size_max, 0u);  // SIZE without a number: no limit
  EXPECT_EQ(c.auth, (unsigned)(SMTP_AUTH_LOGIN | SMTP_AUTH_PLAIN));
}

TEST(Caps, GreetingLineAndLookalikesIgnored) {
  // The first line is the server's name, even if it looks like a keyword; a keyword
  // that only starts like a known one is not it.
  auto c = caps_of("250-PIPELINING\r\n250-PIPELININGX\r\n250-DSNX\r\n250 X-CHUNKING\r\n");
  EXPECT_EQ(c.flags, 0u);
}

TEST(Caps, SingleLineEhloHasNoCaps) {
  auto c = caps_of("250 mx.test\r\n");
  EXPECT_EQ(c.flags, 0u);
}

TEST(Caps, AbsurdSizeMeansNoLimit) {
  auto c = caps_of("250-x\r\n250 SIZE 99999999999999999999999\r\n");
  EXPECT_TRUE(c.flags & SMTP_CAP_SIZE);
  EXPECT_EQ(c.size_max, 0u);
}
