// Per-phase timings in every result (smtpbulk_phases_t): a scripted server that holds
// back one reply of each phase makes that phase at least as long as it held it back,
// and the phases never add up to more than the message's latency. The TLS and AUTH
// phases against aiosmtpd with STARTTLS and a login; queued and paced with pacing.
// Only lower bounds the server itself enforces are asserted (less a grain for a worker
// that handles a reply late): no timing of ours is.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {
const std::string kBody = "Subject: phases\r\n\r\nhello\r\n";
constexpr uint64_t kMs = 1000000;
constexpr int kHold = 120;  // ms each scripted reply is held back
// A reply is stamped when its worker handles it (the clock read after each wait), which
// on a busy machine may be a little after it came: the phase after it looks that much
// shorter.
constexpr uint64_t kGrain = 10 * kMs;
constexpr uint64_t kHeld = kHold * kMs - kGrain;  // what a held reply's phase is at least

void hold() { std::this_thread::sleep_for(std::chrono::milliseconds(kHold)); }

uint64_t txn_sum(const smtpbulk_phases_t& p) { return p.mail_ns + p.rcpt_ns + p.data_ns + p.dot_ns; }

// A server slow in every phase: the greeting dribbles out (one byte each 30 ms), EHLO,
// MAIL, RCPT, DATA and the final reply each come kHold ms late.
PeerScript slow_script() {
  PeerScript s;
  s.greeting = "SLOW:220 x\r\n";  // 7 bytes: 6 gaps of dribble_ms
  s.dribble_ms = 30;
  s.on_cmd = [](int, const std::string& cmd) -> std::string {
    if (cmd.rfind("EHLO", 0) == 0 || cmd.rfind("MAIL", 0) == 0 || cmd.rfind("RCPT", 0) == 0 ||
        cmd == "DATA")
      hold();
    return "";
  };
  s.on_data = [](int, const std::string&) -> std::string {
    hold();
    return "";
  };
  return s;
}
}  // namespace

// Lockstep and pipelined: each phase at least as long as the server held its reply.
// Pipelined, MAIL, RCPT and DATA go out together, but the server still answers them
// one after the other, so each wait is still seen.
TEST(Phases, EachPhaseIsAtLeastWhatTheServerHeldItBack) {
  for (unsigned mode : {0u, 1u}) {
    SCOPED_TRACE("pipeline " + std::to_string(mode));
    ScriptedPeer peer(slow_script());
    TestEngine e(peer.port(), 1);
    e.opts.pipeline = mode;
    ASSERT_EQ(e.start(), 0);
    uint64_t id = e.send({"a@example.com"}, kBody);
    Result r = e.wait_one(id, 20000);
    ASSERT_EQ(r.status, SMTPBULK_DELIVERED) << r.code << " " << r.text;
    const smtpbulk_phases_t& p = r.phases;
    EXPECT_GT(p.connect_ns, 0u);
    EXPECT_GE(p.greeting_ns, 6 * 30 * kMs - kGrain);
    EXPECT_GE(p.ehlo_ns, kHeld);
    EXPECT_EQ(p.tls_ns, 0u);
    EXPECT_EQ(p.auth_ns, 0u);
    EXPECT_GE(p.mail_ns, kHeld);
    EXPECT_GE(p.rcpt_ns, kHeld);
    EXPECT_GE(p.data_ns, kHeld);
    EXPECT_GE(p.dot_ns, kHeld);
    EXPECT_GT(p.queued_ns, 0u);
    EXPECT_EQ(p.paced_ns, 0u);
    // The connection's setup came before the transaction; both within the latency.
    EXPECT_LE(p.queued_ns + txn_sum(p), r.latency_ns);
    EXPECT_GE(r.latency_ns, 4 * kHold * kMs);
  }
}

