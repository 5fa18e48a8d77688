#include "scripted_peer.h"

#include <cstdio>
#include <random>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>

namespace sbtest {

static int listen_on(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(*port);
  socklen_t l = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 || listen(fd, 512) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l) < 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// For a child process that binds the port itself, after we let it go. Not from the
// kernel's ephemeral range: a port 0 bind elsewhere (another test's in-process peer)
// or a client's source port could take it in between, and then the child fails to
// bind while our readiness probe connects to the intruder. Below that range only
// another free_port() call can pick the same number, and it tests the bind too.
uint16_t free_port() {
  unsigned lo = 32768;
  if (FILE* f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (fscanf(f, "%u", &lo) != 1) lo = 32768;
    fclose(f);
  }
  static thread_local std::mt19937 rng{std::random_device{}()};
  if (lo > 12000) {
    std::uniform_int_distribution<unsigned> pick(10000, lo - 1);
    for (int i = 0; i < 200; i++) {
      uint16_t p = static_cast<uint16_t>(pick(rng));
      int fd = listen_on(&p);
      if (fd >= 0) {
        close(fd);
        return p;
      }
    }
  }
  uint16_t p = 0;  // a narrow ephemeral range: fall back to the kernel's choice
  int fd = listen_on(&p);
  if (fd >= 0) close(fd);
  return p;
}

ScriptedPeer::ScriptedPeer(PeerScript script) : script_(std::move(script)) {
  listen_fd_ = listen_on(&port_);
  if (listen_fd_ >= 0) acceptor_ = std::thread([this] { accept_loop(); });
}

ScriptedPeer::~ScriptedPeer() { stop(); }

void ScriptedPeer::stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  {
    std::lock_guard<std::mutex> g(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : workers_)
    if (t.joinable()) t.join();
}

std::vector<std::string> ScriptedPeer::peers() {
  std::lock_guard<std::mutex> g(mu_);
  return peers_;
}

std::vector<std::string> ScriptedPeer::commands() {
  std::lock_guard<std::mutex> g(mu_);
  return commands_;
}

std::vector<std::string> ScriptedPeer::bodies() {
  std::lock_guard<std::mutex> g(mu_);
  return bodies_;
}

void ScriptedPeer::accept_loop() {
  while (!stopping_) {
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    int fd = accept4(listen_fd_, (sockaddr*)&from, &from_len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    // Bound every read: a test must never hang on a peer.
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    // Each reply goes out when it is decided: without this, Nagle holds the second
    // reply of a pipelined group until the client's delayed ACK (40 ms a message).
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> g(mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    int index = conns_++;
    fds_.push_back(fd);
    char addr[INET6_ADDRSTRLEN] = "?";
    if (from.ss_family == AF_INET)
      inet_ntop(AF_INET, &((sockaddr_in*)&from)->sin_addr, addr, sizeof(addr));
    else if (from.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &((sockaddr_in6*)&from)->sin6_addr, addr, sizeof(addr));
    peers_.push_back(addr);
    workers_.emplace_back([this, fd, index] { serve(fd, index); });
  }
}

// One byte every ms milliseconds, until done or the client goes (or the peer stops).
static bool send_slowly(int fd, const std::string& s, unsigned ms,
                        const std::atomic<bool>& stopping) {
  for (char c : s) {
    if (stopping || send(fd, &c, 1, MSG_NOSIGNAL) != 1) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  return true;
}

static bool send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

static std::string upper_verb(const std::string& line) {
  std::string v = line.substr(0, line.find_first_of(" :"));
  for (auto& c : v) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  return v;
}

void ScriptedPeer::serve(int fd, int index) {
  auto send_all = [&](int to, const std::string& r) {
    return r.compare(0, 5, "SLOW:") == 0
               ? send_slowly(to, r.substr(5), script_.dribble_ms, stopping_)
               : sbtest::send_all(to, r);
  };
  std::string buf;
  bool in_data = false;
  bool hang = false;
  bool has_mail = false;
  int rcpts_ok = 0;
  size_t bdat_left = 0;
  bool bdat_last = false, bdat_active = false;
  std::string bdat_body;
  static thread_local char tmp[65536];
  auto done = [&] { shutdown(fd, SHUT_RDWR); };
  size_t behind_dot = 0;  // bytes that came behind the end of data, unanswered then
  // "BYE:<reply>": say it, stop writing, drop input until the client closes.
  auto bye = [&](const std::string& r) {
    send_all(fd, r.substr(4));
    shutdown(fd, SHUT_WR);
    while (!stopping_ && recv(fd, tmp, sizeof(tmp), 0) > 0) {
    }
    done();
  };
  auto reset_txn = [&] {
    has_mail = false;
    rcpts_ok = 0;
  };
  auto finish_body = [&](const std::string& body) -> std::string {
    {
      std::lock_guard<std::mutex> g(mu_);
      bodies_.push_back(body);
    }
    std::string r = script_.on_data ? script_.on_data(index, body) : "";
    if (r.empty()) r = "250 2.0.0 Ok: queued\r\n";
    return r;
  };

  if (script_.greeting == "HANG") hang = true;
  else if (script_.greeting.empty()) return done();  // close at once
  else if (!send_all(fd, script_.greeting)) return done();

  for (;;) {
    ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0 || stopping_) return done();
    if (hang) continue;
    buf.append(tmp, static_cast<size_t>(n));
    for (;;) {
      if (bdat_active) {  // a BDAT chunk: exactly bdat_left bytes, no dot-stuffing
        size_t take = std::min(bdat_left, buf.size());
        bdat_body.append(buf, 0, take);
        buf.erase(0, take);
        bdat_left -= take;
        if (bdat_left) break;
        bdat_active = false;
        std::string r;
        bool keep = false;  // the refused transaction stays open (the worse reading)
        if (rcpts_ok == 0) {
          r = "554 5.5.1 Error: no valid recipients\r\n";
          if (bdat_last) bdat_body.clear();
          keep = script_.refused_bdat_keeps_txn;
        } else if (!bdat_last) {
          r = "250 2.0.0 chunk ok\r\n";
        } else {
          r = finish_body(bdat_body);
          bdat_body.clear();
          reset_txn();
        }
        if (bdat_last && !keep) reset_txn();
        if (r == "CLOSE") return done();
        if (r == "HANG") { hang = true; break; }
        if (r.compare(0, 4, "BYE:") == 0) return bye(r);
        if (!send_all(fd, r)) return done();
        continue;
      }
      if (in_data) {
        // End of data: CRLF.CRLF, or ".\r\n" when the body is empty.
        size_t end;
        std::string body;
        if (buf.compare(0, 3, ".\r\n") == 0) {
          end = 3;
        } else {
          size_t p = buf.find("\r\n.\r\n");
          if (p == std::string::npos) break;
          body = buf.substr(0, p + 2);
          end = p + 5;
        }
        buf.erase(0, end);
        in_data = false;
        if (script_.refuse_pipelined_after_dot) behind_dot = buf.size();
        std::string r = finish_body(body);
        reset_txn();
        if (r == "CLOSE") return done();
        if (r == "HANG") { hang = true; break; }
        if (r.compare(0, 4, "BYE:") == 0) return bye(r);
        if (!send_all(fd, r)) return done();
        continue;
      }
      size_t p = buf.find("\r\n");
      if (p == std::string::npos) break;
      std::string line = buf.substr(0, p);
      buf.erase(0, p + 2);
      {
        std::lock_guard<std::mutex> g(mu_);
        commands_.push_back(line);
      }
      std::string verb = upper_verb(line);
      std::string r;
      if (behind_dot) {
        behind_dot -= std::min(behind_dot, p + 2);
        r = "503 5.5.0 Bad sequence of commands - pipelined after end of DATA\r\n";
      } else if (script_.on_cmd) {
        r = script_.on_cmd(index, line);
      }
      if (r == "CLOSE") return done();
      if (r == "HANG") { hang = true; break; }
      if (r.compare(0, 4, "BYE:") == 0) return bye(r);
      if (r.empty()) {
        if (verb == "EHLO") {
          r = script_.ehlo;
          if (script_.chunking)  // after the first line, which is the server's name
            r.insert(r.find("\r\n") + 2, "250-CHUNKING\r\n");
        }
        else if (verb == "HELO") r = "250 peer.test\r\n";
        else if (verb == "MAIL") r = has_mail ? "503 5.5.1 Error: nested MAIL command\r\n" : "250 2.1.0 Ok\r\n";
        else if (verb == "RCPT") r = has_mail ? "250 2.1.5 Ok\r\n" : "503 5.5.1 Error: need MAIL command\r\n";
        else if (verb == "DATA") r = rcpts_ok ? "354 End data with <CR><LF>.<CR><LF>\r\n" : has_mail ? "554 5.5.1 Error: no valid recipients\r\n" : "503 5.5.1 Error: need RCPT command\r\n";
        else if (verb == "RSET") r = "250 2.0.0 Ok\r\n";
        else if (verb == "NOOP") r = "250 2.0.0 Ok\r\n";
        else if (verb == "QUIT") r = "221 2.0.0 Bye\r\n";
        else if (verb != "BDAT") r = "502 5.5.2 Error: command not recognized\r\n";
      }
      // Follow the transaction as a server would, whoever chose the reply.
      bool ok = r.compare(0, 1, "2") == 0;
      if (verb == "MAIL" && ok) has_mail = true;
      if (verb == "RCPT" && ok) rcpts_ok++;
      if (verb == "RSET" || verb == "EHLO" || verb == "HELO") reset_txn();
      if (verb == "BDAT" && script_.chunking) {
        // "BDAT <size> [LAST]": the chunk follows at once; the reply comes after it.
        bdat_left = strtoul(line.c_str() + 5, nullptr, 10);
        bdat_last = line.find("LAST") != std::string::npos;
        bdat_active = true;
        continue;
      }
      if (verb == "DATA" && r.compare(0, 3, "354") == 0) in_data = true;
      if (!send_all(fd, r)) return done();
      if (verb == "QUIT") return done();
    }
  }
}

namespace {
bool can_connect(uint16_t port, const std::string& unix_path) {
  int fd;
  bool up;
  if (!unix_path.empty()) {
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", unix_path.c_str());
    up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  } else {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    up = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  close(fd);
  return up;
}
}  // namespace

int spawn_listening(const std::vector<std::string>& args, uint16_t port, int tries,
                    bool quiet_stderr) {
  return spawn_listening_at(args, port, "", tries, quiet_stderr);
}

int spawn_listening_at(const std::vector<std::string>& args, uint16_t port,
                       const std::string& unix_path, int tries, bool quiet_stderr) {
  int pid = fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      if (quiet_stderr) dup2(devnull, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (pid < 0) return -1;
  for (int i = 0; i < tries; i++) {  // every 20 ms
    if (can_connect(port, unix_path)) return pid;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) return -1;  // it died: port taken?
    usleep(20000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

SmtpSink::SmtpSink(const std::vector<std::string>& extra_args) {
  const char* bin = "/usr/sbin/smtp-sink";
  struct stat st;
  if (stat(bin, &st) != 0) {
    error_ = "Postfix smtp-sink not found at /usr/sbin/smtp-sink: run scripts/setup-deps.sh";
    return;
  }
  for (int attempt = 0; attempt < 5 && pid_ < 0; attempt++) {
    port_ = free_port();
    std::string addr = "127.0.0.1:" + std::to_string(port_);
    std::vector<std::string> args = {bin};
    if (geteuid() == 0) {  // smtp-sink refuses to run as root without a user to become
      args.push_back("-u");
      args.push_back("nobody");
    }
    args.push_back("-c");
    for (auto& a : extra_args) args.push_back(a);
    args.push_back(addr);
    args.push_back("1024");
    pid_ = spawn_listening(args, port_, 100, /*quiet_stderr=*/false);
  }
  if (pid_ < 0 && error_.empty()) error_ = "smtp-sink did not start";
}

SmtpSink::SmtpSink(const std::string& unix_path, const std::vector<std::string>& extra_args) {
  const char* bin = "/usr/sbin/smtp-sink";
  struct stat st;
  if (stat(bin, &st) != 0) {
    error_ = "Postfix smtp-sink not found at /usr/sbin/smtp-sink: run scripts/setup-deps.sh";
    return;
  }
  std::vector<std::string> args = {bin};
  if (geteuid() == 0) {
    args.push_back("-u");
    args.push_back("nobody");
  }
  args.push_back("-c");
  for (auto& a : extra_args) args.push_back(a);
  args.push_back("unix:" + unix_path);
  args.push_back("1024");
  pid_ = spawn_listening_at(args, 0, unix_path, 100, /*quiet_stderr=*/false);
  if (pid_ < 0) error_ = "smtp-sink did not start on " + unix_path;
}

SmtpSink::~SmtpSink() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; i++) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      usleep(10000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

}  // namespace sbtest
