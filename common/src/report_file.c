/*
 * The error report e-mailed to the data owner (report.h, docs/reports.md).
 *
 * Rows stream into the file as they are added. XLSX uses libxlsxwriter's
 * constant-memory mode: each worksheet has its own temporary file and keeps
 * only its current row in memory, so the rows go to sheet 2 "Rejected rows"
 * as they come while sheet 1 "Summary", created first so that it is the tab
 * shown on opening, is written at close when the totals are known. What
 * memory holds besides one row: the problem kinds (bounded by the job's
 * attributes and the error codes), the links attribute -> column, and the
 * comments (libxlsxwriter keeps them until close: the first
 * SL_REPORT_MAX_COMMENTS only).
 *
 * Text reaches the XLSX only through worksheet_write_string (an inline
 * string: never a formula, whatever its first character) after xlsx_text():
 * invalid UTF-8 becomes U+FFFD; what XML 1.0 cannot hold (control
 * characters, U+FFFE, U+FFFF) and CR become Excel's _xHHHH_ escape, and a
 * literal "_xHHHH_" in the data is protected as "_x005F_xHHHH_" (ECMA-376
 * ST_Xstring), which libxlsxwriter 1.1.4 does not do; text longer than a cell
 * holds is cut with a marker. Comments get the same treatment (libxlsxwriter
 * writes their control characters raw, which breaks the file).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <xlsxwriter.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/report.h"
#include "sluice/util.h"

#define CELL_MAX_CHARS    32767 /* Excel's limit of a cell's text */
#define COMMENT_MAX_CHARS 2000  /* enough for every problem of a cell */
#define MARKER_RESERVE    64    /* characters kept free for the truncation marker */
#define MAX_KINDS         4096  /* problem kinds counted one by one */
#define WIDTH_ROWS        200   /* rows that size the columns */
#define FIRST_SRC_COL     2     /* _row, _errors, then the source columns */
#define NO_COL            ((size_t)-1)

#define FILL_HEADER 0xD9E1F2 /* light blue */
#define FILL_BAD    0xFFC7CE /* Excel's "Bad" style */
#define FONT_BAD    0x9C0006

/* A problem kind: attribute and code, counted. key holds both strings. */
struct kind {
    char *key; /* "attribute\0code\0" */
    const char *attribute, *code;
    char *message;
    uint64_t count;
    size_t seq;
};

/* A small open-addressing table from a byte string to an index. */
struct strmap {
    struct slot {
        const char *key;
        size_t len, val;
    } * slot;
    size_t cap, n;
};

struct link {
    char *attribute, *column;
    size_t col; /* index into cols, NO_COL when the column is not in the report */
};

/* A problem of the current row and the cell it marks (NO_COL: _errors). */
struct hit {
    size_t col, prob;
};

struct sl_report_file {
    enum sl_report_format fmt;
    char *path, *tmp, *tmpdir;
    struct sl_report_meta meta;
    char *meta_str[5];

    char **cols; /* the source columns */
    size_t ncols;
    size_t nshown;    /* columns the sheet holds (XLSX: up to LXW_COL_MAX) */
    size_t *col_next; /* the next column of the same name, or NO_COL */
    struct strmap colmap;
    size_t *width; /* characters, for the column widths */
    bool have_cols, header_done;

    struct link *links;
    size_t nlinks;
    bool links_sorted;

    struct kind *kinds;
    size_t nkinds;
    struct strmap kindmap;
    uint64_t other_problems; /* problems past MAX_KINDS kinds */

    uint64_t rows, written, omitted, dropped, comments, uncommented;
    bool failed;

    /* per-row scratch */
    const json_t **vals;
    struct hit *hits;
    size_t nhits, chits;
    struct sl_buf line, text, errs, note, num;

    lxw_workbook *wb;
    lxw_worksheet *ws_sum, *ws_rows;
    lxw_format *f_title, *f_bold, *f_head, *f_text, *f_bad;

    FILE *csv;
};

/* ---- small tools ---------------------------------------------------------- */

static size_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 29));
}

/* The value of key, or NO_COL. */
static size_t strmap_get(const struct strmap *m, const char *key, size_t len)
{
    if (!m->cap)
        return NO_COL;
    for (size_t i = hash_bytes(key, len) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct slot *s = &m->slot[i];
        if (!s->key)
            return NO_COL;
        if (s->len == len && !memcmp(s->key, key, len))
            return s->val;
    }
}

/* Adds key (borrowed: it must outlive the map) unless present. */
static int strmap_put(struct strmap *m, const char *key, size_t len, size_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct slot *ns = calloc(cap, sizeof(*ns));
        if (!ns)
            return SL_ERR_NOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slot[i].key)
                continue;
            size_t j = hash_bytes(m->slot[i].key, m->slot[i].len) & (cap - 1);
            while (ns[j].key)
                j = (j + 1) & (cap - 1);
            ns[j] = m->slot[i];
        }
        free(m->slot);
        m->slot = ns;
        m->cap = cap;
    }
    size_t i = hash_bytes(key, len) & (m->cap - 1);
    for (; m->slot[i].key; i = (i + 1) & (m->cap - 1))
        if (m->slot[i].len == len && !memcmp(m->slot[i].key, key, len))
            return 0;
    m->slot[i] = (struct slot){key, len, val};
    m->n++;
    return 0;
}

