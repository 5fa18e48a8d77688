#include "watchdog.h"

#include <errno.h>
#include <unistd.h>

#include "clock.h"
#include "smtpbulk.h"

static void wake(const struct wd_group *g)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already huge: the worker is awake anyway. */
	ssize_t r = write(g->wake_fd, &one, sizeof(one));
	(void)r;
}

/* Mark the slots that waited too long; wake the workers that have one. */
static void check_slots(struct sb_watchdog *wd, uint64_t now)
{
	for (unsigned i = 0; i < wd->n_groups; i++) {
		struct wd_group *g = wd->groups[i];
		int fired = 0;
		for (unsigned k = 0; k < g->n; k++) {
			struct wd_slot *s = &g->slots[k];
			uint64_t since = atomic_load_explicit(&s->since, memory_order_relaxed);
			uint64_t limit = (uint64_t)atomic_load_explicit(&s->limit_ms,
									memory_order_relaxed) *
					 SB_NS_PER_MS;
			if (since && now > since && now - since >= limit &&
			    !atomic_load_explicit(&s->fired, memory_order_relaxed)) {
				atomic_store_explicit(&s->fired, 1, memory_order_release);
				fired = 1;
			}
		}
		if (fired) {
			atomic_store_explicit(&g->pending, 1, memory_order_release);
			wake(g);
		}
	}
}

/* No server answered any worker for global_ms while work is in progress. */
static void check_global(struct sb_watchdog *wd, uint64_t now)
{
	if (!wd->busy(wd->arg)) {
		wd->quiet_since = now; /* nothing to do is not a hang */
		return;
	}
	uint64_t last = wd->quiet_since;
	for (unsigned i = 0; i < wd->n_groups; i++) {
		uint64_t p = atomic_load_explicit(&wd->groups[i]->last_progress,
						  memory_order_relaxed);
		if (p > last)
			last = p;
	}
	if (now < last || now - last < (uint64_t)wd->global_ms * SB_NS_PER_MS)
		return;
	/* The last verdict is not carried out everywhere yet (a slow worker): judge again
	 * once it is, rather than count a second hang or turn a give-up into a restart. */
	for (unsigned i = 0; i < wd->n_groups; i++)
		if (atomic_load(&wd->groups[i]->global))
			return;
	wd->quiet_since = now; /* the next one is a full period away */
	int give_up = wd->retry_global != SMTPBULK_UNLIMITED &&
		      ++wd->global_count > wd->retry_global;
	if (give_up)
		wd->global_count = 0; /* later messages get their own chances */
	wd->on_global(wd->arg, give_up);
	for (unsigned i = 0; i < wd->n_groups; i++) {
		atomic_store(&wd->groups[i]->global, give_up ? 2 : 1);
		wake(wd->groups[i]);
	}
}

void sb_watchdog_tick(struct sb_watchdog *wd, uint64_t now)
{
	check_slots(wd, now);
	check_global(wd, now);
}

static void *watchdog_main(void *arg)
{
	struct sb_watchdog *wd = arg;
	pthread_mutex_lock(&wd->lock);
	while (!atomic_load(&wd->stop)) {
		struct timespec ts = sb_deadline_in((uint64_t)wd->tick_ms * SB_NS_PER_MS);
		pthread_cond_timedwait(&wd->cond, &wd->lock, &ts);
		if (atomic_load(&wd->stop))
			break;
		/* The lock guards only the sleep: the tick reads atomics. */
		pthread_mutex_unlock(&wd->lock);
		sb_watchdog_tick(wd, sb_now_ns());
		pthread_mutex_lock(&wd->lock);
	}
	pthread_mutex_unlock(&wd->lock);
	return NULL;
}

int sb_watchdog_start(struct sb_watchdog *wd)
{
	int rc;
	atomic_store(&wd->stop, 0);
	wd->quiet_since = sb_now_ns();
	for (unsigned i = 0; i < wd->n_groups; i++)
		atomic_store(&wd->groups[i]->last_progress, wd->quiet_since);
	if ((rc = pthread_mutex_init(&wd->lock, NULL)) != 0)
		return -rc;
	if ((rc = sb_cond_init(&wd->cond)) != 0) {
		pthread_mutex_destroy(&wd->lock);
		return rc;
	}
	if ((rc = pthread_create(&wd->thread, NULL, watchdog_main, wd)) != 0) {
		pthread_cond_destroy(&wd->cond);
		pthread_mutex_destroy(&wd->lock);
		return -rc;
	}
	wd->running = 1;
	return 0;
}

void sb_watchdog_stop(struct sb_watchdog *wd)
{
	if (!wd->running)
		return;
	pthread_mutex_lock(&wd->lock);
	atomic_store(&wd->stop, 1);
	pthread_cond_signal(&wd->cond);
	pthread_mutex_unlock(&wd->lock);
	pthread_join(wd->thread, NULL);
	pthread_cond_destroy(&wd->cond);
	pthread_mutex_destroy(&wd->lock);
	wd->running = 0;
}
