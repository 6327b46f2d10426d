/*
 * The cell rules of the spreadsheet readers (reader.h): what a number
 * format shows a number as, dates from Excel serials, the shortest exact
 * decimal of a double, and the assembly of a sheet's cells into named rows.
 *
 * xlsx_reader.c and xls_reader.c only find cells and their values; every
 * rule a user can see (the text a cell becomes, how columns are named, which
 * rows are skipped, what a row's error says, how bad arguments are told)
 * lives here once, so that the same workbook saved as XLSX and as XLS gives
 * the same rows. Column names follow the CSV header's rule
 * (sl_reader_name_columns, csv_reader.c).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#define SHEET_DEF_MAX_ROW (16u << 20)
#define SHEET_MAX_COLS    16384u   /* XFD */
#define SHEET_MAX_ROWS    1048576u /* Excel's last row */

/* ---- number formats ---- */

static enum sl_cell_kind builtin_kind(unsigned id)
{
    if (id >= 14 && id <= 17)
        return SL_CELL_DATE;
    if ((id >= 18 && id <= 21) || id == 45 || id == 47)
        return SL_CELL_TIME;
    if (id == 22)
        return SL_CELL_DATETIME;
    if (id == 46)
        return SL_CELL_DURATION;
    return SL_CELL_NUMBER;
}

/* Whether [inner] of length n is an elapsed-time token: [h], [hh], [mm], [s]. */
static bool elapsed_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    char c = (char)tolower((unsigned char)s[0]);
    if (c != 'h' && c != 'm' && c != 's')
        return false;
    for (size_t i = 1; i < n; i++)
        if (tolower((unsigned char)s[i]) != c)
            return false;
    return true;
}

enum sl_cell_kind sl_sheet_numfmt_kind(unsigned id, const char *code)
{
    if (!code)
        return builtin_kind(id);
    /* the date and time letters of the first section, in order: y d m h s
     * and 'a' for AM/PM, so that "m" can be told apart afterwards */
    char toks[64];
    size_t nt = 0;
    bool elapsed = false;
    for (const char *p = code; *p && *p != ';'; p++) {
        char c = *p;
        if (c == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                break;
            p = q;
            continue;
        }
        if (c == '\\' || c == '_' || c == '*') {
            if (!p[1])
                break;
            p++;
            continue;
        }
        if (c == '[') {
            const char *q = strchr(p + 1, ']');
            if (!q)
                break;
            if (elapsed_token(p + 1, (size_t)(q - p - 1))) {
                elapsed = true;
                if (nt < sizeof(toks))
                    toks[nt++] = (char)tolower((unsigned char)p[1]);
            }
            p = q;
            continue;
        }
        if (strncasecmp(p, "general", 7) == 0) {
            p += 6;
            continue;
        }
        if (strncasecmp(p, "am/pm", 5) == 0 || strncasecmp(p, "a/p", 3) == 0) {
            if (nt < sizeof(toks))
                toks[nt++] = 'a';
            p += (tolower((unsigned char)p[1]) == 'm') ? 4 : 2;
            continue;
        }
        c = (char)tolower((unsigned char)c);
        if (c == 'y' || c == 'd' || c == 'm' || c == 'h' || c == 's') {
            if (nt < sizeof(toks))
                toks[nt++] = c; /* "yyyy", "mm": one token */
            while (tolower((unsigned char)p[1]) == c)
                p++;
        }
    }
    bool date = false, time = false;
    for (size_t i = 0; i < nt; i++) {
        switch (toks[i]) {
        case 'y':
        case 'd':
            date = true;
            break;
        case 'h':
        case 's':
        case 'a':
            time = true;
            break;
        case 'm': {
            /* minutes right after an hour or right before a second */
            bool minute = (i > 0 && toks[i - 1] == 'h') || (i + 1 < nt && toks[i + 1] == 's');
            if (minute)
                time = true;
            else
                date = true;
            break;
        }
        default:
            break;
        }
    }
    if (date && time)
        return SL_CELL_DATETIME;
    if (date)
        return SL_CELL_DATE;
    if (time)
        return elapsed ? SL_CELL_DURATION : SL_CELL_TIME;
    return SL_CELL_NUMBER;
}

