/*
 * smtpbulk — send very large volumes of mail over SMTP, non-blocking, over many
 * connections at once.
 *
 * This is the one public header. Every function returns 0 (or a count) on success and
 * a negative error code on failure: a negated errno value (-EINVAL, -ENOMEM, -EAGAIN, ...)
 * or one of the SMTPBULK_E* codes below. smtpbulk_strerror() names any of them.
 * The library never prints (unless a debug level is set), never exits and never aborts
 * on bad input.
 *
 * Two ways to use it:
 *  - the direct API: smtpbulk_options_init(), smtpbulk_create(), smtpbulk_start(),
 *    smtpbulk_submit() from any number of threads, results through a callback or
 *    smtpbulk_poll(), smtpbulk_drain(), smtpbulk_destroy();
 *  - the Net::SMTP-style facade of Perl's Net::SMTP::Bulk: smtpbulk_new(), smtpbulk_mail(),
 *    smtpbulk_to(), smtpbulk_data(), smtpbulk_datasend(), smtpbulk_dataend(),
 *    smtpbulk_quit(), smtpbulk_free(). It sends through the same engine.
 */
#ifndef SMTPBULK_H
#define SMTPBULK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SMTPBULK_VERSION_MAJOR 0
#define SMTPBULK_VERSION_MINOR 1
#define SMTPBULK_VERSION_PATCH 0
/* One number that grows with every release: 0x00MMmmpp. */
#define SMTPBULK_VERSION_NUM                                                        \
	((SMTPBULK_VERSION_MAJOR << 16) | (SMTPBULK_VERSION_MINOR << 8) |           \
	 SMTPBULK_VERSION_PATCH)

/** The library's version as "major.minor.patch" (may differ from the header's). */
const char *smtpbulk_version(void);

/*
 * Error codes of our own, below -1000 so they never collide with -errno.
 * Append-only: a value is never renumbered or reused.
 */
enum smtpbulk_error {
	SMTPBULK_EBADADDR = -1001,    /* address empty, too long, or holds CR, LF, NUL, '<' or '>' */
	SMTPBULK_EBADPARAM = -1002,   /* a host name, hello name or parameter holds CR/LF/space */
	SMTPBULK_ESEQUENCE = -1003,   /* facade call out of order (to() before mail(), ...) */
	SMTPBULK_ENOHOST = -1004,     /* no host configured, or message names an unknown host */
	SMTPBULK_ERESOLVE = -1005,    /* a host name could not be resolved */
	SMTPBULK_ESTOPPED = -1006,    /* the engine is stopping or was never started */
	SMTPBULK_EPROTO = -1007,      /* the server sent a malformed reply */
	SMTPBULK_ETOOLONG = -1008,    /* the server sent a reply longer than the RFC 5321 limits */
	SMTPBULK_ECLOSED = -1009,     /* the server closed the connection */
	SMTPBULK_EGREETING = -1010,   /* the server's greeting was not 220 */
	SMTPBULK_EHELLO = -1011,      /* the server refused both EHLO and HELO */
	SMTPBULK_EMSGSIZE = -1012,    /* the message is larger than the server's SIZE limit */
	SMTPBULK_EHOSTDOWN = -1013,   /* every connection to the host failed and gave up */
	SMTPBULK_ECANCELLED = -1014,  /* the engine was destroyed before the message was sent */
	SMTPBULK_EBACKEND = -1015,    /* the requested I/O backend is not available here */
	SMTPBULK_ESERVER = -1016,     /* the server answered with a 4xx/5xx reply (see the reply) */
	SMTPBULK_EUTF8 = -1017,       /* 8-bit address but the server lacks SMTPUTF8 */
	SMTPBULK_ETIMEDOUT = -1018,   /* the server did not answer within the timeout (hang) */
	SMTPBULK_ESHUTDOWN = -1019,   /* the server said 421: it is closing the connection */
	SMTPBULK_ETLS = -1020,        /* the TLS handshake or a TLS record failed */
	SMTPBULK_ECERT = -1021,       /* the server's certificate is not trusted: unknown CA,
	                                 wrong name, expired or not yet valid */
	SMTPBULK_ENOSTARTTLS = -1022, /* secure 4 or 5: the server does not offer STARTTLS
	                                 or refused it (nothing was sent in the clear) */
	SMTPBULK_EAUTH = -1023,       /* AUTH refused for good: 535 bad credentials (every
	                                 connection of the host stops), another 5xx, or a
	                                 SCRAM server proof that was wrong */
	SMTPBULK_EAUTHTEMP = -1024,   /* AUTH failed for now (454 or another 4xx): retried */
	SMTPBULK_EAUTHMECH = -1025,   /* no AUTH mechanism both sides support */
	SMTPBULK_EAUTHPLAIN = -1026,  /* AUTH asked on a connection without TLS: refused
	                                 unless auth_plaintext is set */
	SMTPBULK_ETLSCONFIG = -1027,  /* TLS setup: CA file, certificate or key unreadable or
	                                 invalid, or no trust store to verify with */
	SMTPBULK_EBREAKER = -1028,    /* the host's circuit breaker gave up: transaction after
	                                 transaction ended without a verdict, and so did
	                                 every probe after a cool-off (breaker_* options) */
	SMTPBULK_ESOURCE = -1029,     /* a source address could not be bound: it is not an
	                                 address of this machine (or is in use); the
	                                 connection that had it gives up */
	SMTPBULK_ENOLMTP = -1030,     /* the host is set to LMTP, and the server refused LHLO:
	                                 it does not speak LMTP (the host's connections stop) */
	SMTPBULK_ENODSN = -1031,      /* the message asks for DSN (RFC 3461), the server does
	                                 not offer it and options.dsn_required is set */
	SMTPBULK_ETOKEN = -1032,      /* the security's token_cb gave no token (it returned
	                                 a negative value, 0, or more than it was allowed):
	                                 the connection fails, and is retried */
	/* -1033..-1039: the one-off commands (smtpbulk_command()). */
	SMTPBULK_ETURN = -1033,       /* TURN and ATURN are refused: obsolete and unsafe
	                                 (RFC 2645); they are never sent */
	SMTPBULK_EJOURNAL = -1040,    /* a journal file holds a line this library did not
	                                 write (smtpbulk_send.h) */
	SMTPBULK_EMESSAGE = -1041,    /* not a mail message (smtpbulk_mailfile_parse()) */
	SMTPBULK_ENOSENDER = -1042,   /* a message without From or Sender, and no sender given */
	SMTPBULK_ENORCPTS = -1043,    /* a message without To, Cc or Bcc recipients */
	SMTPBULK_ENOVAR = -1050,      /* a template's {{name}} has no value
	                                 (smtpbulk_template_render()) */
	SMTPBULK_EHEADERVAL = -1051,  /* a template value with a line break (or NUL) would go
	                                 into a header: refused, it could add headers */
};

/* For the retry counts that take it (the seed's "0 for unlimited"). */
#define SMTPBULK_UNLIMITED 0xffffffffu

/** A static, human-readable name for any code this library returns (never NULL). */
const char *smtpbulk_strerror(int err);

typedef struct smtpbulk smtpbulk_t;

