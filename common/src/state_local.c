/*
 * The local state store (state.h), embedded mode's stand-in for Redis.
 *
 * The SHA-256 of a job's last successful run is one small file,
 * <dir>/jobs/<job_id>.sha256, replaced atomically, so it survives the process
 * and a crash never leaves half a hash; the validators of the job's source
 * (state.h) are <dir>/jobs/<job_id>.validators, a small JSON object written
 * the same way. The keys seen in a run live only in
 * memory, one entry per run on a short list behind one mutex: embedded runs
 * are few and the validator's threads may ask at once.
 *
 * A run's keys are kept compact, since a run may have millions: every key in
 * an sl_keyset (keyed 64-bit fingerprints, 6 to 9 bytes a key), and, beside
 * it, the row that first had a key only for keys first had by recent rows,
 * in a window of two small tables (fingerprint -> row) that take turns. hi
 * is the highest row asked in the run. A key goes into the current table
 * when it is added; when hi has moved WINDOW_ROWS past the current table's
 * start, the other table is emptied and becomes the current one (both, when
 * hi jumped twice that far). So a table is emptied only of keys whose first
 * row is below hi - WINDOW_ROWS, and a key in the set but in neither table
 * has a first row below hi - WINDOW_ROWS: for any row r >= hi - WINDOW_ROWS
 * it is another, earlier row, and the answer is 1 whether r adds or checks.
 * Every question of such a row is thus answered exactly as state.h says,
 * in any order: rows in file order, a batch asked again after a failure
 * (at most the validator's 1024 rows), a row redelivered soon after itself.
 * A row further below hi asking again about a key first had by a row that
 * left the window gets 1 even when it is that row, or only checks and came
 * before it (state.h, sl_state_local_new, says why embedded mode never asks
 * so). With rows in order, one key each, the window is at most two tables
 * of 2^15 slots (1 MiB).
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

#include <jansson.h>

#include "sluice/err.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/state.h"
#include "sluice/util.h"

/* Longest job id kept as a file name: room for ".sha256.tmp" under NAME_MAX. */
#define JOB_ID_MAX 200
/* Rows a window table covers; state.h's comment of sl_state_local_new
 * names this number. At least the validator's batch (BATCH_MAX, 1024 rows),
 * so that a batch asked again after a failure is answered as the first time. */
#define WINDOW_ROWS 16384
/* Slots of a window table when it gets its first key. */
#define SLOTS_MIN 1024

/* A key's fingerprint (0: a free slot) and the row that first had it. */
struct slot {
    uint64_t fp;
    uint64_t row;
};

/* Open addressing with linear probing, at most 3/4 full. */
struct table {
    struct slot *slots; /* cap of them, a power of two; NULL until the first key */
    size_t cap, n;
};

struct run_keys {
    struct run_keys *next;
    struct sl_keyset *ks; /* every key of the run */
    struct table win[2];  /* keys first had by recent rows; win[cur] gets new ones */
    unsigned cur;
    uint64_t hi;    /* the highest row asked */
    uint64_t start; /* win[cur] takes keys while hi < start + WINDOW_ROWS; start <= hi */
    char run_id[];  /* NUL-terminated */
};

struct state_local {
    struct sl_state base;
    char *jobs_dir;
    uint8_t sipkey[16]; /* the window's fingerprints (the key set has its own key) */
    pthread_mutex_t mu; /* guards runs and everything of each run */
    struct run_keys *runs;
};

/* Whether job_id can be a file name as it is: [A-Za-z0-9_.-]{1,200}, not "."
 * or "..", so no id reaches outside jobs/. */
