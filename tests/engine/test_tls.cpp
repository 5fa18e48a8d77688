// TLS and AUTH end to end, on the backend under test: the seed's Secure modes 0-4
// against aiosmtpd (an implementation that is not ours) and against our sink, every
// AUTH mechanism, and the failure paths — each message ends exactly once, with a
// clear error, and nothing is sent in the clear when TLS was required.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

extern "C" {
#include "sink_server.h"
}

#include "engine_helpers.h"
#include "scripted_peer.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {

const std::string kBody = "Subject: tls\r\n\r\n" + std::string(300, 'x') + "\r\n";

// Our sink, in-process, speaking TLS.
struct TlsSink {
  sink_server* srv = nullptr;
  sink_options o{};
  TlsSink(int tls, const std::string& cert, const std::string& key, sink_faults faults = {},
          const char* user = nullptr, const char* pass = nullptr) {
    o.host = "127.0.0.1";
    o.threads = 1;
    o.backend = test_backend();
    o.cfg.name = "sink.test";
    o.cfg.size_max = 10000000;
    o.cfg.faults = faults;
    o.cfg.auth_user = user;
    o.cfg.auth_pass = pass;
    o.tls = tls;
    cert_ = cert;
    key_ = key;
    o.cert_file = tls != SINK_TLS_NONE ? cert_.c_str() : nullptr;
    o.key_file = tls != SINK_TLS_NONE ? key_.c_str() : nullptr;
    const char* why = nullptr;
    int rc = sink_server_start(&o, &srv, &why);
    EXPECT_EQ(rc, 0) << why;
  }
  ~TlsSink() { sink_server_stop(srv); }
  uint16_t port() const { return sink_server_port(srv); }
  sink_totals totals() {
    sink_totals t;
    sink_server_totals(srv, &t);
    return t;
  }
  std::string cert_, key_;
};

// An engine for one host with a security setting; the test CA trusted.
struct SecureEngine : TestEngine {
  smtpbulk_security_t sec{};
  std::string ca;
  SecureEngine(uint16_t port, unsigned connections, unsigned secure) : TestEngine(port, connections) {
    sec.struct_size = sizeof(sec);
    sec.secure = secure;
    sec.tls_name = "localhost";
    opts.security = &sec;
    ca = test_certs().ca;
    opts.tls_ca_file = ca.c_str();
    opts.retry_fail = 2;
    opts.max_attempts = 2;
  }
  void auth(const char* mech, const char* user, const char* secret) {
    sec.auth = mech;
    sec.user = user;
    sec.secret = secret;
  }
  // n messages; waits for every result; true when each came exactly once.
  bool send_all(int n, int ms = 30000) {
    for (int i = 0; i < n; i++) send({"r" + std::to_string(i) + "@example.com"}, kBody);
    results.wait(n, ms);
    return results.total() == (size_t)n && results.duplicates() == 0;
  }
  size_t count(smtpbulk_status_t st) { return results.by_status()[st]; }
  // Every result failed with err.
  void expect_all_failed_with(int n, int err) {
    for (uint64_t id = 1; id <= (uint64_t)n; id++) {
      Result r = results.get(id);
      EXPECT_EQ(r.status, SMTPBULK_FAILED) << "message " << id;
      EXPECT_EQ(r.error, err) << "message " << id << ": " << smtpbulk_strerror(r.error);
    }
  }
  uint64_t tls_resumed() {
    smtpbulk_stats_t* st = nullptr;
    if (smtpbulk_get_stats(sb, &st) != 0) return 0;
    uint64_t n = st->tls_resumed;
    smtpbulk_stats_free(st);
    return n;
  }
};

int count_events(const std::vector<std::string>& ev, const std::string& prefix) {
  int n = 0;
  for (auto& e : ev) n += e.rfind(prefix, 0) == 0;
  return n;
}

}  // namespace

// ---- against our sink ---------------------------------------------------------------

TEST(TlsOwnSink, ImplicitTlsVerifiedDelivers) {
  REQUIRE_CERTS();
  TlsSink sink(SINK_TLS_IMPLICIT, test_certs().cert, test_certs().key);
  ASSERT_NE(sink.srv, nullptr);
  SecureEngine e(sink.port(), 4, SMTPBULK_SECURE_SMTPS_VERIFY);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(300));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 300u);
  sink_totals t = sink.totals();
  EXPECT_EQ(t.messages, 300u);
  EXPECT_GE(t.tls_handshakes, 1u);
  EXPECT_EQ(t.tls_failed, 0u);
}

