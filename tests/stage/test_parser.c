/*
 * Stage test of the parser: a fetched file in on files, one record per
 * source row out on records.raw, then a SEALED run event with the count,
 * the header and the delimiter (stage_harness.h).
 *
 * Covers row numbers and values (quoted fields with delimiters and line
 * breaks), delimiter detection, a ragged row carried with its problem, the
 * format of a file without `format` (name, then content type, then first
 * bytes), and files that cannot be read at all: FAILED with a reason, never
 * a seal.
 */
#include "stage_harness.h"

static const char job_json[] = "{\"name\":\"parsejob\",\"source\":{\"url\":\"in.csv\"},"
                               "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
                               "\"id\":{\"type\":\"text\"},\"name\":{\"type\":\"text\"}}},"
                               "\"mapping\":{\"id\":\"id\"}}";

/* The same job mapping name too, from "Name" in a template. */
static const char job_name_json[] =
    "{\"name\":\"parsejob\",\"source\":{\"url\":\"in.csv\"},"
    "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
    "\"id\":{\"type\":\"text\"},\"name\":{\"type\":\"text\"}}},"
    "\"mapping\":{\"id\":\"id\",\"name\":\"{{ Name | trim }}\"}}";

static struct sh *start_job(void **state, const char *json)
{
    static const char *const topics[] = {SL_TOPIC_RAW, SL_TOPIC_RUNS, NULL};
    struct sh *h = *state;
    sh_start(h, &sl_stage_parser, json, topics);
    return h;
}

static struct sh *start(void **state)
{
    return start_job(state, job_json);
}

/* Announces the file at path (the fetcher's output). */
static void send_file(struct sh *h, const char *path, const char *name)
{
    struct sl_msg *f = sh_msg(h, SL_MSG_FILE);
    f->u.file.blob = sl_arena_strdup(&f->arena, path);
    f->u.file.file_name = sl_arena_strdup(&f->arena, name);
    char sha[65];
    uint64_t bytes = 0;
    if (sl_sha256_file(path, sha, &bytes) == 0) {
        memcpy(f->u.file.sha256, sha, 65);
        f->u.file.bytes = bytes;
    }
    sh_send(h, SL_TOPIC_FILES, f);
}

/* Announces the file at path under name with the content type ct (what
 * the fetcher says of a remote source). */
static void send_typed(struct sh *h, const char *path, const char *name, const char *ct)
{
    struct sl_msg *f = sh_msg(h, SL_MSG_FILE);
    f->u.file.blob = sl_arena_strdup(&f->arena, path);
    f->u.file.file_name = sl_arena_strdup(&f->arena, name);
    f->u.file.content_type = ct ? sl_arena_strdup(&f->arena, ct) : NULL;
    assert_int_equal(sl_sha256_file(path, f->u.file.sha256, &f->u.file.bytes), 0);
    sh_send(h, SL_TOPIC_FILES, f);
}

static void expect_src(const struct sl_msg *m, uint32_t i, const char *name, const char *value)
{
    assert_true(i < m->u.rec.nsrc);
    assert_string_equal(m->u.rec.src[i].name, name);
    if (value)
        assert_string_equal(m->u.rec.src[i].value, value);
    else
        assert_null(m->u.rec.src[i].value);
}

