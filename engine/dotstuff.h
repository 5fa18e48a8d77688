/*
 * DATA transparency (RFC 5321 §4.5.2) and line-end normalisation as a streaming transform.
 * Every bare CR and bare LF becomes CRLF, so a body can never contain a CRLF.CRLF of its
 * own making, and a '.' that starts a line is doubled. The state survives between
 * buffers, so a body may be fed in any pieces. Pure.
 */
#ifndef SB_DOTSTUFF_H
#define SB_DOTSTUFF_H

#include <stddef.h>

/* One input byte can become at most this many output bytes (pending CR + "..") */
#define DOTSTUFF_MAX_EXPANSION 4
/* dotstuff_finish() writes at most this many bytes: "\r\n" + ".\r\n" */
#define DOTSTUFF_FINISH_MAX 5

struct dotstuff {
	unsigned char bol;   /* the next byte starts a line */
	unsigned char cr;    /* a CR was seen and its LF (or not) is still to come */
	unsigned char stuff; /* 1: double leading dots and end with ".\r\n" (DATA);
	                        0: line ends only (a canonical body, as BDAT sends it) */
};

/* The DATA transform: CRLF normalisation, dot-stuffing, the end-of-data line. */
void dotstuff_init(struct dotstuff *d);
/* CRLF normalisation only (and a final CRLF): the canonical form of a body. */
void dotstuff_init_crlf(struct dotstuff *d);

/*
 * Transform as much of in[0..in_len) as fits in out[0..out_cap). Returns the bytes
 * written and sets *consumed to the input bytes used. Progress is guaranteed when
 * out_cap >= DOTSTUFF_MAX_EXPANSION.
 */
size_t dotstuff_run(struct dotstuff *d, const char *in, size_t in_len, size_t *consumed,
		    char *out, size_t out_cap);

/* Write the end: a CRLF unless at a line start, then (when stuffing) ".\r\n". */
size_t dotstuff_finish(struct dotstuff *d, char *out);

/*
 * 1 when the body needs no transform: CRLF line ends only, no line starts with '.', and
 * it is empty or ends in CRLF. Such a body is sent as is, followed by ".\r\n".
 */
int dotstuff_is_clean(const char *body, size_t len);

/* 1 when the body is canonical: CRLF line ends only, empty or ending in CRLF. */
int dotstuff_is_canonical(const char *body, size_t len);

/* 1 when some line of a canonical body starts with '.' (DATA must double it). */
int dotstuff_has_dot_line(const char *body, size_t len);

/*
 * The size of the body as transmitted with CRLF line ends and a final line end, but
 * without stuffed dots or the terminating ".\r\n": what RFC 1870's SIZE counts.
 */
size_t dotstuff_wire_size(const char *body, size_t len);

#endif
