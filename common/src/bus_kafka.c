/*
 * The Kafka bus (bus.h): the message bus of distributed mode, on librdkafka.
 *
 * One idempotent producer (acks=all) per bus, shared by every thread; one
 * high-level consumer per subscription, used by one thread. Messages travel
 * as their protobuf encoding (codec.h) on prefix + logical topic name, keyed
 * by msg->key or else the run id (records: run id and row), so one key stays
 * on one partition in order.
 *
 * Records travel in batches: a Kafka message on a records topic is a
 * RecordBatch (RejectionBatch) of the records sent to one partition within
 * a short while (up to BATCH_BYTES / BATCH_RECORDS, or LINGER_MS old). The
 * bus picks the partition itself, with librdkafka's consistent_random
 * partitioner over the record's key and the topic's partition count, so a
 * key still stays on one partition in order; per-message costs (librdkafka,
 * the broker, delivery reports) are paid once a batch instead of once a
 * record. Partial batches go out before any other message is sent (a run
 * event never overtakes the records sent before it), before a commit and on
 * flush(). The consumer hands out a batch's records one by one; the batch's
 * offset is stored once its last record has been processed, so a crash in
 * the middle of a batch redelivers the whole batch.
 *
 * Offsets: auto-commit and auto offset store are off. A message handed out
 * by poll() is "pending"; it counts as processed once the same thread calls
 * poll() or commit() again (the stage runner processes one message at a time
 * and calls commit() only after process() returned), and only then is its
 * offset stored. commit() first waits until every message sent on the bus is
 * acknowledged, then commits the stored offsets synchronously: an output is
 * durable before the input that caused it is marked done. Once any delivery
 * has failed, commit() refuses for ever (SL_ERR_FATAL): the service must
 * stop, and its successor gets every input since the last commit again.
 * A revoked partition (rebalance, close) commits what is stored the same way.
 *
 * A message that cannot be decoded is never handed to the stage: it is
 * produced to the dead-letter topic (prefix + "dead") with the headers
 * sluice-reason, sluice-topic, sluice-partition and sluice-offset, its
 * offset is stored, and poll() goes on.
 *
 * Acknowledged sends (send_acked, the gateway's webhooks): the messages of
 * one call are produced at once, its records in batches of the call alone
 * (partitioned as the shared batches are), each Kafka message carrying the
 * call's waiter as its opaque; the delivery report counts the waiter down
 * and wakes its caller. A thread of the bus, started by the first such
 * call, serves the delivery reports (rd_kafka_poll) while callers wait, so
 * that any number of them wait at once, each for its own messages only. A
 * failed acked delivery is its caller's error alone: it is not noted as a
 * failure of the bus (commit() and flush() go on), because the caller
 * answers for it (the gateway fails the run and the sender retries), where
 * a consumer-side service must not commit past an output that was lost.
 * send_async is the same without the wait: the waiter calls back from the
 * poller thread once every message of the call was reported.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sluice/bus.h"
#include "sluice/codec.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

#define COMP            "kafka"
#define TOPIC_MAX       249 /* Kafka's limit on a topic name */
#define POLL_SLICE_MS   100 /* how soon poll() and a blocked send() notice close() */
#define DESTROY_WAIT_MS 10000
#define BATCH_BYTES     (64 * 1024) /* a batch is sent once this big */
#define BATCH_RECORDS   1000        /* or holding this many records */
#define LINGER_MS       50          /* or this old */
#define META_WAIT_MS    5000        /* waiting for a topic's partition count */
#define META_REFRESH_MS 60000       /* partitions may be added to a topic */
#define BATCH_TOPICS    8
#define PURGE_WAIT_MS   1000 /* serving the reports of what destroy purged */

/* The partial batch of one partition. */
struct part_batch {
    struct sl_buf buf;
    struct sl_batch_enc enc; /* what its records share (codec.h) */
    uint32_t n;              /* records in buf */
    int64_t first_ms;        /* when the first of them was added */
};

/* A records topic the bus sends batches to. */
struct batch_topic {
    char name[TOPIC_MAX + 2]; /* physical */
    rd_kafka_topic_t *rkt;
    int32_t nparts;           /* 0: not known yet */
    int64_t meta_ms;          /* when nparts was asked for */
    struct part_batch *parts; /* nparts */
};

struct kafka_bus {
    struct sl_bus base;
    rd_kafka_t *rk; /* the producer */
    char *prefix;
    char *brokers;
    char *config;
    char *client_id;
    atomic_bool closed;
    atomic_ulong failed; /* deliveries that failed, ever */
    pthread_mutex_t mu;  /* first_error */
    char first_error[512];
    pthread_mutex_t bmu; /* everything below: the partial batches */
    struct batch_topic btopics[BATCH_TOPICS];
    size_t nbtopics;
    size_t nbatched;   /* partial batches holding records */
    int64_t oldest_ms; /* first_ms of the oldest of them (0: none) */
    /* the thread serving delivery reports for send_acked (started under mu) */
    pthread_t poller;
    bool poller_on;
    atomic_bool poller_stop;
};

/* The messages of one send_acked call that Kafka has not yet reported on.
 * Held by the caller and by each message librdkafka holds (its opaque):
 * freed by whichever lets go last, so a caller that timed out may leave. */
struct acked_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    size_t pending;    /* messages produced and not yet reported */
    unsigned refs;
    rd_kafka_resp_err_t err; /* the first delivery error */
    char topic[TOPIC_MAX + 2];
    /* send_async's: called (and cleared) when pending reaches 0 */
    void (*done)(void *arg, int rc);
    void *done_arg;
};

struct sl_consumer {
    struct kafka_bus *bus;
    rd_kafka_t *rk;
    char **topics; /* logical names, handed out by poll() */
    size_t ntopics;
    rd_kafka_message_t *pending; /* handed out, not yet known processed */
    /* pending is a batch: its logical topic, its records' kind, and where
     * its next record starts (pending->len: all handed out) */
    const char *btopic;
    enum sl_msg_kind bkind;
    size_t bpos;
    unsigned bindex;          /* of the next record, from 0 */
    struct sl_batch_dec bdec; /* what its records share */
    char group[128];
    int (*revoke_hook)(void *arg); /* see sl_bus_ops.set_revoke_hook */
    void *revoke_arg;
};

/* Milliseconds of a coarse monotonic clock (a few ms resolution, ample for
 * lingering and poll slices): it is read for records, and the precise clock
 * costs 8x as much here (25 ns against 3). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* prefix + logical into out; SL_ERR_INVALID when too long for Kafka. */
static int topic_name(const struct kafka_bus *b, const char *logical, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s", b->prefix, logical);
    return n < 0 || (size_t)n >= outsz || n > TOPIC_MAX ? SL_ERR_INVALID : 0;
}

