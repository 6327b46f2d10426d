/*
 * The webhook endpoint (webhook.h, docs/api.md "Webhooks").
 *
 * A delivery is checked in the order that costs an unsigned sender least:
 * headers (400), the job and its secret (404), the signature and its
 * timestamp (401, webhook_sig.h), the body's records (400: read once by the
 * JSON reader, building the messages before a run exists), the replay
 * window (Redis SET NX GET: a webhook-id seen before is answered 200 with
 * the first delivery's run, 503 while that one is still in flight), then
 * the run is queued in the control plane (trigger "webhook", the one
 * INSERT of a delivery) and FETCHED, the records and SEALED go to Kafka on
 * the endpoint's producer; the answer waits for Kafka's acknowledgement of
 * them (send_acked), not of other deliveries'. When Kafka cannot take them
 * the run is failed, the webhook-id forgotten (so that the sender's retry
 * is processed) and the answer is 503 with Retry-After.
 *
 * Round trips: a job version's document never changes, so each (job,
 * version) is parsed once, with its secret, and cached (JOB_CACHE_MAX, the
 * least recently used dropped). Which version is a job's current one is
 * asked of PostgreSQL at most once in CURRENT_TTL_MS a job: a delivery in
 * the second after a job changed may still be checked against the
 * previous version's secret, and its records built for it; the run itself
 * is always of the version sl_api_run_queue() records (the records are
 * built again when that differs). A PostgreSQL connection is held only
 * while the run is recorded (or a job read), never while Kafka is awaited.
 *
 * Records are built as the parser builds them (record_build.h): source
 * fields flattened by the JSON reader, rows 1..n, a reader's problem as a
 * "_row" format problem, keyed by the target key mapped from the row. A
 * field the mapping reads that records lack is no schema drift here (a
 * sender may push partial records): the attribute is missing in those rows,
 * and the validator rejects a row whose required attribute is missing.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "sluice/api_store.h"
#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/msg.h"
#include "sluice/reader.h"
#include "sluice/record_build.h"
#include "sluice/util.h"
#include "sluice/webhook_sig.h"
#include "webhook.h"

#define COMP            "gateway"
#define REPLAY_TTL_S    600
#define KAFKA_WAIT_MS   5000
#define DESTROY_WAIT_MS 10000
#define RETRY_AFTER_S   5
#define REDIS_TIMEOUT_S 2
#define JOB_CACHE_MAX   64
#define CURRENT_TTL_MS  1000
#define LINGER          "linger.ms=2"
/* Control-plane connections deliveries hold at once (each for a run's
 * INSERT, or a job's read): a burst of deliveries waits its turn for the
 * gateway's pooled connections (16 kept idle) instead of opening one each
 * and running PostgreSQL out of connections. */
#define DB_MAX 12

/* A job version as deliveries need it, parsed once (see the top). */
struct wh_job {
    char *job_id;
    uint32_t version;
    struct sl_job *job; /* NULL: the document does not load (err says why) */
    char err[512];
    unsigned char key[SL_WEBHOOK_KEY_MAX];
    int keylen;         /* -1: no secret; -2: the secret is not whsec_<base64> */
    char from[300];     /* where the secret was looked for */
    int64_t current_ms; /* when PostgreSQL last said it is current (0: never) */
    int64_t used_ms;
    unsigned refs; /* the cache's, and each delivery's (under jobs_mu) */
};

/* The producer, held by each delivery using it: one that failed for good
 * is replaced, and destroyed once its last delivery let go. */
struct wh_bus {
    struct sl_bus *bus;
    unsigned users; /* under bus_mu */
};