/* The code point at s[0..n) (n > 0) and its length in *k; a byte that does
 * not start valid UTF-8 (overlong, surrogate, cut short) is U+FFFD of
 * length 1. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *k)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    *k = 1;
    if (c < 0x80)
        return c;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0xfffd;
    }
    if (len > n)
        return 0xfffd;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0xfffd;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0xfffd;
    *k = len;
    return cp;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Characters (code points, counting each invalid byte as one) of s[0..n). */
static size_t count_chars(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* s[0..n) as the text of an XLSX cell or comment into b (replaced): see the
 * file comment. At most maxchars characters: longer text is cut at a
 * character (never inside an escape) and ends with a marker that gives the
 * original length. Returns 0 or SL_ERR_NOMEM. */
static int xlsx_text(struct sl_buf *b, const char *s, size_t n, size_t maxchars)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t chars = 0, cut = (size_t)-1, keep = maxchars - MARKER_RESERVE;
    int rc = 0;
    sl_buf_reset(b);
    if (sl_buf_reserve(b, n < 4096 ? n + 16 : 4096))
        return SL_ERR_NOMEM;
    size_t i = 0;
    while (i < n) {
        size_t k;
        uint32_t cp = utf8_next(u + i, n - i, &k);
        size_t w = 1;
        bool esc = (cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0xfffe || cp == 0xffff;
        bool lit = cp == '_' && n - i >= 7 && s[i + 1] == 'x' && is_hex(s[i + 2]) &&
                   is_hex(s[i + 3]) && is_hex(s[i + 4]) && is_hex(s[i + 5]) && s[i + 6] == '_';
        if (esc || lit)
            w = 7;
        if (chars + w > keep && cut == (size_t)-1)
            cut = b->len;
        if (chars + w > maxchars)
            break;
        if (esc)
            rc |= sl_buf_printf(b, "_x%04X_", (unsigned)cp);
        else if (lit)
            rc |= sl_buf_puts(b, "_x005F_"); /* the underscore only: "x0041_" follows */
        else if (cp == 0xfffd && k == 1)
            rc |= sl_buf_puts(b, "\xef\xbf\xbd");
        else
            rc |= sl_buf_append(b, s + i, k);
        chars += w;
        i += k;
    }
    if (i < n) {
        b->len = cut;
        b->data[cut] = '\0';
        rc |= sl_buf_printf(b, "\xe2\x80\xa6 [cut: %zu characters in all]",
                            count_chars(s, i) + count_chars(s + i, n - i));
    }
    return rc ? SL_ERR_NOMEM : 0;
}

/* s[0..n) as one CSV cell into b (appended): invalid UTF-8 and NUL become
 * U+FFFD; a cell that a spreadsheet would take for a formula (first
 * character = + - @ TAB CR) gets a leading apostrophe; quoted per RFC 4180
 * when it holds a comma, a quote, CR or LF (or leading/trailing space). */
static int csv_cell(struct sl_buf *b, struct sl_buf *t, const char *s, size_t n)
{
    int rc = 0;
    sl_buf_reset(t);
    if (n && strchr("=+-@\t\r", s[0]))
        rc |= sl_buf_putc(t, '\'');
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0, k; i < n && !rc; i += k) {
        uint32_t cp = utf8_next(u + i, n - i, &k);
        if (cp == 0 || (cp == 0xfffd && k == 1))
            rc |= sl_buf_puts(t, "\xef\xbf\xbd");
        else
            rc |= sl_buf_append(t, s + i, k);
    }
    if (rc || sl_buf_csv_field(b, t->data ? t->data : "", t->len, ','))
        return SL_ERR_NOMEM;
    return 0;
}

/* The text of a JSON value of a row: a string as it is, a number or boolean
 * in its JSON spelling, an object or array as compact JSON; false for null
 * or a missing value. scratch holds the text when it is not the string's. */
