/*
 * Integration test of the publisher stage (publisher.c) holding thousands of
 * runs at once against a real PostgreSQL (pg_server.h) with a low
 * max_connections, as the gateway's webhooks make them (a run of every
 * delivery, a few records each).
 *
 * The stage is driven through its process() and flush() callbacks on this
 * thread, its FINAL events going to an in-process bus the test watches, with
 * the services' postgres sink and ledger. 2,000 runs arrive interleaved: every
 * FETCHED first, then the records of all runs round-robin (some rejected,
 * some redelivered), then every SEALED. Checks: the publisher's connections
 * (application_name sluice in pg_stat_activity) never exceed its bound of
 * open runs plus the idle pool, every run ends final exactly once with the
 * right status and counts in sluice_runs, every valid record is in the
 * destination table once, no staging table is left, and closed connections
 * were reused from the pool. Also times opening a sink on a new connection
 * and on a pooled one.
 */
#include "pg_server.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "sluice/bus.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/msg.h"
#include "sluice/pg.h"
#include "sluice/sink.h"
#include "sluice/stage.h"
#include "sluice/state.h"

#define NRUNS 2000
/* the publisher's bound: MAX_OPEN_RUNS runs of two connections each, and
 * the idle pool */
#define MAX_CONNS (2 * 16 + SL_PG_POOL_MAX)
#define SHA       "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

#define JOB                                                                                        \
    "{\"name\":\"hooks\",\"source\":{\"url\":\"in.csv\"},"                                         \
    "\"target\":{\"object\":\"hooks\",\"key\":[\"id\"],\"attributes\":{"                           \
    "\"id\":{\"type\":\"text\"},\"n\":{\"type\":\"integer\"}}},"                                   \
    "\"mapping\":{\"id\":\"id\",\"n\":\"n\"},"                                                     \
    "\"destination\":{\"type\":\"postgres\",\"table\":\"hook_items\"}}"

static struct pg_server srv;
static PGconn *db; /* the test's own connection (application_name test) */
static char state_dir[64];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long query_num(const char *sql)
{
    PGresult *res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQerrorMessage(db));
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    long long n = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return n;
}

/* The publisher's connections now. */
static long long publisher_conns(void)
{
    return query_num("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice'");
}

