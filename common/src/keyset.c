/*
 * Compact set of keys (keyset.h): the validator's "key seen in this run".
 *
 * A key is reduced to its 64-bit SipHash-2-4 under a random per-set key and
 * only that fingerprint is kept; two distinct keys share one with probability
 * about n^2 / 2^65 (7e-7 for 5 million keys), and the random key keeps an
 * adversary from choosing such keys on purpose. 0 marks an empty slot, so a
 * fingerprint of 0 is kept as 1.
 *
 * Fingerprints live in two places. New ones go to a small table indexed by
 * their top bits with ordered linear probing (each cluster kept sorted, no
 * wrap-around, a spare tail instead), so the table is always one sorted array
 * with holes: 8 bytes a slot, at most 3/4 full. When it is full it grows, up
 * to a cap; at the cap it is merged into the level: every fingerprint so far,
 * sorted and Elias-Fano coded. A fingerprint's top hbits (about log2 n) pick a
 * bucket, written in unary in the upper bit vector (a 1 per key, a 0 ending
 * each bucket), and its lbits = 64 - hbits low bits are packed in chunks of
 * 2^13 keys; with a sample of where every 64th bucket starts, that is about
 * 44 bits a key, near the 43.2 bits any set of 5 million random 64-bit values
 * needs. A lookup probes the table, then reads a sample, a word or three of
 * the upper vector and the low bits of the bucket's keys (about one).
 *
 * A merge streams the old level and the table into a new level and gives each
 * old chunk of low bits to the new level as soon as it is read, so it needs
 * the new upper vector and samples and a few chunks more than the result, not
 * an old and a new copy of the level. Everything a merge needs is allocated
 * before it starts: when memory runs out the set stays as it was. The table's
 * cap is 4 MiB, or a quarter of the level's size when that is more, so merges
 * stay rare as the set grows.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/keyset.h"

#define KS_TABLE_MIN  1024u      /* slots of a new set's table */
#define KS_TABLE_CAP  (1u << 19) /* slots the table may grow to (4 MiB) */
#define KS_TABLE_PAD  256u       /* spare slots after the last home slot */
#define KS_HBITS_MIN  8u         /* so that lbits + 7 fits a 64-bit load */
#define KS_CHUNK_BITS 13u        /* 2^13 keys' low bits a chunk */
#define KS_CHUNK_KEYS ((size_t)1 << KS_CHUNK_BITS)
#define KS_SAMPLE     64u /* buckets between samples */

/* The compressed level: n distinct fingerprints in ascending order. Key i
 * with bucket h = fp >> lbits is bit h + i of upper (set), and bucket h ends
 * with the zero at bit h + (number of keys in buckets <= h). */
struct level {
    size_t n;
    unsigned hbits, lbits;
    uint64_t *upper;   /* (n + 2^hbits) / 64 + 2 words */
    uint32_t *samples; /* [j]: bit where bucket j * KS_SAMPLE starts */
    unsigned char **chunks;
    size_t nchunks, chunk_bytes;
};

