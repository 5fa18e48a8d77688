/*
 * What the connections of one host learn about its server as they go, so that the
 * connections after them do not stumble over the same thing: the server refuses
 * commands pipelined behind the end of a message's data (an SMTP-smuggling hardening:
 * Haraka, Postfix's smtpd_forbid_unauth_pipelining), and how many messages it takes on
 * one connection (OpenSMTPD's max-mails, Exim's smtp_accept_max_per_connection), and
 * how many transactions may be in flight after a reply came too late.
 *
 * Ownership: one per host, shared by every worker that has connections to the host.
 * Every field is read and written with relaxed atomics: a connection that reads a
 * lesson a little late only repeats the stumble once, which the session handles.
 */
#ifndef SB_HOST_LEARNED_H
#define SB_HOST_LEARNED_H

#include <stdatomic.h>

struct host_learned {
	_Atomic unsigned no_dot_pipe; /* 1: write no command behind an unanswered end of data */
	_Atomic unsigned conn_cap;    /* MAIL commands one connection may carry; 0: no cap */
	_Atomic unsigned window;      /* transactions a new connection may have in flight
	                                 after a hang (it grows back); 0: the configured */
};

static inline int hl_no_dot_pipe(const struct host_learned *h)
{
	return h && atomic_load_explicit(&h->no_dot_pipe, memory_order_relaxed);
}

/* Returns 1 when this is news. */
static inline int hl_learn_no_dot_pipe(struct host_learned *h)
{
	return h && !atomic_exchange_explicit(&h->no_dot_pipe, 1, memory_order_relaxed);
}

static inline unsigned hl_conn_cap(const struct host_learned *h)
{
	return h ? atomic_load_explicit(&h->conn_cap, memory_order_relaxed) : 0;
}

/* The server refused a connection's MAIL after it had taken cap of them: the smallest
 * cap seen holds. Returns 1 when the cap went down. */
static inline int hl_learn_conn_cap(struct host_learned *h, unsigned cap)
{
	if (!h || cap == 0)
		return 0;
	unsigned old = atomic_load_explicit(&h->conn_cap, memory_order_relaxed);
	while (old == 0 || cap < old)
		if (atomic_compare_exchange_weak_explicit(&h->conn_cap, &old, cap,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return 1;
	return 0;
}

/* The window a connection starts with: full, or what is left of a hang's shrink. */
static inline unsigned hl_window(const struct host_learned *h, unsigned full)
{
	unsigned w = h ? atomic_load_explicit(&h->window, memory_order_relaxed) : 0;
	return w && w < full ? w : full;
}

/* A connection with several transactions in flight hung: one slow reply cost them
 * all (they time out, and the server may have taken them: duplicates). The host's
 * next connections start with one in flight. */
static inline void hl_shrink_window(struct host_learned *h)
{
	if (h)
		atomic_store_explicit(&h->window, 1, memory_order_relaxed);
}

/* A reply came in time: the host's window grows back by one, up to full. */
static inline void hl_grow_window(struct host_learned *h, unsigned full)
{
	if (!h)
		return;
	unsigned w = atomic_load_explicit(&h->window, memory_order_relaxed);
	/* If another connection grew it meanwhile, the CAS fails: once is enough. */
	if (w)
		atomic_compare_exchange_strong_explicit(&h->window, &w, w + 1 >= full ? 0 : w + 1,
							memory_order_relaxed, memory_order_relaxed);
}

#endif
