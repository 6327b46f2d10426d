/*
 * Foreign-key lookups of the validator (refcheck.h): one target per
 * reference ("object.attribute"), answered from a cache, else from the
 * destination in one query a batch (PostgreSQL) or from a set of the
 * values an NDJSON destination file holds (embedded mode).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/refcheck.h"
#include "sluice/stage.h"
#include "sluice/util.h"

#define CACHE_SECONDS 60        /* answers older than this are asked again */
#define CACHE_MAX     (1 << 17) /* answers cached a reference; more: start over */

/* One cached answer: a value of a reference, found or not. */
struct answer {
    char *value; /* NULL: a free slot */
    bool found;
};

/* Where one reference's records are, and what was learned of them. */
struct target {
    char *ref;   /* "object.attribute", as the job writes it */
    char *table; /* postgres: the table; NULL for a file target */
    char *column;
    char *cast;                    /* postgres: the column's type, to cast values to */
    bool text_only;                /* postgres: the values did not cast: compare as text */
    bool own;                      /* the job's own object: a table or file not made yet is empty */
    struct sl_keyset *file_values; /* file: every value of the attribute */
    char *error;                   /* the reference cannot be checked: why */
    struct answer *cache;          /* open addressing, cap slots */
    size_t cap, used;
    time_t cache_since;
};

struct sl_refcheck {
    const struct sl_stage_env *env;
    PGconn *conn;
    struct target *t;
    size_t nt;
    struct sl_buf sql, arr;
};

struct sl_refcheck *sl_refcheck_new(const struct sl_stage_env *env)
{
    struct sl_refcheck *rc = calloc(1, sizeof(*rc));
    if (rc)
        rc->env = env;
    return rc;
}

static void cache_clear(struct target *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        free(t->cache[i].value);
        t->cache[i].value = NULL;
    }
    t->used = 0;
    t->cache_since = time(NULL);
}

void sl_refcheck_destroy(struct sl_refcheck *rc)
{
    if (!rc)
        return;
    for (size_t i = 0; i < rc->nt; i++) {
        struct target *t = &rc->t[i];
        cache_clear(t);
        free(t->cache);
        free(t->ref);
        free(t->table);
        free(t->column);
        free(t->cast);
        free(t->error);
        sl_keyset_destroy(t->file_values);
    }
    free(rc->t);
    if (rc->conn)
        PQfinish(rc->conn);
    sl_buf_cleanup(&rc->sql);
    sl_buf_cleanup(&rc->arr);
    free(rc);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The cache slot of value in t: its answer, or the free slot it would take. */
static struct answer *cache_slot(struct target *t, const char *value)
{
    size_t i = (size_t)hash_str(value) & (t->cap - 1);
    while (t->cache[i].value && strcmp(t->cache[i].value, value))
        i = (i + 1) & (t->cap - 1);
    return &t->cache[i];
}

/* Makes room for n more answers: the table grows up to CACHE_MAX slots,
 * then starts over (answers are cheap to get again). */
static void cache_reserve(struct target *t, size_t n)
{
    if (t->used + n <= t->cap / 2)
        return;
    size_t cap = t->cap;
    while (cap < CACHE_MAX && t->used + n > cap / 2)
        cap *= 2;
    struct answer *grown = cap > t->cap ? calloc(cap, sizeof(*grown)) : NULL;
    if (!grown || t->used + n > cap / 2) {
        free(grown);
        cache_clear(t);
        if (n <= t->cap / 2)
            return;
        /* a batch bigger than the table: grow it empty */
        while (cap < n * 2)
            cap *= 2;
        if (!(grown = calloc(cap, sizeof(*grown))))
            return; /* cache_put gives up on a full table */
    }
    struct answer *old = t->cache;
    size_t oldcap = t->cap;
    t->cache = grown;
    t->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].value)
            *cache_slot(t, old[i].value) = old[i];
    free(old);
}

