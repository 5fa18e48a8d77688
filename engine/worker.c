/*
 * The worker loop: one thread per worker, pinned to a CPU, owning one I/O ring (io_uring
 * or epoll) and its share of the connections. Each iteration it hands queued messages
 * to idle sessions, queues the sends and receives the sessions need, then submits
 * everything and waits in one call, and dispatches the completions that came back.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine.h"

/* user_data / token: kind (8 bits) | generation (24 bits) | connection index (32 bits) */
enum { TK_CONNECT = 1, TK_SEND, TK_RECV, TK_WAKE };
#define TOKEN(kind, gen, idx)                                                             \
	(((uint64_t)(kind) << 56) | ((uint64_t)((gen)&0xffffffu) << 32) | (uint64_t)(idx))
#define TK_KIND(t) ((unsigned)((t) >> 56))
#define TK_GEN(t) ((uint32_t)(((t) >> 32) & 0xffffffu))
#define TK_IDX(t) ((uint32_t)(t))

#define STOP_GRACE_NS (2ull * 1000000000ull) /* how long QUIT may take at shutdown */
#define IO_ENTRIES 256
#define CQE_BATCH 256
#define TLS_PLAIN_MAX 16384  /* one TLS record's worth of plaintext per read */
#define TLS_OUT_HIGH (256u << 10) /* encrypt no further ahead of the socket than this */

enum { PARK_NONE, PARK_OPEN, PARK_CLOSED };

/* Idle connections, one stack per host, so a wake-up costs O(hosts), not O(idle). */
struct idle_stack {
	unsigned *v;
	unsigned n, cap;
};

/* Messages waiting for their 4xx retry: a min-heap on the time they are due. */
struct defer_ent {
	uint64_t due;
	struct sb_msg *m;
};

struct defer_heap {
	struct defer_ent *v;
	size_t n, cap;
};

struct worker_priv {
	struct idle_stack *idle; /* [n_hosts] */
	struct defer_heap deferred;
	uint64_t stop_deadline;
	int stop_begun;
};

static struct worker_priv *priv(struct sb_worker *w)
{
	return w->priv;
}

/* ---- session callbacks ------------------------------------------------------------ */

/* A connection's stats counter: only its worker writes, so a plain load and store
 * (no locked add) is enough; readers see some recent value. */
static inline void bump(_Atomic uint64_t *ctr, uint64_t n)
{
	atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static struct sb_conn *conn_of(struct sess *s)
{
	return (struct sb_conn *)(void *)((char *)s - offsetof(struct sb_conn, sess));
}

/* Take note of what a seed callback returned for connection c; after() acts on it. */
static void apply_code(struct sb_worker *w, struct sb_conn *c, int code)
{
	switch (code) {
	case SMTPBULK_CB_REMOVE:
		c->removed = 1;
		break;
	case SMTPBULK_CB_REMOVE_RECONNECT:
	case SMTPBULK_CB_REMOVE_RESTART:
	case SMTPBULK_CB_PAUSE:
		if (code == SMTPBULK_CB_REMOVE_RESTART)
			c->tls_fresh = 1; /* a restart is a new connection: no resumption */
		if (!c->park) {
			w->parked++;
			atomic_fetch_add(&w->sb->hosts[c->sess.host_idx].parked, 1);
		}
		c->park = code == SMTPBULK_CB_PAUSE ? PARK_OPEN : PARK_CLOSED;
		break;
	case SMTPBULK_CB_RECONNECT:
	case SMTPBULK_CB_RESTART:
		c->reconnect_now = 1;
		if (code == SMTPBULK_CB_RESTART)
			c->tls_fresh = 1;
		break;
	default: /* 1, and anything unknown: carry on */
		break;
	}
}

static void park_clear(struct sb_worker *w, struct sb_conn *c)
{
	c->park = PARK_NONE;
	w->parked--;
	atomic_fetch_sub(&w->sb->hosts[c->sess.host_idx].parked, 1);
}

/* Fire a connection event (not pass/fail: those come with results). */
static void conn_event(struct sb_worker *w, struct sb_conn *c, smtpbulk_event_cb cb,
		       smtpbulk_event_t *ev)
{
	if (!cb)
		return;
	const struct sb_host *h = &w->sb->hosts[c->sess.host_idx];
	apply_code(w, c, sb_fire(w->sb, cb, ev, h, (int)c->sess.host_idx, (int)c->sess.conn_idx));
}

static struct sb_msg *take_one(struct sb_worker *w, struct sbq *q)
{
	struct sbq_node *n;
	int busy = 0;
	if (sbq_dequeue(q, &n, 1, &busy) == 1) {
		sb_engine_dequeued(w->sb, 1);
		return sb_msg_of_node(n);
	}
	if (busy)
		w->queue_busy = 1;
	return NULL;
}

static struct sb_msg *ops_next_msg(void *ctx, struct sess *s)
{
	struct sb_worker *w = ctx;
	struct smtpbulk *sb = w->sb;
	if (atomic_load_explicit(&sb->stopping, memory_order_relaxed))
		return NULL;
	struct sb_conn *c = conn_of(s);
	if (c->removed || c->park || c->reconnect_now)
		return NULL; /* a callback took it out of rotation */
	struct sb_msg *m = take_one(w, sb->hosts[s->host_idx].queue);
	return m ? m : take_one(w, sb->any_queue);
}

static void ops_done(void *ctx, struct sess *s, struct sb_msg *m, smtpbulk_status_t st, int err)
{
	struct sb_worker *w = ctx;
	struct sb_conn *c = conn_of(s);
	int pass = st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL;
	bump(&c->stats.total, 1);
	bump(pass ? &c->stats.pass : &c->stats.fail, 1);
	if (pass)
		bump(&c->stats.bytes, m->body_len);
	int code = sb_engine_complete(w->sb, m, st, err, &w->sb->hosts[s->host_idx],
				      (int)s->host_idx, (int)s->conn_idx, &w->lat[s->host_idx]);
	apply_code(w, c, code);
}

static void ops_reply(void *ctx, struct sess *s, const struct smtp_reply *r)
{
	struct sb_worker *w = ctx;
	size_t pos = 0, len;
	const char *text;
	smtpbulk_event_t ev = {.kind = SMTPBULK_EV_READ};
	for (;;) {
		const char *start = r->raw + pos; /* the whole line, code included */
		if (!smtp_reply_next_line(r, &pos, 0, &text, &len))
			break;
		ev.line = start;
		ev.line_len = (size_t)(text + len - start);
		conn_event(w, conn_of(s), w->sb->cbs.read, &ev);
	}
}

static void ops_requeue(void *ctx, struct sess *s, struct sb_msg *m)
{
	struct sb_worker *w = ctx;
	(void)s;
	sb_engine_requeue(w->sb, m);
}

static void ops_log(void *ctx, struct sess *s, int level, const char *line)
{
	struct sb_worker *w = ctx;
	sb_log_conn(w->sb, level, (int)s->host_idx, (int)s->conn_idx, "%s", line);
}

static void ops_auth(void *ctx, struct sess *s, int err)
{
	struct sb_worker *w = ctx;
	struct sb_conn *c = conn_of(s);
	smtpbulk_event_t ev = {
		.kind = err ? SMTPBULK_EV_AUTH_FAIL : SMTPBULK_EV_AUTH_PASS,
		.error = err,
	};
	conn_event(w, c, err ? w->sb->cbs.auth_fail : w->sb->cbs.auth_pass, &ev);
}

static int heap_push(struct defer_heap *h, uint64_t due, struct sb_msg *m)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct defer_ent *v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	size_t i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2].due > due) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = (struct defer_ent){due, m};
	return 0;
}

