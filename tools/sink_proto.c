#include "sink_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sasl.h"
#include "sink_rate.h"

/* End-of-data matcher: where we are relative to a line start, so "\r\n.\r\n" is found
 * even when split across reads. */
enum { EOD_TEXT, EOD_CR, EOD_BOL, EOD_DOT, EOD_DOTCR };

void sink_conn_init(struct sink_conn *c, const struct sink_cfg *cfg, uint64_t seed)
{
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->mode = SINK_CMD;
	c->rng = seed | 1;
}

static unsigned roll(struct sink_conn *c) /* 0..99, xorshift: cheap, good enough */
{
	c->rng ^= c->rng << 13;
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	return (unsigned)(c->rng % 100);
}

static void reply(struct sink_conn *c, const char *s)
{
	size_t n = strlen(s);
	if (n <= SINK_OUT_MAX - c->out_len) {
		memcpy(c->out + c->out_len, s, n);
		c->out_len += n;
	}
	/* Rolled only when asked, so the other faults' sequences stay what they were. */
	if (c->cfg->faults.delay_pct && roll(c) < c->cfg->faults.delay_pct)
		c->delay_req = 1;
}

void sink_greet(struct sink_conn *c)
{
	char buf[300];
	snprintf(buf, sizeof(buf), "220 %s %s smtpbulk sink\r\n", c->cfg->name,
		 c->cfg->lmtp ? "LMTP" : "ESMTP");
	reply(c, buf);
}

static void reset_txn(struct sink_conn *c)
{
	c->has_mail = 0;
	c->rcpts_ok = 0;
	c->body_bytes = 0;
	c->lmtp_addrs_len = 0;
}

void sink_tls_started(struct sink_conn *c)
{
	reset_txn(c);
	c->tls_on = 1;
	c->authed = 0;
	c->auth_mech = 0;
	c->line_len = 0;
	c->line_overflow = 0;
	c->mode = SINK_CMD;
}

/* LMTP's replies after the data: one per recipient accepted at RCPT, in RCPT order
 * (RFC 2033 §4.2). A data fault (fault != NULL) refuses the message for every one of
 * them; otherwise each recipient's local part decides. Returns how many got 250. */
static unsigned lmtp_replies(struct sink_conn *c, const char *fault)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < c->rcpts_ok; i++) {
		const struct sink_lmtp_rcpt *r = &c->lmtp_rcpt[i];
		char buf[SINK_LINE_MAX + 64];
		if (fault)
			reply(c, fault);
		else if (r->fate == SINK_FATE_TEMP)
			reply(c, "452 4.2.2 Mailbox full\r\n");
		else if (r->fate == SINK_FATE_PERM)
			reply(c, "550 5.2.1 Mailbox disabled\r\n");
		else {
			snprintf(buf, sizeof(buf), "250 2.1.5 <%.*s> delivered\r\n", (int)r->len,
				 c->lmtp_addrs + r->off);
			reply(c, buf);
			ok++;
			continue;
		}
		c->counts.lmtp_rcpt_failed++;
	}
	return ok;
}

/* A message's data is complete: the final reply (LMTP: replies), faults, and counting.
 * A message is accepted when at least one recipient got 250 for it. */
static void end_message(struct sink_conn *c)
{
	const struct sink_faults *f = &c->cfg->faults;
	unsigned r = roll(c);
	const char *fault = NULL;
	if (r < f->reject_data)
		fault = "554 5.6.0 sink: message rejected (fault injection)\r\n";
	else if (r < f->reject_data + f->tempfail_data)
		fault = "451 4.3.0 sink: try again later (fault injection)\r\n";
	unsigned delivered;
	if (c->cfg->lmtp) {
		delivered = lmtp_replies(c, fault);
	} else {
		reply(c, fault ? fault : "250 2.0.0 Ok: queued\r\n");
		delivered = fault ? 0 : c->rcpts_ok;
	}
	if (delivered) {
		c->counts.messages++;
		c->counts.recipients += delivered;
		c->counts.bytes += c->body_bytes;
		c->msgs++;
		if (c->cfg->rate)
			sink_per_second_add(c->cfg->rate, c->mail_s);
	} else {
		c->counts.rejected++;
	}
	reset_txn(c);
	if (f->close_after && c->msgs >= f->close_after) {
		reply(c, "421 4.3.0 sink: closing after the set number of messages\r\n");
		c->mode = SINK_CLOSING;
	} else if (f->hang_after && c->msgs >= f->hang_after) {
		c->mode = SINK_HANG;
	}
}

