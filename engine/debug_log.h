/*
 * Debug logs written by a thread of their own, so a worker never waits on a disk or a
 * pipe: a worker formats its line, queues it (wait-free, sbq) and goes on. The writer
 * sends lines to stderr, or with a DebugPath template to one file per host and
 * connection (the seed's [HOST] and [THREAD]), creating missing directories.
 * When the writer falls behind by more than SB_LOG_BACKLOG bytes, lines are dropped
 * and counted rather than stalling anyone.
 *
 * Threads: sb_logger_line() from any thread; new/free from the engine's owner.
 */
#ifndef SB_DEBUG_LOG_H
#define SB_DEBUG_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SB_LOG_BACKLOG (16u << 20)

struct sb_logger;

/* path_template NULL: stderr. host names (n_hosts, each living as long as the logger)
 * fill [HOST]. Returns 0 or -errno. */
int sb_logger_new(const char *path_template, const char *const *host_names, size_t n_hosts,
		  struct sb_logger **out);
/* Write what is queued, stop the writer, close the files; say on stderr how many
 * lines were dropped, if any. */
void sb_logger_free(struct sb_logger *lg);
/* host -1: the engine's own lines (file [HOST] "engine", [THREAD] "main"). Never blocks. */
void sb_logger_line(struct sb_logger *lg, int level, int host, int conn, const char *text);

/*
 * Expand a DebugPath template: [HOST], [THREAD], [YYYY], [MM], [DD], [WK] (ISO week),
 * [hh], [mm], [ss]; "default" means "debug_[HOST]_[THREAD].txt". Characters of host
 * that have no place in a file name ('/', and anything below ' ') become '_'. Unknown
 * [...] stay as they are. Returns the length, or -ENAMETOOLONG when cap is too small.
 */
int sb_debug_path_expand(const char *tmpl, const char *host, const char *thread,
			 const struct tm *tm, char *out, size_t cap);

#endif
