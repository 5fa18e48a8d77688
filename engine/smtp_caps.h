/* EHLO capability parsing (RFC 5321 §4.1.1.1 and the extensions' RFCs). Pure. */
#ifndef SB_SMTP_CAPS_H
#define SB_SMTP_CAPS_H

#include <stdint.h>

#include "smtp_reply.h"

enum smtp_cap {
	SMTP_CAP_PIPELINING = 1u << 0,   /* RFC 2920 */
	SMTP_CAP_SIZE = 1u << 1,         /* RFC 1870 */
	SMTP_CAP_8BITMIME = 1u << 2,     /* RFC 6152 */
	SMTP_CAP_SMTPUTF8 = 1u << 3,     /* RFC 6531 */
	SMTP_CAP_CHUNKING = 1u << 4,     /* RFC 3030 */
	SMTP_CAP_DSN = 1u << 5,          /* RFC 3461 */
	SMTP_CAP_ENHANCED = 1u << 6,     /* RFC 2034 ENHANCEDSTATUSCODES */
	SMTP_CAP_STARTTLS = 1u << 7,     /* RFC 3207 */
	SMTP_CAP_AUTH = 1u << 8,         /* RFC 4954 */
	SMTP_CAP_BINARYMIME = 1u << 9,   /* RFC 3030 */
};

enum smtp_auth_mech {
	SMTP_AUTH_PLAIN = 1u << 0,
	SMTP_AUTH_LOGIN = 1u << 1,
	SMTP_AUTH_CRAM_MD5 = 1u << 2,
	SMTP_AUTH_XOAUTH2 = 1u << 3,
	SMTP_AUTH_SCRAM_SHA_256 = 1u << 4,
	SMTP_AUTH_OAUTHBEARER = 1u << 5, /* RFC 7628 */
};

struct smtp_caps {
	unsigned flags;     /* enum smtp_cap */
	uint64_t size_max;  /* SIZE n; 0 = advertised without a limit, or not advertised */
	unsigned auth;      /* enum smtp_auth_mech */
};

/* Fill *caps from a 250 reply to EHLO (its first line, the greeting, is skipped). */
void smtp_caps_parse(const struct smtp_reply *ehlo, struct smtp_caps *caps);

#endif
