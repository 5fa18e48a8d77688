/* smtpbulk send: generate messages and send them through the library. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "smtpbulk.h"
#include "tool_util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk send [options] HOST[:PORT]\n"
		"\n"
		"Send generated messages to an SMTP server over many connections and report\n"
		"the throughput. IPv6: [ADDR]:PORT.\n"
		"\n"
		"  -s, --sessions N      concurrent connections (default 8)\n"
		"  -m, --messages N      messages to send (default 10000)\n"
		"  -r, --recipients N    recipients per message (default 1)\n"
		"  -l, --size BYTES      body size (default 1000)\n"
		"  -f, --from ADDR       envelope sender (default sender@example.com)\n"
		"  -t, --to ADDR         recipient; a sequence number is prefixed per message\n"
		"                        and recipient, like smtp-source -N (default\n"
		"                        rcpt@example.com)\n"
		"      --hello NAME      EHLO name (default: this machine's host name)\n"
		"  -P, --pipeline 0|1|2  0 lockstep, 1 envelope in one write, 2 one round trip\n"
		"                        per message (BDAT when the server has CHUNKING);\n"
		"                        1 and 2 need the server's PIPELINING (default 2)\n"
		"  -w, --window N        transactions in flight per connection in mode 2 with\n"
		"                        CHUNKING, 1-16 (default 8)\n"
		"      --workers N       worker threads (default: one per CPU)\n"
		"      --backend NAME    auto, io_uring or epoll (default auto)\n"
		"      --bound N         most messages queued at once (default 10000; 0 = none)\n"
		"  -d, --debug N         debug level 0-10 to stderr (default 0)\n"
		"  -q, --quiet           print nothing but errors\n"
		"  -h, --help            this text\n"
		"\n"
		"exit status: 0 every message delivered, 1 some not delivered, 2 usage error,\n"
		"             3 could not start\n");
}

struct sent {
	uint64_t fail_printed;
	int quiet;
};

static void on_result(const smtpbulk_result_t *r, void *arg)
{
	struct sent *st = arg;
	/* Show the first few failures: enough to see what is wrong, never a flood. */
	if (r->status != SMTPBULK_DELIVERED && !st->quiet && st->fail_printed < 5) {
		st->fail_printed++;
		fprintf(stderr, "smtpbulk send: message %" PRIu64 " not delivered: %s (%d %s)\n",
			r->id, smtpbulk_strerror(r->error), r->reply.code, r->reply.text);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_send(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"sessions", required_argument, NULL, 's'},
		{"messages", required_argument, NULL, 'm'},
		{"recipients", required_argument, NULL, 'r'},
		{"size", required_argument, NULL, 'l'},
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"hello", required_argument, NULL, 'H'},
		{"workers", required_argument, NULL, 'W'},
		{"pipeline", required_argument, NULL, 'P'},
		{"window", required_argument, NULL, 'w'},
		{"backend", required_argument, NULL, 'B'},
		{"bound", required_argument, NULL, 'b'},
		{"debug", required_argument, NULL, 'd'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t sessions = 8, messages = 10000, rcpts = 1, size = 1000, workers = 0,
		 bound = 10000, debug = 0, pipeline = 2, window = 8;
	const char *from = "sender@example.com", *to = "rcpt@example.com", *hello = NULL;
	int backend = SMTPBULK_BACKEND_AUTO;
	struct sent st = {0, 0};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:m:r:l:f:t:w:P:d:qh", longopts, NULL)) != -1) {
		const char *bad = NULL;
		switch (c) {
		case 's': if (tool_u64(optarg, 1, 1000000, &sessions)) bad = "--sessions"; break;
		case 'm': if (tool_u64(optarg, 1, UINT64_MAX / 2, &messages)) bad = "--messages"; break;
		case 'r': if (tool_u64(optarg, 1, 10000, &rcpts)) bad = "--recipients"; break;
		case 'l': if (tool_u64(optarg, 0, 1ull << 30, &size)) bad = "--size"; break;
		case 'f': from = optarg; break;
		case 't': to = optarg; break;
		case 'H': hello = optarg; break;
		case 'W': if (tool_u64(optarg, 1, 1024, &workers)) bad = "--workers"; break;
		case 'P': if (tool_u64(optarg, 0, 2, &pipeline)) bad = "--pipeline"; break;
		case 'w': if (tool_u64(optarg, 1, 16, &window)) bad = "--window"; break;
		case 'b': if (tool_u64(optarg, 0, UINT32_MAX, &bound)) bad = "--bound"; break;
		case 'd': if (tool_u64(optarg, 0, 10, &debug)) bad = "--debug"; break;
		case 'B': if (tool_backend(optarg, &backend)) bad = "--backend"; break;
		case 'q': st.quiet = 1; break;
		case 'h': usage(stdout); return 0;
		default:
			fprintf(stderr, "smtpbulk send: bad option (try smtpbulk send --help)\n");
			return 2;
		}
		if (bad) {
			fprintf(stderr, "smtpbulk send: invalid value '%s' for %s\n", optarg, bad);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "smtpbulk send: expected exactly one HOST[:PORT] (try --help)\n");
		return 2;
	}

	smtpbulk_options_t o;
	smtpbulk_options_init(&o);
	o.connections = (unsigned)sessions;
	o.hello = hello;
	o.workers = (unsigned)workers;
	o.backend = (smtpbulk_backend_t)backend;
	o.queue_bound = (size_t)bound;
	o.pipeline = (unsigned)pipeline;
	o.window = (unsigned)window;
	o.debug = (int)debug;
	o.on_result = on_result;
	o.result_arg = &st;
	smtpbulk_t *sb = smtpbulk_new(argv[optind], &o);
	if (!sb) {
		fprintf(stderr, "smtpbulk send: cannot start for '%s': %s\n", argv[optind],
			strerror(errno));
		return 3;
	}

	/* One body for every message, borrowed (never copied): it outlives them all. */
	char *body = malloc(size + 64);
	char **addrs = calloc(rcpts, sizeof(char *));
	size_t alen = strlen(to) + 24;
	int rc = 0;
	for (uint64_t i = 0; addrs && i < rcpts; i++)
		if (!(addrs[i] = malloc(alen)))
			rc = -ENOMEM;
	if (!body || !addrs || rc) {
		fprintf(stderr, "smtpbulk send: out of memory\n");
		smtpbulk_free(sb);
		return 3;
	}
	size_t hl = (size_t)snprintf(body, 64, "Subject: smtpbulk send\r\n\r\n");
	for (size_t i = hl; i < size; i++)
		body[i] = (i - hl) % 78 == 76 ? '\r' : (i - hl) % 78 == 77 ? '\n' : 'x';
	if (size >= hl + 2) {
		body[size - 2] = '\r';
		body[size - 1] = '\n';
	}
	size_t blen = size > hl ? size : hl;

	double t0 = now_s();
	uint64_t refused = 0;
	for (uint64_t m = 0; m < messages; m++) {
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
		};
		rc = smtpbulk_submit(sb, &msg, 0, NULL);
		if (rc) {
			fprintf(stderr, "smtpbulk send: message %" PRIu64 " refused: %s\n", m + 1,
				smtpbulk_strerror(rc));
			refused++;
			if (rc == SMTPBULK_EBADADDR) /* every message would be refused */
				break;
		}
	}
	smtpbulk_drain(sb, -1);
	double el = now_s() - t0;
	smtpbulk_counters_t cnt;
	smtpbulk_get_counters(sb, &cnt);
	const char *be = smtpbulk_backend_name(sb);
	int undelivered = smtpbulk_quit(sb, NULL);
	smtpbulk_free(sb);
	if (!st.quiet)
		printf("messages %" PRIu64 " delivered %" PRIu64 " not_delivered %" PRIu64
		       " refused %" PRIu64 " elapsed %.3f s  %.0f msgs/s  %.2f MB/s  backend %s\n",
		       cnt.submitted, cnt.delivered, cnt.not_delivered, refused, el,
		       el > 0 ? (double)cnt.completed / el : 0.0,
		       el > 0 ? (double)cnt.completed * (double)blen / el / 1e6 : 0.0, be);
	for (uint64_t i = 0; i < rcpts; i++)
		free(addrs[i]);
	free(addrs);
	free(body);
	return (undelivered == 0 && refused == 0) ? 0 : 1;
}
