/* smtpbulk sink: an SMTP server that accepts and discards mail, for tests and benchmarks. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "sink_rate.h"
#include "sink_server.h"
#include "smtpbulk.h"
#include "tool_util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk sink [options]\n"
		"\n"
		"An SMTP (or LMTP) server that accepts mail and throws it away, counting\n"
		"connections, messages, recipients and bytes. It advertises PIPELINING,\n"
		"CHUNKING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and DSN, and runs\n"
		"until SIGINT or SIGTERM, or --max-messages; then it prints the counts.\n"
		"\n"
		"  --listen ADDR:PORT     where to listen (default 127.0.0.1:2525; [::1]:PORT for\n"
		"                         IPv6; port 0 picks a free one and prints it)\n"
		"  --listen unix:PATH     listen on a unix-domain stream socket instead; a stale\n"
		"                         socket file there is replaced, any other file is an\n"
		"                         error; the file is removed at exit\n"
		"  --lmtp                 speak LMTP (RFC 2033): LHLO instead of EHLO/HELO, and\n"
		"                         after the data one reply per accepted recipient, in\n"
		"                         RCPT order: 452 4.2.2 for a local part starting with\n"
		"                         lmtp-temp, 550 5.2.1 for lmtp-perm, 250 otherwise\n"
		"                         (--reject-data and --tempfail-data refuse it for every\n"
		"                         recipient). A message counts as accepted when one\n"
		"                         recipient got 250; recipients counts those that did\n"
		"  --max-rate N           admit at most N messages (MAIL commands) in each second\n"
		"                         since the start, over all threads; the next MAIL in\n"
		"                         that second gets '421 4.7.0 Rate limit exceeded' and\n"
		"                         the connection is closed (counted as throttled)\n"
		"  --max-rcpts N          take at most N recipients per transaction; beyond, RCPT\n"
		"                         gets '452 4.5.3 Error: too many recipients' (as\n"
		"                         Postfix's smtpd_recipient_limit; LMTP: at most 100)\n"
		"  --threads N            server threads, one ring each (default: one per CPU)\n"
		"  --max-messages N       stop after accepting N messages\n"
		"  --size BYTES           SIZE to advertise (default 104857600)\n"
		"  --backend NAME         auto, io_uring or epoll (default auto)\n"
		"  --json                 print the counts as one JSON object on stdout; with\n"
		"                         \"throttled\", \"lmtp_rcpt_failed\" (recipients refused\n"
		"                         after the data) and \"per_second\": messages accepted\n"
		"                         in each second since the start, by the second their\n"
		"                         MAIL was accepted, through the last second with one\n"
		"                         (the first %u seconds only)\n"
		"  --tls MODE             none, smtps (TLS from the first byte, as on port 465)\n"
		"                         or starttls (offered in EHLO) (default none)\n"
		"  --cert FILE            the server certificate chain (PEM), for --tls\n"
		"  --key FILE             its private key (PEM)\n"
		"  -q, --quiet            print nothing but errors (and --json)\n"
		"fault injection (each PCT is a percentage of the commands concerned):\n"
		"  --reject-mail PCT      550 to MAIL        --tempfail-mail PCT   451 to MAIL\n"
		"  --reject-rcpt PCT      550 to RCPT        --tempfail-rcpt PCT   450 to RCPT\n"
		"  --reject-data PCT      554 after the data --tempfail-data PCT   451 after it\n"
		"  --close-after N        421 and close a connection after N messages\n"
		"  --hang-after N         stop answering a connection after N messages\n"
		"  --auth-user NAME:PASSWORD  offer AUTH PLAIN LOGIN CRAM-MD5 for this account and\n"
		"                         require it before MAIL (the password is visible to\n"
		"                         other local users in the process list: tests only)\n"
		"  --starttls-inject      put a fake '250' reply behind the 220 to STARTTLS, in\n"
		"                         plaintext (a response-injection test for clients)\n"
		"  --delay PCT            hold back PCT%% of replies (and what follows them on\n"
		"                         that connection) for --delay-ms\n"
		"  --delay-ms MS          how long a held reply waits (default 1000; alone, it\n"
		"                         means --delay 100)\n"
		"  -h, --help             this text\n"
		"\n"
		"exit status: 0 success, 2 usage error, 3 could not start\n",
		(unsigned)SINK_PER_SECOND_MAX);
}


/* "smtpbulk sink: <why>" on one line, control characters escaped (tool_vline). */
__attribute__((format(printf, 1, 2))) static void sink_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tool_vline(stderr, "smtpbulk sink: ", fmt, ap);
	va_end(ap);
}