static bool value_text(const json_t *v, struct sl_buf *scratch, const char **p, size_t *n)
{
    if (!v || json_is_null(v))
        return false;
    if (json_is_string(v)) {
        *p = json_string_value(v);
        *n = json_string_length(v);
        return true;
    }
    sl_buf_reset(scratch);
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (d && sl_buf_puts(scratch, d) == 0) {
        *p = scratch->data;
        *n = scratch->len;
    } else {
        *p = "";
        *n = 0;
    }
    free(d);
    return true;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int lxw_fail(struct sl_report_file *rf, lxw_error err, char *errbuf, size_t errsz)
{
    rf->failed = true;
    return sl_seterr(errbuf, errsz,
                     err == LXW_ERROR_MEMORY_MALLOC_FAILED ? SL_ERR_NOMEM : SL_ERR_IO,
                     "could not write the report %s: %s", rf->path, lxw_strerror(err));
}

static int nomem(struct sl_report_file *rf, char *errbuf, size_t errsz)
{
    rf->failed = true;
    return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
}

/* ---- formats and names ---------------------------------------------------- */

enum sl_report_format sl_report_format_from_name(const char *name)
{
    return name && !strcmp(name, "csv") ? SL_REPORT_CSV : SL_REPORT_XLSX;
}

const char *sl_report_format_ext(enum sl_report_format fmt)
{
    return fmt == SL_REPORT_CSV ? "csv" : "xlsx";
}

/* ---- XLSX cells ----------------------------------------------------------- */

/* A text cell of the XLSX: always a string cell (worksheet_write_string
 * never makes a formula); empty text writes a blank only when fmt says
 * something. */
static lxw_error put_text(struct sl_report_file *rf, lxw_worksheet *ws, lxw_row_t r, lxw_col_t c,
                          const char *s, size_t n, lxw_format *fmt)
{
    if (xlsx_text(&rf->text, s, n, CELL_MAX_CHARS))
        return LXW_ERROR_MEMORY_MALLOC_FAILED;
    if (!rf->text.len)
        return fmt ? worksheet_write_blank(ws, r, c, fmt) : LXW_NO_ERROR;
    return worksheet_write_string(ws, r, c, rf->text.data, fmt);
}

static lxw_error put_str(struct sl_report_file *rf, lxw_worksheet *ws, lxw_row_t r, lxw_col_t c,
                         const char *s, lxw_format *fmt)
{
    return put_text(rf, ws, r, c, s ? s : "", s ? strlen(s) : 0, fmt);
}

static void note_width(struct sl_report_file *rf, size_t col, const char *s, size_t n)
{
    if (rf->written >= WIDTH_ROWS || !rf->width)
        return;
    size_t w = count_chars(s, n < 400 ? n : 400);
    if (w > rf->width[col])
        rf->width[col] = w;
}

static int xlsx_open(struct sl_report_file *rf, char *errbuf, size_t errsz)
{
    lxw_workbook_options opt = {.constant_memory = LXW_TRUE, .tmpdir = rf->tmpdir};
    rf->wb = workbook_new_opt(rf->tmp, &opt);
    if (!rf->wb)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not start the report %s", rf->path);
    /* Summary first: the tab Excel shows on opening. Written at close. */
    rf->ws_sum = workbook_add_worksheet(rf->wb, "Summary");
    rf->ws_rows = workbook_add_worksheet(rf->wb, "Rejected rows");
    if (!rf->ws_sum || !rf->ws_rows)
        return sl_seterr(errbuf, errsz, SL_ERR_IO,
                         "could not start the report %s: no temporary file in %s", rf->path,
                         rf->tmpdir);
    lxw_format **fs[] = {&rf->f_title, &rf->f_bold, &rf->f_head, &rf->f_text, &rf->f_bad};
    for (size_t i = 0; i < SL_ARRAY_LEN(fs); i++)
        if (!(*fs[i] = workbook_add_format(rf->wb)))
            return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    format_set_bold(rf->f_title);
    format_set_font_size(rf->f_title, 14);
    format_set_bold(rf->f_bold);
    format_set_bold(rf->f_head);
    format_set_bg_color(rf->f_head, FILL_HEADER);
    format_set_bottom(rf->f_head, LXW_BORDER_THIN);
    format_set_num_format(rf->f_head, "@");
    /* Text format: what the owner types into a cell stays text (00123). */
    format_set_num_format(rf->f_text, "@");
    format_set_num_format(rf->f_bad, "@");
    format_set_bg_color(rf->f_bad, FILL_BAD);
    format_set_font_color(rf->f_bad, FONT_BAD);
    worksheet_freeze_panes(rf->ws_rows, 1, 0);
    worksheet_set_comments_author(rf->ws_rows, "sluice");
    lxw_doc_properties props = {.title = "Rejected rows", .author = "sluice"};
    workbook_set_properties(rf->wb, &props);
    return 0;
}

/* ---- columns and links ------------------------------------------------------ */

static int set_columns(struct sl_report_file *rf, const char *const *cols, size_t n)
{
    rf->have_cols = true;
    if (!(rf->width = calloc(n + FIRST_SRC_COL, sizeof(*rf->width))))
        return SL_ERR_NOMEM;
    if (n == 0)
        return 0;
    rf->cols = calloc(n, sizeof(*rf->cols));
    rf->col_next = malloc(n * sizeof(*rf->col_next));
    rf->vals = calloc(n, sizeof(*rf->vals));
    if (!rf->cols || !rf->col_next || !rf->vals)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(rf->cols[i] = strdup(cols[i] ? cols[i] : "")))
            return SL_ERR_NOMEM;
        rf->ncols = i + 1;
        rf->col_next[i] = NO_COL;
    }
    rf->nshown = n;
    if (rf->fmt == SL_REPORT_XLSX && n > LXW_COL_MAX - FIRST_SRC_COL)
        rf->nshown = LXW_COL_MAX - FIRST_SRC_COL; /* the rest: values not shown */
    /* name -> first column; a repeated name chains to its next column */
    for (size_t i = 0; i < rf->nshown; i++) {
        size_t len = strlen(rf->cols[i]);
        size_t first = strmap_get(&rf->colmap, rf->cols[i], len);
        if (first == NO_COL) {
            if (strmap_put(&rf->colmap, rf->cols[i], len, i))
                return SL_ERR_NOMEM;
            continue;
        }
        while (rf->col_next[first] != NO_COL)
            first = rf->col_next[first];
        rf->col_next[first] = i;
    }
    return 0;
}

static int cmp_link(const void *a, const void *b)
{
    const struct link *x = a, *y = b;
    int c = strcmp(x->attribute, y->attribute);
    if (c)
        return c;
    return x->col < y->col ? -1 : x->col > y->col;
}

