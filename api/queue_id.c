/* The server's queue id in a final reply: a few markers real servers use, tried in
 * order, each followed (or preceded) by an id token. Pure: a function over a string. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "smtpbulk_send.h"

#define ID_MAX 127

static int id_char(int c)
{
	return isalnum(c) || (c && strchr(".-_@:+=/", c));
}

/* The token at p (after blanks), without a trailing '.', ':' or ',' (sentence ends):
 * its length, 0 if none or too long. */
static size_t token_at(const char *p, const char **start)
{
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = 0;
	while (id_char((unsigned char)p[n]))
		n++;
	while (n && strchr(".:,", p[n - 1]))
		n--;
	*start = p;
	return n <= ID_MAX ? n : 0;
}

/* Case-insensitive strstr. */
static const char *find(const char *hay, const char *needle)
{
	size_t n = strlen(needle);
	for (; *hay; hay++)
		if (strncasecmp(hay, needle, n) == 0)
			return hay;
	return NULL;
}

static int all_digits(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)p[i]))
			return 0;
	return n > 0;
}

static int has_digit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isdigit((unsigned char)p[i]))
			return 1;
	return 0;
}

/* "MARKER id": the token behind a marker. */
static size_t after(const char *text, const char *marker, const char **id)
{
	const char *m = find(text, marker);
	return m ? token_at(m + strlen(marker), id) : 0;
}

/* The token just before " Message accepted" (Sendmail, OpenSMTPD): the last word. */
static size_t before_accepted(const char *text, const char **id)
{
	const char *m = find(text, " message accepted");
	if (!m)
		return 0;
	const char *e = m;
	while (e > text && id_char((unsigned char)e[-1]))
		e--;
	size_t n = (size_t)(m - e);
	*id = e;
	/* Not a status word: an id has a digit ("Ok Message accepted" has none). */
	return n <= ID_MAX && has_digit(e, n) ? n : 0;
}

/* Gmail: "OK  1701234567 d9443c01a7336-...si123.45 - gsmtp": the token after a Unix
 * time. SES: "Ok 0100018c2b6f4f1d-..." (a long token with digits). */
static size_t after_ok(const char *text, const char **id)
{
	const char *p = text;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "ok", 2) != 0 || (p[2] != ' ' && p[2] != '\t'))
		return 0;
	const char *t;
	size_t n = token_at(p + 2, &t);
	if (n && all_digits(t, n) && n >= 9) { /* a time: the id comes next */
		size_t m = token_at(t + n, id);
		return m && has_digit(*id, m) ? m : 0;
	}
	*id = t;
	return n >= 16 && has_digit(t, n) ? n : 0;
}

/* Haraka and others: "Message Queued (ID)" or "queued (ID)". */
static size_t in_parens(const char *text, const char **id)
{
	const char *m = find(text, "queued (");
	if (!m)
		return 0;
	size_t n = token_at(m + strlen("queued ("), id);
	return n && (*id)[n] == ')' ? n : 0;
}

int smtpbulk_queue_id(const char *text, char *out, size_t cap)
{
	if (!text || !out || !cap)
		return -EINVAL;
	out[0] = '\0';
	const char *id = NULL;
	size_t n = after(text, "queued as ", &id);
	if (!n)
		n = after(text, "InternalId=", &id);
	if (!n)
		n = after(text, " id=", &id);
	if (!n && strncasecmp(text, "id=", 3) == 0)
		n = token_at(text + 3, &id);
	if (!n)
		n = in_parens(text, &id);
	if (!n)
		n = after(text, " qp ", &id);
	if (!n)
		n = before_accepted(text, &id);
	if (!n)
		n = after_ok(text, &id);
	if (!n)
		return -ENOENT;
	if (n >= cap)
		return -ENOSPC;
	memcpy(out, id, n);
	out[n] = '\0';
	return 0;
}
