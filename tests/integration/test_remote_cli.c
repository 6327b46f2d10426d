/*
 * sluice jobs ... and sluice runs ... --server against a real sluice-gateway
 * (PostgreSQL, Redis and the mock Kafka cluster on loopback, the gateway on
 * a free loopback port, as in test_gateway.c), running the real sluice
 * binary for each subcommand and checking what it prints and its exit
 * status:
 *
 * - jobs put (created, unchanged, a new version), list (table and JSON),
 *   get (the current and an older version), disable/enable, run (the run id),
 *   delete (and 409 job_busy while a run is queued);
 * - runs --server JOB (table, --status, --json, --limit over several pages)
 *   and runs show RUN with the counts, reason and report of a finished run
 *   and the live progress of a running one;
 * - jobs trigger (an idempotency key twice: one run), runs source and runs
 *   report (CSV to stdout, XLSX to --out) of a run;
 * - errors: an invalid job is exit 2 naming the field, a bad token 401 and a
 *   viewer token 403 say which token setting to check (and never print the
 *   token), an unreachable server names the URL, bad command lines exit 2.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_server.h"

#define ADMIN "test-admin-token-0123456789abcdef"

static bool unfinished;

/* what the last sluice printed */
static char *out, *err;

/* ---- helpers ------------------------------------------------------------- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    size_t len = 0, cap = 4096;
    char *s = malloc(cap);
    size_t n;
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024)
            s = realloc(s, cap *= 2);
    }
    fclose(f);
    if (s)
        s[len] = '\0';
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs "[env] sluice args" (env: NAME=value assignments or ""), with
 * SLUICE_SERVER and SLUICE_TOKEN of the test unless env overrides them;
 * its exit status, its output in out and err. */
static __attribute__((format(printf, 2, 3))) int sluice(const char *env, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    free(out);
    free(err);
    /* SLUICE_TEST_WRAPPER: e.g. "valgrind --error-exitcode=99 --leak-check=full -q" */
    const char *wrap = getenv("SLUICE_TEST_WRAPPER");
    int rc = shell("cd %s && %s %s %s/sluice %s > %s/out.txt 2> %s/err.txt", tmp, env,
                   wrap ? wrap : "", SLUICE_BUILD_DIR, args, tmp, tmp);
    char p[128];
    snprintf(p, sizeof(p), "%s/out.txt", tmp);
    out = slurp(p);
    snprintf(p, sizeof(p), "%s/err.txt", tmp);
    err = slurp(p);
    if (getenv("SLUICE_TEST_VERBOSE")) /* to see what the command prints */
        fprintf(stderr, "$ %s sluice %s  -> %d\n%s%s", env, args, rc, out, err);
    return rc;
}

#define expect_exit(rc, want)                                                                      \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != (want))                                                                         \
            fail_msg("expected exit status %d, got %d\nstdout: %s\nstderr: %s", (want), rc_, out,  \
                     err);                                                                         \
    } while (0)

#define expect_in(text, what)                                                                      \
    do {                                                                                           \
        if (!strstr((text), (what)))                                                               \
            fail_msg("'%s' is not in:\n%s\n(stderr: %s)", (what), (text), err);                    \
    } while (0)

static const char *job_doc(const char *name, const char *type, const char *desc)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\n  \"name\": \"%s\",\n  \"description\": \"%s\",\n"
             "  \"source\": {\"url\": \"stores.csv\", \"format\": \"csv\"},\n"
             "  \"target\": {\"object\": \"stores\", \"key\": [\"id\"], \"attributes\": {\n"
             "    \"id\": {\"type\": \"text\", \"required\": true},\n"
             "    \"name\": {\"type\": \"%s\"}}},\n"
             "  \"mapping\": {\"id\": \"Id\", \"name\": \"Name\"},\n"
             "  \"destination\": {\"type\": \"postgres\", \"table\": \"stores\"}\n}\n",
             name, desc, type);
    return buf;
}

static void write_job(const char *file, const char *name, const char *type, const char *desc)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmp, file);
    write_text(path, job_doc(name, type, desc));
}

