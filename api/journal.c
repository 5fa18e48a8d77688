/*
 * The journal: one JSON line (jansson) per final result, appended to a file.
 *
 * Threads: any thread records (the engine's result callbacks run on its workers); a
 * writer thread of the journal's own writes what waits and fsyncs it, every flush_ms
 * or when 64 KiB wait, so no worker ever waits for a disk. Who touches what:
 *   under mu: buf/len (lines not yet written), the index, err, counts, stop;
 *   the writer alone: fd's writes and fsyncs (close() joins it first).
 * The index maps an id's 64-bit hash to its last line's verdict: open addressing,
 * grown at 3/4, so a rerun over millions of ids looks each up in O(1).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smtpbulk_send.h"

#define FLUSH_BYTES (64 * 1024)

struct slot {
	uint64_t key; /* the id's hash; 0: empty */
	uint64_t input_hash;
	int64_t next_attempt;
	uint32_t deferrals; /* lines of this id with a next attempt */
	int8_t status; /* smtpbulk_status_t, or -1: bad input */
};

struct smtpbulk_journal {
	int fd;
	unsigned flush_ms;
	pthread_t writer;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* the writer waits on it: lines waiting, or stop */
	pthread_cond_t done;   /* a flush finished (flush() waits for its turn) */
	char *buf;
	size_t len, cap;
	uint64_t flushes_asked, flushes_done;
	struct slot *slots;
	size_t n_slots, used;
	uint64_t lines_read, recorded;
	int err;               /* the first write/fsync failure, sticky */
	int stop;
};

uint64_t smtpbulk_hash64(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h ? h : 1;
}

static uint64_t id_key(const char *id)
{
	return smtpbulk_hash64(id, strlen(id));
}

/* ---- the index (under mu once the writer runs) ----------------------------------- */

static struct slot *slot_of(struct slot *slots, size_t n, uint64_t key)
{
	size_t i = (size_t)(key * 0x9E3779B97F4A7C15ull) & (n - 1);
	while (slots[i].key && slots[i].key != key)
		i = (i + 1) & (n - 1);
	return &slots[i];
}

static int index_grow(struct smtpbulk_journal *j)
{
	size_t n = j->n_slots ? j->n_slots * 2 : 1024;
	struct slot *s = calloc(n, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < j->n_slots; i++)
		if (j->slots[i].key)
			*slot_of(s, n, j->slots[i].key) = j->slots[i];
	free(j->slots);
	j->slots = s;
	j->n_slots = n;
	return 0;
}

static int index_put(struct smtpbulk_journal *j, const char *id, int status,
		     uint64_t input_hash, int64_t next_attempt)
{
	if ((j->used + 1) * 4 > j->n_slots * 3 && index_grow(j))
		return -ENOMEM;
	uint64_t key = id_key(id);
	struct slot *s = slot_of(j->slots, j->n_slots, key);
	if (!s->key)
		j->used++;
	s->key = key;
	s->status = (int8_t)status;
	s->input_hash = input_hash;
	s->next_attempt = next_attempt;
	if (next_attempt && s->deferrals < UINT32_MAX)
		s->deferrals++;
	return 0;
}

/* ---- status names ------------------------------------------------------------------ */

static const char *const status_names[] = {
	[SMTPBULK_DELIVERED] = "delivered", [SMTPBULK_PARTIAL] = "partial",
	[SMTPBULK_REJECTED] = "rejected",   [SMTPBULK_FAILED] = "failed",
	[SMTPBULK_TIMED_OUT] = "timed_out", [SMTPBULK_CANCELLED] = "cancelled",
};
#define N_STATUS (int)(sizeof(status_names) / sizeof(status_names[0]))

static int status_of_name(const char *s)
{
	if (strcmp(s, "bad_input") == 0)
		return -1;
	for (int i = 0; i < N_STATUS; i++)
		if (status_names[i] && strcmp(s, status_names[i]) == 0)
			return i;
	return -2;
}

/* ---- reading what is there ---------------------------------------------------------- */

/* One line of an existing journal into the index; -1 when it is not ours. */
static int read_line(struct smtpbulk_journal *j, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *o = json_loadb(line, len, 0, &jerr);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return -1;
	}
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *st = json_string_value(json_object_get(o, "status"));
	int status = st ? status_of_name(st) : -2;
	int rc = -1;
	if (id && status >= -1) {
		const char *h = json_string_value(json_object_get(o, "hash"));
		uint64_t hash = h ? strtoull(h, NULL, 16) : 0;
		json_int_t next = json_integer_value(json_object_get(o, "next_attempt"));
		rc = index_put(j, id, status, hash, (int64_t)next) ? -2 : 0;
	}
	json_decref(o);
	return rc;
}

