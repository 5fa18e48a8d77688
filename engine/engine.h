/*
 * The engine: hosts, workers, the submission queues, counters and result delivery.
 *
 * Threads and ownership
 * | thing                              | owned by             | who else may touch it      |
 * |------------------------------------|----------------------|----------------------------|
 * | a session, its buffers and socket  | its worker           | nobody                     |
 * | a worker's sb_io (ring / epoll)    | its worker           | nobody (SINGLE_ISSUER)     |
 * | a worker's wake_fd                 | its worker reads     | any thread writes (wake)   |
 * | a message                          | the caller until submit returns; then the queue; |
 * |                                    | then one worker; then the callback or poller     |
 * | options, hosts' config, addresses  | the engine           | read-only after create     |
 * | host->queue, sb->any_queue         | producers: anyone (wait-free); consumers: workers |
 * | counters (_Atomic)                 | everyone, atomically                              |
 * | lock/conds                         | submitters waiting for room, drainers, pollers,  |
 * |                                    | the watchdog's sleep                              |
 * | wd_* fields (watchdog.h)           | the watchdog thread; workers (atomics only)      |
 */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "latency_hist.h"
#include "message.h"
#include "queue.h"
#include "session.h"
#include "smtpbulk.h"

struct sb_worker;
struct WOLFSSL_CTX;
struct WOLFSSL_SESSION;

struct sb_host {
	/* Read-only after create. */
	char *name;
	char *label;              /* for logs: name, or name:port when the port is not 25 */
	uint16_t port;
	char *hello;
	unsigned connections;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct sess_cfg cfg;
	unsigned char *on_worker; /* on_worker[w]: worker w has connections to this host */
	char *tls_name;           /* SNI and the name the certificate must carry */
	struct sess_auth auth;    /* cfg.auth points here when AUTH is on */
	char *auth_user, *auth_secret; /* the secret is wiped at destroy */
	/* Shared. */
	struct sbq *queue;        /* messages that named this host */
	_Atomic unsigned alive;   /* connections that have not given up */
	_Atomic unsigned parked;  /* of which a callback parked (codes 102-104) */
	_Atomic int last_error;   /* why the last connection failed */
	_Atomic int auth_refused; /* a 535: no connection of this host starts again */
	/* The TLS session connections resume (any worker of the host): under tls_lock,
	 * held only around a handshake's start and a connection's first readiness. */
	pthread_mutex_t tls_lock;
	struct WOLFSSL_SESSION *tls_session;
};

struct smtpbulk {
	smtpbulk_options_t opts;  /* copy; opts.hosts points at nothing valid */
	struct sb_host *hosts;
	size_t n_hosts;
	struct sbq *any_queue;    /* messages for any host */
	struct sbq *done_queue;   /* results for smtpbulk_poll() */
	struct sb_msg_pool *msg_pool; /* message blocks, recycled (any thread) */
	struct WOLFSSL_CTX *tls_ctx; /* one for the engine, NULL when no host uses TLS;
	                                read-only after create (workers make their
	                                connections' WOLFSSL objects from it) */

	struct sb_worker **workers;
	unsigned n_workers;
	const char *backend_name; /* set by worker 0 at start */
	char backend_desc[64];

	_Atomic uint64_t next_id;
	_Atomic uint64_t submitted, completed, delivered, queued, queued_max, requeued;
	_Atomic uint64_t connects, connect_fails;
	_Atomic uint64_t timed_out, hangs, global_hangs, deferred, deferred_now, reconnects;
	_Atomic uint64_t tls_handshakes, tls_resumed;
	_Atomic uint64_t last_progress_ns; /* a worker last heard from a server (watchdog) */
	_Atomic unsigned hosts_alive;
	_Atomic int stopping;     /* 1: finish up; 2: quit (QUIT idle connections) */
	int started;

	pthread_mutex_t lock;     /* guards the conds below; never held on the hot path */
	pthread_cond_t room;      /* a bounded queue has room */
	pthread_cond_t done;      /* a result was delivered (drain, poll) */
	_Atomic unsigned room_waiters;
	_Atomic unsigned drain_waiters; /* woken only when the last result is in */
	_Atomic unsigned poll_waiters;  /* woken on every result */

	struct sb_facade *facade; /* the Net::SMTP-style facade's message being built */
	smtpbulk_callbacks_t cbs; /* the seed's callbacks (zeroed when none); read-only */
	struct sb_logger *logger; /* debug lines without on_log (debug_log.h); any thread */
	const char **host_names;  /* [n_hosts] "name:port", for the logger */

	/* The watchdog thread (watchdog.c). */
	pthread_t wd_thread;
	int wd_running;           /* creator/destroyer thread only */
	_Atomic int wd_stop;
	pthread_cond_t wd_cond;   /* wakes it early for stop (under lock) */
	unsigned wd_global_count; /* global hangs since the last give-up: watchdog only */
	unsigned phase_ms[SESS_PH_COUNT]; /* per-phase timeouts, resolved; read-only */
};

/* Engine internals used by api/ and the worker. */
int sb_engine_create(const smtpbulk_options_t *opts, smtpbulk_t **out);
int sb_engine_start(smtpbulk_t *sb);
int sb_engine_submit(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags, uint64_t *id_out);
/* Put a message back in its queue after connection trouble (never blocks). */
void sb_engine_requeue(smtpbulk_t *sb, struct sb_msg *msg);
/* Deliver a message's one result (pass/fail callback, then the result callback or the
 * poll queue) and free it when appropriate; its latency goes into lat when given.
 * Returns the pass/fail callback's code. */
int sb_engine_complete(smtpbulk_t *sb, struct sb_msg *msg, smtpbulk_status_t st, int err,
		       const struct sb_host *host, int host_idx, int conn_idx,
		       struct latency_hist *lat);
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
int sb_engine_drain(smtpbulk_t *sb, int timeout_ms);
/* Stop the workers (idle connections say QUIT) and cancel what is left. */
void sb_engine_stop(smtpbulk_t *sb);
int sb_engine_poll(smtpbulk_t *sb, smtpbulk_result_t **out, int timeout_ms);
void sb_engine_destroy(smtpbulk_t *sb);
void sb_log(const smtpbulk_t *sb, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A line about connection conn of host (its own file under debug_path). */
void sb_log_conn(const smtpbulk_t *sb, int level, int host, int conn, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

uint64_t sb_now_ns(void);

#endif
