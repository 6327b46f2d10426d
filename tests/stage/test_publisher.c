/*
 * Stage test of the publisher: valid records, rejections and run events in
 * (records.valid, records.rejected, runs); the sink file, the ledger's files
 * and one FINAL run event out (stage_harness.h), with a file sink and the
 * local ledger in the test's directory.
 *
 * Covers finalizing exactly once when published + rejected + not_created
 * reaches the sealed count, whichever comes first (the seal or the
 * records); a failed run (no sink file, run.json says failed); a skipped
 * run; allow_create false; last_wins duplicates counted as updates; and the
 * last-success hash kept only for runs that did not fail or skip.
 */
#include "stage_harness.h"

#define JOB(opts)                                                                                  \
    "{\"name\":\"pubjob\",\"source\":{\"url\":\"in.csv\"},"                                        \
    "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"                          \
    "\"id\":{\"type\":\"text\"},\"n\":{\"type\":\"integer\"}}},"                                   \
    "\"mapping\":{\"id\":\"id\",\"n\":\"n\"}" opts "}"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static struct sh *start(void **state, const char *job)
{
    static const char *const topics[] = {SL_TOPIC_RUNS, NULL};
    struct sh *h = *state;
    sh_start(h, &sl_stage_publisher, job, topics);
    return h;
}

static struct sl_msg *event(struct sh *h, enum sl_run_event_kind kind)
{
    struct sl_msg *m = sh_msg(h, SL_MSG_RUN_EVENT);
    m->u.ev.kind = kind;
    m->u.ev.stage = "test";
    m->u.ev.at = sl_now_us();
    return m;
}

static void send_fetched(struct sh *h)
{
    struct sl_msg *m = event(h, SL_EV_FETCHED);
    memcpy(m->u.ev.sha256, SHA, 65);
    m->u.ev.bytes = 42;
    sh_send(h, SL_TOPIC_RUNS, m);
}

static void send_sealed(struct sh *h, uint64_t count)
{
    static const char *cols[] = {"id", "n"};
    struct sl_msg *m = event(h, SL_EV_SEALED);
    m->u.ev.record_count = count;
    m->u.ev.counts.read = count;
    m->u.ev.columns = cols;
    m->u.ev.ncolumns = 2;
    m->u.ev.delimiter = ',';
    sh_send(h, SL_TOPIC_RUNS, m);
}

static void send_failed(struct sh *h, const char *reason)
{
    struct sl_msg *m = event(h, SL_EV_FAILED);
    m->u.ev.reason = reason;
    sh_send(h, SL_TOPIC_RUNS, m);
}

static struct sl_msg *record(struct sh *h, uint64_t row, const char *id, const char *n)
{
    static const char *const cols[] = {"id", "n"};
    const char *vals[] = {id, n};
    struct sl_msg *m = sh_row(h, row, cols, vals, 2);
    assert_int_equal(sl_msg_add_attr(m, "id", id), 0);
    assert_int_equal(sl_msg_add_attr(m, "n", n), 0);
    m->u.rec.key = m->key = sl_arena_strdup(&m->arena, id);
    return m;
}

static void send_valid(struct sh *h, uint64_t row, const char *id, const char *n, bool dup)
{
    struct sl_msg *m = record(h, row, id, n);
    m->u.rec.duplicate = dup;
    sh_send(h, SL_TOPIC_VALID, m);
}

static void send_rejected(struct sh *h, uint64_t row, const char *id, const char *n)
{
    struct sl_msg *m = record(h, row, id, n);
    m->kind = SL_MSG_REJECTION;
    assert_int_equal(sl_msg_add_problem(m, "n", "type", "'x' is not an integer", n), 0);
    sh_send(h, SL_TOPIC_REJECTED, m);
}

/* The FINAL event of the run, then nothing else final. */
static struct sl_msg *expect_final(struct sh *h, const char *status)
{
    struct sl_msg *m = sh_next_event_of(h, SL_EV_FINAL);
    assert_string_equal(m->run_id, SH_RUN_ID);
    assert_string_equal(m->u.ev.stage, "publisher");
    assert_non_null(m->u.ev.status);
    assert_string_equal(m->u.ev.status, status);
    sh_expect_none(h, SL_MSG_RUN_EVENT, SL_EV_FINAL);
    return m;
}

static char *out_file(struct sh *h, const char *name)
{
    char *p = sl_path_join(h->out_dir, name);
    assert_non_null(p);
    return p;
}

