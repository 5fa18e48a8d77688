/*
 * A message file's envelope from its headers, as `sendmail -t` takes it, and an mbox
 * read one message at a time: GMime parses (headers, address lists, groups, encoded
 * words, the mbox "From " lines); this file only decides what the envelope is.
 */
#include <errno.h>
#include <fcntl.h>
#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gmime_once.h"
#include "smtpbulk_send.h"

void smtpbulk_mailfile_free(smtpbulk_mailfile_t *m)
{
	if (!m)
		return;
	free(m->from);
	for (size_t i = 0; i < m->n_rcpts; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->data);
	memset(m, 0, sizeof(*m));
}

static int add_rcpt(smtpbulk_mailfile_t *m, const char *addr)
{
	if (!addr || !*addr)
		return 0;
	if (smtpbulk_check_address(addr) <= 0 || strpbrk(addr, " \t"))
		return SMTPBULK_EBADADDR;
	for (size_t i = 0; i < m->n_rcpts; i++)
		if (strcasecmp(m->rcpts[i], addr) == 0)
			return 0; /* once each, as To and Cc may both name it */
	char **r = realloc(m->rcpts, (m->n_rcpts + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	m->rcpts = r;
	if (!(r[m->n_rcpts] = strdup(addr)))
		return -ENOMEM;
	m->n_rcpts++;
	return 0;
}

/* Every mailbox of a list, a group's members too. */
static int add_list(smtpbulk_mailfile_t *m, InternetAddressList *l)
{
	int n = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		int rc = 0;
		if (INTERNET_ADDRESS_IS_MAILBOX(ia))
			rc = add_rcpt(m, internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
		else if (INTERNET_ADDRESS_IS_GROUP(ia))
			rc = add_list(m, internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)));
		if (rc)
			return rc;
	}
	return 0;
}

static const char *first_mailbox(InternetAddressList *l)
{
	int n = l ? internet_address_list_length(l) : 0;
	for (int i = 0; i < n; i++) {
		InternetAddress *ia = internet_address_list_get_address(l, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia))
			return internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
	}
	return NULL;
}

/* An mbox's escaping undone (mboxrd): a line ">From ", ">>From "... loses one '>'. The
 * "From " lines were escaped by whoever wrote the mbox; the server should get the
 * message as it was. (An mboxo writer left ">From " lines of the message itself as they
 * were, so those come out one '>' short: the format cannot tell them apart.) */
static size_t unescape_from(char *s, size_t len)
{
	size_t r = 0, w = 0;
	while (r < len) {
		size_t q = r; /* a line starts at r */
		while (q < len && s[q] == '>')
			q++;
		if (q > r && len - q >= 5 && memcmp(s + q, "From ", 5) == 0)
			r++;
		while (r < len && s[r] != '\n')
			s[w++] = s[r++];
		if (r < len)
			s[w++] = s[r++];
	}
	s[w] = '\0';
	return w;
}

/* msg's envelope into *out; raw/len: its bytes as read (sent unchanged unless a Bcc
 * must go), or NULL (an mbox message: written out by GMime). */
static int envelope_of(GMimeMessage *msg, const char *raw, size_t len, const char *from,
		       smtpbulk_mailfile_t *out)
{
	memset(out, 0, sizeof(*out));
	GMimeObject *obj = GMIME_OBJECT(msg);
	if (!g_mime_header_list_get_count(g_mime_object_get_header_list(obj)))
		return SMTPBULK_EMESSAGE;
	const char *f = from;
	if (!f)
		f = first_mailbox(g_mime_message_get_from(msg));
	if (!f)
		f = first_mailbox(g_mime_message_get_sender(msg));
	if (!f)
		return SMTPBULK_ENOSENDER;
	if ((*f && smtpbulk_check_address(f) < 0) || strpbrk(f, " \t"))
		return SMTPBULK_EBADADDR;
	int rc = (out->from = strdup(f)) ? 0 : -ENOMEM;
	if (!rc)
		rc = add_list(out, g_mime_message_get_to(msg));
	if (!rc)
		rc = add_list(out, g_mime_message_get_cc(msg));
	if (!rc)
		rc = add_list(out, g_mime_message_get_bcc(msg));
	if (!rc && !out->n_rcpts)
		rc = SMTPBULK_ENORCPTS;
	if (rc)
		goto fail;
	int had_bcc = 0;
	while (g_mime_object_remove_header(obj, "Bcc")) /* every one there is */
		had_bcc = 1;
	if (raw && !had_bcc) {
		out->data = malloc(len + 1);
		if (!out->data) {
			rc = -ENOMEM;
			goto fail;
		}
		memcpy(out->data, raw, len);
		out->data[len] = '\0';
		out->len = len;
		return 0;
	}
	char *s = g_mime_object_to_string(obj, NULL);
	if (!s || !(out->data = strdup(s))) {
		g_free(s);
		rc = -ENOMEM;
		goto fail;
	}
	g_free(s);
	out->len = strlen(out->data);
	if (!raw)
		out->len = unescape_from(out->data, out->len);
	return 0;
fail:
	smtpbulk_mailfile_free(out);
	return rc;
}

int smtpbulk_mailfile_parse(const void *data, size_t len, const char *from,
			    smtpbulk_mailfile_t *out)
{
	if (!data || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return SMTPBULK_EMESSAGE;
	sb_gmime_once();
	GMimeStream *st = g_mime_stream_mem_new_with_buffer(data, len);
	if (!st)
		return -ENOMEM;
	GMimeParser *p = g_mime_parser_new_with_stream(st);
	g_object_unref(st);
	GMimeMessage *msg = p ? g_mime_parser_construct_message(p, NULL) : NULL;
	if (p)
		g_object_unref(p);
	if (!msg)
		return SMTPBULK_EMESSAGE;
	int rc = envelope_of(msg, data, len, from, out);
	g_object_unref(msg);
	return rc;
}

struct smtpbulk_mbox {
	GMimeParser *parser;
	uint64_t index;
};

int smtpbulk_mbox_open(const char *path, smtpbulk_mbox_t **out)
{
	if (!path || !out)
		return -EINVAL;
	*out = NULL;
	sb_gmime_once();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct smtpbulk_mbox *mb = calloc(1, sizeof(*mb));
	GMimeStream *st = mb ? g_mime_stream_fs_new(fd) : NULL; /* it owns fd now */
	if (!st) {
		close(fd);
		free(mb);
		return -ENOMEM;
	}
	mb->parser = g_mime_parser_new_with_stream(st);
	g_object_unref(st);
	if (!mb->parser) {
		free(mb);
		return -ENOMEM;
	}
	g_mime_parser_set_format(mb->parser, GMIME_FORMAT_MBOX);
	*out = mb;
	return 0;
}

int smtpbulk_mbox_next(smtpbulk_mbox_t *mb, const char *from, smtpbulk_mailfile_t *out,
		       uint64_t *index)
{
	if (!mb || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (g_mime_parser_eos(mb->parser))
		return 1;
	GMimeMessage *msg = g_mime_parser_construct_message(mb->parser, NULL);
	if (!msg && g_mime_parser_eos(mb->parser))
		return 1;
	mb->index++;
	if (index)
		*index = mb->index;
	if (!msg)
		return SMTPBULK_EMESSAGE;
	int rc = envelope_of(msg, NULL, 0, from, out);
	g_object_unref(msg);
	return rc;
}

void smtpbulk_mbox_close(smtpbulk_mbox_t *mb)
{
	if (!mb)
		return;
	g_object_unref(mb->parser);
	free(mb);
}