TEST(TlsOwnSink, StartTlsVerifiedWithCramMd5AndAuthCallbacks) {
  REQUIRE_CERTS();
  TlsSink sink(SINK_TLS_STARTTLS, test_certs().cert, test_certs().key, {}, "alice", "wonder");
  ASSERT_NE(sink.srv, nullptr);
  // Before the engine: its workers may call back until it is destroyed.
  std::atomic<int> passes{0}, fails{0};
  struct Counts {
    std::atomic<int>*p, *f;
  } counts{&passes, &fails};
  SecureEngine e(sink.port(), 2, SMTPBULK_SECURE_STARTTLS_VERIFY);
  e.auth("CRAM-MD5", "alice", "wonder");
  smtpbulk_callbacks_t cbs{};
  cbs.struct_size = sizeof(cbs);
  cbs.auth_pass = [](const smtpbulk_event_t* ev, void* a) {
    EXPECT_EQ(ev->kind, SMTPBULK_EV_AUTH_PASS);
    static_cast<Counts*>(a)->p->fetch_add(1);
    return 1;
  };
  cbs.auth_fail = [](const smtpbulk_event_t*, void* a) {
    static_cast<Counts*>(a)->f->fetch_add(1);
    return 1;
  };
  cbs.arg = &counts;
  e.opts.callbacks = &cbs;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(100));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 100u);
  sink_totals t = sink.totals();
  EXPECT_EQ(t.messages, 100u);
  EXPECT_GE(t.auth_ok, 1u);
  EXPECT_EQ(t.auth_failed, 0u);
  EXPECT_GE(passes.load(), 1);
  EXPECT_EQ(fails.load(), 0);
}

TEST(TlsOwnSink, RepliesInjectedAfterStartTlsAreIgnored) {
  REQUIRE_CERTS();
  sink_faults f{};
  f.starttls_inject = 1;  // "250 ... injected" right behind the 220, in plaintext
  TlsSink sink(SINK_TLS_STARTTLS, test_certs().cert, test_certs().key, f);
  ASSERT_NE(sink.srv, nullptr);
  struct Seen {  // before the engine: its workers may call back until it is destroyed
    std::mutex mu;
    std::string lines;
  } seen;
  SecureEngine e(sink.port(), 2, SMTPBULK_SECURE_STARTTLS_VERIFY);
  smtpbulk_callbacks_t cbs{};
  cbs.struct_size = sizeof(cbs);
  cbs.read = [](const smtpbulk_event_t* ev, void* a) {
    auto* s = static_cast<Seen*>(a);
    std::lock_guard<std::mutex> g(s->mu);
    s->lines.append(ev->line, ev->line_len).append("\n");
    return 1;
  };
  cbs.arg = &seen;
  e.opts.callbacks = &cbs;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(50));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 50u);
  std::lock_guard<std::mutex> g(seen.mu);
  EXPECT_NE(seen.lines.find("Ready to start TLS"), std::string::npos);
  EXPECT_EQ(seen.lines.find("injected"), std::string::npos) << seen.lines;
}

TEST(TlsOwnSink, LargeBodiesArriveWholeThroughTheBoundedOutbox) {
  REQUIRE_CERTS();
  TlsSink sink(SINK_TLS_STARTTLS, test_certs().cert, test_certs().key);
  ASSERT_NE(sink.srv, nullptr);
  SecureEngine e(sink.port(), 2, SMTPBULK_SECURE_STARTTLS_REQUIRE);
  ASSERT_EQ(e.start(), 0);
  // 3 MB: many times the 256 KB the outbox may hold ahead of the socket.
  std::string body = "Subject: big\r\n\r\n";
  while (body.size() < (3u << 20)) body += std::string(76, 'y') + "\r\n";
  for (int i = 0; i < 4; i++) e.send({"big@example.com"}, body);
  ASSERT_TRUE(e.results.wait(4, 60000));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 4u);
  EXPECT_EQ(sink.totals().bytes, 4 * body.size());  // BDAT: the exact bytes
}

