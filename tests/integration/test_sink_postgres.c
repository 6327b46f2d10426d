/*
 * Integration test of the PostgreSQL destination (sink_postgres.c) against a
 * real server started for the test (pg_server.h) and stopped in the group
 * teardown, also when an assertion fails.
 *
 * Covers: the table created with JOBS.md's column types and a unique index
 * on the key; upsert counts (created, updated, unchanged) over runs of the
 * same and of changed records; last_wins duplicates inside one batch;
 * allow_create false; append; mirror deleting what a later run lacks; a
 * failed run rolled back; an existing table (columns added, its primary key
 * used, repeated keys refused); identifiers with quotes, spaces and Unicode; values
 * with quotes, backslashes, newlines and Unicode round-tripping; an
 * unreachable server; 100,000 records in batches; and the publisher's way
 * (sync, finalize): rows applied as they come once the run is sealed, a run
 * failing after that taken back (upsert, mirror, allow_create false), and a
 * batch the table refuses (CHECK) failing the run and undoing its writes,
 * a first load inserting rows without comparing them, an unchanged re-run
 * checked before the seal instead of staged, and two publishers sharing a
 * run's staging table.
 */
#include "pg_server.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/msg.h"
#include "sluice/sink.h"

static struct pg_server srv;
static PGconn *db; /* the test's own connection, to look at the tables */

/* ---- helpers ------------------------------------------------------------ */

#define SIMPLE_JOB(table, opts)                                                                    \
    "{\"name\":\"pgjob\",\"source\":{\"url\":\"in.csv\"},"                                         \
    "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"                          \
    "\"id\":{\"type\":\"text\"},\"n\":{\"type\":\"integer\"},\"s\":{\"type\":\"text\"}}},"         \
    "\"mapping\":{\"id\":\"id\",\"n\":\"n\",\"s\":\"s\"},"                                         \
    "\"options\":{" opts "},"                                                                      \
    "\"destination\":{\"type\":\"postgres\",\"table\":\"" table "\"}}"

static struct sl_job *load(const char *json)
{
    char err[512] = "";
    struct sl_job *job = sl_job_load_json(json, strlen(json), NULL, err, sizeof(err));
    if (!job)
        print_error("job: %s\n", err);
    assert_non_null(job);
    return job;
}

/* One valid record with values[i] for job->attrs[i] (NULL: missing). */
static struct sl_msg *record(const struct sl_job *job, const char *run_id, uint64_t row,
                             const char *const *values)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, run_id, job->id, 0);
    assert_non_null(m);
    m->u.rec.row = row;
    for (size_t i = 0; i < job->nattrs; i++)
        assert_int_equal(sl_msg_add_attr(m, job->attrs[i].name, values[i]), 0);
    return m;
}

static struct sl_sink *open_sink(const struct sl_job *job, const char *run_id)
{
    char err[512] = "";
    struct sl_sink *sk = sl_sink_postgres_open(srv.conninfo, job, run_id, err, sizeof(err));
    if (!sk)
        print_error("open: %s\n", err);
    assert_non_null(sk);
    assert_non_null(sk->ops->counts);
    return sk;
}

/* Writes nrows rows of job->nattrs values each (flat) as run run_id and
 * finishes it with success; returns the sink's counts. */
static struct sl_counts run_rows(const struct sl_job *job, const char *run_id,
                                 const char *const *rows, size_t nrows)
{
    struct sl_sink *sk = open_sink(job, run_id);
    for (size_t r = 0; r < nrows; r++) {
        struct sl_msg *m = record(job, run_id, r + 1, rows + r * job->nattrs);
        /* a key seen before in the run is a duplicate, as the validator says */
        bool dup = false;
        for (size_t e = 0; e < r && job->nkey == 1 && !dup; e++) {
            const char *k = rows[e * job->nattrs + job->key_idx[0]];
            const char *v = rows[r * job->nattrs + job->key_idx[0]];
            dup = k && v && !strcmp(k, v);
        }
        enum sl_write_result res;
        int rc = sk->ops->write(sk, m, dup, &res);
        sl_msg_unref(m);
        if (rc)
            print_error("write: %s\n", sk->ops->last_error(sk));
        assert_int_equal(rc, 0);
    }
    char err[512] = "";
    int rc = sk->ops->finish(sk, true, err, sizeof(err));
    if (rc)
        print_error("finish: %s\n", err);
    assert_int_equal(rc, 0);
    struct sl_counts c = {0};
    sk->ops->counts(sk, &c);
    sl_sink_destroy(sk);
    return c;
}

static void expect_counts(struct sl_counts c, uint64_t created, uint64_t updated,
                          uint64_t unchanged, uint64_t not_created)
{
    assert_int_equal(c.created, created);
    assert_int_equal(c.updated, updated);
    assert_int_equal(c.unchanged, unchanged);
    assert_int_equal(c.not_created, not_created);
    assert_int_equal(c.published, created + updated + unchanged);
}

