/*
 * TLS over memory buffers, with wolfSSL. The socket I/O stays with the caller's ring
 * (io_uring or epoll): ciphertext that arrived is pushed into the connection's inbox,
 * wolfSSL's I/O callbacks read it from there and append what it writes to an outbox
 * that the caller sends. Client (the engine's workers) and server (the sink) alike.
 *
 * Ownership: a WOLFSSL_CTX is built once and then only read, by any thread (wolfSSL
 * allows sharing it); a struct sb_tls belongs to the one thread that owns its
 * connection.
 *
 * Functions return 0 (or a count) or a negative code: -ENOMEM, SMTPBULK_ETLS,
 * SMTPBULK_ECERT, SMTPBULK_ECLOSED, SMTPBULK_ETLSCONFIG.
 */
#ifndef SB_TLS_H
#define SB_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct WOLFSSL_CTX;
struct WOLFSSL;
struct WOLFSSL_SESSION;

struct sb_tls_ctx_cfg {
	int server;
	int load_trust;        /* client: some connection verifies: load the CAs */
	const char *ca_file, *ca_dir; /* NULL both: the system trust store */
	const char *cert_file, *key_file; /* server: required; client: optional */
	unsigned min_version;  /* 12 or 13 (0 = 12) */
};

/* Build a context. why (may be NULL) receives what went wrong. */
int sb_tls_ctx_new(const struct sb_tls_ctx_cfg *cfg, struct WOLFSSL_CTX **out, char *why,
		   size_t why_cap);
void sb_tls_ctx_free(struct WOLFSSL_CTX *ctx);

struct sb_tls_buf {
	char *p;
	size_t off, len, cap; /* bytes p[off..len) are waiting */
};

struct sb_tls {
	struct WOLFSSL *ssl;
	struct sb_tls_buf in;   /* ciphertext received, not yet read by wolfSSL */
	struct sb_tls_buf out;  /* ciphertext being sent: not touched while a send is out */
	struct sb_tls_buf pend; /* ciphertext written since; becomes out when out is done */
	uint8_t peer_closed;    /* the socket saw EOF: no more input will come */
	uint8_t up;             /* the handshake finished */
	uint8_t shut;           /* close_notify was written */
	uint8_t got_data;       /* application data was read since the handshake */
	int wolf_err;           /* the wolfSSL error behind the last failure (for logs) */
};

/* Begin a client connection: name (may be NULL) is sent as SNI and, with verify,
 * checked against the certificate; resume (may be NULL) is a session to resume. */
int sb_tls_client(struct sb_tls *t, struct WOLFSSL_CTX *ctx, const char *name, int verify,
		  struct WOLFSSL_SESSION *resume);
/* Begin a server connection. */
int sb_tls_server(struct sb_tls *t, struct WOLFSSL_CTX *ctx);
/* Run the handshake as far as the input allows: 1 done, 0 more input needed, <0. */
int sb_tls_handshake(struct sb_tls *t);
/* Ciphertext arrived. */
int sb_tls_push(struct sb_tls *t, const void *p, size_t n);
/* Room to receive ciphertext into directly (at least 4 KB), then sb_tls_received(). */
char *sb_tls_rspace(struct sb_tls *t, size_t *cap);
void sb_tls_received(struct sb_tls *t, size_t n);
/* Plaintext out: > 0 bytes, 0 when more input is needed, SMTPBULK_ECLOSED when the
 * peer closed (close_notify or EOF), or another error. */
int sb_tls_read(struct sb_tls *t, char *buf, size_t cap);
/* Input is waiting: ciphertext not yet read, or plaintext wolfSSL holds decrypted. */
int sb_tls_has_input(struct sb_tls *t);
/* Encrypt iov[0..n) whole into the outbox; returns the bytes taken, or an error. */
long sb_tls_writev(struct sb_tls *t, const struct iovec *iov, int n);
/* The ciphertext to send next (pointer and length; 0 when none). Stable until
 * sb_tls_sent(). */
size_t sb_tls_outgoing(struct sb_tls *t, const char **p);
void sb_tls_sent(struct sb_tls *t, size_t n);
static inline size_t sb_tls_unsent(const struct sb_tls *t)
{
	return (t->out.len - t->out.off) + (t->pend.len - t->pend.off);
}
/* Give back the memory of empty buffers (an idle connection keeps none); in only with
 * keep_in == 0: a receive in flight may be writing into it. */
void sb_tls_trim(struct sb_tls *t, int keep_in, int keep_out);
/* Write close_notify (once). */
void sb_tls_close_notify(struct sb_tls *t);
/* The session to resume later (a reference the caller frees with sb_tls_session_free),
 * or NULL when it cannot be resumed. */
struct WOLFSSL_SESSION *sb_tls_session(struct sb_tls *t);
void sb_tls_session_free(struct WOLFSSL_SESSION *s);
int sb_tls_resumed(const struct sb_tls *t);
/* "TLSv1.3 TLS_AES_128_GCM_SHA256" */
const char *sb_tls_version(const struct sb_tls *t);
const char *sb_tls_cipher(const struct sb_tls *t);
/* What wolf_err means, for a log line. */
void sb_tls_describe(int wolf_err, char *buf, size_t cap);
/* A thread that ran TLS handshakes is about to end: wolfSSL keeps a per-thread ECC
 * cache (FP_ECC in Debian's build) that only that thread can free. */
void sb_tls_thread_end(void);
/* Free everything; t may be reused after. */
void sb_tls_free(struct sb_tls *t);

#endif
