/*
 * Unit tests of the JSON and NDJSON reader (json_reader.c): finding the
 * records by path, flattening, exact values, escapes, bad rows, bad files,
 * limits, encodings, elements cut across read() blocks, and streaming a
 * 200 MB array with small memory. Most inputs are read twice, with the
 * default block size and one byte at a time, and must give the same rows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

/* Rows as text: "R1 a=x|b=(null) !error" per row. */
struct coll {
    struct sl_buf out;
    uint64_t stop_at; /* the row whose callback returns 7; 0 none */
};

static int c_row(void *ud, const struct sl_row *row)
{
    struct coll *c = ud;
    sl_buf_printf(&c->out, "R%llu ", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        if (i)
            sl_buf_putc(&c->out, '|');
        assert_non_null(row->names[i]);
        sl_buf_puts(&c->out, row->names[i]);
        sl_buf_putc(&c->out, '=');
        if (row->values[i]) {
            assert_int_equal(row->values[i][row->lens[i]], '\0');
            assert_true(sl_utf8_valid(row->values[i], row->lens[i]));
            if (!row->error)
                assert_int_equal(strlen(row->values[i]), row->lens[i]);
            for (size_t k = 0; k < row->lens[i]; k++) {
                if (row->values[i][k])
                    sl_buf_putc(&c->out, row->values[i][k]);
                else
                    sl_buf_puts(&c->out, "\\0");
            }
        } else {
            assert_int_equal(row->lens[i], 0);
            sl_buf_puts(&c->out, "(null)");
        }
    }
    if (row->error)
        sl_buf_printf(&c->out, " !%s", row->error);
    sl_buf_putc(&c->out, '\n');
    return row->row == c->stop_at ? 7 : 0;
}

