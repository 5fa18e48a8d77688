/*
 * The SMTP client session state machine. Pure protocol logic: it consumes bytes the
 * worker received, produces bytes for the worker to send (as iovecs), and tells the
 * worker about messages through struct sess_ops. It does no I/O and takes no locks, so
 * tests drive it with buffers alone.
 *
 * The session keeps a FIFO of the replies it expects (one entry per command sent).
 * Lockstep (pipeline mode 0) is the same machine with at most one command outstanding.
 *
 * Ownership: a session belongs to one worker thread; nothing else touches it.
 */
#ifndef SB_SESSION_H
#define SB_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dotstuff.h"
#include "message.h"
#include "sasl.h"
#include "smtp_caps.h"
#include "smtp_cmd.h"
#include "smtp_reply.h"

/* SMTP AUTH for the sessions of one host (read-only, like sess_cfg). */
#define SESS_AUTH_AUTO 0xffu /* mech: the strongest both sides support (sasl_pick) */
struct sess_auth {
	unsigned mech;         /* an enum sasl_mech, or SESS_AUTH_AUTO */
	const char *user, *secret;
	int allow_plaintext;   /* AUTH even where the connection is not TLS */
	/* XOAUTH2 and OAUTHBEARER: the caller's token callback (smtpbulk_security_t;
	 * NULL: secret is the token), called by the AUTH states on the session's worker:
	 * once per connection, and once more after a refusal. */
	int (*token_cb)(const char *host, const char *user, int fresh, char *buf, size_t cap,
			void *arg);
	void *token_arg;
	const char *host;      /* the host's name, for token_cb */
	const char *bearer_host; /* OAUTHBEARER's host= and port= (RFC 7628 §3.1); NULL */
	unsigned bearer_port;    /* and 0 leave them out (a unix socket) */
};

/* The Secure modes are the public enum smtpbulk_secure (the seed's numbers, and 5). */
static inline int sess_secure_implicit(unsigned secure)
{
	return secure == SMTPBULK_SECURE_SMTPS || secure == SMTPBULK_SECURE_SMTPS_VERIFY;
}
static inline int sess_secure_verifies(unsigned secure)
{
	return secure == SMTPBULK_SECURE_SMTPS_VERIFY ||
	       secure == SMTPBULK_SECURE_STARTTLS_VERIFY;
}

/* Read-only configuration shared by the sessions of one host. */
struct sess_cfg {
	const char *hello;     /* EHLO/HELO name, validated */
	unsigned max_attempts; /* transactions per message before FAILED */
	unsigned retry_fail;   /* consecutive failed connections before giving up; also the
	                          421s a message rides out free of charge */
	unsigned retry_hang;   /* hangs a message rides out (SMTPBULK_UNLIMITED: any) */
	int debug;             /* log level threshold */
	unsigned pipeline;     /* 0 lockstep, 1 one round trip for the envelope, 2 one per
	                          message (the seed's Pipeline); needs PIPELINING */
	unsigned window;       /* mode 2 with CHUNKING: transactions in flight (1..SESS_TXN_MAX) */
	unsigned secure;       /* enum smtpbulk_secure */
	const struct sess_auth *auth; /* NULL: no AUTH */
	struct host_learned *learned; /* what the host's connections learned (shared,
	                                 atomics); NULL: each connection learns alone */
	unsigned max_per_conn; /* MAILs one connection carries; 0: no limit of ours */
	const char *const *throttle_patterns; /* texts that mean "slow down" (outcome.h);
	                                 NULL: the defaults */
	unsigned throttle_retries; /* throttled transactions a message rides out free (and
	                              ops->throttled is told); 0: a throttle is any 4xx */
	uint8_t lmtp;          /* RFC 2033: LHLO, and a reply per accepted recipient after
	                          the data */
	uint8_t dsn_required;  /* a message with DSN parameters to a server without DSN
	                          ends REJECTED (SMTPBULK_ENODSN); else they are left out */
	uint8_t retry_temp_rcpts; /* a PARTIAL message's 4xx recipients go again (defer),
	                          alone, while max_attempts allows */
};

struct sess;
struct host_learned; /* host_learned.h */

