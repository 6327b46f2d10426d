/*
 * A source file of any format read into rows (reader.h): the format
 * detection of JOBS.md (the declared format, else the file name, the content
 * type, the content) and the one dispatch to the format readers that the
 * parser stage, `sluice preview` and `sluice suggest` share.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/reader.h"

static enum sl_format format_from_name(const char *name)
{
    const char *dot = name ? strrchr(name, '.') : NULL;
    if (!dot)
        return SL_FORMAT_AUTO;
    static const struct {
        const char *ext;
        enum sl_format f;
    } exts[] = {
        {".csv", SL_FORMAT_CSV},   {".tsv", SL_FORMAT_CSV},       {".txt", SL_FORMAT_CSV},
        {".json", SL_FORMAT_JSON}, {".ndjson", SL_FORMAT_NDJSON}, {".jsonl", SL_FORMAT_NDJSON},
        {".xml", SL_FORMAT_XML},   {".xlsx", SL_FORMAT_XLSX},     {".xls", SL_FORMAT_XLS},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        if (!strcasecmp(dot, exts[i].ext))
            return exts[i].f;
    return SL_FORMAT_AUTO;
}

/* The format a content type names ("text/csv; charset=utf-8": parameters
 * ignored, case-insensitive), or SL_FORMAT_AUTO for none or one that says
 * nothing of the format (text/plain, application/octet-stream). */
static enum sl_format format_from_type(const char *ct)
{
    static const struct {
        const char *type;
        enum sl_format f;
    } types[] = {
        {"text/csv", SL_FORMAT_CSV},
        {"application/csv", SL_FORMAT_CSV},
        {"text/tab-separated-values", SL_FORMAT_CSV},
        {"application/json", SL_FORMAT_JSON},
        {"text/json", SL_FORMAT_JSON},
        {"application/x-ndjson", SL_FORMAT_NDJSON},
        {"application/jsonl", SL_FORMAT_NDJSON},
        {"application/x-jsonlines", SL_FORMAT_NDJSON},
        {"application/xml", SL_FORMAT_XML},
        {"text/xml", SL_FORMAT_XML},
        {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", SL_FORMAT_XLSX},
        {"application/vnd.ms-excel", SL_FORMAT_XLS},
    };
    if (!ct)
        return SL_FORMAT_AUTO;
    size_t n = strcspn(ct, ";");
    while (n && (*ct == ' ' || *ct == '\t')) {
        ct++;
        n--;
    }
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strlen(types[i].type) == n && !strncasecmp(ct, types[i].type, n))
            return types[i].f;
    /* structured syntax suffixes (RFC 6839): application/vnd.api+json */
    if (n > 5 && !strncasecmp(ct + n - 5, "+json", 5))
        return SL_FORMAT_JSON;
    if (n > 4 && !strncasecmp(ct + n - 4, "+xml", 4))
        return SL_FORMAT_XML;
    return SL_FORMAT_AUTO;
}

static enum sl_format format_from_content(int fd)
{
    unsigned char b[512];
    ssize_t n = pread(fd, b, sizeof(b), 0);
    if (n <= 0)
        return SL_FORMAT_CSV;
    if (n >= 4 && !memcmp(b, "PK\x03\x04", 4))
        return SL_FORMAT_XLSX;
    if (n >= 4 && !memcmp(b, "\xd0\xcf\x11\xe0", 4))
        return SL_FORMAT_XLS;
    ssize_t i = 0;
    if (n >= 3 && !memcmp(b, "\xef\xbb\xbf", 3))
        i = 3;
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n'))
        i++;
    if (i < n && (b[i] == '{' || b[i] == '['))
        return SL_FORMAT_JSON;
    if (i < n && b[i] == '<')
        return SL_FORMAT_XML;
    return SL_FORMAT_CSV;
}

enum sl_format sl_format_detect(enum sl_format declared, const char *name, const char *content_type,
                                int fd)
{
    enum sl_format fmt = declared;
    if (fmt == SL_FORMAT_AUTO) {
        fmt = format_from_name(name);
        if (fmt == SL_FORMAT_AUTO)
            fmt = format_from_type(content_type);
        /* book.xls that is an XLSX workbook (or the other way round): the
         * content wins, both spreadsheet readers check what they get */
        if (fmt == SL_FORMAT_XLSX || fmt == SL_FORMAT_XLS) {
            enum sl_format by_content = format_from_content(fd);
            if (by_content == SL_FORMAT_XLSX || by_content == SL_FORMAT_XLS)
                fmt = by_content;
        }
    }
    if (fmt == SL_FORMAT_AUTO)
        fmt = format_from_content(fd);
    return fmt;
}

int sl_source_read_fd(int fd, enum sl_format fmt, const struct sl_source *src, sl_header_fn hdr_fn,
                      sl_row_fn fn, void *ud, struct sl_reader_stats *stats, char *errbuf,
                      size_t errsz)
{
    switch (fmt) {
    case SL_FORMAT_CSV: {
        struct sl_csv_opts o = {
            .delimiter = src->csv_delimiter,
            .quote = src->csv_quote,
            .header = src->csv_header,
            .encoding = src->encoding,
        };
        return sl_csv_read_fd(fd, &o, hdr_fn, fn, ud, stats, errbuf, errsz);
    }
    case SL_FORMAT_XML: {
        struct sl_xml_opts o = {.records = src->xml_records ? src->xml_records : src->records};
        return sl_xml_read_fd(fd, &o, fn, ud, stats, errbuf, errsz);
    }
    case SL_FORMAT_XLSX:
    case SL_FORMAT_XLS: {
        struct sl_sheet_opts o = {
            .sheet = src->sheet,
            .sheet_index = src->sheet_index,
            .header_row = src->header_row,
        };
        return (fmt == SL_FORMAT_XLSX ? sl_xlsx_read_fd : sl_xls_read_fd)(fd, &o, hdr_fn, fn, ud,
                                                                          stats, errbuf, errsz);
    }
    case SL_FORMAT_JSON:
    case SL_FORMAT_NDJSON: {
        struct sl_json_opts o = {
            .records = src->json_records ? src->json_records : src->records,
            .ndjson = fmt == SL_FORMAT_NDJSON,
            .encoding = src->encoding,
        };
        return sl_json_read_fd(fd, &o, fn, ud, stats, errbuf, errsz);
    }
    default:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "format '%s' is not supported by this version of the parser",
                         sl_format_name(fmt));
    }
}
