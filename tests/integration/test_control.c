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
#include "sluice/pg.h"

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
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
