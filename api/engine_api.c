/* The direct public API: a thin, validating layer over the engine. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../engine/lifecycle.h"
#include "../engine/message.h"
#include "../engine/smtp_cmd.h"
#include "options.h"
#include "smtpbulk.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *smtpbulk_version(void)
{
	return STR(SMTPBULK_VERSION_MAJOR) "." STR(SMTPBULK_VERSION_MINOR) "." STR(
		SMTPBULK_VERSION_PATCH);
}

int smtpbulk_create(const smtpbulk_options_t *opts, smtpbulk_t **out)
{
	smtpbulk_options_t o;
	smtpbulk_host_t *hosts = NULL;
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (sb_options_copy(opts, &o))
		return -EINVAL;
	if (opts->struct_size <= OPTIONS_SIZE_PRE_TLS) {
		int rc = sb_hosts_copy(opts, 0, &hosts);
		if (rc)
			return rc;
		o.hosts = hosts;
	}
	int rc = sb_engine_create(&o, out);
	free(hosts);
	return rc;
}

int smtpbulk_start(smtpbulk_t *sb)
{
	return sb ? sb_engine_start(sb) : -EINVAL;
}

const char *smtpbulk_backend_name(const smtpbulk_t *sb)
{
	return sb ? sb->backend_name : "none";
}

int smtpbulk_check_address(const char *addr)
{
	char tmp[SMTP_PATH_MAX + 1];
	if (!addr)
		return SMTPBULK_EBADADDR;
	int n = smtp_addr_normalize(addr, tmp, sizeof(tmp));
	return n < 0 ? SMTPBULK_EBADADDR : n;
}

int smtpbulk_submit(smtpbulk_t *sb, const smtpbulk_message_t *msg, unsigned flags,
		    uint64_t *id_out)
{
	struct sb_msg *m;
	if (!sb || !msg)
		return -EINVAL;
	if (msg->host >= (int)sb->n_hosts || msg->host < -1)
		return SMTPBULK_ENOHOST;
	int rc = sb_msg_new(sb->msg_pool, msg, &m);
	if (rc)
		return rc;
	rc = sb_engine_submit(sb, m, flags, id_out);
	if (rc)
		sb_msg_free(m);
	return rc;
}

int smtpbulk_submit_batch(smtpbulk_t *sb, const smtpbulk_message_t *msgs, size_t n,
			  unsigned flags, size_t *done)
{
	size_t i = 0;
	int rc = 0, wake_owed = 0;
	if (done)
		*done = 0;
	if (!sb || (!msgs && n))
		return -EINVAL;
	for (; i < n; i++) {
		struct sb_msg *m;
		if (msgs[i].host >= (int)sb->n_hosts || msgs[i].host < -1) {
			rc = SMTPBULK_ENOHOST;
			break;
		}
		if ((rc = sb_msg_new(sb->msg_pool, &msgs[i], &m)) != 0)
			break;
		if ((rc = sb_engine_submit_batched(sb, m, flags, NULL, &wake_owed)) != 0) {
			sb_msg_free(m);
			break;
		}
	}
	if (wake_owed)
		sb_engine_wake(sb, -1);
	if (done)
		*done = i;
	return rc;
}

int smtpbulk_poll(smtpbulk_t *sb, smtpbulk_result_t **out, int timeout_ms)
{
	if (!sb || !out || sb->opts.on_result || sb->opts.discard_results || sb->evq)
		return -EINVAL;
	*out = NULL;
	return sb_engine_poll(sb, out, timeout_ms);
}

void smtpbulk_result_free(smtpbulk_result_t *res)
{
	if (res)
		sb_msg_free(sb_msg_of_result(res));
}

int smtpbulk_drain(smtpbulk_t *sb, int timeout_ms)
{
	return sb ? sb_engine_drain(sb, timeout_ms) : -EINVAL;
}

void smtpbulk_get_counters(const smtpbulk_t *sb, smtpbulk_counters_t *out)
{
	if (!sb || !out)
		return;
	smtpbulk_t *s = (smtpbulk_t *)(uintptr_t)sb; /* atomics are read-only here */
	/* delivered is counted before completed: read it first so it never exceeds. */
	out->delivered = atomic_load(&s->delivered);
	out->completed = atomic_load(&s->completed);
	out->submitted = atomic_load(&s->submitted);
	out->not_delivered = out->completed > out->delivered ? out->completed - out->delivered : 0;
	out->queued = atomic_load(&s->queued);
	out->queued_max = atomic_load(&s->queued_max);
	out->requeued = atomic_load(&s->requeued);
	out->connects = atomic_load(&s->connects);
	out->connect_fails = atomic_load(&s->connect_fails);
	out->timed_out = atomic_load(&s->timed_out);
	out->hangs = atomic_load(&s->hangs);
	out->global_hangs = atomic_load(&s->global_hangs);
	out->deferred = atomic_load(&s->deferred);
	out->deferred_now = atomic_load(&s->deferred_now);
	out->reconnects = atomic_load(&s->reconnects);
}

void smtpbulk_destroy(smtpbulk_t *sb)
{
	if (sb)
		sb_engine_destroy(sb); /* extensions (the facade) go with it */
}
