/*
 * Integration tests of the Kafka bus (bus_kafka.c) over a real
 * Kafka-protocol broker: librdkafka's mock cluster, started as its own
 * process (sluice-test-mock_kafka) on loopback and stopped by PID.
 *
 * 10,000 records go through the bus and come back field for field with
 * per-key order kept; two groups each get everything; a committed position
 * survives both a crashed and a cleanly closed consumer (processed messages
 * are not delivered again, unprocessed ones are); garbage on a topic goes to
 * the dead-letter topic instead of the stage; a full producer queue blocks
 * the sender instead of failing; an output that cannot be delivered (every
 * broker down) makes every later commit refuse; what the bus writes is
 * plain protobuf that kcat and protoc read; and the producer compresses
 * (lz4) by default. SLUICE_TEST_FILTER="test_commit*"
 * runs some of the tests only.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kafka_mock.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sluice/bus.h"
#include "sluice/codec.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/msg.h"

#define REPO     SLUICE_FIXTURES "/../.."
#define NRECS    10000
#define NRUNS    8
#define JOB      "job-kafka"
#define WAIT_S   40 /* the longest a test waits for messages */
#define CRASH_CF "session.timeout.ms=6000,heartbeat.interval.ms=500"

static struct kafka_mock km;
#define bootstrap km.bootstrap

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_id(int k, char out[37])
{
    snprintf(out, 37, "00000000-0000-4000-8000-%012d", k);
}

static int start_mock(void **state)
{
    static const char *const topics[] = {"sluice.records.raw:4", "sluice.records.mapped:2",
                                         "sluice.records.valid:2", "sluice.dead:1", NULL};
    return kafka_mock_start(&km, topics);
}

static int stop_mock(void **state)
{
    kafka_mock_stop(&km);
    return 0;
}

/* Sends one control line to the mock and expects "ok". */
static void mock_cmd(const char *line)
{
    char reply[256];
    if (kafka_mock_cmd(&km, line, reply, sizeof(reply)))
        fail_msg("mock_kafka answered '%s' to '%s'", reply, line);
}

static struct sl_bus *new_bus(const char *config)
{
    char err[512] = "";
    struct sl_kafka_conf kc = {.brokers = bootstrap, .config = config, .client_id = "test"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    if (!bus)
        fail_msg("cannot create the kafka bus: %s", err);
    return bus;
}

static struct sl_consumer *subscribe(struct sl_bus *bus, const char *group, const char *topic)
{
    char err[512] = "";
    const char *topics[] = {topic};
    struct sl_consumer *c = bus->ops->subscribe(bus, group, topics, 1, err, sizeof(err));
    if (!c)
        fail_msg("cannot subscribe %s: %s", group, err);
    return c;
}

/* Record i of the big batch: key run NRUNS-wise, row = sequence in its run. */
static struct sl_msg *make_record(int i)
{
    char run[37], id[16], name[32], attr[32];
    run_id(i % NRUNS, run);
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, run, JOB, 3);
    assert_non_null(m);
    m->u.rec.row = (uint64_t)(i / NRUNS + 1);
    m->key = sl_arena_strdup(&m->arena, run); /* one run on one partition, in order */
    snprintf(id, sizeof(id), "%d", i);
    snprintf(name, sizeof(name), "n\xc3\xa4me %d", i);
    assert_int_equal(sl_msg_add_src(m, "id", id, strlen(id)), 0);
    assert_int_equal(sl_msg_add_src(m, "name", name, strlen(name)), 0);
    assert_int_equal(sl_msg_add_src(m, "gone", NULL, 0), 0);
    snprintf(attr, sizeof(attr), "a-%d", i);
    assert_int_equal(sl_msg_add_attr(m, "store_id", attr), 0);
    if (i % 7 == 0)
        assert_int_equal(sl_msg_add_problem(m, "revenue", "type", "not a number", "12,x"), 0);
    return m;
}

