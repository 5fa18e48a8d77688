/* The engine's lifecycle (see lifecycle.h). */
#include "lifecycle.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <sched.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "debug_log.h"
#include "sasl.h"
#include "smtp_cmd.h"
#include "tls.h"
#include "watchdog.h"
#include "worker.h"

#define DEFAULT_PORT 25
#define MAX_CONNECTIONS 1000000u

/* What only the lifecycle sees: the handle is its first member, so the public
 * smtpbulk_t is this struct's start. Ownership: the thread that owns the handle
 * (create, start, stop, destroy) writes it; after start the watchdog thread reads wd
 * and the groups wd_groups points to (watchdog.h says who touches what in those). */
struct sb_engine {
	struct smtpbulk sb;
	struct sb_worker **workers;   /* [sb.n_workers] */
	struct wd_group **wd_groups;  /* [sb.n_workers]: each worker's, for the watchdog */
	struct sb_watchdog wd;
};

static struct sb_engine *engine_of(smtpbulk_t *sb)
{
	return (struct sb_engine *)(void *)sb;
}

/* ---- options ---------------------------------------------------------------------- */

/* What 0 means for the unsigned options that have a default (the seed's where it has
 * one: Timeout 60 s, GlobalTimeout 120 s, Retry.Fail 5, Retry.Hang and .GlobalHang 1,
 * Threads 2). Every field named here is an unsigned. */
static const struct {
	size_t off;
	unsigned value;
} option_defaults[] = {
	{offsetof(smtpbulk_options_t, max_attempts), 3},
	{offsetof(smtpbulk_options_t, retry_fail), 5},
	{offsetof(smtpbulk_options_t, window), 8},
	{offsetof(smtpbulk_options_t, connections), 2},
	{offsetof(smtpbulk_options_t, reconnect_ms), 100},
	{offsetof(smtpbulk_options_t, timeout_ms), 60000},
	{offsetof(smtpbulk_options_t, global_timeout_ms), 120000},
	{offsetof(smtpbulk_options_t, watchdog_tick_ms), 100},
	{offsetof(smtpbulk_options_t, retry_hang), 1},
	{offsetof(smtpbulk_options_t, retry_global_hang), 1},
	{offsetof(smtpbulk_options_t, defer_ms), 1000},
	{offsetof(smtpbulk_options_t, breaker_failures), 20},
	{offsetof(smtpbulk_options_t, breaker_cooloff_ms), 30000},
	{offsetof(smtpbulk_options_t, breaker_trips), 3},
	{offsetof(smtpbulk_options_t, throttle_factor_pct), 50},
	{offsetof(smtpbulk_options_t, throttle_cooloff_ms), 60000},
	{offsetof(smtpbulk_options_t, throttle_retries), 10},
};

static void apply_defaults(smtpbulk_options_t *o)
{
	for (size_t i = 0; i < sizeof(option_defaults) / sizeof(option_defaults[0]); i++) {
		unsigned *f = (unsigned *)(void *)((char *)o + option_defaults[i].off);
		if (!*f)
			*f = option_defaults[i].value;
	}
}

static int check_options(const smtpbulk_options_t *opts)
{
	if (opts->struct_size < sizeof(smtpbulk_options_t) || opts->pipeline > 2 ||
	    opts->window > SESS_TXN_MAX ||
	    (opts->tls_min_version && opts->tls_min_version != 12 &&
	     opts->tls_min_version != 13) ||
	    (unsigned)opts->backend > SMTPBULK_BACKEND_EPOLL || (opts->n_hosts && !opts->hosts))
		return -EINVAL;
	return opts->n_hosts ? 0 : SMTPBULK_ENOHOST;
}

/* Per-phase timeouts: what the caller set, else RFC 5321's minimums when asked
 * (§4.5.3.2), else timeout_ms. Unset, the global timeout never fires before a
 * connection's own could. */