/* The one value of a query (text), or NULL for SQL NULL; caller frees. */
static char *query1(const char *sql)
{
    PGresult *res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    char *v = PQgetisnull(res, 0, 0) ? NULL : strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static void expect_query(const char *sql, const char *want)
{
    char *got = query1(sql);
    if (!want)
        assert_null(got);
    else if (!got)
        fail_msg("%s: NULL, want %s", sql, want);
    else
        assert_string_equal(got, want);
    free(got);
}

/* ---- setup -------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    if (pg_server_start(&srv)) {
        print_error("cannot start postgresql: %s\n", srv.err);
        return -1;
    }
    db = PQconnectdb(srv.conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        print_error("cannot connect: %s\n", PQerrorMessage(db));
        PQfinish(db);
        db = NULL;
        pg_server_stop(&srv);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (db)
        PQfinish(db);
    db = NULL;
    pg_server_stop(&srv);
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_create_table(void **state)
{
    (void)state;
    static const char json[] =
        "{\"name\":\"types\",\"source\":{\"url\":\"in.csv\"},"
        "\"target\":{\"object\":\"typed\",\"key\":[\"id\"],\"attributes\":{"
        "\"id\":{\"type\":\"text\"},\"n\":{\"type\":\"integer\"},"
        "\"price\":{\"type\":\"decimal\",\"scale\":2},\"ok\":{\"type\":\"boolean\"},"
        "\"d\":{\"type\":\"date\"},\"ts\":{\"type\":\"datetime\"},"
        "\"email\":{\"type\":\"email\"},\"phone\":{\"type\":\"phone\"},"
        "\"url\":{\"type\":\"url\"},\"cur\":{\"type\":\"currency\"},"
        "\"st\":{\"type\":\"enum\",\"values\":[\"open\",\"closed\"]}}},"
        "\"mapping\":{\"id\":\"a\",\"n\":\"b\",\"price\":\"c\",\"ok\":\"d\",\"d\":\"e\","
        "\"ts\":\"f\",\"email\":\"g\",\"phone\":\"h\",\"url\":\"i\",\"cur\":\"j\",\"st\":\"k\"},"
        "\"destination\":{\"type\":\"postgres\"}}";
    struct sl_job *job = load(json);
    const char *rows[] = {"S1",
                          "42",
                          "1234.50",
                          "true",
                          "2025-12-31",
                          "2025-12-31T23:00:00Z",
                          "a@example.com",
                          "+49301234567",
                          "https://example.com/x",
                          "EUR",
                          "open"};
    expect_counts(run_rows(job, "run-1", rows, 1), 1, 0, 0, 0);
    expect_query("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' "
                 "ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'typed'::regclass "
                 "AND attnum > 0 AND NOT attisdropped",
                 "id text, n bigint, price numeric, ok boolean, d date, "
                 "ts timestamp with time zone, email text, phone text, url text, "
                 "cur character(3), st text, _sluice_run text, _sluice_digest bigint");
    expect_query("SELECT string_agg(a.attname, ',') FROM pg_index i JOIN pg_attribute a ON "
                 "a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
                 "WHERE i.indrelid = 'typed'::regclass AND i.indisunique",
                 "id,_sluice_digest"); /* the digest INCLUDEd: read without the table */
    expect_query("SELECT format('%s|%s|%s|%s|%s|%s|%s|%s', n, price, ok, d, "
                 "ts AT TIME ZONE 'UTC', cur, st, _sluice_run) FROM typed",
                 "42|1234.50|t|2025-12-31|2025-12-31 23:00:00|EUR|open|run-1");
    /* a second open of the same job finds everything in place */
    expect_counts(run_rows(job, "run-2", rows, 1), 0, 0, 1, 0);
    expect_query("SELECT count(*) FROM pg_index WHERE indrelid = 'typed'::regclass", "1");
    sl_job_destroy(job);
}

static void test_upsert_counts(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("ups", ""));
    const char *run1[] = {"a", "1", "x", "b", "2", "y", "c", "3", NULL};
    expect_counts(run_rows(job, "run-1", run1, 3), 3, 0, 0, 0);
    expect_counts(run_rows(job, "run-2", run1, 3), 0, 0, 3, 0);
    const char *run3[] = {"a", "1", "x", "b", "20", "y", "c", "3", "now set", "d", NULL, NULL};
    expect_counts(run_rows(job, "run-3", run3, 4), 1, 2, 1, 0);
    expect_query("SELECT string_agg(format('%s=%s/%s', id, n, coalesce(s, '-')), ' ' "
                 "ORDER BY id) FROM ups",
                 "a=1/x b=20/y c=3/now set d=/-");
    /* unchanged rows were not rewritten: they still name the run that wrote them */
    expect_query("SELECT _sluice_run FROM ups WHERE id = 'a'", "run-1");
    sl_job_destroy(job);
}

static void test_last_wins_in_batch(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("dups", "\"duplicates\":\"last_wins\""));
    const char *run1[] = {"a", "1", "x", "b", "1", "x", "a", "2", "x", "a", "3", "x"};
    expect_counts(run_rows(job, "run-1", run1, 4), 2, 2, 0, 0);
    expect_query("SELECT string_agg(format('%s=%s', id, n), ' ' ORDER BY id) FROM dups", "a=3 b=1");
    const char *run2[] = {"a", "3", "x", "a", "3", "x", "b", "5", "x"};
    expect_counts(run_rows(job, "run-2", run2, 3), 0, 2, 1, 0);
    expect_query("SELECT string_agg(format('%s=%s', id, n), ' ' ORDER BY id) FROM dups", "a=3 b=5");
    sl_job_destroy(job);
}

static void test_allow_create_false(void **state)
{
    (void)state;
    struct sl_job *seed = load(SIMPLE_JOB("nocreate", ""));
    const char *run1[] = {"a", "1", "x", "b", "2", "y"};
    expect_counts(run_rows(seed, "run-1", run1, 2), 2, 0, 0, 0);
    struct sl_job *job =
        load(SIMPLE_JOB("nocreate", "\"allow_create\":false,\"duplicates\":\"last_wins\""));
    const char *run2[] = {"a", "1", "x", "b", "3", "y", "c", "4", "z", "c", "5", "z"};
    expect_counts(run_rows(job, "run-2", run2, 4), 0, 1, 1, 2);
    expect_query("SELECT string_agg(format('%s=%s', id, n), ' ' ORDER BY id) FROM nocreate",
                 "a=1 b=3");
    sl_job_destroy(job);
    sl_job_destroy(seed);
}

static void test_append(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("appended", "\"sync\":\"append\""));
    const char *rows[] = {"a", "1", "x", "a", "1", "x"};
    expect_counts(run_rows(job, "run-1", rows, 2), 2, 0, 0, 0);
    expect_counts(run_rows(job, "run-2", rows, 2), 2, 0, 0, 0);
    expect_query("SELECT count(*) FROM appended", "4");
    expect_query("SELECT count(*) FROM pg_index WHERE indrelid = 'appended'::regclass", "0");
    sl_job_destroy(job);
}

