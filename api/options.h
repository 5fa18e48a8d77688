/* Copies of the caller's options and hosts (api/options.c), for smtpbulk_create() and
 * the facade's smtpbulk_new(). */
#ifndef SB_OPTIONS_H
#define SB_OPTIONS_H

#include <stddef.h>

#include "smtpbulk.h"

/* Options from before TLS came with hosts without their security field: the array's
 * elements are that much shorter. */
#define OPTIONS_SIZE_PRE_TLS offsetof(smtpbulk_options_t, security)
#define HOST_SIZE_PRE_TLS offsetof(smtpbulk_host_t, security)

/* Copy caller options of any struct_size this library knows into *out (a current
 * struct; fields the caller's header lacked get their defaults). 0 or -EINVAL. */
int sb_options_copy(const smtpbulk_options_t *in, smtpbulk_options_t *out);
/* The caller's hosts (in's layout, which may be an older header's) into a new array of
 * the present layout, after `extra` zeroed entries. Free with free(). */
int sb_hosts_copy(const smtpbulk_options_t *in, size_t extra, smtpbulk_host_t **out);

#endif
