/* GMime's one start for the whole library (g_mime_init() is not thread-safe). */
#ifndef SB_GMIME_ONCE_H
#define SB_GMIME_ONCE_H

void sb_gmime_once(void);

#endif
