// Exact SMTP exchanges against the scripted peer, through the whole engine (workers,
// io backend, queues). Every test runs on io_uring and on epoll (see CMakeLists).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <tuple>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

static bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

static size_t count_prefix(const std::vector<std::string>& v, const char* p) {
  return std::count_if(v.begin(), v.end(), [&](const std::string& s) { return starts_with(s, p); });
}

TEST(Exchange, DeliversWithDotStuffingAndCrlf) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"<rcpt@example.com>"}, "Subject: x\n\n.leading dot\nbare\rcr\n");
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.enhanced, "2.0.0");
  EXPECT_EQ(r.text, "Ok: queued");
  EXPECT_EQ(r.rcpt_codes, std::vector<int>{250});
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(r.host_index, 0);
  ASSERT_EQ(peer.bodies().size(), 1u);
  EXPECT_EQ(peer.bodies()[0], "Subject: x\r\n\r\n..leading dot\r\nbare\r\ncr\r\n");
  auto cmds = peer.commands();
  ASSERT_GE(cmds.size(), 4u);
  EXPECT_EQ(cmds[0], "EHLO client.test");
  // SIZE counts the body as sent: 33 bytes, 5 bare line ends become CRLF (RFC 1870).
  EXPECT_EQ(cmds[1], "MAIL FROM:<sender@example.com> SIZE=38");
  EXPECT_EQ(cmds[2], "RCPT TO:<rcpt@example.com>");
  EXPECT_EQ(cmds[3], "DATA");
}

TEST(Exchange, HeloFallbackWhenEhloRefused) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return starts_with(c, "EHLO") ? "502 5.5.1 EHLO not supported\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  auto cmds = peer.commands();
  EXPECT_EQ(cmds[0], "EHLO client.test");
  EXPECT_EQ(cmds[1], "HELO client.test");
  EXPECT_EQ(cmds[2], "MAIL FROM:<sender@example.com>");  // no SIZE= without EHLO
}

// 4xx and 5xx on MAIL, RCPT, DATA and the final dot: the right status, the reply kept,
// RSET after a failed transaction, and the next message goes over the same connection.
struct Refusal {
  const char* verb;  // command to refuse, or "." for the final reply
  const char* reply;
  smtpbulk_status_t want;
  bool rset;
};

// Runs in every pipeline mode, with and without CHUNKING (mode 2 only).
class RefusalTest
    : public ::testing::TestWithParam<std::tuple<Refusal, unsigned, bool>> {};

TEST_P(RefusalTest, StatusReplyAndReuse) {
  const Refusal& p = std::get<0>(GetParam());
  const unsigned mode = std::get<1>(GetParam());
  const bool chunking = std::get<2>(GetParam());
  const bool final_refused = !strcmp(p.verb, ".");
  const bool envelope_refused = !strcmp(p.verb, "MAIL") || !strcmp(p.verb, "RCPT");
  std::atomic<int> refused{0};
  PeerScript s;
  s.chunking = chunking;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (!final_refused && starts_with(c, p.verb) && refused++ == 0) return p.reply;
    return "";
  };
  s.on_data = [&](int, const std::string&) -> std::string {
    if (final_refused && refused++ == 0) return p.reply;
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  e.opts.pipeline = mode;
  e.opts.max_attempts = 1;  // attribution only: 4xx retries have tests of their own
  ASSERT_EQ(e.start(), 0);
  Result r1 = e.wait_one(e.send({"r@x.test"}, "one\r\n"));
  Result r2 = e.wait_one(e.send({"r@x.test"}, "two\r\n"));
  EXPECT_EQ(r1.status, p.want);
  EXPECT_EQ(r1.code, atoi(p.reply));  // the refusal decided, not what followed it
  EXPECT_EQ(r1.error, SMTPBULK_ESERVER);
  EXPECT_EQ(r1.attempts, 1u);  // a reply is an answer, not a reason to retry here
  EXPECT_EQ(r2.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r2.attempts, 1u);
  EXPECT_EQ(peer.connections(), 1);  // the connection was reused
  auto cmds = peer.commands();
  // Lockstep sends no DATA for a refused envelope; pipelined modes send it blind and
  // the server refuses it; CHUNKING sends BDAT instead.
  size_t want_data = chunking ? 0 : (mode == 0 && envelope_refused) ? 1 : 2;
  EXPECT_EQ(count_prefix(cmds, "DATA"), want_data);
  EXPECT_EQ(count_prefix(cmds, "BDAT"), chunking ? 2u : 0u);
  // RSET after a transaction refused before its data (and, with CHUNKING, after a
  // refused BDAT, where the server's state is not known).
  EXPECT_EQ(count_prefix(cmds, "RSET"), (!final_refused || chunking) ? 1u : 0u);
  EXPECT_EQ(peer.bodies().size(), final_refused ? 2u : 1u);
}

