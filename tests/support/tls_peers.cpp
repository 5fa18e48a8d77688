#include "tls_peers.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <mutex>

#include "scripted_peer.h"

extern "C" {
#include "tls.h"
}

#ifndef SB_TEST_SUPPORT_DIR
#error "SB_TEST_SUPPORT_DIR must name tests/support"
#endif

namespace sbtest {

namespace {

std::string g_cert_dir;

void remove_cert_dir() {
  if (!g_cert_dir.empty()) {
    std::string cmd = "rm -rf '" + g_cert_dir + "'";
    int rc = std::system(cmd.c_str());
    (void)rc;
  }
}

}  // namespace

const TestCerts& test_certs() {
  static TestCerts certs;
  static std::once_flag once;
  std::call_once(once, [] {
    char tmpl[] = "/tmp/smtpbulk-certs-XXXXXX";
    if (!mkdtemp(tmpl)) {
      certs.error = "mkdtemp failed";
      return;
    }
    g_cert_dir = certs.dir = tmpl;
    std::atexit(remove_cert_dir);
    // EC P-256 keys: quick to make. The server certificate names localhost and
    // 127.0.0.1; "expired" has the same name but ended yesterday (-days -1).
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    std::string script =
        "set -e; cd '" + certs.dir + "'\n"
        "openssl req -x509 " + ec + " -keyout ca.key -out ca.pem -days 2 "
        "  -subj '/CN=smtpbulk test CA'\n"
        "openssl req -x509 " + ec + " -keyout other.key -out other_ca.pem -days 2 "
        "  -subj '/CN=some other CA'\n"
        "openssl req " + ec + " -keyout srv.key -out srv.csr -subj '/CN=localhost'\n"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext\n"
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "  -out srv.pem -days 2 -extfile ext\n"
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "  -out expired.pem -days -1 -extfile ext\n"
        "openssl req " + ec + " -keyout cli.key -out cli.csr -subj '/CN=smtpbulk client'\n"
        "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "  -out cli.pem -days 2\n";
    std::string cmd = "sh -c \"$(cat <<'SBEOF'\n" + script + "SBEOF\n)\" >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      certs.error = "openssl could not make the test certificates (is openssl installed?)";
      return;
    }
    certs.ca = certs.dir + "/ca.pem";
    certs.other_ca = certs.dir + "/other_ca.pem";
    certs.cert = certs.dir + "/srv.pem";
    certs.key = certs.dir + "/srv.key";
    certs.expired = certs.dir + "/expired.pem";
    certs.client_cert = certs.dir + "/cli.pem";
    certs.client_key = certs.dir + "/cli.key";
    certs.ok = true;
  });
  return certs;
}

AioSmtpd::AioSmtpd(const std::vector<std::string>& args) {
  const char* py = "/usr/bin/python3";
  std::string script = std::string(SB_TEST_SUPPORT_DIR) + "/aiosmtpd_peer.py";
  if (std::system("/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1") != 0) {
    error_ = "python3-aiosmtpd is missing: run scripts/setup-deps.sh";
    return;
  }
  char tmpl[] = "/tmp/smtpbulk-aiosmtpd-XXXXXX";
  int efd = mkstemp(tmpl);
  if (efd < 0) {
    error_ = "mkstemp failed";
    return;
  }
  close(efd);
  events_path_ = tmpl;
  std::string unix_path;  // "--unix PATH": it listens there, not on a port
  for (size_t i = 0; i + 1 < args.size(); i++)
    if (args[i] == "--unix") unix_path = args[i + 1];
  for (int attempt = 0; attempt < 3 && pid_ < 0; attempt++) {
    port_ = unix_path.empty() ? free_port() : 0;
    std::vector<std::string> a = {py, script, "--port", std::to_string(port_), "--events",
                                  events_path_};
    a.insert(a.end(), args.begin(), args.end());
    // Up to 10 s: python and asyncio start slowly on a busy machine.
    pid_ = spawn_listening_at(a, port_, unix_path, 500, /*quiet_stderr=*/true);
  }
  if (pid_ < 0) error_ = "aiosmtpd did not start";
}

AioSmtpd::~AioSmtpd() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    bool gone = false;
    for (int i = 0; i < 300 && !gone; i++) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_)
        gone = true;
      else
        usleep(10000);
    }
    if (!gone) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  if (!events_path_.empty()) unlink(events_path_.c_str());
}

std::vector<std::string> AioSmtpd::events() const {
  std::vector<std::string> out;
  std::ifstream f(events_path_);
  std::string line;
  while (std::getline(f, line)) out.push_back(line);
  return out;
}

int test_tls_contexts(WOLFSSL_CTX** server, WOLFSSL_CTX** client) {
  const TestCerts& c = test_certs();
  if (!c.ok) return -1;
  sb_tls_ctx_cfg s{};
  s.server = 1;
  s.cert_file = c.cert.c_str();
  s.key_file = c.key.c_str();
  int rc = sb_tls_ctx_new(&s, server, nullptr, 0);
  if (rc) return rc;
  sb_tls_ctx_cfg cl{};
  cl.load_trust = 1;
  cl.ca_file = c.ca.c_str();
  return sb_tls_ctx_new(&cl, client, nullptr, 0);
}

}  // namespace sbtest
