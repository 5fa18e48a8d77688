#define _LGPL_SOURCE /* inline lock-free push/pop from urcu's static headers */
#include "msg_pool.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <urcu/lfstack.h>

#include "tsan.h"

/* Classes of 512 B << k: 512 B .. 32 KB. A message with a 1 KB body and a few
 * recipients lands in the 2 KB class; bigger blocks are malloc'd as before. */
#define CLASS_MIN_SHIFT 9
#define N_CLASSES 7

struct pool_class {
	/* Its own cache line: classes are used by different message sizes at once. */
	alignas(64) struct cds_lfs_stack stack; /* freed blocks; any thread pushes */
	atomic_flag popping;                     /* held by the one thread popping */
	atomic_size_t kept;                      /* blocks on the stack (approximate) */
	size_t keep_max;
};

struct sb_msg_pool {
	struct pool_class cls[N_CLASSES];
};

struct sb_msg_pool *sb_msg_pool_new(size_t keep_bytes)
{
	struct sb_msg_pool *p = aligned_alloc(64, sizeof(*p));
	if (!p)
		return NULL;
	for (unsigned k = 0; k < N_CLASSES; k++) {
		struct pool_class *c = &p->cls[k];
		cds_lfs_init(&c->stack);
		atomic_flag_clear(&c->popping);
		atomic_init(&c->kept, 0);
		c->keep_max = keep_bytes >> (CLASS_MIN_SHIFT + k);
	}
	return p;
}

void sb_msg_pool_free(struct sb_msg_pool *p)
{
	if (!p)
		return;
	for (unsigned k = 0; k < N_CLASSES; k++) {
		struct cds_lfs_node *n;
		while ((n = __cds_lfs_pop(&p->cls[k].stack)) != NULL) {
			HANDOFF_ACQUIRE(n);
			free(n);
		}
		cds_lfs_destroy(&p->cls[k].stack);
	}
	free(p);
}

static unsigned class_of(size_t size)
{
	unsigned k = 0;
	while (k < N_CLASSES && ((size_t)1 << (CLASS_MIN_SHIFT + k)) < size)
		k++;
	return k; /* N_CLASSES: too big for the pool */
}

void *sb_msg_pool_get(struct sb_msg_pool *p, size_t size, uint8_t *klass)
{
	unsigned k = class_of(size);
	if (!p || k == N_CLASSES) {
		*klass = SB_POOL_NONE;
		return malloc(size);
	}
	struct pool_class *c = &p->cls[k];
	*klass = (uint8_t)k;
	/* __cds_lfs_pop needs its callers kept apart (that is what makes it ABA-safe);
	 * a second getter does not wait for the first, it allocates. */
	if (!atomic_flag_test_and_set_explicit(&c->popping, memory_order_acquire)) {
		struct cds_lfs_node *n = __cds_lfs_pop(&c->stack);
		atomic_flag_clear_explicit(&c->popping, memory_order_release);
		if (n) {
			HANDOFF_ACQUIRE(n);
			atomic_fetch_sub_explicit(&c->kept, 1, memory_order_relaxed);
			return n;
		}
	}
	return malloc((size_t)1 << (CLASS_MIN_SHIFT + k));
}

void sb_msg_pool_put(struct sb_msg_pool *p, void *block, uint8_t klass)
{
	if (!block)
		return;
	if (!p || klass >= N_CLASSES) {
		free(block);
		return;
	}
	struct pool_class *c = &p->cls[klass];
	if (atomic_load_explicit(&c->kept, memory_order_relaxed) >= c->keep_max) {
		free(block); /* enough kept for the peak so far: give memory back */
		return;
	}
	atomic_fetch_add_explicit(&c->kept, 1, memory_order_relaxed);
	struct cds_lfs_node *n = block;
	cds_lfs_node_init(n);
	HANDOFF_RELEASE(n);
	cds_lfs_push(&c->stack, n);
}

size_t sb_msg_pool_kept(struct sb_msg_pool *p, uint8_t klass)
{
	if (!p || klass >= N_CLASSES)
		return 0;
	return atomic_load_explicit(&p->cls[klass].kept, memory_order_relaxed);
}
