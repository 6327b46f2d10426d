/*
 * The XML reader (reader.h): a file descriptor streamed into rows.
 *
 * libxml2's xmlTextReader pulls nodes from read(2) blocks and frees the
 * nodes it has passed, so memory holds the open elements and one record.
 * An element whose path of local names (namespace prefixes ignored) is the
 * records path is one record: its attributes, its child elements' text and
 * their attributes become the row's fields ("@id", "Address/City",
 * "Address/@type"), repeated children are numbered like repeated CSV
 * header names ("Phone", "Phone_2").
 *
 * Security: the parser runs without entity substitution, DTD loading,
 * validation or XML_PARSE_HUGE, with XML_PARSE_NONET and a process-wide
 * external entity loader that refuses everything. An external entity
 * (XXE) fails the file; an internal entity (<!ENTITY co "ACME">) is
 * expanded by this reader only when its replacement text is plain text, so
 * nested entities (billion laughs) fail the file before any expansion.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libxml/entities.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlreader.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#define XML_DEF_MAX_VALUE  (16u << 20)
#define XML_DEF_MAX_DEPTH  256
#define XML_DEF_MAX_FIELDS 16384

/* A string-keyed map of the current record; keys live in keys (offsets),
 * entries of older records are told apart by their generation. */
struct xmap_ent {
    uint32_t gen, off, len, val;
};

struct xmap {
    struct xmap_ent *ents;
    size_t cap, n; /* cap a power of two */
    struct sl_buf keys;
    uint32_t gen;
};

struct xfield {
    uint32_t name_off, name_len; /* in fieldmap.keys */
    char *val;
    size_t len, cap;
};

/* One open element. */
struct xframe {
    size_t pathlen;   /* length of its field path in rd->path (in a record) */
    bool match;       /* its path is a prefix of the records path */
    bool has_content; /* child elements, text or attributes */
};

struct xrd {
    xmlTextReaderPtr xr;
    int fd;
    struct sl_reader_stats *stats;
    uint64_t bytes;
    int io_errno;
    /* the first libxml2 error */
    char xerr[512];
    int xerr_line, xerr_col;
    bool have_xerr;

    const char *records;
    char **comp; /* records path components (local names) */
    size_t ncomp;
    size_t max_value, max_depth, max_fields;

    struct xframe *frames;
    size_t depth, frames_cap;
    size_t rec_depth; /* depth of the open record element, 0 none */
    bool root_seen, parent_seen;
    struct sl_buf path; /* field path of the current element in the record */
    struct sl_buf tmp, tmp2;
    struct sl_buf pend; /* whitespace-only text since the last element tag */

    struct xmap fieldmap; /* field name -> index */
    struct xmap countmap; /* "parent path\x01child name" -> occurrences */
    struct xfield *fields;
    size_t nfields, fields_cap;
    const char **names, **values;
    size_t *lens;
    size_t row_cap;
    uint64_t rows;

    char *errbuf;
    size_t errsz;
};

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

/* What the loader refused last on this thread, for the error message. */
static _Thread_local char denied_url[256];

/* Refuses every external resource: DTDs, external entities, XIncludes.
 * libxml2 does not even ask for them with the options used here; this is
 * the second lock. */
static xmlParserInputPtr deny_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)ctxt;
    snprintf(denied_url, sizeof(denied_url), "%s", url ? url : id ? id : "?");
    return NULL;
}

static void xml_init(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(deny_loader);
}

