/*
 * Distributed mode end to end: the five services as processes over a
 * Kafka-protocol broker (librdkafka's mock cluster), Redis and PostgreSQL,
 * all on loopback, started once for every test of this file.
 *
 * - Poison: records that are no protobuf, on every topic, go to the
 *   dead-letter topic with their reason and source topic as headers; records
 *   that are valid protobuf of absurd content (no run id, an unknown job, a
 *   run that does not exist, a run id that is a path) are set aside or end a
 *   run of their own; no service dies or stalls, and the demo job's run
 *   (`sluice submit --run`, a file:// source, a postgres destination) gives
 *   the same run status, counts and destination rows as embedded mode gives
 *   for the same file. A second run of the unchanged file is skipped.
 * - Duplicate tickets: the same ticket three times at once, and once more
 *   after the run is final (taken from the topic with kcat), fetch and
 *   process the run once, with exact counts.
 * - Every example job that can run here (the JOBS.md example, the job
 *   fixtures of the CLI tests) runs in both modes with equal results: the
 *   destination table equals the published NDJSON row for row (as typed
 *   JSON), rejected rows, status and counts are equal; an unchanged file is
 *   skipped and a changed one runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"
#include "services.h"
#include "sluice/bus.h"
#include "sluice/codec.h"
#include "sluice/job.h"
#include "sluice/msg.h"

#define REPO SLUICE_FIXTURES "/../.."

static const char *const services[] = {"fetcher", "parser", "mapper", "validator", "publisher"};
#define NSERVICES 5

static struct pg_server pg;
static struct redis_server rs;
static struct kafka_mock km;
static pid_t svc_pid[NSERVICES];
static char tmp[64], redis_url[256];
static struct sl_bus *bus;        /* the test's own producer, for records it makes up */
static bool unfinished;           /* a test stopped half-way: keep tmp for its logs */
static PGconn *db;                /* the control plane and destination, for the checks */
static struct sl_job *loaded[32]; /* the example jobs loaded, freed by teardown */
static size_t nloaded;

/* The whole output of the shell command made from fmt (caller frees). */
static char *__attribute__((format(printf, 1, 2))) shell_out(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            out = realloc(out, cap *= 2);
            assert_non_null(out);
        }
    }
    out[len] = '\0';
    pclose(p);
    return out;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 65536;
    char *s = malloc(cap);
    size_t n;
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096)
            s = realloc(s, cap *= 2);
    }
    fclose(f);
    if (s)
        s[len] = '\0';
    return s;
}

/* Each service serves /metrics on a loopback port of its own, free when
 * the service started (a port picked by the kernel, as for PostgreSQL). */
static int metrics_ports[NSERVICES];

static int metrics_port(int i)
{
    if (!metrics_ports[i])
        metrics_ports[i] = pg_server_free_port();
    return metrics_ports[i];
}

static int start_service(int i)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", metrics_port(i));
    setenv("SLUICE_METRICS_ADDR", addr, 1);
    svc_pid[i] = svc_start(services[i], tmp);
    unsetenv("SLUICE_METRICS_ADDR");
    return svc_pid[i] > 0 ? 0 : -1;
}

/* The /metrics text of service i (curl, the real client), or NULL. */
static char *scrape(int i)
{
    return shell_out("curl -sf http://127.0.0.1:%d/metrics", metrics_port(i));
}

static int setup(void **state)
{
    snprintf(tmp, sizeof(tmp), "/tmp/sluice-dist-XXXXXX");
    if (!mkdtemp(tmp))
        return -1;
    static const char *const topics[] = {
        "sluice.tickets:1",        "sluice.files:2",         "sluice.records.raw:4",
        "sluice.records.mapped:4", "sluice.records.valid:4", "sluice.records.rejected:2",
        "sluice.runs:2",           "sluice.dead:1",          NULL,
    };
    if (pg_server_start(&pg)) {
        fprintf(stderr, "cannot start postgresql: %s\n", pg.err);
        return -1;
    }
    if (redis_server_start(&rs, false) || kafka_mock_start(&km, topics))
        return -1;
    redis_server_url(&rs, 0, NULL, redis_url, sizeof(redis_url));
    char blobs[128], dirs[512], err[512];
    snprintf(blobs, sizeof(blobs), "%s/blobs", tmp);
    /* the inputs of the examples are copied here (so that they can change) */
    snprintf(dirs, sizeof(dirs), "%s/inputs", tmp);
    if (mkdir(dirs, 0755))
        return -1;
    snprintf(dirs, sizeof(dirs), "%s/examples:%s/inputs", REPO, tmp);
    setenv("SLUICE_KAFKA_BROKERS", km.bootstrap, 1);
    setenv("SLUICE_REDIS_URL", redis_url, 1);
    setenv("SLUICE_POSTGRES_URL", pg.conninfo, 1);
    setenv("SLUICE_BLOB_DIR", blobs, 1);
    setenv("SLUICE_FILE_DIRS", dirs, 1);
    setenv("SLUICE_LOG_LEVEL", "info", 1);
    /* librdkafka's statistics every second: the consumer lag of /metrics */
    setenv("SLUICE_KAFKA_CONFIG", "statistics.interval.ms=1000", 1);
    /* the publisher's run reports go to a real SMTP server on loopback */
    if (shell("mkdir -p %s/mail && /usr/bin/python3 %s/tests/integration/smtp_tool.py serve "
              "--dir %s/mail > %s/smtp.port 2> %s/smtp.log & echo $! > %s/smtp.pid",
              tmp, REPO, tmp, tmp, tmp, tmp))
        return -1;
    char smtp[128] = "";
    for (int i = 0; i < 100 && !smtp[0]; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/smtp.port", tmp);
        FILE *pf = fopen(path, "r");
        int port = 0;
        if (pf && fscanf(pf, "%d", &port) == 1 && port > 0)
            snprintf(smtp, sizeof(smtp), "smtp://127.0.0.1:%d", port);
        if (pf)
            fclose(pf);
        if (!smtp[0])
            usleep(100000);
    }
    if (!smtp[0]) {
        fprintf(stderr, "the smtp server did not start (%s/smtp.log)\n", tmp);
        return -1;
    }
    setenv("SLUICE_SMTP_URL", smtp, 1);
    setenv("SLUICE_SMTP_STARTTLS", "off", 1);
    struct sl_kafka_conf kc = {.brokers = km.bootstrap, .client_id = "sluice-test"};
    if (!(bus = sl_bus_kafka_new(&kc, err, sizeof(err)))) {
        fprintf(stderr, "cannot make a kafka producer: %s\n", err);
        return -1;
    }
    for (int i = 0; i < NSERVICES; i++)
        if (start_service(i))
            return -1;
    return 0;
}

static int teardown(void **state)
{
    int bad = 0;
    for (int i = 0; i < NSERVICES; i++) {
        if (svc_stop(svc_pid[i], services[i]))
            bad = 1;
        svc_pid[i] = 0;
    }
    sl_bus_destroy(bus);
    PQfinish(db);
    while (nloaded)
        sl_job_destroy(loaded[--nloaded]);
    kafka_mock_stop(&km);
    redis_server_stop(&rs);
    pg_server_stop(&pg);
    shell("kill $(cat %s/smtp.pid) 2>/dev/null", tmp);
    if (bad || unfinished || getenv("SLUICE_KEEP_TMP")) {
        fprintf(stderr, "service logs are in %s\n", tmp);
        return bad ? -1 : 0;
    }
    return shell("rm -rf %s", tmp) == 0 ? 0 : -1;
}