static void b64_reply(struct sink_conn *c, const char *code, const char *text)
{
	char buf[300];
	if (sasl_b64_line(code, text, strlen(text), buf, sizeof(buf)) > 0)
		reply(c, buf);
}

static void auth_done(struct sink_conn *c, int ok)
{
	c->auth_mech = 0;
	if (ok) {
		c->authed = 1;
		c->counts.auth_ok++;
		reply(c, "235 2.7.0 Authentication successful\r\n");
	} else {
		c->counts.auth_failed++;
		reply(c, "535 5.7.8 Authentication credentials invalid\r\n");
	}
}

static int secret_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* One line of an AUTH exchange (c->auth_mech set): the client's base64 response. */
static void auth_response(struct sink_conn *c, const char *line, size_t len)
{
	const struct sink_cfg *cfg = c->cfg;
	char dec[600];
	if (len == 1 && line[0] == '*') { /* the client cancels: RFC 4954 */
		c->auth_mech = 0;
		reply(c, "501 5.7.0 Authentication cancelled\r\n");
		return;
	}
	int n = sasl_b64_decode(line, len, dec, sizeof(dec));
	if (n < 0) {
		c->auth_mech = 0;
		reply(c, "501 5.5.2 Cannot decode response\r\n");
		return;
	}
	switch (c->auth_mech) {
	case 1: { /* PLAIN: authzid \0 authcid \0 password */
		const char *u = memchr(dec, '\0', (size_t)n);
		const char *p = u ? memchr(u + 1, '\0', (size_t)(dec + n - (u + 1))) : NULL;
		auth_done(c, p && secret_eq(u + 1, cfg->auth_user) && secret_eq(p + 1, cfg->auth_pass));
		break;
	}
	case 2: /* LOGIN: the user name, then ask for the password */
		if ((size_t)n >= sizeof(c->auth_user_got)) { /* no such user: fail at the end */
			c->auth_user_got[0] = '\0';
		} else {
			memcpy(c->auth_user_got, dec, (size_t)n + 1);
		}
		c->auth_mech = 3;
		b64_reply(c, "334 ", "Password:");
		break;
	case 3:
		auth_done(c, secret_eq(c->auth_user_got, cfg->auth_user) && secret_eq(dec, cfg->auth_pass));
		break;
	case 4: { /* CRAM-MD5: "user hex(HMAC-MD5(password, challenge))" */
		const char *sp = strrchr(dec, ' ');
		char hex[33];
		int ok = sp && (size_t)(sp - dec) == strlen(cfg->auth_user) &&
			 !strncmp(dec, cfg->auth_user, (size_t)(sp - dec)) &&
			 sasl_cram_md5_hex(cfg->auth_pass, c->cram_challenge,
					   strlen(c->cram_challenge), hex) == 0 &&
			 strcmp(sp + 1, hex) == 0;
		auth_done(c, ok);
		break;
	}
	default:
		c->auth_mech = 0;
		break;
	}
}

/* "AUTH mech [initial-response]" */
static void auth_command(struct sink_conn *c, const char *line, size_t len)
{
	const char *p = line + 4, *end = line + len;
	while (p < end && *p == ' ')
		p++;
	const char *m = p;
	while (p < end && *p != ' ')
		p++;
	size_t ml = (size_t)(p - m);
	while (p < end && *p == ' ')
		p++;
	size_t irl = (size_t)(end - p);
	if (!c->cfg->auth_user) {
		reply(c, "502 5.5.1 Error: authentication not enabled\r\n");
	} else if (c->authed) {
		reply(c, "503 5.5.1 Error: already authenticated\r\n");
	} else if (c->has_mail) {
		reply(c, "503 5.5.1 Error: MAIL transaction in progress\r\n");
	} else if (ml == 5 && !strncasecmp(m, "PLAIN", 5)) {
		c->auth_mech = 1;
		if (irl)
			auth_response(c, p, irl);
		else
			reply(c, "334 \r\n");
	} else if (ml == 5 && !strncasecmp(m, "LOGIN", 5)) {
		c->auth_mech = 2;
		if (irl)
			auth_response(c, p, irl);
		else
			b64_reply(c, "334 ", "Username:");
	} else if (ml == 8 && !strncasecmp(m, "CRAM-MD5", 8) && !irl) {
		c->auth_mech = 4;
		snprintf(c->cram_challenge, sizeof(c->cram_challenge), "<%llu.%llu@%s>",
			 (unsigned long long)(c->rng & 0xffffff), (unsigned long long)c->msgs,
			 "sink.smtpbulk.invalid");
		b64_reply(c, "334 ", c->cram_challenge);
	} else {
		reply(c, "504 5.5.4 Unrecognized authentication type\r\n");
	}
}

