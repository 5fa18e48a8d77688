/*
 * smtpbulk load: a load generator that does what Postfix smtp-source does, and more.
 * Its options and its report are a contract: scripts depend on them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "commands.h"
#include "load_phases.h"
#include "sink_server.h"
#include "smtpbulk.h"
#include "tool_security.h"
#include "tool_util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk load [options] [HOST[:PORT]]\n"
		"\n"
		"Send generated mail to an SMTP server over many connections and report\n"
		"throughput and latency. Without HOST, a built-in sink is started in this\n"
		"process on a free 127.0.0.1 port and targeted. PORT defaults to 25; IPv6 as\n"
		"[ADDR]:PORT; unix:/PATH for a unix-domain socket.\n"
		"\n"
		"  -s, --sessions N        concurrent connections (default 8, at most 65535 and\n"
		"                          what the open-file limit allows)\n"
		"  -m, --messages N        messages to send (default 10000)\n"
		"  -r, --recipients N      recipients per message (default 1)\n"
		"  -l, --size BYTES        body size (default 1000)\n"
		"  -P, --pipeline 0|1|2    0 lockstep, 1 envelope in one write, 2 one round trip\n"
		"                          per message, BDAT with CHUNKING (default 2); 1 and 2\n"
		"                          need the server's PIPELINING\n"
		"  -w, --window N          transactions in flight per connection in mode 2 with\n"
		"                          CHUNKING, 1-16 (default 8)\n"
		"  -f, --from ADDR         envelope sender (default sender@example.com)\n"
		"  -t, --to ADDR           recipient; a sequence number is prefixed per message\n"
		"                          and recipient, like smtp-source -N (default\n"
		"                          rcpt@example.com)\n"
		"      --rate N            open loop: start N messages per second; latency counts\n"
		"                          from the scheduled start, so a slow server cannot hide\n"
		"                          its queueing\n"
		"      --duration SEC      run for SEC seconds instead of a message count\n"
		"      --json              print one JSON object at the end on stdout\n"
		"  -q, --quiet             no progress and no report (errors and --json only)\n"
		"      --hello NAME        EHLO name (default: this machine's host name)\n"
		"      --workers N         worker threads (default: one per CPU)\n"
		"      --backend NAME      auto, io_uring or epoll (default auto)\n"
		"      --plain-recv        a receive buffer per connection instead of io_uring\n"
		"                          multishot receives into a per-worker buffer pool\n"
		"      --bound N           most messages queued at once (default 10000)\n"
		"      --sink-threads N    threads of the built-in sink (default 1)\n"
		"  -d, --debug N           debug level 0-10 (5 summary, 7 hangs and fails, 8\n"
		"                          passes, 10 protocol trace), to stderr (default 0)\n"
		"      --debug-path TMPL   debug lines to files instead: [HOST] [THREAD] [YYYY]\n"
		"                          [MM] [DD] [WK] [hh] [mm] [ss]; 'default' is\n"
		"                          debug_[HOST]_[THREAD].txt (needs --debug)\n"
		"timeouts and retries (the seed's Timeout, GlobalTimeout, Retry and Sleep;\n"
		"SEC may have decimals; a retry count of 0 means unlimited):\n"
		"      --timeout SEC       a connection with no complete answer this long has\n"
		"                          hung (a reply dribbled byte by byte is no answer):\n"
		"                          its messages go again elsewhere (default 60)\n"
		"      --rfc5321-timeouts  per-phase timeouts of RFC 5321 4.5.3.2 (greeting, MAIL,\n"
		"                          RCPT 5 min, DATA 2, data block 3, final dot 10)\n"
		"                          instead of --timeout\n"
		"      --global-timeout SEC  no complete answer on any connection this long:\n"
		"                          everything reconnects (default 120)\n"
		"      --retry-hang N      retries of a message after hangs (default 1)\n"
		"      --retry-global-hang N  global hangs survived (default 1)\n"
		"      --sleep-hang SEC    pause before reconnecting after a hang (default 0)\n"
		"      --sleep-fail SEC    pause before reconnecting after a failure (default 0.1)\n"
		"      --retry-fail N      failed connections in a row before one gives up\n"
		"                          (default 5)\n"
		"      --max-attempts N    transactions per message after 4xx replies or\n"
		"                          connection trouble (default 3)\n"
		"      --defer SEC         pause before a 4xx retry, doubled each time (default 1)\n"
		"      --retry-temp-rcpts  a message some of whose recipients got a 4xx is sent\n"
		"                          again to those alone after --defer (counted against\n"
		"                          --max-attempts); without it such a message ends\n"
		"                          PARTIAL\n"
		"      --breaker N         circuit breaker: after N transactions in a row that end\n"
		"                          without a verdict (4xx, 421, lost, garbled), the host\n"
		"                          takes none for --breaker-cooloff, then one probe\n"
		"                          message; 0 = no breaker (default 20)\n"
		"      --breaker-cooloff SEC  how long it stays open (default 30)\n"
		"      --breaker-trips N   openings in a row before the host counts as down and\n"
		"                          what waits for it fails (default 3; 0 = never)\n"
		"Connection limits (a connection that reaches one says QUIT and connects again\n"
		"when there is something to send):\n"
		"      --max-per-conn N    messages per connection (default: no limit)\n"
		"      --max-conn-age SEC  how long a connection lives from its connect\n"
		"                          (default: no limit)\n"
		"      --idle-close SEC    close a connection idle this long (default: never)\n"
		"      --source ADDR[=NAME][,ADDR[=NAME]...]  local addresses to connect from,\n"
		"                          spread over the connections, each with its own EHLO\n"
		"                          NAME (default --hello); one that cannot be bound fails\n"
		"                          its connections (no fallback to the default route)\n"
		"      --lmtp              speak LMTP (RFC 2033: LHLO, a reply per recipient\n"
		"                          after the data) to the target\n"
		"DSN (RFC 3461; sent where the server offers DSN, else left out):\n"
		"      --dsn-notify LIST   NOTIFY for every recipient: NEVER, or any of\n"
		"                          SUCCESS,FAILURE,DELAY\n"
		"      --dsn-ret FULL|HDRS what a bounce carries\n"
		"      --envid             an ENVID per message (load-N)\n"
		"      --dsn-required      a server without DSN: the messages are refused here\n"
		"                          (SMTPBULK_ENODSN) instead of going without\n"
		"Pacing (shared by every connection; a message waits in the queue for its turn):\n"
		"      --limit-rate N[/s|/m|/h][:BURST]  at most N messages per second, minute\n"
		"                          or hour, BURST at once after a quiet spell (default:\n"
		"                          no limit; BURST 1)\n"
		"      --throttle-factor PCT  a throttling reply (4.7.x, 4.3.2, 4.4.5 or a\n"
		"                          rate-limit text on 421/450/451/452) sets the rate to\n"
		"                          PCT%% of what the server was taking, then it climbs\n"
		"                          back to 90%% of that; 100 = treat it as any 4xx\n"
		"                          (default 50)\n"
		"      --throttle-cooloff SEC  how long the slowed rate holds before it climbs\n"
		"                          (default 60)\n"
		"TLS and AUTH:\n"
		"      --tls MODE          none (default); smtps: TLS from the first byte (port\n"
		"                          465); starttls: STARTTLS or nothing is sent;\n"
		"                          starttls-optional: STARTTLS when offered, else\n"
		"                          plaintext (says so at --debug 5); a handshake that\n"
		"                          fails is not followed by plaintext: nothing is sent\n"
		"      --tls-verify        check the server's certificate chain and name (smtps\n"
		"                          and starttls); without it the connection is encrypted\n"
		"                          but not authenticated\n"
		"      --ca PATH           CA file or directory to verify with (default: the\n"
		"                          system trust store)\n"
		"      --tls-name NAME     name sent as SNI and checked in the certificate\n"
		"                          (default: HOST)\n"
		"      --cert FILE --key FILE  client certificate and key (PEM)\n"
		"      --tls-min 1.2|1.3   lowest TLS version accepted (default 1.2)\n"
		"      --sink-cert FILE --sink-key FILE  certificate of the built-in sink, which\n"
		"                          then speaks --tls too (needed for --tls without HOST)\n"
		"                          and, with --auth, requires that account\n"
		"      --auth MECH         AUTO (the strongest both sides have), PLAIN, LOGIN,\n"
		"                          CRAM-MD5, XOAUTH2 or OAUTHBEARER (the password is the\n"
		"                          bearer token) or SCRAM-SHA-256\n"
		"      --user NAME         the account for --auth\n"
		"      --password-file FILE  the password (its first line); else the\n"
		"                          SMTPBULK_PASSWORD environment variable. Never on the\n"
		"                          command line, where every local user could read it\n"
		"      --auth-plaintext    allow AUTH on a connection without TLS\n"
		"      --reconnect-every N  each connection closes and reconnects after N\n"
		"                          messages (reconnect and handshake benchmarks; needs\n"
		"                          -P 0 or 1, so nothing is in flight when it closes)\n"
		"      --no-tls-resume     with --reconnect-every: a full handshake each time\n"
		"                          instead of resuming the TLS session\n"
		"  -h, --help              this text\n"
		"\n"
		"While it runs on a terminal it shows progress on stderr. At the end it reports\n"
		"messages, delivered, partial, rejected (5xx), failed (4xx or connection\n"
		"trouble after the retries, or cancelled), timed out; deferred (4xx retries),\n"
		"hangs and reconnects; TLS handshakes (and how many resumed); elapsed, msgs/s,\n"
		"MB/s, latency percentiles and the client's CPU time (without the built-in\n"
		"sink's); the count of each outcome category (delivered, hard_bounce, soft,\n"
		"throttled, policy, too_large, protocol, network, local, other); and p50/p99\n"
		"of each phase that happened: queued, paced, connect, tls, greeting, ehlo,\n"
		"auth (once per connection), mail, rcpt, data, dot (the waits for those\n"
		"replies, once per message). --json has them as \"categories\" and\n"
		"\"phases_ms\".NAME.{p50,p99,samples}. The first few undelivered messages are\n"
		"named on stderr with why.\n"
		"exit status: 0 every message delivered, 1 some not delivered, 2 usage error,\n"
		"             3 could not start\n");
}


#define CONN_TRACK 4096 /* --reconnect-every counts per connection index up to this */

