// The sink's --max-rate window and per-second counts (sink_rate.h): the decision on its
// own, then under contention, where the limit must hold exactly.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

extern "C" {
#include "sink_rate.h"
}

namespace {

uint64_t word(uint32_t sec, uint32_t n) { return (uint64_t)sec << 32 | n; }

TEST(SinkRate, DecideCountsUpToTheLimitThenRefuses) {
  uint64_t next = 0;
  EXPECT_EQ(sink_rate_decide(word(0, 0), 0, 2, &next), 0);
  EXPECT_EQ(next, word(0, 1));
  EXPECT_EQ(sink_rate_decide(word(0, 1), 0, 2, &next), 0);
  EXPECT_EQ(next, word(0, 2));
  next = 12345;
  EXPECT_EQ(sink_rate_decide(word(0, 2), 0, 2, &next), -1);
  EXPECT_EQ(next, 12345u);  // untouched when refused
}

TEST(SinkRate, DecideStartsEachNewSecondAfresh) {
  uint64_t next = 0;
  EXPECT_EQ(sink_rate_decide(word(3, 2), 4, 2, &next), 4);
  EXPECT_EQ(next, word(4, 1));
  EXPECT_EQ(sink_rate_decide(word(3, 2), 9, 2, &next), 9);  // seconds skipped: fine
  EXPECT_EQ(next, word(9, 1));
}

TEST(SinkRate, DecideCountsAStaleClockInTheCurrentSecond) {
  // A thread that read second 4 just before another moved the window to 5: its MAIL
  // counts against 5 (the second 4 it saw is closed and must not grow again).
  uint64_t next = 0;
  EXPECT_EQ(sink_rate_decide(word(5, 1), 4, 2, &next), 5);
  EXPECT_EQ(next, word(5, 2));
  EXPECT_EQ(sink_rate_decide(word(5, 2), 4, 2, &next), -1);
}

TEST(SinkRate, NoLimitAdmitsEverythingAtItsOwnSecond) {
  sink_rate* r = sink_rate_new(0);
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 1000; i++) ASSERT_EQ(sink_rate_take(r, 7), 7);
  EXPECT_EQ(sink_rate_take(r, 3), 3);
  sink_rate_free(r);
}

TEST(SinkRate, TakeFollowsTheClock) {
  sink_rate* r = sink_rate_new(3);
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 3; i++) EXPECT_EQ(sink_rate_take(r, 0), 0);
  EXPECT_EQ(sink_rate_take(r, 0), -1);
  EXPECT_EQ(sink_rate_take(r, 1), 1);
  EXPECT_EQ(sink_rate_take(r, 0), 1);  // late reader: second 1
  EXPECT_EQ(sink_rate_take(r, 1), 1);
  EXPECT_EQ(sink_rate_take(r, 1), -1);
  sink_rate_free(r);
}

// Many threads race for one second's admissions: exactly `limit` win, whatever the
// interleaving (the CAS loop's promise; a lost update would let more through).
TEST(SinkRate, ContendedSecondAdmitsExactlyTheLimit) {
  const uint32_t limit = 5000;
  sink_rate* r = sink_rate_new(limit);
  ASSERT_NE(r, nullptr);
  for (uint32_t sec = 0; sec < 3; sec++) {
    std::atomic<unsigned> admitted{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; t++)
      ts.emplace_back([&] {
        for (int i = 0; i < 4000; i++)
          if (sink_rate_take(r, sec) >= 0) admitted++;
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(admitted.load(), limit) << "second " << sec;
  }
  sink_rate_free(r);
}

TEST(SinkRate, PerSecondReadsThroughTheLastSecondWithAMessage) {
  sink_rate* r = sink_rate_new(0);
  ASSERT_NE(r, nullptr);
  uint64_t out[SINK_PER_SECOND_MAX];
  EXPECT_EQ(sink_per_second_read(r, out, SINK_PER_SECOND_MAX), 0u);
  sink_per_second_add(r, 0);
  sink_per_second_add(r, 0);
  sink_per_second_add(r, 3);
  sink_per_second_add(r, SINK_PER_SECOND_MAX);  // past the first hour: not kept
  ASSERT_EQ(sink_per_second_read(r, out, SINK_PER_SECOND_MAX), 4u);
  EXPECT_EQ(out[0], 2u);
  EXPECT_EQ(out[1], 0u);
  EXPECT_EQ(out[2], 0u);
  EXPECT_EQ(out[3], 1u);
  EXPECT_EQ(sink_per_second_read(r, out, 2), 1u);  // cap respected
  sink_rate_free(r);
}

}  // namespace
