/*
 * A set of non-zero 64-bit keys (hashes of ids): open addressing, linear probing,
 * deletion by backward shift. 8 bytes a slot, half full at most. Not thread-safe: its
 * owner says who holds it.
 */
#ifndef SB_U64_SET_H
#define SB_U64_SET_H

#include <stddef.h>
#include <stdint.h>

struct u64_set {
	uint64_t *keys; /* 0: empty */
	size_t cap, used;
};

/* 1 added, 0 already there, -1 out of memory. key must not be 0. */
int u64_set_add(struct u64_set *s, uint64_t key);
int u64_set_has(const struct u64_set *s, uint64_t key);
void u64_set_del(struct u64_set *s, uint64_t key);
void u64_set_free(struct u64_set *s);

#endif