/* Shared with the engine's workers through the callbacks: the plain fields are set
 * before the engine starts and only read after; the atomics are any worker's to add to. */
struct load_state {
	uint64_t reconnect_every;
	int reconnect_code;
	_Atomic uint32_t passed[CONN_TRACK]; /* messages passed per connection (any host) */
	_Atomic uint64_t by_status[6];
	_Atomic uint64_t by_category[SMTPBULK_CAT_OTHER + 1];
	struct load_phases *phases; /* set before the start; load_phases.h says who adds */
	_Atomic uint64_t printed;
};

static void on_result(const smtpbulk_result_t *r, void *arg)
{
	struct load_state *st = arg;
	if ((unsigned)r->status < 6)
		atomic_fetch_add_explicit(&st->by_status[r->status], 1, memory_order_relaxed);
	if ((unsigned)r->category <= SMTPBULK_CAT_OTHER)
		atomic_fetch_add_explicit(&st->by_category[r->category], 1, memory_order_relaxed);
	load_phases_record(st->phases, r);
	/* Show the first few failures, -q or not (they are errors): enough to see what is
	 * wrong, never a flood. */
	if (r->status != SMTPBULK_DELIVERED && atomic_fetch_add(&st->printed, 1) < 5)
		fprintf(stderr, "smtpbulk load: message %" PRIu64 " not delivered: %s%s%.0d%s%s%s\n",
			r->id, smtpbulk_strerror(r->error), r->reply.code ? " (" : "",
			r->reply.code, r->reply.code ? " " : "", r->reply.text,
			r->reply.code ? ")" : "");
}

/* --reconnect-every: after N messages a connection closes and comes back, resuming its
 * TLS session (202) or not (203). Each index is one worker's, so no two threads race. */
static int on_pass(const smtpbulk_event_t *ev, void *arg)
{
	struct load_state *st = arg;
	if (ev->connection < 0 || ev->connection >= CONN_TRACK)
		return SMTPBULK_CB_DEFAULT;
	uint32_t n = atomic_fetch_add_explicit(&st->passed[ev->connection], 1,
					       memory_order_relaxed) + 1;
	return n % st->reconnect_every == 0 ? st->reconnect_code : SMTPBULK_CB_DEFAULT;
}

/* The progress line's thread: it only reads the engine's counters; stop is the main
 * thread's to set. */
struct progress {
	smtpbulk_t *sb;
	uint64_t total; /* 0 = unknown (--duration) */
	_Atomic int stop;
	pthread_t thread;
};

