// engine/pacer.h: GCRA pacing (the sum holds, no heap after a quiet spell, a turn given
// back) and the adaptive slow-down (down on a throttle, up step by step, settled below
// the server's limit), over a clock the test moves; and engine/rate_meter.h.
#include <gtest/gtest.h>

#include <vector>

#include "pc_harness.h"

namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kS = 1000 * kMs;

struct PacerTest : ::testing::Test {
  pch* p = nullptr;
  uint64_t now = 1000 * kS;
  ~PacerTest() override { pch_free(p); }
  void make(uint64_t interval, unsigned burst, unsigned factor = 50, uint64_t cooloff = 10 * kS) {
    pch_free(p);
    p = pch_new(interval, burst, factor, cooloff);
  }
  bool admit(uint64_t* at = nullptr) {
    uint64_t charged = 0, when = 0;
    int ok = pch_admit(p, now, &charged, &when);
    if (at) *at = when;
    return ok == 1;
  }
  // Admissions at now, as many as it takes.
  int drain() {
    int n = 0;
    while (admit() && n < 100000) n++;
    return n;
  }
};

TEST_F(PacerTest, IntervalOfARate) {
  EXPECT_EQ(pch_interval_of(0, 1000), 0u);
  EXPECT_EQ(pch_interval_of(500, 1000), 2 * kMs);
  EXPECT_EQ(pch_interval_of(500, 0), 2 * kMs);  // per second by default
  EXPECT_EQ(pch_interval_of(100, 3600000), 36 * kS);
  EXPECT_EQ(pch_interval_of(4000000000u, 1), 1u);  // never 0: that would mean unpaced
}

TEST_F(PacerTest, UnpacedAdmitsEverything) {
  make(0, 1);
  EXPECT_EQ(drain(), 100000);
}

TEST_F(PacerTest, OneAtATimeAtTheInterval) {
  make(100 * kMs, 1);  // 10/s
  uint64_t at = 0;
  EXPECT_TRUE(admit());
  EXPECT_FALSE(admit(&at));
  EXPECT_EQ(at, now + 99 * kMs);  // 1 ms early at most: the timers' resolution
  now = at - 1;
  EXPECT_FALSE(admit());
  now = at;
  EXPECT_TRUE(admit());
  EXPECT_FALSE(admit());
}

TEST_F(PacerTest, NoHeapAfterAQuietSpell) {
  make(10 * kMs, 5);  // 100/s, burst 5
  EXPECT_EQ(drain(), 5);
  now += 3600 * kS;  // an hour of nothing
  EXPECT_EQ(drain(), 5);  // still only the burst, not an hour's worth
  now += 20 * kMs;
  EXPECT_EQ(drain(), 2);
}

TEST_F(PacerTest, TheSumHoldsOverAnySpan) {
  make(2 * kMs, 10);  // 500/s, burst 10
  // Many askers at uneven times over 10 s: at most burst + rate x (T + 1 ms) per span.
  std::vector<uint64_t> starts;
  uint64_t t0 = now;
  for (int i = 0; i < 200000; i++) {
    now = t0 + (uint64_t)i * 50000 + (uint64_t)(i * 7919 % 13) * 3000;  // ~20 asks/ms
    if (admit()) starts.push_back(now);
  }
  ASSERT_GT(starts.size(), 4900u);
  size_t j = 0;
  for (size_t i = 0; i < starts.size(); i++) {
    while (starts[i] - starts[j] >= kS) j++;
    ASSERT_LE(i - j + 1, 10u + 500u + 1u) << "a one-second window held too many";
  }
  EXPECT_LE(starts.size(), 10u + 5000u + 1u);
}

TEST_F(PacerTest, ATurnGivenBackIsTakenByTheNext) {
  make(100 * kMs, 1);
  uint64_t charged = 0, at = 0;
  ASSERT_EQ(pch_admit(p, now, &charged, &at), 1);
  EXPECT_EQ(charged, 100 * kMs);
  pch_unadmit(p, charged);  // no message came after all
  EXPECT_TRUE(admit());
  EXPECT_FALSE(admit());
}

TEST_F(PacerTest, ThreadsTogetherKeepTheRate) {
  make(100000, 1, 100);  // 10,000/s over 4 threads on the real clock
  uint64_t span = 0;
  uint64_t n = pch_hammer(p, 4, 200, &span);
  // GCRA's bound whatever the scheduling: 1 + (span + 1 ms) / interval.
  EXPECT_LE(n, 1 + (span + kMs) / 100000 + 1);
  EXPECT_GT(n, 0u);
}

