/*
 * Stage test of the validator: mapped rows in on records.mapped, valid
 * records out on records.valid and rejections on records.rejected, through
 * the in-process bus (stage_harness.h) with a local state store for the
 * run's keys.
 *
 * Covers required, default, normalization by type, the problems of a row
 * all reported at once, and duplicate keys: reject (a later row is rejected
 * with duplicate_key) versus last_wins (passed on, marked duplicate), a row
 * with other problems never claiming its key, a redelivered row (the same
 * row again) being no duplicate of itself, and outputs leaving in the order
 * their rows came although their keys are looked up in batches, also with a
 * store that answers later (seen_keys_ask, as Redis) and sometimes fails.
 */
#include "stage_harness.h"

#include <pthread.h>

#define JOB_HEAD                                                                                   \
    "{\"name\":\"valjob\",\"source\":{\"url\":\"in.csv\"},"                                        \
    "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"                          \
    "\"id\":{\"type\":\"text\",\"max_length\":8},"                                                 \
    "\"name\":{\"type\":\"text\",\"required\":true},"                                              \
    "\"country\":{\"type\":\"text\",\"default\":\"DE\"},"                                          \
    "\"amount\":{\"type\":\"decimal\",\"scale\":2},"                                               \
    "\"active\":{\"type\":\"boolean\"},"                                                           \
    "\"email\":{\"type\":\"email\"},"                                                              \
    "\"qty\":{\"type\":\"integer\",\"max\":10}}},"                                                 \
    "\"mapping\":{\"id\":\"id\",\"name\":\"name\",\"country\":\"country\",\"amount\":"             \
    "\"amount\",\"active\":\"active\",\"email\":\"email\",\"qty\":\"qty\"}"

static const char job_reject[] = JOB_HEAD "}";
static const char job_last_wins[] = JOB_HEAD ",\"options\":{\"duplicates\":\"last_wins\"}}";

static const char *const attr_names[] = {"id",     "name",  "country", "amount",
                                         "active", "email", "qty"};

/* A mapped row: the seven attributes in job order (NULL: missing). */
static struct sl_msg *mapped(struct sh *h, uint64_t n, const char *id, const char *name,
                             const char *country, const char *amount, const char *active,
                             const char *email, const char *qty)
{
    const char *vals[] = {id, name, country, amount, active, email, qty};
    static const char *const src[] = {"ID"};
    const char *srcv[] = {id};
    struct sl_msg *m = sh_row(h, n, src, srcv, 1);
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(sl_msg_add_attr(m, attr_names[i], vals[i]), 0);
    return m;
}

static struct sh *start(void **state, const char *job)
{
    static const char *const topics[] = {SL_TOPIC_VALID, SL_TOPIC_REJECTED, NULL};
    struct sh *h = *state;
    sh_start(h, &sl_stage_validator, job, topics);
    return h;
}

static void test_normalizes_and_defaults(void **state)
{
    struct sh *h = start(state, job_reject);
    sh_send(h, SL_TOPIC_MAPPED,
            mapped(h, 1, "S1", "Ann", NULL, "1234.5", "yes", " Ann@Example.COM ", " 7 "));
    struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->kind, SL_MSG_RECORD);
    assert_int_equal(m->u.rec.row, 1);
    assert_int_equal(m->u.rec.nprob, 0);
    assert_string_equal(sh_attr(m, "id"), "S1");
    assert_string_equal(sh_attr(m, "country"), "DE"); /* the default */
    assert_string_equal(sh_attr(m, "amount"), "1234.50");
    assert_string_equal(sh_attr(m, "active"), "true");
    assert_string_equal(sh_attr(m, "email"), "Ann@example.com");
    assert_string_equal(sh_attr(m, "qty"), "7");
    assert_non_null(m->u.rec.key);
    assert_string_equal(m->u.rec.key, "S1");
    assert_false(m->u.rec.duplicate);
    assert_int_equal(m->u.rec.nsrc, 0); /* valid records travel without their source row */
}