/* A token of role made by the admin, through the API (caller frees). */
static char *make_token(const char *name, const char *role)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/token.json", tmp);
    assert_int_equal(shell("curl -s -f -o %s -H 'Authorization: Bearer %s' "
                           "-d '{\"name\": \"%s\", \"role\": \"%s\"}' %s/v1/tokens",
                           path, ADMIN, name, role, base),
                     0);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    char *tok = strdup(json_string_value(json_object_get(j, "token")));
    json_decref(j);
    return tok;
}

static void exec_sql(const char *sql)
{
    PGresult *res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
}

/* ---- set-up -------------------------------------------------------------- */

static int setup(void **state)
{
    static const char *const topics[] = {"sluice.tickets:1", "sluice.runs:1", NULL};
    if (gateway_server_start("sluice-rc", topics, ADMIN))
        return -1;
    /* what the sluice command reads; it must not need the control plane */
    unsetenv("SLUICE_POSTGRES_URL");
    unsetenv("SLUICE_ADMIN_TOKEN");
    setenv("SLUICE_SERVER", base, 1);
    setenv("SLUICE_TOKEN", ADMIN, 1);
    setenv("SLUICE_LOG_LEVEL", "warn", 1);
    return 0;
}

static int teardown(void **state)
{
    free(out);
    free(err);
    return gateway_server_stop(unfinished);
}

/* ---- tests --------------------------------------------------------------- */

