#include "tool_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
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

int tool_rate(const char *s, unsigned *messages, unsigned *per_ms, unsigned *burst)
{
	char num[32];
	uint64_t n, b = 1;
	size_t len = strcspn(s, "/:");
	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len);
	num[len] = 0;
	if (tool_u64(num, 1, UINT32_MAX, &n))
		return -1;
	s += len;
	*per_ms = 1000;
	if (*s == '/') {
		if (s[1] == 's')
			*per_ms = 1000;
		else if (s[1] == 'm')
			*per_ms = 60000;
		else if (s[1] == 'h')
			*per_ms = 3600000;
		else
			return -1;
		s += 2;
	}
	if (*s == ':') {
		if (tool_u64(s + 1, 1, UINT32_MAX, &b))
			return -1;
	} else if (*s) {
		return -1;
	}
	*messages = (unsigned)n;
	*burst = (unsigned)b;
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

static int host_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

int tool_target_ok(const char *s)
{
	char host[256];
	const char *end;
	if (strncmp(s, "unix:", 5) == 0) /* an absolute path that fits a sockaddr_un */
		return s[5] == '/' && strlen(s + 5) < 108 ? 0 : -1;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		size_t hl = rb ? (size_t)(rb - s - 1) : 0;
		struct in6_addr a6;
		if (!rb || hl == 0 || hl >= sizeof(host))
			return -1;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -1;
		end = rb + 1;
	} else {
		end = strchr(s, ':');
		if (!end)
			end = s + strlen(s);
		size_t hl = (size_t)(end - s), label = 0;
		if (hl == 0 || hl > 254 || (hl == 254 && s[253] != '.'))
			return -1;
		for (size_t i = 0; i < hl; i++) {
			if (s[i] == '.') {
				if (label == 0)
					return -1; /* "a..b", ".a" */
				label = 0;
			} else if (!host_label_char(s[i]) || ++label > 63) {
				return -1;
			}
		}
	}
	if (*end == '\0')
		return 0;
	uint64_t port;
	return *end == ':' && tool_u64(end + 1, 1, 65535, &port) == 0 ? 0 : -1;
}

int tool_split_target(const char *s, char *host, size_t cap, uint16_t *port)
{
	uint64_t p = 25;
	const char *end;
	size_t hl;
	if (tool_target_ok(s) != 0)
		return -1;
	if (strncmp(s, "unix:", 5) == 0) {
		end = s + strlen(s);
		hl = strlen(s);
	} else if (s[0] == '[') {
		end = strchr(s, ']') + 1;
		s++;
		hl = (size_t)(end - 1 - s);
	} else {
		end = strchr(s, ':');
		if (!end)
			end = s + strlen(s);
		hl = (size_t)(end - s);
	}
	if (hl >= cap)
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (*end == ':' && tool_u64(end + 1, 1, 65535, &p))
		return -1;
	*port = (uint16_t)p;
	return 0;
}

void tool_vline(FILE *f, const char *prefix, const char *fmt, va_list ap)
{
	char buf[2048];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = sizeof(buf) - 1;
	fputs(prefix, f);
	for (int i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c == '\r')
			fputs("\\r", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputc('\n', f);
}
