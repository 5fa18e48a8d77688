// Connection limits (issue 11): most messages per connection, most age, and closing
// connections idle too long; each counted on the server's side. A connection that
// reaches a limit says QUIT and connects again only when there is something to send.
#include <gtest/gtest.h>

#include <chrono>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

// Every command, by the connection it came on.
struct ByConn {
  std::mutex mu;
  std::map<int, std::vector<std::string>> cmds;
  void add(int conn, const std::string& c) {
    std::lock_guard<std::mutex> g(mu);
    cmds[conn].push_back(c.substr(0, 4));
  }
  size_t count(int conn, const char* verb) {
    std::lock_guard<std::mutex> g(mu);
    auto& v = cmds[conn];
    return (size_t)std::count(v.begin(), v.end(), verb);
  }
  std::map<int, std::vector<std::string>> all() {
    std::lock_guard<std::mutex> g(mu);
    return cmds;
  }
};

PeerScript recording(ByConn& by) {
  PeerScript s;
  s.on_cmd = [&by](int conn, const std::string& c) -> std::string {
    by.add(conn, c);
    return "";
  };
  return s;
}

}  // namespace

// 10 messages, at most 3 per connection: the server sees 3, 3, 3 and 1, every full
// connection ending with QUIT, and nothing refused or sent twice.
TEST(ConnLimits, MaxPerConnectionThenQuitAndReconnect) {
  ByConn by;
  ScriptedPeer peer(recording(by));
  TestEngine e(peer.port(), 1);
  e.opts.max_per_conn = 3;
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 10; i++) e.send({"r@x.test"}, "hi\r\n");
  ASSERT_TRUE(e.results.wait(10, 30000)) << e.results.total() << " of 10";
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], 10u);
  EXPECT_EQ(peer.bodies().size(), 10u);
  // The last connection carries the 10th; the full ones said QUIT.
  ASSERT_TRUE(wait_until([&] { return by.count(2, "QUIT") == 1; }));
  EXPECT_EQ(peer.connections(), 4);
  for (int conn = 0; conn < 3; conn++) {
    EXPECT_EQ(by.count(conn, "MAIL"), 3u) << "connection " << conn;
    EXPECT_EQ(by.count(conn, "QUIT"), 1u) << "connection " << conn;
  }
  EXPECT_EQ(by.count(3, "MAIL"), 1u);
}

// Every connection the server saw so far has said QUIT.
static bool all_quit(ScriptedPeer& peer, ByConn& by) {
  int n = peer.connections();
  for (int conn = 0; conn < n; conn++)
    if (by.count(conn, "QUIT") != 1) return false;
  return n > 0;
}

// A connection idle past idle_close_ms says QUIT and is not replaced until work
// comes; then a new one carries it. (On a slow machine the first connection may
// reach its idle limit before the first message: the message then opens the next.)
static void closes_idle_then_reopens(TestEngine& e, ScriptedPeer& peer, ByConn& by) {
  ASSERT_EQ(e.start(), 0);
  EXPECT_EQ(e.wait_one(e.send({"r@x.test"}, "hi\r\n")).status, SMTPBULK_DELIVERED);
  ASSERT_TRUE(wait_until([&] { return all_quit(peer, by); })) << "never closed";
  const int n = peer.connections();
  // Nothing waits: no new connection (one would come within milliseconds).
  EXPECT_FALSE(wait_until([&] { return peer.connections() > n; }, 300));
  EXPECT_EQ(e.wait_one(e.send({"r@x.test"}, "hi\r\n")).status, SMTPBULK_DELIVERED);
  EXPECT_EQ(peer.connections(), n + 1);
  EXPECT_EQ(by.count(n, "MAIL"), 1u);
  EXPECT_EQ(peer.bodies().size(), 2u);
  for (int conn = 0; conn < n; conn++)
    EXPECT_LE(by.count(conn, "MAIL"), 1u) << "connection " << conn;
}

TEST(ConnLimits, IdleCloseThenReopenedOnDemand) {
  ByConn by;
  ScriptedPeer peer(recording(by));
  TestEngine e(peer.port(), 1);
  e.opts.idle_close_ms = 200;
  closes_idle_then_reopens(e, peer, by);
}

// A connection that is never idle for long still ends at its age: with messages
// coming every few milliseconds and max_conn_age_ms 300, the server sees several
// connections, each ended by QUIT, and every message delivered once.
TEST(ConnLimits, MaxAgeEndsABusyConnection) {
  ByConn by;
  ScriptedPeer peer(recording(by));
  TestEngine e(peer.port(), 1);
  e.opts.max_conn_age_ms = 300;
  e.opts.pipeline = 0;
  ASSERT_EQ(e.start(), 0);
  int sent = 0;
  // Until the server has seen a third connection, bounded in time (20 s), not in
  // messages: a fast run sends thousands inside the 600 ms that takes.
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (; std::chrono::steady_clock::now() < end && peer.connections() < 3; sent++) {
    EXPECT_EQ(e.wait_one(e.send({"r@x.test"}, "hi\r\n")).status, SMTPBULK_DELIVERED);
  }
  ASSERT_GE(peer.connections(), 3) << "the age never ended a connection";
  EXPECT_EQ(peer.bodies().size(), (size_t)sent);
  EXPECT_EQ(by.count(0, "QUIT"), 1u);
  EXPECT_EQ(by.count(1, "QUIT"), 1u);
}

// The age also ends an idle connection (without idle_close_ms): QUIT, and no
// replacement until work comes.
TEST(ConnLimits, MaxAgeEndsAnIdleConnection) {
  ByConn by;
  ScriptedPeer peer(recording(by));
  TestEngine e(peer.port(), 1);
  e.opts.max_conn_age_ms = 200;
  closes_idle_then_reopens(e, peer, by);
}
