/*
 * The SMTP client session state machine (see session.h).
 *
 * Replies are matched to commands through a FIFO of expectations; each mail transaction
 * in flight has a slot in a ring. The pipeline mode only decides how much may be written
 * ahead of the replies:
 *   0  lockstep: one command, then its reply;
 *   1  MAIL, every RCPT and DATA in one write; the body after 354;
 *   2  one round trip per message: with CHUNKING, MAIL, RCPTs, BDAT LAST and the body
 *      in one write and up to cfg->window transactions in flight; without, the body and
 *      "." of message k go out with MAIL/RCPT/DATA of message k+1 (RFC 2920).
 * Modes 1 and 2 need the server's PIPELINING; without it the session runs mode 0.
 */
#include "session.h"

#include "host_learned.h"
#include "outcome.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char dot_crlf[] = ".\r\n";

const char *sess_state_name(enum sess_state st)
{
	static const char *const names[] = {
		[SESS_DOWN] = "DOWN",       [SESS_CONNECTING] = "CONNECTING",
		[SESS_GREETING] = "GREETING", [SESS_EHLO] = "EHLO",
		[SESS_HELO] = "HELO",       [SESS_STARTTLS] = "STARTTLS",
		[SESS_TLS] = "TLS",         [SESS_AUTH] = "AUTH",
		[SESS_IDLE] = "IDLE",
		[SESS_TXN] = "TXN",         [SESS_CMD] = "CMD",
		[SESS_QUIT] = "QUIT",       [SESS_CLOSED] = "CLOSED",
		[SESS_DEAD] = "DEAD",
	};
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}

