/*
 * Mail merge: {{name}} in a message template becomes its value. The substitution is
 * ours (a few lines); the RFC 2047 encoding of a header that is no longer ASCII is
 * GMime's — address headers as a list whose display names are encoded, the others as
 * unstructured text. A value never brings a line break into a header: that would let
 * a recipient list add headers (Bcc, a second To) to every message.
 */
#include <errno.h>
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gmime_once.h"
#include "smtpbulk_send.h"

struct buf {
	char *p;
	size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.';
}

static const char *lookup(const smtpbulk_var_t *vars, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (vars[i].name && strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
			return vars[i].value ? vars[i].value : "";
	return NULL;
}

/* s[0..n) into o with every {{name}} replaced; in_header: values must not break a line.
 * Text that only looks like a start ("{{" without a name and "}}") stays as it is. */
static int substitute(struct buf *o, const char *s, size_t n, const smtpbulk_var_t *vars,
		      size_t n_vars, int in_header, char *missing, size_t cap)
{
	size_t i = 0;
	while (i < n) {
		const char *open = NULL;
		for (size_t j = i; j + 1 < n; j++)
			if (s[j] == '{' && s[j + 1] == '{') {
				open = s + j;
				break;
			}
		if (!open)
			return put(o, s + i, n - i);
		size_t at = (size_t)(open - s);
		size_t a = at + 2, e;
		while (a < n && (s[a] == ' ' || s[a] == '\t'))
			a++;
		for (e = a; e < n && name_char(s[e]); e++)
			;
		size_t z = e;
		while (z < n && (s[z] == ' ' || s[z] == '\t'))
			z++;
		if (e == a || z + 1 >= n || s[z] != '}' || s[z + 1] != '}') {
			int rc = put(o, s + i, at + 2 - i); /* not a variable: keep "{{" */
			if (rc)
				return rc;
			i = at + 2;
			continue;
		}
		const char *v = lookup(vars, n_vars, s + a, e - a);
		if (!v) {
			if (missing && cap) {
				size_t k = e - a < cap - 1 ? e - a : cap - 1;
				memcpy(missing, s + a, k);
				missing[k] = '\0';
			}
			return SMTPBULK_ENOVAR;
		}
		if (in_header && strpbrk(v, "\r\n"))
			return SMTPBULK_EHEADERVAL;
		int rc = put(o, s + i, at - i);
		if (!rc)
			rc = put(o, v, strlen(v));
		if (rc)
			return rc;
		i = z + 2;
	}
	return 0;
}

static int is_address_header(const char *name, size_t len)
{
	static const char *const names[] = {
		"From", "Sender", "Reply-To", "To", "Cc", "Bcc", "Resent-From", "Resent-Sender",
		"Resent-To", "Resent-Cc", "Resent-Bcc",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return 1;
	return 0;
}

static int ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

/* One header field (its name, colon, value and folded lines, its line end included)
 * as it goes out: as it is when ASCII, else its value unfolded and encoded. */
static int encode_field(struct buf *o, const char *f, size_t n)
{
	if (ascii(f, n))
		return put(o, f, n);
	const char *colon = memchr(f, ':', n);
	if (!colon)
		return SMTPBULK_EMESSAGE;
	size_t name_len = (size_t)(colon - f);
	while (name_len && (f[name_len - 1] == ' ' || f[name_len - 1] == '\t'))
		name_len--;
	int crlf = n >= 2 && f[n - 2] == '\r' && f[n - 1] == '\n';
	/* The value, unfolded (a line break before a blank is no break: RFC 5322 2.2.3). */
	struct buf v = {0};
	int rc = 0;
	for (const char *p = colon + 1; p < f + n && !rc; p++)
		if (*p != '\r' && *p != '\n')
			rc = put(&v, p, 1);
	if (rc) {
		free(v.p);
		return rc;
	}
	const char *val = v.p ? v.p : "";
	while (*val == ' ' || *val == '\t')
		val++;
	char *enc = NULL;
	if (is_address_header(f, name_len)) {
		InternetAddressList *l = internet_address_list_parse(NULL, val);
		if (l) {
			enc = internet_address_list_to_string(l, NULL, TRUE);
			g_object_unref(l);
		}
		if (!enc)
			rc = SMTPBULK_EMESSAGE; /* not addresses: no guess at what was meant */
	} else {
		enc = g_mime_utils_header_encode_text(NULL, val, "utf-8");
		if (!enc)
			rc = -ENOMEM;
	}
	free(v.p);
	if (!rc)
		rc = put(o, f, name_len);
	if (!rc)
		rc = put(o, ": ", 2);
	if (!rc)
		rc = put(o, enc, strlen(enc));
	if (!rc)
		rc = crlf ? put(o, "\r\n", 2) : put(o, "\n", 1);
	g_free(enc);
	return rc;
}

/* The end of the line starting at i (after its LF), or n. */
static size_t line_end(const char *s, size_t n, size_t i)
{
	const char *lf = memchr(s + i, '\n', n - i);
	return lf ? (size_t)(lf - s) + 1 : n;
}

static int blank_line(const char *s, size_t i, size_t e)
{
	return (e - i == 1 && s[i] == '\n') || (e - i == 2 && s[i] == '\r' && s[i + 1] == '\n');
}

int smtpbulk_template_render(const char *tpl, size_t len, const smtpbulk_var_t *vars,
			     size_t n_vars, char **out, size_t *out_len, char *missing,
			     size_t missing_cap)
{
	if (!tpl || !out || !out_len || (n_vars && !vars))
		return -EINVAL;
	*out = NULL;
	*out_len = 0;
	if (missing && missing_cap)
		missing[0] = '\0';
	sb_gmime_once();
	struct buf o = {0}, field = {0};
	int rc = 0;
	size_t i = 0;
	/* The header: field by field (a field is its line and the folded ones after it). */
	while (i < len && !rc) {
		size_t e = line_end(tpl, len, i);
		if (blank_line(tpl, i, e))
			break;
		while (e < len && (tpl[e] == ' ' || tpl[e] == '\t'))
			e = line_end(tpl, len, e);
		field.len = 0;
		rc = substitute(&field, tpl + i, e - i, vars, n_vars, 1, missing, missing_cap);
		if (!rc && field.len)
			rc = encode_field(&o, field.p, field.len);
		i = e;
	}
	/* The blank line and the body, values as they are. */
	if (!rc && i < len)
		rc = substitute(&o, tpl + i, len - i, vars, n_vars, 0, missing, missing_cap);
	free(field.p);
	if (!rc && !o.p)
		rc = put(&o, "", 0);
	if (rc) {
		free(o.p);
		return rc;
	}
	*out = o.p;
	*out_len = o.len;
	return 0;
}
