/*
 * The SMTP client session state machine. Pure protocol logic: it consumes bytes the
 * worker received, produces bytes for the worker to send (as iovecs), and tells the
 * worker about messages through struct sess_ops. It does no I/O and takes no locks, so
 * tests drive it with buffers alone.
 *
 * The session keeps a FIFO of the replies it expects (one entry per command sent).
 * Lockstep (pipeline mode 0) is the same machine with at most one command outstanding.
 *
 * Ownership: a session belongs to one worker thread; nothing else touches it.
 */
#ifndef SB_SESSION_H
#define SB_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dotstuff.h"
#include "message.h"
#include "smtp_caps.h"
#include "smtp_cmd.h"
#include "smtp_reply.h"

/* Read-only configuration shared by the sessions of one host. */
struct sess_cfg {
	const char *hello;     /* EHLO/HELO name, validated */
	unsigned max_attempts; /* transactions per message before FAILED */
	unsigned retry_fail;   /* consecutive failed connections before giving up */
	int debug;             /* log level threshold */
};

struct sess;

/* What the session asks of its worker. ctx is the worker's. */
struct sess_ops {
	/* A message for this idle session, or NULL when none is waiting. */
	struct sb_msg *(*next_msg)(void *ctx, struct sess *s);
	/* The message's final result (the worker delivers it). */
	void (*done)(void *ctx, struct sess *s, struct sb_msg *m, smtpbulk_status_t st, int err);
	/* Connection trouble before the message finished: queue it again. */
	void (*requeue)(void *ctx, struct sess *s, struct sb_msg *m);
	/* A debug line (already filtered by cfg->debug). */
	void (*log)(void *ctx, struct sess *s, int level, const char *line);
};

enum sess_state {
	SESS_DOWN,       /* no connection; the worker may connect */
	SESS_CONNECTING, /* connect in progress */
	SESS_GREETING,   /* waiting for 220 */
	SESS_EHLO,       /* EHLO sent */
	SESS_HELO,       /* EHLO refused, HELO sent */
	SESS_IDLE,       /* ready, no message: the worker offers one when it has one */
	SESS_TXN,        /* a mail transaction is under way */
	SESS_RSET,       /* RSET after a failed transaction */
	SESS_QUIT,       /* QUIT sent */
	SESS_CLOSED,     /* connection over; the worker tears it down and reconnects */
	SESS_DEAD,       /* gave up after cfg->retry_fail failed connections */
};

enum sess_expect_kind {
	EXP_GREETING, EXP_EHLO, EXP_HELO, EXP_MAIL, EXP_RCPT, EXP_DATA, EXP_DOT, EXP_RSET,
	EXP_QUIT,
};

struct sess_expect {
	uint8_t kind;  /* enum sess_expect_kind */
	uint32_t arg;  /* recipient index for EXP_RCPT */
};

#define SESS_FIFO_MAX 8
#define SESS_WBUF 1024
#define SESS_XBUF 16384

struct sess {
	const struct sess_cfg *cfg;
	const struct sess_ops *ops;
	void *ctx;
	unsigned host_idx, conn_idx;
	enum sess_state state;
	int error;          /* why the last connection ended (0 = by QUIT) */
	unsigned fails;     /* consecutive connections that never became ready */
	int was_ready;      /* this connection reached the ready state */
	struct smtp_caps caps;

	struct sess_expect fifo[SESS_FIFO_MAX];
	unsigned fifo_head, fifo_len;

	char *rbuf;         /* SMTP_REPLY_MAX bytes: one whole reply always fits */
	size_t rlen;

	char wbuf[SESS_WBUF]; /* command bytes not yet sent: wbuf[woff..wlen) */
	size_t woff, wlen;
	struct iovec seg[2];  /* body bytes after the commands: body span/chunk, ".\r\n" */
	unsigned nseg;

	/* The transaction in progress. */
	struct sb_msg *msg;
	size_t rcpt_next, rcpt_ok, rcpt_temp;
	size_t body_off;
	int body_streaming;   /* the dot-stuffed body is produced chunk by chunk */
	struct dotstuff ds;
	char *xbuf;           /* SESS_XBUF, allocated on first use */
};

int sess_init(struct sess *s, const struct sess_cfg *cfg, const struct sess_ops *ops,
	      void *ctx, unsigned host_idx, unsigned conn_idx);
void sess_fini(struct sess *s);

const char *sess_state_name(enum sess_state st);

/* The worker started a connect. */
void sess_connecting(struct sess *s);
/* The connect finished: 0 or -errno. */
void sess_connected(struct sess *s, int err);
/* Where the worker may receive into, and how much. */
char *sess_rspace(struct sess *s, size_t *cap);
/* n bytes arrived at sess_rspace(). */
void sess_input(struct sess *s, size_t n);
/* Fill iov[] with the bytes to send next; returns the count (0 = nothing to send). */
int sess_output(const struct sess *s, struct iovec *iov, int max);
/* n bytes of the last sess_output() were sent. */
void sess_sent(struct sess *s, size_t n);
/* The connection failed (receive end, send error): err is -errno or SMTPBULK_E*. */
void sess_io_error(struct sess *s, int err);
/* An idle session takes m; returns 0, or -EBUSY when it is not idle. */
int sess_offer(struct sess *s, struct sb_msg *m);
/* Say QUIT if idle; otherwise nothing. Returns 1 when QUIT was sent. */
int sess_quit(struct sess *s);
/* Stop now: the message in progress ends with st/err, the session is CLOSED. */
void sess_abort(struct sess *s, smtpbulk_status_t st, int err);
/* After the worker closed the socket of a CLOSED session: back to DOWN. */
void sess_reset(struct sess *s);

static inline int sess_has_output(const struct sess *s)
{
	return s->wlen > s->woff || s->nseg > 0;
}

#endif