static void quiet_generic(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void on_xml_error(void *ud, xmlErrorPtr e)
{
    struct xrd *rd = ud;
    if (rd->have_xerr || !e || e->level < XML_ERR_ERROR)
        return;
    rd->have_xerr = true;
    snprintf(rd->xerr, sizeof(rd->xerr), "%s", e->message ? e->message : "malformed XML");
    size_t n = strlen(rd->xerr);
    while (n && (rd->xerr[n - 1] == '\n' || rd->xerr[n - 1] == ' '))
        rd->xerr[--n] = '\0';
    rd->xerr_line = e->line;
    rd->xerr_col = e->int2;
}

static int read_cb(void *ctx, char *buf, int len)
{
    struct xrd *rd = ctx;
    for (;;) {
        ssize_t n = read(rd->fd, buf, (size_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rd->io_errno = errno;
            return -1;
        }
        rd->bytes += (uint64_t)n;
        if (rd->stats)
            rd->stats->bytes = rd->bytes;
        return (int)n;
    }
}

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void xmap_reset(struct xmap *m)
{
    m->gen++;
    m->n = 0;
    sl_buf_reset(&m->keys);
    if (m->gen == 0) { /* wrapped: old entries would look current */
        if (m->ents)
            memset(m->ents, 0, m->cap * sizeof(*m->ents));
        m->gen = 1;
    }
}

static struct xmap_ent *xmap_slot(struct xmap *m, const char *k, size_t n)
{
    size_t i = hash(k, n) & (m->cap - 1);
    for (;;) {
        struct xmap_ent *e = &m->ents[i];
        if (e->gen != m->gen)
            return e;
        if (e->len == n && memcmp(m->keys.data + e->off, k, n) == 0)
            return e;
        i = (i + 1) & (m->cap - 1);
    }
}

/* The entry of k, *found whether it existed; a new entry gets val. NULL
 * when out of memory. */
static struct xmap_ent *xmap_get(struct xmap *m, const char *k, size_t n, uint32_t val, bool *found)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct xmap_ent *ne = calloc(ncap, sizeof(*ne));
        if (!ne)
            return NULL;
        struct xmap old = *m;
        m->ents = ne;
        m->cap = ncap;
        for (size_t i = 0; i < old.cap; i++)
            if (old.ents[i].gen == m->gen)
                *xmap_slot(m, m->keys.data + old.ents[i].off, old.ents[i].len) = old.ents[i];
        free(old.ents);
    }
    struct xmap_ent *e = xmap_slot(m, k, n);
    *found = e->gen == m->gen;
    if (*found)
        return e;
    size_t off = m->keys.len;
    if (sl_buf_append(&m->keys, k, n) || sl_buf_putc(&m->keys, '\0'))
        return NULL;
    e = xmap_slot(m, k, n); /* keys may have moved, the slot has not */
    *e = (struct xmap_ent){.gen = m->gen, .off = (uint32_t)off, .len = (uint32_t)n, .val = val};
    m->n++;
    return e;
}

