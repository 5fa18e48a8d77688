/* smtpbulk send: real mail from a JSONL manifest or from message files to one server,
 * every final result in a journal, a rerun sending only what has no final result yet. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "send_mail_source.h"
#include "send_live.h"
#include "send_manifest.h"
#include "send_merge_source.h"
#include "send_metrics.h"
#include "send_progress.h"
#include "send_redis.h"
#include "smtpbulk.h"
#include "smtpbulk_send.h"
#include "tool_security.h"
#include "u64_set.h"
#include "tool_util.h"

enum { SEND_OK = 0, SEND_UNDELIVERED = 1, SEND_USAGE = 2, SEND_NOSTART = 3, SEND_INPUT = 4 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk send [options] HOST[:PORT] [MANIFEST]\n"
		"       smtpbulk send [options] --mail HOST[:PORT] PATH...\n"
		"       smtpbulk send [options] --template MSG --recipients LIST.csv HOST[:PORT]\n"
		"\n"
		"Send the messages of a JSONL manifest (a file, or standard input when it is\n"
		"'-' or not given) to an SMTP server (or several: --extra-host) over many\n"
		"connections. One message per line:\n"
		"  {\"id\": \"m1\", \"from\": \"a@example.com\", \"to\": [\"b@example.org\"], \"raw\": \"...\"}\n"
		"  {\"from\": \"a@example.com\", \"to\": \"c@example.org\", \"file\": \"msg.eml\"}\n"
		"\"raw\" is the message itself (headers and body, LF or CRLF), \"file\" a path to\n"
		"one (relative to the working directory); \"id\" is optional (default: the line\n"
		"number); \"from\" may be \"\" for the null sender. The input is read as it is\n"
		"sent: memory stays bounded by --queue-bound whatever its size.\n"
		"\n"
		"With --mail, the PATHs are messages (RFC 5322) with their envelope in their\n"
		"headers, as sendmail -t takes it: the sender from From (else Sender), the\n"
		"recipients from To, Cc and Bcc; the Bcc header is not sent. A PATH is a\n"
		"message file, an mbox (its first line starts \"From \"), a directory of\n"
		"message files (not recursive; names starting '.' skipped) or a Maildir (its\n"
		"cur/ and new/). A message's id is its path, or PATH#N for an mbox's N-th.\n"
		"\n"
		"Mail merge: --template MSG --recipients LIST.csv sends one message per row of\n"
		"the CSV, whose first row names the columns: {{column}} in MSG's headers and body\n"
		"becomes the row's value (a header that is no longer ASCII is RFC 2047-encoded;\n"
		"a value with a line break for a header is refused), and the envelope comes\n"
		"from the filled headers as with --mail. A row's id is its \"id\" column, else\n"
		"LIST.csv:N (N its row number, the header being 1). A manifest record may also\n"
		"name \"template\": PATH with \"vars\": {...} instead of \"raw\" or \"file\".\n"
		"A record may also have \"host\" (one of the hosts given), \"headers\":\n"
		"{\"Name\": \"value\"} put in front of the message (RFC 2047 when not ASCII) and\n"
		"\"dsn\": {\"ret\": \"FULL\"|\"HDRS\", \"envid\": ID, \"notify\": \"NEVER\" or\n"
		"\"SUCCESS,FAILURE,DELAY\", \"orcpt\": [one per recipient or null]} (RFC 3461).\n"
		"\n"
		"Redis: --source redis://HOST[:PORT]/STREAM --group G reads records from a\n"
		"stream as one consumer of the group (fields as in a manifest; see smtpbulk\n"
		"enqueue); an entry is acknowledged after its final result, which goes to\n"
		"STREAM:results; bad or too often delivered entries go to STREAM:dead.\n"
		"\n"
		"  -m, --mail              the operands after HOST are message files (above)\n"
		"      --template MSG      with --recipients: the message to fill per row\n"
		"      --recipients CSV    with --template: one message per row\n"
		"      --from ADDR         with --mail or --template: the envelope sender for\n"
		"                          every message, instead of the headers' ('' for the\n"
		"                          null sender)\n"
		"  -j, --journal FILE      append one JSON line per final result (id, status,\n"
		"                          category, code, enhanced, text, queue_id, host,\n"
		"                          attempts, latency_ms, rcpts, position, hash), and a\n"
		"                          line per bad input record; on a rerun with the same\n"
		"                          journal, what has a final line is not sent again\n"
		"      --retry-failed      with --journal: send again what ended failed or\n"
		"                          timed_out, due or not\n"
		"      --resume            with --journal: send what has no final line and what\n"
		"                          failed for now (4xx, trouble, timeout) and is due:\n"
		"                          its next_attempt time has come\n"
		"      --retry-schedule LIST  after a message's k-th temporary failure, its\n"
		"                          next attempt comes the k-th interval later (units s,\n"
		"                          m, h, d); past the last it has given up (no\n"
		"                          next_attempt). Default 30m,1h,2h,4h,8h,16h,24h,24h,24h\n"
		"                          (RFC 5321 4.5.4.1: 30 minutes at least, 4-5 days in\n"
		"                          all); none: no next attempts\n"
		"      --flush SEC         journal lines are written and fsync'd at least this\n"
		"                          often (default 0.2)\n"
		"  -s, --sessions N        concurrent connections (default 8)\n"
		"  -P, --pipeline 0|1|2    as in smtpbulk load (default 2)\n"
		"  -w, --window N          transactions in flight per connection, 1-16 (default 8)\n"
		"      --workers N         worker threads (default: one per CPU)\n"
		"      --backend NAME      auto, io_uring or epoll (default auto)\n"
		"      --hello NAME        EHLO name (default: this machine's host name)\n"
		"      --timeout SEC       per-reply timeout (default 30)\n"
		"      --max-attempts N    transactions per message after 4xx replies or trouble\n"
		"                          (default 3)\n"
		"      --defer SEC         pause before a 4xx retry, doubled each time (default 1)\n"
		"      --limit-rate N[/s|/m|/h][:BURST]  at most N messages per second, minute\n"
		"                          or hour\n"
		"      --max-per-conn N    messages per connection, then QUIT and reconnect\n"
		"      --extra-host HOST[:PORT]  another server (repeatable, 16 at most): records\n"
		"                          without \"host\" go to any of them, a record's\n"
		"                          \"host\" names one as written (or the target)\n"
		"      --dsn-required      a record asking for DSN fails where the server does\n"
		"                          not offer it (default: sent without the parameters)\n"
		"      --queue-bound N     messages read ahead of the sending (default 10000)\n"
		"      --tls MODE          none (default), smtps (TLS from the first byte),\n"
		"                          starttls (STARTTLS or nothing is sent),\n"
		"                          starttls-optional (STARTTLS when offered)\n"
		"      --tls-verify        check the server's certificate chain and name\n"
		"      --ca PATH           trusted CAs (a PEM file or a directory; default: the\n"
		"                          system's)\n"
		"      --tls-name NAME     the name sent as SNI and checked (default: HOST)\n"
		"      --cert FILE --key FILE  a client certificate\n"
		"      --tls-min 1.2|1.3   lowest TLS version accepted (default 1.2)\n"
		"      --auth MECH         AUTO, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 or\n"
		"                          OAUTHBEARER (the password is then the token)\n"
		"      --user NAME         the account for --auth\n"
		"      --password-file FILE  its password (the first line); else the\n"
		"                          SMTPBULK_PASSWORD environment variable; never the\n"
		"                          command line\n"
		"      --auth-plaintext    allow AUTH on a connection without TLS\n"
		"      --max-size BYTES    the largest message accepted (default 52428800)\n"
		"      --drain SEC         on SIGINT/SIGTERM, how long messages in flight may take\n"
		"                          to finish before they are cancelled (default 30)\n"
		"      --source URL        redis://HOST[:PORT]/STREAM or\n"
		"                          redis+unix:///PATH?stream=STREAM (above)\n"
		"      --group G           the consumer group (made if missing)\n"
		"      --consumer NAME     this consumer (default: host name and pid)\n"
		"      --claim-idle SEC    take over other consumers' entries idle this long\n"
		"                          (default 60); this consumer's own in flight are\n"
		"                          renewed every third of it (0.2 s to 10 s), so none\n"
		"                          is taken from it however long it takes\n"
		"      --max-deliveries N  an entry delivered more often is dead-lettered\n"
		"                          (default 5; 0: no limit)\n"
		"      --results-maxlen N  STREAM:results is capped near N entries (1000000)\n"
		"      --exit-when-done    end when the group has nothing pending and nothing\n"
		"                          new comes\n"
		"      --shared-limits     --limit-rate holds for all consumers of the stream\n"
		"                          together (its state in Redis, tokens taken a few at\n"
		"                          a time), per host\n"
		"      --metrics ADDR:PORT serve Prometheus metrics at http://ADDR:PORT/metrics\n"
		"                          while sending (port 0: any; the address is said on\n"
		"                          stderr): results by status, category and host, in\n"
		"                          flight, queue depth, pace, a latency histogram\n"
		"      --no-progress       no progress line (there is one only when stderr is\n"
		"                          a terminal, and not with -q or --json)\n"
		"  -q, --quiet             no summary (errors only)\n"
		"      --json              the summary as one JSON object on stdout\n"
		"  -h, --help              this text\n"
		"\n"
		"A bad record (not JSON, a missing field, a bad address, an unreadable file, a\n"
		"duplicate id, a message file without sender or recipients, a CSV row with too\n"
		"few or too many fields, a template variable without a column) gets its own\n"
		"journal line with status bad_input, the reason and its position (FILE:LINE, or\n"
		"the message file's path), and sending goes on. A record whose id has a final\n"
		"line but whose content changed since (another hash) is not sent, and said.\n"
		"SIGINT or SIGTERM: no more input is read, what is in flight gets --drain to\n"
		"finish, the journal is flushed and the summary printed; cancelled messages\n"
		"get no journal line (a rerun sends them). A second signal exits at once.\n"
		"exit status: 0 every message delivered, 1 some not, 2 usage error, 3 could not\n"
		"             start, 4 input errors (bad records, changed input)\n");
}

/* One message in flight: what its result needs for the journal. Made by the main
 * thread, freed by the worker that hands its result. */