static void test_rows_then_seal(void **state)
{
    struct sh *h = start(state);
    static const char csv[] = "id,name,note\r\n"
                              "1,Ann,plain\r\n"
                              "2,\"Bob, Jr.\",\"two\r\nlines\"\r\n"
                              "3,\"say \"\"hi\"\"\",\r\n";
    char *path = sh_write(h->dir, "in.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "in.csv");
    free(path);

    struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
    assert_int_equal(m->kind, SL_MSG_RECORD);
    assert_string_equal(m->run_id, SH_RUN_ID);
    assert_string_equal(m->job_id, h->job->id);
    assert_int_equal(m->u.rec.row, 1);
    assert_int_equal(m->u.rec.nsrc, 3);
    expect_src(m, 0, "id", "1");
    expect_src(m, 1, "name", "Ann");
    expect_src(m, 2, "note", "plain");
    assert_int_equal(m->u.rec.nprob, 0);
    assert_int_equal(m->u.rec.nattr, 0);

    m = sh_next(h, SL_TOPIC_RAW);
    assert_int_equal(m->u.rec.row, 2);
    expect_src(m, 1, "name", "Bob, Jr.");
    expect_src(m, 2, "note", "two\r\nlines");

    m = sh_next(h, SL_TOPIC_RAW);
    assert_int_equal(m->u.rec.row, 3);
    expect_src(m, 1, "name", "say \"hi\"");
    expect_src(m, 2, "note", "");

    m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_string_equal(m->u.ev.stage, "parser");
    assert_int_equal(m->u.ev.record_count, 3);
    assert_int_equal(m->u.ev.counts.read, 3);
    assert_int_equal(m->u.ev.ncolumns, 3);
    assert_string_equal(m->u.ev.columns[0], "id");
    assert_string_equal(m->u.ev.columns[1], "name");
    assert_string_equal(m->u.ev.columns[2], "note");
    assert_int_equal(m->u.ev.delimiter, ',');
    sh_expect_none(h, 0, 0);
}

static void test_detects_the_delimiter(void **state)
{
    struct sh *h = start(state);
    static const char csv[] = "id;name\n1;A,B\n2;C\n";
    char *path = sh_write(h->dir, "semi.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "semi.csv");
    free(path);
    for (uint64_t row = 1; row <= 2; row++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
        assert_int_equal(m->u.rec.row, row);
        assert_int_equal(m->u.rec.nsrc, 2);
        expect_src(m, 1, "name", row == 1 ? "A,B" : "C");
    }
    struct sl_msg *m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.record_count, 2);
    assert_int_equal(m->u.ev.delimiter, ';');
}

static void test_bom_names_the_encoding(void **state)
{
    /* the job says nothing (UTF-8); the file is UTF-16 LE with a BOM */
    struct sh *h = start(state);
    static const char csv[] = "\xff\xfei\0d\0,\0n\0a\0m\0e\0\n\0"
                              "1\0,\0\xc4\0\n\0";
    char *path = sh_write(h->dir, "u16.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "u16.csv");
    free(path);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
    expect_src(m, 0, "id", "1");
    expect_src(m, 1, "name", "\xc3\x84");
    m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.record_count, 1);
    assert_int_equal(m->u.ev.delimiter, ',');
    /* the ledger writes errors.csv back in this encoding */
    assert_int_equal(m->u.ev.encoding, SL_ENC_UTF16);
}

static void test_header_only_seals_zero(void **state)
{
    struct sh *h = start(state);
    static const char csv[] = "id,name\n";
    char *path = sh_write(h->dir, "hdr.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "hdr.csv");
    free(path);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.record_count, 0);
    assert_int_equal(m->u.ev.ncolumns, 2);
}

static void test_ragged_row_carries_its_problem(void **state)
{
    struct sh *h = start(state);
    static const char csv[] = "id,name\n1,a\n2\n3,c,extra\n4,d\n";
    char *path = sh_write(h->dir, "ragged.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "ragged.csv");
    free(path);
    for (uint64_t row = 1; row <= 4; row++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
        assert_int_equal(m->u.rec.row, row);
        if (row == 2 || row == 3) {
            assert_int_equal(m->u.rec.nprob, 1);
            assert_string_equal(m->u.rec.prob[0].attribute, "_row");
            assert_string_equal(m->u.rec.prob[0].code, "format");
            assert_non_null(strstr(m->u.rec.prob[0].message, "fields"));
        } else {
            assert_int_equal(m->u.rec.nprob, 0);
        }
        if (row == 2)
            expect_src(m, 1, "name", NULL); /* a short row's absent cell is missing */
    }
    struct sl_msg *m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.record_count, 4);
}

/* The records of one file, up to its seal: their ids (the "id" field),
 * comma-joined, into ids; -1 when the file failed. */
static long read_ids(struct sh *h, char *ids, size_t n)
{
    ids[0] = '\0';
    for (;;) {
        struct sl_msg *m = sh_next(h, NULL);
        if (m->kind == SL_MSG_RECORD) {
            for (uint32_t i = 0; i < m->u.rec.nsrc; i++)
                if (!strcmp(m->u.rec.src[i].name, "id")) {
                    size_t l = strlen(ids);
                    snprintf(ids + l, n - l, "%s%s", l ? "," : "", m->u.rec.src[i].value);
                }
        } else if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_SEALED) {
            return (long)m->u.ev.record_count;
        } else if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_FAILED) {
            snprintf(ids, n, "%s", m->u.ev.reason ? m->u.ev.reason : "");
            return -1;
        }
    }
}