/* The logical name of a physical topic (the prefix stripped). */
static const char *logical_name(const struct kafka_bus *b, const char *physical)
{
    size_t pl = strlen(b->prefix);
    return strncmp(physical, b->prefix, pl) ? physical : physical + pl;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0-3 errors, 4 warning, 5-6 notice and info, 7 debug */
    enum sl_log_level lvl = level <= 3   ? SL_LOG_ERROR
                            : level == 4 ? SL_LOG_WARN
                            : level <= 6 ? SL_LOG_INFO
                                         : SL_LOG_DEBUG;
    /* SLUICE_KAFKA_CONFIG goes to producer and consumers alike: that each
     * ignores the other's properties is expected */
    if (!strcmp(fac, "CONFWARN") &&
        (strstr(buf, "is a consumer property") || strstr(buf, "is a producer property")))
        lvl = SL_LOG_DEBUG;
    if (!strcmp(fac, "FAIL") && lvl > SL_LOG_INFO)
        lvl = SL_LOG_INFO; /* the error callback reports it */
    sl_log(lvl, COMP, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

static void note_failure(struct kafka_bus *b, const char *what)
{
    pthread_mutex_lock(&b->mu);
    if (!b->first_error[0]) {
        /* cut to fit: the first failure is what the operator needs */
        size_t n = strnlen(what, sizeof(b->first_error) - 1);
        memcpy(b->first_error, what, n);
        b->first_error[n] = '\0';
    }
    pthread_mutex_unlock(&b->mu);
    atomic_fetch_add(&b->failed, 1);
}

/* Producer errors. A fatal one (idempotence broken) fails every later send
 * and every commit. */
static void producer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct kafka_bus *b = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[200];
        rd_kafka_fatal_error(rk, why, sizeof(why));
        sl_error(COMP, "kafka producer failed for good: %s", why);
        note_failure(b, why);
        return;
    }
    sl_warn(COMP, "kafka producer: %s", reason);
}

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct sl_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL)
        sl_error(COMP, "kafka consumer of group %s failed for good: %s", c->group, reason);
    else
        sl_warn(COMP, "kafka consumer of group %s: %s", c->group, reason);
}

/* Lets go of one hold of w: a message's (reported, or never produced after
 * all) or, msg false, the caller's. */
static int map_produce_err(rd_kafka_resp_err_t err);

static void acked_wait_release(struct acked_wait *w, bool msg)
{
    void (*done)(void *, int) = NULL;
    void *done_arg = NULL;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (msg && !--w->pending) {
        pthread_cond_signal(&w->cv);
        if ((done = w->done)) {
            done_arg = w->done_arg;
            w->done = NULL;
            if (w->err) {
                sl_warn(COMP, "could not deliver a message to %s: %s", w->topic,
                        rd_kafka_err2str(w->err));
                rc = map_produce_err(w->err);
            }
        }
    }
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (done)
        done(done_arg, rc);
    if (last) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
    }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    struct kafka_bus *b = opaque;
    struct acked_wait *w = rkm->_private; /* the msg_opaque of producev */
    if (w) {                              /* send_acked's: its caller answers for it */
        if (rkm->err) {
            pthread_mutex_lock(&w->mu);
            if (!w->err) {
                w->err = rkm->err;
                snprintf(w->topic, sizeof(w->topic), "%s", rd_kafka_topic_name(rkm->rkt));
            }
            pthread_mutex_unlock(&w->mu);
        }
        acked_wait_release(w, true);
        return;
    }
    if (!rkm->err)
        return;
    char what[256];
    snprintf(what, sizeof(what), "could not deliver a message to %s: %s",
             rd_kafka_topic_name(rkm->rkt), rd_kafka_err2str(rkm->err));
    if (atomic_load(&b->failed) == 0)
        sl_error(COMP, "%s", what);
    note_failure(b, what);
}

/* Sets name=value on conf, or errbuf naming the setting. */
static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, const char *origin,
                    char *errbuf, size_t errsz)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", origin, why);
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Applies the "k=v,k=v" list of SLUICE_KAFKA_CONFIG to conf. */
static int conf_apply_list(rd_kafka_conf_t *conf, const char *list, char *errbuf, size_t errsz)
{
    if (!list || !*list)
        return 0;
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        if (!*item)
            continue;
        char *eq = strchr(item, '=');
        if (!eq || eq == item) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "SLUICE_KAFKA_CONFIG: '%s' is not a key=value pair", item);
            break;
        }
        *eq = '\0';
        rc = conf_set(conf, trim(item), trim(eq + 1), "SLUICE_KAFKA_CONFIG", errbuf, errsz);
    }
    free(copy);
    return rc;
}

/* The settings every client of the bus shares, then the user's. */
static rd_kafka_conf_t *base_conf(const struct kafka_bus *b, char *errbuf, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", b->brokers, "SLUICE_KAFKA_BROKERS", errbuf, errsz) ||
        conf_set(conf, "client.id", b->client_id, "client id", errbuf, errsz) ||
        /* a bounded send queue (librdkafka: 100,000 messages): a stage
         * blocks sooner, and memory stays small (may be overridden) */
        conf_set(conf, "queue.buffering.max.messages", "20000", "producer", errbuf, errsz) ||
        /* batches of records repeat their field names, run and job ids:
         * lz4 makes them about 3x smaller for a few percent of the
         * clients' CPU, and every broker stores, copies and sends a third
         * of the bytes (may be overridden) */
        conf_set(conf, "compression.codec", "lz4", "producer", errbuf, errsz) ||
        /* a produce request each 50 ms a broker instead of each 5 ms
         * (librdkafka's default): record batches wait up to LINGER_MS in
         * the bus anyway, and fewer, fuller requests cost the clients and
         * the broker less (a million rows: ~0.8 CPU s fewer of ~16.5, in
         * alternating runs of tests/bench/bench_distributed.sh) */
        conf_set(conf, "linger.ms", "50", "producer", errbuf, errsz) ||
        conf_apply_list(conf, b->config, errbuf, errsz)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

static int batch_flush(struct kafka_bus *b, bool stale_only);

/* Sends the partial batches, then waits until the producer's queue is empty. SL_ERR_FATAL once a
 * delivery has failed, SL_ERR_TIMEOUT when timeout_ms (-1: until done) ran out. */
static int wait_delivered(struct kafka_bus *b, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    rd_kafka_resp_err_t err;
    int rc = batch_flush(b, false);
    if (rc == SL_ERR_CLOSED)
        return rc;
    for (;;) {
        int slice = 1000;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            slice = left < 0 ? 0 : left < slice ? (int)left : slice;
        }
        err = rd_kafka_flush(b->rk, slice);
        if (atomic_load(&b->failed))
            break;
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT)
            break;
        if (deadline >= 0 && now_ms() >= deadline)
            return SL_ERR_TIMEOUT;
    }
    return atomic_load(&b->failed) ? SL_ERR_FATAL : 0;
}

/* One more message of w to be reported (w NULL: nothing). */
static void acked_wait_hold(struct acked_wait *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->pending++;
    w->refs++;
    pthread_mutex_unlock(&w->mu);
}

