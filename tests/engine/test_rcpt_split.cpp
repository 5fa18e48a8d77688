// A message's recipients over several transactions: "452 4.5.3 too many recipients"
// sends the rest in a further transaction of the same message at once (not counted
// against max_attempts); options.retry_temp_rcpts sends a PARTIAL message's 4xx
// recipients again, alone, after defer_ms (counted). Either way the message has one
// result that merges every transaction's, and no recipient gets the message twice —
// counted on the server's side: aiosmtpd (its DATA lines list the recipients) and our
// own sink (CHUNKING, LMTP).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "engine_helpers.h"
#include "own_sink.h"
#include "scripted_peer.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {
const std::string kBody = "Subject: split\r\n\r\nhello\r\n";

std::vector<std::string> rcpt_list(const char* prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; i++) v.push_back(std::string(prefix) + std::to_string(i) + "@example.com");
  return v;
}

// How many times each recipient was in a message aiosmtpd accepted ("DATA ... rcpts=").
std::map<std::string, int> delivered_to(const AioSmtpd& peer) {
  std::map<std::string, int> seen;
  for (auto& line : peer.events()) {
    if (line.rfind("DATA ", 0) != 0) continue;
    size_t p = line.find("rcpts=");
    if (p == std::string::npos) continue;
    std::string list = line.substr(p + 6);
    size_t start = 0;
    while (start < list.size()) {
      size_t comma = list.find(',', start);
      if (comma == std::string::npos) comma = list.size();
      seen[list.substr(start, comma - start)]++;
      start = comma + 1;
    }
  }
  return seen;
}

size_t count_prefix(const std::vector<std::string>& v, const std::string& p) {
  return (size_t)std::count_if(v.begin(), v.end(),
                               [&](const std::string& s) { return s.rfind(p, 0) == 0; });
}
}  // namespace

// Ten recipients, a server that takes three per transaction: four transactions of the
// one message, DELIVERED, each recipient delivered once, attempts 4 — in every
// pipeline mode, with max_attempts 1 (the further transactions are not counted).
TEST(RcptSplit, TooManyRecipientsGoInFurtherTransactions) {
  AioSmtpd peer({"--max-rcpts", "3"});
  ASSERT_TRUE(peer.ok()) << peer.error();
  int messages = 0;
  for (unsigned mode : {0u, 1u, 2u}) {
    SCOPED_TRACE("pipeline " + std::to_string(mode));
    TestEngine e(peer.port(), 2);
    e.opts.pipeline = mode;
    e.opts.max_attempts = 1;
    ASSERT_EQ(e.start(), 0);
    std::string prefix = "m" + std::to_string(mode) + "-";
    uint64_t id = e.send(rcpt_list(prefix.c_str(), 10), kBody);
    Result r = e.wait_one(id);
    messages++;
    EXPECT_EQ(r.status, SMTPBULK_DELIVERED) << r.code << " " << r.text;
    EXPECT_EQ(r.error, 0);
    EXPECT_EQ(r.attempts, 4u);
    EXPECT_EQ(r.category, SMTPBULK_CAT_DELIVERED);
    ASSERT_EQ(r.rcpt_codes.size(), 10u);
    for (int c : r.rcpt_codes) EXPECT_EQ(c, 250);
    auto seen = delivered_to(peer);
    for (auto& a : rcpt_list(prefix.c_str(), 10)) EXPECT_EQ(seen[a], 1) << a;
    smtpbulk_counters_t ctr;
    smtpbulk_get_counters(e.sb, &ctr);
    EXPECT_EQ(ctr.delivered, 1u);
    EXPECT_EQ(ctr.deferred, 0u); // at once, not after defer_ms
  }
  EXPECT_EQ(count_prefix(peer.events(), "DATA "), (size_t)(4 * messages));
}

// The merged result keeps what each transaction said: a recipient refused for good in
// the second transaction makes the message PARTIAL, with its 550 beside the others' 250.
TEST(RcptSplit, RefusalsInALaterTransactionMakeItPartial) {
  AioSmtpd peer({"--max-rcpts", "2"});
  ASSERT_TRUE(peer.ok()) << peer.error();
  TestEngine e(peer.port(), 1);
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"a@example.com", "b@example.com", "rcpt-perm1@example.com",
                        "c@example.com", "rcpt-perm2@example.com"},
                       kBody);
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
  EXPECT_EQ(r.category, SMTPBULK_CAT_DELIVERED);
  EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 250, 550, 250, 550}));
  auto seen = delivered_to(peer);
  EXPECT_EQ(seen["a@example.com"], 1);
  EXPECT_EQ(seen["b@example.com"], 1);
  EXPECT_EQ(seen["c@example.com"], 1);
  EXPECT_EQ(seen.count("rcpt-perm1@example.com"), 0u);
  // a, b (the rest 452) | perm1 550, c, perm2 550: a refused one takes no place.
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(count_prefix(peer.events(), "DATA "), 2u);
  EXPECT_EQ(count_prefix(peer.events(), "RCPTARG TO:<rcpt-perm1@example.com>"), 2u);
}

// A further transaction in which no recipient is accepted for good and one only for
// now ends the way a 4xx does: with max_attempts spent, PARTIAL (the first part was
// delivered), the 4xx recipient's reply in the result.
TEST(RcptSplit, ATemporaryRefusalOfTheRestEndsPartialWhenAttemptsAreSpent) {
  AioSmtpd peer({"--max-rcpts", "1"});
  ASSERT_TRUE(peer.ok()) << peer.error();
  TestEngine e(peer.port(), 1);
  e.opts.max_attempts = 2;
  e.opts.defer_ms = 10;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"a@example.com", "tempfail@example.com"}, kBody);
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
  EXPECT_EQ(r.error, SMTPBULK_ESERVER);
  EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 451}));
  // a delivered | tempfail 451 (counted), deferred | tempfail 451 again: spent.
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(delivered_to(peer)["a@example.com"], 1);
}

