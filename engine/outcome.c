#include "outcome.h"

#include <errno.h>
#include <string.h>

#include "smtp_reply.h"

/*
 * Each default is a phrase real servers use to ask for a lower rate, and none is one
 * that a greylisting, over-quota or per-connection-cap reply uses too. Left out on
 * purpose: "try again later" (greylisting, Gmail's "421 4.3.0 Temporary System Problem.
 * Try again later", Exim's "451 Temporary local problem - please try later"), "too many
 * messages" (Exim's per-connection cap, OpenSMTPD's 4.5.3 cap) and "temporarily
 * deferred" (Yahoo also says it for a sender domain that does not resolve).
 */
const char *const sb_throttle_patterns_default[] = {
	/* Gmail 4.7.28 "temporarily rate limited", Outlook 4.7.650 "rate limited due to IP
	 * reputation", "Connection rate limit exceeded" */
	"rate limit",
	/* rspamd's ratelimit module: Hostinger's "451 4.7.1 Ratelimit "..." exceeded" */
	"ratelimit",
	/* Comcast "421 4.1.0 ... Throttled - try again later": a 4.1.0, only the text tells */
	"throttl",
	/* Postfix anvil "421 4.7.0 host Error: too many connections from ip" */
	"too many connections",
	/* Exim "421 Too many concurrent SMTP connections from this IP address" (no 4.x.x) */
	"too many concurrent",
	/* Yahoo "450 User is receiving mail too quickly" (no 4.x.x), Gmail's 450 4.2.1 */
	"too quickly",
	/* Gmail 450 4.2.1 "receiving mail at a rate that prevents additional messages" */
	"at a rate that prevents",
	/* "451 4.7.1 ... Client host rejected: Please try again slower" (Sisimai: speeding) */
	"try again slower",
	/* Gmail's SMTP relay "450 4.2.1 Peak SMTP relay limit exceeded for customer" */
	"relay limit",
	/* Yahoo "[TSS04] ... temporarily deferred due to unexpected volume or user complaints" */
	"unexpected volume",
	/* Yahoo's deferral tags [TS01]..[TS03], [TSS04]..., should a relay have dropped the
	 * 4.7.x that comes with them */
	"[ts0", "[tss0",
	NULL,
};

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Does t[0..n) contain needle (NUL-terminated; "" never matches), ignoring ASCII case? */
static int has_ci(const char *t, size_t n, const char *needle)
{
	size_t nl = strlen(needle);
	if (!t || nl == 0 || nl > n)
		return 0;
	for (size_t i = 0; i + nl <= n; i++) {
		size_t k = 0;
		while (k < nl && lower(t[i + k]) == lower(needle[k]))
			k++;
		if (k == nl)
			return 1;
	}
	return 0;
}

static int has_any_ci(const char *t, size_t n, const char *const *needles)
{
	for (; *needles; needles++)
		if (has_ci(t, n, *needles))
			return 1;
	return 0;
}

struct enh { int cls, subj, det; }; /* "5.1.10": 5, 1, 10 */

static int parse_num(const char *s, size_t n, size_t *i)
{
	int v = 0;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9')
		v = v * 10 + (s[(*i)++] - '0');
	return v;
}

/* An enhanced code of class cls spanning exactly s[0..n)? */
static int enh_parse(const char *s, size_t n, int cls, struct enh *e)
{
	if (!s || n == 0 || smtp_enhanced_code_len(s, n, cls) != n)
		return 0;
	size_t i = 2; /* smtp_enhanced_code_len checked "c.d{1,3}.d{1,3}" */
	e->cls = cls;
	e->subj = parse_num(s, n, &i);
	i++;
	e->det = parse_num(s, n, &i);
	return 1;
}

/* The reply's enhanced code: enh when given, else at the start of text (after a
 * "NNN " or "NNN-" when the text is a raw reply). */
static int enh_get(int code, const char *enh, size_t enh_len, const char *text,
		   size_t text_len, struct enh *e)
{
	int cls = code / 100;
	if (enh && enh_len)
		return enh_parse(enh, enh_len, cls, e);
	if (!text)
		return 0;
	size_t p = 0;
	if (text_len >= 4 && text[0] >= '0' && text[0] <= '9' && text[1] >= '0' &&
	    text[1] <= '9' && text[2] >= '0' && text[2] <= '9' &&
	    (text[3] == ' ' || text[3] == '-'))
		p = 4;
	size_t l = smtp_enhanced_code_len(text + p, text_len - p, cls);
	return l && enh_parse(text + p, l, cls, e);
}