static void test_required(void **state)
{
    struct sh *h = start(state, job_reject);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", NULL, "AT", NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 3, "S2", "", NULL, NULL, NULL, NULL, NULL));
    for (uint64_t row = 2; row <= 3; row++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_REJECTED);
        assert_int_equal(m->kind, SL_MSG_REJECTION);
        assert_int_equal(m->u.rec.row, row);
        assert_int_equal(m->u.rec.nprob, 1);
        assert_string_equal(m->u.rec.prob[0].attribute, "name");
        assert_string_equal(m->u.rec.prob[0].code, "required");
        assert_null(m->u.rec.prob[0].value);
        /* the source row travels with the rejection */
        assert_int_equal(m->u.rec.nsrc, 1);
        assert_string_equal(m->u.rec.src[0].name, "ID");
    }
}

static void test_every_problem_of_a_row(void **state)
{
    struct sh *h = start(state, job_reject);
    struct sl_msg *in = mapped(h, 4, "S1234567890", NULL, NULL, "x1", "maybe", NULL, "11");
    /* a problem the mapper found already (the attribute stays missing) */
    assert_int_equal(sl_msg_add_problem(in, "email", "format", "lower: bad", "E"), 0);
    sh_send(h, SL_TOPIC_MAPPED, in);
    struct sl_msg *m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 4);
    assert_true(sh_problem(m, "id", "too_long") >= 0);
    assert_true(sh_problem(m, "name", "required") >= 0);
    assert_true(sh_problem(m, "amount", "type") >= 0);
    assert_true(sh_problem(m, "active", "type") >= 0);
    assert_true(sh_problem(m, "email", "format") >= 0);
    assert_true(sh_problem(m, "qty", "out_of_range") >= 0);
    assert_int_equal(m->u.rec.nprob, 6);
    /* in the job's attribute order, with the offending values */
    static const char *const order[] = {"id", "name", "amount", "active", "email", "qty"};
    for (uint32_t i = 0; i < 6; i++)
        assert_string_equal(m->u.rec.prob[i].attribute, order[i]);
    int a = sh_problem(m, "amount", "type");
    assert_string_equal(m->u.rec.prob[a].value, "x1");
    int q = sh_problem(m, "qty", "out_of_range");
    assert_string_equal(m->u.rec.prob[q].value, "11");
    for (uint32_t i = 0; i < m->u.rec.nprob; i++)
        assert_true(m->u.rec.prob[i].message && m->u.rec.prob[i].message[0]);
}

static void test_duplicate_reject(void **state)
{
    struct sh *h = start(state, job_reject);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S2", "b", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 3, "S1", "c", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 4, "S1", "d", NULL, NULL, NULL, NULL, NULL));
    const char *topic;
    for (uint64_t row = 1; row <= 4; row++) {
        struct sl_msg *m = sh_next_within(h, &topic, SH_WAIT_MS);
        assert_non_null(m);
        assert_int_equal(m->u.rec.row, row);
        if (row <= 2) {
            assert_string_equal(topic, SL_TOPIC_VALID);
            assert_false(m->u.rec.duplicate);
        } else {
            assert_string_equal(topic, SL_TOPIC_REJECTED);
            assert_int_equal(m->u.rec.nprob, 1);
            int d = sh_problem(m, "id", "duplicate_key");
            assert_int_equal(d, 0);
            assert_string_equal(m->u.rec.prob[0].value, "S1");
        }
        /* valid and rejected rows alike go by their key on the bus */
        assert_non_null(m->key);
        assert_string_equal(m->key, row == 2 ? "S2" : "S1");
    }
}

static void test_duplicate_last_wins(void **state)
{
    struct sh *h = start(state, job_last_wins);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", "b", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 3, "S1", "c", NULL, NULL, NULL, NULL, NULL));
    for (uint64_t row = 1; row <= 3; row++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
        assert_int_equal(m->u.rec.row, row);
        assert_int_equal(m->u.rec.nprob, 0);
        assert_int_equal(m->u.rec.duplicate, row > 1);
        assert_string_equal(sh_attr(m, "name"), row == 1 ? "a" : row == 2 ? "b" : "c");
    }
}

static void test_rejected_row_does_not_claim_its_key(void **state)
{
    struct sh *h = start(state, job_reject);
    /* S1 first comes with a bad amount: rejected for that alone */
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, "oops", NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", "b", NULL, "1", NULL, NULL, NULL));
    struct sl_msg *m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 1);
    assert_int_equal(m->u.rec.nprob, 1);
    assert_true(sh_problem(m, "amount", "type") >= 0);
    /* so the next S1 is the first valid one, not a duplicate */
    m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->u.rec.row, 2);
    assert_false(m->u.rec.duplicate);
}