/* ---------------------------------------------------------------------------------- */
/* Options                                                                             */

/* The seed's Secure modes, with its numbers. */
enum smtpbulk_secure {
	SMTPBULK_SECURE_NONE = 0,            /* plaintext */
	SMTPBULK_SECURE_SMTPS = 1,           /* implicit TLS (port 465), no verification */
	SMTPBULK_SECURE_SMTPS_VERIFY = 2,    /* implicit TLS, certificate and name verified */
	SMTPBULK_SECURE_STARTTLS = 3,        /* STARTTLS when offered, no verification;
	                                        plaintext otherwise (said at debug level 5) */
	SMTPBULK_SECURE_STARTTLS_VERIFY = 4, /* STARTTLS, verified, or nothing is sent */
	/* Beyond the seed: */
	SMTPBULK_SECURE_STARTTLS_REQUIRE = 5, /* STARTTLS or nothing is sent, not verified
	                                         (load tests against self-signed servers) */
};

/**
 * TLS mode and AUTH for a host (the seed's Secure and Auth). The strings are copied
 * by smtpbulk_create(); the secret is wiped from the engine's memory at destroy.
 */
typedef struct smtpbulk_security {
	size_t struct_size;     /* sizeof(smtpbulk_security_t) */
	unsigned secure;        /* enum smtpbulk_secure */
	const char *tls_name;   /* the name sent as SNI and checked against the
	                           certificate; NULL = the host's name */
	const char *auth;       /* NULL or "" = no AUTH; "AUTO" (the strongest mechanism
	                           both sides support: SCRAM-SHA-256, CRAM-MD5, PLAIN,
	                           LOGIN; never a token mechanism), or one of "PLAIN",
	                           "LOGIN", "CRAM-MD5", "XOAUTH2", "SCRAM-SHA-256",
	                           "OAUTHBEARER" (RFC 7628) */
	const char *user;
	const char *secret;     /* the password, or the bearer token for XOAUTH2 and
	                           OAUTHBEARER (up to 8192 bytes) when token_cb is NULL;
	                           never logged (the protocol trace shows "<redacted>") */
	int auth_plaintext;     /* nonzero: AUTH even on a connection without TLS;
	                           otherwise such a connection fails (SMTPBULK_EAUTHPLAIN) */
	/* Added after 0.2.0 (a struct_size from an older header ends before token_cb: no
	 * callback). Bearer tokens expire while connections live, so for XOAUTH2 and
	 * OAUTHBEARER the token may come from token_cb instead of secret (which is then
	 * not used and may be NULL; token_cb with any other mechanism, AUTO included, is
	 * -EINVAL at create).
	 * It is asked once per new connection, before its AUTH: host is the host's name
	 * (smtpbulk_host_t.host), user the user above, fresh 0. It writes the token into
	 * buf (at most cap bytes, 8192; visible ASCII; no NUL needed) and returns its
	 * length. A negative value, 0, more than cap or a token with a space or control
	 * character means it has none: that connection fails with SMTPBULK_ETOKEN and is
	 * retried like any connection that failed (retry_fail, reconnect_ms), asking again.
	 * When the server refuses a token (535, or an error report), the callback is asked
	 * once more for that connection with fresh nonzero (the token it gave was refused:
	 * get a new one) and AUTH goes again on the same connection, as RFC 4954 allows. A
	 * second refusal is SMTPBULK_EAUTH, as a wrong password is: no other connection
	 * of the host logs in again. The engine wipes its copies of the token when the
	 * AUTH exchange ends and never logs it.
	 * Threads: called on a worker thread, concurrently for connections on different
	 * workers (token_arg must be safe for that); while it runs, every connection of
	 * that worker waits. So it must not block long: hand out a cached token that is
	 * refreshed elsewhere before it expires; a refresh on fresh = 1 is the exception. */
	int (*token_cb)(const char *host, const char *user, int fresh, char *buf, size_t cap,
			void *arg);
	void *token_arg;
} smtpbulk_security_t;

/**
 * A rate for pacing (added after 0.2.0): at most `messages` per `per_ms` milliseconds,
 * and `burst` at once after a quiet spell. Kept by GCRA, shared by every connection
 * and worker it concerns, so the sum holds: over any span T at most burst + rate x (T
 * + 1 ms) messages start (the millisecond is the timers' resolution). A message waits
 * for its turn in the queue, on no connection.
 */
typedef struct smtpbulk_rate {
	unsigned messages; /* 0 = no limit */
	unsigned per_ms;   /* 1000 (a second), 60000 (a minute), 3600000 (an hour); 0 = 1000 */
	unsigned burst;    /* 0 = 1 */
} smtpbulk_rate_t;

/** One SMTP server to send through (the seed's Hosts entry). */
typedef struct smtpbulk_host {
	const char *host;     /* name, IPv4 or IPv6 address (no brackets), or
	                         "unix:/path/to/socket" (a unix-domain socket: port and
	                         sources do not apply, and TLS needs tls_name); required */
	uint16_t port;        /* 0 = 25 (465 would be usual with secure 1 and 2) */
	const char *hello;    /* EHLO/HELO name; NULL = the options' hello */
	unsigned connections; /* concurrent connections (the seed's Threads); 0 = the
	                         options' connections */
	/* Added after 0.1.0 (an options struct_size from an older header means the hosts
	 * array has the old, shorter elements: that is taken into account). */
	const smtpbulk_security_t *security; /* NULL = the options' security */
	smtpbulk_rate_t rate;  /* this host's pace; messages 0 = the options' host_rate */
	/* Where its connections come from: local IPv4 or IPv6 addresses (of the host's
	 * family), NULL-terminated; connection k binds sources[k % count] before it
	 * connects. NULL = the system's choice. A source that cannot be bound fails its
	 * connections with SMTPBULK_ESOURCE, never the default route instead. */
	const char *const *sources;
	/* NULL, or the EHLO name for each source: one entry per source, in the same
	 * order, a NULL entry meaning the host's hello. Receivers check that the name
	 * a source gives resolves to it. */
	const char *const *source_hellos;
	/* Nonzero: the host speaks LMTP (RFC 2033), as a local delivery agent does: LHLO
	 * instead of EHLO, and after the data one reply per accepted recipient, each
	 * that recipient's own verdict (some refused there: PARTIAL). Such servers listen
	 * on a unix socket or on a port of their own (24 is usual), never on 25. */
	int lmtp;
} smtpbulk_host_t;

typedef enum smtpbulk_backend {
	SMTPBULK_BACKEND_AUTO = 0,     /* io_uring, or epoll when the kernel refuses io_uring */
	SMTPBULK_BACKEND_IO_URING = 1, /* io_uring only: start fails with SMTPBULK_EBACKEND */
	SMTPBULK_BACKEND_EPOLL = 2,    /* epoll only */
} smtpbulk_backend_t;

typedef enum smtpbulk_status {
	SMTPBULK_DELIVERED = 0, /* every recipient accepted, data accepted */
	SMTPBULK_PARTIAL = 1,   /* data accepted for some recipients, others refused */
	SMTPBULK_REJECTED = 2,  /* a permanent (5xx) refusal: do not retry as is */
	SMTPBULK_FAILED = 3,    /* a temporary (4xx) refusal or connection trouble */
	SMTPBULK_TIMED_OUT = 4, /* no answer within the timeout */
	SMTPBULK_CANCELLED = 5, /* the engine was destroyed before the message was done */
} smtpbulk_status_t;

