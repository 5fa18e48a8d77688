/*
 * The connection layer (see conn.h): a connection's lifecycle, the glue between its
 * session and the engine, and its I/O, which goes through its transport only.
 *
 *   DOWN ──conn_start──► connecting ──► in service (greeting, EHLO, TLS, AUTH, ready,
 *    ▲                                   transactions) ──► QUIT / failure / hang
 *    │                                                         │
 *    │                       teardown: cancel, and close only once every operation
 *    │                       is back (no completion may land in a reused buffer)
 *    │                                                         │
 *    └── a timer (Sleep.Fail / Sleep.Hang), at once     ◄── closed ──► DEAD (retry_fail,
 *        (RECONNECT, RESTART), or at the end of the                 REMOVE, 535)
 *        batch (REMOVE_RECONNECT, REMOVE_RESTART)
 */
#include "conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "cmd_handoff.h"
#include "command.h"
#include "conn_policy.h"
#include "engine.h"
#include "grow.h"
#include "session.h"
#include "tls.h"
#include "transport.h"

#define TLS_PLAIN_MAX 16384 /* one TLS record's worth of plaintext per read */

/* Timer tags: the kind in the low byte; for a reconnect, the connection's serial above
 * (a reconnect that was called off leaves an entry with an old serial). */
enum { TM_DEFER = 1, TM_RECONNECT = 2, TM_IDLE = 3, TM_CMD = 4 };

struct sb_conn {
	struct sess sess;
	struct conn_env *env;
	struct sb_host *host;
	struct sb_conn_counters *ctr; /* the host's table: what stats read */
	struct wd_slot *wd;           /* env->wd.slots[slot] */
	unsigned slot;                /* index in the worker's table, carried by tokens */
	int fd;
	uint32_t gen;                 /* bumped per connection; stale completions are dropped */
	unsigned inflight;            /* operations not yet completed (any generation) */
	uint8_t recv_busy, send_busy;
	uint8_t recv_pooled;          /* the receive in flight is multishot (pooled buffers) */
	uint8_t idle_listed;          /* on its host's idle stack */
	uint8_t ready_counted;        /* this connection's readiness was announced */
	uint8_t cancelled;            /* cancel_fd already issued for this connection */
	uint8_t dead_counted;         /* its host was told this connection gave up */
	uint8_t tls_saved;            /* its TLS session went to the host's cache */
	uint8_t reconnecting;         /* a reconnect timer with timer_serial is set */
	uint8_t probe;                /* it holds its host's breaker probe (host_breaker.h) */
	uint64_t pace_since;          /* a pacer held it back since (0: it is not waiting) */
	const struct sb_msg *probe_msg; /* the probe's one transaction is out: its message */
	uint64_t born_at;             /* when it began to connect (max_conn_age_ms) */
	uint32_t idle_serial;         /* of its idle timer (idle_close_ms, max_conn_age_ms) */
	uint32_t idle_gen;            /* the connection and the MAIL count its idle spell */
	unsigned idle_mark;           /* began with: if either moved, the timer is stale */
	uint8_t idle_armed;           /* the spell's timer is in the heap */
	uint64_t dormant_epoch[2];    /* the host's and any_queue's work epochs when it
	                                 closed */
	uint32_t timer_serial;
	/* A one-off command (smtpbulk_command()) it carries: the request (the engine's
	 * reference, cmd_handoff.h), its reply once it came, held until the read that
	 * brought it is done (a second reply in that read makes it an error), and why it
	 * failed otherwise. cmd_serial tells its deadline timer from an older one's. */
	struct sb_cmd_req *cmd;
	smtpbulk_command_reply_t *cmd_got;
	int cmd_err;
	uint8_t cmd_over;
	uint32_t cmd_serial;
	size_t parked_at;             /* its index in env->parked while parked */
	char *recv_at;                /* where the plain receive in flight writes */
	const struct sb_transport_ops *recv_ops, *send_ops; /* at the operation's start */
	struct cpol pol;              /* what the seed's callbacks asked (conn_policy.h) */
	struct sb_transport xp;       /* plaintext or TLS */
	struct msghdr mh;             /* the send in flight */
	struct iovec iov[SESS_OUT_MAX];
};

static void conn_sync(struct sb_conn *c);

static int host_idx(const struct sb_conn *c)
{
	return (int)c->sess.host_idx;
}

static int conn_idx(const struct sb_conn *c)
{
	return (int)c->sess.conn_idx;
}

unsigned conn_host(const struct sb_conn *c)
{
	return c->sess.host_idx;
}

unsigned conn_index(const struct sb_conn *c)
{
	return c->sess.conn_idx;
}

int conn_closed(const struct sb_conn *c)
{
	return c->fd < 0 && c->inflight == 0;
}

/* ---- the seed's callbacks --------------------------------------------------------- */

static void parked_remove(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	struct sb_conn *last = env->parked[--env->n_parked];
	env->parked[c->parked_at] = last;
	last->parked_at = c->parked_at;
	sb_engine_parked(env->sb, c->host, -1);
}

/* What a callback returned for this connection. */
static void apply(struct sb_conn *c, int code)
{
	struct conn_env *env = c->env;
	if (code == SMTPBULK_CB_DEFAULT) /* nearly always: no shared line read for it */
		return;
	if (!cpol_apply(&c->pol, code, atomic_load(&env->sb->batch_epoch)))
		return;
	/* It parked: on the worker's list, counted for the end of the batch. */
	struct sb_conn **v = sb_grow(env->parked, &env->cap_parked, env->n_parked + 1,
				     sizeof(*v), 16);
	if (!v) {
		cpol_unpark(&c->pol); /* nothing would ever bring it back: it carries on */
		sb_log_conn(env->sb, 5, host_idx(c), conn_idx(c),
			    "no memory to park this connection: it carries on");
		return;
	}
	env->parked = v;
	c->parked_at = env->n_parked;
	env->parked[env->n_parked++] = c;
	sb_engine_parked(env->sb, c->host, +1);
}

static void unpark(struct sb_conn *c)
{
	if (cpol_unpark(&c->pol))
		parked_remove(c);
}

/* Fire a connection event (not pass/fail: those come with results). A queued event
 * of a kind the caller holds for (event_queue.h) keeps the connection from new work
 * until the caller's code comes (conn_act): as a callback's return would have. */
static void fire(struct sb_conn *c, smtpbulk_event_cb cb, smtpbulk_event_t *ev)
{
	if (!cb)
		return;
	int code = sb_fire(c->env->sb, cb, ev, c->host, host_idx(c), conn_idx(c));
	const struct sb_evq *q = c->env->sb->evq;
	if (q && (q->hold & (1u << ev->kind)))
		c->pol.held = 1;
	apply(c, code);
}

/* ---- the host's circuit breaker (host_breaker.h) ---------------------------------- */

/* The worker looks again when the breaker lets a probe through. */
static void breaker_wake_at(struct sb_conn *c)
{
	uint64_t at = hb_open_until(&c->host->breaker);
	if (at > c->env->now && at < c->env->next_wake)
		c->env->next_wake = at;
}

