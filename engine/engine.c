/* The engine: lifecycle, host resolution, routing of messages to queues, bounded
 * submission, result delivery and the counters behind drain. */
#include "engine.h"
#include "watchdog.h"
#include "debug_log.h"

#include <errno.h>
#include <netdb.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sasl.h"
#include "smtp_cmd.h"
#include "tls.h"
#include "worker.h"

#define DEFAULT_PORT 25
#define DEFAULT_CONNECTIONS 2
#define DEFAULT_MAX_ATTEMPTS 3
#define DEFAULT_RETRY_FAIL 5
#define DEFAULT_RECONNECT_MS 100
#define DEFAULT_TIMEOUT_MS 60000         /* the seed's Timeout: 60 s */
#define DEFAULT_GLOBAL_TIMEOUT_MS 120000 /* GlobalTimeout: 120 s */
#define DEFAULT_TICK_MS 100
#define DEFAULT_RETRY_HANG 1             /* the seed's Retry.Hang and .GlobalHang */
#define DEFAULT_DEFER_MS 1000
#define MAX_CONNECTIONS 1000000u

uint64_t sb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void log_v(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt,
		  va_list ap) __attribute__((format(printf, 5, 0)));

static void log_v(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt,
		  va_list ap)
{
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	if (sb->opts.on_log) {
		if (host >= 0 && (size_t)host < sb->n_hosts) {
			char full[1100];
			snprintf(full, sizeof(full), "[%s#%d] %s", sb->host_names[host], conn, line);
			sb->opts.on_log(level, full, sb->opts.log_arg);
		} else {
			sb->opts.on_log(level, line, sb->opts.log_arg);
		}
	} else if (sb->logger) {
		sb_logger_line(sb->logger, level, host, conn, line);
	} else {
		fprintf(stderr, "smtpbulk[%d]: %s\n", level, line);
	}
}

void sb_log(const smtpbulk_t *sb, int level, const char *fmt, ...)
{
	va_list ap;
	if (sb->opts.debug < level)
		return;
	va_start(ap, fmt);
	log_v(sb, level, -1, -1, fmt, ap);
	va_end(ap);
}

void sb_log_conn(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt, ...)
{
	va_list ap;
	if (sb->opts.debug < level)
		return;
	va_start(ap, fmt);
	log_v(sb, level, host, conn, fmt, ap);
	va_end(ap);
}

static int resolve(struct sb_host *h)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", h->port);
	int rc = getaddrinfo(h->name, port, &hints, &res);
	if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY) { /* AI_ADDRCONFIG hides ::1 on
							 * hosts with only loopback v6 */
		hints.ai_flags = AI_NUMERICSERV;
		rc = getaddrinfo(h->name, port, &hints, &res);
	}
	if (rc != 0 || !res)
		return SMTPBULK_ERESOLVE;
	memcpy(&h->addr, res->ai_addr, res->ai_addrlen);
	h->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* The host's TLS mode and AUTH, from its own security or the options'. */
static int setup_security(struct sb_host *h, const smtpbulk_security_t *sec)
{
	if (!sec)
		return 0;
	if (sec->struct_size < sizeof(*sec) || sec->secure > SMTPBULK_SECURE_STARTTLS_REQUIRE)
		return -EINVAL;
	h->cfg.secure = sec->secure;
	if (sec->secure != SMTPBULK_SECURE_NONE) {
		const char *name = sec->tls_name ? sec->tls_name : h->name;
		/* The same characters as a hello name; a DNS name has at most 253. */
		if (smtp_check_hello(name) != 0 || strlen(name) > 253)
			return SMTPBULK_EBADPARAM;
		if (!(h->tls_name = strdup(name)))
			return -ENOMEM;
	}
	if (!sec->auth || !*sec->auth)
		return 0;
	unsigned mech;
	if (strcasecmp(sec->auth, "AUTO") == 0)
		mech = SESS_AUTH_AUTO;
	else if ((mech = sasl_mech_from_name(sec->auth, strlen(sec->auth))) == SASL_NONE)
		return -EINVAL;
	if (!sec->user || !sec->secret || strlen(sec->user) > SASL_NAME_MAX ||
	    strlen(sec->secret) > SASL_NAME_MAX || !*sec->user)
		return -EINVAL;
	h->auth_user = strdup(sec->user);
	h->auth_secret = strdup(sec->secret);
	if (!h->auth_user || !h->auth_secret)
		return -ENOMEM;
	h->auth.mech = mech;
	h->auth.user = h->auth_user;
	h->auth.secret = h->auth_secret;
	h->auth.allow_plaintext = sec->auth_plaintext != 0;
	h->cfg.auth = &h->auth;
	return 0;
}

