/*
 * The local run ledger (sink.h): the files of "What a run produces" in
 * JOBS.md, written into the run's output directory.
 *
 * rejected.ndjson streams as rows are rejected (through a .tmp file). At the
 * end, errors.csv is built from it in two passes (first the columns, then the
 * rows), so memory holds one row whatever the number of rejections. errors.csv
 * is for a person to fix and re-upload with the same job: `_row`, `_errors`,
 * then the source columns unchanged, in the source's delimiter and encoding
 * (a windows-1252 export comes back as windows-1252). run.json closes the run.
 */
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/run_report.h"
#include "sluice/sink.h"
#include "sluice/util.h"

struct local_ledger {
    struct sl_ledger base;
    char *dir;
    char *rej_path, *rej_tmp, *csv_path, *json_path;
    FILE *rej;
    struct sl_buf line;
    char **columns; /* the source header, from the seal */
    size_t ncolumns;
    char delimiter;
    enum sl_encoding encoding;
    bool have_encoding;
    bool failed;
    json_t *unmapped; /* the source columns the mapping does not read; NULL: unknown */
    json_t *report;   /* what became of the run report; NULL: none was due */
};

static char *path_in(const char *dir, const char *name)
{
    return sl_path_join(dir, name);
}

int sl_rejection_json(struct sl_buf *b, const struct sl_msg *m)
{
    const struct sl_record *r = &m->u.rec;
    int rc = sl_buf_printf(b, "\"row\":%llu,\"errors\":[", (unsigned long long)r->row);
    for (uint32_t i = 0; i < r->nprob; i++) {
        const struct sl_problem *p = &r->prob[i];
        rc |= sl_buf_puts(b, i ? ",{\"attribute\":" : "{\"attribute\":");
        rc |= sl_buf_json_str(b, p->attribute, strlen(p->attribute));
        rc |= sl_buf_puts(b, ",\"code\":");
        rc |= sl_buf_json_str(b, p->code, strlen(p->code));
        rc |= sl_buf_puts(b, ",\"message\":");
        rc |= sl_buf_json_str(b, p->message, strlen(p->message));
        rc |= sl_buf_puts(b, ",\"value\":");
        if (p->value)
            rc |= sl_buf_json_str(b, p->value, strlen(p->value));
        else
            rc |= sl_buf_puts(b, "null");
        rc |= sl_buf_putc(b, '}');
    }
    rc |= sl_buf_puts(b, "],\"source\":{");
    for (uint32_t i = 0; i < r->nsrc; i++) {
        if (i)
            rc |= sl_buf_putc(b, ',');
        rc |= sl_buf_json_str(b, r->src[i].name, strlen(r->src[i].name));
        rc |= sl_buf_putc(b, ':');
        if (r->src[i].value)
            rc |= sl_buf_json_str(b, r->src[i].value, strlen(r->src[i].value));
        else
            rc |= sl_buf_puts(b, "null");
    }
    rc |= sl_buf_putc(b, '}');
    return rc ? SL_ERR_NOMEM : 0;
}

static int ledger_reject(struct sl_ledger *lg, const struct sl_msg *m)
{
    struct local_ledger *ll = (struct local_ledger *)lg;
    struct sl_buf *b = &ll->line;
    sl_buf_reset(b);
    if (sl_buf_putc(b, '{') || sl_rejection_json(b, m) || sl_buf_puts(b, "}\n"))
        return SL_ERR_NOMEM;
    if (fwrite(b->data, 1, b->len, ll->rej) != b->len) {
        ll->failed = true;
        return SL_ERR_IO;
    }
    return 0;
}

static int ledger_columns(struct sl_ledger *lg, const struct sl_run_event *ev)
{
    struct local_ledger *ll = (struct local_ledger *)lg;
    const char *const *cols = ev->columns;
    size_t n = ev->ncolumns;
    ll->delimiter = ev->delimiter;
    ll->encoding = (enum sl_encoding)ev->encoding;
    ll->have_encoding = true;
    if (!ll->unmapped) {
        if (!(ll->unmapped = json_array()))
            return SL_ERR_NOMEM;
        for (uint32_t i = 0; i < ev->nunmapped; i++)
            if (json_array_append_new(ll->unmapped, json_string(ev->unmapped[i])))
                return SL_ERR_NOMEM;
    }
    if (ll->columns || n == 0)
        return 0;
    ll->columns = calloc(n, sizeof(char *));
    if (!ll->columns)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(ll->columns[i] = strdup(cols[i])))
            return SL_ERR_NOMEM;
    ll->ncolumns = n;
    return 0;
}