// 202 (reconnect) resumes the TLS session; 203 (restart) begins anew.
class TlsResumption : public ::testing::TestWithParam<int> {};

TEST_P(TlsResumption, ReconnectResumesRestartDoesNot) {
  REQUIRE_CERTS();
  const int code = GetParam();
  const int kMessages = 12;
  TlsSink sink(SINK_TLS_IMPLICIT, test_certs().cert, test_certs().key);
  ASSERT_NE(sink.srv, nullptr);
  // Before the engine, which calls back until destroyed: every pass asks for the code,
  // and reconnect_pass is counted, so the test knows when the last reconnection is up.
  struct Cb {
    int code;
    std::atomic<int> reconnects{0};
  } cb{code};
  SecureEngine e(sink.port(), 1, SMTPBULK_SECURE_SMTPS_VERIFY);
  e.opts.pipeline = 0;  // one message at a time: each ends its connection
  smtpbulk_callbacks_t cbs{};
  cbs.struct_size = sizeof(cbs);
  cbs.pass = [](const smtpbulk_event_t*, void* a) { return static_cast<Cb*>(a)->code; };
  cbs.reconnect_pass = [](const smtpbulk_event_t*, void* a) {
    static_cast<Cb*>(a)->reconnects++;
    return 1;
  };
  cbs.arg = &cb;
  e.opts.callbacks = &cbs;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(kMessages));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), (size_t)kMessages);
  // Each pass ended its connection; the last one's did not come back, for nothing
  // was left to send: kMessages - 1 reconnections, each up before its message went.
  ASSERT_TRUE(wait_until([&] { return cb.reconnects.load() >= kMessages - 1; }));
  smtpbulk_stats_t* st = nullptr;
  ASSERT_EQ(smtpbulk_get_stats(e.sb, &st), 0);
  const uint64_t handshakes = st->tls_handshakes, resumed = st->tls_resumed;
  smtpbulk_stats_free(st);
  sink_totals t = sink.totals();
  EXPECT_EQ(handshakes, (uint64_t)kMessages);
  EXPECT_EQ(t.tls_handshakes, (uint64_t)kMessages);
  if (code == SMTPBULK_CB_RECONNECT) {  // all but the first
    EXPECT_EQ(resumed, kMessages - 1u);
    EXPECT_EQ(t.tls_resumed, kMessages - 1u);
  } else {
    EXPECT_EQ(resumed, 0u);
    EXPECT_EQ(t.tls_resumed, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Codes, TlsResumption,
                         ::testing::Values(SMTPBULK_CB_RECONNECT, SMTPBULK_CB_RESTART));

// ---- failure paths ------------------------------------------------------------------

// The server's certificate against what the client trusts: each row a sink mode, the
// certificate it shows, the client's Secure mode, CA and name, and what must happen.
struct CertCase {
  const char* name;
  int mode;  // SINK_TLS_IMPLICIT or SINK_TLS_STARTTLS
  std::string TestCerts::*cert;
  unsigned secure;
  std::string TestCerts::*ca;
  const char* tls_name;
  unsigned connections;
  int err;  // 0: every message delivered; else every message FAILED with it
};

class TlsCertificates : public ::testing::TestWithParam<CertCase> {};

TEST_P(TlsCertificates, TrustDecidesAndNothingIsSentUntrusted) {
  REQUIRE_CERTS();
  const CertCase& c = GetParam();
  TlsSink sink(c.mode, test_certs().*c.cert, test_certs().key);
  ASSERT_NE(sink.srv, nullptr);
  SecureEngine e(sink.port(), c.connections, c.secure);
  e.ca = test_certs().*c.ca;
  e.opts.tls_ca_file = e.ca.c_str();
  e.sec.tls_name = c.tls_name;
  ASSERT_EQ(e.start(), 0);
  const int n = 5 * (int)c.connections;
  ASSERT_TRUE(e.send_all(n));
  if (c.err) {
    e.expect_all_failed_with(n, c.err);
    EXPECT_EQ(sink.totals().messages, 0u);
  } else {
    EXPECT_EQ(e.count(SMTPBULK_DELIVERED), (size_t)n);
  }
}

INSTANTIATE_TEST_SUITE_P(
    TlsFailures, TlsCertificates,
    ::testing::Values(
        CertCase{"UntrustedCa", SINK_TLS_IMPLICIT, &TestCerts::cert, SMTPBULK_SECURE_SMTPS_VERIFY,
                 &TestCerts::other_ca, "localhost", 2, SMTPBULK_ECERT},
        CertCase{"WrongHostName", SINK_TLS_STARTTLS, &TestCerts::cert,
                 SMTPBULK_SECURE_STARTTLS_VERIFY, &TestCerts::ca, "mail.wrong.example", 1,
                 SMTPBULK_ECERT},
        CertCase{"ExpiredCertificate", SINK_TLS_IMPLICIT, &TestCerts::expired,
                 SMTPBULK_SECURE_SMTPS_VERIFY, &TestCerts::ca, "localhost", 1, SMTPBULK_ECERT},
        // The control for the three above: mode 1 does not verify, so the same expired
        // certificate with the wrong name is accepted.
        CertCase{"UnverifiedModeAcceptsTheSame", SINK_TLS_IMPLICIT, &TestCerts::expired,
                 SMTPBULK_SECURE_SMTPS, &TestCerts::ca, "mail.wrong.example", 1, 0}),
    [](const ::testing::TestParamInfo<CertCase>& i) { return std::string(i.param.name); });

// RFC 8446 §6.2: a client that aborts the handshake (it does not trust the server's
// certificate) says why with a fatal alert before it closes; without one the server
// logs a dropped connection. The peer is OpenSSL's s_server, which prints the alerts
// it receives (-msg).
TEST(TlsFailures, AnUntrustedCertificateIsAnsweredWithAnAlert) {
  REQUIRE_CERTS();
  const uint16_t port = free_port();
  char out[] = "/tmp/smtpbulk-s_server-XXXXXX";
  int ofd = mkstemp(out);
  ASSERT_GE(ofd, 0);
  int in[2];
  ASSERT_EQ(pipe(in), 0);  // s_server's stdin: open until the test ends
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(ofd, 1);
    dup2(ofd, 2);
    close(in[1]);
    std::string accept = "127.0.0.1:" + std::to_string(port);
    execlp("openssl", "openssl", "s_server", "-accept", accept.c_str(), "-cert",
           test_certs().cert.c_str(), "-key", test_certs().key.c_str(), "-msg", "-naccept",
           "1", (char*)nullptr);
    _exit(127);
  }
  close(in[0]);
  close(ofd);
  auto output = [&] {
    FILE* f = fopen(out, "r");
    std::string text;
    if (!f) return text;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
    fclose(f);
    return text;
  };
  bool listening = wait_until([&] { return output().find("ACCEPT") != std::string::npos; });
  if (listening) {
    SecureEngine e(port, 1, SMTPBULK_SECURE_SMTPS_VERIFY);
    e.ca = test_certs().other_ca;  // not the CA that signed the server's certificate
    e.opts.tls_ca_file = e.ca.c_str();
    e.sec.tls_name = "localhost";
    e.opts.retry_fail = 1;
    EXPECT_EQ(e.start(), 0);
    if (e.send_all(1)) e.expect_all_failed_with(1, SMTPBULK_ECERT);
    // "<<<" is what s_server received: here unknown_ca.
    EXPECT_TRUE(wait_until([&] {
      return output().find("<<< TLS 1.3, Alert [length 0002], fatal") != std::string::npos;
    })) << output();
  }
  close(in[1]);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  unlink(out);
  ASSERT_TRUE(listening) << "s_server did not start: " << output();
}

