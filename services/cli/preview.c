/*
 * sluice preview: the first rows of a job's source beside what the mapping
 * and the validation make of them, with nothing published.
 *
 *   sluice preview JOB.json [--input FILE] [--rows N] [--json]
 *
 * The source is obtained as a run obtains it: --input, or a local path read
 * where it is, or a remote source fetched by the fetcher stage into a
 * temporary directory. The format readers read it up to the rows asked for,
 * each row becomes a record as the parser makes it, and the mapper and
 * validator stages themselves process it, called on this thread over a bus
 * that only captures what they emit: the values and problems shown are the
 * ones a run would publish or reject. The validator's state store (duplicate
 * keys) is a local one in the temporary directory, so no run state is read
 * or written; the directory is removed before anything is printed.
 *
 * What the rows give is spooled to an unnamed temporary file as they come
 * (memory holds the validator's batch, not the preview), and printed once
 * the source was read: a table (one block per row, widths measured in
 * terminal columns), or one JSON document. A source that cannot be read
 * prints an error and no half a document.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "commands.h"
#include "sluice/buf.h"
#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/keyset.h"
#include "sluice/msg.h"
#include "sluice/reader.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/template.h"
#include "sluice/util.h"

#define ROWS_DEFAULT 20
#define ROWS_MAX     10000

/* Terminal columns of the table's middle columns: a longer cell ends in
 * "…". The problem column is last: cut only to fit a terminal. */
#define W_SOURCE      36
#define W_READ        28
#define W_MAPPED      28
#define W_PROBLEM_MIN 24

/* Between the cells of a spooled table line: sanitized cells hold no
 * control character. */
#define SEP '\x1f'

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_INVALID = 2 };

static const char usage_text[] =
    "usage: sluice preview JOB.json [--input FILE] [--rows N] [--json]\n"
    "\n"
    "Shows the first rows of the job's source beside their mapped values and\n"
    "problems, mapped and validated as a run does; nothing is published, no run\n"
    "state is read or written, no file is left behind.\n"
    "\n"
    "  --input FILE  read this local file instead of the job's source\n"
    "  --rows N      how many rows (1 to 10000, default 20)\n"
    "  --json        one JSON document instead of the table\n"
    "\n"
    "Exit status: 0 previewed (rejected rows included), 1 the source cannot be\n"
    "fetched or read, 2 invalid job file or command line.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "sluice: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'sluice preview --help'.\n");
    return EXIT_INVALID;
}

/* ---- the capturing bus ------------------------------------------------- */

/* What a stage emitted, in order. */
struct captured {
    const char *topic; /* the SL_TOPIC_* literal it was emitted on */
    struct sl_msg *msg;
};

/* A bus that only keeps what is sent to it, for stages called on this
 * thread: send() never blocks, nothing else of the bus is used. */
struct capture {
    struct sl_bus bus; /* first: the emitters hold &bus */
    struct captured *q;
    size_t head, n, cap;
};

static int capture_send(struct sl_bus *bus, const char *topic, struct sl_msg *msg)
{
    struct capture *c = (struct capture *)bus;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        struct captured *q = realloc(c->q, cap * sizeof(*q));
        if (!q) {
            sl_msg_unref(msg);
            return SL_ERR_NOMEM;
        }
        c->q = q;
        c->cap = cap;
    }
    c->q[c->n++] = (struct captured){.topic = topic, .msg = msg};
    return 0;
}

static const struct sl_bus_ops capture_ops = {.name = "capture", .send = capture_send};

/* The oldest message not taken yet (the caller's now) and its topic, or
 * NULL. */
static struct sl_msg *capture_pop(struct capture *c, const char **topic)
{
    if (c->head == c->n) {
        c->head = c->n = 0;
        return NULL;
    }
    struct captured *e = &c->q[c->head++];
    *topic = e->topic;
    return e->msg;
}

static void capture_cleanup(struct capture *c)
{
    for (size_t i = c->head; i < c->n; i++)
        sl_msg_unref(c->q[i].msg);
    free(c->q);
    c->q = NULL;
    c->head = c->n = c->cap = 0;
}

/* ---- text for a terminal ----------------------------------------------- */

/* Decodes the UTF-8 sequence at s (n > 0 bytes left) into *cp and returns
 * its length; an invalid one is 1 byte of U+FFFD. */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        goto bad;
    }
    if (n < len)
        goto bad;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto bad;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        goto bad;
    *cp = v;
    return len;
bad:
    *cp = 0xfffd;
    return 1;
}

/* Terminal columns of a printable code point: 0 for combining marks and
 * zero-width characters, 2 for East Asian wide and fullwidth ones and
 * emoji (after Markus Kuhn's wcwidth; no locale needed, none is set). */
static int cp_width(uint32_t cp)
{
    static const uint32_t zero[][2] = {
        {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a},
        {0x064b, 0x065f}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200d},
        {0x20d0, 0x20ff}, {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f}, {0xfeff, 0xfeff},
    };
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f},   {0x2329, 0x232a},   {0x2e80, 0x303e},   {0x3040, 0xa4cf},
        {0xac00, 0xd7a3},   {0xf900, 0xfaff},   {0xfe10, 0xfe19},   {0xfe30, 0xfe6f},
        {0xff00, 0xff60},   {0xffe0, 0xffe6},   {0x1f300, 0x1f64f}, {0x1f900, 0x1f9ff},
        {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
    };
    if (cp < 0x300)
        return 1;
    for (size_t i = 0; i < SL_ARRAY_LEN(zero); i++)
        if (cp >= zero[i][0] && cp <= zero[i][1])
            return 0;
    for (size_t i = 0; i < SL_ARRAY_LEN(wide); i++)
        if (cp >= wide[i][0] && cp <= wide[i][1])
            return 2;
    return 1;
}

/* Whether cp must not reach a terminal as it is: C0 and C1 controls, DEL,
 * and the bidirectional overrides that reorder what follows them. */
static bool cp_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x200e && cp <= 0x200f) ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Appends s to b as one line of printable text: a line break becomes "↵"
 * (CR LF one), a tab a space, any other control character or invalid
 * UTF-8 "�". Returns its width in terminal columns; *rc gets SL_ERR_NOMEM. */