static struct sb_msg *heap_pop(struct defer_heap *h)
{
	struct sb_msg *top = h->v[0].m;
	struct defer_ent last = h->v[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].due < h->v[c].due)
			c++;
		if (h->v[c].due >= last.due)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

static void ops_defer(void *ctx, struct sess *s, struct sb_msg *m)
{
	struct sb_worker *w = ctx;
	struct smtpbulk *sb = w->sb;
	/* defer_ms, doubled for each try already charged (capped at 2^10). */
	unsigned tries = m->attempts - m->free_tries;
	unsigned shift = tries > 1 ? tries - 1 : 0;
	uint64_t delay = (uint64_t)sb->opts.defer_ms * 1000000ull << (shift > 10 ? 10 : shift);
	atomic_fetch_add_explicit(&sb->deferred, 1, memory_order_relaxed);
	bump(&conn_of(s)->stats.deferred, 1);
	if (heap_push(&priv(w)->deferred, w->now + delay, m) < 0) {
		sb_engine_requeue(sb, m); /* no memory to wait: try again now */
		return;
	}
	atomic_fetch_add(&sb->deferred_now, 1);
}

static const struct sess_ops worker_sess_ops = {
	.next_msg = ops_next_msg,
	.done = ops_done,
	.requeue = ops_requeue,
	.defer = ops_defer,
	.log = ops_log,
	.auth = ops_auth,
};

/* The same with the read callback: only when one is set, as it costs per reply. */
static const struct sess_ops worker_sess_ops_read = {
	.next_msg = ops_next_msg,
	.done = ops_done,
	.requeue = ops_requeue,
	.defer = ops_defer,
	.reply = ops_reply,
	.log = ops_log,
	.auth = ops_auth,
};

/* ---- connections ------------------------------------------------------------------ */

static void after(struct sb_worker *w, struct sb_conn *c);

static void idle_push(struct sb_worker *w, struct sb_conn *c)
{
	struct idle_stack *st = &priv(w)->idle[c->sess.host_idx];
	if (c->idle_listed || st->n == st->cap)
		return;
	st->v[st->n++] = (unsigned)(c - w->conns);
	c->idle_listed = 1;
}

static void conn_dead(struct sb_worker *w, struct sb_conn *c);

/* ---- TLS ---------------------------------------------------------------------- */

static void tls_close(struct sb_conn *c)
{
	if (!c->tls)
		return;
	sb_tls_free(c->tls);
	free(c->tls);
	c->tls = NULL;
}

/* The connection is ready over TLS: its session is what the host's next handshakes
 * resume. Not earlier: a TLS 1.3 ticket comes after the handshake. */
static void tls_remember(struct sb_worker *w, struct sb_conn *c)
{
	if (!c->tls || c->tls_saved)
		return;
	c->tls_saved = 1;
	struct WOLFSSL_SESSION *ts = sb_tls_session(c->tls);
	if (!ts)
		return;
	struct sb_host *h = &w->sb->hosts[c->sess.host_idx];
	pthread_mutex_lock(&h->tls_lock);
	struct WOLFSSL_SESSION *old = h->tls_session;
	h->tls_session = ts;
	pthread_mutex_unlock(&h->tls_lock);
	sb_tls_session_free(old); /* whoever used it did so under the lock */
}

static void tls_failed(struct sb_worker *w, struct sb_conn *c, int err)
{
	char why[200];
	sb_tls_describe(c->tls->wolf_err, why, sizeof(why));
	sb_log_conn(w->sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx, "TLS %s failed: %s",
		    c->tls->up ? "connection" : "handshake", why);
	sess_io_error(&c->sess, err);
}

/* The server closed a TLS connection. Right after the handshake, before a single
 * byte of SMTP, that is how TLS 1.3 servers refuse a client certificate (or the lack
 * of one): say so, as a TLS error, rather than "the server closed the connection". */
