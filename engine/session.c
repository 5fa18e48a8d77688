#include "session.h"

#include <errno.h>
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
		[SESS_HELO] = "HELO",       [SESS_IDLE] = "IDLE",
		[SESS_TXN] = "TXN",         [SESS_RSET] = "RSET",
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

/* This is the only way to change a session's state. */
static void set_state(struct sess *s, enum sess_state st)
{
	if (s->state != st)
		slog(s, 10, "state %s -> %s", sess_state_name(s->state), sess_state_name(st));
	s->state = st;
}

int sess_init(struct sess *s, const struct sess_cfg *cfg, const struct sess_ops *ops,
	      void *ctx, unsigned host_idx, unsigned conn_idx)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->ops = ops;
	s->ctx = ctx;
	s->host_idx = host_idx;
	s->conn_idx = conn_idx;
	s->state = SESS_DOWN;
	s->rbuf = malloc(SMTP_REPLY_MAX);
	return s->rbuf ? 0 : -ENOMEM;
}

void sess_fini(struct sess *s)
{
	free(s->rbuf);
	free(s->xbuf);
	s->rbuf = s->xbuf = NULL;
}

static void expect(struct sess *s, enum sess_expect_kind kind, uint32_t arg)
{
	/* Lockstep never has more than one outstanding; the bound is for pipelining. */
	unsigned i = (s->fifo_head + s->fifo_len) % SESS_FIFO_MAX;
	s->fifo[i].kind = (uint8_t)kind;
	s->fifo[i].arg = arg;
	s->fifo_len++;
}

/* Queue a command's bytes. The buffer only fills if a caller breaks lockstep. */
static int put(struct sess *s, const char *p, size_t n)
{
	if (s->woff == s->wlen)
		s->woff = s->wlen = 0;
	if (n > SESS_WBUF - s->wlen)
		return -ENOSPC;
	memcpy(s->wbuf + s->wlen, p, n);
	s->wlen += n;
	slog(s, 10, ">> %.*s", (int)(n >= 2 ? n - 2 : n), p);
	return 0;
}

static void conn_fail(struct sess *s, int err);

static void send_cmd(struct sess *s, int len, const char *buf, enum sess_expect_kind k,
		     uint32_t arg)
{
	if (len < 0 || put(s, buf, (size_t)len) < 0) {
		conn_fail(s, len < 0 ? len : -ENOSPC);
		return;
	}
	expect(s, k, arg);
}

static void send_literal(struct sess *s, const char *cmd, enum sess_expect_kind k)
{
	send_cmd(s, (int)strlen(cmd), cmd, k, 0);
}

static void end_msg(struct sess *s, smtpbulk_status_t st, int err)
{
	struct sb_msg *m = s->msg;
	s->msg = NULL;
	s->body_streaming = 0;
	if (m)
		s->ops->done(s->ctx, s, m, st, err);
}

/* Connection trouble: the message in progress is retried or fails, the connection ends. */
static void conn_fail(struct sess *s, int err)
{
	struct sb_msg *m = s->msg;
	if (s->state == SESS_CLOSED || s->state == SESS_DEAD || s->state == SESS_DOWN)
		return;
	slog(s, 7, "connection failed in %s: %d", sess_state_name(s->state), err);
	s->msg = NULL;
	s->body_streaming = 0;
	if (m) {
		if (m->attempts < s->cfg->max_attempts)
			s->ops->requeue(s->ctx, s, m);
		else
			s->ops->done(s->ctx, s, m, SMTPBULK_FAILED, err);
	}
	s->error = err;
	s->fifo_len = 0;
	s->woff = s->wlen = 0;
	s->nseg = 0;
	if (!s->was_ready)
		s->fails++;
	set_state(s, s->fails >= s->cfg->retry_fail ? SESS_DEAD : SESS_CLOSED);
}

static void start_txn(struct sess *s, struct sb_msg *m);

/* Ready for a message: take one if the worker has one, else wait idle. */
static void become_ready(struct sess *s)
{
	if (!s->was_ready) {
		s->was_ready = 1;
		s->fails = 0;
		slog(s, 5, "connected, ready (caps 0x%x, size %llu)", s->caps.flags,
		     (unsigned long long)s->caps.size_max);
	}
	for (;;) {
		struct sb_msg *m = s->ops->next_msg(s->ctx, s);
		if (!m) {
			set_state(s, SESS_IDLE);
			return;
		}
		start_txn(s, m);
		if (s->state != SESS_IDLE)
			return; /* started; or refused locally and we try the next */
	}
}

