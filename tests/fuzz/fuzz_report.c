/*
 * libFuzzer harness of the error report writer (report.h): the values of a
 * rejected row come from the source file, so anything the source can hold
 * reaches the workbook and the CSV (control characters, invalid UTF-8,
 * `_xHHHH_` escapes, formula-like text, long values, odd column names).
 * The input is split at 0x01 bytes into: a column name, a value of that
 * column, a problem message, the problem's value, and the value of a
 * second column; each row is written to an XLSX and a CSV report, closed,
 * and the files removed. Crashes, sanitizer reports and leaks are findings.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sluice/report.h"

/* The n-th 0x01-separated piece of data[0..size) as a new string. */
static char *piece(const uint8_t *data, size_t size, int n)
{
    size_t start = 0, i = 0;
    for (int k = 0; k < n; k++) {
        while (i < size && data[i] != 1)
            i++;
        if (i == size)
            return strdup("");
        start = ++i;
    }
    while (i < size && data[i] != 1)
        i++;
    char *s = malloc(i - start + 1);
    if (s) {
        memcpy(s, data + start, i - start);
        s[i - start] = '\0';
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    char *p[5];
    for (int i = 0; i < 5; i++)
        p[i] = piece(data, size, i);
    for (int i = 0; i < 5; i++)
        if (!p[i])
            goto out;
    const char *col = p[0][0] ? p[0] : "c";
    json_t *row = json_pack("{s:I,s:[{s:s,s:s,s:o,s:o}],s:{s:o,s:o}}", "row", (json_int_t)1,
                            "errors", "attribute", "a", "code", "type", "message",
                            json_stringn_nocheck(p[2], strlen(p[2])), "value",
                            json_stringn_nocheck(p[3], strlen(p[3])), "source", col,
                            json_stringn_nocheck(p[1], strlen(p[1])), "other",
                            json_stringn_nocheck(p[4], strlen(p[4])));
    if (!row)
        goto out;
    const char *cols[] = {col, "other"};
    struct sl_report_meta meta = {
        .job = "fuzz", .run_id = "run", .status = "failed", .reason = p[2]};
    for (int fmt = 0; fmt < 2; fmt++) {
        char path[64], err[512];
        snprintf(path, sizeof(path), "/tmp/sluice-fuzz-report-%d.%s", (int)getpid(),
                 fmt ? "csv" : "xlsx");
        struct sl_report_file *rf = sl_report_file_new(path, fmt ? SL_REPORT_CSV : SL_REPORT_XLSX,
                                                       &meta, cols, 2, err, sizeof(err));
        if (!rf)
            continue;
        sl_report_file_link(rf, "a", col);
        if (sl_report_file_add(rf, row, err, sizeof(err))) {
            sl_report_file_destroy(rf); /* removes path.tmp */
            continue;
        }
        if (sl_report_file_close(rf, NULL, err, sizeof(err)) == 0) /* frees rf */
            unlink(path);
    }
    json_decref(row);
out:
    for (int i = 0; i < 5; i++)
        free(p[i]);
    return 0;
}
