#include "dotstuff.h"

#include <string.h>

void dotstuff_init(struct dotstuff *d)
{
	d->bol = 1;
	d->cr = 0;
	d->stuff = 1;
}

void dotstuff_init_crlf(struct dotstuff *d)
{
	dotstuff_init(d);
	d->stuff = 0;
}

size_t dotstuff_run(struct dotstuff *d, const char *in, size_t in_len, size_t *consumed,
		    char *out, size_t out_cap)
{
	size_t i = 0, o = 0;

	while (i < in_len && out_cap - o >= DOTSTUFF_MAX_EXPANSION) {
		char c = in[i++];
		if (d->cr) {
			d->cr = 0;
			out[o++] = '\r';
			out[o++] = '\n';
			d->bol = 1;
			if (c == '\n')
				continue; /* CRLF: already written */
		}
		if (c == '\r') {
			d->cr = 1;
			continue;
		}
		if (c == '\n') { /* bare LF */
			out[o++] = '\r';
			out[o++] = '\n';
			d->bol = 1;
			continue;
		}
		if (c == '.' && d->bol && d->stuff)
			out[o++] = '.';
		out[o++] = c;
		d->bol = 0;
	}
	*consumed = i;
	return o;
}

size_t dotstuff_finish(struct dotstuff *d, char *out)
{
	size_t o = 0;
	if (d->cr || !d->bol) {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	d->cr = 0;
	d->bol = 1;
	if (!d->stuff)
		return o;
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

int dotstuff_is_canonical(const char *body, size_t len)
{
	if (len == 0)
		return 1;
	if (len < 2 || body[len - 2] != '\r' || body[len - 1] != '\n')
		return 0;
	/* Every body passes through here at submit, so two memchr() passes (vectorised
	 * in libc) rather than a byte loop: each LF must follow a CR, each CR precede an
	 * LF. The last two bytes are CRLF, so p[1] below is always in bounds. */
	const char *end = body + len, *p;
	for (p = body; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
		if (p == body || p[-1] != '\r')
			return 0;
	for (p = body; (p = memchr(p, '\r', (size_t)(end - p))) != NULL; p++)
		if (p[1] != '\n')
			return 0;
	return 1;
}

int dotstuff_is_clean(const char *body, size_t len)
{
	return dotstuff_is_canonical(body, len) && !dotstuff_has_dot_line(body, len);
}

size_t dotstuff_wire_size(const char *body, size_t len)
{
	size_t n = len;
	for (size_t i = 0; i < len; i++) {
		if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r'))
			n++; /* bare LF: gains a CR */
		else if (body[i] == '\r' && (i + 1 == len || body[i + 1] != '\n'))
			n++; /* bare CR: gains an LF */
	}
	if (len && body[len - 1] != '\n' && body[len - 1] != '\r')
		n += 2; /* a final CRLF is added */
	return n;
}

int dotstuff_has_dot_line(const char *body, size_t len)
{
	if (len && body[0] == '.')
		return 1;
	for (const char *p = body; (p = memchr(p, '\n', len - (size_t)(p - body))) != NULL;) {
		p++;
		if (p == body + len)
			break;
		if (*p == '.')
			return 1;
	}
	return 0;
}
