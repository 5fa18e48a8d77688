#include "message.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"
#include "grow.h"
#include "smtp_cmd.h"

#define NO_OFF UINT32_MAX

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

static unsigned rcpt_notify_of(const smtpbulk_message_t *m, size_t i)
{
	return m->rcpt_notify && m->rcpt_notify[i] ? m->rcpt_notify[i] : m->dsn_notify;
}

int sb_msg_new(struct sb_msg_pool *pool, const smtpbulk_message_t *m, struct sb_msg **out)
{
	char tmp[SMTP_PATH_MAX + 1];
	size_t strings = 0;
	int n;

	if (!m || m->struct_size < offsetof(smtpbulk_message_t, user_data) || !m->from ||
	    !m->rcpts || m->n_rcpts == 0 || (!m->body && m->body_len) ||
	    m->n_rcpts > 100000)
		return -EINVAL;

	/* Validate every address first, so a bad one costs no allocation. */
	n = smtp_addr_normalize(m->from, tmp, sizeof(tmp));
	if (n < 0)
		return n == -ENOSPC ? SMTPBULK_EBADADDR : n;
	strings += (size_t)n + 1;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		n = smtp_addr_normalize(m->rcpts[i], tmp, sizeof(tmp));
		if (n <= 0)
			return SMTPBULK_EBADADDR;
		strings += (size_t)n + 1;
	}

	/* DSN: encoded once here, on the caller's thread; bad values are the caller's
	 * error now, not a refusal later. */
	const int dsn_fields = m->struct_size >= offsetof(smtpbulk_message_t, orcpts) +
						       sizeof(m->orcpts);
	char dbuf[SMTP_CMD_MAX];
	size_t dsn_ptrs = 0;
	if (dsn_fields) {
		n = smtp_dsn_mail(dbuf, sizeof(dbuf), m->dsn_ret, m->envid);
		if (n < 0)
			return SMTPBULK_EBADPARAM;
		strings += n ? (size_t)n + 1 : 0;
		if (m->dsn_notify || m->rcpt_notify || m->orcpts) {
			dsn_ptrs = m->n_rcpts;
			for (size_t i = 0; i < m->n_rcpts; i++) {
				n = smtp_dsn_rcpt(dbuf, sizeof(dbuf), rcpt_notify_of(m, i),
						  m->orcpts ? m->orcpts[i] : NULL);
				if (n < 0)
					return SMTPBULK_EBADPARAM;
				strings += n ? (size_t)n + 1 : 0;
			}
		}
	}

	/* The engine works on the canonical body (CRLF line ends, a final CRLF). A body
	 * already in that form is borrowed as is when the caller allows, else copied; any
	 * other is normalised into the message's block, here on the caller's thread. */
	const char *raw = m->body ? m->body : "";
	int canonical = dotstuff_is_canonical(raw, m->body_len);
	size_t canon_len = canonical ? m->body_len : dotstuff_wire_size(raw, m->body_len);
	int borrow = (m->flags & SMTPBULK_MSG_BORROW_BODY) && canonical;
	/* Room for typical replies ("250 2.1.5 Ok") to every command, so recording them
	 * on the worker costs no allocation. */
	size_t arena = 96 + 48 * m->n_rcpts;
	size_t sz = align8(sizeof(struct sb_msg)) +
		    align8(m->n_rcpts * sizeof(struct sb_reply_rec)) +
		    align8(m->n_rcpts * sizeof(smtpbulk_rcpt_result_t)) +
		    align8(dsn_ptrs * sizeof(char *)) + align8(arena) + strings +
		    (borrow ? 0 : canon_len);
	uint8_t klass;
	char *block = sb_msg_pool_get(pool, sz, &klass);
	if (!block)
		return -ENOMEM;

	struct sb_msg *msg = (struct sb_msg *)(void *)block;
	memset(msg, 0, sizeof(*msg));
	msg->pool = pool;
	msg->pool_class = klass;
	char *p = block + align8(sizeof(struct sb_msg));
	msg->rcpt_recs = (struct sb_reply_rec *)(void *)p;
	p += align8(m->n_rcpts * sizeof(struct sb_reply_rec));
	msg->rcpts = (smtpbulk_rcpt_result_t *)(void *)p;
	p += align8(m->n_rcpts * sizeof(smtpbulk_rcpt_result_t));
	if (dsn_ptrs) {
		msg->rcpt_dsn = (const char **)(void *)p;
		p += align8(dsn_ptrs * sizeof(char *));
	}
	msg->arena = p;
	msg->arena_cap = arena;
	p += align8(arena);

	n = smtp_addr_normalize(m->from, p, strings);
	msg->from = p;
	p += n + 1;
	if (smtp_has_8bit(msg->from, (size_t)n))
		msg->flags |= SB_MSG_UTF8ADDR;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		n = smtp_addr_normalize(m->rcpts[i], p, strings);
		memset(&msg->rcpts[i], 0, sizeof(msg->rcpts[i]));
		msg->rcpts[i].rcpt = p;
		if (smtp_has_8bit(p, (size_t)n))
			msg->flags |= SB_MSG_UTF8ADDR;
		p += n + 1;
	}
	/* Encoded again as counted above (into dbuf: the block has no byte to spare). */
	if (dsn_fields && (n = smtp_dsn_mail(dbuf, sizeof(dbuf), m->dsn_ret, m->envid)) > 0) {
		memcpy(p, dbuf, (size_t)n + 1);
		msg->mail_dsn = p;
		p += n + 1;
	}
	for (size_t i = 0; i < dsn_ptrs; i++) {
		n = smtp_dsn_rcpt(dbuf, sizeof(dbuf), rcpt_notify_of(m, i),
				  m->orcpts ? m->orcpts[i] : NULL);
		msg->rcpt_dsn[i] = NULL;
		if (n > 0) {
			memcpy(p, dbuf, (size_t)n + 1);
			msg->rcpt_dsn[i] = p;
			p += n + 1;
		}
	}
	if (borrow) {
		msg->body = raw;
	} else if (canonical) {
		if (m->body_len)
			memcpy(p, raw, m->body_len);
		msg->body = p;
		msg->flags |= SB_MSG_OWN_BODY;
	} else {
		struct dotstuff d;
		size_t used, n_out;
		dotstuff_init_crlf(&d);
		/* Output never exceeds canon_len, computed by the same rules. */
		n_out = dotstuff_run(&d, raw, m->body_len, &used, p, canon_len + DOTSTUFF_MAX_EXPANSION);
		n_out += dotstuff_finish(&d, p + n_out);
		msg->body = p;
		msg->flags |= SB_MSG_OWN_BODY;
		(void)n_out;
	}
	msg->body_len = canon_len;
	msg->n_rcpts = m->n_rcpts;
	msg->host = m->host;
	/* Fields a caller's older header may lack are read only when its struct has them. */
	if (m->struct_size >= offsetof(smtpbulk_message_t, user_data) + sizeof(m->user_data))
		msg->res.user_data = m->user_data;
	if (m->struct_size >= offsetof(smtpbulk_message_t, start_ns) + sizeof(m->start_ns))
		msg->start_ns = m->start_ns;
	if (!dotstuff_has_dot_line(msg->body, msg->body_len))
		msg->flags |= SB_MSG_CLEAN;
	if (smtp_has_8bit(msg->body, msg->body_len))
		msg->flags |= SB_MSG_8BIT;
	sbq_node_init(&msg->node);
	sb_msg_reset_replies(msg);
	*out = msg;
	return 0;
}