static bool job_id_ok(const char *job_id)
{
    size_t n = job_id ? strlen(job_id) : 0;
    if (n == 0 || n > JOB_ID_MAX || !strcmp(job_id, ".") || !strcmp(job_id, ".."))
        return false;
    /* '#': the target of a job of several ("crm#contacts", job.h) */
    return strspn(job_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-#") ==
           n;
}

static bool sha_ok(const char *s, size_t n)
{
    return n == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Whether job_id can be a file name; when not, says that it cannot <doing>
 * ("cannot read last hash: job id ..."). */
static bool job_id_usable(const char *job_id, const char *doing)
{
    if (job_id_ok(job_id))
        return true;
    sl_warn("state", "cannot %s: job id \"%s\" is not a safe file name", doing,
            job_id ? job_id : "(null)");
    return false;
}

/* <jobs_dir>/<job_id><ext>, or NULL when out of memory. */
static char *job_path(const struct state_local *sl, const char *job_id, const char *ext)
{
    size_t n = strlen(sl->jobs_dir) + strlen(job_id) + strlen(ext) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s", sl->jobs_dir, job_id, ext);
    return p;
}

/* Reads the job's file <job_id><ext> whole: 0 with *text (*len bytes,
 * NUL-terminated) and its *path, both the caller's to free; else nothing
 * to free and SL_ERR_NOTFOUND (no such file), SL_ERR_IO (logged) or
 * SL_ERR_NOMEM. */
static int job_file_read(const struct state_local *sl, const char *job_id, const char *ext,
                         char **path, char **text, size_t *len)
{
    *path = job_path(sl, job_id, ext);
    if (!*path)
        return SL_ERR_NOMEM;
    *len = 0;
    *text = sl_read_file(*path, len);
    if (*text)
        return 0;
    int e = errno;
    if (e != ENOENT)
        sl_error("state", "could not read %s: %s", *path, strerror(e));
    free(*path);
    *path = NULL;
    return e == ENOENT ? SL_ERR_NOTFOUND : e == ENOMEM ? SL_ERR_NOMEM : SL_ERR_IO;
}

/* Replaces the job's file <job_id><ext> with data[0..len) atomically: 0,
 * SL_ERR_IO (logged) or SL_ERR_NOMEM. */
static int job_file_write(const struct state_local *sl, const char *job_id, const char *ext,
                          const char *data, size_t len)
{
    char *path = job_path(sl, job_id, ext);
    if (!path)
        return SL_ERR_NOMEM;
    int rc = 0;
    if (sl_write_file_atomic(path, data, len)) {
        sl_error("state", "could not write %s: %s", path, strerror(errno));
        rc = SL_ERR_IO;
    }
    free(path);
    return rc;
}

static int local_get_last_sha(struct sl_state *st, const char *job_id, char out[65])
{
    struct state_local *sl = (struct state_local *)st;
    if (!job_id_usable(job_id, "read last hash"))
        return SL_ERR_INVALID;
    char *path, *text;
    size_t len;
    int rc = job_file_read(sl, job_id, ".sha256", &path, &text, &len);
    if (rc)
        return rc;
    while (len && strchr(" \t\r\n", text[len - 1]))
        text[--len] = '\0';
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
    if (!job_id_usable(job_id, "store last hash"))
        return SL_ERR_INVALID;
    if (!sha256 || !sha_ok(sha256, strlen(sha256))) {
        sl_warn("state", "cannot store last hash of job %s: not a lowercase hex SHA-256", job_id);
        return SL_ERR_INVALID;
    }
    char line[66];
    memcpy(line, sha256, 64);
    line[64] = '\n';
    line[65] = '\0';
    return job_file_write(sl, job_id, ".sha256", line, 65);
}

/* ---- source validators -------------------------------------------------- */

/* Whether s is text of at most max - 1 bytes without control characters. */
static bool field_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool validators_ok(const struct sl_source_validators *v)
{
    return sha_ok(v->url_sha256, strnlen(v->url_sha256, 65)) &&
           sha_ok(v->sha256, strnlen(v->sha256, 65)) && field_ok(v->etag, sizeof(v->etag)) &&
           field_ok(v->last_modified, sizeof(v->last_modified));
}

/* Copies the string member key of o into out[n]; false when it is missing,
 * no string or too long. */
static bool copy_member(json_t *o, const char *key, char *out, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= n)
        return false;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static int local_get_validators(struct sl_state *st, const char *job_id,
                                struct sl_source_validators *out)
{
    struct state_local *sl = (struct state_local *)st;
    if (!job_id_usable(job_id, "read source validators"))
        return SL_ERR_INVALID;
    char *path, *text;
    size_t len;
    int rc = job_file_read(sl, job_id, ".validators", &path, &text, &len);
    if (rc)
        return rc;
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *bytes = json_object_get(o, "bytes");
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || !copy_member(o, "url_sha256", out->url_sha256, 65) ||
        !copy_member(o, "etag", out->etag, sizeof(out->etag)) ||
        !copy_member(o, "last_modified", out->last_modified, sizeof(out->last_modified)) ||
        !copy_member(o, "sha256", out->sha256, 65) || !json_is_integer(bytes) ||
        json_integer_value(bytes) < 0 || !validators_ok(out)) {
        /* a hand edit: the next fetch is simply unconditional */
        sl_warn("state", "ignoring %s: not a validators record", path);
        rc = SL_ERR_PARSE;
    } else {
        out->bytes = (uint64_t)json_integer_value(bytes);
    }
    json_decref(o);
    free(text);
    free(path);
    return rc;
}

static int local_set_validators(struct sl_state *st, const char *job_id,
                                const struct sl_source_validators *v)
{
    struct state_local *sl = (struct state_local *)st;
    if (!job_id_usable(job_id, "store source validators"))
        return SL_ERR_INVALID;
    if (!v || !validators_ok(v) || v->bytes > (uint64_t)INT64_MAX) {
        sl_warn("state", "cannot store source validators of job %s: malformed", job_id);
        return SL_ERR_INVALID;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "url_sha256", v->url_sha256, "etag", v->etag,
                          "last_modified", v->last_modified, "sha256", v->sha256, "bytes",
                          (json_int_t)v->bytes);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    int rc = text ? job_file_write(sl, job_id, ".validators", text, strlen(text)) : SL_ERR_NOMEM;
    free(text);
    json_decref(o);
    return rc;
}

static void run_free(struct run_keys *r)
{
    sl_keyset_destroy(r->ks);
    free(r->win[0].slots);
    free(r->win[1].slots);
    free(r);
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
    if (!(r->ks = sl_keyset_new())) {
        free(r);
        return NULL;
    }
    memcpy(r->run_id, run_id, n + 1);
    r->next = sl->runs;
    sl->runs = r;
    return r;
}

/* The slot of fp in t: its own, or the free one where it would go. t has
 * slots. */
static struct slot *slot_of(const struct table *t, uint64_t fp)
{
    size_t mask = t->cap - 1, i = (size_t)fp & mask;
    while (t->slots[i].fp && t->slots[i].fp != fp)
        i = (i + 1) & mask;
    return &t->slots[i];
}

/* fp's slot in t, or NULL when t does not have it. */
static const struct slot *table_find(const struct table *t, uint64_t fp)
{
    if (!t->n)
        return NULL;
    const struct slot *s = slot_of(t, fp);
    return s->fp ? s : NULL;
}

/* Makes room in t for one more key, doubling it (or making its first slots)
 * when it would be more than 3/4 full; SL_ERR_NOMEM leaves it as it was. */
static int table_reserve(struct table *t)
{
    if (4 * (t->n + 1) <= 3 * t->cap)
        return 0;
    size_t cap = t->cap ? 2 * t->cap : SLOTS_MIN;
    if (cap > SIZE_MAX / sizeof(struct slot))
        return SL_ERR_NOMEM;
    struct table nt = {.slots = calloc(cap, sizeof(struct slot)), .cap = cap, .n = t->n};
    if (!nt.slots)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].fp)
            *slot_of(&nt, t->slots[i].fp) = t->slots[i];
    free(t->slots);
    *t = nt;
    return 0;
}

