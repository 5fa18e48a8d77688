#include "sasl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/md5.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "smtpbulk.h"

/* A server that asks for more PBKDF2 rounds than this is refused: the worker would
 * spend its time there instead of sending (RFC 7677 suggests 4096; 200,000 is ~60 ms). */
#define SCRAM_MAX_ITER 200000

static const struct {
	enum sasl_mech m;
	const char *name;
} names[] = {
	{SASL_PLAIN, "PLAIN"},     {SASL_LOGIN, "LOGIN"},
	{SASL_CRAM_MD5, "CRAM-MD5"}, {SASL_XOAUTH2, "XOAUTH2"},
	{SASL_SCRAM_SHA_256, "SCRAM-SHA-256"}, {SASL_OAUTHBEARER, "OAUTHBEARER"},
};

const char *sasl_mech_name(enum sasl_mech m)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].m == m)
			return names[i].name;
	return NULL;
}

enum sasl_mech sasl_mech_from_name(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == len && !strncasecmp(names[i].name, name, len))
			return names[i].m;
	return SASL_NONE;
}

enum sasl_mech sasl_pick(unsigned offered)
{
	static const enum sasl_mech pref[] = {SASL_SCRAM_SHA_256, SASL_CRAM_MD5, SASL_PLAIN,
					      SASL_LOGIN};
	for (size_t i = 0; i < sizeof(pref) / sizeof(pref[0]); i++)
		if (offered & pref[i])
			return pref[i];
	return SASL_NONE;
}

int sasl_b64_line(const char *prefix, const void *in, size_t len, char *out, size_t cap)
{
	size_t pl = strlen(prefix);
	if (pl + 4 * ((len + 2) / 3) + 3 > cap)
		return -ENOSPC;
	memcpy(out, prefix, pl);
	word32 n = (word32)(cap - pl - 2);
	if (len > 0 && Base64_Encode_NoNl(in, (word32)len, (byte *)out + pl, &n) != 0)
		return -ENOSPC;
	if (len == 0)
		n = 0;
	memcpy(out + pl + n, "\r\n", 3);
	return (int)(pl + n + 2);
}

/* wolfCrypt's decoder passes over characters outside the alphabet: check first. */
static int b64_valid(const char *in, size_t len)
{
	if (len % 4)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char ch = in[i];
		int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			 (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
			 (ch == '=' && i + 2 >= len && (i + 1 == len || in[i + 1] == '='));
		if (!ok)
			return 0;
	}
	return 1;
}

int sasl_b64_decode(const char *in, size_t len, char *out, size_t cap)
{
	while (len && (in[len - 1] == '\r' || in[len - 1] == '\n' || in[len - 1] == ' '))
		len--;
	if (len == 0) {
		out[0] = '\0';
		return 0;
	}
	word32 n = (word32)(cap - 1);
	if (len > cap || !b64_valid(in, len) ||
	    Base64_Decode((const byte *)in, (word32)len, (byte *)out, &n) != 0)
		return SASL_EBADCHALLENGE;
	out[n] = '\0';
	return (int)n;
}

static int hmac(int type, const void *key, size_t klen, const void *msg, size_t mlen,
		uint8_t *out)
{
	Hmac h;
	int rc = wc_HmacInit(&h, NULL, INVALID_DEVID);
	if (rc == 0)
		rc = wc_HmacSetKey(&h, type, key, (word32)klen);
	if (rc == 0)
		rc = wc_HmacUpdate(&h, msg, (word32)mlen);
	if (rc == 0)
		rc = wc_HmacFinal(&h, out);
	wc_HmacFree(&h);
	return rc ? -EIO : 0;
}

/* RFC 5802 saslname: ',' and '=' escaped. */
static int saslname(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	for (; *in; in++) {
		const char *s = *in == ',' ? "=2C" : *in == '=' ? "=3D" : NULL;
		size_t k = s ? 3 : 1;
		if (n + k >= cap)
			return -ENOSPC;
		memcpy(out + n, s ? s : in, k);
		n += k;
	}
	out[n] = '\0';
	return (int)n;
}

static int copy_name(char *dst, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (!src || n > SASL_NAME_MAX || strpbrk(src, "\r\n"))
		return SMTPBULK_EBADPARAM;
	memcpy(dst, src, n + 1);
	return 0;
}