static void *progress_main(void *arg)
{
	struct progress *p = arg;
	uint64_t t0 = tool_now_ns();
	while (!atomic_load(&p->stop)) {
		struct timespec ts = {0, 250000000};
		nanosleep(&ts, NULL);
		smtpbulk_counters_t c;
		smtpbulk_get_counters(p->sb, &c);
		double el = (double)(tool_now_ns() - t0) / 1e9;
		if (p->total)
			fprintf(stderr, "\r%" PRIu64 "/%" PRIu64 " done, %.0f msgs/s, %" PRIu64
				" not delivered   ", c.completed, p->total, el > 0 ? c.completed / el : 0,
				c.not_delivered);
		else
			fprintf(stderr, "\r%" PRIu64 " done, %.0f msgs/s, %" PRIu64 " not delivered   ",
				c.completed, el > 0 ? c.completed / el : 0, c.not_delivered);
	}
	fprintf(stderr, "\r%60s\r", "");
	return NULL;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Exit statuses: the usage text promises them to scripts. */
enum { LOAD_OK = 0, LOAD_UNDELIVERED = 1, LOAD_USAGE = 2, LOAD_NOSTART = 3 };

/* Codes of the long options without a letter of their own (below every letter). */
enum {
	OPT_TIMEOUT = 1, OPT_GLOBAL_TIMEOUT, OPT_RETRY_HANG, OPT_RETRY_GLOBAL_HANG,
	OPT_SLEEP_HANG, OPT_SLEEP_FAIL, OPT_RETRY_FAIL, OPT_MAX_ATTEMPTS, OPT_DEFER,
	OPT_BREAKER, OPT_BREAKER_COOLOFF, OPT_BREAKER_TRIPS, OPT_MAX_PER_CONN, OPT_MAX_CONN_AGE,
	OPT_IDLE_CLOSE,
	OPT_LIMIT_RATE,
	OPT_SOURCE,
	OPT_LMTP, OPT_DSN_NOTIFY, OPT_DSN_RET, OPT_ENVID, OPT_DSN_REQUIRED, OPT_RETRY_TEMP_RCPTS,
	OPT_THROTTLE_FACTOR,
	OPT_THROTTLE_COOLOFF,
	OPT_DEBUG_PATH, OPT_RFC5321, OPT_SINK_CERT, OPT_SINK_KEY, OPT_RECONNECT_EVERY,
	OPT_NO_TLS_RESUME,
};

static const char shortopts[] = "s:m:r:l:P:w:f:t:qd:h";
static const struct option longopts[] = {
	{"sessions", required_argument, NULL, 's'},
	{"messages", required_argument, NULL, 'm'},
	{"recipients", required_argument, NULL, 'r'},
	{"size", required_argument, NULL, 'l'},
	{"pipeline", required_argument, NULL, 'P'},
	{"window", required_argument, NULL, 'w'},
	{"from", required_argument, NULL, 'f'},
	{"to", required_argument, NULL, 't'},
	{"rate", required_argument, NULL, 'R'},
	{"duration", required_argument, NULL, 'D'},
	{"json", no_argument, NULL, 'J'},
	{"quiet", no_argument, NULL, 'q'},
	{"hello", required_argument, NULL, 'H'},
	{"workers", required_argument, NULL, 'W'},
	{"backend", required_argument, NULL, 'B'},
	{"plain-recv", no_argument, NULL, 'p'},
	{"bound", required_argument, NULL, 'b'},
	{"sink-threads", required_argument, NULL, 'T'},
	{"debug", required_argument, NULL, 'd'},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"global-timeout", required_argument, NULL, OPT_GLOBAL_TIMEOUT},
	{"retry-hang", required_argument, NULL, OPT_RETRY_HANG},
	{"retry-global-hang", required_argument, NULL, OPT_RETRY_GLOBAL_HANG},
	{"sleep-hang", required_argument, NULL, OPT_SLEEP_HANG},
	{"sleep-fail", required_argument, NULL, OPT_SLEEP_FAIL},
	{"retry-fail", required_argument, NULL, OPT_RETRY_FAIL},
	{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
	{"defer", required_argument, NULL, OPT_DEFER},
	{"breaker", required_argument, NULL, OPT_BREAKER},
	{"breaker-cooloff", required_argument, NULL, OPT_BREAKER_COOLOFF},
	{"breaker-trips", required_argument, NULL, OPT_BREAKER_TRIPS},
	{"max-per-conn", required_argument, NULL, OPT_MAX_PER_CONN},
	{"max-conn-age", required_argument, NULL, OPT_MAX_CONN_AGE},
	{"idle-close", required_argument, NULL, OPT_IDLE_CLOSE},
	{"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
	{"source", required_argument, NULL, OPT_SOURCE},
	{"lmtp", no_argument, NULL, OPT_LMTP},
	{"dsn-notify", required_argument, NULL, OPT_DSN_NOTIFY},
	{"dsn-ret", required_argument, NULL, OPT_DSN_RET},
	{"envid", no_argument, NULL, OPT_ENVID},
	{"dsn-required", no_argument, NULL, OPT_DSN_REQUIRED},
	{"retry-temp-rcpts", no_argument, NULL, OPT_RETRY_TEMP_RCPTS},
	{"throttle-factor", required_argument, NULL, OPT_THROTTLE_FACTOR},
	{"throttle-cooloff", required_argument, NULL, OPT_THROTTLE_COOLOFF},
	{"debug-path", required_argument, NULL, OPT_DEBUG_PATH},
	{"rfc5321-timeouts", no_argument, NULL, OPT_RFC5321},
	{"sink-cert", required_argument, NULL, OPT_SINK_CERT},
	{"sink-key", required_argument, NULL, OPT_SINK_KEY},
	{"reconnect-every", required_argument, NULL, OPT_RECONNECT_EVERY},
	{"no-tls-resume", no_argument, NULL, OPT_NO_TLS_RESUME},
	{"help", no_argument, NULL, 'h'},
	TOOL_SECURITY_LONGOPTS,
	{NULL, 0, NULL, 0},
};

enum { PASSWORD_BUF = TOOL_PASSWORD_BUF, SOURCES_MAX = 64 }; /* 255 bytes are allowed: room to see that one is longer */

/* The command line, parsed and checked. The engine copies what it needs; the built-in
 * sink borrows sink_password until it stops. */
struct load_args {
	uint64_t sessions, messages, rcpts, size, pipeline, window, rate, duration;
	uint64_t workers, bound, sink_threads, debug;
	const char *from, *to, *hello, *debug_path;
	const char *host; /* HOST[:PORT], or NULL: the built-in sink */
	int backend, json, quiet, plain_recv, help;
	/* 0: the library's default (or, for the retry counts, "unlimited" when given). */
	uint64_t timeout_ms, global_ms, sleep_hang_ms, sleep_fail_ms, defer_ms;
	uint64_t retry_hang, retry_global, retry_fail, max_attempts;
	int have_retry_hang, have_retry_global, have_sleep_fail, rfc5321;
	uint64_t breaker, breaker_cooloff_ms, breaker_trips;
	uint64_t max_per_conn, max_conn_age_ms, idle_close_ms;
	int have_breaker, have_breaker_trips;
	unsigned rate_n, rate_per_ms, rate_burst; /* --limit-rate; rate_n 0: none */
	char source_buf[2048];            /* --source, split in place */
	const char *sources[SOURCES_MAX + 1], *source_hellos[SOURCES_MAX + 1];
	uint64_t throttle_factor, throttle_cooloff_ms;
	int lmtp, envid, dsn_required, retry_temp_rcpts;
	unsigned dsn_notify, dsn_ret; /* SMTPBULK_NOTIFY_* bits, SMTPBULK_DSN_RET_* */
	struct tool_security sec;         /* --tls..., --auth...: the password wiped once
	                                     the library has its own copy */
	int no_resume;
	const char *sink_cert, *sink_key;
	uint64_t reconnect_every;
	char sink_password[PASSWORD_BUF]; /* the built-in sink's copy, wiped at the end */
};

/* --dsn-notify NEVER | SUCCESS,FAILURE,DELAY (any of them, any case). 0 or -1. */
static int parse_notify(const char *v, unsigned *out)
{
	static const struct { const char *w; unsigned bit; } words[] = {
		{"NEVER", SMTPBULK_NOTIFY_NEVER}, {"SUCCESS", SMTPBULK_NOTIFY_SUCCESS},
		{"FAILURE", SMTPBULK_NOTIFY_FAILURE}, {"DELAY", SMTPBULK_NOTIFY_DELAY},
	};
	unsigned bits = 0;
	while (*v) {
		size_t n = strcspn(v, ",");
		unsigned bit = 0;
		for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
			if (n == strlen(words[i].w) && strncasecmp(v, words[i].w, n) == 0)
				bit = words[i].bit;
		if (!bit || (bits & bit))
			return -1;
		bits |= bit;
		v += n;
		if (*v == ',' && !*++v)
			return -1; /* a trailing comma */
	}
	if (!bits || ((bits & SMTPBULK_NOTIFY_NEVER) && bits != SMTPBULK_NOTIFY_NEVER))
		return -1; /* RFC 3461 §4.1: NEVER stands alone */
	*out = bits;
	return 0;
}

/* --source ADDR[=NAME],...: IPv4 or IPv6 addresses, each with an optional EHLO name
 * (the library checks the name). 0 or -1. */
static int parse_sources(struct load_args *a, const char *v)
{
	size_t n = 0;
	char *save = NULL, *tok;
	unsigned char bin[sizeof(struct in6_addr)];
	if (strlen(v) >= sizeof(a->source_buf))
		return -1;
	strcpy(a->source_buf, v);
	for (tok = strtok_r(a->source_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (eq)
			*eq++ = '\0';
		if (n == SOURCES_MAX || (inet_pton(AF_INET, tok, bin) != 1 &&
					 inet_pton(AF_INET6, tok, bin) != 1) || (eq && !*eq))
			return -1;
		a->sources[n] = tok;
		a->source_hellos[n] = eq; /* NULL: --hello, filled in at start */
		n++;
	}
	a->sources[n] = a->source_hellos[n] = NULL;
	return n ? 0 : -1;
}

/* Print "smtpbulk load: <why>" on one line and return the usage error's status. */
__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tool_vline(stderr, "smtpbulk load: ", fmt, ap); /* one line, whatever argv held */
	va_end(ap);
	return LOAD_USAGE;
}

static void set_defaults(struct load_args *a)
{
	memset(a, 0, sizeof(*a));
	a->sessions = 8;
	a->messages = 10000;
	a->rcpts = 1;
	a->size = 1000;
	a->pipeline = 2;
	a->window = 8;
	a->bound = 10000;
	a->sink_threads = 1;
	a->from = "sender@example.com";
	a->to = "rcpt@example.com";
	a->backend = SMTPBULK_BACKEND_AUTO;
	tool_security_init(&a->sec);
}

/* One option of the generator, the engine or its timeouts, with its value v. Returns
 * 0 when c is one of these (*bad then names it if v is invalid), else -1. */
static int set_run_option(struct load_args *a, int c, const char *v, const char **bad)
{
	switch (c) {
	/* One host, one source address: each connection needs a local port of its own. */
	case 's': if (tool_u64(v, 1, 65535, &a->sessions)) *bad = "--sessions (1-65535)"; break;
	case 'm': if (tool_u64(v, 1, UINT64_MAX / 2, &a->messages)) *bad = "--messages"; break;
	case 'r': if (tool_u64(v, 1, 10000, &a->rcpts)) *bad = "--recipients"; break;
	case 'l': if (tool_u64(v, 0, 1ull << 30, &a->size)) *bad = "--size"; break;
	case 'P': if (tool_u64(v, 0, 2, &a->pipeline)) *bad = "--pipeline"; break;
	case 'w': if (tool_u64(v, 1, 16, &a->window)) *bad = "--window"; break;
	case 'f': a->from = v; break;
	case 't': a->to = v; break;
	case 'R': if (tool_u64(v, 1, 100000000, &a->rate)) *bad = "--rate"; break;
	case 'D': if (tool_u64(v, 1, 86400 * 365, &a->duration)) *bad = "--duration"; break;
	case 'J': a->json = 1; break;
	case 'q': a->quiet = 1; break;
	case 'H': a->hello = v; break;
	case 'W': if (tool_u64(v, 1, 1024, &a->workers)) *bad = "--workers"; break;
	case 'B': if (tool_backend(v, &a->backend)) *bad = "--backend"; break;
	case 'p': a->plain_recv = 1; break;
	case 'b': if (tool_u64(v, 0, UINT32_MAX, &a->bound)) *bad = "--bound"; break;
	case 'T': if (tool_u64(v, 1, 256, &a->sink_threads)) *bad = "--sink-threads"; break;
	case 'd': if (tool_u64(v, 0, 10, &a->debug)) *bad = "--debug"; break;
	case OPT_TIMEOUT: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->timeout_ms)) *bad = "--timeout"; break;
	case OPT_GLOBAL_TIMEOUT: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->global_ms)) *bad = "--global-timeout"; break;
	case OPT_RETRY_HANG: if (tool_u64(v, 0, 1000000, &a->retry_hang)) *bad = "--retry-hang"; else a->have_retry_hang = 1; break;
	case OPT_RETRY_GLOBAL_HANG: if (tool_u64(v, 0, 1000000, &a->retry_global)) *bad = "--retry-global-hang"; else a->have_retry_global = 1; break;
	case OPT_SLEEP_HANG: if (tool_seconds_ms(v, 0, UINT32_MAX, &a->sleep_hang_ms)) *bad = "--sleep-hang"; break;
	case OPT_SLEEP_FAIL: if (tool_seconds_ms(v, 0, UINT32_MAX, &a->sleep_fail_ms)) *bad = "--sleep-fail"; else a->have_sleep_fail = 1; break;
	case OPT_RETRY_FAIL: if (tool_u64(v, 1, 1000000, &a->retry_fail)) *bad = "--retry-fail"; break;
	case OPT_MAX_ATTEMPTS: if (tool_u64(v, 1, 1000000, &a->max_attempts)) *bad = "--max-attempts"; break;
	case OPT_DEFER: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->defer_ms)) *bad = "--defer"; break;
	case OPT_BREAKER: if (tool_u64(v, 0, 1000000, &a->breaker)) *bad = "--breaker"; else a->have_breaker = 1; break;
	case OPT_BREAKER_COOLOFF: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->breaker_cooloff_ms)) *bad = "--breaker-cooloff"; break;
	case OPT_MAX_PER_CONN: if (tool_u64(v, 1, UINT32_MAX, &a->max_per_conn)) *bad = "--max-per-conn"; break;
	case OPT_MAX_CONN_AGE: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->max_conn_age_ms)) *bad = "--max-conn-age"; break;
	case OPT_IDLE_CLOSE: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->idle_close_ms)) *bad = "--idle-close"; break;
	case OPT_SOURCE: if (parse_sources(a, v)) *bad = "--source"; break;
	case OPT_LMTP: a->lmtp = 1; break;
	case OPT_DSN_NOTIFY: if (parse_notify(v, &a->dsn_notify)) *bad = "--dsn-notify"; break;
	case OPT_DSN_RET:
		if (strcasecmp(v, "FULL") == 0) a->dsn_ret = SMTPBULK_DSN_RET_FULL;
		else if (strcasecmp(v, "HDRS") == 0) a->dsn_ret = SMTPBULK_DSN_RET_HDRS;
		else *bad = "--dsn-ret";
		break;
	case OPT_ENVID: a->envid = 1; break;
	case OPT_DSN_REQUIRED: a->dsn_required = 1; break;
	case OPT_RETRY_TEMP_RCPTS: a->retry_temp_rcpts = 1; break;
	case OPT_LIMIT_RATE: if (tool_rate(v, &a->rate_n, &a->rate_per_ms, &a->rate_burst)) *bad = "--limit-rate"; break;
	case OPT_THROTTLE_FACTOR: if (tool_u64(v, 1, 100, &a->throttle_factor)) *bad = "--throttle-factor"; break;
	case OPT_THROTTLE_COOLOFF: if (tool_seconds_ms(v, 1, UINT32_MAX, &a->throttle_cooloff_ms)) *bad = "--throttle-cooloff"; break;
	case OPT_BREAKER_TRIPS: if (tool_u64(v, 0, 1000000, &a->breaker_trips)) *bad = "--breaker-trips"; else a->have_breaker_trips = 1; break;
	case OPT_DEBUG_PATH: if (!*v) *bad = "--debug-path"; else a->debug_path = v; break;
	case OPT_RFC5321: a->rfc5321 = 1; break;
	default: return -1;
	}
	return 0;
}

