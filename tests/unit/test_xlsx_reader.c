/*
 * Unit tests of the XLSX reader (xlsx_reader.c) and of the cell rules both
 * spreadsheet readers share (sheet_cell.c): number formats, date serials
 * in the 1900 and 1904 systems, shortest decimals, the fixtures written by
 * openpyxl and libxlsxwriter (tests/fixtures/sheets/make.py), workbooks
 * built here part by part for the edge cases, truncated and corrupt files,
 * zip bombs, DTDs, the limits, and a sheet of ~70 MB streamed in little
 * memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <zip.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#include "reader_test_util.h"

#define SHEETS SLUICE_FIXTURES "/sheets/"

/* ---- the cell rules ---- */

static void expect_num(double v, const char *want)
{
    char out[SL_SHEET_NUM_MAX];
    size_t n = sl_sheet_number_text(v, out);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_number_text(void **state)
{
    (void)state;
    expect_num(0, "0");
    expect_num(-0.0, "0");
    expect_num(1, "1");
    expect_num(100, "100");
    expect_num(-2.5, "-2.5");
    expect_num(1234.5, "1234.5");
    expect_num(0.1 + 0.2, "0.30000000000000004");
    expect_num(0.3, "0.3");
    expect_num(1e21, "1000000000000000000000");
    expect_num(1.2345e3, "1234.5");
    expect_num(1e-7, "0.0000001");
    expect_num(-1.5e-10, "-0.00000000015");
    expect_num(123456789012345678.0, "123456789012345680");
    expect_num(45351.520833333336, "45351.520833333336");
    char out[SL_SHEET_NUM_MAX];
    /* the extremes fit and read back exactly */
    size_t n = sl_sheet_number_text(DBL_MAX, out);
    assert_int_equal(n, 309);
    assert_true(strtod(out, NULL) == DBL_MAX);
    n = sl_sheet_number_text(-4.9406564584124654e-324, out);
    assert_int_equal(n, 2 + 2 + 323);
    assert_true(strncmp(out, "-0.000", 6) == 0 && out[n - 1] == '5');
    assert_true(strtod(out, NULL) == -4.9406564584124654e-324);
    /* every shortest text reads back as the same double */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = ((uint64_t)rand() << 33) ^ ((uint64_t)rand() << 11) ^ (uint64_t)rand();
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        n = sl_sheet_number_text(v, out);
        assert_true(n > 0 && n < SL_SHEET_NUM_MAX);
        assert_null(strpbrk(out, "eE"));
        assert_true(strtod(out, NULL) == v);
    }
    assert_int_equal(sl_sheet_number_text(NAN, out), 0);
    assert_int_equal(sl_sheet_number_text(-INFINITY, out), 0);
    assert_string_equal(out, "");
}

static void test_numfmt_kind(void **state)
{
    (void)state;
    static const struct {
        unsigned id;
        const char *code;
        enum sl_cell_kind kind;
    } cases[] = {
        {0, NULL, SL_CELL_NUMBER},
        {2, NULL, SL_CELL_NUMBER},
        {14, NULL, SL_CELL_DATE},
        {17, NULL, SL_CELL_DATE},
        {18, NULL, SL_CELL_TIME},
        {21, NULL, SL_CELL_TIME},
        {22, NULL, SL_CELL_DATETIME},
        {45, NULL, SL_CELL_TIME},
        {46, NULL, SL_CELL_DURATION},
        {47, NULL, SL_CELL_TIME},
        {49, NULL, SL_CELL_NUMBER},
        {164, "yyyy-mm-dd", SL_CELL_DATE},
        {164, "dd.mm.yyyy", SL_CELL_DATE},
        {164, "mmm-yy", SL_CELL_DATE},
        {164, "m", SL_CELL_DATE},
        {164, "yyyy-mm-dd hh:mm:ss", SL_CELL_DATETIME},
        {164, "d/m/yy h:mm", SL_CELL_DATETIME},
        {164, "h:mm AM/PM", SL_CELL_TIME},
        {164, "hh:mm", SL_CELL_TIME},
        {164, "mm:ss", SL_CELL_TIME},
        {164, "h", SL_CELL_TIME},
        {164, "[h]:mm:ss", SL_CELL_DURATION},
        {164, "[mm]:ss", SL_CELL_DURATION},
        {164, "[$-409]mmmm d, yyyy", SL_CELL_DATE},
        {164, "[$-F400]h:mm:ss AM/PM", SL_CELL_TIME},
        {164, "yyyy-mm-dd;@", SL_CELL_DATE},
        {14, "0.00", SL_CELL_NUMBER}, /* a code given for a built-in id wins */
        {164, "General", SL_CELL_NUMBER},
        {164, "0.00%", SL_CELL_NUMBER},
        {164, "#,##0.00", SL_CELL_NUMBER},
        {164, "0.00E+00", SL_CELL_NUMBER},
        {164, "@", SL_CELL_NUMBER},
        {164, "[Red]0.00;[Blue]-0.00", SL_CELL_NUMBER},
        {164, "#,##0 \"days\"", SL_CELL_NUMBER},
        {164, "0\\d", SL_CELL_NUMBER},
        {164, "[$\xe2\x82\xac-407] #,##0.00", SL_CELL_NUMBER},
        {164, "_-* #,##0.00_-;-* #,##0.00_-", SL_CELL_NUMBER},
        {164, "0.00;yyyy", SL_CELL_NUMBER}, /* only the first section counts */
        {164, "\"", SL_CELL_NUMBER},
        {164, "[", SL_CELL_NUMBER},
        {164, "", SL_CELL_NUMBER},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        enum sl_cell_kind k = sl_sheet_numfmt_kind(cases[i].id, cases[i].code);
        if (k != cases[i].kind)
            fail_msg("%u '%s': kind %d, expected %d", cases[i].id,
                     cases[i].code ? cases[i].code : "(built-in)", k, cases[i].kind);
    }
}