/* Fails unless every service is still running. */
static void assert_services_alive(void)
{
    for (int i = 0; i < NSERVICES; i++) {
        int st = 0;
        if (svc_pid[i] > 0 && waitpid(svc_pid[i], &st, WNOHANG) == svc_pid[i]) {
            svc_pid[i] = 0;
            fail_msg("sluice-%s died (%s %d); its log is %s/%s.log", services[i],
                     WIFSIGNALED(st) ? "signal" : "exit status",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), tmp, services[i]);
        }
    }
}

/* Whether the log of service holds needle; waits up to secs for it. */
static bool log_has(const char *service, const char *needle, int secs)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.log", tmp, service);
    for (int i = 0; i <= secs * 10; i++) {
        char *s = read_text(path);
        bool found = s && strstr(s, needle);
        free(s);
        if (found)
            return true;
        if (i < secs * 10)
            usleep(100000);
    }
    return false;
}

static void assert_log_has(const char *service, const char *needle)
{
    if (!log_has(service, needle, 10))
        fail_msg("the log of sluice-%s (%s/%s.log) does not say '%s'", service, tmp, service,
                 needle);
}

/* Occurrences of needle in the log of service. */
static int log_count(const char *service, const char *needle)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s.log", tmp, service);
    char *s = read_text(path);
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(s);
    return n;
}

/* sluice submit JOB [--run]: the job's version, and the run id into run_id
 * (37 bytes) with --run. */
static unsigned submit(const char *job, bool run, char *run_id)
{
    char line[512];
    unsigned version = 0;
    FILE *p = NULL;
    snprintf(line, sizeof(line), "%s/sluice submit %s%s 2>&1", SLUICE_BUILD_DIR, job,
             run ? " --run" : "");
    assert_non_null(p = popen(line, "r"));
    if (run_id)
        run_id[0] = '\0';
    while (fgets(line, sizeof(line), p)) {
        fprintf(stderr, "# %s", line);
        char *v = strstr(line, "' is unchanged at version ");
        if (!v)
            v = strstr(line, "' stored as version ");
        if (v)
            version = (unsigned)atoi(strstr(v, "version ") + 8);
        if (run_id)
            sscanf(line, "run %36s requested", run_id);
    }
    assert_int_equal(pclose(p), 0);
    assert_true(version > 0);
    if (run)
        assert_int_equal(strlen(run_id), 36);
    return version;
}

/* Waits until the run is final; its row: status, counts (json text),
 * reason, finished_at, unmapped_columns (json text, '' when null). */
static PGresult *wait_run(PGconn *c, const char *run_id)
{
    const char *params[] = {run_id};
    for (int i = 0; i < 600; i++) { /* up to a minute */
        PGresult *r = PQexecParams(c,
                                   "SELECT status, counts::text, coalesce(reason, ''), "
                                   "finished_at::text, coalesce(unmapped_columns::text, '') "
                                   "FROM sluice_runs WHERE id = $1",
                                   1, NULL, params, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "queued") &&
            strcmp(PQgetvalue(r, 0, 0), "running"))
            return r;
        PQclear(r);
        usleep(100000);
    }
    fail_msg("run %s did not finish in a minute (logs in %s)", run_id, tmp);
    return NULL;
}

/* The connection of the checks (made once, closed by teardown). */
static PGconn *connect_pg(void)
{
    if (!db)
        db = PQconnectdb(pg.conninfo);
    assert_int_equal(PQstatus(db), CONNECTION_OK);
    return db;
}

/* ---- comparing a distributed run with an embedded one ---- */

/* Drops the null members of a JSON object (a missing value). */
static json_t *without_nulls(json_t *o)
{
    const char *k;
    json_t *v;
    void *tmpit;
    json_object_foreach_safe(o, tmpit, k, v)
    {
        if (json_is_null(v))
            json_object_del(o, k);
    }
    return o;
}

/* The key of a record: its key attributes' JSON, joined by \x1f. */
static void record_key(const struct sl_job *job, json_t *rec, char *out, size_t outsz)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < job->nkey; i++) {
        char *v = json_dumps(json_object_get(rec, job->key[i]), JSON_ENCODE_ANY | JSON_COMPACT);
        n += (size_t)snprintf(out + n, n < outsz ? outsz - n : 0, "%s%s", i ? "\x1f" : "",
                              v ? v : "null");
        free(v);
    }
}

/* A datetime's text with the trailing zeros of its fraction dropped: the
 * instant as the destination gives it back (put_column_json). */
static void canonical_datetimes(const struct sl_job *job, json_t *rec)
{
    for (size_t i = 0; i < job->nattrs; i++) {
        json_t *v = json_object_get(rec, job->attrs[i].name);
        const char *s = job->attrs[i].type == SL_TYPE_DATETIME ? json_string_value(v) : NULL;
        const char *dot = s ? strchr(s, '.') : NULL;
        if (!dot)
            continue;
        char t[64];
        size_t n = (size_t)(strchr(dot, 'Z') ? strchr(dot, 'Z') - s : (ptrdiff_t)strlen(s));
        snprintf(t, sizeof(t), "%.*s", (int)n, s);
        while (n && t[n - 1] == '0')
            t[--n] = '\0';
        if (n && t[n - 1] == '.')
            t[--n] = '\0';
        snprintf(t + n, sizeof(t) - n, "Z");
        json_string_set(v, t);
    }
}

/* The published records of an embedded run's NDJSON by key, later lines
 * replacing earlier ones of the same key (as the destination does). */
static json_t *ndjson_by_key(const struct sl_job *job, const char *path)
{
    json_t *by_key = json_object();
    char *text = read_text(path);
    char key[4096];
    for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (!*line)
            continue;
        json_error_t jerr;
        json_t *rec = json_loads(line, 0, &jerr);
        if (!rec)
            fail_msg("%s: %s", path, jerr.text);
        canonical_datetimes(job, without_nulls(rec));
        record_key(job, rec, key, sizeof(key));
        json_object_set_new(by_key, key, rec);
    }
    free(text);
    return by_key;
}

/* The SQL that gives an attribute's column as the JSON the NDJSON file
 * holds for it (JOBS.md: "published as"). */
static void put_column_json(char *sql, size_t sqlsz, PGconn *c, const struct sl_attr *a)
{
    char *col = PQescapeIdentifier(c, a->name, strlen(a->name));
    char *lit = PQescapeLiteral(c, a->name, strlen(a->name));
    size_t n = strlen(sql);
    switch (a->type) {
    case SL_TYPE_INTEGER:
    case SL_TYPE_BOOLEAN:
        snprintf(sql + n, sqlsz - n, "%s, to_jsonb(%s)", lit, col);
        break;
    case SL_TYPE_DATETIME: /* RFC 3339 in UTC, the fraction without trailing zeros */
        snprintf(sql + n, sqlsz - n,
                 "%s, to_jsonb(to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
                 "CASE WHEN extract(microseconds FROM %s)::bigint %% 1000000 = 0 THEN '' "
                 "ELSE '.' || rtrim(to_char(%s AT TIME ZONE 'UTC', 'US'), '0') END || 'Z')",
                 lit, col, col, col);
        break;
    default: /* text, and decimals and dates as their exact text */
        snprintf(sql + n, sqlsz - n, "%s, to_jsonb(%s::text)", lit, col);
        break;
    }
    PQfreemem(col);
    PQfreemem(lit);
}

