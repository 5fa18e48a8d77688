// The one-off commands' pure part (engine/command.c) and the session's command state
// (SESS_CMD), with buffers alone.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <string>
#include <vector>

extern "C" {
#include "command.h"
#include "message.h"
#include "session.h"
}

namespace {

TEST(CommandLine, EachCommandsLine) {
  char b[SMTP_CMD_LINE_MAX];
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_VRFY, "bob"), 10);
  EXPECT_STREQ(b, "VRFY bob\r\n");
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_EXPN, "staff list"), 17);
  EXPECT_STREQ(b, "EXPN staff list\r\n");
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_HELP, nullptr), 6);
  EXPECT_STREQ(b, "HELP\r\n");
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_HELP, "MAIL"), 11);
  EXPECT_STREQ(b, "HELP MAIL\r\n");
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_NOOP, nullptr), 6);
  EXPECT_STREQ(b, "NOOP\r\n");
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_ETRN, "@x.test"), 14);
  EXPECT_STREQ(b, "ETRN @x.test\r\n");
  EXPECT_EQ(smtp_command_line(b, 10, SMTPBULK_CMD_VRFY, "bob"), -ENOSPC);  // NUL too
}

TEST(CommandLine, TurnAndAturnRefusedWhateverTheArgument) {
  char b[SMTP_CMD_LINE_MAX] = "";
  for (auto c : {SMTPBULK_CMD_TURN, SMTPBULK_CMD_ATURN}) {
    EXPECT_EQ(smtp_command_check(c, nullptr), SMTPBULK_ETURN);
    EXPECT_EQ(smtp_command_check(c, "x\r\nDATA"), SMTPBULK_ETURN);
    EXPECT_EQ(smtp_command_line(b, sizeof(b), c, "x.test"), SMTPBULK_ETURN);
    EXPECT_STREQ(b, "");  // nothing written
  }
  EXPECT_STREQ(smtpbulk_strerror(SMTPBULK_ETURN),
               "TURN/ATURN are refused: obsolete and unsafe (RFC 2645)");
}

TEST(CommandLine, ArgumentChecked) {
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, nullptr), SMTPBULK_EBADPARAM);  // needs one
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_EXPN, nullptr), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_ETRN, nullptr), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, ""), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_NOOP, ""), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, " bob"), SMTPBULK_EBADPARAM);
  for (const char* bad : {"a\r\nRSET", "a\rb", "a\nb", "a\tb", "a\x7f", "\x01"})
    EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, bad), SMTPBULK_EBADPARAM) << bad;
  std::string longest(SMTPBULK_CMD_ARG_MAX, 'a');
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, longest.c_str()), 0);
  char b[SMTP_CMD_LINE_MAX];
  EXPECT_EQ(smtp_command_line(b, sizeof(b), SMTPBULK_CMD_EXPN, longest.c_str()),
            5 + SMTPBULK_CMD_ARG_MAX + 2);
  EXPECT_LE(strlen(b), 512u);  // RFC 5321 §4.5.3.1.4
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, (longest + "a").c_str()), SMTPBULK_EBADPARAM);
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_VRFY, "J\xc3\xb6rg Smith"), 0);  // UTF-8, spaces
  EXPECT_EQ(smtp_command_check(SMTPBULK_CMD_NOOP, nullptr), 0);
  EXPECT_EQ(smtp_command_check(static_cast<smtpbulk_cmd_t>(0), nullptr), -EINVAL);
  EXPECT_EQ(smtp_command_check(static_cast<smtpbulk_cmd_t>(99), nullptr), -EINVAL);
}

TEST(CommandLine, ReplyCopiedWithEveryLine) {
  const std::string raw =
      "214-2.0.0 first line\r\n214-2.0.0 second\r\n214-\r\n214 2.0.0 end\r\n";
  smtp_reply r;
  ASSERT_EQ(smtp_reply_parse(raw.data(), raw.size(), &r), (int)raw.size());
  smtpbulk_command_reply_t* cr = nullptr;
  ASSERT_EQ(smtp_command_reply_copy(&r, &cr), 0);
  EXPECT_EQ(cr->reply.code, 214);
  EXPECT_STREQ(cr->reply.enhanced, "2.0.0");
  EXPECT_STREQ(cr->reply.text, "first line\nsecond\n\nend");
  ASSERT_EQ(cr->n_lines, 4u);
  EXPECT_STREQ(cr->lines[0], "first line");
  EXPECT_STREQ(cr->lines[1], "second");
  EXPECT_STREQ(cr->lines[2], "");
  EXPECT_STREQ(cr->lines[3], "end");
  smtpbulk_command_reply_free(cr);
  const std::string one = "250\r\n";
  ASSERT_EQ(smtp_reply_parse(one.data(), one.size(), &r), 5);
  ASSERT_EQ(smtp_command_reply_copy(&r, &cr), 0);
  EXPECT_EQ(cr->reply.code, 250);
  EXPECT_STREQ(cr->reply.enhanced, "");
  EXPECT_STREQ(cr->reply.text, "");
  EXPECT_EQ(cr->n_lines, 1u);
  smtpbulk_command_reply_free(cr);
}

