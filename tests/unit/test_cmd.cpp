// Command writer: addresses normalised, injection refused, parameters.
#include <gtest/gtest.h>

#include <string>

extern "C" {
#include "smtp_cmd.h"
#include "smtpbulk.h"
}

static std::string norm(const char* in, int* rc) {
  char out[SMTP_PATH_MAX + 1];
  *rc = smtp_addr_normalize(in, out, sizeof(out));
  return *rc >= 0 ? std::string(out) : std::string();
}

TEST(Cmd, AddressWithOrWithoutBrackets) {
  int rc;
  EXPECT_EQ(norm("a@b.test", &rc), "a@b.test");
  EXPECT_EQ(norm("<a@b.test>", &rc), "a@b.test");
  EXPECT_EQ(norm("  <a@b.test>  ", &rc), "a@b.test");
  EXPECT_EQ(norm("<>", &rc), "");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(norm("", &rc), "");
  EXPECT_EQ(rc, 0);
}

TEST(Cmd, AddressInjectionRefused) {
  int rc;
  const char* bad[] = {"a@b\r\nRCPT TO:<x@y>", "a@b\n", "a\r@b", "<a@b", "a@b>",
                       "<a<b>@c>", "a b@c", "a\t@b", "a@b\x7f", "<", ">"};
  for (const char* b : bad) {
    norm(b, &rc);
    EXPECT_EQ(rc, SMTPBULK_EBADADDR) << b;
  }
  std::string longaddr(SMTP_PATH_MAX + 1, 'a');
  norm(longaddr.c_str(), &rc);
  EXPECT_EQ(rc, SMTPBULK_EBADADDR);
  std::string maxaddr(SMTP_PATH_MAX, 'a');
  EXPECT_EQ(norm(maxaddr.c_str(), &rc), maxaddr);
}

TEST(Cmd, MailWithParameters) {
  char buf[SMTP_CMD_MAX];
  int n = smtp_cmd_mail(buf, sizeof(buf), "a@b", 1234, SMTP_MAIL_8BITMIME | SMTP_MAIL_SMTPUTF8, nullptr);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, n), "MAIL FROM:<a@b> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n");
  n = smtp_cmd_mail(buf, sizeof(buf), "", 0, 0, nullptr);
  EXPECT_EQ(std::string(buf, n), "MAIL FROM:<>\r\n");
}

TEST(Cmd, WriterRefusesUnnormalisedInput) {
  char buf[SMTP_CMD_MAX];
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "x@y\r\nDATA", nullptr), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "<x@y>", nullptr), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "", nullptr), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_mail(buf, sizeof(buf), "a@b\n", 0, 0, nullptr), SMTPBULK_EBADADDR);
  int n = smtp_cmd_rcpt(buf, sizeof(buf), "x@y", nullptr);
  EXPECT_EQ(std::string(buf, n), "RCPT TO:<x@y>\r\n");
}

TEST(Cmd, HelloNames) {
  char buf[SMTP_CMD_MAX];
  EXPECT_EQ(smtp_cmd_ehlo(buf, sizeof(buf), "host\r\nQUIT"), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_cmd_ehlo(buf, sizeof(buf), "a b"), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_cmd_helo(buf, sizeof(buf), ""), SMTPBULK_EBADPARAM);
  int n = smtp_cmd_ehlo(buf, sizeof(buf), "client.test");
  EXPECT_EQ(std::string(buf, n), "EHLO client.test\r\n");
  n = smtp_cmd_helo(buf, sizeof(buf), "[127.0.0.1]");
  EXPECT_EQ(std::string(buf, n), "HELO [127.0.0.1]\r\n");
}

TEST(Cmd, SmallBufferIsNoSpace) {
  char buf[8];
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "someone@example.com", nullptr), -ENOSPC);
}

TEST(Cmd, Has8bitAtEveryPositionAndLength) {
  for (size_t len = 0; len < 80; len++) {
    std::string s(len, 'a');
    EXPECT_EQ(smtp_has_8bit(s.data(), s.size()), 0) << len;
    for (size_t at = 0; at < len; at++) {
      std::string t = s;
      t[at] = (char)0x80;
      ASSERT_EQ(smtp_has_8bit(t.data(), t.size()), 1) << len << " " << at;
      t[at] = (char)0xff;
      ASSERT_EQ(smtp_has_8bit(t.data(), t.size()), 1) << len << " " << at;
    }
  }
}

