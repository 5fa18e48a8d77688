// The session state machine driven with buffers alone: no sockets, no threads.
#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

extern "C" {
#include "message.h"
#include "session.h"
}

namespace {

struct Fake {
  std::deque<sb_msg*> queue;
  struct Done {
    sb_msg* m;
    smtpbulk_status_t st;
    int err;
    std::vector<int> rcpt_codes;
    int final_code;
  };
  std::vector<Done> done;
  std::vector<sb_msg*> requeued;
};

sb_msg* next_msg(void* ctx, sess*) {
  auto* f = static_cast<Fake*>(ctx);
  if (f->queue.empty()) return nullptr;
  sb_msg* m = f->queue.front();
  f->queue.pop_front();
  return m;
}
void done(void* ctx, sess*, sb_msg* m, smtpbulk_status_t st, int err) {
  auto* f = static_cast<Fake*>(ctx);
  Fake::Done d{m, st, err, {}, m->final.code};
  for (size_t i = 0; i < m->n_rcpts; i++) d.rcpt_codes.push_back(m->rcpt_recs[i].code);
  f->done.push_back(d);
}
void requeue(void* ctx, sess*, sb_msg* m) { static_cast<Fake*>(ctx)->requeued.push_back(m); }

const sess_ops kOps = {next_msg, done, requeue, nullptr};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg_.hello = "client.test";
    cfg_.max_attempts = 2;
    cfg_.retry_fail = 3;
    cfg_.debug = 0;
    cfg_.pipeline = 0;
    cfg_.window = 4;
    ASSERT_EQ(sess_init(&s_, &cfg_, &kOps, &f_, 0, 0), 0);
  }
  void TearDown() override {
    sess_fini(&s_);
    for (auto* m : msgs_) sb_msg_free(m);
  }
  sb_msg* msg(std::vector<const char*> rcpts, const std::string& body,
              const char* from = "a@b.test") {
    smtpbulk_message_t m{};
    m.struct_size = sizeof(m);
    m.from = from;
    m.rcpts = rcpts.data();
    m.n_rcpts = rcpts.size();
    m.body = body.data();
    m.body_len = body.size();
    m.host = -1;
    sb_msg* out = nullptr;
    EXPECT_EQ(sb_msg_new(nullptr, &m, &out), 0);
    msgs_.push_back(out);
    return out;
  }
  // Everything the session wants to send, marked as sent.
  std::string take_output() {
    std::string out;
    for (int guard = 0; guard < 1000 && sess_has_output(&s_); guard++) {
      iovec iov[4];
      int n = sess_output(&s_, iov, 4);
      size_t total = 0;
      for (int i = 0; i < n; i++) {
        out.append(static_cast<char*>(iov[i].iov_base), iov[i].iov_len);
        total += iov[i].iov_len;
      }
      sess_sent(&s_, total);
    }
    return out;
  }
  void feed(const std::string& in) {
    if (pooled_) {  // as from io_uring's buffer pool: a buffer the session doesn't own
      std::vector<char> pool(in.begin(), in.end());
      sess_feed(&s_, pool.data(), pool.size());
      std::fill(pool.begin(), pool.end(), 'X');  // reused at once: nothing may point here
      return;
    }
    size_t cap;
    char* p = sess_rspace(&s_, &cap);
    ASSERT_LE(in.size(), cap);
    memcpy(p, in.data(), in.size());
    sess_input(&s_, in.size());
  }
  void connect_ready(const std::string& ehlo = "250-x\r\n250 SIZE 1000\r\n") {
    sess_connecting(&s_);
    sess_connected(&s_, 0);
    feed("220 hi\r\n");
    EXPECT_EQ(take_output(), "EHLO client.test\r\n");
    feed(ehlo);
  }

  bool pooled_ = false;
  sess_cfg cfg_{};
  sess s_{};
  Fake f_;
  std::vector<sb_msg*> msgs_;
};

TEST_F(SessionTest, LockstepDelivery) {
  f_.queue.push_back(msg({"r1@x", "r2@x"}, "hi\r\n"));
  connect_ready();
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test> SIZE=4\r\n");
  EXPECT_EQ(take_output(), "");  // lockstep: nothing more until the reply
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<r1@x>\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<r2@x>\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  EXPECT_EQ(take_output(), "hi\r\n.\r\n");
  feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(s_.state, SESS_IDLE);
}

TEST_F(SessionTest, RepliesSplitAcrossReads) {
  f_.queue.push_back(msg({"r@x"}, "x\r\n"));
  connect_ready();
  take_output();
  feed("2");
  feed("50 o");
  EXPECT_EQ(take_output(), "");
  feed("k\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<r@x>\r\n");
}

