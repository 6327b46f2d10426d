/*
 * Stage test of the fetcher: a ticket in on tickets; the run's file out on
 * files with a FETCHED event on runs, or a SKIPPED or FAILED event
 * (stage_harness.h), with the local state store holding the last
 * successful SHA-256.
 *
 * Covers a missing source (FAILED naming the path), the hash and size of a
 * fetched file, skip_unchanged (SKIPPED when the state holds the same
 * SHA-256, not when it differs or the option is off), --force, and the
 * ticket's input overriding source.url.
 */
#include "stage_harness.h"

#define JOB(url, opts)                                                                             \
    "{\"name\":\"fetchjob\",\"source\":{\"url\":\"" url "\"},"                                     \
    "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"                          \
    "\"id\":{\"type\":\"text\"}}},"                                                                \
    "\"mapping\":{\"id\":\"id\"}" opts "}"

static const char csv[] = "id\nA\nB\n";

static struct sh *start(void **state, const char *job)
{
    static const char *const topics[] = {SL_TOPIC_FILES, SL_TOPIC_RUNS, NULL};
    struct sh *h = *state;
    sh_start(h, &sl_stage_fetcher, job, topics);
    return h;
}

static void send_ticket(struct sh *h, bool force, const char *input)
{
    struct sl_msg *t = sh_msg(h, SL_MSG_TICKET);
    t->u.ticket.trigger = "test";
    t->u.ticket.force = force;
    t->u.ticket.scheduled_at = sl_now_us();
    t->u.ticket.input = input ? sl_arena_strdup(&t->arena, input) : NULL;
    sh_send(h, SL_TOPIC_TICKETS, t);
}

/* Writes the source file into the job's directory; its hash into sha. */
static char *write_source(struct sh *h, const char *name, const char *data, char sha[65])
{
    char *path = sh_write(h->dir, name, data, strlen(data));
    uint64_t bytes = 0;
    assert_int_equal(sl_sha256_file(path, sha, &bytes), 0);
    assert_int_equal(bytes, strlen(data));
    return path;
}

/* Expects FETCHED then the FILE of path with sha. */
static void expect_fetched(struct sh *h, const char *path, const char *sha, uint64_t bytes)
{
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    if (m->u.ev.kind != SL_EV_FETCHED)
        fail_msg("expected FETCHED, got %s (%s)", sl_run_event_kind_str(m->u.ev.kind),
                 m->u.ev.reason ? m->u.ev.reason : "");
    assert_string_equal(m->u.ev.stage, "fetcher");
    assert_string_equal(m->u.ev.sha256, sha);
    assert_int_equal(m->u.ev.bytes, bytes);
    assert_true(m->u.ev.at > 0);
    m = sh_next(h, SL_TOPIC_FILES);
    assert_int_equal(m->kind, SL_MSG_FILE);
    assert_string_equal(m->run_id, SH_RUN_ID);
    assert_string_equal(m->job_id, h->job->id);
    assert_string_equal(m->u.file.sha256, sha);
    assert_int_equal(m->u.file.bytes, bytes);
    assert_non_null(m->u.file.blob);
    /* the blob is the file, or a copy of it */
    char sha2[65];
    uint64_t b2 = 0;
    assert_int_equal(sl_sha256_file(m->u.file.blob, sha2, &b2), 0);
    assert_string_equal(sha2, sha);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    assert_string_equal(m->u.file.file_name, base);
}

static void test_missing_file_fails_naming_the_path(void **state)
{
    struct sh *h = start(state, JOB("nosuch.csv", ""));
    send_ticket(h, false, NULL);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    if (m->u.ev.kind != SL_EV_FAILED)
        fail_msg("expected FAILED, got %s", sl_run_event_kind_str(m->u.ev.kind));
    assert_non_null(m->u.ev.reason);
    if (!strstr(m->u.ev.reason, "nosuch.csv"))
        fail_msg("the reason '%s' does not name the file", m->u.ev.reason);
    sh_expect_none(h, SL_MSG_FILE, 0);
}

static void test_fetches_with_hash_and_size(void **state)
{
    struct sh *h = start(state, JOB("in.csv", ""));
    char sha[65];
    char *path = write_source(h, "in.csv", csv, sha);
    send_ticket(h, false, NULL);
    expect_fetched(h, path, sha, strlen(csv));
    free(path);
}

