/* The engine's shared state at work: queues, result delivery, wake-ups, logging (see
 * engine.h). */
#include "engine.h"

#include "outcome.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "debug_log.h"

static void log_v(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt,
		  va_list ap) __attribute__((format(printf, 5, 0)));

static void log_v(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt,
		  va_list ap)
{
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	if (sb->opts.on_log) {
		if (host >= 0 && (size_t)host < sb->n_hosts) {
			char full[1100];
			snprintf(full, sizeof(full), "[%s#%d] %s", sb->host_names[host], conn, line);
			sb->opts.on_log(level, full, sb->opts.log_arg);
		} else {
			sb->opts.on_log(level, line, sb->opts.log_arg);
		}
	} else if (sb->logger) {
		sb_logger_line(sb->logger, level, host, conn, line);
	} else {
		fprintf(stderr, "smtpbulk[%d]: %s\n", level, line);
	}
}

void sb_log(const smtpbulk_t *sb, int level, const char *fmt, ...)
{
	va_list ap;
	if (sb->opts.debug < level)
		return;
	va_start(ap, fmt);
	log_v(sb, level, -1, -1, fmt, ap);
	va_end(ap);
}

void sb_log_conn(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt, ...)
{
	va_list ap;
	if (sb->opts.debug < level)
		return;
	va_start(ap, fmt);
	log_v(sb, level, host, conn, fmt, ap);
	va_end(ap);
}

int sb_host_down_error(const struct sb_host *h)
{
	int err = atomic_load(&h->last_error);
	switch (err) {
	case SMTPBULK_ETLS:
	case SMTPBULK_ECERT:
	case SMTPBULK_ENOSTARTTLS:
	case SMTPBULK_EAUTH:
	case SMTPBULK_EAUTHTEMP:
	case SMTPBULK_EAUTHMECH:
	case SMTPBULK_EAUTHPLAIN:
	case SMTPBULK_EBREAKER:
	case SMTPBULK_ESOURCE:
	case SMTPBULK_ENOLMTP:
	case SMTPBULK_ETOKEN:
		return err;
	default:
		return SMTPBULK_EHOSTDOWN;
	}
}

int sb_all_down_error(const smtpbulk_t *sb)
{
	int err = sb->n_hosts ? sb_host_down_error(&sb->hosts[0]) : SMTPBULK_EHOSTDOWN;
	for (size_t i = 1; i < sb->n_hosts; i++)
		if (sb_host_down_error(&sb->hosts[i]) != err)
			return SMTPBULK_EHOSTDOWN;
	return err;
}

/* ---- wake-ups --------------------------------------------------------------------- */

static void wake_fd(int fd)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already huge: the worker is awake anyway. */
	ssize_t r = write(fd, &one, sizeof(one));
	(void)r;
}

void sb_engine_wake(const smtpbulk_t *sb, int host)
{
	for (unsigned i = 0; i < sb->n_workers; i++)
		if (host < 0 || sb->hosts[host].on_worker[i])
			wake_fd(sb->wake_fds[i]);
}

void sb_engine_parked(smtpbulk_t *sb, struct sb_host *h, int delta)
{
	if (delta > 0) {
		atomic_fetch_add(&sb->parked, 1);
		unsigned parked = atomic_fetch_add(&h->parked, 1) + 1;
		if (parked >= atomic_load(&h->alive))
			sb_engine_wake(sb, (int)(h - sb->hosts));
	} else {
		atomic_fetch_sub(&h->parked, 1);
		atomic_fetch_sub(&sb->parked, 1);
	}
}

void sb_engine_conn_dead(smtpbulk_t *sb, struct sb_host *h, int err)
{
	atomic_store(&h->last_error, err);
	unsigned alive = atomic_fetch_sub(&h->alive, 1) - 1;
	if (alive == 0) {
		atomic_fetch_sub(&sb->hosts_alive, 1);
		/* Wake every worker: the host's queued messages (and, when no host is left,
		 * the shared queue's) must now end FAILED instead of waiting. */
		sb_engine_wake(sb, -1);
	} else if (atomic_load(&h->parked) >= alive) {
		sb_engine_wake(sb, (int)(h - sb->hosts)); /* the rest are parked: the batch is over */
	}
}

/* ---- queues ----------------------------------------------------------------------- */

static void note_queued(smtpbulk_t *sb, uint64_t q)
{
	uint64_t max = atomic_load_explicit(&sb->queued_max, memory_order_relaxed);
	while (q > max && !atomic_compare_exchange_weak(&sb->queued_max, &max, q))
		;
}

int sb_engine_enqueue_quiet(smtpbulk_t *sb, struct sb_msg *msg, int *host_out)
{
	/* Read everything needed first: once enqueued, a worker may finish the message
	 * and free it before sbq_enqueue() even returns. */
	int host = msg->host;
	struct sbq *q = host >= 0 ? sb->hosts[host].queue : sb->any_queue;
	/* Only the enqueue that makes a queue non-empty wakes: a worker that is awake
	 * will see the rest before it sleeps again. */
	_Atomic uint64_t *epoch = host >= 0 ? &sb->hosts[host].work_epoch : &sb->any_epoch;
	*host_out = host;
	if (sbq_enqueue(q, &msg->node)) {
		atomic_fetch_add(epoch, 1);
		return 1;
	}
	return 0;
}

