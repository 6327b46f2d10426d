/*
 * The hand-written Record / Rejection codec of common/src/codec.c against its
 * protobuf-c reference (codec_reference.h): the same bytes for many varied
 * records and rejections, the same decoded fields, and the same answer
 * (accepted with the same content, or refused with the same message) for
 * truncated, corrupt and hand-made inputs: unknown fields of every wire type,
 * groups, wrong wire types, repeated scalars, any field order, odd varints,
 * NUL bytes and bad UTF-8 in every string.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/codec.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/msg.h"

#include "codec_reference.h"

/* ---- deterministic random records ---- */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint32_t rndn(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

static const char *const samples[] = {
    "",
    "a",
    "Filiale",
    "Stra\xc3\x9f"
    "e",
    "\xe5\x90\x8d\xe5\x89\x8d",
    "\xf0\x9f\x98\x80 emoji",
    "0042\x1f"
    "DE",
    "x y z",
    "_row",
    "tab\there",
    "new\nline",
    "quote\"'",
    "required",
    "a value is required",
    "M\xc3\xbcller",
    "\x7f\x01\x02",
};

/* A random valid UTF-8 string of about n bytes (ASCII and 2, 3 and 4 byte
 * characters) in m's arena. */
static char *rnd_utf8(struct sl_msg *m, size_t n)
{
    char *s = sl_arena_alloc(&m->arena, n + 4);
    assert_non_null(s);
    size_t i = 0;
    while (i < n) {
        uint32_t kind = rndn(10);
        uint32_t cp;
        if (kind < 6)
            cp = 1 + rndn(0x7f);
        else if (kind < 8)
            cp = 0x80 + rndn(0x800 - 0x80);
        else if (kind < 9) {
            cp = 0x800 + rndn(0x10000 - 0x800);
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 0xe000;
        } else
            cp = 0x10000 + rndn(0x110000 - 0x10000);
        if (cp < 0x80) {
            s[i++] = (char)cp;
        } else if (cp < 0x800) {
            s[i++] = (char)(0xc0 | cp >> 6);
            s[i++] = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            s[i++] = (char)(0xe0 | cp >> 12);
            s[i++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            s[i++] = (char)(0x80 | (cp & 0x3f));
        } else {
            s[i++] = (char)(0xf0 | cp >> 18);
            s[i++] = (char)(0x80 | ((cp >> 12) & 0x3f));
            s[i++] = (char)(0x80 | ((cp >> 6) & 0x3f));
            s[i++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    s[i] = '\0';
    return s;
}

/* NULL (when null_pct allows), a sample, or random text of 0 to 300 bytes,
 * now and then 130 or 20000 (two and three byte lengths). */
static const char *rnd_str(struct sl_msg *m, uint32_t null_pct)
{
    uint32_t r = rndn(100);
    if (r < null_pct)
        return NULL;
    r = rndn(100);
    if (r < 45)
        return samples[rndn(sizeof(samples) / sizeof(samples[0]))];
    if (r < 97)
        return rnd_utf8(m, rndn(300));
    return rnd_utf8(m, r < 99 ? 130 : 20000);
}

static const uint64_t varint_edges[] = {
    0, 1, 127, 128, 16383, 16384, UINT32_MAX, 1ull << 32, 1ull << 63, UINT64_MAX, 2097151, 2097152};

static struct sl_field *rnd_fields(struct sl_msg *m, uint32_t n)
{
    struct sl_field *f = sl_arena_alloc(&m->arena, (n ? n : 1) * sizeof(*f));
    assert_non_null(f);
    for (uint32_t i = 0; i < n; i++) {
        f[i].name = rndn(20) ? rnd_str(m, 0) : NULL;
        f[i].value = rnd_str(m, 15);
    }
    return f;
}

/* A random record or rejection; every field of struct sl_record is set, also
 * those a rejection does not carry (they must be ignored). */
static struct sl_msg *rnd_record(enum sl_msg_kind kind)
{
    struct sl_msg *m = sl_msg_new(kind, NULL, NULL, 0);
    assert_non_null(m);
    struct sl_record *r = &m->u.rec;
    m->run_id = rndn(10) ? rnd_str(m, 5) : "3f2b8e1c-0d4a-4c1e-9b7a-2f6d5e4c3b2a";
    m->job_id = rndn(10) ? rnd_str(m, 5) : "store-locations";
    m->job_version = rndn(2) ? (uint32_t)varint_edges[rndn(7)] : (uint32_t)rnd();
    m->key = rndn(4) ? NULL : "bus-key"; /* not encoded */
    r->row = rndn(2) ? varint_edges[rndn(12)] : rnd() >> rndn(64);
    r->nsrc = rndn(8) ? rndn(20) : 0;
    r->src = rnd_fields(m, r->nsrc);
    r->nattr = rndn(3) ? rndn(16) : 0;
    r->attr = rnd_fields(m, r->nattr);
    r->nprob = rndn(2) ? rndn(5) : 0;
    r->prob = sl_arena_alloc(&m->arena, (r->nprob ? r->nprob : 1) * sizeof(*r->prob));
    assert_non_null(r->prob);
    for (uint32_t i = 0; i < r->nprob; i++) {
        struct sl_problem *p = &r->prob[i];
        p->attribute = rndn(4) ? rnd_str(m, 10) : (rndn(2) ? "_row" : "");
        p->code = rnd_str(m, 10);
        p->message = rnd_str(m, 10);
        p->value = rnd_str(m, 40);
    }
    r->key = rnd_str(m, 30);
    r->duplicate = rndn(2);
    return m;
}

/* ---- both ways ---- */

/* Decodes data both ways: the same answer, content and message. Returns
 * whether it was accepted. */
static bool same_decode(enum sl_msg_kind kind, const void *data, size_t len)
{
    char e1[512] = "", e2[512] = "", why[128];
    struct sl_msg *a = sl_codec_decode(kind, data, len, e1, sizeof(e1));
    struct sl_msg *b = sl_codec_decode_reference(kind, data, len, e2, sizeof(e2));
    if (!a != !b)
        fail_msg("%zu bytes as %s: hand-written %s, protobuf-c %s (%s%s)", len,
                 sl_msg_kind_str(kind), a ? "accepts" : "refuses", b ? "accepts" : "refuses", e1,
                 e2);
    if (!a) {
        if (strcmp(e1, e2))
            fail_msg("%zu bytes as %s: messages differ:\n  hand-written: %s\n  protobuf-c:   %s",
                     len, sl_msg_kind_str(kind), e1, e2);
        assert_true(strncmp(e1, "cannot decode ", 14) == 0);
        return false;
    }
    const char *d = codec_ref_diff(a, b, why, sizeof(why));
    if (d)
        fail_msg("%zu bytes as %s: decoded records differ: %s", len, sl_msg_kind_str(kind), d);
    assert_int_equal(atomic_load(&a->refs), 1);
    sl_msg_unref(a);
    sl_msg_unref(b);
    return true;
}

/* Encodes m both ways, alone and as a batch entry after some bytes already
 * in the buffer: the same result and bytes. Leaves the encoding in *out. */
static int same_encode(const struct sl_msg *m, struct sl_buf *out)
{
    struct sl_buf a = SL_BUF_INIT, b = SL_BUF_INIT;
    sl_log_last_clear();
    int ra = sl_codec_encode(m, &a);
    char la[512];
    snprintf(la, sizeof(la), "%s", sl_log_last());
    sl_log_last_clear();
    int rb = sl_codec_encode_reference(m, &b, 0);
    assert_int_equal(ra, rb);
    assert_string_equal(la, sl_log_last());
    assert_int_equal(a.len, b.len);
    if (a.len)
        assert_memory_equal(a.data, b.data, a.len);

    /* as the second entry of a batch */
    struct sl_buf ba = SL_BUF_INIT, bb = SL_BUF_INIT;
    assert_int_equal(sl_buf_append(&ba, "\x0a\x00", 2), 0);
    assert_int_equal(sl_buf_append(&bb, "\x0a\x00", 2), 0);
    assert_int_equal(sl_codec_batch_add(NULL, m, &ba), ra);
    assert_int_equal(sl_codec_encode_reference(m, &bb, 1), ra);
    assert_int_equal(ba.len, bb.len);
    assert_memory_equal(ba.data, bb.data, ba.len);
    assert_int_equal(ba.data[ba.len], '\0');
    if (ra == 0) {
        size_t pos = 2;
        const void *entry;
        size_t elen;
        char err[256];
        assert_int_equal(
            sl_codec_batch_next(ba.data, ba.len, &pos, &entry, &elen, err, sizeof(err)), 1);
        assert_int_equal(elen, a.len);
        assert_memory_equal(entry, a.data, a.len);
        assert_int_equal(pos, ba.len);
    } else {
        assert_int_equal(ba.len, 2);
    }
    sl_buf_cleanup(&ba);
    sl_buf_cleanup(&bb);
    sl_buf_cleanup(&b);
    sl_buf_reset(out);
    if (a.len)
        assert_int_equal(sl_buf_append(out, a.data, a.len), 0);
    sl_buf_cleanup(&a);
    return ra;
}

/* Cuts and corruptions of a valid encoding: both ways agree on each. */
static void same_on_damage(enum sl_msg_kind kind, const uint8_t *data, size_t len)
{
    static const uint8_t specials[] = {0x00, 0x01, 0x02, 0x07, 0x08, 0x0b, 0x0c, 0x0f,
                                       0x10, 0x7f, 0x80, 0xc3, 0xed, 0xf4, 0xf8, 0xff};
    size_t cuts = len < 400 ? len : 150;
    for (size_t i = 0; i < cuts; i++)
        same_decode(kind, data, len < 400 ? i : rndn((uint32_t)len));
    if (!len)
        return;
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    size_t n = len < 100 ? 4 * len : 300;
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, data, len);
        size_t at = rndn((uint32_t)len);
        switch (rndn(3)) {
        case 0:
            copy[at] = specials[rndn(sizeof(specials))];
            break;
        case 1:
            copy[at] ^= (uint8_t)(1u << rndn(8));
            break;
        default:
            copy[at] = (uint8_t)rnd();
            if (at + 1 < len)
                copy[at + 1] = (uint8_t)rnd();
            break;
        }
        same_decode(kind, copy, len);
    }
    free(copy);
}

static void test_random_records(void **state)
{
    struct sl_buf enc = SL_BUF_INIT;
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    int encoded = 0, decoded = 0;
    for (int round = 0; round < 1500; round++) {
        enum sl_msg_kind kind = round % 3 ? SL_MSG_RECORD : SL_MSG_REJECTION;
        struct sl_msg *m = rnd_record(kind);
        if (same_encode(m, &enc) == 0) {
            encoded++;
            decoded += same_decode(kind, enc.data, enc.len);
            /* the other kind reads the same bytes too (fields 6 to 9 differ) */
            same_decode(kind == SL_MSG_RECORD ? SL_MSG_REJECTION : SL_MSG_RECORD, enc.data,
                        enc.len);
            if (round % 4 == 0)
                same_on_damage(kind, (const uint8_t *)enc.data, enc.len);
        }
        sl_msg_unref(m);
    }
    sl_log_set_level(lvl);
    /* most have a run and a job, so most decode */
    assert_true(encoded == 1500);
    assert_true(decoded > 900);
    sl_buf_cleanup(&enc);
}

/* A record of every kind of content the encoder maps, checked field by field
 * after the round trip, not only against the reference. */
static void test_round_trip_content(void **state)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "r\xc3\xa9", "j", 128);
    struct sl_record *r = &m->u.rec;
    assert_int_equal(sl_msg_add_src(m, "", "", 0), 0);
    assert_int_equal(sl_msg_add_src(m,
                                    "Stra\xc3\x9f"
                                    "e",
                                    NULL, 0),
                     0);
    assert_int_equal(sl_msg_add_src(m, "n", "\xf0\x9f\x98\x80", 4), 0);
    assert_int_equal(sl_msg_add_attr(m, "a", NULL), 0);
    assert_int_equal(sl_msg_add_problem(m, NULL, "required", NULL, NULL), 0);
    assert_int_equal(sl_msg_add_problem(m, "x", "type", "not a number", ""), 0);
    r->row = UINT64_MAX;
    r->key = "k\x1fk";
    r->duplicate = true;
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(same_encode(m, &b), 0);
    assert_true(same_decode(SL_MSG_RECORD, b.data, b.len));
    char err[256];
    struct sl_msg *d = sl_codec_decode(SL_MSG_RECORD, b.data, b.len, err, sizeof(err));
    assert_non_null(d);
    const struct sl_record *dr = &d->u.rec;
    assert_string_equal(d->run_id, "r\xc3\xa9");
    assert_string_equal(d->job_id, "j");
    assert_int_equal(d->job_version, 128);
    assert_true(dr->row == UINT64_MAX);
    assert_int_equal(dr->nsrc, 3);
    assert_string_equal(dr->src[0].name, "");
    assert_string_equal(dr->src[0].value, "");
    assert_null(dr->src[1].value);
    assert_string_equal(dr->src[2].value, "\xf0\x9f\x98\x80");
    assert_int_equal(dr->nattr, 1);
    assert_null(dr->attr[0].value);
    assert_int_equal(dr->nprob, 2);
    assert_string_equal(dr->prob[0].attribute, "_row");
    assert_string_equal(dr->prob[0].message, "");
    assert_null(dr->prob[0].value);
    assert_string_equal(dr->prob[1].value, "");
    assert_string_equal(dr->key, "k\x1fk");
    assert_true(dr->duplicate);
    sl_msg_unref(d);
    sl_buf_cleanup(&b);
    sl_msg_unref(m);
}

/* Rows far beyond the usual: 20,000 fields (string lengths on the heap) and a
 * value of 2.2 MB (a four byte length). */
static void test_big_rows(void **state)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run", "job", 3);
    assert_int_equal(sl_msg_reserve_src(m, 20000), 0);
    char name[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof(name), "col%d", i);
        assert_int_equal(sl_msg_add_src(m, name, i % 7 ? name : NULL, strlen(name)), 0);
    }
    size_t big = 2200000;
    char *v = malloc(big + 1);
    assert_non_null(v);
    for (size_t i = 0; i < big; i++)
        v[i] = (char)('a' + i % 26);
    v[big] = '\0';
    assert_int_equal(sl_msg_add_attr(m, "big", v), 0);
    assert_int_equal(sl_msg_add_problem(m, "big", "too_long", "too long", v), 0);
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(same_encode(m, &b), 0);
    assert_true(b.len > 2 * big);
    assert_true(same_decode(SL_MSG_RECORD, b.data, b.len));
    same_decode(SL_MSG_REJECTION, b.data, b.len); /* a Problem's bytes as the key */
    for (size_t cut = 1; cut < 20; cut++)
        same_decode(SL_MSG_RECORD, b.data, b.len - cut * 99991);
    sl_buf_cleanup(&b);
    free(v);
    sl_msg_unref(m);
}

