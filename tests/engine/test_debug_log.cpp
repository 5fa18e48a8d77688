// Debug logs under DebugPath: one file per host and connection, directories made,
// the protocol trace at level 10; and the seed's levels filter what is written.
#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/smtpbulk-debug-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

}  // namespace

TEST(DebugLog, OneFilePerConnectionUnderTheTemplate) {
  PeerScript s;
  ScriptedPeer peer(s);
  TempDir dir;
  std::string tmpl = dir.path + "/[YYYY]/sub/dbg_[HOST]_[THREAD].log";
  {
    TestEngine e(peer.port(), 2);
    e.opts.debug = 10;
    e.opts.debug_path = tmpl.c_str();
    ASSERT_EQ(e.start(), 0);
    for (int i = 0; i < 10; i++) e.send({"r@x.test"}, "hi\r\n");
    ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
    // One connection may have carried all ten before the other was up: both files
    // need its EHLO, so wait for both to be ready before destroying.
    ASSERT_TRUE(wait_until([&] {
      smtpbulk_counters_t c;
      smtpbulk_get_counters(e.sb, &c);
      return c.connects >= 2;
    }));
  }  // destroy: the writer flushes and closes
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  char year[8];
  strftime(year, sizeof(year), "%Y", &tm);
  std::string host = "127.0.0.1:" + std::to_string(peer.port());
  std::string base = dir.path + "/" + year + "/sub/dbg_" + host + "_";
  std::string c0 = slurp(base + "0.log"), c1 = slurp(base + "1.log");
  ASSERT_FALSE(c0.empty()) << base << "0.log";
  ASSERT_FALSE(c1.empty()) << base << "1.log";
  for (const std::string* c : {&c0, &c1}) {
    EXPECT_NE(c->find("[10] >> EHLO client.test"), std::string::npos) << *c;
    EXPECT_NE(c->find("[10] << 220 peer.test ESMTP scripted"), std::string::npos);
  }
  // Every delivery is logged (level 8) in the file of the connection that made it.
  size_t delivered = 0;
  for (const std::string* c : {&c0, &c1})
    for (size_t p = 0; (p = c->find("delivered", p)) != std::string::npos; p++) delivered++;
  EXPECT_EQ(delivered, 10u);
  // The engine's own lines have a file of their own.
  EXPECT_NE(slurp(dir.path + "/" + year + "/sub/dbg_engine_main.log").find("worker 0"),
            std::string::npos);
}

TEST(DebugLog, LevelFiltersLines) {
  // Level 7 has failures but neither passes (8) nor the trace (10).
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.find("bad") != std::string::npos ? "550 5.1.1 unknown\r\n" : "";
  };
  ScriptedPeer peer(s);
  TempDir dir;
  std::string tmpl = dir.path + "/l_[THREAD].log";
  {
    TestEngine e(peer.port(), 1);
    e.opts.debug = 7;
    e.opts.debug_path = tmpl.c_str();
    ASSERT_EQ(e.start(), 0);
    e.send({"good@x.test"}, "hi\r\n");
    e.send({"bad@x.test"}, "hi\r\n");
    ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  }
  std::string c0 = slurp(dir.path + "/l_0.log");
  EXPECT_NE(c0.find("[7] message 2: refused by the server"), std::string::npos) << c0;
  EXPECT_EQ(c0.find(">> "), std::string::npos);
  EXPECT_EQ(c0.find("delivered"), std::string::npos);
}
