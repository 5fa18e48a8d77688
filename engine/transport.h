/*
 * Transports: what lies between a connection's socket and its protocol end (the client
 * session, or the sink's server protocol). Two implementations behind one table, in
 * the manner of redis' ConnectionType: plaintext, where the protocol's bytes go to the
 * socket as they are (zero copy), and TLS (wolfSSL over memory buffers, tls.h), which
 * encrypts on the way out and decrypts on the way in. The socket I/O itself stays with
 * the caller's ring (io_uring or epoll): a transport only says what to send and where
 * to receive, and takes what was sent and received. The connection layer and the sink
 * drive both through the same calls and never ask which one they have.
 *
 * The protocol end is described by struct sb_endpoint: what it has to say, where it
 * takes input, and how much.
 *
 * Ownership: a transport belongs to the thread that owns its connection.
 */
#ifndef SB_TRANSPORT_H
#define SB_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "io.h"

struct sb_tls;
struct WOLFSSL_CTX;
struct WOLFSSL_SESSION;

/* The protocol end of a connection, as a transport sees it. ep is its own pointer. */
struct sb_endpoint {
	/* The plaintext it has to send now: fills iov, returns the count (0: none). */
	int (*pending)(void *ep, struct iovec *iov, int max);
	/* n bytes of what pending() gave are taken (sent, or encrypted). It may have
	 * more to say afterwards. */
	void (*taken)(void *ep, size_t n);
	/* Where a socket may receive plaintext for it directly, and how much (plaintext
	 * transport); NULL when it cannot have a buffer (out of memory). */
	char *(*space)(void *ep, size_t *cap);
	/* n bytes were received at space(). */
	void (*arrived)(void *ep, size_t n);
	/* How much plaintext it takes now through feed() (SIZE_MAX: whatever comes). */
	size_t (*room)(void *ep);
	/* n <= room() bytes of plaintext from elsewhere (a pooled receive buffer, TLS):
	 * it takes them all, copying what it keeps. */
	void (*feed)(void *ep, const char *p, size_t n);
	/* 0 once it wants no more input (its connection is over). */
	int (*open)(void *ep);
	/* 1 when it has said its last word (QUIT sent, or the server's goodbye): TLS
	 * writes close_notify behind it. */
	int (*finished)(void *ep);
	/* TLS only: the handshake is done (the TLS object says how). */
	void (*tls_up)(void *ep, const struct sb_tls *t);
};

struct sb_transport;

struct sb_transport_ops {
	const char *name;
	/* Move what the endpoint has to say toward the wire (TLS: encrypt, at most a
	 * bounded amount ahead of the socket; plaintext: nothing to do). 0 or < 0. */
	int (*flush)(struct sb_transport *x);
	/* The bytes to put on the wire now: fills iov, returns the count (0: none). They
	 * stay valid until sent(). */
	int (*wire)(struct sb_transport *x, struct iovec *iov, int max);
	/* The socket took n bytes of them. 0 or < 0. */
	int (*sent)(struct sb_transport *x, size_t n);
	/* Where a socket receive goes, and how much (cap 0: no room now); NULL when
	 * there is no memory for it. */
	char *(*recv_space)(struct sb_transport *x, size_t *cap);
	/* n bytes came from the socket: at recv_space() when buf is NULL, else in buf (the
	 * caller reuses it after). Passes the plaintext up as far as the endpoint takes
	 * it. 0 or < 0. */
	int (*bytes_in)(struct sb_transport *x, const char *buf, size_t n);
	/* The endpoint has room again: take up input that waited for it. 0 or < 0. */
	int (*resume)(struct sb_transport *x);
	/* The socket saw the end of the stream: what is buffered still counts. Returns
	 * the error the connection ends with (the endpoint may have ended it already). */
	int (*eof)(struct sb_transport *x);
	/* Bytes taken from the endpoint that the socket has not taken yet. */
	size_t (*unsent)(const struct sb_transport *x);
	/* The connection is idle: give back buffers that are empty (but not one a
	 * receive or send in flight uses). */
	void (*idle)(struct sb_transport *x, int recv_busy, int send_busy);
};

struct sb_transport {
	const struct sb_transport_ops *ops;
	const struct sb_endpoint *ep_ops;
	void *ep;
	struct sb_tls *tls;     /* TLS: its state (made at the switch, freed at close) */
	char *scratch;          /* TLS: where plaintext is decrypted to (the caller's) */
	size_t scratch_cap;
	const char *why;        /* after a failure or a close: what happened, for the log
	                           (a constant string; NULL: nothing to add) */
};

/* Plaintext (also what sb_transport_close() returns to). */
void sb_transport_plain(struct sb_transport *x, const struct sb_endpoint *ep_ops, void *ep);
/* Switch to TLS as a client: name is sent as SNI and, with verify, checked; resume (may
 * be NULL) is a session to resume. scratch (cap >= 4 KB) receives decrypted plaintext
 * and must outlive the connection (a per-thread buffer). The ClientHello is written by
 * the next flush(). 0 or < 0 (the transport stays plaintext). */
int sb_transport_tls_client(struct sb_transport *x, struct WOLFSSL_CTX *ctx, const char *name,
			    int verify, struct WOLFSSL_SESSION *resume, char *scratch,
			    size_t cap);
/* Switch to TLS as a server. */
int sb_transport_tls_server(struct sb_transport *x, struct WOLFSSL_CTX *ctx, char *scratch,
			    size_t cap);
/* 1 when it encrypts. */
static inline int sb_transport_secure(const struct sb_transport *x)
{
	return x->tls != NULL;
}
/* The TLS session to resume later (a reference for sb_tls_session_free), or NULL. */
struct WOLFSSL_SESSION *sb_transport_session(struct sb_transport *x);
/* Free what a TLS connection held; back to plaintext. */
void sb_transport_close(struct sb_transport *x);
/* What went wrong, for a log line ("TLS handshake failed: ..."). */
void sb_transport_describe(const struct sb_transport *x, char *buf, size_t cap);

/*
 * Submit one send of the wire bytes (the one place that fills a msghdr): mh and iov
 * (max entries) must stay valid until its completion. Returns 1 when a send went out,
 * 0 when there was nothing to send, < 0 when the backend refused it.
 */
int sb_transport_send(struct sb_transport *x, const struct sb_io_backend *be, struct sb_io *io,
		      int fd, struct msghdr *mh, struct iovec *iov, int max, uint64_t token);

/*
 * The connection ends now, by the client's choice, with a few wire bytes left (the
 * fatal alert wolfSSL queued when it refused the server's certificate, RFC 8446
 * §6.2): one non-blocking send of them, outside the ring, best effort — the socket of
 * a connection that just did its handshake has room for a record. Only when no send
 * is in flight. Returns 1 sent, 0 nothing to send, -errno.
 */
int sb_transport_send_last(struct sb_transport *x, int fd);

#endif
