// One-off commands (smtpbulk_command(): VRFY, EXPN, HELP, NOOP, ETRN) through the whole
// engine: against our sink, aiosmtpd and Postfix smtp-sink; refused ones never sent; a
// command in the middle of a bulk send; a server that never answers; a stop while a
// command waits; the facade.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "engine_helpers.h"
#include "own_sink.h"
#include "scripted_peer.h"
#include "tls_peers.h"

using namespace sbtest;

namespace {

// A command's outcome, copied, the reply freed.
struct Cmd {
  int rc = 1;
  int code = 0;
  std::string enhanced, text;
  std::vector<std::string> lines;
  long ms = 0;  // how long the call took
};

Cmd run(smtpbulk_t* sb, smtpbulk_cmd_t cmd, const char* arg, int timeout_ms = kEventMs,
        const char* host = nullptr) {
  Cmd c;
  smtpbulk_command_reply_t* r = reinterpret_cast<smtpbulk_command_reply_t*>(1);
  auto t0 = std::chrono::steady_clock::now();
  c.rc = smtpbulk_command(sb, host, cmd, arg, timeout_ms, &r);
  c.ms = (long)std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now() - t0).count();
  if (c.rc == 0) {
    EXPECT_NE(r, nullptr);
    c.code = r->reply.code;
    c.enhanced = r->reply.enhanced;
    c.text = r->reply.text;
    for (size_t i = 0; i < r->n_lines; i++) c.lines.push_back(r->lines[i]);
  } else {
    EXPECT_EQ(r, nullptr);  // nothing to free on an error
  }
  smtpbulk_command_reply_free(c.rc == 0 ? r : nullptr);
  return c;
}

bool saw(ScriptedPeer& p, const std::string& cmd) {
  auto v = p.commands();
  return std::find(v.begin(), v.end(), cmd) != v.end();
}

}  // namespace

TEST(Command, EveryCommandAgainstOurSink) {
  OwnSinkServer sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 2);
  ASSERT_EQ(e.start(), 0);
  Cmd c = run(e.sb, SMTPBULK_CMD_VRFY, "bob@x.test");
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 252);
  EXPECT_EQ(c.enhanced, "2.5.2");
  c = run(e.sb, SMTPBULK_CMD_EXPN, "list-staff");
  EXPECT_EQ(c.code, 252);
  c = run(e.sb, SMTPBULK_CMD_EXPN, "staff");
  EXPECT_EQ(c.code, 550);
  EXPECT_EQ(c.enhanced, "5.1.1");
  c = run(e.sb, SMTPBULK_CMD_NOOP, nullptr);
  EXPECT_EQ(c.code, 250);
  c = run(e.sb, SMTPBULK_CMD_ETRN, "@sink.test");
  EXPECT_EQ(c.code, 250);
  c = run(e.sb, SMTPBULK_CMD_ETRN, "other.test");
  EXPECT_EQ(c.code, 458);
  // Named by "name:port" and by name; an unknown host is refused.
  std::string hp = "127.0.0.1:" + std::to_string(sink.port());
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr, kEventMs, hp.c_str()).code, 250);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr, kEventMs, "127.0.0.1").code, 250);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr, kEventMs, "nowhere.test").rc,
            SMTPBULK_ENOHOST);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr, 0).rc, -EINVAL);
}

TEST(Command, MultiLineHelpEveryLineReturned) {
  OwnSinkServer sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 1);
  ASSERT_EQ(e.start(), 0);
  Cmd c = run(e.sb, SMTPBULK_CMD_HELP, nullptr);
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 214);
  EXPECT_EQ(c.enhanced, "2.0.0");
  ASSERT_EQ(c.lines.size(), 4u);
  EXPECT_EQ(c.lines[0], "This is the smtpbulk sink");
  EXPECT_EQ(c.lines[2], "NOOP QUIT VRFY EXPN HELP ETRN STARTTLS AUTH");
  EXPECT_EQ(c.lines[3], "End of HELP info");
  EXPECT_EQ(c.text, c.lines[0] + "\n" + c.lines[1] + "\n" + c.lines[2] + "\n" + c.lines[3]);
}