TEST_F(SessionTest, PooledReceivesParseInPlaceAndGatherSplitReplies) {
  pooled_ = true;
  f_.queue.push_back(msg({"r@x", "s@x"}, "x\r\n"));
  connect_ready("250-x\r\n250 ENHANCEDSTATUSCODES\r\n");
  EXPECT_EQ(s_.rbuf, nullptr);  // whole replies: no buffer of its own
  take_output();
  feed("2");
  feed("50 o");
  EXPECT_EQ(take_output(), "");
  ASSERT_NE(s_.rbuf, nullptr);  // a split reply is gathered
  feed("k\r\n250-2.1");        // one whole reply and the start of the next
  EXPECT_EQ(take_output(), "RCPT TO:<r@x>\r\n");
  feed(".5 first\r\n250 2.1.5 last line\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<s@x>\r\n");
  feed("550 5.1.1 no\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  take_output();
  feed("250 2.0.0 queued\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_PARTIAL);
  sb_msg_finish(f_.done[0].m, f_.done[0].st, 0);
  const smtpbulk_reply_t& r = f_.done[0].m->rcpts[0].reply;
  EXPECT_EQ(r.code, 250);
  EXPECT_STREQ(r.enhanced, "2.1.5");
  EXPECT_STREQ(r.text, "first");  // survived the pool buffer being reused (a recipient's
                                  // reply keeps its first line)
}

TEST_F(SessionTest, PooledOverlongReplyEndsTheConnection) {
  pooled_ = true;
  connect_ready();
  std::string junk(SMTP_REPLY_MAX + 100, 'a');
  junk.replace(0, 4, "250-");
  feed(junk);
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_ETOOLONG);
}

TEST_F(SessionTest, HeloFallback) {
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  take_output();
  feed("502 5.5.2 what\r\n");
  EXPECT_EQ(take_output(), "HELO client.test\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_EQ(s_.caps.flags, 0u);
}

TEST_F(SessionTest, PartialRecipients) {
  f_.queue.push_back(msg({"good@x", "bad@x"}, "b\r\n"));
  connect_ready();
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("550 5.1.1 no\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  take_output();
  feed("250 ok\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_PARTIAL);
  EXPECT_EQ(f_.done[0].rcpt_codes, (std::vector<int>{250, 550}));
}

// "Too many recipients": the transaction goes on with those accepted, and the message
// comes back (requeue, not done) for a further one that sends only the rest; its
// result then merges both.
TEST_F(SessionTest, TooManyRecipientsSplitTheMessage) {
  sb_msg* m = msg({"a@x", "b@x", "c@x"}, "b\r\n");
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<a@x>\r\n");
  feed("250 ok\r\n");
  take_output();
  feed("550 5.1.1 no such user\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<c@x>\r\n");
  feed("452 4.5.3 Error: too many recipients\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  take_output();
  feed("250 ok\r\n");
  EXPECT_TRUE(f_.done.empty());
  ASSERT_EQ(f_.requeued.size(), 1u);
  EXPECT_EQ(m->rcpts_done, 2u);
  EXPECT_EQ(m->rcpts_delivered, 1u);
  f_.queue.push_back(m);
  sess_pump(&s_);
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test> SIZE=3\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<c@x>\r\n");  // a and b have their verdict
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  take_output();
  feed("250 ok\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_PARTIAL);
  EXPECT_EQ(f_.done[0].rcpt_codes, (std::vector<int>{250, 550, 250}));
  EXPECT_EQ(m->attempts, 2u);
  EXPECT_EQ(m->free_tries, 1u);  // the split is not counted against max_attempts
}

// A server that takes no recipient at all ("too many" to the first) is a 4xx for
// the message: it is not split forever.
TEST_F(SessionTest, TooManyRecipientsToTheFirstIsATemporaryFailure) {
  f_.queue.push_back(msg({"a@x"}, "b\r\n"));
  connect_ready();
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("452 4.5.3 Error: too many recipients\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);
  EXPECT_TRUE(f_.requeued.empty());
}

TEST_F(SessionTest, AllRecipientsRefusedThenRsetAndReuse) {
  f_.queue.push_back(msg({"bad@x"}, "b\r\n"));
  f_.queue.push_back(msg({"ok@x"}, "b\r\n"));
  connect_ready();
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("450 4.2.0 later\r\n");
  EXPECT_EQ(take_output(), "RSET\r\n");  // no DATA for a message nobody will get
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);  // a 4xx refusal is temporary
  EXPECT_EQ(f_.done[0].final_code, 450);
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test> SIZE=3\r\n");
}

TEST_F(SessionTest, MailRejectedIsPermanent) {
  f_.queue.push_back(msg({"r@x"}, "b\r\n"));
  connect_ready();
  take_output();
  feed("553 5.7.1 sender refused\r\n");
  EXPECT_EQ(take_output(), "RSET\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
}

TEST_F(SessionTest, BodyIsStuffedAndStreamed) {
  std::string body = ".dot\nline\n";
  body += std::string(50000, 'y');
  f_.queue.push_back(msg({"r@x"}, body));
  connect_ready("250-x\r\n250 SIZE\r\n");  // no limit
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("354 go\r\n");
  std::string out = take_output();
  EXPECT_EQ(out.substr(0, 16), "..dot\r\nline\r\nyyy");
  EXPECT_EQ(out.size(), body.size() + 1 + 2 + 2 + 3);  // "." + 2 CRs + CRLF + ".\r\n"
  EXPECT_EQ(out.substr(out.size() - 5), "\r\n.\r\n");
}

TEST_F(SessionTest, SizeLimitRefusedLocally) {
  f_.queue.push_back(msg({"r@x"}, std::string(2000, 'x')));
  connect_ready("250-x\r\n250 SIZE 1000\r\n");
  EXPECT_EQ(take_output(), "");  // nothing sent for a message the server cannot take
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
  EXPECT_EQ(f_.done[0].err, SMTPBULK_EMSGSIZE);
}

TEST_F(SessionTest, ConnectionLossRequeuesThenFails) {
  sb_msg* m = msg({"r@x"}, "b\r\n");
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  sess_io_error(&s_, SMTPBULK_ECLOSED);
  ASSERT_EQ(f_.requeued.size(), 1u);  // first attempt: back to the queue
  EXPECT_EQ(s_.state, SESS_CLOSED);
  sess_reset(&s_);
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  feed("421 4.3.2 shutting down\r\n");  // the server's doing: not charged
  ASSERT_EQ(f_.requeued.size(), 2u);
  EXPECT_TRUE(f_.done.empty());
  EXPECT_EQ(s_.error, SMTPBULK_ESHUTDOWN);
  EXPECT_EQ(m->free_tries, 1u);
  sess_reset(&s_);
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  sess_io_error(&s_, SMTPBULK_ECLOSED);
  ASSERT_EQ(f_.done.size(), 1u);  // the second charged attempt was the last (max 2)
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);
  EXPECT_EQ(f_.done[0].err, SMTPBULK_ECLOSED);
  EXPECT_EQ(m->attempts, 3u);
}

TEST_F(SessionTest, HangEndsTheConnectionAndRetriesPerRetryHang) {
  cfg_.retry_hang = 1;
  sb_msg* m = msg({"r@x"}, "b\r\n");
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  EXPECT_TRUE(sess_waiting(&s_));  // MAIL is out: the watchdog times this
  sess_hang(&s_);
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_ETIMEDOUT);
  ASSERT_EQ(f_.requeued.size(), 1u);
  EXPECT_FALSE(sess_waiting(&s_));
  sess_reset(&s_);
  f_.queue.push_back(m);
  connect_ready();
  take_output();
  sess_hang(&s_);
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_TIMED_OUT);
  EXPECT_EQ(f_.done[0].err, SMTPBULK_ETIMEDOUT);
}

TEST_F(SessionTest, IdleConnectionIsNotWaiting) {
  connect_ready();
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_FALSE(sess_waiting(&s_));
}

TEST_F(SessionTest, MalformedAndTooLongRepliesEndTheConnection) {
  connect_ready();
  feed("hello there\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
  sess_reset(&s_);
  connect_ready();
  std::string endless(SMTP_REPLY_LINE_MAX + 10, 'x');
  feed("250 " + endless);
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_ETOOLONG);
}

TEST_F(SessionTest, UnsolicitedReplyIsProtocolError) {
  connect_ready();
  feed("250 surprise\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
}

TEST_F(SessionTest, GivesUpAfterRetryFailConnections) {
  for (unsigned i = 0; i < cfg_.retry_fail; i++) {
    sess_connecting(&s_);
    sess_connected(&s_, -ECONNREFUSED);
    if (i + 1 < cfg_.retry_fail) {
      EXPECT_EQ(s_.state, SESS_CLOSED);
      sess_reset(&s_);
    }
  }
  EXPECT_EQ(s_.state, SESS_DEAD);
}

TEST_F(SessionTest, QuitOnlyWhenIdle) {
  connect_ready();
  EXPECT_EQ(sess_quit(&s_), 1);
  EXPECT_EQ(take_output(), "QUIT\r\n");
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, 0);
}

// ---- pipelining ---------------------------------------------------------------------

static const char kPipeEhlo[] = "250-x\r\n250 PIPELINING\r\n";
static const char kChunkEhlo[] = "250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n";

TEST_F(SessionTest, Mode1EnvelopeInOneWriteBodyAfter354) {
  cfg_.pipeline = 1;
  f_.queue.push_back(msg({"a@x", "b@x"}, "hi\r\n"));
  connect_ready(kPipeEhlo);
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
  feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "hi\r\n.\r\n");
  feed("250 queued\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_PARTIAL);
  EXPECT_EQ(f_.done[0].rcpt_codes, (std::vector<int>{250, 550}));
}

TEST_F(SessionTest, Mode1MailRefusedRestDrainedThenRset) {
  cfg_.pipeline = 1;
  f_.queue.push_back(msg({"a@x"}, "hi\r\n"));
  f_.queue.push_back(msg({"b@x"}, "ho\r\n"));
  connect_ready(kPipeEhlo);
  take_output();
  feed("550 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
  EXPECT_EQ(f_.done[0].final_code, 550);  // the MAIL reply decided, not the 503s
  // The next message goes out behind an RSET, in the same write.
  EXPECT_EQ(take_output(), "RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
  feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "ho\r\n.\r\n");
  feed("250 ok\r\n");
  ASSERT_EQ(f_.done.size(), 2u);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_DELIVERED);
}

TEST_F(SessionTest, Mode1AllRefusedBut354OnlyDotIsSent) {
  cfg_.pipeline = 1;
  f_.queue.push_back(msg({"a@x"}, "secret body\r\n"));
  connect_ready(kPipeEhlo);
  take_output();
  feed("250 ok\r\n450 4.2.1 busy\r\n354 go ahead anyway\r\n");
  EXPECT_EQ(take_output(), ".\r\n");  // RFC 2920: end it, send no body
  feed("554 no valid recipients\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);  // the 450 decided: temporary
  EXPECT_EQ(f_.done[0].final_code, 450);
}

TEST_F(SessionTest, Mode2DataNextEnvelopeRidesWithTheBody) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  f_.queue.push_back(msg({"b@x"}, "two\r\n"));
  connect_ready(kPipeEhlo);
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
  feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "one\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
  feed("451 4.3.0 try later\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "two\r\n.\r\n");
  feed("250 ok\r\n");
  ASSERT_EQ(f_.done.size(), 2u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);  // the 451 was message 1's final reply
  EXPECT_EQ(f_.done[0].final_code, 451);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_DELIVERED);
}

TEST_F(SessionTest, Mode2ChunkingWindowAndAttribution) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  f_.queue.push_back(msg({"bad@x"}, "two\r\n"));
  f_.queue.push_back(msg({"c@x"}, ".three\n"));
  connect_ready(kChunkEhlo);
  // Three transactions in one write, no RSET between them: each BDAT LAST ends its
  // transaction on the server, accepted or not.
  EXPECT_EQ(take_output(),
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@x>\r\nBDAT 5 LAST\r\none\r\n"
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<bad@x>\r\nBDAT 5 LAST\r\ntwo\r\n"
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@x>\r\nBDAT 8 LAST\r\n.three\r\n");
  feed("250 ok\r\n250 ok\r\n250 2.0.0 one queued\r\n"
       "250 ok\r\n550 5.1.1 bad\r\n554 5.5.1 no valid recipients\r\n"
       "250 ok\r\n250 ok\r\n250 2.0.0 three queued\r\n");
  ASSERT_EQ(f_.done.size(), 3u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_REJECTED);
  EXPECT_EQ(f_.done[1].final_code, 550);  // the RCPT refusal, not the BDAT reply
  EXPECT_EQ(f_.done[2].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(f_.requeued.size(), 0u);
  // The refused transaction is behind us and the last one was delivered: at most an
  // RSET for the refused one goes out, nothing else.
  std::string rest = take_output();
  EXPECT_TRUE(rest.empty() || rest == "RSET\r\n") << rest;
}

// A server that still holds a refused CHUNKING transaction answers the MAIL pipelined
// behind it "503 nested MAIL": no verdict on that message, which goes again behind an
// RSET, free of charge; the connection keeps pipelining (the refusal explained the 503).
TEST_F(SessionTest, Mode2ChunkingNestedMailAfterARefusalGoesAgain) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"bad@x"}, "one\r\n"));
  f_.queue.push_back(msg({"c@x"}, "two\r\n"));
  connect_ready(kChunkEhlo);
  EXPECT_EQ(take_output(),
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<bad@x>\r\nBDAT 5 LAST\r\none\r\n"
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@x>\r\nBDAT 5 LAST\r\ntwo\r\n");
  feed("250 ok\r\n550 5.1.1 bad\r\n554 5.5.1 no valid recipients\r\n"
       "503 5.5.1 nested MAIL command\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
  ASSERT_EQ(f_.requeued.size(), 1u);  // no verdict: it goes again
  EXPECT_EQ(f_.requeued[0]->free_tries, 1u);
  EXPECT_FALSE(s_.no_dot_pipe);  // the refused transaction explains the 503
  f_.queue.push_back(f_.requeued[0]);
  f_.requeued.clear();
  sess_pump(&s_);
  EXPECT_EQ(take_output(), "RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@x>\r\nBDAT 5 LAST\r\ntwo\r\n");
  feed("250 reset\r\n250 ok\r\n250 ok\r\n250 2.0.0 two queued\r\n");
  ASSERT_EQ(f_.done.size(), 2u);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_DELIVERED);
}

// The server kept the envelope of the refused BDAT (no valid recipient) and answers
// the next MAIL "503 nested MAIL"; that message has the same sender, so its RCPT and
// BDAT, already written, complete it in the kept envelope: delivered, once.
TEST_F(SessionTest, Mode2ChunkingKeptEnvelopeSameSenderDelivers) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"bad@x"}, "one\r\n"));
  f_.queue.push_back(msg({"c@x"}, "two\r\n"));
  connect_ready(kChunkEhlo);
  take_output();
  feed("250 ok\r\n550 5.1.1 bad\r\n554 5.5.1 no valid recipients\r\n"
       "503 5.5.1 nested MAIL command\r\n250 2.1.5 ok\r\n250 2.0.0 two queued\r\n");
  ASSERT_EQ(f_.done.size(), 2u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(f_.requeued.size(), 0u);  // sent again, it would arrive twice
}

