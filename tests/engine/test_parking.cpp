// The end of the batch for connections a callback parked (102, 103, 104): the moment
// the submission queue runs empty. A parked connection comes back then even when the
// queue fills again at once — the engine is told by the dequeue that emptied it, it
// does not look now and then (a look every 50 ms missed such a moment, and the
// connection stayed out for the whole next batch).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "engine_helpers.h"
#include "scripted_peer.h"

using namespace sbtest;

namespace {

struct Parker {
  int code = SMTPBULK_CB_PAUSE;
  std::atomic<int> parked_conn{-1};  // the connection whose first pass parked it
  std::atomic<int> reconnects[2] = {{0}, {0}};
  smtpbulk_callbacks_t cbs{};
  Parker() {
    cbs.struct_size = sizeof(cbs);
    cbs.pass = cbs.reconnect_pass = cb;
    cbs.arg = this;
  }
  static int cb(const smtpbulk_event_t* ev, void* arg) {
    auto* p = static_cast<Parker*>(arg);
    if (ev->kind == SMTPBULK_EV_RECONNECT_PASS && ev->connection >= 0 && ev->connection < 2)
      p->reconnects[ev->connection]++;
    if (ev->kind != SMTPBULK_EV_PASS) return SMTPBULK_CB_DEFAULT;
    int none = -1;  // the first pass, whichever connection had it
    return p->parked_conn.compare_exchange_strong(none, ev->connection) ? p->code
                                                                        : SMTPBULK_CB_DEFAULT;
  }
};

// Bounded waits on a condition, polled finely (the test must act within a fraction
// of a millisecond of the queue running empty).
bool wait_closely(const std::function<bool()>& f, int ms = 10000) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!f()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return true;
}

uint64_t queued(smtpbulk_t* sb) {
  smtpbulk_counters_t c;
  smtpbulk_get_counters(sb, &c);
  return c.queued;
}

}  // namespace

class BatchEndTest : public ::testing::TestWithParam<int> {};

TEST_P(BatchEndTest, AQueueThatRanEmptyEndsTheBatchEvenWhenItFillsAgainAtOnce) {
  PeerScript s;
  s.on_data = [](int, const std::string&) -> std::string {  // 25 ms a message
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return "";
  };
  ScriptedPeer peer(s);
  Parker park;
  park.code = GetParam();
  TestEngine e(peer.port(), 2);
  e.opts.callbacks = &park.cbs;
  e.opts.pipeline = 0;  // one message at a time per connection
  ASSERT_EQ(e.start(), 0);

  // The first batch: the first connection to pass a message parks; the other one
  // carries the rest, one by one, so the queue holds messages for a while.
  std::vector<uint64_t> first, second;
  for (int i = 0; i < 12; i++) first.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_TRUE(wait_closely([&] { return park.parked_conn.load() >= 0; }));
  const int x = park.parked_conn.load();
  // The moment the other connection takes the last of them, the batch is over; the
  // next one is submitted at once, before a look every 50 ms could have seen it empty.
  ASSERT_TRUE(wait_closely([&] { return queued(e.sb) == 0; }));
  for (int i = 0; i < 20; i++) second.push_back(e.send({"r@x.test"}, "hi\r\n"));
  ASSERT_EQ(smtpbulk_drain(e.sb, 20000), 0);

  size_t x_first = 0, x_second = 0;
  for (uint64_t id : first) {
    EXPECT_EQ(e.results.get(id).status, SMTPBULK_DELIVERED);
    x_first += e.results.get(id).connection == x;
  }
  for (uint64_t id : second) {
    EXPECT_EQ(e.results.get(id).status, SMTPBULK_DELIVERED);
    x_second += e.results.get(id).connection == x;
  }
  EXPECT_EQ(e.results.duplicates(), 0u);
  // Parked, it took nothing more of the first batch (one at a time: the pass that
  // parked it was its only one)...
  EXPECT_EQ(x_first, 1u);
  // ...and it was back for the second: it carried some of it, while the other
  // connection was still busy with the first batch's last message.
  EXPECT_GT(x_second, 0u) << "the parked connection missed the end of the batch";
  if (park.code != SMTPBULK_CB_PAUSE) EXPECT_GE(park.reconnects[x].load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Codes, BatchEndTest,
                         ::testing::Values((int)SMTPBULK_CB_REMOVE_RECONNECT,
                                           (int)SMTPBULK_CB_REMOVE_RESTART,
                                           (int)SMTPBULK_CB_PAUSE));
