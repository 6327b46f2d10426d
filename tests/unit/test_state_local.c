/*
 * Unit tests of the local state store (state.h, sl_state_local_new): last
 * successful hashes on disk, per-run keys in memory with the row that first
 * had each (a row asking again is no duplicate of itself), batches answered
 * as the same questions one by one, from several threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define SHA1 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA2 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct fixture {
    char dir[PATH_MAX];
    struct sl_state *st;
};

static int remove_tree(const char *dir)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    char tmpl[] = "/tmp/sluice-state-XXXXXX";
    char err[256] = "";
    if (!fx || !mkdtemp(tmpl))
        return -1;
    /* A directory that does not exist yet, two levels down: created. */
    snprintf(fx->dir, sizeof(fx->dir), "%s/state/local", tmpl);
    fx->st = sl_state_local_new(fx->dir, err, sizeof(err));
    if (!fx->st) {
        fprintf(stderr, "sl_state_local_new: %s\n", err);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sl_state_destroy(fx->st);
    char *top = sl_path_dir(fx->dir);
    char *tmp = sl_path_dir(top);
    remove_tree(tmp);
    free(top);
    free(tmp);
    free(fx);
    return 0;
}

static void test_last_sha(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    char out[65];
    assert_string_equal(st->ops->name, "local");
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), SL_ERR_NOTFOUND);
    assert_int_equal(st->ops->set_last_sha(st, "store-locations", SHA1), 0);
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), 0);
    assert_string_equal(out, SHA1);
    assert_int_equal(st->ops->set_last_sha(st, "store-locations", SHA2), 0);
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), 0);
    assert_string_equal(out, SHA2);
    assert_int_equal(st->ops->get_last_sha(st, "other_job.v2", out), SL_ERR_NOTFOUND);

    /* The file is where the header says, one line, no temporary left. */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/jobs/store-locations.sha256", fx->dir);
    size_t len = 0;
    char *text = sl_read_file(path, &len);
    assert_non_null(text);
    assert_string_equal(text, SHA2 "\n");
    free(text);
    snprintf(path, sizeof(path), "%s/jobs/store-locations.sha256.tmp", fx->dir);
    assert_int_not_equal(access(path, F_OK), 0);

    /* A second store on the same directory sees it (it is on disk). */
    char err[256];
    struct sl_state *again = sl_state_local_new(fx->dir, err, sizeof(err));
    assert_non_null(again);
    assert_int_equal(again->ops->get_last_sha(again, "store-locations", out), 0);
    assert_string_equal(out, SHA2);
    sl_state_destroy(again);
}