// With another sender the next transaction would go out under the refused one's
// sender if the server kept that envelope: it opens with RSET.
TEST_F(SessionTest, Mode2ChunkingAnotherSenderOpensWithRset) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  sb_msg* two = msg({"b@x"}, "two\r\n", "other@b.test");
  f_.queue.push_back(two);
  connect_ready(kChunkEhlo);
  EXPECT_EQ(take_output(),
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@x>\r\nBDAT 5 LAST\r\none\r\n"
            "RSET\r\nMAIL FROM:<other@b.test>\r\nRCPT TO:<b@x>\r\nBDAT 5 LAST\r\ntwo\r\n");
}

TEST_F(SessionTest, Mode2ChunkingRespectsWindow) {
  cfg_.pipeline = 2;
  cfg_.window = 2;
  for (int i = 0; i < 3; i++) f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready(kChunkEhlo);
  std::string out = take_output();
  size_t mails = 0;
  for (size_t p = 0; (p = out.find("MAIL FROM", p)) != std::string::npos; p++) mails++;
  EXPECT_EQ(mails, 2u);
  feed("250 ok\r\n250 ok\r\n250 ok\r\n");  // the first completes: room for the third
  EXPECT_NE(take_output().find("MAIL FROM"), std::string::npos);
}

TEST_F(SessionTest, PipeliningNeedsTheServersWord) {
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"a@x", "b@x"}, "hi\r\n"));
  connect_ready("250-x\r\n250 CHUNKING\r\n");  // no PIPELINING: lockstep
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\n");
}