static void resolve_phases(struct smtpbulk *sb, const smtpbulk_options_t *opts)
{
	static const unsigned rfc[SESS_PH_COUNT] = {
		[SESS_PH_GREETING] = 300000, [SESS_PH_MAIL] = 300000, [SESS_PH_RCPT] = 300000,
		[SESS_PH_DATA] = 120000,     [SESS_PH_BLOCK] = 180000, [SESS_PH_DOT] = 600000,
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
		sb->phase_ms[p] = set[p] ? set[p] : opts->rfc5321_timeouts ? rfc[p]
									    : sb->opts.timeout_ms;
		if (sb->phase_ms[p] > longest)
			longest = sb->phase_ms[p];
	}
	if (!opts->global_timeout_ms && sb->opts.global_timeout_ms < longest)
		sb->opts.global_timeout_ms = longest;
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

/* One per CPU unless asked; never more than there are connections to run. */
static unsigned count_workers(const struct smtpbulk *sb, const smtpbulk_options_t *opts,
			      int ncpu)
{
	unsigned total = 0;
	for (size_t i = 0; i < opts->n_hosts; i++)
		total += opts->hosts[i].connections ? opts->hosts[i].connections
						    : sb->opts.connections;
	unsigned n = opts->workers ? opts->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
	return n > total ? (total ? total : 1) : n;
}

/* The default EHLO name: the caller's, else this machine's name when it is a valid
 * one, else "localhost". */
static int default_hello(const smtpbulk_options_t *opts, char *name, size_t cap)
{
	if (opts->hello) {
		if (strlen(opts->hello) >= cap)
			return SMTPBULK_EBADPARAM;
		strcpy(name, opts->hello);
		return 0;
	}
	int rc = gethostname(name, cap);
	name[cap - 1] = '\0'; /* gethostname need not terminate a name it truncated */
	if (rc != 0 || smtp_check_hello(name) != 0)
		strcpy(name, "localhost");
	return 0;
}

/* ---- hosts ------------------------------------------------------------------------ */

#define UNIX_PREFIX "unix:"

/* "unix:/path": a unix-domain socket. */
static int resolve_unix(struct sb_host *h)
{
	const char *path = h->name + sizeof(UNIX_PREFIX) - 1;
	struct sockaddr_un *un = (struct sockaddr_un *)(void *)&h->addr;
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(un->sun_path))
		return SMTPBULK_EBADPARAM;
	memset(un, 0, sizeof(*un));
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, len);
	h->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	return 0;
}

static int resolve(struct sb_host *h)
{
	if (strncmp(h->name, UNIX_PREFIX, sizeof(UNIX_PREFIX) - 1) == 0)
		return resolve_unix(h);
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

/* The host's source addresses and their EHLO names (after resolve: they must be of
 * its family). A bad address is the caller's error: SMTPBULK_EBADPARAM. */
static int setup_sources(struct sb_host *h, const smtpbulk_host_t *in)
{
	size_t n = 0;
	while (in->sources && in->sources[n])
		n++;
	if (!n)
		return 0;
	int fam = h->addr.ss_family;
	if (fam == AF_UNIX)
		return SMTPBULK_EBADPARAM; /* nothing to bind a unix socket's client to */
	h->src = calloc(n, sizeof(*h->src));
	h->src_cfg = calloc(n, sizeof(*h->src_cfg));
	h->src_hello = calloc(n, sizeof(*h->src_hello));
	if (!h->src || !h->src_cfg || !h->src_hello)
		return -ENOMEM;
	h->n_src = n;
	for (size_t i = 0; i < n; i++) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)(void *)&h->src[i];
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)(void *)&h->src[i];
		if (fam == AF_INET && inet_pton(AF_INET, in->sources[i], &v4->sin_addr) == 1)
			v4->sin_family = AF_INET;
		else if (fam == AF_INET6 && inet_pton(AF_INET6, in->sources[i], &v6->sin6_addr) == 1)
			v6->sin6_family = AF_INET6;
		else
			return SMTPBULK_EBADPARAM; /* not an address, or not of the host's family */
		if (in->source_hellos && in->source_hellos[i]) {
			int rc = smtp_check_hello(in->source_hellos[i]);
			if (rc)
				return rc;
			if (!(h->src_hello[i] = strdup(in->source_hellos[i])))
				return -ENOMEM;
		}
	}
	return 0;
}

