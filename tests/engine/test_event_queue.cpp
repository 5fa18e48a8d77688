// Events and results through a file descriptor (smtpbulk_event_queue()), and callback
// codes given later from the caller's thread (smtpbulk_act()): what a Perl or event
// loop caller relies on, against a scripted peer.
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

struct Item {
  int kind, connection, error;
  uint64_t id;
  int status = -1;
  std::string line;
};

// An engine whose results and events come through the queue.
struct QueueEngine {
  TestEngine e;
  int fd = -1;
  std::vector<Item> items;

  QueueEngine(uint16_t port, unsigned conns, unsigned kinds) : e(port, conns) {
    e.opts.on_result = nullptr;
    e.opts.event_queue = 1;
    e.opts.event_queue_kinds = kinds;
    e.opts.hosts = e.hosts.data();
    e.opts.n_hosts = e.hosts.size();
    EXPECT_EQ(smtpbulk_create(&e.opts, &e.sb), 0);
    fd = smtpbulk_event_fd(e.sb);
    EXPECT_GE(fd, 0) << smtpbulk_strerror(fd);
  }
  int start() { return smtpbulk_start(e.sb); }
  bool readable(int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, ms) == 1;
  }
  // Take what is queued (waiting on the descriptor, as a caller's loop would) until
  // pred holds; bounded.
  bool take_until(const std::function<bool()>& pred, int ms = kEventMs) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= end) return false;
      if (!readable(50)) continue;
      smtpbulk_queued_event_t* q = nullptr;
      while (smtpbulk_event_next(e.sb, &q, 0) == 1) {
        Item it{(int)q->ev.kind, q->ev.connection, q->ev.error, q->ev.message_id};
        if (q->result) {
          it.status = q->result->status;
          EXPECT_EQ(q->ev.message, q->result);
        }
        if (q->ev.line) it.line = q->ev.line;
        items.push_back(it);
        smtpbulk_event_free(q);
      }
    }
    return true;
  }
  size_t count(int kind, int conn = -2) const {
    return (size_t)std::count_if(items.begin(), items.end(), [&](const Item& i) {
      return i.kind == kind && (conn == -2 || i.connection == conn);
    });
  }
  std::vector<Item> of(int kind) const {
    std::vector<Item> v;
    for (auto& i : items)
      if (i.kind == kind) v.push_back(i);
    return v;
  }
};

size_t count_cmd(ScriptedPeer& peer, const std::string& cmd) {
  auto cmds = peer.commands();
  return (size_t)std::count(cmds.begin(), cmds.end(), cmd);
}

}  // namespace

TEST(EventQueue, ResultsAndEventsComeInOrderThroughTheDescriptor) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    return c.find("bad") != std::string::npos ? "550 5.1.1 unknown\r\n" : "";
  };
  ScriptedPeer peer(s);
  QueueEngine q(peer.port(), 1, SMTPBULK_EVENTS_ALL);
  EXPECT_FALSE(q.readable(0)) << "nothing happened yet";
  ASSERT_EQ(q.start(), 0);
  uint64_t good = q.e.send({"ok@x.test"}, "hi\r\n");
  uint64_t bad = q.e.send({"bad@x.test"}, "hi\r\n");
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_COMPLETE) >= 1; }));
  // One result each, with its status; pass and fail are not separate items.
  auto res = q.of(SMTPBULK_EV_RESULT);
  ASSERT_EQ(res.size(), 2u);
  for (auto& r : res) {
    if (r.id == good) EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    else if (r.id == bad) EXPECT_EQ(r.status, SMTPBULK_REJECTED);
    else ADD_FAILURE() << "a result for an unknown id " << r.id;
    EXPECT_EQ(r.connection, 0);
  }
  EXPECT_EQ(q.count(SMTPBULK_EV_PASS) + q.count(SMTPBULK_EV_FAIL), 0u);
  // In the order it happened: connected, then the results, then complete last.
  auto first = [&](int kind) {
    return std::find_if(q.items.begin(), q.items.end(),
                        [&](const Item& i) { return i.kind == kind; }) - q.items.begin();
  };
  EXPECT_LT(first(SMTPBULK_EV_CONNECT_PASS), first(SMTPBULK_EV_RESULT));
  auto last = [&](int kind) {
    size_t at = 0;
    for (size_t i = 0; i < q.items.size(); i++)
      if (q.items[i].kind == kind) at = i;
    return at;
  };
  EXPECT_GT(last(SMTPBULK_EV_COMPLETE), last(SMTPBULK_EV_RESULT));
  // Reply lines are copied whole, NUL-terminated.
  bool greeting = false, refused = false;
  ASSERT_TRUE(q.take_until([&] {
    for (auto& r : q.of(SMTPBULK_EV_READ)) {
      greeting |= r.line == "220 peer.test ESMTP scripted";
      refused |= r.line == "550 5.1.1 unknown";
    }
    return greeting && refused;
  }));
}

