// Servers nobody here wrote, and servers that lie: the whole engine against scripted
// peers that behave like Haraka's and OpenSMTPD's defaults, and like hostile servers
// that answer what they never read. Every message ends with exactly one result, and
// none is reported delivered that the server did not accept. Runs on every backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

size_t count_prefix(const std::vector<std::string>& v, const char* p) {
  return std::count_if(v.begin(), v.end(), [&](const std::string& s) { return starts_with(s, p); });
}

// Submits n one-recipient messages and waits for all their results.
void send_all(TestEngine& e, size_t n) {
  for (size_t i = 0; i < n; i++) e.send({"r" + std::to_string(i) + "@x.test"}, "hi\r\n");
  ASSERT_TRUE(e.results.wait(n, 60000)) << e.results.total() << " of " << n << " results";
  EXPECT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.total(), n);
  EXPECT_EQ(e.results.duplicates(), 0u);
}

// Haraka 3.3: a command pipelined behind the final dot gets "503 ... pipelined after
// end of DATA". The default mode 2 must still deliver everything, and stop doing it.
TEST(Hostile, HarakaRefusesPipeliningPastTheDot) {
  PeerScript s;
  s.refuse_pipelined_after_dot = true;
  ScriptedPeer peer(s);
  LogCapture log;
  TestEngine e(peer.port(), 2);
  e.opts.debug = 5;
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
  ASSERT_EQ(e.opts.pipeline, 2u);  // the default
  ASSERT_EQ(e.start(), 0);
  send_all(e, 200);
  auto st = e.results.by_status();
  EXPECT_EQ(st[SMTPBULK_DELIVERED], 200u);
  EXPECT_EQ(peer.bodies().size(), 200u);
  EXPECT_NE(log.get().find("refuses commands pipelined behind the end of the data"),
            std::string::npos);
}

// OpenSMTPD's "smtp limit max-mails": the 11th MAIL of a session is refused with
// 452 4.5.3 and so is every later one. The spent connection QUITs and a new one takes
// the message; later connections stop at the learned cap instead of running into it.
TEST(Hostile, OpenSmtpdMaxMailsReconnects) {
  const int kCap = 10;
  std::mutex mu;
  std::map<int, int> mails;
  std::atomic<int> refused{0};
  PeerScript s;
  s.on_cmd = [&](int conn, const std::string& c) -> std::string {
    if (!starts_with(c, "MAIL")) return "";
    std::lock_guard<std::mutex> g(mu);
    if (++mails[conn] <= kCap) return "";
    refused++;
    return "452 4.5.3 Too many recipients: Too many messages sent\r\n";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 4);
  e.opts.defer_ms = 60000;  // an ordinary deferral would outlast the test
  ASSERT_EQ(e.start(), 0);
  send_all(e, 200);
  auto st = e.results.by_status();
  EXPECT_EQ(st[SMTPBULK_DELIVERED], 200u);
  EXPECT_GE(peer.connections(), 200 / kCap);
  // Only connections open before the cap was learned run into it, each with what it
  // had in flight (mode 2 without CHUNKING: two transactions).
  EXPECT_LE(refused.load(), 4 * 2);
  // Every connection that carried its cap said QUIT; the (at most 4) still open at the
  // end may not have reached it.
  EXPECT_GE(count_prefix(peer.commands(), "QUIT"), static_cast<size_t>(200 / kCap - 4));
}

// A server that sends its greeting, its EHLO reply and a flood of 250s at once,
// before it reads anything: no reply can answer a command not yet sent.
TEST(Hostile, FloodBeforeReadingIsNoDelivery) {
  std::string flood;
  for (int i = 0; i < 64; i++) flood += "250 2.0.0 Ok\r\n";
  for (int where = 0; where < 2; where++) {
    SCOPED_TRACE(where == 0 ? "flood with the greeting" : "flood behind the EHLO reply");
    PeerScript s;
    s.chunking = true;
    std::string ehlo = "250-peer.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
    if (where == 0) {
      s.greeting = "220 peer.test ESMTP\r\n" + ehlo + flood;
      s.on_cmd = [](int, const std::string&) -> std::string { return "HANG"; };
    } else {
      s.on_cmd = [&](int, const std::string& c) -> std::string {
        return starts_with(c, "EHLO") ? ehlo + flood : "HANG";
      };
    }
    ScriptedPeer peer(s);
    TestEngine e(peer.port(), 2);
    e.opts.timeout_ms = 2000;
    ASSERT_EQ(e.start(), 0);
    send_all(e, 20);
    auto st = e.results.by_status();
    EXPECT_EQ(st[SMTPBULK_DELIVERED], 0u);
    EXPECT_EQ(st[SMTPBULK_PARTIAL], 0u);
    EXPECT_EQ(count_prefix(peer.commands(), "BDAT"), 0u) << "a body went out";
  }
}

