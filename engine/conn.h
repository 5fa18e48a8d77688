/*
 * The connection layer: one client connection to a host — its socket, its transport
 * (plaintext or TLS), its session (the SMTP state machine), its watchdog slot and what
 * the seed's callbacks asked of it (conn_policy.h) — and its whole lifecycle: start
 * (connect), ready, teardown once every operation is back, reconnect, dead. The worker
 * loop sees only the calls below; struct sb_conn is private to conn.c.
 *
 * The connections of one worker share a struct conn_env: the worker's ring, its timers,
 * the idle and parked lists and its scratch buffers.
 *
 * Threads and ownership
 * | thing                                   | owned by   | who else may touch it       |
 * |-----------------------------------------|------------|-----------------------------|
 * | a connection, its socket, session, TLS  | its worker | nobody                      |
 * | conn_env and everything in it           | its worker | nobody, but:                |
 * | conn_env.wd.slots[i]                    | its worker | the watchdog (watchdog.h)   |
 * | the host's conn_ctr[k]                  | its worker | readers of stats (engine.h) |
 */
#ifndef SB_CONN_H
#define SB_CONN_H

#include <stdint.h>

#include "io.h"
#include "smtpbulk.h"
#include "timer_heap.h"
#include "watchdog.h"

struct smtpbulk;
struct sb_conn;

/* A completion's token: kind (8 bits) | generation (24 bits) | connection slot (32). */
enum { SB_TK_CONNECT = 1, SB_TK_SEND, SB_TK_RECV, SB_TK_WORKER };
#define SB_TOKEN(kind, gen, slot)                                                        \
	(((uint64_t)(kind) << 56) | ((uint64_t)((gen)&0xffffffu) << 32) | (uint64_t)(slot))
static inline unsigned sb_token_kind(uint64_t t)
{
	return (unsigned)(t >> 56);
}
static inline uint32_t sb_token_slot(uint64_t t)
{
	return (uint32_t)t;
}

/* Idle connections of one host, a stack, so a wake-up costs O(hosts), not O(idle). */
struct conn_idle {
	struct sb_conn **v;
	unsigned n, cap;
};

struct conn_env {
	struct smtpbulk *sb;          /* read-only, but for its atomics */
	unsigned worker;              /* this worker's index */
	const struct sb_io_backend *be;
	struct sb_io *io;
	uint64_t now;                 /* monotonic ns, read once per loop turn */
	int pooled_recv;              /* receive with multishot into the backend's pool */
	int pooled_seen;              /* a multishot receive delivered data: it works here */
	int progress;                 /* a server answered during this loop turn */
	int queue_busy;               /* a queue had an enqueuer mid-way: look again soon */
	uint64_t next_wake;           /* look again by then (a breaker's probe may go);
	                                 the worker sets UINT64_MAX each turn */
	struct timer_heap timers;     /* 4xx retries and reconnects */
	struct conn_idle *idle;       /* [n_hosts] */
	struct conn_idle *dormant;    /* [n_hosts]: closed, waiting for work to reconnect */
	struct sb_conn **parked;      /* connections a callback parked */
	size_t n_parked, cap_parked;
	struct wd_group wd;           /* its connections' slots, as the watchdog sees them */
	char *tls_plain;              /* plaintext out of TLS (allocated on first use) */
};

/* Make connection k of host h (slot: its index in the worker's table, what tokens
 * carry). 0 or -ENOMEM. */
int conn_new(struct conn_env *env, unsigned h, unsigned k, unsigned slot, struct sb_conn **out);
void conn_free(struct sb_conn *c);
unsigned conn_host(const struct sb_conn *c);
/* Its index within its host. */
unsigned conn_index(const struct sb_conn *c);
/* Do what a callback returning code would have (smtpbulk_act(): a code the caller's
 * thread gave later, taken by this connection's worker). */
void conn_act(struct sb_conn *c, int code);

/* Connect (or give up at once when the host's credentials were refused). */
void conn_start(struct sb_conn *c);
/* A completion for this connection. */
void conn_complete(struct sb_conn *c, const struct sb_cqe *e);
/* An idle connection of a host with work waiting: let its session pull messages.
 * Returns how many it took (0: the queues are empty now, and it is idle again), or
 * -1 when it was not idle after all. */
int conn_pull(struct sb_conn *c);
/* An idle connection of a host with a command waiting takes it. 1 when it did, 0 when
 * none was left (it is idle again), -1 when it was not idle after all. */
int conn_offer_command(struct sb_conn *c);
/* The watchdog's slot fired: if it still waits too long, it has hung. */
void conn_check_hang(struct sb_conn *c);
/* A global hang: start again (messages in flight go again, free of charge), or with
 * give_up end them TIMED_OUT. */
void conn_global_hang(struct sb_conn *c, int give_up);
/* The engine stops: no reconnect; a message in progress is cancelled; an idle
 * connection says QUIT. */
void conn_stop(struct sb_conn *c);
/* The stop took too long: close now, cancelling what is left. */
void conn_abort(struct sb_conn *c);
/* 1 once the socket is closed and every operation is back. */
int conn_closed(const struct sb_conn *c);

/* The batch may be over for parked connections: bring back those for which it is. */
void conn_env_unpark(struct conn_env *env);
/* Timers that are due; returns when the next one is (UINT64_MAX: none). */
uint64_t conn_env_timers(struct conn_env *env);
/* End every message waiting for its 4xx retry with st/err. */
void conn_env_end_deferred(struct conn_env *env, smtpbulk_status_t st, int err);
/* Work came for host h since some of its closed connections began to wait for it:
 * they connect again. */
void conn_env_wake_dormant(struct conn_env *env, unsigned h);
/* The top idle connection of host h, taken off its stack (NULL: none). */
struct sb_conn *conn_env_idle_pop(struct conn_env *env, unsigned h);
void conn_env_free(struct conn_env *env, size_t n_hosts);

#endif