/* A security struct from a header before the token callback ends where it begins. */
#define SECURITY_SIZE_PRE_TOKEN offsetof(smtpbulk_security_t, token_cb)

/* The host's TLS mode and AUTH, from its own security or the options'. */
static int setup_security(struct sb_host *h, const smtpbulk_security_t *caller)
{
	if (!caller)
		return 0;
	/* The caller's struct, of whatever header it was built with; fields its header
	 * lacked are 0. */
	smtpbulk_security_t s, *sec = &s;
	if (caller->struct_size < SECURITY_SIZE_PRE_TOKEN || caller->struct_size > sizeof(s))
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	memcpy(&s, caller, caller->struct_size);
	if (sec->secure > SMTPBULK_SECURE_STARTTLS_REQUIRE)
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
	int token = mech != SESS_AUTH_AUTO && sasl_is_token((enum sasl_mech)mech);
	/* A callback is the token's source: for another mechanism it would never be
	 * asked, which is a mistake to say now rather than a login to fail later. */
	if (sec->token_cb && !token)
		return -EINVAL;
	if (!sec->user || !*sec->user || strlen(sec->user) > SASL_NAME_MAX)
		return -EINVAL;
	if (!sec->token_cb &&
	    (!sec->secret || strlen(sec->secret) > (token ? SASL_TOKEN_MAX : SASL_NAME_MAX)))
		return -EINVAL;
	h->auth_user = strdup(sec->user);
	h->auth_secret = strdup(sec->secret ? sec->secret : "");
	if (!h->auth_user || !h->auth_secret)
		return -ENOMEM;
	h->auth.mech = mech;
	h->auth.user = h->auth_user;
	h->auth.secret = h->auth_secret;
	h->auth.allow_plaintext = sec->auth_plaintext != 0;
	h->auth.token_cb = sec->token_cb;
	h->auth.token_arg = sec->token_arg;
	h->auth.host = h->name;
	if (h->addr.ss_family != AF_UNIX) { /* where RFC 7628 says the client connected */
		h->auth.bearer_host = h->name;
		h->auth.bearer_port = h->port;
	}
	if (token) {
		/* The user, the host and a static token go into every AUTH line: they are
		 * checked once, here (a callback's token on each connection). */
		const char *t = sec->token_cb ? "x" : h->auth_secret;
		struct sasl_client *c = malloc(sizeof(*c));
		char *line = malloc(SASL_LINE_MAX);
		int rc = c && line ? sasl_start_token(c, (enum sasl_mech)mech, h->auth_user, t,
						      strlen(t), h->auth.bearer_host,
						      h->auth.bearer_port, line, SASL_LINE_MAX)
				   : -ENOMEM;
		if (c)
			sasl_clear(c);
		if (line)
			explicit_bzero(line, SASL_LINE_MAX);
		free(c);
		free(line);
		if (rc < 0)
			return rc == -ENOMEM ? rc : SMTPBULK_EBADPARAM;
	}
	h->cfg.auth = &h->auth;
	return 0;
}

