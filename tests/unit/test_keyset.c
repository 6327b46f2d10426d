/*
 * Unit tests of the key set (keyset.h): SipHash-2-4 against the reference
 * implementation's vectors; the set on a million keys; merges of the table
 * of recent keys into the compressed level, forced often by a tiny table and
 * checked against an exact set; and 5 million keys within 40 MiB, printing
 * the set's bytes a key and the time a call.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/err.h"
#include "sluice/keyset.h"

/* vectors_sip64 of the reference implementation (SipHash repository,
 * vectors.h): key 00..0f, message i is the bytes 00..i-1, output as the
 * little-endian bytes of the 64-bit result. */
static const uint8_t sip64_vectors[64][8] = {
    {0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72},
    {0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74},
    {0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d},
    {0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85},
    {0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf},
    {0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18},
    {0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb},
    {0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab},
    {0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93},
    {0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e},
    {0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a},
    {0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4},
    {0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75},
    {0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14},
    {0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7},
    {0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1},
    {0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f},
    {0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69},
    {0x9c, 0xd3, 0x8d, 0x96, 0xf0, 0xb3, 0xc1, 0x4b},
    {0xbd, 0x61, 0x79, 0xa7, 0x1d, 0xc9, 0x6d, 0xbb},
    {0x98, 0xee, 0xa2, 0x1a, 0xf2, 0x5c, 0xd6, 0xbe},
    {0xc7, 0x67, 0x3b, 0x2e, 0xb0, 0xcb, 0xf2, 0xd0},
    {0x88, 0x3e, 0xa3, 0xe3, 0x95, 0x67, 0x53, 0x93},
    {0xc8, 0xce, 0x5c, 0xcd, 0x8c, 0x03, 0x0c, 0xa8},
    {0x94, 0xaf, 0x49, 0xf6, 0xc6, 0x50, 0xad, 0xb8},
    {0xea, 0xb8, 0x85, 0x8a, 0xde, 0x92, 0xe1, 0xbc},
    {0xf3, 0x15, 0xbb, 0x5b, 0xb8, 0x35, 0xd8, 0x17},
    {0xad, 0xcf, 0x6b, 0x07, 0x63, 0x61, 0x2e, 0x2f},
    {0xa5, 0xc9, 0x1d, 0xa7, 0xac, 0xaa, 0x4d, 0xde},
    {0x71, 0x65, 0x95, 0x87, 0x66, 0x50, 0xa2, 0xa6},
    {0x28, 0xef, 0x49, 0x5c, 0x53, 0xa3, 0x87, 0xad},
    {0x42, 0xc3, 0x41, 0xd8, 0xfa, 0x92, 0xd8, 0x32},
    {0xce, 0x7c, 0xf2, 0x72, 0x2f, 0x51, 0x27, 0x71},
    {0xe3, 0x78, 0x59, 0xf9, 0x46, 0x23, 0xf3, 0xa7},
    {0x38, 0x12, 0x05, 0xbb, 0x1a, 0xb0, 0xe0, 0x12},
    {0xae, 0x97, 0xa1, 0x0f, 0xd4, 0x34, 0xe0, 0x15},
    {0xb4, 0xa3, 0x15, 0x08, 0xbe, 0xff, 0x4d, 0x31},
    {0x81, 0x39, 0x62, 0x29, 0xf0, 0x90, 0x79, 0x02},
    {0x4d, 0x0c, 0xf4, 0x9e, 0xe5, 0xd4, 0xdc, 0xca},
    {0x5c, 0x73, 0x33, 0x6a, 0x76, 0xd8, 0xbf, 0x9a},
    {0xd0, 0xa7, 0x04, 0x53, 0x6b, 0xa9, 0x3e, 0x0e},
    {0x92, 0x59, 0x58, 0xfc, 0xd6, 0x42, 0x0c, 0xad},
    {0xa9, 0x15, 0xc2, 0x9b, 0xc8, 0x06, 0x73, 0x18},
    {0x95, 0x2b, 0x79, 0xf3, 0xbc, 0x0a, 0xa6, 0xd4},
    {0xf2, 0x1d, 0xf2, 0xe4, 0x1d, 0x45, 0x35, 0xf9},
    {0x87, 0x57, 0x75, 0x19, 0x04, 0x8f, 0x53, 0xa9},
    {0x10, 0xa5, 0x6c, 0xf5, 0xdf, 0xcd, 0x9a, 0xdb},
    {0xeb, 0x75, 0x09, 0x5c, 0xcd, 0x98, 0x6c, 0xd0},
    {0x51, 0xa9, 0xcb, 0x9e, 0xcb, 0xa3, 0x12, 0xe6},
    {0x96, 0xaf, 0xad, 0xfc, 0x2c, 0xe6, 0x66, 0xc7},
    {0x72, 0xfe, 0x52, 0x97, 0x5a, 0x43, 0x64, 0xee},
    {0x5a, 0x16, 0x45, 0xb2, 0x76, 0xd5, 0x92, 0xa1},
    {0xb2, 0x74, 0xcb, 0x8e, 0xbf, 0x87, 0x87, 0x0a},
    {0x6f, 0x9b, 0xb4, 0x20, 0x3d, 0xe7, 0xb3, 0x81},
    {0xea, 0xec, 0xb2, 0xa3, 0x0b, 0x22, 0xa8, 0x7f},
    {0x99, 0x24, 0xa4, 0x3c, 0xc1, 0x31, 0x57, 0x24},
    {0xbd, 0x83, 0x8d, 0x3a, 0xaf, 0xbf, 0x8d, 0xb7},
    {0x0b, 0x1a, 0x2a, 0x32, 0x65, 0xd5, 0x1a, 0xea},
    {0x13, 0x50, 0x79, 0xa3, 0x23, 0x1c, 0xe6, 0x60},
    {0x93, 0x2b, 0x28, 0x46, 0xe4, 0xd7, 0x06, 0x66},
    {0xe1, 0x91, 0x5f, 0x5c, 0xb1, 0xec, 0xa4, 0x6c},
    {0xf3, 0x25, 0x96, 0x5c, 0xa1, 0x6d, 0x62, 0x9f},
    {0x57, 0x5f, 0xf2, 0x8e, 0x60, 0x38, 0x1b, 0xe5},
    {0x72, 0x45, 0x06, 0xeb, 0x4c, 0x32, 0x8a, 0x95},
};