TEST(EventQueue, OnlyTheKindsAskedFor) {
  PeerScript s;
  ScriptedPeer peer(s);
  QueueEngine q(peer.port(), 1, 1u << SMTPBULK_EV_CONNECT_PASS);
  ASSERT_EQ(q.start(), 0);
  uint64_t id = q.e.send({"ok@x.test"}, "hi\r\n");
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_RESULT) >= 1; }));
  EXPECT_EQ(q.of(SMTPBULK_EV_RESULT)[0].id, id);
  EXPECT_EQ(q.count(SMTPBULK_EV_CONNECT_PASS), 1u);
  EXPECT_EQ(q.count(SMTPBULK_EV_READ), 0u);
  EXPECT_EQ(q.items.size(), 2u);
  // Emptied, and nothing else can come: not readable, nothing to take.
  EXPECT_FALSE(q.readable(0));
  smtpbulk_queued_event_t* none = nullptr;
  EXPECT_EQ(smtpbulk_event_next(q.e.sb, &none, 20), 0);
  EXPECT_EQ(none, nullptr);
}

TEST(EventQueue, RefusedWhereItCannotHold) {
  PeerScript s;
  ScriptedPeer peer(s);
  {  // results already have a taker: refused at create
    TestEngine e(peer.port(), 1);
    e.opts.event_queue = 1;
    e.opts.hosts = e.hosts.data();
    e.opts.n_hosts = 1;
    EXPECT_EQ(smtpbulk_create(&e.opts, &e.sb), -EINVAL);
  }
  {  // no queue asked for: no descriptor
    TestEngine e(peer.port(), 1);
    e.opts.hosts = e.hosts.data();
    e.opts.n_hosts = 1;
    ASSERT_EQ(smtpbulk_create(&e.opts, &e.sb), 0);
    EXPECT_EQ(smtpbulk_event_fd(e.sb), -EINVAL);
  }
  QueueEngine q(peer.port(), 2, SMTPBULK_EVENTS_ALL);
  EXPECT_EQ(smtpbulk_act(q.e.sb, 0, 0, SMTPBULK_CB_REMOVE), SMTPBULK_ESTOPPED) << "not started";
  ASSERT_EQ(q.start(), 0);
  smtpbulk_result_t* r = nullptr;
  EXPECT_EQ(smtpbulk_poll(q.e.sb, &r, 0), -EINVAL) << "results go to the queue";
  EXPECT_EQ(smtpbulk_act(q.e.sb, 1, 0, SMTPBULK_CB_REMOVE), -EINVAL) << "no host 1";
  EXPECT_EQ(smtpbulk_act(q.e.sb, 0, 2, SMTPBULK_CB_REMOVE), -EINVAL) << "no connection 2";
  EXPECT_EQ(smtpbulk_act(q.e.sb, 0, -1, SMTPBULK_CB_REMOVE), -EINVAL);
  EXPECT_EQ(smtpbulk_act(q.e.sb, 0, 0, 999), -EINVAL) << "no such code";
  EXPECT_EQ(smtpbulk_act(q.e.sb, 0, 0, SMTPBULK_CB_DEFAULT), 0);
  smtpbulk_queued_event_t* it = nullptr;
  EXPECT_EQ(smtpbulk_event_next(nullptr, &it, 0), -EINVAL);
}

TEST(EventQueue, RemoveGivenLaterTakesTheConnectionOut) {
  PeerScript s;
  ScriptedPeer peer(s);
  QueueEngine q(peer.port(), 2, 1u << SMTPBULK_EV_CONNECT_PASS);
  ASSERT_EQ(q.start(), 0);
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_CONNECT_PASS) >= 2; }));
  // As if connect_pass had returned 101 for connection 0, decided on our thread.
  ASSERT_EQ(smtpbulk_act(q.e.sb, 0, 0, SMTPBULK_CB_REMOVE), 0);
  ASSERT_TRUE(wait_until([&] { return count_cmd(peer, "QUIT") == 1; }))
      << "the idle connection says QUIT at once";
  std::set<uint64_t> ids;
  for (int i = 0; i < 20; i++) ids.insert(q.e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_RESULT) >= 20; }));
  for (auto& r : q.of(SMTPBULK_EV_RESULT)) {
    EXPECT_EQ(r.status, SMTPBULK_DELIVERED);
    EXPECT_EQ(r.connection, 1) << "connection 0 was removed";
    EXPECT_EQ(ids.erase(r.id), 1u) << "one result per message";
  }
  EXPECT_TRUE(ids.empty());
  EXPECT_EQ(peer.connections(), 2) << "and it never came back";
}

