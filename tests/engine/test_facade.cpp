// The Net::SMTP-style facade: call order, validation, quit's count, and that it sends
// through the same engine.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

static smtpbulk_t* facade_for(const ScriptedPeer& peer, smtpbulk_options_t* o = nullptr) {
  smtpbulk_options_t local;
  if (!o) {
    smtpbulk_options_init(&local);
    apply_test_backend(&local);
    local.connections = 2;
    local.discard_results = 1;
    o = &local;
  }
  return smtpbulk_new(peer.hostport().c_str(), o);
}

TEST(Facade, SendsAndQuitCountsUndelivered) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.find("reject") != std::string::npos ? "550 5.1.1 no\r\n" : "";
  };
  ScriptedPeer peer(s);
  smtpbulk_t* smtp = facade_for(peer);
  ASSERT_NE(smtp, nullptr) << strerror(errno);
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(smtpbulk_mail(smtp, "<sender@x.test>"), 0);
    ASSERT_EQ(smtpbulk_to(smtp, i % 5 == 0 ? "reject@x.test" : "ok@x.test"), 0);
    ASSERT_EQ(smtpbulk_data(smtp), 0);
    ASSERT_EQ(smtpbulk_datasend(smtp, "Subject: t\n", 11), 0);
    ASSERT_EQ(smtpbulk_datasend(smtp, "\n.body\n", 7), 0);
    ASSERT_EQ(smtpbulk_dataend(smtp), 0);
  }
  // QUIT goes out on every connection that is up (one still connecting is just
  // closed): one may have carried all ten before the other was, so wait for both.
  ASSERT_TRUE(wait_until([&] {
    smtpbulk_counters_t c;
    smtpbulk_get_counters(smtp, &c);
    return c.connects >= 2;
  }));
  EXPECT_EQ(smtpbulk_quit(smtp, "batch-1"), 2);  // messages 0 and 5 rejected
  EXPECT_EQ(smtpbulk_mail(smtp, "a@b.test"), 0);
  EXPECT_EQ(smtpbulk_to(smtp, "a@b.test"), 0);
  EXPECT_EQ(smtpbulk_data(smtp), 0);
  EXPECT_EQ(smtpbulk_dataend(smtp), SMTPBULK_ESTOPPED);  // after quit nothing is sent
  smtpbulk_free(smtp);
  auto bodies = peer.bodies();
  ASSERT_EQ(bodies.size(), 8u);
  EXPECT_EQ(bodies[0], "Subject: t\r\n\r\n..body\r\n");
  // QUIT went out on every connection.
  auto cmds = peer.commands();
  EXPECT_EQ(std::count(cmds.begin(), cmds.end(), "QUIT"), 2);
}

TEST(Facade, CallOrderEnforced) {
  ScriptedPeer peer(PeerScript{});
  smtpbulk_t* smtp = facade_for(peer);
  ASSERT_NE(smtp, nullptr);
  EXPECT_EQ(smtpbulk_to(smtp, "a@b.test"), SMTPBULK_ESEQUENCE);
  EXPECT_EQ(smtpbulk_data(smtp), SMTPBULK_ESEQUENCE);
  EXPECT_EQ(smtpbulk_datasend(smtp, "x", 1), SMTPBULK_ESEQUENCE);
  EXPECT_EQ(smtpbulk_dataend(smtp), SMTPBULK_ESEQUENCE);
  ASSERT_EQ(smtpbulk_mail(smtp, "a@b.test"), 0);
  EXPECT_EQ(smtpbulk_mail(smtp, "a@b.test"), SMTPBULK_ESEQUENCE);
  EXPECT_EQ(smtpbulk_data(smtp), SMTPBULK_ESEQUENCE);  // no recipient yet
  EXPECT_EQ(smtpbulk_to(smtp, "x@y.test\r\nDATA"), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtpbulk_to(smtp, ""), SMTPBULK_EBADADDR);
  EXPECT_EQ(smtpbulk_quit(smtp, nullptr), 0);
  smtpbulk_free(smtp);
  EXPECT_EQ(peer.bodies().size(), 0u);
}

TEST(Facade, BadHostStrings) {
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  for (const char* h : {"", ":25", "host:", "host:0", "host:99999", "host:25x", "[::1",
                        "[::1]x", "bad host"}) {
    errno = 0;
    EXPECT_EQ(smtpbulk_new(h, &o), nullptr) << h;
    EXPECT_NE(errno, 0) << h;
  }
  EXPECT_EQ(smtpbulk_new(nullptr, nullptr), nullptr);  // no host at all
  EXPECT_EQ(smtpbulk_mail(nullptr, "a@b"), -EINVAL);
}

