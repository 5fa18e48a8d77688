/*
 * Recycled message blocks. A message's block is allocated on the submitting thread and
 * freed on a worker (after its result callback), so plain malloc/free makes the two
 * threads meet on one malloc arena's lock for every message. The pool keeps freed
 * blocks in size classes on lock-free stacks instead: any thread puts, a getter takes
 * one with a single compare-and-swap, and a getter that finds
 * another getter of the same class mid-way does not wait: it calls malloc.
 *
 * Threads: every function may be called from any thread, except sb_msg_pool_free(),
 * which must be the last call (no get or put running or to come).
 */
#ifndef SB_MSG_POOL_H
#define SB_MSG_POOL_H

#include <stddef.h>
#include <stdint.h>

struct sb_msg_pool;

#define SB_POOL_NONE 0xff /* the class of a block the pool does not know: free() it */

/* keep_bytes: at most this many bytes kept per size class. NULL when out of memory. */
struct sb_msg_pool *sb_msg_pool_new(size_t keep_bytes);
void sb_msg_pool_free(struct sb_msg_pool *p);

/* A block of at least size bytes (NULL when out of memory); *klass says where it goes
 * back. p may be NULL: plain malloc. Blocks are always malloc'd memory, so free()
 * is a valid (slower) way to release any of them. */
void *sb_msg_pool_get(struct sb_msg_pool *p, size_t size, uint8_t *klass);
/* Give a block back (klass from get). p may be NULL or klass SB_POOL_NONE: free(). */
void sb_msg_pool_put(struct sb_msg_pool *p, void *block, uint8_t klass);

/* Blocks of that class on the pool now (approximate while other threads use it). */
size_t sb_msg_pool_kept(struct sb_msg_pool *p, uint8_t klass);

#endif
