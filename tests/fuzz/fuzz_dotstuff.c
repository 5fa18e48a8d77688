/* Fuzz the dot-stuffer: whatever the body, the output has CRLF line ends only and
 * exactly one end-of-data, at its very end; split points do not change it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t run(const char *in, size_t len, size_t piece, char *out)
{
	struct dotstuff d;
	size_t o = 0, off = 0;
	dotstuff_init(&d);
	while (off < len) {
		size_t chunk = len - off < piece ? len - off : piece, used;
		size_t done = 0;
		while (done < chunk) {
			o += dotstuff_run(&d, in + off + done, chunk - done, &used, out + o, 16);
			done += used;
		}
		off += chunk;
	}
	return o + dotstuff_finish(&d, out + o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *a = malloc(size * DOTSTUFF_MAX_EXPANSION + 16 + DOTSTUFF_FINISH_MAX);
	char *b = malloc(size * DOTSTUFF_MAX_EXPANSION + 16 + DOTSTUFF_FINISH_MAX);
	if (!a || !b)
		abort();
	size_t na = run((const char *)data, size, size ? size : 1, a);
	size_t nb = run((const char *)data, size, 1 + (size % 7), b);
	if (na != nb || memcmp(a, b, na) != 0)
		abort();
	if (na < 3 || memcmp(a + na - 3, ".\r\n", 3) != 0)
		abort();
	for (size_t i = 0; i < na; i++) {
		if (a[i] == '\n' && (i == 0 || a[i - 1] != '\r'))
			abort(); /* bare LF */
		if (a[i] == '\r' && (i + 1 >= na || a[i + 1] != '\n'))
			abort(); /* bare CR */
		/* A line that starts with "." before the end must be stuffed (".."). */
		if ((i == 0 || a[i - 1] == '\n') && a[i] == '.' && i + 3 != na && a[i + 1] != '.')
			abort();
	}
	if (dotstuff_is_clean((const char *)data, size) &&
	    (na != size + 3 || memcmp(a, data, size) != 0))
		abort();
	free(a);
	free(b);
	return 0;
}
