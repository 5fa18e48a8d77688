#include "smtp_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "smtpbulk.h"

int smtp_has_8bit(const char *s, size_t len)
{
	/* Every body passes through here at submit: eight bytes at a time. */
	const uint64_t high = 0x8080808080808080ull;
	size_t i = 0;
	for (; i + 32 <= len; i += 32) {
		uint64_t a, b, c, d;
		memcpy(&a, s + i, 8);
		memcpy(&b, s + i + 8, 8);
		memcpy(&c, s + i + 16, 8);
		memcpy(&d, s + i + 24, 8);
		if ((a | b | c | d) & high)
			return 1;
	}
	for (; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 1;
	return 0;
}

int smtp_addr_normalize(const char *in, char *out, size_t cap)
{
	if (!in)
		return SMTPBULK_EBADADDR;
	size_t len = strlen(in);
	size_t s = 0, e = len;
	while (s < e && (in[s] == ' ' || in[s] == '\t'))
		s++;
	while (e > s && (in[e - 1] == ' ' || in[e - 1] == '\t'))
		e--;
	int lb = s < e && in[s] == '<';
	int rb = e > s && in[e - 1] == '>';
	if (lb != rb)
		return SMTPBULK_EBADADDR;
	if (lb) {
		s++;
		e--;
		if (e < s)
			return SMTPBULK_EBADADDR; /* a lone "<" or ">" */
	}
	size_t n = e - s;
	if (n > SMTP_PATH_MAX)
		return SMTPBULK_EBADADDR;
	for (size_t i = s; i < e; i++) {
		unsigned char c = (unsigned char)in[i];
		/* CR/LF would end the command early; other controls, spaces and brackets break
		 * the path syntax. (A quoted local part with spaces is legal but so rare in bulk
		 * mail that refusing it beats the risk of mis-parsing.) */
		if (c < 0x21 || c == 0x7f || c == '<' || c == '>')
			return SMTPBULK_EBADADDR;
	}
	if (n + 1 > cap)
		return -ENOSPC;
	memcpy(out, in + s, n);
	out[n] = '\0';
	return (int)n;
}

int smtp_check_hello(const char *name)
{
	if (!name || !*name || strlen(name) > 255)
		return SMTPBULK_EBADPARAM;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return SMTPBULK_EBADPARAM;
	return 0;
}

static int finish(int n, size_t cap)
{
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int smtp_cmd_ehlo(char *buf, size_t cap, const char *name)
{
	int rc = smtp_check_hello(name);
	if (rc)
		return rc;
	return finish(snprintf(buf, cap, "EHLO %s\r\n", name), cap);
}

int smtp_cmd_lhlo(char *buf, size_t cap, const char *name)
{
	int rc = smtp_check_hello(name);
	if (rc)
		return rc;
	return finish(snprintf(buf, cap, "LHLO %s\r\n", name), cap);
}

int smtp_cmd_helo(char *buf, size_t cap, const char *name)
{
	int rc = smtp_check_hello(name);
	if (rc)
		return rc;
	return finish(snprintf(buf, cap, "HELO %s\r\n", name), cap);
}

/* The engine stores normalised addresses; check again so no caller can inject. */
static int check_stored(const char *a, int allow_empty)
{
	char tmp[SMTP_PATH_MAX + 1];
	int n = smtp_addr_normalize(a, tmp, sizeof(tmp));
	if (n < 0)
		return n;
	if (n == 0 && !allow_empty)
		return SMTPBULK_EBADADDR;
	return (size_t)n == strlen(a) ? 0 : SMTPBULK_EBADADDR;
}

int smtp_cmd_mail(char *buf, size_t cap, const char *from, uint64_t size, unsigned flags,
		  const char *params)
{
	char sz[32] = "";
	int rc = check_stored(from, 1);
	if (rc)
		return rc;
	if (size)
		snprintf(sz, sizeof(sz), " SIZE=%" PRIu64, size);
	return finish(snprintf(buf, cap, "MAIL FROM:<%s>%s%s%s%s\r\n", from, sz,
			       (flags & SMTP_MAIL_8BITMIME) ? " BODY=8BITMIME" : "",
			       (flags & SMTP_MAIL_SMTPUTF8) ? " SMTPUTF8" : "",
			       params ? params : ""),
		      cap);
}

int smtp_cmd_rcpt(char *buf, size_t cap, const char *rcpt, const char *params)
{
	int rc = check_stored(rcpt, 0);
	if (rc)
		return rc;
	return finish(snprintf(buf, cap, "RCPT TO:<%s>%s\r\n", rcpt, params ? params : ""), cap);
}

int smtp_xtext(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		int plain = *p >= '!' && *p <= '~' && *p != '+' && *p != '=';
		if (n + (plain ? 1 : 3) + 1 > cap)
			return -ENOSPC;
		if (plain) {
			out[n++] = (char)*p;
		} else {
			out[n++] = '+';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	if (n + 1 > cap)
		return -ENOSPC;
	out[n] = '\0';
	return (int)n;
}

int smtp_dsn_mail(char *out, size_t cap, unsigned ret, const char *envid)
{
	char x[SMTP_ENVID_MAX + 1];
	int n = 0;
	if (ret > SMTPBULK_DSN_RET_HDRS)
		return SMTPBULK_EBADPARAM;
	if (cap)
		out[0] = '\0';
	if (ret) {
		n = snprintf(out, cap, " RET=%s", ret == SMTPBULK_DSN_RET_FULL ? "FULL" : "HDRS");
		if (n < 0 || (size_t)n >= cap)
			return -ENOSPC;
	}
	if (envid && *envid) {
		if (smtp_xtext(envid, x, sizeof(x)) < 0)
			return SMTPBULK_EBADPARAM; /* too long once encoded */
		int k = snprintf(out + n, cap - (size_t)n, " ENVID=%s", x);
		if (k < 0 || (size_t)k >= cap - (size_t)n)
			return -ENOSPC;
		n += k;
	}
	return n;
}

/* An address type (RFC 3461 §4.2: an atom) and its ';', or 0. */
static size_t addr_type_len(const char *s)
{
	size_t i = 0;
	while (s[i] && (s[i] == '-' || (s[i] >= '0' && s[i] <= '9') ||
			((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')))
		i++;
	return i > 0 && s[i] == ';' ? i + 1 : 0;
}

int smtp_dsn_rcpt(char *out, size_t cap, unsigned notify, const char *orcpt)
{
	static const struct { unsigned bit; const char *word; } words[] = {
		{SMTPBULK_NOTIFY_SUCCESS, "SUCCESS"},
		{SMTPBULK_NOTIFY_FAILURE, "FAILURE"},
		{SMTPBULK_NOTIFY_DELAY, "DELAY"},
	};
	const unsigned all = SMTPBULK_NOTIFY_NEVER | SMTPBULK_NOTIFY_SUCCESS |
			     SMTPBULK_NOTIFY_FAILURE | SMTPBULK_NOTIFY_DELAY;
	char x[SMTP_ORCPT_MAX + 1];
	size_t n = 0;
	if ((notify & ~all) ||
	    ((notify & SMTPBULK_NOTIFY_NEVER) && notify != SMTPBULK_NOTIFY_NEVER))
		return SMTPBULK_EBADPARAM; /* §4.1: NEVER stands alone */
	if (cap < 1)
		return -ENOSPC;
	out[0] = '\0';
	if (notify) {
		int k = snprintf(out, cap, " NOTIFY=");
		if (k < 0 || (size_t)k >= cap)
			return -ENOSPC;
		n = (size_t)k;
		const char *sep = "";
		if (notify == SMTPBULK_NOTIFY_NEVER) {
			k = snprintf(out + n, cap - n, "NEVER");
			if (k < 0 || (size_t)k >= cap - n)
				return -ENOSPC;
			n += (size_t)k;
		}
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
			if (!(notify & words[i].bit))
				continue;
			k = snprintf(out + n, cap - n, "%s%s", sep, words[i].word);
			if (k < 0 || (size_t)k >= cap - n)
				return -ENOSPC;
			n += (size_t)k;
			sep = ",";
		}
	}
	if (orcpt && *orcpt) {
		size_t tl = addr_type_len(orcpt);
		const char *type = tl ? orcpt : "rfc822;";
		int typelen = tl ? (int)tl : 7;
		if (smtp_xtext(orcpt + tl, x, sizeof(x) - (size_t)typelen) < 0 || !orcpt[tl])
			return SMTPBULK_EBADPARAM; /* too long once encoded, or no address */
		int k = snprintf(out + n, cap - n, " ORCPT=%.*s%s", typelen, type, x);
		if (k < 0 || (size_t)k >= cap - n)
			return -ENOSPC;
		n += (size_t)k;
	}
	return (int)n;
}
