/*
 * What smtpbulk send counts while it runs, for its summary, its progress line and its
 * /metrics. Who touches what: the result callback (any engine worker) adds to
 * by_status, by_category and the latency buckets; the main thread adds to the input
 * counts and input_pos; the progress and metrics threads only read. All relaxed
 * atomics: each value is exact, a set of them read together is not a snapshot.
 */
#ifndef SB_SEND_LIVE_H
#define SB_SEND_LIVE_H

#include <stdatomic.h>
#include <stdint.h>

#include "smtpbulk.h"

#define SEND_STATUSES 6
#define SEND_CATEGORIES 10
/* Latency bucket bounds in milliseconds; one more bucket past the last: +Inf. */
#define SEND_LAT_BOUNDS 14
static const double send_lat_bounds_ms[SEND_LAT_BOUNDS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
};

struct send_live {
	_Atomic uint64_t by_status[SEND_STATUSES];
	_Atomic uint64_t by_category[SEND_CATEGORIES];
	_Atomic uint64_t latency[SEND_LAT_BOUNDS + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t latency_sum_us;
	/* The input, counted by the main thread: */
	_Atomic uint64_t records, submitted, skipped_final, skipped_undelivered, bad, changed,
		not_due;
	_Atomic uint64_t input_pos, input_size; /* a manifest's bytes read, its size (0: unknown) */
};

/* A final result into l (any thread). */
static inline void send_live_result(struct send_live *l, const smtpbulk_result_t *r)
{
	if ((unsigned)r->status < SEND_STATUSES)
		atomic_fetch_add_explicit(&l->by_status[r->status], 1, memory_order_relaxed);
	if ((unsigned)r->category < SEND_CATEGORIES)
		atomic_fetch_add_explicit(&l->by_category[r->category], 1, memory_order_relaxed);
	double ms = (double)r->latency_ns / 1e6;
	int b = 0;
	while (b < SEND_LAT_BOUNDS && ms > send_lat_bounds_ms[b])
		b++;
	atomic_fetch_add_explicit(&l->latency[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->latency_sum_us, r->latency_ns / 1000, memory_order_relaxed);
}

static inline uint64_t send_live_get(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

#endif
