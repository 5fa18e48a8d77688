/*
 * The engine's shared state: hosts, the submission and result queues, the counters,
 * and what every layer below the lifecycle calls on it — result delivery, requeue,
 * waking workers, logging. The lifecycle (lifecycle.c) builds and runs it; workers
 * (worker.c, conn.c) use it; nothing here knows a worker or a connection.
 *
 * Threads and ownership
 * | thing                              | owned by             | who else may touch it      |
 * |------------------------------------|----------------------|----------------------------|
 * | a message                          | the caller until submit returns; then the queue; |
 * |                                    | then one worker; then the callback or poller     |
 * | options, hosts' config, addresses  | the engine           | read-only after create     |
 * | host->queue, sb->any_queue         | producers: anyone (wait-free); consumers: workers |
 * | host->conn_ctr[k]                  | the worker of connection k writes; anyone reads  |
 * | host->lat[w]                       | worker w records; anyone reads (stats)           |
 * | host->tls_session                  | any worker of the host, under host->tls_lock     |
 * | host->cmds (one-off commands)      | callers push, the host's workers pop; its lock   |
 * | host->codes[k], codes_pending      | smtpbulk_act() stores (any thread); the worker   |
 * |                                    | of connection k takes and applies (exchange)     |
 * | evq (smtpbulk_event_queue())       | set before start; its list under its own lock    |
 * | wake_fds                           | set at create; any thread writes (wake)          |
 * | counters (_Atomic)                 | everyone, atomically                              |
 * | lock/conds                         | submitters waiting for room, drainers, pollers   |
 * | ext                                | the thread that drives the handle (the facade)   |
 */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cmd_handoff.h"
#include "event_queue.h"
#include "latency_hist.h"
#include "message.h"
#include "pacer.h"
#include "queue.h"
#include "rate_meter.h"
#include "host_breaker.h"
#include "host_learned.h"
#include "session.h"
#include "smtpbulk.h"

struct WOLFSSL_CTX;
struct WOLFSSL_SESSION;

/* One connection's numbers for smtpbulk_get_stats(). Only its worker writes (plain
 * load-and-store: no locked add on the hot path); any thread reads a recent value.
 * A cache line each: neighbours belong to other workers. */
struct sb_conn_counters {
	alignas(64) _Atomic uint64_t total;
	_Atomic uint64_t pass, fail, hang, deferred, bytes;
	_Atomic int ready; /* connected and past EHLO */
};