TEST(TlsFailures, Mode2AgainstAPlaintextServerSendsNothingInTheClear) {
  PeerScript ps;  // greets in plaintext where a TLS ServerHello was due
  ScriptedPeer peer(ps);
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_SMTPS_VERIFY);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(4));
  e.expect_all_failed_with(4, SMTPBULK_ETLS);
  for (auto& cmd : peer.commands()) {
    EXPECT_EQ(cmd.find("MAIL"), std::string::npos) << cmd;
    EXPECT_EQ(cmd.find("EHLO"), std::string::npos) << cmd;
  }
}

TEST(TlsFailures, Mode4ServerWithoutStartTlsGetsNoMailInTheClear) {
  PeerScript ps;  // advertises no STARTTLS
  ScriptedPeer peer(ps);
  SecureEngine e(peer.port(), 2, SMTPBULK_SECURE_STARTTLS_VERIFY);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(10));
  e.expect_all_failed_with(10, SMTPBULK_ENOSTARTTLS);
  for (auto& cmd : peer.commands()) {
    EXPECT_NE(cmd.rfind("MAIL", 0), 0u) << "sent in the clear: " << cmd;
    EXPECT_NE(cmd.rfind("AUTH", 0), 0u) << "sent in the clear: " << cmd;
  }
}