static void test_siphash_vectors(void **state)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t n = 0; n < 64; n++) {
        uint64_t want = 0;
        for (int b = 7; b >= 0; b--)
            want = want << 8 | sip64_vectors[n][b];
        uint64_t got = sl_siphash(key, msg, n);
        if (got != want)
            fail_msg("siphash of %zu bytes: got %016llx, want %016llx", n, (unsigned long long)got,
                     (unsigned long long)want);
    }
}

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* sl_random_key: 16 bytes, different at each of 10,000 calls, never all
 * zero. */
static void test_random_key(void **state)
{
    (void)state;
    enum { N = 10000 };
    uint8_t(*keys)[16] = calloc(N, 16);
    assert_non_null(keys);
    static const uint8_t zero[16];
    for (int i = 0; i < N; i++) {
        sl_random_key(keys[i], &keys[i]);
        assert_memory_not_equal(keys[i], zero, 16);
    }
    qsort(keys, N, 16, cmp16);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(keys[i - 1], keys[i], 16);
    free(keys);
}

/* Keys come from anywhere in a row buffer: the same bytes at any address
 * hash the same. */
static void test_siphash_unaligned(void **state)
{
    uint8_t key[16] = {1, 2, 3}, buf[80];
    _Alignas(8) uint8_t copy[64];
    for (int i = 0; i < 80; i++)
        buf[i] = (uint8_t)(i * 7);
    for (size_t off = 1; off < 8; off++) {
        for (size_t n = 0; n < 64; n++) {
            memcpy(copy, buf + off, n);
            assert_int_equal(sl_siphash(key, buf + off, n), sl_siphash(key, copy, n));
        }
    }
}

static void test_basic(void **state)
{
    struct sl_keyset *ks = sl_keyset_new();
    assert_non_null(ks);
    assert_int_equal(sl_keyset_count(ks), 0);
    assert_int_equal(sl_keyset_test(ks, "a", 1, false), 0);
    assert_int_equal(sl_keyset_count(ks), 0); /* a test without add adds nothing */
    assert_int_equal(sl_keyset_test(ks, "a", 1, true), 0);
    assert_int_equal(sl_keyset_test(ks, "a", 1, false), 1);
    assert_int_equal(sl_keyset_test(ks, "a", 1, true), 1);
    assert_int_equal(sl_keyset_count(ks), 1);
    /* The length counts, not the NUL: "a\0b" is not "a". */
    assert_int_equal(sl_keyset_test(ks, "a\0b", 3, true), 0);
    assert_int_equal(sl_keyset_test(ks, "", 0, true), 0);
    assert_int_equal(sl_keyset_test(ks, NULL, 0, false), 1);
    assert_int_equal(sl_keyset_count(ks), 3);
    sl_keyset_destroy(ks);
    sl_keyset_destroy(NULL);
}

