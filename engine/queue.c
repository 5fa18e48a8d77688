#define _LGPL_SOURCE /* inline, wait-free fast paths from urcu's static headers */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <urcu/wfcqueue.h>

#include "tsan.h"

static_assert(sizeof(struct sbq_node) == sizeof(struct cds_wfcq_node), "node layout");
static_assert(alignof(struct sbq_node) == alignof(struct cds_wfcq_node), "node layout");

struct sbq {
	/* The head is touched by consumers only, the tail by producers: keep them on
	 * separate cache lines so enqueues do not bounce the consumers' line. */
	alignas(64) struct __cds_wfcq_head head;
	pthread_mutex_t consumer_lock; /* serialises consumers (dequeue) */
	alignas(64) struct cds_wfcq_tail tail;
};

static inline struct cds_wfcq_node *to_cds(struct sbq_node *n)
{
	return (struct cds_wfcq_node *)(void *)n;
}

int sbq_create(struct sbq **out)
{
	struct sbq *q = aligned_alloc(64, sizeof(*q));
	if (!q)
		return -ENOMEM;
	__cds_wfcq_init(&q->head, &q->tail);
	pthread_mutex_init(&q->consumer_lock, NULL);
	*out = q;
	return 0;
}

void sbq_destroy(struct sbq *q)
{
	if (!q)
		return;
	pthread_mutex_destroy(&q->consumer_lock);
	free(q);
}

void sbq_node_init(struct sbq_node *n)
{
	cds_wfcq_node_init(to_cds(n));
}

int sbq_enqueue(struct sbq *q, struct sbq_node *n)
{
	/* A node goes through several queues in its life (submission, requeue, results):
	 * urcu expects next == NULL on enqueue, so reset it here, not at each caller. */
	cds_wfcq_node_init(to_cds(n));
	HANDOFF_RELEASE(n);
	/* cds_wfcq_enqueue returns false when the queue was empty before. */
	return !cds_wfcq_enqueue(&q->head, &q->tail, to_cds(n));
}

size_t sbq_dequeue(struct sbq *q, struct sbq_node **out, size_t max, int *busy)
{
	size_t got = 0;
	*busy = 0;
	if (max == 0 || cds_wfcq_empty(&q->head, &q->tail))
		return 0;
	pthread_mutex_lock(&q->consumer_lock);
	while (got < max) {
		struct cds_wfcq_node *n =
			__cds_wfcq_dequeue_nonblocking(&q->head, &q->tail);
		if (n == CDS_WFCQ_WOULDBLOCK) {
			*busy = 1;
			break;
		}
		if (!n)
			break;
		HANDOFF_ACQUIRE(n);
		out[got++] = (struct sbq_node *)(void *)n;
	}
	pthread_mutex_unlock(&q->consumer_lock);
	return got;
}

int sbq_empty(struct sbq *q)
{
	return cds_wfcq_empty(&q->head, &q->tail);
}