static int map_produce_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__FATAL:
        return SL_ERR_FATAL;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return SL_ERR_LIMIT;
    default:
        return SL_ERR_RETRY;
    }
}

/* Produces one message to partition (RD_KAFKA_PARTITION_UA: the
 * partitioner's choice by key), waiting while the local queue is full
 * (backpressure). msgflags: RD_KAFKA_MSG_F_FREE or _COPY; on error the
 * payload and hdrs stay the caller's. w: the send_acked call it belongs to
 * (its delivery report goes there), or NULL. */
static rd_kafka_resp_err_t produce(struct kafka_bus *b, const char *name, int32_t partition,
                                   void *payload, size_t len, const void *key, size_t keylen,
                                   rd_kafka_headers_t *hdrs, int msgflags, struct acked_wait *w)
{
    for (;;) {
        rd_kafka_resp_err_t err;
        if (hdrs)
            err = rd_kafka_producev(b->rk, RD_KAFKA_V_TOPIC(name), RD_KAFKA_V_PARTITION(partition),
                                    RD_KAFKA_V_MSGFLAGS(msgflags), RD_KAFKA_V_VALUE(payload, len),
                                    RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_HEADERS(hdrs),
                                    RD_KAFKA_V_OPAQUE(w), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(b->rk, RD_KAFKA_V_TOPIC(name), RD_KAFKA_V_PARTITION(partition),
                                    RD_KAFKA_V_MSGFLAGS(msgflags), RD_KAFKA_V_VALUE(payload, len),
                                    RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_OPAQUE(w),
                                    RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(b->rk, 0); /* serve delivery reports */
            return err;
        }
        if (atomic_load(&b->closed))
            return RD_KAFKA_RESP_ERR__DESTROY;
        rd_kafka_poll(b->rk, POLL_SLICE_MS);
    }
}

/* The bus key of msg: msg->key, else the run id; a record or rejection
 * without a key: run id and row, so that one big run spreads over every
 * partition. rowkey[128] is the room for the latter. */
static const char *msg_key(const struct sl_msg *msg, char *rowkey)
{
    if (msg->key)
        return msg->key;
    if (msg->run_id && (msg->kind == SL_MSG_RECORD || msg->kind == SL_MSG_REJECTION) &&
        snprintf(rowkey, 128, "%s/%llu", msg->run_id, (unsigned long long)msg->u.rec.row) < 128)
        return rowkey;
    return msg->run_id;
}

/* Encodes msg and produces it to the physical topic name with hdrs (NULL:
 * none; taken over), keyed by msg_key(), for w (NULL: none; a hold of w is
 * taken for it). msg stays the caller's. */
static int produce_msg(struct kafka_bus *b, const char *name, const struct sl_msg *msg,
                       rd_kafka_headers_t *hdrs, struct acked_wait *w)
{
    struct sl_buf buf = SL_BUF_INIT;
    int rc = sl_codec_encode(msg, &buf);
    if (rc) {
        sl_buf_cleanup(&buf);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        return rc;
    }
    char rowkey[128];
    const char *key = msg_key(msg, rowkey);
    size_t len = buf.len;
    char *payload = sl_buf_steal(&buf);
    acked_wait_hold(w);
    rd_kafka_resp_err_t err = produce(b, name, RD_KAFKA_PARTITION_UA, payload, len, key,
                                      key ? strlen(key) : 0, hdrs, RD_KAFKA_MSG_F_FREE, w);
    if (!err)
        return 0;
    if (w)
        acked_wait_release(w, true);
    free(payload);
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    if (err == RD_KAFKA_RESP_ERR__DESTROY)
        return SL_ERR_CLOSED;
    sl_warn(COMP, "could not send a %s message to %s: %s", sl_msg_kind_str(msg->kind), name,
            rd_kafka_err2str(err));
    return map_produce_err(err);
}

/* ---- record batches (see the top of the file); bmu held throughout ---- */

/* The batch topic of the physical name, added when new; NULL when out of
 * room or memory. */
static struct batch_topic *batch_topic(struct kafka_bus *b, const char *name)
{
    for (size_t i = 0; i < b->nbtopics; i++)
        if (!strcmp(b->btopics[i].name, name))
            return &b->btopics[i];
    if (b->nbtopics == BATCH_TOPICS)
        return NULL;
    struct batch_topic *t = &b->btopics[b->nbtopics];
    snprintf(t->name, sizeof(t->name), "%s", name);
    if (!(t->rkt = rd_kafka_topic_new(b->rk, name, NULL)))
        return NULL;
    b->nbtopics++;
    return t;
}

/* The partition count of t, asked of the cluster when not known (waiting
 * up to META_WAIT_MS: a new topic is being created) or when it is older
 * than META_REFRESH_MS (partitions may have been added). 0: unknown. */
static int32_t topic_partitions(struct kafka_bus *b, struct batch_topic *t)
{
    int64_t now = now_ms();
    if (t->nparts && now - t->meta_ms < META_REFRESH_MS)
        return t->nparts;
    int64_t deadline = now + (t->nparts ? 0 : META_WAIT_MS);
    int32_t n = 0;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(b->rk, 0, t->rkt, &md, 1000);
        if (!err && md->topic_cnt == 1 && !md->topics[0].err)
            n = md->topics[0].partition_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (n > 0 || atomic_load(&b->closed) || now_ms() >= deadline)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    t->meta_ms = now_ms();
    if (n > t->nparts) { /* partitions are only ever added */
        struct part_batch *parts = realloc(t->parts, (size_t)n * sizeof(*parts));
        if (!parts)
            return t->nparts;
        for (int32_t i = t->nparts; i < n; i++)
            parts[i] = (struct part_batch){.buf = SL_BUF_INIT};
        if (t->nparts)
            sl_info(COMP, "topic %s has %" PRId32 " partitions now (was %" PRId32 ")", t->name, n,
                    t->nparts);
        t->parts = parts;
        t->nparts = n;
    }
    return t->nparts;
}

/* Sends the partial batch of partition p of t. A batch that librdkafka
 * does not take counts as a failed delivery: its records were accepted
 * from their senders, so no commit may pass any more. */
static int batch_send(struct kafka_bus *b, struct batch_topic *t, int32_t p)
{
    struct part_batch *pb = &t->parts[p];
    if (!pb->n)
        return 0;
    size_t len = pb->buf.len;
    uint32_t n = pb->n;
    char *payload = sl_buf_steal(&pb->buf);
    sl_codec_batch_enc_reset(&pb->enc);
    pb->n = 0;
    pb->first_ms = 0;
    b->nbatched--;
    rd_kafka_resp_err_t err =
        produce(b, t->name, p, payload, len, NULL, 0, NULL, RD_KAFKA_MSG_F_FREE, NULL);
    if (!err)
        return 0;
    free(payload);
    char what[TOPIC_MAX + 200];
    snprintf(what, sizeof(what),
             "could not send a batch of %" PRIu32 " records to %s [%" PRId32 "]: %s", n, t->name, p,
             rd_kafka_err2str(err));
    sl_error(COMP, "%s", what);
    note_failure(b, what);
    return err == RD_KAFKA_RESP_ERR__DESTROY ? SL_ERR_CLOSED : SL_ERR_FATAL;
}

/* Sends every partial batch, or (stale_only) those at least LINGER_MS old. */
static int batch_flush_locked(struct kafka_bus *b, bool stale_only)
{
    int64_t now = now_ms();
    if (!b->nbatched || (stale_only && now - b->oldest_ms < LINGER_MS))
        return 0;
    int rc = 0;
    int64_t oldest = 0;
    for (size_t i = 0; i < b->nbtopics; i++) {
        struct batch_topic *t = &b->btopics[i];
        for (int32_t p = 0; p < t->nparts; p++) {
            struct part_batch *pb = &t->parts[p];
            if (!pb->n)
                continue;
            if (!stale_only || now - pb->first_ms >= LINGER_MS) {
                int r = batch_send(b, t, p);
                rc = rc ? rc : r;
            } else if (!oldest || pb->first_ms < oldest) {
                oldest = pb->first_ms;
            }
        }
    }
    b->oldest_ms = oldest;
    return rc;
}

static int batch_flush(struct kafka_bus *b, bool stale_only)
{
    pthread_mutex_lock(&b->bmu);
    int rc = batch_flush_locked(b, stale_only);
    pthread_mutex_unlock(&b->bmu);
    return rc;
}

/* Adds a record or rejection to the batch of its partition of the physical
 * topic name; sends that batch when full, and any other gone stale. */
static int batch_add(struct kafka_bus *b, const char *name, const struct sl_msg *msg)
{
    char rowkey[128];
    const char *key = msg_key(msg, rowkey);
    size_t keylen = key ? strlen(key) : 0;
    int rc;
    pthread_mutex_lock(&b->bmu);
    struct batch_topic *t = batch_topic(b, name);
    int32_t nparts = t ? topic_partitions(b, t) : 0;
    if (nparts <= 0) {
        /* partitions unknown (the cluster is unreachable): a batch of one,
         * partitioned by librdkafka by key once it knows them */
        struct sl_buf one = SL_BUF_INIT;
        if ((rc = sl_codec_batch_add(NULL, msg, &one)) == 0) {
            size_t len = one.len;
            char *payload = sl_buf_steal(&one);
            rd_kafka_resp_err_t err = produce(b, name, RD_KAFKA_PARTITION_UA, payload, len, key,
                                              keylen, NULL, RD_KAFKA_MSG_F_FREE, NULL);
            if (err) {
                free(payload);
                rc = err == RD_KAFKA_RESP_ERR__DESTROY ? SL_ERR_CLOSED : map_produce_err(err);
            }
        }
        sl_buf_cleanup(&one);
        pthread_mutex_unlock(&b->bmu);
        return rc;
    }
    int32_t p = rd_kafka_msg_partitioner_consistent_random(t->rkt, key, keylen, nparts, NULL, NULL);
    if (p < 0 || p >= nparts)
        p = 0;
    struct part_batch *pb = &t->parts[p];
    if (!pb->n && sl_buf_reserve(&pb->buf, BATCH_BYTES + BATCH_BYTES / 4)) {
        pthread_mutex_unlock(&b->bmu);
        return SL_ERR_NOMEM;
    }
    if ((rc = sl_codec_batch_add(&pb->enc, msg, &pb->buf)) == 0) {
        if (pb->n++ == 0) {
            pb->first_ms = now_ms();
            if (b->nbatched++ == 0)
                b->oldest_ms = pb->first_ms;
        }
        if (pb->buf.len >= BATCH_BYTES || pb->n >= BATCH_RECORDS)
            rc = batch_send(b, t, p);
        if (!rc)
            rc = batch_flush_locked(b, true);
    }
    pthread_mutex_unlock(&b->bmu);
    return rc;
}

static int kafka_send_dead(struct sl_bus *bus, const char *from_topic, struct sl_msg *msg,
                           const char *reason)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    char name[TOPIC_MAX + 2], src[TOPIC_MAX + 2];
    topic_name(b, SL_TOPIC_DEAD, name, sizeof(name)); /* shorter than any valid name */
    if (topic_name(b, from_topic, src, sizeof(src)))
        snprintf(src, sizeof(src), "%s", from_topic);
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    rd_kafka_header_add(hdrs, "sluice-reason", -1, reason ? reason : "", -1);
    rd_kafka_header_add(hdrs, "sluice-topic", -1, src, -1);
    int rc = produce_msg(b, name, msg, hdrs, NULL);
    sl_msg_unref(msg);
    return rc;
}

