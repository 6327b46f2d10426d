/*
 * A set of keys seen in one run (duplicate detection), compact: keys are kept
 * as 64-bit keyed fingerprints (SipHash-2-4 under a random per-set key), not
 * as text, and most of them in a sorted, compressed (Elias-Fano) level, so a
 * set costs 6 to 9 bytes a key past a million keys whatever the keys' length
 * (some 30 MiB at its peak for 5 million keys).
 */
#ifndef SLUICE_KEYSET_H
#define SLUICE_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_keyset;

struct sl_keyset *sl_keyset_new(void);
void sl_keyset_destroy(struct sl_keyset *ks);
/* 1 when key was in the set, 0 when not (and with add it is now); negative
 * on out of memory. */
int sl_keyset_test(struct sl_keyset *ks, const char *key, size_t len, bool add);
size_t sl_keyset_count(const struct sl_keyset *ks);
/* Bytes ks holds from malloc now; *peak (when not NULL) the most it held. */
size_t sl_keyset_bytes(const struct sl_keyset *ks, size_t *peak);

/* For tests: a set whose table of recent keys never grows past slots, so
 * that a few thousand keys cross many merges into the compressed level. */
struct sl_keyset *sl_keyset_new_cap(size_t slots);
/* For tests: after n more of ks's allocations, they fail as if memory had
 * run out; a negative n lets them all succeed again. */
void sl_keyset_fail_after(struct sl_keyset *ks, long n);

/* 16 unpredictable bytes without a system call (after the first): SipHash
 * of a counter under one process secret from getrandom (the clock, pid and
 * salt's address when getrandom fails). The keys of sets, the gateway's
 * request ids and its webhook engine's id. */
void sl_random_key(uint8_t key[16], const void *salt);

/* SipHash-2-4 of data under the 16-byte key k. */
uint64_t sl_siphash(const uint8_t k[16], const void *data, size_t len);

#endif