/* ---- numbers ---- */

size_t sl_sheet_number_text(double v, char *out)
{
    out[0] = '\0';
    if (!isfinite(v))
        return 0;
    if (v == 0) {
        memcpy(out, "0", 2);
        return 1;
    }
    char e[40];
    for (int prec = 0; prec <= 16; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec, v);
        if (strtod(e, NULL) == v)
            break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    char digits[24];
    size_t nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < sizeof(digits))
            digits[nd++] = *p;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    /* value = d.ddd x 10^exp10 */
    size_t n = 0;
    if (neg)
        out[n++] = '-';
    if (exp10 < 0) {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -exp10 - 1; i++)
            out[n++] = '0';
        memcpy(out + n, digits, nd);
        n += nd;
    } else if ((size_t)exp10 + 1 >= nd) {
        memcpy(out + n, digits, nd);
        n += nd;
        for (size_t i = nd; i < (size_t)exp10 + 1; i++)
            out[n++] = '0';
    } else {
        memcpy(out + n, digits, (size_t)exp10 + 1);
        n += (size_t)exp10 + 1;
        out[n++] = '.';
        memcpy(out + n, digits + exp10 + 1, nd - (size_t)exp10 - 1);
        n += nd - (size_t)exp10 - 1;
    }
    out[n] = '\0';
    return n;
}

/* ---- dates ---- */

/* The civil date of days since 1970-01-01 (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)(yy + (*m <= 2));
}

#define DAY_MS 86400000LL
/* days from 1970-01-01 back to 1899-12-30 and to 1904-01-01 */
#define EPOCH_1900 (-25569)
#define EPOCH_1904 (-24107)

static size_t time_text(int64_t ms, bool hours_past_day, char *out)
{
    int64_t secs = ms / 1000;
    int frac = (int)(ms % 1000);
    int64_t h = hours_past_day ? secs / 3600 : (secs / 3600) % 24;
    int n = snprintf(out, SL_SHEET_DATE_MAX, "%02lld:%02d:%02d", (long long)h,
                     (int)(secs / 60 % 60), (int)(secs % 60));
    if (frac && n > 0 && n < SL_SHEET_DATE_MAX - 5)
        n += snprintf(out + n, SL_SHEET_DATE_MAX - (size_t)n, ".%03d", frac);
    return n > 0 ? (size_t)n : 0;
}

size_t sl_sheet_serial_text(double serial, bool date1904, enum sl_cell_kind kind, char *out)
{
    out[0] = '\0';
    if (kind == SL_CELL_NUMBER || !isfinite(serial) || serial < 0)
        return 0;
    /* 9999-12-31 is day 2958465 (1900) or 2957003 (1904) */
    if (serial >= (date1904 ? 2957004.0 : 2958466.0))
        return 0;
    int64_t total = llround(serial * (double)DAY_MS);
    int64_t days = total / DAY_MS, ms = total % DAY_MS;
    if (kind == SL_CELL_DURATION)
        return time_text(total, true, out);
    if (kind == SL_CELL_TIME || (!date1904 && days == 0))
        return time_text(ms, false, out);
    int y;
    unsigned m, d;
    if (!date1904 && days == 60) { /* Lotus 1-2-3's 1900-02-29, kept by Excel */
        y = 1900;
        m = 2;
        d = 29;
    } else {
        int64_t base = date1904 ? EPOCH_1904 : EPOCH_1900;
        if (!date1904 && days < 60)
            base++; /* before the fictitious day: serial 1 is 1900-01-01 */
        civil_from_days(base + days, &y, &m, &d);
        if (y > 9999)
            return 0;
    }
    int n = snprintf(out, SL_SHEET_DATE_MAX, "%04d-%02u-%02u", y, m, d);
    if (n <= 0)
        return 0;
    if (kind == SL_CELL_DATETIME) {
        out[n++] = 'T';
        n += (int)time_text(ms, false, out + n);
    }
    return (size_t)n;
}

size_t sl_sheet_cell_text(double v, bool date1904, enum sl_cell_kind kind, char *out)
{
    size_t n = sl_sheet_serial_text(v, date1904, kind, out);
    return n ? n : sl_sheet_number_text(v, out);
}

