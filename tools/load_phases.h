/*
 * smtpbulk load's per-phase latency percentiles (smtpbulk_phases_t of its results):
 * one histogram per phase, recorded from the result callback on any worker thread.
 * The transaction phases count once per message; a connection's setup phases once per
 * connection (its first result that carries them), so a run over 10 connections has
 * 10 connect samples, not one per message.
 */
#ifndef SB_LOAD_PHASES_H
#define SB_LOAD_PHASES_H

#include <smtpbulk.h>

enum load_phase {
	LP_QUEUED, LP_PACED, LP_CONNECT, LP_TLS, LP_GREETING, LP_EHLO, LP_AUTH,
	LP_MAIL, LP_RCPT, LP_DATA, LP_DOT, LP_COUNT
};

struct load_phase_pct {
	uint64_t samples;     /* 0: the phase never happened (no TLS, no AUTH, BDAT's data) */
	double p50_ms, p99_ms;
};

struct load_phases;

/* NULL when out of memory. */
struct load_phases *load_phases_new(void);
void load_phases_free(struct load_phases *lp);
/* One result's phases. Any thread, concurrently; a connection index is one worker's. */
void load_phases_record(struct load_phases *lp, const smtpbulk_result_t *r);
/* The percentiles so far (a snapshot; exact once no result can come any more). */
void load_phases_get(struct load_phases *lp, struct load_phase_pct out[LP_COUNT]);
/* "queued", "paced", "connect", ... as in the JSON report. */
const char *load_phase_name(enum load_phase p);

#endif