int sb_host_down_error(const struct sb_host *h)
{
	int err = atomic_load(&h->last_error);
	switch (err) {
	case SMTPBULK_ETLS:
	case SMTPBULK_ECERT:
	case SMTPBULK_ENOSTARTTLS:
	case SMTPBULK_EAUTH:
	case SMTPBULK_EAUTHTEMP:
	case SMTPBULK_EAUTHMECH:
	case SMTPBULK_EAUTHPLAIN:
		return err;
	default:
		return SMTPBULK_EHOSTDOWN;
	}
}

int sb_all_down_error(const smtpbulk_t *sb)
{
	int err = sb->n_hosts ? sb_host_down_error(&sb->hosts[0]) : SMTPBULK_EHOSTDOWN;
	for (size_t i = 1; i < sb->n_hosts; i++)
		if (sb_host_down_error(&sb->hosts[i]) != err)
			return SMTPBULK_EHOSTDOWN;
	return err;
}

static int setup_host(smtpbulk_t *sb, struct sb_host *h, const smtpbulk_host_t *in,
		      const char *default_hello)
{
	int rc;
	pthread_mutex_init(&h->tls_lock, NULL);
	if (!in->host || !*in->host || smtp_check_hello(in->host) != 0)
		return SMTPBULK_EBADPARAM;
	if (in->connections > MAX_CONNECTIONS)
		return -EINVAL;
	h->name = strdup(in->host);
	h->hello = strdup(in->hello ? in->hello : default_hello);
	h->on_worker = calloc(sb->n_workers, 1);
	h->port = in->port ? in->port : DEFAULT_PORT;
	/* Logs name a host by name, and by name:port when the port is not 25. */
	size_t ll = strlen(in->host) + 8;
	h->label = malloc(ll);
	if (!h->name || !h->hello || !h->on_worker || !h->label)
		return -ENOMEM;
	if (h->port == DEFAULT_PORT)
		snprintf(h->label, ll, "%s", in->host);
	else
		snprintf(h->label, ll, "%s:%u", in->host, h->port);
	if ((rc = smtp_check_hello(h->hello)) != 0)
		return rc;
	h->connections = in->connections ? in->connections : sb->opts.connections;
	if ((rc = resolve(h)) != 0)
		return rc;
	if ((rc = sbq_create(&h->queue)) != 0)
		return rc;
	h->cfg.hello = h->hello;
	h->cfg.max_attempts = sb->opts.max_attempts;
	h->cfg.retry_fail = sb->opts.retry_fail;
	h->cfg.retry_hang = sb->opts.retry_hang;
	h->cfg.debug = sb->opts.debug;
	h->cfg.pipeline = sb->opts.pipeline;
	h->cfg.window = sb->opts.window;
	if ((rc = setup_security(h, in->security ? in->security : sb->opts.security)) != 0)
		return rc;
	atomic_init(&h->alive, h->connections);
	atomic_init(&h->last_error, 0);
	return 0;
}

/* The CPUs this process may run on, in order; workers are pinned to them round-robin. */
static int allowed_cpus(int *cpus, int max)
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 0;
	for (int c = 0; c < CPU_SETSIZE && n < max; c++)
		if (CPU_ISSET(c, &set))
			cpus[n++] = c;
	return n;
}

