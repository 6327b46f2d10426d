/*
 * The fetcher stage: a JobTicket in, the run's source file out.
 *
 * It resolves the job's source (or the ticket's input override), takes the
 * file's SHA-256 and size, and either skips the run (the file equals that of
 * the last successful run and skip_unchanged holds) or announces the file to
 * the parser. With a blob directory the file is copied there under the run,
 * so that every run's source stays downloadable; without one (embedded mode)
 * the parser reads the file where it is.
 *
 * A service gets some tickets twice: the scheduler or `sluice submit` may
 * send one again after a crash, and Kafka hands a ticket out again when the
 * fetcher stopped before committing it. So with a control plane the fetcher
 * first locks the run's row in sluice_runs (recording the run when the ticket
 * names one the control plane lacks), and records the source's SHA-256 and
 * size on it as soon as the blob is stored. A ticket of a run whose source is
 * recorded fetches nothing: the stored blob is announced again (the stages
 * after the fetcher are idempotent by run and row), and a ticket of a run
 * that is already final is dropped with a log line. Embedded mode has no
 * control plane and fetches every ticket.
 *
 * Sources of this version: local files (a path relative to the job file, or
 * file://) in embedded mode. Remote sources (http, ftp, sftp, imap, s3) are
 * refused with a clear reason until the fetcher learns them.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define RUN_ID_MAX 64

struct fetcher {
    const struct sl_stage_env *env;
    PGconn *conn; /* the control plane (services only), connected on first use */
};

/* What the control plane holds of a run when its ticket comes. */
struct prior {
    char status[32];
    char sha256[65]; /* "" while the source is not recorded */
    uint64_t bytes;
};

static int fetcher_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct fetcher *f = calloc(1, sizeof(*f));
    if (!f)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    f->env = env;
    *state = f;
    return 0;
}

static void fetcher_destroy(void *state)
{
    struct fetcher *f = state;
    if (!f)
        return;
    PQfinish(f->conn);
    free(f);
}

static struct sl_msg *run_event(const struct sl_msg *t, enum sl_run_event_kind kind)
{
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, t->run_id, t->job_id, t->job_version);
    if (ev) {
        ev->u.ev.kind = kind;
        ev->u.ev.stage = "fetcher";
        ev->u.ev.at = sl_now_us();
    }
    return ev;
}

static int emit_failed(struct sl_emitter *em, const struct sl_msg *t, const char *reason)
{
    struct sl_msg *ev = run_event(t, SL_EV_FAILED);
    if (!ev)
        return SL_ERR_NOMEM;
    ev->u.ev.reason = sl_arena_strdup(&ev->arena, reason);
    sl_info("fetcher", "run %s failed: %s", t->run_id, reason);
    return sl_emit(em, SL_TOPIC_RUNS, ev);
}

/* Whether a run id can name a directory of the blob store: a UUID or the
 * like, never a path. */
static bool run_id_ok(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    return n > 0 && n <= RUN_ID_MAX &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == n;
}

/* Gives up the claim's transaction (if any) after a failure; a connection
 * that broke is dropped, to be made again on the next ticket. */
static void abort_claim(struct fetcher *f)
{
    if (f->conn && PQstatus(f->conn) == CONNECTION_OK)
        PQclear(PQexec(f->conn, "ROLLBACK"));
    if (f->conn && PQstatus(f->conn) != CONNECTION_OK) {
        PQfinish(f->conn);
        f->conn = NULL;
    }
}

/* Commits the claim's transaction. 0 or an sl_err (logged). */
static int end_claim(struct fetcher *f, const struct sl_msg *t)
{
    char err[512];
    int rc =
        sl_pg_exec(f->conn, "commit the run's claim", "COMMIT", 0, NULL, NULL, err, sizeof(err));
    if (rc) {
        sl_warn("fetcher", "run %s: %s", t->run_id, err);
        abort_claim(f);
    }
    return rc;
}

/* Locks the run's row in the control plane (recording the run when it is not
 * there) and reads what it holds into *pr. On success the transaction stays
 * open, for end_claim(). Returns 0, SL_ERR_INVALID when the ticket
 * contradicts the run's row, or the class of the database's failure (a lost
 * connection is retriable); failures are logged. */
