// The message block pool: reuse, size classes, the keep limit, and many threads getting
// and putting at once without two holders ever sharing a block.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

extern "C" {
#include "msg_pool.h"
}

TEST(MsgPool, ReusesFreedBlocksOfTheSameClass) {
  sb_msg_pool* p = sb_msg_pool_new(1 << 20);
  ASSERT_NE(p, nullptr);
  uint8_t k1, k2, k3;
  void* a = sb_msg_pool_get(p, 1500, &k1);  // the 2 KB class
  ASSERT_NE(a, nullptr);
  memset(a, 1, 2048);  // the whole class size is usable
  sb_msg_pool_put(p, a, k1);
  void* b = sb_msg_pool_get(p, 1100, &k2);  // same class: the same block comes back
  EXPECT_EQ(b, a);
  EXPECT_EQ(k2, k1);
  void* c = sb_msg_pool_get(p, 100, &k3);  // another class: a new block
  EXPECT_NE(c, a);
  EXPECT_NE(k3, k1);
  sb_msg_pool_put(p, b, k2);
  sb_msg_pool_put(p, c, k3);
  sb_msg_pool_free(p);
}

TEST(MsgPool, BigBlocksAndNoPoolAreMallocAndFree) {
  sb_msg_pool* p = sb_msg_pool_new(1 << 20);
  uint8_t k;
  void* big = sb_msg_pool_get(p, 1 << 20, &k);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(k, SB_POOL_NONE);
  memset(big, 0, 1 << 20);
  sb_msg_pool_put(p, big, k);
  void* plain = sb_msg_pool_get(nullptr, 100, &k);
  EXPECT_EQ(k, SB_POOL_NONE);
  sb_msg_pool_put(nullptr, plain, k);
  sb_msg_pool_free(p);
}

TEST(MsgPool, KeepsNoMoreThanItsLimit) {
  // 4 KB kept per class: two 2 KB blocks; a third one put back is freed.
  sb_msg_pool* p = sb_msg_pool_new(4096);
  uint8_t k;
  std::vector<void*> v;
  for (int i = 0; i < 3; i++) v.push_back(sb_msg_pool_get(p, 2000, &k));
  EXPECT_EQ(sb_msg_pool_kept(p, k), 0u);
  for (void* b : v) sb_msg_pool_put(p, b, k);
  EXPECT_EQ(sb_msg_pool_kept(p, k), 2u);
  v.clear();
  for (int i = 0; i < 3; i++) v.push_back(sb_msg_pool_get(p, 2000, &k));
  EXPECT_EQ(sb_msg_pool_kept(p, k), 0u);
  for (void* b : v) sb_msg_pool_put(p, b, k);
  sb_msg_pool_free(p);
}

TEST(MsgPool, ManyThreadsNeverShareABlock) {
  sb_msg_pool* p = sb_msg_pool_new(1 << 20);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([&, t] {
      std::vector<std::pair<void*, uint8_t>> held;
      for (int i = 0; i < 20000; i++) {
        uint8_t k;
        size_t size = 600 + (size_t)((i * 7 + t) % 3000);
        auto* b = static_cast<unsigned char*>(sb_msg_pool_get(p, size, &k));
        memset(b + 64, t + 1, size - 64);  // the first bytes hold the free-list link
        held.emplace_back(b, k);
        if (held.size() > 8 || i % 5 == 0) {
          auto [blk, kk] = held.front();
          auto* c = static_cast<unsigned char*>(blk);
          if (c[64] != t + 1 || c[100] != t + 1) bad++;  // someone else wrote here
          sb_msg_pool_put(p, blk, kk);
          held.erase(held.begin());
        }
      }
      for (auto [blk, kk] : held) sb_msg_pool_put(p, blk, kk);
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
  sb_msg_pool_free(p);
}