static int fail(struct xrd *rd, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct xrd *rd, int err, const char *fmt, ...)
{
    if (rd->errbuf && rd->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rd->errbuf, rd->errsz, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* The index of field name[0..n) of the current record, created (empty) when
 * absent; unique: an existing name gets "_2", "_3", ... instead. */
static int field_get(struct xrd *rd, const char *name, size_t n, bool unique, size_t *idx)
{
    bool found;
    struct xmap_ent *e = xmap_get(&rd->fieldmap, name, n, (uint32_t)rd->nfields, &found);
    if (!e)
        return SL_ERR_NOMEM;
    if (found && unique) {
        for (unsigned k = 2;; k++) {
            sl_buf_reset(&rd->tmp2); /* name may be rd->tmp */
            if (sl_buf_append(&rd->tmp2, name, n) || sl_buf_printf(&rd->tmp2, "_%u", k))
                return SL_ERR_NOMEM;
            e = xmap_get(&rd->fieldmap, rd->tmp2.data, rd->tmp2.len, (uint32_t)rd->nfields, &found);
            if (!e)
                return SL_ERR_NOMEM;
            if (!found)
                break;
        }
    }
    if (found) {
        *idx = e->val;
        return 0;
    }
    if (rd->nfields >= rd->max_fields)
        return fail(rd, SL_ERR_LIMIT, "record %llu: more than %zu fields",
                    (unsigned long long)rd->rows + 1, rd->max_fields);
    if (rd->nfields == rd->fields_cap) {
        size_t ncap = rd->fields_cap ? rd->fields_cap * 2 : 16;
        struct xfield *nf = realloc(rd->fields, ncap * sizeof(*nf));
        if (!nf)
            return SL_ERR_NOMEM;
        memset(nf + rd->fields_cap, 0, (ncap - rd->fields_cap) * sizeof(*nf));
        rd->fields = nf;
        rd->fields_cap = ncap;
    }
    struct xfield *f = &rd->fields[rd->nfields];
    f->name_off = e->off;
    f->name_len = e->len;
    f->len = 0;
    if (f->val)
        f->val[0] = '\0';
    *idx = rd->nfields++;
    return 0;
}

static int field_append(struct xrd *rd, size_t idx, const char *s, size_t n)
{
    struct xfield *f = &rd->fields[idx];
    if (n > rd->max_value || f->len > rd->max_value - n)
        return fail(rd, SL_ERR_LIMIT, "record %llu: the value of '%s' is longer than %zu bytes",
                    (unsigned long long)rd->rows + 1, rd->fieldmap.keys.data + f->name_off,
                    rd->max_value);
    if (f->len + n + 1 > f->cap) {
        size_t ncap = f->cap ? f->cap : 32;
        while (ncap < f->len + n + 1)
            ncap *= 2;
        char *nv = realloc(f->val, ncap);
        if (!nv)
            return SL_ERR_NOMEM;
        f->val = nv;
        f->cap = ncap;
    }
    memcpy(f->val + f->len, s, n);
    f->len += n;
    f->val[f->len] = '\0';
    return 0;
}

/* The field name of the current element's own text or of its attribute. */
static const char *cur_name(struct xrd *rd, const char *attr, size_t *n)
{
    struct sl_buf *t = &rd->tmp;
    sl_buf_reset(t);
    if (!attr) {
        if (!rd->path.len)
            sl_buf_puts(t, "#text");
        else
            sl_buf_append(t, rd->path.data, rd->path.len);
    } else {
        if (rd->path.len) {
            sl_buf_append(t, rd->path.data, rd->path.len);
            sl_buf_putc(t, '/');
        }
        sl_buf_putc(t, '@');
        sl_buf_puts(t, attr);
    }
    if (!t->data)
        return NULL;
    *n = t->len;
    return t->data;
}

static bool blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* Text of an entity reference: an internal entity whose replacement is
 * plain text; anything else fails the file. */
static int entity_text(struct xrd *rd, const xmlChar *name, const char **text)
{
    /* not xmlTextReaderCurrentDoc: it would keep every node till the end */
    xmlNodePtr node = xmlTextReaderCurrentNode(rd->xr);
    xmlDocPtr doc = node ? node->doc : NULL;
    xmlEntityPtr ent = doc ? xmlGetDocEntity(doc, name) : NULL;
    if (!ent)
        return fail(rd, SL_ERR_PARSE, "the entity &%s; is not declared", (const char *)name);
    if (ent->etype != XML_INTERNAL_GENERAL_ENTITY && ent->etype != XML_INTERNAL_PREDEFINED_ENTITY)
        return fail(rd, SL_ERR_PARSE, "external entities are not allowed (&%s;)",
                    (const char *)name);
    const char *c = ent->content ? (const char *)ent->content : "";
    if (strchr(c, '&') || strchr(c, '<'))
        return fail(rd, SL_ERR_PARSE,
                    "the entity &%s; holds markup or other entities, which are not supported",
                    (const char *)name);
    *text = c;
    return 0;
}

/* Adds the text s to the current element's field. Whitespace-only text is
 * held back and kept only when more text of the element follows before the
 * next element tag: indentation is dropped, "<![CDATA[a]]> &co;" keeps its
 * space. */
static int add_text(struct xrd *rd, const char *s)
{
    if (!s || !*s)
        return 0;
    if (blank(s)) {
        if (strlen(s) > rd->max_value - rd->pend.len)
            return fail(rd, SL_ERR_LIMIT, "record %llu: a text is longer than %zu bytes",
                        (unsigned long long)rd->rows + 1, rd->max_value);
        return sl_buf_puts(&rd->pend, s) ? SL_ERR_NOMEM : 0;
    }
    size_t n;
    const char *name = cur_name(rd, NULL, &n);
    if (!name)
        return SL_ERR_NOMEM;
    size_t idx;
    int rc = field_get(rd, name, n, false, &idx);
    if (!rc && rd->pend.len)
        rc = field_append(rd, idx, rd->pend.data, rd->pend.len);
    sl_buf_reset(&rd->pend);
    if (!rc)
        rc = field_append(rd, idx, s, strlen(s));
    rd->frames[rd->depth - 1].has_content = true;
    return rc;
}

static int add_attrs(struct xrd *rd, xmlNodePtr node)
{
    if (!node || node->type != XML_ELEMENT_NODE)
        return 0;
    for (xmlAttrPtr a = node->properties; a; a = a->next) {
        size_t n;
        const char *name = cur_name(rd, (const char *)a->name, &n);
        if (!name)
            return SL_ERR_NOMEM;
        size_t idx;
        int rc = field_get(rd, name, n, true, &idx);
        if (rc)
            return rc;
        rd->frames[rd->depth - 1].has_content = true;
        for (xmlNodePtr c = a->children; c; c = c->next) {
            const char *t = NULL;
            if (c->type == XML_TEXT_NODE)
                t = (const char *)c->content;
            else if (c->type == XML_ENTITY_REF_NODE && (rc = entity_text(rd, c->name, &t)))
                return rc;
            if (t && (rc = field_append(rd, idx, t, strlen(t))))
                return rc;
        }
    }
    return 0;
}

static void record_reset(struct xrd *rd)
{
    rd->nfields = 0;
    sl_buf_reset(&rd->path);
    xmap_reset(&rd->fieldmap);
    xmap_reset(&rd->countmap);
}

static int record_emit(struct xrd *rd, sl_row_fn fn, void *ud)
{
    if (rd->nfields > rd->row_cap) {
        size_t ncap = rd->nfields;
        const char **nn = realloc(rd->names, ncap * sizeof(*nn));
        if (nn)
            rd->names = nn;
        const char **nv = realloc(rd->values, ncap * sizeof(*nv));
        if (nv)
            rd->values = nv;
        size_t *nl = realloc(rd->lens, ncap * sizeof(*nl));
        if (nl)
            rd->lens = nl;
        if (!nn || !nv || !nl)
            return SL_ERR_NOMEM;
        rd->row_cap = ncap;
    }
    for (size_t i = 0; i < rd->nfields; i++) {
        struct xfield *f = &rd->fields[i];
        if (!f->val && field_append(rd, i, "", 0))
            return SL_ERR_NOMEM;
        rd->names[i] = rd->fieldmap.keys.data + f->name_off;
        rd->values[i] = f->val;
        rd->lens[i] = f->len;
        /* libxml2 2.9 lets some overlong forms through (in CDATA) */
        if (!sl_utf8_valid(rd->names[i], f->name_len) || !sl_utf8_valid(f->val, f->len))
            return fail(rd, SL_ERR_PARSE, "record %llu: the field '%s' is not valid UTF-8",
                        (unsigned long long)rd->rows + 1,
                        sl_utf8_valid(rd->names[i], f->name_len) ? rd->names[i] : "?");
    }
    struct sl_row row = {
        .row = ++rd->rows,
        .names = rd->names,
        .values = rd->values,
        .lens = rd->lens,
        .n = rd->nfields,
    };
    if (rd->stats)
        rd->stats->rows = rd->rows;
    int rc = fn(ud, &row);
    record_reset(rd);
    return rc;
}

static int elem_open(struct xrd *rd)
{
    const char *local = (const char *)xmlTextReaderConstLocalName(rd->xr);
    if (!local)
        return SL_ERR_NOMEM;
    if (rd->depth >= rd->max_depth) {
        if (rd->rec_depth)
            return fail(rd, SL_ERR_LIMIT, "record %llu: elements nested deeper than %zu",
                        (unsigned long long)rd->rows + 1, rd->max_depth);
        return fail(rd, SL_ERR_LIMIT, "line %d: elements nested deeper than %zu",
                    xmlTextReaderGetParserLineNumber(rd->xr), rd->max_depth);
    }
    if (rd->depth == rd->frames_cap) {
        size_t ncap = rd->frames_cap ? rd->frames_cap * 2 : 16;
        struct xframe *nf = realloc(rd->frames, ncap * sizeof(*nf));
        if (!nf)
            return SL_ERR_NOMEM;
        rd->frames = nf;
        rd->frames_cap = ncap;
    }
    struct xframe *parent = rd->depth ? &rd->frames[rd->depth - 1] : NULL;
    struct xframe *fr = &rd->frames[rd->depth++];
    *fr = (struct xframe){.pathlen = rd->path.len};
    if (rd->rec_depth) {
        /* a child of the record: its path segment, numbered on repeats */
        parent->has_content = true;
        sl_buf_reset(&rd->tmp);
        if (sl_buf_append(&rd->tmp, rd->path.data ? rd->path.data : "", rd->path.len) ||
            sl_buf_putc(&rd->tmp, '\x01') || sl_buf_puts(&rd->tmp, local))
            return SL_ERR_NOMEM;
        bool found;
        struct xmap_ent *e = xmap_get(&rd->countmap, rd->tmp.data, rd->tmp.len, 1, &found);
        if (!e)
            return SL_ERR_NOMEM;
        if (found)
            e->val++;
        if ((rd->path.len && sl_buf_putc(&rd->path, '/')) || sl_buf_puts(&rd->path, local) ||
            (e->val > 1 && sl_buf_printf(&rd->path, "_%u", (unsigned)e->val)))
            return SL_ERR_NOMEM;
        fr->pathlen = rd->path.len;
        return add_attrs(rd, xmlTextReaderCurrentNode(rd->xr));
    }
    size_t d = rd->depth; /* 1: the root */
    if (d == 1)
        rd->root_seen = true;
    if (rd->records) {
        fr->match = (d == 1 || parent->match) && d <= rd->ncomp && !strcmp(local, rd->comp[d - 1]);
        if (d == 1 && !fr->match)
            return fail(rd, SL_ERR_PARSE, "no element matches %s: the root element is <%s>",
                        rd->records, local);
        if (fr->match && d + 1 == rd->ncomp)
            rd->parent_seen = true;
        if (!fr->match || d != rd->ncomp)
            return 0;
    } else if (d != 2) {
        return 0;
    }
    rd->rec_depth = d;
    record_reset(rd);
    fr->pathlen = 0;
    return add_attrs(rd, xmlTextReaderCurrentNode(rd->xr));
}

static int elem_close(struct xrd *rd, sl_row_fn fn, void *ud)
{
    struct xframe *fr = &rd->frames[rd->depth - 1];
    int rc = 0;
    if (rd->rec_depth && rd->depth > rd->rec_depth && !fr->has_content) {
        /* an empty leaf (<Fax/>): a field with an empty value */
        size_t idx;
        rc = field_get(rd, rd->path.data, rd->path.len, false, &idx);
    }
    if (!rc && rd->rec_depth == rd->depth) {
        rd->rec_depth = 0;
        rc = record_emit(rd, fn, ud);
    }
    rd->depth--;
    if (rd->depth)
        rd->path.len = rd->frames[rd->depth - 1].pathlen;
    return rc;
}

static int split_records(struct xrd *rd, const char *records)
{
    if (records[0] != '/' || records[1] == '\0')
        return fail(rd, SL_ERR_INVALID,
                    "xml records '%s' is no element path: it must look like /Stores/Store",
                    records);
    size_t n = 0;
    for (const char *p = records; *p; p++)
        n += *p == '/';
    rd->comp = calloc(n, sizeof(*rd->comp));
    if (!rd->comp)
        return SL_ERR_NOMEM;
    const char *p = records + 1;
    for (size_t i = 0; i < n; i++) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0)
            return fail(rd, SL_ERR_INVALID, "xml records '%s' has an empty element name", records);
        const char *colon = memchr(p, ':', len); /* s:Store: the local name */
        if (colon) {
            len -= (size_t)(colon + 1 - p);
            p = colon + 1;
        }
        if (!(rd->comp[i] = strndup(p, len)))
            return SL_ERR_NOMEM;
        rd->ncomp++;
        p += len + 1;
    }
    return 0;
}