struct pending {
	char *id;
	char *body;
	uint64_t hash;
	char *position;
	uint32_t deferrals; /* retry intervals it used on earlier runs (the journal's count) */
	char *entry;        /* its Redis stream entry, acknowledged after its result; or NULL */
};

/* Shared with the engine's workers (on_result): journal and args are set before the
 * start; the atomics are anyone's to add to. */
struct send_state {
	smtpbulk_journal_t *journal;
	struct send_live live; /* by_status: the workers'; the input counts: the main thread's */
	const int64_t *schedule; /* seconds to the next attempt after the k-th deferral */
	size_t n_schedule;
	struct redis_source *redis; /* --source: results acknowledged there (any thread) */
	uint64_t redis_acked, redis_dead; /* at the end, for the summary */
	_Atomic uint64_t journal_errors;
	_Atomic int journal_err;
};

static volatile sig_atomic_t signals;

static void on_signal(int sig)
{
	if (signals++)
		_exit(128 + sig); /* a second one: at once (what was fsync'd stays) */
}

static const char *const status_names[] = {"delivered", "partial", "rejected", "failed",
					    "timed_out", "cancelled"};

/* A result to STREAM:results, and the entry acknowledged (at the next flush). */
static void redis_result(struct redis_source *rs, const struct pending *p,
			 const smtpbulk_result_t *r)
{
	char code[16], attempts[16], latency[32], qid[128] = "";
	snprintf(code, sizeof(code), "%d", r->reply.code);
	snprintf(attempts, sizeof(attempts), "%u", r->attempts);
	snprintf(latency, sizeof(latency), "%.3f", (double)r->latency_ns / 1e6);
	if (r->reply.text)
		smtpbulk_queue_id(r->reply.text, qid, sizeof(qid));
	const char *f[] = {
		"id", p->id, "status", (unsigned)r->status < 6 ? status_names[r->status] : "?",
		"category", smtpbulk_category_name(r->category), "code", code,
		"enhanced", r->reply.enhanced ? r->reply.enhanced : "",
		"text", r->reply.text ? r->reply.text : "",
		"error", r->error ? smtpbulk_strerror(r->error) : "",
		"queue_id", qid, "host", r->host ? r->host : "", "attempts", attempts,
		"latency_ms", latency,
	};
	redis_source_done(rs, p->entry, f, sizeof(f) / sizeof(f[0]));
}

static void on_result(const smtpbulk_result_t *r, void *arg)
{
	struct send_state *st = arg;
	struct pending *p = r->user_data;
	send_live_result(&st->live, r);
	/* Cancelled (a stop): not a result of sending; a rerun sends it. */
	if (st->journal && r->status != SMTPBULK_CANCELLED) {
		smtpbulk_journal_entry_t e = {.struct_size = sizeof(e), .id = p->id, .result = r,
					      .position = p->position, .input_hash = p->hash};
		/* A temporary failure gets its next try (RFC 5321 4.5.4.1), until the
		 * schedule is used up: then it has given up. */
		if ((r->status == SMTPBULK_FAILED || r->status == SMTPBULK_TIMED_OUT) &&
		    p->deferrals < st->n_schedule)
			e.next_attempt = (int64_t)time(NULL) + st->schedule[p->deferrals];
		int rc = smtpbulk_journal_record(st->journal, &e);
		if (rc) {
			int z = 0;
			atomic_compare_exchange_strong(&st->journal_err, &z, rc);
			atomic_fetch_add(&st->journal_errors, 1);
		}
	}
	if (st->redis && p->entry && r->status != SMTPBULK_CANCELLED)
		redis_result(st->redis, p, r);
	free(p->id);
	free(p->body);
	free(p->position);
	free(p->entry);
	free(p);
}

