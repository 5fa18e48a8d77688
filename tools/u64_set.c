#include "u64_set.h"

#include <stdlib.h>

static size_t home(uint64_t key, size_t cap)
{
	return (size_t)(key * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

/* Where key is, or the empty slot where it would go. */
static size_t slot(const struct u64_set *s, uint64_t key)
{
	size_t m = s->cap - 1, j = home(key, s->cap);
	while (s->keys[j] && s->keys[j] != key)
		j = (j + 1) & m;
	return j;
}

int u64_set_add(struct u64_set *s, uint64_t key)
{
	if ((s->used + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *k = calloc(cap, sizeof(*k));
		if (!k)
			return -1;
		struct u64_set n = {k, cap, s->used};
		for (size_t i = 0; i < s->cap; i++)
			if (s->keys[i])
				k[slot(&n, s->keys[i])] = s->keys[i];
		free(s->keys);
		*s = n;
	}
	size_t j = slot(s, key);
	if (s->keys[j])
		return 0;
	s->keys[j] = key;
	s->used++;
	return 1;
}

int u64_set_has(const struct u64_set *s, uint64_t key)
{
	return s->cap && s->keys[slot(s, key)] == key;
}

void u64_set_del(struct u64_set *s, uint64_t key)
{
	if (!s->cap)
		return;
	size_t m = s->cap - 1, j = slot(s, key);
	if (s->keys[j] != key)
		return;
	s->keys[j] = 0;
	s->used--;
	/* Pull later keys of the run back over the hole when their home allows it. */
	for (size_t i = (j + 1) & m; s->keys[i]; i = (i + 1) & m) {
		size_t h = home(s->keys[i], s->cap);
		if (((i - h) & m) >= ((i - j) & m)) {
			s->keys[j] = s->keys[i];
			s->keys[i] = 0;
			j = i;
		}
	}
}

void u64_set_free(struct u64_set *s)
{
	free(s->keys);
	s->keys = NULL;
	s->cap = s->used = 0;
}
