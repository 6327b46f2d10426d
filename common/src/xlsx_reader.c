/*
 * The XLSX reader (reader.h): one worksheet of a workbook streamed into rows.
 *
 * An XLSX file is a zip archive of XML parts. libzip reads the archive
 * through pread(2) on the caller's descriptor; every part is inflated by
 * zip_fread straight into libxml2's xmlTextReader, so the sheet is never
 * held whole: memory is the shared strings table (capped), the styles' number
 * format kinds, one row and the parser's buffers. The parts are found the way
 * Excel finds them: _rels/.rels names the workbook, the workbook names its
 * sheets, the workbook's relationships name each sheet's part, the styles
 * and the shared strings. sheet_cell.c turns the cells into rows.
 *
 * Zip bombs: the entry count is read from the end of the file before libzip
 * opens it; while a part inflates the bytes are counted (all parts together
 * against max_inflated, each part against max_ratio times its compressed
 * size once it is over 1 MiB), and the declared sizes are checked before a
 * part is opened. XML: the options and the deny-all entity loader of the
 * XML reader (xml_reader.c), and any DTD fails the file.
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

#include <libxml/parser.h>
#include <libxml/xmlreader.h>
#include <zip.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

#define XLSX_DEF_MAX_STRINGS  (64u << 20)
#define XLSX_DEF_MAX_INFLATED (1ull << 30)
#define XLSX_DEF_MAX_ENTRIES  10000u
#define XLSX_DEF_MAX_RATIO    200u
#define XLSX_DEF_MAX_CELL     (16u << 20) /* bytes of one cell's text: max_row */
#define XLSX_RATIO_MIN_SIZE   (1u << 20)  /* the ratio applies to parts over this */
#define XLSX_MAX_SHEETS       10000u
#define XLSX_MAX_RELS         100000u
#define XLSX_MAX_XFS          (1u << 20)
#define XLSX_MAX_NUMFMTS      65536u
#define XLSX_MAX_NAME         4096u /* bytes of a part name, sheet name or attribute we keep */

struct xsheet {
    char *name, *rid;
};

struct xrel {
    char *id, *type, *target;
};

struct xnumfmt {
    uint32_t id;
    enum sl_cell_kind kind;
};

/* The part being read. */
struct xpart {
    const char *name;
    zip_file_t *zf;
    uint64_t comp, size, got;
    bool is_sheet, eof;
    /* the markup filter (xml_filter): its state and its output queue */
    int fst;
    char quote;
    char la[10];
    size_t nla;
    unsigned run;   /* '-' of a comment, '?' of a PI, ']' of a CDATA section */
    bool keep_pi;   /* the XML declaration */
    unsigned attrs; /* '=' of the current tag */
    uint64_t seen;  /* bytes through the filter */
    struct sl_buf out;
    size_t out_pos;
};

struct xlsx {
    int fd;
    uint64_t file_size;
    uint64_t file_read; /* bytes libzip read from the file */
    uint64_t pos;       /* libzip's position in the file */
    zip_error_t src_err;
    zip_t *za;
    struct sl_reader_stats *stats;
    char *errbuf;
    size_t errsz;
    int rc; /* the first failure (errbuf set), also from callbacks */

    size_t max_strings, max_entries, max_cell;
    uint64_t max_inflated;
    unsigned max_ratio;
    uint64_t inflated;

    struct xpart part;
    xmlTextReaderPtr xr;
    char xerr[400];
    int xerr_line, xerr_col;
    bool have_xerr;

    char *wb_path; /* the workbook part */
    bool date1904;
    struct xsheet *sheets;
    size_t nsheets;
    struct xrel *rels;
    size_t nrels;

    enum sl_cell_kind *xf_kind;
    size_t nxf;
    struct xnumfmt *numfmts;
    size_t nnumfmts;

    struct sl_buf sst; /* shared strings, each NUL-terminated */
    size_t *sst_off;   /* offsets in sst */
    size_t nsst, sst_cap;
    size_t sst_bytes; /* counted against max_strings */

    struct sl_buf text, text2; /* text being collected, decoding scratch */
    struct sl_sheet_rows *sr;
};

static int fail(struct xlsx *x, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct xlsx *x, int err, const char *fmt, ...)
{
    if (x->rc)
        return x->rc; /* the first failure is the one to tell */
    if (x->errbuf && x->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->errbuf, x->errsz, fmt, ap);
        va_end(ap);
    }
    x->rc = err;
    return err;
}

static int nomem(struct xlsx *x)
{
    return fail(x, SL_ERR_NOMEM, "out of memory reading the XLSX file");
}

/* Room for entry n of the array arr of *cap entries of elem bytes: arr
 * while n < *cap, else arr realloc'ed to twice *cap entries (16 when it has
 * none) and *cap updated; NULL, arr untouched, when out of memory. */
static void *grow(void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *na = realloc(arr, ncap * elem);
    if (na)
        *cap = ncap;
    return na;
}

/* grow() for entry n of a list that part may hold at most max of (what: the
 * entries, for the message); NULL, arr untouched and the file failed, when
 * the list is full ("xl/workbook.xml: more than 10000 sheets") or memory
 * ran out. */
static void *list_room(struct xlsx *x, void *arr, size_t n, size_t *cap, size_t elem,
                       const char *part, size_t max, const char *what)
{
    if (n >= max) {
        fail(x, SL_ERR_LIMIT, "%s: more than %zu %s", part, max, what);
        return NULL;
    }
    void *na = grow(arr, n, cap, elem);
    if (!na)
        nomem(x);
    return na;
}

/* ---- the archive ---- */

/* A libzip source over pread(2) on the caller's descriptor: the descriptor
 * is neither duplicated nor moved. */
static zip_int64_t fd_source(void *ud, void *data, zip_uint64_t len, zip_source_cmd_t cmd)
{
    struct xlsx *x = ud;
    uint64_t pos = x->pos;
    switch (cmd) {
    case ZIP_SOURCE_OPEN:
        x->pos = 0;
        return 0;
    case ZIP_SOURCE_READ: {
        if (len > x->file_size - pos)
            len = x->file_size - pos;
        size_t done = 0;
        while (done < len) {
            ssize_t n = pread(x->fd, (char *)data + done, len - done, (off_t)(pos + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                zip_error_set(&x->src_err, ZIP_ER_READ, errno);
                return -1;
            }
            if (n == 0)
                break;
            done += (size_t)n;
        }
        x->pos = pos + done;
        x->file_read += done;
        return (zip_int64_t)done;
    }
    case ZIP_SOURCE_CLOSE:
    case ZIP_SOURCE_FREE:
        return 0;
    case ZIP_SOURCE_STAT: {
        zip_stat_t *st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, len, &x->src_err);
        if (!st)
            return -1;
        zip_stat_init(st);
        st->size = x->file_size;
        st->valid |= ZIP_STAT_SIZE;
        return sizeof(*st);
    }
    case ZIP_SOURCE_ERROR:
        return zip_error_to_data(&x->src_err, data, len);
    case ZIP_SOURCE_SEEK: {
        zip_int64_t np = zip_source_seek_compute_offset(pos, x->file_size, data, len, &x->src_err);
        if (np < 0)
            return -1;
        x->pos = (uint64_t)np;
        return 0;
    }
    case ZIP_SOURCE_TELL:
        return (zip_int64_t)pos;
    case ZIP_SOURCE_SUPPORTS:
        return zip_source_make_command_bitmap(
            ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR,
            ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL, ZIP_SOURCE_SUPPORTS, -1);
    default:
        zip_error_set(&x->src_err, ZIP_ER_OPNOTSUPP, 0);
        return -1;
    }
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    return 0;
}

