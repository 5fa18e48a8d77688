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
  int n = smtp_cmd_mail(buf, sizeof(buf), "a@b", 1234, SMTP_MAIL_8BITMIME | SMTP_MAIL_SMTPUTF8);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, n), "MAIL FROM:<a@b> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n");
  n = smtp_cmd_mail(buf, sizeof(buf), "", 0, 0);
  EXPECT_EQ(std::string(buf, n), "MAIL FROM:<>\r\n");
}

TEST(Cmd, WriterRefusesUnnormalisedInput) {
  char buf[SMTP_CMD_MAX];
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "x@y\r\nDATA"), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "<x@y>"), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), ""), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtp_cmd_mail(buf, sizeof(buf), "a@b\n", 0, 0), SMTPBULK_EBADADDR);
  int n = smtp_cmd_rcpt(buf, sizeof(buf), "x@y");
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
  EXPECT_EQ(smtp_cmd_rcpt(buf, sizeof(buf), "someone@example.com"), -ENOSPC);
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
