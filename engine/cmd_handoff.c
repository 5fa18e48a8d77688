/* A one-off command between the caller's thread and a worker (see cmd_handoff.h). */
#include "cmd_handoff.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

int sb_cmd_req_new(const char *line, size_t len, uint64_t deadline_ns, struct sb_cmd_req **out)
{
	struct sb_cmd_req *r;
	*out = NULL;
	if (len >= sizeof(r->line))
		return -EINVAL;
	if (!(r = calloc(1, sizeof(*r))))
		return -ENOMEM;
	int rc = sb_cond_init(&r->cond);
	if (rc) {
		free(r);
		return rc;
	}
	pthread_mutex_init(&r->lock, NULL);
	memcpy(r->line, line, len);
	r->len = len;
	r->deadline_ns = deadline_ns;
	atomic_init(&r->refs, 2);
	*out = r;
	return 0;
}

void sb_cmd_req_put(struct sb_cmd_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	free(r->reply); /* one allocation (command.h) */
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void sb_cmd_req_finish(struct sb_cmd_req *r, int rc, smtpbulk_command_reply_t *reply)
{
	pthread_mutex_lock(&r->lock);
	if (!r->done) {
		r->done = 1;
		r->rc = rc;
		r->reply = reply; /* an abandoned request's goes with the last put */
		reply = NULL;
		pthread_cond_signal(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	free(reply);
	sb_cmd_req_put(r);
}

int sb_cmd_req_abandoned(struct sb_cmd_req *r)
{
	pthread_mutex_lock(&r->lock);
	int a = r->abandoned;
	pthread_mutex_unlock(&r->lock);
	return a;
}

int sb_cmd_req_wait(struct sb_cmd_req *r, smtpbulk_command_reply_t **out)
{
	int rc;
	*out = NULL;
	pthread_mutex_lock(&r->lock);
	while (!r->done) {
		uint64_t now = sb_now_ns();
		if (now >= r->deadline_ns)
			break;
		struct timespec ts = sb_deadline_in(r->deadline_ns - now);
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	}
	if (r->done) {
		rc = r->rc;
		*out = r->reply;
		r->reply = NULL;
	} else {
		r->abandoned = 1;
		rc = SMTPBULK_ETIMEDOUT;
	}
	pthread_mutex_unlock(&r->lock);
	sb_cmd_req_put(r);
	return rc;
}

int sb_cmd_list_init(struct sb_cmd_list *l)
{
	memset(l, 0, sizeof(*l));
	return -pthread_mutex_init(&l->lock, NULL);
}

void sb_cmd_list_destroy(struct sb_cmd_list *l)
{
	sb_cmd_list_fail(l, SMTPBULK_ECANCELLED, 1);
	pthread_mutex_destroy(&l->lock);
}

int sb_cmd_list_push(struct sb_cmd_list *l, struct sb_cmd_req *r)
{
	pthread_mutex_lock(&l->lock);
	if (l->closed) {
		pthread_mutex_unlock(&l->lock);
		return SMTPBULK_ESTOPPED;
	}
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
	atomic_fetch_add_explicit(&l->pending, 1, memory_order_release);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

struct sb_cmd_req *sb_cmd_list_pop(struct sb_cmd_list *l)
{
	pthread_mutex_lock(&l->lock);
	struct sb_cmd_req *r = l->head;
	if (r) {
		l->head = r->next;
		if (!l->head)
			l->tail = NULL;
		atomic_fetch_sub_explicit(&l->pending, 1, memory_order_release);
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

void sb_cmd_list_fail(struct sb_cmd_list *l, int rc, int close)
{
	pthread_mutex_lock(&l->lock);
	struct sb_cmd_req *r = l->head;
	l->head = l->tail = NULL;
	atomic_store(&l->pending, 0);
	if (close)
		l->closed = 1;
	pthread_mutex_unlock(&l->lock);
	while (r) {
		struct sb_cmd_req *next = r->next;
		sb_cmd_req_finish(r, rc, NULL);
		r = next;
	}
}
