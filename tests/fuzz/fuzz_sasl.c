/* Fuzz the SASL client with arbitrary server challenges: the first byte picks the
 * mechanism, the rest is split at '\n' into successive 334 texts. It must never crash,
 * overrun its output, or answer after an error. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum sasl_mech mechs[] = {SASL_PLAIN, SASL_LOGIN, SASL_CRAM_MD5, SASL_XOAUTH2,
					       SASL_SCRAM_SHA_256, SASL_OAUTHBEARER};
	struct sasl_client c;
	char out[SASL_LINE_MAX];
	if (size == 0)
		return 0;
	enum sasl_mech m = mechs[data[0] % (sizeof(mechs) / sizeof(mechs[0]))];
	if (sasl_start(&c, m, "user", "pencil", "rOprNGfwEbeRWgbNEkqO", out, sizeof(out)) <= 0)
		abort();
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		int n = sasl_step(&c, p, len, out, sizeof(out));
		if (n >= (int)sizeof(out))
			abort();
		if (n > 0 && (n < 2 || memcmp(out + n - 2, "\r\n", 2) != 0))
			abort(); /* every answer is one CRLF-terminated line */
		if (n < 0)
			break;
		p += len + (nl ? 1 : 0);
	}
	sasl_finish(&c, "", 0);
	sasl_clear(&c);
	return 0;
}
