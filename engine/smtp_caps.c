#include "smtp_caps.h"

#include <string.h>
#include <strings.h>

/* Does the keyword at t (up to a space, '=' or the end) equal kw, ignoring case? */
static int kw_is(const char *t, size_t len, size_t *kwlen, const char *kw)
{
	size_t n = strlen(kw);
	if (len < n || strncasecmp(t, kw, n) != 0)
		return 0;
	if (len > n && t[n] != ' ' && t[n] != '=')
		return 0;
	*kwlen = n;
	return 1;
}

static const struct {
	const char *name;
	unsigned bit;
} mechs[] = {
	{"PLAIN", SMTP_AUTH_PLAIN},
	{"LOGIN", SMTP_AUTH_LOGIN},
	{"CRAM-MD5", SMTP_AUTH_CRAM_MD5},
	{"XOAUTH2", SMTP_AUTH_XOAUTH2},
	{"SCRAM-SHA-256", SMTP_AUTH_SCRAM_SHA_256},
	{"OAUTHBEARER", SMTP_AUTH_OAUTHBEARER},
};

static unsigned parse_mechs(const char *t, size_t len)
{
	unsigned out = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && (t[i] == ' ' || t[i] == '='))
			i++;
		size_t s = i;
		while (i < len && t[i] != ' ')
			i++;
		for (size_t m = 0; m < sizeof(mechs) / sizeof(mechs[0]); m++)
			if (strlen(mechs[m].name) == i - s &&
			    strncasecmp(t + s, mechs[m].name, i - s) == 0)
				out |= mechs[m].bit;
	}
	return out;
}

static uint64_t parse_size(const char *t, size_t len)
{
	uint64_t v = 0;
	size_t i = 0;
	while (i < len && t[i] == ' ')
		i++;
	for (; i < len && t[i] >= '0' && t[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0; /* absurd: treat as no limit rather than wrap */
		v = v * 10 + (uint64_t)(t[i] - '0');
	}
	return v;
}

void smtp_caps_parse(const struct smtp_reply *ehlo, struct smtp_caps *caps)
{
	static const struct {
		const char *kw;
		unsigned bit;
	} simple[] = {
		{"PIPELINING", SMTP_CAP_PIPELINING},
		{"8BITMIME", SMTP_CAP_8BITMIME},
		{"SMTPUTF8", SMTP_CAP_SMTPUTF8},
		{"CHUNKING", SMTP_CAP_CHUNKING},
		{"DSN", SMTP_CAP_DSN},
		{"ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCED},
		{"STARTTLS", SMTP_CAP_STARTTLS},
		{"BINARYMIME", SMTP_CAP_BINARYMIME},
	};
	size_t pos = 0;
	const char *t;
	size_t len, kwl;
	int first = 1;

	memset(caps, 0, sizeof(*caps));
	while (smtp_reply_next_line(ehlo, &pos, 0, &t, &len)) {
		if (first) { /* "250-mx.example.com greets you" */
			first = 0;
			continue;
		}
		if (kw_is(t, len, &kwl, "SIZE")) {
			caps->flags |= SMTP_CAP_SIZE;
			caps->size_max = parse_size(t + kwl, len - kwl);
		} else if (kw_is(t, len, &kwl, "AUTH")) {
			/* "AUTH PLAIN LOGIN" and the pre-standard "AUTH=PLAIN LOGIN" */
			caps->flags |= SMTP_CAP_AUTH;
			caps->auth |= parse_mechs(t + kwl, len - kwl);
		} else {
			for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
				if (kw_is(t, len, &kwl, simple[i].kw))
					caps->flags |= simple[i].bit;
		}
	}
}
