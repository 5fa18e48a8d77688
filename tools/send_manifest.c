#include "send_manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "smtpbulk.h"

void send_record_free(struct send_record *r)
{
	free(r->id);
	free(r->from);
	for (size_t i = 0; i < r->n_to; i++)
		free(r->to[i]);
	free(r->to);
	free(r->body);
	free(r->envid);
	free(r->source_ref);
	for (size_t i = 0; r->orcpts && i < r->n_to; i++)
		free(r->orcpts[i]);
	free(r->orcpts);
	memset(r, 0, sizeof(*r));
}

__attribute__((format(printf, 4, 5))) static int fail(struct send_record *r, char *why,
						       size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
	send_record_free(r);
	return -1;
}

/* The whole file at path, at most max bytes. */
int send_read_file(const char *path, size_t max, char **out, size_t *len, char *why, size_t cap)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(why, cap, "file %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		fclose(f);
		snprintf(why, cap, "file %s: not a regular file", path);
		return -1;
	}
	if (st.st_size > (off_t)max) {
		fclose(f);
		snprintf(why, cap, "file %s: %lld bytes, more than --max-size %zu", path,
			 (long long)st.st_size, max);
		return -1;
	}
	char *b = malloc((size_t)st.st_size + 1);
	size_t n = b ? fread(b, 1, (size_t)st.st_size + 1, f) : 0;
	int err = ferror(f);
	fclose(f);
	if (!b || err || n > (size_t)st.st_size) { /* it grew while read: not a snapshot */
		free(b);
		snprintf(why, cap, "file %s: %s", path, !b ? "out of memory" : "read failed");
		return -1;
	}
	if (n == 0) {
		free(b);
		snprintf(why, cap, "file %s: empty", path);
		return -1;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

/* Beyond the library's rules (no CR, LF, NUL, brackets inside): no blanks either, as
 * RFC 5321 has none outside a quoted local part, which a manifest has no need for. */
static int addr_ok(const char *a)
{
	return strpbrk(a, " \t") == NULL;
}

static int add_rcpt(struct send_record *r, json_t *v, char *why, size_t cap)
{
	const char *a = json_string_value(v);
	if (!a)
		return snprintf(why, cap, "\"to\": every recipient must be a string"), -1;
	if (!addr_ok(a) || smtpbulk_check_address(a) <= 0)
		return snprintf(why, cap, "\"to\": bad address \"%.200s\"", a), -1;
	char **t = realloc(r->to, (r->n_to + 1) * sizeof(*t));
	if (!t || !(t[r->n_to] = strdup(a))) {
		if (t)
			r->to = t;
		return snprintf(why, cap, "out of memory"), -1;
	}
	r->to = t;
	r->n_to++;
	return 0;
}

/* The last template read: records of one mailing name the same file, read once. Main
 * thread only (the manifest is parsed there). */
static struct {
	char *path, *data;
	size_t len;
} tpl_cache;

static int template_text(const char *path, size_t max, const char **data, size_t *len,
			 char *why, size_t cap)
{
	if (!tpl_cache.path || strcmp(tpl_cache.path, path) != 0) {
		char *d, *p;
		size_t n;
		if (send_read_file(path, max, &d, &n, why, cap))
			return -1;
		if (!(p = strdup(path))) {
			free(d);
			return snprintf(why, cap, "out of memory"), -1;
		}
		free(tpl_cache.path);
		free(tpl_cache.data);
		tpl_cache.path = p;
		tpl_cache.data = d;
		tpl_cache.len = n;
	}
	*data = tpl_cache.data;
	*len = tpl_cache.len;
	return 0;
}

int send_render(const char *tpl, size_t tpl_len, const smtpbulk_var_t *vars, size_t n,
		size_t max_body, char **body, size_t *body_len, char *why, size_t cap)
{
	char missing[128];
	int rc = smtpbulk_template_render(tpl, tpl_len, vars, n, body, body_len, missing,
					  sizeof(missing));
	if (rc == SMTPBULK_ENOVAR)
		return snprintf(why, cap, "template variable {{%s}} has no value", missing), -1;
	if (rc)
		return snprintf(why, cap, "template: %s", smtpbulk_strerror(rc)), -1;
	if (*body_len > max_body) {
		free(*body);
		*body = NULL;
		return snprintf(why, cap, "the message is more than --max-size %zu bytes", max_body), -1;
	}
	return 0;
}

/* "template": a path, "vars": an object of strings (numbers and booleans as JSON
 * writes them). */
static int from_template(struct send_record *r, json_t *tpl, json_t *vars, size_t max_body,
			 char *why, size_t cap)
{
	if (!json_is_string(tpl))
		return snprintf(why, cap, "\"template\" must be a path"), -1;
	if (vars && !json_is_object(vars))
		return snprintf(why, cap, "\"vars\" must be an object"), -1;
	const char *data;
	size_t len;
	if (template_text(json_string_value(tpl), max_body, &data, &len, why, cap))
		return -1;
	size_t n = vars ? json_object_size(vars) : 0, i = 0;
	smtpbulk_var_t *v = calloc(n ? n : 1, sizeof(*v));
	char **owned = calloc(n ? n : 1, sizeof(*owned));
	int rc = v && owned ? 0 : -1;
	if (rc)
		snprintf(why, cap, "out of memory");
	const char *key;
	json_t *val;
	if (vars)
		json_object_foreach(vars, key, val) {
			if (rc)
				break;
			v[i].name = key;
			if (json_is_string(val)) {
				v[i].value = json_string_value(val);
			} else if (json_is_number(val) || json_is_boolean(val)) {
				owned[i] = json_dumps(val, JSON_ENCODE_ANY);
				v[i].value = owned[i];
				if (!owned[i])
					rc = -1, snprintf(why, cap, "out of memory");
			} else {
				rc = -1;
				snprintf(why, cap, "\"vars\": \"%.100s\" must be a string or a number",
					 key);
			}
			i++;
		}
	if (!rc)
		rc = send_render(data, len, v, n, max_body, &r->body, &r->body_len, why, cap);
	for (size_t k = 0; owned && k < n; k++)
		free(owned[k]);
	free(owned);
	free(v);
	return rc;
}

/* "host": which of the hosts given. */
static int take_host(struct send_record *r, json_t *h, const struct send_manifest_ctx *ctx,
		     char *why, size_t cap)
{
	if (!h)
		return 0;
	const char *name = json_string_value(h);
	if (!name)
		return snprintf(why, cap, "\"host\" must be a string"), -1;
	for (size_t i = 0; i < ctx->n_hosts; i++)
		if (strcmp(ctx->hosts[i], name) == 0) {
			r->host = (int)i + 1;
			return 0;
		}
	return snprintf(why, cap, "\"host\": \"%.200s\" is not one of the hosts given (the "
			"target and --extra-host)", name), -1;
}

static int notify_word(const char *w, size_t n, unsigned *bits)
{
	static const struct { const char *name; unsigned bit; } words[] = {
		{"NEVER", SMTPBULK_NOTIFY_NEVER}, {"SUCCESS", SMTPBULK_NOTIFY_SUCCESS},
		{"FAILURE", SMTPBULK_NOTIFY_FAILURE}, {"DELAY", SMTPBULK_NOTIFY_DELAY},
	};
	for (size_t i = 0; i < 4; i++)
		if (strlen(words[i].name) == n && strncasecmp(words[i].name, w, n) == 0) {
			*bits |= words[i].bit;
			return 0;
		}
	return -1;
}

/* "dsn": {"ret", "envid", "notify", "orcpt"}; the library checks the rest at submit. */
static int take_dsn(struct send_record *r, json_t *d, char *why, size_t cap)
{
	if (!d)
		return 0;
	if (!json_is_object(d))
		return snprintf(why, cap, "\"dsn\" must be an object"), -1;
	const char *key;
	json_t *v;
	json_object_foreach(d, key, v) {
		if (strcmp(key, "ret") != 0 && strcmp(key, "envid") != 0 &&
		    strcmp(key, "notify") != 0 && strcmp(key, "orcpt") != 0)
			return snprintf(why, cap, "\"dsn\": unknown field \"%.100s\" (ret, "
					"envid, notify, orcpt)", key), -1;
	}
	json_t *ret = json_object_get(d, "ret");
	if (ret) {
		const char *s = json_string_value(ret);
		if (s && strcasecmp(s, "FULL") == 0)
			r->dsn_ret = SMTPBULK_DSN_RET_FULL;
		else if (s && strcasecmp(s, "HDRS") == 0)
			r->dsn_ret = SMTPBULK_DSN_RET_HDRS;
		else
			return snprintf(why, cap, "\"dsn\": \"ret\" is FULL or HDRS"), -1;
	}
	json_t *envid = json_object_get(d, "envid");
	if (envid) {
		if (!json_is_string(envid) || !json_string_length(envid))
			return snprintf(why, cap, "\"dsn\": \"envid\" must be a string"), -1;
		if (!(r->envid = strdup(json_string_value(envid))))
			return snprintf(why, cap, "out of memory"), -1;
	}
	json_t *notify = json_object_get(d, "notify");
	if (notify) {
		size_t i;
		json_t *w;
		if (json_is_string(notify)) {
			const char *s = json_string_value(notify);
			for (const char *p = s; *p;) {
				size_t n = strcspn(p, ",");
				if (notify_word(p, n, &r->dsn_notify))
					return snprintf(why, cap, "\"dsn\": \"notify\": NEVER, or "
							"SUCCESS, FAILURE, DELAY"), -1;
				p += n + (p[n] == ',');
			}
		} else if (json_is_array(notify)) {
			json_array_foreach(notify, i, w) {
				const char *s = json_string_value(w);
				if (!s || notify_word(s, strlen(s), &r->dsn_notify))
					return snprintf(why, cap, "\"dsn\": \"notify\": NEVER, or "
							"SUCCESS, FAILURE, DELAY"), -1;
			}
		}
		if (!r->dsn_notify || ((r->dsn_notify & SMTPBULK_NOTIFY_NEVER) &&
				       r->dsn_notify != SMTPBULK_NOTIFY_NEVER))
			return snprintf(why, cap, "\"dsn\": \"notify\": NEVER alone, or any of "
					"SUCCESS, FAILURE, DELAY"), -1;
	}
	json_t *orcpt = json_object_get(d, "orcpt");
	if (orcpt) {
		if (!json_is_array(orcpt) || json_array_size(orcpt) != r->n_to)
			return snprintf(why, cap, "\"dsn\": \"orcpt\" must be a list with one "
					"entry per recipient (null for none)"), -1;
		if (!(r->orcpts = calloc(r->n_to, sizeof(*r->orcpts))))
			return snprintf(why, cap, "out of memory"), -1;
		for (size_t i = 0; i < r->n_to; i++) {
			json_t *o = json_array_get(orcpt, i);
			if (json_is_null(o))
				continue;
			if (!json_is_string(o))
				return snprintf(why, cap, "\"dsn\": \"orcpt\" entries are strings "
						"or null"), -1;
			if (!(r->orcpts[i] = strdup(json_string_value(o))))
				return snprintf(why, cap, "out of memory"), -1;
		}
	}
	return 0;
}

static int header_name_ok(const char *n)
{
	if (!*n || strlen(n) > 76)
		return 0;
	for (; *n; n++)
		if (*n < 33 || *n > 126 || *n == ':')
			return 0;
	return 1;
}

/* "headers": {"Name": "value"} in front of the body, each through the template
 * renderer so a non-ASCII value is RFC 2047-encoded (the value is a variable: any
 * "{{" in it stays text). */
static int take_headers(struct send_record *r, json_t *h, size_t max_body, char *why,
			size_t cap)
{
	if (!h)
		return 0;
	if (!json_is_object(h))
		return snprintf(why, cap, "\"headers\" must be an object"), -1;
	char *all = NULL;
	size_t all_len = 0;
	const char *key;
	json_t *v;
	json_object_foreach(h, key, v) {
		if (!header_name_ok(key)) {
			free(all);
			return snprintf(why, cap, "\"headers\": \"%.100s\" is not a header name",
					key), -1;
		}
		if (!json_is_string(v)) {
			free(all);
			return snprintf(why, cap, "\"headers\": \"%.100s\" must be a string", key), -1;
		}
		char tpl[128];
		snprintf(tpl, sizeof(tpl), "%s: {{v}}\n", key);
		smtpbulk_var_t var = {"v", json_string_value(v)};
		char *line;
		size_t n;
		if (send_render(tpl, strlen(tpl), &var, 1, max_body, &line, &n, why, cap)) {
			free(all);
			return -1;
		}
		char *grown = realloc(all, all_len + n);
		if (!grown) {
			free(line);
			free(all);
			return snprintf(why, cap, "out of memory"), -1;
		}
		all = grown;
		memcpy(all + all_len, line, n);
		all_len += n;
		free(line);
	}
	if (!all_len)
		return 0;
	if (all_len + r->body_len > max_body) {
		free(all);
		return snprintf(why, cap, "the message is more than --max-size %zu bytes", max_body), -1;
	}
	char *b = malloc(all_len + r->body_len + 1);
	if (!b) {
		free(all);
		return snprintf(why, cap, "out of memory"), -1;
	}
	memcpy(b, all, all_len);
	memcpy(b + all_len, r->body, r->body_len);
	b[all_len + r->body_len] = '\0';
	free(all);
	free(r->body);
	r->body = b;
	r->body_len += all_len;
	return 0;
}

int send_manifest_parse(const char *line, size_t len, uint64_t lineno,
			const struct send_manifest_ctx *ctx, struct send_record *r, char *why,
			size_t cap)
{
	size_t max_body = ctx->max_body;
	memset(r, 0, sizeof(*r));
	json_error_t jerr;
	json_t *o = json_loadb(line, len, 0, &jerr);
	if (!o)
		return fail(r, why, cap, "not JSON: %s (column %d)", jerr.text, jerr.column);
	int rc = -1;
	if (!json_is_object(o)) {
		fail(r, why, cap, "not a JSON object");
		goto out;
	}
	json_t *id = json_object_get(o, "id");
	char num[32];
	if (json_is_integer(id))
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
	else
		snprintf(num, sizeof(num), "%" PRIu64, lineno);
	if (id && !json_is_string(id) && !json_is_integer(id)) {
		fail(r, why, cap, "\"id\" must be a string or a number");
		goto out;
	}
	const char *ids = json_is_string(id) ? json_string_value(id) : num;
	if (!*ids || strlen(ids) > 200 || strpbrk(ids, "\r\n")) {
		fail(r, why, cap, "\"id\" must be 1 to 200 characters on one line");
		goto out;
	}
	json_t *from = json_object_get(o, "from");
	if (!json_is_string(from)) {
		fail(r, why, cap, "\"from\" is missing or not a string");
		goto out;
	}
	const char *fs = json_string_value(from);
	if (!addr_ok(fs) || smtpbulk_check_address(fs) < 0) {
		fail(r, why, cap, "\"from\": bad address \"%.200s\"", fs);
		goto out;
	}
	if (!(r->id = strdup(ids)) || !(r->from = strdup(fs))) {
		fail(r, why, cap, "out of memory");
		goto out;
	}
	json_t *to = json_object_get(o, "to");
	if (json_is_string(to)) {
		if (add_rcpt(r, to, why, cap)) {
			send_record_free(r);
			goto out;
		}
	} else if (json_is_array(to)) {
		size_t i;
		json_t *v;
		json_array_foreach(to, i, v) {
			if (add_rcpt(r, v, why, cap)) {
				send_record_free(r);
				goto out;
			}
		}
	}
	if (!r->n_to) {
		fail(r, why, cap, "no recipients (\"to\")");
		goto out;
	}
	json_t *raw = json_object_get(o, "raw"), *file = json_object_get(o, "file"),
	       *tpl = json_object_get(o, "template");
	if ((raw != NULL) + (file != NULL) + (tpl != NULL) != 1) {
		fail(r, why, cap, "exactly one of \"template\", \"raw\" and \"file\" is needed");
		goto out;
	}
	if (raw) {
		if (!json_is_string(raw) || json_string_length(raw) == 0) {
			fail(r, why, cap, "\"raw\" must be a non-empty string");
			goto out;
		}
		if (json_string_length(raw) > max_body) {
			fail(r, why, cap, "\"raw\": more than --max-size %zu bytes", max_body);
			goto out;
		}
		r->body_len = json_string_length(raw);
		if (!(r->body = malloc(r->body_len))) {
			fail(r, why, cap, "out of memory");
			goto out;
		}
		memcpy(r->body, json_string_value(raw), r->body_len);
	} else if (file) {
		if (!json_is_string(file)) {
			fail(r, why, cap, "\"file\" must be a path");
			goto out;
		}
		if (send_read_file(json_string_value(file), max_body, &r->body, &r->body_len, why, cap)) {
			send_record_free(r);
			goto out;
		}
	} else if (from_template(r, tpl, json_object_get(o, "vars"), max_body, why, cap)) {
		send_record_free(r);
		goto out;
	}
	if (take_host(r, json_object_get(o, "host"), ctx, why, cap) ||
	    take_dsn(r, json_object_get(o, "dsn"), why, cap) ||
	    take_headers(r, json_object_get(o, "headers"), max_body, why, cap)) {
		send_record_free(r);
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}
