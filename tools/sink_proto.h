/*
 * The sink's SMTP server state machine: pure, over buffers. It reads whatever the
 * client sent (commands, pipelined groups, DATA bodies, BDAT chunks) and appends the
 * replies to the connection's output buffer; the server loop only moves bytes.
 * Ownership: a sink_conn belongs to one sink thread; sink_cfg is read-only.
 */
#ifndef SB_SINK_PROTO_H
#define SB_SINK_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct sink_rate;

/* Fault injection: each is a percentage (0-100) of the commands concerned. */
struct sink_faults {
	unsigned reject_mail, tempfail_mail;
	unsigned reject_rcpt, tempfail_rcpt;
	unsigned reject_data, tempfail_data; /* the final reply after DATA or BDAT LAST */
	unsigned close_after; /* close a connection after this many messages (0 = never) */
	unsigned hang_after;  /* stop answering after this many messages (0 = never) */
	unsigned delay_pct;   /* replies held back for delay_ms before they are sent */
	unsigned delay_ms;
	int starttls_inject;  /* a fake "250" reply right behind the 220 to STARTTLS, in
	                         plaintext (RFC 3207 §6 response injection): clients must
	                         ignore it */
};

struct sink_cfg {
	const char *name;        /* the name in the greeting and EHLO reply */
	/* AUTH (PLAIN, LOGIN, CRAM-MD5) with this one account; NULL: no AUTH. When set,
	 * MAIL needs a successful AUTH first (530 otherwise). */
	const char *auth_user, *auth_pass;
	uint64_t size_max;       /* SIZE advertised */
	int starttls;            /* offer STARTTLS (the server loop does the handshake) */
	int lmtp;                /* speak LMTP (RFC 2033): LHLO, one reply per recipient
	                            after the data */
	unsigned max_rcpts;      /* recipients a transaction takes, then 452 4.5.3 (as
	                            Postfix's smtpd_recipient_limit); 0: no limit (LMTP
	                            keeps at most SINK_LMTP_RCPTS) */
	/* --max-rate and the per-second counts, shared by every connection of every thread
	 * (sink_rate.h); NULL: neither (unit tests that do not ask for them). */
	struct sink_rate *rate;
	struct sink_faults faults;
};

/* Counters one connection adds to its thread's totals. */
struct sink_counts {
	uint64_t messages, recipients, bytes, rejected;
	uint64_t auth_ok, auth_failed;
	uint64_t throttled;        /* MAIL refused with 421 by --max-rate */
	uint64_t lmtp_rcpt_failed; /* LMTP: recipients refused in the replies after the data */
};

enum sink_mode { SINK_CMD, SINK_DATA, SINK_BDAT, SINK_HANG, SINK_CLOSING,
		 SINK_STARTTLS /* 220 said: input is dropped until the server loop switches
		                  to TLS and calls sink_tls_started() */ };

#define SINK_LINE_MAX 1024
#define SINK_OUT_MAX 65536
/* Room sink_input keeps in out for the replies one command or one end of data can make:
 * with LMTP, one per recipient (each at most its address plus 30 bytes). */
#define SINK_OUT_RESERVE 16384
/* LMTP keeps each accepted recipient until the data is in: RFC 5321 §4.5.3.1.8 asks a
 * server to take at least 100; their addresses share one pool. */
#define SINK_LMTP_RCPTS 100
#define SINK_LMTP_ADDRS 8192

/* What an LMTP recipient gets after the data (its local part decides, so that tests
 * can ask for per-recipient failures). */
enum sink_fate { SINK_FATE_OK, SINK_FATE_TEMP /* lmtp-temp...: 452 */,
		 SINK_FATE_PERM /* lmtp-perm...: 550 */ };

struct sink_lmtp_rcpt {
	uint16_t off, len; /* the address in sink_conn.lmtp_addrs */
	uint8_t fate;      /* enum sink_fate */
};

struct sink_conn {
	const struct sink_cfg *cfg;
	enum sink_mode mode;
	char line[SINK_LINE_MAX];
	size_t line_len;
	int line_overflow;   /* the current line is too long: answer 500 at its end */
	int has_mail;
	unsigned rcpts_ok;
	unsigned msgs;       /* messages accepted on this connection */
	uint8_t eod;         /* end-of-data matcher state (see sink_proto.c) */
	uint64_t bdat_left;
	int bdat_last;
	uint64_t body_bytes;
	uint64_t rng;
	uint8_t authed;      /* AUTH succeeded on this connection */
	uint8_t tls_on;      /* the connection runs over TLS */
	uint8_t auth_mech;   /* an AUTH exchange is under way: 1 PLAIN, 2 LOGIN user,
	                        3 LOGIN password, 4 CRAM-MD5; the next line is a response */
	char auth_user_got[256];
	char cram_challenge[96];
	uint8_t delay_req;   /* a reply appended since the server last looked is to be held
	                        back cfg->faults.delay_ms; the server clears it */
	uint32_t now_s;      /* seconds since the sink started; the server sets it before
	                        each sink_input (the one clock of every thread) */
	uint32_t mail_s;     /* the second the current transaction's MAIL counted against */
	/* LMTP: the recipients accepted at RCPT (rcpts_ok of them), in RCPT order */
	struct sink_lmtp_rcpt lmtp_rcpt[SINK_LMTP_RCPTS];
	char lmtp_addrs[SINK_LMTP_ADDRS];
	size_t lmtp_addrs_len;
	char out[SINK_OUT_MAX]; /* replies not yet sent */
	size_t out_len;
	struct sink_counts counts;
};

void sink_conn_init(struct sink_conn *c, const struct sink_cfg *cfg, uint64_t seed);
/* The greeting. */
void sink_greet(struct sink_conn *c);
/*
 * Consume client bytes; replies are appended to c->out. Stops early (returns the bytes
 * used) when c->out is nearly full: send, then call again with the rest. After QUIT,
 * a fault or a protocol error, c->mode is SINK_CLOSING: flush c->out and close.
 */
size_t sink_input(struct sink_conn *c, const char *buf, size_t len);
/* The server loop switched to TLS (after STARTTLS, or at once for implicit TLS): the
 * client starts over with EHLO, and what it said before is forgotten (RFC 3207 §4.2). */
void sink_tls_started(struct sink_conn *c);

#endif
