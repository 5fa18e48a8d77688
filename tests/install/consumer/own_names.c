/*
 * A program that links the static library and has functions of its own named like the
 * library's internals (sess_*, lat_*, sb_*). The installed archive exports only
 * smtpbulk_*, so this links ("multiple definition" otherwise) and the library keeps
 * calling its own functions, never these (with an archive of separate objects the
 * linker could take the program's instead, without a word).
 */
#include <smtpbulk.h>
#include <stdio.h>

static int called; /* how often the library reached one of ours */

int sess_init(void) { return ++called; }
int lat_record(void) { return ++called; }
int sb_log(void) { return ++called; }
int sbq_create(void) { return ++called; }
int sb_options_copy(const void *in, void *out) { (void)in, (void)out; return ++called; }
int sb_engine_create(const void *opts, void *out) { (void)opts, (void)out; return ++called; }

int main(void)
{
	smtpbulk_options_t o;
	smtpbulk_t *sb = NULL;
	smtpbulk_options_init(&o);
	/* No hosts: the library's own checks refuse it (sb_options_copy, then
	 * sb_engine_create in the library, not the ones above). */
	int rc = smtpbulk_create(&o, &sb);
	if (sb)
		smtpbulk_destroy(sb);
	if (called) {
		fprintf(stderr, "the library called the program's own functions\n");
		return 1;
	}
	if (sess_init() != 1) /* and ours are still ours */
		return 1;
	printf("%s: create without hosts: %s\n", smtpbulk_version(), smtpbulk_strerror(rc));
	return 0;
}