TEST_F(SessionTest, ConnectionLossRequeuesEveryTransactionInFlight) {
  cfg_.pipeline = 2;
  for (int i = 0; i < 3; i++) f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready(kChunkEhlo);
  take_output();
  feed("250 ok\r\n250 ok\r\n250 ok\r\n");  // the first is delivered
  sess_io_error(&s_, SMTPBULK_ECLOSED);
  EXPECT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.requeued.size(), 2u);
}

}  // namespace

// ---- STARTTLS, TLS and AUTH --------------------------------------------------------

namespace {

struct TlsFake : Fake {
  std::string log;
  std::vector<int> auth_results;
};

void tls_log(void* ctx, sess*, int, const char* line) {
  auto* f = static_cast<TlsFake*>(ctx);
  f->log += line;
  f->log += '\n';
}
void tls_auth(void* ctx, sess*, int err) {
  static_cast<TlsFake*>(ctx)->auth_results.push_back(err);
}

const sess_ops kTlsOps = {next_msg, done, requeue, nullptr, nullptr, tls_log, tls_auth};

const char kEhloTls[] =
    "250-x\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n";
const char kEhloAfterTls[] = "250-x\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";

class SessionTlsTest : public SessionTest {
 protected:
  void SetUp() override {
    cfg_.hello = "client.test";
    cfg_.max_attempts = 2;
    cfg_.retry_fail = 3;
    cfg_.debug = 10;  // the protocol trace: it must never show a secret
    cfg_.pipeline = 2;
    cfg_.window = 4;
    ASSERT_EQ(sess_init(&s_, &cfg_, &kTlsOps, &tf_, 0, 0), 0);
  }
  void use_auth(unsigned mech, int allow_plaintext = 0) {
    auth_.mech = mech;
    auth_.user = "alice";
    auth_.secret = "s3cret-Pa55";
    auth_.allow_plaintext = allow_plaintext;
    cfg_.auth = &auth_;
  }
  // Greeting, EHLO, STARTTLS and its 220 (plus `behind`, in the same read), handshake.
  void through_starttls(const std::string& behind = "") {
    sess_connecting(&s_);
    sess_connected(&s_, 0);
    feed("220 hi\r\n");
    EXPECT_EQ(take_output(), "EHLO client.test\r\n");
    feed(kEhloTls);
    EXPECT_EQ(take_output(), "STARTTLS\r\n");  // alone: nothing pipelined behind it
    EXPECT_EQ(s_.state, SESS_STARTTLS);
    feed("220 2.0.0 go ahead\r\n" + behind);
    EXPECT_TRUE(sess_wants_tls(&s_));
    EXPECT_FALSE(sess_has_output(&s_));
    sess_tls_up(&s_);
  }
  // Implicit TLS (mode 1) up to the EHLO reply; returns what the session wrote next.
  std::string smtps_until_auth(const std::string& ehlo) {
    cfg_.secure = SMTPBULK_SECURE_SMTPS;
    sess_connecting(&s_);
    sess_connected(&s_, 0);
    sess_tls_up(&s_);
    feed("220 hi\r\n");
    take_output();
    feed(ehlo);
    return take_output();
  }
  sess_auth auth_{};
  TlsFake tf_;
};

}  // namespace