struct sl_keyset {
    uint64_t *slots; /* tslots + KS_TABLE_PAD, ascending apart from zeros */
    size_t tslots;   /* a power of two */
    unsigned tshift; /* 64 - log2(tslots): fp >> tshift is fp's home slot */
    size_t tcount;
    size_t tcap;    /* the most slots the table grows to */
    bool fixed_cap; /* tcap stays (sl_keyset_new_cap) */
    struct level lv;
    size_t bytes, peak; /* held from malloc now, and at most */
    long fail_after;    /* allocations left before one fails; < 0: none fails */
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

/* ---- a random key ---- */

/* 16 bytes from getrandom; false when it failed (before the kernel's pool
 * is ready, or under seccomp). */
static bool getrandom16(uint8_t out[16])
{
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(out + got, 16 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static uint8_t secret[16];
static bool secret_ok;
static _Atomic uint64_t keys_made;
static pthread_once_t secret_once = PTHREAD_ONCE_INIT;

static void secret_init(void)
{
    secret_ok = getrandom16(secret);
}

/* A random key (keyset.h): SipHash of a counter under one process-wide
 * secret from getrandom, so a new set costs no system call (the gateway makes
 * one a webhook delivery) and every key is still unpredictable. When
 * getrandom fails, the clock, pid and an address are still unpredictable
 * enough for duplicate detection and ids. */
void sl_random_key(uint8_t key[16], const void *salt)
{
    pthread_once(&secret_once, secret_init);
    uint64_t a, b;
    if (secret_ok) {
        uint64_t n = atomic_fetch_add(&keys_made, 1) * 2;
        a = sl_siphash(secret, &n, sizeof(n));
        n++;
        b = sl_siphash(secret, &n, sizeof(n));
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t seed[4] = {(uint64_t)ts.tv_sec, (uint64_t)ts.tv_nsec, (uint64_t)getpid(),
                            (uint64_t)(uintptr_t)salt};
        uint8_t k0[16] = {0};
        a = sl_siphash(k0, seed, sizeof(seed));
        seed[0] ^= a;
        b = sl_siphash(k0, seed, sizeof(seed));
    }
    memcpy(key, &a, 8);
    memcpy(key + 8, &b, 8);
}

/* ---- memory, counted ---- */

static void *ks_alloc(struct sl_keyset *ks, size_t n, bool zero)
{
    if (ks->fail_after == 0)
        return NULL;
    if (ks->fail_after > 0)
        ks->fail_after--;
    void *p = zero ? calloc(1, n) : malloc(n);
    if (p) {
        ks->bytes += n;
        if (ks->bytes > ks->peak)
            ks->peak = ks->bytes;
    }
    return p;
}

static void ks_free(struct sl_keyset *ks, void *p, size_t n)
{
    if (p) {
        free(p);
        ks->bytes -= n;
    }
}

/* ---- bits ---- */

static uint64_t load64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

static void store64(unsigned char *p, uint64_t x)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    memcpy(p, &x, 8);
}

/* Without -mpopcnt the builtin is a libgcc call; this is as fast. */
static unsigned popcount64(uint64_t x)
{
#ifdef __POPCNT__
    return (unsigned)__builtin_popcountll(x);
#else
    x -= (x >> 1) & UINT64_C(0x5555555555555555);
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (unsigned)((x * UINT64_C(0x0101010101010101)) >> 56);
#endif
}

/* Index of the set bit of w that has k set bits below it (k < popcount). */
static unsigned select64(uint64_t w, unsigned k)
{
    unsigned base = 0;
    for (;;) {
        unsigned c = popcount64(w & 0xff);
        if (k < c)
            break;
        k -= c;
        w >>= 8;
        base += 8;
    }
    while (k--)
        w &= w - 1;
    return base + (unsigned)__builtin_ctzll(w);
}

/* ---- the level ---- */

/* Bucket bits for n keys: floor(log2(4n/3)), so that 2^hbits / n is in
 * (2/3, 4/3], where lbits + 1 + 1.5 * 2^hbits / n bits a key is least. */
static unsigned level_hbits(size_t n)
{
    unsigned h = KS_HBITS_MIN;
    while (h < 40 && (UINT64_C(3) << (h + 1)) <= (uint64_t)n * 4)
        h++;
    return h;
}

static size_t level_words(size_t n, unsigned hbits)
{
    return (n + ((size_t)1 << hbits)) / 64 + 2;
}

static size_t level_nsamples(unsigned hbits)
{
    return ((size_t)1 << hbits) / KS_SAMPLE + 1;
}

static size_t level_bytes(const struct level *lv)
{
    if (!lv->n)
        return 0;
    return lv->nchunks * (lv->chunk_bytes + sizeof(*lv->chunks)) +
           level_words(lv->n, lv->hbits) * sizeof(uint64_t) +
           level_nsamples(lv->hbits) * sizeof(uint32_t);
}

static uint64_t level_low(const struct level *lv, size_t i)
{
    const unsigned char *c = lv->chunks[i >> KS_CHUNK_BITS];
    size_t bit = (i & (KS_CHUNK_KEYS - 1)) * lv->lbits;
    return load64(c + (bit >> 3)) >> (bit & 7) & ((UINT64_C(1) << lv->lbits) - 1);
}

static bool level_has(const struct level *lv, uint64_t fp)
{
    if (!lv->n)
        return false;
    uint64_t h = fp >> lv->lbits, lo = fp & ((UINT64_C(1) << lv->lbits) - 1);
    const uint64_t *up = lv->upper;
    size_t pos = lv->samples[h / KS_SAMPLE];
    unsigned r = (unsigned)(h % KS_SAMPLE), c;
    /* The low bits are in main memory: fetch them while the zeros before
     * bucket h are counted, from where the bucket should be (the keys of r
     * buckets, on average, after the sample's): most often it is there. */
    size_t est = pos - (size_t)(h - r) + (size_t)(((uint64_t)r * lv->n) >> lv->hbits);
    if (est < lv->n)
        __builtin_prefetch(lv->chunks[est >> KS_CHUNK_BITS] +
                           (((est & (KS_CHUNK_KEYS - 1)) * lv->lbits) >> 3));
    if (r) {
        /* Bucket h starts after the r-th zero from the sample's bucket. */
        size_t wi = pos >> 6;
        uint64_t w = ~up[wi] & (~UINT64_C(0) << (pos & 63));
        while ((c = popcount64(w)) < r) {
            r -= c;
            w = ~up[++wi];
        }
        pos = (wi << 6) + select64(w, r - 1) + 1;
    }
    for (size_t i = pos - (size_t)h; up[pos >> 6] >> (pos & 63) & 1; pos++, i++) {
        uint64_t v = level_low(lv, i);
        if (v >= lo)
            return v == lo;
    }
    return false;
}

static void level_free(struct sl_keyset *ks, struct level *lv)
{
    if (lv->chunks) {
        for (size_t c = 0; c < lv->nchunks; c++)
            ks_free(ks, lv->chunks[c], lv->chunk_bytes);
        ks_free(ks, lv->chunks, lv->nchunks * sizeof(*lv->chunks));
    }
    if (lv->upper)
        ks_free(ks, lv->upper, level_words(lv->n, lv->hbits) * sizeof(uint64_t));
    if (lv->samples)
        ks_free(ks, lv->samples, level_nsamples(lv->hbits) * sizeof(uint32_t));
    memset(lv, 0, sizeof(*lv));
}

/* ---- the table of recent keys ---- */

static size_t table_len(size_t tslots)
{
    return tslots + KS_TABLE_PAD;
}

static unsigned log2_size(size_t n)
{
    unsigned b = 0;
    while (((size_t)1 << b) < n)
        b++;
    return b;
}

/* Whether fp is in the table; *at is its slot or the one it would go in.
 * The last slot stays empty, so every scan ends. */
static bool table_find(const struct sl_keyset *ks, uint64_t fp, size_t *at)
{
    const uint64_t *s = ks->slots;
    size_t i = (size_t)(fp >> ks->tshift);
    while (s[i] && s[i] < fp)
        i++;
    *at = i;
    return s[i] == fp;
}

/* Puts fp at its slot at, shifting the rest of its cluster up one; false
 * when the cluster would reach the last slot. */
static bool table_put(struct sl_keyset *ks, uint64_t fp, size_t at)
{
    uint64_t *s = ks->slots;
    size_t end = at;
    while (s[end])
        end++;
    if (end + 1 >= table_len(ks->tslots))
        return false;
    memmove(s + at + 1, s + at, (end - at) * sizeof(*s));
    s[at] = fp;
    ks->tcount++;
    return true;
}

/* Doubles the table: its keys, already in order, each go to their new home
 * slot or just after the previous one. */
static int table_grow(struct sl_keyset *ks)
{
    size_t n = ks->tslots * 2, len = table_len(n), next = 0;
    unsigned shift = ks->tshift - 1;
    uint64_t *s = ks_alloc(ks, len * sizeof(*s), true);
    if (!s)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < table_len(ks->tslots); i++) {
        uint64_t fp = ks->slots[i];
        if (!fp)
            continue;
        size_t at = (size_t)(fp >> shift);
        if (at < next)
            at = next;
        if (at + 1 >= len) {
            ks_free(ks, s, len * sizeof(*s));
            return SL_ERR_LIMIT;
        }
        s[at] = fp;
        next = at + 1;
    }
    ks_free(ks, ks->slots, table_len(ks->tslots) * sizeof(*s));
    ks->slots = s;
    ks->tslots = n;
    ks->tshift = shift;
    return 0;
}

/* ---- merging the table into the level ---- */

/* Moves the table's keys, in order, to its first slots. */
static void table_compact(uint64_t *s, size_t len)
{
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        s[w] = s[i];
        w += s[i] != 0;
    }
}