/* Resolves the links against the columns and sorts them by attribute, once
 * the columns are known. */
static void resolve_links(struct sl_report_file *rf)
{
    for (size_t i = 0; i < rf->nlinks; i++) {
        int c = sl_column_find(rf->links[i].column, (const char *const *)rf->cols, rf->nshown);
        rf->links[i].col = c < 0 ? NO_COL : (size_t)c;
    }
    if (rf->nlinks)
        qsort(rf->links, rf->nlinks, sizeof(*rf->links), cmp_link);
    rf->links_sorted = true;
}

int sl_report_file_link(struct sl_report_file *rf, const char *attribute, const char *column)
{
    if (rf->rows || rf->links_sorted)
        return SL_ERR_INVALID;
    struct link *nl = realloc(rf->links, (rf->nlinks + 1) * sizeof(*nl));
    if (!nl)
        return SL_ERR_NOMEM;
    rf->links = nl;
    struct link *l = &nl[rf->nlinks];
    l->attribute = strdup(attribute);
    l->column = strdup(column);
    l->col = NO_COL;
    if (!l->attribute || !l->column) {
        free(l->attribute);
        free(l->column);
        return SL_ERR_NOMEM;
    }
    rf->nlinks++;
    return 0;
}

static int write_header(struct sl_report_file *rf, char *errbuf, size_t errsz)
{
    rf->header_done = true;
    if (rf->fmt == SL_REPORT_CSV) {
        struct sl_buf *b = &rf->line;
        int rc = 0;
        sl_buf_reset(b);
        rc |= sl_buf_puts(b, "\xef\xbb\xbf_row,_errors"); /* the BOM: Excel reads UTF-8 then */
        for (size_t i = 0; i < rf->ncols; i++) {
            rc |= sl_buf_putc(b, ',');
            rc |= csv_cell(b, &rf->text, rf->cols[i], strlen(rf->cols[i]));
        }
        rc |= sl_buf_puts(b, "\r\n");
        if (rc)
            return nomem(rf, errbuf, errsz);
        if (fwrite(b->data, 1, b->len, rf->csv) != b->len) {
            rf->failed = true;
            return sl_seterr(errbuf, errsz, SL_ERR_IO, "could not write the report %s: %s",
                             rf->path, strerror(errno));
        }
        return 0;
    }
    lxw_error e = worksheet_write_string(rf->ws_rows, 0, 0, "_row", rf->f_head);
    if (!e)
        e = worksheet_write_string(rf->ws_rows, 0, 1, "_errors", rf->f_head);
    for (size_t i = 0; i < rf->nshown && !e; i++) {
        const char *c = rf->cols[i];
        e = put_text(rf, rf->ws_rows, 0, (lxw_col_t)(FIRST_SRC_COL + i), c, strlen(c), rf->f_head);
        rf->width[FIRST_SRC_COL + i] = count_chars(c, strlen(c));
    }
    return e ? lxw_fail(rf, e, errbuf, errsz) : 0;
}

/* ---- new ---------------------------------------------------------------- */

struct sl_report_file *sl_report_file_new(const char *path, enum sl_report_format fmt,
                                          const struct sl_report_meta *meta,
                                          const char *const *columns, size_t ncolumns, char *errbuf,
                                          size_t errsz)
{
    struct sl_report_file *rf = calloc(1, sizeof(*rf));
    if (!rf) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    rf->fmt = fmt;
    rf->path = strdup(path);
    rf->tmpdir = sl_path_dir(path);
    rf->tmp = malloc(strlen(path) + 5);
    if (!rf->path || !rf->tmpdir || !rf->tmp)
        goto nomem;
    sprintf(rf->tmp, "%s.tmp", path);
    if (meta) {
        rf->meta = *meta;
        const char **ms[] = {&rf->meta.job, &rf->meta.run_id, &rf->meta.status, &rf->meta.reason,
                             &rf->meta.source};
        for (size_t i = 0; i < SL_ARRAY_LEN(ms); i++) {
            if (*ms[i] && !(rf->meta_str[i] = strdup(*ms[i])))
                goto nomem;
            *ms[i] = rf->meta_str[i];
        }
    }
    /* Created now so that a bad path fails here, not at the end of the run;
     * libxlsxwriter rewrites it at close. */
    FILE *f = fopen(rf->tmp, "wb");
    if (!f) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "could not create the report %s: %s", rf->tmp,
                  strerror(errno));
        goto fail;
    }
    if (fmt == SL_REPORT_CSV) {
        rf->csv = f;
    } else {
        fclose(f);
        if (xlsx_open(rf, errbuf, errsz))
            goto fail;
    }
    if (columns) {
        if (set_columns(rf, columns, ncolumns))
            goto nomem;
        if (write_header(rf, errbuf, errsz))
            goto fail;
    }
    return rf;
nomem:
    sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
fail:
    sl_report_file_destroy(rf);
    return NULL;
}

/* ---- add ---------------------------------------------------------------- */

