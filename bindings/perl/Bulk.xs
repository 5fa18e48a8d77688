/*
 * The XS layer of Net::SMTP::Bulk: a thin handle over libsmtpbulk's direct API with
 * its event queue (smtpbulk_event_fd()). Nothing of Perl runs on the library's
 * threads: results and events wait in the queue until the Perl side takes them
 * (next_event), and what a Perl callback returns goes back with act(). The seed's
 * vocabulary (options, callbacks, return codes) is lib/Net/SMTP/Bulk.pm's; this file
 * only turns Perl hashes into C structs and results into Perl hashes.
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"

#include <smtpbulk.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
	smtpbulk_t *sb;
	int started;
} sbx_t;

static SV *fetch(pTHX_ HV *hv, const char *key)
{
	SV **v = hv_fetch(hv, key, (I32)strlen(key), 0);
	return v && SvOK(*v) ? *v : NULL;
}

static unsigned get_uint(pTHX_ HV *hv, const char *key, unsigned def)
{
	SV *v = fetch(aTHX_ hv, key);
	if (!v)
		return def;
	IV i = SvIV(v);
	if (i < 0 || (UV)i > 0xffffffffu)
		croak("Net::SMTP::Bulk: %s must be between 0 and 4294967295", key);
	return (unsigned)i;
}

/* A string option, or NULL; valid while the hash holds it (create copies it). */
static const char *get_str(pTHX_ HV *hv, const char *key)
{
	SV *v = fetch(aTHX_ hv, key);
	return v ? SvPV_nolen(v) : NULL;
}

static HV *hash_of(pTHX_ SV *sv, const char *what)
{
	if (!SvROK(sv) || SvTYPE(SvRV(sv)) != SVt_PVHV)
		croak("Net::SMTP::Bulk: %s must be a hash reference", what);
	return (HV *)SvRV(sv);
}

static void put_str(pTHX_ HV *hv, const char *key, const char *s)
{
	(void)hv_store(hv, key, (I32)strlen(key), s ? newSVpv(s, 0) : newSV(0), 0);
}

static void put_iv(pTHX_ HV *hv, const char *key, IV i)
{
	(void)hv_store(hv, key, (I32)strlen(key), newSViv(i), 0);
}

static void put_uv(pTHX_ HV *hv, const char *key, UV u)
{
	(void)hv_store(hv, key, (I32)strlen(key), newSVuv(u), 0);
}

static const char *const kind_names[] = {
	"connect_pass", "connect_fail", "auth_pass", "auth_fail", "reconnect_pass",
	"reconnect_fail", "pass", "fail", "hang", "global_hang", "read", "complete", "result",
};

static const char *const status_names[] = {
	"delivered", "partial", "rejected", "failed", "timed_out", "cancelled",
};

static SV *reply_hv(pTHX_ const smtpbulk_reply_t *r)
{
	HV *hv = newHV();
	put_iv(aTHX_ hv, "code", r->code);
	put_str(aTHX_ hv, "enhanced", r->enhanced ? r->enhanced : "");
	put_str(aTHX_ hv, "text", r->text ? r->text : "");
	return newRV_noinc((SV *)hv);
}