/* Checks a received record against make_record; returns its index. */
static int check_record(const struct sl_msg *m)
{
    assert_int_equal(m->kind, SL_MSG_RECORD);
    assert_string_equal(m->job_id, JOB);
    assert_int_equal(m->job_version, 3);
    assert_int_equal(m->u.rec.nsrc, 3);
    assert_string_equal(m->u.rec.src[0].name, "id");
    int i = atoi(m->u.rec.src[0].value);
    assert_in_range(i, 0, NRECS - 1);
    char run[37], name[32], attr[32];
    run_id(i % NRUNS, run);
    assert_string_equal(m->run_id, run);
    assert_null(m->key); /* a record of a batch: the stage sets its outputs' keys */
    assert_int_equal(m->u.rec.row, (uint64_t)(i / NRUNS + 1));
    snprintf(name, sizeof(name), "n\xc3\xa4me %d", i);
    assert_string_equal(m->u.rec.src[1].name, "name");
    assert_string_equal(m->u.rec.src[1].value, name);
    assert_string_equal(m->u.rec.src[2].name, "gone");
    assert_null(m->u.rec.src[2].value);
    assert_int_equal(m->u.rec.nattr, 1);
    snprintf(attr, sizeof(attr), "a-%d", i);
    assert_string_equal(m->u.rec.attr[0].name, "store_id");
    assert_string_equal(m->u.rec.attr[0].value, attr);
    if (i % 7 == 0) {
        assert_int_equal(m->u.rec.nprob, 1);
        assert_string_equal(m->u.rec.prob[0].attribute, "revenue");
        assert_string_equal(m->u.rec.prob[0].code, "type");
        assert_string_equal(m->u.rec.prob[0].message, "not a number");
        assert_string_equal(m->u.rec.prob[0].value, "12,x");
    } else {
        assert_int_equal(m->u.rec.nprob, 0);
    }
    return i;
}

/* Consumes the big batch in group until every record came; checks each. */
static void consume_all(struct sl_bus *bus, const char *group)
{
    struct sl_consumer *c = subscribe(bus, group, "records.raw");
    static unsigned char seen[NRECS];
    uint64_t last_row[NRUNS] = {0};
    memset(seen, 0, sizeof(seen));
    int got = 0;
    double until = now_s() + WAIT_S;
    while (got < NRECS && now_s() < until) {
        struct sl_msg *m = NULL;
        const char *topic = NULL;
        int rc = bus->ops->poll(c, &m, &topic, 500);
        if (rc == SL_ERR_TIMEOUT)
            continue;
        assert_int_equal(rc, 0);
        assert_string_equal(topic, "records.raw");
        int i = check_record(m);
        assert_int_equal(seen[i], 0); /* nothing twice */
        seen[i] = 1;
        assert_true(m->u.rec.row > last_row[i % NRUNS]); /* per-key order */
        last_row[i % NRUNS] = m->u.rec.row;
        sl_msg_unref(m);
        got++;
    }
    assert_int_equal(got, NRECS);
    assert_int_equal(bus->ops->commit(c), 0);
    bus->ops->unsubscribe(c);
}

static void test_roundtrip_10k(void **state)
{
    struct sl_bus *bus = new_bus(NULL);
    double t0 = now_s();
    for (int i = 0; i < NRECS; i++)
        assert_int_equal(sl_bus_send(bus, "records.raw", make_record(i)), 0);
    assert_int_equal(bus->ops->flush(bus, 30000), 0);
    double t1 = now_s();
    consume_all(bus, "g-roundtrip");
    sl_info("test", "produced 10k in %.2fs, consumed in %.2fs", t1 - t0, now_s() - t1);
    sl_bus_destroy(bus);
}

static void test_two_groups(void **state)
{
    struct sl_bus *bus = new_bus(NULL);
    consume_all(bus, "g-second"); /* the records of test_roundtrip_10k */
    sl_bus_destroy(bus);
}

/* Polls n messages of topic in c; returns the first row, checks sequence. */
static uint64_t take(struct sl_bus *bus, struct sl_consumer *c, int n, uint64_t expect_first)
{
    uint64_t first = 0, prev = 0;
    double until = now_s() + WAIT_S;
    for (int k = 0; k < n; k++) {
        struct sl_msg *m = NULL;
        int rc;
        while ((rc = bus->ops->poll(c, &m, NULL, 500)) == SL_ERR_TIMEOUT && now_s() < until)
            ;
        if (rc)
            fail_msg("message %d of %d (rows from %" PRIu64 ", last %" PRIu64 "): %s", k + 1, n,
                     first, prev, sl_err_str(rc));
        if (k == 0)
            first = m->u.rec.row;
        else
            assert_int_equal(m->u.rec.row, prev + 1);
        prev = m->u.rec.row;
        sl_msg_unref(m);
    }
    if (expect_first)
        assert_int_equal(first, expect_first);
    return prev;
}