static void slog(struct sess *s, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void slog(struct sess *s, int level, const char *fmt, ...)
{
	char line[640];
	va_list ap;
	if (s->cfg->debug < level || !s->ops->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->ops->log(s->ctx, s, level, line);
}

/* The connection's setup phases end where its state changes: the time since the last
 * change goes to the phase of the state it leaves. */
static void time_phase(struct sess *s)
{
	/* At least 1: a phase that happened within one loop turn still happened. */
	uint64_t now = *s->clock, d = now > s->at_phase ? now - s->at_phase : 1;
	switch (s->state) {
	case SESS_CONNECTING: s->times.connect_ns += d; break;
	case SESS_STARTTLS: /* the STARTTLS exchange is part of getting TLS up */
	case SESS_TLS: s->times.tls_ns += d; break;
	case SESS_GREETING: s->times.greeting_ns += d; break;
	case SESS_EHLO:
	case SESS_HELO: s->times.ehlo_ns += d; break;
	case SESS_AUTH: s->times.auth_ns += d; break;
	default: break;
	}
	s->at_phase = now;
}

/* This is the only way to change a session's state. */
static void set_state(struct sess *s, enum sess_state st)
{
	if (s->state != st) {
		slog(s, 10, "state %s -> %s", sess_state_name(s->state), sess_state_name(st));
		if (s->clock)
			time_phase(s);
	}
	s->state = st;
}

static uint64_t sess_now(const struct sess *s)
{
	return s->clock ? *s->clock : 0;
}

/* The time from *prev to at (0 when at never came; at least 1 when it came within the
 * same loop turn, as pipelined replies do), and at is the next *prev. */
static uint64_t span(uint64_t *prev, uint64_t at)
{
	if (!at)
		return 0;
	uint64_t d = at > *prev ? at - *prev : 1;
	*prev = at;
	return d;
}

/* Where t's time went, and its connection's setup, into its message's result. */
static void time_txn(const struct sess *s, const struct sess_txn *t)
{
	if (!s->clock)
		return;
	smtpbulk_phases_t *p = &t->m->res.phases;
	uint64_t prev = t->at_start;
	p->mail_ns = span(&prev, t->at_mail);
	p->rcpt_ns = span(&prev, t->at_rcpt);
	p->data_ns = span(&prev, t->at_data);
	p->dot_ns = span(&prev, t->at_dot);
	p->connect_ns = s->times.connect_ns;
	p->tls_ns = s->times.tls_ns;
	p->greeting_ns = s->times.greeting_ns;
	p->ehlo_ns = s->times.ehlo_ns;
	p->auth_ns = s->times.auth_ns;
}

int sess_init(struct sess *s, const struct sess_cfg *cfg, const struct sess_ops *ops,
	      void *ctx, unsigned host_idx, unsigned conn_idx)
{
	memset(s, 0, offsetof(struct sess, wbuf)); /* see wbuf in session.h */
	s->cfg = cfg;
	s->ops = ops;
	s->ctx = ctx;
	s->host_idx = host_idx;
	s->conn_idx = conn_idx;
	s->state = SESS_DOWN;
	return 0;
}

static void bury_stuffed(struct sess *s)
{
	for (unsigned i = 0; i < s->n_graveyard; i++)
		free(s->graveyard[i]);
	s->n_graveyard = 0;
}

/* The AUTH exchange is over (or the connection is): the secret goes. */
static void sasl_drop(struct sess *s)
{
	if (s->sasl) {
		sasl_clear(s->sasl);
		free(s->sasl);
		s->sasl = NULL;
	}
}

void sess_fini(struct sess *s)
{
	sasl_drop(s);
	for (unsigned i = 0; i < s->txn_len; i++)
		free(s->txns[(s->txn_head + i) % SESS_TXN_MAX].stuffed);
	s->txn_len = 0;
	bury_stuffed(s);
	free(s->rbuf);
	s->rbuf = NULL;
}

/* ---- output ----------------------------------------------------------------------- */

static int out_room(const struct sess *s, unsigned iovs, size_t bytes)
{
	return s->out_len + iovs <= SESS_OUT_MAX && s->wlen + bytes <= SESS_WBUF &&
	       s->fifo_len < SESS_FIFO_MAX;
}

static struct iovec *out_tail(struct sess *s)
{
	return s->out_len ? &s->out[(s->out_head + s->out_len - 1) % SESS_OUT_MAX] : NULL;
}

static void out_iov(struct sess *s, const void *p, size_t n)
{
	struct iovec *v = &s->out[(s->out_head + s->out_len) % SESS_OUT_MAX];
	v->iov_base = (void *)(uintptr_t)p;
	v->iov_len = n;
	s->out_len++;
}

/* Queue bytes that stay valid until sent (a body, a constant). */
static void out_ref(struct sess *s, const void *p, size_t n)
{
	if (n == 0)
		return;
	out_iov(s, p, n);
	s->out_total += (uint32_t)n;
}

/* Queue command bytes: copied to wbuf, merged with the previous iovec when adjacent,
 * so a pipelined group of commands costs one iovec. Callers checked out_room(). */
static void out_cmd(struct sess *s, const char *p, size_t n)
{
	char *dst = s->wbuf + s->wlen;
	struct iovec *t = out_tail(s);
	memcpy(dst, p, n);
	s->wlen += n;
	s->out_total += (uint32_t)n;
	if (t && (char *)t->iov_base + t->iov_len == dst)
		t->iov_len += n;
	else
		out_iov(s, dst, n);
	if (!s->cfg_debug_mute)
		slog(s, 10, ">> %.*s", (int)(n >= 2 ? n - 2 : n), p);
}

/* Queue a line that carries a secret (AUTH): the trace shows only its first shown
 * bytes ("AUTH PLAIN"), never the credentials. */
static void out_secret(struct sess *s, const char *p, size_t n, size_t shown)
{
	int debug = s->cfg->debug;
	s->cfg_debug_mute = 1;
	out_cmd(s, p, n);
	s->cfg_debug_mute = 0;
	if (debug >= 10)
		slog(s, 10, ">> %.*s%s<redacted>", (int)shown, p, shown ? " " : "");
}

static void expect(struct sess *s, enum sess_expect_kind kind, unsigned txn, uint32_t arg)
{
	unsigned i = (s->fifo_head + s->fifo_len) % SESS_FIFO_MAX;
	s->fifo[i].kind = (uint8_t)kind;
	s->fifo[i].txn = (uint8_t)txn;
	s->fifo[i].behind_final = 0;
	s->fifo[i].arg = arg;
	s->fifo[i].end = s->out_total;
	s->fifo_len++;
}

static int out_clear(struct sess *s)
{
	s->out_len = 0;
	s->out_head = 0;
	s->wlen = 0;
	return 0;
}

/* ---- transactions ----------------------------------------------------------------- */

static unsigned slot_of(const struct sess *s, const struct sess_txn *t)
{
	return (unsigned)(t - s->txns);
}

static struct sess_txn *txn_at(struct sess *s, unsigned i)
{
	return &s->txns[(s->txn_head + i) % SESS_TXN_MAX];
}

/* Take the oldest transaction off the ring; it stays readable until the next start. */
static struct sess_txn *txn_pop(struct sess *s)
{
	struct sess_txn *t = txn_at(s, 0);
	s->txn_head = (s->txn_head + 1) % SESS_TXN_MAX;
	s->txn_len--;
	return t;
}

/* A transaction ends early: a send may still read its stuffed copy, which is freed
 * only at sess_reset(). */
static struct sb_msg *txn_bury(struct sess *s, struct sess_txn *t)
{
	if (t->stuffed)
		s->graveyard[s->n_graveyard++] = t->stuffed;
	t->stuffed = NULL;
	return t->m;
}

static void conn_fail(struct sess *s, int err);

/* How the messages in flight are treated when their connection ends early. */
enum release_policy {
	REL_CHARGE, /* connection trouble: retried while attempts are left (max_attempts) */
	REL_HANG,   /* the watchdog found the connection hung: retry_hang decides */
	REL_CLOSE,  /* 421: retried free of charge, at most retry_fail times per message */
	REL_AGAIN,  /* a refusal that is no verdict (a sequencing 503, a spent connection):
	               as REL_CLOSE, but no fault of the server's (the breaker ignores it) */
	REL_FREE,   /* a global hang's restart: retried free of charge */
	REL_THROTTLE, /* the server asked to slow down (a 421 that says so): retried free
	               throttle_retries times, then as REL_CLOSE; no fault for the breaker */
};

static void txn_end(struct sess *s, int verdict)
{
	if (s->ops->txn_end)
		s->ops->txn_end(s->ctx, s, verdict);
}

/* A throttled message rides it out free of charge while it has throttle_retries
 * left: 1 (counted), or 0 (treat it as the 4xx or 421 it also is). */
static int throttle_free(const struct sess *s, struct sb_msg *m)
{
	if (s->cfg->throttle_retries != SMTPBULK_UNLIMITED &&
	    m->throttles >= s->cfg->throttle_retries)
		return 0;
	m->throttles++;
	return 1;
}

static void release_msg(struct sess *s, struct sb_msg *m, enum release_policy pol, int err)
{
	switch (pol) {
	case REL_HANG:
		m->hangs++;
		if (s->cfg->retry_hang == SMTPBULK_UNLIMITED || m->hangs <= s->cfg->retry_hang)
			break;
		s->ops->done(s->ctx, s, m, SMTPBULK_TIMED_OUT, SMTPBULK_ETIMEDOUT);
		return;
	case REL_THROTTLE:
		if (throttle_free(s, m))
			break;
		__attribute__((fallthrough)); /* its free throttles are used up: a 421 */
	case REL_CLOSE:
	case REL_AGAIN:
		if (m->closes < s->cfg->retry_fail) {
			m->closes++;
			break;
		}
		/* A server that keeps saying 421 is trouble like any other. */
		__attribute__((fallthrough));
	case REL_CHARGE:
		if (m->attempts - m->free_tries < s->cfg->max_attempts) {
			s->ops->requeue(s->ctx, s, m);
			return;
		}
		s->ops->done(s->ctx, s, m, SMTPBULK_FAILED, err);
		return;
	case REL_FREE:
		break;
	}
	m->free_tries++; /* this transaction does not count against max_attempts */
	s->ops->requeue(s->ctx, s, m);
}

/* The one-off command out, if any, ends without its reply. */
static void command_fail(struct sess *s, int err)
{
	if (!s->cmd_out)
		return;
	s->cmd_out = 0;
	s->ops->command(s->ctx, s, NULL, err ? err : SMTPBULK_ECLOSED);
}

/* The connection ends early: every message in flight is retried or ends, per pol. */
static void conn_end(struct sess *s, int err, enum release_policy pol)
{
	if (s->state == SESS_CLOSED || s->state == SESS_DEAD || s->state == SESS_DOWN)
		return;
	if (s->quit_err)
		err = s->quit_err; /* why we said QUIT, whatever came after it */
	slog(s, 7, "connection failed in %s: %s", sess_state_name(s->state),
	     smtpbulk_strerror(err));
	/* Transactions cut short by the server's trouble (a lost connection, a 421, a
	 * garbled reply): one failure for the breaker, however many were in flight — a
	 * connection with a window of 8 that drops is one event, not 8. A hang is not
	 * one: it cost a timeout already, and Retry.Hang, the window's shrink and the
	 * global timeout are its policies; the breaker is for failures that come fast. */
	if (s->txn_len && pol != REL_FREE && pol != REL_HANG && pol != REL_THROTTLE)
		txn_end(s, 0);
	while (s->txn_len) {
		struct sess_txn *t = txn_pop(s);
		/* Pipelined behind transactions the server answered, one it never answered
		 * was not tried: it goes again free of charge. (Where the server answered
		 * nothing, each connection's trouble is charged, so a server that never
		 * answers still ends every message.) */
		enum release_policy p =
			pol == REL_CHARGE && !t->answered && s->txn_answered ? REL_FREE : pol;
		release_msg(s, txn_bury(s, t), p, err);
	}
	command_fail(s, err);
	s->error = err;
	s->fifo_len = 0;
	out_clear(s);
	sasl_drop(s);
	if (!s->was_ready)
		s->fails++;
	set_state(s, s->fatal || s->fails >= s->cfg->retry_fail ? SESS_DEAD : SESS_CLOSED);
}

static void conn_fail(struct sess *s, int err)
{
	conn_end(s, err, err == SMTPBULK_ESHUTDOWN ? REL_CLOSE : REL_CHARGE);
}

/*
 * The client ends a connection for a reason of its own (AUTH refused, no STARTTLS):
 * RFC 5321 §4.1.1.10, QUIT first (over TLS the transport then writes close_notify);
 * its reply, or the server's close, ends the connection with err as conn_fail()
 * would. fatal: the reason holds for every connection of the host, which stop.
 */
static int say_quit(struct sess *s);

static void quit_fail(struct sess *s, int err, int fatal)
{
	if (fatal)
		s->fatal = 1;
	if (s->txn_len || s->state < SESS_GREETING || s->state > SESS_IDLE || !say_quit(s)) {
		conn_fail(s, err);
		return;
	}
	s->quit_err = err;
}

static smtpbulk_status_t status_of(int code)
{
	return code >= 500 ? SMTPBULK_REJECTED : SMTPBULK_FAILED;
}

static void txn_fail(struct sess_txn *t, smtpbulk_status_t st)
{
	if (!t->failed) {
		t->failed = 1;
		t->status = st;
		t->error = SMTPBULK_ESERVER;
	}
}

/* Queue a DATA body: the message's own bytes (zero copy) unless a line starts with '.'. */
static int queue_data_body(struct sess *s, struct sess_txn *t)
{
	const struct sb_msg *m = t->m;
	if (!out_room(s, 2, 0))
		return -ENOSPC; /* cannot happen: nothing is written behind a DATA */
	if (m->flags & SB_MSG_CLEAN) {
		out_ref(s, m->body, m->body_len);
		out_ref(s, dot_crlf, 3);
		return 0;
	}
	/* Only bodies with '.'-lines are copied, once, with the dots doubled. */
	size_t cap = m->body_len * 2 + DOTSTUFF_FINISH_MAX + DOTSTUFF_MAX_EXPANSION;
	struct dotstuff d;
	size_t used, n;
	t->stuffed = malloc(cap);
	if (!t->stuffed)
		return -ENOMEM;
	dotstuff_init(&d);
	n = dotstuff_run(&d, m->body, m->body_len, &used, t->stuffed, cap - DOTSTUFF_FINISH_MAX);
	n += dotstuff_finish(&d, t->stuffed + n);
	out_ref(s, t->stuffed, n);
	return 0;
}

/* Write one envelope command of t (n bytes in buf, or n < 0: it could not be made) and
 * expect its reply. 1 written, 0 no room yet, -1 the connection failed. */
static int emit(struct sess *s, struct sess_txn *t, const char *buf, int n,
		enum sess_expect_kind kind, uint32_t arg)
{
	if (n < 0) {
		conn_fail(s, n);
		return -1;
	}
	if (!out_room(s, 1, (size_t)n))
		return 0;
	out_cmd(s, buf, (size_t)n);
	expect(s, kind, slot_of(s, t), arg);
	t->outstanding++;
	return 1;
}

/*
 * Write what transaction t may write now. Lockstep writes one command and only when
 * nothing is outstanding; pipelined modes write everything that fits.
 */
static void write_txn(struct sess *s, struct sess_txn *t)
{
	char buf[SMTP_CMD_MAX + 32];
	unsigned slot = slot_of(s, t);
	const struct sb_msg *m = t->m;
	int lockstep = s->mode == 0;
	int dsn = (s->caps.flags & SMTP_CAP_DSN) != 0; /* else sent without (start_txn) */
	int n;

	while (!t->failed && !t->data_written) {
		if (lockstep && s->fifo_len > 0)
			return;
		if (!t->mail_written) {
			unsigned flags = 0;
			if (m->flags & SB_MSG_UTF8ADDR)
				flags |= SMTP_MAIL_SMTPUTF8;
			if ((m->flags & SB_MSG_8BIT) && (s->caps.flags & SMTP_CAP_8BITMIME))
				flags |= SMTP_MAIL_8BITMIME;
			n = smtp_cmd_mail(buf, sizeof(buf), m->from,
					  (s->caps.flags & SMTP_CAP_SIZE) ? (uint64_t)m->body_len : 0,
					  flags, dsn ? m->mail_dsn : NULL);
			if (emit(s, t, buf, n, EXP_MAIL, 0) <= 0)
				return;
			t->mail_written = 1;
			t->behind_final = t != txn_at(s, 0); /* an older one awaits its final */
			if (++s->mails == s->cap)
				s->spent = 1; /* the host's learned cap: this one is the last */
			s->clean = 0;
			continue;
		}
		if (lockstep && t->mail != 1)
			return; /* a refusal is handled by the reply; wait for it */
		while (t->rcpt_next < m->n_rcpts && sb_rcpt_done(&m->rcpt_recs[t->rcpt_next]))
			t->rcpt_next++; /* an earlier transaction settled it */
		if (t->rcpt_next < m->n_rcpts) {
			n = smtp_cmd_rcpt(buf, sizeof(buf), m->rcpts[t->rcpt_next].rcpt,
					  dsn && m->rcpt_dsn ? m->rcpt_dsn[t->rcpt_next] : NULL);
			if (emit(s, t, buf, n, EXP_RCPT, (uint32_t)t->rcpt_next) <= 0)
				return;
			t->rcpt_next++;
			continue;
		}
		if (lockstep && t->rcpt_ok == 0)
			return; /* every recipient refused: the last reply ends it */
		if (s->chunking) {
			/* RFC 3030: BDAT carries the canonical body as is, no dot-stuffing. */
			n = snprintf(buf, sizeof(buf), "BDAT %zu LAST\r\n", m->body_len);
			if (!out_room(s, 2, (size_t)n))
				return;
			out_cmd(s, buf, (size_t)n);
			out_ref(s, m->body, m->body_len);
			expect(s, EXP_BDAT, slot, 0);
			t->body_queued = 1;
			/* Accepted or not, BDAT LAST ends the transaction on the server: the
			 * next MAIL needs no RSET (a refusal, once its reply is in, says
			 * otherwise: txn_complete). */
			s->clean = 1;
		} else {
			if (!out_room(s, 1, 6))
				return;
			out_cmd(s, SMTP_CMD_DATA, 6);
			expect(s, EXP_DATA, slot, 0);
		}
		t->outstanding++;
		t->data_written = 1;
	}
}


/* May a new transaction start now? */
int sess_has_room(const struct sess *s)
{
	if (s->state != SESS_IDLE && s->state != SESS_TXN)
		return 0;
	if (s->spent)
		return 0;
	if (s->txn_len == 0)
		return s->mode != 0 || s->fifo_len == 0;
	/* The next MAIL waits for the final reply: the server refuses it behind the dot,
	 * or a hang shrank the window to one (a window configured as 1 concerns CHUNKING
	 * only, as before). */
	if (s->no_dot_pipe || (s->window <= 1 && s->window < s->cfg->window))
		return 0;
	const struct sess_txn *last = &s->txns[(s->txn_head + s->txn_len - 1) % SESS_TXN_MAX];
	if (s->mode < 2 || !last->data_written || last->failed)
		return 0;
	if (s->chunking)
		return s->txn_len < s->window && s->txn_len < SESS_TXN_MAX;
	/* DATA: message k+1 goes out behind the body of message k, not before. */
	return s->txn_len == 1 && last->body_queued;
}

/* Start a transaction for m: refuse locally what cannot succeed, else write. */
static void start_txn(struct sess *s, struct sb_msg *m)
{
	m->attempts++;
	sb_msg_reset_replies(m);
	if (s->caps.size_max && m->body_len > s->caps.size_max) {
		s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, SMTPBULK_EMSGSIZE);
		return;
	}
	if ((m->flags & SB_MSG_UTF8ADDR) && !(s->caps.flags & SMTP_CAP_SMTPUTF8)) {
		s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, SMTPBULK_EUTF8);
		return;
	}
	if ((m->mail_dsn || m->rcpt_dsn) && !(s->caps.flags & SMTP_CAP_DSN) &&
	    s->cfg->dsn_required) {
		s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, SMTPBULK_ENODSN);
		return;
	}
	/* The server may still hold a refused transaction: reset it first, in the same
	 * write. Behind a BDAT LAST whose reply is not in yet, the server's state is
	 * known only if that BDAT is accepted; refused (no valid recipient), some servers
	 * keep its envelope (RFC 3030: "indeterminate"), and this MAIL gets "503 nested
	 * MAIL" while its RCPT and BDAT join the kept envelope. With the same sender
	 * that is this very message, so no RSET is needed (on_txn_reply follows the kept
	 * envelope); with another sender it would go out under the wrong one: RSET. */
	const struct sess_txn *prev = s->txn_len ? txn_at(s, s->txn_len - 1) : NULL;
	int same_from = s->chunking && prev && strcmp(prev->m->from, m->from) == 0;
	if (!s->clean || (s->chunking && prev && !same_from)) {
		out_cmd(s, SMTP_CMD_RSET, 6);
		expect(s, EXP_RSET, 0, 0);
		s->fifo[(s->fifo_head + s->fifo_len - 1) % SESS_FIFO_MAX].behind_final =
			s->txn_len > 0;
		s->clean = 1;
	}
	struct sess_txn *t = txn_at(s, s->txn_len);
	memset(t, 0, sizeof(*t));
	t->m = m;
	t->same_from = same_from;
	t->at_start = sess_now(s);
	t->rcpt_last = m->n_rcpts - 1;
	if (m->rcpts_done) /* a further transaction: only those without a verdict */
		while (t->rcpt_last > 0 && sb_rcpt_done(&m->rcpt_recs[t->rcpt_last]))
			t->rcpt_last--;
	s->txn_len++;
	set_state(s, SESS_TXN);
	write_txn(s, t);
}

