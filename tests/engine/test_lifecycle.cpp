// Lifecycle and API contract: poll, drain, destroy with messages pending, bad input.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <set>
#include <thread>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

TEST(Lifecycle, PollDeliversEveryResultOnce) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port(), 2);
  e.opts.on_result = nullptr;
  ASSERT_EQ(e.start(), 0);
  std::set<uint64_t> ids;
  int tag = 7;
  for (int i = 0; i < 50; i++) {
    const char* rc[] = {"r@x.test"};
    smtpbulk_message_t m = make_msg(rc, 1, "hi\r\n", 4);
    m.user_data = &tag;
    uint64_t id;
    ASSERT_EQ(smtpbulk_submit(e.sb, &m, 0, &id), 0);
    ids.insert(id);
  }
  size_t got = 0;
  for (int spins = 0; got < 50 && spins < 500; spins++) {
    smtpbulk_result_t* r;
    int n = smtpbulk_poll(e.sb, &r, 100);
    ASSERT_GE(n, 0);
    if (n == 0) continue;
    EXPECT_EQ(r->status, SMTPBULK_DELIVERED);
    EXPECT_EQ(r->user_data, &tag);
    EXPECT_EQ(ids.erase(r->id), 1u) << "unknown or duplicate id " << r->id;
    got++;
    smtpbulk_result_free(r);
  }
  EXPECT_EQ(got, 50u);
  smtpbulk_result_t* r;
  EXPECT_EQ(smtpbulk_poll(e.sb, &r, 0), 0);  // nothing more
  EXPECT_EQ(smtpbulk_drain(e.sb, 1000), 0);
}

TEST(Lifecycle, PollRefusedWhenCallbackSet) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  smtpbulk_result_t* r;
  EXPECT_EQ(smtpbulk_poll(e.sb, &r, 0), -EINVAL);
}

TEST(Lifecycle, DestroyCancelsPendingMessagesExactlyOnce) {
  PeerScript s;
  s.greeting = "HANG";  // accepts, never greets: nothing can be sent
  ScriptedPeer peer(s);
  auto* e = new TestEngine(peer.port(), 2);
  ASSERT_EQ(e->start(), 0);
  for (int i = 0; i < 100; i++) e->send({"r@x.test"}, "hi\r\n");
  EXPECT_EQ(smtpbulk_drain(e->sb, 200), -ETIMEDOUT);
  smtpbulk_destroy(e->sb);
  e->sb = nullptr;
  EXPECT_EQ(e->results.total(), 100u);
  EXPECT_EQ(e->results.duplicates(), 0u);
  auto st = e->results.by_status();
  EXPECT_EQ(st[SMTPBULK_CANCELLED], 100u);
  delete e;
}

TEST(Lifecycle, DestroyWithMessagesInFlight) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string { return "HANG"; };
  ScriptedPeer peer(s);
  auto* e = new TestEngine(peer.port(), 2);
  ASSERT_EQ(e->start(), 0);
  for (int i = 0; i < 10; i++) e->send({"r@x.test"}, "hi\r\n");
  // One per connection, both stuck after the dot (a connection whose worker is slow
  // to run may send its body long after the other).
  ASSERT_TRUE(wait_until([&] { return peer.bodies().size() >= 2; }));
  ASSERT_EQ(peer.bodies().size(), 2u);
  smtpbulk_destroy(e->sb);
  e->sb = nullptr;
  EXPECT_EQ(e->results.total(), 10u);
  EXPECT_EQ(e->results.by_status()[SMTPBULK_CANCELLED], 10u);
  delete e;
}

TEST(Lifecycle, SubmitValidation) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port());
  ASSERT_EQ(e.start(), 0);
  const char* good[] = {"r@x.test"};
  const char* bad[] = {"r@x.test\r\nRCPT TO:<evil@x.test>"};
  smtpbulk_message_t m = make_msg(bad, 1);
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), SMTPBULK_EBADADDR);
  m.rcpts = good;
  m.from = "s@x\n";
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), SMTPBULK_EBADADDR);
  m.from = "s@x.test";
  m.host = 5;
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), SMTPBULK_ENOHOST);
  m.host = -1;
  m.n_rcpts = 0;
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), -EINVAL);
  m.n_rcpts = 1;
  m.struct_size = 8;
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), -EINVAL);
  EXPECT_EQ(smtpbulk_submit(nullptr, &m, 0, nullptr), -EINVAL);
  smtpbulk_counters_t c;
  smtpbulk_get_counters(e.sb, &c);
  EXPECT_EQ(c.submitted, 0u);  // refused submissions leave no trace
  EXPECT_TRUE(peer.commands().empty() || peer.commands().size() == 1u);  // EHLO at most
}