static void start_txn(struct sess *s, struct sb_msg *m)
{
	char buf[SMTP_CMD_MAX];
	unsigned flags = 0;

	set_state(s, SESS_IDLE);
	m->attempts++;
	sb_msg_reset_replies(m);
	/* Refuse locally what the server told us it cannot take: no round trip wasted. */
	if (s->caps.size_max && m->wire_size > s->caps.size_max) {
		s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, SMTPBULK_EMSGSIZE);
		return;
	}
	if (m->flags & SB_MSG_UTF8ADDR) {
		if (!(s->caps.flags & SMTP_CAP_SMTPUTF8)) {
			s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, SMTPBULK_EUTF8);
			return;
		}
		flags |= SMTP_MAIL_SMTPUTF8;
	}
	if ((m->flags & SB_MSG_8BIT) && (s->caps.flags & SMTP_CAP_8BITMIME))
		flags |= SMTP_MAIL_8BITMIME;
	int n = smtp_cmd_mail(buf, sizeof(buf), m->from,
			      (s->caps.flags & SMTP_CAP_SIZE) ? (uint64_t)m->wire_size : 0, flags);
	if (n < 0) { /* cannot happen for a message sb_msg_new accepted */
		s->ops->done(s->ctx, s, m, SMTPBULK_REJECTED, n);
		return;
	}
	s->msg = m;
	s->rcpt_next = s->rcpt_ok = s->rcpt_temp = 0;
	s->body_off = 0;
	set_state(s, SESS_TXN);
	send_cmd(s, n, buf, EXP_MAIL, 0);
}

static void send_rcpt(struct sess *s)
{
	char buf[SMTP_CMD_MAX];
	size_t i = s->rcpt_next++;
	send_cmd(s, smtp_cmd_rcpt(buf, sizeof(buf), s->msg->rcpts[i].rcpt), buf, EXP_RCPT,
		 (uint32_t)i);
}

/* After a failed transaction: RSET so the connection can carry the next message. */
static void fail_txn(struct sess *s, smtpbulk_status_t st, int err)
{
	end_msg(s, st, err);
	set_state(s, SESS_RSET);
	send_literal(s, SMTP_CMD_RSET, EXP_RSET);
}

static smtpbulk_status_t status_of(int code)
{
	return code >= 500 ? SMTPBULK_REJECTED : SMTPBULK_FAILED;
}

static void body_refill(struct sess *s)
{
	const struct sb_msg *m = s->msg;
	size_t used = 0;
	size_t out = dotstuff_run(&s->ds, m->body + s->body_off, m->body_len - s->body_off,
				  &used, s->xbuf, SESS_XBUF - DOTSTUFF_FINISH_MAX);
	s->body_off += used;
	if (s->body_off == m->body_len) {
		out += dotstuff_finish(&s->ds, s->xbuf + out);
		s->body_streaming = 0;
	}
	s->seg[0].iov_base = s->xbuf;
	s->seg[0].iov_len = out;
	s->nseg = 1;
}

static void start_body(struct sess *s)
{
	const struct sb_msg *m = s->msg;
	expect(s, EXP_DOT, 0);
	if (m->flags & SB_MSG_CLEAN) {
		/* Zero copy: the body goes out from the message's own memory. */
		s->nseg = 0;
		if (m->body_len) {
			s->seg[s->nseg].iov_base = (void *)(uintptr_t)m->body;
			s->seg[s->nseg++].iov_len = m->body_len;
		}
		s->seg[s->nseg].iov_base = (void *)(uintptr_t)dot_crlf;
		s->seg[s->nseg++].iov_len = 3;
		return;
	}
	if (!s->xbuf && !(s->xbuf = malloc(SESS_XBUF))) {
		conn_fail(s, -ENOMEM);
		return;
	}
	dotstuff_init(&s->ds);
	s->body_streaming = 1;
	body_refill(s);
}

