/*
 * The JSON and NDJSON reader (reader.h): a file descriptor streamed into rows.
 *
 * Raw blocks go through the decoder (to UTF-8, BOM dropped). For JSON, a
 * small pushdown scanner checks the grammar of the document byte by byte,
 * holding only its container stack, finds the array of records by the path
 * ("$.data.items") and cuts each element of that array out into one buffer
 * (tracking strings, escapes and nesting); the element alone is then parsed
 * and flattened into a row. For NDJSON, every line is one element. Memory
 * holds one input block, one element (max_value) and its row, never the
 * document.
 *
 * Values keep the spelling of the input: the element parser here is our
 * own and takes numbers as the bytes written (1.50, 1e3), which a parse
 * into doubles (jansson's json_number_value) would lose. Objects are
 * flattened with "." (address.city), arrays by index (tags.0); a name seen
 * twice in one record keeps its first position and its last value.
 *
 * A record that is not an object (or holds a NUL character) is handed over
 * as a bad row; invalid JSON in a JSON document fails the file (nothing after
 * it can be trusted), an NDJSON line that is invalid (JSON or encoding) is
 * a bad row.
 */
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

#define BLOCK_SIZE         (64 * 1024) /* raw bytes read at a time */
#define DEFAULT_MAX_VALUE  ((size_t)16 << 20)
#define DEFAULT_MAX_DEPTH  ((size_t)64)
#define MAX_DEPTH_CAP      ((size_t)10000) /* the element parser recurses */
#define DEFAULT_MAX_FIELDS ((size_t)16384)

/* The scanner's grammar state in one container. */
enum fstate {
    F_OBJ_KEY_OR_END, /* after '{' */
    F_OBJ_KEY,        /* after ',' */
    F_OBJ_COLON,      /* after a key */
    F_OBJ_VALUE,      /* after ':' */
    F_OBJ_NEXT,       /* after a value */
    F_ARR_VALUE_OR_END,
    F_ARR_VALUE,
    F_ARR_NEXT,
};

struct frame {
    unsigned char st;
    bool on_path;   /* this container is the path's prefix of its depth */
    bool records;   /* the array of records */
    bool key_match; /* on_path: the current key is the next path component */
};

/* What the scanner is in the middle of. */
enum lex {
    L_NONE,
    L_STR,
    L_STR_ESC,
    L_STR_U,
    L_LIT,
    L_CAPTURE, /* copying an element of the records into elem */
};

/* Why an element could not be parsed. */
enum ep_err {
    EP_OK,
    EP_SYNTAX,
    EP_DEPTH,
    EP_FIELDS,
    EP_NOMEM,
};

struct field {
    size_t name, namelen; /* offsets into text */
    size_t val, vallen;
    bool null;
};

struct slot {
    uint32_t idx; /* field index */
    uint32_t gen; /* the record it belongs to; other: empty */
};

/* Where the decoder replaced an invalid sequence in the current block. */
struct mark {
    size_t at;    /* offset in the decoded block */
    uint64_t off; /* offset in the input */
    unsigned char byte;
};

struct jsonr {
    size_t max_value, max_depth, max_fields;
    bool ndjson;
    sl_row_fn fn;
    void *ud;
    struct sl_reader_stats *stats;
    char *errbuf;
    size_t errsz;
    int rc; /* an error or the callback's value: stops reading */
    const char *records;
    char **comp; /* the path's components */
    size_t ncomp;

    /* the scanner */
    struct frame *stack;
    size_t depth, maxstack;
    bool top_started, top_done, found;
    int lex;
    int ucount;
    bool str_key, key_capture;
    struct sl_buf key, lit;
    uint64_t base; /* decoded offset of the current block */
    uint64_t at;   /* decoded offset of the current byte */
    /* the element being cut out */
    struct sl_buf elem;
    uint64_t elem_off;
    size_t cdepth;
    bool cin_str, cesc;
    char ckind; /* '{' (a container), '"' (a string), 'l' (a literal) */
    uint64_t nrec;

    /* NDJSON */
    struct sl_buf line;
    uint64_t lineno;

    /* the row of one element */
    struct sl_buf text, path, sval, err;
    struct field *flds;
    size_t nfld, capfld;
    const char **names, **vals;
    size_t *lens;
    size_t caparr;
    struct slot *slots;
    size_t nslots;
    uint32_t gen;
    uint64_t rows;

    /* JSON: the first invalid sequence of the current block (lenient
     * decoder); NDJSON: all of them, and the first one of the line */
    bool bad;
    size_t bad_at;
    uint64_t bad_off;
    unsigned char bad_byte;
    struct mark *marks;
    size_t nmarks, capmarks;
    bool marks_oom;
    bool line_bad;
    uint64_t line_bad_off;
    unsigned char line_bad_byte;
    const char *enc_name; /* for messages */
};