static int group_setup(void **state)
{
    (void)state;
    if (pg_server_start(&srv)) {
        print_error("postgresql: %s\n", srv.err);
        return -1;
    }
    /* low enough that a publisher holding every run's connections fails */
    if (pg_server_restart_with(&srv, "max_connections = 45\n")) {
        print_error("postgresql: %s\n", srv.err);
        pg_server_stop(&srv);
        return -1;
    }
    char ci[400], err[512] = "";
    snprintf(ci, sizeof(ci), "%s application_name=test", srv.conninfo);
    db = PQconnectdb(ci);
    if (PQstatus(db) != CONNECTION_OK || sl_control_migrate(db, err, sizeof(err))) {
        print_error("postgresql: %s%s\n", PQerrorMessage(db), err);
        PQfinish(db);
        db = NULL;
        pg_server_stop(&srv);
        return -1;
    }
    snprintf(state_dir, sizeof(state_dir), "/tmp/sluice-pubruns-XXXXXX");
    if (!mkdtemp(state_dir))
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sl_pg_pool_clear();
    PQfinish(db);
    pg_server_stop(&srv);
    if (state_dir[0])
        nftw(state_dir, pg_server_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* The services' outputs (service.c): the postgres sink and ledger. */
static struct sl_sink *open_sink(const struct sl_job *job, const char *run_id,
                                 const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    return sl_sink_postgres_open(env->destination_url, job, run_id, errbuf, errsz);
}

static struct sl_ledger *open_ledger(const struct sl_job *job, const char *run_id,
                                     const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    return sl_ledger_postgres_open(env->control_url, job, run_id, "webhook", errbuf, errsz);
}

struct pub {
    struct sl_job *job; /* owned by jobs */
    struct sl_jobs *jobs;
    struct sl_state *st;
    struct sl_stage_env env;
    struct sl_bus *bus;
    struct sl_consumer *watch; /* the runs topic: the FINAL events */
    struct sl_emitter em;
    void *state;
    unsigned long long processed;
    long long max_conns;
};

static void pub_start(struct pub *p)
{
    char err[512] = "";
    memset(p, 0, sizeof(*p));
    p->job = sl_job_load_json(JOB, strlen(JOB), NULL, err, sizeof(err));
    if (!p->job)
        fail_msg("job: %s", err);
    assert_non_null(p->jobs = sl_jobs_single_new(p->job));
    if (!(p->st = sl_state_local_new(state_dir, err, sizeof(err))))
        fail_msg("state: %s", err);
    p->env = (struct sl_stage_env){
        .jobs = p->jobs,
        .st = p->st,
        .destination_url = srv.conninfo,
        .control_url = srv.conninfo,
        .open_sink = open_sink,
        .open_ledger = open_ledger,
    };
    assert_non_null(p->bus = sl_bus_inproc_new(4 * NRUNS));
    static const char *const topics[] = {SL_TOPIC_RUNS, NULL};
    if (!(p->watch = p->bus->ops->subscribe(p->bus, "test", topics, 1, err, sizeof(err))))
        fail_msg("subscribe: %s", err);
    p->em = (struct sl_emitter){.bus = p->bus, .stage = "publisher"};
    if (sl_stage_publisher.init(&p->state, &p->env, err, sizeof(err)))
        fail_msg("init: %s", err);
}

static void pub_stop(struct pub *p)
{
    sl_stage_publisher.destroy(p->state);
    struct sl_msg *m;
    while (p->bus->ops->poll(p->watch, &m, NULL, 0) == 0)
        sl_msg_unref(m);
    p->bus->ops->unsubscribe(p->watch);
    sl_bus_destroy(p->bus);
    sl_state_destroy(p->st);
    sl_jobs_destroy(p->jobs);
}

/* Processes m as the runner would (flushing every 1000 messages) and
 * samples the publisher's connections now and then; m is released. */
static void pub_process(struct pub *p, const char *topic, struct sl_msg *m)
{
    int rc = sl_stage_publisher.process(p->state, topic, m, &p->em);
    if (rc)
        print_error("run %s: %s\n", m->run_id, sl_err_str(rc));
    assert_int_equal(rc, 0);
    sl_msg_unref(m);
    if (++p->processed % 1000 == 0)
        assert_int_equal(sl_stage_publisher.flush(p->state, &p->em), 0);
    if (p->processed % 50 == 0) {
        long long n = publisher_conns();
        if (n > p->max_conns)
            p->max_conns = n;
    }
}

static struct sl_msg *event(struct pub *p, const char *run_id, enum sl_run_event_kind kind)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_RUN_EVENT, run_id, p->job->id, 0);
    assert_non_null(m);
    m->u.ev.kind = kind;
    m->u.ev.stage = "test";
    m->u.ev.at = sl_now_us();
    return m;
}

/* Row row of run i: valid, or rejected (a type error in n). */
static struct sl_msg *row_msg(struct pub *p, const char *run_id, int i, uint64_t row, bool rejected)
{
    char id[32], n[16];
    snprintf(id, sizeof(id), "r%d-%llu", i, (unsigned long long)row);
    snprintf(n, sizeof(n), rejected ? "x%d" : "%d", i);
    struct sl_msg *m =
        sl_msg_new(rejected ? SL_MSG_REJECTION : SL_MSG_RECORD, run_id, p->job->id, 0);
    assert_non_null(m);
    m->u.rec.row = row;
    assert_int_equal(sl_msg_add_src(m, "id", id, strlen(id)), 0);
    assert_int_equal(sl_msg_add_src(m, "n", n, strlen(n)), 0);
    assert_int_equal(sl_msg_add_attr(m, "id", id), 0);
    assert_int_equal(sl_msg_add_attr(m, "n", n), 0);
    m->u.rec.key = m->key = sl_arena_strdup(&m->arena, id);
    if (rejected)
        assert_int_equal(sl_msg_add_problem(m, "n", "type", "not an integer", n), 0);
    return m;
}

