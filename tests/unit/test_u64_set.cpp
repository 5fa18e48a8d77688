// The key set send uses for its ids and Redis entries in flight: checked against
// std::unordered_set over random adds, lookups and deletions (backward-shift deletion
// must keep every other key findable), across growth.
#include <gtest/gtest.h>

#include <random>
#include <unordered_set>

extern "C" {
#include "u64_set.h"
}

TEST(U64Set, AgreesWithAReferenceSetThroughAddsAndDeletes) {
  struct u64_set s = {};
  std::unordered_set<uint64_t> ref;
  std::mt19937_64 rng(12345);
  for (int i = 0; i < 200000; i++) {
    // Few distinct keys, many collisions in the low bits: long runs to shift through.
    uint64_t k = ((rng() % 5000) << 20) + 1;
    switch (rng() % 3) {
      case 0:
        ASSERT_EQ(u64_set_add(&s, k), ref.insert(k).second ? 1 : 0);
        break;
      case 1:
        u64_set_del(&s, k);
        ref.erase(k);
        break;
      default:
        ASSERT_EQ(u64_set_has(&s, k) != 0, ref.count(k) != 0) << i;
    }
    ASSERT_EQ(s.used, ref.size());
  }
  for (uint64_t k : ref) ASSERT_TRUE(u64_set_has(&s, k));
  u64_set_free(&s);
  EXPECT_FALSE(u64_set_has(&s, 1));
  u64_set_del(&s, 1);  // an empty set: nothing to do
}