static inline void sb_count(_Atomic uint64_t *ctr, uint64_t n)
{
	atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

struct sb_host {
	/* Read-only after create. */
	char *name;
	char *label;              /* for logs: name, or name:port when the port is not 25 */
	uint16_t port;
	char *hello;
	unsigned connections;
	struct sockaddr_storage addr; /* AF_INET, AF_INET6 or AF_UNIX */
	socklen_t addrlen;
	struct sess_cfg cfg;
	/* Source addresses (connection k binds src[k % n_src]), each with its own session
	 * configuration (the EHLO name differs); n_src 0: none chosen. */
	struct sockaddr_storage *src;
	struct sess_cfg *src_cfg;
	char **src_hello;
	size_t n_src;
	unsigned char *on_worker; /* on_worker[w]: worker w has connections to this host */
	char *tls_name;           /* SNI and the name the certificate must carry */
	struct sess_auth auth;    /* cfg.auth points here when AUTH is on */
	char *auth_user, *auth_secret; /* the secret is wiped at destroy */
	struct sb_conn_counters *conn_ctr; /* [connections] */
	struct latency_hist *lat; /* [n_workers]: results' latency, per worker */
	/* Shared. */
	struct sbq *queue;        /* messages that named this host */
	_Atomic uint64_t work_epoch; /* bumped when its queue turns non-empty: closed
	                                connections waiting for work connect again */
	_Atomic unsigned alive;   /* connections that have not given up */
	_Atomic unsigned parked;  /* of which a callback parked (conn_policy.h) */
	_Atomic int last_error;   /* why the last connection failed */
	_Atomic int fatal_err;    /* nonzero: why no connection of this host starts again
	                             (a reason that holds for all: sess_fatal()) */
	struct host_learned learned; /* what its connections learned of the server */
	struct host_breaker breaker; /* its circuit breaker (host_breaker.h) */
	_Atomic int breaker_counted; /* 1: it counts in smtpbulk.breakers_open */
	struct pacer pacer;       /* its pace (pacer.h): every worker of the host */
	struct rate_meter *meters; /* [n_workers]: what it delivered lately, per worker */
	/* The TLS session connections resume (any worker of the host): under tls_lock,
	 * held only around a handshake's start and a connection's first readiness. */
	pthread_mutex_t tls_lock;
	struct WOLFSSL_SESSION *tls_session;
	/* One-off commands (smtpbulk_command()) waiting for a ready connection of the
	 * host: callers push, any of the host's workers pops (cmd_handoff.h). */
	struct sb_cmd_list cmds;
	/* Callback codes given later (smtpbulk_act()), one slot per connection: 0 none. */
	_Atomic int *codes;       /* [connections] */
};

struct smtpbulk {
	smtpbulk_options_t opts;  /* copy; opts.hosts points at nothing valid */
	struct sb_host *hosts;
	size_t n_hosts;
	struct sbq *any_queue;    /* messages for any host */
	_Atomic uint64_t any_epoch; /* bumped when any_queue turns non-empty */
	struct sbq *done_queue;   /* results for smtpbulk_poll() (and, with evq, results
	                             that found no memory for a queue item) */
	struct sb_evq *evq;       /* smtpbulk_event_queue(): results and events go there
	                             (event_queue.h); NULL: none. Set before start */
	_Atomic unsigned codes_pending; /* host->codes slots set and not yet taken */
	struct sb_msg_pool *msg_pool; /* message blocks, recycled (any thread) */
	struct latency_hist *lat_other; /* latency of results no connection had (any thread) */
	struct WOLFSSL_CTX *tls_ctx; /* one for the engine, NULL when no host uses TLS;
	                                read-only after create (workers make their
	                                connections' WOLFSSL objects from it) */
	unsigned n_workers;
	int *wake_fds;            /* [n_workers]: each worker's eventfd */
	const char *backend_name; /* set at start */
	char backend_desc[64];

	/* Written for every message, by any thread. */
	_Atomic uint64_t next_id;
	_Atomic uint64_t submitted, completed, delivered, queued, queued_max, requeued;
	_Atomic uint64_t connects, connect_fails;
	_Atomic uint64_t timed_out, hangs, global_hangs, deferred, deferred_now, reconnects;
	_Atomic uint64_t tls_handshakes, tls_resumed;
	_Atomic uint64_t breaker_opens;  /* times a host's breaker opened (again) */
	_Atomic unsigned breakers_open;  /* hosts whose breaker is open now (the watchdog
	                                    reads it: no global hang then) */
	struct hb_cfg breaker_cfg;       /* read-only after create */
	struct pacer global_pacer;       /* the pace over every host (pacer.h) */
	struct pacer_adapt_cfg adapt;    /* read-only after create */
	const char **throttle_patterns;  /* the options', copied; NULL: the defaults */
	_Atomic uint64_t throttled, slowdowns, paced;
	_Atomic uint64_t paced_until;    /* a pacer holds messages back until then: no
	                                    global hang before it (the watchdog reads it) */
	/* Read for every message and written seldom: a cache line of their own, so the
	 * counters' writes above do not take it away from every core. */
	alignas(64) _Atomic int stopping; /* 1: finish up (idle connections QUIT) */
	_Atomic unsigned hosts_alive;
	/* The end of the batch, for connections a callback parked (conn_policy.h): the
	 * number parked, and an epoch that moves each time the queue runs empty while
	 * some are; a parked connection returns once the epoch moved past its own. */
	_Atomic unsigned parked;
	_Atomic uint64_t batch_epoch;
	_Atomic unsigned room_waiters;
	_Atomic unsigned drain_waiters; /* woken only when the last result is in */
	_Atomic unsigned poll_waiters;  /* woken on every result */
	alignas(64) int started;

	pthread_mutex_t lock;     /* guards the conds below; never held on the hot path */
	pthread_cond_t room;      /* a bounded queue has room (CLOCK_MONOTONIC) */
	pthread_cond_t done;      /* a result was delivered (drain, poll) */

	/* An extension of the handle (the Net::SMTP-style facade's message being built):
	 * freed by ext_free at destroy. */
	void *ext;
	void (*ext_free)(void *ext);
	smtpbulk_callbacks_t cbs; /* the seed's callbacks (zeroed when none); read-only */
	struct sb_logger *logger; /* debug lines without on_log (debug_log.h); any thread */
	const char **host_names;  /* [n_hosts] "name:port", for the logger */
	unsigned phase_ms[SESS_PH_COUNT]; /* per-phase timeouts, resolved; read-only */
};

/* Count one more message queued, waiting for room in a bounded queue (or -EAGAIN with
 * SMTPBULK_SUBMIT_NONBLOCK; SMTPBULK_ESTOPPED when the engine stops meanwhile). */
int sb_engine_reserve(smtpbulk_t *sb, unsigned flags);
/* Put a message back in its queue after connection trouble (never blocks). */
void sb_engine_requeue(smtpbulk_t *sb, struct sb_msg *msg);
/* Queue a message (submit and requeue) and wake whoever serves that queue. */
void sb_engine_enqueue(smtpbulk_t *sb, struct sb_msg *msg);
/* The same without the wake-up: 1 when the workers of *host (-1: all) need one (the
 * queue was empty), for the caller to give once for a batch (sb_engine_wake()). */
int sb_engine_enqueue_quiet(smtpbulk_t *sb, struct sb_msg *msg, int *host);
/* Deliver a message's one result (pass/fail callback, then the result callback or the
 * poll queue) and free it when appropriate; its latency goes into lat when given.
 * Returns the pass/fail callback's code. */
int sb_engine_complete(smtpbulk_t *sb, struct sb_msg *msg, smtpbulk_status_t st, int err,
		       const struct sb_host *host, int host_idx, int conn_idx,
		       struct latency_hist *lat);
/* End every message in q with st/err (no host reached them). Returns 1 when an
 * enqueuer was mid-way (look again soon), else 0. */
int sb_engine_fail_queue(smtpbulk_t *sb, struct sbq *q, smtpbulk_status_t st, int err);
/* Call a seed callback (if set) for a connection of host (NULL: none); its code. */
int sb_fire(const smtpbulk_t *sb, smtpbulk_event_cb cb, smtpbulk_event_t *ev,
	    const struct sb_host *host, int host_idx, int conn_idx);
/* The error messages get when their host gave up: the reason when it is one the user
 * must act on (TLS, certificate, AUTH), else SMTPBULK_EHOSTDOWN. */
int sb_host_down_error(const struct sb_host *h);
/* The same when every host gave up: their common reason, else SMTPBULK_EHOSTDOWN. */
int sb_all_down_error(const smtpbulk_t *sb);
/* A worker took n messages out of a queue. */
void sb_engine_dequeued(smtpbulk_t *sb, uint64_t n);
/* Wake the workers that serve host (-1: every worker). Any thread. */
void sb_engine_wake(const smtpbulk_t *sb, int host);
/* A connection of host h parked (+1) or came back or died parked (-1). When every
 * live connection of the host is parked, its workers are woken: nobody else would
 * take what waits. */
void sb_engine_parked(smtpbulk_t *sb, struct sb_host *h, int delta);
/* A connection of h gave up for good: when it was the last, the host is down. */
void sb_engine_conn_dead(smtpbulk_t *sb, struct sb_host *h, int err);
/* The host a one-off command names: a host's name, or "name:port" (NULL: the first).
 * Its index, or SMTPBULK_ENOHOST. */
int sb_engine_host_named(const smtpbulk_t *sb, const char *name);
/* Send line[0..len) (command.h made it) on a ready connection of host h and wait for
 * its reply until timeout_ms pass (smtpbulk_command()'s contract). */
int sb_engine_command(smtpbulk_t *sb, int h, const char *line, size_t len, int timeout_ms,
		      smtpbulk_command_reply_t **out);
void sb_log(const smtpbulk_t *sb, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A line about connection conn of host (its own file under debug_path). */
void sb_log_conn(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#endif
