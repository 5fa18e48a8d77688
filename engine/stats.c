/* smtpbulk_get_stats(): a lock-free snapshot of what the workers count. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "latency_hist.h"
#include "worker.h"

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
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
	/* One block: the stats, the hosts, every host's connections. */
	size_t sz = sizeof(smtpbulk_stats_t) + sb->n_hosts * sizeof(smtpbulk_host_stats_t) +
		    n_conns * sizeof(smtpbulk_conn_stats_t);
	char *block = calloc(1, sz);
	struct latency_hist *merged = malloc(sizeof(*merged));
	if (!block || !merged) {
		free(block);
		free(merged);
		return -ENOMEM;
	}
	smtpbulk_stats_t *st = (smtpbulk_stats_t *)(void *)block;
	smtpbulk_host_stats_t *hosts = (smtpbulk_host_stats_t *)(void *)(st + 1);
	smtpbulk_conn_stats_t *conns = (smtpbulk_conn_stats_t *)(void *)(hosts + sb->n_hosts);
	smtpbulk_get_counters(sb, &st->totals);
	st->tls_handshakes = atomic_load_explicit(&sb->tls_handshakes, memory_order_relaxed);
	st->tls_resumed = atomic_load_explicit(&sb->tls_resumed, memory_order_relaxed);
	st->n_hosts = sb->n_hosts;
	st->hosts = hosts;

	size_t base = 0;
	for (size_t h = 0; h < sb->n_hosts; h++) {
		smtpbulk_host_stats_t *hs = &hosts[h];
		hs->host = sb->hosts[h].name;
		hs->port = sb->hosts[h].port;
		hs->n_connections = sb->hosts[h].connections;
		hs->connections = conns + base;
		for (size_t k = 0; k < hs->n_connections; k++)
			conns[base + k].connection = (int)k;
		memset(merged, 0, sizeof(*merged));
		for (unsigned i = 0; sb->workers && i < sb->n_workers; i++) {
			struct sb_worker *w = sb->workers[i];
			lat_merge(merged, &w->lat[h]);
			for (unsigned c = 0; c < w->n_conns; c++) {
				struct sb_conn *cn = &w->conns[c];
				if (cn->sess.host_idx != h || cn->sess.conn_idx >= hs->n_connections)
					continue;
				smtpbulk_conn_stats_t *cs = &conns[base + cn->sess.conn_idx];
				cs->ready = atomic_load_explicit(&cn->ready_now, memory_order_relaxed);
				cs->total = atomic_load_explicit(&cn->stats.total, memory_order_relaxed);
				cs->pass = atomic_load_explicit(&cn->stats.pass, memory_order_relaxed);
				cs->fail = atomic_load_explicit(&cn->stats.fail, memory_order_relaxed);
				cs->hang = atomic_load_explicit(&cn->stats.hang, memory_order_relaxed);
				cs->deferred = atomic_load_explicit(&cn->stats.deferred, memory_order_relaxed);
				cs->bytes = atomic_load_explicit(&cn->stats.bytes, memory_order_relaxed);
				hs->total += cs->total;
				hs->pass += cs->pass;
				hs->fail += cs->fail;
				hs->hang += cs->hang;
				hs->deferred += cs->deferred;
				hs->bytes += cs->bytes;
			}
		}
		hs->latency.count = atomic_load(&merged->count);
		hs->latency.p50 = ms(lat_quantile(merged, 0.50));
		hs->latency.p90 = ms(lat_quantile(merged, 0.90));
		hs->latency.p99 = ms(lat_quantile(merged, 0.99));
		hs->latency.p999 = ms(lat_quantile(merged, 0.999));
		hs->latency.max = ms(atomic_load(&merged->max_us));
		base += hs->n_connections;
	}
	free(merged);
	*out = st;
	return 0;
}

void smtpbulk_stats_free(smtpbulk_stats_t *st)
{
	free(st);
}
