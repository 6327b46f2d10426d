/*
 * The control plane as the gateway's API sees it (api_store.h).
 *
 * Rows are shaped into JSON by PostgreSQL itself (json_build_object), so
 * that every timestamp is RFC 3339 UTC in one place and numbers and nulls
 * come out as they are stored; the C side only parses the text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "sluice/api_store.h"
#include "sluice/err.h"
#include "sluice/msg.h"
#include "sluice/pg.h"
#include "sluice/util.h"

/* A timestamptz column as RFC 3339 UTC text with milliseconds (NULL stays NULL). */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

#define JOB_FIELDS                                                                                 \
    "'id', j.id, 'current_version', j.current_version, 'enabled', j.enabled, "                     \
    "'next_run_at', " TS("j.next_run_at") ", 'created_at', " TS(                                   \
        "j.created_at") ", "                                                                       \
                        "'updated_at', " TS("j.updated_at")

#define RUN_FIELDS                                                                                 \
    "'id', r.id, 'job_id', r.job_id, 'job_version', r.job_version, 'trigger', r.trigger, "         \
    "'status', r.status, 'reason', r.reason, 'started_at', " TS(                                   \
        "r.started_at") ", "                                                                       \
                        "'finished_at', " TS("r.finished_at") ", 'counts', r.counts"

const char *sl_api_role_name(enum sl_api_role role)
{
    switch (role) {
    case SL_ROLE_VIEWER:
        return "viewer";
    case SL_ROLE_OPERATOR:
        return "operator";
    case SL_ROLE_ADMIN:
        return "admin";
    case SL_ROLE_TRIGGER:
        return "trigger";
    default:
        return "";
    }
}

enum sl_api_role sl_api_role_parse(const char *name)
{
    if (!name)
        return SL_ROLE_NONE;
    for (int r = SL_ROLE_VIEWER; r <= SL_ROLE_TRIGGER; r++)
        if (!strcmp(name, sl_api_role_name((enum sl_api_role)r)))
            return (enum sl_api_role)r;
    return SL_ROLE_NONE;
}

void sl_api_token_hash(const char *token, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    sl_hex(d, sizeof(d), out);
}

static int exec0(PGconn *c, const char *what, const char *sql, char *errbuf, size_t errsz)
{
    return sl_pg_exec(c, what, sql, 0, NULL, NULL, errbuf, errsz);
}

/* Ends the open transaction: commits when rc is 0, else rolls back keeping rc. */
static int end_tx(PGconn *c, int rc, char *errbuf, size_t errsz)
{
    if (rc == 0)
        return exec0(c, "commit", "COMMIT", errbuf, errsz);
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* The first column of every row of res (JSON text) as a JSON array. */
static int rows_json(PGresult *res, int max, json_t **out, char *errbuf, size_t errsz)
{
    json_t *arr = json_array();
    if (!arr)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    int n = PQntuples(res);
    for (int i = 0; i < n && i < max; i++) {
        json_error_t je;
        json_t *v = json_loads(PQgetvalue(res, i, 0), JSON_DECODE_ANY, &je);
        if (!v || json_array_append_new(arr, v)) {
            json_decref(arr);
            return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot read a row as json: %s", je.text);
        }
    }
    *out = arr;
    return 0;
}

/* The one row of res (JSON text) as a value. */
static int row_json(PGresult *res, json_t **out, char *errbuf, size_t errsz)
{
    json_error_t je;
    if (!(*out = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, &je)))
        return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot read a row as json: %s", je.text);
    return 0;
}