void sl_sheet_col_name(uint32_t col, char out[8])
{
    char tmp[8];
    size_t n = 0;
    uint64_t c = (uint64_t)col + 1;
    while (c && n < sizeof(tmp) - 1) {
        tmp[n++] = (char)('A' + (c - 1) % 26);
        c = (c - 1) / 26;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
}

/* ---- rows ---- */

struct sl_sheet_rows {
    char *sheet;
    uint32_t header_row;
    size_t max_row;
    sl_header_fn hdr_fn;
    sl_row_fn fn;
    void *ud;
    struct sl_reader_stats *stats;
    char *errbuf;
    size_t errsz;

    uint32_t cur;       /* the current sheet row, 0 none */
    bool any_row;       /* a non-blank row was seen */
    struct sl_buf data; /* the current row's values, each NUL-terminated */
    size_t *off, *len;  /* per column; off SIZE_MAX: not set */
    uint32_t cols_cap;  /* entries of off and len */
    uint32_t width;     /* 1 + the highest column set in the current row */
    char err[512];      /* the current row's first problem */

    bool have_header;
    struct sl_buf namebuf;
    const char **names;
    size_t ncols;
    const char **values;
    size_t *lens;
    uint64_t rows;
};

static int rows_fail(struct sl_sheet_rows *sr, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rows_fail(struct sl_sheet_rows *sr, int err, const char *fmt, ...)
{
    if (sr->errbuf && sr->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sr->errbuf, sr->errsz, fmt, ap);
        va_end(ap);
    }
    return err;
}

int sl_sheet_read_begin(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                        void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz,
                        struct sl_sheet_rows_cfg *cfg, uint64_t *size)
{
    if (errbuf && errsz)
        errbuf[0] = '\0';
    if (!fn)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "no row callback");
    if (o->header_row < 0 || o->sheet_index < 0)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "header_row and the sheet number must be 1 or more");
    if (stats) {
        stats->bytes = 0;
        stats->rows = 0;
        stats->encoding = SL_ENC_UTF8;
        stats->delimiter = 0;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "could not read the file: %s", strerror(errno));
    *size = sb.st_size > 0 ? (uint64_t)sb.st_size : 0;
    if (*size == 0)
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "the file is empty");
    *cfg = (struct sl_sheet_rows_cfg){
        .header_row = o->header_row > 0 ? (uint32_t)o->header_row : 1,
        .max_row = o->max_row,
        .hdr_fn = hdr_fn,
        .fn = fn,
        .ud = ud,
        .stats = stats,
        .errbuf = errbuf,
        .errsz = errsz,
    };
    return 0;
}

struct sl_sheet_rows *sl_sheet_rows_new(const struct sl_sheet_rows_cfg *cfg)
{
    struct sl_sheet_rows *sr = calloc(1, sizeof(*sr));
    if (!sr)
        return NULL;
    sr->sheet = strdup(cfg->sheet ? cfg->sheet : "");
    if (!sr->sheet) {
        free(sr);
        return NULL;
    }
    sr->header_row = cfg->header_row ? cfg->header_row : 1;
    sr->max_row = cfg->max_row ? cfg->max_row : SHEET_DEF_MAX_ROW;
    sr->hdr_fn = cfg->hdr_fn;
    sr->fn = cfg->fn;
    sr->ud = cfg->ud;
    sr->stats = cfg->stats;
    sr->errbuf = cfg->errbuf;
    sr->errsz = cfg->errsz;
    sl_buf_init(&sr->data);
    sl_buf_init(&sr->namebuf);
    return sr;
}

void sl_sheet_rows_destroy(struct sl_sheet_rows *sr)
{
    if (!sr)
        return;
    free(sr->sheet);
    sl_buf_cleanup(&sr->data);
    sl_buf_cleanup(&sr->namebuf);
    free(sr->off);
    free(sr->len);
    free(sr->names);
    free(sr->values);
    free(sr->lens);
    free(sr);
}

uint32_t sl_sheet_rows_current(const struct sl_sheet_rows *sr)
{
    return sr->cur;
}

