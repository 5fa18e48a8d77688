/*
 * The Net::SMTP-style facade of Perl's Net::SMTP::Bulk: mail/to/data/datasend/dataend
 * build one message at a time and hand it to the engine at dataend; quit waits for
 * every result. Owned by the one thread that drives the handle.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../engine/grow.h"
#include "../engine/lifecycle.h"
#include "../engine/smtp_cmd.h"
#include "options.h"
#include "smtpbulk.h"

enum stage { ST_NONE, ST_MAIL, ST_DATA };

struct sb_facade {
	enum stage stage;
	char from[SMTP_PATH_MAX + 1];
	char **rcpts;
	size_t n_rcpts, cap_rcpts;
	char *body;
	size_t len, cap;
};

static void reset(struct sb_facade *f)
{
	for (size_t i = 0; i < f->n_rcpts; i++)
		free(f->rcpts[i]);
	f->n_rcpts = 0;
	f->len = 0;
	f->stage = ST_NONE;
}

/* The handle's extension hook (engine.h): freed with the handle. */
static void facade_free(void *ext)
{
	struct sb_facade *f = ext;
	if (!f)
		return;
	reset(f);
	free(f->rcpts);
	free(f->body);
	free(f);
}

/* "host", "host:port", "[v6]:port", or a bare IPv6 address. */
static int parse_hostport(const char *in, char *host, size_t cap, uint16_t *port)
{
	const char *h = in, *p = NULL;
	size_t hl;
	*port = 0;
	if (strncmp(in, "unix:", 5) == 0) { /* a unix-domain socket: no port */
		if (strlen(in) >= cap)
			return SMTPBULK_EBADPARAM;
		strcpy(host, in);
		return 0;
	}
	if (in[0] == '[') {
		const char *rb = strchr(in, ']');
		if (!rb)
			return SMTPBULK_EBADPARAM;
		h = in + 1;
		hl = (size_t)(rb - h);
		if (rb[1] == ':')
			p = rb + 2;
		else if (rb[1] != '\0')
			return SMTPBULK_EBADPARAM;
	} else {
		const char *c = strchr(in, ':');
		if (c && !strchr(c + 1, ':')) { /* exactly one colon: host:port */
			hl = (size_t)(c - in);
			p = c + 1;
		} else {
			hl = strlen(in); /* no colon, or a bare IPv6 address */
		}
	}
	if (hl == 0 || hl >= cap)
		return SMTPBULK_EBADPARAM;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (p) {
		char *end;
		long v = strtol(p, &end, 10);
		if (*p == '\0' || *end != '\0' || v < 1 || v > 65535)
			return SMTPBULK_EBADPARAM;
		*port = (uint16_t)v;
	}
	return 0;
}

/* errno for a failed smtpbulk_new(): the code negated, ours too (the header says so:
 * smtpbulk_strerror(-errno) names it); anything else is EINVAL. */
static int errno_of(int rc)
{
	return rc < 0 && rc > -4096 ? -rc : EINVAL;
}

smtpbulk_t *smtpbulk_new(const char *host, const smtpbulk_options_t *opts)
{
	smtpbulk_options_t o;
	smtpbulk_host_t *hosts = NULL;
	char name[256];
	smtpbulk_t *sb = NULL;
	int rc;

	if (opts) {
		if (sb_options_copy(opts, &o)) {
			errno = EINVAL;
			return NULL;
		}
	} else {
		smtpbulk_options_init(&o);
		o.discard_results = 1; /* nobody could poll them: count only */
	}
	/* A caller of the facade cannot see the submission queue grow: bound it, so that
	 * smtpbulk_dataend() waits for room instead of holding every message (200,000
	 * messages took 340 MiB unbounded). */
	if (!o.queue_bound)
		o.queue_bound = SMTPBULK_FACADE_QUEUE_BOUND;
	size_t extra = host ? 1 : 0;
	if ((rc = sb_hosts_copy(opts ? opts : &o, extra, &hosts)) != 0) {
		errno = errno_of(rc);
		return NULL;
	}
	if (host) {
		if ((rc = parse_hostport(host, name, sizeof(name), &hosts[0].port)) != 0)
			goto fail;
		hosts[0].host = name;
	}
	o.hosts = hosts;
	o.n_hosts += extra;

	if ((rc = smtpbulk_create(&o, &sb)) != 0)
		goto fail;
	if ((rc = smtpbulk_start(sb)) != 0)
		goto fail;
	if (!(sb->ext = calloc(1, sizeof(struct sb_facade)))) {
		rc = -ENOMEM;
		goto fail;
	}
	sb->ext_free = facade_free;
	free(hosts);
	return sb;
fail:
	free(hosts);
	smtpbulk_destroy(sb);
	errno = errno_of(rc);
	return NULL;
}