static void test_mirror(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("mirrored", "\"sync\":\"mirror\""));
    const char *run1[] = {"a", "1", "x", "b", "2", "y", "c", "3", "z"};
    expect_counts(run_rows(job, "run-1", run1, 3), 3, 0, 0, 0);

    /* a failed run neither writes nor deletes */
    struct sl_sink *sk = open_sink(job, "run-failed");
    const char *only[] = {"z", "9", "q"};
    struct sl_msg *m = record(job, "run-failed", 1, only);
    enum sl_write_result res;
    assert_int_equal(sk->ops->write(sk, m, false, &res), 0);
    sl_msg_unref(m);
    assert_int_equal(sk->ops->finish(sk, false, NULL, 0), 0);
    sl_sink_destroy(sk);
    expect_query("SELECT string_agg(id, ' ' ORDER BY id) FROM mirrored", "a b c");

    const char *run2[] = {"a", "1", "x", "c", "30", "z"};
    expect_counts(run_rows(job, "run-2", run2, 2), 0, 1, 1, 0);
    expect_query("SELECT string_agg(format('%s=%s', id, n), ' ' ORDER BY id) FROM mirrored",
                 "a=1 c=30");
    sl_job_destroy(job);
}

/* Committed batches are staged, not published: a run that fails after
 * commit() leaves the table as it was, and a redelivered row is staged once. */
static void test_failed_run_publishes_nothing(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("committed", ""));
    struct sl_sink *sk = open_sink(job, "run-1");
    const char *a[] = {"a", "1", "x"}, *b[] = {"b", "2", "y"};
    enum sl_write_result res;
    struct sl_msg *m = record(job, "run-1", 1, a);
    assert_int_equal(sk->ops->write(sk, m, false, &res), 0);
    sl_msg_unref(m);
    char err[256];
    assert_int_equal(sk->ops->commit(sk, err, sizeof(err)), 0);
    m = record(job, "run-1", 2, b);
    assert_int_equal(sk->ops->write(sk, m, false, &res), 0);
    sl_msg_unref(m);
    assert_int_equal(sk->ops->finish(sk, false, NULL, 0), 0);
    sl_sink_destroy(sk);
    expect_query("SELECT count(*) FROM committed", "0");
    expect_query("SELECT format('%s %s %s', final, failed, staged) FROM sluice_progress "
                 "WHERE run_id = 'run-1'",
                 "t t 2");
    sl_job_destroy(job);
}

static void exec_ok(const char *sql)
{
    PGresult *res = PQexec(db, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        print_error("%s: %s\n", sql, PQresultErrorMessage(res));
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
}

/* ---- the publisher's way: sync() and finalize() ------------------------- */

/* Writes rows [from, to) of rows (1-based source rows from+1..), dup[i] as
 * the validator flags them, and syncs them with facts fx (NULL: none). */
static struct sl_run_progress sync_rows(struct sl_sink *sk, const struct sl_job *job,
                                        const char *run_id, const char *const *rows,
                                        const bool *dup, size_t from, size_t to,
                                        const struct sl_run_facts *fx)
{
    for (size_t r = from; r < to; r++) {
        struct sl_msg *m = record(job, run_id, r + 1, rows + r * job->nattrs);
        enum sl_write_result res;
        int rc = sk->ops->write(sk, m, dup && dup[r], &res);
        sl_msg_unref(m);
        assert_int_equal(rc, 0);
    }
    struct sl_run_progress pr;
    char err[512] = "";
    int rc = sk->ops->sync(sk, fx, NULL, 0, &pr, err, sizeof(err));
    if (rc)
        print_error("sync: %s\n", err);
    assert_int_equal(rc, 0);
    return pr;
}

static const struct sl_run_facts sealed4 = {.fetched = true, .sealed = true, .sealed_count = 4};

#define ROWS_OF(t)                                                                                 \
    "SELECT string_agg(format('%s=%s/%s', id, n, _sluice_run), ' ' ORDER BY id) FROM " t

/* Once the run is sealed, rows are applied as they come: what was staged
 * before the seal first, then each batch; a key written earlier in the run
 * (last_wins) counts as an update; the run's counts add up. */
static void test_applied_after_seal(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("sealed", "\"duplicates\":\"last_wins\""));
    const char *seed[] = {"a", "1", "x", "b", "2", "y"};
    expect_counts(run_rows(job, "run-1", seed, 2), 2, 0, 0, 0);

    struct sl_sink *sk = open_sink(job, "run-2");
    const char *rows[] = {"a", "10", "x", "c", "3", "z", "d", "4", "w", "a", "11", "x"};
    const bool dup[] = {false, false, false, true};
    struct sl_run_progress pr = sync_rows(sk, job, "run-2", rows, dup, 0, 2, NULL);
    assert_false(pr.f.sealed);
    expect_query(ROWS_OF("sealed"), "a=1/run-1 b=2/run-1"); /* staged, not applied */
    pr = sync_rows(sk, job, "run-2", rows, dup, 2, 2, &sealed4);
    assert_true(pr.f.sealed);
    expect_query(ROWS_OF("sealed"), "a=1/run-1 b=2/run-1");
    pr = sync_rows(sk, job, "run-2", rows, dup, 2, 3, NULL);
    /* the staged rows, then row 3 */
    expect_query(ROWS_OF("sealed"), "a=10/run-2 b=2/run-1 c=3/run-2 d=4/run-2");
    expect_query("SELECT to_regclass('_sluice_stage_' || left(encode(sha256('run-2'), 'hex'), 32))",
                 NULL);
    pr = sync_rows(sk, job, "run-2", rows, dup, 3, 4, NULL);
    assert_int_equal(pr.staged, 4);
    expect_query(ROWS_OF("sealed"), "a=11/run-2 b=2/run-1 c=3/run-2 d=4/run-2");

    struct sl_counts c = {0};
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    assert_false(pr.f.failed);
    expect_counts(c, 2, 2, 0, 0); /* c, d created; a changed, then replaced */
    assert_int_equal(c.duplicates, 1);
    expect_query("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_sluice\\_undo\\_%'", "0");
    sl_sink_destroy(sk);
    sl_job_destroy(job);
}