static int setup_host(smtpbulk_t *sb, struct sb_host *h, const smtpbulk_host_t *in,
		      const char *default_name)
{
	int rc;
	pthread_mutex_init(&h->tls_lock, NULL);
	if ((rc = sb_cmd_list_init(&h->cmds)) != 0)
		return rc;
	h->cfg.learned = &h->learned;
	if (!in->host || !*in->host || smtp_check_hello(in->host) != 0)
		return SMTPBULK_EBADPARAM;
	if (in->connections > MAX_CONNECTIONS)
		return -EINVAL;
	h->name = strdup(in->host);
	h->hello = strdup(in->hello ? in->hello : default_name);
	h->on_worker = calloc(sb->n_workers, 1);
	h->port = in->port ? in->port : DEFAULT_PORT;
	h->connections = in->connections ? in->connections : sb->opts.connections;
	size_t nc = h->connections ? h->connections : 1;
	if ((h->conn_ctr = aligned_alloc(alignof(struct sb_conn_counters), nc * sizeof(*h->conn_ctr))))
		memset(h->conn_ctr, 0, nc * sizeof(*h->conn_ctr));
	h->lat = calloc(sb->n_workers, sizeof(*h->lat));
	h->codes = calloc(nc, sizeof(*h->codes));
	/* Logs name a host by name, and by name:port when the port is not 25. */
	size_t ll = strlen(in->host) + 8;
	h->label = malloc(ll);
	if (!h->name || !h->hello || !h->on_worker || !h->label || !h->conn_ctr || !h->lat ||
	    !h->codes)
		return -ENOMEM;
	if (h->port == DEFAULT_PORT)
		snprintf(h->label, ll, "%s", in->host);
	else
		snprintf(h->label, ll, "%s:%u", in->host, h->port);
	if ((rc = smtp_check_hello(h->hello)) != 0)
		return rc;
	if ((rc = resolve(h)) != 0)
		return rc;
	if ((rc = setup_sources(h, in)) != 0)
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
	h->cfg.max_per_conn = sb->opts.max_per_conn;
	h->cfg.lmtp = in->lmtp != 0;
	h->cfg.dsn_required = sb->opts.dsn_required != 0;
	h->cfg.retry_temp_rcpts = sb->opts.retry_temp_rcpts != 0;
	h->cfg.throttle_patterns = (const char *const *)sb->throttle_patterns;
	h->cfg.throttle_retries = sb->opts.throttle_factor_pct < 100 ? sb->opts.throttle_retries : 0;
	const smtpbulk_rate_t *rate = in->rate.messages ? &in->rate : &sb->opts.host_rate;
	pacer_init(&h->pacer, pacer_interval_of(rate->messages, rate->per_ms), rate->burst);
	if (!(h->meters = aligned_alloc(alignof(struct rate_meter),
					sb->n_workers * sizeof(*h->meters))))
		return -ENOMEM;
	memset(h->meters, 0, sb->n_workers * sizeof(*h->meters));
	if ((rc = setup_security(h, in->security ? in->security : sb->opts.security)) != 0)
		return rc;
	for (size_t i = 0; i < h->n_src; i++) { /* the host's, but for the EHLO name */
		h->src_cfg[i] = h->cfg;
		if (h->src_hello[i])
			h->src_cfg[i].hello = h->src_hello[i];
	}
	atomic_init(&h->alive, h->connections);
	atomic_init(&h->last_error, 0);
	return 0;
}

static int setup_hosts(smtpbulk_t *sb, const smtpbulk_options_t *opts, const char *hello)
{
	int rc;
	if (!(sb->hosts = calloc(opts->n_hosts, sizeof(*sb->hosts))))
		return -ENOMEM;
	sb->n_hosts = opts->n_hosts;
	for (size_t i = 0; i < opts->n_hosts; i++)
		if ((rc = setup_host(sb, &sb->hosts[i], &opts->hosts[i], hello)) != 0)
			return rc;
	atomic_init(&sb->hosts_alive, (unsigned)sb->n_hosts);
	if (!(sb->host_names = calloc(sb->n_hosts, sizeof(*sb->host_names))))
		return -ENOMEM;
	for (size_t i = 0; i < sb->n_hosts; i++)
		sb->host_names[i] = sb->hosts[i].label;
	return 0;
}

/* One TLS context, when some host uses TLS; trust loaded when some host verifies. */
static int setup_tls(smtpbulk_t *sb, const smtpbulk_options_t *opts)
{
	int tls_wanted = 0, tls_verify = 0;
	for (size_t i = 0; i < sb->n_hosts; i++) {
		tls_wanted |= sb->hosts[i].cfg.secure != SMTPBULK_SECURE_NONE;
		tls_verify |= sess_secure_verifies(sb->hosts[i].cfg.secure);
	}
	if (!tls_wanted)
		return 0;
	struct sb_tls_ctx_cfg tc = {
		.load_trust = tls_verify,
		.ca_file = opts->tls_ca_file,
		.ca_dir = opts->tls_ca_dir,
		.cert_file = opts->tls_cert_file,
		.key_file = opts->tls_key_file,
		.min_version = opts->tls_min_version,
	};
	char why[300];
	int rc = sb_tls_ctx_new(&tc, &sb->tls_ctx, why, sizeof(why));
	/* create() has no log yet; say it where a caller with a log sees it. */
	if (rc && opts->on_log && opts->debug > 0)
		opts->on_log(1, why, opts->log_arg);
	return rc;
}

