#include "hb_harness.h"

#include <stdlib.h>

#include "host_breaker.h"

struct hbh {
	struct host_breaker b;
	struct hb_cfg cfg;
};

struct hbh *hbh_new(unsigned failures, uint64_t cooloff_ns, unsigned trips)
{
	struct hbh *h = calloc(1, sizeof(*h));
	if (h)
		hbh_config(h, failures, cooloff_ns, trips);
	return h;
}

void hbh_free(struct hbh *h)
{
	free(h);
}

void hbh_config(struct hbh *h, unsigned failures, uint64_t cooloff_ns, unsigned trips)
{
	h->cfg = (struct hb_cfg){.failures = failures, .cooloff_ns = cooloff_ns, .trips = trips};
}

int hbh_failure(struct hbh *h, int probe, uint64_t now)
{
	return (int)hb_failure(&h->b, &h->cfg, probe, now);
}

int hbh_verdict(struct hbh *h)
{
	return (int)hb_verdict(&h->b);
}

int hbh_admit(struct hbh *h, uint64_t now, int *probe)
{
	*probe = 0;
	return hb_admit(&h->b, now, probe);
}

void hbh_release(struct hbh *h)
{
	hb_release(&h->b);
}

int hbh_is_open(struct hbh *h)
{
	return hb_is_open(&h->b);
}

uint64_t hbh_open_until(struct hbh *h)
{
	return hb_open_until(&h->b);
}
