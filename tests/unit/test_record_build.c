/*
 * Unit tests of the record builder's names (record_build.c): the fields a
 * mapping reads are found among the names met, and every name it does not
 * read is listed once, in the order met, whether the builder meets them in
 * one call (a webhook's one record: compared without a set) or many (a
 * file's records: the set made on the second call), and however many.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/job.h"
#include "sluice/record_build.h"

static const char JOB[] = "{\"name\": \"contacts\", \"source\": {\"url\": \"c.json\"},"
                          " \"target\": {\"object\": \"contacts\", \"key\": [\"id\"],"
                          " \"attributes\": {\"id\": {\"type\": \"text\"},"
                          " \"name\": {\"type\": \"text\"}}},"
                          " \"mapping\": {\"id\": \"id\", \"name\": \"name\"}}";

static struct sl_job *job_load(void)
{
    char err[512] = "";
    struct sl_job *job = sl_job_load_json(JOB, strlen(JOB), NULL, err, sizeof(err));
    if (!job)
        fail_msg("the job did not load: %s", err);
    return job;
}

static void builder(struct sl_record_build *rb, const struct sl_job *job)
{
    *rb = (struct sl_record_build){.job_id = "contacts", .job = job, .names_vary = true};
    assert_int_equal(sl_record_build_init(rb), 0);
}

/* rb's unmapped names joined by ',' (a static buffer). */
static const char *unmapped(const struct sl_record_build *rb)
{
    static char buf[4096];
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < rb->nunmapped; i++)
        at += (size_t)snprintf(buf + at, sizeof(buf) - at, "%s%s", i ? "," : "", rb->unmapped[i]);
    return buf;
}

/* The ref of the field name, by the job's list. */
static bool ref_seen(const struct sl_record_build *rb, const char *name)
{
    for (size_t k = 0; k < rb->job->nrefs; k++)
        if (strcmp(rb->job->refs[k].name, name) == 0)
            return rb->ref_seen[k];
    fail_msg("no ref %s", name);
    return false;
}

static void test_one_call(void **state)
{
    (void)state;
    struct sl_job *job = job_load();
    struct sl_record_build rb;
    builder(&rb, job);
    const char *names[] = {"id", "x", "x", "y", "id"};
    assert_int_equal(sl_record_build_names(&rb, names, 5), 0);
    assert_null(rb.names_seen); /* a few names: compared, no set */
    assert_string_equal(unmapped(&rb), "x,y");
    assert_true(ref_seen(&rb, "id"));
    assert_false(ref_seen(&rb, "name"));
    sl_record_build_cleanup(&rb);
    sl_job_destroy(job);
}

static void test_later_calls(void **state)
{
    (void)state;
    struct sl_job *job = job_load();
    struct sl_record_build rb;
    builder(&rb, job);
    const char *first[] = {"id", "x"};
    const char *second[] = {"y", "x", "name", "id"};
    const char *third[] = {"z", "y", "x"};
    assert_int_equal(sl_record_build_names(&rb, first, 2), 0);
    assert_int_equal(sl_record_build_names(&rb, second, 4), 0);
    assert_non_null(rb.names_seen);
    assert_int_equal(sl_record_build_names(&rb, third, 3), 0);
    assert_string_equal(unmapped(&rb), "x,y,z");
    assert_true(ref_seen(&rb, "id"));
    assert_true(ref_seen(&rb, "name"));
    sl_record_build_cleanup(&rb);
    /* the builder starts again from nothing after cleanup and init */
    builder(&rb, job);
    assert_int_equal(sl_record_build_names(&rb, third, 3), 0);
    assert_null(rb.names_seen);
    assert_string_equal(unmapped(&rb), "z,y,x");
    sl_record_build_cleanup(&rb);
    sl_job_destroy(job);
}

static void test_wide(void **state)
{
    (void)state;
    struct sl_job *job = job_load();
    struct sl_record_build rb;
    builder(&rb, job);
    char bufs[40][8];
    const char *names[40];
    for (int i = 0; i < 40; i++) { /* f0..f19, then the same again */
        snprintf(bufs[i], sizeof(bufs[i]), "f%d", i % 20);
        names[i] = bufs[i];
    }
    assert_int_equal(sl_record_build_names(&rb, names, 40), 0);
    assert_non_null(rb.names_seen); /* more than a few: a set from the first call */
    assert_int_equal(rb.nunmapped, 20);
    assert_string_equal(rb.unmapped[19], "f19");
    assert_int_equal(sl_record_build_names(&rb, names, 40), 0);
    assert_int_equal(rb.nunmapped, 20);
    sl_record_build_cleanup(&rb);
    sl_job_destroy(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_call),
        cmocka_unit_test(test_later_calls),
        cmocka_unit_test(test_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
