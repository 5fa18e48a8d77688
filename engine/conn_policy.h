/*
 * The seed's callback codes and what they do to the connection they name: pure
 * decisions over one connection's policy state, with no I/O, so they are unit-tested
 * alone (tests/unit/test_conn_policy.cpp). The connection layer (conn.c) asks and acts.
 *
 *                  ┌──────────── SMTPBULK_CB_REMOVE (101) ───────────► removed:
 *                  │                                                   takes nothing, QUIT
 *                  │                                                   when idle, DEAD
 *   in service ────┼── REMOVE_RECONNECT (102), REMOVE_RESTART (103) ─► parked CLOSED:
 *  (takes work)    │                                                   takes nothing, QUIT
 *       ▲          │                                                   when idle, stays down
 *       │          ├──────────── PAUSE (104) ────────────────────────► parked OPEN:
 *       │          │                                                   takes nothing,
 *       │          │                                                   stays connected
 *       │          └── RECONNECT (202), RESTART (203) ───────────────► ends now: what is in
 *       │                                                              flight goes again
 *       │                                                              free, reconnects at
 *       │                                                              once
 *       └─── the end of the batch (parked CLOSED: reconnects; parked OPEN: takes work)
 *
 * The end of the batch, for a parked connection: the submission queue is empty, or ran
 * empty since it parked (the engine's batch epoch moved), or every live connection of
 * its host is parked (then nobody else would take what waits). The engine wakes the
 * workers at each of these moments (sb_engine_dequeued, sb_engine_parked,
 * sb_engine_conn_dead): nothing polls. The RESTART codes make the next connection a
 * new one from scratch: its TLS handshake does not resume the host's session. Any other
 * code (DEFAULT, or unknown) changes nothing.
 *
 * Ownership: a connection's cpol belongs to its worker.
 */
#ifndef SB_CONN_POLICY_H
#define SB_CONN_POLICY_H

#include <stdint.h>

enum cpol_park { CPOL_RUN, CPOL_PARK_OPEN, CPOL_PARK_CLOSED };

struct cpol {
	uint8_t removed;       /* REMOVE: never again */
	uint8_t park;          /* enum cpol_park */
	uint8_t reconnect_now; /* RECONNECT/RESTART: end now, reconnect without a pause */
	uint8_t fresh_tls;     /* REMOVE_RESTART/RESTART: the next handshake does not resume */
	uint8_t ever_ready;    /* was ready once: later readiness is a reconnect */
	uint8_t held;          /* an event of it waits for the caller's code
	                          (options.event_queue_hold): no new work until then */
	uint64_t epoch;        /* the batch epoch when it parked */
};

/* Take note of what a callback returned; epoch is the engine's batch epoch now.
 * Returns 1 when the connection parked just now (the caller counts it), else 0. */
int cpol_apply(struct cpol *p, int code, uint64_t epoch);

/* May the connection take a new message? */
static inline int cpol_takes_work(const struct cpol *p)
{
	return !p->removed && !p->park && !p->reconnect_now && !p->held;
}

/* The connection said QUIT because its server takes no more messages on it: once
 * closed, it connects again at once (it takes no work meanwhile). */
static inline void cpol_reconnect_after_quit(struct cpol *p)
{
	p->reconnect_now = 1;
}

/* What an idle connection does. */
enum cpol_idle { CPOL_IDLE_WORK, CPOL_IDLE_WAIT, CPOL_IDLE_QUIT };
enum cpol_idle cpol_when_idle(const struct cpol *p, int stopping);

/* What follows once the connection is closed. */
enum cpol_next {
	CPOL_NEXT_GIVE_UP,        /* removed: never again */
	CPOL_NEXT_WAIT_BATCH,     /* parked: reconnect at the end of the batch */
	CPOL_NEXT_RECONNECT_NOW,  /* no pause */
	CPOL_NEXT_RECONNECT_LATER /* after Sleep.Fail or Sleep.Hang */
};
/* Decides, and forgets a reconnect-now it carried out. */
enum cpol_next cpol_after_close(struct cpol *p);

/* Is the batch over for a parked connection? epoch, queued: the engine's now; parked,
 * alive: its host's connections. */
int cpol_batch_over(const struct cpol *p, uint64_t epoch, uint64_t queued, unsigned parked,
		    unsigned alive);

/* The connection is no longer parked (the batch is over, or it died). Returns 1 when
 * it was (the caller uncounts it), else 0. */
int cpol_unpark(struct cpol *p);

/* Should the next handshake start afresh? Asking consumes the request. */
int cpol_take_fresh_tls(struct cpol *p);

#endif
