/*
 * The control plane in PostgreSQL (control.h): migrations, job versions, and
 * the job registry over them.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "sluice/bus.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/schedule.h"

/* Any number: the key of the advisory lock that serializes migrations. */
#define MIGRATION_LOCK "7305147301"

/* Each migration runs once, in order, in its own transaction. Only ever add
 * at the end; never edit one that has shipped. */
static const char *const migrations[] = {
    /* 1: jobs, their versions, runs and their rejected rows */
    "CREATE TABLE sluice_jobs ("
    "  id text PRIMARY KEY,"
    "  current_version integer NOT NULL,"
    "  enabled boolean NOT NULL DEFAULT true,"
    "  next_run_at timestamptz,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  updated_at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE sluice_job_versions ("
    "  job_id text NOT NULL REFERENCES sluice_jobs (id) ON DELETE CASCADE,"
    "  version integer NOT NULL,"
    "  document text NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (job_id, version));"
    "CREATE TABLE sluice_runs ("
    "  id text PRIMARY KEY,"
    "  job_id text NOT NULL,"
    "  job_version integer NOT NULL,"
    "  trigger text NOT NULL,"
    "  status text NOT NULL,"
    "  reason text,"
    "  started_at timestamptz NOT NULL DEFAULT now(),"
    "  finished_at timestamptz,"
    "  source_sha256 text,"
    "  source_bytes bigint,"
    "  counts jsonb);"
    "CREATE INDEX sluice_runs_job ON sluice_runs (job_id, started_at DESC);"
    "CREATE TABLE sluice_rejected_rows ("
    "  run_id text NOT NULL,"
    "  row bigint NOT NULL,"
    "  errors jsonb NOT NULL,"
    "  source jsonb NOT NULL,"
    "  PRIMARY KEY (run_id, row));",
    /* 2: what the error file of a run needs: the source's header and format */
    ("ALTER TABLE sluice_runs ADD COLUMN columns jsonb, ADD COLUMN delimiter text,"
     "  ADD COLUMN encoding text;"),
    /* 3: schema drift: the source columns the mapping does not read */
    "ALTER TABLE sluice_runs ADD COLUMN unmapped_columns jsonb;",
    /* 4: what became of the run report (run_report.h) */
    "ALTER TABLE sluice_runs ADD COLUMN report jsonb;",
    /* 5: the gateway (api_store.h): API tokens (only their SHA-256 is kept),
     * runs in flight, and the versions of deleted jobs */
    ("CREATE TABLE sluice_api_tokens ("
     "  name text PRIMARY KEY,"
     "  role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),"
     "  token_sha256 text NOT NULL UNIQUE,"
     "  created_at timestamptz NOT NULL DEFAULT now());"
     "CREATE INDEX sluice_runs_status ON sluice_runs (status) "
     "  WHERE status IN ('queued', 'running');"
     /* a deleted job's last version: the same name created again goes on
      * from there, so that no (job, version) ever names two documents (the
      * services cache versions by that pair) */
     "CREATE TABLE sluice_job_tombstones ("
     "  id text PRIMARY KEY,"
     "  last_version integer NOT NULL,"
     "  deleted_at timestamptz NOT NULL DEFAULT now());"
     "CREATE FUNCTION sluice_jobs_resume_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
     "DECLARE v integer; "
     "BEGIN "
     "  SELECT t.last_version INTO v FROM sluice_job_tombstones t WHERE t.id = NEW.id; "
     "  IF v > NEW.current_version THEN NEW.current_version := v; END IF; "
     "  RETURN NEW; "
     "END $$;"
     "CREATE TRIGGER sluice_jobs_resume_version BEFORE INSERT ON sluice_jobs "
     "  FOR EACH ROW EXECUTE FUNCTION sluice_jobs_resume_version();"),
    /* 6: the trigger API (api_store.h): tokens that may only trigger runs,
     * of some jobs, and the idempotency key a trigger gave its run */
    ("ALTER TABLE sluice_api_tokens DROP CONSTRAINT sluice_api_tokens_role_check,"
     "  ADD CONSTRAINT sluice_api_tokens_role_check"
     "    CHECK (role IN ('admin', 'operator', 'viewer', 'trigger')),"
     "  ADD COLUMN jobs text[];"
     "ALTER TABLE sluice_runs ADD COLUMN idempotency_key text;"
     "CREATE UNIQUE INDEX sluice_runs_idempotency ON sluice_runs (job_id, idempotency_key) "
     "  WHERE idempotency_key IS NOT NULL;"),
};

#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int sl_control_schema_version(void)
{
    return NMIGRATIONS;
}

static int exec0(PGconn *c, const char *what, const char *sql, char *errbuf, size_t errsz)
{
    return sl_pg_exec(c, what, sql, 0, NULL, NULL, errbuf, errsz);
}

