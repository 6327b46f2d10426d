/*
 * The CSV reader (reader.h): a file descriptor streamed into rows.
 *
 * Raw 64 KiB blocks go through the decoder (to UTF-8, BOM dropped) and then
 * into libcsv, whose field and row callbacks copy each field into one reused
 * row buffer; a finished row is handed to the caller and the buffer starts
 * over, so memory holds one input block and one row, bounded by max_field,
 * max_columns and max_row.
 *
 * libcsv runs without CSV_STRICT: real files have stray quotes in unquoted
 * fields (5" screen) and unescaped quotes inside quoted ones ("say "hi"
 * now"), which it keeps as text instead of failing the whole file. Spaces
 * are data (RFC 4180; the mapping has a trim filter). CSV_REPALL_NL reports
 * every line end, which counts lines and skips blank ones. libcsv's
 * byte-at-a-time loop is the bottleneck (~3M rows/s), so a line between rows
 * whose fields are plain or quoted and closed on that line is split with
 * memchr instead (fast_line), with the same callbacks libcsv would make;
 * everything else goes to libcsv. The fuzz harness checks that both agree.
 *
 * A row with a problem (invalid bytes in its encoding, a NUL byte, a field
 * count different from the header's, a quote still open at the end of the
 * file) is handed over with an error so that it becomes a rejected row; only
 * what makes the whole file unreadable (binary data, no header, a limit)
 * fails the read.
 */
#include <csv.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"

#define BLOCK_SIZE          (64 * 1024) /* raw bytes read at a time */
#define SLICE_SIZE          (64 * 1024) /* decoded bytes handed to libcsv at a time */
#define DEFAULT_MAX_FIELD   ((size_t)1 << 20)
#define DEFAULT_MAX_COLUMNS ((size_t)16384)
#define DEFAULT_MAX_ROW     ((size_t)16 << 20)
#define DETECT_LINES        20 /* lines looked at to guess the delimiter */
#define EXTRA_SHOWN         5  /* extra values quoted in a ragged row's error */
#define EXTRA_VALUE_MAX     32 /* bytes of each quoted extra value */
/* libcsv's parser states (libcsv.c; unchanged since 3.0) */
#define LIBCSV_ROW_NOT_BEGUN 0
#define LIBCSV_FIELD_BEGUN   2

/* Where the decoder replaced an invalid sequence in the current block. */
struct mark {
    size_t at;    /* offset in the decoded block */
    uint64_t off; /* offset in the input */
    unsigned char byte;
};

struct csvr {
    size_t max_field, max_columns, max_row;
    bool header;
    sl_header_fn hdr_fn;
    sl_row_fn fn;
    void *ud;
    struct sl_reader_stats *stats;
    char *errbuf;
    size_t errsz;
    const char *enc_name; /* for messages */
    int rc;               /* an error or the callback's value: stops reading */
    struct csv_parser p;

    /* the row being read: field i is data.data + off[i], lens[i] bytes */
    struct sl_buf data;
    size_t *off, *lens;
    const char **vals;
    size_t cap; /* of off, lens, vals */
    size_t nf;  /* fields seen, extra ones included */
    uint64_t row_line;
    char extra[EXTRA_SHOWN * (EXTRA_VALUE_MAX + 8) + 1]; /* 'x', 'y' */
    size_t extralen;
    uint64_t extra_lines; /* line ends inside extra (dropped) values */
    bool bad;             /* an invalid sequence: bad_off, bad_byte */
    uint64_t bad_off;
    unsigned char bad_byte;
    bool nul;
    bool unterminated;
    struct sl_buf err;
    struct sl_buf tmp; /* a quoted field without its doubled quotes */
    bool fast;         /* fast_line() for simple lines */

    /* the columns, once the header (or the first row) has been read */
    bool have_cols;
    size_t ncols;
    struct sl_buf namebuf;
    const char **names;

    uint64_t line; /* 1-based line of the next input byte */
    bool prev_cr;  /* the last event was a CR line end */
    uint64_t rows;

    struct mark *marks; /* of the current block */
    size_t nmarks, capmarks;
    bool marks_oom;
};

static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static uint64_t cur_line(const struct csvr *r)
{
    return r->nf ? r->row_line : r->line;
}