static size_t put_text(struct sl_buf *b, const char *s, int *rc)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = s ? strlen(s) : 0, w = 0;
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_next(p, n, &cp);
        int e = 0;
        if (cp == '\r' && n > 1 && p[1] == '\n') {
            len = 0; /* the LF that follows stands for both */
        } else if (cp == '\n' || cp == '\r') {
            e = sl_buf_puts(b, "\u21b5");
            w++;
        } else if (cp == '\t') {
            e = sl_buf_putc(b, ' ');
            w++;
        } else if (cp_control(cp) || cp == 0xfffd) {
            e = sl_buf_puts(b, "\ufffd");
            w++;
        } else {
            e = sl_buf_append(b, p, len);
            w += (size_t)cp_width(cp);
        }
        if (e && !*rc)
            *rc = e;
        if (len == 0)
            len = 1;
        p += len;
        n -= len;
    }
    return w;
}

/* Terminal columns of printable text (made by put_text). */
static size_t text_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), w = 0;
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_next(p, n, &cp);
        w += (size_t)cp_width(cp);
        p += len;
        n -= len;
    }
    return w;
}

/* Prints printable text s in exactly width columns when pad (else at most
 * width): cut with "…" when wider, padded with spaces. width 0: whole. */
static void print_cell(FILE *out, const char *s, size_t width, bool pad)
{
    size_t w = text_width(s);
    if (width == 0 || w <= width) {
        fputs(s, out);
        for (; pad && w < width; w++)
            fputc(' ', out);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), used = 0;
    while (n > 0) {
        uint32_t cp;
        size_t len = utf8_next(p, n, &cp);
        size_t cw = (size_t)cp_width(cp);
        if (used + cw > width - 1)
            break;
        fwrite(p, 1, len, out);
        used += cw;
        p += len;
        n -= len;
    }
    fputs("\u2026", out);
    for (used++; pad && used < width; used++)
        fputc(' ', out);
}

/* ---- the preview ------------------------------------------------------- */

struct cli_args {
    const char *job_path;
    const char *input;
    long rows;
    bool json;
};

/* The source fields one attribute's mapping reads. */
struct pv_attr {
    size_t *refs; /* indices in job->refs, in the order the mapping names them */
    size_t nrefs;
};

struct preview {
    const struct sl_job *job; /* the registry's */
    long limit;
    bool json;
    char run_id[37];
    struct capture cap;
    struct sl_emitter em_mapper, em_validator;
    void *mapper, *validator; /* the stages' states */
    struct pv_attr *attrs;    /* job->nattrs */
    /* the source as read */
    struct sl_names *names;       /* the current header, shared by its records */
    const char *const *names_src; /* the reader's array they were made from */
    bool names_vary;              /* JSON, XML: each record names its own fields */
    struct sl_names *bound;       /* the names ref_col is for (a reference) */
    int *ref_col;                 /* job->nrefs: each ref's column in bound, or -1 */
    char **cols;                  /* the file's columns: its header, else every */
    size_t ncols, ccols;          /* field name of the rows read, first seen first */
    struct sl_keyset *colset;     /* the names in cols */
    /* records mapped whose validation has not come out yet, in order (one
     * reference each: the source as read) */
    struct sl_msg **raw;
    size_t rhead, rn, rcap;
    uint64_t nread, nvalid, nrejected;
    bool more; /* a row after the last one shown exists */
    /* the output */
    FILE *spool;
    size_t w_attr, w_source, w_read, w_mapped; /* widest cell of each column, capped */
    struct sl_buf line;
    int rc; /* the first failure of a callback (err says it) */
    char err[512];
    char refs_note[512]; /* why references could not be checked, or "" */
};

static int fail(struct preview *pv, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first failure; returns rc. */
static int fail(struct preview *pv, int rc, const char *fmt, ...)
{
    if (!pv->rc) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pv->err, sizeof(pv->err), fmt, ap);
        va_end(ap);
        pv->rc = rc;
    }
    return rc;
}

/* The fields each attribute's mapping reads: its text compiled again alone
 * (it compiled when the job loaded), each name found among the job's refs. */
static int setup_attrs(struct preview *pv)
{
    const struct sl_job *job = pv->job;
    if (!(pv->attrs = calloc(job->nattrs ? job->nattrs : 1, sizeof(*pv->attrs))) ||
        !(pv->ref_col = calloc(job->nrefs ? job->nrefs : 1, sizeof(int))))
        return fail(pv, SL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < job->nattrs; i++) {
        const struct sl_attr *a = &job->attrs[i];
        if (!a->map_src)
            continue;
        struct sl_refs refs = {0};
        char err[256] = "";
        struct sl_template *t = sl_template_compile(a->map_src, &refs, err, sizeof(err));
        sl_template_destroy(t);
        struct pv_attr *pa = &pv->attrs[i];
        if (refs.n && !(pa->refs = calloc(refs.n, sizeof(*pa->refs)))) {
            sl_refs_cleanup(&refs);
            return fail(pv, SL_ERR_NOMEM, "out of memory");
        }
        for (size_t r = 0; r < refs.n; r++)
            for (size_t k = 0; k < job->nrefs; k++)
                if (!strcmp(refs.names[r], job->refs[k].name)) {
                    pa->refs[pa->nrefs++] = k;
                    break;
                }
        sl_refs_cleanup(&refs);
    }
    return 0;
}

/* Adds name to the file's columns unless it is one already. */
static int add_column(struct preview *pv, const char *name)
{
    int seen = sl_keyset_test(pv->colset, name, strlen(name), true);
    if (seen)
        return seen < 0 ? SL_ERR_NOMEM : 0;
    if (pv->ncols == pv->ccols) {
        size_t c = pv->ccols ? 2 * pv->ccols : 32;
        char **p = realloc(pv->cols, c * sizeof(*p));
        if (!p)
            return SL_ERR_NOMEM;
        pv->cols = p;
        pv->ccols = c;
    }
    if (!(pv->cols[pv->ncols] = strdup(name)))
        return SL_ERR_NOMEM;
    pv->ncols++;
    return 0;
}

