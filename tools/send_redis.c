/* Redis Streams for smtpbulk send and enqueue (see send_redis.h). */
#include "send_redis.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "smtpbulk_send.h"
#include "u64_set.h"

/* A finished entry's writes, queued by any thread, sent by the reading one. */
struct op {
	char *entry;
	char **fields; /* name, value, ...; NULL for a dead letter */
	size_t n_fields;
	char *why;     /* a dead letter's reason */
	int packed;    /* fields and entry are one allocation (fields) */
};

struct redis_source {
	struct redis_options o;
	char results[300], dead[300];
	redisContext *c;          /* NULL: down */
	uint64_t retry_at_ns;
	unsigned backoff_ms;
	int said_down;
	int own_done;             /* our own pending entries (id 0) were all read */
	char own_cursor[64];
	uint64_t claim_at_ns;
	char claim_cursor[64];
	redisReply *batch;        /* entries read, handed out one by one */
	redisReply **entries;     /* batch's entries array */
	size_t n_entries, next;
	int recovered;            /* the batch is pending or claimed entries */
	/* Shared with the workers (mu): the writes waiting, the entries in flight. */
	pthread_mutex_t mu;
	struct op *ops;
	size_t n_ops, cap_ops;
	struct u64_set held;      /* hashes of the entries in flight here, until their XACK */
	uint64_t acked, deadn;
	/* The heartbeat's (reading thread only): the ids of the entries handed out here, a
	 * superset of held's (an id acknowledged since goes at the next compaction; one
	 * twice, too), less those another consumer took; renewed every hb_ms. */
	struct hb_id *hb;
	size_t n_hb, cap_hb;
	unsigned hb_ms;
	uint64_t hb_at_ns;
	int said_hb;              /* the script's refusal, said once */
};

/* A stream id ("MS-SEQ", 41 characters at most) as the heartbeat keeps it. */
struct hb_id {
	char id[48];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- URL ------------------------------------------------------------------------ */

int redis_parse_url(const char *url, struct redis_target *t)
{
	memset(t, 0, sizeof(*t));
	if (strncmp(url, "redis+unix://", 13) == 0) {
		const char *path = url + 13, *q = strstr(path, "?stream=");
		if (!q || q == path || *path != '/' || !q[8] || (size_t)(q - path) >= sizeof(t->host))
			return -1;
		memcpy(t->host, path, (size_t)(q - path));
		snprintf(t->stream, sizeof(t->stream), "%s", q + 8);
		return strpbrk(t->stream, "&? ") ? -1 : 0;
	}
	if (strncmp(url, "redis://", 8) != 0)
		return -1;
	const char *h = url + 8, *slash = strchr(h, '/');
	if (!slash || !slash[1] || strlen(slash + 1) >= sizeof(t->stream))
		return -1;
	snprintf(t->stream, sizeof(t->stream), "%s", slash + 1);
	size_t hl = (size_t)(slash - h);
	const char *colon = memchr(h, ':', hl);
	t->port = 6379;
	if (colon) {
		char *end;
		long p = strtol(colon + 1, &end, 10);
		if (end != slash || p < 1 || p > 65535)
			return -1;
		t->port = (int)p;
		hl = (size_t)(colon - h);
	}
	if (!hl || hl >= sizeof(t->host))
		return -1;
	memcpy(t->host, h, hl);
	return strchr(t->stream, '/') ? -1 : 0;
}

static redisContext *connect_to(const struct redis_target *t, unsigned cmd_timeout_ms)
{
	struct timeval tv = {1, 0};
	redisContext *c = t->port ? redisConnectWithTimeout(t->host, t->port, tv)
				  : redisConnectUnixWithTimeout(t->host, tv);
	if (c && !c->err) {
		struct timeval ct = {cmd_timeout_ms / 1000, (cmd_timeout_ms % 1000) * 1000};
		redisSetTimeout(c, ct);
		return c;
	}
	if (c)
		redisFree(c);
	return NULL;
}

/* ---- the entries in flight here ----------------------------------------------------- */

static uint64_t key_of(const char *entry)
{
	return smtpbulk_hash64(entry, strlen(entry));
}

/* The heartbeat's list keeps what is still held, each once. */
static void hb_compact(struct redis_source *s)
{
	struct u64_set seen = {0};
	size_t w = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->n_hb; i++) {
		uint64_t k = key_of(s->hb[i].id);
		if (u64_set_has(&s->held, k) && u64_set_add(&seen, k) != 0) /* -1: kept twice */
			s->hb[w++] = s->hb[i];
	}
	pthread_mutex_unlock(&s->mu);
	s->n_hb = w;
	u64_set_free(&seen);
}