/*
 * What kind of outcome a result is, beside its status: what a mailing platform does
 * next (suppress the address, retry later, slow down, fix the message, look at the
 * network) depends on it. The table from replies and errors to categories is in
 * engine/outcome.h and the README. Append-only.
 */
typedef enum smtpbulk_category {
	SMTPBULK_CAT_DELIVERED = 0,   /* accepted (DELIVERED, or PARTIAL: some recipients) */
	SMTPBULK_CAT_HARD_BOUNCE = 1, /* the mailbox or domain does not exist or takes no
	                                 mail (5.1.x, 5.2.1, "user unknown"): suppress it */
	SMTPBULK_CAT_SOFT = 2,        /* a refusal that may pass later and is no rate limit
	                                 (a full mailbox, even refused with 5.2.2;
	                                 greylisting; a server in trouble) */
	SMTPBULK_CAT_THROTTLED = 3,   /* the server asks to slow down (4.7.x, 4.3.2, 4.4.5
	                                 or a rate-limit text on a 421/450/451/452) */
	SMTPBULK_CAT_POLICY = 4,      /* refused for policy: spam, reputation, blocklist,
	                                 authentication, relaying (5.7.x) */
	SMTPBULK_CAT_TOO_LARGE = 5,   /* the message is too large (5.2.3, 5.3.4, a 552
	                                 that says so, the server's SIZE) */
	SMTPBULK_CAT_PROTOCOL = 6,    /* the two sides did not understand each other:
	                                 syntax, sequence, a garbled or missing reply */
	SMTPBULK_CAT_NETWORK = 7,     /* connection, TLS or certificate trouble, timeouts */
	SMTPBULK_CAT_LOCAL = 8,       /* ended by this side: cancelled, no host, given up
	                                 (circuit breaker) */
	SMTPBULK_CAT_OTHER = 9,       /* a permanent refusal that fits none of the above */
} smtpbulk_category_t;

/** A static name for a category: "delivered", "hard_bounce", ... (never NULL). */
const char *smtpbulk_category_name(smtpbulk_category_t c);

/** A reply from the server. Strings are NUL-terminated and live as long as the result. */
typedef struct smtpbulk_reply {
	int code;             /* 250, 550, ...; 0 when no reply was received */
	const char *enhanced; /* "5.1.1" when the server sent one, else "" */
	const char *text;     /* reply text without codes; lines joined with '\n'; "" if none */
} smtpbulk_reply_t;

typedef struct smtpbulk_rcpt_result {
	const char *rcpt;       /* the address as submitted, normalised (no angle brackets) */
	smtpbulk_reply_t reply; /* the reply to RCPT TO; code 0 if it was never sent. Its
	                           text is the reply's first line only (the result's own
	                           reply, the deciding one, keeps every line): the server
	                           must not decide how much memory a result holds */
} smtpbulk_rcpt_result_t;

/**
 * Where a message's time went, in nanoseconds (0: that phase did not happen; 1: it
 * took less than the worker's clock grain, one turn of its loop). The
 * transaction phases are those of its last transaction and follow each other: from
 * its start (MAIL written) to the MAIL reply, then to the last RCPT reply, then to the
 * 354 for DATA (0 with BDAT), then to the final reply; with pipelining the later ones
 * are short, as their replies come together. latency_ns minus queued, paced and these
 * is roughly what earlier attempts and their pauses cost. The connection phases are those of
 * the connection that carried the last transaction, once, when it was set up.
 */
typedef struct smtpbulk_phases {
	uint64_t queued_ns;  /* from submit (or start_ns) until a connection first took
	                        it; pacing waits happen in the queue, so are counted here */
	uint64_t paced_ns;   /* of that and later waits, the time its connection waited
	                        for a pacer to let it start (all attempts) */
	uint64_t mail_ns, rcpt_ns, data_ns, dot_ns;
	uint64_t connect_ns; /* connect() to connected */
	uint64_t tls_ns;     /* the TLS handshake (implicit or after STARTTLS); 0: none */
	uint64_t greeting_ns; /* connected (or TLS up, implicit TLS) to the 220 */
	uint64_t ehlo_ns;    /* EHLO (or LHLO, HELO) to its reply; both with STARTTLS */
	uint64_t auth_ns;    /* AUTH to its outcome; 0: none */
} smtpbulk_phases_t;

/**
 * The one final result of a message. With a result callback it is valid only during
 * the call; from smtpbulk_poll() it lives until smtpbulk_result_free().
 */
typedef struct smtpbulk_result {
	smtpbulk_status_t status;
	int error;              /* 0, or the code that explains FAILED/TIMED_OUT/CANCELLED */
	smtpbulk_reply_t reply; /* the reply that decided the outcome (final data reply,
	                           or the refusing MAIL/DATA reply); code 0 if none */
	const smtpbulk_rcpt_result_t *rcpts;
	size_t n_rcpts;
	const char *host;       /* the host that last handled the message (NULL if none) */
	uint16_t port;
	int host_index;         /* index into options.hosts, -1 if no host was reached */
	int connection;         /* the connection's index within its host, -1 if none */
	unsigned attempts;      /* transactions tried (1 normally; more after retries) */
	uint64_t latency_ns;    /* from submit to this result */
	uint64_t id;            /* the id smtpbulk_submit() returned through *id_out */
	void *user_data;        /* the message's user_data */
	/* Added after 0.2.0 (the library allocates results, so they may grow): */
	smtpbulk_category_t category; /* what kind of outcome, beside the status */
	smtpbulk_phases_t phases;     /* where its time went */
} smtpbulk_result_t;

/** The category of one reply, as a result decided by it would get (e.g. a refused
 *  recipient of a PARTIAL message: hard_bounce for 550 5.1.1). Throttling is judged
 *  with the built-in patterns. code 0 gives SMTPBULK_CAT_OTHER. */
smtpbulk_category_t smtpbulk_reply_category(const smtpbulk_reply_t *reply);

/**
 * Result callback. Called exactly once per submitted message, on a worker thread —
 * except for messages still queued when smtpbulk_destroy() (or smtpbulk_quit()) stops
 * the engine: their CANCELLED results come on the thread that called it. Keep it short,
 * do not block, do not call smtpbulk_drain(), smtpbulk_destroy() or a blocking
 * smtpbulk_submit() from it (a non-blocking submit is allowed).
 */
typedef void (*smtpbulk_result_cb)(const smtpbulk_result_t *res, void *arg);

/** Debug log sink: level 1..10 as in the seed, one line without newline. Any thread;
 *  called on the thread that logs (a worker, too): keep it fast. */
typedef void (*smtpbulk_log_cb)(int level, const char *line, void *arg);

/*
 * The seed's callbacks. Each names what happened, the host and connection, and the
 * message concerned (never the rest of the queue). They run on the worker thread that
 * owns the connection — except global_hang (the watchdog thread) and pass/fail for
 * messages that end without a connection (host down, destroy: the thread that
 * noticed). Keep them short; they must not call smtpbulk_drain/destroy or a blocking
 * submit.
 */
