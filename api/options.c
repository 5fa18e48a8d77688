/* Copies of the caller's options and hosts, whatever header they were built with. */
#include "options.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void smtpbulk_options_init(smtpbulk_options_t *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->struct_size = sizeof(*opts);
	opts->backend = SMTPBULK_BACKEND_AUTO;
	opts->pipeline = 2;
}

/* The options struct of 0.1.0 ended at log_arg: callers built against it pass this. */
#define OPTIONS_SIZE_0_1 offsetof(smtpbulk_options_t, plain_recv)

int sb_options_copy(const smtpbulk_options_t *in, smtpbulk_options_t *out)
{
	if (!in || in->struct_size < OPTIONS_SIZE_0_1 || in->struct_size > sizeof(*out))
		return -EINVAL;
	smtpbulk_options_init(out);
	memcpy(out, in, in->struct_size);
	out->struct_size = sizeof(*out);
	return 0;
}


int sb_hosts_copy(const smtpbulk_options_t *in, size_t extra, smtpbulk_host_t **out)
{
	size_t n = in->n_hosts;
	size_t stride = in->struct_size <= OPTIONS_SIZE_PRE_TLS ? HOST_SIZE_PRE_TLS
							       : sizeof(smtpbulk_host_t);
	if (n && !in->hosts)
		return -EINVAL;
	smtpbulk_host_t *h = calloc(n + extra ? n + extra : 1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		memcpy(&h[extra + i], (const char *)in->hosts + i * stride, stride);
	*out = h;
	return 0;
}
