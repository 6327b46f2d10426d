/*
 * The in-process bus (bus.h): bounded queues between threads.
 *
 * Each consumer group has one queue; a topic keeps the list of group queues
 * that subscribed to it, and send() pushes a reference of the message into
 * each (fan-out, as Kafka consumer groups see every message). A full queue
 * blocks the sender (backpressure) unless the sender is that queue's own
 * consumer thread: a stage that emits to a topic it consumes (the publisher
 * and the runs topic) must never wait on itself. Consumers take messages in
 * batches to keep the mutex off the hot path, and wake a blocked producer only
 * once the queue is half empty, so that threads hand over work in large
 * pieces instead of waking each other for every message: on two cores, five
 * stage threads spend their time working rather than in futex calls. For the
 * same reason a consumer that finds its queue empty first naps for a
 * millisecond without asking to be woken (a producer wakes it only once
 * LAZY_WAKE messages wait); only then does it sleep until the next message. Messages sent to a
 * topic without subscribers are dropped, so every stage subscribes before any message is sent
 * (sl_stage_runner_new does it on the caller's thread).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/bus.h"
#include "sluice/err.h"

#define MAX_TOPICS 32
#define MAX_GROUPS 32
#define BATCH      256
#define LAZY_US    1000 /* a consumer first naps this long, unannounced */
#define LAZY_WAKE  64   /* queued messages that end a nap early */

struct item {
    struct sl_msg *msg;
    const char *topic;
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct item *ring;
    size_t cap, head, len;
    int waiting_consumers, waiting_producers;
    int napping_consumers;                        /* wake them only for LAZY_WAKE messages */
    bool consumer_signalled, producers_signalled; /* one wake-up per sleep */
    bool closed;
    pthread_t owner; /* the thread that polls this queue last */
    bool has_owner;
    char *group;
};

/* Topics and their subscriber lists only grow, and each entry is complete
 * before the count that makes it visible is published (release), so send()
 * reads them without a lock. */
struct topic {
    char *name;
    struct queue *subs[MAX_GROUPS];
    atomic_size_t nsubs;
};

struct inproc_bus {
    struct sl_bus base;
    pthread_rwlock_t lock; /* serializes subscribe() */
    struct topic topics[MAX_TOPICS];
    atomic_size_t ntopics;
    struct queue *groups[MAX_GROUPS];
    size_t ngroups;
    size_t capacity;
    atomic_bool closed;
};

struct sl_consumer {
    struct inproc_bus *bus;
    struct queue *q;
    struct item batch[BATCH];
    size_t bhead, blen;
};

static struct queue *queue_new(const char *group, size_t cap)
{
    struct queue *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->ring = calloc(cap, sizeof(*q->ring));
    q->group = strdup(group);
    if (!q->ring || !q->group) {
        free(q->ring);
        free(q->group);
        free(q);
        return NULL;
    }
    q->cap = cap;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

static void queue_destroy(struct queue *q)
{
    for (size_t i = 0; i < q->len; i++)
        sl_msg_unref(q->ring[(q->head + i) % q->cap].msg);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->ring);
    free(q->group);
    free(q);
}

/* Grows the ring of a queue whose own consumer sends to it while full. */
static int queue_grow(struct queue *q)
{
    size_t ncap = q->cap * 2;
    struct item *r = malloc(ncap * sizeof(*r));
    if (!r)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < q->len; i++)
        r[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = r;
    q->head = 0;
    q->cap = ncap;
    return 0;
}

/* Pushes one reference of msg; blocks while full unless the caller is the
 * queue's consumer. */
