/*
 * The circuit breaker of one host. A server that lets every connection get ready and
 * then fails every transaction (421 to MAIL, a garbled reply, a connection lost in the
 * middle) would be reconnected to for as long as messages remain, each message riding
 * out its own retries. The breaker counts the transactions that end without a verdict
 * from the server, in a row over all the host's connections; a verdict (accepted, or
 * refused for good) sets the count back to zero.
 *
 *   closed ── `failures` in a row ──► open: no new transaction, no new connection
 *     ▲                                 │ for `cooloff_ms`
 *     │                                 ▼
 *     └──── the probe's verdict ◄── half-open: one connection carries one transaction
 *                                       │ (the probe)
 *            the probe failed ──────────┘ open again; the `trips`-th opening in a row
 *                                         is the end: the host is down
 *
 * A verdict from any connection (a transaction begun before the breaker opened) also
 * closes it: the server works. The functions are pure over the struct and a clock the
 * caller passes, so they are unit-tested alone (tests/unit/test_host_breaker.cpp);
 * the connection layer (conn.c) asks and acts.
 *
 * Ownership: one per host, shared by every worker with connections to it; fields are
 * atomics. The transitions use compare-and-swap, so of two threads that race, one
 * makes each transition. The configuration is read-only after create.
 */
#ifndef SB_HOST_BREAKER_H
#define SB_HOST_BREAKER_H

#include <stdatomic.h>
#include <stdint.h>

#define HB_NEVER 0xffffffffu /* SMTPBULK_UNLIMITED: the breaker never opens / gives up */

struct hb_cfg {
	unsigned failures;   /* in a row before it opens; HB_NEVER: off */
	uint64_t cooloff_ns; /* how long it stays open */
	unsigned trips;      /* openings in a row before the host is down; HB_NEVER */
};

struct host_breaker {
	_Atomic unsigned fails;      /* transactions in a row without a verdict */
	_Atomic uint64_t open_until; /* 0: closed; else no transaction before it (ns),
	                                and from it one probe (half-open) */
	_Atomic unsigned probing;    /* a connection holds the probe */
	_Atomic unsigned trips;      /* openings since the last verdict */
};

enum hb_event {
	HB_NONE,
	HB_OPENED,   /* it opened now */
	HB_REOPENED, /* the probe failed: open again */
	HB_CLOSED,   /* a verdict closed it */
	HB_DOWN,     /* the probe failed for the trips-th time: the host is down */
};

static inline int hb_is_open(const struct host_breaker *b)
{
	return atomic_load_explicit(&b->open_until, memory_order_relaxed) != 0;
}

/* Open (again) for a cool-off from now; the trips-th opening in a row is HB_DOWN. */
static inline enum hb_event hb_trip(struct host_breaker *b, const struct hb_cfg *cfg,
				    uint64_t now, enum hb_event ev)
{
	unsigned t = atomic_fetch_add(&b->trips, 1) + 1;
	if (cfg->trips != HB_NEVER && t >= cfg->trips)
		return HB_DOWN; /* it stays open: nothing is admitted again */
	atomic_store(&b->open_until, now + cfg->cooloff_ns);
	atomic_store(&b->probing, 0);
	return ev;
}

/* A transaction ended with the server's verdict: the server works. On the hot path:
 * two relaxed loads when nothing is amiss. */
static inline enum hb_event hb_verdict(struct host_breaker *b)
{
	if (atomic_load_explicit(&b->fails, memory_order_relaxed))
		atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
	uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_relaxed);
	if (!ou || !atomic_compare_exchange_strong(&b->open_until, &ou, 0))
		return HB_NONE;
	atomic_store(&b->trips, 0);
	atomic_store(&b->probing, 0);
	return HB_CLOSED;
}

/* A transaction ended without a verdict; probe: it was the probe (or the probe's
 * connection failed before it could carry one). */
static inline enum hb_event hb_failure(struct host_breaker *b, const struct hb_cfg *cfg,
				       int probe, uint64_t now)
{
	if (cfg->failures == HB_NEVER)
		return HB_NONE;
	if (hb_is_open(b)) /* transactions begun before it opened count no more */
		return probe ? hb_trip(b, cfg, now, HB_REOPENED) : HB_NONE;
	if (atomic_fetch_add(&b->fails, 1) + 1 < cfg->failures)
		return HB_NONE;
	uint64_t closed = 0;
	if (!atomic_compare_exchange_strong(&b->open_until, &closed, now + cfg->cooloff_ns))
		return HB_NONE; /* another thread opened it */
	atomic_store(&b->fails, 0);
	atomic_store(&b->probing, 0);
	return hb_trip(b, cfg, now, HB_OPENED);
}

/* May a connection begin a transaction, or connect, now? 1: yes, the breaker is
 * closed; or it is half-open and the caller now holds the probe (*probe = 1), which
 * it gives back with hb_verdict, hb_failure(probe 1) or hb_release. 0: not now. */
static inline int hb_admit(struct host_breaker *b, uint64_t now, int *probe)
{
	uint64_t ou = atomic_load_explicit(&b->open_until, memory_order_relaxed);
	if (!ou)
		return 1;
	if (now < ou)
		return 0;
	unsigned free_probe = 0;
	if (!atomic_compare_exchange_strong(&b->probing, &free_probe, 1))
		return 0;
	*probe = 1;
	return 1;
}

/* The probe's holder had nothing to probe with after all: another may. */
static inline void hb_release(struct host_breaker *b)
{
	atomic_store(&b->probing, 0);
}

/* When the breaker lets a probe through (0: it is closed). */
static inline uint64_t hb_open_until(const struct host_breaker *b)
{
	return atomic_load_explicit(&b->open_until, memory_order_relaxed);
}

#endif
