// engine/host_breaker.h: when a host's circuit breaker opens, lets one probe through,
// closes, opens again and gives up, over a clock the test moves.
#include <gtest/gtest.h>

#include "hb_harness.h"

namespace {

constexpr uint64_t kMs = 1000000;

struct BreakerTest : ::testing::Test {
  hbh* b = hbh_new(3, 100 * kMs, 2);  // 3 failures, 100 ms, down at the 2nd opening
  uint64_t now = 1000 * kMs;
  ~BreakerTest() override { hbh_free(b); }

  void config(unsigned failures, unsigned trips) { hbh_config(b, failures, 100 * kMs, trips); }
  int fail(int probe = 0) { return hbh_failure(b, probe, now); }
  bool admit(int* probe) { return hbh_admit(b, now, probe) == 1; }
};

TEST_F(BreakerTest, OpensAfterFailuresInARowOnly) {
  int probe;
  EXPECT_EQ(fail(), HBH_NONE);
  EXPECT_EQ(fail(), HBH_NONE);
  EXPECT_EQ(hbh_verdict(b), HBH_NONE);  // a verdict: the count starts again
  EXPECT_EQ(fail(), HBH_NONE);
  EXPECT_EQ(fail(), HBH_NONE);
  EXPECT_TRUE(admit(&probe));
  EXPECT_EQ(probe, 0);  // closed: anyone, no probe
  EXPECT_EQ(fail(), HBH_OPENED);
  EXPECT_TRUE(hbh_is_open(b));
  EXPECT_FALSE(admit(&probe));  // cooling off
}

TEST_F(BreakerTest, HalfOpenLetsOneProbeThroughAndItsVerdictCloses) {
  for (int i = 0; i < 3; i++) fail();
  ASSERT_TRUE(hbh_is_open(b));
  int probe;
  now += 99 * kMs;
  EXPECT_FALSE(admit(&probe));
  now += 1 * kMs;  // the cool-off is over
  EXPECT_TRUE(admit(&probe));
  EXPECT_EQ(probe, 1);
  EXPECT_FALSE(admit(&probe)) << "a second probe";
  EXPECT_EQ(fail(0), HBH_NONE);  // a straggler begun before it opened changes nothing
  EXPECT_EQ(hbh_verdict(b), HBH_CLOSED);
  EXPECT_FALSE(hbh_is_open(b));
  EXPECT_TRUE(admit(&probe));
  EXPECT_EQ(probe, 0);
  EXPECT_EQ(hbh_verdict(b), HBH_NONE);  // closed once only
}

TEST_F(BreakerTest, AFailedProbeOpensAgainThenTheHostIsDown) {
  config(3, 3);
  for (int i = 0; i < 3; i++) fail();
  int probe;
  now += 100 * kMs;
  ASSERT_TRUE(admit(&probe));
  EXPECT_EQ(fail(1), HBH_REOPENED);
  EXPECT_EQ(hbh_open_until(b), now + 100 * kMs);  // a new cool-off from the failure
  EXPECT_FALSE(admit(&probe));
  now += 100 * kMs;
  ASSERT_TRUE(admit(&probe));
  EXPECT_EQ(fail(1), HBH_DOWN);  // the third opening in a row
  EXPECT_TRUE(hbh_is_open(b));  // and it never admits again
  EXPECT_FALSE(admit(&probe));
}

TEST_F(BreakerTest, AReleasedProbeGoesToTheNextAsker) {
  for (int i = 0; i < 3; i++) fail();
  now += 100 * kMs;
  int probe;
  ASSERT_TRUE(admit(&probe));
  hbh_release(b);
  EXPECT_TRUE(admit(&probe));
  EXPECT_EQ(probe, 1);
}

TEST_F(BreakerTest, AVerdictResetsTheTrips) {
  for (int i = 0; i < 3; i++) fail();  // opening 1 of 2
  now += 100 * kMs;
  int probe;
  ASSERT_TRUE(admit(&probe));
  EXPECT_EQ(hbh_verdict(b), HBH_CLOSED);
  for (int i = 0; i < 3; i++) fail();  // opening 1 of 2 again, not 2 of 2
  EXPECT_TRUE(hbh_is_open(b));
  now += 100 * kMs;
  ASSERT_TRUE(admit(&probe));
  EXPECT_EQ(fail(1), HBH_DOWN);
}

TEST_F(BreakerTest, OffNeverOpens) {
  config(HBH_NEVER, 2);
  for (int i = 0; i < 1000; i++) EXPECT_EQ(fail(), HBH_NONE);
  EXPECT_FALSE(hbh_is_open(b));
}

TEST_F(BreakerTest, UnlimitedTripsProbeForEver) {
  config(3, HBH_NEVER);
  for (int i = 0; i < 3; i++) fail();
  int probe;
  for (int round = 0; round < 50; round++) {
    now += 100 * kMs;
    ASSERT_TRUE(admit(&probe));
    ASSERT_EQ(fail(1), HBH_REOPENED);
  }
}

}  // namespace