static uint16_t le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* The entry count of the archive's end of central directory record (zip64
 * when it says so), read before libzip allocates anything for the entries.
 * 0 and *count, or -1 when there is no such record (libzip then says why). */
static int eocd_entries(struct xlsx *x, uint64_t *count)
{
    unsigned char tail[22 + 65535];
    size_t n = x->file_size < sizeof(tail) ? (size_t)x->file_size : sizeof(tail);
    uint64_t start = x->file_size - n;
    if (n < 22 || pread_full(x->fd, tail, n, start))
        return -1;
    for (size_t i = n - 22 + 1; i-- > 0;) {
        if (memcmp(tail + i, "PK\x05\x06", 4) != 0)
            continue;
        uint64_t c = le16(tail + i + 10);
        if (c == 0xFFFF && i >= 20 && memcmp(tail + i - 20, "PK\x06\x07", 4) == 0) {
            uint64_t z64 = le64(tail + i - 20 + 8);
            unsigned char rec[56];
            if (z64 <= x->file_size - sizeof(rec) && !pread_full(x->fd, rec, sizeof(rec), z64) &&
                memcmp(rec, "PK\x06\x06", 4) == 0)
                c = le64(rec + 32);
        }
        *count = c;
        return 0;
    }
    return -1;
}

/* Opens the part name for reading; *found false (and 0) when the archive
 * has none. Checks the declared sizes against the limits first. */
static int part_open(struct xlsx *x, const char *name, bool *found)
{
    *found = false;
    zip_int64_t idx = zip_name_locate(x->za, name, ZIP_FL_NOCASE);
    if (idx < 0)
        return 0;
    *found = true;
    zip_stat_t st;
    if (zip_stat_index(x->za, (zip_uint64_t)idx, 0, &st) != 0)
        return fail(x, SL_ERR_PARSE, "not a valid XLSX file: %s: %s", name,
                    zip_error_strerror(zip_get_error(x->za)));
    uint64_t comp = (st.valid & ZIP_STAT_COMP_SIZE) ? st.comp_size : 0;
    uint64_t size = (st.valid & ZIP_STAT_SIZE) ? st.size : 0;
    if (size > x->max_inflated - x->inflated)
        return fail(x, SL_ERR_LIMIT,
                    "%s declares %llu bytes: the archive would inflate to more than %llu bytes "
                    "(a zip bomb?)",
                    name, (unsigned long long)size, (unsigned long long)x->max_inflated);
    if (size > XLSX_RATIO_MIN_SIZE && size / x->max_ratio > comp)
        return fail(x, SL_ERR_LIMIT,
                    "%s declares %llu bytes from %llu compressed: more than %u times its "
                    "compressed size (a zip bomb?)",
                    name, (unsigned long long)size, (unsigned long long)comp, x->max_ratio);
    struct sl_buf out = x->part.out; /* reused */
    sl_buf_reset(&out);
    x->part = (struct xpart){.name = name, .comp = comp, .size = size, .out = out};
    x->part.zf = zip_fopen_index(x->za, (zip_uint64_t)idx, 0);
    if (!x->part.zf) {
        zip_error_t *ze = zip_get_error(x->za);
        if (zip_error_code_zip(ze) == ZIP_ER_NOPASSWD ||
            zip_error_code_zip(ze) == ZIP_ER_WRONGPASSWD)
            return fail(x, SL_ERR_PARSE, "%s is encrypted", name);
        return fail(x, SL_ERR_PARSE, "not a valid XLSX file: cannot open %s: %s", name,
                    zip_error_strerror(ze));
    }
    return 0;
}

/* The markup filter between zip_fread and libxml2. libxml2's text reader
 * builds every node it parses before it hands out the next element, so a
 * run of comments, processing instructions or CDATA sections (a few bytes
 * each, nothing compresses better) would become millions of nodes in
 * memory at once. No spreadsheet part needs them: comments and PIs (but the
 * XML declaration) are dropped, a CDATA section becomes the same text
 * escaped, a DTD or any other <! declaration fails the part, and a tag with
 * more than XLSX_MAX_ATTRS attributes fails it too. What libxml2 then sees
 * is elements and text, which it merges into one node per run. */
enum { F_TEXT, F_LT, F_TAG, F_TAGQ, F_COMMENT, F_PI, F_CDATA };
#define XLSX_MAX_ATTRS 1024

static int filter_put(struct xlsx *x, const char *s, size_t n)
{
    return sl_buf_append(&x->part.out, s, n) ? nomem(x) : 0;
}

static int filter_byte(struct xlsx *x, unsigned char c);

/* After '<' and x->part.la: what the markup is. */
static int filter_lt(struct xlsx *x)
{
    struct xpart *p = &x->part;
    static const char comment[] = "!--", cdata[] = "![CDATA[";
    if (p->la[0] == '?') {
        /* a PI: kept only as the XML declaration, first in the part */
        p->keep_pi = p->seen - p->nla - 1 == 0 || p->seen - p->nla - 1 == 3;
        p->fst = F_PI;
        p->run = 0;
        return p->keep_pi ? filter_put(x, "<?", 2) : 0;
    }
    if (p->la[0] == '!') {
        if (p->nla <= 3 && memcmp(p->la, comment, p->nla) == 0) {
            if (p->nla == 3) {
                p->fst = F_COMMENT;
                p->run = 0;
            }
            return 0;
        }
        if (p->nla <= 8 && memcmp(p->la, cdata, p->nla) == 0) {
            if (p->nla == 8) {
                p->fst = F_CDATA;
                p->run = 0;
            }
            return 0;
        }
        return fail(x, SL_ERR_PARSE,
                    "%s: a DTD or declaration (<!%c...) is not allowed in an "
                    "XLSX part",
                    p->name, p->nla > 1 ? p->la[1] : ' ');
    }
    /* an element tag: replay the bytes through the tag state */
    p->fst = F_TAG;
    p->attrs = 0;
    int rc = filter_put(x, "<", 1);
    size_t n = p->nla;
    p->nla = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = filter_byte(x, (unsigned char)p->la[i]);
    return rc;
}