static void test_skip_unchanged(void **state)
{
    struct sh *h = start(state, JOB("in.csv", ""));
    char sha[65];
    char *path = write_source(h, "in.csv", csv, sha);
    assert_int_equal(h->st->ops->set_last_sha(h->st, h->job->id, sha), 0);
    send_ticket(h, false, NULL);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    if (m->u.ev.kind != SL_EV_SKIPPED)
        fail_msg("expected SKIPPED, got %s", sl_run_event_kind_str(m->u.ev.kind));
    assert_string_equal(m->u.ev.sha256, sha);
    assert_int_equal(m->u.ev.bytes, strlen(csv));
    assert_non_null(m->u.ev.reason);
    sh_expect_none(h, SL_MSG_FILE, 0);
    free(path);
}

static void test_changed_file_is_fetched(void **state)
{
    struct sh *h = start(state, JOB("in.csv", ""));
    char sha[65], old[65];
    char *path = write_source(h, "in.csv", "id\nold\n", old);
    assert_int_equal(h->st->ops->set_last_sha(h->st, h->job->id, old), 0);
    free(path);
    path = write_source(h, "in.csv", csv, sha);
    send_ticket(h, false, NULL);
    expect_fetched(h, path, sha, strlen(csv));
    free(path);
}

static void test_force_overrides_skip(void **state)
{
    struct sh *h = start(state, JOB("in.csv", ""));
    char sha[65];
    char *path = write_source(h, "in.csv", csv, sha);
    assert_int_equal(h->st->ops->set_last_sha(h->st, h->job->id, sha), 0);
    send_ticket(h, true, NULL);
    expect_fetched(h, path, sha, strlen(csv));
    free(path);
}

static void test_skip_unchanged_off(void **state)
{
    struct sh *h = start(state, JOB("in.csv", ",\"options\":{\"skip_unchanged\":false}"));
    char sha[65];
    char *path = write_source(h, "in.csv", csv, sha);
    assert_int_equal(h->st->ops->set_last_sha(h->st, h->job->id, sha), 0);
    send_ticket(h, false, NULL);
    expect_fetched(h, path, sha, strlen(csv));
    free(path);
}

static void test_input_overrides_url(void **state)
{
    struct sh *h = start(state, JOB("nosuch.csv", ""));
    char sha[65];
    char *path = write_source(h, "other.csv", "id\nZ\n", sha);
    send_ticket(h, false, path); /* absolute */
    expect_fetched(h, path, sha, 5);
    free(path);
}

static void test_file_url(void **state)
{
    struct sh *h = *state;
    /* the URL needs the directory, which sh_start makes: write the job then */
    char dir[] = "/tmp/sluice-fetch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char job[1024];
    snprintf(job, sizeof(job), JOB("file://%s/in.csv", ""), dir);
    char sha[65];
    char *path = sh_write(dir, "in.csv", csv, strlen(csv));
    uint64_t bytes;
    assert_int_equal(sl_sha256_file(path, sha, &bytes), 0);
    start(state, job);
    send_ticket(h, false, NULL);
    expect_fetched(h, path, sha, strlen(csv));
    unlink(path);
    rmdir(dir);
    free(path);
}

static void test_remote_scheme_fails_clearly(void **state)
{
    struct sh *h = start(state, JOB("s3://bucket/x.csv", ""));
    send_ticket(h, false, NULL);
    struct sl_msg *m = sh_next(h, SL_TOPIC_RUNS);
    assert_int_equal(m->u.ev.kind, SL_EV_FAILED);
    assert_non_null(m->u.ev.reason);
    assert_true(m->u.ev.reason[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_missing_file_fails_naming_the_path),
        SH_TEST(test_fetches_with_hash_and_size),
        SH_TEST(test_skip_unchanged),
        SH_TEST(test_changed_file_is_fetched),
        SH_TEST(test_force_overrides_skip),
        SH_TEST(test_skip_unchanged_off),
        SH_TEST(test_input_overrides_url),
        SH_TEST(test_file_url),
        SH_TEST(test_remote_scheme_fails_clearly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