/* Forgets t's keys; its slots stay for the next ones. */
static void table_clear(struct table *t)
{
    if (t->n)
        memset(t->slots, 0, t->cap * sizeof(struct slot));
    t->n = 0;
}

/* row is asked: moves hi, and the window with it. A table is emptied only
 * of keys that went in while hi was below a bound that the move leaves at
 * most hi - WINDOW_ROWS, so each was first had by a row below that. */
static void run_advance(struct run_keys *r, uint64_t row)
{
    if (row <= r->hi)
        return;
    r->hi = row;
    if (row - r->start < WINDOW_ROWS)
        return;
    table_clear(&r->win[!r->cur]);
    if (row - r->start >= 2 * WINDOW_ROWS) {
        table_clear(&r->win[r->cur]); /* its keys came while hi < start + WINDOW_ROWS */
        r->start = row;
    } else {
        r->cur = !r->cur;
        r->start += WINDOW_ROWS;
    }
}

/* One question (state.h) about run r, which may be NULL when q->add is
 * false (the run has no key yet). Exact for q->row >= hi - WINDOW_ROWS (the
 * file comment says why). On error no key is remembered. Called with mu
 * held. */
static int ask(struct state_local *sl, struct run_keys *r, const struct sl_seen_query *q)
{
    if (!r)
        return 0;
    run_advance(r, q->row);
    const char *key = q->keylen ? q->key : "";
    uint64_t fp = sl_siphash(sl->sipkey, key, q->keylen);
    fp |= !fp; /* 0 marks a free slot */
    for (int i = 0; i < 2; i++) {
        const struct slot *s = table_find(&r->win[i], fp);
        if (s)
            return q->add ? s->row != q->row : s->row < q->row;
    }
    /* Room first: a key in the set but not in the window would be taken
     * for an old row's, and this row asking again would be its duplicate. */
    struct table *t = &r->win[r->cur];
    if (q->add && table_reserve(t))
        return SL_ERR_NOMEM;
    int seen = sl_keyset_test(r->ks, key, q->keylen, q->add);
    if (seen)
        return seen < 0 ? seen : 1; /* first had by a row that left the window */
    if (q->add) {
        struct slot *s = slot_of(t, fp);
        s->fp = fp;
        s->row = q->row;
        t->n++;
    }
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
    .get_validators = local_get_validators,
    .set_validators = local_set_validators,
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