struct send_args {
	const char *target, *manifest, *journal, *hello, *from, *tpl, *csv, *metrics;
	const char *source, *group, *consumer;
	uint64_t claim_idle_ms, max_deliveries, results_maxlen;
	int exit_when_done, shared_limits;
	char *const *paths; /* --mail: the operands after the target */
	size_t n_paths;
	uint64_t sessions, pipeline, window, workers, timeout_ms, max_attempts, defer_ms;
	uint64_t max_per_conn, bound, max_size, flush_ms, drain_ms;
	unsigned rate_n, rate_per_ms, rate_burst;
	int backend, retry_failed, quiet, json, help, mail, no_progress, resume;
	int64_t schedule[32];
	size_t n_schedule;
	struct tool_security sec; /* the password wiped once the engine has its copy */
	const char *hosts[17];    /* the target, then each --extra-host */
	size_t n_hosts;
	int dsn_required;
	int have_pipeline;
};

enum {
	OPT_RETRY_FAILED = 256, OPT_FLUSH, OPT_WORKERS, OPT_BACKEND, OPT_HELLO, OPT_TIMEOUT,
	OPT_MAX_ATTEMPTS, OPT_DEFER, OPT_LIMIT_RATE, OPT_MAX_PER_CONN, OPT_BOUND, OPT_MAX_SIZE,
	OPT_DRAIN, OPT_JSON, OPT_FROM, OPT_TEMPLATE, OPT_RECIPIENTS, OPT_METRICS, OPT_NO_PROGRESS, OPT_RESUME,
	OPT_EXTRA_HOST, OPT_DSN_REQUIRED, OPT_SOURCE, OPT_GROUP, OPT_CONSUMER, OPT_CLAIM_IDLE,
	OPT_MAX_DELIVERIES, OPT_RESULTS_MAXLEN, OPT_EXIT_WHEN_DONE,
	OPT_SHARED_LIMITS,
	OPT_SCHEDULE,
};