static int queue_push(struct queue *q, const char *topic, struct sl_msg *msg)
{
    pthread_mutex_lock(&q->mu);
    bool self = q->has_owner && pthread_equal(q->owner, pthread_self());
    while (q->len == q->cap && !q->closed && !self) {
        q->producers_signalled = false;
        q->waiting_producers++;
        pthread_cond_wait(&q->not_full, &q->mu);
        q->waiting_producers--;
    }
    if (q->closed) {
        pthread_mutex_unlock(&q->mu);
        return SL_ERR_CLOSED;
    }
    if (q->len == q->cap && queue_grow(q)) {
        pthread_mutex_unlock(&q->mu);
        return SL_ERR_NOMEM;
    }
    q->ring[(q->head + q->len) % q->cap] = (struct item){msg, topic};
    q->len++;
    if (!q->consumer_signalled &&
        (q->waiting_consumers || (q->napping_consumers && q->len >= LAZY_WAKE))) {
        q->consumer_signalled = true;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

static struct topic *find_topic(struct inproc_bus *b, const char *name)
{
    size_t n = atomic_load_explicit(&b->ntopics, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(b->topics[i].name, name))
            return &b->topics[i];
    return NULL;
}

static int inproc_send(struct sl_bus *bus, const char *topic, struct sl_msg *msg)
{
    struct inproc_bus *b = (struct inproc_bus *)bus;
    if (atomic_load(&b->closed)) {
        sl_msg_unref(msg);
        return SL_ERR_CLOSED;
    }
    struct topic *t = find_topic(b, topic);
    size_t nsubs = t ? atomic_load_explicit(&t->nsubs, memory_order_acquire) : 0;
    if (nsubs == 0) {
        sl_msg_unref(msg); /* nobody listens */
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < nsubs && rc == 0; i++) {
        if (i + 1 < nsubs)
            sl_msg_ref(msg);
        rc = queue_push(t->subs[i], t->name, msg);
        if (rc) {
            sl_msg_unref(msg); /* the one this push did not take */
            if (i + 1 < nsubs)
                sl_msg_unref(msg); /* the one kept for the next */
        }
    }
    return rc;
}

static struct sl_consumer *inproc_subscribe(struct sl_bus *bus, const char *group,
                                            const char *const *topics, size_t ntopics, char *errbuf,
                                            size_t errsz)
{
    struct inproc_bus *b = (struct inproc_bus *)bus;
    struct sl_consumer *c = calloc(1, sizeof(*c));
    if (!c) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->bus = b;
    pthread_rwlock_wrlock(&b->lock);
    struct queue *q = NULL;
    for (size_t i = 0; i < b->ngroups; i++)
        if (!strcmp(b->groups[i]->group, group))
            q = b->groups[i];
    if (!q) {
        if (b->ngroups == MAX_GROUPS || !(q = queue_new(group, b->capacity))) {
            sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot add consumer group '%s'", group);
            goto fail;
        }
        b->groups[b->ngroups++] = q;
    }
    for (size_t i = 0; i < ntopics; i++) {
        struct topic *t = find_topic(b, topics[i]);
        if (!t) {
            if (atomic_load(&b->ntopics) == MAX_TOPICS) {
                sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "too many topics");
                goto fail;
            }
            t = &b->topics[b->ntopics];
            if (!(t->name = strdup(topics[i]))) {
                sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                goto fail;
            }
            atomic_fetch_add_explicit(&b->ntopics, 1, memory_order_release);
        }
        size_t ns = atomic_load(&t->nsubs);
        bool have = false;
        for (size_t k = 0; k < ns; k++)
            have |= t->subs[k] == q;
        if (!have && ns < MAX_GROUPS) {
            t->subs[ns] = q;
            atomic_store_explicit(&t->nsubs, ns + 1, memory_order_release);
        }
    }
    c->q = q;
    pthread_rwlock_unlock(&b->lock);
    return c;
fail:
    pthread_rwlock_unlock(&b->lock);
    free(c);
    return NULL;
}

static void add_us(struct timespec *ts, long us)
{
    ts->tv_sec += us / 1000000;
    ts->tv_nsec += (us % 1000000) * 1000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int inproc_poll(struct sl_consumer *c, struct sl_msg **msg, const char **topic,
                       int timeout_ms)
{
    if (c->blen == 0) {
        struct queue *q = c->q;
        pthread_mutex_lock(&q->mu);
        q->owner = pthread_self();
        q->has_owner = true;
        if (q->len == 0 && !q->closed && timeout_ms != 0) {
            struct timespec now, nap, until;
            clock_gettime(CLOCK_REALTIME, &now);
            nap = until = now;
            long nap_us =
                timeout_ms > 0 && timeout_ms * 1000L < LAZY_US ? timeout_ms * 1000L : LAZY_US;
            add_us(&nap, nap_us);
            if (timeout_ms > 0)
                add_us(&until, timeout_ms * 1000L);
            q->consumer_signalled = false;
            q->napping_consumers++;
            while (q->len == 0 && !q->closed &&
                   pthread_cond_timedwait(&q->not_empty, &q->mu, &nap) != ETIMEDOUT)
                ;
            q->napping_consumers--;
            while (q->len == 0 && !q->closed) {
                q->consumer_signalled = false;
                q->waiting_consumers++;
                int rc = timeout_ms < 0 ? pthread_cond_wait(&q->not_empty, &q->mu)
                                        : pthread_cond_timedwait(&q->not_empty, &q->mu, &until);
                q->waiting_consumers--;
                if (rc == ETIMEDOUT)
                    break;
            }
        }
        size_t n = q->len < BATCH ? q->len : BATCH;
        for (size_t i = 0; i < n; i++)
            c->batch[i] = q->ring[(q->head + i) % q->cap];
        q->head = (q->head + n) % q->cap;
        q->len -= n;
        bool closed = q->closed;
        if (n && q->waiting_producers && !q->producers_signalled && q->len <= q->cap / 2) {
            q->producers_signalled = true;
            pthread_cond_broadcast(&q->not_full);
        }
        pthread_mutex_unlock(&q->mu);
        c->bhead = 0;
        c->blen = n;
        if (n == 0)
            return closed ? SL_ERR_CLOSED : SL_ERR_TIMEOUT;
    }
    struct item *it = &c->batch[c->bhead++];
    c->blen--;
    *msg = it->msg;
    if (topic)
        *topic = it->topic;
    return 0;
}

static int inproc_commit(struct sl_consumer *c)
{
    return 0; /* nothing survives the process: positions need no record */
}

static void inproc_unsubscribe(struct sl_consumer *c)
{
    if (!c)
        return;
    while (c->blen) {
        sl_msg_unref(c->batch[c->bhead++].msg);
        c->blen--;
    }
    free(c);
}

static int inproc_flush(struct sl_bus *bus, int timeout_ms)
{
    return 0; /* a send is delivered when it returns */
}

/* Does not take the bus lock: a sender blocked on a full queue holds it for
 * reading, and closing is what wakes it. Groups are only added before the
 * stages start, so reading the list here is safe. */
static void inproc_close(struct sl_bus *bus)
{
    struct inproc_bus *b = (struct inproc_bus *)bus;
    atomic_store(&b->closed, true);
    for (size_t i = 0; i < b->ngroups; i++) {
        struct queue *q = b->groups[i];
        pthread_mutex_lock(&q->mu);
        q->closed = true;
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
        pthread_mutex_unlock(&q->mu);
    }
}

static void inproc_destroy(struct sl_bus *bus)
{
    struct inproc_bus *b = (struct inproc_bus *)bus;
    for (size_t i = 0; i < b->ngroups; i++)
        queue_destroy(b->groups[i]);
    for (size_t i = 0; i < b->ntopics; i++)
        free(b->topics[i].name);
    pthread_rwlock_destroy(&b->lock);
    free(b);
}

static const struct sl_bus_ops inproc_ops = {
    .name = "inproc",
    .send = inproc_send,
    .subscribe = inproc_subscribe,
    .poll = inproc_poll,
    .commit = inproc_commit,
    .unsubscribe = inproc_unsubscribe,
    .flush = inproc_flush,
    .close = inproc_close,
    .destroy = inproc_destroy,
};

struct sl_bus *sl_bus_inproc_new(size_t capacity)
{
    struct inproc_bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->base.ops = &inproc_ops;
    b->capacity = capacity ? capacity : 1024;
    pthread_rwlock_init(&b->lock, NULL);
    return &b->base;
}

void sl_bus_destroy(struct sl_bus *bus)
{
    if (bus)
        bus->ops->destroy(bus);
}
