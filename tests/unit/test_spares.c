/*
 * Spares (spares.h): objects come back last in, first out, up to max, from
 * several threads at once; cleanup frees what waits.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/spares.h"

struct obj {
    void *link; /* the spares' while it waits */
    int id;
    char pad[2000];
};

static int freed;

static void free_obj(void *p)
{
    freed++;
    free(p);
}

static void test_lifo_and_max(void **state)
{
    (void)state;
    struct sl_spares s;
    sl_spares_init(&s, 2);
    assert_null(sl_spares_get(&s));
    struct obj *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b)), *c = calloc(1, sizeof(*c));
    a->id = 1, b->id = 2, c->id = 3;
    assert_true(sl_spares_put(&s, a));
    assert_true(sl_spares_put(&s, b));
    assert_false(sl_spares_put(&s, c)); /* full: the caller frees it */
    free(c);
    struct obj *x = sl_spares_get(&s);
    assert_ptr_equal(x, b);
    assert_int_equal(x->id, 2); /* kept as it was put, but for the link */
    assert_true(sl_spares_put(&s, x));
    freed = 0;
    sl_spares_cleanup(&s, free_obj);
    assert_int_equal(freed, 2);
}

static struct sl_spares shared;

static void *churn(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        struct obj *o = sl_spares_get(&shared);
        if (!o)
            o = malloc(sizeof(*o));
        if (!o)
            return (void *)1;
        memset(o, 0, sizeof(*o));
        o->id = i;
        if (!sl_spares_put(&shared, o))
            free(o);
    }
    return NULL;
}

/* Four threads take and give back at once: nothing lost, nothing twice
 * (ASan and the count at cleanup tell). */
static void test_threads(void **state)
{
    (void)state;
    sl_spares_init(&shared, 8);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(t[i], &rc);
        assert_null(rc);
    }
    assert_true(shared.n >= 1 && shared.n <= 8);
    int n = shared.n;
    freed = 0;
    sl_spares_cleanup(&shared, free_obj);
    assert_int_equal(freed, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifo_and_max),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