/* Ends the open transaction: commits it when rc is 0, else rolls it back
 * (keeping rc and its message). Returns the resulting sl_err. */
static int end_tx(PGconn *c, int rc, const char *what, char *errbuf, size_t errsz)
{
    if (rc == 0)
        return exec0(c, what, "COMMIT", errbuf, errsz);
    PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* Runs a script of several statements (PQexec: no parameters). */
static int exec_script(PGconn *c, const char *what, const char *sql, char *errbuf, size_t errsz)
{
    PGresult *res = PQexec(c, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[400];
        sl_pg_message(c, res, msg, sizeof(msg));
        rc = sl_seterr(errbuf, errsz, sl_pg_error_class(c, res), "cannot %s: %s", what, msg);
    }
    PQclear(res);
    return rc;
}

int sl_control_migrate(PGconn *c, char *errbuf, size_t errsz)
{
    /* one migrating process at a time, from the first statement on: even
     * CREATE TABLE IF NOT EXISTS collides when run concurrently */
    int rc = exec0(c, "lock the migrations", "SELECT pg_advisory_lock(" MIGRATION_LOCK ")", errbuf,
                   errsz);
    if (rc)
        return rc;
    rc = exec0(c, "create the migrations table",
               "CREATE TABLE IF NOT EXISTS sluice_schema_migrations ("
               "  version integer PRIMARY KEY,"
               "  applied_at timestamptz NOT NULL DEFAULT now())",
               errbuf, errsz);
    for (int v = 1; rc == 0 && v <= NMIGRATIONS; v++) {
        char num[24];
        snprintf(num, sizeof(num), "%d", v);
        const char *params[] = {num};
        PGresult *res = NULL;
        rc = sl_pg_exec(c, "read the schema version",
                        "SELECT 1 FROM sluice_schema_migrations WHERE version = $1::integer", 1,
                        params, &res, errbuf, errsz);
        bool applied = res && PQntuples(res) > 0;
        PQclear(res);
        if (rc || applied)
            continue;
        char what[64];
        snprintf(what, sizeof(what), "apply migration %d", v);
        if ((rc = exec0(c, "begin a migration", "BEGIN", errbuf, errsz)) != 0)
            break;
        rc = exec_script(c, what, migrations[v - 1], errbuf, errsz);
        if (rc == 0)
            rc = sl_pg_exec(c, "record the migration",
                            "INSERT INTO sluice_schema_migrations (version) VALUES ($1::integer)",
                            1, params, NULL, errbuf, errsz);
        rc = end_tx(c, rc, "commit a migration", errbuf, errsz);
        if (rc == 0)
            sl_info("control", "applied schema migration %d", v);
    }
    PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATION_LOCK ")"));
    return rc;
}

int sl_control_put_job(PGconn *c, const struct sl_job *job, const char *text, size_t len,
                       uint32_t *version, int *created, char *errbuf, size_t errsz)
{
    char *doc = strndup(text, len);
    if (!doc)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    *created = 0;
    PGresult *res = NULL;
    int rc = exec0(c, "begin storing the job", "BEGIN", errbuf, errsz);
    const char *p1[] = {job->name};
    if (rc == 0)
        rc = sl_pg_exec(c, "create the job",
                        "INSERT INTO sluice_jobs (id, current_version) VALUES ($1, 0) "
                        "ON CONFLICT (id) DO NOTHING",
                        1, p1, NULL, errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "read the job",
                        "SELECT j.current_version, v.document FROM sluice_jobs j "
                        "LEFT JOIN sluice_job_versions v "
                        "  ON v.job_id = j.id AND v.version = j.current_version "
                        "WHERE j.id = $1 FOR UPDATE OF j",
                        1, p1, &res, errbuf, errsz);
    if (rc == 0) {
        long cur = atol(PQgetvalue(res, 0, 0));
        bool same = !PQgetisnull(res, 0, 1) && !strcmp(PQgetvalue(res, 0, 1), doc);
        PQclear(res);
        res = NULL;
        if (same) {
            *version = (uint32_t)cur;
        } else {
            char next[24];
            snprintf(next, sizeof(next), "%ld", cur + 1);
            const char *p2[] = {job->name, next, doc};
            rc = sl_pg_exec(c, "store the job version",
                            "INSERT INTO sluice_job_versions (job_id, version, document) "
                            "VALUES ($1, $2::integer, $3)",
                            3, p2, NULL, errbuf, errsz);
            /* the schedule: sluice-scheduler fires the job at next_run_at,
             * the first slot of its calendar after now (schedule.h);
             * run_on_save fires at once */
            const struct sl_schedule *s = &job->schedule;
            char first[32] = "";
            int64_t at = 0;
            if (rc == 0 && s->every != SL_EVERY_NONE) {
                rc = sl_schedule_next(s, sl_now_us(), &at, errbuf, errsz);
                snprintf(first, sizeof(first), "%lld", (long long)at);
            }
            const char *p3[] = {job->name, next, s->enabled ? "true" : "false",
                                first[0] ? first : NULL, s->run_on_save ? "true" : "false"};
            if (rc == 0)
                rc = sl_pg_exec(c, "update the job",
                                "UPDATE sluice_jobs SET current_version = $2::integer, "
                                "updated_at = now(), enabled = $3::boolean, next_run_at = CASE "
                                "WHEN $5::boolean THEN now() "
                                "ELSE to_timestamp($4::bigint / 1e6) END "
                                "WHERE id = $1",
                                5, p3, NULL, errbuf, errsz);
            *version = (uint32_t)(cur + 1);
            *created = 1;
        }
    }
    rc = end_tx(c, rc, "commit the job", errbuf, errsz);
    PQclear(res);
    free(doc);
    return rc;
}