static void stop(struct jsonr *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error; nothing is done after it. */
static void stop(struct jsonr *r, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vseterr_first(&r->rc, r->errbuf, r->errsz, err, fmt, ap);
    va_end(ap);
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A byte that may continue a number or true/false/null. */
static bool is_lit(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

/* ---- the element parser: one complete value in memory ---- */

struct ep {
    struct jsonr *r;
    const char *s;
    size_t len, pos, depth;
    int err;
    const char *msg;
    bool nul; /* a \u0000 was decoded */
};

static int ep_fail(struct ep *e, const char *msg)
{
    if (!e->err) {
        e->err = EP_SYNTAX;
        e->msg = msg;
    }
    return -1;
}

static void ep_ws(struct ep *e)
{
    while (e->pos < e->len && is_ws((unsigned char)e->s[e->pos]))
        e->pos++;
}

static int hex4(const char *s, unsigned *v)
{
    unsigned x = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *v = x;
    return 0;
}

/* A string at s[pos] == '"', decoded and appended to out (NULL: checked only). */
static int ep_string(struct ep *e, struct sl_buf *out)
{
    const char *s = e->s;
    e->pos++;
    for (;;) {
        size_t st = e->pos;
        while (e->pos < e->len && s[e->pos] != '"' && s[e->pos] != '\\' &&
               (unsigned char)s[e->pos] >= 0x20)
            e->pos++;
        if (out && e->pos > st && sl_buf_append(out, s + st, e->pos - st))
            goto nomem;
        if (e->pos >= e->len)
            return ep_fail(e, "unterminated string");
        char c = s[e->pos];
        if (c == '"') {
            e->pos++;
            return 0;
        }
        if ((unsigned char)c < 0x20)
            return ep_fail(e, "a control character in a string (it must be escaped)");
        if (++e->pos >= e->len)
            return ep_fail(e, "unterminated string");
        c = s[e->pos++];
        unsigned cp;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            cp = (unsigned char)c;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (e->pos + 4 > e->len || hex4(s + e->pos, &cp))
                return ep_fail(e, "an invalid \\u escape (four hex digits expected)");
            e->pos += 4;
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                e->pos -= 6; /* at the escape */
                return ep_fail(e, "a lone low surrogate in a \\u escape");
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (e->pos + 6 > e->len || s[e->pos] != '\\' || s[e->pos + 1] != 'u' ||
                    hex4(s + e->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                    e->pos -= 6;
                    return ep_fail(e, "a high surrogate in a \\u escape without its low one");
                }
                e->pos += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0)
                e->nul = true;
            break;
        default:
            e->pos -= 2; /* at the backslash */
            return ep_fail(e, "an invalid escape in a string");
        }
        if (out && sl_buf_put_utf8(out, cp))
            goto nomem;
    }
nomem:
    e->err = EP_NOMEM;
    return -1;
}

/* Checks the number at s[pos] and moves pos past it. */
static int ep_number(struct ep *e)
{
    const char *s = e->s;
    size_t p = e->pos, n = e->len;
    if (p < n && s[p] == '-')
        p++;
    if (p < n && s[p] == '0') {
        p++;
    } else if (p < n && s[p] >= '1' && s[p] <= '9') {
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    } else {
        e->pos = p;
        return ep_fail(e, "an invalid number");
    }
    if (p < n && s[p] == '.') {
        p++;
        if (!(p < n && s[p] >= '0' && s[p] <= '9')) {
            e->pos = p;
            return ep_fail(e, "an invalid number (a digit must follow the '.')");
        }
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            p++;
        if (!(p < n && s[p] >= '0' && s[p] <= '9')) {
            e->pos = p;
            return ep_fail(e, "an invalid number (a digit must follow the exponent)");
        }
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    }
    if (p < n && is_lit((unsigned char)s[p])) {
        e->pos = p;
        return ep_fail(e, "an invalid number");
    }
    e->pos = p;
    return 0;
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* The slot of the name path[0..len) in the record's table. */
static struct slot *find_slot(struct jsonr *r, const char *name, size_t len)
{
    size_t mask = r->nslots - 1;
    for (size_t i = name_hash(name, len) & mask;; i = (i + 1) & mask) {
        struct slot *sl = &r->slots[i];
        if (sl->gen != r->gen)
            return sl;
        const struct field *f = &r->flds[sl->idx];
        if (f->namelen == len && memcmp(r->text.data + f->name, name, len) == 0)
            return sl;
    }
}

static int grow_slots(struct jsonr *r)
{
    size_t n = r->nslots ? r->nslots * 2 : 64;
    struct slot *s = calloc(n, sizeof(*s));
    if (!s)
        return -1;
    free(r->slots);
    r->slots = s;
    r->nslots = n;
    /* gen 0 is never a record's: everything calloc'ed is empty */
    for (size_t i = 0; i < r->nfld; i++) {
        const struct field *f = &r->flds[i];
        struct slot *sl = find_slot(r, r->text.data + f->name, f->namelen);
        sl->idx = (uint32_t)i;
        sl->gen = r->gen;
    }
    return 0;
}

/* Adds the field named path with a value (NULL: null). */
static int ep_field(struct ep *e, const char *val, size_t len)
{
    struct jsonr *r = e->r;
    const char *name = r->path.data ? r->path.data : "";
    size_t namelen = r->path.len;
    if ((r->nfld + 1) * 2 > r->nslots && grow_slots(r))
        goto nomem;
    struct slot *sl = find_slot(r, name, namelen);
    struct field *f;
    if (sl->gen == r->gen) {
        f = &r->flds[sl->idx]; /* a name seen before: the last value wins */
    } else {
        if (r->nfld >= r->max_fields) {
            e->err = EP_FIELDS;
            return -1;
        }
        if (r->nfld == r->capfld) {
            size_t ncap = r->capfld ? r->capfld * 2 : 32;
            struct field *nf = realloc(r->flds, ncap * sizeof(*nf));
            if (!nf)
                goto nomem;
            r->flds = nf;
            r->capfld = ncap;
        }
        f = &r->flds[r->nfld];
        f->name = r->text.len;
        f->namelen = namelen;
        if (sl_buf_append(&r->text, name, namelen) || sl_buf_append(&r->text, "", 1))
            goto nomem;
        sl->gen = r->gen;
        sl->idx = (uint32_t)r->nfld++;
    }
    f->null = val == NULL;
    f->val = r->text.len;
    f->vallen = val ? len : 0;
    if ((val && sl_buf_append(&r->text, val, len)) || sl_buf_append(&r->text, "", 1))
        goto nomem;
    return 0;
nomem:
    e->err = EP_NOMEM;
    return -1;
}

static int ep_value(struct ep *e, bool emit);

/* An object or array at s[pos]; its members are fields when emit. */
static int ep_container(struct ep *e, bool emit)
{
    struct jsonr *r = e->r;
    bool obj = e->s[e->pos] == '{';
    char close = obj ? '}' : ']';
    if (++e->depth > r->max_depth) {
        e->err = EP_DEPTH;
        return -1;
    }
    e->pos++;
    ep_ws(e);
    if (e->pos < e->len && e->s[e->pos] == close) {
        e->pos++;
        e->depth--;
        return 0;
    }
    size_t plen = r->path.len;
    for (uint64_t i = 0;; i++) {
        ep_ws(e);
        if (emit && plen && sl_buf_putc(&r->path, '.'))
            goto nomem;
        if (obj) {
            if (e->pos >= e->len || e->s[e->pos] != '"')
                return ep_fail(e, "expected a name in quotes");
            if (ep_string(e, emit ? &r->path : NULL))
                return -1;
            ep_ws(e);
            if (e->pos >= e->len || e->s[e->pos] != ':')
                return ep_fail(e, "expected ':' after a name");
            e->pos++;
        } else if (emit && sl_buf_printf(&r->path, "%llu", (unsigned long long)i)) {
            goto nomem;
        }
        if (ep_value(e, emit))
            return -1;
        if (emit && r->path.data) {
            r->path.len = plen;
            r->path.data[plen] = '\0';
        }
        ep_ws(e);
        if (e->pos < e->len && e->s[e->pos] == ',') {
            e->pos++;
            continue;
        }
        if (e->pos < e->len && e->s[e->pos] == close) {
            e->pos++;
            break;
        }
        return ep_fail(e, obj ? "expected ',' or '}' after a value in an object"
                              : "expected ',' or ']' after a value in an array");
    }
    e->depth--;
    return 0;
nomem:
    e->err = EP_NOMEM;
    return -1;
}

static int ep_value(struct ep *e, bool emit)
{
    ep_ws(e);
    if (e->pos >= e->len)
        return ep_fail(e, "unexpected end of the value");
    const char *s = e->s + e->pos;
    size_t left = e->len - e->pos;
    switch (*s) {
    case '{':
    case '[':
        return ep_container(e, emit);
    case '"':
        if (!emit)
            return ep_string(e, NULL);
        sl_buf_reset(&e->r->sval);
        if (ep_string(e, &e->r->sval))
            return -1;
        return ep_field(e, e->r->sval.data ? e->r->sval.data : "", e->r->sval.len);
    case 't':
    case 'f':
    case 'n': {
        size_t n = *s == 'f' ? 5 : 4;
        const char *word = *s == 't' ? "true" : *s == 'f' ? "false" : "null";
        if (left < n || memcmp(s, word, n) != 0 || (left > n && is_lit((unsigned char)s[n])))
            return ep_fail(e, "an invalid literal (true, false or null expected)");
        e->pos += n;
        if (!emit)
            return 0;
        return ep_field(e, *s == 'n' ? NULL : word, n);
    }
    default:
        if (*s != '-' && !(*s >= '0' && *s <= '9'))
            return ep_fail(e, "unexpected character (a value expected)");
        if (ep_number(e))
            return -1;
        return emit ? ep_field(e, s, (size_t)(e->s + e->pos - s)) : 0;
    }
}

const char *sl_json_kind(char c)
{
    switch (c) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        /* NULL: no JSON value starts so */
        return c == '-' || (c >= '0' && c <= '9') ? "a number" : NULL;
    }
}

/* Parses s[0..len) (one whole value) into r's fields. Returns EP_OK with
 * *kind NULL for an object, or the kind of another value; else an ep_err
 * with e->msg and e->pos. */
static int parse_element(struct jsonr *r, struct ep *e, const char *s, size_t len,
                         const char **kind)
{
    *e = (struct ep){.r = r, .s = s, .len = len};
    *kind = NULL;
    r->nfld = 0;
    sl_buf_reset(&r->text);
    sl_buf_reset(&r->path);
    if (++r->gen == 0) { /* wrapped: forget every slot */
        if (r->slots)
            memset(r->slots, 0, r->nslots * sizeof(*r->slots));
        r->gen = 1;
    }
    ep_ws(e);
    if (e->pos < len && s[e->pos] != '{')
        *kind = sl_json_kind(s[e->pos]);
    if (ep_value(e, *kind == NULL))
        return e->err;
    ep_ws(e);
    if (e->pos < len) {
        ep_fail(e, "unexpected text after the value");
        return e->err;
    }
    return EP_OK;
}

/* Hands over a row: the fields parsed (when fields) and error (or NULL). */
static void emit_row(struct jsonr *r, const char *error, bool fields)
{
    size_t n = fields ? r->nfld : 0;
    if (n > r->caparr) {
        size_t ncap = r->caparr ? r->caparr : 32;
        while (ncap < n)
            ncap *= 2;
        const char **names = realloc(r->names, ncap * sizeof(*names));
        if (names)
            r->names = names;
        const char **vals = realloc(r->vals, ncap * sizeof(*vals));
        if (vals)
            r->vals = vals;
        size_t *lens = realloc(r->lens, ncap * sizeof(*lens));
        if (lens)
            r->lens = lens;
        if (!names || !vals || !lens) {
            stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
            return;
        }
        r->caparr = ncap;
    }
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &r->flds[i];
        r->names[i] = r->text.data + f->name;
        r->vals[i] = f->null ? NULL : r->text.data + f->val;
        r->lens[i] = f->vallen;
    }
    struct sl_row row = {
        .row = ++r->rows,
        .names = r->names,
        .values = r->vals,
        .lens = r->lens,
        .n = n,
        .error = error,
    };
    if (r->stats)
        r->stats->rows = r->rows;
    if (r->fn) {
        int rc = r->fn(r->ud, &row);
        if (rc && !r->rc)
            r->rc = rc;
    }
}

/* The element in r->elem, record r->nrec of the JSON document. */
static void finish_element(struct jsonr *r)
{
    struct ep e;
    const char *kind;
    uint64_t rec = ++r->nrec;
    switch (parse_element(r, &e, r->elem.data, r->elem.len, &kind)) {
    case EP_OK:
        break;
    case EP_SYNTAX:
        stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: %s",
             (unsigned long long)(r->elem_off + e.pos), e.msg);
        return;
    case EP_DEPTH:
        stop(r, SL_ERR_LIMIT, "record %llu is nested deeper than %zu levels (max_depth)",
             (unsigned long long)rec, r->max_depth);
        return;
    case EP_FIELDS:
        stop(r, SL_ERR_LIMIT, "record %llu has more than %zu fields (max_fields)",
             (unsigned long long)rec, r->max_fields);
        return;
    default:
        stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
        return;
    }
    sl_buf_reset(&r->err);
    if (kind)
        sl_buf_printf(&r->err, "record %llu is not an object (%s)", (unsigned long long)rec, kind);
    else if (e.nul)
        sl_buf_printf(&r->err, "record %llu: a NUL character (\\u0000) in a string",
                      (unsigned long long)rec);
    emit_row(r, r->err.len ? r->err.data : NULL, !kind);
    sl_buf_reset(&r->elem);
}