TEST_F(SessionTlsTest, StartTlsThenFreshEhloForgetsPlaintextCapabilities) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
  through_starttls();
  EXPECT_EQ(s_.caps.flags, 0u);  // what plaintext EHLO said is gone
  EXPECT_EQ(take_output(), "EHLO client.test\r\n");
  feed(kEhloAfterTls);
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_TRUE(s_.tls_on);
  EXPECT_FALSE(s_.caps.flags & SMTP_CAP_STARTTLS);
  EXPECT_TRUE(s_.caps.flags & SMTP_CAP_8BITMIME);  // learned over TLS
}

TEST_F(SessionTlsTest, RepliesInjectedBehindThe220AreDropped) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
  // A man in the middle appends a reply in plaintext: it must never be read as the
  // answer to the EHLO sent over TLS.
  through_starttls("250-evil\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(take_output(), "EHLO client.test\r\n");
  EXPECT_EQ(s_.fifo_len, 1u);  // still waiting for the real EHLO reply
  EXPECT_EQ(s_.state, SESS_EHLO);
  feed(kEhloAfterTls);
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_FALSE(s_.caps.auth == SMTP_AUTH_PLAIN && !(s_.caps.flags & SMTP_CAP_8BITMIME));
}

TEST_F(SessionTlsTest, Mode4WithoutStartTlsSendsNothingMore) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
  f_.queue.push_back(msg({"c@d.test"}, "x\r\n"));
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  take_output();
  feed("250-x\r\n250 PIPELINING\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");  // no MAIL FROM in the clear; QUIT before closing
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_DEAD);  // permanent: the host's connections stop
  EXPECT_EQ(s_.error, SMTPBULK_ENOSTARTTLS);
  EXPECT_TRUE(sess_fatal(&s_));
}

TEST_F(SessionTlsTest, Mode4StartTlsRefusedSendsNothingMore) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS_REQUIRE;
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  take_output();
  feed(kEhloTls);
  EXPECT_EQ(take_output(), "STARTTLS\r\n");
  feed("454 4.7.0 TLS not available\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");
  sess_io_error(&s_, SMTPBULK_ECLOSED);  // the server closes instead of answering
  EXPECT_EQ(s_.state, SESS_CLOSED);     // a 454 may pass: tried again
  EXPECT_EQ(s_.error, SMTPBULK_ENOSTARTTLS);
}

TEST_F(SessionTlsTest, Mode3FallsBackToPlaintextAndSaysSo) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS;
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  take_output();
  feed("250-x\r\n250 PIPELINING\r\n");
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_FALSE(s_.tls_on);
  EXPECT_NE(tf_.log.find("plaintext"), std::string::npos);
}

TEST_F(SessionTlsTest, ImplicitTlsHandshakesBeforeTheGreeting) {
  cfg_.secure = SMTPBULK_SECURE_SMTPS_VERIFY;
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  EXPECT_TRUE(sess_wants_tls(&s_));
  EXPECT_TRUE(sess_waiting(&s_));  // the watchdog times a handshake
  sess_tls_up(&s_);
  EXPECT_EQ(s_.state, SESS_GREETING);
  feed("220 hi\r\n");
  EXPECT_EQ(take_output(), "EHLO client.test\r\n");
}