static int kafka_send(struct sl_bus *bus, const char *topic, struct sl_msg *msg)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    char name[TOPIC_MAX + 2];
    int rc;
    if (atomic_load(&b->closed)) {
        rc = SL_ERR_CLOSED;
    } else if (topic_name(b, topic, name, sizeof(name))) {
        sl_error(COMP, "topic name %s%s is longer than kafka allows", b->prefix, topic);
        rc = SL_ERR_INVALID;
    } else if (msg->kind == SL_MSG_RECORD || msg->kind == SL_MSG_REJECTION) {
        rc = batch_add(b, name, msg);
    } else if ((rc = batch_flush(b, false)) == 0) { /* the records sent before go first */
        rc = produce_msg(b, name, msg, NULL, NULL);
    }
    sl_msg_unref(msg);
    return rc;
}

/* ---- acknowledged sends (see the top of the file) ---- */

/* Serves delivery reports while the bus lives: send_acked's callers wait
 * on their waiters, not in rd_kafka_poll. */
static void *poller_main(void *arg)
{
    struct kafka_bus *b = arg;
    while (!atomic_load(&b->poller_stop))
        rd_kafka_poll(b->rk, POLL_SLICE_MS);
    return NULL;
}

static int poller_start(struct kafka_bus *b)
{
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    if (!b->poller_on) {
        if (pthread_create(&b->poller, NULL, poller_main, b) == 0)
            b->poller_on = true;
        else
            rc = SL_ERR_NOMEM;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static struct acked_wait *acked_wait_new(void)
{
    struct acked_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    w->refs = 1; /* the caller's */
    return w;
}

/* Waits until every message of w was reported, or timeout_ms (-1: for
 * ever) ran out. */
static int acked_wait_done(struct acked_wait *w, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    while (w->pending && rc == 0)
        if (timeout_ms < 0)
            pthread_cond_wait(&w->cv, &w->mu);
        else
            rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    rc = w->pending ? SL_ERR_TIMEOUT : 0;
    if (w->err) {
        sl_warn(COMP, "could not deliver a message to %s: %s", w->topic, rd_kafka_err2str(w->err));
        rc = map_produce_err(w->err);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

/* The batches of one send_acked call to one records topic: one a
 * partition, as batch_add() partitions (parts NULL: the partitions are not
 * known, each record goes alone, partitioned by librdkafka by key). */
struct acked_batches {
    char name[TOPIC_MAX + 2]; /* physical; "" none yet */
    rd_kafka_topic_t *rkt;
    int32_t nparts;
    struct part_batch *parts;
};

/* Produces the batch of partition p of ab for w. */
static int acked_batch_send(struct kafka_bus *b, struct acked_batches *ab, int32_t p,
                            struct acked_wait *w)
{
    struct part_batch *pb = &ab->parts[p];
    if (!pb->n)
        return 0;
    size_t len = pb->buf.len;
    char *payload = sl_buf_steal(&pb->buf);
    sl_codec_batch_enc_reset(&pb->enc);
    pb->n = 0;
    acked_wait_hold(w);
    rd_kafka_resp_err_t err =
        produce(b, ab->name, p, payload, len, NULL, 0, NULL, RD_KAFKA_MSG_F_FREE, w);
    if (!err)
        return 0;
    acked_wait_release(w, true);
    free(payload);
    sl_warn(COMP, "could not send a batch of records to %s [%" PRId32 "]: %s", ab->name, p,
            rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__DESTROY ? SL_ERR_CLOSED : map_produce_err(err);
}

/* Produces every batch of ab and forgets its topic. */
static int acked_batches_send(struct kafka_bus *b, struct acked_batches *ab, struct acked_wait *w)
{
    int rc = 0;
    for (int32_t p = 0; p < ab->nparts; p++) {
        int r = acked_batch_send(b, ab, p, w);
        rc = rc ? rc : r;
        sl_buf_cleanup(&ab->parts[p].buf);
        sl_codec_batch_enc_reset(&ab->parts[p].enc);
    }
    free(ab->parts);
    *ab = (struct acked_batches){0};
    return rc;
}

/* Adds record msg for the physical topic name to ab (its batches for
 * another topic are produced first). */
static int acked_batch_add(struct kafka_bus *b, struct acked_batches *ab, const char *name,
                           const struct sl_msg *msg, struct acked_wait *w)
{
    int rc;
    if (ab->name[0] && strcmp(ab->name, name) && (rc = acked_batches_send(b, ab, w)))
        return rc;
    if (!ab->name[0]) {
        pthread_mutex_lock(&b->bmu); /* the topics' partition counts are shared */
        struct batch_topic *t = batch_topic(b, name);
        int32_t nparts = t ? topic_partitions(b, t) : 0;
        ab->rkt = t ? t->rkt : NULL;
        pthread_mutex_unlock(&b->bmu);
        if (nparts > 0 && !(ab->parts = calloc((size_t)nparts, sizeof(*ab->parts))))
            return SL_ERR_NOMEM;
        for (int32_t p = 0; p < nparts; p++)
            ab->parts[p].buf = (struct sl_buf)SL_BUF_INIT;
        ab->nparts = nparts > 0 ? nparts : 0;
        snprintf(ab->name, sizeof(ab->name), "%s", name);
    }
    char rowkey[128];
    const char *key = msg_key(msg, rowkey);
    size_t keylen = key ? strlen(key) : 0;
    if (!ab->nparts) { /* a batch of one, as batch_add() sends it */
        struct sl_buf one = SL_BUF_INIT;
        if ((rc = sl_codec_batch_add(NULL, msg, &one)) == 0) {
            size_t len = one.len;
            char *payload = sl_buf_steal(&one);
            acked_wait_hold(w);
            rd_kafka_resp_err_t err = produce(b, name, RD_KAFKA_PARTITION_UA, payload, len, key,
                                              keylen, NULL, RD_KAFKA_MSG_F_FREE, w);
            if (err) {
                acked_wait_release(w, true);
                free(payload);
                rc = err == RD_KAFKA_RESP_ERR__DESTROY ? SL_ERR_CLOSED : map_produce_err(err);
            }
        }
        sl_buf_cleanup(&one);
        return rc;
    }
    int32_t p =
        rd_kafka_msg_partitioner_consistent_random(ab->rkt, key, keylen, ab->nparts, NULL, NULL);
    if (p < 0 || p >= ab->nparts)
        p = 0;
    struct part_batch *pb = &ab->parts[p];
    if ((rc = sl_codec_batch_add(&pb->enc, msg, &pb->buf)) != 0)
        return rc;
    if (++pb->n >= BATCH_RECORDS || pb->buf.len >= BATCH_BYTES)
        return acked_batch_send(b, ab, p, w);
    return 0;
}

/* Produces msgs[i] to topics[i] for waiter w (their records in batches of
 * their own, see the top). 0, or the first error (some may be sent). */
static int acked_produce(struct kafka_bus *b, const char *const *topics, struct sl_msg **msgs,
                         size_t n, struct acked_wait *w)
{
    struct acked_batches ab = {0};
    int rc = 0;
    /* records send() batched before go first (a run event never overtakes them) */
    if (batch_flush(b, false) == SL_ERR_CLOSED)
        return SL_ERR_CLOSED;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char name[TOPIC_MAX + 2];
        const struct sl_msg *m = msgs[i];
        if (topic_name(b, topics[i], name, sizeof(name))) {
            sl_error(COMP, "topic name %s%s is longer than kafka allows", b->prefix, topics[i]);
            rc = SL_ERR_INVALID;
        } else if (m->kind == SL_MSG_RECORD || m->kind == SL_MSG_REJECTION) {
            rc = acked_batch_add(b, &ab, name, m, w);
        } else if ((rc = acked_batches_send(b, &ab, w)) == 0) {
            rc = produce_msg(b, name, m, NULL, w);
        }
    }
    int r = acked_batches_send(b, &ab, w);
    return rc ? rc : r;
}

/* A waiter for one call (the caller's hold), the report thread started:
 * 0, SL_ERR_CLOSED or SL_ERR_NOMEM. */
static int acked_wait_start(struct kafka_bus *b, struct acked_wait **w)
{
    *w = NULL;
    if (atomic_load(&b->closed))
        return SL_ERR_CLOSED;
    if (poller_start(b) != 0 || !(*w = acked_wait_new()))
        return SL_ERR_NOMEM;
    return 0;
}

static int kafka_send_acked(struct sl_bus *bus, const char *const *topics, struct sl_msg **msgs,
                            size_t n, int timeout_ms)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    struct acked_wait *w = NULL;
    int rc = acked_wait_start(b, &w);
    if (rc == 0 && (rc = acked_produce(b, topics, msgs, n, w)) == 0)
        rc = acked_wait_done(w, timeout_ms);
    if (w)
        acked_wait_release(w, false); /* the caller's hold */
    for (size_t i = 0; i < n; i++)
        sl_msg_unref(msgs[i]);
    return rc;
}

static int kafka_send_async(struct sl_bus *bus, const char *const *topics, struct sl_msg **msgs,
                            size_t n, void (*done)(void *arg, int rc), void *arg)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    struct acked_wait *w = NULL;
    int rc = acked_wait_start(b, &w);
    if (rc == 0) {
        /* the caller's hold counts as a message still to report, so that
         * done cannot run before every message is produced */
        w->pending = 1;
        w->done = done;
        w->done_arg = arg;
        if ((rc = acked_produce(b, topics, msgs, n, w)) != 0) {
            pthread_mutex_lock(&w->mu);
            w->done = NULL; /* the caller answers for them now */
            pthread_mutex_unlock(&w->mu);
        }
        acked_wait_release(w, true); /* the caller's hold: done may run now */
    }
    for (size_t i = 0; i < n; i++)
        sl_msg_unref(msgs[i]);
    return rc;
}

/* Stores the offset of the message handed out last (a batch: all of its
 * records): it has been processed. */
static void store_pending(struct sl_consumer *c)
{
    rd_kafka_message_t *rkm = c->pending;
    if (!rkm)
        return;
    c->pending = NULL;
    c->btopic = NULL;
    sl_codec_batch_end(&c->bdec);
    rd_kafka_resp_err_t err = rd_kafka_offset_store(rkm->rkt, rkm->partition, rkm->offset);
    if (err && err != RD_KAFKA_RESP_ERR__STATE) /* __STATE: partition revoked meanwhile */
        sl_warn(COMP, "could not store the offset of %s [%" PRId32 "] %" PRId64 ": %s",
                rd_kafka_topic_name(rkm->rkt), rkm->partition, rkm->offset, rd_kafka_err2str(err));
    rd_kafka_message_destroy(rkm);
}

/* Commits the stored offsets once every output is acknowledged. */
static int commit_stored(struct sl_consumer *c)
{
    struct kafka_bus *b = c->bus;
    int rc = wait_delivered(b, -1);
    if (rc) {
        pthread_mutex_lock(&b->mu);
        sl_error(COMP, "group %s: not committing: %s", c->group, b->first_error);
        pthread_mutex_unlock(&b->mu);
        return rc;
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return 0;
    sl_warn(COMP, "could not commit the offsets of group %s: %s", c->group, rd_kafka_err2str(err));
    return err == RD_KAFKA_RESP_ERR__FATAL ? SL_ERR_FATAL : SL_ERR_RETRY;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct sl_consumer *c = opaque;
    bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t aerr = 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        sl_info(COMP, "group %s: %d partitions assigned", c->group, parts->cnt);
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            sl_warn(COMP, "group %s: rebalance failed: %s", c->group, rd_kafka_err2str(err));
        else
            sl_info(COMP, "group %s: %d partitions revoked", c->group, parts->cnt);
        if (rd_kafka_assignment_lost(rk))
            ; /* another member owns them already: nothing of ours to commit */
        else if (c->revoke_hook && c->revoke_hook(c->revoke_arg) != 0)
            sl_warn(COMP, "group %s: the stage could not flush: not committing", c->group);
        else
            commit_stored(c); /* what the stage finished; a refusal was logged */
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
    }
    if (error) {
        sl_warn(COMP, "group %s: could not change the assignment: %s", c->group,
                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (aerr) {
        sl_warn(COMP, "group %s: could not change the assignment: %s", c->group,
                rd_kafka_err2str(aerr));
    }
}

static void consumer_free(struct sl_consumer *c)
{
    sl_codec_batch_release(&c->bdec);
    for (size_t i = 0; i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    free(c);
}

/* librdkafka's statistics (statistics.interval.ms): the consumer lag of
 * each partition assigned, as the gauge sluice_consumer_lag{group, topic,
 * partition} of /metrics (metrics.h); -1 while unknown. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    struct sl_consumer *c = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics = json_object_get(root, "topics");
    const char *tname;
    json_t *t;
    char group[128];
    sl_metrics_label_value(c->group, group, sizeof(group));
    json_object_foreach(topics, tname, t)
    {
        const char *pname;
        json_t *p;
        json_object_foreach(json_object_get(t, "partitions"), pname, p)
        {
            if (!strcmp(pname, "-1")) /* librdkafka's internal UA partition */
                continue;
            json_t *lag = json_object_get(p, "consumer_lag");
            if (!json_is_integer(lag))
                continue;
            char topic[256], labels[512];
            sl_metrics_label_value(tname, topic, sizeof(topic));
            snprintf(labels, sizeof(labels), "group=\"%s\",topic=\"%s\",partition=\"%s\"", group,
                     topic, pname);
            sl_gauge_set(sl_metrics_gauge("sluice_consumer_lag",
                                          "messages a consumer group is behind on a partition "
                                          "(librdkafka's statistics, every 15 s; -1 unknown)",
                                          labels),
                         (int64_t)json_integer_value(lag));
        }
    }
    json_decref(root);
    return 0; /* librdkafka frees json */
}

static struct sl_consumer *kafka_subscribe(struct sl_bus *bus, const char *group,
                                           const char *const *topics, size_t ntopics, char *errbuf,
                                           size_t errsz)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *subs = NULL;
    char why[512];
    struct sl_consumer *c = calloc(1, sizeof(*c));
    if (!c || !(c->topics = calloc(ntopics ? ntopics : 1, sizeof(*c->topics)))) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c->bus = b;
    snprintf(c->group, sizeof(c->group), "%s", group);
    subs = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i < ntopics; i++) {
        char name[TOPIC_MAX + 2];
        if (topic_name(b, topics[i], name, sizeof(name))) {
            sl_seterr(errbuf, errsz, SL_ERR_INVALID, "topic name %s%s is longer than kafka allows",
                      b->prefix, topics[i]);
            goto fail;
        }
        if (!(c->topics[i] = strdup(topics[i]))) {
            sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        c->ntopics++;
        rd_kafka_topic_partition_list_add(subs, name, RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_conf_t *dflt = rd_kafka_conf_new();
    /* our defaults first, so that SLUICE_KAFKA_CONFIG may override them */
    if (conf_set(dflt, "group.id", group, "consumer group", errbuf, errsz) ||
        conf_set(dflt, "enable.auto.commit", "false", "consumer", errbuf, errsz) ||
        conf_set(dflt, "enable.auto.offset.store", "false", "consumer", errbuf, errsz) ||
        conf_set(dflt, "auto.offset.reset", "earliest", "consumer", errbuf, errsz) ||
        conf_set(dflt, "allow.auto.create.topics", "true", "consumer", errbuf, errsz) ||
        /* prefetch at most 64 MiB (librdkafka's default, stated so that the
         * bound stays ours): memory stays bounded. 16 MiB starved the
         * stages: the fetcher stops at the bound, and a stage emptied 16 MiB
         * of record batches before fetching resumed (300,000 rows through
         * the pipeline: 45,900 -> 54,700 rows/s, re-run 56,600 -> 74,000) */
        conf_set(dflt, "queued.max.messages.kbytes", "65536", "consumer", errbuf, errsz) ||
        /* the consumer lag of /metrics, every 15 s (stats_cb) */
        conf_set(dflt, "statistics.interval.ms", "15000", "consumer", errbuf, errsz) ||
        conf_set(dflt, "bootstrap.servers", b->brokers, "SLUICE_KAFKA_BROKERS", errbuf, errsz) ||
        conf_set(dflt, "client.id", b->client_id, "client id", errbuf, errsz) ||
        conf_apply_list(dflt, b->config, errbuf, errsz)) {
        rd_kafka_conf_destroy(dflt);
        goto fail;
    }
    conf = dflt;
    /* offsets are ours to store and commit, whatever the user set */
    if (conf_set(conf, "enable.auto.commit", "false", "consumer", errbuf, errsz) ||
        conf_set(conf, "enable.auto.offset.store", "false", "consumer", errbuf, errsz))
        goto fail;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, c);
    if (!(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why)))) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "could not create a kafka consumer: %s", why);
        goto fail;
    }
    conf = NULL; /* the consumer's now */
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, subs);
    if (err) {
        sl_seterr(errbuf, errsz, SL_ERR_RETRY, "could not subscribe group %s: %s", group,
                  rd_kafka_err2str(err));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(subs);
    return c;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (subs)
        rd_kafka_topic_partition_list_destroy(subs);
    if (c && c->rk)
        rd_kafka_destroy(c->rk);
    if (c)
        consumer_free(c);
    return NULL;
}

