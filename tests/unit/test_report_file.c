/*
 * Unit tests of the error report (report.h). Reports are written into a
 * temporary directory and read back by readers no one here wrote: openpyxl
 * and Python's csv module (report_file_check.py, run with /usr/bin/python3),
 * which print what they find as JSON. Checked: the sheets and the one shown
 * first, the header, the frozen pane and the autofilter, the row values
 * (formula-like text, control characters, invalid UTF-8, NUL, a literal
 * _x0041_, text longer than a cell holds), the highlighted cells and their
 * comments, that no cell anywhere is a formula, the summary's counts and
 * most frequent problems; a 100,000-row report in a child process whose
 * memory growth stays bounded, read back in openpyxl's read-only mode; the
 * CSV's formula neutralization, quoting, CRLF and BOM, byte for byte and
 * through the csv module; and the failure paths.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "sluice/err.h"
#include "sluice/report.h"
#include "sluice/util.h"

#define CHECKER SLUICE_FIXTURES "/../unit/report_file_check.py"
#define CMD     "/usr/bin/python3 " CHECKER

static char tmpdir[256];
static char errbuf[512];

static char *tpath(const char *name)
{
    static char p[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* What report_file_check.py finds in path (mode xlsx, xlsx-big or csv). */
static json_t *check(const char *mode, const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), CMD " %s '%s'", mode, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t je;
    json_t *out = json_loadf(p, JSON_ALLOW_NUL, &je);
    int st = pclose(p);
    if (!out || st != 0)
        fail_msg("%s failed (status %d): %s", cmd, st, je.text);
    return out;
}

/* The cell (1-based row, 0-based column) of a sheet of a dump. */
static json_t *cell(json_t *dump, const char *sheet, size_t row, size_t col)
{
    json_t *rows = json_object_get(json_object_get(json_object_get(dump, "sheet"), sheet), "rows");
    json_t *c = json_array_get(json_array_get(rows, row - 1), col);
    if (!c)
        fail_msg("no cell %s!%zu:%zu", sheet, row, col);
    return c;
}

static const char *sval(json_t *c)
{
    return json_string_value(json_object_get(c, "v"));
}

static const char *fill(json_t *c)
{
    return json_string_value(json_object_get(c, "fill"));
}

static const char *comment(json_t *c)
{
    return json_string_value(json_object_get(c, "comment"));
}

static void assert_text(json_t *c, const char *want)
{
    json_t *v = json_object_get(c, "v");
    if (!json_is_string(v))
        fail_msg("cell is not text (want \"%s\")", want);
    assert_string_equal(json_string_value(v), want);
    assert_string_equal(json_string_value(json_object_get(c, "t")), "s");
}

/* The summary's value next to label (column B, or C for the problems). */
static json_t *summary(json_t *dump, const char *label)
{
    json_t *rows =
        json_object_get(json_object_get(json_object_get(dump, "sheet"), "Summary"), "rows");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *l = json_string_value(json_object_get(json_array_get(r, 0), "v"));
        if (l && !strcmp(l, label))
            return json_object_get(json_array_get(r, 1), "v");
    }
    fail_msg("no summary line \"%s\"", label);
    return NULL;
}

static size_t summary_row(json_t *dump, const char *label)
{
    json_t *rows =
        json_object_get(json_object_get(json_object_get(dump, "sheet"), "Summary"), "rows");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *l = json_string_value(json_object_get(json_array_get(r, 0), "v"));
        if (l && !strcmp(l, label))
            return i + 1;
    }
    fail_msg("no summary line \"%s\"", label);
    return 0;
}

static bool summary_has(json_t *dump, const char *prefix)
{
    json_t *rows =
        json_object_get(json_object_get(json_object_get(dump, "sheet"), "Summary"), "rows");
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r)
    {
        const char *l = json_string_value(json_object_get(json_array_get(r, 0), "v"));
        if (l && !strncmp(l, prefix, strlen(prefix)))
            return true;
    }
    return false;
}

static json_t *problem(const char *attr, const char *code, const char *msg, const char *value)
{
    return json_pack("{s:s,s:s,s:s,s:s?}", "attribute", attr, "code", code, "message", msg, "value",
                     value);
}