/* Whether the host counts in sb->breakers_open (which holds off global hangs). */
static void breaker_counted(struct sb_conn *c, int open)
{
	struct smtpbulk *sb = c->env->sb;
	if (atomic_exchange(&c->host->breaker_counted, open) != open) {
		if (open)
			atomic_fetch_add(&sb->breakers_open, 1);
		else
			atomic_fetch_sub(&sb->breakers_open, 1);
	}
}

static void breaker_event(struct sb_conn *c, enum hb_event ev)
{
	struct smtpbulk *sb = c->env->sb;
	const struct hb_cfg *cfg = &sb->breaker_cfg;
	unsigned long long ms = (unsigned long long)(cfg->cooloff_ns / SB_NS_PER_MS);
	switch (ev) {
	case HB_NONE:
		return;
	case HB_OPENED:
		atomic_fetch_add(&sb->breaker_opens, 1);
		breaker_counted(c, 1);
		sb_log_conn(sb, 5, host_idx(c), conn_idx(c),
			    "circuit breaker opens: %u transactions in a row ended without a "
			    "verdict; no new one for %llu ms, then one probe", cfg->failures, ms);
		break;
	case HB_REOPENED:
		atomic_fetch_add(&sb->breaker_opens, 1);
		sb_log_conn(sb, 5, host_idx(c), conn_idx(c),
			    "circuit breaker: the probe failed; open for another %llu ms", ms);
		break;
	case HB_CLOSED:
		breaker_counted(c, 0);
		sb_log_conn(sb, 5, host_idx(c), conn_idx(c),
			    "circuit breaker closes: the server gave a verdict");
		break;
	case HB_DOWN:
		breaker_counted(c, 0);
		atomic_store(&c->host->fatal_err, SMTPBULK_EBREAKER);
		sb_log_conn(sb, 7, host_idx(c), conn_idx(c),
			    "circuit breaker: opened %u times in a row, every probe failed: the "
			    "host is down", cfg->trips);
		break;
	}
	/* The host's workers look again: for a probe, to come back, or to give up. */
	sb_engine_wake(sb, host_idx(c));
}

/* ---- what the session asks of its connection -------------------------------------- */

static struct sb_msg *take_one(struct conn_env *env, struct sbq *q)
{
	struct sbq_node *n;
	int busy = 0;
	if (sbq_dequeue(q, &n, 1, &busy) == 1) {
		sb_engine_dequeued(env->sb, 1);
		struct sb_msg *m = sb_msg_of_node(n);
		if (!m->res.phases.queued_ns) /* the first take only: a retry's wait is not */
			m->res.phases.queued_ns =
				env->now > m->start_ns ? env->now - m->start_ns : 1;
		return m;
	}
	if (busy)
		env->queue_busy = 1;
	return NULL;
}

static struct sb_msg *take_work(struct sb_conn *c)
{
	struct sb_msg *m = take_one(c->env, c->host->queue);
	return m ? m : take_one(c->env, c->env->sb->any_queue);
}

static int has_work(const struct sb_conn *c);

/* The pacers (pacer.h): the host's, then the global one. A message is taken only when
 * both let one start, and a turn taken with no message behind it is given back. When
 * one says "not yet", the worker looks again then (a timer, not a poll); meanwhile the
 * messages wait in the queue, where any connection of the host may take them. */
static struct sb_msg *take_paced(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	struct smtpbulk *sb = env->sb;
	struct pacer *hp = &c->host->pacer, *gp = &sb->global_pacer;
	int hon = pacer_on(hp), gon = pacer_on(gp);
	uint64_t hc = 0, gc = 0, at = 0;
	if (!hon && !gon)
		return take_work(c);
	if ((hon && !pacer_admit(hp, &sb->adapt, env->now, &hc, &at)) ||
	    (gon && !pacer_admit(gp, NULL, env->now, &gc, &at))) {
		pacer_unadmit(hp, hc);
		if (!has_work(c)) {
			c->pace_since = 0;
			return NULL; /* nothing would go anyway: no timer for it */
		}
		if (!c->pace_since) {
			c->pace_since = env->now;
			atomic_fetch_add_explicit(&sb->paced, 1, memory_order_relaxed);
		}
		if (at < env->next_wake)
			env->next_wake = at;
		uint64_t until = atomic_load_explicit(&sb->paced_until, memory_order_relaxed);
		while (until < at && !atomic_compare_exchange_weak(&sb->paced_until, &until, at))
			;
		return NULL;
	}
	struct sb_msg *m = take_work(c);
	if (!m) {
		pacer_unadmit(hp, hc);
		pacer_unadmit(gp, gc);
	} else if (c->pace_since) {
		m->paced_ns += env->now - c->pace_since;
		c->pace_since = 0;
	}
	return m;
}

/* The breaker is open (or this connection holds its probe): one transaction, by the
 * probe's holder, once the cool-off is over; none when the host is down. */
static struct sb_msg *next_msg_breaker(struct sb_conn *c, struct sess *s)
{
	struct host_breaker *b = &c->host->breaker;
	if (atomic_load_explicit(&c->host->fatal_err, memory_order_relaxed) || c->probe_msg)
		return NULL;
	if (!c->probe) {
		int probe = 0;
		if (sess_inflight(s) > 0) /* the probe's result must be its own */
			return NULL;
		if (!hb_admit(b, c->env->now, &probe)) {
			breaker_wake_at(c);
			return NULL;
		}
		c->probe = (uint8_t)probe;
	}
	struct sb_msg *m = take_paced(c);
	if (c->probe) {
		if (m) {
			c->probe_msg = m;
			sb_log_conn(c->env->sb, 5, host_idx(c), conn_idx(c),
				    "circuit breaker: message %llu is the probe",
				    (unsigned long long)m->id);
		} else {
			hb_release(b); /* nothing to probe with: another may */
			c->probe = 0;
		}
	}
	return m;
}

static struct sb_msg *ops_next_msg(void *ctx, struct sess *s)
{
	struct sb_conn *c = ctx;
	struct smtpbulk *sb = c->env->sb;
	if (atomic_load_explicit(&sb->stopping, memory_order_relaxed) || !cpol_takes_work(&c->pol))
		return NULL;
	/* A command waits for one of the host's connections to be idle: none takes a
	 * new message until one is (a round trip's pause, commands are rare). */
	if (sb_cmd_list_pending(&c->host->cmds))
		return NULL;
	/* Its age is up: QUIT once what is out is answered. It carries one message at
	 * least, so an age shorter than a handshake still gets mail through. */
	if (sb->opts.max_conn_age_ms && sess_mails(s) > 0 &&
	    c->env->now - c->born_at >= (uint64_t)sb->opts.max_conn_age_ms * SB_NS_PER_MS) {
		sess_retire(s);
		return NULL;
	}
	if (hb_open_until(&c->host->breaker) || c->probe)
		return next_msg_breaker(c, s);
	return take_paced(c);
}

static void ops_txn_end(void *ctx, struct sess *s, int verdict)
{
	struct sb_conn *c = ctx;
	struct host_breaker *b = &c->host->breaker;
	int probe = c->probe_msg != NULL;
	if (probe) {
		c->probe = 0;
		c->probe_msg = NULL;
	}
	breaker_event(c, verdict ? hb_verdict(b)
				 : hb_failure(b, &c->env->sb->breaker_cfg, probe, c->env->now));
}

