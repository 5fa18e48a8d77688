// smtpbulk_queue_id() over final replies as real servers write them (the text after
// the code and enhanced code, as smtpbulk_reply_t holds it).
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "smtpbulk_send.h"

namespace {
std::string qid(const char* text) {
  char out[128];
  int rc = smtpbulk_queue_id(text, out, sizeof(out));
  return rc == 0 ? std::string(out) : "ERR" + std::to_string(rc);
}
const std::string kNone = "ERR" + std::to_string(-ENOENT);
}  // namespace

TEST(QueueId, RealServers) {
  EXPECT_EQ(qid("Ok: queued as 4Dd1Xy3Hj0z9kqS"), "4Dd1Xy3Hj0z9kqS");               // Postfix
  EXPECT_EQ(qid("Ok: queued as 3F4A21C0B2"), "3F4A21C0B2");                         // Postfix, short ids
  EXPECT_EQ(qid("OK id=1qabcd-0001Ab-2C"), "1qabcd-0001Ab-2C");                     // Exim
  EXPECT_EQ(qid("id=1rXyZq-000Abc-9T"), "1rXyZq-000Abc-9T");                        // Exim, bare
  EXPECT_EQ(qid("3B1F2n9T012345 Message accepted for delivery"), "3B1F2n9T012345"); // Sendmail
  EXPECT_EQ(qid("a1b2c3d4 Message accepted for delivery"), "a1b2c3d4");             // OpenSMTPD
  EXPECT_EQ(qid("<CAF1x@mail.example.com> [InternalId=16587163, Hostname=AM6PR.eurprd.prod."
                "outlook.com] Queued mail for delivery"),
            "16587163");                                                             // Exchange Online
  EXPECT_EQ(qid("OK  1701234567 d9443c01a7336-1cfc6e2bcb7si1234567pll.123 - gsmtp"),
            "d9443c01a7336-1cfc6e2bcb7si1234567pll.123");                            // Gmail
  EXPECT_EQ(qid("ok 1701234567 qp 12345"), "12345");                                // qmail
  EXPECT_EQ(qid("Message Queued (6C8E2E4B-4C42-4B8E-8F3D-0A1B2C3D4E5F.1)"),
            "6C8E2E4B-4C42-4B8E-8F3D-0A1B2C3D4E5F.1");                              // Haraka
  EXPECT_EQ(qid("Ok 0100018c2b6f4f1d-3c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8-000000"),
            "0100018c2b6f4f1d-3c1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8-000000");        // Amazon SES
}

TEST(QueueId, RepliesWithoutOne) {
  EXPECT_EQ(qid("Ok: queued"), kNone);  // our sink, smtp-sink
  EXPECT_EQ(qid("OK"), kNone);          // aiosmtpd
  EXPECT_EQ(qid("Great success"), kNone);
  EXPECT_EQ(qid("Ok Message accepted"), kNone);  // a status word, not an id
  EXPECT_EQ(qid("OK 12"), kNone);
  EXPECT_EQ(qid(""), kNone);
}

TEST(QueueId, BoundsAndBadArguments) {
  char out[4];
  EXPECT_EQ(smtpbulk_queue_id("queued as ABCDEFG", out, sizeof(out)), -ENOSPC);
  EXPECT_STREQ(out, "");
  EXPECT_EQ(smtpbulk_queue_id("queued as ABC", out, sizeof(out)), 0);
  EXPECT_STREQ(out, "ABC");
  EXPECT_EQ(smtpbulk_queue_id(nullptr, out, sizeof(out)), -EINVAL);
  EXPECT_EQ(smtpbulk_queue_id("x", nullptr, 1), -EINVAL);
  EXPECT_EQ(smtpbulk_queue_id("x", out, 0), -EINVAL);
  std::string longid = "queued as " + std::string(200, 'A');
  char big[256];
  EXPECT_EQ(smtpbulk_queue_id(longid.c_str(), big, sizeof(big)), -ENOENT);  // > 127: not an id
  EXPECT_EQ(qid("queued as ABC."), "ABC");  // a sentence's full stop is not part of it
}
