/* The /metrics endpoint: libmicrohttpd serves, this file writes the exposition text. */
#include "send_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct send_metrics {
	struct MHD_Daemon *d;
	smtpbulk_t *sb;
	struct send_live *live;
	double rate_per_s;
};

struct text {
	char *p;
	size_t len, cap;
	int oom;
};

__attribute__((format(printf, 2, 3))) static void out(struct text *t, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = t->oom ? 0 : vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (t->oom || n < 0)
			return;
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap * 2 + (size_t)n;
		char *p = realloc(t->p, cap);
		if (!p) {
			t->oom = 1;
			return;
		}
		t->p = p;
		t->cap = cap;
	}
}

static void head(struct text *t, const char *name, const char *type, const char *help)
{
	out(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and line feed escaped (the format's rules). */
static void label(char *dst, size_t cap, const char *s)
{
	size_t w = 0;
	for (; *s && w + 3 < cap; s++) {
		if (*s == '\\' || *s == '"' || *s == '\n') {
			dst[w++] = '\\';
			dst[w++] = *s == '\n' ? 'n' : *s;
		} else {
			dst[w++] = *s;
		}
	}
	dst[w] = '\0';
}

static const char *const status_names[SEND_STATUSES] = {
	"delivered", "partial", "rejected", "failed", "timed_out", "cancelled",
};

static void render(struct send_metrics *m, struct text *t)
{
	struct send_live *l = m->live;
	head(t, "smtpbulk_send_records_total", "counter", "Input records read.");
	out(t, "smtpbulk_send_records_total %llu\n", (unsigned long long)send_live_get(&l->records));
	head(t, "smtpbulk_send_submitted_total", "counter", "Messages handed to the engine.");
	out(t, "smtpbulk_send_submitted_total %llu\n",
	    (unsigned long long)send_live_get(&l->submitted));
	head(t, "smtpbulk_send_bad_input_total", "counter", "Input records that could not be sent.");
	out(t, "smtpbulk_send_bad_input_total %llu\n", (unsigned long long)send_live_get(&l->bad));
	head(t, "smtpbulk_send_skipped_total", "counter",
	     "Records not sent because the journal has their final line.");
	out(t, "smtpbulk_send_skipped_total{final=\"delivered\"} %llu\n",
	    (unsigned long long)send_live_get(&l->skipped_final));
	out(t, "smtpbulk_send_skipped_total{final=\"not_delivered\"} %llu\n",
	    (unsigned long long)send_live_get(&l->skipped_undelivered));
	head(t, "smtpbulk_send_messages_total", "counter", "Final results by status.");
	for (int i = 0; i < SEND_STATUSES; i++)
		out(t, "smtpbulk_send_messages_total{status=\"%s\"} %llu\n", status_names[i],
		    (unsigned long long)send_live_get(&l->by_status[i]));
	head(t, "smtpbulk_send_messages_by_category_total", "counter",
	     "Final results by category.");
	for (int i = 0; i < SEND_CATEGORIES; i++)
		out(t, "smtpbulk_send_messages_by_category_total{category=\"%s\"} %llu\n",
		    smtpbulk_category_name((smtpbulk_category_t)i),
		    (unsigned long long)send_live_get(&l->by_category[i]));

	smtpbulk_counters_t c;
	smtpbulk_get_counters(m->sb, &c);
	head(t, "smtpbulk_send_in_flight", "gauge", "Messages submitted without a result yet.");
	out(t, "smtpbulk_send_in_flight %llu\n",
	    (unsigned long long)(c.submitted > c.completed ? c.submitted - c.completed : 0));
	head(t, "smtpbulk_send_queue_depth", "gauge", "Messages waiting for a connection.");
	out(t, "smtpbulk_send_queue_depth %llu\n", (unsigned long long)c.queued);
	head(t, "smtpbulk_send_deferred", "gauge", "Messages waiting for their 4xx retry.");
	out(t, "smtpbulk_send_deferred %llu\n", (unsigned long long)c.deferred_now);
	head(t, "smtpbulk_send_reconnects_total", "counter", "Connections started again.");
	out(t, "smtpbulk_send_reconnects_total %llu\n", (unsigned long long)c.reconnects);

	smtpbulk_stats_t *st = NULL;
	if (smtpbulk_get_stats(m->sb, &st) == 0) {
		head(t, "smtpbulk_host_messages_total", "counter",
		     "Messages that ended on a host's connections, passed or not.");
		char h[300];
		for (size_t i = 0; i < st->n_hosts; i++) {
			const smtpbulk_host_stats_t *hs = &st->hosts[i];
			label(h, sizeof(h), hs->host ? hs->host : "");
			out(t, "smtpbulk_host_messages_total{host=\"%s:%u\",result=\"pass\"} %llu\n", h,
			    hs->port, (unsigned long long)hs->pass);
			out(t, "smtpbulk_host_messages_total{host=\"%s:%u\",result=\"fail\"} %llu\n", h,
			    hs->port, (unsigned long long)hs->fail);
		}
		head(t, "smtpbulk_host_connections_ready", "gauge", "A host's connections ready now.");
		for (size_t i = 0; i < st->n_hosts; i++) {
			const smtpbulk_host_stats_t *hs = &st->hosts[i];
			size_t ready = 0;
			for (size_t k = 0; k < hs->n_connections; k++)
				ready += hs->connections[k].ready != 0;
			label(h, sizeof(h), hs->host ? hs->host : "");
			out(t, "smtpbulk_host_connections_ready{host=\"%s:%u\"} %zu\n", h, hs->port, ready);
		}
		head(t, "smtpbulk_host_pace_per_second", "gauge",
		     "Each host's pace in force now, messages per second (0: none): the "
		     "configured one, or lower while throttling replies slow it down.");
		for (size_t i = 0; i < st->n_hosts; i++) {
			label(h, sizeof(h), st->hosts[i].host ? st->hosts[i].host : "");
			out(t, "smtpbulk_host_pace_per_second{host=\"%s:%u\"} %g\n", h,
			    st->hosts[i].port, st->pace_per_s[i]);
		}
		head(t, "smtpbulk_host_pace_configured_per_second", "gauge",
		     "The pace configured per host (--limit-rate; 0: none).");
		for (size_t i = 0; i < st->n_hosts; i++) {
			label(h, sizeof(h), st->hosts[i].host ? st->hosts[i].host : "");
			out(t, "smtpbulk_host_pace_configured_per_second{host=\"%s:%u\"} %g\n", h,
			    st->hosts[i].port, m->rate_per_s);
		}
		head(t, "smtpbulk_hosts_slowed", "gauge",
		     "Hosts going slower than configured after throttling replies.");
		out(t, "smtpbulk_hosts_slowed %llu\n", (unsigned long long)st->hosts_slowed);
		head(t, "smtpbulk_throttled_total", "counter", "Throttling replies.");
		out(t, "smtpbulk_throttled_total %llu\n", (unsigned long long)st->throttled);
		head(t, "smtpbulk_paced_total", "counter", "Times a connection waited for its pace.");
		out(t, "smtpbulk_paced_total %llu\n", (unsigned long long)st->paced);
		smtpbulk_stats_free(st);
	}

	head(t, "smtpbulk_send_latency_seconds", "histogram",
	     "From submit to final result, for every result.");
	uint64_t cum = 0;
	for (int b = 0; b <= SEND_LAT_BOUNDS; b++) {
		cum += send_live_get(&l->latency[b]);
		if (b < SEND_LAT_BOUNDS)
			out(t, "smtpbulk_send_latency_seconds_bucket{le=\"%g\"} %llu\n",
			    send_lat_bounds_ms[b] / 1000, (unsigned long long)cum);
		else
			out(t, "smtpbulk_send_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)cum);
	}
	out(t, "smtpbulk_send_latency_seconds_sum %.6f\n",
	    (double)send_live_get(&l->latency_sum_us) / 1e6);
	out(t, "smtpbulk_send_latency_seconds_count %llu\n", (unsigned long long)cum);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_size, void **req)
{
	struct send_metrics *m = cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)req;
	struct MHD_Response *resp;
	unsigned code = MHD_HTTP_OK;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char msg[] = "only GET\n";
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
						       MHD_RESPMEM_PERSISTENT);
	} else if (strcmp(url, "/metrics") != 0) {
		static const char msg[] = "not found: the metrics are at /metrics\n";
		code = MHD_HTTP_NOT_FOUND;
		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg,
						       MHD_RESPMEM_PERSISTENT);
	} else {
		struct text t = {.p = malloc(8192), .cap = 8192};
		if (!t.p)
			return MHD_NO;
		render(m, &t);
		if (t.oom) {
			free(t.p);
			return MHD_NO;
		}
		resp = MHD_create_response_from_buffer(t.len, t.p, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			free(t.p);
	}
	if (!resp)
		return MHD_NO;
	if (code == MHD_HTTP_OK)
		MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	enum MHD_Result rc = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return rc;
}

int send_metrics_start(const char *addr, smtpbulk_t *sb, struct send_live *live,
		       double rate_per_s, struct send_metrics **out_m, unsigned *port, char *why,
		       size_t cap)
{
	char host[128];
	const char *colon = strrchr(addr, ':');
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	char *end;
	unsigned long p = colon ? strtoul(colon + 1, &end, 10) : 0;
	size_t hl = colon ? (size_t)(colon - addr) : 0;
	if (!colon || !colon[1] || *end || p > 65535 || hl == 0 || hl >= sizeof(host))
		return snprintf(why, cap, "--metrics %s: give ADDR:PORT", addr), -1;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return snprintf(why, cap, "--metrics %s: not an IPv6 address", addr), -1;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		flags |= MHD_USE_IPv6;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		if (strcmp(host, "localhost") == 0)
			snprintf(host, sizeof(host), "127.0.0.1");
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return snprintf(why, cap, "--metrics %s: not an IPv4 address (or [IPv6])",
					addr), -1;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)p);
	}
	struct send_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return snprintf(why, cap, "out of memory"), -1;
	m->sb = sb;
	m->live = live;
	m->rate_per_s = rate_per_s;
	m->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR,
				(struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_END);
	if (!m->d) {
		int err = errno;
		free(m);
		return snprintf(why, cap, "--metrics %s: cannot listen%s%s", addr, err ? ": " : "",
				err ? strerror(err) : ""), -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	*port = info ? info->port : (unsigned)p;
	*out_m = m;
	return 0;
}

void send_metrics_stop(struct send_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
