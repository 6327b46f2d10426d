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
 * Sources of this version: local files (a path relative to the job file, or
 * file://) in embedded mode. Remote sources (http, ftp, sftp, imap, s3) are
 * refused with a clear reason until the fetcher learns them.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

struct fetcher {
    const struct sl_stage_env *env;
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
    free(state);
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

/* Resolves the source to a local path (caller frees), or NULL with errbuf. */
static char *local_path(const struct fetcher *f, const struct sl_job *job, const char *url,
                        char *errbuf, size_t errsz)
{
    const char *colon = strstr(url, "://");
    if (colon) {
        size_t sl = (size_t)(colon - url);
        if (sl == 4 && !strncmp(url, "file", 4)) {
            if (!f->env->embedded && !sl_path_allowed(url + 7, f->env->file_dirs)) {
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

static int fetcher_process(void *state, const char *topic, struct sl_msg *t, struct sl_emitter *em)
{
    struct fetcher *f = state;
    if (t->kind != SL_MSG_TICKET)
        return SL_ERR_INVALID;
    char err[512] = "";
    const struct sl_job *job =
        sl_jobs_get(f->env->jobs, t->job_id, t->job_version, err, sizeof(err));
    if (!job)
        return emit_failed(em, t, err);
    int64_t started = sl_now_us();
    const char *src_url = t->u.ticket.input ? t->u.ticket.input : job->source.url;
    char *url = t->u.ticket.input ? strdup(src_url) : sl_env_expand(src_url, err, sizeof(err));
    char *path = NULL, *blob = NULL;
    int rc = 0;
    if (!url) {
        rc = emit_failed(em, t, err[0] ? err : "out of memory");
        goto out;
    }
    if (!(path = local_path(f, job, url, err, sizeof(err)))) {
        rc = emit_failed(em, t, err);
        goto out;
    }
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode)) {
        int e = errno;
        bool exists = access(path, F_OK) == 0;
        snprintf(err, sizeof(err), "cannot read source %s: %s", path,
                 exists ? "not a regular file" : strerror(e));
        rc = emit_failed(em, t, err);
        goto out;
    }
    char sha[65];
    uint64_t bytes = 0;
    if (f->env->blob_dir) {
        char *dir = sl_path_join(f->env->blob_dir, t->job_id);
        char *rundir = dir ? sl_path_join(dir, t->run_id) : NULL;
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        blob = rundir ? sl_path_join(rundir, base) : NULL;
        if (!blob || sl_mkdirs(rundir)) {
            snprintf(err, sizeof(err), "cannot create blob directory %s: %s", rundir ? rundir : "?",
                     strerror(errno));
            free(dir);
            free(rundir);
            rc = emit_failed(em, t, err);
            goto out;
        }
        free(dir);
        free(rundir);
        if (sl_sha256_copy(path, blob, sha, &bytes)) {
            snprintf(err, sizeof(err), "cannot copy source %s to %s: %s", path, blob,
                     strerror(errno));
            rc = emit_failed(em, t, err);
            goto out;
        }
    } else {
        if (sl_sha256_file(path, sha, &bytes)) {
            snprintf(err, sizeof(err), "cannot read source %s: %s", path, strerror(errno));
            rc = emit_failed(em, t, err);
            goto out;
        }
        blob = strdup(path);
    }

    if (job->options.skip_unchanged && !t->u.ticket.force) {
        char last[65];
        if (f->env->st->ops->get_last_sha(f->env->st, job->id, last) == 0 && !strcmp(last, sha)) {
            struct sl_msg *ev = run_event(t, SL_EV_SKIPPED);
            if (!ev) {
                rc = SL_ERR_NOMEM;
                goto out;
            }
            memcpy(ev->u.ev.sha256, sha, 65);
            ev->u.ev.bytes = bytes;
            ev->u.ev.at = started;
            ev->u.ev.reason = "the source file is unchanged since the last successful run";
            ev->u.ev.source_name = sl_arena_strdup(&ev->arena, path);
            rc = sl_emit(em, SL_TOPIC_RUNS, ev);
            goto out;
        }
    }

    struct sl_msg *ev = run_event(t, SL_EV_FETCHED);
    struct sl_msg *fm = sl_msg_new(SL_MSG_FILE, t->run_id, t->job_id, t->job_version);
    if (!ev || !fm) {
        sl_msg_unref(ev);
        sl_msg_unref(fm);
        rc = SL_ERR_NOMEM;
        goto out;
    }
    memcpy(ev->u.ev.sha256, sha, 65);
    ev->u.ev.bytes = bytes;
    ev->u.ev.at = started;
    ev->u.ev.source_name = sl_arena_strdup(&ev->arena, path);
    fm->u.file.blob = sl_arena_strdup(&fm->arena, blob);
    memcpy(fm->u.file.sha256, sha, 65);
    fm->u.file.bytes = bytes;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    fm->u.file.file_name = sl_arena_strdup(&fm->arena, base);
    fm->u.file.fetched_at = sl_now_us();
    fm->key = fm->job_id;
    if ((rc = sl_emit(em, SL_TOPIC_RUNS, ev)) == 0)
        rc = sl_emit(em, SL_TOPIC_FILES, fm);
    else
        sl_msg_unref(fm);
out:
    free(url);
    free(path);
    free(blob);
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