static void cache_put(struct target *t, const char *value, bool found)
{
    if (t->used >= t->cap - 1)
        return; /* full (cache_reserve failed): not remembered */
    struct answer *a = cache_slot(t, value);
    if (a->value) {
        a->found = found;
        return;
    }
    if ((a->value = strdup(value))) {
        a->found = found;
        t->used++;
    }
}

/* Sets t->error to "target.attributes.ATTR.references: ..." (formatted). */
__attribute__((format(printf, 3, 4))) static void target_error(struct target *t, const char *attr,
                                                               const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    free(t->error);
    if (asprintf(&t->error, "target.attributes.%s.references: %s", attr, msg) < 0)
        t->error = NULL;
    sl_warn("validator", "%s", t->error ? t->error : msg);
}

/* Reads every value of t->column in the NDJSON file at path into a set. */
static void load_file(struct target *t, const char *attr, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f && t->own && errno == ENOENT) {
        /* the first run of the object: nothing published yet */
        if (!(t->file_values = sl_keyset_new()))
            target_error(t, attr, "out of memory");
        return;
    }
    if (!f) {
        target_error(t, attr,
                     "cannot read %s, where the %s records are published (%s): publish them "
                     "there first (sluice run with the same --out)",
                     path, t->table ? t->table : t->ref, strerror(errno));
        return;
    }
    if (!(t->file_values = sl_keyset_new())) {
        fclose(f);
        target_error(t, attr, "out of memory");
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long long lineno = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        json_error_t jerr;
        json_t *rec = json_loadb(line, (size_t)len, 0, &jerr);
        json_t *v = rec ? json_object_get(rec, t->column) : NULL;
        char num[64];
        const char *s = NULL;
        if (json_is_string(v))
            s = json_string_value(v);
        else if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), s = num;
        else if (json_is_boolean(v))
            s = json_is_true(v) ? "true" : "false";
        else if (json_is_real(v))
            snprintf(num, sizeof(num), "%.17g", json_real_value(v)), s = num;
        if (!rec)
            sl_warn("validator", "%s, line %llu: not a JSON record (%s): skipped", path, lineno,
                    jerr.text);
        if (s && sl_keyset_test(t->file_values, s, strlen(s), true) < 0) {
            json_decref(rec);
            target_error(t, attr, "out of memory reading %s", path);
            break;
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
}

/* Finds the column's type in the destination (once a target). */
static int describe_column(struct sl_refcheck *rc, struct target *t, const char *attr, char *errbuf,
                           size_t errsz)
{
    sl_buf_reset(&rc->sql);
    if (sl_pg_put_ident(&rc->sql, rc->conn, t->table) || sl_buf_putc(&rc->sql, '\0'))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    const char *params[] = {rc->sql.data, t->column};
    PGresult *res = NULL;
    int err = sl_pg_exec(rc->conn, "look up a referenced column",
                         "SELECT (to_regclass($1) IS NOT NULL)::text, "
                         "(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                         " WHERE a.attrelid = to_regclass($1) AND a.attname = $2 "
                         " AND a.attnum > 0 AND NOT a.attisdropped)",
                         2, params, &res, errbuf, errsz);
    if (err)
        return err;
    if (strcmp(PQgetvalue(res, 0, 0), "true") && t->own)
        ; /* the first run of the object: no table yet, every value unknown */
    else if (strcmp(PQgetvalue(res, 0, 0), "true"))
        target_error(t, attr, "the destination has no table %s", t->table);
    else if (PQgetisnull(res, 0, 1))
        target_error(t, attr, "table %s of the destination has no column %s", t->table, t->column);
    else if (!(t->cast = strdup(PQgetvalue(res, 0, 1))))
        err = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    PQclear(res);
    return err;
}