/* What the session asks of its worker. ctx is the worker's. */
struct sess_ops {
	/* A message for this session, or NULL when none is waiting. */
	struct sb_msg *(*next_msg)(void *ctx, struct sess *s);
	/* The message's final result (the worker delivers it). */
	void (*done)(void *ctx, struct sess *s, struct sb_msg *m, smtpbulk_status_t st, int err);
	/* Connection trouble before the message finished: queue it again. */
	void (*requeue)(void *ctx, struct sess *s, struct sb_msg *m);
	/* A 4xx refusal with attempts left: queue it again after a pause. NULL: such a
	 * message ends FAILED at once. */
	void (*defer)(void *ctx, struct sess *s, struct sb_msg *m);
	/* Optional: every reply, before the session acts on it (the seed's read). */
	void (*reply)(void *ctx, struct sess *s, const struct smtp_reply *r);
	/* A debug line (already filtered by cfg->debug). */
	void (*log)(void *ctx, struct sess *s, int level, const char *line);
	/* Optional: AUTH ended, 0 (authenticated) or why not. */
	void (*auth)(void *ctx, struct sess *s, int err);
	/* Optional: a transaction ended with the server's verdict (1: accepted, or
	 * refused for good) or without one for the server's trouble (0: a 4xx to MAIL or
	 * the data; the connection lost or garbled under it, once per connection however
	 * many were in flight). Not called for a hang, for 4xx to the recipients alone, for
	 * a transaction that goes again for no fault of the server's (a sequencing 503, a
	 * spent connection, a global hang's restart), nor for what the client ends. */
	void (*txn_end)(void *ctx, struct sess *s, int verdict);
	/* Optional: the server asked to slow down (a throttling reply to a transaction's
	 * command, outcome.h). The transaction goes again free (throttle_retries). */
	void (*throttled)(void *ctx, struct sess *s, const struct smtp_reply *r);
	/* A one-off command's end (sess_command()), exactly once for each: its reply (err
	 * 0; the session is idle again, or closing after a 421), or r NULL and why the
	 * connection ended first (err). NULL: the worker never sends one. */
	void (*command)(void *ctx, struct sess *s, const struct smtp_reply *r, int err);
};

enum sess_state {
	SESS_DOWN,       /* no connection; the worker may connect */
	SESS_CONNECTING, /* connect in progress */
	SESS_GREETING,   /* waiting for 220 */
	SESS_EHLO,       /* EHLO sent */
	SESS_HELO,       /* EHLO refused, HELO sent */
	SESS_STARTTLS,   /* STARTTLS sent, alone (never pipelined) */
	SESS_TLS,        /* the worker runs the TLS handshake (sess_tls_up() ends it); what
	                    the server sent in plaintext after its 220 was thrown away */
	SESS_AUTH,       /* an AUTH exchange is under way */
	SESS_IDLE,       /* ready, nothing in flight: the worker offers a message */
	SESS_TXN,        /* transactions in flight (or an RSET after a failed one) */
	SESS_CMD,        /* a one-off command (VRFY, HELP, ...) is out, alone, between
	                    transactions: no message is taken until its reply */
	SESS_QUIT,       /* QUIT sent */
	SESS_CLOSED,     /* connection over; the worker tears it down and reconnects */
	SESS_DEAD,       /* gave up after cfg->retry_fail failed connections */
};

enum sess_expect_kind {
	EXP_GREETING, EXP_EHLO, EXP_HELO, EXP_MAIL, EXP_RCPT, EXP_DATA, EXP_DOT, EXP_RSET,
	EXP_QUIT, EXP_BDAT, EXP_STARTTLS, EXP_AUTH, EXP_CMD,
};

struct sess_expect {
	uint8_t kind;  /* enum sess_expect_kind */
	uint8_t txn;   /* slot in sess.txns for MAIL/RCPT/DATA/DOT/BDAT */
	uint8_t behind_final; /* EXP_RSET: written behind an end of data not yet answered */
	uint32_t arg;  /* recipient index for EXP_RCPT */
	uint32_t end;  /* sess.out_total (mod 2^32) once the command was queued: its reply
	                  is owed only when the bytes up to here were handed out */
};

