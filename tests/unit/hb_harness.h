// A C window on engine/host_breaker.h for the C++ tests (C11 atomics do not compile as
// C++17): one breaker with its configuration.
#pragma once
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The values of enum hb_event. */
enum { HBH_NONE, HBH_OPENED, HBH_REOPENED, HBH_CLOSED, HBH_DOWN };
#define HBH_NEVER 0xffffffffu

struct hbh;
struct hbh *hbh_new(unsigned failures, uint64_t cooloff_ns, unsigned trips);
void hbh_free(struct hbh *h);
void hbh_config(struct hbh *h, unsigned failures, uint64_t cooloff_ns, unsigned trips);
int hbh_failure(struct hbh *h, int probe, uint64_t now);
int hbh_verdict(struct hbh *h);
/* 1 admitted (*probe: 1 when the caller now holds the probe), 0 not now. */
int hbh_admit(struct hbh *h, uint64_t now, int *probe);
void hbh_release(struct hbh *h);
int hbh_is_open(struct hbh *h);
uint64_t hbh_open_until(struct hbh *h);

#ifdef __cplusplus
}
#endif