/* Two sets draw different random keys; both still agree on membership. */
static void test_independent_sets(void **state)
{
    struct sl_keyset *a = sl_keyset_new(), *b = sl_keyset_new();
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(sl_keyset_test(a, "k", 1, true), 0);
    assert_int_equal(sl_keyset_test(b, "k", 1, false), 0);
    assert_int_equal(sl_keyset_test(b, "k", 1, true), 0);
    assert_int_equal(sl_keyset_test(a, "k", 1, false), 1);
    sl_keyset_destroy(a);
    sl_keyset_destroy(b);
}

#define MANY 1000000

static void test_million_keys(void **state)
{
    struct sl_keyset *ks = sl_keyset_new();
    char key[32];
    assert_non_null(ks);
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        int rc = sl_keyset_test(ks, key, (size_t)n, true);
        if (rc != 0)
            fail_msg("key %d: sl_keyset_test answered %d for a new key", i, rc);
    }
    assert_int_equal(sl_keyset_count(ks), MANY);
    for (int i = 0; i < MANY; i += 7) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        if (sl_keyset_test(ks, key, (size_t)n, true) != 1)
            fail_msg("key %d: a repeated key was not seen", i);
    }
    /* Keys never added are not seen (a false "seen" needs a 64-bit collision). */
    for (int i = 0; i < MANY; i += 3) {
        int n = snprintf(key, sizeof(key), "other-%d@example.com", i);
        if (sl_keyset_test(ks, key, (size_t)n, false) != 0)
            fail_msg("key other-%d: seen although never added", i);
    }
    assert_int_equal(sl_keyset_count(ks), MANY);
    sl_keyset_destroy(ks);
}

/* Keys i in [0, n) of one family, as the validator would see them. */
static int fmt_key(char *buf, size_t sz, const char *family, unsigned i)
{
    return snprintf(buf, sz, "%s-%u@example.com", family, i);
}

static int test_key(struct sl_keyset *ks, const char *family, unsigned i, bool add)
{
    char key[48];
    int n = fmt_key(key, sizeof(key), family, i);
    return sl_keyset_test(ks, key, (size_t)n, add);
}

/* A 16-slot table merges every dozen keys: keys added before and after each
 * merge stay seen, keys never added stay unseen, a test without add adds
 * nothing, and the count follows. */
static void test_merges(void **state)
{
    struct sl_keyset *ks = sl_keyset_new_cap(16);
    assert_non_null(ks);
    for (unsigned i = 0; i < 20000; i++) {
        if (test_key(ks, "k", i, false) != 0)
            fail_msg("key %u seen before it was added", i);
        if (test_key(ks, "k", i, true) != 0)
            fail_msg("key %u: new key seen", i);
        if (test_key(ks, "k", i, true) != 1)
            fail_msg("key %u: seen once, then not", i);
        /* The first key, one from a few merges ago, the one just before. */
        unsigned back[] = {0, i / 2, i > 40 ? i - 40 : 0, i ? i - 1 : 0};
        for (size_t b = 0; b < sizeof(back) / sizeof(back[0]); b++)
            if (test_key(ks, "k", back[b], false) != 1)
                fail_msg("after key %u: key %u no longer seen", i, back[b]);
        if (test_key(ks, "never", i, false) != 0)
            fail_msg("after key %u: a key never added is seen", i);
        if (sl_keyset_count(ks) != i + 1)
            fail_msg("after key %u: count %zu", i, sl_keyset_count(ks));
    }
    for (unsigned i = 0; i < 20000; i++) {
        assert_int_equal(test_key(ks, "k", i, false), 1);
        assert_int_equal(test_key(ks, "never", i, false), 0);
    }
    assert_int_equal(sl_keyset_count(ks), 20000);
    sl_keyset_destroy(ks);
}

/* Random tests and adds against an exact set (a bitmap of key numbers), with
 * tables of several sizes, so that merges meet every shape of level. */