static void tls_closed(struct sb_worker *w, struct sb_conn *c)
{
	if (c->tls->up && !c->tls->got_data) {
		sb_log_conn(w->sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx,
			    "the server closed the connection right after the TLS handshake "
			    "(it may not accept our certificate, or the lack of one)");
		sess_io_error(&c->sess, SMTPBULK_ETLS);
		return;
	}
	sess_io_error(&c->sess, SMTPBULK_ECLOSED);
}

static int sess_over(const struct sess *s)
{
	return s->state == SESS_CLOSED || s->state == SESS_DEAD || s->state == SESS_DOWN;
}

/* Continue the handshake; once it is done, hand the session its plaintext. */
static void tls_input(struct sb_worker *w, struct sb_conn *c)
{
	struct sess *s = &c->sess;
	struct sb_tls *t = c->tls;
	if (!t->up) {
		int rc = sb_tls_handshake(t);
		if (rc < 0) {
			tls_failed(w, c, rc);
			return;
		}
		if (rc == 0)
			return;
		atomic_fetch_add_explicit(&w->sb->tls_handshakes, 1, memory_order_relaxed);
		if (sb_tls_resumed(t))
			atomic_fetch_add_explicit(&w->sb->tls_resumed, 1, memory_order_relaxed);
		sb_log_conn(w->sb, 5, (int)s->host_idx, (int)s->conn_idx, "TLS up: %s %s%s",
			    sb_tls_version(t), sb_tls_cipher(t),
			    sb_tls_resumed(t) ? " (resumed)" : "");
		sess_tls_up(s);
	}
	if (!w->tls_plain && !(w->tls_plain = malloc(TLS_PLAIN_MAX))) {
		sess_io_error(s, -ENOMEM);
		return;
	}
	for (;;) { /* ends: each read consumes input, and the input is finite */
		int n = sb_tls_read(t, w->tls_plain, TLS_PLAIN_MAX);
		if (n == 0)
			return;
		if (n < 0) {
			if (n == SMTPBULK_ECLOSED)
				tls_closed(w, c);
			else
				tls_failed(w, c, n);
			return;
		}
		sess_feed(s, w->tls_plain, (size_t)n);
		if (sess_over(s))
			return;
	}
}

/* The session asked for TLS: a WOLFSSL for this connection, resuming the host's
 * session unless a restart (103/203) asked for a fresh one. */
static void tls_begin(struct sb_worker *w, struct sb_conn *c)
{
	struct sb_host *h = &w->sb->hosts[c->sess.host_idx];
	int verify = sess_secure_verifies(h->cfg.secure);
	if (!(c->tls = calloc(1, sizeof(*c->tls)))) {
		sess_io_error(&c->sess, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&h->tls_lock);
	int rc = sb_tls_client(c->tls, w->sb->tls_ctx, h->tls_name, verify,
			       c->tls_fresh ? NULL : h->tls_session);
	pthread_mutex_unlock(&h->tls_lock);
	c->tls_fresh = 0;
	c->tls_saved = 0;
	if (rc) {
		free(c->tls);
		c->tls = NULL;
		sess_io_error(&c->sess, rc);
		return;
	}
	tls_input(w, c); /* writes the ClientHello */
}

/* Encrypt what the session has to say, then send the ciphertext. */
static void tls_output(struct sb_worker *w, struct sb_conn *c, unsigned idx)
{
	struct sess *s = &c->sess;
	struct sb_tls *t = c->tls;
	struct iovec iov[SESS_OUT_MAX];
	while (t->up && sess_has_output(s) && sb_tls_unsent(t) < TLS_OUT_HIGH) {
		int n = sess_output(s, iov, SESS_OUT_MAX);
		/* Encrypt only what the outbox may hold: a 1 GB body is not copied whole. */
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
			tls_failed(w, c, k ? (int)k : SMTPBULK_ETLS);
			return;
		}
		sess_sent(s, (size_t)k); /* may start the next transactions: loop */
		if (sess_over(s))
			return;
	}
	if (t->up && s->state == SESS_QUIT && !sess_has_output(s))
		sb_tls_close_notify(t); /* behind the QUIT: nothing else will be written */
	if (c->send_busy)
		return;
	const char *p;
	size_t len = sb_tls_outgoing(t, &p);
	if (!len)
		return;
	c->iov[0].iov_base = (void *)(uintptr_t)p;
	c->iov[0].iov_len = len;
	memset(&c->mh, 0, sizeof(c->mh));
	c->mh.msg_iov = c->iov;
	c->mh.msg_iovlen = 1;
	if (w->be->sendmsg(w->io, c->fd, &c->mh, TOKEN(TK_SEND, c->gen, idx)) == 0) {
		c->send_busy = 1;
		c->send_tls = 1;
		c->inflight++;
	}
}

