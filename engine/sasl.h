/*
 * SASL client mechanisms for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5, XOAUTH2,
 * OAUTHBEARER (RFC 7628) and SCRAM-SHA-256 (RFC 5802, RFC 7677). Pure functions over
 * buffers: the session sends
 * what sasl_start()/sasl_step() write and feeds back the server's 334 challenges; the
 * primitives (HMAC, SHA-256, PBKDF2, MD5, base64, random) are wolfCrypt's.
 *
 * Ownership: a sasl_client belongs to one session (one worker thread). It holds the
 * secret: sasl_clear() wipes it.
 */
#ifndef SB_SASL_H
#define SB_SASL_H

#include <stddef.h>
#include <stdint.h>

enum sasl_mech {
	SASL_NONE = 0,
	SASL_PLAIN = 1u << 0,
	SASL_LOGIN = 1u << 1,
	SASL_CRAM_MD5 = 1u << 2,
	SASL_XOAUTH2 = 1u << 3,
	SASL_SCRAM_SHA_256 = 1u << 4,
	SASL_OAUTHBEARER = 1u << 5,
};

/* The mechanisms whose secret is an OAuth 2.0 bearer token (RFC 6750). */
static inline int sasl_is_token(enum sasl_mech m)
{
	return m == SASL_XOAUTH2 || m == SASL_OAUTHBEARER;
}

/* Longest client line we write (base64 + CRLF): RFC 4954 §4's limit for an AUTH
 * command, so an initial response that fits never meets a server's refusal. */
#define SASL_LINE_MAX 12288
#define SASL_NAME_MAX 255
/* Longest bearer token: access tokens are opaque, and a JWT with many claims (Microsoft
 * Entra's) runs to a few kilobytes. With a user and host of SASL_NAME_MAX the AUTH line
 * may not fit SASL_LINE_MAX any more: sasl_start_token() then says -ENOSPC. */
#define SASL_TOKEN_MAX 8192

/* Errors, below -1100 so they never meet -errno or SMTPBULK_E*. */
enum sasl_error {
	SASL_EBADCHALLENGE = -1101, /* a challenge that is not base64 or not what the
	                               mechanism expects */
	SASL_ESERVERPROOF = -1102,  /* SCRAM: the server's signature is wrong (it does not
	                               know the password: a man in the middle) */
	SASL_EDONE = -1103,         /* a challenge after the exchange was over */
};

struct sasl_client {
	enum sasl_mech mech;
	unsigned step;
	char user[SASL_NAME_MAX + 1];
	char secret[SASL_TOKEN_MAX + 1]; /* password, or the bearer token (XOAUTH2,
	                                    OAUTHBEARER) */
	/* SCRAM-SHA-256 state */
	char cnonce[48];
	char first_bare[2 * SASL_NAME_MAX + 64]; /* "n=user,r=cnonce" */
	uint8_t server_sig[32];
};

/* Which mechanism AUTO picks from those the server offers (a mask of enum sasl_mech):
 * the strongest that needs no token (SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN); XOAUTH2
 * and OAUTHBEARER only when asked by name. SASL_NONE when none fits. */
enum sasl_mech sasl_pick(unsigned offered);
/* "PLAIN" ... "SCRAM-SHA-256", "OAUTHBEARER"; NULL for anything else. */
const char *sasl_mech_name(enum sasl_mech m);
enum sasl_mech sasl_mech_from_name(const char *name, size_t len);

/*
 * Begin: c is set up for mech with user and secret (each <= SASL_NAME_MAX bytes, no
 * NUL; a token <= SASL_TOKEN_MAX). nonce: SCRAM's client nonce (printable, no ','),
 * NULL for a random one (tests pass RFC 7677's). Writes the AUTH command line (with an
 * initial response where the mechanism has one) into out; returns its length, or a
 * negative error. XOAUTH2 and OAUTHBEARER go through sasl_start_token() without a host.
 */
int sasl_start(struct sasl_client *c, enum sasl_mech mech, const char *user,
	       const char *secret, const char *nonce, char *out, size_t cap);
/*
 * Begin XOAUTH2 or OAUTHBEARER with a bearer token of token_len bytes (1 to
 * SASL_TOKEN_MAX visible ASCII characters: RFC 6750's b64token is a subset, and
 * nothing else may stand beside RFC 7628's kvsep). The user holds no control
 * character. OAUTHBEARER (RFC 7628 §3.1):
 *   "n,a=" saslname(user) "," ^A ["host=" host ^A] ["port=" port ^A] "auth=Bearer " token ^A ^A
 * with host left out when NULL and port when 0; XOAUTH2 (Google's):
 *   "user=" user ^A "auth=Bearer " token ^A ^A
 * The AUTH line into out: its length, SMTPBULK_EBADPARAM (a token or name that does
 * not fit the grammar) or -ENOSPC (longer than SASL_LINE_MAX or cap).
 */
int sasl_start_token(struct sasl_client *c, enum sasl_mech mech, const char *user,
		     const char *token, size_t token_len, const char *host, unsigned port,
		     char *out, size_t cap);
/*
 * The server's 334 challenge text (base64, as sent after "334 "): writes the client's
 * next line into out; returns its length, or a negative error (the session then sends
 * "*\r\n" to cancel, RFC 4954 §4). For the token mechanisms a challenge is the
 * server's error report (JSON): XOAUTH2 answers it with an empty line, OAUTHBEARER
 * with a single ^A (RFC 7628 §3.2.3), and the server's final 5xx follows; c->step is
 * then nonzero.
 */
int sasl_step(struct sasl_client *c, const char *challenge, size_t len, char *out, size_t cap);
/*
 * After 235: for SCRAM, the success reply's text (RFC 4954 lets the server put its
 * final message there) must carry the right server signature, unless the server sent it
 * in a 334 already. 0 when the exchange is complete and trustworthy.
 */
int sasl_finish(struct sasl_client *c, const char *text, size_t len);
/* out = prefix + base64(in) + "\r\n", NUL-terminated: the length, or -ENOSPC. */
int sasl_b64_line(const char *prefix, const void *in, size_t len, char *out, size_t cap);
/* Strict base64 (trailing CR, LF and spaces ignored; anything else outside the
 * alphabet refused) into out, NUL-terminated: the length, or SASL_EBADCHALLENGE. */
int sasl_b64_decode(const char *in, size_t len, char *out, size_t cap);
/* CRAM-MD5's digest (RFC 2195): hex(HMAC-MD5(secret, challenge)), lower case, NUL-
 * terminated into hex[33]. 0 or -EIO. Also what a server checks (the sink does). */
int sasl_cram_md5_hex(const char *secret, const char *challenge, size_t len, char hex[33]);
/* Wipe the secret and everything derived from it. */
void sasl_clear(struct sasl_client *c);

#endif
