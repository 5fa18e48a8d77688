#include "watchdog.h"

#include <errno.h>
#include <time.h>

#include "engine.h"
#include "worker.h"

/* One tick: hung connections, then the global check. */
static void tick(smtpbulk_t *sb, uint64_t now)
{
	for (unsigned i = 0; i < sb->n_workers; i++) {
		struct sb_worker *w = sb->workers[i];
		int fired = 0;
		for (unsigned k = 0; k < w->n_conns; k++) {
			struct sb_conn *c = &w->conns[k];
			uint64_t since = atomic_load_explicit(&c->wd_since, memory_order_relaxed);
			uint64_t limit = (uint64_t)atomic_load_explicit(&c->wd_limit_ms,
									memory_order_relaxed) *
					 1000000ull;
			if (since && now > since && now - since >= limit &&
			    !atomic_load_explicit(&c->wd_fired, memory_order_relaxed)) {
				atomic_store_explicit(&c->wd_fired, 1, memory_order_release);
				fired = 1;
			}
		}
		if (fired) {
			atomic_store_explicit(&w->wd_pending, 1, memory_order_release);
			sb_worker_wake(w);
		}
	}

	/* Global: messages in progress (queued or on a connection, not those waiting
	 * for a 4xx retry) and no reply from any server for global_timeout_ms. */
	uint64_t completed = atomic_load(&sb->completed);
	uint64_t submitted = atomic_load(&sb->submitted);
	uint64_t waiting = atomic_load(&sb->deferred_now);
	uint64_t last = atomic_load(&sb->last_progress_ns);
	if (submitted <= completed + waiting) {
		atomic_store(&sb->last_progress_ns, now); /* nothing to do is not a hang */
		return;
	}
	if (now < last || now - last < (uint64_t)sb->opts.global_timeout_ms * 1000000ull)
		return;
	/* The last verdict is not carried out everywhere yet (a slow worker): judge again
	 * once it is, rather than count a second hang or turn a give-up into a restart. */
	for (unsigned i = 0; i < sb->n_workers; i++)
		if (atomic_load(&sb->workers[i]->wd_global))
			return;
	atomic_store(&sb->last_progress_ns, now); /* the next one is a full period away */
	atomic_fetch_add(&sb->global_hangs, 1);
	int give_up = sb->opts.retry_global_hang != SMTPBULK_UNLIMITED &&
		      ++sb->wd_global_count > sb->opts.retry_global_hang;
	if (give_up)
		sb->wd_global_count = 0; /* later messages get their own chances */
	sb_log(sb, 7, "global hang: no server answered for %u ms; %s", sb->opts.global_timeout_ms,
	       give_up ? "giving up on the messages in progress" : "reconnecting everything");
	smtpbulk_event_t ev = {.kind = SMTPBULK_EV_GLOBAL_HANG, .error = SMTPBULK_ETIMEDOUT};
	sb_fire(sb, sb->cbs.global_hang, &ev, NULL, -1, -1);
	for (unsigned i = 0; i < sb->n_workers; i++) {
		atomic_store(&sb->workers[i]->wd_global, give_up ? 2 : 1);
		sb_worker_wake(sb->workers[i]);
	}
}

static void *watchdog_main(void *arg)
{
	smtpbulk_t *sb = arg;
	struct timespec ts;
	pthread_mutex_lock(&sb->lock);
	while (!atomic_load(&sb->wd_stop)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)sb->opts.watchdog_tick_ms * 1000000ull;
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&sb->wd_cond, &sb->lock, &ts);
		if (atomic_load(&sb->wd_stop))
			break;
		/* The lock guards only the sleep: the tick reads atomics. */
		pthread_mutex_unlock(&sb->lock);
		tick(sb, sb_now_ns());
		pthread_mutex_lock(&sb->lock);
	}
	pthread_mutex_unlock(&sb->lock);
	return NULL;
}

int sb_watchdog_start(smtpbulk_t *sb)
{
	const unsigned *p = sb->phase_ms;
	sb_log(sb, 5,
	       "watchdog every %u ms; timeouts ms: greeting %u, mail %u, rcpt %u, data %u, "
	       "block %u, dot %u; global %u",
	       sb->opts.watchdog_tick_ms, p[SESS_PH_GREETING], p[SESS_PH_MAIL], p[SESS_PH_RCPT],
	       p[SESS_PH_DATA], p[SESS_PH_BLOCK], p[SESS_PH_DOT], sb->opts.global_timeout_ms);
	atomic_store(&sb->wd_stop, 0);
	atomic_store(&sb->last_progress_ns, sb_now_ns());
	int rc = pthread_create(&sb->wd_thread, NULL, watchdog_main, sb);
	if (rc)
		return -rc;
	sb->wd_running = 1;
	return 0;
}

void sb_watchdog_stop(smtpbulk_t *sb)
{
	if (!sb->wd_running)
		return;
	pthread_mutex_lock(&sb->lock);
	atomic_store(&sb->wd_stop, 1);
	pthread_cond_signal(&sb->wd_cond);
	pthread_mutex_unlock(&sb->lock);
	pthread_join(sb->wd_thread, NULL);
	sb->wd_running = 0;
}
