/*
 * Compact set of keys (keyset.h): the validator's "key seen in this run".
 *
 * A key is reduced to its 64-bit SipHash-2-4 under a random per-set key and
 * only that fingerprint is stored, in an open-addressing table of power-of-two
 * size with linear probing; 0 marks an empty slot, so a fingerprint of 0 is
 * stored as 1. The table doubles at 3/4 load: 8 bytes a slot and nothing else
 * per key, about 16 MiB for a million keys. Two distinct keys share a
 * fingerprint with probability about n^2 / 2^65 (3e-8 for a million keys);
 * the random key keeps an adversary from choosing such keys on purpose.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/keyset.h"

#define KS_INITIAL_SLOTS 64

struct sl_keyset {
    uint64_t *slots;
    size_t mask; /* slots - 1 */
    size_t count;
    uint8_t key[16];
};

/* ---- SipHash-2-4 (Aumasson and Bernstein), 64-bit output ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

uint64_t sl_siphash(const uint8_t k[16], const void *data, size_t len)
{
    const uint8_t *in = data;
    uint64_t k0 = load_le64(k), k1 = load_le64(k + 8);
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
    const uint8_t *end = in + (len & ~(size_t)7);

    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    switch (len & 7) {
    case 7:
        b |= (uint64_t)in[6] << 48;
        /* fall through */
    case 6:
        b |= (uint64_t)in[5] << 40;
        /* fall through */
    case 5:
        b |= (uint64_t)in[4] << 32;
        /* fall through */
    case 4:
        b |= (uint64_t)in[3] << 24;
        /* fall through */
    case 3:
        b |= (uint64_t)in[2] << 16;
        /* fall through */
    case 2:
        b |= (uint64_t)in[1] << 8;
        /* fall through */
    case 1:
        b |= (uint64_t)in[0];
        break;
    case 0:
        break;
    }
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the table ---- */

/* A random key for a new set. getrandom only fails before the kernel's pool
 * is ready or under seccomp; the clock, pid and an address are then still
 * unpredictable enough for duplicate detection. */
static void random_key(uint8_t key[16], const void *salt)
{
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(key + got, 16 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got == 16)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t seed[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                        (uint64_t)(uintptr_t)salt};
    uint8_t k0[16] = {0};
    uint64_t a = sl_siphash(k0, seed, sizeof(seed));
    seed[0] ^= a;
    uint64_t b = sl_siphash(k0, seed, sizeof(seed));
    memcpy(key, &a, 8);
    memcpy(key + 8, &b, 8);
}

/* Slot of fp, or of the empty slot where it would go. */
static size_t probe(const uint64_t *slots, size_t mask, uint64_t fp)
{
    size_t i = (size_t)fp & mask;
    while (slots[i] && slots[i] != fp)
        i = (i + 1) & mask;
    return i;
}

static int grow(struct sl_keyset *ks)
{
    size_t n = (ks->mask + 1) * 2;
    if (n > SIZE_MAX / sizeof(uint64_t))
        return SL_ERR_NOMEM;
    uint64_t *slots = calloc(n, sizeof(uint64_t));
    if (!slots)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i <= ks->mask; i++)
        if (ks->slots[i])
            slots[probe(slots, n - 1, ks->slots[i])] = ks->slots[i];
    free(ks->slots);
    ks->slots = slots;
    ks->mask = n - 1;
    return 0;
}

/* Returns an empty set with its own random key, or NULL when out of memory.
 * The caller owns it (sl_keyset_destroy). Not thread-safe: one thread at a
 * time, or a lock around every call. */
struct sl_keyset *sl_keyset_new(void)
{
    struct sl_keyset *ks = malloc(sizeof(*ks));
    if (!ks)
        return NULL;
    ks->slots = calloc(KS_INITIAL_SLOTS, sizeof(uint64_t));
    if (!ks->slots) {
        free(ks);
        return NULL;
    }
    ks->mask = KS_INITIAL_SLOTS - 1;
    ks->count = 0;
    random_key(ks->key, ks);
    return ks;
}

/* Frees ks; accepts NULL. */
void sl_keyset_destroy(struct sl_keyset *ks)
{
    if (!ks)
        return;
    free(ks->slots);
    free(ks);
}

/* 1 when key was in the set; 0 when it was not (with add, it is now). Returns
 * SL_ERR_NOMEM, leaving the set as it was, when adding needs a bigger table
 * that cannot be allocated. */
int sl_keyset_test(struct sl_keyset *ks, const char *key, size_t len, bool add)
{
    uint64_t fp = sl_siphash(ks->key, len ? key : "", len);
    if (!fp)
        fp = 1;
    size_t i = probe(ks->slots, ks->mask, fp);
    if (ks->slots[i])
        return 1;
    if (!add)
        return 0;
    if ((ks->count + 1) * 4 > (ks->mask + 1) * 3) {
        int rc = grow(ks);
        if (rc)
            return rc;
        i = probe(ks->slots, ks->mask, fp);
    }
    ks->slots[i] = fp;
    ks->count++;
    return 0;
}

/* Number of keys in ks. */
size_t sl_keyset_count(const struct sl_keyset *ks)
{
    return ks->count;
}