static int claim_run(struct fetcher *f, const struct sl_msg *t, struct prior *pr)
{
    char err[512] = "", ver[24];
    if (!f->conn || PQstatus(f->conn) != CONNECTION_OK) {
        PQfinish(f->conn);
        f->conn = sl_pg_connect(f->env->control_url, SL_PG_CONNECT_TIMEOUT, err, sizeof(err));
        if (!f->conn) {
            sl_warn("fetcher", "run %s: %s", t->run_id, err);
            return SL_ERR_RETRY;
        }
    }
    snprintf(ver, sizeof(ver), "%u", t->job_version);
    const char *trigger =
        t->u.ticket.trigger && t->u.ticket.trigger[0] ? t->u.ticket.trigger : "unknown";
    const char *p1[] = {t->run_id, t->job_id, ver, trigger};
    PGresult *res = NULL;
    int rc = sl_pg_exec(f->conn, "begin the run's claim", "BEGIN", 0, NULL, NULL, err, sizeof(err));
    if (rc == 0)
        rc = sl_pg_exec(f->conn, "record the run",
                        "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status) "
                        "VALUES ($1, $2, $3::integer, $4, 'queued') ON CONFLICT (id) DO NOTHING",
                        4, p1, NULL, err, sizeof(err));
    if (rc == 0)
        rc = sl_pg_exec(f->conn, "read the run",
                        "SELECT status, coalesce(source_sha256, ''), coalesce(source_bytes, 0), "
                        "job_id, job_version FROM sluice_runs WHERE id = $1 FOR UPDATE",
                        1, p1, &res, err, sizeof(err));
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(err, sizeof(err), SL_ERR_RETRY, "run %s vanished from sluice_runs",
                       t->run_id);
    if (rc == 0 && (strcmp(PQgetvalue(res, 0, 3), t->job_id) || strcmp(PQgetvalue(res, 0, 4), ver)))
        rc = sl_seterr(err, sizeof(err), SL_ERR_INVALID,
                       "the ticket names job %s version %s, but the run is one of job %s "
                       "version %s",
                       t->job_id, ver, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4));
    if (rc == 0) {
        const char *sha = PQgetvalue(res, 0, 1);
        snprintf(pr->status, sizeof(pr->status), "%s", PQgetvalue(res, 0, 0));
        pr->sha256[0] = '\0';
        if (strlen(sha) == 64 && strspn(sha, "0123456789abcdef") == 64)
            memcpy(pr->sha256, sha, 65);
        else if (sha[0])
            sl_warn("fetcher", "run %s: ignoring source_sha256 '%.70s': not a SHA-256", t->run_id,
                    sha);
        pr->bytes = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
    }
    PQclear(res);
    if (rc) {
        sl_warn("fetcher", "run %s: %s", t->run_id, err);
        abort_claim(f);
    }
    return rc;
}

/* Records the fetched source on the claimed run's row and commits. */
static int record_source(struct fetcher *f, const struct sl_msg *t, const char *sha, uint64_t bytes)
{
    char err[512], num[24];
    snprintf(num, sizeof(num), "%llu", (unsigned long long)bytes);
    const char *params[] = {t->run_id, sha, num};
    int rc = sl_pg_exec(f->conn, "record the run's source",
                        "UPDATE sluice_runs SET source_sha256 = $2, source_bytes = $3::bigint, "
                        "status = CASE status WHEN 'queued' THEN 'running' ELSE status END "
                        "WHERE id = $1",
                        3, params, NULL, err, sizeof(err));
    if (rc) {
        sl_warn("fetcher", "run %s: %s", t->run_id, err);
        abort_claim(f);
        return rc;
    }
    return end_claim(f, t);
}

static bool is_final(const char *status)
{
    return strcmp(status, "queued") && strcmp(status, "running");
}

/* The blob an earlier delivery of the ticket stored for the run: the file of
 * the recorded size in the run's blob directory (caller frees), or NULL with
 * errbuf set. */
static char *stored_blob(const struct fetcher *f, const struct sl_msg *t, const struct prior *pr,
                         char *errbuf, size_t errsz)
{
    char *dir = sl_path_join(f->env->blob_dir, t->job_id);
    char *rundir = dir ? sl_path_join(dir, t->run_id) : NULL;
    free(dir);
    if (!rundir) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char *blob = NULL;
    DIR *d = opendir(rundir);
    if (!d) {
        sl_seterr(errbuf, errsz, SL_ERR_IO,
                  "the source of the run was fetched before, but its blob directory %s cannot "
                  "be read: %s",
                  rundir, strerror(errno));
        free(rundir);
        return NULL;
    }
    struct dirent *de;
    while (!blob && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *p = sl_path_join(rundir, de->d_name);
        struct stat sb;
        if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size == pr->bytes)
            blob = p;
        else
            free(p);
    }
    closedir(d);
    if (!blob)
        sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND,
                  "the source of the run was fetched before (sha256 %s, %llu bytes), but its "
                  "blob is no longer in %s",
                  pr->sha256, (unsigned long long)pr->bytes, rundir);
    free(rundir);
    return blob;
}