TEST_F(SessionTlsTest, AuthPlainOverTlsSecretNeverInTheTrace) {
  cfg_.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
  use_auth(SASL_PLAIN);
  through_starttls();
  take_output();
  feed(kEhloAfterTls);
  std::string out = take_output();
  // base64("\0alice\0s3cret-Pa55")
  EXPECT_EQ(out, "AUTH PLAIN AGFsaWNlAHMzY3JldC1QYTU1\r\n");
  EXPECT_EQ(s_.state, SESS_AUTH);
  feed("235 2.7.0 ok\r\n");
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_EQ(tf_.auth_results, std::vector<int>{0});
  EXPECT_EQ(s_.sasl, nullptr);  // the secret went with the exchange
  EXPECT_NE(tf_.log.find(">> AUTH PLAIN <redacted>"), std::string::npos);
  EXPECT_EQ(tf_.log.find("AGFsaWNl"), std::string::npos);
  EXPECT_EQ(tf_.log.find("s3cret"), std::string::npos);
}

TEST_F(SessionTlsTest, AuthLoginContinuationsAreRedactedToo) {
  use_auth(SESS_AUTH_AUTO);
  // AUTO takes what is offered
  EXPECT_EQ(smtps_until_auth("250-x\r\n250 AUTH LOGIN\r\n"), "AUTH LOGIN\r\n");
  feed("334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(take_output(), "YWxpY2U=\r\n");
  feed("334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(take_output(), "czNjcmV0LVBhNTU=\r\n");
  feed("235 ok\r\n");
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_EQ(tf_.log.find("czNjcmV0"), std::string::npos);
  EXPECT_NE(tf_.log.find(">> <redacted>"), std::string::npos);
}

TEST_F(SessionTlsTest, AuthWithoutTlsRefusedUnlessAllowed) {
  use_auth(SASL_PLAIN);
  connect_ready("250-x\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");  // no credentials in the clear
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_DEAD);
  EXPECT_EQ(s_.error, SMTPBULK_EAUTHPLAIN);
  EXPECT_EQ(tf_.auth_results, std::vector<int>{SMTPBULK_EAUTHPLAIN});
}

TEST_F(SessionTlsTest, AuthOverPlaintextWhenAllowed) {
  use_auth(SASL_PLAIN, 1);
  connect_ready("250-x\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(take_output().rfind("AUTH PLAIN ", 0), 0u);
}

TEST_F(SessionTlsTest, BadCredentials535StopForGood) {
  use_auth(SASL_PLAIN);
  EXPECT_EQ(smtps_until_auth("250-x\r\n250 AUTH PLAIN\r\n").rfind("AUTH PLAIN ", 0), 0u);
  feed("535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");  // RFC 5321 4.1.1.10: QUIT before the close
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_DEAD);  // not CLOSED: no reconnect, whatever retry_fail says
  EXPECT_EQ(s_.error, SMTPBULK_EAUTH);
  EXPECT_EQ(tf_.auth_results, std::vector<int>{SMTPBULK_EAUTH});
}

TEST_F(SessionTlsTest, Temporary454IsRetried) {
  use_auth(SASL_PLAIN);
  EXPECT_EQ(smtps_until_auth("250-x\r\n250 AUTH PLAIN\r\n").rfind("AUTH PLAIN ", 0), 0u);
  feed("454 4.7.0 Temporary authentication failure\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EAUTHTEMP);
}

TEST_F(SessionTlsTest, NoCommonMechanism) {
  use_auth(SESS_AUTH_AUTO);
  EXPECT_EQ(smtps_until_auth("250-x\r\n250 AUTH GSSAPI\r\n"), "QUIT\r\n");
  feed("221 bye\r\n");
  EXPECT_EQ(s_.state, SESS_DEAD);  // permanent: not retried retry_fail times
  EXPECT_EQ(s_.error, SMTPBULK_EAUTHMECH);
}

// ---- hostile and hardened servers ---------------------------------------------------

namespace {

// The greeting and the EHLO reply in one read, before EHLO was written: the second
// reply cannot be the server's answer to anything.
TEST_F(SessionTest, ReplyBeforeItsCommandWasSentEndsTheConnection) {
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n250-x\r\n250 PIPELINING\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
}

// A flood of 250s that answers transactions still waiting in the output: nothing is
// reported delivered, every message goes again.
TEST_F(SessionTest, PhantomDeliveriesAreRefused) {
  cfg_.pipeline = 2;
  for (int i = 0; i < 3; i++) f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready(kChunkEhlo);
  ASSERT_TRUE(sess_has_output(&s_));  // queued, not handed to the socket
  feed("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"
       "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n");
  EXPECT_TRUE(f_.done.empty());
  EXPECT_EQ(f_.requeued.size(), 3u);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
}

// What was handed to the socket may be answered before its completion is seen.
TEST_F(SessionTest, HandedBytesMayBeAnsweredBeforeTheirCompletion) {
  f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready();
  iovec iov[4];
  int n = sess_output(&s_, iov, 4);
  sess_handed(&s_, iov, n);
  feed("250 ok\r\n");  // the MAIL's reply, before sess_sent()
  EXPECT_EQ(s_.state, SESS_TXN);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  sess_sent(&s_, total);
  EXPECT_EQ(take_output(), "RCPT TO:<a@x>\r\n");
}

TEST_F(SessionTest, ACodeOnlyAnotherCommandDrawsIsOutOfStep) {
  f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready();
  take_output();
  feed("354 go ahead\r\n");  // to MAIL
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
  EXPECT_TRUE(f_.done.empty());
}

// Haraka: "503 ... pipelined after end of DATA" to every command written behind the
// final dot. The message goes again free; the connection stops pipelining past the dot.
TEST_F(SessionTest, Refused503BehindTheDotIsNoVerdict) {
  cfg_.pipeline = 2;
  sb_msg* two = msg({"b@x"}, "two\r\n");
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  f_.queue.push_back(two);
  f_.queue.push_back(msg({"c@x"}, "three\r\n"));
  connect_ready(kPipeEhlo);
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\nRCPT TO:<a@x>\r\nDATA\r\n");
  feed("250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "one\r\n.\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<b@x>\r\nDATA\r\n");
  const char k503[] = "503 5.5.0 Bad sequence of commands - pipelined after end of DATA\r\n";
  feed(std::string("250 2.0.0 one queued\r\n") + k503 + k503 + k503);
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_DELIVERED);
  ASSERT_EQ(f_.requeued.size(), 1u);  // not REJECTED: again, free of charge
  EXPECT_EQ(f_.requeued[0], two);
  EXPECT_EQ(two->free_tries, 1u);
  EXPECT_EQ(s_.no_dot_pipe, 1);
  EXPECT_EQ(take_output(), "RSET\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@x>\r\nDATA\r\n");
  f_.queue.push_back(msg({"d@x"}, "four\r\n"));
  feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "three\r\n.\r\n");  // nothing behind the dot now
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\nRCPT TO:<d@x>\r\nDATA\r\n");
}

// OpenSMTPD's max-mails: "452 4.5.3 ... Too many messages sent" to a MAIL after the
// connection delivered. The message goes again free; the connection is spent.
TEST_F(SessionTest, TooManyMessagesSpendsTheConnection) {
  sb_msg* two = msg({"b@x"}, "two\r\n");
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  f_.queue.push_back(two);
  connect_ready();
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("250 ok\r\n");
  take_output();
  feed("354 go\r\n");
  take_output();
  feed("250 queued\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test> SIZE=5\r\n");
  EXPECT_FALSE(sess_spent(&s_));
  feed("452 4.5.3 Too many recipients: Too many messages sent\r\n");
  EXPECT_EQ(f_.done.size(), 1u);  // not FAILED, not deferred
  ASSERT_EQ(f_.requeued.size(), 1u);
  EXPECT_EQ(two->free_tries, 1u);
  EXPECT_TRUE(sess_spent(&s_));
  f_.queue.push_back(msg({"c@x"}, "three\r\n"));
  EXPECT_EQ(take_output(), "RSET\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(s_.state, SESS_IDLE);
  EXPECT_FALSE(sess_has_room(&s_));  // the connection layer QUITs it
  EXPECT_EQ(take_output(), "");
}

// The same reply to the first MAIL of a connection is an ordinary 4xx.
TEST_F(SessionTest, TooManyOnAFreshConnectionIsAnOrdinaryRefusal) {
  f_.queue.push_back(msg({"a@x"}, "one\r\n"));
  connect_ready();
  take_output();
  feed("452 4.5.3 Too many messages\r\n");
  ASSERT_EQ(f_.done.size(), 1u);  // no defer op here: FAILED at once
  EXPECT_EQ(f_.done[0].st, SMTPBULK_FAILED);
  EXPECT_FALSE(sess_spent(&s_));
}

// Transactions pipelined behind one the server answered, on a connection it then
// closed: those it never answered go again free of charge.
TEST_F(SessionTest, NeverAnsweredTransactionsGoAgainFree) {
  cfg_.pipeline = 2;
  for (int i = 0; i < 4; i++) f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready(kChunkEhlo);
  take_output();
  feed("250 ok\r\n250 ok\r\n250 ok\r\n250 reset\r\n250 ok\r\n");  // 1 delivered, 2 begun
  sess_io_error(&s_, SMTPBULK_ECLOSED);
  ASSERT_EQ(f_.done.size(), 1u);
  ASSERT_EQ(f_.requeued.size(), 3u);
  EXPECT_EQ(f_.requeued[0]->free_tries, 0u);  // answered (its MAIL): charged
  EXPECT_EQ(f_.requeued[1]->free_tries, 1u);
  EXPECT_EQ(f_.requeued[2]->free_tries, 1u);
}

}  // namespace

namespace {

// A server writes reply texts, so it must not decide how much memory a message holds:
// a recipient's reply keeps its first line, the deciding reply all of its lines.
TEST_F(SessionTest, RecipientRepliesKeepTheirFirstLineOnly) {
  sb_msg* m = msg({"a@x", "b@x"}, "x\r\n");
  std::string big;
  for (int i = 0; i < 30; i++) big += "250-2.1.5 " + std::string(400, 'y') + "\r\n";
  big += "250 2.1.5 ok\r\n";
  smtp_reply r;
  ASSERT_GT(smtp_reply_parse(big.data(), big.size(), &r), 0);
  ASSERT_EQ(sb_msg_record(m, 0, &r), 0);
  ASSERT_EQ(sb_msg_record(m, SB_SLOT_FINAL, &r), 0);
  sb_msg_finish(m, SMTPBULK_DELIVERED, 0);
  EXPECT_EQ(std::string(m->res.rcpts[0].reply.text), std::string(400, 'y'));
  EXPECT_GT(strlen(m->res.reply.text), 30u * 400u);  // the final reply: every line
  EXPECT_LT(m->arena_len, big.size() + 1024);  // one whole copy, not two
}

}  // namespace

namespace {

// A server that answered one command twice shifts every later reply; QUIT answered by
// a 250 shows it: the connection ends as out of step, not as a clean close.
TEST_F(SessionTest, QuitAnsweredBy250IsOutOfStep) {
  connect_ready();
  ASSERT_EQ(sess_quit(&s_), 1);
  EXPECT_EQ(take_output(), "QUIT\r\n");
  feed("250 2.0.0 Ok\r\n");
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
}

}  // namespace

namespace {

// A 421 may come at any time, asked for or not: the server is closing. Whatever is in
// flight goes again free of charge, as for any 421, even before its command left.
TEST_F(SessionTest, A421BeforeTheCommandLeftIsStillAClose) {
  f_.queue.push_back(msg({"a@x"}, "x\r\n"));
  connect_ready();
  ASSERT_TRUE(sess_has_output(&s_));  // MAIL queued, not handed out
  feed("421 4.3.2 shutting down\r\n");
  EXPECT_EQ(s_.error, SMTPBULK_ESHUTDOWN);
  ASSERT_EQ(f_.requeued.size(), 1u);
  EXPECT_EQ(f_.requeued[0]->free_tries, 1u);
}

}  // namespace

// LMTP: one reply per recipient accepted at RCPT, after BDAT LAST, in their order;
// the MAIL pipelined behind it keeps its place in the queue of replies.
TEST_F(SessionTest, LmtpRepliesPerAcceptedRecipientBehindPipelinedBdat) {
  cfg_.lmtp = 1;
  cfg_.pipeline = 2;
  f_.queue.push_back(msg({"r1@x", "bad@x", "r3@x"}, "hi\r\n"));
  f_.queue.push_back(msg({"s1@x"}, "yo\r\n"));
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  EXPECT_EQ(take_output(), "LHLO client.test\r\n");
  feed(kChunkEhlo);
  EXPECT_EQ(take_output(),
            "MAIL FROM:<a@b.test>\r\nRCPT TO:<r1@x>\r\nRCPT TO:<bad@x>\r\nRCPT TO:<r3@x>\r\n"
            "BDAT 4 LAST\r\nhi\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<s1@x>\r\nBDAT 4 LAST\r\nyo\r\n");
  feed("250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n");
  // Two replies after the data (r1, r3), then the second transaction's three.
  feed("250 2.0.0 r1 delivered\r\n");
  EXPECT_TRUE(f_.done.empty());
  feed("452 4.2.2 r3 over quota\r\n250 ok\r\n250 ok\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_PARTIAL);
  EXPECT_EQ(f_.done[0].rcpt_codes, (std::vector<int>{250, 550, 452}));
  EXPECT_EQ(f_.done[0].final_code, 250);
  feed("250 2.0.0 s1 delivered\r\n");
  ASSERT_EQ(f_.done.size(), 2u);
  EXPECT_EQ(f_.done[1].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(s_.state, SESS_IDLE);
}

// Every recipient refused after the data: the message is refused, for good only if
// every refusal was permanent.
TEST_F(SessionTest, LmtpEveryRecipientRefusedAfterTheDot) {
  cfg_.lmtp = 1;
  cfg_.pipeline = 1;
  f_.queue.push_back(msg({"r1@x", "r2@x"}, "hi\r\n"));
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  EXPECT_EQ(take_output(), "LHLO client.test\r\n");
  feed("250-x\r\n250 PIPELINING\r\n");
  take_output();
  feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  EXPECT_EQ(take_output(), "hi\r\n.\r\n");
  feed("550 5.1.1 r1 unknown\r\n550 5.2.1 r2 disabled\r\n");
  ASSERT_EQ(f_.done.size(), 1u);
  EXPECT_EQ(f_.done[0].st, SMTPBULK_REJECTED);
  EXPECT_EQ(f_.done[0].final_code, 550);
  EXPECT_EQ(f_.done[0].rcpt_codes, (std::vector<int>{550, 550}));
}

// A hostile LMTP server that answers the data once more than there were recipients:
// a reply nobody asked for ends the connection; it never counts as a delivery.
TEST_F(SessionTest, LmtpAnExtraReplyAfterTheDataIsAProtocolError) {
  cfg_.lmtp = 1;
  f_.queue.push_back(msg({"r1@x"}, "hi\r\n"));
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  take_output();
  feed("250 x\r\n");  // no PIPELINING: lockstep
  EXPECT_EQ(take_output(), "MAIL FROM:<a@b.test>\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "RCPT TO:<r1@x>\r\n");
  feed("250 ok\r\n");
  EXPECT_EQ(take_output(), "DATA\r\n");
  feed("354 go\r\n");
  take_output();
  feed("250 2.0.0 delivered\r\n250 2.0.0 and again\r\n");
  ASSERT_EQ(f_.done.size(), 1u);  // the one real reply
  EXPECT_EQ(f_.done[0].st, SMTPBULK_DELIVERED);
  EXPECT_EQ(s_.state, SESS_CLOSED);
  EXPECT_EQ(s_.error, SMTPBULK_EPROTO);
}

// An SMTP server answers LHLO with 500: no HELO behind the caller's back.
TEST_F(SessionTest, LmtpLhloRefusedIsNoLmtp) {
  cfg_.lmtp = 1;
  sess_connecting(&s_);
  sess_connected(&s_, 0);
  feed("220 hi\r\n");
  EXPECT_EQ(take_output(), "LHLO client.test\r\n");
  feed("500 5.5.1 what\r\n");
  EXPECT_EQ(take_output(), "QUIT\r\n");
  feed("221 bye\r\n");
  EXPECT_EQ(s_.error, SMTPBULK_ENOLMTP);
  EXPECT_TRUE(sess_fatal(&s_));
}