// A server that accepts three messages per connection and then closes (cleanly: it
// answers, stops writing and reads until the client goes): what was pipelined behind
// the third and never answered goes again free of charge, so nothing ends FAILED.
TEST(Hostile, NeverAnsweredTransactionsAreNotCharged) {
  std::mutex mu;
  std::map<int, int> finals;
  PeerScript s;
  s.chunking = true;
  s.on_data = [&](int conn, const std::string&) -> std::string {
    std::lock_guard<std::mutex> g(mu);
    return ++finals[conn] == 3 ? "BYE:250 2.0.0 Ok: queued, and goodbye\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.window = 8;
  e.opts.max_attempts = 2;
  ASSERT_EQ(e.start(), 0);
  send_all(e, 120);
  auto st = e.results.by_status();
  EXPECT_EQ(st[SMTPBULK_DELIVERED], 120u);
  EXPECT_EQ(st[SMTPBULK_FAILED], 0u);
  EXPECT_EQ(peer.bodies().size(), 120u);  // and none twice
}

}  // namespace

namespace {

// Slowloris: bytes that trickle in are no answer. Each phase's timeout is a deadline
// for the complete reply, so a dribbled greeting (30 bytes at 25 B/s) or a multi-line
// reply that goes on and on ends its connection within the timeout, as a hang.
TEST(Hostile, DribbledRepliesMeetTheirDeadline) {
  std::string endless;  // 14 KB of complete "250-" lines, a byte a millisecond
  for (int i = 0; i < 2000; i++) endless += "250-x\r\n";
  for (int which = 0; which < 2; which++) {
    SCOPED_TRACE(which == 0 ? "greeting dribbled" : "EHLO reply without end");
    PeerScript s;
    if (which == 0) {
      s.greeting = "SLOW:220 peer.test ESMTP slowly\r\n";
      s.dribble_ms = 40;
    } else {
      s.dribble_ms = 1;
      s.on_cmd = [&](int, const std::string& c) -> std::string {
        return starts_with(c, "EHLO") ? "SLOW:" + endless + "250 PIPELINING\r\n" : "";
      };
    }
    ScriptedPeer peer(s);
    TestEngine e(peer.port(), 1);
    e.opts.timeout_ms = 300;
    e.opts.retry_fail = 2;
    e.opts.sleep_hang_ms = 10;
    ASSERT_EQ(e.start(), 0);
    Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
    EXPECT_NE(r.status, SMTPBULK_DELIVERED);
    smtpbulk_counters_t k;
    smtpbulk_get_counters(e.sb, &k);
    EXPECT_GE(k.hangs, 2u);  // each of the two connections, at its deadline
  }
}

// The global timeout counts complete replies, not bytes: a server that only dribbles
// is silent.
TEST(Hostile, DribblingIsSilenceToTheGlobalTimeout) {
  PeerScript s;
  s.greeting = "SLOW:220 peer.test ESMTP slowly, very slowly\r\n";  // 2.3 s
  s.dribble_ms = 50;
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_ms = 60000;
  e.opts.global_timeout_ms = 400;
  ASSERT_EQ(e.start(), 0);
  e.send({"r@x.test"}, "hi\r\n");
  EXPECT_TRUE(wait_until([&] {
    smtpbulk_counters_t k;
    smtpbulk_get_counters(e.sb, &k);
    return k.global_hangs >= 1;
  }));
}

}  // namespace