unsigned sess_pump(struct sess *s)
{
	unsigned taken = 0;
	if (s->state != SESS_IDLE && s->state != SESS_TXN)
		return 0;
	for (unsigned i = 0; i < s->txn_len; i++)
		write_txn(s, txn_at(s, i));
	while (sess_has_room(s) && out_room(s, 4, 2 * SMTP_CMD_MAX + 32)) {
		struct sb_msg *m = s->ops->next_msg(s->ctx, s);
		if (!m)
			break;
		taken++;
		start_txn(s, m);
		if (s->state != SESS_IDLE && s->state != SESS_TXN)
			return taken; /* conn_fail */
	}
	if (s->txn_len == 0 && s->fifo_len == 0)
		set_state(s, SESS_IDLE);
	else if (s->txn_len == 0 && s->state == SESS_IDLE)
		set_state(s, SESS_TXN); /* an RSET is out */
	return taken;
}

/*
 * The data of t was accepted: settle each recipient it sent — delivered (2xx), or
 * refused for good (5xx, a 4xx that is not to be retried) — but those that go in a
 * further transaction: "too many recipients", and with retry_temp_rcpts the other
 * 4xx. Returns how many are left for one.
 */
static size_t settle_accepted(struct sess *s, struct sess_txn *t)
{
	struct sb_msg *m = t->m;
	for (size_t i = 0; i <= t->rcpt_last && i < m->n_rcpts; i++) {
		const struct sb_reply_rec *rec = &m->rcpt_recs[i];
		if (sb_rcpt_done(rec) || rec->state == SB_RCPT_SPLIT)
			continue;
		if (rec->code / 100 == 2)
			sb_msg_rcpt_settle(m, i, SB_RCPT_DELIVERED);
		else if (rec->code / 100 != 4 || !s->cfg->retry_temp_rcpts)
			sb_msg_rcpt_settle(m, i, SB_RCPT_REFUSED);
	}
	return m->n_rcpts - m->rcpts_done;
}

