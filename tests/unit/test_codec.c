/*
 * Unit tests of the wire codec (codec.h): every kind survives encode and
 * decode field for field, garbage is refused with a message, and what we
 * write is what protoc itself reads from proto/sluice.proto.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/bus.h"
#include "sluice/codec.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/msg.h"

#define RUN "3f2b8e1c-0d4a-4c1e-9b7a-2f6d5e4c3b2a"
#define SHA "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

/* Encodes m, decodes the bytes as the same kind and returns the copy. */
static struct sl_msg *round_trip(const struct sl_msg *m)
{
    struct sl_buf b = SL_BUF_INIT;
    char err[256] = "";
    assert_int_equal(sl_codec_encode(m, &b), 0);
    struct sl_msg *d = sl_codec_decode(m->kind, b.data, b.len, err, sizeof(err));
    if (!d)
        fail_msg("decode failed: %s", err);
    assert_int_equal(d->kind, m->kind);
    assert_int_equal(atomic_load(&d->refs), 1);
    assert_str_or_null(d->run_id, m->run_id);
    assert_string_equal(d->job_id, m->job_id);
    assert_int_equal(d->job_version, m->job_version);
    assert_null(d->key); /* the bus key is not part of the record */
    sl_buf_cleanup(&b);
    return d;
}

static void assert_fields_equal(const struct sl_field *a, uint32_t na, const struct sl_field *b,
                                uint32_t nb)
{
    assert_int_equal(na, nb);
    for (uint32_t i = 0; i < na; i++) {
        assert_string_equal(a[i].name, b[i].name);
        assert_str_or_null(a[i].value, b[i].value);
    }
}

static void assert_problems_equal(const struct sl_record *a, const struct sl_record *b)
{
    assert_int_equal(a->nprob, b->nprob);
    for (uint32_t i = 0; i < a->nprob; i++) {
        assert_string_equal(a->prob[i].attribute, b->prob[i].attribute);
        assert_string_equal(a->prob[i].code, b->prob[i].code);
        assert_string_equal(a->prob[i].message, b->prob[i].message);
        assert_str_or_null(a->prob[i].value, b->prob[i].value);
    }
}

static void test_ticket(void **state)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_TICKET, RUN, "store-locations", 7);
    assert_non_null(m);
    m->key = "store-locations";
    m->u.ticket = (struct sl_ticket){
        .ticket_id = "store-locations@1767225600000000",
        .trigger = "schedule",
        .force = true,
        .scheduled_at = INT64_C(1767225600000000),
        .input = "/data/stores.csv",
    };
    struct sl_msg *d = round_trip(m);
    assert_string_equal(d->u.ticket.ticket_id, m->u.ticket.ticket_id);
    assert_string_equal(d->u.ticket.trigger, "schedule");
    assert_true(d->u.ticket.force);
    assert_int_equal(d->u.ticket.scheduled_at, m->u.ticket.scheduled_at);
    assert_string_equal(d->u.ticket.input, "/data/stores.csv");
    sl_msg_unref(d);

    /* No run id yet, no input, a negative time: all survive. */
    sl_msg_unref(m);
    m = sl_msg_new(SL_MSG_TICKET, NULL, "j", 0);
    m->u.ticket = (struct sl_ticket){.ticket_id = "t", .trigger = "cli", .scheduled_at = -5};
    d = round_trip(m);
    assert_null(d->run_id);
    assert_null(d->u.ticket.input);
    assert_false(d->u.ticket.force);
    assert_int_equal(d->u.ticket.scheduled_at, -5);
    sl_msg_unref(d);
    sl_msg_unref(m);
}

static void test_file(void **state)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_FILE, RUN, "store-locations", 3);
    assert_non_null(m);
    m->u.file.blob = "runs/" RUN "/stores.csv";
    memcpy(m->u.file.sha256, SHA, 65);
    m->u.file.bytes = UINT64_C(5000000000);
    m->u.file.content_type = "text/csv; charset=utf-8";
    m->u.file.file_name = "stores.csv";
    m->u.file.fetched_at = INT64_C(1767225600123456);
    struct sl_msg *d = round_trip(m);
    assert_string_equal(d->u.file.blob, m->u.file.blob);
    assert_string_equal(d->u.file.sha256, SHA);
    assert_int_equal(d->u.file.bytes, UINT64_C(5000000000));
    assert_string_equal(d->u.file.content_type, m->u.file.content_type);
    assert_string_equal(d->u.file.file_name, "stores.csv");
    assert_int_equal(d->u.file.fetched_at, m->u.file.fetched_at);
    sl_msg_unref(d);
    sl_msg_unref(m);
}

