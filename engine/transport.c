/* The plaintext and TLS transports (see transport.h). */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpbulk.h"
#include "tls.h"

#define TLS_OUT_HIGH (256u << 10) /* encrypt no further ahead of the socket than this */
#define TLS_IOV 64

/* Why a TLS transport failed or closed, for sb_transport_describe(). */
enum { WHY_NONE, WHY_HANDSHAKE, WHY_RECORD, WHY_CLOSED_AFTER_HANDSHAKE };
static const char *const why_text[] = {
	[WHY_NONE] = NULL,
	[WHY_HANDSHAKE] = "handshake",
	[WHY_RECORD] = "connection",
	[WHY_CLOSED_AFTER_HANDSHAKE] = "closed",
};

/* ---- plaintext -------------------------------------------------------------------- */

static int plain_flush(struct sb_transport *x)
{
	(void)x; /* the endpoint's bytes go out as they are */
	return 0;
}

static int plain_wire(struct sb_transport *x, struct iovec *iov, int max)
{
	return x->ep_ops->pending(x->ep, iov, max);
}

static int plain_sent(struct sb_transport *x, size_t n)
{
	x->ep_ops->taken(x->ep, n);
	return 0;
}

static char *plain_recv_space(struct sb_transport *x, size_t *cap)
{
	return x->ep_ops->space(x->ep, cap);
}

static int plain_bytes_in(struct sb_transport *x, const char *buf, size_t n)
{
	if (!buf) {
		x->ep_ops->arrived(x->ep, n);
		return 0;
	}
	/* A pooled buffer goes back after this call: the endpoint must take it all. */
	if (x->ep_ops->room(x->ep) < n)
		return -ENOBUFS;
	x->ep_ops->feed(x->ep, buf, n);
	return 0;
}

static int plain_resume(struct sb_transport *x)
{
	(void)x;
	return 0;
}

static int plain_eof(struct sb_transport *x)
{
	(void)x;
	return SMTPBULK_ECLOSED;
}

static size_t plain_unsent(const struct sb_transport *x)
{
	(void)x;
	return 0;
}

static void plain_idle(struct sb_transport *x, int recv_busy, int send_busy)
{
	(void)x, (void)recv_busy, (void)send_busy;
}

static const struct sb_transport_ops plain_ops = {
	.name = "plaintext",
	.flush = plain_flush,
	.wire = plain_wire,
	.sent = plain_sent,
	.recv_space = plain_recv_space,
	.bytes_in = plain_bytes_in,
	.resume = plain_resume,
	.eof = plain_eof,
	.unsent = plain_unsent,
	.idle = plain_idle,
};

/* ---- TLS -------------------------------------------------------------------------- */

static unsigned char why_of(const struct sb_transport *x)
{
	for (unsigned i = 0; i < sizeof(why_text) / sizeof(why_text[0]); i++)
		if (why_text[i] == x->why)
			return (unsigned char)i;
	return WHY_NONE;
}

/* Run the handshake as far as the input allows: 1 up, 0 more input needed, < 0. */
static int tls_step(struct sb_transport *x)
{
	struct sb_tls *t = x->tls;
	if (t->up)
		return 1;
	int rc = sb_tls_handshake(t);
	if (rc < 0) {
		x->why = why_text[WHY_HANDSHAKE];
		return rc;
	}
	if (rc == 0)
		return 0;
	x->ep_ops->tls_up(x->ep, t);
	return 1;
}

/* The peer closed the TLS connection. Right after the handshake, before a single byte
 * of application data, that is how TLS 1.3 servers refuse a client certificate (or the
 * lack of one): a TLS error, not "the server closed the connection". */
static int tls_closed(struct sb_transport *x)
{
	if (x->tls->up && !x->tls->got_data) {
		x->why = why_text[WHY_CLOSED_AFTER_HANDSHAKE];
		return SMTPBULK_ETLS;
	}
	return SMTPBULK_ECLOSED;
}

