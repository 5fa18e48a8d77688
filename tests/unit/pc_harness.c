#include "pc_harness.h"

#include <pthread.h>
#include <stdlib.h>

#include "clock.h"
#include "pacer.h"
#include "rate_meter.h"

struct pch {
	struct pacer p;
	struct pacer_adapt_cfg cfg;
	_Atomic uint64_t count, first, last;
	unsigned ms;
};

struct pch *pch_new(uint64_t interval_ns, unsigned burst, unsigned factor_pct,
		    uint64_t cooloff_ns)
{
	struct pch *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	pacer_init(&h->p, interval_ns, burst);
	h->cfg = (struct pacer_adapt_cfg){.factor_pct = factor_pct, .cooloff_ns = cooloff_ns};
	return h;
}

void pch_free(struct pch *p)
{
	free(p);
}

int pch_admit(struct pch *p, uint64_t now, uint64_t *charged, uint64_t *at)
{
	return pacer_admit(&p->p, &p->cfg, now, charged, at);
}

void pch_unadmit(struct pch *p, uint64_t charged)
{
	pacer_unadmit(&p->p, charged);
}

int pch_throttled(struct pch *p, uint64_t now, double taken)
{
	return pacer_throttled(&p->p, &p->cfg, now, taken);
}

double pch_rate(struct pch *p)
{
	return pacer_rate(&p->p);
}

uint64_t pch_interval_of(unsigned messages, unsigned per_ms)
{
	return pacer_interval_of(messages, per_ms);
}

static void *hammer(void *arg)
{
	struct pch *h = arg;
	uint64_t start = sb_now_ns(), now, charged, at;
	while ((now = sb_now_ns()) - start < (uint64_t)h->ms * SB_NS_PER_MS) {
		if (pacer_admit(&h->p, &h->cfg, now, &charged, &at)) {
			uint64_t f = atomic_load(&h->first);
			while ((f == 0 || f > now) &&
			       !atomic_compare_exchange_weak(&h->first, &f, now))
				;
			atomic_fetch_add(&h->count, 1);
		}
		uint64_t l = atomic_load(&h->last);
		while (l < now && !atomic_compare_exchange_weak(&h->last, &l, now))
			;
	}
	return NULL;
}

uint64_t pch_hammer(struct pch *p, unsigned threads, unsigned ms, uint64_t *span_ns)
{
	pthread_t t[16];
	p->ms = ms;
	if (threads > 16)
		threads = 16;
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, hammer, p);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	*span_ns = atomic_load(&p->last) - atomic_load(&p->first);
	return atomic_load(&p->count);
}

double pch_meter(const uint64_t *times, unsigned n, uint64_t now)
{
	struct rate_meter m[2] = {0};
	for (unsigned i = 0; i < n; i++)
		rm_note(&m[i % 2], times[i]); /* two workers' meters */
	return rm_rate(m, 2, now);
}
