/*
 * smtpbulk load: a load generator that does what Postfix smtp-source does, and more.
 * Its options and its report are a contract: scripts depend on them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "sink_server.h"
#include "smtpbulk.h"
#include "tool_util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk load [options] [HOST[:PORT]]\n"
		"\n"
		"Send generated mail to an SMTP server over many connections and report\n"
		"throughput and latency. Without HOST, a built-in sink is started in this\n"
		"process on a free 127.0.0.1 port and targeted. PORT defaults to 25; IPv6 as\n"
		"[ADDR]:PORT.\n"
		"\n"
		"  -s, --sessions N        concurrent connections (default 8)\n"
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
		"      --timeout SEC       a connection with no answer this long has hung: its\n"
		"                          messages go again elsewhere (default 60)\n"
		"      --rfc5321-timeouts  per-phase timeouts of RFC 5321 4.5.3.2 (greeting, MAIL,\n"
		"                          RCPT 5 min, DATA 2, data block 3, final dot 10)\n"
		"                          instead of --timeout\n"
		"      --global-timeout SEC  no answer on any connection this long: everything\n"
		"                          reconnects (default 120)\n"
		"      --retry-hang N      retries of a message after hangs (default 1)\n"
		"      --retry-global-hang N  global hangs survived (default 1)\n"
		"      --sleep-hang SEC    pause before reconnecting after a hang (default 0)\n"
		"      --sleep-fail SEC    pause before reconnecting after a failure (default 0.1)\n"
		"      --retry-fail N      failed connections in a row before one gives up\n"
		"                          (default 5)\n"
		"      --max-attempts N    transactions per message after 4xx replies or\n"
		"                          connection trouble (default 3)\n"
		"      --defer SEC         pause before a 4xx retry, doubled each time (default 1)\n"
		"TLS and AUTH:\n"
		"      --tls MODE          none (default); smtps: TLS from the first byte (port\n"
		"                          465); starttls: STARTTLS or nothing is sent;\n"
		"                          starttls-optional: STARTTLS when offered, else\n"
		"                          plaintext (says so at --debug 5)\n"
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
		"                          CRAM-MD5, XOAUTH2 (the password is the bearer token)\n"
		"                          or SCRAM-SHA-256\n"
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
		"sink's). The first few undelivered messages are named on stderr with why.\n"
		"exit status: 0 every message delivered, 1 some not delivered, 2 usage error,\n"
		"             3 could not start\n");
}

enum { TLS_SMTPS, TLS_STARTTLS, TLS_STARTTLS_OPT };

#define CONN_TRACK 4096 /* --reconnect-every counts per connection index up to this */

struct load_state {
	uint64_t reconnect_every;
	int reconnect_code;
	_Atomic uint32_t passed[CONN_TRACK]; /* messages passed per connection (any host) */
	_Atomic uint64_t by_status[6];
	_Atomic uint64_t printed;
	int quiet;
};