/* Continue the handshake; once it is up, decrypt what the endpoint has room for. */
static int tls_input(struct sb_transport *x)
{
	int rc = tls_step(x);
	if (rc <= 0)
		return rc;
	for (;;) { /* ends: each read consumes input, and the input is finite */
		if (!x->ep_ops->open(x->ep))
			return 0;
		size_t room = x->ep_ops->room(x->ep);
		if (room == 0)
			return 0; /* it stays buffered until resume() */
		int n = sb_tls_read(x->tls, x->scratch, room < x->scratch_cap ? room : x->scratch_cap);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (n == SMTPBULK_ECLOSED)
				return tls_closed(x);
			x->why = why_text[WHY_RECORD];
			return n;
		}
		x->ep_ops->feed(x->ep, x->scratch, (size_t)n);
	}
}

static int tls_resume(struct sb_transport *x)
{
	return sb_tls_has_input(x->tls) ? tls_input(x) : 0;
}

/* Encrypt what the endpoint has to say, but only what the outbox may hold: a 1 GB body
 * is not copied whole. */
static int tls_flush(struct sb_transport *x)
{
	struct sb_tls *t = x->tls;
	struct iovec iov[TLS_IOV];
	int rc = tls_step(x); /* the ClientHello, the first time */
	if (rc <= 0)
		return rc;
	if ((rc = tls_resume(x)) < 0)
		return rc;
	while (t->up && x->ep_ops->open(x->ep) && sb_tls_unsent(t) < TLS_OUT_HIGH) {
		int n = x->ep_ops->pending(x->ep, iov, TLS_IOV);
		if (n <= 0)
			break;
		size_t budget = TLS_OUT_HIGH - sb_tls_unsent(t), total = 0;
		for (int i = 0; i < n; i++) {
			if (total + iov[i].iov_len >= budget) {
				iov[i].iov_len = budget - total;
				n = i + 1;
				break;
			}
			total += iov[i].iov_len;
		}
		long k = sb_tls_writev(t, iov, n);
		if (k <= 0) {
			x->why = why_text[WHY_RECORD];
			return k ? (int)k : SMTPBULK_ETLS;
		}
		x->ep_ops->taken(x->ep, (size_t)k); /* it may say more: loop */
		if ((rc = tls_resume(x)) < 0) /* input that waited for its output room */
			return rc;
	}
	if (t->up && x->ep_ops->finished(x->ep))
		sb_tls_close_notify(t); /* behind the last words: nothing else will be written */
	return 0;
}

static int tls_wire(struct sb_transport *x, struct iovec *iov, int max)
{
	const char *p;
	if (max < 1)
		return 0;
	size_t len = sb_tls_outgoing(x->tls, &p);
	if (!len)
		return 0;
	iov[0].iov_base = (void *)(uintptr_t)p;
	iov[0].iov_len = len;
	return 1;
}

static int tls_sent(struct sb_transport *x, size_t n)
{
	sb_tls_sent(x->tls, n);
	return 0;
}

static char *tls_recv_space(struct sb_transport *x, size_t *cap)
{
	return sb_tls_rspace(x->tls, cap);
}

static int tls_bytes_in(struct sb_transport *x, const char *buf, size_t n)
{
	if (buf) {
		int rc = sb_tls_push(x->tls, buf, n);
		if (rc)
			return rc;
	} else {
		sb_tls_received(x->tls, n);
	}
	return tls_input(x);
}

static int tls_eof(struct sb_transport *x)
{
	x->tls->peer_closed = 1;
	int rc = tls_input(x); /* what is in the inbox still counts (a last reply) */
	if (rc < 0)
		return rc;
	return x->tls->up ? tls_closed(x) : SMTPBULK_ETLS;
}

static size_t tls_unsent(const struct sb_transport *x)
{
	return sb_tls_unsent(x->tls);
}