namespace {

// RFC 5321 4.1.1.10: the client says QUIT before every close it chooses. A refusal
// that holds for every connection (535, no common mechanism) stops the host at once
// instead of each connection retrying retry_fail times.
TEST(Hostile, AuthRefusalSaysQuitAndStopsTheHost) {
  for (int which = 0; which < 2; which++) {
    SCOPED_TRACE(which == 0 ? "535 to AUTH" : "no AUTH offered");
    PeerScript s;
    if (which == 0) {
      s.ehlo = "250-peer.test\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n";
      s.on_cmd = [](int, const std::string& c) -> std::string {
        return starts_with(c, "AUTH") ? "535 5.7.8 Authentication credentials invalid\r\n"
                                      : "";
      };
    }  // else: the default EHLO reply offers no AUTH
    ScriptedPeer peer(s);
    TestEngine e(peer.port(), 2);
    smtpbulk_security_t sec{};
    sec.struct_size = sizeof(sec);
    sec.auth = "PLAIN";
    sec.user = "tim";
    sec.secret = "wrong";
    sec.auth_plaintext = 1;
    e.hosts[0].security = &sec;
    e.opts.retry_fail = 5;
    ASSERT_EQ(e.start(), 0);
    Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
    EXPECT_EQ(r.status, SMTPBULK_FAILED);
    EXPECT_EQ(r.error, which == 0 ? SMTPBULK_EAUTH : SMTPBULK_EAUTHMECH);
    EXPECT_EQ(smtpbulk_drain(e.sb, 10000), 0);
    smtpbulk_destroy(e.sb);  // every connection is closed: the peer saw all it will
    e.sb = nullptr;
    EXPECT_LE(peer.connections(), 2);  // not 2 x retry_fail
    EXPECT_EQ(count_prefix(peer.commands(), "QUIT"), static_cast<size_t>(peer.connections()));
  }
}

}  // namespace

namespace {

// From a connection's debug log at level 10 (">> " what it wrote, "<< " what it
// read), how many MAIL commands of its nth connection (1-based, counted by
// greetings) were written while a BDAT of it waited for its reply.
static size_t mails_behind_bdat(const std::string& log, int nth) {
  std::deque<std::string> out;  // commands written, not answered yet
  int conn = 0;
  size_t behind = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    size_t w = line.find("] >> "), r = line.find("] << ");
    if (r != std::string::npos) {
      if (line.compare(r + 5, 4, "220 ") == 0) {
        conn++;
        out.clear();
      } else if (!out.empty()) {
        out.pop_front();
      }
    } else if (w != std::string::npos) {
      std::string verb = line.substr(w + 5, 4);
      if (verb == "MAIL" && conn == nth && std::count(out.begin(), out.end(), "BDAT"))
        behind++;
      out.push_back(verb);
    }
  }
  return behind;
}

// One reply held back past the timeout with a window of 8 in flight cost all eight
// (a hang each, and the server may have taken them: duplicates). After it the host's
// next connection starts with one transaction in flight and grows back as replies
// come: its second MAIL goes out only after the first transaction's reply, and later
// ones go out behind a BDAT whose reply is not in yet (the client's own log of what it
// wrote and read says when).
TEST(Hostile, AHangShrinksTheWindowThenItGrowsBack) {
  std::mutex mu;
  std::map<int, std::vector<std::string>> by_conn;
  std::atomic<int> bodies{0};
  Gate all_queued;  // the first connection is ready only once every message waits
  PeerScript s;
  s.chunking = true;
  s.on_cmd = [&](int conn, const std::string& c) -> std::string {
    if (conn == 0 && starts_with(c, "EHLO")) all_queued.wait();
    std::lock_guard<std::mutex> g(mu);
    by_conn[conn].push_back(c.substr(0, 4));
    return "";
  };
  s.on_data = [&](int conn, const std::string&) -> std::string {
    return conn == 0 && bodies++ == 0 ? "HANG" : "";  // the first reply never comes
  };
  ScriptedPeer peer(s);
  LogCapture log;
  TestEngine e(peer.port(), 1);
  e.opts.window = 8;
  e.opts.timeout_ms = 300;
  e.opts.sleep_hang_ms = 10;
  e.opts.debug = 10;  // the commands it writes and the replies it reads
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 24; i++) e.send({"r@x.test"}, "hi\r\n");
  all_queued.open();  // now the window fills at once: 8 in flight when it hangs
  ASSERT_TRUE(e.results.wait(24, 60000)) << e.results.total() << " of 24 results";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 24u);
  std::vector<std::string> c1;
  {
    std::lock_guard<std::mutex> g(mu);
    c1 = by_conn[1];
  }
  ASSERT_GE(c1.size(), 5u);
  EXPECT_EQ(c1[0], "EHLO");
  EXPECT_EQ(c1[1], "MAIL");
  EXPECT_EQ(c1[2], "RCPT");
  EXPECT_EQ(c1[3], "BDAT");
  EXPECT_EQ(c1[4], "MAIL") << "a second transaction in flight at once";
  EXPECT_GT(mails_behind_bdat(log.get(), 2), 0u) << "the window never grew back";
  // (It hung with more than one in flight: otherwise nothing would have shrunk.)
  EXPECT_NE(log.get().find("next connections start with one"), std::string::npos);
}

