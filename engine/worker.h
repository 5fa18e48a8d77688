/*
 * A worker: one pinned thread, one I/O ring, and a share of every host's connections
 * (conn.h). struct sb_worker is private to worker.c.
 *
 * Threads and ownership: a worker and everything it holds belong to its thread once it
 * runs, except what the watchdog reads through sb_worker_watchdog() (watchdog.h) and
 * its eventfd (sb_worker_wake_fd()), which any thread may write to wake it. The
 * creating thread calls create, start, join and destroy.
 */
#ifndef SB_WORKER_H
#define SB_WORKER_H

struct smtpbulk;
struct sb_worker;
struct wd_group;

int sb_worker_create(struct smtpbulk *sb, unsigned index, int cpu, struct sb_worker **out);
/* Start its thread and wait until its ring is built: 0, or why it could not be
 * (SMTPBULK_EBACKEND, -errno); on failure the thread has ended. */
int sb_worker_start(struct sb_worker *w);
void sb_worker_join(struct sb_worker *w);
void sb_worker_destroy(struct sb_worker *w);
int sb_worker_wake_fd(const struct sb_worker *w);
/* Its connections as the watchdog sees them. */
struct wd_group *sb_worker_watchdog(struct sb_worker *w);
/* The I/O backend it runs, and what it chose (for the debug log). */
const char *sb_worker_backend(const struct sb_worker *w);
const char *sb_worker_desc(const struct sb_worker *w);

#endif