static int verb_is(const char *line, size_t len, const char *verb)
{
	size_t n = strlen(verb);
	return len >= n && strncasecmp(line, verb, n) == 0 && (len == n || line[n] == ' ' || line[n] == ':');
}

/* The reply to EHLO, or to LHLO: the same extensions. */
static void hello_caps(struct sink_conn *c)
{
	char buf[512];
	reset_txn(c);
	snprintf(buf, sizeof(buf),
		 "250-%s\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE %llu\r\n"
		 "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n%s%s250 DSN\r\n",
		 c->cfg->name, (unsigned long long)c->cfg->size_max,
		 c->cfg->starttls && !c->tls_on ? "250-STARTTLS\r\n" : "",
		 c->cfg->auth_user ? "250-AUTH PLAIN LOGIN CRAM-MD5\r\n" : "");
	reply(c, buf);
}

/* The address of "RCPT TO:<addr> params" (or of "RCPT TO:addr"): *len bytes at the
 * returned pointer. */
static const char *rcpt_addr(const char *line, size_t len, size_t *alen)
{
	const char *end = line + len, *p = memchr(line, ':', len);
	p = p ? p + 1 : end;
	while (p < end && *p == ' ')
		p++;
	const char *q;
	if (p < end && *p == '<') {
		p++;
		q = memchr(p, '>', (size_t)(end - p));
		if (!q)
			q = end;
	} else {
		q = p;
		while (q < end && *q != ' ')
			q++;
	}
	*alen = (size_t)(q - p);
	return p;
}

static int prefix_is(const char *s, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && strncasecmp(s, prefix, n) == 0;
}

/* LMTP: keep an accepted recipient for the replies after the data. 0, or -1 when there
 * is no room for one more (then it is refused with 452, RFC 5321 §4.5.3.1.10). */
static int lmtp_keep(struct sink_conn *c, const char *line, size_t len)
{
	size_t alen;
	const char *a = rcpt_addr(line, len, &alen);
	if (c->rcpts_ok >= SINK_LMTP_RCPTS || alen > SINK_LMTP_ADDRS - c->lmtp_addrs_len)
		return -1;
	struct sink_lmtp_rcpt *r = &c->lmtp_rcpt[c->rcpts_ok];
	r->off = (uint16_t)c->lmtp_addrs_len;
	r->len = (uint16_t)alen;
	r->fate = prefix_is(a, alen, "lmtp-temp")   ? SINK_FATE_TEMP
		  : prefix_is(a, alen, "lmtp-perm") ? SINK_FATE_PERM
						    : SINK_FATE_OK;
	memcpy(c->lmtp_addrs + c->lmtp_addrs_len, a, alen);
	c->lmtp_addrs_len += alen;
	return 0;
}

/* A MAIL that passed every other check: --max-rate has the last word. Over the limit,
 * the connection ends as a throttling provider ends it: 421, then close. */
static void mail_ok(struct sink_conn *c)
{
	int64_t sec = c->cfg->rate ? sink_rate_take(c->cfg->rate, c->now_s) : c->now_s;
	if (sec < 0) {
		reply(c, "421 4.7.0 Rate limit exceeded: too many messages this second, "
			 "try again later\r\n");
		c->counts.throttled++;
		c->mode = SINK_CLOSING;
		return;
	}
	c->has_mail = 1;
	c->mail_s = (uint32_t)sec;
	reply(c, "250 2.1.0 Ok\r\n");
}

