/*
 * A latency histogram: log-linear buckets (32 per power of two, so percentiles are
 * within ~3%), recorded with relaxed atomic adds from any thread, read at any time
 * (a reader sees each bucket's count at some moment: good enough for percentiles).
 * Used by the engine's stats (one per host per worker) and by smtpbulk load.
 */
#ifndef SB_LATENCY_HIST_H
#define SB_LATENCY_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define LAT_SUB 32
#define LAT_BUCKETS (64 + 58 * LAT_SUB)

struct latency_hist {
	_Atomic uint64_t bucket[LAT_BUCKETS];
	_Atomic uint64_t count;
	_Atomic uint64_t max_us;
};

/* Record one latency in microseconds. Any thread. */
void lat_record(struct latency_hist *h, uint64_t us);
/* The q-quantile (0 < q <= 1) in microseconds; 0 when empty. */
uint64_t lat_quantile(struct latency_hist *h, double q);
/* Add src's counts into dst (dst private to the caller, src may be in use). */
void lat_merge(struct latency_hist *dst, struct latency_hist *src);

#endif