/* The run.json of the run: its "status" must be status. */
static void expect_run_json(struct sh *h, const char *status)
{
    char *p = out_file(h, "run.json");
    char *text = sh_read(p);
    if (!text) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s was not written", p);
        free(p);
        fail_msg("%s", msg);
    }
    json_error_t je;
    json_t *run = json_loads(text, 0, &je);
    assert_non_null(run);
    assert_string_equal(json_string_value(json_object_get(run, "status")), status);
    assert_string_equal(json_string_value(json_object_get(run, "run_id")), SH_RUN_ID);
    assert_string_equal(json_string_value(json_object_get(run, "job")), "pubjob");
    json_decref(run);
    free(text);
    free(p);
}

static void test_finalizes_once_when_complete(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_fetched(h);
    send_valid(h, 1, "A", "1", false);
    send_rejected(h, 2, "B", "x");
    send_valid(h, 3, "C", "3", false);
    send_sealed(h, 3);
    struct sl_msg *m = expect_final(h, "completed_with_errors");
    const struct sl_counts *c = &m->u.ev.counts;
    assert_int_equal(c->read, 3);
    assert_int_equal(c->published, 2);
    assert_int_equal(c->created, 2);
    assert_int_equal(c->updated, 0);
    assert_int_equal(c->rejected, 1);
    assert_int_equal(c->duplicates, 0);
    assert_int_equal(c->not_created, 0);
    assert_string_equal(m->u.ev.sha256, SHA);
    assert_int_equal(m->u.ev.bytes, 42);

    char *text = sh_read(h->sink_path);
    assert_non_null(text);
    assert_string_equal(text, "{\"id\":\"A\",\"n\":1}\n{\"id\":\"C\",\"n\":3}\n");
    free(text);
    char *p = out_file(h, "rejected.ndjson");
    text = sh_read(p);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"row\":2"));
    free(text);
    free(p);
    p = out_file(h, "errors.csv");
    text = sh_read(p);
    assert_non_null(text);
    assert_string_equal(text, "_row,_errors,id,n\r\n2,n: 'x' is not an integer,B,x\r\n");
    free(text);
    free(p);
    expect_run_json(h, "completed_with_errors");
    /* the hash of a run that was not failed or skipped is kept */
    char last[65];
    assert_int_equal(h->st->ops->get_last_sha(h->st, h->job->id, last), 0);
    assert_string_equal(last, SHA);
}

static void test_sealed_before_records(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_fetched(h);
    send_sealed(h, 2);
    send_valid(h, 1, "A", "1", false);
    /* one of two: not final yet */
    sh_expect_none(h, SL_MSG_RUN_EVENT, SL_EV_FINAL);
    send_valid(h, 2, "B", "2", false);
    struct sl_msg *m = expect_final(h, "succeeded");
    assert_int_equal(m->u.ev.counts.read, 2);
    assert_int_equal(m->u.ev.counts.published, 2);
    assert_true(sh_exists(h->sink_path));
    expect_run_json(h, "succeeded");
}

static void test_empty_run_succeeds(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_fetched(h);
    send_sealed(h, 0);
    struct sl_msg *m = expect_final(h, "succeeded");
    assert_int_equal(m->u.ev.counts.read, 0);
    char *text = sh_read(h->sink_path);
    assert_non_null(text);
    assert_string_equal(text, "");
    free(text);
}