static int count_problem(struct sl_report_file *rf, const char *attr, const char *code,
                         const char *msg)
{
    size_t al = strlen(attr), cl = strlen(code);
    struct sl_buf *k = &rf->note;
    sl_buf_reset(k);
    if (sl_buf_append(k, attr, al + 1) || sl_buf_append(k, code, cl))
        return SL_ERR_NOMEM;
    size_t i = strmap_get(&rf->kindmap, k->data, k->len);
    if (i != NO_COL) {
        rf->kinds[i].count++;
        return 0;
    }
    if (rf->nkinds >= MAX_KINDS) {
        rf->other_problems++;
        return 0;
    }
    if (rf->nkinds % 64 == 0) {
        struct kind *nk = realloc(rf->kinds, (rf->nkinds + 64) * sizeof(*nk));
        if (!nk)
            return SL_ERR_NOMEM;
        rf->kinds = nk;
    }
    struct kind *kd = &rf->kinds[rf->nkinds];
    memset(kd, 0, sizeof(*kd));
    kd->key = malloc(k->len + 1);
    kd->message = strdup(msg);
    if (!kd->key || !kd->message) {
        free(kd->key);
        free(kd->message);
        return SL_ERR_NOMEM;
    }
    memcpy(kd->key, k->data, k->len + 1);
    kd->attribute = kd->key;
    kd->code = kd->key + al + 1;
    kd->count = 1;
    kd->seq = rf->nkinds;
    if (strmap_put(&rf->kindmap, kd->key, k->len, rf->nkinds)) {
        free(kd->key);
        free(kd->message);
        return SL_ERR_NOMEM;
    }
    rf->nkinds++;
    return 0;
}

static int add_hit(struct sl_report_file *rf, size_t col, size_t prob)
{
    if (rf->nhits == rf->chits) {
        size_t c = rf->chits ? rf->chits * 2 : 16;
        struct hit *nh = realloc(rf->hits, c * sizeof(*nh));
        if (!nh)
            return SL_ERR_NOMEM;
        rf->hits = nh;
        rf->chits = c;
    }
    rf->hits[rf->nhits++] = (struct hit){col, prob};
    return 0;
}

static int cmp_hit(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    /* _errors (NO_COL) first: it is column 1, before the source columns */
    size_t cx = x->col == NO_COL ? 0 : x->col + 1, cy = y->col == NO_COL ? 0 : y->col + 1;
    if (cx != cy)
        return cx < cy ? -1 : 1;
    return x->prob < y->prob ? -1 : x->prob > y->prob;
}

/* The cells of the row's problems into rf->hits, sorted by column. */
static int find_hits(struct sl_report_file *rf, const json_t *errors)
{
    rf->nhits = 0;
    size_t p;
    const json_t *e;
    json_array_foreach(errors, p, e)
    {
        const char *attr = jstr(e, "attribute");
        size_t lo = 0, hi = rf->nlinks; /* the first link of attr */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(rf->links[mid].attribute, attr) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        bool marked = false;
        for (size_t i = lo; i < rf->nlinks && !strcmp(rf->links[i].attribute, attr); i++) {
            size_t c = rf->links[i].col;
            if (c == NO_COL || (i > lo && rf->links[i - 1].col == c))
                continue;
            if (add_hit(rf, c, p))
                return SL_ERR_NOMEM;
            marked = true;
        }
        if (!marked && add_hit(rf, NO_COL, p))
            return SL_ERR_NOMEM;
    }
    if (rf->nhits)
        qsort(rf->hits, rf->nhits, sizeof(*rf->hits), cmp_hit);
    return 0;
}

/* The comment of the cell of hits[from..to): one line a problem. */
static lxw_error put_comment(struct sl_report_file *rf, lxw_row_t r, lxw_col_t c,
                             const json_t *errors, size_t from, size_t to)
{
    if (rf->comments >= SL_REPORT_MAX_COMMENTS) {
        rf->uncommented++;
        return LXW_NO_ERROR;
    }
    struct sl_buf *b = &rf->note;
    sl_buf_reset(b);
    int rc = 0;
    for (size_t i = from; i < to; i++) {
        const json_t *e = json_array_get(errors, rf->hits[i].prob);
        rc |= sl_buf_printf(b, "%s%s: %s", i > from ? "\n" : "", jstr(e, "attribute"),
                            jstr(e, "message"));
    }
    if (rc || xlsx_text(&rf->text, b->data, b->len, COMMENT_MAX_CHARS))
        return LXW_ERROR_MEMORY_MALLOC_FAILED;
    size_t lines = to - from;
    lxw_comment_options opt = {
        .width = 320,
        .height = (uint16_t)(lines > 12 ? 200 : 32 + 14 * lines),
    };
    rf->comments++;
    return worksheet_write_comment_opt(rf->ws_rows, r, c, rf->text.data, &opt);
}

