/*
 * libFuzzer harness of the XLSX reader (xlsx_reader.c, sheet_cell.c).
 *
 * A zip archive is a poor thing to mutate (its CRCs and sizes reject nearly
 * every change), so the input is the workbook's XML parts and the harness
 * zips them with libzip: the first byte picks the options, the rest is
 * split at "\n%%\n" into the parts _rels/.rels, xl/workbook.xml,
 * xl/_rels/workbook.xml.rels, xl/styles.xml, xl/sharedStrings.xml,
 * xl/worksheets/sheet1.xml and xl/worksheets/sheet2.xml in that order (an
 * empty one is left out). With option bit 0x40 the rest is the file itself,
 * for the zip layer. tests/fixtures/sheets/make.py writes the seeds in this
 * form.
 *
 * Every run must end with 0 or a negative sl_err that says why; every row
 * must have unique, non-empty, valid UTF-8 names, values that are NULL
 * (length 0) or valid UTF-8 without NULs with lens matching, and a row
 * error, when there is one, that names a cell; rows count up from 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zip.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

static const char *const PARTS[] = {
    "_rels/.rels",
    "xl/workbook.xml",
    "xl/_rels/workbook.xml.rels",
    "xl/styles.xml",
    "xl/sharedStrings.xml",
    "xl/worksheets/sheet1.xml",
    "xl/worksheets/sheet2.xml",
};
#define SEP "\n%%\n"

struct seen {
    uint64_t rows;
    size_t ncols;
    bool header;
};

static int on_header(void *ud, const char *const *names, size_t n)
{
    struct seen *s = ud;
    if (s->header)
        abort(); /* once */
    s->header = true;
    s->ncols = n;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !*names[i] || !sl_utf8_valid(names[i], strlen(names[i])))
            abort();
        for (size_t j = 0; j < i && n < 64; j++)
            if (strcmp(names[i], names[j]) == 0)
                abort(); /* names are unique */
    }
    return 0;
}

static int on_row(void *ud, const struct sl_row *row)
{
    struct seen *s = ud;
    if (!s->header || row->row != ++s->rows || row->n != s->ncols)
        abort();
    for (size_t i = 0; i < row->n; i++) {
        const char *v = row->values[i];
        if (!v) {
            if (row->lens[i])
                abort();
            continue;
        }
        if (v[row->lens[i]] != '\0' || strlen(v) != row->lens[i] || !sl_utf8_valid(v, row->lens[i]))
            abort();
    }
    if (row->error && strncmp(row->error, "cell ", 5) != 0)
        abort();
    return 0;
}

/* The parts zipped by libzip; *len its size. NULL when libzip refuses. */
static char *zip_parts(const uint8_t *data, size_t size, bool deflate, size_t *len)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (!src)
        return NULL;
    zip_source_keep(src);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    if (!za) {
        zip_source_free(src);
        return NULL;
    }
    const uint8_t *p = data, *end = data + size;
    for (size_t i = 0; i < SL_ARRAY_LEN(PARTS) && p <= end; i++) {
        const uint8_t *q = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        size_t n = q ? (size_t)(q - p) : (size_t)(end - p);
        if (n) {
            zip_source_t *s = zip_source_buffer(za, p, n, 0);
            zip_int64_t idx = s ? zip_file_add(za, PARTS[i], s, ZIP_FL_OVERWRITE) : -1;
            if (idx < 0)
                zip_source_free(s);
            else if (!deflate)
                zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
        }
        if (!q)
            break;
        p = q + strlen(SEP);
    }
    char *buf = NULL;
    zip_stat_t st;
    if (zip_close(za) != 0) {
        zip_discard(za);
    } else if (zip_source_open(src) == 0) {
        if (zip_source_stat(src, &st) == 0 && (buf = malloc(st.size ? st.size : 1)) &&
            zip_source_read(src, buf, st.size) != (zip_int64_t)st.size) {
            free(buf);
            buf = NULL;
        }
        *len = buf ? st.size : 0;
        zip_source_close(src);
    }
    zip_source_free(src);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    static const char *const sheets[] = {NULL, NULL, "Stores", "Data"};
    struct sl_sheet_opts o = {.sheet = sheets[sel & 3], .sheet_index = (sel & 3) == 1 ? 2 : 0};
    if (sel & 0x04)
        o.header_row = 2;
    if (sel & 0x08) {
        o.max_row = 256;
        o.max_strings = 1024;
        o.max_inflated = 1u << 20;
        o.max_ratio = 20;
        o.max_entries = 8;
    }
    data++;
    size--;

    char *zip = NULL;
    size_t len = size;
    if (!(sel & 0x40)) {
        zip = zip_parts(data, size, sel & 0x10, &len);
        if (!zip)
            return 0;
    }
    int fd = memfd_create("fuzz", 0);
    const void *bytes = zip ? (const void *)zip : (const void *)data;
    if (fd < 0 || write(fd, bytes, len) != (ssize_t)len)
        abort();
    free(zip);

    struct seen s = {0};
    char err[512] = "";
    struct sl_reader_stats st = {0};
    int rc = sl_xlsx_read_fd(fd, &o, on_header, on_row, &s, &st, err, sizeof(err));
    if (rc > 0 || (rc < 0 && !err[0]))
        abort(); /* every failure says why */
    if (st.rows != s.rows || (rc == 0 && !s.header))
        abort();
    close(fd);
    return 0;
}