/* One mail transaction in flight on a connection. */
struct sess_txn {
	struct sb_msg *m;
	size_t rcpt_next;      /* the recipient the next RCPT is for (the message's
	                          settled recipients are skipped: sb_rcpt_done) */
	size_t rcpt_last;      /* the last recipient it sends */
	size_t rcpt_ok, rcpt_temp;
	size_t rcpt_split;     /* of rcpt_temp: "too many recipients", for a next one */
	unsigned outstanding;  /* replies still expected for it */
	int8_t mail;           /* 0 no reply yet, 1 accepted, -1 refused */
	uint8_t mail_written, data_written, body_queued;
	uint8_t failed;        /* outcome decided: a refusal; remaining replies are drained */
	uint8_t final;         /* the final reply (after the data) arrived */
	uint8_t dot_only;      /* 354 came for a refused envelope: only "." was sent */
	uint8_t behind_final;  /* its MAIL went out behind an end of data not yet answered */
	uint8_t answered;      /* a reply to one of its commands came */
	uint8_t again;         /* the server's refusal was no verdict on the message (a
	                          sequencing 503, a spent connection): it goes again free */
	uint8_t same_from;     /* CHUNKING: the transaction before it in flight has the same
	                          sender */
	uint8_t throttled;     /* a reply to it asked to slow down */
	uint8_t kept;          /* its MAIL got 503 because the server kept the refused
	                          envelope before: its RCPT and BDAT go on in that one */
	uint8_t final_ok;      /* LMTP: the result's reply is an acceptance already */
	uint32_t lmtp_left;    /* LMTP: replies after the data still owed (0: none came) */
	uint32_t lmtp_next;    /* LMTP: the recipient the next of them answers, at least */
	uint32_t lmtp_ok;      /* LMTP: recipients accepted after the data */
	smtpbulk_status_t status;
	int error;
	char *stuffed;         /* dot-stuffed copy of a body with '.'-lines (DATA only) */
	/* When it started and its replies came (the session's clock; 0: not yet). */
	uint64_t at_start, at_mail, at_rcpt, at_data, at_dot;
};

/* How long the connection's setup took (smtpbulk_phases_t's connection part). */
struct sess_times {
	uint64_t connect_ns, tls_ns, greeting_ns, ehlo_ns, auth_ns;
};

#define SESS_TXN_MAX 16
#define SESS_FIFO_MAX 256
#define SESS_WBUF 16384
#define SESS_OUT_MAX 64

struct sess {
	const struct sess_cfg *cfg;
	const struct sess_ops *ops;
	void *ctx;
	unsigned host_idx, conn_idx;
	enum sess_state state;
	int error;          /* why the last connection ended (0 = by QUIT) */
	unsigned fails;     /* consecutive connections that never became ready */
	int was_ready;      /* this connection reached the ready state */
	struct smtp_caps caps;
	unsigned mode;      /* the pipeline mode in force (0 without PIPELINING) */
	int chunking;       /* BDAT instead of DATA (mode 2 and CHUNKING) */
	int clean;          /* the server holds no transaction state: no RSET needed */
	uint8_t tls_on;     /* this connection runs over TLS (since sess_tls_up) */
	uint8_t authed;     /* AUTH succeeded on this connection */
	uint8_t fatal;      /* the connection ends DEAD whatever retry_fail says, and the
	                       host's others stop: the reason holds for them all (535, no
	                       common mechanism, no STARTTLS, an untrusted certificate) */
	int quit_err;       /* we said QUIT to end the connection for this reason */
	uint8_t starttls_refused; /* secure 3: the server said no; plaintext it is */
	uint8_t cfg_debug_mute; /* out_cmd() does not trace (out_secret() does, redacted) */
	uint8_t said_kept;    /* the log told that the server keeps refused envelopes */
	uint8_t no_dot_pipe;  /* this connection writes nothing behind an unanswered end of
	                         data (the server refused it; cfg->learned tells the host) */
	uint8_t spent;        /* the server takes no more messages on this connection (it
	                         said so, or cap MAILs went out): QUIT when idle, and
	                         connect again */
	uint8_t final_refused; /* the last end of data answered was refused */
	uint8_t txn_answered; /* a transaction command was answered on this connection */
	uint8_t cmd_out;      /* a one-off command awaits its reply (ops->command owed) */
	unsigned mails, mails_ok; /* MAIL commands written and accepted on this connection */
	unsigned cap;         /* MAILs this connection may carry (the host's lesson when it
	                         connected); 0: no cap */
	unsigned window;      /* transactions in flight now allowed (mode 2): cfg->window,
	                         or less after a hang, growing back as replies come */
	/* Output bytes on this connection, mod 2^32: queued, handed to the transport (on
	 * their way to the socket, or encrypted) and taken. A reply to a command whose
	 * bytes were not handed out yet cannot be the server's: it answered before it
	 * read (a phantom), and the connection ends. */
	uint32_t out_total, out_handed, out_taken;
	uint32_t replies;     /* complete replies taken, ever (it wraps): the timeouts
	                         restart on these, not on bytes a slow server dribbles */
	struct sasl_client *sasl; /* during AUTH only (it holds the secret) */
	uint8_t token_refused; /* this connection's token was refused once: a fresh one
	                          was asked for (set and reset by the AUTH states) */
	/* Timings (smtpbulk_phases_t): the worker's clock, read where a phase begins or
	 * ends (NULL: none is kept, as in tests without one). */
	const uint64_t *clock;
	uint64_t at_phase;    /* when the connection phase in progress began */
	struct sess_times times; /* this connection's setup, reset at each connect */

