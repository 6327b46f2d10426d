/*
 * The parser stage: a fetched file in, one Record per source row out, then a
 * seal with the run's record count.
 *
 * The format comes from the job, else from the file name, else from the
 * content type the fetcher got with the file (HTTP, S3, an IMAP
 * attachment's), else from the first bytes. Rows stream from the format
 * reader straight onto the bus, so memory holds one row whatever the file
 * size, and a full bus slows the reader down (backpressure). A row the
 * reader cannot read is still sent, carrying its problem, so that it is
 * rejected with a reason; a file that cannot be read at all fails the run.
 * The records themselves are built by record_build.h, as the gateway's
 * webhooks build theirs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/reader.h"
#include "sluice/record_build.h"
#include "sluice/stage.h"
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/util.h"

#define PROGRESS_US 200000

struct parser {
    const struct sl_stage_env *env;
};

/* What one file's rows need. */
struct parse_run {
    const struct sl_msg *file;
    struct sl_emitter *em;
    struct sl_reader_stats stats;
    int64_t last_progress;
    uint64_t rows;
    char **columns;
    size_t ncolumns;
    int send_rc;
    /* the records (keyed by their target key in distributed mode), and
     * for schema drift which fields the mapping reads the file has and the
     * file's columns the mapping does not read */
    struct sl_record_build rb;
    char drift[400]; /* why the run fails: a column the mapping reads is missing */
};

/* on_header's return when the file lacks a column the mapping reads */
#define DRIFT_STOP 1

static int parser_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct parser *p = calloc(1, sizeof(*p));
    if (!p)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    p->env = env;
    *state = p;
    return 0;
}

static void parser_destroy(void *state)
{
    free(state);
}

static struct sl_msg *run_event(const struct sl_msg *f, enum sl_run_event_kind kind)
{
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, f->run_id, f->job_id, f->job_version);
    if (ev) {
        ev->u.ev.kind = kind;
        ev->u.ev.stage = "parser";
        ev->u.ev.at = sl_now_us();
    }
    return ev;
}

static int emit_failed(struct sl_emitter *em, const struct sl_msg *f, const char *reason)
{
    struct sl_msg *ev = run_event(f, SL_EV_FAILED);
    if (!ev)
        return SL_ERR_NOMEM;
    ev->u.ev.reason = sl_arena_strdup(&ev->arena, reason);
    sl_info("parser", "run %s failed: %s", f->run_id, reason);
    return sl_emit(em, SL_TOPIC_RUNS, ev);
}

static int emit_progress(struct parse_run *pr)
{
    struct sl_msg *ev = run_event(pr->file, SL_EV_PROGRESS);
    if (!ev)
        return SL_ERR_NOMEM;
    ev->u.ev.counts.read = pr->rows;
    ev->u.ev.counts.bytes = pr->stats.bytes;
    ev->u.ev.bytes = pr->file->u.file.bytes;
    return sl_emit(pr->em, SL_TOPIC_RUNS, ev);
}

/* Sets pr->drift when a field the mapping reads is not among the file's
 * names (JOBS.md: the run fails before a row is published, naming it);
 * cols[0..ncols) are the file's columns, for the message. True when so. */
static bool find_drift(struct parse_run *pr, const char *const *cols, size_t ncols)
{
    const struct sl_job *job = pr->rb.job;
    struct sl_buf b = {0};
    size_t missing = 0;
    for (size_t k = 0; k < job->nrefs; k++) {
        if (pr->rb.ref_seen[k])
            continue;
        sl_buf_printf(&b, "%s'%s' (", missing++ ? ", " : "", job->refs[k].name);
        size_t used = 0;
        for (size_t i = 0; i < job->nattrs; i++)
            if (sl_template_reads(job->attrs[i].map, k))
                sl_buf_printf(&b, "%smapping.%s", used++ ? ", " : "", job->attrs[i].name);
        sl_buf_putc(&b, ')');
    }
    if (missing) {
        int len = snprintf(pr->drift, sizeof(pr->drift), "the file has no %s %.*s%s",
                           missing > 1 ? "columns" : "column", (int)b.len, b.data ? b.data : "",
                           ncols ? "; its columns: " : "");
        for (size_t i = 0; i < ncols && len > 0 && (size_t)len < sizeof(pr->drift); i++)
            len += snprintf(pr->drift + len, sizeof(pr->drift) - (size_t)len, "%s%s", i ? ", " : "",
                            cols[i]);
        if (len > 0 && (size_t)len >= sizeof(pr->drift))
            memcpy(pr->drift + sizeof(pr->drift) - 4, "...", 4);
    }
    sl_buf_cleanup(&b);
    return missing > 0;
}

static int on_header(void *ud, const char *const *names, size_t n)
{
    struct parse_run *pr = ud;
    int rc = sl_record_build_names(&pr->rb, names, n);
    if (rc)
        return rc;
    if (find_drift(pr, names, n))
        return DRIFT_STOP;
    pr->columns = calloc(n ? n : 1, sizeof(char *));
    if (!pr->columns)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(pr->columns[i] = strdup(names[i])))
            return SL_ERR_NOMEM;
    pr->ncolumns = n;
    return 0;
}

