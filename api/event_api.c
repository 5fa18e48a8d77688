/* Events and results through a file descriptor, and callback codes given later: the
 * public face of engine/event_queue.h and of host->codes (engine.h). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../engine/clock.h"
#include "../engine/engine.h"
#include "../engine/lifecycle.h"
#include "../engine/message.h"
#include "smtpbulk.h"

int smtpbulk_event_fd(const smtpbulk_t *sb)
{
	return sb && sb->evq ? sb->evq->fd : -EINVAL;
}

/* A result that found no memory for an item waits in the done_queue (event_queue.h). */
static int take_spilled(smtpbulk_t *sb, smtpbulk_queued_event_t **out)
{
	smtpbulk_result_t *r;
	if (sb_engine_poll(sb, &r, 0) != 1)
		return 0;
	smtpbulk_queued_event_t *it = sb_evq_wrap(r);
	if (!it) { /* back it goes (behind others: order yields to memory here) */
		sbq_enqueue(sb->done_queue, &sb_msg_of_result(r)->node);
		return -ENOMEM;
	}
	sb_evq_spilled(sb->evq, -1);
	*out = it;
	return 1;
}

int smtpbulk_event_next(smtpbulk_t *sb, smtpbulk_queued_event_t **out, int timeout_ms)
{
	if (!sb || !out || !sb->evq)
		return -EINVAL;
	*out = NULL;
	uint64_t deadline = timeout_ms > 0 ? sb_now_ns() + (uint64_t)timeout_ms * SB_NS_PER_MS : 0;
	for (;;) {
		if ((*out = sb_evq_pop(sb->evq)))
			return 1;
		int rc = take_spilled(sb, out);
		if (rc)
			return rc;
		int wait = timeout_ms < 0 ? -1 : 0;
		if (timeout_ms > 0) {
			uint64_t now = sb_now_ns();
			if (now >= deadline)
				return 0;
			wait = (int)((deadline - now + SB_NS_PER_MS - 1) / SB_NS_PER_MS);
		} else if (timeout_ms == 0) {
			return 0;
		}
		struct pollfd p = {.fd = sb->evq->fd, .events = POLLIN};
		if (poll(&p, 1, wait) < 0 && errno != EINTR)
			return -errno;
	}
}

void smtpbulk_event_free(smtpbulk_queued_event_t *item)
{
	sb_evq_item_free(item);
}

int smtpbulk_act(smtpbulk_t *sb, int host_index, int connection, int code)
{
	if (!sb || host_index < 0 || (size_t)host_index >= sb->n_hosts || connection < 0 ||
	    (unsigned)connection >= sb->hosts[host_index].connections)
		return -EINVAL;
	switch (code) {
	case SMTPBULK_CB_DEFAULT:
	case SMTPBULK_CB_REMOVE:
	case SMTPBULK_CB_REMOVE_RECONNECT:
	case SMTPBULK_CB_REMOVE_RESTART:
	case SMTPBULK_CB_PAUSE:
	case SMTPBULK_CB_RECONNECT:
	case SMTPBULK_CB_RESTART:
		break;
	default:
		return -EINVAL;
	}
	if (!sb->started || atomic_load(&sb->stopping))
		return SMTPBULK_ESTOPPED;
	/* Counted when the slot turns non-empty. The worker's exchange may come between
	 * the two steps, so the count can dip below zero for a moment: it only ever
	 * means "look", and settles. */
	if (atomic_exchange(&sb->hosts[host_index].codes[connection], code) == 0)
		atomic_fetch_add(&sb->codes_pending, 1);
	sb_engine_wake(sb, host_index);
	return 0;
}
