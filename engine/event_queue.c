/* Events and results for the caller's thread, through an eventfd (event_queue.h). */
#include "event_queue.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "message.h"

int sb_evq_new(unsigned mask, unsigned hold, struct sb_evq **out)
{
	struct sb_evq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (q->fd < 0) {
		int rc = -errno;
		free(q);
		return rc;
	}
	/* Pass and fail come as results; the result kind is not the caller's to pick. */
	q->mask = mask & SMTPBULK_EVENTS_ALL &
		  ~((1u << SMTPBULK_EV_PASS) | (1u << SMTPBULK_EV_FAIL));
	q->hold = hold & q->mask &
		  ((1u << SMTPBULK_EV_CONNECT_PASS) | (1u << SMTPBULK_EV_RECONNECT_PASS) |
		   (1u << SMTPBULK_EV_AUTH_PASS));
	pthread_mutex_init(&q->lock, NULL);
	*out = q;
	return 0;
}

static void readable(struct sb_evq *q, int yes)
{
	uint64_t v = 1; /* non-blocking, and only ever 0 or 1 here: neither call fails */
	ssize_t n = yes ? write(q->fd, &v, sizeof(v)) : read(q->fd, &v, sizeof(v));
	(void)n;
}

static void push(struct sb_evq *q, struct sb_evq_item *it)
{
	it->next = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	if (q->n++ == 0 && q->spilled == 0)
		readable(q, 1);
	pthread_mutex_unlock(&q->lock);
}

int sb_evq_push_event(struct sb_evq *q, const smtpbulk_event_t *ev)
{
	size_t extra = ev->line ? ev->line_len + 1 : 0;
	struct sb_evq_item *it = malloc(sizeof(*it) + extra);
	if (!it)
		return -ENOMEM;
	it->pub.ev = *ev;
	it->pub.result = NULL;
	it->pub.ev.message = NULL; /* pass and fail are never queued: no result to keep */
	if (ev->line) {
		memcpy(it->line, ev->line, ev->line_len);
		it->line[ev->line_len] = '\0';
		it->pub.ev.line = it->line;
	}
	push(q, it);
	return 0;
}

smtpbulk_queued_event_t *sb_evq_wrap(smtpbulk_result_t *res)
{
	struct sb_evq_item *it = malloc(sizeof(*it));
	if (!it)
		return NULL;
	it->pub = (smtpbulk_queued_event_t){
		.ev = {
			.kind = SMTPBULK_EV_RESULT,
			.host = res->host,
			.port = res->port,
			.host_index = res->host_index,
			.connection = res->connection,
			.error = res->error,
			.message = res,
			.message_id = res->id,
			.user_data = res->user_data,
		},
		.result = res,
	};
	return &it->pub;
}

int sb_evq_push_result(struct sb_evq *q, smtpbulk_result_t *res)
{
	smtpbulk_queued_event_t *pub = sb_evq_wrap(res);
	if (!pub)
		return -ENOMEM;
	push(q, (struct sb_evq_item *)pub);
	return 0;
}

void sb_evq_spilled(struct sb_evq *q, int delta)
{
	pthread_mutex_lock(&q->lock);
	size_t before = q->n + q->spilled;
	q->spilled += (size_t)(ptrdiff_t)delta;
	size_t after = q->n + q->spilled;
	if (!before != !after)
		readable(q, after != 0);
	pthread_mutex_unlock(&q->lock);
}

smtpbulk_queued_event_t *sb_evq_pop(struct sb_evq *q)
{
	pthread_mutex_lock(&q->lock);
	struct sb_evq_item *it = q->head;
	if (it) {
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
		if (--q->n == 0 && q->spilled == 0)
			readable(q, 0);
	}
	pthread_mutex_unlock(&q->lock);
	return it ? &it->pub : NULL;
}

size_t sb_evq_count(struct sb_evq *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->n;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void sb_evq_install(struct sb_evq *q, smtpbulk_callbacks_t *cbs)
{
	smtpbulk_event_cb *slot[] = {
		[SMTPBULK_EV_CONNECT_PASS] = &cbs->connect_pass,
		[SMTPBULK_EV_CONNECT_FAIL] = &cbs->connect_fail,
		[SMTPBULK_EV_AUTH_PASS] = &cbs->auth_pass,
		[SMTPBULK_EV_AUTH_FAIL] = &cbs->auth_fail,
		[SMTPBULK_EV_RECONNECT_PASS] = &cbs->reconnect_pass,
		[SMTPBULK_EV_RECONNECT_FAIL] = &cbs->reconnect_fail,
		[SMTPBULK_EV_PASS] = &cbs->pass,
		[SMTPBULK_EV_FAIL] = &cbs->fail,
		[SMTPBULK_EV_HANG] = &cbs->hang,
		[SMTPBULK_EV_GLOBAL_HANG] = &cbs->global_hang,
		[SMTPBULK_EV_READ] = &cbs->read,
		[SMTPBULK_EV_COMPLETE] = &cbs->complete,
	};
	memset(cbs, 0, sizeof(*cbs));
	/* Only the kinds asked for: a read callback alone makes every line an event. */
	for (unsigned k = 0; k < sizeof(slot) / sizeof(slot[0]); k++)
		if (q->mask & (1u << k))
			*slot[k] = sb_evq_callback;
	cbs->struct_size = sizeof(*cbs);
	cbs->arg = q;
}

int sb_evq_callback(const smtpbulk_event_t *ev, void *arg)
{
	struct sb_evq *q = arg;
	if (q->mask & (1u << ev->kind))
		sb_evq_push_event(q, ev);
	return SMTPBULK_CB_DEFAULT;
}

void sb_evq_free(struct sb_evq *q)
{
	if (!q)
		return;
	smtpbulk_queued_event_t *it;
	while ((it = sb_evq_pop(q)))
		sb_evq_item_free(it);
	close(q->fd);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void sb_evq_item_free(smtpbulk_queued_event_t *item)
{
	if (!item)
		return;
	if (item->result) /* the caller's since delivery: not back into the pool */
		sb_msg_free(sb_msg_of_result(item->result));
	free(item);
}
