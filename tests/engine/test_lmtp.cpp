// LMTP (RFC 2033): LHLO, and after the data one reply per accepted recipient, each that
// recipient's own verdict. Against three real servers: Postfix smtp-sink -L, aiosmtpd's
// LMTP class and our own sink --lmtp, over TCP and unix-domain sockets, with pipelining
// and with CHUNKING (our sink answers BDAT LAST per recipient too).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>

#include "engine_helpers.h"
#include "own_sink.h"
#include "scripted_peer.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {
const std::string kBody = "Subject: lmtp\r\n\r\nhello\r\n";

// A directory for a test's unix socket, removed with it.
struct TempDir {
  char path[32] = "/tmp/sbtest-lmtp-XXXXXX";
  TempDir() { EXPECT_NE(mkdtemp(path), nullptr); }
  ~TempDir() { rmdir(path); }
  std::string file(const char* name) const { return std::string(path) + "/" + name; }
};

size_t count_prefix(const std::vector<std::string>& v, const std::string& p) {
  return (size_t)std::count_if(v.begin(), v.end(),
                               [&](const std::string& s) { return s.rfind(p, 0) == 0; });
}

// Three recipients each, every one accepted: each message DELIVERED with a 250 per
// recipient, however the replies were pipelined.
void send_three_each(TestEngine& e, int n) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < n; i++)
    ids.push_back(e.send({"a@example.com", "b@example.com", "c@example.com"}, kBody));
  ASSERT_TRUE(e.results.wait(n, 30000)) << e.results.total() << " of " << n;
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)n);
  EXPECT_EQ(e.results.duplicates(), 0u);
  Result r = e.results.get(ids.back());
  ASSERT_EQ(r.rcpt_codes.size(), 3u);
  for (int c : r.rcpt_codes) EXPECT_EQ(c, 250);
}
}  // namespace

TEST(Lmtp, PostfixSmtpSinkOverTcpInEveryPipelineMode) {
  SmtpSink sink({"-L"});
  ASSERT_TRUE(sink.ok()) << sink.error();
  for (unsigned mode : {0u, 1u, 2u}) {
    SCOPED_TRACE("pipeline " + std::to_string(mode));
    TestEngine e(sink.port(), 3);
    e.hosts[0].lmtp = 1;
    e.opts.pipeline = mode;
    ASSERT_EQ(e.start(), 0);
    send_three_each(e, 300);
  }
}

TEST(Lmtp, PostfixSmtpSinkOverAUnixSocket) {
  TempDir dir;
  std::string path = dir.file("lmtp.sock");
  SmtpSink sink(path, {"-L"});
  ASSERT_TRUE(sink.ok()) << sink.error();
  std::string host = "unix:" + path;
  {
    TestEngine e(0, 2);
    e.hosts[0].host = host.c_str();
    e.hosts[0].lmtp = 1;
    ASSERT_EQ(e.start(), 0);
    send_three_each(e, 200);
  }
  unlink(path.c_str());
}