static const struct option long_opts[] = {
	{"journal", required_argument, NULL, 'j'},
	{"mail", no_argument, NULL, 'm'},
	{"from", required_argument, NULL, OPT_FROM},
	{"template", required_argument, NULL, OPT_TEMPLATE},
	{"metrics", required_argument, NULL, OPT_METRICS},
	{"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	{"recipients", required_argument, NULL, OPT_RECIPIENTS},
	{"retry-failed", no_argument, NULL, OPT_RETRY_FAILED},
	{"resume", no_argument, NULL, OPT_RESUME},
	{"extra-host", required_argument, NULL, OPT_EXTRA_HOST},
	{"source", required_argument, NULL, OPT_SOURCE},
	{"group", required_argument, NULL, OPT_GROUP},
	{"consumer", required_argument, NULL, OPT_CONSUMER},
	{"claim-idle", required_argument, NULL, OPT_CLAIM_IDLE},
	{"max-deliveries", required_argument, NULL, OPT_MAX_DELIVERIES},
	{"results-maxlen", required_argument, NULL, OPT_RESULTS_MAXLEN},
	{"exit-when-done", no_argument, NULL, OPT_EXIT_WHEN_DONE},
	{"shared-limits", no_argument, NULL, OPT_SHARED_LIMITS},
	{"dsn-required", no_argument, NULL, OPT_DSN_REQUIRED},
	{"retry-schedule", required_argument, NULL, OPT_SCHEDULE},
	{"flush", required_argument, NULL, OPT_FLUSH},
	{"sessions", required_argument, NULL, 's'},
	{"pipeline", required_argument, NULL, 'P'},
	{"window", required_argument, NULL, 'w'},
	{"workers", required_argument, NULL, OPT_WORKERS},
	{"backend", required_argument, NULL, OPT_BACKEND},
	{"hello", required_argument, NULL, OPT_HELLO},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
	{"defer", required_argument, NULL, OPT_DEFER},
	{"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
	{"max-per-conn", required_argument, NULL, OPT_MAX_PER_CONN},
	{"queue-bound", required_argument, NULL, OPT_BOUND},
	{"max-size", required_argument, NULL, OPT_MAX_SIZE},
	{"drain", required_argument, NULL, OPT_DRAIN},
	{"quiet", no_argument, NULL, 'q'},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	TOOL_SECURITY_LONGOPTS,
	{NULL, 0, NULL, 0},
};

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tool_vline(stderr, "smtpbulk send: ", fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try smtpbulk send --help)\n");
	return SEND_USAGE;
}

/* "30m,1h,2h": seconds each (units s, m, h, d; a bare number is seconds); "none": empty.
 * Returns 0, or -1. */
static int parse_schedule(const char *v, int64_t *out, size_t cap, size_t *n)
{
	*n = 0;
	if (strcmp(v, "none") == 0)
		return 0;
	const char *p = v;
	for (;;) {
		char *end;
		errno = 0;
		unsigned long long x = strtoull(p, &end, 10);
		if (end == p || errno || *n == cap)
			return -1;
		int64_t unit = 1;
		switch (*end) {
		case 's': end++; break;
		case 'm': unit = 60; end++; break;
		case 'h': unit = 3600; end++; break;
		case 'd': unit = 86400; end++; break;
		default: break;
		}
		if (x > 366ull * 86400 / (unsigned long long)unit)
			return -1;
		out[(*n)++] = (int64_t)x * unit;
		if (*end == '\0')
			return 0;
		if (*end != ',')
			return -1;
		p = end + 1;
	}
}

static int set_option(struct send_args *a, int c, const char *v)
{
	int bad = 0;
	switch (c) {
	case 'j': a->journal = v; break;
	case 'm': a->mail = 1; break;
	case OPT_TEMPLATE: a->tpl = v; break;
	case OPT_METRICS: {
		const char *colon = strrchr(v, ':');
		uint64_t port;
		a->metrics = v;
		bad = !colon || colon == v || tool_u64(colon + 1, 0, 65535, &port);
		break;
	}
	case OPT_NO_PROGRESS: a->no_progress = 1; break;
	case OPT_RECIPIENTS: a->csv = v; break;
	case OPT_FROM:
		a->from = v;
		bad = smtpbulk_check_address(v) < 0 || strpbrk(v, " \t") != NULL;
		break;
	case OPT_RETRY_FAILED: a->retry_failed = 1; break;
	case OPT_RESUME: a->resume = 1; break;
	case OPT_EXTRA_HOST:
		bad = a->n_hosts >= 16 || tool_target_ok(v) != 0;
		if (!bad)
			a->hosts[1 + a->n_hosts++] = v; /* [0] is the target, set later */
		break;
	case OPT_DSN_REQUIRED: a->dsn_required = 1; break;
	case OPT_SOURCE: {
		struct redis_target t;
		a->source = v;
		bad = redis_parse_url(v, &t) != 0;
		break;
	}
	case OPT_GROUP: a->group = v; bad = !*v || strpbrk(v, " \r\n") != NULL; break;
	case OPT_CONSUMER: a->consumer = v; bad = !*v || strpbrk(v, " \r\n") != NULL; break;
	case OPT_CLAIM_IDLE: bad = tool_seconds_ms(v, 100, 86400000, &a->claim_idle_ms); break;
	case OPT_MAX_DELIVERIES: bad = tool_u64(v, 0, 1000000, &a->max_deliveries); break;
	case OPT_RESULTS_MAXLEN: bad = tool_u64(v, 1, 1ull << 40, &a->results_maxlen); break;
	case OPT_EXIT_WHEN_DONE: a->exit_when_done = 1; break;
	case OPT_SHARED_LIMITS: a->shared_limits = 1; break;
	case OPT_SCHEDULE: bad = parse_schedule(v, a->schedule, 32, &a->n_schedule); break;
	case OPT_FLUSH: bad = tool_seconds_ms(v, 1, 60000, &a->flush_ms); break;
	case 's': bad = tool_u64(v, 1, 65535, &a->sessions); break;
	case 'P': bad = tool_u64(v, 0, 2, &a->pipeline); break;
	case 'w': bad = tool_u64(v, 1, 16, &a->window); break;
	case OPT_WORKERS: bad = tool_u64(v, 1, 1024, &a->workers); break;
	case OPT_BACKEND: bad = tool_backend(v, &a->backend); break;
	case OPT_HELLO: a->hello = v; bad = !*v || strpbrk(v, "\r\n <>") != NULL; break;
	case OPT_TIMEOUT: bad = tool_seconds_ms(v, 1, UINT32_MAX, &a->timeout_ms); break;
	case OPT_MAX_ATTEMPTS: bad = tool_u64(v, 1, 1000, &a->max_attempts); break;
	case OPT_DEFER: bad = tool_seconds_ms(v, 1, UINT32_MAX, &a->defer_ms); break;
	case OPT_LIMIT_RATE: bad = tool_rate(v, &a->rate_n, &a->rate_per_ms, &a->rate_burst); break;
	case OPT_MAX_PER_CONN: bad = tool_u64(v, 1, UINT32_MAX, &a->max_per_conn); break;
	case OPT_BOUND: bad = tool_u64(v, 1, 100000000, &a->bound); break;
	case OPT_MAX_SIZE: bad = tool_u64(v, 1, 1ull << 32, &a->max_size); break;
	case OPT_DRAIN: bad = tool_seconds_ms(v, 0, 3600000, &a->drain_ms); break;
	case 'q': a->quiet = 1; break;
	case OPT_JSON: a->json = 1; break;
	case 'h': a->help = 1; break;
	default: {
		const char *which = NULL;
		return tool_security_option(&a->sec, c, v, &which) ? -1 : 0;
	}
	}
	return bad ? -1 : 0;
}

static const char *option_name(int c)
{
	static char buf[40];
	for (const struct option *o = long_opts; o->name; o++)
		if (o->val == c) {
			snprintf(buf, sizeof(buf), "--%s", o->name);
			return buf;
		}
	return "an option";
}

static int parse_args(int argc, char **argv, struct send_args *a)
{
	memset(a, 0, sizeof(*a));
	tool_security_init(&a->sec);
	a->sessions = 8;
	a->pipeline = 2;
	a->window = 8;
	a->bound = 10000;
	a->max_size = 50ull << 20;
	a->flush_ms = 200;
	a->drain_ms = 30000;
	a->timeout_ms = 30000;
	a->max_attempts = 3;
	a->defer_ms = 1000;
	a->claim_idle_ms = 60000;
	a->max_deliveries = 5;
	a->results_maxlen = 1000000;
	/* RFC 5321 4.5.4.1: at least 30 minutes between tries, give up after 4-5 days. */
	parse_schedule("30m,1h,2h,4h,8h,16h,24h,24h,24h", a->schedule, 32, &a->n_schedule);
	opterr = 0;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "j:ms:P:w:qh", long_opts, NULL)) != -1) {
		if (c == '?' || c == ':')
			return usage_error("unknown option or missing value: %s", argv[optind - 1]);
		if (c == TOOL_OPT_PASSWORD)
			return usage_error("no --password: a command line is visible to every local "
					   "user; use --password-file FILE or SMTPBULK_PASSWORD");
		if (set_option(a, c, optarg))
			return usage_error("bad value '%s' for %s", optarg ? optarg : "",
					   option_name(c));
	}
	if (a->help)
		return 0;
	if (optind >= argc)
		return usage_error("no target: give HOST[:PORT] (or unix:/PATH)");
	a->target = argv[optind++];
	a->hosts[0] = a->target;
	a->n_hosts++;
	if (tool_target_ok(a->target))
		return usage_error("bad target '%s': HOST[:PORT], [IPv6]:PORT or unix:/PATH", a->target);
	if (a->source && (a->tpl || a->mail))
		return usage_error("--source reads records from Redis: no --mail or --template");
	if ((a->group || a->consumer || a->exit_when_done || a->shared_limits) && !a->source)
		return usage_error("--group, --consumer, --exit-when-done and --shared-limits are "
				   "for --source");
	if (a->shared_limits && !a->rate_n)
		return usage_error("--shared-limits shares --limit-rate: give one");
	if (a->source && (a->resume || a->retry_failed))
		return usage_error("--resume and --retry-failed are for files: a stream's failed "
				   "entries are acknowledged with their result");
	if (a->source && !a->group)
		return usage_error("--source needs --group NAME (the consumer group)");
	if (!a->tpl != !a->csv)
		return usage_error("--template and --recipients go together");
	if (a->tpl && a->mail)
		return usage_error("--mail or --template, not both");
	if (a->tpl) {
		if (optind < argc)
			return usage_error("with --template, no manifest (got '%s')", argv[optind]);
	} else if (a->mail) {
		if (optind >= argc)
			return usage_error("--mail: no PATH (a message file, an mbox, a directory "
					   "or a Maildir)");
		a->paths = argv + optind;
		a->n_paths = (size_t)(argc - optind);
	} else {
		if (optind < argc && a->source)
			return usage_error("with --source, no manifest (got '%s')", argv[optind]);
		if (optind < argc)
			a->manifest = argv[optind++];
		if (optind < argc)
			return usage_error("one manifest at most (got '%s' too; message files "
					   "need --mail)", argv[optind]);
		if (a->from)
			return usage_error("--from is for --mail and --template (a manifest "
					   "names its sender per record)");
	}
	if (a->retry_failed && !a->journal)
		return usage_error("--retry-failed needs --journal");
	if (a->resume && !a->journal)
		return usage_error("--resume needs --journal");
	char why[512];
	if (tool_security_check(&a->sec, why, sizeof(why)) ||
	    tool_security_check_files(&a->sec, why, sizeof(why)))
		return usage_error("%s", why);
	return 0;
}