static void add(struct sl_report_file *rf, json_t *row)
{
    int rc = sl_report_file_add(rf, row, errbuf, sizeof(errbuf));
    if (rc)
        fail_msg("add: %s", errbuf);
    json_decref(row);
}

static const struct sl_report_meta final_meta = {
    .job = "store-locations",
    .run_id = "run-1",
    .status = "completed_with_errors",
    .source = "stores.csv",
    .started_at = 1767222000000000,  /* 2025-12-31T23:00:00Z */
    .finished_at = 1767222065000000, /* 23:01:05 */
    .counts = {.read = 10, .published = 7, .created = 5, .updated = 2, .rejected = 3},
};

static const char *const store_cols[] = {"Filiale", "Name", "E-Mail", "=cmd|' /C calc'!A0",
                                         "Umsatz"};

static struct sl_report_file *store_report(const char *path, enum sl_report_format fmt)
{
    struct sl_report_meta start = {
        .job = "store-locations", .run_id = "run-1", .status = "running"};
    struct sl_report_file *rf =
        sl_report_file_new(path, fmt, &start, store_cols, 5, errbuf, sizeof(errbuf));
    if (!rf)
        fail_msg("new: %s", errbuf);
    assert_int_equal(sl_report_file_link(rf, "store_id", "Filiale"), 0);
    assert_int_equal(sl_report_file_link(rf, "name", "name"), 0); /* matched loosely */
    assert_int_equal(sl_report_file_link(rf, "email", "E-Mail"), 0);
    assert_int_equal(sl_report_file_link(rf, "revenue", "Umsatz"), 0);
    assert_int_equal(sl_report_file_link(rf, "revenue", "Umsatz"), 0);   /* twice: one comment */
    assert_int_equal(sl_report_file_link(rf, "region_id", "Region"), 0); /* not a column */
    return rf;
}

/* Three rejected rows with every kind of awkward value. */
static void add_store_rows(struct sl_report_file *rf)
{
    json_t *r = json_pack("{s:i,s:[o,o],s:{s:s,s:s,s:s,s:s,s:s}}", "row", 2, "errors",
                          problem("email", "format", "is not a valid e-mail address", "bad@"),
                          problem("revenue", "type", "is not a decimal number", "12,5"), "source",
                          "Filiale", "A1", "Name", "=1+1", "E-Mail", "bad@", "=cmd|' /C calc'!A0",
                          "=cmd|' /C calc'!A0", "Umsatz", "12,5");
    add(rf, r);
    r = json_pack("{s:i,s:[o,o],s:{s:s,s:n,s:s,s:s,s:s}}", "row", 5, "errors",
                  problem("store_id", "duplicate_key", "key A1 is also in row 2", "A1"),
                  problem("name", "required", "is required", NULL), "source", "Filiale", "A1",
                  "Name", "E-Mail", "x@example.com", "=cmd|' /C calc'!A0", "@SUM(1)", "Umsatz",
                  "+5");
    add(rf, r);
    char *big = malloc(40001);
    memset(big, 'x', 40000);
    big[40000] = '\0';
    r = json_pack(
        "{s:i,s:[o,o],s:{s:s,s:o,s:s,s:o,s:s,s:s}}", "row", 7, "errors",
        problem("region_id", "unknown_reference", "no region R9", "R9"),
        problem("revenue", "too_long", "is longer than 20 characters", NULL), "source", "Filiale",
        "a\x01"
        "b\x1f"
        "c",
        "Name", json_stringn("a\0b", 3), "E-Mail", "_x0041_ and l1\r\nl2", "=cmd|' /C calc'!A0",
        json_stringn_nocheck("bad\xff", 4), "Umsatz", big, "Extra", "not a column");
    free(big);
    add(rf, r);
}

