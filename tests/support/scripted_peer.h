// An in-process SMTP server for exact exchanges: every command it receives is recorded,
// and a test decides each reply. Binds 127.0.0.1 on a free port; one thread per
// connection; every read is bounded by a timeout; the destructor stops everything.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sbtest {

// What to answer. Returning "" means "the default reply". The special reply "CLOSE"
// closes the connection without answering; "HANG" stops answering (until stop);
// "BYE:" followed by a reply sends that reply, then closes the way a careful server
// does: it stops writing, reads and drops what the client still sends until the client
// closes (so no reset can throw away replies the client has not read yet).
struct PeerScript {
  std::string greeting = "220 peer.test ESMTP scripted\r\n";
  std::string ehlo =
      "250-peer.test greets you\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n"
      "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
  // Advertise CHUNKING and accept BDAT.
  bool chunking = false;
  // Haraka's SMTP-smuggling hardening: every command that arrived behind the end of a
  // message's data, before the server answered it, is refused with 503.
  bool refuse_pipelined_after_dot = false;
  // A BDAT LAST refused for want of a recipient leaves the transaction open (RFC 3030
  // says it ends; a server may not agree): the next MAIL gets "503 nested MAIL".
  bool refused_bdat_keeps_txn = false;
  // Slowloris: a reply (or greeting) that starts with "SLOW:" goes out without that
  // prefix, one byte every dribble_ms.
  unsigned dribble_ms = 20;
  // conn: connection index (0, 1, ...); cmd: the command line without CRLF.
  // Without an answer from here, replies follow the transaction state like a real
  // server: 503 for RCPT without MAIL, 554 for DATA/BDAT without a valid recipient.
  std::function<std::string(int conn, const std::string& cmd)> on_cmd;
  // body: the raw data as received (still dot-stuffed), without the final ".\r\n".
  std::function<std::string(int conn, const std::string& body)> on_data;
};

class ScriptedPeer {
 public:
  explicit ScriptedPeer(PeerScript script);
  ~ScriptedPeer();
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  uint16_t port() const { return port_; }
  std::string hostport() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> commands();  // every command line, all connections, in order
  std::vector<std::string> bodies();    // every message body received
  std::vector<std::string> peers();     // each connection's client address, in order
  int connections() const { return conns_.load(); }
  void stop();

 private:
  void accept_loop();
  void serve(int fd, int index);

  PeerScript script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> conns_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> fds_;
  std::vector<std::string> commands_;
  std::vector<std::string> bodies_;
  std::vector<std::string> peers_;
};

// Postfix smtp-sink on a free 127.0.0.1 port, killed by the destructor.
class SmtpSink {
 public:
  explicit SmtpSink(const std::vector<std::string>& extra_args = {});
  // Listening on a unix-domain socket at unix_path instead (port() is 0). As root it
  // runs as nobody: the socket's directory must let nobody create it.
  SmtpSink(const std::string& unix_path, const std::vector<std::string>& extra_args);
  ~SmtpSink();
  bool ok() const { return pid_ > 0; }
  uint16_t port() const { return port_; }
  std::string hostport() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string error() const { return error_; }

 private:
  int pid_ = -1;
  uint16_t port_ = 0;
  std::string error_;
};

// A free TCP port on 127.0.0.1 (bound and released: the caller binds it next).
uint16_t free_port();

// Start args[0] (a full path) with args, stdout (and with quiet_stderr, stderr) to
// /dev/null, and wait up to tries x 20 ms until it accepts connections on
// 127.0.0.1:port. Its pid, or -1 (it died or never listened: it is killed and reaped).
int spawn_listening(const std::vector<std::string>& args, uint16_t port, int tries,
                    bool quiet_stderr);
// The same, waiting for a unix-domain socket at unix_path when it is not empty.
int spawn_listening_at(const std::vector<std::string>& args, uint16_t port,
                       const std::string& unix_path, int tries, bool quiet_stderr);

}  // namespace sbtest
