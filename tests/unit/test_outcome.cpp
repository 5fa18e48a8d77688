// engine/outcome.c: the category of a result, and which replies ask to slow down, over
// replies real servers sent. Each row says where its text was seen; addresses, IPs and
// host names are placeholders only where its comment says so.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

extern "C" {
#include "outcome.h"
#include "smtpbulk.h"
}

namespace {
constexpr int SRV = SMTPBULK_ESERVER, SHUT = SMTPBULK_ESHUTDOWN, HELO = SMTPBULK_EHELLO;
constexpr smtpbulk_category_t HARD = SMTPBULK_CAT_HARD_BOUNCE, SOFT = SMTPBULK_CAT_SOFT,
    THR = SMTPBULK_CAT_THROTTLED, POL = SMTPBULK_CAT_POLICY, BIG = SMTPBULK_CAT_TOO_LARGE,
    PROTO = SMTPBULK_CAT_PROTOCOL, NET = SMTPBULK_CAT_NETWORK, OTHER = SMTPBULK_CAT_OTHER,
    LOCAL = SMTPBULK_CAT_LOCAL, DELIV = SMTPBULK_CAT_DELIVERED;
constexpr smtpbulk_status_t FAIL = SMTPBULK_FAILED, REJ = SMTPBULK_REJECTED;

struct Real {  // enh "" when the server sent none; text without codes, lines joined with '\n'
  int code; const char* enh; const char* text;  // (as smtpbulk_reply_t holds them)
  int err; smtpbulk_category_t want;  // err SHUT: a 421, which ends the connection; else SRV
};

// Sources, abbreviated per row (pages as the search found them):
//  GH  Google Workspace Admin Help "Gmail SMTP errors and codes" (support.google.com/a/answer/3726730)
//  SG  Sisimai lib/Sisimai/Rhost/Google.pm, which quotes Gmail's replies
//  SM  Sisimai lib/Sisimai/Rhost/Microsoft.pm (Microsoft's NDR reference, observed logs)
//  SY  Sisimai lib/Sisimai/Rhost/YahooInc.pm (senders.yahooinc.com/smtp-error-codes, logs)
//  PF  Postfix source, postfix/src/smtpd/smtpd.c and smtpd_check.c (addresses are placeholders)
//  EX  Exim source, src/smtp_in.c
// "cut": the reply goes on; the row keeps the words that decide.
const Real kReal[] = {
  // Gmail. Multi-line as quoted by simplefastwebsites.com (its smtp-550-5-1-1 page), cut.
  {550, "5.1.1", "The email account that you tried to reach does not exist. Please try\n"
   "double-checking the recipient's email address for typos or\nunnecessary spaces.", SRV, HARD},
  // Multi-line as quoted by mythicintel.com/blog/421-from-gmail (its IP), cut.
  {421, "4.7.28", "[203.0.113.42] Our system has detected an unusual rate of\nunsolicited mail "
   "originating from your IP address. To protect our\nusers from spam, mail sent from your IP "
   "address has been temporarily\nrate limited. Please visit", SHUT, THR},
  {452, "4.2.2", "The email account that you tried to reach is over quota. Please direct the "
   "recipient to Clear Google Drive space & increase storage.", SRV, SOFT},  // SG
  // As quoted by powerdmarc.com (its "fix this mail is unauthenticated" article).
  {550, "5.7.26", "This mail has been blocked because the sender is unauthenticated.\nGmail "
   "requires all senders to authenticate with either SPF or DKIM.", SRV, POL},
  {552, "5.2.3", "Your message exceeded Google's message size limits. For more information, "
   "visit https://support.google.com/mail/answer/6584", SRV, BIG},  // SG
  // GH, both cut.
  {450, "4.2.1", "The user you are trying to contact is receiving mail too quickly.", SRV, THR},
  {450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents "
   "additional messages from being delivered.", SRV, THR},
  {421, "4.4.5", "Server busy, try again later.", SHUT, THR},                // GH
  {421, "4.3.0", "Temporary System Problem. Try again later", SHUT, NET},    // GH
  {451, "4.5.0", "SMTP protocol violation, see RFC 2821.", SRV, PROTO},      // GH
  {452, "4.5.3", "Your message has too many recipients.", SRV, SOFT},  // GH via entertop.net, cut
  {550, "5.2.1", "The email account that you tried to reach is inactive.", SRV, HARD},  // SG
  {501, "5.5.4", "HELO/EHLO argument is invalid.", HELO, PROTO},  // SG, cut
  // SG. No rate, but a 4.7.x: the cost of the 4.7.x rule (slowing down does no harm here).
  {421, "4.7.0", "Connection expired, try reconnecting.", SHUT, THR},
  // Outlook / Microsoft 365. SM (the first a Postfix log there), both cut.
  {451, "4.7.650", "The mail server [192.0.2.5] has been temporarily rate limited due to IP "
   "reputation. For e-mail delivery information, see https://postmaster.live.com", SRV, THR},
  {550, "5.7.1", "Unfortunately, messages from [10.0.2.5] weren't sent. Please contact your "
   "Internet service provider since part of their network is on our block list", SRV, POL},
  // Directory-based edge blocking (no such recipient in the tenant), as quoted by
  // simplefastwebsites.com (its smtp-550-5-4-1 page).
  {550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281) "
   "[BN1NAM02FT022.eop-nam02.prod.protection.outlook.com]", SRV, HARD},
  // A Postfix log in gitlab.com/lightmeter/controlcenter/-/issues/319.
  {451, "4.7.500", "Server busy. Please try again later from [134.119.1.64]. (S77719) "
   "[FR2DEU01FT008.eop-deu01.prod.protection.outlook.com]", SRV, THR},
  // An Exchange NDR at pastebin.com/4NLVeuUu.
  {550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
   SRV, HARD},
  // Exchange Online's NDR as bounce fixtures quote it (SM lists "5.2.2 mailbox full"):
  // permanent, but the mailbox exists.
  {554, "5.2.2", "mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException", SRV, SOFT},
  // Yahoo, SY (its placeholder IPs).
  {421, "4.7.0", "[TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume "
   "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", SHUT, THR},
  {554, "5.7.9", "Message not accepted for policy reasons. See "
   "https://postmaster.yahooinc.com/error-codes", SRV, POL},
  {553, "5.7.1", "[BL21] Connections will not be accepted from 192.0.2.25, because the ip is in "
   "Spamhaus's list; see http://postmaster.yahoo.com/550-bl23.html", SRV, POL},
  // SY, no enhanced codes. A per-connection cap is no rate: a new connection takes the next.
  {450, "", "User is receiving mail too quickly", SRV, THR},
  {421, "", "Max message per connection reached, closing transmission channel", SHUT, NET},
  {421, "", "Max message per connection reached, closing transmission channel", SRV, SOFT},
  {552, "", "1 Requested mail action aborted, mailbox not found", SRV, HARD},
  // The Details field of a Postmark bounce sample (their address).
  {554, "", "delivery error: dd This user doesn't have a yahoo.com account "
   "(vicelcown@yahoo.com) [0] - mta1543.mail.ne1.yahoo.com", SRV, HARD},
  {552, "", "message size exceeds maximum message size", SRV, BIG},  // pastebin.com/MAjBV3zj
  // Postfix. postgrey's text, in a mail log quoted in a forum post (placeholders).
  {450, "4.2.0", "<user@example.org>: Recipient address rejected: Greylisted, see "
   "http://postgrey.schweikert.ch/help/example.org.html", SRV, SOFT},
  {550, "5.1.1", "<user@example.org>: Recipient address rejected: User unknown in local "
   "recipient table", SRV, HARD},                                      // PF
  {452, "4.3.1", "Insufficient system storage", SRV, SOFT},            // PF
  {554, "5.7.1", "<user@example.org>: Relay access denied", SRV, POL},  // PF
  {552, "5.3.4", "Message size exceeds fixed limit", SRV, BIG},         // PF
  {450, "4.1.8", "<a@example.org>: Sender address rejected: Domain not found", SRV, SOFT},  // PF
  {554, "5.5.1", "Error: no valid recipients", SRV, PROTO},          // PF
  {452, "4.5.3", "Error: too many recipients", SRV, SOFT},           // PF
  {450, "4.7.1", "Error: too much mail from 192.0.2.7", SRV, THR},  // PF
  {421, "4.7.0", "smtp.corp.redhat.com Error: too many connections from 10.0.115.152", SHUT,
   THR},  // as Python's smtplib reported it, in a comment in a Red Hat tool's source
  {451, "4.7.1", "Greylisting in action, please come back later", SRV, SOFT},  // milter-greylist
  // Exim.
  {421, "", "too many messages in this connection", SHUT, NET},        // EX
  {552, "", "Message size exceeds maximum permitted", SRV, BIG},       // EX
  {451, "", "Temporary local problem - please try later", SRV, SOFT},  // EX
  {550, "", "Unrouteable address", SRV, HARD},  // an LKML bounce, RCPT TO:<nbd@openwrt.org>
  {550, "", "Administrative prohibition", SRV, POL},  // the default ACL deny, a CTF walkthrough
  {421, "", "Too many concurrent SMTP connections from this IP address; please try again later.",
   SHUT, THR},  // a Postfix log: "refused to talk to me: 421 Too many concurrent ..."
  {550, "", "relay not permitted", SRV, POL},  // a Postfix log of an Exim relay's refusal
  {550, "", "Verification failed for <szepe@pinerecords.com>\n(result of earlier verification "
   "reused).\nSender verify failed", SRV, POL},  // a sender callout, quoted on LKML (2004-08-11)
  {501, "", "Syntactically invalid HELO argument(s)", HELO, PROTO},  // FairEmail's FAQ 127
  // Others. Comcast, in a DSN quoted by a Power BI write-up: only the text says it.
  {421, "4.1.0", "192.0.2.1 Throttled - try again later. Please see "
   "https://postmaster.comcast.net/smtp-error-codes.php#RL000003", SHUT, THR},
  {451, "4.7.1", "Ratelimit \"hostinger_out_ratelimit\" exceeded", SRV, THR},  // Hostinger logs
  // Amazon SES (github.com/efforg/action-center-platform/issues/874): 454 never throttles.
  {454, "", "Throttling failure: Daily message quota exceeded.", SRV, SOFT},
};