// With CHUNKING, a transaction pipelined behind another's BDAT LAST opens without RSET:
// the BDAT LAST ended the one before on the server, accepted or not (RFC 3030). Every
// message waits before the connection is ready, so they go out in one window.
TEST(Hostile, ChunkingPipelinesWithoutRset) {
  Gate all_queued;
  PeerScript s;
  s.chunking = true;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (starts_with(c, "EHLO")) all_queued.wait();
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.window = 8;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 40; i++) e.send({"r@x.test"}, "hi\r\n");
  all_queued.open();
  ASSERT_TRUE(e.results.wait(40, 60000)) << e.results.total() << " of 40 results";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 40u);
  auto cmds = peer.commands();
  EXPECT_EQ(count_prefix(cmds, "MAIL"), 40u);
  EXPECT_EQ(count_prefix(cmds, "RSET"), 0u) << "one extra command per message";
}

// The other reading of RFC 3030 ("indeterminate"): a server that keeps the envelope
// of a BDAT LAST it refused (no valid recipient) answers the MAIL pipelined behind it
// "503 nested MAIL", and takes its RCPT and BDAT into the kept envelope. With one
// sender for all (verp false) that is the message itself: reported delivered, sent
// once. With a sender per message, each transaction behind another opens with RSET.
class KeptEnvelope : public ::testing::TestWithParam<bool> {};

TEST_P(KeptEnvelope, NothingLostNothingTwice) {
  const bool verp = GetParam();
  Gate all_queued;
  PeerScript s;
  s.chunking = true;
  s.refused_bdat_keeps_txn = true;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (starts_with(c, "EHLO")) all_queued.wait();
    if (starts_with(c, "RCPT TO:<bad")) return "550 5.1.1 no such user\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.window = 8;
  ASSERT_EQ(e.start(), 0);
  std::vector<std::string> from;
  for (int i = 0; i < 40; i++)
    from.push_back(verp ? "bounce-" + std::to_string(i) + "@example.com" : "s@example.com");
  for (int i = 0; i < 40; i++)
    e.send({i % 2 ? "bad@x.test" : "good@x.test"}, "hi\r\n", from[i].c_str());
  all_queued.open();
  ASSERT_TRUE(e.results.wait(40, 60000)) << e.results.total() << " of 40 results";
  EXPECT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.total(), 40u);
  EXPECT_EQ(e.results.duplicates(), 0u);
  auto st = e.results.by_status();
  EXPECT_EQ(st[SMTPBULK_DELIVERED], 20u);
  EXPECT_EQ(st[SMTPBULK_REJECTED], 20u);
  EXPECT_EQ(peer.bodies().size(), 20u);  // each good message once
  auto cmds = peer.commands();
  EXPECT_EQ(count_prefix(cmds, "MAIL"), 40u) << "a message went twice";
  if (verp) EXPECT_GE(count_prefix(cmds, "RSET"), 20u);
}

INSTANTIATE_TEST_SUITE_P(Senders, KeptEnvelope, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return std::string(i.param ? "SenderPerMessage" : "OneSender");
                         });

// RFC 5321 §4.1.1.10 and Exim's "no MAIL in SMTP connection ... C=EHLO,QUIT": a
// connection that ends (here a 202 after every message) reconnects when there is
// something to send, not at once with nothing to send. The wait for a reconnection
// that must not come is bounded; one that came would within milliseconds.
TEST(Hostile, NoReconnectWithNothingToSend) {
  std::mutex mu;
  std::map<int, std::vector<std::string>> by_conn;
  PeerScript s;
  s.on_cmd = [&](int conn, const std::string& c) -> std::string {
    std::lock_guard<std::mutex> g(mu);
    by_conn[conn].push_back(c.substr(0, 4));
    return "";
  };
  ScriptedPeer peer(s);
  smtpbulk_callbacks_t cbs{};
  cbs.struct_size = sizeof(cbs);
  cbs.pass = [](const smtpbulk_event_t*, void*) { return (int)SMTPBULK_CB_RECONNECT; };
  TestEngine e(peer.port(), 1);
  e.opts.callbacks = &cbs;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 3; i++) {
    Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
    EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    // Its connection said QUIT and closes; nothing waits, so none opens.
    EXPECT_FALSE(wait_until([&] { return peer.connections() > i + 1; }, 300))
        << "a reconnection with nothing to send after message " << i;
  }
  EXPECT_EQ(peer.connections(), 3);
  std::lock_guard<std::mutex> g(mu);
  for (auto& [conn, cmds] : by_conn) {
    EXPECT_EQ(std::count(cmds.begin(), cmds.end(), "MAIL"), 1) << "connection " << conn;
    EXPECT_EQ(std::count(cmds.begin(), cmds.end(), "QUIT"), 1) << "connection " << conn;
  }
}

