/* smtpbulk send --mail: paths to records, one open directory and one open mbox at most
 * at a time, so the walk holds one message in memory whatever the tree's size. */
#include "send_mail_source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtpbulk.h"
#include "smtpbulk_send.h"

struct mail_source {
	char *const *paths;
	size_t n, next;          /* paths[next] is the one to open after the current */
	const char *from;
	size_t max_size;
	DIR *dir;                /* a directory being read, or NULL */
	char dir_path[PATH_MAX];
	int maildir;             /* 1 reading DIR/cur, 2 reading DIR/new, 0 a plain dir */
	char maildir_base[PATH_MAX - 8]; /* room for "/cur" or "/new" after it */
	smtpbulk_mbox_t *mbox;   /* an mbox being read, or NULL */
	char mbox_path[PATH_MAX];
};

int mail_source_open(char *const *paths, size_t n, const char *from, size_t max_size,
		     struct mail_source **out)
{
	struct mail_source *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->paths = paths;
	s->n = n;
	s->from = from;
	s->max_size = max_size;
	*out = s;
	return 0;
}

void mail_source_close(struct mail_source *s)
{
	if (!s)
		return;
	if (s->dir)
		closedir(s->dir);
	smtpbulk_mbox_close(s->mbox);
	free(s);
}

static int is_dir(const char *base, const char *sub)
{
	char p[PATH_MAX];
	struct stat st;
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", base, sub) >= sizeof(p))
		return 0;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether the file starts as an mbox does: 1 yes, 0 no, -errno. */
static int starts_as_mbox(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char b[5];
	ssize_t n = read(fd, b, sizeof(b));
	int err = errno;
	close(fd);
	if (n < 0)
		return -err;
	return n == 5 && memcmp(b, "From ", 5) == 0;
}

/* The reason alone: the record's position names the path. */
static int bad(char *why, size_t cap, const char *reason)
{
	snprintf(why, cap, "%s", reason);
	return -1;
}

static int to_record(smtpbulk_mailfile_t *m, const char *pos, struct send_record *r)
{
	memset(r, 0, sizeof(*r));
	if (!(r->id = strdup(pos)))
		return -1;
	r->from = m->from;
	r->to = m->rcpts;
	r->n_to = m->n_rcpts;
	r->body = m->data;
	r->body_len = m->len;
	memset(m, 0, sizeof(*m)); /* the record's now */
	return 0;
}

/* One message file (or the start of an mbox: then 2, and s->mbox is open). */
static int take_file(struct mail_source *s, const char *path, struct send_record *r,
		     uint64_t *hash, char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	snprintf(pos, pos_cap, "%s", path);
	int mb = starts_as_mbox(path);
	if (mb < 0)
		return bad(why, why_cap, strerror(-mb));
	if (mb) {
		int rc = smtpbulk_mbox_open(path, &s->mbox);
		if (rc)
			return bad(why, why_cap, strerror(-rc));
		snprintf(s->mbox_path, sizeof(s->mbox_path), "%s", path);
		return 2;
	}
	char *data;
	size_t len;
	if (send_read_file(path, s->max_size, &data, &len, why, why_cap))
		return -1;
	smtpbulk_mailfile_t m;
	int rc = smtpbulk_mailfile_parse(data, len, s->from, &m);
	*hash = smtpbulk_hash64(data, len);
	free(data);
	if (rc)
		return bad(why, why_cap, smtpbulk_strerror(rc));
	if (to_record(&m, pos, r)) {
		smtpbulk_mailfile_free(&m);
		return bad(why, why_cap, "out of memory");
	}
	return 0;
}

static int next_in_mbox(struct mail_source *s, struct send_record *r, uint64_t *hash,
			char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	smtpbulk_mailfile_t m;
	uint64_t index = 0;
	int rc = smtpbulk_mbox_next(s->mbox, s->from, &m, &index);
	if (rc == 1) {
		smtpbulk_mbox_close(s->mbox);
		s->mbox = NULL;
		return 2;
	}
	snprintf(pos, pos_cap, "%s#%llu", s->mbox_path, (unsigned long long)index);
	if (rc)
		return bad(why, why_cap, smtpbulk_strerror(rc));
	if (m.len > s->max_size) {
		snprintf(why, why_cap, "%zu bytes, more than --max-size %zu", m.len, s->max_size);
		smtpbulk_mailfile_free(&m);
		return -1;
	}
	*hash = smtpbulk_hash64(m.data, m.len);
	if (to_record(&m, pos, r)) {
		smtpbulk_mailfile_free(&m);
		return bad(why, why_cap, "out of memory");
	}
	return 0;
}

static int open_dir(struct mail_source *s, const char *path, char *why, size_t why_cap)
{
	if (!(s->dir = opendir(path)))
		return bad(why, why_cap, strerror(errno));
	snprintf(s->dir_path, sizeof(s->dir_path), "%s", path);
	return 2;
}

/* The next entry of the open directory: 2 for "go on" (none yet, or a subdirectory
 * passed over), else what take_file() says. */
static int next_in_dir(struct mail_source *s, struct send_record *r, uint64_t *hash,
		       char *pos, size_t pos_cap, char *why, size_t why_cap)
{
	errno = 0;
	struct dirent *d = readdir(s->dir);
	if (!d) {
		int err = errno;
		closedir(s->dir);
		s->dir = NULL;
		if (err)
			return bad(why, why_cap, strerror(err));
		if (s->maildir == 1) { /* cur/ done: new/ */
			char p[PATH_MAX];
			s->maildir = 2;
			snprintf(p, sizeof(p), "%s/new", s->maildir_base);
			snprintf(pos, pos_cap, "%s", p);
			return open_dir(s, p, why, why_cap);
		}
		s->maildir = 0;
		return 2;
	}
	if (d->d_name[0] == '.')
		return 2;
	char p[PATH_MAX];
	if ((size_t)snprintf(p, sizeof(p), "%s/%s", s->dir_path, d->d_name) >= sizeof(p)) {
		snprintf(pos, pos_cap, "%s/%s", s->dir_path, d->d_name);
		return bad(why, why_cap, "path too long");
	}
	struct stat st;
	if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
		return 2; /* not recursive */
	return take_file(s, p, r, hash, pos, pos_cap, why, why_cap);
}

static int next_path(struct mail_source *s, struct send_record *r, uint64_t *hash, char *pos,
		     size_t pos_cap, char *why, size_t why_cap)
{
	const char *path = s->paths[s->next++];
	snprintf(pos, pos_cap, "%s", path);
	struct stat st;
	if (stat(path, &st) != 0)
		return bad(why, why_cap, strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (is_dir(path, "cur") && is_dir(path, "new")) {
			char p[PATH_MAX];
			if (strlen(path) >= sizeof(s->maildir_base))
				return bad(why, why_cap, "path too long");
			snprintf(s->maildir_base, sizeof(s->maildir_base), "%s", path);
			snprintf(p, sizeof(p), "%s/cur", path);
			s->maildir = 1;
			return open_dir(s, p, why, why_cap);
		}
		return open_dir(s, path, why, why_cap);
	}
	if (!S_ISREG(st.st_mode))
		return bad(why, why_cap, "not a regular file or a directory");
	return take_file(s, path, r, hash, pos, pos_cap, why, why_cap);
}

int mail_source_next(struct mail_source *s, struct send_record *r, uint64_t *hash, char *pos,
		     size_t pos_cap, char *why, size_t why_cap)
{
	memset(r, 0, sizeof(*r));
	*hash = 0;
	for (;;) {
		int rc;
		if (s->mbox)
			rc = next_in_mbox(s, r, hash, pos, pos_cap, why, why_cap);
		else if (s->dir)
			rc = next_in_dir(s, r, hash, pos, pos_cap, why, why_cap);
		else if (s->next < s->n)
			rc = next_path(s, r, hash, pos, pos_cap, why, why_cap);
		else
			return 1;
		if (rc != 2)
			return rc;
	}
}