static void assert_nothing_more(struct sl_bus *bus, struct sl_consumer *c)
{
    struct sl_msg *m = NULL;
    int rc = bus->ops->poll(c, &m, NULL, 1500);
    if (rc == 0)
        fail_msg("unexpected row %" PRIu64, m->u.rec.row);
    assert_int_equal(rc, SL_ERR_TIMEOUT);
}

/* Sends rows from..to of run-commit to records.mapped as one batch. */
static void send_batch(struct sl_bus *bus, int from, int to)
{
    for (int i = from; i <= to; i++) {
        struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run-commit", JOB, 1);
        assert_non_null(m);
        m->u.rec.row = (uint64_t)i;
        m->key = "run-commit"; /* one partition: the rows stay in order */
        assert_int_equal(sl_bus_send(bus, "records.mapped", m), 0);
    }
    assert_int_equal(bus->ops->flush(bus, 30000), 0); /* the batch goes out */
}

/* Offsets are per Kafka message, i.e. per batch: a batch counts as
 * processed once its last record is, and a consumer that stops in the
 * middle of one leaves all of it to its successor. */
static void test_commit_and_resume(void **state)
{
    struct sl_bus *bus = new_bus(CRASH_CF);
    send_batch(bus, 1, 40);
    send_batch(bus, 41, 60);
    send_batch(bus, 61, 100);

    /* A processes 1..40 and commits, takes 41..60, then crashes. */
    struct sl_consumer *c = subscribe(bus, "g-commit", "records.mapped");
    take(bus, c, 40, 1);
    assert_int_equal(bus->ops->commit(c), 0);
    take(bus, c, 20, 41);
    sl_bus_kafka_abandon(c);

    /* B starts after the commit: 41.. again, nothing of 1..40. It processes
     * 41..70 and stops cleanly without a commit of its own: leaving the
     * group commits the batches it finished (41..60), not the one still in
     * its hands (61..100). */
    c = subscribe(bus, "g-commit", "records.mapped");
    take(bus, c, 30, 41);
    bus->ops->unsubscribe(c);

    /* C resumes at 61 and gets the rest, each once. */
    c = subscribe(bus, "g-commit", "records.mapped");
    assert_int_equal(take(bus, c, 40, 61), 100);
    assert_nothing_more(bus, c);
    assert_int_equal(bus->ops->commit(c), 0);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

/* A plain librdkafka producer on the mock cluster (no sluice code). */
static rd_kafka_t *raw_producer(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    return rk;
}

/* A plain librdkafka consumer of sluice.dead from its beginning. */
static rd_kafka_t *dead_reader(const char *group)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "sluice.dead", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    return rk;
}

static void test_garbage_goes_to_dead(void **state)
{
    static const char garbage[] = "\xff\xfe not protobuf \x01";
    rd_kafka_t *rk = raw_producer();
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("sluice.records.valid"),
                                       RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("k", 1),
                                       RD_KAFKA_V_VALUE((void *)garbage, sizeof(garbage) - 1),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);

    struct sl_bus *bus = new_bus(NULL);
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run-dead", JOB, 1);
    m->u.rec.row = 7;
    m->key = "k";
    assert_int_equal(sl_bus_send(bus, "records.valid", m), 0);
    struct sl_consumer *c = subscribe(bus, "g-dead", "records.valid");
    take(bus, c, 1, 7); /* the garbage before it never reaches the stage */
    assert_nothing_more(bus, c);
    assert_int_equal(bus->ops->commit(c), 0);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);

    /* The dead-letter topic holds the bytes as they came, with the reason. */
    rk = dead_reader("dead-reader");
    rd_kafka_message_t *rkm = NULL;
    double until = now_s() + WAIT_S;
    while (now_s() < until) {
        rkm = rd_kafka_consumer_poll(rk, 500);
        if (rkm && !rkm->err)
            break;
        if (rkm)
            rd_kafka_message_destroy(rkm);
        rkm = NULL;
    }
    assert_non_null(rkm);
    assert_int_equal(rkm->len, sizeof(garbage) - 1);
    assert_memory_equal(rkm->payload, garbage, rkm->len);
    rd_kafka_headers_t *hdrs = NULL;
    assert_int_equal(rd_kafka_message_headers(rkm, &hdrs), 0);
    const void *val;
    size_t vlen;
    assert_int_equal(rd_kafka_header_get_last(hdrs, "sluice-reason", &val, &vlen), 0);
    assert_true(vlen > 0);
    assert_int_equal(rd_kafka_header_get_last(hdrs, "sluice-topic", &val, &vlen), 0);
    assert_int_equal(vlen, strlen("sluice.records.valid"));
    assert_memory_equal(val, "sluice.records.valid", vlen);
    rd_kafka_message_destroy(rkm);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* A batch whose framing is sound but one record of which is not: that
 * record goes to the dead-letter topic (with its index in the batch), the
 * others reach the stage. */
