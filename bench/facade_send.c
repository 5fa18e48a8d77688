/*
 * The C facade row of bench/perl.sh: the Net::SMTP-style calls, as a C program using
 * the seed's interface would make them, with the Perl rows' settings.
 *   facade_send HOST:PORT MESSAGES SIZE CONNECTIONS PIPELINE
 * Prints "sent N, not delivered M". Built by bench/perl.sh against the build tree.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpbulk.h"

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: facade_send HOST:PORT MESSAGES SIZE CONNECTIONS PIPELINE\n");
		return 2;
	}
	long n = atol(argv[2]);
	size_t size = (size_t)atol(argv[3]);
	smtpbulk_options_t o;
	smtpbulk_options_init(&o);
	o.connections = (unsigned)atoi(argv[4]);
	o.pipeline = (unsigned)atoi(argv[5]);
	o.no_pin = 1; /* as the Perl module runs it */
	static const char head[] = "Subject: bench\n\n";
	char *body = malloc(size + 1);
	if (!body || size < sizeof(head))
		return 2;
	memcpy(body, head, sizeof(head) - 1);
	memset(body + sizeof(head) - 1, 'x', size - sizeof(head));
	body[size - 1] = '\n';
	smtpbulk_t *smtp = smtpbulk_new(argv[1], &o);
	if (!smtp) {
		perror("smtpbulk_new");
		return 3;
	}
	char rcpt[64];
	for (long i = 0; i < n; i++) {
		int rc;
		snprintf(rcpt, sizeof(rcpt), "r%ld@example.org", i);
		if ((rc = smtpbulk_mail(smtp, "s@example.com")) || (rc = smtpbulk_to(smtp, rcpt)) ||
		    (rc = smtpbulk_data(smtp)) || (rc = smtpbulk_datasend(smtp, body, size)) ||
		    (rc = smtpbulk_dataend(smtp))) {
			fprintf(stderr, "message %ld: %s\n", i, smtpbulk_strerror(rc));
			return 1;
		}
	}
	int undelivered = smtpbulk_quit(smtp, "bench");
	smtpbulk_free(smtp);
	printf("sent %ld, not delivered %d\n", n, undelivered);
	free(body);
	return undelivered == 0 ? 0 : 1;
}