static int filter_byte(struct xlsx *x, unsigned char c)
{
    struct xpart *p = &x->part;
    char ch = (char)c;
    switch (p->fst) {
    case F_TEXT:
        if (c == '<') {
            p->fst = F_LT;
            p->nla = 0;
            return 0;
        }
        return filter_put(x, &ch, 1);
    case F_LT:
        p->la[p->nla++] = ch;
        if (p->la[0] == '!' && p->nla < 8 && (p->nla < 3 || p->la[1] == '['))
            return 0; /* "<!-" or "<![CDAT": more to see */
        return filter_lt(x);
    case F_TAG:
        if (c == '"' || c == '\'') {
            p->fst = F_TAGQ;
            p->quote = ch;
        } else if (c == '=' && ++p->attrs > XLSX_MAX_ATTRS) {
            return fail(x, SL_ERR_LIMIT, "%s: an element with more than %d attributes", p->name,
                        XLSX_MAX_ATTRS);
        } else if (c == '>') {
            p->fst = F_TEXT;
        }
        return filter_put(x, &ch, 1);
    case F_TAGQ:
        if (ch == p->quote)
            p->fst = F_TAG;
        return filter_put(x, &ch, 1);
    case F_COMMENT:
        if (c == '-')
            p->run++;
        else if (c == '>' && p->run >= 2)
            p->fst = F_TEXT;
        else
            p->run = 0;
        return 0;
    case F_PI: {
        bool end = c == '>' && p->run;
        p->run = c == '?';
        if (end)
            p->fst = F_TEXT;
        return p->keep_pi ? filter_put(x, &ch, 1) : 0;
    }
    case F_CDATA:
        if (c == ']') {
            p->run++;
            return 0;
        }
        if (c == '>' && p->run >= 2) {
            p->run -= 2;
            p->fst = F_TEXT;
        }
        for (; p->run; p->run--) /* as a reference, so that no "]]>" forms */
            if (filter_put(x, "&#93;", 5))
                return x->rc;
        if (p->fst == F_TEXT)
            return 0;
        if (c == '&')
            return filter_put(x, "&amp;", 5);
        if (c == '<')
            return filter_put(x, "&lt;", 4);
        if (c == '>')
            return filter_put(x, "&gt;", 4);
        return filter_put(x, &ch, 1);
    default:
        return 0;
    }
}

static int filter(struct xlsx *x, const unsigned char *in, size_t n)
{
    struct xpart *p = &x->part;
    if (p->seen == 0 && n >= 2 &&
        ((in[0] == 0xFF && in[1] == 0xFE) || (in[0] == 0xFE && in[1] == 0xFF) || in[0] == 0 ||
         in[1] == 0))
        return fail(x, SL_ERR_PARSE, "%s: UTF-16 XML parts are not supported", p->name);
    for (size_t i = 0; i < n; i++) {
        p->seen++;
        if (filter_byte(x, in[i]))
            return x->rc ? x->rc : SL_ERR_NOMEM;
    }
    return 0;
}

/* libxml2's input: the part inflating, counted against the limits, through
 * the markup filter. */
static int part_read(void *ctx, char *buf, int len)
{
    struct xlsx *x = ctx;
    struct xpart *p = &x->part;
    if (x->rc)
        return -1;
    while (p->out_pos == p->out.len) {
        if (p->eof)
            return 0;
        sl_buf_reset(&p->out);
        p->out_pos = 0;
        unsigned char in[16384];
        zip_int64_t n = zip_fread(p->zf, in, sizeof(in));
        if (n < 0) {
            fail(x, SL_ERR_PARSE, "%s cannot be inflated: %s (the file is truncated or corrupt)",
                 p->name, zip_file_strerror(p->zf));
            return -1;
        }
        if (n == 0) {
            p->eof = true;
            return 0;
        }
        p->got += (uint64_t)n;
        x->inflated += (uint64_t)n;
        if (x->inflated > x->max_inflated) {
            fail(x, SL_ERR_LIMIT, "the archive inflates to more than %llu bytes (a zip bomb?)",
                 (unsigned long long)x->max_inflated);
            return -1;
        }
        if (p->got > XLSX_RATIO_MIN_SIZE && p->got / x->max_ratio > p->comp) {
            fail(x, SL_ERR_LIMIT,
                 "%s inflates to more than %u times its compressed size of %llu bytes (a zip "
                 "bomb?)",
                 p->name, x->max_ratio, (unsigned long long)p->comp);
            return -1;
        }
        if (x->stats && p->is_sheet)
            x->stats->bytes = x->file_read < x->file_size ? x->file_read : x->file_size;
        if (filter(x, in, (size_t)n))
            return -1;
    }
    size_t k = p->out.len - p->out_pos;
    if (k > (size_t)len)
        k = (size_t)len;
    memcpy(buf, p->out.data + p->out_pos, k);
    p->out_pos += k;
    return (int)k;
}

/* ---- XML over a part ---- */

