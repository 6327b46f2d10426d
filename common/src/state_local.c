/*
 * The local state store (state.h), embedded mode's stand-in for Redis.
 *
 * The SHA-256 of a job's last successful run is one small file,
 * <dir>/jobs/<job_id>.sha256, replaced atomically, so it survives the process
 * and a crash never leaves half a hash. The keys seen in a run live only in
 * memory, one sl_keyset per run on a short list behind one mutex: embedded
 * runs are few and the validator's threads may ask at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sluice/err.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/state.h"
#include "sluice/util.h"

/* Longest job id kept as a file name: room for ".sha256.tmp" under NAME_MAX. */
#define JOB_ID_MAX 200

struct run_keys {
    struct run_keys *next;
    struct sl_keyset *ks;
    char run_id[]; /* NUL-terminated */
};

struct state_local {
    struct sl_state base;
    char *jobs_dir;
    pthread_mutex_t mu; /* guards runs and each run's keyset */
    struct run_keys *runs;
};

/* Whether job_id can be a file name as it is: [A-Za-z0-9_.-]{1,200}, not "."
 * or "..", so no id reaches outside jobs/. */
static bool job_id_ok(const char *job_id)
{
    size_t n = job_id ? strlen(job_id) : 0;
    if (n == 0 || n > JOB_ID_MAX || !strcmp(job_id, ".") || !strcmp(job_id, ".."))
        return false;
    return strspn(job_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static bool sha_ok(const char *s, size_t n)
{
    return n == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* <jobs_dir>/<job_id>.sha256, or NULL when out of memory. */
static char *sha_path(const struct state_local *sl, const char *job_id)
{
    size_t n = strlen(sl->jobs_dir) + strlen(job_id) + sizeof("/.sha256");
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s.sha256", sl->jobs_dir, job_id);
    return p;
}

static int local_get_last_sha(struct sl_state *st, const char *job_id, char out[65])
{
    struct state_local *sl = (struct state_local *)st;
    if (!job_id_ok(job_id)) {
        sl_warn("state", "cannot read last hash: job id \"%s\" is not a safe file name",
                job_id ? job_id : "(null)");
        return SL_ERR_INVALID;
    }
    char *path = sha_path(sl, job_id);
    if (!path)
        return SL_ERR_NOMEM;
    size_t len = 0;
    char *text = sl_read_file(path, &len);
    if (!text) {
        int e = errno;
        if (e == ENOENT) {
            free(path);
            return SL_ERR_NOTFOUND;
        }
        sl_error("state", "could not read %s: %s", path, strerror(e));
        free(path);
        return e == ENOMEM ? SL_ERR_NOMEM : SL_ERR_IO;
    }
    while (len && strchr(" \t\r\n", text[len - 1]))
        text[--len] = '\0';
    int rc = 0;
    if (sha_ok(text, len)) {
        memcpy(out, text, 65);
    } else {
        /* Only a hand edit gets here (writes are atomic); treating it as "never
         * succeeded" would silently reprocess, so say so and let the run fail. */
        sl_error("state", "could not read %s: not a hex SHA-256", path);
        rc = SL_ERR_PARSE;
    }
    free(text);
    free(path);
    return rc;
}

static int local_set_last_sha(struct sl_state *st, const char *job_id, const char *sha256)
{
    struct state_local *sl = (struct state_local *)st;
    if (!job_id_ok(job_id)) {
        sl_warn("state", "cannot store last hash: job id \"%s\" is not a safe file name",
                job_id ? job_id : "(null)");
        return SL_ERR_INVALID;
    }
    if (!sha256 || !sha_ok(sha256, strlen(sha256))) {
        sl_warn("state", "cannot store last hash of job %s: not a lowercase hex SHA-256", job_id);
        return SL_ERR_INVALID;
    }
    char *path = sha_path(sl, job_id);
    if (!path)
        return SL_ERR_NOMEM;
    char line[66];
    memcpy(line, sha256, 64);
    line[64] = '\n';
    line[65] = '\0';
    int rc = 0;
    if (sl_write_file_atomic(path, line, 65)) {
        sl_error("state", "could not write %s: %s", path, strerror(errno));
        rc = SL_ERR_IO;
    }
    free(path);
    return rc;
}

/* The run's entry, or NULL; with create, a new one (NULL when out of memory).
 * Called with mu held. */
static struct run_keys *find_run(struct state_local *sl, const char *run_id, bool create)
{
    for (struct run_keys *r = sl->runs; r; r = r->next)
        if (!strcmp(r->run_id, run_id))
            return r;
    if (!create)
        return NULL;
    size_t n = strlen(run_id);
    struct run_keys *r = malloc(sizeof(*r) + n + 1);
    if (!r)
        return NULL;
    if (!(r->ks = sl_keyset_new())) {
        free(r);
        return NULL;
    }
    memcpy(r->run_id, run_id, n + 1);
    r->next = sl->runs;
    sl->runs = r;
    return r;
}

static int local_seen_key(struct sl_state *st, const char *run_id, const char *key, size_t keylen,
                          bool add)
{
    struct state_local *sl = (struct state_local *)st;
    if (!run_id || (!key && keylen))
        return SL_ERR_INVALID;
    pthread_mutex_lock(&sl->mu);
    int rc;
    struct run_keys *r = find_run(sl, run_id, add);
    if (r)
        rc = sl_keyset_test(r->ks, key, keylen, add);
    else
        rc = add ? SL_ERR_NOMEM : 0;
    pthread_mutex_unlock(&sl->mu);
    return rc;
}

static int local_end_run(struct sl_state *st, const char *run_id)
{
    struct state_local *sl = (struct state_local *)st;
    if (!run_id)
        return SL_ERR_INVALID;
    pthread_mutex_lock(&sl->mu);
    for (struct run_keys **pp = &sl->runs; *pp; pp = &(*pp)->next) {
        struct run_keys *r = *pp;
        if (!strcmp(r->run_id, run_id)) {
            *pp = r->next;
            sl_keyset_destroy(r->ks);
            free(r);
            break;
        }
    }
    pthread_mutex_unlock(&sl->mu);
    return 0;
}

static void local_destroy(struct sl_state *st)
{
    struct state_local *sl = (struct state_local *)st;
    struct run_keys *r, *next;
    for (r = sl->runs; r; r = next) {
        next = r->next;
        sl_keyset_destroy(r->ks);
        free(r);
    }
    pthread_mutex_destroy(&sl->mu);
    free(sl->jobs_dir);
    free(sl);
}

static const struct sl_state_ops local_ops = {
    .name = "local",
    .get_last_sha = local_get_last_sha,
    .set_last_sha = local_set_last_sha,
    .seen_key = local_seen_key,
    .end_run = local_end_run,
    .destroy = local_destroy,
};

/* A state store in dir, which is created with its jobs/ subdirectory when
 * missing. Returns NULL with errbuf set when dir cannot be created or out of
 * memory. The caller owns the store (sl_state_destroy); every op may be
 * called from any thread. */
struct sl_state *sl_state_local_new(const char *dir, char *errbuf, size_t errsz)
{
    struct state_local *sl = NULL;
    if (!dir || !dir[0]) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "no state directory given");
        return NULL;
    }
    sl = calloc(1, sizeof(*sl));
    if (!sl || !(sl->jobs_dir = sl_path_join(dir, "jobs"))) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not create state store: out of memory");
        goto fail;
    }
    struct stat sb;
    if (sl_mkdirs(sl->jobs_dir) || stat(sl->jobs_dir, &sb)) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "could not create state directory %s: %s", sl->jobs_dir,
                  strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(sb.st_mode)) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "could not create state directory %s: %s", sl->jobs_dir,
                  strerror(ENOTDIR));
        goto fail;
    }
    if (pthread_mutex_init(&sl->mu, NULL)) {
        sl_seterr(errbuf, errsz, SL_ERR_FATAL, "could not create state store: mutex init failed");
        goto fail;
    }
    sl->base.ops = &local_ops;
    return &sl->base;
fail:
    if (sl)
        free(sl->jobs_dir);
    free(sl);
    return NULL;
}

/* Destroys st through its ops; accepts NULL. */
void sl_state_destroy(struct sl_state *st)
{
    if (st)
        st->ops->destroy(st);
}
