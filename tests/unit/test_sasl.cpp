// SASL client mechanisms against the RFCs' own examples.
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

extern "C" {
#include "sasl.h"
#include "smtpbulk.h"
}

namespace {

std::string start(sasl_client* c, sasl_mech m, const char* user, const char* secret,
                  const char* nonce = nullptr) {
  char out[SASL_LINE_MAX];
  int n = sasl_start(c, m, user, secret, nonce, out, sizeof(out));
  EXPECT_GT(n, 0);
  return n > 0 ? std::string(out, (size_t)n) : "";
}

std::string step(sasl_client* c, const std::string& challenge, int* rc = nullptr) {
  char out[SASL_LINE_MAX];
  int n = sasl_step(c, challenge.data(), challenge.size(), out, sizeof(out));
  if (rc) *rc = n;
  return n >= 0 ? std::string(out, (size_t)n) : "";
}

}  // namespace

TEST(Sasl, Plain) {
  sasl_client c;
  // "\0tim\0tanstaaftanstaaf"
  EXPECT_EQ(start(&c, SASL_PLAIN, "tim", "tanstaaftanstaaf"),
            "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n");
  int rc;
  step(&c, "", &rc);
  EXPECT_EQ(rc, SASL_EDONE);
}

TEST(Sasl, Login) {
  sasl_client c;
  EXPECT_EQ(start(&c, SASL_LOGIN, "tim", "secret"), "AUTH LOGIN\r\n");
  EXPECT_EQ(step(&c, "VXNlcm5hbWU6"), "dGlt\r\n");      // "Username:" -> "tim"
  EXPECT_EQ(step(&c, "UGFzc3dvcmQ6"), "c2VjcmV0\r\n");  // "Password:" -> "secret"
}

TEST(Sasl, CramMd5Rfc2195) {
  sasl_client c;
  EXPECT_EQ(start(&c, SASL_CRAM_MD5, "tim", "tanstaaftanstaaf"), "AUTH CRAM-MD5\r\n");
  // The challenge "<1896.697170952@postoffice.reston.mci.net>" and its answer
  // "tim b913a602c7eda7a495b4e6e7334d3890", both base64, from RFC 2195.
  EXPECT_EQ(step(&c, "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
}

TEST(Sasl, Xoauth2) {
  sasl_client c;
  // "user=someuser@example.com\1auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\1\1"
  EXPECT_EQ(start(&c, SASL_XOAUTH2, "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            "AUTH XOAUTH2 dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRx"
            "bVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n");
  EXPECT_EQ(step(&c, "eyJzdGF0dXMiOiI0MDEifQ=="), "\r\n");  // an error report: answer empty
}

namespace {

// RFC 7628 §4.1's token.
constexpr const char* kRfcToken = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

std::string start_token(sasl_client* c, sasl_mech m, const char* user, const std::string& token,
                        const char* host, unsigned port, int* rc = nullptr) {
  char out[SASL_LINE_MAX];
  int n = sasl_start_token(c, m, user, token.data(), token.size(), host, port, out, sizeof(out));
  if (rc) *rc = n;
  return n > 0 ? std::string(out, (size_t)n) : "";
}

std::string b64(const std::string& raw) {
  char out[SASL_LINE_MAX];
  int n = sasl_b64_line("", raw.data(), raw.size(), out, sizeof(out));
  return n > 2 ? std::string(out, (size_t)n - 2) : "";
}

}  // namespace

TEST(Sasl, OauthbearerRfc7628Example) {
  sasl_client c;
  // §4.1 (IMAP, port 143): "n,a=user@example.com,^Ahost=server.example.com^Aport=143^A
  // auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==^A^A", base64 as the RFC prints it.
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "user@example.com", kRfcToken,
                        "server.example.com", 143),
            "AUTH OAUTHBEARER bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBv"
            "cnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
            "\r\n");
  // §4.3: the server's error report {"status":"invalid_token","scope":"example_scope",
  // "openid-configuration":"https://example.com/.well-known/openid-configuration"} is
  // answered with a single ^A ("AQ=="), and nothing after it.
  int rc;
  EXPECT_EQ(step(&c,
                 "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZp"
                 "Z3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=",
                 &rc),
            "AQ==\r\n");
  EXPECT_EQ(c.step, 1u);  // the session tells a refusal after the report by this
  step(&c, "", &rc);
  EXPECT_EQ(rc, SASL_EDONE);
  sasl_clear(&c);
  EXPECT_EQ(c.secret[0], '\0');
}

TEST(Sasl, OauthbearerHostAndPortAreOptionalAndTheNameIsEscaped) {
  sasl_client c;
  // The SMTP submission port, as in the RFC's SMTP example.
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "user@example.com", kRfcToken,
                        "server.example.com", 587),
            "AUTH OAUTHBEARER " +
                b64(std::string("n,a=user@example.com,\1host=server.example.com\1port=587\1"
                                "auth=Bearer ") + kRfcToken + "\1\1") + "\r\n");
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "u@e.com", "tok", nullptr, 0),
            "AUTH OAUTHBEARER " + b64("n,a=u@e.com,\1auth=Bearer tok\1\1") + "\r\n");
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "u@e.com", "tok", "mx.test", 0),
            "AUTH OAUTHBEARER " + b64("n,a=u@e.com,\1host=mx.test\1auth=Bearer tok\1\1") + "\r\n");
  // ',' and '=' are GS2 syntax (RFC 5801 saslname).
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "a,b=c", "tok", nullptr, 0),
            "AUTH OAUTHBEARER " + b64("n,a=a=2Cb=3Dc,\1auth=Bearer tok\1\1") + "\r\n");
  // No user: no authzid.
  EXPECT_EQ(start_token(&c, SASL_OAUTHBEARER, "", "tok", nullptr, 0),
            "AUTH OAUTHBEARER " + b64("n,,\1auth=Bearer tok\1\1") + "\r\n");
  // Through sasl_start, the static secret: no host, no port.
  EXPECT_EQ(start(&c, SASL_OAUTHBEARER, "u@e.com", "tok"),
            "AUTH OAUTHBEARER " + b64("n,a=u@e.com,\1auth=Bearer tok\1\1") + "\r\n");
}

