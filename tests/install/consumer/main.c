#include <smtpbulk.h>
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
	return 0;
}
