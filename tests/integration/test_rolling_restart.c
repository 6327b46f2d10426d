/*
 * Graceful shutdown across a rolling restart, in distributed mode: every
 * stage as its own processes, two replicas of each (fetcher, parser, mapper,
 * validator, publisher), a scheduler and a gateway, over the mock Kafka
 * cluster, Redis and PostgreSQL. For each stage in turn a run of NROWS rows
 * (tests/bench/gen_stores, the demo's shape with its bad rows) is submitted
 * and, while it goes through that stage, one replica of the stage gets
 * SIGTERM: it must exit 0 within GRACE_MS (the time is printed) having
 * committed what it did, the other replica must take its partitions over
 * within HANDOVER (it left the group: no wait for its session to time out),
 * and a replacement started a second later must get partitions. The
 * scheduler and the gateway are restarted the same way; the gateway gets
 * its SIGTERM during a slow upload, which must still be answered.
 *
 * Then every run must end with exactly the counts of embedded mode for the
 * same file, its destination table must hold every valid row once (counted,
 * and counted distinct by the key), the ledger every rejected row once,
 * the dead-letter topic must be empty, and no record may be lost between
 * stages: the live progress of each run (the records each stage took in
 * and sent out, state.h progress_add) must add up, stage by stage. A record
 * handed to a stage twice is allowed only where that stage logged a commit
 * the mock refused (see check_run), and is counted. While runs are in
 * progress, the rows recorded by the publishers must never stand still
 * longer than STALL_MS. Last, a mapper given SIGTERM and SIGINT at once
 * exits at once with 128 + the second signal.
 *
 * test_stop_finishes_the_batch_in_hand: the stage runner alone, stopped at
 * the first record of a batch, processes the rest of that batch and commits
 * it, and leaves the next batch to the next consumer.
 * SLUICE_TEST_FILTER="test_stop*" runs one of the tests only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"
#include "services.h"
#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/msg.h"
#include "sluice/stage.h"

#define REPO     SLUICE_FIXTURES "/../.."
#define NROWS    20000
#define GRACE_MS 10000 /* the grace period: SIGTERM to exit */
#define HANDOVER 5000  /* ms: the other replica has the partitions again */
/* longest time without a row recorded while runs are on: the mock's
 * rebalances take 3 s each (see setup), and every member of the group
 * waits through them (eager assignment); two may come back to back */
#define STALL_MS  8000
#define RUN_LIMIT 120 /* s: every run is final by then */
#define ADMIN     "rolling-restart-admin-token"

#include "distributed_env.h"

enum { FETCHER, PARSER, MAPPER, VALIDATOR, PUBLISHER, NSTAGES };
static const char *const stages[NSTAGES] = {"fetcher", "parser", "mapper", "validator",
                                            "publisher"};

static long redelivered; /* records handed to a stage twice (see check_run) */
static bool keep;        /* a test did not finish: the logs stay */

/* Every process the test started: a stage replica, the scheduler or the
 * gateway, with the name of its log (NAME.log in tmp). */
#define MAXPROCS 32
static struct proc {
    pid_t pid;
    char name[16];    /* sluice-NAME */
    char logname[32]; /* its log */
} procs[MAXPROCS];
static int nprocs;
static int gen[NSTAGES + 2]; /* instances started of each */
static char gw_base[64];     /* http://127.0.0.1:PORT */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts another instance of sluice-NAME (its log: NAME.<n>.log); its index
 * in procs, or -1. */
static int start_proc(const char *name, int *counter)
{
    if (nprocs == MAXPROCS)
        return -1;
    struct proc *p = &procs[nprocs];
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->logname, sizeof(p->logname), "%s.%d", name, ++*counter);
    p->pid = svc_start_as(name, p->logname, tmp);
    return p->pid > 0 ? nprocs++ : -1;
}

/* Lines of the log of procs[i] that contain what (grep -c). */
static int log_count(int i, const char *what)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "grep -c '%s' %s/%s.log 2>/dev/null", what, tmp, procs[i].logname);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = 0;
        pclose(p);
    }
    return n;
}

/* Waits up to ms until the log of procs[i] has more than n lines with
 * what; the seconds it took, or -1. */
static double wait_log(int i, const char *what, int n, int ms, double since)
{
    for (;;) {
        if (log_count(i, what) > n)
            return now_s() - since;
        if ((now_s() - since) * 1000 > ms)
            return -1;
        usleep(50000);
    }
}

