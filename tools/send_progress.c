/* The progress line: a timed wait on a condition variable, so stop is at once. */
#include "send_progress.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

struct send_progress {
	int fd;
	struct send_live *live;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	int stop;          /* under mu */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t done_of(struct send_live *l)
{
	uint64_t d = 0;
	for (int i = 0; i < SEND_STATUSES; i++)
		d += send_live_get(&l->by_status[i]);
	return d;
}

static void draw(struct send_progress *p, double rate, double elapsed)
{
	struct send_live *l = p->live;
	char line[512];
	size_t n = 0;
#define ADD(...) n += (size_t)snprintf(line + n, n < sizeof(line) ? sizeof(line) - n : 0, __VA_ARGS__)
	uint64_t done = done_of(l), sub = send_live_get(&l->submitted);
	ADD("sent %llu  delivered %llu", (unsigned long long)sub,
	    (unsigned long long)send_live_get(&l->by_status[SMTPBULK_DELIVERED]));
	static const char *const names[] = {"partial", "rejected", "failed", "timed out",
					    "cancelled"};
	for (int i = 1; i < SEND_STATUSES; i++) {
		uint64_t v = send_live_get(&l->by_status[i]);
		if (v)
			ADD("  %s %llu", names[i - 1], (unsigned long long)v);
	}
	uint64_t bad = send_live_get(&l->bad);
	if (bad)
		ADD("  bad input %llu", (unsigned long long)bad);
	int cats = 0;
	for (int c = 1; c < SEND_CATEGORIES; c++) {
		uint64_t v = send_live_get(&l->by_category[c]);
		if (v)
			ADD("%s%s %llu", cats++ ? ", " : "  [", smtpbulk_category_name((smtpbulk_category_t)c),
			    (unsigned long long)v);
	}
	if (cats)
		ADD("]");
	ADD("  %.0f msgs/s", rate);
	uint64_t pos = send_live_get(&l->input_pos), size = send_live_get(&l->input_size);
	uint64_t recs = send_live_get(&l->records);
	if (size && pos && recs) {
		/* Records in the whole input, estimated from the bytes read so far (the
		 * reading runs ahead of the sending by the queue bound). */
		double frac = (double)pos / (double)size;
		double total = (double)recs / (frac > 0 && frac < 1 ? frac : 1);
		double ended = (double)(done + bad + send_live_get(&l->skipped_final) +
					send_live_get(&l->skipped_undelivered) +
					send_live_get(&l->changed) + send_live_get(&l->not_due));
		double left = total - ended;
		ADD("  %.0f%%", total > 0 ? 100.0 * (ended < total ? ended : total) / total : 0.0);
		if (rate > 0 && left > 0) {
			unsigned long eta = (unsigned long)(left / rate + 0.5);
			ADD("  ETA %lu:%02lu:%02lu", eta / 3600, eta / 60 % 60, eta % 60);
		}
	}
	ADD("  %.0fs", elapsed);
#undef ADD
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	struct winsize ws;
	if (ioctl(p->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && n >= ws.ws_col)
		n = ws.ws_col - 1; /* a wrapped line could not be redrawn in place */
	char buf[600];
	int k = snprintf(buf, sizeof(buf), "\r%.*s\033[K", (int)n, line);
	if (k > 0 && write(p->fd, buf, (size_t)k) < 0) {
		/* a terminal that went away: nothing to tell it */
	}
}

static void *run(void *arg)
{
	struct send_progress *p = arg;
	double t0 = now_s(), last_t = t0, rate = 0;
	uint64_t last_done = 0;
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += 500000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT)
			;
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		double t = now_s();
		uint64_t done = done_of(p->live);
		double inst = (double)(done - last_done) / (t - last_t);
		rate = rate ? 0.7 * rate + 0.3 * inst : inst; /* a few seconds' memory */
		last_done = done;
		last_t = t;
		draw(p, rate, t - t0);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int send_progress_start(int fd, struct send_live *live, struct send_progress **out)
{
	*out = NULL;
	if (!isatty(fd))
		return 0;
	struct send_progress *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	p->fd = fd;
	p->live = live;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&p->mu, NULL);
	if (pthread_create(&p->thread, NULL, run, p)) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return -1;
	}
	*out = p;
	return 0;
}

void send_progress_stop(struct send_progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	static const char clear[] = "\r\033[K";
	if (write(p->fd, clear, sizeof(clear) - 1) < 0) {
		/* as above */
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
