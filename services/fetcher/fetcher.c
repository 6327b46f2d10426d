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
 * file://) in embedded mode (and file:// in SLUICE_FILE_DIRS for the
 * services), and remote sources (source.h): http(s) URLs (source_http.c),
 * FTP and SFTP (source_ftp.c), IMAP attachments (source_imap.c) and S3
 * objects (source_s3.c), each one line in SOURCES, all behind the SSRF
 * guard with the operator's allow-list (SLUICE_ALLOW_HOSTS). A remote
 * source is downloaded into the run's blob directory, or in embedded mode
 * into <out>/source/. With skip_unchanged, the fetch is conditional when
 * the state store holds the validators (an HTTP or S3 ETag, Last-Modified,
 * the IMAP message read) of a body whose SHA-256 is that of the last
 * successful run: the source's "not modified" skips the run without a
 * download.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/source.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define RUN_ID_MAX 64
#define SHOWN_MAX  200 /* bytes of a source URL in a message */

/* Remote sources by URL scheme (source.h): a new kind is one more line. */
static const struct sl_source_ops *const SOURCES[] = {
    &sl_source_http, &sl_source_ftp, &sl_source_sftp, &sl_source_imap, &sl_source_s3, NULL};

struct fetcher {
    const struct sl_stage_env *env;
    PGconn *conn;                 /* the control plane (services only), connected on first use */
    struct sl_fetch_guard *guard; /* SLUICE_ALLOW_HOSTS */
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
    if (!(f->guard = sl_fetch_guard_new(env->allow_hosts, errbuf, errsz))) {
        free(f);
        return SL_ERR_INVALID;
    }
    *state = f;
    return 0;
}

static void fetcher_destroy(void *state)
{
    struct fetcher *f = state;
    if (!f)
        return;
    PQfinish(f->conn);
    sl_fetch_guard_destroy(f->guard);
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
    /* the first target of a job of several runs as "<job>#<object>" in the
     * run the job's ticket recorded */
    size_t plen = strcspn(t->job_id, "#");
    bool same_job = rc == 0 && (!strcmp(PQgetvalue(res, 0, 3), t->job_id) ||
                                (strlen(PQgetvalue(res, 0, 3)) == plen &&
                                 !strncmp(PQgetvalue(res, 0, 3), t->job_id, plen)));
    if (rc == 0 && (!same_job || strcmp(PQgetvalue(res, 0, 4), ver)))
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
    char *path; /* where the source was read (a remote source: its URL as written) */
    char *blob; /* where the parser reads it */
    char sha256[65];
    uint64_t bytes;
    char *file_name;            /* remote: the server's name for it, NULL: path's last part */
    char *content_type;         /* remote: the response's, or NULL */
    bool not_modified;          /* remote: the source confirmed the last run's body; no blob */
    char not_modified_why[320]; /* with not_modified: what showed it (sl_fetch_res) */
};

static void fetched_cleanup(struct fetched *fx)
{
    free(fx->path);
    free(fx->blob);
    free(fx->file_name);
    free(fx->content_type);
}

/* The remote source that reads url, or NULL (a local path, file://, or a
 * scheme no source reads). */
static const struct sl_source_ops *source_for(const char *url)
{
    const char *sep = strstr(url, "://");
    if (!sep)
        return NULL;
    size_t n = (size_t)(sep - url);
    for (size_t i = 0; SOURCES[i]; i++)
        for (const char *const *sc = SOURCES[i]->schemes; *sc; sc++)
            if (strlen(*sc) == n && !strncasecmp(url, *sc, n))
                return SOURCES[i];
    return NULL;
}

/* The directory a remote source of the run is downloaded into (caller
 * frees): the run's in the blob store; embedded, <out>/source (kept next to
 * what the run wrote); else a new temporary directory. NULL with errbuf. */
static char *download_dir(const struct fetcher *f, const struct sl_msg *t, char *err, size_t errsz)
{
    char *dir = NULL;
    if (f->env->blob_dir) {
        char *jd = sl_path_join(f->env->blob_dir, t->job_id);
        dir = jd ? sl_path_join(jd, t->run_id) : NULL;
        free(jd);
    } else if (f->env->out_dir) {
        dir = sl_path_join(f->env->out_dir, "source");
    } else {
        const char *tmp = getenv("TMPDIR");
        char tmpl[512];
        snprintf(tmpl, sizeof(tmpl), "%s/sluice-fetch-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(tmpl)) {
            snprintf(err, errsz, "cannot create a directory for the download in %s: %s",
                     tmp && tmp[0] ? tmp : "/tmp", strerror(errno));
            return NULL;
        }
        dir = strdup(tmpl);
    }
    if (!dir) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (sl_mkdirs(dir)) {
        snprintf(err, errsz, "cannot create directory %s for the download: %s", dir,
                 strerror(errno));
        free(dir);
        return NULL;
    }
    return dir;
}