static void test_format_from_content_type(void **state)
{
    /* format absent: the file name first, then the content type (parameters
     * and case ignored), then the first bytes; each file here would read
     * otherwise by its first bytes */
    static const char ndjson[] = "{\"id\":\"1\"}\n{\"id\":\"2\"}\n";
    static const char csv[] = "<id>,id\nx,3\ny,4\n";
    static const struct {
        const char *name, *type, *data, *ids;
    } cases[] = {
        /* NDJSON, which the first bytes call JSON */
        {"export", "application/x-ndjson; charset=UTF-8", ndjson, "1,2"},
        {"export", "application/jsonl", ndjson, "1,2"},
        {"export", "Application/X-JSONLines", ndjson, "1,2"},
        /* CSV that starts like XML */
        {"export", "TEXT/CSV; charset=utf-8; header=present", csv, "3,4"},
        {"export", "application/csv", csv, "3,4"},
        {"export", "text/tab-separated-values", "<id>\tid\nx\t5\n", "5"},
        /* JSON and XML after more blank space than the first bytes show */
        {"export", "application/json", NULL, "6"},
        {"export", "text/json", NULL, "6"},
        {"export", "application/vnd.api+json", NULL, "6"},
        {"export", "application/xml", NULL, "7"},
        {"export", "text/xml; charset=\"utf-8\"", NULL, "7"},
        {"export", "application/atom+xml", NULL, "7"},
        /* a type that says nothing: the first bytes */
        {"export", "text/plain", "[{\"id\":\"8\"}]", "8"},
        {"export", "application/octet-stream", "<r><x><id>9</id></x></r>", "9"},
        {"export", NULL, ndjson, NULL}, /* JSON by its first bytes: not one document */
        /* the name comes first */
        {"export.csv", "application/json", csv, "3,4"},
    };
    struct sh *h = start(state);
    char json[1024], xml[1024];
    memset(json, ' ', 600);
    snprintf(json + 600, sizeof(json) - 600, "[{\"id\":\"6\"}]");
    memset(xml, '\n', 600);
    snprintf(xml + 600, sizeof(xml) - 600, "<r><x><id>7</id></x></r>");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *data = cases[i].data ? cases[i].data : cases[i].ids[0] == '6' ? json : xml;
        char *path = sh_write(h->dir, "blob", data, strlen(data));
        send_typed(h, path, cases[i].name, cases[i].type);
        free(path);
        char ids[512];
        long n = read_ids(h, ids, sizeof(ids));
        if (!cases[i].ids) {
            if (n >= 0 && !strcmp(ids, "1,2"))
                fail_msg("%s without a type: read as NDJSON", cases[i].name);
            continue;
        }
        if (n < 0 || strcmp(ids, cases[i].ids))
            fail_msg("%s as %s: expected ids %s, got %s (%ld rows)", cases[i].name, cases[i].type,
                     cases[i].ids, ids, n);
    }
}

