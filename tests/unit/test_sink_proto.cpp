// The sink's server state machine, driven with buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

extern "C" {
#include "sink_proto.h"
}

namespace {

struct Sink {
  sink_cfg cfg{};
  sink_conn c{};
  Sink() {
    cfg.name = "sink.test";
    cfg.size_max = 1000;
    sink_conn_init(&c, &cfg, 1);
  }
  // Feed everything in pieces of `piece` bytes; return and clear the replies.
  std::string feed(const std::string& in, size_t piece = 1 << 20) {
    std::string out;
    size_t off = 0;
    while (off < in.size()) {
      size_t n = std::min(piece, in.size() - off);
      size_t used = sink_input(&c, in.data() + off, n);
      off += used;
      out.append(c.out, c.out_len);
      c.out_len = 0;
      if (used == 0 && c.mode != SINK_CLOSING && c.mode != SINK_HANG) break;
    }
    out.append(c.out, c.out_len);
    c.out_len = 0;
    return out;
  }
};

const std::string kSession =
    "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n"
    "Subject: x\r\n\r\n..dot\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4\r\nab\r\n"
    "BDAT 3 LAST\r\ncd\nRSET\r\nQUIT\r\n";

TEST(SinkProto, PipelinedSessionSameForEverySplit) {
  Sink whole;
  std::string want = whole.feed(kSession);
  EXPECT_EQ(whole.c.counts.messages, 2u);
  EXPECT_EQ(whole.c.counts.recipients, 3u);
  EXPECT_EQ(whole.c.counts.bytes, 21u + 7u);  // the DATA body as received, the BDAT bytes
  EXPECT_EQ(whole.c.mode, SINK_CLOSING);
  EXPECT_NE(want.find("250-CHUNKING"), std::string::npos);
  EXPECT_NE(want.find("354 "), std::string::npos);
  EXPECT_NE(want.find("221 "), std::string::npos);
  for (size_t piece = 1; piece < 40; piece++) {
    Sink s;
    ASSERT_EQ(s.feed(kSession, piece), want) << "piece " << piece;
    EXPECT_EQ(s.c.counts.messages, 2u);
  }
}

TEST(SinkProto, TransactionRules) {
  Sink s;
  std::string r = s.feed("RCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\n");
  EXPECT_EQ(r,
            "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n"
            "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n"
            "554 5.5.1 Error: no valid recipients\r\n");
  // BDAT without recipients: the chunk is read (so the stream stays in sync) and refused.
  r = s.feed("BDAT 4 LAST\r\nabcdNOOP\r\n");
  EXPECT_EQ(r, "554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n");
  EXPECT_EQ(s.c.counts.messages, 0u);
}

TEST(SinkProto, LongLineAndUnknownCommand) {
  Sink s;
  std::string r = s.feed(std::string(5000, 'A') + "\r\nFOO\r\n");
  EXPECT_EQ(r, "500 5.5.2 Error: line too long\r\n502 5.5.2 Error: command not recognized\r\n");
}

TEST(SinkProto, FaultsAtFullOdds) {
  Sink s;
  s.cfg.faults.tempfail_rcpt = 100;
  std::string r = s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
  EXPECT_EQ(r.substr(r.find("\r\n") + 2, 3), "450");
  Sink d;
  d.cfg.faults.reject_data = 100;
  r = d.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_NE(r.find("554 5.6.0"), std::string::npos);
  EXPECT_EQ(d.c.counts.messages, 0u);
  EXPECT_EQ(d.c.counts.rejected, 1u);
}

TEST(SinkProto, CloseAndHangAfter) {
  Sink s;
  s.cfg.faults.close_after = 1;
  std::string r = s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nxNOOP\r\n");
  EXPECT_NE(r.find("421 4.3.0"), std::string::npos);
  EXPECT_EQ(r.find("250 2.0.0 Ok\r\n"), std::string::npos);  // nothing after the 421
  EXPECT_EQ(s.c.mode, SINK_CLOSING);
  Sink h;
  h.cfg.faults.hang_after = 1;
  r = h.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nxNOOP\r\n");
  EXPECT_EQ(h.c.mode, SINK_HANG);
  EXPECT_EQ(r.find("NOOP"), std::string::npos);
  EXPECT_EQ(r.rfind("250 2.0.0 Ok: queued\r\n"), r.size() - 22);  // last reply: the message
}

TEST(SinkProto, DelayAsksTheServerToHoldReplies) {
  Sink none;
  none.feed("NOOP\r\nNOOP\r\n");
  EXPECT_EQ(none.c.delay_req, 0);  // no delay fault: never asked
  Sink all;
  all.cfg.faults.delay_pct = 100;
  all.cfg.faults.delay_ms = 5;
  all.feed("NOOP\r\n");
  EXPECT_EQ(all.c.delay_req, 1);
  // A fraction: over many replies, some held and some not.
  Sink some;
  some.cfg.faults.delay_pct = 30;
  some.cfg.faults.delay_ms = 5;
  int asked = 0;
  for (int i = 0; i < 1000; i++) {
    some.feed("NOOP\r\n");
    asked += some.c.delay_req;
    some.c.delay_req = 0;
  }
  EXPECT_GT(asked, 200);
  EXPECT_LT(asked, 400);
}

}  // namespace