int sb_engine_create(const smtpbulk_options_t *opts, smtpbulk_t **out)
{
	char hostname[256];
	int rc = -ENOMEM;
	int cpus[CPU_SETSIZE];

	if (!opts || !out || opts->struct_size < sizeof(smtpbulk_options_t) ||
	    opts->pipeline > 2 || opts->window > SESS_TXN_MAX ||
	    (opts->tls_min_version && opts->tls_min_version != 12 &&
	     opts->tls_min_version != 13) ||
	    (unsigned)opts->backend > SMTPBULK_BACKEND_EPOLL ||
	    (opts->n_hosts && !opts->hosts))
		return -EINVAL;
	if (opts->n_hosts == 0)
		return SMTPBULK_ENOHOST;

	smtpbulk_t *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	sb->opts = *opts;
	sb->opts.hosts = NULL;
	if (opts->callbacks) { /* copied: the caller's struct may be a temporary */
		if (opts->callbacks->struct_size < sizeof(sb->cbs)) {
			free(sb);
			return -EINVAL;
		}
		sb->cbs = *opts->callbacks;
	}
	sb->opts.callbacks = NULL;
	sb->opts.hello = NULL; /* the caller's string: used only during create */
	if (!sb->opts.max_attempts)
		sb->opts.max_attempts = DEFAULT_MAX_ATTEMPTS;
	if (!sb->opts.retry_fail)
		sb->opts.retry_fail = DEFAULT_RETRY_FAIL;
	if (!sb->opts.window)
		sb->opts.window = 8;
	if (!sb->opts.connections)
		sb->opts.connections = DEFAULT_CONNECTIONS;
	if (!sb->opts.reconnect_ms)
		sb->opts.reconnect_ms = DEFAULT_RECONNECT_MS;
	if (!sb->opts.timeout_ms)
		sb->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!sb->opts.global_timeout_ms)
		sb->opts.global_timeout_ms = DEFAULT_GLOBAL_TIMEOUT_MS;
	if (!sb->opts.watchdog_tick_ms)
		sb->opts.watchdog_tick_ms = DEFAULT_TICK_MS;
	if (!sb->opts.retry_hang)
		sb->opts.retry_hang = DEFAULT_RETRY_HANG;
	if (!sb->opts.retry_global_hang)
		sb->opts.retry_global_hang = DEFAULT_RETRY_HANG;
	if (!sb->opts.defer_ms)
		sb->opts.defer_ms = DEFAULT_DEFER_MS;
	/* Per-phase timeouts: what the caller set, else RFC 5321's minimums when asked
	 * (§4.5.3.2), else timeout_ms. */
	{
		static const unsigned rfc[SESS_PH_COUNT] = {
			[SESS_PH_GREETING] = 300000, [SESS_PH_MAIL] = 300000,
			[SESS_PH_RCPT] = 300000,     [SESS_PH_DATA] = 120000,
			[SESS_PH_BLOCK] = 180000,    [SESS_PH_DOT] = 600000,
		};
		const unsigned set[SESS_PH_COUNT] = {
			[SESS_PH_GREETING] = opts->timeout_greeting_ms,
			[SESS_PH_MAIL] = opts->timeout_mail_ms,
			[SESS_PH_RCPT] = opts->timeout_rcpt_ms,
			[SESS_PH_DATA] = opts->timeout_data_ms,
			[SESS_PH_BLOCK] = opts->timeout_block_ms,
			[SESS_PH_DOT] = opts->timeout_dot_ms,
		};
		unsigned longest = 0;
		for (int p = 0; p < SESS_PH_COUNT; p++) {
			sb->phase_ms[p] = set[p]		 ? set[p]
					  : opts->rfc5321_timeouts ? rfc[p]
								   : sb->opts.timeout_ms;
			if (sb->phase_ms[p] > longest)
				longest = sb->phase_ms[p];
		}
		/* Unset, the global timeout never fires before a connection's own could. */
		if (!opts->global_timeout_ms && sb->opts.global_timeout_ms < longest)
			sb->opts.global_timeout_ms = longest;
	}
	pthread_mutex_init(&sb->lock, NULL);
	pthread_cond_init(&sb->room, NULL);
	pthread_cond_init(&sb->done, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* ticks must not jump with the clock */
	pthread_cond_init(&sb->wd_cond, &ca);
	pthread_condattr_destroy(&ca);

	int ncpu = allowed_cpus(cpus, CPU_SETSIZE);
	unsigned total = 0;
	for (size_t i = 0; i < opts->n_hosts; i++)
		total += opts->hosts[i].connections ? opts->hosts[i].connections
						    : sb->opts.connections;
	sb->n_workers = opts->workers ? opts->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
	if (sb->n_workers > total) /* a worker without connections would only idle */
		sb->n_workers = total ? total : 1;

	if (opts->hello) {
		if (strlen(opts->hello) >= sizeof(hostname)) {
			rc = SMTPBULK_EBADPARAM;
			goto fail;
		}
		strcpy(hostname, opts->hello);
	} else if (gethostname(hostname, sizeof(hostname)) != 0 ||
		   smtp_check_hello(hostname) != 0) {
		strcpy(hostname, "localhost");
	}
	hostname[sizeof(hostname) - 1] = '\0';

	sb->hosts = calloc(opts->n_hosts, sizeof(*sb->hosts));
	if (!sb->hosts)
		goto fail;
	sb->n_hosts = opts->n_hosts;
	for (size_t i = 0; i < opts->n_hosts; i++)
		if ((rc = setup_host(sb, &sb->hosts[i], &opts->hosts[i], hostname)) != 0)
			goto fail;
	atomic_init(&sb->hosts_alive, (unsigned)sb->n_hosts);
	sb->host_names = calloc(sb->n_hosts, sizeof(*sb->host_names));
	if (!sb->host_names)
		goto fail;
	for (size_t i = 0; i < sb->n_hosts; i++)
		sb->host_names[i] = sb->hosts[i].label;
	/* One TLS context, when some host uses TLS; trust loaded when some host verifies. */
	int tls_wanted = 0, tls_verify = 0;
	for (size_t i = 0; i < sb->n_hosts; i++) {
		tls_wanted |= sb->hosts[i].cfg.secure != SMTPBULK_SECURE_NONE;
		tls_verify |= sess_secure_verifies(sb->hosts[i].cfg.secure);
	}
	if (tls_wanted) {
		struct sb_tls_ctx_cfg tc = {
			.load_trust = tls_verify,
			.ca_file = opts->tls_ca_file,
			.ca_dir = opts->tls_ca_dir,
			.cert_file = opts->tls_cert_file,
			.key_file = opts->tls_key_file,
			.min_version = opts->tls_min_version,
		};
		char why[300];
		if ((rc = sb_tls_ctx_new(&tc, &sb->tls_ctx, why, sizeof(why))) != 0) {
			/* create() has no log yet; say it where a caller with a log sees it. */
			if (opts->on_log && opts->debug > 0)
				opts->on_log(1, why, opts->log_arg);
			goto fail;
		}
	}
	/* The caller's strings: used only during create. */
	sb->opts.security = NULL;
	sb->opts.tls_ca_file = sb->opts.tls_ca_dir = NULL;
	sb->opts.tls_cert_file = sb->opts.tls_key_file = NULL;
	sb->opts.debug_path = NULL; /* the caller's string: the logger keeps its own copy */
	if (sb->opts.debug > 0 && !sb->opts.on_log &&
	    (rc = sb_logger_new(opts->debug_path, sb->host_names, sb->n_hosts, &sb->logger)) != 0)
		goto fail;
	/* Up to 4 MB of freed blocks kept per size class: the peak of messages in flight
	 * is reused instead of going back to malloc each time. */
	if (!(sb->msg_pool = sb_msg_pool_new(4u << 20))) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = sbq_create(&sb->any_queue)) != 0 || (rc = sbq_create(&sb->done_queue)) != 0)
		goto fail;

	rc = -ENOMEM;
	sb->workers = calloc(sb->n_workers, sizeof(*sb->workers));
	if (!sb->workers)
		goto fail;
	for (unsigned i = 0; i < sb->n_workers; i++) {
		int cpu = (opts->no_pin || ncpu <= 0) ? -1 : cpus[i % (unsigned)ncpu];
		if ((rc = sb_worker_create(sb, i, cpu, &sb->workers[i])) != 0)
			goto fail;
	}
	sb->backend_name = "none";
	*out = sb;
	return 0;
