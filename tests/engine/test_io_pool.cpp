// The io_uring backend's pooled multishot receive, driven directly: the data arrives
// intact and in order, a pool that runs dry ends the receive with -ENOBUFS (not an
// error the worker would close a connection for), and it can be armed again.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "engine_helpers.h"

extern "C" {
#include "io.h"
}

using namespace sbtest;

TEST(IoPool, MultishotReceiveSurvivesADryPool) {
  if (test_backend() != SMTPBULK_BACKEND_IO_URING) GTEST_SKIP() << "io_uring only";
  const sb_io_backend* be = nullptr;
  sb_io* io = nullptr;
  char desc[64];
  ASSERT_EQ(sb_io_open(SMTPBULK_BACKEND_IO_URING, 64, &be, &io, desc, sizeof(desc)), 0);
  ASSERT_NE(be->recv_multi, nullptr);
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);

  // More than the whole pool can hold (1024 buffers of 2 KB), so holding on to every
  // buffer must run it dry.
  const size_t kTotal = 4u << 20;
  std::thread writer([&] {
    std::vector<char> chunk(65536);
    size_t sent = 0;
    while (sent < kTotal) {
      for (size_t i = 0; i < chunk.size(); i++) chunk[i] = (char)((sent + i) % 251);
      ssize_t n = write(sv[1], chunk.data(), std::min(chunk.size(), kTotal - sent));
      if (n <= 0) break;
      sent += (size_t)n;
    }
  });

  std::vector<uint16_t> held;
  size_t got = 0, bad = 0;
  int enobufs = 0, armed = 0;
  bool busy = false;
  sb_cqe cqes[64];
  for (int round = 0; round < 100000 && got < kTotal; round++) {
    if (!busy) {
      ASSERT_EQ(be->recv_multi(io, sv[0], 7), 0);
      busy = true;
      armed++;
    }
    int n = be->wait(io, cqes, 64, 5000);
    ASSERT_GT(n, 0) << "no completion within 5 s";
    for (int i = 0; i < n; i++) {
      ASSERT_EQ(cqes[i].token, 7u);
      if (cqes[i].res > 0) {
        ASSERT_NE(cqes[i].buf, nullptr);
        for (int k = 0; k < cqes[i].res; k++)
          bad += cqes[i].buf[k] != (char)((got + (size_t)k) % 251);
        got += (size_t)cqes[i].res;
        held.push_back(cqes[i].bid);
      } else if (cqes[i].res == -ENOBUFS) {
        enobufs++;
        EXPECT_FALSE(cqes[i].more);
      } else {
        ADD_FAILURE() << "receive ended: " << cqes[i].res;
      }
      if (!cqes[i].more) busy = false;
    }
    if (!busy) {  // only now give the buffers back, as a slow consumer would
      for (uint16_t b : held) be->buf_return(io, b);
      held.clear();
    }
  }
  writer.join();
  EXPECT_EQ(got, kTotal);
  EXPECT_EQ(bad, 0u);
  EXPECT_GE(enobufs, 1);
  EXPECT_GE(armed, 2);  // armed again after the pool ran dry
  close(sv[0]);
  close(sv[1]);
  be->destroy(io);
}
