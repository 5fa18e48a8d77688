/* The Net::SMTP::Bulk-style facade's per-handle state (api/facade.c). */
#ifndef SB_FACADE_H
#define SB_FACADE_H

struct sb_facade;
void sb_facade_free(struct sb_facade *f);

#include "smtpbulk.h"
/* Copy caller options of any struct_size this library knows into *out (a current
 * struct; fields the caller's header lacked get their defaults). 0 or -EINVAL. */
int sb_options_copy(const smtpbulk_options_t *in, smtpbulk_options_t *out);

#endif
