/*
 * smtpbulk send --mail: messages from files, one record each, their envelope from their
 * headers (smtpbulk_mailfile_parse(), as `sendmail -t`). A path is a message file, an
 * mbox (a file whose first line starts "From "), a directory of message files, or a
 * Maildir (a directory with cur/ and new/: both read, tmp/ not). Directories are read
 * in their own order, one entry at a time, not recursively; names starting with '.'
 * are skipped. Memory stays bounded by the largest message whatever the count.
 * A record's id and position are its path, or PATH#N for the N-th message of an mbox.
 */
#ifndef SB_SEND_MAIL_SOURCE_H
#define SB_SEND_MAIL_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "send_manifest.h"

struct mail_source;

/* paths: n of them, kept by the caller until mail_source_close(). from: the envelope
 * sender instead of the headers' (NULL: the headers'). Returns 0, or -ENOMEM. */
int mail_source_open(char *const *paths, size_t n, const char *from, size_t max_size,
		     struct mail_source **out);

/*
 * The next record. Returns 0 with *r filled (its id is its position) and *hash the
 * hash of its bytes; 1 at the end; -1 for a bad one (unreadable, not a message, no
 * sender or recipients, too large), with why and *r empty. Either way pos (pos_cap
 * bytes) names it.
 */
int mail_source_next(struct mail_source *s, struct send_record *r, uint64_t *hash, char *pos,
		     size_t pos_cap, char *why, size_t why_cap);

void mail_source_close(struct mail_source *s);

#endif