/* An entry handed out here, or taken back while held: renewed from now on. The list is
 * compacted before it grows, so it stays within twice what is held. */
static void hb_add(struct redis_source *s, const char *entry)
{
	size_t len = strlen(entry);
	if (len >= sizeof(s->hb[0].id))
		return; /* no stream id: not Redis's */
	if (s->n_hb == s->cap_hb) {
		hb_compact(s);
		if (s->n_hb * 2 >= s->cap_hb) {
			size_t cap = s->cap_hb ? s->cap_hb * 2 : 256;
			struct hb_id *n = realloc(s->hb, cap * sizeof(*n));
			if (!n && s->n_hb == s->cap_hb)
				return; /* not renewed: at worst claimed by another and sent twice */
			if (n) {
				s->hb = n;
				s->cap_hb = cap;
			}
		}
	}
	memcpy(s->hb[s->n_hb++].id, entry, len + 1);
}

/* An entry another consumer has taken over (or acknowledged): no longer renewed. It
 * stays held, so it is not handed out again here, and its result is still written and
 * acknowledged when it ends (see redis_source_flush). */
static void hb_drop(struct redis_source *s, const char *entry, size_t len)
{
	if (len >= sizeof(s->hb[0].id))
		return;
	for (size_t i = 0; i < s->n_hb; i++)
		if (!strncmp(s->hb[i].id, entry, len) && !s->hb[i].id[len]) {
			s->hb[i] = s->hb[--s->n_hb];
			return;
		}
}

/* ---- connection ----------------------------------------------------------------- */

static void went_down(struct redis_source *s)
{
	if (s->c) {
		if (!s->said_down)
			fprintf(stderr, "smtpbulk send: redis: %s; trying again (what is held goes on "
				"sending)\n", s->c->errstr[0] ? s->c->errstr : "connection lost");
		s->said_down = 1;
		redisFree(s->c);
		s->c = NULL;
	}
	s->backoff_ms = s->backoff_ms ? (s->backoff_ms * 2 > 2000 ? 2000 : s->backoff_ms * 2) : 100;
	s->retry_at_ns = now_ns() + (uint64_t)s->backoff_ms * 1000000ull;
}

static redisReply *cmd(struct redis_source *s, int argc, const char **argv)
{
	if (!s->c)
		return NULL;
	redisReply *r = redisCommandArgv(s->c, argc, argv, NULL);
	if (!r)
		went_down(s);
	return r;
}

/* The group, made with its stream if missing; BUSYGROUP (there already) is fine. */
static int make_group(struct redis_source *s, char *why, size_t cap)
{
	const char *argv[] = {"XGROUP", "CREATE", s->o.target.stream, s->o.group, "0", "MKSTREAM"};
	redisReply *r = cmd(s, 6, argv);
	if (!r)
		return snprintf(why, cap, "redis: cannot create group %s", s->o.group), -1;
	int bad = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0;
	if (bad)
		snprintf(why, cap, "redis: XGROUP CREATE: %s", r->str);
	freeReplyObject(r);
	return bad ? -1 : 0;
}

static int reconnect(struct redis_source *s)
{
	if (s->c)
		return 0;
	if (now_ns() < s->retry_at_ns)
		return -1;
	s->c = connect_to(&s->o.target, 5000);
	char why[256];
	if (!s->c || make_group(s, why, sizeof(why))) {
		went_down(s);
		return -1;
	}
	if (s->said_down)
		fprintf(stderr, "smtpbulk send: redis: connected again\n");
	/* A read whose reply was lost left entries pending for us that we never got: our
	 * own pending ones are read again (those held here are passed over). */
	s->own_done = 0;
	snprintf(s->own_cursor, sizeof(s->own_cursor), "0");
	s->said_down = 0;
	s->backoff_ms = 0;
	s->hb_at_ns = 0; /* what is held may have idled while Redis was away: renew it now */
	return 0;
}