/* One NDJSON line (its LF not included). */
static void ndjson_line(struct jsonr *r, const char *s, size_t len)
{
    while (len && is_ws((unsigned char)s[len - 1]))
        len--;
    size_t lead = 0;
    while (lead < len && is_ws((unsigned char)s[lead]))
        lead++;
    bool bad = r->line_bad;
    r->line_bad = false;
    if (lead == len)
        return;
    struct ep e;
    const char *kind;
    unsigned long long ln = (unsigned long long)r->lineno;
    bool fields = false;
    sl_buf_reset(&r->err);
    if (bad) {
        sl_buf_printf(&r->err, "line %llu: invalid %s at byte offset %llu (0x%02x)", ln,
                      r->enc_name, (unsigned long long)r->line_bad_off, r->line_bad_byte);
        emit_row(r, r->err.data, false);
        return;
    }
    switch (parse_element(r, &e, s, len, &kind)) {
    case EP_OK:
        fields = !kind;
        if (kind)
            sl_buf_printf(&r->err, "line %llu: not an object (%s)", ln, kind);
        else if (e.nul)
            sl_buf_printf(&r->err, "line %llu: a NUL character (\\u0000) in a string", ln);
        break;
    case EP_SYNTAX:
        sl_buf_printf(&r->err, "line %llu: invalid JSON: %s (column %zu)", ln, e.msg, e.pos + 1);
        break;
    case EP_DEPTH:
        stop(r, SL_ERR_LIMIT, "line %llu is nested deeper than %zu levels (max_depth)", ln,
             r->max_depth);
        return;
    case EP_FIELDS:
        stop(r, SL_ERR_LIMIT, "line %llu has more than %zu fields (max_fields)", ln, r->max_fields);
        return;
    default:
        stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
        return;
    }
    emit_row(r, r->err.len ? r->err.data : NULL, fields);
}