TEST(Sasl, TokenMechanismsRefuseWhatWouldBreakTheFraming) {
  sasl_client c;
  int rc;
  for (sasl_mech m : {SASL_XOAUTH2, SASL_OAUTHBEARER}) {
    for (std::string bad : {std::string(""), std::string("to\1ken"), std::string("a b"),
                            std::string("tok\r\nMAIL FROM:<x>"), std::string("t\0k", 3),
                            std::string("t\x80k")}) {
      start_token(&c, m, "u", bad, nullptr, 0, &rc);
      EXPECT_EQ(rc, SMTPBULK_EBADPARAM) << sasl_mech_name(m) << " token of " << bad.size();
    }
    start_token(&c, m, "u\1x", "tok", nullptr, 0, &rc);
    EXPECT_EQ(rc, SMTPBULK_EBADPARAM);
    start_token(&c, m, "u", "tok", "mx\1test", 0, &rc);
    EXPECT_EQ(rc, SMTPBULK_EBADPARAM);
    start_token(&c, m, "u", std::string(SASL_TOKEN_MAX + 1, 'a'), nullptr, 0, &rc);
    EXPECT_EQ(rc, SMTPBULK_EBADPARAM);
    // A token of SASL_TOKEN_MAX fits with a short name; with the longest name and host
    // the line would pass RFC 4954's 12,288 octets: -ENOSPC, not a line the server refuses.
    std::string line = start_token(&c, m, "u", std::string(SASL_TOKEN_MAX, 'a'), "mx.test", 25, &rc);
    EXPECT_GT(rc, 0);
    EXPECT_LE(line.size(), (size_t)SASL_LINE_MAX);
    std::string longname(SASL_NAME_MAX, ',');  // escaped to three times its length
    line = start_token(&c, m, longname.c_str(), std::string(SASL_TOKEN_MAX, 'a'),
                       std::string(SASL_NAME_MAX, 'h').c_str(), 65535, &rc);
    if (m == SASL_OAUTHBEARER)
      EXPECT_EQ(rc, -ENOSPC);
    else  // XOAUTH2 has no host and no escaping: its longest line fits
      EXPECT_LE(line.size(), (size_t)SASL_LINE_MAX);
  }
  char out[SASL_LINE_MAX];
  EXPECT_EQ(sasl_start_token(&c, SASL_PLAIN, "u", "t", 1, nullptr, 0, out, sizeof(out)), -EINVAL);
  // A 2 KB token (a JWT's size) through sasl_start's static secret path too.
  std::string jwt = "eyJ0eXAiOiJKV1Qi." + std::string(2000, 'x') + ".sig-_~+/=";
  EXPECT_EQ(start(&c, SASL_XOAUTH2, "u", jwt.c_str()),
            "AUTH XOAUTH2 " + b64("user=u\1auth=Bearer " + jwt + "\1\1") + "\r\n");
}