/* The registry: one connection, a list of loaded versions, one lock. */
struct cached {
    struct cached *next;
    struct sl_job *job;
};

struct pg_jobs {
    struct sl_jobs base;
    char *conninfo;
    PGconn *conn;
    pthread_mutex_t lock;
    struct cached *jobs;
};

static const struct sl_job *pg_jobs_get(struct sl_jobs *jobs, const char *job_id, uint32_t version,
                                        char *errbuf, size_t errsz)
{
    struct pg_jobs *pj = (struct pg_jobs *)jobs;
    const struct sl_job *found = NULL;
    pthread_mutex_lock(&pj->lock);
    for (struct cached *k = pj->jobs; k && !found; k = k->next)
        if (k->job->version == version && !strcmp(k->job->id, job_id))
            found = k->job;
    if (found)
        goto out;
    if (!pj->conn || PQstatus(pj->conn) != CONNECTION_OK) {
        PQfinish(pj->conn);
        if (!(pj->conn = sl_pg_connect(pj->conninfo, SL_PG_CONNECT_TIMEOUT, errbuf, errsz)))
            goto out;
    }
    char ver[24];
    snprintf(ver, sizeof(ver), "%u", version);
    const char *params[] = {job_id, ver};
    PGresult *res = NULL;
    if (sl_pg_exec(pj->conn, "read the job version",
                   "SELECT document FROM sluice_job_versions WHERE job_id = $1 AND version = "
                   "$2::integer",
                   2, params, &res, errbuf, errsz))
        goto out;
    if (PQntuples(res) == 0) {
        sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "job %s has no version %u", job_id, version);
        PQclear(res);
        goto out;
    }
    char err[512];
    struct sl_job *job = sl_job_load_json(PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0),
                                          NULL, err, sizeof(err));
    PQclear(res);
    struct cached *k = job ? calloc(1, sizeof(*k)) : NULL;
    char *id = job ? strdup(job_id) : NULL;
    if (!job || !k || !id) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "job %s version %u: %s", job_id, version,
                  job ? "out of memory" : err);
        sl_job_destroy(job);
        free(k);
        free(id);
        goto out;
    }
    free(job->id);
    job->id = id;
    job->version = version;
    k->job = job;
    k->next = pj->jobs;
    pj->jobs = k;
    found = job;
out:
    pthread_mutex_unlock(&pj->lock);
    return found;
}

static void pg_jobs_destroy(struct sl_jobs *jobs)
{
    struct pg_jobs *pj = (struct pg_jobs *)jobs;
    while (pj->jobs) {
        struct cached *k = pj->jobs;
        pj->jobs = k->next;
        sl_job_destroy(k->job);
        free(k);
    }
    PQfinish(pj->conn);
    pthread_mutex_destroy(&pj->lock);
    free(pj->conninfo);
    free(pj);
}

static const struct sl_jobs_ops pg_jobs_ops = {
    .get = pg_jobs_get,
    .destroy = pg_jobs_destroy,
};

