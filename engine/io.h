/*
 * The workers' I/O interface: completion-based, modelled on io_uring. Two backends
 * implement it: io_uring (io_uring_backend.c) and epoll (epoll_backend.c), which emulates
 * completions on top of readiness. The worker loop and the session never know which.
 *
 * Ownership: an sb_io belongs to the worker thread that created it; no other thread
 * may call into it (io_uring's SINGLE_ISSUER makes this a kernel-checked rule).
 *
 * Operations complete exactly once with a struct sb_cqe carrying their token and a
 * result in io_uring's convention (bytes, 0, or -errno), cancelled ones included.
 * Buffers, sockaddrs and msghdrs passed in must stay valid until the completion.
 */
#ifndef SB_IO_H
#define SB_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sb_cqe {
	uint64_t token;
	int res;
	/* recv_multi completions only (NULL/0 otherwise): */
	const char *buf;  /* res bytes the kernel put in a pooled buffer; hand it back with
	                     buf_return(bid) once read */
	uint16_t bid;
	uint8_t more;     /* the multishot receive is still armed: more completions follow */
};

struct sb_io;

struct sb_io_backend {
	const char *name;
	/* Create in the calling (worker) thread. desc receives what was chosen, for the
	 * debug log. -ENOSYS/-EPERM mean "not allowed here": try another backend. */
	int (*create)(struct sb_io **out, unsigned entries, char *desc, size_t desc_cap);
	void (*destroy)(struct sb_io *io);
	int (*connect)(struct sb_io *io, int fd, const struct sockaddr *sa, socklen_t len,
		       uint64_t token);
	int (*sendmsg)(struct sb_io *io, int fd, const struct msghdr *msg, uint64_t token);
	int (*recv)(struct sb_io *io, int fd, void *buf, size_t len, uint64_t token);
	/* Optional (NULL when the backend has none): a multishot receive into the
	 * backend's pool of provided buffers, so a connection holds no receive buffer of
	 * its own while it waits. Completions carry buf/bid and stay armed while
	 * cqe.more; one without more ends it (res -ENOBUFS: the pool ran dry — arm again
	 * after returning buffers). -EOPNOTSUPP when this ring has no pool. */
	int (*recv_multi)(struct sb_io *io, int fd, uint64_t token);
	/* Give a pooled buffer back (after its bytes were consumed). */
	void (*buf_return)(struct sb_io *io, uint16_t bid);
	/* Accept a connection on a listening socket: res is the new (non-blocking,
	 * close-on-exec) fd or -errno. For servers (the sink). */
	int (*accept)(struct sb_io *io, int listen_fd, uint64_t token);
	/* Read 8 bytes from an eventfd into *val when it is signalled. */
	int (*read_eventfd)(struct sb_io *io, int efd, uint64_t *val, uint64_t token);
	/* Cancel every operation on fd; each still completes (with -ECANCELED or its
	 * result if it had already finished). Call before closing fd. */
	int (*cancel_fd)(struct sb_io *io, int fd);
	/* fd is about to be closed, with no operation pending on it: forget it (the next
	 * socket may reuse the number). */
	void (*forget_fd)(struct sb_io *io, int fd);
	/* Submit what was queued and wait up to timeout_ms (-1 = forever, 0 = poll) for at
	 * least one completion. Returns the number written to out (<= max), or -errno. */
	int (*wait)(struct sb_io *io, struct sb_cqe *out, int max, int timeout_ms);
};

/*
 * Open the backend the caller wants (an smtpbulk_backend_t): io_uring, falling back to
 * epoll under SMTPBULK_BACKEND_AUTO when io_uring is refused. Call in the thread that
 * will use it. Returns 0, SMTPBULK_EBACKEND, or -errno.
 */
int sb_io_open(int want, unsigned entries, const struct sb_io_backend **be, struct sb_io **io,
	       char *desc, size_t desc_cap);

extern const struct sb_io_backend sb_io_uring_backend;
extern const struct sb_io_backend sb_epoll_backend;

#endif