struct sl_webhook {
    struct sl_webhook_deps deps;
    char *redis_url;
    pthread_mutex_t mu; /* the Redis connection, made again after a failure */
    redisContext *rc;
    atomic_bool old_redis; /* SET NX GET refused (Redis < 7): SET NX, then GET */
    pthread_mutex_t jobs_mu;
    struct wh_job *jobs[JOB_CACHE_MAX];
    size_t njobs;
    pthread_mutex_t db_mu; /* db_busy */
    pthread_cond_t db_cv;
    int db_busy; /* connections held by deliveries, at most DB_MAX */
    pthread_mutex_t bus_mu;
    struct wh_bus *bus; /* NULL: made on first use */
    char *brokers, *prefix, *kafka_config;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void job_free(struct wh_job *j)
{
    if (!j)
        return;
    sl_job_destroy(j->job);
    OPENSSL_cleanse(j->key, sizeof(j->key));
    free(j->job_id);
    free(j);
}

struct sl_webhook *sl_webhook_new(const char *redis_url, const struct sl_webhook_deps *deps)
{
    struct sl_webhook *wh = calloc(1, sizeof(*wh));
    if (!wh)
        return NULL;
    wh->deps = *deps;
    pthread_mutex_init(&wh->mu, NULL);
    pthread_mutex_init(&wh->jobs_mu, NULL);
    pthread_mutex_init(&wh->bus_mu, NULL);
    pthread_mutex_init(&wh->db_mu, NULL);
    pthread_cond_init(&wh->db_cv, NULL);
    const struct sl_kafka_conf *kc = &deps->kafka;
    size_t clen = kc->config ? strlen(kc->config) : 0;
    /* ours first, so that SLUICE_KAFKA_CONFIG may override it */
    if ((wh->kafka_config = malloc(sizeof(LINGER) + 1 + clen)))
        snprintf(wh->kafka_config, sizeof(LINGER) + 1 + clen, "%s%s%s", LINGER, clen ? "," : "",
                 clen ? kc->config : "");
    wh->brokers = kc->brokers ? strdup(kc->brokers) : NULL;
    wh->prefix = kc->topic_prefix ? strdup(kc->topic_prefix) : NULL;
    if (!(wh->redis_url = strdup(redis_url ? redis_url : "redis://127.0.0.1:6379/0")) ||
        !wh->kafka_config || (kc->brokers && !wh->brokers) || (kc->topic_prefix && !wh->prefix)) {
        sl_webhook_destroy(wh);
        return NULL;
    }
    wh->deps.kafka = (struct sl_kafka_conf){.brokers = wh->brokers,
                                            .topic_prefix = wh->prefix,
                                            .config = wh->kafka_config,
                                            .client_id = "sluice-gateway-webhooks"};
    return wh;
}

void sl_webhook_destroy(struct sl_webhook *wh)
{
    if (!wh)
        return;
    if (wh->rc)
        redisFree(wh->rc);
    if (wh->bus) { /* no delivery runs any more: no other user */
        wh->bus->bus->ops->flush(wh->bus->bus, DESTROY_WAIT_MS);
        sl_bus_destroy(wh->bus->bus);
        free(wh->bus);
    }
    for (size_t i = 0; i < wh->njobs; i++)
        job_free(wh->jobs[i]);
    pthread_mutex_destroy(&wh->mu);
    pthread_mutex_destroy(&wh->jobs_mu);
    pthread_mutex_destroy(&wh->bus_mu);
    pthread_mutex_destroy(&wh->db_mu);
    pthread_cond_destroy(&wh->db_cv);
    free(wh->redis_url);
    free(wh->brokers);
    free(wh->prefix);
    free(wh->kafka_config);
    free(wh);
}

/* ---- answers ------------------------------------------------------------ */

static void __attribute__((format(printf, 4, 5)))
fail(struct sl_webhook_answer *ans, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ans->message, sizeof(ans->message), fmt, ap);
    va_end(ap);
    ans->status = status;
    ans->code = code;
    if (status == 503)
        ans->retry_after = RETRY_AFTER_S;
}

/* ---- the replay window (Redis) ------------------------------------------ */

