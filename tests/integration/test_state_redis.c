/*
 * Integration tests of the Redis state store (state.h, sl_state_redis_new)
 * against real redis-servers on loopback (redis_server.h): the same answers as
 * the local store (a row asking again is no duplicate of itself; a batch
 * answers as its questions one by one; both stores alike), per-run isolation
 * and expiry, a server killed and restarted in the middle of a stream of
 * calls, a reply lost to a timeout, bad urls, threads sharing one store, and
 * the rows a second of one call at a time and of batches of 1024.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "redis_server.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/state.h"

#define SHA1 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define SHA2 "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"

struct fixture {
    struct redis_server plain;   /* the brief's flags: no persistence */
    struct redis_server durable; /* append-only file: survives a kill */
};

static struct fixture g_fx;

static int group_setup(void **state)
{
    if (redis_server_start(&g_fx.plain, false) || redis_server_start(&g_fx.durable, true)) {
        redis_server_stop(&g_fx.plain);
        return -1;
    }
    *state = &g_fx;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_server_stop(&g_fx.plain);
    redis_server_stop(&g_fx.durable);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sl_state *open_store(const struct redis_server *rs, int db, const char *extra)
{
    char url[256], err[512] = "";
    redis_server_url(rs, db, extra, url, sizeof(url));
    struct sl_state *st = sl_state_redis_new(url, err, sizeof(err));
    if (!st)
        fprintf(stderr, "sl_state_redis_new(%s): %s\n", url, err);
    assert_non_null(st);
    assert_string_equal(st->ops->name, "redis");
    return st;
}

/* One command on a helper connection; the reply (caller frees). */
static redisReply *helper_cmd(const struct redis_server *rs, int db, const char *fmt, ...)
{
    redisContext *c = redis_server_connect(rs);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "SELECT %d", db);
    assert_non_null(r);
    freeReplyObject(r);
    va_list ap;
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    redisFree(c);
    return r;
}

static long long helper_int(const struct redis_server *rs, int db, const char *fmt, const char *arg)
{
    redisReply *r = helper_cmd(rs, db, fmt, arg);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static void test_last_sha(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, NULL);
    char out[65];
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), SL_ERR_NOTFOUND);
    assert_int_equal(st->ops->set_last_sha(st, "store-locations", SHA1), 0);
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), 0);
    assert_string_equal(out, SHA1);
    assert_int_equal(st->ops->set_last_sha(st, "store-locations", SHA2), 0);
    assert_int_equal(st->ops->get_last_sha(st, "store-locations", out), 0);
    assert_string_equal(out, SHA2);
    assert_int_equal(st->ops->get_last_sha(st, "other", out), SL_ERR_NOTFOUND);

    /* The documented key, with no expiry. */
    redisReply *r = helper_cmd(&fx->plain, 0, "GET sluice:job:store-locations:last_sha256");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, SHA2);
    freeReplyObject(r);
    assert_int_equal(helper_int(&fx->plain, 0, "TTL %s", "sluice:job:store-locations:last_sha256"),
                     -1);

    /* A second store sees what the first wrote. */
    struct sl_state *again = open_store(&fx->plain, 0, NULL);
    assert_int_equal(again->ops->get_last_sha(again, "store-locations", out), 0);
    assert_string_equal(out, SHA2);
    sl_state_destroy(again);

    /* The same bad input as the local store rejects. */
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    static const char *bad_ids[] = {"", ".", "..", "../etc/passwd", "a/b", "job id", "a:b"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        assert_int_equal(st->ops->set_last_sha(st, bad_ids[i], SHA1), SL_ERR_INVALID);
        assert_int_equal(st->ops->get_last_sha(st, bad_ids[i], out), SL_ERR_INVALID);
    }
    assert_int_equal(st->ops->set_last_sha(st, NULL, SHA1), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, "j", "abc"), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, "j", NULL), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_last_sha(st, "j", SHA1 "0"), SL_ERR_INVALID);
    /* A value someone wrote by hand is an error, not "never succeeded". */
    freeReplyObject(helper_cmd(&fx->plain, 0, "SET sluice:job:edited:last_sha256 %s", "junk"));
    assert_int_equal(st->ops->get_last_sha(st, "edited", out), SL_ERR_PARSE);
    sl_log_set_level(lvl);
    sl_state_destroy(st);
}