/* Sends an undecodable message (or, index >= 0, the undecodable record
 * data[0..len) at that index of its batch) to the dead-letter topic as it
 * came. Returns 0 when it is on its way (its offset may be stored). */
static int dead_letter(struct sl_consumer *c, const rd_kafka_message_t *rkm, const void *data,
                       size_t len, long index, const char *reason)
{
    struct kafka_bus *b = c->bus;
    const char *src = rd_kafka_topic_name(rkm->rkt);
    char name[TOPIC_MAX + 2], num[32];
    topic_name(b, SL_TOPIC_DEAD, name, sizeof(name)); /* shorter than any valid name */
    if (index < 0)
        sl_warn(COMP, "undecodable message at %s [%" PRId32 "] offset %" PRId64 " skipped: %s", src,
                rkm->partition, rkm->offset, reason);
    else
        sl_warn(COMP,
                "undecodable record %ld of the batch at %s [%" PRId32 "] offset %" PRId64
                " skipped: %s",
                index + 1, src, rkm->partition, rkm->offset, reason);
    if (!strcmp(src, name))
        return 0; /* never back into itself */
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(5);
    rd_kafka_header_add(hdrs, "sluice-reason", -1, reason, -1);
    rd_kafka_header_add(hdrs, "sluice-topic", -1, src, -1);
    snprintf(num, sizeof(num), "%" PRId32, rkm->partition);
    rd_kafka_header_add(hdrs, "sluice-partition", -1, num, -1);
    snprintf(num, sizeof(num), "%" PRId64, rkm->offset);
    rd_kafka_header_add(hdrs, "sluice-offset", -1, num, -1);
    if (index >= 0) {
        snprintf(num, sizeof(num), "%ld", index);
        rd_kafka_header_add(hdrs, "sluice-batch-index", -1, num, -1);
    }
    rd_kafka_resp_err_t err = produce(b, name, RD_KAFKA_PARTITION_UA, (void *)data, len, rkm->key,
                                      rkm->key_len, hdrs, RD_KAFKA_MSG_F_COPY, NULL);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        if (err == RD_KAFKA_RESP_ERR__DESTROY)
            return SL_ERR_CLOSED;
        char what[TOPIC_MAX + 300];
        snprintf(what, sizeof(what), "could not send an undecodable message to %s: %s", name,
                 rd_kafka_err2str(err));
        sl_error(COMP, "%s", what);
        note_failure(b, what); /* the offset is stored: do not commit it */
    }
    return 0;
}