/* One TLS, AUTH or reconnect option; returns like set_run_option(). */
static int set_tls_option(struct load_args *a, int c, const char *v, const char **bad)
{
	switch (c) {
	case OPT_SINK_CERT: a->sink_cert = v; break;
	case OPT_SINK_KEY: a->sink_key = v; break;
	case OPT_RECONNECT_EVERY: if (tool_u64(v, 1, UINT32_MAX, &a->reconnect_every)) *bad = "--reconnect-every"; break;
	case OPT_NO_TLS_RESUME: a->no_resume = 1; break;
	default: return tool_security_option(&a->sec, c, v, bad) > 0 ? -1 : 0;
	}
	return 0;
}

/* The command line into *a. Returns 0 (a->help set: --help was seen, and nothing after
 * it was looked at) or LOAD_USAGE, having said why on one line. */
static int parse_args(int argc, char **argv, struct load_args *a)
{
	int c;
	set_defaults(a);
	optind = 1;
	opterr = 0; /* one line of our own per error, not getopt's too */
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		const char *bad = NULL;
		if (c == 'h') {
			a->help = 1;
			return 0;
		}
		if (c == TOOL_OPT_PASSWORD)
			return usage_error("no --password: a command line is visible to every local "
					   "user; use --password-file FILE or SMTPBULK_PASSWORD");
		if (set_run_option(a, c, optarg, &bad) != 0 && set_tls_option(a, c, optarg, &bad) != 0)
			return usage_error("unknown option or missing value: %s (try smtpbulk load "
					   "--help)", argv[optind - 1]);
		if (bad)
			return usage_error("invalid value '%s' for %s", optarg, bad);
	}
	if (argc - optind > 1)
		return usage_error("at most one HOST[:PORT] (try --help)");
	a->host = optind < argc ? argv[optind] : NULL;
	if (a->host && tool_target_ok(a->host) != 0)
		return usage_error("invalid target '%s': HOST[:PORT], where HOST is a name, an "
				   "IPv4 address or [IPv6] and PORT 1-65535", a->host);
	if (a->debug_path && a->debug == 0)
		return usage_error("--debug-path needs --debug N (a level above 0)");
	return 0;
}

