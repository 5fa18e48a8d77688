// SASL client mechanisms against the RFCs' own examples.
#include <gtest/gtest.h>

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
  EXPECT_EQ(sasl_mech_from_name("cram-md5", 8), SASL_CRAM_MD5);
  EXPECT_STREQ(sasl_mech_name(SASL_SCRAM_SHA_256), "SCRAM-SHA-256");
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
