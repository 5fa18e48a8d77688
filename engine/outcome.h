/*
 * Outcome categories: what a message's result means for the sender's next step
 * (suppress the address, retry later, slow down, fix the message or the setup, look
 * at the network). Pure: no allocation, no I/O, no printing.
 *
 * How a result gets its category: the first rule that applies wins.
 *
 *  1. status DELIVERED or PARTIAL .......................................... delivered
 *  2. status CANCELLED; error ENOHOST, ESTOPPED, EBREAKER, ECANCELLED, EBADADDR,
 *     EBADPARAM, ESEQUENCE, EBACKEND, ETLSCONFIG (this side's TLS files), ESOURCE
 *     (a source address this machine does not have), ETOKEN (the caller's token
 *     callback had no token); or
 *     -ENOMEM, -EMFILE, -ENFILE, -EINVAL, -EBADF, -ENOSYS, -ECANCELED, -EPERM,
 *     -EACCES (this machine's trouble, not the network's) .................. local
 *  3. a 4xx or 5xx reply decided it:
 *     a 4xx that asks to slow down (sb_reply_throttles below) .............. throttled
 *     any other 4xx with error ESHUTDOWN (a 421 ending the connection) ..... network
 *     then by the enhanced status code (RFC 3463) when the reply has one whose
 *     subject is not 0 (X.0.x says nothing, so the text decides):
 *       5.1.7, 5.1.8: the sender's address or domain, not the recipient's .. policy
 *       5.1.x: no such mailbox or domain (5.1.1, 5.1.2, 5.1.10 null MX) .... hard_bounce
 *       5.2.1 disabled; 5.4.1 (Microsoft's "Recipient address rejected:
 *       Access denied"), 5.4.4 unroutable, 5.4.310 (Microsoft: no such DNS
 *       domain) ............................................................ hard_bounce
 *       X.2.2 mailbox full, even as 5xx: the mailbox exists and may empty .. soft
 *       X.2.3, X.3.4 message too large: a retry as is fails again .......... too_large
 *       X.5.3 too many recipients (a per-transaction cap) .................. soft
 *       X.5.x syntax or sequence, X.6.x a malformed message ................ protocol
 *       5.7.x spam, reputation, blocklist, authentication, relaying ........ policy
 *       any other 4xx ...................................................... soft
 *       any other 5xx ...................................................... other
 *     else by the reply code and the text (case-insensitive substrings):
 *       4xx ................................................................ soft
 *       500, 501, 502, 503, 504, 555 ....................................... protocol
 *       5xx saying "message size", "too big", "too large" .................. too_large
 *       5xx saying "spam", "block", "blacklist", "prohibit", "relay", "denied",
 *       "policy", "reputation", "authenticat", "spf", "dkim", "dmarc",
 *       "sender verify" .................................................... policy
 *       5xx saying "mailbox full", "mailbox is full", "quota", "storage
 *       allocation" ........................................................ soft
 *       5xx saying "user unknown", "unknown user", "no such user", "does not
 *       exist", "doesn't exist", "doesn't have a", "not found", "mailbox
 *       unavailable", "no mailbox", "invalid recipient", "unrouteable",
 *       "unroutable", "no longer valid", "is disabled" ..................... hard_bounce
 *       any other 5xx ...................................................... other
 *  4. by the error, when no 4xx or 5xx reply decided it:
 *     EMSGSIZE (larger than the server's SIZE) ............................. too_large
 *     EAUTH, EAUTHMECH, EAUTHPLAIN ......................................... policy
 *     EAUTHTEMP (AUTH failed for now) ...................................... soft
 *     EPROTO, ETOOLONG, EGREETING, EHELLO, EUTF8 ........................... protocol
 *     ECLOSED, ETIMEDOUT, ETLS, ECERT, ENOSTARTTLS, EHOSTDOWN, ERESOLVE,
 *     ESHUTDOWN, and any other -errno (ECONNREFUSED, ECONNRESET, ETIMEDOUT,
 *     ENETUNREACH, EHOSTUNREACH, EPIPE, ...) ............................... network
 *  5. by the status: TIMED_OUT network, FAILED soft, REJECTED (or anything
 *     else) other.
 *
 * Throttling is read from the reply alone: a 421, 450, 451 or 452 whose enhanced code
 * is 4.7.x (a temporary policy refusal: in bulk sending, reputation and volume),
 * 4.3.2 (not accepting network messages) or 4.4.5 (congestion), or whose text holds a
 * throttling pattern. Never 4.5.3 (too many recipients, and OpenSMTPD's per-session
 * message cap: a count, not a rate), and never a reply that says it greylists
 * ("greylist", "graylist": milter-greylist answers "451 4.7.1 Greylisting in action";
 * waiting is the cure, not sending slower). A per-connection cap without such a code
 * (Exim's "421 too many messages in this connection", Yahoo's "421 Max message per
 * connection reached") is no rate either: a new connection takes the next message.
 */
#ifndef SB_OUTCOME_H
#define SB_OUTCOME_H

#include <stddef.h>

#include "smtpbulk.h"

/* Default reply-text patterns that mean "slow down" (case-insensitive substrings), NULL-terminated. */
extern const char *const sb_throttle_patterns_default[];

/*
 * 1 when a reply asks the sender to slow down: code 421, 450, 451 or 452 AND (enhanced
 * code 4.7.x, 4.3.2 or 4.4.5, OR the text contains one of patterns (NULL = the
 * defaults; empty patterns are skipped)). Never for enhanced 4.5.3, nor when the text
 * says it greylists. text may hold several lines separated by '\n' or CRLF, and may be
 * the raw reply with codes: without enh (NULL or enh_len 0), the enhanced code is read
 * from the text's start, after a "NNN " or "NNN-" when there is one. An enhanced code
 * whose class is not the reply's is ignored. Reads no further than text_len.
 */
int sb_reply_throttles(int code, const char *enh, size_t enh_len, const char *text,
		       size_t text_len, const char *const *patterns);

/* The category of a result. reply_code 0 when no reply decided it; enh "" or NULL when
 * none; text "" or NULL (NUL-terminated); patterns as for sb_reply_throttles. */
smtpbulk_category_t sb_category_of(smtpbulk_status_t st, int err, int reply_code,
				   const char *enh, const char *text,
				   const char *const *patterns);

#endif
