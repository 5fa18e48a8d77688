/*
 * The engine's one clock: CLOCK_MONOTONIC for timers, deadlines and every timed wait on
 * a condition variable, so nothing jumps when the wall clock is set.
 */
#ifndef SB_CLOCK_H
#define SB_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define SB_NS_PER_MS 1000000ull
#define SB_NS_PER_S 1000000000ull

static inline uint64_t sb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SB_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* The instant ns from now, for pthread_cond_timedwait on a condition made by
 * sb_cond_init(). */
static inline struct timespec sb_deadline_in(uint64_t ns)
{
	uint64_t at = sb_now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(at / SB_NS_PER_S),
			      .tv_nsec = (long)(at % SB_NS_PER_S)};
	return ts;
}

/* A condition variable whose timed waits run on CLOCK_MONOTONIC. 0 or -errno. */
static inline int sb_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc)
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
	return -rc;
}

#endif