int redis_source_open(const struct redis_options *o, struct redis_source **out, char *why,
		      size_t cap)
{
	struct redis_source *s = calloc(1, sizeof(*s));
	if (!s)
		return snprintf(why, cap, "out of memory"), -1;
	s->o = *o;
	snprintf(s->results, sizeof(s->results), "%s:results", o->target.stream);
	snprintf(s->dead, sizeof(s->dead), "%s:dead", o->target.stream);
	snprintf(s->own_cursor, sizeof(s->own_cursor), "0");
	snprintf(s->claim_cursor, sizeof(s->claim_cursor), "0-0");
	/* Well below claim_idle (a third), so a renewal may come late or be skipped once
	 * and still be in time; not more often than 5 times a second, and at least every
	 * 10 s (one round trip each, whatever is held). */
	s->hb_ms = o->claim_idle_ms / 3;
	s->hb_ms = s->hb_ms < 200 ? 200 : s->hb_ms > 10000 ? 10000 : s->hb_ms;
	pthread_mutex_init(&s->mu, NULL);
	*out = s;
	if (!(s->c = connect_to(&o->target, 5000)))
		return snprintf(why, cap, "redis: cannot connect to %s%s%d", o->target.host,
				o->target.port ? ":" : "", o->target.port), -1;
	return make_group(s, why, cap);
}

/* ---- reading ---------------------------------------------------------------------- */

static void drop_batch(struct redis_source *s)
{
	if (s->batch)
		freeReplyObject(s->batch);
	s->batch = NULL;
	s->entries = NULL;
	s->n_entries = s->next = 0;
}

/* An XREADGROUP reply's entries ([[stream, [entry...]]]), or an XAUTOCLAIM's. */
static void take_batch(struct redis_source *s, redisReply *r, int claimed)
{
	drop_batch(s);
	s->batch = r;
	redisReply *list = NULL;
	if (claimed && r->type == REDIS_REPLY_ARRAY && r->elements >= 2)
		list = r->element[1];
	else if (!claimed && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
		 r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 2)
		list = r->element[0]->element[1];
	if (list && list->type == REDIS_REPLY_ARRAY) {
		s->entries = list->element;
		s->n_entries = list->elements;
	}
}

static int fetch(struct redis_source *s, size_t max, int block_ms)
{
	char count[24], block[24];
	snprintf(count, sizeof(count), "%zu", max ? max : 1);
	snprintf(block, sizeof(block), "%d", block_ms);
	uint64_t now = now_ns();
	if (s->own_done && now >= s->claim_at_ns) {
		s->claim_at_ns = now + 1000000000ull; /* once a second */
		char idle[24];
		snprintf(idle, sizeof(idle), "%u", s->o.claim_idle_ms);
		const char *argv[] = {"XAUTOCLAIM", s->o.target.stream, s->o.group, s->o.consumer,
				      idle, s->claim_cursor, "COUNT", count};
		redisReply *r = cmd(s, 8, argv);
		if (!r)
			return -1;
		if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
		    r->element[0]->type == REDIS_REPLY_STRING) {
			snprintf(s->claim_cursor, sizeof(s->claim_cursor), "%s", r->element[0]->str);
			take_batch(s, r, 1);
			s->recovered = 1;
			if (s->n_entries)
				return 0;
		} else {
			freeReplyObject(r);
		}
	}
	const char *argv[] = {"XREADGROUP", "GROUP", s->o.group, s->o.consumer, "COUNT", count,
			      "BLOCK", block, "STREAMS", s->o.target.stream,
			      s->own_done ? ">" : s->own_cursor};
	int argc = 11;
	if (!s->own_done) { /* our own pending entries: no BLOCK */
		argv[6] = "STREAMS";
		argv[7] = s->o.target.stream;
		argv[8] = s->own_cursor;
		argc = 9;
	}
	redisReply *r = cmd(s, argc, argv);
	if (!r)
		return -1;
	if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "smtpbulk send: redis: XREADGROUP: %s\n", r->str);
		freeReplyObject(r);
		return -1;
	}
	take_batch(s, r, 0);
	s->recovered = !s->own_done;
	if (!s->own_done) {
		if (!s->n_entries)
			s->own_done = 1;
		else {
			redisReply *last = s->entries[s->n_entries - 1];
			if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
			    last->element[0]->type == REDIS_REPLY_STRING)
				snprintf(s->own_cursor, sizeof(s->own_cursor), "%s", last->element[0]->str);
		}
	}
	return 0;
}