static int xlsx_row(struct sl_report_file *rf, const json_t *rowv, const json_t *errors,
                    char *errbuf, size_t errsz)
{
    lxw_worksheet *ws = rf->ws_rows;
    lxw_row_t r = (lxw_row_t)(rf->written + 1);
    lxw_error e = LXW_NO_ERROR;
    if (find_hits(rf, errors))
        return nomem(rf, errbuf, errsz);
    if (json_is_integer(rowv))
        e = worksheet_write_number(ws, r, 0, (double)json_integer_value(rowv), NULL);
    size_t h = 0, end;
    /* _errors, then each source column; hits are sorted in that order */
    for (size_t c = 0; c <= rf->nshown && !e; c++) {
        size_t col = c == 0 ? NO_COL : c - 1;
        for (end = h; end < rf->nhits && rf->hits[end].col == col; end++)
            ;
        bool bad = end > h;
        lxw_col_t xc = (lxw_col_t)(c + 1);
        const char *s = NULL;
        size_t n = 0;
        if (c == 0) {
            s = rf->errs.data ? rf->errs.data : "";
            n = rf->errs.len;
        } else if (!value_text(rf->vals[col], &rf->num, &s, &n)) {
            s = NULL;
        }
        if (s) {
            note_width(rf, xc, s, n);
            e = put_text(rf, ws, r, xc, s, n, bad ? rf->f_bad : rf->f_text);
        } else if (bad) {
            e = worksheet_write_blank(ws, r, xc, rf->f_bad);
        }
        if (!e && bad)
            e = put_comment(rf, r, xc, errors, h, end);
        h = end;
    }
    if (e)
        return lxw_fail(rf, e, errbuf, errsz);
    return 0;
}

static int csv_row(struct sl_report_file *rf, const json_t *rowv, char *errbuf, size_t errsz)
{
    struct sl_buf *b = &rf->line;
    int rc = 0;
    sl_buf_reset(b);
    if (json_is_integer(rowv))
        rc |= sl_buf_printf(b, "%lld", (long long)json_integer_value(rowv));
    rc |= sl_buf_putc(b, ',');
    rc |= csv_cell(b, &rf->text, rf->errs.data ? rf->errs.data : "", rf->errs.len);
    for (size_t c = 0; c < rf->ncols && !rc; c++) {
        const char *s;
        size_t n;
        rc |= sl_buf_putc(b, ',');
        if (value_text(rf->vals[c], &rf->num, &s, &n))
            rc |= csv_cell(b, &rf->text, s, n);
    }
    rc |= sl_buf_puts(b, "\r\n");
    if (rc)
        return nomem(rf, errbuf, errsz);
    if (fwrite(b->data, 1, b->len, rf->csv) != b->len) {
        rf->failed = true;
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "could not write the report %s: %s", rf->path,
                         strerror(errno));
    }
    return 0;
}

int sl_report_file_add(struct sl_report_file *rf, const json_t *rejected, char *errbuf,
                       size_t errsz)
{
    if (rf->failed)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "the report %s failed already", rf->path);
    const json_t *rowv = json_object_get(rejected, "row");
    const json_t *errors = json_object_get(rejected, "errors");
    const json_t *src = json_object_get(rejected, "source");
    if (!json_is_object(rejected) || (errors && !json_is_array(errors)) ||
        (src && !json_is_object(src)))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "a rejected row must be an object with an array \"errors\" and an "
                         "object \"source\"");
    if (!rf->have_cols) {
        /* the first row's fields, in its order */
        size_t n = json_object_size(src), i = 0;
        const char **names = calloc(n ? n : 1, sizeof(*names));
        if (!names)
            return nomem(rf, errbuf, errsz);
        for (void *it = json_object_iter((json_t *)src); it;
             it = json_object_iter_next((json_t *)src, it))
            names[i++] = json_object_iter_key(it);
        int rc = set_columns(rf, names, i);
        free(names);
        if (rc)
            return nomem(rf, errbuf, errsz);
    }
    int rc;
    if (!rf->header_done && (rc = write_header(rf, errbuf, errsz)) != 0)
        return rc;
    if (!rf->links_sorted)
        resolve_links(rf);
    rf->rows++;

    /* _errors as in errors.csv, and the problem kinds */
    struct sl_buf *eb = &rf->errs;
    size_t p;
    const json_t *e;
    rc = 0;
    sl_buf_reset(eb);
    json_array_foreach(errors, p, e)
    {
        const char *attr = jstr(e, "attribute"), *msg = jstr(e, "message");
        rc |= sl_buf_printf(eb, "%s%s: %s", p ? "; " : "", attr, msg);
        rc |= count_problem(rf, attr, jstr(e, "code"), msg);
    }
    if (rc)
        return nomem(rf, errbuf, errsz);
    if (rf->fmt == SL_REPORT_XLSX && rf->written >= SL_REPORT_MAX_XLSX_ROWS) {
        rf->omitted++;
        return 0;
    }

    /* the source values by column; a field of no column is not shown */
    if (rf->vals)
        memset(rf->vals, 0, rf->ncols * sizeof(*rf->vals));
    for (void *it = json_object_iter((json_t *)src); it;
         it = json_object_iter_next((json_t *)src, it)) {
        const char *k = json_object_iter_key(it);
        const json_t *v = json_object_iter_value(it);
        size_t c = strmap_get(&rf->colmap, k, strlen(k));
        if (c == NO_COL) {
            rf->dropped += !json_is_null(v);
            continue;
        }
        for (; c != NO_COL; c = rf->col_next[c])
            rf->vals[c] = v;
    }
    rc = rf->fmt == SL_REPORT_CSV ? csv_row(rf, rowv, errbuf, errsz)
                                  : xlsx_row(rf, rowv, errors, errbuf, errsz);
    if (rc == 0)
        rf->written++;
    return rc;
}

uint64_t sl_report_file_rows(const struct sl_report_file *rf)
{
    return rf->rows;
}

