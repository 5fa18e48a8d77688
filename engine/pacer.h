/*
 * Pacing: how fast messages may start, per host and over all hosts — GCRA (the
 * generic cell rate algorithm, a leaky bucket kept as one timestamp). A message may
 * start at `now` when the theoretical arrival time TAT is at most now + (burst - 1) *
 * interval; it then moves TAT to max(TAT, now) + interval. So over any span of time T
 * at most burst + T / interval messages start, however many connections and workers
 * ask, and after a quiet spell no more than `burst` go at once: a window that "opens"
 * releases nothing in a heap.
 *
 * Adaptive slow-down (host pacers): a throttling reply (outcome.h) lowers the rate to
 * factor × the rate the server was taking (what the host delivered in the last second,
 * or the rate in force, the lower), for a cool-off; then it goes back up by a tenth of
 * that rate per tenth of a cool-off, to 90% of the rate at which the server throttled
 * — below the server's limit, where it stays for ten cool-offs without a throttle;
 * after that it climbs on, step by step, to the configured rate (or, when none is
 * set, to twice the old limit, where pacing ends). Throttles during a cool-off do not
 * lower it again: they answer what was in flight, or the server's window (a limit per
 * second, minute or hour) has not opened again yet.
 *
 *   interval 0 (unpaced) or configured ── throttle ──► factor × taken rate, cool-off
 *        ▲                                                │ step up each cooloff/10
 *        └── ten quiet cool-offs at the cap ◄── 90% of the throttled rate (the cap)
 *
 * Pure over the struct and the clock the caller passes (unit-tested alone). Ownership:
 * one per host and one global, shared by every worker; the hot fields are atomics
 * (TAT with compare-and-swap). The adaptive state changes seldom (a throttle, a step):
 * under a spin flag, held for a few instructions, never while anything blocks.
 */
#ifndef SB_PACER_H
#define SB_PACER_H

#include <stdatomic.h>
#include <stdint.h>

struct pacer_adapt_cfg {
	unsigned factor_pct;  /* the rate after a throttle, % of the rate taken; 100: off */
	uint64_t cooloff_ns;  /* how long it stays there before it climbs */
};

struct pacer {
	_Atomic uint64_t tat;        /* GCRA's theoretical arrival time (ns) */
	_Atomic uint64_t interval;   /* ns between messages now; 0: unpaced */
	_Atomic uint64_t next_step;  /* the adaptive state changes at this time; 0: never */
	unsigned burst;              /* read-only after init */
	uint64_t base_interval;      /* the configured one (0: none); read-only */
	/* Adaptive state, under `lock`. */
	atomic_flag lock;
	double ceiling;              /* msgs/s at which the server throttled; 0: none known */
	double rate;                 /* msgs/s in force while slowed (0: not slowed) */
	uint64_t last_throttle;      /* when it slowed down last */
	uint64_t quiet_until;        /* at the cap: the ceiling is forgotten then, and
	                                it climbs on */
	unsigned slowdowns;          /* times it slowed down */
};

/* interval_ns 0: unpaced until a throttle; burst 0 counts as 1. */
void pacer_init(struct pacer *p, uint64_t interval_ns, unsigned burst);

/* The interval for `messages` per `per_ms` milliseconds (0 when messages is 0). */
uint64_t pacer_interval_of(unsigned messages, unsigned per_ms);

static inline int pacer_on(const struct pacer *p)
{
	return atomic_load_explicit(&p->interval, memory_order_relaxed) != 0 ||
	       atomic_load_explicit(&p->next_step, memory_order_relaxed) != 0;
}

/*
 * May a message start at now? 1: yes, and *charged is what it took (give it back with
 * pacer_unadmit() when no message came after all); 0: not before *at.
 * cfg: the adaptive settings for a host pacer, NULL for the global one.
 */
int pacer_admit(struct pacer *p, const struct pacer_adapt_cfg *cfg, uint64_t now,
		uint64_t *charged, uint64_t *at);
void pacer_unadmit(struct pacer *p, uint64_t charged);

/*
 * A throttling reply at now; taken: the messages per second the host delivered over
 * the last second. Returns 1 when the pacer slowed down (say so), 0 when it is still
 * cooling off from the last slow-down, or adaptation is off.
 */
int pacer_throttled(struct pacer *p, const struct pacer_adapt_cfg *cfg, uint64_t now,
		    double taken);

/* Messages per second in force now; 0: unpaced. */
double pacer_rate(const struct pacer *p);

#endif
