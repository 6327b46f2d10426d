/*
 * The file destination: one published record per NDJSON line (sink.h).
 *
 * Records go to PATH.tmp through a large stdio buffer and the file is renamed
 * to PATH when the run succeeds, so a failed run leaves the destination as it
 * was. A file has no records before the run: every record is created, except
 * that a later row of the same key (duplicates: last_wins) counts as an
 * update, and with allow_create false nothing can be created (not_created).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/sink.h"

struct file_sink {
    struct sl_sink base;
    char *path, *tmp;
    FILE *f;
    char *iobuf;
    struct sl_buf line;
    bool failed;
};

int sl_ndjson_record(struct sl_buf *b, const struct sl_job *job, const struct sl_msg *rec)
{
    const struct sl_record *r = &rec->u.rec;
    int rc = sl_buf_putc(b, '{');
    bool first = true;
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        const struct sl_attr *a = &job->attrs[i];
        const char *v = NULL;
        bool found = false;
        if (i < r->nattr && (r->attr[i].name == a->name || !strcmp(r->attr[i].name, a->name))) {
            v = r->attr[i].value;
            found = true;
        } else {
            for (uint32_t k = 0; k < r->nattr && !found; k++)
                if (!strcmp(r->attr[k].name, a->name)) {
                    v = r->attr[k].value;
                    found = true;
                }
        }
        /* an attribute without a mapping (and no default) stays unset */
        if (!a->map && !v)
            continue;
        if (!first)
            rc |= sl_buf_putc(b, ',');
        first = false;
        rc |= sl_buf_json_str(b, a->name, strlen(a->name));
        rc |= sl_buf_putc(b, ':');
        if (!v)
            rc |= sl_buf_puts(b, "null");
        else if (a->type == SL_TYPE_INTEGER || a->type == SL_TYPE_BOOLEAN)
            rc |= sl_buf_puts(b, v);
        else
            rc |= sl_buf_json_str(b, v, strlen(v));
    }
    rc |= sl_buf_puts(b, "}\n");
    return rc ? SL_ERR_NOMEM : 0;
}

static int file_write(struct sl_sink *sk, const struct sl_msg *rec, bool duplicate,
                      enum sl_write_result *res)
{
    struct file_sink *fs = (struct file_sink *)sk;
    if (!sk->job->options.allow_create && sk->job->options.sync != SL_SYNC_APPEND) {
        *res = SL_WRITE_NOT_CREATED;
        return 0;
    }
    sl_buf_reset(&fs->line);
    if (sl_ndjson_record(&fs->line, sk->job, rec))
        return SL_ERR_NOMEM;
    if (fwrite(fs->line.data, 1, fs->line.len, fs->f) != fs->line.len) {
        fs->failed = true;
        return SL_ERR_IO;
    }
    *res = duplicate ? SL_WRITE_UPDATED : SL_WRITE_CREATED;
    return 0;
}

static int file_commit(struct sl_sink *sk, char *errbuf, size_t errsz)
{
    struct file_sink *fs = (struct file_sink *)sk;
    if (fflush(fs->f))
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", fs->tmp, strerror(errno));
    return 0;
}

static int file_finish(struct sl_sink *sk, bool success, char *errbuf, size_t errsz)
{
    struct file_sink *fs = (struct file_sink *)sk;
    if (!fs->f)
        return 0;
    int rc = 0;
    if (success && !fs->failed) {
        if (fflush(fs->f) || fsync(fileno(fs->f)))
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", fs->tmp,
                           strerror(errno));
    } else if (success) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s", fs->tmp);
    }
    if (fclose(fs->f) && rc == 0 && success)
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot write %s: %s", fs->tmp, strerror(errno));
    fs->f = NULL;
    if (success && rc == 0) {
        if (rename(fs->tmp, fs->path))
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot rename %s to %s: %s", fs->tmp,
                           fs->path, strerror(errno));
    } else {
        unlink(fs->tmp);
    }
    return rc;
}

static void file_destroy(struct sl_sink *sk)
{
    struct file_sink *fs = (struct file_sink *)sk;
    if (fs->f) {
        fclose(fs->f);
        unlink(fs->tmp);
    }
    free(fs->path);
    free(fs->tmp);
    free(fs->iobuf);
    sl_buf_cleanup(&fs->line);
    free(fs);
}

static const struct sl_sink_ops file_ops = {
    .name = "file",
    .write = file_write,
    .commit = file_commit,
    .finish = file_finish,
    .destroy = file_destroy,
};

struct sl_sink *sl_sink_file_open(const char *path, const struct sl_job *job, char *errbuf,
                                  size_t errsz)
{
    struct file_sink *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    fs->base.ops = &file_ops;
    fs->base.job = job;
    fs->path = strdup(path);
    fs->tmp = malloc(strlen(path) + 5);
    fs->iobuf = malloc(1 << 20);
    if (!fs->path || !fs->tmp || !fs->iobuf) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sprintf(fs->tmp, "%s.tmp", path);
    if (!(fs->f = fopen(fs->tmp, "w"))) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create %s: %s", fs->tmp, strerror(errno));
        goto fail;
    }
    setvbuf(fs->f, fs->iobuf, _IOFBF, 1 << 20);
    return &fs->base;
fail:
    file_destroy(&fs->base);
    return NULL;
}

void sl_sink_destroy(struct sl_sink *sk)
{
    if (sk)
        sk->ops->destroy(sk);
}