/* Connects from redis://[user:password@]host[:port][/db]; NULL with errbuf set. */
static redisContext *redis_connect(const char *url, char *errbuf, size_t errsz)
{
    char host[256] = "127.0.0.1", pass[256] = "", user[128] = "";
    int port = 6379, db = 0;
    const char *p = url;
    if (!strncmp(p, "redis://", 8))
        p += 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(user, sizeof(user), "%.*s", (int)(colon - p), p);
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(pass, sizeof(pass), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/?");
    if (hl && hl < sizeof(host))
        snprintf(host, sizeof(host), "%.*s", (int)hl, p);
    p += hl;
    if (*p == ':') {
        port = atoi(p + 1);
        p += 1 + strspn(p + 1, "0123456789");
    }
    if (*p == '/')
        db = atoi(p + 1);
    struct timeval tv = {REDIS_TIMEOUT_S, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(errbuf, errsz, "could not connect to redis at %s:%d: %s", host, port,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (pass[0])
        r = user[0] ? redisCommand(c, "AUTH %s %s", user, pass) : redisCommand(c, "AUTH %s", pass);
    if (!pass[0] || (r && r->type != REDIS_REPLY_ERROR)) {
        freeReplyObject(r);
        r = db ? redisCommand(c, "SELECT %d", db) : NULL;
        if (!db || (r && r->type != REDIS_REPLY_ERROR)) {
            freeReplyObject(r);
            OPENSSL_cleanse(pass, sizeof(pass));
            return c;
        }
    }
    snprintf(errbuf, errsz, "redis at %s:%d refused %s: %s", host, port,
             pass[0] && !db ? "the password" : "the login or the database",
             r && r->str ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
    OPENSSL_cleanse(pass, sizeof(pass));
    return NULL;
}

/* Runs one command on the shared connection (again on a new connection
 * when the old one broke); the reply, or NULL with errbuf set. */
static redisReply *redis_cmd(struct sl_webhook *wh, char *errbuf, size_t errsz, const char *fmt,
                             ...)
{
    redisReply *r = NULL;
    pthread_mutex_lock(&wh->mu);
    for (int attempt = 0; attempt < 2 && !r; attempt++) {
        if (!wh->rc && !(wh->rc = redis_connect(wh->redis_url, errbuf, errsz)))
            break;
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(wh->rc, fmt, ap);
        va_end(ap);
        if (!r) {
            snprintf(errbuf, errsz, "redis failed: %s", wh->rc->errstr);
            redisFree(wh->rc);
            wh->rc = NULL;
        }
    }
    pthread_mutex_unlock(&wh->mu);
    if (r && r->type == REDIS_REPLY_ERROR) {
        snprintf(errbuf, errsz, "redis refused: %s", r->str);
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

/* ---- the secret --------------------------------------------------------- */

/* The job's secret (caller cleanses and frees), or NULL: the stored
 * document's "webhook": {"secret": "${env:NAME}" | "whsec_..."} when the
 * job loader takes it, else the environment variable
 * SLUICE_WEBHOOK_SECRET_<JOB> (the job id upper-cased, every character
 * other than A-Z 0-9 as "_"). *from names where it was looked for. */
static char *job_secret(const char *job_id, const char *doc, char *from, size_t fromsz)
{
    json_t *d = doc ? json_loads(doc, 0, NULL) : NULL;
    const char *s = json_string_value(json_object_get(json_object_get(d, "webhook"), "secret"));
    char *out = NULL;
    if (s) {
        size_t n = strlen(s);
        if (n > 7 && !strncmp(s, "${env:", 6) && s[n - 1] == '}') {
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(n - 7), s + 6);
            snprintf(from, fromsz, "the environment variable %s (webhook.secret)", name);
            const char *v = getenv(name);
            out = v && v[0] ? strdup(v) : NULL;
        } else {
            snprintf(from, fromsz, "webhook.secret");
            out = strdup(s);
        }
    } else {
        char name[300] = "SLUICE_WEBHOOK_SECRET_";
        size_t o = strlen(name);
        for (const char *p = job_id; *p && o + 1 < sizeof(name); p++)
            name[o++] = (*p >= 'a' && *p <= 'z')   ? (char)(*p - 32)
                        : (*p >= 'A' && *p <= 'Z') ? *p
                        : (*p >= '0' && *p <= '9') ? *p
                                                   : '_';
        name[o] = '\0';
        snprintf(from, fromsz, "the environment variable %s", name);
        const char *v = getenv(name);
        out = v && v[0] ? strdup(v) : NULL;
    }
    json_decref(d);
    return out;
}

/* ---- the control plane -------------------------------------------------- */

/* A control-plane connection, one of DB_MAX (waits for its turn); NULL with
 * errbuf set. */
static PGconn *db_get(struct sl_webhook *wh, char *errbuf, size_t errsz)
{
    pthread_mutex_lock(&wh->db_mu);
    while (wh->db_busy >= DB_MAX)
        pthread_cond_wait(&wh->db_cv, &wh->db_mu);
    wh->db_busy++;
    pthread_mutex_unlock(&wh->db_mu);
    PGconn *c = wh->deps.db_get(wh->deps.gw, errbuf, errsz);
    if (!c) {
        pthread_mutex_lock(&wh->db_mu);
        wh->db_busy--;
        pthread_cond_signal(&wh->db_cv);
        pthread_mutex_unlock(&wh->db_mu);
    }
    return c;
}

/* Gives c back (NULL: nothing). */
static void db_put(struct sl_webhook *wh, PGconn *c)
{
    if (!c)
        return;
    wh->deps.db_put(wh->deps.gw, c);
    pthread_mutex_lock(&wh->db_mu);
    wh->db_busy--;
    pthread_cond_signal(&wh->db_cv);
    pthread_mutex_unlock(&wh->db_mu);
}

/* ---- the jobs (see the top) ------------------------------------------- */

/* Lets go of a delivery's hold of j. */
static void job_put(struct sl_webhook *wh, struct wh_job *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&wh->jobs_mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&wh->jobs_mu);
    if (last)
        job_free(j);
}

/* Parses version doc of job_id: the job and its secret. NULL when out of
 * memory. */
static struct wh_job *job_parse(const char *job_id, uint32_t version, const char *doc)
{
    struct wh_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->job_id = strdup(job_id))) {
        free(j);
        return NULL;
    }
    j->version = version;
    j->refs = 1;
    j->job = sl_job_load_json(doc, strlen(doc), NULL, j->err, sizeof(j->err));
    char *secret = job_secret(job_id, doc, j->from, sizeof(j->from));
    j->keylen = secret ? sl_webhook_key_decode(secret, j->key) : -1;
    if (secret && j->keylen < 0)
        j->keylen = -2;
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    return j;
}

/* The cached version of job_id (a hold of it, the caller's), or NULL;
 * jobs_mu held. */
static struct wh_job *job_find_locked(struct sl_webhook *wh, const char *job_id, uint32_t version)
{
    for (size_t i = 0; i < wh->njobs; i++) {
        struct wh_job *j = wh->jobs[i];
        if (j->version == version && !strcmp(j->job_id, job_id)) {
            j->refs++;
            j->used_ms = now_ms();
            return j;
        }
    }
    return NULL;
}

/* Version (0: the current one, which it then is said to be) of job_id into
 * *out (a hold, the caller's): from the cache, else read with *c (got
 * when NULL) and parsed. 0, SL_ERR_NOTFOUND, or another sl_err with errbuf
 * set. */
static int job_get(struct sl_webhook *wh, PGconn **c, const char *job_id, uint32_t version,
                   struct wh_job **out, char *errbuf, size_t errsz)
{
    *out = NULL;
    if (version) {
        pthread_mutex_lock(&wh->jobs_mu);
        *out = job_find_locked(wh, job_id, version);
        pthread_mutex_unlock(&wh->jobs_mu);
        if (*out)
            return 0;
    }
    if (!*c && !(*c = db_get(wh, errbuf, errsz)))
        return SL_ERR_RETRY;
    json_t *meta = NULL;
    char *doc = NULL;
    int rc = sl_api_job_get(*c, job_id, version, &meta, &doc, errbuf, errsz);
    if (rc)
        return rc;
    uint32_t v = (uint32_t)json_integer_value(json_object_get(meta, "version"));
    json_decref(meta);
    pthread_mutex_lock(&wh->jobs_mu);
    struct wh_job *j = job_find_locked(wh, job_id, v);
    pthread_mutex_unlock(&wh->jobs_mu);
    if (!j && !(j = job_parse(job_id, v, doc))) {
        free(doc);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    free(doc);
    pthread_mutex_lock(&wh->jobs_mu);
    if (j->refs == 1) { /* parsed here: into the cache (unless another was quicker) */
        struct wh_job *had = job_find_locked(wh, job_id, v);
        if (had) {
            pthread_mutex_unlock(&wh->jobs_mu);
            job_free(j);
            pthread_mutex_lock(&wh->jobs_mu);
            j = had;
        } else {
            if (wh->njobs == JOB_CACHE_MAX) { /* the least recently used goes */
                size_t lru = 0;
                for (size_t i = 1; i < wh->njobs; i++)
                    if (wh->jobs[i]->used_ms < wh->jobs[lru]->used_ms)
                        lru = i;
                struct wh_job *old = wh->jobs[lru];
                wh->jobs[lru] = wh->jobs[--wh->njobs];
                if (--old->refs == 0)
                    job_free(old); /* no delivery holds it; jobs_mu guards nothing of it */
            }
            j->refs++; /* the cache's */
            j->used_ms = now_ms();
            wh->jobs[wh->njobs++] = j;
        }
    }
    if (!version)
        j->current_ms = now_ms();
    pthread_mutex_unlock(&wh->jobs_mu);
    *out = j;
    return 0;
}

/* The current version of job_id (a hold, the caller's): as PostgreSQL said
 * it within CURRENT_TTL_MS, else as it says now. As job_get. */
static int job_current(struct sl_webhook *wh, PGconn **c, const char *job_id, struct wh_job **out,
                       char *errbuf, size_t errsz)
{
    int64_t now = now_ms();
    struct wh_job *best = NULL;
    pthread_mutex_lock(&wh->jobs_mu);
    for (size_t i = 0; i < wh->njobs; i++) {
        struct wh_job *j = wh->jobs[i];
        if (j->current_ms && now - j->current_ms < CURRENT_TTL_MS && !strcmp(j->job_id, job_id) &&
            (!best || j->current_ms > best->current_ms))
            best = j;
    }
    if (best) {
        best->refs++;
        best->used_ms = now;
    }
    pthread_mutex_unlock(&wh->jobs_mu);
    if ((*out = best))
        return 0;
    return job_get(wh, c, job_id, 0, out, errbuf, errsz);
}

/* ---- the producer ------------------------------------------------------- */

/* The producer, held for one delivery; NULL with errbuf set. */
static struct wh_bus *bus_get(struct sl_webhook *wh, char *errbuf, size_t errsz)
{
    pthread_mutex_lock(&wh->bus_mu);
    if (!wh->bus && (wh->bus = calloc(1, sizeof(*wh->bus))) &&
        !(wh->bus->bus = sl_bus_kafka_new(&wh->deps.kafka, errbuf, errsz))) {
        free(wh->bus);
        wh->bus = NULL;
    } else if (!wh->bus) {
        snprintf(errbuf, errsz, "out of memory");
    }
    struct wh_bus *hb = wh->bus;
    if (hb)
        hb->users++;
    pthread_mutex_unlock(&wh->bus_mu);
    return hb;
}

/* Lets go of hb; spoiled: it failed for good, the next delivery makes a
 * new one (this one is destroyed once its last user let go). */
static void bus_put(struct sl_webhook *wh, struct wh_bus *hb, bool spoiled)
{
    pthread_mutex_lock(&wh->bus_mu);
    if (spoiled && wh->bus == hb)
        wh->bus = NULL;
    bool last = --hb->users == 0 && wh->bus != hb;
    pthread_mutex_unlock(&wh->bus_mu);
    if (last) {
        sl_bus_destroy(hb->bus);
        free(hb);
    }
}

/* Sends msgs[i] to topics[i] and waits for their acknowledgement: the
 * bus's send_acked, else (a bus without) send() each and flush(). Takes
 * the messages. */
static int send_acked(struct sl_bus *bus, const char *const *topics, struct sl_msg **msgs, size_t n,
                      int timeout_ms)
{
    if (bus->ops->send_acked)
        return bus->ops->send_acked(bus, topics, msgs, n, timeout_ms);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (rc == 0)
            rc = sl_bus_send(bus, topics[i], msgs[i]);
        else
            sl_msg_unref(msgs[i]);
    return rc ? rc : bus->ops->flush(bus, timeout_ms);
}

/* ---- records ------------------------------------------------------------ */

/* The body's shape: JSON (an object or an array of objects) or NDJSON
 * (by Content-Type, else when the body is not one JSON value). */
static bool is_ndjson(const char *ctype, const char *body, size_t len)
{
    if (ctype && (strcasestr(ctype, "ndjson") || strcasestr(ctype, "jsonlines") ||
                  strcasestr(ctype, "json-seq")))
        return true;
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]))
        i++;
    if (i == len || body[i] != '{')
        return false;
    json_t *v = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, NULL);
    if (!v)
        return false; /* the JSON reader says what is wrong */
    json_decref(v);
    json_error_t je;
    v = json_loadb(body, len, 0, &je);
    json_decref(v);
    return v == NULL; /* one object, then more: one a line */
}