void sl_sheet_rows_bad(struct sl_sheet_rows *sr, uint32_t col, const char *fmt, ...)
{
    if (sr->err[0])
        return;
    char cn[8];
    sl_sheet_col_name(col, cn);
    int n = snprintf(sr->err, sizeof(sr->err), "cell %s%u: ", cn, (unsigned)sr->cur);
    if (n < 0 || (size_t)n >= sizeof(sr->err))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sr->err + n, sizeof(sr->err) - (size_t)n, fmt, ap);
    va_end(ap);
}

const char *sl_sheet_excerpt(const char *s, size_t n, char out[SL_SHEET_EXCERPT_MAX])
{
    size_t k = n <= 40 ? n : 40;
    while (k < n && k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    memcpy(out, s, k);
    if (k < n)
        memcpy(out + k, "...", 4);
    else
        out[k] = '\0';
    return out;
}

int sl_sheet_rows_cell(struct sl_sheet_rows *sr, uint32_t col, const char *v, size_t n)
{
    if (!sr->cur)
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': a cell outside any row", sr->sheet);
    if (col >= SHEET_MAX_COLS) {
        char cn[8];
        sl_sheet_col_name(col, cn);
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': cell %s%u is beyond the last column XFD",
                         sr->sheet, cn, (unsigned)sr->cur);
    }
    if (sr->cur < sr->header_row)
        return 0; /* above the header: not read */
    if (col >= sr->cols_cap) {
        uint32_t ncap = sr->cols_cap ? sr->cols_cap : 16;
        while (ncap <= col)
            ncap *= 2;
        if (ncap > SHEET_MAX_COLS)
            ncap = SHEET_MAX_COLS;
        size_t *no = realloc(sr->off, ncap * sizeof(*no));
        if (no)
            sr->off = no;
        size_t *nl = realloc(sr->len, ncap * sizeof(*nl));
        if (nl)
            sr->len = nl;
        if (!no || !nl)
            return rows_fail(sr, SL_ERR_NOMEM, "out of memory reading sheet '%s'", sr->sheet);
        for (uint32_t i = sr->cols_cap; i < ncap; i++)
            sr->off[i] = SIZE_MAX;
        sr->cols_cap = ncap;
    }
    if (n > sr->max_row || sr->data.len > sr->max_row - n)
        return rows_fail(sr, SL_ERR_LIMIT,
                         "sheet '%s', row %u: the values are longer than %zu bytes", sr->sheet,
                         (unsigned)sr->cur, sr->max_row);
    if (!sl_utf8_valid(v, n)) {
        sl_sheet_rows_bad(sr, col, "the text is not valid UTF-8");
        v = "";
        n = 0;
    }
    size_t off = sr->data.len;
    if (sl_buf_append(&sr->data, v, n) || sl_buf_putc(&sr->data, '\0'))
        return rows_fail(sr, SL_ERR_NOMEM, "out of memory reading sheet '%s'", sr->sheet);
    sr->off[col] = off;
    sr->len[col] = n;
    if (col + 1 > sr->width)
        sr->width = col + 1;
    return 0;
}

static bool cell_set(const struct sl_sheet_rows *sr, uint32_t c)
{
    return c < sr->width && sr->off[c] != SIZE_MAX;
}

static void row_clear(struct sl_sheet_rows *sr)
{
    for (uint32_t c = 0; c < sr->width; c++)
        sr->off[c] = SIZE_MAX;
    sr->width = 0;
    sl_buf_reset(&sr->data);
    sr->err[0] = '\0';
}

/* Names the columns from the current (header) row, up to its last
 * non-empty cell, as the CSV reader names a header (sl_reader_name_columns):
 * an empty cell "_<column>", a repeated name "<name>_2", "<name>_3", ... */
static int make_names(struct sl_sheet_rows *sr)
{
    uint32_t n = 0;
    for (uint32_t c = 0; c < sr->width; c++)
        if (cell_set(sr, c) && sr->len[c])
            n = c + 1;
    sr->names = malloc((n ? n : 1) * sizeof(*sr->names));
    sr->values = malloc((n ? n : 1) * sizeof(*sr->values));
    sr->lens = malloc((n ? n : 1) * sizeof(*sr->lens));
    if (!sr->names || !sr->values || !sr->lens ||
        sl_reader_name_columns(sr->data.data ? sr->data.data : "", sr->off, sr->len, n,
                               &sr->namebuf, sr->names))
        return rows_fail(sr, SL_ERR_NOMEM, "out of memory reading the header of sheet '%s'",
                         sr->sheet);
    sr->ncols = n;
    sr->have_header = true;
    if (sr->hdr_fn)
        return sr->hdr_fn(sr->ud, sr->names, sr->ncols);
    return 0;
}

