#include "debug_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "grow.h"
#include "queue.h"

struct log_rec {
	struct sbq_node node;
	int level, host, conn;
	struct timespec at;
	size_t len;
	char text[]; /* NUL-terminated */
};

struct sb_logger {
	char *tmpl;              /* NULL: stderr */
	const char *const *hosts;
	size_t n_hosts;
	struct sbq *q;           /* any thread enqueues; the writer dequeues */
	_Atomic uint64_t backlog, dropped;
	_Atomic int stop;
	pthread_t thread;
	pthread_mutex_t lock;    /* the writer's sleep only */
	pthread_cond_t cond;
	/* Writer thread only: the files opened so far, by (host, connection). */
	struct file_ent {
		int host, conn;
		FILE *f;
	} *ents;
	size_t n_ents, cap_ents;
};

static int put(char *out, size_t cap, size_t *n, const char *s, size_t len)
{
	if (*n + len >= cap)
		return -ENAMETOOLONG;
	memcpy(out + *n, s, len);
	*n += len;
	return 0;
}

int sb_debug_path_expand(const char *tmpl, const char *host, const char *thread,
			 const struct tm *tm, char *out, size_t cap)
{
	if (!strcmp(tmpl, "default"))
		tmpl = "debug_[HOST]_[THREAD].txt";
	size_t n = 0;
	char num[16];
	for (const char *p = tmpl; *p;) {
		const char *val = NULL;
		size_t skip = 0;
		int sanitize = 0;
		if (*p == '[') {
			static const char *const keys[] = {"[HOST]", "[THREAD]", "[YYYY]", "[MM]", "[DD]",
							   "[WK]",   "[hh]",     "[mm]",   "[ss]"};
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				size_t kl = strlen(keys[k]);
				if (strncmp(p, keys[k], kl))
					continue;
				skip = kl;
				switch (k) {
				case 0: val = host; sanitize = 1; break;
				case 1: val = thread; sanitize = 1; break;
				case 2: snprintf(num, sizeof(num), "%04d", tm->tm_year + 1900); break;
				case 3: snprintf(num, sizeof(num), "%02d", tm->tm_mon + 1); break;
				case 4: snprintf(num, sizeof(num), "%02d", tm->tm_mday); break;
				case 5: strftime(num, sizeof(num), "%V", tm); break;
				case 6: snprintf(num, sizeof(num), "%02d", tm->tm_hour); break;
				case 7: snprintf(num, sizeof(num), "%02d", tm->tm_min); break;
				case 8: snprintf(num, sizeof(num), "%02d", tm->tm_sec); break;
				}
				if (!val)
					val = num;
				break;
			}
		}
		if (!val) {
			if (put(out, cap, &n, p, 1))
				return -ENAMETOOLONG;
			p++;
			continue;
		}
		for (const char *v = val; *v; v++) {
			char ch = *v;
			if (sanitize && (ch == '/' || (unsigned char)ch < ' '))
				ch = '_';
			if (put(out, cap, &n, &ch, 1))
				return -ENAMETOOLONG;
		}
		p += skip;
	}
	out[n] = '\0';
	return (int)n;
}

/* mkdir -p for the directories of path. */
static void make_dirs(char *path)
{
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(path, 0777); /* EEXIST is fine; a real failure shows at fopen */
		*p = '/';
	}
}

static FILE *file_for(struct sb_logger *lg, const struct log_rec *r)
{
	if (!lg->tmpl)
		return stderr;
	for (size_t i = 0; i < lg->n_ents; i++)
		if (lg->ents[i].host == r->host && lg->ents[i].conn == r->conn)
			return lg->ents[i].f;
	char path[4096], thread[16];
	struct tm tm;
	time_t now = time(NULL);
	localtime_r(&now, &tm);
	const char *host = r->host >= 0 && (size_t)r->host < lg->n_hosts ? lg->hosts[r->host]
									   : "engine";
	if (r->conn >= 0)
		snprintf(thread, sizeof(thread), "%d", r->conn);
	else
		snprintf(thread, sizeof(thread), "main");
	FILE *f = NULL;
	if (sb_debug_path_expand(lg->tmpl, host, thread, &tm, path, sizeof(path)) > 0) {
		make_dirs(path);
		f = fopen(path, "ae");
	}
	if (!f)
		f = stderr; /* the lines are not lost; the file's name is in the first one */
	struct file_ent *e = sb_grow(lg->ents, &lg->cap_ents, lg->n_ents + 1, sizeof(*e), 16);
	if (!e)
		return f;
	lg->ents = e;
	lg->ents[lg->n_ents++] = (struct file_ent){r->host, r->conn, f};
	if (f == stderr)
		fprintf(stderr, "smtpbulk: cannot open debug log '%s': %s; writing here\n", path,
			strerror(errno));
	return f;
}