static std::string refusal_name(
    const ::testing::TestParamInfo<std::tuple<Refusal, unsigned, bool>>& info) {
  const Refusal& p = std::get<0>(info.param);
  std::string v = !strcmp(p.verb, ".") ? "FINAL" : p.verb;
  return v + "_" + std::string(p.reply, 3) + "_mode" + std::to_string(std::get<1>(info.param)) +
         (std::get<2>(info.param) ? "_chunking" : "");
}

static std::vector<std::tuple<Refusal, unsigned, bool>> refusal_cases() {
  const Refusal refusals[] = {
      {"MAIL", "451 4.3.0 try later\r\n", SMTPBULK_FAILED, true},
      {"MAIL", "550 5.7.1 go away\r\n", SMTPBULK_REJECTED, true},
      {"RCPT", "450 4.2.1 busy\r\n", SMTPBULK_FAILED, true},
      {"RCPT", "550 5.1.1 unknown\r\n", SMTPBULK_REJECTED, true},
      {"DATA", "451 4.3.0 no\r\n", SMTPBULK_FAILED, true},
      {"DATA", "554 5.5.1 no\r\n", SMTPBULK_REJECTED, true},
      {".", "452 4.3.1 full\r\n", SMTPBULK_FAILED, false},
      {".", "554 5.7.1 spam\r\n", SMTPBULK_REJECTED, false}};
  std::vector<std::tuple<Refusal, unsigned, bool>> v;
  for (const Refusal& r : refusals) {
    for (unsigned mode : {0u, 1u, 2u}) v.emplace_back(r, mode, false);
    if (strcmp(r.verb, "DATA") != 0) v.emplace_back(r, 2u, true);  // BDAT has no DATA
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Replies, RefusalTest, ::testing::ValuesIn(refusal_cases()),
                         refusal_name);

TEST(Exchange, PartialRecipients) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.find("bad") != std::string::npos ? "550 5.1.1 <bad@x.test>: unknown\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"a@x.test", "bad@x.test", "b@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
  EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 550, 250}));
  EXPECT_EQ(r.rcpt_texts[1], "<bad@x.test>: unknown");
  EXPECT_EQ(r.code, 250);
}

TEST(Exchange, MultiLineRepliesJoined) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    if (starts_with(c, "RCPT"))
      return "550-5.1.1 The account does not exist.\r\n550-5.1.1 Please check\r\n"
             "550 5.1.1 the address.\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"nobody@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_REJECTED);
  EXPECT_EQ(r.rcpt_codes[0], 550);
  // The deciding reply keeps every line; the recipient's own record its first.
  EXPECT_EQ(r.text, "The account does not exist.\nPlease check\nthe address.");
  EXPECT_EQ(r.rcpt_texts[0], "The account does not exist.");
  EXPECT_EQ(r.enhanced, "5.1.1");
}

TEST(Exchange, SizeAdvertisedIsEnforcedLocally) {
  PeerScript s;
  s.ehlo = "250-peer\r\n250 SIZE 100\r\n";
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result big = e.wait_one(e.send({"r@x.test"}, std::string(500, 'x')));
  Result small = e.wait_one(e.send({"r@x.test"}, "small\r\n"));
  EXPECT_EQ(big.status, SMTPBULK_REJECTED);
  EXPECT_EQ(big.error, SMTPBULK_EMSGSIZE);
  EXPECT_EQ(small.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(count_prefix(peer.commands(), "MAIL"), 1u);
}

TEST(Exchange, ServerClosesMidTransactionMessageRetried) {
  std::atomic<int> rcpts{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return starts_with(c, "RCPT") && rcpts++ == 0 ? "CLOSE" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(peer.connections(), 2);
  EXPECT_EQ(e.results.duplicates(), 0u);
}

TEST(Exchange, ServerAlwaysClosesMessageFailsOnceNothingHangs) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string { return "CLOSE"; };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  e.opts.max_attempts = 3;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"r@x.test"}, "hi\r\n");
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_ECLOSED);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  EXPECT_EQ(e.results.total(), 1u);
}

TEST(Exchange, Reply421RetriesOnNewConnection) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    return starts_with(c, "MAIL") && n++ == 0 ? "421 4.3.2 shutting down\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(peer.connections(), 2);
}

