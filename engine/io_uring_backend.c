/* The io_uring backend: the only file that includes liburing.h. */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

struct sb_io {
	struct io_uring ring;
	unsigned pending; /* SQEs queued since the last submit */
};

/* Tokens of our own operations whose completions the worker must not see. */
#define TOKEN_INTERNAL UINT64_MAX

static int ur_create(struct sb_io **out, unsigned entries, char *desc, size_t desc_cap)
{
	static const struct {
		unsigned flags;
		const char *name;
	} tries[] = {
		/* Only this thread submits, and completions are run when it waits:
		 * the cheapest mode, kernel 6.1+. */
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		 "SINGLE_ISSUER|DEFER_TASKRUN"},
		{IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
		{0, "plain"},
	};
	struct sb_io *io = calloc(1, sizeof(*io));
	int rc = -EINVAL;
	if (!io)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i].flags;
		p.cq_entries = entries * 2;
		p.flags |= IORING_SETUP_CQSIZE;
		rc = io_uring_queue_init_params(entries, &io->ring, &p);
		if (rc == 0) {
			snprintf(desc, desc_cap, "io_uring (%s)", tries[i].name);
			*out = io;
			return 0;
		}
		/* Refused outright (seccomp, sysctl io_uring_disabled): no point in trying
		 * other flags. -EINVAL means an older kernel: try fewer flags. */
		if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES)
			break;
	}
	free(io);
	return rc == -EACCES ? -EPERM : rc;
}

static void ur_destroy(struct sb_io *io)
{
	if (!io)
		return;
	io_uring_queue_exit(&io->ring);
	free(io);
}

static struct io_uring_sqe *get_sqe(struct sb_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (!sqe) { /* the SQ is full: hand it to the kernel and take a fresh slot */
		io_uring_submit(&io->ring);
		io->pending = 0;
		sqe = io_uring_get_sqe(&io->ring);
	}
	if (sqe)
		io->pending++;
	return sqe;
}

static int ur_connect(struct sb_io *io, int fd, const struct sockaddr *sa, socklen_t len,
		      uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_connect(sqe, fd, sa, len);
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static int ur_sendmsg(struct sb_io *io, int fd, const struct msghdr *msg, uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static int ur_recv(struct sb_io *io, int fd, void *buf, size_t len, uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static int ur_accept(struct sb_io *io, int listen_fd, uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_accept(sqe, listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static int ur_read_eventfd(struct sb_io *io, int efd, uint64_t *val, uint64_t token)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, efd, val, sizeof(*val), 0);
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static int ur_cancel_fd(struct sb_io *io, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, TOKEN_INTERNAL);
	return 0;
}

static void ur_forget_fd(struct sb_io *io, int fd)
{
	(void)io, (void)fd; /* the ring keeps no per-fd state */
}

static int ur_wait(struct sb_io *io, struct sb_cqe *out, int max, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts, *tsp = NULL;
	unsigned head, seen = 0;
	int n = 0, rc;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		tsp = &ts;
	}
	/* One syscall submits everything queued this iteration and waits. */
	rc = io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, tsp, NULL);
	io->pending = 0;
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
		return rc;
	io_uring_for_each_cqe(&io->ring, head, cqe)
	{
		if (n >= max)
			break;
		seen++;
		if (cqe->user_data == TOKEN_INTERNAL)
			continue;
		out[n].token = cqe->user_data;
		out[n].res = cqe->res;
		n++;
	}
	io_uring_cq_advance(&io->ring, seen);
	return n;
}

const struct sb_io_backend sb_io_uring_backend = {
	.name = "io_uring",
	.create = ur_create,
	.destroy = ur_destroy,
	.connect = ur_connect,
	.sendmsg = ur_sendmsg,
	.recv = ur_recv,
	.accept = ur_accept,
	.read_eventfd = ur_read_eventfd,
	.cancel_fd = ur_cancel_fd,
	.forget_fd = ur_forget_fd,
	.wait = ur_wait,
};
