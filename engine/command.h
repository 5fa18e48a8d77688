/*
 * The one-off commands (smtpbulk_command(): VRFY, EXPN, HELP, NOOP, ETRN), their pure
 * part: which are allowed, the argument's check, the command line, and the reply copied
 * out of the receive buffer for the caller. No I/O: unit-tested with buffers alone.
 */
#ifndef SB_COMMAND_H
#define SB_COMMAND_H

#include <stddef.h>

#include "smtp_reply.h"
#include "smtpbulk.h"

/* "EXPN " + SMTPBULK_CMD_ARG_MAX + CRLF, and a NUL: within RFC 5321's 512 octets. */
#define SMTP_CMD_LINE_MAX (5 + SMTPBULK_CMD_ARG_MAX + 2 + 1)

/*
 * May cmd go out with arg (NULL: none)? 0; SMTPBULK_ETURN for TURN and ATURN (RFC 2645:
 * they hand the connection's direction to whoever holds it, unauthenticated: never
 * sent); SMTPBULK_EBADPARAM for an argument with a byte below 0x20 or 0x7f (CR and LF
 * would smuggle a second command), one longer than SMTPBULK_CMD_ARG_MAX, a missing
 * one where the command needs one (VRFY, EXPN, ETRN), or an empty one; -EINVAL for a
 * value that is no command.
 */
int smtp_command_check(smtpbulk_cmd_t cmd, const char *arg);

/* Its line, "VERB[ arg]\r\n", into buf[cap] (NUL-terminated): its length without the
 * NUL, or what smtp_command_check() says, or -ENOSPC. */
int smtp_command_line(char *buf, size_t cap, smtpbulk_cmd_t cmd, const char *arg);

/* The verb of cmd ("VRFY"), or NULL for a value that is no command. */
const char *smtp_command_verb(smtpbulk_cmd_t cmd);

/* A parsed reply, copied into one allocation the caller frees with free() (that is
 * smtpbulk_command_reply_free()). 0 or -ENOMEM. */
int smtp_command_reply_copy(const struct smtp_reply *r, smtpbulk_command_reply_t **out);

#endif