typedef enum smtpbulk_event_kind {
	SMTPBULK_EV_CONNECT_PASS = 0,   /* a connection became ready, the first time */
	SMTPBULK_EV_CONNECT_FAIL = 1,   /* a connection failed before it was ever ready */
	SMTPBULK_EV_AUTH_PASS = 2,      /* AUTH succeeded on a connection */
	SMTPBULK_EV_AUTH_FAIL = 3,      /* AUTH failed (error: SMTPBULK_EAUTH...) */
	SMTPBULK_EV_RECONNECT_PASS = 4, /* it became ready again after having been ready */
	SMTPBULK_EV_RECONNECT_FAIL = 5, /* it failed before being ready again */
	SMTPBULK_EV_PASS = 6,           /* a message was accepted (DELIVERED or PARTIAL) */
	SMTPBULK_EV_FAIL = 7,           /* a message ended not delivered */
	SMTPBULK_EV_HANG = 8,           /* the watchdog ended a hung connection: once per
	                                   message in flight, or once with none */
	SMTPBULK_EV_GLOBAL_HANG = 9,    /* no server answered for global_timeout_ms */
	SMTPBULK_EV_READ = 10,          /* one reply line from a server */
	SMTPBULK_EV_COMPLETE = 11,      /* everything submitted so far has its result */
	SMTPBULK_EV_RESULT = 12,        /* smtpbulk_event_queue() only: a message's final
	                                   result (it stands for pass and fail there) */
} smtpbulk_event_kind_t;

typedef struct smtpbulk_event {
	smtpbulk_event_kind_t kind;
	const char *host;       /* NULL when no connection is concerned */
	uint16_t port;
	int host_index;         /* -1 when none */
	int connection;         /* the connection's index within its host; -1 when none */
	int error;              /* why: CONNECT_FAIL, RECONNECT_FAIL, FAIL, HANG */
	const smtpbulk_result_t *message; /* PASS, FAIL: the final result; else NULL */
	uint64_t message_id;    /* PASS, FAIL, HANG: the message's id (0 when none) */
	void *user_data;        /* PASS, FAIL, HANG: the message's user_data */
	const char *line;       /* READ: the line, without CRLF (not NUL-terminated) */
	size_t line_len;
} smtpbulk_event_t;

/* What a callback returns: what to do with the connection. Codes on events without a
 * connection (global_hang, complete, messages ending without one) are ignored.
 * "The end of the batch" is the next moment the submission queue is empty: a
 * streaming engine has no batches, so that is when nothing is waiting to be sent —
 * or the moment every live connection of the host is parked, since then nobody else
 * would take what waits. */
enum smtpbulk_cb_code {
	SMTPBULK_CB_DEFAULT = 1,           /* carry on */
	SMTPBULK_CB_REMOVE = 101,          /* finish what is in flight, QUIT, never again */
	SMTPBULK_CB_REMOVE_RECONNECT = 102,/* finish, QUIT; reconnect at the end of the batch */
	SMTPBULK_CB_REMOVE_RESTART = 103,  /* the same, as a new connection from scratch */
	SMTPBULK_CB_PAUSE = 104,           /* stay connected but take no new messages until
	                                      the end of the batch */
	SMTPBULK_CB_RECONNECT = 202,       /* close now (messages in flight go again, free
	                                      of charge) and reconnect at once */
	SMTPBULK_CB_RESTART = 203,         /* the same, as a new connection from scratch */
};

typedef int (*smtpbulk_event_cb)(const smtpbulk_event_t *ev, void *arg);

/* Any may be NULL. Copied by smtpbulk_create(). Reconnect (202, and 102 when it
 * reconnects) resumes the connection's TLS session; restart (203, 103) begins anew with
 * a full handshake. auth_pass / auth_fail: after each AUTH exchange (ev.error says why
 * it failed). */
typedef struct smtpbulk_callbacks {
	size_t struct_size; /* sizeof(smtpbulk_callbacks_t) */
	smtpbulk_event_cb connect_pass, connect_fail, auth_pass, auth_fail, reconnect_pass,
		reconnect_fail, pass, fail, hang, global_hang, read, complete;
	void *arg;
} smtpbulk_callbacks_t;