static void expect_serial(double s, bool d1904, enum sl_cell_kind k, const char *want)
{
    char out[SL_SHEET_DATE_MAX];
    size_t n = sl_sheet_serial_text(s, d1904, k, out);
    if (strcmp(out, want) != 0)
        fail_msg("%.17g (%s, kind %d): '%s', expected '%s'", s, d1904 ? "1904" : "1900", k, out,
                 want);
    assert_int_equal(n, strlen(want));
}

static void test_serial_text(void **state)
{
    (void)state;
    expect_serial(1, false, SL_CELL_DATE, "1900-01-01");
    expect_serial(59, false, SL_CELL_DATE, "1900-02-28");
    expect_serial(60, false, SL_CELL_DATE, "1900-02-29"); /* Lotus 1-2-3's day */
    expect_serial(61, false, SL_CELL_DATE, "1900-03-01");
    expect_serial(43831, false, SL_CELL_DATE, "2020-01-01");
    expect_serial(43831.75, false, SL_CELL_DATE, "2020-01-01");
    expect_serial(73110, false, SL_CELL_DATE, "2100-03-01");
    expect_serial(2958465, false, SL_CELL_DATE, "9999-12-31");
    expect_serial(2958466, false, SL_CELL_DATE, "");
    expect_serial(-1, false, SL_CELL_DATE, "");
    expect_serial(NAN, false, SL_CELL_DATE, "");
    expect_serial(43831, false, SL_CELL_NUMBER, "");
    expect_serial(43831.5, false, SL_CELL_DATETIME, "2020-01-01T12:00:00");
    expect_serial(43831, false, SL_CELL_DATETIME, "2020-01-01T00:00:00");
    expect_serial(45418.297326388889, false, SL_CELL_DATETIME, "2024-05-06T07:08:09");
    expect_serial(43831 + 0.5 / 86400, false, SL_CELL_DATETIME, "2020-01-01T00:00:00.500");
    expect_serial(43831.99999999, false, SL_CELL_DATETIME, "2020-01-01T23:59:59.999");
    expect_serial(43831.999999999, false, SL_CELL_DATETIME, "2020-01-02T00:00:00");
    expect_serial(0.5, false, SL_CELL_DATE, "12:00:00"); /* no day in the 1900 system */
    expect_serial(0.25, false, SL_CELL_DATETIME, "06:00:00");
    expect_serial(0.395833333333333, false, SL_CELL_TIME, "09:30:00");
    expect_serial(1.75, false, SL_CELL_TIME, "18:00:00");
    expect_serial(1.5, false, SL_CELL_DURATION, "36:00:00");
    expect_serial(0.000011574074074074, false, SL_CELL_TIME, "00:00:01");
    expect_serial(0, true, SL_CELL_DATE, "1904-01-01");
    expect_serial(1, true, SL_CELL_DATE, "1904-01-02");
    expect_serial(42369, true, SL_CELL_DATE, "2020-01-01");
    expect_serial(0.5, true, SL_CELL_DATETIME, "1904-01-01T12:00:00");
    expect_serial(2957003, true, SL_CELL_DATE, "9999-12-31");
    expect_serial(2957004, true, SL_CELL_DATE, "");
    char out[SL_SHEET_NUM_MAX];
    sl_sheet_cell_text(43831, false, SL_CELL_DATE, out);
    assert_string_equal(out, "2020-01-01");
    sl_sheet_cell_text(-3.5, false, SL_CELL_DATE, out);
    assert_string_equal(out, "-3.5");
    sl_sheet_cell_text(43831, false, SL_CELL_NUMBER, out);
    assert_string_equal(out, "43831");
}

static void test_col_name(void **state)
{
    (void)state;
    static const struct {
        uint32_t col;
        const char *name;
    } cases[] = {{0, "A"},    {25, "Z"},    {26, "AA"},    {51, "AZ"},
                 {701, "ZZ"}, {702, "AAA"}, {16383, "XFD"}};
    char out[8];
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        sl_sheet_col_name(cases[i].col, out);
        assert_string_equal(out, cases[i].name);
    }
}

/* ---- reading ---- */

/* Reads fd with o; *out the rows (caller frees), err the message. */
static int read_fd(int fd, const struct sl_sheet_opts *o, char **out, char *err, size_t errsz)
{
    return rt_sheet_read_fd(sl_xlsx_read_fd, fd, o, out, err, errsz);
}

static void expect_file(const char *path, const struct sl_sheet_opts *o, const char *rows)
{
    rt_sheet_expect(sl_xlsx_read_fd, path, o, rows);
}

static void expect_file_fail(const char *path, const struct sl_sheet_opts *o, int rc,
                             const char *msg)
{
    rt_sheet_expect_fail(sl_xlsx_read_fd, path, o, rc, msg);
}

#define STORES_HEADER                                                                              \
    "H Store ID|Name|City|Opened|Revenue|Active|Updated|Opens|Share|Name_2|_11|Total|Closed on\n"
