// engine/tls.c without sockets: a client and a server handing each other ciphertext
// through their memory buffers, as the worker and the sink do through their rings.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

extern "C" {
#include "smtpbulk.h"
#include "tls.h"
}

#include "tls_peers.h"

using sbtest::test_certs;

namespace {

class TlsPair : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(test_certs().ok) << test_certs().error;
    ASSERT_EQ(sbtest::test_tls_contexts(&server_ctx_, &client_ctx_), 0);
  }
  void TearDown() override {
    sb_tls_free(&cl_);
    sb_tls_free(&sv_);
    sb_tls_ctx_free(server_ctx_);
    sb_tls_ctx_free(client_ctx_);
    sb_tls_thread_end();
  }
  static void shuttle(sb_tls* from, sb_tls* to, size_t step = 0) {
    const char* p;
    size_t n;
    while ((n = sb_tls_outgoing(from, &p)) > 0) {
      size_t k = step && step < n ? step : n;  // a socket may take part of it
      ASSERT_EQ(sb_tls_push(to, p, k), 0);
      sb_tls_sent(from, k);
    }
  }
  // Runs the handshake; returns the client's result (1 up, or its error).
  int handshake(const char* name, int verify, WOLFSSL_SESSION* resume = nullptr) {
    EXPECT_EQ(sb_tls_client(&cl_, client_ctx_, name, verify, resume), 0);
    EXPECT_EQ(sb_tls_server(&sv_, server_ctx_), 0);
    int a = 0, b = 0;
    for (int round = 0; round < 16 && !(a == 1 && b == 1); round++) {
      a = sb_tls_handshake(&cl_);
      if (a < 0) return a;
      shuttle(&cl_, &sv_, 7);  // in small pieces: records split across pushes
      b = sb_tls_handshake(&sv_);
      if (b < 0) return b;
      shuttle(&sv_, &cl_, 7);
    }
    return a;
  }
  std::string read_all(sb_tls* t) {
    std::string out;
    char buf[4096];
    int n;
    while ((n = sb_tls_read(t, buf, sizeof(buf))) > 0) out.append(buf, (size_t)n);
    last_read_ = n;
    return out;
  }
  WOLFSSL_CTX *server_ctx_ = nullptr, *client_ctx_ = nullptr;
  sb_tls cl_{}, sv_{};
  int last_read_ = 0;
};

}  // namespace

TEST_F(TlsPair, VerifiedHandshakeThenDataBothWays) {
  ASSERT_EQ(handshake("localhost", 1), 1);
  EXPECT_STREQ(sb_tls_version(&cl_), "TLSv1.3");
  // ChaCha20 first: this wolfSSL has no AES-NI (see cipher_list in engine/tls.c).
  EXPECT_NE(std::string(sb_tls_cipher(&cl_)).find("CHACHA20"), std::string::npos);
  std::string big(100000, 'x');  // larger than a record, and than one outbox swap
  for (size_t i = 0; i < big.size(); i += 997) big[i] = (char)('a' + i % 26);
  iovec v[2] = {{(void*)"EHLO c\r\n", 8}, {(void*)big.data(), big.size()}};
  ASSERT_EQ(sb_tls_writev(&cl_, v, 2), (long)(8 + big.size()));
  shuttle(&cl_, &sv_, 1500);
  EXPECT_EQ(read_all(&sv_), "EHLO c\r\n" + big);
  EXPECT_EQ(last_read_, 0);  // more input needed, not an error
  iovec r = {(void*)"250 ok\r\n", 8};
  ASSERT_EQ(sb_tls_writev(&sv_, &r, 1), 8);
  shuttle(&sv_, &cl_);
  EXPECT_EQ(read_all(&cl_), "250 ok\r\n");
}

TEST_F(TlsPair, SmallPiecesShareARecord) {
  ASSERT_EQ(handshake("localhost", 1), 1);
  read_all(&cl_);
  std::vector<iovec> v(50, iovec{(void*)"RCPT TO:<", 9});  // 50 pipelined pieces
  ASSERT_EQ(sb_tls_writev(&cl_, v.data(), (int)v.size()), 450);
  // One record: 450 bytes + 22 of header and tag (+1 content type). A record per
  // piece would be 50 x 32 = 1,600.
  EXPECT_LT(sb_tls_unsent(&cl_), 500u);
  shuttle(&cl_, &sv_);
  std::string want;
  for (int i = 0; i < 50; i++) want += "RCPT TO:<";
  EXPECT_EQ(read_all(&sv_), want);
}

TEST_F(TlsPair, ServerWithoutX25519StillConnects) {
  int p256[] = {WOLFSSL_ECC_SECP256R1};  // we offer X25519 first: it asks again
  ASSERT_EQ(wolfSSL_CTX_set_groups(server_ctx_, p256, 1), WOLFSSL_SUCCESS);
  ASSERT_EQ(handshake("localhost", 1), 1);
  EXPECT_STREQ(wolfSSL_get_curve_name(cl_.ssl), "SECP256R1");
}