static void test_bad_record_in_batch(void **state)
{
    struct sl_buf batch = SL_BUF_INIT;
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run-badrec", JOB, 1);
    m->u.rec.row = 8;
    assert_int_equal(sl_codec_batch_add(NULL, m, &batch), 0);
    static const char bad[] = "\x0a\x03\xff\xfe\xfd"; /* run_id: not UTF-8 */
    assert_int_equal(sl_buf_putc(&batch, 0x0a), 0);
    assert_int_equal(sl_buf_putc(&batch, (char)(sizeof(bad) - 1)), 0);
    assert_int_equal(sl_buf_append(&batch, bad, sizeof(bad) - 1), 0);
    m->u.rec.row = 9;
    assert_int_equal(sl_codec_batch_add(NULL, m, &batch), 0);
    sl_msg_unref(m);

    rd_kafka_t *rk = raw_producer();
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("sluice.records.mapped"),
                                       RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("kb", 2),
                                       RD_KAFKA_V_VALUE(batch.data, batch.len),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
    sl_buf_cleanup(&batch);

    struct sl_bus *bus = new_bus(NULL);
    struct sl_consumer *c = subscribe(bus, "g-badrec", "records.mapped");
    struct sl_msg *got = NULL;
    int rc;
    uint64_t rows[2];
    for (int k = 0; k < 2; k++) {
        double until = now_s() + WAIT_S;
        while ((rc = bus->ops->poll(c, &got, NULL, 500)) == SL_ERR_TIMEOUT && now_s() < until)
            ;
        assert_int_equal(rc, 0);
        /* the topic also holds test_commit_and_resume's rows: skip them */
        if (strcmp(got->run_id, "run-badrec")) {
            sl_msg_unref(got);
            k--;
            continue;
        }
        rows[k] = got->u.rec.row;
        sl_msg_unref(got);
    }
    assert_int_equal(rows[0], 8);
    assert_int_equal(rows[1], 9);
    assert_int_equal(bus->ops->commit(c), 0);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);

    /* the dead-letter topic holds the bad record alone, with its index */
    rk = dead_reader("dead-reader-2");
    bool found = false;
    double until = now_s() + WAIT_S;
    while (!found && now_s() < until) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(rk, 500);
        if (!rkm)
            continue;
        rd_kafka_headers_t *hdrs = NULL;
        const void *val;
        size_t vlen;
        if (!rkm->err && rd_kafka_message_headers(rkm, &hdrs) == 0 &&
            rd_kafka_header_get_last(hdrs, "sluice-batch-index", &val, &vlen) == 0) {
            assert_int_equal(vlen, 1);
            assert_memory_equal(val, "1", 1);
            assert_int_equal(rkm->len, sizeof(bad) - 1);
            assert_memory_equal(rkm->payload, bad, rkm->len);
            assert_int_equal(rd_kafka_header_get_last(hdrs, "sluice-reason", &val, &vlen), 0);
            assert_true(vlen > 0);
            found = true;
        }
        rd_kafka_message_destroy(rkm);
    }
    assert_true(found);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* A producer queue of 10 messages: send() blocks until there is room
 * instead of failing, and nothing is lost. */