/* One queued item as a Perl hash: what the Perl side dispatches on. */
static SV *item_hv(pTHX_ const smtpbulk_queued_event_t *q)
{
	HV *hv = newHV();
	const smtpbulk_event_t *ev = &q->ev;
	unsigned k = (unsigned)ev->kind;
	put_str(aTHX_ hv, "kind", k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k]
									       : "unknown");
	put_str(aTHX_ hv, "host", ev->host);
	put_iv(aTHX_ hv, "port", ev->port);
	put_iv(aTHX_ hv, "host_index", ev->host_index);
	put_iv(aTHX_ hv, "connection", ev->connection);
	put_iv(aTHX_ hv, "error", ev->error);
	put_str(aTHX_ hv, "error_text", ev->error ? smtpbulk_strerror(ev->error) : "");
	put_uv(aTHX_ hv, "id", (UV)ev->message_id);
	if (ev->line)
		put_str(aTHX_ hv, "line", ev->line);
	const smtpbulk_result_t *r = q->result;
	if (r) {
		unsigned st = (unsigned)r->status;
		put_str(aTHX_ hv, "status",
			st < sizeof(status_names) / sizeof(status_names[0]) ? status_names[st]
									    : "unknown");
		put_str(aTHX_ hv, "category", smtpbulk_category_name(r->category));
		(void)hv_store(hv, "reply", 5, reply_hv(aTHX_ &r->reply), 0);
		put_iv(aTHX_ hv, "code", r->reply.code);
		put_str(aTHX_ hv, "text", r->reply.text ? r->reply.text : "");
		put_uv(aTHX_ hv, "attempts", r->attempts);
		(void)hv_store(hv, "latency_ms", 10, newSVnv((NV)r->latency_ns / 1e6), 0);
		AV *rc = newAV();
		for (size_t i = 0; i < r->n_rcpts; i++) {
			HV *one = newHV();
			put_str(aTHX_ one, "rcpt", r->rcpts[i].rcpt);
			(void)hv_store(one, "reply", 5, reply_hv(aTHX_ &r->rcpts[i].reply), 0);
			av_push(rc, newRV_noinc((SV *)one));
		}
		(void)hv_store(hv, "rcpts", 5, newRV_noinc((SV *)rc), 0);
	}
	return newRV_noinc((SV *)hv);
}

static sbx_t *handle_of(pTHX_ SV *self)
{
	if (!SvROK(self) || !SvIOK(SvRV(self)))
		croak("Net::SMTP::Bulk::Engine: not a handle");
	sbx_t *h = INT2PTR(sbx_t *, SvIV(SvRV(self)));
	if (!h || !h->sb)
		croak("Net::SMTP::Bulk::Engine: the handle is closed");
	return h;
}

MODULE = Net::SMTP::Bulk  PACKAGE = Net::SMTP::Bulk::Engine  PREFIX = sbx_

PROTOTYPES: DISABLE

