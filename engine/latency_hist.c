#include "latency_hist.h"

static unsigned bucket_of(uint64_t us)
{
	if (us < 64)
		return (unsigned)us;
	unsigned e = 63u - (unsigned)__builtin_clzll(us); /* floor(log2(us)), >= 6 */
	unsigned sub = (unsigned)(us >> (e - 5)) & (LAT_SUB - 1);
	unsigned b = 64 + (e - 6) * LAT_SUB + sub;
	return b < LAT_BUCKETS ? b : LAT_BUCKETS - 1;
}

/* The smallest value that falls in bucket b. */
static uint64_t bucket_floor(unsigned b)
{
	if (b < 64)
		return b;
	unsigned e = 6 + (b - 64) / LAT_SUB, sub = (b - 64) % LAT_SUB;
	return ((uint64_t)(LAT_SUB + sub)) << (e - 5);
}

void lat_record(struct latency_hist *h, uint64_t us)
{
	atomic_fetch_add_explicit(&h->bucket[bucket_of(us)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	uint64_t m = atomic_load_explicit(&h->max_us, memory_order_relaxed);
	while (us > m && !atomic_compare_exchange_weak(&h->max_us, &m, us))
		;
}

uint64_t lat_quantile(struct latency_hist *h, double q)
{
	uint64_t n = atomic_load(&h->count), seen = 0;
	if (!n)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)n + 0.5);
	if (rank < 1)
		rank = 1;
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		seen += atomic_load_explicit(&h->bucket[b], memory_order_relaxed);
		if (seen >= rank) {
			uint64_t v = bucket_floor(b), max = atomic_load(&h->max_us);
			return v < max ? v : max;
		}
	}
	return atomic_load(&h->max_us);
}

void lat_merge(struct latency_hist *dst, struct latency_hist *src)
{
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		uint64_t n = atomic_load_explicit(&src->bucket[b], memory_order_relaxed);
		if (n)
			atomic_fetch_add_explicit(&dst->bucket[b], n, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&dst->count, atomic_load(&src->count), memory_order_relaxed);
	uint64_t m = atomic_load(&src->max_us);
	if (m > atomic_load(&dst->max_us))
		atomic_store(&dst->max_us, m);
}
