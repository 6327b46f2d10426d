/*
 * The publisher stage: valid records to the destination, rejections to the
 * run ledger, and each run finalized exactly once.
 *
 * Per run it keeps the counters and what the run events said (fetched,
 * sealed with the record count, failed, skipped). A run is complete when it
 * failed or was skipped, or when published + rejected + not_created rows
 * equal the sealed count, whatever order the topics delivered them in. Then
 * the sink is finished (the writes become visible, or are discarded when the
 * run failed), the ledger writes the summary, the last-success hash is kept
 * for skip_unchanged, and a FINAL event goes to the runs topic. Records of a
 * run that is already final (a failed run's stragglers) are dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/sink.h"
#include "sluice/stage.h"
#include "sluice/state.h"

#define MAX_DONE 64

struct run {
    struct run *next;
    char *run_id;
    char *job_id;
    uint32_t job_version;
    const struct sl_job *job;
    struct sl_sink *sink;
    struct sl_ledger *lg;
    struct sl_counts counts;
    bool sealed, failed, skipped, fetched;
    uint64_t sealed_count;
    char *reason;
    char sha256[65];
    uint64_t bytes;
    int64_t started_at;
};

struct publisher {
    const struct sl_stage_env *env;
    struct run *runs;
    char *done[MAX_DONE]; /* run ids finalized lately */
    size_t ndone;
};

static int publisher_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct publisher *p = calloc(1, sizeof(*p));
    if (!p)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    p->env = env;
    *state = p;
    return 0;
}

static void run_free(struct run *r)
{
    if (!r)
        return;
    sl_sink_destroy(r->sink);
    sl_ledger_destroy(r->lg);
    free(r->run_id);
    free(r->job_id);
    free(r->reason);
    free(r);
}

static void publisher_destroy(void *state)
{
    struct publisher *p = state;
    if (!p)
        return;
    while (p->runs) {
        struct run *r = p->runs;
        p->runs = r->next;
        if (r->sink)
            r->sink->ops->finish(r->sink, false, NULL, 0);
        run_free(r);
    }
    for (size_t i = 0; i < MAX_DONE; i++)
        free(p->done[i]);
    free(p);
}

static bool is_done(const struct publisher *p, const char *run_id)
{
    for (size_t i = 0; i < MAX_DONE; i++)
        if (p->done[i] && !strcmp(p->done[i], run_id))
            return true;
    return false;
}

static struct run *find_run(struct publisher *p, const struct sl_msg *m, char *err, size_t errsz)
{
    for (struct run *r = p->runs; r; r = r->next)
        if (!strcmp(r->run_id, m->run_id))
            return r;
    struct run *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->run_id = strdup(m->run_id);
    r->job_id = strdup(m->job_id ? m->job_id : "");
    r->job_version = m->job_version;
    r->started_at = sl_now_us();
    if (!r->run_id || !r->job_id) {
        run_free(r);
        return NULL;
    }
    r->job = sl_jobs_get(p->env->jobs, r->job_id, r->job_version, err, errsz);
    if (!r->job) {
        r->failed = true;
        r->reason = strdup(err);
    }
    r->next = p->runs;
    p->runs = r;
    return r;
}

/* Opens the sink and the ledger of a run on its first record. */
static int open_outputs(struct publisher *p, struct run *r)
{
    char err[512] = "";
    if (!r->job)
        return 0;
    if (!r->lg && p->env->open_ledger) {
        r->lg = p->env->open_ledger(r->job, r->run_id, p->env, err, sizeof(err));
        if (!r->lg) {
            sl_error("publisher", "run %s: %s", r->run_id, err);
            return SL_ERR_IO;
        }
    }
    if (!r->sink && !r->failed && !r->skipped && p->env->open_sink) {
        r->sink = p->env->open_sink(r->job, r->run_id, p->env, err, sizeof(err));
        if (!r->sink) {
            r->failed = true;
            free(r->reason);
            r->reason = strdup(err);
        }
    }
    return 0;
}

