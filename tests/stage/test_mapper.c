/*
 * Stage test of the mapper: source rows in on records.raw, mapped rows out
 * on records.mapped, through the in-process bus (stage_harness.h).
 *
 * Covers column copies (exact name first, then case- and space-insensitive),
 * templates, a column the row lacks (a missing value, not an error), and a
 * filter that cannot convert: a "format" problem of that attribute while the
 * row and its other attributes go on; the bus key normalized as the
 * validator normalizes key values.
 */
#include "stage_harness.h"

static const char job_json[] = "{\"name\":\"mapjob\",\"source\":{\"url\":\"in.csv\"},"
                               "\"target\":{\"object\":\"things\",\"key\":[\"id\"],\"attributes\":{"
                               "\"id\":{\"type\":\"text\"},"
                               "\"loose\":{\"type\":\"text\"},"
                               "\"exact\":{\"type\":\"text\"},"
                               "\"greeting\":{\"type\":\"text\"},"
                               "\"absent\":{\"type\":\"text\"},"
                               "\"absent_tpl\":{\"type\":\"text\"},"
                               "\"fallback\":{\"type\":\"text\"},"
                               "\"amount\":{\"type\":\"decimal\"},"
                               "\"unmapped\":{\"type\":\"text\"}}},"
                               "\"mapping\":{"
                               "\"id\":\"Store ID\","
                               "\"loose\":\"customer name\","
                               "\"exact\":\"name\","
                               "\"greeting\":\"Hello {{ NAME | trim | upper }}!\","
                               "\"absent\":\"Nope\","
                               "\"absent_tpl\":\"{{ Nope | upper }}\","
                               "\"fallback\":\"{{ Nope | default('none') }}\","
                               "\"amount\":\"{{ Amount | number('de') }}\"}}";

static const char *const cols[] = {"Store ID", "Customer  NAME", "NAME", "name", "Amount"};

static struct sl_msg *row(struct sh *h, uint64_t n, const char *id, const char *cust,
                          const char *upper_name, const char *lower_name, const char *amount)
{
    const char *vals[] = {id, cust, upper_name, lower_name, amount};
    return sh_row(h, n, cols, vals, 5);
}

static struct sh *start(void **state)
{
    static const char *const topics[] = {SL_TOPIC_MAPPED, NULL};
    struct sh *h = *state;
    sh_start(h, &sl_stage_mapper, job_json, topics);
    return h;
}

static void test_column_copy_and_templates(void **state)
{
    struct sh *h = start(state);
    sh_send(h, SL_TOPIC_RAW, row(h, 7, "S1", "Ann", "  bob ", "lower", "1.234,5"));
    struct sl_msg *m = sh_next(h, SL_TOPIC_MAPPED);
    assert_int_equal(m->kind, SL_MSG_RECORD);
    assert_string_equal(m->run_id, SH_RUN_ID);
    assert_int_equal(m->u.rec.row, 7);
    assert_int_equal(m->u.rec.nprob, 0);
    /* every attribute of the job, in the job's order */
    assert_int_equal(m->u.rec.nattr, h->job->nattrs);
    for (size_t i = 0; i < h->job->nattrs; i++)
        assert_string_equal(m->u.rec.attr[i].name, h->job->attrs[i].name);
    assert_string_equal(sh_attr(m, "id"), "S1");       /* exact name */
    assert_string_equal(m->key, "S1");                 /* partitioned by target key */
    assert_string_equal(sh_attr(m, "loose"), "Ann");   /* case and spaces ignored */
    assert_string_equal(sh_attr(m, "exact"), "lower"); /* exact wins over loose */
    assert_string_equal(sh_attr(m, "greeting"), "Hello BOB!");
    assert_null(sh_attr(m, "absent"));                   /* no such column */
    assert_null(sh_attr(m, "absent_tpl"));               /* missing passes filters */
    assert_string_equal(sh_attr(m, "fallback"), "none"); /* except default */
    assert_string_equal(sh_attr(m, "amount"), "1234.5");
    assert_null(sh_attr(m, "unmapped"));
    /* the source stays as it was */
    assert_int_equal(m->u.rec.nsrc, 5);
    assert_string_equal(m->u.rec.src[2].name, "NAME");
    assert_string_equal(m->u.rec.src[2].value, "  bob ");
}

static void test_empty_cell_is_missing(void **state)
{
    struct sh *h = start(state);
    sh_send(h, SL_TOPIC_RAW, row(h, 1, "", "Ann", NULL, "x", ""));
    struct sl_msg *m = sh_next(h, SL_TOPIC_MAPPED);
    assert_int_equal(m->u.rec.nprob, 0);
    assert_null(sh_attr(m, "id"));
    assert_null(m->key); /* no key value: no partitioning key */
    assert_null(sh_attr(m, "amount"));
}

