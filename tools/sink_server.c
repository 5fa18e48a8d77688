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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io.h"
#include "smtpbulk.h"
#include "tls.h"

enum { TK_ACCEPT = 1, TK_RECV, TK_SEND, TK_WAKE };
#define TOKEN(kind, idx) (((uint64_t)(kind) << 56) | (uint64_t)(idx))
#define TK_KIND(t) ((unsigned)((t) >> 56))
#define TK_IDX(t) ((uint32_t)(t))
#define RBUF 8192

/* One client connection. Owned by its thread. */
struct sconn {
	int fd;
	unsigned inflight;
	uint8_t recv_busy, send_busy;
	uint8_t closing;      /* 2: being closed (after its operations come back) */
	uint8_t cancelled;    /* cancel issued for the operations in flight */
	size_t sent;          /* bytes of proto.out already handed to the kernel */
	size_t rlen;          /* input not yet consumed (proto.out was full) */
	uint64_t hold_until;  /* --delay: send nothing before this (monotonic ns; 0 = not held) */
	struct msghdr mh;
	struct iovec iov;
	struct sb_tls *tls;   /* NULL: plaintext */
	uint8_t send_tls;     /* the send in flight is from tls's outbox */
	uint8_t tls_failed_counted;
	uint8_t recv_tls;     /* the receive in flight is into tls's inbox; else at recv_at
	                         in rbuf (posted before a STARTTLS switch, it brings the
	                         ClientHello) */
	char *recv_at;
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
	unsigned n_slots, n_open;
	unsigned n_held;      /* connections whose replies are held back (--delay) */
	int init_rc;
	uint64_t seed;
	pid_t tid;            /* for its CPU time in /proc/self/task */
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
	struct WOLFSSL_CTX *tls_ctx; /* read-only once the threads run */
	struct sink_cfg cfg;         /* opt.cfg with starttls set */
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
	*o = *n;
}

static void conn_close(struct sink_thread *t, unsigned idx)
{
	struct sconn *c = t->conns[idx];
	c->closing = 2;
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
	if (c->tls) {
		if (!c->tls->up && !c->tls_failed_counted) /* the client gave up on it */
			atomic_fetch_add_explicit(&t->srv->tls_failed, 1, memory_order_relaxed);
		sb_tls_free(c->tls);
		free(c->tls);
	}
	free(c);
	t->conns[idx] = NULL;
	t->n_open--;
}

