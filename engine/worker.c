/*
 * The worker loop: one thread per worker, pinned to a CPU, owning one I/O ring (io_uring
 * or epoll) and its share of the connections. Each turn runs these phases, like libuv's
 * uv_run:
 *   1. the stop, when the engine stops;
 *   2. parked connections whose batch is over come back (only while some are parked);
 *   3. codes the caller gave later (smtpbulk_act()), then feed: idle connections of
 *      hosts with queued messages pull them;
 *   4. timers: 4xx retries and reconnects that are due; the time to the next one;
 *   5. submit everything and wait in one call, then dispatch the completions;
 *   6. the watchdog's verdicts (hung connections, global hangs) — after the
 *      completions, so a reply that came while this thread was not running counts
 *      before a connection is judged hung.
 * Everything about a single connection is the connection layer's (conn.c).
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "conn.h"
#include "engine.h"
#include "tls.h"

#define STOP_GRACE_NS (2ull * SB_NS_PER_S) /* how long QUIT may take at shutdown */
#define IO_ENTRIES 256
#define CQE_BATCH 256
#define WAKE_TOKEN SB_TOKEN(SB_TK_WORKER, 0, 0)

struct sb_worker {
	struct smtpbulk *sb;      /* read-only, but for its atomics */
	unsigned index;
	int cpu;                  /* -1 = not pinned */
	pthread_t thread;
	int wake_fd;              /* eventfd: any thread writes, this worker reads */
	/* Start handshake with the creating thread (under init_lock). */
	pthread_mutex_t init_lock;
	pthread_cond_t init_cond;
	int init_rc, init_done;
	/* Below: this worker's thread only, once it runs. */
	struct conn_env env;
	struct sb_conn **conns;   /* [n_conns]: index = the slot tokens carry */
	unsigned n_conns;
	uint64_t wake_val;
	int wake_armed;           /* the eventfd read is submitted */
	int stop_begun;
	uint64_t stop_deadline;
	char desc[64];
};

/* ---- the watchdog's verdicts ------------------------------------------------------ */

static void take_verdicts(struct sb_worker *w)
{
	struct wd_group *g = &w->env.wd;
	struct smtpbulk *sb = w->sb;
	if (atomic_load_explicit(&g->pending, memory_order_relaxed) &&
	    atomic_exchange(&g->pending, 0))
		for (unsigned i = 0; i < w->n_conns; i++)
			conn_check_hang(w->conns[i]);
	int verdict = atomic_load_explicit(&g->global, memory_order_relaxed);
	if (!verdict || !(verdict = atomic_exchange(&g->global, 0)))
		return;
	/* A global hang: every connection starts again; or, with the retries used up,
	 * what is in progress or queued ends TIMED_OUT. */
	for (unsigned i = 0; i < w->n_conns; i++)
		conn_global_hang(w->conns[i], verdict == 2);
	if (verdict == 2) {
		for (size_t h = 0; h < sb->n_hosts; h++)
			if (sb->hosts[h].on_worker[w->index])
				w->env.queue_busy |= sb_engine_fail_queue(
					sb, sb->hosts[h].queue, SMTPBULK_TIMED_OUT, SMTPBULK_ETIMEDOUT);
		w->env.queue_busy |= sb_engine_fail_queue(sb, sb->any_queue, SMTPBULK_TIMED_OUT,
							  SMTPBULK_ETIMEDOUT);
	}
}

/* ---- codes given later (smtpbulk_act()) -------------------------------------------- */

/* A code for one of this worker's connections: taken (so no other worker sees it) and
 * applied as the callback's return would have been. One load per turn when none. */