/* The header of a format that has one (CSV, XLSX, XLS): the file's columns,
 * even when no row follows. */
static int on_header(void *ud, const char *const *names, size_t n)
{
    struct preview *pv = ud;
    for (size_t i = 0; i < n; i++)
        if (add_column(pv, names[i]))
            return fail(pv, SL_ERR_NOMEM, "out of memory");
    return 0;
}

/* The cell of attribute i's READ column: the value its one field has, or
 * "name=value, ..." of several; "" when it reads no field. */
static int read_cell(struct preview *pv, const struct sl_msg *raw, size_t i, struct sl_buf *b,
                     size_t *width)
{
    const struct sl_job *job = pv->job;
    const struct pv_attr *pa = &pv->attrs[i];
    const struct sl_record *r = &raw->u.rec;
    int rc = 0;
    if (raw->names && raw->names != pv->bound) {
        sl_names_unref(pv->bound);
        pv->bound = sl_names_ref(raw->names);
        for (size_t k = 0; k < job->nrefs; k++)
            pv->ref_col[k] = sl_column_find(job->refs[k].name, pv->bound->names, pv->bound->n);
    }
    *width = 0;
    for (size_t j = 0; j < pa->nrefs; j++) {
        int c = pv->ref_col[pa->refs[j]];
        const char *v = c >= 0 && (uint32_t)c < r->nsrc ? r->src[c].value : NULL;
        if (pa->nrefs > 1) {
            if (j)
                *width += 2, rc = rc ? rc : sl_buf_puts(b, ", ");
            *width += put_text(b, job->refs[pa->refs[j]].name, &rc) + 1;
            rc = rc ? rc : sl_buf_putc(b, '=');
        }
        *width += put_text(b, v, &rc);
    }
    return rc;
}

static void widen(size_t *w, size_t cell, size_t cap)
{
    if (cell > cap)
        cell = cap;
    if (cell > *w)
        *w = cell;
}

/* Spools the table block of one row: its title, then one line per row
 * problem (_row, _key) and per attribute. */
static int spool_table(struct preview *pv, const struct sl_msg *raw, const struct sl_msg *out)
{
    const struct sl_job *job = pv->job;
    const struct sl_record *r = &out->u.rec;
    struct sl_buf *b = &pv->line;
    int rc = 0;
    sl_buf_reset(b);
    if (r->nprob)
        rc = sl_buf_printf(b, "R%crow %llu: rejected (%u problem%s)\n", SEP,
                           (unsigned long long)r->row, r->nprob, r->nprob == 1 ? "" : "s");
    else
        rc = sl_buf_printf(b, "R%crow %llu: valid%s\n", SEP, (unsigned long long)r->row,
                           r->duplicate ? " (replaces an earlier row of the same key)" : "");
    for (uint32_t p = 0; p < r->nprob; p++) {
        const struct sl_problem *pr = &r->prob[p];
        if (sl_job_attr_index(job, pr->attribute) >= 0)
            continue;
        rc = rc ? rc : sl_buf_printf(b, "A%c", SEP);
        widen(&pv->w_attr, put_text(b, pr->attribute, &rc), SIZE_MAX);
        rc = rc ? rc : sl_buf_printf(b, "%c%c%c%c", SEP, SEP, SEP, SEP);
        put_text(b, pr->code, &rc);
        rc = rc ? rc : sl_buf_puts(b, ": ");
        put_text(b, pr->message, &rc);
        rc = rc ? rc : sl_buf_putc(b, '\n');
    }
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        const struct sl_attr *a = &job->attrs[i];
        size_t w = 0;
        rc = sl_buf_printf(b, "A%c", SEP);
        widen(&pv->w_attr, put_text(b, a->name, &rc), SIZE_MAX);
        rc = rc ? rc : sl_buf_putc(b, SEP);
        widen(&pv->w_source, put_text(b, a->map_src ? a->map_src : "(not mapped)", &rc), W_SOURCE);
        rc = rc ? rc : sl_buf_putc(b, SEP);
        rc = rc ? rc : read_cell(pv, raw, i, b, &w);
        widen(&pv->w_read, w, W_READ);
        rc = rc ? rc : sl_buf_putc(b, SEP);
        const char *v = i < r->nattr && !strcmp(r->attr[i].name, a->name) ? r->attr[i].value : NULL;
        for (uint32_t k = 0; !v && k < r->nattr; k++)
            if (!strcmp(r->attr[k].name, a->name))
                v = r->attr[k].value;
        widen(&pv->w_mapped, put_text(b, v, &rc), W_MAPPED);
        rc = rc ? rc : sl_buf_putc(b, SEP);
        bool first = true;
        for (uint32_t p = 0; p < r->nprob; p++) {
            const struct sl_problem *pr = &r->prob[p];
            if (strcmp(pr->attribute, a->name))
                continue;
            if (!first)
                rc = rc ? rc : sl_buf_puts(b, "; ");
            put_text(b, pr->code, &rc);
            rc = rc ? rc : sl_buf_puts(b, ": ");
            put_text(b, pr->message, &rc);
            first = false;
        }
        rc = rc ? rc : sl_buf_putc(b, '\n');
    }
    if (rc)
        return fail(pv, rc, "out of memory");
    if (fwrite(b->data, 1, b->len, pv->spool) != b->len)
        return fail(pv, SL_ERR_IO, "cannot write the temporary file of the output: %s",
                    strerror(errno));
    return 0;
}

/* A JSON string of s (NULL: null); invalid UTF-8 bytes become U+FFFD. */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    size_t n = strlen(s);
    if (sl_utf8_valid(s, n))
        return json_stringn(s, n);
    struct sl_buf b = SL_BUF_INIT;
    int rc = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (n > 0 && rc == 0) {
        uint32_t cp;
        size_t len = utf8_next(p, n, &cp);
        rc = sl_buf_put_utf8(&b, cp);
        p += len;
        n -= len;
    }
    json_t *j = rc ? NULL : json_stringn(b.data ? b.data : "", b.len);
    sl_buf_cleanup(&b);
    return j;
}