static int cmp_kind(const void *a, const void *b)
{
    const struct kind *x = *(const struct kind *const *)a, *y = *(const struct kind *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

size_t sl_report_file_top(const struct sl_report_file *rf, struct sl_report_problem *out, size_t n)
{
    if (!rf->nkinds || !n)
        return 0;
    const struct kind **order = malloc(rf->nkinds * sizeof(*order));
    if (!order)
        return 0;
    for (size_t i = 0; i < rf->nkinds; i++)
        order[i] = &rf->kinds[i];
    qsort(order, rf->nkinds, sizeof(*order), cmp_kind);
    size_t m = n < rf->nkinds ? n : rf->nkinds;
    for (size_t i = 0; i < m; i++)
        out[i] = (struct sl_report_problem){order[i]->attribute, order[i]->code, order[i]->message,
                                            order[i]->count};
    free(order);
    return m;
}

/* ---- close -------------------------------------------------------------- */

struct sum_writer {
    struct sl_report_file *rf;
    lxw_row_t r;
    lxw_error e;
};

static void sum_text(struct sum_writer *sw, lxw_col_t c, const char *s, lxw_format *f)
{
    if (!sw->e)
        sw->e = put_str(sw->rf, sw->rf->ws_sum, sw->r, c, s, f);
}

static void sum_num(struct sum_writer *sw, lxw_col_t c, uint64_t v)
{
    if (!sw->e)
        sw->e = worksheet_write_number(sw->rf->ws_sum, sw->r, c, (double)v, NULL);
}

static void sum_pair(struct sum_writer *sw, const char *label, const char *value)
{
    sum_text(sw, 0, label, sw->rf->f_bold);
    sum_text(sw, 1, value, NULL);
    sw->r++;
}

static void sum_count(struct sum_writer *sw, const char *label, uint64_t v)
{
    sum_text(sw, 0, label, NULL);
    sum_num(sw, 1, v);
    sw->r++;
}

static lxw_error write_summary(struct sl_report_file *rf, const struct sl_report_meta *m)
{
    struct sum_writer sw = {rf, 0, LXW_NO_ERROR};
    char t0[32] = "", t1[32] = "", line[256];
    if (m->started_at)
        sl_format_utc(m->started_at, false, t0);
    if (m->finished_at)
        sl_format_utc(m->finished_at, false, t1);
    lxw_worksheet *ws = rf->ws_sum;
    worksheet_set_column(ws, 0, 0, 34, NULL);
    worksheet_set_column(ws, 1, 1, 28, NULL);
    worksheet_set_column(ws, 2, 2, 10, NULL);
    worksheet_set_column(ws, 3, 3, 60, NULL);

    sum_text(&sw, 0, "Report of a sluice run", rf->f_title);
    sw.r += 2;
    sum_pair(&sw, "Job", m->job);
    sum_pair(&sw, "Run", m->run_id);
    sum_pair(&sw, "Status", m->status);
    if (m->reason)
        sum_pair(&sw, "Reason", m->reason);
    sum_pair(&sw, "Source", m->source);
    sum_pair(&sw, "Started (UTC)", t0);
    sum_pair(&sw, "Finished (UTC)", t1);
    sw.r++;

    const struct sl_counts *c = &m->counts;
    sum_text(&sw, 0, "Rows", rf->f_head);
    sum_text(&sw, 1, "", rf->f_head);
    sw.r++;
    sum_count(&sw, "Read", c->read);
    sum_count(&sw, "Published", c->published);
    sum_count(&sw, "Created", c->created);
    sum_count(&sw, "Updated", c->updated);
    sum_count(&sw, "Unchanged", c->unchanged);
    sum_count(&sw, "Rejected", c->rejected);
    sum_count(&sw, "Duplicates", c->duplicates);
    sum_count(&sw, "Not created (new records not allowed)", c->not_created);
    sum_count(&sw, "In the sheet \"Rejected rows\"", rf->written);
    if (rf->omitted)
        sum_count(&sw, "Rejected but not in this file", rf->omitted);
    if (rf->dropped)
        sum_count(&sw, "Values not shown (no column)", rf->dropped);
    sw.r++;

    struct sl_report_problem top[SL_REPORT_TOP];
    size_t ntop = sl_report_file_top(rf, top, SL_REPORT_TOP);
    sum_text(&sw, 0, "Most frequent problems", rf->f_title);
    sw.r++;
    const char *heads[] = {"Attribute", "Problem", "Count", "Example"};
    for (lxw_col_t i = 0; i < 4; i++)
        sum_text(&sw, i, heads[i], rf->f_head);
    sw.r++;
    for (size_t i = 0; i < ntop; i++) {
        sum_text(&sw, 0, top[i].attribute, NULL);
        sum_text(&sw, 1, top[i].code, NULL);
        sum_num(&sw, 2, top[i].count);
        sum_text(&sw, 3, top[i].message, NULL);
        sw.r++;
    }
    if (!ntop) {
        sum_text(&sw, 0, "none", NULL);
        sw.r++;
    }
    sw.r++;

    sum_text(&sw, 0, "How to fix", rf->f_title);
    sw.r++;
    sum_text(&sw, 0,
             "Fix the highlighted cells in the sheet \"Rejected rows\" (point at a cell to see "
             "what is wrong; the column _errors lists every problem of the row), then send the "
             "file again.",
             NULL);
    sw.r++;
    if (rf->uncommented) {
        snprintf(line, sizeof(line),
                 "Only the first %d highlighted cells have a comment; the column _errors lists "
                 "every problem.",
                 SL_REPORT_MAX_COMMENTS);
        sum_text(&sw, 0, line, NULL);
        sw.r++;
    }
    if (rf->omitted) {
        snprintf(line, sizeof(line),
                 "This file holds the first %llu rejected rows (a sheet holds no more); the "
                 "next report shows the rest.",
                 (unsigned long long)rf->written);
        sum_text(&sw, 0, line, NULL);
        sw.r++;
    }
    if (rf->dropped) {
        sum_text(&sw, 0,
                 "Some rows have fields that are not among the columns of the sheet: they are "
                 "not shown.",
                 NULL);
        sw.r++;
    }
    return sw.e;
}

static lxw_error finish_rows_sheet(struct sl_report_file *rf)
{
    lxw_worksheet *ws = rf->ws_rows;
    size_t last = FIRST_SRC_COL + rf->nshown - 1;
    lxw_error e = worksheet_autofilter(ws, 0, 0, (lxw_row_t)rf->written, (lxw_col_t)last);
    if (e)
        return e;
    worksheet_set_column(ws, 0, 0, 8, NULL);
    for (size_t c = 1; c <= last; c++) {
        double lo = c == 1 ? 24 : 10, hi = c == 1 ? 80 : 50;
        double w = (double)rf->width[c] + 3; /* and the filter button */
        w = w < lo ? lo : w > hi ? hi : w;
        worksheet_set_column(ws, (lxw_col_t)c, (lxw_col_t)c, w, NULL);
    }
    return LXW_NO_ERROR;
}

int sl_report_file_close(struct sl_report_file *rf, const struct sl_report_meta *meta, char *errbuf,
                         size_t errsz)
{
    int rc = 0;
    if (rf->failed) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "the report %s failed already", rf->path);
        goto out;
    }
    /* no row and no columns: _row and _errors only */
    if (!rf->have_cols && set_columns(rf, NULL, 0)) {
        rc = nomem(rf, errbuf, errsz);
        goto out;
    }
    if (!rf->header_done && (rc = write_header(rf, errbuf, errsz)) != 0)
        goto out;
    if (rf->fmt == SL_REPORT_CSV) {
        FILE *f = rf->csv;
        rf->csv = NULL;
        if (fflush(f) | fclose(f)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "could not write the report %s: %s", rf->path,
                           strerror(errno));
            goto out;
        }
    } else {
        lxw_error e = write_summary(rf, meta ? meta : &rf->meta);
        if (!e)
            e = finish_rows_sheet(rf);
        if (e) {
            rc = lxw_fail(rf, e, errbuf, errsz);
            goto out;
        }
        lxw_workbook *wb = rf->wb;
        rf->wb = NULL; /* workbook_close frees it, whatever happens */
        if ((e = workbook_close(wb)) != LXW_NO_ERROR) {
            rc = lxw_fail(rf, e, errbuf, errsz);
            goto out;
        }
    }
    if (rename(rf->tmp, rf->path))
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "could not rename %s to %s: %s", rf->tmp, rf->path,
                       strerror(errno));
