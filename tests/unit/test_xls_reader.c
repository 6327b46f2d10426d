/*
 * Unit tests of the XLS reader (xls_reader.c, FreeXL): the workbooks xlwt
 * writes (tests/fixtures/sheets/make.py) in the 1900 and 1904 date
 * systems, read with the cell rules of the XLSX reader (the same rows but
 * for what FreeXL cannot tell: booleans are 1/0, formulas have no value),
 * the sheet choice, and truncated, corrupt, slow and foreign files (FreeXL
 * runs in a child process: a crash or a hang there fails the file).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#include "reader_test_util.h"

#define SHEETS SLUICE_FIXTURES "/sheets/"

static int read_fd(int fd, const struct sl_sheet_opts *o, struct rt_coll *c, char *err,
                   size_t errsz)
{
    return rt_sheet_read(sl_xls_read_fd, fd, o, c, err, errsz);
}

static int read_file(const char *path, const struct sl_sheet_opts *o, char **out, char *err,
                     size_t errsz)
{
    return rt_sheet_read_file(sl_xls_read_fd, path, o, out, err, errsz);
}

static void expect_file(const char *path, const struct sl_sheet_opts *o, const char *rows)
{
    rt_sheet_expect(sl_xls_read_fd, path, o, rows);
}

static void expect_fail(const char *path, const struct sl_sheet_opts *o, int rc, const char *msg)
{
    rt_sheet_expect_fail(sl_xls_read_fd, path, o, rc, msg);
}

/* As the XLSX reader gives stores.xlsx, but: xlwt keeps 0.1 + 0.2 exact,
 * booleans are 1 / 0, and the formula is written without a result. */
#define STORES                                                                                     \
    "H Store ID|Name|City|Opened|Revenue|Active|Updated|Opens|Share|Name_2|_11|Total|Closed on\n"  \
    "R1 Store ID=S-001|Name=Berlin Mitte|City=Berlin|Opened=2019-03-01|Revenue=1234.5|"            \
    "Active=1|Updated=2024-05-06T07:08:09|Opens=09:30:00|Share=0.25|Name_2=Alias A|_11=x|"         \
    "Total=<null>|Closed on=2100-03-01\n"                                                          \
    "R2 Store ID=S-002|Name=Z\xc3\xbcrich Hbf|City=Z\xc3\xbcrich|Opened=1904-02-29|"               \
    "Revenue=0.30000000000000004|Active=0|Updated=1999-12-31T23:59:59|Opens=00:00:01|"             \
    "Share=0.0000001|Name_2=<null>|_11=<null>|Total=<null>|Closed on=2024-02-29\n"                 \
    "R3 Store ID=S-003|Name=Hamburg\nHafen|City=Hamburg|Opened=31.02.2020|"                        \
    "Revenue=1000000000000000000000|Active=1|Updated=<null>|Opens=<null>|Share=-42|"               \
    "Name_2=Alias C|_11=<null>|Total=<null>|Closed on=<null>\n"                                    \
    "R4 Store ID=S-001|Name=Berlin (again)|City=Berlin|Opened=2020-01-01|Revenue=7|"               \
    "Active=0|Updated=<null>|Opens=<null>|Share=<null>|Name_2=<null>|_11=<null>|"                  \
    "Total=<null>|Closed on=<null>\n"                                                              \
    "R5 Store ID=S-004|Name=<null>|City=K\xc3\xb6ln|Opened=<null>|Revenue=12|Active=<null>|"       \
    "Updated=<null>|Opens=<null>|Share=<null>|Name_2=<null>|_11=<null>|Total=<null>|"              \
    "Closed on=<null>\n"

