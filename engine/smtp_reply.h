/*
 * SMTP reply parser (RFC 5321 §4.2). Pure: it points into the caller's buffer and never
 * allocates, so it can be unit-tested and fuzzed without sockets.
 */
#ifndef SB_SMTP_REPLY_H
#define SB_SMTP_REPLY_H

#include <stddef.h>

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
#define SMTP_REPLY_LINE_MAX 512
/* A whole multi-line reply (an EHLO answer is the longest we expect) fits in this. */
#define SMTP_REPLY_MAX 16384

enum {
	SMTP_REPLY_NEED_MORE = 0,
	SMTP_REPLY_EMALFORMED = -1,
	SMTP_REPLY_ETOOLONG = -2,
};

struct smtp_reply {
	int code;           /* 200..599 */
	const char *enh;    /* enhanced status code of the first line ("5.1.1"), or NULL */
	size_t enh_len;
	const char *raw;    /* the whole reply, all lines with their CRLFs */
	size_t raw_len;
	unsigned nlines;
};

/*
 * Parse one complete reply at the start of buf[0..len). Returns the bytes it spans (> 0),
 * SMTP_REPLY_NEED_MORE when the reply is not complete yet, SMTP_REPLY_EMALFORMED, or
 * SMTP_REPLY_ETOOLONG when a line exceeds SMTP_REPLY_LINE_MAX or the reply SMTP_REPLY_MAX.
 * Lines end in CRLF; a bare LF is tolerated.
 */
int smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *r);

/*
 * Iterate the text of each line of a parsed reply, the code, separator and (when
 * skip_enh) the enhanced code stripped. *pos starts at 0. Returns 1 and the line's text,
 * or 0 after the last line.
 */
int smtp_reply_next_line(const struct smtp_reply *r, size_t *pos, int skip_enh,
			 const char **text, size_t *text_len);

/*
 * A 4xx that says the connection has carried all the messages the server takes on it:
 * the enhanced code 4.5.3 (OpenSMTPD's "452 4.5.3 Too many recipients: Too many
 * messages sent") or "too many" in the text of any line ("4.7.0 too many messages").
 * Only a reply to MAIL, on a connection that delivered before, means that (the session
 * decides). 1 or 0.
 */
int smtp_reply_says_too_many(const struct smtp_reply *r);

/*
 * A reply to RCPT that refuses the recipient only because the transaction has as many
 * as the server takes (Postfix's "452 4.5.3 Error: too many recipients"): 452, or the
 * 552 of RFC 821 (a temporary refusal all the same, RFC 5321 §4.5.3.1.10), with the
 * enhanced code X.5.3 or "too many recipients" in its text. The recipient goes in a
 * further transaction of the same message. 1 or 0.
 */
int smtp_reply_too_many_rcpts(const struct smtp_reply *r);

/* Length of an enhanced status code "c.sss.ddd" at the start of s whose class is cls
 * (2, 4 or 5), followed by a space or the end; 0 if there is none. */
size_t smtp_enhanced_code_len(const char *s, size_t len, int cls);

#endif