#define STORES_ROWS(r2_revenue)                                                                    \
    "R1 Store ID=S-001|Name=Berlin Mitte|City=Berlin|Opened=2019-03-01|Revenue=1234.5|"            \
    "Active=true|Updated=2024-05-06T07:08:09|Opens=09:30:00|Share=0.25|Name_2=Alias A|_11=x|"      \
    "Total=<null>|Closed on=2100-03-01\n"                                                          \
    "R2 Store ID=S-002|Name=Z\xc3\xbcrich Hbf|City=Z\xc3\xbcrich|Opened=1904-02-29|"               \
    "Revenue=" r2_revenue "|Active=false|Updated=1999-12-31T23:59:59|Opens=00:00:01|"              \
    "Share=0.0000001|Name_2=<null>|_11=<null>|Total=<null>|Closed on=2024-02-29\n"                 \
    "R3 Store ID=S-003|Name=Hamburg\nHafen|City=Hamburg|Opened=31.02.2020|"                        \
    "Revenue=1000000000000000000000|Active=true|Updated=<null>|Opens=<null>|Share=-42|"            \
    "Name_2=Alias C|_11=<null>|Total=<null>|Closed on=<null>\n"                                    \
    "R4 Store ID=S-001|Name=Berlin (again)|City=Berlin|Opened=2020-01-01|Revenue=7|"               \
    "Active=false|Updated=<null>|Opens=<null>|Share=<null>|Name_2=<null>|_11=<null>|"              \
    "Total=<null>|Closed on=<null>\n"                                                              \
    "R5 Store ID=S-004|Name=<null>|City=K\xc3\xb6ln|Opened=<null>|Revenue=12|Active=<null>|"       \
    "Updated=<null>|Opens=<null>|Share=<null>|Name_2=<null>|_11=<null>|Total=<null>|"              \
    "Closed on=<null>\n"

/* openpyxl's workbook: the sheet by name and by number, header row 2, a
 * blank row inside and formatted empty rows at the end, dates in both
 * systems, a formula openpyxl never calculated (no cached result). */
static void test_openpyxl_fixtures(void **state)
{
    (void)state;
    struct sl_sheet_opts o = {.sheet = "Stores", .header_row = 2};
    /* openpyxl writes 0.1 + 0.2 rounded to "0.3" */
    expect_file(SHEETS "stores.xlsx", &o, STORES_HEADER STORES_ROWS("0.3"));
    expect_file(SHEETS "stores_1904.xlsx", &o, STORES_HEADER STORES_ROWS("0.3"));
    o = (struct sl_sheet_opts){.sheet = "stores", .header_row = 2}; /* case-insensitive */
    expect_file(SHEETS "stores.xlsx", &o, STORES_HEADER STORES_ROWS("0.3"));
    o = (struct sl_sheet_opts){.sheet_index = 2, .header_row = 2};
    expect_file(SHEETS "stores.xlsx", &o, STORES_HEADER STORES_ROWS("0.3"));
    /* the first sheet by default; a hidden sheet by number */
    expect_file(SHEETS "stores.xlsx", NULL,
                "H Store export for the ERP\nR1 Store export for the ERP=The data is on the sheet "
                "Stores\n");
    o = (struct sl_sheet_opts){.sheet_index = 3};
    expect_file(SHEETS "stores.xlsx", &o, "H key\nR1 key=secret\n");
}

/* libxlsxwriter's workbooks: shared strings, a rich string, formulas with
 * cached numbers, text and dates, a boolean; and inline strings. */
static void test_libxlsxwriter_fixtures(void **state)
{
    (void)state;
    expect_file(SHEETS "cached.xlsx", NULL,
                "H Item|Price|Qty|Sum|Label|Due|Check|Err|Note\n"
                "R1 Item=apple|Price=0.5|Qty=3|Sum=1.5|Label=apple x3|Due=2024-02-29|Check=true|"
                "Err=0|Note=Fresh today\n"
                "R2 Item=pear|Price=<null>|Qty=<null>|Sum=0|Label=<null>|Due=<null>|Check=<null>|"
                "Err=<null>|Note=<null>\n");
    expect_file(SHEETS "cached_inline.xlsx", NULL,
                "H Item|Price|Note\nR1 Item=plum|Price=2.25|Note=tab\there\n"
                "R2 Item=cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
                "e|Price=4|Note=<null>\n");
}

/* A workbook built here: parts[] name/content pairs (content NULL: the part
 * is absent), written by libzip into a memfd. */
struct part {
    const char *name, *data;
};

static int zip_fd(const struct part *parts, size_t n)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    assert_non_null(src);
    zip_source_keep(src);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    assert_non_null(za);
    for (size_t i = 0; i < n; i++) {
        if (!parts[i].data)
            continue;
        zip_source_t *s = zip_source_buffer(za, parts[i].data, strlen(parts[i].data), 0);
        assert_non_null(s);
        assert_true(zip_file_add(za, parts[i].name, s, ZIP_FL_OVERWRITE) >= 0);
    }
    assert_int_equal(zip_close(za), 0);
    zip_stat_t st;
    assert_int_equal(zip_source_open(src), 0);
    assert_int_equal(zip_source_stat(src, &st), 0);
    char *buf = malloc(st.size ? st.size : 1);
    assert_int_equal(zip_source_read(src, buf, st.size), (zip_int64_t)st.size);
    zip_source_close(src);
    zip_source_free(src);
    int fd = rt_mem_fd(buf, st.size);
    free(buf);
    return fd;
}

#define NS      "xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\""
#define RNS     "xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\""
#define RELS_NS "xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\""
#define REL_T   "http://schemas.openxmlformats.org/officeDocument/2006/relationships/"

static const char PKG_RELS[] = "<?xml version=\"1.0\"?><Relationships " RELS_NS
                               "><Relationship Id=\"rId1\" Type=\"" REL_T "officeDocument\" "
                               "Target=\"xl/workbook.xml\"/></Relationships>";
