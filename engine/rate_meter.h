/*
 * What a host delivered over the last second, for the adaptive slow-down (pacer.h):
 * the rate the server was taking when it said "slow down". One meter per host and
 * worker, so the hot path writes only its own cache line: slots of 2^27 ns (134 ms),
 * eight of them (1.07 s), each stamped with its tick so a stale one reads as empty.
 *
 * Ownership: the worker of the meter writes (load-and-store, no locked add); any
 * worker of the host reads, seldom (at a throttling reply), a value that may be a
 * message or two behind: good enough for a rate.
 */
#ifndef SB_RATE_METER_H
#define SB_RATE_METER_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define RM_SHIFT 27
#define RM_SLOTS 8

struct rate_meter {
	alignas(64) _Atomic uint64_t tick[RM_SLOTS];
	_Atomic uint32_t count[RM_SLOTS];
};

static inline void rm_note(struct rate_meter *m, uint64_t now)
{
	uint64_t t = now >> RM_SHIFT;
	unsigned i = (unsigned)(t % RM_SLOTS);
	uint32_t n = 0;
	if (atomic_load_explicit(&m->tick[i], memory_order_relaxed) == t)
		n = atomic_load_explicit(&m->count[i], memory_order_relaxed);
	else
		atomic_store_explicit(&m->tick[i], t, memory_order_relaxed);
	atomic_store_explicit(&m->count[i], n + 1, memory_order_relaxed);
}

/* Messages per second over the last RM_SLOTS slots of n meters. */
static inline double rm_rate(const struct rate_meter *m, unsigned n, uint64_t now)
{
	uint64_t t = now >> RM_SHIFT, sum = 0;
	for (unsigned w = 0; w < n; w++)
		for (unsigned i = 0; i < RM_SLOTS; i++) {
			uint64_t at = atomic_load_explicit(&m[w].tick[i], memory_order_relaxed);
			if (at <= t && t - at < RM_SLOTS)
				sum += atomic_load_explicit(&m[w].count[i], memory_order_relaxed);
		}
	/* Seven whole slots and the part of this one that has passed. */
	double span = (double)((RM_SLOTS - 1) << RM_SHIFT) +
		      (double)(now & ((1ull << RM_SHIFT) - 1));
	return (double)sum * 1e9 / span;
}

#endif