static void test_backpressure(void **state)
{
    struct sl_bus *bus = new_bus("queue.buffering.max.messages=10,linger.ms=20");
    for (int i = 1; i <= 2000; i++) {
        struct sl_msg *m = sl_msg_new(SL_MSG_REJECTION, "run-bp", JOB, 1);
        assert_non_null(m);
        m->u.rec.row = (uint64_t)i;
        m->key = "run-bp"; /* one partition: the rows stay in order */
        assert_int_equal(sl_bus_send(bus, "records.rejected", m), 0);
    }
    assert_int_equal(bus->ops->flush(bus, 30000), 0);
    struct sl_consumer *c = subscribe(bus, "g-bp", "records.rejected");
    assert_int_equal(take(bus, c, 2000, 1), 2000); /* one key: one partition, in order */
    assert_nothing_more(bus, c);
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

/* An output that cannot be delivered makes every later commit refuse: the
 * inputs that caused it must come again to a successor. */
static void test_failed_delivery_blocks_commit(void **state)
{
    struct sl_bus *bus = new_bus("message.timeout.ms=1500");
    struct sl_consumer *c = subscribe(bus, "g-fail", "records.valid");
    mock_cmd("down 1");
    mock_cmd("down 2");
    mock_cmd("down 3");
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, "run-fail", JOB, 1);
    assert_non_null(m);
    assert_int_equal(sl_bus_send(bus, "records.valid", m), 0); /* queued */
    assert_int_equal(bus->ops->flush(bus, 20000), SL_ERR_FATAL);
    assert_int_equal(bus->ops->commit(c), SL_ERR_FATAL);
    mock_cmd("up 1");
    mock_cmd("up 2");
    mock_cmd("up 3");
    m = sl_msg_new(SL_MSG_RECORD, "run-fail", JOB, 1);
    assert_non_null(m);
    assert_int_equal(sl_bus_send(bus, "records.valid", m), 0);
    assert_int_equal(bus->ops->commit(c), SL_ERR_FATAL); /* for ever */
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

/* What the bus writes is plain protobuf: kcat reads it from the broker and
 * protoc decodes it with proto/sluice.proto alone, names and values. */
static void test_kcat_and_protoc(void **state)
{
    static char text[4 << 20]; /* a batch of 64 KiB, as text */
    char cmd[2048];
    /* -f %s: the payload alone, without kcat's newline after it */
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b '%s' -t sluice.records.raw -o beginning -e -c 1 -f %%s 2>/dev/null | "
             "protoc --decode=sluice.RecordBatch -I '%s/proto' '%s/proto/sluice.proto'",
             bootstrap, REPO, REPO);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(text, 1, sizeof(text) - 1, p);
    text[n] = '\0';
    char rest[4096]; /* protoc writes the shared fields after the records */
    while (fread(rest, 1, sizeof(rest), p) > 0)
        ;
    assert_int_equal(pclose(p), 0);
    assert_true(n < sizeof(text) - 1);
    assert_non_null(strstr(text, "records {"));
    assert_non_null(strstr(text, "job_id: \"" JOB "\""));
    assert_non_null(strstr(text, "job_version: 3"));
    assert_non_null(strstr(text, "run_id: \"00000000-0000-4000-8000-"));
    /* the batch names the fields once; its records carry their values */
    assert_non_null(strstr(text, "source_names: \"id\""));
    assert_non_null(strstr(text, "attribute_names: \"store_id\""));
    assert_non_null(strstr(text, "attribute_values: \"a-"));
    assert_non_null(strstr(text, "source_missing: 2")); /* "gone" */
}

/* Sends n store-like records (about 370 bytes each) to one partition of
 * records.raw under prefix, then counts those a new group reads back from
 * the beginning. */
