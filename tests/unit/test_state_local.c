/*
 * Unit tests of the local state store (state.h, sl_state_local_new): last
 * successful hashes on disk, per-run keys in memory with the row that first
 * had each while that row is recent (a row asking again is no duplicate of
 * itself), batches answered as the same questions one by one, from several
 * threads, and what the compact store does not cover: a row far below the
 * highest one asking again.
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

/* The window of recent rows whose first keys the store remembers exactly
 * (state.h, sl_state_local_new). */
#define WINDOW 16384

/* Random questions whose rows mostly climb, some by a jump past the whole
 * window, and otherwise go back anywhere in the window: a recent question
 * asked again (a redelivery) or a new one out of order. Asked in batches of
 * random sizes, they answer exactly as a store that remembers every key's
 * first row (as redis does) would. */
static void test_window_exact(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    enum { N = 300000, KEYS = 100000, MAXB = 1500, HIST = 4096 };
    uint64_t *first = calloc(KEYS, sizeof(*first)); /* 0: not seen (rows start at 1) */
    struct {
        uint64_t row;
        unsigned k;
    } hist[HIST] = {{0, 0}}; /* the last questions */
    struct sl_seen_query *q = calloc(MAXB, sizeof(*q));
    char(*keys)[16] = calloc(MAXB, 16);
    int *out = calloc(MAXB, sizeof(int)), *want = calloc(MAXB, sizeof(int));
    assert_true(first && q && keys && out && want);
    unsigned seed = 777;
    uint64_t hi = 0;
    size_t asked = 0;
    int dups = 0, again = 0, back = 0;
    for (size_t done = 0; done < N;) {
        size_t n = 1 + rand_r(&seed) % MAXB;
        for (size_t i = 0; i < n; i++, asked++) {
            unsigned k = rand_r(&seed) % KEYS, pick = rand_r(&seed) % 10000;
            uint64_t row, d = rand_r(&seed) % (WINDOW + 1);
            if (pick < 6000) {
                row = hi + 1 + rand_r(&seed) % 3;
            } else if (pick < 6001) {
                row = hi + 2 * WINDOW + rand_r(&seed) % WINDOW; /* a jump */
            } else if (pick < 8000 && asked &&
                       hist[(asked - 1 - d % (asked < HIST ? asked : HIST)) % HIST].row + WINDOW >=
                           hi) {
                size_t h = (asked - 1 - d % (asked < HIST ? asked : HIST)) % HIST;
                row = hist[h].row; /* asked again */
                k = hist[h].k;
                again++;
            } else {
                row = hi > d ? hi - d : 1; /* back, at most WINDOW */
                back++;
            }
            if (row > hi)
                hi = row;
            hist[asked % HIST].row = row;
            hist[asked % HIST].k = k;
            bool add = rand_r(&seed) % 4 != 0;
            int len = snprintf(keys[i], 16, "key-%u", k);
            q[i] = (struct sl_seen_query){keys[i], (size_t)len, row, add};
            if (!first[k]) {
                want[i] = 0;
                if (add)
                    first[k] = row;
            } else {
                want[i] = add ? first[k] != row : first[k] < row;
            }
            dups += want[i];
        }
        assert_int_equal(st->ops->seen_keys(st, "run-w", q, n, out), 0);
        for (size_t i = 0; i < n; i++)
            if (out[i] != want[i])
                fail_msg("question %zu (key %.*s, row %llu, %s): %d, want %d", done + i,
                         (int)q[i].keylen, q[i].key, (unsigned long long)q[i].row,
                         q[i].add ? "add" : "check", out[i], want[i]);
        /* The last question of the batch again, at once (a retry): the same. */
        int last = st->ops->seen_key(st, "run-w", q[n - 1].key, q[n - 1].keylen, q[n - 1].row,
                                     q[n - 1].add);
        assert_int_equal(last, want[n - 1]);
        done += n;
    }
    assert_true(dups > N / 4 && dups < 3 * N / 4);
    fprintf(stderr, "# %d duplicates, %d asked again, %d back, highest row %llu\n", dups, again,
            back, (unsigned long long)hi);
    assert_true(again > N / 8 && back > N / 50 && hi > 20 * WINDOW);
    assert_int_equal(st->ops->end_run(st, "run-w"), 0);
    free(first);
    free(q);
    free(keys);
    free(out);
    free(want);
}

/* What the compact store does not cover (state.h): a row more than WINDOW
 * below the highest row asked, asking again about a key whose first row is
 * that far below too, is taken for a duplicate, even when it is that first
 * row (redis: 0). Embedded mode never asks so; everything nearer is exact. */
