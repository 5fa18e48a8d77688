/*
 * A submitted message inside the engine: envelope, body, and the replies that will make
 * up its one result. Allocated once by smtpbulk_submit() (a single block), freed after
 * its result is delivered.
 *
 * Ownership: the submitting thread until it is enqueued; then exactly one worker at a
 * time (the one whose session dequeued it); then the result callback or the poller.
 */
#ifndef SB_MESSAGE_H
#define SB_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "msg_pool.h"
#include "queue.h"
#include "smtp_reply.h"
#include "smtpbulk.h"

enum sb_msg_flag {
	SB_MSG_CLEAN = 1u << 0,     /* no line starts with '.': DATA sends the body as is */
	SB_MSG_8BIT = 1u << 1,      /* body has bytes >= 0x80 (ask BODY=8BITMIME) */
	SB_MSG_UTF8ADDR = 1u << 2,  /* an address has bytes >= 0x80 (needs SMTPUTF8) */
	SB_MSG_OWN_BODY = 1u << 3,  /* body was copied into this block */
	SB_MSG_HEAP_ARENA = 1u << 4, /* reply texts outgrew the block: arena is malloc'd */
};

/* A recipient's standing across the transactions of its message. A message's later
 * transactions send only its PENDING recipients: those refused for good or delivered
 * keep the verdict an earlier one gave them (a 452 "too many recipients" split, a
 * retry of the 4xx ones). */
enum sb_rcpt_state {
	SB_RCPT_PENDING = 0,   /* to be sent (again) */
	SB_RCPT_SPLIT = 1,     /* this transaction: "too many recipients", for the next */
	SB_RCPT_DELIVERED = 2, /* accepted in a transaction whose data was accepted */
	SB_RCPT_REFUSED = 3,   /* refused for good (5xx), or 4xx with no retry left */
};

/* Where a reply is kept: an offset into the text arena, so the arena may grow. */
struct sb_reply_rec {
	int code;
	uint32_t enh_off;  /* UINT32_MAX = none */
	uint32_t text_off; /* UINT32_MAX = none */
	uint8_t state;     /* recipients: enum sb_rcpt_state */
};

static inline int sb_rcpt_done(const struct sb_reply_rec *rec)
{
	return rec->state >= SB_RCPT_DELIVERED;
}

struct sb_msg {
	struct sbq_node node; /* submission / completion queue link */
	uint64_t id;
	uint64_t start_ns;    /* its latency counts from here: the caller's, else the submit */
	const char *from;     /* normalised, no brackets */
	const char *body;     /* canonical: CRLF line ends only, ends in CRLF (or empty) */
	size_t body_len;      /* also what SIZE counts (RFC 1870) and BDAT sends */
	size_t n_rcpts;
	int host;             /* requested host index, -1 = any */
	unsigned flags;       /* enum sb_msg_flag */
	struct sb_msg_pool *pool; /* where the block goes back; NULL: free() (a result
	                             handed to the caller may outlive the engine) */
	uint8_t pool_class;
	unsigned attempts;    /* transactions started (what the result reports) */
	unsigned free_tries;  /* of which not counted against max_attempts (hang, 421) */
	unsigned hangs;       /* connections that hung with it in flight */
	unsigned closes;      /* 421s it rode out */
	unsigned throttles;   /* throttling replies it rode out (free of charge) */
	uint64_t paced_ns;    /* how long its connection waited for a pacer to take it */
	uint32_t rcpts_done;  /* recipients with a verdict from a transaction before */
	uint32_t rcpts_delivered; /* of which delivered */
	struct sb_reply_rec final;
	struct sb_reply_rec *rcpt_recs; /* n_rcpts */
	char *arena;          /* reply texts, NUL-separated: inside this block, so a worker
	                         allocates nothing per message, unless replies are long */
	size_t arena_len, arena_cap;
	smtpbulk_rcpt_result_t *rcpts; /* n_rcpts; .rcpt set at submit, replies at finish */
	/* DSN parameters, encoded at submit (with their leading space) for a server that
	 * offers DSN: NULL when the message asks for none. */
	const char *mail_dsn;  /* " RET=... ENVID=..." */
	const char **rcpt_dsn; /* n_rcpts entries, NULL for a recipient without any */
	smtpbulk_result_t res;
};

/*
 * Validate and copy a message into one allocation. Returns 0 and *out, or -EINVAL,
 * -ENOMEM, SMTPBULK_EBADADDR.
 */
/* Validate and copy m into one block, from pool (may be NULL: malloc). */
int sb_msg_new(struct sb_msg_pool *pool, const smtpbulk_message_t *m, struct sb_msg **out);
/* Release the block: back to its pool, or free() when msg->pool is NULL. */
void sb_msg_free(struct sb_msg *msg);

/* Record a reply: slot = recipient index, or SB_SLOT_FINAL. -ENOMEM leaves it empty. */
#define SB_SLOT_FINAL ((size_t)-1)
int sb_msg_record(struct sb_msg *msg, size_t slot, const struct smtp_reply *r);

/* Forget the replies of an attempt that will be retried: all of them, or where some
 * recipients have their verdict already (rcpts_done), the others' and the final. */
void sb_msg_reset_replies(struct sb_msg *msg);

/* Give recipient i its verdict (SB_RCPT_DELIVERED or SB_RCPT_REFUSED), once. */
void sb_msg_rcpt_settle(struct sb_msg *msg, size_t i, enum sb_rcpt_state st);

/* The status of the message as a whole, given the one its last transaction (or what
 * ended it) decided: recipients delivered by earlier transactions make it PARTIAL
 * where the last one failed; DELIVERED only when every recipient was. */
smtpbulk_status_t sb_msg_merged_status(const struct sb_msg *msg, smtpbulk_status_t st);

/* Fill msg->res (pointers into the arena) for delivery. */
void sb_msg_finish(struct sb_msg *msg, smtpbulk_status_t status, int error);

static inline struct sb_msg *sb_msg_of_node(struct sbq_node *n)
{
	return (struct sb_msg *)(void *)((char *)n - offsetof(struct sb_msg, node));
}

static inline struct sb_msg *sb_msg_of_result(smtpbulk_result_t *r)
{
	return (struct sb_msg *)(void *)((char *)r - offsetof(struct sb_msg, res));
}

#endif