/* Give the recipients still without a verdict the last one they got. */
static void settle_rest(struct sb_msg *m)
{
	for (size_t i = 0; i < m->n_rcpts; i++)
		sb_msg_rcpt_settle(m, i, SB_RCPT_REFUSED);
}

/* A message whose data was accepted with recipients left over (settle_accepted): a
 * further transaction at once for a full one, after defer_ms for 4xx recipients
 * (counted), else its result. 1 when it goes again. */
static int txn_more(struct sess *s, struct sess_txn *t, size_t left)
{
	struct sb_msg *m = t->m;
	if (t->rcpt_split) {
		/* Not counted: each such transaction delivers one recipient at least, so
		 * a message has at most n_rcpts of them. */
		slog(s, 7, "message %llu: the server took %zu recipients in a transaction, "
			   "%zu go in a further one",
		     (unsigned long long)m->id, t->rcpt_ok, left);
		m->free_tries++;
		s->ops->requeue(s->ctx, s, m);
		return 1;
	}
	if (s->ops->defer && m->attempts - m->free_tries < s->cfg->max_attempts) {
		slog(s, 7, "message %llu: %zu recipients refused for now go again",
		     (unsigned long long)m->id, left);
		s->ops->defer(s->ctx, s, m);
		return 1;
	}
	settle_rest(m);
	return 0;
}

/* The oldest transaction has every reply it will get: deliver its result. */
static void txn_complete(struct sess *s)
{
	struct sess_txn *t = txn_pop(s);
	struct sb_msg *m = t->m;
	smtpbulk_status_t st = t->status;
	int err = t->error;
	time_txn(s, t);
	free(t->stuffed);
	t->stuffed = NULL;
	if (!t->final && t->failed)
		s->clean = 0; /* refused before the data: the server may hold the envelope */
	else if (t->final && s->txn_len == 0)
		s->clean = 1; /* the last one out ended with its final reply */
	size_t left = 0;
	if (t->final && !t->failed) {
		if (!m->rcpts_done && !t->rcpt_split && !(t->rcpt_temp && s->cfg->retry_temp_rcpts))
			st = t->rcpt_ok == m->n_rcpts ? SMTPBULK_DELIVERED : SMTPBULK_PARTIAL;
		else /* several transactions make its result (sb_msg_merged_status) */
			st = (left = settle_accepted(s, t)) ? SMTPBULK_PARTIAL
			     : sb_msg_merged_status(m, SMTPBULK_DELIVERED);
	}
	if (t->final && s->window < s->cfg->window) {
		s->window++; /* replies come in time again: so does the window */
		hl_grow_window(s->cfg->learned, s->cfg->window);
	}
	if (t->again) {
		release_msg(s, m, REL_AGAIN, err); /* no verdict: free, as after a 421 */
		goto next;
	}
	if (t->throttled && st == SMTPBULK_FAILED && throttle_free(s, m)) {
		/* "Slow down": no verdict on the message, and no fault for the breaker.
		 * It waits in the queue for the host's slower pace, not for defer_ms. */
		m->free_tries++;
		s->ops->requeue(s->ctx, s, m);
		goto next;
	}
	/* For the breaker: a 5xx is a verdict; a 4xx to MAIL, the data or its end is the
	 * server's trouble; 4xx to the recipients concern them (a full mailbox,
	 * greylisting): neither. */
	if (st != SMTPBULK_FAILED)
		txn_end(s, 1);
	else if (!(t->mail == 1 && t->rcpt_ok == 0 && t->rcpt_temp))
		txn_end(s, 0);
	if (left && txn_more(s, t, left))
		goto next;
	if (left)
		st = sb_msg_merged_status(m, SMTPBULK_DELIVERED);
	if (t->failed && st == SMTPBULK_FAILED && err == SMTPBULK_ESERVER && s->ops->defer &&
	    m->attempts - m->free_tries < s->cfg->max_attempts)
		s->ops->defer(s->ctx, s, m); /* a 4xx: tried again after a pause */
	else
		s->ops->done(s->ctx, s, m, st, t->failed || !t->final ? err : 0);
next:
	/* "RSET after a failed transaction": at once when nothing else is out. */
	if (!s->clean && s->txn_len == 0 && out_room(s, 1, 6)) {
		out_cmd(s, SMTP_CMD_RSET, 6);
		expect(s, EXP_RSET, 0, 0);
		s->clean = 1;
	}
}

/* The server answered 503 to a command written behind an end of data it had not
 * answered yet, and the transaction before was accepted: it refuses that pipelining
 * (Haraka, Postfix's smtpd_forbid_unauth_pipelining). This connection and, through
 * cfg->learned, every later one of the host wait for each final reply. */
static void learn_no_dot_pipe(struct sess *s, const struct smtp_reply *r)
{
	int news = hl_learn_no_dot_pipe(s->cfg->learned);
	if (!s->no_dot_pipe)
		slog(s, 5, "the server refuses commands pipelined behind the end of the data (%d): "
			   "%s wait for each message's final reply",
		     r->code, news || !s->cfg->learned ? "this host's connections now"
						       : "this connection too will");
	s->no_dot_pipe = 1;
}

/*
 * LMTP (RFC 2033 §4.2): after the data the server gives one reply per recipient it
 * accepted, in their order, each that recipient's verdict. The first of them finds
 * its expectation taken like any reply; while more are owed it goes back to the head
 * of the queue (it was just taken off, so there is room), so the commands written
 * behind the data keep their place.
 */
static void on_lmtp_final(struct sess *s, const struct sess_expect *e, struct sess_txn *t,
			  const struct smtp_reply *r)
{
	struct sb_msg *m = t->m;
	int cls = r->code / 100;
	if (!t->lmtp_left)
		t->lmtp_left = t->rcpt_ok ? (uint32_t)t->rcpt_ok : 1;
	size_t i = t->lmtp_next;
	while (i < m->n_rcpts &&
	       (m->rcpt_recs[i].code / 100 != 2 || sb_rcpt_done(&m->rcpt_recs[i])))
		i++; /* refused at RCPT, or settled by a transaction before */
	if (i < m->n_rcpts) {
		sb_msg_record(m, i, r); /* its delivery, not its RCPT, is the verdict */
		t->lmtp_next = (uint32_t)i + 1;
	}
	if (cls == 2)
		t->lmtp_ok++;
	else if (cls == 4)
		t->rcpt_temp++;
	/* The result's reply: the first acceptance, else the first refusal. */
	if (!t->final_ok && (cls == 2 || !m->final.code))
		sb_msg_record(m, SB_SLOT_FINAL, r);
	t->final_ok |= cls == 2;
	if (--t->lmtp_left > 0) {
		s->fifo_head = (s->fifo_head + SESS_FIFO_MAX - 1) % SESS_FIFO_MAX;
		s->fifo[s->fifo_head] = *e;
		s->fifo_len++;
		t->outstanding++;
		return;
	}
	/* Every recipient has its verdict; the transaction is over on the server. */
	t->final = 1;
	s->final_refused = t->lmtp_ok == 0;
	t->rcpt_ok = t->lmtp_ok;
	if (!t->lmtp_ok)
		txn_fail(t, t->rcpt_temp ? SMTPBULK_FAILED : SMTPBULK_REJECTED);
}