static void test_rejected_row_does_not_claim_its_key_last_wins(void **state)
{
    struct sh *h = start(state, job_last_wins);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", NULL, NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", "b", NULL, NULL, NULL, NULL, NULL));
    struct sl_msg *m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 1);
    m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->u.rec.row, 2);
    assert_false(m->u.rec.duplicate); /* nothing to replace: row 1 was rejected */
}

static void test_last_wins_invalid_duplicate_has_only_its_own_problems(void **state)
{
    /* with last_wins a repeated key is no error: a later row that is invalid
     * for another reason is rejected for that reason alone */
    struct sh *h = start(state, job_last_wins);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", NULL, NULL, NULL, NULL, NULL, NULL));
    struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->u.rec.row, 1);
    m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 2);
    assert_true(sh_problem(m, "name", "required") >= 0);
    if (sh_problem(m, "id", "duplicate_key") >= 0)
        fail_msg("duplicates last_wins: row 2 was rejected with duplicate_key too");
    assert_int_equal(m->u.rec.nprob, 1);
}

static void test_keys_are_per_run(void **state)
{
    struct sh *h = start(state, job_reject);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    struct sl_msg *other = mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL);
    struct sl_msg *m2 = sl_msg_new(SL_MSG_RECORD, "run-2", h->job->id, 0);
    assert_non_null(m2);
    m2->u.rec.row = 1;
    for (uint32_t i = 0; i < other->u.rec.nattr; i++)
        assert_int_equal(sl_msg_add_attr(m2, other->u.rec.attr[i].name, other->u.rec.attr[i].value),
                         0);
    sl_msg_unref(other);
    sh_send(h, SL_TOPIC_MAPPED, m2);
    for (int i = 0; i < 2; i++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
        assert_false(m->u.rec.duplicate);
    }
}

/* A stage that crashed before its commit gets its inputs again: the same
 * rows, asking about their keys a second time, within one batch or later. */
static void test_redelivered_row_is_no_duplicate(void **state)
{
    struct sh *h = start(state, job_reject);
    /* rows 1 and 2, row 1 again at once (one batch, most likely), */
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S2", "b", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    static const uint64_t rows[] = {1, 2, 1};
    for (int i = 0; i < 3; i++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
        assert_int_equal(m->u.rec.row, rows[i]);
        assert_int_equal(m->u.rec.nprob, 0);
        assert_false(m->u.rec.duplicate);
    }
    /* then both again after they went out, and a real duplicate of S1 */
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S2", "b", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", "a", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 3, "S1", "c", NULL, NULL, NULL, NULL, NULL));
    struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->u.rec.row, 2);
    m = sh_next(h, SL_TOPIC_VALID);
    assert_int_equal(m->u.rec.row, 1);
    m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 3);
    assert_int_equal(sh_problem(m, "id", "duplicate_key"), 0);
    /* and the duplicate itself redelivered: still a duplicate, of row 1 */
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 3, "S1", "c", NULL, NULL, NULL, NULL, NULL));
    m = sh_next(h, SL_TOPIC_REJECTED);
    assert_int_equal(m->u.rec.row, 3);
    assert_int_equal(m->u.rec.nprob, 1);
    sh_expect_none(h, 0, 0);
}

static void test_redelivered_row_last_wins(void **state)
{
    struct sh *h = start(state, job_last_wins);
    static const uint64_t rows[] = {1, 1, 2, 2, 1};
    for (int i = 0; i < 5; i++)
        sh_send(h, SL_TOPIC_MAPPED, mapped(h, rows[i], "S1", "a", NULL, NULL, NULL, NULL, NULL));
    for (int i = 0; i < 5; i++) {
        struct sl_msg *m = sh_next(h, SL_TOPIC_VALID);
        assert_int_equal(m->u.rec.row, rows[i]);
        /* only row 2 replaces an earlier row; row 1 again replaces nothing */
        assert_int_equal(m->u.rec.duplicate, rows[i] == 2);
    }
}

/* A row rejected for another reason checks its key without claiming it; its
 * redelivery after a later row claimed the key answers as the first time. */