static int on_row(void *ud, const struct sl_row *row)
{
    struct parse_run *pr = ud;
    struct sl_msg *m;
    int rc = sl_record_build_row(&pr->rb, row, &m);
    if (rc)
        return rc;
    rc = sl_emit(pr->em, SL_TOPIC_RAW, m);
    if (rc) {
        pr->send_rc = rc;
        return rc;
    }
    pr->rows++;
    if ((pr->rows & 1023) == 0) {
        int64_t now = sl_now_us();
        if (now - pr->last_progress >= PROGRESS_US) {
            pr->last_progress = now;
            if ((rc = emit_progress(pr)) != 0) {
                pr->send_rc = rc;
                return rc;
            }
        }
    }
    return 0;
}

static int parser_process(void *state, const char *topic, struct sl_msg *f, struct sl_emitter *em)
{
    struct parser *p = state;
    if (f->kind != SL_MSG_FILE)
        return SL_ERR_INVALID;
    char err[512] = "";
    const struct sl_job *job =
        sl_jobs_get(p->env->jobs, f->job_id, f->job_version, err, sizeof(err));
    if (!job)
        return emit_failed(em, f, err);
    const char *name = f->u.file.file_name ? f->u.file.file_name : f->u.file.blob;
    /* a service reads only what the fetcher stored: a file message naming
     * any other path (/etc/passwd) is refused */
    if (!p->env->embedded &&
        (!f->u.file.blob || !sl_path_allowed(f->u.file.blob, p->env->blob_dir))) {
        snprintf(err, sizeof(err), "cannot open %s: not a file of the blob store %s",
                 f->u.file.blob ? f->u.file.blob : "(none)",
                 p->env->blob_dir ? p->env->blob_dir : "(none)");
        return emit_failed(em, f, err);
    }
    int fd = open(f->u.file.blob, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, sizeof(err), "cannot open %s: %s", f->u.file.blob, strerror(errno));
        return emit_failed(em, f, err);
    }
    enum sl_format fmt = sl_format_detect(job->source.format, name, f->u.file.content_type, fd);

    struct parse_run pr = {
        .file = f,
        .em = em,
        .last_progress = sl_now_us(),
        .rb = {.run_id = f->run_id,
               .job_id = f->job_id,
               .job_version = f->job_version,
               .job = job,
               .keyed = !p->env->embedded, /* in process, keys mean nothing */
               .hash_key = p->env->hash_key,
               .names_vary =
                   fmt == SL_FORMAT_JSON || fmt == SL_FORMAT_NDJSON || fmt == SL_FORMAT_XML},
    };
    int rc = sl_record_build_init(&pr.rb);
    if (rc)
        goto out;
    char rerr[400] = "";
    rc = sl_source_read_fd(fd, fmt, &job->source, on_header, on_row, &pr, &pr.stats, rerr,
                           sizeof(rerr));
    if (rc < 0 && !pr.send_rc) {
        snprintf(err, sizeof(err), "%s: %s", name, rerr[0] ? rerr : sl_err_str(rc));
        rc = emit_failed(em, f, err);
        goto out;
    }
    if (pr.send_rc) {
        rc = pr.send_rc; /* the bus closed under us: nothing more to do */
        goto out;
    }
    /* a field the mapping reads that no record has: the run fails (a
     * header names the columns at once; records only by the end) */
    if (pr.drift[0] || (pr.rb.names_vary && pr.rows && find_drift(&pr, NULL, 0))) {
        snprintf(err, sizeof(err), "%.100s: %s", name, pr.drift);
        rc = emit_failed(em, f, err);
        goto out;
    }
    struct sl_msg *ev = run_event(f, SL_EV_SEALED);
    if (!ev) {
        rc = SL_ERR_NOMEM;
        goto out;
    }
    ev->u.ev.record_count = pr.rows;
    ev->u.ev.counts.read = pr.rows;
    ev->u.ev.counts.bytes = pr.stats.bytes;
    ev->u.ev.delimiter = pr.stats.delimiter;
    ev->u.ev.encoding = pr.stats.encoding;
    if (pr.ncolumns) {
        ev->u.ev.columns = sl_arena_alloc(&ev->arena, pr.ncolumns * sizeof(char *));
        if (!ev->u.ev.columns) {
            sl_msg_unref(ev);
            rc = SL_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < pr.ncolumns; i++)
            ev->u.ev.columns[i] = sl_arena_strdup(&ev->arena, pr.columns[i]);
        ev->u.ev.ncolumns = (uint32_t)pr.ncolumns;
    }
    if (pr.rb.nunmapped) {
        ev->u.ev.unmapped = sl_arena_alloc(&ev->arena, pr.rb.nunmapped * sizeof(char *));
        if (!ev->u.ev.unmapped) {
            sl_msg_unref(ev);
            rc = SL_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < pr.rb.nunmapped; i++)
            ev->u.ev.unmapped[i] = sl_arena_strdup(&ev->arena, pr.rb.unmapped[i]);
        ev->u.ev.nunmapped = (uint32_t)pr.rb.nunmapped;
    }
    sl_debug("parser", "run %s: %llu rows sealed", f->run_id, (unsigned long long)pr.rows);
    rc = sl_emit(em, SL_TOPIC_RUNS, ev);
out:
    sl_record_build_cleanup(&pr.rb);
    for (size_t i = 0; i < pr.ncolumns; i++)
        free(pr.columns[i]);
    free(pr.columns);
    close(fd);
    return rc;
}

static const char *const parser_inputs[] = {SL_TOPIC_FILES, NULL};

const struct sl_stage sl_stage_parser = {
    .name = "parser",
    .inputs = parser_inputs,
    .init = parser_init,
    .process = parser_process,
    .destroy = parser_destroy,
};
