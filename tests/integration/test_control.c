/*
 * The control plane against a real PostgreSQL: migrations apply once (also
 * when run twice and concurrently), jobs are stored as versions (an equal
 * document stores nothing), and the registry loads the version asked for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pg_server.h"
#include "sluice/control.h"
#include "sluice/job.h"
#include "sluice/msg.h"
#include "sluice/pg.h"
#include "sluice/sink.h"

static struct pg_server srv;

static int setup(void **state)
{
    if (pg_server_start(&srv)) {
        fprintf(stderr, "cannot start postgresql: %s\n", srv.err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    pg_server_stop(&srv);
    return 0;
}

static PGconn *connect_db(void)
{
    char err[512];
    PGconn *c = sl_pg_connect(srv.conninfo, 10, err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    return c;
}

static void *migrate_thread(void *arg)
{
    PGconn *c = connect_db();
    char err[512] = "";
    intptr_t rc = sl_control_migrate(c, err, sizeof(err));
    if (rc)
        fprintf(stderr, "migrate: %s\n", err);
    PQfinish(c);
    return (void *)rc;
}

static void test_migrations_apply_once(void **state)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, migrate_thread, NULL);
    for (int i = 0; i < 3; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_int_equal((intptr_t)rc, 0);
    }
    PGconn *c = connect_db();
    char err[512];
    assert_int_equal(sl_control_migrate(c, err, sizeof(err)), 0); /* again: nothing to do */
    PGresult *r = PQexec(c, "SELECT count(*), max(version) FROM sluice_schema_migrations");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(atoi(PQgetvalue(r, 0, 0)), sl_control_schema_version());
    assert_int_equal(atoi(PQgetvalue(r, 0, 1)), sl_control_schema_version());
    PQclear(r);
    PQfinish(c);
}

#define JOB(extra)                                                                                 \
    "{\"name\": \"stores\", " extra "\"source\": {\"url\": \"s.csv\"},"                            \
    "\"target\": {\"object\": \"stores\", \"key\": [\"id\"],"                                      \
    "\"attributes\": {\"id\": {\"type\": \"text\"}}}, \"mapping\": {\"id\": \"ID\"}}"

static void put(PGconn *c, const char *doc, uint32_t want_version, int want_created)
{
    char err[512];
    struct sl_job *job = sl_job_load_json(doc, strlen(doc), NULL, err, sizeof(err));
    if (!job)
        fail_msg("%s", err);
    uint32_t v = 0;
    int created = -1;
    int rc = sl_control_put_job(c, job, doc, strlen(doc), &v, &created, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(v, want_version);
    assert_int_equal(created, want_created);
    sl_job_destroy(job);
}

static void test_job_versions(void **state)
{
    PGconn *c = connect_db();
    put(c, JOB(""), 1, 1);
    put(c, JOB(""), 1, 0); /* the same document: no new version */
    put(c, JOB("\"description\": \"v2\", "), 2, 1);
    PQfinish(c);

    char err[512];
    struct sl_jobs *jobs = sl_jobs_pg_new(srv.conninfo, err, sizeof(err));
    if (!jobs)
        fail_msg("%s", err);
    const struct sl_job *j1 = sl_jobs_get(jobs, "stores", 1, err, sizeof(err));
    const struct sl_job *j2 = sl_jobs_get(jobs, "stores", 2, err, sizeof(err));
    assert_non_null(j1);
    assert_non_null(j2);
    assert_int_equal(j1->version, 1);
    assert_int_equal(j2->version, 2);
    assert_null(j1->description);
    assert_string_equal(j2->description, "v2");
    assert_ptr_equal(sl_jobs_get(jobs, "stores", 2, err, sizeof(err)), j2); /* cached */
    assert_null(sl_jobs_get(jobs, "stores", 3, err, sizeof(err)));
    assert_non_null(strstr(err, "no version 3"));
    assert_null(sl_jobs_get(jobs, "nope", 1, err, sizeof(err)));
    sl_jobs_destroy(jobs);
}

static void test_cli_submit(void **state)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SLUICE_POSTGRES_URL='%s' %s/sluice submit %s/../../examples/stores/job.json "
             "> /tmp/sluice-submit.out 2>&1",
             srv.conninfo, SLUICE_BUILD_DIR, SLUICE_FIXTURES);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(system("grep -q \"job 'store-locations' stored as version 1\" "
                            "/tmp/sluice-submit.out"),
                     0);
    assert_int_equal(system(cmd), 0); /* unchanged: still version 1 */
    assert_int_equal(system("grep -q 'unchanged at version 1' /tmp/sluice-submit.out"), 0);
    snprintf(cmd, sizeof(cmd),
             "env -u SLUICE_POSTGRES_URL %s/sluice submit %s/../../examples/stores/job.json "
             "> /tmp/sluice-submit.out 2>&1",
             SLUICE_BUILD_DIR, SLUICE_FIXTURES);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);
    unlink("/tmp/sluice-submit.out");
}

/* sluice migrate: a fresh database gets every migration (the version the
 * library applies), a second run changes nothing, and a missing or
 * unreachable control plane is an error naming it. */