// Our own sink with CHUNKING (BDAT LAST) and a window of transactions in flight, and
// with LMTP (replies after the data): 200 messages of 7 recipients at 3 per
// transaction; the sink counts each recipient once.
TEST(RcptSplit, OurSinkWithChunkingAndWithLmtp) {
  for (int lmtp : {0, 1}) {
    SCOPED_TRACE(lmtp ? "lmtp" : "chunking");
    sink_options o = OwnSinkServer::defaults();
    o.cfg.max_rcpts = 3;
    o.cfg.lmtp = lmtp;
    OwnSinkServer sink(o);
    TestEngine e(sink.port(), 3);
    e.hosts[0].lmtp = lmtp;
    e.opts.max_attempts = 1;
    ASSERT_EQ(e.start(), 0);
    const int n = 200;
    for (int i = 0; i < n; i++) e.send(rcpt_list(("x" + std::to_string(i) + "-").c_str(), 7), kBody);
    ASSERT_TRUE(e.results.wait(n, 30000)) << e.results.total() << " of " << n;
    EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)n);
    EXPECT_EQ(e.results.duplicates(), 0u);
    sink_totals c = sink.totals();
    EXPECT_EQ(c.recipients, (uint64_t)(7 * n));
    EXPECT_EQ(c.messages, (uint64_t)(3 * n));
  }
}

// retry_temp_rcpts: a greylisted recipient (450 the first time) of an otherwise
// delivered message goes again alone after defer_ms: DELIVERED in two attempts, each
// recipient delivered once. Without the option the message ends PARTIAL at once.
TEST(RcptRetry, TemporaryRecipientsOfAPartialMessageGoAgainAlone) {
  AioSmtpd peer({});
  ASSERT_TRUE(peer.ok()) << peer.error();
  {
    TestEngine e(peer.port(), 1);
    e.opts.retry_temp_rcpts = 1;
    e.opts.defer_ms = 10;
    ASSERT_EQ(e.start(), 0);
    uint64_t id = e.send({"a@example.com", "greylist1@example.com", "b@example.com"}, kBody);
    Result r = e.wait_one(id);
    EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    EXPECT_EQ(r.error, 0);
    EXPECT_EQ(r.attempts, 2u);
    EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 250, 250}));
    smtpbulk_counters_t ctr;
    smtpbulk_get_counters(e.sb, &ctr);
    EXPECT_EQ(ctr.deferred, 1u);
  }
  auto seen = delivered_to(peer);
  EXPECT_EQ(seen["a@example.com"], 1);
  EXPECT_EQ(seen["b@example.com"], 1);
  EXPECT_EQ(seen["greylist1@example.com"], 1);
  {
    TestEngine e(peer.port(), 1);  // the option off: the caller's business, as before
    ASSERT_EQ(e.start(), 0);
    uint64_t id = e.send({"c@example.com", "greylist2@example.com"}, kBody);
    Result r = e.wait_one(id);
    EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
    EXPECT_EQ(r.attempts, 1u);
    EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 450}));
  }
}

// A recipient that stays 4xx is tried max_attempts times in all, then the message ends
// PARTIAL with that recipient's last reply; the delivered ones were sent once.
TEST(RcptRetry, RetriesCountAgainstMaxAttempts) {
  AioSmtpd peer({});
  ASSERT_TRUE(peer.ok()) << peer.error();
  TestEngine e(peer.port(), 1);
  e.opts.retry_temp_rcpts = 1;
  e.opts.max_attempts = 3;
  e.opts.defer_ms = 5;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"tempfail-x@example.com", "d@example.com", "rcpt-perm@example.com"}, kBody);
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(r.rcpt_codes, (std::vector<int>{451, 250, 550}));
  auto ev = peer.events();
  EXPECT_EQ(count_prefix(ev, "RCPTARG TO:<tempfail-x@example.com>"), 3u);
  EXPECT_EQ(count_prefix(ev, "RCPTARG TO:<rcpt-perm@example.com>"), 1u);
  EXPECT_EQ(delivered_to(peer)["d@example.com"], 1);
}

// The connection drops during the further transaction: the message goes again on a new
// connection with the recipients still without a verdict; those delivered before are
// not sent twice.
TEST(RcptSplit, AConnectionLostInTheFurtherTransactionResendsOnlyTheRest) {
  PeerScript script;
  std::atomic<int> mails{0};
  std::atomic<int> rcpts_in_txn{0};
  script.on_cmd = [&](int, const std::string& cmd) -> std::string {
    if (cmd.rfind("MAIL", 0) == 0) {
      rcpts_in_txn = 0;
      if (++mails == 2) return "CLOSE";
    }
    if (cmd.rfind("RCPT", 0) == 0 && ++rcpts_in_txn > 2)
      return "452 4.5.3 Error: too many recipients\r\n";
    return "";
  };
  ScriptedPeer peer(script);
  TestEngine e(peer.port(), 1);
  e.opts.reconnect_ms = 10;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"a@example.com", "b@example.com", "c@example.com", "d@example.com"}, kBody);
  Result r = e.wait_one(id);
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED) << r.code << " " << r.text;
  EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 250, 250, 250}));
  auto cmds = peer.commands();
  for (const char* a : {"a", "b", "c", "d"}) {
    std::string rc = std::string("RCPT TO:<") + a + "@example.com>";
    size_t want = (a[0] == 'a' || a[0] == 'b') ? 1u : 2u; // c, d: first refused 452
    EXPECT_EQ(count_prefix(cmds, rc), want) << a;
  }
  EXPECT_EQ(peer.bodies().size(), 2u);
}