TEST(EventQueue, ReconnectGivenLaterReconnectsThatConnection) {
  PeerScript s;
  ScriptedPeer peer(s);
  QueueEngine q(peer.port(), 1,
                (1u << SMTPBULK_EV_CONNECT_PASS) | (1u << SMTPBULK_EV_RECONNECT_PASS));
  ASSERT_EQ(q.start(), 0);
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_CONNECT_PASS) >= 1; }));
  ASSERT_EQ(smtpbulk_act(q.e.sb, 0, 0, SMTPBULK_CB_RECONNECT), 0);
  ASSERT_TRUE(wait_until([&] { return count_cmd(peer, "QUIT") == 1; }))
      << "an idle connection says QUIT before it goes";
  // It connects again for the next message (an idle engine keeps no idle connection
  // open for nothing), as a reconnection.
  uint64_t id = q.e.send({"r@x.test"}, "hi\r\n");
  ASSERT_TRUE(q.take_until([&] { return q.count(SMTPBULK_EV_RESULT) >= 1; }));
  EXPECT_EQ(q.of(SMTPBULK_EV_RESULT)[0].id, id);
  EXPECT_EQ(q.of(SMTPBULK_EV_RESULT)[0].status, SMTPBULK_DELIVERED);
  EXPECT_EQ(q.count(SMTPBULK_EV_RECONNECT_PASS, 0), 1u);
  EXPECT_EQ(q.count(SMTPBULK_EV_CONNECT_PASS), 1u);
  EXPECT_EQ(peer.connections(), 2);
}

TEST(EventQueue, ResultsLeftAtDestroyAreFreedAndTakenOnesOutliveIt) {
  PeerScript s;
  ScriptedPeer peer(s);
  smtpbulk_queued_event_t* kept = nullptr;
  {
    QueueEngine q(peer.port(), 1, 0);
    ASSERT_EQ(q.start(), 0);
    for (int i = 0; i < 5; i++) q.e.send({"r@x.test"}, "hi\r\n");
    ASSERT_EQ(smtpbulk_drain(q.e.sb, 10000), 0);
    ASSERT_EQ(smtpbulk_event_next(q.e.sb, &kept, 1000), 1);
    ASSERT_NE(kept->result, nullptr);
  }  // four results still queued: freed by destroy (asan would say otherwise)
  EXPECT_EQ(kept->result->status, SMTPBULK_DELIVERED);
  smtpbulk_event_free(kept);
}

// event_queue_hold: after a held connect_pass the connection takes nothing until the
// caller's code comes, as if the callback were still running; 101 then keeps it from
// ever carrying a message, 1 lets it carry on.
TEST(EventQueue, HeldConnectPassWaitsForTheCode) {
  for (int code : {SMTPBULK_CB_REMOVE, SMTPBULK_CB_DEFAULT}) {
    PeerScript s;
    ScriptedPeer peer(s);
    TestEngine e(peer.port(), 1);
    e.opts.on_result = nullptr;
    e.opts.event_queue = 1;
    e.opts.event_queue_kinds = 1u << SMTPBULK_EV_CONNECT_PASS;
    e.opts.event_queue_hold = 1u << SMTPBULK_EV_CONNECT_PASS;
    e.opts.hosts = e.hosts.data();
    e.opts.n_hosts = 1;
    ASSERT_EQ(smtpbulk_create(&e.opts, &e.sb), 0);
    ASSERT_EQ(smtpbulk_start(e.sb), 0);
    smtpbulk_queued_event_t* q = nullptr;
    ASSERT_EQ(smtpbulk_event_next(e.sb, &q, kEventMs), 1);
    ASSERT_EQ(q->ev.kind, SMTPBULK_EV_CONNECT_PASS);
    int host = q->ev.host_index, conn = q->ev.connection;
    smtpbulk_event_free(q);
    for (int i = 0; i < 5; i++) e.send({"r@x.test"}, "hi\r\n");
    // Held: nothing goes out however long the caller takes. (A grace to let a broken
    // engine show itself; a correct one sends nothing whatever the timing.)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(count_cmd(peer, "DATA") + count_cmd(peer, "BDAT"), 0u) << "code " << code;
    auto cmds = peer.commands();
    EXPECT_TRUE(std::none_of(cmds.begin(), cmds.end(), [](const std::string& c) {
      return c.rfind("MAIL", 0) == 0;
    })) << "no MAIL while held";
    ASSERT_EQ(smtpbulk_act(e.sb, host, conn, code), 0);
    size_t results = 0, delivered = 0;
    while (results < 5 && smtpbulk_event_next(e.sb, &q, kEventMs) == 1) {
      if (q->result) {
        results++;
        delivered += q->result->status == SMTPBULK_DELIVERED;
      }
      smtpbulk_event_free(q);
    }
    EXPECT_EQ(results, 5u);
    if (code == SMTPBULK_CB_REMOVE) {
      EXPECT_EQ(delivered, 0u) << "removed before it carried anything: the host is down";
      cmds = peer.commands();
      EXPECT_TRUE(std::none_of(cmds.begin(), cmds.end(), [](const std::string& c) {
        return c.rfind("MAIL", 0) == 0;
      }));
    } else {
      EXPECT_EQ(delivered, 5u) << "released, it carries them";
    }
  }
}
