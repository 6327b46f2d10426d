/*
 * Unit tests of the encoding decoder (decoder.c): every encoding, BOMs,
 * characters cut at every possible place, invalid input in strict and
 * lenient mode, and the encoding names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/reader.h"

struct bad {
    uint64_t off[16];
    size_t at[16];
    unsigned char byte[16];
    size_t n;
};

static void on_bad(void *ud, uint64_t offset, size_t at, unsigned char byte)
{
    struct bad *b = ud;
    if (b->n < 16) {
        b->off[b->n] = offset;
        b->at[b->n] = at;
        b->byte[b->n] = byte;
    }
    b->n++;
}

/* Decodes in[0..len) fed in pieces of step bytes (0: all at once). Returns
 * the result; *out the text (caller frees), NUL-terminated. */
static int decode(enum sl_encoding enc, const char *in, size_t len, size_t step, struct bad *bad,
                  char **out, size_t *outlen, char *err, size_t errsz)
{
    struct sl_decoder *d = sl_decoder_new(enc);
    assert_non_null(d);
    if (bad)
        sl_decoder_set_lenient(d, on_bad, bad);
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    int rc = 0;
    size_t off = 0;
    do {
        size_t k = step && len - off > step ? step : len - off;
        rc = sl_decoder_feed(d, in + off, k, off + k == len, &buf, &blen, &bcap, err, errsz);
        off += k;
    } while (!rc && off < len);
    sl_decoder_destroy(d);
    buf = realloc(buf, blen + 1);
    buf[blen] = '\0';
    *out = buf;
    if (outlen)
        *outlen = blen;
    return rc;
}

/* Every split of in gives want. */
static void expect_all_splits(enum sl_encoding enc, const char *in, size_t len, const char *want)
{
    for (size_t step = 0; step <= 9; step++) {
        char *got;
        char err[256];
        int rc = decode(enc, in, len, step, NULL, &got, NULL, err, sizeof(err));
        if (rc)
            fail_msg("step %zu: %s", step, err);
        assert_string_equal(got, want);
        free(got);
    }
}

static void test_utf8(void **state)
{
    (void)state;
    const char *s = "a\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80 plain ASCII text to take the fast "
                    "path \xc3\xbc!";
    expect_all_splits(SL_ENC_UTF8, s, strlen(s), s);
    /* the BOM is dropped, in any split */
    expect_all_splits(SL_ENC_UTF8, "\xef\xbb\xbfid", 5, "id");
    /* a BOM-like start that is not one */
    char *got;
    char err[256];
    assert_int_equal(decode(SL_ENC_UTF8, "\xef\xbb", 2, 1, NULL, &got, NULL, err, sizeof(err)),
                     SL_ERR_PARSE);
    assert_string_equal(err, "incomplete UTF-8 sequence at the end of the input (byte offset 0)");
    free(got);
    expect_all_splits(SL_ENC_LATIN1, "\xef\xbb", 2, "\xc3\xaf\xc2\xbb");
    expect_all_splits(SL_ENC_UTF8, "", 0, "");
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t off;
    } cases[] = {
        {"ab\xff", 2},     {"ab\xc0\x80", 2},       {"x\xed\xa0\x80", 1}, {"\xf4\x90\x80\x80", 0},
        {"ok\xe2\x82", 2}, {"\xef\xbb\xbf\x80", 3}, {"12\xc3(", 2},       {"\xe0\x80\x80rest", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t step = 0; step < 4; step++) {
            char *got;
            char err[256];
            const char *in = cases[i].in;
            assert_int_equal(
                decode(SL_ENC_UTF8, in, strlen(in), step, NULL, &got, NULL, err, sizeof(err)),
                SL_ERR_PARSE);
            char want[64];
            snprintf(want, sizeof(want), "byte offset %llu", (unsigned long long)cases[i].off);
            if (!strstr(err, want))
                fail_msg("case %zu: %s", i, err);
            free(got);
        }
    }
    char err[256];
    char *got;
    decode(SL_ENC_UTF8, "ok\xe2\x82", 4, 0, NULL, &got, NULL, err, sizeof(err));
    assert_string_equal(err, "incomplete UTF-8 sequence at the end of the input (byte offset 2)");
    free(got);
    decode(SL_ENC_UTF8, "ab\xff", 3, 0, NULL, &got, NULL, err, sizeof(err));
    assert_string_equal(err, "invalid UTF-8 at byte offset 2 (0xff)");
    free(got);
}