namespace {
std::string b64(const std::string& s) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string o;
  size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8 | (unsigned char)s[i + 2];
    o += t[v >> 18]; o += t[(v >> 12) & 63]; o += t[(v >> 6) & 63]; o += t[v & 63];
  }
  if (s.size() - i == 1) {
    unsigned v = (unsigned char)s[i] << 16;
    o += t[v >> 18]; o += t[(v >> 12) & 63]; o += "==";
  } else if (s.size() - i == 2) {
    unsigned v = (unsigned char)s[i] << 16 | (unsigned char)s[i + 1] << 8;
    o += t[v >> 18]; o += t[(v >> 12) & 63]; o += t[(v >> 6) & 63]; o += "=";
  }
  return o;
}
}  // namespace

TEST(SinkProto, AuthPlainLoginAndRequiredBeforeMail) {
  Sink s;
  s.cfg.auth_user = "tim";
  s.cfg.auth_pass = "tanstaaftanstaaf";
  std::string r = s.feed("EHLO c\r\nMAIL FROM:<a@b>\r\n");
  EXPECT_NE(r.find("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), std::string::npos);
  EXPECT_NE(r.find("530 5.7.0"), std::string::npos);  // no MAIL before AUTH
  r = s.feed("AUTH PLAIN " + b64(std::string("\0tim\0wrong", 10)) + "\r\n");
  EXPECT_EQ(r, "535 5.7.8 Authentication credentials invalid\r\n");
  r = s.feed("AUTH PLAIN\r\n" + b64(std::string("\0tim\0tanstaaftanstaaf", 21)) + "\r\n");
  EXPECT_EQ(r, "334 \r\n235 2.7.0 Authentication successful\r\n");
  r = s.feed("MAIL FROM:<a@b>\r\n");
  EXPECT_EQ(r, "250 2.1.0 Ok\r\n");
  EXPECT_EQ(s.c.counts.auth_ok, 1u);
  EXPECT_EQ(s.c.counts.auth_failed, 1u);

  Sink l;
  l.cfg.auth_user = "tim";
  l.cfg.auth_pass = "pw";
  r = l.feed("AUTH LOGIN\r\n" + b64("tim") + "\r\n" + b64("pw") + "\r\n");
  EXPECT_EQ(r, "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n");
  r = l.feed("AUTH LOGIN\r\n");
  EXPECT_EQ(r, "503 5.5.1 Error: already authenticated\r\n");
}

TEST(SinkProto, AuthCramMd5AndCancel) {
  Sink s;
  s.cfg.auth_user = "tim";
  s.cfg.auth_pass = "tanstaaftanstaaf";
  std::string r = s.feed("AUTH CRAM-MD5\r\n");
  ASSERT_EQ(r.rfind("334 ", 0), 0u);
  // The challenge is the sink's: a wrong digest is refused, a cancel is honoured.
  r = s.feed(b64("tim 00000000000000000000000000000000") + "\r\n");
  EXPECT_EQ(r, "535 5.7.8 Authentication credentials invalid\r\n");
  s.feed("AUTH CRAM-MD5\r\n");
  r = s.feed("*\r\n");
  EXPECT_EQ(r, "501 5.7.0 Authentication cancelled\r\n");
  Sink none;
  EXPECT_EQ(none.feed("AUTH PLAIN\r\n"), "502 5.5.1 Error: authentication not enabled\r\n");
}

// ---- LMTP (RFC 2033) ------------------------------------------------------------------

namespace {

struct Lmtp : Sink {
  Lmtp() { cfg.lmtp = 1; }
};

const std::string kLmtpSession =
    "LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<ok@d>\r\nRCPT TO:<lmtp-temp-1@d>\r\n"
    "RCPT TO:<lmtp-perm.x@d> NOTIFY=NEVER\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";

TEST(SinkLmtp, PipelinedDotGetsOneReplyPerRecipientInOrder) {
  Lmtp whole;
  sink_greet(&whole.c);
  std::string want = whole.feed(kLmtpSession);
  EXPECT_EQ(want,
            "220 sink.test LMTP smtpbulk sink\r\n"
            "250-sink.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE 1000\r\n"
            "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n"
            "250 2.1.5 <ok@d> delivered\r\n452 4.2.2 Mailbox full\r\n"
            "550 5.2.1 Mailbox disabled\r\n221 2.0.0 Bye\r\n");
  EXPECT_EQ(whole.c.counts.messages, 1u);  // one recipient had it: accepted
  EXPECT_EQ(whole.c.counts.recipients, 1u);
  EXPECT_EQ(whole.c.counts.lmtp_rcpt_failed, 2u);
  EXPECT_EQ(whole.c.counts.rejected, 0u);
  for (size_t piece = 1; piece < 30; piece++) {
    Lmtp s;
    sink_greet(&s.c);
    ASSERT_EQ(s.feed(kLmtpSession, piece), want) << "piece " << piece;
  }
}

TEST(SinkLmtp, BdatLastGetsOneReplyPerRecipient) {
  Lmtp s;
  std::string r = s.feed(
      "LHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<lmtp-perm@d>\r\nRCPT TO:<x@d>\r\n"
      "BDAT 3\r\nabcBDAT 2 LAST\r\nde");
  EXPECT_EQ(r.substr(r.find("250 DSN\r\n") + 9),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
            "250 2.0.0 Ok: chunk received\r\n"  // a chunk that is not LAST: one reply
            "550 5.2.1 Mailbox disabled\r\n250 2.1.5 <x@d> delivered\r\n");
  EXPECT_EQ(s.c.counts.messages, 1u);
  EXPECT_EQ(s.c.counts.bytes, 5u);
  EXPECT_EQ(s.c.counts.lmtp_rcpt_failed, 1u);
  // The next transaction starts with no recipients left over.
  r = s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<y@d>\r\nBDAT 1 LAST\r\nz");
  EXPECT_EQ(r, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 <y@d> delivered\r\n");
}

TEST(SinkLmtp, EhloAndHeloRefusedLhloOnlyInLmtp) {
  Lmtp s;
  EXPECT_EQ(s.feed("EHLO c\r\nHELO c\r\n"),
            "500 5.5.1 this is LMTP: say LHLO\r\n500 5.5.1 this is LMTP: say LHLO\r\n");
  Sink smtp;
  EXPECT_EQ(smtp.feed("LHLO c\r\n"), "502 5.5.2 Error: command not recognized\r\n");
}

TEST(SinkLmtp, EveryRecipientRefusedMeansTheMessageWasNot) {
  Lmtp s;
  std::string r = s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<lmtp-temp@d>\r\nRCPT TO:lmtp-perm@d\r\n"
                         "DATA\r\nx\r\n.\r\n");
  EXPECT_NE(r.find("452 4.2.2 Mailbox full\r\n550 5.2.1 Mailbox disabled\r\n"), std::string::npos);
  EXPECT_EQ(s.c.counts.messages, 0u);
  EXPECT_EQ(s.c.counts.rejected, 1u);
  EXPECT_EQ(s.c.counts.lmtp_rcpt_failed, 2u);
}

TEST(SinkLmtp, DataFaultRefusesForEveryRecipient) {
  Lmtp s;
  s.cfg.faults.tempfail_data = 100;
  std::string r = s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nDATA\r\nx\r\n.\r\n");
  const std::string f = "451 4.3.0 sink: try again later (fault injection)\r\n";
  EXPECT_EQ(r.substr(r.size() - 2 * f.size()), f + f);
  EXPECT_EQ(s.c.counts.messages, 0u);
  EXPECT_EQ(s.c.counts.lmtp_rcpt_failed, 2u);
}

TEST(SinkLmtp, RecipientsBeyondWhatIsKeptGet452) {
  Lmtp s;
  std::string in = "MAIL FROM:<a@b>\r\n";
  for (int i = 0; i <= SINK_LMTP_RCPTS; i++) in += "RCPT TO:<r" + std::to_string(i) + "@d>\r\n";
  in += "DATA\r\nx\r\n.\r\n";
  std::string r = s.feed(in);
  EXPECT_NE(r.find("452 4.5.3 Error: too many recipients\r\n354 "), std::string::npos);
  EXPECT_EQ(s.c.counts.recipients, (uint64_t)SINK_LMTP_RCPTS);
  EXPECT_NE(r.find("<r99@d> delivered"), std::string::npos);
  EXPECT_EQ(r.find("<r100@d>"), std::string::npos);
}

}  // namespace

// ---- --max-rate and per-second counts -----------------------------------------------

extern "C" {
#include "sink_rate.h"
}

namespace {

TEST(SinkRateProto, MailOverTheLimitGets421AndCloses) {
  Sink s;
  s.cfg.rate = sink_rate_new(2);
  ASSERT_NE(s.cfg.rate, nullptr);
  s.c.now_s = 0;
  std::string msg = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 1 LAST\r\nx";
  std::string r = s.feed(msg + msg + msg + "NOOP\r\n");
  const std::string r421 =
      "421 4.7.0 Rate limit exceeded: too many messages this second, try again later\r\n";
  ASSERT_GE(r.size(), r421.size());
  EXPECT_EQ(r.substr(r.size() - r421.size()), r421);  // the last reply: nothing after it
  EXPECT_EQ(r.find("NOOP"), std::string::npos);
  EXPECT_EQ(s.c.mode, SINK_CLOSING);
  EXPECT_EQ(s.c.counts.messages, 2u);
  EXPECT_EQ(s.c.counts.throttled, 1u);
  // Another connection, the next second: admitted again.
  Sink n;
  n.cfg.rate = s.cfg.rate;
  n.c.now_s = 1;
  EXPECT_EQ(n.feed("MAIL FROM:<a@b>\r\n"), "250 2.1.0 Ok\r\n");
  sink_rate_free(s.cfg.rate);
}

TEST(SinkRateProto, MessageCountsInTheSecondOfItsMail) {
  Sink s;
  s.cfg.rate = sink_rate_new(0);
  ASSERT_NE(s.cfg.rate, nullptr);
  s.c.now_s = 2;
  s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  s.c.now_s = 3;  // the data ends a second later
  s.feed("x\r\n.\r\n");
  uint64_t out[SINK_PER_SECOND_MAX];
  ASSERT_EQ(sink_per_second_read(s.cfg.rate, out, SINK_PER_SECOND_MAX), 3u);
  EXPECT_EQ(out[2], 1u);
  // A message refused after its data is not counted.
  s.cfg.faults.reject_data = 100;
  s.feed("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_EQ(sink_per_second_read(s.cfg.rate, out, SINK_PER_SECOND_MAX), 3u);
  EXPECT_EQ(out[2], 1u);
  sink_rate_free(s.cfg.rate);
}

}  // namespace

// The one-off commands (smtpbulk_command()'s peer in tests).
TEST(SinkProto, OneOffCommands) {
  Sink s;
  EXPECT_EQ(s.feed("VRFY bob\r\n").substr(0, 10), "252 2.5.2 ");
  EXPECT_EQ(s.feed("VRFY\r\n").substr(0, 4), "501 ");
  EXPECT_EQ(s.feed("EXPN list-a\r\n").substr(0, 4), "252 ");
  EXPECT_EQ(s.feed("EXPN staff\r\n").substr(0, 10), "550 5.1.1 ");
  std::string help = s.feed("HELP\r\n");
  EXPECT_EQ(help.substr(0, 4), "214-");
  EXPECT_EQ(std::count(help.begin(), help.end(), '\n'), 4);
  EXPECT_NE(help.find("\r\n214 2.0.0 End of HELP info\r\n"), std::string::npos);
  EXPECT_EQ(s.feed("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(s.feed("ETRN @sink.test\r\n").substr(0, 4), "250 ");
  EXPECT_EQ(s.feed("ETRN sink.test\r\n").substr(0, 4), "250 ");
  EXPECT_EQ(s.feed("ETRN other.test\r\n").substr(0, 4), "458 ");
  EXPECT_EQ(s.feed("ETRN\r\n").substr(0, 4), "501 ");
  // Between them, a transaction goes on as before.
  EXPECT_EQ(s.feed("MAIL FROM:<a@b>\r\nVRFY x\r\nRCPT TO:<c@d>\r\n"),
            "250 2.1.0 Ok\r\n252 2.5.2 Cannot VRFY user, but will accept message and "
            "attempt delivery\r\n250 2.1.5 Ok\r\n");
}