static void feed_ndjson(struct jsonr *r, const char *s, size_t n, bool last)
{
    size_t pos = 0, mi = 0; /* s[0]'s offset in the block; the next mark */
    while (n && !r->rc) {
        const char *nl = memchr(s, '\n', n);
        size_t k = nl ? (size_t)(nl - s) : n;
        for (; mi < r->nmarks && r->marks[mi].at < pos + k; mi++) {
            if (!r->line_bad) {
                r->line_bad = true;
                r->line_bad_off = r->marks[mi].off;
                r->line_bad_byte = r->marks[mi].byte;
            }
        }
        if (r->line.len + k > r->max_value) {
            stop(r, SL_ERR_LIMIT, "line %llu is longer than %zu bytes (max_value)",
                 (unsigned long long)r->lineno, r->max_value);
            return;
        }
        if (nl && r->line.len == 0) {
            ndjson_line(r, s, k);
        } else {
            if (sl_buf_append(&r->line, s, k)) {
                stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
                return;
            }
            if (nl) {
                ndjson_line(r, r->line.data, r->line.len);
                sl_buf_reset(&r->line);
            }
        }
        if (!nl)
            break;
        r->lineno++;
        s += k + 1;
        n -= k + 1;
        pos += k + 1;
    }
    if (last && !r->rc && r->line.len) {
        ndjson_line(r, r->line.data, r->line.len);
        sl_buf_reset(&r->line);
    }
}