static void test_jobs(void **state)
{
    unfinished = true;
    write_job("stores.json", "rc-stores", "text", "first");
    expect_exit(sluice("", "jobs put stores.json"), 0);
    assert_string_equal(out, "job rc-stores version 1 (created)\n");
    expect_exit(sluice("", "jobs put stores.json"), 0);
    assert_string_equal(out, "job rc-stores version 1 (unchanged)\n");
    write_job("stores.json", "rc-stores", "text", "second");
    expect_exit(sluice("", "jobs put stores.json"), 0);
    assert_string_equal(out, "job rc-stores version 2 (created)\n");

    /* an invalid job: exit 2, the field named */
    write_job("bad.json", "rc-bad", "txt", "bad");
    expect_exit(sluice("", "jobs put bad.json"), 2);
    expect_in(err, "target.attributes.name.type");
    expect_in(err, "(invalid_job, request ");
    assert_string_equal(out, "");
    expect_exit(sluice("", "jobs put missing.json"), 2);
    expect_in(err, "missing.json");

    /* list: a table and JSON */
    expect_exit(sluice("", "jobs list"), 0);
    expect_in(out, "JOB");
    expect_in(out, "NEXT RUN");
    expect_in(out, "rc-stores");
    expect_exit(sluice("", "jobs list --json"), 0);
    json_t *list = json_loads(out, 0, NULL);
    assert_true(json_is_array(list));
    assert_int_equal(json_array_size(list), 1);
    json_t *j0 = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(j0, "id")), "rc-stores");
    assert_int_equal(json_integer_value(json_object_get(j0, "current_version")), 2);
    json_decref(list);

    /* get: the document, the current version or an older one */
    expect_exit(sluice("", "jobs get rc-stores"), 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "name")), "rc-stores");
    assert_string_equal(json_string_value(json_object_get(doc, "description")), "second");
    json_decref(doc);
    expect_exit(sluice("", "jobs get rc-stores --version 1"), 0);
    doc = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(doc, "description")), "first");
    json_decref(doc);
    expect_exit(sluice("", "jobs get rc-nope"), 1);
    expect_in(err, "(not_found, request ");
    expect_exit(sluice("", "jobs get rc-stores --version 9"), 1);
    expect_in(err, "not_found");

    /* disable, enable */
    expect_exit(sluice("", "jobs disable rc-stores"), 0);
    assert_string_equal(out, "job rc-stores disabled\n");
    expect_exit(sluice("", "jobs list --json"), 0);
    list = json_loads(out, 0, NULL);
    assert_true(json_is_false(json_object_get(json_array_get(list, 0), "enabled")));
    json_decref(list);
    expect_exit(sluice("", "jobs enable rc-stores"), 0);
    assert_string_equal(out, "job rc-stores enabled\n");

    /* run now: the run id, then the history */
    expect_exit(sluice("", "jobs run rc-stores --force"), 0);
    assert_int_equal(strlen(out), 37);
    char run_id[40];
    snprintf(run_id, sizeof(run_id), "%.36s", out);
    expect_exit(sluice("", "runs --server %s rc-stores", base), 0);
    expect_in(out, "RUN");
    expect_in(out, run_id);
    expect_in(out, "queued");
    expect_exit(sluice("", "runs --server %s show %s", base, run_id), 0);
    expect_in(out, "status:   queued");
    expect_in(out, "job:      rc-stores version 2 (trigger api)");
    expect_in(out, "counts:   - (the run is not final)");

    /* a finished run, as the pipeline records it */
    exec_sql("INSERT INTO sluice_runs (id, job_id, job_version, trigger, status, started_at, "
             "  finished_at, counts, reason, report) VALUES "
             "('rc-run-err', 'rc-stores', 1, 'schedule', 'completed_with_errors', "
             "  '2025-06-01T00:00:00Z', '2025-06-01T00:01:00Z', "
             "  '{\"read\": 3, \"published\": 1, \"created\": 1, \"updated\": 0, "
             "    \"unchanged\": 0, \"rejected\": 2, \"duplicates\": 1, \"not_created\": 0}', "
             "  '2 rows rejected', '{\"status\": \"sent\", \"file\": \"report.xlsx\"}')");
    expect_exit(sluice("", "runs --server %s show rc-run-err", base), 0);
    expect_in(out, "status:   completed_with_errors");
    expect_in(out, "reason:   2 rows rejected");
    expect_in(out, "counts:   3 read, 1 published (1 created, 0 updated, 0 unchanged), 2 "
                   "rejected (1 duplicates), 0 not created");
    expect_in(out, "report:   sent, report.xlsx");
    expect_in(out, "started:  2025-06-01T00:00:00Z");
    expect_exit(sluice("", "runs --server %s show rc-run-err --json", base), 0);
    doc = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "counts"), "read")),
                     3);
    json_decref(doc);
    /* SLUICE_SERVER alone is enough; filters */
    expect_exit(sluice("", "runs rc-stores --status completed_with_errors --json"), 0);
    list = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")),
                        "rc-run-err");
    json_decref(list);
    expect_exit(sluice("", "runs rc-stores --limit 1"), 0);
    expect_in(out, run_id); /* the newest */
    assert_null(strstr(out, "rc-run-err"));
    expect_exit(sluice("", "runs rc-stores --status bogus"), 2);
    expect_in(err, "invalid_parameter");
    expect_exit(sluice("", "runs --server %s show rc-no-such-run", base), 1);
    expect_in(err, "not_found");

    /* delete: not while a run is queued; another job goes */
    expect_exit(sluice("", "jobs delete rc-stores"), 1);
    expect_in(err, "(job_busy, request ");
    write_job("temp.json", "rc-temp", "text", "temp");
    expect_exit(sluice("", "jobs put temp.json"), 0);
    expect_exit(sluice("", "jobs delete rc-temp"), 0);
    assert_string_equal(out, "job rc-temp deleted\n");
    expect_exit(sluice("", "jobs get rc-temp"), 1);
    expect_in(err, "not_found");
    unfinished = false;
}

/* jobs trigger (idempotency keys), runs over several pages, a run's source
 * file and report downloaded, and its live progress shown. */