/* Takes the old level's chunk c, all read, for the new level's pool (shrunk
 * to want bytes), or frees it and returns NULL. */
static unsigned char *merge_take_chunk(struct sl_keyset *ks, struct level *old, size_t c,
                                       size_t want, bool recycle)
{
    unsigned char *p = old->chunks[c];
    old->chunks[c] = NULL;
    if (!recycle) {
        ks_free(ks, p, old->chunk_bytes);
        return NULL;
    }
    if (old->chunk_bytes != want) {
        /* Shrinking in place does not fail in practice; if it did, p keeps
         * its old size and the count is short by the difference. */
        unsigned char *q = realloc(p, want);
        if (q)
            p = q;
        ks->bytes -= old->chunk_bytes - want;
    }
    return p;
}

/* Merges the table into the level and empties it. Allocates all it needs
 * first: SL_ERR_NOMEM leaves the set as it was. */
static int merge(struct sl_keyset *ks)
{
    struct level *old = &ks->lv, nw = {0};
    size_t m = ks->tcount, fresh, pool_len, npool = 0;
    unsigned char **pool = NULL;

    nw.n = old->n + m;
    nw.hbits = level_hbits(nw.n);
    if ((uint64_t)nw.n + (UINT64_C(1) << nw.hbits) >= UINT32_MAX)
        return SL_ERR_NOMEM; /* past 1.8 billion keys or so: 32-bit samples */
    nw.lbits = 64 - nw.hbits;
    nw.chunk_bytes = KS_CHUNK_KEYS * nw.lbits / 8 + 8;
    nw.nchunks = (nw.n + KS_CHUNK_KEYS - 1) >> KS_CHUNK_BITS;
    /* Output key k needs chunk k / 2^13 when the old keys before k - m have
     * been read: m / 2^13 + 2 chunks more than those read. */
    bool recycle = old->chunk_bytes >= nw.chunk_bytes;
    fresh = recycle ? (m >> KS_CHUNK_BITS) + 2 : nw.nchunks;
    if (fresh > nw.nchunks)
        fresh = nw.nchunks;
    pool_len = fresh + old->nchunks;
    nw.upper = ks_alloc(ks, level_words(nw.n, nw.hbits) * sizeof(uint64_t), true);
    nw.samples = ks_alloc(ks, level_nsamples(nw.hbits) * sizeof(uint32_t), false);
    nw.chunks = ks_alloc(ks, nw.nchunks * sizeof(*nw.chunks), true);
    pool = ks_alloc(ks, pool_len * sizeof(*pool), false);
    if (!nw.upper || !nw.samples || !nw.chunks || !pool)
        goto fail;
    for (; npool < fresh; npool++)
        if (!(pool[npool] = ks_alloc(ks, nw.chunk_bytes, false)))
            goto fail;
    table_compact(ks->slots, table_len(ks->tslots));

    /* The loop keeps what it uses in locals: its stores through byte
     * pointers would make the compiler reload every field it reads. */
    const uint64_t *t = ks->slots, *oup = old->upper;
    const size_t on = old->n, nn = nw.n;
    const unsigned ol = old->lbits, nl = nw.lbits;
    const uint64_t omask = (UINT64_C(1) << ol) - 1, nmask = (UINT64_C(1) << nl) - 1;
    uint64_t *nup = nw.upper;
    uint32_t *nsamples = nw.samples;
    size_t ti = 0, oi = 0, owi = 0, obit = 0, k = 0, uwi = 0;
    uint64_t ow = on ? oup[0] : 0, ov = 0, uw = 0, nextb = 0, acc = 0;
    unsigned accbits = 0;
    const unsigned char *oc = NULL;
    unsigned char *wp = NULL;
    bool need = true; /* ov is used up */

    while (k < nn) {
        if (need && oi < on) {
            /* The old level's next key. */
            while (!ow)
                ow = oup[++owi];
            size_t pos = (owi << 6) + (size_t)__builtin_ctzll(ow);
            ow &= ow - 1;
            if (!(oi & (KS_CHUNK_KEYS - 1))) {
                oc = old->chunks[oi >> KS_CHUNK_BITS];
                obit = 0;
            }
            ov = (uint64_t)(pos - oi) << ol | (load64(oc + (obit >> 3)) >> (obit & 7) & omask);
            obit += ol;
            need = false;
            if (!(++oi & (KS_CHUNK_KEYS - 1)) || oi == on) {
                unsigned char *p =
                    merge_take_chunk(ks, old, (oi - 1) >> KS_CHUNK_BITS, nw.chunk_bytes, recycle);
                if (p)
                    pool[npool++] = p;
            }
        }
        uint64_t x;
        if (!need && (ti == m || ov < t[ti])) {
            x = ov;
            need = true;
        } else {
            x = t[ti++];
        }

        /* Key k of the new level: its bucket's sample, its upper bit, its
         * low bits through a 64-bit accumulator. */
        uint64_t h = x >> nl, lo = x & nmask;
        for (; nextb <= h; nextb += KS_SAMPLE)
            nsamples[nextb / KS_SAMPLE] = (uint32_t)(nextb + k);
        size_t bit = (size_t)h + k;
        if (bit >> 6 != uwi) {
            nup[uwi] = uw;
            uwi = bit >> 6;
            uw = 0;
        }
        uw |= UINT64_C(1) << (bit & 63);
        if (!(k & (KS_CHUNK_KEYS - 1))) {
            wp = pool[--npool];
            nw.chunks[k >> KS_CHUNK_BITS] = wp;
        }
        acc |= lo << accbits;
        accbits += nl;
        if (accbits >= 64) {
            store64(wp, acc);
            wp += 8;
            accbits -= 64;
            acc = lo >> (nl - accbits);
        }
        /* A chunk's 2^13 keys fill whole words; zero the 8 spare bytes that
         * a read of its last keys may touch. */
        if (!(++k & (KS_CHUNK_KEYS - 1)))
            memset(wp, 0, 8);
    }
    if (k & (KS_CHUNK_KEYS - 1)) {
        store64(wp, acc);
        memset(wp + 8, 0, 8);
    }
    nup[uwi] = uw;
    for (; nextb <= (UINT64_C(1) << nw.hbits); nextb += KS_SAMPLE)
        nsamples[nextb / KS_SAMPLE] = (uint32_t)(nextb + k);

    while (npool)
        ks_free(ks, pool[--npool], nw.chunk_bytes);
    ks_free(ks, pool, pool_len * sizeof(*pool));
    level_free(ks, old); /* its chunks are all NULL by now */
    *old = nw;
    memset(ks->slots, 0, table_len(ks->tslots) * sizeof(*ks->slots));
    ks->tcount = 0;
    return 0;

fail:
    if (pool)
        while (npool)
            ks_free(ks, pool[--npool], nw.chunk_bytes);
    ks_free(ks, pool, pool_len * sizeof(*pool));
    level_free(ks, &nw);
    return SL_ERR_NOMEM;
}