/* ---- the scanner of a JSON document ---- */

static void syntax(struct jsonr *r, const char *what, unsigned char c)
{
    if (c >= 0x20 && c < 0x7f)
        stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: %s '%c'", (unsigned long long)r->at, what,
             c);
    else
        stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: %s (byte 0x%02x)",
             (unsigned long long)r->at, what, c);
}

/* A value ended in the current container (or at the top). */
static void value_done(struct jsonr *r)
{
    if (r->depth == 0) {
        r->top_done = true;
        return;
    }
    struct frame *f = &r->stack[r->depth - 1];
    f->st = f->st == F_OBJ_VALUE ? F_OBJ_NEXT : F_ARR_NEXT;
}

static void push(struct jsonr *r, bool obj, bool on_path, bool records)
{
    if (r->depth == r->maxstack) {
        stop(r, SL_ERR_LIMIT,
             "the JSON at byte %llu is nested deeper than %zu levels outside the records "
             "(max_depth)",
             (unsigned long long)r->at, r->maxstack);
        return;
    }
    r->stack[r->depth++] = (struct frame){
        .st = obj ? F_OBJ_KEY_OR_END : F_ARR_VALUE_OR_END,
        .on_path = on_path,
        .records = records,
    };
}

static void begin_capture(struct jsonr *r, unsigned char c)
{
    sl_buf_reset(&r->elem);
    r->elem_off = r->at;
    r->lex = L_CAPTURE;
    r->cdepth = 0;
    r->cin_str = r->cesc = false;
    r->ckind = c == '{' || c == '[' ? '{' : c == '"' ? '"' : 'l';
    r->cdepth = r->ckind == '{';
    r->cin_str = r->ckind == '"';
    if (sl_buf_putc(&r->elem, (char)c))
        stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
}

static void path_missing(struct jsonr *r, const char *what)
{
    if (what)
        stop(r, SL_ERR_PARSE, "no array at %s (there is %s)", r->records, what);
    else
        stop(r, SL_ERR_PARSE, "no array at %s", r->records);
}

/* A value starts with c (the scanner expects one). */
static void value_start(struct jsonr *r, unsigned char c)
{
    const char *kind = sl_json_kind((char)c);
    bool cont = c == '{' || c == '[';
    if (r->depth == 0) {
        r->top_started = true;
        if (r->ncomp == 0) {
            if (c == '[') {
                r->found = true;
                push(r, false, true, true);
            } else if (c == '{') {
                begin_capture(r, c); /* a single record */
            } else if (!kind) {
                stop(r, SL_ERR_PARSE,
                     "not JSON: the file starts with byte 0x%02x ('%c'), not a JSON value", c,
                     c >= 0x20 && c < 0x7f ? c : '?');
            } else {
                stop(r, SL_ERR_PARSE,
                     "the top-level JSON value is %s, not an array of records or an object", kind);
            }
            return;
        }
        if (c == '{') {
            push(r, true, true, false);
            return;
        }
    } else {
        struct frame *p = &r->stack[r->depth - 1];
        if (p->records) {
            begin_capture(r, c);
            return;
        }
        if (p->on_path && p->key_match && !r->found) {
            if (r->depth == r->ncomp) {
                if (c == '[') {
                    r->found = true;
                    push(r, false, true, true);
                } else {
                    path_missing(r, kind);
                }
                return;
            }
            if (c == '{') {
                push(r, true, true, false);
                return;
            }
        }
    }
    if (cont) {
        push(r, c == '{', false, false);
    } else if (c == '"') {
        r->lex = L_STR;
        r->str_key = r->key_capture = false;
    } else if (is_lit(c)) {
        r->lex = L_LIT;
        sl_buf_reset(&r->lit);
        if (sl_buf_putc(&r->lit, (char)c))
            stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
    } else {
        syntax(r, "unexpected", c);
    }
}

/* The literal in r->lit ended (outside the records). */
static void end_literal(struct jsonr *r)
{
    struct ep e = {.r = r, .s = r->lit.data, .len = r->lit.len};
    r->lex = L_NONE;
    if (ep_value(&e, false) || e.pos != e.len) {
        stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: %s",
             (unsigned long long)(r->at - r->lit.len + e.pos),
             e.msg ? e.msg : "an invalid literal");
        return;
    }
    value_done(r);
}