static void conn_start(struct sb_worker *w, struct sb_conn *c)
{
	const struct sb_host *h = &w->sb->hosts[c->sess.host_idx];
	unsigned idx = (unsigned)(c - w->conns);
	int one = 1;

	if (atomic_load_explicit(&h->auth_refused, memory_order_relaxed)) {
		/* Another connection heard 535: these credentials will not do. */
		c->reconnect_at = 0;
		c->sess.error = SMTPBULK_EAUTH;
		c->sess.state = SESS_DEAD;
		if (c->park)
			park_clear(w, c);
		if (!c->dead_counted) {
			c->dead_counted = 1;
			conn_dead(w, c);
		}
		return;
	}
	if (c->gen > 0)
		atomic_fetch_add_explicit(&w->sb->reconnects, 1, memory_order_relaxed);
	c->gen++;
	c->reconnect_at = 0;
	c->ready_counted = 0;
	c->cancelled = 0;
	sess_connecting(&c->sess);
	c->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		sess_connected(&c->sess, -errno);
		after(w, c);
		return;
	}
	/* Commands are small and each waits for a reply: never let Nagle hold them. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int rc = w->be->connect(w->io, c->fd, (const struct sockaddr *)&h->addr, h->addrlen,
				TOKEN(TK_CONNECT, c->gen, idx));
	if (rc < 0) {
		sess_connected(&c->sess, rc);
		after(w, c);
		return;
	}
	c->inflight++;
	atomic_store_explicit(&c->wd_fired, 0, memory_order_relaxed);
	atomic_store_explicit(&c->wd_limit_ms, w->sb->phase_ms[SESS_PH_GREETING],
			      memory_order_relaxed);
	atomic_store_explicit(&c->wd_since, w->now, memory_order_relaxed); /* a connect can hang */
}

/* A connection that gave up for good: when it was its host's last, the host is down. */
static void conn_dead(struct sb_worker *w, struct sb_conn *c)
{
	struct smtpbulk *sb = w->sb;
	struct sb_host *h = &sb->hosts[c->sess.host_idx];
	atomic_store(&h->last_error, c->sess.error);
	if (c->removed)
		sb_log_conn(sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx,
			    "removed by a callback");
	else if (c->sess.error == SMTPBULK_EAUTH && atomic_load(&h->auth_refused))
		sb_log_conn(sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx,
			    "the server refused the credentials (535): no more connections to "
			    "this host");
	else
		sb_log_conn(sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx,
			    "giving up after %u failed connections: %s", c->sess.fails,
			    smtpbulk_strerror(c->sess.error));
	if (atomic_fetch_sub(&h->alive, 1) == 1) {
		atomic_fetch_sub(&sb->hosts_alive, 1);
		/* Wake every worker: the host's queued messages (and, when no host is left,
		 * the shared queue's) must now end FAILED instead of waiting. */
		for (unsigned i = 0; i < sb->n_workers; i++)
			sb_worker_wake(sb->workers[i]);
	}
}

/* The connection is over and its socket (if any) closed: count it, then reconnect
 * later, or, for a connection that gave up, tell the host. Runs once per connection. */
static void closed(struct sb_worker *w, struct sb_conn *c)
{
	struct smtpbulk *sb = w->sb;
	atomic_store_explicit(&c->ready_now, 0, memory_order_relaxed);
	if (!c->sess.was_ready && c->sess.error) {
		atomic_fetch_add_explicit(&sb->connect_fails, 1, memory_order_relaxed);
		smtpbulk_event_t ev = {
			.kind = c->ever_ready ? SMTPBULK_EV_RECONNECT_FAIL : SMTPBULK_EV_CONNECT_FAIL,
			.error = c->sess.error,
		};
		conn_event(w, c, c->ever_ready ? sb->cbs.reconnect_fail : sb->cbs.connect_fail, &ev);
	}
	if (c->removed && c->sess.state != SESS_DEAD)
		c->sess.state = SESS_DEAD; /* 101: never again */
	if (c->sess.state == SESS_DEAD && c->sess.fatal)
		atomic_store(&sb->hosts[c->sess.host_idx].auth_refused, 1); /* 535 */
	if (c->sess.state == SESS_DEAD) {
		if (c->park)
			park_clear(w, c); /* a dead connection is no longer waiting to return */
		if (!c->dead_counted) {
			c->dead_counted = 1;
			conn_dead(w, c);
		}
		return;
	}
	sess_reset(&c->sess);
	if (atomic_load(&sb->stopping))
		return;
	if (c->park == PARK_CLOSED)
		return; /* 102/103: reconnected when the queue is next empty (unpark()) */
	/* Sleep.Hang after a hang, Sleep.Fail after other trouble; none when a callback
	 * asked for a reconnect now. */
	unsigned ms = c->sess.error == SMTPBULK_ETIMEDOUT ? sb->opts.sleep_hang_ms
							  : sb->opts.reconnect_ms;
	if (c->reconnect_now)
		ms = 0;
	c->reconnect_now = 0;
	c->reconnect_at = sb_now_ns() + (uint64_t)ms * 1000000ull;
	w->waiting++;
}