fail:
	sb_engine_destroy(sb);
	return rc;
}

int sb_engine_start(smtpbulk_t *sb)
{
	int rc = 0;
	unsigned started = 0;
	if (sb->started)
		return -EALREADY;
	for (; started < sb->n_workers; started++)
		if ((rc = sb_worker_start(sb->workers[started])) != 0)
			break;
	/* Wait until each worker has built its ring: a backend that cannot run here
	 * must fail start, not the first submit. */
	pthread_mutex_lock(&sb->lock);
	for (unsigned i = 0; i < started; i++) {
		while (!sb->workers[i]->init_done)
			pthread_cond_wait(&sb->done, &sb->lock);
		if (!rc && sb->workers[i]->init_rc)
			rc = sb->workers[i]->init_rc;
	}
	pthread_mutex_unlock(&sb->lock);
	sb->started = 1;
	if (rc) {
		atomic_store(&sb->stopping, 1);
		for (unsigned i = 0; i < started; i++) {
			sb_worker_wake(sb->workers[i]);
			sb_worker_join(sb->workers[i]);
		}
		sb->started = 0;
		return rc;
	}
	sb->backend_name = sb->workers[0]->be->name;
	snprintf(sb->backend_desc, sizeof(sb->backend_desc), "%s", sb->workers[0]->desc);
	if ((rc = sb_watchdog_start(sb)) != 0) {
		sb_engine_stop(sb);
		return rc;
	}
	return 0;
}

