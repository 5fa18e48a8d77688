/* Argument parsing and small helpers shared by the smtpbulk subcommands. The parsers
 * return 0 or -1. */
#ifndef SB_TOOL_UTIL_H
#define SB_TOOL_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* A decimal number in [min, max]; no sign, no trailing junk. */
int tool_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Seconds, decimals allowed ("0.25"), in [min_ms, max_ms] once in milliseconds. */
int tool_seconds_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out_ms);
/* A rate "N[/s|/m|/h][:BURST]": N (1..2^32-1) messages per second (the default),
 * minute or hour, and a burst (1..2^32-1, default 1). */
int tool_rate(const char *s, unsigned *messages, unsigned *per_ms, unsigned *burst);
/* "auto", "io_uring" or "epoll" -> an smtpbulk_backend_t. */
int tool_backend(const char *s, int *out);
/* "host:port", "[v6]:port" (port required); port 0 allowed only when allow_zero. */
int tool_hostport(const char *s, char *host, size_t cap, uint16_t *port, int allow_zero);

/* A target as HOST[:PORT] is written: a host name (letters, digits, '-', dot-separated
 * labels of 1..63, 253 in all, one final dot allowed), an IPv4 address, or "[v6]";
 * then optionally ":" and a port 1..65535. Or "unix:/absolute/path" (a unix-domain
 * socket, the path under 108 bytes). 0 when well formed, else -1. */
int tool_target_ok(const char *s);

/* Split a target tool_target_ok() accepts into the host (no brackets; "unix:/path"
 * whole) and the port (25 when none is given). 0 or -1. */
int tool_split_target(const char *s, char *host, size_t cap, uint16_t *port);

/* Write prefix, then the formatted text with every control character shown escaped
 * ("\r", "\n", "\xNN"), so that one error is one line whatever the input held. */
void tool_vline(FILE *f, const char *prefix, const char *fmt, va_list ap);

/* Make room for at least `need` open files: raise the soft limit, and the hard one when
 * allowed. Returns 0, or -1 with the limit that could be had in *got. */
int tool_raise_nofile(uint64_t need, uint64_t *got);

/* CLOCK_MONOTONIC in nanoseconds: the clock the library measures latency with (a
 * message's start_ns), so the tool's own times compare with its. */
uint64_t tool_now_ns(void);

#endif