/* Strings that are not UTF-8 in every place: both refuse, with the same
 * warning, and leave the buffer as it was. */
static void test_encode_bad_utf8(void **state)
{
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    struct sl_buf b = SL_BUF_INIT;
    for (int kind = SL_MSG_RECORD; kind <= SL_MSG_REJECTION; kind++) {
        for (int place = 0; place < 11; place++) {
            for (int second = -1; second < 11; second += 3) {
                struct sl_msg *m = sl_msg_new((enum sl_msg_kind)kind, "r", "j", 1);
                struct sl_record *r = &m->u.rec;
                assert_int_equal(sl_msg_add_src(m, "n", "v", 1), 0);
                assert_int_equal(sl_msg_add_attr(m, "a", "v"), 0);
                assert_int_equal(sl_msg_add_problem(m, "p", "c", "m", "v"), 0);
                r->key = "k";
                const char **places[11] = {&m->run_id,
                                           &m->job_id,
                                           &r->src[0].name,
                                           &r->src[0].value,
                                           &r->attr[0].name,
                                           &r->attr[0].value,
                                           &r->prob[0].attribute,
                                           &r->prob[0].code,
                                           &r->prob[0].message,
                                           &r->prob[0].value,
                                           &r->key};
                *places[place] = "bad \xc3\x28";
                if (second >= 0)
                    *places[second] = "also \xff";
                assert_int_equal(same_encode(m, &b),
                                 kind == SL_MSG_REJECTION && (place == 4 || place == 5) &&
                                         (second < 0 || second == 4 || second == 5)
                                     ? 0
                                     : SL_ERR_INVALID);
                sl_msg_unref(m);
            }
        }
    }
    sl_buf_cleanup(&b);
    sl_log_set_level(lvl);
}

