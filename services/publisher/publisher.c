/*
 * The publisher stage: valid records to the destination, rejections to the
 * run ledger, and each run finalized exactly once.
 *
 * A run is complete when it failed or was skipped, or when its published (or
 * staged) + rejected rows reach the parser's sealed count, whatever order
 * the topics delivered them in. Then the destination's writes become
 * visible (or are discarded when the run failed), the ledger writes the
 * summary, the last-success hash is kept for skip_unchanged, and a FINAL
 * event goes to the runs topic.
 *
 * Two ways to keep the count:
 * - durable (a sink with sync/finalize: postgres): the run's progress lives
 *   in the destination database beside the staged rows (sink.h), so that any
 *   number of publishers share a run, a redelivered or repeated row counts
 *   once, and a publisher killed at any point loses nothing: the messages
 *   after its last Kafka commit come again, and syncing them changes nothing
 *   but lets the completion check run again. Records and rejected rows are
 *   buffered and synced every SYNC_ROWS and before each commit (flush);
 *   the ledger's rejected rows are written before their sync counts them.
 * - in memory (the NDJSON file sink of embedded mode): counted here.
 *
 * Records of a run that is already final (a failed run's stragglers) are
 * dropped.
 *
 * Connections stay bounded however many runs are open at once (the
 * gateway's webhooks make a run of every delivery): at most MAX_OPEN_RUNS
 * runs hold their outputs (a sink and a ledger: two PostgreSQL connections
 * each) open. A durable run can let go of them at any time, its progress
 * being in the database: before a run opens its outputs past the bound, the
 * least recently used open durable runs are synced (which may finalize
 * them) and closed, and they open again on their next message. Reopening is
 * what another publisher sharing the run does: the sink's open prepares the
 * table idempotently, and its state (staging and undo tables, the progress
 * row, what was applied) is read from the database at each sync. Closed
 * sinks and ledgers give their connections to the idle pool (pg.h) for the
 * next open. In-memory runs (file sink) keep their outputs until final.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/sink.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define MAX_DONE 64
/* records and rejections buffered per run before a sync (5000 cost about
 * 0.5 s more of PostgreSQL a million rows: each sync has fixed costs) */
#define SYNC_ROWS 20000
/* runs with their outputs open at most (a durable sink and a postgres ledger
 * hold a connection each), beside the idle pool's SL_PG_POOL_MAX */
#define MAX_OPEN_RUNS 16

struct run {
    struct run *next;
    char *run_id;
    char *job_id;
    uint32_t job_version;
    const struct sl_job *job;
    struct sl_sink *sink;
    struct sl_ledger *lg;
    bool sink_tried; /* open_sink was called (it may have failed) */
    bool durable;    /* the sink keeps the progress (sync/finalize) */
    bool closed;     /* durable, outputs closed to bound the open runs: reopened on demand */
    uint64_t used;   /* when the run last had a message (publisher.tick) */
    /* in memory: everything; durable: the facts not yet synced */
    struct sl_counts counts;
    bool sealed, failed, skipped, fetched;
    uint64_t sealed_count;
    char *reason;
    char sha256[65];
    uint64_t bytes;
    int64_t started_at;
    /* durable: what the next sync records */
    bool facts;                  /* some fact above is new */
    struct sl_rejected_row *rej; /* rejected rows (already given to the ledger) */
    size_t nrej, crej;
    size_t pending; /* records and rejections since the last sync */
};