static void take_codes(struct sb_worker *w)
{
	struct smtpbulk *sb = w->sb;
	if (!atomic_load_explicit(&sb->codes_pending, memory_order_acquire))
		return;
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct sb_conn *c = w->conns[i];
		_Atomic int *slot = &sb->hosts[conn_host(c)].codes[conn_index(c)];
		if (!atomic_load_explicit(slot, memory_order_relaxed))
			continue;
		int code = atomic_exchange(slot, 0);
		if (code) {
			atomic_fetch_sub(&sb->codes_pending, 1);
			conn_act(c, code);
		}
	}
}

/* ---- feed ------------------------------------------------------------------------- */

/* Idle connections of hosts with queued messages pull them. Messages for a host that
 * has no connection left end FAILED (and for any host, when no host is left). */
static void feed(struct sb_worker *w)
{
	struct smtpbulk *sb = w->sb;
	int any_waiting = !sbq_empty(sb->any_queue);

	for (size_t h = 0; h < sb->n_hosts; h++) {
		struct sb_host *host = &sb->hosts[h];
		if (!host->on_worker[w->index])
			continue;
		if (atomic_load(&host->alive) == 0) {
			if (sb_cmd_list_pending(&host->cmds)) /* no connection will take them */
				sb_cmd_list_fail(&host->cmds, sb_host_down_error(host), 0);
			if (!sbq_empty(host->queue))
				w->env.queue_busy |= sb_engine_fail_queue(
					sb, host->queue, SMTPBULK_FAILED, sb_host_down_error(host));
			continue;
		}
		/* Before the look at the queue: work that came for connections waiting
		 * closed wakes them even when the idle ones take it all. */
		conn_env_wake_dormant(&w->env, (unsigned)h);
		struct sb_conn *c;
		/* One-off commands first: an idle connection takes each (conn.c). */
		while (sb_cmd_list_pending(&host->cmds) &&
		       (c = conn_env_idle_pop(&w->env, (unsigned)h)))
			if (conn_offer_command(c) == 0)
				break; /* none left for it: it is back on the stack */
		if (!any_waiting && sbq_empty(host->queue))
			continue;
		while ((c = conn_env_idle_pop(&w->env, (unsigned)h)))
			if (conn_pull(c) == 0)
				break; /* the queues ran dry: it is back on the stack */
	}
	if (any_waiting && atomic_load(&sb->hosts_alive) == 0)
		w->env.queue_busy |= sb_engine_fail_queue(sb, sb->any_queue, SMTPBULK_FAILED,
							  sb_all_down_error(sb));
}

/* ---- the stop --------------------------------------------------------------------- */