// RFC 3461 §4: xtext leaves '!'..'~' but '+' and '=' as they are.
TEST(Cmd, XtextEncodesWhatRfc3461Says) {
  char out[64];
  EXPECT_EQ(smtp_xtext("a+b=c d", out, sizeof(out)), 13);
  EXPECT_STREQ(out, "a+2Bb+3Dc+20d");
  EXPECT_EQ(smtp_xtext("j\xc3\xa9r\xc3\xb4me@x", out, sizeof(out)), 18);  // UTF-8 bytes
  EXPECT_STREQ(out, "j+C3+A9r+C3+B4me@x");
  EXPECT_EQ(smtp_xtext("\r\n", out, sizeof(out)), 6);
  EXPECT_STREQ(out, "+0D+0A");  // no line ends can reach the wire
  EXPECT_EQ(smtp_xtext("abc", out, 3), -ENOSPC);
  EXPECT_EQ(smtp_xtext("", out, 1), 0);
}

TEST(Cmd, DsnMailParameters) {
  char out[256];
  EXPECT_EQ(smtp_dsn_mail(out, sizeof(out), 0, nullptr), 0);
  EXPECT_STREQ(out, "");
  ASSERT_GT(smtp_dsn_mail(out, sizeof(out), SMTPBULK_DSN_RET_HDRS, "QQ314159+x"), 0);
  EXPECT_STREQ(out, " RET=HDRS ENVID=QQ314159+2Bx");
  ASSERT_GT(smtp_dsn_mail(out, sizeof(out), SMTPBULK_DSN_RET_FULL, nullptr), 0);
  EXPECT_STREQ(out, " RET=FULL");
  EXPECT_EQ(smtp_dsn_mail(out, sizeof(out), 3, nullptr), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_dsn_mail(out, sizeof(out), 0, std::string(100, 'e').c_str()), 7 + 100);
  // 34 '+' become 102 characters: over ENVID's 100.
  EXPECT_EQ(smtp_dsn_mail(out, sizeof(out), 0, std::string(34, '+').c_str()),
            SMTPBULK_EBADPARAM);
}

TEST(Cmd, DsnRcptParameters) {
  char out[700];
  EXPECT_EQ(smtp_dsn_rcpt(out, sizeof(out), 0, nullptr), 0);
  ASSERT_GT(smtp_dsn_rcpt(out, sizeof(out), SMTPBULK_NOTIFY_NEVER, nullptr), 0);
  EXPECT_STREQ(out, " NOTIFY=NEVER");
  ASSERT_GT(smtp_dsn_rcpt(out, sizeof(out),
                          SMTPBULK_NOTIFY_DELAY | SMTPBULK_NOTIFY_SUCCESS |
                              SMTPBULK_NOTIFY_FAILURE,
                          "Old@Example.com"),
            0);
  EXPECT_STREQ(out, " NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;Old@Example.com");
  ASSERT_GT(smtp_dsn_rcpt(out, sizeof(out), SMTPBULK_NOTIFY_FAILURE, "utf-8;j\xc3\xa9@x"), 0);
  EXPECT_STREQ(out, " NOTIFY=FAILURE ORCPT=utf-8;j+C3+A9@x");
  ASSERT_GT(smtp_dsn_rcpt(out, sizeof(out), 0, "a+b@x"), 0);
  EXPECT_STREQ(out, " ORCPT=rfc822;a+2Bb@x");
  EXPECT_EQ(smtp_dsn_rcpt(out, sizeof(out), SMTPBULK_NOTIFY_NEVER | SMTPBULK_NOTIFY_DELAY,
                          nullptr),
            SMTPBULK_EBADPARAM);  // NEVER stands alone
  EXPECT_EQ(smtp_dsn_rcpt(out, sizeof(out), 1u << 7, nullptr), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_dsn_rcpt(out, sizeof(out), 0, "rfc822;"), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_dsn_rcpt(out, sizeof(out), 0, std::string(600, 'o').c_str()),
            SMTPBULK_EBADPARAM);
  char buf[SMTP_CMD_MAX];
  int n = smtp_cmd_rcpt(buf, sizeof(buf), "x@y", " NOTIFY=NEVER");
  EXPECT_EQ(std::string(buf, n), "RCPT TO:<x@y> NOTIFY=NEVER\r\n");
  n = smtp_cmd_mail(buf, sizeof(buf), "a@b", 10, 0, " RET=HDRS");
  EXPECT_EQ(std::string(buf, n), "MAIL FROM:<a@b> SIZE=10 RET=HDRS\r\n");
}