// ---- the session's command state ----------------------------------------------------

struct CmdFake {
  std::deque<sb_msg*> queue;
  std::vector<std::pair<std::string, int>> cmd_ends;  // (reply raw or "", err)
  std::vector<smtpbulk_status_t> done;
  size_t requeued = 0;
};

sb_msg* cf_next(void* ctx, sess*) {
  auto* f = static_cast<CmdFake*>(ctx);
  if (f->queue.empty()) return nullptr;
  sb_msg* m = f->queue.front();
  f->queue.pop_front();
  return m;
}
void cf_done(void* ctx, sess*, sb_msg*, smtpbulk_status_t st, int) {
  static_cast<CmdFake*>(ctx)->done.push_back(st);
}
void cf_requeue(void* ctx, sess*, sb_msg*) { static_cast<CmdFake*>(ctx)->requeued++; }
void cf_command(void* ctx, sess*, const smtp_reply* r, int err) {
  static_cast<CmdFake*>(ctx)->cmd_ends.emplace_back(r ? std::string(r->raw, r->raw_len) : "",
                                                   err);
}

class CommandSession : public ::testing::Test {
 protected:
  void SetUp() override {
    ops_.next_msg = cf_next;
    ops_.done = cf_done;
    ops_.requeue = cf_requeue;
    ops_.command = cf_command;
    cfg_.hello = "client.test";
    cfg_.max_attempts = 2;
    cfg_.retry_fail = 3;
    cfg_.pipeline = 2;
    cfg_.window = 4;
    ASSERT_EQ(sess_init(&s_, &cfg_, &ops_, &f_, 0, 0), 0);
  }
  void TearDown() override {
    sess_fini(&s_);
    for (auto* m : msgs_) sb_msg_free(m);
  }
  sb_msg* msg() {
    static const char* rcpt[] = {"r@x.test"};
    smtpbulk_message_t m{};
    m.struct_size = sizeof(m);
    m.from = "a@b.test";
    m.rcpts = rcpt;
    m.n_rcpts = 1;
    m.body = "hi\r\n";
    m.body_len = 4;
    m.host = -1;
    sb_msg* out = nullptr;
    EXPECT_EQ(sb_msg_new(nullptr, &m, &out), 0);
    msgs_.push_back(out);
    return out;
  }
  std::string out() {
    std::string o;
    for (int g = 0; g < 100 && sess_has_output(&s_); g++) {
      iovec iov[8];
      int n = sess_output(&s_, iov, 8);
      size_t t = 0;
      for (int i = 0; i < n; i++) {
        o.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
        t += iov[i].iov_len;
      }
      sess_handed(&s_, iov, n);
      sess_sent(&s_, t);
    }
    return o;
  }
  void feed(const std::string& in) { sess_feed(&s_, in.data(), in.size()); }
  void ready() {
    sess_connecting(&s_);
    sess_connected(&s_, 0);
    feed("220 hi\r\n");
    EXPECT_EQ(out(), "EHLO client.test\r\n");
    feed("250-x\r\n250 PIPELINING\r\n");
    ASSERT_TRUE(sess_is_idle(&s_));
  }
  sess_ops ops_{};
  sess_cfg cfg_{};
  sess s_{};
  CmdFake f_;
  std::vector<sb_msg*> msgs_;
};

TEST_F(CommandSession, ReplyGoesToTheCommandThenMessagesFlowAgain) {
  ready();
  ASSERT_EQ(sess_command(&s_, "HELP\r\n", 6), 0);
  EXPECT_TRUE(sess_in_command(&s_));
  EXPECT_EQ(sess_command(&s_, "NOOP\r\n", 6), -EBUSY);  // one at a time
  f_.queue.push_back(msg());
  EXPECT_EQ(sess_pump(&s_), 0u);  // no message while the command is out
  EXPECT_EQ(out(), "HELP\r\n");
  feed("214-a\r\n214 b\r\n");
  ASSERT_EQ(f_.cmd_ends.size(), 1u);
  EXPECT_EQ(f_.cmd_ends[0].first, "214-a\r\n214 b\r\n");
  EXPECT_EQ(f_.cmd_ends[0].second, 0);
  EXPECT_TRUE(sess_is_idle(&s_));
  EXPECT_EQ(sess_pump(&s_), 1u);  // the connection layer offers the message next
  EXPECT_EQ(out().substr(0, 10), "MAIL FROM:");
}

TEST_F(CommandSession, OnlyOnAnIdleSession) {
  EXPECT_EQ(sess_command(&s_, "NOOP\r\n", 6), -EBUSY);  // not connected
  ready();
  f_.queue.push_back(msg());
  sess_pump(&s_);
  EXPECT_TRUE(sess_in_transaction(&s_));
  EXPECT_EQ(sess_command(&s_, "NOOP\r\n", 6), -EBUSY);  // never inside a transaction
}

