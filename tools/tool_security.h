/*
 * TLS and AUTH from a command line, shared by smtpbulk load and smtpbulk send: the
 * options, their checks (combinations that make no sense, a password only from a file
 * or the environment, never the command line), and the library's options from them.
 */
#ifndef SB_TOOL_SECURITY_H
#define SB_TOOL_SECURITY_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include "smtpbulk.h"

/* Option values for getopt_long, clear of any command's own. */
enum {
	TOOL_OPT_TLS = 1000, TOOL_OPT_TLS_VERIFY, TOOL_OPT_CA, TOOL_OPT_TLS_NAME, TOOL_OPT_CERT,
	TOOL_OPT_KEY, TOOL_OPT_TLS_MIN, TOOL_OPT_AUTH, TOOL_OPT_USER, TOOL_OPT_PASSWORD_FILE,
	TOOL_OPT_AUTH_PLAINTEXT, TOOL_OPT_PASSWORD,
};

#define TOOL_SECURITY_LONGOPTS                                                           \
	{"tls", required_argument, NULL, TOOL_OPT_TLS},                                  \
	{"tls-verify", no_argument, NULL, TOOL_OPT_TLS_VERIFY},                           \
	{"ca", required_argument, NULL, TOOL_OPT_CA},                                     \
	{"tls-name", required_argument, NULL, TOOL_OPT_TLS_NAME},                         \
	{"cert", required_argument, NULL, TOOL_OPT_CERT},                                 \
	{"key", required_argument, NULL, TOOL_OPT_KEY},                                   \
	{"tls-min", required_argument, NULL, TOOL_OPT_TLS_MIN},                           \
	{"auth", required_argument, NULL, TOOL_OPT_AUTH},                                 \
	{"user", required_argument, NULL, TOOL_OPT_USER},                                 \
	{"password-file", required_argument, NULL, TOOL_OPT_PASSWORD_FILE},               \
	{"auth-plaintext", no_argument, NULL, TOOL_OPT_AUTH_PLAINTEXT},                   \
	{"password", required_argument, NULL, TOOL_OPT_PASSWORD}

enum { TOOL_TLS_NONE = -1, TOOL_TLS_SMTPS, TOOL_TLS_STARTTLS, TOOL_TLS_STARTTLS_OPT };
enum { TOOL_PASSWORD_BUF = 512 }; /* 255 bytes are allowed: room to see a longer one */

struct tool_security {
	int tls; /* TOOL_TLS_* */
	int tls_verify, auth_plaintext;
	const char *ca, *tls_name, *cert, *key;
	const char *auth, *user, *password_file;
	uint64_t tls_min; /* 0, 12 or 13 */
	char password[TOOL_PASSWORD_BUF]; /* wiped once the library has its own copy */
};

void tool_security_init(struct tool_security *s);

/* Option c with value v: 1 when it is none of these, 0 taken, -1 a bad value (*bad
 * then names the option). --password is always -1: a command line is visible to every
 * local user. */
int tool_security_option(struct tool_security *s, int c, const char *v, const char **bad);

/* The options together, and the password read (--password-file, else the environment
 * variable SMTPBULK_PASSWORD). 0, or -1 with why (one line). */
int tool_security_check(struct tool_security *s, char *why, size_t cap);

/* The files named can be read: 0, or -1 with why (the file named, and the errno). */
int tool_security_check_files(const struct tool_security *s, char *why, size_t cap);

/* Into the library's options; sec is pointed to and must live until create. */
void tool_security_apply(const struct tool_security *s, smtpbulk_options_t *o,
			 smtpbulk_security_t *sec);

/* Wipe the password (after create: the library keeps its own copy). */
void tool_security_wipe(struct tool_security *s);

#endif