/* TLS and AUTH options that make no sense together are a usage error, not a surprise
 * later; the password is read here, so a missing one is one too. */
static int check_tls(struct load_args *a)
{
	char why[512];
	if (!a->sink_cert != !a->sink_key)
		return usage_error("a certificate needs its key (--cert with --key, --sink-cert "
				   "with --sink-key)");
	if (tool_security_check(&a->sec, why, sizeof(why)))
		return usage_error("%s", why);
	if (a->sink_cert && (a->host || a->sec.tls < 0))
		return usage_error("--sink-cert is for the built-in sink (no HOST) with --tls");
	if (!a->host && a->sec.tls >= 0 && !a->sink_cert)
		return usage_error("--tls without HOST needs --sink-cert FILE --sink-key FILE for "
				   "the built-in sink");
	return 0;
}

static int check_reconnect(const struct load_args *a)
{
	if (a->reconnect_every && a->pipeline == 2)
		return usage_error("--reconnect-every needs -P 0 or 1 (in mode 2 the next message "
				   "may be in flight when the connection closes, and would be sent "
				   "twice)");
	if (a->no_resume && !a->reconnect_every)
		return usage_error("--no-tls-resume is for --reconnect-every");
	return 0;
}

/* Addresses are checked here, by the library's own rules, so a typo is a usage error
 * rather than 10,000 refusals. The first recipient is checked as it is sent, with its
 * number in front; 254 + 32 is the size this check always had (the library takes at
 * most 254 octets). */
static int check_addresses(const struct load_args *a)
{
	char seq_to[254 + 32];
	snprintf(seq_to, sizeof(seq_to), "1%s", a->to);
	if (smtpbulk_check_address(a->from) < 0)
		return usage_error("invalid --from address '%s'", a->from);
	if (smtpbulk_check_address(seq_to) <= 0 || strchr(a->to, '<'))
		return usage_error("invalid --to address '%s' (no brackets: a number is put in "
				   "front of it)", a->to);
	return 0;
}

/* Everything that can be judged before anything starts, in the order it always was. */
static int check_args(struct load_args *a)
{
	int rc;
	if ((rc = check_tls(a)) != 0 || (rc = check_reconnect(a)) != 0 ||
	    (rc = check_addresses(a)) != 0)
		return rc;
	return 0;
}

/* Each connection is a file, twice over with the built-in sink. More sessions than
 * the process may open files for is refused up front: each would fail its connect
 * again and again, and their state alone can take gigabytes. */
static int make_room_for_files(const struct load_args *a)
{
	uint64_t fds = a->sessions * (a->host ? 1 : 2) + 64, got = 0;
	if (tool_raise_nofile(fds, &got) != 0)
		return usage_error("%" PRIu64 " sessions want %" PRIu64 " open files, and the "
				   "limit is %" PRIu64 " (ulimit -n): use fewer, at most %" PRIu64,
				   a->sessions, fds, got,
				   got > 64 ? (got - 64) / (a->host ? 1 : 2) : 0);
	return 0;
}

/* Without a host: our own sink, in this process, speaking --tls and knowing the
 * --auth account. Returns 0 (target names it) or LOAD_NOSTART. */