TEST(Command, AgainstAiosmtpd) {
  AioSmtpd peer({});
  if (!peer.ok()) GTEST_SKIP() << peer.error();
  TestEngine e(peer.port(), 1);
  ASSERT_EQ(e.start(), 0);
  Cmd c = run(e.sb, SMTPBULK_CMD_VRFY, "someone@x.test");
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 252);
  c = run(e.sb, SMTPBULK_CMD_NOOP, nullptr);
  EXPECT_EQ(c.code, 250);
  c = run(e.sb, SMTPBULK_CMD_HELP, nullptr);
  ASSERT_EQ(c.rc, 0);
  EXPECT_TRUE(c.code == 250 || c.code == 214) << c.code;
  EXPECT_FALSE(c.lines.empty());
  c = run(e.sb, SMTPBULK_CMD_EXPN, "list");  // aiosmtpd does not implement it
  ASSERT_EQ(c.rc, 0);
  EXPECT_EQ(c.code / 100, 5);
}

TEST(Command, AgainstPostfixSmtpSink) {
  SmtpSink sink;
  if (!sink.ok()) GTEST_SKIP() << sink.error();
  TestEngine e(sink.port(), 1);
  ASSERT_EQ(e.start(), 0);
  Cmd c = run(e.sb, SMTPBULK_CMD_NOOP, nullptr);
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 250);
  c = run(e.sb, SMTPBULK_CMD_VRFY, "someone@x.test");
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_GE(c.code, 200);  // whatever it is, it is the server's
  // And mail still flows on the same connection.
  uint64_t id = e.send({"r@x.test"}, "Subject: t\r\n\r\nx\r\n");
  EXPECT_EQ(e.wait_one(id).status, SMTPBULK_DELIVERED);
}

TEST(Command, TurnAndAturnRefusedWithoutAByteSent) {
  ScriptedPeer peer(PeerScript{});
  TestEngine e(peer.port(), 1);
  ASSERT_EQ(e.start(), 0);
  // A NOOP first: the connection is up, so a TURN would have had somewhere to go.
  ASSERT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr).code, 250);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_TURN, nullptr).rc, SMTPBULK_ETURN);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_ATURN, "x.test").rc, SMTPBULK_ETURN);
  // Bad arguments: never sent either.
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_VRFY, "a\r\nRSET").rc, SMTPBULK_EBADPARAM);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_VRFY, nullptr).rc, SMTPBULK_EBADPARAM);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_EXPN, std::string(600, 'a').c_str()).rc, SMTPBULK_EBADPARAM);
  EXPECT_EQ(run(e.sb, static_cast<smtpbulk_cmd_t>(42), nullptr).rc, -EINVAL);
  ASSERT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, "last").code, 250);  // in order behind them
  auto cmds = peer.commands();
  ASSERT_FALSE(cmds.empty());
  EXPECT_EQ(cmds.back(), "NOOP last");
  for (auto& c : cmds) {
    EXPECT_EQ(c.find("TURN"), std::string::npos) << c;
    EXPECT_EQ(c.find("ATRN"), std::string::npos) << c;
    EXPECT_EQ(c.find("VRFY"), std::string::npos) << c;
    EXPECT_EQ(c.find("EXPN"), std::string::npos) << c;
  }
}