/* The messages of one delivery. */
struct build {
    struct sl_record_build rb;
    uint64_t rows;
    struct sl_msg **msgs;
    size_t nmsgs, cap;
};

static int on_row(void *ud, const struct sl_row *row)
{
    struct build *b = ud;
    struct sl_msg *m;
    int rc = sl_record_build_row(&b->rb, row, &m);
    if (rc)
        return rc;
    if (b->nmsgs == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct sl_msg **v = realloc(b->msgs, cap * sizeof(*v));
        if (!v) {
            sl_msg_unref(m);
            return SL_ERR_NOMEM;
        }
        b->msgs = v;
        b->cap = cap;
    }
    b->msgs[b->nmsgs++] = m;
    b->rows++;
    return 0;
}

static void build_cleanup(struct build *b)
{
    for (size_t i = 0; i < b->nmsgs; i++)
        sl_msg_unref(b->msgs[i]);
    free(b->msgs);
    sl_record_build_cleanup(&b->rb);
    memset(b, 0, sizeof(*b));
}

/* Reads the body's records into b (b->job NULL: only counts them). 0, or
 * an sl_err with errbuf set. */
static int read_records(const char *body, size_t len, bool ndjson, struct build *b,
                        struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    int fd = memfd_create("sluice-webhook", MFD_CLOEXEC);
    if (fd < 0)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot hold the body: %s", strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, body + off, len - off);
        if (n <= 0) {
            close(fd);
            return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot hold the body: %s", strerror(errno));
        }
        off += (size_t)n;
    }
    lseek(fd, 0, SEEK_SET);
    struct sl_json_opts opts = {.ndjson = ndjson};
    int rc = sl_json_read_fd(fd, &opts, on_row, b, stats, errbuf, errsz);
    close(fd);
    return rc;
}