static void on_txn_reply(struct sess *s, const struct sess_expect *e, const struct smtp_reply *r)
{
	struct sb_msg *m = s->msg;
	int cls = r->code / 100;

	switch (e->kind) {
	case EXP_MAIL:
		if (cls == 2) {
			send_rcpt(s);
			return;
		}
		sb_msg_record(m, SB_SLOT_FINAL, r);
		fail_txn(s, status_of(r->code), SMTPBULK_ESERVER);
		return;
	case EXP_RCPT:
		sb_msg_record(m, e->arg, r);
		if (cls == 2)
			s->rcpt_ok++;
		else if (cls == 4)
			s->rcpt_temp++;
		if (s->rcpt_next < m->n_rcpts) {
			send_rcpt(s);
		} else if (s->rcpt_ok > 0) {
			send_literal(s, SMTP_CMD_DATA, EXP_DATA);
		} else {
			/* Every recipient refused: permanent only if every refusal was. */
			sb_msg_record(m, SB_SLOT_FINAL, r);
			fail_txn(s, s->rcpt_temp ? SMTPBULK_FAILED : SMTPBULK_REJECTED,
				 SMTPBULK_ESERVER);
		}
		return;
	case EXP_DATA:
		if (r->code == 354) {
			start_body(s);
			return;
		}
		sb_msg_record(m, SB_SLOT_FINAL, r);
		fail_txn(s, cls == 2 ? SMTPBULK_FAILED : status_of(r->code), SMTPBULK_ESERVER);
		return;
	case EXP_DOT:
		sb_msg_record(m, SB_SLOT_FINAL, r);
		if (cls == 2)
			end_msg(s, s->rcpt_ok == m->n_rcpts ? SMTPBULK_DELIVERED : SMTPBULK_PARTIAL,
				0);
		else
			end_msg(s, status_of(r->code), SMTPBULK_ESERVER);
		/* The transaction is over either way (RFC 5321 §4.1.1.4): no RSET needed. */
		become_ready(s);
		return;
	default:
		conn_fail(s, SMTPBULK_EPROTO);
		return;
	}
}

static void on_reply(struct sess *s, const struct smtp_reply *r)
{
	if (s->cfg->debug >= 10)
		slog(s, 10, "<< %.*s", (int)(r->raw_len > 2 ? r->raw_len - 2 : r->raw_len),
		     r->raw);
	if (s->fifo_len == 0) {
		conn_fail(s, SMTPBULK_EPROTO); /* a reply nobody asked for */
		return;
	}
	struct sess_expect e = s->fifo[s->fifo_head];
	s->fifo_head = (s->fifo_head + 1) % SESS_FIFO_MAX;
	s->fifo_len--;

	/* 421: the server is closing the connection, whatever we asked (RFC 5321 §3.8). */
	if (r->code == 421 && e.kind != EXP_QUIT) {
		if (s->msg)
			sb_msg_record(s->msg, SB_SLOT_FINAL, r);
		conn_fail(s, SMTPBULK_ECLOSED);
		return;
	}

	switch (e.kind) {
	case EXP_GREETING:
		if (r->code != 220) {
			conn_fail(s, SMTPBULK_EGREETING);
			return;
		}
		{
			char buf[SMTP_CMD_MAX];
			set_state(s, SESS_EHLO);
			send_cmd(s, smtp_cmd_ehlo(buf, sizeof(buf), s->cfg->hello), buf, EXP_EHLO, 0);
		}
		return;
	case EXP_EHLO:
		if (r->code / 100 == 2) {
			smtp_caps_parse(r, &s->caps);
			become_ready(s);
		} else if (r->code / 100 == 5) {
			/* An old server: fall back to HELO (RFC 5321 §3.2). */
			char buf[SMTP_CMD_MAX];
			set_state(s, SESS_HELO);
			send_cmd(s, smtp_cmd_helo(buf, sizeof(buf), s->cfg->hello), buf, EXP_HELO, 0);
		} else {
			conn_fail(s, SMTPBULK_EHELLO);
		}
		return;
	case EXP_HELO:
		if (r->code / 100 == 2) {
			memset(&s->caps, 0, sizeof(s->caps));
			become_ready(s);
		} else {
			conn_fail(s, SMTPBULK_EHELLO);
		}
		return;
	case EXP_RSET:
		if (r->code / 100 == 2)
			become_ready(s);
		else
			conn_fail(s, SMTPBULK_ESERVER);
		return;
	case EXP_QUIT:
		s->error = 0;
		set_state(s, SESS_CLOSED);
		return;
	default:
		if (!s->msg) {
			conn_fail(s, SMTPBULK_EPROTO);
			return;
		}
		on_txn_reply(s, &e, r);
		return;
	}
}

