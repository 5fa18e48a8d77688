// A message file's envelope (smtpbulk_mailfile_parse, the mbox reader): From before
// Sender, To/Cc/Bcc and group members each once, Bcc gone from what is sent and the
// rest left byte for byte, each way a file can fail, an mbox read message by message
// with a bad one in the middle failing alone.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "smtpbulk.h"
#include "smtpbulk_send.h"

namespace {

struct Parsed {
  smtpbulk_mailfile_t m{};
  int rc;
  Parsed(const std::string& msg, const char* from = nullptr)
      : rc(smtpbulk_mailfile_parse(msg.data(), msg.size(), from, &m)) {}
  ~Parsed() { smtpbulk_mailfile_free(&m); }
  std::vector<std::string> rcpts() const {
    return std::vector<std::string>(m.rcpts, m.rcpts + m.n_rcpts);
  }
  std::string data() const { return std::string(m.data, m.len); }
};

using V = std::vector<std::string>;

TEST(MailFile, FromToCcBccIntoTheEnvelopeEachOnce) {
  Parsed p(
      "From: \"Ann Example\" <ann@example.org>\r\n"
      "Sender: list@example.org\r\n"
      "To: bob@example.net, \"Carol\" <carol@example.net>\r\n"
      "Cc: Bob@example.net, dave@example.com\r\n"
      "Subject: hi\r\n"
      "\r\n"
      "body\r\n");
  ASSERT_EQ(p.rc, 0);
  EXPECT_STREQ(p.m.from, "ann@example.org");
  EXPECT_EQ(p.rcpts(), (V{"bob@example.net", "carol@example.net", "dave@example.com"}));
}

TEST(MailFile, WithoutBccTheMessageGoesOutByteForByte) {
  const std::string msg =
      "From: ann@example.org\nTo: bob@example.net\nX-Odd:   spacing  kept\n\nline\n.dot\n";
  Parsed p(msg);
  ASSERT_EQ(p.rc, 0);
  EXPECT_EQ(p.data(), msg);
  EXPECT_EQ(p.m.data[p.m.len], '\0');
}

TEST(MailFile, BccAreRecipientsButNotInWhatIsSent) {
  Parsed p(
      "From: ann@example.org\r\n"
      "To: bob@example.net\r\n"
      "Bcc: secret@example.com,\r\n"
      " other-secret@example.com\r\n"
      "Subject: s\r\n"
      "bcc: third@example.com\r\n"
      "\r\n"
      "Bcc: in the body stays\r\n");
  ASSERT_EQ(p.rc, 0);
  EXPECT_EQ(p.rcpts(), (V{"bob@example.net", "secret@example.com", "other-secret@example.com",
                          "third@example.com"}));
  const std::string d = p.data();
  EXPECT_EQ(d.find("secret@"), std::string::npos) << d;
  EXPECT_EQ(d.find("third@"), std::string::npos) << d;
  EXPECT_NE(d.find("Subject: s"), std::string::npos) << d;
  EXPECT_NE(d.find("To: bob@example.net"), std::string::npos) << d;
  EXPECT_NE(d.find("Bcc: in the body stays"), std::string::npos) << d;
}

TEST(MailFile, GroupMembersAreRecipients) {
  Parsed p(
      "From: ann@example.org\n"
      "To: team: x@example.net, y@example.net;, z@example.net\n"
      "Cc: undisclosed-recipients:;\n\nb\n");
  ASSERT_EQ(p.rc, 0);
  EXPECT_EQ(p.rcpts(), (V{"x@example.net", "y@example.net", "z@example.net"}));
}

TEST(MailFile, SenderWhenNoFromAndAnOverrideBeforeBoth) {
  Parsed s("Sender: list@example.org\nTo: bob@example.net\n\nb\n");
  ASSERT_EQ(s.rc, 0);
  EXPECT_STREQ(s.m.from, "list@example.org");
  Parsed o("From: ann@example.org\nTo: bob@example.net\n\nb\n", "bounce@example.org");
  ASSERT_EQ(o.rc, 0);
  EXPECT_STREQ(o.m.from, "bounce@example.org");
  Parsed null_sender("From: ann@example.org\nTo: bob@example.net\n\nb\n", "");
  ASSERT_EQ(null_sender.rc, 0);
  EXPECT_STREQ(null_sender.m.from, "");
}

TEST(MailFile, EachWayAFileCanFail) {
  EXPECT_EQ(Parsed("To: bob@example.net\n\nb\n").rc, SMTPBULK_ENOSENDER);
  EXPECT_EQ(Parsed("From: ann@example.org\nSubject: none\n\nb\n").rc, SMTPBULK_ENORCPTS);
  EXPECT_EQ(Parsed("From: ann@example.org\nTo: undisclosed:;\n\nb\n").rc, SMTPBULK_ENORCPTS);
  EXPECT_EQ(Parsed("").rc, SMTPBULK_EMESSAGE);
  EXPECT_EQ(Parsed("\n\njust a body, no header at all\n").rc, SMTPBULK_EMESSAGE);
  // An address the engine would refuse (a CR in it) is refused here, not later.
  EXPECT_EQ(Parsed("From: ann@example.org\nTo: bob@example.net\n\nb\n", "a\r@b").rc,
            SMTPBULK_EBADADDR);
  smtpbulk_mailfile_t m{};
  EXPECT_EQ(smtpbulk_mailfile_parse(nullptr, 3, nullptr, &m), -EINVAL);
  EXPECT_STRNE(smtpbulk_strerror(SMTPBULK_ENOSENDER), smtpbulk_strerror(SMTPBULK_ENORCPTS));
  smtpbulk_mailfile_free(nullptr);
}

struct TmpFile {
  std::string path;
  explicit TmpFile(const std::string& body) {
    char t[] = "/tmp/sbmbox.XXXXXX";
    int fd = mkstemp(t);
    path = t;
    if (fd >= 0) {
      if (write(fd, body.data(), body.size()) != (ssize_t)body.size()) path.clear();
      close(fd);
    }
  }
  ~TmpFile() { unlink(path.c_str()); }
};

TEST(Mbox, MessagesOneByOneABadOneFailsAlone) {
  TmpFile f(
      "From ann@example.org Mon Jan  1 00:00:00 2026\n"
      "From: ann@example.org\nTo: one@example.net\nSubject: 1\n\nfirst\n\n"
      "From nobody Mon Jan  1 00:00:01 2026\n"
      "Subject: no sender\nTo: two@example.net\n\nsecond\n\n"
      "From ann@example.org Mon Jan  1 00:00:02 2026\n"
      "From: ann@example.org\nTo: three@example.net\nBcc: hidden@example.net\n"
      "Subject: 3\n\nthird\n");
  ASSERT_FALSE(f.path.empty());
  smtpbulk_mbox_t* mb = nullptr;
  ASSERT_EQ(smtpbulk_mbox_open(f.path.c_str(), &mb), 0);
  smtpbulk_mailfile_t m{};
  uint64_t ix = 0;
  ASSERT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), 0);
  EXPECT_EQ(ix, 1u);
  ASSERT_EQ(m.n_rcpts, 1u);
  EXPECT_STREQ(m.rcpts[0], "one@example.net");
  std::string d(m.data, m.len);
  EXPECT_NE(d.find("first"), std::string::npos) << d;
  EXPECT_EQ(d.find("second"), std::string::npos) << d;
  EXPECT_NE(d.rfind("From ", 0), 0u) << "the mbox separator is not part of the message";
  smtpbulk_mailfile_free(&m);
  EXPECT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), SMTPBULK_ENOSENDER);
  EXPECT_EQ(ix, 2u);
  ASSERT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), 0);
  EXPECT_EQ(ix, 3u);
  ASSERT_EQ(m.n_rcpts, 2u);
  EXPECT_STREQ(m.rcpts[1], "hidden@example.net");
  d.assign(m.data, m.len);
  EXPECT_EQ(d.find("hidden@"), std::string::npos) << d;
  EXPECT_NE(d.find("third"), std::string::npos) << d;
  smtpbulk_mailfile_free(&m);
  EXPECT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), 1);
  EXPECT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), 1);
  smtpbulk_mbox_close(mb);
}