void sb_msg_free(struct sb_msg *msg)
{
	if (!msg)
		return;
	if (msg->flags & SB_MSG_HEAP_ARENA)
		free(msg->arena);
	sb_msg_pool_put(msg->pool, msg, msg->pool_class);
}

void sb_msg_reset_replies(struct sb_msg *msg)
{
	struct sb_reply_rec none = {0, NO_OFF, NO_OFF, SB_RCPT_PENDING};
	msg->final = none;
	if (!msg->rcpts_done) {
		for (size_t i = 0; i < msg->n_rcpts; i++)
			msg->rcpt_recs[i] = none;
		msg->arena_len = 0;
		return;
	}
	/* The settled keep their texts in the arena, which keeps growing: by at most a
	 * transaction's replies per attempt, and attempts are bounded. */
	for (size_t i = 0; i < msg->n_rcpts; i++)
		if (!sb_rcpt_done(&msg->rcpt_recs[i]))
			msg->rcpt_recs[i] = none;
}

void sb_msg_rcpt_settle(struct sb_msg *msg, size_t i, enum sb_rcpt_state st)
{
	struct sb_reply_rec *rec = &msg->rcpt_recs[i];
	if (sb_rcpt_done(rec))
		return;
	rec->state = (uint8_t)st;
	msg->rcpts_done++;
	if (st == SB_RCPT_DELIVERED)
		msg->rcpts_delivered++;
}

