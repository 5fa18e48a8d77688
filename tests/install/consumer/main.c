#include <smtpbulk.h>
#include <smtpbulk_send.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	/* Links, runs, and agrees with the header it was built against. */
	char want[32];
	snprintf(want, sizeof(want), "%d.%d.%d", SMTPBULK_VERSION_MAJOR, SMTPBULK_VERSION_MINOR,
		 SMTPBULK_VERSION_PATCH);
	if (strcmp(smtpbulk_version(), want) != 0)
		return 1;
	puts(smtpbulk_strerror(SMTPBULK_EBADADDR));
	/* The second header is installed, and its functions exported. */
	char qid[32];
	if (smtpbulk_queue_id("Ok: queued as 4Dd1X", qid, sizeof(qid)) != 0 || strcmp(qid, "4Dd1X"))
		return 1;
	return 0;
}