/* Rows the validator did not flag are inserted first (insert_absent): while
 * the table lacks the run's keys that is all; the flagged rows (last_wins)
 * are then compared and counted as before, within a batch and across
 * batches. A key the table has, or an unflagged key twice in a batch, makes
 * the run compare every row from then on, with the same counts. */
static void test_insert_first(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("first", "\"duplicates\":\"last_wins\""));
    struct sl_sink *sk = open_sink(job, "run-1");
    const char *rows[] = {"a", "1", "x", "b", "2", "x", "a", "3", "x",
                          "c", "4", "x", "b", "5", "x", "d", "6", "x"};
    const bool dup[] = {false, false, true, false, true, false};
    const struct sl_run_facts sealed6 = {.fetched = true, .sealed = true, .sealed_count = 6};
    /* staged with the seal, then the staging table and a batch, then a batch */
    sync_rows(sk, job, "run-1", rows, dup, 0, 2, &sealed6);
    expect_query(ROWS_OF("first"), NULL);
    sync_rows(sk, job, "run-1", rows, dup, 2, 4, NULL);
    expect_query(ROWS_OF("first"), "a=3/run-1 b=2/run-1 c=4/run-1");
    sync_rows(sk, job, "run-1", rows, dup, 4, 6, NULL);
    expect_query(ROWS_OF("first"), "a=3/run-1 b=5/run-1 c=4/run-1 d=6/run-1");
    struct sl_counts c = {0};
    struct sl_run_progress pr;
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    expect_counts(c, 4, 2, 0, 0); /* a and b replaced once each */
    assert_int_equal(c.duplicates, 2);
    sl_sink_destroy(sk);

    /* run-2: batch 1 is all new keys, batch 2 meets a key of run-1 */
    sk = open_sink(job, "run-2");
    const char *rows2[] = {"e", "7", "y", "f", "8",  "y", "a", "3",  "x",
                           "b", "9", "x", "g", "10", "y", "e", "11", "y"};
    const bool dup2[] = {false, false, false, false, false, true};
    sync_rows(sk, job, "run-2", rows2, dup2, 0, 0, &sealed6);
    sync_rows(sk, job, "run-2", rows2, dup2, 0, 2, NULL);
    sync_rows(sk, job, "run-2", rows2, dup2, 2, 6, NULL);
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    /* e f g created; b changed, e replaced; a unchanged */
    expect_counts(c, 3, 2, 1, 0);
    assert_int_equal(c.duplicates, 1);
    expect_query(ROWS_OF("first"), "a=3/run-1 b=9/run-2 c=4/run-1 d=6/run-1 e=11/run-2 "
                                   "f=8/run-2 g=10/run-2");
    sl_sink_destroy(sk);

    /* run-3: a key twice in one batch that the validator did not flag */
    exec_ok("TRUNCATE first");
    sk = open_sink(job, "run-3");
    const char *rows3[] = {"h", "1", "z", "h", "2", "z"};
    const struct sl_run_facts sealed2 = {.fetched = true, .sealed = true, .sealed_count = 2};
    sync_rows(sk, job, "run-3", rows3, NULL, 0, 0, &sealed2);
    sync_rows(sk, job, "run-3", rows3, NULL, 0, 2, NULL);
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    expect_counts(c, 1, 1, 0, 0);
    expect_query(ROWS_OF("first"), "h=2/run-3");
    sl_sink_destroy(sk);
    sl_job_destroy(job);
}

/* An unchanged re-run is found unchanged batch by batch (all_unchanged),
 * writing nothing, with the counts of comparing row by row: a key twice
 * counts its earlier row as a replaced duplicate. The first batch with a
 * change makes the run compare rows from then on. */
static void test_unchanged_rerun(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("same", "\"duplicates\":\"last_wins\""));
    const char *seed[] = {"a", "1", "x", "b", "2", "y", "c", "3", "z"};
    expect_counts(run_rows(job, "run-1", seed, 3), 3, 0, 0, 0);

    struct sl_sink *sk = open_sink(job, "run-2");
    const char *rows[] = {"a", "1", "x", "b", "2",  "y", "a", "1", "x",
                          "c", "3", "z", "b", "20", "y", "c", "3", "z"};
    const bool dup[] = {false, false, true, false, true, true};
    const struct sl_run_facts sealed6 = {.fetched = true, .sealed = true, .sealed_count = 6};
    sync_rows(sk, job, "run-2", rows, dup, 0, 0, &sealed6);
    sync_rows(sk, job, "run-2", rows, dup, 0, 3, NULL); /* a, b, a: unchanged */
    expect_query(ROWS_OF("same"), "a=1/run-1 b=2/run-1 c=3/run-1");
    sync_rows(sk, job, "run-2", rows, dup, 3, 6, NULL); /* c, then b changed, c again */
    expect_query(ROWS_OF("same"), "a=1/run-1 b=20/run-2 c=3/run-1");
    struct sl_counts c = {0};
    struct sl_run_progress pr;
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    /* a unchanged + a replaced; b changed; c unchanged + c replaced */
    expect_counts(c, 0, 3, 3, 0);
    assert_int_equal(c.duplicates, 2);
    sl_sink_destroy(sk);
    sl_job_destroy(job);
}

#define STAGE_OF(run)                                                                              \
    "SELECT to_regclass('_sluice_stage_' || left(encode(sha256('" run "'), 'hex'), 32))"