static void test_xlsx(void **state)
{
    const char *path = tpath("stores.xlsx");
    struct sl_report_file *rf = store_report(path, SL_REPORT_XLSX);
    add_store_rows(rf);
    assert_int_equal(sl_report_file_rows(rf), 3);
    assert_int_equal(sl_report_file_link(rf, "x", "y"), SL_ERR_INVALID);
    struct sl_report_problem top[3];
    assert_int_equal(sl_report_file_top(rf, top, 3), 3);
    assert_string_equal(top[0].attribute, "email"); /* all once: first seen first */
    assert_string_equal(top[1].attribute, "revenue");
    assert_string_equal(top[1].code, "type");
    assert_int_equal(top[1].count, 1);
    assert_false(exists(path)); /* only path.tmp until close */
    if (sl_report_file_close(rf, &final_meta, errbuf, sizeof(errbuf)))
        fail_msg("close: %s", errbuf);
    assert_true(exists(path));
    assert_false(exists(tpath("stores.xlsx.tmp")));

    json_t *d = check("xlsx", path);
    json_t *sheets = json_object_get(d, "sheets");
    assert_int_equal(json_array_size(sheets), 2);
    assert_string_equal(json_string_value(json_array_get(sheets, 0)), "Summary");
    assert_string_equal(json_string_value(json_array_get(sheets, 1)), "Rejected rows");
    assert_string_equal(json_string_value(json_object_get(d, "active")), "Summary");
    assert_int_equal(json_integer_value(json_object_get(d, "formula_elements")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "formula_cells")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "comments")), 6);

    const char *R = "Rejected rows";
    json_t *rs = json_object_get(json_object_get(d, "sheet"), R);
    assert_string_equal(json_string_value(json_object_get(rs, "freeze")), "A2");
    assert_string_equal(json_string_value(json_object_get(rs, "autofilter")), "A1:G4");
    assert_int_equal(json_array_size(json_object_get(rs, "rows")), 4);
    const char *head[] = {"_row",  "_errors", "Filiale", "Name", "E-Mail", "=cmd|' /C calc'!A0",
                          "Umsatz"};
    for (size_t c = 0; c < 7; c++) {
        json_t *h = cell(d, R, 1, c);
        assert_text(h, head[c]);
        assert_string_equal(fill(h), "D9E1F2");
        assert_true(json_is_true(json_object_get(h, "bold")));
    }
    /* column widths: _errors sized to its text, within bounds */
    double w = json_real_value(json_object_get(json_object_get(rs, "widths"), "B"));
    assert_true(w >= 24 && w <= 81);

    /* row 2: two mapped problems, formula-like text kept as text */
    assert_int_equal(json_integer_value(json_object_get(cell(d, R, 2, 0), "v")), 2);
    assert_string_equal(json_string_value(json_object_get(cell(d, R, 2, 0), "t")), "n");
    assert_text(cell(d, R, 2, 1),
                "email: is not a valid e-mail address; revenue: is not a decimal number");
    assert_null(fill(cell(d, R, 2, 1)));
    assert_null(comment(cell(d, R, 2, 1)));
    assert_text(cell(d, R, 2, 2), "A1");
    assert_null(fill(cell(d, R, 2, 2)));
    assert_null(comment(cell(d, R, 2, 2)));
    assert_text(cell(d, R, 2, 3), "=1+1");
    assert_text(cell(d, R, 2, 4), "bad@");
    assert_string_equal(fill(cell(d, R, 2, 4)), "FFC7CE");
    assert_string_equal(comment(cell(d, R, 2, 4)), "email: is not a valid e-mail address");
    assert_text(cell(d, R, 2, 5), "=cmd|' /C calc'!A0");
    assert_text(cell(d, R, 2, 6), "12,5");
    assert_string_equal(fill(cell(d, R, 2, 6)), "FFC7CE");
    assert_string_equal(comment(cell(d, R, 2, 6)), "revenue: is not a decimal number");

    /* row 5: a missing value highlighted all the same */
    assert_string_equal(comment(cell(d, R, 3, 2)), "store_id: key A1 is also in row 2");
    assert_null(sval(cell(d, R, 3, 3)));
    assert_string_equal(fill(cell(d, R, 3, 3)), "FFC7CE");
    assert_string_equal(comment(cell(d, R, 3, 3)), "name: is required");
    assert_text(cell(d, R, 3, 5), "@SUM(1)");
    assert_text(cell(d, R, 3, 6), "+5");

    /* row 7: a problem of no column marks _errors; awkward text survives */
    json_t *errs = cell(d, R, 4, 1);
    assert_string_equal(fill(errs), "FFC7CE");
    assert_string_equal(comment(errs), "region_id: no region R9");
    assert_string_equal(comment(cell(d, R, 4, 6)), "revenue: is longer than 20 characters");
    assert_text(cell(d, R, 4, 2), "a\x01"
                                  "b\x1f"
                                  "c");
    json_t *nul = json_object_get(cell(d, R, 4, 3), "v");
    assert_int_equal(json_string_length(nul), 3);
    assert_memory_equal(json_string_value(nul), "a\0b", 3);
    assert_text(cell(d, R, 4, 4), "_x0041_ and l1\r\nl2");
    assert_text(cell(d, R, 4, 5), "bad\xef\xbf\xbd");
    const char *big = sval(cell(d, R, 4, 6));
    assert_non_null(big);
    size_t blen = strlen(big);
    assert_true(sl_utf8_len(big, blen) <= 32767);
    assert_true(blen > 32000);
    assert_int_equal(strspn(big, "x"),
                     blen - strlen("\xe2\x80\xa6 [cut: 40000 characters in all]"));
    assert_string_equal(big + strspn(big, "x"), "\xe2\x80\xa6 [cut: 40000 characters in all]");

    /* the summary: the final meta, the counts, the problems, how to fix */
    assert_string_equal(json_string_value(summary(d, "Job")), "store-locations");
    assert_string_equal(json_string_value(summary(d, "Run")), "run-1");
    assert_string_equal(json_string_value(summary(d, "Status")), "completed_with_errors");
    assert_string_equal(json_string_value(summary(d, "Source")), "stores.csv");
    assert_string_equal(json_string_value(summary(d, "Started (UTC)")), "2025-12-31T23:00:00Z");
    assert_string_equal(json_string_value(summary(d, "Finished (UTC)")), "2025-12-31T23:01:05Z");
    assert_int_equal(json_integer_value(summary(d, "Read")), 10);
    assert_int_equal(json_integer_value(summary(d, "Published")), 7);
    assert_int_equal(json_integer_value(summary(d, "Rejected")), 3);
    assert_int_equal(json_integer_value(summary(d, "In the sheet \"Rejected rows\"")), 3);
    assert_int_equal(json_integer_value(summary(d, "Values not shown (no column)")), 1);
    size_t p = summary_row(d, "Attribute") + 1;
    assert_text(cell(d, "Summary", p, 0), "email");
    assert_text(cell(d, "Summary", p, 1), "format");
    assert_int_equal(json_integer_value(json_object_get(cell(d, "Summary", p, 2), "v")), 1);
    assert_text(cell(d, "Summary", p, 3), "is not a valid e-mail address");
    assert_text(cell(d, "Summary", p + 5, 0), "revenue");
    assert_text(cell(d, "Summary", p + 5, 1), "too_long");
    assert_true(summary_has(d, "Fix the highlighted cells in the sheet \"Rejected rows\""));
    assert_false(summary_has(d, "Only the first"));
    json_decref(d);
}