TEST(Command, DuringABulkSendEveryMessageOnceAndTheCommandAnswered) {
  OwnSinkServer sink;
  ASSERT_NE(sink.srv, nullptr);
  TestEngine e(sink.port(), 2);
  e.opts.queue_bound = 2000;
  ASSERT_EQ(e.start(), 0);
  const int kMessages = 10000;
  const std::string body = "Subject: t\r\n\r\n" + std::string(200, 'x') + "\r\n";
  std::atomic<bool> sending{true};
  std::thread producer([&] {
    const char* rc[] = {"a@example.com"};
    for (int i = 0; i < kMessages; i++) {
      smtpbulk_message_t m = make_msg(rc, 1, body.data(), body.size());
      EXPECT_EQ(smtpbulk_submit(e.sb, &m, 0, nullptr), 0);
    }
    sending = false;
  });
  // Wait until mail flows, then send commands while it does.
  ASSERT_TRUE(wait_until([&] { return e.results.total() >= 100; }));
  int answered = 0, during = 0;
  for (int i = 0; i < 20; i++) {
    bool busy = e.results.total() < (size_t)kMessages;
    Cmd c = run(e.sb, i % 2 ? SMTPBULK_CMD_VRFY : SMTPBULK_CMD_NOOP, i % 2 ? "bob" : nullptr);
    EXPECT_EQ(c.rc, 0) << i << ": " << smtpbulk_strerror(c.rc);
    EXPECT_EQ(c.code, i % 2 ? 252 : 250) << i;
    answered += c.rc == 0;
    during += busy;
  }
  producer.join();
  ASSERT_EQ(smtpbulk_drain(e.sb, 120000), 0);
  EXPECT_EQ(answered, 20);
  EXPECT_GT(during, 0);  // at least one went while messages were in flight
  EXPECT_EQ(e.results.total(), (size_t)kMessages);
  EXPECT_EQ(e.results.duplicates(), 0u);
  EXPECT_EQ(e.results.by_status()[SMTPBULK_DELIVERED], (size_t)kMessages);
  EXPECT_EQ(sink.totals().messages, (uint64_t)kMessages);
}

TEST(Command, ServerThatNeverAnswersTimesOutWithinTheBound) {
  PeerScript s;
  s.on_cmd = [](int conn, const std::string& c) -> std::string {
    return conn == 0 && c.rfind("VRFY", 0) == 0 ? "HANG" : "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  e.opts.sleep_hang_ms = 10;
  ASSERT_EQ(e.start(), 0);
  ASSERT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr).code, 250);  // connected
  Cmd c = run(e.sb, SMTPBULK_CMD_VRFY, "bob", 300);
  EXPECT_EQ(c.rc, SMTPBULK_ETIMEDOUT);
  EXPECT_GE(c.ms, 290);
  EXPECT_LT(c.ms, 300 + 2000);  // the bound, and a loaded machine's slack
  // The connection that had it out is closed; the next command goes on a new one.
  Cmd n = run(e.sb, SMTPBULK_CMD_NOOP, nullptr);
  EXPECT_EQ(n.rc, 0) << smtpbulk_strerror(n.rc);
  EXPECT_EQ(n.code, 250);
  EXPECT_GE(peer.connections(), 2);
}

TEST(Command, GarbledOrExtraReplyIsAConnectionError) {
  PeerScript s;
  s.on_cmd = [](int, const std::string& c) -> std::string {
    if (c == "VRFY extra") return "252 maybe\r\n250 and this too\r\n";
    if (c == "VRFY garbled") return "2x2 what\r\n";
    return "";
  };
  ScriptedPeer peer(s);
  TestEngine e(peer.port(), 1);
  ASSERT_EQ(e.start(), 0);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_VRFY, "extra").rc, SMTPBULK_EPROTO);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_VRFY, "garbled").rc, SMTPBULK_EPROTO);
  EXPECT_EQ(run(e.sb, SMTPBULK_CMD_NOOP, nullptr).code, 250);  // a new connection
  EXPECT_GE(peer.connections(), 3);
}

TEST(Command, EngineDestroyedWhileACommandIsOut) {
  Gate got;
  PeerScript s;
  s.on_cmd = [&](int, const std::string& c) -> std::string {
    if (c.rfind("VRFY", 0) != 0) return "";
    got.open();
    return "HANG";
  };
  ScriptedPeer peer(s);
  auto* e = new TestEngine(peer.port(), 1);
  ASSERT_EQ(e->start(), 0);
  auto fut = std::async(std::launch::async, [&] { return run(e->sb, SMTPBULK_CMD_VRFY, "x", 60000); });
  ASSERT_TRUE(got.wait());
  // The destroy waits for the connection's QUIT (its grace: the server never answers
  // the VRFY); the caller hears of the stop at once, not after it.
  std::thread destroyer([&] { delete e; });  // smtpbulk_destroy
  ASSERT_EQ(fut.wait_for(std::chrono::milliseconds(1500)), std::future_status::ready);
  EXPECT_EQ(fut.get().rc, SMTPBULK_ECANCELLED);
  destroyer.join();
}

