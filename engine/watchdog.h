/*
 * The watchdog: one thread per engine that enforces the timeouts. It never touches a
 * ring, a session or an engine structure: it sees each worker as a group of slots, one
 * per connection, which this header declares and the workers keep.
 *
 * Per connection: the worker stamps since when the connection has been waiting for its
 * server and how long it may wait in its present phase (wd_watch / wd_quiet /
 * wd_moved). Each tick the watchdog marks the slots that waited too long (fired), sets
 * the group's pending flag and wakes the worker through its eventfd; the worker takes
 * the fired slots (wd_take: re-checked, the server may have answered since) and ends
 * those connections.
 *
 * Global: when the engine has work in progress (busy()) and no worker has heard from a
 * server (the groups' last_progress) for global_ms, it declares a global hang: on_global
 * runs (the engine counts, logs and fires the callback) and every group's global flag
 * says 1 = reconnect everything, or 2 = give up (what is in progress or queued ends
 * TIMED_OUT), the latter once retry_global hangs in a row were survived.
 *
 * Threads and ownership
 * | field                           | written by                  | read by          |
 * |---------------------------------|-----------------------------|------------------|
 * | wd_slot.since, .limit_ms        | its worker                  | the watchdog     |
 * | wd_slot.fired                   | the watchdog sets, the worker clears (exchange) |
 * | wd_group.pending, .global       | the watchdog sets, the worker clears (exchange) |
 * | wd_group.last_progress          | its worker                  | the watchdog     |
 * | wd_group.slots, .n, .wake_fd    | set before start, then read-only                 |
 * | sb_watchdog config fields       | set before start, then read-only                 |
 * | sb_watchdog thread state        | the starting/stopping thread; the watchdog       |
 */
#ifndef SB_WATCHDOG_H
#define SB_WATCHDOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct wd_slot {
	_Atomic uint64_t since;     /* waiting for the server since (ns); 0 = not waiting */
	_Atomic uint32_t limit_ms;  /* how long it may wait in its present phase */
	_Atomic uint8_t fired;      /* the watchdog says: waited too long */
};

struct wd_group {
	struct wd_slot *slots;
	unsigned n;
	int wake_fd;                      /* an eventfd: written to wake the worker */
	_Atomic int pending;              /* some slot fired */
	_Atomic int global;               /* 1 reconnect everything, 2 give up */
	_Atomic uint64_t last_progress;   /* a server last answered this worker (ns) */
};

/* ---- the worker's side ------------------------------------------------------------ */

/* The connection waits for its server (from now, unless it already did), limit_ms. */
static inline void wd_watch(struct wd_slot *s, uint64_t now, uint32_t limit_ms)
{
	if (atomic_load_explicit(&s->limit_ms, memory_order_relaxed) != limit_ms)
		atomic_store_explicit(&s->limit_ms, limit_ms, memory_order_relaxed);
	if (!atomic_load_explicit(&s->since, memory_order_relaxed))
		atomic_store_explicit(&s->since, now, memory_order_relaxed);
}

/* It waits for nothing now. */
static inline void wd_quiet(struct wd_slot *s)
{
	if (atomic_load_explicit(&s->since, memory_order_relaxed))
		atomic_store_explicit(&s->since, 0, memory_order_relaxed);
}

/* A new connect: any old verdict is void; the clock runs from now. */
static inline void wd_start(struct wd_slot *s, uint64_t now, uint32_t limit_ms)
{
	atomic_store_explicit(&s->fired, 0, memory_order_relaxed);
	atomic_store_explicit(&s->limit_ms, limit_ms, memory_order_relaxed);
	atomic_store_explicit(&s->since, now, memory_order_relaxed);
}

/* The slot fired and, checked again now, the connection has still waited too long. */
static inline int wd_take(struct wd_slot *s, uint64_t now)
{
	if (!atomic_exchange_explicit(&s->fired, 0, memory_order_acquire))
		return 0;
	uint64_t since = atomic_load_explicit(&s->since, memory_order_relaxed);
	uint64_t limit = (uint64_t)atomic_load_explicit(&s->limit_ms, memory_order_relaxed) *
			 1000000ull;
	return since && now >= since + limit;
}

static inline uint32_t wd_limit_ms(struct wd_slot *s)
{
	return atomic_load_explicit(&s->limit_ms, memory_order_relaxed);
}

/* ---- the watchdog ----------------------------------------------------------------- */

struct sb_watchdog {
	/* Set before sb_watchdog_start(), read-only after. */
	unsigned tick_ms, global_ms;
	unsigned retry_global;            /* global hangs survived (SMTPBULK_UNLIMITED) */
	struct wd_group *const *groups;
	unsigned n_groups;
	/* 1 while messages are in progress (queued or on a connection, not waiting for a
	 * retry): only then is silence a hang. Called on the watchdog thread. */
	int (*busy)(void *arg);
	/* A global hang was declared (give_up: the messages in progress end); called on
	 * the watchdog thread before the workers are told. */
	void (*on_global)(void *arg, int give_up);
	void *arg;
	/* The watchdog thread's own state. */
	pthread_t thread;
	int running;                      /* starting/stopping thread only */
	_Atomic int stop;
	pthread_mutex_t lock;             /* guards only the sleep */
	pthread_cond_t cond;              /* wakes it early to stop */
	unsigned global_count;            /* global hangs since the last give-up */
	uint64_t quiet_since;             /* last time nothing was in progress */
};

int sb_watchdog_start(struct sb_watchdog *wd);
/* Stop and join it; a no-op when it is not running. */
void sb_watchdog_stop(struct sb_watchdog *wd);
/* One tick at now: what the thread does each watchdog_tick_ms (for tests). */
void sb_watchdog_tick(struct sb_watchdog *wd, uint64_t now);

#endif