static void command(struct sink_conn *c, const char *line, size_t len)
{
	const struct sink_faults *f = &c->cfg->faults;
	char buf[512];

	if (c->auth_mech) { /* mid-AUTH: this line is a response, not a command */
		auth_response(c, line, len);
		return;
	}
	if (verb_is(line, len, "AUTH")) {
		auth_command(c, line, len);
		return;
	}

	if (c->cfg->lmtp && (verb_is(line, len, "EHLO") || verb_is(line, len, "HELO"))) {
		reply(c, "500 5.5.1 this is LMTP: say LHLO\r\n");
	} else if (verb_is(line, len, c->cfg->lmtp ? "LHLO" : "EHLO")) {
		hello_caps(c);
	} else if (verb_is(line, len, "STARTTLS")) {
		if (!c->cfg->starttls || c->tls_on) {
			reply(c, "502 5.5.1 Error: STARTTLS not available\r\n");
		} else if (len != 8) {
			reply(c, "501 5.5.4 Syntax: STARTTLS\r\n");
		} else {
			reply(c, "220 2.0.0 Ready to start TLS\r\n");
			if (f->starttls_inject)
				reply(c, "250 2.0.0 injected: ignore me\r\n");
			c->mode = SINK_STARTTLS;
		}
	} else if (verb_is(line, len, "HELO")) {
		reset_txn(c);
		snprintf(buf, sizeof(buf), "250 %s\r\n", c->cfg->name);
		reply(c, buf);
	} else if (verb_is(line, len, "MAIL")) {
		unsigned r = roll(c);
		if (c->cfg->auth_user && !c->authed)
			reply(c, "530 5.7.0 Authentication required\r\n");
		else if (c->has_mail)
			reply(c, "503 5.5.1 Error: nested MAIL command\r\n");
		else if (r < f->reject_mail)
			reply(c, "550 5.7.1 sink: sender rejected (fault injection)\r\n");
		else if (r < f->reject_mail + f->tempfail_mail)
			reply(c, "451 4.3.0 sink: sender deferred (fault injection)\r\n");
		else
			mail_ok(c);
	} else if (verb_is(line, len, "RCPT")) {
		unsigned r = roll(c);
		if (!c->has_mail)
			reply(c, "503 5.5.1 Error: need MAIL command\r\n");
		else if (r < f->reject_rcpt)
			reply(c, "550 5.1.1 sink: recipient rejected (fault injection)\r\n");
		else if (r < f->reject_rcpt + f->tempfail_rcpt)
			reply(c, "450 4.2.1 sink: recipient deferred (fault injection)\r\n");
		else if ((c->cfg->max_rcpts && c->rcpts_ok >= c->cfg->max_rcpts) ||
			 (c->cfg->lmtp && lmtp_keep(c, line, len) != 0))
			reply(c, "452 4.5.3 Error: too many recipients\r\n");
		else {
			c->rcpts_ok++;
			reply(c, "250 2.1.5 Ok\r\n");
		}
	} else if (verb_is(line, len, "DATA")) {
		if (!c->has_mail)
			reply(c, "503 5.5.1 Error: need MAIL command\r\n");
		else if (!c->rcpts_ok)
			reply(c, "554 5.5.1 Error: no valid recipients\r\n");
		else {
			reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
			c->mode = SINK_DATA;
			c->eod = EOD_BOL;
		}
	} else if (verb_is(line, len, "BDAT")) {
		char *end;
		const char *p = line + 4;
		while (*p == ' ')
			p++;
		unsigned long long n = strtoull(p, &end, 10);
		if (end == p) {
			reply(c, "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
			c->mode = SINK_CLOSING; /* the chunk length is unknown: cannot resync */
			return;
		}
		while (*end == ' ')
			end++;
		c->bdat_last = strncasecmp(end, "LAST", 4) == 0;
		c->bdat_left = n;
		c->mode = SINK_BDAT;
	} else if (verb_is(line, len, "RSET")) {
		reset_txn(c);
		reply(c, "250 2.0.0 Ok\r\n");
	} else if (verb_is(line, len, "NOOP")) {
		reply(c, "250 2.0.0 Ok\r\n");
	} else if (verb_is(line, len, "VRFY")) {
		/* RFC 5321 §3.5.3: a server that will not say still answers 252. */
		reply(c, len > 5 ? "252 2.5.2 Cannot VRFY user, but will accept message and "
				   "attempt delivery\r\n"
				 : "501 5.5.4 Syntax: VRFY address\r\n");
	} else if (verb_is(line, len, "EXPN")) {
		/* A sink has no lists: "list..." is not disclosed, anything else not one. */
		if (len <= 5)
			reply(c, "501 5.5.4 Syntax: EXPN list\r\n");
		else if (prefix_is(line + 5, len - 5, "list"))
			reply(c, "252 2.5.2 Cannot EXPN list, but will accept message and attempt "
				 "delivery\r\n");
		else
			reply(c, "550 5.1.1 sink: no such mailing list\r\n");
	} else if (verb_is(line, len, "HELP")) {
		reply(c, "214-2.0.0 This is the smtpbulk sink\r\n"
			 "214-2.0.0 Commands: EHLO HELO LHLO MAIL RCPT DATA BDAT RSET\r\n"
			 "214-2.0.0 NOOP QUIT VRFY EXPN HELP ETRN STARTTLS AUTH\r\n"
			 "214 2.0.0 End of HELP info\r\n");
	} else if (verb_is(line, len, "ETRN")) {
		/* RFC 1985: our own name (or "@name") has a queue to run; others have none. */
		const char *node = line + 5;
		size_t nl = len > 5 ? len - 5 : 0, own = strlen(c->cfg->name);
		if (nl && *node == '@') {
			node++;
			nl--;
		}
		if (len <= 5)
			reply(c, "501 5.5.4 Syntax: ETRN node\r\n");
		else if (nl == own && !strncasecmp(node, c->cfg->name, own))
			reply(c, "250 2.0.0 Queuing for node started\r\n");
		else
			reply(c, "458 4.0.0 Unable to queue messages for node\r\n");
	} else if (verb_is(line, len, "QUIT")) {
		reply(c, "221 2.0.0 Bye\r\n");
		c->mode = SINK_CLOSING;
	} else {
		reply(c, "502 5.5.2 Error: command not recognized\r\n");
	}
}

/* Skip DATA bytes, looking for the end of data; returns bytes used. */
static size_t data_bytes(struct sink_conn *c, const char *p, size_t len)
{
	size_t i = 0;
	while (i < len) {
		if (c->eod == EOD_TEXT) { /* fast path: jump to the next CR */
			const char *cr = memchr(p + i, '\r', len - i);
			if (!cr) {
				c->body_bytes += len - i;
				return len;
			}
			c->body_bytes += (size_t)(cr - (p + i)) + 1;
			i = (size_t)(cr - p) + 1;
			c->eod = EOD_CR;
			continue;
		}
		char ch = p[i++];
		c->body_bytes++;
		switch (c->eod) {
		case EOD_CR:
			c->eod = ch == '\n' ? EOD_BOL : ch == '\r' ? EOD_CR : EOD_TEXT;
			break;
		case EOD_BOL:
			c->eod = ch == '.' ? EOD_DOT : ch == '\r' ? EOD_CR : EOD_TEXT;
			break;
		case EOD_DOT:
			c->eod = ch == '\r' ? EOD_DOTCR : EOD_TEXT;
			break;
		case EOD_DOTCR:
			if (ch == '\n') {
				c->body_bytes -= 3; /* ".\r\n" is not part of the message */
				c->mode = SINK_CMD;
				end_message(c);
				return i;
			}
			c->eod = ch == '\r' ? EOD_CR : EOD_TEXT;
			break;
		}
	}
	return i;
}

size_t sink_input(struct sink_conn *c, const char *buf, size_t len)
{
	size_t i = 0;
	/* Keep room for the longest burst of replies one command can make. */
	while (i < len && c->out_len < SINK_OUT_MAX - SINK_OUT_RESERVE) {
		switch (c->mode) {
		case SINK_HANG:
		case SINK_CLOSING:
		case SINK_STARTTLS: /* RFC 3207 §5: what followed STARTTLS is not kept */
			return len; /* discard */
		case SINK_DATA:
			i += data_bytes(c, buf + i, len - i);
			continue;
		case SINK_BDAT: {
			uint64_t take = c->bdat_left < len - i ? c->bdat_left : len - i;
			c->bdat_left -= take;
			c->body_bytes += take;
			i += (size_t)take;
			if (c->bdat_left)
				continue;
			c->mode = SINK_CMD;
			if (!c->has_mail || !c->rcpts_ok) {
				reply(c, "554 5.5.1 Error: no valid recipients\r\n");
				if (c->bdat_last)
					reset_txn(c);
			} else if (c->bdat_last) {
				end_message(c);
			} else {
				reply(c, "250 2.0.0 Ok: chunk received\r\n");
			}
			continue;
		}
		case SINK_CMD: {
			const char *lf = memchr(buf + i, '\n', len - i);
			size_t n = lf ? (size_t)(lf - (buf + i)) : len - i;
			if (c->line_len + n >= SINK_LINE_MAX) {
				c->line_overflow = 1;
			} else {
				memcpy(c->line + c->line_len, buf + i, n);
				c->line_len += n;
			}
			i += n;
			if (!lf)
				continue;
			i++; /* the LF */
			size_t l = c->line_len;
			if (l && c->line[l - 1] == '\r')
				l--;
			c->line[l] = '\0';
			if (c->line_overflow)
				reply(c, "500 5.5.2 Error: line too long\r\n");
			else
				command(c, c->line, l);
			c->line_len = 0;
			c->line_overflow = 0;
			continue;
		}
		}
	}
	return i;
}