static void test_xlwt_fixtures(void **state)
{
    (void)state;
    struct sl_sheet_opts o = {.sheet = "Stores", .header_row = 2};
    expect_file(SHEETS "stores.xls", &o, STORES);
    /* the 1904 date system: the same dates (FreeXL's calendar repaired:
     * 2100-03-01 would be 2100-02-28) */
    expect_file(SHEETS "stores_1904.xls", &o, STORES);
    o = (struct sl_sheet_opts){.sheet = "STORES", .header_row = 2};
    expect_file(SHEETS "stores.xls", &o, STORES);
    o = (struct sl_sheet_opts){.sheet_index = 2, .header_row = 2};
    expect_file(SHEETS "stores.xls", &o, STORES);
    expect_file(SHEETS "stores.xls", NULL,
                "H Store export for the ERP\nR1 Store export for the ERP=The data is on the sheet "
                "Stores\n");
    /* the callback stops the reader */
    int fd = open(SHEETS "stores.xls", O_RDONLY);
    assert_true(fd >= 0);
    struct rt_coll c = {.out = SL_BUF_INIT, .stop_at = 2};
    o = (struct sl_sheet_opts){.sheet = "Stores", .header_row = 2};
    assert_int_equal(read_fd(fd, &o, &c, NULL, 0), 7);
    assert_int_equal(c.rows, 2);
    sl_buf_cleanup(&c.out);
    close(fd);
}

static void test_errors(void **state)
{
    (void)state;
    struct sl_sheet_opts o = {.sheet = "Stors"};
    expect_fail(SHEETS "stores.xls", &o, SL_ERR_PARSE,
                "no sheet named 'Stors' (the workbook has 'Notes', 'Stores', 'Hidden')");
    o = (struct sl_sheet_opts){.sheet_index = 9};
    expect_fail(SHEETS "stores.xls", &o, SL_ERR_PARSE,
                "no sheet 9: the workbook has 3 sheets ('Notes', 'Stores', 'Hidden')");
    o = (struct sl_sheet_opts){.sheet = "Stores", .header_row = 40};
    expect_fail(SHEETS "stores.xls", &o, SL_ERR_PARSE,
                "sheet 'Stores': the header row 40 is empty");
    o = (struct sl_sheet_opts){.sheet = "Stores", .header_row = 2, .max_row = 30};
    expect_fail(SHEETS "stores.xls", &o, SL_ERR_LIMIT,
                "sheet 'Stores', row 2: the values are longer than 30 bytes");
    /* FreeXL needs seconds per far-future date: its process is stopped */
    o = (struct sl_sheet_opts){.timeout_s = 1};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    expect_fail(SHEETS "bad/slow_dates.xls", &o, SL_ERR_LIMIT,
                "FreeXL took more than 1 s without a cell: a corrupt or crafted file");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 4);
    /* its memory is limited (not under AddressSanitizer, which maps terabytes) */
    if (!READER_TEST_ASAN) {
        char *out, err[512];
        o = (struct sl_sheet_opts){.max_memory = 4096};
        assert_true(read_file(SHEETS "stores.xls", &o, &out, err, sizeof(err)) < 0);
        assert_true(err[0] != '\0'); /* whatever FreeXL makes of failing allocations */
        free(out);
    }
    expect_fail(SHEETS "bad/truncated.xls", NULL, SL_ERR_PARSE,
                "the XLS file is truncated or corrupt");
    expect_fail(SHEETS "bad/corrupt.xls", NULL, SL_ERR_PARSE, "the XLS file");
    expect_fail(SHEETS "stores.xlsx", NULL, SL_ERR_PARSE,
                "not an XLS file: no OLE2 compound document header");
    int fd = rt_mem_fd("", 0);
    struct rt_coll c = {.out = SL_BUF_INIT};
    char err[512];
    assert_int_equal(read_fd(fd, NULL, &c, err, sizeof(err)), SL_ERR_PARSE);
    assert_string_equal(err, "the file is empty");
    close(fd);
    sl_buf_cleanup(&c.out);
    /* every prefix and flipped bytes anywhere: a failure with a reason or
     * rows, never a crash */
    rt_sheet_read_damaged(sl_xls_read_fd, SHEETS "stores.xls", 4000, 211, 61, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xlwt_fixtures),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