static void test_bad_input(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    char out[65];
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);

    static const char *bad_ids[] = {"",    ".",      "..",        "../etc/passwd",
                                    "a/b", "job id", "j\xc3\xa9", "a\\b"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        assert_int_equal(st->ops->set_last_sha(st, bad_ids[i], SHA1), SL_ERR_INVALID);
        assert_int_equal(st->ops->get_last_sha(st, bad_ids[i], out), SL_ERR_INVALID);
    }
    char longid[256];
    memset(longid, 'x', 255);
    longid[255] = '\0';
    assert_int_equal(st->ops->set_last_sha(st, longid, SHA1), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, NULL, SHA1), SL_ERR_INVALID);

    assert_int_equal(st->ops->set_last_sha(st, "j", "abc"), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, "j", NULL), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, "j", SHA1 "0"), SL_ERR_INVALID);
    assert_int_equal(
        st->ops->set_last_sha(st, "j",
                              "zz86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        SL_ERR_INVALID);
    assert_int_equal(st->ops->get_last_sha(st, "j", out), SL_ERR_NOTFOUND);

    /* A hand-edited file is an error, not "never succeeded". */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/jobs/edited.sha256", fx->dir);
    assert_int_equal(sl_write_file_atomic(path, "not a hash\n", 11), 0);
    assert_int_equal(st->ops->get_last_sha(st, "edited", out), SL_ERR_PARSE);
    /* Trailing white space (an editor's CRLF) is fine. */
    assert_int_equal(sl_write_file_atomic(path, SHA1 "\r\n", 66), 0);
    assert_int_equal(st->ops->get_last_sha(st, "edited", out), 0);
    assert_string_equal(out, SHA1);

    sl_log_set_level(lvl);
}

static void test_bad_dir(void **state)
{
    struct fixture *fx = *state;
    char err[256] = "";
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/jobs/file", fx->dir);
    assert_int_equal(sl_write_file_atomic(path, "x", 1), 0);
    /* A file where the directory should be. */
    assert_null(sl_state_local_new(path, err, sizeof(err)));
    assert_non_null(strstr(err, "could not create state directory"));
    err[0] = '\0';
    assert_null(sl_state_local_new("", err, sizeof(err)));
    assert_string_equal(err, "no state directory given");
    sl_state_destroy(NULL);
}

static void test_seen_key(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 1, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 2, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 2, false), 1);
    /* Runs do not share keys. */
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 2, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 3, true), 1);
    /* Binary keys: the length counts. */
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1\0x", 4, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1\0y", 4, 6, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "", 0, 7, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", NULL, 0, 8, true), 1);
    /* end_run forgets the run, and only that run. */
    assert_int_equal(st->ops->end_run(st, "run-1"), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 9, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 9, false), 1);
    assert_int_equal(st->ops->end_run(st, "run-1"), 0); /* twice is fine */
    assert_int_equal(st->ops->end_run(st, "never"), 0);
    /* run-2 is left for destroy to free. */

    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    int out[1];
    struct sl_seen_query bad = {.key = NULL, .keylen = 1, .row = 1, .add = true};
    assert_int_equal(st->ops->seen_key(st, NULL, "k", 1, 1, true), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_key(st, "r", NULL, 1, 1, true), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys(st, "r", &bad, 1, out), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys(st, NULL, NULL, 0, NULL), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys(st, "r", NULL, 0, NULL), 0);
    sl_log_set_level(lvl);
}

/* A row asking again (a redelivered message) is no duplicate of itself and
 * changes nothing; another row is. */
