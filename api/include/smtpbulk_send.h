/*
 * libsmtpbulk's sending machinery beyond the engine: what `smtpbulk send` is made of,
 * for programs that run their own mailings.
 *
 *  - smtpbulk_queue_id(): the server's queue id in a final reply (Postfix "queued as
 *    X", Exim "id=X", Sendmail and OpenSMTPD, Exchange, Gmail, qmail, Haraka, SES).
 *  - smtpbulk_mailfile_parse() and the mbox reader: a message file's envelope from
 *    its headers (From/Sender, To/Cc/Bcc), Bcc removed from what is sent.
 *  - The journal: one JSON line per final result, appended, written and fsync'd in
 *    batches by a thread of its own, read back on open so a rerun knows what is final.
 *
 * Functions return 0 or a negative error code (errno values, SMTPBULK_E*); none prints.
 */
#ifndef SMTPBULK_SEND_H
#define SMTPBULK_SEND_H

#include <stddef.h>
#include <stdint.h>

#include "smtpbulk.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * The queue id a server gave in its final reply text (the text of smtpbulk_reply_t,
 * without the code and enhanced code), copied to out as a NUL-terminated string.
 * Returns 0, -ENOENT when the text has none this parser knows, -ENOSPC when it does
 * not fit cap (out then holds ""), -EINVAL for NULL arguments or cap 0.
 * Recognised: "queued as X" (Postfix), "id=X" (Exim), "InternalId=X" (Exchange),
 * "qp X" (qmail), "queued (X)" / "Queued as X" (Haraka and others), "X Message
 * accepted" (Sendmail, OpenSMTPD), "OK <seconds> X" (Gmail), "Ok X" with a long id
 * (Amazon SES). An id is 1 to 127 characters of letters, digits and ".-_@:+=/".
 */
int smtpbulk_queue_id(const char *text, char *out, size_t cap);

/** A journal (opaque). Any thread may record into it; one closes it. */
typedef struct smtpbulk_journal smtpbulk_journal_t;

/**
 * Open (create) a journal at path for appending, reading what it holds first: each
 * line's id and verdict go into an index that smtpbulk_journal_lookup() answers
 * from (about 32 bytes per message id: ids are kept as 64-bit hashes). A last line
 * cut short by a crash (no newline) is removed: that result was not durable, and its
 * message will be sent again. flush_ms: the longest a recorded line waits before it
 * is written and fsync'd (0 = 200); it is also written as soon as 64 KiB wait.
 * Returns 0, -EINVAL, -ENOMEM, a negative errno of open/read/ftruncate, or
 * SMTPBULK_EJOURNAL when a line is not one this library wrote (*bad_line, if not
 * NULL, says which, from 1).
 */
int smtpbulk_journal_open(const char *path, unsigned flush_ms, smtpbulk_journal_t **out,
			  uint64_t *bad_line);

/** One line of the journal. */
typedef struct smtpbulk_journal_entry {
	size_t struct_size;     /* sizeof(smtpbulk_journal_entry_t) */
	const char *id;         /* the message's id in its input (required) */
	const smtpbulk_result_t *result; /* its final result; NULL: it never went out */
	const char *error;      /* result NULL: why (bad input: the reason) */
	const char *position;   /* where in the input, e.g. "list.jsonl:12"; NULL: none */
	uint64_t input_hash;    /* of the input record, to notice a changed input; 0: none */
	int64_t next_attempt;   /* a deferred message's next try (Unix seconds); 0: none */
} smtpbulk_journal_entry_t;

/**
 * Record one final line (copied; written within flush_ms). Any thread. The line has
 * id, status (a result's status name, or "bad_input" without a result), category,
 * code, enhanced, text, queue_id (parsed from the final reply), host, attempts,
 * latency_ms, rcpts (per recipient code and text), position, hash, next_attempt, at.
 * Returns 0, -EINVAL, -ENOMEM, or the error of an earlier failed write (the journal
 * is then broken: what was recorded since may be lost, and the caller should stop).
 */
int smtpbulk_journal_record(smtpbulk_journal_t *j, const smtpbulk_journal_entry_t *e);

/** What the journal holds for one id (its last line). */
typedef struct smtpbulk_journal_state {
	int bad_input;               /* the last line is a bad-input line */
	smtpbulk_status_t status;    /* otherwise: its status */
	uint64_t input_hash;         /* the hash recorded with it (0: none) */
	int64_t next_attempt;        /* 0: none */
	uint32_t deferrals;          /* its lines with a next_attempt, all runs together:
	                                how many retry intervals it has used */
} smtpbulk_journal_state_t;