/* SIGTERM to procs[i]: it must exit 0 within GRACE_MS. The seconds it took
 * (SIGKILL and a failure after the grace period). */
static double term_proc(int i)
{
    struct proc *p = &procs[i];
    double t0 = now_s();
    kill(p->pid, SIGTERM);
    int st = 0;
    pid_t done = 0;
    while ((done = waitpid(p->pid, &st, WNOHANG)) == 0 && (now_s() - t0) * 1000 < GRACE_MS)
        usleep(5000);
    double took = now_s() - t0;
    if (done == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        p->pid = 0;
        fail_msg("sluice-%s (%s.log) did not exit within %d ms of SIGTERM (logs in %s)", p->name,
                 p->logname, GRACE_MS, tmp);
    }
    p->pid = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("sluice-%s (%s.log) stopped with %s %d on SIGTERM (logs in %s)", p->name,
                 p->logname, WIFSIGNALED(st) ? "signal" : "exit status",
                 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), tmp);
    fprintf(stderr, "# sluice-%s (%s) exited 0 %.3f s after SIGTERM\n", p->name, p->logname, took);
    return took;
}

/* The index in procs of a running instance of name, the n-th found. */
static int find_proc(const char *name, int n)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i].pid > 0 && !strcmp(procs[i].name, name) && n-- == 0)
            return i;
    return -1;
}

/* ---- the stall watch: rows recorded while runs are on ---- */

static pthread_t watcher;
static atomic_bool watch_stop;
static double watch_worst; /* s without a row recorded while a run was on */

static void *watch_main(void *arg)
{
    (void)arg;
    PGconn *c = PQconnectdb(pg.conninfo);
    long last = -1;
    double since = now_s();
    while (!atomic_load(&watch_stop)) {
        long active = query_long(
            c, "SELECT count(*) FROM sluice_runs WHERE status IN ('queued', 'running')", NULL);
        long rows =
            query_long(c, "SELECT coalesce(sum(staged + rejected), 0) FROM sluice_progress", NULL);
        double t = now_s();
        if (rows != last || active <= 0) {
            last = rows;
            since = t;
        } else if (t - since > watch_worst) {
            watch_worst = t - since;
        }
        usleep(50000);
    }
    PQfinish(c);
    return NULL;
}

/* ---- runs ---- */

static bool run_final(PGconn *c, const char *run_id)
{
    return query_long(c,
                      "SELECT count(*) FROM sluice_runs WHERE id = $1 AND status NOT IN "
                      "('queued', 'running')",
                      run_id) == 1;
}

/* The field of the run's live progress (Redis), 0 when absent. */
static long progress_field(redisContext *rc, const char *run_id, const char *field)
{
    redisReply *r = redisCommand(rc, "HGET sluice:run:%s:progress %s", run_id, field);
    long v = 0;
    if (r && r->type == REDIS_REPLY_STRING)
        v = atol(r->str);
    else if (r && r->type == REDIS_REPLY_INTEGER)
        v = (long)r->integer;
    if (r)
        freeReplyObject(r);
    return v;
}

/* Waits until the run is final, then checks it against embedded mode and
 * its live progress for records handed to a stage twice. */