/* Run i has 1 to 3 rows; every seventh run's last row is rejected. */
static int rows_of(int i)
{
    return 1 + i % 3;
}

static bool rejected_row(int i, int row)
{
    return i % 7 == 0 && row == rows_of(i);
}

static void test_many_small_runs(void **state)
{
    (void)state;
    struct pub p;
    pub_start(&p);
    char run_id[NRUNS][40];
    long long valid = 0, rejected = 0;
    int64_t t0 = now_ms();
    for (int i = 0; i < NRUNS; i++) {
        snprintf(run_id[i], sizeof(run_id[i]), "hook-%04d", i);
        struct sl_msg *m = event(&p, run_id[i], SL_EV_FETCHED);
        memcpy(m->u.ev.sha256, SHA, 65);
        m->u.ev.bytes = 100;
        pub_process(&p, SL_TOPIC_RUNS, m);
    }
    int64_t t_fetched = now_ms();
    for (int row = 1; row <= 3; row++)
        for (int i = 0; i < NRUNS; i++) {
            if (row > rows_of(i))
                continue;
            bool rej = rejected_row(i, row);
            valid += !rej;
            rejected += rej;
            pub_process(&p, rej ? SL_TOPIC_REJECTED : SL_TOPIC_VALID,
                        row_msg(&p, run_id[i], i, (uint64_t)row, rej));
        }
    /* Kafka redelivers some: counted once */
    for (int i = 0; i < NRUNS; i += 5)
        pub_process(&p, rejected_row(i, 1) ? SL_TOPIC_REJECTED : SL_TOPIC_VALID,
                    row_msg(&p, run_id[i], i, 1, rejected_row(i, 1)));
    int64_t t_records = now_ms();
    static const char *cols[] = {"id", "n"};
    for (int i = 0; i < NRUNS; i++) {
        struct sl_msg *m = event(&p, run_id[i], SL_EV_SEALED);
        m->u.ev.record_count = (uint64_t)rows_of(i);
        m->u.ev.counts.read = (uint64_t)rows_of(i);
        m->u.ev.columns = cols;
        m->u.ev.ncolumns = 2;
        m->u.ev.delimiter = ',';
        pub_process(&p, SL_TOPIC_RUNS, m);
    }
    assert_int_equal(sl_stage_publisher.flush(p.state, &p.em), 0);
    int64_t t_end = now_ms();
    print_message("%d runs, %llu messages in %lld ms (fetched %lld, records %lld, seals %lld); "
                  "at most %lld connections (bound %d); %llu pooled connections reused\n",
                  NRUNS, p.processed, (long long)(t_end - t0), (long long)(t_fetched - t0),
                  (long long)(t_records - t_fetched), (long long)(t_end - t_records), p.max_conns,
                  MAX_CONNS, sl_pg_pool_reused());
    assert_true(p.max_conns > 0);
    assert_true(p.max_conns <= MAX_CONNS);
    assert_true(sl_pg_pool_reused() > 0);

    /* one FINAL each */
    int finals = 0;
    struct sl_msg *m;
    while (p.bus->ops->poll(p.watch, &m, NULL, 0) == 0) {
        if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_FINAL) {
            finals++;
            if (strcmp(m->u.ev.status, "succeeded") &&
                strcmp(m->u.ev.status, "completed_with_errors"))
                print_error("run %s: %s: %s\n", m->run_id, m->u.ev.status,
                            m->u.ev.reason ? m->u.ev.reason : "");
        }
        sl_msg_unref(m);
    }
    assert_int_equal(finals, NRUNS);
    pub_stop(&p);

    assert_int_equal(query_num("SELECT count(*) FROM sluice_runs WHERE id LIKE 'hook-%'"), NRUNS);
    assert_int_equal(query_num("SELECT count(*) FROM sluice_runs WHERE id LIKE 'hook-%' AND status "
                               "NOT IN ('succeeded', 'completed_with_errors')"),
                     0);
    assert_int_equal(query_num("SELECT count(*) FROM sluice_runs WHERE id LIKE 'hook-%' AND "
                               "status = 'completed_with_errors'"),
                     (NRUNS + 6) / 7);
    assert_int_equal(query_num("SELECT sum((counts->>'published')::bigint) FROM sluice_runs "
                               "WHERE id LIKE 'hook-%'"),
                     valid);
    assert_int_equal(query_num("SELECT sum((counts->>'rejected')::bigint) FROM sluice_runs "
                               "WHERE id LIKE 'hook-%'"),
                     rejected);
    /* each run's own counts add up: read = published + rejected = its rows */
    assert_int_equal(query_num("SELECT count(*) FROM sluice_runs WHERE id LIKE 'hook-%' AND "
                               "((counts->>'read')::bigint <> (counts->>'published')::bigint + "
                               "(counts->>'rejected')::bigint OR (counts->>'read')::bigint <> "
                               "1 + substr(id, 6)::int % 3 OR (counts->>'created')::bigint <> "
                               "(counts->>'published')::bigint)"),
                     0);
    assert_int_equal(query_num("SELECT count(*) FROM sluice_rejected_rows WHERE run_id LIKE "
                               "'hook-%'"),
                     rejected);
    assert_int_equal(query_num("SELECT count(*) FROM hook_items"), valid);
    assert_int_equal(query_num("SELECT count(DISTINCT id) FROM hook_items"), valid);
    assert_int_equal(query_num("SELECT count(*) FROM hook_items WHERE n::text <> "
                               "split_part(substr(id, 2), '-', 1)"),
                     0);
    assert_int_equal(query_num("SELECT count(*) FROM sluice_progress WHERE run_id LIKE 'hook-%' "
                               "AND NOT final"),
                     0);
    assert_int_equal(query_num("SELECT count(*) FROM pg_tables WHERE tablename LIKE "
                               "'\\_sluice\\_stage\\_%' OR tablename LIKE '\\_sluice\\_undo\\_%'"),
                     0);
}