static int memfd_with(const void *data, size_t len)
{
    int fd = memfd_create("json", 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Reads data with o at block size bs; the rows into *out (caller frees). */
static int read_once(const void *data, size_t len, const struct sl_json_opts *o, size_t bs,
                     char **out, char *err, size_t errsz)
{
    struct sl_json_opts oo = o ? *o : (struct sl_json_opts){0};
    oo.block_size = bs;
    int fd = memfd_with(data, len);
    struct coll c = {0};
    sl_buf_init(&c.out);
    sl_buf_puts(&c.out, "");
    struct sl_reader_stats st = {0};
    int rc = sl_json_read_fd(fd, &oo, c_row, &c, &st, err, errsz);
    close(fd);
    if (rc == 0)
        assert_int_equal(st.bytes, len);
    if (rc < 0)
        assert_true(err[0] != '\0');
    *out = sl_buf_steal(&c.out);
    return rc;
}

/* Reads data from memory (sl_json_read_mem); the rows into *out. */
static int read_mem(const void *data, size_t len, const struct sl_json_opts *o, char **out,
                    char *err, size_t errsz)
{
    struct coll c = {0};
    sl_buf_init(&c.out);
    sl_buf_puts(&c.out, "");
    struct sl_reader_stats st = {0};
    int rc = sl_json_read_mem(data, len, o, c_row, &c, &st, err, errsz);
    if (rc == 0)
        assert_int_equal(st.bytes, len);
    *out = sl_buf_steal(&c.out);
    return rc;
}

/* Reads data whole, one byte at a time and from memory: all must agree. */
static int run_len(const void *data, size_t len, const struct sl_json_opts *o, char **out,
                   char *err, size_t errsz)
{
    char *o1, *om, err1[256], errm[256];
    int rc = read_once(data, len, o, 0, out, err, errsz);
    int rc1 = read_once(data, len, o, 1, &o1, err1, sizeof(err1));
    int rcm = read_mem(data, len, o, &om, errm, sizeof(errm));
    assert_int_equal(rc, rc1);
    assert_int_equal(rc, rcm);
    if (rc != SL_ERR_LIMIT) {
        assert_string_equal(*out, o1);
        assert_string_equal(*out, om);
        if (rc < 0) {
            assert_string_equal(err, err1);
            assert_string_equal(err, errm);
        }
    }
    free(o1);
    free(om);
    return rc;
}

static int run(const char *json, const struct sl_json_opts *o, char **out, char *err, size_t errsz)
{
    return run_len(json, strlen(json), o, out, err, errsz);
}

static void expect_rows(const char *json, const char *records, const char *want)
{
    struct sl_json_opts o = {.records = records};
    char *out, err[256] = "";
    int rc = run(json, &o, &out, err, sizeof(err));
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    assert_string_equal(out, want);
    free(out);
}

static void expect_fail(const char *json, const struct sl_json_opts *o, int want_rc,
                        const char *want_err)
{
    char *out, err[256] = "";
    int rc = run(json, o, &out, err, sizeof(err));
    assert_int_equal(rc, want_rc);
    assert_string_equal(err, want_err);
    free(out);
}

static void test_top_array(void **state)
{
    (void)state;
    expect_rows(" [ {\"a\": 1, \"b\": \"x\"}, {\"b\": \"y\", \"c\": null} ] \n", NULL,
                "R1 a=1|b=x\nR2 b=y|c=(null)\n");
    expect_rows("[]", NULL, "");
    expect_rows("[{}]", NULL, "R1 \n");
}

static void test_single_object(void **state)
{
    (void)state;
    expect_rows("{\"id\": 7, \"name\": \"one\"}", NULL, "R1 id=7|name=one\n");
    expect_rows("\n{\"id\": 7}\n\n", "$", "R1 id=7\n");
}

static void test_path(void **state)
{
    (void)state;
    const char *doc = "{\"meta\": {\"items\": [{\"no\": 1}], \"x\": [[1, [2]], {\"data\": 3}]},"
                      " \"count\": 2, \"list\": [\"]\", \"[\", \"{\\\"\"],"
                      " \"data\": {\"skip\": {\"items\": [{\"no\": 2}]},"
                      "  \"items\": [{\"id\": 1, \"v\": \"a\"}, {\"id\": 2, \"v\": \"]}\"}],"
                      "  \"after\": [1, 2, {\"items\": []}]},"
                      " \"tail\": {\"data\": {\"items\": [{\"no\": 3}]}}}";
    expect_rows(doc, "$.data.items", "R1 id=1|v=a\nR2 id=2|v=]}\n");
    expect_rows(doc, "data.items", "R1 id=1|v=a\nR2 id=2|v=]}\n");
    expect_rows(doc, "$.meta.items", "R1 no=1\n");
    expect_rows("{\"d\\u0061ta\": [{\"a\": 1}]}", "$.data", "R1 a=1\n");
    expect_rows("{\"data\": {\"items\": []}}", "$.data.items", "");

    struct sl_json_opts o = {.records = "$.data.items"};
    expect_fail("{\"data\": {\"itemz\": []}}", &o, SL_ERR_PARSE, "no array at $.data.items");
    expect_fail("[{\"data\": {\"items\": []}}]", &o, SL_ERR_PARSE, "no array at $.data.items");
    expect_fail("{\"data\": {\"items\": {\"a\": 1}}}", &o, SL_ERR_PARSE,
                "no array at $.data.items (there is an object)");
    expect_fail("{\"data\": {\"items\": 5}}", &o, SL_ERR_PARSE,
                "no array at $.data.items (there is a number)");
    o.records = "$.data..items";
    expect_fail("{}", &o, SL_ERR_INVALID,
                "source.json.records: '$.data..items' is not a path like $.data.items (an "
                "empty name)");
}

static void test_flatten(void **state)
{
    (void)state;
    expect_rows("[{\"id\": 1, \"address\": {\"city\": \"Bonn\", \"geo\": {\"lat\": 50.7}},"
                " \"tags\": [\"a\", \"b\"], \"items\": [{\"sku\": \"x\"}, {\"sku\": \"y\", "
                "\"q\": [1, [2, 3]]}], \"e\": {}, \"f\": [], \"ok\": true, \"no\": false}]",
                NULL,
                "R1 id=1|address.city=Bonn|address.geo.lat=50.7|tags.0=a|tags.1=b|items.0.sku=x|"
                "items.1.sku=y|items.1.q.0=1|items.1.q.1.0=2|items.1.q.1.1=3|ok=true|no=false\n");
    /* a name seen twice keeps its first place and its last value */
    expect_rows("[{\"a\": 1, \"b\": 2, \"a\": 3, \"c.d\": 4, \"c\": {\"d\": 5}}]", NULL,
                "R1 a=3|b=2|c.d=5\n");
    /* many fields: the name table grows */
    struct sl_buf b;
    sl_buf_init(&b);
    struct sl_buf want;
    sl_buf_init(&want);
    sl_buf_puts(&b, "[{");
    sl_buf_puts(&want, "R1 ");
    for (int i = 0; i < 300; i++) {
        sl_buf_printf(&b, "%s\"f%d\": %d", i ? ", " : "", i, i);
        if (i == 7)
            sl_buf_puts(&want, "|f7=again");
        else
            sl_buf_printf(&want, "%sf%d=%d", i ? "|" : "", i, i);
    }
    sl_buf_printf(&b, ", \"f7\": \"again\"}, {\"f1\": 1}]");
    sl_buf_puts(&want, "\nR2 f1=1\n");
    char *out, err[256] = "";
    assert_int_equal(run(b.data, NULL, &out, err, sizeof(err)), 0);
    assert_string_equal(out, want.data);
    free(out);
    sl_buf_cleanup(&b);
    sl_buf_cleanup(&want);
}

static void test_exact_values(void **state)
{
    (void)state;
    expect_rows("[{\"a\": 1.50, \"b\": 1e3, \"c\": -0.0, \"d\": 12345678901234567890123, "
                "\"e\": 2.5E-10, \"f\": 0, \"g\": \"1.50\"}]",
                NULL, "R1 a=1.50|b=1e3|c=-0.0|d=12345678901234567890123|e=2.5E-10|f=0|g=1.50\n");
    /* a bare number record (a bad row) ending the file's array */
    expect_rows("[{\"a\": 1},\n 42 ]", NULL, "R1 a=1\nR2  !record 2 is not an object (a number)\n");
}

static void test_escapes(void **state)
{
    (void)state;
    expect_rows("[{\"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"u\": \"\\u00e9\\u20AC\","
                " \"p\": \"\\ud83d\\ude00\", \"raw\": \"\xc3\xa9\xf0\x9f\x98\x80\","
                " \"br\": \"[{]}\\\"\", \"k\\u00e9y\": 1}]",
                NULL,
                "R1 s=a\"b\\c/d\b\f\n\r\t|u=\xc3\xa9\xe2\x82\xac|p=\xf0\x9f\x98\x80|"
                "raw=\xc3\xa9\xf0\x9f\x98\x80|br=[{]}\"|k\xc3\xa9y=1\n");
    /* \u0000: the row, with an error */
    expect_rows("[{\"a\": \"x\\u0000y\"}]", NULL,
                "R1 a=x\\0y !record 1: a NUL character (\\u0000) in a string\n");
    expect_fail("[{\"a\": \"\\ud83d\"}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 8: a high surrogate in a \\u escape without its low one");
    expect_fail("[{\"a\": \"\\ude00\"}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 8: a lone low surrogate in a \\u escape");
    expect_fail("[{\"a\": \"\\x\"}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 8: an invalid escape in a string");
    expect_fail("[{\"a\": \"x\ny\"}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 9: a control character in a string (it must be escaped)");
}

static void test_bad_records(void **state)
{
    (void)state;
    expect_rows("[1, \"s\", [1], null, true, {\"a\": 1}]", NULL,
                "R1  !record 1 is not an object (a number)\n"
                "R2  !record 2 is not an object (a string)\n"
                "R3  !record 3 is not an object (an array)\n"
                "R4  !record 4 is not an object (null)\n"
                "R5  !record 5 is not an object (a boolean)\n"
                "R6 a=1\n");
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_fail("", NULL, SL_ERR_PARSE, "the file is empty (no JSON value)");
    expect_fail("  \n", NULL, SL_ERR_PARSE, "the file is empty (no JSON value)");
    expect_fail("[{\"a\": 1}, {\"b\": ", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 17: unexpected end of the file inside a record (is the "
                "file cut off?)");
    expect_fail("[{\"a\": 1}, ", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 11: unexpected end of the file (is the file cut off?)");
    expect_fail("[{\"a\": 1} {\"b\": 2}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 10: unexpected '{'");
    expect_fail("[{\"a\": 1}] x", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 11: unexpected text after the JSON value: 'x'");
    expect_fail("[{\"a\" 1}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 6: expected ':' after a name");
    expect_fail("[{\"a\": 01}]", NULL, SL_ERR_PARSE, "invalid JSON at byte 8: an invalid number");
    expect_fail("[{\"a\": tru}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 7: an invalid literal (true, false or null expected)");
    expect_fail("[{\"a\": [1}]", NULL, SL_ERR_PARSE,
                "invalid JSON at byte 9: expected ',' or ']' after a value in an array");
    expect_fail("42", NULL, SL_ERR_PARSE,
                "the top-level JSON value is a number, not an array of records or an object");
    expect_fail("<html>502</html>", NULL, SL_ERR_PARSE,
                "not JSON: the file starts with byte 0x3c ('<'), not a JSON value");
    struct sl_json_opts o = {.records = "$.a"};
    expect_fail("{\"x\": [1, 2,], \"a\": []}", &o, SL_ERR_PARSE,
                "invalid JSON at byte 12: unexpected ']'");
    expect_fail("{\"x\": tru, \"a\": []}", &o, SL_ERR_PARSE,
                "invalid JSON at byte 6: an invalid literal (true, false or null expected)");
    expect_fail("{\"x\": \"ab", &o, SL_ERR_PARSE,
                "invalid JSON at byte 9: unexpected end of the file inside a string");
    expect_fail("{x: 1}", &o, SL_ERR_PARSE,
                "invalid JSON at byte 1: expected a name in quotes, found 'x'");
    /* text invalid in its encoding fails the file, after what comes before it */
    expect_fail("[{\"a\": \"\xff\"}]", NULL, SL_ERR_PARSE, "invalid UTF-8 at byte offset 8 (0xff)");
    o = (struct sl_json_opts){.max_depth = 2};
    expect_fail("[{\"a\": [[1]]}, \"\xff\"]", &o, SL_ERR_LIMIT,
                "record 1 is nested deeper than 2 levels (max_depth)");
    o = (struct sl_json_opts){.ndjson = true};
    char *out, err[256] = "";
    /* NDJSON: that line is a bad row */
    assert_int_equal(run("{\"a\": 1}\n{\"a\": \"\xc3\"}\n{\"a\": \"\xe9\xff\"}\n\xff", &o, &out,
                         err, sizeof(err)),
                     0);
    assert_string_equal(out, "R1 a=1\n"
                             "R2  !line 2: invalid UTF-8 at byte offset 16 (0xc3)\n"
                             "R3  !line 3: invalid UTF-8 at byte offset 27 (0xe9)\n"
                             "R4  !line 4: invalid UTF-8 at byte offset 32 (0xff)\n");
    free(out);
}

static void test_ndjson(void **state)
{
    (void)state;
    struct sl_json_opts o = {.ndjson = true};
    char *out, err[256] = "";
    const char *in = "{\"a\": 1, \"b\": {\"c\": [true]}}\n"
                     "\n"
                     "  \r\n"
                     "{\"a\": 2.50}\r\n"
                     "{\"a\": 3\n"
                     "[1, 2]\n"
                     "{\"a\": 4} {\"a\": 5}\n"
                     "{\"a\": \"x\\u0000\"}\n"
                     "{\"a\": 6}";
    assert_int_equal(run(in, &o, &out, err, sizeof(err)), 0);
    assert_string_equal(out, "R1 a=1|b.c.0=true\n"
                             "R2 a=2.50\n"
                             "R3  !line 5: invalid JSON: expected ',' or '}' after a value in an "
                             "object (column 8)\n"
                             "R4  !line 6: not an object (an array)\n"
                             "R5  !line 7: invalid JSON: unexpected text after the value (column "
                             "10)\n"
                             "R6 a=x\\0 !line 8: a NUL character (\\u0000) in a string\n"
                             "R7 a=6\n");
    free(out);
    assert_int_equal(run("", &o, &out, err, sizeof(err)), 0);
    assert_string_equal(out, "");
    free(out);
    o.max_value = 10;
    expect_fail("{\"a\": 1}\n{\"a\": 12345}\n", &o, SL_ERR_LIMIT,
                "line 2 is longer than 10 bytes (max_value)");
    o.max_value = 0;
    o.max_depth = 2;
    expect_fail("{\"a\": {\"b\": 1}}\n{\"a\": {\"b\": [1]}}\n", &o, SL_ERR_LIMIT,
                "line 2 is nested deeper than 2 levels (max_depth)");
}

static void test_limits(void **state)
{
    (void)state;
    struct sl_json_opts o = {.max_depth = 3};
    expect_rows("[{\"a\": {\"b\": [1]}}]", NULL, "R1 a.b.0=1\n");
    expect_fail("[{\"a\": 1}, {\"a\": {\"b\": [[1]]}}]", &o, SL_ERR_LIMIT,
                "record 2 is nested deeper than 3 levels (max_depth)");
    o = (struct sl_json_opts){.max_value = 16};
    char *out, err[256] = "";
    assert_int_equal(run("[{\"a\": \"123456\"}]", &o, &out, err, sizeof(err)), 0);
    free(out);
    expect_fail("[{\"a\": 1}, {\"a\": \"12345678\"}]", &o, SL_ERR_LIMIT,
                "record 2 is larger than 16 bytes (max_value)");
    o = (struct sl_json_opts){.max_fields = 2};
    expect_fail("[{\"a\": 1, \"b\": 2}, {\"a\": [1, 2, 3]}]", &o, SL_ERR_LIMIT,
                "record 2 has more than 2 fields (max_fields)");
    /* deep nesting outside the records is bounded too */
    o = (struct sl_json_opts){.records = "$.a", .max_depth = 4};
    expect_fail("{\"x\": [[[[[[[1]]]]]]], \"a\": []}", &o, SL_ERR_LIMIT,
                "the JSON at byte 11 is nested deeper than 6 levels outside the records "
                "(max_depth)");
    o = (struct sl_json_opts){.records = "$.a", .max_value = 8};
    expect_fail("{\"x\": 1234567890, \"a\": []}", &o, SL_ERR_LIMIT,
                "a value at byte 14 is longer than 8 bytes (max_value)");
}

static void test_utf16(void **state)
{
    (void)state;
    const char *json = "[{\"name\": \"Caf\xc3\xa9\", \"n\": 1.0}]";
    for (int be = 0; be < 2; be++) {
        /* UTF-8 to UTF-16 by hand (BMP only), BOM first */
        char buf[256];
        size_t n = 0;
        buf[n++] = be ? (char)0xfe : (char)0xff;
        buf[n++] = be ? (char)0xff : (char)0xfe;
        for (const unsigned char *p = (const unsigned char *)json; *p;) {
            unsigned cp = *p++;
            if (cp >= 0xc0) {
                cp = ((cp & 0x1f) << 6) | (*p++ & 0x3f);
            }
            buf[n++] = (char)(be ? cp >> 8 : cp & 0xff);
            buf[n++] = (char)(be ? cp & 0xff : cp >> 8);
        }
        char *out, err[256] = "";
        struct sl_reader_stats st = {0};
        int fd = memfd_with(buf, n);
        struct coll c = {0};
        sl_buf_init(&c.out);
        assert_int_equal(sl_json_read_fd(fd, NULL, c_row, &c, &st, err, sizeof(err)), 0);
        close(fd);
        assert_int_equal(st.encoding, SL_ENC_UTF16);
        assert_string_equal(c.out.data, "R1 name=Caf\xc3\xa9|n=1.0\n");
        sl_buf_cleanup(&c.out);
        assert_int_equal(run_len(buf, n, NULL, &out, err, sizeof(err)), 0);
        assert_string_equal(out, "R1 name=Caf\xc3\xa9|n=1.0\n");
        free(out);
    }
    /* UTF-8 BOM dropped */
    expect_rows("\xef\xbb\xbf[{\"a\": 1}]", NULL, "R1 a=1\n");
}

static void test_blocks(void **state)
{
    (void)state;
    /* every block size from 1 to 40 over a document with every kind of token */
    const char *doc = "{\"pre\": [\"a\\\"]\", {\"x\": -1.5e+3}], \"data\": {\"items\": "
                      "[{\"s\": \"\\ud83d\\ude00 \\\"}]\", \"n\": 12.50, \"t\": [true, null]},"
                      " 7, {\"o\": {\"p\": \"q\"}}]}, \"post\": false}";
    struct sl_json_opts o = {.records = "$.data.items"};
    const char *want = "R1 s=\xf0\x9f\x98\x80 \"}]|n=12.50|t.0=true|t.1=(null)\n"
                       "R2  !record 2 is not an object (a number)\n"
                       "R3 o.p=q\n";
    for (size_t bs = 1; bs <= 40; bs++) {
        char *out, err[256] = "";
        int rc = read_once(doc, strlen(doc), &o, bs, &out, err, sizeof(err));
        if (rc)
            fail_msg("block %zu: rc %d: %s", bs, rc, err);
        assert_string_equal(out, want);
        free(out);
    }
    /* a pipe: read() returns what the writer gave, in pieces, gathered into blocks */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        for (const char *s = doc; *s; s += 3) {
            size_t k = strlen(s) < 3 ? strlen(s) : 3;
            if (write(p[1], s, k) != (ssize_t)k)
                _exit(1);
            usleep(200);
            if (k < 3)
                break;
        }
        _exit(0);
    }
    close(p[1]);
    struct coll c = {0};
    sl_buf_init(&c.out);
    char err[256] = "";
    assert_int_equal(sl_json_read_fd(p[0], &o, c_row, &c, NULL, err, sizeof(err)), 0);
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_string_equal(c.out.data, want);
    sl_buf_cleanup(&c.out);
}

static void test_stop(void **state)
{
    (void)state;
    struct coll c = {.stop_at = 2};
    sl_buf_init(&c.out);
    const char *json = "[{\"a\": 1}, {\"a\": 2}, {\"a\": 3}]";
    int fd = memfd_with(json, strlen(json));
    char err[256] = "";
    struct sl_reader_stats st = {0};
    assert_int_equal(sl_json_read_fd(fd, NULL, c_row, &c, &st, err, sizeof(err)), 7);
    close(fd);
    assert_int_equal(st.rows, 2);
    assert_string_equal(c.out.data, "R1 a=1\nR2 a=2\n");
    sl_buf_cleanup(&c.out);
}

struct big {
    uint64_t rows;
    uint64_t sum;
    size_t peak_heap;
};

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* A "VmXXX:" figure of /proc/self/status in KiB; -1 when absent. */
static long vm_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, key, strlen(key)) == 0)
            v = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return v;
}

/* Resets VmHWM to the current RSS (Linux >= 4.0); false when not allowed. */
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static int big_row(void *ud, const struct sl_row *row)
{
    struct big *b = ud;
    assert_null(row->error);
    assert_int_equal(row->n, 6);
    assert_int_equal(row->row, b->rows + 1);
    b->rows++;
    b->sum += strtoull(row->values[0], NULL, 10);
    if (b->rows % 4096 == 0) {
        size_t h = heap_in_use();
        if (h > b->peak_heap)
            b->peak_heap = h;
    }
    return 0;
}

/* 200 MB in a pipe from a child: read element by element, memory stays small. */
static void test_big_stream(void **state)
{
    (void)state;
    const uint64_t target = 200ull << 20;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        FILE *f = fdopen(p[1], "w");
        uint64_t n = 0, bytes = 0;
        bytes += (uint64_t)fprintf(f, "{\"meta\": {\"v\": 1}, \"data\": {\"items\": [");
        while (bytes < target) {
            bytes +=
                (uint64_t)fprintf(f,
                                  "%s{\"id\": %llu, \"name\": \"item %llu \\\"x\\\" ]\", "
                                  "\"price\": 12.50, \"tags\": [\"a\", \"b\"], \"ok\": true}",
                                  n ? ",\n" : "", (unsigned long long)n, (unsigned long long)n);
            n++;
        }
        fprintf(f, "]}, \"n\": %llu}", (unsigned long long)n);
        _exit(fclose(f) == 0 ? 0 : 1);
    }
    close(p[1]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long before = ru.ru_maxrss;
    bool hwm = reset_peak_rss() && vm_kib("VmHWM:") >= 0;
    if (hwm)
        before = vm_kib("VmRSS:");
    size_t heap0 = heap_in_use();
    struct big b = {0};
    struct sl_reader_stats st = {0};
    struct sl_json_opts o = {.records = "$.data.items"};
    char err[256] = "";
    int rc = sl_json_read_fd(p[0], &o, big_row, &b, &st, err, sizeof(err));
    close(p[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    getrusage(RUSAGE_SELF, &ru);
    long grown = (hwm ? vm_kib("VmHWM:") : ru.ru_maxrss) - before; /* KiB */
    size_t heap = b.peak_heap > heap0 ? b.peak_heap - heap0 : 0;
    print_message("big: %llu rows, %llu bytes, peak RSS grew by %ld KiB (%s), heap by %zu KiB\n",
                  (unsigned long long)b.rows, (unsigned long long)st.bytes, grown,
                  hwm ? "VmHWM" : "ru_maxrss", heap / 1024);
    assert_true(heap < 2 << 20);
    assert_true(st.bytes >= target);
    assert_int_equal(st.rows, b.rows);
    assert_int_equal(b.sum, b.rows * (b.rows - 1) / 2);
    assert_true(grown < 8 * 1024);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_array),    cmocka_unit_test(test_single_object),
        cmocka_unit_test(test_path),         cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_exact_values), cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_bad_records),  cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_ndjson),       cmocka_unit_test(test_limits),
        cmocka_unit_test(test_utf16),        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_stop),         cmocka_unit_test(test_big_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
