/* smtpbulk enqueue: a manifest's records into a Redis stream, for senders that read it
 * as a consumer group (smtpbulk send --source). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "send_redis.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk enqueue --to redis://HOST[:PORT]/STREAM [MANIFEST]\n"
		"       smtpbulk enqueue --to 'redis+unix:///PATH?stream=STREAM' [MANIFEST]\n"
		"\n"
		"Add each record of a JSONL manifest (a file, or standard input when it is\n"
		"'-' or not given) to a Redis stream as one entry (XADD, pipelined 500 at a\n"
		"time): its fields are the record's, string values as they are, the others\n"
		"(\"to\" as a list, \"vars\", \"headers\", \"dsn\") as JSON text. smtpbulk send\n"
		"--source reads them back as manifest records.\n"
		"\n"
		"  --to URL        the stream\n"
		"  -h, --help      this text\n"
		"\n"
		"A line that is not a JSON object is said on stderr and skipped.\n"
		"exit status: 0 all added, 2 usage error, 3 Redis failed, 4 bad lines\n");
}

int cmd_enqueue(int argc, char **argv)
{
	const char *to = NULL, *manifest = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--to") && i + 1 < argc) {
			to = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "smtpbulk enqueue: unknown option or missing value: %s (try "
				"smtpbulk enqueue --help)\n", argv[i]);
			return 2;
		} else if (!manifest) {
			manifest = argv[i];
		} else {
			fprintf(stderr, "smtpbulk enqueue: one manifest at most (try --help)\n");
			return 2;
		}
	}
	struct redis_target t;
	if (!to || redis_parse_url(to, &t)) {
		fprintf(stderr, "smtpbulk enqueue: --to redis://HOST[:PORT]/STREAM or "
			"redis+unix:///PATH?stream=STREAM is needed%s%s\n", to ? ", not " : "",
			to ? to : "");
		return 2;
	}
	FILE *in = stdin;
	const char *name = "stdin";
	if (manifest && strcmp(manifest, "-") != 0) {
		if (!(in = fopen(manifest, "r"))) {
			fprintf(stderr, "smtpbulk enqueue: %s: %s\n", manifest, strerror(errno));
			return 3;
		}
		name = manifest;
	}
	uint64_t added = 0, bad = 0;
	int rc = redis_enqueue(&t, in, name, &added, &bad);
	if (in != stdin)
		fclose(in);
	fprintf(stderr, "smtpbulk enqueue: %llu added to %s, %llu bad lines\n",
		(unsigned long long)added, t.stream, (unsigned long long)bad);
	return rc ? 3 : bad ? 4 : 0;
}