typedef struct smtpbulk_options {
	size_t struct_size;       /* sizeof(smtpbulk_options_t); smtpbulk_options_init sets it */
	const smtpbulk_host_t *hosts; /* copied by smtpbulk_create() */
	size_t n_hosts;
	unsigned connections;     /* default for hosts that say 0 (the seed's Threads); 0 = 2 */
	const char *hello;        /* default EHLO name for hosts that say NULL; NULL = the
	                             machine's host name */
	unsigned workers;         /* worker threads; 0 = one per CPU this process may use */
	int no_pin;               /* nonzero: do not pin workers to CPUs */
	smtpbulk_backend_t backend;
	size_t queue_bound;       /* most messages waiting in the submission queue; 0 = no
	                             bound (smtpbulk_new(): SMTPBULK_FACADE_QUEUE_BOUND;
	                             SIZE_MAX there for none) */
	unsigned pipeline;        /* the seed's Pipeline: 0 lockstep (a round trip per
	                             command), 1 MAIL+RCPTs+DATA in one write (two round trips
	                             per message), 2 one round trip per message (BDAT with
	                             CHUNKING). 1 and 2 only when the server says PIPELINING.
	                             smtpbulk_options_init sets 2 */
	unsigned window;          /* mode 2 with CHUNKING: transactions in flight on one
	                             connection (1..16); 0 = 8 */
	unsigned max_attempts;    /* transactions per message before it ends FAILED, after
	                             connection trouble or a 4xx reply (a 4xx retry waits
	                             defer_ms, doubled each time); hangs and 421 replies are
	                             not counted here; 0 = 3 */
	unsigned retry_fail;      /* consecutive connection failures before a connection gives
	                             up (the seed's Retry.Fail); 0 = 5 */
	unsigned reconnect_ms;    /* the seed's Sleep.Fail: pause before reconnecting after
	                             a failure; 0 = 100 */
	smtpbulk_result_cb on_result; /* NULL: results queue up for smtpbulk_poll() */
	void *result_arg;
	int discard_results;      /* nonzero and no on_result: results are only counted */
	int debug;                /* 0 off, 5 summary, 7 fails, 8 passes, 10 protocol trace */
	smtpbulk_log_cb on_log;   /* NULL: debug lines go to stderr (only when debug > 0) */
	void *log_arg;
	/* Fields below were added after 0.1.0; a caller built against an older header
	 * passes a smaller struct_size and gets their defaults. */
	int plain_recv;           /* nonzero: each connection receives into a buffer of its
	                             own, instead of io_uring multishot receives into a
	                             per-worker pool of provided buffers (the default where
	                             the kernel has them; epoll always receives plainly) */
	/* The watchdog, a thread that checks every watchdog_tick_ms (0 = 100). */
	unsigned timeout_ms;      /* the seed's Timeout: a connection that waits longer than
	                             this for the server (connect, greeting, any reply) has
	                             hung: its messages are retried elsewhere and it
	                             reconnects after sleep_hang_ms; 0 = 60000. A deadline
	                             for the complete reply: bytes that trickle in do not
	                             restart it (while data is sent, the socket's progress
	                             does) */
	unsigned global_timeout_ms; /* GlobalTimeout: no complete reply on any connection for
	                             this long while messages are in progress: every
	                             connection reconnects; 0 = 120000, or the longest
	                             per-connection timeout when that is longer */
	unsigned watchdog_tick_ms;
	unsigned retry_hang;      /* Retry.Hang: times a message is tried again after hangs
	                             before it ends TIMED_OUT; 0 = 1; SMTPBULK_UNLIMITED */
	unsigned retry_global_hang; /* Retry.GlobalHang: global hangs survived; one more and
	                             every message in progress or queued ends TIMED_OUT (the
	                             count starts again for later ones); 0 = 1; UNLIMITED */
	unsigned sleep_hang_ms;   /* Sleep.Hang: pause before reconnecting after a hang; 0 =
	                             at once */
	unsigned defer_ms;        /* pause before a message refused with 4xx is tried again,
	                             doubled for each further try; 0 = 1000 */
	const smtpbulk_callbacks_t *callbacks; /* the seed's callbacks; NULL = none */
	const char *debug_path;   /* the seed's DebugPath: without on_log, debug lines go to
	                             one file per host and connection: [HOST], [THREAD] (the
	                             connection's index), [YYYY] [MM] [DD] [WK] [hh] [mm] [ss]
	                             (when the file is opened); "default" means
	                             "debug_[HOST]_[THREAD].txt"; missing directories are
	                             made. NULL: stderr. Either way a thread of its own
	                             writes, so a slow disk never stalls sending. */
	/* Per-phase timeouts, each 0 = timeout_ms: waiting for the greeting (connect
	 * included); for the reply to MAIL (and to EHLO, HELO, RSET, QUIT); to RCPT; to
	 * DATA; while the data is being sent (each block the socket takes); for the reply
	 * after the final "." or BDAT LAST. */
	unsigned timeout_greeting_ms, timeout_mail_ms, timeout_rcpt_ms, timeout_data_ms,
		timeout_block_ms, timeout_dot_ms;
	int rfc5321_timeouts;     /* nonzero: phases not set above get RFC 5321 §4.5.3.2's
	                             minimums (greeting 5 min, MAIL 5, RCPT 5, DATA 2, data
	                             block 3, after the final "." 10) instead of timeout_ms */
	/* TLS and AUTH (added after 0.1.0). One TLS context serves the engine: the trust and client
	 * certificate settings below hold for every host; each host may have its own
	 * security (mode, name, credentials). */
	const smtpbulk_security_t *security; /* for hosts that name none; NULL = plaintext,
	                             no AUTH */
	const char *tls_ca_file;  /* PEM file of trusted CAs; NULL with tls_ca_dir NULL =
	                             the system trust store */
	const char *tls_ca_dir;   /* directory of hashed PEM CA certificates */
	const char *tls_cert_file, *tls_key_file; /* client certificate and key (PEM) */
	unsigned tls_min_version; /* 12 (TLS 1.2, also 0) or 13 */
	/* The circuit breaker, per host (added after 0.2.0). A transaction that ends
	 * without a verdict from the server counts: a 4xx to MAIL, DATA or the end of
	 * the data; a 421, a connection lost or garbled in the middle (once per
	 * connection, however many were in flight). Hangs do not: the timeouts and
	 * retry_hang deal with them. One with a verdict (delivered, or
	 * refused for good) sets the count back to zero; 4xx to the recipients alone (a
	 * full mailbox, greylisting) do neither. After breaker_failures in a row
	 * the host takes no new transaction and no new connection for breaker_cooloff_ms;
	 * then one connection carries one message (the probe): a verdict closes the
	 * breaker, a failure opens it again. The breaker_trips-th opening in a row ends
	 * the host: what waits for it ends FAILED with SMTPBULK_EBREAKER. While a breaker
	 * is open the global timeout waits too. Messages keep their own retry counts. */
	unsigned breaker_failures; /* 0 = 20; SMTPBULK_UNLIMITED: no breaker */
	unsigned breaker_cooloff_ms; /* 0 = 30000 */
	unsigned breaker_trips;   /* 0 = 3; SMTPBULK_UNLIMITED: probe for ever */
	/* Connection limits, per connection of every host (added after 0.2.0); 0 = none.
	 * A connection that reaches one says QUIT once its transactions are answered and
	 * connects again when there is something to send. */
	unsigned max_per_conn;    /* MAIL commands one connection carries (a server's
	                             per-session cap it announces, e.g. 100 or 5,000) */
	unsigned max_conn_age_ms; /* how long a connection lives from its connect */
	unsigned idle_close_ms;   /* a connection idle this long says QUIT (under the
	                             server's own idle timeout, so none breaks a send) */
	/* Pacing (added after 0.2.0; smtpbulk_rate_t). A host's rate and the global one
	 * both hold: a message starts when each lets it. */
	smtpbulk_rate_t host_rate;   /* each host's own (hosts may name theirs) */
	smtpbulk_rate_t global_rate; /* over every host together */
	/* Adaptive slow-down. A throttling reply (421, 450, 451 or 452 with the enhanced
	 * code 4.7.x, 4.3.2 or 4.4.5, or a text with one of throttle_patterns) lowers the
	 * host's rate to throttle_factor_pct % of what the server was taking (what it
	 * delivered in the last second, or the rate in force when lower) for
	 * throttle_cooloff_ms; then it climbs by a tenth of that rate per tenth of the
	 * cool-off, up to 90% of the rate at which the server throttled, and stays there
	 * for ten cool-offs without a throttle before it climbs on to host_rate (or
	 * pacing ends, where none is set). The throttled message goes back to the queue,
	 * not counted against max_attempts, throttle_retries times; after that a 4xx is a
	 * 4xx (defer_ms). Hosts slow down each on their own. */
	unsigned throttle_factor_pct; /* 0 = 50; 100 = no adaptive slow-down: a throttling
	                             reply is a 4xx like any other */
	unsigned throttle_cooloff_ms; /* 0 = 60000 */
	unsigned throttle_retries;    /* 0 = 10; SMTPBULK_UNLIMITED */
	const char *const *throttle_patterns; /* NULL-terminated, case-insensitive
	                             substrings of the reply text; NULL = the built-in
	                             list (engine/outcome.h); copied by smtpbulk_create() */
	/* DSN (added after 0.2.0): a message that asks for DSN (smtpbulk_message_t.dsn_*)
	 * and meets a server that does not offer it is sent without the parameters (0),
	 * or, nonzero, ends REJECTED with SMTPBULK_ENODSN (a notification it cannot
	 * have is worth more to the caller than the delivery). */
	int dsn_required;
	/* A message some of whose recipients got a 4xx (a full mailbox, greylisting)
	 * while others were delivered ends PARTIAL (0), or, nonzero, goes again after
	 * defer_ms with those recipients alone, counted against max_attempts; its one
	 * result merges every transaction's (DELIVERED once all are delivered). Either
	 * way a recipient refused with "452 4.5.3 too many recipients" is sent in a
	 * further transaction of the same message at once, not counted: the server takes
	 * only so many per transaction (RFC 5321 §4.5.3.1.10). */
	int retry_temp_rcpts;
	/* Events and results through a file descriptor (added after 0.3.0; see
	 * smtpbulk_event_fd()): nonzero, and callbacks, on_result and discard_results
	 * unset, makes every result and each seed event whose kind is in
	 * event_queue_kinds (1u << SMTPBULK_EV_*; SMTPBULK_EVENTS_ALL) wait in one queue
	 * for the caller's thread instead of calling anything on a worker. */
	int event_queue;
	unsigned event_queue_kinds;
	/* Of those kinds, connect_pass, reconnect_pass and auth_pass only: after such an
	 * event the connection takes no new message until smtpbulk_act() gives its code
	 * (SMTPBULK_CB_DEFAULT to carry on), as if the callback were still running — so a
	 * 101 from connect_pass keeps it from carrying anything, as the seed's would. */
	unsigned event_queue_hold;
} smtpbulk_options_t;