/* ---- hand-made wire bytes ---- */

static void w_varint(struct sl_buf *b, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        assert_int_equal(sl_buf_putc(b, (char)(v | 0x80)), 0);
    assert_int_equal(sl_buf_putc(b, (char)v), 0);
}

static void w_tag(struct sl_buf *b, uint64_t field, unsigned wt)
{
    w_varint(b, field << 3 | wt);
}

static void w_bytes(struct sl_buf *b, uint64_t field, const void *p, size_t n)
{
    w_tag(b, field, 2);
    w_varint(b, n);
    assert_int_equal(sl_buf_append(b, p, n), 0);
}

static void w_str(struct sl_buf *b, uint64_t field, const char *s)
{
    w_bytes(b, field, s, strlen(s));
}

static void w_raw(struct sl_buf *b, const void *p, size_t n)
{
    assert_int_equal(sl_buf_append(b, p, n), 0);
}

/* The ids every accepted record needs. */
static void w_ids(struct sl_buf *b)
{
    w_str(b, 1, "run");
    w_str(b, 2, "job");
}

/* A Field message as field `field` of b. */
static void w_field(struct sl_buf *b, uint64_t field, const char *name, const char *value)
{
    struct sl_buf f = SL_BUF_INIT;
    sl_buf_puts(&f, "");
    if (name)
        w_str(&f, 1, name);
    if (value)
        w_str(&f, 2, value);
    else
        w_raw(&f, "\x18\x01", 2);
    w_bytes(b, field, f.data, f.len);
    sl_buf_cleanup(&f);
}

#define ACCEPT 1
#define REFUSE 0
#define EITHER 2

