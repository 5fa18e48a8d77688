/*
 * The epoll backend: the only file that includes sys/epoll.h. It emulates io_uring's
 * completion model on readiness: each operation is tried at once (like io_uring's inline
 * issue) and, when it would block, parked on its fd until epoll says the fd is ready.
 * Every fd is registered edge-triggered once, so a parked operation is retried only on
 * a new edge, and one that was tried first never misses an edge it caused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "grow.h"
#include "io.h"

enum { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV, OP_READ, OP_ACCEPT };

struct op {
	uint8_t kind;
	uint64_t token;
	const struct msghdr *msg; /* OP_SEND */
	void *buf;                /* OP_RECV, OP_READ */
	size_t len;
};

struct fdstate {
	uint8_t registered;
	struct op in;  /* OP_RECV or OP_READ: waits for EPOLLIN */
	struct op out; /* OP_CONNECT or OP_SEND: waits for EPOLLOUT */
};

/*
 * Every accepted operation owes exactly one completion (io.h), including the ones
 * cancel_fd() turns into -ECANCELED. So that this can never fail for want of memory,
 * the ready FIFO always has room for every operation still owed: a submission reserves
 * its slot (growing the FIFO then, where failing is still allowed: -ENOMEM, nothing
 * done), and push() only writes into room that exists. Invariant:
 * rlen <= outstanding <= rcap.
 */
struct sb_io {
	int epfd;
	struct fdstate *fds; /* indexed by fd */
	size_t nfds;
	struct sb_cqe *ready; /* completions not yet handed out, a FIFO */
	size_t rhead, rlen, rcap;
	size_t outstanding; /* accepted operations not yet handed out by wait() */
};

static int ep_create(struct sb_io **out, unsigned entries, char *desc, size_t desc_cap)
{
	(void)entries;
	struct sb_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (io->epfd < 0) {
		int e = -errno;
		free(io);
		return e;
	}
	strncpy(desc, "epoll", desc_cap - 1);
	desc[desc_cap - 1] = '\0';
	*out = io;
	return 0;
}

static void ep_destroy(struct sb_io *io)
{
	if (!io)
		return;
	close(io->epfd);
	free(io->fds);
	free(io->ready);
	free(io);
}

/* Make room for one more outstanding operation's completion, before accepting it. */
static int reserve(struct sb_io *io)
{
	if (io->outstanding < io->rcap)
		return 0;
	struct sb_cqe *r = sb_grow(io->ready, &io->rcap, io->outstanding + 1, sizeof(*r), 64);
	if (!r)
		return -ENOMEM;
	io->ready = r;
	return 0;
}

/* Queue the completion of an accepted operation: its slot was reserved, so this cannot
 * fail. The queued ones plus this one are all outstanding, so rlen < rcap here and a
 * FIFO that ran into its end only has to slide down. */
static void push(struct sb_io *io, uint64_t token, int res)
{
	if (io->rhead + io->rlen == io->rcap) {
		memmove(io->ready, io->ready + io->rhead, io->rlen * sizeof(*io->ready));
		io->rhead = 0;
	}
	struct sb_cqe *e = &io->ready[io->rhead + io->rlen];
	memset(e, 0, sizeof(*e));
	e->token = token;
	e->res = res;
	io->rlen++;
}

/* The state of fd, registered with epoll on first use; NULL with *err set (-EBADF,
 * -ENOMEM, or what epoll_ctl said). */
static struct fdstate *fd_get(struct sb_io *io, int fd, int *err)
{
	if (fd < 0) {
		*err = -EBADF;
		return NULL;
	}
	if ((size_t)fd >= io->nfds) {
		size_t old = io->nfds;
		struct fdstate *f = sb_grow(io->fds, &io->nfds, (size_t)fd + 1, sizeof(*f), 64);
		if (!f) {
			*err = -ENOMEM;
			return NULL;
		}
		memset(f + old, 0, (io->nfds - old) * sizeof(*f));
		io->fds = f;
	}
	struct fdstate *st = &io->fds[fd];
	if (!st->registered) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					 .data.fd = fd};
		if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST) {
			*err = -errno;
			return NULL;
		}
		st->registered = 1;
	}
	return st;
}

/* Try an operation once. Returns 1 when it completed (a CQE was pushed), 0 to wait. */
static int attempt(struct sb_io *io, int fd, struct op *op)
{
	ssize_t r;
	switch (op->kind) {
	case OP_CONNECT: {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
			err = errno;
		if (err == EINPROGRESS || err == EALREADY)
			return 0;
		/* SO_ERROR is 0 both when connected and while still connecting: ask. */
		if (err == 0) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
				if (errno == ENOTCONN)
					return 0;
				err = errno;
			}
		}
		r = -err;
		break;
	}
	case OP_SEND:
		r = sendmsg(fd, op->msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		break;
	case OP_RECV:
		r = recv(fd, op->buf, op->len, MSG_DONTWAIT);
		break;
	case OP_READ:
		r = read(fd, op->buf, op->len);
		break;
	case OP_ACCEPT:
		do /* a peer that gave up already: take the next one */
			r = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		while (r < 0 && errno == ECONNABORTED);
		break;
	default:
		return 0;
	}
	if (r < 0 && op->kind != OP_CONNECT) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EINTR)
			return 0;
		r = -errno;
	}
	push(io, op->token, (int)r);
	op->kind = OP_NONE;
	return 1;
}

