/* Mail merge's rows: libcsv parses (quotes, embedded commas and line breaks); rows are
 * queued as a chunk of the file yields them and handed out one by one. */
#include "send_merge_source.h"

#include <csv.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpbulk.h"
#include "smtpbulk_send.h"

struct row {
	char **f;
	size_t n;
	int has_nul; /* a field held a NUL byte: no value can carry it */
};

struct merge_source {
	char *tpl;
	size_t tpl_len;
	uint64_t tpl_hash;
	const char *from, *csv_name;
	size_t max_size;
	FILE *csv;
	struct csv_parser p;
	int eof;
	struct row cur;        /* the row being parsed */
	struct row *ready;     /* rows parsed, not yet handed out: [head, used) */
	size_t head, used, cap;
	int oom;
	char **cols;           /* the header row */
	size_t n_cols;
	long id_col;           /* the "id" column, or -1 */
	uint64_t record;       /* records handed out, the header included */
};

static void row_free(struct row *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	free(r->f);
	memset(r, 0, sizeof(*r));
}

static void on_field(void *data, size_t len, void *arg)
{
	struct merge_source *s = arg;
	char **f = realloc(s->cur.f, (s->cur.n + 1) * sizeof(*f));
	char *v = malloc(len + 1);
	if (!f || !v) {
		free(v);
		if (f)
			s->cur.f = f;
		s->oom = 1;
		return;
	}
	memcpy(v, data, len);
	v[len] = '\0';
	if (memchr(v, '\0', len))
		s->cur.has_nul = 1;
	s->cur.f = f;
	f[s->cur.n++] = v;
}

static void on_row(int term, void *arg)
{
	struct merge_source *s = arg;
	(void)term;
	if (s->used == s->cap) {
		if (s->head) { /* room at the front: move down */
			memmove(s->ready, s->ready + s->head, (s->used - s->head) * sizeof(*s->ready));
			s->used -= s->head;
			s->head = 0;
		} else {
			size_t cap = s->cap ? s->cap * 2 : 64;
			struct row *r = realloc(s->ready, cap * sizeof(*r));
			if (!r) {
				s->oom = 1;
				row_free(&s->cur);
				return;
			}
			s->ready = r;
			s->cap = cap;
		}
	}
	s->ready[s->used++] = s->cur;
	memset(&s->cur, 0, sizeof(s->cur));
}

/* Parse on until a row is ready. 0 a row, 1 the end, -1 a read error or no memory. */
static int fill(struct merge_source *s, char *why, size_t cap)
{
	char buf[65536];
	while (s->head == s->used) {
		if (s->oom)
			return snprintf(why, cap, "out of memory"), -1;
		if (s->eof)
			return 1;
		size_t n = fread(buf, 1, sizeof(buf), s->csv);
		if (n > 0 && csv_parse(&s->p, buf, n, on_field, on_row, s) != n)
			return snprintf(why, cap, "%s: %s", s->csv_name,
					csv_strerror(csv_error(&s->p))), -1;
		if (n < sizeof(buf)) {
			if (ferror(s->csv))
				return snprintf(why, cap, "%s: %s", s->csv_name, strerror(errno)), -1;
			s->eof = 1;
			csv_fini(&s->p, on_field, on_row, s);
		}
	}
	return 0;
}

static struct row take(struct merge_source *s)
{
	struct row r = s->ready[s->head++];
	if (s->head == s->used)
		s->head = s->used = 0;
	return r;
}

