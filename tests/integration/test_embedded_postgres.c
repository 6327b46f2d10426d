/*
 * Embedded mode into a real PostgreSQL: `sluice run` of the demo job with a
 * postgres destination (SLUICE_DESTINATION_URL) creates the table, publishes
 * the valid rows, and counts a second run of the same file as unchanged; a
 * changed file updates what changed. The server is Debian's, on loopback, in a
 * temporary directory (pg_server.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "pg_server.h"

#define REPO SLUICE_FIXTURES "/../.."

static struct pg_server srv;
static char tmp[64];

static int setup(void **state)
{
    if (pg_server_start(&srv)) {
        fprintf(stderr, "cannot start postgresql: %s\n", srv.err);
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "/tmp/sluice-embpg-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    pg_server_stop(&srv);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes the demo job with a postgres destination, reading csv. */
static void write_job(const char *csv)
{
    char path[256], cmd[1024];
    snprintf(path, sizeof(path), "%s/job.json", tmp);
    snprintf(cmd, sizeof(cmd),
             "sed -e 's|\"url\": *\"stores.csv\"|\"url\": \"%s\"|' "
             "-e 's|^}$|,\"destination\": {\"type\": \"postgres\", \"table\": \"stores\"}}|' "
             "%s/examples/stores/job.json > %s",
             csv, REPO, path);
    assert_int_equal(system(cmd), 0);
}

/* Runs sluice; returns its exit status and the summary line in out. */
static int run_sluice(char *out, size_t outsz)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "SLUICE_DESTINATION_URL='%s' %s/sluice run %s/job.json --out %s/out --state %s/state "
             "--force 2>&1",
             srv.conninfo, SLUICE_BUILD_DIR, tmp, tmp, tmp);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    char line[1024];
    while (fgets(line, sizeof(line), p))
        if (!out[0])
            snprintf(out, outsz, "%s", line);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long query_long(const char *sql)
{
    PGconn *c = PQconnectdb(srv.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return v;
}

static void test_demo_into_postgres(void **state)
{
    char csv[256], line[1024];
    snprintf(csv, sizeof(csv), "%s/examples/stores/stores.csv", REPO);
    write_job(csv);

    assert_int_equal(run_sluice(line, sizeof(line)), 3); /* completed_with_errors */
    assert_non_null(strstr(line, "19 published (19 created, 0 updated, 0 unchanged)"));
    assert_int_equal(query_long("select count(*) from stores"), 19);
    assert_int_equal(query_long("select count(*) from stores where store_id = '1003'"), 1);
    /* typed columns: the decimal and date arrive exactly */
    assert_int_equal(query_long("select count(*) from stores where store_id = '1001' and "
                                "revenue = 1234567.89 and opened_on = '1998-03-15'"),
                     1);

    /* the same file again: every published row is unchanged */
    assert_int_equal(run_sluice(line, sizeof(line)), 3);
    if (!strstr(line, "19 published (0 created, 0 updated, 19 unchanged)"))
        print_error("got: %s\n", line);
    assert_non_null(strstr(line, "19 published (0 created, 0 updated, 19 unchanged)"));

    /* one changed name: one update, the rest unchanged */
    char changed[256], cmd[1024];
    snprintf(changed, sizeof(changed), "%s/changed.csv", tmp);
    snprintf(cmd, sizeof(cmd), "sed 's/Filiale Berlin Mitte/Filiale Berlin-Mitte/' %s > %s", csv,
             changed);
    assert_int_equal(system(cmd), 0);
    write_job(changed);
    assert_int_equal(run_sluice(line, sizeof(line)), 3);
    assert_non_null(strstr(line, "19 published (0 created, 1 updated, 18 unchanged)"));
    assert_int_equal(query_long("select count(*) from stores where name = 'Filiale Berlin-Mitte'"),
                     1);
}

static void test_unreachable_database_fails_the_run(void **state)
{
    char csv[256], line[1024], cmd[2048];
    snprintf(csv, sizeof(csv), "%s/examples/stores/stores.csv", REPO);
    write_job(csv);
    snprintf(cmd, sizeof(cmd),
             "SLUICE_DESTINATION_URL='postgresql://nobody@127.0.0.1:1/x?connect_timeout=2' "
             "%s/sluice run %s/job.json --out %s/out2 --state %s/state --force > %s/o.txt 2>&1",
             SLUICE_BUILD_DIR, tmp, tmp, tmp, tmp);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1); /* failed */
    snprintf(cmd, sizeof(cmd), "grep -q '127.0.0.1' %s/out2/run.json", tmp);
    assert_int_equal(system(cmd), 0); /* the reason names the server */
    (void)line;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_into_postgres),
        cmocka_unit_test(test_unreachable_database_fails_the_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