static void test_seen_key(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, NULL);
    /* The local store's unit test, answer for answer. */
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 1, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 2, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 2, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 2, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 3, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1\0x", 4, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1\0y", 4, 6, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "", 0, 7, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", NULL, 0, 8, true), 1);

    /* Every run's keys expire, refreshed by new keys; a key's value is the
     * row that first had it. */
    long long ttl = helper_int(&fx->plain, 0, "TTL %s", "sluice:run:run-1:keys");
    assert_true(ttl > 0 && ttl <= 7 * 24 * 3600);
    redisReply *r = helper_cmd(&fx->plain, 0, "HGET sluice:run:run-1:keys k1");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "1");
    freeReplyObject(r);

    /* end_run forgets the run, and only that run. */
    assert_int_equal(st->ops->end_run(st, "run-1"), 0);
    assert_int_equal(helper_int(&fx->plain, 0, "EXISTS %s", "sluice:run:run-1:keys"), 0);
    assert_int_equal(st->ops->seen_key(st, "run-1", "k1", 2, 9, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-2", "k1", 2, 9, false), 1);
    assert_int_equal(st->ops->end_run(st, "run-1"), 0);
    assert_int_equal(st->ops->end_run(st, "never"), 0);
    assert_int_equal(st->ops->end_run(st, "run-2"), 0);
    /* Run ids are any text, as in the local store. */
    assert_int_equal(st->ops->seen_key(st, "run 1:keys", "k1", 2, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run 1", "k1", 2, 2, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run 1:keys", "k1", 2, 2, true), 1);
    assert_int_equal(st->ops->end_run(st, "run 1:keys"), 0);

    /* Long keys are stored as their SHA-256: exact, and 32 bytes each. */
    char a[1000], b[1000];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    b[999] = 'y';
    assert_int_equal(st->ops->seen_key(st, "run-long", a, sizeof(a), 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", b, sizeof(b), 2, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", b, sizeof(b), 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", a, sizeof(a), 3, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-long", a, sizeof(a), 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", a, 999, 4, true), 0); /* a prefix differs */
    /* A 31-byte key and a 32-byte one never meet. */
    assert_int_equal(st->ops->seen_key(st, "run-long", a, 31, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", a, 32, 6, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-long", a, 32, 7, true), 1);
    r = helper_cmd(&fx->plain, 0, "HKEYS sluice:run:run-long:keys");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 5);
    for (size_t i = 0; i < r->elements; i++)
        assert_true(r->element[i]->len <= 32);
    freeReplyObject(r);
    assert_int_equal(st->ops->end_run(st, "run-long"), 0);

    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    assert_int_equal(st->ops->seen_key(st, NULL, "k", 1, 1, true), SL_ERR_INVALID);
    char longrun[1100];
    memset(longrun, 'r', sizeof(longrun) - 1);
    longrun[sizeof(longrun) - 1] = '\0';
    assert_int_equal(st->ops->seen_key(st, longrun, "k", 1, 1, true), SL_ERR_INVALID);
    assert_int_equal(st->ops->end_run(st, longrun), 0);
    assert_int_equal(st->ops->seen_key(st, "r", NULL, 1, 1, true), SL_ERR_INVALID);
    int out[1];
    struct sl_seen_query bad = {.key = NULL, .keylen = 1, .row = 1, .add = true};
    assert_int_equal(st->ops->seen_keys(st, "r", &bad, 1, out), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys(st, NULL, NULL, 0, NULL), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys(st, "r", NULL, 0, NULL), 0);
    sl_log_set_level(lvl);
    sl_state_destroy(st);
}

/* As the local store's test_same_row: a row asking again is no duplicate of
 * itself and changes nothing; another row is. */
static void test_same_row(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, NULL);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 6, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 4, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "k", 1, 4, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 9, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 10, false), 1);
    assert_int_equal(st->ops->seen_key(st, "run", "n", 1, 8, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, UINT64_MAX - 1, false), 0);
    assert_int_equal(st->ops->seen_key(st, "run", "big", 3, 0, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-b", "k", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-b", "k", 1, 5, true), 0);
    assert_int_equal(helper_int(&fx->plain, 0, "HLEN %s", "sluice:run:run:keys"), 3);
    assert_int_equal(st->ops->end_run(st, "run"), 0);
    assert_int_equal(st->ops->end_run(st, "run-b"), 0);
    sl_state_destroy(st);
}

#define Q(k, r, a)                                                                                 \
    {                                                                                              \
        .key = k, .keylen = sizeof(k) - 1, .row = r, .add = a                                      \
    }

