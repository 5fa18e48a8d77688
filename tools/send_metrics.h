/*
 * smtpbulk send --metrics ADDR:PORT: Prometheus text-format metrics over HTTP
 * (libmicrohttpd, its own thread), GET /metrics only. Read from send's live counts
 * (send_live.h) and the engine's counters and stats; nothing is kept here.
 */
#ifndef SB_SEND_METRICS_H
#define SB_SEND_METRICS_H

#include <stddef.h>

#include "send_live.h"
#include "smtpbulk.h"

struct send_metrics;

/* Listen on addr ("HOST:PORT", "[V6]:PORT"; port 0 picks one). rate_per_s: the host
 * pace configured (0: none). sb and live must outlive send_metrics_stop(). Returns 0
 * and *out and the port in *port, or -1 with why. */
int send_metrics_start(const char *addr, smtpbulk_t *sb, struct send_live *live,
		       double rate_per_s, struct send_metrics **out, unsigned *port, char *why,
		       size_t cap);

/* Stop serving (a scrape under way finishes first). NULL is ignored. */
void send_metrics_stop(struct send_metrics *m);

#endif