// Per-recipient verdicts after the data: accepted, refused for now, refused for good.
TEST(Lmtp, AiosmtpdRepliesPerRecipientAfterTheData) {
  TempDir dir;
  std::string path = dir.file("lmtp.sock");
  for (bool over_unix : {false, true}) {
    SCOPED_TRACE(over_unix ? "unix socket" : "tcp");
    std::vector<std::string> args = {"--lmtp"};
    if (over_unix) args.insert(args.end(), {"--unix", path});
    AioSmtpd peer(args);
    ASSERT_TRUE(peer.ok()) << peer.error();
    std::string host = "unix:" + path;
    TestEngine e(peer.port(), 2);
    if (over_unix) e.hosts[0].host = host.c_str();
    e.hosts[0].lmtp = 1;
    e.opts.max_attempts = 1;  // a 4xx after the data ends the message here
    ASSERT_EQ(e.start(), 0);
    uint64_t mixed = e.send({"ok@example.com", "lmtp-temp@example.com",
                             "lmtp-perm@example.com", "ok2@example.com"},
                            kBody);
    uint64_t all_ok = e.send({"ok@example.com", "ok2@example.com"}, kBody);
    uint64_t perm = e.send({"lmtp-perm@example.com"}, kBody);
    uint64_t temp = e.send({"lmtp-temp1@example.com", "lmtp-temp2@example.com"}, kBody);
    ASSERT_TRUE(e.results.wait(4, 30000));
    Result r = e.results.get(mixed);
    EXPECT_EQ(r.status, SMTPBULK_PARTIAL);
    EXPECT_EQ(r.category, SMTPBULK_CAT_DELIVERED);
    ASSERT_EQ(r.rcpt_codes.size(), 4u);
    EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 452, 550, 250}));
    EXPECT_NE(r.rcpt_texts[2].find("no such user"), std::string::npos) << r.rcpt_texts[2];
    EXPECT_EQ(r.code, 250);
    EXPECT_EQ(e.results.get(all_ok).status, SMTPBULK_DELIVERED);
    r = e.results.get(perm);
    EXPECT_EQ(r.status, SMTPBULK_REJECTED);
    EXPECT_EQ(r.code, 550);
    EXPECT_EQ(r.category, SMTPBULK_CAT_HARD_BOUNCE);
    r = e.results.get(temp);
    EXPECT_EQ(r.status, SMTPBULK_FAILED);
    EXPECT_EQ(r.code, 452);
    auto ev = peer.events();
    EXPECT_EQ(count_prefix(ev, "LMTP "), 9u);  // one per recipient: 4 + 2 + 1 + 2
    unlink(path.c_str());
  }
}

// Our sink offers CHUNKING: the replies follow BDAT LAST, with several transactions in
// flight on a connection; with pipeline 1 they follow the dot.
TEST(Lmtp, OwnSinkPerRecipientRepliesAfterBdatAndAfterTheDot) {
  sink_options o = OwnSinkServer::defaults();
  o.cfg.lmtp = 1;
  OwnSinkServer sink(o);
  ASSERT_NE(sink.srv, nullptr);
  for (unsigned mode : {2u, 1u}) {
    SCOPED_TRACE("pipeline " + std::to_string(mode));
    TestEngine e(sink.port(), 2);
    e.hosts[0].lmtp = 1;
    e.opts.pipeline = mode;
    e.opts.max_attempts = 1;
    ASSERT_EQ(e.start(), 0);
    const int n = 400;
    std::vector<uint64_t> partial, whole;
    for (int i = 0; i < n; i++) {
      if (i % 2)
        partial.push_back(
            e.send({"a@example.com", "lmtp-perm@example.com", "b@example.com"}, kBody));
      else
        whole.push_back(e.send({"a@example.com", "b@example.com"}, kBody));
    }
    ASSERT_TRUE(e.results.wait(n, 30000));
    EXPECT_EQ(e.results.by_status()[SMTPBULK_PARTIAL], (size_t)n / 2);
    EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)n / 2);
    Result r = e.results.get(partial.back());
    EXPECT_EQ(r.rcpt_codes, (std::vector<int>{250, 550, 250}));
  }
  EXPECT_EQ(sink.totals().lmtp_rcpt_failed, 400u);  // 200 per mode
}

// An SMTP server does not know LHLO: a clear per-connection error, never EHLO/HELO
// behind the caller's back, and every message ends with one result.
TEST(Lmtp, AnSmtpServerRefusingLhloFailsCleanly) {
  OwnSinkServer sink;  // SMTP, not LMTP
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 1);
  e.hosts[0].lmtp = 1;
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 3; i++) e.send({"a@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(3, 20000));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_FAILED], 3u);
  EXPECT_EQ(e.results.by_error()[SMTPBULK_ENOLMTP], 3u);
  EXPECT_EQ(e.results.by_category()[SMTPBULK_CAT_PROTOCOL], 3u);
  EXPECT_EQ(sink.totals().messages, 0u);
}