/* Adds the source names of the rejected rows that the header lacks (formats
 * without a header): first pass over rejected.ndjson. */
static int collect_columns(struct local_ledger *ll, FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, in)) > 0) {
        json_t *row = json_loadb(line, (size_t)n, 0, NULL);
        json_t *src = json_object_get(row, "source");
        const char *name;
        json_t *v;
        json_object_foreach(src, name, v)
        {
            bool have = false;
            for (size_t i = 0; i < ll->ncolumns && !have; i++)
                have = !strcmp(ll->columns[i], name);
            if (have)
                continue;
            char **p = realloc(ll->columns, (ll->ncolumns + 1) * sizeof(char *));
            if (!p || !(p[ll->ncolumns] = strdup(name))) {
                if (p)
                    ll->columns = p;
                rc = SL_ERR_NOMEM;
                break;
            }
            ll->columns = p;
            ll->ncolumns++;
        }
        json_decref(row);
    }
    free(line);
    return rc;
}

/* iconv name of the job's encoding for writing, NULL for UTF-8. */
static const char *out_charset(enum sl_encoding enc)
{
    switch (enc) {
    case SL_ENC_LATIN1:
        return "ISO-8859-1//TRANSLIT";
    case SL_ENC_WINDOWS_1252:
        return "WINDOWS-1252//TRANSLIT";
    case SL_ENC_UTF16:
        return "UTF-16LE";
    default:
        return NULL;
    }
}

/* Writes b (UTF-8) to f, converted with cd when not (iconv_t)-1. */
static int write_converted(FILE *f, iconv_t cd, const struct sl_buf *b)
{
    if (cd == (iconv_t)-1)
        return fwrite(b->data, 1, b->len, f) == b->len ? 0 : SL_ERR_IO;
    char out[8192];
    char *in = b->data;
    size_t inleft = b->len;
    while (inleft) {
        char *o = out;
        size_t oleft = sizeof(out);
        size_t r = iconv(cd, &in, &inleft, &o, &oleft);
        if (r == (size_t)-1 && errno != E2BIG) {
            /* a character the target cannot hold: write '?' and go on */
            if (oleft) {
                *o++ = '?';
                oleft--;
            }
            in++;
            inleft--;
            while (inleft && ((unsigned char)*in & 0xc0) == 0x80) {
                in++;
                inleft--;
            }
        }
        size_t w = sizeof(out) - oleft;
        if (w && fwrite(out, 1, w, f) != w)
            return SL_ERR_IO;
    }
    return 0;
}

