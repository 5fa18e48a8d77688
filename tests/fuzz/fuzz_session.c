/* Fuzz the session state machine with arbitrary server bytes: it must never crash,
 * every message it is given must end exactly once (done or requeued), and so must every
 * one-off command (VRFY, HELP, ...: sess_command) it is handed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "session.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
	struct sb_msg *msgs[4];
	int given, ended[4];
	int hold;             /* no message until a command ended (so one finds it idle) */
	int cmds, cmd_ends;   /* commands sent, and ends reported */
	int cmd_open;         /* one is out: its end is owed */
};

static int idx_of(struct ctx *c, struct sb_msg *m)
{
	for (int i = 0; i < 4; i++)
		if (c->msgs[i] == m)
			return i;
	abort();
}

static struct sb_msg *next(void *p, struct sess *s)
{
	struct ctx *c = p;
	(void)s;
	if (c->hold)
		return NULL;
	return c->given < 4 ? c->msgs[c->given++] : NULL;
}

static void done(void *p, struct sess *s, struct sb_msg *m, smtpbulk_status_t st, int err)
{
	struct ctx *c = p;
	(void)s, (void)st, (void)err;
	if (c->ended[idx_of(c, m)]++)
		abort(); /* a second result */
}

static void requeue(void *p, struct sess *s, struct sb_msg *m)
{
	done(p, s, m, SMTPBULK_FAILED, 0);
}

static void command(void *p, struct sess *s, const struct smtp_reply *r, int err)
{
	struct ctx *c = p;
	(void)s;
	if (!c->cmd_open || (r && err) || (!r && !err))
		abort(); /* an end nobody asked for, or one that is neither reply nor error */
	c->cmd_open = 0;
	c->cmd_ends++;
	c->hold = 0;
}

static const struct sess_ops ops = {
	.next_msg = next, .done = done, .requeue = requeue, .defer = requeue,
	.command = command,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sess_cfg cfg = {
		.hello = "fuzz.test", .max_attempts = 2, .retry_fail = 3, .retry_hang = 1,
		.window = 4,
	};
	struct ctx c;
	struct sess s;
	const char *rc[] = {"a@x", "b@x"};
	memset(&c, 0, sizeof(c));
	for (int i = 0; i < 4; i++) {
		smtpbulk_message_t m = {sizeof(m), "s@x", rc, 1 + (size_t)(i & 1),
					i & 2 ? ".x\nb" : "x\r\n", 4, -1, 0, NULL};
		if (sb_msg_new(NULL, &m, &c.msgs[i]))
			abort();
	}
	static const struct sess_auth auth = {
		.mech = SESS_AUTH_AUTO, .user = "fuzz", .secret = "pw", .allow_plaintext = 1,
	};
	int secure_byte = 0, use_clock = 0, use_cmds = 0;
	if (size > 0) { /* the first byte picks the pipeline mode and window */
		cfg.pipeline = data[0] % 3;
		cfg.window = 1 + (data[0] / 3) % 4;
		secure_byte = data[0] & 0x80; /* (inputs below 0x80 keep their old meaning) */
		data++;
		size--;
	}
	int more_byte = 0;
	if (secure_byte && size > 0) { /* then a byte for the Secure mode and AUTH */
		cfg.secure = data[0] % 6;
		cfg.auth = (data[0] / 6) & 1 ? &auth : NULL;
		more_byte = data[0] & 0x80; /* (below 0x80: as before) */
		data++;
		size--;
	}
	if (more_byte && size > 0) { /* then LMTP, 4xx-recipient retries, a clock */
		cfg.lmtp = data[0] & 1;
		cfg.retry_temp_rcpts = (data[0] >> 1) & 1;
		use_clock = (data[0] >> 2) & 1;
		use_cmds = (data[0] >> 3) & 1; /* then a chunk byte's 0x40 sends a command */
		data++;
		size--;
	}
	if (sess_init(&s, &cfg, &ops, &c, 0, 0))
		abort();
	static uint64_t clock_ns; /* a worker's clock: it moves on with every chunk */
	if (use_clock)
		s.clock = &clock_ns;
	c.hold = use_cmds;
	sess_connecting(&s);
	sess_connected(&s, 0);
	size_t off = 0;
	while (off < size && s.state != SESS_CLOSED && s.state != SESS_DEAD) {
		struct iovec iov[4];
		int n;
		/* Drain what the session wants to send, as a socket would. */
		for (int guard = 0; guard < 64 && (n = sess_output(&s, iov, 4)) > 0; guard++) {
			size_t t = 0;
			for (int i = 0; i < n; i++)
				t += iov[i].iov_len;
			sess_sent(&s, t);
		}
		size_t cap;
		if (sess_wants_tls(&s)) /* the worker's handshake, done at once */
			sess_tls_up(&s);
		if (use_cmds && sess_is_idle(&s)) {
			/* As the connection layer: an idle session takes a command, or pulls. */
			static const char *const lines[] = {"NOOP\r\n", "HELP\r\n", "VRFY x\r\n",
							    "ETRN @x\r\n"};
			const char *l = lines[c.cmds & 3]; /* in turn */
			if ((data[off] & 0x40) && sess_command(&s, l, strlen(l)) == 0) {
				c.cmds++;
				c.cmd_open = 1;
			} else if (!(data[off] & 0x40)) {
				sess_pump(&s);
			}
		}
		for (int guard = 0; guard < 64 && (n = sess_output(&s, iov, 4)) > 0; guard++) {
			size_t t = 0;
			for (int i = 0; i < n; i++)
				t += iov[i].iov_len;
			sess_sent(&s, t);
		}
		if (data[off] == 0x7f) { /* the watchdog's verdict, at any point */
			sess_hang(&s);
			break;
		}
		clock_ns += 1000 + data[off];
		size_t chunk = 1 + data[off] % 64;
		int pooled = data[off] & 0x80; /* as from io_uring's buffer pool */
		off++;
		if (chunk > size - off)
			chunk = size - off;
		if (pooled) {
			char pool[64];
			memcpy(pool, data + off, chunk);
			off += chunk;
			sess_feed(&s, pool, chunk);
			memset(pool, 'X', sizeof(pool)); /* reused: nothing may point here */
			continue;
		}
		char *p = sess_rspace(&s, &cap);
		if (!p)
			abort();
		if (chunk > cap)
			chunk = cap;
		memcpy(p, data + off, chunk);
		off += chunk;
		sess_input(&s, chunk);
	}
	sess_abort(&s, SMTPBULK_CANCELLED, 0);
	if (c.cmd_ends != c.cmds || c.cmd_open)
		abort(); /* a command sent but never ended */
	for (int i = 0; i < c.given; i++)
		if (c.ended[i] != 1)
			abort(); /* a message taken but never ended */
	sess_fini(&s);
	for (int i = 0; i < 4; i++)
		sb_msg_free(c.msgs[i]);
	return 0;
}
