// DSN (RFC 3461): RET and ENVID on MAIL, NOTIFY and ORCPT on each RCPT, xtext-encoded,
// as a real server (aiosmtpd, which records the arguments it received) saw them; a
// server without DSN in both settings of options.dsn_required; bad values refused at
// submit.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine_helpers.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {
const std::string kBody = "Subject: dsn\r\n\r\nhello\r\n";

struct Dsn {
  unsigned ret = 0;
  const char* envid = nullptr;
  unsigned notify = 0;
  std::vector<unsigned> rcpt_notify;
  std::vector<const char*> orcpts;
};

int submit(TestEngine& e, const std::vector<const char*>& rcpts, const Dsn& d,
           uint64_t* id) {
  smtpbulk_message_t m =
      make_msg(rcpts.data(), rcpts.size(), kBody.data(), kBody.size(), 0, "s@example.com");
  m.dsn_ret = d.ret;
  m.envid = d.envid;
  m.dsn_notify = d.notify;
  m.rcpt_notify = d.rcpt_notify.empty() ? nullptr : d.rcpt_notify.data();
  m.orcpts = d.orcpts.empty() ? nullptr : d.orcpts.data();
  return smtpbulk_submit(e.sb, &m, 0, id);
}

std::vector<std::string> with_prefix(const std::vector<std::string>& v, const std::string& p) {
  std::vector<std::string> out;
  for (auto& s : v)
    if (s.rfind(p, 0) == 0) out.push_back(s.substr(p.size()));
  return out;
}
}  // namespace

TEST(Dsn, TheServerReceivesEveryParameterEncoded) {
  AioSmtpd peer({"--dsn"});
  ASSERT_TRUE(peer.ok()) << peer.error();
  TestEngine e(peer.port(), 1);
  e.opts.pipeline = 0;  // one message at a time: the peer's lines in order
  ASSERT_EQ(e.start(), 0);
  Dsn d;
  d.ret = SMTPBULK_DSN_RET_HDRS;
  d.envid = "mailing-42+a=b";
  d.notify = SMTPBULK_NOTIFY_FAILURE | SMTPBULK_NOTIFY_DELAY;
  d.rcpt_notify = {0, SMTPBULK_NOTIFY_NEVER, SMTPBULK_NOTIFY_SUCCESS};
  d.orcpts = {"old@example.org", nullptr, "j\xc3\xa9r\xc3\xb4me@example.org"};
  uint64_t id;
  ASSERT_EQ(submit(e, {"a@example.com", "b@example.com", "c@example.com"}, d, &id), 0);
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  auto ev = peer.events();
  auto mails = with_prefix(ev, "MAILARG ");
  ASSERT_EQ(mails.size(), 1u);
  EXPECT_EQ(mails[0], "FROM:<s@example.com> SIZE=" + std::to_string(kBody.size()) +
                          " RET=HDRS ENVID=mailing-42+2Ba+3Db");
  auto rcpts = with_prefix(ev, "RCPTARG ");
  ASSERT_EQ(rcpts.size(), 3u);
  EXPECT_EQ(rcpts[0], "TO:<a@example.com> NOTIFY=FAILURE,DELAY ORCPT=rfc822;old@example.org");
  EXPECT_EQ(rcpts[1], "TO:<b@example.com> NOTIFY=NEVER");
  EXPECT_EQ(rcpts[2], "TO:<c@example.com> NOTIFY=SUCCESS ORCPT=rfc822;j+C3+A9r+C3+B4me@example.org");
}

// Without DSN offered: sent without the parameters by default (the server would refuse
// them: aiosmtpd answers 555), refused here with dsn_required. A message asking for
// no DSN goes through in both.
TEST(Dsn, AServerWithoutDsnInBothSettings) {
  AioSmtpd peer({});
  ASSERT_TRUE(peer.ok()) << peer.error();
  for (int required : {0, 1}) {
    SCOPED_TRACE(required ? "dsn_required" : "default");
    TestEngine e(peer.port(), 1);
    e.opts.dsn_required = required;
    ASSERT_EQ(e.start(), 0);
    Dsn d;
    d.notify = SMTPBULK_NOTIFY_SUCCESS;
    d.envid = "x";
    uint64_t with, without;
    ASSERT_EQ(submit(e, {"a@example.com"}, d, &with), 0);
    ASSERT_EQ(submit(e, {"a@example.com"}, Dsn{}, &without), 0);
    Result r = e.wait_one(with);
    if (required) {
      EXPECT_EQ(r.status, SMTPBULK_REJECTED);
      EXPECT_EQ(r.error, SMTPBULK_ENODSN);
      EXPECT_EQ(r.category, SMTPBULK_CAT_LOCAL);
    } else {
      EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    }
    EXPECT_EQ(e.wait_one(without).status, SMTPBULK_DELIVERED);
  }
  for (auto& a : with_prefix(peer.events(), "MAILARG "))
    EXPECT_EQ(a.find("ENVID"), std::string::npos) << a;
  for (auto& a : with_prefix(peer.events(), "RCPTARG "))
    EXPECT_EQ(a.find("NOTIFY"), std::string::npos) << a;
  EXPECT_EQ(with_prefix(peer.events(), "MAILARG ").size(), 3u);  // 2 + 1: one refused here
}

TEST(Dsn, BadValuesAreRefusedAtSubmit) {
  TestEngine e(2525, 1);  // never connects: nothing is submitted
  ASSERT_EQ(e.start(), 0);
  uint64_t id;
  Dsn never_and;
  never_and.notify = SMTPBULK_NOTIFY_NEVER | SMTPBULK_NOTIFY_FAILURE;
  EXPECT_EQ(submit(e, {"a@example.com"}, never_and, &id), SMTPBULK_EBADPARAM);
  Dsn ret;
  ret.ret = 7;
  EXPECT_EQ(submit(e, {"a@example.com"}, ret, &id), SMTPBULK_EBADPARAM);
  std::string long_id(101, 'x');
  Dsn envid;
  envid.envid = long_id.c_str();
  EXPECT_EQ(submit(e, {"a@example.com"}, envid, &id), SMTPBULK_EBADPARAM);
  std::string long_orcpt(501, 'o');
  Dsn orcpt;
  orcpt.orcpts = {long_orcpt.c_str()};
  EXPECT_EQ(submit(e, {"a@example.com"}, orcpt, &id), SMTPBULK_EBADPARAM);
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.submitted, 0u);
}