/* Sets key (made valid UTF-8) of o to v (taken, even on failure). */
static int jset(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    if (sl_utf8_valid(key, strlen(key)))
        return json_object_set_new(o, key, v);
    json_t *k = jstr(key);
    int rc = k ? json_object_set_new(o, json_string_value(k), v) : (json_decref(v), -1);
    json_decref(k);
    return rc;
}

/* Spools one row of the JSON document, on one line. */
static int spool_json(struct preview *pv, const struct sl_msg *raw, const struct sl_msg *out)
{
    const struct sl_record *r = &out->u.rec;
    json_t *o = json_object(), *src = json_object(), *attrs = json_object(), *errs = json_array();
    int bad = !o || !src || !attrs || !errs;
    bad = bad || jset(o, "row", json_integer((json_int_t)r->row)) ||
          jset(o, "status", json_string(r->nprob ? "rejected" : "valid"));
    for (uint32_t i = 0; !bad && i < raw->u.rec.nsrc; i++)
        bad = jset(src, raw->u.rec.src[i].name, jstr(raw->u.rec.src[i].value));
    for (uint32_t i = 0; !bad && i < r->nattr; i++)
        bad = jset(attrs, r->attr[i].name, jstr(r->attr[i].value));
    for (uint32_t i = 0; !bad && i < r->nprob; i++) {
        const struct sl_problem *p = &r->prob[i];
        json_t *e = json_object();
        bad = !e || jset(e, "attribute", jstr(p->attribute)) || jset(e, "code", jstr(p->code)) ||
              jset(e, "message", jstr(p->message)) || jset(e, "value", jstr(p->value)) ||
              json_array_append(errs, e);
        json_decref(e);
    }
    if (!bad) {
        bad = jset(o, "source", src) || jset(o, "attributes", attrs) || jset(o, "errors", errs);
        src = attrs = errs = NULL;
    }
    char *text = bad ? NULL : json_dumps(o, 0);
    json_decref(o);
    json_decref(src);
    json_decref(attrs);
    json_decref(errs);
    if (!text)
        return fail(pv, SL_ERR_NOMEM, "out of memory");
    int werr = fputs(text, pv->spool) < 0 || fputc('\n', pv->spool) == EOF;
    free(text);
    if (werr)
        return fail(pv, SL_ERR_IO, "cannot write the temporary file of the output: %s",
                    strerror(errno));
    return 0;
}

/* One row out of the validator (a record or a rejection), with its source
 * as read: the oldest record waiting. */
static int show(struct preview *pv, const struct sl_msg *out)
{
    struct sl_msg *raw = pv->rhead < pv->rn ? pv->raw[pv->rhead++] : NULL;
    if (!raw || raw->u.rec.row != out->u.rec.row) {
        sl_msg_unref(raw);
        return fail(pv, SL_ERR_FATAL, "row %llu came out of the validator out of order",
                    (unsigned long long)out->u.rec.row);
    }
    if (out->kind == SL_MSG_REJECTION)
        pv->nrejected++;
    else
        pv->nvalid++;
    int rc = pv->json ? spool_json(pv, raw, out) : spool_table(pv, raw, out);
    sl_msg_unref(raw);
    if (pv->rhead == pv->rn)
        pv->rhead = pv->rn = 0;
    return rc;
}

/* Takes everything the stages emitted: mapped records to the validator,
 * its records and rejections to the output, in the order they came. */
static int pump(struct preview *pv)
{
    const char *topic;
    struct sl_msg *m;
    while ((m = capture_pop(&pv->cap, &topic)) != NULL) {
        int rc;
        if (!strcmp(topic, SL_TOPIC_MAPPED)) {
            rc = sl_stage_validator.process(pv->validator, topic, m, &pv->em_validator);
            if (rc)
                fail(pv, rc, "the validator failed on row %llu: %s",
                     (unsigned long long)m->u.rec.row, sl_err_str(rc));
        } else if (!strcmp(topic, SL_TOPIC_VALID) || !strcmp(topic, SL_TOPIC_REJECTED)) {
            rc = show(pv, m);
        } else if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_FAILED) {
            /* a reference that cannot be checked here (no destination to
             * look in): the rows are shown without that check */
            if (!pv->refs_note[0])
                snprintf(pv->refs_note, sizeof(pv->refs_note), "%s",
                         m->u.ev.reason ? m->u.ev.reason : "references not checked");
            rc = 0;
        } else {
            rc = fail(pv, SL_ERR_FATAL, "row %llu could not be validated (sent to %s)",
                      (unsigned long long)m->u.rec.row, topic);
        }
        sl_msg_unref(m);
        if (rc)
            return rc;
    }
    return 0;
}

/* Whether nm holds row's names: readers whose records name their own
 * fields (JSON, XML) hand every row over in the same array. */
static bool same_names(const struct sl_names *nm, const struct sl_row *row)
{
    for (size_t i = 0; i < row->n; i++)
        if (strcmp(nm->names[i], row->names[i]))
            return false;
    return true;
}

/* Each row as the parser sends it (source fields, row number, a row the
 * reader could not read whole as a "_row" "format" problem) through the
 * mapper, then the validator. Stops the reader after the rows asked for,
 * on the row after them (so that "more follow" is known). */
static int on_row(void *ud, const struct sl_row *row)
{
    struct preview *pv = ud;
    const struct sl_job *job = pv->job;
    if (pv->nread == (uint64_t)pv->limit) {
        pv->more = true;
        return 1;
    }
    if (!pv->names || pv->names_src != row->names || pv->names->n != row->n ||
        (pv->names_vary && !same_names(pv->names, row))) {
        sl_names_unref(pv->names);
        if (!(pv->names = sl_names_new(row->names, row->n)))
            return fail(pv, SL_ERR_NOMEM, "out of memory");
        pv->names_src = row->names;
        for (size_t i = 0; i < row->n; i++)
            if (add_column(pv, row->names[i]))
                return fail(pv, SL_ERR_NOMEM, "out of memory");
    }
    if (pv->rn == pv->rcap) {
        size_t c = pv->rcap ? 2 * pv->rcap : 64;
        struct sl_msg **p = realloc(pv->raw, c * sizeof(*p));
        if (!p)
            return fail(pv, SL_ERR_NOMEM, "out of memory");
        pv->raw = p;
        pv->rcap = c;
    }
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, pv->run_id, job->id, job->version);
    if (!m || sl_msg_set_src_row(m, pv->names, row->values, row->lens, row->n) ||
        (row->error && sl_msg_add_problem(m, "_row", "format", row->error, NULL))) {
        sl_msg_unref(m);
        return fail(pv, SL_ERR_NOMEM, "out of memory");
    }
    m->u.rec.row = row->row;
    pv->raw[pv->rn++] = sl_msg_ref(m); /* kept as read: the mapper works on a copy */
    pv->nread++;
    int rc = sl_stage_mapper.process(pv->mapper, SL_TOPIC_RAW, m, &pv->em_mapper);
    sl_msg_unref(m);
    if (rc)
        return fail(pv, rc, "the mapper failed on row %llu: %s", (unsigned long long)row->row,
                    sl_err_str(rc));
    return pump(pv);
}

