#include "sink_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "grow.h"
#include "io.h"
#include "sink_rate.h"
#include "smtpbulk.h"
#include "tls.h"
#include "transport.h"

enum { TK_ACCEPT = 1, TK_RECV, TK_SEND, TK_WAKE };
#define TOKEN(kind, idx) (((uint64_t)(kind) << 56) | (uint64_t)(idx))
#define TK_KIND(t) ((unsigned)((t) >> 56))
#define TK_IDX(t) ((uint32_t)(t))
#define RBUF 8192
#define TLS_PLAIN 16384

struct sink_thread;

/* One client connection. Owned by its thread. */
struct sconn {
	struct sink_thread *t;
	int fd;
	unsigned inflight;
	uint8_t recv_busy, send_busy;
	uint8_t closing;      /* being closed (after its operations come back) */
	uint8_t cancelled;    /* cancel issued for the operations in flight */
	size_t sent;          /* bytes of proto.out already taken (sent or encrypted) */
	size_t rlen;          /* input not yet consumed (proto.out was full) */
	uint64_t hold_until;  /* --delay: send nothing before this (monotonic ns; 0 = not held) */
	struct msghdr mh;
	struct iovec iov[1];
	struct sb_transport xp; /* plaintext, or TLS (implicit, or after STARTTLS) */
	/* Where the receive in flight writes, and the transport it was posted for: one
	 * posted before a STARTTLS switch brings the ClientHello into rbuf. */
	char *recv_at;
	const struct sb_transport_ops *recv_ops, *send_ops;
	struct sink_counts seen; /* proto.counts already added to the totals */
	char rbuf[RBUF];
	struct sink_conn proto;
};

struct sink_thread {
	struct sink_server *srv;
	pthread_t thread;
	int listen_fd;
	int wake_fd;
	uint64_t wake_val;
	const struct sb_io_backend *be;
	struct sb_io *io;
	char desc[64];
	struct sconn **conns; /* slots; NULL = free */
	size_t n_slots;
	unsigned n_open;
	unsigned n_held;      /* connections whose replies are held back (--delay) */
	int init_rc;
	uint64_t seed;
	pid_t tid;            /* for its CPU time in /proc/self/task */
	char *tls_plain;      /* TLS_PLAIN bytes: decrypted input (TLS sinks only) */
};

struct sink_server {
	struct sink_options opt;
	struct sink_thread *threads;
	unsigned n_threads;
	uint16_t port;
	_Atomic int stop;
	_Atomic int done;
	_Atomic uint64_t connections, messages, recipients, bytes, rejected, auth_ok, auth_failed;
	_Atomic uint64_t tls_handshakes, tls_resumed, tls_failed;
	_Atomic uint64_t throttled, lmtp_rcpt_failed;
	struct WOLFSSL_CTX *tls_ctx; /* read-only once the threads run */
	struct sink_cfg cfg;         /* opt.cfg with starttls and rate set */
	struct sink_rate *rate;      /* shared by the threads (sink_rate.h) */
	uint64_t t0_ns;              /* second 0 of --max-rate and per_second; read-only */
	int halted;                  /* the threads are joined (sink_server_halt) */
	/* The unix socket's file we made, to remove at the end (if it is still ours). */
	char *unix_path;
	dev_t unix_dev;
	ino_t unix_ino;
	pthread_mutex_t lock; /* start handshake only */
	pthread_cond_t cond;
	unsigned started;
};

static void account(struct sink_thread *t, struct sconn *c)
{
	struct sink_server *s = t->srv;
	struct sink_counts *n = &c->proto.counts, *o = &c->seen;
	if (n->messages != o->messages) {
		uint64_t total = atomic_fetch_add_explicit(&s->messages, n->messages - o->messages,
							   memory_order_relaxed) +
				 (n->messages - o->messages);
		if (s->opt.max_messages && total >= s->opt.max_messages)
			atomic_store(&s->done, 1);
	}
	atomic_fetch_add_explicit(&s->recipients, n->recipients - o->recipients, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->bytes, n->bytes - o->bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->rejected, n->rejected - o->rejected, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->auth_ok, n->auth_ok - o->auth_ok, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->auth_failed, n->auth_failed - o->auth_failed,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&s->throttled, n->throttled - o->throttled, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->lmtp_rcpt_failed, n->lmtp_rcpt_failed - o->lmtp_rcpt_failed,
				  memory_order_relaxed);
	*o = *n;
}