static void check_run(PGconn *c, const char *run_id, const char *table)
{
    const char *params[] = {run_id};
    PGresult *r = NULL;
    for (int i = 0; i < RUN_LIMIT * 10; i++) {
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
        fail_msg("run %s did not finish in %d s (logs in %s)", run_id, RUN_LIMIT, tmp);
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
    /* read = published + rejected (JOBS.md) */
    assert_int_equal(json_integer_value(json_object_get(got, "read")),
                     json_integer_value(json_object_get(got, "published")) +
                         json_integer_value(json_object_get(got, "rejected")));
    json_decref(got);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    assert_int_equal(query_long(c, sql, NULL), expected_rows);
    snprintf(sql, sizeof(sql), "SELECT count(DISTINCT store_id) FROM %s WHERE _sluice_run = $1",
             table);
    assert_int_equal(query_long(c, sql, run_id), expected_rows);
    assert_int_equal(
        query_long(c, "SELECT count(*) FROM sluice_rejected_rows WHERE run_id = $1", run_id),
        json_integer_value(json_object_get(expected, "rejected")));

    /* no record handed to a stage twice: what each stage took in is
     * exactly what the one before sent out (a graceful stop flushes its
     * counts; a record redelivered would be counted again). One exception,
     * the mock cluster's: it refuses every commit while its group
     * rebalances (a broker takes those of the current generation), so
     * what the other replicas processed from a change of the group until
     * they notice it comes again; then the stage logged the refusal. */
    redisContext *rc = redis_server_connect(&rs);
    assert_non_null(rc);
    long p_out = progress_field(rc, run_id, "parser.records_out");
    long m_in = progress_field(rc, run_id, "mapper.records_in");
    long m_out = progress_field(rc, run_id, "mapper.records_out");
    long m_rej = progress_field(rc, run_id, "mapper.rejected_out");
    long v_in = progress_field(rc, run_id, "validator.records_in");
    long v_out = progress_field(rc, run_id, "validator.records_out");
    long v_rej = progress_field(rc, run_id, "validator.rejected_out");
    long pub_in = progress_field(rc, run_id, "publisher.records_in");
    long pub_rej = progress_field(rc, run_id, "publisher.rejected_in");
    redisFree(rc);
    fprintf(stderr,
            "# %s progress: parser out %ld; mapper in %ld out %ld rejected %ld; validator in %ld "
            "out %ld rejected %ld; publisher in %ld rejected in %ld\n",
            table, p_out, m_in, m_out, m_rej, v_in, v_out, v_rej, pub_in, pub_rej);
    const struct {
        const char *stage;
        long in, before;
    } links[] = {
        {"parser", p_out, (long)json_integer_value(json_object_get(expected, "read"))},
        {"mapper", m_in, p_out},
        {"validator", v_in, m_out},
        {"publisher", pub_in, v_out},
        {"publisher", pub_rej, m_rej + v_rej},
    };
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        if (links[i].in < links[i].before)
            fail_msg("run %s: sluice-%s took in %ld records of %ld: lost (logs in %s)", run_id,
                     links[i].stage, links[i].in, links[i].before, tmp);
        if (links[i].in == links[i].before)
            continue;
        /* the stage, or one before it (a fetcher given its ticket again
         * announces the file again: the parser then reads it twice) */
        const char *refused = NULL;
        for (int k = 0; k < NSTAGES && !refused; k++) {
            if (shell("grep -q 'could not commit' %s/%s.*.log", tmp, stages[k]) == 0)
                refused = stages[k];
            if (!strcmp(stages[k], links[i].stage))
                break;
        }
        if (!refused)
            fail_msg("run %s: sluice-%s took in %ld records of %ld: %ld twice, and no commit was "
                     "refused up to it (logs in %s)",
                     run_id, links[i].stage, links[i].in, links[i].before,
                     links[i].in - links[i].before, tmp);
        fprintf(stderr,
                "# run %s: %ld records handed to sluice-%s twice, after commits the mock "
                "refused during a rebalance (sluice-%s)\n",
                run_id, links[i].in - links[i].before, links[i].stage, refused);
        redelivered += links[i].in - links[i].before;
    }
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    /* as test_crash: enough partitions that no consumer falls behind the
     * mock's ~5 MiB; two of tickets and files for the two replicas */
    static const char *const topics[] = {
        "sluice.tickets:2",
        "sluice.files:2",
        "sluice.records.raw:16",
        "sluice.records.mapped:16",
        "sluice.records.valid:16",
        "sluice.records.rejected:4",
        "sluice.runs:4",
        "sluice.dead:1",
        NULL,
    };
    /* The mock cluster, unlike a broker, waits session.timeout.ms - 1 s
     * for the members to rejoin after any change of the group (a broker
     * goes on once every member has): a 4 s session, so a handover takes
     * about 3 s here. A member that stopped without leaving the group
     * would hold its partitions a session longer (7 s or more). A
     * heartbeat each 500 ms tells the others of a rebalance sooner. */
    if (dist_env_start("rolling", topics, "session.timeout.ms=4000,heartbeat.interval.ms=500"))
        return -1;
    int port = pg_server_free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(gw_base, sizeof(gw_base), "http://127.0.0.1:%d", port);
    setenv("SLUICE_HTTP_ADDR", addr, 1);
    setenv("SLUICE_ADMIN_TOKEN", ADMIN, 1);

    /* two replicas of every stage, one scheduler, one gateway */
    for (int s = 0; s < NSTAGES; s++)
        for (int k = 0; k < 2; k++)
            if (start_proc(stages[s], &gen[s]) < 0)
                return -1;
    if (start_proc("scheduler", &gen[NSTAGES]) < 0 || start_proc("gateway", &gen[NSTAGES + 1]) < 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    atomic_store(&watch_stop, true);
    int bad = 0;
    for (int i = 0; i < nprocs; i++) {
        if (svc_stop(procs[i].pid, procs[i].name))
            bad = 1;
        procs[i].pid = 0;
    }
    int rc = dist_env_stop(bad || keep);
    return bad ? -1 : rc;
}

/* ---- the test ---- */

/* Restarts one replica of stage s while the run goes through it: SIGTERM,
 * exit 0 within the grace period, the other replica's partitions again
 * within HANDOVER, a replacement with partitions. */
static void roll_stage(int s, double *took, double *handover, double *joined)
{
    int a = find_proc(stages[s], 0), b = find_proc(stages[s], 1);
    assert_true(a >= 0 && b >= 0);
    int seen = log_count(b, "partitions assigned");
    double t0 = now_s();
    *took = term_proc(a);
    /* it finished what it held and committed it before leaving */
    if (log_count(a, "could not commit") > 0 || log_count(a, "message in hand is done") != 1)
        fail_msg("sluice-%s (%s.log) did not commit before it left (logs in %s)", stages[s],
                 procs[a].logname, tmp);
    *handover = wait_log(b, "partitions assigned", seen, 15000, t0);
    if (*handover < 0 || *handover * 1000 > HANDOVER)
        fail_msg("sluice-%s (%s.log) did not get the partitions of the stopped replica within "
                 "%d ms (%.1f s; logs in %s)",
                 stages[s], procs[b].logname, HANDOVER, *handover, tmp);
    /* the replacement a moment later: with the mock, each change of the
     * group holds every member for the rebalance delay (see setup) */
    usleep(1000000);
    int c = start_proc(stages[s], &gen[s]);
    assert_true(c >= 0);
    double t1 = now_s();
    *joined = wait_log(c, "partitions assigned", 0, 30000, t1);
    if (*joined < 0)
        fail_msg("the new sluice-%s (%s.log) got no partitions in 30 s (logs in %s)", stages[s],
                 procs[c].logname, tmp);
    fprintf(stderr,
            "# %s: handed over in %.2f s, the replacement had partitions %.2f s after start\n",
            stages[s], *handover, *joined);
}

static void test_rolling_restart(void **state)
{
    (void)state;
    keep = true;
    /* every replica has its partitions before the first run */
    for (int i = 0; i < nprocs; i++) {
        if (!strcmp(procs[i].name, "scheduler") || !strcmp(procs[i].name, "gateway"))
            continue;
        if (wait_log(i, "partitions assigned", 0, 30000, now_s()) < 0)
            fail_msg("sluice-%s (%s.log) got no partitions in 30 s (logs in %s)", procs[i].name,
                     procs[i].logname, tmp);
    }
    PGconn *c = connect_pg();
    atomic_store(&watch_stop, false);
    assert_int_equal(pthread_create(&watcher, NULL, watch_main, NULL), 0);

    char run_ids[NSTAGES][64], table[NSTAGES][32];
    double took[NSTAGES + 2] = {0}, handover[NSTAGES] = {0}, joined[NSTAGES] = {0};
    bool running_at_term[NSTAGES];
    double t_start = now_s();
    for (int s = 0; s < NSTAGES; s++) {
        snprintf(table[s], sizeof(table[s]), "rolling_%s", stages[s]);
        write_job(table[s]);
        submit_run(table[s], run_ids[s]);
        /* the fetcher and the parser get their message at once; the
         * later stages once rows arrive at the publishers */
        if (s >= MAPPER)
            for (int k = 0; k < 600; k++) {
                long got =
                    query_long(c, "SELECT staged + rejected FROM sluice_progress WHERE run_id = $1",
                               run_ids[s]);
                if (got >= NROWS / 20 || run_final(c, run_ids[s]))
                    break;
                usleep(20000);
            }
        else
            usleep(s == PARSER ? 300000 : 50000);
        running_at_term[s] = !run_final(c, run_ids[s]);
        fprintf(stderr, "# rolling sluice-%s (run %s %s)\n", stages[s], run_ids[s],
                running_at_term[s] ? "in progress" : "already final");
        roll_stage(s, &took[s], &handover[s], &joined[s]);
    }
    /* the scheduler and the gateway: exit 0 within the grace period, and
     * their replacements serve */
    const char *others[2] = {"scheduler", "gateway"};
    for (int k = 0; k < 2; k++) {
        int i = find_proc(others[k], 0);
        assert_true(i >= 0);
        if (k == 1) {
            /* a request in progress when the gateway gets SIGTERM: a job
             * document of 120 KB uploaded at 60 KB/s; it must be answered */
            assert_int_equal(shell("(cat %s/rolling_embedded.json; head -c 120000 /dev/zero | tr "
                                   "'\\0' ' ') > %s/slow.json",
                                   tmp, tmp),
                             0);
            assert_int_equal(shell("curl -s -o /dev/null -w '%%{http_code}' --limit-rate 60k "
                                   "-H 'Authorization: Bearer %s' -H 'Content-Type: "
                                   "application/json' --data-binary @%s/slow.json "
                                   "%s/v1/jobs > %s/slow.code 2>&1 &",
                                   ADMIN, tmp, gw_base, tmp),
                             0);
            usleep(700000);
        }
        took[NSTAGES + k] = term_proc(i);
        if (k == 1) {
            char code[16] = "";
            for (int t = 0; t < 100 && !code[0]; t++) {
                char path[128];
                snprintf(path, sizeof(path), "%s/slow.code", tmp);
                FILE *f = fopen(path, "r");
                if (f) {
                    if (!fgets(code, sizeof(code), f))
                        code[0] = '\0';
                    fclose(f);
                }
                if (!code[0])
                    usleep(100000);
            }
            fprintf(stderr, "# the request in progress at the gateway's SIGTERM: HTTP %s\n", code);
            assert_string_equal(code, "201");
            /* and it was answered after the gateway began to stop */
            assert_int_equal(shell("awk '/stopping: finishing/ {s = 1} s && /POST \\/v1\\/jobs "
                                   "-> 201/ {f = 1} END {exit !f}' %s/%s.log",
                                   tmp, procs[i].logname),
                             0);
        }
        int n = start_proc(others[k], &gen[NSTAGES + k]);
        assert_true(n >= 0);
        if (k == 1) {
            int ok = -1;
            for (int t = 0; t < 100 && ok != 0; t++) {
                ok = shell("curl -sf -o /dev/null --max-time 1 %s/healthz", gw_base);
                if (ok)
                    usleep(100000);
            }
            assert_int_equal(ok, 0);
        } else {
            assert_true(wait_log(n, "started", 0, 15000, now_s()) >= 0);
        }
    }
    /* a run through the fleet of replacements alone */
    char last_run[64];
    write_job("rolling_after");
    submit_run("rolling_after", last_run);

    for (int s = 0; s < NSTAGES; s++)
        check_run(c, run_ids[s], table[s]);
    check_run(c, last_run, "rolling_after");
    double total = now_s() - t_start;
    atomic_store(&watch_stop, true);
    pthread_join(watcher, NULL);

    fprintf(stderr, "# SIGTERM to exit (s):");
    for (int s = 0; s < NSTAGES; s++)
        fprintf(stderr, " %s %.3f%s", stages[s], took[s], running_at_term[s] ? "" : " (idle)");
    fprintf(stderr, " scheduler %.3f gateway %.3f\n", took[NSTAGES], took[NSTAGES + 1]);
    fprintf(stderr, "# handover (s):");
    for (int s = 0; s < NSTAGES; s++)
        fprintf(stderr, " %s %.2f/%.2f", stages[s], handover[s], joined[s]);
    fprintf(stderr,
            "\n# longest time without a row recorded while runs were on: %.2f s; "
            "all runs final %.1f s after the first\n",
            watch_worst, total);
    fprintf(stderr, "# records handed to a stage twice (refused commits of the mock): %ld\n",
            redelivered);
    if (watch_worst * 1000 > STALL_MS)
        fail_msg("no row was recorded for %.1f s while runs were in progress (logs in %s)",
                 watch_worst, tmp);

    /* nothing in the dead-letter topic */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b '%s' -t sluice.dead -o beginning -e -q -f 'x\\n' 2>/dev/null | wc -l",
             km.bootstrap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    long dead = -1;
    assert_int_equal(fscanf(p, "%ld", &dead), 1);
    pclose(p);
    assert_int_equal(dead, 0);
    /* a consumer that fell behind the broker would have been reset */
    assert_int_not_equal(shell("grep -il 'offset reset\\|out of range' %s/*.log", tmp), 0);
    /* a second signal: exit at once with 128 + the signal, whatever the
     * first one started (SIGTERM and SIGINT: both are delivered) */
    int x = start_proc("mapper", &gen[MAPPER]);
    assert_true(x >= 0);
    assert_true(wait_log(x, "started:", 0, 15000, now_s()) >= 0);
    double t0 = now_s();
    kill(procs[x].pid, SIGTERM);
    kill(procs[x].pid, SIGINT);
    int st = 0;
    assert_int_equal(waitpid(procs[x].pid, &st, 0), procs[x].pid);
    procs[x].pid = 0;
    fprintf(stderr, "# SIGTERM and SIGINT at once: exit status %d after %.3f s\n",
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, now_s() - t0);
    assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 130 || WEXITSTATUS(st) == 143));
    assert_true(now_s() - t0 < 1.0);
    PQfinish(c);
    keep = false;
}