void sb_engine_enqueue(smtpbulk_t *sb, struct sb_msg *msg)
{
	int host;
	if (sb_engine_enqueue_quiet(sb, msg, &host))
		sb_engine_wake(sb, host);
}

int sb_engine_reserve(smtpbulk_t *sb, unsigned flags)
{
	size_t bound = sb->opts.queue_bound;
	uint64_t q = atomic_load(&sb->queued);
	if (!bound) {
		note_queued(sb, atomic_fetch_add(&sb->queued, 1) + 1);
		return 0;
	}
	for (;;) {
		while (q < bound) {
			if (atomic_compare_exchange_weak(&sb->queued, &q, q + 1)) {
				note_queued(sb, q + 1);
				return 0;
			}
		}
		if (flags & SMTPBULK_SUBMIT_NONBLOCK)
			return -EAGAIN;
		if (atomic_load(&sb->stopping))
			return SMTPBULK_ESTOPPED;
		pthread_mutex_lock(&sb->lock);
		atomic_fetch_add(&sb->room_waiters, 1);
		if (atomic_load(&sb->queued) >= bound && !atomic_load(&sb->stopping)) {
			/* Re-check now and then, whatever happens. */
			struct timespec ts = sb_deadline_in(100 * SB_NS_PER_MS);
			pthread_cond_timedwait(&sb->room, &sb->lock, &ts);
		}
		atomic_fetch_sub(&sb->room_waiters, 1);
		pthread_mutex_unlock(&sb->lock);
		q = atomic_load(&sb->queued);
	}
}

void sb_engine_requeue(smtpbulk_t *sb, struct sb_msg *msg)
{
	/* Never blocks: a worker must not wait for room it is the one to make. */
	atomic_fetch_add(&sb->requeued, 1);
	note_queued(sb, atomic_fetch_add(&sb->queued, 1) + 1);
	sb_engine_enqueue(sb, msg);
}

void sb_engine_dequeued(smtpbulk_t *sb, uint64_t n)
{
	uint64_t left = atomic_fetch_sub(&sb->queued, n) - n;
	size_t bound = sb->opts.queue_bound;
	/* Wake blocked producers only once a quarter of the bound is free: waking them
	 * for every message made producer and worker trade a futex call per message. */
	if (atomic_load(&sb->room_waiters) && left <= bound - bound / 4) {
		pthread_mutex_lock(&sb->lock);
		pthread_cond_broadcast(&sb->room);
		pthread_mutex_unlock(&sb->lock);
	}
	/* The queue ran empty: the end of the batch for parked connections, wherever
	 * they are. A connection that parks after this reads queued itself. */
	if (left == 0 && atomic_load(&sb->parked)) {
		atomic_fetch_add(&sb->batch_epoch, 1);
		sb_engine_wake(sb, -1);
	}
}

int sb_engine_fail_queue(smtpbulk_t *sb, struct sbq *q, smtpbulk_status_t st, int err)
{
	struct sbq_node *nodes[64];
	int busy = 0;
	size_t n;
	while ((n = sbq_dequeue(q, nodes, 64, &busy)) > 0) {
		sb_engine_dequeued(sb, n);
		for (size_t i = 0; i < n; i++)
			sb_engine_complete(sb, sb_msg_of_node(nodes[i]), st, err, NULL, -1, -1, NULL);
	}
	return busy;
}

/* ---- results ---------------------------------------------------------------------- */

int sb_fire(const smtpbulk_t *sb, smtpbulk_event_cb cb, smtpbulk_event_t *ev,
	    const struct sb_host *host, int host_idx, int conn_idx)
{
	if (!cb)
		return SMTPBULK_CB_DEFAULT;
	ev->host = host ? host->name : NULL;
	ev->port = host ? host->port : 0;
	ev->host_index = host ? host_idx : -1;
	ev->connection = host ? conn_idx : -1;
	return cb(ev, sb->cbs.arg);
}