TEST_F(PacerTest, AThrottleHalvesWhatTheServerTookAndClimbsBackBelowIt) {
  make(0, 1, 50, 10 * kS);  // unpaced; cool-off 10 s
  EXPECT_EQ(pch_rate(p), 0);
  ASSERT_EQ(pch_throttled(p, now, 300.0), 1);
  EXPECT_NEAR(pch_rate(p), 150.0, 0.01);
  // The replies of what was in flight, or a window still closed: one slow-down per
  // cool-off, not one per reply.
  EXPECT_EQ(pch_throttled(p, now + 500 * kMs, 150.0), 0);
  EXPECT_EQ(pch_throttled(p, now + 10 * kS - 1, 150.0), 0);
  EXPECT_NEAR(pch_rate(p), 150.0, 0.01);
  now += 10 * kS - 1;
  admit();
  EXPECT_NEAR(pch_rate(p), 150.0, 0.01);  // the cool-off holds
  double last = 150;
  for (int step = 0; step < 3; step++) {  // +30/s per second (a tenth of each)
    now += (step ? 1 * kS : 1);
    admit();
    EXPECT_NEAR(pch_rate(p), last + 30, 0.01) << "step " << step;
    last = pch_rate(p);
  }
  now += 1 * kS;
  admit();
  EXPECT_NEAR(pch_rate(p), 270.0, 0.01);  // the cap: 90% of where the server throttled
  now += 1 * kS;
  admit();
  EXPECT_NEAR(pch_rate(p), 270.0, 0.01);  // and it stays there
  now += 97 * kS;
  admit();
  EXPECT_NEAR(pch_rate(p), 270.0, 0.01);
  now += 3 * kS;  // ten quiet cool-offs at the cap: the old limit is forgotten
  admit();
  EXPECT_NEAR(pch_rate(p), 300.0, 0.01);  // and it climbs on, step by step
  for (int i = 0; i < 2; i++) {
    now += 1 * kS;
    admit();
  }
  EXPECT_NEAR(pch_rate(p), 360.0, 0.01);
  for (int i = 0; i < 8; i++) {
    now += 1 * kS;
    admit();
  }
  EXPECT_EQ(pch_rate(p), 0);  // twice the old limit: unpaced again, as configured
}

TEST_F(PacerTest, AConfiguredRateClimbsBackToItself) {
  make(pch_interval_of(100, 1000), 1, 50, 10 * kS);  // 100/s; the server took 300
  ASSERT_EQ(pch_throttled(p, now, 300.0), 1);
  EXPECT_NEAR(pch_rate(p), 50.0, 0.01);  // half of the lower: what was in force
  for (int i = 0; i < 50; i++) {
    now += 1 * kS;
    admit();
  }
  EXPECT_NEAR(pch_rate(p), 90.0, 0.01);  // 90% of the 100 it throttled at
  now += 100 * kS;
  for (int i = 0; i < 3; i++) {
    now += 1 * kS;
    admit();
  }
  EXPECT_NEAR(pch_rate(p), 100.0, 0.01);  // back to the configured pace
}

TEST_F(PacerTest, AThrottleAtTheCapLowersTheCeiling) {
  make(0, 1, 50, 10 * kS);
  pch_throttled(p, now, 300.0);
  for (int i = 0; i < 20; i++) {
    now += 1 * kS;
    admit();
  }
  ASSERT_NEAR(pch_rate(p), 270.0, 0.01);
  ASSERT_EQ(pch_throttled(p, now, 260.0), 1);  // the server's limit is lower now
  EXPECT_NEAR(pch_rate(p), 130.0, 0.01);
}

TEST_F(PacerTest, NoAdaptationWhenTheFactorIs100) {
  make(0, 1, 100);
  EXPECT_EQ(pch_throttled(p, now, 300.0), 0);
  EXPECT_EQ(pch_rate(p), 0);
}

TEST_F(PacerTest, ItGoesNoLowerThanOneASecond) {
  make(0, 1, 50, 1 * kS);
  ASSERT_EQ(pch_throttled(p, now, 0), 1);  // nothing delivered: no rate to halve
  EXPECT_NEAR(pch_rate(p), 1.0, 1e-9);
  now += 2 * kS;
  ASSERT_EQ(pch_throttled(p, now, 0.5), 1);
  EXPECT_NEAR(pch_rate(p), 1.0, 1e-9);  // the floor
  make(pch_interval_of(100, 3600000), 1, 50, 1 * kS);  // 100/h, configured
  ASSERT_EQ(pch_throttled(p, now, 0), 1);
  EXPECT_NEAR(pch_rate(p), 100.0 / 3600 / 2, 1e-9);  // half of it, below the floor
}

TEST(RateMeter, WhatWasDeliveredOverTheLastSecond) {
  std::vector<uint64_t> t;
  uint64_t base = 5000 * kS;
  for (int i = 0; i < 300; i++) t.push_back(base + (uint64_t)i * 3 * kMs);  // 300 in 0.9 s
  double r = pch_meter(t.data(), (unsigned)t.size(), base + 950 * kMs);
  EXPECT_GT(r, 250);
  EXPECT_LT(r, 350);
  // Three seconds later it has all gone stale.
  EXPECT_EQ(pch_meter(t.data(), (unsigned)t.size(), base + 4 * kS), 0);
}

}  // namespace