static void conn_close(struct sink_thread *t, unsigned idx)
{
	struct sconn *c = t->conns[idx];
	c->closing = 1;
	if (c->inflight) {
		if (!c->cancelled) {
			c->cancelled = 1;
			t->be->cancel_fd(t->io, c->fd);
			shutdown(c->fd, SHUT_RDWR);
		}
		return;
	}
	t->be->forget_fd(t->io, c->fd);
	close(c->fd);
	/* A handshake that never finished failed, or the client gave up on it. */
	if (sb_transport_secure(&c->xp) && !c->xp.tls->up)
		atomic_fetch_add_explicit(&t->srv->tls_failed, 1, memory_order_relaxed);
	sb_transport_close(&c->xp);
	free(c);
	t->conns[idx] = NULL;
	t->n_open--;
}

/* Feed buffered input to the protocol machine (as far as its output has room). */
static void consume(struct sink_thread *t, struct sconn *c)
{
	if (!c->rlen)
		return;
	/* One clock for every thread, read here rather than in the pure protocol: a MAIL
	 * counts against the second its bytes were handed over in. */
	c->proto.now_s = (uint32_t)((sb_now_ns() - t->srv->t0_ns) / SB_NS_PER_S);
	size_t used = sink_input(&c->proto, c->rbuf, c->rlen);
	memmove(c->rbuf, c->rbuf + used, c->rlen - used);
	c->rlen -= used;
	account(t, c);
}

/* ---- the protocol as its transport's endpoint -------------------------------------- */

static int ep_pending(void *ep, struct iovec *iov, int max)
{
	struct sconn *c = ep;
	if (max < 1 || c->proto.out_len <= c->sent)
		return 0;
	iov[0].iov_base = c->proto.out + c->sent;
	iov[0].iov_len = c->proto.out_len - c->sent;
	return 1;
}

static void ep_taken(void *ep, size_t n)
{
	struct sconn *c = ep;
	c->sent += n;
	if (c->sent == c->proto.out_len) {
		c->sent = c->proto.out_len = 0;
		consume(c->t, c); /* input that waited for output room */
	}
}

static char *ep_space(void *ep, size_t *cap)
{
	struct sconn *c = ep;
	*cap = RBUF - c->rlen;
	return c->rbuf + c->rlen;
}

static void ep_arrived(void *ep, size_t n)
{
	struct sconn *c = ep;
	c->rlen += n;
	consume(c->t, c);
}

static size_t ep_room(void *ep)
{
	return RBUF - ((struct sconn *)ep)->rlen;
}

static void ep_feed(void *ep, const char *p, size_t n)
{
	struct sconn *c = ep;
	memcpy(c->rbuf + c->rlen, p, n);
	ep_arrived(ep, n);
}

static int ep_open(void *ep)
{
	return !((struct sconn *)ep)->closing;
}

static int ep_finished(void *ep)
{
	struct sconn *c = ep;
	return c->proto.mode == SINK_CLOSING && c->proto.out_len == c->sent;
}

static void ep_tls_up(void *ep, const struct sb_tls *tls)
{
	struct sconn *c = ep;
	atomic_fetch_add_explicit(&c->t->srv->tls_handshakes, 1, memory_order_relaxed);
	if (sb_tls_resumed(tls))
		atomic_fetch_add_explicit(&c->t->srv->tls_resumed, 1, memory_order_relaxed);
}

static const struct sb_endpoint sink_endpoint = {
	.pending = ep_pending,
	.taken = ep_taken,
	.space = ep_space,
	.arrived = ep_arrived,
	.room = ep_room,
	.feed = ep_feed,
	.open = ep_open,
	.finished = ep_finished,
	.tls_up = ep_tls_up,
};

/* --delay: is this connection's output held back? Starts a hold the protocol asked for. */
static int held(struct sink_thread *t, struct sconn *c)
{
	if (c->proto.delay_req) {
		c->proto.delay_req = 0;
		if (!c->hold_until)
			t->n_held++;
		c->hold_until = sb_now_ns() + (uint64_t)t->srv->opt.cfg.faults.delay_ms * SB_NS_PER_MS;
	}
	if (!c->hold_until)
		return 0;
	if (sb_now_ns() < c->hold_until)
		return 1;
	c->hold_until = 0;
	t->n_held--;
	return 0;
}

