/* TLS and AUTH options of the command line (see tool_security.h). */
#include "tool_security.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool_util.h"

void tool_security_init(struct tool_security *s)
{
	memset(s, 0, sizeof(*s));
	s->tls = TOOL_TLS_NONE;
}

int tool_security_option(struct tool_security *s, int c, const char *v, const char **bad)
{
	switch (c) {
	case TOOL_OPT_TLS:
		if (!strcmp(v, "none")) s->tls = TOOL_TLS_NONE;
		else if (!strcmp(v, "smtps")) s->tls = TOOL_TLS_SMTPS;
		else if (!strcmp(v, "starttls")) s->tls = TOOL_TLS_STARTTLS;
		else if (!strcmp(v, "starttls-optional")) s->tls = TOOL_TLS_STARTTLS_OPT;
		else return *bad = "--tls", -1;
		return 0;
	case TOOL_OPT_TLS_VERIFY: s->tls_verify = 1; return 0;
	case TOOL_OPT_CA: s->ca = v; return 0;
	case TOOL_OPT_TLS_NAME: s->tls_name = v; return 0;
	case TOOL_OPT_CERT: s->cert = v; return 0;
	case TOOL_OPT_KEY: s->key = v; return 0;
	case TOOL_OPT_TLS_MIN:
		if (!strcmp(v, "1.2")) s->tls_min = 12;
		else if (!strcmp(v, "1.3")) s->tls_min = 13;
		else return *bad = "--tls-min", -1;
		return 0;
	case TOOL_OPT_AUTH: s->auth = v; return 0;
	case TOOL_OPT_USER:
		if (!*v)
			return *bad = "--user", -1;
		s->user = v;
		return 0;
	case TOOL_OPT_PASSWORD_FILE: s->password_file = v; return 0;
	case TOOL_OPT_AUTH_PLAINTEXT: s->auth_plaintext = 1; return 0;
	case TOOL_OPT_PASSWORD: return *bad = "--password", -1;
	default: return 1;
	}
}

static int read_password(struct tool_security *s, char *why, size_t cap)
{
	const char *env = getenv("SMTPBULK_PASSWORD");
	if (!s->password_file) {
		if (!env)
			return snprintf(why, cap, "--auth needs a password: --password-file FILE "
				       "or the SMTPBULK_PASSWORD environment variable"), -1;
		snprintf(s->password, sizeof(s->password), "%s", env);
		return 0;
	}
	FILE *pf = fopen(s->password_file, "r");
	if (!pf || !fgets(s->password, sizeof(s->password), pf)) {
		snprintf(why, cap, "cannot read a password from %s: %s", s->password_file,
			 pf ? "the file is empty" : strerror(errno));
		if (pf)
			fclose(pf);
		return -1;
	}
	fclose(pf);
	s->password[strcspn(s->password, "\r\n")] = '\0';
	return 0;
}

static int known_mechanism(const char *mech)
{
	static const char *const mechs[] = {"AUTO", "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2",
					    "SCRAM-SHA-256", "OAUTHBEARER"};
	for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
		if (strcasecmp(mech, mechs[i]) == 0)
			return 1;
	return 0;
}

int tool_security_check(struct tool_security *s, char *why, size_t cap)
{
	if (s->tls_verify && s->tls != TOOL_TLS_SMTPS && s->tls != TOOL_TLS_STARTTLS)
		return snprintf(why, cap, "--tls-verify needs --tls smtps or starttls (an "
			       "optional STARTTLS that may fall back to plaintext cannot be "
			       "verified)"), -1;
	if ((s->ca || s->tls_name || s->cert || s->key || s->tls_min) && s->tls < 0)
		return snprintf(why, cap, "--ca, --tls-name, --cert, --key and --tls-min need "
			       "--tls"), -1;
	if (s->ca && !s->tls_verify)
		return snprintf(why, cap, "--ca is for --tls-verify"), -1;
	if (!s->cert != !s->key)
		return snprintf(why, cap, "a certificate needs its key (--cert with --key)"), -1;
	if (!s->auth != !s->user)
		return snprintf(why, cap, "--auth and --user go together"), -1;
	if (!s->auth) {
		if (s->password_file || s->auth_plaintext)
			return snprintf(why, cap, "--password-file and --auth-plaintext are for "
				       "--auth"), -1;
		return 0;
	}
	if (read_password(s, why, cap))
		return -1;
	if (!*s->password || strlen(s->password) > 255 || strlen(s->user) > 255)
		return snprintf(why, cap, "the user name and password must be 1 to 255 bytes"), -1;
	if (!known_mechanism(s->auth))
		return snprintf(why, cap, "invalid value '%s' for --auth (AUTO, PLAIN, LOGIN, "
			       "CRAM-MD5, XOAUTH2, OAUTHBEARER or SCRAM-SHA-256)", s->auth), -1;
	if (s->tls < 0 && !s->auth_plaintext)
		return snprintf(why, cap, "--auth without --tls would send the password in the "
			       "clear; add --auth-plaintext if that is what you want"), -1;
	return 0;
}

int tool_security_check_files(const struct tool_security *s, char *why, size_t cap)
{
	const char *files[] = {s->ca, s->cert, s->key};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (files[i] && access(files[i], R_OK) != 0)
			return snprintf(why, cap, "cannot read %s: %s", files[i], strerror(errno)), -1;
	return 0;
}

static unsigned secure_mode(const struct tool_security *s)
{
	if (s->tls == TOOL_TLS_SMTPS)
		return s->tls_verify ? SMTPBULK_SECURE_SMTPS_VERIFY : SMTPBULK_SECURE_SMTPS;
	if (s->tls == TOOL_TLS_STARTTLS)
		return s->tls_verify ? SMTPBULK_SECURE_STARTTLS_VERIFY
				     : SMTPBULK_SECURE_STARTTLS_REQUIRE;
	if (s->tls == TOOL_TLS_STARTTLS_OPT)
		return SMTPBULK_SECURE_STARTTLS;
	return SMTPBULK_SECURE_NONE;
}

void tool_security_apply(const struct tool_security *s, smtpbulk_options_t *o,
			 smtpbulk_security_t *sec)
{
	*sec = (smtpbulk_security_t){
		.struct_size = sizeof(*sec),
		.secure = secure_mode(s),
		.tls_name = s->tls_name,
		.auth = s->auth,
		.user = s->user,
		.secret = s->auth ? s->password : NULL,
		.auth_plaintext = s->auth_plaintext,
	};
	if (sec->secure != SMTPBULK_SECURE_NONE || s->auth)
		o->security = sec;
	if (s->ca) {
		struct stat sst;
		if (stat(s->ca, &sst) == 0 && S_ISDIR(sst.st_mode))
			o->tls_ca_dir = s->ca;
		else
			o->tls_ca_file = s->ca;
	}
	o->tls_cert_file = s->cert;
	o->tls_key_file = s->key;
	o->tls_min_version = (unsigned)s->tls_min;
}

void tool_security_wipe(struct tool_security *s)
{
	explicit_bzero(s->password, sizeof(s->password));
}