static void tls_idle(struct sb_transport *x, int recv_busy, int send_busy)
{
	/* 10k idle TLS connections should not hold 12 KB of empty buffers each. A plain
	 * receive in flight writes into the inbox: it stays. */
	if (x->tls->up)
		sb_tls_trim(x->tls, recv_busy, send_busy);
}

static const struct sb_transport_ops tls_ops = {
	.name = "TLS",
	.flush = tls_flush,
	.wire = tls_wire,
	.sent = tls_sent,
	.recv_space = tls_recv_space,
	.bytes_in = tls_bytes_in,
	.resume = tls_resume,
	.eof = tls_eof,
	.unsent = tls_unsent,
	.idle = tls_idle,
};

/* ---- switching and the rest ------------------------------------------------------- */

void sb_transport_plain(struct sb_transport *x, const struct sb_endpoint *ep_ops, void *ep)
{
	memset(x, 0, sizeof(*x));
	x->ops = &plain_ops;
	x->ep_ops = ep_ops;
	x->ep = ep;
}

static int to_tls(struct sb_transport *x, struct sb_tls *t, char *scratch, size_t cap)
{
	x->ops = &tls_ops;
	x->tls = t;
	x->scratch = scratch;
	x->scratch_cap = cap;
	x->why = NULL;
	return 0;
}

int sb_transport_tls_client(struct sb_transport *x, struct WOLFSSL_CTX *ctx, const char *name,
			    int verify, struct WOLFSSL_SESSION *resume, char *scratch,
			    size_t cap)
{
	struct sb_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = sb_tls_client(t, ctx, name, verify, resume);
	if (rc) {
		free(t);
		return rc;
	}
	return to_tls(x, t, scratch, cap);
}

int sb_transport_tls_server(struct sb_transport *x, struct WOLFSSL_CTX *ctx, char *scratch,
			    size_t cap)
{
	struct sb_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	int rc = sb_tls_server(t, ctx);
	if (rc) {
		free(t);
		return rc;
	}
	return to_tls(x, t, scratch, cap);
}

struct WOLFSSL_SESSION *sb_transport_session(struct sb_transport *x)
{
	return x->tls ? sb_tls_session(x->tls) : NULL;
}

void sb_transport_close(struct sb_transport *x)
{
	if (x->tls) {
		sb_tls_free(x->tls);
		free(x->tls);
	}
	sb_transport_plain(x, x->ep_ops, x->ep);
}

void sb_transport_describe(const struct sb_transport *x, char *buf, size_t cap)
{
	char why[200];
	switch (why_of(x)) {
	case WHY_CLOSED_AFTER_HANDSHAKE:
		snprintf(buf, cap, "the server closed the connection right after the TLS "
				   "handshake (it may not accept our certificate, or the lack of "
				   "one)");
		return;
	case WHY_HANDSHAKE:
	case WHY_RECORD:
		sb_tls_describe(x->tls ? x->tls->wolf_err : 0, why, sizeof(why));
		snprintf(buf, cap, "TLS %s failed: %s", x->why, why);
		return;
	default:
		snprintf(buf, cap, "%s", "");
	}
}

int sb_transport_send(struct sb_transport *x, const struct sb_io_backend *be, struct sb_io *io,
		      int fd, struct msghdr *mh, struct iovec *iov, int max, uint64_t token)
{
	int n = x->ops->wire(x, iov, max);
	if (n <= 0)
		return n;
	memset(mh, 0, sizeof(*mh));
	mh->msg_iov = iov;
	mh->msg_iovlen = (size_t)n;
	int rc = be->sendmsg(io, fd, mh, token);
	return rc < 0 ? rc : 1;
}

int sb_transport_send_last(struct sb_transport *x, int fd)
{
	struct iovec iov[4];
	int n = x->ops->wire(x, iov, 4);
	if (n <= 0)
		return n;
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
	ssize_t k = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (k < 0)
		return -errno;
	x->ops->sent(x, (size_t)k);
	return 1;
}