/* How often an entry was delivered (XPENDING's count), or 0 when unknown. */
static long long deliveries(struct redis_source *s, const char *entry)
{
	const char *argv[] = {"XPENDING", s->o.target.stream, s->o.group, entry, entry, "1"};
	redisReply *r = cmd(s, 6, argv);
	long long n = 0;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 4)
		n = r->element[0]->element[3]->integer;
	if (r)
		freeReplyObject(r);
	return n;
}

static int is_json_field(const char *name)
{
	return !strcmp(name, "to") || !strcmp(name, "vars") || !strcmp(name, "headers") ||
	       !strcmp(name, "dsn");
}

/* An entry's fields as a manifest line. */
static int to_line(const char *entry, redisReply *fields, char **line, char *why, size_t cap)
{
	json_t *o = json_object();
	if (!o)
		return snprintf(why, cap, "out of memory"), -1;
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		json_t *val;
		if (is_json_field(k->str)) {
			json_error_t e;
			val = json_loadb(v->str, v->len, JSON_DECODE_ANY, &e);
			if (!val && !strcmp(k->str, "to"))
				val = json_stringn(v->str, v->len); /* one address, bare */
			if (!val) {
				json_decref(o);
				return snprintf(why, cap, "field \"%.50s\": not JSON: %s", k->str, e.text), -1;
			}
		} else {
			val = json_stringn(v->str, v->len);
			if (!val) {
				json_decref(o);
				return snprintf(why, cap, "field \"%.50s\": not UTF-8", k->str), -1;
			}
		}
		json_object_set_new(o, k->str, val);
	}
	if (!json_object_get(o, "id"))
		json_object_set_new(o, "id", json_string(entry));
	*line = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return *line ? 0 : (snprintf(why, cap, "out of memory"), -1);
}

int redis_source_next(struct redis_source *s, size_t max, int block_ms, char **line,
		      char *entry, size_t cap, char *why, size_t why_cap)
{
	*line = NULL;
	for (;;) {
		if (s->next >= s->n_entries) {
			drop_batch(s);
			if (reconnect(s)) {
				usleep((useconds_t)(block_ms > 100 ? 100 : block_ms) * 1000);
				return 1;
			}
			/* A read that waits ends by the next heartbeat, which comes with the
			 * caller's next flush. */
			int block = block_ms;
			uint64_t now = now_ns();
			if (s->n_hb && block > 0) {
				uint64_t due = s->hb_at_ns > now ? (s->hb_at_ns - now) / 1000000ull : 0;
				if (due < (uint64_t)block)
					block = due ? (int)due : 1; /* BLOCK 0 would be forever */
			}
			int was_own = !s->own_done;
			if (fetch(s, max, block))
				return 1;
			if (!s->n_entries && was_own && s->own_done)
				continue; /* our own pending ones are done: now the new ones */
			if (!s->n_entries)
				return 1;
		}
		redisReply *e = s->entries[s->next++];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING)
			continue;
		snprintf(entry, cap, "%s", e->element[0]->str);
		uint64_t k = key_of(entry);
		pthread_mutex_lock(&s->mu);
		int ours = u64_set_has(&s->held, k);
		pthread_mutex_unlock(&s->mu);
		if (ours) { /* claimed back while still in flight here: already going */
			hb_add(s, entry); /* ours again (a duplicate goes at the next compaction) */
			continue;
		}
		redisReply *fields = e->element[1];
		if (fields->type != REDIS_REPLY_ARRAY) { /* deleted from the stream meanwhile */
			redis_source_dead(s, entry, "the entry was deleted from the stream");
			continue;
		}
		if (s->recovered && s->o.max_deliveries) {
			long long n = deliveries(s, entry);
			if (n > (long long)s->o.max_deliveries) {
				snprintf(why, why_cap, "delivered %lld times (more than %u)", n,
					 s->o.max_deliveries);
				return -1;
			}
		}
		if (to_line(entry, fields, line, why, why_cap))
			return -1;
		pthread_mutex_lock(&s->mu);
		u64_set_add(&s->held, k);
		pthread_mutex_unlock(&s->mu);
		hb_add(s, entry);
		return 0;
	}
}

