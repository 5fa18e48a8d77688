/* The io_uring backend: the only file that includes liburing.h. */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "io.h"

/* The provided-buffer pool for multishot receives: one per ring, shared by all of the
 * worker's connections, so an idle connection holds no receive buffer. SMTP replies
 * to a client are short (a pipelined window's replies fit in well under 2 KB); a
 * longer read just spans several buffers. 1024 buffers let that many connections
 * deliver at once before the pool runs dry (then the receive ends with -ENOBUFS and
 * is armed again). Pages the kernel never writes cost no memory. */
#define BR_ENTRIES 1024
#define BR_BUF 2048
#define BR_GROUP 0

struct sb_io {
	struct io_uring ring;
	unsigned pending; /* SQEs queued since the last submit */
	struct io_uring_buf_ring *br; /* NULL until the first recv_multi */
	char *bufs;                   /* BR_ENTRIES * BR_BUF */
	int br_failed;                /* the kernel has no buffer rings: never try again */
	int br_returned;              /* buffers added since the last advance */
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
	if (io->br)
		munmap(io->br, BR_ENTRIES * sizeof(struct io_uring_buf));
	if (io->bufs)
		munmap(io->bufs, (size_t)BR_ENTRIES * BR_BUF);
	free(io);
}

/* liburing 2.3 has no io_uring_setup_buf_ring(): map the ring ourselves and register
 * it (kernel 5.19+). */
static int pool_setup(struct sb_io *io)
{
	size_t ring_sz = BR_ENTRIES * sizeof(struct io_uring_buf);
	void *r = mmap(NULL, ring_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *b = mmap(NULL, (size_t)BR_ENTRIES * BR_BUF, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED || b == MAP_FAILED)
		goto fail;
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)r;
	reg.ring_entries = BR_ENTRIES;
	reg.bgid = BR_GROUP;
	if (io_uring_register_buf_ring(&io->ring, &reg, 0) < 0)
		goto fail;
	io->br = r;
	io->bufs = b;
	io_uring_buf_ring_init(io->br);
	for (unsigned i = 0; i < BR_ENTRIES; i++)
		io_uring_buf_ring_add(io->br, io->bufs + (size_t)i * BR_BUF, BR_BUF, (unsigned short)i,
				      io_uring_buf_ring_mask(BR_ENTRIES), (int)i);
	io_uring_buf_ring_advance(io->br, BR_ENTRIES);
	return 0;
fail:
	if (r != MAP_FAILED)
		munmap(r, ring_sz);
	if (b != MAP_FAILED)
		munmap(b, (size_t)BR_ENTRIES * BR_BUF);
	io->br_failed = 1;
	return -EOPNOTSUPP;
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

static int ur_recv_multi(struct sb_io *io, int fd, uint64_t token)
{
	if (!io->br && (io->br_failed || pool_setup(io) < 0))
		return -EOPNOTSUPP;
	struct io_uring_sqe *sqe = get_sqe(io);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BR_GROUP;
	io_uring_sqe_set_data64(sqe, token);
	return 0;
}

static void ur_buf_return(struct sb_io *io, uint16_t bid)
{
	if (!io->br || bid >= BR_ENTRIES)
		return;
	/* Published to the kernel in one step at the next wait. */
	io_uring_buf_ring_add(io->br, io->bufs + (size_t)bid * BR_BUF, BR_BUF, bid,
			      io_uring_buf_ring_mask(BR_ENTRIES), io->br_returned++);
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
	if (io->br_returned) {
		io_uring_buf_ring_advance(io->br, io->br_returned);
		io->br_returned = 0;
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
		out[n].buf = NULL;
		out[n].bid = 0;
		out[n].more = (cqe->flags & IORING_CQE_F_MORE) != 0;
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			out[n].bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			out[n].buf = io->bufs + (size_t)out[n].bid * BR_BUF;
		}
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
	.recv_multi = ur_recv_multi,
	.buf_return = ur_buf_return,
	.accept = ur_accept,
	.read_eventfd = ur_read_eventfd,
	.cancel_fd = ur_cancel_fd,
	.forget_fd = ur_forget_fd,
	.wait = ur_wait,
};