static int tls_start(struct sink_thread *t, struct sconn *c)
{
	if (!t->tls_plain && !(t->tls_plain = malloc(TLS_PLAIN)))
		return -ENOMEM;
	return sb_transport_tls_server(&c->xp, t->srv->tls_ctx, t->tls_plain, TLS_PLAIN);
}

static void kick(struct sink_thread *t, unsigned idx)
{
	struct sconn *c = t->conns[idx];
	if (c->closing) {
		if (c->hold_until) {
			c->hold_until = 0;
			t->n_held--;
		}
		conn_close(t, idx); /* now, or once its operations are back */
		return;
	}
	if (held(t, c))
		return; /* nothing sent, nothing more read, until the hold ends */
	if (c->proto.mode == SINK_STARTTLS && !sb_transport_secure(&c->xp) &&
	    c->proto.out_len == c->sent && !c->send_busy) {
		/* The 220 is out: from here on, TLS. What the client sent behind its
		 * STARTTLS in plaintext is dropped. */
		c->rlen = 0;
		if (tls_start(t, c) != 0) {
			c->closing = 1;
			kick(t, idx);
			return;
		}
		sink_tls_started(&c->proto);
	}
	int rc = c->xp.ops->flush(&c->xp);
	if (rc >= 0 && !c->send_busy &&
	    (rc = sb_transport_send(&c->xp, t->be, t->io, c->fd, &c->mh, c->iov, 1,
				    TOKEN(TK_SEND, idx))) > 0) {
		c->send_busy = 1;
		c->send_ops = c->xp.ops;
		c->inflight++;
	}
	if (rc < 0 || c->closing) {
		c->closing = 1;
		kick(t, idx);
		return;
	}
	if (c->proto.mode == SINK_CLOSING && c->proto.out_len == c->sent &&
	    !c->xp.ops->unsent(&c->xp) && !c->send_busy) {
		conn_close(t, idx); /* everything said: close */
		return;
	}
	if (!c->recv_busy && c->proto.mode != SINK_CLOSING) {
		size_t cap = 0;
		char *p = c->xp.ops->recv_space(&c->xp, &cap); /* TLS: ciphertext's inbox */
		if (p && cap && t->be->recv(t->io, c->fd, p, cap, TOKEN(TK_RECV, idx)) == 0) {
			c->recv_busy = 1;
			c->recv_at = p;
			c->recv_ops = c->xp.ops;
			c->inflight++;
		}
	}
}

static int new_conn(struct sink_thread *t, int fd)
{
	size_t idx = 0;
	while (idx < t->n_slots && t->conns[idx])
		idx++;
	if (idx == t->n_slots) {
		size_t old = t->n_slots;
		struct sconn **v = sb_grow(t->conns, &t->n_slots, old + 1, sizeof(*v), 64);
		if (!v)
			return -ENOMEM;
		memset(v + old, 0, (t->n_slots - old) * sizeof(*v));
		t->conns = v;
	}
	struct sconn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->t = t;
	c->fd = fd;
	/* Replies go out as they are ready, one send at a time: without this, Nagle holds
	 * a reply back until the client acknowledges the one before, and a client that
	 * delays its acknowledgements (it has nothing to send: paced, one message at a
	 * time) waits milliseconds for each. Fails harmlessly on a unix socket. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sb_transport_plain(&c->xp, &sink_endpoint, c);
	t->seed = t->seed * 6364136223846793005ull + 1442695040888963407ull;
	sink_conn_init(&c->proto, &t->srv->cfg, t->seed);
	sink_greet(&c->proto); /* with implicit TLS, sent once the handshake is done */
	if (t->srv->opt.tls == SINK_TLS_IMPLICIT) {
		if (tls_start(t, c) != 0) {
			free(c);
			return -ENOMEM;
		}
		sink_tls_started(&c->proto);
	}
	t->conns[idx] = c;
	t->n_open++;
	atomic_fetch_add_explicit(&t->srv->connections, 1, memory_order_relaxed);
	kick(t, (unsigned)idx);
	return 0;
}

