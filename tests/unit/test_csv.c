/*
 * Unit tests of the CSV reader (csv_reader.c): the csv-spectrum cases,
 * encodings, delimiter detection, header names, ragged rows, limits, bad
 * files and streaming. Every input is read twice, through the fast line path
 * and through libcsv alone, and both must give the same rows.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

/* Rows as text: "H a|b|c" for the header, "R1 x|y|(null) !error" per row. */
struct coll {
    struct sl_buf out;
    int hdr_calls;
    size_t ncols;
    uint64_t stop_at; /* the row whose callback returns 7; 0 none */
    size_t peak_heap; /* largest heap in use seen in a callback */
};

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int c_hdr(void *ud, const char *const *names, size_t n)
{
    struct coll *c = ud;
    c->hdr_calls++;
    c->ncols = n;
    sl_buf_puts(&c->out, "H ");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sl_buf_putc(&c->out, '|');
        sl_buf_puts(&c->out, names[i]);
    }
    sl_buf_putc(&c->out, '\n');
    return 0;
}

static int c_row(void *ud, const struct sl_row *row)
{
    struct coll *c = ud;
    assert_int_equal(row->n, c->ncols);
    sl_buf_printf(&c->out, "R%llu ", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        if (i)
            sl_buf_putc(&c->out, '|');
        if (row->values[i]) {
            if (!row->error)
                assert_int_equal(strlen(row->values[i]), row->lens[i]);
            assert_true(sl_utf8_valid(row->values[i], row->lens[i]));
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
    size_t h = heap_in_use();
    if (h > c->peak_heap)
        c->peak_heap = h;
    return row->row == c->stop_at ? 7 : 0;
}

static int mem_fd(const void *data, size_t len)
{
    int fd = memfd_create("csv", 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Reads data with o (NULL: defaults) both ways; *out gets the rows (caller
 * frees), err the message. Returns the reader's result. */
static int run_opts(const void *data, size_t len, const struct sl_csv_opts *o, char **out,
                    char *err, size_t errsz)
{
    struct sl_csv_opts oo = o ? *o : (struct sl_csv_opts){.header = true};
    char *res[2];
    int rc[2];
    char errs[2][512];
    for (int slow = 0; slow < 2; slow++) {
        oo.no_fast_path = slow;
        struct coll c = {.out = SL_BUF_INIT};
        sl_buf_puts(&c.out, "");
        int fd = mem_fd(data, len);
        struct sl_reader_stats st = {0};
        rc[slow] = sl_csv_read_fd(fd, &oo, c_hdr, c_row, &c, &st, errs[slow], sizeof(errs[slow]));
        close(fd);
        assert_true(c.hdr_calls <= 1);
        if (rc[slow] == 0)
            assert_int_equal(st.bytes, len);
        res[slow] = sl_buf_steal(&c.out);
    }
    assert_int_equal(rc[0], rc[1]);
    assert_string_equal(res[0], res[1]);
    if (rc[0] < 0)
        assert_string_equal(errs[0], errs[1]);
    free(res[1]);
    *out = res[0];
    if (err)
        snprintf(err, errsz, "%s", rc[0] ? errs[0] : "");
    return rc[0];
}

/* Reads a string with default options and checks the rows. */
static void expect(const char *data, const char *want)
{
    char *got;
    char err[512];
    assert_int_equal(run_opts(data, strlen(data), NULL, &got, err, sizeof(err)), 0);
    assert_string_equal(got, want);
    free(got);
}

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/csv/%s", SLUICE_FIXTURES, name);
    char *data = sl_read_file(path, len);
    assert_non_null(data);
    return data;
}

static void expect_file(const char *name, const struct sl_csv_opts *o, const char *want)
{
    size_t len;
    char *data = slurp(name, &len);
    char *got;
    char err[512];
    int rc = run_opts(data, len, o, &got, err, sizeof(err));
    if (rc)
        fail_msg("%s: %d %s", name, rc, err);
    assert_string_equal(got, want);
    free(got);
    free(data);
}

static void test_spectrum(void **state)
{
    (void)state;
    expect_file("comma_in_quotes.csv", NULL,
                "H first|last|address|city|zip\nR1 John|Doe|120 any st.|Anytown, WW|08123\n");
    expect_file("escaped_quotes.csv", NULL, "H a|b\nR1 1|ha \"ha\" ha\nR2 3|4\n");
    expect_file("json.csv", NULL,
                "H key|val\nR1 1|{\"type\": \"Point\", \"coordinates\": [102.0, 0.5]}\n");
    expect_file("newlines.csv", NULL, "H a|b|c\nR1 1|2|3\nR2 Once upon \na time|5|6\nR3 7|8|9\n");
    expect_file("newlines_crlf.csv", NULL,
                "H a|b|c\nR1 1|2|3\nR2 Once upon \r\na time|5|6\nR3 7|8|9\n");
    expect_file("quotes_and_newlines.csv", NULL, "H a|b\nR1 1|ha \n\"ha\" \nha\nR2 3|4\n");
    expect_file("simple.csv", NULL, "H a|b|c\nR1 1|2|3\n");
    expect_file("simple_crlf.csv", NULL, "H a|b|c\nR1 1|2|3\n");
    expect_file("utf8.csv", NULL, "H a|b|c\nR1 1|2|3\nR2 4|5|\xca\xa4\n");
    expect_file("empty.csv", NULL, "H a|b|c\nR1 1||\nR2 2|3|4\n");
    expect_file("empty_crlf.csv", NULL, "H a|b|c\nR1 1||\nR2 2|3|4\n");
}

static void test_line_ends(void **state)
{
    (void)state;
    /* final line without newline, CR only, mixed, blank and blank-ish lines */
    expect("a,b\n1,2", "H a|b\nR1 1|2\n");
    expect("a,b\r1,2\r3,4", "H a|b\nR1 1|2\nR2 3|4\n");
    expect("a,b\r\n1,2\n3,4\r5,6\r\n", "H a|b\nR1 1|2\nR2 3|4\nR3 5|6\n");
    expect("\n\r\na,b\n\n1,2\n  \n\t\n\n3,4\n\n", "H a|b\nR1 1|2\nR2 3|4\n");
    /* empty fields, spaces kept, a quote inside an unquoted field */
    expect("a,b,c\n,,\n x , y ,z\n5\" screen,\"\",\"\"\"\"\n",
           "H a|b|c\nR1 ||\nR2  x | y |z\nR3 5\" screen||\"\n");
    /* a one-column file keeps its blank values */
    expect("a\n1\n  \n\"\"\n2\n", "H a\nR1 1\nR2   \nR3 \nR4 2\n");
    /* text after a closing quote is kept (libcsv, not strict) */
    expect("a,b\n\"x\"y,2\n3,4\n",
           "H a|b\nR1 x\"y,2\n3,4\n|(null) !unterminated quoted field; has 1 fields, the header "
           "has 2\n");
    /* which reads unescaped quotes inside a quoted field the way they were meant */
    expect("a,b\n\"He said \"hi\" to me\",2\n", "H a|b\nR1 He said \"hi\" to me|2\n");
}

static void test_semicolon_cp1252(void **state)
{
    (void)state;
    struct sl_csv_opts o = {.header = true, .encoding = SL_ENC_WINDOWS_1252};
    expect_file("semicolon_cp1252.csv", &o,
                "H Filiale|Name|Stadt|Umsatz\n"
                "R1 1|B\xc3\xa4"
                "ckerei M\xc3\xbcller|M\xc3\xbcnchen|\xe2\x82\xac 1.234,56\n"
                "R2 2|Caf\xc3\xa9 \"Zentral\"|K\xc3\xb6ln|\xe2\x82\xac 99\n");
    /* latin1 reads 0x80 as a C1 control, not the euro sign */
    o.encoding = SL_ENC_LATIN1;
    char *got;
    size_t len;
    char *data = slurp("semicolon_cp1252.csv", &len);
    assert_int_equal(run_opts(data, len, &o, &got, NULL, 0), 0);
    assert_non_null(strstr(got, "M\xc3\xbcnchen|\xc2\x80 1.234,56"));
    free(got);
    /* the same bytes read as UTF-8: every row with an umlaut is rejected */
    o.encoding = SL_ENC_UTF8;
    o.delimiter = ';';
    assert_int_equal(run_opts(data, len, &o, &got, NULL, 0), 0);
    assert_non_null(strstr(got, "R1 1|B\xef\xbf\xbd"
                                "ckerei"));
    assert_non_null(strstr(got, "!invalid UTF-8 at byte offset 29 (0xe4)"));
    free(got);
    free(data);
    /* undefined in windows-1252: rejected row, the file goes on */
    o = (struct sl_csv_opts){.header = true, .encoding = SL_ENC_WINDOWS_1252};
    const char bad[] = "a;b\n1;x\x81y\n2;\x9f\n";
    assert_int_equal(run_opts(bad, strlen(bad), &o, &got, NULL, 0), 0);
    assert_string_equal(got, "H a|b\nR1 1|x\xef\xbf\xbdy !invalid windows-1252 at byte offset 7 "
                             "(0x81)\nR2 2|\xc5\xb8\n");
    free(got);
}

static void test_utf16_bom(void **state)
{
    (void)state;
    const char *want = "H name|city\nR1 A|K\xc3\xb6ln\nR2 B|\xf0\x9f\x98\x80\n";
    struct sl_csv_opts o = {.header = true, .encoding = SL_ENC_UTF16};
    expect_file("utf16le_bom.csv", &o, want);
    /* the BOM wins over the configured encoding */
    o.encoding = SL_ENC_LATIN1;
    expect_file("utf16le_bom.csv", &o, want);
    o.encoding = SL_ENC_UTF8;
    expect_file("utf16le_bom.csv", &o, want);

    /* big-endian with its BOM */
    size_t len;
    char *le = slurp("utf16le_bom.csv", &len);
    for (size_t i = 0; i + 1 < len; i += 2) {
        char t = le[i];
        le[i] = le[i + 1];
        le[i + 1] = t;
    }
    char *got;
    assert_int_equal(run_opts(le, len, &o, &got, NULL, 0), 0);
    assert_string_equal(got, want);
    free(got);
    /* no BOM: utf-16 means little-endian; without utf-16 it looks binary */
    char *data = slurp("utf16le_bom.csv", &len);
    o.encoding = SL_ENC_UTF16;
    assert_int_equal(run_opts(data + 2, len - 2, &o, &got, NULL, 0), 0);
    assert_string_equal(got, want);
    free(got);
    char err[512];
    o.encoding = SL_ENC_UTF8;
    assert_int_equal(run_opts(data + 2, len - 2, &o, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_non_null(strstr(err, "looks binary (NUL byte at offset 1)"));
    assert_non_null(strstr(err, "set source.csv.encoding to utf-16"));
    free(got);
    free(data);
    free(le);
}

static void test_utf8_bom(void **state)
{
    (void)state;
    expect_file("utf8_bom.csv", NULL, "H id|name\nR1 1|\xc3\xa4\n");
    /* a UTF-8 BOM wins over latin1 */
    struct sl_csv_opts o = {.header = true, .encoding = SL_ENC_LATIN1};
    expect_file("utf8_bom.csv", &o, "H id|name\nR1 1|\xc3\xa4\n");
    /* only a BOM: empty */
    char *got;
    char err[512];
    assert_int_equal(run_opts("\xef\xbb\xbf", 3, NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file is empty (no header row)");
    free(got);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    expect("a,b\n1,x\xffy\n2,ok\n3,\xe2\x82\n4,\xed\xa0\x80\n",
           "H a|b\nR1 1|x\xef\xbf\xbdy !invalid UTF-8 at byte offset 7 (0xff)\nR2 2|ok\n"
           "R3 3|\xef\xbf\xbd !invalid UTF-8 at byte offset 17 (0xe2)\n"
           "R4 4|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd !invalid UTF-8 at byte offset 22 (0xed)\n");
    /* an invalid byte starting a row, and one cut by the end of the file */
    expect("a\n\xff\n1\n\xe2\x82",
           "H a\nR1 \xef\xbf\xbd !invalid UTF-8 at byte offset 2 (0xff)\n"
           "R2 1\nR3 \xef\xbf\xbd !invalid UTF-8 at byte offset 6 (0xe2)\n");
    /* in the header: the file fails with a hint */
    char *got;
    char err[512];
    const char *s = "Stra\xdf"
                    "e,Ort\n1,2\n";
    assert_int_equal(run_opts(s, strlen(s), NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_non_null(
        strstr(err, "line 1: the header row is not valid UTF-8 (byte 0xdf at offset 4)"));
    assert_non_null(strstr(err, "latin1"));
    free(got);
}

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(sl_csv_detect_delimiter("a,b,c\n1,2,3\n", 12, 0), ',');
    assert_int_equal(sl_csv_detect_delimiter("a;b;c\n1,5;2,5;3\n", 16, 0), ';');
    assert_int_equal(sl_csv_detect_delimiter("a\tb\n\"x, y; z\"\t2\n", 17, 0), '\t');
    assert_int_equal(sl_csv_detect_delimiter("a|b|c\n1|2|3\n", 12, 0), '|');
    /* quote-aware: the commas inside quotes do not count */
    const char *q = "name;note\n\"a,b,c\";\"x,y\"\n\"d,e\";f\n";
    assert_int_equal(sl_csv_detect_delimiter(q, strlen(q), '"'), ';');
    /* a quoted field spanning lines */
    const char *ml = "a|b\n\"1,\n2,3,4\"|x\n5|6\n";
    assert_int_equal(sl_csv_detect_delimiter(ml, strlen(ml), '"'), '|');
    /* one column, nothing fits: ',' */
    assert_int_equal(sl_csv_detect_delimiter("name\nx\n", 7, 0), ',');
    assert_int_equal(sl_csv_detect_delimiter("", 0, 0), ',');
    assert_int_equal(sl_csv_detect_delimiter(NULL, 0, 0), ',');

    /* through the reader */
    expect("a;b\n1,5;2\n", "H a|b\nR1 1,5|2\n");
    expect("a\tb\n1\t2\n", "H a|b\nR1 1|2\n");
    expect("a|b\n1|2\n", "H a|b\nR1 1|2\n");
    expect("a,b\n1,2\n", "H a|b\nR1 1|2\n");
    /* a configured delimiter and quote */
    struct sl_csv_opts o = {.header = true, .delimiter = ';', .quote = '\''};
    char *got;
    const char *s = "a;b\n'x;''y''';\"z\"\n";
    assert_int_equal(run_opts(s, strlen(s), &o, &got, NULL, 0), 0);
    assert_string_equal(got, "H a|b\nR1 x;'y'|\"z\"\n");
    free(got);
}

static void test_header_names(void **state)
{
    (void)state;
    expect("a,,a,b,a,\n1,2,3,4,5,6\n", "H a|_2|a_2|b|a_3|_6\nR1 1|2|3|4|5|6\n");
    /* a made-up name that is taken already */
    expect("a,a_2,a\nx,y,z\n", "H a|a_2|a_3\nR1 x|y|z\n");
    expect("_2,,x\n1,2,3\n", "H _2|_2_2|x\nR1 1|2|3\n");
    /* no header: numbered columns, the first line is data */
    struct sl_csv_opts o = {.header = false};
    char *got;
    assert_int_equal(run_opts("a,b\n1,2\n3\n", 10, &o, &got, NULL, 0), 0);
    assert_string_equal(got, "H 1|2\nR1 a|b\nR2 1|2\nR3 3|(null) !has 1 fields, the first row "
                             "has 2\n");
    free(got);
}

static void test_ragged(void **state)
{
    (void)state;
    expect("a,b,c,d,e\n1,2,3\n1,2,3,4,5,x,y\n1,2,3,4,5\n",
           "H a|b|c|d|e\nR1 1|2|3|(null)|(null) !has 3 fields, the header has 5\n"
           "R2 1|2|3|4|5 !has 7 fields, the header has 5 (extra: 'x', 'y')\nR3 1|2|3|4|5\n");
    /* many and long extra values are cut short */
    expect("a\n1,2,3,4,5,6,7,8,9\n"
           "1,0123456789012345678901234567890123456789,\"multi\nline\"\n2\n",
           "H a\nR1 1 !has 9 fields, the header has 1 (extra: '2', '3', '4', '5', '6' and 3 "
           "more)\n"
           "R2 1 !has 3 fields, the header has 1 (extra: '01234567890123456789012345678901...', "
           "'multi line')\nR3 2\n");
}

static void test_unterminated(void **state)
{
    (void)state;
    expect("a,b\n1,2\n3,\"open\n4,5\n",
           "H a|b\nR1 1|2\nR2 3|open\n4,5\n !unterminated quoted field\n");
    expect("a,b\n3,\"", "H a|b\nR1 3| !unterminated quoted field\n");
    /* a closed quote at the very end is fine */
    expect("a,b\n3,\"x\"", "H a|b\nR1 3|x\n");
    char *got;
    char err[512];
    assert_int_equal(run_opts("\"a,b\n1,2\n", 9, NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "line 1: unterminated quoted field in the header row");
    free(got);
}

static void test_bad_files(void **state)
{
    (void)state;
    char *got;
    char err[512];
    /* binary */
    const char bin[] = "PK\x03\x04\x14\x00\x00\x00";
    assert_int_equal(run_opts(bin, sizeof(bin) - 1, NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file looks binary (NUL byte at offset 5), not CSV");
    free(got);
    /* empty, blank lines only */
    assert_int_equal(run_opts("", 0, NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file is empty (no header row)");
    free(got);
    assert_int_equal(run_opts("\n\r\n  \n", 6, NULL, &got, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file is empty (no header row)");
    free(got);
    /* empty without a header: no rows, no error */
    struct sl_csv_opts o = {.header = false};
    assert_int_equal(run_opts("", 0, &o, &got, err, sizeof(err)), 0);
    assert_string_equal(got, "");
    free(got);
    /* header only */
    expect("a,b\n", "H a|b\n");
    expect("a,b", "H a|b\n");
    /* bad options */
    o = (struct sl_csv_opts){.header = true, .delimiter = '"'};
    assert_int_equal(sl_csv_read_fd(0, &o, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(err, "source.csv.delimiter"));
    o = (struct sl_csv_opts){.header = true, .delimiter = '\n'};
    assert_int_equal(sl_csv_read_fd(0, &o, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     SL_ERR_INVALID);
    o = (struct sl_csv_opts){.header = true, .encoding = (enum sl_encoding)42};
    assert_int_equal(sl_csv_read_fd(0, &o, NULL, NULL, NULL, NULL, err, sizeof(err)),
                     SL_ERR_INVALID);
    /* a read error */
    assert_int_equal(sl_csv_read_fd(-1, NULL, NULL, NULL, NULL, NULL, err, sizeof(err)), SL_ERR_IO);
    assert_non_null(strstr(err, "could not read"));
}

/* A file of n rows "i,name i,€ i\n" after a header; *len its size. */
static char *gen_rows(size_t n, size_t *len)
{
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, "id,name,price\n");
    for (size_t i = 1; i <= n; i++)
        sl_buf_printf(&b, "%zu,\"name, %zu\",\xe2\x82\xac %zu\n", i, i, i * 3);
    *len = b.len;
    return sl_buf_steal(&b);
}

static void test_nul_after_first_block(void **state)
{
    (void)state;
    size_t len;
    char *data = gen_rows(5000, &len);
    assert_true(len > 2 * 65536);
    char *p = strstr(data + 70000, "\n") + 1; /* a row start in the second block */
    char *name = strchr(p, '"') + 1;
    *name = '\0';
    char *got;
    assert_int_equal(run_opts(data, len, NULL, &got, NULL, 0), 0);
    assert_non_null(strstr(got, "|\\0ame, "));
    assert_non_null(strstr(got, " !a NUL byte in the data\n"));
    free(got);
    free(data);
}

static void test_limits(void **state)
{
    (void)state;
    char *got;
    char err[512];
    struct sl_csv_opts o = {.header = true, .max_field = 9};
    const char *s = "a,b\n1,2\n\n3,\"two\nlines\"\n4,1234567890\n";
    assert_int_equal(run_opts(s, strlen(s), &o, &got, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "line 6: a field is longer than 9 bytes (max_field)");
    assert_string_equal(got, "H a|b\nR1 1|2\nR2 3|two\nlines\n");
    free(got);

    o = (struct sl_csv_opts){.header = true, .max_columns = 3};
    s = "a,b,c\n1,2,3\n1,2,3,4\n";
    assert_int_equal(run_opts(s, strlen(s), &o, &got, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "line 3: a row has more than 3 columns (max_columns)");
    free(got);

    o = (struct sl_csv_opts){.header = true, .max_field = 10, .max_row = 16};
    s = "a,b\n1234567890,1234567890\n";
    assert_int_equal(run_opts(s, strlen(s), &o, &got, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "line 2: a row is longer than 16 bytes (max_row)");
    free(got);

    /* 10,000 columns: fine by default, too many with a lower limit */
    struct sl_buf b = SL_BUF_INIT;
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 10000; i++)
            sl_buf_printf(&b, "%sc%d", i ? "," : "", r * 10000 + i);
        sl_buf_putc(&b, '\n');
    }
    assert_int_equal(run_opts(b.data, b.len, NULL, &got, err, sizeof(err)), 0);
    assert_non_null(strstr(got, "R2 c20000|c20001|"));
    free(got);
    o = (struct sl_csv_opts){.header = true, .max_columns = 5000};
    assert_int_equal(run_opts(b.data, b.len, &o, &got, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "line 1: a row has more than 5000 columns (max_columns)");
    free(got);
    sl_buf_cleanup(&b);
}

/* A quote that never closes in a 100 MB file: the read fails at max_field
 * without holding more than about that much. */
static void test_never_closed_quote(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-csv-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    char line[1000];
    memset(line, 'x', sizeof(line));
    line[sizeof(line) - 1] = '\n';
    assert_int_equal(write(fd, "a,b\n1,\"", 7), 7);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(write(fd, line, sizeof(line)), (ssize_t)sizeof(line));
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct coll c = {.out = SL_BUF_INIT};
    struct sl_reader_stats st = {0};
    char err[512];
    size_t before = heap_in_use();
    int rc = sl_csv_read_fd(fd, NULL, c_hdr, c_row, &c, &st, err, sizeof(err));
    assert_int_equal(rc, SL_ERR_LIMIT);
    assert_string_equal(err, "line 2: a field is longer than 1048576 bytes (max_field); is a "
                             "quote never closed?");
    assert_true(st.bytes < 4 << 20);
    (void)before;
    close(fd);
    sl_buf_cleanup(&c.out);
}

static int g_rows_seen;

static int count_row(void *ud, const struct sl_row *row)
{
    struct coll *c = ud;
    g_rows_seen++;
    if (row->error)
        c->stop_at = row->row; /* remember a bad row */
    if ((row->row % 1000) == 0) {
        size_t h = heap_in_use();
        if (h > c->peak_heap)
            c->peak_heap = h;
    }
    return 0;
}

static void test_big_file(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-csv-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    FILE *f = fdopen(dup(fd), "w");
    fputs("id,name,city,amount\r\n", f);
    for (int i = 1; i <= 200000; i++)
        fprintf(f, "%d,\"Store %d\",M\xc3\xbcnchen,%d.%02d\r\n", i, i, i * 7, i % 100);
    fclose(f);
    off_t size = lseek(fd, 0, SEEK_END);
    lseek(fd, 0, SEEK_SET);
    struct coll c = {.out = SL_BUF_INIT};
    struct sl_reader_stats st = {0};
    char err[512];
    size_t before = heap_in_use();
    g_rows_seen = 0;
    assert_int_equal(sl_csv_read_fd(fd, NULL, c_hdr, count_row, &c, &st, err, sizeof(err)), 0);
    assert_int_equal(g_rows_seen, 200000);
    assert_int_equal(st.rows, 200000);
    assert_int_equal(st.bytes, (uint64_t)size);
    assert_int_equal(c.stop_at, 0);
    /* a file of about 9 MB read with well under 1 MB of heap */
    if (before && c.peak_heap)
        assert_true(c.peak_heap < before + (1 << 20));
    close(fd);
    sl_buf_cleanup(&c.out);
}

/* A pipe fed in small writes: characters cut at every position. */
/* Writes data to a pipe in pieces of 1 to 7 bytes from a child process;
 * returns the reading end. */
static int trickle(const char *data, size_t len, pid_t *pid)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    *pid = fork();
    assert_true(*pid >= 0);
    if (*pid == 0) {
        close(p[0]);
        size_t off = 0, step = 1;
        while (off < len) {
            size_t k = len - off < step ? len - off : step;
            if (write(p[1], data + off, k) != (ssize_t)k)
                _exit(1);
            off += k;
            step = step % 7 + 1;
        }
        _exit(0);
    }
    close(p[1]);
    return p[0];
}

/* A pipe fed in small writes: blocks end inside characters, quoted fields,
 * CR LF pairs; the rows must be those of the same bytes read from a file. */
static void test_pipe_small_writes(void **state)
{
    (void)state;
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, "id,name,price\r\n");
    for (size_t i = 1; i <= 20000; i++)
        sl_buf_printf(&b, "%zu,\"name, %zu%s\",\xe2\x82\xac %zu%s", i, i,
                      i % 5 ? "" : "\r\nsecond \"\"line\"\"", i * 3, i % 3 ? "\n" : "\r\n");
    size_t len = b.len;
    char *data = sl_buf_steal(&b);
    char *want;
    assert_int_equal(run_opts(data, len, NULL, &want, NULL, 0), 0);
    assert_null(strstr(want, "!"));
    assert_non_null(
        strstr(want, "R20000 20000|name, 20000\r\nsecond \"line\"|\xe2\x82\xac 60000\n"));

    for (int enc = 0; enc < 2; enc++) {
        /* as UTF-8, then as UTF-16LE with a BOM */
        char *in = data;
        size_t inlen = len;
        struct sl_csv_opts o = {.header = true};
        if (enc) {
            in = malloc(2 * len + 2);
            in[0] = (char)0xff;
            in[1] = (char)0xfe;
            inlen = 2;
            for (size_t i = 0; i < len; i++) {
                if (memcmp(data + i, "\xe2\x82\xac", 3) == 0) {
                    in[inlen++] = (char)0xac;
                    in[inlen++] = 0x20;
                    i += 2;
                } else {
                    in[inlen++] = data[i];
                    in[inlen++] = 0;
                }
            }
            o.encoding = SL_ENC_UTF16;
        }
        pid_t pid;
        int fd = trickle(in, inlen, &pid);
        struct coll c = {.out = SL_BUF_INIT};
        struct sl_reader_stats st = {0};
        char err[512];
        int rc = sl_csv_read_fd(fd, &o, c_hdr, c_row, &c, &st, err, sizeof(err));
        close(fd);
        int status;
        waitpid(pid, &status, 0);
        assert_int_equal(rc, 0);
        assert_int_equal(st.rows, 20000);
        assert_int_equal(st.bytes, inlen);
        assert_string_equal(c.out.data, want);
        sl_buf_cleanup(&c.out);
        if (enc)
            free(in);
    }
    free(want);
    free(data);

    /* through a file, with a euro sign cut by the first block end */
    char *got;
    char err[512];
    for (size_t at = 65534; at <= 65536; at++) {
        struct sl_buf f = SL_BUF_INIT;
        sl_buf_puts(&f, "a,b\n");
        while (f.len + 4 <= at - 2 - 8)
            sl_buf_puts(&f, "x,y\n");
        sl_buf_puts(&f, "x,");
        while (f.len < at - 3)
            sl_buf_putc(&f, 'z');
        sl_buf_puts(&f, "\n1,\xe2\x82\xac\n"); /* the euro sign at offset at */
        assert_int_equal(memcmp(f.data + at, "\xe2\x82\xac", 3), 0);
        assert_int_equal(run_opts(f.data, f.len, NULL, &got, err, sizeof(err)), 0);
        assert_non_null(strstr(got, "|\xe2\x82\xac\n"));
        assert_null(strstr(got, "!"));
        free(got);
        sl_buf_cleanup(&f);
    }
}

static void test_stop_and_stats(void **state)
{
    (void)state;
    const char *s = "a\n1\n2\n3\n";
    int fd = mem_fd(s, strlen(s));
    struct coll c = {.out = SL_BUF_INIT, .stop_at = 2};
    struct sl_reader_stats st = {0};
    char err[64];
    assert_int_equal(sl_csv_read_fd(fd, NULL, c_hdr, c_row, &c, &st, err, sizeof(err)), 7);
    assert_string_equal(c.out.data, "H a\nR1 1\nR2 2\n");
    assert_int_equal(st.rows, 2);
    close(fd);
    sl_buf_cleanup(&c.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spectrum),         cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_semicolon_cp1252), cmocka_unit_test(test_utf16_bom),
        cmocka_unit_test(test_utf8_bom),         cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_detect),           cmocka_unit_test(test_header_names),
        cmocka_unit_test(test_ragged),           cmocka_unit_test(test_unterminated),
        cmocka_unit_test(test_bad_files),        cmocka_unit_test(test_nul_after_first_block),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_never_closed_quote),
        cmocka_unit_test(test_big_file),         cmocka_unit_test(test_pipe_small_writes),
        cmocka_unit_test(test_stop_and_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
