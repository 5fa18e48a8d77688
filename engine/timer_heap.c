#include "timer_heap.h"

#include <errno.h>
#include <stdlib.h>

#include "grow.h"

int th_push(struct timer_heap *h, uint64_t due, void *p, uint64_t tag)
{
	struct th_ent *v = sb_grow(h->v, &h->cap, h->n + 1, sizeof(*h->v), 64);
	if (!v)
		return -ENOMEM;
	h->v = v;
	size_t i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2].due > due) { /* sift up */
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i] = (struct th_ent){due, p, tag};
	return 0;
}

struct th_ent th_pop(struct timer_heap *h)
{
	struct th_ent top = h->v[0];
	struct th_ent last = h->v[--h->n];
	size_t i = 0;
	for (;;) { /* sift the last entry down from the root */
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].due < h->v[c].due)
			c++;
		if (h->v[c].due >= last.due)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
	return top;
}

void th_free(struct timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