static void on_txn_reply(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	struct sess_txn *t = &s->txns[e->txn];
	struct sb_msg *m = t->m;
	int cls = r->code / 100;

	t->outstanding--;
	t->answered = 1;
	s->txn_answered = 1;
	if (t->kept && r->code == 503 && e->kind != EXP_MAIL) {
		/* It followed an envelope the server did not keep after all: no verdict on
		 * this message, which goes again behind an RSET. */
		if (!t->failed) {
			sb_msg_record(m, SB_SLOT_FINAL, r);
			txn_fail(t, SMTPBULK_FAILED);
		}
		t->again = 1;
		s->clean = 0;
		goto finished;
	}
	if (s->clock) {
		uint64_t now = *s->clock;
		switch (e->kind) {
		case EXP_MAIL: t->at_mail = now; break;
		case EXP_RCPT: t->at_rcpt = now; break;
		case EXP_DATA: t->at_data = now; break;
		default: t->at_dot = now; break; /* DOT, BDAT: the last LMTP reply's */
		}
	}
	switch (e->kind) {
	case EXP_MAIL:
		t->mail = cls == 2 ? 1 : -1;
		if (cls == 2) {
			s->mails_ok++;
			break;
		}
		if (r->code == 503 && t->behind_final && s->final_refused && s->chunking &&
		    t->same_from) {
			/* "Nested MAIL": the server kept the envelope of the refused BDAT
			 * before, with this message's sender; its RCPT and BDAT, already
			 * written, go on in that envelope (a 503 to them says otherwise). */
			t->mail = 1;
			t->kept = 1;
			if (!s->said_kept)
				slog(s, 5, "the server keeps a transaction whose BDAT it refused "
					   "(503 to the next MAIL): the next message goes on in it");
			s->said_kept = 1;
			break;
		}
		sb_msg_record(m, SB_SLOT_FINAL, r);
		txn_fail(t, status_of(r->code));
		if (r->code == 503 && t->behind_final) {
			/* "Bad sequence" to a MAIL written behind an unanswered end of data:
			 * the server refuses such pipelining (or, after a refused final, still
			 * held that transaction). Not a verdict on this message. */
			t->again = 1;
			s->clean = 0;
			if (!s->final_refused)
				learn_no_dot_pipe(s, r);
		} else if (cls == 4 && !t->throttled && s->mails_ok > 0 &&
			   smtp_reply_says_too_many(r)) {
			/* The connection has carried what the server takes on one: connect
			 * again, and the host's later connections stop short of it. */
			t->again = 1;
			if (!s->spent)
				slog(s, 5, "the server takes no more messages on this connection "
					   "(%d after %u): QUIT and connect again%s",
				     r->code, s->mails_ok,
				     hl_learn_conn_cap(s->cfg->learned, s->mails_ok)
					     ? "; the host's connections carry at most that many"
					     : "");
			s->spent = 1;
		}
		break;
	case EXP_RCPT:
		sb_msg_record(m, e->arg, r);
		if (cls == 2) {
			t->rcpt_ok++;
		} else {
			if (t->mail == 1 && smtp_reply_too_many_rcpts(r)) {
				/* The transaction is full: this one goes in the next. */
				m->rcpt_recs[e->arg].state = SB_RCPT_SPLIT;
				t->rcpt_split++;
				t->rcpt_temp++;
			} else if (cls == 4) {
				t->rcpt_temp++;
			}
			/* The last recipient refused and none accepted: the transaction is
			 * over. Permanent only if every refusal was. */
			if (e->arg == t->rcpt_last && t->rcpt_ok == 0 && !t->failed) {
				sb_msg_record(m, SB_SLOT_FINAL, r);
				txn_fail(t, t->rcpt_temp ? SMTPBULK_FAILED : SMTPBULK_REJECTED);
			}
		}
		break;
	case EXP_DATA:
		if (r->code == 354) {
			t->body_queued = 1;
			if (t->failed) {
				/* Pipelined DATA accepted for a refused envelope: RFC 2920 says
				 * end it with a lone "."; its reply changes nothing. */
				t->dot_only = 1;
				out_ref(s, dot_crlf, 3);
			} else {
				int rc = queue_data_body(s, t);
				if (rc) {
					conn_fail(s, rc);
					return;
				}
			}
			expect(s, EXP_DOT, e->txn, 0);
			t->outstanding++;
			/* Whatever its reply, the "." ends the transaction on the server:
			 * a following MAIL needs no RSET. */
			s->clean = 1;
		} else if (!t->failed) {
			sb_msg_record(m, SB_SLOT_FINAL, r);
			txn_fail(t, cls == 2 ? SMTPBULK_FAILED : status_of(r->code));
		}
		break;
	case EXP_DOT:
	case EXP_BDAT:
		if (s->cfg->lmtp && !t->failed && !t->dot_only) {
			on_lmtp_final(s, e, t, r);
			break;
		}
		s->final_refused = cls != 2;
		if (!t->failed && !t->dot_only) {
			sb_msg_record(m, SB_SLOT_FINAL, r);
			if (cls == 2)
				t->final = 1;
			else
				txn_fail(t, status_of(r->code));
			/* After the final reply the server starts afresh (RFC 5321
			 * §4.1.1.4); after a refused BDAT we cannot be sure (RFC 3030). */
			if (e->kind == EXP_DOT || cls == 2)
				t->final = 1;
		}
		break;
	default:
		break;
	}
finished:
	/* Replies come in order, so only the oldest transaction can be finished. */
	while (s->txn_len && txn_at(s, 0)->outstanding == 0 &&
	       (txn_at(s, 0)->failed || txn_at(s, 0)->final))
		txn_complete(s);
}

/* Ready for messages (after EHLO/HELO). */
static void become_ready(struct sess *s)
{
	if (!s->was_ready) {
		s->was_ready = 1;
		s->fails = 0;
		s->clean = 1;
		s->mode = (s->caps.flags & SMTP_CAP_PIPELINING) ? s->cfg->pipeline : 0;
		s->chunking = s->mode == 2 && (s->caps.flags & SMTP_CAP_CHUNKING);
		if (s->cfg->pipeline && !s->mode)
			slog(s, 5, "server lacks PIPELINING: lockstep (mode 0)");
		slog(s, 5, "ready: pipeline mode %u%s, caps 0x%x, size %llu", s->mode,
		     s->chunking ? " with CHUNKING" : "", s->caps.flags,
		     (unsigned long long)s->caps.size_max);
	}
	set_state(s, SESS_IDLE);
	sess_pump(s);
}

static void after_hello(struct sess *s);
static void on_auth_reply(struct sess *s, const struct smtp_reply *r);

/* AUTH is over on this connection: 0 or why it failed. The secret goes now. */
static void auth_end(struct sess *s, int err)
{
	sasl_drop(s);
	if (s->ops->auth)
		s->ops->auth(s->ctx, s, err);
}

static void auth_fail(struct sess *s, int err, const char *why)
{
	slog(s, 7, "AUTH failed: %s (%s)", why, smtpbulk_strerror(err));
	auth_end(s, err);
	/* Only a 454 (EAUTHTEMP) or a token callback without a token (ETOKEN) may go
	 * better on another try: no mechanism in common, plaintext refused and refused
	 * credentials hold for every connection. */
	quit_fail(s, err,
		  err != SMTPBULK_EAUTHTEMP && err != SMTPBULK_EAUTH && err != SMTPBULK_ETOKEN
			  ? 1
			  : s->fatal);
}

/* smtp_caps' mechanism bits are sasl_mech's. */
_Static_assert((unsigned)SASL_OAUTHBEARER == SMTP_AUTH_OAUTHBEARER &&
		       (unsigned)SASL_XOAUTH2 == SMTP_AUTH_XOAUTH2,
	       "smtp_caps and sasl number the mechanisms alike");

/* Write AUTH for m. A token mechanism with a callback asks it for the token now (fresh:
 * the last one was refused); the token is wiped from this stack at once, and from
 * s->sasl (sasl_drop) when the exchange ends. */
static void auth_send(struct sess *s, enum sasl_mech m, int fresh)
{
	const struct sess_auth *a = s->cfg->auth;
	char line[SASL_LINE_MAX];
	int n;
	if (!s->sasl && !(s->sasl = calloc(1, sizeof(*s->sasl)))) {
		conn_fail(s, -ENOMEM);
		return;
	}
	if (sasl_is_token(m) && a->token_cb) {
		char tok[SASL_TOKEN_MAX + 1];
		int tl = a->token_cb(a->host, a->user, fresh, tok, SASL_TOKEN_MAX, a->token_arg);
		if (tl <= 0 || tl > SASL_TOKEN_MAX) {
			explicit_bzero(tok, sizeof(tok));
			auth_fail(s, SMTPBULK_ETOKEN,
				  tl > SASL_TOKEN_MAX ? "the token callback said more than it may"
						      : "the token callback has no token");
			return;
		}
		n = sasl_start_token(s->sasl, m, a->user, tok, (size_t)tl, a->bearer_host,
				     a->bearer_port, line, sizeof(line));
		explicit_bzero(tok, sizeof(tok));
	} else if (sasl_is_token(m)) {
		n = sasl_start_token(s->sasl, m, a->user, a->secret, strlen(a->secret),
				     a->bearer_host, a->bearer_port, line, sizeof(line));
	} else {
		n = sasl_start(s->sasl, m, a->user, a->secret, NULL, line, sizeof(line));
	}
	if (n < 0 || !out_room(s, 1, (size_t)n)) {
		int cb = a->token_cb && sasl_is_token(m);
		explicit_bzero(line, sizeof(line));
		auth_fail(s, cb ? SMTPBULK_ETOKEN : SMTPBULK_EAUTH,
			  cb ? "the token callback's token is no bearer token (visible ASCII)"
			     : "the credentials do not fit the mechanism");
		return;
	}
	set_state(s, SESS_AUTH);
	out_secret(s, line, (size_t)n, 5 + strlen(sasl_mech_name(m)));
	expect(s, EXP_AUTH, 0, 0);
	explicit_bzero(line, sizeof(line));
}