static void test_lenient(void **state)
{
    (void)state;
    /* each maximal invalid subpart becomes one U+FFFD */
    const char *in = "a\xff"
                     "b\xe2\x82"
                     "c\xed\xa0\x80"
                     "d\xf0\x9f\x98";
    for (size_t step = 0; step < 6; step++) {
        struct bad bad = {0};
        char *got;
        size_t n;
        assert_int_equal(decode(SL_ENC_UTF8, in, strlen(in), step, &bad, &got, &n, NULL, 0), 0);
        assert_string_equal(got, "a\xef\xbf\xbd"
                                 "b\xef\xbf\xbd"
                                 "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                 "d\xef\xbf\xbd");
        assert_int_equal(bad.n, 6);
        assert_int_equal(bad.off[0], 1);
        assert_int_equal(bad.byte[0], 0xff);
        assert_int_equal(bad.off[1], 3);
        assert_int_equal(bad.byte[1], 0xe2);
        assert_int_equal(bad.off[5], 10);
        assert_int_equal(bad.byte[5], 0xf0);
        /* at: where the replacement is in the output */
        if (step == 0) {
            assert_int_equal(bad.at[0], 1);
            assert_int_equal(bad.at[1], 5);
        }
        free(got);
    }
}

/* Lone UTF-16 high surrogates fed a byte at a time (a pipe delivering tiny
 * pieces): each is replaced once, exactly as when fed whole. */
static void test_lenient_utf16_bytewise(void **state)
{
    (void)state;
    static const char in[] = "\xd9\xd9\xd9\xd9\xd9\xd9\xd9\xd9\xd9\xd9\xd9\xd9\x39\x00";
    size_t n = sizeof(in) - 1;
    char *whole = NULL, *bytes = NULL, err[128] = "";
    size_t wl = 0, wc = 0, bl = 0, bc = 0;
    struct sl_decoder *d = sl_decoder_new(SL_ENC_UTF16);
    sl_decoder_set_lenient(d, NULL, NULL);
    assert_int_equal(sl_decoder_feed(d, in, n, true, &whole, &wl, &wc, err, sizeof(err)), 0);
    sl_decoder_destroy(d);
    d = sl_decoder_new(SL_ENC_UTF16);
    sl_decoder_set_lenient(d, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(
            sl_decoder_feed(d, in + i, 1, i + 1 == n, &bytes, &bl, &bc, err, sizeof(err)), 0);
    sl_decoder_destroy(d);
    assert_int_equal(bl, wl);
    assert_memory_equal(bytes, whole, wl);
    free(whole);
    free(bytes);
}

static void test_latin1_cp1252(void **state)
{
    (void)state;
    expect_all_splits(SL_ENC_LATIN1, "M\xfcnchen \xe9\xa0\xff", 11,
                      "M\xc3\xbcnchen \xc3\xa9\xc2\xa0\xc3\xbf");
    expect_all_splits(SL_ENC_WINDOWS_1252, "\x80 5 \x9f \x93q\x94 M\xfcnchen", 17,
                      "\xe2\x82\xac 5 \xc5\xb8 \xe2\x80\x9cq\xe2\x80\x9d M\xc3\xbcnchen");
    /* 0x81 has no character in windows-1252 */
    char *got;
    char err[256];
    assert_int_equal(
        decode(SL_ENC_WINDOWS_1252, "ab\x81", 3, 0, NULL, &got, NULL, err, sizeof(err)),
        SL_ERR_PARSE);
    assert_string_equal(err, "invalid windows-1252 at byte offset 2 (0x81)");
    free(got);
    struct bad bad = {0};
    assert_int_equal(decode(SL_ENC_WINDOWS_1252,
                            "a\x81"
                            "b\x8d",
                            4, 1, &bad, &got, NULL, NULL, 0),
                     0);
    assert_string_equal(got, "a\xef\xbf\xbd"
                             "b\xef\xbf\xbd");
    assert_int_equal(bad.n, 2);
    assert_int_equal(bad.off[1], 3);
    free(got);
    /* a UTF-8 BOM wins over windows-1252 */
    expect_all_splits(SL_ENC_WINDOWS_1252, "\xef\xbb\xbf\xe2\x82\xac", 6, "\xe2\x82\xac");
}

static void test_utf16(void **state)
{
    (void)state;
    /* "aö€😀" */
    const char le[] = "\xff\xfe"
                      "a\0\xf6\0\xac\x20\x3d\xd8\x00\xde";
    const char be[] = "\xfe\xff"
                      "\0a\0\xf6\x20\xac\xd8\x3d\xde\x00";
    const char *want = "a\xc3\xb6\xe2\x82\xac\xf0\x9f\x98\x80";
    expect_all_splits(SL_ENC_UTF16, le, sizeof(le) - 1, want);
    expect_all_splits(SL_ENC_UTF16, be, sizeof(be) - 1, want);
    /* the BOM decides whatever the job says */
    expect_all_splits(SL_ENC_UTF8, le, sizeof(le) - 1, want);
    expect_all_splits(SL_ENC_LATIN1, be, sizeof(be) - 1, want);
    /* no BOM: little-endian */
    expect_all_splits(SL_ENC_UTF16, le + 2, sizeof(le) - 3, want);

    struct sl_decoder *d = sl_decoder_new(SL_ENC_UTF8);
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    assert_int_equal(sl_decoder_encoding(d), SL_ENC_UTF8);
    assert_int_equal(sl_decoder_feed(d, be, 1, false, &buf, &blen, &bcap, NULL, 0), 0);
    assert_int_equal(sl_decoder_encoding(d), SL_ENC_UTF8); /* not decided yet */
    assert_int_equal(sl_decoder_feed(d, be + 1, 3, false, &buf, &blen, &bcap, NULL, 0), 0);
    assert_int_equal(sl_decoder_encoding(d), SL_ENC_UTF16);
    sl_decoder_destroy(d);
    free(buf);

    /* an unpaired surrogate and an odd byte at the end */
    char *got;
    char err[256];
    const char bad1[] = "a\0\x3d\xd8"
                        "b\0";
    assert_int_equal(decode(SL_ENC_UTF16, bad1, 6, 0, NULL, &got, NULL, err, sizeof(err)),
                     SL_ERR_PARSE);
    assert_string_equal(err, "invalid UTF-16LE at byte offset 2 (0x3d)");
    free(got);
    struct bad bad = {0};
    assert_int_equal(decode(SL_ENC_UTF16, bad1, 6, 1, &bad, &got, NULL, NULL, 0), 0);
    assert_string_equal(got, "a\xef\xbf\xbd"
                             "b");
    free(got);
    assert_int_equal(decode(SL_ENC_UTF16, "a\0b", 3, 0, NULL, &got, NULL, err, sizeof(err)),
                     SL_ERR_PARSE);
    assert_string_equal(err,
                        "incomplete UTF-16LE sequence at the end of the input (byte offset 2)");
    free(got);
}

static void test_big_input(void **state)
{
    (void)state;
    /* a long text in odd pieces, through latin1 and UTF-8 */
    size_t n = 300000;
    char *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (char)(i % 3 == 0 ? 0xe4 : 'a' + (int)(i % 26));
    char *got;
    size_t glen;
    assert_int_equal(decode(SL_ENC_LATIN1, in, n, 4097, NULL, &got, &glen, NULL, 0), 0);
    assert_int_equal(glen, n + n / 3);
    char *back;
    size_t blen;
    char err[256];
    assert_int_equal(decode(SL_ENC_UTF8, got, glen, 65537, NULL, &back, &blen, err, sizeof(err)),
                     0);
    assert_int_equal(blen, glen);
    assert_memory_equal(back, got, glen);
    free(back);
    free(got);
    free(in);
}

static void test_names(void **state)
{
    (void)state;
    enum sl_encoding e;
    assert_int_equal(sl_encoding_parse("UTF-8", &e), 0);
    assert_int_equal(e, SL_ENC_UTF8);
    assert_int_equal(sl_encoding_parse("utf8", &e), 0);
    assert_int_equal(sl_encoding_parse("Latin1", &e), 0);
    assert_int_equal(e, SL_ENC_LATIN1);
    assert_int_equal(sl_encoding_parse("iso-8859-1", &e), 0);
    assert_int_equal(e, SL_ENC_LATIN1);
    assert_int_equal(sl_encoding_parse("windows-1252", &e), 0);
    assert_int_equal(e, SL_ENC_WINDOWS_1252);
    assert_int_equal(sl_encoding_parse("cp1252", &e), 0);
    assert_int_equal(e, SL_ENC_WINDOWS_1252);
    assert_int_equal(sl_encoding_parse("utf-16", &e), 0);
    assert_int_equal(e, SL_ENC_UTF16);
    assert_int_equal(sl_encoding_parse("ebcdic", &e), -1);
    assert_int_equal(sl_encoding_parse(NULL, &e), -1);
    assert_string_equal(sl_encoding_name(SL_ENC_UTF8), "utf-8");
    assert_string_equal(sl_encoding_name(SL_ENC_LATIN1), "latin1");
    assert_string_equal(sl_encoding_name(SL_ENC_WINDOWS_1252), "windows-1252");
    assert_string_equal(sl_encoding_name(SL_ENC_UTF16), "utf-16");
    assert_null(sl_encoding_name((enum sl_encoding)99));
    assert_null(sl_decoder_new((enum sl_encoding)99));
    sl_decoder_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),          cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_lenient),       cmocka_unit_test(test_lenient_utf16_bytewise),
        cmocka_unit_test(test_latin1_cp1252), cmocka_unit_test(test_utf16),
        cmocka_unit_test(test_big_input),     cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