/* The probe's message ended, or went back, and said nothing either way (4xx to its
 * recipients, a sequencing 503, refused here for its size): another may probe. Every
 * message's end passes here, after ops_txn_end for those that said something. */
static void probe_over(struct sb_conn *c, const struct sb_msg *m)
{
	if (c->probe_msg && m == c->probe_msg) {
		hb_release(&c->host->breaker);
		c->probe = 0;
		c->probe_msg = NULL;
	}
}

static void ops_done(void *ctx, struct sess *s, struct sb_msg *m, smtpbulk_status_t st, int err)
{
	struct sb_conn *c = ctx;
	int pass = st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL;
	probe_over(c, m);
	sb_count(&c->ctr->total, 1);
	sb_count(pass ? &c->ctr->pass : &c->ctr->fail, 1);
	if (pass) {
		sb_count(&c->ctr->bytes, m->body_len);
		rm_note(&c->host->meters[c->env->worker], c->env->now);
	}
	apply(c, sb_engine_complete(c->env->sb, m, st, err, c->host, host_idx(c), conn_idx(c),
				    &c->host->lat[c->env->worker]));
}

static void ops_reply(void *ctx, struct sess *s, const struct smtp_reply *r)
{
	struct sb_conn *c = ctx;
	size_t pos = 0, len;
	const char *text;
	smtpbulk_event_t ev = {.kind = SMTPBULK_EV_READ};
	for (;;) {
		const char *start = r->raw + pos; /* the whole line, code included */
		if (!smtp_reply_next_line(r, &pos, 0, &text, &len))
			break;
		ev.line = start;
		ev.line_len = (size_t)(text + len - start);
		fire(c, c->env->sb->cbs.read, &ev);
	}
}

static void ops_requeue(void *ctx, struct sess *s, struct sb_msg *m)
{
	struct sb_conn *c = ctx;
	probe_over(c, m);
	sb_engine_requeue(c->env->sb, m);
}

static void ops_defer(void *ctx, struct sess *s, struct sb_msg *m)
{
	struct sb_conn *c = ctx;
	struct smtpbulk *sb = c->env->sb;
	/* defer_ms, doubled for each try already charged (capped at 2^10). */
	unsigned tries = m->attempts - m->free_tries;
	unsigned shift = tries > 1 ? tries - 1 : 0;
	probe_over(c, m);
	uint64_t delay = (uint64_t)sb->opts.defer_ms * SB_NS_PER_MS << (shift > 10 ? 10 : shift);
	atomic_fetch_add_explicit(&sb->deferred, 1, memory_order_relaxed);
	sb_count(&c->ctr->deferred, 1);
	if (th_push(&c->env->timers, c->env->now + delay, m, TM_DEFER) < 0) {
		sb_engine_requeue(sb, m); /* no memory to wait: try again now */
		return;
	}
	atomic_fetch_add(&sb->deferred_now, 1);
}

/* "Slow down" (outcome.h): the host's pacer slows down (pacer.h), said once per
 * slow-down, with the rate the server was taking and the one it gets now. */
static void ops_throttled(void *ctx, struct sess *s, const struct smtp_reply *r)
{
	struct sb_conn *c = ctx;
	struct smtpbulk *sb = c->env->sb;
	uint64_t now = c->env->now;
	atomic_fetch_add_explicit(&sb->throttled, 1, memory_order_relaxed);
	double taken = rm_rate(c->host->meters, sb->n_workers, now);
	if (!pacer_throttled(&c->host->pacer, &sb->adapt, now, taken))
		return;
	atomic_fetch_add(&sb->slowdowns, 1);
	size_t len = r->raw_len;
	while (len && (r->raw[len - 1] == '\n' || r->raw[len - 1] == '\r'))
		len--;
	sb_log_conn(sb, 5, host_idx(c), conn_idx(c),
		    "throttled (%.*s): the host was taking %.1f msgs/s; %.1f/s for %llu ms, then "
		    "back up step by step",
		    (int)(len > 200 ? 200 : len), r->raw, taken, pacer_rate(&c->host->pacer),
		    (unsigned long long)(sb->adapt.cooloff_ns / SB_NS_PER_MS));
}

/* The command's end, as the session reports it: kept until the read is done
 * (command_settle()). */
static void ops_command(void *ctx, struct sess *s, const struct smtp_reply *r, int err)
{
	struct sb_conn *c = ctx;
	if (!c->cmd || c->cmd_over)
		return;
	c->cmd_over = 1;
	if (r) {
		int rc = smtp_command_reply_copy(r, &c->cmd_got);
		c->cmd_err = rc;
	} else {
		c->cmd_err = err;
	}
}

static void ops_log(void *ctx, struct sess *s, int level, const char *line)
{
	struct sb_conn *c = ctx;
	sb_log_conn(c->env->sb, level, host_idx(c), conn_idx(c), "%s", line);
}

static void ops_auth(void *ctx, struct sess *s, int err)
{
	struct sb_conn *c = ctx;
	smtpbulk_event_t ev = {
		.kind = err ? SMTPBULK_EV_AUTH_FAIL : SMTPBULK_EV_AUTH_PASS,
		.error = err,
	};
	fire(c, err ? c->env->sb->cbs.auth_fail : c->env->sb->cbs.auth_pass, &ev);
}

static const struct sess_ops conn_sess_ops = {
	.next_msg = ops_next_msg,
	.done = ops_done,
	.requeue = ops_requeue,
	.defer = ops_defer,
	.log = ops_log,
	.auth = ops_auth,
	.txn_end = ops_txn_end,
	.throttled = ops_throttled,
	.command = ops_command,
};

/* The same with the read callback: only when one is set, as it costs per reply. */
static const struct sess_ops conn_sess_ops_read = {
	.next_msg = ops_next_msg,
	.done = ops_done,
	.requeue = ops_requeue,
	.defer = ops_defer,
	.reply = ops_reply,
	.log = ops_log,
	.auth = ops_auth,
	.txn_end = ops_txn_end,
	.throttled = ops_throttled,
	.command = ops_command,
};

/* ---- the session as its transport's endpoint ------------------------------------- */

static int ep_pending(void *ep, struct iovec *iov, int max)
{
	struct sess *s = &((struct sb_conn *)ep)->sess;
	int n = sess_output(s, iov, max);
	sess_handed(s, iov, n); /* the transport sends or encrypts them now */
	return n;
}

static void ep_taken(void *ep, size_t n)
{
	sess_sent(&((struct sb_conn *)ep)->sess, n); /* may start the next transactions */
}

static char *ep_space(void *ep, size_t *cap)
{
	return sess_rspace(&((struct sb_conn *)ep)->sess, cap);
}

static void ep_arrived(void *ep, size_t n)
{
	sess_input(&((struct sb_conn *)ep)->sess, n);
}

static size_t ep_room(void *ep)
{
	(void)ep;
	return SIZE_MAX; /* the session takes every reply as it comes */
}

static void ep_feed(void *ep, const char *p, size_t n)
{
	sess_feed(&((struct sb_conn *)ep)->sess, p, n);
}

