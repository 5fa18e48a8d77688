/*
 * A one-off command (smtpbulk_command()) handed from the caller's thread to a worker,
 * and its reply handed back; and each host's list of commands waiting for a ready
 * connection. The caller blocks on the request's condition variable, never the engine.
 *
 * Threads and ownership
 * | field of sb_cmd_req          | who may touch it                                     |
 * |------------------------------|------------------------------------------------------|
 * | line, len, deadline_ns       | the caller writes before the push; read-only after   |
 * | next                         | under the list's lock (the list owns the link)       |
 * | done, rc, reply, abandoned   | under lock: the worker (or the stop) finishes it     |
 * |                              | once; the caller reads them, or abandons it at its   |
 * |                              | deadline (the reply of a late finish is freed then)  |
 * | refs                         | atomic: the caller's and the engine's; the last put  |
 * |                              | frees it, so neither waits for the other             |
 * sb_cmd_list: any thread, under its lock; pending is read without it (a hint).
 */
#ifndef SB_CMD_HANDOFF_H
#define SB_CMD_HANDOFF_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "smtpbulk.h"

struct sb_cmd_req {
	char line[512];
	size_t len;
	uint64_t deadline_ns; /* sb_now_ns() clock */
	struct sb_cmd_req *next;
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* CLOCK_MONOTONIC */
	int done, abandoned, rc;
	smtpbulk_command_reply_t *reply;
	_Atomic int refs;
};

struct sb_cmd_list {
	pthread_mutex_t lock;
	struct sb_cmd_req *head, *tail;
	int closed;               /* the engine stopped: no push is taken any more */
	_Atomic unsigned pending; /* requests in the list */
};

/* A request for line[0..len) (len < sizeof(line)), due by deadline_ns; two references
 * (the caller's and the engine's). 0, -ENOMEM or -EINVAL (too long). */
int sb_cmd_req_new(const char *line, size_t len, uint64_t deadline_ns,
		   struct sb_cmd_req **out);
/* Drop a reference; the last frees the request (and a reply nobody took). */
void sb_cmd_req_put(struct sb_cmd_req *r);
/* The engine's end of it: rc (0 with reply, else an error, reply NULL), the first
 * finish only; the caller is woken; the engine's reference is dropped. */
void sb_cmd_req_finish(struct sb_cmd_req *r, int rc, smtpbulk_command_reply_t *reply);
/* The caller abandoned it (its deadline passed): no one waits for the reply. */
int sb_cmd_req_abandoned(struct sb_cmd_req *r);
/* The caller's end: wait until it is finished or its deadline passes (then it is
 * abandoned, SMTPBULK_ETIMEDOUT); the caller's reference is dropped. Returns rc, and
 * the reply in *out on 0. */
int sb_cmd_req_wait(struct sb_cmd_req *r, smtpbulk_command_reply_t **out);

int sb_cmd_list_init(struct sb_cmd_list *l);
void sb_cmd_list_destroy(struct sb_cmd_list *l);
/* Queue r (the list takes the engine's reference). 0, or SMTPBULK_ESTOPPED once the
 * list is closed. */
int sb_cmd_list_push(struct sb_cmd_list *l, struct sb_cmd_req *r);
/* The oldest request, or NULL. */
struct sb_cmd_req *sb_cmd_list_pop(struct sb_cmd_list *l);
/* Finish every queued request with rc; with close, refuse pushes from now on. */
void sb_cmd_list_fail(struct sb_cmd_list *l, int rc, int close);
static inline unsigned sb_cmd_list_pending(struct sb_cmd_list *l)
{
	return atomic_load_explicit(&l->pending, memory_order_acquire);
}

#endif