/* Feed buffered input to the protocol machine (as far as its output has room). */
static void consume(struct sink_thread *t, struct sconn *c)
{
	if (!c->rlen)
		return;
	size_t used = sink_input(&c->proto, c->rbuf, c->rlen);
	memmove(c->rbuf, c->rbuf + used, c->rlen - used);
	c->rlen -= used;
	account(t, c);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --delay: is this connection's output held back? Starts a hold the protocol asked for. */
static int held(struct sink_thread *t, struct sconn *c)
{
	if (c->proto.delay_req) {
		c->proto.delay_req = 0;
		if (!c->hold_until)
			t->n_held++;
		c->hold_until = now_ns() + (uint64_t)t->srv->opt.cfg.faults.delay_ms * 1000000ull;
	}
	if (!c->hold_until)
		return 0;
	if (now_ns() < c->hold_until)
		return 1;
	c->hold_until = 0;
	t->n_held--;
	return 0;
}

/* Decrypt what arrived and feed it to the protocol, as far as it takes input. */
static void tls_in(struct sink_thread *t, struct sconn *c)
{
	struct sb_tls *tls = c->tls;
	if (!tls->up) {
		int rc = sb_tls_handshake(tls);
		if (rc < 0) {
			atomic_fetch_add_explicit(&t->srv->tls_failed, 1, memory_order_relaxed);
			c->tls_failed_counted = 1;
			c->closing = 2;
			return;
		}
		if (rc == 0)
			return;
		atomic_fetch_add_explicit(&t->srv->tls_handshakes, 1, memory_order_relaxed);
		if (sb_tls_resumed(tls))
			atomic_fetch_add_explicit(&t->srv->tls_resumed, 1, memory_order_relaxed);
	}
	for (;;) { /* ends: each read consumes ciphertext, or rbuf stays full */
		consume(t, c);
		if (c->rlen == RBUF)
			return; /* the protocol's output is full: after the next send */
		int n = sb_tls_read(tls, c->rbuf + c->rlen, RBUF - c->rlen);
		if (n == 0)
			return;
		if (n < 0) {
			c->closing = 2;
			return;
		}
		c->rlen += (size_t)n;
	}
}

static int tls_start(struct sink_thread *t, struct sconn *c)
{
	if (!(c->tls = calloc(1, sizeof(*c->tls))))
		return -ENOMEM;
	int rc = sb_tls_server(c->tls, t->srv->tls_ctx);
	if (rc) {
		free(c->tls);
		c->tls = NULL;
	}
	return rc;
}

/* TLS: encrypt the replies, take more input, and send the ciphertext. */
static void tls_kick(struct sink_thread *t, unsigned idx)
{
	struct sconn *c = t->conns[idx];
	struct sb_tls *tls = c->tls;
	for (int i = 0; i < 64 && tls->up && c->proto.out_len > c->sent && !c->closing; i++) {
		struct iovec v = {c->proto.out + c->sent, c->proto.out_len - c->sent};
		if (sb_tls_writev(tls, &v, 1) < 0) {
			c->closing = 2;
			break;
		}
		c->sent = c->proto.out_len = 0;
		tls_in(t, c); /* input that waited for output room */
	}
	if (c->proto.mode == SINK_CLOSING && c->proto.out_len == c->sent)
		sb_tls_close_notify(tls);
	if (!c->send_busy && !c->closing) {
		const char *p;
		size_t len = sb_tls_outgoing(tls, &p);
		if (len) {
			c->iov.iov_base = (void *)(uintptr_t)p;
			c->iov.iov_len = len;
			memset(&c->mh, 0, sizeof(c->mh));
			c->mh.msg_iov = &c->iov;
			c->mh.msg_iovlen = 1;
			if (t->be->sendmsg(t->io, c->fd, &c->mh, TOKEN(TK_SEND, idx)) == 0) {
				c->send_busy = 1;
				c->send_tls = 1;
				c->inflight++;
			}
		}
	}
}

static void kick(struct sink_thread *t, unsigned idx)
{
	struct sconn *c = t->conns[idx];
	if (c->closing == 2) {
		if (c->hold_until) {
			c->hold_until = 0;
			t->n_held--;
		}
		if (!c->inflight)
			conn_close(t, idx);
		return;
	}
	if (held(t, c))
		return; /* nothing sent, nothing more read, until the hold ends */
	if (c->tls) {
		tls_kick(t, idx);
		if (c->closing == 2) {
			kick(t, idx);
			return;
		}
		if (c->proto.mode == SINK_CLOSING && c->proto.out_len == c->sent &&
		    !sb_tls_unsent(c->tls) && !c->send_busy) {
			conn_close(t, idx); /* everything said: close */
			return;
		}
	} else if (c->proto.mode == SINK_STARTTLS && c->proto.out_len == c->sent &&
		   !c->send_busy) {
		/* The 220 is out: from here on, TLS. What the client sent behind its
		 * STARTTLS in plaintext is dropped. */
		c->rlen = 0;
		if (tls_start(t, c) != 0) {
			c->closing = 2;
			kick(t, idx);
			return;
		}
		sink_tls_started(&c->proto);
	}
	if (!c->tls && !c->send_busy && c->proto.out_len > c->sent) {
		c->iov.iov_base = c->proto.out + c->sent;
		c->iov.iov_len = c->proto.out_len - c->sent;
		memset(&c->mh, 0, sizeof(c->mh));
		c->mh.msg_iov = &c->iov;
		c->mh.msg_iovlen = 1;
		if (t->be->sendmsg(t->io, c->fd, &c->mh, TOKEN(TK_SEND, idx)) == 0) {
			c->send_busy = 1;
			c->inflight++;
		}
	}
	if (!c->tls && c->proto.mode == SINK_CLOSING && c->proto.out_len == c->sent) {
		conn_close(t, idx); /* everything said: close */
		return;
	}
	if (!c->recv_busy && c->proto.mode != SINK_CLOSING) {
		size_t cap = 0;
		char *p = NULL;
		if (c->tls) {
			p = sb_tls_rspace(c->tls, &cap); /* ciphertext; rbuf gets plaintext */
		} else if (c->rlen < RBUF) {
			p = c->rbuf + c->rlen;
			cap = RBUF - c->rlen;
		}
		if (p && cap && t->be->recv(t->io, c->fd, p, cap, TOKEN(TK_RECV, idx)) == 0) {
			c->recv_busy = 1;
			c->recv_tls = c->tls != NULL;
			c->recv_at = p;
			c->inflight++;
		}
	}
}

static int new_conn(struct sink_thread *t, int fd)
{
	unsigned idx = 0;
	while (idx < t->n_slots && t->conns[idx])
		idx++;
	if (idx == t->n_slots) {
		unsigned n = t->n_slots ? t->n_slots * 2 : 64;
		struct sconn **v = realloc(t->conns, n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		memset(v + t->n_slots, 0, (n - t->n_slots) * sizeof(*v));
		t->conns = v;
		t->n_slots = n;
	}
	struct sconn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = fd;
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
	kick(t, idx);
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
			c->closing = 2;
		} else if (c->tls) {
			if (c->recv_tls)
				sb_tls_received(c->tls, (size_t)e->res);
			else if (sb_tls_push(c->tls, c->recv_at, (size_t)e->res) != 0)
				c->closing = 2;
			tls_in(t, c);
		} else {
			c->rlen += (size_t)e->res;
			consume(t, c);
		}
	} else if (kind == TK_SEND) {
		c->send_busy = 0;
		if (e->res < 0 || c->closing == 2) {
			c->closing = 2;
		} else if (c->send_tls) {
			sb_tls_sent(c->tls, (size_t)e->res);
			tls_in(t, c); /* input that waited for output room */
		} else {
			c->sent += (size_t)e->res;
			if (c->sent == c->proto.out_len) {
				c->sent = c->proto.out_len = 0;
				consume(t, c); /* input that waited for output room */
			}
		}
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
			uint64_t now = now_ns(), next = UINT64_MAX;
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
	if (o->tls != SINK_TLS_NONE) {
		struct sb_tls_ctx_cfg tc = {
			.server = 1, .cert_file = o->cert_file, .key_file = o->key_file,
		};
		static _Thread_local char why_buf[300];
		if ((rc = sb_tls_ctx_new(&tc, &s->tls_ctx, why_buf, sizeof(why_buf))) != 0) {
			*why = why_buf;
			free(s);
			return rc;
		}
	}
	s->threads = calloc(s->n_threads, sizeof(*s->threads));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (!s->threads) {
		sb_tls_ctx_free(s->tls_ctx);
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
		/* The first socket picks the port (when 0); the others share it. */
		t->listen_fd = listen_socket(o, port, &port);
		if (t->listen_fd < 0) {
			rc = t->listen_fd;
			*why = rc == -EINVAL ? "not an IP address" : "cannot listen there";
			goto fail;
		}
		t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (t->wake_fd < 0) {
			rc = -errno;
			*why = "eventfd";
			goto fail;
		}
	}
	s->port = port;
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

void sink_server_stop(struct sink_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, 1);
	for (unsigned i = 0; i < s->n_threads; i++) {
		uint64_t one = 1;
		ssize_t r = write(s->threads[i].wake_fd, &one, sizeof(one));
		(void)r;
	}
	for (unsigned i = 0; i < s->n_threads; i++) {
		struct sink_thread *t = &s->threads[i];
		pthread_join(t->thread, NULL);
		if (t->io)
			t->be->destroy(t->io);
		close(t->listen_fd);
		close(t->wake_fd);
		for (unsigned k = 0; k < t->n_slots; k++)
			if (t->conns[k]) {
				close(t->conns[k]->fd);
				if (t->conns[k]->tls) {
					sb_tls_free(t->conns[k]->tls);
					free(t->conns[k]->tls);
				}
				free(t->conns[k]);
			}
		free(t->conns);
	}
	sb_tls_ctx_free(s->tls_ctx);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->threads);
	free(s);
}