static int write_errors_csv(struct local_ledger *ll, char *errbuf, size_t errsz)
{
    const struct sl_job *job = ll->base.job;
    char delim = ll->delimiter ? ll->delimiter : job->source.csv_delimiter;
    if (!delim)
        delim = ',';
    FILE *in = fopen(ll->rej_tmp, "r");
    if (!in)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot read %s: %s", ll->rej_tmp,
                         strerror(errno));
    int rc = collect_columns(ll, in);
    char *tmp = malloc(strlen(ll->csv_path) + 5);
    FILE *out = NULL;
    iconv_t cd = (iconv_t)-1;
    char *line = NULL;
    size_t cap = 0;
    struct sl_buf b = SL_BUF_INIT;
    if (rc || !tmp) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    sprintf(tmp, "%s.tmp", ll->csv_path);
    if (!(out = fopen(tmp, "w"))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    enum sl_encoding enc = ll->have_encoding ? ll->encoding : job->source.encoding;
    const char *cs = out_charset(enc);
    if (cs && (cd = iconv_open(cs, "UTF-8")) == (iconv_t)-1) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot convert to %s", cs);
        goto out;
    }
    if (enc == SL_ENC_UTF16)
        fwrite("\xff\xfe", 1, 2, out); /* the BOM tells our reader (and Excel) */
    sl_buf_puts(&b, "_row");
    sl_buf_putc(&b, delim);
    sl_buf_puts(&b, "_errors");
    for (size_t i = 0; i < ll->ncolumns; i++) {
        sl_buf_putc(&b, delim);
        sl_buf_csv_field(&b, ll->columns[i], strlen(ll->columns[i]), delim);
    }
    sl_buf_puts(&b, "\r\n");
    if ((rc = write_converted(out, cd, &b)) != 0)
        goto io;
    rewind(in);
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        json_t *row = json_loadb(line, (size_t)n, 0, NULL);
        if (!row)
            continue;
        sl_buf_reset(&b);
        sl_buf_printf(&b, "%lld", (long long)json_integer_value(json_object_get(row, "row")));
        sl_buf_putc(&b, delim);
        struct sl_buf errs = SL_BUF_INIT;
        json_t *e;
        size_t i;
        json_array_foreach(json_object_get(row, "errors"), i, e)
        {
            if (i)
                sl_buf_puts(&errs, "; ");
            sl_buf_printf(&errs, "%s: %s", json_string_value(json_object_get(e, "attribute")),
                          json_string_value(json_object_get(e, "message")));
        }
        sl_buf_csv_field(&b, errs.data ? errs.data : "", errs.len, delim);
        sl_buf_cleanup(&errs);
        json_t *src = json_object_get(row, "source");
        for (size_t c = 0; c < ll->ncolumns; c++) {
            sl_buf_putc(&b, delim);
            const char *v = json_string_value(json_object_get(src, ll->columns[c]));
            if (v)
                sl_buf_csv_field(&b, v, strlen(v), delim);
        }
        sl_buf_puts(&b, "\r\n");
        json_decref(row);
        if ((rc = write_converted(out, cd, &b)) != 0)
            goto io;
    }
    if (fclose(out)) {
        out = NULL;
        goto io;
    }
    out = NULL;
    if (rename(tmp, ll->csv_path))
        goto io;
    goto out;
io:
    rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", ll->csv_path, strerror(errno));
out:
    if (out)
        fclose(out);
    if (rc && tmp)
        unlink(tmp);
    if (cd != (iconv_t)-1)
        iconv_close(cd);
    fclose(in);
    free(line);
    free(tmp);
    sl_buf_cleanup(&b);
    return rc;
}

json_t *sl_time_json(int64_t us)
{
    if (!us)
        return json_null();
    char t[32];
    sl_format_utc(us, true, t);
    return json_string(t);
}

json_t *sl_counts_json(const struct sl_counts *c)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "read", (json_int_t)c->read, "published",
                     (json_int_t)c->published, "created", (json_int_t)c->created, "updated",
                     (json_int_t)c->updated, "unchanged", (json_int_t)c->unchanged, "rejected",
                     (json_int_t)c->rejected, "duplicates", (json_int_t)c->duplicates,
                     "not_created", (json_int_t)c->not_created);
}

static int write_run_json(struct local_ledger *ll, const struct sl_run_summary *s, char *errbuf,
                          size_t errsz)
{
    const struct sl_counts *c = &s->counts;
    json_t *src = json_object();
    json_object_set_new(src, "sha256", s->sha256 ? json_string(s->sha256) : json_null());
    json_object_set_new(src, "bytes", json_integer((json_int_t)s->bytes));
    json_t *counts = sl_counts_json(c);
    json_t *run = json_object();
    json_object_set_new(run, "run_id", json_string(s->run_id));
    json_object_set_new(run, "job", json_string(s->job));
    json_object_set_new(run, "status", json_string(s->status));
    json_object_set_new(run, "started_at", sl_time_json(s->started_at));
    json_object_set_new(run, "finished_at", sl_time_json(s->finished_at));
    json_object_set_new(run, "source", src);
    json_object_set_new(run, "counts", counts);
    if (ll->unmapped)
        json_object_set(run, "unmapped_columns", ll->unmapped);
    if (ll->report)
        json_object_set(run, "report", ll->report);
    if (s->reason)
        json_object_set_new(run, "reason", json_string(s->reason));
    char *text = json_dumps(run, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(run);
    if (!text)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    size_t len = strlen(text);
    text[len] = '\n';
    int rc = sl_write_file_atomic(ll->json_path, text, len + 1);
    free(text);
    if (rc)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", ll->json_path,
                         strerror(errno));
    return 0;
}