TEST(TlsFailures, Mode4StartTlsRefusedGetsNoMailInTheClear) {
  PeerScript ps;
  ps.ehlo = "250-peer.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n";
  ps.on_cmd = [](int, const std::string& cmd) -> std::string {
    return cmd == "STARTTLS" ? "454 4.7.0 TLS not available due to temporary reason\r\n" : "";
  };
  ScriptedPeer peer(ps);
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_STARTTLS_VERIFY);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(5));
  e.expect_all_failed_with(5, SMTPBULK_ENOSTARTTLS);
  for (auto& cmd : peer.commands()) EXPECT_NE(cmd.rfind("MAIL", 0), 0u) << cmd;
}

namespace {

// Says 220 to STARTTLS, reads the ClientHello, and hangs up: a server (or a middlebox)
// that drops the connection mid-handshake. Records every byte it received.
class DropMidHandshake {
 public:
  DropMidHandshake() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port_ = ntohs(a.sin_port);
    th_ = std::thread([this] { run(); });
  }
  ~DropMidHandshake() {
    stop_ = true;
    if (th_.joinable()) th_.join();
    close(fd_);
  }
  uint16_t port() const { return port_; }
  std::string seen() {
    std::lock_guard<std::mutex> g(mu_);
    return seen_;
  }
  int handshakes_dropped() const { return dropped_.load(); }

 private:
  // Reads until `until` is in what arrived (or 2 s pass); false on timeout or EOF.
  bool read_until(int c, const std::string& until, std::string& buf) {
    for (int i = 0; i < 200 && !stop_; i++) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      char tmp[4096];
      ssize_t n = read(c, tmp, sizeof(tmp));
      if (n <= 0) return false;
      buf.append(tmp, (size_t)n);
      {
        std::lock_guard<std::mutex> g(mu_);
        seen_.append(tmp, (size_t)n);
      }
      if (until.empty() || buf.find(until) != std::string::npos) return true;
    }
    return false;
  }
  void say(int c, const std::string& s) {
    ssize_t n = write(c, s.data(), s.size());
    (void)n;
  }
  void run() {
    while (!stop_) {  // bounded: the test ends, stop_ is set
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string buf;
      say(c, "220 drop.test ESMTP\r\n");
      if (read_until(c, "\r\n", buf)) {
        say(c, "250-drop.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
        buf.clear();
        if (read_until(c, "STARTTLS\r\n", buf)) {
          say(c, "220 2.0.0 go ahead\r\n");
          buf.clear();
          if (read_until(c, "", buf)) dropped_++;  // the ClientHello: hang up on it
        }
      }
      close(c);
    }
  }
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> dropped_{0};
  std::thread th_;
  std::mutex mu_;
  std::string seen_;
};

}  // namespace

TEST(TlsFailures, ServerDropsMidHandshake) {
  REQUIRE_CERTS();
  DropMidHandshake peer;
  ASSERT_NE(peer.port(), 0);
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_STARTTLS_REQUIRE);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(5));
  e.expect_all_failed_with(5, SMTPBULK_ETLS);
  EXPECT_GE(peer.handshakes_dropped(), 1);
  EXPECT_EQ(peer.seen().find("MAIL"), std::string::npos);
}

TEST(TlsFailures, WrongPasswordStopsTheHostWithoutAStorm) {
  REQUIRE_CERTS();
  TlsSink sink(SINK_TLS_IMPLICIT, test_certs().cert, test_certs().key, {}, "alice", "wonder");
  ASSERT_NE(sink.srv, nullptr);
  SecureEngine e(sink.port(), 4, SMTPBULK_SECURE_SMTPS_VERIFY);
  e.opts.retry_fail = 50;  // would be 200 logins if 535 were treated as trouble
  e.auth("PLAIN", "alice", "not-the-password");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(40));
  e.expect_all_failed_with(40, SMTPBULK_EAUTH);
  sink_totals t = sink.totals();
  EXPECT_EQ(t.messages, 0u);
  EXPECT_GE(t.auth_failed, 1u);
  EXPECT_LE(t.auth_failed, 4u);      // at most once per connection
  EXPECT_LE(t.connections, 4u);
}