/* ---- writing -------------------------------------------------------------------- */

static void queue_op(struct redis_source *s, struct op *op)
{
	pthread_mutex_lock(&s->mu);
	if (s->n_ops == s->cap_ops) {
		size_t cap = s->cap_ops ? s->cap_ops * 2 : 256;
		struct op *n = realloc(s->ops, cap * sizeof(*n));
		if (!n) { /* its entry stays pending: it is delivered again, not lost */
			pthread_mutex_unlock(&s->mu);
			return;
		}
		s->ops = n;
		s->cap_ops = cap;
	}
	s->ops[s->n_ops++] = *op; /* still held: until its XACK is through, a claim of it
	                            (ours, after a reconnect) must not send it again */
	pthread_mutex_unlock(&s->mu);
}

void redis_source_done(struct redis_source *s, const char *entry, const char *const *fields,
		       size_t n_fields)
{
	/* One allocation per finished message: the pointers, then the strings. */
	size_t total = strlen(entry) + 1;
	for (size_t i = 0; i < n_fields; i++)
		total += strlen(fields[i] ? fields[i] : "") + 1;
	char **f = malloc((n_fields + 1) * sizeof(char *) + total);
	if (!f)
		return; /* its entry stays pending: delivered again, not lost */
	char *w = (char *)(f + n_fields + 1);
	for (size_t i = 0; i <= n_fields; i++) {
		const char *v = i < n_fields ? (fields[i] ? fields[i] : "") : entry;
		size_t len = strlen(v) + 1;
		memcpy(w, v, len);
		f[i] = w;
		w += len;
	}
	struct op op = {.entry = f[n_fields], .fields = f, .n_fields = n_fields, .packed = 1};
	queue_op(s, &op);
}

void redis_source_dead(struct redis_source *s, const char *entry, const char *why)
{
	struct op op = {.entry = strdup(entry), .why = strdup(why)};
	if (!op.entry || !op.why) {
		free(op.entry);
		free(op.why);
		return;
	}
	queue_op(s, &op);
}

static void op_free(struct op *op)
{
	if (!op->packed)
		free(op->entry); /* a dead letter's: its own */
	free(op->fields);
	free(op->why);
}

