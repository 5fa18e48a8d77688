/*
 * The sink's per-second accounting, shared by all its threads: the --max-rate window
 * (how many MAIL commands the current second has admitted) and the per-second counts of
 * accepted messages. The clock is not read here: callers pass the second, so the
 * decisions are pure functions over memory, unit-tested without sockets or sleeps.
 *
 * Threads: a sink_rate is created before the server threads start and freed after they
 * are joined; in between, any thread may call sink_rate_take / sink_per_second_add
 * (lock-free atomics) and sink_per_second_read.
 */
#ifndef SB_SINK_RATE_H
#define SB_SINK_RATE_H

#include <stddef.h>
#include <stdint.h>

/* The per-second counts cover the first hour (bounded memory); later seconds are
 * counted in the totals only. */
#define SINK_PER_SECOND_MAX 3600

struct sink_rate; /* opaque: its atomics stay in C (the tests are C++) */

/* limit: MAIL commands admitted per second, 0 = no limit. NULL when out of memory. */
struct sink_rate *sink_rate_new(uint32_t limit);
void sink_rate_free(struct sink_rate *r);

/*
 * The window's decision, on its packed word (second << 32 | admitted): may one more MAIL
 * be admitted at second `now`? Returns the second it counts against and sets *next to
 * the new word, or returns -1 (the second is full; *next untouched). A caller whose
 * clock reading is older than the window's second counts in the window's second: a
 * second that has been left never takes more, so none exceeds the limit.
 */
int64_t sink_rate_decide(uint64_t word, uint32_t now, uint32_t limit, uint64_t *next);
/* Admit one MAIL at second `now` (sink_rate_decide in a CAS loop over all threads).
 * Returns the second it counts against, or -1: throttled. Without a limit: now. */
int64_t sink_rate_take(struct sink_rate *r, uint32_t now);

/* One more message accepted whose MAIL counted against second `sec`. */
void sink_per_second_add(struct sink_rate *r, uint32_t sec);
/* Copy the counts of seconds 0 .. the last one with a message (at most cap) to out;
 * returns how many. */
size_t sink_per_second_read(struct sink_rate *r, uint64_t *out, size_t cap);

#endif