static int setup_workers(struct sb_engine *e, const smtpbulk_options_t *opts, const int *cpus,
			 int ncpu)
{
	struct smtpbulk *sb = &e->sb;
	e->workers = calloc(sb->n_workers, sizeof(*e->workers));
	e->wd_groups = calloc(sb->n_workers, sizeof(*e->wd_groups));
	sb->wake_fds = calloc(sb->n_workers, sizeof(*sb->wake_fds));
	if (!e->workers || !e->wd_groups || !sb->wake_fds)
		return -ENOMEM;
	for (unsigned i = 0; i < sb->n_workers; i++) {
		int cpu = (opts->no_pin || ncpu <= 0) ? -1 : cpus[i % (unsigned)ncpu];
		int rc = sb_worker_create(sb, i, cpu, &e->workers[i]);
		if (rc)
			return rc;
		sb->wake_fds[i] = sb_worker_wake_fd(e->workers[i]);
		e->wd_groups[i] = sb_worker_watchdog(e->workers[i]);
	}
	return 0;
}

/* Options that hold the caller's pointers are used during create only. */
static void forget_caller_pointers(smtpbulk_options_t *o)
{
	o->hosts = NULL;
	o->callbacks = NULL;
	o->hello = NULL;
	o->security = NULL;
	o->tls_ca_file = o->tls_ca_dir = NULL;
	o->tls_cert_file = o->tls_key_file = NULL;
	o->debug_path = NULL; /* the logger keeps its own copy */
	o->throttle_patterns = NULL; /* copied to sb->throttle_patterns */
}

/* The caller's throttle patterns, copied (NULL-terminated). An empty one would match
 * every reply: -EINVAL. */