static const char WB_RELS[] =
    "<Relationships " RELS_NS "><Relationship Id=\"rId1\" Type=\"" REL_T
    "worksheet\" Target=\"worksheets/sheet1.xml\"/><Relationship Id=\"rId2\" Type=\"" REL_T
    "styles\" Target=\"/xl/styles.xml\"/><Relationship Id=\"rId3\" Type=\"" REL_T
    "sharedStrings\" Target=\"./sharedStrings.xml\"/><Relationship Id=\"rId4\" Type=\"" REL_T
    "chartsheet\" Target=\"chartsheets/sheet1.xml\"/><Relationship Id=\"rId9\" Type=\"" REL_T
    "hyperlink\" Target=\"http://example.com/\" TargetMode=\"External\"/></Relationships>";
static const char WB[] = "<workbook " NS " " RNS "><workbookPr date1904=\"false\"/><sheets>"
                         "<sheet name=\"Data\" sheetId=\"1\" r:id=\"rId1\"/>"
                         "<sheet name=\"Chart1\" sheetId=\"2\" r:id=\"rId4\"/>"
                         "<sheet name=\"Lost\" sheetId=\"3\" r:id=\"rId7\"/></sheets></workbook>";
static const char STYLES[] =
    "<styleSheet " NS "><numFmts count=\"2\"><numFmt numFmtId=\"164\" formatCode=\"dd/mm/yyyy\"/>"
    "<numFmt numFmtId=\"165\" formatCode=\"0.0&quot;h&quot;\"/></numFmts>"
    "<cellStyleXfs count=\"1\"><xf numFmtId=\"14\"/></cellStyleXfs>"
    "<cellXfs count=\"5\"><xf numFmtId=\"0\"/><xf numFmtId=\"14\" applyNumberFormat=\"1\"/>"
    "<xf numFmtId=\"164\"/><xf numFmtId=\"165\"/><xf numFmtId=\"22\"/></cellXfs>"
    "<dxfs><dxf><numFmt numFmtId=\"166\" formatCode=\"yyyy\"/></dxf></dxfs></styleSheet>";
static const char SST[] = "<sst " NS " count=\"5\" uniqueCount=\"5\"><si><t>id</t></si>"
                          "<si><t>name</t></si><si><r><rPr><b/></rPr><t>Rich </t></r><r><t "
                          "xml:space=\"preserve\">text </t></r><rPh><t>PHONETIC</t></rPh></si>"
                          "<si><t>a_x000D__x000A_b_x005F_x0041_ _xD83D__xDE00_ _x0000_ _xZZ</t>"
                          "</si><si/></sst>";

/* Reads a workbook of WB with sheet as the Data sheet. */
static int run_sheet(const char *sheet, const struct sl_sheet_opts *o, char **out, char *err,
                     size_t errsz)
{
    const struct part parts[] = {
        {"_rels/.rels", PKG_RELS},
        {"xl/workbook.xml", WB},
        {"xl/_rels/workbook.xml.rels", WB_RELS},
        {"xl/styles.xml", STYLES},
        {"xl/sharedStrings.xml", SST},
        {"xl/worksheets/sheet1.xml", sheet},
    };
    int fd = zip_fd(parts, SL_ARRAY_LEN(parts));
    int rc = read_fd(fd, o, out, err, errsz);
    close(fd);
    return rc;
}

#define SHEET(rows) "<worksheet " NS "><sheetData>" rows "</sheetData></worksheet>"

static void expect_sheet(const char *sheet, const struct sl_sheet_opts *o, const char *rows)
{
    char *out, err[1024];
    int rc = run_sheet(sheet, o, &out, err, sizeof(err));
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    if (strcmp(out, rows) != 0)
        fail_msg("\n%s\nexpected:\n%s", out, rows);
    free(out);
}

static void expect_sheet_fail(const char *sheet, const struct sl_sheet_opts *o, int rc,
                              const char *msg)
{
    char *out, err[1024];
    int r = run_sheet(sheet, o, &out, err, sizeof(err));
    free(out);
    if (r != rc || !strstr(err, msg))
        fail_msg("rc %d '%s', expected %d '%s'", r, err, rc, msg);
}

static void test_cells(void **state)
{
    (void)state;
    expect_sheet(
        SHEET("<row r=\"1\"><c r=\"A1\" t=\"s\"><v>0</v></c><c r=\"B1\" t=\"s\"><v>1</v></c>"
              "<c r=\"C1\" t=\"inlineStr\"><is><t>when</t></is></c><c r=\"D1\" "
              "t=\"inlineStr\"><is><t>d2</t></is></c><c r=\"E1\" t=\"str\"><v>hours</v></c>"
              "<c r=\"F1\" t=\"inlineStr\"><is><t>at</t></is></c>"
              "<c r=\"G1\" t=\"inlineStr\"><is><t>f</t></is></c></row>"
              /* numbers by style: 14 date, custom date, "0.0h" a number, 22 datetime */
              "<row r=\"2\"><c r=\"A2\"><v>7</v></c><c r=\"B2\" t=\"s\"><v>2</v></c>"
              "<c r=\"C2\" s=\"1\"><v>45351</v></c><c r=\"D2\" s=\"2\"><v>45351.9</v></c>"
              "<c r=\"E2\" s=\"3\"><v>7.5</v></c><c r=\"F2\" s=\"4\"><v>45351.5</v></c>"
              "<c r=\"G2\" t=\"b\"><f>TRUE()</f><v>1</v></c></row>"
              /* escapes, an empty shared string, error and ISO date cells, CDATA */
              "<row r=\"3\"><c r=\"A3\"><v>-1.5E-3</v></c><c r=\"B3\" t=\"s\"><v>3</v></c>"
              "<c r=\"C3\" t=\"e\"><f>1/0</f><v>#DIV/0!</v></c><c r=\"D3\" "
              "t=\"d\"><v>2024-02-29T10:00:00</v></c><c r=\"E3\" t=\"s\"><v>4</v></c>"
              "<c r=\"F3\" t=\"inlineStr\"><is><t><![CDATA[<&]]]]><![CDATA[>]]></t></is></c>"
              "<c r=\"G3\" t=\"b\"><v>0</v></c></row>"
              /* a style index out of range: a number; a formula with no result */
              "<row r=\"4\"><c r=\"A4\" s=\"99\"><v>45351</v></c><c r=\"B4\" "
              "t=\"inlineStr\"><is><r><t>x</t></r><r><t>y</t></r><rPh><t>z</t></rPh></is></c>"
              "<c r=\"C4\"><f>A4*2</f></c><c r=\"D4\"><f>A4*2</f><v></v></c></row>"),
        NULL,
        "H id|name|when|d2|hours|at|f\n"
        "R1 id=7|name=Rich text |when=2024-02-29|d2=2024-02-29|hours=7.5|at=2024-02-29T12:00:00|"
        "f=true\n"
        "R2 id=-0.0015|name=a\r\nb_x0041_ \xf0\x9f\x98\x80 \xef\xbf\xbd _xZZ|when=#DIV/0!|"
        "d2=2024-02-29T10:00:00|hours=|at=<&]]>|f=false\n"
        "R3 id=45351|name=xy|when=<null>|d2=<null>|hours=<null>|at=<null>|f=<null>\n");
}