TEST(Command, EngineDestroyedWhileACommandIsQueued) {
  PeerScript s;
  s.greeting = "HANG";  // no connection ever becomes ready: the command stays queued
  ScriptedPeer peer(s);
  LogCapture log;  // before the engine: it logs here until destroyed
  auto* e = new TestEngine(peer.port(), 1);
  e->opts.debug = 7;
  e->opts.on_log = LogCapture::cb;
  e->opts.log_arg = &log;
  ASSERT_EQ(e->start(), 0);
  auto fut = std::async(std::launch::async,
                        [&] { return run(e->sb, SMTPBULK_CMD_NOOP, nullptr, 60000); });
  // Queued (said before the call waits): the destroy does not race the call's start.
  ASSERT_TRUE(wait_until([&] {
    return log.get().find("command NOOP for 127.0.0.1:" + std::to_string(peer.port()) +
                          ": queued") != std::string::npos;
  }));
  std::thread destroyer([&] { delete e; });
  ASSERT_EQ(fut.wait_for(std::chrono::milliseconds(1500)), std::future_status::ready);
  EXPECT_EQ(fut.get().rc, SMTPBULK_ECANCELLED);
  destroyer.join();
}

TEST(Command, ThroughTheFacade) {
  ScriptedPeer peer(PeerScript{});
  smtpbulk_options_t o;
  smtpbulk_options_init(&o);
  apply_test_backend(&o);
  o.connections = 1;
  o.discard_results = 1;
  smtpbulk_t* smtp = smtpbulk_new(peer.hostport().c_str(), &o);
  ASSERT_NE(smtp, nullptr) << strerror(errno);
  ASSERT_EQ(smtpbulk_mail(smtp, "s@x.test"), 0);
  ASSERT_EQ(smtpbulk_to(smtp, "r@x.test"), 0);
  ASSERT_EQ(smtpbulk_data(smtp), 0);
  ASSERT_EQ(smtpbulk_dataend(smtp), 0);
  Cmd c = run(smtp, SMTPBULK_CMD_NOOP, nullptr);
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 250);
  c = run(smtp, SMTPBULK_CMD_HELP, nullptr);  // the peer does not know it
  EXPECT_EQ(c.code, 502);
  EXPECT_EQ(smtpbulk_quit(smtp, "cmd"), 0);
  EXPECT_EQ(run(smtp, SMTPBULK_CMD_NOOP, nullptr).rc, SMTPBULK_ESTOPPED);  // after quit
  smtpbulk_free(smtp);
  EXPECT_TRUE(saw(peer, "NOOP"));
  EXPECT_EQ(peer.bodies().size(), 1u);
}

TEST(Command, AClosedIdleConnectionConnectsAgainForIt) {
  ScriptedPeer peer(PeerScript{});
  LogCapture log;
  TestEngine e(peer.port(), 1);
  e.opts.idle_close_ms = 50;  // the idle connection QUITs, and waits closed for work
  e.opts.debug = 7;
  e.opts.on_log = LogCapture::cb;
  e.opts.log_arg = &log;
  ASSERT_EQ(e.start(), 0);
  ASSERT_TRUE(wait_until([&] {
    auto c = peer.commands();
    return std::count(c.begin(), c.end(), "QUIT") == 1;
  }));
  Cmd c = run(e.sb, SMTPBULK_CMD_NOOP, nullptr);
  ASSERT_EQ(c.rc, 0) << smtpbulk_strerror(c.rc);
  EXPECT_EQ(c.code, 250);
  EXPECT_EQ(peer.connections(), 2);
  auto cmds = peer.commands();  // (it may have closed again since: idle)
  auto quit = std::find(cmds.begin(), cmds.end(), "QUIT");
  EXPECT_NE(std::find(quit, cmds.end(), "NOOP"), cmds.end());
}
