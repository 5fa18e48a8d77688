/* The one-off commands' pure part (see command.h). */
#include "command.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *verb;
	unsigned char needs_arg;
} cmds[] = {
	[SMTPBULK_CMD_VRFY] = {"VRFY", 1}, [SMTPBULK_CMD_EXPN] = {"EXPN", 1},
	[SMTPBULK_CMD_HELP] = {"HELP", 0}, [SMTPBULK_CMD_NOOP] = {"NOOP", 0},
	[SMTPBULK_CMD_ETRN] = {"ETRN", 1}, [SMTPBULK_CMD_TURN] = {"TURN", 0},
	[SMTPBULK_CMD_ATURN] = {"ATRN", 0},
};

const char *smtp_command_verb(smtpbulk_cmd_t cmd)
{
	unsigned i = (unsigned)cmd;
	return i < sizeof(cmds) / sizeof(cmds[0]) ? cmds[i].verb : NULL;
}

int smtp_command_check(smtpbulk_cmd_t cmd, const char *arg)
{
	if (!smtp_command_verb(cmd))
		return -EINVAL;
	/* Before the argument: whatever comes with them, these are never sent. */
	if (cmd == SMTPBULK_CMD_TURN || cmd == SMTPBULK_CMD_ATURN)
		return SMTPBULK_ETURN;
	if (!arg)
		return cmds[cmd].needs_arg ? SMTPBULK_EBADPARAM : 0;
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)arg; *p; p++, n++)
		if (*p < 0x20 || *p == 0x7f || n >= SMTPBULK_CMD_ARG_MAX)
			return SMTPBULK_EBADPARAM;
	/* "VRFY " with nothing behind it is a syntax error at the server: say so here. */
	if (n == 0 || arg[0] == ' ')
		return SMTPBULK_EBADPARAM;
	return 0;
}

int smtp_command_line(char *buf, size_t cap, smtpbulk_cmd_t cmd, const char *arg)
{
	int rc = smtp_command_check(cmd, arg);
	if (rc)
		return rc;
	const char *verb = cmds[cmd].verb;
	size_t vl = strlen(verb), al = arg ? strlen(arg) : 0;
	size_t n = vl + (arg ? 1 + al : 0) + 2;
	if (n + 1 > cap)
		return -ENOSPC;
	memcpy(buf, verb, vl);
	if (arg) {
		buf[vl] = ' ';
		memcpy(buf + vl + 1, arg, al);
	}
	memcpy(buf + n - 2, "\r\n", 3);
	return (int)n;
}

int smtp_command_reply_copy(const struct smtp_reply *r, smtpbulk_command_reply_t **out)
{
	size_t pos = 0, len, n = 0, text = 0;
	const char *t;
	*out = NULL;
	while (smtp_reply_next_line(r, &pos, 1, &t, &len)) {
		n++;
		text += len + 1;
	}
	/* The struct, the line pointers, each line (NUL-ended), the joined text (the
	 * same bytes, '\n' between them) and the enhanced code: one block, one free(). */
	size_t head = sizeof(smtpbulk_command_reply_t) + n * sizeof(char *);
	char *blk = malloc(head + 2 * text + 1 + r->enh_len + 1);
	if (!blk)
		return -ENOMEM;
	smtpbulk_command_reply_t *cr = (smtpbulk_command_reply_t *)(void *)blk;
	const char **lines = (const char **)(void *)(blk + sizeof(*cr));
	char *lp = blk + head, *joined = lp + text, *jp = joined, *enh = joined + text + 1;
	pos = 0;
	for (size_t i = 0; smtp_reply_next_line(r, &pos, 1, &t, &len); i++) {
		memcpy(lp, t, len);
		lp[len] = '\0';
		lines[i] = lp;
		lp += len + 1;
		if (i)
			*jp++ = '\n';
		memcpy(jp, t, len);
		jp += len;
	}
	*jp = '\0';
	if (r->enh_len)
		memcpy(enh, r->enh, r->enh_len);
	enh[r->enh_len] = '\0';
	cr->reply.code = r->code;
	cr->reply.enhanced = enh;
	cr->reply.text = joined;
	cr->lines = lines;
	cr->n_lines = n;
	*out = cr;
	return 0;
}