static int fill_and_count(const char *prefix, const char *config, int n)
{
    char err[512] = "";
    struct sl_kafka_conf kc = {
        .brokers = bootstrap, .topic_prefix = prefix, .config = config, .client_id = "test"};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    if (!bus)
        fail_msg("cannot create the kafka bus: %s", err);
    for (int i = 0; i < n; i++) {
        char v[4][64];
        struct sl_msg *m =
            sl_msg_new(SL_MSG_RECORD, "00000000-0000-4000-8000-00000000cafe", JOB, 1);
        assert_non_null(m);
        m->u.rec.row = (uint64_t)i + 1;
        m->key = "one-partition";
        snprintf(v[0], sizeof(v[0]), "S%07d", i);
        snprintf(v[1], sizeof(v[1]), "Filiale %s Nummer %d", i & 1 ? "Nord" : "Sued", i % 977);
        snprintf(v[2], sizeof(v[2]), "filiale%d@example-stores.de", i);
        snprintf(v[3], sizeof(v[3]), "+49 (0)%d %d-%d", 30 + i % 70, i % 9000 + 1000, i % 97);
        assert_int_equal(sl_msg_add_src(m, "store_id", v[0], strlen(v[0])), 0);
        assert_int_equal(sl_msg_add_src(m, "name", v[1], strlen(v[1])), 0);
        assert_int_equal(sl_msg_add_src(m, "opened_on", "01.02.2003", 10), 0);
        assert_int_equal(sl_msg_add_src(m, "revenue", "1.234,56", 8), 0);
        assert_int_equal(sl_msg_add_src(m, "currency", "EUR", 3), 0);
        assert_int_equal(sl_msg_add_src(m, "email", v[2], strlen(v[2])), 0);
        assert_int_equal(sl_msg_add_src(m, "phone", v[3], strlen(v[3])), 0);
        assert_int_equal(sl_msg_add_src(m, "status", "open", 4), 0);
        assert_int_equal(sl_msg_add_attr(m, "store_id", v[0]), 0);
        assert_int_equal(sl_msg_add_attr(m, "email", v[2]), 0);
        assert_int_equal(sl_bus_send(bus, "records.raw", m), 0);
    }
    assert_int_equal(bus->ops->flush(bus, 30000), 0);
    char group[64];
    snprintf(group, sizeof(group), "g-compression-%s", prefix);
    struct sl_consumer *c = subscribe(bus, group, "records.raw");
    int got = 0;
    double until = now_s() + WAIT_S;
    for (;;) {
        struct sl_msg *m = NULL;
        int rc = bus->ops->poll(c, &m, NULL, got ? 1500 : 15000); /* the group forms first */
        if (rc == SL_ERR_TIMEOUT || now_s() > until)
            break;
        assert_int_equal(rc, 0);
        assert_int_equal(m->u.rec.nsrc, 8);
        sl_msg_unref(m);
        got++;
    }
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
    return got;
}

/* The producer compresses (lz4) unless told otherwise: 14 MB of records
 * fit into one partition of the mock broker, which keeps only about 5 MiB
 * a partition; uncompressed, the oldest of them are gone. */
static void test_compressed_on_the_wire(void **state)
{
    const int n = 40000;
    mock_cmd("topic lz4.records.raw:1");
    mock_cmd("topic none.records.raw:1");
    assert_int_equal(fill_and_count("lz4.", NULL, n), n);
    int got = fill_and_count("none.", "compression.codec=none", n);
    sl_info("test", "uncompressed, the mock kept %d of %d records", got, n);
    if (got >= n)
        fail_msg("uncompressed, all %d records fit into one partition: the test proves nothing", n);
    assert_true(got > 0);
}

static void test_bad_settings(void **state)
{
    char err[512] = "";
    struct sl_kafka_conf kc = {.brokers = bootstrap, .config = "linger.ms"};
    assert_null(sl_bus_kafka_new(&kc, err, sizeof(err)));
    assert_non_null(strstr(err, "SLUICE_KAFKA_CONFIG"));
    kc.config = "no.such.property=1";
    assert_null(sl_bus_kafka_new(&kc, err, sizeof(err)));
    assert_non_null(strstr(err, "no.such.property"));
    kc.config = NULL;
    kc.topic_prefix = "bad prefix/";
    assert_null(sl_bus_kafka_new(&kc, err, sizeof(err)));
    assert_non_null(strstr(err, "SLUICE_TOPIC_PREFIX"));
}

int main(void)
{
    if (!getenv("SLUICE_LOG_LEVEL"))
        sl_log_set_level(SL_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    if (getenv("SLUICE_TEST_FILTER")) /* e.g. "test_commit*" */
        cmocka_set_test_filter(getenv("SLUICE_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_settings),
        cmocka_unit_test(test_roundtrip_10k),
        cmocka_unit_test(test_two_groups),
        cmocka_unit_test(test_kcat_and_protoc),
        cmocka_unit_test(test_commit_and_resume),
        cmocka_unit_test(test_garbage_goes_to_dead),
        cmocka_unit_test(test_bad_record_in_batch),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_compressed_on_the_wire),
        cmocka_unit_test(test_failed_delivery_blocks_commit), // takes the brokers down
    };
    return cmocka_run_group_tests(tests, start_mock, stop_mock);
}
