// The submission queue: FIFO, empty->non-empty signalling, many producers.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

extern "C" {
#include "queue.h"
}

namespace {
struct Item {
  sbq_node node;
  int producer;
  int seq;
};
Item* item_of(sbq_node* n) { return reinterpret_cast<Item*>(n); }
}  // namespace

TEST(Queue, FifoAndWasEmpty) {
  sbq* q;
  ASSERT_EQ(sbq_create(&q), 0);
  Item a{}, b{};
  sbq_node_init(&a.node);
  sbq_node_init(&b.node);
  EXPECT_TRUE(sbq_empty(q));
  EXPECT_EQ(sbq_enqueue(q, &a.node), 1);  // was empty: the consumer needs a wake-up
  EXPECT_EQ(sbq_enqueue(q, &b.node), 0);  // not empty: no wake-up needed
  sbq_node* out[4];
  int busy;
  ASSERT_EQ(sbq_dequeue(q, out, 4, &busy), 2u);
  EXPECT_EQ(out[0], &a.node);
  EXPECT_EQ(out[1], &b.node);
  EXPECT_TRUE(sbq_empty(q));
  EXPECT_EQ(sbq_enqueue(q, &a.node), 1);
  ASSERT_EQ(sbq_dequeue(q, out, 1, &busy), 1u);
  sbq_destroy(q);
}

TEST(Queue, ManyProducersNothingLostOrReordered) {
  sbq* q;
  ASSERT_EQ(sbq_create(&q), 0);
  const int kProducers = 4, kPer = 50000;
  std::vector<Item> items(kProducers * kPer);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; p++)
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPer; i++) {
        Item& it = items[p * kPer + i];
        it.producer = p;
        it.seq = i;
        sbq_node_init(&it.node);
        sbq_enqueue(q, &it.node);
      }
    });
  std::vector<int> next(kProducers, 0);
  int got = 0;
  for (int spins = 0; got < kProducers * kPer && spins < 100000000; spins++) {
    sbq_node* out[64];
    int busy;
    size_t n = sbq_dequeue(q, out, 64, &busy);
    for (size_t i = 0; i < n; i++) {
      Item* it = item_of(out[i]);
      ASSERT_EQ(it->seq, next[it->producer]) << "producer " << it->producer;
      next[it->producer]++;
      got++;
    }
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got, kProducers * kPer);
  sbq_destroy(q);
}