static void quiet_generic(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static void on_xml_error(void *ud, xmlErrorPtr e)
{
    struct xlsx *x = ud;
    if (x->have_xerr || !e || e->level < XML_ERR_ERROR)
        return;
    x->have_xerr = true;
    snprintf(x->xerr, sizeof(x->xerr), "%s", e->message ? e->message : "malformed XML");
    size_t n = strlen(x->xerr);
    while (n && (x->xerr[n - 1] == '\n' || x->xerr[n - 1] == ' '))
        x->xerr[--n] = '\0';
    x->xerr_line = e->line;
    x->xerr_col = e->int2;
}

static pthread_once_t xlsx_once = PTHREAD_ONCE_INIT;

static int ignore_row(void *ud, const struct sl_row *row)
{
    (void)ud;
    (void)row;
    return 0;
}

/* The XML reader installs libxml2's process-wide deny-all entity loader the
 * first time it runs: run it once on an empty input, so that both readers
 * share that one loader (and its error messages) whichever runs first. */
static void xlsx_init(void)
{
    xmlInitParser();
    int p[2];
    if (pipe(p) == 0) {
        close(p[1]);
        char err[64];
        sl_xml_read_fd(p[0], NULL, ignore_row, NULL, NULL, err, sizeof(err)); /* "empty" */
        close(p[0]);
    }
}

static int xml_begin(struct xlsx *x)
{
    x->have_xerr = false;
    xmlSetGenericErrorFunc(NULL, quiet_generic);
    x->xr = xmlReaderForIO(part_read, NULL, x, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOWARNING);
    if (!x->xr)
        return nomem(x);
    xmlTextReaderSetStructuredErrorHandler(x->xr, on_xml_error, x);
    return 0;
}

static void part_close(struct xlsx *x)
{
    if (x->xr) {
        xmlFreeTextReader(x->xr);
        x->xr = NULL;
    }
    if (x->part.zf) {
        zip_fclose(x->part.zf);
        x->part.zf = NULL;
    }
}

/* The next node of the part: 1, 0 at its end, -1 on failure (x->rc set). */
static int xml_next(struct xlsx *x)
{
    int r = xmlTextReaderRead(x->xr);
    if (x->rc)
        return -1;
    if (r < 0 || x->have_xerr) {
        if (x->have_xerr)
            fail(x, SL_ERR_PARSE, "%s: malformed XML at line %d, column %d: %s", x->part.name,
                 x->xerr_line, x->xerr_col, x->xerr);
        else
            fail(x, SL_ERR_PARSE, "%s: malformed XML", x->part.name);
        return -1;
    }
    if (r == 1) {
        int t = xmlTextReaderNodeType(x->xr);
        if (t == XML_READER_TYPE_DOCUMENT_TYPE || t == XML_READER_TYPE_ENTITY_REFERENCE ||
            t == XML_READER_TYPE_ENTITY) {
            fail(x, SL_ERR_PARSE, "%s: a DTD or entity is not allowed in an XLSX part",
                 x->part.name);
            return -1;
        }
    }
    return r;
}

/* The value of the current element's attribute whose local name is local
 * (any namespace when ns_sub is NULL, else one whose namespace URI contains
 * ns_sub); NULL when absent. Valid until the next node. */
static const char *attr(struct xlsx *x, const char *local, const char *ns_sub)
{
    const char *v = NULL;
    if (xmlTextReaderMoveToFirstAttribute(x->xr) != 1)
        return NULL;
    do {
        const char *ln = (const char *)xmlTextReaderConstLocalName(x->xr);
        if (!ln || strcmp(ln, local) != 0)
            continue;
        if (ns_sub) {
            const char *ns = (const char *)xmlTextReaderConstNamespaceUri(x->xr);
            if (!ns || !strstr(ns, ns_sub))
                continue;
        } else if (xmlTextReaderConstPrefix(x->xr) &&
                   strcmp((const char *)xmlTextReaderConstPrefix(x->xr), "xml") == 0) {
            continue;
        }
        v = (const char *)xmlTextReaderConstValue(x->xr);
        break;
    } while (xmlTextReaderMoveToNextAttribute(x->xr) == 1);
    xmlTextReaderMoveToElement(x->xr);
    return v;
}

static const char *local_name(struct xlsx *x)
{
    const char *n = (const char *)xmlTextReaderConstLocalName(x->xr);
    return n ? n : "";
}

static bool is_text_node(int t)
{
    return t == XML_READER_TYPE_TEXT || t == XML_READER_TYPE_CDATA ||
           t == XML_READER_TYPE_WHITESPACE || t == XML_READER_TYPE_SIGNIFICANT_WHITESPACE;
}

/* Appends the current text node to b, which may hold at most max bytes. */
static int take_text(struct xlsx *x, struct sl_buf *b, size_t max, const char *what)
{
    const char *s = (const char *)xmlTextReaderConstValue(x->xr);
    size_t n = s ? strlen(s) : 0;
    if (n > max || b->len > max - n)
        return fail(x, SL_ERR_LIMIT, "%s: %s is longer than %zu bytes", x->part.name, what, max);
    return sl_buf_append(b, s ? s : "", n) ? nomem(x) : 0;
}

/* ---- relationships and paths ---- */

static bool type_is(const char *type, const char *what)
{
    const char *slash = type ? strrchr(type, '/') : NULL;
    return slash && strcmp(slash + 1, what) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The part name a relationship target of source part base names: relative
 * to base's folder, or absolute ("/xl/x.xml"), "." and ".." resolved, %XX
 * decoded. Caller frees; NULL when out of memory. */
static char *resolve(const char *base, const char *target)
{
    struct sl_buf b = SL_BUF_INIT;
    if (target[0] != '/') {
        const char *slash = strrchr(base, '/');
        if (slash)
            sl_buf_append(&b, base, (size_t)(slash - base + 1));
    }
    for (const char *p = target; *p; p++) {
        int h, l;
        if (*p == '%' && (h = hexval(p[1])) >= 0 && (l = hexval(p[2])) >= 0) {
            sl_buf_putc(&b, (char)(h * 16 + l));
            p += 2;
        } else {
            sl_buf_putc(&b, *p == '\\' ? '/' : *p);
        }
    }
    if (!b.data) {
        sl_buf_cleanup(&b);
        return strdup("");
    }
    /* normalize the segments in place */
    char *out = malloc(b.len + 1);
    if (!out) {
        sl_buf_cleanup(&b);
        return NULL;
    }
    size_t n = 0;
    char *save = NULL;
    for (char *seg = strtok_r(b.data, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            continue;
        }
        if (n)
            out[n++] = '/';
        size_t sl = strlen(seg);
        memcpy(out + n, seg, sl);
        n += sl;
    }
    out[n] = '\0';
    sl_buf_cleanup(&b);
    return out;
}

/* "xl/_rels/workbook.xml.rels" for "xl/workbook.xml"; caller frees. */
static char *rels_path(const char *part)
{
    const char *slash = strrchr(part, '/');
    struct sl_buf b = SL_BUF_INIT;
    if (slash)
        sl_buf_append(&b, part, (size_t)(slash - part + 1));
    sl_buf_printf(&b, "_rels/%s.rels", slash ? slash + 1 : part);
    return sl_buf_steal(&b);
}

static void free_rels(struct xlsx *x)
{
    for (size_t i = 0; i < x->nrels; i++) {
        free(x->rels[i].id);
        free(x->rels[i].type);
        free(x->rels[i].target);
    }
    free(x->rels);
    x->rels = NULL;
    x->nrels = 0;
}

static char *dup_capped(const char *s)
{
    return strndup(s ? s : "", XLSX_MAX_NAME);
}

/* Reads the relationships part of source part base into x->rels (none
 * when the archive has no such part). */
static int read_rels(struct xlsx *x, const char *base)
{
    free_rels(x);
    char *path = rels_path(base);
    if (!path)
        return nomem(x);
    bool found;
    int rc = part_open(x, path, &found);
    if (rc || !found)
        goto out;
    if ((rc = xml_begin(x)))
        goto out;
    size_t cap = 0;
    int r;
    while ((r = xml_next(x)) == 1) {
        if (xmlTextReaderNodeType(x->xr) != XML_READER_TYPE_ELEMENT ||
            xmlTextReaderDepth(x->xr) != 1 || strcmp(local_name(x), "Relationship") != 0)
            continue;
        const char *mode = attr(x, "TargetMode", NULL);
        if (mode && strcmp(mode, "External") == 0)
            continue;
        struct xrel *nr = list_room(x, x->rels, x->nrels, &cap, sizeof(*nr), path, XLSX_MAX_RELS,
                                    "relationships");
        if (!nr) {
            rc = x->rc;
            goto out;
        }
        x->rels = nr;
        struct xrel *rel = &x->rels[x->nrels];
        rel->id = dup_capped(attr(x, "Id", NULL));
        rel->type = dup_capped(attr(x, "Type", NULL));
        const char *t = attr(x, "Target", NULL);
        rel->target = t ? resolve(base, t) : NULL;
        x->nrels++;
        if (!rel->id || !rel->type || (t && !rel->target)) {
            rc = nomem(x);
            goto out;
        }
    }
    rc = r < 0 ? x->rc : 0;
out:
    part_close(x);
    free(path);
    return rc ? rc : x->rc;
}

static const struct xrel *rel_by_type(const struct xlsx *x, const char *what)
{
    for (size_t i = 0; i < x->nrels; i++)
        if (type_is(x->rels[i].type, what) && x->rels[i].target)
            return &x->rels[i];
    return NULL;
}

static const struct xrel *rel_by_id(const struct xlsx *x, const char *id)
{
    for (size_t i = 0; i < x->nrels; i++)
        if (strcmp(x->rels[i].id, id) == 0)
            return &x->rels[i];
    return NULL;
}

/* ---- the workbook ---- */

static bool xsd_true(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

static int read_workbook(struct xlsx *x)
{
    bool found;
    int rc = part_open(x, x->wb_path, &found);
    if (rc)
        return rc;
    if (!found) {
        if (zip_name_locate(x->za, "mimetype", 0) >= 0 ||
            zip_name_locate(x->za, "content.xml", 0) >= 0)
            return fail(x, SL_ERR_PARSE,
                        "not an XLSX file: an OpenDocument file (.ods?); save it as XLSX");
        return fail(x, SL_ERR_PARSE, "not an XLSX file: the zip archive has no workbook (%s)",
                    x->wb_path);
    }
    if ((rc = xml_begin(x)))
        goto out;
    size_t cap = 0;
    int r;
    while ((r = xml_next(x)) == 1) {
        if (xmlTextReaderNodeType(x->xr) != XML_READER_TYPE_ELEMENT)
            continue;
        int depth = xmlTextReaderDepth(x->xr);
        const char *ln = local_name(x);
        if (depth == 1 && strcmp(ln, "workbookPr") == 0) {
            x->date1904 = xsd_true(attr(x, "date1904", NULL));
        } else if (depth == 2 && strcmp(ln, "sheet") == 0) {
            struct xsheet *ns = list_room(x, x->sheets, x->nsheets, &cap, sizeof(*ns), x->wb_path,
                                          XLSX_MAX_SHEETS, "sheets");
            if (!ns) {
                rc = x->rc;
                goto out;
            }
            x->sheets = ns;
            struct xsheet *sh = &x->sheets[x->nsheets++];
            sh->name = dup_capped(attr(x, "name", NULL));
            sh->rid = dup_capped(attr(x, "id", "relationships"));
            if (!sh->name || !sh->rid) {
                rc = nomem(x);
                goto out;
            }
        }
    }
    rc = r < 0 ? x->rc : 0;
out:
    part_close(x);
    return rc ? rc : x->rc;
}

/* ---- styles ---- */

static int numfmt_cmp(const void *a, const void *b)
{
    uint32_t x = ((const struct xnumfmt *)a)->id, y = ((const struct xnumfmt *)b)->id;
    return x < y ? -1 : x > y;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    if (!s)
        return false;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return false;
    }
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    if (*s)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int read_styles(struct xlsx *x, const char *path)
{
    bool found;
    int rc = part_open(x, path, &found);
    if (rc || !found)
        return rc;
    uint32_t *xf_fmt = NULL;
    size_t xf_cap = 0, fmt_cap = 0;
    if ((rc = xml_begin(x)))
        goto out;
    int r;
    bool in_numfmts = false, in_xfs = false;
    while ((r = xml_next(x)) == 1) {
        int type = xmlTextReaderNodeType(x->xr);
        int depth = xmlTextReaderDepth(x->xr);
        const char *ln = local_name(x);
        if (type == XML_READER_TYPE_END_ELEMENT && depth == 1) {
            in_numfmts = in_xfs = false;
            continue;
        }
        if (type != XML_READER_TYPE_ELEMENT)
            continue;
        bool empty = xmlTextReaderIsEmptyElement(x->xr) == 1;
        if (depth == 1) {
            in_numfmts = !empty && strcmp(ln, "numFmts") == 0;
            in_xfs = !empty && strcmp(ln, "cellXfs") == 0;
        } else if (depth == 2 && in_numfmts && strcmp(ln, "numFmt") == 0) {
            uint32_t id;
            if (!parse_u32(attr(x, "numFmtId", NULL), &id))
                continue;
            const char *code = attr(x, "formatCode", NULL); /* used before the next attr() */
            if (!code)
                continue;
            struct xnumfmt *nf = list_room(x, x->numfmts, x->nnumfmts, &fmt_cap, sizeof(*nf), path,
                                           XLSX_MAX_NUMFMTS, "number formats");
            if (!nf) {
                rc = x->rc;
                goto out;
            }
            x->numfmts = nf;
            x->numfmts[x->nnumfmts++] =
                (struct xnumfmt){.id = id, .kind = sl_sheet_numfmt_kind(id, code)};
        } else if (depth == 2 && in_xfs && strcmp(ln, "xf") == 0) {
            uint32_t id = 0;
            parse_u32(attr(x, "numFmtId", NULL), &id);
            uint32_t *nx = list_room(x, xf_fmt, x->nxf, &xf_cap, sizeof(*nx), path, XLSX_MAX_XFS,
                                     "cell formats");
            if (!nx) {
                rc = x->rc;
                goto out;
            }
            xf_fmt = nx;
            xf_fmt[x->nxf++] = id;
        }
    }
    if (r < 0) {
        rc = x->rc;
        goto out;
    }
    /* the kind of each cell format; a custom code wins over a built-in id
     * (the last one given for an id) */
    if (x->nnumfmts)
        qsort(x->numfmts, x->nnumfmts, sizeof(*x->numfmts), numfmt_cmp);
    x->xf_kind = malloc((x->nxf ? x->nxf : 1) * sizeof(*x->xf_kind));
    if (!x->xf_kind) {
        rc = nomem(x);
        goto out;
    }
    for (size_t i = 0; i < x->nxf; i++) {
        struct xnumfmt key = {.id = xf_fmt[i]};
        const struct xnumfmt *f =
            x->nnumfmts ? bsearch(&key, x->numfmts, x->nnumfmts, sizeof(*x->numfmts), numfmt_cmp)
                        : NULL;
        x->xf_kind[i] = f ? f->kind : sl_sheet_numfmt_kind(xf_fmt[i], NULL);
    }
out:
    free(xf_fmt);
    part_close(x);
    return rc ? rc : x->rc;
}

/* ---- strings ---- */

/* The UTF-16 unit of an "_xHHHH_" escape at s, or -1. */
static int32_t x_escape(const char *s, size_t n)
{
    if (n < 7 || s[0] != '_' || (s[1] != 'x' && s[1] != 'X') || s[6] != '_')
        return -1;
    int32_t v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes the _xHHHH_ escapes of Office strings (characters XML cannot
 * hold, "_x000D_" for CR) from s into out; a NUL or a lone surrogate
 * becomes U+FFFD. Returns 0 or SL_ERR_NOMEM. */
static int decode_x(const char *s, size_t n, struct sl_buf *out)
{
    sl_buf_reset(out);
    size_t i = 0;
    int rc = 0;
    while (i < n) {
        const char *u = memchr(s + i, '_', n - i);
        if (!u) {
            rc |= sl_buf_append(out, s + i, n - i);
            break;
        }
        size_t at = (size_t)(u - s);
        rc |= sl_buf_append(out, s + i, at - i);
        int32_t c = x_escape(s + at, n - at);
        if (c < 0) {
            rc |= sl_buf_putc(out, '_');
            i = at + 1;
            continue;
        }
        i = at + 7;
        uint32_t cp = (uint32_t)c;
        if (c >= 0xD800 && c <= 0xDBFF) {
            int32_t lo = x_escape(s + i, n - i);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + (((uint32_t)c - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                i += 7;
            } else {
                cp = 0xFFFD;
            }
        } else if ((c >= 0xDC00 && c <= 0xDFFF) || c == 0) {
            cp = 0xFFFD;
        }
        rc |= sl_buf_put_utf8(out, cp);
    }
    if (rc || (!out->data && sl_buf_puts(out, "")))
        return SL_ERR_NOMEM;
    return out->data ? 0 : SL_ERR_NOMEM;
}

static int sst_add(struct xlsx *x, const char *s, size_t n)
{
    if (decode_x(s, n, &x->text2))
        return nomem(x);
    size_t len = x->text2.len;
    size_t cost = len + 1 + sizeof(size_t);
    if (cost > x->max_strings - x->sst_bytes)
        return fail(x, SL_ERR_LIMIT,
                    "%s: the shared strings are larger than %zu bytes (string %zu)", x->part.name,
                    x->max_strings, x->nsst + 1);
    x->sst_bytes += cost;
    size_t *no = grow(x->sst_off, x->nsst, &x->sst_cap, sizeof(*no));
    if (!no)
        return nomem(x);
    x->sst_off = no;
    x->sst_off[x->nsst++] = x->sst.len;
    if (sl_buf_append(&x->sst, x->text2.data, len) || sl_buf_putc(&x->sst, '\0'))
        return nomem(x);
    return 0;
}

/* Reads the shared strings: the text of each <si>, its <t> or the <t> of
 * its rich text runs <r>, never of its phonetic runs <rPh>. */
static int read_strings(struct xlsx *x, const char *path)
{
    bool found;
    int rc = part_open(x, path, &found);
    if (rc || !found)
        return rc;
    if ((rc = xml_begin(x)))
        goto out;
    int r;
    bool in_si = false, in_run = false, in_t = false;
    while ((r = xml_next(x)) == 1) {
        int type = xmlTextReaderNodeType(x->xr);
        int depth = xmlTextReaderDepth(x->xr);
        if (type == XML_READER_TYPE_ELEMENT) {
            const char *ln = local_name(x);
            bool empty = xmlTextReaderIsEmptyElement(x->xr) == 1;
            if (depth == 1 && strcmp(ln, "si") == 0) {
                sl_buf_reset(&x->text);
                in_si = !empty;
                if (empty && (rc = sst_add(x, "", 0)))
                    goto out;
            } else if (in_si && depth == 2 && strcmp(ln, "r") == 0) {
                in_run = !empty;
            } else if (in_si && !empty && strcmp(ln, "t") == 0 &&
                       (depth == 2 || (depth == 3 && in_run))) {
                in_t = true;
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            if (depth == 1 && in_si) {
                in_si = in_run = in_t = false;
                if ((rc = sst_add(x, x->text.data ? x->text.data : "", x->text.len)))
                    goto out;
            } else if (depth == 2) {
                in_run = false;
                in_t = false;
            } else if (depth == 3) {
                in_t = false;
            }
        } else if (in_t && is_text_node(type)) {
            if ((rc = take_text(x, &x->text, x->max_strings, "a shared string")))
                goto out;
        }
    }
    rc = r < 0 ? x->rc : 0;
out:
    part_close(x);
    return rc ? rc : x->rc;
}

/* ---- the sheet ---- */

/* Parses "B12" (letters, then optional digits): 0-based column. */
static bool parse_ref(const char *s, uint32_t *col)
{
    uint64_t c = 0;
    size_t n = 0;
    for (; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'); s++, n++) {
        c = c * 26 + (uint64_t)((*s | 0x20) - 'a' + 1);
        if (c > 16384)
            return false;
    }
    if (n == 0)
        return false;
    while (*s >= '0' && *s <= '9')
        s++;
    if (*s)
        return false;
    *col = (uint32_t)(c - 1);
    return true;
}

/* A number as the XML schema spells it: [+-]digits[.digits][e[+-]digits]. */
static bool parse_number(const char *s, double *out)
{
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++)
            digits++;
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    const char *end = p;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p)
        return false;
    char *e;
    double v = strtod(s, &e);
    if (e != end)
        return false;
    *out = v;
    return true;
}

struct xcell {
    uint32_t col;
    char type[12]; /* the t attribute ("" for n) */
    uint32_t style;
    bool have_v, have_is;
};

/* The end of a cell: its value, as sheet_cell.c tells, to the row. */
static int cell_end(struct xlsx *x, const struct xcell *c, struct sl_buf *v, struct sl_buf *is)
{
    const char *t = c->type;
    const char *val = v->data ? v->data : "";
    char q[SL_SHEET_EXCERPT_MAX];
    if (strcmp(t, "inlineStr") == 0) {
        if (!c->have_is)
            return 0;
        if (decode_x(is->data ? is->data : "", is->len, &x->text2))
            return nomem(x);
        return sl_sheet_rows_cell(x->sr, c->col, x->text2.data, x->text2.len);
    }
    if (!c->have_v || v->len == 0)
        return 0; /* no value: an empty (styled) cell, a formula never calculated (<v/>) */
    if (t[0] == '\0' || strcmp(t, "n") == 0) {
        double d;
        if (!parse_number(val, &d)) {
            sl_sheet_rows_bad(x->sr, c->col, "'%s' is not a number",
                              sl_sheet_excerpt(val, strlen(val), q));
            return sl_sheet_rows_cell(x->sr, c->col, val, v->len);
        }
        enum sl_cell_kind kind = c->style < x->nxf ? x->xf_kind[c->style] : SL_CELL_NUMBER;
        char out[SL_SHEET_NUM_MAX];
        size_t n = sl_sheet_cell_text(d, x->date1904, kind, out);
        return sl_sheet_rows_cell(x->sr, c->col, out, n);
    }
    if (strcmp(t, "s") == 0) {
        uint32_t idx;
        if (!parse_u32(val, &idx)) {
            sl_sheet_rows_bad(x->sr, c->col, "'%s' is no shared string index",
                              sl_sheet_excerpt(val, strlen(val), q));
            return 0;
        }
        if (idx >= x->nsst) {
            sl_sheet_rows_bad(x->sr, c->col, "shared string %u does not exist (the table has %zu)",
                              (unsigned)idx, x->nsst);
            return 0;
        }
        size_t off = x->sst_off[idx];
        size_t end = idx + 1 < x->nsst ? x->sst_off[idx + 1] - 1 : x->sst.len - 1;
        return sl_sheet_rows_cell(x->sr, c->col, x->sst.data + off, end - off);
    }
    if (strcmp(t, "b") == 0) {
        const char *b = NULL;
        if (strcmp(val, "1") == 0 || strcmp(val, "true") == 0)
            b = "true";
        else if (strcmp(val, "0") == 0 || strcmp(val, "false") == 0)
            b = "false";
        if (!b) {
            sl_sheet_rows_bad(x->sr, c->col, "'%s' is not a boolean (0 or 1)",
                              sl_sheet_excerpt(val, strlen(val), q));
            return sl_sheet_rows_cell(x->sr, c->col, val, v->len);
        }
        return sl_sheet_rows_cell(x->sr, c->col, b, strlen(b));
    }
    if (strcmp(t, "str") == 0) {
        if (decode_x(val, v->len, &x->text2))
            return nomem(x);
        return sl_sheet_rows_cell(x->sr, c->col, x->text2.data, x->text2.len);
    }
    if (strcmp(t, "e") == 0 || strcmp(t, "d") == 0)
        return sl_sheet_rows_cell(x->sr, c->col, val, v->len);
    sl_sheet_rows_bad(x->sr, c->col, "unknown cell type '%s'", t);
    return 0;
}

static int read_sheet(struct xlsx *x, const char *path)
{
    bool found;
    int rc = part_open(x, path, &found);
    if (rc)
        return rc;
    if (!found)
        return fail(x, SL_ERR_PARSE, "not a valid XLSX file: the sheet's part %s is missing", path);
    x->part.is_sheet = true;
    struct sl_buf v = SL_BUF_INIT, is = SL_BUF_INIT;
    if ((rc = xml_begin(x)))
        goto out;
    enum { NONE, IN_V, IN_T } collect = NONE;
    bool in_data = false, in_cell = false, in_is = false, in_run = false;
    uint32_t last_col = UINT32_MAX, next_row = 1;
    struct xcell cell = {0};
    int r;
    while ((r = xml_next(x)) == 1) {
        int type = xmlTextReaderNodeType(x->xr);
        int depth = xmlTextReaderDepth(x->xr);
        if (type == XML_READER_TYPE_ELEMENT) {
            const char *ln = local_name(x);
            bool empty = xmlTextReaderIsEmptyElement(x->xr) == 1;
            if (depth == 1 && strcmp(ln, "sheetData") == 0) {
                in_data = !empty;
            } else if (in_data && depth == 2 && strcmp(ln, "row") == 0) {
                const char *ra = attr(x, "r", NULL);
                uint32_t row = next_row;
                if (ra && !parse_u32(ra, &row)) {
                    char q[SL_SHEET_EXCERPT_MAX];
                    rc = fail(x, SL_ERR_PARSE, "%s: '%s' is no row number", path,
                              sl_sheet_excerpt(ra, strlen(ra), q));
                    goto out;
                }
                if ((rc = sl_sheet_rows_begin(x->sr, row)))
                    goto out;
                next_row = row + 1;
                last_col = UINT32_MAX;
            } else if (in_data && depth == 3 && strcmp(ln, "c") == 0) {
                if (!sl_sheet_rows_current(x->sr)) {
                    rc = fail(x, SL_ERR_PARSE, "%s: a cell outside a row", path);
                    goto out;
                }
                cell = (struct xcell){.col = last_col + 1};
                const char *ref = attr(x, "r", NULL);
                if (ref && !parse_ref(ref, &cell.col)) {
                    char q[SL_SHEET_EXCERPT_MAX];
                    rc = fail(x, SL_ERR_PARSE, "%s, row %u: '%s' is no cell reference", path,
                              (unsigned)sl_sheet_rows_current(x->sr),
                              sl_sheet_excerpt(ref, strlen(ref), q));
                    goto out;
                }
                last_col = cell.col;
                const char *t = attr(x, "t", NULL);
                snprintf(cell.type, sizeof(cell.type), "%s", t ? t : "");
                parse_u32(attr(x, "s", NULL), &cell.style);
                sl_buf_reset(&v);
                sl_buf_reset(&is);
                in_cell = !empty;
                if (empty && (rc = cell_end(x, &cell, &v, &is)))
                    goto out;
            } else if (in_cell && depth == 4) {
                if (strcmp(ln, "v") == 0) {
                    cell.have_v = true;
                    collect = empty ? NONE : IN_V;
                } else if (strcmp(ln, "is") == 0) {
                    cell.have_is = true;
                    in_is = !empty;
                }
            } else if (in_is && !empty && depth == 5 && strcmp(ln, "r") == 0) {
                in_run = true;
            } else if (in_is && !empty && strcmp(ln, "t") == 0 &&
                       (depth == 5 || (depth == 6 && in_run))) {
                collect = IN_T;
            }
        } else if (type == XML_READER_TYPE_END_ELEMENT) {
            if (depth == 1 && in_data)
                break; /* the rest of the sheet holds no cell values */
            if (depth == 3 && in_cell) {
                in_cell = in_is = in_run = false;
                collect = NONE;
                if ((rc = cell_end(x, &cell, &v, &is)))
                    goto out;
            } else if (depth == 4) {
                collect = NONE;
                in_is = in_run = false;
            } else if (depth == 5) {
                collect = NONE;
                in_run = false;
            } else if (depth == 6) {
                collect = NONE;
            }
        } else if (collect != NONE && is_text_node(type)) {
            if ((rc = take_text(x, collect == IN_V ? &v : &is, x->max_cell, "a cell value")))
                goto out;
        }
    }
    if (r < 0) {
        rc = x->rc;
        goto out;
    }
    rc = sl_sheet_rows_finish(x->sr);
out:
    sl_buf_cleanup(&v);
    sl_buf_cleanup(&is);
    part_close(x);
    if (rc < 0 && !x->rc)
        x->rc = rc; /* errbuf was set by sheet_cell.c */
    return rc;
}

/* ---- choosing the sheet ---- */

static void list_sheets(const struct xlsx *x, struct sl_buf *b)
{
    for (size_t i = 0; i < x->nsheets && i < 10; i++)
        sl_buf_printf(b, "%s'%s'", i ? ", " : "", x->sheets[i].name);
    if (x->nsheets > 10)
        sl_buf_puts(b, ", ...");
}

static int pick_sheet(struct xlsx *x, const struct sl_sheet_opts *o, size_t *idx)
{
    if (x->nsheets == 0)
        return fail(x, SL_ERR_PARSE, "the workbook has no sheets");
    struct sl_buf names = SL_BUF_INIT;
    int rc = 0;
    if (o->sheet) {
        size_t i;
        for (i = 0; i < x->nsheets; i++)
            if (strcmp(x->sheets[i].name, o->sheet) == 0)
                break;
        if (i == x->nsheets)
            for (i = 0; i < x->nsheets; i++)
                if (strcasecmp(x->sheets[i].name, o->sheet) == 0)
                    break;
        if (i < x->nsheets) {
            *idx = i;
        } else {
            list_sheets(x, &names);
            rc = fail(x, SL_ERR_PARSE, "no sheet named '%s' (the workbook has %s)", o->sheet,
                      names.data ? names.data : "");
        }
    } else if (o->sheet_index > 0) {
        if ((size_t)o->sheet_index <= x->nsheets) {
            *idx = (size_t)o->sheet_index - 1;
        } else {
            list_sheets(x, &names);
            rc = fail(x, SL_ERR_PARSE, "no sheet %d: the workbook has %zu sheet%s (%s)",
                      o->sheet_index, x->nsheets, x->nsheets == 1 ? "" : "s",
                      names.data ? names.data : "");
        }
    } else {
        *idx = 0;
    }
    sl_buf_cleanup(&names);
    return rc;
}

int sl_xlsx_read_fd(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                    void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    struct sl_sheet_opts def = {0};
    if (!o)
        o = &def;
    struct xlsx x = {
        .fd = fd,
        .stats = stats,
        .errbuf = errbuf,
        .errsz = errsz,
        .max_strings = o->max_strings ? o->max_strings : XLSX_DEF_MAX_STRINGS,
        .max_entries = o->max_entries ? o->max_entries : XLSX_DEF_MAX_ENTRIES,
        .max_inflated = o->max_inflated ? o->max_inflated : XLSX_DEF_MAX_INFLATED,
        .max_ratio = o->max_ratio ? o->max_ratio : XLSX_DEF_MAX_RATIO,
        .max_cell = o->max_row ? o->max_row : XLSX_DEF_MAX_CELL,
    };
    zip_error_init(&x.src_err);
    sl_buf_init(&x.sst);
    sl_buf_init(&x.text);
    sl_buf_init(&x.text2);
    char *path = NULL;
    zip_source_t *src = NULL;
    struct sl_sheet_rows_cfg cfg;
    int rc = sl_sheet_read_begin(fd, o, hdr_fn, fn, ud, stats, errbuf, errsz, &cfg, &x.file_size);
    if (rc)
        goto done;
    uint64_t entries;
    if (eocd_entries(&x, &entries) == 0 && entries > x.max_entries) {
        rc = fail(&x, SL_ERR_LIMIT, "the archive has %llu entries, more than %zu (a zip bomb?)",
                  (unsigned long long)entries, x.max_entries);
        goto done;
    }
    pthread_once(&xlsx_once, xlsx_init);

    zip_error_t ze;
    zip_error_init(&ze);
    src = zip_source_function_create(fd_source, &x, &ze);
    if (!src) {
        zip_error_fini(&ze);
        rc = nomem(&x);
        goto done;
    }
    x.za = zip_open_from_source(src, ZIP_RDONLY, &ze);
    if (!x.za) {
        if (zip_error_code_zip(&ze) == ZIP_ER_NOZIP)
            rc = fail(&x, SL_ERR_PARSE,
                      "not an XLSX file: no zip archive (the file is truncated or of another "
                      "format)");
        else
            rc = fail(&x, SL_ERR_PARSE, "not an XLSX file: %s (the file is truncated or corrupt)",
                      zip_error_strerror(&ze));
        zip_error_fini(&ze);
        goto done;
    }
    zip_error_fini(&ze);
    src = NULL; /* the archive owns it */
    zip_int64_t ne = zip_get_num_entries(x.za, 0);
    if (ne < 0 || (uint64_t)ne > x.max_entries) {
        rc = fail(&x, SL_ERR_LIMIT, "the archive has %lld entries, more than %zu (a zip bomb?)",
                  (long long)ne, x.max_entries);
        goto done;
    }

    /* the workbook part: _rels/.rels names it */
    if ((rc = read_rels(&x, "")))
        goto done;
    const struct xrel *doc = rel_by_type(&x, "officeDocument");
    x.wb_path = strdup(doc ? doc->target : "xl/workbook.xml");
    if (!x.wb_path) {
        rc = nomem(&x);
        goto done;
    }
    if ((rc = read_workbook(&x)) || (rc = read_rels(&x, x.wb_path)))
        goto done;
    size_t si = 0;
    if ((rc = pick_sheet(&x, o, &si)))
        goto done;
    const struct xsheet *sh = &x.sheets[si];
    const struct xrel *rel = rel_by_id(&x, sh->rid);
    if (!rel || !rel->target) {
        rc = fail(&x, SL_ERR_PARSE,
                  "not a valid XLSX file: sheet '%s' has no part (relationship '%s' is missing)",
                  sh->name, sh->rid);
        goto done;
    }
    if (!type_is(rel->type, "worksheet")) {
        const char *slash = strrchr(rel->type, '/');
        rc = fail(&x, SL_ERR_PARSE, "sheet '%s' is not a worksheet (it is a %s)", sh->name,
                  slash ? slash + 1 : rel->type);
        goto done;
    }
    if (!(path = strdup(rel->target))) {
        rc = nomem(&x);
        goto done;
    }
    const struct xrel *styles = rel_by_type(&x, "styles");
    const struct xrel *strings = rel_by_type(&x, "sharedStrings");
    char *styles_path = styles ? strdup(styles->target) : NULL;
    char *strings_path = strings ? strdup(strings->target) : NULL;
    if ((styles && !styles_path) || (strings && !strings_path)) {
        free(styles_path);
        free(strings_path);
        rc = nomem(&x);
        goto done;
    }
    free_rels(&x);
    rc = styles_path ? read_styles(&x, styles_path) : 0;
    if (!rc && strings_path)
        rc = read_strings(&x, strings_path);
    free(styles_path);
    free(strings_path);
    if (rc)
        goto done;

    cfg.sheet = sh->name;
    if (!(x.sr = sl_sheet_rows_new(&cfg))) {
        rc = nomem(&x);
        goto done;
    }
    rc = read_sheet(&x, path);
    if (rc == 0 && stats)
        stats->bytes = x.file_size;

done:
    part_close(&x);
    if (x.za)
        zip_discard(x.za);
    if (src)
        zip_source_free(src);
    zip_error_fini(&x.src_err);
    sl_sheet_rows_destroy(x.sr);
    free(path);
    free(x.wb_path);
    for (size_t i = 0; i < x.nsheets; i++) {
        free(x.sheets[i].name);
        free(x.sheets[i].rid);
    }
    free(x.sheets);
    free_rels(&x);
    free(x.xf_kind);
    free(x.numfmts);
    free(x.sst_off);
    sl_buf_cleanup(&x.sst);
    sl_buf_cleanup(&x.text);
    sl_buf_cleanup(&x.text2);
    sl_buf_cleanup(&x.part.out);
    return rc;
}
