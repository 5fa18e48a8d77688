// Peers and material for the TLS and AUTH tests: a throwaway CA and certificates made
// with the openssl command line (once per process, removed at exit), and aiosmtpd
// (python3-aiosmtpd) run as a child process on a free 127.0.0.1 port.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct WOLFSSL_CTX;

namespace sbtest {

struct TestCerts {
  bool ok = false;
  std::string error;
  std::string dir;
  std::string ca;        // the CA the tests trust
  std::string other_ca;  // a CA nobody signed our server with (untrusted)
  std::string cert, key; // CN=localhost, SAN DNS:localhost and IP:127.0.0.1, by ca
  std::string expired;   // the same name and key, by ca, expired yesterday
  std::string client_cert, client_key;  // a client certificate, by ca
};

// Made on first use; later calls return the same files.
const TestCerts& test_certs();

// In a test: fail it (not skip) when the certificates could not be made.
#define REQUIRE_CERTS()                                 \
  do {                                                  \
    if (!sbtest::test_certs().ok) FAIL() << sbtest::test_certs().error; \
  } while (0)

// A server context with the test certificate and a client context trusting the test
// CA (engine/tls.h); 0, or the first failure. The caller frees both.
int test_tls_contexts(struct WOLFSSL_CTX** server, struct WOLFSSL_CTX** client);

// aiosmtpd, started by the constructor (bounded wait until it accepts connections),
// stopped by the destructor. args: the options of tests/support/aiosmtpd_peer.py
// after --port and --events (with "--unix PATH" it listens there; port() is 0).
class AioSmtpd {
 public:
  explicit AioSmtpd(const std::vector<std::string>& args);
  ~AioSmtpd();
  AioSmtpd(const AioSmtpd&) = delete;
  AioSmtpd& operator=(const AioSmtpd&) = delete;
  bool ok() const { return pid_ > 0; }
  std::string error() const { return error_; }
  uint16_t port() const { return port_; }
  // The lines the server wrote so far ("MAIL tls=1 from=...", "AUTH PLAIN ok tls=1", ...).
  std::vector<std::string> events() const;

 private:
  int pid_ = -1;
  uint16_t port_ = 0;
  std::string events_path_, error_;
};

}  // namespace sbtest
