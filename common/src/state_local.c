/*
 * The local state store (state.h), embedded mode's stand-in for Redis.
 *
 * The SHA-256 of a job's last successful run is one small file,
 * <dir>/jobs/<job_id>.sha256, replaced atomically, so it survives the process
 * and a crash never leaves half a hash. The keys seen in a run live only in
 * memory, one table per run on a short list behind one mutex: embedded runs
 * are few and the validator's threads may ask at once. A table maps each key's
 * 64-bit keyed fingerprint (SipHash-2-4 under a random key of the store, as
 * sl_keyset does) to the row that first had the key, in open addressing with
 * linear probing: 16 bytes a slot, at most 3/4 of them used, so 21 to 43
 * bytes a key (128 MiB for 5 million keys, 192 while the table doubles):
 * more than a compact sl_keyset, but the row is what lets the same row asking
 * twice (a redelivery) not count as its own duplicate, and a key set cannot
 * hold it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/state.h"
#include "sluice/util.h"

/* Longest job id kept as a file name: room for ".sha256.tmp" under NAME_MAX. */
#define JOB_ID_MAX 200
/* Slots of a run's table when it gets its first key. */
#define SLOTS_MIN 1024

/* A key's fingerprint (0: a free slot) and the row that first had it. */
struct slot {
    uint64_t fp;
    uint64_t row;
};

struct run_keys {
    struct run_keys *next;
    struct slot *slots; /* cap of them, a power of two; NULL until the first key */
    size_t cap, n;
    char run_id[]; /* NUL-terminated */
};

struct state_local {
    struct sl_state base;
    char *jobs_dir;
    uint8_t sipkey[16];
    pthread_mutex_t mu; /* guards runs and each run's table */
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
    struct run_keys *r = calloc(1, sizeof(*r) + n + 1);
    if (!r)
        return NULL;
    memcpy(r->run_id, run_id, n + 1);
    r->next = sl->runs;
    sl->runs = r;
    return r;
}

static void run_free(struct run_keys *r)
{
    free(r->slots);
    free(r);
}

/* The slot of fp in r: its own, or the free one where it would go. r has
 * slots. */
static struct slot *slot_of(const struct run_keys *r, uint64_t fp)
{
    size_t mask = r->cap - 1, i = (size_t)fp & mask;
    while (r->slots[i].fp && r->slots[i].fp != fp)
        i = (i + 1) & mask;
    return &r->slots[i];
}

/* Doubles r's table (or makes its first); SL_ERR_NOMEM leaves it as it was. */
static int run_grow(struct run_keys *r)
{
    size_t cap = r->cap ? 2 * r->cap : SLOTS_MIN;
    if (cap > SIZE_MAX / sizeof(struct slot))
        return SL_ERR_NOMEM;
    struct slot *old = r->slots;
    size_t oldcap = r->cap;
    if (!(r->slots = calloc(cap, sizeof(struct slot)))) {
        r->slots = old;
        return SL_ERR_NOMEM;
    }
    r->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].fp)
            *slot_of(r, old[i].fp) = old[i];
    free(old);
    return 0;
}

/* One question (state.h) about run r, which may be NULL when q->add is
 * false. Called with mu held. */
static int ask(struct state_local *sl, struct run_keys *r, const struct sl_seen_query *q)
{
    uint64_t fp = sl_siphash(sl->sipkey, q->keylen ? q->key : "", q->keylen);
    fp |= !fp; /* 0 marks a free slot */
    struct slot *s = r && r->slots ? slot_of(r, fp) : NULL;
    if (s && s->fp)
        return q->add ? s->row != q->row : s->row < q->row;
    if (!q->add)
        return 0;
    if (4 * (r->n + 1) > 3 * r->cap) {
        if (run_grow(r))
            return SL_ERR_NOMEM;
        s = slot_of(r, fp);
    }
    s->fp = fp;
    s->row = q->row;
    r->n++;
    return 0;
}

static int local_seen_keys(struct sl_state *st, const char *run_id, const struct sl_seen_query *q,
                           size_t n, int *out)
{
    struct state_local *sl = (struct state_local *)st;
    if (!run_id || (n && (!q || !out)))
        return SL_ERR_INVALID;
    bool add = false;
    for (size_t i = 0; i < n; i++) {
        if (!q[i].key && q[i].keylen)
            return SL_ERR_INVALID;
        add |= q[i].add;
    }
    int rc = 0;
    pthread_mutex_lock(&sl->mu);
    struct run_keys *r = find_run(sl, run_id, add);
    if (add && !r)
        rc = SL_ERR_NOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int seen = ask(sl, r, &q[i]);
        if (seen < 0)
            rc = seen;
        else
            out[i] = seen;
    }
    pthread_mutex_unlock(&sl->mu);
    return rc;
}

static int local_seen_key(struct sl_state *st, const char *run_id, const char *key, size_t keylen,
                          uint64_t row, bool add)
{
    struct sl_seen_query q = {.key = key, .keylen = keylen, .row = row, .add = add};
    int seen = 0;
    int rc = local_seen_keys(st, run_id, &q, 1, &seen);
    return rc ? rc : seen;
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
            run_free(r);
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
        run_free(r);
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
    .seen_keys = local_seen_keys,
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
    if (getrandom(sl->sipkey, sizeof(sl->sipkey), 0) != (ssize_t)sizeof(sl->sipkey)) {
        /* no entropy yet (early boot): the key only spreads the table */
        uint64_t seed[2] = {(uint64_t)time(NULL) ^ (uint64_t)getpid(), (uint64_t)(uintptr_t)sl};
        memcpy(sl->sipkey, seed, sizeof(seed));
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