static void on_cqe(struct sink_thread *t, const struct sb_cqe *e)
{
	unsigned kind = TK_KIND(e->token), idx = TK_IDX(e->token);
	if (kind == TK_WAKE) {
		t->be->read_eventfd(t->io, t->wake_fd, &t->wake_val, TOKEN(TK_WAKE, 0));
		return;
	}
	if (kind == TK_ACCEPT) {
		if (e->res >= 0 && (atomic_load(&t->srv->stop) || new_conn(t, e->res) != 0))
			close(e->res);
		if (!atomic_load(&t->srv->stop))
			t->be->accept(t->io, t->listen_fd, TOKEN(TK_ACCEPT, 0));
		return;
	}
	if (idx >= t->n_slots || !t->conns[idx])
		return;
	struct sconn *c = t->conns[idx];
	c->inflight--;
	if (kind == TK_RECV) {
		c->recv_busy = 0;
		if (e->res <= 0 || c->closing) {
			c->closing = 1;
		} else {
			/* Posted before the switch to TLS: the bytes at recv_at are ciphertext. */
			const char *buf = c->recv_ops == c->xp.ops ? NULL : c->recv_at;
			if (c->xp.ops->bytes_in(&c->xp, buf, (size_t)e->res) < 0)
				c->closing = 1;
		}
	} else if (kind == TK_SEND) {
		c->send_busy = 0;
		if (e->res < 0 || c->closing)
			c->closing = 1;
		else
			c->send_ops->sent(&c->xp, (size_t)e->res);
	}
	kick(t, idx);
}

static void *sink_thread_main(void *arg)
{
	struct sink_thread *t = arg;
	struct sink_server *s = t->srv;
	struct sb_cqe cqes[128];
	t->tid = gettid();
	int rc = sb_io_open(s->opt.backend, 256, &t->be, &t->io, t->desc, sizeof(t->desc));
	if (rc == 0)
		rc = t->be->read_eventfd(t->io, t->wake_fd, &t->wake_val, TOKEN(TK_WAKE, 0));
	if (rc == 0)
		rc = t->be->accept(t->io, t->listen_fd, TOKEN(TK_ACCEPT, 0));
	pthread_mutex_lock(&s->lock);
	t->init_rc = rc;
	s->started++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (rc)
		return NULL;
	int stopping = 0;
	for (;;) {
		if (atomic_load(&s->stop) && !stopping) {
			stopping = 1;
			t->be->cancel_fd(t->io, t->listen_fd);
			for (unsigned i = 0; i < t->n_slots; i++)
				if (t->conns[i])
					conn_close(t, i);
		}
		if (stopping && t->n_open == 0)
			break;
		int timeout = stopping ? 50 : -1;
		if (t->n_held && !stopping) {
			/* Release the holds that are due; sleep until the next one. */
			uint64_t now = sb_now_ns(), next = UINT64_MAX;
			for (unsigned i = 0; i < t->n_slots; i++) {
				struct sconn *c = t->conns[i];
				if (!c || !c->hold_until)
					continue;
				if (c->hold_until <= now)
					kick(t, i);
				else if (c->hold_until < next)
					next = c->hold_until;
			}
			if (next != UINT64_MAX)
				timeout = (int)((next - now + 999999) / 1000000);
		}
		int n = t->be->wait(t->io, cqes, 128, timeout);
		for (int i = 0; i < n; i++)
			on_cqe(t, &cqes[i]);
		if (stopping) /* connections whose last operation just came back */
			for (unsigned i = 0; i < t->n_slots; i++)
				if (t->conns[i] && !t->conns[i]->inflight)
					conn_close(t, i);
	}
	if (s->tls_ctx)
		sb_tls_thread_end();
	return NULL;
}

