/*
 * The engine's lifecycle: create (options, hosts, TLS context, workers), start (the
 * workers' threads and the watchdog), submit, drain, poll, stop, destroy. The public
 * API (api/) calls these; they alone know the workers and the watchdog.
 *
 * Threads: create, start, stop and destroy from the thread that owns the handle;
 * submit, drain and poll from any thread.
 */
#ifndef SB_LIFECYCLE_H
#define SB_LIFECYCLE_H

#include "engine.h"

int sb_engine_create(const smtpbulk_options_t *opts, smtpbulk_t **out);
int sb_engine_start(smtpbulk_t *sb);
int sb_engine_submit(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags, uint64_t *id_out);
/* As sb_engine_submit(), the wake-up owed instead of given (*wake_owed set): a batch
 * gives it once at its end (sb_engine_wake(sb, -1)), and before it would block. */
int sb_engine_submit_batched(smtpbulk_t *sb, struct sb_msg *msg, unsigned flags,
			     uint64_t *id_out, int *wake_owed);
int sb_engine_drain(smtpbulk_t *sb, int timeout_ms);
int sb_engine_poll(smtpbulk_t *sb, smtpbulk_result_t **out, int timeout_ms);
/* Stop the workers (idle connections say QUIT) and cancel what is left. */
void sb_engine_stop(smtpbulk_t *sb);
void sb_engine_destroy(smtpbulk_t *sb);

#endif
