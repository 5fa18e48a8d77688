// XOAUTH2 and OAUTHBEARER with a token callback, end to end against aiosmtpd (the
// server side in tests/support/aiosmtpd_peer.py, written from RFC 7628 and Google's
// XOAUTH2 page): the callback is asked once per new connection, a refused token is
// replaced by a fresh one on the same connection, a second refusal stops the host, a
// callback without a token fails every message once with SMTPBULK_ETOKEN, and no token
// reaches the log.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <vector>

extern "C" {
#include "sasl.h"
}

#include "engine_helpers.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {

const std::string kBody = "Subject: oauth\r\n\r\n" + std::string(200, 'x') + "\r\n";

// The caller's side of the callback: a token for fresh = 0 and one for fresh = 1, or a
// failure; every call counted (it runs on worker threads, several at once).
struct TokenSource {
  std::string stale = "tok-A", fresh = "tok-A";
  bool fail = false, fail_fresh = false;
  int result = 0;  // with fail (or fail_fresh, for fresh = 1): returned instead of a token
  std::atomic<int> calls{0}, fresh_calls{0};
  std::mutex mu;
  std::set<std::string> hosts, users;

  static int cb(const char* host, const char* user, int fresh, char* buf, size_t cap,
                void* arg) {
    auto* t = static_cast<TokenSource*>(arg);
    t->calls++;
    if (fresh) t->fresh_calls++;
    {
      std::lock_guard<std::mutex> g(t->mu);
      t->hosts.insert(host ? host : "(null)");
      t->users.insert(user ? user : "(null)");
    }
    if (t->fail || (fresh && t->fail_fresh)) return t->result;
    const std::string& tok = fresh ? t->fresh : t->stale;
    if (tok.size() > cap) return -1;
    memcpy(buf, tok.data(), tok.size());
    return (int)tok.size();
  }
};

// One host over STARTTLS (verified), AUTH with mech; the token from src when given.
struct OAuthEngine : TestEngine {
  smtpbulk_security_t sec{};
  std::string ca;
  LogCapture* log = nullptr;
  OAuthEngine(uint16_t port, unsigned connections, const char* mech, TokenSource* src,
              const char* secret = nullptr, LogCapture* lc = nullptr)
      : TestEngine(port, connections) {
    sec.struct_size = sizeof(sec);
    sec.secure = SMTPBULK_SECURE_STARTTLS_VERIFY;
    sec.tls_name = "localhost";
    sec.auth = mech;
    sec.user = "bob";
    sec.secret = secret;
    if (src) {
      sec.token_cb = TokenSource::cb;
      sec.token_arg = src;
    }
    opts.security = &sec;
    ca = test_certs().ca;
    opts.tls_ca_file = ca.c_str();
    opts.retry_fail = 2;
    opts.max_attempts = 2;
    if (lc) {
      opts.debug = 10;
      opts.on_log = LogCapture::cb;
      opts.log_arg = lc;
    }
  }
  bool send_all(int n, int ms = 30000) {
    for (int i = 0; i < n; i++) send({"r" + std::to_string(i) + "@example.com"}, kBody);
    results.wait(n, ms);
    return results.total() == (size_t)n && results.duplicates() == 0;
  }
  void expect_all(int n, smtpbulk_status_t st, int err) {
    for (uint64_t id = 1; id <= (uint64_t)n; id++) {
      Result r = results.get(id);
      EXPECT_EQ(r.status, st) << "message " << id;
      EXPECT_EQ(r.error, err) << "message " << id << ": " << smtpbulk_strerror(r.error);
    }
  }
};

