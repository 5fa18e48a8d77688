// engine/transport.c without sockets: two endpoints (a client-like one that takes every
// byte, and a server-like one with a small input buffer) talk through a pair of
// transports, plaintext and TLS, the test shuttling the wire bytes between them as a
// ring would — in small pieces, so records and replies split across receives.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

extern "C" {
#include "smtpbulk.h"
#include "tls.h"
#include "transport.h"
}

#include "tls_peers.h"

using sbtest::test_certs;

namespace {

// A protocol end: sends what is in `out`, keeps what arrives in `in`. With a room
// limit it takes input only as far as its buffer allows (like the sink's).
struct End {
  std::string out;
  size_t sent = 0;
  std::string in;
  size_t room_limit = SIZE_MAX;  // bytes it can hold unconsumed
  size_t held = 0;               // received but not consumed yet
  char buf[4096];
  bool open = true, finished = false, up = false;
  int taken_calls = 0;

  void consume() { held = 0; }
};

int pending(void* ep, iovec* iov, int max) {
  auto* e = static_cast<End*>(ep);
  if (max < 1 || e->sent >= e->out.size()) return 0;
  iov[0].iov_base = &e->out[e->sent];
  iov[0].iov_len = e->out.size() - e->sent;
  return 1;
}
void taken(void* ep, size_t n) {
  auto* e = static_cast<End*>(ep);
  e->sent += n;
  e->taken_calls++;
}
char* space(void* ep, size_t* cap) {
  auto* e = static_cast<End*>(ep);
  *cap = sizeof(e->buf);
  return e->buf;
}
void arrived(void* ep, size_t n) {
  auto* e = static_cast<End*>(ep);
  e->in.append(e->buf, n);
}
size_t room(void* ep) {
  auto* e = static_cast<End*>(ep);
  return e->room_limit == SIZE_MAX ? SIZE_MAX : e->room_limit - e->held;
}
void feed(void* ep, const char* p, size_t n) {
  auto* e = static_cast<End*>(ep);
  e->in.append(p, n);
  if (e->room_limit != SIZE_MAX) e->held += n;
}
int is_open(void* ep) { return static_cast<End*>(ep)->open; }
int finished(void* ep) { return static_cast<End*>(ep)->finished; }
void tls_up(void* ep, const sb_tls*) { static_cast<End*>(ep)->up = true; }

const sb_endpoint kEnd = {pending, taken, space, arrived, room, feed, is_open, finished, tls_up};

// Move what `from` wants on the wire into `to`, k bytes per "receive".
int shuttle(sb_transport* from, sb_transport* to, size_t k) {
  int moved = 0;
  for (int guard = 0; guard < 10000; guard++) {
    int frc = from->ops->flush(from);
    if (frc < 0) return frc;
    iovec iov[8];
    int n = from->ops->wire(from, iov, 8);
    if (n <= 0) break;
    const char* p = static_cast<const char*>(iov[0].iov_base);
    size_t len = std::min(iov[0].iov_len, k);
    // Half the time through the receive space, half as a pooled buffer.
    size_t cap = 0;
    char* dst = to->ops->recv_space(to, &cap);
    int rc;
    if ((guard & 1) && dst && cap) {
      len = std::min(len, cap);
      memcpy(dst, p, len);
      rc = to->ops->bytes_in(to, nullptr, len);
    } else {
      rc = to->ops->bytes_in(to, p, len);
    }
    if (rc < 0) return rc;
    from->ops->sent(from, len);
    moved += (int)len;
  }
  return moved;
}

class TransportPair : public ::testing::Test {
 protected:
  void SetUp() override {
    sb_transport_plain(&cx_, &kEnd, &ce_);
    sb_transport_plain(&sx_, &kEnd, &se_);
  }
  void TearDown() override {
    sb_transport_close(&cx_);
    sb_transport_close(&sx_);
    sb_tls_ctx_free(server_ctx_);
    sb_tls_ctx_free(client_ctx_);
    sb_tls_thread_end();
  }
  void tls() {
    ASSERT_TRUE(test_certs().ok) << test_certs().error;
    ASSERT_EQ(sbtest::test_tls_contexts(&server_ctx_, &client_ctx_), 0);
    ASSERT_EQ(sb_transport_tls_client(&cx_, client_ctx_, "localhost", 1, nullptr, cscratch_,
                                      sizeof(cscratch_)),
              0);
    ASSERT_EQ(sb_transport_tls_server(&sx_, server_ctx_, sscratch_, sizeof(sscratch_)), 0);
    for (int round = 0; round < 50 && !(ce_.up && se_.up); round++) {
      ASSERT_GE(shuttle(&cx_, &sx_, 100), 0);
      ASSERT_GE(shuttle(&sx_, &cx_, 100), 0);
    }
    ASSERT_TRUE(ce_.up && se_.up);
  }
  End ce_, se_;
  sb_transport cx_{}, sx_{};
  WOLFSSL_CTX *server_ctx_ = nullptr, *client_ctx_ = nullptr;
  char cscratch_[16384], sscratch_[16384];
};

TEST_F(TransportPair, PlaintextPassesBytesAsTheyAre) {
  EXPECT_FALSE(sb_transport_secure(&cx_));
  ce_.out = "EHLO client.test\r\n";
  ASSERT_EQ(shuttle(&cx_, &sx_, 5), (int)ce_.out.size());
  EXPECT_EQ(se_.in, ce_.out);
  EXPECT_EQ(ce_.sent, ce_.out.size());
  EXPECT_EQ(cx_.ops->unsent(&cx_), 0u);
  EXPECT_EQ(cx_.ops->eof(&cx_), SMTPBULK_ECLOSED);
}

TEST_F(TransportPair, PlaintextRefusesAPooledBufferTheEndpointCannotTakeWhole) {
  se_.room_limit = 4;
  EXPECT_EQ(sx_.ops->bytes_in(&sx_, "MAIL FROM", 9), -ENOBUFS);
  EXPECT_EQ(se_.in, "");
}

TEST_F(TransportPair, TlsCarriesBothWaysInSmallPieces) {
  tls();
  EXPECT_TRUE(sb_transport_secure(&cx_));
  ce_.out = std::string(100000, 'x') + "\r\n.\r\n";  // several records
  se_.out = "250 2.0.0 ok\r\n";
  ASSERT_GE(shuttle(&cx_, &sx_, 1000), 0);
  ASSERT_GE(shuttle(&sx_, &cx_, 3), 0);
  EXPECT_EQ(se_.in, ce_.out);
  EXPECT_EQ(ce_.in, se_.out);
}

TEST_F(TransportPair, TlsInputWaitsForTheEndpointsRoomAndResumes) {
  tls();
  se_.room_limit = 10;  // the server end takes 10 bytes, then must consume
  ce_.out = "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\n";
  ASSERT_GE(shuttle(&cx_, &sx_, 4096), 0);
  EXPECT_EQ(se_.in, ce_.out.substr(0, 10)) << "no more than it has room for";
  std::string got;
  for (int i = 0; i < 20 && se_.in.size() < ce_.out.size(); i++) {
    se_.consume();
    ASSERT_EQ(sx_.ops->resume(&sx_), 0);
  }
  EXPECT_EQ(se_.in, ce_.out) << "nothing lost while it waited";
}

TEST_F(TransportPair, TlsEncryptsNoFurtherAheadThanItsBound) {
  tls();
  ce_.out = std::string(4u << 20, 'y');  // 4 MB waiting at once
  ASSERT_EQ(cx_.ops->flush(&cx_), 0);
  EXPECT_LT(ce_.sent, ce_.out.size()) << "the body is not copied whole";
  EXPECT_GT(cx_.ops->unsent(&cx_), 0u);
  EXPECT_LE(cx_.ops->unsent(&cx_), (256u << 10) + 16384u + 1024u);
  ASSERT_GE(shuttle(&cx_, &sx_, 65536), 0);  // as the socket takes it, more is encrypted
  EXPECT_EQ(se_.in.size(), ce_.out.size());
}

TEST_F(TransportPair, TlsSaysCloseNotifyBehindTheLastWords) {
  tls();
  ce_.out = "QUIT\r\n";
  ce_.finished = true;
  // The server end reads the QUIT, then the close_notify behind it: the end.
  EXPECT_EQ(shuttle(&cx_, &sx_, 4096), SMTPBULK_ECLOSED);
  EXPECT_EQ(se_.in, "QUIT\r\n");
}

TEST_F(TransportPair, PeerClosingRightAfterTheHandshakeIsATlsErrorWithAHint) {
  tls();
  // The server end closes the socket before any application data.
  int rc = cx_.ops->eof(&cx_);
  EXPECT_EQ(rc, SMTPBULK_ETLS);
  char why[256];
  sb_transport_describe(&cx_, why, sizeof(why));
  EXPECT_NE(std::string(why).find("right after the TLS handshake"), std::string::npos) << why;
}

TEST_F(TransportPair, AHandshakeWithTheWrongNameFailsWithACertificateError) {
  ASSERT_TRUE(test_certs().ok) << test_certs().error;
  ASSERT_EQ(sbtest::test_tls_contexts(&server_ctx_, &client_ctx_), 0);
  ASSERT_EQ(sb_transport_tls_client(&cx_, client_ctx_, "mail.example.org", 1, nullptr,
                                    cscratch_, sizeof(cscratch_)),
            0);
  ASSERT_EQ(sb_transport_tls_server(&sx_, server_ctx_, sscratch_, sizeof(sscratch_)), 0);
  int rc = 0;
  for (int round = 0; round < 50 && rc >= 0; round++) {
    rc = shuttle(&cx_, &sx_, 100);
    if (rc >= 0) rc = shuttle(&sx_, &cx_, 100);
  }
  EXPECT_EQ(rc, SMTPBULK_ECERT);
  char why[256];
  sb_transport_describe(&cx_, why, sizeof(why));
  EXPECT_NE(std::string(why).find("TLS handshake failed"), std::string::npos) << why;
}

}  // namespace