static int ep_open(void *ep)
{
	return !sess_is_over(&((struct sb_conn *)ep)->sess);
}

static int ep_finished(void *ep)
{
	return sess_said_quit(&((struct sb_conn *)ep)->sess);
}

static void ep_tls_up(void *ep, const struct sb_tls *t)
{
	struct sb_conn *c = ep;
	struct smtpbulk *sb = c->env->sb;
	atomic_fetch_add_explicit(&sb->tls_handshakes, 1, memory_order_relaxed);
	if (sb_tls_resumed(t))
		atomic_fetch_add_explicit(&sb->tls_resumed, 1, memory_order_relaxed);
	sb_log_conn(sb, 5, host_idx(c), conn_idx(c), "TLS up: %s %s%s", sb_tls_version(t),
		    sb_tls_cipher(t), sb_tls_resumed(t) ? " (resumed)" : "");
	sess_tls_up(&c->sess);
}

static const struct sb_endpoint conn_endpoint = {
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

/* ---- TLS ------------------------------------------------------------------------ */

/* The session asked for TLS: resume the host's session unless a restart
 * (SMTPBULK_CB_REMOVE_RESTART, SMTPBULK_CB_RESTART) asked for a fresh one. */
static void tls_begin(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	struct sb_host *h = c->host;
	if (!env->tls_plain && !(env->tls_plain = malloc(TLS_PLAIN_MAX))) {
		sess_io_error(&c->sess, -ENOMEM);
		return;
	}
	int fresh = cpol_take_fresh_tls(&c->pol);
	pthread_mutex_lock(&h->tls_lock);
	int rc = sb_transport_tls_client(&c->xp, env->sb->tls_ctx, h->tls_name,
					 sess_secure_verifies(h->cfg.secure),
					 fresh ? NULL : h->tls_session, env->tls_plain, TLS_PLAIN_MAX);
	pthread_mutex_unlock(&h->tls_lock);
	c->tls_saved = 0;
	if (rc)
		sess_io_error(&c->sess, rc);
}

/* The connection is ready: over TLS, its session is what the host's next handshakes
 * resume. Not earlier: a TLS 1.3 ticket comes after the handshake. */
static void tls_remember(struct sb_conn *c)
{
	if (c->tls_saved)
		return;
	c->tls_saved = 1;
	struct WOLFSSL_SESSION *ts = sb_transport_session(&c->xp);
	if (!ts)
		return;
	struct sb_host *h = c->host;
	pthread_mutex_lock(&h->tls_lock);
	struct WOLFSSL_SESSION *old = h->tls_session;
	h->tls_session = ts;
	pthread_mutex_unlock(&h->tls_lock);
	sb_tls_session_free(old); /* whoever used it did so under the lock */
}

/* The transport failed (or the peer closed): say why when there is more to say. */
static void transport_failed(struct sb_conn *c, int err)
{
	char why[256];
	sb_transport_describe(&c->xp, why, sizeof(why));
	if (why[0])
		sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c), "%s", why);
	if (err == SMTPBULK_ECERT) {
		/* We refused the certificate: the alert wolfSSL wrote goes out before the
		 * close (RFC 8446 §6.2), so the server logs why, not a dropped handshake. */
		if (c->fd >= 0 && !c->send_busy)
			sb_transport_send_last(&c->xp, c->fd);
		sess_io_fatal(&c->sess, err); /* the next handshake meets the same certificate */
	} else
		sess_io_error(&c->sess, err);
}

/* ---- lifecycle ------------------------------------------------------------------ */

/* The connection gave up for good. */
static void conn_dead(struct sb_conn *c)
{
	struct smtpbulk *sb = c->env->sb;
	int err = sess_error(&c->sess);
	if (c->pol.removed)
		sb_log_conn(sb, 7, host_idx(c), conn_idx(c), "removed by a callback");
	else if (sess_fatal(&c->sess) || atomic_load(&c->host->fatal_err))
		sb_log_conn(sb, 7, host_idx(c), conn_idx(c),
			    "%s: no more connections to this host (it would say the same to "
			    "every one)", smtpbulk_strerror(err));
	else
		sb_log_conn(sb, 7, host_idx(c), conn_idx(c),
			    "giving up after %u failed connections: %s", sess_fails(&c->sess),
			    smtpbulk_strerror(err));
	sb_engine_conn_dead(sb, c->host, err);
}

static void count_dead(struct sb_conn *c)
{
	unpark(c); /* a dead connection is no longer waiting to return */
	if (!c->dead_counted) {
		c->dead_counted = 1;
		conn_dead(c);
	}
}

/* The host's work epochs when the connection closed: work that comes after that
 * brings it back (wait_for_work). */
static void note_closed_epochs(struct sb_conn *c)
{
	c->dormant_epoch[0] = atomic_load(&c->host->work_epoch);
	c->dormant_epoch[1] = atomic_load(&c->env->sb->any_epoch);
}

static int work_came(const struct sb_conn *c, const struct smtpbulk *sb)
{
	return c->dormant_epoch[0] != atomic_load(&c->host->work_epoch) ||
	       c->dormant_epoch[1] != atomic_load(&sb->any_epoch);
}

/* Work came for its host since it closed, or waits now. The epochs are read before
 * the queues, so an enqueue that lands after the look moves them. */
static int has_work(const struct sb_conn *c)
{
	struct smtpbulk *sb = c->env->sb;
	return work_came(c, sb) || !sbq_empty(c->host->queue) || !sbq_empty(sb->any_queue) ||
	       sb_cmd_list_pending(&c->host->cmds);
}

static int go_dormant(struct sb_conn *c)
{
	struct conn_idle *st = &c->env->dormant[c->sess.host_idx];
	if (st->n == st->cap)
		return 0; /* cannot happen: one place per connection of the host here */
	st->v[st->n++] = c;
	return 1;
}

/* A reconnect with nothing to send would only say EHLO and QUIT (RFC 5321 asks for
 * neither, servers log it): the connection waits, closed, on the dormant list until
 * work comes (conn_env_wake_dormant). */
static int wait_for_work(struct sb_conn *c)
{
	return !has_work(c) && go_dormant(c);
}

/* While the host's breaker is open no connection starts; once it is half-open, the
 * one that takes the probe does. The others wait closed (for the breaker's events,
 * which wake the workers, or for the end of the cool-off). */
static int wait_for_breaker(struct sb_conn *c)
{
	int probe = 0;
	if (c->probe || !hb_open_until(&c->host->breaker))
		return 0;
	if (hb_admit(&c->host->breaker, c->env->now, &probe)) {
		c->probe = (uint8_t)probe;
		return 0;
	}
	breaker_wake_at(c);
	return go_dormant(c);
}

