/* PLACEHOLDER until the outcome module lands (branch outcome): the throttle predicate. */
#ifndef SB_OUTCOME_H
#define SB_OUTCOME_H
#include <stddef.h>
#include "smtpbulk.h"
extern const char *const sb_throttle_patterns_default[];
int sb_reply_throttles(int code, const char *enh, size_t enh_len, const char *text,
		       size_t text_len, const char *const *patterns);
smtpbulk_category_t sb_category_of(smtpbulk_status_t st, int err, int reply_code,
				   const char *enh, const char *text,
				   const char *const *patterns);
#endif
