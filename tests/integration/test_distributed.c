/*
 * Distributed mode end to end: the five services as processes over a
 * Kafka-protocol broker (librdkafka's mock cluster), Redis and PostgreSQL,
 * all on loopback. `sluice submit --run` of the demo job (a file:// source,
 * a postgres destination) must give the same run status, counts and
 * destination rows as embedded mode gives for the same file; a second run of
 * the unchanged file is skipped; records that are no protobuf, on the tickets
 * and the raw records topics, go to the dead-letter topic and the services
 * go on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"

#define REPO SLUICE_FIXTURES "/../.."

static const char *const services[] = {"fetcher", "parser", "mapper", "validator", "publisher"};
#define NSERVICES 5

static struct pg_server pg;
static struct redis_server rs;
static struct kafka_mock km;
static pid_t svc_pid[NSERVICES];
static char tmp[64], redis_url[256];

static int start_service(int i)
{
    char bin[512], log[256];
    snprintf(bin, sizeof(bin), "%s/sluice-%s", SLUICE_BUILD_DIR, services[i]);
    snprintf(log, sizeof(log), "%s/%s.log", tmp, services[i]);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execl(bin, bin, (char *)NULL);
        _exit(127);
    }
    svc_pid[i] = pid;
    return 0;
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
    char blobs[128];
    snprintf(blobs, sizeof(blobs), "%s/blobs", tmp);
    setenv("SLUICE_KAFKA_BROKERS", km.bootstrap, 1);
    setenv("SLUICE_REDIS_URL", redis_url, 1);
    setenv("SLUICE_POSTGRES_URL", pg.conninfo, 1);
    setenv("SLUICE_BLOB_DIR", blobs, 1);
    setenv("SLUICE_FILE_DIRS", REPO "/examples", 1);
    setenv("SLUICE_LOG_LEVEL", "info", 1);
    /* the services migrate the control plane at start; one first avoids a
     * thundering herd on the advisory lock, not a correctness problem */
    for (int i = 0; i < NSERVICES; i++)
        if (start_service(i))
            return -1;
    return 0;
}