void conn_env_wake_dormant(struct conn_env *env, unsigned h)
{
	struct conn_idle *st = &env->dormant[h];
	if (!st->n)
		return;
	struct smtpbulk *sb = env->sb;
	/* A connection that goes back to waiting lands at or below where it was taken. */
	int down = atomic_load(&sb->hosts[h].fatal_err) != 0;
	uint64_t probe_at = hb_open_until(&sb->hosts[h].breaker);
	unsigned n = st->n, kept = 0;
	for (unsigned i = 0; i < n; i++) {
		struct sb_conn *c = st->v[i];
		/* Down: it starts, to give up. Else with work, once the breaker lets it. */
		if (!down && (!has_work(c) || env->now < probe_at)) {
			st->v[kept++] = c;
			if (probe_at)
				breaker_wake_at(c);
			continue;
		}
		st->n = kept;
		conn_start(c);
		kept = st->n;
	}
	st->n = kept;
}

static void reconnect_after(struct sb_conn *c, unsigned ms)
{
	c->timer_serial++;
	uint64_t tag = TM_RECONNECT | ((uint64_t)c->timer_serial << 8);
	if (th_push(&c->env->timers, sb_now_ns() + (uint64_t)ms * SB_NS_PER_MS, c, tag) < 0) {
		/* Without a timer it would never come back: it gives up, and says so. */
		sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c), "no memory for a timer");
		sess_give_up(&c->sess, -ENOMEM);
		count_dead(c);
		return;
	}
	c->reconnecting = 1;
}

/* The connection is over and its socket (if any) closed: count it, then reconnect
 * later, or, for a connection that gave up, tell the host. Runs once per connection. */
static void closed(struct sb_conn *c)
{
	struct smtpbulk *sb = c->env->sb;
	struct sess *s = &c->sess;
	note_closed_epochs(c); /* before it says it is down: a caller may wait for that */
	atomic_store_explicit(&c->ctr->ready, 0, memory_order_relaxed);
	if (c->probe) { /* it held the breaker's probe and ended before carrying it */
		c->probe = 0;
		c->probe_msg = NULL;
		breaker_event(c, hb_failure(&c->host->breaker, &sb->breaker_cfg, 1, c->env->now));
	}
	if (!sess_was_ready(s) && sess_error(s)) {
		atomic_fetch_add_explicit(&sb->connect_fails, 1, memory_order_relaxed);
		smtpbulk_event_t ev = {
			.kind = c->pol.ever_ready ? SMTPBULK_EV_RECONNECT_FAIL
						  : SMTPBULK_EV_CONNECT_FAIL,
			.error = sess_error(s),
		};
		fire(c, c->pol.ever_ready ? sb->cbs.reconnect_fail : sb->cbs.connect_fail, &ev);
	}
	enum cpol_next next = cpol_after_close(&c->pol);
	if (next == CPOL_NEXT_GIVE_UP)
		sess_give_up(s, sess_error(s));
	if (sess_is_dead(s) && sess_fatal(s) && sess_error(s))
		atomic_store(&c->host->fatal_err, sess_error(s)); /* the others stop too */
	if (sess_is_dead(s)) {
		count_dead(c);
		return;
	}
	sess_reset(s);
	if (atomic_load(&sb->stopping) || next == CPOL_NEXT_WAIT_BATCH)
		return; /* parked: it comes back at the end of the batch (conn_env_unpark) */
	/* Sleep.Hang after a hang, Sleep.Fail after other trouble; none when a callback
	 * asked for a reconnect now. */
	unsigned ms = sess_error(s) == SMTPBULK_ETIMEDOUT ? sb->opts.sleep_hang_ms
							  : sb->opts.reconnect_ms;
	reconnect_after(c, next == CPOL_NEXT_RECONNECT_NOW ? 0 : ms);
}

static void teardown(struct sb_conn *c)
{
	if (c->inflight > 0) {
		/* Cancel, and shut the socket so a receive the kernel is already running
		 * ends too; we close only when every operation has come back, so no
		 * completion can land in buffers a new connection uses. Once is enough. */
		if (c->fd >= 0 && !c->cancelled) {
			c->cancelled = 1;
			c->env->be->cancel_fd(c->env->io, c->fd);
			shutdown(c->fd, SHUT_RDWR);
		}
		return;
	}
	if (c->fd >= 0) {
		c->env->be->forget_fd(c->env->io, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	sb_transport_close(&c->xp); /* no operation can read its buffers any more */
	closed(c);
}

/* Bind the connection's source address (host->src[k % n]). The port is the kernel's
 * choice at connect (IP_BIND_ADDRESS_NO_PORT), so many connections from one address
 * do not each hold an ephemeral port from bind on. A source that cannot be bound is
 * a failed connection (SMTPBULK_ESOURCE; Retry.Fail counts it), never a connect from
 * an address nobody chose. */
static int bind_source(struct sb_conn *c)
{
	const struct sb_host *h = c->host;
	const struct sockaddr_storage *src = &h->src[c->sess.conn_idx % h->n_src];
	socklen_t len = src->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in);
	int one = 1;
	setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	if (bind(c->fd, (const struct sockaddr *)src, len) == 0)
		return 0;
	int err = errno;
	sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c),
		    "cannot bind the source address: %s", strerror(err));
	close(c->fd);
	c->fd = -1;
	sess_connected(&c->sess, SMTPBULK_ESOURCE);
	conn_sync(c);
	return -1;
}

void conn_start(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	const struct sb_host *h = c->host;
	int one = 1;

	c->reconnecting = 0;
	int fatal = atomic_load_explicit(&h->fatal_err, memory_order_relaxed);
	if (fatal) {
		/* Another connection met what every one would (a 535, no STARTTLS, an
		 * untrusted certificate): none starts again. */
		sess_give_up(&c->sess, fatal);
		count_dead(c);
		return;
	}
	if (c->gen > 0 && (wait_for_work(c) || wait_for_breaker(c)))
		return;
	if (c->gen > 0)
		atomic_fetch_add_explicit(&env->sb->reconnects, 1, memory_order_relaxed);
	c->gen++;
	c->born_at = env->now;
	c->ready_counted = 0;
	c->cancelled = 0;
	/* Held from the start when the caller holds for its coming readiness: the session
	 * could take a message in the very read that makes it ready, before the event. */
	const struct sb_evq *q = env->sb->evq;
	if (q && (q->hold & (1u << (c->pol.ever_ready ? SMTPBULK_EV_RECONNECT_PASS
						       : SMTPBULK_EV_CONNECT_PASS))))
		c->pol.held = 1;
	sess_connecting(&c->sess);
	c->fd = socket(h->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		sess_connected(&c->sess, -errno);
		conn_sync(c);
		return;
	}
	if (h->addr.ss_family != AF_UNIX) {
		/* Commands are small and each waits for a reply: never let Nagle hold them. */
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (h->n_src && bind_source(c) < 0)
			return;
	}
	int rc = env->be->connect(env->io, c->fd, (const struct sockaddr *)&h->addr, h->addrlen,
				  SB_TOKEN(SB_TK_CONNECT, c->gen, c->slot));
	if (rc < 0) {
		sess_connected(&c->sess, rc);
		conn_sync(c);
		return;
	}
	c->inflight++;
	wd_start(c->wd, env->now, env->sb->phase_ms[SESS_PH_GREETING]); /* a connect can hang */
}