static void wake_for(smtpbulk_t *sb, int host)
{
	for (unsigned i = 0; i < sb->n_workers; i++)
		if (host < 0 || sb->hosts[host].on_worker[i])
			sb_worker_wake(sb->workers[i]);
}

static void enqueue(smtpbulk_t *sb, struct sb_msg *msg)
{
	/* Read everything needed first: once enqueued, a worker may finish the message
	 * and free it before sbq_enqueue() even returns. */
	int host = msg->host;
	struct sbq *q = host >= 0 ? sb->hosts[host].queue : sb->any_queue;
	/* Only the enqueue that makes a queue non-empty wakes: a worker that is awake
	 * will see the rest before it sleeps again. */
	if (sbq_enqueue(q, &msg->node))
		wake_for(sb, host);
}

static void note_queued(smtpbulk_t *sb, uint64_t q)
{
	uint64_t max = atomic_load_explicit(&sb->queued_max, memory_order_relaxed);
	while (q > max && !atomic_compare_exchange_weak(&sb->queued_max, &max, q))
		;
}

static int reserve_slot(smtpbulk_t *sb, unsigned flags)
{
	size_t bound = sb->opts.queue_bound;
	uint64_t q = atomic_load(&sb->queued);
	if (!bound) {
		note_queued(sb, atomic_fetch_add(&sb->queued, 1) + 1);
		return 0;
	}
	for (;;) {
		while (q < bound) {
			if (atomic_compare_exchange_weak(&sb->queued, &q, q + 1)) {
				note_queued(sb, q + 1);
				return 0;
			}
		}
		if (flags & SMTPBULK_SUBMIT_NONBLOCK)
			return -EAGAIN;
		if (atomic_load(&sb->stopping))
			return SMTPBULK_ESTOPPED;
		pthread_mutex_lock(&sb->lock);
		atomic_fetch_add(&sb->room_waiters, 1);
		if (atomic_load(&sb->queued) >= bound && !atomic_load(&sb->stopping)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100000000; /* re-check now and then, whatever happens */
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&sb->room, &sb->lock, &ts);
		}
		atomic_fetch_sub(&sb->room_waiters, 1);
		pthread_mutex_unlock(&sb->lock);
		q = atomic_load(&sb->queued);
	}
}

int sb_engine_submit(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags, uint64_t *id_out)
{
	if (!sb->started || atomic_load(&sb->stopping))
		return SMTPBULK_ESTOPPED;
	if (msg->host >= (int)sb->n_hosts || msg->host < -1)
		return SMTPBULK_ENOHOST;
	int rc = reserve_slot(sb, flags);
	if (rc)
		return rc;
	msg->id = atomic_fetch_add_explicit(&sb->next_id, 1, memory_order_relaxed) + 1;
	msg->submit_ns = sb_now_ns();
	if (id_out) /* now: once enqueued, a worker may finish and free msg at any time */
		*id_out = msg->id;
	atomic_fetch_add(&sb->submitted, 1);
	enqueue(sb, msg);
	return 0;
}

void sb_engine_requeue(smtpbulk_t *sb, struct sb_msg *msg)
{
	/* Never blocks: a worker must not wait for room it is the one to make. */
	atomic_fetch_add(&sb->requeued, 1);
	note_queued(sb, atomic_fetch_add(&sb->queued, 1) + 1);
	enqueue(sb, msg);
}

void sb_engine_dequeued(smtpbulk_t *sb, uint64_t n)
{
	uint64_t left = atomic_fetch_sub(&sb->queued, n) - n;
	size_t bound = sb->opts.queue_bound;
	/* Wake blocked producers only once a quarter of the bound is free: waking them
	 * for every message made producer and worker trade a futex call per message. */
	if (atomic_load(&sb->room_waiters) && left <= bound - bound / 4) {
		pthread_mutex_lock(&sb->lock);
		pthread_cond_broadcast(&sb->room);
		pthread_mutex_unlock(&sb->lock);
	}
}

