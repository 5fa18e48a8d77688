/*
 * ThreadSanitizer cannot see liburcu's x86 atomics (inline asm), so it misses the
 * happens-before edge from a push/enqueue to the pop/dequeue of the same node and would
 * report every later access to what the node carries as a race. The code that hands a
 * node over says so with these; races inside urcu itself are suppressed in
 * tests/tsan.supp. Outside TSan builds they compile to nothing.
 */
#ifndef SB_TSAN_H
#define SB_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define SB_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SB_TSAN 1
#endif
#endif

#ifdef SB_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define HANDOFF_RELEASE(p) __tsan_release(p)
#define HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define HANDOFF_RELEASE(p) ((void)(p))
#define HANDOFF_ACQUIRE(p) ((void)(p))
#endif

#endif