static struct sl_msg *sample_record(enum sl_msg_kind kind)
{
    struct sl_msg *m = sl_msg_new(kind, RUN, "store-locations", 2);
    assert_non_null(m);
    m->u.rec.row = 41;
    assert_int_equal(sl_msg_add_src(m, "Filiale", "0042", 4), 0);
    static const char name[] = "  Caf\xc3\xa9 M\xc3\xbcller ";
    assert_int_equal(sl_msg_add_src(m, "Name", name, strlen(name)), 0);
    assert_int_equal(sl_msg_add_src(m, "Eroeffnung", NULL, 0), 0);
    assert_int_equal(sl_msg_add_src(m, "Umsatz", "", 0), 0); /* empty is not missing */
    if (kind == SL_MSG_RECORD) {
        assert_int_equal(sl_msg_add_attr(m, "store_id", "0042"), 0);
        assert_int_equal(sl_msg_add_attr(m, "name", "Caf\xc3\xa9 M\xc3\xbcller"), 0);
        assert_int_equal(sl_msg_add_attr(m, "opened_on", NULL), 0);
    }
    assert_int_equal(sl_msg_add_problem(m, "opened_on", "required", "a value is required", NULL),
                     0);
    assert_int_equal(sl_msg_add_problem(m, "revenue", "type", "not a decimal number", ""), 0);
    assert_int_equal(sl_msg_add_problem(m, NULL, "duplicate_key", "key seen in row 3", "0042"), 0);
    m->u.rec.key = "0042\x1f"
                   "DE";
    return m;
}

static void test_record(void **state)
{
    struct sl_msg *m = sample_record(SL_MSG_RECORD);
    struct sl_msg *d = round_trip(m);
    struct sl_record *a = &m->u.rec, *b = &d->u.rec;
    assert_int_equal(b->row, 41);
    assert_fields_equal(b->src, b->nsrc, a->src, a->nsrc);
    assert_null(b->src[2].value);
    assert_string_equal(b->src[3].value, "");
    assert_fields_equal(b->attr, b->nattr, a->attr, a->nattr);
    assert_problems_equal(b, a);
    assert_string_equal(b->prob[2].attribute, "_row");
    assert_string_equal(b->key, a->key);
    /* A decoded message grows like a new one (capacity is recorded). */
    assert_int_equal(sl_msg_add_attr(d, "extra", "x"), 0);
    assert_int_equal(b->nattr, a->nattr + 1);
    assert_string_equal(b->attr[0].value, "0042");
    sl_msg_unref(d);

    /* A raw record: no attributes, no problems, no key. */
    sl_msg_unref(m);
    m = sl_msg_new(SL_MSG_RECORD, RUN, "j", 1);
    m->u.rec.row = 1;
    d = round_trip(m);
    assert_int_equal(d->u.rec.row, 1);
    assert_int_equal(d->u.rec.nsrc, 0);
    assert_null(d->u.rec.attr);
    assert_int_equal(d->u.rec.nprob, 0);
    assert_null(d->u.rec.key);
    sl_msg_unref(d);
    sl_msg_unref(m);
}

static void test_rejection(void **state)
{
    struct sl_msg *m = sample_record(SL_MSG_REJECTION);
    struct sl_msg *d = round_trip(m);
    assert_int_equal(d->u.rec.row, 41);
    assert_fields_equal(d->u.rec.src, d->u.rec.nsrc, m->u.rec.src, m->u.rec.nsrc);
    assert_int_equal(d->u.rec.nattr, 0);
    assert_problems_equal(&d->u.rec, &m->u.rec);
    assert_string_equal(d->u.rec.key, m->u.rec.key);
    sl_msg_unref(d);
    sl_msg_unref(m);
}

