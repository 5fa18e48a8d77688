/* Names for every code the library returns. */
#include <string.h>

#include "smtpbulk.h"

const char *smtpbulk_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case SMTPBULK_EBADADDR: return "invalid address (empty, too long, or holds CR, LF, spaces or brackets)";
	case SMTPBULK_EBADPARAM: return "invalid host or hello name, or command argument (empty, too long, or holds control characters)";
	case SMTPBULK_ESEQUENCE: return "call out of order (mail, to, data, datasend, dataend)";
	case SMTPBULK_ENOHOST: return "no such host configured";
	case SMTPBULK_ERESOLVE: return "host name could not be resolved";
	case SMTPBULK_ESTOPPED: return "engine is not running";
	case SMTPBULK_EPROTO: return "malformed or unexpected reply from the server";
	case SMTPBULK_ETOOLONG: return "server reply longer than the RFC 5321 limits";
	case SMTPBULK_ECLOSED: return "server closed the connection";
	case SMTPBULK_EGREETING: return "server greeting was not 220";
	case SMTPBULK_EHELLO: return "server refused EHLO and HELO";
	case SMTPBULK_EMSGSIZE: return "message larger than the server's SIZE limit";
	case SMTPBULK_EHOSTDOWN: return "every connection to the host failed";
	case SMTPBULK_ECANCELLED: return "cancelled: the engine was destroyed first";
	case SMTPBULK_EBACKEND: return "requested I/O backend is not available";
	case SMTPBULK_ESERVER: return "refused by the server (see the reply)";
	case SMTPBULK_EUTF8: return "address needs SMTPUTF8, which the server lacks";
	case SMTPBULK_ETIMEDOUT: return "the server did not answer in time (hang)";
	case SMTPBULK_ESHUTDOWN: return "the server closed the connection with 421";
	case SMTPBULK_ETLS: return "TLS handshake or record failed";
	case SMTPBULK_ECERT: return "server certificate not trusted (unknown CA, wrong name, expired or not yet valid)";
	case SMTPBULK_ENOSTARTTLS: return "TLS required but the server does not offer STARTTLS or refused it";
	case SMTPBULK_EAUTH: return "authentication refused (bad credentials or mechanism)";
	case SMTPBULK_EAUTHTEMP: return "temporary authentication failure";
	case SMTPBULK_EAUTHMECH: return "no AUTH mechanism both sides support";
	case SMTPBULK_EAUTHPLAIN: return "AUTH refused on a connection without TLS (auth_plaintext not set)";
	case SMTPBULK_ETLSCONFIG: return "TLS setup failed (CA file, certificate or key)";
	case SMTPBULK_EBREAKER:
		return "host down: its transactions kept failing, probes too (circuit breaker)";
	case SMTPBULK_ESOURCE:
		return "the source address cannot be bound (not an address of this machine, or in use)";
	case SMTPBULK_ENOLMTP:
		return "the server refused LHLO: it does not speak LMTP";
	case SMTPBULK_ENODSN:
		return "the message asks for DSN and the server does not offer it";
	case SMTPBULK_ETOKEN:
		return "the token callback gave no bearer token (XOAUTH2, OAUTHBEARER)";
	case SMTPBULK_ETURN:
		return "TURN/ATURN are refused: obsolete and unsafe (RFC 2645)";
	case SMTPBULK_EJOURNAL:
		return "the journal file holds a line smtpbulk did not write";
	case SMTPBULK_EMESSAGE:
		return "not a mail message (no header block)";
	case SMTPBULK_ENOSENDER:
		return "the message has no From or Sender header for the envelope sender";
	case SMTPBULK_ENORCPTS:
		return "the message has no To, Cc or Bcc recipients";
	case SMTPBULK_ENOVAR:
		return "a template variable has no value";
	case SMTPBULK_EHEADERVAL:
		return "a template value with a line break or NUL would go into a header";
	default: break;
	}
	/* strerror() is not thread-safe in general, but glibc's returns static strings
	 * for known values, and that is what we hand out here. */
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}
