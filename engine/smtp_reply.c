#include "smtp_reply.h"

#include <ctype.h>
#include <string.h>

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* One line: find its end; returns the length up to and including LF, 0 if not there. */
static size_t line_end(const char *p, size_t len, size_t *content_len)
{
	const char *lf = memchr(p, '\n', len);
	if (!lf)
		return 0;
	size_t n = (size_t)(lf - p);
	*content_len = (n > 0 && p[n - 1] == '\r') ? n - 1 : n;
	return n + 1;
}

size_t smtp_enhanced_code_len(const char *s, size_t len, int cls)
{
	/* class "." 1*3digit "." 1*3digit (RFC 3463) */
	size_t i = 0;
	if (len < 5 || s[0] != (char)('0' + cls) || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && is_digit(s[i]) && i - start < 3)
			i++;
		if (i == start)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r)
{
	size_t off = 0;
	int code = -1;
	unsigned nlines = 0;

	for (;;) {
		const char *p = buf + off;
		size_t avail = len - off;
		size_t clen = 0;
		size_t n = line_end(p, avail < SMTP_REPLY_LINE_MAX ? avail : SMTP_REPLY_LINE_MAX,
				    &clen);
		if (n == 0) {
			if (avail >= SMTP_REPLY_LINE_MAX)
				return SMTP_REPLY_ETOOLONG;
			/* Reject garbage early rather than waiting for a line end. */
			for (size_t i = 0; i < avail && i < 3; i++)
				if (!is_digit(p[i]))
					return SMTP_REPLY_EMALFORMED;
			if (avail > 3 && p[3] != ' ' && p[3] != '-' && p[3] != '\r')
				return SMTP_REPLY_EMALFORMED;
			if (off + avail >= SMTP_REPLY_MAX)
				return SMTP_REPLY_ETOOLONG;
			return SMTP_REPLY_NEED_MORE;
		}
		if (clen < 3 || !is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]))
			return SMTP_REPLY_EMALFORMED;
		int c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (c < 200 || c > 599)
			return SMTP_REPLY_EMALFORMED;
		if (code >= 0 && c != code)
			return SMTP_REPLY_EMALFORMED; /* RFC 5321: every line carries the same code */
		code = c;
		int last;
		if (clen == 3 || p[3] == ' ')
			last = 1;
		else if (p[3] == '-')
			last = 0;
		else
			return SMTP_REPLY_EMALFORMED;
		for (size_t i = 0; i < clen; i++)
			if (p[i] == '\0' || p[i] == '\r')
				return SMTP_REPLY_EMALFORMED;
		nlines++;
		off += n;
		if (off > SMTP_REPLY_MAX)
			return SMTP_REPLY_ETOOLONG;
		if (last)
			break;
	}

	r->code = code;
	r->raw = buf;
	r->raw_len = off;
	r->nlines = nlines;
	r->enh = NULL;
	r->enh_len = 0;
	size_t clen = 0;
	line_end(buf, off, &clen);
	if (clen > 4) {
		size_t el = smtp_enhanced_code_len(buf + 4, clen - 4, code / 100);
		if (el) {
			r->enh = buf + 4;
			r->enh_len = el;
		}
	}
	return (int)off;
}

int smtp_reply_next_line(const struct smtp_reply *r, size_t *pos, int skip_enh,
			 const char **text, size_t *text_len)
{
	if (*pos >= r->raw_len)
		return 0;
	const char *p = r->raw + *pos;
	size_t clen = 0;
	size_t n = line_end(p, r->raw_len - *pos, &clen);
	if (n == 0)
		return 0;
	*pos += n;
	const char *t = p + 3;
	size_t tl = clen - 3;
	if (tl > 0) { /* the ' ' or '-' separator */
		t++;
		tl--;
	}
	if (skip_enh) {
		size_t el = smtp_enhanced_code_len(t, tl, r->code / 100);
		if (el) {
			t += el;
			tl -= el;
			if (tl > 0 && *t == ' ') {
				t++;
				tl--;
			}
		}
	}
	*text = t;
	*text_len = tl;
	return 1;
}

/* Does a line of r's text hold needle (lower case), whatever its case? */
static int text_has(const struct smtp_reply *r, const char *needle)
{
	const size_t nl = strlen(needle);
	size_t pos = 0, len;
	const char *t;
	while (smtp_reply_next_line(r, &pos, 1, &t, &len))
		for (size_t i = 0; i + nl <= len; i++) {
			size_t k = 0;
			while (k < nl && tolower((unsigned char)t[i + k]) == needle[k])
				k++;
			if (k == nl)
				return 1;
		}
	return 0;
}

int smtp_reply_says_too_many(const struct smtp_reply *r)
{
	if (r->code / 100 != 4)
		return 0;
	if (r->enh && r->enh_len == 5 && memcmp(r->enh, "4.5.3", 5) == 0)
		return 1;
	return text_has(r, "too many");
}

int smtp_reply_too_many_rcpts(const struct smtp_reply *r)
{
	/* RFC 5321 §4.5.3.1.10: 452; RFC 821 said 552, which a client is to take as
	 * the same temporary refusal. */
	if (r->code != 452 && r->code != 552)
		return 0;
	if (r->enh && r->enh_len == 5 && memcmp(r->enh + 1, ".5.3", 4) == 0)
		return 1;
	return text_has(r, "too many recipients");
}