SV *
sbx_new(class, opts_rv, hosts_rv)
	const char *class
	SV *opts_rv
	SV *hosts_rv
    PREINIT:
	smtpbulk_options_t o;
	smtpbulk_host_t *hosts;
	smtpbulk_security_t *sec;
	SSize_t n, i;
	int rc;
	sbx_t *h;
    CODE:
	HV *ov = hash_of(aTHX_ opts_rv, "the options");
	if (!SvROK(hosts_rv) || SvTYPE(SvRV(hosts_rv)) != SVt_PVAV)
		croak("Net::SMTP::Bulk: Hosts must be an array reference");
	AV *av = (AV *)SvRV(hosts_rv);
	n = av_len(av) + 1;
	if (n < 1)
		croak("Net::SMTP::Bulk: no Host given");
	smtpbulk_options_init(&o);
	o.connections = get_uint(aTHX_ ov, "connections", 0);
	o.hello = get_str(aTHX_ ov, "hello");
	o.workers = get_uint(aTHX_ ov, "workers", 0);
	o.queue_bound = get_uint(aTHX_ ov, "queue_bound", 0);
	o.pipeline = get_uint(aTHX_ ov, "pipeline", o.pipeline);
	o.window = get_uint(aTHX_ ov, "window", 0);
	o.timeout_ms = get_uint(aTHX_ ov, "timeout_ms", 0);
	o.global_timeout_ms = get_uint(aTHX_ ov, "global_timeout_ms", 0);
	o.retry_hang = get_uint(aTHX_ ov, "retry_hang", 0);
	o.retry_global_hang = get_uint(aTHX_ ov, "retry_global_hang", 0);
	o.retry_fail = get_uint(aTHX_ ov, "retry_fail", 0);
	o.sleep_hang_ms = get_uint(aTHX_ ov, "sleep_hang_ms", 0);
	o.reconnect_ms = get_uint(aTHX_ ov, "reconnect_ms", 0);
	o.max_attempts = get_uint(aTHX_ ov, "max_attempts", 0);
	o.defer_ms = get_uint(aTHX_ ov, "defer_ms", 0);
	o.watchdog_tick_ms = get_uint(aTHX_ ov, "watchdog_tick_ms", 0);
	o.debug = (int)get_uint(aTHX_ ov, "debug", 0);
	o.debug_path = get_str(aTHX_ ov, "debug_path");
	o.tls_ca_file = get_str(aTHX_ ov, "tls_ca_file");
	o.host_rate.messages = get_uint(aTHX_ ov, "rate", 0);
	o.max_per_conn = get_uint(aTHX_ ov, "max_per_conn", 0);
	o.no_pin = 1; /* a library in someone else's process: leave their CPUs be */
	o.event_queue = 1;
	o.event_queue_kinds = get_uint(aTHX_ ov, "event_kinds", SMTPBULK_EVENTS_ALL);
	o.event_queue_hold = get_uint(aTHX_ ov, "event_hold", 0);
	hosts = calloc((size_t)n, sizeof(*hosts));
	sec = calloc((size_t)n, sizeof(*sec));
	if (!hosts || !sec) {
		free(hosts);
		free(sec);
		croak("Net::SMTP::Bulk: out of memory");
	}
	for (i = 0; i < n; i++) {
		SV **e = av_fetch(av, i, 0);
		if (!e || !SvROK(*e) || SvTYPE(SvRV(*e)) != SVt_PVHV) {
			free(hosts);
			free(sec);
			croak("Net::SMTP::Bulk: each of Hosts must be a hash reference");
		}
		HV *hv = (HV *)SvRV(*e);
		hosts[i].host = get_str(aTHX_ hv, "host");
		hosts[i].port = (uint16_t)get_uint(aTHX_ hv, "port", 0);
		hosts[i].hello = get_str(aTHX_ hv, "hello");
		hosts[i].connections = get_uint(aTHX_ hv, "connections", 0);
		hosts[i].lmtp = (int)get_uint(aTHX_ hv, "lmtp", 0);
		sec[i].struct_size = sizeof(sec[i]);
		sec[i].secure = get_uint(aTHX_ hv, "secure", 0);
		sec[i].tls_name = get_str(aTHX_ hv, "tls_name");
		sec[i].auth = get_str(aTHX_ hv, "auth");
		sec[i].user = get_str(aTHX_ hv, "user");
		sec[i].secret = get_str(aTHX_ hv, "pass");
		sec[i].auth_plaintext = (int)get_uint(aTHX_ hv, "auth_plaintext", 0);
		hosts[i].security = &sec[i];
		if (!hosts[i].host) {
			free(hosts);
			free(sec);
			croak("Net::SMTP::Bulk: a host without Host");
		}
	}
	o.hosts = hosts;
	o.n_hosts = (size_t)n;
	h = calloc(1, sizeof(*h));
	rc = h ? smtpbulk_create(&o, &h->sb) : -ENOMEM;
	free(hosts);
	free(sec);
	if (rc) {
		free(h);
		croak("Net::SMTP::Bulk: %s", smtpbulk_strerror(rc));
	}
	RETVAL = sv_setref_pv(newSV(0), class, h);
    OUTPUT:
	RETVAL

int
sbx_start(self)
	SV *self
    CODE:
	sbx_t *h = handle_of(aTHX_ self);
	RETVAL = h->started ? 0 : smtpbulk_start(h->sb);
	if (RETVAL == 0)
		h->started = 1;
    OUTPUT:
	RETVAL

int
sbx_fd(self)
	SV *self
    CODE:
	RETVAL = smtpbulk_event_fd(handle_of(aTHX_ self)->sb);
    OUTPUT:
	RETVAL

