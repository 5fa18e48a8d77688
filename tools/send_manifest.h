/*
 * smtpbulk send's JSONL manifest: one message per line,
 *   {"id": "...", "from": "a@x", "to": ["b@y", ...], "raw": "..."}   or  "file": "path"
 *   or "template": "path", "vars": {"name": "value", ...}   (mail merge, {{name}})
 * and optionally "host": one of the hosts given, "headers": {"Name": "value", ...} put
 * in front of the message (RFC 2047 when not ASCII), "dsn": {"ret": "FULL"|"HDRS",
 * "envid": "...", "notify": "NEVER" | "SUCCESS,FAILURE,DELAY" (or a list), "orcpt":
 * [one per recipient, null for none]}.
 * "id" is optional (a string or a number; else the line number), "from" may be "" (the
 * null sender), "to" a list or one string. A bad line gets a reason, never a guess.
 */
#ifndef SB_SEND_MANIFEST_H
#define SB_SEND_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "smtpbulk_send.h"

struct send_record {
	char *id;
	char *from;
	char **to;
	size_t n_to;
	char *body; /* the message: "raw", or the file read whole */
	size_t body_len;
	/* Optional (0/NULL: none): */
	int host;            /* 1 + its index in the hosts given; 0: any host */
	unsigned dsn_ret;    /* SMTPBULK_DSN_RET_* */
	unsigned dsn_notify; /* SMTPBULK_NOTIFY_* */
	char *envid;
	char **orcpts;       /* n_to entries (NULL ones: none), or NULL */
	char *source_ref;    /* where it came from, for its acknowledgement (a Redis
	                        stream entry's id), or NULL */
};

/* What a manifest record may refer to: the hosts as given on the command line. */
struct send_manifest_ctx {
	const char *const *hosts; /* "HOST[:PORT]" as written */
	size_t n_hosts;
	size_t max_body;          /* a larger message is refused */
};

/* One line (without its newline) into *r. Returns 0, or -1 with why (a sentence, into
 * why[cap]) and *r empty. File paths are read as given (relative: to the working
 * directory); a file larger than max_body is refused. */
int send_manifest_parse(const char *line, size_t len, uint64_t lineno,
			const struct send_manifest_ctx *ctx, struct send_record *r, char *why,
			size_t cap);
void send_record_free(struct send_record *r);

/* The whole regular file at path (at most max bytes, not empty) into *out (malloc'd,
 * NUL-terminated too) and *len. Returns 0, or -1 with why. */
/* A template filled (smtpbulk_template_render()) into *body, at most max_body bytes.
 * Returns 0, or -1 with why (a missing variable named). */
int send_render(const char *tpl, size_t tpl_len, const smtpbulk_var_t *vars, size_t n,
		size_t max_body, char **body, size_t *body_len, char *why, size_t cap);

int send_read_file(const char *path, size_t max, char **out, size_t *len, char *why, size_t cap);

#endif
