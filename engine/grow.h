/*
 * Growing an array by doubling, in one place: the size arithmetic is checked for
 * overflow, and on failure the old array is untouched (the caller still owns it).
 */
#ifndef SB_GROW_H
#define SB_GROW_H

#include <stdint.h>
#include <stdlib.h>

/* The capacity to grow cap to so that need fits: cap doubled (from first when cap is
 * 0) until it does. 0 when that would overflow, or elem * capacity would. */
static inline size_t sb_grow_size(size_t cap, size_t need, size_t first, size_t elem)
{
	size_t n = cap ? cap : (first ? first : 1);
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return 0;
		n *= 2;
	}
	return elem && n > SIZE_MAX / elem ? 0 : n;
}

/* Make room for need elements of size elem in p (cap elements now; 0 when p is NULL),
 * doubling from first. Returns the array (p itself when it is big enough) and sets
 * *cap, or NULL when memory or size_t runs out (p and *cap unchanged). */
static inline void *sb_grow(void *p, size_t *cap, size_t need, size_t elem, size_t first)
{
	if (need <= *cap && p)
		return p;
	size_t n = sb_grow_size(*cap, need, first, elem);
	void *q = n ? realloc(p, n * elem) : NULL;
	if (!q)
		return NULL;
	*cap = n;
	return q;
}

#endif