static void test_same_row(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, true), 1);
    /* row 6 claimed nothing: row 5 is still the first */
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, false), 1);
    /* An earlier row (4) asking to add is a duplicate: one row per key is the
     * new one, whatever the order. Merely checking (a row rejected for
     * something else), it came first in the source: no duplicate. */
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 4, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 4, false), 0);
    /* Rows are numbers, not text: 10 comes after 9. */
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 9, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 10, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 8, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX - 1, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, 0, true), 1);
    /* The same row number in another run is another row. */
    assert_int_equal(st->ops->seen_key(st, "run-b", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-b", "k", 1, 5, true), 0);
}

#define Q(k, r, a)                                                                                 \
    {                                                                                              \
        .key = k, .keylen = sizeof(k) - 1, .row = r, .add = a                                      \
    }

/* A batch answers as its questions one by one in order would, and asking
 * the same batch again (a reply lost, a redelivery) answers the same. */
static void test_batch(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    const struct sl_seen_query q[] = {
        Q("a", 1, true),  Q("b", 2, true),  Q("a", 3, true), /* a twice: 3 is a duplicate */
        Q("c", 4, false), Q("c", 5, true),                   /* a check claims nothing */
        Q("b", 6, false), Q("d", 8, false), Q("d", 7, true), /* d: 8 only checked */
        Q("a", 1, true),                                     /* row 1 again inside */
    };
    const int want[] = {0, 0, 1, 0, 0, 1, 0, 0, 0};
    const size_t n = sizeof(q) / sizeof(q[0]);
    int out[sizeof(q) / sizeof(q[0])];
    for (int pass = 0; pass < 3; pass++) {
        memset(out, 0xff, sizeof(out));
        assert_int_equal(st->ops->seen_keys(st, "run-batch", q, n, out), 0);
        for (size_t i = 0; i < n; i++) {
            int w = want[i];
            if (pass && i == 6)
                w = 1; /* d's row 8 asked after row 7 claimed it: out of source order */
            if (out[i] != w)
                fail_msg("pass %d, question %zu: %d, want %d", pass, i, out[i], w);
        }
    }
    /* As one-by-one calls see it afterwards. */
    assert_int_equal(st->ops->seen_key(st, "run-batch", "a", 1, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "a", 1, 3, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "c", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "c", 1, 4, false), 0);
}

/* Random questions asked in batches of random sizes on one run and one by
 * one on another answer alike, and so does the whole list asked again. */
static void test_batch_matches_single(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    enum { N = 20000 };
    struct sl_seen_query *q = calloc(N, sizeof(*q));
    char(*keys)[16] = calloc(N, 16);
    int *a = calloc(N, sizeof(int)), *b = calloc(N, sizeof(int));
    assert_true(q && keys && a && b);
    unsigned seed = 12345;
    for (size_t i = 0; i < N; i++) {
        int len = snprintf(keys[i], 16, "key-%u", rand_r(&seed) % 3000);
        q[i] = (struct sl_seen_query){.key = keys[i],
                                      .keylen = (size_t)len,
                                      .row = 1 + i / 2 + rand_r(&seed) % 3,
                                      .add = rand_r(&seed) % 4 != 0};
    }
    for (size_t i = 0; i < N;) {
        size_t n = 1 + rand_r(&seed) % 700;
        if (n > N - i)
            n = N - i;
        assert_int_equal(st->ops->seen_keys(st, "run-a", q + i, n, a + i), 0);
        i += n;
    }
    int dups = 0;
    for (size_t i = 0; i < N; i++) {
        b[i] = st->ops->seen_key(st, "run-b", q[i].key, q[i].keylen, q[i].row, q[i].add);
        if (a[i] != b[i])
            fail_msg("question %zu: batch %d, single %d", i, a[i], b[i]);
        dups += a[i];
    }
    assert_true(dups > N / 2 && dups < N);
    free(q);
    free(keys);
    free(a);
    free(b);
}

#define MANY 300000

/* Enough keys to double the table many times: every one is found again. */
static void test_many_keys(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    char key[48];
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        if (st->ops->seen_key(st, "run-many", key, (size_t)n, (uint64_t)i + 1, true) != 0)
            fail_msg("key %d: not new", i);
    }
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        if (st->ops->seen_key(st, "run-many", key, (size_t)n, (uint64_t)i + 1, true) != 0 ||
            st->ops->seen_key(st, "run-many", key, (size_t)n, (uint64_t)i + 2, true) != 1)
            fail_msg("key %d: lost", i);
    }
    assert_int_equal(st->ops->seen_key(st, "run-many", "customer-x", 10, 1, false), 0);
    assert_int_equal(st->ops->end_run(st, "run-many"), 0);
}

#define THREADS 4
#define KEYS    20000

struct worker {
    struct sl_state *st;
    int id;
    int fresh; /* keys that were new to the set when this thread added them */
    int bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[32], run[16];
    for (int i = 0; i < KEYS; i++) {
        /* Every thread adds the same keys to two shared runs, each as a row
         * of its own; half of them in batches of two. */
        snprintf(run, sizeof(run), "run-%d", i % 2);
        int n = snprintf(key, sizeof(key), "key-%d", i);
        uint64_t row = (uint64_t)i * THREADS + (uint64_t)w->id;
        int rc;
        if (i % 4 < 2) {
            rc = w->st->ops->seen_key(w->st, run, key, (size_t)n, row, true);
        } else {
            struct sl_seen_query q[2] = {{key, (size_t)n, row, true}, {key, (size_t)n, row, true}};
            int out[2] = {-1, -1};
            rc = w->st->ops->seen_keys(w->st, run, q, 2, out);
            if (rc == 0 && out[0] != out[1])
                w->bad++;
            rc = rc ? rc : out[0];
        }
        if (rc == 0)
            w->fresh++;
        else if (rc != 1)
            w->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *fx = *state;
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.st = fx->st, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int fresh = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].bad, 0);
        fresh += w[i].fresh;
    }
    /* Each key was new exactly once, whichever thread got there first. */
    assert_int_equal(fresh, KEYS);
    assert_int_equal(fx->st->ops->end_run(fx->st, "run-0"), 0);
    assert_int_equal(fx->st->ops->end_run(fx->st, "run-1"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_last_sha, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seen_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_matches_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
