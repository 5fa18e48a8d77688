/*
 * smtpbulk send --source redis://...: messages from a Redis stream, read as one consumer
 * of a consumer group, and `smtpbulk enqueue`, which fills such a stream from a
 * manifest. hiredis's home: no other file includes it.
 *
 * Why hiredis's synchronous API, on send's reading thread: the SMTP rings are the
 * engine's, and the Redis traffic is small and batched (one XREADGROUP per batch of
 * entries, the XADDs and XACKs of finished messages pipelined in one round trip), so a
 * blocking call with a short timeout on the thread that reads the input anyway costs
 * less than a second event loop. Workers never touch the connection: a finished
 * message's acknowledgement is queued (under a mutex) and sent by the reading thread.
 *
 * Delivery: an entry is acknowledged (XACK) only after its message's final result,
 * which goes first to STREAM:results (XADD MAXLEN ~); an entry that cannot be parsed,
 * or was delivered more than max_deliveries times, goes to STREAM:dead with its reason
 * before its XACK, so a crash repeats rather than loses. On start the consumer takes
 * its own pending entries (id 0) first, then new ones (>); once a second it takes over
 * entries idle longer than claim_idle_ms from other consumers (XAUTOCLAIM). Its own in
 * flight, however long they take, are not: a heartbeat (at each flush, every third of
 * claim_idle_ms, 0.2-10 s) sets their idle time to 0, each only while it is still this
 * consumer's (a Lua script: XPENDING's owner, then XCLAIM JUSTID). Redis gone:
 * what is held goes on sending, the connection is tried again with a backoff, and the
 * acknowledgements wait; nothing unfinished is ever acknowledged.
 */
#ifndef SB_SEND_REDIS_H
#define SB_SEND_REDIS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct redis_target {
	char host[256];   /* or the socket path, for unix */
	int port;         /* 0: a unix socket */
	char stream[256];
};

/* "redis://HOST[:PORT]/STREAM" or "redis+unix:///PATH?stream=STREAM". 0, or -1. */
int redis_parse_url(const char *url, struct redis_target *t);

struct redis_options {
	struct redis_target target;
	const char *group, *consumer;
	unsigned claim_idle_ms;   /* another consumer's entry idle this long is taken over */
	unsigned max_deliveries;  /* beyond: dead-lettered */
	size_t results_maxlen;    /* STREAM:results is capped near this (MAXLEN ~) */
};

struct redis_source;

/* Connects, creates the group (MKSTREAM) if missing. 0, or -1 with why. */
int redis_source_open(const struct redis_options *o, struct redis_source **out, char *why,
		      size_t cap);

/*
 * The next entry as a manifest line (a JSON object: the entry's fields, those holding
 * JSON — to, vars, headers, dsn — parsed; "id" the entry's id when it has none). Up to
 * max entries are asked for at once; waits up to block_ms for new ones. Returns 0 with
 * *line (malloc'd) and entry (its stream id, cap bytes), 1 nothing now (or Redis is
 * down: said once), -1 for an entry that cannot be one (why; entry set: give it to
 * redis_source_dead()).
 */
int redis_source_next(struct redis_source *s, size_t max, int block_ms, char **line,
		      char *entry, size_t cap, char *why, size_t why_cap);

/* A finished message (any thread): its result fields go to STREAM:results and its entry
 * is acknowledged at the next flush. fields: name/value pairs, n_fields of them. */
void redis_source_done(struct redis_source *s, const char *entry, const char *const *fields,
		       size_t n_fields);

/* An entry that cannot be sent: to STREAM:dead with why, then acknowledged. */
void redis_source_dead(struct redis_source *s, const char *entry, const char *why);

/* Send what waits (results, dead letters, acknowledgements), pipelined, and renew the
 * entries in flight when the heartbeat is due (skipped while Redis is down). Reading
 * thread; call it at least every few hundred milliseconds while anything is in flight.
 * 0, or -1 (Redis down: they wait for the next flush). */
int redis_source_flush(struct redis_source *s);

/* Entries read and not handed out yet (0: the next call asks Redis, and may wait). */
size_t redis_source_buffered(const struct redis_source *s);

/* Entries acknowledged, dead-lettered, and acknowledgements still waiting. */
void redis_source_counts(struct redis_source *s, uint64_t *acked, uint64_t *dead,
			 uint64_t *waiting);

/*
 * Shared pacing (--shared-limits): up to want tokens of the rate per_s (burst) kept in
 * Redis under key, for every consumer together (a GCRA in a Lua script, on Redis's
 * clock). 0 with *granted (maybe 0) and *wait_ms until the next would be, or -1 (Redis
 * down or refusing the script: said).
 */
int redis_take_tokens(struct redis_source *s, const char *key, double per_s, unsigned burst,
		      unsigned want, unsigned *granted, unsigned *wait_ms);

/* Whether the group has nothing pending for any consumer: 1, 0, or -1 (cannot ask). */
int redis_source_group_empty(struct redis_source *s);

void redis_source_close(struct redis_source *s);

/* smtpbulk enqueue: each JSON object line of in becomes one XADD (its fields; values
 * that are not strings as JSON), pipelined in batches. Bad lines are said on stderr
 * and counted into *bad. Returns 0, or -1 (Redis failed: said). */
int redis_enqueue(const struct redis_target *t, FILE *in, const char *name, uint64_t *added,
		  uint64_t *bad);

#endif
