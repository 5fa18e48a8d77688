/*
 * The smallest program that sends mail through libsmtpbulk, with the Net::SMTP-style
 * calls of Perl's Net::SMTP::Bulk:  example_send HOST[:PORT] [COUNT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpbulk.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: example_send HOST[:PORT] [COUNT]\n");
		return 2;
	}
	long count = argc > 2 ? atol(argv[2]) : 1000;
	smtpbulk_t *smtp = smtpbulk_new(argv[1], NULL);
	if (!smtp) {
		perror("smtpbulk_new");
		return 1;
	}
	static const char body[] = "Subject: hello\n\nSent by libsmtpbulk.\n.leading dot\n";
	for (long i = 0; i < count; i++) {
		int rc;
		if ((rc = smtpbulk_mail(smtp, "sender@example.com")) ||
		    (rc = smtpbulk_to(smtp, "<rcpt@example.com>")) || (rc = smtpbulk_data(smtp)) ||
		    (rc = smtpbulk_datasend(smtp, body, strlen(body))) ||
		    (rc = smtpbulk_dataend(smtp))) {
			fprintf(stderr, "message %ld: %s\n", i, smtpbulk_strerror(rc));
			break;
		}
	}
	int undelivered = smtpbulk_quit(smtp, "example");
	smtpbulk_free(smtp);
	if (undelivered < 0) {
		fprintf(stderr, "quit: %s\n", smtpbulk_strerror(undelivered));
		return 1;
	}
	printf("%ld messages sent, %d not delivered\n", count, undelivered);
	return undelivered ? 1 : 0;
}
