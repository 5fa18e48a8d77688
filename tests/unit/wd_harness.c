#include "wd_harness.h"

#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "watchdog.h"

struct wdh {
	struct wd_slot *slots;
	struct wd_group g;
	struct wd_group *groups[1];
	struct sb_watchdog wd;
	int busy;
	int verdicts[64];
	int n_verdicts;
};

static int busy_cb(void *arg)
{
	return ((struct wdh *)arg)->busy;
}

static void global_cb(void *arg, int give_up)
{
	struct wdh *h = arg;
	if (h->n_verdicts < 64)
		h->verdicts[h->n_verdicts++] = give_up;
}

struct wdh *wdh_new(unsigned n_slots, unsigned global_ms, unsigned retry_global)
{
	struct wdh *h = calloc(1, sizeof(*h));
	h->slots = calloc(n_slots, sizeof(*h->slots));
	h->g.slots = h->slots;
	h->g.n = n_slots;
	h->g.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->groups[0] = &h->g;
	h->wd.tick_ms = 10;
	h->wd.global_ms = global_ms;
	h->wd.retry_global = retry_global;
	h->wd.groups = h->groups;
	h->wd.n_groups = 1;
	h->wd.busy = busy_cb;
	h->wd.on_global = global_cb;
	h->wd.arg = h;
	h->busy = 1;
	return h;
}

void wdh_free(struct wdh *h)
{
	close(h->g.wake_fd);
	free(h->slots);
	free(h);
}

void wdh_set_busy(struct wdh *h, int busy) { h->busy = busy; }
void wdh_watch(struct wdh *h, unsigned s, uint64_t now, uint32_t ms) { wd_watch(&h->slots[s], now, ms); }
void wdh_quiet(struct wdh *h, unsigned s) { wd_quiet(&h->slots[s]); }
int wdh_fired(struct wdh *h, unsigned s) { return atomic_load(&h->slots[s].fired); }
int wdh_take(struct wdh *h, unsigned s, uint64_t now) { return wd_take(&h->slots[s], now); }
int wdh_pending(struct wdh *h) { return atomic_load(&h->g.pending); }
int wdh_global(struct wdh *h) { return atomic_load(&h->g.global); }
void wdh_clear_global(struct wdh *h) { atomic_store(&h->g.global, 0); }
void wdh_progress(struct wdh *h, uint64_t t) { atomic_store(&h->g.last_progress, t); }
void wdh_quiet_since(struct wdh *h, uint64_t t) { h->wd.quiet_since = t; }
void wdh_tick(struct wdh *h, uint64_t now) { sb_watchdog_tick(&h->wd, now); }

uint64_t wdh_woken(struct wdh *h)
{
	uint64_t v = 0;
	return read(h->g.wake_fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? v : 0;
}

int wdh_verdicts(struct wdh *h, int *out, int max)
{
	int n = h->n_verdicts < max ? h->n_verdicts : max;
	for (int i = 0; i < n; i++)
		out[i] = h->verdicts[i];
	return n;
}
