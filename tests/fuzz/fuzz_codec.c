/*
 * libFuzzer differential harness of the wire codec's hand-written Record and
 * Rejection path (common/src/codec.c) against protobuf-c
 * (tests/unit/codec_reference.h).
 *
 * The first input byte picks the kind (bit 0: record or rejection); the rest
 * is the message. Both decoders must accept or refuse it alike, with the same
 * message, and decode the same fields. What they accept is encoded again both
 * ways, alone and as a batch entry: the same bytes, which decode to the same
 * record again. With bit 1 set the rest is a RecordBatch: each of its entries
 * is decoded both ways with what the batch says its records share, and what
 * is accepted goes into a new batch both ways (the same bytes), which reads
 * back the same.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/codec.h"
#include "sluice/log.h"
#include "sluice/msg.h"

#include "../unit/codec_reference.h"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_codec: %s: %s\n", what, detail ? detail : "");
    abort();
}

/* Encodes m both ways (field 0 or 1): same result, same bytes. */
static void same_encode(const struct sl_msg *m, unsigned field, struct sl_buf *a)
{
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_reset(a);
    int ra = field ? sl_codec_batch_add(NULL, m, a) : sl_codec_encode(m, a);
    int rb = sl_codec_encode_reference(m, &b, field);
    if (ra != rb)
        die("encoders disagree", ra ? "hand-written refuses" : "protobuf-c refuses");
    if (ra == 0 && (a->len != b.len || memcmp(a->data, b.data, a->len)))
        die("encoders write different bytes", NULL);
    sl_buf_cleanup(&b);
}

/* Decodes every entry of the batch in[0..size) both ways (see the top). */
static void fuzz_batch(enum sl_msg_kind kind, const uint8_t *in, size_t size)
{
    struct sl_batch_dec bd = SL_BATCH_DEC_INIT;
    char err[512] = "", e2[512] = "", why[128];
    if (sl_codec_batch_begin(&bd, kind, in, size, err, sizeof(err)) != 0)
        return;
    struct sl_msg *got[64];
    size_t ngot = 0, pos = 0, elen;
    const void *e;
    while (ngot < 64 && sl_codec_batch_next(in, size, &pos, &e, &elen, err, sizeof(err)) == 1) {
        struct sl_msg *a = sl_codec_batch_decode(&bd, e, elen, err, sizeof(err));
        struct sl_msg *b = sl_codec_batch_decode_reference(&bd, e, elen, e2, sizeof(e2));
        if (!a != !b)
            die(a ? "only the hand-written decoder accepts an entry"
                  : "only protobuf-c accepts an entry",
                a ? e2 : err);
        if (!a && strcmp(err, e2))
            die("decoders refuse an entry with different messages", err);
        const char *d = a ? codec_ref_diff(a, b, why, sizeof(why)) : NULL;
        if (d)
            die("decoders read different entries", d);
        sl_msg_unref(b);
        if (a)
            got[ngot++] = a;
    }
    sl_codec_batch_end(&bd); /* the records keep what they need */
    struct sl_batch_enc ea = SL_BATCH_ENC_INIT, eb = SL_BATCH_ENC_INIT;
    struct sl_buf x = SL_BUF_INIT, y = SL_BUF_INIT;
    bool added[64];
    for (size_t i = 0; i < ngot; i++) {
        int ra = sl_codec_batch_add(&ea, got[i], &x);
        if (ra != sl_codec_batch_add_reference(&eb, got[i], &y))
            die("batch encoders disagree", NULL);
        if (x.len != y.len || (x.len && memcmp(x.data, y.data, x.len)))
            die("batch encoders write different bytes", NULL);
        added[i] = ra == 0;
    }
    sl_codec_batch_enc_reset(&ea);
    sl_codec_batch_enc_reset(&eb);
    if (sl_codec_batch_begin(&bd, kind, x.data ? x.data : "", x.len, err, sizeof(err)))
        die("a batch written again does not read", err);
    pos = 0;
    for (size_t i = 0; i < ngot; i++) {
        if (!added[i])
            continue;
        if (sl_codec_batch_next(x.data, x.len, &pos, &e, &elen, err, sizeof(err)) != 1)
            die("a batch written again lacks an entry", err);
        struct sl_msg *c = sl_codec_batch_decode(&bd, e, elen, err, sizeof(err));
        if (!c)
            die("an entry written again does not decode", err);
        const char *d = codec_ref_diff(got[i], c, why, sizeof(why));
        if (d)
            die("an entry written again reads differently", d);
        sl_msg_unref(c);
    }
    sl_codec_batch_release(&bd);
    for (size_t i = 0; i < ngot; i++)
        sl_msg_unref(got[i]);
    sl_buf_cleanup(&x);
    sl_buf_cleanup(&y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        sl_log_set_level(SL_LOG_OFF);
        quiet = 1;
    }
    if (size < 1)
        return 0;
    enum sl_msg_kind kind = data[0] & 1 ? SL_MSG_REJECTION : SL_MSG_RECORD;
    bool batch = data[0] & 2;
    data++;
    size--;
    /* a copy of exactly size bytes, so that ASan sees any read past them */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        abort();
    memcpy(in, data, size);
    if (batch) {
        fuzz_batch(kind, in, size);
        free(in);
        return 0;
    }

    char e1[512] = "", e2[512] = "", why[128];
    struct sl_msg *a = sl_codec_decode(kind, in, size, e1, sizeof(e1));
    struct sl_msg *b = sl_codec_decode_reference(kind, in, size, e2, sizeof(e2));
    if (!a != !b)
        die(a ? "only the hand-written decoder accepts" : "only protobuf-c accepts", a ? e2 : e1);
    if (!a) {
        if (strcmp(e1, e2)) {
            fprintf(stderr, "hand-written: %s\nprotobuf-c:   %s\n", e1, e2);
            die("decoders refuse with different messages", NULL);
        }
        if (strncmp(e1, "cannot decode ", 14))
            die("a refusal without a reason", e1);
        free(in);
        return 0;
    }
    const char *d = codec_ref_diff(a, b, why, sizeof(why));
    if (d)
        die("decoders read different records", d);

    /* what was read is written again the same way both ways, and reads back */
    struct sl_buf enc = SL_BUF_INIT;
    same_encode(a, 1, &enc);
    same_encode(a, 0, &enc);
    struct sl_msg *c = sl_codec_decode(kind, enc.data, enc.len, e1, sizeof(e1));
    if (!c)
        die("a re-encoded record does not decode", e1);
    if ((d = codec_ref_diff(a, c, why, sizeof(why))))
        die("a re-encoded record reads differently", d);
    sl_msg_unref(c);
    sl_buf_cleanup(&enc);
    sl_msg_unref(a);
    sl_msg_unref(b);
    free(in);
    return 0;
}