static void test_trigger_downloads(void **state)
{
    unfinished = true;
    write_job("dl.json", "rc-dl", "text", "downloads");
    expect_exit(sluice("", "jobs put dl.json"), 0);
    expect_exit(sluice("", "jobs trigger rc-dl --key export-42"), 0);
    assert_int_equal(strlen(out), 37);
    char run_id[40];
    snprintf(run_id, sizeof(run_id), "%.36s", out);
    expect_exit(sluice("", "jobs trigger rc-dl --key export-42"), 0);
    expect_in(out, run_id);
    expect_in(out, "(started before with this key: queued)");
    expect_exit(sluice("", "jobs trigger rc-dl --force --json"), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "trigger")), "trigger");
    assert_true(json_is_true(json_object_get(j, "force")));
    json_decref(j);
    expect_exit(sluice("", "jobs run rc-dl --key x"), 2);
    expect_in(err, "does not take --key");
    expect_exit(sluice("", "runs show %s", run_id), 0);
    expect_in(out, "(trigger trigger)");

    /* 1500 runs: --limit follows the pages */
    exec_sql("INSERT INTO sluice_runs (id, job_id, job_version, trigger, status, started_at) "
             "SELECT 'rc-many-' || i, 'rc-dl', 1, 'schedule', 'succeeded', "
             "  '2024-01-01'::timestamptz + i * interval '1 minute' "
             "FROM generate_series(1, 1500) i");
    expect_exit(sluice("", "runs rc-dl --limit 1203 --json"), 0);
    j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), 1203);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 2), "id")),
                        "rc-many-1500");
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1202), "id")),
                        "rc-many-300");
    json_decref(j);
    expect_exit(sluice("", "runs rc-dl --limit 100001"), 2);

    /* the source file and the report */
    exec_sql(
        "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status, started_at, "
        "  finished_at, counts, columns) VALUES ('rc-src', 'rc-dl', 1, 'api', "
        "  'completed_with_errors', now(), now(), '{\"read\": 2, \"published\": 1, "
        "  \"rejected\": 1}', '[\"Id\", \"Name\"]');"
        "INSERT INTO sluice_rejected_rows (run_id, row, errors, source) VALUES ('rc-src', 2, "
        "  '[{\"attribute\": \"id\", \"code\": \"required\", \"message\": "
        "  \"a value is required\", \"value\": null}]', '{\"Id\": \"\", \"Name\": \"Mitte\"}')");
    assert_int_equal(
        shell("mkdir -p %s/blobs/rc-dl/rc-src && printf 'Id,Name\\n1,Berlin\\n,Mitte\\n' "
              "> %s/blobs/rc-dl/rc-src/stores.csv",
              tmp, tmp),
        0);
    expect_exit(sluice("", "runs source rc-src --out got.csv"), 0);
    char p[256];
    snprintf(p, sizeof(p), "%s/got.csv", tmp);
    char *got = slurp(p);
    assert_string_equal(got, "Id,Name\n1,Berlin\n,Mitte\n");
    free(got);
    expect_exit(sluice("", "runs source rc-src"), 0);
    assert_string_equal(out, "Id,Name\n1,Berlin\n,Mitte\n");
    expect_exit(sluice("", "runs report rc-src --format csv"), 0);
    expect_in(out, "_row,_errors,Id,Name\r\n2,id: a value is required,,Mitte\r\n");
    expect_exit(sluice("", "runs report rc-src --out report.xlsx"), 0);
    snprintf(p, sizeof(p), "%s/report.xlsx", tmp);
    got = slurp(p);
    assert_true(got[0] == 'P' && got[1] == 'K');
    free(got);
    expect_exit(sluice("", "runs report rc-src --format pdf"), 2);
    expect_in(err, "--format 'pdf'");
    expect_exit(sluice("", "runs source rc-nope --out x.csv"), 1);
    expect_in(err, "not_found");
    snprintf(p, sizeof(p), "%s/x.csv", tmp);
    assert_int_not_equal(access(p, F_OK), 0); /* nothing left behind */
    snprintf(p, sizeof(p), "%s/x.csv.part", tmp);
    assert_int_not_equal(access(p, F_OK), 0);
    expect_exit(sluice("", "runs source rc-src --format csv"), 2);

    /* live progress */
    assert_int_equal(shell("redis-cli -p %d HSET sluice:run:%s:progress parser.records_out 7 "
                           "validator.records_in 5 validator.rejected_out 1 > /dev/null",
                           rs.port, run_id),
                     0);
    expect_exit(sluice("", "runs show %s", run_id), 0);
    expect_in(out, "progress: (live, not stamped)\n"
                   "  parser     in - (+- rejected), out 7, rejected -\n"
                   "  validator  in 5 (+- rejected), out -, rejected 1\n");
    unfinished = false;
}