/* As the local store's test_batch. */
static void test_batch(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, NULL);
    const struct sl_seen_query q[] = {
        Q("a", 1, true),  Q("b", 2, true),  Q("a", 3, true), Q("c", 4, false), Q("c", 5, true),
        Q("b", 6, false), Q("d", 8, false), Q("d", 7, true), Q("a", 1, true),
    };
    const int want[] = {0, 0, 1, 0, 0, 1, 0, 0, 0};
    const size_t n = sizeof(q) / sizeof(q[0]);
    int out[sizeof(q) / sizeof(q[0])];
    for (int pass = 0; pass < 3; pass++) {
        memset(out, 0xff, sizeof(out));
        assert_int_equal(st->ops->seen_keys(st, "run-batch", q, n, out), 0);
        for (size_t i = 0; i < n; i++) {
            int w = pass && i == 6 ? 1 : want[i];
            if (out[i] != w)
                fail_msg("pass %d, question %zu: %d, want %d", pass, i, out[i], w);
        }
    }
    assert_int_equal(st->ops->seen_key(st, "run-batch", "a", 1, 1, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "a", 1, 3, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "c", 1, 5, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-batch", "c", 1, 4, false), 0);
    assert_int_equal(st->ops->end_run(st, "run-batch"), 0);
    sl_state_destroy(st);
}

/* n questions about nkeys random keys (a third longer than 31 bytes, so
 * stored hashed), their rows rising with repeats, three in four adding;
 * a and b for two stores' answers. seed goes on for the caller. */
struct qset {
    struct sl_seen_query *q;
    char (*keys)[48];
    int *a, *b;
};

static struct qset qset_new(size_t n, unsigned nkeys, unsigned *seed)
{
    struct qset s = {calloc(n, sizeof(*s.q)), calloc(n, 48), calloc(n, sizeof(int)),
                     calloc(n, sizeof(int))};
    assert_true(s.q && s.keys && s.a && s.b);
    for (size_t i = 0; i < n; i++) {
        unsigned k = rand_r(seed) % nkeys;
        int len = snprintf(s.keys[i], 48, k % 3 ? "key-%u" : "a-key-longer-than-31-bytes-%u", k);
        s.q[i] = (struct sl_seen_query){.key = s.keys[i],
                                        .keylen = (size_t)len,
                                        .row = 1 + i / 2 + rand_r(seed) % 3,
                                        .add = rand_r(seed) % 4 != 0};
    }
    return s;
}

static void qset_free(struct qset *s)
{
    free(s->q);
    free(s->keys);
    free(s->a);
    free(s->b);
}

/* The local store (embedded mode's) in a new temporary directory: the
 * reference Redis's answers are held to. */
struct local_ref {
    char dir[32];
    struct sl_state *st;
};

static void local_ref_open(struct local_ref *r)
{
    char err[256] = "";
    snprintf(r->dir, sizeof(r->dir), "/tmp/sluice-state-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    r->st = sl_state_local_new(r->dir, err, sizeof(err));
    if (!r->st)
        fail_msg("local store: %s", err);
}

static void local_ref_close(struct local_ref *r)
{
    sl_state_destroy(r->st);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    assert_int_equal(system(cmd), 0);
}

/* seen_keys_ask() and seen_keys_answer() answer as seen_keys() would, one
 * call after the other, with work (another call, on another connection)
 * between the ask and the answer; also when every connection was killed in
 * between (the answer asks again) or the server forgot the script. */
static void test_ask_answer(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 5, NULL);
    struct local_ref ref;
    local_ref_open(&ref);
    struct sl_state *loc = ref.st;
    assert_non_null(st->ops->seen_keys_ask);
    assert_non_null(st->ops->seen_keys_answer);
    enum { N = 20000 };
    unsigned seed = 777;
    struct qset qs = qset_new(N, 4000, &seed);
    struct sl_seen_query *q = qs.q;
    int *a = qs.a, *b = qs.b;
    size_t calls = 0;
    for (size_t i = 0; i < N; calls++) {
        size_t n = 1 + rand_r(&seed) % 1500;
        if (n > N - i)
            n = N - i;
        struct sl_seen_call *call = NULL;
        assert_int_equal(st->ops->seen_keys_ask(st, "run-ask", q + i, n, &call), 0);
        assert_non_null(call);
        if (calls % 5 == 1) {
            redisReply *r = helper_cmd(&fx->plain, 5, "CLIENT KILL TYPE normal");
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            assert_true(r->integer >= 1); /* at least the call's connection */
            freeReplyObject(r);
        } else if (calls % 5 == 2) {
            freeReplyObject(helper_cmd(&fx->plain, 5, "SCRIPT FLUSH"));
        } else if (calls % 5 == 3) {
            assert_int_equal(st->ops->seen_key(st, "run-other", "k", 1, 1, true), 0);
            assert_int_equal(st->ops->seen_key(st, "run-other", "k", 1, 2, true), 1);
        }
        assert_int_equal(st->ops->seen_keys_answer(st, call, a + i), 0);
        assert_int_equal(loc->ops->seen_keys(loc, "run-ask", q + i, n, b + i), 0);
        i += n;
    }
    for (size_t i = 0; i < N; i++)
        if (a[i] != b[i])
            fail_msg("question %zu: redis %d, local %d", i, a[i], b[i]);
    /* bad input is refused at the ask; nothing asked answers at once */
    struct sl_seen_call *call = NULL;
    struct sl_seen_query bad = {.key = NULL, .keylen = 3};
    assert_int_equal(st->ops->seen_keys_ask(st, "run-ask", &bad, 1, &call), SL_ERR_INVALID);
    assert_null(call);
    assert_int_equal(st->ops->seen_keys_ask(st, NULL, q, 1, &call), SL_ERR_INVALID);
    assert_int_equal(st->ops->seen_keys_ask(st, "run-ask", NULL, 0, &call), 0);
    assert_int_equal(st->ops->seen_keys_answer(st, call, NULL), 0);
    assert_int_equal(st->ops->end_run(st, "run-ask"), 0);
    assert_int_equal(st->ops->end_run(st, "run-other"), 0);
    local_ref_close(&ref);
    qset_free(&qs);
    sl_state_destroy(st);
}

/* Random questions, many long keys among them, asked in batches of random
 * sizes (some bigger than one script call: several in one pipeline) answer
 * as the local store answers them; so does the whole list asked again, after
 * the server forgot the script. */
static void test_batch_matches_local(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 4, NULL);
    struct local_ref ref;
    local_ref_open(&ref);
    struct sl_state *loc = ref.st;
    enum { N = 30000 };
    unsigned seed = 4242;
    struct qset qs = qset_new(N, 5000, &seed);
    struct sl_seen_query *q = qs.q;
    int *a = qs.a, *b = qs.b;
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            freeReplyObject(helper_cmd(&fx->plain, 4, "SCRIPT FLUSH"));
        for (size_t i = 0; i < N;) {
            size_t n = 1 + rand_r(&seed) % 2500;
            if (n > N - i)
                n = N - i;
            assert_int_equal(st->ops->seen_keys(st, "run-x", q + i, n, a + i), 0);
            assert_int_equal(loc->ops->seen_keys(loc, "run-x", q + i, n, b + i), 0);
            i += n;
        }
        for (size_t i = 0; i < N; i++)
            if (a[i] != b[i])
                fail_msg("pass %d, question %zu: redis %d, local %d", pass, i, a[i], b[i]);
    }
    assert_int_equal(st->ops->end_run(st, "run-x"), 0);
    local_ref_close(&ref);
    qset_free(&qs);
    sl_state_destroy(st);
}