static void test_rows_and_names(void **state)
{
    (void)state;
    /* duplicate and empty names, a row shorter than the header, cells
     * without references, blank rows (empty string cells too) skipped,
     * formatted empty cells at the end */
    expect_sheet(SHEET("<row r=\"1\"><c t=\"inlineStr\"><is><t>a</t></is></c>"
                       "<c t=\"inlineStr\"><is><t>a</t></is></c><c r=\"D1\" "
                       "t=\"inlineStr\"><is><t>a_2</t></is></c><c t=\"inlineStr\"><is><t>a</t>"
                       "</is></c><c r=\"G1\" s=\"1\"/></row>"
                       "<row r=\"2\"><c><v>1</v></c><c><v>2</v></c><c><v>3</v></c></row>"
                       "<row r=\"3\"/><row r=\"4\"><c r=\"B4\" t=\"inlineStr\"><is><t></t></is>"
                       "</c></row><row><c r=\"E5\"><v>5</v></c></row>"
                       "<row r=\"9\"><c r=\"A9\" s=\"1\"/><c r=\"B9\" s=\"1\"/></row>"),
                 NULL,
                 "H a|a_2|_3|a_2_2|a_3\n"
                 "R1 a=1|a_2=2|_3=3|a_2_2=<null>|a_3=<null>\n"
                 "R2 a=<null>|a_2=<null>|_3=<null>|a_2_2=<null>|a_3=5\n");
    /* a value right of the header: the row carries the error, the value
     * is dropped */
    expect_sheet(SHEET("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>a</t></is></c></row>"
                       "<row r=\"2\"><c r=\"A2\"><v>1</v></c><c r=\"C2\" "
                       "t=\"inlineStr\"><is><t>stray</t></is></c></row>"),
                 NULL, "H a\nR1 a=1 !cell C2: 'stray' is right of the header's last column A\n");
    /* rows above the header are skipped, whatever they hold */
    struct sl_sheet_opts o = {.header_row = 3};
    expect_sheet(SHEET("<row r=\"1\"><c r=\"C1\"><v>title</v></c></row>"
                       "<row r=\"3\"><c r=\"B3\" t=\"inlineStr\"><is><t>k</t></is></c></row>"
                       "<row r=\"4\"><c r=\"A4\"><v>0</v></c><c r=\"B4\"><v>9</v></c></row>"),
                 &o, "H _1|k\nR1 _1=0|k=9\n");
    /* cells the reader cannot read: the row carries the first problem */
    expect_sheet(SHEET("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t>a</t></is></c>"
                       "<c r=\"B1\" t=\"inlineStr\"><is><t>b</t></is></c></row>"
                       "<row r=\"2\"><c r=\"A2\"><v>12abc</v></c><c r=\"B2\" "
                       "t=\"s\"><v>99</v></c></row>"
                       "<row r=\"3\"><c r=\"A3\" t=\"s\"><v>x</v></c><c r=\"B3\"><v>1</v></c></row>"
                       "<row r=\"4\"><c r=\"A4\" t=\"b\"><v>2</v></c><c r=\"B4\" "
                       "t=\"zz\"><v>1</v></c></row>"
                       "<row r=\"5\"><c r=\"A5\" t=\"z\"><v>1</v></c><c r=\"B5\"><v>INF</v></c>"
                       "</row>"),
                 NULL,
                 "H a|b\n"
                 "R1 a=12abc|b=<null> !cell A2: '12abc' is not a number\n"
                 "R2 a=<null>|b=1 !cell A3: 'x' is no shared string index\n"
                 "R3 a=2|b=<null> !cell A4: '2' is not a boolean (0 or 1)\n"
                 "R4 a=<null>|b=INF !cell A5: unknown cell type 'z'\n");
    expect_sheet(SHEET("<row r=\"1\"><c r=\"A1\"><v>1</v></c></row><row r=\"2\"><c r=\"A2\" "
                       "t=\"s\"><v>5</v></c></row>"),
                 NULL,
                 "H 1\nR1 1=<null> !cell A2: shared string 5 does not exist (the table has 5)\n");
}