static void teardown(struct sb_worker *w, struct sb_conn *c)
{
	if (c->inflight > 0) {
		/* Cancel, and shut the socket so a receive the kernel is already running
		 * ends too; we close only when every operation has come back, so no
		 * completion can land in buffers a new connection uses. Once is enough. */
		if (c->fd >= 0 && !c->cancelled) {
			c->cancelled = 1;
			w->be->cancel_fd(w->io, c->fd);
			shutdown(c->fd, SHUT_RDWR);
		}
		return;
	}
	if (c->fd >= 0) {
		w->be->forget_fd(w->io, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	tls_close(c); /* no operation can read its buffers any more */
	closed(w, c);
}

static void after_io(struct sb_worker *w, struct sb_conn *c);

/* Bring the I/O in line with what the session wants, after any session event, and
 * tell the watchdog whether the connection now waits for its server. */
static void after(struct sb_worker *w, struct sb_conn *c)
{
	after_io(w, c);
	uint64_t since = atomic_load_explicit(&c->wd_since, memory_order_relaxed);
	int tls_blocked = c->tls && sb_tls_unsent(c->tls) > 0; /* the socket must take it */
	if (c->fd >= 0 && (sess_waiting(&c->sess) || tls_blocked)) {
		enum sess_phase ph = sess_phase(&c->sess);
		if (tls_blocked && ph == SESS_PH_MAIL && c->sess.fifo_len == 0)
			ph = SESS_PH_BLOCK;
		uint32_t limit = w->sb->phase_ms[ph];
		if (atomic_load_explicit(&c->wd_limit_ms, memory_order_relaxed) != limit)
			atomic_store_explicit(&c->wd_limit_ms, limit, memory_order_relaxed);
		if (!since)
			atomic_store_explicit(&c->wd_since, w->now, memory_order_relaxed);
	} else if (since) {
		atomic_store_explicit(&c->wd_since, 0, memory_order_relaxed);
	}
}

static void after_io(struct sb_worker *w, struct sb_conn *c)
{
	struct sess *s = &c->sess;
	unsigned idx = (unsigned)(c - w->conns);

	if (s->state == SESS_CLOSED || (s->state == SESS_DEAD && !c->dead_counted)) {
		teardown(w, c);
		return;
	}
	if (s->state == SESS_DEAD)
		return;
	if (c->fd < 0 || s->state == SESS_CONNECTING || s->state == SESS_DOWN)
		return;
	if (s->was_ready && !c->ready_counted) {
		c->ready_counted = 1;
		atomic_store_explicit(&c->ready_now, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&w->sb->connects, 1, memory_order_relaxed);
		smtpbulk_event_t ev = {
			.kind = c->ever_ready ? SMTPBULK_EV_RECONNECT_PASS : SMTPBULK_EV_CONNECT_PASS,
		};
		conn_event(w, c, c->ever_ready ? w->sb->cbs.reconnect_pass : w->sb->cbs.connect_pass,
			   &ev);
		c->ever_ready = 1;
		tls_remember(w, c);
	}
	if (c->reconnect_now && s->state >= SESS_GREETING && s->state <= SESS_TXN) {
		/* 202/203: end now; what is in flight goes again, free of charge. */
		sess_restart(s);
		after_io(w, c);
		return;
	}
	if (s->state == SESS_IDLE) {
		/* Stopping, or a callback removed it: a connection that became idle (its
		 * handshake or RSET just finished) says QUIT instead of waiting for work. */
		if (atomic_load_explicit(&w->sb->stopping, memory_order_relaxed) || c->removed ||
		    c->park == PARK_CLOSED)
			sess_quit(s);
		else if (!c->park)
			idle_push(w, c);
	}
	if (sess_wants_tls(s) && !c->tls)
		tls_begin(w, c);
	if (c->tls && !sess_over(s))
		tls_output(w, c, idx);
	if (sess_over(s)) {
		after_io(w, c); /* TLS failed: tear down */
		return;
	}
	if (!c->tls && !c->send_busy && sess_has_output(s)) {
		memset(&c->mh, 0, sizeof(c->mh));
		c->mh.msg_iov = c->iov;
		c->mh.msg_iovlen = (size_t)sess_output(s, c->iov, SESS_OUT_MAX);
		if (w->be->sendmsg(w->io, c->fd, &c->mh, TOKEN(TK_SEND, c->gen, idx)) == 0) {
			c->send_busy = 1;
			c->send_tls = 0;
			c->inflight++;
		}
	}
	if (c->tls && s->state == SESS_IDLE && c->tls->up)
		/* Idle: the TLS buffers go back (10k idle TLS connections should not hold
		 * 12 KB of empty buffers each). A plain receive in flight writes into in. */
		sb_tls_trim(c->tls, c->recv_busy && !c->recv_multi, c->send_busy);
	if (!c->recv_busy && w->recv_multi) {
		int rc = w->be->recv_multi(w->io, c->fd, TOKEN(TK_RECV, c->gen, idx));
		if (rc == 0) {
			c->recv_busy = 1;
			c->recv_multi = 1;
			c->inflight++;
		} else if (rc == -EOPNOTSUPP) {
			w->recv_multi = 0; /* no buffer pool on this kernel */
			sb_log(w->sb, 5, "worker %u: no provided-buffer ring; plain receives",
			       w->index);
		}
	}
	if (!c->recv_busy && !w->recv_multi) {
		size_t cap;
		char *p = c->tls ? sb_tls_rspace(c->tls, &cap) : sess_rspace(s, &cap);
		if (!p) {
			sess_io_error(s, -ENOMEM);
			after(w, c);
			return;
		}
		if (cap > 0 &&
		    w->be->recv(w->io, c->fd, p, cap, TOKEN(TK_RECV, c->gen, idx)) == 0) {
			c->recv_busy = 1;
			c->recv_multi = 0;
			c->inflight++;
		}
	}
}

/* A receive completed: bytes for the session, or why the receive ended. */
static void on_recv(struct sb_worker *w, struct sb_conn *c, const struct sb_cqe *e)
{
	struct sess *s = &c->sess;
	if (e->res > 0 && c->tls) {
		int rc = 0;
		if (e->buf) {
			w->recv_multi_seen = 1;
			rc = sb_tls_push(c->tls, e->buf, (size_t)e->res);
		} else {
			sb_tls_received(c->tls, (size_t)e->res);
		}
		if (rc)
			sess_io_error(s, rc);
		else
			tls_input(w, c);
	} else if (e->res > 0) {
		if (e->buf) {
			w->recv_multi_seen = 1;
			sess_feed(s, e->buf, (size_t)e->res);
		} else {
			sess_input(s, (size_t)e->res);
		}
	} else if (e->res == 0 && c->tls) {
		/* EOF: what is in the inbox still counts (a last reply, close_notify). */
		c->tls->peer_closed = 1;
		tls_input(w, c);
		if (!sess_over(s))
			tls_closed(w, c);
	} else if (c->recv_multi && e->res == -ENOBUFS) {
		/* The pool ran dry for a moment: after() arms the receive again, and the
		 * buffers this batch returns are back before that is submitted. */
	} else if (c->recv_multi && e->res == -EINVAL && !w->recv_multi_seen) {
		/* A kernel with buffer rings but without multishot receive (5.19). */
		w->recv_multi = 0;
		sb_log(w->sb, 5, "worker %u: multishot receive refused; plain receives", w->index);
	} else {
		sess_io_error(s, e->res < 0 ? e->res : SMTPBULK_ECLOSED);
	}
}

static void on_cqe(struct sb_worker *w, const struct sb_cqe *e)
{
	unsigned kind = TK_KIND(e->token);
	if (kind == TK_WAKE) {
		w->be->read_eventfd(w->io, w->wake_fd, &w->wake_val, TOKEN(TK_WAKE, 0, 0));
		return;
	}
	uint32_t idx = TK_IDX(e->token);
	if (idx >= w->n_conns)
		return;
	struct sb_conn *c = &w->conns[idx];
	struct sess *s = &c->sess;
	if (!e->more) { /* the operation is over (a multishot receive may go on) */
		c->inflight--;
		if (kind == TK_SEND)
			c->send_busy = 0;
		else if (kind == TK_RECV)
			c->recv_busy = 0;
	}
	if (TK_GEN(e->token) != (c->gen & 0xffffffu) || c->fd < 0) {
		if (e->buf)
			w->be->buf_return(w->io, e->bid);
		after(w, c); /* stale: only the bookkeeping above */
		return;
	}
	if (e->res > 0 || (kind == TK_CONNECT && e->res == 0)) {
		/* The server moved: the watchdog's clock for this connection starts again. */
		atomic_store_explicit(&c->wd_since, 0, memory_order_relaxed);
		if (kind == TK_RECV)
			w->progress = 1;
	}
	switch (kind) {
	case TK_CONNECT:
		sess_connected(s, e->res < 0 ? e->res : 0);
		break;
	case TK_SEND:
		if (e->res <= 0)
			sess_io_error(s, e->res < 0 ? e->res : SMTPBULK_ECLOSED);
		else if (c->send_tls)
			sb_tls_sent(c->tls, (size_t)e->res);
		else
			sess_sent(s, (size_t)e->res);
		break;
	case TK_RECV:
		on_recv(w, c, e);
		if (e->buf) /* the session copied what it keeps */
			w->be->buf_return(w->io, e->bid);
		break;
	}
	after(w, c);
}

/* ---- the loop ------------------------------------------------------------------- */

/* Messages left for a host that has no connection left end FAILED; after a global
 * hang that used up its retries, TIMED_OUT. */
static void fail_queue_as(struct sb_worker *w, struct sbq *q, smtpbulk_status_t st, int err)
{
	struct sbq_node *nodes[64];
	int busy;
	size_t n;
	while ((n = sbq_dequeue(q, nodes, 64, &busy)) > 0) {
		sb_engine_dequeued(w->sb, n);
		for (size_t i = 0; i < n; i++)
			sb_engine_complete(w->sb, sb_msg_of_node(nodes[i]), st, err, NULL, -1, -1,
					   NULL);
	}
	if (busy)
		w->queue_busy = 1;
}

static void fail_queue(struct sb_worker *w, struct sbq *q, int err)
{
	fail_queue_as(w, q, SMTPBULK_FAILED, err);
}

/* End every message waiting for its 4xx retry with st/err. */
static void end_deferred(struct sb_worker *w, smtpbulk_status_t st, int err)
{
	struct defer_heap *h = &priv(w)->deferred;
	while (h->n) {
		struct sb_msg *m = heap_pop(h);
		atomic_fetch_sub(&w->sb->deferred_now, 1);
		sb_engine_complete(w->sb, m, st, err, NULL, -1, -1, NULL);
	}
}

/* The watchdog flagged connections: end those still waiting too long. */
static void check_hangs(struct sb_worker *w)
{
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = &w->conns[i];
		if (!atomic_exchange_explicit(&c->wd_fired, 0, memory_order_acquire))
			continue;
		uint64_t since = atomic_load_explicit(&c->wd_since, memory_order_relaxed);
		uint64_t limit = (uint64_t)atomic_load_explicit(&c->wd_limit_ms,
								memory_order_relaxed) * 1000000ull;
		/* Re-checked here: the server may have answered since the tick. */
		if (!since || w->now < since + limit || !sess_waiting(&c->sess))
			continue;
		sb_log_conn(w->sb, 7, (int)c->sess.host_idx, (int)c->sess.conn_idx,
			    "hang: no answer for %llu ms in %s", (unsigned long long)(limit / 1000000),
			    sess_state_name(c->sess.state));
		atomic_fetch_add_explicit(&w->sb->hangs, 1, memory_order_relaxed);
		bump(&c->stats.hang, 1);
		if (w->sb->cbs.hang) { /* once per message in flight, or once with none */
			smtpbulk_event_t ev = {.kind = SMTPBULK_EV_HANG, .error = SMTPBULK_ETIMEDOUT};
			struct sess *s = &c->sess;
			for (unsigned t = 0; t < s->txn_len; t++) {
				struct sb_msg *m = s->txns[(s->txn_head + t) % SESS_TXN_MAX].m;
				ev.message_id = m->id;
				ev.user_data = m->res.user_data;
				conn_event(w, c, w->sb->cbs.hang, &ev);
			}
			if (s->txn_len == 0)
				conn_event(w, c, w->sb->cbs.hang, &ev);
		}
		sess_hang(&c->sess);
		after(w, c);
	}
}

/* A global hang: every connection starts again; or, with the retries used up, what
 * is in progress or queued ends TIMED_OUT. */
static void global_hang(struct sb_worker *w, int give_up)
{
	struct smtpbulk *sb = w->sb;
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = &w->conns[i];
		enum sess_state st = c->sess.state;
		if (st == SESS_DOWN || st == SESS_CLOSED || st == SESS_DEAD)
			continue;
		if (give_up)
			sess_abort(&c->sess, SMTPBULK_TIMED_OUT, SMTPBULK_ETIMEDOUT);
		else
			sess_restart(&c->sess);
		after(w, c);
	}
	if (give_up) {
		for (size_t h = 0; h < sb->n_hosts; h++)
			if (sb->hosts[h].on_worker[w->index])
				fail_queue_as(w, sb->hosts[h].queue, SMTPBULK_TIMED_OUT,
					      SMTPBULK_ETIMEDOUT);
		fail_queue_as(w, sb->any_queue, SMTPBULK_TIMED_OUT, SMTPBULK_ETIMEDOUT);
	}
}