/* Before the seal, a batch of an unchanged re-run (duplicates reject) is
 * checked, not staged (check_unchanged): no staging table, counts kept in
 * the progress row; the first batch with a change is staged, and so is every
 * later one; the counts are those of applying everything at the seal. A run
 * that fails after unchanged batches counts nothing. */
static void test_unchanged_before_seal(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("early", ""));
    const char *seed[] = {"a", "1", "x", "b", "2", "y", "c", "3", "z", "d", "4", "w"};
    expect_counts(run_rows(job, "run-1", seed, 4), 4, 0, 0, 0);

    struct sl_sink *sk = open_sink(job, "run-2");
    const char *rows[] = {"a", "1", "x", "b", "2", "y", "c", "30", "z", "d", "4", "w"};
    struct sl_run_progress pr = sync_rows(sk, job, "run-2", rows, NULL, 0, 2, NULL);
    assert_false(pr.f.sealed);
    assert_int_equal(pr.staged, 2); /* recorded, for the run's completion */
    expect_query(STAGE_OF("run-2"), NULL);
    expect_query("SELECT format('%s/%s', published, unchanged) FROM sluice_progress "
                 "WHERE run_id = 'run-2'",
                 "2/2");
    sync_rows(sk, job, "run-2", rows, NULL, 2, 3, NULL); /* c changed: staged */
    expect_query(STAGE_OF("run-2"), "_sluice_stage_"
                                    "b9d17232a4c83d9928ee0d4e6fab81d3");
    pr = sync_rows(sk, job, "run-2", rows, NULL, 3, 4, &sealed4); /* d: staged too */
    assert_int_equal(pr.staged, 4);
    expect_query(ROWS_OF("early"), "a=1/run-1 b=2/run-1 c=3/run-1 d=4/run-1");
    struct sl_counts c = {0};
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    assert_false(pr.f.failed);
    expect_counts(c, 0, 1, 3, 0);
    expect_query(ROWS_OF("early"), "a=1/run-1 b=2/run-1 c=30/run-2 d=4/run-1");
    sl_sink_destroy(sk);

    /* run-3: unchanged batches, then the run fails: nothing counted */
    sk = open_sink(job, "run-3");
    const char *same[] = {"a", "1", "x", "b", "2", "y", "c", "30", "z", "d", "4", "w"};
    sync_rows(sk, job, "run-3", same, NULL, 0, 3, NULL);
    expect_query(STAGE_OF("run-3"), NULL);
    struct sl_run_facts failed = {.failed = true, .reason = "row 4: the file ends in a quote"};
    pr = sync_rows(sk, job, "run-3", same, NULL, 3, 3, &failed);
    assert_true(pr.f.failed);
    c = (struct sl_counts){0};
    assert_int_equal(sk->ops->finalize(sk, false, false, &pr, &c, err, sizeof(err)), 0);
    assert_true(pr.f.failed);
    expect_counts(c, 0, 0, 0, 0);
    expect_query("SELECT format('%s/%s/%s', final, published, unchanged) FROM sluice_progress "
                 "WHERE run_id = 'run-3'",
                 "t/0/0");
    expect_query(ROWS_OF("early"), "a=1/run-1 b=2/run-1 c=30/run-2 d=4/run-1");
    sl_sink_destroy(sk);
    sl_job_destroy(job);
}

/* Each row carries the digest of what sluice wrote (_sluice_digest); an
 * UPDATE by anyone else clears it (the _sluice_digest_guard trigger), so an
 * unchanged re-run takes a row whose digest is the row's own as unchanged
 * without reading the table (digest_check), and compares the others column
 * by column. A writer that says it is sluice (sluice.writing on) keeps the
 * digest: the re-run then trusts it, which shows that it does. */
static void test_digest(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("digested", ""));
    const char *rows[] = {"a", "1", "x", "b", "2", "y", "c", "3", "z", "d", "4", "w"};
    expect_counts(run_rows(job, "run-1", rows, 4), 4, 0, 0, 0);
    expect_query("SELECT count(DISTINCT _sluice_digest) FROM digested", "4");
    expect_query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'digested'::regclass "
                 "AND tgname = '_sluice_digest_guard'",
                 "1");
    exec_ok("UPDATE digested SET n = 20 WHERE id = 'b'"); /* someone else: cleared */
    exec_ok("UPDATE digested SET n = 4 WHERE id = 'd'");  /* the same value: cleared too */
    expect_query("SELECT string_agg(id, ',' ORDER BY id) FROM digested "
                 "WHERE _sluice_digest IS NULL",
                 "b,d");
    exec_ok("BEGIN; SET LOCAL sluice.writing = 'on'; "
            "UPDATE digested SET s = 'forged' WHERE id = 'c'; COMMIT");
    expect_query("SELECT count(*) FROM digested WHERE id = 'c' AND _sluice_digest IS NOT NULL",
                 "1");

    /* a batch a row: a, c: digests equal; d: compared, unchanged; b:
     * compared, changed, written back with its digest; c keeps what its
     * writer forged (in one batch with b it would have been compared) */
    struct sl_sink *sk = open_sink(job, "run-2");
    const char *order[] = {"a", "1", "x", "c", "3", "z", "d", "4", "w", "b", "2", "y"};
    for (size_t i = 0; i < 4; i++)
        sync_rows(sk, job, "run-2", order, NULL, i, i + 1, i == 3 ? &sealed4 : NULL);
    struct sl_counts c = {0};
    struct sl_run_progress pr;
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, true, false, &pr, &c, err, sizeof(err)), 0);
    sl_sink_destroy(sk);
    expect_counts(c, 0, 1, 3, 0);
    expect_query("SELECT string_agg(format('%s=%s/%s/%s', id, n, s, _sluice_run), ' ' "
                 "ORDER BY id) FROM digested",
                 "a=1/x/run-1 b=2/y/run-2 c=3/forged/run-1 d=4/w/run-1");
    expect_query("SELECT string_agg(id, ',' ORDER BY id) FROM digested "
                 "WHERE _sluice_digest IS NULL",
                 "d"); /* unchanged rows are not written, their digest not either */
    sl_job_destroy(job);
}