static void test_sheet_errors(void **state)
{
    (void)state;
    const char *ok = SHEET("<row r=\"1\"><c r=\"A1\"><v>1</v></c></row>");
    struct sl_sheet_opts o = {.sheet = "Nope"};
    expect_sheet_fail(ok, &o, SL_ERR_PARSE,
                      "no sheet named 'Nope' (the workbook has 'Data', 'Chart1', 'Lost')");
    o = (struct sl_sheet_opts){.sheet_index = 4};
    expect_sheet_fail(ok, &o, SL_ERR_PARSE,
                      "no sheet 4: the workbook has 3 sheets ('Data', 'Chart1', 'Lost')");
    o = (struct sl_sheet_opts){.sheet = "Chart1"};
    expect_sheet_fail(ok, &o, SL_ERR_PARSE,
                      "sheet 'Chart1' is not a worksheet (it is a chartsheet)");
    o = (struct sl_sheet_opts){.sheet = "Lost"};
    expect_sheet_fail(ok, &o, SL_ERR_PARSE, "sheet 'Lost' has no part (relationship 'rId7'");
    o = (struct sl_sheet_opts){.header_row = 2};
    expect_sheet_fail(ok, &o, SL_ERR_PARSE, "sheet 'Data': the header row 2 is empty");
    expect_sheet_fail(SHEET(""), NULL, SL_ERR_PARSE, "sheet 'Data' is empty");
    expect_sheet_fail("<worksheet " NS "/>", NULL, SL_ERR_PARSE, "sheet 'Data' is empty");
    expect_sheet_fail(SHEET("<row r=\"2\"><c r=\"A2\"><v>1</v></c></row>"), NULL, SL_ERR_PARSE,
                      "sheet 'Data': the header row 1 is empty");
    expect_sheet_fail(SHEET("<row r=\"1\"><c r=\"A1\" t=\"inlineStr\"><is><t></t></is></c></row>"
                            "<row r=\"2\"><c r=\"A2\"><v>1</v></c></row>"),
                      NULL, SL_ERR_PARSE, "sheet 'Data': the header row 1 is empty");
    expect_sheet_fail(SHEET("<row r=\"1\"><c r=\"A1\" t=\"s\"><v>77</v></c></row>"), NULL,
                      SL_ERR_PARSE,
                      "sheet 'Data', header row 1: cell A1: shared string 77 does not exist");
    expect_sheet_fail(SHEET("<row r=\"1\"><c><v>1</v></c></row><row r=\"3\"/><row r=\"2\"/>"), NULL,
                      SL_ERR_PARSE, "sheet 'Data': row 2 comes after row 3");
    expect_sheet_fail(SHEET("<row r=\"1048577\"/>"), NULL, SL_ERR_PARSE,
                      "row 1048577 is out of range");
    expect_sheet_fail(SHEET("<row r=\"x\"/>"), NULL, SL_ERR_PARSE, "'x' is no row number");
    expect_sheet_fail(SHEET("<row r=\"1\"><c r=\"XFE1\"><v>1</v></c></row>"), NULL, SL_ERR_PARSE,
                      "'XFE1' is no cell reference");
    expect_sheet_fail(SHEET("<row r=\"1\"><c r=\"A1\"><v>1</v></c></row><row>"), NULL, SL_ERR_PARSE,
                      "xl/worksheets/sheet1.xml: malformed XML at line 1, column");
    /* a DTD, a processing instruction, comments */
    expect_sheet_fail("<?xml version=\"1.0\"?><!DOCTYPE worksheet [<!ENTITY e \"x\">]>" SHEET(""),
                      NULL, SL_ERR_PARSE, "a DTD or declaration (<!D...) is not allowed");
    expect_sheet("<?xml version=\"1.0\"?><!-- c --><?pi x?>" SHEET(
                     "<row r=\"1\"><!-- a --><c r=\"A1\" t=\"inlineStr\"><is><t>a<!-- b -->b"
                     "</t></is></c></row><?pi?><row r=\"2\"><c r=\"A2\"><v>1</v></c></row>"),
                 NULL, "H ab\nR1 ab=1\n");
    /* the callback stops the reader */
    const struct part parts[] = {
        {"xl/workbook.xml", WB},
        {"xl/_rels/workbook.xml.rels", WB_RELS},
        {"xl/worksheets/sheet1.xml",
         SHEET("<row r=\"1\"><c><v>1</v></c></row><row r=\"2\"><c><v>2</v></c></row>"
               "<row r=\"3\"><c><v>3</v></c></row>")},
    };
    int fd = zip_fd(parts, SL_ARRAY_LEN(parts)); /* no _rels/.rels: xl/workbook.xml */
    struct rt_coll c = {.out = SL_BUF_INIT, .stop_at = 1};
    char err[256];
    assert_int_equal(sl_xlsx_read_fd(fd, NULL, NULL, rt_row, &c, NULL, err, sizeof(err)), 7);
    assert_int_equal(c.rows, 1);
    close(fd);
    sl_buf_cleanup(&c.out);
}