/* Takes on a consumed message: a batch becomes the pending one (NULL,
 * *rc 0); a single message is decoded and pending (returned); one that
 * cannot be decoded goes to the dead-letter topic (NULL). A batch's framing
 * is checked whole before any of its records is handed out. */
static struct sl_msg *take(struct sl_consumer *c, rd_kafka_message_t *rkm, const char **topic,
                           int *rc)
{
    const char *logical = logical_name(c->bus, rd_kafka_topic_name(rkm->rkt));
    char why[256];
    *rc = 0;
    *topic = NULL;
    for (size_t i = 0; i < c->ntopics && !*topic; i++)
        if (!strcmp(c->topics[i], logical))
            *topic = c->topics[i];
    enum sl_msg_kind kind = sl_codec_topic_kind(logical);
    struct sl_msg *m = NULL;
    if (!*topic) {
        snprintf(why, sizeof(why), "not a topic of the subscription");
    } else if (!kind) {
        snprintf(why, sizeof(why), "topic %s carries no known record kind", logical);
    } else if (kind == SL_MSG_RECORD || kind == SL_MSG_REJECTION) {
        int r = sl_codec_batch_begin(&c->bdec, kind, rkm->payload, rkm->len, why, sizeof(why));
        if (r < 0) {
            char what[160];
            snprintf(what, sizeof(what), "%.150s", why);
            snprintf(why, sizeof(why), "cannot decode %s batch: %s: not a valid sluice.%s",
                     sl_msg_kind_str(kind), what,
                     kind == SL_MSG_RECORD ? "RecordBatch" : "RejectionBatch");
        } else {
            c->pending = rkm;
            c->btopic = *topic;
            c->bkind = kind;
            c->bpos = 0;
            c->bindex = 0;
            return NULL;
        }
    } else if ((m = sl_codec_decode(kind, rkm->payload, rkm->len, why, sizeof(why))) != NULL) {
        if (rkm->key && rkm->key_len)
            m->key = sl_arena_strndup(&m->arena, rkm->key, rkm->key_len);
        c->pending = rkm;
        return m;
    }
    if ((*rc = dead_letter(c, rkm, rkm->payload, rkm->len, -1, why)) == 0)
        rd_kafka_offset_store(rkm->rkt, rkm->partition, rkm->offset);
    rd_kafka_message_destroy(rkm);
    return NULL;
}

