/*
 * libFuzzer differential harness of the wire codec's hand-written Record and
 * Rejection path (common/src/codec.c) against protobuf-c
 * (tests/unit/codec_reference.h).
 *
 * The first input byte picks the kind (bit 0: record or rejection); the rest
 * is the message. Both decoders must accept or refuse it alike, with the same
 * message, and decode the same fields. What they accept is encoded again both
 * ways, alone and as a batch entry: the same bytes, which decode to the same
 * record again.
 */
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
    int ra = field ? sl_codec_batch_add(m, a) : sl_codec_encode(m, a);
    int rb = sl_codec_encode_reference(m, &b, field);
    if (ra != rb)
        die("encoders disagree", ra ? "hand-written refuses" : "protobuf-c refuses");
    if (ra == 0 && (a->len != b.len || memcmp(a->data, b.data, a->len)))
        die("encoders write different bytes", NULL);
    sl_buf_cleanup(&b);
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
    data++;
    size--;
    /* a copy of exactly size bytes, so that ASan sees any read past them */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        abort();
    memcpy(in, data, size);

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