static void test_filter_error_is_a_format_problem(void **state)
{
    struct sh *h = start(state);
    sh_send(h, SL_TOPIC_RAW, row(h, 3, "S3", "Cy", "cy", "c", "abc"));
    sh_send(h, SL_TOPIC_RAW, row(h, 4, "S4", "Di", "di", "d", "2,5"));
    struct sl_msg *m = sh_next(h, SL_TOPIC_MAPPED);
    assert_int_equal(m->u.rec.row, 3);
    assert_int_equal(m->u.rec.nprob, 1);
    assert_string_equal(m->u.rec.prob[0].attribute, "amount");
    assert_string_equal(m->u.rec.prob[0].code, "format");
    assert_non_null(m->u.rec.prob[0].message);
    assert_true(m->u.rec.prob[0].message[0] != '\0');
    assert_null(sh_attr(m, "amount"));
    /* the row goes on with its other attributes */
    assert_string_equal(sh_attr(m, "id"), "S3");
    assert_string_equal(sh_attr(m, "greeting"), "Hello CY!");
    /* and the next row is not affected */
    m = sh_next(h, SL_TOPIC_MAPPED);
    assert_int_equal(m->u.rec.row, 4);
    assert_int_equal(m->u.rec.nprob, 0);
    assert_string_equal(sh_attr(m, "amount"), "2.5");
}

static void test_header_change_rebinds(void **state)
{
    struct sh *h = start(state);
    sh_send(h, SL_TOPIC_RAW, row(h, 1, "S1", "Ann", "a", "a", "1"));
    /* another header (another file of the same job): columns move */
    static const char *const other[] = {"amount", "store id"};
    static const char *const vals[] = {"9", "S9"};
    sh_send(h, SL_TOPIC_RAW, sh_row(h, 1, other, vals, 2));
    struct sl_msg *m = sh_next(h, SL_TOPIC_MAPPED);
    assert_string_equal(sh_attr(m, "id"), "S1");
    m = sh_next(h, SL_TOPIC_MAPPED);
    assert_string_equal(sh_attr(m, "id"), "S9");
    assert_string_equal(sh_attr(m, "amount"), "9");
    assert_null(sh_attr(m, "loose"));
}

static void test_many_rows_in_order(void **state)
{
    struct sh *h = start(state);
    for (uint64_t i = 1; i <= 2000; i++) {
        char id[32];
        snprintf(id, sizeof(id), "S%llu", (unsigned long long)i);
        sh_send(h, SL_TOPIC_RAW, row(h, i, id, "x", "y", "z", "1"));
        if (i % 500 == 0) /* keep under the queue's capacity */
            for (uint64_t k = i - 499; k <= i; k++) {
                struct sl_msg *m = sh_next(h, SL_TOPIC_MAPPED);
                assert_int_equal(m->u.rec.row, k);
                snprintf(id, sizeof(id), "S%llu", (unsigned long long)k);
                assert_string_equal(sh_attr(m, "id"), id);
            }
    }
}

/* The bus key is the key as the validator will see it: normalized by its
 * type, so that two spellings of one e-mail address share a partition (and
 * keep their file order); a key value that is not valid gives no key. */
static void test_key_normalized_as_the_validator_keys(void **state)
{
    static const char email_job[] =
        "{\"name\":\"mapjob\",\"source\":{\"url\":\"in.csv\"},"
        "\"target\":{\"object\":\"people\",\"key\":[\"email\"],\"attributes\":{"
        "\"email\":{\"type\":\"email\"}}},\"mapping\":{\"email\":\"Mail\"}}";
    static const char *const topics[] = {SL_TOPIC_MAPPED, NULL};
    static const char *const mcols[] = {"Mail"};
    struct sh *h = *state;
    sh_start(h, &sl_stage_mapper, email_job, topics);
    const char *spellings[] = {"ann@example.com", " ann@EXAMPLE.com ", "not an address"};
    for (size_t i = 0; i < 3; i++)
        sh_send(h, SL_TOPIC_RAW, sh_row(h, i + 1, mcols, &spellings[i], 1));
    struct sl_msg *a = sh_next(h, SL_TOPIC_MAPPED);
    struct sl_msg *b = sh_next(h, SL_TOPIC_MAPPED);
    struct sl_msg *c = sh_next(h, SL_TOPIC_MAPPED);
    assert_non_null(a->key);
    assert_non_null(b->key);
    assert_string_equal(a->key, b->key);
    assert_string_equal(sh_attr(b, "email"), " ann@EXAMPLE.com "); /* the value stays */
    assert_null(c->key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_column_copy_and_templates),
        SH_TEST(test_empty_cell_is_missing),
        SH_TEST(test_filter_error_is_a_format_problem),
        SH_TEST(test_header_change_rebinds),
        SH_TEST(test_many_rows_in_order),
        SH_TEST(test_key_normalized_as_the_validator_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
