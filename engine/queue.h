/*
 * Submission queue: liburcu's wait-free concurrent queue (wfcqueue) behind a small C API,
 * so urcu stays inside queue.c (its 0.13 headers do not compile as C++).
 *
 * Threads: any number of producers enqueue without locks; consumers (workers) dequeue
 * under the queue's own mutex, which only consumers ever take.
 */
#ifndef SB_QUEUE_H
#define SB_QUEUE_H

#include <stddef.h>

/* Intrusive node embedded in the queued object. Same layout as struct cds_wfcq_node;
 * only queue.c reads or writes it. */
struct sbq_node {
	struct sbq_node *next;
};

struct sbq;

int sbq_create(struct sbq **out);
/* The queue must be empty or its nodes abandoned by the caller. */
void sbq_destroy(struct sbq *q);

void sbq_node_init(struct sbq_node *n);

/* Wait-free. Returns 1 when the queue was empty before this enqueue: the one moment a
 * sleeping consumer needs a wake-up. */
int sbq_enqueue(struct sbq *q, struct sbq_node *n);

/*
 * Take up to max nodes in FIFO order without ever sleeping. *busy is set to 1 when an
 * enqueuer was caught half-way (its node is not visible yet): retry shortly; no wake-up
 * will come for it.
 */
size_t sbq_dequeue(struct sbq *q, struct sbq_node **out, size_t max, int *busy);

/* 1 when nothing is queued (a hint: producers may be adding right now). */
int sbq_empty(struct sbq *q);

#endif