int sb_fire(const smtpbulk_t *sb, smtpbulk_event_cb cb, smtpbulk_event_t *ev,
	    const struct sb_host *host, int host_idx, int conn_idx)
{
	if (!cb)
		return SMTPBULK_CB_DEFAULT;
	ev->host = host ? host->name : NULL;
	ev->port = host ? host->port : 0;
	ev->host_index = host ? host_idx : -1;
	ev->connection = host ? conn_idx : -1;
	return cb(ev, sb->cbs.arg);
}

int sb_engine_complete(smtpbulk_t *sb, struct sb_msg *msg, smtpbulk_status_t st, int err,
		       const struct sb_host *host, int host_idx, int conn_idx,
		       struct latency_hist *lat)
{
	int code = SMTPBULK_CB_DEFAULT;
	msg->res.host = host ? host->name : NULL;
	msg->res.port = host ? host->port : 0;
	msg->res.host_index = host_idx;
	msg->res.connection = conn_idx;
	msg->res.latency_ns = sb_now_ns() - msg->submit_ns;
	if (lat) /* one clock read serves the result and the stats */
		lat_record(lat, msg->res.latency_ns / 1000);
	sb_msg_finish(msg, st, err);
	if (st == SMTPBULK_DELIVERED)
		atomic_fetch_add_explicit(&sb->delivered, 1, memory_order_relaxed);
	else if (st == SMTPBULK_TIMED_OUT)
		atomic_fetch_add_explicit(&sb->timed_out, 1, memory_order_relaxed);
	sb_log_conn(sb, st == SMTPBULK_DELIVERED ? 8 : 7, host ? host_idx : -1, conn_idx,
		    "message %llu: %s %d %s",
	       (unsigned long long)msg->id,
	       st == SMTPBULK_DELIVERED ? "delivered" : smtpbulk_strerror(err),
	       msg->res.reply.code, msg->res.reply.text);

	int pass = st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL;
	smtpbulk_event_cb cb = pass ? sb->cbs.pass : sb->cbs.fail;
	if (cb) {
		smtpbulk_event_t ev = {
			.kind = pass ? SMTPBULK_EV_PASS : SMTPBULK_EV_FAIL,
			.error = err,
			.message = &msg->res,
			.message_id = msg->id,
			.user_data = msg->res.user_data,
		};
		code = sb_fire(sb, cb, &ev, host, host_idx, conn_idx);
	}

	if (sb->opts.on_result) {
		sb->opts.on_result(&msg->res, sb->opts.result_arg);
		sb_msg_free(msg);
	} else if (sb->opts.discard_results) {
		sb_msg_free(msg);
	} else {
		/* The caller frees it, maybe after smtpbulk_destroy(): not into the pool. */
		msg->pool = NULL;
		sbq_enqueue(sb->done_queue, &msg->node);
	}
	/* Counted after delivery, so drain returns only when every result is out. A
	 * drainer is woken by the last result only, not by each one. */
	uint64_t done = atomic_fetch_add(&sb->completed, 1) + 1;
	if (atomic_load(&sb->poll_waiters) ||
	    (atomic_load(&sb->drain_waiters) && done >= atomic_load(&sb->submitted))) {
		pthread_mutex_lock(&sb->lock);
		pthread_cond_broadcast(&sb->done);
		pthread_mutex_unlock(&sb->lock);
	}
	if (sb->cbs.complete && done == atomic_load(&sb->submitted)) {
		smtpbulk_event_t ev = {.kind = SMTPBULK_EV_COMPLETE};
		sb_fire(sb, sb->cbs.complete, &ev, NULL, -1, -1);
	}
	return code;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Wait on sb->done until cond(sb) holds or timeout_ms passes (-1 = forever). */
static int wait_done(smtpbulk_t *sb, int (*cond)(smtpbulk_t *), _Atomic unsigned *waiters,
		     int timeout_ms)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : sb_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	int rc = 0;
	pthread_mutex_lock(&sb->lock);
	atomic_fetch_add(waiters, 1);
	while (!cond(sb)) {
		uint64_t now = sb_now_ns();
		if (now >= end) {
			rc = -ETIMEDOUT;
			break;
		}
		struct timespec ts;
		uint64_t left = (end - now) / 1000000ull;
		/* Wake at least every 100 ms so no lost wake-up can stall us for long. */
		deadline_after(&ts, left > 100 ? 100 : (int)left + 1);
		pthread_cond_timedwait(&sb->done, &sb->lock, &ts);
	}
	atomic_fetch_sub(waiters, 1);
	pthread_mutex_unlock(&sb->lock);
	return rc;
}