static void start_auth(struct sess *s)
{
	const struct sess_auth *a = s->cfg->auth;
	if (!s->tls_on && !a->allow_plaintext) {
		auth_fail(s, SMTPBULK_EAUTHPLAIN, "the connection is not TLS");
		return;
	}
	if (!(s->caps.flags & SMTP_CAP_AUTH)) {
		auth_fail(s, SMTPBULK_EAUTHMECH, "the server offers no AUTH");
		return;
	}
	/* AUTO picks among those offered; a mechanism asked by name is tried even when
	 * not listed (the seed's "force"). */
	enum sasl_mech m = a->mech == SESS_AUTH_AUTO ? sasl_pick(s->caps.auth)
						     : (enum sasl_mech)a->mech;
	if (m == SASL_NONE) {
		auth_fail(s, SMTPBULK_EAUTHMECH, "no mechanism both sides support");
		return;
	}
	s->token_refused = 0; /* a new connection: its first token */
	auth_send(s, m, 0);
}

/*
 * A token mechanism's refusal (535, or a 5xx after the server's error report) is
 * most often an expired token. With a callback, once per connection: ask it for a
 * fresh one and AUTH again on this connection (RFC 4954 §4 lets a client try again
 * after a failed AUTH). True when that is under way.
 */
static int auth_retry_fresh(struct sess *s, const struct smtp_reply *r)
{
	if (!s->sasl || !sasl_is_token(s->sasl->mech) || !s->cfg->auth->token_cb ||
	    s->token_refused || (r->code != 535 && !(r->code / 100 == 5 && s->sasl->step > 0)))
		return 0;
	enum sasl_mech m = s->sasl->mech;
	s->token_refused = 1;
	sasl_clear(s->sasl); /* the refused token goes before the fresh one comes */
	slog(s, 7, "AUTH %s refused (%d): asking for a fresh token", sasl_mech_name(m),
	     r->code);
	auth_send(s, m, 1);
	return 1;
}

static void on_auth_reply(struct sess *s, const struct smtp_reply *r)
{
	char line[SASL_LINE_MAX];
	const char *text = "";
	size_t len = 0, pos = 0;
	smtp_reply_next_line(r, &pos, 0, &text, &len);
	if (r->code == 334 && s->sasl) {
		int n = sasl_step(s->sasl, text, len, line, sizeof(line));
		if (n < 0) {
			auth_fail(s, SMTPBULK_EAUTH,
				  n == SASL_ESERVERPROOF ? "the server's SCRAM proof is wrong"
							 : "the server's challenge makes no sense");
			return;
		}
		out_secret(s, line, (size_t)n, 0);
		expect(s, EXP_AUTH, 0, 0);
		explicit_bzero(line, sizeof(line));
		return;
	}
	if (r->code == 235 && s->sasl) {
		if (sasl_finish(s->sasl, text, len) != 0) {
			auth_fail(s, SMTPBULK_EAUTH, "the server's SCRAM proof is wrong");
			return;
		}
		s->authed = 1;
		slog(s, 5, "authenticated as %s with %s%s", s->cfg->auth->user,
		     sasl_mech_name(s->sasl->mech), s->token_refused ? " (a fresh token)" : "");
		auth_end(s, 0);
		become_ready(s);
		return;
	}
	if (r->code / 100 == 4) {
		auth_fail(s, SMTPBULK_EAUTHTEMP, "the server says try later");
		return;
	}
	if (auth_retry_fresh(s, r))
		return;
	/* 535: the credentials are wrong, and will be on every connection: stop them
	 * all rather than storm the server with logins it refuses. */
	if (r->code == 535)
		s->fatal = 1;
	auth_fail(s, SMTPBULK_EAUTH, r->code == 535 ? "bad credentials (535)"
						     : "refused by the server");
}

/* After EHLO (or HELO): STARTTLS when asked and not yet done, then AUTH, then ready. */
static void after_hello(struct sess *s)
{
	unsigned sec = s->cfg->secure;
	if (sec >= SMTPBULK_SECURE_STARTTLS && !s->tls_on && !s->starttls_refused) {
		if (s->caps.flags & SMTP_CAP_STARTTLS) {
			/* Alone: nothing may follow STARTTLS before the handshake. */
			set_state(s, SESS_STARTTLS);
			out_cmd(s, SMTP_CMD_STARTTLS, sizeof(SMTP_CMD_STARTTLS) - 1);
			expect(s, EXP_STARTTLS, 0, 0);
			return;
		}
		if (sec != SMTPBULK_SECURE_STARTTLS) {
			slog(s, 7, "server does not offer STARTTLS: no mail is sent to it");
			quit_fail(s, SMTPBULK_ENOSTARTTLS, 1);
			return;
		}
		slog(s, 5, "server does not offer STARTTLS: going on in plaintext (secure 3)");
	}
	if (s->cfg->auth && !s->authed) {
		start_auth(s);
		return;
	}
	become_ready(s);
}

/* Send EHLO (after the greeting, or again over TLS) and expect its reply. */
static void say_ehlo(struct sess *s)
{
	char buf[SMTP_CMD_MAX];
	set_state(s, SESS_EHLO);
	out_cmd(s, buf, (size_t)(s->cfg->lmtp ? smtp_cmd_lhlo : smtp_cmd_ehlo)(buf, sizeof(buf),
										s->cfg->hello));
	expect(s, EXP_EHLO, 0, 0);
}

void sess_tls_up(struct sess *s)
{
	if (s->state != SESS_TLS)
		return;
	s->tls_on = 1;
	s->rlen = 0;
	/* RFC 3207 §4.2: what the server said in plaintext is forgotten. */
	memset(&s->caps, 0, sizeof(s->caps));
	if (sess_secure_implicit(s->cfg->secure)) {
		set_state(s, SESS_GREETING);
		expect(s, EXP_GREETING, 0, 0);
		return;
	}
	say_ehlo(s);
}

/* ---- replies: one handler per expectation ------------------------------------------ */

static void on_greeting(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (r->code != 220) {
		conn_fail(s, SMTPBULK_EGREETING);
		return;
	}
	say_ehlo(s);
}

static void on_ehlo(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	char buf[SMTP_CMD_MAX];
	if (r->code / 100 == 2) {
		smtp_caps_parse(r, &s->caps);
		after_hello(s);
	} else if (r->code / 100 == 5 && s->cfg->lmtp) {
		/* LMTP has no HELO to fall back to: the server speaks SMTP, and would say
		 * the same to every connection. */
		slog(s, 7, "server refused LHLO (%d): it does not speak LMTP", r->code);
		quit_fail(s, SMTPBULK_ENOLMTP, 1);
	} else if (r->code / 100 == 5) {
		/* An old server: fall back to HELO (RFC 5321 §3.2). */
		set_state(s, SESS_HELO);
		out_cmd(s, buf, (size_t)smtp_cmd_helo(buf, sizeof(buf), s->cfg->hello));
		expect(s, EXP_HELO, 0, 0);
	} else {
		conn_fail(s, SMTPBULK_EHELLO);
	}
}

static void on_helo(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (r->code / 100 != 2) {
		conn_fail(s, SMTPBULK_EHELLO);
		return;
	}
	memset(&s->caps, 0, sizeof(s->caps));
	after_hello(s);
}

static void on_rset(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (r->code == 503 && e->behind_final) {
		/* Refused for where it was written, not for what it is: the MAIL behind
		 * it will be refused too and go again, after another RSET. */
		if (!s->final_refused)
			learn_no_dot_pipe(s, r);
		s->clean = 0;
		sess_pump(s);
		return;
	}
	if (r->code / 100 != 2) {
		conn_fail(s, SMTPBULK_ESERVER);
		return;
	}
	sess_pump(s);
}

static void on_quit(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (s->quit_err) {
		conn_fail(s, s->quit_err);
		return;
	}
	s->error = 0;
	set_state(s, SESS_CLOSED);
}