// The reply as it came off the wire, every line with its codes and CRLF.
std::string raw(const Real& r) {
  std::string out, t = r.text;
  for (size_t pos = 0;;) {
    size_t nl = t.find('\n', pos);
    bool last = nl == std::string::npos;
    out += std::to_string(r.code) + (last ? " " : "-") + (*r.enh ? r.enh + std::string(" ") : "");
    out += t.substr(pos, last ? std::string::npos : nl - pos) + "\r\n";
    if (last) return out;
    pos = nl + 1;
  }
}

int throttles(int code, const char* enh, const std::string& t, const char* const* pats = nullptr) {
  return sb_reply_throttles(code, enh, enh ? strlen(enh) : 0, t.data(), t.size(), pats);
}

smtpbulk_category_t cat(smtpbulk_status_t st, int err, int code, const char* enh,
                        const char* text, const char* const* patterns = nullptr) {
  return sb_category_of(st, err, code, enh, text, patterns);
}
}  // namespace

TEST(Outcome, RealRepliesGetTheirCategory) {
  ASSERT_GE(sizeof kReal / sizeof kReal[0], 40u);
  for (const Real& r : kReal) {
    smtpbulk_category_t got = cat(r.code >= 500 ? REJ : FAIL, r.err, r.code, r.enh, r.text);
    EXPECT_STREQ(smtpbulk_category_name(got), smtpbulk_category_name(r.want)) << r.text;
  }
}