static smtpbulk_t *start_engine(struct send_args *a, struct send_state *st)
{
	smtpbulk_options_t o;
	smtpbulk_options_init(&o);
	o.connections = (unsigned)a->sessions;
	o.pipeline = (unsigned)a->pipeline;
	o.window = (unsigned)a->window;
	o.workers = (unsigned)a->workers;
	o.backend = (smtpbulk_backend_t)a->backend;
	o.hello = a->hello;
	o.timeout_ms = (unsigned)a->timeout_ms;
	o.max_attempts = (unsigned)a->max_attempts;
	o.defer_ms = (unsigned)a->defer_ms;
	o.max_per_conn = (unsigned)a->max_per_conn;
	o.queue_bound = (size_t)a->bound;
	o.host_rate = (smtpbulk_rate_t){a->rate_n, a->rate_per_ms, a->rate_burst};
	o.on_result = on_result;
	o.result_arg = st;
	o.dsn_required = a->dsn_required;
	smtpbulk_security_t sec;
	tool_security_apply(&a->sec, &o, &sec);
	/* smtpbulk_new() puts the target in front: the extra hosts are 1.. as given. */
	smtpbulk_host_t extra[16];
	char names[16][256];
	memset(extra, 0, sizeof(extra));
	for (size_t i = 1; i < a->n_hosts; i++) {
		if (tool_split_target(a->hosts[i], names[i - 1], sizeof(names[i - 1]),
				      &extra[i - 1].port) != 0) {
			fprintf(stderr, "smtpbulk send: bad host '%s'\n", a->hosts[i]);
			tool_security_wipe(&a->sec);
			return NULL;
		}
		extra[i - 1].host = names[i - 1];
	}
	if (a->n_hosts > 1) {
		o.hosts = extra;
		o.n_hosts = a->n_hosts - 1;
	}
	smtpbulk_t *sb = smtpbulk_new(a->target, &o);
	tool_security_wipe(&a->sec);
	if (!sb)
		fprintf(stderr, "smtpbulk send: cannot start for '%s': %s\n", a->target,
			smtpbulk_strerror(-errno));
	return sb;
}


/* A bad record's own journal line (and a line on stderr for the first few). */
static void bad_record(struct send_state *st, const struct send_args *a, struct send_live *n,
		       const char *id, const char *pos, uint64_t hash, const char *why)
{
	n->bad++;
	if (n->bad <= 5)
		fprintf(stderr, "smtpbulk send: %s: %s\n", pos, why);
	if (!st->journal)
		return;
	smtpbulk_journal_entry_t e = {.struct_size = sizeof(e), .id = id, .error = why,
				      .position = pos, .input_hash = hash};
	int rc = smtpbulk_journal_record(st->journal, &e);
	if (rc) {
		int z = 0;
		atomic_compare_exchange_strong(&st->journal_err, &z, rc);
	}
	(void)a;
}

/* Whether the journal already settles this record: 1 skip, 0 send, -1 changed input,
 * 2 its line is a bad-input line of this very record, 3 of another content at the same
 * place (a record fixed since, or bad in another way). *deferrals: its count so far. */
static int settled(const struct send_args *a, struct send_state *st, const char *id,
		   uint64_t hash, struct send_live *n, uint32_t *deferrals)
{
	smtpbulk_journal_state_t js;
	if (deferrals)
		*deferrals = 0;
	if (!st->journal || smtpbulk_journal_lookup(st->journal, id, &js) != 0)
		return 0;
	if (deferrals)
		*deferrals = js.deferrals;
	if (js.bad_input)
		return js.input_hash && hash && js.input_hash != hash ? 3 : 2;
	if (js.input_hash && js.input_hash != hash)
		return -1;
	int failed = js.status == SMTPBULK_FAILED || js.status == SMTPBULK_TIMED_OUT ||
		     js.status == SMTPBULK_CANCELLED;
	if (failed && a->retry_failed)
		return 0;
	if (failed && a->resume && js.next_attempt) {
		if (js.next_attempt <= (int64_t)time(NULL))
			return 0; /* due */
		n->not_due++;
		return 1;
	}
	if (js.status == SMTPBULK_DELIVERED)
		n->skipped_final++;
	else
		n->skipped_undelivered++;
	return 1;
}


/* The message for r, and its pending (what its result needs) as its user_data; the
 * library copies the envelope at submit and borrows the body until the result. The
 * pending takes r's id, body and source_ref, and pos, once submitted (the caller then
 * forgets them). */
static int make_message(struct send_record *r, char *pos, uint64_t hash,
			uint32_t deferrals, smtpbulk_message_t *m)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->position = pos;
	p->id = r->id;
	p->body = r->body;
	p->hash = hash;
	p->deferrals = deferrals;
	p->entry = r->source_ref;
	*m = (smtpbulk_message_t){
		.struct_size = sizeof(*m), .from = r->from, .rcpts = (const char *const *)r->to,
		.n_rcpts = r->n_to, .body = r->body, .body_len = r->body_len, .host = r->host - 1,
		.flags = SMTPBULK_MSG_BORROW_BODY, .user_data = p, .dsn_ret = r->dsn_ret,
		.envid = r->envid, .dsn_notify = r->dsn_notify,
		.orcpts = (const char *const *)r->orcpts,
	};
	return 0;
}

static void drop_message(smtpbulk_message_t *m)
{
	free(m->user_data); /* its id, body and position are still the record's */
}

/* Where the records come from: the lines of a manifest, or message files. */
struct input {
	FILE *in;                 /* a manifest, or NULL */
	const char *name;
	char *line;
	size_t cap;
	uint64_t lineno;
	struct mail_source *mail; /* --mail, or NULL */
	struct merge_source *merge; /* --template, or NULL */
	struct send_live *live;     /* where the bytes read go (input_pos) */
	uint64_t bytes;             /* of the manifest, read so far */
	int waits;                  /* a pipe or a terminal: the next line may be long in coming */
	struct redis_source *redis; /* --source, or NULL */
	char entry[64];             /* the stream entry of the record just read */
	unsigned tokens;            /* --shared-limits: messages this consumer may still send */
	uint64_t flushed_ns;        /* the last flush of acknowledgements */
	int paced;                  /* --shared-limits */
	smtpbulk_t *sb;             /* for what is in flight (--source) */
	char redis_stream[256];     /* its stream's name */
	size_t bound;
};

/* Whether the next record may take a while to come (stdin: a pipe that a producer
 * fills as it goes): then what is staged goes now rather than wait for a full batch. */
static int in_waits(const struct input *in)
{
	if (in->redis) /* what Redis gave is handed out: the next read may wait; paced, each
	                  record waited for its token: it goes as soon as it has one */
		return in->paced || redis_source_buffered(in->redis) == 0;
	return in->waits;
}

/* --shared-limits: one token of the host's rate, from Redis, before r may go: tokens
 * come a burst's worth at a time at most (a twentieth of a second's, so one consumer
 * does not hoard them), and a wait is what the script says, 100 ms at most between
 * asks. A signal stops the waiting (the record then goes: it was read). */