/* Builds the records of the body for version j of the job into b (no run
 * id yet). 0, or an sl_err with errbuf set (the reader's: the body is not
 * records). */
static int build_records(const struct sl_webhook_req *req, bool ndjson, const struct wh_job *j,
                         struct build *b, struct sl_reader_stats *stats, char *errbuf, size_t errsz)
{
    build_cleanup(b);
    memset(stats, 0, sizeof(*stats));
    b->rb = (struct sl_record_build){.job_id = req->job_id,
                                     .job_version = j->version,
                                     .job = j->job,
                                     .keyed = true,
                                     .hash_key = getenv("SLUICE_HASH_KEY"),
                                     .names_vary = true};
    if (sl_record_build_init(&b->rb))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    return read_records(req->body ? req->body : "", req->len, ndjson, b, stats, errbuf, errsz);
}

static struct sl_msg *run_event(const char *run_id, const char *job_id, uint32_t version,
                                enum sl_run_event_kind kind)
{
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, run_id, job_id, version);
    if (ev) {
        ev->u.ev.kind = kind;
        ev->u.ev.stage = "gateway";
        ev->u.ev.at = sl_now_us();
    }
    return ev;
}

/* Sends FETCHED, the records and SEALED of run_id, and waits for Kafka's
 * acknowledgement of them. 0, or an sl_err with errbuf set. Takes the
 * records. */