static int start_builtin_sink(struct load_args *a, struct sink_server **sink, char *target,
			      size_t cap)
{
	struct sink_options so;
	const char *why;
	memset(&so, 0, sizeof(so));
	so.host = "127.0.0.1";
	so.threads = (unsigned)a->sink_threads;
	so.backend = a->backend;
	so.cfg.name = "sink.smtpbulk.invalid";
	so.cfg.size_max = 1ull << 31;
	so.tls = a->sec.tls == TOOL_TLS_SMTPS ? SINK_TLS_IMPLICIT
		 : a->sec.tls >= 0 ? SINK_TLS_STARTTLS : SINK_TLS_NONE;
	so.cert_file = a->sink_cert;
	so.key_file = a->sink_key;
	if (a->sec.auth) { /* its own copy: ours is wiped as soon as the engine has one */
		memcpy(a->sink_password, a->sec.password, sizeof(a->sink_password));
		so.cfg.auth_user = a->sec.user;
		so.cfg.auth_pass = a->sink_password;
	}
	int rc = sink_server_start(&so, sink, &why);
	if (rc) {
		fprintf(stderr, "smtpbulk load: cannot start the built-in sink: %s (%s)\n", why,
			smtpbulk_strerror(rc));
		return LOAD_NOSTART;
	}
	snprintf(target, cap, "127.0.0.1:%u", sink_server_port(*sink));
	return 0;
}

/* What to send to: HOST, or the built-in sink started for it. */
static int start_target(struct load_args *a, struct sink_server **sink, char *target,
			size_t cap)
{
	if (!a->host)
		return start_builtin_sink(a, sink, target, cap);
	snprintf(target, cap, "%s", a->host);
	return 0;
}

/* TLS files are read at create, where the library can only say "TLS setup failed":
 * name the file here instead. */
static int check_tls_files(const struct load_args *a)
{
	char why[512];
	if (tool_security_check_files(&a->sec, why, sizeof(why))) {
		fprintf(stderr, "smtpbulk load: %s\n", why);
		return LOAD_USAGE;
	}
	return 0;
}

static void make_options(const struct load_args *a, struct load_state *st,
			 smtpbulk_options_t *o)
{
	smtpbulk_options_init(o);
	o->connections = (unsigned)a->sessions;
	o->hello = a->hello;
	o->workers = (unsigned)a->workers;
	o->backend = (smtpbulk_backend_t)a->backend;
	o->plain_recv = a->plain_recv;
	o->queue_bound = (size_t)a->bound;
	o->pipeline = (unsigned)a->pipeline;
	o->window = (unsigned)a->window;
	o->debug = (int)a->debug;
	o->debug_path = a->debug_path;
	o->timeout_ms = (unsigned)a->timeout_ms;
	o->rfc5321_timeouts = a->rfc5321;
	o->global_timeout_ms = (unsigned)a->global_ms;
	if (a->have_retry_hang)
		o->retry_hang = a->retry_hang ? (unsigned)a->retry_hang : SMTPBULK_UNLIMITED;
	if (a->have_retry_global)
		o->retry_global_hang = a->retry_global ? (unsigned)a->retry_global
						       : SMTPBULK_UNLIMITED;
	o->sleep_hang_ms = (unsigned)a->sleep_hang_ms;
	/* The library reads 0 as "its default": a pause of 0 is asked for as 1 ms. */
	if (a->have_sleep_fail)
		o->reconnect_ms = a->sleep_fail_ms ? (unsigned)a->sleep_fail_ms : 1;
	o->retry_fail = (unsigned)a->retry_fail;
	o->max_attempts = (unsigned)a->max_attempts;
	o->defer_ms = (unsigned)a->defer_ms;
	if (a->have_breaker)
		o->breaker_failures = a->breaker ? (unsigned)a->breaker : SMTPBULK_UNLIMITED;
	o->breaker_cooloff_ms = (unsigned)a->breaker_cooloff_ms;
	o->max_per_conn = (unsigned)a->max_per_conn;
	o->dsn_required = a->dsn_required;
	o->retry_temp_rcpts = a->retry_temp_rcpts;
	o->max_conn_age_ms = (unsigned)a->max_conn_age_ms;
	o->idle_close_ms = (unsigned)a->idle_close_ms;
	o->host_rate = (smtpbulk_rate_t){a->rate_n, a->rate_per_ms, a->rate_burst};
	o->throttle_factor_pct = (unsigned)a->throttle_factor;
	o->throttle_cooloff_ms = (unsigned)a->throttle_cooloff_ms;
	if (a->have_breaker_trips)
		o->breaker_trips = a->breaker_trips ? (unsigned)a->breaker_trips
						    : SMTPBULK_UNLIMITED;
	o->on_result = on_result;
	o->result_arg = st;
}

/* Create and start the engine; the password is wiped here, whatever happens, since
 * the library keeps its own copy. NULL after saying why. */
static smtpbulk_t *start_engine(struct load_args *a, struct load_state *st, const char *target)
{
	smtpbulk_options_t o;
	smtpbulk_security_t sec;
	smtpbulk_callbacks_t cbs = {.struct_size = sizeof(cbs), .arg = st}; /* copied */
	make_options(a, st, &o);
	tool_security_apply(&a->sec, &o, &sec);
	if (a->reconnect_every) {
		st->reconnect_every = a->reconnect_every;
		st->reconnect_code = a->no_resume ? SMTPBULK_CB_RESTART : SMTPBULK_CB_RECONNECT;
		cbs.pass = on_pass;
		o.callbacks = &cbs;
	}
	smtpbulk_t *sb;
	if (a->sources[0] || a->lmtp) { /* the host itself, to give it its sources, LMTP */
		char name[256];
		smtpbulk_host_t h = {.sources = a->sources[0] ? a->sources : NULL,
				     .source_hellos = a->source_hellos, .lmtp = a->lmtp};
		for (size_t i = 0; a->sources[i]; i++)
			if (!a->source_hellos[i])
				a->source_hellos[i] = a->hello; /* NULL too: the host's */
		if (tool_split_target(target, name, sizeof(name), &h.port) != 0) {
			fprintf(stderr, "smtpbulk load: bad target '%s'\n", target);
			return NULL;
		}
		h.host = name;
		o.hosts = &h;
		o.n_hosts = 1;
		sb = smtpbulk_new(NULL, &o);
	} else {
		sb = smtpbulk_new(target, &o);
	}
	tool_security_wipe(&a->sec);
	if (!sb)
		fprintf(stderr, "smtpbulk load: cannot start for '%s': %s\n", target,
			smtpbulk_strerror(-errno));
	return sb;
}

/* What every message is made of. One body for all, borrowed (never copied), so it must
 * outlive the engine; the recipients are rewritten in place for each message. */
struct generator {
	char *body;
	size_t body_len;
	char *abuf;    /* the recipients' text, alen bytes each */
	size_t alen;
	char **addrs;  /* into abuf */
};

static void free_generator(struct generator *g)
{
	free(g->body);
	free(g->abuf);
	free(g->addrs);
}

/* A "Subject:" header, then lines of x up to --size. Returns 0 or -ENOMEM. */
static int make_generator(const struct load_args *a, struct generator *g)
{
	size_t size = (size_t)a->size;
	g->body = malloc(size + 64);
	g->alen = strlen(a->to) + 24;
	g->abuf = malloc(a->rcpts * g->alen);
	g->addrs = malloc(a->rcpts * sizeof(char *));
	if (!g->body || !g->abuf || !g->addrs) {
		free_generator(g);
		return -ENOMEM;
	}
	size_t hl = (size_t)snprintf(g->body, 64, "Subject: smtpbulk load\r\n\r\n");
	for (size_t i = hl; i < size; i++)
		g->body[i] = (i - hl) % 78 == 76 ? '\r' : (i - hl) % 78 == 77 ? '\n' : 'x';
	if (size >= hl + 2) {
		g->body[size - 2] = '\r';
		g->body[size - 1] = '\n';
	}
	g->body_len = size > hl ? size : hl;
	for (uint64_t i = 0; i < a->rcpts; i++)
		g->addrs[i] = g->abuf + i * g->alen;
	return 0;
}