	struct sess_expect fifo[SESS_FIFO_MAX];
	unsigned fifo_head, fifo_len;
	struct sess_txn txns[SESS_TXN_MAX]; /* a ring, oldest first */
	unsigned txn_head, txn_len;

	char *rbuf;         /* SMTP_REPLY_MAX bytes, so one whole reply always fits;
	                       allocated on first use (see sess_rspace) */
	size_t rlen;

	/* Output: iovecs over wbuf (commands, append-only until all is sent) and over
	 * message bodies (zero copy). out[out_head .. out_head+out_len) in order. */
	size_t wlen;
	struct iovec out[SESS_OUT_MAX];
	unsigned out_head, out_len;

	char *graveyard[SESS_TXN_MAX]; /* stuffed copies of aborted transactions: a send
	                                  may still read them; freed at sess_reset() */
	unsigned n_graveyard;

	/* Last, and never cleared: only the bytes before wlen are read, so the pages of a
	 * connection that writes little are never touched (memory per idle connection). */
	char wbuf[SESS_WBUF];
};

int sess_init(struct sess *s, const struct sess_cfg *cfg, const struct sess_ops *ops,
	      void *ctx, unsigned host_idx, unsigned conn_idx);
void sess_fini(struct sess *s);

const char *sess_state_name(enum sess_state st);

/* The worker started a connect. */
void sess_connecting(struct sess *s);
/* The connect finished: 0 or -errno. */
void sess_connected(struct sess *s, int err);
/* Where the worker may receive into, and how much; NULL when out of memory. */
char *sess_rspace(struct sess *s, size_t *cap);
/* n bytes arrived at sess_rspace(). */
void sess_input(struct sess *s, size_t n);
/* n bytes arrived in a buffer the session does not own (a pooled receive): complete
 * replies are parsed in place, only a split one is copied. buf may be reused after. */
void sess_feed(struct sess *s, const char *buf, size_t n);
/* Fill iov[] with the bytes to send next; returns the count (0 = nothing to send). */
int sess_output(const struct sess *s, struct iovec *iov, int max);
/* The bytes of iov[0..n) (the last sess_output()) are handed to the socket or TLS. */
void sess_handed(struct sess *s, const struct iovec *iov, int n);
/* n bytes of the last sess_output() were sent. */
void sess_sent(struct sess *s, size_t n);
/* The connection failed (receive end, send error): err is -errno or SMTPBULK_E*. */
void sess_io_error(struct sess *s, int err);
/* The same, for a reason that holds for every connection of the host (a certificate
 * that is not trusted): the connection ends DEAD and sess_fatal() says so. */
void sess_io_fatal(struct sess *s, int err);
/* Write what can be written, and pull messages (ops->next_msg) while the pipelining
 * window has room: the one way messages enter a session. Returns how many it took. */
unsigned sess_pump(struct sess *s);
/* Send a one-off command line (command.h made it, CRLF included) on an idle session:
 * state SESS_CMD until its reply, which goes to ops->command. 0, or -EBUSY when the
 * session is not idle with nothing outstanding, -ENOSPC without room (cannot happen
 * on an idle one). */
int sess_command(struct sess *s, const char *line, size_t len);
/* 1 while a one-off command awaits its reply. */
static inline int sess_in_command(const struct sess *s)
{
	return s->state == SESS_CMD;
}
/* 1 when the session could start another transaction now (pipelining window). */
int sess_has_room(const struct sess *s);
/* Say QUIT if idle; otherwise nothing. Returns 1 when QUIT was sent. */
int sess_quit(struct sess *s);
/* Stop now: the message in progress ends with st/err, the session is CLOSED. */
void sess_abort(struct sess *s, smtpbulk_status_t st, int err);
/* The watchdog found the connection hung: it ends (SMTPBULK_ETIMEDOUT) and its
 * messages are retried or end TIMED_OUT per cfg->retry_hang. */
void sess_hang(struct sess *s);
/* A global hang: the connection ends and its messages are retried free of charge. */
void sess_restart(struct sess *s);
/* What a waiting connection waits for, for the per-phase timeouts. */
enum sess_phase {
	SESS_PH_GREETING, /* connect and greeting */
	SESS_PH_MAIL,     /* a reply to MAIL, EHLO, HELO, RSET or QUIT */
	SESS_PH_RCPT,
	SESS_PH_DATA,     /* the 354 */
	SESS_PH_BLOCK,    /* the socket to take more of the data */
	SESS_PH_DOT,      /* the reply after the final "." or BDAT LAST */
	SESS_PH_COUNT,
};
/* backlog: the transport holds bytes the socket has not taken yet (TLS's outbox): with
 * no reply owed, the connection then waits for the socket (SESS_PH_BLOCK). */