static void test_redelivered_rejected_row(void **state)
{
    struct sh *h = start(state, job_reject);
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", NULL, NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 2, "S1", "b", NULL, NULL, NULL, NULL, NULL));
    sh_send(h, SL_TOPIC_MAPPED, mapped(h, 1, "S1", NULL, NULL, NULL, NULL, NULL, NULL));
    for (int i = 0; i < 3; i++) {
        const char *topic = NULL;
        struct sl_msg *m = sh_next_within(h, &topic, SH_WAIT_MS);
        assert_non_null(m);
        assert_int_equal(m->u.rec.row, i == 1 ? 2 : 1);
        assert_string_equal(topic, i == 1 ? SL_TOPIC_VALID : SL_TOPIC_REJECTED);
        if (i != 1) {
            assert_int_equal(m->u.rec.nprob, 1);
            assert_true(sh_problem(m, "name", "required") >= 0);
        }
    }
}

#define MANY_ROWS 3000

struct sender {
    struct sh *h;
    int rows;
};

/* Row i (from 1) of test_order: which of the cases below it is. */
enum row_case { ROW_VALID, ROW_NO_KEY, ROW_INVALID, ROW_DUPLICATE, ROW_INVALID_NO_KEY };

static enum row_case row_case(int i)
{
    if (i % 7 == 3)
        return ROW_INVALID; /* no name: rejected, its key only checked */
    if (i % 11 == 5)
        return ROW_NO_KEY; /* no id: rejected (a key is required), no key */
    if (i % 17 == 9)
        return ROW_INVALID_NO_KEY; /* an id too long: rejected, no key */
    if (i % 13 == 0)
        return ROW_DUPLICATE; /* the key of row i - 1 */
    return ROW_VALID;
}

static atomic_bool rows_sent; /* sender_main sent every row */

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    for (int i = 1; i <= s->rows; i++) {
        char id[16];
        enum row_case c = row_case(i);
        if (c == ROW_INVALID_NO_KEY)
            snprintf(id, sizeof(id), "LONG-%07d", i);
        else
            snprintf(id, sizeof(id), "K%d", c == ROW_DUPLICATE ? i - 1 : i);
        struct sl_msg *m = mapped(s->h, (uint64_t)i, c == ROW_NO_KEY ? NULL : id,
                                  c == ROW_INVALID ? NULL : "n", NULL, NULL, NULL, NULL, NULL);
        if (sl_bus_send(s->h->bus, SL_TOPIC_MAPPED, m))
            break;
    }
    atomic_store(&rows_sent, true);
    return NULL;
}

/* Rows of every kind, more than one batch of them, leave in the order they
 * came, each on its topic with its answer. */
static void check_order(void **state, int rows)
{
    struct sh *h = start(state, job_reject);
    struct sender s = {.h = h, .rows = rows};
    atomic_store(&rows_sent, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_main, &s), 0);
    for (int i = 1; i <= rows; i++) {
        const char *topic = NULL;
        struct sl_msg *m = sh_next_within(h, &topic, SH_WAIT_MS);
        if (!m)
            fail_msg("row %d did not come", i);
        if (m->u.rec.row != (uint64_t)i)
            fail_msg("row %llu came where row %d was due", (unsigned long long)m->u.rec.row, i);
        enum row_case c = row_case(i);
        bool valid = c == ROW_VALID || (c == ROW_DUPLICATE && row_case(i - 1) != ROW_VALID);
        if (strcmp(topic, valid ? SL_TOPIC_VALID : SL_TOPIC_REJECTED))
            fail_msg("row %d (case %d) went to %s", i, (int)c, topic);
        bool dup = c == ROW_DUPLICATE && !valid;
        if ((sh_problem(m, "id", "duplicate_key") >= 0) != dup)
            fail_msg("row %d (case %d): duplicate_key %s", i, (int)c, dup ? "missing" : "wrong");
        if ((c == ROW_NO_KEY || c == ROW_INVALID_NO_KEY) != !m->u.rec.key)
            fail_msg("row %d (case %d): key %s", i, (int)c, m->u.rec.key ? m->u.rec.key : "none");
    }
    pthread_join(th, NULL);
    sh_expect_none(h, 0, 0);
}

static void test_order(void **state)
{
    check_order(state, MANY_ROWS);
}