static int send_run(struct sl_webhook *wh, struct build *b, const char *run_id, const char *sha256,
                    size_t bytes, const struct sl_reader_stats *stats, const char *source,
                    char *errbuf, size_t errsz)
{
    const char *job_id = b->rb.job_id;
    uint32_t version = b->rb.job_version;
    size_t n = b->nmsgs + 2;
    struct sl_msg **msgs = calloc(n, sizeof(*msgs));
    const char **topics = calloc(n, sizeof(*topics));
    struct sl_msg *sealed = NULL;
    int rc = 0;
    if (!msgs || !topics || !(msgs[0] = run_event(run_id, job_id, version, SL_EV_FETCHED)) ||
        !(sealed = msgs[n - 1] = run_event(run_id, job_id, version, SL_EV_SEALED))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    struct sl_msg *fetched = msgs[0];
    memcpy(fetched->u.ev.sha256, sha256, 65);
    fetched->u.ev.bytes = bytes;
    fetched->u.ev.source_name = sl_arena_strdup(&fetched->arena, source);
    sealed->u.ev.record_count = b->rows;
    sealed->u.ev.counts.read = b->rows;
    sealed->u.ev.counts.bytes = stats->bytes;
    sealed->u.ev.encoding = stats->encoding;
    if (b->rb.nunmapped) {
        if (!(sealed->u.ev.unmapped =
                  sl_arena_alloc(&sealed->arena, b->rb.nunmapped * sizeof(char *)))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < b->rb.nunmapped; i++)
            sealed->u.ev.unmapped[i] = sl_arena_strdup(&sealed->arena, b->rb.unmapped[i]);
        sealed->u.ev.nunmapped = (uint32_t)b->rb.nunmapped;
    }
    topics[0] = topics[n - 1] = SL_TOPIC_RUNS;
    for (size_t i = 0; i < b->nmsgs; i++) { /* built before the run had an id */
        struct sl_msg *m = b->msgs[i];
        if (!(m->run_id = sl_arena_strdup(&m->arena, run_id))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto out;
        }
        topics[i + 1] = SL_TOPIC_RAW;
    }
    struct wh_bus *hb = bus_get(wh, errbuf, errsz);
    if (!hb) {
        rc = SL_ERR_RETRY;
        goto out;
    }
    memcpy(msgs + 1, b->msgs, b->nmsgs * sizeof(*msgs));
    b->nmsgs = 0; /* the bus's now */
    rc = send_acked(hb->bus, topics, msgs, n, KAFKA_WAIT_MS);
    memset(msgs, 0, n * sizeof(*msgs));
    if (rc)
        sl_seterr(errbuf, errsz, rc, "kafka did not acknowledge the records: %s", sl_err_str(rc));
    bus_put(wh, hb, rc == SL_ERR_FATAL);
out:
    if (msgs)
        for (size_t i = 0; i < n; i++)
            sl_msg_unref(msgs[i]);
    free(msgs);
    free(topics);
    return rc;
}

/* Claims webhook-id's key of the replay window: true when this delivery is
 * the first (the key was set to "pending"); else *first is the value it
 * had (caller frees; NULL when it expired meanwhile). Redis 7 does it in
 * one command (SET NX GET); an older one in two. -1 with errbuf set when
 * Redis failed. */
static int claim(struct sl_webhook *wh, const char *rkey, char **first, char *errbuf, size_t errsz)
{
    *first = NULL;
    redisReply *r = NULL;
    if (!atomic_load(&wh->old_redis)) {
        r = redis_cmd(wh, errbuf, errsz, "SET %s %s NX GET EX %d", rkey, "pending", REPLAY_TTL_S);
        if (!r && !strncmp(errbuf, "redis refused", 13)) {
            sl_info(COMP, "%s: taking the replay window in two commands", errbuf);
            atomic_store(&wh->old_redis, true);
        } else if (!r) {
            return -1;
        } else {
            bool fresh = r->type == REDIS_REPLY_NIL;
            if (!fresh && r->type == REDIS_REPLY_STRING && !(*first = strdup(r->str))) {
                freeReplyObject(r);
                snprintf(errbuf, errsz, "out of memory");
                return -1;
            }
            freeReplyObject(r);
            return fresh;
        }
    }
    if (!(r = redis_cmd(wh, errbuf, errsz, "SET %s %s NX EX %d", rkey, "pending", REPLAY_TTL_S)))
        return -1;
    bool fresh = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (fresh)
        return 1;
    r = redis_cmd(wh, errbuf, errsz, "GET %s", rkey);
    if (r && r->type == REDIS_REPLY_STRING)
        *first = strdup(r->str);
    freeReplyObject(r);
    return 0;
}

/* ---- the delivery ------------------------------------------------------- */

void sl_webhook_handle(struct sl_webhook *wh, const struct sl_webhook_req *req,
                       struct sl_webhook_answer *ans)
{
    memset(ans, 0, sizeof(*ans));
    static const char *const hdr[] = {"webhook-id", "webhook-timestamp", "webhook-signature"};
    const char *hv[] = {req->id, req->timestamp, req->signature};
    for (int i = 0; i < 3; i++)
        if (!hv[i] || !hv[i][0]) {
            fail(ans, 400, "invalid_request", "the header %s is missing (Standard Webhooks)",
                 hdr[i]);
            return;
        }
    if (strlen(req->id) > 256) {
        fail(ans, 400, "invalid_request", "webhook-id is longer than 256 characters");
        return;
    }

    char err[1024] = "", run_id[37] = "", rkey[600];
    PGconn *c = NULL;
    struct wh_job *j = NULL;
    struct build b = {0};
    bool claimed = false;
    redisReply *r = NULL;

    int rc = job_current(wh, &c, req->job_id, &j, err, sizeof(err));
    if (rc == SL_ERR_NOTFOUND) {
        fail(ans, 404, "not_found", "%s", err);
        goto out;
    } else if (rc) {
        fail(ans, 503, "unavailable", "the control plane failed: %s", err);
        goto out;
    }
    if (j->keylen == -1) {
        sl_warn(COMP, "request %s: job %s has no webhook secret (%s is not set)", req->rid,
                req->job_id, j->from);
        fail(ans, 404, "not_found", "job %s takes no webhooks", req->job_id);
        goto out;
    }
    if (j->keylen < 0) {
        sl_warn(COMP, "request %s: the webhook secret of job %s (%s) is not whsec_<base64>",
                req->rid, req->job_id, j->from);
        fail(ans, 500, "internal", "the webhook secret of job %s is not valid", req->job_id);
        goto out;
    }
    enum sl_webhook_verdict v =
        sl_webhook_verify(j->key, (size_t)j->keylen, req->id, req->timestamp, req->signature,
                          req->body ? req->body : "", req->len, (int64_t)time(NULL));
    if (v != SL_WEBHOOK_OK) {
        fail(ans, 401, "unauthorized", "%s", sl_webhook_verdict_str(v));
        goto out;
    }
    if (!j->job) {
        fail(ans, 503, "unavailable", "cannot load job %s version %u: %s", req->job_id, j->version,
             j->err);
        goto out;
    }

    /* the records, checked and built before anything is recorded */
    bool ndjson = is_ndjson(req->content_type, req->body ? req->body : "", req->len);
    struct sl_reader_stats stats = {0};
    rc = build_records(req, ndjson, j, &b, &stats, err, sizeof(err));
    if (rc < 0 && rc != SL_ERR_NOMEM && rc != SL_ERR_IO) {
        fail(ans, 400, "invalid_json", "the body is not %s: %s",
             ndjson ? "NDJSON objects" : "a JSON object or an array of objects", err);
        goto out;
    } else if (rc) {
        fail(ans, 500, "internal", "%s", err);
        goto out;
    }

    /* the replay window: the first delivery of an id claims it */
    snprintf(rkey, sizeof(rkey), "sluice:webhook:%s:%s", req->job_id, req->id);
    char *first = NULL;
    int fresh = claim(wh, rkey, &first, err, sizeof(err));
    if (fresh < 0) {
        fail(ans, 503, "unavailable", "cannot check webhook-id for a replay: %s", err);
        goto out;
    }
    if (!fresh) {
        if (first && !strcmp(first, "pending")) {
            /* the first delivery is still at work (or its gateway died):
             * its outcome decides, so the sender is asked to come back */
            fail(ans, 503, "unavailable", "a delivery of webhook-id %s is in progress; retry later",
                 req->id);
        } else {
            sl_info(COMP, "request %s: webhook-id %s of job %s was delivered before: not processed",
                    req->rid, req->id, req->job_id);
            ans->status = 200;
            ans->body =
                json_pack("{s:b,s:s,s:s?}", "duplicate", 1, "webhook_id", req->id, "run_id", first);
        }
        free(first);
        goto out;
    }
    claimed = true;

    /* the run, recorded like run now's, of the version current now */
    uint32_t version = 0;
    if (!c && !(c = db_get(wh, err, sizeof(err)))) {
        fail(ans, 503, "unavailable", "the control plane failed: %s", err);
        goto out;
    }
    if ((rc = sl_api_run_queue(c, req->job_id, "webhook", run_id, &version, err, sizeof(err)))) {
        fail(ans, rc == SL_ERR_NOTFOUND ? 404 : 503,
             rc == SL_ERR_NOTFOUND ? "not_found" : "unavailable", "%s", err);
        run_id[0] = '\0';
        goto out;
    }
    if (version != j->version) { /* the job changed since it was read: build for this one */
        job_put(wh, j);
        j = NULL;
        if ((rc = job_get(wh, &c, req->job_id, version, &j, err, sizeof(err))) || !j->job) {
            fail(ans, 503, "unavailable", "cannot load job %s version %u: %s", req->job_id, version,
                 rc ? err : j->err);
            goto out;
        }
        if ((rc = build_records(req, ndjson, j, &b, &stats, err, sizeof(err)))) {
            fail(ans, 500, "internal", "%s", err);
            goto out;
        }
    }
    db_put(wh, c); /* not held while Kafka is awaited */
    c = NULL;
    unsigned char md[SHA256_DIGEST_LENGTH];
    char sha[65], source[300];
    SHA256((const unsigned char *)(req->body ? req->body : ""), req->len, md);
    sl_hex(md, sizeof(md), sha);
    snprintf(source, sizeof(source), "webhook %s", req->id);
    uint64_t rows = b.rows;
    if ((rc = send_run(wh, &b, run_id, sha, req->len, &stats, source, err, sizeof(err)))) {
        fail(ans, 503, "unavailable", "cannot take the records of run %s: %s", run_id, err);
        goto out;
    }
    r = redis_cmd(wh, err, sizeof(err), "SET %s %s XX KEEPTTL", rkey, run_id);
    freeReplyObject(r);
    sl_info(COMP, "request %s: webhook %s of job %s version %u: run %s, %llu records", req->rid,
            req->id, req->job_id, version, run_id, (unsigned long long)rows);
    ans->status = 202;
    ans->body = json_pack("{s:s,s:I,s:s,s:i}", "run_id", run_id, "records", (json_int_t)rows,
                          "job_id", req->job_id, "job_version", (int)version);
    run_id[0] = '\0'; /* not failed below */
out:
    if (ans->status >= 500 && claimed) { /* the sender's retry must be processed */
        r = redis_cmd(wh, err, sizeof(err), "DEL %s", rkey);
        freeReplyObject(r);
    }
    if (ans->status >= 400 && run_id[0] && (c || (c = db_get(wh, err, sizeof(err))))) {
        char e2[512];
        if (sl_api_run_fail(c, run_id, ans->message, e2, sizeof(e2)))
            sl_warn(COMP, "run %s: %s", run_id, e2);
    } else if (ans->status >= 400 && run_id[0]) {
        sl_warn(COMP, "run %s: cannot mark it failed: %s", run_id, err);
    }
    build_cleanup(&b);
    job_put(wh, j);
    db_put(wh, c);
}