static void test_failed_run(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_failed(h, "cannot read source /x/in.csv: No such file or directory");
    struct sl_msg *m = expect_final(h, "failed");
    assert_non_null(m->u.ev.reason);
    assert_string_equal(m->u.ev.reason, "cannot read source /x/in.csv: No such file or directory");
    assert_int_equal(m->u.ev.counts.published, 0);
    assert_false(sh_exists(h->sink_path));
    char tmp[200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", h->sink_path);
    assert_false(sh_exists(tmp));
    char last[65];
    assert_int_equal(h->st->ops->get_last_sha(h->st, h->job->id, last), SL_ERR_NOTFOUND);
    /* JOBS.md: a failed run still has its run.json, status failed */
    expect_run_json(h, "failed");
}

static void test_failed_after_records(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_fetched(h);
    send_valid(h, 1, "A", "1", false);
    send_failed(h, "in.csv: line 9: boom");
    struct sl_msg *m = expect_final(h, "failed");
    /* JOBS.md: failed means nothing published; the counts must not claim
     * the record written before the failure */
    assert_int_equal(m->u.ev.counts.published, 0);
    assert_int_equal(m->u.ev.counts.created, 0);
    assert_false(sh_exists(h->sink_path));
    char tmp[200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", h->sink_path);
    assert_false(sh_exists(tmp));
    char last[65];
    assert_int_equal(h->st->ops->get_last_sha(h->st, h->job->id, last), SL_ERR_NOTFOUND);
    expect_run_json(h, "failed");
    /* stragglers of a final run are dropped: no second FINAL */
    send_valid(h, 2, "B", "2", false);
    send_sealed(h, 2);
    sh_expect_none(h, SL_MSG_RUN_EVENT, SL_EV_FINAL);
}

static void test_skipped_run(void **state)
{
    struct sh *h = start(state, JOB(""));
    struct sl_msg *ev = event(h, SL_EV_SKIPPED);
    memcpy(ev->u.ev.sha256, SHA, 65);
    ev->u.ev.bytes = 42;
    ev->u.ev.reason = "the source file is unchanged since the last successful run";
    sh_send(h, SL_TOPIC_RUNS, ev);
    struct sl_msg *m = expect_final(h, "skipped");
    assert_non_null(m->u.ev.reason);
    assert_string_equal(m->u.ev.sha256, SHA);
    assert_int_equal(m->u.ev.counts.read, 0);
    assert_false(sh_exists(h->sink_path));
    char last[65];
    assert_int_equal(h->st->ops->get_last_sha(h->st, h->job->id, last), SL_ERR_NOTFOUND);
    expect_run_json(h, "skipped");
}

static void test_allow_create_false(void **state)
{
    struct sh *h = start(state, JOB(",\"options\":{\"allow_create\":false}"));
    send_fetched(h);
    send_valid(h, 1, "A", "1", false);
    send_valid(h, 2, "B", "2", false);
    send_rejected(h, 3, "C", "x");
    send_sealed(h, 3);
    struct sl_msg *m = expect_final(h, "completed_with_errors");
    assert_int_equal(m->u.ev.counts.not_created, 2);
    assert_int_equal(m->u.ev.counts.published, 0);
    assert_int_equal(m->u.ev.counts.created, 0);
    assert_int_equal(m->u.ev.counts.rejected, 1);
}

static void test_last_wins_counts_updates(void **state)
{
    struct sh *h = start(state, JOB(",\"options\":{\"duplicates\":\"last_wins\"}"));
    send_fetched(h);
    send_valid(h, 1, "A", "1", false);
    send_valid(h, 2, "A", "2", true);
    send_sealed(h, 2);
    struct sl_msg *m = expect_final(h, "succeeded");
    assert_int_equal(m->u.ev.counts.published, 2);
    assert_int_equal(m->u.ev.counts.created, 1);
    assert_int_equal(m->u.ev.counts.updated, 1);
    assert_int_equal(m->u.ev.counts.duplicates, 1);
}

static void test_duplicate_rejections_are_counted(void **state)
{
    struct sh *h = start(state, JOB(""));
    send_fetched(h);
    send_valid(h, 1, "A", "1", false);
    struct sl_msg *r = record(h, 2, "A", "2");
    r->kind = SL_MSG_REJECTION;
    assert_int_equal(
        sl_msg_add_problem(r, "id", "duplicate_key", "duplicate key: 'A' was already seen", "A"),
        0);
    sh_send(h, SL_TOPIC_REJECTED, r);
    send_sealed(h, 2);
    struct sl_msg *m = expect_final(h, "completed_with_errors");
    assert_int_equal(m->u.ev.counts.rejected, 1);
    assert_int_equal(m->u.ev.counts.duplicates, 1);
}

static void test_two_runs_interleaved(void **state)
{
    struct sh *h = start(state, JOB(""));
    /* run-1 and run-2 of the same job, their messages mixed */
    send_fetched(h);
    struct sl_msg *m2 = sl_msg_new(SL_MSG_RUN_EVENT, "run-2", h->job->id, 0);
    m2->u.ev.kind = SL_EV_FAILED;
    m2->u.ev.reason = "gone";
    send_valid(h, 1, "A", "1", false);
    sh_send(h, SL_TOPIC_RUNS, m2);
    send_sealed(h, 1);
    int finals = 0;
    bool saw1 = false, saw2 = false;
    while (finals < 2) {
        struct sl_msg *m = sh_next_event_of(h, SL_EV_FINAL);
        if (!strcmp(m->run_id, SH_RUN_ID)) {
            assert_string_equal(m->u.ev.status, "succeeded");
            saw1 = true;
        } else {
            assert_string_equal(m->run_id, "run-2");
            assert_string_equal(m->u.ev.status, "failed");
            saw2 = true;
        }
        finals++;
    }
    assert_true(saw1 && saw2);
    sh_expect_none(h, SL_MSG_RUN_EVENT, SL_EV_FINAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_finalizes_once_when_complete),
        SH_TEST(test_sealed_before_records),
        SH_TEST(test_empty_run_succeeds),
        SH_TEST(test_failed_run),
        SH_TEST(test_failed_after_records),
        SH_TEST(test_skipped_run),
        SH_TEST(test_allow_create_false),
        SH_TEST(test_last_wins_counts_updates),
        SH_TEST(test_duplicate_rejections_are_counted),
        SH_TEST(test_two_runs_interleaved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
