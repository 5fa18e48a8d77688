/*
 * A min-heap of timers: what is due first is on top. A worker keeps one for the
 * messages waiting for their 4xx retry and the connections waiting to reconnect, so a
 * loop turn costs O(log n) per timer that fires and O(1) to find the next wake-up,
 * never a scan of every connection.
 *
 * An entry is a time, a pointer and a tag the owner interprets (a kind, a serial that
 * tells a stale entry from a live one: entries are not removed, they expire).
 *
 * Ownership: one thread (the worker that made it).
 */
#ifndef SB_TIMER_HEAP_H
#define SB_TIMER_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct th_ent {
	uint64_t due; /* monotonic ns */
	void *p;
	uint64_t tag;
};

struct timer_heap {
	struct th_ent *v;
	size_t n, cap;
};

/* Add an entry: 0 or -ENOMEM (the heap is unchanged). */
int th_push(struct timer_heap *h, uint64_t due, void *p, uint64_t tag);
/* Remove and return the earliest entry; h must not be empty. */
struct th_ent th_pop(struct timer_heap *h);
/* The earliest entry, or NULL when empty. */
static inline const struct th_ent *th_peek(const struct timer_heap *h)
{
	return h->n ? &h->v[0] : NULL;
}
void th_free(struct timer_heap *h);

#endif