out:
    sl_report_file_destroy(rf);
    return rc;
}

void sl_report_file_destroy(struct sl_report_file *rf)
{
    if (!rf)
        return;
    if (rf->wb) {
        /* libxlsxwriter 1.1.4 closes a worksheet's temporary file only when
         * it writes the workbook: an abandoned one would leak them */
        lxw_worksheet *ws[] = {rf->ws_sum, rf->ws_rows};
        for (size_t i = 0; i < SL_ARRAY_LEN(ws); i++) {
            if (ws[i] && ws[i]->optimize_tmpfile) {
                fclose(ws[i]->optimize_tmpfile);
                ws[i]->optimize_tmpfile = NULL;
            }
        }
        lxw_workbook_free(rf->wb);
    }
    if (rf->csv)
        fclose(rf->csv);
    if (rf->tmp)
        unlink(rf->tmp); /* after a successful close it is gone already */
    for (size_t i = 0; i < rf->ncols; i++)
        free(rf->cols[i]);
    free(rf->cols);
    free(rf->col_next);
    free(rf->vals);
    free(rf->width);
    free(rf->colmap.slot);
    for (size_t i = 0; i < rf->nlinks; i++) {
        free(rf->links[i].attribute);
        free(rf->links[i].column);
    }
    free(rf->links);
    for (size_t i = 0; i < rf->nkinds; i++) {
        free(rf->kinds[i].key);
        free(rf->kinds[i].message);
    }
    free(rf->kinds);
    free(rf->kindmap.slot);
    free(rf->hits);
    sl_buf_cleanup(&rf->line);
    sl_buf_cleanup(&rf->text);
    sl_buf_cleanup(&rf->errs);
    sl_buf_cleanup(&rf->note);
    sl_buf_cleanup(&rf->num);
    for (size_t i = 0; i < SL_ARRAY_LEN(rf->meta_str); i++)
        free(rf->meta_str[i]);
    free(rf->tmp);
    free(rf->tmpdir);
    free(rf->path);
    free(rf);
}
