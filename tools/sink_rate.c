#include "sink_rate.h"

#include <stdatomic.h>
#include <stdlib.h>

struct sink_rate {
	uint32_t limit;               /* read-only */
	_Atomic uint64_t window;      /* second << 32 | MAIL commands admitted in it */
	_Atomic uint64_t per_second[SINK_PER_SECOND_MAX];
};

struct sink_rate *sink_rate_new(uint32_t limit)
{
	struct sink_rate *r = calloc(1, sizeof(*r));
	if (r)
		r->limit = limit;
	return r;
}

void sink_rate_free(struct sink_rate *r)
{
	free(r);
}

int64_t sink_rate_decide(uint64_t word, uint32_t now, uint32_t limit, uint64_t *next)
{
	uint32_t sec = (uint32_t)(word >> 32), n = (uint32_t)word;
	if (now > sec) { /* a new second: its first MAIL */
		if (limit == 0)
			return -1;
		*next = (uint64_t)now << 32 | 1;
		return now;
	}
	if (n >= limit)
		return -1;
	*next = (uint64_t)sec << 32 | (n + 1);
	return sec;
}

int64_t sink_rate_take(struct sink_rate *r, uint32_t now)
{
	if (!r->limit)
		return now;
	uint64_t w = atomic_load_explicit(&r->window, memory_order_relaxed), next;
	for (;;) {
		int64_t sec = sink_rate_decide(w, now, r->limit, &next);
		if (sec < 0)
			return -1;
		/* Relaxed: the word is the only thing shared; on failure w is reloaded. */
		if (atomic_compare_exchange_weak_explicit(&r->window, &w, next,
							  memory_order_relaxed, memory_order_relaxed))
			return sec;
	}
}

void sink_per_second_add(struct sink_rate *r, uint32_t sec)
{
	if (sec < SINK_PER_SECOND_MAX)
		atomic_fetch_add_explicit(&r->per_second[sec], 1, memory_order_relaxed);
}

size_t sink_per_second_read(struct sink_rate *r, uint64_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < SINK_PER_SECOND_MAX && i < cap; i++) {
		out[i] = atomic_load_explicit(&r->per_second[i], memory_order_relaxed);
		if (out[i])
			n = i + 1;
	}
	return n;
}