static void expect_failed(struct sh *h, const char *needle)
{
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    assert_int_equal(m->kind, SL_MSG_RUN_EVENT);
    if (m->u.ev.kind != SL_EV_FAILED)
        fail_msg("expected FAILED, got %s", sl_run_event_kind_str(m->u.ev.kind));
    assert_string_equal(m->run_id, SH_RUN_ID);
    assert_non_null(m->u.ev.reason);
    if (!strstr(m->u.ev.reason, needle))
        fail_msg("reason '%s' does not mention '%s'", m->u.ev.reason, needle);
    /* no records, no seal */
    sh_expect_none(h, 0, 0);
}

static void test_missing_blob_fails(void **state)
{
    struct sh *h = start(state);
    char *path = sl_path_join(h->dir, "gone.csv");
    send_file(h, path, "gone.csv");
    expect_failed(h, path);
    free(path);
}

static void test_directory_fails(void **state)
{
    struct sh *h = start(state);
    send_file(h, h->dir, "in.csv");
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    assert_int_equal(m->u.ev.kind, SL_EV_FAILED);
    assert_non_null(m->u.ev.reason);
}

static void test_empty_file_fails(void **state)
{
    struct sh *h = start(state);
    char *path = sh_write(h->dir, "empty.csv", "", 0);
    send_file(h, path, "empty.csv");
    free(path);
    expect_failed(h, "empty");
}

static void test_bad_encoding_is_a_row_problem(void **state)
{
    /* invalid UTF-8 in one cell: that row carries the problem (it will be
     * rejected with the reason), the others go on, the file is sealed */
    struct sh *h = start(state);
    static const char csv[] = "id,name\n1,ok\n2,bad\xff\n3,ok\n";
    char *path = sh_write(h->dir, "bad.csv", csv, sizeof(csv) - 1);
    send_file(h, path, "bad.csv");
    free(path);
    bool saw_problem = false, failed = false;
    for (;;) {
        struct sl_msg *m = sh_next(h, NULL);
        if (m->kind == SL_MSG_RECORD) {
            if (m->u.rec.row == 2) {
                assert_int_equal(m->u.rec.nprob, 1);
                assert_string_equal(m->u.rec.prob[0].code, "format");
                saw_problem = true;
            } else {
                assert_int_equal(m->u.rec.nprob, 0);
            }
        } else if (m->kind == SL_MSG_RUN_EVENT &&
                   (m->u.ev.kind == SL_EV_SEALED || m->u.ev.kind == SL_EV_FAILED)) {
            failed = m->u.ev.kind == SL_EV_FAILED;
            if (failed)
                assert_non_null(m->u.ev.reason);
            break;
        }
    }
    assert_true(saw_problem);
    assert_false(failed);
}

static void test_two_files_two_runs(void **state)
{
    struct sh *h = start(state);
    char *p1 = sh_write(h->dir, "a.csv", "id\nx\n", 5);
    char *p2 = sh_write(h->dir, "b.csv", "id\ny\nz\n", 7);
    send_file(h, p1, "a.csv");
    struct sl_msg *f = sl_msg_new(SL_MSG_FILE, "run-2", h->job->id, 0);
    assert_non_null(f);
    f->u.file.blob = sl_arena_strdup(&f->arena, p2);
    f->u.file.file_name = "b.csv";
    sh_send(h, SL_TOPIC_FILES, f);
    free(p1);
    free(p2);
    uint64_t sealed[2] = {99, 99};
    while (sealed[0] == 99 || sealed[1] == 99) {
        struct sl_msg *m = sh_next(h, NULL);
        if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_SEALED)
            sealed[strcmp(m->run_id, SH_RUN_ID) == 0 ? 0 : 1] = m->u.ev.record_count;
    }
    assert_int_equal(sealed[0], 1);
    assert_int_equal(sealed[1], 2);
}

/* Schema drift: the columns the mapping does not read are listed in the
 * seal, in the file's order. */
