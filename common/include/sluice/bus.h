/*
 * The message bus: topics of sl_msg between stages.
 *
 * Two implementations sit behind struct sl_bus_ops: inproc (bounded queues
 * between threads, embedded mode and stage tests) and kafka (librdkafka,
 * distributed mode). A stage never knows which one it runs on.
 *
 * Topic names given here are logical ("records.raw"); an implementation may
 * prefix them (SLUICE_TOPIC_PREFIX). Every subscribing group gets every
 * message of its topics (as Kafka consumer groups do); within a group, one
 * consumer gets each message.
 */
#ifndef SLUICE_BUS_H
#define SLUICE_BUS_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/msg.h"

/* The topics of ARCHITECTURE.md. */
#define SL_TOPIC_TICKETS  "tickets"
#define SL_TOPIC_FILES    "files"
#define SL_TOPIC_RAW      "records.raw"
#define SL_TOPIC_MAPPED   "records.mapped"
#define SL_TOPIC_VALID    "records.valid"
#define SL_TOPIC_REJECTED "records.rejected"
#define SL_TOPIC_RUNS     "runs"
#define SL_TOPIC_DEAD     "dead"

struct sl_bus;
struct sl_consumer;

struct sl_bus_ops {
    const char *name;
    /* Sends msg to topic, taking over one reference of msg; blocks while the
     * topic is full (backpressure). 0, SL_ERR_CLOSED, or a retriable error. */
    int (*send)(struct sl_bus *bus, const char *topic, struct sl_msg *msg);
    /* A consumer in group of the given topics; NULL with errbuf set on error. */
    struct sl_consumer *(*subscribe)(struct sl_bus *bus, const char *group,
                                     const char *const *topics, size_t ntopics, char *errbuf,
                                     size_t errsz);
    /* The next message (one reference now the caller's) and its topic name,
     * which stays valid while the consumer lives. SL_ERR_TIMEOUT when nothing
     * came within timeout_ms (-1: wait for ever), SL_ERR_CLOSED once the bus
     * is closed and every queued message has been delivered. */
    int (*poll)(struct sl_consumer *c, struct sl_msg **msg, const char **topic, int timeout_ms);
    /* Everything polled so far has been processed and its outputs sent:
     * commit the consumer's position. */
    int (*commit)(struct sl_consumer *c);
    void (*unsubscribe)(struct sl_consumer *c);
    /* Waits until every message sent has been delivered (or acknowledged). */
    int (*flush)(struct sl_bus *bus, int timeout_ms);
    /* From now on poll() drains and then answers SL_ERR_CLOSED; send() fails. */
    void (*close)(struct sl_bus *bus);
    void (*destroy)(struct sl_bus *bus);
    /* Optional: fn(arg) is called on the consumer's thread before the bus
     * commits on its own (partitions revoked by a rebalance, or the consumer
     * closing), so that a stage holding outputs back sends them first; a
     * non-zero return keeps the offsets uncommitted (the messages come
     * again to the next owner). fn NULL removes the hook. */
    void (*set_revoke_hook)(struct sl_consumer *c, int (*fn)(void *arg), void *arg);
    /* Optional (NULL: send() to SL_TOPIC_DEAD): sends msg, which a stage
     * could not process, to the dead-letter topic with the topic it came
     * from and the reason (Kafka: the headers sluice-topic and
     * sluice-reason). Takes over one reference of msg. */
    int (*send_dead)(struct sl_bus *bus, const char *from_topic, struct sl_msg *msg,
                     const char *reason);
    /* Optional (NULL: send() each, then flush()): sends msgs[i] to
     * topics[i] for i < n, in that order, taking over one reference of each
     * (even on error), and waits up to timeout_ms (-1: for ever) until the
     * bus acknowledged every one of THEM (Kafka: acks=all), not every
     * message of the bus, so that any number of threads may each wait for
     * their own. 0; SL_ERR_TIMEOUT (some may still be delivered later);
     * SL_ERR_CLOSED; or the error of the first that could not be sent or
     * delivered (SL_ERR_FATAL: the bus is broken for good, make a new one).
     * A failure here is the caller's alone: it does not make commit() or
     * flush() refuse, as a failed send() does. Any thread. */
    int (*send_acked)(struct sl_bus *bus, const char *const *topics, struct sl_msg **msgs, size_t n,
                      int timeout_ms);
    /* Optional (NULL: send_acked): send_acked without the wait: 0, and
     * done(arg, rc) is called once, on a thread of the bus, when the bus
     * acknowledged every one of msgs (rc 0) or the first of them failed (rc
     * as send_acked's); non-zero when they could not all be sent, and done
     * is never called (some may still be delivered). Takes over one
     * reference of each message (even on error). Any thread. */
    int (*send_async)(struct sl_bus *bus, const char *const *topics, struct sl_msg **msgs, size_t n,
                      void (*done)(void *arg, int rc), void *arg);
    /* Optional (NULL: never): true while the message polled last is not
     * all handed out yet (Kafka: a batch with records still to come), so
     * that poll() gives the next of them at once without fetching. A
     * stopping stage finishes what it holds before its last commit. */
    bool (*in_hand)(const struct sl_consumer *c);
};

struct sl_bus {
    const struct sl_bus_ops *ops;
};

static inline int sl_bus_send(struct sl_bus *bus, const char *topic, struct sl_msg *msg)
{
    return bus->ops->send(bus, topic, msg);
}

/* In-process bus: each subscription is a bounded queue of capacity messages.
 * Returns NULL when out of memory. Thread-safe. */
struct sl_bus *sl_bus_inproc_new(size_t capacity);

/* Settings of the Kafka bus (docs/configuration.md). Strings are copied. */
struct sl_kafka_conf {
    const char *brokers;      /* bootstrap servers; NULL: "localhost:9092" */
    const char *topic_prefix; /* prefix of every topic name; NULL: "sluice." */
    const char *config;       /* extra librdkafka properties "k=v,k=v", or NULL */
    const char *client_id;    /* client.id (the service's name), or NULL */
};

/* Kafka bus (bus_kafka.c): one idempotent producer (acks=all) shared by
 * every thread, one consumer per subscribe() (use each from one thread).
 * Messages travel protobuf-encoded (codec.h) on prefix + logical topic,
 * keyed by msg->key or else the run id (and row, for records); records and
 * rejections travel in batches of one partition (docs/architecture.md), and
 * a record polled from a batch has no msg->key unless its Kafka message had
 * one. A message that cannot be decoded is never handed out: it goes to
 * the dead-letter topic and poll goes on. A message (a batch: its last
 * record) counts as processed once its consumer's thread calls poll() or
 * commit() again; commit() first waits until every message sent on the bus
 * is acknowledged and refuses (SL_ERR_FATAL) for ever once one could not be
 * delivered, so a restarted service gets those inputs again. send_acked()
 * sends its records in batches of the call alone and waits for their own
 * delivery reports (served by a thread of the bus, started by the first
 * call); a failure is reported to that caller only. NULL with errbuf set on
 * a bad setting. */
struct sl_bus *sl_bus_kafka_new(const struct sl_kafka_conf *conf, char *errbuf, size_t errsz);

/* Tests only: drops a Kafka consumer the way a crash would (no commit, no
 * leave of the group; the group notices at its session timeout). */
void sl_bus_kafka_abandon(struct sl_consumer *c);

/* Destroys bus; accepts NULL. Consumers must be unsubscribed first. */
void sl_bus_destroy(struct sl_bus *bus);

#endif