/* Fails unless the destination table holds exactly the records of the
 * NDJSON file (a missing file or table: none). */
static void assert_table_equals_ndjson(PGconn *c, const struct sl_job *job, const char *table,
                                       const char *ndjson, const char *what)
{
    json_t *want = ndjson_by_key(job, ndjson);
    char sql[8192], key[4096];
    const char *p[] = {table};
    PGresult *r = PQexecParams(c, "SELECT to_regclass(quote_ident($1)) IS NOT NULL", 1, NULL, p,
                               NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    bool exists = !strcmp(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    if (!exists) {
        if (json_object_size(want))
            fail_msg("%s: no table %s, but embedded mode published %zu records", what, table,
                     json_object_size(want));
        json_decref(want);
        return;
    }
    snprintf(sql, sizeof(sql), "SELECT jsonb_build_object(");
    for (size_t i = 0; i < job->nattrs; i++) {
        if (i)
            strcat(sql, ", ");
        put_column_json(sql, sizeof(sql), c, &job->attrs[i]);
    }
    char *tq = PQescapeIdentifier(c, table, strlen(table));
    size_t n = strlen(sql);
    snprintf(sql + n, sizeof(sql) - n, ")::text FROM %s", tq);
    PQfreemem(tq);
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s: %s", what, sql, PQerrorMessage(c));
    if ((size_t)PQntuples(r) != json_object_size(want))
        fail_msg("%s: table %s has %d rows, embedded mode published %zu records", what, table,
                 PQntuples(r), json_object_size(want));
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *got = without_nulls(json_loads(PQgetvalue(r, i, 0), 0, NULL));
        assert_non_null(got);
        record_key(job, got, key, sizeof(key));
        json_t *rec = json_object_get(want, key);
        if (!rec || !json_equal(rec, got)) {
            char *w = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
            char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
            fail_msg("%s: the destination holds %s, embedded mode published %s", what, g,
                     w ? w : "no record of that key");
        }
        json_decref(got);
    }
    PQclear(r);
    json_decref(want);
}

/* Fails unless the run's rejected rows in the control plane are those of the
 * embedded run's rejected.ndjson (a missing file: none). */
static void assert_rejected_equal(PGconn *c, const char *run_id, const char *path, const char *what)
{
    json_t *want = json_object();
    char *text = read_text(path);
    for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        json_t *rec = *line ? json_loads(line, 0, NULL) : NULL;
        if (!rec)
            continue;
        char row[32];
        snprintf(row, sizeof(row), "%lld",
                 (long long)json_integer_value(json_object_get(rec, "row")));
        json_object_set_new(want, row, rec);
    }
    free(text);
    const char *p[] = {run_id};
    PGresult *r = PQexecParams(c,
                               "SELECT row::text, jsonb_build_object('row', row, 'errors', "
                               "errors, 'source', source)::text "
                               "FROM sluice_rejected_rows WHERE run_id = $1",
                               1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    if ((size_t)PQntuples(r) != json_object_size(want))
        fail_msg("%s: %d rejected rows in the control plane, %zu in embedded mode", what,
                 PQntuples(r), json_object_size(want));
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *got = json_loads(PQgetvalue(r, i, 1), 0, NULL);
        json_t *rec = json_object_get(want, PQgetvalue(r, i, 0));
        if (!rec || !json_equal(rec, got))
            fail_msg("%s: rejected row %s differs: %s", what, PQgetvalue(r, i, 0),
                     PQgetvalue(r, i, 1));
        json_decref(got);
    }
    PQclear(r);
    json_decref(want);
}

static const char *const count_names[] = {"read",      "published", "created",    "updated",
                                          "unchanged", "rejected",  "duplicates", "not_created"};

/* Fails unless the final run row (of wait_run) has the status and counts of
 * the embedded run's run.json. */
static void assert_run_equals(PGresult *r, const char *run_json, const char *what)
{
    json_t *emb = json_load_file(run_json, 0, NULL);
    if (!emb)
        fail_msg("%s: embedded mode wrote no %s", what, run_json);
    const char *want = json_string_value(json_object_get(emb, "status"));
    fprintf(stderr, "# %s: %s %s%s%s\n", what, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
            PQgetvalue(r, 0, 2)[0] ? " " : "", PQgetvalue(r, 0, 2));
    if (!want || strcmp(want, PQgetvalue(r, 0, 0)))
        fail_msg("%s: status %s, embedded mode %s", what, PQgetvalue(r, 0, 0),
                 want ? want : "none");
    json_t *got = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    json_t *wc = json_object_get(emb, "counts");
    for (size_t i = 0; i < sizeof(count_names) / sizeof(count_names[0]); i++) {
        json_int_t w = json_integer_value(json_object_get(wc, count_names[i]));
        json_int_t g = json_integer_value(json_object_get(got, count_names[i]));
        if (!got || w != g)
            fail_msg("%s: counts.%s is %lld, embedded mode %lld", what, count_names[i],
                     (long long)g, (long long)w);
    }
    json_decref(got);
    /* schema drift: the same unmapped columns, when embedded mode read the
     * file's columns */
    json_t *wu = json_object_get(emb, "unmapped_columns");
    json_t *gu = PQgetvalue(r, 0, 4)[0] ? json_loads(PQgetvalue(r, 0, 4), 0, NULL) : NULL;
    if (wu && (!gu || !json_equal(wu, gu)))
        fail_msg("%s: unmapped_columns %s, embedded mode %s", what,
                 PQgetvalue(r, 0, 4)[0] ? PQgetvalue(r, 0, 4) : "none",
                 json_dumps(wu, JSON_COMPACT));
    json_decref(gu);
    json_decref(emb);
}

/* ---- the example jobs ---- */

struct example {
    const char *name;  /* the case; the job is ex-NAME, its table ex_NAME */
    const char *job;   /* under tests/fixtures */
    const char *input; /* under tests/fixtures; NULL: the job's source.url beside it */
    int exit;          /* of the embedded run (JOBS.md) */
};

/* Not here: jobs/good_api.json (a paginated https JSON API, an http
 * destination: neither is supported yet), cli/input_override (`sluice submit`
 * has no --input), and the invalid jobs of cli/bad_jobs and jobs/bad_*. */
static const struct example examples[] = {
    /* the example of JOBS.md as it stands (its https source read from a file) */
    {"jobs_md", "jobs/jobs_md_example.json", "distributed/jobs_md_stores.csv", 3},
    {"minimal", "jobs/good_minimal.json", "distributed/minimal_stores.csv", 3},
    /* one attribute of every type */
    {"types", "distributed/types_job.json", "distributed/types.csv", 3},
    /* the JOBS.md features of the CLI tests (tests/fixtures/cli/README.md) */
    {"clean", "cli/clean/job.json", NULL, 0},
    {"bad_rows", "cli/bad_rows/job.json", NULL, 3},
    {"cp1252", "cli/cp1252/job.json", NULL, 3},
    {"quoted", "cli/quoted/job.json", NULL, 3},
    {"utf16", "cli/utf16/job.json", NULL, 3},
    {"utf16_bom", "cli/utf16_bom/job.json", NULL, 3},
    {"last_wins", "cli/last_wins/job.json", NULL, 3},
    {"no_create", "cli/no_create/job.json", NULL, 0},
    {"header_only", "cli/header_only/job.json", NULL, 0},
    {"empty_file", "cli/empty_file/job.json", NULL, 1},
    {"missing_source", "cli/missing_source/job.json", NULL, 1},
    {"wide", "cli/wide/job.json", NULL, 3}, /* its 10,000-column file is made below */
    /* references: regions in the destination (made below: a table, and for
     * embedded mode regions.ndjson beside its output) */
    {"refs", "distributed/refs_job.json", "distributed/refs.csv", 3},
};
#define NEXAMPLES (sizeof(examples) / sizeof(examples[0]))