#define MANY  100000
#define BATCH 1024

static void test_many_keys(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 1, NULL);
    char key[48];
    double t0 = now_s();
    for (int i = 0; i < MANY; i++) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, (uint64_t)i + 1, true),
                         0);
    }
    double single = now_s() - t0;
    /* Every key is there exactly once; re-adding a sample says seen. */
    assert_int_equal(helper_int(&fx->plain, 1, "HLEN %s", "sluice:run:run-many:keys"), MANY);
    for (int i = 0; i < MANY; i += 97) {
        int n = snprintf(key, sizeof(key), "customer-%d@example.com", i);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, MANY + 1, false), 1);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, MANY + 1, true), 1);
        assert_int_equal(st->ops->seen_key(st, "run-many", key, (size_t)n, (uint64_t)i + 1, true),
                         0);
    }
    assert_int_equal(st->ops->seen_key(st, "run-many", "customer-x", 10, 1, false), 0);
    assert_int_equal(st->ops->end_run(st, "run-many"), 0);
    assert_int_equal(helper_int(&fx->plain, 1, "EXISTS %s", "sluice:run:run-many:keys"), 0);

    /* The same keys in batches of BATCH, as the validator asks: one round
     * trip each. Then every one again, as a redelivery would: no duplicate. */
    static char keys[BATCH][48];
    struct sl_seen_query q[BATCH];
    int out[BATCH];
    double batched = 0;
    for (int pass = 0; pass < 2; pass++) {
        t0 = now_s();
        for (int i = 0; i < MANY; i += BATCH) {
            size_t n = MANY - i < BATCH ? (size_t)(MANY - i) : BATCH;
            for (size_t k = 0; k < n; k++) {
                int len = snprintf(keys[k], sizeof(keys[k]), "customer-%zu@example.com", i + k);
                q[k] = (struct sl_seen_query){keys[k], (size_t)len, i + k + 1, true};
            }
            assert_int_equal(st->ops->seen_keys(st, "run-many", q, n, out), 0);
            for (size_t k = 0; k < n; k++)
                if (out[k] != 0)
                    fail_msg("pass %d, key %zu: a duplicate", pass, i + k);
        }
        if (!pass)
            batched = now_s() - t0;
    }
    assert_int_equal(helper_int(&fx->plain, 1, "HLEN %s", "sluice:run:run-many:keys"), MANY);
    fprintf(stderr,
            "# %d keys one by one in %.2f s (%.0f rows/s); in batches of %d in %.2f s "
            "(%.0f rows/s)\n",
            MANY, single, MANY / single, BATCH, batched, MANY / batched);
    assert_int_equal(st->ops->end_run(st, "run-many"), 0);
    sl_state_destroy(st);
}

/* ---- a server killed and restarted during a stream of calls ---------- */

#define STREAM_KEYS 3000

struct streamer {
    struct sl_state *st;
    volatile int done;
    atomic_int paused; /* 1: the streamer waits at a quarter for gate */
    atomic_int gate;   /* set once the server is down */
    int fresh, seen, bad, calls;
    double slowest;
};