static void wait_for_token(struct input *in, const struct send_args *a,
			   const struct send_record *r)
{
	double per_s = (double)a->rate_n * 1000.0 / a->rate_per_ms;
	unsigned burst = a->rate_burst ? a->rate_burst : 1;
	char key[600];
	snprintf(key, sizeof(key), "%.260s:pace:%.300s", in->redis_stream,
		 a->hosts[r->host > 0 ? r->host - 1 : 0]);
	while (!in->tokens && !signals) {
		unsigned want = (unsigned)(per_s / 20) + 1, got = 0, wait_ms = 100;
		if (want > burst)
			want = burst;
		if (redis_take_tokens(in->redis, key, per_s, burst, want, &got, &wait_ms) == 0 && got) {
			in->tokens = got;
			break;
		}
		redis_source_flush(in->redis);
		usleep((useconds_t)(wait_ms > 100 ? 100 : wait_ms ? wait_ms : 1) * 1000);
	}
	if (in->tokens)
		in->tokens--;
}

/* The next entry of the stream as a record; waits for one (a signal, or with
 * --exit-when-done nothing left anywhere in the group, ends the input). */
static int next_from_redis(struct input *in, const struct send_args *a, struct send_record *r,
			   uint64_t *hash, char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	memset(r, 0, sizeof(*r));
	for (;;) {
		/* Acknowledgements go out in batches: before a read that may wait, or every
		 * 20 ms while entries are being handed out. */
		uint64_t now = tool_now_ns();
		if (!redis_source_buffered(in->redis) || now - in->flushed_ns > 20000000ull) {
			redis_source_flush(in->redis);
			in->flushed_ns = now;
		}
		if (signals)
			return 1;
		smtpbulk_counters_t c;
		smtpbulk_get_counters(in->sb, &c);
		uint64_t flight = c.submitted - c.completed;
		size_t want = flight >= in->bound ? 0 : in->bound - flight;
		if (want == 0) { /* the engine's back-pressure: wait for room, acks going out */
			usleep(10000);
			continue;
		}
		char *line = NULL;
		int rc = redis_source_next(in->redis, want > 64 ? 64 : want, 200, &line, in->entry,
					   sizeof(in->entry), why, why_cap);
		snprintf(pos, pos_cap, "%.200s:%s", a->source, in->entry);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			size_t len = strlen(line);
			*hash = smtpbulk_hash64(line, len);
			struct send_manifest_ctx ctx = {a->hosts, a->n_hosts, (size_t)a->max_size};
			int prc = send_manifest_parse(line, len, 0, &ctx, r, why, why_cap);
			free(line);
			if (prc)
				return -1;
			if (!(r->source_ref = strdup(in->entry))) {
				send_record_free(r);
				return snprintf(why, why_cap, "out of memory"), -1;
			}
			if (a->shared_limits)
				wait_for_token(in, a, r);
			return 0;
		}
		in->entry[0] = '\0';
		if (a->exit_when_done && flight == 0) {
			uint64_t acked, dead, waiting;
			redis_source_counts(in->redis, &acked, &dead, &waiting);
			if (!waiting && redis_source_group_empty(in->redis) == 1)
				return 1;
		}
	}
}

/* The next record: 0 and *r, 1 at the end, -1 a bad one (why), -2 the input could not
 * be read (said). pos names it either way; *hash is its content's. */
static int next_record(struct input *in, const struct send_args *a, struct send_record *r,
		       uint64_t *hash, char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	if (in->mail)
		return mail_source_next(in->mail, r, hash, pos, pos_cap, why, why_cap);
	if (in->redis)
		return next_from_redis(in, a, r, hash, pos, pos_cap, why, why_cap);
	if (in->merge) {
		int rc = merge_source_next(in->merge, r, hash, pos, pos_cap, why, why_cap);
		if (rc == -2)
			fprintf(stderr, "smtpbulk send: %s\n", why);
		return rc;
	}
	ssize_t len, raw_len;
	do {
		if ((len = raw_len = getline(&in->line, &in->cap, in->in)) < 0) {
			if (!ferror(in->in))
				return 1;
			fprintf(stderr, "smtpbulk send: reading %s: %s\n", in->name, strerror(errno));
			return -2;
		}
		in->lineno++;
		while (len && (in->line[len - 1] == '\n' || in->line[len - 1] == '\r'))
			in->line[--len] = '\0';
	} while (len == 0); /* blank lines are no records */
	snprintf(pos, pos_cap, "%.200s:%" PRIu64, in->name, in->lineno);
	in->bytes += (uint64_t)raw_len;
	atomic_store_explicit(&in->live->input_pos, in->bytes, memory_order_relaxed);
	*hash = smtpbulk_hash64(in->line, (size_t)len);
	struct send_manifest_ctx ctx = {a->hosts, a->n_hosts, (size_t)a->max_size};
	return send_manifest_parse(in->line, (size_t)len, in->lineno, &ctx, r, why, why_cap) ? -1
												    : 0;
}

/* Read the input and submit; stops at its end, a signal, or a failed submit. */
/* Records ready to submit. They go in batches: a worker that finds several waiting
 * takes them in one wake-up, where one at a time (the reading being slower than the
 * sending) would wake it once per message — measured: twice the system calls and three
 * times the CPU per message of the batched submits. */
enum { BATCH = 64 };
struct staged {
	struct send_record r;
	char *pos;
	uint64_t hash;
	uint32_t deferrals;
};

/* Submit what is staged, in one smtpbulk_submit_batch() where all goes well. Returns
 * 0, or the error that ends the feeding (what could not go is journaled as bad). */
static int flush_batch(smtpbulk_t *sb, struct staged *b, size_t *nb, const struct send_args *a,
		       struct send_state *st, struct send_live *n)
{
	smtpbulk_message_t m[BATCH];
	int made[BATCH];
	int rc = 0;
	char why[256];
	for (size_t i = 0; i < *nb; i++)
		made[i] = make_message(&b[i].r, b[i].pos, b[i].hash, b[i].deferrals, &m[i]);
	size_t i = 0;
	while (i < *nb) {
		int src = rc ? rc : made[i];
		size_t done = 0;
		if (!src) {
			size_t k = i;
			while (k < *nb && !made[k])
				k++; /* the run of messages made */
			src = smtpbulk_submit_batch(sb, m + i, k - i, 0, &done);
			for (size_t j = i; j < i + done; j++) {
				b[j].r.id = NULL; /* the pending's now, until its result */
				b[j].r.body = NULL;
				b[j].r.source_ref = NULL;
				b[j].pos = NULL;
				n->submitted++;
			}
			i += done;
			if (!src && i == k)
				continue;
		}
		/* b[i] could not go. */
		snprintf(why, sizeof(why), "not submitted: %s", smtpbulk_strerror(src));
		bad_record(st, a, n, b[i].r.id, b[i].pos, b[i].hash, why);
		if (st->redis && b[i].r.source_ref && src != SMTPBULK_ESTOPPED)
			redis_source_dead(st->redis, b[i].r.source_ref, why);
		if (!made[i])
			drop_message(&m[i]);
		if (src == -ENOMEM || src == SMTPBULK_ESTOPPED)
			rc = src; /* the rest of the batch: said the same way */
		i++;
	}
	for (size_t j = 0; j < *nb; j++) {
		send_record_free(&b[j].r);
		free(b[j].pos);
	}
	*nb = 0;
	return rc;
}