static const char *const greylist_words[] = {"greylist", "graylist", NULL};

static int throttles(int code, const struct enh *e, int have_enh, const char *text,
		     size_t text_len, const char *const *patterns)
{
	if (code != 421 && code != 450 && code != 451 && code != 452)
		return 0;
	if (have_enh && e->subj == 5 && e->det == 3)
		return 0;
	if (has_any_ci(text, text_len, greylist_words))
		return 0;
	if (have_enh && (e->subj == 7 || (e->subj == 3 && e->det == 2) ||
			 (e->subj == 4 && e->det == 5)))
		return 1;
	return has_any_ci(text, text_len, patterns ? patterns : sb_throttle_patterns_default);
}

int sb_reply_throttles(int code, const char *enh, size_t enh_len, const char *text,
		       size_t text_len, const char *const *patterns)
{
	struct enh e;
	if (!text)
		text_len = 0;
	int have = enh_get(code, enh, enh_len, text, text_len, &e);
	return throttles(code, &e, have, text, text_len, patterns);
}

static const char *const size_words[] = {"message size", "too big", "too large", NULL};
static const char *const policy_words[] = {
	"spam", "block", "blacklist", "prohibit", "relay", "denied", "policy", "reputation",
	"authenticat", "spf", "dkim", "dmarc", "sender verify", NULL};
static const char *const full_words[] = {"mailbox full", "mailbox is full", "quota",
					 "storage allocation", NULL};
static const char *const unknown_words[] = {
	"user unknown", "unknown user", "no such user", "does not exist", "doesn't exist",
	"doesn't have a", "not found", "mailbox unavailable", "no mailbox",
	"invalid recipient", "unrouteable", "unroutable", "no longer valid", "is disabled",
	NULL};

/* A 4xx or 5xx by its enhanced code; -1 when the code does not decide. */
static int by_enh(const struct enh *e)
{
	int perm = e->cls == 5;
	switch (e->subj) {
	case 1:
		if (!perm)
			return -1;
		return (e->det == 7 || e->det == 8) ? SMTPBULK_CAT_POLICY
						     : SMTPBULK_CAT_HARD_BOUNCE;
	case 2:
		if (e->det == 2)
			return SMTPBULK_CAT_SOFT;
		if (e->det == 3)
			return SMTPBULK_CAT_TOO_LARGE;
		return (perm && e->det == 1) ? SMTPBULK_CAT_HARD_BOUNCE : -1;
	case 3:
		return e->det == 4 ? SMTPBULK_CAT_TOO_LARGE : -1;
	case 4:
		if (perm && (e->det == 1 || e->det == 4 || e->det == 310))
			return SMTPBULK_CAT_HARD_BOUNCE;
		return -1;
	case 5:
		return e->det == 3 ? SMTPBULK_CAT_SOFT : SMTPBULK_CAT_PROTOCOL;
	case 6:
		return SMTPBULK_CAT_PROTOCOL;
	case 7:
		return perm ? SMTPBULK_CAT_POLICY : -1;
	default:
		return -1;
	}
}

/* A 5xx without an enhanced code that says something, by its code and text. */
static smtpbulk_category_t by_text(int code, const char *text, size_t n)
{
	if ((code >= 500 && code <= 504) || code == 555)
		return SMTPBULK_CAT_PROTOCOL;
	if (has_any_ci(text, n, size_words))
		return SMTPBULK_CAT_TOO_LARGE;
	if (has_any_ci(text, n, policy_words))
		return SMTPBULK_CAT_POLICY;
	if (has_any_ci(text, n, full_words))
		return SMTPBULK_CAT_SOFT;
	if (has_any_ci(text, n, unknown_words))
		return SMTPBULK_CAT_HARD_BOUNCE;
	return SMTPBULK_CAT_OTHER;
}

/* Ended by this side: its own refusals and its machine's trouble, not the network's. */
static int err_is_local(int err)
{
	switch (err) {
	case SMTPBULK_ENOHOST: case SMTPBULK_ESTOPPED: case SMTPBULK_EBREAKER:
	case SMTPBULK_ESOURCE: case SMTPBULK_ENODSN: case SMTPBULK_ETOKEN:
	case SMTPBULK_ECANCELLED: case SMTPBULK_EBADADDR: case SMTPBULK_EBADPARAM:
	case SMTPBULK_ESEQUENCE: case SMTPBULK_EBACKEND: case SMTPBULK_ETLSCONFIG:
	case -ENOMEM: case -EMFILE: case -ENFILE: case -EINVAL: case -EBADF: case -ENOSYS:
	case -ECANCELED: case -EPERM: case -EACCES:
		return 1;
	default:
		return 0;
	}
}