static void write_rec(struct sb_logger *lg, struct log_rec *r)
{
	FILE *f = file_for(lg, r);
	if (f == stderr && !lg->tmpl) {
		if (r->host >= 0 && (size_t)r->host < lg->n_hosts)
			fprintf(f, "smtpbulk[%d]: [%s#%d] %s\n", r->level, lg->hosts[r->host], r->conn,
				r->text);
		else
			fprintf(f, "smtpbulk[%d]: %s\n", r->level, r->text);
		return;
	}
	struct tm tm;
	char ts[32];
	localtime_r(&r->at.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(f, "%s.%03ld [%d] %s\n", ts, r->at.tv_nsec / 1000000, r->level, r->text);
}

/* Write what is queued; 1 if there was anything. */
static int drain(struct sb_logger *lg)
{
	struct sbq_node *nodes[256];
	int busy, any = 0;
	size_t n;
	while ((n = sbq_dequeue(lg->q, nodes, 256, &busy)) > 0) {
		any = 1;
		for (size_t i = 0; i < n; i++) {
			struct log_rec *r = (struct log_rec *)(void *)nodes[i];
			write_rec(lg, r);
			atomic_fetch_sub_explicit(&lg->backlog, r->len, memory_order_relaxed);
			free(r);
		}
	}
	if (any) {
		fflush(stderr);
		for (size_t i = 0; i < lg->n_ents; i++)
			fflush(lg->ents[i].f);
	}
	return any || busy;
}

static void *writer_main(void *arg)
{
	struct sb_logger *lg = arg;
	while (!atomic_load(&lg->stop)) {
		if (drain(lg))
			continue;
		/* Nothing queued: look again in 20 ms. Producers never signal, so a line
		 * costs them no system call. */
		struct timespec ts = sb_deadline_in(20 * SB_NS_PER_MS);
		pthread_mutex_lock(&lg->lock);
		if (!atomic_load(&lg->stop))
			pthread_cond_timedwait(&lg->cond, &lg->lock, &ts);
		pthread_mutex_unlock(&lg->lock);
	}
	drain(lg);
	return NULL;
}

int sb_logger_new(const char *path_template, const char *const *host_names, size_t n_hosts,
		  struct sb_logger **out)
{
	struct sb_logger *lg = calloc(1, sizeof(*lg));
	if (!lg)
		return -ENOMEM;
	lg->hosts = host_names;
	lg->n_hosts = n_hosts;
	pthread_mutex_init(&lg->lock, NULL);
	sb_cond_init(&lg->cond); /* its timed wait must not jump with the wall clock */
	int rc = -ENOMEM;
	if (path_template && !(lg->tmpl = strdup(path_template)))
		goto fail;
	if ((rc = sbq_create(&lg->q)) != 0)
		goto fail;
	if ((rc = -pthread_create(&lg->thread, NULL, writer_main, lg)) != 0)
		goto fail;
	*out = lg;
	return 0;
fail:
	sbq_destroy(lg->q);
	free(lg->tmpl);
	pthread_mutex_destroy(&lg->lock);
	pthread_cond_destroy(&lg->cond);
	free(lg);
	return rc;
}

void sb_logger_free(struct sb_logger *lg)
{
	if (!lg)
		return;
	pthread_mutex_lock(&lg->lock);
	atomic_store(&lg->stop, 1);
	pthread_cond_signal(&lg->cond);
	pthread_mutex_unlock(&lg->lock);
	pthread_join(lg->thread, NULL);
	drain(lg); /* an enqueuer caught half-way has finished by now */
	uint64_t dropped = atomic_load(&lg->dropped);
	if (dropped) /* said once, where the lines would have gone */
		fprintf(stderr, "smtpbulk: %llu debug lines dropped: the log writer fell behind\n",
			(unsigned long long)dropped);
	for (size_t i = 0; i < lg->n_ents; i++)
		if (lg->ents[i].f != stderr)
			fclose(lg->ents[i].f);
	free(lg->ents);
	sbq_destroy(lg->q);
	free(lg->tmpl);
	pthread_mutex_destroy(&lg->lock);
	pthread_cond_destroy(&lg->cond);
	free(lg);
}

void sb_logger_line(struct sb_logger *lg, int level, int host, int conn, const char *text)
{
	size_t len = strlen(text);
	if (atomic_load_explicit(&lg->backlog, memory_order_relaxed) + len > SB_LOG_BACKLOG) {
		atomic_fetch_add_explicit(&lg->dropped, 1, memory_order_relaxed);
		return;
	}
	struct log_rec *r = malloc(sizeof(*r) + len + 1);
	if (!r) {
		atomic_fetch_add_explicit(&lg->dropped, 1, memory_order_relaxed);
		return;
	}
	sbq_node_init(&r->node);
	r->level = level;
	r->host = host;
	r->conn = conn;
	r->len = len;
	clock_gettime(CLOCK_REALTIME, &r->at); /* the wall clock: what a log line shows */
	memcpy(r->text, text, len + 1);
	atomic_fetch_add_explicit(&lg->backlog, len, memory_order_relaxed);
	sbq_enqueue(lg->q, &r->node);
}