/* ---- the stage runner alone: a stop in the middle of a batch ---- */

static atomic_bool stop_flag;
static int stop_seen;

static int stop_process(void *state, const char *topic, struct sl_msg *in, struct sl_emitter *em)
{
    (void)state, (void)topic, (void)in, (void)em;
    if (++stop_seen == 1)
        atomic_store(&stop_flag, true); /* SIGTERM, as the first record is processed */
    return 0;
}

static const char *const stop_inputs[] = {"records.mapped", NULL};
static const struct sl_stage stop_stage = {
    .name = "stoptest",
    .inputs = stop_inputs,
    .process = stop_process,
};

/* Sends n records of one key (one partition: one batch, one Kafka message). */
static void send_one_batch(struct sl_bus *bus, int n)
{
    for (int i = 0; i < n; i++) {
        struct sl_msg *m =
            sl_msg_new(SL_MSG_RECORD, "00000000-0000-4000-8000-000000000001", "stoptest", 1);
        assert_non_null(m);
        m->u.rec.row = (uint64_t)i + 1;
        m->key = sl_arena_strdup(&m->arena, "one key");
        assert_int_equal(sl_bus_send(bus, "records.mapped", m), 0);
    }
    assert_int_equal(bus->ops->flush(bus, 10000), 0);
}