TEST_F(CommandSession, ASecondReplyInTheSameReadEndsTheConnection) {
  ready();
  ASSERT_EQ(sess_command(&s_, "VRFY x\r\n", 8), 0);
  out();
  feed("252 maybe\r\n250 extra\r\n");
  ASSERT_EQ(f_.cmd_ends.size(), 1u);  // the reply, then the connection fails: EPROTO
  EXPECT_TRUE(sess_is_closed(&s_));
  EXPECT_EQ(sess_error(&s_), SMTPBULK_EPROTO);
}

TEST_F(CommandSession, GarbledReplyOrLossEndsItWithTheReason) {
  ready();
  ASSERT_EQ(sess_command(&s_, "VRFY x\r\n", 8), 0);
  out();
  feed("25x nonsense\r\n");
  ASSERT_EQ(f_.cmd_ends.size(), 1u);
  EXPECT_EQ(f_.cmd_ends[0].first, "");
  EXPECT_EQ(f_.cmd_ends[0].second, SMTPBULK_EPROTO);
  EXPECT_TRUE(sess_is_closed(&s_));
}

TEST_F(CommandSession, ReplyThatFitsNoCommandIsOutOfStep) {
  ready();
  ASSERT_EQ(sess_command(&s_, "NOOP\r\n", 6), 0);
  out();
  feed("354 go ahead\r\n");
  ASSERT_EQ(f_.cmd_ends.size(), 1u);
  EXPECT_EQ(f_.cmd_ends[0].second, SMTPBULK_EPROTO);
}

TEST_F(CommandSession, HangAbortAnd421) {
  ready();
  ASSERT_EQ(sess_command(&s_, "NOOP\r\n", 6), 0);
  out();
  sess_hang(&s_);
  ASSERT_EQ(f_.cmd_ends.size(), 1u);
  EXPECT_EQ(f_.cmd_ends[0].second, SMTPBULK_ETIMEDOUT);
  sess_reset(&s_);
  ready();
  ASSERT_EQ(sess_command(&s_, "NOOP\r\n", 6), 0);
  out();
  sess_cancel_work(&s_);  // the engine stops: the caller hears of it now
  ASSERT_EQ(f_.cmd_ends.size(), 2u);
  EXPECT_EQ(f_.cmd_ends[1].second, SMTPBULK_ECANCELLED);
  EXPECT_TRUE(sess_in_command(&s_));  // the reply is still owed by the server
  feed("250 ok\r\n");
  EXPECT_EQ(f_.cmd_ends.size(), 2u);  // no second end
  EXPECT_TRUE(sess_is_idle(&s_));
  EXPECT_EQ(sess_quit(&s_), 1);  // and it says QUIT
  EXPECT_EQ(out(), "QUIT\r\n");
  feed("221 bye\r\n");
  sess_reset(&s_);
  ready();
  ASSERT_EQ(sess_command(&s_, "NOOP\r\n", 6), 0);
  out();
  feed("421 4.3.2 going down\r\n");  // the server's answer, and the end
  ASSERT_EQ(f_.cmd_ends.size(), 3u);
  EXPECT_EQ(f_.cmd_ends[2].first, "421 4.3.2 going down\r\n");
  EXPECT_TRUE(sess_is_over(&s_));
}

// The stop right behind a refused message: the RSET written at once after it is let
// finish, and the connection says QUIT (it used to be closed without one).
TEST_F(CommandSession, StopWhileOnlyAnRsetIsOutEndsWithQuit) {
  cfg_.pipeline = 0;
  ready();
  f_.queue.push_back(msg());
  sess_pump(&s_);
  EXPECT_EQ(out().substr(0, 10), "MAIL FROM:");
  feed("250 ok\r\n");
  EXPECT_EQ(out().substr(0, 8), "RCPT TO:");
  feed("550 5.1.1 no\r\n");  // the one recipient refused: the message ends
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(out(), "RSET\r\n");
  EXPECT_TRUE(sess_in_transaction(&s_));
  sess_cancel_work(&s_);
  EXPECT_FALSE(sess_is_over(&s_));
  feed("250 ok\r\n");
  EXPECT_TRUE(sess_is_idle(&s_));
  EXPECT_EQ(sess_quit(&s_), 1);
  EXPECT_EQ(out(), "QUIT\r\n");
}

TEST_F(CommandSession, PhantomReplyBeforeTheCommandLeft) {
  ready();
  ASSERT_EQ(sess_command(&s_, "NOOP\r\n", 6), 0);
  feed("250 ok\r\n");  // the command was never handed out: not its reply
  ASSERT_EQ(f_.cmd_ends.size(), 1u);
  EXPECT_EQ(f_.cmd_ends[0].second, SMTPBULK_EPROTO);
}

}  // namespace