/* A string ended outside the records: a key (compared with the path) or a
 * value. */
static void end_string(struct jsonr *r)
{
    r->lex = L_NONE;
    if (!r->str_key) {
        value_done(r);
        return;
    }
    struct frame *f = &r->stack[r->depth - 1];
    f->st = F_OBJ_COLON;
    if (!r->key_capture)
        return;
    struct ep e = {.r = r, .s = r->key.data, .len = r->key.len};
    sl_buf_reset(&r->sval);
    if (ep_string(&e, &r->sval)) {
        if (e.err == EP_NOMEM)
            stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
        else
            stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: %s",
                 (unsigned long long)(r->at - r->key.len + 1 + e.pos), e.msg);
        return;
    }
    const char *want = r->comp[r->depth - 1];
    f->key_match = r->sval.len == strlen(want) && memcmp(r->sval.data, want, r->sval.len) == 0;
}

/* One byte outside strings, literals and records. */
static void token(struct jsonr *r, unsigned char c)
{
    if (is_ws(c))
        return;
    if (r->top_done) {
        syntax(r, "unexpected text after the JSON value:", c);
        return;
    }
    struct frame *f = r->depth ? &r->stack[r->depth - 1] : NULL;
    int st = f ? f->st : -1;
    switch (c) {
    case '}':
    case ']':
        if ((c == '}' && (st == F_OBJ_KEY_OR_END || st == F_OBJ_NEXT)) ||
            (c == ']' && (st == F_ARR_VALUE_OR_END || st == F_ARR_NEXT))) {
            r->depth--;
            value_done(r);
        } else {
            syntax(r, "unexpected", c);
        }
        return;
    case ':':
        if (st == F_OBJ_COLON)
            f->st = F_OBJ_VALUE;
        else
            syntax(r, "unexpected", c);
        return;
    case ',':
        if (st == F_OBJ_NEXT)
            f->st = F_OBJ_KEY;
        else if (st == F_ARR_NEXT)
            f->st = F_ARR_VALUE;
        else
            syntax(r, "unexpected", c);
        return;
    case '"':
        if (st == F_OBJ_KEY_OR_END || st == F_OBJ_KEY) {
            r->lex = L_STR;
            r->str_key = true;
            r->key_capture = f->on_path && !r->found && r->depth <= r->ncomp;
            f->key_match = false;
            sl_buf_reset(&r->key);
            if (r->key_capture && sl_buf_putc(&r->key, '"'))
                stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
            return;
        }
        break;
    default:
        if (st == F_OBJ_KEY_OR_END || st == F_OBJ_KEY) {
            syntax(r, "expected a name in quotes, found", c);
            return;
        }
    }
    if (f ? st == F_OBJ_VALUE || st == F_ARR_VALUE || st == F_ARR_VALUE_OR_END : !r->top_started)
        value_start(r, c);
    else
        syntax(r, "unexpected", c);
}

/* Copies element bytes from s; returns how many belong to it. */
static size_t capture(struct jsonr *r, const char *s, size_t n)
{
    size_t i = 0;
    bool done = false;
    if (r->ckind == 'l') {
        while (i < n && is_lit((unsigned char)s[i]))
            i++;
        done = i < n;
    } else {
        for (; i < n; i++) {
            char c = s[i];
            if (r->cin_str) {
                if (r->cesc) {
                    r->cesc = false;
                } else if (c == '\\') {
                    r->cesc = true;
                } else if (c == '"') {
                    r->cin_str = false;
                    if (r->ckind == '"') {
                        i++;
                        done = true;
                        break;
                    }
                }
            } else if (c == '"') {
                r->cin_str = true;
            } else if (c == '{' || c == '[') {
                if (++r->cdepth > r->max_depth) {
                    stop(r, SL_ERR_LIMIT,
                         "record %llu is nested deeper than %zu levels (max_depth)",
                         (unsigned long long)r->nrec + 1, r->max_depth);
                    return i;
                }
            } else if (c == '}' || c == ']') {
                if (r->cdepth <= 1) {
                    i++;
                    done = true;
                    break;
                }
                r->cdepth--;
            }
        }
    }
    if (r->elem.len + i > r->max_value) {
        stop(r, SL_ERR_LIMIT, "record %llu is larger than %zu bytes (max_value)",
             (unsigned long long)r->nrec + 1, r->max_value);
        return i;
    }
    if (sl_buf_append(&r->elem, s, i)) {
        stop(r, SL_ERR_NOMEM, "out of memory reading a JSON record");
        return i;
    }
    if (done) {
        r->lex = L_NONE;
        finish_element(r);
        if (!r->rc)
            value_done(r);
    }
    return i;
}