void
sbx_submit(self, from, rcpts_rv, body, nonblock)
	SV *self
	const char *from
	SV *rcpts_rv
	SV *body
	int nonblock
    PREINIT:
	const char **r;
	STRLEN len;
	SSize_t n, i;
	uint64_t id = 0;
	int rc;
    PPCODE:
	sbx_t *h = handle_of(aTHX_ self);
	if (!SvROK(rcpts_rv) || SvTYPE(SvRV(rcpts_rv)) != SVt_PVAV)
		croak("Net::SMTP::Bulk: recipients must be an array reference");
	AV *av = (AV *)SvRV(rcpts_rv);
	n = av_len(av) + 1;
	/* Bytes only: a wide character has no place on the wire (Encode => 1 encodes). */
	const char *data = SvPVbyte(body, len);
	r = calloc(n > 0 ? (size_t)n : 1, sizeof(*r));
	if (!r)
		croak("Net::SMTP::Bulk: out of memory");
	for (i = 0; i < n; i++) {
		SV **e = av_fetch(av, i, 0);
		r[i] = e && SvOK(*e) ? SvPVbyte_nolen(*e) : "";
	}
	smtpbulk_message_t m;
	memset(&m, 0, sizeof(m));
	m.struct_size = sizeof(m);
	m.from = from;
	m.rcpts = r;
	m.n_rcpts = (size_t)n;
	m.body = data;
	m.body_len = len;
	m.host = -1;
	rc = smtpbulk_submit(h->sb, &m, nonblock ? SMTPBULK_SUBMIT_NONBLOCK : 0, &id);
	free(r);
	/* (rc, id): 0 and the id, or the error code and 0. */
	EXTEND(SP, 2);
	mPUSHi(rc);
	mPUSHu((UV)id);

SV *
sbx_next_event(self, timeout_ms)
	SV *self
	int timeout_ms
    PREINIT:
	smtpbulk_queued_event_t *q = NULL;
	int rc;
    CODE:
	sbx_t *h = handle_of(aTHX_ self);
	rc = smtpbulk_event_next(h->sb, &q, timeout_ms);
	if (rc == 1) {
		RETVAL = item_hv(aTHX_ q);
		smtpbulk_event_free(q);
	} else {
		RETVAL = &PL_sv_undef;
	}
    OUTPUT:
	RETVAL

int
sbx_act(self, host_index, connection, code)
	SV *self
	int host_index
	int connection
	int code
    CODE:
	RETVAL = smtpbulk_act(handle_of(aTHX_ self)->sb, host_index, connection, code);
    OUTPUT:
	RETVAL

int
sbx_drain(self, timeout_ms)
	SV *self
	int timeout_ms
    CODE:
	RETVAL = smtpbulk_drain(handle_of(aTHX_ self)->sb, timeout_ms);
    OUTPUT:
	RETVAL

SV *
sbx_counters(self)
	SV *self
    PREINIT:
	smtpbulk_counters_t c;
    CODE:
	memset(&c, 0, sizeof(c));
	smtpbulk_get_counters(handle_of(aTHX_ self)->sb, &c);
	HV *hv = newHV();
	put_uv(aTHX_ hv, "submitted", (UV)c.submitted);
	put_uv(aTHX_ hv, "completed", (UV)c.completed);
	put_uv(aTHX_ hv, "delivered", (UV)c.delivered);
	put_uv(aTHX_ hv, "not_delivered", (UV)c.not_delivered);
	put_uv(aTHX_ hv, "queued", (UV)c.queued);
	put_uv(aTHX_ hv, "connects", (UV)c.connects);
	put_uv(aTHX_ hv, "reconnects", (UV)c.reconnects);
	put_uv(aTHX_ hv, "hangs", (UV)c.hangs);
	RETVAL = newRV_noinc((SV *)hv);
    OUTPUT:
	RETVAL

void
sbx_close(self)
	SV *self
    CODE:
	if (SvROK(self) && SvIOK(SvRV(self))) {
		sbx_t *h = INT2PTR(sbx_t *, SvIV(SvRV(self)));
		if (h && h->sb) {
			smtpbulk_destroy(h->sb);
			h->sb = NULL;
		}
	}

void
sbx_DESTROY(self)
	SV *self
    CODE:
	if (SvROK(self) && SvIOK(SvRV(self))) {
		sbx_t *h = INT2PTR(sbx_t *, SvIV(SvRV(self)));
		if (h) {
			if (h->sb)
				smtpbulk_destroy(h->sb);
			free(h);
			sv_setiv(SvRV(self), 0);
		}
	}

const char *
sbx_strerror(code)
	int code
    CODE:
	RETVAL = smtpbulk_strerror(code);
    OUTPUT:
	RETVAL
