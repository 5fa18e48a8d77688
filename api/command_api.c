/*
 * smtpbulk_command(): one VRFY, EXPN, HELP, NOOP or ETRN on a ready connection of a
 * host, its reply back to the caller. The check and the line are engine/command.c's,
 * the hand-over to a worker engine.c's; the same handle serves the direct API and the
 * facade (smtpbulk_new()).
 */
#include <errno.h>
#include <stdlib.h>

#include "../engine/command.h"
#include "../engine/engine.h"
#include "smtpbulk.h"

int smtpbulk_command(smtpbulk_t *sb, const char *host, smtpbulk_cmd_t cmd, const char *arg,
		     int timeout_ms, smtpbulk_command_reply_t **out)
{
	char line[SMTP_CMD_LINE_MAX];
	if (out)
		*out = NULL;
	if (!sb || !out || timeout_ms <= 0)
		return -EINVAL;
	/* TURN, ATURN and a bad argument are refused before anything else: never sent. */
	int n = smtp_command_line(line, sizeof(line), cmd, arg);
	if (n < 0)
		return n;
	int h = sb_engine_host_named(sb, host);
	if (h < 0)
		return h;
	return sb_engine_command(sb, h, line, (size_t)n, timeout_ms, out);
}

void smtpbulk_command_reply_free(smtpbulk_command_reply_t *reply)
{
	free(reply); /* one allocation (engine/command.c) */
}