TEST(Outcome, RealRepliesThrottleAsSplitFieldsAndAsRawReplies) {
  for (const Real& r : kReal) {
    EXPECT_EQ(throttles(r.code, r.enh, r.text), r.want == THR) << r.text;
    EXPECT_EQ(throttles(r.code, nullptr, raw(r)), r.want == THR) << raw(r);
  }
}

TEST(Outcome, CustomPatternsReplaceTheDefaults) {
  const char* const mine[] = {"Slow Down", "", nullptr}, *const none[] = {nullptr};
  EXPECT_EQ(throttles(451, "", "please SLOW DOWN now", mine), 1);
  EXPECT_EQ(throttles(451, "", "rate limited", mine), 0);   // a default, not in mine
  EXPECT_EQ(throttles(451, "4.7.1", "anything", mine), 1);  // the codes still count
  EXPECT_EQ(throttles(421, "", "Too many concurrent SMTP connections", none), 0);
  EXPECT_EQ(throttles(421, "4.4.5", "", none), 1);
  EXPECT_EQ(throttles(451, "", "x", mine + 1), 0);  // "" would match anything: skipped
  EXPECT_EQ(cat(FAIL, SRV, 451, "", "slow down", mine), THR);
  EXPECT_EQ(cat(FAIL, SRV, 451, "", "throttled", mine), SOFT);
}

