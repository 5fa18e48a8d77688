#include "msg_pool.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>

/*
 * The stacks are Treiber stacks in C11 atomics rather than liburcu's lfstack: urcu's
 * inline push takes &head->node of a NULL head (undefined behaviour that UBSan stops
 * the asan preset on), and ThreadSanitizer cannot see its inline-asm atomics. With
 * one popper at a time (the try-flag below) a pop cannot meet ABA: a node can only
 * come back onto the stack after a pop, and no other pop runs meanwhile.
 */
struct pool_node {
	struct pool_node *next;
};

/* Classes of 512 B << k: 512 B .. 32 KB. A message with a 1 KB body and a few
 * recipients lands in the 2 KB class; bigger blocks are malloc'd as before. */
#define CLASS_MIN_SHIFT 9
#define N_CLASSES 7

struct pool_class {
	/* Its own cache line: classes are used by different message sizes at once. */
	alignas(64) _Atomic(struct pool_node *) top; /* freed blocks; any thread pushes */
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
		atomic_init(&c->top, NULL);
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
		struct pool_node *n = atomic_load(&p->cls[k].top);
		while (n) {
			struct pool_node *next = n->next;
			free(n);
			n = next;
		}
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
	/* One popper at a time (that is what makes the pop ABA-safe); a second getter
	 * does not wait for the first, it allocates. */
	if (!atomic_flag_test_and_set_explicit(&c->popping, memory_order_acquire)) {
		struct pool_node *n = atomic_load_explicit(&c->top, memory_order_acquire);
		while (n && !atomic_compare_exchange_weak_explicit(&c->top, &n, n->next,
								   memory_order_acquire,
								   memory_order_acquire))
			;
		atomic_flag_clear_explicit(&c->popping, memory_order_release);
		if (n) {
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
	struct pool_node *n = block;
	n->next = atomic_load_explicit(&c->top, memory_order_relaxed);
	/* Release: the block's last writes happen before the getter that pops it. */
	while (!atomic_compare_exchange_weak_explicit(&c->top, &n->next, n, memory_order_release,
						      memory_order_relaxed))
		;
}

size_t sb_msg_pool_kept(struct sb_msg_pool *p, uint8_t klass)
{
	if (!p || klass >= N_CLASSES)
		return 0;
	return atomic_load_explicit(&p->cls[klass].kept, memory_order_relaxed);
}