/* The target of reference attribute a of job, set up on first use. */
static struct target *target_of(struct sl_refcheck *rc, const struct sl_job *job,
                                const struct sl_attr *a, char *errbuf, size_t errsz, int *err)
{
    *err = 0;
    for (size_t i = 0; i < rc->nt; i++)
        if (!strcmp(rc->t[i].ref, a->references))
            return &rc->t[i];
    struct target *nt = realloc(rc->t, (rc->nt + 1) * sizeof(*nt));
    if (!nt) {
        *err = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    rc->t = nt;
    struct target *t = &rc->t[rc->nt];
    memset(t, 0, sizeof(*t));
    const char *dot = strchr(a->references, '.');
    t->ref = strdup(a->references);
    t->table = strndup(a->references, (size_t)(dot - a->references)); /* checked by the loader */
    t->column = strdup(dot + 1);
    t->cap = 1024;
    t->cache = calloc(t->cap, sizeof(*t->cache));
    if (!t->ref || !t->table || !t->column || !t->cache) {
        free(t->ref), free(t->table), free(t->column), free(t->cache);
        *err = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    t->cache_since = time(NULL);
    rc->nt++;
    /* the job's own object is where its destination writes it */
    bool own = t->own = !strcmp(t->table, job->object);
    if (own && job->destination.table) {
        free(t->table);
        if (!(t->table = strdup(job->destination.table))) {
            *err = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            return NULL;
        }
    }
    if (job->destination.type == SL_DEST_HTTP && !rc->env->embedded) {
        target_error(t, a->name, "an http destination cannot be asked whether a %s exists", t->ref);
    } else if (!rc->env->destination_url) {
        /* NDJSON files: the object's file beside the job's own */
        const char *sink = rc->env->sink_path;
        char *dir = sink ? sl_path_dir(sink) : NULL;
        char name[300];
        snprintf(name, sizeof(name), "%s.ndjson", own ? job->object : t->table);
        char *path = own && sink ? strdup(sink) : dir ? sl_path_join(dir, name) : NULL;
        if (!path)
            target_error(t, a->name, "no destination to look %s up in", t->ref);
        else
            load_file(t, a->name, path);
        free(dir);
        free(path);
    }
    return t;
}

/* Asks the destination which of the values of the queries q[idx[0..n)]
 * (all of target t) exist; caches every answer. */
static int ask_postgres(struct sl_refcheck *rc, struct target *t, struct sl_ref_query *q,
                        const size_t *idx, size_t n, char *errbuf, size_t errsz)
{
    if (!rc->conn && !(rc->conn = sl_pg_connect(rc->env->destination_url, 10, errbuf, errsz)))
        return SL_ERR_RETRY;
    if (!t->cast && !t->error) {
        int err = describe_column(rc, t, q[idx[0]].job->attrs[q[idx[0]].attr].name, errbuf, errsz);
        if (err)
            goto lost;
        if (t->error)
            return 0;
        if (!t->cast) { /* own table not made yet: nothing exists (not cached) */
            for (size_t j = 0; j < n; j++)
                q[idx[j]].found = false;
            return 0;
        }
    }
    struct sl_buf *b = &rc->arr;
    sl_buf_reset(b);
    int r = sl_buf_putc(b, '{');
    for (size_t j = 0; j < n; j++) {
        const char *v = q[idx[j]].value;
        if (j)
            r |= sl_buf_putc(b, ',');
        r |= sl_buf_putc(b, '"');
        for (const char *p = v; *p; p++) {
            if (*p == '"' || *p == '\\')
                r |= sl_buf_putc(b, '\\');
            r |= sl_buf_putc(b, *p);
        }
        r |= sl_buf_putc(b, '"');
    }
    r |= sl_buf_putc(b, '}') | sl_buf_putc(b, '\0');
    for (int attempt = 0; attempt < 2; attempt++) {
        /* SELECT v FROM unnest($1::text[]) u(v) WHERE EXISTS (SELECT 1 FROM
         * "table" t WHERE t."col" = u.v::type): each value one index probe */
        struct sl_buf *s = &rc->sql;
        sl_buf_reset(s);
        r |= sl_buf_puts(s, "SELECT u.v FROM unnest($1::text[]) AS u(v) WHERE EXISTS "
                            "(SELECT 1 FROM ");
        r |= sl_pg_put_ident(s, rc->conn, t->table);
        r |= sl_buf_puts(s, " AS t WHERE t.");
        r |= sl_pg_put_ident(s, rc->conn, t->column);
        if (t->text_only) {
            r |= sl_buf_puts(s, "::text = u.v)");
        } else {
            r |= sl_buf_puts(s, " = u.v::");
            r |= sl_buf_puts(s, t->cast);
            r |= sl_buf_putc(s, ')');
        }
        r |= sl_buf_putc(s, '\0');
        if (r)
            return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        const char *params[] = {b->data};
        PGresult *res = NULL;
        int err = sl_pg_exec(rc->conn, "look up referenced records", s->data, 1, params, &res,
                             errbuf, errsz);
        if (err == SL_ERR_INVALID && !t->text_only) {
            /* a value that is no value of the column's type (class 22):
             * compare as text instead, for this reference from now on */
            t->text_only = true;
            continue;
        }
        if (err == SL_ERR_FATAL && PQstatus(rc->conn) == CONNECTION_OK) {
            /* the server refuses the query itself (no privilege on the
             * table, the table dropped under us): the reference cannot
             * be checked */
            target_error(t, q[idx[0]].job->attrs[q[idx[0]].attr].name, "%s", errbuf);
            return 0;
        }
        if (err)
            goto lost;
        /* every value asked is not found, but those the query returned */
        cache_reserve(t, n);
        for (size_t j = 0; j < n; j++)
            cache_put(t, q[idx[j]].value, false);
        for (int i = 0; i < PQntuples(res); i++)
            cache_put(t, PQgetvalue(res, i, 0), true);
        PQclear(res);
        return 0;
    }
    return 0;
lost:
    if (rc->conn && PQstatus(rc->conn) != CONNECTION_OK) {
        PQfinish(rc->conn);
        rc->conn = NULL;
    }
    return SL_ERR_RETRY;
}

int sl_refcheck_lookup(struct sl_refcheck *rc, struct sl_ref_query *q, size_t n, char *errbuf,
                       size_t errsz)
{
    size_t *idx = n ? malloc(n * sizeof(*idx)) : NULL;
    if (n && !idx)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    bool *done = calloc(n ? n : 1, sizeof(bool));
    if (!done) {
        free(idx);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    int err = 0;
    time_t now = time(NULL);
    for (size_t i = 0; i < n && err == 0; i++) {
        if (done[i])
            continue;
        const struct sl_attr *a = &q[i].job->attrs[q[i].attr];
        struct target *t = target_of(rc, q[i].job, a, errbuf, errsz, &err);
        if (!t)
            break;
        if (now - t->cache_since >= CACHE_SECONDS)
            cache_clear(t);
        /* this reference's queries: from the cache, the file, or asked */
        size_t nask = 0;
        for (size_t k = i; k < n; k++) {
            if (done[k] || strcmp(q[k].job->attrs[q[k].attr].references, t->ref))
                continue;
            done[k] = true;
            q[k].error = t->error;
            q[k].found = false;
            if (t->error)
                continue;
            if (t->file_values) {
                q[k].found =
                    sl_keyset_test(t->file_values, q[k].value, strlen(q[k].value), false) == 1;
                continue;
            }
            struct answer *ans = cache_slot(t, q[k].value);
            if (ans->value) {
                q[k].found = ans->found;
                continue;
            }
            idx[nask++] = k; /* a value twice in the batch is asked twice: harmless */
        }
        if (nask)
            err = ask_postgres(rc, t, q, idx, nask, errbuf, errsz);
        if (err == 0 && t->error)
            for (size_t k = i; k < n; k++)
                if (!strcmp(q[k].job->attrs[q[k].attr].references, t->ref))
                    q[k].error = t->error;
        /* the answers just cached */
        for (size_t j = 0; err == 0 && !t->error && j < nask; j++) {
            struct answer *ans = cache_slot(t, q[idx[j]].value);
            if (ans->value)
                q[idx[j]].found = ans->found;
        }
    }
    free(idx);
    free(done);
    return err;
}