TEST(Facade, ErrnoNamesTheLibrarysOwnReason) {
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  errno = 0;
  EXPECT_EQ(smtpbulk_new("no-such-host.invalid", &o), nullptr);
  EXPECT_EQ(errno, -SMTPBULK_ERESOLVE) << smtpbulk_strerror(-errno);
  errno = 0;
  EXPECT_EQ(smtpbulk_new("bad host", &o), nullptr);  // a space in a host name
  EXPECT_EQ(errno, -SMTPBULK_EBADPARAM) << smtpbulk_strerror(-errno);
}

TEST(Facade, HostListBesideTheFirstHost) {
  // Both hosts must carry mail. Left alone, one host's connection can carry all 40
  // while the other's worker is not running; so each peer holds the reply to its
  // first body until the other peer has one too (kEventMs at most: a host the
  // engine never used still fails the test, after that wait).
  Gate both;
  std::atomic<int> hosts_with_mail{0};
  std::atomic<bool> got[2] = {{false}, {false}};
  auto hold_first = [&](int host) -> std::string {
    if (!got[host].exchange(true)) {
      if (++hosts_with_mail == 2) both.open();
      both.wait();
    }
    return "";
  };
  PeerScript sa, sb;
  sa.on_data = [&](int, const std::string&) { return hold_first(0); };
  sb.on_data = [&](int, const std::string&) { return hold_first(1); };
  ScriptedPeer a(sa), b(sb);
  smtpbulk_host_t more{};
  more.host = "127.0.0.1";
  more.port = b.port();
  more.connections = 1;
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  o.hosts = &more;
  o.n_hosts = 1;
  o.connections = 1;
  o.discard_results = 1;
  smtpbulk_t* smtp = smtpbulk_new(a.hostport().c_str(), &o);
  ASSERT_NE(smtp, nullptr);
  for (int i = 0; i < 40; i++) {
    ASSERT_EQ(smtpbulk_mail(smtp, "s@x.test"), 0);
    ASSERT_EQ(smtpbulk_to(smtp, "r@x.test"), 0);
    ASSERT_EQ(smtpbulk_data(smtp), 0);
    ASSERT_EQ(smtpbulk_dataend(smtp), 0);
  }
  EXPECT_EQ(smtpbulk_quit(smtp, "two-hosts"), 0);
  smtpbulk_free(smtp);
  EXPECT_EQ(a.bodies().size() + b.bodies().size(), 40u);
  EXPECT_GT(a.bodies().size(), 0u);  // both hosts carried mail
  EXPECT_GT(b.bodies().size(), 0u);
  EXPECT_TRUE(both.is_open());
}

// The facade bounds its queue by default: a caller with more messages than the server
// takes waits in smtpbulk_dataend() instead of the engine holding them all.
TEST(Facade, QueueIsBoundedByDefault) {
  Gate gate;
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (c.rfind("EHLO", 0) == 0) gate.wait(60000);  // nothing drains until it opens
    return "";
  };
  ScriptedPeer peer(s);
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  o.connections = 2;
  o.discard_results = 1;
  ASSERT_EQ(o.queue_bound, 0u);
  smtpbulk_t* smtp = facade_for(peer, &o);
  ASSERT_NE(smtp, nullptr) << strerror(errno);
  const size_t kBound = SMTPBULK_FACADE_QUEUE_BOUND, kMore = 50;
  std::atomic<size_t> ended{0};
  std::thread submitter([&] {
    for (size_t i = 0; i < kBound + kMore; i++) {
      if (smtpbulk_mail(smtp, "a@x.test") || smtpbulk_to(smtp, "b@x.test") ||
          smtpbulk_data(smtp) || smtpbulk_datasend(smtp, "hi\n", 3) ||
          smtpbulk_dataend(smtp))
        break;
      ended++;
    }
  });
  smtpbulk_counters_t c{};
  EXPECT_TRUE(wait_until([&] {
    smtpbulk_get_counters(smtp, &c);
    return c.queued >= kBound;
  })) << c.queued;
  EXPECT_LE(ended.load(), kBound + 2);  // the rest wait (two may be on connections)
  gate.open();
  submitter.join();
  EXPECT_EQ(ended.load(), kBound + kMore);
  EXPECT_EQ(smtpbulk_quit(smtp, nullptr), 0);
  smtpbulk_get_counters(smtp, &c);
  EXPECT_LE(c.queued_max, kBound);
  smtpbulk_free(smtp);
}