/* Two publishers share a run (each with its own sink and connection): the
 * staging table one of them created is applied and dropped by the other at
 * the seal; the first one neither applies it again in a later sync nor when
 * it finalizes the run. */
static void test_shared_run(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("shared", ""));
    struct sl_sink *a = open_sink(job, "run-s");
    struct sl_sink *b = open_sink(job, "run-s");
    const char *rows[] = {"a", "1", "x", "b", "2", "y", "c", "3", "z", "d", "4", "w"};
    sync_rows(a, job, "run-s", rows, NULL, 0, 2, NULL);     /* a creates the staging table */
    sync_rows(b, job, "run-s", rows, NULL, 2, 3, &sealed4); /* b stages into it: sealed */
    expect_query(STAGE_OF("run-s"), "_sluice_stage_"
                                    "d3f25dd5a02a969874fd9845de914fcb");
    sync_rows(a, job, "run-s", rows, NULL, 3, 4, NULL); /* applied, dropped */
    expect_query(STAGE_OF("run-s"), NULL);
    expect_query(ROWS_OF("shared"), "a=1/run-s b=2/run-s c=3/run-s d=4/run-s");
    struct sl_run_progress pr = sync_rows(b, job, "run-s", rows, NULL, 4, 4, NULL);
    assert_false(pr.f.failed);
    struct sl_counts c = {0};
    char err[512] = "";
    int rc = b->ops->finalize(b, true, false, &pr, &c, err, sizeof(err));
    if (rc)
        print_error("finalize: %s\n", err);
    assert_int_equal(rc, 0);
    assert_false(pr.f.failed);
    expect_counts(c, 4, 0, 0, 0);
    sl_sink_destroy(a);
    sl_sink_destroy(b);
    sl_job_destroy(job);
}

/* A run that fails after some of its rows were applied takes them back: the
 * table is as it was, down to the run that last wrote each row. */
static void test_failed_after_apply_is_undone(void **state)
{
    (void)state;
    const char *jobs[] = {SIMPLE_JOB("undone", ""), SIMPLE_JOB("undone", "\"sync\":\"mirror\""),
                          SIMPLE_JOB("undone", "\"allow_create\":false")};
    for (size_t k = 0; k < sizeof(jobs) / sizeof(jobs[0]); k++) {
        exec_ok("DROP TABLE IF EXISTS undone, sluice_progress, sluice_progress_rows");
        struct sl_job *seedjob = load(SIMPLE_JOB("undone", ""));
        const char *seed[] = {"a", "1", "x", "b", "2", "y", "e", "5", "v"};
        expect_counts(run_rows(seedjob, "run-1", seed, 3), 3, 0, 0, 0);
        sl_job_destroy(seedjob);
        struct sl_job *job = load(jobs[k]);
        char run_id[32];
        snprintf(run_id, sizeof(run_id), "run-f%zu", k);
        struct sl_sink *sk = open_sink(job, run_id);
        const char *rows[] = {"a", "10", "x", "b", "2", "y", "c", "3", "z", "a", "12", "x"};
        sync_rows(sk, job, run_id, rows, NULL, 0, 0, &sealed4);
        sync_rows(sk, job, run_id, rows, NULL, 0, 3, NULL);
        char *now = query1(ROWS_OF("undone"));
        assert_non_null(strstr(now, "a=10/run-f")); /* applied */
        free(now);
        struct sl_run_facts failed = {.failed = true, .reason = "the mapper gave up"};
        struct sl_run_progress pr = sync_rows(sk, job, run_id, rows, NULL, 3, 3, &failed);
        assert_true(pr.f.failed);
        struct sl_counts c = {0};
        char err[512] = "";
        assert_int_equal(sk->ops->finalize(sk, false, false, &pr, &c, err, sizeof(err)), 0);
        assert_true(pr.f.failed);
        assert_int_equal(c.published, 0);
        expect_query(ROWS_OF("undone"), "a=1/run-1 b=2/run-1 e=5/run-1");
        sl_sink_destroy(sk);
        sl_job_destroy(job);
    }
}

/* The destination refuses a batch after others were applied (a CHECK
 * constraint of the user's table): the run fails with the server's reason,
 * its later rows are only counted, and the table is as before the run. */