int sb_engine_complete(smtpbulk_t *sb, struct sb_msg *msg, smtpbulk_status_t st, int err,
		       const struct sb_host *host, int host_idx, int conn_idx,
		       struct latency_hist *lat)
{
	int code = SMTPBULK_CB_DEFAULT;
	/* Recipients an earlier transaction delivered make a later failure PARTIAL. */
	st = sb_msg_merged_status(msg, st);
	msg->res.host = host ? host->name : NULL;
	msg->res.port = host ? host->port : 0;
	msg->res.host_index = host_idx;
	msg->res.connection = conn_idx;
	uint64_t now = sb_now_ns(); /* one clock read serves the result and the stats */
	msg->res.latency_ns = now > msg->start_ns ? now - msg->start_ns : 0;
	/* A worker's own histogram for its host; the shared one only for results that
	 * reached no connection (rare: no line shared on the hot path). */
	lat_record(lat ? lat : sb->lat_other, msg->res.latency_ns / 1000);
	sb_msg_finish(msg, st, err);
	msg->res.category = sb_category_of(st, err, msg->res.reply.code, msg->res.reply.enhanced,
					   msg->res.reply.text,
					   (const char *const *)sb->throttle_patterns);
	if (st == SMTPBULK_DELIVERED)
		atomic_fetch_add_explicit(&sb->delivered, 1, memory_order_relaxed);
	else if (st == SMTPBULK_TIMED_OUT)
		atomic_fetch_add_explicit(&sb->timed_out, 1, memory_order_relaxed);
	sb_log_conn(sb, st == SMTPBULK_DELIVERED ? 8 : 7, host ? host_idx : -1, conn_idx,
		    "message %llu: %s %d %s", (unsigned long long)msg->id,
		    st == SMTPBULK_DELIVERED ? "delivered" : smtpbulk_strerror(err),
		    msg->res.reply.code, msg->res.reply.text);

	int pass = st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL;
	smtpbulk_event_cb cb = pass ? sb->cbs.pass : sb->cbs.fail;
	if (cb) {
		smtpbulk_event_t ev = {
			.kind = pass ? SMTPBULK_EV_PASS : SMTPBULK_EV_FAIL,
			.error = err,
			.message = &msg->res,
			.message_id = msg->id,
			.user_data = msg->res.user_data,
		};
		code = sb_fire(sb, cb, &ev, host, host_idx, conn_idx);
	}

	if (sb->evq) {
		msg->pool = NULL; /* the caller frees it, as a polled result */
		if (sb_evq_push_result(sb->evq, &msg->res) != 0) {
			sbq_enqueue(sb->done_queue, &msg->node); /* late, not lost */
			sb_evq_spilled(sb->evq, +1);
		}
	} else if (sb->opts.on_result) {
		sb->opts.on_result(&msg->res, sb->opts.result_arg);
		sb_msg_free(msg);
	} else if (sb->opts.discard_results) {
		sb_msg_free(msg);
	} else {
		/* The caller frees it, maybe after smtpbulk_destroy(): not into the pool. */
		msg->pool = NULL;
		sbq_enqueue(sb->done_queue, &msg->node);
	}
	/* Counted after delivery, so drain returns only when every result is out. A
	 * drainer is woken by the last result only, not by each one. */
	uint64_t done = atomic_fetch_add(&sb->completed, 1) + 1;
	if (atomic_load(&sb->poll_waiters) ||
	    (atomic_load(&sb->drain_waiters) && done >= atomic_load(&sb->submitted))) {
		pthread_mutex_lock(&sb->lock);
		pthread_cond_broadcast(&sb->done);
		pthread_mutex_unlock(&sb->lock);
	}
	if (sb->cbs.complete && done == atomic_load(&sb->submitted)) {
		smtpbulk_event_t ev = {.kind = SMTPBULK_EV_COMPLETE};
		sb_fire(sb, sb->cbs.complete, &ev, NULL, -1, -1);
	}
	return code;
}

/* ---- one-off commands (smtpbulk_command()) ----------------------------------------- */

int sb_engine_host_named(const smtpbulk_t *sb, const char *name)
{
	if (!sb->n_hosts)
		return SMTPBULK_ENOHOST;
	if (!name)
		return 0;
	/* "name:port" first: two hosts may share a name on different ports. */
	for (size_t i = 0; i < sb->n_hosts; i++) {
		char hp[300];
		snprintf(hp, sizeof(hp), "%s:%u", sb->hosts[i].name, (unsigned)sb->hosts[i].port);
		if (!strcmp(hp, name))
			return (int)i;
	}
	for (size_t i = 0; i < sb->n_hosts; i++)
		if (!strcmp(sb->hosts[i].name, name))
			return (int)i;
	return SMTPBULK_ENOHOST;
}

int sb_engine_command(smtpbulk_t *sb, int h, const char *line, size_t len, int timeout_ms,
		      smtpbulk_command_reply_t **out)
{
	struct sb_cmd_req *req;
	struct sb_host *host = &sb->hosts[h];
	*out = NULL;
	if (!sb->started || atomic_load(&sb->stopping))
		return SMTPBULK_ESTOPPED;
	if (atomic_load(&host->alive) == 0)
		return sb_host_down_error(host);
	int rc = sb_cmd_req_new(line, len, sb_now_ns() + (uint64_t)timeout_ms * SB_NS_PER_MS,
				&req);
	if (rc)
		return rc;
	if ((rc = sb_cmd_list_push(&host->cmds, req)) != 0) {
		sb_cmd_req_put(req);
		sb_cmd_req_put(req);
		return rc;
	}
	sb_log(sb, 7, "command %.*s for %s: queued for a ready connection",
	       (int)(len > 2 ? len - 2 : 0), line, host->label);
	/* Closed connections waiting for work (dormant) count it as work: they connect. */
	atomic_fetch_add(&host->work_epoch, 1);
	sb_engine_wake(sb, h);
	return sb_cmd_req_wait(req, out);
}