/* Columns from the first row's fields; no links: _errors carries it all;
 * counts sort the top problems. An empty report is still a report. */
static void test_xlsx_columns_from_rows(void **state)
{
    const char *path = tpath("nohead.xlsx");
    struct sl_report_file *rf =
        sl_report_file_new(path, SL_REPORT_XLSX, NULL, NULL, 0, errbuf, sizeof(errbuf));
    assert_non_null(rf);
    const char *codes[] = {"type", "pattern", "pattern", "required", "pattern", "type"};
    for (int i = 0; i < 6; i++)
        add(rf, json_pack("{s:i,s:[o],s:{s:s,s:i,s:b}}", "row", i + 1, "errors",
                          problem(i == 3 ? "b" : "a", codes[i], "bad", NULL), "source", "b", "=x",
                          i == 5 ? "c" : "a", 42, "z", 1));
    add(rf, json_pack("{s:i,s:[],s:{s:s}}", "row", 9, "errors", "source", "b", "ok"));
    struct sl_report_problem top[5];
    assert_int_equal(sl_report_file_top(rf, top, 5), 3);
    assert_string_equal(top[0].code, "pattern");
    assert_int_equal(top[0].count, 3);
    assert_string_equal(top[1].code, "type");
    assert_int_equal(top[1].count, 2);
    assert_string_equal(top[2].attribute, "b");
    assert_int_equal(sl_report_file_top(rf, top, 1), 1);
    assert_int_equal(sl_report_file_close(rf, NULL, errbuf, sizeof(errbuf)), 0);

    json_t *d = check("xlsx", path);
    const char *R = "Rejected rows";
    assert_text(cell(d, R, 1, 2), "b");
    assert_text(cell(d, R, 1, 3), "a");
    assert_text(cell(d, R, 1, 4), "z");
    assert_text(cell(d, R, 2, 2), "=x");
    assert_text(cell(d, R, 2, 3), "42"); /* a JSON number in its spelling, as text */
    assert_text(cell(d, R, 2, 4), "true");
    assert_string_equal(fill(cell(d, R, 2, 1)), "FFC7CE");
    assert_string_equal(comment(cell(d, R, 2, 1)), "a: bad");
    assert_null(sval(cell(d, R, 7, 3))); /* row 6 has "c", not "a" */
    assert_int_equal(json_integer_value(summary(d, "Values not shown (no column)")), 1);
    size_t p = summary_row(d, "Attribute") + 1;
    assert_text(cell(d, "Summary", p, 1), "pattern");
    assert_int_equal(json_integer_value(json_object_get(cell(d, "Summary", p, 2), "v")), 3);
    assert_int_equal(json_integer_value(json_object_get(d, "formula_cells")), 0);
    json_decref(d);

    /* nothing added at all */
    path = tpath("empty.xlsx");
    rf = sl_report_file_new(path, SL_REPORT_XLSX, &final_meta, NULL, 0, errbuf, sizeof(errbuf));
    assert_non_null(rf);
    assert_int_equal(sl_report_file_top(rf, top, 5), 0);
    assert_int_equal(sl_report_file_close(rf, NULL, errbuf, sizeof(errbuf)), 0);
    d = check("xlsx", path);
    assert_text(cell(d, R, 1, 0), "_row");
    assert_text(cell(d, R, 1, 1), "_errors");
    assert_string_equal(json_string_value(summary(d, "Status")), "completed_with_errors");
    assert_text(cell(d, "Summary", summary_row(d, "Attribute") + 1, 0), "none");
    json_decref(d);
}

