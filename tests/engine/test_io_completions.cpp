// engine/io.h's promise, checked on the backend itself: every operation a backend
// accepted completes exactly once, cancelled ones included, and one it refused owes
// nothing. The worker's teardown waits for every operation to come back, so a lost
// completion hangs it.
//
// The epoll backend keeps completions in a FIFO it grows with realloc. This binary is
// linked with -Wl,--wrap=realloc (tests/CMakeLists.txt), so the library's realloc calls
// come through __wrap_realloc below and a test can make them fail: no hook in the
// library, and every other caller passes straight through.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <vector>

#include "engine_helpers.h"

extern "C" {
#include "io.h"

void* __real_realloc(void* p, size_t n);
// Only the thread that armed it fails: a test's own thread.
static thread_local bool fail_realloc;
void* __wrap_realloc(void* p, size_t n) {
  if (fail_realloc) return nullptr;
  return __real_realloc(p, n);
}
}

using namespace sbtest;

namespace {

struct ReallocFails {
  ReallocFails() { fail_realloc = true; }
  ~ReallocFails() { fail_realloc = false; }
};

// Enough descriptors for the test, or a reason to skip.
bool have_fds(rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
  if (rl.rlim_cur >= need) return true;
  if (rl.rlim_max < need) return false;
  rl.rlim_cur = need;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

struct Pair {
  int fd[2] = {-1, -1};
  char buf[16];
  ~Pair() {
    for (int f : fd)
      if (f >= 0) close(f);
  }
};

std::vector<Pair> make_pairs(size_t n) {
  std::vector<Pair> v(n);
  for (auto& p : v) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p.fd) != 0)
      ADD_FAILURE() << "socketpair: " << strerror(errno);
  }
  return v;
}

// Fill fd's send buffer so that a send on it waits for the (silent) peer.
void fill_send_buffer(int fd) {
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  char junk[4096] = {};
  while (send(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0) {
  }
}

int tcp_listener(sockaddr_in* addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof(a);
  if (fd < 0 || bind(fd, (sockaddr*)&a, sizeof(a)) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (sockaddr*)&a, &l) != 0) {
    ADD_FAILURE() << "listener: " << strerror(errno);
    return -1;
  }
  if (addr) *addr = a;
  return fd;
}

// Collect completions until `expected` came or nothing comes for a while; then make sure
// nothing else follows. Returns token -> times completed; results go to *res.
std::map<uint64_t, int> drain(const sb_io_backend* be, sb_io* io, size_t expected,
                              std::map<uint64_t, int>* res = nullptr) {
  std::map<uint64_t, int> seen;
  size_t got = 0;
  sb_cqe cqes[32];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got < expected && std::chrono::steady_clock::now() < deadline) {
    int n = be->wait(io, cqes, 32, 200);
    EXPECT_GE(n, 0);
    for (int i = 0; i < n; i++) {
      seen[cqes[i].token]++;
      if (res) (*res)[cqes[i].token] = cqes[i].res;
      got++;
    }
  }
  int n = be->wait(io, cqes, 32, 50);  // and no more than that
  for (int i = 0; i < n; i++) seen[cqes[i].token]++;
  return seen;
}

void expect_each_once(const std::map<uint64_t, int>& seen, const std::vector<uint64_t>& tokens) {
  EXPECT_EQ(seen.size(), tokens.size());
  for (uint64_t t : tokens) {
    auto it = seen.find(t);
    if (it == seen.end())
      ADD_FAILURE() << "token " << t << " never completed";
    else
      EXPECT_EQ(it->second, 1) << "token " << t;
  }
  for (auto& [t, count] : seen)
    if (std::find(tokens.begin(), tokens.end(), t) == tokens.end())
      ADD_FAILURE() << "token " << t << " completed but was never accepted";
}

}  // namespace