TEST(TlsFailures, AuthOnPlaintextIsRefusedBeforeAnyCredentialIsSent) {
  TlsSink sink(SINK_TLS_NONE, "", "", {}, "alice", "wonder");
  ASSERT_NE(sink.srv, nullptr);
  SecureEngine e(sink.port(), 1, SMTPBULK_SECURE_NONE);
  e.auth("PLAIN", "alice", "wonder");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(5));
  e.expect_all_failed_with(5, SMTPBULK_EAUTHPLAIN);
  sink_totals t = sink.totals();
  EXPECT_EQ(t.auth_ok + t.auth_failed, 0u);
}

TEST(TlsFailures, BadTlsConfigurationFailsCreate) {
  REQUIRE_CERTS();
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  smtpbulk_host_t h{};
  h.host = "127.0.0.1";
  h.port = 1;
  o.hosts = &h;
  o.n_hosts = 1;
  smtpbulk_security_t sec{};
  sec.struct_size = sizeof(sec);
  sec.secure = SMTPBULK_SECURE_SMTPS_VERIFY;
  o.security = &sec;
  o.tls_ca_file = "/nonexistent/ca.pem";
  smtpbulk_t* sb = nullptr;
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_ETLSCONFIG);
  o.tls_ca_file = test_certs().ca.c_str();
  o.tls_cert_file = test_certs().client_cert.c_str();  // without its key
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_ETLSCONFIG);
  o.tls_cert_file = nullptr;
  sec.secure = 6;
  EXPECT_EQ(smtpbulk_create(&o, &sb), -EINVAL);
  sec.secure = SMTPBULK_SECURE_SMTPS;
  sec.auth = "KERBEROS";
  sec.user = "u";
  sec.secret = "p";
  EXPECT_EQ(smtpbulk_create(&o, &sb), -EINVAL);
  EXPECT_EQ(sb, nullptr);
}

// ---- against aiosmtpd -------------------------------------------------------------

namespace {

std::vector<std::string> aio_args(const std::string& tls, bool auth = false) {
  std::vector<std::string> a = {"--tls", tls};
  if (tls != "none") {
    a.insert(a.end(), {"--cert", test_certs().cert, "--key", test_certs().key});
  }
  if (auth) a.insert(a.end(), {"--user", "bob", "--password", "hunter2-x"});
  return a;
}

}  // namespace

struct ModeCase {
  unsigned secure;
  const char* server_tls;  // aiosmtpd's mode
  int want_tls;            // the MAIL it saw came over TLS
};

class AiosmtpdModes : public ::testing::TestWithParam<ModeCase> {};

TEST_P(AiosmtpdModes, DeliversAndTheServerSawTheRightChannel) {
  REQUIRE_CERTS();
  const ModeCase mc = GetParam();
  AioSmtpd peer(aio_args(mc.server_tls));
  ASSERT_TRUE(peer.ok()) << peer.error();
  SecureEngine e(peer.port(), 2, mc.secure);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(6));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 6u);
  auto ev = peer.events();
  EXPECT_EQ(count_events(ev, "MAIL tls=" + std::to_string(mc.want_tls)), 6);
  EXPECT_EQ(count_events(ev, "MAIL tls=" + std::to_string(!mc.want_tls)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Secure, AiosmtpdModes,
    ::testing::Values(ModeCase{SMTPBULK_SECURE_NONE, "none", 0},
                      ModeCase{SMTPBULK_SECURE_SMTPS, "smtps", 1},
                      ModeCase{SMTPBULK_SECURE_SMTPS_VERIFY, "smtps", 1},
                      ModeCase{SMTPBULK_SECURE_STARTTLS, "starttls", 1},
                      ModeCase{SMTPBULK_SECURE_STARTTLS, "none", 0},  // opportunistic
                      ModeCase{SMTPBULK_SECURE_STARTTLS_VERIFY, "starttls", 1}),
    [](const ::testing::TestParamInfo<ModeCase>& i) {
      return "mode" + std::to_string(i.param.secure) + "_server_" + i.param.server_tls;
    });

TEST(Aiosmtpd, Mode4AgainstAPlaintextServerSendsNoMail) {
  REQUIRE_CERTS();
  AioSmtpd peer(aio_args("none"));
  ASSERT_TRUE(peer.ok()) << peer.error();
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_STARTTLS_VERIFY);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(4));
  e.expect_all_failed_with(4, SMTPBULK_ENOSTARTTLS);
  EXPECT_EQ(count_events(peer.events(), "MAIL"), 0);
}