static void test_seal_lists_unmapped_columns(void **state)
{
    struct sh *h = start_job(state, job_name_json);
    char *path = sh_write(h->dir, "in.csv", "note,ID,name,x\na,1,Ann,b\n", 24);
    send_file(h, path, "in.csv");
    free(path);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
    assert_int_equal(m->u.rec.row, 1);
    m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.nunmapped, 2); /* id and Name match case-insensitively */
    assert_string_equal(m->u.ev.unmapped[0], "note");
    assert_string_equal(m->u.ev.unmapped[1], "x");
    assert_int_equal(m->u.ev.ncolumns, 4);
}

/* A column the mapping reads that the header lacks fails the run before a
 * single row is sent, naming the column, the attribute and the columns. */
static void test_missing_column_fails_the_run(void **state)
{
    struct sh *h = start_job(state, job_name_json);
    char *path = sh_write(h->dir, "in.csv", "id,Nom\n1,Ann\n2,Bob\n", 19);
    send_file(h, path, "in.csv");
    free(path);
    struct sl_msg *m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_FAILED);
    assert_string_equal(m->u.ev.reason, "in.csv: the file has no column 'Name' (mapping.name); "
                                        "its columns: id, Nom");
    sh_expect_none(h, SL_MSG_RECORD, 0);
}

/* JSON records name their own fields: a record with other names than the
 * one before keeps its own (the reader hands every record over in the same
 * array), and every name met is noted. */
static void test_json_records_keep_their_names(void **state)
{
    struct sh *h = start_job(state, job_name_json);
    static const char nd[] = "{\"id\":\"1\",\"Name\":\"a\"}\n{\"id\":\"2\",\"Nm\":\"b\"}\n"
                             "{\"id\":\"3\",\"Name\":\"c\",\"z\":null}\n";
    char *path = sh_write(h->dir, "in.ndjson", nd, sizeof(nd) - 1);
    send_file(h, path, "in.ndjson");
    free(path);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RAW);
    expect_src(m, 1, "Name", "a");
    m = sh_next(h, SL_TOPIC_RAW);
    expect_src(m, 1, "Nm", "b");
    m = sh_next(h, SL_TOPIC_RAW);
    expect_src(m, 1, "Name", "c");
    expect_src(m, 2, "z", NULL);
    m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.nunmapped, 2);
    assert_string_equal(m->u.ev.unmapped[0], "Nm");
    assert_string_equal(m->u.ev.unmapped[1], "z");
}

/* A field the mapping reads that no JSON record has fails the run at the
 * end (records carry no header); an empty array has nothing to miss. */
static void test_json_missing_field_fails_the_run(void **state)
{
    struct sh *h = start_job(state, job_name_json);
    static const char js[] = "[{\"id\":\"1\",\"nom\":\"a\"},{\"id\":\"2\"}]";
    char *path = sh_write(h->dir, "in.json", js, sizeof(js) - 1);
    send_file(h, path, "in.json");
    free(path);
    struct sl_msg *m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_FAILED);
    assert_string_equal(m->u.ev.reason, "in.json: the file has no column 'Name' (mapping.name)");
    path = sh_write(h->dir, "empty.json", "[]", 2);
    send_file(h, path, "empty.json");
    free(path);
    m = sh_next_event(h);
    assert_int_equal(m->u.ev.kind, SL_EV_SEALED);
    assert_int_equal(m->u.ev.record_count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_rows_then_seal),
        SH_TEST(test_detects_the_delimiter),
        SH_TEST(test_bom_names_the_encoding),
        SH_TEST(test_header_only_seals_zero),
        SH_TEST(test_ragged_row_carries_its_problem),
        SH_TEST(test_format_from_content_type),
        SH_TEST(test_missing_blob_fails),
        SH_TEST(test_directory_fails),
        SH_TEST(test_empty_file_fails),
        SH_TEST(test_bad_encoding_is_a_row_problem),
        SH_TEST(test_two_files_two_runs),
        SH_TEST(test_seal_lists_unmapped_columns),
        SH_TEST(test_missing_column_fails_the_run),
        SH_TEST(test_json_records_keep_their_names),
        SH_TEST(test_json_missing_field_fails_the_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
