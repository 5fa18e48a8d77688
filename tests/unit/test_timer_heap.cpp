// engine/timer_heap.h: what is due first comes out first, whatever the order in.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

extern "C" {
#include "timer_heap.h"
}

TEST(TimerHeap, EmptyHasNoTop) {
  timer_heap h{};
  EXPECT_EQ(th_peek(&h), nullptr);
  th_free(&h);
}

TEST(TimerHeap, PopsInDueOrderWithPointerAndTag) {
  timer_heap h{};
  int a, b, c;
  ASSERT_EQ(th_push(&h, 30, &a, 3), 0);
  ASSERT_EQ(th_push(&h, 10, &b, 1), 0);
  ASSERT_EQ(th_push(&h, 20, &c, 2), 0);
  ASSERT_NE(th_peek(&h), nullptr);
  EXPECT_EQ(th_peek(&h)->due, 10u);
  th_ent e = th_pop(&h);
  EXPECT_EQ(e.p, &b);
  EXPECT_EQ(e.tag, 1u);
  EXPECT_EQ(th_pop(&h).p, &c);
  EXPECT_EQ(th_pop(&h).p, &a);
  EXPECT_EQ(th_peek(&h), nullptr);
  th_free(&h);
}

TEST(TimerHeap, ManyRandomTimesComeOutSorted) {
  timer_heap h{};
  std::mt19937_64 rng(42);
  std::vector<uint64_t> in;
  for (int i = 0; i < 5000; i++) {
    uint64_t due = rng() % 1000;  // many equal times too
    in.push_back(due);
    ASSERT_EQ(th_push(&h, due, nullptr, (uint64_t)i), 0);
    if (i % 7 == 0) {  // pops interleaved with pushes
      uint64_t min = *std::min_element(in.begin(), in.end());
      EXPECT_EQ(th_pop(&h).due, min);
      in.erase(std::find(in.begin(), in.end(), min));
    }
  }
  std::sort(in.begin(), in.end());
  for (uint64_t want : in) EXPECT_EQ(th_pop(&h).due, want);
  EXPECT_EQ(h.n, 0u);
  th_free(&h);
}