int sl_api_token_put(PGconn *c, const char *name, enum sl_api_role role, const char *sha256,
                     const json_t *jobs, bool replace, char *errbuf, size_t errsz)
{
    char *list = jobs ? json_dumps(jobs, JSON_COMPACT) : NULL;
    if (jobs && !list)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    const char *params[] = {name, sl_api_role_name(role), sha256, list};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "store the token",
                        replace ? "INSERT INTO sluice_api_tokens (name, role, token_sha256, jobs) "
                                  "SELECT $1, $2, $3, CASE WHEN $4::jsonb IS NULL THEN NULL ELSE "
                                  "  ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END "
                                  "ON CONFLICT (name) DO UPDATE SET role = excluded.role, "
                                  "token_sha256 = excluded.token_sha256, jobs = excluded.jobs"
                                : "INSERT INTO sluice_api_tokens (name, role, token_sha256, jobs) "
                                  "SELECT $1, $2, $3, CASE WHEN $4::jsonb IS NULL THEN NULL ELSE "
                                  "  ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END "
                                  "ON CONFLICT (name) DO NOTHING",
                        4, params, &res, errbuf, errsz);
    free(list);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "a token named '%s' exists already", name);
    PQclear(res);
    return rc;
}

int sl_api_token_check(PGconn *c, const char *sha256, enum sl_api_role *role, char *name,
                       size_t namesz, char *errbuf, size_t errsz)
{
    *role = SL_ROLE_NONE;
    if (namesz)
        name[0] = '\0';
    const char *params[] = {sha256};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "check the token",
                        "SELECT role, name, token_sha256 FROM sluice_api_tokens "
                        "WHERE token_sha256 = $1",
                        1, params, &res, errbuf, errsz);
    if (rc)
        return rc;
    /* the index found the row; the hash is compared again without an early
     * exit, so that no timing says how much of it matched */
    if (PQntuples(res) == 1 && PQgetlength(res, 0, 2) == 64 && strlen(sha256) == 64 &&
        CRYPTO_memcmp(PQgetvalue(res, 0, 2), sha256, 64) == 0) {
        *role = sl_api_role_parse(PQgetvalue(res, 0, 0));
        snprintf(name, namesz, "%s", PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return 0;
}

int sl_api_token_covers(PGconn *c, const char *name, const char *id, bool *ok, char *errbuf,
                        size_t errsz)
{
    const char *params[] = {name, id};
    PGresult *res = NULL;
    *ok = false;
    int rc = sl_pg_exec(c, "check the token's jobs",
                        "SELECT 1 FROM sluice_api_tokens WHERE name = $1 "
                        "AND (jobs IS NULL OR $2 = ANY (jobs))",
                        2, params, &res, errbuf, errsz);
    if (rc == 0)
        *ok = PQntuples(res) == 1;
    PQclear(res);
    return rc;
}

int sl_api_tokens_list(PGconn *c, json_t **out, char *errbuf, size_t errsz)
{
    PGresult *res = NULL;
    int rc =
        sl_pg_exec(c, "list the tokens",
                   "SELECT json_build_object('name', name, 'role', role, 'jobs', to_json(jobs), "
                   "'created_at', " TS("created_at") ")::text FROM sluice_api_tokens "
                                                     "ORDER BY name",
                   0, NULL, &res, errbuf, errsz);
    if (rc == 0)
        rc = rows_json(res, PQntuples(res), out, errbuf, errsz);
    PQclear(res);
    return rc;
}

int sl_api_token_delete(PGconn *c, const char *name, char *errbuf, size_t errsz)
{
    const char *params[] = {name};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "delete the token", "DELETE FROM sluice_api_tokens WHERE name = $1", 1,
                        params, &res, errbuf, errsz);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no token is named '%s'", name);
    PQclear(res);
    return rc;
}

int sl_api_jobs_list(PGconn *c, const char *after, int limit, json_t **out, bool *more,
                     char *errbuf, size_t errsz)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%d", limit + 1);
    const char *params[] = {after, lim};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "list the jobs",
                        "SELECT json_build_object(" JOB_FIELDS ")::text FROM sluice_jobs j "
                        "WHERE $1::text IS NULL OR j.id > $1 ORDER BY j.id LIMIT $2::integer",
                        2, params, &res, errbuf, errsz);
    if (rc == 0) {
        *more = PQntuples(res) > limit;
        rc = rows_json(res, limit, out, errbuf, errsz);
    }
    PQclear(res);
    return rc;
}

