#include "sink_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	snprintf(buf, sizeof(buf), "220 %s ESMTP smtpbulk sink\r\n", c->cfg->name);
	reply(c, buf);
}

static void reset_txn(struct sink_conn *c)
{
	c->has_mail = 0;
	c->rcpts_ok = 0;
	c->body_bytes = 0;
}

/* A message's data is complete: the final reply, faults, and counting. */
static void end_message(struct sink_conn *c)
{
	const struct sink_faults *f = &c->cfg->faults;
	unsigned r = roll(c);
	if (r < f->reject_data) {
		reply(c, "554 5.6.0 sink: message rejected (fault injection)\r\n");
		c->counts.rejected++;
	} else if (r < f->reject_data + f->tempfail_data) {
		reply(c, "451 4.3.0 sink: try again later (fault injection)\r\n");
		c->counts.rejected++;
	} else {
		reply(c, "250 2.0.0 Ok: queued\r\n");
		c->counts.messages++;
		c->counts.recipients += c->rcpts_ok;
		c->counts.bytes += c->body_bytes;
		c->msgs++;
	}
	reset_txn(c);
	if (f->close_after && c->msgs >= f->close_after) {
		reply(c, "421 4.3.2 sink: closing after the set number of messages\r\n");
		c->mode = SINK_CLOSING;
	} else if (f->hang_after && c->msgs >= f->hang_after) {
		c->mode = SINK_HANG;
	}
}

static int verb_is(const char *line, size_t len, const char *verb)
{
	size_t n = strlen(verb);
	return len >= n && strncasecmp(line, verb, n) == 0 && (len == n || line[n] == ' ' || line[n] == ':');
}

static void command(struct sink_conn *c, const char *line, size_t len)
{
	const struct sink_faults *f = &c->cfg->faults;
	char buf[512];

	if (verb_is(line, len, "EHLO")) {
		reset_txn(c);
		snprintf(buf, sizeof(buf),
			 "250-%s\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-SIZE %llu\r\n"
			 "250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n",
			 c->cfg->name, (unsigned long long)c->cfg->size_max);
		reply(c, buf);
	} else if (verb_is(line, len, "HELO")) {
		reset_txn(c);
		snprintf(buf, sizeof(buf), "250 %s\r\n", c->cfg->name);
		reply(c, buf);
	} else if (verb_is(line, len, "MAIL")) {
		unsigned r = roll(c);
		if (c->has_mail)
			reply(c, "503 5.5.1 Error: nested MAIL command\r\n");
		else if (r < f->reject_mail)
			reply(c, "550 5.7.1 sink: sender rejected (fault injection)\r\n");
		else if (r < f->reject_mail + f->tempfail_mail)
			reply(c, "451 4.3.0 sink: sender deferred (fault injection)\r\n");
		else {
			c->has_mail = 1;
			reply(c, "250 2.1.0 Ok\r\n");
		}
	} else if (verb_is(line, len, "RCPT")) {
		unsigned r = roll(c);
		if (!c->has_mail)
			reply(c, "503 5.5.1 Error: need MAIL command\r\n");
		else if (r < f->reject_rcpt)
			reply(c, "550 5.1.1 sink: recipient rejected (fault injection)\r\n");
		else if (r < f->reject_rcpt + f->tempfail_rcpt)
			reply(c, "450 4.2.1 sink: recipient deferred (fault injection)\r\n");
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
	while (i < len && c->out_len < SINK_OUT_MAX - 1024) {
		switch (c->mode) {
		case SINK_HANG:
		case SINK_CLOSING:
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
