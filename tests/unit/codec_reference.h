/*
 * The protobuf-c path of the wire codec (common/src/codec.c), for tests and
 * benchmarks only: records and rejections are encoded and decoded by hand in
 * production, and these are what the hand-written code must match byte for
 * byte and accept or refuse the same way (tests/unit/test_codec_fast.c,
 * tests/fuzz/fuzz_codec.c, tests/bench/bench_codec.c).
 */
#ifndef SLUICE_TESTS_CODEC_REFERENCE_H
#define SLUICE_TESTS_CODEC_REFERENCE_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/codec.h" /* sl_codec_encode_reference, sl_codec_decode_reference */
#include "sluice/msg.h"

/* Whether two strings are both NULL or equal. */
static inline int codec_ref_str_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* NULL when the decoded records or rejections a and b are the same field for
 * field, else the first difference, described in why[0..whysz). */
static inline const char *codec_ref_diff(const struct sl_msg *a, const struct sl_msg *b, char *why,
                                         size_t whysz)
{
    const struct sl_record *ra = &a->u.rec, *rb = &b->u.rec;
#define CODEC_REF_DIFF(cond, ...)                                                                  \
    do {                                                                                           \
        if (cond) {                                                                                \
            snprintf(why, whysz, __VA_ARGS__);                                                     \
            return why;                                                                            \
        }                                                                                          \
    } while (0)
    CODEC_REF_DIFF(a->kind != b->kind, "kind %d / %d", (int)a->kind, (int)b->kind);
    CODEC_REF_DIFF(!codec_ref_str_same(a->run_id, b->run_id), "run_id");
    CODEC_REF_DIFF(!codec_ref_str_same(a->job_id, b->job_id), "job_id");
    CODEC_REF_DIFF(a->job_version != b->job_version, "job_version %u / %u", a->job_version,
                   b->job_version);
    CODEC_REF_DIFF(a->key || b->key || a->names || b->names, "bus key or names set");
    CODEC_REF_DIFF(ra->row != rb->row, "row");
    CODEC_REF_DIFF(!codec_ref_str_same(ra->key, rb->key), "key");
    CODEC_REF_DIFF(ra->duplicate != rb->duplicate, "duplicate");
    CODEC_REF_DIFF(ra->nsrc != rb->nsrc || ra->csrc != rb->csrc, "source count %u / %u", ra->nsrc,
                   rb->nsrc);
    CODEC_REF_DIFF(ra->nattr != rb->nattr || ra->cattr != rb->cattr, "attribute count %u / %u",
                   ra->nattr, rb->nattr);
    CODEC_REF_DIFF(ra->nprob != rb->nprob || ra->cprob != rb->cprob, "problem count %u / %u",
                   ra->nprob, rb->nprob);
    CODEC_REF_DIFF(!ra->nsrc != !ra->src || !rb->nsrc != !rb->src, "source array");
    CODEC_REF_DIFF(!ra->nattr != !ra->attr || !rb->nattr != !rb->attr, "attribute array");
    CODEC_REF_DIFF(!ra->nprob != !ra->prob || !rb->nprob != !rb->prob, "problem array");
    for (uint32_t i = 0; i < ra->nsrc; i++) {
        CODEC_REF_DIFF(!ra->src[i].name || !rb->src[i].name, "source %u has no name", i);
        CODEC_REF_DIFF(!codec_ref_str_same(ra->src[i].name, rb->src[i].name), "source %u name", i);
        CODEC_REF_DIFF(!codec_ref_str_same(ra->src[i].value, rb->src[i].value), "source %u value",
                       i);
    }
    for (uint32_t i = 0; i < ra->nattr; i++) {
        CODEC_REF_DIFF(!ra->attr[i].name || !rb->attr[i].name, "attribute %u has no name", i);
        CODEC_REF_DIFF(!codec_ref_str_same(ra->attr[i].name, rb->attr[i].name), "attribute %u name",
                       i);
        CODEC_REF_DIFF(!codec_ref_str_same(ra->attr[i].value, rb->attr[i].value),
                       "attribute %u value", i);
    }
    for (uint32_t i = 0; i < ra->nprob; i++) {
        const struct sl_problem *pa = &ra->prob[i], *pb = &rb->prob[i];
        CODEC_REF_DIFF(!pa->attribute || !pa->code || !pa->message || !pb->attribute || !pb->code ||
                           !pb->message,
                       "problem %u has a NULL string", i);
        CODEC_REF_DIFF(!codec_ref_str_same(pa->attribute, pb->attribute), "problem %u attribute",
                       i);
        CODEC_REF_DIFF(!codec_ref_str_same(pa->code, pb->code), "problem %u code", i);
        CODEC_REF_DIFF(!codec_ref_str_same(pa->message, pb->message), "problem %u message", i);
        CODEC_REF_DIFF(!codec_ref_str_same(pa->value, pb->value), "problem %u value", i);
    }
#undef CODEC_REF_DIFF
    return NULL;
}

#endif
