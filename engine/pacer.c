/* Pacing by GCRA, and the adaptive slow-down (pacer.h). */
#include "pacer.h"

#include "clock.h"

/* The worker's timers have millisecond resolution: a message may start up to this much
 * before its time, so a connection woken a little late is not held back a whole
 * interval (at 100k/s that would cap each connection at 1k/s). Over any span T, at
 * most burst + (T + PACER_SLACK_NS) / interval messages start. */
#define PACER_SLACK_NS SB_NS_PER_MS
/* msgs/s: the slow-down goes no lower (nor below a configured rate's factor share).
 * A server that throttles everything would otherwise be halved towards nothing, and
 * the messages waiting for it, each with its retries to ride out, would take days to
 * end; a limit below one a second is one to configure (host_rate). */
#define PACER_MIN_RATE 1.0

void pacer_init(struct pacer *p, uint64_t interval_ns, unsigned burst)
{
	atomic_init(&p->tat, 0);
	atomic_init(&p->interval, interval_ns);
	atomic_init(&p->next_step, 0);
	p->burst = burst ? burst : 1;
	p->base_interval = interval_ns;
	atomic_flag_clear(&p->lock);
	p->ceiling = p->rate = 0;
	p->last_throttle = p->quiet_until = 0;
	p->slowdowns = 0;
}

uint64_t pacer_interval_of(unsigned messages, unsigned per_ms)
{
	if (!messages)
		return 0;
	uint64_t iv = (uint64_t)(per_ms ? per_ms : 1000) * SB_NS_PER_MS / messages;
	return iv ? iv : 1;
}

static void lock(struct pacer *p)
{
	while (atomic_flag_test_and_set_explicit(&p->lock, memory_order_acquire))
		; /* held for a few instructions by a thread that never blocks under it */
}

static void unlock(struct pacer *p)
{
	atomic_flag_clear_explicit(&p->lock, memory_order_release);
}

static double base_rate(const struct pacer *p)
{
	return p->base_interval ? 1e9 / (double)p->base_interval : 0;
}

/* Back to the configured pace; the adaptive state is over. */
static void settle(struct pacer *p)
{
	p->rate = 0;
	p->ceiling = 0;
	p->quiet_until = 0;
	atomic_store(&p->interval, p->base_interval);
	atomic_store(&p->next_step, 0);
}

/* Under the lock: the cool-off (or a step) is over: climb. */
static void step(struct pacer *p, const struct pacer_adapt_cfg *cfg, uint64_t now)
{
	uint64_t tenth = cfg->cooloff_ns / 10 ? cfg->cooloff_ns / 10 : 1;
	double target = base_rate(p); /* 0: unlimited */
	double cap = p->ceiling * 0.9;
	uint64_t next = now + tenth;
	if (p->quiet_until && now >= p->quiet_until)
		cap = 0; /* quiet long enough: the server's old limit is forgotten */
	p->rate += p->ceiling / 10;
	if (cap == 0 && target == 0 && p->rate >= 2 * p->ceiling) {
		settle(p); /* well past what the server took: unpaced again */
		return;
	}
	if (target && p->rate >= target && (cap == 0 || target <= cap)) {
		settle(p);
		return;
	}
	if (cap && p->rate >= cap) {
		p->rate = cap;
		if (!p->quiet_until)
			p->quiet_until = now + 10 * cfg->cooloff_ns;
		next = p->quiet_until;
	}
	atomic_store(&p->interval, (uint64_t)(1e9 / p->rate));
	atomic_store(&p->next_step, next);
}

int pacer_admit(struct pacer *p, const struct pacer_adapt_cfg *cfg, uint64_t now,
		uint64_t *charged, uint64_t *at)
{
	uint64_t ns = atomic_load_explicit(&p->next_step, memory_order_relaxed);
	if (ns && now >= ns && cfg && !atomic_flag_test_and_set_explicit(&p->lock,
									memory_order_acquire)) {
		ns = atomic_load(&p->next_step); /* another thread may have stepped */
		if (ns && now >= ns)
			step(p, cfg, now);
		unlock(p);
	}
	uint64_t iv = atomic_load_explicit(&p->interval, memory_order_relaxed);
	*charged = 0;
	if (!iv)
		return 1;
	uint64_t tol = (uint64_t)(p->burst - 1) * iv;
	if (tol < PACER_SLACK_NS)
		tol = PACER_SLACK_NS;
	uint64_t t = atomic_load_explicit(&p->tat, memory_order_relaxed);
	for (;;) {
		uint64_t from = t > now ? t : now;
		if (from - now > tol) {
			*at = from - tol;
			return 0;
		}
		if (atomic_compare_exchange_weak_explicit(&p->tat, &t, from + iv,
							  memory_order_relaxed,
							  memory_order_relaxed)) {
			*charged = iv;
			return 1;
		}
	}
}

void pacer_unadmit(struct pacer *p, uint64_t charged)
{
	/* Exact however others moved TAT since: each admission added its own interval. */
	if (charged)
		atomic_fetch_sub_explicit(&p->tat, charged, memory_order_relaxed);
}

int pacer_throttled(struct pacer *p, const struct pacer_adapt_cfg *cfg, uint64_t now,
		    double taken)
{
	if (!cfg || cfg->factor_pct >= 100)
		return 0;
	lock(p);
	if (p->slowdowns && now - p->last_throttle < cfg->cooloff_ns) {
		/* Still cooling off: these are the replies of what was in flight when it
		 * slowed down, or the server's window has not opened again yet (a limit per
		 * second, minute or hour refuses everything until then). Halving again for
		 * each would collapse the rate to nothing. */
		unlock(p);
		return 0;
	}
	double cur = p->rate ? p->rate : base_rate(p); /* 0: unpaced */
	double base = taken > 0 && (cur == 0 || taken < cur) ? taken : cur;
	if (base <= 0)
		base = 1; /* nothing delivered, nothing configured: start from one a second */
	p->ceiling = base;
	double floor = PACER_MIN_RATE;
	if (p->base_interval && base_rate(p) * cfg->factor_pct / 100 < floor)
		floor = base_rate(p) * cfg->factor_pct / 100;
	p->rate = base * cfg->factor_pct / 100;
	if (p->rate < floor)
		p->rate = floor;
	p->quiet_until = 0;
	p->last_throttle = now;
	p->slowdowns++;
	atomic_store(&p->interval, (uint64_t)(1e9 / p->rate));
	atomic_store(&p->next_step, now + (cfg->cooloff_ns ? cfg->cooloff_ns : 1));
	unlock(p);
	return 1;
}

double pacer_rate(const struct pacer *p)
{
	uint64_t iv = atomic_load_explicit(&p->interval, memory_order_relaxed);
	return iv ? 1e9 / (double)iv : 0;
}