/* Adds keys 0..STREAM_KEYS-1 (key i as row i), each followed by an add of an
 * earlier key by another row (and every other time both in one batch):
 * every fresh add must answer 0 and every later row 1, outage or not. */
static void *streamer_main(void *arg)
{
    struct streamer *s = arg;
    char key[32];
    for (int i = 0; i < STREAM_KEYS; i++) {
        if (i == STREAM_KEYS / 4) {
            /* the crash must come in the middle, however loaded the machine */
            atomic_store(&s->paused, 1);
            while (!atomic_load(&s->gate)) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
        }
        char old[32];
        int n = snprintf(key, sizeof(key), "key-%d", i);
        int n2 = snprintf(old, sizeof(old), "key-%d", i / 2);
        uint64_t row = (uint64_t)i, later = STREAM_KEYS + (uint64_t)i;
        int rc, rc2;
        double t = now_s();
        if (i % 2) {
            struct sl_seen_query q[2] = {{key, (size_t)n, row, true},
                                         {old, (size_t)n2, later, true}};
            int out[2] = {-1, -1};
            rc = rc2 = s->st->ops->seen_keys(s->st, "run-restart", q, 2, out);
            if (rc == 0) {
                rc = out[0];
                rc2 = out[1];
            }
        } else {
            rc = s->st->ops->seen_key(s->st, "run-restart", key, (size_t)n, row, true);
            rc2 = s->st->ops->seen_key(s->st, "run-restart", old, (size_t)n2, later, true);
        }
        double dt = now_s() - t;
        if (dt > s->slowest)
            s->slowest = dt;
        if (rc == 0)
            s->fresh++;
        else
            s->bad++;
        if (rc2 == 1)
            s->seen++;
        else
            s->bad++;
        s->calls = i + 1;
        if (i % 8 == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    s->done = 1;
    return NULL;
}

static void test_restart(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->durable, 0, "?retry_for=30&timeout=2");
    assert_int_equal(st->ops->set_last_sha(st, "job-r", SHA1), 0);
    struct streamer s = {.st = st};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, streamer_main, &s), 0);
    while (!atomic_load(&s.paused)) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    /* A crash in the middle: calls block until the server is back. */
    redis_server_kill(&fx->durable);
    atomic_store(&s.gate, 1);
    struct timespec down = {1, 0};
    nanosleep(&down, NULL);
    int during = s.calls;
    int restarted = redis_server_restart(&fx->durable);
    pthread_join(th, NULL);
    assert_int_equal(restarted, 0);
    fprintf(stderr, "# %d calls before the restart was over, slowest call %.2f s\n", during,
            s.slowest);
    assert_true(during < STREAM_KEYS);
    assert_true(s.slowest >= 0.8); /* some call did wait through the outage */
    assert_int_equal(s.bad, 0);
    assert_int_equal(s.fresh, STREAM_KEYS);
    assert_int_equal(s.seen, STREAM_KEYS);
    assert_int_equal(helper_int(&fx->durable, 0, "HLEN %s", "sluice:run:run-restart:keys"),
                     STREAM_KEYS);
    char out[65];
    assert_int_equal(st->ops->get_last_sha(st, "job-r", out), 0);
    assert_string_equal(out, SHA1);
    assert_int_equal(st->ops->end_run(st, "run-restart"), 0);
    sl_state_destroy(st);
}

/* An outage longer than retry_for: the call gives up with SL_ERR_RETRY after
 * about retry_for, and the stage's retry later succeeds. */
static void test_gives_up(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->durable, 0, "?retry_for=0.5&connect_timeout=0.2");
    assert_int_equal(st->ops->seen_key(st, "run-gu", "a", 1, 1, true), 0);
    redis_server_kill(&fx->durable);
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    double t = now_s();
    int rc = st->ops->seen_key(st, "run-gu", "b", 1, 2, true);
    double dt = now_s() - t;
    char out[65];
    int rc2 = st->ops->get_last_sha(st, "job-r", out);
    const struct sl_seen_query q[] = {Q("c", 3, true), Q("a", 4, true), Q("c", 5, true)};
    int ans[3];
    int rc3 = st->ops->seen_keys(st, "run-gu", q, 3, ans);
    sl_log_set_level(lvl);
    int restarted = redis_server_restart(&fx->durable);
    assert_int_equal(restarted, 0);
    assert_int_equal(rc, SL_ERR_RETRY);
    assert_int_equal(rc2, SL_ERR_RETRY);
    assert_int_equal(rc3, SL_ERR_RETRY);
    assert_true(dt >= 0.4 && dt < 5.0);
    /* the stage's retries, as the same rows */
    assert_int_equal(st->ops->seen_key(st, "run-gu", "b", 1, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-gu", "b", 1, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-gu", "b", 1, 3, true), 1);
    assert_int_equal(st->ops->seen_key(st, "run-gu", "a", 1, 2, true), 1);
    for (int pass = 0; pass < 2; pass++) {
        memset(ans, 0xff, sizeof(ans));
        assert_int_equal(st->ops->seen_keys(st, "run-gu", q, 3, ans), 0);
        assert_int_equal(ans[0], 0);
        assert_int_equal(ans[1], 1);
        assert_int_equal(ans[2], 1);
    }
    assert_int_equal(st->ops->end_run(st, "run-gu"), 0);
    sl_state_destroy(st);
}