enum sess_phase sess_phase(const struct sess *s, int backlog);
/* 1 while the connection waits for the server: connecting, replies expected, or bytes
 * not yet taken by the socket. The watchdog times only these. */
int sess_waiting(const struct sess *s);
/* The TLS handshake the session asked for (state SESS_TLS) is done: for implicit TLS
 * the greeting comes next, after STARTTLS a new EHLO (what was learned in plaintext is
 * forgotten). */
void sess_tls_up(struct sess *s);
/* 1 when the session waits for the worker to run a TLS handshake. */
static inline int sess_wants_tls(const struct sess *s)
{
	return s->state == SESS_TLS;
}
/* After the worker closed the socket of a CLOSED session: back to DOWN. */
void sess_reset(struct sess *s);
/* A connection that is down gives up for good (err says why, 0 = asked to): DEAD. */
void sess_give_up(struct sess *s, int err);
/* Stopping: a transaction in progress ends CANCELLED, and so does a connect; a
 * connection shaking hands or resetting (only an RSET out) goes on until it is idle
 * (then QUIT); a one-off command ends SMTPBULK_ECANCELLED at once for its caller,
 * while the connection waits for its reply, then QUITs. */
void sess_cancel_work(struct sess *s);

/* What the connection layer asks of a session; it never reads the fields itself. */
static inline int sess_has_output(const struct sess *s)
{
	return s->out_len > 0;
}
/* No connection: closed, dead, or down. */
static inline int sess_is_over(const struct sess *s)
{
	return s->state == SESS_CLOSED || s->state == SESS_DEAD || s->state == SESS_DOWN;
}
static inline int sess_is_idle(const struct sess *s)
{
	return s->state == SESS_IDLE;
}
/* Transactions (or the RSET after one) are out, awaiting replies. */
static inline int sess_in_transaction(const struct sess *s)
{
	return s->state == SESS_TXN;
}
static inline int sess_is_dead(const struct sess *s)
{
	return s->state == SESS_DEAD;
}
static inline int sess_is_closed(const struct sess *s)
{
	return s->state == SESS_CLOSED;
}
static inline int sess_is_down(const struct sess *s)
{
	return s->state == SESS_DOWN;
}
/* Its state's name, for a log line. */
static inline const char *sess_state_now(const struct sess *s)
{
	return sess_state_name(s->state);
}
/* Connected and talking (not connecting, not quitting, not over). */
static inline int sess_in_service(const struct sess *s)
{
	return s->state >= SESS_GREETING && s->state <= SESS_CMD;
}
/* The socket is connected (or a connect is not yet asked for): I/O may run. */
static inline int sess_on_wire(const struct sess *s)
{
	return s->state >= SESS_GREETING && s->state <= SESS_QUIT;
}
/* QUIT is written in full: nothing more will be said on this connection. */
static inline int sess_said_quit(const struct sess *s)
{
	return s->state == SESS_QUIT && s->out_len == 0;
}
/* The server takes no more messages on this connection (it said so, or the host's
 * learned cap is reached): the connection layer says QUIT and connects again. */
static inline int sess_spent(const struct sess *s)
{
	return s->spent;
}
/* This connection takes no new message (its age is up): QUIT once idle. */
static inline void sess_retire(struct sess *s)
{
	s->spent = 1;
}
/* MAIL commands written on this connection so far. */
static inline unsigned sess_mails(const struct sess *s)
{
	return s->mails;
}
/* This connection became ready (past EHLO, TLS and AUTH) at least once. */
static inline int sess_was_ready(const struct sess *s)
{
	return s->was_ready;
}
/* Complete replies taken so far (mod 2^32): what counts as the server's progress. */
static inline uint32_t sess_replies(const struct sess *s)
{
	return s->replies;
}
/* Messages in flight, oldest first (for the hang callback). */
static inline unsigned sess_inflight(const struct sess *s)
{
	return s->txn_len;
}
static inline struct sb_msg *sess_inflight_msg(const struct sess *s, unsigned i)
{
	return s->txns[(s->txn_head + i) % SESS_TXN_MAX].m;
}
/* Why the last connection ended (0: by QUIT), and how many failed in a row. */
static inline int sess_error(const struct sess *s)
{
	return s->error;
}
static inline unsigned sess_fails(const struct sess *s)
{
	return s->fails;
}
/* The connection ended DEAD for a reason that holds for every connection of the host
 * (sess.fatal). */
static inline int sess_fatal(const struct sess *s)
{
	return s->fatal;
}

#endif
