/* Choosing an I/O backend: io_uring, or epoll when the kernel refuses io_uring. */
#include <errno.h>

#include "io.h"
#include "smtpbulk.h"

int sb_io_open(int want, unsigned entries, const struct sb_io_backend **be, struct sb_io **io,
	       char *desc, size_t desc_cap)
{
	int rc = -ENOSYS;
	if (want != SMTPBULK_BACKEND_EPOLL) {
		*be = &sb_io_uring_backend;
		rc = (*be)->create(io, entries, desc, desc_cap);
		if (rc == 0 || want == SMTPBULK_BACKEND_IO_URING)
			return rc == 0 ? 0 : SMTPBULK_EBACKEND;
		/* ENOSYS/EPERM: no io_uring here (seccomp, sysctl); anything else is real. */
		if (rc != -ENOSYS && rc != -EPERM)
			return rc;
	}
	*be = &sb_epoll_backend;
	return (*be)->create(io, entries, desc, desc_cap);
}