static int listen_socket(const struct sink_options *o, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET6, o->host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
		len = sizeof(struct sockaddr_in6);
	} else if (inet_pton(AF_INET, o->host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons(port);
		len = sizeof(struct sockaddr_in);
	} else {
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* A unix-domain listening socket at path. A socket file that nobody listens on any more
 * (a sink that was killed) is replaced; a live one, or any other file, is left alone. */
static int listen_unix(struct sink_server *s, const char *path, const char **why)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int rc;
	*why = "cannot listen there";
	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		*why = "the path is empty or too long for a unix socket";
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*why = "the path exists and is not a socket";
			rc = -EEXIST;
			goto fail;
		}
		/* Non-blocking, so a live server with a full backlog (EAGAIN) cannot stall
		 * us; only ECONNREFUSED says that nobody is there. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (probe < 0) {
			rc = -errno;
			goto fail;
		}
		int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
		close(probe);
		if (live != ECONNREFUSED && live != ENOENT) {
			*why = live == 0 || live == EAGAIN ? "another server listens on that socket"
							  : "cannot check the socket already there";
			rc = live == 0 || live == EAGAIN ? -EADDRINUSE : -live;
			goto fail;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			*why = "cannot remove the stale socket";
			rc = -errno;
			goto fail;
		}
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto fail;
	}
	if (listen(fd, 4096) < 0 || lstat(path, &st) < 0 || !(s->unix_path = strdup(path))) {
		rc = -errno; /* listen's, lstat's or strdup's */
		unlink(path);
		goto fail;
	}
	s->unix_dev = st.st_dev;
	s->unix_ino = st.st_ino;
	return fd;
fail:
	close(fd);
	return rc;
}

/* Remove the socket file we made, unless someone has put another in its place. */
static void unlink_unix(struct sink_server *s)
{
	struct stat st;
	if (!s->unix_path)
		return;
	if (lstat(s->unix_path, &st) == 0 && st.st_dev == s->unix_dev && st.st_ino == s->unix_ino)
		unlink(s->unix_path);
	free(s->unix_path);
	s->unix_path = NULL;
}

int sink_server_start(const struct sink_options *o, struct sink_server **out, const char **why)
{
	struct sink_server *s = calloc(1, sizeof(*s));
	int rc = 0;
	*why = "out of memory";
	if (!s)
		return -ENOMEM;
	s->opt = *o;
	s->cfg = o->cfg;
	s->cfg.starttls = o->tls == SINK_TLS_STARTTLS;
	s->n_threads = o->threads ? o->threads : 1;
	if (!(s->rate = sink_rate_new(o->max_rate))) {
		free(s);
		return -ENOMEM;
	}
	s->cfg.rate = s->rate;
	if (o->tls != SINK_TLS_NONE) {
		struct sb_tls_ctx_cfg tc = {
			.server = 1, .cert_file = o->cert_file, .key_file = o->key_file,
		};
		static _Thread_local char why_buf[300];
		if ((rc = sb_tls_ctx_new(&tc, &s->tls_ctx, why_buf, sizeof(why_buf))) != 0) {
			*why = why_buf;
			sink_rate_free(s->rate);
			free(s);
			return rc;
		}
	}
	s->threads = calloc(s->n_threads, sizeof(*s->threads));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (!s->threads) {
		sb_tls_ctx_free(s->tls_ctx);
		sink_rate_free(s->rate);
		free(s);
		return -ENOMEM;
	}
	uint16_t port = o->port;
	for (unsigned i = 0; i < s->n_threads; i++)
		s->threads[i].listen_fd = s->threads[i].wake_fd = -1;
	for (unsigned i = 0; i < s->n_threads; i++) {
		struct sink_thread *t = &s->threads[i];
		t->srv = s;
		t->seed = 0x9e3779b97f4a7c15ull * (i + 1);
		if (o->unix_path) {
			/* No SO_REUSEPORT for unix sockets: the threads share one listening
			 * socket, each accepting on its own descriptor of it. */
			t->listen_fd = i == 0 ? listen_unix(s, o->unix_path, why)
					      : fcntl(s->threads[0].listen_fd, F_DUPFD_CLOEXEC, 0);
			if (t->listen_fd < 0) {
				rc = i == 0 ? t->listen_fd : -errno;
				goto fail;
			}
		} else {
			/* The first socket picks the port (when 0); the others share it. */
			t->listen_fd = listen_socket(o, port, &port);
			if (t->listen_fd < 0) {
				rc = t->listen_fd;
				*why = rc == -EINVAL ? "not an IP address" : "cannot listen there";
				goto fail;
			}
		}
		t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (t->wake_fd < 0) {
			rc = -errno;
			*why = "eventfd";
			goto fail;
		}
	}
	s->port = o->unix_path ? 0 : port;
	s->t0_ns = sb_now_ns();
	unsigned started = 0;
	for (; started < s->n_threads; started++)
		if (pthread_create(&s->threads[started].thread, NULL, sink_thread_main,
				   &s->threads[started]) != 0)
			break;
	pthread_mutex_lock(&s->lock);
	while (s->started < started)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < started && !rc; i++)
		rc = s->threads[i].init_rc;
	if (started < s->n_threads && !rc)
		rc = -EAGAIN;
	if (rc) {
		*why = rc == SMTPBULK_EBACKEND ? "the requested I/O backend is not available"
					       : "cannot start the server threads";
		s->n_threads = started; /* only those to join */
		sink_server_stop(s);
		return rc;
	}
	*out = s;
	return 0;