/* By the error alone; -1 when it does not decide. */
static int by_err(int err)
{
	switch (err) {
	case SMTPBULK_EMSGSIZE:
		return SMTPBULK_CAT_TOO_LARGE;
	case SMTPBULK_EAUTH: case SMTPBULK_EAUTHMECH: case SMTPBULK_EAUTHPLAIN:
		return SMTPBULK_CAT_POLICY;
	case SMTPBULK_EAUTHTEMP:
		return SMTPBULK_CAT_SOFT;
	case SMTPBULK_EPROTO: case SMTPBULK_ETOOLONG: case SMTPBULK_EGREETING:
	case SMTPBULK_EHELLO: case SMTPBULK_EUTF8: case SMTPBULK_ENOLMTP:
		return SMTPBULK_CAT_PROTOCOL;
	case SMTPBULK_ECLOSED: case SMTPBULK_ETIMEDOUT: case SMTPBULK_ETLS:
	case SMTPBULK_ECERT: case SMTPBULK_ENOSTARTTLS: case SMTPBULK_EHOSTDOWN:
	case SMTPBULK_ERESOLVE: case SMTPBULK_ESHUTDOWN:
		return SMTPBULK_CAT_NETWORK;
	default:
		return (err < 0 && err > -1000) ? SMTPBULK_CAT_NETWORK : -1;
	}
}

smtpbulk_category_t sb_category_of(smtpbulk_status_t st, int err, int reply_code,
				   const char *enh, const char *text,
				   const char *const *patterns)
{
	if (st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL)
		return SMTPBULK_CAT_DELIVERED;
	if (st == SMTPBULK_CANCELLED || err_is_local(err))
		return SMTPBULK_CAT_LOCAL;

	int cls = reply_code / 100;
	if (reply_code >= 400 && reply_code <= 599) {
		size_t tl = text ? strlen(text) : 0;
		/* An enhanced code is at most "5.999.999": a longer enh is no code. */
		size_t el = enh ? strnlen(enh, 12) : 0;
		struct enh e;
		int have = enh_get(reply_code, enh, el, text, tl, &e);
		if (cls == 4 && throttles(reply_code, &e, have, text, tl, patterns))
			return SMTPBULK_CAT_THROTTLED;
		if (cls == 4 && err == SMTPBULK_ESHUTDOWN)
			return SMTPBULK_CAT_NETWORK;
		if (have && e.subj != 0) {
			int c = by_enh(&e);
			if (c >= 0)
				return (smtpbulk_category_t)c;
			return cls == 4 ? SMTPBULK_CAT_SOFT : SMTPBULK_CAT_OTHER;
		}
		return cls == 4 ? SMTPBULK_CAT_SOFT : by_text(reply_code, text, tl);
	}

	int c = by_err(err);
	if (c >= 0)
		return (smtpbulk_category_t)c;
	switch (st) {
	case SMTPBULK_TIMED_OUT: return SMTPBULK_CAT_NETWORK;
	case SMTPBULK_FAILED: return SMTPBULK_CAT_SOFT;
	default: return SMTPBULK_CAT_OTHER;
	}
}

const char *smtpbulk_category_name(smtpbulk_category_t c)
{
	switch (c) {
	case SMTPBULK_CAT_DELIVERED: return "delivered";
	case SMTPBULK_CAT_HARD_BOUNCE: return "hard_bounce";
	case SMTPBULK_CAT_SOFT: return "soft";
	case SMTPBULK_CAT_THROTTLED: return "throttled";
	case SMTPBULK_CAT_POLICY: return "policy";
	case SMTPBULK_CAT_TOO_LARGE: return "too_large";
	case SMTPBULK_CAT_PROTOCOL: return "protocol";
	case SMTPBULK_CAT_NETWORK: return "network";
	case SMTPBULK_CAT_LOCAL: return "local";
	case SMTPBULK_CAT_OTHER: return "other";
	}
	return "unknown";
}

smtpbulk_category_t smtpbulk_reply_category(const smtpbulk_reply_t *reply)
{
	if (!reply || reply->code < 200 || reply->code > 599)
		return SMTPBULK_CAT_OTHER;
	if (reply->code < 400)
		return SMTPBULK_CAT_DELIVERED;
	smtpbulk_status_t st = reply->code >= 500 ? SMTPBULK_REJECTED : SMTPBULK_FAILED;
	return sb_category_of(st, SMTPBULK_ESERVER, reply->code, reply->enhanced, reply->text,
			      NULL);
}