/* What opening a sink costs on a new connection (connect, prepare the table
 * under the advisory lock, temporary tables, prepared statement) and on a
 * pooled one (nothing), beside a bare connection. Printed, not asserted. */
static void test_open_costs(void **state)
{
    (void)state;
    char err[512] = "";
    struct sl_job *job = sl_job_load_json(JOB, strlen(JOB), NULL, err, sizeof(err));
    assert_non_null(job);
    enum { N = 50 };
    int64_t t0 = now_ms();
    for (int i = 0; i < N; i++) {
        PGconn *c = sl_pg_connect(srv.conninfo, 10, err, sizeof(err));
        assert_non_null(c);
        PQclear(PQexec(c, "DISCARD ALL"));
        PQfinish(c);
    }
    int64_t t1 = now_ms();
    for (int i = 0; i < N; i++) {
        sl_pg_pool_clear();
        struct sl_sink *sk = sl_sink_postgres_open(srv.conninfo, job, "cost", err, sizeof(err));
        if (!sk)
            fail_msg("open: %s", err);
        sl_sink_destroy(sk);
    }
    int64_t t2 = now_ms();
    unsigned long long reused = sl_pg_pool_reused();
    for (int i = 0; i < N; i++) {
        struct sl_sink *sk = sl_sink_postgres_open(srv.conninfo, job, "cost", err, sizeof(err));
        if (!sk)
            fail_msg("open: %s", err);
        sl_sink_destroy(sk);
    }
    int64_t t3 = now_ms();
    assert_true(sl_pg_pool_reused() - reused >= N - 1);
    print_message("per open: connection + DISCARD ALL %.2f ms, new sink %.2f ms, pooled sink "
                  "%.2f ms\n",
                  (double)(t1 - t0) / N, (double)(t2 - t1) / N, (double)(t3 - t2) / N);
    sl_pg_pool_clear();
    sl_job_destroy(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_small_runs),
        cmocka_unit_test(test_open_costs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