/* Read every line, dropping a torn last one. */
static int read_existing(struct smtpbulk_journal *j, uint64_t *bad_line)
{
	struct stat st;
	if (fstat(j->fd, &st))
		return -errno;
	if (st.st_size == 0)
		return 0;
	FILE *f = fdopen(dup(j->fd), "r");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	off_t good = 0; /* the end of the last complete line */
	int rc = 0;
	uint64_t no = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		no++;
		if (line[n - 1] != '\n')
			break; /* torn: not durable, cut below */
		int r = n > 1 ? read_line(j, line, (size_t)n - 1) : 0;
		if (r == -2) {
			rc = -ENOMEM;
			break;
		}
		if (r < 0) {
			if (bad_line)
				*bad_line = no;
			rc = SMTPBULK_EJOURNAL;
			break;
		}
		good += n;
		j->lines_read++;
	}
	if (!rc && ferror(f))
		rc = -EIO;
	free(line);
	fclose(f);
	if (!rc && good < st.st_size && ftruncate(j->fd, good))
		rc = -errno;
	return rc;
}

/* ---- writing ------------------------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Take what waits (under mu), write and fsync it (without mu). */
static void flush_once(struct smtpbulk_journal *j)
{
	char *buf = j->buf;
	size_t len = j->len;
	uint64_t asked = j->flushes_asked;
	j->buf = NULL;
	j->len = j->cap = 0;
	pthread_mutex_unlock(&j->mu);
	int rc = len ? write_all(j->fd, buf, len) : 0;
	if (!rc && len && fdatasync(j->fd))
		rc = -errno;
	free(buf);
	pthread_mutex_lock(&j->mu);
	if (rc && !j->err)
		j->err = rc;
	j->flushes_done = asked;
	pthread_cond_broadcast(&j->done);
}

static void deadline_in(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *writer_main(void *arg)
{
	struct smtpbulk_journal *j = arg;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		if (j->len == 0 && j->flushes_done == j->flushes_asked && !j->stop)
			pthread_cond_wait(&j->cv, &j->mu); /* nothing waits */
		if (j->len && j->len < FLUSH_BYTES && j->flushes_done == j->flushes_asked &&
		    !j->stop) {
			/* Lines wait: let more come for flush_ms, unless a flush is asked. */
			struct timespec ts;
			deadline_in(&ts, j->flush_ms);
			while (j->len < FLUSH_BYTES && j->flushes_done == j->flushes_asked &&
			       !j->stop && pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
				;
		}
		flush_once(j);
		if (j->stop && j->len == 0)
			break;
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int smtpbulk_journal_open(const char *path, unsigned flush_ms, smtpbulk_journal_t **out,
			  uint64_t *bad_line)
{
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	struct smtpbulk_journal *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->flush_ms = flush_ms ? flush_ms : 200;
	j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int rc = j->fd < 0 ? -errno : index_grow(j);
	if (!rc)
		rc = read_existing(j, bad_line);
	if (!rc) {
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_mutex_init(&j->mu, NULL);
		pthread_cond_init(&j->cv, &ca);
		pthread_cond_init(&j->done, NULL);
		pthread_condattr_destroy(&ca);
		rc = -pthread_create(&j->writer, NULL, writer_main, j);
		if (rc) {
			pthread_mutex_destroy(&j->mu);
			pthread_cond_destroy(&j->cv);
			pthread_cond_destroy(&j->done);
		}
	}
	if (rc) {
		if (j->fd >= 0)
			close(j->fd);
		free(j->slots);
		free(j);
		return rc;
	}
	*out = j;
	return 0;
}

static json_t *rcpts_json(const smtpbulk_result_t *r)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < r->n_rcpts; i++)
		json_array_append_new(a, json_pack("{s:s?, s:i, s:s?}", "to", r->rcpts[i].rcpt,
						   "code", r->rcpts[i].reply.code, "text",
						   r->rcpts[i].reply.text));
	return a;
}

/* The line for e, without its newline; NULL when out of memory. */
static char *line_of(const smtpbulk_journal_entry_t *e)
{
	char hash[20] = "";
	if (e->input_hash)
		snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)e->input_hash);
	json_t *o = json_pack("{s:s, s:s?, s:s?, s:I}", "id", e->id, "position", e->position,
			      "hash", e->input_hash ? hash : NULL, "at", (json_int_t)time(NULL));
	if (!o)
		return NULL;
	const smtpbulk_result_t *r = e->result;
	int bad = 0;
	if (r) {
		char qid[128];
		int st = (unsigned)r->status < (unsigned)N_STATUS ? (int)r->status : SMTPBULK_FAILED;
		const char *text = r->reply.text ? r->reply.text : "";
		bad |= json_object_set_new(o, "status", json_string(status_names[st]));
		bad |= json_object_set_new(o, "category",
					   json_string(smtpbulk_category_name(r->category)));
		bad |= json_object_set_new(o, "code", json_integer(r->reply.code));
		bad |= json_object_set_new(o, "enhanced", json_string(r->reply.enhanced ?
									r->reply.enhanced : ""));
		bad |= json_object_set_new(o, "text", json_string(text));
		if (smtpbulk_queue_id(text, qid, sizeof(qid)) == 0)
			bad |= json_object_set_new(o, "queue_id", json_string(qid));
		if (r->error)
			bad |= json_object_set_new(o, "error", json_string(smtpbulk_strerror(r->error)));
		if (r->host)
			bad |= json_object_set_new(o, "host", json_string(r->host));
		bad |= json_object_set_new(o, "attempts", json_integer(r->attempts));
		bad |= json_object_set_new(o, "latency_ms", json_real((double)r->latency_ns / 1e6));
		bad |= json_object_set_new(o, "rcpts", rcpts_json(r));
	} else {
		bad |= json_object_set_new(o, "status", json_string("bad_input"));
		bad |= json_object_set_new(o, "error", json_string(e->error ? e->error : "bad input"));
	}
	if (e->next_attempt)
		bad |= json_object_set_new(o, "next_attempt", json_integer(e->next_attempt));
	/* Invalid UTF-8 in a server's text makes json_string() NULL: set_new then fails
	 * and the field is left out rather than the line. */
	(void)bad;
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	json_decref(o);
	return s;
}