/* The next record of the pending batch; NULL when none is left (or, *rc
 * set, the bus closed while a bad one was being dead-lettered). */
static struct sl_msg *batch_next(struct sl_consumer *c, int *rc)
{
    rd_kafka_message_t *rkm = c->pending;
    const void *e;
    size_t elen;
    char why[256];
    *rc = 0;
    while (sl_codec_batch_next(rkm->payload, rkm->len, &c->bpos, &e, &elen, why, sizeof(why)) ==
           1) {
        long index = (long)c->bindex++;
        struct sl_msg *m = sl_codec_batch_decode(&c->bdec, e, elen, why, sizeof(why));
        if (m && rkm->key_len) /* the bus sends batches without; another client may not */
            m->key = sl_arena_strndup(&m->arena, rkm->key, rkm->key_len);
        if (m)
            return m;
        if ((*rc = dead_letter(c, rkm, e, elen, index, why)) != 0)
            return NULL;
    }
    c->bpos = rkm->len;
    return NULL;
}

/* True when a batch is pending with records not yet handed out. */
static bool batch_open(const struct sl_consumer *c)
{
    return c->pending && c->btopic && c->bpos < c->pending->len;
}

static int kafka_poll(struct sl_consumer *c, struct sl_msg **msg, const char **topic,
                      int timeout_ms)
{
    int64_t deadline = -2; /* not yet known: a record of an open batch needs no clock */
    for (;;) {
        if (atomic_load(&c->bus->closed))
            return SL_ERR_CLOSED;
        if (batch_open(c)) {
            int rc;
            struct sl_msg *m = batch_next(c, &rc);
            if (rc)
                return rc;
            if (m) {
                *msg = m;
                if (topic)
                    *topic = c->btopic;
                return 0;
            }
        }
        store_pending(c); /* the previous message (every record of it) was processed */
        if (deadline == -2) {
            /* outputs that waited long enough (a failure was noted); a stage
             * sending records checks this itself as it adds them */
            batch_flush(c->bus, true);
            deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
        }
        int slice = POLL_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            slice = left < 0 ? 0 : left < slice ? (int)left : slice;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(c->rk, slice);
        if (!rkm) {
            if (deadline >= 0 && now_ms() >= deadline)
                return SL_ERR_TIMEOUT;
            continue;
        }
        if (rkm->err) {
            rd_kafka_resp_err_t err = rkm->err;
            if (err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sl_warn(COMP, "group %s: %s", c->group, rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            if (err == RD_KAFKA_RESP_ERR__FATAL)
                return SL_ERR_FATAL;
            continue;
        }
        const char *name = NULL;
        int rc;
        struct sl_msg *m = take(c, rkm, &name, &rc);
        if (rc)
            return rc;
        if (m) {
            *msg = m;
            if (topic)
                *topic = name;
            return 0;
        }
    }
}

static bool kafka_in_hand(const struct sl_consumer *c)
{
    return batch_open(c);
}

static void kafka_set_revoke_hook(struct sl_consumer *c, int (*fn)(void *arg), void *arg)
{
    c->revoke_hook = fn;
    c->revoke_arg = arg;
}

static int kafka_commit(struct sl_consumer *c)
{
    if (!batch_open(c)) /* else the rest of the batch is still to come */
        store_pending(c);
    return commit_stored(c);
}

static void kafka_unsubscribe(struct sl_consumer *c)
{
    if (!c)
        return;
    if (c->pending) /* not known to be processed: its successor gets it again */
        rd_kafka_message_destroy(c->pending);
    c->pending = NULL;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk); /* revoke: commit stored */
    if (err)
        sl_warn(COMP, "group %s: could not leave cleanly: %s", c->group, rd_kafka_err2str(err));
    rd_kafka_destroy(c->rk);
    consumer_free(c);
}

void sl_bus_kafka_abandon(struct sl_consumer *c)
{
    if (!c)
        return;
    if (c->pending)
        rd_kafka_message_destroy(c->pending);
    rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    consumer_free(c);
}

static int kafka_flush(struct sl_bus *bus, int timeout_ms)
{
    return wait_delivered((struct kafka_bus *)bus, timeout_ms);
}

static void kafka_close(struct sl_bus *bus)
{
    atomic_store(&((struct kafka_bus *)bus)->closed, true);
}

static void kafka_destroy(struct sl_bus *bus)
{
    struct kafka_bus *b = (struct kafka_bus *)bus;
    if (b->poller_on) {
        atomic_store(&b->poller_stop, true);
        pthread_join(b->poller, NULL);
    }
    if (b->rk) {
        batch_flush(b, false);
        for (size_t i = 0; i < b->nbtopics; i++) {
            struct batch_topic *t = &b->btopics[i];
            for (int32_t p = 0; p < t->nparts; p++) {
                sl_buf_cleanup(&t->parts[p].buf);
                sl_codec_batch_enc_reset(&t->parts[p].enc);
            }
            free(t->parts);
            rd_kafka_topic_destroy(t->rkt);
        }
        rd_kafka_flush(b->rk, DESTROY_WAIT_MS);
        int left = rd_kafka_outq_len(b->rk);
        if (left > 0) {
            sl_error(COMP, "%d messages were not delivered before the bus was destroyed", left);
            /* their reports (failed) free the waiters of send_acked calls */
            rd_kafka_purge(b->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(b->rk, PURGE_WAIT_MS);
        }
        rd_kafka_destroy(b->rk);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->bmu);
    free(b->prefix);
    free(b->brokers);
    free(b->config);
    free(b->client_id);
    free(b);
}

static const struct sl_bus_ops kafka_ops = {
    .name = "kafka",
    .send = kafka_send,
    .subscribe = kafka_subscribe,
    .poll = kafka_poll,
    .commit = kafka_commit,
    .set_revoke_hook = kafka_set_revoke_hook,
    .send_dead = kafka_send_dead,
    .send_acked = kafka_send_acked,
    .send_async = kafka_send_async,
    .in_hand = kafka_in_hand,
    .unsubscribe = kafka_unsubscribe,
    .flush = kafka_flush,
    .close = kafka_close,
    .destroy = kafka_destroy,
};

struct sl_bus *sl_bus_kafka_new(const struct sl_kafka_conf *kc, char *errbuf, size_t errsz)
{
    static const struct sl_kafka_conf none;
    if (!kc)
        kc = &none;
    rd_kafka_conf_t *conf = NULL;
    char why[512];
    struct kafka_bus *b = calloc(1, sizeof(*b));
    if (!b) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    b->base.ops = &kafka_ops;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->bmu, NULL);
    b->prefix = strdup(kc->topic_prefix ? kc->topic_prefix : "sluice.");
    b->brokers = strdup(kc->brokers && *kc->brokers ? kc->brokers : "localhost:9092");
    b->config = kc->config ? strdup(kc->config) : NULL;
    b->client_id = strdup(kc->client_id && *kc->client_id ? kc->client_id : "sluice");
    if (!b->prefix || !b->brokers || !b->client_id || (kc->config && !b->config)) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (strspn(b->prefix, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            strlen(b->prefix) ||
        strlen(b->prefix) > 200) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "SLUICE_TOPIC_PREFIX: '%s' is not a valid start of a kafka topic name "
                  "(letters, digits, '.', '_', '-'; at most 200)",
                  b->prefix);
        goto fail;
    }
    if (!(conf = base_conf(b, errbuf, errsz)))
        goto fail;
    if (conf_set(conf, "enable.idempotence", "true", "producer", errbuf, errsz) ||
        conf_set(conf, "acks", "all", "producer", errbuf, errsz))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, producer_error_cb);
    rd_kafka_conf_set_opaque(conf, b);
    if (!(b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why)))) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "could not create the kafka producer: %s", why);
        goto fail;
    }
    return &b->base;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    kafka_destroy(&b->base);
    return NULL;
}