static int flush_ops(struct redis_source *s)
{
	pthread_mutex_lock(&s->mu);
	struct op *ops = s->ops;
	size_t n = s->n_ops;
	s->ops = NULL;
	s->n_ops = s->cap_ops = 0;
	pthread_mutex_unlock(&s->mu);
	if (!n)
		return 0;
	if (reconnect(s))
		goto put_back;
	char maxlen[24];
	snprintf(maxlen, sizeof(maxlen), "%zu", s->o.results_maxlen);
	size_t sent = 0;
	for (size_t i = 0; i < n; i++) {
		struct op *op = &ops[i];
		const char *argv[64];
		int argc = 0;
		argv[argc++] = "XADD";
		argv[argc++] = op->why ? s->dead : s->results;
		if (!op->why) {
			argv[argc++] = "MAXLEN";
			argv[argc++] = "~";
			argv[argc++] = maxlen;
		}
		argv[argc++] = "*";
		argv[argc++] = "entry";
		argv[argc++] = op->entry;
		if (op->why) {
			argv[argc++] = "reason";
			argv[argc++] = op->why;
		}
		for (size_t f = 0; f + 1 < op->n_fields && argc < 62; f += 2) {
			argv[argc++] = op->fields[f];
			argv[argc++] = op->fields[f + 1];
		}
		redisAppendCommandArgv(s->c, argc, argv, NULL);
		/* Acknowledged even when another consumer has claimed the entry meanwhile (its
		 * heartbeat came too late, Redis was away): XACK does not check the owner, and
		 * this result is final, so the entry is done; the other's copy may go out a
		 * second time, and its own XACK then finds nothing. Not acknowledging would
		 * leave it to the other, whose crash would send it a third time. */
		const char *ack[] = {"XACK", s->o.target.stream, s->o.group, op->entry};
		redisAppendCommandArgv(s->c, 4, ack, NULL);
		sent++;
	}
	int said = 0;
	for (size_t i = 0; i < sent * 2; i++) {
		void *r = NULL;
		if (redisGetReply(s->c, &r) != REDIS_OK || !r) {
			went_down(s);
			goto put_back; /* all again: an XADD twice, an XACK twice, are harmless */
		}
		redisReply *rr = r;
		if (rr->type == REDIS_REPLY_ERROR && !said++) /* e.g. the key is no stream */
			fprintf(stderr, "smtpbulk send: redis: %s refused: %s\n",
				i % 2 ? "XACK" : "a result's XADD", rr->str);
		freeReplyObject(r);
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		if (ops[i].why)
			s->deadn++;
		s->acked++;
		u64_set_del(&s->held, key_of(ops[i].entry));
	}
	pthread_mutex_unlock(&s->mu);
	for (size_t i = 0; i < n; i++)
		op_free(&ops[i]);
	free(ops);
	return 0;
put_back:
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		if (s->n_ops == s->cap_ops) {
			size_t cap = s->cap_ops ? s->cap_ops * 2 : 256;
			struct op *m = realloc(s->ops, cap * sizeof(*m));
			if (!m) {
				op_free(&ops[i]); /* pending in Redis: delivered again, not lost */
				continue;
			}
			s->ops = m;
			s->cap_ops = cap;
		}
		s->ops[s->n_ops++] = ops[i];
	}
	pthread_mutex_unlock(&s->mu);
	free(ops);
	return -1;
}

/* ---- heartbeat ---------------------------------------------------------------------- */

/* The entries still in flight here keep their idle time low, so no other consumer's
 * XAUTOCLAIM takes them however long they take. Each id is renewed only while it is
 * this consumer's (XPENDING's owner), all in one script, so a claim by another that
 * came first is never undone (a bare XCLAIM would take it back: it does not check the
 * owner). XCLAIM with min-idle 0 sets the idle time to 0; JUSTID leaves the delivery
 * count alone (--max-deliveries counts deliveries, not renewals). Returns {renewed,
 * the ids no longer ours...}. */
static const char renew_lua[] =
	"local lost = {}\n"
	"local n = 0\n"
	"for i = 3, #ARGV do\n"
	"  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)\n"
	"  if p[1] and p[1][2] == ARGV[2] then\n"
	"    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
	"    n = n + 1\n"
	"  else\n"
	"    lost[#lost + 1] = ARGV[i]\n"
	"  end\n"
	"end\n"
	"table.insert(lost, 1, n)\n"
	"return lost\n";

/* ids per script call: each call holds Redis for a bounded time (two commands an id). */
enum { HB_CHUNK = 256 };

/* Every hb_ms, one pipelined round trip: the held ids, and those read but not handed out
 * yet, HB_CHUNK at a time. Redis down: skipped until the next interval (never a
 * reconnect here, so it costs no wait). Returns how many were renewed, -1 skipped. */
