/*
 * The sink's server: N threads, each with its own I/O ring (the engine's io_uring or
 * epoll backend) and its own SO_REUSEPORT listening socket on the same address, so the
 * kernel spreads connections over them. Used by `smtpbulk sink` and, in-process, by
 * `smtpbulk load` without a host.
 */
#ifndef SB_SINK_SERVER_H
#define SB_SINK_SERVER_H

#include <stdint.h>

#include "sink_proto.h"

enum { SINK_TLS_NONE, SINK_TLS_IMPLICIT, SINK_TLS_STARTTLS };

struct sink_options {
	const char *host;      /* address to bind, e.g. "127.0.0.1" or "::1" */
	uint16_t port;         /* 0 = any free port (see sink_server_port) */
	/* Listen on this unix-domain stream socket instead of host:port (NULL: TCP). A
	 * socket file nobody listens on is replaced; any other file there is an error. The
	 * file is removed when the server stops. */
	const char *unix_path;
	uint32_t max_rate;     /* MAIL commands admitted per second, all threads; 0 = any */
	unsigned threads;      /* 0 = 1 */
	int backend;           /* an smtpbulk_backend_t */
	uint64_t max_messages; /* stop after this many accepted messages; 0 = never */
	int tls;               /* SINK_TLS_*; cfg.starttls is set from it */
	const char *cert_file, *key_file; /* PEM, required with tls */
	struct sink_cfg cfg;
};

/* Live totals (any thread may read them at any time). */
struct sink_totals {
	uint64_t connections, messages, recipients, bytes, rejected, auth_ok, auth_failed;
	uint64_t tls_handshakes, tls_resumed, tls_failed;
	uint64_t throttled, lmtp_rcpt_failed;
};

struct sink_server;

/* Bind, listen and start the threads. Returns 0 or -errno / SMTPBULK_E*; *why says what
 * (static, or the server's until sink_server_stop; for a failed start: until the next). */
int sink_server_start(const struct sink_options *o, struct sink_server **out, const char **why);
uint16_t sink_server_port(const struct sink_server *s);
const char *sink_server_backend(const struct sink_server *s);
void sink_server_totals(struct sink_server *s, struct sink_totals *t);
/* Messages accepted in each second since the start, by the second their MAIL was
 * accepted (sink_rate.h): up to cap entries, through the last second with one; returns
 * how many were written. */
size_t sink_server_per_second(struct sink_server *s, uint64_t *out, size_t cap);
/* 1 once max_messages was reached. */
int sink_server_done(struct sink_server *s);
/* CPU seconds the server's threads have used so far (from /proc; 10 ms resolution). */
void sink_server_cpu(struct sink_server *s, double *user_s, double *sys_s);
/* Stop the threads and close every connection, keeping the counts for reading: after
 * it the totals are final. Optional before sink_server_stop. */
void sink_server_halt(struct sink_server *s);
/* Stop the threads (unless halted), close every connection, remove a unix socket's
 * file, free. */
void sink_server_stop(struct sink_server *s);

#endif
