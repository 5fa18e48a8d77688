/*
 * smtpbulk send's progress line on a terminal: results by status and category, the
 * rate over the last seconds, and (reading a manifest file, whose size is known) how
 * far and the ETA. A thread of its own redraws it on stderr twice a second; nothing
 * when stderr is not a terminal.
 */
#ifndef SB_SEND_PROGRESS_H
#define SB_SEND_PROGRESS_H

#include "send_live.h"

struct send_progress;

/* Starts when fd is a terminal: 0 and *out (NULL when it is not one), or -1 (no thread). */
int send_progress_start(int fd, struct send_live *live, struct send_progress **out);

/* Stop and clear the line (the summary goes where it was). NULL is ignored. */
void send_progress_stop(struct send_progress *p);

#endif