static long long heartbeat(struct redis_source *s)
{
	uint64_t now = now_ns();
	if (now < s->hb_at_ns)
		return -1;
	s->hb_at_ns = now + (uint64_t)s->hb_ms * 1000000ull;
	if (!s->c)
		return -1;
	hb_compact(s);
	size_t n_buf = redis_source_buffered(s), total = s->n_hb + n_buf, calls = 0, k = 0;
	if (!total)
		return 0;
	const char *argv[6 + HB_CHUNK] = {"EVAL", renew_lua, "1", s->o.target.stream, s->o.group,
					  s->o.consumer};
	for (size_t i = 0; i < total; i++) {
		if (i < s->n_hb) {
			argv[6 + k++] = s->hb[i].id;
		} else {
			redisReply *e = s->entries[s->next + (i - s->n_hb)];
			if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
			    e->element[0]->type == REDIS_REPLY_STRING)
				argv[6 + k++] = e->element[0]->str;
		}
		if (k && (k == HB_CHUNK || i + 1 == total)) {
			redisAppendCommandArgv(s->c, 6 + (int)k, argv, NULL);
			calls++;
			k = 0;
		}
	}
	long long renewed = 0;
	for (size_t i = 0; i < calls; i++) {
		void *v = NULL;
		if (redisGetReply(s->c, &v) != REDIS_OK || !v) {
			went_down(s);
			return -1;
		}
		redisReply *r = v;
		if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
		    r->element[0]->type == REDIS_REPLY_INTEGER) {
			renewed += r->element[0]->integer;
			for (size_t j = 1; j < r->elements; j++)
				if (r->element[j]->type == REDIS_REPLY_STRING)
					hb_drop(s, r->element[j]->str, r->element[j]->len);
		} else if (r->type == REDIS_REPLY_ERROR && !s->said_hb++) {
			fprintf(stderr, "smtpbulk send: redis: the heartbeat script: %s\n", r->str);
		}
		freeReplyObject(r);
	}
	return renewed;
}

int redis_source_flush(struct redis_source *s)
{
	int rc = flush_ops(s); /* first: what it acknowledges needs no renewal */
	heartbeat(s);
	return rc;
}

size_t redis_source_buffered(const struct redis_source *s)
{
	return s->n_entries > s->next ? s->n_entries - s->next : 0;
}

void redis_source_counts(struct redis_source *s, uint64_t *acked, uint64_t *dead,
			 uint64_t *waiting)
{
	pthread_mutex_lock(&s->mu);
	*acked = s->acked;
	*dead = s->deadn;
	*waiting = s->n_ops;
	pthread_mutex_unlock(&s->mu);
}

/* Whether the group has nothing pending for anyone (XPENDING's count is 0): 1, 0, or
 * -1 when it cannot be asked. */
int redis_source_group_empty(struct redis_source *s)
{
	if (reconnect(s))
		return -1;
	const char *argv[] = {"XPENDING", s->o.target.stream, s->o.group};
	redisReply *r = cmd(s, 3, argv);
	if (!r)
		return -1;
	int rc = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
			 r->element[0]->type == REDIS_REPLY_INTEGER
		     ? r->element[0]->integer == 0
		     : -1;
	freeReplyObject(r);
	return rc;
}

