/*
 * Crashes in distributed mode: a 100,000-row run (tests/bench/gen_stores,
 * the demo's shape with its bad rows) through the five services over the
 * mock Kafka cluster, Redis and PostgreSQL, while
 *   - the mapper is killed with SIGKILL mid-run and started again,
 *   - the publisher is killed with SIGKILL mid-run and started again,
 *   - a broker of the mock cluster goes down for a while and comes back,
 *   - second instances of the mapper, the validator and the publisher join
 *     their consumer groups and share the run, then leave on SIGTERM (the
 *     parser seals 100,000 rows before a publisher has any, so two
 *     publishers sharing a staging table is test_sink_postgres's).
 * Each time the run must end with exactly the counts that embedded mode
 * gives for the same file, the destination table must hold every valid row
 * once (its unique key makes twice impossible, so its row count is the
 * check), and the ledger every rejected row once. A consumer that fell
 * behind the mock broker's retention would see its offsets reset: any reset
 * in a service log fails the test. Last, kcat reads a record of every topic
 * and protoc decodes it with proto/sluice.proto alone.
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

#define REPO  SLUICE_FIXTURES "/../.."
#define NROWS 100000

#include "distributed_env.h"

enum { FETCHER, PARSER, MAPPER, VALIDATOR, PUBLISHER, NSERVICES };
static const char *const services[NSERVICES] = {"fetcher", "parser", "mapper", "validator",
                                                "publisher"};

static pid_t svc_pid[NSERVICES];

static int start_service(int i)
{
    svc_pid[i] = svc_start(services[i], tmp);
    return svc_pid[i] > 0 ? 0 : -1;
}

static void kill9(int i)
{
    fprintf(stderr, "# kill -9 sluice-%s (pid %d)\n", services[i], (int)svc_pid[i]);
    kill(svc_pid[i], SIGKILL);
    waitpid(svc_pid[i], NULL, 0);
    svc_pid[i] = 0;
}

static int setup(void **state)
{
    (void)state;
    /* enough partitions that no consumer falls behind the mock's ~5 MiB */
    static const char *const topics[] = {
        "sluice.tickets:1",
        "sluice.files:2",
        "sluice.records.raw:16",
        "sluice.records.mapped:16",
        "sluice.records.valid:16",
        "sluice.records.rejected:4",
        "sluice.runs:4",
        "sluice.dead:1",
        NULL,
    };
    /* a killed member leaves the group after 6 s instead of 45 s */
    if (dist_env_start("crash", topics, "session.timeout.ms=6000,heartbeat.interval.ms=500"))
        return -1;
    for (int i = 0; i < NSERVICES; i++)
        if (start_service(i))
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int bad = 0;
    for (int i = 0; i < NSERVICES; i++) {
        if (svc_stop(svc_pid[i], services[i]))
            bad = 1;
        svc_pid[i] = 0;
    }
    int rc = dist_env_stop(bad);
    return bad ? -1 : rc;
}

/* Waits until the publishers recorded at least n rows of the run. */
static void wait_rows(PGconn *c, const char *run_id, long n)
{
    for (int i = 0; i < 1200; i++) {
        long got = query_long(c, "SELECT staged + rejected FROM sluice_progress WHERE run_id = $1",
                              run_id);
        if (got >= n) {
            fprintf(stderr, "# %ld rows recorded\n", got);
            return;
        }
        usleep(50000);
    }
    fail_msg("run %s did not reach %ld rows in a minute (logs in %s)", run_id, n, tmp);
}

/* Waits (up to 3 minutes) until the run is final, then checks it against
 * embedded mode. */
