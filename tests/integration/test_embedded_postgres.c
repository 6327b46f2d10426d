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
#include <unistd.h>

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

static void exec_sql(const char *sql)
{
    PGconn *c = PQconnectdb(srv.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* Writes a job of shops whose region and code reference other objects
 * (ref_table names the regions' table), reading csv; runs it. */
static int run_refs(const char *ref_table, const char *csv, const char *out)
{
    char path[256], cmd[2048];
    snprintf(path, sizeof(path), "%s/refs.json", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"name\":\"shops\",\"source\":{\"url\":\"%s\"},"
            "\"target\":{\"object\":\"shops\",\"key\":[\"id\"],\"attributes\":{"
            "\"id\":{\"type\":\"text\",\"required\":true},"
            "\"region\":{\"type\":\"text\",\"references\":\"%s.region_id\"},"
            "\"code\":{\"type\":\"integer\",\"references\":\"codes.code\"},"
            "\"tag\":{\"type\":\"text\",\"references\":\"codes.code\"}}},"
            "\"mapping\":{\"id\":\"id\",\"region\":\"region\",\"code\":\"code\","
            "\"tag\":\"tag\"},"
            "\"destination\":{\"type\":\"postgres\",\"table\":\"shops\"}}\n",
            csv, ref_table);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "SLUICE_DESTINATION_URL='%s' %s/sluice run %s --out %s/%s --state %s/state "
             "--force --quiet > %s/%s.txt 2>&1",
             srv.conninfo, SLUICE_BUILD_DIR, path, tmp, out, tmp, tmp, out);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* references: a value without a record in the destination is rejected as
 * unknown_reference; typed columns are looked up through their type (an
 * integer column, and a text attribute whose value is no integer); a
 * reference to a table that does not exist fails the run; lookups are
 * batched: 20,000 rows of distinct references take a few queries. */
static void test_references(void **state)
{
    exec_sql("CREATE TABLE regions (region_id text PRIMARY KEY, name text);"
             "INSERT INTO regions VALUES ('north', 'Nord'), ('south', 'Süd');"
             "CREATE TABLE codes (code bigint PRIMARY KEY);"
             "INSERT INTO codes SELECT g FROM generate_series(1, 20000) g;");
    char csv[256], cmd[1024];
    snprintf(csv, sizeof(csv), "%s/refs.csv", tmp);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fputs("id,region,code,tag\n"
          "1,north,10,10\n"
          "2,east,20001,x\n"
          "3,,10,\n"
          "4,south,0,10\n",
          f);
    fclose(f);
    assert_int_equal(run_refs("regions", csv, "refs1"), 3);
    assert_int_equal(query_long("select count(*) from shops"), 2);
    snprintf(cmd, sizeof(cmd),
             "jq -c '[.row, [.errors[] | [.attribute, .code, .message]]]' %s/refs1/rejected.ndjson "
             "> %s/refs1.got",
             tmp, tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(
        cmd, sizeof(cmd),
        "printf '%%s\\n' "
        "'[2,[[\"region\",\"unknown_reference\",\"no regions record has region_id "
        "'\"'\"'east'\"'\"'\"],"
        "[\"code\",\"unknown_reference\",\"no codes record has code '\"'\"'20001'\"'\"'\"],"
        "[\"tag\",\"unknown_reference\",\"no codes record has code '\"'\"'x'\"'\"'\"]]]' "
        "'[4,[[\"code\",\"unknown_reference\",\"no codes record has code '\"'\"'0'\"'\"'\"]]]' "
        "| diff -u - %s/refs1.got",
        tmp);
    assert_int_equal(system(cmd), 0);

    /* a reference to no table: the run fails, saying which */
    assert_int_equal(run_refs("nosuch", csv, "refs2"), 1);
    snprintf(cmd, sizeof(cmd),
             "jq -e '.reason | contains(\"target.attributes.region.references: the destination "
             "has no table nosuch\")' %s/refs2/run.json >/dev/null",
             tmp);
    assert_int_equal(system(cmd), 0);

    /* 20,000 rows, each a code of its own: the lookups are batched */
    f = fopen(csv, "w");
    assert_non_null(f);
    fputs("id,region,code,tag\n", f);
    for (int i = 1; i <= 20000; i++)
        fprintf(f, "%d,north,%d,\n", i, i);
    fclose(f);
    long before = query_long("select xact_commit from pg_stat_database where datname = "
                             "current_database()");
    assert_int_equal(run_refs("regions", csv, "refs3"), 0);
    sleep(1); /* the backends' statistics reach pg_stat_database */
    long after = query_long("select xact_commit from pg_stat_database where datname = "
                            "current_database()");
    print_message("# 20,000 rows with references: %ld transactions\n", after - before);
    assert_true(after - before < 200);
    assert_int_equal(query_long("select count(*) from shops"), 20000);
}

/* a job of several targets into PostgreSQL: accounts, then contacts that
 * reference them (looked up in the table the first target just wrote) */
static void test_targets_into_postgres(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cp -R %s/tests/fixtures/cli/targets %s/targets && cd %s/targets && "
             "jq '.destination = {\"type\": \"postgres\"}' job.json > pg.json && "
             "SLUICE_DESTINATION_URL='%s' %s/sluice run pg.json --out out --state state "
             "--quiet > log.txt 2>&1",
             REPO, tmp, tmp, srv.conninfo, SLUICE_BUILD_DIR);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 3);
    assert_int_equal(query_long("select count(*) from accounts"), 2);
    assert_int_equal(query_long("select count(*) from contacts"), 2);
    assert_int_equal(query_long("select count(*) from contacts c join accounts a using "
                                "(account_no)"),
                     2);
    snprintf(cmd, sizeof(cmd),
             "jq -e '.counts.rejected == 3 and ([.targets[].status] == "
             "[\"completed_with_errors\", \"completed_with_errors\"])' %s/targets/out/run.json "
             ">/dev/null || cat %s/targets/out/run.json",
             tmp, tmp);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_into_postgres),
        cmocka_unit_test(test_unreachable_database_fails_the_run),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_targets_into_postgres),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