/* Resolves the source to a local path (caller frees), or NULL with errbuf. */
static char *local_path(const struct fetcher *f, const struct sl_job *job, const char *url,
                        char *errbuf, size_t errsz)
{
    const char *colon = strstr(url, "://");
    if (colon) {
        size_t sl = (size_t)(colon - url);
        if (sl == 4 && !strncmp(url, "file", 4)) {
            if (!f->env->embedded && !sl_path_allowed(url + 7, f->env->file_dirs)) {
                /* a missing file of an allowed directory is just missing */
                int e = access(url + 7, F_OK) ? errno : 0;
                char *dir = e ? sl_path_dir(url + 7) : NULL;
                bool missing = dir && sl_path_allowed(dir, f->env->file_dirs);
                free(dir);
                if (missing)
                    sl_seterr(errbuf, errsz, SL_ERR_INVALID, "cannot read source %s: %s", url + 7,
                              strerror(e));
                else
                    sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                              "file:// sources are only allowed in embedded mode or in the "
                              "directories of SLUICE_FILE_DIRS");
                return NULL;
            }
            return strdup(url + 7);
        }
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "source scheme '%.*s' is not supported by this version of the fetcher", (int)sl,
                  url);
        return NULL;
    }
    if (!f->env->embedded) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "a source without a scheme is a local path, only allowed in embedded mode");
        return NULL;
    }
    const char *dir = f->env->job_dir ? f->env->job_dir : job->dir;
    return sl_path_join(dir, url);
}

/* The fetched source of a run. */
struct fetched {
    char *path; /* where the source was read */
    char *blob; /* where the parser reads it */
    char sha256[65];
    uint64_t bytes;
};

static void fetched_cleanup(struct fetched *fx)
{
    free(fx->path);
    free(fx->blob);
}

/* Reads the source of the ticket's run into the blob store (or, without
 * one, hashes it where it is). 0; 1 when the run fails, with the reason in
 * errbuf; or an sl_err. */
static int fetch(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                 struct fetched *fx, char *err, size_t errsz)
{
    const char *src_url = t->u.ticket.input ? t->u.ticket.input : job->source.url;
    char *url = t->u.ticket.input ? strdup(src_url) : sl_env_expand(src_url, err, errsz);
    int rc = 1;
    if (!url) {
        if (!err[0])
            snprintf(err, errsz, "out of memory");
        return 1;
    }
    if (!(fx->path = local_path(f, job, url, err, errsz)))
        goto out;
    struct stat sb;
    if (stat(fx->path, &sb) || !S_ISREG(sb.st_mode)) {
        int e = errno;
        bool exists = access(fx->path, F_OK) == 0;
        snprintf(err, errsz, "cannot read source %s: %s", fx->path,
                 exists ? "not a regular file" : strerror(e));
        goto out;
    }
    if (f->env->blob_dir) {
        char *dir = sl_path_join(f->env->blob_dir, t->job_id);
        char *rundir = dir ? sl_path_join(dir, t->run_id) : NULL;
        const char *base = strrchr(fx->path, '/') ? strrchr(fx->path, '/') + 1 : fx->path;
        fx->blob = rundir ? sl_path_join(rundir, base) : NULL;
        if (!fx->blob || sl_mkdirs(rundir)) {
            snprintf(err, errsz, "cannot create blob directory %s: %s", rundir ? rundir : "?",
                     strerror(errno));
            free(dir);
            free(rundir);
            goto out;
        }
        free(dir);
        free(rundir);
        if (sl_sha256_copy(fx->path, fx->blob, fx->sha256, &fx->bytes)) {
            snprintf(err, errsz, "cannot copy source %s to %s: %s", fx->path, fx->blob,
                     strerror(errno));
            goto out;
        }
    } else {
        if (sl_sha256_file(fx->path, fx->sha256, &fx->bytes)) {
            snprintf(err, errsz, "cannot read source %s: %s", fx->path, strerror(errno));
            goto out;
        }
        if (!(fx->blob = strdup(fx->path))) {
            rc = SL_ERR_NOMEM;
            goto out;
        }
    }
    rc = 0;
out:
    free(url);
    return rc;
}

/* Announces the run's file: SKIPPED when it is unchanged since the last
 * successful run (and the job skips such files), else FETCHED on the runs
 * topic and the file on the files topic. */