struct sl_jobs *sl_jobs_pg_new(const char *conninfo, char *errbuf, size_t errsz)
{
    struct pg_jobs *pj = calloc(1, sizeof(*pj));
    if (!pj || !(pj->conninfo = strdup(conninfo))) {
        free(pj);
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pj->base.ops = &pg_jobs_ops;
    pthread_mutex_init(&pj->lock, NULL);
    if (!(pj->conn = sl_pg_connect(conninfo, SL_PG_CONNECT_TIMEOUT, errbuf, errsz))) {
        pg_jobs_destroy(&pj->base);
        return NULL;
    }
    return &pj->base;
}

/* The run id of a scheduled slot: a UUID made of SHA-256(job, version,
 * slot), the same for every replica. */
static void slot_run_id(const char *job_id, const char *version, int64_t slot_us, char out[37])
{
    char text[512];
    snprintf(text, sizeof(text), "%s\x1f%s\x1f%lld", job_id, version, (long long)slot_us);
    unsigned char d[32];
    SHA256((const unsigned char *)text, strlen(text), d);
    d[6] = (unsigned char)((d[6] & 0x0f) | 0x50);
    d[8] = (unsigned char)((d[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0],
             d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13],
             d[14], d[15]);
}

int sl_scheduler_tick(PGconn *c, struct sl_bus *bus, int64_t now_us, int *fired, char *errbuf,
                      size_t errsz)
{
    *fired = 0;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)now_us);
    const char *p1[] = {now};
    PGresult *res = NULL;
    int rc = exec0(c, "begin a scheduler tick", "BEGIN", errbuf, errsz);
    if (rc == 0)
        rc = sl_pg_exec(c, "read the due jobs",
                        "SELECT j.id, j.current_version, "
                        "  (extract(epoch FROM j.next_run_at) * 1000000)::bigint, v.document "
                        "FROM sluice_jobs j JOIN sluice_job_versions v "
                        "  ON v.job_id = j.id AND v.version = j.current_version "
                        "WHERE j.enabled AND j.next_run_at <= to_timestamp($1::bigint / 1e6) "
                        "ORDER BY j.next_run_at LIMIT 100 FOR UPDATE OF j SKIP LOCKED",
                        1, p1, &res, errbuf, errsz);
    int sent = 0;
    for (int i = 0; rc == 0 && res && i < PQntuples(res); i++) {
        const char *job_id = PQgetvalue(res, i, 0), *ver = PQgetvalue(res, i, 1);
        int64_t slot = atoll(PQgetvalue(res, i, 2));
        char err[512];
        struct sl_job *job = sl_job_load_json(PQgetvalue(res, i, 3), (size_t)PQgetlength(res, i, 3),
                                              NULL, err, sizeof(err));
        /* the first slot after both the one due and now: a scheduler that
         * was down fires a missed slot once, not once per slot missed */
        int64_t next = 0;
        bool parked = !job || (job->schedule.every == SL_EVERY_NONE && !job->schedule.run_on_save);
        int serr = 0;
        if (job && job->schedule.every != SL_EVERY_NONE)
            serr = sl_schedule_advance(&job->schedule, slot, now_us, &next, err, sizeof(err));
        sl_job_destroy(job);
        if (parked || serr) { /* no calendar to follow: stop looking at it */
            sl_warn("scheduler", "job %s: %s: not scheduled any more", job_id,
                    parked && !serr ? "no schedule" : err);
            const char *p[] = {job_id};
            rc = sl_pg_exec(c, "park the job",
                            "UPDATE sluice_jobs SET next_run_at = NULL WHERE id = $1", 1, p, NULL,
                            errbuf, errsz);
            continue;
        }
        char run_id[37];
        slot_run_id(job_id, ver, slot, run_id);
        const char *p2[] = {run_id, job_id, ver};
        rc = sl_pg_exec(c, "record the scheduled run",
                        "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status) "
                        "VALUES ($1, $2, $3::integer, 'schedule', 'queued') "
                        "ON CONFLICT (id) DO NOTHING",
                        3, p2, NULL, errbuf, errsz);
        struct sl_msg *t =
            rc ? NULL : sl_msg_new(SL_MSG_TICKET, run_id, job_id, (uint32_t)atol(ver));
        if (rc == 0 && !t)
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        if (rc)
            break;
        t->u.ticket.ticket_id = t->run_id;
        t->u.ticket.trigger = "schedule";
        t->u.ticket.scheduled_at = slot;
        t->key = t->job_id;
        if ((rc = sl_bus_send(bus, SL_TOPIC_TICKETS, t)) != 0) {
            sl_seterr(errbuf, errsz, rc, "cannot send the ticket of job %s: %s", job_id,
                      sl_err_str(rc));
            break;
        }
        /* next 0: a job with run_on_save and no cadence, fired once */
        char nx[32];
        snprintf(nx, sizeof(nx), "%lld", (long long)next);
        const char *p3[] = {job_id, next ? nx : NULL};
        rc = sl_pg_exec(c, "move the job's next run",
                        "UPDATE sluice_jobs SET next_run_at = to_timestamp($2::bigint / 1e6) "
                        "WHERE id = $1",
                        2, p3, NULL, errbuf, errsz);
        sent++;
    }
    PQclear(res);
    /* the tickets are acknowledged before the slots are moved for good */
    if (rc == 0 && sent && (rc = bus->ops->flush(bus, 30000)) != 0)
        sl_seterr(errbuf, errsz, rc, "cannot deliver the tickets: %s", sl_err_str(rc));
    rc = end_tx(c, rc, "commit the scheduler tick", errbuf, errsz);
    if (rc == 0)
        *fired = sent;
    return rc;
}