/* ---- live progress ------------------------------------------------------ */

static void progress_sum(const char *field, uint64_t value, void *arg)
{
    json_t *o = arg;
    json_object_set_new(o, field, json_integer((json_int_t)value));
}

/* Counters add up across calls (and stores: two services of a stage), are
 * stamped and expire; with Redis away an add gives up at once instead of
 * retrying for retry_for, and the next one after Redis is back counts. */
static void test_progress(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->durable, 0, "?retry_for=5&connect_timeout=0.2");
    struct sl_state *st2 = open_store(&fx->durable, 0, NULL);
    const char *f1[] = {"parser.records_out", "mapper.records_in"};
    const uint64_t d1[] = {1000, 900};
    assert_int_equal(st->ops->progress_add(st, "run-pg", f1, d1, 2), 0);
    const char *f2[] = {"mapper.records_in", "mapper.rejected_out"};
    const uint64_t d2[] = {100, 12345678901234ULL};
    assert_int_equal(st2->ops->progress_add(st2, "run-pg", f2, d2, 2), 0);
    json_t *o = json_object();
    assert_int_equal(st->ops->progress_get(st, "run-pg", progress_sum, o), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "parser.records_out")), 1000);
    assert_int_equal(json_integer_value(json_object_get(o, "mapper.records_in")), 1000);
    assert_int_equal(json_integer_value(json_object_get(o, "mapper.rejected_out")),
                     12345678901234LL);
    assert_true(json_integer_value(json_object_get(o, "updated_ms")) > 1700000000000LL);
    json_decref(o);
    long long ttl = helper_int(&fx->durable, 0, "TTL %s", "sluice:run:run-pg:progress");
    assert_true(ttl > 6 * 24 * 3600 && ttl <= 7 * 24 * 3600);
    /* nothing counted: nothing called */
    o = json_object();
    assert_int_equal(st->ops->progress_get(st, "run-none", progress_sum, o), 0);
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);

    redis_server_kill(&fx->durable);
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    double t = now_s();
    int rc = st->ops->progress_add(st, "run-pg", f1, d1, 2);
    double dt = now_s() - t;
    sl_log_set_level(lvl);
    assert_int_equal(redis_server_restart(&fx->durable), 0);
    assert_int_not_equal(rc, 0);
    assert_true(dt < 2.0); /* not retry_for's 5 s */
    assert_int_equal(st->ops->progress_add(st, "run-pg2", f1, d1, 1), 0);
    assert_int_equal(helper_int(&fx->durable, 0, "EXISTS %s", "sluice:run:run-pg2:progress"), 1);
    sl_state_destroy(st);
    sl_state_destroy(st2);
}

/* ---- a reply lost to the command timeout ----------------------------- */

/* Sends DEBUG SLEEP secs on a new connection without waiting for the reply,
 * and gives Redis a moment to start sleeping; debug_sleep_end reads the
 * reply, that is, waits until Redis is awake again. */
static redisContext *debug_sleep_begin(const struct redis_server *rs, const char *secs)
{
    redisContext *c = redis_server_connect(rs);
    assert_non_null(c);
    assert_int_equal(redisAppendCommand(c, "DEBUG SLEEP %s", secs), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(c, &done), REDIS_OK);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    return c;
}

static void debug_sleep_end(redisContext *c)
{
    void *reply = NULL;
    assert_int_equal(redisGetReply(c, &reply), REDIS_OK);
    assert_non_null(reply);
    assert_int_equal(((redisReply *)reply)->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);
    redisFree(c);
}