/* rejected.ndjson read back, a row at a time, for the run report. */
struct rows_file {
    FILE *f;
    const char *path;
    char *line;
    size_t cap;
    unsigned long long lineno;
};

static int next_row(void *ud, json_t **row, char *errbuf, size_t errsz)
{
    struct rows_file *rf = ud;
    *row = NULL;
    ssize_t n = getline(&rf->line, &rf->cap, rf->f);
    if (n <= 0)
        return ferror(rf->f) ? sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot read %s", rf->path) : 0;
    rf->lineno++;
    json_error_t jerr;
    if (!(*row = json_loadb(rf->line, (size_t)n, 0, &jerr)))
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s, line %llu: %s", rf->path, rf->lineno,
                         jerr.text);
    return 0;
}

static int ledger_finish(struct sl_ledger *lg, const struct sl_run_summary *s, char *errbuf,
                         size_t errsz)
{
    struct local_ledger *ll = (struct local_ledger *)lg;
    if (ll->rej) {
        int bad = ll->failed || fflush(ll->rej) || fclose(ll->rej);
        ll->rej = NULL;
        if (bad)
            return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", ll->rej_tmp,
                             strerror(errno));
    }
    int rc = write_errors_csv(ll, errbuf, errsz);
    if (rc)
        return rc;
    if (rename(ll->rej_tmp, ll->rej_path))
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot rename %s: %s", ll->rej_tmp,
                         strerror(errno));
    if (sl_run_report_due(lg->job, s)) {
        struct rows_file rf = {.f = fopen(ll->rej_path, "r"), .path = ll->rej_path};
        struct sl_report_rows rows = {
            .next = next_row,
            .ud = &rf,
            .columns = (const char *const *)ll->columns,
            .ncolumns = ll->ncolumns,
        };
        json_decref(ll->report);
        ll->report = sl_run_report_send(lg->job, s, lg->smtp, rf.f ? &rows : NULL, ll->dir);
        if (rf.f)
            fclose(rf.f);
        free(rf.line);
    }
    return write_run_json(ll, s, errbuf, errsz);
}

static void ledger_destroy(struct sl_ledger *lg)
{
    struct local_ledger *ll = (struct local_ledger *)lg;
    if (ll->rej) {
        fclose(ll->rej);
        unlink(ll->rej_tmp);
    }
    for (size_t i = 0; i < ll->ncolumns; i++)
        free(ll->columns[i]);
    free(ll->columns);
    json_decref(ll->unmapped);
    json_decref(ll->report);
    free(ll->dir);
    free(ll->rej_path);
    free(ll->rej_tmp);
    free(ll->csv_path);
    free(ll->json_path);
    sl_buf_cleanup(&ll->line);
    free(ll);
}

static const struct sl_ledger_ops local_ops = {
    .name = "local",
    .reject = ledger_reject,
    .columns = ledger_columns,
    .finish = ledger_finish,
    .destroy = ledger_destroy,
};

struct sl_ledger *sl_ledger_local_open(const char *dir, const struct sl_job *job, char *errbuf,
                                       size_t errsz)
{
    struct local_ledger *ll = calloc(1, sizeof(*ll));
    if (!ll) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ll->base.ops = &local_ops;
    ll->base.job = job;
    ll->dir = strdup(dir);
    ll->rej_path = path_in(dir, "rejected.ndjson");
    ll->rej_tmp = path_in(dir, ".rejected.ndjson.tmp");
    ll->csv_path = path_in(dir, "errors.csv");
    ll->json_path = path_in(dir, "run.json");
    if (!ll->dir || !ll->rej_path || !ll->rej_tmp || !ll->csv_path || !ll->json_path) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (sl_mkdirs(dir)) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (!(ll->rej = fopen(ll->rej_tmp, "w"))) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create %s: %s", ll->rej_tmp, strerror(errno));
        goto fail;
    }
    return &ll->base;
fail:
    ledger_destroy(&ll->base);
    return NULL;
}

void sl_ledger_destroy(struct sl_ledger *lg)
{
    if (lg)
        lg->ops->destroy(lg);
}