TEST(Outcome, NullAndEmptyTexts) {
  EXPECT_EQ(sb_reply_throttles(421, nullptr, 0, nullptr, 0, nullptr), 0);
  EXPECT_EQ(sb_reply_throttles(421, nullptr, 0, nullptr, 99, nullptr), 0);
  EXPECT_EQ(sb_reply_throttles(421, "4.7.0", 5, nullptr, 0, nullptr), 1);
  EXPECT_EQ(sb_reply_throttles(450, "", 0, "", 0, nullptr), 0);
  EXPECT_EQ(cat(REJ, SRV, 550, nullptr, nullptr), OTHER);
  EXPECT_EQ(cat(REJ, SRV, 550, "5.1.1", nullptr), HARD);
  EXPECT_EQ(cat(FAIL, SRV, 451, "", ""), SOFT);
  EXPECT_EQ(cat(FAIL, SHUT, 421, nullptr, nullptr), NET);
}

TEST(Outcome, OnlyTheFour4xxCodesThrottle) {
  for (int code : {221, 250, 354, 432, 454, 471, 500, 550, 552, 554})
    EXPECT_EQ(throttles(code, "", "rate limited, throttled, too many connections"), 0) << code;
  EXPECT_EQ(throttles(550, "5.7.1", "mail has been temporarily rate limited"), 0);
  for (int code : {421, 450, 451, 452}) EXPECT_EQ(throttles(code, "", "throttled"), 1);
}

TEST(Outcome, EnhancedCodesThatThrottleOrNot) {
  // Never 4.5.3: OpenSMTPD's per-session cap, worded as engine/smtp_reply.h quotes it.
  EXPECT_EQ(throttles(452, "4.5.3", "Too many recipients: Too many messages sent"), 0);
  EXPECT_EQ(throttles(452, "4.5.3", "rate limit exceeded"), 0);
  EXPECT_EQ(throttles(452, nullptr, "452 4.5.3 rate limit exceeded\r\n"), 0);
  EXPECT_EQ(throttles(421, "4.3.2", "System not accepting network messages"), 1);
  EXPECT_EQ(throttles(421, "5.7.1", "x"), 0);        // a 5.x.x code on a 4xx is ignored
  EXPECT_EQ(throttles(421, "4.7.x", "x"), 0);        // not a code
  EXPECT_EQ(throttles(451, nullptr, "4.7.1 x"), 1);  // the text without its basic code
  EXPECT_EQ(throttles(451, "4.7.1", "Graylisted, come back in 5 minutes"), 0);
}

TEST(Outcome, ReadsNoFurtherThanTextLen) {
  std::string t = "451 please try later, rate limit";
  EXPECT_EQ(sb_reply_throttles(451, nullptr, 0, t.data(), t.size(), nullptr), 1);
  EXPECT_EQ(sb_reply_throttles(451, nullptr, 0, t.data(), t.size() - 1, nullptr), 0);
  EXPECT_EQ(sb_reply_throttles(451, "4.7.10", 5, "x", 1, nullptr), 1);  // "4.7.1" only
  std::string lng = std::string(100000, 'x') + "throttled";  // passed unterminated
  EXPECT_EQ(sb_reply_throttles(421, nullptr, 0, lng.data(), lng.size(), nullptr), 1);
  EXPECT_EQ(sb_reply_throttles(421, nullptr, 0, lng.data(), lng.size() - 3, nullptr), 0);
  const char code_at_end[] = {'4', '5', '1', ' ', '4', '.', '7', '.', '1'};
  EXPECT_EQ(sb_reply_throttles(451, nullptr, 0, code_at_end, 9, nullptr), 1);
  EXPECT_EQ(sb_reply_throttles(451, nullptr, 0, code_at_end, 8, nullptr), 0);  // "4.7."
}