static void test_refused_after_apply(void **state)
{
    (void)state;
    exec_ok("CREATE TABLE checked (id text PRIMARY KEY, n bigint CHECK (n < 100), s text, "
            "_sluice_run text)");
    exec_ok("INSERT INTO checked VALUES ('a', 1, 'x', 'before')");
    struct sl_job *job = load(SIMPLE_JOB("checked", ""));
    struct sl_sink *sk = open_sink(job, "run-r");
    const char *rows[] = {"a", "10", "x", "b", "20", "y", "c", "500", "z", "d", "4", "w"};
    sync_rows(sk, job, "run-r", rows, NULL, 0, 0, &sealed4);
    sync_rows(sk, job, "run-r", rows, NULL, 0, 2, NULL);
    expect_query(ROWS_OF("checked"), "a=10/run-r b=20/run-r");
    struct sl_run_progress pr = sync_rows(sk, job, "run-r", rows, NULL, 2, 3, NULL);
    assert_true(pr.f.failed);
    assert_non_null(pr.f.reason);
    assert_non_null(strstr(pr.f.reason, "checked_n_check"));
    pr = sync_rows(sk, job, "run-r", rows, NULL, 3, 4, NULL);
    assert_int_equal(pr.staged, 4); /* counted, so that the run completes */
    expect_query(ROWS_OF("checked"), "a=10/run-r b=20/run-r");
    struct sl_counts c = {0};
    char err[512] = "";
    assert_int_equal(sk->ops->finalize(sk, false, false, &pr, &c, err, sizeof(err)), 0);
    assert_true(pr.f.failed);
    expect_query(ROWS_OF("checked"), "a=1/before");
    expect_query("SELECT format('%s %s %s', final, failed, published) FROM sluice_progress "
                 "WHERE run_id = 'run-r'",
                 "t t 0");
    sl_sink_destroy(sk);
    sl_job_destroy(job);

    /* the same refusal met by the first load's plain INSERT (insert_absent) */
    exec_ok("CREATE TABLE checked2 (id text PRIMARY KEY, n bigint CHECK (n < 100), s text, "
            "_sluice_run text)");
    job = load(SIMPLE_JOB("checked2", ""));
    sk = open_sink(job, "run-r2");
    sync_rows(sk, job, "run-r2", rows, NULL, 0, 0, &sealed4);
    sync_rows(sk, job, "run-r2", rows, NULL, 0, 2, NULL);
    expect_query(ROWS_OF("checked2"), "a=10/run-r2 b=20/run-r2");
    pr = sync_rows(sk, job, "run-r2", rows, NULL, 2, 4, NULL);
    assert_true(pr.f.failed);
    assert_non_null(strstr(pr.f.reason, "checked2_n_check"));
    assert_int_equal(pr.staged, 4);
    assert_int_equal(sk->ops->finalize(sk, false, false, &pr, &c, err, sizeof(err)), 0);
    assert_true(pr.f.failed);
    expect_query("SELECT count(*) FROM checked2", "0");
    sl_sink_destroy(sk);
    sl_job_destroy(job);
}

static void test_existing_table(void **state)
{
    (void)state;
    /* the user's own table: a primary key on the key, a column of its own,
     * an attribute column of another type, one attribute column missing */
    exec_ok("CREATE TABLE existing (id text PRIMARY KEY, n integer, "
            "note text NOT NULL DEFAULT 'mine')");
    exec_ok("INSERT INTO existing (id, n) VALUES ('a', 1)");
    struct sl_job *job = load(SIMPLE_JOB("existing", ""));
    const char *rows[] = {"a", "1", "x", "b", "2", "y"};
    expect_counts(run_rows(job, "run-1", rows, 2), 1, 1, 0, 0);
    expect_query("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' "
                 "ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'existing'::regclass "
                 "AND attnum > 0 AND NOT attisdropped",
                 "id text, n integer, note text, s text, _sluice_run text, _sluice_digest bigint");
    /* the primary key serves as the key's unique index: none added */
    expect_query("SELECT count(*) FROM pg_index WHERE indrelid = 'existing'::regclass", "1");
    expect_query("SELECT string_agg(format('%s=%s/%s/%s', id, n, s, note), ' ' ORDER BY id) "
                 "FROM existing",
                 "a=1/x/mine b=2/y/mine");
    /* the digest's guard is added too; an unchanged re-run finds the
     * digests through the primary key (and the rows: the key's index does
     * not include them) */
    expect_query("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'existing'::regclass "
                 "AND tgname = '_sluice_digest_guard'",
                 "1");
    expect_query("SELECT count(*) FROM existing WHERE _sluice_digest IS NOT NULL", "2");
    expect_counts(run_rows(job, "run-2", rows, 2), 0, 0, 2, 0);

    /* a table whose rows repeat the key cannot get its unique index */
    exec_ok("CREATE TABLE twice (id text, n bigint, s text)");
    exec_ok("INSERT INTO twice VALUES ('a', 1, 'x'), ('a', 2, 'y')");
    struct sl_job *job2 = load(SIMPLE_JOB("twice", ""));
    char err[512] = "";
    struct sl_sink *sk = sl_sink_postgres_open(srv.conninfo, job2, "run-1", err, sizeof(err));
    assert_null(sk);
    if (!strstr(err, "cannot prepare table twice at 127.0.0.1:") || !strstr(err, "unique index"))
        print_error("got: %s\n", err);
    assert_non_null(strstr(err, "cannot prepare table twice at 127.0.0.1:"));
    assert_non_null(strstr(err, "unique index"));
    sl_job_destroy(job2);
    sl_job_destroy(job);
}

static void replace(char **p, const char *s)
{
    free(*p);
    *p = strdup(s);
    assert_non_null(*p);
}

static void test_nasty_names(void **state)
{
    (void)state;
    /* the loader allows identifiers only; the sink must not rely on it */
    struct sl_job *job = load(SIMPLE_JOB("placeholder", ""));
    replace(&job->destination.table,
            "we\"ird ta'ble; DROP TABLE ups; -- \xc3\xbcn\xc3\xaf \xe8\xa1\xa8");
    replace(&job->attrs[2].name, "s \"q\" \xc3\xa9t\xc3\xa9");
    const char *rows[] = {"a", "1", "x", "b", "2", "y"};
    expect_counts(run_rows(job, "run-1", rows, 2), 2, 0, 0, 0);
    const char *rows2[] = {"a", "1", "x", "b", "2", "changed"};
    expect_counts(run_rows(job, "run-2", rows2, 2), 0, 1, 1, 0);
    expect_query("SELECT string_agg(\"s \"\"q\"\" \xc3\xa9t\xc3\xa9\", ' ' ORDER BY id) FROM "
                 "\"we\"\"ird ta'ble; DROP TABLE ups; -- \xc3\xbcn\xc3\xaf \xe8\xa1\xa8\"",
                 "x changed");
    expect_query("SELECT count(*) FROM ups", "4");
    sl_job_destroy(job);
}