/* A state store that answers seen_keys_ask() at seen_keys_answer() time
 * (from the local store), and fails every fail_every-th answer with
 * SL_ERR_RETRY without asking: what Redis does for the validator. */
struct later_state {
    struct sl_state base;
    struct sl_state *local;
    unsigned asks, answers, fail_every;
};

struct sl_seen_call {
    char *run;
    struct sl_seen_query *q;
    size_t n;
};

static struct later_state later;

static int later_seen_key(struct sl_state *st, const char *run, const char *key, size_t keylen,
                          uint64_t row, bool add)
{
    (void)st;
    return later.local->ops->seen_key(later.local, run, key, keylen, row, add);
}

static int later_seen_keys(struct sl_state *st, const char *run, const struct sl_seen_query *q,
                           size_t n, int *out)
{
    (void)st;
    /* the first answer (the input ran dry after the first row) waits until
     * every row waits in the bus: then the validator's input does not run
     * dry before the last row, and it asks a batch ahead every 1024 rows */
    for (int i = 0; i < 10000 && !atomic_load(&rows_sent); i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    return later.local->ops->seen_keys(later.local, run, q, n, out);
}

static int later_end_run(struct sl_state *st, const char *run)
{
    (void)st;
    return later.local->ops->end_run(later.local, run);
}

static void later_destroy(struct sl_state *st)
{
    (void)st; /* the harness destroys the local store */
}

static int later_ask(struct sl_state *st, const char *run, const struct sl_seen_query *q, size_t n,
                     struct sl_seen_call **call)
{
    (void)st;
    struct sl_seen_call *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->run = strdup(run);
    c->q = calloc(n ? n : 1, sizeof(*c->q));
    assert_true(c->run && c->q);
    for (size_t i = 0; i < n; i++) {
        c->q[i] = q[i];
        c->q[i].key = strndup(q[i].key, q[i].keylen); /* q is the caller's again */
        assert_non_null(c->q[i].key);
    }
    c->n = n;
    later.asks++;
    *call = c;
    return 0;
}

static int later_answer(struct sl_state *st, struct sl_seen_call *c, int *out)
{
    (void)st;
    int rc = ++later.answers % later.fail_every == 0
                 ? SL_ERR_RETRY
                 : later.local->ops->seen_keys(later.local, c->run, c->q, c->n, out);
    for (size_t i = 0; i < c->n; i++)
        free((char *)c->q[i].key);
    free(c->q);
    free(c->run);
    free(c);
    return rc;
}

static const struct sl_state_ops later_ops = {
    .name = "later",
    .seen_key = later_seen_key,
    .end_run = later_end_run,
    .destroy = later_destroy,
    .seen_keys = later_seen_keys,
    .seen_keys_ask = later_ask,
    .seen_keys_answer = later_answer,
};

static struct sl_state *later_hook(struct sl_state *local)
{
    later = (struct later_state){.base = {.ops = &later_ops}, .local = local, .fail_every = 3};
    return &later.base;
}

/* test_order with keys asked in one batch and answered after the next one
 * was validated, every third answer failing (asked again): the same
 * outputs in the same order. The rows wait in a bus big enough for all of
 * them, so that the validator's input seldom runs dry (which drains). */
static void test_order_answered_later(void **state)
{
    sh_state_hook = later_hook;
    sh_bus_capacity = 4 * MANY_ROWS;
    check_order(state, 4 * MANY_ROWS);
    sh_state_hook = NULL;
    sh_bus_capacity = 0;
    if (later.asks < 8)
        fail_msg("the validator asked %u batches ahead: the test did not test it", later.asks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_normalizes_and_defaults),
        SH_TEST(test_required),
        SH_TEST(test_every_problem_of_a_row),
        SH_TEST(test_duplicate_reject),
        SH_TEST(test_duplicate_last_wins),
        SH_TEST(test_rejected_row_does_not_claim_its_key),
        SH_TEST(test_rejected_row_does_not_claim_its_key_last_wins),
        SH_TEST(test_last_wins_invalid_duplicate_has_only_its_own_problems),
        SH_TEST(test_keys_are_per_run),
        SH_TEST(test_redelivered_row_is_no_duplicate),
        SH_TEST(test_redelivered_row_last_wins),
        SH_TEST(test_redelivered_rejected_row),
        SH_TEST(test_order),
        SH_TEST(test_order_answered_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
