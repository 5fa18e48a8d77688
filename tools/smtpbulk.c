/* smtpbulk: the command-line tool. Dispatches to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "smtpbulk.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: smtpbulk COMMAND [options]\n"
		"\n"
		"commands:\n"
		"  send     send real mail from a JSONL manifest, message files, a mail merge\n"
		"           or a Redis stream, with a journal of every result so a rerun\n"
		"           sends only what is not final yet\n"
		"  enqueue  add a manifest's records to a Redis stream for send --source\n"
		"  load     send generated mail to an SMTP server (or a built-in sink) and\n"
		"           report throughput and latency; a superset of smtp-source\n"
		"  sink     an SMTP server that accepts and discards mail (tests, benchmarks)\n"
		"\n"
		"  smtpbulk COMMAND --help   options of a command\n"
		"  smtpbulk --version        library version\n"
		"\n"
		"exit status: 0 success, 1 some messages not delivered, 2 usage error,\n"
		"             3 could not start (bad host, backend unavailable)\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("smtpbulk %s\n", smtpbulk_version());
		return 0;
	}
	if (!strcmp(argv[1], "load"))
		return cmd_load(argc - 1, argv + 1);
	if (!strcmp(argv[1], "sink"))
		return cmd_sink(argc - 1, argv + 1);
	if (!strcmp(argv[1], "send"))
		return cmd_send(argc - 1, argv + 1);
	if (!strcmp(argv[1], "enqueue"))
		return cmd_enqueue(argc - 1, argv + 1);
	fprintf(stderr, "smtpbulk: unknown command '%s' (try smtpbulk --help)\n", argv[1]);
	return 2;
}
