/*
 * The scheduler against a real PostgreSQL and the mock Kafka cluster: a job
 * stored is due at the next slot of its calendar (every 5 minutes on :00,
 * :05, ...; daily at 02:30 in Europe/Berlin); a job whose slot was
 * missed an hour ago fires exactly once, also with two schedulers ticking at
 * the same moment; its next run is the first slot after now; the ticket on
 * the topic carries the run recorded as queued; a disabled job never fires;
 * three replicas ticking together over a simulated half hour fire each
 * slot of a job due every minute exactly once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "sluice/bus.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/pg.h"

static struct pg_server pg;
static struct kafka_mock km;

static int setup(void **state)
{
    static const char *const topics[] = {"sluice.tickets:1", NULL};
    if (pg_server_start(&pg)) {
        fprintf(stderr, "cannot start postgresql: %s\n", pg.err);
        return -1;
    }
    return kafka_mock_start(&km, topics);
}

static int teardown(void **state)
{
    kafka_mock_stop(&km);
    pg_server_stop(&pg);
    return 0;
}

static PGconn *db(void)
{
    char err[512];
    PGconn *c = sl_pg_connect(pg.conninfo, 10, err, sizeof(err));
    if (!c)
        fail_msg("%s", err);
    return c;
}

static struct sl_bus *bus_new(void)
{
    char err[512];
    struct sl_kafka_conf kc = {.brokers = km.bootstrap, .client_id = "test-scheduler"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    if (!bus)
        fail_msg("%s", err);
    return bus;
}

static void put(PGconn *c, const char *name, const char *schedule)
{
    char doc[1024], err[512];
    snprintf(doc, sizeof(doc),
             "{\"name\": \"%s\", \"source\": {\"url\": \"s.csv\"}, \"schedule\": %s,"
             "\"target\": {\"object\": \"o\", \"key\": [\"id\"],"
             "\"attributes\": {\"id\": {\"type\": \"text\"}}}, \"mapping\": {\"id\": \"ID\"}}",
             name, schedule);
    struct sl_job *job = sl_job_load_json(doc, strlen(doc), NULL, err, sizeof(err));
    if (!job)
        fail_msg("%s", err);
    uint32_t v;
    int created;
    if (sl_control_put_job(c, job, doc, strlen(doc), &v, &created, err, sizeof(err)))
        fail_msg("%s", err);
    sl_job_destroy(job);
}

static const char *one(PGconn *c, const char *sql)
{
    static char out[256];
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

struct ticker {
    int fired;
    int rc;
};

static void *tick_thread(void *arg)
{
    struct ticker *t = arg;
    char err[512];
    PGconn *c = sl_pg_connect(pg.conninfo, 10, err, sizeof(err));
    struct sl_kafka_conf kc = {.brokers = km.bootstrap, .client_id = "t"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    t->rc = c && bus ? sl_scheduler_tick(c, bus, sl_now_us(), &t->fired, err, sizeof(err)) : -1;
    if (t->rc)
        fprintf(stderr, "tick: %s\n", err);
    sl_bus_destroy(bus);
    PQfinish(c);
    return NULL;
}

static void test_missed_slot_fires_once(void **state)
{
    PGconn *c = db();
    char err[512];
    assert_int_equal(sl_control_migrate(c, err, sizeof(err)), 0);
    put(c, "every5", "{\"every\": \"5m\"}");
    put(c, "off", "{\"every\": \"5m\", \"enabled\": false}");
    put(c, "daily", "{\"every\": \"daily\", \"at\": \"02:30\", \"timezone\": \"Europe/Berlin\"}");
    /* stored: due at the next slot of the calendar (schedule.h); a disabled
     * job waits */
    assert_string_equal(one(c, "SELECT next_run_at > now() AND next_run_at <= now() + "
                               "interval '5 minutes' AND extract(minute FROM next_run_at)::int % 5 "
                               "= 0 FROM sluice_jobs WHERE id = 'every5'"),
                        "t");
    assert_string_equal(one(c, "SELECT to_char(next_run_at AT TIME ZONE 'Europe/Berlin', "
                               "'HH24:MI') FROM sluice_jobs WHERE id = 'daily'"),
                        "02:30");
    assert_string_equal(one(c, "SELECT enabled FROM sluice_jobs WHERE id = 'off'"), "f");

    /* the scheduler was down for an hour: twelve slots missed */
    PQclear(PQexec(c, "UPDATE sluice_jobs SET next_run_at = now() - interval '1 hour'"));
    struct ticker t[2] = {{0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, tick_thread, &t[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(t[0].rc, 0);
    assert_int_equal(t[1].rc, 0);
    assert_int_equal(t[0].fired + t[1].fired, 2); /* every5 and daily once; off never */
    assert_string_equal(
        one(c, "SELECT count(*) FROM sluice_runs WHERE job_id = 'every5' AND trigger = 'schedule'"),
        "1");
    assert_string_equal(one(c, "SELECT next_run_at > now() AND next_run_at <= now() + "
                               "interval '5 minutes' FROM sluice_jobs WHERE id = 'every5'"),
                        "t");
    /* daily: the next 02:30 in Berlin after now, within a day */
    assert_string_equal(one(c, "SELECT next_run_at > now() AND next_run_at <= now() + "
                               "interval '25 hours' AND to_char(next_run_at AT TIME ZONE "
                               "'Europe/Berlin', 'HH24:MI') = '02:30' FROM sluice_jobs "
                               "WHERE id = 'daily'"),
                        "t");
    char run_id[256];
    snprintf(run_id, sizeof(run_id), "%s",
             one(c, "SELECT id FROM sluice_runs WHERE job_id = 'every5'"));

    /* nothing is due now */
    struct sl_bus *bus = bus_new();
    int fired = -1;
    assert_int_equal(sl_scheduler_tick(c, bus, sl_now_us(), &fired, err, sizeof(err)), 0);
    assert_int_equal(fired, 0);

    /* the ticket on the topic is that run */
    const char *topics[] = {SL_TOPIC_TICKETS};
    struct sl_consumer *cons = bus->ops->subscribe(bus, "test", topics, 1, err, sizeof(err));
    assert_non_null(cons);
    int got = 0, every5 = 0;
    double until = kafka_mock_now() + 30;
    while (got < 2 && kafka_mock_now() < until) { /* every5's and daily's, any order */
        struct sl_msg *m = NULL;
        if (bus->ops->poll(cons, &m, NULL, 500) != 0)
            continue;
        assert_int_equal(m->kind, SL_MSG_TICKET);
        assert_string_equal(m->u.ticket.trigger, "schedule");
        if (!strcmp(m->job_id, "every5")) {
            assert_string_equal(m->run_id, run_id);
            every5++;
        } else {
            assert_string_equal(m->job_id, "daily");
        }
        got++;
        sl_msg_unref(m);
    }
    assert_int_equal(got, 2);
    assert_int_equal(every5, 1);
    bus->ops->unsubscribe(cons);
    sl_bus_destroy(bus);
    PQfinish(c);
}

/* Three scheduler replicas ticking at the same instants, on a clock that
 * runs a simulated half hour in 20-second steps, over a job due every
 * minute: every slot is fired exactly once, never twice. */
#define REPLICAS 3
#define STEPS    90
struct replica {
    pthread_barrier_t *bar;
    int64_t start;
    int fired;
    int rc;
};

static void *replica_main(void *arg)
{
    struct replica *r = arg;
    char err[512];
    PGconn *c = sl_pg_connect(pg.conninfo, 10, err, sizeof(err));
    struct sl_kafka_conf kc = {.brokers = km.bootstrap, .client_id = "replica"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    for (int step = 1; step <= STEPS; step++) {
        pthread_barrier_wait(r->bar);
        int fired = 0;
        if (c && bus && r->rc == 0)
            r->rc = sl_scheduler_tick(c, bus, r->start + (int64_t)step * 20 * 1000000, &fired, err,
                                      sizeof(err));
        if (r->rc)
            fprintf(stderr, "replica tick: %s\n", err);
        r->fired += fired;
    }
    sl_bus_destroy(bus);
    PQfinish(c);
    return NULL;
}

static void test_replicas_never_fire_twice(void **state)
{
    PGconn *c = db();
    put(c, "fast", "{\"every\": \"1m\"}");
    int64_t start = sl_now_us();
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, REPLICAS);
    struct replica r[REPLICAS];
    pthread_t th[REPLICAS];
    for (int i = 0; i < REPLICAS; i++) {
        r[i] = (struct replica){.bar = &bar, .start = start};
        pthread_create(&th[i], NULL, replica_main, &r[i]);
    }
    int fired = 0;
    for (int i = 0; i < REPLICAS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(r[i].rc, 0);
        fired += r[i].fired;
    }
    pthread_barrier_destroy(&bar);
    /* 30 simulated minutes: 30 slots (29 or 30 by where the clock started
     * within its minute; the other jobs of the first test too, once each) */
    char err[512];
    struct sl_bus *bus = bus_new();
    const char *topics[] = {SL_TOPIC_TICKETS};
    struct sl_consumer *cons = bus->ops->subscribe(bus, "replicas", topics, 1, err, sizeof(err));
    assert_non_null(cons);
    char seen[64][40];
    int nfast = 0, dup = 0;
    double until = kafka_mock_now() + 30;
    while (kafka_mock_now() < until) {
        struct sl_msg *m = NULL;
        int prc = bus->ops->poll(cons, &m, NULL, 1000);
        if (prc == SL_ERR_TIMEOUT && nfast)
            break;
        if (prc)
            continue;
        if (!strcmp(m->job_id, "fast")) {
            for (int k = 0; k < nfast; k++)
                dup += !strcmp(seen[k], m->run_id);
            if (nfast < 64)
                snprintf(seen[nfast++], sizeof(seen[0]), "%s", m->run_id);
        }
        sl_msg_unref(m);
    }
    print_message("# 3 replicas, 30 simulated minutes: %d tickets of the job, %d fired\n", nfast,
                  fired);
    assert_int_equal(dup, 0);
    assert_true(nfast >= 29 && nfast <= 30);
    assert_string_equal(one(c, "SELECT count(*) FROM sluice_runs WHERE job_id = 'fast'"),
                        nfast == 30 ? "30" : "29");
    bus->ops->unsubscribe(cons);
    sl_bus_destroy(bus);
    PQfinish(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missed_slot_fires_once),
        cmocka_unit_test(test_replicas_never_fire_twice),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