class AiosmtpdAuth : public ::testing::TestWithParam<const char*> {};

TEST_P(AiosmtpdAuth, MechanismLogsInOverStartTls) {
  REQUIRE_CERTS();
  const std::string mech = GetParam();
  AioSmtpd peer(aio_args("starttls", true));
  ASSERT_TRUE(peer.ok()) << peer.error();
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_STARTTLS_VERIFY);
  e.auth(mech.c_str(), "bob", "hunter2-x");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(3));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 3u);
  // AUTO takes the strongest aiosmtpd offers here: SCRAM-SHA-256.
  const std::string used = mech == "AUTO" ? "SCRAM-SHA-256" : mech;
  auto ev = peer.events();
  EXPECT_GE(count_events(ev, "AUTH " + used + " ok tls=1"), 1);
  EXPECT_EQ(count_events(ev, "AUTH " + used + " bad"), 0);
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, AiosmtpdAuth,
                         ::testing::Values("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256",
                                           "AUTO"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (auto& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Aiosmtpd, ClientCertificateIsPresentedWhenAsked) {
  REQUIRE_CERTS();
  auto args = aio_args("smtps");
  args.insert(args.end(), {"--client-ca", test_certs().ca});
  AioSmtpd peer(args);
  ASSERT_TRUE(peer.ok()) << peer.error();
  {  // without one, the server refuses the handshake
    SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_SMTPS_VERIFY);
    ASSERT_EQ(e.start(), 0);
    ASSERT_TRUE(e.send_all(2));
    e.expect_all_failed_with(2, SMTPBULK_ETLS);
  }
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_SMTPS_VERIFY);
  e.opts.tls_cert_file = test_certs().client_cert.c_str();
  e.opts.tls_key_file = test_certs().client_key.c_str();
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(3));
  EXPECT_EQ(e.count(SMTPBULK_DELIVERED), 3u);
  EXPECT_EQ(count_events(peer.events(), "MAIL tls=1 client=smtpbulk_client"), 3);
}

TEST(Aiosmtpd, WrongPasswordIsEAuth) {
  REQUIRE_CERTS();
  AioSmtpd peer(aio_args("smtps", true));
  ASSERT_TRUE(peer.ok()) << peer.error();
  SecureEngine e(peer.port(), 2, SMTPBULK_SECURE_SMTPS_VERIFY);
  e.auth("LOGIN", "bob", "wrong");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(6));
  e.expect_all_failed_with(6, SMTPBULK_EAUTH);
  auto ev = peer.events();
  EXPECT_EQ(count_events(ev, "MAIL"), 0);
  EXPECT_LE(count_events(ev, "AUTH LOGIN bad"), 2);  // once per connection, no storm
}

TEST(Aiosmtpd, ScramServerWithAWrongSignatureIsNotTrusted) {
  REQUIRE_CERTS();
  auto args = aio_args("smtps", true);
  args.push_back("--scram-bad-signature");
  AioSmtpd peer(args);
  ASSERT_TRUE(peer.ok()) << peer.error();
  SecureEngine e(peer.port(), 1, SMTPBULK_SECURE_SMTPS);
  e.auth("SCRAM-SHA-256", "bob", "hunter2-x");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(3));
  for (uint64_t id = 1; id <= 3; id++) {
    Result r = e.results.get(id);
    EXPECT_EQ(r.status, SMTPBULK_FAILED);
    EXPECT_EQ(r.error, SMTPBULK_EAUTH) << smtpbulk_strerror(r.error);
  }
  EXPECT_EQ(count_events(peer.events(), "MAIL"), 0);
}
