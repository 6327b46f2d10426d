/*
 * Unit tests of the in-process bus: FIFO order, fan-out to groups,
 * backpressure, close semantics, and a consumer that sends to its own queue.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/msg.h"

static struct sl_msg *rec(uint64_t row)
{
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run-1", "job", 1);
    assert_non_null(m);
    m->u.rec.row = row;
    return m;
}

static void test_fifo_and_fanout(void **state)
{
    struct sl_bus *bus = sl_bus_inproc_new(16);
    const char *topics[] = {"a"};
    struct sl_consumer *c1 = bus->ops->subscribe(bus, "g1", topics, 1, NULL, 0);
    struct sl_consumer *c2 = bus->ops->subscribe(bus, "g2", topics, 1, NULL, 0);
    assert_non_null(c1);
    assert_non_null(c2);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(sl_bus_send(bus, "a", rec(i)), 0);
    for (int g = 0; g < 2; g++) {
        struct sl_consumer *c = g ? c2 : c1;
        for (uint64_t i = 1; i <= 10; i++) {
            struct sl_msg *m;
            const char *topic;
            assert_int_equal(bus->ops->poll(c, &m, &topic, 0), 0);
            assert_string_equal(topic, "a");
            assert_int_equal(m->u.rec.row, i);
            sl_msg_unref(m);
        }
        struct sl_msg *m;
        assert_int_equal(bus->ops->poll(c, &m, NULL, 0), SL_ERR_TIMEOUT);
    }
    /* a topic nobody subscribed to drops the message (no leak under ASan) */
    assert_int_equal(sl_bus_send(bus, "nobody", rec(1)), 0);
    bus->ops->close(bus);
    struct sl_msg *m;
    assert_int_equal(bus->ops->poll(c1, &m, NULL, 0), SL_ERR_CLOSED);
    assert_int_equal(sl_bus_send(bus, "a", rec(1)), SL_ERR_CLOSED);
    bus->ops->unsubscribe(c1);
    bus->ops->unsubscribe(c2);
    sl_bus_destroy(bus);
}

struct producer {
    struct sl_bus *bus;
    int n;
    atomic_int sent;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 1; i <= p->n; i++) {
        if (sl_bus_send(p->bus, "t", rec((uint64_t)i)))
            break;
        atomic_fetch_add(&p->sent, 1);
    }
    return NULL;
}

static void test_backpressure(void **state)
{
    struct sl_bus *bus = sl_bus_inproc_new(4);
    const char *topics[] = {"t"};
    struct sl_consumer *c = bus->ops->subscribe(bus, "g", topics, 1, NULL, 0);
    struct producer p = {.bus = bus, .n = 1000};
    atomic_init(&p.sent, 0);
    pthread_t tid;
    pthread_create(&tid, NULL, produce, &p);
    for (int i = 0; i < 1000 && atomic_load(&p.sent) < 4; i++)
        usleep(10000); /* a loaded machine may take a while to run it */
    usleep(100000);
    /* the producer is blocked on the full queue */
    assert_int_equal(atomic_load(&p.sent), 4);
    for (uint64_t i = 1; i <= 1000; i++) {
        struct sl_msg *m;
        assert_int_equal(bus->ops->poll(c, &m, NULL, 2000), 0);
        assert_int_equal(m->u.rec.row, i);
        sl_msg_unref(m);
    }
    pthread_join(tid, NULL);
    assert_int_equal(atomic_load(&p.sent), 1000);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

static void test_close_wakes_blocked_sender(void **state)
{
    struct sl_bus *bus = sl_bus_inproc_new(2);
    const char *topics[] = {"t"};
    struct sl_consumer *c = bus->ops->subscribe(bus, "g", topics, 1, NULL, 0);
    struct producer p = {.bus = bus, .n = 100};
    atomic_init(&p.sent, 0);
    pthread_t tid;
    pthread_create(&tid, NULL, produce, &p);
    /* until the producer filled the queue (a loaded machine may take a
     * while to run it), and a little longer: it is blocked then */
    for (int i = 0; i < 1000 && atomic_load(&p.sent) < 2; i++)
        usleep(10000);
    usleep(50000);
    bus->ops->close(bus);
    pthread_join(tid, NULL); /* must return: close wakes it */
    assert_int_equal(atomic_load(&p.sent), 2);
    /* what was queued before the close is still delivered */
    struct sl_msg *m;
    assert_int_equal(bus->ops->poll(c, &m, NULL, 0), 0);
    sl_msg_unref(m);
    assert_int_equal(bus->ops->poll(c, &m, NULL, 0), 0);
    sl_msg_unref(m);
    assert_int_equal(bus->ops->poll(c, &m, NULL, 0), SL_ERR_CLOSED);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

static void test_send_to_own_queue(void **state)
{
    struct sl_bus *bus = sl_bus_inproc_new(2);
    const char *topics[] = {"t"};
    struct sl_consumer *c = bus->ops->subscribe(bus, "g", topics, 1, NULL, 0);
    struct sl_msg *m;
    assert_int_equal(bus->ops->poll(c, &m, NULL, 0), SL_ERR_TIMEOUT); /* becomes the owner */
    /* the consumer's own thread may overfill its queue instead of deadlocking */
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(sl_bus_send(bus, "t", rec(i)), 0);
    for (uint64_t i = 1; i <= 10; i++) {
        assert_int_equal(bus->ops->poll(c, &m, NULL, 0), 0);
        assert_int_equal(m->u.rec.row, i);
        sl_msg_unref(m);
    }
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

static void test_msg_take_and_clone(void **state)
{
    struct sl_msg *m = rec(7);
    assert_int_equal(sl_msg_add_src(m, "Name", "Alpha", 5), 0);
    assert_int_equal(sl_msg_add_src(m, "Empty", NULL, 0), 0);
    assert_int_equal(sl_msg_add_problem(m, "_row", "format", "bad", NULL), 0);
    struct sl_msg *t = sl_msg_take(m); /* sole owner: the same message */
    assert_ptr_equal(t, m);
    sl_msg_unref(t);
    sl_msg_ref(m); /* shared: a clone */
    struct sl_msg *c = sl_msg_take(m);
    assert_ptr_not_equal(c, m);
    assert_int_equal(c->u.rec.row, 7);
    assert_int_equal(c->u.rec.nsrc, 2);
    assert_string_equal(c->u.rec.src[0].value, "Alpha");
    assert_null(c->u.rec.src[1].value);
    assert_int_equal(c->u.rec.nprob, 1);
    assert_string_equal(c->u.rec.prob[0].code, "format");
    assert_int_equal(sl_msg_add_src(c, "More", "x", 1), 0);
    sl_msg_unref(c);
    sl_msg_unref(m);
    sl_msg_unref(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_fanout),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_close_wakes_blocked_sender),
        cmocka_unit_test(test_send_to_own_queue),
        cmocka_unit_test(test_msg_take_and_clone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