/* ---- the source -------------------------------------------------------- */

struct source_file {
    char *path;         /* the file read */
    char *shown;        /* what messages call it (a remote URL redacted) */
    char *name;         /* the file name that tells the format */
    char *content_type; /* of a remote source's response, or NULL */
};

static void source_file_cleanup(struct source_file *sf)
{
    free(sf->path);
    free(sf->shown);
    free(sf->name);
    free(sf->content_type);
}

static char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return strdup(s ? s + 1 : path);
}

/* A remote source through the fetcher stage (its sources, retries, limits
 * and SSRF guard, SLUICE_ALLOW_HOSTS) into env->out_dir/source. 0; 1 with
 * err set when the source cannot be fetched; or a negative sl_err. */
static int fetch_remote(struct preview *pv, const struct sl_stage_env *env, struct source_file *sf,
                        char *err, size_t errsz)
{
    const struct sl_job *job = pv->job;
    void *st = NULL;
    int rc = sl_stage_fetcher.init(&st, env, err, errsz);
    if (rc)
        return 1; /* SLUICE_ALLOW_HOSTS is bad: err says why */
    struct sl_msg *t = sl_msg_new(SL_MSG_TICKET, pv->run_id, job->id, job->version);
    if (!t) {
        sl_stage_fetcher.destroy(st);
        return SL_ERR_NOMEM;
    }
    t->u.ticket.trigger = "preview";
    t->u.ticket.force = true; /* whatever the last run fetched: no "not modified" */
    t->u.ticket.scheduled_at = sl_now_us();
    struct sl_emitter em = {.bus = &pv->cap.bus, .stage = "fetcher"};
    rc = sl_stage_fetcher.process(st, SL_TOPIC_TICKETS, t, &em);
    sl_msg_unref(t);
    sl_stage_fetcher.destroy(st);
    if (rc)
        return rc;
    const char *topic;
    struct sl_msg *m;
    rc = 1;
    snprintf(err, errsz, "the fetcher announced no file");
    while ((m = capture_pop(&pv->cap, &topic)) != NULL) {
        if (m->kind == SL_MSG_FILE && !sf->path) {
            const struct sl_file *f = &m->u.file;
            sf->path = strdup(f->blob);
            sf->name = f->file_name ? strdup(f->file_name) : base_name(f->blob);
            sf->content_type = f->content_type ? strdup(f->content_type) : NULL;
            if (!sf->shown)
                sf->shown = base_name(f->blob);
            rc = !sf->path || !sf->name || (f->content_type && !sf->content_type) || !sf->shown
                     ? SL_ERR_NOMEM
                     : 0;
        } else if (m->kind == SL_MSG_RUN_EVENT) {
            const struct sl_run_event *ev = &m->u.ev;
            if (ev->kind == SL_EV_FETCHED && ev->source_name && !sf->shown) {
                sf->shown = strdup(ev->source_name);
            } else if (ev->kind == SL_EV_FAILED || ev->kind == SL_EV_SKIPPED) {
                snprintf(err, errsz, "%s", ev->reason ? ev->reason : "the source was not read");
                rc = 1;
            }
        }
        sl_msg_unref(m);
    }
    return rc;
}

/* Finds the file to read: --input, a local source (a path relative to the
 * job file, or file://) where it is, a remote one fetched. 0; 1 with err
 * set when the source cannot be read; or a negative sl_err. */
static int obtain(struct preview *pv, const struct sl_stage_env *env, const char *input,
                  const char *input_shown, struct source_file *sf, char *err, size_t errsz)
{
    const struct sl_job *job = pv->job;
    char *url = NULL;
    int rc = 0;
    if (input) {
        sf->path = strdup(input);
        sf->shown = strdup(input_shown);
    } else {
        if (!(url = sl_env_expand(job->source.url, err, errsz))) {
            char why[400];
            snprintf(why, sizeof(why), "%s", err[0] ? err : "out of memory");
            snprintf(err, errsz, "source.url: %s", why);
            return 1;
        }
        const char *sep = strstr(url, "://");
        if (sep && !(sep - url == 4 && !strncmp(url, "file", 4))) {
            rc = fetch_remote(pv, env, sf, err, errsz);
            goto out;
        }
        sf->path = sep ? strdup(sep + 3) : sl_path_join(job->dir, url);
        /* messages name the path as a user would type it */
        sf->shown = !sf->path ? NULL : strdup(strncmp(sf->path, "./", 2) ? sf->path : sf->path + 2);
    }
    if (!sf->path || !sf->shown || !(sf->name = base_name(sf->path))) {
        rc = SL_ERR_NOMEM;
        goto out;
    }
    struct stat sb;
    if (stat(sf->path, &sb) || !S_ISREG(sb.st_mode)) {
        int e = errno;
        bool exists = access(sf->path, F_OK) == 0;
        snprintf(err, errsz, "cannot read source %s: %s", sf->shown,
                 exists ? "not a regular file" : strerror(e));
        rc = 1;
    }
out:
    if (url) {
        explicit_bzero(url, strlen(url)); /* it may hold an expanded secret */
        free(url);
    }
    return rc;
}

/* ---- printing ---------------------------------------------------------- */

