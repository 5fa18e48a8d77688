// A C window on engine/pacer.h for the C++ tests (C11 atomics do not compile as C++17).
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct pch;
/* interval_ns 0: unpaced; factor_pct 100: no adaptation. */
struct pch *pch_new(uint64_t interval_ns, unsigned burst, unsigned factor_pct,
		    uint64_t cooloff_ns);
void pch_free(struct pch *p);
/* 1 admitted (*charged), 0 not before *at. */
int pch_admit(struct pch *p, uint64_t now, uint64_t *charged, uint64_t *at);
void pch_unadmit(struct pch *p, uint64_t charged);
int pch_throttled(struct pch *p, uint64_t now, double taken);
double pch_rate(struct pch *p);
uint64_t pch_interval_of(unsigned messages, unsigned per_ms);
/* threads threads admit as fast as they can on the real clock for ms; returns how many
 * were admitted and, in *span_ns, from the first admission to the last clock read. */
uint64_t pch_hammer(struct pch *p, unsigned threads, unsigned ms, uint64_t *span_ns);
/* A rate meter: note n deliveries at now, the rate at now. */
double pch_meter(const uint64_t *times, unsigned n, uint64_t now);

#ifdef __cplusplus
}
#endif