static int copy_patterns(smtpbulk_t *sb, const char *const *in)
{
	size_t n = 0;
	if (!in)
		return 0;
	while (in[n])
		if (!*in[n++])
			return -EINVAL;
	if (!(sb->throttle_patterns = calloc(n + 1, sizeof(*sb->throttle_patterns))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(sb->throttle_patterns[i] = strdup(in[i])))
			return -ENOMEM;
	return 0;
}

int sb_engine_create(const smtpbulk_options_t *opts, smtpbulk_t **out)
{
	char hello[256];
	int cpus[CPU_SETSIZE];
	int rc;

	if (!opts || !out)
		return -EINVAL;
	if ((rc = check_options(opts)) != 0)
		return rc;
	if (opts->callbacks && opts->callbacks->struct_size < sizeof(smtpbulk_callbacks_t))
		return -EINVAL;
	/* Aligned as its cache-line groups are (engine.h). */
	struct sb_engine *e = aligned_alloc(alignof(struct sb_engine), sizeof(*e));
	if (!e)
		return -ENOMEM;
	memset(e, 0, sizeof(*e));
	smtpbulk_t *sb = &e->sb;
	sb->opts = *opts;
	if (opts->callbacks) /* copied: the caller's struct may be a temporary */
		sb->cbs = *opts->callbacks;
	apply_defaults(&sb->opts);
	resolve_phases(sb, opts);
	sb->breaker_cfg = (struct hb_cfg){
		.failures = sb->opts.breaker_failures,
		.cooloff_ns = (uint64_t)sb->opts.breaker_cooloff_ms * SB_NS_PER_MS,
		.trips = sb->opts.breaker_trips,
	};
	sb->adapt = (struct pacer_adapt_cfg){
		.factor_pct = sb->opts.throttle_factor_pct,
		.cooloff_ns = (uint64_t)sb->opts.throttle_cooloff_ms * SB_NS_PER_MS,
	};
	pacer_init(&sb->global_pacer,
		   pacer_interval_of(opts->global_rate.messages, opts->global_rate.per_ms),
		   opts->global_rate.burst);
	pthread_mutex_init(&sb->lock, NULL);
	sb_cond_init(&sb->room); /* timed waits must not jump with the wall clock */
	sb_cond_init(&sb->done);
	int ncpu = allowed_cpus(cpus, CPU_SETSIZE);
	sb->n_workers = count_workers(sb, opts, ncpu);
	sb->backend_name = "none";

	if ((rc = copy_patterns(sb, opts->throttle_patterns)) != 0 ||
	    (rc = default_hello(opts, hello, sizeof(hello))) != 0 ||
	    (rc = setup_hosts(sb, opts, hello)) != 0 || (rc = setup_tls(sb, opts)) != 0)
		goto fail;
	forget_caller_pointers(&sb->opts);
	if (sb->opts.debug > 0 && !sb->opts.on_log &&
	    (rc = sb_logger_new(opts->debug_path, sb->host_names, sb->n_hosts, &sb->logger)) != 0)
		goto fail;
	/* Up to 4 MB of freed blocks kept per size class: the peak of messages in flight
	 * is reused instead of going back to malloc each time. */
	rc = -ENOMEM;
	if (!(sb->msg_pool = sb_msg_pool_new(4u << 20)) ||
	    !(sb->lat_other = calloc(1, sizeof(*sb->lat_other))))
		goto fail;
	/* The event queue before the workers: connections pick their ops by cbs.read. */
	if (opts->event_queue) {
		rc = -EINVAL; /* one taker for results and events, never half and half */
		if (opts->callbacks || opts->on_result || opts->discard_results ||
		    (rc = sb_evq_new(opts->event_queue_kinds, opts->event_queue_hold,
				      &sb->evq)) != 0)
			goto fail;
		sb_evq_install(sb->evq, &sb->cbs);
	}
	if ((rc = sbq_create(&sb->any_queue)) != 0 || (rc = sbq_create(&sb->done_queue)) != 0 ||
	    (rc = setup_workers(e, opts, cpus, ncpu)) != 0)
		goto fail;
	*out = sb;
	return 0;
fail:
	sb_engine_destroy(sb);
	return rc;
}

/* ---- start and stop --------------------------------------------------------------- */

static int busy(void *arg)
{
	smtpbulk_t *sb = arg;
	/* Messages in progress: queued or on a connection, not waiting for a 4xx retry.
	 * While a host's breaker is open its messages wait on purpose, and so do those a
	 * pacer holds back: no global hang. */
	return atomic_load(&sb->submitted) >
		       atomic_load(&sb->completed) + atomic_load(&sb->deferred_now) &&
	       atomic_load(&sb->breakers_open) == 0 && atomic_load(&sb->paced_until) <= sb_now_ns();
}

static void on_global_hang(void *arg, int give_up)
{
	smtpbulk_t *sb = arg;
	atomic_fetch_add(&sb->global_hangs, 1);
	sb_log(sb, 7, "global hang: no server answered for %u ms; %s", sb->opts.global_timeout_ms,
	       give_up ? "giving up on the messages in progress" : "reconnecting everything");
	smtpbulk_event_t ev = {.kind = SMTPBULK_EV_GLOBAL_HANG, .error = SMTPBULK_ETIMEDOUT};
	sb_fire(sb, sb->cbs.global_hang, &ev, NULL, -1, -1);
}

static int start_watchdog(struct sb_engine *e)
{
	struct smtpbulk *sb = &e->sb;
	const unsigned *p = sb->phase_ms;
	sb_log(sb, 5,
	       "watchdog every %u ms; timeouts ms: greeting %u, mail %u, rcpt %u, data %u, "
	       "block %u, dot %u; global %u",
	       sb->opts.watchdog_tick_ms, p[SESS_PH_GREETING], p[SESS_PH_MAIL], p[SESS_PH_RCPT],
	       p[SESS_PH_DATA], p[SESS_PH_BLOCK], p[SESS_PH_DOT], sb->opts.global_timeout_ms);
	e->wd.tick_ms = sb->opts.watchdog_tick_ms;
	e->wd.global_ms = sb->opts.global_timeout_ms;
	e->wd.retry_global = sb->opts.retry_global_hang;
	e->wd.groups = e->wd_groups;
	e->wd.n_groups = sb->n_workers;
	e->wd.busy = busy;
	e->wd.on_global = on_global_hang;
	e->wd.arg = sb;
	return sb_watchdog_start(&e->wd);
}

static void stop_workers(struct sb_engine *e, unsigned n)
{
	atomic_store(&e->sb.stopping, 1);
	/* Commands no connection took end now, not after the workers' grace: their
	 * callers get SMTPBULK_ECANCELLED at once, and a late one SMTPBULK_ESTOPPED
	 * (stopping connections take none; those out are cancelled by conn_stop). */
	for (size_t h = 0; h < e->sb.n_hosts; h++)
		sb_cmd_list_fail(&e->sb.hosts[h].cmds, SMTPBULK_ECANCELLED, 1);
	sb_engine_wake(&e->sb, -1);
	for (unsigned i = 0; i < n; i++)
		sb_worker_join(e->workers[i]);
}

int sb_engine_start(smtpbulk_t *sb)
{
	struct sb_engine *e = engine_of(sb);
	int rc = 0;
	unsigned started = 0;
	if (sb->started)
		return -EALREADY;
	/* Each start waits until its worker built its ring: a backend that cannot run
	 * here fails start, not the first submit. */
	for (; started < sb->n_workers; started++)
		if ((rc = sb_worker_start(e->workers[started])) != 0)
			break;
	if (rc) {
		stop_workers(e, started);
		return rc;
	}
	sb->started = 1;
	sb->backend_name = sb_worker_backend(e->workers[0]);
	snprintf(sb->backend_desc, sizeof(sb->backend_desc), "%s", sb_worker_desc(e->workers[0]));
	if ((rc = start_watchdog(e)) != 0) {
		sb_engine_stop(sb);
		return rc;
	}
	return 0;
}

void sb_engine_stop(smtpbulk_t *sb)
{
	struct sb_engine *e = engine_of(sb);
	if (!sb->started)
		return;
	sb_watchdog_stop(&e->wd); /* it posts to workers: gone before they are */
	stop_workers(e, sb->n_workers);
	sb->started = 0;
	/* Every producer has returned by now (destroy must not race submit), so an
	 * enqueuer mid-way cannot last: loop until each queue is really empty. */
	for (size_t h = 0; h < sb->n_hosts; h++)
		while (sb_engine_fail_queue(sb, sb->hosts[h].queue, SMTPBULK_CANCELLED,
					    SMTPBULK_ECANCELLED))
			;
	while (sb_engine_fail_queue(sb, sb->any_queue, SMTPBULK_CANCELLED, SMTPBULK_ECANCELLED))
		;
}

/* ---- submit, drain, poll ---------------------------------------------------------- */

int sb_engine_submit(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags, uint64_t *id_out)
{
	return sb_engine_submit_batched(sb, msg, flags, id_out, NULL);
}

int sb_engine_submit_batched(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags,
			     uint64_t *id_out, int *wake_owed)
{
	if (!sb->started || atomic_load(&sb->stopping))
		return SMTPBULK_ESTOPPED;
	if (msg->host >= (int)sb->n_hosts || msg->host < -1)
		return SMTPBULK_ENOHOST;
	int rc = sb_engine_reserve(sb, flags | (wake_owed ? SMTPBULK_SUBMIT_NONBLOCK : 0));
	if (rc == -EAGAIN && wake_owed && !(flags & SMTPBULK_SUBMIT_NONBLOCK)) {
		/* Waiting for room that the workers make: they must know of what is queued
		 * first, or they may sleep on it while we wait. */
		if (*wake_owed) {
			sb_engine_wake(sb, -1);
			*wake_owed = 0;
		}
		rc = sb_engine_reserve(sb, flags);
	}
	if (rc)
		return rc;
	msg->id = atomic_fetch_add_explicit(&sb->next_id, 1, memory_order_relaxed) + 1;
	if (!msg->start_ns)
		msg->start_ns = sb_now_ns();
	if (id_out) /* now: once enqueued, a worker may finish and free msg at any time */
		*id_out = msg->id;
	atomic_fetch_add(&sb->submitted, 1);
	if (!wake_owed) {
		sb_engine_enqueue(sb, msg);
	} else {
		int host;
		if (sb_engine_enqueue_quiet(sb, msg, &host))
			*wake_owed = 1;
	}
	return 0;
}

/* Wait on sb->done until cond(sb) holds or timeout_ms passes (-1 = forever). */
static int wait_done(smtpbulk_t *sb, int (*cond)(smtpbulk_t *), _Atomic unsigned *waiters,
		     int timeout_ms)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX : sb_now_ns() + (uint64_t)timeout_ms * SB_NS_PER_MS;
	int rc = 0;
	pthread_mutex_lock(&sb->lock);
	atomic_fetch_add(waiters, 1);
	while (!cond(sb)) {
		uint64_t now = sb_now_ns();
		if (now >= end) {
			rc = -ETIMEDOUT;
			break;
		}
		/* Wake at least every 100 ms so no lost wake-up can stall us for long. */
		uint64_t left = end - now;
		struct timespec ts = sb_deadline_in(left > 100 * SB_NS_PER_MS ? 100 * SB_NS_PER_MS
									  : left);
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
		int busy_q = 0;
		if (sbq_dequeue(sb->done_queue, &n, 1, &busy_q) == 1) {
			*out = &sb_msg_of_node(n)->res;
			return 1;
		}
		if (busy_q)
			continue; /* a worker is mid-enqueue: its result is nanoseconds away */
		if (timeout_ms == 0 ||
		    wait_done(sb, has_result, &sb->poll_waiters, timeout_ms) == -ETIMEDOUT)
			return 0;
	}
}