TEST(Sasl, ScramSha256Rfc7677) {
  sasl_client c;
  // RFC 7677 §3: user "user", password "pencil", client nonce "rOprNGfwEbeRWgbNEkqO".
  EXPECT_EQ(start(&c, SASL_SCRAM_SHA_256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO"),
            "AUTH SCRAM-SHA-256 biwsbj11c2VyLHI9ck9wck5HZndFYmVSV2diTkVrcU8=\r\n");
  // server-first "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
  std::string sf = "cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=";
  // client-final "c=biws,r=...$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
  EXPECT_EQ(step(&c, sf),
            "Yz1iaXdzLHI9ck9wck5HZndFYmVSV2diTkVrcU8laHZZRHBXVWEyUmFUQ0FmdXhGSWxqKWhObEYkazAscD1k"
            "SHpiWmFwV0lrNGpVaE4rVXRlOXl0YWc5empmTUhnc3FtbWl6N0FuZFZRPQ==\r\n");
  // server-final "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
  EXPECT_EQ(step(&c, "dj02cnJpVFJCaTIzV3BSUi93dHVwK21NaFVaVW4vZEI1bkxUSlJzamw5NUc0PQ=="), "\r\n");
  EXPECT_EQ(sasl_finish(&c, "", 0), 0);
}

TEST(Sasl, ScramRefusesAWrongServerSignatureAndAForeignNonce) {
  sasl_client c;
  start(&c, SASL_SCRAM_SHA_256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  step(&c, "cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=");
  int rc;
  step(&c, "dj1BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE9", &rc);  // v=AAAA...
  EXPECT_EQ(rc, SASL_ESERVERPROOF);
  // A server nonce that does not extend ours ("r=other,s=...,i=4096").
  start(&c, SASL_SCRAM_SHA_256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  step(&c, "cj1vdGhlcixzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=", &rc);
  EXPECT_EQ(rc, SASL_EBADCHALLENGE);
  // A 235 without the server's proof does not count as success.
  start(&c, SASL_SCRAM_SHA_256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  step(&c, "cj1yT3ByTkdmd0ViZVJXZ2JORWtxTyVodllEcFdVYTJSYVRDQWZ1eEZJbGopaE5sRiRrMCxzPVcyMlphSjBTTlk3c29Fc1VFamI2Z1E9PSxpPTQwOTY=");
  EXPECT_EQ(sasl_finish(&c, "2.7.0 Authentication successful", 31), SASL_ESERVERPROOF);
}

TEST(Sasl, ScramRandomNonceAndEscapedName) {
  sasl_client a, b;
  std::string la = start(&a, SASL_SCRAM_SHA_256, "a,b=c", "pw");
  std::string lb = start(&b, SASL_SCRAM_SHA_256, "a,b=c", "pw");
  EXPECT_NE(la, lb);  // fresh nonces
  EXPECT_NE(std::string(a.first_bare).find("n=a=2Cb=3Dc,r="), std::string::npos);
  EXPECT_EQ(strlen(a.cnonce), 24u);
  sasl_clear(&a);
  EXPECT_EQ(a.secret[0], '\0');
}

TEST(Sasl, PickAndNames) {
  EXPECT_EQ(sasl_pick(SASL_PLAIN | SASL_LOGIN | SASL_CRAM_MD5 | SASL_SCRAM_SHA_256),
            SASL_SCRAM_SHA_256);
  EXPECT_EQ(sasl_pick(SASL_PLAIN | SASL_LOGIN | SASL_CRAM_MD5), SASL_CRAM_MD5);
  EXPECT_EQ(sasl_pick(SASL_LOGIN | SASL_PLAIN), SASL_PLAIN);
  EXPECT_EQ(sasl_pick(SASL_XOAUTH2), SASL_NONE);  // needs a token: only by name
  EXPECT_EQ(sasl_pick(SASL_OAUTHBEARER | SASL_XOAUTH2), SASL_NONE);
  EXPECT_EQ(sasl_pick(SASL_OAUTHBEARER | SASL_LOGIN), SASL_LOGIN);
  EXPECT_EQ(sasl_mech_from_name("cram-md5", 8), SASL_CRAM_MD5);
  EXPECT_EQ(sasl_mech_from_name("OAUTHBEARER", 11), SASL_OAUTHBEARER);
  EXPECT_EQ(sasl_mech_from_name("oauthbearer", 11), SASL_OAUTHBEARER);
  EXPECT_STREQ(sasl_mech_name(SASL_SCRAM_SHA_256), "SCRAM-SHA-256");
  EXPECT_STREQ(sasl_mech_name(SASL_OAUTHBEARER), "OAUTHBEARER");
  EXPECT_TRUE(sasl_is_token(SASL_XOAUTH2) && sasl_is_token(SASL_OAUTHBEARER));
  EXPECT_FALSE(sasl_is_token(SASL_PLAIN) || sasl_is_token(SASL_SCRAM_SHA_256));
}

TEST(Sasl, BadInput) {
  sasl_client c;
  char out[64];
  EXPECT_EQ(sasl_start(&c, SASL_PLAIN, "a\r\nMAIL", "p", nullptr, out, sizeof(out)),
            SMTPBULK_EBADPARAM);
  EXPECT_EQ(sasl_start(&c, SASL_PLAIN, std::string(300, 'u').c_str(), "p", nullptr, out,
                       sizeof(out)),
            SMTPBULK_EBADPARAM);
  start(&c, SASL_CRAM_MD5, "tim", "x");
  int rc;
  step(&c, "not base64!!", &rc);
  EXPECT_EQ(rc, SASL_EBADCHALLENGE);
}