/* Hand queued messages to idle sessions. */
static void feed(struct sb_worker *w)
{
	struct smtpbulk *sb = w->sb;
	int any_waiting = !sbq_empty(sb->any_queue);

	for (size_t h = 0; h < sb->n_hosts; h++) {
		struct sb_host *host = &sb->hosts[h];
		if (!host->on_worker[w->index])
			continue;
		if (atomic_load(&host->alive) == 0) {
			if (!sbq_empty(host->queue))
				fail_queue(w, host->queue, sb_host_down_error(host));
			continue;
		}
		struct idle_stack *st = &priv(w)->idle[h];
		if (st->n == 0 || (!any_waiting && sbq_empty(host->queue)))
			continue;
		while (st->n > 0) {
			struct sb_conn *c = &w->conns[st->v[st->n - 1]];
			if (c->sess.state != SESS_IDLE) {
				st->n--;
				c->idle_listed = 0;
				continue;
			}
			struct sb_msg *m = ops_next_msg(w, &c->sess);
			if (!m)
				break;
			st->n--;
			c->idle_listed = 0;
			sess_offer(&c->sess, m);
			after(w, c);
		}
	}
	if (any_waiting && atomic_load(&sb->hosts_alive) == 0)
		fail_queue(w, sb->any_queue, sb_all_down_error(sb));
}