static int all_done(smtpbulk_t *sb)
{
	return atomic_load(&sb->completed) >= atomic_load(&sb->submitted);
}

int sb_engine_drain(smtpbulk_t *sb, int timeout_ms)
{
	return wait_done(sb, all_done, &sb->drain_waiters, timeout_ms);
}

static int has_result(smtpbulk_t *sb)
{
	return !sbq_empty(sb->done_queue);
}

int sb_engine_poll(smtpbulk_t *sb, smtpbulk_result_t **out, int timeout_ms)
{
	for (;;) {
		struct sbq_node *n;
		int busy = 0;
		if (sbq_dequeue(sb->done_queue, &n, 1, &busy) == 1) {
			*out = &sb_msg_of_node(n)->res;
			return 1;
		}
		if (busy)
			continue; /* a worker is mid-enqueue: its result is nanoseconds away */
		if (timeout_ms == 0 ||
		    wait_done(sb, has_result, &sb->poll_waiters, timeout_ms) == -ETIMEDOUT)
			return 0;
	}
}

static void cancel_queue(smtpbulk_t *sb, struct sbq *q)
{
	struct sbq_node *nodes[64];
	size_t n;
	int busy;
	/* Every producer has returned by now (destroy must not race submit), so
	 * "busy" cannot last: loop until the queue is really empty. */
	while ((n = sbq_dequeue(q, nodes, 64, &busy)) > 0 || busy) {
		sb_engine_dequeued(sb, n);
		for (size_t i = 0; i < n; i++)
			sb_engine_complete(sb, sb_msg_of_node(nodes[i]), SMTPBULK_CANCELLED,
					   SMTPBULK_ECANCELLED, NULL, -1, -1, NULL);
	}
}

void sb_engine_stop(smtpbulk_t *sb)
{
	if (!sb->started)
		return;
	sb_watchdog_stop(sb); /* it posts to workers: gone before they are */
	atomic_store(&sb->stopping, 1);
	for (unsigned i = 0; i < sb->n_workers; i++)
		sb_worker_wake(sb->workers[i]);
	for (unsigned i = 0; i < sb->n_workers; i++)
		sb_worker_join(sb->workers[i]);
	sb->started = 0;
	for (size_t h = 0; h < sb->n_hosts; h++)
		cancel_queue(sb, sb->hosts[h].queue);
	cancel_queue(sb, sb->any_queue);
}

void sb_engine_destroy(smtpbulk_t *sb)
{
	if (!sb)
		return;
	sb_engine_stop(sb);
	if (sb->workers)
		for (unsigned i = 0; i < sb->n_workers; i++)
			sb_worker_destroy(sb->workers[i]);
	free(sb->workers);
	/* Every thread that logs is gone; the writer reads the host names freed below. */
	sb_logger_free(sb->logger);
	sb->logger = NULL;
	if (sb->done_queue) {
		smtpbulk_result_t *r;
		while (sb_engine_poll(sb, &r, 0) == 1)
			sb_msg_free(sb_msg_of_result(r));
	}
	sbq_destroy(sb->done_queue);
	sbq_destroy(sb->any_queue);
	for (size_t h = 0; sb->hosts && h < sb->n_hosts; h++) {
		free(sb->hosts[h].name);
		free(sb->hosts[h].label);
		free(sb->hosts[h].hello);
		free(sb->hosts[h].on_worker);
		sbq_destroy(sb->hosts[h].queue);
		free(sb->hosts[h].tls_name);
		free(sb->hosts[h].auth_user);
		if (sb->hosts[h].auth_secret) {
			explicit_bzero(sb->hosts[h].auth_secret, strlen(sb->hosts[h].auth_secret));
			free(sb->hosts[h].auth_secret);
		}
		sb_tls_session_free(sb->hosts[h].tls_session);
		pthread_mutex_destroy(&sb->hosts[h].tls_lock);
	}
	sb_tls_ctx_free(sb->tls_ctx);
	free(sb->hosts);
	sb_msg_pool_free(sb->msg_pool); /* after every block the workers could put back */
	free(sb->host_names);
	pthread_mutex_destroy(&sb->lock);
	pthread_cond_destroy(&sb->room);
	pthread_cond_destroy(&sb->done);
	pthread_cond_destroy(&sb->wd_cond);
	free(sb);
}