static void test_values_round_trip(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("vals", ""));
    static const char *const nasty[] = {
        "it's \"quoted\"",
        "back\\slash \\N \\. \\\\",
        "line1\nline2\r\nline3\tcol",
        "\xc3\xbc\xc3\xb1\xc3\xaf\xc3\xa7\xc3\xb8"
        "d\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
        "\xe8\xa1\xa8",
        "'); DROP TABLE vals; --",
        "\\N",
    };
    size_t n = sizeof(nasty) / sizeof(nasty[0]);
    const char *rows[3 * 6];
    char ids[6][8];
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof(ids[i]), "k%zu", i);
        rows[3 * i] = ids[i];
        rows[3 * i + 1] = NULL;
        rows[3 * i + 2] = nasty[i];
    }
    expect_counts(run_rows(job, "run-1", rows, n), n, 0, 0, 0);
    for (size_t i = 0; i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT s FROM vals WHERE id = 'k%zu'", i);
        expect_query(sql, nasty[i]);
    }
    expect_query("SELECT count(*) FROM vals WHERE n IS NULL", "6");
    /* the same values again are unchanged */
    expect_counts(run_rows(job, "run-2", rows, n), 0, 0, n, 0);
    /* invalid UTF-8 cannot fail the batch: it becomes U+FFFD */
    const char *bad[] = {"bad", "1",
                         ("a\xff"
                          "b\xc3")};
    expect_counts(run_rows(job, "run-3", bad, 1), 1, 0, 0, 0);
    expect_query("SELECT s FROM vals WHERE id = 'bad'", "a\xef\xbf\xbd"
                                                        "b\xef\xbf\xbd");
    sl_job_destroy(job);
}

static void test_unreachable(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("nowhere", ""));
    int port = pg_server_free_port();
    char conninfo[128], err[512] = "", want[64];
    snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres connect_timeout=5",
             port);
    struct sl_sink *sk = sl_sink_postgres_open(conninfo, job, "run-1", err, sizeof(err));
    assert_null(sk);
    snprintf(want, sizeof(want), "could not connect to postgresql at 127.0.0.1:%d: ", port);
    if (strncmp(err, want, strlen(want)))
        print_error("got: %s\n", err);
    assert_true(strncmp(err, want, strlen(want)) == 0);
    assert_true(strlen(err) > strlen(want));

    /* a URI, too */
    snprintf(conninfo, sizeof(conninfo), "postgresql://user:secret@127.0.0.1:%d/db", port);
    sk = sl_sink_postgres_open(conninfo, job, "run-1", err, sizeof(err));
    assert_null(sk);
    assert_true(strncmp(err, want, strlen(want)) == 0);
    assert_null(strstr(err, "secret"));
    sl_job_destroy(job);
}

static void test_many_records(void **state)
{
    (void)state;
    struct sl_job *job = load(SIMPLE_JOB("many", ""));
    enum { N = 100000 };
    for (int pass = 0; pass < 2; pass++) {
        const char *run_id = pass ? "run-2" : "run-1";
        struct sl_sink *sk = open_sink(job, run_id);
        for (int i = 0; i < N; i++) {
            char id[16], n[16];
            snprintf(id, sizeof(id), "k%06d", i);
            /* the second pass changes every fourth record */
            snprintf(n, sizeof(n), "%d", pass && i % 4 == 0 ? -i - 1 : i);
            const char *vals[] = {id, n, "some text"};
            struct sl_msg *m = record(job, run_id, (uint64_t)i + 1, vals);
            enum sl_write_result res;
            int rc = sk->ops->write(sk, m, false, &res);
            sl_msg_unref(m);
            if (rc)
                print_error("write: %s\n", sk->ops->last_error(sk));
            assert_int_equal(rc, 0);
        }
        char err[512] = "";
        assert_int_equal(sk->ops->finish(sk, true, err, sizeof(err)), 0);
        struct sl_counts c = {0};
        sk->ops->counts(sk, &c);
        sl_sink_destroy(sk);
        if (pass)
            expect_counts(c, 0, N / 4, N - N / 4, 0);
        else
            expect_counts(c, N, 0, 0, 0);
    }
    expect_query("SELECT count(*) FROM many", "100000");
    expect_query("SELECT count(*) FROM many WHERE n < 0", "25000");
    sl_job_destroy(job);
}

/* Run ids repeat across tests ("run-1"): each test starts with no run
 * progress, as each real run has an id of its own. */
static int fresh_progress(void **state)
{
    (void)state;
    exec_ok("DROP TABLE IF EXISTS sluice_progress, sluice_progress_rows");
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_create_table, fresh_progress),
        cmocka_unit_test_setup(test_upsert_counts, fresh_progress),
        cmocka_unit_test_setup(test_last_wins_in_batch, fresh_progress),
        cmocka_unit_test_setup(test_unchanged_before_seal, fresh_progress),
        cmocka_unit_test_setup(test_shared_run, fresh_progress),
        cmocka_unit_test_setup(test_digest, fresh_progress),
        cmocka_unit_test_setup(test_allow_create_false, fresh_progress),
        cmocka_unit_test_setup(test_append, fresh_progress),
        cmocka_unit_test_setup(test_mirror, fresh_progress),
        cmocka_unit_test_setup(test_failed_run_publishes_nothing, fresh_progress),
        cmocka_unit_test_setup(test_applied_after_seal, fresh_progress),
        cmocka_unit_test_setup(test_insert_first, fresh_progress),
        cmocka_unit_test_setup(test_unchanged_rerun, fresh_progress),
        cmocka_unit_test_setup(test_failed_after_apply_is_undone, fresh_progress),
        cmocka_unit_test_setup(test_refused_after_apply, fresh_progress),
        cmocka_unit_test_setup(test_existing_table, fresh_progress),
        cmocka_unit_test_setup(test_nasty_names, fresh_progress),
        cmocka_unit_test_setup(test_values_round_trip, fresh_progress),
        cmocka_unit_test_setup(test_unreachable, fresh_progress),
        cmocka_unit_test_setup(test_many_records, fresh_progress),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
