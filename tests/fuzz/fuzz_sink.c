/* Fuzz the sink's server state machine with arbitrary client bytes, split at arbitrary
 * points: no crash, output bounded, and the same replies for any split. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sink_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t run(const uint8_t *data, size_t size, size_t piece, char *out, size_t cap)
{
	static struct sink_conn c; /* 8 KiB of output buffer: keep it off the stack */
	struct sink_cfg cfg = {
		/* AUTH on for inputs whose first byte is odd: both paths get fuzzed */
		.name = "fuzz", .size_max = 1000, .auth_user = size && (data[0] & 1) ? "u" : NULL,
		.auth_pass = "p",
		/* STARTTLS offered when the second bit is set (what follows it is dropped in
		 * any split alike: the handshake is the server loop's, not fuzzed here) */
		.starttls = size && (data[0] & 2),
		.faults = {10, 10, 10, 10, 10, 10, 0, 0, 0, 0, size && (data[0] & 4)},
		/* LMTP (a reply per recipient after the data) on the fourth bit, a limit of
		 * two recipients (452 4.5.3 beyond) on the fifth */
		.lmtp = size && (data[0] & 8),
		.max_rcpts = size && (data[0] & 16) ? 2 : 0,
	};
	size_t o = 0, off = 0;
	sink_conn_init(&c, &cfg, 42);
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;
		size_t used = sink_input(&c, (const char *)data + off, n);
		if (c.out_len > SINK_OUT_MAX)
			abort();
		if (o + c.out_len > cap)
			abort();
		memcpy(out + o, c.out, c.out_len);
		o += c.out_len;
		c.out_len = 0;
		off += used;
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char a[1 << 22], b[1 << 22];
	if (size > 8192)
		return 0;
	size_t na = run(data, size, size ? size : 1, a, sizeof(a));
	size_t nb = run(data, size, 1 + size % 13, b, sizeof(b));
	if (na != nb || memcmp(a, b, na) != 0)
		abort();
	return 0;
}
