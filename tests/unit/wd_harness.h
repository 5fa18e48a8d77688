// A C window on engine/watchdog.h for the C++ tests (C11 atomics do not compile as
// C++17): one group of slots, a busy flag, and the verdicts on_global received.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct wdh;
struct wdh *wdh_new(unsigned n_slots, unsigned global_ms, unsigned retry_global);
void wdh_free(struct wdh *h);
void wdh_set_busy(struct wdh *h, int busy);
void wdh_watch(struct wdh *h, unsigned slot, uint64_t now, uint32_t limit_ms);
void wdh_quiet(struct wdh *h, unsigned slot);
int wdh_fired(struct wdh *h, unsigned slot);
int wdh_take(struct wdh *h, unsigned slot, uint64_t now);
int wdh_pending(struct wdh *h);
int wdh_global(struct wdh *h);
void wdh_clear_global(struct wdh *h);
void wdh_progress(struct wdh *h, uint64_t t);
void wdh_quiet_since(struct wdh *h, uint64_t t);
uint64_t wdh_woken(struct wdh *h);
void wdh_tick(struct wdh *h, uint64_t now);
/* The verdicts so far (give_up per global hang), up to max; returns how many. */
int wdh_verdicts(struct wdh *h, int *out, int max);

#ifdef __cplusplus
}
#endif