static int announce(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                    const struct fetched *fx, int64_t started, struct sl_emitter *em)
{
    if (job->options.skip_unchanged && !t->u.ticket.force) {
        char last[65];
        if (f->env->st->ops->get_last_sha(f->env->st, job->id, last) == 0 &&
            !strcmp(last, fx->sha256)) {
            struct sl_msg *ev = run_event(t, SL_EV_SKIPPED);
            if (!ev)
                return SL_ERR_NOMEM;
            memcpy(ev->u.ev.sha256, fx->sha256, 65);
            ev->u.ev.bytes = fx->bytes;
            ev->u.ev.at = started;
            ev->u.ev.reason = "the source file is unchanged since the last successful run";
            ev->u.ev.source_name = sl_arena_strdup(&ev->arena, fx->path);
            return sl_emit(em, SL_TOPIC_RUNS, ev);
        }
    }
    struct sl_msg *ev = run_event(t, SL_EV_FETCHED);
    struct sl_msg *fm = sl_msg_new(SL_MSG_FILE, t->run_id, t->job_id, t->job_version);
    if (!ev || !fm) {
        sl_msg_unref(ev);
        sl_msg_unref(fm);
        return SL_ERR_NOMEM;
    }
    memcpy(ev->u.ev.sha256, fx->sha256, 65);
    ev->u.ev.bytes = fx->bytes;
    ev->u.ev.at = started;
    ev->u.ev.source_name = sl_arena_strdup(&ev->arena, fx->path);
    fm->u.file.blob = sl_arena_strdup(&fm->arena, fx->blob);
    memcpy(fm->u.file.sha256, fx->sha256, 65);
    fm->u.file.bytes = fx->bytes;
    const char *base = strrchr(fx->path, '/') ? strrchr(fx->path, '/') + 1 : fx->path;
    fm->u.file.file_name = sl_arena_strdup(&fm->arena, base);
    fm->u.file.fetched_at = sl_now_us();
    fm->key = fm->job_id;
    int rc = sl_emit(em, SL_TOPIC_RUNS, ev);
    if (rc == 0)
        rc = sl_emit(em, SL_TOPIC_FILES, fm);
    else
        sl_msg_unref(fm);
    return rc;
}

/* A ticket of a run whose source was fetched before: announces the stored
 * blob again, or fails the run when the blob is gone. */
static int announce_again(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                          const struct prior *pr, struct sl_emitter *em)
{
    char err[512] = "";
    struct fetched fx = {.bytes = pr->bytes};
    memcpy(fx.sha256, pr->sha256, sizeof(fx.sha256));
    if (!(fx.blob = stored_blob(f, t, pr, err, sizeof(err))))
        return emit_failed(em, t, err);
    sl_info("fetcher",
            "run %s: duplicate ticket: the source was fetched before (sha256 %.12s, %llu bytes); "
            "announcing the stored %s again instead of fetching it again",
            t->run_id, pr->sha256, (unsigned long long)pr->bytes, fx.blob);
    int rc = (fx.path = strdup(fx.blob)) ? announce(f, t, job, &fx, sl_now_us(), em) : SL_ERR_NOMEM;
    fetched_cleanup(&fx);
    return rc;
}

static int fetcher_process(void *state, const char *topic, struct sl_msg *t, struct sl_emitter *em)
{
    struct fetcher *f = state;
    if (t->kind != SL_MSG_TICKET)
        return SL_ERR_INVALID;
    if (!run_id_ok(t->run_id)) {
        sl_warn("fetcher",
                "ticket of job %s: run id '%.80s' is not 1 to %d letters, digits, '-' or '_'",
                t->job_id ? t->job_id : "-", t->run_id ? t->run_id : "", RUN_ID_MAX);
        return SL_ERR_INVALID;
    }
    char err[512] = "";
    const struct sl_job *job =
        sl_jobs_get(f->env->jobs, t->job_id, t->job_version, err, sizeof(err));
    if (!job)
        return emit_failed(em, t, err);
    int64_t started = sl_now_us();
    bool claim = f->env->control_url && f->env->blob_dir;
    struct prior pr;
    int rc;
    if (claim) {
        if ((rc = claim_run(f, t, &pr)) != 0)
            return rc;
        if (is_final(pr.status) || pr.sha256[0]) {
            if ((rc = end_claim(f, t)) != 0)
                return rc;
            if (pr.sha256[0] && !is_final(pr.status))
                return announce_again(f, t, job, &pr, em);
            sl_info("fetcher", "run %s: duplicate ticket ignored: the run is already %s", t->run_id,
                    pr.status);
            return 0;
        }
    }
    struct fetched fx = {0};
    rc = fetch(f, t, job, &fx, err, sizeof(err));
    if (claim) {
        /* the source is on record before anything announces it, so that a
         * ticket that comes again finds it */
        int crc = rc == 0 ? record_source(f, t, fx.sha256, fx.bytes) : end_claim(f, t);
        if (crc && rc >= 0)
            rc = crc;
    }
    if (rc == 1)
        rc = emit_failed(em, t, err);
    else if (rc == 0)
        rc = announce(f, t, job, &fx, started, em);
    fetched_cleanup(&fx);
    return rc;
}

static const char *const fetcher_inputs[] = {SL_TOPIC_TICKETS, NULL};

const struct sl_stage sl_stage_fetcher = {
    .name = "fetcher",
    .inputs = fetcher_inputs,
    .init = fetcher_init,
    .process = fetcher_process,
    .destroy = fetcher_destroy,
};
