#include "conn_policy.h"

#include "smtpbulk.h"

int cpol_apply(struct cpol *p, int code, uint64_t epoch)
{
	int parked = 0;
	switch (code) {
	case SMTPBULK_CB_REMOVE:
		p->removed = 1;
		break;
	case SMTPBULK_CB_REMOVE_RESTART:
		p->fresh_tls = 1; /* a restart is a new connection: no resumption */
		__attribute__((fallthrough));
	case SMTPBULK_CB_REMOVE_RECONNECT:
	case SMTPBULK_CB_PAUSE:
		if (p->park == CPOL_RUN) {
			parked = 1;
			p->epoch = epoch;
		}
		p->park = code == SMTPBULK_CB_PAUSE ? CPOL_PARK_OPEN : CPOL_PARK_CLOSED;
		break;
	case SMTPBULK_CB_RESTART:
		p->fresh_tls = 1;
		__attribute__((fallthrough));
	case SMTPBULK_CB_RECONNECT:
		p->reconnect_now = 1;
		break;
	default: /* SMTPBULK_CB_DEFAULT, and anything unknown: carry on */
		break;
	}
	return parked;
}

enum cpol_idle cpol_when_idle(const struct cpol *p, int stopping)
{
	/* A connection that became idle (its handshake or RSET just finished) says QUIT
	 * instead of waiting for work when stopping, removed or parked closed. */
	if (stopping || p->removed || p->park == CPOL_PARK_CLOSED)
		return CPOL_IDLE_QUIT;
	return p->park == CPOL_PARK_OPEN || p->held ? CPOL_IDLE_WAIT : CPOL_IDLE_WORK;
}

enum cpol_next cpol_after_close(struct cpol *p)
{
	if (p->removed)
		return CPOL_NEXT_GIVE_UP;
	if (p->park == CPOL_PARK_CLOSED)
		return CPOL_NEXT_WAIT_BATCH;
	if (p->reconnect_now) {
		p->reconnect_now = 0;
		return CPOL_NEXT_RECONNECT_NOW;
	}
	return CPOL_NEXT_RECONNECT_LATER;
}

int cpol_batch_over(const struct cpol *p, uint64_t epoch, uint64_t queued, unsigned parked,
		    unsigned alive)
{
	if (p->park == CPOL_RUN)
		return 0;
	return queued == 0 || epoch != p->epoch || parked >= alive;
}

int cpol_unpark(struct cpol *p)
{
	if (p->park == CPOL_RUN)
		return 0;
	p->park = CPOL_RUN;
	return 1;
}

int cpol_take_fresh_tls(struct cpol *p)
{
	int f = p->fresh_tls;
	p->fresh_tls = 0;
	return f;
}