TEST(Exchange, OverlongReplyEndsConnectionNotMemory) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (starts_with(c, "MAIL") && n++ == 0) return "250 " + std::string(100000, 'A') + "\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);  // retried on a fresh connection
  EXPECT_EQ(r.attempts, 2u);
}

TEST(Exchange, GreetingRefusedHostGoesDownMessagesFail) {
  PeerScript s;
  s.greeting = "554 5.3.2 no service\r\n";
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  uint64_t a = e.send({"r@x.test"}, "hi\r\n");
  uint64_t b = e.send({"r@x.test"}, "hi\r\n", "s@x.test", 0);
  EXPECT_EQ(e.wait_one(a).status, SMTPBULK_FAILED);
  EXPECT_EQ(e.wait_one(b).error, SMTPBULK_EHOSTDOWN);
  EXPECT_EQ(peer.connections(), 4);  // 2 connections x retry_fail 2
  EXPECT_EQ(count_prefix(peer.commands(), "MAIL"), 0u);
  // After the host is down, new messages still get their one result.
  EXPECT_EQ(e.wait_one(e.send({"r@x.test"}, "hi\r\n")).error, SMTPBULK_EHOSTDOWN);
}

TEST(Exchange, ConnectionRefusedFailsQuickly) {
  uint16_t port = free_port();  // nothing listens there
  TestEngine e(port, 1);
  e.opts.retry_fail = 3;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_FAILED);
  EXPECT_EQ(r.error, SMTPBULK_EHOSTDOWN);
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.connect_fails, 3u);
}

TEST(Exchange, MessageForAnyHostUsesTheLiveOne) {
  PeerScript dead;
  dead.greeting = "";  // closes at once
  ScriptedPeer bad(dead);
  ScriptedPeer good(PeerScript{});
  TestEngine e(bad.port(), 1);
  e.add_host(good.port(), 1);
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  std::vector<uint64_t> ids;
  for (int i = 0; i < 20; i++) ids.push_back(e.send({"r@x.test"}, "hi\r\n"));
  for (auto id : ids) {
    Result r = e.wait_one(id);
    EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    EXPECT_EQ(r.host_index, 1);
  }
  EXPECT_EQ(good.bodies().size(), 20u);
}

class StalledTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(StalledTest, StalledConnectionDoesNotHoldUpOthers) {
  // One connection (H, whichever sends the first MAIL) never answers its first final
  // dot; the other must carry every other message meanwhile. What H had taken stays
  // with it: one message, or two in mode 2 (message k+1 rides behind k's body).
  // The peer makes that count certain rather than likely: H's DATA is answered only
  // once all 30 are queued, and the other connection's first MAIL only once H's body
  // is in, so H finds a message to take along in mode 2, whatever the scheduler does.
  const unsigned mode = GetParam();
  const size_t stuck = mode == 2 ? 2 : 1;
  Gate all_queued, h_body;
  std::atomic<int> h{-1};
  std::atomic<bool> h_hung{false};
  PeerScript s;
  s.on_cmd = [&](int conn, const std::string& c) -> std::string {
    if (starts_with(c, "MAIL")) {
      int none = -1;
      if (!h.compare_exchange_strong(none, conn) && none != conn) h_body.wait();
    } else if (c == "DATA" && conn == h) {
      all_queued.wait();
    }
    return "";
  };
  s.on_data = [&](int conn, const std::string&) -> std::string {
    if (conn != h || h_hung.exchange(true)) return "";
    h_body.open();
    return "HANG";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 2);
  e.opts.pipeline = mode;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(wait_until([&] { return peer.connections() >= 2; }));
  std::vector<uint64_t> ids;
  for (int i = 0; i < 30; i++) ids.push_back(e.send({"r@x.test"}, "hi\r\n"));
  all_queued.open();
  ASSERT_TRUE(e.results.wait(30 - stuck, kEventMs)) << "only " << e.results.total() << " results";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 30 - stuck);
  std::set<int> carriers;
  for (uint64_t id : ids)
    if (e.results.has(id)) carriers.insert(e.results.get(id).connection);
  EXPECT_EQ(carriers.size(), 1u);  // all through the other connection
  // The stuck ones are still pending: nothing may end them before the 60 s timeout,
  // so this short wait cannot fail a correct engine; it gives one that ends them
  // anyway (or lets a message go twice) a chance to show it.
  EXPECT_EQ(smtpbulk_drain(e.sb, 100), -ETIMEDOUT);
  EXPECT_EQ(e.results.total(), 30 - stuck);
}

INSTANTIATE_TEST_SUITE_P(Modes, StalledTest, ::testing::Values(0u, 1u, 2u));