static int feed(smtpbulk_t *sb, struct input *in, const struct send_args *a,
		struct send_state *st, struct send_live *n)
{
	struct u64_set ids = {0}; /* ids of this run, hashed: a second record with one is bad */
	int rc = 0;
	char pos[PATH_MAX + 32], why[PATH_MAX + 512];
	struct staged batch[BATCH];
	size_t nb = 0;
	while (!signals && !rc) {
		struct send_record r;
		uint64_t hash;
		/* Nothing staged waits on an input that may be slow to give the next record
		 * (whatever the last one was: sent, bad or skipped). */
		if (nb && in_waits(in) && (rc = flush_batch(sb, batch, &nb, a, st, n)) != 0)
			break;
		int got = next_record(in, a, &r, &hash, pos, sizeof(pos), why, sizeof(why));
		if (got == 1)
			break;
		if (got == -2) {
			rc = -EIO;
			break;
		}
		n->records++;
		if (got < 0) {
			if (in->redis && in->entry[0]) /* to the dead letters, with its reason */
				redis_source_dead(in->redis, in->entry, why);
			/* Journaled by its position; a rerun over the same record says nothing
			 * new, and does not write it again. */
			if (settled(a, st, pos, hash, n, NULL) == 2) {
				n->bad++;
				continue;
			}
			bad_record(st, a, n, pos, pos, hash, why);
			continue;
		}
		/* A stream entry given again (claimed, or ours after a restart) is no
		 * duplicate record: the duplicate-id check is for files. */
		int added = in->redis ? 1 : u64_set_add(&ids, smtpbulk_hash64(r.id, strlen(r.id)));
		if (added == 0 && settled(a, st, pos, hash, n, NULL) == 2) {
			n->bad++; /* said on an earlier run */
			send_record_free(&r);
			continue;
		}
		if (added <= 0) {
			snprintf(why, sizeof(why), added ? "out of memory" : "duplicate id \"%.200s\"", r.id);
			bad_record(st, a, n, pos, pos, hash, why);
			send_record_free(&r);
			continue;
		}
		uint32_t deferrals;
		int s = settled(a, st, r.id, hash, n, &deferrals);
		if (s >= 2)
			s = 0; /* it could not be submitted last time: it goes now */
		if (s < 0) {
			n->changed++;
			if (n->changed <= 5)
				fprintf(stderr, "smtpbulk send: %s: id \"%s\" has a final line in the "
					"journal, but the record changed since: not sent\n", pos, r.id);
		}
		if (s && in->redis) { /* its entry ends here too */
			if (s > 0) {
				const char *f[] = {"id", r.id, "status", "already_final"};
				redis_source_done(in->redis, in->entry, f, 4);
			} else {
				redis_source_dead(in->redis, in->entry, "the record changed since its "
						  "final line in the journal");
			}
		}
		if (s) {
			send_record_free(&r);
			continue;
		}
		struct staged *x = &batch[nb];
		if (!(x->pos = strdup(pos))) {
			bad_record(st, a, n, r.id, pos, hash, "out of memory");
			send_record_free(&r);
			rc = -ENOMEM;
			break;
		}
		x->r = r;
		x->hash = hash;
		x->deferrals = deferrals;
		if (++nb == BATCH)
			rc = flush_batch(sb, batch, &nb, a, st, n);
	}
	/* What was read is sent, a stop or not: it counts as read. */
	int frc = flush_batch(sb, batch, &nb, a, st, n);
	u64_set_free(&ids);
	return rc ? rc : frc;
}

static void report(const struct send_args *a, const struct send_state *st,
		   const struct send_live *n, double elapsed)
{
	uint64_t d = st->live.by_status[SMTPBULK_DELIVERED], p = st->live.by_status[SMTPBULK_PARTIAL],
		 rj = st->live.by_status[SMTPBULK_REJECTED], f = st->live.by_status[SMTPBULK_FAILED],
		 t = st->live.by_status[SMTPBULK_TIMED_OUT], c = st->live.by_status[SMTPBULK_CANCELLED];
	if (a->json) {
		printf("{\"records\": %" PRIu64 ", \"submitted\": %" PRIu64 ", \"delivered\": %" PRIu64
		       ", \"partial\": %" PRIu64 ", \"rejected\": %" PRIu64 ", \"failed\": %" PRIu64
		       ", \"timed_out\": %" PRIu64 ", \"cancelled\": %" PRIu64
		       ", \"bad_input\": %" PRIu64 ", \"changed\": %" PRIu64
		       ", \"skipped_delivered\": %" PRIu64 ", \"skipped_undelivered\": %" PRIu64
		       ", \"not_due\": %" PRIu64 ", \"acked\": %" PRIu64 ", \"dead_lettered\": %" PRIu64
		       ", \"elapsed_s\": %.3f, \"msgs_per_s\": %.1f}\n",
		       n->records, n->submitted, d, p, rj, f, t, c, n->bad, n->changed,
		       n->skipped_final, n->skipped_undelivered, n->not_due, st->redis_acked,
		       st->redis_dead, elapsed,
		       elapsed > 0 ? (double)n->submitted / elapsed : 0.0);
	} else if (!a->quiet) {
		printf("records %" PRIu64 "  sent %" PRIu64 "  delivered %" PRIu64 "  partial %" PRIu64
		       "  rejected %" PRIu64 "  failed %" PRIu64 "  timed out %" PRIu64
		       "  cancelled %" PRIu64 "\n"
		       "bad input %" PRIu64 "  changed %" PRIu64 "  already final: delivered %" PRIu64
		       ", not delivered %" PRIu64 "  not due yet %" PRIu64 "\nelapsed %.3f s  %.0f msgs/s\n",
		       n->records, n->submitted, d, p, rj, f, t, c, n->bad, n->changed,
		       n->skipped_final, n->skipped_undelivered, n->not_due, elapsed,
		       elapsed > 0 ? (double)n->submitted / elapsed : 0.0);
	}
}

static void close_input(struct input *in)
{
	if (in->in && in->in != stdin)
		fclose(in->in);
	free(in->line);
	mail_source_close(in->mail);
	merge_source_close(in->merge);
	redis_source_close(in->redis);
}

static int run(struct send_args *a);

int cmd_send(int argc, char **argv)
{
	struct send_args a;
	int rc = parse_args(argc, argv, &a);
	if (!rc && a.help)
		usage(stdout);
	else if (!rc)
		rc = run(&a);
	tool_security_wipe(&a.sec); /* whatever path was taken */
	return rc;
}