static void test_lost_reply(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, "?timeout=0.3&retry_for=20");
    /* Warm the pool's connection so the add goes out at once. */
    assert_int_equal(st->ops->seen_key(st, "run-lost", "warm", 4, 1, true), 0);
    redisContext *c = debug_sleep_begin(&fx->plain, "1.5");
    /* Redis is asleep: this add times out, is retried on a new connection,
     * and both copies run once Redis wakes up. Still one new key. */
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    int rc = st->ops->seen_key(st, "run-lost", "k", 1, 2, true);
    sl_log_set_level(lvl);
    debug_sleep_end(c);
    assert_int_equal(rc, 0);
    assert_int_equal(st->ops->seen_key(st, "run-lost", "k", 1, 3, true), 1);
    assert_int_equal(helper_int(&fx->plain, 0, "HLEN %s", "sluice:run:run-lost:keys"), 2);

    /* The same with a batch of several script calls in one pipeline, a key
     * twice in it: sent twice, answered as once. */
    enum { N = 2500 };
    struct sl_seen_query *q = calloc(N, sizeof(*q));
    char(*keys)[16] = calloc(N, 16);
    int *out = calloc(N, sizeof(int));
    assert_true(q && keys && out);
    for (size_t i = 0; i < N; i++) {
        int len = snprintf(keys[i], 16, "b-%zu", i < N - 1 ? i : 0);
        q[i] = (struct sl_seen_query){keys[i], (size_t)len, 100 + i, true};
    }
    c = debug_sleep_begin(&fx->plain, "1.5");
    sl_log_set_level(SL_LOG_OFF);
    rc = st->ops->seen_keys(st, "run-lost", q, N, out);
    sl_log_set_level(lvl);
    debug_sleep_end(c);
    assert_int_equal(rc, 0);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N; i++)
            if (out[i] != (i == N - 1))
                fail_msg("pass %d, question %zu: %d", pass, i, out[i]);
        memset(out, 0xff, N * sizeof(int));
        assert_int_equal(st->ops->seen_keys(st, "run-lost", q, N, out), 0);
    }
    assert_int_equal(helper_int(&fx->plain, 0, "HLEN %s", "sluice:run:run-lost:keys"), N + 1);
    free(q);
    free(keys);
    free(out);
    assert_int_equal(st->ops->end_run(st, "run-lost"), 0);
    sl_state_destroy(st);
}

/* The add gives up (SL_ERR_RETRY) although its command did reach Redis and
 * ran later: the stage's retry of the same key must still be the new one. */
static void test_retry_after_lost_reply(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 0, "?timeout=0.3&retry_for=0.5");
    assert_int_equal(st->ops->seen_key(st, "run-lost2", "warm", 4, 1, true), 0);
    redisContext *c = debug_sleep_begin(&fx->plain, "2");
    enum sl_log_level lvl = sl_log_get_level();
    sl_log_set_level(SL_LOG_OFF);
    int rc = st->ops->seen_key(st, "run-lost2", "k", 1, 2, true);
    sl_log_set_level(lvl);
    debug_sleep_end(c);
    assert_int_equal(rc, SL_ERR_RETRY);
    /* The write landed while nobody listened. The retry, in this process or
     * (after a crash) another, is the same row: still the new one. */
    assert_int_equal(helper_int(&fx->plain, 0, "HLEN %s", "sluice:run:run-lost2:keys"), 2);
    struct sl_state *other = open_store(&fx->plain, 0, NULL);
    assert_int_equal(other->ops->seen_key(other, "run-lost2", "k", 1, 2, true), 0);
    sl_state_destroy(other);
    assert_int_equal(st->ops->seen_key(st, "run-lost2", "k", 1, 2, true), 0);
    assert_int_equal(st->ops->seen_key(st, "run-lost2", "k", 1, 3, true), 1);
    assert_int_equal(st->ops->end_run(st, "run-lost2"), 0);
    sl_state_destroy(st);
}

/* ---- urls ------------------------------------------------------------- */

static void expect_bad(const char *url, const char *needle)
{
    char err[512] = "";
    struct sl_state *st = sl_state_redis_new(url, err, sizeof(err));
    if (st || !strstr(err, needle))
        fprintf(stderr, "url %s: got \"%s\", want \"%s\"\n", url, err, needle);
    assert_null(st);
    assert_non_null(strstr(err, needle));
    assert_null(strstr(err, "s3cret"));
}