static void run_timers(struct sb_worker *w, uint64_t now, int *timeout_ms)
{
	uint64_t next = UINT64_MAX;
	struct defer_heap *dh = &priv(w)->deferred;
	while (dh->n && dh->v[0].due <= now) {
		struct sb_msg *m = heap_pop(dh);
		atomic_fetch_sub(&w->sb->deferred_now, 1);
		sb_engine_requeue(w->sb, m);
	}
	if (dh->n)
		next = dh->v[0].due;
	if (w->waiting == 0)
		goto out;
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = &w->conns[i];
		if (!c->reconnect_at)
			continue;
		if (c->reconnect_at <= now) {
			w->waiting--;
			conn_start(w, c);
		} else if (c->reconnect_at < next) {
			next = c->reconnect_at;
		}
	}
out:
	if (next != UINT64_MAX) {
		uint64_t ms = (next - now + 999999) / 1000000;
		if (*timeout_ms < 0 || (uint64_t)*timeout_ms > ms)
			*timeout_ms = (int)ms;
	}
}

/* The end of the batch: the queue is empty, or every live connection of the host is
 * parked (then nobody else would ever take what waits). Parked connections come back. */
static void unpark(struct sb_worker *w)
{
	if (w->parked == 0)
		return;
	int empty = atomic_load_explicit(&w->sb->queued, memory_order_relaxed) == 0;
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = &w->conns[i];
		if (!c->park)
			continue;
		const struct sb_host *h = &w->sb->hosts[c->sess.host_idx];
		if (!empty && atomic_load(&h->parked) < atomic_load(&h->alive))
			continue;
		if (c->park == PARK_CLOSED) {
			if (c->fd >= 0 || c->inflight || c->sess.state != SESS_DOWN)
				continue; /* still saying QUIT */
			park_clear(w, c);
			conn_start(w, c);
		} else {
			park_clear(w, c);
			after(w, c); /* idle again: back on the idle stack */
		}
	}
}