static size_t example_index(const char *name)
{
    for (size_t i = 0; i < NEXAMPLES; i++)
        if (!strcmp(examples[i].name, name))
            return i;
    fail_msg("no example %s", name);
    return 0;
}

/* Where a prepared example's files are. */
struct prepared {
    char name[64];      /* the job's name */
    char table[64];     /* its destination table */
    char job_path[512]; /* the job file both modes run */
    char input[512];    /* the copy of its input */
    char out[512];      /* embedded mode's --out */
    struct sl_job *job; /* loaded, for the attribute types */
    char run_id[40];    /* of the distributed run */
};

/* The 10,000-column file of the "wide" case (as tests/cli/test_formats.sh
 * makes it): two rows, the second one's last value no integer. */
static void write_wide(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int r = 0; r < 3; r++) {
        for (int i = 1; i <= 10000; i++) {
            if (r == 0)
                fprintf(f, "%sc%d", i > 1 ? "," : "", i);
            else if (i == 10000)
                fprintf(f, ",%s", r == 1 ? "42" : "x");
            else
                fprintf(f, "%sr%dv%d", i > 1 ? "," : "", r, i);
        }
        fputc('\n', f);
    }
    fclose(f);
}

/* Copies the example's input under tmp/inputs/<case>/ and writes its job
 * there: named name, its source that copy (file://), its destination the
 * postgres table. */
static void prepare(const struct example *ex, const char *name, const char *table,
                    struct prepared *pr)
{
    char src[512], dir[256], err[512];
    json_error_t jerr;
    snprintf(src, sizeof(src), "%s/%s", SLUICE_FIXTURES, ex->job);
    json_t *root = json_load_file(src, 0, &jerr);
    if (!root)
        fail_msg("%s: %s", src, jerr.text);
    json_t *source = json_object_get(root, "source");
    const char *url = json_string_value(json_object_get(source, "url"));
    assert_non_null(url);
    snprintf(pr->name, sizeof(pr->name), "%s", name);
    snprintf(pr->table, sizeof(pr->table), "%s", table);
    snprintf(dir, sizeof(dir), "%s/inputs/%s", tmp, name);
    assert_int_equal(mkdir(dir, 0755), 0);
    if (ex->input) {
        const char *base = strrchr(ex->input, '/') ? strrchr(ex->input, '/') + 1 : ex->input;
        snprintf(pr->input, sizeof(pr->input), "%s/%s", dir, base);
        assert_int_equal(shell("cp %s/%s %s", SLUICE_FIXTURES, ex->input, pr->input), 0);
    } else {
        snprintf(pr->input, sizeof(pr->input), "%s/%s", dir, url);
        char *jdir = strdup(src);
        *strrchr(jdir, '/') = '\0';
        if (!strcmp(ex->name, "wide"))
            write_wide(pr->input);
        else if (!strcmp(ex->name, "missing_source"))
            assert_int_not_equal(access(pr->input, F_OK), 0);
        else
            assert_int_equal(shell("cp %s/%s %s", jdir, url, pr->input), 0);
        free(jdir);
    }
    char file_url[600];
    snprintf(file_url, sizeof(file_url), "file://%s", pr->input);
    json_object_set_new(source, "url", json_string(file_url));
    json_object_set_new(root, "name", json_string(name));
    json_object_set_new(root, "destination",
                        json_pack("{s:s, s:s}", "type", "postgres", "table", table));
    snprintf(pr->job_path, sizeof(pr->job_path), "%s/%s.json", dir, name);
    assert_int_equal(json_dump_file(root, pr->job_path, JSON_INDENT(2)), 0);
    json_decref(root);
    if (!(pr->job = sl_job_load_file(pr->job_path, err, sizeof(err))))
        fail_msg("%s: %s", pr->job_path, err);
    assert_true(nloaded < sizeof(loaded) / sizeof(loaded[0]));
    loaded[nloaded++] = pr->job;
}

/* Runs the prepared job in embedded mode (no database: NDJSON) into
 * tmp/embedded/<name>/<sub>; returns its exit status. */
static int run_embedded(struct prepared *pr, const char *sub)
{
    char out[sizeof(pr->out)];
    snprintf(out, sizeof(out), "%s/embedded/%.63s/%.32s", tmp, pr->name, sub);
    memcpy(pr->out, out, sizeof(out));
    bool has_input = access(pr->input, F_OK) == 0;
    return shell("env -u SLUICE_POSTGRES_URL -u SLUICE_DESTINATION_URL %s/sluice run %s%s%s "
                 "--out %s --state %s/embedded/%s/%s-state --quiet 2>/dev/null",
                 SLUICE_BUILD_DIR, pr->job_path, has_input ? " --input " : "",
                 has_input ? pr->input : "", pr->out, tmp, pr->name, sub);
}

/* Fails unless the distributed run equals the embedded one of pr->out. */
static void assert_same_as_embedded(PGconn *c, const struct prepared *pr, PGresult *run)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/run.json", pr->out);
    assert_run_equals(run, path, pr->name);
    snprintf(path, sizeof(path), "%s/%s.ndjson", pr->out, pr->job->object);
    assert_table_equals_ndjson(c, pr->job, pr->table, path, pr->name);
    snprintf(path, sizeof(path), "%s/rejected.ndjson", pr->out);
    assert_rejected_equal(c, pr->run_id, path, pr->name);
}

/* ---- poison ---- */

/* Produces text that is no protobuf record onto topic with kcat, keyed. */
static void produce_garbage(const char *topic, const char *key)
{
    assert_int_equal(shell("printf 'not a record at all' | kcat -P -b %s -t sluice.%s -k %s",
                           km.bootstrap, topic, key),
                     0);
}

/* A made-up message of kind (run and job ids NULL: none), keyed. */
static struct sl_msg *made_up(enum sl_msg_kind kind, const char *run_id, const char *job_id,
                              const char *key)
{
    struct sl_msg *m = sl_msg_new(kind, run_id, job_id, 1);
    assert_non_null(m);
    m->key = sl_arena_strdup(&m->arena, key);
    return m;
}

/* Sends m to topic: by the bus, or, for a record or rejection, as a batch
 * of one that kcat produces keyed by m's key (the bus sends its batches
 * without a key; a record of a keyed batch takes the batch's key, which
 * is how the dead letters are told apart here). */
static void send_made_up(const char *topic, struct sl_msg *m)
{
    if (m->kind != SL_MSG_RECORD && m->kind != SL_MSG_REJECTION) {
        assert_int_equal(sl_bus_send(bus, topic, m), 0);
        return;
    }
    char path[256];
    struct sl_buf batch = SL_BUF_INIT;
    assert_int_equal(sl_codec_batch_add(NULL, m, &batch), 0);
    snprintf(path, sizeof(path), "%s/batch-%s.bin", tmp, m->key);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(batch.data, 1, batch.len, f), batch.len);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(
        shell("kcat -P -b %s -t sluice.%s -k %s %s", km.bootstrap, topic, m->key, path), 0);
    sl_buf_cleanup(&batch);
    sl_msg_unref(m);
}