/* Accept an operation for a direction's slot: everything that can refuse it comes
 * first, so a refused submission leaves nothing behind and owes no completion. */
static int take(struct sb_io *io, const struct op *slot)
{
	if (slot->kind != OP_NONE)
		return -EBUSY; /* one operation per direction per fd, as the worker promises */
	if (reserve(io) < 0)
		return -ENOMEM;
	io->outstanding++;
	return 0;
}

static int park(struct sb_io *io, int fd, struct op *slot, struct op op)
{
	int rc = take(io, slot);
	if (rc < 0)
		return rc;
	*slot = op;
	attempt(io, fd, slot);
	return 0;
}

static int ep_connect(struct sb_io *io, int fd, const struct sockaddr *sa, socklen_t len,
		      uint64_t token)
{
	int err;
	struct fdstate *st = fd_get(io, fd, &err);
	if (!st)
		return err;
	/* Taken before connect() starts anything, which could not be undone. */
	int rc = take(io, &st->out);
	if (rc < 0)
		return rc;
	if (connect(fd, sa, len) == 0)
		push(io, token, 0);
	else if (errno != EINPROGRESS)
		push(io, token, -errno);
	else
		st->out = (struct op){.kind = OP_CONNECT, .token = token};
	return 0;
}

static int ep_sendmsg(struct sb_io *io, int fd, const struct msghdr *msg, uint64_t token)
{
	int err;
	struct fdstate *st = fd_get(io, fd, &err);
	if (!st)
		return err;
	struct op op = {.kind = OP_SEND, .token = token, .msg = msg};
	return park(io, fd, &st->out, op);
}

static int ep_recv(struct sb_io *io, int fd, void *buf, size_t len, uint64_t token)
{
	int err;
	struct fdstate *st = fd_get(io, fd, &err);
	if (!st)
		return err;
	struct op op = {.kind = OP_RECV, .token = token, .buf = buf, .len = len};
	return park(io, fd, &st->in, op);
}

static int ep_accept(struct sb_io *io, int listen_fd, uint64_t token)
{
	int err;
	struct fdstate *st = fd_get(io, listen_fd, &err);
	if (!st)
		return err;
	struct op op = {.kind = OP_ACCEPT, .token = token};
	return park(io, listen_fd, &st->in, op);
}

static int ep_read_eventfd(struct sb_io *io, int efd, uint64_t *val, uint64_t token)
{
	int err;
	struct fdstate *st = fd_get(io, efd, &err);
	if (!st)
		return err;
	struct op op = {.kind = OP_READ, .token = token, .buf = val, .len = sizeof(*val)};
	return park(io, efd, &st->in, op);
}

static int ep_cancel_fd(struct sb_io *io, int fd)
{
	if (fd < 0 || (size_t)fd >= io->nfds)
		return 0;
	struct fdstate *st = &io->fds[fd];
	if (st->in.kind != OP_NONE)
		push(io, st->in.token, -ECANCELED);
	if (st->out.kind != OP_NONE)
		push(io, st->out.token, -ECANCELED);
	if (st->registered)
		epoll_ctl(io->epfd, EPOLL_CTL_DEL, fd, NULL);
	memset(st, 0, sizeof(*st));
	return 0;
}

static void ep_forget_fd(struct sb_io *io, int fd)
{
	ep_cancel_fd(io, fd);
}

static int ep_wait(struct sb_io *io, struct sb_cqe *out, int max, int timeout_ms)
{
	struct epoll_event evs[128];
	int n = epoll_wait(io->epfd, evs, 128, io->rlen ? 0 : timeout_ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;
		if (fd < 0 || (size_t)fd >= io->nfds)
			continue;
		struct fdstate *st = &io->fds[fd];
		uint32_t e = evs[i].events;
		if ((e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) && st->in.kind)
			attempt(io, fd, &st->in);
		if ((e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && st->out.kind)
			attempt(io, fd, &st->out);
	}
	int k = 0;
	while (k < max && io->rlen) {
		out[k++] = io->ready[io->rhead++];
		io->rlen--;
		io->outstanding--;
	}
	if (io->rlen == 0)
		io->rhead = 0;
	return k;
}

const struct sb_io_backend sb_epoll_backend = {
	.name = "epoll",
	.create = ep_create,
	.destroy = ep_destroy,
	.connect = ep_connect,
	.sendmsg = ep_sendmsg,
	.recv = ep_recv,
	.accept = ep_accept,
	.read_eventfd = ep_read_eventfd,
	.cancel_fd = ep_cancel_fd,
	.forget_fd = ep_forget_fd,
	.wait = ep_wait,
};