int cmd_sink(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'L'},
		{"threads", required_argument, NULL, 'T'},
		{"max-messages", required_argument, NULL, 'M'},
		{"size", required_argument, NULL, 'S'},
		{"backend", required_argument, NULL, 'B'},
		{"json", no_argument, NULL, 'J'},
		{"quiet", no_argument, NULL, 'q'},
		{"reject-mail", required_argument, NULL, 1},
		{"tempfail-mail", required_argument, NULL, 2},
		{"reject-rcpt", required_argument, NULL, 3},
		{"tempfail-rcpt", required_argument, NULL, 4},
		{"reject-data", required_argument, NULL, 5},
		{"tempfail-data", required_argument, NULL, 6},
		{"close-after", required_argument, NULL, 7},
		{"hang-after", required_argument, NULL, 8},
		{"delay", required_argument, NULL, 9},
		{"delay-ms", required_argument, NULL, 10},
		{"auth-user", required_argument, NULL, 11},
		{"tls", required_argument, NULL, 12},
		{"cert", required_argument, NULL, 13},
		{"key", required_argument, NULL, 14},
		{"starttls-inject", no_argument, NULL, 15},
		{"max-rate", required_argument, NULL, 16},
		{"lmtp", no_argument, NULL, 17},
		{"max-rcpts", required_argument, NULL, 18},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct sink_options o;
	char host[256];
	uint64_t v;
	int json = 0, quiet = 0, c, delay_pct = -1;
	static char auth_user[256];
	const char *listen_at = "127.0.0.1:2525";

	memset(&o, 0, sizeof(o));
	o.threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	o.cfg.name = "sink.smtpbulk.invalid";
	o.cfg.size_max = 104857600;
	optind = 1;
	opterr = 0; /* one line of our own per error, not getopt's too */
	while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
		const char *bad = NULL;
		unsigned *pct = NULL;
		switch (c) {
		case 'L': listen_at = optarg; break;
		case 'T': if (tool_u64(optarg, 1, 256, &v)) bad = "--threads"; else o.threads = (unsigned)v; break;
		case 'M': if (tool_u64(optarg, 1, UINT64_MAX, &o.max_messages)) bad = "--max-messages"; break;
		case 'S': if (tool_u64(optarg, 0, UINT64_MAX, &o.cfg.size_max)) bad = "--size"; break;
		case 'B': if (tool_backend(optarg, &o.backend)) bad = "--backend"; break;
		case 'J': json = 1; break;
		case 'q': quiet = 1; break;
		case 1: pct = &o.cfg.faults.reject_mail; break;
		case 2: pct = &o.cfg.faults.tempfail_mail; break;
		case 3: pct = &o.cfg.faults.reject_rcpt; break;
		case 4: pct = &o.cfg.faults.tempfail_rcpt; break;
		case 5: pct = &o.cfg.faults.reject_data; break;
		case 6: pct = &o.cfg.faults.tempfail_data; break;
		case 7: if (tool_u64(optarg, 1, UINT32_MAX, &v)) bad = "--close-after"; else o.cfg.faults.close_after = (unsigned)v; break;
		case 8: if (tool_u64(optarg, 1, UINT32_MAX, &v)) bad = "--hang-after"; else o.cfg.faults.hang_after = (unsigned)v; break;
		case 9: if (tool_u64(optarg, 0, 100, &v)) bad = "--delay"; else delay_pct = (int)v; break;
		case 10: if (tool_u64(optarg, 1, 3600000, &v)) bad = "--delay-ms"; else o.cfg.faults.delay_ms = (unsigned)v; break;
		case 11: {
			const char *colon = strchr(optarg, ':');
			size_t ul = colon ? (size_t)(colon - optarg) : 0;
			if (!colon || ul == 0 || ul >= sizeof(auth_user) || !colon[1] ||
			    strlen(colon + 1) > 255) {
				bad = "--auth-user";
			} else {
				memcpy(auth_user, optarg, ul);
				auth_user[ul] = '\0';
				o.cfg.auth_user = auth_user;
				o.cfg.auth_pass = colon + 1;
			}
			break;
		}
		case 12:
			if (!strcmp(optarg, "none"))
				o.tls = SINK_TLS_NONE;
			else if (!strcmp(optarg, "smtps"))
				o.tls = SINK_TLS_IMPLICIT;
			else if (!strcmp(optarg, "starttls"))
				o.tls = SINK_TLS_STARTTLS;
			else
				bad = "--tls";
			break;
		case 13: o.cert_file = optarg; break;
		case 14: o.key_file = optarg; break;
		case 15: o.cfg.faults.starttls_inject = 1; break;
		case 16: if (tool_u64(optarg, 1, UINT32_MAX, &v)) bad = "--max-rate"; else o.max_rate = (uint32_t)v; break;
		case 17: o.cfg.lmtp = 1; break;
		case 18: if (tool_u64(optarg, 1, UINT32_MAX, &v)) bad = "--max-rcpts"; else o.cfg.max_rcpts = (unsigned)v; break;
		case 'h': usage(stdout); return 0;
		default:
			sink_say("unknown option or missing value: %s (try smtpbulk sink --help)",
				argv[optind - 1]);
			return 2;
		}
		if (pct) {
			if (tool_u64(optarg, 0, 100, &v))
				bad = longopts[c - 1 + 7].name;
			else
				*pct = (unsigned)v;
		}
		if (bad) {
			sink_say("invalid value '%s' for %s%s", optarg,
				bad[0] == '-' ? "" : "--", bad);
			return 2;
		}
	}
	if (delay_pct >= 0)
		o.cfg.faults.delay_pct = (unsigned)delay_pct;
	else if (o.cfg.faults.delay_ms)
		o.cfg.faults.delay_pct = 100;
	if (o.cfg.faults.delay_pct && !o.cfg.faults.delay_ms)
		o.cfg.faults.delay_ms = 1000;
	const struct sink_faults *f = &o.cfg.faults;
	if (f->reject_mail + f->tempfail_mail > 100 || f->reject_rcpt + f->tempfail_rcpt > 100 ||
	    f->reject_data + f->tempfail_data > 100) {
		sink_say("reject and tempfail of one command add up to over 100%%");
		return 2;
	}
	if (o.tls != SINK_TLS_NONE && (!o.cert_file || !o.key_file)) {
		sink_say("--tls %s needs --cert FILE and --key FILE",
			o.tls == SINK_TLS_IMPLICIT ? "smtps" : "starttls");
		return 2;
	}
	if (o.tls == SINK_TLS_NONE && (o.cert_file || o.key_file)) {
		sink_say("--cert and --key are for --tls smtps or starttls");
		return 2;
	}
	if (o.cfg.faults.starttls_inject && o.tls != SINK_TLS_STARTTLS) {
		sink_say("--starttls-inject needs --tls starttls");
		return 2;
	}
	if (optind != argc) {
		sink_say("unexpected argument '%s' (try --help)", argv[optind]);
		return 2;
	}
	if (!strncmp(listen_at, "unix:", 5)) {
		/* sun_path's 108 bytes, its NUL included */
		if (!listen_at[5] || strlen(listen_at + 5) >= 108) {
			sink_say("--listen unix:PATH wants a path of 1 to 107 bytes, not '%s'",
				 listen_at);
			return 2;
		}
		o.unix_path = listen_at + 5;
		host[0] = '\0';
	} else if (tool_hostport(listen_at, host, sizeof(host), &o.port, 1)) {
		sink_say("--listen wants ADDR:PORT or unix:PATH, not '%s'", listen_at);
		return 2;
	}
	o.host = host;

	/* A sink for many sessions needs a file per connection. */
	uint64_t got = 0;
	tool_raise_nofile(1u << 20, &got);

	/* Signals go to this thread only, which waits for them below. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct sink_server *srv;
	const char *why;
	int rc = sink_server_start(&o, &srv, &why);
	if (rc) {
		if (rc == SMTPBULK_ETLSCONFIG)
			sink_say("TLS setup failed: %s", why);
		else
			sink_say("cannot listen on %s: %s (%s)", listen_at,
				why, smtpbulk_strerror(rc));
		return 3;
	}
	const char *tls_note = o.tls == SINK_TLS_IMPLICIT   ? ", implicit TLS"
			       : o.tls == SINK_TLS_STARTTLS ? ", STARTTLS"
							    : "";
	if (!quiet && o.unix_path) /* escaped: a path may hold anything */
		sink_say("listening on unix:%s, %u threads, %s%s%s", o.unix_path, o.threads,
			 sink_server_backend(srv), tls_note, o.cfg.lmtp ? ", LMTP" : "");
	else if (!quiet)
		fprintf(stderr, "smtpbulk sink: listening on %s%s%s:%u, %u threads, %s%s%s\n",
			strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
			sink_server_port(srv), o.threads, sink_server_backend(srv), tls_note,
			o.cfg.lmtp ? ", LMTP" : "");
	struct timespec tick = {0, 100000000};
	uint64_t t0 = tool_now_ns();
	while (!sink_server_done(srv)) {
		int sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGINT || sig == SIGTERM)
			break;
	}
	uint64_t t1 = tool_now_ns();
	/* The threads stopped first, so the totals and per_second agree and are final. */
	sink_server_halt(srv);
	struct sink_totals tot;
	sink_server_totals(srv, &tot);
	static uint64_t per_s[SINK_PER_SECOND_MAX];
	size_t n_per_s = sink_server_per_second(srv, per_s, SINK_PER_SECOND_MAX);
	sink_server_stop(srv);
	double el = (double)(t1 - t0) / 1e9;
	if (json) {
		printf("{\"connections\": %" PRIu64 ", \"messages\": %" PRIu64
		       ", \"recipients\": %" PRIu64 ", \"bytes\": %" PRIu64
		       ", \"rejected\": %" PRIu64 ", \"auth_ok\": %" PRIu64 ", \"auth_failed\": %" PRIu64
		       ", \"tls_handshakes\": %" PRIu64 ", \"tls_resumed\": %" PRIu64
		       ", \"tls_failed\": %" PRIu64 ", \"elapsed_s\": %.3f",
		       tot.connections, tot.messages, tot.recipients, tot.bytes, tot.rejected,
		       tot.auth_ok, tot.auth_failed, tot.tls_handshakes, tot.tls_resumed,
		       tot.tls_failed, el);
		/* New keys go last: the ones above stay where readers expect them. */
		printf(", \"throttled\": %" PRIu64 ", \"lmtp_rcpt_failed\": %" PRIu64
		       ", \"per_second\": [", tot.throttled, tot.lmtp_rcpt_failed);
		for (size_t i = 0; i < n_per_s; i++)
			printf("%s%" PRIu64, i ? ", " : "", per_s[i]);
		printf("]}\n");
	} else if (!quiet)
		printf("connections %" PRIu64 " messages %" PRIu64 " recipients %" PRIu64
		       " bytes %" PRIu64 " rejected %" PRIu64 " auth ok %" PRIu64 " auth failed %" PRIu64
		       " tls handshakes %" PRIu64 " (resumed %" PRIu64 ", failed %" PRIu64 ")"
		       " throttled %" PRIu64 " lmtp rcpt failed %" PRIu64 " elapsed %.3f s\n",
		       tot.connections, tot.messages, tot.recipients, tot.bytes, tot.rejected,
		       tot.auth_ok, tot.auth_failed, tot.tls_handshakes, tot.tls_resumed,
		       tot.tls_failed, tot.throttled, tot.lmtp_rcpt_failed, el);
	return 0;
}