int sl_api_job_get(PGconn *c, const char *id, uint32_t version, json_t **meta, char **doc,
                   char *errbuf, size_t errsz)
{
    char ver[24];
    snprintf(ver, sizeof(ver), "%u", version);
    const char *params[] = {id, ver};
    PGresult *res = NULL;
    int rc = sl_pg_exec(
        c, "read the job",
        "SELECT json_build_object(" JOB_FIELDS ", 'version', v.version, "
        "  'version_created_at', " TS(
            "v.created_at") ")::text, v.document "
                            "FROM sluice_jobs j JOIN sluice_job_versions v ON v.job_id = j.id "
                            "  AND v.version = CASE WHEN $2::integer = 0 THEN j.current_version "
                            "ELSE $2::integer END "
                            "WHERE j.id = $1",
        2, params, &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = version ? sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "job '%s' has no version %u", id,
                                 version)
                     : sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
    if (rc == 0 && (rc = row_json(res, meta, errbuf, errsz)) == 0 &&
        !(*doc = strdup(PQgetvalue(res, 0, 1)))) {
        json_decref(*meta);
        *meta = NULL;
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    PQclear(res);
    return rc;
}

int sl_api_job_set_enabled(PGconn *c, const char *id, bool enabled, char *errbuf, size_t errsz)
{
    const char *params[] = {id, enabled ? "true" : "false"};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "change the job",
                        "UPDATE sluice_jobs SET enabled = $2::boolean, updated_at = now() "
                        "WHERE id = $1",
                        2, params, &res, errbuf, errsz);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
    PQclear(res);
    return rc;
}

int sl_api_job_delete(PGconn *c, const char *id, char *errbuf, size_t errsz)
{
    const char *params[] = {id};
    PGresult *res = NULL;
    /* the job's row is locked first: a run-now (which locks it to share)
     * either comes before and is seen here, or waits and finds no job */
    int rc = exec0(c, "begin deleting the job", "BEGIN", errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "lock the job", "SELECT 1 FROM sluice_jobs WHERE id = $1 FOR UPDATE", 1,
                        params, &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
    PQclear(res);
    res = NULL;
    if (rc == 0)
        rc = sl_pg_exec(c, "look for runs in flight",
                        "SELECT id, status FROM sluice_runs "
                        "WHERE (job_id = $1 OR starts_with(job_id, $1 || '#')) "
                        "  AND status IN ('queued', 'running') LIMIT 1",
                        1, params, &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) > 0)
        rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "job '%s' has a run in flight (%s is %s)", id,
                       PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    PQclear(res);
    /* the name created again goes on from its last version (migration 5) */
    if (rc == 0)
        rc = sl_pg_exec(c, "remember the job's last version",
                        "INSERT INTO sluice_job_tombstones (id, last_version) "
                        "SELECT id, current_version FROM sluice_jobs WHERE id = $1 "
                        "ON CONFLICT (id) DO UPDATE SET last_version = "
                        "  greatest(sluice_job_tombstones.last_version, excluded.last_version), "
                        "  deleted_at = now()",
                        1, params, NULL, errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "delete the job", "DELETE FROM sluice_jobs WHERE id = $1", 1, params,
                        NULL, errbuf, errsz);
    return end_tx(c, rc, errbuf, errsz);
}