void redis_source_close(struct redis_source *s)
{
	if (!s)
		return;
	drop_batch(s);
	if (s->c)
		redisFree(s->c);
	for (size_t i = 0; i < s->n_ops; i++)
		op_free(&s->ops[i]);
	free(s->ops);
	u64_set_free(&s->held);
	free(s->hb);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- shared pacing ---------------------------------------------------------------- */

/* GCRA over every consumer: the theoretical arrival time (microseconds, Redis's own
 * clock) of the next message is the key's value; up to ARGV[3] tokens are granted while
 * that time stays within the burst. Returns {granted, microseconds until the next}. */
static const char gcra_lua[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local T = tonumber(ARGV[1])\n"
	"local burst = tonumber(ARGV[2])\n"
	"local want = tonumber(ARGV[3])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
	"if tat < now then tat = now end\n"
	"local n = 0\n"
	"while n < want and tat + T - now <= burst * T do\n"
	"  tat = tat + T\n"
	"  n = n + 1\n"
	"end\n"
	"if n > 0 then redis.call('SET', KEYS[1], string.format('%d', tat), 'PX',"
	" math.floor((tat - now) / 1000) + 60000) end\n"
	"local wait = tat + T - now - burst * T\n"
	"if wait < 0 then wait = 0 end\n"
	"return {n, math.floor(wait)}\n";

int redis_take_tokens(struct redis_source *s, const char *key, double per_s, unsigned burst,
		      unsigned want, unsigned *granted, unsigned *wait_ms)
{
	*granted = 0;
	*wait_ms = 100;
	if (reconnect(s))
		return -1;
	char t[32], b[16], w[16];
	snprintf(t, sizeof(t), "%.3f", 1e6 / per_s);
	snprintf(b, sizeof(b), "%u", burst ? burst : 1);
	snprintf(w, sizeof(w), "%u", want);
	const char *argv[] = {"EVAL", gcra_lua, "1", key, t, b, w};
	redisReply *r = cmd(s, 7, argv);
	if (!r)
		return -1;
	int rc = -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_INTEGER) {
		*granted = (unsigned)r->element[0]->integer;
		long long us = r->element[1]->integer;
		*wait_ms = us <= 0 ? 0 : (unsigned)((us + 999) / 1000);
		rc = 0;
	} else if (r->type == REDIS_REPLY_ERROR) {
		fprintf(stderr, "smtpbulk send: redis: the pacing script: %s\n", r->str);
	}
	freeReplyObject(r);
	return rc;
}

/* ---- enqueue ---------------------------------------------------------------------- */

static int read_replies(redisContext *c, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		void *r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK || !r) {
			fprintf(stderr, "smtpbulk enqueue: redis: %s\n",
				c->errstr[0] ? c->errstr : "connection lost");
			return -1;
		}
		redisReply *rr = r;
		if (rr->type == REDIS_REPLY_ERROR) {
			fprintf(stderr, "smtpbulk enqueue: redis: XADD: %s\n", rr->str);
			rc = -1;
		}
		freeReplyObject(r);
	}
	return rc;
}

int redis_enqueue(const struct redis_target *t, FILE *in, const char *name, uint64_t *added,
		  uint64_t *bad)
{
	*added = *bad = 0;
	redisContext *c = connect_to(t, 10000);
	if (!c) {
		fprintf(stderr, "smtpbulk enqueue: redis: cannot connect to %s%s%d\n", t->host,
			t->port ? ":" : "", t->port);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0, waiting = 0;
	ssize_t len;
	uint64_t lineno = 0;
	int rc = 0;
	while (!rc && (len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (!len)
			continue;
		json_error_t e;
		json_t *o = json_loadb(line, (size_t)len, 0, &e);
		if (!json_is_object(o) || json_object_size(o) == 0 || json_object_size(o) > 30) {
			if (++*bad <= 5)
				fprintf(stderr, "smtpbulk enqueue: %s:%llu: %s\n", name,
					(unsigned long long)lineno,
					o ? "not a JSON object of 1 to 30 fields" : e.text);
			json_decref(o);
			continue;
		}
		const char *argv[64];
		char *owned[32];
		int argc = 0, n_owned = 0;
		argv[argc++] = "XADD";
		argv[argc++] = t->stream;
		argv[argc++] = "*";
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v) {
			argv[argc++] = k;
			if (json_is_string(v)) {
				argv[argc++] = json_string_value(v);
			} else {
				owned[n_owned] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
				argv[argc++] = owned[n_owned] ? owned[n_owned] : "";
				n_owned++;
			}
		}
		redisAppendCommandArgv(c, argc, argv, NULL);
		for (int i = 0; i < n_owned; i++)
			free(owned[i]);
		json_decref(o);
		(*added)++;
		if (++waiting == 500) {
			rc = read_replies(c, waiting);
			waiting = 0;
		}
	}
	if (!rc && waiting)
		rc = read_replies(c, waiting);
	if (!rc && ferror(in)) {
		fprintf(stderr, "smtpbulk enqueue: reading %s: %s\n", name, strerror(errno));
		rc = -1;
	}
	free(line);
	redisFree(c);
	return rc;
}
