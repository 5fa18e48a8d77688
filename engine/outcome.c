/* PLACEHOLDER until the outcome module lands (branch outcome). */
#include "outcome.h"
#include <ctype.h>
#include <string.h>
const char *const sb_throttle_patterns_default[] = {"rate limit", "throttl", NULL};
static int has(const char *t, size_t n, const char *p)
{
	size_t pl = strlen(p);
	for (size_t i = 0; i + pl <= n; i++) {
		size_t k = 0;
		while (k < pl && tolower((unsigned char)t[i + k]) == tolower((unsigned char)p[k]))
			k++;
		if (k == pl)
			return 1;
	}
	return 0;
}
int sb_reply_throttles(int code, const char *enh, size_t enh_len, const char *text,
		       size_t text_len, const char *const *patterns)
{
	if (code != 421 && code != 450 && code != 451 && code != 452)
		return 0;
	if (enh && enh_len >= 5 && !memcmp(enh, "4.5.3", 5))
		return 0;
	if (enh && enh_len >= 4 && (!memcmp(enh, "4.7.", 4) || (enh_len == 5 && (!memcmp(enh, "4.3.2", 5) || !memcmp(enh, "4.4.5", 5)))))
		return 1;
	if (!patterns)
		patterns = sb_throttle_patterns_default;
	for (; text && *patterns; patterns++)
		if (has(text, text_len, *patterns))
			return 1;
	return 0;
}
smtpbulk_category_t sb_category_of(smtpbulk_status_t st, int err, int reply_code,
				   const char *enh, const char *text,
				   const char *const *patterns)
{
	return st <= SMTPBULK_PARTIAL ? SMTPBULK_CAT_DELIVERED : SMTPBULK_CAT_OTHER;
}
const char *smtpbulk_category_name(smtpbulk_category_t c)
{
	return "unknown";
}