/* A bearer token: visible ASCII only, so it can end neither a kvpair (^A) nor the
 * line. RFC 6750's b64token (JWTs, Google's "ya29." tokens) is a subset: the check
 * keeps out only what would break the framing. */
static int token_ok(const char *t, size_t n)
{
	if (n == 0 || n > SASL_TOKEN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			return 0;
	return 1;
}

static int has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

int sasl_start_token(struct sasl_client *c, enum sasl_mech mech, const char *user,
		     const char *token, size_t token_len, const char *host, unsigned port,
		     char *out, size_t cap)
{
	/* The largest response that still fits SASL_LINE_MAX once in base64. */
	char buf[SASL_LINE_MAX / 4 * 3];
	int rc, n;
	memset(c, 0, sizeof(*c));
	if (!sasl_is_token(mech))
		return -EINVAL;
	if ((rc = copy_name(c->user, user)) != 0)
		return rc;
	if (has_ctl(c->user) || !token || !token_ok(token, token_len) ||
	    (host && (strlen(host) > SASL_NAME_MAX || has_ctl(host))) || port > 65535)
		return SMTPBULK_EBADPARAM;
	memcpy(c->secret, token, token_len);
	c->secret[token_len] = '\0';
	c->mech = mech;
	if (mech == SASL_XOAUTH2) {
		n = snprintf(buf, sizeof(buf), "user=%s\001auth=Bearer %s\001\001", c->user,
			     c->secret);
	} else { /* RFC 7628 §3.1: a GS2 header (RFC 5801), then key=value pairs */
		char name[3 * SASL_NAME_MAX + 1], portkv[16] = "";
		if (saslname(c->user, name, sizeof(name)) < 0)
			return -ENOSPC;
		if (port)
			snprintf(portkv, sizeof(portkv), "port=%u\001", port);
		n = snprintf(buf, sizeof(buf), "n,%s%s,\001%s%s%s%sauth=Bearer %s\001\001",
			     *name ? "a=" : "", name, host ? "host=" : "", host ? host : "",
			     host ? "\001" : "", portkv, c->secret);
	}
	const char *prefix = mech == SASL_XOAUTH2 ? "AUTH XOAUTH2 " : "AUTH OAUTHBEARER ";
	if (n < 0 || (size_t)n >= sizeof(buf) ||
	    strlen(prefix) + 4 * (((size_t)n + 2) / 3) + 2 > SASL_LINE_MAX)
		rc = -ENOSPC;
	else
		rc = sasl_b64_line(prefix, buf, (size_t)n, out, cap);
	explicit_bzero(buf, sizeof(buf)); /* it held the token */
	return rc;
}

int sasl_start(struct sasl_client *c, enum sasl_mech mech, const char *user,
	       const char *secret, const char *nonce, char *out, size_t cap)
{
	char buf[2 * SASL_NAME_MAX + 128];
	int rc;
	if (sasl_is_token(mech))
		return sasl_start_token(c, mech, user, secret, secret ? strlen(secret) : 0, NULL,
					0, out, cap);
	memset(c, 0, sizeof(*c));
	if ((rc = copy_name(c->user, user)) != 0 || (rc = copy_name(c->secret, secret)) != 0)
		return rc;
	c->mech = mech;
	size_t ul = strlen(c->user), sl = strlen(c->secret);
	switch (mech) {
	case SASL_PLAIN: /* authzid empty, authcid, password: RFC 4616 */
		buf[0] = '\0';
		memcpy(buf + 1, c->user, ul);
		buf[1 + ul] = '\0';
		memcpy(buf + 2 + ul, c->secret, sl);
		rc = sasl_b64_line("AUTH PLAIN ", buf, 2 + ul + sl, out, cap);
		memset(buf, 0, sizeof(buf)); /* it held the password */
		return rc;
	case SASL_LOGIN:
		return sasl_b64_line("AUTH LOGIN", "", 0, out, cap);
	case SASL_CRAM_MD5:
		return sasl_b64_line("AUTH CRAM-MD5", "", 0, out, cap);
	case SASL_SCRAM_SHA_256: {
		if (nonce) {
			if (strlen(nonce) >= sizeof(c->cnonce) || strchr(nonce, ','))
				return -EINVAL;
			strcpy(c->cnonce, nonce);
		} else { /* 18 random bytes: 24 base64 characters, no padding, no ',' */
			WC_RNG rng;
			uint8_t raw[18];
			word32 n = sizeof(c->cnonce) - 1;
			if (wc_InitRng(&rng) != 0)
				return -EIO;
			rc = wc_RNG_GenerateBlock(&rng, raw, sizeof(raw));
			wc_FreeRng(&rng);
			if (rc != 0 || Base64_Encode_NoNl(raw, sizeof(raw), (byte *)c->cnonce, &n) != 0)
				return -EIO;
			c->cnonce[n] = '\0';
		}
		char name[3 * SASL_NAME_MAX + 1];
		if (saslname(c->user, name, sizeof(name)) < 0)
			return -ENOSPC;
		int n = snprintf(c->first_bare, sizeof(c->first_bare), "n=%s,r=%s", name, c->cnonce);
		if (n < 0 || (size_t)n >= sizeof(c->first_bare))
			return -ENOSPC;
		n = snprintf(buf, sizeof(buf), "n,,%s", c->first_bare); /* no channel binding */
		return sasl_b64_line("AUTH SCRAM-SHA-256 ", buf, (size_t)n, out, cap);
	}
	default:
		return -EINVAL;
	}
}

/* The value of attribute k ("k=value") at the start of s, up to ',' or the end. */
static const char *attr(const char *s, char k, size_t *len)
{
	if (s[0] != k || s[1] != '=')
		return NULL;
	const char *e = strchr(s, ',');
	*len = e ? (size_t)(e - s - 2) : strlen(s + 2);
	return s + 2;
}

static int scram_first(struct sasl_client *c, const char *sf, char *out, size_t cap)
{
	size_t rl, sl, il;
	const char *r = attr(sf, 'r', &rl);
	if (!r)
		return SASL_EBADCHALLENGE; /* an "m=" extension or garbage */
	const char *s = r[rl] == ',' ? attr(r + rl + 1, 's', &sl) : NULL;
	const char *i = s && s[sl] == ',' ? attr(s + sl + 1, 'i', &il) : NULL;
	size_t cl = strlen(c->cnonce);
	if (!s || !i || rl <= cl || memcmp(r, c->cnonce, cl) != 0 || il == 0 || il > 9)
		return SASL_EBADCHALLENGE; /* the server's nonce must extend ours */
	long iter = 0;
	for (size_t k = 0; k < il; k++) {
		if (i[k] < '0' || i[k] > '9')
			return SASL_EBADCHALLENGE;
		iter = iter * 10 + (i[k] - '0');
	}
	if (iter < 1 || iter > SCRAM_MAX_ITER)
		return SASL_EBADCHALLENGE;
	uint8_t salt[128];
	word32 saltn = sizeof(salt);
	if (sl == 0 || !b64_valid(s, sl) ||
	    Base64_Decode((const byte *)s, (word32)sl, salt, &saltn) != 0)
		return SASL_EBADCHALLENGE;

	uint8_t salted[32], ckey[32], skey[32], stored[32], csig[32], proof[32];
	int rc = -EIO;
	if (wc_PBKDF2(salted, (const byte *)c->secret, (int)strlen(c->secret), salt, (int)saltn,
		      (int)iter, 32, WC_SHA256) != 0)
		goto out;
	if (hmac(WC_SHA256, salted, 32, "Client Key", 10, ckey) ||
	    wc_Sha256Hash(ckey, 32, stored) != 0 || hmac(WC_SHA256, salted, 32, "Server Key", 10, skey))
		goto out;
	char final[600], am[1600];
	int fl = snprintf(final, sizeof(final), "c=biws,r=%.*s", (int)rl, r);
	int al = snprintf(am, sizeof(am), "%s,%s,%s", c->first_bare, sf, final);
	if (fl < 0 || (size_t)fl >= sizeof(final) || al < 0 || (size_t)al >= sizeof(am)) {
		rc = SASL_EBADCHALLENGE;
		goto out;
	}
	if (hmac(WC_SHA256, stored, 32, am, (size_t)al, csig) ||
	    hmac(WC_SHA256, skey, 32, am, (size_t)al, c->server_sig))
		goto out;
	for (int k = 0; k < 32; k++)
		proof[k] = ckey[k] ^ csig[k];
	word32 pn = (word32)(sizeof(final) - (size_t)fl - 4);
	memcpy(final + fl, ",p=", 3);
	if (Base64_Encode_NoNl(proof, 32, (byte *)final + fl + 3, &pn) != 0)
		goto out;
	rc = sasl_b64_line("", final, (size_t)fl + 3 + pn, out, cap);
out:
	memset(salted, 0, sizeof(salted));
	memset(ckey, 0, sizeof(ckey));
	memset(skey, 0, sizeof(skey));
	memset(stored, 0, sizeof(stored));
	memset(proof, 0, sizeof(proof));
	return rc;
}

/* "v=base64(ServerSignature)" must match what we computed. */
static int scram_verify(struct sasl_client *c, const char *sfinal)
{
	size_t vl;
	const char *v = attr(sfinal, 'v', &vl);
	uint8_t sig[64];
	word32 n = sizeof(sig);
	if (!v || !b64_valid(v, vl) || Base64_Decode((const byte *)v, (word32)vl, sig, &n) != 0 ||
	    n != 32)
		return SASL_ESERVERPROOF;
	unsigned diff = 0;
	for (int k = 0; k < 32; k++)
		diff |= sig[k] ^ c->server_sig[k];
	return diff ? SASL_ESERVERPROOF : 0;
}

int sasl_step(struct sasl_client *c, const char *challenge, size_t len, char *out, size_t cap)
{
	char dec[SASL_LINE_MAX];
	int n = sasl_b64_decode(challenge, len, dec, sizeof(dec));
	if (n < 0)
		return n;
	c->step++;
	switch (c->mech) {
	case SASL_LOGIN: /* "Username:" then "Password:"; the prompts' wording varies */
		if (c->step == 1)
			return sasl_b64_line("", c->user, strlen(c->user), out, cap);
		if (c->step == 2)
			return sasl_b64_line("", c->secret, strlen(c->secret), out, cap);
		return SASL_EDONE;
	case SASL_CRAM_MD5: {
		if (c->step != 1 || n == 0)
			return c->step != 1 ? SASL_EDONE : SASL_EBADCHALLENGE;
		char resp[SASL_NAME_MAX + 40];
		size_t ul = strlen(c->user);
		memcpy(resp, c->user, ul);
		resp[ul] = ' ';
		if (sasl_cram_md5_hex(c->secret, dec, (size_t)n, resp + ul + 1))
			return -EIO;
		return sasl_b64_line("", resp, ul + 33, out, cap);
	}
	case SASL_XOAUTH2: /* an error report (JSON): answer empty to get the final 535 */
		return c->step == 1 ? sasl_b64_line("", "", 0, out, cap) : SASL_EDONE;
	case SASL_OAUTHBEARER: /* the same, answered with one ^A (RFC 7628 §3.2.3) */
		return c->step == 1 ? sasl_b64_line("", "\001", 1, out, cap) : SASL_EDONE;
	case SASL_SCRAM_SHA_256:
		if (c->step == 1)
			return scram_first(c, dec, out, cap);
		if (c->step == 2) { /* server-final: check it, then an empty response */
			int rc = scram_verify(c, dec);
			return rc ? rc : sasl_b64_line("", "", 0, out, cap);
		}
		return SASL_EDONE;
	default: /* PLAIN sent everything in its initial response */
		return SASL_EDONE;
	}
}

int sasl_cram_md5_hex(const char *secret, const char *challenge, size_t len, char hex[33])
{
	uint8_t mac[16];
	if (hmac(WC_MD5, secret, strlen(secret), challenge, len, mac))
		return -EIO;
	for (int k = 0; k < 16; k++) {
		hex[2 * k] = "0123456789abcdef"[mac[k] >> 4];
		hex[2 * k + 1] = "0123456789abcdef"[mac[k] & 15];
	}
	hex[32] = '\0';
	return 0;
}

int sasl_finish(struct sasl_client *c, const char *text, size_t len)
{
	if (c->mech != SASL_SCRAM_SHA_256 || c->step >= 2)
		return 0;
	/* The server-final message never came in a 334: it must be in the 235's text. */
	char dec[256];
	if (c->step != 1 || sasl_b64_decode(text, len, dec, sizeof(dec)) <= 0)
		return SASL_ESERVERPROOF;
	return scram_verify(c, dec);
}

void sasl_clear(struct sasl_client *c)
{
	/* volatile: the compiler must not drop a wipe of memory it sees as dead */
	volatile uint8_t *p = (volatile uint8_t *)c;
	for (size_t i = 0; i < sizeof(*c); i++)
		p[i] = 0;
}