static void check_run(PGconn *c, const char *run_id, const char *table)
{
    const char *params[] = {run_id};
    PGresult *r = NULL;
    for (int i = 0; i < 1800; i++) {
        r = PQexecParams(c, "SELECT status, counts::text FROM sluice_runs WHERE id = $1", 1, NULL,
                         params, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "queued") &&
            strcmp(PQgetvalue(r, 0, 0), "running"))
            break;
        PQclear(r);
        r = NULL;
        usleep(100000);
    }
    if (!r)
        fail_msg("run %s did not finish in 3 minutes (logs in %s)", run_id, tmp);
    fprintf(stderr, "# %s: %s %s\n", table, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
    assert_string_equal(PQgetvalue(r, 0, 0), "completed_with_errors");
    json_t *got = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    PQclear(r);
    assert_non_null(got);
    if (!json_equal(got, expected)) {
        char *a = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *b = json_dumps(expected, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("counts differ: distributed %s, embedded %s (logs in %s)", a, b, tmp);
    }
    json_decref(got);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(query_long(c, sql, NULL), expected_rows);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE _sluice_run = $1", table);
    assert_int_equal(query_long(c, sql, run_id), expected_rows);
    assert_int_equal(
        query_long(c, "SELECT count(*) FROM sluice_rejected_rows WHERE run_id = $1", run_id),
        json_integer_value(json_object_get(expected, "rejected")));
    /* a consumer that fell behind the broker would have been reset */
    assert_int_not_equal(shell("grep -il 'offset reset\\|out of range' %s/*.log", tmp), 0);
}

static void test_kill_mapper(void **state)
{
    (void)state;
    PGconn *c = connect_pg();
    char run_id[64];
    write_job("crash_mapper");
    submit_run("crash_mapper", run_id);
    wait_rows(c, run_id, NROWS / 5);
    kill9(MAPPER);
    usleep(500000);
    assert_int_equal(start_service(MAPPER), 0);
    check_run(c, run_id, "crash_mapper");
    PQfinish(c);
}

static void test_kill_publisher(void **state)
{
    (void)state;
    PGconn *c = connect_pg();
    char run_id[64];
    write_job("crash_publisher");
    submit_run("crash_publisher", run_id);
    wait_rows(c, run_id, NROWS / 3);
    kill9(PUBLISHER);
    usleep(500000);
    assert_int_equal(start_service(PUBLISHER), 0);
    check_run(c, run_id, "crash_publisher");
    PQfinish(c);
}

static void test_broker_down_and_up(void **state)
{
    (void)state;
    PGconn *c = connect_pg();
    char run_id[64];
    write_job("crash_broker");
    submit_run("crash_broker", run_id);
    wait_rows(c, run_id, NROWS / 5);
    char answer[256];
    fprintf(stderr, "# broker 2 down\n");
    assert_int_equal(kafka_mock_cmd(&km, "down 2", answer, sizeof(answer)), 0);
    sleep(3);
    fprintf(stderr, "# broker 2 up\n");
    assert_int_equal(kafka_mock_cmd(&km, "up 2", answer, sizeof(answer)), 0);
    check_run(c, run_id, "crash_broker");
    PQfinish(c);
}

/* Each stage scaled on its own: a second mapper, validator and publisher
 * (their logs: STAGE.2.log) take partitions of the run's records from the
 * first ones; the run's counts and rows are exactly embedded mode's. */
static void test_scaled_stages(void **state)
{
    (void)state;
    static const int scaled[] = {MAPPER, VALIDATOR, PUBLISHER};
    pid_t extra[3];
    char logname[32];
    for (int i = 0; i < 3; i++) {
        snprintf(logname, sizeof(logname), "%s.2", services[scaled[i]]);
        extra[i] = svc_start_as(services[scaled[i]], logname, tmp);
        assert_true(extra[i] > 0);
    }
    /* the run starts once each has partitions of its stage's topic */
    for (int i = 0; i < 3; i++) {
        int k = 0;
        while (shell("grep -q 'partitions assigned' %s/%s.2.log", tmp, services[scaled[i]]) != 0 &&
               k++ < 300)
            usleep(100000);
        if (k > 300)
            fail_msg("sluice-%s (second instance) got no partitions in 30 s (logs in %s)",
                     services[scaled[i]], tmp);
    }
    PGconn *c = connect_pg();
    char run_id[64];
    write_job("crash_scaled");
    submit_run("crash_scaled", run_id);
    check_run(c, run_id, "crash_scaled");
    PQfinish(c);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        bad |= svc_stop(extra[i], services[scaled[i]]);
    assert_int_equal(bad, 0);
}

/* Every topic the runs went through is plain protobuf: kcat takes a message
 * of each from the broker and protoc decodes it with proto/sluice.proto (a
 * records topic's message is a batch of records, which names the run and
 * job once for the records that share them). */
static void test_topics_readable_by_kcat_and_protoc(void **state)
{
    (void)state;
    static const char *const topic_type[][2] = {
        {"tickets", "JobTicket"},
        {"files", "FileFetched"},
        {"records.raw", "RecordBatch"},
        {"records.mapped", "RecordBatch"},
        {"records.valid", "RecordBatch"},
        {"records.rejected", "RejectionBatch"},
        {"runs", "RunEvent"},
    };
    for (size_t i = 0; i < sizeof(topic_type) / sizeof(topic_type[0]); i++) {
        static char text[4 << 20]; /* a batch of 64 KiB, as text */
        char cmd[2048];
        /* -f %s: the payload alone, without kcat's newline after it */
        snprintf(cmd, sizeof(cmd),
                 "kcat -C -b '%s' -t sluice.%s -o beginning -e -c 1 -f %%s 2>/dev/null | "
                 "protoc --decode=sluice.%s -I '%s/proto' '%s/proto/sluice.proto'",
                 km.bootstrap, topic_type[i][0], topic_type[i][1], REPO, REPO);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t n = fread(text, 1, sizeof(text) - 1, p);
        text[n] = '\0';
        char rest[4096]; /* a batch says what its records share after them */
        while (fread(rest, 1, sizeof(rest), p) > 0)
            ;
        int st = pclose(p);
        if (st != 0 || n >= sizeof(text) - 1 || !strstr(text, "run_id: \"") ||
            !strstr(text, "job_id: \"crash"))
            fail_msg("sluice.%s as sluice.%s: exit %d, got:\n%.2000s", topic_type[i][0],
                     topic_type[i][1], st, text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_mapper),
        cmocka_unit_test(test_kill_publisher),
        cmocka_unit_test(test_broker_down_and_up),
        cmocka_unit_test(test_scaled_stages),
        cmocka_unit_test(test_topics_readable_by_kcat_and_protoc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