/** 0 and *out, or -ENOENT (no line for id), -EINVAL. Any thread. */
int smtpbulk_journal_lookup(smtpbulk_journal_t *j, const char *id, smtpbulk_journal_state_t *out);

/** Lines the journal held when opened, and lines recorded since. */
void smtpbulk_journal_counts(smtpbulk_journal_t *j, uint64_t *read, uint64_t *recorded);

/** Write and fsync what waits now. Returns 0 or the negative errno of the failure. */
int smtpbulk_journal_flush(smtpbulk_journal_t *j);

/** Flush, fsync, stop the writer thread and free. Returns what the last flush did. */
int smtpbulk_journal_close(smtpbulk_journal_t *j);

/**
 * A message and the envelope its headers give, as `sendmail -t` takes it: the sender
 * from From (its first mailbox), else Sender; the recipients from To, Cc and Bcc
 * (group members included, each address once); the message as it goes out, with its
 * Bcc header removed and everything else as it was (parsed with GMime).
 */
typedef struct smtpbulk_mailfile {
	char *from;
	char **rcpts;
	size_t n_rcpts;
	char *data; /* NUL-terminated too */
	size_t len;
} smtpbulk_mailfile_t;

/**
 * Parse one message (RFC 5322). from: the envelope sender to use instead of the
 * headers' (NULL: the headers'). Returns 0 and *out (free it with
 * smtpbulk_mailfile_free()), -EINVAL, -ENOMEM, SMTPBULK_EMESSAGE, SMTPBULK_ENOSENDER,
 * SMTPBULK_ENORCPTS, or SMTPBULK_EBADADDR (an address smtpbulk_submit() would refuse).
 */
int smtpbulk_mailfile_parse(const void *msg, size_t len, const char *from,
			    smtpbulk_mailfile_t *out);
void smtpbulk_mailfile_free(smtpbulk_mailfile_t *m);

/** An mbox being read, one message at a time (bounded memory for any size). */
typedef struct smtpbulk_mbox smtpbulk_mbox_t;
/** 0, or a negative errno of open(). */
int smtpbulk_mbox_open(const char *path, smtpbulk_mbox_t **out);
/**
 * The next message: 0 and *out (as smtpbulk_mailfile_parse() makes it) with *index its
 * number in the file from 1; 1 at the end; or a negative code for this message alone
 * (the next call goes on with the one after it), *index set.
 */
int smtpbulk_mbox_next(smtpbulk_mbox_t *mb, const char *from, smtpbulk_mailfile_t *out,
		       uint64_t *index);
void smtpbulk_mbox_close(smtpbulk_mbox_t *mb);

/** A template variable for smtpbulk_template_render(): {{name}} becomes value. */
typedef struct smtpbulk_var {
	const char *name;
	const char *value; /* UTF-8; NULL is "" */
} smtpbulk_var_t;

/**
 * A message from a template (mail merge): every {{name}} (blanks inside the braces
 * allowed; a name is letters, digits, '_', '-', '.') becomes its value, in the headers
 * and in the body. A header that is no longer ASCII is encoded per RFC 2047 (GMime):
 * From, To, Cc, Bcc, Reply-To, Sender and their Resent- forms as address lists (the
 * display names encoded, the addresses as they are), the others as text. The body
 * gets the values as they are: a template with non-ASCII in its body should say its
 * charset and transfer encoding. "{{" that starts no variable stays as it is.
 * Returns 0 and *out (malloc'd, NUL-terminated; *out_len), or SMTPBULK_ENOVAR (the
 * name into missing, missing_cap bytes, when given), SMTPBULK_EHEADERVAL (a value
 * with CR or LF for a header), SMTPBULK_EMESSAGE (an address header that is not
 * addresses once filled), -EINVAL, -ENOMEM. Pure: any thread.
 */
int smtpbulk_template_render(const char *tpl, size_t len, const smtpbulk_var_t *vars,
			     size_t n_vars, char **out, size_t *out_len, char *missing,
			     size_t missing_cap);

/** A 64-bit hash (FNV-1a) of a record, for entries' input_hash (never 0). */
uint64_t smtpbulk_hash64(const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