std::vector<std::string> peer_args(std::vector<std::string> extra) {
  std::vector<std::string> a = {"--tls",  "starttls", "--cert",     test_certs().cert,
                                "--key",  test_certs().key, "--user", "bob",
                                "--password", "not-a-token"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// The server's token AUTH lines for mech: per connection (conn=), the outcome of each
// AUTH on it in order ("ok" / "bad"), and the whole lines.
struct AuthLog {
  std::map<int, std::vector<std::string>> by_conn;
  std::vector<std::string> lines;
  int mails = 0;
};

AuthLog auth_log(const std::vector<std::string>& ev, const std::string& mech) {
  AuthLog l;
  const std::regex re("^AUTH " + mech + " (ok|bad) .*conn=([0-9]+) n=([0-9]+)");
  for (auto& e : ev) {
    if (e.rfind("MAIL tls=", 0) == 0) l.mails++;  // not MAILARG
    std::smatch m;
    if (!std::regex_search(e, m, re)) continue;
    l.lines.push_back(e);
    auto& v = l.by_conn[std::stoi(m[2])];
    EXPECT_EQ((size_t)std::stoi(m[3]), v.size() + 1) << e;  // n counts the AUTHs in order
    v.push_back(m[1]);
  }
  return l;
}

// The server's AUTH lines once the engine is quiet: each token the callback gave has
// reached the server (one line each) and no call came for a while. All results in
// does not mean that yet: a connection that reached its max_per_conn may be
// reconnecting, and a second connection may still be logging in.
AuthLog settled_log(AioSmtpd& peer, const std::string& mech, TokenSource& src) {
  AuthLog l;
  int last = -1;
  auto since = std::chrono::steady_clock::now();
  bool quiet = wait_until([&] {
    int calls = src.calls.load();
    size_t lines = 0;
    const std::string prefix = "AUTH " + mech + " ";
    for (auto& e : peer.events()) lines += e.rfind(prefix, 0) == 0;
    auto now = std::chrono::steady_clock::now();
    if (calls != last || lines != (size_t)calls) {
      last = calls;
      since = now;
      return false;
    }
    return now - since >= std::chrono::milliseconds(300);
  });
  EXPECT_TRUE(quiet) << src.calls.load() << " tokens given; the server's lines differ";
  return auth_log(peer.events(), mech);
}

std::string name_of(const ::testing::TestParamInfo<const char*>& i) { return i.param; }

}  // namespace

class OAuthMech : public ::testing::TestWithParam<const char*> {};

// Reconnects forced by max_per_conn: every new connection asks once, and only once.
TEST_P(OAuthMech, CallbackIsAskedOncePerConnection) {
  REQUIRE_CERTS();
  const std::string mech = GetParam();
  AioSmtpd peer(peer_args({"--token", "tok-A"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  TokenSource src;
  OAuthEngine e(peer.port(), 3, mech.c_str(), &src);
  e.opts.max_per_conn = 5;  // 40 messages: 8 connections at least
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(40));
  e.expect_all(40, SMTPBULK_DELIVERED, 0);
  AuthLog l = settled_log(peer, mech, src);
  EXPECT_EQ(l.mails, 40);
  EXPECT_GE(l.by_conn.size(), 8u);
  for (auto& kv : l.by_conn)
    EXPECT_EQ(kv.second, std::vector<std::string>{"ok"}) << "connection " << kv.first;
  EXPECT_EQ(src.calls.load(), (int)l.by_conn.size());  // once per connection
  EXPECT_EQ(src.fresh_calls.load(), 0);
  EXPECT_EQ(src.hosts, std::set<std::string>{"127.0.0.1"});
  EXPECT_EQ(src.users, std::set<std::string>{"bob"});
  if (mech == "OAUTHBEARER")  // RFC 7628's host and port: where the client connected
    for (auto& line : l.lines)
      EXPECT_NE(line.find(" host=127.0.0.1 port=" + std::to_string(peer.port())),
                std::string::npos)
          << line;
}

// The token the callback first gives has expired: the server refuses it (after its
// error report, which the client answers as the mechanism says), the callback is asked
// with fresh = 1, and AUTH goes again on the same connection. Traced at debug 10: no
// token, nor its base64, is in the log.
TEST_P(OAuthMech, RefusedTokenIsReplacedByAFreshOneOnTheSameConnection) {
  REQUIRE_CERTS();
  const std::string mech = GetParam();
  AioSmtpd peer(peer_args({"--token", "tok-fresh-91c3"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  TokenSource src;
  src.stale = "tok-stale-5e2a";
  src.fresh = "tok-fresh-91c3";
  LogCapture lc;
  OAuthEngine e(peer.port(), 2, mech.c_str(), &src, nullptr, &lc);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(12));
  e.expect_all(12, SMTPBULK_DELIVERED, 0);
  AuthLog l = settled_log(peer, mech, src);
  EXPECT_EQ(l.mails, 12);
  ASSERT_GE(l.by_conn.size(), 1u);
  for (auto& kv : l.by_conn)
    EXPECT_EQ(kv.second, (std::vector<std::string>{"bad", "ok"})) << "connection " << kv.first;
  // Once stale, once fresh, per connection.
  EXPECT_EQ(src.fresh_calls.load(), (int)l.by_conn.size());
  EXPECT_EQ(src.calls.load(), 2 * (int)l.by_conn.size());
  // The error report was answered: XOAUTH2 with an empty line, OAUTHBEARER with ^A.
  const std::string answer = mech == "OAUTHBEARER" ? "reply=kvsep" : "reply=empty";
  for (auto& line : l.lines)
    if (line.find(" bad ") != std::string::npos) EXPECT_NE(line.find(answer), std::string::npos) << line;

  std::string text = lc.get();
  EXPECT_NE(text.find(">> AUTH " + mech + " <redacted>"), std::string::npos);
  EXPECT_NE(text.find("asking for a fresh token"), std::string::npos);
  for (const std::string& tok : {src.stale, src.fresh}) {
    EXPECT_EQ(text.find(tok), std::string::npos) << tok << " in the log";
    // Nor the initial response that carried it (what went on the wire, in base64).
    sasl_client c;
    char line[SASL_LINE_MAX];
    int n = sasl_start_token(&c, mech == "XOAUTH2" ? SASL_XOAUTH2 : SASL_OAUTHBEARER, "bob",
                             tok.data(), tok.size(), "127.0.0.1", peer.port(), line,
                             sizeof(line));
    ASSERT_GT(n, 0);
    std::string wire(line, (size_t)n - 2);
    wire = wire.substr(wire.rfind(' ') + 1);
    EXPECT_EQ(text.find(wire.substr(0, 24)), std::string::npos) << wire;  // its start
    EXPECT_EQ(text.find(wire.substr(wire.size() - 24)), std::string::npos) << wire;  // the token's end
    sasl_clear(&c);
  }
  // Every AUTH line and response the client wrote is redacted.
  std::regex sent(">> AUTH [A-Z0-9-]+ (.*)");
  for (std::sregex_iterator it(text.begin(), text.end(), sent), end; it != end; ++it)
    EXPECT_EQ((*it)[1].str(), "<redacted>");
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, OAuthMech, ::testing::Values("XOAUTH2", "OAUTHBEARER"),
                         name_of);

// The fresh token is refused too: SMTPBULK_EAUTH, as a wrong password is, and no
// connection logs in more than twice, nor any other once the host has stopped.
TEST(OAuth, ARefusedFreshTokenIsEAuthForTheHost) {
  REQUIRE_CERTS();
  AioSmtpd peer(peer_args({"--token", "tok-good"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  TokenSource src;
  src.stale = src.fresh = "tok-revoked";
  OAuthEngine e(peer.port(), 2, "OAUTHBEARER", &src);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(6));
  e.expect_all(6, SMTPBULK_FAILED, SMTPBULK_EAUTH);
  AuthLog l = auth_log(peer.events(), "OAUTHBEARER");
  EXPECT_EQ(l.mails, 0);
  ASSERT_GE(l.by_conn.size(), 1u);
  EXPECT_LE(l.by_conn.size(), 2u);  // no reconnect after the host stopped
  for (auto& kv : l.by_conn) {
    EXPECT_LE(kv.second.size(), 2u) << "connection " << kv.first;
    for (auto& r : kv.second) EXPECT_EQ(r, "bad");
  }
  EXPECT_LE(src.fresh_calls.load(), (int)l.by_conn.size());
}

// Without a callback there is nothing fresh to ask for: the static token's refusal is
// final at once (one AUTH per connection).
TEST(OAuth, AStaticTokenIsNotRetried) {
  REQUIRE_CERTS();
  AioSmtpd peer(peer_args({"--token", "tok-A", "--refuse-first-token"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  OAuthEngine e(peer.port(), 2, "XOAUTH2", nullptr, "tok-A");
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(4));
  e.expect_all(4, SMTPBULK_FAILED, SMTPBULK_EAUTH);
  AuthLog l = auth_log(peer.events(), "XOAUTH2");
  for (auto& kv : l.by_conn) EXPECT_EQ(kv.second, std::vector<std::string>{"bad"});
}

// A server that refuses the first token of every connection, whatever it is (it
// expired while the client held it): the same token again is asked for with fresh = 1
// and is taken.
TEST(OAuth, ServerRefusingEachConnectionsFirstTokenStillGetsEveryMessage) {
  REQUIRE_CERTS();
  AioSmtpd peer(peer_args({"--token", "tok-A", "--refuse-first-token"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  TokenSource src;
  OAuthEngine e(peer.port(), 2, "OAUTHBEARER", &src);
  e.opts.max_per_conn = 4;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(16));
  e.expect_all(16, SMTPBULK_DELIVERED, 0);
  AuthLog l = settled_log(peer, "OAUTHBEARER", src);
  EXPECT_GE(l.by_conn.size(), 4u);
  for (auto& kv : l.by_conn)
    EXPECT_EQ(kv.second, (std::vector<std::string>{"bad", "ok"})) << "connection " << kv.first;
  EXPECT_EQ(src.fresh_calls.load(), (int)l.by_conn.size());
}

// A callback that has no token: each connection fails with SMTPBULK_ETOKEN before it
// sends AUTH, is retried (retry_fail) and gives up; every message ends once, with that
// error. Returning 0 or more than cap is the same.
TEST(OAuth, CallbackWithoutATokenFailsEveryMessageOnceWithEToken) {
  REQUIRE_CERTS();
  AioSmtpd peer(peer_args({"--token", "tok-A"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  for (int result : {-5, 0, SASL_TOKEN_MAX + 1}) {
    TokenSource src;
    src.fail = true;
    src.result = result;
    OAuthEngine e(peer.port(), 2, "XOAUTH2", &src);
    ASSERT_EQ(e.start(), 0);
    ASSERT_TRUE(e.send_all(5)) << "callback result " << result;
    e.expect_all(5, SMTPBULK_FAILED, SMTPBULK_ETOKEN);
    for (uint64_t id = 1; id <= 5; id++)
      EXPECT_EQ(e.results.get(id).category, SMTPBULK_CAT_LOCAL);
    EXPECT_GE(src.calls.load(), 1);
    EXPECT_LE(src.calls.load(), 2 * 2);  // connections x retry_fail: no login storm
    EXPECT_EQ(src.fresh_calls.load(), 0);
  }
  auto ev = peer.events();
  EXPECT_EQ(auth_log(ev, "XOAUTH2").lines.size(), 0u);  // nothing was sent to refuse
  EXPECT_EQ(auth_log(ev, "XOAUTH2").mails, 0);
}

// The token is refused and the callback has no fresh one: SMTPBULK_ETOKEN again, not
// EAUTH (the server never saw a fresh token to refuse), within retry_fail.
TEST(OAuth, NoFreshTokenAfterARefusalIsEToken) {
  REQUIRE_CERTS();
  AioSmtpd peer(peer_args({"--token", "tok-A"}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  TokenSource src;
  src.stale = "tok-expired";
  src.fail_fresh = true;
  src.result = -1;
  OAuthEngine e(peer.port(), 2, "OAUTHBEARER", &src);
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(4));
  e.expect_all(4, SMTPBULK_FAILED, SMTPBULK_ETOKEN);
  AuthLog l = auth_log(peer.events(), "OAUTHBEARER");
  EXPECT_EQ(l.mails, 0);
  for (auto& kv : l.by_conn) EXPECT_EQ(kv.second, std::vector<std::string>{"bad"});
  EXPECT_EQ(src.fresh_calls.load(), (int)l.by_conn.size());
  EXPECT_LE(src.fresh_calls.load(), 2 * 2);  // connections x retry_fail
}

// A token of a JWT's size, as the static secret (no callback): the AUTH line is longer
// than aiosmtpd's usual 512 bytes and within RFC 4954's 12,288.
TEST(OAuth, ALongStaticTokenDelivers) {
  REQUIRE_CERTS();
  std::string jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + std::string(2600, 'Q') + ".sig_-";
  AioSmtpd peer(peer_args({"--token", jwt}));
  ASSERT_TRUE(peer.ok()) << peer.error();
  OAuthEngine e(peer.port(), 1, "OAUTHBEARER", nullptr, jwt.c_str());
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(e.send_all(3));
  e.expect_all(3, SMTPBULK_DELIVERED, 0);
  AuthLog l = auth_log(peer.events(), "OAUTHBEARER");
  ASSERT_EQ(l.by_conn.size(), 1u);
  EXPECT_EQ(l.by_conn.begin()->second, std::vector<std::string>{"ok"});
}

// What smtpbulk_create() refuses, and an older header's security struct.
TEST(OAuth, CreateChecksTheTokenSettings) {
  TokenSource src;
  smtpbulk_host_t host{};
  host.host = "127.0.0.1";
  host.port = 1;
  smtpbulk_security_t sec{};
  sec.struct_size = sizeof(sec);
  sec.secure = SMTPBULK_SECURE_SMTPS;
  sec.user = "bob";
  sec.token_cb = TokenSource::cb;
  sec.token_arg = &src;
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  o.hosts = &host;
  o.n_hosts = 1;
  o.security = &sec;
  auto create = [&] {
    smtpbulk_t* sb = nullptr;
    int rc = smtpbulk_create(&o, &sb);
    smtpbulk_destroy(sb);
    return rc;
  };
  for (const char* m : {"XOAUTH2", "oauthbearer"}) {
    sec.auth = m;
    EXPECT_EQ(create(), 0) << m;  // the callback is the token: no secret needed
  }
  sec.auth = "PLAIN";  // a callback that would never be asked
  sec.secret = "pw";
  EXPECT_EQ(create(), -EINVAL);
  sec.auth = "AUTO";  // AUTO never picks a token mechanism
  EXPECT_EQ(create(), -EINVAL);
  sec.auth = "XOAUTH2";
  sec.user = "bob\1auth=Bearer x";  // would forge a kvpair
  EXPECT_EQ(create(), SMTPBULK_EBADPARAM);
  sec.user = "bob";
  sec.token_cb = nullptr;
  sec.secret = nullptr;  // neither a callback nor a static token
  EXPECT_EQ(create(), -EINVAL);
  sec.secret = "tok with space";
  EXPECT_EQ(create(), SMTPBULK_EBADPARAM);
  std::string big(SASL_TOKEN_MAX, 't');
  sec.secret = big.c_str();
  EXPECT_EQ(create(), 0);
  big += 't';
  sec.secret = big.c_str();
  EXPECT_EQ(create(), -EINVAL);
  // A caller built before token_cb: whatever lies past its struct_size is not read.
  sec.auth = "PLAIN";
  sec.secret = "pw";
  sec.token_cb = TokenSource::cb;
  sec.struct_size = offsetof(smtpbulk_security_t, token_cb);
  EXPECT_EQ(create(), 0);
  sec.struct_size = offsetof(smtpbulk_security_t, token_cb) - 1;
  EXPECT_EQ(create(), -EINVAL);
  EXPECT_EQ(src.calls.load(), 0);  // create asks no token
}