int merge_source_open(const char *template_path, const char *csv_path, const char *from,
		      size_t max_size, struct merge_source **out, char *why, size_t cap)
{
	struct merge_source *s = calloc(1, sizeof(*s));
	if (!s)
		return snprintf(why, cap, "out of memory"), -1;
	s->from = from;
	s->max_size = max_size;
	s->csv_name = csv_path;
	s->id_col = -1;
	*out = s;
	if (send_read_file(template_path, max_size, &s->tpl, &s->tpl_len, why, cap))
		return -1;
	s->tpl_hash = smtpbulk_hash64(s->tpl, s->tpl_len);
	if (!(s->csv = fopen(csv_path, "rb")))
		return snprintf(why, cap, "%s: %s", csv_path, strerror(errno)), -1;
	if (csv_init(&s->p, CSV_APPEND_NULL))
		return snprintf(why, cap, "out of memory"), -1;
	int rc = fill(s, why, cap);
	if (rc)
		return rc > 0 ? (snprintf(why, cap, "%s: empty: no header row", csv_path), -1) : -1;
	struct row h = take(s);
	s->record = 1;
	s->cols = h.f;
	s->n_cols = h.n;
	if (s->n_cols && (unsigned char)s->cols[0][0] == 0xEF &&
	    (unsigned char)s->cols[0][1] == 0xBB && (unsigned char)s->cols[0][2] == 0xBF)
		memmove(s->cols[0], s->cols[0] + 3, strlen(s->cols[0] + 3) + 1); /* a BOM */
	for (size_t i = 0; i < s->n_cols; i++) {
		if (!*s->cols[i])
			return snprintf(why, cap, "%s: column %zu of the header row has no name",
					csv_path, i + 1), -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->cols[i], s->cols[j]) == 0)
				return snprintf(why, cap, "%s: column \"%.100s\" is named twice",
						csv_path, s->cols[i]), -1;
		if (strcmp(s->cols[i], "id") == 0)
			s->id_col = (long)i;
	}
	return 0;
}

void merge_source_close(struct merge_source *s)
{
	if (!s)
		return;
	if (s->csv) {
		fclose(s->csv);
		csv_free(&s->p);
	}
	for (size_t i = s->head; i < s->used; i++)
		row_free(&s->ready[i]);
	free(s->ready);
	row_free(&s->cur);
	for (size_t i = 0; i < s->n_cols; i++)
		free(s->cols[i]);
	free(s->cols);
	free(s->tpl);
	free(s);
}

/* The row's record into *r (why on -1). */
static int build(struct merge_source *s, struct row *row, const char *pos,
		 struct send_record *r, char *why, size_t cap)
{
	if (row->has_nul)
		return snprintf(why, cap, "a field holds a NUL byte"), -1;
	if (row->n != s->n_cols)
		return snprintf(why, cap, "%zu fields, the header row has %zu", row->n, s->n_cols), -1;
	smtpbulk_var_t *v = calloc(s->n_cols ? s->n_cols : 1, sizeof(*v));
	if (!v)
		return snprintf(why, cap, "out of memory"), -1;
	for (size_t i = 0; i < s->n_cols; i++)
		v[i] = (smtpbulk_var_t){s->cols[i], row->f[i]};
	char *msg;
	size_t len;
	int rc = send_render(s->tpl, s->tpl_len, v, s->n_cols, s->max_size, &msg, &len, why, cap);
	free(v);
	if (rc)
		return -1;
	smtpbulk_mailfile_t m;
	rc = smtpbulk_mailfile_parse(msg, len, s->from, &m);
	free(msg);
	if (rc)
		return snprintf(why, cap, "%s", smtpbulk_strerror(rc)), -1;
	const char *id = s->id_col >= 0 ? row->f[s->id_col] : pos;
	if (!*id || strlen(id) > 200 || strpbrk(id, "\r\n")) {
		smtpbulk_mailfile_free(&m);
		return snprintf(why, cap, "\"id\" must be 1 to 200 characters on one line"), -1;
	}
	memset(r, 0, sizeof(*r));
	if (!(r->id = strdup(id))) {
		smtpbulk_mailfile_free(&m);
		return snprintf(why, cap, "out of memory"), -1;
	}
	r->from = m.from;
	r->to = m.rcpts;
	r->n_to = m.n_rcpts;
	r->body = m.data;
	r->body_len = m.len;
	return 0;
}

int merge_source_next(struct merge_source *s, struct send_record *r, uint64_t *hash,
		      char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	memset(r, 0, sizeof(*r));
	*hash = 0;
	int rc = fill(s, why, why_cap);
	if (rc)
		return rc > 0 ? 1 : -2;
	struct row row = take(s);
	s->record++;
	snprintf(pos, pos_cap, "%.200s:%" PRIu64, s->csv_name, s->record);
	/* The row's content and the template's: either changed is a changed record. */
	uint64_t h = s->tpl_hash;
	for (size_t i = 0; i < row.n; i++)
		h = h * 0x100000001B3ull ^ smtpbulk_hash64(row.f[i], strlen(row.f[i]));
	*hash = h ? h : 1;
	rc = build(s, &row, pos, r, why, why_cap);
	row_free(&row);
	return rc;
}