static const char *run_status(const struct run *r)
{
    if (r->failed)
        return "failed";
    if (r->skipped)
        return "skipped";
    return r->counts.rejected ? "completed_with_errors" : "succeeded";
}

static void remember_done(struct publisher *p, const char *run_id)
{
    size_t slot = p->ndone++ % MAX_DONE;
    free(p->done[slot]);
    p->done[slot] = strdup(run_id);
}

static int finalize(struct publisher *p, struct run *r, struct sl_emitter *em)
{
    char err[512] = "";
    int rc = open_outputs(p, r);
    if (rc)
        return rc;
    if (r->sink) {
        bool ok = !r->failed && !r->skipped;
        r->sink->keep_unseen = r->counts.rejected > 0;
        if (r->sink->ops->finish(r->sink, ok, err, sizeof(err)) && ok) {
            r->failed = true;
            free(r->reason);
            r->reason = strdup(err);
        } else if (ok && r->sink->ops->counts) {
            r->sink->ops->counts(r->sink, &r->counts); /* the batches' real results */
        }
    }
    const char *status = run_status(r);
    if (r->failed) {
        /* the sink discarded the run's writes: nothing was published */
        r->counts.published = r->counts.created = r->counts.updated = 0;
        r->counts.unchanged = r->counts.not_created = 0;
    }
    r->counts.read = r->sealed ? r->sealed_count : r->counts.read;
    struct sl_run_summary sum = {
        .run_id = r->run_id,
        .job = r->job ? r->job->name : r->job_id,
        .status = status,
        .reason = r->reason,
        .started_at = r->started_at,
        .finished_at = sl_now_us(),
        .sha256 = r->sha256[0] ? r->sha256 : NULL,
        .bytes = r->bytes,
        .counts = r->counts,
    };
    if (r->lg && r->lg->ops->finish(r->lg, &sum, err, sizeof(err))) {
        sl_error("publisher", "run %s: %s", r->run_id, err);
        status = sum.status = "failed";
        r->failed = true;
        if (!r->reason)
            r->reason = strdup(err);
        sum.reason = r->reason;
    }
    if (!r->failed && !r->skipped && r->sha256[0] && r->job)
        p->env->st->ops->set_last_sha(p->env->st, r->job->id, r->sha256);
    p->env->st->ops->end_run(p->env->st, r->run_id);

    sl_info("publisher", "run %s %s: %llu read, %llu published, %llu rejected%s%s", r->run_id,
            status, (unsigned long long)r->counts.read, (unsigned long long)r->counts.published,
            (unsigned long long)r->counts.rejected, r->reason ? ": " : "",
            r->reason ? r->reason : "");
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, r->run_id, r->job_id, r->job_version);
    if (!ev)
        return SL_ERR_NOMEM;
    ev->u.ev.kind = SL_EV_FINAL;
    ev->u.ev.stage = "publisher";
    ev->u.ev.status = sl_arena_strdup(&ev->arena, status);
    ev->u.ev.reason = r->reason ? sl_arena_strdup(&ev->arena, r->reason) : NULL;
    ev->u.ev.counts = r->counts;
    ev->u.ev.record_count = r->counts.read;
    memcpy(ev->u.ev.sha256, r->sha256, sizeof(r->sha256));
    ev->u.ev.bytes = r->bytes;
    ev->u.ev.at = sum.finished_at;

    /* unlink and free the run before emitting: emit may block */
    for (struct run **pp = &p->runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    remember_done(p, r->run_id);
    run_free(r);
    return sl_emit(em, SL_TOPIC_RUNS, ev);
}

static bool complete(const struct run *r)
{
    if (r->failed || r->skipped)
        return true;
    return r->sealed &&
           r->counts.published + r->counts.rejected + r->counts.not_created >= r->sealed_count;
}

static bool has_code(const struct sl_record *rec, const char *code)
{
    for (uint32_t i = 0; i < rec->nprob; i++)
        if (!strcmp(rec->prob[i].code, code))
            return true;
    return false;
}