static void stop(struct csvr *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; every callback does nothing after it. */
static void stop(struct csvr *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vseterr_first(&r->rc, r->errbuf, r->errsz, err, fmt, ap);
    va_end(ap);
}

/* Line ends in s: LF, CR LF and a lone CR count once each. */
static uint64_t count_line_ends(const char *s, size_t n)
{
    uint64_t k = 0;
    const char *p = s, *end = s + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    p = s;
    while ((p = memchr(p, '\r', (size_t)(end - p))) != NULL) {
        p++;
        if (p == end || *p != '\n')
            k++;
    }
    return k;
}

static int grow_fields(struct csvr *r, size_t need)
{
    if (need <= r->cap)
        return 0;
    size_t ncap = r->cap ? r->cap : 16;
    while (ncap < need)
        ncap *= 2;
    size_t *off = realloc(r->off, ncap * sizeof(*off));
    if (off)
        r->off = off;
    size_t *lens = realloc(r->lens, ncap * sizeof(*lens));
    if (lens)
        r->lens = lens;
    const char **vals = realloc(r->vals, ncap * sizeof(*vals));
    if (vals)
        r->vals = vals;
    if (!off || !lens || !vals) {
        stop(r, SL_ERR_NOMEM, "out of memory reading a CSV row");
        return SL_ERR_NOMEM;
    }
    r->cap = ncap;
    return 0;
}

/* Quotes the start of an extra value into the error preview. */
static void keep_extra(struct csvr *r, const char *s, size_t len)
{
    r->extra_lines += count_line_ends(s, len);
    size_t shown = r->nf - r->ncols; /* extra values before this one */
    if (shown >= EXTRA_SHOWN)
        return;
    size_t n = len;
    bool cut = false;
    if (n > EXTRA_VALUE_MAX) {
        n = EXTRA_VALUE_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--; /* not inside a UTF-8 character */
        cut = true;
    }
    char *o = r->extra + r->extralen;
    if (shown)
        o += sprintf(o, ", ");
    *o++ = '\'';
    for (size_t i = 0; i < n; i++)
        *o++ = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    if (cut)
        o += sprintf(o, "...");
    *o++ = '\'';
    *o = '\0';
    r->extralen = (size_t)(o - r->extra);
}

static void on_field(void *s, size_t len, void *data)
{
    struct csvr *r = data;
    if (r->rc)
        return;
    r->prev_cr = false;
    if (r->nf == 0)
        r->row_line = r->line;
    if (len > r->max_field) {
        stop(r, SL_ERR_LIMIT, "line %llu: a field is longer than %zu bytes (max_field)",
             (unsigned long long)r->row_line, r->max_field);
        return;
    }
    if (r->nf >= r->max_columns) {
        stop(r, SL_ERR_LIMIT, "line %llu: a row has more than %zu columns (max_columns)",
             (unsigned long long)r->row_line, r->max_columns);
        return;
    }
    if (r->have_cols && r->nf >= r->ncols) {
        keep_extra(r, s, len);
        r->nf++;
        return;
    }
    if (r->nf == r->cap && grow_fields(r, r->nf + 1))
        return;
    size_t at = r->data.len;
    if (at + len + 1 > r->max_row) {
        stop(r, SL_ERR_LIMIT, "line %llu: a row is longer than %zu bytes (max_row)",
             (unsigned long long)r->row_line, r->max_row);
        return;
    }
    if (r->data.cap - at < len + 1 && sl_buf_reserve(&r->data, len + 1)) {
        stop(r, SL_ERR_NOMEM, "out of memory reading a CSV row");
        return;
    }
    if (len)
        memcpy(r->data.data + at, s, len);
    r->data.data[at + len] = '\0';
    r->data.len = at + len + 1;
    r->off[r->nf] = at;
    r->lens[r->nf] = len;
    r->nf++;
}

/* A row that is one field of blanks counts as an empty line (trailing
 * whitespace lines are common), except in a one-column file. */
static bool blank_row(const struct csvr *r)
{
    if (r->nf != 1 || (r->have_cols && r->ncols == 1) || r->bad || r->nul)
        return false;
    const char *s = r->data.data;
    for (size_t i = 0; i < r->lens[0]; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    return true;
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The header rule of every reader (reader.h), kept with the CSV reader that
 * set it: the names given so far sit in an open-addressing set of offsets
 * into namebuf, so a taken name is found without comparing every column. */
int sl_reader_name_columns(const char *data, const size_t *off, const size_t *lens, size_t n,
                           struct sl_buf *namebuf, const char **names)
{
    size_t nslots = 16;
    while (nslots < 2 * n)
        nslots *= 2;
    size_t *slots = calloc(nslots, sizeof(*slots)); /* name offset + 1; 0 free */
    size_t *noff = malloc((n ? n : 1) * sizeof(*noff));
    struct sl_buf cand = SL_BUF_INIT;
    int rc = SL_ERR_NOMEM;
    if (!slots || !noff)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sl_buf_reset(&cand);
        if (data && off[i] != SIZE_MAX && lens[i])
            rc = sl_buf_append(&cand, data + off[i], lens[i]);
        else
            rc = sl_buf_printf(&cand, data ? "_%zu" : "%zu", i + 1);
        if (rc)
            goto out;
        size_t baselen = cand.len;
        for (unsigned long k = 2;; k++) {
            size_t h = (size_t)hash_name(cand.data) & (nslots - 1);
            bool taken = false;
            while (slots[h]) {
                if (strcmp(namebuf->data + slots[h] - 1, cand.data) == 0) {
                    taken = true;
                    break;
                }
                h = (h + 1) & (nslots - 1);
            }
            if (!taken) {
                noff[i] = namebuf->len;
                if ((rc = sl_buf_append(namebuf, cand.data, cand.len + 1)))
                    goto out;
                slots[h] = noff[i] + 1;
                break;
            }
            cand.len = baselen;
            if ((rc = sl_buf_printf(&cand, "_%lu", k)))
                goto out;
        }
    }
    for (size_t i = 0; i < n; i++)
        names[i] = namebuf->data + noff[i];
    rc = 0;
out:
    free(slots);
    free(noff);
    sl_buf_cleanup(&cand);
    return rc;
}

/* Names the n columns (sl_reader_name_columns): the header fields, or "1",
 * "2", ... */
static int make_names(struct csvr *r, size_t n, bool from_header)
{
    const char *text = from_header ? (r->data.data ? r->data.data : "") : NULL;
    r->names = malloc((n ? n : 1) * sizeof(*r->names));
    if (!r->names || sl_reader_name_columns(text, r->off, r->lens, n, &r->namebuf, r->names))
        goto nomem;
    r->ncols = n;
    r->have_cols = true;
    if (grow_fields(r, n))
        goto nomem;
    if (r->hdr_fn) {
        int hrc = r->hdr_fn(r->ud, r->names, n);
        if (hrc)
            r->rc = hrc;
    }
    return r->rc;
nomem:
    stop(r, SL_ERR_NOMEM, "out of memory reading the CSV header");
    return SL_ERR_NOMEM;
}

static void header_row(struct csvr *r)
{
    if (r->bad) {
        stop(r, SL_ERR_PARSE,
             "line %llu: the header row is not valid %s (byte 0x%02x at offset %llu); set "
             "source.csv.encoding to the file's encoding (latin1? windows-1252?)",
             (unsigned long long)r->row_line, r->enc_name, r->bad_byte,
             (unsigned long long)r->bad_off);
        return;
    }
    if (r->nul) {
        stop(r, SL_ERR_PARSE, "line %llu: the header row contains a NUL byte",
             (unsigned long long)r->row_line);
        return;
    }
    if (r->unterminated) {
        stop(r, SL_ERR_PARSE, "line %llu: unterminated quoted field in the header row",
             (unsigned long long)r->row_line);
        return;
    }
    make_names(r, r->nf, true);
}

static void add_error(struct csvr *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(struct csvr *r, const char *fmt, ...)
{
    if (r->err.len)
        sl_buf_puts(&r->err, "; ");
    va_list ap;
    va_start(ap, fmt);
    sl_buf_vprintf(&r->err, fmt, ap);
    va_end(ap);
}

static void emit_row(struct csvr *r)
{
    size_t n = r->ncols, have = r->nf < n ? r->nf : n;
    for (size_t i = 0; i < have; i++)
        r->vals[i] = r->data.data + r->off[i];
    for (size_t i = have; i < n; i++) {
        r->vals[i] = NULL;
        r->lens[i] = 0;
    }
    struct sl_row row = {
        .row = ++r->rows,
        .names = r->names,
        .values = r->vals,
        .lens = r->lens,
        .n = n,
        .error = NULL,
    };
    if (r->bad || r->nul || r->unterminated || r->nf != n) {
        sl_buf_reset(&r->err);
        const char *what = r->header ? "the header" : "the first row";
        if (r->bad)
            add_error(r, "invalid %s at byte offset %llu (0x%02x)", r->enc_name,
                      (unsigned long long)r->bad_off, r->bad_byte);
        if (r->nul)
            add_error(r, "a NUL byte in the data");
        if (r->unterminated)
            add_error(r, "unterminated quoted field");
        if (r->nf < n)
            add_error(r, "has %zu fields, %s has %zu", r->nf, what, n);
        if (r->nf > n) {
            size_t more = r->nf - n > EXTRA_SHOWN ? r->nf - n - EXTRA_SHOWN : 0;
            if (more)
                add_error(r, "has %zu fields, %s has %zu (extra: %s and %zu more)", r->nf, what, n,
                          r->extra, more);
            else
                add_error(r, "has %zu fields, %s has %zu (extra: %s)", r->nf, what, n, r->extra);
        }
        row.error = r->err.data ? r->err.data : "invalid row";
    }
    if (r->stats)
        r->stats->rows = r->rows;
    if (r->fn) {
        int rc = r->fn(r->ud, &row);
        if (rc)
            r->rc = rc;
    }
}

static void on_row(int c, void *data)
{
    struct csvr *r = data;
    if (r->rc)
        return;
    if (r->nf == 0) { /* an empty line, or the LF of a CR LF */
        if (c == '\n' && r->prev_cr) {
            r->prev_cr = false;
        } else if (c == '\n' || c == '\r') {
            r->line++;
            r->prev_cr = c == '\r';
        }
        return;
    }
    uint64_t inner = count_line_ends(r->data.data, r->data.len) + r->extra_lines;
    if (!blank_row(r)) {
        if (!r->have_cols) {
            if (r->header)
                header_row(r);
            else if (make_names(r, r->nf, false) == 0)
                emit_row(r);
        } else {
            emit_row(r);
        }
    }
    r->line += inner;
    if (c == '\n' || c == '\r')
        r->line++;
    r->prev_cr = c == '\r';
    r->nf = 0;
    r->data.len = 0;
    r->extralen = 0;
    r->extra[0] = '\0';
    r->extra_lines = 0;
    r->bad = r->nul = r->unterminated = false;
}

static void on_invalid(void *ud, uint64_t offset, size_t at, unsigned char byte)
{
    struct csvr *r = ud;
    if (r->nmarks == r->capmarks) {
        size_t ncap = r->capmarks ? 2 * r->capmarks : 64;
        struct mark *m = realloc(r->marks, ncap * sizeof(*m));
        if (!m) {
            r->marks_oom = true;
            return;
        }
        r->marks = m;
        r->capmarks = ncap;
    }
    r->marks[r->nmarks++] = (struct mark){.at = at, .off = offset, .byte = byte};
}

/* Hands s[0..n) to libcsv in slices, checking the open field's size. */
static int feed_libcsv(struct csvr *r, const char *s, size_t n)
{
    while (n) {
        size_t k = n < SLICE_SIZE ? n : SLICE_SIZE;
        /* grow libcsv's field buffer geometrically (its default is 128 bytes
         * at a time), up to 1 MiB at a time */
        size_t blk = csv_get_buffer_size(&r->p);
        csv_set_blk_size(&r->p, blk < 4096 ? 4096 : blk > (1u << 20) ? (1u << 20) : blk);
        size_t done = csv_parse(&r->p, s, k, on_field, on_row, r);
        if (r->rc)
            return r->rc;
        if (done < k) {
            stop(r, SL_ERR_NOMEM, "line %llu: %s", (unsigned long long)cur_line(r),
                 csv_strerror(csv_error(&r->p)));
            return r->rc;
        }
        /* (+ 1: a closing quote waits in the buffer until the next byte) */
        if (r->p.entry_pos > r->max_field + 1) {
            stop(r, SL_ERR_LIMIT, "line %llu: a field is longer than %zu bytes (max_field)%s",
                 (unsigned long long)cur_line(r), r->max_field,
                 r->p.quoted ? "; is a quote never closed?" : "");
            return r->rc;
        }
        s += k;
        n -= k;
    }
    return 0;
}

/* Reads one line (s[0..len), its LF not included) the way libcsv would,
 * without libcsv's byte-at-a-time loop: plain fields and quoted fields that
 * close on the same line. Anything else (a quote left open, text after a
 * closing quote, a CR inside) returns false with nothing kept, and the line
 * goes to libcsv. Called between rows only. */
static bool fast_line(struct csvr *r, const char *s, size_t len)
{
    const char delim = (char)r->p.delim_char, quote = (char)r->p.quote_char;
    bool crlf = len && s[len - 1] == '\r', prev_cr = r->prev_cr;
    if (crlf)
        len--;
    if (memchr(s, '\r', len))
        return false;
    for (size_t i = 0; i < len;) {
        if (s[i] != quote) {
            const char *d = memchr(s + i, delim, len - i);
            size_t end = d ? (size_t)(d - s) : len;
            on_field((void *)(s + i), end - i, r);
            if (!d)
                break;
            i = end + 1;
        } else {
            size_t j = i + 1, close;
            bool doubled = false;
            for (;;) {
                const char *q = memchr(s + j, quote, len - j);
                if (!q)
                    goto slow;
                close = (size_t)(q - s);
                if (close + 1 < len && s[close + 1] == quote) {
                    doubled = true;
                    j = close + 2;
                    continue;
                }
                break;
            }
            if (close + 1 < len && s[close + 1] != delim)
                goto slow;
            if (!doubled) {
                on_field((void *)(s + i + 1), close - i - 1, r);
            } else {
                sl_buf_reset(&r->tmp);
                for (size_t k = i + 1; k < close; k++) {
                    if (sl_buf_putc(&r->tmp, s[k])) {
                        stop(r, SL_ERR_NOMEM, "out of memory reading a CSV row");
                        return true;
                    }
                    if (s[k] == quote)
                        k++;
                }
                on_field(r->tmp.data, r->tmp.len, r);
            }
            if (close + 1 >= len)
                break;
            i = close + 2;
        }
        if (i == len) /* a delimiter ends the line: one more, empty field */
            on_field((void *)"", 0, r);
    }
    on_row(crlf ? '\r' : '\n', r);
    if (crlf)
        on_row('\n', r);
    return true;
slow:
    r->nf = 0;
    r->data.len = 0;
    r->extralen = 0;
    r->extra[0] = '\0';
    r->extra_lines = 0;
    r->prev_cr = prev_cr;
    return false;
}

/* Parses s[0..n): whole lines between rows through fast_line, the rest
 * (quotes that span lines, CR line ends, a line cut by the block end)
 * through libcsv up to the next LF. */
static int parse(struct csvr *r, const char *s, size_t n)
{
    size_t pos = 0;
    while (pos < n && !r->rc) {
        const char *nl = memchr(s + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - s) + 1 : n;
        if (nl && r->fast && r->p.pstate == LIBCSV_ROW_NOT_BEGUN &&
            fast_line(r, s + pos, end - 1 - pos)) {
            pos = end;
            continue;
        }
        if (r->rc)
            break;
        int rc = feed_libcsv(r, s + pos, end - pos);
        if (rc)
            return rc;
        pos = end;
    }
    return r->rc;
}

/* Parses one decoded block, flagging the rows that hold a replaced invalid
 * sequence or (after the first block) a NUL byte. */
static int feed_block(struct csvr *r, const char *s, size_t len, bool check_nul)
{
    if (len == 0)
        return 0;
    size_t pos = 0, mi = 0;
    const char *nul = check_nul ? memchr(s, 0, len) : NULL;
    for (;;) {
        size_t next = len;
        int kind = 0;
        if (mi < r->nmarks && r->marks[mi].at < next) {
            next = r->marks[mi].at;
            kind = 1;
        }
        if (nul && (size_t)(nul - s) < next) {
            next = (size_t)(nul - s);
            kind = 2;
        }
        int rc = parse(r, s + pos, next - pos);
        if (rc)
            return rc;
        if (kind == 0)
            return 0;
        /* the byte at next belongs to the row in progress, or starts the next one */
        if (kind == 1) {
            if (!r->bad) {
                r->bad = true;
                r->bad_off = r->marks[mi].off;
                r->bad_byte = r->marks[mi].byte;
            }
            mi++;
        } else {
            r->nul = true;
            nul = memchr(nul + 1, 0, len - next - 1);
        }
        pos = next;
    }
}

/* The first block must not hold NUL bytes: a NUL is almost always a binary
 * file (or UTF-16 without a BOM) handed over as CSV. */
static int check_binary(struct csvr *r, const struct sl_decoder *d, const unsigned char *b,
                        size_t n)
{
    size_t at = n;
    if (sl_decoder_encoding(d) == SL_ENC_UTF16) {
        size_t i = n >= 2 && ((b[0] == 0xff && b[1] == 0xfe) || (b[0] == 0xfe && b[1] == 0xff));
        for (i *= 2; i + 1 < n; i += 2) {
            if (b[i] == 0 && b[i + 1] == 0) {
                at = i;
                break;
            }
        }
    } else {
        const unsigned char *z = memchr(b, 0, n);
        if (z)
            at = (size_t)(z - b);
    }
    if (at == n)
        return 0;
    bool utf16 = n >= 4 && ((b[1] == 0 && b[3] == 0 && b[0] && b[2]) ||
                            (b[0] == 0 && b[2] == 0 && b[1] && b[3]));
    stop(r, SL_ERR_PARSE, "the file looks binary (NUL byte at offset %zu), not CSV%s", at,
         utf16 ? "; if it is UTF-16 without a byte order mark, set source.csv.encoding to utf-16"
               : "");
    return r->rc;
}

/* Reads up to cap bytes; fills the buffer when full is set (the first
 * block, for the delimiter guess and the binary check). */
static int read_block(struct csvr *r, int fd, char *buf, size_t cap, bool full, size_t *got,
                      bool *eof)
{
    *got = 0;
    while (*got < cap) {
        ssize_t k = read(fd, buf + *got, cap - *got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            stop(r, SL_ERR_IO, "could not read the CSV input: %s", strerror(errno));
            return r->rc;
        }
        if (k == 0) {
            *eof = true;
            break;
        }
        *got += (size_t)k;
        if (!full)
            break;
    }
    return 0;
}

int sl_csv_read_fd(int fd, const struct sl_csv_opts *opts, sl_header_fn hdr_fn, sl_row_fn fn,
                   void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct sl_csv_opts o = opts ? *opts : (struct sl_csv_opts){.header = true};
    unsigned char quote = o.quote ? (unsigned char)o.quote : '"';
    unsigned char delim = (unsigned char)o.delimiter;
    if (quote == '\r' || quote == '\n' || quote >= 0x80)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "source.csv.quote: must be one ASCII character other than CR or LF");
    if (delim && (delim == '\r' || delim == '\n' || delim >= 0x80 || delim == quote))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "source.csv.delimiter: must be one ASCII character other than the "
                         "quote, CR or LF");
    if (!sl_encoding_name(o.encoding))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.csv.encoding: unknown encoding");

    struct csvr r = {
        .max_field = o.max_field ? o.max_field : DEFAULT_MAX_FIELD,
        .max_columns = o.max_columns ? o.max_columns : DEFAULT_MAX_COLUMNS,
        .max_row = o.max_row ? o.max_row : DEFAULT_MAX_ROW,
        .header = o.header,
        .hdr_fn = hdr_fn,
        .fn = fn,
        .ud = ud,
        .stats = stats,
        .errbuf = errbuf,
        .errsz = errsz,
        .line = 1,
    };
    if (r.max_row < r.max_field + 1)
        r.max_row = r.max_field + 1;
    sl_buf_init(&r.data);
    sl_buf_init(&r.err);
    sl_buf_init(&r.tmp);
    r.fast = !o.no_fast_path;
    sl_buf_init(&r.namebuf);
    if (errbuf && errsz)
        errbuf[0] = '\0';

    char *raw = malloc(BLOCK_SIZE), *dec = NULL;
    size_t declen = 0, deccap = 0;
    struct sl_decoder *d = sl_decoder_new(o.encoding);
    bool parser = false;
    int rc;
    if (!raw || !d) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sl_decoder_set_lenient(d, on_invalid, &r);
    if (csv_init(&r.p, CSV_REPALL_NL) != 0) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    parser = true;
    csv_set_quote(&r.p, quote);
    csv_set_space_func(&r.p, no_space);

    bool first = true, eof = false;
    while (!eof) {
        size_t n;
        if ((rc = read_block(&r, fd, raw, BLOCK_SIZE, first, &n, &eof)))
            goto fail;
        if (stats)
            stats->bytes += n;
        declen = 0;
        r.nmarks = 0;
        rc = sl_decoder_feed(d, raw, n, eof, &dec, &declen, &deccap, errbuf, errsz);
        if (rc)
            goto fail;
        if (r.marks_oom) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (first) {
            enum sl_encoding enc = sl_decoder_encoding(d);
            r.enc_name = enc == SL_ENC_UTF8    ? "UTF-8"
                         : enc == SL_ENC_UTF16 ? "UTF-16"
                                               : sl_encoding_name(enc);
            if ((rc = check_binary(&r, d, (const unsigned char *)raw, n)))
                goto fail;
            if (!delim)
                delim = (unsigned char)sl_csv_detect_delimiter(dec, declen, (char)quote);
            if (delim == quote)
                delim = quote == ',' ? ';' : ',';
            csv_set_delim(&r.p, delim);
            if (stats) {
                stats->delimiter = (char)delim;
                stats->encoding = enc;
            }
        }
        if ((rc = feed_block(&r, dec, declen, !first)))
            goto fail;
        first = false;
    }
    r.unterminated = r.p.pstate == LIBCSV_FIELD_BEGUN && r.p.quoted;
    csv_fini(&r.p, on_field, on_row, &r);
    if ((rc = r.rc))
        goto fail;
    if (r.header && !r.have_cols)
        rc = sl_seterr(errbuf, errsz, SL_ERR_PARSE, "the file is empty (no header row)");
fail:
    if (parser)
        csv_free(&r.p);
    sl_decoder_destroy(d);
    free(raw);
    free(dec);
    free(r.off);
    free(r.lens);
    free(r.vals);
    free(r.names);
    free(r.marks);
    sl_buf_cleanup(&r.data);
    sl_buf_cleanup(&r.err);
    sl_buf_cleanup(&r.tmp);
    sl_buf_cleanup(&r.namebuf);
    return rc;
}

/* Field separators per line (outside quotes) for one candidate delimiter;
 * the number of lines counted. */
static size_t count_delims(const char *buf, size_t len, char delim, char quote, size_t *counts)
{
    size_t lines = 0, count = 0;
    bool start = true, inq = false, content = false;
    for (size_t i = 0; i < len && lines < DETECT_LINES; i++) {
        char c = buf[i];
        if (inq) {
            if (c == quote) {
                if (i + 1 < len && buf[i + 1] == quote)
                    i++;
                else
                    inq = false;
            }
            continue;
        }
        if (c == '\n' || c == '\r') {
            if (content)
                counts[lines++] = count;
            count = 0;
            start = true;
            content = false;
        } else if (c == delim) {
            count++;
            start = true;
            content = true;
        } else if (c == quote && start) {
            inq = true;
            start = false;
            content = true;
        } else if (c != ' ') {
            start = false;
            content = true;
        }
    }
    /* the last line may be cut by the end of the sample: use it only when
     * there is little else */
    if (content && lines < 2)
        counts[lines++] = count;
    return lines;
}

char sl_csv_detect_delimiter(const char *buf, size_t len, char quote)
{
    static const char cands[] = {',', ';', '\t', '|'};
    if (!quote)
        quote = '"';
    char best = ',';
    size_t best_freq = 0, best_mode = 0;
    if (!buf)
        return best;
    for (size_t c = 0; c < sizeof(cands); c++) {
        if (cands[c] == quote)
            continue;
        size_t counts[DETECT_LINES];
        size_t lines = count_delims(buf, len, cands[c], quote, counts);
        /* the most frequent count per line (the larger on a tie) */
        size_t mode = 0, freq = 0;
        for (size_t i = 0; i < lines; i++) {
            size_t f = 0;
            for (size_t j = 0; j < lines; j++)
                f += counts[j] == counts[i];
            if (f > freq || (f == freq && counts[i] > mode)) {
                freq = f;
                mode = counts[i];
            }
        }
        if (mode == 0)
            continue;
        if (freq > best_freq || (freq == best_freq && mode > best_mode)) {
            best = cands[c];
            best_freq = freq;
            best_mode = mode;
        }
    }
    return best;
}
