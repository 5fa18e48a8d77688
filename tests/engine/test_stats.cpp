// smtpbulk_get_stats(): per-host and per-connection counts that add up, latency
// percentiles, and a snapshot that can be taken while sending.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

TEST(Stats, PerHostAndConnectionCountsAddUp) {
  PeerScript good_s;
  ScriptedPeer good(good_s);
  PeerScript bad_s;  // refuses every other message's data, temporarily
  std::atomic<int> n{0};
  bad_s.on_data = [&](int, const std::string&) -> std::string {
    return n++ % 2 ? "451 4.3.0 later\r\n" : "";
  };
  ScriptedPeer bad(bad_s);
  TestEngine e(good.port(), 2);
  e.add_host(bad.port(), 3);
  e.opts.max_attempts = 1;  // a 4xx ends the message: easy counts
  ASSERT_EQ(e.start(), 0);
  for (int i = 0; i < 40; i++) e.send({"r@x.test"}, std::string(100, 'x') + "\r\n", "a@b.test", 0);
  for (int i = 0; i < 40; i++) e.send({"r@x.test"}, std::string(100, 'x') + "\r\n", "a@b.test", 1);
  // A snapshot while sending is allowed and consistent enough to read.
  smtpbulk_stats_t* mid = nullptr;
  ASSERT_EQ(smtpbulk_get_stats(e.sb, &mid), 0);
  smtpbulk_stats_free(mid);
  ASSERT_EQ(smtpbulk_drain(e.sb, 10000), 0);
  // Each host's messages may all have gone through one connection before another was
  // even up: the check below that every connection is ready waits for them first.
  ASSERT_TRUE(wait_until([&] {
    smtpbulk_counters_t c;
    smtpbulk_get_counters(e.sb, &c);
    return c.connects >= 5;
  }));

  smtpbulk_stats_t* st = nullptr;
  ASSERT_EQ(smtpbulk_get_stats(e.sb, &st), 0);
  ASSERT_EQ(st->n_hosts, 2u);
  EXPECT_EQ(st->totals.completed, 80u);
  const smtpbulk_host_stats_t& g = st->hosts[0];
  const smtpbulk_host_stats_t& b = st->hosts[1];
  EXPECT_STREQ(g.host, "127.0.0.1");
  EXPECT_EQ(g.port, good.port());
  EXPECT_EQ(g.n_connections, 2u);
  EXPECT_EQ(b.n_connections, 3u);
  EXPECT_EQ(g.total, 40u);
  EXPECT_EQ(g.pass, 40u);
  EXPECT_EQ(g.fail, 0u);
  EXPECT_EQ(g.bytes, 40u * 102u);
  EXPECT_EQ(b.total, 40u);
  EXPECT_EQ(b.pass, 20u);
  EXPECT_EQ(b.fail, 20u);
  EXPECT_EQ(g.latency.count, 40u);
  EXPECT_GT(g.latency.max, 0.0);
  EXPECT_LE(g.latency.p50, g.latency.p99);
  EXPECT_LE(g.latency.p99, g.latency.max);
  for (const smtpbulk_host_stats_t* h : {&g, &b}) {
    uint64_t total = 0, pass = 0;
    for (size_t k = 0; k < h->n_connections; k++) {
      EXPECT_EQ(h->connections[k].connection, (int)k);
      EXPECT_EQ(h->connections[k].ready, 1);
      total += h->connections[k].total;
      pass += h->connections[k].pass;
    }
    EXPECT_EQ(total, h->total);
    EXPECT_EQ(pass, h->pass);
  }
  smtpbulk_stats_free(st);
}

TEST(Stats, HangsAndDeferralsCountedOnTheirConnection) {
  std::atomic<int> n{0};
  PeerScript s;
  s.on_data = [&](int conn, const std::string&) -> std::string {
    if (conn == 0) return "HANG";
    return n++ == 0 ? "451 4.3.0 later\r\n" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.timeout_dot_ms = 200;
  e.opts.watchdog_tick_ms = 20;
  e.opts.defer_ms = 10;
  ASSERT_EQ(e.start(), 0);
  Result r = e.wait_one(e.send({"r@x.test"}, "hi\r\n"));
  EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
  smtpbulk_stats_t* st = nullptr;
  ASSERT_EQ(smtpbulk_get_stats(e.sb, &st), 0);
  EXPECT_EQ(st->hosts[0].connections[0].hang, 1u);
  EXPECT_EQ(st->hosts[0].connections[0].deferred, 1u);
  EXPECT_EQ(st->hosts[0].connections[0].pass, 1u);
  EXPECT_EQ(st->totals.hangs, 1u);
  smtpbulk_stats_free(st);
  EXPECT_EQ(smtpbulk_get_stats(nullptr, &st), -EINVAL);
}