int smtpbulk_journal_record(smtpbulk_journal_t *j, const smtpbulk_journal_entry_t *e)
{
	if (!j || !e || e->struct_size < sizeof(*e) || !e->id)
		return -EINVAL;
	char *s = line_of(e);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	int status = e->result ? (int)e->result->status : -1;
	pthread_mutex_lock(&j->mu);
	int rc = j->err;
	if (!rc && j->len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 4096;
		while (cap < j->len + n + 1)
			cap *= 2;
		char *b = realloc(j->buf, cap);
		if (!b)
			rc = -ENOMEM;
		else {
			j->buf = b;
			j->cap = cap;
		}
	}
	if (!rc)
		rc = index_put(j, e->id, status, e->input_hash, e->next_attempt);
	if (!rc) {
		memcpy(j->buf + j->len, s, n);
		j->buf[j->len + n] = '\n';
		j->len += n + 1;
		j->recorded++;
		pthread_cond_signal(&j->cv);
	}
	pthread_mutex_unlock(&j->mu);
	free(s);
	return rc;
}

int smtpbulk_journal_lookup(smtpbulk_journal_t *j, const char *id, smtpbulk_journal_state_t *out)
{
	if (!j || !id || !out)
		return -EINVAL;
	uint64_t key = id_key(id);
	pthread_mutex_lock(&j->mu);
	struct slot *s = slot_of(j->slots, j->n_slots, key);
	int rc = s->key ? 0 : -ENOENT;
	if (!rc) {
		out->bad_input = s->status < 0;
		out->status = s->status < 0 ? SMTPBULK_FAILED : (smtpbulk_status_t)s->status;
		out->input_hash = s->input_hash;
		out->next_attempt = s->next_attempt;
		out->deferrals = s->deferrals;
	}
	pthread_mutex_unlock(&j->mu);
	return rc;
}

void smtpbulk_journal_counts(smtpbulk_journal_t *j, uint64_t *read, uint64_t *recorded)
{
	pthread_mutex_lock(&j->mu);
	if (read)
		*read = j->lines_read;
	if (recorded)
		*recorded = j->recorded;
	pthread_mutex_unlock(&j->mu);
}

int smtpbulk_journal_flush(smtpbulk_journal_t *j)
{
	if (!j)
		return -EINVAL;
	pthread_mutex_lock(&j->mu);
	uint64_t mine = ++j->flushes_asked;
	pthread_cond_signal(&j->cv);
	while (j->flushes_done < mine)
		pthread_cond_wait(&j->done, &j->mu);
	int rc = j->err;
	pthread_mutex_unlock(&j->mu);
	return rc;
}

int smtpbulk_journal_close(smtpbulk_journal_t *j)
{
	if (!j)
		return 0;
	pthread_mutex_lock(&j->mu);
	j->stop = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	pthread_join(j->writer, NULL);
	int rc = j->err;
	if (!rc && fsync(j->fd))
		rc = -errno;
	if (close(j->fd) && !rc)
		rc = -errno;
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	pthread_cond_destroy(&j->done);
	free(j->buf);
	free(j->slots);
	free(j);
	return rc;
}