TEST(Mbox, EscapedFromLinesAreUnescaped) {
  TmpFile f(
      "From ann@example.org Mon Jan  1 00:00:00 2026\n"
      "From: ann@example.org\nTo: one@example.net\nSubject: 1\n\n"
      "line one\n>From the start\n>>From quoted\n> From not an escape\n>Fromage\nend\n");
  ASSERT_FALSE(f.path.empty());
  smtpbulk_mbox_t* mb = nullptr;
  ASSERT_EQ(smtpbulk_mbox_open(f.path.c_str(), &mb), 0);
  smtpbulk_mailfile_t m{};
  uint64_t ix = 0;
  ASSERT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, &ix), 0);
  std::string d(m.data, m.len);
  EXPECT_EQ(d.size(), strlen(m.data));
  EXPECT_NE(d.find("\nFrom the start\n"), std::string::npos) << d;
  EXPECT_NE(d.find("\n>From quoted\n"), std::string::npos) << d;
  EXPECT_NE(d.find("\n> From not an escape\n"), std::string::npos) << d;
  EXPECT_NE(d.find("\n>Fromage\n"), std::string::npos) << d;
  smtpbulk_mailfile_free(&m);
  smtpbulk_mbox_close(mb);
}

TEST(Mbox, MissingFileIsAnErrno) {
  smtpbulk_mbox_t* mb = nullptr;
  EXPECT_EQ(smtpbulk_mbox_open("/nonexistent/mbox", &mb), -ENOENT);
  EXPECT_EQ(mb, nullptr);
}

TEST(Mbox, EmptyFileHasNoMessages) {
  TmpFile f("");
  smtpbulk_mbox_t* mb = nullptr;
  ASSERT_EQ(smtpbulk_mbox_open(f.path.c_str(), &mb), 0);
  smtpbulk_mailfile_t m{};
  EXPECT_EQ(smtpbulk_mbox_next(mb, nullptr, &m, nullptr), 1);
  smtpbulk_mbox_close(mb);
}

}  // namespace