/* Ready (past EHLO, TLS and AUTH): announce it once per connection. */
static void became_ready(struct sb_conn *c)
{
	struct smtpbulk *sb = c->env->sb;
	c->ready_counted = 1;
	atomic_store_explicit(&c->ctr->ready, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sb->connects, 1, memory_order_relaxed);
	smtpbulk_event_t ev = {
		.kind = c->pol.ever_ready ? SMTPBULK_EV_RECONNECT_PASS : SMTPBULK_EV_CONNECT_PASS,
	};
	fire(c, c->pol.ever_ready ? sb->cbs.reconnect_pass : sb->cbs.connect_pass, &ev);
	c->pol.ever_ready = 1;
	tls_remember(c);
}

static void idle_push(struct sb_conn *c)
{
	struct conn_idle *st = &c->env->idle[c->sess.host_idx];
	if (c->idle_listed || st->n == st->cap)
		return;
	st->v[st->n++] = c;
	c->idle_listed = 1;
}

struct sb_conn *conn_env_idle_pop(struct conn_env *env, unsigned h)
{
	struct conn_idle *st = &env->idle[h];
	if (!st->n)
		return NULL;
	struct sb_conn *c = st->v[--st->n];
	c->idle_listed = 0;
	return c;
}

/* An idle spell begins: QUIT when it lasts idle_close_ms, or when the connection's
 * max_conn_age_ms is up, whichever comes first (one timer per spell; a spell ends
 * when a MAIL goes out, which the timer sees). */
static void idle_arm(struct sb_conn *c)
{
	const smtpbulk_options_t *o = &c->env->sb->opts;
	unsigned mark = sess_mails(&c->sess);
	if ((!o->idle_close_ms && !o->max_conn_age_ms) ||
	    (c->idle_armed && c->idle_mark == mark && c->idle_gen == c->gen))
		return;
	uint64_t due = UINT64_MAX;
	if (o->idle_close_ms)
		due = c->env->now + (uint64_t)o->idle_close_ms * SB_NS_PER_MS;
	if (o->max_conn_age_ms && c->born_at + (uint64_t)o->max_conn_age_ms * SB_NS_PER_MS < due)
		due = c->born_at + (uint64_t)o->max_conn_age_ms * SB_NS_PER_MS;
	c->idle_serial++;
	if (th_push(&c->env->timers, due, c, TM_IDLE | ((uint64_t)c->idle_serial << 8)) < 0)
		return; /* no memory for the timer: it stays open, as without the option */
	c->idle_armed = 1;
	c->idle_mark = mark;
	c->idle_gen = c->gen;
}

static void idle_due(struct sb_conn *c)
{
	struct sess *s = &c->sess;
	c->idle_armed = 0;
	if (c->fd < 0 || c->idle_gen != c->gen || !sess_is_idle(s) || sess_mails(s) != c->idle_mark)
		return; /* it worked since, or closed: a later spell has its own timer */
	sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c),
		    "idle past its limit or at the end of its age: QUIT (it connects again "
		    "when there is something to send)");
	if (sess_quit(s))
		cpol_reconnect_after_quit(&c->pol);
	conn_sync(c);
}

/* A receive, unless one is in flight: multishot into the pool where it works. */
static void arm_receive(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	uint64_t token = SB_TOKEN(SB_TK_RECV, c->gen, c->slot);
	int rc = 0;
	if (c->recv_busy)
		return;
	if (env->pooled_recv) {
		rc = env->be->recv_multi(env->io, c->fd, token);
		if (rc == 0) {
			c->recv_busy = c->recv_pooled = 1;
			c->inflight++;
			return;
		}
		if (rc != -EOPNOTSUPP)
			goto refused;
		env->pooled_recv = 0; /* no buffer pool on this kernel */
		sb_log(env->sb, 5, "worker %u: no provided-buffer ring; plain receives", env->worker);
	}
	size_t cap;
	char *p = c->xp.ops->recv_space(&c->xp, &cap);
	if (!p) {
		rc = -ENOMEM;
		goto refused;
	}
	if (cap == 0)
		return;
	if ((rc = env->be->recv(env->io, c->fd, p, cap, token)) < 0)
		goto refused;
	c->recv_busy = 1;
	c->recv_pooled = 0;
	c->recv_at = p;
	c->recv_ops = c->xp.ops;
	c->inflight++;
	return;
refused: /* the backend cannot take it: this connection cannot go on */
	sess_io_error(&c->sess, rc);
	conn_sync(c);
}

/* Hand the transport's wire bytes to the socket, unless a send is in flight. */
static void send_next(struct sb_conn *c)
{
	if (c->send_busy)
		return;
	int rc = sb_transport_send(&c->xp, c->env->be, c->env->io, c->fd, &c->mh, c->iov,
				   SESS_OUT_MAX, SB_TOKEN(SB_TK_SEND, c->gen, c->slot));
	if (rc > 0) {
		c->send_busy = 1;
		c->send_ops = c->xp.ops;
		c->inflight++;
	} else if (rc < 0) {
		sess_io_error(&c->sess, rc);
	}
}

/* The command's end goes to its caller once the read that brought its reply is done:
 * a connection that failed in that same read (a second, unasked reply behind it; a
 * garbled one) makes it an error, unless the reply was the server's 421. */
static void command_settle(struct sb_conn *c)
{
	struct sess *s = &c->sess;
	if (!c->cmd || !c->cmd_over)
		return;
	smtpbulk_command_reply_t *got = c->cmd_got;
	int rc = c->cmd_err;
	if (got && sess_is_over(s) && got->reply.code != 421) {
		free(got); /* one allocation (command.h) */
		got = NULL;
		rc = sess_error(s) ? sess_error(s) : SMTPBULK_EPROTO;
	} else if (!got && !rc) {
		rc = SMTPBULK_EPROTO;
	}
	sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c), "command %.*s: %s",
		    (int)(c->cmd->len > 2 ? c->cmd->len - 2 : 0), c->cmd->line,
		    got ? "answered" : smtpbulk_strerror(rc));
	sb_cmd_req_finish(c->cmd, got ? 0 : rc, got);
	c->cmd = NULL;
	c->cmd_got = NULL;
	c->cmd_err = 0;
	c->cmd_over = 0;
}

/* An idle, ready connection takes the oldest command waiting for its host, if any
 * (dropping those whose caller gave up). 1 when it sent one. */
static int command_take(struct sb_conn *c)
{
	struct sb_host *h = c->host;
	struct sb_cmd_req *req;
	if (c->cmd || !sb_cmd_list_pending(&h->cmds))
		return 0;
	while ((req = sb_cmd_list_pop(&h->cmds))) {
		if (sb_cmd_req_abandoned(req) || req->deadline_ns <= c->env->now) {
			sb_cmd_req_finish(req, SMTPBULK_ETIMEDOUT, NULL);
			continue;
		}
		int rc = sess_command(&c->sess, req->line, req->len);
		if (rc) {
			sb_cmd_req_finish(req, rc, NULL);
			continue;
		}
		c->cmd = req;
		c->cmd_serial++;
		if (th_push(&c->env->timers, req->deadline_ns, c,
			    TM_CMD | ((uint64_t)c->cmd_serial << 8)) < 0)
			sess_hang(&c->sess); /* no timer, no bound: it ends now (ETIMEDOUT) */
		return 1;
	}
	return 0;
}