static void test_errors(void **state)
{
    unfinished = true;
    /* a bad token: 401, which setting to check, the token never printed */
    expect_exit(sluice("SLUICE_TOKEN=not-a-valid-token-xyz", "jobs list"), 1);
    expect_in(err, "(unauthorized, request ");
    expect_in(err, "SLUICE_TOKEN");
    assert_null(strstr(err, "not-a-valid-token-xyz"));
    assert_null(strstr(out, "not-a-valid-token-xyz"));
    /* a token of too low a role: 403 */
    char *viewer = make_token("rc-viewer", "viewer");
    char env[256];
    snprintf(env, sizeof(env), "SLUICE_TOKEN=%s", viewer);
    expect_exit(sluice(env, "jobs list"), 0);
    write_job("v.json", "rc-viewer-job", "text", "v");
    expect_exit(sluice(env, "jobs put v.json"), 1);
    expect_in(err, "(forbidden, request ");
    expect_in(err, "SLUICE_TOKEN");
    assert_null(strstr(err, viewer));
    /* --token-file instead of the environment */
    char path[128];
    snprintf(path, sizeof(path), "%s/bad-token.txt", tmp);
    write_text(path, "  not-a-valid-token-xyz  \n");
    snprintf(path, sizeof(path), "%s/token.txt", tmp);
    char line[256];
    snprintf(line, sizeof(line), "%s\n", viewer);
    write_text(path, line);
    expect_exit(sluice("SLUICE_TOKEN=", "jobs list --token-file token.txt"), 0);
    expect_in(out, "rc-stores");
    expect_exit(sluice("", "jobs list --token-file no-such-file"), 2);
    expect_exit(sluice("", "jobs list --token-file bad-token.txt"), 1);
    expect_in(err, "(unauthorized, request ");
    expect_in(err, "check the token in --token-file bad-token.txt");
    assert_null(strstr(err, "not-a-valid-token-xyz"));
    free(viewer);
    /* no token, no server */
    expect_exit(sluice("SLUICE_TOKEN=", "jobs list"), 2);
    expect_in(err, "SLUICE_TOKEN");
    expect_exit(sluice("SLUICE_SERVER=", "jobs list"), 2);
    expect_in(err, "SLUICE_SERVER");
    expect_exit(sluice("", "jobs list --server ftp://127.0.0.1/"), 2);
    /* a server that cannot be reached: its URL named */
    char down[64];
    snprintf(down, sizeof(down), "http://127.0.0.1:%d", pg_server_free_port());
    expect_exit(sluice("", "jobs list --server %s", down), 1);
    expect_in(err, "cannot reach the server at ");
    expect_in(err, down);
    expect_exit(sluice("", "runs --server %s rc-stores", down), 1);
    expect_in(err, down);
    /* bad command lines */
    expect_exit(sluice("", "jobs"), 2);
    expect_exit(sluice("", "jobs frob"), 2);
    expect_in(err, "unknown subcommand 'frob'");
    expect_exit(sluice("", "jobs get"), 2);
    expect_exit(sluice("", "jobs get a b"), 2);
    expect_exit(sluice("", "jobs list --force"), 2);
    expect_exit(sluice("", "jobs get rc-stores --version x"), 2);
    expect_exit(sluice("", "jobs list --bogus"), 2);
    expect_exit(sluice("", "jobs get rc-stores --version"), 2);
    expect_exit(sluice("", "runs --server %s", base), 2);
    expect_in(err, "name the job");
    expect_exit(sluice("", "runs rc-stores --limit 0"), 2);
    expect_exit(sluice("", "jobs --help"), 0);
    expect_in(out, "usage: sluice jobs");
    unfinished = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_trigger_downloads),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
