/* Fuzz the reply parser and the capability parser over arbitrary server bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_caps.h"
#include "smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;
	while (off < size) {
		struct smtp_reply r;
		int n = smtp_reply_parse(buf + off, size - off, &r);
		if (n <= 0)
			break;
		if ((size_t)n > size - off || r.code < 200 || r.code > 599 || r.raw != buf + off)
			abort();
		if (r.enh && (r.enh < buf + off || r.enh + r.enh_len > buf + off + n))
			abort();
		size_t pos = 0, tl, lines = 0;
		const char *t;
		while (smtp_reply_next_line(&r, &pos, 1, &t, &tl)) {
			if (t < buf + off || t + tl > buf + off + n)
				abort();
			lines++;
		}
		if (lines != r.nlines)
			abort();
		struct smtp_caps caps;
		smtp_caps_parse(&r, &caps);
		off += (size_t)n;
	}
	return 0;
}
