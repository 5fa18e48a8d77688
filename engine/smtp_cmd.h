/*
 * SMTP command writer. Pure: formats commands into caller buffers and refuses anything
 * that could smuggle a second command (CR, LF, NUL) or break the path syntax.
 */
#ifndef SB_SMTP_CMD_H
#define SB_SMTP_CMD_H

#include <stddef.h>
#include <stdint.h>

/* RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets. */
#define SMTP_PATH_MAX 254
/* The longest command we write: MAIL FROM:<254> or RCPT TO:<254> plus parameters. */
#define SMTP_CMD_MAX 1024 /* with DSN's ORCPT (500) and ENVID (100) */

enum smtp_mail_flag {
	SMTP_MAIL_8BITMIME = 1u << 0, /* add BODY=8BITMIME */
	SMTP_MAIL_SMTPUTF8 = 1u << 1, /* add SMTPUTF8 */
};

/*
 * Normalise an address: surrounding spaces and one pair of angle brackets are removed.
 * Writes the bare address (NUL-terminated) to out[cap]; returns its length, or
 * SMTPBULK_EBADADDR for CR, LF, NUL-free but control characters, '<', '>' inside, an
 * unbalanced bracket, or more than SMTP_PATH_MAX octets. An empty result is allowed
 * (the null sender); callers refuse it for recipients.
 */
int smtp_addr_normalize(const char *in, char *out, size_t cap);

/* 1 when s has a byte >= 0x80 (needs SMTPUTF8 in an address). */
int smtp_has_8bit(const char *s, size_t len);

/* Validate a domain or word for EHLO/HELO: printable ASCII, no spaces. 0 or SMTPBULK_EBADPARAM. */
int smtp_check_hello(const char *name);

/* Each returns the command's length (CRLF included), -ENOSPC, or a validation error. */
int smtp_cmd_ehlo(char *buf, size_t cap, const char *name);
int smtp_cmd_helo(char *buf, size_t cap, const char *name);
int smtp_cmd_lhlo(char *buf, size_t cap, const char *name); /* LMTP, RFC 2033 §4.1 */
/* size 0: no SIZE= parameter. params: NULL, or parameters made by smtp_dsn_mail() /
 * smtp_dsn_rcpt() below (each with its leading space), written as they are. */
int smtp_cmd_mail(char *buf, size_t cap, const char *from, uint64_t size, unsigned flags,
		  const char *params);
int smtp_cmd_rcpt(char *buf, size_t cap, const char *rcpt, const char *params);

/* DSN (RFC 3461). The public SMTPBULK_DSN_* values. */
#define SMTP_ENVID_MAX 100 /* §4.4: ENVID's xtext is at most 100 characters */
#define SMTP_ORCPT_MAX 500 /* §4.2: ORCPT's value at most 500 */
/* xtext (§4): bytes outside '!'..'~', '+' and '=' as "+HH". Returns the length
 * written (NUL-terminated), or -ENOSPC. */
int smtp_xtext(const char *in, char *out, size_t cap);
/* " RET=FULL|HDRS ENVID=xtext" as asked (ret 0: no RET; envid NULL or "": none) into
 * out: its length (0: nothing to add), SMTPBULK_EBADPARAM (a bad ret, an ENVID over
 * SMTP_ENVID_MAX once encoded) or -ENOSPC. */
int smtp_dsn_mail(char *out, size_t cap, unsigned ret, const char *envid);
/* " NOTIFY=... ORCPT=type;xtext" (notify 0: no NOTIFY; orcpt NULL or "": none). The
 * original recipient is an address, or "type;address" with its own address type
 * (rfc822, utf-8); a bare one is rfc822. SMTPBULK_EBADPARAM: NEVER with another
 * NOTIFY keyword, unknown bits, an ORCPT over SMTP_ORCPT_MAX once encoded. */
int smtp_dsn_rcpt(char *out, size_t cap, unsigned notify, const char *orcpt);

#define SMTP_CMD_DATA "DATA\r\n"
#define SMTP_CMD_RSET "RSET\r\n"
#define SMTP_CMD_QUIT "QUIT\r\n"
#define SMTP_CMD_STARTTLS "STARTTLS\r\n"

#endif
