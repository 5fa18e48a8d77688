// engine/watchdog.c's tick without its thread: slots that waited too long fire and
// wake their worker; silence while work is in progress is a global hang, declared
// once per period and turned into a give-up after retry_global of them.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "wd_harness.h"

namespace {

constexpr uint64_t kMs = 1000000ull;

struct Harness {
  wdh* h;
  Harness(unsigned slots, unsigned global_ms, unsigned retry) : h(wdh_new(slots, global_ms, retry)) {}
  ~Harness() { wdh_free(h); }
  std::vector<int> verdicts() {
    int v[64];
    int n = wdh_verdicts(h, v, 64);
    return std::vector<int>(v, v + n);
  }
};

}  // namespace

TEST(WatchdogTick, ASlotThatWaitedTooLongFiresAndWakesItsWorker) {
  Harness t(3, 100000, 1);
  wdh_quiet_since(t.h, 1000 * kMs);
  wdh_watch(t.h, 1, 1000 * kMs, 100);  // waiting since t=1000 ms, 100 ms allowed
  wdh_tick(t.h, 1050 * kMs);
  EXPECT_FALSE(wdh_fired(t.h, 1)) << "not yet";
  EXPECT_EQ(wdh_woken(t.h), 0u);
  wdh_tick(t.h, 1100 * kMs);
  EXPECT_TRUE(wdh_fired(t.h, 1));
  EXPECT_FALSE(wdh_fired(t.h, 0)) << "a slot that waits for nothing";
  EXPECT_TRUE(wdh_pending(t.h));
  EXPECT_EQ(wdh_woken(t.h), 1u);
  // The worker checks again: still waiting, so it takes the verdict, once.
  EXPECT_TRUE(wdh_take(t.h, 1, 1100 * kMs));
  EXPECT_FALSE(wdh_take(t.h, 1, 1100 * kMs));
}

TEST(WatchdogTick, AVerdictTheServerOutranIsDropped) {
  Harness t(1, 100000, 1);
  wdh_watch(t.h, 0, 1 * kMs, 100);
  wdh_tick(t.h, 200 * kMs);
  ASSERT_TRUE(wdh_fired(t.h, 0));
  wdh_quiet(t.h, 0);  // the server answered before the worker looked
  EXPECT_FALSE(wdh_take(t.h, 0, 200 * kMs));
}

TEST(WatchdogTick, SilenceWhileBusyIsAGlobalHangThenAGiveUp) {
  Harness t(1, 1000, 1);
  wdh_quiet_since(t.h, 1);
  wdh_progress(t.h, 1);
  wdh_tick(t.h, 999 * kMs);
  EXPECT_TRUE(t.verdicts().empty()) << "not a full period yet";
  wdh_tick(t.h, 1001 * kMs);
  ASSERT_EQ(t.verdicts(), std::vector<int>{0}) << "the first: reconnect everything";
  EXPECT_EQ(wdh_global(t.h), 1);
  EXPECT_EQ(wdh_woken(t.h), 1u);
  wdh_clear_global(t.h);  // the worker took it
  wdh_tick(t.h, 1500 * kMs);
  EXPECT_EQ(t.verdicts().size(), 1u) << "a full period after the last verdict";
  wdh_tick(t.h, 2002 * kMs);
  ASSERT_EQ(t.verdicts(), (std::vector<int>{0, 1})) << "retry_global used up: give up";
  EXPECT_EQ(wdh_global(t.h), 2);
}

TEST(WatchdogTick, NoSecondVerdictBeforeTheFirstIsCarriedOut) {
  Harness t(1, 1000, 5);
  wdh_quiet_since(t.h, 1);
  wdh_progress(t.h, 1);
  wdh_tick(t.h, 1001 * kMs);
  ASSERT_EQ(t.verdicts().size(), 1u);
  wdh_tick(t.h, 9000 * kMs);  // a slow worker: however long it takes
  EXPECT_EQ(t.verdicts().size(), 1u);
  wdh_clear_global(t.h);
  wdh_tick(t.h, 9001 * kMs);  // judged again once it is
  EXPECT_EQ(t.verdicts(), (std::vector<int>{0, 0}));
}

TEST(WatchdogTick, NothingToDoOrAnAnswerIsNotAHang) {
  Harness t(1, 1000, 1);
  wdh_set_busy(t.h, 0);
  wdh_tick(t.h, 10000 * kMs);
  EXPECT_TRUE(t.verdicts().empty());
  wdh_set_busy(t.h, 1);  // work arrives: the clock starts now, not at 0
  wdh_tick(t.h, 10500 * kMs);
  EXPECT_TRUE(t.verdicts().empty());
  wdh_progress(t.h, 10900 * kMs);  // a server answered
  wdh_tick(t.h, 11200 * kMs);
  EXPECT_TRUE(t.verdicts().empty());
  wdh_tick(t.h, 11901 * kMs);
  EXPECT_EQ(t.verdicts().size(), 1u);
}