static void test_far_below_window(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    char key[32];
    assert_int_equal(st->ops->seen_key(st, "run", "a", 1, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 2, true), 0);
    for (int row = 3; row <= WINDOW + 2; row++) {
        int n = snprintf(key, sizeof(key), "k%d", row);
        assert_int_equal(st->ops->seen_key(st, "run", key, (size_t)n, (uint64_t)row, true), 0);
    }
    /* Row 2 is WINDOW below the highest: still exact. */
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 2, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 1, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 3, false), 1);
    for (int row = WINDOW + 3; row <= 3 * WINDOW; row++) {
        int n = snprintf(key, sizeof(key), "k%d", row);
        assert_int_equal(st->ops->seen_key(st, "run", key, (size_t)n, (uint64_t)row, true), 0);
    }
    /* Now rows 1 and 2 are far below: their own keys count as seen. */
    assert_int_equal(st->ops->seen_key(st, "run", "a", 1, 1, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 2, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "b", 1, 1, false), 1);
    /* Still exact far below: a new key (then its row again), a key first
     * had by a recent row, and any later row. */
    assert_int_equal(st->ops->seen_key(st, "run", "c", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "c", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "c", 1, 4, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "c", 1, 6, false), 1);
    int n = snprintf(key, sizeof(key), "k%d", 3 * WINDOW);
    assert_int_equal(st->ops->seen_key(st, "run", key, (size_t)n, 7, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", key, (size_t)n, 7, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "a", 1, 3 * WINDOW + 1, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "a", 1, 3 * WINDOW + 1, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "new", 3, 3 * WINDOW + 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "new", 3, 3 * WINDOW + 2, true), 0);
}

#define MANY  300000
#define BATCH 1024 /* the validator's BATCH_MAX */

/* Asks rows first .. first + MANY - 1 in batches of BATCH, row first + i
 * about key(i) (add unless check_odd and i is odd), each batch twice as a
 * retry after a failure would: both times as want(i) says. */
static void ask_rows(struct sl_state *st, uint64_t first, bool check_odd,
                     int (*key)(char *buf, size_t i), int (*want)(size_t i))
{
    static char keys[BATCH][48];
    struct sl_seen_query q[BATCH];
    int out[BATCH];
    for (size_t i = 0; i < MANY; i += BATCH) {
        size_t n = MANY - i < BATCH ? MANY - i : BATCH;
        for (size_t k = 0; k < n; k++) {
            int len = key(keys[k], i + k);
            q[k] = (struct sl_seen_query){keys[k], (size_t)len, first + i + k,
                                          !check_odd || (i + k) % 2 == 0};
        }
        for (int pass = 0; pass < 2; pass++) {
            memset(out, 0xff, sizeof(out));
            assert_int_equal(st->ops->seen_keys(st, "run-many", q, n, out), 0);
            for (size_t k = 0; k < n; k++)
                if (out[k] != want(i + k))
                    fail_msg("row %llu, pass %d: %d, want %d", (unsigned long long)(first + i + k),
                             pass, out[k], want(i + k));
        }
    }
}

static int key_customer(char *buf, size_t i)
{
    return snprintf(buf, 48, "customer-%zu@example.com", i);
}

/* Every 5th row of the second half has a key of its own, the others the key
 * of a row of the first half. */
static int key_second(char *buf, size_t i)
{
    return key_customer(buf, i % 5 ? i : MANY + i);
}

static int want_new(size_t i)
{
    return 0;
}

static int want_second(size_t i)
{
    return i % 5 != 0;
}

/* Enough keys for the key set's merges and the window's many turns, asked
 * as embedded mode asks: rows in order, in the validator's batches. Every
 * key is new to its first row, asked again by it at once, and seen by every
 * later row, adding or checking. */
static void test_many_keys(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    ask_rows(st, 1, false, key_customer, want_new);
    ask_rows(st, MANY + 1, true, key_second, want_second);
    /* One by one, as seen_key() is called, with the row's retry at once. */
    char key[48];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof(key), "late-%d", i);
        uint64_t row = 2 * MANY + 1 + (uint64_t)i;
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, row, true), 0);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, row, true), 0);
        n = key_customer(key, (size_t)i * 271);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, row, false), 1);
    }
    assert_int_equal(st->ops->seen_key(st, "run-many", "customer-x", 10, 3 * MANY, false), 0);
    assert_int_equal(st->ops->end_run(st, "run-many"), 0);
    assert_int_equal(st->ops->seen_key(st, "run-many", "late-1", 6, 3 * MANY, false), 0);
}

/* Many runs at once, each with its own keys and rows (the same row numbers
 * in every run); ending some forgets those and only those. */
static void test_many_runs(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = fx->st;
    enum { RUNS = 64, ROWS = 3000 };
    char run[16], key[32];
    for (int row = 1; row <= ROWS; row++)
        for (int r = 0; r < RUNS; r++) {
            snprintf(run, sizeof(run), "run-%d", r);
            /* keys repeat every 1000 rows; runs share key names */
            int n = snprintf(key, sizeof(key), "k%d", (row - 1) % 1000);
            int want = row > 1000;
            assert_int_equal(st->ops->seen_key(st, run, key, (size_t)n, (uint64_t)row, true), want);
        }
    for (int r = 0; r < RUNS; r += 2) {
        snprintf(run, sizeof(run), "run-%d", r);
        assert_int_equal(st->ops->end_run(st, run), 0);
    }
    for (int r = 0; r < RUNS; r++) {
        snprintf(run, sizeof(run), "run-%d", r);
        assert_int_equal(st->ops->seen_key(st, run, "k7", 2, ROWS + 1, false), r % 2);
        assert_int_equal(st->ops->seen_key(st, run, "k7", 2, ROWS + 1, true), r % 2);
        /* row 8 had k7 first in a run kept; row ROWS + 1 in one begun again */
        assert_int_equal(st->ops->seen_key(st, run, "k7", 2, 8, true), r % 2 == 0);
    }
    /* the odd ones and the ended ones started again are left for destroy */
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
        cmocka_unit_test_setup_teardown(test_window_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_far_below_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