/* A record of a store row (source fields, and mapped attributes). */
static struct sl_msg *made_up_record(const char *run_id, const char *job_id, const char *key,
                                     bool mapped)
{
    struct sl_msg *m = made_up(SL_MSG_RECORD, run_id, job_id, key);
    m->u.rec.row = 1;
    assert_int_equal(sl_msg_add_src(m, "Filiale", "X999", 4), 0);
    assert_int_equal(sl_msg_add_src(m, "Name", "Phantom", 7), 0);
    assert_int_equal(sl_msg_add_src(m, "Umsatz", "1,5", 3), 0);
    if (mapped) {
        assert_int_equal(sl_msg_add_attr(m, "store_id", "X999"), 0);
        assert_int_equal(sl_msg_add_attr(m, "name", "Phantom"), 0);
        assert_int_equal(sl_msg_add_attr(m, "revenue", "1.50"), 0);
        m->u.rec.key = sl_arena_strdup(&m->arena, "X999");
    }
    return m;
}

/* The dead-letter topic's messages as "key|headers" lines (caller frees). */
static char *dead_letters(void)
{
    return shell_out("kcat -C -b %s -t sluice.dead -o beginning -e -q -f '%%k|%%h\\n' "
                     "2>/dev/null",
                     km.bootstrap);
}

/* The dead letter keyed key (its "key|headers" line in dl), or NULL. */
static const char *dead_letter(const char *dl, const char *key)
{
    char k[128];
    int n = snprintf(k, sizeof(k), "%s|", key);
    for (const char *p = dl; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p))
        if (!strncmp(p, k, (size_t)n))
            return p;
    return NULL;
}

/* Waits until every key of keys (NULL-terminated) is on the dead-letter
 * topic; the "key|headers" lines (caller frees). */
static char *wait_dead_letters(const char *const *keys)
{
    char *dl = NULL;
    for (int i = 0; i < 100; i++) {
        free(dl);
        dl = dead_letters();
        size_t k = 0;
        while (keys[k] && dead_letter(dl, keys[k]))
            k++;
        if (!keys[k])
            return dl;
        if (i == 99)
            fail_msg("no dead letter keyed %s in:\n%s", keys[k], dl);
        usleep(100000);
    }
    return dl;
}

/* The whole line of a dead letter (for messages). */
static char *line_of(const char *p)
{
    const char *nl = strchr(p, '\n');
    return strndup(p, nl ? (size_t)(nl - p) : strlen(p));
}

static const char *const all_topics[] = {
    SL_TOPIC_TICKETS, SL_TOPIC_FILES,    SL_TOPIC_RAW,  SL_TOPIC_MAPPED,
    SL_TOPIC_VALID,   SL_TOPIC_REJECTED, SL_TOPIC_RUNS, NULL};

/* The job the made-up records of runs that do not exist belong to (a job
 * of its own, so that whatever a publisher does with them touches no table
 * the tests compare). */
static void store_phantom_job(void)
{
    char path[256];
    json_t *root = json_load_file(SLUICE_FIXTURES "/jobs/good_minimal.json", 0, NULL);
    assert_non_null(root);
    json_object_set_new(root, "name", json_string("phantom-target"));
    json_object_set_new(root, "destination",
                        json_pack("{s:s, s:s}", "type", "postgres", "table", "phantom_stores"));
    snprintf(path, sizeof(path), "%s/phantom.json", tmp);
    assert_int_equal(json_dump_file(root, path, JSON_INDENT(2)), 0);
    json_decref(root);
    assert_int_equal(submit(path, false, NULL), 1);
}

/* Sends poison onto every topic: bytes that are no protobuf, and protobuf
 * of absurd content. */
static void send_poison(void)
{
    char key[64];
    for (size_t i = 0; all_topics[i]; i++) {
        snprintf(key, sizeof(key), "garbage-%s", all_topics[i]);
        produce_garbage(all_topics[i], key);
    }
    /* tickets: a run id that is a path, no run id, a job that does not exist */
    send_made_up(SL_TOPIC_TICKETS,
                 made_up(SL_MSG_TICKET, "../../escape", "store-locations", "ticket-path"));
    send_made_up(SL_TOPIC_TICKETS, made_up(SL_MSG_TICKET, NULL, "store-locations", "ticket-norun"));
    send_made_up(SL_TOPIC_TICKETS,
                 made_up(SL_MSG_TICKET, "phantom-ticket", "no-such-job", "ticket-nojob"));
    /* files: no run id; a run that does not exist, of a blob that is not there */
    struct sl_msg *m = made_up(SL_MSG_FILE, NULL, "phantom-target", "file-norun");
    m->u.file.blob = "/nonexistent/blob.csv";
    send_made_up(SL_TOPIC_FILES, m);
    m = made_up(SL_MSG_FILE, "phantom-file", "phantom-target", "file-phantom");
    m->u.file.blob = "/nonexistent/blob.csv";
    send_made_up(SL_TOPIC_FILES, m);
    /* records of every kind: no run id, an unknown job, a run that does not exist */
    static const struct {
        const char *topic, *name;
        bool mapped;
    } recs[] = {
        {SL_TOPIC_RAW, "raw", false},
        {SL_TOPIC_MAPPED, "mapped", true},
        {SL_TOPIC_VALID, "valid", true},
        {SL_TOPIC_REJECTED, "rejected", true},
    };
    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        char run[64];
        bool rej = !strcmp(recs[i].name, "rejected");
        snprintf(key, sizeof(key), "%s-norun", recs[i].name);
        m = made_up_record(NULL, "phantom-target", key, recs[i].mapped);
        m->kind = rej ? SL_MSG_REJECTION : SL_MSG_RECORD;
        send_made_up(recs[i].topic, m);
        snprintf(key, sizeof(key), "%s-nojob", recs[i].name);
        snprintf(run, sizeof(run), "phantom-%s-nojob", recs[i].name);
        m = made_up_record(run, "no-such-job", key, recs[i].mapped);
        m->kind = rej ? SL_MSG_REJECTION : SL_MSG_RECORD;
        send_made_up(recs[i].topic, m);
        snprintf(key, sizeof(key), "%s-phantom", recs[i].name);
        snprintf(run, sizeof(run), "phantom-%s", recs[i].name);
        m = made_up_record(run, "phantom-target", key, recs[i].mapped);
        m->kind = rej ? SL_MSG_REJECTION : SL_MSG_RECORD;
        if (rej)
            assert_int_equal(sl_msg_add_problem(m, "revenue", "format", "made up", "1,5"), 0);
        send_made_up(recs[i].topic, m);
    }
    /* run events: no run id; an unknown job; runs that do not exist */
    m = made_up(SL_MSG_RUN_EVENT, NULL, "phantom-target", "runs-norun");
    m->u.ev.kind = SL_EV_SEALED;
    send_made_up(SL_TOPIC_RUNS, m);
    m = made_up(SL_MSG_RUN_EVENT, "phantom-runs-nojob", "no-such-job", "runs-nojob");
    m->u.ev.kind = SL_EV_FAILED;
    send_made_up(SL_TOPIC_RUNS, m);
    m = made_up(SL_MSG_RUN_EVENT, "phantom-runs-sealed", "phantom-target", "runs-sealed");
    m->u.ev.kind = SL_EV_SEALED;
    m->u.ev.record_count = 1000000000000ULL;
    send_made_up(SL_TOPIC_RUNS, m);
    m = made_up(SL_MSG_RUN_EVENT, "phantom-runs-final", "phantom-target", "runs-final");
    m->u.ev.kind = SL_EV_FINAL;
    m->u.ev.status = "succeeded";
    send_made_up(SL_TOPIC_RUNS, m);
    assert_int_equal(bus->ops->flush(bus, 10000), 0);
}