/* The unmapped columns (columns no mapping reads) and the missing ones
 * (fields the mapping reads that no column is) as JSON arrays. */
static int columns_json(const struct preview *pv, json_t **cols, json_t **unmapped,
                        json_t **missing)
{
    const struct sl_job *job = pv->job;
    int bad = !(*cols = json_array()) || !(*unmapped = json_array()) || !(*missing = json_array());
    for (size_t i = 0; !bad && i < pv->ncols; i++) {
        bad = json_array_append_new(*cols, jstr(pv->cols[i]));
        if (!bad && !sl_job_reads_column(job, pv->cols[i]))
            bad = json_array_append_new(*unmapped, jstr(pv->cols[i]));
    }
    for (size_t k = 0; !bad && k < job->nrefs; k++)
        if (sl_column_find(job->refs[k].name, (const char *const *)pv->cols, pv->ncols) < 0)
            bad = json_array_append_new(*missing, jstr(job->refs[k].name));
    return bad ? SL_ERR_NOMEM : 0;
}

/* Prints "  key": value (taken) as one line of the document. */
static int print_member(const char *key, json_t *v, bool last)
{
    char *text = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!text)
        return SL_ERR_NOMEM;
    printf("  \"%s\": %s%s\n", key, text, last ? "" : ",");
    free(text);
    return 0;
}

/* The fields the mapping reads that no column is (a new array). */
static json_t *missing_copy(const struct preview *pv)
{
    json_t *cols = NULL, *unmapped = NULL, *missing = NULL;
    columns_json(pv, &cols, &unmapped, &missing);
    json_decref(cols);
    json_decref(unmapped);
    return missing;
}

static int print_json(struct preview *pv, const char *shown, enum sl_format fmt)
{
    json_t *cols = NULL, *unmapped = NULL, *missing = NULL;
    int rc = columns_json(pv, &cols, &unmapped, &missing);
    printf("{\n");
    rc = rc ? rc : print_member("job", json_string(pv->job->name), false);
    rc = rc ? rc : print_member("file", jstr(shown), false);
    rc = rc ? rc : print_member("format", json_string(sl_format_name(fmt)), false);
    if (rc == 0) {
        printf("  \"rows\": [");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        bool first = true;
        rewind(pv->spool);
        while ((n = getline(&line, &cap, pv->spool)) > 0) {
            if (line[n - 1] == '\n')
                line[n - 1] = '\0';
            printf("%s\n    %s", first ? "" : ",", line);
            first = false;
        }
        free(line);
        printf(first ? "],\n" : "\n  ],\n");
    }
    rc = rc ? rc : print_member("columns", cols, false);
    rc = rc ? rc : print_member("unmapped_columns", unmapped, false);
    rc = rc ? rc : print_member("missing_columns", missing, false);
    cols = unmapped = missing = NULL;
    rc = rc ? rc
            : print_member("counts",
                           json_pack("{sI sI sI}", "previewed", (json_int_t)pv->nread, "valid",
                                     (json_int_t)pv->nvalid, "rejected", (json_int_t)pv->nrejected),
                           false);
    rc = rc ? rc : print_member("more_rows", json_boolean(pv->more), false);
    json_t *warn = json_array(), *mc = missing_copy(pv);
    bool would_fail = json_array_size(mc) > 0;
    json_decref(mc);
    if (warn && would_fail)
        json_array_append_new(warn, json_string("a run of this job would fail on this file: a "
                                                "column the mapping reads is missing"));
    if (warn && pv->refs_note[0])
        json_array_append_new(warn, json_sprintf("references not checked: %s", pv->refs_note));
    rc = rc ? rc : print_member("warnings", warn, true);
    printf("}\n");
    json_decref(cols);
    json_decref(unmapped);
    json_decref(missing);
    return rc;
}

/* Prints the names of a JSON array of strings joined by ", ", or "none". */
static void print_names(const char *title, json_t *names)
{
    size_t i;
    json_t *v;
    printf("%s: ", title);
    if (json_array_size(names) == 0)
        printf("none");
    json_array_foreach(names, i, v)
    {
        struct sl_buf b = SL_BUF_INIT;
        int rc = 0;
        put_text(&b, json_string_value(v), &rc);
        printf("%s%s", i ? ", " : "", b.data ? b.data : "");
        sl_buf_cleanup(&b);
    }
    printf("\n");
}

/* Prints the fields the mapping reads that are no column of the file, each
 * with the mapping entries that read it, or "none". */
static void print_missing(const struct preview *pv)
{
    const struct sl_job *job = pv->job;
    size_t n = 0;
    printf("missing columns: ");
    for (size_t k = 0; k < job->nrefs; k++) {
        if (sl_column_find(job->refs[k].name, (const char *const *)pv->cols, pv->ncols) >= 0)
            continue;
        struct sl_buf b = SL_BUF_INIT;
        int rc = 0;
        put_text(&b, job->refs[k].name, &rc);
        printf("%s%s (", n++ ? ", " : "", b.data ? b.data : "");
        sl_buf_cleanup(&b);
        size_t used = 0;
        for (size_t i = 0; i < job->nattrs; i++)
            for (size_t j = 0; j < pv->attrs[i].nrefs; j++)
                if (pv->attrs[i].refs[j] == k) {
                    printf("%smapping.%s", used++ ? ", " : "", job->attrs[i].name);
                    break;
                }
        printf(")");
    }
    printf("%s\n", n ? "" : "none");
}