static void test_against_exact_set(void **state)
{
    static const size_t caps[] = {16, 64, 1024, 4096};
    enum { RANGE = 200000, OPS = 600000 };
    unsigned char *have = calloc(RANGE, 1);
    assert_non_null(have);
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        struct sl_keyset *ks = sl_keyset_new_cap(caps[c]);
        size_t count = 0;
        uint64_t x = 88172645463325252u + c;
        assert_non_null(ks);
        memset(have, 0, RANGE);
        for (unsigned op = 0; op < OPS; op++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* Mostly new keys early, mostly repeats late. */
            unsigned span = 1000 + (unsigned)((uint64_t)op * (RANGE - 1000) / OPS);
            unsigned i = (unsigned)(x % span);
            bool add = (x >> 40) % 4 != 0;
            int rc = test_key(ks, "x", i, add);
            if (rc != have[i])
                fail_msg("cap %zu, op %u, key %u: answered %d, want %d", caps[c], op, i, rc,
                         have[i]);
            if (add && !have[i]) {
                have[i] = 1;
                count++;
            }
            if (sl_keyset_count(ks) != count)
                fail_msg("cap %zu, op %u: count %zu, want %zu", caps[c], op, sl_keyset_count(ks),
                         count);
        }
        for (unsigned i = 0; i < RANGE; i++)
            if (test_key(ks, "x", i, false) != have[i])
                fail_msg("cap %zu, final pass, key %u: wrong answer", caps[c], i);
        sl_keyset_destroy(ks);
    }
    free(have);
}

/* Adds keys from *i on until one is refused for lack of memory: that key is
 * not added, every key before it is still seen, none after it is. */
static void add_until_nomem(struct sl_keyset *ks, unsigned *i, unsigned limit)
{
    int rc = 0;
    size_t before = 0;
    for (; *i < limit; (*i)++) {
        before = sl_keyset_bytes(ks, NULL);
        if ((rc = test_key(ks, "k", *i, true)) != 0)
            break;
    }
    if (rc != SL_ERR_NOMEM)
        fail_msg("up to key %u: no out of memory (%d)", *i, rc);
    assert_int_equal(sl_keyset_bytes(ks, NULL), before);
    assert_int_equal(sl_keyset_count(ks), *i);
    for (unsigned j = 0; j < *i + 100; j++)
        if (test_key(ks, "k", j, false) != (j < *i))
            fail_msg("after running out of memory at key %u: key %u answered wrong", *i, j);
}

/* Out of memory in a merge (at each of its allocations in turn) or in
 * growing the table leaves the set as it was, and it goes on once memory is
 * back. */
static void test_out_of_memory(void **state)
{
    for (long fail = 0; fail < 12; fail++) {
        struct sl_keyset *ks = sl_keyset_new_cap(64);
        unsigned i = 0;
        assert_non_null(ks);
        for (; i < 1000; i++)
            assert_int_equal(test_key(ks, "k", i, true), 0);
        sl_keyset_fail_after(ks, fail);
        add_until_nomem(ks, &i, 3000);
        sl_keyset_fail_after(ks, -1);
        for (unsigned j = i; j < 5000; j++)
            assert_int_equal(test_key(ks, "k", j, true), 0);
        for (unsigned j = 0; j < 5000; j++)
            assert_int_equal(test_key(ks, "k", j, true), 1);
        assert_int_equal(sl_keyset_count(ks), 5000);
        sl_keyset_destroy(ks);
    }

    /* The table cannot grow past its first 1024 slots (3/4 full). */
    struct sl_keyset *ks = sl_keyset_new();
    unsigned i = 0;
    assert_non_null(ks);
    sl_keyset_fail_after(ks, 0);
    add_until_nomem(ks, &i, 3000);
    assert_int_equal(i, 768);
    sl_keyset_fail_after(ks, -1);
    for (; i < 3000; i++)
        assert_int_equal(test_key(ks, "k", i, true), 0);
    assert_int_equal(sl_keyset_count(ks), 3000);
    sl_keyset_destroy(ks);
}