// CHUNKING: no 354, so data_ns is 0 and the wait for the BDAT LAST reply is dot_ns.
TEST(Phases, BdatHasNoDataPhase) {
  PeerScript s = slow_script();
  s.chunking = true;
  s.ehlo = "250-peer.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n";
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.pipeline = 2;
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"a@example.com"}, kBody);
  Result r = e.wait_one(id, 20000);
  ASSERT_EQ(r.status, SMTPBULK_DELIVERED) << r.code << " " << r.text;
  EXPECT_EQ(r.phases.data_ns, 0u);
  EXPECT_GE(r.phases.dot_ns, kHeld);
  EXPECT_GE(r.phases.rcpt_ns, kHeld);
}

// A second message on the same connection carries that connection's setup times too
// (the connection it went over), and its own transaction's.
TEST(Phases, EveryMessageOfAConnectionCarriesItsSetup) {
  ScriptedPeer peer(slow_script());
  TestEngine e(peer.port(), 1);
  e.opts.pipeline = 0;
  ASSERT_EQ(e.start(), 0);
  uint64_t a = e.send({"a@example.com"}, kBody);
  uint64_t b = e.send({"b@example.com"}, kBody);
  Result ra = e.wait_one(a, 20000), rb = e.wait_one(b, 20000);
  ASSERT_EQ(ra.status, SMTPBULK_DELIVERED);
  ASSERT_EQ(rb.status, SMTPBULK_DELIVERED);
  EXPECT_EQ(ra.phases.greeting_ns, rb.phases.greeting_ns);
  EXPECT_EQ(ra.phases.ehlo_ns, rb.phases.ehlo_ns);
  EXPECT_GE(rb.phases.mail_ns, kHeld);
  // b waited in the queue at least while a's transaction ran (lockstep, one connection).
  EXPECT_GE(rb.phases.queued_ns, 4 * kHeld);
}

// With a pacer of 5 a second and no burst, the third of three messages waits for the
// pacer about 400 ms; the pacing waits are counted in paced_ns (and in queued_ns).
TEST(Phases, PacedTimeIsCounted) {
  PeerScript s;
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.host_rate = {5, 1000, 1};
  ASSERT_EQ(e.start(), 0);
  uint64_t ids[3];
  for (auto& id : ids) id = e.send({"a@example.com"}, kBody);
  uint64_t paced = 0;
  for (auto id : ids) {
    Result r = e.wait_one(id, 20000);
    ASSERT_EQ(r.status, SMTPBULK_DELIVERED);
    EXPECT_LE(r.phases.paced_ns, r.phases.queued_ns + txn_sum(r.phases) + r.latency_ns);
    paced += r.phases.paced_ns;
  }
  // 200 ms and 400 ms between starts: at least the second pause is seen whole.
  EXPECT_GE(paced, 300 * kMs);
}

// STARTTLS with a login, against aiosmtpd: the TLS and AUTH phases are there.
TEST(Phases, TlsAndAuthAgainstAiosmtpd) {
  REQUIRE_CERTS();
  AioSmtpd peer({"--tls", "starttls", "--cert", test_certs().cert, "--key", test_certs().key,
                 "--user", "bob", "--password", "hunter2-x"});
  ASSERT_TRUE(peer.ok()) << peer.error();
  TestEngine e(peer.port(), 1);
  smtpbulk_security_t sec{};
  sec.struct_size = sizeof(sec);
  sec.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
  sec.tls_name = "localhost";
  sec.auth = "PLAIN";
  sec.user = "bob";
  sec.secret = "hunter2-x";
  e.opts.security = &sec;
  std::string ca = test_certs().ca;
  e.opts.tls_ca_file = ca.c_str();
  ASSERT_EQ(e.start(), 0);
  uint64_t id = e.send({"a@example.com"}, kBody);
  Result r = e.wait_one(id, 20000);
  ASSERT_EQ(r.status, SMTPBULK_DELIVERED) << r.code << " " << r.text;
  EXPECT_GT(r.phases.tls_ns, 0u);
  EXPECT_GT(r.phases.auth_ns, 0u);
  EXPECT_GT(r.phases.ehlo_ns, 0u);
  EXPECT_GT(r.phases.greeting_ns, 0u);
}