static int teardown(void **state)
{
    int bad = 0;
    for (int i = 0; i < NSERVICES; i++) {
        if (svc_pid[i] <= 0)
            continue;
        kill(svc_pid[i], SIGTERM);
        int st = 0;
        for (int k = 0; k < 200 && waitpid(svc_pid[i], &st, WNOHANG) == 0; k++)
            usleep(50000);
        if (waitpid(svc_pid[i], &st, WNOHANG) == 0) {
            fprintf(stderr, "sluice-%s did not stop on SIGTERM\n", services[i]);
            kill(svc_pid[i], SIGKILL);
            waitpid(svc_pid[i], &st, 0);
            bad = 1;
        }
    }
    kafka_mock_stop(&km);
    redis_server_stop(&rs);
    pg_server_stop(&pg);
    if (bad || getenv("SLUICE_KEEP_TMP")) {
        fprintf(stderr, "service logs are in %s\n", tmp);
        return 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_job(void)
{
    char cmd[1024];
    snprintf(
        cmd, sizeof(cmd),
        "sed -e 's|\"url\": *\"stores.csv\"|\"url\": \"file://%s/examples/stores/stores.csv\"|' "
        "-e 's|^}$|,\"destination\": {\"type\": \"postgres\", \"table\": \"dist_stores\"}}|' "
        "%s/examples/stores/job.json > %s/job.json",
        REPO, REPO, tmp);
    assert_int_equal(system(cmd), 0);
}

/* sluice submit --run; returns the run id (static buffer). */
static const char *submit_run(void)
{
    static char run_id[64];
    char cmd[1024], line[256];
    snprintf(cmd, sizeof(cmd), "%s/sluice submit %s/job.json --run 2>&1", SLUICE_BUILD_DIR, tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    run_id[0] = '\0';
    while (fgets(line, sizeof(line), p)) {
        fprintf(stderr, "# %s", line);
        sscanf(line, "run %36s requested", run_id);
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(strlen(run_id), 36);
    return run_id;
}

/* Waits until the run is final; returns its row (status, counts as text). */
static PGresult *wait_run(PGconn *c, const char *run_id)
{
    const char *params[] = {run_id};
    for (int i = 0; i < 1200; i++) { /* up to two minutes */
        PGresult *r = PQexecParams(c,
                                   "SELECT status, counts->>'read', counts->>'published', "
                                   "counts->>'rejected', counts->>'duplicates', "
                                   "counts->>'created', counts->>'unchanged', reason "
                                   "FROM sluice_runs WHERE id = $1",
                                   1, NULL, params, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "queued") &&
            strcmp(PQgetvalue(r, 0, 0), "running"))
            return r;
        PQclear(r);
        usleep(100000);
    }
    fail_msg("run %s did not finish in two minutes (logs in %s)", run_id, tmp);
    return NULL;
}

/* The embedded run of the same job: its NDJSON, by store_id. */
static json_t *embedded_records(void)
{
    char cmd[1024], path[256];
    snprintf(cmd, sizeof(cmd),
             "%s/sluice run %s/examples/stores/job.json --out %s/embedded --state %s/estate "
             "--quiet",
             SLUICE_BUILD_DIR, REPO, tmp, tmp);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 3);
    snprintf(path, sizeof(path), "%s/embedded/locations.ndjson", tmp);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    json_t *by_key = json_object();
    char line[4096];
    while (fgets(line, sizeof(line), f)) {
        json_t *rec = json_loads(line, 0, NULL);
        assert_non_null(rec);
        json_object_set_new(by_key, json_string_value(json_object_get(rec, "store_id")), rec);
    }
    fclose(f);
    return by_key;
}

/* Produces text that is no protobuf record onto topic with kcat. */
static void produce_garbage(const char *topic)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "printf 'not a record at all' | kcat -P -b %s -t %s", km.bootstrap,
             topic);
    assert_int_equal(system(cmd), 0);
}

/* Messages on the dead-letter topic, counted with kcat. */
static int dead_letters(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b %s -t sluice.dead -o beginning -e -q -f '%%o\\n' 2>/dev/null | wc -l",
             km.bootstrap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

static void test_demo_equals_embedded(void **state)
{
    /* poison first: the services must set it aside and go on */
    produce_garbage("sluice.tickets");
    produce_garbage("sluice.records.raw");
    write_job();
    const char *run_id = submit_run();
    PGconn *c = PQconnectdb(pg.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = wait_run(c, run_id);
    fprintf(stderr, "# run %s: %s read=%s published=%s rejected=%s reason=%s\n", run_id,
            PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
            PQgetvalue(r, 0, 7));
    assert_string_equal(PQgetvalue(r, 0, 0), "completed_with_errors");
    assert_string_equal(PQgetvalue(r, 0, 1), "25");
    assert_string_equal(PQgetvalue(r, 0, 2), "19");
    assert_string_equal(PQgetvalue(r, 0, 3), "6");
    assert_string_equal(PQgetvalue(r, 0, 4), "1");
    assert_string_equal(PQgetvalue(r, 0, 5), "19");
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
    r = PQexecParams(c, "SELECT count(*) FROM sluice_rejected_rows WHERE run_id = $1", 1, NULL,
                     &run_id, NULL, NULL, 0);
    assert_string_equal(PQgetvalue(r, 0, 0), "6");
    PQclear(r);

    /* both poison messages were set aside, and the run above went through */
    int dead = 0;
    for (int i = 0; i < 100 && (dead = dead_letters()) < 2; i++)
        usleep(100000);
    assert_int_equal(dead, 2);

    /* the same file again: skipped */
    const char *again = submit_run();
    r = wait_run(c, again);
    assert_string_equal(PQgetvalue(r, 0, 0), "skipped");
    PQclear(r);
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_equals_embedded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