#define BIG_ROWS 100000

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* In a child, so that the peak is the writer's: 100,000 rows of about 400
 * bytes (40 MB of values), every one with a highlighted, linked cell. */
static void write_big(const char *path)
{
    static const char *const cols[] = {"id", "name", "email", "note"};
    char fillv[81], note[201];
    memset(fillv, 'v', 80);
    fillv[80] = '\0';
    memset(note, 'n', 200);
    note[200] = '\0';
    long before = maxrss_kb();
    struct sl_report_file *rf =
        sl_report_file_new(path, SL_REPORT_XLSX, &final_meta, cols, 4, errbuf, sizeof(errbuf));
    if (!rf || sl_report_file_link(rf, "email", "email"))
        _exit(3);
    char id[32], mail[128];
    for (int i = 1; i <= BIG_ROWS; i++) {
        snprintf(id, sizeof(id), "%d", i + 1);
        snprintf(mail, sizeof(mail), "=HYPERLINK(\"http://x\",\"%d\") %s", i, fillv);
        json_t *r = json_pack("{s:i,s:[o],s:{s:s,s:s,s:s,s:s}}", "row", i + 1, "errors",
                              problem("email", "format", "is not a valid e-mail address", mail),
                              "source", "id", id, "name", fillv, "email", mail, "note", note);
        if (!r || sl_report_file_add(rf, r, errbuf, sizeof(errbuf)))
            _exit(4);
        json_decref(r);
    }
    if (sl_report_file_close(rf, NULL, errbuf, sizeof(errbuf)))
        _exit(5);
    long grown = maxrss_kb() - before;
    fprintf(stderr, "report of %d rows: peak memory grew by %ld KiB\n", BIG_ROWS, grown);
#if defined(__SANITIZE_ADDRESS__)
    _exit(0); /* ASan's quarantine keeps freed memory: no bound to check */
#else
    _exit(grown < 16 * 1024 ? 0 : 6);
#endif
}