/* The command's deadline: no reply by now, so none will be matched on this
 * connection: it ends (as a hang; nothing else is in flight beside a command). */
static void command_due(struct sb_conn *c)
{
	if (!c->cmd || c->cmd_over || !sess_in_command(&c->sess))
		return;
	sb_log_conn(c->env->sb, 7, host_idx(c), conn_idx(c),
		    "no reply to the command in time: the connection ends");
	sess_hang(&c->sess);
	conn_sync(c);
}

/* Bring the I/O in line with what the session wants, after any session event. */
static void conn_io(struct sb_conn *c)
{
	struct sess *s = &c->sess;
	command_settle(c);
	if (sess_is_closed(s) || (sess_is_dead(s) && !c->dead_counted)) {
		teardown(c);
		return;
	}
	if (sess_is_dead(s) || c->fd < 0 || !sess_on_wire(s))
		return; /* nothing to do until the connect completes */
	if (sess_was_ready(s) && !c->ready_counted)
		became_ready(c);
	if (c->pol.reconnect_now && sess_in_service(s)) {
		/* RECONNECT/RESTART: an idle connection says QUIT (RFC 5321 4.1.1.10) and
		 * connects again once closed; one with transactions out takes no more and
		 * QUITs when they are answered; one still shaking hands ends now (what it
		 * holds goes again, free of charge). */
		if (sess_is_idle(s)) {
			if (!sess_quit(s))
				sess_restart(s);
		} else if (!sess_in_transaction(s)) {
			sess_restart(s);
		}
		if (sess_is_over(s)) {
			conn_io(c);
			return;
		}
	}
	if (sess_is_idle(s)) {
		/* Stopping, or the host is down (its breaker gave up): QUIT. */
		int stopping = atomic_load_explicit(&c->env->sb->stopping, memory_order_relaxed) ||
			       atomic_load_explicit(&c->host->fatal_err, memory_order_relaxed);
		enum cpol_idle what = cpol_when_idle(&c->pol, stopping);
		if (what == CPOL_IDLE_WORK && sess_spent(s)) {
			/* The server takes no more messages here: a new connection will. */
			if (sess_quit(s))
				cpol_reconnect_after_quit(&c->pol);
			what = CPOL_IDLE_WAIT;
		}
		switch (what) {
		case CPOL_IDLE_QUIT:
			sess_quit(s);
			break;
		case CPOL_IDLE_WORK:
			if (command_take(c))
				break;
			/* The breaker's probe is this connection's to carry: it takes its
			 * message now, not when the feed happens to pick it. */
			if (c->probe && !c->probe_msg)
				sess_pump(s);
			if (sess_is_idle(s)) {
				idle_push(c);
				idle_arm(c);
			}
			break;
		case CPOL_IDLE_WAIT:
			break;
		}
	}
	if (sess_wants_tls(s) && !sb_transport_secure(&c->xp))
		tls_begin(c);
	if (!sess_is_over(s)) {
		int rc = c->xp.ops->flush(&c->xp);
		if (rc < 0)
			transport_failed(c, rc);
	}
	if (!sess_is_over(s))
		send_next(c);
	if (sess_is_over(s)) {
		conn_io(c); /* it failed on the way: tear down */
		return;
	}
	if (sess_is_idle(s))
		c->xp.ops->idle(&c->xp, c->recv_busy && !c->recv_pooled, c->send_busy);
	arm_receive(c);
}

/* Tell the watchdog whether the connection now waits for its server, and how long it
 * may wait in its present phase. */
static void conn_watch(struct sb_conn *c)
{
	int backlog = c->xp.ops->unsent(&c->xp) > 0; /* the socket must take it */
	if (c->fd >= 0 && (sess_waiting(&c->sess) || backlog))
		wd_watch(c->wd, c->env->now, c->env->sb->phase_ms[sess_phase(&c->sess, backlog)]);
	else
		wd_quiet(c->wd);
}

static void conn_sync(struct sb_conn *c)
{
	conn_io(c);
	conn_watch(c);
}

/* A receive completed: bytes for the transport, or why the receive ended. */
static void on_recv(struct sb_conn *c, const struct sb_cqe *e)
{
	struct conn_env *env = c->env;
	struct sess *s = &c->sess;
	if (e->res > 0) {
		const char *buf = e->buf;
		if (buf)
			env->pooled_seen = 1;
		else if (c->recv_ops != c->xp.ops)
			buf = c->recv_at; /* posted before the switch to TLS: ciphertext */
		int rc = c->xp.ops->bytes_in(&c->xp, buf, (size_t)e->res);
		if (rc < 0)
			transport_failed(c, rc);
	} else if (e->res == 0) {
		int rc = c->xp.ops->eof(&c->xp);
		if (!sess_is_over(s))
			transport_failed(c, rc);
	} else if (c->recv_pooled && e->res == -ENOBUFS) {
		/* The pool ran dry for a moment: the receive is armed again below, and the
		 * buffers this batch returns are back before that is submitted. */
	} else if (c->recv_pooled && e->res == -EINVAL && !env->pooled_seen) {
		/* A kernel with buffer rings but without multishot receive (5.19). */
		env->pooled_recv = 0;
		sb_log(env->sb, 5, "worker %u: multishot receive refused; plain receives",
		       env->worker);
	} else {
		sess_io_error(s, e->res);
	}
}

void conn_complete(struct sb_conn *c, const struct sb_cqe *e)
{
	struct conn_env *env = c->env;
	struct sess *s = &c->sess;
	unsigned kind = sb_token_kind(e->token);
	if (!e->more) { /* the operation is over (a multishot receive may go on) */
		c->inflight--;
		if (kind == SB_TK_SEND)
			c->send_busy = 0;
		else if (kind == SB_TK_RECV)
			c->recv_busy = 0;
	}
	if (((uint32_t)(e->token >> 32) & 0xffffffu) != (c->gen & 0xffffffu) || c->fd < 0) {
		if (e->buf)
			env->be->buf_return(env->io, e->bid);
		conn_sync(c); /* stale: only the bookkeeping above */
		return;
	}
	/* The watchdog's clock starts again when the server moved: the connect is up, the
	 * socket took bytes (a slow reader is timed by its progress), or a complete reply
	 * came. Bytes alone do not count: a server that dribbles a reply, or a reply
	 * without end, meets its deadline instead of resetting it. */
	uint32_t replies = sess_replies(s);
	if ((kind == SB_TK_CONNECT && e->res == 0) || (kind == SB_TK_SEND && e->res > 0))
		wd_quiet(c->wd);
	switch (kind) {
	case SB_TK_CONNECT:
		sess_connected(s, e->res < 0 ? e->res : 0);
		break;
	case SB_TK_SEND:
		if (e->res <= 0)
			sess_io_error(s, e->res < 0 ? e->res : SMTPBULK_ECLOSED);
		else
			c->send_ops->sent(&c->xp, (size_t)e->res); /* as it was when sent */
		break;
	case SB_TK_RECV:
		on_recv(c, e);
		if (e->buf) /* the session copied what it keeps */
			env->be->buf_return(env->io, e->bid);
		if (sess_replies(s) != replies) {
			wd_quiet(c->wd);
			env->progress = 1; /* the global timeout counts replies too */
		}
		break;
	}
	conn_sync(c);
}