static void test_urls(void **state)
{
    struct fixture *fx = *state;
    char url[512], err[512];
    expect_bad("http://127.0.0.1:6379/0", "must start with redis:// or unix://");
    expect_bad("rediss://127.0.0.1:6379/0", "TLS");
    expect_bad("redis://:s3cret@127.0.0.1:notaport/0", "the port must be a number");
    expect_bad("redis://:s3cret@127.0.0.1:70000/0", "the port must be a number");
    expect_bad("redis://127.0.0.1:6379/x", "the database after '/' must be a number");
    expect_bad("redis:///0", "no host");
    expect_bad("redis://s3cret@127.0.0.1:6379/0", ":password or user:password");
    expect_bad("redis://:s3cret%zz@127.0.0.1:6379/0", "bad %-escape");
    expect_bad("redis://127.0.0.1:6379/0?timeout=-1",
               "timeout must be a positive number of seconds");
    expect_bad("redis://127.0.0.1:6379/0?colour=blue", "unknown query parameter \"colour\"");
    expect_bad("unix://relative.sock", "absolute socket path");
    expect_bad("unix:///tmp/x.sock?db=-1", "db must be a whole number from 0");
    expect_bad("redis://127.0.0.1/0?run_ttl=1.5", "run_ttl must be a whole number of seconds");
    expect_bad("redis://127.0.0.1/0?db=1", "unknown query parameter \"db\"");
    expect_bad("redis://127.0.0.1/0?timeout", "query parameter \"timeout\" has no value");
    int closed = redis_server_free_port();
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/0", closed);
    char want[128];
    snprintf(want, sizeof(want), "could not connect to redis at 127.0.0.1:%d: connection refused",
             closed);
    expect_bad(url, want);

    /* A password (percent-encoded) and a database number. */
    freeReplyObject(helper_cmd(&fx->plain, 0, "CONFIG SET requirepass %s", "p@ss/s3cret"));
    snprintf(url, sizeof(url), "redis://:p%%40ss%%2Fs3cret@127.0.0.1:%d/3", fx->plain.port);
    err[0] = '\0';
    struct sl_state *st = sl_state_redis_new(url, err, sizeof(err));
    if (!st)
        fprintf(stderr, "%s\n", err);
    assert_non_null(st);
    assert_int_equal(st->ops->set_last_sha(st, "in-db-3", SHA1), 0);
    sl_state_destroy(st);
    snprintf(url, sizeof(url), "redis://default:wrong-s3cret@127.0.0.1:%d/3", fx->plain.port);
    expect_bad(url, "could not authenticate to redis at 127.0.0.1");
    /* The helper's new connections need the password now. */
    redisContext *c = redis_server_connect(&fx->plain);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "AUTH %s", "p@ss/s3cret");
    assert_non_null(r);
    freeReplyObject(r);
    r = redisCommand(c, "CONFIG SET requirepass %s", "");
    assert_non_null(r);
    freeReplyObject(r);
    redisFree(c);
    redisReply *got = helper_cmd(&fx->plain, 3, "GET sluice:job:in-db-3:last_sha256");
    assert_int_equal(got->type, REDIS_REPLY_STRING);
    assert_string_equal(got->str, SHA1);
    freeReplyObject(got);
    got = helper_cmd(&fx->plain, 0, "EXISTS sluice:job:in-db-3:last_sha256");
    assert_int_equal(got->integer, 0);
    freeReplyObject(got);

    /* A unix socket, with its database as a parameter. */
    snprintf(url, sizeof(url), "unix://%s?db=3&timeout=2", fx->plain.sock);
    st = sl_state_redis_new(url, err, sizeof(err));
    if (!st)
        fprintf(stderr, "%s\n", err);
    assert_non_null(st);
    char out[65];
    assert_int_equal(st->ops->get_last_sha(st, "in-db-3", out), 0);
    assert_string_equal(out, SHA1);
    sl_state_destroy(st);

    /* NULL: SLUICE_REDIS_URL. */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", fx->plain.port);
    setenv("SLUICE_REDIS_URL", url, 1);
    st = sl_state_redis_new(NULL, err, sizeof(err));
    unsetenv("SLUICE_REDIS_URL");
    assert_non_null(st);
    assert_int_equal(st->ops->get_last_sha(st, "in-db-3", out), 0);
    sl_state_destroy(st);
    sl_state_destroy(NULL);
}

/* ---- threads ---------------------------------------------------------- */

#define THREADS 4
#define TKEYS   5000

struct worker {
    struct sl_state *st;
    int id;
    int fresh; /* shared keys that were new when this thread added them */
    int bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char key[32];
    for (int i = 0; i < TKEYS; i++) {
        /* Every thread adds the same shared keys: each is new exactly once. */
        int n = snprintf(key, sizeof(key), "shared-%d", i);
        uint64_t row = (uint64_t)i * THREADS + (uint64_t)w->id;
        int rc = w->st->ops->seen_key(w->st, "run-threads", key, (size_t)n, row, true);
        if (rc == 0)
            w->fresh++;
        else if (rc != 1)
            w->bad++;
        /* And its own keys, which no one else has. */
        n = snprintf(key, sizeof(key), "own-%d-%d", w->id, i);
        if (w->st->ops->seen_key(w->st, "run-threads", key, (size_t)n, row, true) != 0)
            w->bad++;
        if (w->st->ops->seen_key(w->st, "run-threads", key, (size_t)n, row + 1, false) != 1)
            w->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fixture *fx = *state;
    struct sl_state *st = open_store(&fx->plain, 2, NULL);
    pthread_t th[THREADS];
    struct worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.st = st, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    int fresh = 0, bad = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        fresh += w[i].fresh;
        bad += w[i].bad;
    }
    assert_int_equal(bad, 0);
    assert_int_equal(fresh, TKEYS);
    assert_int_equal(helper_int(&fx->plain, 2, "HLEN %s", "sluice:run:run-threads:keys"),
                     TKEYS * (THREADS + 1));
    assert_int_equal(st->ops->end_run(st, "run-threads"), 0);
    sl_state_destroy(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_sha),
        cmocka_unit_test(test_seen_key),
        cmocka_unit_test(test_same_row),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_batch_matches_local),
        cmocka_unit_test(test_ask_answer),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_lost_reply),
        cmocka_unit_test(test_retry_after_lost_reply),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_gives_up),
        cmocka_unit_test(test_progress),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