static int print_table(struct preview *pv, const char *shown, enum sl_format fmt)
{
    struct sl_buf b = SL_BUF_INIT;
    int rc = 0;
    put_text(&b, shown, &rc);
    printf("%s (%s), job '%s'; nothing is published\n", b.data ? b.data : "", sl_format_name(fmt),
           pv->job->name);
    sl_buf_cleanup(&b);
    size_t wa = pv->w_attr > 9 ? pv->w_attr : 9, ws = pv->w_source > 6 ? pv->w_source : 6,
           wr = pv->w_read > 4 ? pv->w_read : 4, wm = pv->w_mapped > 6 ? pv->w_mapped : 6;
    size_t wp = 0; /* whole, unless a terminal is narrower */
    struct winsize ws_tty;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws_tty) == 0 &&
        ws_tty.ws_col > 0) {
        size_t used = 2 + wa + 2 + ws + 2 + wr + 2 + wm + 2;
        wp = ws_tty.ws_col > used + W_PROBLEM_MIN ? ws_tty.ws_col - used : W_PROBLEM_MIN;
    }
    if (pv->nread) {
        printf("\n  %-*s  %-*s  %-*s  %-*s  %s\n", (int)wa, "ATTRIBUTE", (int)ws, "SOURCE", (int)wr,
               "READ", (int)wm, "MAPPED", "PROBLEM");
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    rewind(pv->spool);
    while ((n = getline(&line, &cap, pv->spool)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *cell[6] = {0};
        size_t nc = 0;
        for (char *p = line; p && nc < 6; nc++) {
            cell[nc] = p;
            if ((p = strchr(p, SEP)) != NULL)
                *p++ = '\0';
        }
        if (cell[0][0] == 'R') {
            printf("\n%s\n", nc > 1 ? cell[1] : "");
            continue;
        }
        if (nc < 6)
            continue;
        /* trailing empty cells are not padded: no blanks at the ends of lines */
        size_t last = 5;
        while (last > 1 && !cell[last][0])
            last--;
        const size_t width[] = {0, wa, ws, wr, wm, wp};
        fputs("  ", stdout);
        for (size_t c = 1; c <= last; c++) {
            if (c > 1)
                fputs("  ", stdout);
            print_cell(stdout, cell[c], width[c], c < last);
        }
        fputc('\n', stdout);
    }
    free(line);
    json_t *cols = NULL, *unmapped = NULL, *missing = NULL;
    if ((rc = columns_json(pv, &cols, &unmapped, &missing)) == 0) {
        printf("\n%llu row%s previewed%s: %llu valid, %llu rejected\n",
               (unsigned long long)pv->nread, pv->nread == 1 ? "" : "s",
               pv->more ? " (more follow: --rows shows up to 10000)" : "",
               (unsigned long long)pv->nvalid, (unsigned long long)pv->nrejected);
        print_names("unmapped columns", unmapped);
        print_missing(pv);
        if (json_array_size(missing))
            printf("warning: a run of this job would fail on this file: a column the mapping "
                   "reads is missing\n");
        if (pv->refs_note[0])
            printf("warning: references not checked: %s\n", pv->refs_note);
    }
    json_decref(cols);
    json_decref(unmapped);
    json_decref(missing);
    return rc;
}

/* ---- the command ------------------------------------------------------- */

enum { OPT_INPUT = 1, OPT_ROWS, OPT_JSON, OPT_HELP };

static const struct option preview_opts[] = {
    {"input", required_argument, NULL, OPT_INPUT},
    {"rows", required_argument, NULL, OPT_ROWS},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses the command line; -1 after printing help, an exit status > 0
 * after a usage error, 0 on success. */
static int parse_args(int argc, char **argv, struct cli_args *a)
{
    opterr = 0;
    optind = 1;
    a->rows = ROWS_DEFAULT;
    int c;
    while ((c = getopt_long(argc, argv, ":", preview_opts, NULL)) != -1) {
        switch (c) {
        case OPT_INPUT:
            a->input = optarg;
            break;
        case OPT_ROWS: {
            const char *s = optarg;
            size_t digits = strspn(s, "0123456789");
            errno = 0;
            long v = digits && !s[digits] ? strtol(s, NULL, 10) : 0;
            if (errno || v < 1 || v > ROWS_MAX) {
                fprintf(stderr,
                        "sluice: --rows must be a whole number from 1 to %d (is '%.40s')\n"
                        "Try 'sluice preview --help'.\n",
                        ROWS_MAX, s);
                return EXIT_INVALID;
            }
            a->rows = v;
            break;
        }
        case OPT_JSON:
            a->json = true;
            break;
        case OPT_HELP:
            fputs(usage_text, stdout);
            return -1;
        case ':':
            return usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "preview: missing the job file");
    a->job_path = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* A new private directory for the fetch and the state (caller removes it),
 * or NULL with err set. */
static char *make_tmpdir(char *err, size_t errsz)
{
    const char *tmp = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/sluice-preview-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(tmpl)) {
        snprintf(err, errsz, "cannot create a temporary directory in %s: %s",
                 tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
        return NULL;
    }
    return strdup(tmpl);
}

/* An unnamed file in dir for the output while rows come (it outlives the
 * directory), or NULL with errno. */
static FILE *spool_open(const char *dir)
{
    char *path = sl_path_join(dir, "output-XXXXXX");
    int fd = path ? mkostemp(path, O_CLOEXEC) : -1;
    FILE *f = NULL;
    if (fd >= 0) {
        unlink(path);
        if (!(f = fdopen(fd, "w+")))
            close(fd);
    }
    free(path);
    return f;
}

int sl_cmd_preview(int argc, char **argv)
{
    struct cli_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    char err[1024] = "";
    struct sl_job *job = sl_job_load_file(a.job_path, err, sizeof(err));
    if (!job) {
        fprintf(stderr, "sluice: %s\n", err);
        return EXIT_INVALID;
    }
    /* --input is relative to the working directory, as for run */
    char *input = a.input ? realpath(a.input, NULL) : NULL;
    if (a.input && (!input || access(input, R_OK))) {
        fprintf(stderr, "sluice: --input %s: %s\n", a.input, strerror(errno));
        free(input);
        sl_job_destroy(job);
        return EXIT_INVALID;
    }

    /* where `sluice run` would publish: references are looked up there */
    const char *ref_db = NULL;
    if (job->destination.given && job->destination.type == SL_DEST_POSTGRES) {
        ref_db = getenv("SLUICE_DESTINATION_URL");
        if (!ref_db || !ref_db[0])
            ref_db = getenv("SLUICE_POSTGRES_URL");
        if (ref_db && !ref_db[0])
            ref_db = NULL;
    }
    char *ref_sink = NULL;
    if (job->destination.given && job->destination.type == SL_DEST_FILE && job->destination.path)
        ref_sink = strdup(job->destination.path);
    else if (asprintf(&ref_sink, "sluice-out/%s/%s.ndjson", job->name, job->object) < 0)
        ref_sink = NULL;

    struct preview pv = {.job = job, .limit = a.rows, .json = a.json};
    pv.cap.bus.ops = &capture_ops;
    pv.em_mapper = (struct sl_emitter){.bus = &pv.cap.bus, .stage = "mapper"};
    pv.em_validator = (struct sl_emitter){.bus = &pv.cap.bus, .stage = "validator"};
    sl_new_run_id(pv.run_id);
    struct source_file sf = {0};
    struct sl_state *st = NULL;
    char *tmpdir = NULL, *state_dir = NULL;
    int fd = -1;
    enum sl_format fmt = SL_FORMAT_AUTO;
    struct sl_jobs *jobs = sl_jobs_single_new(job); /* owns job from here */
    rc = EXIT_FAILED;
    if (!jobs || !(pv.colset = sl_keyset_new()) || setup_attrs(&pv)) {
        fprintf(stderr, "sluice: out of memory\n");
        goto out;
    }
    if (!(tmpdir = make_tmpdir(err, sizeof(err))) || !(state_dir = sl_path_join(tmpdir, "state")) ||
        !(st = sl_state_local_new(state_dir, err, sizeof(err)))) {
        fprintf(stderr, "sluice: %s\n", err[0] ? err : "out of memory");
        goto out;
    }
    const char *hash_key = getenv("SLUICE_HASH_KEY");
    struct sl_stage_env env = {
        .jobs = jobs,
        .st = st,
        .out_dir = tmpdir, /* a remote source is downloaded to tmpdir/source */
        .job_dir = job->dir,
        .hash_key = hash_key && hash_key[0] ? hash_key : NULL,
        .allow_hosts = getenv("SLUICE_ALLOW_HOSTS"),
        .embedded = true,
        /* references are looked up where `sluice run` publishes */
        .destination_url = ref_db,
        .sink_path = ref_sink,
    };
    int src = obtain(&pv, &env, input, a.input, &sf, err, sizeof(err));
    if (src) {
        fprintf(stderr, "sluice: %s\n", src == 1 ? err : sl_err_str(src));
        goto out;
    }
    if ((fd = open(sf.path, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "sluice: cannot open %s: %s\n", sf.shown, strerror(errno));
        goto out;
    }
    fmt = sl_format_detect(job->source.format, sf.name, sf.content_type, fd);
    pv.names_vary = fmt == SL_FORMAT_JSON || fmt == SL_FORMAT_NDJSON || fmt == SL_FORMAT_XML;
    if (sl_stage_mapper.init(&pv.mapper, &env, err, sizeof(err)) ||
        sl_stage_validator.init(&pv.validator, &env, err, sizeof(err))) {
        fprintf(stderr, "sluice: %s\n", err);
        goto out;
    }
    if (!(pv.spool = spool_open(tmpdir))) {
        fprintf(stderr, "sluice: cannot create a temporary file for the output in %s: %s\n", tmpdir,
                strerror(errno));
        goto out;
    }
    char rerr[512] = "";
    struct sl_reader_stats stats = {0};
    int rrc = sl_source_read_fd(fd, fmt, &job->source, on_header, on_row, &pv, &stats, rerr,
                                sizeof(rerr));
    if (pv.rc == 0) {
        /* the validator holds rows whose keys it resolves in batches */
        int frc = sl_stage_validator.flush(pv.validator, &pv.em_validator);
        if (frc)
            fail(&pv, frc, "the validator failed: %s", sl_err_str(frc));
        else
            pump(&pv);
    }
    if (pv.rc == 0 && pv.rhead != pv.rn)
        fail(&pv, SL_ERR_FATAL, "%zu rows did not come out of the validator", pv.rn - pv.rhead);
    if (pv.rc) {
        fprintf(stderr, "sluice: preview of %s: %s\n", sf.shown, pv.err);
        goto out;
    }
    if (rrc < 0) {
        const char *why = rerr[0] ? rerr : sl_err_str(rrc);
        if (pv.nread < (uint64_t)pv.limit) {
            fprintf(stderr, "sluice: %s: %s\n", sf.shown, why);
            goto out;
        }
        /* the rows asked for are fine: what comes after them fails a run */
        fprintf(stderr, "sluice: warning: %s: %s (after row %llu: a run of this file fails)\n",
                sf.shown, why, (unsigned long long)pv.nread);
    }
    rc = EXIT_OK;
out:
    if (fd >= 0)
        close(fd);
    if (pv.validator)
        sl_stage_validator.destroy(pv.validator);
    if (pv.mapper)
        sl_stage_mapper.destroy(pv.mapper);
    capture_cleanup(&pv.cap);
    for (size_t i = pv.rhead; i < pv.rn; i++)
        sl_msg_unref(pv.raw[i]);
    free(pv.raw);
    sl_names_unref(pv.names);
    sl_names_unref(pv.bound);
    sl_state_destroy(st);
    if (tmpdir) /* the fetched source and the state: nothing is left behind */
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(tmpdir);
    free(state_dir);
    free(input);
    free(ref_sink);
    if (rc == EXIT_OK) {
        rc = (pv.json ? print_json(&pv, sf.shown, fmt) : print_table(&pv, sf.shown, fmt))
                 ? EXIT_FAILED
                 : EXIT_OK;
        if (rc)
            fprintf(stderr, "sluice: out of memory\n");
        if (fflush(stdout) || ferror(stdout)) {
            fprintf(stderr, "sluice: cannot write the preview: %s\n", strerror(errno));
            rc = EXIT_FAILED;
        }
    }
    if (pv.spool)
        fclose(pv.spool);
    source_file_cleanup(&sf);
    for (size_t i = 0; i < pv.ncols; i++)
        free(pv.cols[i]);
    free(pv.cols);
    sl_keyset_destroy(pv.colset);
    if (pv.attrs)
        for (size_t i = 0; i < job->nattrs; i++)
            free(pv.attrs[i].refs);
    free(pv.attrs);
    free(pv.ref_col);
    sl_buf_cleanup(&pv.line);
    sl_jobs_destroy(jobs); /* and job */
    return rc;
}