TEST(Lifecycle, CreateValidation) {
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  smtpbulk_t* sb = nullptr;
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_ENOHOST);
  smtpbulk_host_t h{};
  h.host = "bad host\r\n";
  o.hosts = &h;
  o.n_hosts = 1;
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_EBADPARAM);
  h.host = "no-such-host.invalid";
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_ERESOLVE);
  h.host = "127.0.0.1";
  o.hello = "bad hello";
  EXPECT_EQ(smtpbulk_create(&o, &sb), SMTPBULK_EBADPARAM);
  o.hello = nullptr;
  o.pipeline = 9;
  EXPECT_EQ(smtpbulk_create(&o, &sb), -EINVAL);
  o.pipeline = 0;
  o.struct_size = 4;
  EXPECT_EQ(smtpbulk_create(&o, &sb), -EINVAL);
  EXPECT_EQ(sb, nullptr);
  o.struct_size = sizeof(o) + 8;  // from a newer header: fields we cannot know
  EXPECT_EQ(smtpbulk_create(&o, &sb), -EINVAL);
  EXPECT_EQ(sb, nullptr);
  // From the 0.1.0 header (it ended at log_arg): accepted, newer fields defaulted.
  o.struct_size = offsetof(smtpbulk_options_t, plain_recv);
  o.plain_recv = 1;
  ASSERT_EQ(smtpbulk_create(&o, &sb), 0);
  smtpbulk_destroy(sb);
  sb = nullptr;
  EXPECT_STRNE(smtpbulk_strerror(SMTPBULK_ERESOLVE), "unknown error");
  EXPECT_STREQ(smtpbulk_strerror(-ENOMEM), strerror(ENOMEM));
}

// A caller built before TLS passes options without the TLS fields and a hosts array of
// the shorter, older elements: the engine must read them with the old stride.
TEST(Lifecycle, HostsFromAnOlderHeaderAreReadWithTheirOwnSize) {
  struct OldHost {  // smtpbulk_host_t up to 0.1.x: no security field
    const char* host;
    uint16_t port;
    const char* hello;
    unsigned connections;
  };
  static_assert(sizeof(OldHost) == offsetof(smtpbulk_host_t, security), "old layout");
  OldHost old[2] = {{"127.0.0.1", 2601, nullptr, 1}, {"127.0.0.1", 2602, nullptr, 3}};
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  o.struct_size = offsetof(smtpbulk_options_t, security);
  o.hosts = reinterpret_cast<const smtpbulk_host_t*>(old);
  o.n_hosts = 2;
  smtpbulk_t* sb = nullptr;
  ASSERT_EQ(smtpbulk_create(&o, &sb), 0);
  smtpbulk_stats_t* st = nullptr;
  ASSERT_EQ(smtpbulk_get_stats(sb, &st), 0);
  ASSERT_EQ(st->n_hosts, 2u);
  EXPECT_EQ(st->hosts[0].port, 2601);
  EXPECT_EQ(st->hosts[1].port, 2602);
  EXPECT_EQ(st->hosts[1].n_connections, 3u);
  smtpbulk_stats_free(st);
  smtpbulk_destroy(sb);
}

TEST(Lifecycle, SubmitBeforeStartOrAfterStopRefused) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port());
  e.opts.hosts = e.hosts.data();
  e.opts.n_hosts = 1;
  ASSERT_EQ(smtpbulk_create(&e.opts, &e.sb), 0);
  const char* rc[] = {"r@x.test"};
  smtpbulk_message_t m = make_msg(rc, 1);
  EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), SMTPBULK_ESTOPPED);
  ASSERT_EQ(smtpbulk_start(e.sb), 0);
  EXPECT_EQ(smtpbulk_start(e.sb), -EALREADY);
  EXPECT_STRNE(smtpbulk_backend_name(e.sb), "none");
}

TEST(Lifecycle, IPv6Loopback) {
  // The scripted peer listens on IPv4; use smtp-sink-free check: a v6 listener.
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    if (fd >= 0) close(fd);
    GTEST_SKIP() << "no IPv6 loopback here";
  }
  socklen_t l = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  listen(fd, 4);
  std::thread srv([fd] {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return;
    const char* script[] = {"220 v6\r\n", "250 ok\r\n", "250 ok\r\n", "250 ok\r\n",
                            "354 go\r\n", "250 queued\r\n"};
    char buf[4096];
    send(c, script[0], strlen(script[0]), 0);
    for (int i = 1; i < 6; i++) {
      std::string got;
      while (got.find("\r\n") == std::string::npos) {  // one command (or the body) per step
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) { close(c); return; }
        got.append(buf, n);
        if (i == 5 && got.find("\r\n.\r\n") == std::string::npos) got.clear();
      }
      send(c, script[i], strlen(script[i]), 0);
    }
    recv(c, buf, sizeof(buf), 0);
    close(c);
  });
  std::string hp = "[::1]:" + std::to_string(ntohs(a.sin6_port));
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  o.connections = 1;
  apply_test_backend(&o);
  Collector col;
  o.on_result = Collector::cb;
  o.result_arg = &col;
  smtpbulk_t* sb = smtpbulk_new(hp.c_str(), &o);
  ASSERT_NE(sb, nullptr) << strerror(errno);
  ASSERT_EQ(smtpbulk_mail(sb, "a@b.test"), 0);
  ASSERT_EQ(smtpbulk_to(sb, "c@d.test"), 0);
  ASSERT_EQ(smtpbulk_data(sb), 0);
  ASSERT_EQ(smtpbulk_datasend(sb, "x\r\n", 3), 0);
  ASSERT_EQ(smtpbulk_dataend(sb), 0);
  EXPECT_EQ(smtpbulk_quit(sb, "v6"), 0);
  smtpbulk_free(sb);
  srv.join();
  close(fd);
  EXPECT_EQ(col.by_status()[SMTPBULK_DELIVERED], 1u);
}