int sl_xml_read_fd(int fd, const struct sl_xml_opts *o, sl_row_fn fn, void *ud,
                   struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct sl_xml_opts def = {0};
    if (!o)
        o = &def;
    if (errbuf && errsz)
        errbuf[0] = '\0';
    struct xrd rd = {
        .fd = fd,
        .stats = stats,
        .records = o->records,
        .max_value = o->max_value ? o->max_value : XML_DEF_MAX_VALUE,
        .max_depth = o->max_depth ? o->max_depth : XML_DEF_MAX_DEPTH,
        .max_fields = o->max_fields ? o->max_fields : XML_DEF_MAX_FIELDS,
        .errbuf = errbuf,
        .errsz = errsz,
    };
    sl_buf_init(&rd.path);
    sl_buf_init(&rd.tmp);
    sl_buf_init(&rd.tmp2);
    sl_buf_init(&rd.pend);
    sl_buf_init(&rd.fieldmap.keys);
    sl_buf_init(&rd.countmap.keys);
    int rc = 0;
    if (!fn) {
        rc = fail(&rd, SL_ERR_INVALID, "no row callback");
        goto done;
    }
    if (o->records && (rc = split_records(&rd, o->records)))
        goto done;
    if (rd.max_fields > UINT32_MAX / 2)
        rd.max_fields = UINT32_MAX / 2;
    if (stats) {
        stats->bytes = 0;
        stats->rows = 0;
        stats->encoding = SL_ENC_UTF8;
    }
    pthread_once(&xml_once, xml_init);
    denied_url[0] = '\0';
    xmlSetGenericErrorFunc(NULL, quiet_generic);
    rd.xr = xmlReaderForIO(read_cb, NULL, &rd, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOWARNING);
    if (!rd.xr) {
        rc = SL_ERR_NOMEM;
        goto done;
    }
    xmlTextReaderSetStructuredErrorHandler(rd.xr, on_xml_error, &rd);

    int r;
    bool enc_known = false;
    while ((r = xmlTextReaderRead(rd.xr)) == 1) {
        int type = xmlTextReaderNodeType(rd.xr);
        if (!enc_known && stats) {
            /* the declared or detected encoding, when sluice has a name for
             * it (UTF-16BE, Shift_JIS...: reported as UTF-8, the output) */
            enc_known = true;
            const char *enc = (const char *)xmlTextReaderConstEncoding(rd.xr);
            enum sl_encoding e;
            if (enc && strncasecmp(enc, "utf-16", 6) == 0)
                stats->encoding = SL_ENC_UTF16;
            else if (enc && sl_encoding_parse(enc, &e) == 0)
                stats->encoding = e;
        }
        if (type == XML_READER_TYPE_ELEMENT || type == XML_READER_TYPE_END_ELEMENT)
            sl_buf_reset(&rd.pend);
        switch (type) {
        case XML_READER_TYPE_ELEMENT: {
            bool empty = xmlTextReaderIsEmptyElement(rd.xr) == 1;
            rc = elem_open(&rd);
            if (!rc && empty)
                rc = elem_close(&rd, fn, ud);
            break;
        }
        case XML_READER_TYPE_END_ELEMENT:
            if (rd.depth)
                rc = elem_close(&rd, fn, ud);
            break;
        case XML_READER_TYPE_TEXT:
        case XML_READER_TYPE_CDATA:
        case XML_READER_TYPE_WHITESPACE:
        case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
            if (rd.rec_depth)
                rc = add_text(&rd, (const char *)xmlTextReaderConstValue(rd.xr));
            break;
        case XML_READER_TYPE_ENTITY_REFERENCE: {
            const char *t = NULL;
            rc = entity_text(&rd, xmlTextReaderConstName(rd.xr), &t);
            if (!rc && rd.rec_depth)
                rc = add_text(&rd, t);
            break;
        }
        default:
            break;
        }
        if (rc)
            goto done;
    }
    if (rd.io_errno) {
        rc = fail(&rd, SL_ERR_IO, "could not read the file: %s", strerror(rd.io_errno));
        goto done;
    }
    if (r < 0 || rd.have_xerr) {
        if (rd.bytes == 0)
            rc = fail(&rd, SL_ERR_PARSE, "the file is empty");
        else if (denied_url[0])
            rc = fail(&rd, SL_ERR_PARSE, "external entities are not allowed (%s)", denied_url);
        else if (rd.have_xerr)
            rc = fail(&rd, SL_ERR_PARSE, "malformed XML at line %d, column %d: %s", rd.xerr_line,
                      rd.xerr_col, rd.xerr);
        else
            rc = fail(&rd, SL_ERR_PARSE, "malformed XML");
        goto done;
    }
    if (!rd.root_seen) {
        rc = fail(&rd, SL_ERR_PARSE, "the file holds no XML element");
        goto done;
    }
    if (rd.records && rd.rows == 0 && !rd.parent_seen && rd.ncomp > 1)
        rc = fail(&rd, SL_ERR_PARSE, "no element matches %s", rd.records);

done:
    if (rc == SL_ERR_NOMEM && errbuf && errsz && !errbuf[0])
        fail(&rd, rc, "out of memory reading XML");
    if (rd.xr)
        xmlFreeTextReader(rd.xr);
    for (size_t i = 0; i < rd.ncomp; i++)
        free(rd.comp[i]);
    free(rd.comp);
    for (size_t i = 0; i < rd.fields_cap; i++)
        free(rd.fields[i].val);
    free(rd.fields);
    free(rd.frames);
    free(rd.names);
    free(rd.values);
    free(rd.lens);
    free(rd.fieldmap.ents);
    free(rd.countmap.ents);
    sl_buf_cleanup(&rd.fieldmap.keys);
    sl_buf_cleanup(&rd.countmap.keys);
    sl_buf_cleanup(&rd.path);
    sl_buf_cleanup(&rd.tmp);
    sl_buf_cleanup(&rd.tmp2);
    sl_buf_cleanup(&rd.pend);
    return rc;
}