/* Every poisoned message that is set aside is on the dead-letter topic: the
 * undecodable ones with their reason and topic as headers, the ones a
 * stage refused with the reason it logged as a header and in its log. */
static void assert_poison_set_aside(void)
{
    static const char *const keys[] = {
        "garbage-tickets",
        "garbage-files",
        "garbage-records.raw",
        "garbage-records.mapped",
        "garbage-records.valid",
        "garbage-records.rejected",
        "garbage-runs",
        "ticket-path",
        "ticket-norun",
        "file-norun",
        "raw-norun",
        "raw-nojob",
        "mapped-norun",
        "mapped-nojob",
        "valid-norun",
        "rejected-norun",
        "runs-norun",
        NULL,
    };
    char *dl = wait_dead_letters(keys);
    char want[128];
    for (size_t i = 0; all_topics[i]; i++) {
        snprintf(want, sizeof(want), "garbage-%s", all_topics[i]);
        char *line = line_of(dead_letter(dl, want));
        snprintf(want, sizeof(want), "sluice-topic=sluice.%s", all_topics[i]);
        if (!strstr(line, "sluice-reason=cannot decode ") || !strstr(line, "not a valid sluice.") ||
            !strstr(line, want))
            fail_msg("dead letter without its reason or topic: %s", line);
        free(line);
    }
    static const char *const norun[] = {"file-norun",  "raw-norun",      "mapped-norun",
                                        "valid-norun", "rejected-norun", "runs-norun",
                                        NULL};
    for (size_t i = 0; norun[i]; i++) {
        char *line = line_of(dead_letter(dl, norun[i]));
        if (!strstr(line, "sluice-reason=cannot decode ") || !strstr(line, "it has no run_id"))
            fail_msg("dead letter without its reason: %s", line);
        free(line);
    }
    /* refused by a stage: the reason it logged, and the topic, as headers */
    static const char *const refused[][3] = {
        {"raw-nojob", "sluice.records.raw", "mapper: record of run phantom-raw-nojob: job "},
        {"mapped-nojob", "sluice.records.mapped",
         "validator: record of run phantom-mapped-nojob: job "},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char *line = line_of(dead_letter(dl, refused[i][0]));
        snprintf(want, sizeof(want), "sluice-topic=%s", refused[i][1]);
        if (!strstr(line, want) || !strstr(line, refused[i][2]))
            fail_msg("dead letter without the stage's reason or topic: %s", line);
        free(line);
    }
    free(dl);
    /* ... and the reason is in the stage's log */
    assert_log_has("fetcher", "run id '../../escape' is not");
    assert_log_has("fetcher", "run id '' is not");
    assert_log_has("fetcher", "run phantom-ticket failed: job no-such-job");
    assert_log_has("mapper", "record of run phantom-raw-nojob: job no-such-job");
    assert_log_has("validator", "record of run phantom-mapped-nojob: job no-such-job");
    assert_log_has("parser", "run phantom-file failed: cannot open /nonexistent/blob.csv");
}

static void write_demo_job(void)
{
    assert_int_equal(
        shell("sed -e 's|\"url\": *\"stores.csv\"|\"url\": "
              "\"file://%s/examples/stores/stores.csv\"|' "
              "-e 's|^}$|,\"destination\": {\"type\": \"postgres\", \"table\": \"dist_stores\"}}|' "
              "%s/examples/stores/job.json > %s/job.json",
              REPO, REPO, tmp),
        0);
}

/* The embedded run of the demo job: its NDJSON, by store_id. */
static json_t *embedded_records(void)
{
    char path[256];
    int st = shell("%s/sluice run %s/examples/stores/job.json --out %s/embedded-demo "
                   "--state %s/estate --quiet",
                   SLUICE_BUILD_DIR, REPO, tmp, tmp);
    assert_int_equal(st, 3);
    snprintf(path, sizeof(path), "%s/embedded-demo/locations.ndjson", tmp);
    char *text = read_text(path);
    assert_non_null(text);
    json_t *by_key = json_object();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *rec = json_loads(line, 0, NULL);
        assert_non_null(rec);
        json_object_set_new(by_key, json_string_value(json_object_get(rec, "store_id")), rec);
    }
    free(text);
    return by_key;
}

static void test_poison_and_demo(void **state)
{
    unfinished = true;
    store_phantom_job();
    /* poison first: the services must set it aside and go on */
    send_poison();
    write_demo_job();
    char run_id[40], path[256];
    snprintf(path, sizeof(path), "%s/job.json", tmp);
    submit(path, true, run_id);
    PGconn *c = connect_pg();
    PGresult *r = wait_run(c, run_id);
    fprintf(stderr, "# demo run %s: %s %s\n", run_id, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    assert_string_equal(PQgetvalue(r, 0, 0), "completed_with_errors");
    json_t *counts = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(counts, "read")), 25);
    assert_int_equal(json_integer_value(json_object_get(counts, "published")), 19);
    assert_int_equal(json_integer_value(json_object_get(counts, "rejected")), 6);
    assert_int_equal(json_integer_value(json_object_get(counts, "duplicates")), 1);
    assert_int_equal(json_integer_value(json_object_get(counts, "created")), 19);
    json_decref(counts);
    PQclear(r);

    /* the destination holds what embedded mode publishes, row for row */
    json_t *want = embedded_records();
    assert_int_equal(json_object_size(want), 19);
    r = PQexec(c, "SELECT store_id, name, opened_on::text, revenue::text, currency, email, phone, "
                  "status, region_id FROM dist_stores");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 19);
    static const char *const cols[] = {"store_id", "name",  "opened_on", "revenue",  "currency",
                                       "email",    "phone", "status",    "region_id"};
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *rec = json_object_get(want, PQgetvalue(r, i, 0));
        assert_non_null(rec);
        for (int k = 0; k < 9; k++) {
            json_t *v = json_object_get(rec, cols[k]);
            const char *w = json_is_string(v) ? json_string_value(v) : NULL;
            if (PQgetisnull(r, i, k))
                assert_null(w);
            else if (!w || strcmp(w, PQgetvalue(r, i, k)))
                fail_msg("store %s, %s: destination '%s', embedded '%s'", PQgetvalue(r, i, 0),
                         cols[k], PQgetvalue(r, i, k), w ? w : "null");
        }
    }
    PQclear(r);
    json_decref(want);
    const char *p[] = {run_id};
    r = PQexecParams(c, "SELECT count(*) FROM sluice_rejected_rows WHERE run_id = $1", 1, NULL, p,
                     NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "6");
    PQclear(r);

    /* the live progress the stages counted in Redis (GET /v1/runs/{id}):
     * every record through every stage (the last counts come when a stage
     * idles, just after the run is final) */
    static const struct {
        const char *field;
        long want;
    } prog[] = {{"parser.records_out", 25},
                {"mapper.records_in", 25},
                {"publisher.records_in", 19},
                {"publisher.rejected_in", 6}};
    for (size_t k = 0; k < sizeof(prog) / sizeof(prog[0]); k++) {
        long got = -1;
        for (int i = 0; i < 100 && got != prog[k].want; i++) {
            char cmd[256], buf[64] = "";
            snprintf(cmd, sizeof(cmd), "redis-cli -p %d HGET sluice:run:%s:progress %s", rs.port,
                     run_id, prog[k].field);
            FILE *f = popen(cmd, "r");
            if (f && fgets(buf, sizeof(buf), f))
                got = atol(buf);
            if (f)
                pclose(f);
            if (got != prog[k].want)
                usleep(100000);
        }
        if (got != prog[k].want) {
            shell("redis-cli -p %d HGETALL sluice:run:%s:progress >&2", rs.port, run_id);
            fail_msg("progress %s of run %s: %ld, expected %ld", prog[k].field, run_id, got,
                     prog[k].want);
        }
    }

    /* the poison was set aside, with its reasons, and nobody died of it */
    assert_poison_set_aside();
    assert_services_alive();

    /* the same file again: skipped */
    char again[40];
    submit(path, true, again);
    r = wait_run(c, again);
    assert_string_equal(PQgetvalue(r, 0, 0), "skipped");
    PQclear(r);
    assert_services_alive();
    unfinished = false;
}