void sess_connecting(struct sess *s)
{
	s->was_ready = 0;
	s->error = 0;
	memset(&s->caps, 0, sizeof(s->caps));
	set_state(s, SESS_CONNECTING);
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
	set_state(s, SESS_GREETING);
	expect(s, EXP_GREETING, 0);
}

char *sess_rspace(struct sess *s, size_t *cap)
{
	*cap = SMTP_REPLY_MAX - s->rlen;
	return s->rbuf + s->rlen;
}

static int receiving(const struct sess *s)
{
	return s->state >= SESS_GREETING && s->state <= SESS_QUIT;
}

void sess_input(struct sess *s, size_t n)
{
	size_t off = 0;
	s->rlen += n;
	while (receiving(s) && off < s->rlen) {
		struct smtp_reply r;
		int rc = smtp_reply_parse(s->rbuf + off, s->rlen - off, &r);
		if (rc == SMTP_REPLY_NEED_MORE)
			break;
		if (rc < 0) {
			conn_fail(s, rc == SMTP_REPLY_ETOOLONG ? SMTPBULK_ETOOLONG : SMTPBULK_EPROTO);
			break;
		}
		off += (size_t)rc;
		on_reply(s, &r);
	}
	if (!receiving(s)) {
		s->rlen = 0;
		return;
	}
	if (off) {
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
	}
}

int sess_output(const struct sess *s, struct iovec *iov, int max)
{
	int n = 0;
	if (s->wlen > s->woff && n < max) {
		iov[n].iov_base = (void *)(s->wbuf + s->woff);
		iov[n++].iov_len = s->wlen - s->woff;
	}
	for (unsigned i = 0; i < s->nseg && n < max; i++)
		iov[n++] = s->seg[i];
	return n;
}

void sess_sent(struct sess *s, size_t n)
{
	size_t w = s->wlen - s->woff;
	if (w) {
		size_t k = n < w ? n : w;
		s->woff += k;
		n -= k;
		if (s->woff == s->wlen)
			s->woff = s->wlen = 0;
	}
	while (n && s->nseg) {
		struct iovec *v = &s->seg[0];
		size_t k = n < v->iov_len ? n : v->iov_len;
		v->iov_base = (char *)v->iov_base + k;
		v->iov_len -= k;
		n -= k;
		if (v->iov_len == 0) {
			s->seg[0] = s->seg[1];
			s->nseg--;
		}
	}
	if (s->nseg == 0 && s->body_streaming && s->msg)
		body_refill(s);
}

void sess_io_error(struct sess *s, int err)
{
	if (s->state == SESS_QUIT) { /* the server closed after our QUIT: fine */
		s->error = 0;
		set_state(s, SESS_CLOSED);
		return;
	}
	conn_fail(s, err);
}

int sess_offer(struct sess *s, struct sb_msg *m)
{
	if (s->state != SESS_IDLE)
		return -EBUSY;
	start_txn(s, m);
	if (s->state == SESS_IDLE)
		become_ready(s); /* m was refused locally: look for another */
	return 0;
}

int sess_quit(struct sess *s)
{
	if (s->state != SESS_IDLE)
		return 0;
	set_state(s, SESS_QUIT);
	send_literal(s, SMTP_CMD_QUIT, EXP_QUIT);
	return 1;
}

void sess_abort(struct sess *s, smtpbulk_status_t st, int err)
{
	end_msg(s, st, err);
	s->fifo_len = 0;
	s->woff = s->wlen = 0;
	s->nseg = 0;
	if (s->state != SESS_DEAD && s->state != SESS_DOWN)
		set_state(s, SESS_CLOSED);
}

void sess_reset(struct sess *s)
{
	s->rlen = 0;
	s->fifo_len = 0;
	s->woff = s->wlen = 0;
	s->nseg = 0;
	if (s->state == SESS_CLOSED)
		set_state(s, SESS_DOWN);
}
