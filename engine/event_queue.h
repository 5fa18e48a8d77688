/*
 * Events and results handed from the engine's threads to the caller's, through a file
 * descriptor (smtpbulk_event_queue()): for callers whose code must run on a thread of
 * their own — a Perl interpreter, an event loop — and so cannot be called back on a
 * worker. The seed's callbacks chosen by a mask and every message's result are copied
 * into one list, in the order they happened; the descriptor (an eventfd) is readable
 * while the list is not empty. What a callback would have returned is given later with
 * smtpbulk_act() (engine.h: host->codes), so nothing here waits for the caller.
 *
 * Threads and ownership
 * | field of sb_evq     | who may touch it                                            |
 * |---------------------|-------------------------------------------------------------|
 * | mask, fd            | set at create; read-only after                              |
 * | head, tail, n       | under lock: any engine thread pushes, the caller pops       |
 * | an item             | its pusher until the push; then the list; then the caller   |
 * The eventfd's counter is written and read only under lock, so "readable" and "not
 * empty" never disagree for long: a push onto an empty list writes it, the pop that
 * empties the list reads it back to zero.
 */
#ifndef SB_EVENT_QUEUE_H
#define SB_EVENT_QUEUE_H

#include <pthread.h>
#include <stddef.h>

#include "smtpbulk.h"

struct sb_evq_item {
	smtpbulk_queued_event_t pub; /* what the caller gets (first: the item is freed
	                                through it) */
	struct sb_evq_item *next;
	char line[];                 /* READ: the line, NUL-terminated */
};

struct sb_evq {
	unsigned mask;               /* 1u << kind for each event kind queued */
	unsigned hold;               /* of those, the kinds whose connection waits for
	                                smtpbulk_act() before it takes new work */
	int fd;                      /* eventfd, non-blocking */
	pthread_mutex_t lock;
	struct sb_evq_item *head, *tail;
	size_t n;
	size_t spilled;              /* results that found no memory for an item and wait
	                                in the engine's done_queue instead (see
	                                sb_evq_spilled): they keep the descriptor readable */
};

/* A queue for the event kinds in mask, holding connections after those in hold
 * (connect_pass, reconnect_pass, auth_pass only). 0, -ENOMEM or -errno (eventfd). */
int sb_evq_new(unsigned mask, unsigned hold, struct sb_evq **out);
/* Free an item popped from a queue, and its result. NULL is ignored. */
void sb_evq_item_free(smtpbulk_queued_event_t *item);
/* Wrap a spilled result into an item (NULL: no memory yet; the result stays the
 * caller's to put back). */
smtpbulk_queued_event_t *sb_evq_wrap(smtpbulk_result_t *res);
/* Free the queue and every item still in it (their results too). NULL is ignored. */
void sb_evq_free(struct sb_evq *q);
/* Queue a copy of ev (its line copied; message and host pointers kept as they are).
 * 0, or -ENOMEM (the event is then lost: said by the caller's log). */
int sb_evq_push_event(struct sb_evq *q, const smtpbulk_event_t *ev);
/* Queue a message's result, which the queue owns from now on (freed with the item).
 * -ENOMEM: not queued; the engine then keeps it in its done_queue and calls
 * sb_evq_spilled(q, +1), so it is late but not lost. */
int sb_evq_push_result(struct sb_evq *q, smtpbulk_result_t *res);
/* One more (+1) or one fewer (-1) spilled result; the descriptor stays readable while
 * any is left. */
void sb_evq_spilled(struct sb_evq *q, int delta);
/* The oldest item, or NULL when the list is empty. */
smtpbulk_queued_event_t *sb_evq_pop(struct sb_evq *q);
/* Items waiting (a hint: read under the lock, may be stale at once). */
size_t sb_evq_count(struct sb_evq *q);
/* Make cbs the queue's: its trampoline for each kind in the mask, nothing else. */
void sb_evq_install(struct sb_evq *q, smtpbulk_callbacks_t *cbs);
/* The trampoline installed as every queued kind's callback: pushes and returns
 * SMTPBULK_CB_DEFAULT (the caller's code comes later, through smtpbulk_act()). */
int sb_evq_callback(const smtpbulk_event_t *ev, void *arg);

#endif
