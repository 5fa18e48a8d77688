/*
 * The watchdog: one thread per engine that enforces the timeouts. It never touches a
 * ring or a session. Each tick it reads, for every connection, since when it has been
 * waiting for its server (sb_conn.wd_since, kept by the worker), and when one has
 * waited longer than timeout_ms it sets the connection's wd_fired and the worker's
 * wd_pending, and wakes the worker, which ends the connection (sess_hang). When no
 * server has answered anything for global_timeout_ms while messages are in progress,
 * it sets every worker's wd_global: 1 = reconnect everything, 2 = give up (what is in
 * progress or queued ends TIMED_OUT) once retry_global_hang is used up.
 */
#ifndef SB_WATCHDOG_H
#define SB_WATCHDOG_H

struct smtpbulk;

int sb_watchdog_start(struct smtpbulk *sb);
/* Stop and join it; a no-op when it is not running. */
void sb_watchdog_stop(struct smtpbulk *sb);

#endif