static void test_xlsx_100k_rows(void **state)
{
    const char *path = tpath("big.xlsx");
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        write_big(path);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 6)
        fail_msg("the writer's memory grew by more than 16 MiB");
    assert_int_equal(WEXITSTATUS(st), 0);

    json_t *d = check("xlsx-big", path);
    json_t *rs = json_object_get(json_object_get(d, "sheet"), "Rejected rows");
    assert_int_equal(json_integer_value(json_object_get(rs, "nrows")), BIG_ROWS + 1);
    assert_int_equal(json_integer_value(json_object_get(d, "formula_elements")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "formula_cells")), 0);
    assert_int_equal(json_integer_value(json_object_get(d, "comments")), SL_REPORT_MAX_COMMENTS);
    json_t *first = json_array_get(json_object_get(rs, "first"), 1);
    assert_int_equal(json_integer_value(json_array_get(first, 0)), 2);
    assert_string_equal(json_string_value(json_array_get(first, 2)), "2");
    assert_true(!strncmp(json_string_value(json_array_get(first, 4)), "=HYPERLINK(", 11));
    json_t *last = json_object_get(rs, "last");
    assert_int_equal(json_integer_value(json_array_get(last, 0)), BIG_ROWS + 1);
    assert_string_equal(json_string_value(json_array_get(last, 2)), "100001");
    /* the summary: the rows counted, the comments capped and said so */
    json_t *sum = json_object_get(json_object_get(json_object_get(d, "sheet"), "Summary"), "rows");
    bool capped = false, counted = false;
    size_t i;
    json_t *r;
    json_array_foreach(sum, i, r)
    {
        const char *l = json_string_value(json_array_get(r, 0));
        if (l && !strncmp(l, "Only the first 1000 highlighted cells have a comment", 52))
            capped = true;
        if (l && !strcmp(l, "In the sheet \"Rejected rows\""))
            counted = json_integer_value(json_array_get(r, 1)) == BIG_ROWS;
    }
    assert_true(capped);
    assert_true(counted);
    json_decref(d);
}

/* The CSV attachment: neutralized, quoted, CRLF, UTF-8 with a BOM. */
static void test_csv(void **state)
{
    const char *path = tpath("stores.csv");
    static const char *const cols[] = {"id", "=cmd|' /C calc'!A0", "-x", "@y", "\tz", "plain"};
    struct sl_report_file *rf =
        sl_report_file_new(path, SL_REPORT_CSV, NULL, cols, 6, errbuf, sizeof(errbuf));
    assert_non_null(rf);
    add(rf, json_pack("{s:i,s:[o,o],s:{s:s,s:s,s:s,s:s,s:s,s:s}}", "row", 2, "errors",
                      problem("id", "type", "is not a number", NULL),
                      problem("-x", "format", "a \"quoted\", word", NULL), "source", "id", "=1+1",
                      "=cmd|' /C calc'!A0", "+5", "-x", "-3", "@y", "@SUM(A1)", "\tz", "\tTab",
                      "plain", "a, b"));
    add(rf, json_pack("{s:i,s:[],s:{s:s,s:n,s:o,s:s,s:s}}", "row", 3, "errors", "source", "id",
                      "\rCR", "=cmd|' /C calc'!A0", "-x", json_stringn_nocheck("bad\xff", 4), "@y",
                      "line1\nline2", "plain", " lead"));
    assert_int_equal(sl_report_file_close(rf, NULL, errbuf, sizeof(errbuf)), 0);

    size_t len;
    char *got = sl_read_file(path, &len);
    assert_non_null(got);
    const char *want =
        "\xef\xbb\xbf_row,_errors,id,'=cmd|' /C calc'!A0,'-x,'@y,'\tz,plain\r\n"
        "2,\"id: is not a number; -x: a \"\"quoted\"\", word\",'=1+1,'+5,'-3,'@SUM(A1),'\tTab,"
        "\"a, b\"\r\n"
        "3,,\"'\rCR\",,bad\xef\xbf\xbd,\"line1\nline2\",,\" lead\"\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);

    json_t *d = check("csv", path);
    assert_true(json_is_true(json_object_get(d, "bom")));
    json_t *rows = json_object_get(d, "rows");
    assert_int_equal(json_array_size(rows), 3);
    const char *r1[] = {"2",      "id: is not a number; -x: a \"quoted\", word",
                        "'=1+1",  "'+5",
                        "'-3",    "'@SUM(A1)",
                        "'\tTab", "a, b"};
    for (size_t c = 0; c < 8; c++)
        assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 1), c)), r1[c]);
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 2), 2)), "'\rCR");
    assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 2), 5)),
                        "line1\nline2");
    json_decref(d);
    assert_false(exists(tpath("stores.csv.tmp")));
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