/* Returns 1 once every connection is closed and the loop may end. */
static int stop_phase(struct sb_worker *w, int *timeout)
{
	if (!w->stop_begun) {
		w->stop_begun = 1;
		w->stop_deadline = w->env.now + STOP_GRACE_NS;
		conn_env_end_deferred(&w->env, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
		for (unsigned i = 0; i < w->n_conns; i++)
			conn_stop(w->conns[i]);
	}
	if (w->env.now >= w->stop_deadline) /* QUIT took too long: close what is left */
		for (unsigned i = 0; i < w->n_conns; i++)
			conn_abort(w->conns[i]);
	for (unsigned i = 0; i < w->n_conns; i++)
		if (!conn_closed(w->conns[i])) {
			uint64_t left = w->stop_deadline > w->env.now ? w->stop_deadline - w->env.now : 0;
			*timeout = (int)((left + SB_NS_PER_MS - 1) / SB_NS_PER_MS);
			return 0;
		}
	/* A 4xx that came in while the stop began may have deferred a message after it:
	 * it ends here, not nowhere. */
	conn_env_end_deferred(&w->env, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED);
	return 1;
}

/* ---- the loop --------------------------------------------------------------------- */

static void arm_wake(struct sb_worker *w)
{
	if (!w->wake_armed)
		w->wake_armed = w->env.be->read_eventfd(w->env.io, w->wake_fd, &w->wake_val,
							WAKE_TOKEN) == 0;
}

static void dispatch(struct sb_worker *w, const struct sb_cqe *e)
{
	if (sb_token_kind(e->token) == SB_TK_WORKER) {
		w->wake_armed = 0;
		arm_wake(w);
		return;
	}
	uint32_t slot = sb_token_slot(e->token);
	if (slot < w->n_conns)
		conn_complete(w->conns[slot], e);
}

static int ms_until(uint64_t at, uint64_t now)
{
	if (at <= now)
		return 0;
	uint64_t ms = (at - now + SB_NS_PER_MS - 1) / SB_NS_PER_MS;
	return ms > 1000000 ? 1000000 : (int)ms;
}

static void init_done(struct sb_worker *w, int rc)
{
	pthread_mutex_lock(&w->init_lock);
	w->init_rc = rc;
	w->init_done = 1;
	pthread_cond_broadcast(&w->init_cond);
	pthread_mutex_unlock(&w->init_lock);
}

static void *worker_main(void *arg)
{
	struct sb_worker *w = arg;
	struct smtpbulk *sb = w->sb;
	struct conn_env *env = &w->env;
	struct sb_cqe cqes[CQE_BATCH];

	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	/* The ring is created here: with SINGLE_ISSUER only its creator may submit. */
	int rc = sb_io_open(sb->opts.backend, IO_ENTRIES, &env->be, &env->io, w->desc,
			    sizeof(w->desc));
	if (rc == 0 && (rc = env->be->read_eventfd(env->io, w->wake_fd, &w->wake_val,
						   WAKE_TOKEN)) == 0)
		w->wake_armed = 1;
	env->pooled_recv = rc == 0 && env->be->recv_multi && !sb->opts.plain_recv;
	init_done(w, rc);
	if (rc)
		return NULL;
	sb_log(sb, 5, "worker %u on cpu %d: %s, %s receives, %u connections", w->index, w->cpu,
	       w->desc, env->pooled_recv ? "multishot pooled" : "plain", w->n_conns);

	env->now = sb_now_ns();
	for (unsigned i = 0; i < w->n_conns; i++)
		conn_start(w->conns[i]);

	for (;;) {
		int timeout = -1;
		env->queue_busy = 0;
		env->next_wake = UINT64_MAX;
		env->now = sb_now_ns();
		if (atomic_load(&sb->stopping)) {
			if (stop_phase(w, &timeout))
				break;
		} else {
			if (env->n_parked)
				conn_env_unpark(env);
			take_codes(w);
			feed(w);
		}
		uint64_t next = conn_env_timers(env);
		if (env->next_wake < next)
			next = env->next_wake; /* a breaker's probe may go then */
		if (next != UINT64_MAX && (timeout < 0 || ms_until(next, env->now) < timeout))
			timeout = ms_until(next, env->now);
		arm_wake(w);
		if (!w->wake_armed && (timeout < 0 || timeout > 10))
			timeout = 10; /* nothing could wake us: look again soon */
		if (env->queue_busy)
			timeout = 1; /* an enqueuer was mid-way: its node shows up shortly */
		int n = env->be->wait(env->io, cqes, CQE_BATCH, timeout);
		/* A full batch may leave completions behind: take a few more batches
		 * before the verdicts, without waiting. */
		for (int more = 0; n > 0; more++) {
			env->now = sb_now_ns();
			for (int i = 0; i < n; i++)
				dispatch(w, &cqes[i]);
			if (n < CQE_BATCH || more == 4)
				break;
			n = env->be->wait(env->io, cqes, CQE_BATCH, 0);
		}
		env->now = sb_now_ns();
		if (env->progress) { /* once per turn, not per reply */
			env->progress = 0;
			atomic_store_explicit(&env->wd.last_progress, env->now, memory_order_relaxed);
		}
		take_verdicts(w);
	}
	if (sb->tls_ctx)
		sb_tls_thread_end();
	return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------- */

/* Connection k of host h goes to worker (k + h) % n, so one host's load is shared by
 * every CPU. */
static int mine(const struct smtpbulk *sb, size_t h, unsigned k, unsigned index)
{
	return (k + h) % sb->n_workers == index;
}

static int make_conns(struct sb_worker *w)
{
	struct smtpbulk *sb = w->sb;
	unsigned total = 0;
	for (size_t h = 0; h < sb->n_hosts; h++)
		for (unsigned k = 0; k < sb->hosts[h].connections; k++)
			total += mine(sb, h, k, w->index);
	w->conns = calloc(total ? total : 1, sizeof(*w->conns));
	w->env.wd.slots = calloc(total ? total : 1, sizeof(*w->env.wd.slots));
	w->env.idle = calloc(sb->n_hosts ? sb->n_hosts : 1, sizeof(*w->env.idle));
	w->env.dormant = calloc(sb->n_hosts ? sb->n_hosts : 1, sizeof(*w->env.dormant));
	if (!w->conns || !w->env.wd.slots || !w->env.idle || !w->env.dormant)
		return -ENOMEM;
	w->env.wd.n = total;
	for (size_t h = 0; h < sb->n_hosts; h++) {
		unsigned here = 0;
		for (unsigned k = 0; k < sb->hosts[h].connections; k++) {
			if (!mine(sb, h, k, w->index))
				continue;
			if (conn_new(&w->env, (unsigned)h, k, w->n_conns, &w->conns[w->n_conns]))
				return -ENOMEM;
			w->n_conns++;
			here++;
		}
		if (here) {
			sb->hosts[h].on_worker[w->index] = 1;
			if (!(w->env.idle[h].v = calloc(here, sizeof(*w->env.idle[h].v))) ||
			    !(w->env.dormant[h].v = calloc(here, sizeof(*w->env.dormant[h].v))))
				return -ENOMEM;
			w->env.idle[h].cap = w->env.dormant[h].cap = here;
		}
	}
	return 0;
}

int sb_worker_create(struct smtpbulk *sb, unsigned index, int cpu, struct sb_worker **out)
{
	struct sb_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->sb = sb;
	w->index = index;
	w->cpu = cpu;
	w->env.sb = sb;
	w->env.worker = index;
	pthread_mutex_init(&w->init_lock, NULL);
	pthread_cond_init(&w->init_cond, NULL);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int rc = w->wake_fd < 0 ? -errno : make_conns(w);
	if (rc) {
		sb_worker_destroy(w);
		return rc;
	}
	w->env.wd.wake_fd = w->wake_fd;
	*out = w;
	return 0;
}

int sb_worker_start(struct sb_worker *w)
{
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc)
		return -rc;
	pthread_mutex_lock(&w->init_lock);
	while (!w->init_done)
		pthread_cond_wait(&w->init_cond, &w->init_lock);
	rc = w->init_rc;
	pthread_mutex_unlock(&w->init_lock);
	if (rc) /* it has returned already */
		pthread_join(w->thread, NULL);
	return rc;
}

void sb_worker_join(struct sb_worker *w)
{
	pthread_join(w->thread, NULL);
}

int sb_worker_wake_fd(const struct sb_worker *w)
{
	return w->wake_fd;
}

struct wd_group *sb_worker_watchdog(struct sb_worker *w)
{
	return &w->env.wd;
}

const char *sb_worker_backend(const struct sb_worker *w)
{
	return w->env.be ? w->env.be->name : "none";
}

const char *sb_worker_desc(const struct sb_worker *w)
{
	return w->desc;
}

void sb_worker_destroy(struct sb_worker *w)
{
	if (!w)
		return;
	if (w->env.io)
		w->env.be->destroy(w->env.io);
	for (unsigned i = 0; i < w->n_conns; i++)
		conn_free(w->conns[i]);
	free(w->conns);
	conn_env_free(&w->env, w->sb->n_hosts);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	pthread_cond_destroy(&w->init_cond);
	pthread_mutex_destroy(&w->init_lock);
	free(w);
}
