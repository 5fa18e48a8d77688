/* smtpbulk_get_stats(): a lock-free snapshot of what the workers count, read from the
 * hosts' tables (engine.h): no worker is touched. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "latency_hist.h"

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static void summarize(struct latency_hist *h, smtpbulk_latency_t *out)
{
	out->count = atomic_load(&h->count);
	out->p50 = ms(lat_quantile(h, 0.50));
	out->p90 = ms(lat_quantile(h, 0.90));
	out->p99 = ms(lat_quantile(h, 0.99));
	out->p999 = ms(lat_quantile(h, 0.999));
	out->max = ms(atomic_load(&h->max_us));
}

static uint64_t get(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* One host: its connections' counters, their sums, and its latency over every worker. */
static void host_stats(struct sb_host *h, unsigned n_workers, smtpbulk_host_stats_t *hs,
		       smtpbulk_conn_stats_t *conns, struct latency_hist *merged,
		       struct latency_hist *all)
{
	hs->host = h->name;
	hs->port = h->port;
	hs->n_connections = h->connections;
	hs->connections = conns;
	for (size_t k = 0; k < h->connections; k++) {
		struct sb_conn_counters *c = &h->conn_ctr[k];
		smtpbulk_conn_stats_t *cs = &conns[k];
		cs->connection = (int)k;
		cs->ready = atomic_load_explicit(&c->ready, memory_order_relaxed);
		cs->total = get(&c->total);
		cs->pass = get(&c->pass);
		cs->fail = get(&c->fail);
		cs->hang = get(&c->hang);
		cs->deferred = get(&c->deferred);
		cs->bytes = get(&c->bytes);
		hs->total += cs->total;
		hs->pass += cs->pass;
		hs->fail += cs->fail;
		hs->hang += cs->hang;
		hs->deferred += cs->deferred;
		hs->bytes += cs->bytes;
	}
	memset(merged, 0, sizeof(*merged));
	for (unsigned w = 0; w < n_workers; w++) {
		lat_merge(merged, &h->lat[w]);
		lat_merge(all, &h->lat[w]);
	}
	summarize(merged, &hs->latency);
}

int smtpbulk_get_stats(const smtpbulk_t *csb, smtpbulk_stats_t **out)
{
	if (!csb || !out)
		return -EINVAL;
	*out = NULL;
	smtpbulk_t *sb = (smtpbulk_t *)(uintptr_t)csb; /* only atomics are read */
	size_t n_conns = 0;
	for (size_t h = 0; h < sb->n_hosts; h++)
		n_conns += sb->hosts[h].connections;
	/* One block: the stats, the hosts, every host's connections, the hosts' paces. */
	size_t sz = sizeof(smtpbulk_stats_t) + sb->n_hosts * sizeof(smtpbulk_host_stats_t) +
		    n_conns * sizeof(smtpbulk_conn_stats_t) + sb->n_hosts * sizeof(double);
	char *block = calloc(1, sz);
	struct latency_hist *merged = malloc(sizeof(*merged));
	struct latency_hist *all = calloc(1, sizeof(*all));
	if (!block || !merged || !all) {
		free(block);
		free(merged);
		free(all);
		return -ENOMEM;
	}
	smtpbulk_stats_t *st = (smtpbulk_stats_t *)(void *)block;
	smtpbulk_host_stats_t *hosts = (smtpbulk_host_stats_t *)(void *)(st + 1);
	smtpbulk_conn_stats_t *conns = (smtpbulk_conn_stats_t *)(void *)(hosts + sb->n_hosts);
	smtpbulk_get_counters(sb, &st->totals);
	st->tls_handshakes = get(&sb->tls_handshakes);
	st->tls_resumed = get(&sb->tls_resumed);
	st->breaker_opens = get(&sb->breaker_opens);
	st->breakers_open = atomic_load(&sb->breakers_open);
	st->throttled = get(&sb->throttled);
	st->slowdowns = get(&sb->slowdowns);
	st->paced = get(&sb->paced);
	st->hosts_slowed = 0;
	double *pace = (double *)(void *)(conns + n_conns);
	for (size_t h = 0; h < sb->n_hosts; h++) {
		st->hosts_slowed += atomic_load(&sb->hosts[h].pacer.next_step) != 0;
		pace[h] = pacer_rate(&sb->hosts[h].pacer);
	}
	st->pace_per_s = pace;
	st->n_hosts = sb->n_hosts;
	st->hosts = hosts;
	size_t base = 0;
	for (size_t h = 0; h < sb->n_hosts; h++) {
		host_stats(&sb->hosts[h], sb->n_workers, &hosts[h], conns + base, merged, all);
		base += sb->hosts[h].connections;
	}
	lat_merge(all, sb->lat_other);
	summarize(all, &st->latency);
	free(merged);
	free(all);
	*out = st;
	return 0;
}

void smtpbulk_stats_free(smtpbulk_stats_t *st)
{
	free(st);
}