// §7: a server that lets every connection get ready and then fails every transaction
// (a 421 to MAIL, or garbage) was reconnected to for as long as messages remained,
// each riding out its own retries: some 1,600 MAILs for 200 messages. The host's
// circuit breaker opens after breaker_failures in a row, lets one probe through after
// each cool-off, and gives up at the breaker_trips-th opening: every message ends, and
// the server sees a handful of transactions.
// Small figures for the breaker tests: 5 failures, 100 ms, down at the 3rd opening.
static void breaker_opts(TestEngine& e, LogCapture& log) {
  e.opts.breaker_failures = 5;
  e.opts.breaker_cooloff_ms = 100;
  e.opts.breaker_trips = 3;
  e.opts.reconnect_ms = 10;
  e.opts.debug = 7;
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
}

static uint64_t breaker_stat(TestEngine& e, bool open_now) {
  smtpbulk_stats_t* st = nullptr;
  if (smtpbulk_get_stats(e.sb, &st) != 0) return UINT64_MAX;
  uint64_t v = open_now ? st->breakers_open : st->breaker_opens;
  smtpbulk_stats_free(st);
  return v;
}
static uint64_t breaker_opens(TestEngine& e) { return breaker_stat(e, false); }
static uint64_t breakers_open(TestEngine& e) { return breaker_stat(e, true); }

struct Misbehaviour {
  const char* name;
  const char* reply;  // to every MAIL
};

class BreakerTest : public ::testing::TestWithParam<Misbehaviour> {};

TEST_P(BreakerTest, AServerThatFailsEveryTransactionIsLeftAlone) {
  PeerScript s;
  std::string reply = GetParam().reply;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return starts_with(c, "MAIL") ? reply : "";
  };
  ScriptedPeer peer(s);
  LogCapture log;
  TestEngine e(peer.port(), 2);
  breaker_opts(e, log);
  ASSERT_EQ(e.start(), 0);
  send_all(e, 200);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 0u);
  auto errors = e.results.by_error();
  EXPECT_GE(errors[SMTPBULK_EBREAKER], 180u) << "what waited ends with the breaker's reason";
  // 5 to open, a probe after each of the 2 cool-offs that reopen or end it, and
  // what was in flight on the two connections when it opened.
  size_t mails = count_prefix(peer.commands(), "MAIL");
  EXPECT_LE(mails, 5u + 2u + 2u * 2u) << "the breaker did not hold the host back";
  EXPECT_EQ(breaker_opens(e), 2u);  // opened, reopened; the third failed probe ends it
  EXPECT_EQ(breakers_open(e), 0u);
  EXPECT_NE(log.get().find("circuit breaker opens"), std::string::npos);
  EXPECT_NE(log.get().find("the host is down"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, BreakerTest,
    ::testing::Values(Misbehaviour{"Close421", "BYE:421 4.3.0 service shutting down\r\n"},
                      Misbehaviour{"Garbage", "hello?\r\n"},
                      Misbehaviour{"Defer451", "451 4.3.0 try again later\r\n"}),
    [](const ::testing::TestParamInfo<Misbehaviour>& i) { return std::string(i.param.name); });

// A server that fails for a while and then recovers: the breaker opens, the probe
// after the cool-off goes through, the breaker closes, and every message is delivered.
TEST(Hostile, BreakerClosesWhenTheProbeGoesThrough) {
  std::atomic<int> mails{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (starts_with(c, "MAIL") && mails++ < 6) return "BYE:421 4.3.0 not now\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  LogCapture log;
  TestEngine e(peer.port(), 2);
  breaker_opts(e, log);
  ASSERT_EQ(e.start(), 0);
  send_all(e, 100);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 100u);
  EXPECT_EQ(peer.bodies().size(), 100u);
  EXPECT_GE(breaker_opens(e), 1u);
  EXPECT_EQ(breakers_open(e), 0u);
  EXPECT_NE(log.get().find("circuit breaker closes"), std::string::npos);
}

// Refusals are verdicts: a list of bad addresses never opens the breaker.
TEST(Hostile, RefusalsDoNotOpenTheBreaker) {
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return starts_with(c, "RCPT") ? "550 5.1.1 no such user\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.breaker_failures = 5;
  ASSERT_EQ(e.start(), 0);
  send_all(e, 100);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_REJECTED], 100u);
  EXPECT_EQ(breaker_opens(e), 0u);
}

}  // namespace
