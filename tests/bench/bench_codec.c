/*
 * bench_codec: records per second of the wire codec on store records, the
 * hand-written Record / Rejection path (common/src/codec.c) beside the
 * protobuf-c one it replaced (tests/unit/codec_reference.h). A benchmark, not
 * a test: build it in a Release build and run it on a quiet machine.
 *
 * Usage: bench_codec [SECONDS]   (per measurement, default 1)
 *
 * Cases: a raw record as the parser sends it (15 source fields, one missing),
 * the same record mapped (plus 15 attributes and the key), and a rejection
 * (15 source fields, two problems). Each is encoded into a reused buffer and
 * decoded into a new message (freed at once), as the services do.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/buf.h"
#include "sluice/codec.h"
#include "sluice/msg.h"

#include "../unit/codec_reference.h"

static const char *const names[15] = {
    "Filiale", "Name",    "Eroeffnung", "Umsatz", "Waehrung", "E-Mail",  "Telefon",   "Status",
    "Region",  "Strasse", "PLZ",        "Ort",    "Manager",  "Flaeche", "Kategorie",
};

static const char *const values[15] = {
    "1002",
    "Filiale Hamburg Altona",
    "01.09.2001",
    "987.654,32",
    "\xe2\x82\xac",
    "Hamburg.Altona@Stores.Example.DE",
    "040 3891234",
    "open",
    "Nord",
    "Gro\xc3\x9f"
    "e Bergstra\xc3\x9f"
    "e 160",
    "22767",
    "Hamburg",
    NULL,
    "1.250",
    "Supermarkt",
};

static const char *const attrs[15][2] = {
    {"store_id", "1002"},
    {"name", "Filiale Hamburg Altona"},
    {"opened_on", "2001-09-01"},
    {"revenue", "987654.32"},
    {"currency", "EUR"},
    {"email", "hamburg.altona@stores.example.de"},
    {"phone", "+49403891234"},
    {"status", "open"},
    {"region", "Nord"},
    {"street", "Gro\xc3\x9f"
               "e Bergstra\xc3\x9f"
               "e 160"},
    {"postal_code", "22767"},
    {"city", "Hamburg"},
    {"manager", NULL},
    {"area_m2", "1250"},
    {"category", "Supermarkt"},
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sl_msg *store_record(enum sl_msg_kind kind, int mapped)
{
    struct sl_msg *m =
        sl_msg_new(kind, "3f2b8e1c-0d4a-4c1e-9b7a-2f6d5e4c3b2a", "store-locations", 3);
    if (!m)
        abort();
    m->u.rec.row = 1002;
    for (int i = 0; i < 15; i++)
        if (sl_msg_add_src(m, names[i], values[i], values[i] ? strlen(values[i]) : 0))
            abort();
    if (mapped) {
        for (int i = 0; i < 15; i++)
            if (sl_msg_add_attr(m, attrs[i][0], attrs[i][1]))
                abort();
        m->u.rec.key = "1002";
    }
    if (kind == SL_MSG_REJECTION) {
        if (sl_msg_add_problem(m, "opened_on", "type", "not a date: 31.02.2001", "31.02.2001") ||
            sl_msg_add_problem(m, "manager", "required", "a value is required", NULL))
            abort();
    }
    return m;
}

static volatile size_t sink;

/* Records per second of encoding m (reference: through protobuf-c). */
static double encode_rate(const struct sl_msg *m, int reference, double secs)
{
    struct sl_buf b = SL_BUF_INIT;
    size_t n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            sl_buf_reset(&b);
            if ((reference ? sl_codec_encode_reference(m, &b, 0) : sl_codec_encode(m, &b)) != 0)
                abort();
            sink += b.len;
        }
        n += 1000;
    } while ((t = now() - t0) < secs);
    sl_buf_cleanup(&b);
    return (double)n / t;
}

static double decode_rate(enum sl_msg_kind kind, const struct sl_buf *enc, int reference,
                          double secs)
{
    char err[256];
    size_t n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 1000; i++) {
            struct sl_msg *d =
                reference ? sl_codec_decode_reference(kind, enc->data, enc->len, err, sizeof(err))
                          : sl_codec_decode(kind, enc->data, enc->len, err, sizeof(err));
            if (!d) {
                fprintf(stderr, "bench_codec: %s\n", err);
                abort();
            }
            sink += d->u.rec.nsrc;
            sl_msg_unref(d);
        }
        n += 1000;
    } while ((t = now() - t0) < secs);
    return (double)n / t;
}

static void bench(const char *what, struct sl_msg *m, double secs)
{
    struct sl_buf enc = SL_BUF_INIT, ref = SL_BUF_INIT;
    if (sl_codec_encode(m, &enc) || sl_codec_encode_reference(m, &ref, 0) || enc.len != ref.len ||
        memcmp(enc.data, ref.data, enc.len)) {
        fprintf(stderr, "bench_codec: %s: the two encoders disagree\n", what);
        exit(1);
    }
    double e_ref = encode_rate(m, 1, secs), e_new = encode_rate(m, 0, secs);
    double d_ref = decode_rate(m->kind, &enc, 1, secs), d_new = decode_rate(m->kind, &enc, 0, secs);
    printf("%s, %zu bytes\n", what, enc.len);
    printf("  encode  protobuf-c %9.0f rec/s  hand-written %9.0f rec/s  x%.2f\n", e_ref, e_new,
           e_new / e_ref);
    printf("  decode  protobuf-c %9.0f rec/s  hand-written %9.0f rec/s  x%.2f\n", d_ref, d_new,
           d_new / d_ref);
    sl_buf_cleanup(&enc);
    sl_buf_cleanup(&ref);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    if (secs <= 0) {
        fprintf(stderr, "usage: bench_codec [SECONDS]\n");
        return 2;
    }
    struct sl_msg *raw = store_record(SL_MSG_RECORD, 0);
    struct sl_msg *mapped = store_record(SL_MSG_RECORD, 1);
    struct sl_msg *rej = store_record(SL_MSG_REJECTION, 0);
    bench("raw store record (15 source fields)", raw, secs);
    bench("mapped store record (15 source fields, 15 attributes, key)", mapped, secs);
    bench("store rejection (15 source fields, 2 problems)", rej, secs);
    sl_msg_unref(raw);
    sl_msg_unref(mapped);
    sl_msg_unref(rej);
    return 0;
}