TEST_F(TlsPair, UnknownCaIsACertificateError) {
  sb_tls_ctx_free(client_ctx_);
  sb_tls_ctx_cfg c{};
  c.load_trust = 1;
  c.ca_file = test_certs().other_ca.c_str();
  ASSERT_EQ(sb_tls_ctx_new(&c, &client_ctx_, nullptr, 0), 0);
  EXPECT_EQ(handshake("localhost", 1), SMTPBULK_ECERT);
  char why[200];
  sb_tls_describe(cl_.wolf_err, why, sizeof(why));
  EXPECT_NE(std::string(why), "");
}

TEST_F(TlsPair, WrongNameIsACertificateErrorOnlyWhenVerifying) {
  EXPECT_EQ(handshake("mail.example.org", 1), SMTPBULK_ECERT);
  sb_tls_free(&cl_);
  sb_tls_free(&sv_);
  EXPECT_EQ(handshake("mail.example.org", 0), 1);
}

TEST_F(TlsPair, SessionResumes) {
  ASSERT_EQ(handshake("localhost", 1), 1);
  read_all(&cl_);  // the TLS 1.3 ticket arrives after the handshake
  WOLFSSL_SESSION* s = sb_tls_session(&cl_);
  ASSERT_NE(s, nullptr);
  EXPECT_FALSE(sb_tls_resumed(&cl_));
  sb_tls_free(&cl_);
  sb_tls_free(&sv_);
  ASSERT_EQ(handshake("localhost", 1, s), 1);
  EXPECT_TRUE(sb_tls_resumed(&cl_));
  sb_tls_session_free(s);
}

TEST_F(TlsPair, PeerGoneMidHandshakeIsATlsError) {
  ASSERT_EQ(sb_tls_client(&cl_, client_ctx_, "localhost", 1, nullptr), 0);
  EXPECT_EQ(sb_tls_handshake(&cl_), 0);  // ClientHello out, waiting
  cl_.peer_closed = 1;                    // EOF instead of a ServerHello
  EXPECT_EQ(sb_tls_handshake(&cl_), SMTPBULK_ETLS);
}

TEST_F(TlsPair, CloseNotifyEndsReading) {
  ASSERT_EQ(handshake("localhost", 1), 1);
  sb_tls_close_notify(&sv_);
  shuttle(&sv_, &cl_);
  read_all(&cl_);
  EXPECT_EQ(last_read_, SMTPBULK_ECLOSED);
}

TEST_F(TlsPair, IdleBuffersAreGivenBack) {
  ASSERT_EQ(handshake("localhost", 1), 1);
  read_all(&cl_);
  sb_tls_trim(&cl_, 0, 0);
  EXPECT_EQ(cl_.in.p, nullptr);
  EXPECT_EQ(cl_.out.p, nullptr);
  EXPECT_EQ(cl_.pend.p, nullptr);
  iovec r = {(void*)"NOOP\r\n", 6};  // and they come back when needed
  ASSERT_EQ(sb_tls_writev(&cl_, &r, 1), 6);
  shuttle(&cl_, &sv_);
  EXPECT_EQ(read_all(&sv_), "NOOP\r\n");
}

TEST(TlsConfig, BadFilesAreSaidClearly) {
  ASSERT_TRUE(test_certs().ok) << test_certs().error;
  WOLFSSL_CTX* ctx = nullptr;
  char why[300];
  sb_tls_ctx_cfg s{};
  s.server = 1;
  s.cert_file = test_certs().cert.c_str();
  s.key_file = test_certs().client_key.c_str();  // another certificate's key
  EXPECT_EQ(sb_tls_ctx_new(&s, &ctx, why, sizeof(why)), SMTPBULK_ETLSCONFIG);
  EXPECT_NE(std::string(why).find("does not match"), std::string::npos) << why;
  s.key_file = "/nonexistent.key";
  EXPECT_EQ(sb_tls_ctx_new(&s, &ctx, why, sizeof(why)), SMTPBULK_ETLSCONFIG);
  EXPECT_NE(std::string(why).find("/nonexistent.key"), std::string::npos) << why;
  sb_tls_ctx_cfg cc{};  // a client certificate with the server's key
  cc.cert_file = test_certs().client_cert.c_str();
  cc.key_file = test_certs().key.c_str();
  EXPECT_EQ(sb_tls_ctx_new(&cc, &ctx, why, sizeof(why)), SMTPBULK_ETLSCONFIG);
  EXPECT_NE(std::string(why).find("does not match"), std::string::npos) << why;
  cc.key_file = test_certs().client_key.c_str();  // and with its own: fine
  ASSERT_EQ(sb_tls_ctx_new(&cc, &ctx, why, sizeof(why)), 0);
  sb_tls_ctx_free(ctx);
  ctx = nullptr;
  sb_tls_ctx_cfg c{};
  c.load_trust = 1;
  c.ca_file = "/nonexistent-ca.pem";
  EXPECT_EQ(sb_tls_ctx_new(&c, &ctx, why, sizeof(why)), SMTPBULK_ETLSCONFIG);
  EXPECT_NE(std::string(why).find("/nonexistent-ca.pem"), std::string::npos) << why;
  EXPECT_EQ(ctx, nullptr);
}