/** Fill *opts with the defaults and set struct_size. */
void smtpbulk_options_init(smtpbulk_options_t *opts);

/* ---------------------------------------------------------------------------------- */
/* Direct API                                                                          */

/**
 * Create an engine. Validates and copies the options and resolves every host
 * (blocking). Nothing is connected until smtpbulk_start().
 * Returns 0 and *out, or -EINVAL, -ENOMEM, SMTPBULK_ENOHOST, SMTPBULK_ERESOLVE,
 * SMTPBULK_EBADPARAM.
 */
int smtpbulk_create(const smtpbulk_options_t *opts, smtpbulk_t **out);

/**
 * Start the workers and connect. Returns 0, or SMTPBULK_EBACKEND when the requested
 * I/O backend cannot run here, or -errno from thread creation.
 */
int smtpbulk_start(smtpbulk_t *sb);

/** The I/O backend the workers run on, "io_uring" or "epoll" (after start). */
const char *smtpbulk_backend_name(const smtpbulk_t *sb);

/** The message flags. */
enum {
	/* The body stays valid and unchanged until the message's result has been delivered,
	 * so the engine sends it from the caller's memory instead of copying it. */
	SMTPBULK_MSG_BORROW_BODY = 1u << 0,
};

typedef struct smtpbulk_message {
	size_t struct_size;        /* sizeof(smtpbulk_message_t) */
	const char *from;          /* envelope sender; "" or "<>" for the null sender */
	const char *const *rcpts;  /* at least one recipient */
	size_t n_rcpts;
	const void *body;          /* the message (headers and body); LF or CRLF line ends */
	size_t body_len;
	int host;                  /* index into options.hosts; -1 = any host */
	unsigned flags;            /* SMTPBULK_MSG_* */
	void *user_data;           /* handed back in the result */
	/* Added after 0.1.0 (a smaller struct_size from an older header means 0): */
	uint64_t start_ns;         /* when the message's latency starts (CLOCK_MONOTONIC
	                              nanoseconds, e.g. when it was scheduled or entered
	                              your own queue); 0 = at smtpbulk_submit() */
	/* Delivery status notifications, DSN (RFC 3461; added after 0.2.0). Sent where the
	 * server offers DSN; where it does not, options.dsn_required decides. */
	unsigned dsn_ret;          /* SMTPBULK_DSN_RET_*: what a bounce carries; 0 = the
	                              server's choice (no RET) */
	const char *envid;         /* ENVID, the id a DSN names the message by; NULL = none.
	                              At most 100 characters once xtext-encoded */
	unsigned dsn_notify;       /* SMTPBULK_NOTIFY_* for every recipient: NEVER alone, or
	                              SUCCESS, FAILURE, DELAY together; 0 = none (the
	                              server's default: failures) */
	const unsigned *rcpt_notify; /* NULL, or n_rcpts values overriding dsn_notify, 0 in
	                              an entry meaning dsn_notify */
	const char *const *orcpts; /* NULL, or n_rcpts original recipients (ORCPT: the
	                              address the mail was first sent to, when a forward
	                              rewrote it), NULL entries for none; an address, or
	                              "type;address" (bare: rfc822). xtext-encoded by us;
	                              at most 500 characters so */
} smtpbulk_message_t;

/* DSN RET (RFC 3461 §4.3). */
enum { SMTPBULK_DSN_RET_FULL = 1, SMTPBULK_DSN_RET_HDRS = 2 };
/* DSN NOTIFY (RFC 3461 §4.1), bits. */
enum {
	SMTPBULK_NOTIFY_NEVER = 1u << 0,
	SMTPBULK_NOTIFY_SUCCESS = 1u << 1,
	SMTPBULK_NOTIFY_FAILURE = 1u << 2,
	SMTPBULK_NOTIFY_DELAY = 1u << 3,
};

/** Submission flags. */
enum {
	SMTPBULK_SUBMIT_NONBLOCK = 1u << 0, /* full bounded queue: return -EAGAIN, not wait */
};

/**
 * Queue a message. Thread-safe; wait-free unless the queue is bounded and full, where it
 * waits for room (or returns -EAGAIN with SMTPBULK_SUBMIT_NONBLOCK). Envelope and body
 * are copied (the body is not when SMTPBULK_MSG_BORROW_BODY is set).
 * After 0 is returned the message gets exactly one result. *id_out (may be NULL)
 * receives the id that its result carries.
 * Errors (no result follows): -EINVAL, -ENOMEM, -EAGAIN, SMTPBULK_EBADADDR,
 * SMTPBULK_EBADPARAM (a DSN value: NOTIFY NEVER with another, an unknown RET, an ENVID
 * or ORCPT too long), SMTPBULK_ENOHOST, SMTPBULK_ESTOPPED.
 */
/*
 * Check an address by the rules smtpbulk_submit() applies (no CR, LF, NUL, '<' or '>'
 * inside, at most 254 octets, one pair of angle brackets around it allowed). Returns
 * its length as it will be sent, without brackets: 0 for the null sender ("" or
 * "<>", valid only as a sender), or SMTPBULK_EBADADDR.
 */
int smtpbulk_check_address(const char *addr);

int smtpbulk_submit(smtpbulk_t *sb, const smtpbulk_message_t *msg, unsigned flags,
		    uint64_t *id_out);

/**
 * Submit msgs[0..n) in order, as n smtpbulk_submit() calls would (flags alike), but
 * wake the workers once, after the last, instead of per message: a caller that makes
 * messages more slowly than the engine sends them otherwise wakes a sleeping worker for
 * each one (measured with smtpbulk send: 2 eventfd writes and 3 ring entries per
 * message). Blocking for room in a bounded queue wakes them first. Returns 0 when all
 * were submitted, else the error of msgs[*done], the first not submitted (those before
 * it are). done may be NULL. Message ids are not returned.
 */
int smtpbulk_submit_batch(smtpbulk_t *sb, const smtpbulk_message_t *msgs, size_t n,
			  unsigned flags, size_t *done);

/**
 * Take one result from the completion queue (only when no result callback is set).
 * Waits up to timeout_ms (0 = do not wait, -1 = forever). Returns 1 and *out, 0 when
 * none arrived in time, or -EINVAL. Free *out with smtpbulk_result_free().
 */