/* Bad files: each a failure with a reason, in bounded time. */
static void test_bad_files(void **state)
{
    (void)state;
    struct sl_sheet_opts o = {.sheet = "Stores", .header_row = 2};
    expect_file_fail(SHEETS "bad/truncated.xlsx", &o, SL_ERR_PARSE,
                     "not an XLSX file: no zip archive (the file is truncated");
    expect_file_fail(SHEETS "bad/corrupt.xlsx", &o, SL_ERR_PARSE,
                     "xl/worksheets/sheet2.xml cannot be inflated: ");
    expect_file_fail(SHEETS "bad/no_workbook.xlsx", NULL, SL_ERR_PARSE,
                     "not an XLSX file: the zip archive has no workbook (xl/workbook.xml)");
    expect_file_fail(SHEETS "bad/dtd.xlsx", NULL, SL_ERR_PARSE,
                     "xl/worksheets/sheet1.xml: a DTD or declaration (<!D...) is not allowed");
    expect_file_fail(SHEETS "bad/bomb.xlsx", NULL, SL_ERR_LIMIT,
                     "xl/worksheets/sheet1.xml declares 67109056 bytes from");
    expect_file_fail(SHEETS "bad/bomb_lying.xlsx", NULL, SL_ERR_LIMIT,
                     "xl/worksheets/sheet1.xml inflates to more than 200 times its compressed "
                     "size");
    expect_file_fail(SHEETS "stores.xls", NULL, SL_ERR_PARSE, "not an XLSX file: no zip archive");
    o = (struct sl_sheet_opts){.sheet = "Stors"};
    expect_file_fail(SHEETS "stores.xlsx", &o, SL_ERR_PARSE,
                     "no sheet named 'Stors' (the workbook has 'Notes', 'Stores', 'Hidden')");
    char *out, err[512];
    int fd = rt_mem_fd("", 0);
    assert_int_equal(read_fd(fd, NULL, &out, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file is empty");
    free(out);
    close(fd);
    fd = rt_mem_fd("PK\x03\x04garbage", 11);
    assert_int_equal(read_fd(fd, NULL, &out, err, sizeof(err)), SL_ERR_PARSE);
    assert_non_null(strstr(err, "not an XLSX file"));
    free(out);
    close(fd);
    /* an OpenDocument spreadsheet */
    const struct part ods[] = {{"mimetype", "application/vnd.oasis.opendocument.spreadsheet"},
                               {"content.xml", "<x/>"}};
    fd = zip_fd(ods, SL_ARRAY_LEN(ods));
    assert_int_equal(read_fd(fd, NULL, &out, err, sizeof(err)), SL_ERR_PARSE);
    assert_non_null(strstr(err, "an OpenDocument file (.ods?)"));
    free(out);
    close(fd);
    /* every prefix of a real workbook fails cleanly or reads it whole;
     * flipped bytes anywhere: a failure with a reason or rows, never a crash */
    rt_sheet_read_damaged(sl_xlsx_read_fd, SHEETS "cached.xlsx", 1000, 97, 53, SL_ERR_PARSE);
}

static void test_limits(void **state)
{
    (void)state;
    char *out, err[512];
    /* inflated bytes in all */
    struct sl_sheet_opts o = {.max_inflated = 4096};
    int fd = open(SHEETS "stores.xlsx", O_RDONLY);
    assert_int_equal(read_fd(fd, &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_non_null(strstr(err, "more than 4096 bytes"));
    free(out);
    close(fd);
    /* the shared strings */
    o = (struct sl_sheet_opts){.max_strings = 64};
    fd = open(SHEETS "cached.xlsx", O_RDONLY);
    assert_int_equal(read_fd(fd, &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_non_null(
        strstr(err, "xl/sharedStrings.xml: the shared strings are larger than 64 bytes"));
    free(out);
    close(fd);
    /* a row */
    o = (struct sl_sheet_opts){.max_row = 40, .sheet = "Stores", .header_row = 2};
    fd = open(SHEETS "stores.xlsx", O_RDONLY);
    assert_int_equal(read_fd(fd, &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_non_null(strstr(err, "sheet 'Stores', row 2: the values are longer than 40 bytes"));
    free(out);
    close(fd);
    /* the ratio, lower than the default */
    o = (struct sl_sheet_opts){.max_ratio = 2};
    const char *big_sheet = NULL;
    struct sl_buf b = SL_BUF_INIT;
    sl_buf_puts(&b, "<worksheet " NS "><sheetData>");
    for (int i = 1; i <= 60000; i++)
        sl_buf_printf(&b, "<row r=\"%d\"><c r=\"A%d\"><v>1</v></c></row>", i, i);
    sl_buf_puts(&b, "</sheetData></worksheet>");
    big_sheet = b.data;
    const struct part parts[] = {{"xl/workbook.xml", WB},
                                 {"xl/_rels/workbook.xml.rels", WB_RELS},
                                 {"xl/worksheets/sheet1.xml", big_sheet}};
    fd = zip_fd(parts, SL_ARRAY_LEN(parts));
    assert_int_equal(read_fd(fd, &o, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_non_null(strstr(err, "more than 2 times its compressed size"));
    free(out);
    close(fd);
    sl_buf_cleanup(&b);
    /* attributes of one element */
    sl_buf_puts(&b, "<worksheet " NS "><sheetData><row r=\"1\"><c r=\"A1\"");
    for (int i = 0; i < 1100; i++)
        sl_buf_printf(&b, " a%d=\"1\"", i);
    sl_buf_puts(&b, "><v>1</v></c></row></sheetData></worksheet>");
    expect_sheet_fail(b.data, NULL, SL_ERR_LIMIT, "an element with more than 1024 attributes");
    sl_buf_cleanup(&b);
    /* entries of the archive: counted before libzip reads the directory */
    zip_error_t ze;
    zip_error_init(&ze);
    char path[] = "/tmp/sluice-xlsx-XXXXXX";
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    close(tfd);
    zip_t *za = zip_open(path, ZIP_TRUNCATE, NULL);
    assert_non_null(za);
    for (int i = 0; i < 10001; i++) {
        char name[32];
        snprintf(name, sizeof(name), "e%d", i);
        zip_source_t *s = zip_source_buffer(za, "", 0, 0);
        assert_true(zip_file_add(za, name, s, 0) >= 0);
    }
    assert_int_equal(zip_close(za), 0);
    double t0 = rt_now();
    fd = open(path, O_RDONLY);
    assert_int_equal(read_fd(fd, NULL, &out, err, sizeof(err)), SL_ERR_LIMIT);
    assert_string_equal(err, "the archive has 10001 entries, more than 10000 (a zip bomb?)");
    assert_true(rt_now() - t0 < 2);
    free(out);
    close(fd);
    unlink(path);
}

/* A sheet generated while libzip compresses it: n rows of 4 cells. */
struct gen {
    zip_error_t err;
    long n, row;
    char buf[512];
    size_t len, pos;
    bool done;
};

static zip_int64_t gen_source(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    struct gen *g = ud;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        g->row = 0;
        g->len = g->pos = 0;
        g->done = false;
        return 0;
    case ZIP_SOURCE_READ: {
        size_t done = 0;
        while (done < len) {
            if (g->pos == g->len) {
                if (g->done)
                    break;
                if (g->row == 0) {
                    g->len = (size_t)snprintf(g->buf, sizeof(g->buf),
                                              "<worksheet " NS "><sheetData><row r=\"1\"><c "
                                              "t=\"inlineStr\"><is><t>id</t></is></c><c "
                                              "t=\"inlineStr\"><is><t>name</t></is></c><c "
                                              "t=\"inlineStr\"><is><t>day</t></is></c><c "
                                              "t=\"inlineStr\"><is><t>ok</t></is></c></row>");
                } else if (g->row <= g->n) {
                    long r = g->row + 1;
                    g->len = (size_t)snprintf(
                        g->buf, sizeof(g->buf),
                        "<row r=\"%ld\" spans=\"1:4\"><c r=\"A%ld\"><v>%ld</v></c><c r=\"B%ld\" "
                        "t=\"inlineStr\"><is><t>Store %ld M\xc3\xbcnchen</t></is></c><c "
                        "r=\"C%ld\" s=\"1\"><v>%ld</v></c><c r=\"D%ld\" t=\"b\"><v>%ld</v></c>"
                        "</row>",
                        r, r, g->row, r, g->row, r, 40000 + g->row % 20000, r, g->row & 1);
                } else {
                    g->len = (size_t)snprintf(g->buf, sizeof(g->buf), "</sheetData></worksheet>");
                    g->done = true;
                }
                g->pos = 0;
                g->row++;
            }
            size_t k = g->len - g->pos;
            if (k > len - done)
                k = len - done;
            memcpy((char *)data + done, g->buf + g->pos, k);
            g->pos += k;
            done += k;
        }
        return (zip_int64_t)done;
    }
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_FREE:
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = data;
        zip_stat_init(st);
        return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&g->err, data, len);
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE,
                                              ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE,
                                              -1);
    default:
        return -1;
    }
}

struct big {
    uint64_t rows;
    bool ok;
};

static int big_row(void *ud, const struct sl_row *row)
{
    struct big *b = ud;
    b->rows++;
    long r = (long)row->row;
    char day[16];
    sl_sheet_serial_text(40000 + r % 20000, false, SL_CELL_DATE, day);
    if (row->n != 4 || row->error || strtol(row->values[0], NULL, 10) != r ||
        strncmp(row->values[1], "Store ", 6) != 0 || strcmp(row->values[2], day) != 0 ||
        strcmp(row->values[3], (r & 1) ? "true" : "false") != 0)
        b->ok = false;
    return 0;
}

static void test_big_stream(void **state)
{
    (void)state;
    const long nrows = READER_TEST_ASAN ? 100000 : 400000; /* ~170 bytes each: ~70 MB */
    char path[] = "/tmp/sluice-xlsx-big-XXXXXX";
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    close(tfd);
    zip_t *za = zip_open(path, ZIP_TRUNCATE, NULL);
    assert_non_null(za);
    const char *styles = "<styleSheet " NS "><cellXfs><xf numFmtId=\"0\"/><xf numFmtId=\"14\"/>"
                         "</cellXfs></styleSheet>";
    const struct part parts[] = {{"_rels/.rels", PKG_RELS},
                                 {"xl/workbook.xml", WB},
                                 {"xl/_rels/workbook.xml.rels", WB_RELS},
                                 {"xl/styles.xml", styles}};
    for (size_t i = 0; i < SL_ARRAY_LEN(parts); i++)
        assert_true(zip_file_add(za, parts[i].name,
                                 zip_source_buffer(za, parts[i].data, strlen(parts[i].data), 0),
                                 0) >= 0);
    struct gen g = {.n = nrows};
    zip_error_init(&g.err);
    zip_source_t *gs = zip_source_function(za, gen_source, &g);
    assert_non_null(gs);
    assert_true(zip_file_add(za, "xl/worksheets/sheet1.xml", gs, 0) >= 0);
    assert_int_equal(zip_close(za), 0);

    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct big b = {.ok = true};
    struct sl_reader_stats st = {0};
    char err[512];
    struct rt_stream m;
    rt_stream_start(&m);
    int rc = sl_xlsx_read_fd(fd, NULL, NULL, big_row, &b, &st, err, sizeof(err));
    rt_stream_stop(&m);
    struct stat sb;
    fstat(fd, &sb);
    close(fd);
    unlink(path);
    if (rc)
        fail_msg("rc %d: %s", rc, err);
    assert_int_equal(b.rows, nrows);
    assert_true(b.ok);
    assert_int_equal(st.bytes, (uint64_t)sb.st_size);
    rt_stream_report(&m, "xlsx", (uint64_t)sb.st_size, " on disk", b.rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_number_text),
        cmocka_unit_test(test_numfmt_kind),
        cmocka_unit_test(test_serial_text),
        cmocka_unit_test(test_col_name),
        cmocka_unit_test(test_openpyxl_fixtures),
        cmocka_unit_test(test_libxlsxwriter_fixtures),
        cmocka_unit_test(test_cells),
        cmocka_unit_test(test_rows_and_names),
        cmocka_unit_test(test_sheet_errors),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_big_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