static int run(struct send_args *a)
{
	int rc;
	struct send_state st;
	memset(&st, 0, sizeof(st));
	struct input in = {.in = stdin, .name = "stdin", .live = &st.live};
	if (a->tpl) {
		char why[PATH_MAX + 256];
		in.in = NULL;
		if (merge_source_open(a->tpl, a->csv, a->from, (size_t)a->max_size, &in.merge, why,
				      sizeof(why))) {
			fprintf(stderr, "smtpbulk send: %s\n", why);
			close_input(&in);
			return SEND_NOSTART;
		}
	} else if (a->source) {
		char why[512], host[200], consumer[300];
		struct redis_options ro = {.group = a->group, .consumer = a->consumer,
					   .claim_idle_ms = (unsigned)a->claim_idle_ms,
					   .max_deliveries = (unsigned)a->max_deliveries,
					   .results_maxlen = (size_t)a->results_maxlen};
		redis_parse_url(a->source, &ro.target);
		if (!ro.consumer) {
			if (gethostname(host, sizeof(host)) != 0)
				snprintf(host, sizeof(host), "localhost");
			host[sizeof(host) - 1] = '\0';
			snprintf(consumer, sizeof(consumer), "%s-%ld", host, (long)getpid());
			ro.consumer = consumer;
		}
		in.in = NULL;
		in.waits = 1;
		in.paced = a->shared_limits;
		in.bound = (size_t)a->bound;
		if (redis_source_open(&ro, &in.redis, why, sizeof(why))) {
			fprintf(stderr, "smtpbulk send: %s\n", why);
			close_input(&in);
			return SEND_NOSTART;
		}
		st.redis = in.redis;
		in.name = a->source;
		snprintf(in.redis_stream, sizeof(in.redis_stream), "%s", ro.target.stream);
	} else if (a->mail) {
		in.in = NULL;
		if (mail_source_open(a->paths, a->n_paths, a->from, (size_t)a->max_size, &in.mail)) {
			fprintf(stderr, "smtpbulk send: out of memory\n");
			return SEND_NOSTART;
		}
	} else if (a->manifest && strcmp(a->manifest, "-") != 0) {
		if (!(in.in = fopen(a->manifest, "r"))) {
			fprintf(stderr, "smtpbulk send: %s: %s\n", a->manifest, strerror(errno));
			return SEND_NOSTART;
		}
		in.name = a->manifest;
	}
	struct stat sst;
	if (in.in && fstat(fileno(in.in), &sst) == 0) {
		if (S_ISREG(sst.st_mode))
			st.live.input_size = (uint64_t)sst.st_size;
		else
			in.waits = 1;
	}
	if (a->journal) {
		uint64_t bad_line = 0;
		rc = smtpbulk_journal_open(a->journal, (unsigned)a->flush_ms, &st.journal, &bad_line);
		if (rc) {
			if (rc == SMTPBULK_EJOURNAL)
				fprintf(stderr, "smtpbulk send: %s line %" PRIu64 ": not a journal line "
					"of smtpbulk: refusing to append to it\n", a->journal, bad_line);
			else
				fprintf(stderr, "smtpbulk send: journal %s: %s\n", a->journal,
					smtpbulk_strerror(rc));
			close_input(&in);
			return SEND_NOSTART;
		}
	}
	st.schedule = a->schedule;
	st.n_schedule = a->n_schedule;
	smtpbulk_t *sb = start_engine(a, &st);
	in.sb = sb;
	if (!sb) {
		smtpbulk_journal_close(st.journal);
		close_input(&in);
		return SEND_NOSTART;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	struct send_live *n = &st.live;
	struct send_metrics *metrics = NULL;
	if (a->metrics) {
		char why[256];
		unsigned port = 0;
		double rate = a->rate_per_ms ? (double)a->rate_n * 1000.0 / a->rate_per_ms : 0;
		if (send_metrics_start(a->metrics, sb, n, rate, &metrics, &port, why, sizeof(why))) {
			fprintf(stderr, "smtpbulk send: %s\n", why);
			smtpbulk_free(sb);
			smtpbulk_journal_close(st.journal);
			close_input(&in);
			return SEND_NOSTART;
		}
		fprintf(stderr, "smtpbulk send: metrics at http://%.*s:%u/metrics\n",
			(int)(strrchr(a->metrics, ':') - a->metrics), a->metrics, port);
	}
	struct send_progress *progress = NULL;
	if (!a->quiet && !a->json && !a->no_progress)
		send_progress_start(STDERR_FILENO, n, &progress); /* none: not a terminal */
	uint64_t t0 = tool_now_ns();
	int frc = feed(sb, &in, a, &st, n);
	/* What is in flight gets all the time it needs, or --drain once a signal came. */
	uint64_t stop_at = 0;
	while (smtpbulk_drain(sb, 100) == -ETIMEDOUT) {
		if (in.redis)
			redis_source_flush(in.redis);
		if (signals && !stop_at)
			stop_at = tool_now_ns() + a->drain_ms * 1000000ull;
		if (stop_at && tool_now_ns() >= stop_at) {
			fprintf(stderr, "smtpbulk send: stopping: cancelling what did not finish "
				"within --drain\n");
			break;
		}
	}
	send_progress_stop(progress);
	send_metrics_stop(metrics);
	smtpbulk_free(sb); /* what is left ends CANCELLED; idle connections say QUIT */
	if (in.redis) { /* the last acknowledgements: Redis gets 10 s to come back for them */
		uint64_t acked, dead, waiting, give_up = tool_now_ns() + 10000000000ull;
		while (redis_source_flush(in.redis) && tool_now_ns() < give_up)
			usleep(100000);
		redis_source_counts(in.redis, &acked, &dead, &waiting);
		if (waiting)
			fprintf(stderr, "smtpbulk send: redis: %llu results could not be "
				"acknowledged: their entries stay pending and will be sent again\n",
				(unsigned long long)waiting);
		if (!a->quiet && !a->json)
			fprintf(stderr, "smtpbulk send: redis: %llu entries acknowledged, %llu of them "
				"dead-lettered\n", (unsigned long long)acked, (unsigned long long)dead);
		st.redis_acked = acked;
		st.redis_dead = dead;
	}
	double elapsed = (double)(tool_now_ns() - t0) / 1e9;
	int jrc = st.journal ? smtpbulk_journal_close(st.journal) : 0;
	if (!jrc)
		jrc = atomic_load(&st.journal_err);
	if (jrc)
		fprintf(stderr, "smtpbulk send: journal %s: %s: it may lack results\n", a->journal,
			smtpbulk_strerror(jrc));
	close_input(&in);
	report(a, &st, n, elapsed);
	if (frc || jrc)
		return SEND_NOSTART;
	if (n->bad || n->changed)
		return SEND_INPUT;
	uint64_t delivered = st.live.by_status[SMTPBULK_DELIVERED];
	/* A stop leaves the rest of the input unsent: not "every message delivered". */
	return delivered == n->submitted && !n->skipped_undelivered && !n->not_due && !signals
		       ? SEND_OK
									    : SEND_UNDELIVERED;
}
