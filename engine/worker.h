/* A worker: one pinned thread, one I/O ring, a share of every host's connections. */
#ifndef SB_WORKER_H
#define SB_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "io.h"
#include "latency_hist.h"
#include "session.h"
#include "tls.h"

struct smtpbulk;

/* Per-connection I/O bookkeeping beside the pure session. Worker-only, except the
 * wd_* atomics the watchdog reads and flags. */
struct sb_conn {
	struct sess sess;
	int fd;
	uint32_t gen;          /* bumped per connection; stale completions are dropped */
	unsigned inflight;     /* operations not yet completed (any generation) */
	uint8_t recv_busy, send_busy, idle_listed, ready_counted;
	uint8_t cancelled;     /* cancel_fd already issued for this connection */
	uint8_t dead_counted;  /* its host was told this connection gave up */
	uint8_t recv_multi;    /* the receive in flight is multishot (pooled buffers) */
	/* What the seed's callbacks asked for (enum smtpbulk_cb_code), done in after(): */
	uint8_t ever_ready;    /* was ready once: later readiness is a reconnect */
	uint8_t removed;       /* 101: QUIT when idle, never reconnect */
	uint8_t park;          /* 102/103 (PARK_CLOSED), 104 (PARK_OPEN): until the queue is
	                          next empty */
	uint8_t reconnect_now; /* 202/203: end now, reconnect without a pause */
	uint64_t reconnect_at; /* ns; 0 = not waiting */
	struct sb_tls *tls;    /* NULL: plaintext; made at the handshake, freed at close */
	uint8_t send_tls;      /* the send in flight is ciphertext from tls's outbox */
	uint8_t tls_fresh;     /* 103/203: the next handshake does not resume */
	uint8_t tls_saved;     /* this connection's TLS session went to the host's cache */
	/* Shared with the watchdog (atomics; see watchdog.h). */
	_Atomic uint64_t wd_since; /* waiting for the server since (ns); 0 = not waiting */
	_Atomic uint8_t wd_fired;  /* the watchdog says: waited too long */
	_Atomic uint32_t wd_limit_ms; /* how long it may wait in its present phase */
	/* Its counts for smtpbulk_get_stats(): the worker adds, any thread reads. */
	struct {
		_Atomic uint64_t total, pass, fail, hang, deferred, bytes;
	} stats;
	_Atomic int ready_now;     /* connected and past EHLO (for stats) */
	struct msghdr mh;      /* the send in flight */
	struct iovec iov[SESS_OUT_MAX];
};

struct sb_worker {
	struct smtpbulk *sb;   /* read-only */
	unsigned index;
	int cpu;               /* -1 = not pinned */
	pthread_t thread;
	int wake_fd;           /* eventfd: any thread writes, this worker reads */
	struct latency_hist *lat; /* [n_hosts]: results' latency; the worker records, any
	                             thread reads (smtpbulk_get_stats) */
	_Atomic int wd_pending; /* the watchdog fired on some connection of this worker */
	_Atomic int wd_global;  /* the watchdog saw a global hang: 1 reconnect, 2 give up */
	/* Below: this worker's thread only (after start). */
	const struct sb_io_backend *be;
	struct sb_io *io;
	struct sb_conn *conns;
	unsigned n_conns;
	struct worker_priv *priv; /* idle stacks and stop state (worker.c) */
	uint64_t wake_val;
	int queue_busy;        /* a queue had an enqueuer mid-way: look again soon */
	unsigned waiting;      /* connections waiting to reconnect */
	int recv_multi;        /* receive with multishot into the backend's buffer pool */
	int recv_multi_seen;   /* a multishot receive has delivered data: it works here */
	uint64_t now;          /* monotonic ns, read once per loop iteration */
	int progress;          /* a server answered during this iteration */
	unsigned parked;       /* connections with park set */
	char *tls_plain;       /* TLS_PLAIN_MAX bytes: plaintext out of wolfSSL_read */
	/* Start handshake with the creating thread (under sb->lock). */
	int init_rc;
	int init_done;
	char desc[64];
};

int sb_worker_create(struct smtpbulk *sb, unsigned index, int cpu, struct sb_worker **out);
int sb_worker_start(struct sb_worker *w);
void sb_worker_join(struct sb_worker *w);
void sb_worker_destroy(struct sb_worker *w);
/* Wake the worker if it sleeps. Any thread. */
void sb_worker_wake(struct sb_worker *w);

#endif
