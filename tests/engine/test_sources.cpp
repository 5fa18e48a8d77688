// Where connections come from: source addresses bound before connect, each with its own
// EHLO name, as the server sees them; a source that is no address of this machine fails
// cleanly; a unix-domain socket as the host.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>

#include "engine_helpers.h"
#include "own_sink.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {
const std::string kBody = "Subject: s\r\n\r\nhello\r\n";
const char* const kSources[] = {"127.0.0.2", "127.0.0.3", nullptr};
const char* const kHellos[] = {"two.client.test", "three.client.test", nullptr};

size_t count(const std::vector<std::string>& v, const std::string& x) {
  return (size_t)std::count(v.begin(), v.end(), x);
}
}  // namespace

TEST(Sources, ConnectionsComeFromEachSourceWithItsName) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port(), 4);
  e.hosts[0].sources = kSources;
  e.hosts[0].source_hellos = kHellos;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 20; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(20, 20000));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 20u);
  // Every connection says EHLO, but the four may not all have done so when the
  // others finished the twenty: wait for it.
  auto ehlos = [&] {
    size_t n = 0;
    for (auto& c : peer.commands()) n += c.rfind("EHLO ", 0) == 0;
    return n;
  };
  ASSERT_TRUE(wait_until([&] { return ehlos() >= 4; }));
  auto peers = peer.peers();
  ASSERT_EQ(peers.size(), 4u);
  EXPECT_EQ(count(peers, "127.0.0.2"), 2u);  // connections 0 and 2
  EXPECT_EQ(count(peers, "127.0.0.3"), 2u);  // 1 and 3
  auto cmds = peer.commands();
  EXPECT_EQ(count(cmds, "EHLO two.client.test"), 2u);
  EXPECT_EQ(count(cmds, "EHLO three.client.test"), 2u);
}

TEST(Sources, ASourceThatIsNotLocalFailsCleanly) {
  ScriptedPeer peer(PeerScript{});
  static const char* const kForeign[] = {"192.0.2.1", nullptr};  // TEST-NET-1
  TestEngine e(peer.port(), 2);
  e.hosts[0].sources = kForeign;
  e.opts.retry_fail = 2;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 3; i++) e.send({"r@example.com"}, kBody);
  ASSERT_TRUE(e.results.wait(3, 20000));
  EXPECT_EQ(e.results.by_status()[SMTPBULK_FAILED], 3u);
  EXPECT_EQ(e.results.by_error()[SMTPBULK_ESOURCE], 3u);
  EXPECT_EQ(e.results.by_category()[SMTPBULK_CAT_LOCAL], 3u);
  EXPECT_EQ(peer.connections(), 0);  // nothing went out from the default route
}

TEST(Sources, BadSourcesAreRefusedAtCreate) {
  static const char* const kJunk[] = {"not-an-address", nullptr};
  static const char* const kV6[] = {"::1", nullptr};  // the host is IPv4
  static const char* const kBadName[] = {"bad name", nullptr};
  for (auto* list : {kJunk, kV6}) {
    TestEngine e(2525, 1);
    e.hosts[0].sources = list;
    EXPECT_EQ(e.start(), SMTPBULK_EBADPARAM) << list[0];
  }
  TestEngine e(2525, 1);
  e.hosts[0].sources = kSources;
  e.hosts[0].source_hellos = kBadName;
  EXPECT_EQ(e.start(), SMTPBULK_EBADPARAM);
}

TEST(UnixSocket, TheHostIsAUnixDomainSocket) {
  char dir[] = "/tmp/sbtest-unix-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/smtp.sock";
  sink_options o = OwnSinkServer::defaults();
  o.unix_path = path.c_str();
  o.threads = 1;
  auto sink = std::make_unique<OwnSinkServer>(o);
  ASSERT_NE(sink->srv, nullptr);
  std::string host = "unix:" + path;
  {
    TestEngine e(0, 4);
    e.hosts[0].host = host.c_str();
    ASSERT_EQ(e.start(), 0);
    for (int i = 0; i < 200; i++) e.send({"r@example.com"}, kBody);
    ASSERT_TRUE(e.results.wait(200, 20000));
    EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 200u);
  }
  EXPECT_EQ(sink->totals().messages, 200u);
  sink.reset();  // stops it, and it removes its socket file
  EXPECT_EQ(rmdir(dir), 0);
}

TEST(UnixSocket, APathTooLongIsRefusedAtCreate) {
  std::string host = "unix:/" + std::string(200, 'x');
  TestEngine e(0, 1);
  e.hosts[0].host = host.c_str();
  EXPECT_EQ(e.start(), SMTPBULK_EBADPARAM);
}