static void begin_stop(struct sb_worker *w)
{
	struct worker_priv *p = priv(w);
	p->stop_begun = 1;
	p->stop_deadline = sb_now_ns() + STOP_GRACE_NS;
	end_deferred(w, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = &w->conns[i];
		if (c->reconnect_at) {
			c->reconnect_at = 0;
			w->waiting--;
		}
		/* A message in progress is cancelled; a connection still shaking hands
		 * or resetting goes on until idle, then says QUIT (see after()). */
		if (c->sess.state == SESS_TXN || c->sess.state == SESS_CONNECTING)
			sess_abort(&c->sess, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
		after(w, c);
	}
}

static int all_closed(struct sb_worker *w)
{
	for (unsigned i = 0; i < w->n_conns; i++)
		if (w->conns[i].fd >= 0 || w->conns[i].inflight)
			return 0;
	return 1;
}

static void *worker_main(void *arg)
{
	struct sb_worker *w = arg;
	struct smtpbulk *sb = w->sb;
	struct sb_cqe cqes[CQE_BATCH];

	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	/* The ring is created here: with SINGLE_ISSUER only its creator may submit. */
	int rc = sb_io_open(w->sb->opts.backend, IO_ENTRIES, &w->be, &w->io, w->desc,
			    sizeof(w->desc));
	if (rc == 0)
		rc = w->be->read_eventfd(w->io, w->wake_fd, &w->wake_val, TOKEN(TK_WAKE, 0, 0));
	w->recv_multi = rc == 0 && w->be->recv_multi && !sb->opts.plain_recv;
	pthread_mutex_lock(&sb->lock);
	w->init_rc = rc;
	w->init_done = 1;
	pthread_cond_broadcast(&sb->done);
	pthread_mutex_unlock(&sb->lock);
	if (rc)
		return NULL;
	sb_log(sb, 5, "worker %u on cpu %d: %s, %s receives, %u connections", w->index, w->cpu,
	       w->desc, w->recv_multi ? "multishot pooled" : "plain", w->n_conns);

	w->now = sb_now_ns();
	for (unsigned i = 0; i < w->n_conns; i++)
		conn_start(w, &w->conns[i]);

	for (;;) {
		int timeout = -1;
		w->queue_busy = 0;
		w->now = sb_now_ns();
		if (w->progress) { /* once per iteration, not per reply: a shared line */
			w->progress = 0;
			atomic_store_explicit(&sb->last_progress_ns, w->now, memory_order_relaxed);
		}
		if (atomic_load_explicit(&w->wd_pending, memory_order_relaxed) &&
		    atomic_exchange(&w->wd_pending, 0))
			check_hangs(w);
		int g = atomic_load_explicit(&w->wd_global, memory_order_relaxed);
		if (g && (g = atomic_exchange(&w->wd_global, 0)) != 0)
			global_hang(w, g == 2);
		if (atomic_load(&sb->stopping)) {
			if (!priv(w)->stop_begun)
				begin_stop(w);
			if (sb_now_ns() > priv(w)->stop_deadline) {
				/* QUIT took too long: close what is left. */
				for (unsigned i = 0; i < w->n_conns; i++) {
					sess_abort(&w->conns[i].sess, SMTPBULK_CANCELLED,
						   SMTPBULK_ECANCELLED);
					after(w, &w->conns[i]);
				}
			}
			if (all_closed(w)) {
				/* A 4xx that came in while stopping began may have deferred a
				 * message after begin_stop(): it ends here, not nowhere. */
				end_deferred(w, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
				break;
			}
			timeout = 50;
		} else {
			unpark(w);
			feed(w);
		}
		run_timers(w, w->now, &timeout);
		/* Parked connections wait for the queue to run empty, which no one signals
		 * to this worker: look again every 50 ms while any is parked. */
		if (w->parked && (timeout < 0 || timeout > 50))
			timeout = 50;
		if (w->queue_busy)
			timeout = 1; /* an enqueuer was mid-way: its node shows up shortly */
		int n = w->be->wait(w->io, cqes, CQE_BATCH, timeout);
		w->now = sb_now_ns();
		for (int i = 0; i < n; i++)
			on_cqe(w, &cqes[i]);
	}
	if (sb->tls_ctx)
		sb_tls_thread_end();
	return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------- */

int sb_worker_create(struct smtpbulk *sb, unsigned index, int cpu, struct sb_worker **out)
{
	struct sb_worker *w = calloc(1, sizeof(*w));
	struct worker_priv *p = calloc(1, sizeof(*p));
	if (!w || !p) {
		free(w);
		free(p);
		return -ENOMEM;
	}
	w->wake_fd = -1;
	w->sb = sb;
	w->index = index;
	w->cpu = cpu;
	w->priv = p;
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wake_fd < 0)
		goto fail;
	p->idle = calloc(sb->n_hosts, sizeof(*p->idle));
	w->lat = calloc(sb->n_hosts, sizeof(*w->lat));
	if (!p->idle || !w->lat)
		goto fail;

	/* Spread each host's connections over the workers: connection k of a host goes
	 * to worker (k + host offset) % n, so one host's load is shared by every CPU. */
	unsigned total = 0;
	for (size_t h = 0; h < sb->n_hosts; h++)
		for (unsigned k = 0; k < sb->hosts[h].connections; k++)
			if ((k + h) % sb->n_workers == index)
				total++;
	w->conns = calloc(total ? total : 1, sizeof(*w->conns));
	if (!w->conns)
		goto fail;
	for (size_t h = 0; h < sb->n_hosts; h++) {
		struct sb_host *host = &sb->hosts[h];
		unsigned mine = 0;
		for (unsigned k = 0; k < host->connections; k++) {
			if ((k + h) % sb->n_workers != index)
				continue;
			struct sb_conn *c = &w->conns[w->n_conns];
			if (sess_init(&c->sess, &host->cfg,
				      sb->cbs.read ? &worker_sess_ops_read : &worker_sess_ops, w,
				      (unsigned)h, k))
				goto fail;
			c->fd = -1;
			w->n_conns++;
			mine++;
		}
		if (mine) {
			host->on_worker[index] = 1;
			p->idle[h].v = calloc(mine, sizeof(unsigned));
			if (!p->idle[h].v)
				goto fail;
			p->idle[h].cap = mine;
		}
	}
	*out = w;
	return 0;
fail:
	w->priv = p;
	sb_worker_destroy(w);
	return -ENOMEM;
}

int sb_worker_start(struct sb_worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	return rc ? -rc : 0;
}

void sb_worker_join(struct sb_worker *w)
{
	pthread_join(w->thread, NULL);
}

void sb_worker_wake(struct sb_worker *w)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already huge: the worker is awake anyway. */
	ssize_t r = write(w->wake_fd, &one, sizeof(one));
	(void)r;
}

void sb_worker_destroy(struct sb_worker *w)
{
	if (!w)
		return;
	struct worker_priv *p = priv(w);
	if (w->io)
		w->be->destroy(w->io);
	for (unsigned i = 0; i < w->n_conns; i++) {
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
		tls_close(&w->conns[i]);
		sess_fini(&w->conns[i].sess);
	}
	free(w->conns);
	free(w->lat);
	free(w->tls_plain);
	if (p) {
		if (p->idle)
			for (size_t h = 0; h < w->sb->n_hosts; h++)
				free(p->idle[h].v);
		free(p->idle);
		free(p->deferred.v);
		free(p);
	}
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	free(w);
}