static void feed_json(struct jsonr *r, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !r->rc;) {
        unsigned char c = (unsigned char)s[i];
        r->at = r->base + i;
        switch (r->lex) {
        case L_CAPTURE:
            i += capture(r, s + i, n - i);
            continue;
        case L_STR: {
            size_t st = i;
            while (i < n && s[i] != '"' && s[i] != '\\' && (unsigned char)s[i] >= 0x20)
                i++;
            if (r->key_capture && i > st && sl_buf_append(&r->key, s + st, i - st)) {
                stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
                return;
            }
            if (i == n)
                return;
            c = (unsigned char)s[i];
            r->at = r->base + i;
            if (r->key_capture && sl_buf_putc(&r->key, (char)c)) {
                stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
                return;
            }
            if (r->key.len > r->max_value) {
                stop(r, SL_ERR_LIMIT, "a name at byte %llu is longer than %zu bytes (max_value)",
                     (unsigned long long)r->at, r->max_value);
                return;
            }
            if (c == '"')
                end_string(r);
            else if (c == '\\')
                r->lex = L_STR_ESC;
            else
                syntax(r, "a control character in a string", c);
            break;
        }
        case L_STR_ESC:
            if (r->key_capture && sl_buf_putc(&r->key, (char)c)) {
                stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
                return;
            }
            if (c == 'u') {
                r->lex = L_STR_U;
                r->ucount = 0;
            } else if (c && strchr("\"\\/bfnrt", c)) {
                r->lex = L_STR;
            } else {
                syntax(r, "an invalid escape in a string:", c);
            }
            break;
        case L_STR_U:
            if (r->key_capture && sl_buf_putc(&r->key, (char)c)) {
                stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
                return;
            }
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                syntax(r, "an invalid \\u escape:", c);
            else if (++r->ucount == 4)
                r->lex = L_STR;
            break;
        case L_LIT:
            if (is_lit(c)) {
                if (r->lit.len >= r->max_value) {
                    stop(r, SL_ERR_LIMIT,
                         "a value at byte %llu is longer than %zu bytes (max_value)",
                         (unsigned long long)r->at, r->max_value);
                    return;
                }
                if (sl_buf_putc(&r->lit, (char)c)) {
                    stop(r, SL_ERR_NOMEM, "out of memory reading JSON");
                    return;
                }
                break;
            }
            end_literal(r);
            continue; /* c is looked at again */
        default:
            token(r, c);
            break;
        }
        i++;
    }
}

/* The end of the input: whatever is open is an error. */
static void end_json(struct jsonr *r)
{
    if (r->rc)
        return;
    if (r->lex == L_CAPTURE && r->ckind == 'l') {
        r->lex = L_NONE;
        finish_element(r);
        if (!r->rc)
            value_done(r);
    } else if (r->lex == L_LIT) {
        end_literal(r);
    }
    if (r->rc)
        return;
    if (!r->top_started) {
        stop(r, SL_ERR_PARSE, "the file is empty (no JSON value)");
        return;
    }
    if (!r->top_done || r->lex != L_NONE) {
        stop(r, SL_ERR_PARSE, "invalid JSON at byte %llu: unexpected end of the file%s",
             (unsigned long long)r->at,
             r->lex == L_CAPTURE ? " inside a record (is the file cut off?)"
             : r->lex != L_NONE  ? " inside a string"
                                 : " (is the file cut off?)");
        return;
    }
    if (r->ncomp && !r->found)
        path_missing(r, NULL);
}

/* Splits "$.a.b" (or "a.b"; NULL, "" or "$": none) into r->comp. */
static int split_path(struct jsonr *r, const char *path, char *errbuf, size_t errsz)
{
    r->records = path && *path ? path : "$";
    if (!path || !*path || strcmp(path, "$") == 0)
        return 0;
    const char *p = path;
    if (p[0] == '$' && p[1] == '.')
        p += 2;
    size_t n = 1;
    for (const char *q = p; *q; q++)
        n += *q == '.';
    r->comp = calloc(n, sizeof(*r->comp));
    if (!r->comp)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "source.json.records: '%s' is not a path like $.data.items (an "
                             "empty name)",
                             path);
        r->comp[r->ncomp] = strndup(p, len);
        if (!r->comp[r->ncomp])
            return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        r->ncomp++;
        if (!dot)
            return 0;
        p = dot + 1;
    }
}

/* Text invalid in its encoding fails the file, but only once everything
 * before it has been read: errors come in the order of the input, whatever
 * the block size. */
static void on_invalid(void *ud, uint64_t offset, size_t at, unsigned char byte)
{
    struct jsonr *r = ud;
    if (r->ndjson) {
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
        return;
    }
    if (r->bad)
        return;
    r->bad = true;
    r->bad_at = at;
    r->bad_off = offset;
    r->bad_byte = byte;
}

/* Fills buf (cap bytes) unless the input ends first: blocks of one size
 * whatever read(2) returns (a pipe gives any amount), so that the decoder
 * never sees tiny pieces (sl_decoder_feed mishandles UTF-16 invalid
 * surrogates fed a few bytes at a time). */
/* Where the text comes from: fd, or (fd < 0) mem[0..len), pos read so far. */
struct jsource {
    int fd;
    const char *mem;
    size_t len, pos;
};

static int read_block(struct jsonr *r, struct jsource *src, char *buf, size_t cap, size_t *got,
                      bool *eof)
{
    *got = 0;
    *eof = false;
    if (src->fd < 0) {
        size_t k = src->len - src->pos < cap ? src->len - src->pos : cap;
        memcpy(buf, src->mem + src->pos, k);
        src->pos += k;
        *got = k;
        *eof = src->pos == src->len;
        return 0;
    }
    int fd = src->fd;
    while (*got < cap) {
        ssize_t k = read(fd, buf + *got, cap - *got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            stop(r, SL_ERR_IO, "could not read the JSON input: %s", strerror(errno));
            return r->rc;
        }
        if (k == 0) {
            *eof = true;
            break;
        }
        *got += (size_t)k;
    }
    return 0;
}