static void on_result(const smtpbulk_result_t *r, void *arg)
{
	struct load_state *st = arg;
	if ((unsigned)r->status < 6)
		atomic_fetch_add_explicit(&st->by_status[r->status], 1, memory_order_relaxed);
	/* Show the first few failures: enough to see what is wrong, never a flood. */
	if (r->status != SMTPBULK_DELIVERED && !st->quiet &&
	    atomic_fetch_add(&st->printed, 1) < 5)
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

int cmd_load(int argc, char **argv)
{
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
		{"timeout", required_argument, NULL, 1},
		{"global-timeout", required_argument, NULL, 2},
		{"retry-hang", required_argument, NULL, 3},
		{"retry-global-hang", required_argument, NULL, 4},
		{"sleep-hang", required_argument, NULL, 5},
		{"sleep-fail", required_argument, NULL, 6},
		{"retry-fail", required_argument, NULL, 7},
		{"max-attempts", required_argument, NULL, 8},
		{"defer", required_argument, NULL, 9},
		{"debug-path", required_argument, NULL, 10},
		{"rfc5321-timeouts", no_argument, NULL, 11},
		{"tls", required_argument, NULL, 12},
		{"tls-verify", no_argument, NULL, 13},
		{"ca", required_argument, NULL, 14},
		{"tls-name", required_argument, NULL, 15},
		{"cert", required_argument, NULL, 16},
		{"key", required_argument, NULL, 17},
		{"tls-min", required_argument, NULL, 18},
		{"sink-cert", required_argument, NULL, 19},
		{"sink-key", required_argument, NULL, 20},
		{"auth", required_argument, NULL, 21},
		{"user", required_argument, NULL, 22},
		{"password-file", required_argument, NULL, 23},
		{"auth-plaintext", no_argument, NULL, 24},
		{"reconnect-every", required_argument, NULL, 25},
		{"no-tls-resume", no_argument, NULL, 26},
		{"password", required_argument, NULL, 27},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t sessions = 8, messages = 10000, rcpts = 1, size = 1000, pipeline = 2, window = 8,
		 rate = 0, duration = 0, workers = 0, bound = 10000, sink_threads = 1, debug = 0;
	const char *from = "sender@example.com", *to = "rcpt@example.com", *hello = NULL;
	const char *debug_path = NULL;
	int backend = SMTPBULK_BACKEND_AUTO, json = 0, plain_recv = 0, c;
	uint64_t v_got = 0;
	/* 0: the library's default (or, for the retry counts, "unlimited" when given). */
	uint64_t timeout_ms = 0, global_ms = 0, sleep_hang_ms = 0, sleep_fail_ms = 0, defer_ms = 0;
	uint64_t retry_hang = 0, retry_global = 0, retry_fail = 0, max_attempts = 0;
	int have_retry_hang = 0, have_retry_global = 0, have_sleep_fail = 0, rfc5321 = 0;
	int tls = -1, tls_verify = 0, auth_plaintext = 0, no_resume = 0; /* tls: -1 none */
	const char *ca = NULL, *tls_name = NULL, *cert = NULL, *key = NULL, *sink_cert = NULL,
		   *sink_key = NULL, *auth = NULL, *user = NULL, *password_file = NULL;
	uint64_t tls_min = 0, reconnect_every = 0;
	static struct load_state st;

	memset(&st, 0, sizeof(st));
	optind = 1;
	opterr = 0; /* one line of our own per error, not getopt's too */
	while ((c = getopt_long(argc, argv, "s:m:r:l:P:w:f:t:qd:h", longopts, NULL)) != -1) {
		const char *bad = NULL;
		switch (c) {
		case 's': if (tool_u64(optarg, 1, 1000000, &sessions)) bad = "--sessions"; break;
		case 'm': if (tool_u64(optarg, 1, UINT64_MAX / 2, &messages)) bad = "--messages"; break;
		case 'r': if (tool_u64(optarg, 1, 10000, &rcpts)) bad = "--recipients"; break;
		case 'l': if (tool_u64(optarg, 0, 1ull << 30, &size)) bad = "--size"; break;
		case 'P': if (tool_u64(optarg, 0, 2, &pipeline)) bad = "--pipeline"; break;
		case 'w': if (tool_u64(optarg, 1, 16, &window)) bad = "--window"; break;
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'R': if (tool_u64(optarg, 1, 100000000, &rate)) bad = "--rate"; break;
		case 'D': if (tool_u64(optarg, 1, 86400 * 365, &duration)) bad = "--duration"; break;
		case 'J': json = 1; break;
		case 'q': st.quiet = 1; break;
		case 'H': hello = optarg; break;
		case 'W': if (tool_u64(optarg, 1, 1024, &workers)) bad = "--workers"; break;
		case 'B': if (tool_backend(optarg, &backend)) bad = "--backend"; break;
		case 'p': plain_recv = 1; break;
		case 'b': if (tool_u64(optarg, 0, UINT32_MAX, &bound)) bad = "--bound"; break;
		case 'T': if (tool_u64(optarg, 1, 256, &sink_threads)) bad = "--sink-threads"; break;
		case 'd': if (tool_u64(optarg, 0, 10, &debug)) bad = "--debug"; break;
		case 1: if (tool_seconds_ms(optarg, 1, UINT32_MAX, &timeout_ms)) bad = "--timeout"; break;
		case 2: if (tool_seconds_ms(optarg, 1, UINT32_MAX, &global_ms)) bad = "--global-timeout"; break;
		case 3: if (tool_u64(optarg, 0, 1000000, &retry_hang)) bad = "--retry-hang"; else have_retry_hang = 1; break;
		case 4: if (tool_u64(optarg, 0, 1000000, &retry_global)) bad = "--retry-global-hang"; else have_retry_global = 1; break;
		case 5: if (tool_seconds_ms(optarg, 0, UINT32_MAX, &sleep_hang_ms)) bad = "--sleep-hang"; break;
		case 6: if (tool_seconds_ms(optarg, 0, UINT32_MAX, &sleep_fail_ms)) bad = "--sleep-fail"; else have_sleep_fail = 1; break;
		case 7: if (tool_u64(optarg, 1, 1000000, &retry_fail)) bad = "--retry-fail"; break;
		case 8: if (tool_u64(optarg, 1, 1000000, &max_attempts)) bad = "--max-attempts"; break;
		case 9: if (tool_seconds_ms(optarg, 1, UINT32_MAX, &defer_ms)) bad = "--defer"; break;
		case 10: if (!*optarg) bad = "--debug-path"; else debug_path = optarg; break;
		case 11: rfc5321 = 1; break;
		case 12:
			if (!strcmp(optarg, "none")) tls = -1;
			else if (!strcmp(optarg, "smtps")) tls = TLS_SMTPS;
			else if (!strcmp(optarg, "starttls")) tls = TLS_STARTTLS;
			else if (!strcmp(optarg, "starttls-optional")) tls = TLS_STARTTLS_OPT;
			else bad = "--tls";
			break;
		case 13: tls_verify = 1; break;
		case 14: ca = optarg; break;
		case 15: tls_name = optarg; break;
		case 16: cert = optarg; break;
		case 17: key = optarg; break;
		case 18:
			if (!strcmp(optarg, "1.2")) tls_min = 12;
			else if (!strcmp(optarg, "1.3")) tls_min = 13;
			else bad = "--tls-min";
			break;
		case 19: sink_cert = optarg; break;
		case 20: sink_key = optarg; break;
		case 21: auth = optarg; break;
		case 22: if (!*optarg) bad = "--user"; else user = optarg; break;
		case 23: password_file = optarg; break;
		case 24: auth_plaintext = 1; break;
		case 25: if (tool_u64(optarg, 1, UINT32_MAX, &reconnect_every)) bad = "--reconnect-every"; break;
		case 26: no_resume = 1; break;
		case 27:
			fprintf(stderr, "smtpbulk load: no --password: a command line is visible to every "
				"local user; use --password-file FILE or SMTPBULK_PASSWORD\n");
			return 2;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "smtpbulk load: unknown option or missing value: %s (try smtpbulk load --help)\n",
				argv[optind - 1]);
			return 2;
		}
		if (bad) {
			fprintf(stderr, "smtpbulk load: invalid value '%s' for %s\n", optarg, bad);
			return 2;
		}
	}
	if (argc - optind > 1) {
		fprintf(stderr, "smtpbulk load: at most one HOST[:PORT] (try --help)\n");
		return 2;
	}
	if (debug_path && debug == 0) {
		fprintf(stderr, "smtpbulk load: --debug-path needs --debug N (a level above 0)\n");
		return 2;
	}
	/* TLS and AUTH. */
	unsigned secure = SMTPBULK_SECURE_NONE;
	if (tls == TLS_SMTPS)
		secure = tls_verify ? SMTPBULK_SECURE_SMTPS_VERIFY : SMTPBULK_SECURE_SMTPS;
	else if (tls == TLS_STARTTLS)
		secure = tls_verify ? SMTPBULK_SECURE_STARTTLS_VERIFY : SMTPBULK_SECURE_STARTTLS_REQUIRE;
	else if (tls == TLS_STARTTLS_OPT)
		secure = SMTPBULK_SECURE_STARTTLS;
	if (tls_verify && tls != TLS_SMTPS && tls != TLS_STARTTLS) {
		fprintf(stderr, "smtpbulk load: --tls-verify needs --tls smtps or starttls (an "
			"optional STARTTLS that may fall back to plaintext cannot be verified)\n");
		return 2;
	}
	if ((ca || tls_name || cert || key || tls_min) && tls < 0) {
		fprintf(stderr, "smtpbulk load: --ca, --tls-name, --cert, --key and --tls-min need --tls\n");
		return 2;
	}
	if (ca && !tls_verify) {
		fprintf(stderr, "smtpbulk load: --ca is for --tls-verify\n");
		return 2;
	}
	if (!cert != !key || !sink_cert != !sink_key) {
		fprintf(stderr, "smtpbulk load: a certificate needs its key (--cert with --key, "
			"--sink-cert with --sink-key)\n");
		return 2;
	}
	if (sink_cert && (optind != argc || tls < 0)) {
		fprintf(stderr, "smtpbulk load: --sink-cert is for the built-in sink (no HOST) with --tls\n");
		return 2;
	}
	if (optind == argc && tls >= 0 && !sink_cert) {
		fprintf(stderr, "smtpbulk load: --tls without HOST needs --sink-cert FILE --sink-key FILE "
			"for the built-in sink\n");
		return 2;
	}
	if (reconnect_every && pipeline == 2) {
		fprintf(stderr, "smtpbulk load: --reconnect-every needs -P 0 or 1 (in mode 2 the next "
			"message may be in flight when the connection closes, and would be sent twice)\n");
		return 2;
	}
	if (no_resume && !reconnect_every) {
		fprintf(stderr, "smtpbulk load: --no-tls-resume is for --reconnect-every\n");
		return 2;
	}
	static char password[512];
	static char sink_password[sizeof(password)]; /* the built-in sink's copy */
	if (!auth != !user) {
		fprintf(stderr, "smtpbulk load: --auth and --user go together\n");
		return 2;
	}
	if (auth) {
		const char *env = getenv("SMTPBULK_PASSWORD");
		if (password_file) {
			FILE *pf = fopen(password_file, "r");
			if (!pf || !fgets(password, sizeof(password), pf)) {
				fprintf(stderr, "smtpbulk load: cannot read a password from %s: %s\n",
					password_file, pf ? "the file is empty" : strerror(errno));
				if (pf)
					fclose(pf);
				return 2;
			}
			fclose(pf);
			password[strcspn(password, "\r\n")] = '\0';
		} else if (env) {
			snprintf(password, sizeof(password), "%s", env);
		} else {
			fprintf(stderr, "smtpbulk load: --auth needs a password: --password-file FILE or "
				"the SMTPBULK_PASSWORD environment variable\n");
			return 2;
		}
		if (!*password || strlen(password) > 255 || strlen(user) > 255) {
			fprintf(stderr, "smtpbulk load: the user name and password must be 1 to 255 bytes\n");
			return 2;
		}
		static const char *const mechs[] = {"AUTO", "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2",
						    "SCRAM-SHA-256"};
		int known = 0;
		for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
			known |= strcasecmp(auth, mechs[i]) == 0;
		if (!known) {
			fprintf(stderr, "smtpbulk load: invalid value '%s' for --auth (AUTO, PLAIN, LOGIN, "
				"CRAM-MD5, XOAUTH2 or SCRAM-SHA-256)\n", auth);
			return 2;
		}
		if (tls < 0 && !auth_plaintext) {
			fprintf(stderr, "smtpbulk load: --auth without --tls would send the password in "
				"the clear; add --auth-plaintext if that is what you want\n");
			return 2;
		}
	} else if (password_file || auth_plaintext) {
		fprintf(stderr, "smtpbulk load: --password-file and --auth-plaintext are for --auth\n");
		return 2;
	}

	/* Addresses are checked here, by the library's own rules, so a typo is a usage
	 * error rather than 10,000 refusals. The first recipient is checked as it is sent,
	 * with its number in front; 254 + 32 is the size this check always had (the
	 * library takes at most 254 octets). */
	char seq_to[254 + 32];
	snprintf(seq_to, sizeof(seq_to), "1%s", to);
	if (smtpbulk_check_address(from) < 0) {
		fprintf(stderr, "smtpbulk load: invalid --from address '%s'\n", from);
		return 2;
	}
	if (smtpbulk_check_address(seq_to) <= 0 || strchr(to, '<')) {
		fprintf(stderr, "smtpbulk load: invalid --to address '%s' (no brackets: a number "
			"is put in front of it)\n", to);
		return 2;
	}

	/* Each connection is a file, twice over with the built-in sink. */
	uint64_t fds = sessions * (optind == argc ? 2 : 1) + 64;
	if (tool_raise_nofile(fds, &v_got) != 0)
		fprintf(stderr, "smtpbulk load: warning: %" PRIu64 " sessions want %" PRIu64
			" open files, the limit is %" PRIu64 " (ulimit -n)\n", sessions, fds, v_got);

	/* Without a host: our own sink, in this process. */
	struct sink_server *sink = NULL;
	char target[300];
	if (optind == argc) {
		struct sink_options so;
		const char *why;
		memset(&so, 0, sizeof(so));
		so.host = "127.0.0.1";
		so.threads = (unsigned)sink_threads;
		so.backend = backend;
		so.cfg.name = "sink.smtpbulk.invalid";
		so.cfg.size_max = 1ull << 31;
		so.tls = tls == TLS_SMTPS ? SINK_TLS_IMPLICIT : tls >= 0 ? SINK_TLS_STARTTLS : SINK_TLS_NONE;
		so.cert_file = sink_cert;
		so.key_file = sink_key;
		if (auth) { /* the built-in sink knows the account */
			memcpy(sink_password, password, sizeof(password));
			so.cfg.auth_user = user;
			so.cfg.auth_pass = sink_password;
		}
		int rc = sink_server_start(&so, &sink, &why);
		if (rc) {
			fprintf(stderr, "smtpbulk load: cannot start the built-in sink: %s (%s)\n", why,
				smtpbulk_strerror(rc));
			return 3;
		}
		snprintf(target, sizeof(target), "127.0.0.1:%u", sink_server_port(sink));
	} else {
		snprintf(target, sizeof(target), "%s", argv[optind]);
	}

	smtpbulk_options_t o;
	smtpbulk_options_init(&o);
	o.connections = (unsigned)sessions;
	o.hello = hello;
	o.workers = (unsigned)workers;
	o.backend = (smtpbulk_backend_t)backend;
	o.plain_recv = plain_recv;
	o.queue_bound = (size_t)bound;
	o.pipeline = (unsigned)pipeline;
	o.window = (unsigned)window;
	o.debug = (int)debug;
	o.debug_path = debug_path;
	o.timeout_ms = (unsigned)timeout_ms;
	o.rfc5321_timeouts = rfc5321;
	o.global_timeout_ms = (unsigned)global_ms;
	if (have_retry_hang)
		o.retry_hang = retry_hang ? (unsigned)retry_hang : SMTPBULK_UNLIMITED;
	if (have_retry_global)
		o.retry_global_hang = retry_global ? (unsigned)retry_global : SMTPBULK_UNLIMITED;
	o.sleep_hang_ms = (unsigned)sleep_hang_ms;
	/* The library reads 0 as "its default": a pause of 0 is asked for as 1 ms. */
	if (have_sleep_fail)
		o.reconnect_ms = sleep_fail_ms ? (unsigned)sleep_fail_ms : 1;
	o.retry_fail = (unsigned)retry_fail;
	o.max_attempts = (unsigned)max_attempts;
	o.defer_ms = (unsigned)defer_ms;
	o.on_result = on_result;
	o.result_arg = &st;
	smtpbulk_security_t sec = {
		.struct_size = sizeof(sec),
		.secure = secure,
		.tls_name = tls_name,
		.auth = auth,
		.user = user,
		.secret = auth ? password : NULL,
		.auth_plaintext = auth_plaintext,
	};
	if (secure != SMTPBULK_SECURE_NONE || auth)
		o.security = &sec;
	if (ca) {
		struct stat sst;
		if (stat(ca, &sst) == 0 && S_ISDIR(sst.st_mode))
			o.tls_ca_dir = ca;
		else
			o.tls_ca_file = ca;
	}
	o.tls_cert_file = cert;
	o.tls_key_file = key;
	o.tls_min_version = (unsigned)tls_min;
	/* TLS files are read at create, where the library can only say "TLS setup
	 * failed": name the file here instead. */
	const char *files[] = {ca, cert, key};
	for (size_t i = 0; i < 3; i++)
		if (files[i] && access(files[i], R_OK) != 0) {
			fprintf(stderr, "smtpbulk load: cannot read %s: %s\n", files[i], strerror(errno));
			sink_server_stop(sink);
			return 2;
		}
	smtpbulk_callbacks_t cbs = {.struct_size = sizeof(cbs), .arg = &st};
	if (reconnect_every) {
		st.reconnect_every = reconnect_every;
		st.reconnect_code = no_resume ? SMTPBULK_CB_RESTART : SMTPBULK_CB_RECONNECT;
		cbs.pass = on_pass;
		o.callbacks = &cbs;
	}
	smtpbulk_t *sb = smtpbulk_new(target, &o);
	explicit_bzero(password, sizeof(password)); /* the library keeps its own copy */
	if (!sb) {
		fprintf(stderr, "smtpbulk load: cannot start for '%s': %s%s\n", target, strerror(errno),
			o.security && secure != SMTPBULK_SECURE_NONE && errno == EINVAL
				? " (or the TLS setup failed: CA, certificate or key not valid)"
				: "");
		sink_server_stop(sink);
		return 3;
	}

	/* One body for every message, borrowed (never copied): it outlives them all. */
	char *body = malloc(size + 64);
	size_t alen = strlen(to) + 24;
	char *abuf = malloc(rcpts * alen);
	char **addrs = malloc(rcpts * sizeof(char *));
	if (!body || !abuf || !addrs) {
		fprintf(stderr, "smtpbulk load: out of memory\n");
		smtpbulk_free(sb);
		sink_server_stop(sink);
		return 3;
	}
	size_t hl = (size_t)snprintf(body, 64, "Subject: smtpbulk load\r\n\r\n");
	for (size_t i = hl; i < size; i++)
		body[i] = (i - hl) % 78 == 76 ? '\r' : (i - hl) % 78 == 77 ? '\n' : 'x';
	if (size >= hl + 2) {
		body[size - 2] = '\r';
		body[size - 1] = '\n';
	}
	size_t blen = size > hl ? size : hl;
	for (uint64_t i = 0; i < rcpts; i++)
		addrs[i] = abuf + i * alen;

	struct progress prog = {.sb = sb, .total = duration ? 0 : messages};
	int show_progress = !st.quiet && isatty(2);
	if (show_progress)
		pthread_create(&prog.thread, NULL, progress_main, &prog);

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double sink_u0 = 0, sink_s0 = 0, sink_u1 = 0, sink_s1 = 0;
	if (sink)
		sink_server_cpu(sink, &sink_u0, &sink_s0);
	uint64_t t0 = tool_now_ns(), end = duration ? t0 + duration * 1000000000ull : 0;
	uint64_t sent = 0, refused = 0;
	for (uint64_t m = 0; duration ? tool_now_ns() < end : m < messages; m++) {
		uint64_t sched = 0; /* closed loop: latency counts from the submit */
		if (rate) { /* open loop: message m starts at t0 + m/rate, late or not */
			sched = t0 + m * 1000000000ull / rate;
			struct timespec ts = {(time_t)(sched / 1000000000ull), (long)(sched % 1000000000ull)};
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
		for (uint64_t r = 0; r < rcpts; r++)
			snprintf(addrs[r], alen, "%" PRIu64 "%s", m * rcpts + r + 1, to);
		smtpbulk_message_t msg = {
			.struct_size = sizeof(msg),
			.from = from,
			.rcpts = (const char *const *)addrs,
			.n_rcpts = (size_t)rcpts,
			.body = body,
			.body_len = blen,
			.host = -1,
			.flags = SMTPBULK_MSG_BORROW_BODY,
			.start_ns = sched,
		};
		int rc = smtpbulk_submit(sb, &msg, 0, NULL);
		if (rc) {
			fprintf(stderr, "smtpbulk load: message %" PRIu64 " refused: %s\n", m + 1,
				smtpbulk_strerror(rc));
			refused++;
			break; /* the same generator would refuse every one */
		}
		sent++;
	}
	smtpbulk_drain(sb, -1);
	uint64_t t1 = tool_now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	if (sink)
		sink_server_cpu(sink, &sink_u1, &sink_s1);
	if (show_progress) {
		atomic_store(&prog.stop, 1);
		pthread_join(prog.thread, NULL);
	}
	smtpbulk_quit(sb, "load");
	smtpbulk_counters_t cn;
	smtpbulk_get_counters(sb, &cn);
	uint64_t tls_hs = 0, tls_res = 0;
	smtpbulk_latency_t lat = {0};
	smtpbulk_stats_t *stats;
	if (smtpbulk_get_stats(sb, &stats) == 0) {
		tls_hs = stats->tls_handshakes;
		tls_res = stats->tls_resumed;
		lat = stats->latency; /* every result's, from its start_ns */
		smtpbulk_stats_free(stats);
	}
	smtpbulk_free(sb);
	sink_server_stop(sink);
	explicit_bzero(sink_password, sizeof(sink_password));

	double el = (double)(t1 - t0) / 1e9;
	double cu = tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime) - (sink_u1 - sink_u0);
	double cs = tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime) - (sink_s1 - sink_s0);
	uint64_t delivered = atomic_load(&st.by_status[SMTPBULK_DELIVERED]);
	uint64_t partial = atomic_load(&st.by_status[SMTPBULK_PARTIAL]);
	uint64_t rejected = atomic_load(&st.by_status[SMTPBULK_REJECTED]);
	uint64_t failed = atomic_load(&st.by_status[SMTPBULK_FAILED]) +
			  atomic_load(&st.by_status[SMTPBULK_CANCELLED]);
	uint64_t timed_out = atomic_load(&st.by_status[SMTPBULK_TIMED_OUT]);
	double mps = el > 0 ? (double)sent / el : 0;
	double p50 = lat.p50, p90 = lat.p90, p99 = lat.p99, p999 = lat.p999, pmax = lat.max;
	if (cu < 0)
		cu = 0;
	if (cs < 0)
		cs = 0;

	if (json)
		printf("{\"messages\": %" PRIu64 ", \"delivered\": %" PRIu64 ", \"partial\": %" PRIu64
		       ", \"rejected\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"timed_out\": %" PRIu64
		       ", \"deferred\": %" PRIu64 ", \"hangs\": %" PRIu64 ", \"global_hangs\": %" PRIu64
		       ", \"reconnects\": %" PRIu64 ", \"tls_handshakes\": %" PRIu64
		       ", \"tls_resumed\": %" PRIu64 ", \"elapsed_s\": %.3f"
		       ", \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f"
		       ", \"latency_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f"
		       ", \"p999\": %.3f, \"max\": %.3f}, \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f"
		       ", \"cpu_us_per_msg\": %.2f, \"sessions\": %" PRIu64 ", \"pipeline\": %" PRIu64
		       ", \"target\": \"%s\", \"builtin_sink\": %s}\n",
		       sent, delivered, partial, rejected, failed, timed_out, cn.deferred, cn.hangs,
		       cn.global_hangs, cn.reconnects, tls_hs, tls_res, el, mps,
		       el > 0 ? (double)sent * (double)blen / el / 1e6 : 0, p50, p90, p99, p999, pmax,
		       cu, cs, sent ? (cu + cs) / (double)sent * 1e6 : 0, sessions, pipeline, target,
		       sink ? "true" : "false");
	else if (!st.quiet)
		printf("messages %" PRIu64 "  delivered %" PRIu64 "  partial %" PRIu64
		       "  rejected %" PRIu64 "  failed %" PRIu64 "  timed out %" PRIu64 "\n"
		       "deferred %" PRIu64 "  hangs %" PRIu64 "  global hangs %" PRIu64
		       "  reconnects %" PRIu64 "  tls handshakes %" PRIu64 " (resumed %" PRIu64 ")\n"
		       "elapsed %.3f s  %.0f msgs/s  %.2f MB/s\n"
		       "latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n"
		       "client CPU  user %.3f s  sys %.3f s  (%.2f us/message)%s\n",
		       sent, delivered, partial, rejected, failed, timed_out, cn.deferred, cn.hangs,
		       cn.global_hangs, cn.reconnects, tls_hs, tls_res, el, mps,
		       el > 0 ? (double)sent * (double)blen / el / 1e6 : 0, p50, p90, p99, p999, pmax,
		       cu, cs, sent ? (cu + cs) / (double)sent * 1e6 : 0,
		       sink ? "  [built-in sink's CPU excluded]" : "");
	free(body);
	free(abuf);
	free(addrs);
	return (delivered == sent && refused == 0 && sent > 0) ? 0 : 1;
}
