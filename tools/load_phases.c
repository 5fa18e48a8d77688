#include "load_phases.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "latency_hist.h"

#define SETUP_TRACK 4096 /* connection indexes whose last setup is remembered */

/* Shared by the worker threads that call load_phases_record(): the histograms take
 * relaxed atomic adds; setup_seen[i] is only connection i's worker's (one worker owns
 * a connection index), atomic so that a reader never sees a torn value. */
struct load_phases {
	struct latency_hist hist[LP_COUNT];
	_Atomic uint64_t setup_seen[SETUP_TRACK];
};

static const char *const names[LP_COUNT] = {
	[LP_QUEUED] = "queued",   [LP_PACED] = "paced", [LP_CONNECT] = "connect",
	[LP_TLS] = "tls",         [LP_GREETING] = "greeting", [LP_EHLO] = "ehlo",
	[LP_AUTH] = "auth",       [LP_MAIL] = "mail",   [LP_RCPT] = "rcpt",
	[LP_DATA] = "data",       [LP_DOT] = "dot",
};

const char *load_phase_name(enum load_phase p)
{
	return (unsigned)p < LP_COUNT ? names[p] : "?";
}

struct load_phases *load_phases_new(void)
{
	return calloc(1, sizeof(struct load_phases));
}

void load_phases_free(struct load_phases *lp)
{
	free(lp);
}

/* A phase that did not happen (0) is no sample: its percentiles stay those of the
 * messages where it did. */
static void rec(struct load_phases *lp, enum load_phase p, uint64_t ns)
{
	if (ns)
		lat_record(&lp->hist[p], ns / 1000);
}

/* A connection's setup times are the same in each of its results; a new setup (a
 * reconnect) has new ones. Their sum with the connect time stands for the setup. */
static int new_setup(struct load_phases *lp, const smtpbulk_result_t *r)
{
	const smtpbulk_phases_t *p = &r->phases;
	uint64_t sig = p->connect_ns ^ (p->greeting_ns << 1) ^ (p->ehlo_ns << 2) ^
		       (p->tls_ns << 3) ^ (p->auth_ns << 4);
	if (!sig)
		return 0; /* it never reached a connection */
	if (r->connection < 0)
		return 1;
	_Atomic uint64_t *seen = &lp->setup_seen[(unsigned)r->connection % SETUP_TRACK];
	if (atomic_load_explicit(seen, memory_order_relaxed) == sig)
		return 0;
	atomic_store_explicit(seen, sig, memory_order_relaxed);
	return 1;
}

void load_phases_record(struct load_phases *lp, const smtpbulk_result_t *r)
{
	const smtpbulk_phases_t *p = &r->phases;
	rec(lp, LP_QUEUED, p->queued_ns);
	rec(lp, LP_PACED, p->paced_ns);
	rec(lp, LP_MAIL, p->mail_ns);
	rec(lp, LP_RCPT, p->rcpt_ns);
	rec(lp, LP_DATA, p->data_ns);
	rec(lp, LP_DOT, p->dot_ns);
	if (new_setup(lp, r)) {
		rec(lp, LP_CONNECT, p->connect_ns);
		rec(lp, LP_TLS, p->tls_ns);
		rec(lp, LP_GREETING, p->greeting_ns);
		rec(lp, LP_EHLO, p->ehlo_ns);
		rec(lp, LP_AUTH, p->auth_ns);
	}
}

void load_phases_get(struct load_phases *lp, struct load_phase_pct out[LP_COUNT])
{
	for (int i = 0; i < LP_COUNT; i++) {
		struct latency_hist *h = &lp->hist[i];
		out[i].samples = atomic_load_explicit(&h->count, memory_order_relaxed);
		out[i].p50_ms = (double)lat_quantile(h, 0.50) / 1000.0;
		out[i].p99_ms = (double)lat_quantile(h, 0.99) / 1000.0;
	}
}