int smtpbulk_poll(smtpbulk_t *sb, smtpbulk_result_t **out, int timeout_ms);

/** Free a result obtained from smtpbulk_poll(). NULL is ignored. */
void smtpbulk_result_free(smtpbulk_result_t *res);

/**
 * Wait until every message submitted so far has its result (delivered to the callback,
 * queued for poll, or counted). timeout_ms -1 = forever. Returns 0 or -ETIMEDOUT.
 */
int smtpbulk_drain(smtpbulk_t *sb, int timeout_ms);

/* ---------------------------------------------------------------------------------- */
/* One-off commands (the seed's missing VRFY, EXPN, HELP, NOOP and ETRN).               */

typedef enum smtpbulk_cmd {
	SMTPBULK_CMD_VRFY = 1, /* VRFY arg: verify a user or mailbox (RFC 5321 §3.5); arg
	                          required */
	SMTPBULK_CMD_EXPN = 2, /* EXPN arg: expand a mailing list (§3.5); arg required */
	SMTPBULK_CMD_HELP = 3, /* HELP [arg] (§4.1.1.8); the reply is often multi-line */
	SMTPBULK_CMD_NOOP = 4, /* NOOP [arg] (§4.1.1.9) */
	SMTPBULK_CMD_ETRN = 5, /* ETRN arg: ask the server to run its queue for a node,
	                          "@domain" or "#queue" (RFC 1985); arg required */
	SMTPBULK_CMD_TURN = 6, /* refused with SMTPBULK_ETURN, never sent (RFC 2645) */
	SMTPBULK_CMD_ATURN = 7, /* refused with SMTPBULK_ETURN, never sent (RFC 2645) */
} smtpbulk_cmd_t;

/* The longest argument smtpbulk_command() takes, so the line stays within RFC 5321's
 * 512 octets. */
#define SMTPBULK_CMD_ARG_MAX 500

/** A one-off command's reply: every line of it. One allocation, freed by
 *  smtpbulk_command_reply_free(). */
typedef struct smtpbulk_command_reply {
	smtpbulk_reply_t reply;   /* code, the first line's enhanced code ("" if none),
	                             and the text of every line joined with '\n' */
	const char *const *lines; /* [n_lines]: each line's text, without its code and
	                             enhanced code */
	size_t n_lines;
} smtpbulk_command_reply_t;

/**
 * Send one command (VRFY, EXPN, HELP, NOOP or ETRN, with arg or NULL) to host — a
 * configured host's name, or "name:port"; NULL: the first host — and return the
 * server's whole reply in *out (free it with smtpbulk_command_reply_free()).
 *
 * The command goes out on a ready connection of the host (past EHLO, TLS and AUTH)
 * between its transactions, never inside a pipelined one: an idle one if there is one;
 * else the host's connections take no new message until one is idle, and one that is
 * closed connects again. The caller blocks (the engine does not) for at most
 * timeout_ms (> 0).
 *
 * Returns 0 when the server answered, whatever the code (the caller reads
 * (*out)->reply.code: 252 "cannot verify", 550, 502 "not implemented" are answers),
 * or a negative code with *out NULL:
 *   SMTPBULK_ETURN      TURN or ATURN: refused, nothing is sent;
 *   SMTPBULK_EBADPARAM  arg holds CR, LF or another control character, is longer
 *                       than SMTPBULK_CMD_ARG_MAX, or is missing (VRFY, EXPN, ETRN);
 *   SMTPBULK_ENOHOST    no such host;  -EINVAL  a NULL argument, an unknown cmd,
 *                       timeout_ms <= 0;
 *   SMTPBULK_ESTOPPED   the engine is not running (never started, stopping, after
 *                       smtpbulk_quit());
 *   SMTPBULK_ETIMEDOUT  no reply within timeout_ms (a connection that had the command
 *                       out is closed: its next reply could not be matched);
 *   SMTPBULK_ECANCELLED the engine stopped (smtpbulk_destroy()) meanwhile;
 *   SMTPBULK_EPROTO, SMTPBULK_ECLOSED, SMTPBULK_EHOSTDOWN, ...: the connection failed
 *                       (a garbled reply, or more than one: it is closed).
 * Any thread may call it, several at once, with the direct API (smtpbulk_create() and
 * smtpbulk_start()) or the facade (smtpbulk_new()); not from a callback, and not
 * racing smtpbulk_destroy()'s start (as for smtpbulk_submit()).
 */
int smtpbulk_command(smtpbulk_t *sb, const char *host, smtpbulk_cmd_t cmd, const char *arg,
		     int timeout_ms, smtpbulk_command_reply_t **out);
/** Free a reply from smtpbulk_command(). NULL is ignored. */
void smtpbulk_command_reply_free(smtpbulk_command_reply_t *reply);

/*
 * Events and results through a file descriptor, for callers whose code must run on a
 * thread of their own (an interpreter, an event loop): nothing of theirs is called on
 * a worker. With options.event_queue, every message's result and each seed event of
 * the kinds in options.event_queue_kinds is queued in the order it happened; the
 * descriptor smtpbulk_event_fd() gives is readable while the queue is not empty (watch
 * it with poll(), epoll, AnyEvent's io watcher...; do not read or close it), and
 * smtpbulk_event_next() takes one item at a time. smtpbulk_poll() is not used then.
 *
 * Pass and fail are not queued as events: a message's SMTPBULK_EV_RESULT item stands
 * for them (delivered or partial: pass; anything else: fail). What a callback would
 * have returned is given with smtpbulk_act(): it takes effect when the connection's
 * worker next turns (at once, for an idle one), after what that connection already
 * has in flight (codes 1xx) or by closing it (2xx) as the callback codes describe —
 * later than a callback's own return would, by the time the caller took to handle
 * the item. The queue holds what the caller has not taken yet: results are bounded
 * by the messages submitted, events by what happened meanwhile (READ: every line).
 */
typedef struct smtpbulk_queued_event {
	smtpbulk_event_t ev;        /* kind and what it names: its host lives until
	                               smtpbulk_destroy(); its line (READ) is
	                               NUL-terminated and lives with the item; message
	                               is result */
	smtpbulk_result_t *result;  /* SMTPBULK_EV_RESULT: the message's result, freed with
	                               the item; NULL for the other kinds */
} smtpbulk_queued_event_t;

#define SMTPBULK_EVENTS_ALL ((1u << SMTPBULK_EV_RESULT) - 1u) /* every seed event kind */

/** The queue's descriptor (>= 0), or -EINVAL when options.event_queue was not set. */
int smtpbulk_event_fd(const smtpbulk_t *sb);
/** The oldest queued item in *out: 1; 0 when none came within timeout_ms (0: do not
 *  wait; -1: wait as long as it takes); -EINVAL without a queue, -ENOMEM (try again:
 *  nothing is lost). One thread at a time.
 *  Free the item with smtpbulk_event_free(). */