/* A runner stopped as it processes the first record of a batch of 300
 * still processes the other 299 (then commits the batch), and not the next
 * batch: the next consumer of the group gets that one, and only that. */
static void test_stop_finishes_the_batch_in_hand(void **state)
{
    (void)state;
    keep = true;
    char err[512] = "";
    struct sl_kafka_conf kc = {.brokers = km.bootstrap,
                               .topic_prefix = "stoptest.",
                               /* linger: each batch one message set even on a busy
                                * machine (flush() sends it at once) */
                               .config = "session.timeout.ms=4000,heartbeat.interval.ms=500,"
                                         "linger.ms=2000",
                               .client_id = "stoptest"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    assert_non_null(bus);
    send_one_batch(bus, 300);
    send_one_batch(bus, 200);
    struct sl_stage_runner *r =
        sl_stage_runner_new(&stop_stage, bus, "g-stop", NULL, err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(sl_stage_runner_run(r, &stop_flag, err, sizeof(err)), 0);
    fprintf(stderr, "# stopped at the first record of a batch of 300: processed %d\n", stop_seen);
    assert_int_equal(stop_seen, 300);
    sl_stage_runner_destroy(r); /* leaves the group */

    /* the next consumer: the second batch, once */
    const char *topics[] = {"records.mapped"};
    struct sl_consumer *c = bus->ops->subscribe(bus, "g-stop", topics, 1, err, sizeof(err));
    assert_non_null(c);
    int got = 0;
    double until = now_s() + 15;
    while (now_s() < until) {
        struct sl_msg *m = NULL;
        int rc = bus->ops->poll(c, &m, NULL, 200);
        if (rc == SL_ERR_TIMEOUT) {
            if (got == 200)
                break;
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(m->u.rec.row, (uint64_t)got + 1); /* from the second batch's start */
        sl_msg_unref(m);
        got++;
    }
    assert_int_equal(got, 200);
    assert_int_equal(bus->ops->commit(c), 0);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
    keep = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_finishes_the_batch_in_hand),
        cmocka_unit_test(test_rolling_restart),
    };
    if (getenv("SLUICE_TEST_FILTER")) /* e.g. "test_stop*" */
        cmocka_set_test_filter(getenv("SLUICE_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