static void test_run_event(void **state)
{
    static const char *cols[] = {"Filiale", "Name", "E-Mail", ""};
    struct sl_msg *m = sl_msg_new(SL_MSG_RUN_EVENT, RUN, "store-locations", 9);
    assert_non_null(m);
    struct sl_run_event *ev = &m->u.ev;
    ev->kind = SL_EV_FINAL;
    ev->stage = "publisher";
    ev->record_count = 1000;
    ev->counts = (struct sl_counts){1, 2, 3, 4, 5, 6, 7, 8, UINT64_MAX};
    ev->status = "completed_with_errors";
    ev->reason = "2 rows rejected";
    memcpy(ev->sha256, SHA, 65);
    ev->bytes = 123456;
    ev->at = INT64_C(1767225600999999);
    ev->source_name = "stores.csv";
    ev->columns = cols;
    ev->ncolumns = 4;
    ev->unmapped = cols + 2;
    ev->nunmapped = 2;
    struct sl_msg *d = round_trip(m);
    struct sl_run_event *e = &d->u.ev;
    assert_int_equal(e->kind, SL_EV_FINAL);
    assert_string_equal(e->stage, "publisher");
    assert_int_equal(e->record_count, 1000);
    assert_memory_equal(&e->counts, &ev->counts, sizeof(e->counts));
    assert_string_equal(e->status, ev->status);
    assert_string_equal(e->reason, ev->reason);
    assert_string_equal(e->sha256, SHA);
    assert_int_equal(e->bytes, 123456);
    assert_int_equal(e->at, ev->at);
    assert_string_equal(e->source_name, "stores.csv");
    assert_int_equal(e->ncolumns, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(e->columns[i], cols[i]);
    assert_int_equal(e->nunmapped, 2);
    assert_string_equal(e->unmapped[0], cols[2]);
    assert_string_equal(e->unmapped[1], cols[3]);
    sl_msg_unref(d);

    /* Every kind, with the optional strings absent. */
    for (int k = SL_EV_FETCHED; k <= SL_EV_FINAL; k++) {
        sl_msg_unref(m);
        m = sl_msg_new(SL_MSG_RUN_EVENT, RUN, "j", 1);
        m->u.ev.kind = (enum sl_run_event_kind)k;
        d = round_trip(m);
        assert_int_equal(d->u.ev.kind, k);
        assert_null(d->u.ev.stage);
        assert_null(d->u.ev.status);
        assert_null(d->u.ev.reason);
        assert_null(d->u.ev.source_name);
        assert_string_equal(d->u.ev.sha256, "");
        assert_null(d->u.ev.columns);
        assert_int_equal(d->u.ev.ncolumns, 0);
        assert_null(d->u.ev.unmapped);
        assert_int_equal(d->u.ev.nunmapped, 0);
        sl_msg_unref(d);
    }
    sl_msg_unref(m);
}

/* Encoding appends: two records back to back in one buffer. */
static void test_encode_appends(void **state)
{
    struct sl_msg *m = sample_record(SL_MSG_RECORD);
    struct sl_buf b = SL_BUF_INIT;
    char err[256];
    assert_int_equal(sl_codec_encode(m, &b), 0);
    size_t one = b.len;
    assert_int_equal(sl_codec_encode(m, &b), 0);
    assert_int_equal(b.len, 2 * one);
    assert_memory_equal(b.data, b.data + one, one);
    struct sl_msg *d = sl_codec_decode(SL_MSG_RECORD, b.data + one, one, err, sizeof(err));
    assert_non_null(d);
    sl_msg_unref(d);
    sl_buf_cleanup(&b);
    sl_msg_unref(m);
}

static void expect_poison(enum sl_msg_kind kind, const void *data, size_t len, const char *want)
{
    char err[256] = "";
    struct sl_msg *d = sl_codec_decode(kind, data, len, err, sizeof(err));
    if (d)
        fail_msg("decoding %zu bytes as %s succeeded", len, sl_msg_kind_str(kind));
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not mention \"%s\"", err, want);
}