static int publisher_process(void *state, const char *topic, struct sl_msg *m,
                             struct sl_emitter *em)
{
    struct publisher *p = state;
    if (!m->run_id)
        return 0;
    if (m->kind == SL_MSG_RUN_EVENT &&
        (m->u.ev.kind == SL_EV_FINAL || m->u.ev.kind == SL_EV_PROGRESS))
        return 0;
    struct run *r = p->runs && !strcmp(p->runs->run_id, m->run_id) ? p->runs : NULL;
    if (!r) {
        if (is_done(p, m->run_id))
            return 0;
        char err[512] = "";
        if (!(r = find_run(p, m, err, sizeof(err))))
            return SL_ERR_NOMEM;
    }
    int rc = 0;
    switch (m->kind) {
    case SL_MSG_RECORD: {
        if ((rc = open_outputs(p, r)) != 0 || r->failed)
            break;
        enum sl_write_result res = SL_WRITE_CREATED;
        rc = r->sink ? r->sink->ops->write(r->sink, m, m->u.rec.duplicate, &res) : 0;
        if (rc) {
            const char *why = r->sink->ops->last_error ? r->sink->ops->last_error(r->sink) : NULL;
            r->failed = true;
            free(r->reason);
            r->reason = strdup(why ? why : "cannot write to the destination");
            rc = 0;
            break;
        }
        if (m->u.rec.duplicate)
            r->counts.duplicates++;
        switch (res) {
        case SL_WRITE_CREATED:
            r->counts.published++;
            r->counts.created++;
            break;
        case SL_WRITE_UPDATED:
            r->counts.published++;
            r->counts.updated++;
            break;
        case SL_WRITE_UNCHANGED:
            r->counts.published++;
            r->counts.unchanged++;
            break;
        case SL_WRITE_NOT_CREATED:
            r->counts.not_created++;
            break;
        }
        break;
    }
    case SL_MSG_REJECTION:
        if ((rc = open_outputs(p, r)) != 0 || r->failed)
            break;
        if (r->lg && (rc = r->lg->ops->reject(r->lg, m)) != 0)
            break;
        r->counts.rejected++;
        if (has_code(&m->u.rec, "duplicate_key"))
            r->counts.duplicates++;
        break;
    case SL_MSG_RUN_EVENT: {
        const struct sl_run_event *ev = &m->u.ev;
        switch (ev->kind) {
        case SL_EV_FETCHED:
        case SL_EV_SKIPPED:
            r->fetched = true;
            memcpy(r->sha256, ev->sha256, sizeof(r->sha256));
            r->bytes = ev->bytes;
            if (ev->at)
                r->started_at = ev->at;
            if (ev->kind == SL_EV_SKIPPED) {
                r->skipped = true;
                free(r->reason);
                r->reason = ev->reason ? strdup(ev->reason) : NULL;
            }
            break;
        case SL_EV_SEALED:
            r->sealed = true;
            r->sealed_count = ev->record_count;
            if ((rc = open_outputs(p, r)) == 0 && r->lg && r->lg->ops->columns)
                rc = r->lg->ops->columns(r->lg, ev->columns, ev->ncolumns, ev->delimiter,
                                         ev->encoding);
            break;
        case SL_EV_FAILED:
            r->failed = true;
            free(r->reason);
            r->reason = ev->reason ? strdup(ev->reason) : strdup("the run failed");
            if (ev->at && !r->fetched)
                r->started_at = ev->at;
            break;
        default:
            break;
        }
        break;
    }
    default:
        return SL_ERR_INVALID;
    }
    if (rc)
        return rc;
    if (complete(r))
        return finalize(p, r, em);
    return 0;
}

static const char *const publisher_inputs[] = {SL_TOPIC_VALID, SL_TOPIC_REJECTED, SL_TOPIC_RUNS,
                                               NULL};

const struct sl_stage sl_stage_publisher = {
    .name = "publisher",
    .inputs = publisher_inputs,
    .init = publisher_init,
    .process = publisher_process,
    .destroy = publisher_destroy,
};