/* A set that never leaves its first small table costs little. */
static void test_small_set_is_small(void **state)
{
    struct sl_keyset *ks = sl_keyset_new();
    size_t peak;
    assert_non_null(ks);
    for (unsigned i = 0; i < 5000; i++)
        assert_int_equal(test_key(ks, "s", i, true), 0);
    size_t now = sl_keyset_bytes(ks, &peak);
    print_message("keyset: 5000 keys hold %zu bytes (peak %zu)\n", now, peak);
    assert_true(peak < 256 * 1024);
    sl_keyset_destroy(ks);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define FIVE_MILLION 5000000u
#define SET_LIMIT    (40u << 20)

/* 5 million distinct keys, as an embedded run of 5 million rows: the set's
 * own memory (all it mallocs) stays under 40 MiB at its peak. Prints bytes a
 * key and time a call at 1 and 5 million keys; the time is not asserted (it
 * depends on the build and the machine; a Release build is the one to read). */
static void add_range(struct sl_keyset *ks, unsigned from, unsigned to)
{
    char key[48];
    for (unsigned i = from; i < to; i++) {
        int n = fmt_key(key, sizeof(key), "customer", i);
        int rc = sl_keyset_test(ks, key, (size_t)n, true);
        if (rc != 0)
            fail_msg("key %u: sl_keyset_test answered %d for a new key", i, rc);
    }
}

static void report(const struct sl_keyset *ks, unsigned n, double ns)
{
    size_t peak, now = sl_keyset_bytes(ks, &peak);
    print_message("keyset: %u keys: %zu bytes (%.2f a key), peak %zu (%.2f a key, %.1f MiB); "
                  "%.0f ns a new key on average\n",
                  n, now, (double)now / n, peak, (double)peak / n, (double)peak / (1 << 20), ns);
}

/* 5 million distinct keys, as an embedded run of 5 million rows: the set's
 * own memory (all it mallocs) stays under 40 MiB at its peak. Prints bytes a
 * key and time a call at 1 and 5 million keys, key formatting left out; the
 * time is not asserted (a Release build on a quiet machine is the one to
 * read). */
static void test_five_million(void **state)
{
    struct sl_keyset *ks = sl_keyset_new();
    char key[48];
    unsigned sum = 0;
    assert_non_null(ks);

    double t0 = now_ns();
    for (unsigned i = 0; i < 1000000; i++)
        sum += (unsigned)fmt_key(key, sizeof(key), "customer", i) + (unsigned char)key[12];
    double fmt = (now_ns() - t0) / 1e6;
    print_message("keyset: formatting a key takes %.0f ns\n", fmt);

    t0 = now_ns();
    add_range(ks, 0, 1000000);
    double t1 = now_ns();
    report(ks, 1000000, (t1 - t0) / 1e6 - fmt);
    add_range(ks, 1000000, FIVE_MILLION);
    double t2 = now_ns();
    report(ks, FIVE_MILLION, (t2 - t0) / FIVE_MILLION - fmt);
    print_message("keyset: %.0f ns a new key from 1 to 5 million\n",
                  (t2 - t1) / (FIVE_MILLION - 1000000) - fmt);
    assert_int_equal(sl_keyset_count(ks), FIVE_MILLION);
    size_t peak;
    sl_keyset_bytes(ks, &peak);
    if (peak >= SET_LIMIT)
        fail_msg("5 million keys took %zu bytes at the peak, over 40 MiB", peak);

    /* Repeats (found in the level or the table) and keys never added. */
    t0 = now_ns();
    for (unsigned i = 0; i < FIVE_MILLION; i += 5)
        if (test_key(ks, "customer", i, true) != 1)
            fail_msg("key %u: a repeated key was not seen", i);
    print_message("keyset: %.0f ns a repeated key\n", (now_ns() - t0) / (FIVE_MILLION / 5) - fmt);
    t0 = now_ns();
    for (unsigned i = 0; i < FIVE_MILLION; i += 5)
        if (test_key(ks, "other", i, false) != 0)
            fail_msg("key other-%u: seen although never added", i);
    print_message("keyset: %.0f ns an absent key\n", (now_ns() - t0) / (FIVE_MILLION / 5) - fmt);
    assert_int_equal(sl_keyset_count(ks), FIVE_MILLION);
    assert_true(sum > 0);
    sl_keyset_destroy(ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_siphash_vectors),  cmocka_unit_test(test_siphash_unaligned),
        cmocka_unit_test(test_random_key),       cmocka_unit_test(test_basic),
        cmocka_unit_test(test_independent_sets), cmocka_unit_test(test_million_keys),
        cmocka_unit_test(test_merges),           cmocka_unit_test(test_against_exact_set),
        cmocka_unit_test(test_out_of_memory),    cmocka_unit_test(test_small_set_is_small),
        cmocka_unit_test(test_five_million),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
