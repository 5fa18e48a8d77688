/* The Net::SMTP::Bulk-style facade's per-handle state (api/facade.c). */
#ifndef SB_FACADE_H
#define SB_FACADE_H

struct sb_facade;
void sb_facade_free(struct sb_facade *f);

#include "smtpbulk.h"
/* Copy caller options of any struct_size this library knows into *out (a current
 * struct; fields the caller's header lacked get their defaults). 0 or -EINVAL. */
int sb_options_copy(const smtpbulk_options_t *in, smtpbulk_options_t *out);
/* The caller's hosts (in's layout, which may be an older header's) into a new array of
 * the present layout, after `extra` zeroed entries. Free with free(). */
int sb_hosts_copy(const smtpbulk_options_t *in, size_t extra, smtpbulk_host_t **out);

#endif