static void on_starttls(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (r->code == 220) {
		/* The handshake is the connection layer's; parse_replies() stops here, so
		 * whatever the server sent behind its 220 in plaintext is dropped (RFC 3207
		 * §6: response injection). */
		set_state(s, SESS_TLS);
		return;
	}
	if (s->cfg->secure != SMTPBULK_SECURE_STARTTLS) {
		slog(s, 7, "server refused STARTTLS (%d): no mail is sent to it", r->code);
		quit_fail(s, SMTPBULK_ENOSTARTTLS, r->code >= 500); /* 454 may pass */
		return;
	}
	slog(s, 5, "server refused STARTTLS (%d): going on in plaintext (secure 3)", r->code);
	s->starttls_refused = 1;
	after_hello(s);
}

static void on_auth(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	on_auth_reply(s, r);
}

/* MAIL, RCPT, DATA, the final dot and BDAT: the transaction they belong to decides. */
static void on_txn(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (!s->txn_len) {
		conn_fail(s, SMTPBULK_EPROTO);
		return;
	}
	on_txn_reply(s, e, r);
	if (s->state == SESS_TXN || s->state == SESS_IDLE)
		sess_pump(s);
}

/* The one-off command's reply: for the caller, whatever its code. The session is idle
 * again, but takes no message here: a second reply behind this one, in the same read,
 * must find nothing to answer (and end the connection, EPROTO) rather than a MAIL
 * written meanwhile; the connection layer offers messages once the read is done. */
static void command_answered(struct sess *s, const struct smtp_reply *r)
{
	int owed = s->cmd_out; /* 0: the stop ended it for its caller already */
	s->cmd_out = 0;
	if (s->state == SESS_CMD)
		set_state(s, SESS_IDLE);
	if (owed)
		s->ops->command(s->ctx, s, r, 0);
}

static void on_cmd(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	command_answered(s, r);
}

typedef void (*reply_handler)(struct sess *s, const struct sess_expect *e,
			      const struct smtp_reply *r);

static const reply_handler on_expect[] = {
	[EXP_GREETING] = on_greeting, [EXP_EHLO] = on_ehlo,   [EXP_HELO] = on_helo,
	[EXP_MAIL] = on_txn,          [EXP_RCPT] = on_txn,    [EXP_DATA] = on_txn,
	[EXP_DOT] = on_txn,           [EXP_RSET] = on_rset,   [EXP_QUIT] = on_quit,
	[EXP_BDAT] = on_txn,          [EXP_STARTTLS] = on_starttls, [EXP_AUTH] = on_auth,
	[EXP_CMD] = on_cmd,
};