static void test_garbage(void **state)
{
    static const uint8_t bad_tag[] = {0x00, 0x01, 0x02};
    static const uint8_t truncated[] = {0x0a, 0x20, 'a', 'b'}; /* run_id of 32 bytes, 2 given */
    static const uint8_t bad_wire[] = {0x0f, 0x01};            /* wire type 7 */
    static const uint8_t long_varint[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff,
                                          0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t bad_utf8[] = {0x0a, 0x01, 'r', 0x12, 0x02, 0xc3, 0x28};
    static const uint8_t no_ids[] = {0x20, 0x05}; /* only row = 5 */
    static const uint8_t ev_kind[] = {0x0a, 0x01, 'r', 0x12, 0x01, 'j', 0x20, 0x09};

    expect_poison(SL_MSG_RECORD, bad_tag, sizeof(bad_tag), "not a valid sluice.Record");
    expect_poison(SL_MSG_RECORD, truncated, sizeof(truncated), "cannot decode record");
    expect_poison(SL_MSG_REJECTION, bad_wire, sizeof(bad_wire), "sluice.Rejection");
    expect_poison(SL_MSG_RECORD, long_varint, sizeof(long_varint), "cannot decode record");
    expect_poison(SL_MSG_RECORD, bad_utf8, sizeof(bad_utf8), "job_id is not valid UTF-8");
    expect_poison(SL_MSG_RECORD, no_ids, sizeof(no_ids), "has no job_id");
    expect_poison(SL_MSG_RECORD, "", 0, "has no job_id");
    expect_poison(SL_MSG_RECORD, NULL, 0, "has no job_id");
    expect_poison(SL_MSG_RUN_EVENT, ev_kind, sizeof(ev_kind), "unknown kind 9");
    /* A FileFetched with run "r", job "j" and a sha256 of 65 characters, then
     * one of 64 that is not hex. */
    uint8_t sha[8 + 65] = {0x0a, 0x01, 'r', 0x12, 0x01, 'j', 0x2a, 65};
    memset(sha + 8, 'a', 65);
    expect_poison(SL_MSG_FILE, sha, sizeof(sha), "sha256 is not a hex SHA-256 (65 characters)");
    sha[7] = 64;
    sha[8 + 10] = 'x';
    expect_poison(SL_MSG_FILE, sha, sizeof(sha) - 1, "sha256 is not a hex SHA-256");
    sha[8 + 10] = 'a';
    char err[256];
    struct sl_msg *ok = sl_codec_decode(SL_MSG_FILE, sha, sizeof(sha) - 1, err, sizeof(err));
    assert_non_null(ok);
    assert_int_equal(strlen(ok->u.file.sha256), 64);
    sl_msg_unref(ok);
    expect_poison((enum sl_msg_kind)42, bad_tag, sizeof(bad_tag), "unknown kind 42");
    expect_poison(SL_MSG_FILE, NULL, 5, "no data");

    /* A ticket needs a job but no run. */
    static const uint8_t ticket_no_job[] = {0x0a, 0x01, 't'};
    expect_poison(SL_MSG_TICKET, ticket_no_job, sizeof(ticket_no_job), "has no job_id");

    /* Pseudo-random bytes of every length: never a crash, always a message
     * (or, rarely, a well-formed record). */
    uint8_t buf[512];
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 3000; round++) {
        size_t len = (size_t)round % sizeof(buf);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        for (int k = SL_MSG_TICKET; k <= SL_MSG_RUN_EVENT; k++) {
            err[0] = '\0';
            struct sl_msg *d = sl_codec_decode((enum sl_msg_kind)k, buf, len, err, sizeof(err));
            if (d)
                sl_msg_unref(d);
            else
                assert_true(strncmp(err, "cannot decode ", 14) == 0);
        }
    }

    /* A valid record cut inside its last field (the key: tag, length, 7 bytes). */
    struct sl_msg *m = sample_record(SL_MSG_RECORD);
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(sl_codec_encode(m, &b), 0);
    for (size_t cut = 1; cut < 9; cut++)
        expect_poison(SL_MSG_RECORD, b.data, b.len - cut, "cannot decode record");
    sl_buf_cleanup(&b);
    sl_msg_unref(m);
}

static void test_encode_invalid(void **state)
{
    struct sl_buf b = SL_BUF_INIT;
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);

    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, RUN, "j", 1);
    assert_int_equal(sl_msg_add_src(m, "Name", "M\xfcller", 6), 0); /* latin1, not UTF-8 */
    assert_int_equal(sl_codec_encode(m, &b), SL_ERR_INVALID);
    assert_int_equal(b.len, 0);
    sl_msg_unref(m);

    m = sl_msg_new(SL_MSG_RUN_EVENT, RUN, "j", 1);
    assert_int_equal(sl_codec_encode(m, &b), SL_ERR_INVALID); /* kind 0 */
    m->u.ev.kind = SL_EV_SEALED;
    assert_int_equal(sl_codec_encode(m, &b), 0);
    sl_msg_unref(m);

    m = sl_msg_new(SL_MSG_TICKET, NULL, "j", 1);
    m->kind = (enum sl_msg_kind)0;
    assert_int_equal(sl_codec_encode(m, &b), SL_ERR_INVALID);
    sl_msg_unref(m);

    sl_buf_cleanup(&b);
    sl_log_set_level(lvl);
}