static void test_failures(void **state)
{
    /* a directory that does not exist: refused at once, naming the file */
    struct sl_report_file *rf = sl_report_file_new("/nonexistent/dir/r.xlsx", SL_REPORT_XLSX, NULL,
                                                   NULL, 0, errbuf, sizeof(errbuf));
    assert_null(rf);
    assert_non_null(strstr(errbuf, "could not create the report /nonexistent/dir/r.xlsx.tmp"));
    sl_report_file_destroy(NULL);

    /* abandoned: neither the report nor its temporary file stays, no fd leaks */
    int fds = count_fds();
    for (int fmt = SL_REPORT_XLSX; fmt <= SL_REPORT_CSV; fmt++) {
        const char *path = tpath(fmt == SL_REPORT_XLSX ? "gone.xlsx" : "gone.csv");
        rf = store_report(path, (enum sl_report_format)fmt);
        add_store_rows(rf);
        json_t *bad = json_pack("[i]", 1);
        assert_int_equal(sl_report_file_add(rf, bad, errbuf, sizeof(errbuf)), SL_ERR_INVALID);
        json_decref(bad);
        bad = json_pack("{s:i,s:s}", "row", 1, "errors", "no");
        assert_int_equal(sl_report_file_add(rf, bad, errbuf, sizeof(errbuf)), SL_ERR_INVALID);
        json_decref(bad);
        assert_int_equal(sl_report_file_rows(rf), 3);
        sl_report_file_destroy(rf);
        assert_false(exists(path));
        char tmp[600];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        assert_false(exists(tmp));
    }
    assert_int_equal(count_fds(), fds);

    /* the directory vanished before close: an error, and no file */
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/sub", tmpdir);
    assert_int_equal(sl_mkdirs(dir), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/r.csv", dir);
    rf = sl_report_file_new(path, SL_REPORT_CSV, NULL, NULL, 0, errbuf, sizeof(errbuf));
    assert_non_null(rf);
    char tmp[500];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    rmdir(dir);
    assert_int_equal(sl_report_file_close(rf, NULL, errbuf, sizeof(errbuf)), SL_ERR_IO);
    assert_non_null(strstr(errbuf, "r.csv"));

    assert_int_equal(sl_report_format_from_name("csv"), SL_REPORT_CSV);
    assert_int_equal(sl_report_format_from_name("xlsx"), SL_REPORT_XLSX);
    assert_int_equal(sl_report_format_from_name(NULL), SL_REPORT_XLSX);
    assert_string_equal(sl_report_format_ext(SL_REPORT_CSV), "csv");
    assert_string_equal(sl_report_format_ext(SL_REPORT_XLSX), "xlsx");
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[600];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p))
            rm_tree(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/sluice-report-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    /* the reader must be there: a missing one is a failure, not a skip */
    if (system("/usr/bin/python3 -c 'import openpyxl' 2>/dev/null") != 0) {
        fprintf(stderr, "test_report_file needs /usr/bin/python3 with openpyxl "
                        "(apt-get install python3-openpyxl)\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    rm_tree(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xlsx),           cmocka_unit_test(test_xlsx_columns_from_rows),
        cmocka_unit_test(test_xlsx_100k_rows), cmocka_unit_test(test_csv),
        cmocka_unit_test(test_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