static const char *expect_name(unsigned kind)
{
	static const char *const names[] = {
		[EXP_GREETING] = "the greeting", [EXP_EHLO] = "EHLO", [EXP_HELO] = "HELO",
		[EXP_MAIL] = "MAIL",  [EXP_RCPT] = "RCPT",   [EXP_DATA] = "DATA",
		[EXP_DOT] = "the end of data", [EXP_RSET] = "RSET", [EXP_QUIT] = "QUIT",
		[EXP_BDAT] = "BDAT",  [EXP_STARTTLS] = "STARTTLS", [EXP_AUTH] = "AUTH",
		[EXP_CMD] = "the command",
	};
	return kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

/* Codes that only one command can draw (RFC 5321 §4.3.2, RFC 4954, RFC 3207): another
 * command answered with one means replies and commands are out of step. */
static int reply_fits(unsigned kind, int code)
{
	if (kind == EXP_QUIT && code / 100 == 2 && code != 221)
		return 0; /* a 250 to QUIT answers something else: the replies are shifted */
	switch (code) {
	case 354:
		return kind == EXP_DATA;
	case 334:
	case 235:
		return kind == EXP_AUTH;
	case 220:
		return kind == EXP_GREETING || kind == EXP_STARTTLS;
	case 221:
		return kind == EXP_QUIT;
	default:
		return 1;
	}
}

/* A reply to a command of a transaction (not RSET, QUIT, EHLO, AUTH...). */
static int txn_reply(unsigned kind)
{
	return kind == EXP_MAIL || kind == EXP_RCPT || kind == EXP_DATA || kind == EXP_DOT ||
	       kind == EXP_BDAT;
}

/* The server asks to slow down (outcome.h): the worker is told, the transaction
 * marked, when throttles are handled at all (cfg->throttle_retries). 1 if so. */
static int note_throttle(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	if (!s->cfg->throttle_retries || r->code / 100 != 4 ||
	    !sb_reply_throttles(r->code, r->enh, r->enh_len, r->raw, r->raw_len,
				s->cfg->throttle_patterns))
		return 0;
	s->txns[e->txn].throttled = 1;
	if (s->ops->throttled)
		s->ops->throttled(s->ctx, s, r);
	return 1;
}

static void on_reply(struct sess *s, const struct smtp_reply *r)
{
	s->replies++;
	if (s->cfg->debug >= 10)
		slog(s, 10, "<< %.*s", (int)(r->raw_len > 2 ? r->raw_len - 2 : r->raw_len),
		     r->raw);
	if (s->ops->reply)
		s->ops->reply(s->ctx, s, r);
	if (s->fifo_len == 0) {
		conn_fail(s, SMTPBULK_EPROTO); /* a reply nobody asked for */
		return;
	}
	struct sess_expect e = s->fifo[s->fifo_head];
	if (r->code != 421 && (int32_t)(e.end - s->out_handed) > 0) {
		/* The command it would answer has not left us: the server answered
		 * before it read. Matching it would report what never happened. (A 421
		 * may come at any time: the server is closing, handled below.) */
		slog(s, 7, "reply %d came before its command (%s) was sent", r->code,
		     expect_name(e.kind));
		conn_fail(s, SMTPBULK_EPROTO);
		return;
	}
	if ((r->code != 250 || e.kind == EXP_QUIT) && !reply_fits(e.kind, r->code)) {
		slog(s, 7, "reply %d cannot answer %s: out of step with the server", r->code,
		     expect_name(e.kind));
		conn_fail(s, SMTPBULK_EPROTO);
		return;
	}
	s->fifo_head = (s->fifo_head + 1) % SESS_FIFO_MAX;
	s->fifo_len--;

	int throttles = txn_reply(e.kind) && s->txn_len && note_throttle(s, &e, r);
	/* 421: the server is closing the connection, whatever we asked (RFC 5321 §3.8). */
	if (r->code == 421 && e.kind != EXP_QUIT) {
		if (e.kind == EXP_CMD) /* the server's answer all the same */
			command_answered(s, r);
		if (e.kind >= EXP_MAIL && e.kind != EXP_RSET && s->txn_len)
			sb_msg_record(s->txns[e.txn].m, SB_SLOT_FINAL, r);
		conn_end(s, SMTPBULK_ESHUTDOWN, throttles ? REL_THROTTLE : REL_CLOSE);
		return;
	}
	on_expect[e.kind](s, &e, r);
}

void sess_connecting(struct sess *s)
{
	s->was_ready = 0;
	s->tls_on = 0;
	s->authed = 0;
	s->starttls_refused = 0;
	s->error = 0;
	s->mode = 0;
	s->chunking = 0;
	/* What the host's connections learned so far holds for this one from the start
	 * (read once: the sending path reads no shared line). */
	s->no_dot_pipe = (uint8_t)hl_no_dot_pipe(s->cfg->learned);
	s->cap = hl_conn_cap(s->cfg->learned);
	if (s->cfg->max_per_conn && (!s->cap || s->cfg->max_per_conn < s->cap))
		s->cap = s->cfg->max_per_conn; /* the caller's limit, if it is the lower */
	s->window = hl_window(s->cfg->learned, s->cfg->window);
	s->spent = 0;
	s->final_refused = 0;
	s->mails = s->mails_ok = 0;
	s->txn_answered = 0;
	s->quit_err = 0;
	s->cmd_out = 0;
	s->out_total = s->out_handed = s->out_taken = 0;
	memset(&s->caps, 0, sizeof(s->caps));
	memset(&s->times, 0, sizeof(s->times));
	set_state(s, SESS_CONNECTING);
	s->at_phase = sess_now(s); /* also when it was CONNECTING already (a retry) */
}

void sess_connected(struct sess *s, int err)
{
	if (s->state != SESS_CONNECTING)
		return;
	if (err) {
		slog(s, 7, "connect failed: %s", strerror(-err));
		conn_fail(s, err);
		return;
	}
	if (sess_secure_implicit(s->cfg->secure)) {
		set_state(s, SESS_TLS); /* implicit TLS: the handshake, then the greeting */
		return;
	}
	set_state(s, SESS_GREETING);
	expect(s, EXP_GREETING, 0, 0);
}

char *sess_rspace(struct sess *s, size_t *cap)
{
	/* Allocated when first needed and kept: with pooled receives (sess_feed) only a
	 * connection that ever saw a reply split across reads has one. */
	if (!s->rbuf && !(s->rbuf = malloc(SMTP_REPLY_MAX))) {
		*cap = 0;
		return NULL;
	}
	*cap = SMTP_REPLY_MAX - s->rlen;
	return s->rbuf + s->rlen;
}

/* Replies are read in these states; not during the TLS handshake (sess_feed drops
 * what a reply parse left when the state changes to SESS_TLS). */
static int receiving(const struct sess *s)
{
	return s->state >= SESS_GREETING && s->state <= SESS_QUIT && s->state != SESS_TLS;
}

/* Act on the complete replies at the start of p[0..len); returns the bytes used. */
static size_t parse_replies(struct sess *s, const char *p, size_t len)
{
	size_t off = 0;
	while (receiving(s) && off < len) {
		struct smtp_reply r;
		int rc = smtp_reply_parse(p + off, len - off, &r);
		if (rc == SMTP_REPLY_NEED_MORE)
			break;
		if (rc < 0) {
			conn_fail(s, rc == SMTP_REPLY_ETOOLONG ? SMTPBULK_ETOOLONG : SMTPBULK_EPROTO);
			break;
		}
		off += (size_t)rc;
		on_reply(s, &r);
	}
	return off;
}

void sess_input(struct sess *s, size_t n)
{
	s->rlen += n;
	size_t off = parse_replies(s, s->rbuf, s->rlen);
	if (!receiving(s)) {
		s->rlen = 0;
		return;
	}
	if (off) {
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
	}
}

void sess_feed(struct sess *s, const char *buf, size_t n)
{
	while (n && receiving(s)) {
		if (s->rlen == 0) { /* the common case: whole replies, parsed where they lie */
			size_t used = parse_replies(s, buf, n);
			buf += used;
			n -= used;
			if (!n || !receiving(s))
				break;
		}
		/* A reply split across reads: gather it in rbuf. */
		size_t cap;
		char *p = sess_rspace(s, &cap);
		if (!p) {
			conn_fail(s, -ENOMEM);
			break;
		}
		if (cap == 0) { /* cannot happen: the parser refuses a full rbuf first */
			conn_fail(s, SMTPBULK_ETOOLONG);
			break;
		}
		size_t k = n < cap ? n : cap;
		memcpy(p, buf, k);
		buf += k;
		n -= k;
		sess_input(s, k);
	}
	if (!receiving(s))
		s->rlen = 0;
}

int sess_output(const struct sess *s, struct iovec *iov, int max)
{
	int n = 0;
	for (unsigned i = 0; i < s->out_len && n < max; i++)
		iov[n++] = s->out[(s->out_head + i) % SESS_OUT_MAX];
	return n;
}

void sess_handed(struct sess *s, const struct iovec *iov, int n)
{
	uint32_t upto = s->out_taken;
	for (int i = 0; i < n; i++)
		upto += (uint32_t)iov[i].iov_len;
	if ((int32_t)(upto - s->out_handed) > 0)
		s->out_handed = upto;
}

void sess_sent(struct sess *s, size_t n)
{
	s->out_taken += (uint32_t)n;
	if ((int32_t)(s->out_taken - s->out_handed) > 0)
		s->out_handed = s->out_taken; /* a caller that never said sess_handed() */
	while (n && s->out_len) {
		struct iovec *v = &s->out[s->out_head];
		size_t k = n < v->iov_len ? n : v->iov_len;
		v->iov_base = (char *)v->iov_base + k;
		v->iov_len -= k;
		n -= k;
		if (v->iov_len == 0) {
			s->out_head = (s->out_head + 1) % SESS_OUT_MAX;
			s->out_len--;
		}
	}
	if (s->out_len == 0) {
		/* Everything is out: wbuf can start over, and what waited for room goes. */
		out_clear(s);
		sess_pump(s);
	}
}

void sess_io_error(struct sess *s, int err)
{
	if (s->state == SESS_QUIT && s->quit_err) {
		conn_fail(s, s->quit_err);
		return;
	}
	if (s->state == SESS_QUIT) { /* the server closed after our QUIT: fine */
		s->error = 0;
		set_state(s, SESS_CLOSED);
		return;
	}
	conn_fail(s, err);
}

void sess_io_fatal(struct sess *s, int err)
{
	s->fatal = 1;
	sess_io_error(s, err);
}

/* Write QUIT and expect its reply; 0 when there is no room for it. */
static int say_quit(struct sess *s)
{
	if (!out_room(s, 1, 6))
		return 0;
	set_state(s, SESS_QUIT);
	out_cmd(s, SMTP_CMD_QUIT, 6);
	expect(s, EXP_QUIT, 0, 0);
	return 1;
}

int sess_command(struct sess *s, const char *line, size_t len)
{
	if (s->state != SESS_IDLE || s->fifo_len || s->txn_len || !s->ops->command)
		return -EBUSY;
	if (!out_room(s, 1, len))
		return -ENOSPC;
	set_state(s, SESS_CMD);
	out_cmd(s, line, len);
	expect(s, EXP_CMD, 0, 0);
	s->cmd_out = 1;
	return 0;
}

int sess_quit(struct sess *s)
{
	return s->state == SESS_IDLE && say_quit(s);
}

void sess_abort(struct sess *s, smtpbulk_status_t st, int err)
{
	command_fail(s, err);
	while (s->txn_len)
		s->ops->done(s->ctx, s, txn_bury(s, txn_pop(s)), st, err);
	s->fifo_len = 0;
	out_clear(s);
	if (s->state != SESS_DEAD && s->state != SESS_DOWN)
		set_state(s, SESS_CLOSED);
}

void sess_hang(struct sess *s)
{
	if (s->txn_len > 1) {
		hl_shrink_window(s->cfg->learned);
		slog(s, 5, "a reply came too late with %u transactions in flight: this host's "
			   "next connections start with one, and grow back", s->txn_len);
	}
	conn_end(s, SMTPBULK_ETIMEDOUT, REL_HANG);
}

void sess_restart(struct sess *s)
{
	conn_end(s, SMTPBULK_ETIMEDOUT, REL_FREE);
}

int sess_waiting(const struct sess *s)
{
	if (s->state == SESS_CONNECTING || s->state == SESS_TLS)
		return 1;
	if (s->state < SESS_GREETING || s->state > SESS_QUIT)
		return 0;
	return s->fifo_len > 0 || s->out_len > 0;
}

enum sess_phase sess_phase(const struct sess *s, int backlog)
{
	if (s->state == SESS_CONNECTING || s->state == SESS_TLS)
		return SESS_PH_GREETING;
	if (s->fifo_len == 0)
		return s->out_len || backlog ? SESS_PH_BLOCK : SESS_PH_MAIL;
	switch (s->fifo[s->fifo_head].kind) { /* the oldest reply still owed */
	case EXP_GREETING:
		return SESS_PH_GREETING;
	case EXP_RCPT:
		return SESS_PH_RCPT;
	case EXP_DATA:
		return SESS_PH_DATA;
	case EXP_DOT:
	case EXP_BDAT:
		return s->out_len ? SESS_PH_BLOCK : SESS_PH_DOT;
	default:
		return SESS_PH_MAIL;
	}
}

void sess_give_up(struct sess *s, int err)
{
	if (!sess_is_over(s))
		return; /* only a connection that is down gives up */
	s->error = err;
	set_state(s, SESS_DEAD);
}

void sess_cancel_work(struct sess *s)
{
	/* Only an RSET is out (the one after a failed transaction, written at once while
	 * its result was delivered): no message is at stake, so the connection goes on
	 * until it is idle and says QUIT, as the stop promises. Aborting it closed the
	 * socket without QUIT whenever a stop came right behind a refused message. */
	if (s->state == SESS_TXN && s->txn_len == 0)
		return;
	/* A command: its caller learns of the stop now; its reply, when it comes, ends
	 * the state (on_cmd) and the connection QUITs like any idle one. */
	if (s->state == SESS_CMD) {
		command_fail(s, SMTPBULK_ECANCELLED);
		return;
	}
	if (s->state == SESS_TXN || s->state == SESS_CONNECTING)
		sess_abort(s, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
}

void sess_reset(struct sess *s)
{
	s->rlen = 0;
	s->fifo_len = 0;
	out_clear(s);
	bury_stuffed(s);
	sasl_drop(s);
	if (s->state == SESS_CLOSED)
		set_state(s, SESS_DOWN);
}