int conn_offer_command(struct sb_conn *c)
{
	if (!sess_is_idle(&c->sess))
		return -1;
	conn_sync(c); /* an idle one takes a waiting command (command_take) */
	return sess_in_command(&c->sess);
}

int conn_pull(struct sb_conn *c)
{
	if (!sess_is_idle(&c->sess))
		return -1;
	unsigned n = sess_pump(&c->sess);
	conn_sync(c); /* still idle (nothing waited): back on the idle stack */
	return (int)n;
}

/* ---- the watchdog, global hangs and the stop --------------------------------------- */

void conn_act(struct sb_conn *c, int code)
{
	/* Whatever the code, the caller has spoken — about a ready connection: a code for
	 * a connect_fail leaves one held for its next readiness held. */
	if (c->ready_counted)
		c->pol.held = 0;
	apply(c, code);
	conn_sync(c); /* as after a callback: a reconnect or an idle QUIT starts now */
}

void conn_check_hang(struct sb_conn *c)
{
	struct conn_env *env = c->env;
	struct smtpbulk *sb = env->sb;
	struct sess *s = &c->sess;
	/* Checked again here: the server may have answered since the tick. */
	if (!wd_take(c->wd, env->now) || !sess_waiting(s))
		return;
	sb_log_conn(sb, 7, host_idx(c), conn_idx(c), "hang: no answer for %u ms in %s",
		    wd_limit_ms(c->wd), sess_state_now(s));
	atomic_fetch_add_explicit(&sb->hangs, 1, memory_order_relaxed);
	sb_count(&c->ctr->hang, 1);
	if (sb->cbs.hang) { /* once per message in flight, or once with none */
		smtpbulk_event_t ev = {.kind = SMTPBULK_EV_HANG, .error = SMTPBULK_ETIMEDOUT};
		for (unsigned t = 0; t < sess_inflight(s); t++) {
			struct sb_msg *m = sess_inflight_msg(s, t);
			ev.message_id = m->id;
			ev.user_data = m->res.user_data;
			fire(c, sb->cbs.hang, &ev);
		}
		if (sess_inflight(s) == 0)
			fire(c, sb->cbs.hang, &ev);
	}
	sess_hang(s);
	conn_sync(c);
}

void conn_global_hang(struct sb_conn *c, int give_up)
{
	if (sess_is_over(&c->sess))
		return;
	if (give_up)
		sess_abort(&c->sess, SMTPBULK_TIMED_OUT, SMTPBULK_ETIMEDOUT);
	else
		sess_restart(&c->sess);
	conn_sync(c);
}

void conn_stop(struct sb_conn *c)
{
	c->reconnecting = 0; /* its timer entry, if any, is stale now */
	sess_cancel_work(&c->sess);
	conn_sync(c);
}

void conn_abort(struct sb_conn *c)
{
	sess_abort(&c->sess, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
	conn_sync(c);
}

/* ---- a worker's connections together -------------------------------------------- */

void conn_env_unpark(struct conn_env *env)
{
	struct smtpbulk *sb = env->sb;
	uint64_t epoch = atomic_load(&sb->batch_epoch), queued = atomic_load(&sb->queued);
	/* Backwards over what is parked now: a connection that parks again on the way
	 * lands at the end and waits for the next pass. */
	for (size_t i = env->n_parked; i-- > 0;) {
		if (i >= env->n_parked)
			continue; /* the list shrank behind us */
		struct sb_conn *c = env->parked[i];
		if (!cpol_batch_over(&c->pol, epoch, queued, atomic_load(&c->host->parked),
				     atomic_load(&c->host->alive)))
			continue;
		if (c->pol.park == CPOL_PARK_CLOSED) {
			if (!conn_closed(c) || !sess_is_down(&c->sess))
				continue; /* still saying QUIT: the next pass */
			unpark(c);
			conn_start(c);
		} else {
			unpark(c);
			conn_sync(c); /* idle again: back on the idle stack */
		}
	}
}

uint64_t conn_env_timers(struct conn_env *env)
{
	const struct th_ent *top;
	while ((top = th_peek(&env->timers)) && top->due <= env->now) {
		struct th_ent e = th_pop(&env->timers);
		if ((e.tag & 0xff) == TM_DEFER) {
			atomic_fetch_sub(&env->sb->deferred_now, 1);
			sb_engine_requeue(env->sb, e.p);
			continue;
		}
		struct sb_conn *c = e.p;
		if ((e.tag & 0xff) == TM_IDLE) {
			if (c->idle_armed && c->idle_serial == (uint32_t)(e.tag >> 8))
				idle_due(c);
			continue;
		}
		if ((e.tag & 0xff) == TM_CMD) {
			if (c->cmd_serial == (uint32_t)(e.tag >> 8))
				command_due(c);
			continue;
		}
		if (c->reconnecting && c->timer_serial == (uint32_t)(e.tag >> 8))
			conn_start(c);
	}
	return top ? top->due : UINT64_MAX;
}

void conn_env_end_deferred(struct conn_env *env, smtpbulk_status_t st, int err)
{
	while (env->timers.n) {
		struct th_ent e = th_pop(&env->timers);
		if ((e.tag & 0xff) != TM_DEFER)
			continue; /* a reconnect: stopping calls those off */
		atomic_fetch_sub(&env->sb->deferred_now, 1);
		sb_engine_complete(env->sb, e.p, st, err, NULL, -1, -1, NULL);
	}
}

int conn_new(struct conn_env *env, unsigned h, unsigned k, unsigned slot, struct sb_conn **out)
{
	struct sb_host *host = &env->sb->hosts[h];
	struct sb_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->env = env;
	c->host = host;
	c->ctr = &host->conn_ctr[k];
	c->wd = &env->wd.slots[slot];
	c->slot = slot;
	c->fd = -1;
	sb_transport_plain(&c->xp, &conn_endpoint, c);
	sess_init(&c->sess, host->n_src ? &host->src_cfg[k % host->n_src] : &host->cfg,
		  env->sb->cbs.read ? &conn_sess_ops_read : &conn_sess_ops, c, h, k);
	c->sess.clock = &env->now; /* read once per loop turn: phases to that grain */
	*out = c;
	return 0;
}

void conn_free(struct sb_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->cmd) /* cannot happen: the stop ended it; its caller must not wait on */
		sb_cmd_req_finish(c->cmd, SMTPBULK_ECANCELLED, NULL);
	free(c->cmd_got);
	sb_transport_close(&c->xp);
	sess_fini(&c->sess);
	free(c);
}

void conn_env_free(struct conn_env *env, size_t n_hosts)
{
	if (env->idle)
		for (size_t h = 0; h < n_hosts; h++)
			free(env->idle[h].v);
	free(env->idle);
	if (env->dormant)
		for (size_t h = 0; h < n_hosts; h++)
			free(env->dormant[h].v);
	free(env->dormant);
	free(env->parked);
	th_free(&env->timers);
	free(env->wd.slots);
	free(env->tls_plain);
	memset(env, 0, sizeof(*env));
}