static int json_read(struct jsource *src, const struct sl_json_opts *opts, sl_row_fn fn, void *ud,
                     struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct sl_json_opts o = opts ? *opts : (struct sl_json_opts){0};
    if (errbuf && errsz)
        errbuf[0] = '\0';
    if (!sl_encoding_name(o.encoding))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.json: unknown encoding");
    struct jsonr r = {
        .max_value = o.max_value ? o.max_value : DEFAULT_MAX_VALUE,
        .max_depth = o.max_depth ? o.max_depth : DEFAULT_MAX_DEPTH,
        .max_fields = o.max_fields ? o.max_fields : DEFAULT_MAX_FIELDS,
        .ndjson = o.ndjson,
        .fn = fn,
        .ud = ud,
        .stats = stats,
        .errbuf = errbuf,
        .errsz = errsz,
        .lineno = 1,
    };
    if (r.max_depth > MAX_DEPTH_CAP)
        r.max_depth = MAX_DEPTH_CAP;
    if (r.max_fields > UINT32_MAX / 4)
        r.max_fields = UINT32_MAX / 4;
    sl_buf_init(&r.key);
    sl_buf_init(&r.lit);
    sl_buf_init(&r.elem);
    sl_buf_init(&r.line);
    sl_buf_init(&r.text);
    sl_buf_init(&r.path);
    sl_buf_init(&r.sval);
    sl_buf_init(&r.err);
    size_t bs = o.block_size ? o.block_size : BLOCK_SIZE;
    if (src->fd < 0 && !o.block_size && src->len < bs)
        bs = src->len + 1; /* all of it at once, with room to see the end */
    char *raw = malloc(bs), *dec = NULL;
    size_t declen = 0, deccap = 0;
    struct sl_decoder *d = sl_decoder_new(o.encoding);
    int rc = split_path(&r, o.records, errbuf, errsz);
    if (rc)
        goto fail;
    /* the records' depth, plus as deep as a record may be beside them */
    r.maxstack = r.ncomp + 1 + r.max_depth;
    r.stack = malloc(r.maxstack * sizeof(*r.stack));
    if (!raw || !d || !r.stack) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sl_decoder_set_lenient(d, on_invalid, &r);
    bool first = true, eof = false;
    while (!eof) {
        size_t n = 0;
        if ((rc = read_block(&r, src, raw, bs, &n, &eof)))
            goto fail;
        if (stats)
            stats->bytes += n;
        declen = 0;
        r.bad = false;
        r.nmarks = 0;
        rc = sl_decoder_feed(d, raw, n, eof, &dec, &declen, &deccap, errbuf, errsz);
        if (rc)
            goto fail;
        if (r.marks_oom) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        enum sl_encoding enc = sl_decoder_encoding(d);
        r.enc_name = enc == SL_ENC_UTF8    ? "UTF-8"
                     : enc == SL_ENC_UTF16 ? "UTF-16"
                                           : sl_encoding_name(enc);
        if (first && (n || eof)) {
            if (stats)
                stats->encoding = enc;
            first = false;
        }
        size_t use = r.bad ? r.bad_at : declen;
        if (r.ndjson)
            feed_ndjson(&r, dec, use, eof && !r.bad);
        else
            feed_json(&r, dec, use);
        r.base += use;
        r.at = r.base;
        if ((rc = r.rc))
            goto fail;
        if (r.bad) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_PARSE, "invalid %s at byte offset %llu (0x%02x)",
                           r.enc_name, (unsigned long long)r.bad_off, r.bad_byte);
            goto fail;
        }
    }
    if (!r.ndjson)
        end_json(&r);
    rc = r.rc;
fail:
    sl_decoder_destroy(d);
    free(raw);
    free(dec);
    for (size_t i = 0; i < r.ncomp; i++)
        free(r.comp[i]);
    free(r.comp);
    free(r.stack);
    free(r.flds);
    free(r.names);
    free(r.vals);
    free(r.lens);
    free(r.slots);
    free(r.marks);
    sl_buf_cleanup(&r.key);
    sl_buf_cleanup(&r.lit);
    sl_buf_cleanup(&r.elem);
    sl_buf_cleanup(&r.line);
    sl_buf_cleanup(&r.text);
    sl_buf_cleanup(&r.path);
    sl_buf_cleanup(&r.sval);
    sl_buf_cleanup(&r.err);
    return rc;
}

int sl_json_read_fd(int fd, const struct sl_json_opts *opts, sl_row_fn fn, void *ud,
                    struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct jsource src = {.fd = fd};
    return json_read(&src, opts, fn, ud, stats, errbuf, errsz);
}

int sl_json_read_mem(const char *data, size_t len, const struct sl_json_opts *opts, sl_row_fn fn,
                     void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct jsource src = {.fd = -1, .mem = data ? data : "", .len = data ? len : 0};
    return json_read(&src, opts, fn, ud, stats, errbuf, errsz);
}