// Hundreds of operations of every kind in flight at once, some already complete and
// some waiting, none reaped, then cancel_fd on every fd: each comes back exactly once.
TEST(IoCompletions, EveryOperationCompletesOnceAfterCancel) {
  const size_t kPairs = 240;
  if (!have_fds(kPairs * 2 + 256)) GTEST_SKIP() << "RLIMIT_NOFILE too low";
  const sb_io_backend* be = nullptr;
  sb_io* io = nullptr;
  char desc[64];
  ASSERT_EQ(sb_io_open(test_backend(), 64, &be, &io, desc, sizeof(desc)), 0);

  auto pairs = make_pairs(kPairs);
  std::vector<msghdr> mh(kPairs);
  std::vector<iovec> iov(kPairs);
  static char payload[65536];
  std::vector<uint64_t> tokens;
  std::vector<int> fds;
  uint64_t next = 1;
  for (size_t i = 0; i < kPairs; i++) {
    Pair& p = pairs[i];
    if (i % 3 == 0) ASSERT_EQ(write(p.fd[1], "x", 1), 1);  // this receive is done at once
    ASSERT_EQ(be->recv(io, p.fd[0], p.buf, sizeof(p.buf), next), 0);
    tokens.push_back(next++);
    if (i % 2 == 0) {  // and this send waits
      fill_send_buffer(p.fd[0]);
      iov[i] = {payload, sizeof(payload)};
      mh[i] = {};
      mh[i].msg_iov = &iov[i];
      mh[i].msg_iovlen = 1;
      ASSERT_EQ(be->sendmsg(io, p.fd[0], &mh[i], next), 0);
      tokens.push_back(next++);
    }
    fds.push_back(p.fd[0]);
  }
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  uint64_t val = 0;
  ASSERT_EQ(be->read_eventfd(io, efd, &val, next), 0);
  tokens.push_back(next++);
  fds.push_back(efd);
  int idle = tcp_listener(nullptr);  // nobody connects: the accept waits
  ASSERT_GE(idle, 0);
  ASSERT_EQ(be->accept(io, idle, next), 0);
  tokens.push_back(next++);
  fds.push_back(idle);
  sockaddr_in to{};
  int lfd = tcp_listener(&to);
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  ASSERT_GE(cfd, 0);
  ASSERT_EQ(be->connect(io, cfd, (const sockaddr*)&to, sizeof(to), next), 0);
  tokens.push_back(next++);
  fds.push_back(cfd);

  for (int fd : fds) ASSERT_EQ(be->cancel_fd(io, fd), 0);
  expect_each_once(drain(be, io, tokens.size()), tokens);

  be->destroy(io);
  close(efd);
  close(idle);
  close(lfd);
  close(cfd);
}

// With no memory to grow its completion FIFO, the epoll backend refuses submissions
// (-ENOMEM) rather than accept operations whose completions it could not queue: those
// that completed at once and those that cancel_fd ends. Every accepted one completes.
TEST(IoCompletions, EpollRefusesWhatItCouldNotComplete) {
  if (test_backend() == SMTPBULK_BACKEND_IO_URING) GTEST_SKIP() << "epoll's own FIFO";
  const size_t kPairs = 200;  // well past the FIFO's first 64 entries
  if (!have_fds(kPairs * 4 + 256)) GTEST_SKIP() << "RLIMIT_NOFILE too low";
  sb_io* io = nullptr;
  char desc[64];
  const sb_io_backend* be = &sb_epoll_backend;
  ASSERT_EQ(be->create(&io, 64, desc, sizeof(desc)), 0);
  auto ready = make_pairs(kPairs);  // data waiting: a receive completes at once
  auto idle = make_pairs(kPairs);   // nothing to read: a receive waits
  for (auto& p : ready) ASSERT_EQ(write(p.fd[1], "x", 1), 1);

  // Let the backend size its fd table for every fd while memory is still there, so
  // that the failure below meets the completion FIFO and nothing else.
  int top = 0;
  for (auto* v : {&ready, &idle})
    for (auto& p : *v) top = std::max(top, p.fd[0]);
  char b[1];
  ASSERT_EQ(be->recv(io, top, b, 1, 9999), 0);
  ASSERT_EQ(be->cancel_fd(io, top), 0);
  ASSERT_EQ(drain(be, io, 1).size(), 1u);

  // Operations that complete on submission.
  std::vector<uint64_t> accepted;
  size_t refused = 0;
  {
    ReallocFails no_memory;
    for (size_t i = 0; i < kPairs; i++) {
      int rc = be->recv(io, ready[i].fd[0], ready[i].buf, sizeof(ready[i].buf), 1000 + i);
      if (rc == 0)
        accepted.push_back(1000 + i);
      else if (rc == -ENOMEM)
        refused++;
      else
        ADD_FAILURE() << "recv: " << rc;
    }
  }
  EXPECT_GT(refused, 0u) << "no submission refused: did the FIFO not have to grow?";
  std::map<uint64_t, int> res;
  expect_each_once(drain(be, io, accepted.size(), &res), accepted);
  for (auto& [t, r] : res) EXPECT_EQ(r, 1) << "token " << t;

  // Operations that wait, then are cancelled.
  accepted.clear();
  refused = 0;
  {
    ReallocFails no_memory;
    for (size_t i = 0; i < kPairs; i++) {
      int rc = be->recv(io, idle[i].fd[0], idle[i].buf, sizeof(idle[i].buf), 2000 + i);
      if (rc == 0)
        accepted.push_back(2000 + i);
      else if (rc == -ENOMEM)
        refused++;
      else
        ADD_FAILURE() << "recv: " << rc;
    }
    for (auto& p : idle) ASSERT_EQ(be->cancel_fd(io, p.fd[0]), 0);
  }
  EXPECT_GT(refused, 0u);
  res.clear();
  expect_each_once(drain(be, io, accepted.size(), &res), accepted);
  for (auto& [t, r] : res) EXPECT_EQ(r, -ECANCELED) << "token " << t;

  // A refused submission left nothing behind: with memory back, the same one is taken.
  Pair& last = idle.back();
  ASSERT_EQ(be->recv(io, last.fd[0], last.buf, sizeof(last.buf), 3000), 0);
  ASSERT_EQ(be->cancel_fd(io, last.fd[0]), 0);
  expect_each_once(drain(be, io, 1), {3000});
  be->destroy(io);
}