/* Makes room in the table: grows it while under its cap, else merges it into
 * the level (and then lets it grow to a quarter of the level's size). */
static int flush(struct sl_keyset *ks)
{
    if (ks->tslots < ks->tcap && table_grow(ks) == 0)
        return 0;
    int rc = merge(ks);
    if (rc || ks->fixed_cap)
        return rc;
    size_t want = level_bytes(&ks->lv) / 4 / sizeof(uint64_t);
    while (ks->tcap * 2 <= want)
        ks->tcap *= 2;
    if (ks->tcap > ks->tslots) {
        /* An empty table of the new size; without memory, keep the old. */
        size_t len = table_len(ks->tcap);
        uint64_t *s = ks_alloc(ks, len * sizeof(*s), true);
        if (!s) {
            ks->tcap = ks->tslots;
            return 0;
        }
        ks_free(ks, ks->slots, table_len(ks->tslots) * sizeof(*s));
        ks->slots = s;
        ks->tshift -= log2_size(ks->tcap) - log2_size(ks->tslots);
        ks->tslots = ks->tcap;
    }
    return 0;
}

/* ---- the set ---- */

static struct sl_keyset *keyset_new(size_t cap, bool fixed)
{
    struct sl_keyset *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return NULL;
    ks->bytes = ks->peak = sizeof(*ks);
    ks->fail_after = -1;
    ks->tcap = cap;
    ks->fixed_cap = fixed;
    ks->tslots = cap < KS_TABLE_MIN ? cap : KS_TABLE_MIN;
    ks->tshift = 64 - log2_size(ks->tslots);
    ks->slots = ks_alloc(ks, table_len(ks->tslots) * sizeof(uint64_t), true);
    if (!ks->slots) {
        free(ks);
        return NULL;
    }
    sl_random_key(ks->key, ks);
    return ks;
}