/* ---- destroy ---------------------------------------------------------------------- */

static void free_host(struct sb_host *h)
{
	free(h->name);
	free(h->label);
	free(h->hello);
	free(h->on_worker);
	free(h->conn_ctr);
	free(h->codes);
	free(h->lat);
	free(h->meters);
	for (size_t i = 0; i < h->n_src; i++)
		free(h->src_hello[i]);
	free(h->src_hello);
	free(h->src);
	free(h->src_cfg);
	sbq_destroy(h->queue);
	free(h->tls_name);
	free(h->auth_user);
	if (h->auth_secret) {
		explicit_bzero(h->auth_secret, strlen(h->auth_secret));
		free(h->auth_secret);
	}
	sb_tls_session_free(h->tls_session);
	pthread_mutex_destroy(&h->tls_lock);
	sb_cmd_list_destroy(&h->cmds);
}

void sb_engine_destroy(smtpbulk_t *sb)
{
	if (!sb)
		return;
	struct sb_engine *e = engine_of(sb);
	if (sb->ext_free)
		sb->ext_free(sb->ext);
	sb->ext = NULL;
	sb_engine_stop(sb);
	if (e->workers)
		for (unsigned i = 0; i < sb->n_workers; i++)
			sb_worker_destroy(e->workers[i]);
	free(e->workers);
	free(e->wd_groups);
	free(sb->wake_fds);
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
	sb_evq_free(sb->evq); /* what the caller did not take; items it holds live on */
	for (size_t h = 0; sb->hosts && h < sb->n_hosts; h++)
		free_host(&sb->hosts[h]);
	for (size_t i = 0; sb->throttle_patterns && sb->throttle_patterns[i]; i++)
		free((void *)sb->throttle_patterns[i]);
	free(sb->throttle_patterns);
	sb_tls_ctx_free(sb->tls_ctx);
	free(sb->hosts);
	sb_msg_pool_free(sb->msg_pool); /* after every block the workers could put back */
	free(sb->lat_other);
	free(sb->host_names);
	pthread_mutex_destroy(&sb->lock);
	pthread_cond_destroy(&sb->room);
	pthread_cond_destroy(&sb->done);
	free(e);
}