/* Closed loop (no --rate): 0, so a message's latency counts from its submit, and the
 * bounded queue sets the pace. Open loop: message m is due at t0 + m/rate, late or not;
 * wait for then and return it as the message's start, so a slow server cannot hide its
 * queueing. */
static uint64_t wait_for_turn(const struct load_args *a, uint64_t t0, uint64_t m)
{
	if (!a->rate)
		return 0;
	uint64_t due = t0 + m * 1000000000ull / a->rate;
	struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	return due;
}

/* Message m (from 0), its recipients numbered like smtp-source -N. */
static int submit_one(smtpbulk_t *sb, const struct load_args *a, struct generator *g,
		      uint64_t m, uint64_t start_ns)
{
	for (uint64_t r = 0; r < a->rcpts; r++)
		snprintf(g->addrs[r], g->alen, "%" PRIu64 "%s", m * a->rcpts + r + 1, a->to);
	char envid[32];
	if (a->envid)
		snprintf(envid, sizeof(envid), "load-%" PRIu64, m + 1);
	smtpbulk_message_t msg = {
		.struct_size = sizeof(msg),
		.dsn_ret = a->dsn_ret,
		.envid = a->envid ? envid : NULL,
		.dsn_notify = a->dsn_notify,
		.from = a->from,
		.rcpts = (const char *const *)g->addrs,
		.n_rcpts = (size_t)a->rcpts,
		.body = g->body,
		.body_len = g->body_len,
		.host = -1,
		.flags = SMTPBULK_MSG_BORROW_BODY,
		.start_ns = start_ns,
	};
	return smtpbulk_submit(sb, &msg, 0, NULL);
}

/* What a run measured, for the report. */
struct load_report {
	uint64_t sent, refused;
	uint64_t delivered, partial, rejected, failed, timed_out;
	smtpbulk_counters_t counters;
	uint64_t tls_handshakes, tls_resumed;
	smtpbulk_latency_t latency; /* ms */
	uint64_t by_category[SMTPBULK_CAT_OTHER + 1];
	struct load_phase_pct phases[LP_COUNT];
	double elapsed_s, msgs_per_s, mb_per_s;
	double cpu_user_s, cpu_sys_s, cpu_us_per_msg; /* the client's: the sink's taken out */
};

/* --messages messages, or as many as --duration allows; a refusal ends it, since the
 * same generator would have every later message refused too. */
static void submit_all(smtpbulk_t *sb, const struct load_args *a, struct generator *g,
		       uint64_t t0, struct load_report *rep)
{
	uint64_t end = a->duration ? t0 + a->duration * 1000000000ull : 0;
	for (uint64_t m = 0; a->duration ? tool_now_ns() < end : m < a->messages; m++) {
		int rc = submit_one(sb, a, g, m, wait_for_turn(a, t0, m));
		if (rc) {
			fprintf(stderr, "smtpbulk load: message %" PRIu64 " refused: %s\n", m + 1,
				smtpbulk_strerror(rc));
			rep->refused++;
			break;
		}
		rep->sent++;
	}
}

/* CPU seconds, user and system, of this process less the built-in sink's threads. */
struct cpu_mark {
	struct rusage ru;
	double sink_user, sink_sys;
};

static void mark_cpu(struct sink_server *sink, struct cpu_mark *c)
{
	getrusage(RUSAGE_SELF, &c->ru);
	c->sink_user = c->sink_sys = 0;
	if (sink)
		sink_server_cpu(sink, &c->sink_user, &c->sink_sys);
}

/* Send, wait for every result, and time it: elapsed, rates and CPU into *rep. */
static void run(smtpbulk_t *sb, const struct load_args *a, struct sink_server *sink,
		struct generator *g, struct load_report *rep)
{
	struct progress prog = {.sb = sb, .total = a->duration ? 0 : a->messages};
	int show_progress = !a->quiet && isatty(2);
	if (show_progress)
		pthread_create(&prog.thread, NULL, progress_main, &prog);
	struct cpu_mark c0, c1;
	mark_cpu(sink, &c0);
	uint64_t t0 = tool_now_ns();
	submit_all(sb, a, g, t0, rep);
	smtpbulk_drain(sb, -1);
	uint64_t t1 = tool_now_ns();
	mark_cpu(sink, &c1);
	if (show_progress) {
		atomic_store(&prog.stop, 1);
		pthread_join(prog.thread, NULL);
	}
	double el = (double)(t1 - t0) / 1e9;
	double cu = tv_s(c1.ru.ru_utime) - tv_s(c0.ru.ru_utime) - (c1.sink_user - c0.sink_user);
	double cs = tv_s(c1.ru.ru_stime) - tv_s(c0.ru.ru_stime) - (c1.sink_sys - c0.sink_sys);
	rep->elapsed_s = el;
	rep->msgs_per_s = el > 0 ? (double)rep->sent / el : 0;
	rep->mb_per_s = el > 0 ? (double)rep->sent * (double)g->body_len / el / 1e6 : 0;
	rep->cpu_user_s = cu < 0 ? 0 : cu;
	rep->cpu_sys_s = cs < 0 ? 0 : cs;
	rep->cpu_us_per_msg =
		rep->sent ? (rep->cpu_user_s + rep->cpu_sys_s) / (double)rep->sent * 1e6 : 0;
}

/* Say QUIT, take the engine's counts and latency, and free it; the statuses are read
 * last, when no result can come any more. */
static void stop_engine(smtpbulk_t *sb, const struct load_state *st, struct load_report *rep)
{
	smtpbulk_stats_t *stats;
	smtpbulk_quit(sb, "load");
	smtpbulk_get_counters(sb, &rep->counters);
	if (smtpbulk_get_stats(sb, &stats) == 0) {
		rep->tls_handshakes = stats->tls_handshakes;
		rep->tls_resumed = stats->tls_resumed;
		rep->latency = stats->latency; /* every result's, from its start_ns */
		smtpbulk_stats_free(stats);
	}
	smtpbulk_free(sb);
	for (int i = 0; i <= SMTPBULK_CAT_OTHER; i++)
		rep->by_category[i] = atomic_load(&st->by_category[i]);
	load_phases_get(st->phases, rep->phases);
	rep->delivered = atomic_load(&st->by_status[SMTPBULK_DELIVERED]);
	rep->partial = atomic_load(&st->by_status[SMTPBULK_PARTIAL]);
	rep->rejected = atomic_load(&st->by_status[SMTPBULK_REJECTED]);
	rep->failed = atomic_load(&st->by_status[SMTPBULK_FAILED]) +
		      atomic_load(&st->by_status[SMTPBULK_CANCELLED]);
	rep->timed_out = atomic_load(&st->by_status[SMTPBULK_TIMED_OUT]);
}