fail:
	for (unsigned i = 0; i < s->n_threads; i++) {
		if (s->threads[i].listen_fd >= 0)
			close(s->threads[i].listen_fd);
		if (s->threads[i].wake_fd >= 0)
			close(s->threads[i].wake_fd);
	}
	free(s->threads);
	sb_tls_ctx_free(s->tls_ctx);
	unlink_unix(s);
	sink_rate_free(s->rate);
	free(s);
	return rc;
}

uint16_t sink_server_port(const struct sink_server *s)
{
	return s->port;
}

const char *sink_server_backend(const struct sink_server *s)
{
	return s->threads[0].be ? s->threads[0].be->name : "none";
}

void sink_server_totals(struct sink_server *s, struct sink_totals *t)
{
	t->connections = atomic_load(&s->connections);
	t->messages = atomic_load(&s->messages);
	t->recipients = atomic_load(&s->recipients);
	t->bytes = atomic_load(&s->bytes);
	t->rejected = atomic_load(&s->rejected);
	t->auth_ok = atomic_load(&s->auth_ok);
	t->auth_failed = atomic_load(&s->auth_failed);
	t->tls_handshakes = atomic_load(&s->tls_handshakes);
	t->tls_resumed = atomic_load(&s->tls_resumed);
	t->tls_failed = atomic_load(&s->tls_failed);
	t->throttled = atomic_load(&s->throttled);
	t->lmtp_rcpt_failed = atomic_load(&s->lmtp_rcpt_failed);
}

size_t sink_server_per_second(struct sink_server *s, uint64_t *out, size_t cap)
{
	return sink_per_second_read(s->rate, out, cap);
}

void sink_server_cpu(struct sink_server *s, double *user_s, double *sys_s)
{
	double hz = (double)sysconf(_SC_CLK_TCK);
	*user_s = *sys_s = 0;
	for (unsigned i = 0; i < s->n_threads; i++) {
		char path[64], buf[1024];
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)s->threads[i].tid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		/* Fields 14 and 15 (utime, stime) follow the ")" that ends the name. */
		char *p = strrchr(buf, ')');
		unsigned long long ut = 0, st = 0;
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) == 2) {
			*user_s += (double)ut / hz;
			*sys_s += (double)st / hz;
		}
	}
}

int sink_server_done(struct sink_server *s)
{
	return atomic_load(&s->done);
}

void sink_server_halt(struct sink_server *s)
{
	if (s->halted)
		return;
	s->halted = 1;
	atomic_store(&s->stop, 1);
	for (unsigned i = 0; i < s->n_threads; i++) {
		uint64_t one = 1;
		ssize_t r = write(s->threads[i].wake_fd, &one, sizeof(one));
		(void)r;
	}
	for (unsigned i = 0; i < s->n_threads; i++) {
		struct sink_thread *t = &s->threads[i];
		pthread_join(t->thread, NULL);
	}
}

void sink_server_stop(struct sink_server *s)
{
	if (!s)
		return;
	sink_server_halt(s);
	for (unsigned i = 0; i < s->n_threads; i++) {
		struct sink_thread *t = &s->threads[i];
		if (t->io)
			t->be->destroy(t->io);
		close(t->listen_fd);
		close(t->wake_fd);
		for (size_t k = 0; k < t->n_slots; k++)
			if (t->conns[k]) {
				close(t->conns[k]->fd);
				sb_transport_close(&t->conns[k]->xp);
				free(t->conns[k]);
			}
		free(t->conns);
		free(t->tls_plain);
	}
	sb_tls_ctx_free(s->tls_ctx);
	unlink_unix(s);
	sink_rate_free(s->rate);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->threads);
	free(s);
}