static void test_cli_migrate(void **state)
{
    PGconn *c = connect_db();
    PGresult *r = PQexec(c, "CREATE DATABASE migrate_cli");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(c, "SELECT max(version) FROM sluice_schema_migrations");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char want[128];
    snprintf(want, sizeof(want),
             "grep -qx 'control plane schema at version %s' "
             "/tmp/sluice-migrate.out",
             PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SLUICE_POSTGRES_URL='%s dbname=migrate_cli' %s/sluice migrate "
             "> /tmp/sluice-migrate.out 2>&1",
             srv.conninfo, SLUICE_BUILD_DIR);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(system(want), 0);
    assert_int_equal(system(cmd), 0); /* applied once: the same version again */
    assert_int_equal(system(want), 0);

    char err[512];
    char conninfo[300];
    snprintf(conninfo, sizeof(conninfo), "%s dbname=migrate_cli", srv.conninfo);
    c = sl_pg_connect(conninfo, 10, err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    r = PQexec(c, "SELECT count(*) FROM sluice_jobs");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);

    snprintf(cmd, sizeof(cmd),
             "env -u SLUICE_POSTGRES_URL %s/sluice migrate > /tmp/sluice-migrate.out 2>&1",
             SLUICE_BUILD_DIR);
    int st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);
    assert_int_equal(system("grep -q 'SLUICE_POSTGRES_URL' /tmp/sluice-migrate.out"), 0);
    snprintf(cmd, sizeof(cmd),
             "SLUICE_POSTGRES_URL='postgresql://x@127.0.0.1:1/db?connect_timeout=2' "
             "%s/sluice migrate > /tmp/sluice-migrate.out 2>&1",
             SLUICE_BUILD_DIR);
    st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 1);
    assert_int_equal(system("grep -q '^sluice: migrate: .*127.0.0.1:1' /tmp/sluice-migrate.out"),
                     0);
    snprintf(cmd, sizeof(cmd), "%s/sluice migrate extra > /tmp/sluice-migrate.out 2>&1",
             SLUICE_BUILD_DIR);
    st = system(cmd);
    assert_int_equal(WEXITSTATUS(st), 2);
    unlink("/tmp/sluice-migrate.out");
}

static void test_ledger(void **state)
{
    char err[512];
    const char *doc = JOB("");
    struct sl_job *job = sl_job_load_json(doc, strlen(doc), NULL, err, sizeof(err));
    assert_non_null(job);
    struct sl_ledger *lg =
        sl_ledger_postgres_open(srv.conninfo, job, "run-42", "test", err, sizeof(err));
    if (!lg)
        fail_msg("%s", err);
    for (uint64_t row = 1; row <= 2500; row++) {
        struct sl_msg *m = sl_msg_new(SL_MSG_REJECTION, "run-42", "stores", 1);
        m->u.rec.row = row;
        assert_int_equal(sl_msg_add_src(m, "ID", "x'\"\\\n\xc3\xa4", 8), 0);
        assert_int_equal(sl_msg_add_src(m, "Other", NULL, 0), 0);
        assert_int_equal(sl_msg_add_problem(m, "id", "type", "is bad", "x'"), 0);
        assert_int_equal(lg->ops->reject(lg, m), 0);
        if (row == 7) /* a redelivered rejection changes nothing */
            assert_int_equal(lg->ops->reject(lg, m), 0);
        sl_msg_unref(m);
    }
    const char *cols[] = {"ID", "Other"}, *unmapped[] = {"Other"};
    struct sl_run_event seal = {.kind = SL_EV_SEALED,
                                .columns = cols,
                                .ncolumns = 2,
                                .delimiter = ';',
                                .unmapped = unmapped,
                                .nunmapped = 1};
    assert_int_equal(lg->ops->columns(lg, &seal), 0);
    struct sl_run_summary sum = {
        .run_id = "run-42",
        .job = "stores",
        .status = "completed_with_errors",
        .started_at = 1700000000000000,
        .finished_at = 1700000001000000,
        .sha256 = "ab",
        .bytes = 10,
        .counts = {.read = 2600, .published = 100, .rejected = 2500},
    };
    assert_int_equal(lg->ops->finish(lg, &sum, err, sizeof(err)), 0);
    sl_ledger_destroy(lg);
    sl_job_destroy(job);

    PGconn *c = connect_db();
    PGresult *r = PQexec(c, "SELECT count(*), min(source->>'ID'), "
                            "bool_and(source->'Other' = 'null'::jsonb) "
                            "FROM sluice_rejected_rows WHERE run_id = 'run-42'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "2500");
    assert_string_equal(PQgetvalue(r, 0, 1), "x'\"\\\n\xc3\xa4");
    assert_string_equal(PQgetvalue(r, 0, 2), "t");
    PQclear(r);
    r = PQexec(c, "SELECT status, counts->>'rejected', delimiter, columns->>1, trigger, "
                  "unmapped_columns::text FROM sluice_runs WHERE id = 'run-42'");
    assert_int_equal(PQntuples(r), 1);
    assert_string_equal(PQgetvalue(r, 0, 0), "completed_with_errors");
    assert_string_equal(PQgetvalue(r, 0, 1), "2500");
    assert_string_equal(PQgetvalue(r, 0, 2), ";");
    assert_string_equal(PQgetvalue(r, 0, 3), "Other");
    assert_string_equal(PQgetvalue(r, 0, 4), "test");
    assert_string_equal(PQgetvalue(r, 0, 5), "[\"Other\"]");
    PQclear(r);
    PQfinish(c);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "SLUICE_POSTGRES_URL='%s' %s/sluice runs stores | grep -q "
             "'run-42 .*completed_with_errors .* 2600 .* 100 .* 2500'",
             srv.conninfo, SLUICE_BUILD_DIR);
    assert_int_equal(system(cmd), 0);
}

static void test_unreachable(void **state)
{
    char err[512];
    assert_null(
        sl_jobs_pg_new("postgresql://x@127.0.0.1:1/db?connect_timeout=2", err, sizeof(err)));
    assert_non_null(strstr(err, "127.0.0.1:1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_apply_once),
        cmocka_unit_test(test_job_versions),
        cmocka_unit_test(test_cli_submit),
        cmocka_unit_test(test_cli_migrate),
        cmocka_unit_test(test_ledger),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