/* No non-empty value and no problem: a row to skip. */
static bool row_blank(const struct sl_sheet_rows *sr)
{
    if (sr->err[0])
        return false;
    for (uint32_t c = 0; c < sr->width; c++)
        if (cell_set(sr, c) && sr->len[c])
            return false;
    return true;
}

/* Hands over the current row (the header: names the columns). */
static int row_end(struct sl_sheet_rows *sr)
{
    if (!sr->cur || sr->cur < sr->header_row)
        return 0;
    bool blank = row_blank(sr);
    if (!blank)
        sr->any_row = true;
    if (sr->cur == sr->header_row) {
        if (sr->err[0])
            return rows_fail(sr, SL_ERR_PARSE, "sheet '%s', header row %u: %s", sr->sheet,
                             (unsigned)sr->header_row, sr->err);
        if (blank)
            return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': the header row %u is empty", sr->sheet,
                             (unsigned)sr->header_row);
        int rc = make_names(sr);
        row_clear(sr);
        return rc;
    }
    if (!sr->have_header)
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': the header row %u is empty", sr->sheet,
                         (unsigned)sr->header_row);
    if (blank) {
        row_clear(sr);
        return 0;
    }
    for (size_t c = 0; c < sr->ncols; c++) {
        if (cell_set(sr, (uint32_t)c)) {
            sr->values[c] = sr->data.data + sr->off[c];
            sr->lens[c] = sr->len[c];
        } else {
            sr->values[c] = NULL;
            sr->lens[c] = 0;
        }
    }
    for (uint32_t c = (uint32_t)sr->ncols; c < sr->width && !sr->err[0]; c++) {
        if (cell_set(sr, c) && sr->len[c]) {
            char ex[SL_SHEET_EXCERPT_MAX], last[8];
            sl_sheet_excerpt(sr->data.data + sr->off[c], sr->len[c], ex);
            sl_sheet_col_name(sr->ncols ? (uint32_t)sr->ncols - 1 : 0, last);
            sl_sheet_rows_bad(sr, c, "'%s' is right of the header's last column %s", ex, last);
        }
    }
    struct sl_row row = {
        .row = ++sr->rows,
        .names = sr->names,
        .values = sr->values,
        .lens = sr->lens,
        .n = sr->ncols,
        .error = sr->err[0] ? sr->err : NULL,
    };
    if (sr->stats)
        sr->stats->rows = sr->rows;
    int rc = sr->fn(sr->ud, &row);
    row_clear(sr);
    return rc;
}

int sl_sheet_rows_begin(struct sl_sheet_rows *sr, uint32_t row)
{
    if (row == 0 || row > SHEET_MAX_ROWS)
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': row %lu is out of range (1 to %u)",
                         sr->sheet, (unsigned long)row, SHEET_MAX_ROWS);
    if (row <= sr->cur)
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': row %u comes after row %u", sr->sheet,
                         (unsigned)row, (unsigned)sr->cur);
    int rc = row_end(sr);
    if (rc)
        return rc;
    row_clear(sr);
    /* a header row the file does not have: rows after it come first */
    if (sr->cur < sr->header_row && row > sr->header_row)
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': the header row %u is empty", sr->sheet,
                         (unsigned)sr->header_row);
    sr->cur = row;
    return 0;
}

int sl_sheet_rows_finish(struct sl_sheet_rows *sr)
{
    int rc = row_end(sr);
    row_clear(sr);
    if (rc)
        return rc;
    if (!sr->have_header) {
        if (!sr->cur)
            return rows_fail(sr, SL_ERR_PARSE, "sheet '%s' is empty", sr->sheet);
        return rows_fail(sr, SL_ERR_PARSE, "sheet '%s': the header row %u is empty", sr->sheet,
                         (unsigned)sr->header_row);
    }
    return 0;
}