/* The validators to send with the fetch of the source written as written:
 * those saved for the job when they belong to that URL and to the body of
 * the last successful run (else the body must come anyway). */
static bool conditional(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                        const char *url_sha, struct sl_source_validators *v)
{
    struct sl_state *st = f->env->st;
    char last[65];
    if (!job->options.skip_unchanged || t->u.ticket.force || job->source.pag.type ||
        !st->ops->get_validators)
        return false;
    return st->ops->get_validators(st, job->id, v) == 0 && !strcmp(v->url_sha256, url_sha) &&
           (v->etag[0] || v->last_modified[0]) && st->ops->get_last_sha(st, job->id, last) == 0 &&
           !strcmp(last, v->sha256);
}

/* Fetches a remote source (url expanded from written) with ops into the
 * run's download directory. 0; 1 when the run fails, with the reason in err;
 * or an sl_err. */
static int fetch_remote(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                        const struct sl_source_ops *ops, const char *written, const char *url,
                        struct fetched *fx, char *err, size_t errsz)
{
    char shown[1024], url_sha[65];
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    sl_url_redact(written, shown, sizeof(shown));
    if (strlen(shown) > SHOWN_MAX) /* messages name it: the reason must still fit */
        memcpy(shown + SHOWN_MAX - 3, "...", 4);
    if (!EVP_Digest(written, strlen(written), dig, &dl, EVP_sha256(), NULL))
        return SL_ERR_NOMEM;
    sl_hex(dig, 32, url_sha);
    if (!(fx->path = strdup(shown)))
        return SL_ERR_NOMEM;
    char *dir = download_dir(f, t, err, errsz);
    char *part = dir ? sl_path_join(dir, ".fetch.part") : NULL;
    int fd = part ? open(part, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    int rc = 1;
    if (fd < 0) {
        if (dir && part)
            snprintf(err, errsz, "cannot create %s: %s", part, strerror(errno));
        else if (dir)
            snprintf(err, errsz, "out of memory");
        goto out;
    }
    struct sl_source_validators v;
    bool cond = conditional(f, t, job, url_sha, &v);
    struct sl_fetch_req req = {
        .url = url,
        .shown = shown,
        .src = &job->source,
        .guard = f->guard,
        .etag = cond ? v.etag : NULL,
        .last_modified = cond ? v.last_modified : NULL,
        .fd = fd,
    };
    struct sl_fetch_res res;
    int frc = ops->fetch(&req, &res, err, errsz);
    if (close(fd) && frc == 0) {
        snprintf(err, errsz, "cannot write %s: %s", part, strerror(errno));
        frc = SL_ERR_IO;
    }
    if (frc) {
        unlink(part);
        rc = frc == SL_ERR_NOMEM ? frc : 1;
        goto out;
    }
    if (res.not_modified) {
        unlink(part);
        if (!res.not_modified_why[0]) /* a source that does not say */
            snprintf(res.not_modified_why, sizeof(res.not_modified_why), "%s: not modified",
                     ops->name);
        sl_info("fetcher", "run %s: %s is not modified (%s): not downloaded", t->run_id, shown,
                res.not_modified_why);
        fx->not_modified = true;
        memcpy(fx->not_modified_why, res.not_modified_why, sizeof(fx->not_modified_why));
        memcpy(fx->sha256, v.sha256, sizeof(fx->sha256));
        fx->bytes = v.bytes;
        rc = 0;
        goto out;
    }
    fx->blob = sl_path_join(dir, res.file_name[0] ? res.file_name : "source");
    fx->file_name = strdup(res.file_name[0] ? res.file_name : "source");
    fx->content_type = res.content_type[0] ? strdup(res.content_type) : NULL;
    if (!fx->blob || !fx->file_name || (res.content_type[0] && !fx->content_type)) {
        unlink(part);
        rc = SL_ERR_NOMEM;
        goto out;
    }
    if (rename(part, fx->blob)) {
        snprintf(err, errsz, "cannot move the download to %s: %s", fx->blob, strerror(errno));
        unlink(part);
        goto out;
    }
    memcpy(fx->sha256, res.sha256, sizeof(fx->sha256));
    fx->bytes = res.bytes;
    if (!job->source.pag.type && f->env->st->ops->set_validators) {
        /* remembered whatever the run's fate: only a match with the last
         * successful run's SHA-256 makes the next fetch conditional */
        struct sl_source_validators nv = {.bytes = res.bytes};
        memcpy(nv.url_sha256, url_sha, sizeof(nv.url_sha256));
        memcpy(nv.etag, res.etag, sizeof(nv.etag));
        memcpy(nv.last_modified, res.last_modified, sizeof(nv.last_modified));
        memcpy(nv.sha256, res.sha256, sizeof(nv.sha256));
        if (f->env->st->ops->set_validators(f->env->st, job->id, &nv))
            sl_warn("fetcher",
                    "run %s: could not remember the validators of %s: the next fetch "
                    "is unconditional",
                    t->run_id, shown);
    }
    rc = 0;
out:
    free(part);
    free(dir);
    return rc;
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
    const struct sl_source_ops *ops = source_for(url);
    if (ops) {
        rc = fetch_remote(f, t, job, ops, src_url, url, fx, err, errsz);
        goto out;
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
    explicit_bzero(url, strlen(url)); /* it may hold an expanded secret */
    free(url);
    return rc;
}

/* Announces the run's file: SKIPPED when it is unchanged since the last
 * successful run (and the job skips such files), else FETCHED on the runs
 * topic and the file on the files topic. */
static int announce(const struct fetcher *f, const struct sl_msg *t, const struct sl_job *job,
                    const struct fetched *fx, int64_t started, struct sl_emitter *em)
{
    char last[65];
    if (fx->not_modified || (job->options.skip_unchanged && !t->u.ticket.force &&
                             f->env->st->ops->get_last_sha(f->env->st, job->id, last) == 0 &&
                             !strcmp(last, fx->sha256))) {
        struct sl_msg *ev = run_event(t, SL_EV_SKIPPED);
        if (!ev)
            return SL_ERR_NOMEM;
        memcpy(ev->u.ev.sha256, fx->sha256, 65);
        ev->u.ev.bytes = fx->bytes;
        ev->u.ev.at = started;
        if (!fx->not_modified)
            ev->u.ev.reason = "the source file is unchanged since the last successful run";
        else if (!(ev->u.ev.reason = sl_arena_printf(&ev->arena,
                                                     "the source is unchanged since the last "
                                                     "successful run (not modified, nothing was "
                                                     "downloaded: %s)",
                                                     fx->not_modified_why))) {
            sl_msg_unref(ev);
            return SL_ERR_NOMEM;
        }
        ev->u.ev.source_name = sl_arena_strdup(&ev->arena, fx->path);
        return sl_emit(em, SL_TOPIC_RUNS, ev);
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
    fm->u.file.file_name = sl_arena_strdup(&fm->arena, fx->file_name ? fx->file_name : base);
    if (fx->content_type)
        fm->u.file.content_type = sl_arena_strdup(&fm->arena, fx->content_type);
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

static int fetch_ticket(struct fetcher *f, struct sl_msg *t, const struct sl_job *job,
                        struct sl_emitter *em);

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
    char err[1024] = "";
    const struct sl_job *job =
        sl_jobs_get(f->env->jobs, t->job_id, t->job_version, err, sizeof(err));
    if (!job)
        return emit_failed(em, t, err);
    if (job->ntargets < 2 || f->env->embedded)
        return fetch_ticket(f, t, job, em);
    /* a job of several targets (job.h): the ticket's run is its first
     * target's (job id <name>#<object>); the file is fetched once, and the
     * publisher that finishes a target's run hands it to the next target */
    struct sl_msg *sub = sl_msg_clone(t);
    if (!sub || !(sub->job_id = sl_arena_strdup(&sub->arena, job->targets[0]->id))) {
        sl_msg_unref(sub);
        return SL_ERR_NOMEM;
    }
    int rc = fetch_ticket(f, sub, job->targets[0], em);
    sl_msg_unref(sub);
    return rc;
}

/* Fetches the source of ticket t of job and announces it. */
static int fetch_ticket(struct fetcher *f, struct sl_msg *t, const struct sl_job *job,
                        struct sl_emitter *em)
{
    char err[1024] = "";
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
        int crc = rc == 0 && !fx.not_modified ? record_source(f, t, fx.sha256, fx.bytes)
                                              : end_claim(f, t);
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