/* Both ways agree on b as each kind; want: what the record decoder says. */
static void expect(struct sl_buf *b, int want, const char *what)
{
    const char *data = b->data ? b->data : "";
    bool rec = same_decode(SL_MSG_RECORD, data, b->len);
    same_decode(SL_MSG_REJECTION, data, b->len);
    if (want != EITHER && rec != (want == ACCEPT))
        fail_msg("%s: the record was %s", what, rec ? "accepted" : "refused");
    sl_buf_reset(b);
}

/* The message of the hand-written decoder for b as a record. */
static void expect_msg(struct sl_buf *b, const char *want)
{
    char err[512] = "";
    assert_false(same_decode(SL_MSG_RECORD, b->data, b->len));
    assert_null(sl_codec_decode(SL_MSG_RECORD, b->data, b->len, err, sizeof(err)));
    if (!strstr(err, want))
        fail_msg("\"%s\" does not say \"%s\"", err, want);
    sl_buf_reset(b);
}

static void test_unknown_fields(void **state)
{
    struct sl_buf b = SL_BUF_INIT;
    static const uint64_t fields[] = {14, 15, 16, 100, 2047, 2048, 1u << 20, (1u << 29) - 1};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        /* every wire type but groups, before, between and after */
        w_tag(&b, fields[i], 0);
        w_varint(&b, UINT64_MAX);
        w_ids(&b);
        w_tag(&b, fields[i], 1);
        w_raw(&b, "12345678", 8);
        w_field(&b, 5, "n", "v");
        w_str(&b, fields[i], "unknown bytes");
        w_tag(&b, fields[i], 5);
        w_raw(&b, "1234", 4);
        w_bytes(&b, fields[i], "", 0);
        expect(&b, ACCEPT, "unknown fields");
        /* a group is refused, known number or not */
        w_ids(&b);
        w_tag(&b, fields[i], 3);
        w_tag(&b, fields[i], 4);
        expect(&b, REFUSE, "group");
        w_ids(&b);
        w_tag(&b, fields[i], 4);
        expect(&b, REFUSE, "end group");
        w_ids(&b);
        w_tag(&b, fields[i], 6);
        w_raw(&b, "\x00", 1);
        expect(&b, REFUSE, "wire type 6");
        w_ids(&b);
        w_tag(&b, fields[i], 7);
        expect(&b, REFUSE, "wire type 7");
    }
    /* unknown fields inside Field and Problem */
    struct sl_buf f = SL_BUF_INIT;
    for (unsigned wt = 0; wt < 8; wt++) {
        sl_buf_reset(&f);
        w_str(&f, 1, "name");
        if (wt == 2) {
            w_str(&f, 12, "x");
        } else {
            w_tag(&f, 12, wt);
            if (wt == 0)
                w_varint(&f, 300);
            else if (wt == 1)
                w_raw(&f, "abcdefgh", 8);
            else if (wt == 5)
                w_raw(&f, "abcd", 4);
        }
        w_str(&f, 2, "value");
        w_ids(&b);
        w_bytes(&b, 5, f.data, f.len);
        w_bytes(&b, 6, f.data, f.len);
        expect(&b, wt == 0 || wt == 1 || wt == 2 || wt == 5 ? ACCEPT : REFUSE, "in a field");
        sl_buf_reset(&f);
        w_str(&f, 1, "attr");
        w_str(&f, 2, "code");
        w_tag(&f, 6, wt);
        if (wt == 0)
            w_varint(&f, 1);
        else if (wt == 1)
            w_raw(&f, "abcdefgh", 8);
        else if (wt == 2)
            w_varint(&f, 0);
        else if (wt == 5)
            w_raw(&f, "abcd", 4);
        w_str(&f, 4, "value");
        w_raw(&f, "\x28\x01", 2);
        w_ids(&b);
        w_bytes(&b, 7, f.data, f.len);
        w_bytes(&b, 6, f.data, f.len); /* a Problem in a rejection, a Field in a record */
        expect(&b, EITHER, "in a problem");
    }
    sl_buf_cleanup(&f);
    /* tags: number 0 in one byte is refused; in more bytes it is an unknown
     * field to protobuf-c; tags of 2 to 5 bytes, not 6 */
    w_ids(&b);
    w_raw(&b, "\x00\x00", 2);
    expect(&b, REFUSE, "tag 0");
    w_ids(&b);
    w_raw(&b, "\x80\x00\x05", 3);
    expect(&b, ACCEPT, "tag 0 in two bytes");
    w_ids(&b);
    w_raw(&b, "\x8a\x80\x80\x80\x00\x01x", 7); /* field 1 in five bytes */
    expect(&b, ACCEPT, "tag of five bytes");
    w_ids(&b);
    w_raw(&b, "\x8a\x80\x80\x80\x80\x00\x01x", 8);
    expect(&b, REFUSE, "tag of six bytes");
    w_ids(&b);
    w_raw(&b, "\x8a\x80\x80\x80\x7f\x00", 6);
    expect(&b, ACCEPT, "tag beyond field numbers");
    w_ids(&b);
    w_raw(&b, "\x8a\x80", 2);
    expect(&b, REFUSE, "cut tag");
    sl_buf_cleanup(&b);
}