smtpbulk_status_t sb_msg_merged_status(const struct sb_msg *msg, smtpbulk_status_t st)
{
	if (!msg->rcpts_done)
		return st; /* one transaction decided it all, as it said */
	if (st == SMTPBULK_DELIVERED || st == SMTPBULK_PARTIAL)
		return msg->rcpts_delivered == msg->n_rcpts ? SMTPBULK_DELIVERED
							    : SMTPBULK_PARTIAL;
	return msg->rcpts_delivered ? SMTPBULK_PARTIAL : st;
}

static int arena_reserve(struct sb_msg *msg, size_t more)
{
	if (msg->arena_len + more <= msg->arena_cap)
		return 0;
	if (more > SIZE_MAX - msg->arena_len)
		return -ENOMEM;
	size_t cap = sb_grow_size(msg->arena_cap * 2, msg->arena_len + more, 256, 1);
	if (!cap || cap > UINT32_MAX - 1) /* offsets into it are 32-bit */
		return -ENOMEM;
	char *a;
	if (msg->flags & SB_MSG_HEAP_ARENA) {
		a = realloc(msg->arena, cap);
	} else { /* leave the block's own room */
		a = malloc(cap);
		if (a)
			memcpy(a, msg->arena, msg->arena_len);
	}
	if (!a)
		return -ENOMEM;
	msg->flags |= SB_MSG_HEAP_ARENA;
	msg->arena = a;
	msg->arena_cap = cap;
	return 0;
}

int sb_msg_record(struct sb_msg *msg, size_t slot, const struct smtp_reply *r)
{
	struct sb_reply_rec *rec = slot == SB_SLOT_FINAL ? &msg->final : &msg->rcpt_recs[slot];
	/* A recipient's reply keeps its first line only (at most SMTP_REPLY_LINE_MAX):
	 * the server writes the reply texts, and a valid 16 KB reply to each of 10,000
	 * recipients would otherwise hold 160 MB per message. The deciding reply (the
	 * final slot) keeps all its lines. */
	int whole = slot == SB_SLOT_FINAL;
	size_t room = whole || r->raw_len < SMTP_REPLY_LINE_MAX ? r->raw_len : SMTP_REPLY_LINE_MAX;
	rec->code = r->code;
	rec->enh_off = rec->text_off = NO_OFF;
	/* Worst case: the raw text kept plus the enhanced code and two NULs. */
	if (arena_reserve(msg, room + r->enh_len + 2))
		return -ENOMEM;
	if (r->enh) {
		rec->enh_off = (uint32_t)msg->arena_len;
		memcpy(msg->arena + msg->arena_len, r->enh, r->enh_len);
		msg->arena_len += r->enh_len;
		msg->arena[msg->arena_len++] = '\0';
	}
	rec->text_off = (uint32_t)msg->arena_len;
	size_t pos = 0, tl;
	const char *t;
	int first = 1;
	while (smtp_reply_next_line(r, &pos, 1, &t, &tl)) {
		if (!first)
			msg->arena[msg->arena_len++] = '\n';
		first = 0;
		memcpy(msg->arena + msg->arena_len, t, tl);
		msg->arena_len += tl;
		if (!whole)
			break;
	}
	msg->arena[msg->arena_len++] = '\0';
	return 0;
}

static void fill_reply(const struct sb_msg *msg, const struct sb_reply_rec *rec,
		       smtpbulk_reply_t *out)
{
	out->code = rec->code;
	out->enhanced = rec->enh_off == NO_OFF ? "" : msg->arena + rec->enh_off;
	out->text = rec->text_off == NO_OFF ? "" : msg->arena + rec->text_off;
}

void sb_msg_finish(struct sb_msg *msg, smtpbulk_status_t status, int error)
{
	msg->res.status = status;
	msg->res.error = error;
	fill_reply(msg, &msg->final, &msg->res.reply);
	for (size_t i = 0; i < msg->n_rcpts; i++)
		fill_reply(msg, &msg->rcpt_recs[i], &msg->rcpts[i].reply);
	msg->res.rcpts = msg->rcpts;
	msg->res.n_rcpts = msg->n_rcpts;
	msg->res.attempts = msg->attempts;
	msg->res.id = msg->id;
	msg->res.phases.paced_ns = msg->paced_ns;
}