struct publisher {
    const struct sl_stage_env *env;
    struct run *runs;
    char *done[MAX_DONE]; /* run ids finalized lately */
    size_t ndone;
    size_t nopen;     /* durable runs with their sink open */
    uint64_t retired; /* runs retired so far: whether a sync finalized its run */
    uint64_t tick;    /* messages processed: the runs' clock for closing the least recently used */
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
    free(r->rej);
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
        /* a durable run goes on in the database (another publisher, or this
         * one restarted, finishes it); an in-memory one is lost: discard */
        if (r->sink && !r->durable)
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

static void set_reason(struct run *r, const char *why)
{
    free(r->reason);
    r->reason = why ? strdup(why) : NULL;
}

static int sync_run(struct publisher *p, struct run *r, struct sl_emitter *em);

/* Closes the outputs of r (durable, sink open) after syncing what it holds,
 * which may finalize and retire it: its sink, and its ledger when that can be
 * opened again without loss (one with flush: nothing left in memory). The
 * run opens them again on its next message (open_outputs). */
static int close_outputs(struct publisher *p, struct run *r, struct sl_emitter *em)
{
    uint64_t retired = p->retired;
    int rc = r->pending || r->facts || r->nrej ? sync_run(p, r, em) : 0;
    if (rc || p->retired != retired)
        return rc; /* failed (r unchanged), or final and gone */
    sl_sink_destroy(r->sink);
    r->sink = NULL;
    if (r->lg && r->lg->ops->flush) {
        sl_ledger_destroy(r->lg);
        r->lg = NULL;
    }
    free(r->rej);
    r->rej = NULL;
    r->crej = 0;
    r->closed = true;
    p->nopen--;
    return 0;
}

/* Before a run other than keep opens its sink: closes the least recently
 * used durable runs until fewer than MAX_OPEN_RUNS hold their outputs. A
 * failed sync is returned as today's (the caller's message is retried when
 * it is retriable: nothing of it was done yet), except a poison one, which
 * is no fault of the caller's message: that run stays open for now (its
 * buffer is synced again by the next flush) and the bound is exceeded. */
static int make_room(struct publisher *p, const struct run *keep, struct sl_emitter *em)
{
    while (p->nopen >= MAX_OPEN_RUNS) {
        struct run *lru = NULL;
        for (struct run *r = p->runs; r; r = r->next)
            if (r != keep && r->sink && r->durable && (!lru || r->used < lru->used))
                lru = r;
        if (!lru)
            return 0;
        int rc = close_outputs(p, lru, em);
        if (rc && sl_err_class(rc) == SL_ERRCLASS_POISON) {
            sl_warn("publisher", "run %s cannot be closed (%s): %zu runs stay open", lru->run_id,
                    sl_err_str(rc), p->nopen + 1);
            return 0;
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Opens the ledger and the sink of a run on its first message, and again
 * on the first message after they were closed (close_outputs). A failure to
 * open them again is retriable: they opened before, so the server is away
 * or full (the message is tried again; nothing of it was done). */
static int open_outputs(struct publisher *p, struct run *r, struct sl_emitter *em)
{
    char err[512] = "";
    if (!r->job)
        return 0;
    bool want_sink = !r->sink && (!r->sink_tried || r->closed) && p->env->open_sink;
    int rc = want_sink ? make_room(p, r, em) : 0;
    if (rc)
        return rc;
    if (!r->lg && p->env->open_ledger) {
        r->lg = p->env->open_ledger(r->job, r->run_id, p->env, err, sizeof(err));
        if (!r->lg) {
            sl_error("publisher", "run %s: %s", r->run_id, err);
            return r->closed ? SL_ERR_RETRY : SL_ERR_IO;
        }
    }
    if (want_sink && r->closed) {
        if (!(r->sink = p->env->open_sink(r->job, r->run_id, p->env, err, sizeof(err)))) {
            sl_error("publisher", "run %s: cannot open the destination again: %s", r->run_id, err);
            if (r->lg && r->lg->ops->flush) { /* closed, as before */
                sl_ledger_destroy(r->lg);
                r->lg = NULL;
            }
            return SL_ERR_RETRY;
        }
        r->closed = false;
        p->nopen++;
    } else if (want_sink) {
        r->sink_tried = true;
        r->sink = p->env->open_sink(r->job, r->run_id, p->env, err, sizeof(err));
        if (!r->sink) {
            if (!r->failed)
                set_reason(r, err);
            r->failed = true;
            r->facts = true;
        } else {
            r->durable = r->sink->ops->sync && r->sink->ops->finalize;
            p->nopen += r->durable;
        }
    }
    return 0;
}

static void remember_done(struct publisher *p, const char *run_id)
{
    size_t slot = p->ndone++ % MAX_DONE;
    free(p->done[slot]);
    p->done[slot] = strdup(run_id);
}

/* Forgets r (finalized) and sends its FINAL event ev, if any. */
static int retire(struct publisher *p, struct run *r, struct sl_msg *ev, struct sl_emitter *em)
{
    /* unlink and free the run before emitting: emit may block */
    for (struct run **pp = &p->runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    remember_done(p, r->run_id);
    if (r->sink && r->durable)
        p->nopen--;
    p->retired++;
    run_free(r);
    return ev ? sl_emit(em, SL_TOPIC_RUNS, ev) : 0;
}

/* Writes the summary to the ledger, keeps the last-success hash, and builds
 * the FINAL event when this call finished the run (*ev NULL otherwise). */
static int conclude(struct publisher *p, struct run *r, struct sl_run_summary *sum,
                    struct sl_msg **ev)
{
    char err[512] = "";
    *ev = NULL;
    int lr = 0;
    if (r->lg && (lr = r->lg->ops->finish(r->lg, sum, err, sizeof(err))) < 0) {
        sl_error("publisher", "run %s: %s", r->run_id, err);
        if (sl_err_class(lr) == SL_ERRCLASS_RETRIABLE)
            return lr;
        sum->status = "failed";
        if (!sum->reason)
            sum->reason = err;
    }
    bool ok = strcmp(sum->status, "failed") != 0 && strcmp(sum->status, "skipped") != 0;
    if (ok && sum->sha256 && r->job)
        p->env->st->ops->set_last_sha(p->env->st, r->job->id, sum->sha256);
    p->env->st->ops->end_run(p->env->st, r->run_id);
    if (lr == 1)
        return 0; /* finished before (another publisher, or us before a crash) */

    char labels[64];
    snprintf(labels, sizeof(labels), "status=\"%s\"", sum->status);
    sl_counter_add(sl_metrics_counter("sluice_runs_total", "runs finished, by status", labels), 1);
    const struct sl_counts *c = &sum->counts;
    sl_info("publisher", "run %s %s: %llu read, %llu published, %llu rejected%s%s", r->run_id,
            sum->status, (unsigned long long)c->read, (unsigned long long)c->published,
            (unsigned long long)c->rejected, sum->reason ? ": " : "",
            sum->reason ? sum->reason : "");
    struct sl_msg *m = sl_msg_new(SL_MSG_RUN_EVENT, r->run_id, r->job_id, r->job_version);
    if (!m)
        return SL_ERR_NOMEM;
    m->u.ev.kind = SL_EV_FINAL;
    m->u.ev.stage = "publisher";
    m->u.ev.status = sl_arena_strdup(&m->arena, sum->status);
    m->u.ev.reason = sum->reason ? sl_arena_strdup(&m->arena, sum->reason) : NULL;
    m->u.ev.counts = *c;
    m->u.ev.record_count = c->read;
    if (sum->sha256)
        snprintf(m->u.ev.sha256, sizeof(m->u.ev.sha256), "%s", sum->sha256);
    m->u.ev.bytes = sum->bytes;
    m->u.ev.at = sum->finished_at;
    *ev = m;
    return 0;
}

/* A job of several targets (job.h), in the services: the run of target i,
 * finished and not failed, hands the file to target i+1, as the fetcher
 * would: its FETCHED facts and the FileFetched of the blob the fetcher
 * stored for the first target (<blob_dir>/<first target's id>/<run>/), the
 * run id "<run>-t<i+2>". In embedded mode `sluice run` runs the targets. */
static int chain_target(struct publisher *p, const struct run *r, const struct sl_run_summary *sum,
                        struct sl_emitter *em)
{
    const char *hash = r->job_id ? strchr(r->job_id, '#') : NULL;
    if (p->env->embedded || !hash || !p->env->blob_dir || !strcmp(sum->status, "failed") ||
        !strcmp(sum->status, "skipped"))
        return 0;
    char err[512] = "", parent_id[160];
    snprintf(parent_id, sizeof(parent_id), "%.*s", (int)(hash - r->job_id), r->job_id);
    const struct sl_job *parent =
        sl_jobs_get(p->env->jobs, parent_id, r->job_version, err, sizeof(err));
    size_t i = 0;
    while (parent && i < parent->ntargets && strcmp(parent->targets[i]->id, r->job_id))
        i++;
    if (!parent || i + 1 >= parent->ntargets)
        return 0; /* the last target (or a job that changed: nothing to chain) */
    const struct sl_job *next = parent->targets[i + 1];
    char root[64], run_id[96];
    /* the root run id: the UUID before any "-t<n>" */
    const char *suffix = strstr(r->run_id, "-t");
    snprintf(root, sizeof(root), "%.*s", suffix ? (int)(suffix - r->run_id) : 63, r->run_id);
    snprintf(run_id, sizeof(run_id), "%.63s-t%zu", root, i + 2);
    /* the file the first target's run fetched */
    char *jd = sl_path_join(p->env->blob_dir, parent->targets[0]->id);
    char *dir = jd ? sl_path_join(jd, root) : NULL;
    char *blob = NULL, name[256] = "";
    DIR *dh = dir ? opendir(dir) : NULL;
    for (struct dirent *de; dh && !blob && (de = readdir(dh));) {
        struct stat sb;
        char *path = de->d_name[0] != '.' ? sl_path_join(dir, de->d_name) : NULL;
        if (path && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && !strstr(de->d_name, ".part")) {
            blob = path;
            snprintf(name, sizeof(name), "%s", de->d_name);
        } else {
            free(path);
        }
    }
    if (dh)
        closedir(dh);
    free(jd);
    int rc = 0;
    if (!blob) {
        sl_error("publisher", "run %s: the file of run %s is not in %s: target %s not run",
                 r->run_id, root, dir ? dir : p->env->blob_dir, next->object);
        free(dir);
        return 0;
    }
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, run_id, next->id, r->job_version);
    struct sl_msg *f = sl_msg_new(SL_MSG_FILE, run_id, next->id, r->job_version);
    int64_t now = sl_now_us();
    if (!ev || !f || !(ev->u.ev.source_name = sl_arena_strdup(&ev->arena, name)) ||
        !(f->u.file.blob = sl_arena_strdup(&f->arena, blob)) ||
        !(f->u.file.file_name = sl_arena_strdup(&f->arena, name))) {
        rc = SL_ERR_NOMEM;
    } else {
        ev->u.ev.kind = SL_EV_FETCHED;
        ev->u.ev.stage = "publisher";
        ev->u.ev.at = now;
        ev->u.ev.bytes = sum->bytes;
        snprintf(ev->u.ev.sha256, sizeof(ev->u.ev.sha256), "%s", sum->sha256 ? sum->sha256 : "");
        memcpy(f->u.file.sha256, ev->u.ev.sha256, sizeof(f->u.file.sha256));
        f->u.file.bytes = sum->bytes;
        f->u.file.fetched_at = now;
        ev->key = ev->run_id;
        f->key = f->run_id;
        sl_info("publisher", "run %s of target %s done: run %s of target %s reads %s", r->run_id,
                r->job->object, run_id, next->object, blob);
        rc = sl_emit(em, SL_TOPIC_RUNS, ev);
        ev = NULL;
        if (rc == 0)
            rc = sl_emit(em, SL_TOPIC_FILES, f);
        f = NULL;
    }
    sl_msg_unref(ev);
    sl_msg_unref(f);
    free(blob);
    free(dir);
    return rc;
}

/* ---- in memory ---------------------------------------------------------- */

static const char *run_status(const struct run *r)
{
    if (r->failed)
        return "failed";
    if (r->skipped)
        return "skipped";
    return r->counts.rejected ? "completed_with_errors" : "succeeded";
}

static int finalize(struct publisher *p, struct run *r, struct sl_emitter *em)
{
    char err[512] = "";
    int rc = open_outputs(p, r, em);
    if (rc)
        return rc;
    if (r->sink) {
        bool ok = !r->failed && !r->skipped;
        r->sink->keep_unseen = r->counts.rejected > 0;
        if (r->sink->ops->finish(r->sink, ok, err, sizeof(err)) && ok) {
            r->failed = true;
            set_reason(r, err);
        } else if (ok && r->sink->ops->counts) {
            r->sink->ops->counts(r->sink, &r->counts); /* the batches' real results */
        }
    }
    if (r->failed) {
        /* the sink discarded the run's writes: nothing was published */
        r->counts.published = r->counts.created = r->counts.updated = 0;
        r->counts.unchanged = r->counts.not_created = 0;
    }
    r->counts.read = r->sealed ? r->sealed_count : r->counts.read;
    struct sl_run_summary sum = {
        .run_id = r->run_id,
        .job = r->job ? r->job->name : r->job_id,
        .status = run_status(r),
        .reason = r->reason,
        .started_at = r->started_at,
        .finished_at = sl_now_us(),
        .sha256 = r->sha256[0] ? r->sha256 : NULL,
        .bytes = r->bytes,
        .counts = r->counts,
    };
    struct sl_msg *ev = NULL;
    if ((rc = conclude(p, r, &sum, &ev)))
        return rc;
    if (ev && (rc = chain_target(p, r, &sum, em)) != 0) {
        sl_msg_unref(ev);
        return rc;
    }
    return retire(p, r, ev, em);
}

static bool complete(const struct run *r)
{
    if (r->failed || r->skipped)
        return true;
    return r->sealed &&
           r->counts.published + r->counts.rejected + r->counts.not_created >= r->sealed_count;
}

/* ---- durable ------------------------------------------------------------ */

static bool durable_complete(const struct sl_run_progress *pr)
{
    if (pr->final || pr->f.failed || pr->f.skipped)
        return true;
    return pr->f.sealed && pr->staged + pr->rejected >= pr->f.sealed_count;
}

static int finalize_durable(struct publisher *p, struct run *r, const struct sl_run_progress *pr,
                            struct sl_emitter *em)
{
    char err[512] = "";
    struct sl_run_progress fin;
    struct sl_counts c = {0};
    bool success = !pr->f.failed && !pr->f.skipped;
    int rc = r->sink->ops->finalize(r->sink, success, pr->rejected > 0, &fin, &c, err, sizeof(err));
    if (rc < 0) {
        sl_error("publisher", "run %s: cannot finalize: %s", r->run_id, err);
        return rc;
    }
    const char *status = fin.f.failed    ? "failed"
                         : fin.f.skipped ? "skipped"
                         : fin.rejected  ? "completed_with_errors"
                                         : "succeeded";
    bool failed = fin.f.failed;
    struct sl_run_summary sum = {
        .run_id = r->run_id,
        .job = r->job->name,
        .status = status,
        .reason = fin.f.reason,
        .started_at = fin.f.started_at ? fin.f.started_at : r->started_at,
        .finished_at = sl_now_us(),
        .sha256 = fin.f.sha256[0] ? fin.f.sha256 : NULL,
        .bytes = fin.f.bytes,
        .counts =
            {
                .read = fin.f.sealed ? fin.f.sealed_count : fin.staged + fin.rejected,
                .published = failed ? 0 : c.published,
                .created = failed ? 0 : c.created,
                .updated = failed ? 0 : c.updated,
                .unchanged = failed ? 0 : c.unchanged,
                .not_created = failed ? 0 : c.not_created,
                .rejected = fin.rejected,
                .duplicates = fin.duplicates + c.duplicates,
            },
    };
    struct sl_msg *ev = NULL;
    if ((rc = conclude(p, r, &sum, &ev)))
        return rc;
    if (ev && (rc = chain_target(p, r, &sum, em)) != 0) {
        sl_msg_unref(ev);
        return rc;
    }
    return retire(p, r, ev, em);
}

/* Records what r buffered (rejected rows into the ledger first, then the
 * sink's sync) and finalizes the run when it is complete. */
static int sync_run(struct publisher *p, struct run *r, struct sl_emitter *em)
{
    char err[512] = "";
    int rc;
    if (r->lg && r->lg->ops->flush && (rc = r->lg->ops->flush(r->lg, err, sizeof(err)))) {
        sl_error("publisher", "run %s: %s", r->run_id, err);
        return rc;
    }
    struct sl_run_facts fx = {
        .fetched = r->fetched,
        .sealed = r->sealed,
        .failed = r->failed,
        .skipped = r->skipped,
        .sealed_count = r->sealed_count,
        .bytes = r->bytes,
        .started_at = r->started_at,
        .reason = r->reason,
    };
    memcpy(fx.sha256, r->sha256, sizeof(fx.sha256));
    struct sl_run_progress pr;
    rc = r->sink->ops->sync(r->sink, r->facts ? &fx : NULL, r->rej, r->nrej, &pr, err, sizeof(err));
    if (rc) {
        sl_error("publisher", "run %s: %s", r->run_id, err);
        return rc;
    }
    r->nrej = 0;
    r->pending = 0;
    r->facts = false;
    return durable_complete(&pr) ? finalize_durable(p, r, &pr, em) : 0;
}

static int publisher_flush(void *state, struct sl_emitter *em)
{
    struct publisher *p = state;
    int rc = 0;
    for (struct run *r = p->runs, *next; r && rc == 0; r = next) {
        next = r->next; /* sync_run may retire r */
        if (r->durable && (r->pending || r->facts))
            rc = sync_run(p, r, em);
    }
    return rc;
}

static bool has_code(const struct sl_record *rec, const char *code)
{
    for (uint32_t i = 0; i < rec->nprob; i++)
        if (!strcmp(rec->prob[i].code, code))
            return true;
    return false;
}

static int add_rejected(struct run *r, const struct sl_msg *m)
{
    if (r->nrej == r->crej) {
        size_t n = r->crej ? r->crej * 2 : 256;
        struct sl_rejected_row *nr = realloc(r->rej, n * sizeof(*nr));
        if (!nr)
            return SL_ERR_NOMEM;
        r->rej = nr;
        r->crej = n;
    }
    r->rej[r->nrej++] = (struct sl_rejected_row){
        .row = m->u.rec.row,
        .duplicate = has_code(&m->u.rec, "duplicate_key"),
    };
    return 0;
}

static int process_record(struct run *r, const struct sl_msg *m)
{
    enum sl_write_result res = SL_WRITE_CREATED;
    int rc = r->sink ? r->sink->ops->write(r->sink, m, m->u.rec.duplicate, &res) : 0;
    if (rc) {
        const char *why = r->sink->ops->last_error ? r->sink->ops->last_error(r->sink) : NULL;
        if (r->durable && sl_err_class(rc) != SL_ERRCLASS_FATAL && rc != SL_ERR_NOMEM)
            return rc; /* e.g. a row number out of range: poison */
        r->failed = r->facts = true;
        set_reason(r, why ? why : "cannot write to the destination");
        return 0;
    }
    r->pending++;
    if (r->durable)
        return 0;
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
    return 0;
}

static int process_event(struct publisher *p, struct run *r, const struct sl_run_event *ev,
                         struct sl_emitter *em)
{
    int rc = 0;
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
            set_reason(r, ev->reason);
        }
        break;
    case SL_EV_SEALED:
        r->sealed = true;
        r->sealed_count = ev->record_count;
        if ((rc = open_outputs(p, r, em)) == 0 && r->lg && r->lg->ops->columns)
            rc = r->lg->ops->columns(r->lg, ev);
        break;
    case SL_EV_FAILED:
        r->failed = true;
        set_reason(r, ev->reason ? ev->reason : "the run failed");
        if (ev->at && !r->fetched)
            r->started_at = ev->at;
        break;
    default:
        return 0;
    }
    r->facts = true;
    return rc;
}

static int publisher_process(void *state, const char *topic, struct sl_msg *m,
                             struct sl_emitter *em)
{
    struct publisher *p = state;
    (void)topic;
    if (!m->run_id)
        return 0;
    if (m->kind == SL_MSG_RUN_EVENT &&
        (m->u.ev.kind == SL_EV_FINAL || m->u.ev.kind == SL_EV_PROGRESS))
        return 0;
    if (m->kind != SL_MSG_RECORD && m->kind != SL_MSG_REJECTION && m->kind != SL_MSG_RUN_EVENT)
        return SL_ERR_INVALID;
    struct run *r = p->runs && !strcmp(p->runs->run_id, m->run_id) ? p->runs : NULL;
    if (!r) {
        if (is_done(p, m->run_id))
            return 0;
        char err[512] = "";
        if (!(r = find_run(p, m, err, sizeof(err))))
            return SL_ERR_NOMEM;
    }
    r->used = ++p->tick;
    int rc = open_outputs(p, r, em);
    if (rc)
        return rc;
    /* a full buffer is synced before this message joins it, so that a
     * failed sync retried with this message buffers it only once */
    if (r->durable && r->pending >= SYNC_ROWS) {
        if ((rc = sync_run(p, r, em)))
            return rc;
        if (is_done(p, m->run_id))
            return 0; /* that sync finalized the run */
    }
    switch (m->kind) {
    case SL_MSG_RECORD:
        if (!r->failed || r->durable)
            rc = process_record(r, m);
        break;
    case SL_MSG_REJECTION:
        if (r->failed && !r->durable)
            break;
        if (r->lg && (rc = r->lg->ops->reject(r->lg, m)) != 0)
            break;
        r->pending++;
        if (r->durable) {
            rc = add_rejected(r, m);
            break;
        }
        r->counts.rejected++;
        if (has_code(&m->u.rec, "duplicate_key"))
            r->counts.duplicates++;
        break;
    default:
        rc = process_event(p, r, &m->u.ev, em);
        if (rc == 0 && r->durable)
            return sync_run(p, r, em); /* facts are few: record them at once */
        break;
    }
    if (rc || r->durable)
        return rc;
    return complete(r) ? finalize(p, r, em) : 0;
}

static const char *const publisher_inputs[] = {SL_TOPIC_VALID, SL_TOPIC_REJECTED, SL_TOPIC_RUNS,
                                               NULL};

const struct sl_stage sl_stage_publisher = {
    .name = "publisher",
    .inputs = publisher_inputs,
    .init = publisher_init,
    .process = publisher_process,
    .flush = publisher_flush,
    .destroy = publisher_destroy,
};