static void test_wire_types_and_varints(void **state)
{
    struct sl_buf b = SL_BUF_INIT;
    /* a known field of the wrong wire type */
    w_ids(&b);
    w_raw(&b, "\x08\x01", 2);
    expect(&b, REFUSE, "run_id as varint");
    w_ids(&b);
    w_raw(&b, "\x1a\x01\x01", 3);
    expect(&b, REFUSE, "job_version as bytes");
    w_ids(&b);
    w_raw(&b, "\x21\x01\x02\x03\x04\x05\x06\x07\x08", 9);
    expect(&b, REFUSE, "row as fixed64");
    w_ids(&b);
    w_raw(&b, "\x28\x01", 2);
    expect(&b, REFUSE, "source as varint");
    w_ids(&b);
    w_raw(&b, "\x45\x01\x02\x03\x04", 5);
    expect(&b, REFUSE, "record key as fixed32");
    w_ids(&b);
    w_raw(&b, "\x2a\x02\x08\x01", 4);
    expect(&b, REFUSE, "field name as varint");
    w_ids(&b);
    w_raw(&b, "\x3a\x02\x20\x01", 4);
    expect(&b, REFUSE, "problem value as varint");
    /* bools of any wire type: protobuf-c reads them all */
    static const char *const bools[] = {
        "\x48\x00",
        "\x48\x80\x00",
        "\x48\x80\x01",
        "\x49\x00\x00\x00\x00\x00\x00\x00\x00",
        "\x49\x00\x00\x00\x00\x00\x00\x00\x80",
        "\x49\x00\x00\x00\x00\x00\x00\x01\x00",
        "\x4a\x00",
        "\x4a\x01\x00",
        "\x4a\x01\x80",
        "\x4d\x00\x00\x00\x00",
        "\x4d\x00\x00\x00\x02",
    };
    static const size_t bool_len[] = {2, 3, 3, 9, 9, 9, 2, 3, 3, 5, 5};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        w_ids(&b);
        w_raw(&b, bools[i], bool_len[i]); /* duplicate (field 9) */
        expect(&b, ACCEPT, "duplicate");
        uint8_t f[16] = {0x0a, 0x01, 'n'};
        memcpy(f + 3, bools[i], bool_len[i]);
        f[3] = (uint8_t)(3 << 3 | (f[3] & 7)); /* missing */
        w_ids(&b);
        w_bytes(&b, 5, f, 3 + bool_len[i]);
        f[3] = (uint8_t)(5 << 3 | (f[3] & 7)); /* has_value */
        w_bytes(&b, 7, f, 3 + bool_len[i]);
        expect(&b, ACCEPT, "missing, has_value");
    }
    /* varints: up to 10 bytes, bits past 64 dropped; 11 refused */
    w_ids(&b);
    w_raw(&b, "\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11);
    w_raw(&b, "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11);
    expect(&b, ACCEPT, "10-byte varints");
    w_ids(&b);
    w_raw(&b, "\x18\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
    expect(&b, ACCEPT, "zero in 10 bytes");
    w_ids(&b);
    w_raw(&b, "\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12);
    expect(&b, REFUSE, "11-byte varint");
    w_ids(&b);
    w_raw(&b, "\x20\xff", 2);
    expect(&b, REFUSE, "cut varint");
    /* lengths: up to 5 bytes, within the message */
    w_ids(&b);
    w_raw(&b, "\x42\x81\x80\x80\x80\x00k", 7);
    expect(&b, ACCEPT, "key length in 5 bytes");
    w_ids(&b);
    w_raw(&b, "\x42\x81\x80\x80\x80\x80\x00k", 8);
    expect(&b, REFUSE, "key length in 6 bytes");
    w_ids(&b);
    w_raw(&b, "\x42\x81\x80\x80\x80\x10k", 7);
    expect(&b, REFUSE, "length with bits past 32");
    w_ids(&b);
    w_raw(&b, "\x42\xff\xff\xff\xff\x0fk", 7);
    expect(&b, REFUSE, "length past INT_MAX");
    w_ids(&b);
    w_raw(&b, "\x42\x05k", 3);
    expect(&b, REFUSE, "length past the end");
    w_ids(&b);
    w_raw(&b, "\x2a\x05\x0a\x07name", 8);
    expect(&b, REFUSE, "length past the end of the field");
    w_ids(&b);
    w_raw(&b, "\x49\x01\x02", 3);
    expect(&b, REFUSE, "fixed64 cut");
    w_ids(&b);
    w_raw(&b, "\x4d\x01\x02", 3);
    expect(&b, REFUSE, "fixed32 cut");
    sl_buf_cleanup(&b);
}

static void test_order_and_repeats(void **state)
{
    struct sl_buf b = SL_BUF_INIT;
    /* every field backwards, lists interleaved */
    w_raw(&b, "\x48\x01", 2);
    w_str(&b, 8, "key");
    w_field(&b, 6, "a2", "v");
    w_field(&b, 5, "s1", NULL);
    w_bytes(&b, 7,
            "\x12\x04"
            "code",
            6);
    w_field(&b, 6, "a1", "");
    w_field(&b, 5, "s2", "x");
    w_raw(&b, "\x20\x07\x18\x02", 4);
    w_ids(&b);
    expect(&b, ACCEPT, "backwards");
    /* the last of a repeated scalar wins, in records and in their fields */
    w_str(&b, 1, "\xff");
    w_str(&b, 2, "");
    w_raw(&b, "\x18\x05\x18\x06\x20\x01\x20\x00\x48\x01\x48\x00", 12);
    w_str(&b, 8, "\xff");
    w_ids(&b);
    w_str(&b, 8, "k");
    w_bytes(&b, 5, "\x0a\x01\xff\x0a\x01n\x12\x01\xff\x12\x01v\x18\x01\x18\x00", 16);
    w_bytes(&b, 7, "\x0a\x01\xff\x0a\x00\x28\x01\x28\x00\x22\x01v", 12);
    expect(&b, ACCEPT, "last wins");
    /* an empty field message */
    w_ids(&b);
    w_bytes(&b, 5, "", 0);
    w_bytes(&b, 7, "", 0);
    expect(&b, ACCEPT, "empty entries");
    sl_buf_cleanup(&b);
}

static void test_strings(void **state)
{
    struct sl_buf b = SL_BUF_INIT;
    /* NUL bytes: the strings end there, as protobuf-c's C strings do */
    w_bytes(&b, 1, "r\0\xff", 3);
    w_bytes(&b, 2, "j\0", 2);
    w_bytes(&b, 8, "\0k", 2);
    w_bytes(&b, 5, "\x0a\x02\0n\x12\x03v\0\xff", 9);
    w_bytes(&b, 7, "\x0a\x02\0a\x12\x01\0\x22\x02\0\xff\x28\x01", 13);
    expect(&b, ACCEPT, "NUL bytes");
    w_bytes(&b, 1, "r", 1);
    w_bytes(&b, 2, "\0j", 2);
    expect_msg(&b, "it has no job_id");
    w_bytes(&b, 1, "\0r", 2);
    w_bytes(&b, 2, "j", 1);
    expect_msg(&b, "it has no run_id");
    w_str(&b, 2, "j");
    expect_msg(&b, "it has no run_id");
    expect_msg(&b, "it has no job_id");

    /* bad UTF-8 in each string, alone and with a second one: the message
     * names the one decode_record checks first */
    static const char *const what[] = {
        "run_id",
        "job_id",
        "key",
        "a field name",
        "a field value",
        "a field name",
        "a field value",
        "a problem attribute",
        "a problem code",
        "a problem message",
        "a problem value",
    };
    for (int place = 0; place < 11; place++) {
        for (int second = -1; second < 11; second++) {
            const char *s[11] = {"r", "j", "k", "n", "v", "an", "av", "pa", "pc", "pm", "pv"};
            s[place] = "\xe2\x82";
            if (second >= 0)
                s[second] = "ok \xc0\xaf";
            /* lists first, in reverse order, then the record's own fields */
            struct sl_buf p = SL_BUF_INIT;
            sl_buf_puts(&p, "");
            w_str(&p, 1, s[7]);
            w_str(&p, 2, s[8]);
            w_str(&p, 3, s[9]);
            w_str(&p, 4, s[10]);
            w_bytes(&b, 7, p.data, p.len);
            w_field(&b, 6, s[5], s[6]);
            w_field(&b, 5, s[3], s[4]);
            w_str(&b, 8, s[2]);
            w_str(&b, 2, s[1]);
            w_str(&b, 1, s[0]);
            sl_buf_cleanup(&p);
            if (second < 0) {
                char want[64];
                snprintf(want, sizeof(want), "%s is not valid UTF-8", what[place]);
                expect_msg(&b, want);
            } else {
                expect(&b, REFUSE, "two bad strings");
            }
        }
    }
    /* a missing value and a problem without value are checked all the same */
    w_ids(&b);
    w_bytes(&b, 5, "\x0a\x01n\x12\x01\xff\x18\x01", 8);
    expect_msg(&b, "a field value is not valid UTF-8");
    w_ids(&b);
    w_bytes(&b, 7, "\x22\x01\xff\x28\x00", 5);
    expect_msg(&b, "a problem value is not valid UTF-8");
    /* the wire is checked before the strings */
    w_str(&b, 1, "\xff");
    w_ids(&b);
    w_raw(&b, "\x0f", 1);
    expect_msg(&b, "bytes are not a valid sluice.Record protobuf");
    w_ids(&b);
    w_bytes(&b, 5, "\x0a\x01\xff", 3);
    w_bytes(&b, 5, "\x0b", 1);
    expect_msg(&b, "bytes are not a valid sluice.Record protobuf");
    sl_buf_cleanup(&b);

    /* no bytes at all */
    assert_false(same_decode(SL_MSG_RECORD, NULL, 0));
    assert_false(same_decode(SL_MSG_REJECTION, "", 0));
    assert_false(same_decode(SL_MSG_RECORD, NULL, 3));
}

/* Random bytes, and random sequences of plausible fields. */
static void test_random_bytes(void **state)
{
    uint8_t buf[300];
    for (int round = 0; round < 20000; round++) {
        size_t len = rndn(sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        same_decode(round % 2 ? SL_MSG_RECORD : SL_MSG_REJECTION, buf, len);
    }
    struct sl_buf b = SL_BUF_INIT;
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        sl_buf_reset(&b);
        int n = (int)rndn(12);
        for (int i = 0; i < n; i++) {
            uint32_t field = 1 + rndn(11);
            unsigned wt = rndn(8) ? (field <= 2 || field >= 5 ? 2 : 0) : rndn(8);
            if (rndn(6) == 0 && (field == 5 || field == 6 || field == 7)) {
                /* a nested Field or Problem of plausible parts */
                uint8_t sub[64];
                size_t sn = 0;
                int parts = (int)rndn(5);
                for (int k = 0; k < parts; k++) {
                    uint8_t t = (uint8_t)(1 + rndn(6));
                    if (t <= 4 && rndn(4)) {
                        sub[sn++] = (uint8_t)(t << 3 | 2);
                        sub[sn++] = 2;
                        sub[sn++] = rndn(5) ? 'x' : 0xc3;
                        sub[sn++] = rndn(5) ? 'y' : 0xa9;
                    } else {
                        sub[sn++] = (uint8_t)(t << 3);
                        sub[sn++] = (uint8_t)rndn(3);
                    }
                }
                w_bytes(&b, field, sub, sn);
                continue;
            }
            if (wt == 2) {
                static const char *const strs[] = {"r", "j", "", "\xff", "a\0b", "x\xc3\xa9"};
                const char *s = strs[rndn(6)];
                w_bytes(&b, field, s, s[0] == 'a' ? 3 : strlen(s));
                b.len -= b.len > 0 && rndn(20) == 0; /* now and then cut */
                continue;
            }
            w_tag(&b, field, wt);
            if (wt == 0)
                w_varint(&b, rnd() >> rndn(64));
            else if (wt == 1)
                w_raw(&b, "12345678", rndn(8) ? 8 : 3);
            else if (wt == 5)
                w_raw(&b, "1234", 4);
        }
        accepted += same_decode(SL_MSG_RECORD, b.data ? b.data : "", b.len);
        same_decode(SL_MSG_REJECTION, b.data ? b.data : "", b.len);
    }
    sl_buf_cleanup(&b);
    assert_true(accepted > 0);
}

/* ---- batches: what records share, written once ---- */

/* Decodes an entry of the batch bd both ways: same answer, content and
 * message; returns the hand-written decoder's record (NULL: refused, with
 * its message in err). */
static struct sl_msg *same_batch_decode(const struct sl_batch_dec *bd, const void *e, size_t n,
                                        char *err, size_t errsz)
{
    char e2[512] = "", why[128];
    struct sl_msg *a = sl_codec_batch_decode(bd, e, n, err, errsz);
    struct sl_msg *b = sl_codec_batch_decode_reference(bd, e, n, e2, sizeof(e2));
    if (!a != !b)
        fail_msg("batch entry: hand-written %s, protobuf-c %s (%s%s)", a ? "accepts" : "refuses",
                 b ? "accepts" : "refuses", err, e2);
    if (!a) {
        assert_string_equal(err, e2);
        return NULL;
    }
    const char *d = codec_ref_diff(a, b, why, sizeof(why));
    if (d)
        fail_msg("batch entry: decoded records differ: %s", d);
    sl_msg_unref(b);
    return a;
}

/* a and b carry the same fields (names and values) */
static void same_fields(const struct sl_field *a, uint32_t na, const struct sl_field *b,
                        uint32_t nb)
{
    assert_int_equal(na, nb);
    for (uint32_t i = 0; i < na; i++) {
        assert_string_equal(a[i].name ? a[i].name : "", b[i].name);
        if (!a[i].value)
            assert_null(b[i].value);
        else
            assert_string_equal(a[i].value, b[i].value);
    }
}

/* Random records, one in three of another run, one in four with other
 * names, built into batches both ways: the same bytes, fewer than the
 * records alone; read back both ways: the same records. */
static void test_batch_shared(void **state)
{
    (void)state;
    for (int round = 0; round < 300; round++) {
        struct sl_msg *base = rnd_record(SL_MSG_RECORD);
        struct sl_msg *recs[12];
        size_t n = 1 + rndn(12);
        for (size_t i = 0; i < n; i++) {
            struct sl_msg *m = rnd_record(SL_MSG_RECORD);
            struct sl_record *r = &m->u.rec;
            if (i && rndn(4)) { /* the names of base (which outlives m) */
                const struct sl_record *br = &base->u.rec;
                m->run_id = base->run_id;
                m->job_id = base->job_id;
                m->job_version = base->job_version;
                r->nsrc = br->nsrc;
                r->src = rnd_fields(m, r->nsrc);
                for (uint32_t k = 0; k < r->nsrc; k++)
                    r->src[k].name = br->src[k].name;
                r->nattr = br->nattr;
                r->attr = rnd_fields(m, r->nattr);
                for (uint32_t k = 0; k < r->nattr; k++)
                    r->attr[k].name = br->attr[k].name;
            }
            for (uint32_t k = 0; k < r->nsrc; k++) /* other values, some missing */
                r->src[k].value = rnd_str(m, 20);
            for (uint32_t k = 0; k < r->nattr; k++)
                r->attr[k].value = rnd_str(m, 20);
            if (!rndn(3))
                m->run_id = "another-run";
            recs[i] = m;
        }
        struct sl_batch_enc ea = SL_BATCH_ENC_INIT, eb = SL_BATCH_ENC_INIT;
        struct sl_buf a = SL_BUF_INIT, b = SL_BUF_INIT;
        bool ok[12];
        for (size_t i = 0; i < n; i++) {
            int ra = sl_codec_batch_add(&ea, recs[i], &a);
            assert_int_equal(ra, sl_codec_batch_add_reference(&eb, recs[i], &b));
            assert_int_equal(a.len, b.len);
            if (a.len)
                assert_memory_equal(a.data, b.data, a.len);
            ok[i] = ra == 0;
        }
        sl_codec_batch_enc_reset(&ea);
        sl_codec_batch_enc_reset(&eb);
        struct sl_batch_dec bd = SL_BATCH_DEC_INIT;
        char err[512] = "";
        assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, a.data, a.len, err, sizeof(err)),
                         0);
        size_t pos = 0, elen;
        const void *e;
        for (size_t i = 0; i < n; i++) {
            if (!ok[i])
                continue;
            assert_int_equal(sl_codec_batch_next(a.data, a.len, &pos, &e, &elen, err, sizeof(err)),
                             1);
            /* as the record alone reads */
            struct sl_buf one = SL_BUF_INIT;
            char e1[512] = "", why[128];
            assert_int_equal(sl_codec_encode(recs[i], &one), 0);
            struct sl_msg *want = sl_codec_decode(SL_MSG_RECORD, one.data, one.len, e1, sizeof(e1));
            struct sl_msg *d = same_batch_decode(&bd, e, elen, err, sizeof(err));
            if (!want != !d)
                fail_msg("record %zu: alone %s, in the batch %s", i, want ? "accepted" : e1,
                         d ? "accepted" : err);
            if (!d) {
                assert_string_equal(e1, err);
            } else {
                const char *diff = codec_ref_diff(want, d, why, sizeof(why));
                if (diff)
                    fail_msg("record %zu reads differently in the batch: %s", i, diff);
                same_fields(recs[i]->u.rec.src, recs[i]->u.rec.nsrc, d->u.rec.src, d->u.rec.nsrc);
            }
            sl_msg_unref(want);
            sl_msg_unref(d);
            sl_buf_cleanup(&one);
        }
        assert_int_equal(sl_codec_batch_next(a.data, a.len, &pos, &e, &elen, err, sizeof(err)), 0);
        sl_codec_batch_release(&bd);
        for (size_t i = 0; i < n; i++)
            sl_msg_unref(recs[i]);
        sl_msg_unref(base);
        sl_buf_cleanup(&a);
        sl_buf_cleanup(&b);
    }

    /* rows of a file: the batch is far smaller than the records alone */
    struct sl_batch_enc be = SL_BATCH_ENC_INIT;
    struct sl_buf shared = SL_BUF_INIT, plain = SL_BUF_INIT;
    static const char *const names[] = {"Filiale", "Name", "Eroeffnung", "Umsatz", "E-Mail"};
    for (int i = 0; i < 100; i++) {
        struct sl_msg *m =
            sl_msg_new(SL_MSG_RECORD, "3f2b8e1c-0d4a-4c1e-9b7a-2f6d5e4c3b2a", "store-locations", 1);
        assert_non_null(m);
        m->u.rec.row = (uint64_t)i + 1;
        for (size_t k = 0; k < 5; k++)
            assert_int_equal(sl_msg_add_src(m, names[k], k == 4 ? NULL : "value", 5), 0);
        assert_int_equal(sl_codec_batch_add(&be, m, &shared), 0);
        assert_int_equal(sl_codec_batch_add(NULL, m, &plain), 0);
        sl_msg_unref(m);
    }
    sl_codec_batch_enc_reset(&be);
    assert_true(shared.len * 2 < plain.len);
    sl_buf_cleanup(&shared);
    sl_buf_cleanup(&plain);
}

/* A batch of one header and the entry e[0..n) as the records kind reads
 * it; the decoders' message for it, or "" when accepted. */
static void expect_entry(const struct sl_buf *header, const struct sl_buf *entry, const char *want)
{
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(sl_buf_append(&b, header->data ? header->data : "", header->len), 0);
    w_bytes(&b, 1, entry->data ? entry->data : "", entry->len);
    struct sl_batch_dec bd = SL_BATCH_DEC_INIT;
    char err[512] = "";
    assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, b.data, b.len, err, sizeof(err)), 0);
    size_t pos = 0, elen;
    const void *e;
    assert_int_equal(sl_codec_batch_next(b.data, b.len, &pos, &e, &elen, err, sizeof(err)), 1);
    struct sl_msg *m = same_batch_decode(&bd, e, elen, err, sizeof(err));
    if (!*want)
        assert_non_null(m);
    else if (m)
        fail_msg("accepted, want: %s", want);
    else
        assert_string_equal(err, want);
    sl_msg_unref(m);
    sl_codec_batch_release(&bd);
    sl_buf_cleanup(&b);
}