/* The facade of a handle smtpbulk_new() made (NULL for smtpbulk_create()'s). */
static struct sb_facade *fac(smtpbulk_t *sb)
{
	return sb && sb->ext_free == facade_free ? sb->ext : NULL;
}

int smtpbulk_mail(smtpbulk_t *sb, const char *from)
{
	struct sb_facade *f = fac(sb);
	if (!f)
		return -EINVAL;
	if (f->stage != ST_NONE)
		return SMTPBULK_ESEQUENCE;
	int n = smtp_addr_normalize(from, f->from, sizeof(f->from));
	if (n < 0)
		return n == -ENOSPC ? SMTPBULK_EBADADDR : n;
	f->stage = ST_MAIL;
	return 0;
}

int smtpbulk_to(smtpbulk_t *sb, const char *rcpt)
{
	char tmp[SMTP_PATH_MAX + 1];
	struct sb_facade *f = fac(sb);
	if (!f)
		return -EINVAL;
	if (f->stage != ST_MAIL)
		return SMTPBULK_ESEQUENCE;
	int n = smtp_addr_normalize(rcpt, tmp, sizeof(tmp));
	if (n <= 0)
		return SMTPBULK_EBADADDR;
	char **r = sb_grow(f->rcpts, &f->cap_rcpts, f->n_rcpts + 1, sizeof(*r), 4);
	if (!r)
		return -ENOMEM;
	f->rcpts = r;
	if (!(f->rcpts[f->n_rcpts] = strdup(tmp)))
		return -ENOMEM;
	f->n_rcpts++;
	return 0;
}

int smtpbulk_data(smtpbulk_t *sb)
{
	struct sb_facade *f = fac(sb);
	if (!f)
		return -EINVAL;
	if (f->stage != ST_MAIL || f->n_rcpts == 0)
		return SMTPBULK_ESEQUENCE;
	f->stage = ST_DATA;
	f->len = 0;
	return 0;
}

int smtpbulk_datasend(smtpbulk_t *sb, const void *data, size_t len)
{
	struct sb_facade *f = fac(sb);
	if (!f || (!data && len))
		return -EINVAL;
	if (f->stage != ST_DATA)
		return SMTPBULK_ESEQUENCE;
	if (len > SIZE_MAX - f->len)
		return -ENOMEM;
	char *b = sb_grow(f->body, &f->cap, f->len + len, 1, 4096);
	if (!b)
		return -ENOMEM;
	f->body = b;
	if (len)
		memcpy(f->body + f->len, data, len);
	f->len += len;
	return 0;
}

int smtpbulk_dataend(smtpbulk_t *sb)
{
	struct sb_facade *f = fac(sb);
	if (!f)
		return -EINVAL;
	if (f->stage != ST_DATA)
		return SMTPBULK_ESEQUENCE;
	smtpbulk_message_t m = {
		.struct_size = sizeof(m),
		.from = f->from,
		.rcpts = (const char *const *)f->rcpts,
		.n_rcpts = f->n_rcpts,
		.body = f->body,
		.body_len = f->len,
		.host = -1,
	};
	int rc = smtpbulk_submit(sb, &m, 0, NULL);
	/* Submitted or refused, this message is over: the next mail() starts afresh. */
	reset(f);
	return rc;
}

int smtpbulk_quit(smtpbulk_t *sb, const char *id)
{
	smtpbulk_counters_t c;
	struct sb_facade *f = fac(sb);
	if (!f)
		return -EINVAL;
	reset(f);
	int rc = smtpbulk_drain(sb, -1);
	if (rc)
		return rc;
	char label[32];
	if (!id) { /* the seed's default label: the epoch time */
		snprintf(label, sizeof(label), "%lld", (long long)time(NULL));
		id = label;
	}
	sb_log(sb, 5, "quit %s: all results in, closing connections", id);
	sb_engine_stop(sb);
	smtpbulk_get_counters(sb, &c);
	return c.not_delivered > INT_MAX ? INT_MAX : (int)c.not_delivered;
}

void smtpbulk_free(smtpbulk_t *sb)
{
	smtpbulk_destroy(sb);
}