int sl_api_run_queue(PGconn *c, const char *id, const char *trigger, char run_id[37],
                     uint32_t *version, char *errbuf, size_t errsz)
{
    const char *p1[] = {id};
    PGresult *res = NULL;
    int rc = exec0(c, "begin queueing the run", "BEGIN", errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "read the job",
                        "SELECT current_version FROM sluice_jobs WHERE id = $1 FOR SHARE", 1, p1,
                        &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
    if (rc == 0) {
        *version = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        sl_new_run_id(run_id);
        const char *p2[] = {run_id, id, PQgetvalue(res, 0, 0), trigger};
        rc = sl_pg_exec(c, "record the run",
                        "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status) "
                        "VALUES ($1, $2, $3::integer, $4, 'queued')",
                        4, p2, NULL, errbuf, errsz);
    }
    PQclear(res);
    return end_tx(c, rc, errbuf, errsz);
}

int sl_api_run_queue_keyed(PGconn *c, const char *id, const char *trigger, const char *key,
                           char run_id[37], uint32_t *version, bool *found, char *errbuf,
                           size_t errsz)
{
    *found = false;
    if (!key)
        return sl_api_run_queue(c, id, trigger, run_id, version, errbuf, errsz);
    const char *p1[] = {id};
    PGresult *res = NULL;
    int rc = exec0(c, "begin queueing the run", "BEGIN", errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "read the job",
                        "SELECT current_version FROM sluice_jobs WHERE id = $1 FOR SHARE", 1, p1,
                        &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
    if (rc == 0) {
        sl_new_run_id(run_id);
        const char *p2[] = {run_id, id, PQgetvalue(res, 0, 0), trigger, key};
        PGresult *ins = NULL;
        /* the unique index on (job_id, idempotency_key) decides between two
         * requests of the same key at the same time: the second waits for
         * the first's commit, then finds its run */
        rc = sl_pg_exec(c, "record the run",
                        "WITH ins AS (INSERT INTO sluice_runs (id, job_id, job_version, trigger, "
                        "  status, idempotency_key) VALUES ($1, $2, $3::integer, $4, 'queued', $5) "
                        "  ON CONFLICT (job_id, idempotency_key) "
                        "  WHERE idempotency_key IS NOT NULL DO NOTHING "
                        "  RETURNING id, job_version) "
                        "SELECT id, job_version, true FROM ins UNION ALL "
                        "SELECT id, job_version, false FROM sluice_runs "
                        "WHERE job_id = $2 AND idempotency_key = $5",
                        5, p2, &ins, errbuf, errsz);
        if (rc == 0 && PQntuples(ins) < 1) {
            /* the other request committed after this statement began: a
             * new statement sees its run */
            PQclear(ins);
            ins = NULL;
            const char *p3[] = {id, key};
            rc = sl_pg_exec(c, "find the run",
                            "SELECT id, job_version, false FROM sluice_runs "
                            "WHERE job_id = $1 AND idempotency_key = $2",
                            2, p3, &ins, errbuf, errsz);
            if (rc == 0 && PQntuples(ins) < 1)
                rc = sl_seterr(errbuf, errsz, SL_ERR_RETRY,
                               "the run of idempotency key '%s' was being removed; try again", key);
        }
        if (rc == 0) {
            snprintf(run_id, 37, "%s", PQgetvalue(ins, 0, 0));
            *version = (uint32_t)strtoul(PQgetvalue(ins, 0, 1), NULL, 10);
            *found = strcmp(PQgetvalue(ins, 0, 2), "t") != 0;
        }
        PQclear(ins);
    }
    PQclear(res);
    return end_tx(c, rc, errbuf, errsz);
}

int sl_api_run_forget(PGconn *c, const char *run_id, char *errbuf, size_t errsz)
{
    const char *params[] = {run_id};
    return sl_pg_exec(c, "remove the run",
                      "DELETE FROM sluice_runs WHERE id = $1 AND status = 'queued'", 1, params,
                      NULL, errbuf, errsz);
}

int sl_api_run_fail(PGconn *c, const char *run_id, const char *reason, char *errbuf, size_t errsz)
{
    const char *params[] = {run_id, reason};
    return sl_pg_exec(c, "fail the run",
                      "UPDATE sluice_runs SET status = 'failed', reason = $2, "
                      "finished_at = now() WHERE id = $1 AND status = 'queued'",
                      2, params, NULL, errbuf, errsz);
}

int sl_api_runs_list(PGconn *c, const char *id, const struct sl_api_run_filter *f, json_t **out,
                     bool *more, char *errbuf, size_t errsz)
{
    char lim[24], after[32];
    snprintf(lim, sizeof(lim), "%d", f->limit + 1);
    snprintf(after, sizeof(after), "%lld", (long long)f->after_us);
    const char *params[] = {id,          f->status, f->since, f->until, f->after_id ? after : NULL,
                            f->after_id, lim};
    PGresult *res = NULL;
    int rc = sl_pg_exec(
        c, "list the runs",
        "SELECT json_build_object(" RUN_FIELDS ", '_cursor_us', "
        "  (extract(epoch FROM r.started_at) * 1000000)::bigint)::text "
        "FROM sluice_runs r "
        "WHERE (r.job_id = $1 OR starts_with(r.job_id, $1 || '#')) "
        "  AND ($2::text IS NULL OR r.status = $2) "
        "  AND ($3::timestamptz IS NULL OR r.started_at >= $3::timestamptz) "
        "  AND ($4::timestamptz IS NULL OR r.started_at < $4::timestamptz) "
        "  AND ($5::bigint IS NULL OR (r.started_at, r.id) < "
        "       ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6::text)) "
        "ORDER BY r.started_at DESC, r.id DESC LIMIT $7::integer",
        7, params, &res, errbuf, errsz);
    if (rc == 0) {
        *more = PQntuples(res) > f->limit;
        rc = rows_json(res, f->limit, out, errbuf, errsz);
    }
    PQclear(res);
    if (rc == 0 && json_array_size(*out) == 0 && !f->after_id) {
        /* no runs: a job that does not exist is a 404, one without runs an empty list */
        const char *p1[] = {id};
        rc = sl_pg_exec(c, "read the job", "SELECT 1 FROM sluice_jobs WHERE id = $1", 1, p1, &res,
                        errbuf, errsz);
        if (rc == 0 && PQntuples(res) == 0) {
            json_decref(*out);
            *out = NULL;
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no job is named '%s'", id);
        }
        PQclear(res);
    }
    return rc;
}

int sl_api_run_get(PGconn *c, const char *run_id, json_t **out, char *errbuf, size_t errsz)
{
    const char *params[] = {run_id};
    PGresult *res = NULL;
    int rc = sl_pg_exec(
        c, "read the run",
        "SELECT json_build_object(" RUN_FIELDS ", "
        "  'source', json_build_object('sha256', r.source_sha256, 'bytes', r.source_bytes), "
        "  'unmapped_columns', r.unmapped_columns, 'report', r.report, "
        "  'rejected_rows', (SELECT count(*) FROM sluice_rejected_rows x WHERE x.run_id = r.id))"
        "::text FROM sluice_runs r WHERE r.id = $1",
        1, params, &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no run has the id '%s'", run_id);
    if (rc == 0)
        rc = row_json(res, out, errbuf, errsz);
    PQclear(res);
    return rc;
}

int sl_api_run_columns(PGconn *c, const char *run_id, json_t **columns, char *errbuf, size_t errsz)
{
    const char *params[] = {run_id};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "read the run",
                        "SELECT coalesce(columns, '[]'::jsonb)::text FROM sluice_runs "
                        "WHERE id = $1",
                        1, params, &res, errbuf, errsz);
    if (rc == 0 && PQntuples(res) != 1)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "no run has the id '%s'", run_id);
    if (rc == 0)
        rc = row_json(res, columns, errbuf, errsz);
    PQclear(res);
    return rc;
}

int sl_api_rejected_page(PGconn *c, const char *run_id, int64_t after, int limit, json_t **out,
                         char *errbuf, size_t errsz)
{
    char aft[32], lim[24];
    snprintf(aft, sizeof(aft), "%lld", (long long)after);
    snprintf(lim, sizeof(lim), "%d", limit);
    const char *params[] = {run_id, aft, lim};
    PGresult *res = NULL;
    int rc = sl_pg_exec(c, "read the rejected rows",
                        "SELECT json_build_object('row', row, 'errors', errors, 'source', "
                        "source)::text FROM sluice_rejected_rows "
                        "WHERE run_id = $1 AND row > $2::bigint ORDER BY row LIMIT $3::integer",
                        3, params, &res, errbuf, errsz);
    if (rc == 0)
        rc = rows_json(res, limit, out, errbuf, errsz);
    PQclear(res);
    return rc;
}