/* The engine's whole life against target. Returns 0 (*rep filled), LOAD_USAGE or
 * LOAD_NOSTART. The sink, if any, is the caller's to stop. */
static int run_load(struct load_args *a, struct sink_server *sink, const char *target,
		    struct load_report *rep)
{
	struct load_state st;
	struct generator g;
	memset(&st, 0, sizeof(st));
	int rc = check_tls_files(a);
	if (rc)
		return rc;
	if (!(st.phases = load_phases_new())) {
		fprintf(stderr, "smtpbulk load: out of memory\n");
		return LOAD_NOSTART;
	}
	smtpbulk_t *sb = start_engine(a, &st, target);
	if (!sb) {
		load_phases_free(st.phases);
		return LOAD_NOSTART;
	}
	if (make_generator(a, &g) != 0) {
		fprintf(stderr, "smtpbulk load: out of memory\n");
		smtpbulk_free(sb);
		load_phases_free(st.phases);
		return LOAD_NOSTART;
	}
	run(sb, a, sink, &g, rep);
	stop_engine(sb, &st, rep);
	free_generator(&g); /* only now: the engine borrowed the body */
	load_phases_free(st.phases);
	return 0;
}

static void report_json(const struct load_args *a, const struct load_report *r,
			const char *target)
{
	const smtpbulk_counters_t *cn = &r->counters;
	const smtpbulk_latency_t *l = &r->latency;
	printf("{\"messages\": %" PRIu64 ", \"delivered\": %" PRIu64 ", \"partial\": %" PRIu64
	       ", \"rejected\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"timed_out\": %" PRIu64
	       ", \"deferred\": %" PRIu64 ", \"hangs\": %" PRIu64 ", \"global_hangs\": %" PRIu64
	       ", \"reconnects\": %" PRIu64 ", \"tls_handshakes\": %" PRIu64
	       ", \"tls_resumed\": %" PRIu64 ", \"elapsed_s\": %.3f"
	       ", \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f"
	       ", \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f"
	       ", \"p999\": %.3f, \"max\": %.3f}, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f"
	       ", \"cpu_us_per_msg\": %.2f, \"sessions\": %" PRIu64 ", \"pipeline\": %" PRIu64
	       ", \"target\": \"%s\", \"builtin_sink\": %s",
	       r->sent, r->delivered, r->partial, r->rejected, r->failed, r->timed_out,
	       cn->deferred, cn->hangs, cn->global_hangs, cn->reconnects, r->tls_handshakes,
	       r->tls_resumed, r->elapsed_s, r->msgs_per_s, r->mb_per_s, l->p50, l->p90, l->p99,
	       l->p999, l->max, r->cpu_user_s, r->cpu_sys_s, r->cpu_us_per_msg, a->sessions,
	       a->pipeline, target, a->host ? "false" : "true");
	printf(", \"categories\": {");
	for (int i = 0; i <= SMTPBULK_CAT_OTHER; i++)
		printf("%s\"%s\": %" PRIu64, i ? ", " : "",
		       smtpbulk_category_name((smtpbulk_category_t)i), r->by_category[i]);
	printf("}, \"phases_ms\": {");
	for (int i = 0; i < LP_COUNT; i++)
		printf("%s\"%s\": {\"p50\": %.3f, \"p99\": %.3f, \"samples\": %" PRIu64 "}",
		       i ? ", " : "", load_phase_name((enum load_phase)i), r->phases[i].p50_ms,
		       r->phases[i].p99_ms, r->phases[i].samples);
	printf("}}\n");
}

/* The categories that happened, and a compact table of the phases that did. */
static void report_outcomes(const struct load_report *r)
{
	int n = 0;
	for (int i = 0; i <= SMTPBULK_CAT_OTHER; i++)
		if (r->by_category[i])
			printf("%s%s %" PRIu64, n++ ? "  " : "categories  ",
			       smtpbulk_category_name((smtpbulk_category_t)i), r->by_category[i]);
	if (n)
		printf("\n");
	/* 11 columns of 10 at most: the lines fit their buffers. */
	char head[160] = "phase ms", p50[160] = "     p50", p99[160] = "     p99";
	size_t hl = 8;
	for (int i = 0; i < LP_COUNT; i++) {
		const struct load_phase_pct *ph = &r->phases[i];
		if (!ph->samples)
			continue;
		snprintf(head + hl, sizeof(head) - hl, " %9s", load_phase_name((enum load_phase)i));
		snprintf(p50 + hl, sizeof(p50) - hl, " %9.3f", ph->p50_ms);
		snprintf(p99 + hl, sizeof(p99) - hl, " %9.3f", ph->p99_ms);
		hl += 10;
	}
	if (hl > 8)
		printf("%s\n%s\n%s\n", head, p50, p99);
}

static void report_text(const struct load_args *a, const struct load_report *r)
{
	const smtpbulk_counters_t *cn = &r->counters;
	const smtpbulk_latency_t *l = &r->latency;
	printf("messages %" PRIu64 "  delivered %" PRIu64 "  partial %" PRIu64
	       "  rejected %" PRIu64 "  failed %" PRIu64 "  timed out %" PRIu64 "\n"
	       "deferred %" PRIu64 "  hangs %" PRIu64 "  global hangs %" PRIu64
	       "  reconnects %" PRIu64 "  tls handshakes %" PRIu64 " (resumed %" PRIu64 ")\n"
	       "elapsed %.3f s  %.0f msgs/s  %.2f MB/s\n"
	       "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n"
	       "client CPU  user %.3f s  sys %.3f s  (%.2f us/message)%s\n",
	       r->sent, r->delivered, r->partial, r->rejected, r->failed, r->timed_out,
	       cn->deferred, cn->hangs, cn->global_hangs, cn->reconnects, r->tls_handshakes,
	       r->tls_resumed, r->elapsed_s, r->msgs_per_s, r->mb_per_s, l->p50, l->p90, l->p99,
	       l->p999, l->max, r->cpu_user_s, r->cpu_sys_s, r->cpu_us_per_msg,
	       a->host ? "" : "  [built-in sink's CPU excluded]");
	report_outcomes(r);
}

int cmd_load(int argc, char **argv)
{
	struct load_args a;
	struct load_report rep = {0};
	struct sink_server *sink = NULL;
	char target[300];
	int rc = parse_args(argc, argv, &a);
	if (rc == 0 && a.help) {
		usage(stdout);
		return LOAD_OK;
	}
	if (rc == 0)
		rc = check_args(&a);
	if (rc == 0)
		rc = make_room_for_files(&a);
	if (rc == 0)
		rc = start_target(&a, &sink, target, sizeof(target));
	if (rc == 0)
		rc = run_load(&a, sink, target, &rep);
	sink_server_stop(sink);
	tool_security_wipe(&a.sec);
	explicit_bzero(a.sink_password, sizeof(a.sink_password));
	if (rc)
		return rc;
	if (a.json)
		report_json(&a, &rep, target);
	else if (!a.quiet)
		report_text(&a, &rep);
	int all_delivered = rep.delivered == rep.sent && rep.refused == 0 && rep.sent > 0;
	return all_delivered ? LOAD_OK : LOAD_UNDELIVERED;
}