/* ---- duplicate tickets ---- */

static void test_duplicate_ticket(void **state)
{
    unfinished = true;
    /* rejections and a duplicate key: every count has something to count */
    const struct example *ex = &examples[example_index("bad_rows")];
    struct prepared pr = {0};
    prepare(ex, "dup-bad_rows", "dup_bad_rows", &pr);
    assert_int_equal(run_embedded(&pr, "out"), ex->exit);
    unsigned version = submit(pr.job_path, false, NULL);

    /* the run, recorded as `sluice submit --run` does, and its ticket three
     * times at once: as after a crash of the sender between sending and
     * committing, or a fetcher's after it produced its output */
    PGconn *c = connect_pg();
    char ver[16];
    snprintf(ver, sizeof(ver), "%u", version);
    sl_new_run_id(pr.run_id);
    const char *p[] = {pr.run_id, pr.name, ver};
    PGresult *r = PQexecParams(c,
                               "INSERT INTO sluice_runs (id, job_id, job_version, trigger, "
                               "status) VALUES ($1, $2, $3::integer, 'cli', 'queued')",
                               3, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    struct sl_msg *t = sl_msg_new(SL_MSG_TICKET, pr.run_id, pr.name, version);
    assert_non_null(t);
    t->u.ticket.ticket_id = t->run_id;
    t->u.ticket.trigger = "cli";
    t->u.ticket.scheduled_at = sl_now_us();
    t->key = t->job_id;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_bus_send(bus, SL_TOPIC_TICKETS, sl_msg_ref(t)), 0);
    sl_msg_unref(t);
    assert_int_equal(bus->ops->flush(bus, 10000), 0);

    r = wait_run(c, pr.run_id);
    assert_same_as_embedded(c, &pr, r);
    char finished[64];
    snprintf(finished, sizeof(finished), "%s", PQgetvalue(r, 0, 3));
    PQclear(r);
    /* fetched once: the later tickets announced the stored file again */
    char needle[128];
    snprintf(needle, sizeof(needle), "run %s: duplicate ticket: the source was fetched before",
             pr.run_id);
    assert_log_has("fetcher", needle);
    char ignored[128];
    snprintf(ignored, sizeof(ignored), "run %s: duplicate ticket ignored", pr.run_id);
    /* (a later one may come after the run is final, though hardly ever) */
    assert_int_equal(log_count("fetcher", needle) + log_count("fetcher", ignored), 2);
    char *blobs = shell_out("ls %s/blobs/%s/%s | wc -l", tmp, pr.name, pr.run_id);
    assert_int_equal(atoi(blobs), 1);
    free(blobs);

    /* once more after the run is final: the ticket as it is on the topic */
    char bin[256];
    snprintf(bin, sizeof(bin), "%s/ticket.bin", tmp);
    assert_int_equal(
        shell("kcat -C -b %s -t sluice.tickets -o -1 -c 1 -e -q -f '%%s' > %s", km.bootstrap, bin),
        0);
    assert_int_equal(shell("kcat -P -b %s -t sluice.tickets -k %s %s", km.bootstrap, pr.name, bin),
                     0);
    int before = log_count("fetcher", ignored);
    snprintf(needle, sizeof(needle), "run %s: duplicate ticket ignored: the run is already %s",
             pr.run_id, "completed_with_errors");
    for (int i = 0; i < 100 && log_count("fetcher", needle) <= before; i++)
        usleep(100000);
    assert_int_equal(log_count("fetcher", needle), before + 1);
    usleep(500000); /* anything the ticket set off would have reached the control plane */
    r = wait_run(c, pr.run_id);
    assert_string_equal(PQgetvalue(r, 0, 3), finished);
    assert_same_as_embedded(c, &pr, r);
    PQclear(r);
    const char *pj[] = {pr.name};
    r = PQexecParams(c, "SELECT count(*) FROM sluice_runs WHERE job_id = $1", 1, NULL, pj, NULL,
                     NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    assert_services_alive();
    unfinished = false;
}

/* ---- every example job, in both modes ---- */

/* A job of several targets (tests/fixtures/cli/targets: accounts, then
 * contacts that reference them): the fetcher runs the first target, the
 * publisher that finishes it hands the file to the second (run <id>-t2);
 * each equals embedded mode's run of that target, row for row. */
static void test_targets_equal_embedded(void **state)
{
    unfinished = true;
    static const struct example ex = {"targets", "cli/targets/job.json", NULL, 3};
    struct prepared pr;
    prepare(&ex, "crm-import", "unused", &pr);
    char out[600];
    snprintf(out, sizeof(out), "%s/embedded/crm-import", tmp);
    assert_int_equal(shell("mkdir -p %s && env -u SLUICE_POSTGRES_URL -u SLUICE_DESTINATION_URL "
                           "%s/sluice run %s --out %s/out --state %s/state --quiet 2>/dev/null",
                           out, SLUICE_BUILD_DIR, pr.job_path, out, out),
                     3);
    submit(pr.job_path, true, pr.run_id);
    PGconn *c = connect_pg();
    static const char *const objects[] = {"accounts", "contacts"};
    for (size_t i = 0; i < 2; i++) {
        char run_id[64], path[1024], what[64];
        snprintf(run_id, sizeof(run_id), i ? "%s-t2" : "%s", pr.run_id);
        snprintf(what, sizeof(what), "crm-import#%s", objects[i]);
        PGresult *r = wait_run(c, run_id);
        snprintf(path, sizeof(path), "%s/out/%s/run.json", out, objects[i]);
        assert_run_equals(r, path, what);
        PQclear(r);
        snprintf(path, sizeof(path), "%s/out/%s.ndjson", out, objects[i]);
        assert_table_equals_ndjson(c, pr.job->targets[i], objects[i], path, what);
        snprintf(path, sizeof(path), "%s/out/%s/rejected.ndjson", out, objects[i]);
        assert_rejected_equal(c, run_id, path, what);
    }
    /* sluice runs JOB lists the runs of its targets too */
    assert_int_equal(shell("%s/sluice runs crm-import | grep -c '^%s' | grep -qx 2",
                           SLUICE_BUILD_DIR, pr.run_id),
                     0);
    assert_services_alive();
    unfinished = false;
}

static void test_examples_equal_embedded(void **state)
{
    unfinished = true;
    static struct prepared prs[NEXAMPLES];
    char name[64], table[64];
    PGconn *c = connect_pg();
    PQclear(PQexec(c, "DROP TABLE IF EXISTS regions"));
    /* the regions the refs and jobs_md examples reference ('Süd' not) */
    PGresult *mk = PQexec(c, "CREATE TABLE regions (region_id text PRIMARY KEY);"
                             "INSERT INTO regions VALUES ('north'), ('south'), ('Nord'), "
                             "('West'), ('Ost'), ('Mitte')");
    assert_int_equal(PQresultStatus(mk), PGRES_COMMAND_OK);
    PQclear(mk);
    for (size_t i = 0; i < NEXAMPLES; i++) {
        snprintf(name, sizeof(name), "ex-%s", examples[i].name);
        snprintf(table, sizeof(table), "ex_%s", examples[i].name);
        prepare(&examples[i], name, table, &prs[i]);
        if (!strcmp(examples[i].name, "refs") || !strcmp(examples[i].name, "jobs_md"))
            assert_int_equal(shell("mkdir -p %s/embedded/%s/out && for r in north south Nord "
                                   "West Ost Mitte; do printf '{\"region_id\":\"%%s\"}\\n' "
                                   "$r; done > %s/embedded/%s/out/regions.ndjson",
                                   tmp, name, tmp, name),
                             0);
        int st = run_embedded(&prs[i], "out");
        if (st != examples[i].exit)
            fail_msg("%s: embedded mode exited with %d, not %d", name, st, examples[i].exit);
    }
    /* every run at once: the services take them in any order */
    for (size_t i = 0; i < NEXAMPLES; i++)
        submit(prs[i].job_path, true, prs[i].run_id);
    for (size_t i = 0; i < NEXAMPLES; i++) {
        PGresult *r = wait_run(c, prs[i].run_id);
        assert_same_as_embedded(c, &prs[i], r);
        PQclear(r);
    }
    assert_services_alive();
    /* the JOBS.md example asks for a report: the publisher wrote it from the
     * stored rows and sent it; the message, parsed by Python's email package,
     * carries the workbook, which openpyxl opens: the run's rejected rows */
    const char *pj[] = {prs[example_index("jobs_md")].run_id};
    PGresult *rep = NULL;
    for (int i = 0; i < 100; i++) { /* the report goes out on a thread of its own */
        PQclear(rep);
        rep = PQexecParams(c,
                           "SELECT report->>'status', report->>'file', "
                           "report->'recipients'->>0 FROM sluice_runs WHERE id = $1",
                           1, NULL, pj, NULL, NULL, 0);
        assert_int_equal(PQntuples(rep), 1);
        if (strcmp(PQgetvalue(rep, 0, 0), "sending"))
            break;
        usleep(100000);
    }
    assert_string_equal(PQgetvalue(rep, 0, 0), "sent");
    assert_string_equal(PQgetvalue(rep, 0, 1), "report.xlsx");
    assert_string_equal(PQgetvalue(rep, 0, 2), "ops@example.com");
    PQclear(rep);

    /* /metrics of every service, in the Prometheus text format: messages
     * in and out, stage latency, rejections by code, runs by status */
    for (int i = 0; i < NSERVICES; i++) {
        char *text = scrape(i);
        if (!text || !strstr(text, "# TYPE sluice_messages_in_total counter") ||
            !strstr(text, "# TYPE sluice_stage_seconds histogram") ||
            !strstr(text, "sluice_stage_seconds_bucket{stage=\""))
            fail_msg("sluice-%s /metrics: %s", services[i], text ? text : "(no answer)");
        free(text);
    }
    char *pub = scrape(4), *val = scrape(3);
    assert_non_null(pub);
    assert_non_null(val);
    if (!strstr(pub, "sluice_runs_total{status=\"completed_with_errors\"}") ||
        !strstr(pub, "sluice_messages_in_total{stage=\"publisher\",topic=\"records.valid\"}"))
        fail_msg("publisher /metrics: %s", pub);
    if (!strstr(val, "sluice_rejections_total{code=\"required\"}") ||
        !strstr(val,
                "sluice_consumer_lag{group=\"sluice-validator\",topic=\"sluice.records.mapped\","
                "partition=\"") ||
        !strstr(val, "sluice_rejections_total{code=\"unknown_reference\"}"))
        fail_msg("validator /metrics: %s", val);
    free(pub);
    free(val);
    assert_int_equal(
        shell("/usr/bin/python3 - %s/mail %s <<'EOF'\n"
              "import email, email.policy, glob, io, sys, openpyxl\n"
              "for p in sorted(glob.glob(sys.argv[1] + '/msg-*.eml')):\n"
              "    m = email.message_from_binary_file(open(p, 'rb'), "
              "policy=email.policy.default)\n"
              "    if sys.argv[2] not in m.get_body(('plain',)).get_content():\n"
              "        continue\n"
              "    assert m['Subject'].startswith('[sluice] ex-jobs_md completed with errors'), "
              "m['Subject']\n"
              "    a = list(m.iter_attachments())[0]\n"
              "    wb = openpyxl.load_workbook(io.BytesIO(a.get_content()))\n"
              "    rows = list(wb['Rejected rows'].iter_rows(values_only=True))\n"
              "    assert len(rows) == 3 and rows[0][:2] == ('_row', '_errors'), rows\n"
              "    sys.exit(0)\n"
              "sys.exit('no message of run ' + sys.argv[2])\n"
              "EOF",
              tmp, pj[0]),
        0);

    /* the clean example's file again: skipped; then changed: it runs */
    struct prepared *pr = &prs[example_index("clean")];
    char again[40];
    submit(pr->job_path, true, again);
    PGresult *r = wait_run(c, again);
    assert_string_equal(PQgetvalue(r, 0, 0), "skipped");
    PQclear(r);
    FILE *f = fopen(pr->input, "a");
    assert_non_null(f);
    fputs("S004,Neu,01.01.2024,1,ja,,1,\n", f);
    fclose(f);
    assert_int_equal(run_embedded(pr, "changed"), 0);
    submit(pr->job_path, true, pr->run_id);
    r = wait_run(c, pr->run_id);
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.ndjson", pr->out, pr->job->object);
    assert_table_equals_ndjson(c, pr->job, pr->table, path, "ex-clean, changed");
    /* embedded mode started from nothing; the destination held three rows */
    assert_string_equal(PQgetvalue(r, 0, 0), "succeeded");
    json_t *got = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(got, "read")), 4);
    assert_int_equal(json_integer_value(json_object_get(got, "published")), 4);
    assert_int_equal(json_integer_value(json_object_get(got, "created")), 1);
    assert_int_equal(json_integer_value(json_object_get(got, "unchanged")), 3);
    assert_int_equal(json_integer_value(json_object_get(got, "rejected")), 0);
    json_decref(got);
    PQclear(r);
    assert_services_alive();
    unfinished = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poison_and_demo),
        cmocka_unit_test(test_duplicate_ticket),
        cmocka_unit_test(test_examples_equal_embedded),
        cmocka_unit_test(test_targets_equal_embedded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
