#include "tool_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include "smtpbulk.h"

int tool_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int tool_seconds_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out_ms)
{
	char *end;
	if (!s || ((*s < '0' || *s > '9') && *s != '.'))
		return -1;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !(v >= 0) || v * 1000.0 > (double)max_ms)
		return -1;
	uint64_t ms = (uint64_t)(v * 1000.0 + 0.5);
	if (ms < min_ms)
		return -1;
	*out_ms = ms;
	return 0;
}

int tool_backend(const char *s, int *out)
{
	if (!strcmp(s, "auto"))
		*out = SMTPBULK_BACKEND_AUTO;
	else if (!strcmp(s, "io_uring"))
		*out = SMTPBULK_BACKEND_IO_URING;
	else if (!strcmp(s, "epoll"))
		*out = SMTPBULK_BACKEND_EPOLL;
	else
		return -1;
	return 0;
}

int tool_hostport(const char *s, char *host, size_t cap, uint16_t *port, int allow_zero)
{
	const char *h = s, *colon;
	size_t hl;
	uint64_t p;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -1;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -1;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= cap || tool_u64(colon + 1, allow_zero ? 0 : 1, 65535, &p))
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int tool_raise_nofile(uint64_t need, uint64_t *got)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -1;
	if (rl.rlim_cur >= need) {
		*got = rl.rlim_cur;
		return 0;
	}
	if (rl.rlim_max < need) { /* root may raise the hard limit (up to fs.nr_open) */
		struct rlimit want = {need, need};
		if (setrlimit(RLIMIT_NOFILE, &want) == 0) {
			*got = need;
			return 0;
		}
	}
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	*got = rl.rlim_cur;
	return rl.rlim_cur >= need ? 0 : -1;
}

uint64_t tool_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