/* What a batch says its records share, and records that do not fit it. */
static void test_batch_shapes(void **state)
{
    (void)state;
    struct sl_buf h = SL_BUF_INIT, r = SL_BUF_INIT;
    w_str(&h, 2, "run-b");
    w_str(&h, 3, "job-b");
    w_tag(&h, 4, 0);
    w_varint(&h, 7);
    w_str(&h, 5, "id");
    w_str(&h, 5, "name");
    w_str(&h, 6, "store_id");

    /* ids and names from the batch; an unpacked missing index */
    w_str(&r, 10, "1");
    w_str(&r, 10, "");
    w_tag(&r, 11, 0);
    w_varint(&r, 1);
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(sl_buf_append(&b, h.data, h.len), 0);
    w_bytes(&b, 1, r.data, r.len);
    struct sl_batch_dec bd = SL_BATCH_DEC_INIT;
    char err[512] = "";
    assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, b.data, b.len, err, sizeof(err)), 0);
    assert_int_equal(bd.nsrc, 2);
    assert_int_equal(bd.nattr, 1);
    assert_string_equal(bd.run_id, "run-b");
    size_t pos = 0, elen;
    const void *e;
    assert_int_equal(sl_codec_batch_next(b.data, b.len, &pos, &e, &elen, err, sizeof(err)), 1);
    struct sl_msg *m = same_batch_decode(&bd, e, elen, err, sizeof(err));
    assert_non_null(m);
    assert_string_equal(m->run_id, "run-b");
    assert_string_equal(m->job_id, "job-b");
    assert_int_equal(m->job_version, 7);
    assert_int_equal(m->u.rec.nsrc, 2);
    assert_string_equal(m->u.rec.src[0].name, "id");
    assert_string_equal(m->u.rec.src[0].value, "1");
    assert_string_equal(m->u.rec.src[1].name, "name");
    assert_null(m->u.rec.src[1].value);
    sl_codec_batch_end(&bd); /* the record keeps its names */
    assert_string_equal(m->u.rec.src[1].name, "name");
    /* the next batch of the same header takes the same names */
    assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, b.data, b.len, err, sizeof(err)), 0);
    pos = 0;
    assert_int_equal(sl_codec_batch_next(b.data, b.len, &pos, &e, &elen, err, sizeof(err)), 1);
    struct sl_msg *m2 = same_batch_decode(&bd, e, elen, err, sizeof(err));
    assert_non_null(m2);
    assert_ptr_equal(m2->u.rec.src[1].name, m->u.rec.src[1].name);
    assert_ptr_equal(m2->wire_names, m->wire_names);
    sl_codec_batch_end(&bd);
    sl_msg_unref(m2);
    sl_msg_unref(m);
    /* alone, outside its batch, the values have no names */
    assert_null(sl_codec_decode(SL_MSG_RECORD, r.data, r.len, err, sizeof(err)));
    assert_string_equal(err, "cannot decode record: it has source_values outside a batch that "
                             "names them");
    sl_buf_cleanup(&b);

    /* its own ids win */
    sl_buf_reset(&r);
    w_ids(&r);
    expect_entry(&h, &r, "");
    /* one value for two names */
    sl_buf_reset(&r);
    w_str(&r, 10, "1");
    expect_entry(&h, &r, "cannot decode record: it has 1 source_values, its batch names 2");
    /* a missing index past the values (packed) */
    sl_buf_reset(&r);
    w_str(&r, 12, "s1");
    w_bytes(&r, 13, "\x00\x05", 2);
    expect_entry(&h, &r, "cannot decode record: attribute_missing names value 5 of 1");
    /* fields and values of the same list */
    sl_buf_reset(&r);
    w_field(&r, 5, "id", "1");
    w_str(&r, 10, "1");
    w_str(&r, 10, "2");
    expect_entry(&h, &r, "cannot decode record: it has both source and source_values");
    /* a packed index cut short is not protobuf */
    sl_buf_reset(&r);
    w_str(&r, 12, "s1");
    w_bytes(&r, 13, "\x80", 1);
    expect_entry(&h, &r, "cannot decode record: 7 bytes are not a valid sluice.Record protobuf");
    /* a value that is not UTF-8 */
    sl_buf_reset(&r);
    w_str(&r, 12, "\xff");
    expect_entry(&h, &r, "cannot decode record: a field value is not valid UTF-8");

    /* a batch whose names are not UTF-8 is refused whole */
    sl_buf_reset(&b);
    w_str(&b, 5, "\xc3");
    w_bytes(&b, 1, "", 0);
    assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, b.data, b.len, err, sizeof(err)),
                     SL_ERR_PARSE);
    assert_non_null(strstr(err, "not valid UTF-8"));
    /* and one of a field number it does not have */
    sl_buf_reset(&b);
    w_str(&b, 7, "x");
    assert_int_equal(sl_codec_batch_begin(&bd, SL_MSG_RECORD, b.data, b.len, err, sizeof(err)),
                     SL_ERR_PARSE);
    sl_codec_batch_release(&bd);
    sl_buf_cleanup(&b);
    sl_buf_cleanup(&h);
    sl_buf_cleanup(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_content), cmocka_unit_test(test_random_records),
        cmocka_unit_test(test_big_rows),           cmocka_unit_test(test_encode_bad_utf8),
        cmocka_unit_test(test_unknown_fields),     cmocka_unit_test(test_wire_types_and_varints),
        cmocka_unit_test(test_order_and_repeats),  cmocka_unit_test(test_strings),
        cmocka_unit_test(test_random_bytes),       cmocka_unit_test(test_batch_shared),
        cmocka_unit_test(test_batch_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