/* Returns an empty set with its own random key, or NULL when out of memory.
 * The caller owns it (sl_keyset_destroy). Not thread-safe: one thread at a
 * time, or a lock around every call. */
struct sl_keyset *sl_keyset_new(void)
{
    return keyset_new(KS_TABLE_CAP, false);
}

/* As sl_keyset_new, but the table of recent keys never grows past slots
 * (rounded up to a power of two, at least 16): for tests of the merges. */
struct sl_keyset *sl_keyset_new_cap(size_t slots)
{
    if (slots < 16)
        slots = 16;
    if (slots > KS_TABLE_CAP)
        slots = KS_TABLE_CAP;
    return keyset_new((size_t)1 << log2_size(slots), true);
}

/* Frees ks; accepts NULL. */
void sl_keyset_destroy(struct sl_keyset *ks)
{
    if (!ks)
        return;
    level_free(ks, &ks->lv);
    ks_free(ks, ks->slots, table_len(ks->tslots) * sizeof(uint64_t));
    free(ks);
}

/* 1 when key was in the set; 0 when it was not (with add, it is now). Returns
 * SL_ERR_NOMEM, leaving the set as it was, when adding needs a bigger table or
 * a merge that cannot be allocated. */
int sl_keyset_test(struct sl_keyset *ks, const char *key, size_t len, bool add)
{
    uint64_t fp = sl_siphash(ks->key, len ? key : "", len);
    if (!fp)
        fp = 1;
    size_t at;
    /* Two independent reads from memory: start both. */
    __builtin_prefetch(&ks->slots[fp >> ks->tshift]);
    if (ks->lv.n)
        __builtin_prefetch(&ks->lv.samples[(fp >> ks->lv.lbits) / KS_SAMPLE]);
    if (table_find(ks, fp, &at) || level_has(&ks->lv, fp))
        return 1;
    if (!add)
        return 0;
    for (;;) {
        if ((ks->tcount + 1) * 4 <= ks->tslots * 3 && table_put(ks, fp, at))
            return 0;
        int rc = flush(ks);
        if (rc)
            return rc;
        table_find(ks, fp, &at);
    }
}

/* Number of keys in ks. */
size_t sl_keyset_count(const struct sl_keyset *ks)
{
    return ks->lv.n + ks->tcount;
}

/* Bytes ks holds from malloc (its own struct included); *peak, when peak is
 * not NULL, the most it has held since it was made. */
size_t sl_keyset_bytes(const struct sl_keyset *ks, size_t *peak)
{
    if (peak)
        *peak = ks->peak;
    return ks->bytes;
}

/* For tests: after n more of ks's allocations succeed, they fail as if
 * memory had run out; a negative n lets them all succeed again. */
void sl_keyset_fail_after(struct sl_keyset *ks, long n)
{
    ks->fail_after = n;
}