int smtpbulk_event_next(smtpbulk_t *sb, smtpbulk_queued_event_t **out, int timeout_ms);
/** Free an item (and its result). NULL is ignored. May outlive smtpbulk_destroy(). */
void smtpbulk_event_free(smtpbulk_queued_event_t *item);
/** Do to connection `connection` of host `host_index` (as an event or result named
 *  them) what a callback returning code would have (SMTPBULK_CB_*), and release it
 *  when an event_queue_hold event holds it; a code not yet applied is replaced by a
 *  later one. 0, or -EINVAL (no such connection, or code is
 *  none of SMTPBULK_CB_*), SMTPBULK_ESTOPPED (the engine is not running). Any thread. */
int smtpbulk_act(smtpbulk_t *sb, int host_index, int connection, int code);

typedef struct smtpbulk_counters {
	uint64_t submitted;     /* messages accepted by smtpbulk_submit() */
	uint64_t completed;     /* messages with their final result */
	uint64_t delivered;     /* of which DELIVERED */
	uint64_t not_delivered; /* of which anything else (PARTIAL included) */
	uint64_t queued;        /* waiting in the submission queue now */
	uint64_t queued_max;    /* the most that ever waited there at once */
	uint64_t requeued;      /* times a message went back to the queue after trouble */
	uint64_t connects;      /* connections that reached the ready state */
	uint64_t connect_fails; /* connection attempts that failed */
	/* Appended fields (a field is never moved or removed): */
	uint64_t timed_out;     /* messages that ended TIMED_OUT */
	uint64_t hangs;         /* connections the watchdog found hung */
	uint64_t global_hangs;  /* times no connection answered for global_timeout_ms */
	uint64_t deferred;      /* 4xx retries scheduled (a message may count several) */
	uint64_t deferred_now;  /* messages waiting for their 4xx retry now */
	uint64_t reconnects;    /* connections started again after one ended */
} smtpbulk_counters_t;

/** A snapshot of the engine's counters. Any thread; cheap. */
void smtpbulk_get_counters(const smtpbulk_t *sb, smtpbulk_counters_t *out);

/** Latency from submit to result, in milliseconds. */
typedef struct smtpbulk_latency {
	uint64_t count;  /* results measured */
	double p50, p90, p99, p999, max;
} smtpbulk_latency_t;

/** One connection's counts (messages that ended on it). */
typedef struct smtpbulk_conn_stats {
	int connection;   /* its index within the host */
	int ready;        /* 1 while connected and past EHLO */
	uint64_t total;   /* messages that ended on it */
	uint64_t pass;    /* of which DELIVERED or PARTIAL */
	uint64_t fail;    /* of which anything else */
	uint64_t hang;    /* times the watchdog found it hung */
	uint64_t deferred; /* 4xx replies it got that sent a message back for a retry */
	uint64_t bytes;   /* body bytes of the messages it passed */
} smtpbulk_conn_stats_t;

typedef struct smtpbulk_host_stats {
	const char *host;
	uint16_t port;
	uint64_t total, pass, fail, hang, deferred, bytes; /* its connections' sums */
	smtpbulk_latency_t latency; /* messages that ended on this host */
	size_t n_connections;
	const smtpbulk_conn_stats_t *connections;
} smtpbulk_host_stats_t;

typedef struct smtpbulk_stats {
	smtpbulk_counters_t totals;
	size_t n_hosts;
	const smtpbulk_host_stats_t *hosts; /* in the order of options.hosts */
	/* Added after 0.1.0 (the library allocates this struct, so it may grow): */
	uint64_t tls_handshakes; /* TLS handshakes completed */
	uint64_t tls_resumed;    /* of which resumed an earlier session */
	smtpbulk_latency_t latency; /* every result, whatever its host (also those that
	                               ended without reaching one) */
	uint64_t breaker_opens;  /* times a host's circuit breaker opened (again) */
	uint64_t breakers_open;  /* hosts whose breaker is open now */
	uint64_t throttled;      /* throttling replies (see throttle_factor_pct) */
	uint64_t slowdowns;      /* times a host slowed down for one */
	uint64_t paced;          /* times a connection waited for a pacer */
	uint64_t hosts_slowed;   /* hosts going slower than configured now */
	/* Added after 0.3.0: */
	const double *pace_per_s; /* [n_hosts]: each host's pace in force now, messages per
	                             second (0: unpaced) — the configured one, or lower
	                             while it is slowed after throttling replies */
} smtpbulk_stats_t;

/**
 * A snapshot of per-host and per-connection counts and latency percentiles (messages
 * that ended without reaching a connection — host down, cancelled — are only in
 * totals). Any thread, no locks taken: it reads counters the workers keep, and costs
 * a pass over the connections and the latency histograms (well under a millisecond
 * for a few hosts): fine to call every second while sending. Returns 0, -EINVAL or
 * -ENOMEM; free *out with smtpbulk_stats_free().
 */
int smtpbulk_get_stats(const smtpbulk_t *sb, smtpbulk_stats_t **out);
void smtpbulk_stats_free(smtpbulk_stats_t *st);

/**
 * Stop and free the engine. Messages not yet done end CANCELLED (their result is
 * delivered before this returns); idle connections say QUIT. Call smtpbulk_drain()
 * first to let them finish. Results not yet polled are freed. NULL is ignored.
 */
void smtpbulk_destroy(smtpbulk_t *sb);

/* ---------------------------------------------------------------------------------- */
/* Net::SMTP::Bulk-style facade. One message is built at a time, from one thread.       */

/**
 * Create and start an engine for "host" or "host:port" ("[v6addr]:port" for IPv6),
 * added in front of opts->hosts. host may be NULL when opts names hosts. opts NULL =
 * defaults, and then results are only counted (set opts->on_result to see them).
 * Returns NULL on error, with errno set to the error negated: the positive errno, or for
 * the library's own codes their positive value (SMTPBULK_ERESOLVE is 1005), so
 * smtpbulk_strerror(-errno) names either.
 */
smtpbulk_t *smtpbulk_new(const char *host, const smtpbulk_options_t *opts);
/** The facade's queue bound when opts->queue_bound is 0: smtpbulk_dataend() waits for
 * room beyond it, so memory stays bounded however many messages the caller has. */
#define SMTPBULK_FACADE_QUEUE_BOUND 10000

/** Begin a message with its envelope sender ("a@b", "<a@b>", or "" for <>). */
int smtpbulk_mail(smtpbulk_t *sb, const char *from);
/** Add a recipient; may be called several times per message. */
int smtpbulk_to(smtpbulk_t *sb, const char *rcpt);
/** Start the message data. */
int smtpbulk_data(smtpbulk_t *sb);
/** Append message data (any line ending; dot-stuffing is done by the engine). */
int smtpbulk_datasend(smtpbulk_t *sb, const void *data, size_t len);
/** End the message: it is queued and starts sending now. */
int smtpbulk_dataend(smtpbulk_t *sb);
/**
 * Wait for every result, then close every connection (QUIT). Returns the number of
 * messages not delivered (0 = all delivered) or a negative error code. id is a label
 * for the debug log (NULL = the current epoch time).
 */
int smtpbulk_quit(smtpbulk_t *sb, const char *id);
/** Free a handle from smtpbulk_new() (same as smtpbulk_destroy()). */
void smtpbulk_free(smtpbulk_t *sb);

#ifdef __cplusplus
}
#endif

#endif /* SMTPBULK_H */