TEST(Outcome, DefaultPatternsMissGreylistingCapsAndServerTrouble) {
  ASSERT_NE(sb_throttle_patterns_default[0], nullptr);
  for (const char* const* p = sb_throttle_patterns_default; *p; p++)
    EXPECT_EQ(throttles(451, "", *p), 1) << *p;
  for (const char* t : {"Try again later", "too many messages in this connection",
                        "Temporary local problem - please try later", "Greylisted",
                        "Message temporarily deferred", "Insufficient system storage"})
    EXPECT_EQ(throttles(451, "", t), 0) << t;
}

TEST(Outcome, EveryErrorCodeWithoutAReply) {
  const struct { int err; smtpbulk_category_t want; } kErr[] = {
      {SMTPBULK_EBADADDR, LOCAL},   {SMTPBULK_EBADPARAM, LOCAL}, {SMTPBULK_ESEQUENCE, LOCAL},
      {SMTPBULK_ENOHOST, LOCAL},    {SMTPBULK_ERESOLVE, NET},    {SMTPBULK_ESTOPPED, LOCAL},
      {SMTPBULK_EPROTO, PROTO},     {SMTPBULK_ETOOLONG, PROTO},  {SMTPBULK_ECLOSED, NET},
      {SMTPBULK_EGREETING, PROTO},  {SMTPBULK_EHELLO, PROTO},    {SMTPBULK_EMSGSIZE, BIG},
      {SMTPBULK_EHOSTDOWN, NET},    {SMTPBULK_ECANCELLED, LOCAL}, {SMTPBULK_EBACKEND, LOCAL},
      {SMTPBULK_ESERVER, SOFT},     {SMTPBULK_EUTF8, PROTO},     {SMTPBULK_ETIMEDOUT, NET},
      {SMTPBULK_ESHUTDOWN, NET},    {SMTPBULK_ETLS, NET},        {SMTPBULK_ECERT, NET},
      {SMTPBULK_ENOSTARTTLS, NET},  {SMTPBULK_EAUTH, POL},       {SMTPBULK_EAUTHTEMP, SOFT},
      {SMTPBULK_EAUTHMECH, POL},    {SMTPBULK_EAUTHPLAIN, POL},  {SMTPBULK_ETLSCONFIG, LOCAL},
      {SMTPBULK_EBREAKER, LOCAL},
      {SMTPBULK_ESOURCE, LOCAL},    {SMTPBULK_ENOLMTP, PROTO},   {SMTPBULK_ENODSN, LOCAL},
      {SMTPBULK_ETOKEN, LOCAL},
  };  // ESERVER without its reply: by the status (FAILED)
  std::set<int> seen;
  for (const auto& e : kErr) {
    seen.insert(e.err);
    EXPECT_EQ(cat(FAIL, e.err, 0, "", ""), e.want) << e.err;
  }
  for (int code = SMTPBULK_ETOKEN; code <= SMTPBULK_EBADADDR; code++)  // the newest first
    EXPECT_TRUE(seen.count(code)) << "no row for " << code;
  EXPECT_EQ(cat(REJ, SRV, 0, "", ""), OTHER);
  EXPECT_EQ(cat(FAIL, -1099, 0, "", ""), SOFT);  // a code from a later version
  for (int e : {ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENETUNREACH, EHOSTUNREACH, EPIPE,
                ECONNABORTED, ENETDOWN, EIO})
    EXPECT_EQ(cat(FAIL, -e, 0, nullptr, nullptr), NET) << e;
  for (int e : {ENOMEM, EMFILE, ENFILE, EINVAL, ECANCELED, EACCES})
    EXPECT_EQ(cat(FAIL, -e, 0, nullptr, nullptr), LOCAL) << e;
}