static void test_topic_kind(void **state)
{
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_TICKETS), SL_MSG_TICKET);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_FILES), SL_MSG_FILE);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_RAW), SL_MSG_RECORD);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_MAPPED), SL_MSG_RECORD);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_VALID), SL_MSG_RECORD);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_REJECTED), SL_MSG_REJECTION);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_RUNS), SL_MSG_RUN_EVENT);
    assert_int_equal(sl_codec_topic_kind("sluice.records.valid"), SL_MSG_RECORD);
    assert_int_equal(sl_codec_topic_kind("prod-runs"), SL_MSG_RUN_EVENT);
    assert_int_equal(sl_codec_topic_kind(SL_TOPIC_DEAD), 0);
    assert_int_equal(sl_codec_topic_kind("records"), 0);
    assert_int_equal(sl_codec_topic_kind("xruns"), 0);
    assert_int_equal(sl_codec_topic_kind("records.raw.x"), 0);
    assert_int_equal(sl_codec_topic_kind(""), 0);
    assert_int_equal(sl_codec_topic_kind(NULL), 0);
}

/* ---- interoperability with protoc ---- */

static bool have_protoc(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dirs = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char p[4096];
        snprintf(p, sizeof(p), "%s/protoc", d);
        found = access(p, X_OK) == 0;
    }
    free(dirs);
    return found;
}

/* The repository root: SLUICE_FIXTURES is <repo>/tests/fixtures. */
static char *repo_root(void)
{
    char *root = strdup(SLUICE_FIXTURES);
    char *cut = strstr(root, "/tests/fixtures");
    assert_non_null(cut);
    *cut = '\0';
    return root;
}

static void test_protoc_decodes_record(void **state)
{
    if (!have_protoc()) {
        fprintf(stderr, "[  SKIPPED ] protoc not found on PATH: cannot check that protoc reads "
                        "our encoding (apt-get install protobuf-compiler)\n");
        skip();
    }
    struct sl_msg *m = sample_record(SL_MSG_RECORD);
    struct sl_buf b = SL_BUF_INIT;
    assert_int_equal(sl_codec_encode(m, &b), 0);

    char tmp[] = "/tmp/sluice-codec-XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    close(fd);

    char *root = repo_root();
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "protoc --decode=sluice.Record -I '%s/proto' '%s/proto/sluice.proto' < '%s' 2>&1",
             root, root, tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    struct sl_buf out = SL_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        assert_int_equal(sl_buf_append(&out, chunk, n), 0);
    int status = pclose(p);
    unlink(tmp);
    if (status != 0)
        fail_msg("protoc failed (%d): %s", status, out.data ? out.data : "");

    static const char *want[] = {
        "run_id: \"" RUN "\"",
        "job_id: \"store-locations\"",
        "job_version: 2",
        "row: 41",
        "name: \"Filiale\"",
        "value: \"0042\"",
        "name: \"Eroeffnung\"",
        "missing: true",
        "attributes {",
        "name: \"store_id\"",
        "attribute: \"opened_on\"",
        "code: \"required\"",
        "message: \"a value is required\"",
        "code: \"duplicate_key\"",
        "has_value: true",
        "key: \"0042\\037DE\"",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(out.data, want[i]))
            fail_msg("protoc output lacks %s:\n%s", want[i], out.data);

    sl_buf_cleanup(&out);
    sl_buf_cleanup(&b);
    free(root);
    sl_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ticket),     cmocka_unit_test(test_file),
        cmocka_unit_test(test_record),     cmocka_unit_test(test_rejection),
        cmocka_unit_test(test_run_event),  cmocka_unit_test(test_encode_appends),
        cmocka_unit_test(test_garbage),    cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_topic_kind), cmocka_unit_test(test_protoc_decodes_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