TEST(Outcome, StatusAndPrecedence) {
  EXPECT_EQ(cat(SMTPBULK_DELIVERED, 0, 250, "2.0.0", "Ok"), DELIV);
  EXPECT_EQ(cat(SMTPBULK_PARTIAL, SRV, 550, "5.1.1", "unknown"), DELIV);
  EXPECT_EQ(cat(SMTPBULK_CANCELLED, 0, 0, "", ""), LOCAL);
  EXPECT_EQ(cat(SMTPBULK_TIMED_OUT, 0, 0, "", ""), NET);
  EXPECT_EQ(cat(FAIL, 0, 0, "", ""), SOFT);
  EXPECT_EQ(cat((smtpbulk_status_t)42, 0, 0, "", ""), OTHER);
  // This side gave up, whatever the last reply said.
  EXPECT_EQ(cat(FAIL, SMTPBULK_EBREAKER, 451, "4.7.0", "rate limited"), LOCAL);
  // A reply decides over the error that carried it; a 2xx is no refusal.
  EXPECT_EQ(cat(FAIL, SMTPBULK_EAUTH, 535, "5.7.8", "Bad credentials"), POL);
  EXPECT_EQ(cat(FAIL, SMTPBULK_EAUTHTEMP, 454, "4.7.0", "Temporary auth failure"), SOFT);
  EXPECT_EQ(cat(FAIL, SMTPBULK_EGREETING, 554, "", "No SMTP service here"), OTHER);
  EXPECT_EQ(cat(FAIL, SMTPBULK_ECLOSED, 250, "2.0.0", "Ok"), NET);
  // X.0.x says nothing, so the text decides; an invalid enh is ignored.
  EXPECT_EQ(cat(REJ, SRV, 550, "5.0.0", "User unknown"), HARD);
  EXPECT_EQ(cat(REJ, SRV, 550, "5.1.1x", "x"), OTHER);
  // The enhanced code decides over the text; the sender's 5.1.8 is no hard bounce.
  EXPECT_EQ(cat(REJ, SRV, 550, "5.7.1", "User unknown"), POL);
  EXPECT_EQ(cat(REJ, SRV, 553, "5.1.8", "Sender address rejected: Domain not found"), POL);
  EXPECT_EQ(cat(FAIL, SRV, 452, "4.3.4", "too big"), BIG);
  // Without one: size, then policy, then a full mailbox, then no such mailbox.
  EXPECT_EQ(cat(REJ, SRV, 550, "", "Mailbox is full"), SOFT);
  EXPECT_EQ(cat(REJ, SRV, 550, "", "Sender verify failed: user unknown"), POL);
  EXPECT_EQ(cat(REJ, SRV, 500, "", "User unknown"), PROTO);
}

TEST(Outcome, CategoryNames) {
  const char* const want[] = {"delivered", "hard_bounce", "soft",    "throttled", "policy",
                              "too_large", "protocol",    "network", "local",     "other"};
  for (int c = SMTPBULK_CAT_DELIVERED; c <= SMTPBULK_CAT_OTHER; c++)
    EXPECT_STREQ(smtpbulk_category_name((smtpbulk_category_t)c), want[c]) << c;
  EXPECT_STREQ(smtpbulk_category_name((smtpbulk_category_t)10), "unknown");
  EXPECT_STREQ(smtpbulk_category_name((smtpbulk_category_t)-1), "unknown");
}

TEST(ReplyCategory, OneRecipientsReply) {
  smtpbulk_reply_t r = {550, "5.1.1", "The email account that you tried to reach does not exist"};
  EXPECT_EQ(smtpbulk_reply_category(&r), SMTPBULK_CAT_HARD_BOUNCE);
  r = {451, "4.7.650", "The mail server has been temporarily rate limited"};
  EXPECT_EQ(smtpbulk_reply_category(&r), SMTPBULK_CAT_THROTTLED);
  r = {250, "2.1.5", "Ok"};
  EXPECT_EQ(smtpbulk_reply_category(&r), SMTPBULK_CAT_DELIVERED);
  r = {0, "", ""};
  EXPECT_EQ(smtpbulk_reply_category(&r), SMTPBULK_CAT_OTHER);
  EXPECT_EQ(smtpbulk_reply_category(nullptr), SMTPBULK_CAT_OTHER);
}
