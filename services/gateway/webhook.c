/*
 * The webhook endpoint (webhook.h, docs/api.md "Webhooks").
 *
 * A delivery is checked in the order that costs an unsigned sender least:
 * headers (400), the job and its secret (404), the signature and its
 * timestamp (401, webhook_sig.h), the body's records (400: read once by the
 * JSON reader, in memory, building the messages before a run is known),
 * the replay window (Redis SET NX GET: a webhook-id seen before is
 * answered 200 with the first delivery's run, 503 while that one is still
 * in flight), then its rows join the job's streaming run.
 *
 * Streaming runs (windows): the deliveries of a job to this gateway within
 * window_ms of the first one (or until window_rows rows) are rows of one
 * run (trigger "webhook"): the first delivery of an idle job records the
 * run (the INSERT of sl_api_run_queue), and each delivery reserves its rows
 * (first..first + n - 1, in the order they reserve), sends its records (the
 * first one FETCHED before them) and is answered 202 once Kafka
 * acknowledged them. The closing thread seals a
 * window that is due once no delivery holds it: SEALED with the count of
 * every reserved row, the bytes and the union of the unmapped fields;
 * before that it records the job's next run, so that the job's next
 * deliveries do not wait for an INSERT (an unused one is removed when it is
 * due). A delivery repeating a key of the run goes to the next run (see
 * window_keys). When Kafka cannot take a delivery's messages they are
 * kept by the window, its replay key stays "pending" (the sender's retry:
 * 503, then 200 with the run), the answer is 503 with Retry-After, and the
 * closing sends them again until Kafka takes them, then seals: a row whose
 * first send reached Kafka after all comes twice, which the stages count
 * once (the same row of the same run, as a redelivery). Replay keys are
 * set to their run in one pipelined round trip every SETTLE_MS (settle).
 * On SIGTERM (sl_webhook_destroy) the open windows are sealed. A gateway
 * that dies leaves its open runs running (docs/api.md).
 *
 * The engine (engine_main): sl_webhook_begin() checks a delivery on the
 * caller's thread (headers, job, signature, records); sl_webhook_go()
 * queues it. One thread takes the queue a round at a time: each
 * delivery's window (delivery_prepare, in order), the claims of the round
 * in one script call (claims_run, EVALSHA of CLAIMS_LUA), the records of the
 * claimed ones in one send_async (batch_send: a Kafka message a partition
 * for the round), and the answers from the bus's report (batch_reported,
 * on the bus's thread: delivery_sent) or, after KAFKA_WAIT_MS without one,
 * as refused (batches_check). A delivery that must go to the job's next
 * run comes again later in the same round. Deliveries queued while a round
 * is at work make the next one, so a busier gateway takes bigger rounds.
 *
 * Round trips: a job version's document never changes, so each (job,
 * version) is parsed once, with its secret, and cached (JOB_CACHE_MAX, the
 * least recently used dropped). Which version is a job's current one is
 * asked of PostgreSQL at most once in CURRENT_TTL_MS a job: a delivery in
 * the second after a job changed may still be checked against the
 * previous version's secret, and its records built for it; the run itself
 * is always of the version sl_api_run_queue() recorded for its window (the
 * records are built again when that differs; a newer version closes the
 * window of an older one). A PostgreSQL connection is held only while a run
 * is recorded (or a job read), never while Kafka is awaited. Redis
 * connections are pooled (REDIS_IDLE_MAX kept idle).
 *
 * Records are built as the parser builds them (record_build.h): source
 * fields flattened by the JSON reader, rows first..first + n - 1, a reader's problem as a
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
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "sluice/api_store.h"
#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/msg.h"
#include "sluice/reader.h"
#include "sluice/record_build.h"
#include "sluice/spares.h"
#include "sluice/util.h"
#include "sluice/webhook_sig.h"
#include "webhook.h"

#define COMP            "gateway"
#define REPLAY_TTL_S    600
#define KAFKA_WAIT_MS   5000
#define DESTROY_WAIT_MS 10000
#define RETRY_AFTER_S   5
#define REDIS_TIMEOUT_S 2
/* Redis connections kept idle between deliveries: each delivery takes one
 * for its round trip (a busier moment opens more, closed when given back
 * beyond this), instead of queueing behind one connection. */
#define REDIS_IDLE_MAX 32
#define CLAIMS_MAX     256 /* deliveries one claim script takes */
#define JOB_CACHE_MAX  64
#define CURRENT_TTL_MS 1000
/* ours (SLUICE_KAFKA_CONFIG may override them): a delivery's answer waits
 * for the acknowledgement, so batches linger little and are small: not
 * worth lz4's frame set-up (a 64 KiB state cleared per batch) */
#define LINGER      "linger.ms=2,compression.codec=none"
#define WINDOW_MS   1000
#define WINDOW_ROWS 100000
#define SPARES_MAX  256 /* finished deliveries kept */
#define SETTLE_MS   10  /* the settles_flush() cadence */
/* A window in Redis (window_recover): its hash, its owner's lock and the
 * set of open windows by the time they opened (wall clock ms). */
#define WIN_KEY      "sluice:webhook:win:"
#define LOCK_KEY     "sluice:webhook:lock:"
#define WINDOWS_KEY  "sluice:webhook:windows"
#define LOCK_TTL_MS  15000 /* an owner silent this long is taken to be gone */
#define HEARTBEAT_MS 1000  /* the owner renews its locks this often */
#define RECOVER_MS   2000  /* how often windows of gone owners are looked for */
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

/* A replay key to set to its delivery's run (settle). */
struct wh_settle {
    struct wh_settle *next;
    char run_id[37];
    uint64_t first; /* the delivery's d:<first> in the window's hash; 0: none */
    char rkey[];
};

/* A delivery's messages Kafka did not acknowledge: sent again by the
 * window's closing until it does (the replay key stays "pending" so far). */
struct wh_pending {
    struct wh_pending *next;
    struct sl_msg **msgs;
    const char **topics;
    size_t n;
    char *rkey;     /* the delivery's replay key, settled to the run id once taken */
    uint64_t first; /* its first row (its d:<first> in the window's hash); 0: none */
};

enum wh_window_state { WIN_OPENING, WIN_OPEN, WIN_CLOSING };

/* A streaming run (see the top): the deliveries of one job to this gateway
 * within window_ms (or window_rows rows) are rows of one run. */
struct wh_window {
    struct wh_window *next;
    char *job_id;
    uint32_t version;
    char run_id[37];
    enum wh_window_state state; /* under win_mu, as every field below */
    bool fetched;               /* FETCHED went out with a delivery (or is pending) */
    uint64_t rows;              /* rows reserved by deliveries: 1..rows */
    uint64_t bytes;
    unsigned inflight; /* deliveries between reserving rows and Kafka's answer */
    unsigned deliveries;
    int64_t opened_ms;
    int encoding;
    struct wh_pending *pending;
    char **unmapped;
    size_t nunmapped;
    struct sl_keyset *keys; /* the records' keys (window_keys) */
    bool lost;              /* its lock expired: another gateway seals it */
    bool tried;             /* the closing's pass tried to seal it */
};

struct sl_webhook {
    struct sl_webhook_deps deps;
    pthread_mutex_t win_mu; /* windows and every window's fields */
    pthread_cond_t win_cv;  /* a window opened, or a delivery let go of one */
    pthread_cond_t stop_cv; /* the closing thread's sleep */
    struct wh_window *windows;
    pthread_t closer;
    bool closer_started;
    atomic_bool stop;
    char me[33];                 /* this gateway, in the windows' locks */
    int64_t beat_ms, recover_ms; /* the closing thread's last heartbeat, recovery */
    pthread_mutex_t settle_mu;   /* settles */
    struct wh_settle *settles;
    char *redis_url;
    pthread_mutex_t mu; /* the idle Redis connections (REDIS_IDLE_MAX kept) */
    redisContext *idle[REDIS_IDLE_MAX];
    int nidle;
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
    /* the engine (engine_main): the queued deliveries, and the batches it
     * sent that are not answered yet (its own) */
    pthread_t engine;
    bool engine_started;
    pthread_mutex_t q_mu;
    pthread_cond_t q_cv;
    struct sl_webhook_delivery *q_head, **q_tail;
    bool q_idle, q_stop;
    struct wh_batch *batches;
    char claims_sha[41];           /* CLAIMS_LUA's, for EVALSHA */
    struct sl_spares spares;       /* finished deliveries (2 KiB: spares.h) */
    const char *hash_key;          /* SLUICE_HASH_KEY, read once (getenv a delivery was ~1 %) */
    uint64_t rounds, taken, sends; /* the engine's, for the log at the stop */
    struct sl_counter *m_taken, *m_sends; /* /metrics: the same two counts */
};

static size_t windows_close(struct sl_webhook *wh, bool all);
static void *closer_main(void *arg);
static void *engine_main(void *arg);
static const char CLAIMS_LUA[];
static void window_free(struct wh_window *w);
static void settles_flush(struct sl_webhook *wh);
static int lock_renew(struct sl_webhook *wh, const char *run_id);

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
    wh->hash_key = getenv("SLUICE_HASH_KEY");
    sl_spares_init(&wh->spares, SPARES_MAX);
    pthread_mutex_init(&wh->mu, NULL);
    pthread_mutex_init(&wh->jobs_mu, NULL);
    pthread_mutex_init(&wh->bus_mu, NULL);
    pthread_mutex_init(&wh->db_mu, NULL);
    pthread_cond_init(&wh->db_cv, NULL);
    pthread_mutex_init(&wh->win_mu, NULL);
    pthread_mutex_init(&wh->settle_mu, NULL);
    pthread_cond_init(&wh->win_cv, NULL);
    pthread_cond_init(&wh->stop_cv, NULL);
    uint8_t id[16];
    sl_random_key(id, wh);
    sl_hex(id, sizeof(id), wh->me);
    if (wh->deps.window_ms <= 0)
        wh->deps.window_ms = WINDOW_MS;
    if (!wh->deps.window_rows)
        wh->deps.window_rows = WINDOW_ROWS;
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
    pthread_mutex_init(&wh->q_mu, NULL);
    pthread_cond_init(&wh->q_cv, NULL);
    wh->q_tail = &wh->q_head;
    unsigned char sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)CLAIMS_LUA, strlen(CLAIMS_LUA), sha);
    sl_hex(sha, sizeof(sha), wh->claims_sha);
    wh->m_taken = sl_metrics_counter("sluice_webhook_deliveries_total",
                                     "webhook deliveries the engine sent to kafka", "");
    wh->m_sends = sl_metrics_counter(
        "sluice_webhook_sends_total",
        "sends of the webhook engine to kafka (a round's deliveries go in one)", "");
    if (pthread_create(&wh->closer, NULL, closer_main, wh)) {
        sl_webhook_destroy(wh);
        return NULL;
    }
    wh->closer_started = true;
    if (pthread_create(&wh->engine, NULL, engine_main, wh)) {
        sl_webhook_destroy(wh);
        return NULL;
    }
    wh->engine_started = true;
    return wh;
}

void sl_webhook_destroy(struct sl_webhook *wh)
{
    if (!wh)
        return;
    if (wh->engine_started) { /* answers what it holds (up to KAFKA_WAIT_MS) */
        pthread_mutex_lock(&wh->q_mu);
        wh->q_stop = true;
        pthread_cond_signal(&wh->q_cv);
        pthread_mutex_unlock(&wh->q_mu);
        pthread_join(wh->engine, NULL);
    }
    if (wh->closer_started) {
        pthread_mutex_lock(&wh->win_mu);
        atomic_store(&wh->stop, true);
        pthread_cond_signal(&wh->stop_cv);
        pthread_mutex_unlock(&wh->win_mu);
        pthread_join(wh->closer, NULL);
    }
    /* the open windows are sealed now: their runs complete */
    int64_t until = now_ms() + DESTROY_WAIT_MS;
    while (wh->windows && windows_close(wh, true) && now_ms() < until)
        usleep(200000);
    while (wh->windows) {
        struct wh_window *w = wh->windows;
        wh->windows = w->next;
        sl_error(COMP,
                 "run %s of job %s: stopping without sealing it (kafka did not take %s): "
                 "another gateway seals it once its lock expires (%d s)",
                 w->run_id, w->job_id, w->pending ? "deliveries" : "SEALED", LOCK_TTL_MS / 1000);
        window_free(w);
    }
    settles_flush(wh);
    while (wh->nidle > 0)
        redisFree(wh->idle[--wh->nidle]);
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
    pthread_mutex_destroy(&wh->win_mu);
    pthread_mutex_destroy(&wh->settle_mu);
    pthread_cond_destroy(&wh->win_cv);
    pthread_cond_destroy(&wh->stop_cv);
    sl_spares_cleanup(&wh->spares, free);
    if (wh->q_tail) {
        pthread_mutex_destroy(&wh->q_mu);
        pthread_cond_destroy(&wh->q_cv);
    }
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

/* An idle connection, or a new one; NULL with errbuf set. */
static redisContext *redis_get(struct sl_webhook *wh, bool fresh, char *errbuf, size_t errsz)
{
    redisContext *c = NULL;
    pthread_mutex_lock(&wh->mu);
    if (!fresh && wh->nidle > 0)
        c = wh->idle[--wh->nidle];
    pthread_mutex_unlock(&wh->mu);
    return c ? c : redis_connect(wh->redis_url, errbuf, errsz);
}

/* Gives c back (closed when broken, or beyond REDIS_IDLE_MAX). */
static void redis_put(struct sl_webhook *wh, redisContext *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&wh->mu);
    if (!c->err && wh->nidle < REDIS_IDLE_MAX) {
        wh->idle[wh->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&wh->mu);
    if (c)
        redisFree(c);
}

/* Runs one command on an idle connection (a new one when none is idle, or
 * again on a new one when the old one broke); the reply, or NULL with
 * errbuf set. */
static redisReply *redis_cmd(struct sl_webhook *wh, char *errbuf, size_t errsz, const char *fmt,
                             ...)
{
    redisReply *r = NULL;
    for (int attempt = 0; attempt < 2 && !r; attempt++) {
        redisContext *c = redis_get(wh, attempt > 0, errbuf, errsz);
        if (!c)
            break;
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
        if (!r)
            snprintf(errbuf, errsz, "redis failed: %s", c->errstr);
        redis_put(wh, c);
    }
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

/* The cached version of job_id PostgreSQL said is current within
 * CURRENT_TTL_MS of now (the newest such word), or NULL; jobs_mu held. */
static struct wh_job *job_fresh_locked(struct sl_webhook *wh, const char *job_id, int64_t now)
{
    struct wh_job *best = NULL;
    for (size_t i = 0; i < wh->njobs; i++) {
        struct wh_job *j = wh->jobs[i];
        if (j->current_ms && now - j->current_ms < CURRENT_TTL_MS && !strcmp(j->job_id, job_id) &&
            (!best || j->current_ms > best->current_ms))
            best = j;
    }
    return best;
}

bool sl_webhook_job_known(struct sl_webhook *wh, const char *job_id)
{
    pthread_mutex_lock(&wh->jobs_mu);
    bool known = job_fresh_locked(wh, job_id, now_ms()) != NULL;
    pthread_mutex_unlock(&wh->jobs_mu);
    return known;
}

/* The current version of job_id (a hold, the caller's): as PostgreSQL said
 * it within CURRENT_TTL_MS, else as it says now. As job_get. */
static int job_current(struct sl_webhook *wh, PGconn **c, const char *job_id, struct wh_job **out,
                       char *errbuf, size_t errsz)
{
    int64_t now = now_ms();
    pthread_mutex_lock(&wh->jobs_mu);
    struct wh_job *best = job_fresh_locked(wh, job_id, now);
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

/* Where the object or array opening at body[i] ends (the index after its
 * closing bracket), by brackets and strings alone (len when it does not
 * end): the reader checks the rest and says what is wrong. */
static size_t value_end(const char *body, size_t i, size_t len)
{
    size_t depth = 0;
    bool in_str = false;
    for (; i < len; i++) {
        char c = body[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return i + 1;
        }
    }
    return len;
}

/* The body's shape: JSON (an object or an array of objects) or NDJSON (by
 * Content-Type, else when an object is followed by more than blanks). */
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
    for (size_t k = value_end(body, i, len); k < len; k++)
        if (!strchr(" \t\r\n", body[k]))
            return true;
    return false;
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

/* Builds the records of the body for version j of the job into b (no run
 * id yet). 0, or an sl_err with errbuf set (the reader's: the body is not
 * records). */
static int build_records(const struct sl_webhook *wh, const struct sl_webhook_req *req, bool ndjson,
                         const struct wh_job *j, struct build *b, struct sl_reader_stats *stats,
                         char *errbuf, size_t errsz)
{
    build_cleanup(b);
    memset(stats, 0, sizeof(*stats));
    b->rb = (struct sl_record_build){.job_id = req->job_id,
                                     .job_version = j->version,
                                     .job = j->job,
                                     .keyed = true,
                                     .hash_key = wh->hash_key,
                                     .names_vary = true};
    if (sl_record_build_init(&b->rb))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    struct sl_json_opts opts = {.ndjson = ndjson};
    return sl_json_read_mem(req->body, req->len, &opts, on_row, b, stats, errbuf, errsz);
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

/* The claims of an engine round's deliveries, in order, in one call
 * (claims_run): KEYS, three a delivery: its replay key, its window's hash
 * and lock; ARGV: the replay TTL, this gateway, then four a delivery: its
 * rows, its bytes, the delivery as window_recover() needs it, its unmapped
 * fields (joined by 0x1f). Each delivery answers two elements of one flat
 * array (a table a delivery cost Redis ~1 us more): for a webhook-id seen
 * before 0, its value ("pending", or the run id); for a window this
 * gateway no longer owns 2, 0; else the id is set "pending", the rows are
 * reserved (the hash's rows: the count so far), the bytes counted, the
 * delivery kept (d:<first row>) and the unmapped fields noted (u:<name>):
 * 1, first row. One call a round, and each window's hash written once at
 * its end (the script is atomic): a command called from Lua costs Redis
 * more than the command itself. */
static const char CLAIMS_LUA[] =
    "local out, wins, order, ttl, me = {}, {}, {}, ARGV[1], ARGV[2] "
    "for i = 0, #KEYS / 3 - 1 do "
    "local r, w, l, a = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3], 2 + 4 * i "
    "local v = redis.call('GET', r) "
    "if v then out[2 * i + 1] = 0 out[2 * i + 2] = v else "
    "local s = wins[w] "
    "if not s then "
    "s = {ok = redis.call('GET', l) == me, rows = 0, bytes = 0, f = {}, u = {}} "
    "if s.ok then s.rows = tonumber(redis.call('HGET', w, 'rows') or '0') end "
    "wins[w] = s order[#order + 1] = w end "
    "if not s.ok then out[2 * i + 1] = 2 out[2 * i + 2] = 0 else "
    "redis.call('SET', r, 'pending', 'EX', ttl) "
    "local n = tonumber(ARGV[a + 1]) "
    "local first = s.rows + 1 "
    "s.rows = s.rows + n "
    "s.bytes = s.bytes + tonumber(ARGV[a + 2]) "
    "if n > 0 then s.f[#s.f + 1] = 'd:' .. first s.f[#s.f + 1] = ARGV[a + 3] end "
    "local um = ARGV[a + 4] "
    "if um ~= '' then for u in string.gmatch(um, '[^\\31]+') do s.u[u] = 1 end end "
    "out[2 * i + 1] = 1 out[2 * i + 2] = first end end end "
    "for _, w in ipairs(order) do local s = wins[w] if s.ok then "
    "redis.call('HSET', w, 'rows', string.format('%d', s.rows)) "
    "redis.call('HINCRBY', w, 'bytes', string.format('%d', s.bytes)) "
    "for u in pairs(s.u) do s.f[#s.f + 1] = 'u:' .. u s.f[#s.f + 1] = 1 end "
    /* in slices: unpack() of more than Lua's stack (8000) fails */
    "for j = 1, #s.f, 1000 do "
    "redis.call('HSET', w, unpack(s.f, j, math.min(j + 999, #s.f))) end end end "
    "return out";

/* A new window's hash, its lock (this gateway's) and its place among the
 * open windows. */
static const char OPEN_LUA[] =
    "redis.call('HSET', KEYS[1], 'job', ARGV[1], 'version', ARGV[2], 'rows', 0, 'bytes', 0) "
    "redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4]) "
    "redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6]) "
    "return 1";

/* Renews the lock when it is still this gateway's: 1, else 0. */
static const char BEAT_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                               "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/* A sealed (or unused) window leaves Redis. */
static const char CLOSE_LUA[] = "redis.call('DEL', KEYS[1], KEYS[2]) "
                                "redis.call('ZREM', KEYS[3], ARGV[1]) return 1";

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The delivery as the window keeps it: "<rows> <ndjson 0|1> <length of
 * the replay key>\n<replay key><body>". Caller frees; NULL out of memory. */
static char *delivery_pack(uint64_t rows, bool ndjson, const char *rkey, const char *body,
                           size_t len, size_t *outlen)
{
    char head[64];
    int hl = snprintf(head, sizeof(head), "%llu %d %zu\n", (unsigned long long)rows, ndjson,
                      strlen(rkey));
    size_t kl = strlen(rkey);
    char *out = malloc((size_t)hl + kl + len + 1);
    if (!out)
        return NULL;
    memcpy(out, head, (size_t)hl);
    memcpy(out + hl, rkey, kl);
    if (len)
        memcpy(out + hl + kl, body, len);
    *outlen = (size_t)hl + kl + len;
    return out;
}

/* The keys of run_id's window in Redis: its hash and its lock. */
static void win_keys(const char *run_id, char wkey[80], char lkey[80])
{
    snprintf(wkey, 80, WIN_KEY "%.40s", run_id);
    snprintf(lkey, 80, LOCK_KEY "%.40s", run_id);
}

/* What CLAIMS_LUA answered for one delivery (its two elements, code and
 * value): 1 with *first set; 0 for a webhook-id seen before, *seen its
 * value (caller frees); 2 when the window is no longer this gateway's; -1
 * with errbuf set when the answer is not one of these. */
static int claim_parse(const redisReply *code, const redisReply *value, uint64_t *first,
                       char **seen, char *errbuf, size_t errsz)
{
    *seen = NULL;
    int rc = -1;
    if (code->type == REDIS_REPLY_INTEGER && value) {
        rc = (int)code->integer;
        if (rc == 1 && value->type != REDIS_REPLY_INTEGER)
            rc = -1;
        else if (rc == 1)
            *first = (uint64_t)value->integer;
        else if (rc == 0 && (value->type != REDIS_REPLY_STRING || !(*seen = strdup(value->str))))
            rc = -1;
    }
    if (rc < 0 || rc > 2) {
        snprintf(errbuf, errsz, "redis answered the claim unexpectedly");
        return -1;
    }
    return rc;
}

/* Runs a script on the keys of run_id's window (hash, lock, the set of open
 * windows) with one more argument; the reply's integer, or -1 with errbuf
 * set. */
static long long window_script(struct sl_webhook *wh, const char *script, const char *run_id,
                               const char *arg, char *errbuf, size_t errsz)
{
    char wkey[80], lkey[80];
    win_keys(run_id, wkey, lkey);
    redisReply *r =
        redis_cmd(wh, errbuf, errsz, "EVAL %s 3 %s %s %s %s", script, wkey, lkey, WINDOWS_KEY, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r && v < 0)
        snprintf(errbuf, errsz, "redis answered unexpectedly");
    freeReplyObject(r);
    return v;
}

/* ---- streaming runs (see the top) --------------------------------------- */

static void pending_free(struct wh_pending *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        sl_msg_unref(p->msgs[i]);
    free(p->msgs);
    free(p->topics);
    free(p->rkey);
    free(p);
}

static void window_free(struct wh_window *w)
{
    if (!w)
        return;
    while (w->pending) {
        struct wh_pending *p = w->pending;
        w->pending = p->next;
        pending_free(p);
    }
    for (size_t i = 0; i < w->nunmapped; i++)
        free(w->unmapped[i]);
    free(w->unmapped);
    sl_keyset_destroy(w->keys);
    free(w->job_id);
    free(w);
}

/* Records the run of a new window of job_id (the INSERT of sl_api_run_queue:
 * the version current now goes into w->version). 0, or an sl_err with errbuf
 * set. */
static int window_record(struct sl_webhook *wh, struct wh_window *w, char *errbuf, size_t errsz)
{
    PGconn *c = db_get(wh, errbuf, errsz);
    if (!c)
        return SL_ERR_RETRY;
    int rc = sl_api_run_queue(c, w->job_id, "webhook", w->run_id, &w->version, errbuf, errsz);
    if (rc == 0) {
        char wkey[80], lkey[80], ver[16], ttl[16], now[24];
        win_keys(w->run_id, wkey, lkey);
        snprintf(ver, sizeof(ver), "%u", w->version);
        snprintf(ttl, sizeof(ttl), "%d", LOCK_TTL_MS);
        snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
        redisReply *r =
            redis_cmd(wh, errbuf, errsz, "EVAL %s 3 %s %s %s %s %s %s %s %s %s", OPEN_LUA, wkey,
                      lkey, WINDOWS_KEY, w->job_id, ver, wh->me, ttl, now, w->run_id);
        if (!r) {
            char e2[512];
            if (sl_api_run_forget(c, w->run_id, e2, sizeof(e2)))
                sl_warn(COMP, "run %s: cannot remove it: %s", w->run_id, e2);
            rc = SL_ERR_RETRY;
        }
        freeReplyObject(r);
    }
    db_put(wh, c);
    return rc;
}

/* Removes w from the list; win_mu held. */
static void window_unlink_locked(struct sl_webhook *wh, struct wh_window *w)
{
    for (struct wh_window **pp = &wh->windows; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            return;
        }
}

/* Whether job_id has an open window (a delivery need not record a run). */
static bool window_open(struct sl_webhook *wh, const char *job_id)
{
    bool open = false;
    pthread_mutex_lock(&wh->win_mu);
    for (struct wh_window *w = wh->windows; w && !open; w = w->next)
        open = w->state == WIN_OPEN && !strcmp(w->job_id, job_id);
    pthread_mutex_unlock(&wh->win_mu);
    return open;
}

/* The open window of job_id, held for a delivery built for version (a
 * newer version closes the window of an older one): the window's run, and
 * its version, are then fixed, and it is sealed only after the delivery let
 * go (window_release). Opens the window (records its run) when the job has
 * none. NULL with errbuf set (*rc the sl_err) when the run cannot be
 * recorded. */
static struct wh_window *window_acquire(struct sl_webhook *wh, const char *job_id, uint32_t version,
                                        int *rc, char *errbuf, size_t errsz)
{
    struct wh_window *w = NULL;
    pthread_mutex_lock(&wh->win_mu);
    for (;;) {
        struct wh_window *opening = NULL;
        w = NULL;
        for (struct wh_window *x = wh->windows; x; x = x->next) {
            if (x->state == WIN_CLOSING || strcmp(x->job_id, job_id))
                continue;
            if (x->state == WIN_OPENING)
                opening = x;
            else if (!w || x->opened_ms > w->opened_ms)
                w = x; /* the newest (a successor opens beside its predecessor) */
        }
        if (w && w->version < version) { /* the job changed: its next rows go to a new run */
            w->state = WIN_CLOSING;
            continue;
        }
        if (w)
            break;
        if (opening) { /* another delivery records the run: wait for it */
            pthread_cond_wait(&wh->win_cv, &wh->win_mu);
            continue;
        }
        struct wh_window *nw = calloc(1, sizeof(*nw));
        if (!nw || !(nw->job_id = strdup(job_id))) {
            free(nw);
            pthread_mutex_unlock(&wh->win_mu);
            *rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            return NULL;
        }
        nw->state = WIN_OPENING;
        nw->next = wh->windows;
        wh->windows = nw;
        pthread_mutex_unlock(&wh->win_mu);
        *rc = window_record(wh, nw, errbuf, errsz);
        pthread_mutex_lock(&wh->win_mu);
        if (*rc) {
            window_unlink_locked(wh, nw);
            pthread_cond_broadcast(&wh->win_cv);
            pthread_mutex_unlock(&wh->win_mu);
            window_free(nw);
            return NULL;
        }
        nw->state = WIN_OPEN;
        nw->opened_ms = now_ms();
        pthread_cond_broadcast(&wh->win_cv);
        sl_debug(COMP, "job %s version %u: streaming run %s opened", job_id, nw->version,
                 nw->run_id);
    }
    w->inflight++;
    pthread_mutex_unlock(&wh->win_mu);
    return w;
}

/* Notes the keys of b, a delivery's records, in the held window w. A key
 * an earlier delivery of the window had is refused: 1, w closes (its run is
 * sealed), and the delivery goes to the job's next run, so that a later
 * change of a record is never "a key seen twice in one run" (JOBS.md
 * `duplicates`; within a delivery the job's rule holds). 0 when noted; -1
 * out of memory. */
static int window_keys(struct sl_webhook *wh, struct wh_window *w, const struct build *b)
{
    int rc = 0;
    pthread_mutex_lock(&wh->win_mu);
    if (!w->keys && !(w->keys = sl_keyset_new()))
        rc = -1;
    for (size_t i = 0; i < b->nmsgs && rc == 0; i++) {
        const char *k = b->msgs[i]->key;
        if (k && k[0] && (rc = sl_keyset_test(w->keys, k, strlen(k), false)) == 1 &&
            w->state != WIN_CLOSING) {
            sl_debug(COMP,
                     "run %s: a delivery repeats a key of the run: the job's next run takes it",
                     w->run_id);
            w->state = WIN_CLOSING;
        }
    }
    for (size_t i = 0; i < b->nmsgs && rc == 0; i++) {
        const char *k = b->msgs[i]->key;
        if (k && k[0] && sl_keyset_test(w->keys, k, strlen(k), true) < 0)
            rc = -1; /* the keys added so far only make a later delivery move on */
    }
    pthread_mutex_unlock(&wh->win_mu);
    return rc;
}

/* Counts the rows a delivery reserved (claim) in the held window w; *fetched
 * says it is the window's first delivery, which sends FETCHED. */
static void window_took(struct sl_webhook *wh, struct wh_window *w, uint64_t rows, bool *fetched)
{
    pthread_mutex_lock(&wh->win_mu);
    w->rows += rows;
    w->deliveries++;
    *fetched = !w->fetched;
    if (!w->fetched) /* its time runs from its first delivery (see windows_close) */
        w->opened_ms = now_ms();
    w->fetched = true;
    pthread_mutex_unlock(&wh->win_mu);
}

/* A delivery lets go of w: its body's bytes, encoding and unmapped fields
 * (b; NULL: none, it took no rows) count for the run, and p (NULL: none) is
 * what Kafka did not take. */
static void window_release(struct sl_webhook *wh, struct wh_window *w, const struct build *b,
                           size_t bytes, int encoding, struct wh_pending *p)
{
    pthread_mutex_lock(&wh->win_mu);
    w->bytes += bytes;
    if (b)
        w->encoding = encoding;
    for (size_t i = 0; b && i < b->rb.nunmapped; i++) {
        size_t k = 0;
        while (k < w->nunmapped && strcmp(w->unmapped[k], b->rb.unmapped[i]))
            k++;
        if (k < w->nunmapped)
            continue;
        char **v = realloc(w->unmapped, (w->nunmapped + 1) * sizeof(*v));
        if (v) {
            w->unmapped = v;
            if ((v[w->nunmapped] = strdup(b->rb.unmapped[i])))
                w->nunmapped++;
        }
    }
    if (p) {
        p->next = w->pending;
        w->pending = p;
    }
    if (--w->inflight == 0)
        pthread_cond_broadcast(&wh->win_cv);
    pthread_mutex_unlock(&wh->win_mu);
}

/* Sends msgs[0..n) (a reference of each kept: the caller's still) and waits
 * for Kafka's acknowledgement. 0, or an sl_err with errbuf set. */
static int send_kept(struct sl_webhook *wh, const char *const *topics, struct sl_msg **msgs,
                     size_t n, char *errbuf, size_t errsz)
{
    struct sl_msg **out = malloc(n * sizeof(*out));
    if (!out)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        out[i] = sl_msg_ref(msgs[i]);
    struct wh_bus *hb = bus_get(wh, errbuf, errsz);
    int rc = SL_ERR_RETRY;
    if (hb) {
        rc = send_acked(hb->bus, topics, out, n, KAFKA_WAIT_MS);
        if (rc)
            sl_seterr(errbuf, errsz, rc, "kafka did not acknowledge the records: %s",
                      sl_err_str(rc));
        bus_put(wh, hb, rc == SL_ERR_FATAL);
    } else {
        for (size_t i = 0; i < n; i++)
            sl_msg_unref(out[i]);
    }
    free(out);
    return rc;
}

/* Sets the replay key of a delivery whose records Kafka took to the run id
 * (a later delivery of its webhook-id is then answered as a duplicate):
 * queued, and set with the others in one pipelined round trip by the
 * closing thread within SETTLE_MS (settles_flush); a retry meanwhile is
 * told the delivery is in progress. */
static void settle(struct sl_webhook *wh, const char *rkey, const char *run_id, uint64_t first)
{
    size_t kl = strlen(rkey);
    struct wh_settle *st = malloc(sizeof(*st) + kl + 1);
    if (!st) { /* at once, then */
        char err[512];
        redisReply *r = redis_cmd(wh, err, sizeof(err), "SET %s %s XX KEEPTTL", rkey, run_id);
        if (!r)
            sl_warn(COMP, "run %s: cannot settle the replay key %s: %s", run_id, rkey, err);
        freeReplyObject(r);
        return;
    }
    snprintf(st->run_id, sizeof(st->run_id), "%s", run_id);
    st->first = first;
    memcpy(st->rkey, rkey, kl + 1);
    pthread_mutex_lock(&wh->settle_mu);
    st->next = wh->settles;
    wh->settles = st;
    pthread_mutex_unlock(&wh->settle_mu);
}

/* Sets the queued replay keys (see settle) in one pipelined round trip. */
static void settles_flush(struct sl_webhook *wh)
{
    pthread_mutex_lock(&wh->settle_mu);
    struct wh_settle *list = wh->settles;
    wh->settles = NULL;
    pthread_mutex_unlock(&wh->settle_mu);
    if (!list)
        return;
    char err[512] = "";
    size_t n = 0, failed = 0;
    redisContext *c = redis_get(wh, false, err, sizeof(err));
    for (struct wh_settle *st = list; st && c; st = st->next) {
        const char *set[] = {"SET", st->rkey, st->run_id, "XX", "KEEPTTL"};
        size_t setl[] = {3, strlen(st->rkey), strlen(st->run_id), 2, 7};
        if (redisAppendCommandArgv(c, 5, set, setl) != REDIS_OK)
            break;
        n++;
        if (!st->first)
            continue;
        /* the delivery is in Kafka: the window need not keep it any more */
        char wkey[80], lkey[80], field[32];
        win_keys(st->run_id, wkey, lkey);
        snprintf(field, sizeof(field), "d:%llu", (unsigned long long)st->first);
        const char *hdel[] = {"HDEL", wkey, field};
        size_t hdell[] = {4, strlen(wkey), strlen(field)};
        if (redisAppendCommandArgv(c, 3, hdel, hdell) != REDIS_OK)
            break;
        n++;
    }
    for (size_t i = 0; i < n && c; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            snprintf(err, sizeof(err), "redis failed: %s", c->errstr);
            failed += n - i;
            break;
        }
        if (r->type == REDIS_REPLY_ERROR && failed++ == 0)
            snprintf(err, sizeof(err), "redis refused: %s", r->str);
        freeReplyObject(r);
    }
    redis_put(wh, c);
    size_t total = 0;
    while (list) {
        struct wh_settle *st = list;
        list = st->next;
        free(st);
        total++;
    }
    if (failed || !c)
        sl_warn(COMP,
                "cannot settle %zu replay keys (their webhook-ids are answered 503 until they "
                "expire): %s",
                c ? failed : total, err);
}

/* Seals the closing window w (no delivery holds it): sends what Kafka did
 * not take before, then SEALED with the run's count; a window no delivery
 * used is forgotten (its queued run removed). 0 when w is done with, else
 * an sl_err (to be tried again). */
static int window_seal(struct sl_webhook *wh, struct wh_window *w)
{
    char err[1024];
    int rc;
    if (w->lost) { /* another gateway took it (window_recover): it seals it */
        sl_warn(COMP, "run %s: its lock expired and another gateway took it over: sealed there",
                w->run_id);
        return 0;
    }
    while (w->pending) { /* only the closing touches a closing window's fields */
        struct wh_pending *p = w->pending;
        if ((rc = send_kept(wh, p->topics, p->msgs, p->n, err, sizeof(err)))) {
            sl_warn(COMP, "run %s: still cannot send %zu messages of a delivery: %s", w->run_id,
                    p->n, err);
            return rc;
        }
        if (p->rkey)
            settle(wh, p->rkey, w->run_id, p->first);
        w->pending = p->next;
        pending_free(p);
    }
    if (!w->fetched) {
        PGconn *c = db_get(wh, err, sizeof(err));
        if (!c || sl_api_run_forget(c, w->run_id, err, sizeof(err))) {
            sl_warn(COMP, "run %s: cannot remove the unused streaming run: %s", w->run_id, err);
            db_put(wh, c);
            return SL_ERR_RETRY;
        }
        db_put(wh, c);
        if (window_script(wh, CLOSE_LUA, w->run_id, w->run_id, err, sizeof(err)) < 0)
            sl_warn(COMP, "run %s: cannot remove the window from redis: %s", w->run_id, err);
        sl_debug(COMP, "job %s: streaming run %s unused: removed", w->job_id, w->run_id);
        return 0;
    }
    /* still ours? a gateway that took it over seals it with Redis's count */
    int own = lock_renew(wh, w->run_id);
    if (own < 0)
        return SL_ERR_RETRY;
    if (own == 0) {
        sl_warn(COMP, "run %s: its lock expired and another gateway took it over: sealed there",
                w->run_id);
        return 0;
    }
    struct sl_msg *sealed = run_event(w->run_id, w->job_id, w->version, SL_EV_SEALED);
    if (!sealed)
        return SL_ERR_NOMEM;
    sealed->u.ev.record_count = w->rows;
    sealed->u.ev.counts.read = w->rows;
    sealed->u.ev.counts.bytes = w->bytes;
    sealed->u.ev.encoding = w->encoding;
    if (w->nunmapped &&
        (sealed->u.ev.unmapped = sl_arena_alloc(&sealed->arena, w->nunmapped * sizeof(char *)))) {
        for (size_t i = 0; i < w->nunmapped; i++)
            sealed->u.ev.unmapped[i] = sl_arena_strdup(&sealed->arena, w->unmapped[i]);
        sealed->u.ev.nunmapped = (uint32_t)w->nunmapped;
    }
    const char *topic = SL_TOPIC_RUNS;
    rc = send_kept(wh, &topic, &sealed, 1, err, sizeof(err));
    sl_msg_unref(sealed);
    if (rc) {
        sl_warn(COMP, "run %s: cannot seal the streaming run yet: %s", w->run_id, err);
        return rc;
    }
    settles_flush(wh); /* before the window's hash goes */
    if (window_script(wh, CLOSE_LUA, w->run_id, w->run_id, err, sizeof(err)) < 0)
        sl_warn(COMP, "run %s: sealed, but cannot remove the window from redis: %s", w->run_id,
                err);
    sl_info(COMP, "job %s version %u: streaming run %s sealed: %u deliveries, %llu records",
            w->job_id, w->version, w->run_id, w->deliveries, (unsigned long long)w->rows);
    return 0;
}

/* Renews the lock of run_id's window when it is still this gateway's: 1,
 * 0 when another gateway took it (this one was silent for LOCK_TTL_MS), -1
 * when Redis failed. */
static int lock_renew(struct sl_webhook *wh, const char *run_id)
{
    char err[512], lkey[80], ttl[16];
    snprintf(lkey, sizeof(lkey), LOCK_KEY "%.40s", run_id);
    snprintf(ttl, sizeof(ttl), "%d", LOCK_TTL_MS);
    redisReply *r =
        redis_cmd(wh, err, sizeof(err), "EVAL %s 1 %s %s %s", BEAT_LUA, lkey, wh->me, ttl);
    if (!r) {
        sl_warn(COMP, "run %s: cannot renew its lock: %s", run_id, err);
        return -1;
    }
    int ours = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ours;
}

/* Renews the locks of this gateway's windows; a window whose lock another
 * gateway took is lost: closed here without sealing. */
static void windows_beat(struct sl_webhook *wh)
{
    char runs[64][37];
    size_t n = 0;
    pthread_mutex_lock(&wh->win_mu);
    for (struct wh_window *w = wh->windows; w && n < 64; w = w->next)
        if (w->state != WIN_OPENING && !w->lost)
            snprintf(runs[n++], sizeof(runs[0]), "%s", w->run_id);
    pthread_mutex_unlock(&wh->win_mu);
    for (size_t i = 0; i < n; i++) {
        if (lock_renew(wh, runs[i]) != 0)
            continue;
        pthread_mutex_lock(&wh->win_mu);
        for (struct wh_window *w = wh->windows; w; w = w->next)
            if (!strcmp(w->run_id, runs[i])) {
                w->lost = true;
                w->state = WIN_CLOSING;
            }
        pthread_mutex_unlock(&wh->win_mu);
    }
}

/* Appends a pending delivery of msgs[0..n) to topic (taken) to w; 0, or -1
 * out of memory (msgs freed). */
static int pending_add(struct wh_window *w, struct sl_msg **msgs, const char *topic, size_t n,
                       const char *rkey, uint64_t first)
{
    struct wh_pending *p = calloc(1, sizeof(*p));
    if (p && (p->msgs = calloc(n ? n : 1, sizeof(*p->msgs))) &&
        (p->topics = calloc(n ? n : 1, sizeof(*p->topics))) &&
        (!rkey || (p->rkey = strdup(rkey)))) {
        for (size_t i = 0; i < n; i++) {
            p->msgs[i] = msgs[i];
            p->topics[i] = topic;
        }
        p->n = n;
        p->first = first;
        struct wh_pending **tail = &w->pending; /* in order: FETCHED first */
        while (*tail)
            tail = &(*tail)->next;
        *tail = p;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        sl_msg_unref(msgs[i]);
    pending_free(p);
    return -1;
}

/* Builds, from its hash in Redis, the window of run_id that a gateway
 * which went away left open (this one holds its lock now): its count,
 * bytes and unmapped fields, FETCHED and every delivery it kept (those
 * Kafka may not have acknowledged), built again from their bodies with the
 * same rows, as pending deliveries. NULL with errbuf set (the next try
 * comes when the lock expires); *gone when there is nothing to seal. */
static struct wh_window *window_load(struct sl_webhook *wh, const char *run_id, bool *gone,
                                     char *errbuf, size_t errsz)
{
    *gone = false;
    char wkey[80];
    snprintf(wkey, sizeof(wkey), WIN_KEY "%.40s", run_id);
    redisReply *h = redis_cmd(wh, errbuf, errsz, "HGETALL %s", wkey);
    if (!h || h->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(h);
        return NULL;
    }
    struct wh_window *w = calloc(1, sizeof(*w));
    struct wh_job *j = NULL;
    int rc = w ? 0 : SL_ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str, *v = h->element[i + 1]->str;
        if (!strcmp(f, "job") && !(w->job_id = strdup(v)))
            rc = SL_ERR_NOMEM;
        else if (!strcmp(f, "version"))
            w->version = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(f, "rows"))
            w->rows = strtoull(v, NULL, 10);
        else if (!strcmp(f, "bytes"))
            w->bytes = strtoull(v, NULL, 10);
    }
    if (rc == 0 && !w->job_id) { /* sealed meanwhile, or never filled in */
        *gone = true;
        rc = SL_ERR_NOTFOUND;
    }
    if (rc == 0) {
        snprintf(w->run_id, sizeof(w->run_id), "%s", run_id);
        w->state = WIN_CLOSING;
        w->fetched = true;
        PGconn *c = NULL;
        rc = job_get(wh, &c, w->job_id, w->version, &j, errbuf, errsz);
        db_put(wh, c);
        if (rc == 0 && !j->job)
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "job %s version %u does not load: %s",
                           w->job_id, w->version, j->err);
    }
    struct sl_msg *ev = rc ? NULL : run_event(run_id, w->job_id, w->version, SL_EV_FETCHED);
    if (rc == 0 && (!ev || !(ev->u.ev.source_name = sl_arena_strdup(&ev->arena, "webhook")) ||
                    pending_add(w, &ev, SL_TOPIC_RUNS, 1, NULL, 0))) {
        sl_msg_unref(ev);
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; rc == 0 && i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str;
        if (!strncmp(f, "u:", 2)) {
            char **v = realloc(w->unmapped, (w->nunmapped + 1) * sizeof(*v));
            if (!v || !(v[w->nunmapped] = strdup(f + 2))) {
                if (v)
                    w->unmapped = v;
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                break;
            }
            w->unmapped = v;
            w->nunmapped++;
            continue;
        }
        if (strncmp(f, "d:", 2))
            continue;
        /* "<rows> <ndjson> <key length>\n<replay key><body>" (delivery_pack) */
        uint64_t first = strtoull(f + 2, NULL, 10);
        const char *v = h->element[i + 1]->str;
        size_t vlen = h->element[i + 1]->len, kl = 0;
        unsigned long long n = 0;
        int nd = 0;
        const char *nl = memchr(v, '\n', vlen);
        if (!nl || sscanf(v, "%llu %d %zu", &n, &nd, &kl) != 3 ||
            (size_t)(v + vlen - nl - 1) < kl || kl >= 600) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "the kept delivery %s is damaged", f);
            break;
        }
        char rkey[600];
        snprintf(rkey, sizeof(rkey), "%.*s", (int)kl, nl + 1);
        struct sl_webhook_req req = {
            .job_id = w->job_id, .body = nl + 1 + kl, .len = (size_t)(v + vlen - (nl + 1 + kl))};
        struct build b = {0};
        struct sl_reader_stats stats;
        if ((rc = build_records(wh, &req, nd != 0, j, &b, &stats, errbuf, errsz)) == 0 &&
            b.rows != n)
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "the kept delivery %s builds %llu rows, not %llu", f,
                           (unsigned long long)b.rows, n);
        for (size_t k = 0; rc == 0 && k < b.nmsgs; k++) {
            b.msgs[k]->u.rec.row += first - 1;
            if (!(b.msgs[k]->run_id = sl_arena_strdup(&b.msgs[k]->arena, run_id)))
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        }
        if (rc == 0 && pending_add(w, b.msgs, SL_TOPIC_RAW, b.nmsgs, rkey, first))
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        if (rc == 0)
            b.nmsgs = 0; /* w's now */
        build_cleanup(&b);
        w->deliveries++;
    }
    job_put(wh, j);
    freeReplyObject(h);
    if (rc) {
        window_free(w);
        return NULL;
    }
    return w;
}

/* Seals run_id, the window of a gateway that went away (window_load, then
 * window_seal: the kept deliveries sent again, a row that reached Kafka
 * before comes twice, which the stages count once; then SEALED with the
 * window's count). 0, or an sl_err (tried again once the lock expires). */
static int window_recover(struct sl_webhook *wh, const char *run_id)
{
    char err[1024] = "";
    bool gone = false;
    struct wh_window *w = window_load(wh, run_id, &gone, err, sizeof(err));
    if (!w && gone) {
        window_script(wh, CLOSE_LUA, run_id, run_id, err, sizeof(err));
        return 0;
    }
    if (!w) {
        sl_warn(COMP, "run %s: cannot load a stopped gateway's streaming run: %s", run_id, err);
        return SL_ERR_RETRY;
    }
    unsigned resent = w->deliveries;
    int rc = window_seal(wh, w);
    if (rc == 0)
        sl_info(COMP,
                "run %s of job %s: a stopped gateway's streaming run sealed here (%u deliveries "
                "sent again)",
                run_id, w->job_id, resent);
    window_free(w);
    return rc;
}

/* Looks for windows whose gateway went away (open longer than LOCK_TTL_MS,
 * their lock expired) and seals them here. */
static void windows_recover(struct sl_webhook *wh)
{
    char err[512], max[24];
    snprintf(max, sizeof(max), "%lld", (long long)(wall_ms() - LOCK_TTL_MS));
    redisReply *r =
        redis_cmd(wh, err, sizeof(err), "ZRANGEBYSCORE %s -inf %s LIMIT 0 8", WINDOWS_KEY, max);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return;
    }
    for (size_t i = 0; i < r->elements && !atomic_load(&wh->stop); i++) {
        const char *run = r->element[i]->str;
        if (!run || strlen(run) != 36) /* not a run id: not ours to seal */
            continue;
        char lkey[80], ttl[16];
        snprintf(lkey, sizeof(lkey), LOCK_KEY "%.40s", run);
        snprintf(ttl, sizeof(ttl), "%d", LOCK_TTL_MS);
        redisReply *l = redis_cmd(wh, err, sizeof(err), "SET %s %s NX PX %s", lkey, wh->me, ttl);
        bool got = l && l->type == REDIS_REPLY_STATUS;
        freeReplyObject(l);
        if (got && window_recover(wh, run) != 0)
            sl_warn(COMP, "run %s: the next try comes when this gateway's lock expires", run);
    }
    freeReplyObject(r);
}

/* One pass of the closing: windows due (window_ms after their first
 * delivery, or after they opened for one no delivery used; window_rows
 * rows; every one when all) close (a successor opened first for a window that had
 * deliveries, so that the job's next ones need not wait for its INSERT),
 * and closing windows no delivery holds are sealed. Returns how many
 * windows are left. */
static size_t windows_close(struct sl_webhook *wh, bool all)
{
    int64_t now = now_ms();
    struct wh_window *due[64];
    size_t ndue = 0;
    pthread_mutex_lock(&wh->win_mu);
    for (struct wh_window *w = wh->windows; w && ndue < 64; w = w->next)
        if (w->state == WIN_OPEN &&
            (all || w->rows >= wh->deps.window_rows ||
             /* one no delivery used yet is not due while a delivery holds it */
             ((w->fetched || !w->inflight) && now - w->opened_ms >= wh->deps.window_ms)))
            due[ndue++] = w;
    pthread_mutex_unlock(&wh->win_mu);
    for (size_t i = 0; i < ndue; i++) {
        struct wh_window *w = due[i], *nw = NULL;
        pthread_mutex_lock(&wh->win_mu);
        bool busy = w->fetched;
        pthread_mutex_unlock(&wh->win_mu);
        char err[1024];
        if (!all && busy && (nw = calloc(1, sizeof(*nw))) && (nw->job_id = strdup(w->job_id)) &&
            window_record(wh, nw, err, sizeof(err)) == 0) {
            nw->state = WIN_OPEN;
            nw->opened_ms = now_ms();
        } else {
            if (nw && nw->job_id && !all && busy)
                sl_warn(COMP, "job %s: cannot open the next streaming run ahead: %s", w->job_id,
                        err);
            window_free(nw);
            nw = NULL;
        }
        pthread_mutex_lock(&wh->win_mu);
        w->state = WIN_CLOSING;
        if (nw) {
            nw->next = wh->windows;
            wh->windows = nw;
        }
        pthread_mutex_unlock(&wh->win_mu);
    }
    size_t left = 0;
    for (;;) {
        struct wh_window *w = NULL;
        pthread_mutex_lock(&wh->win_mu);
        for (struct wh_window *x = wh->windows; x && !w; x = x->next)
            if (x->state == WIN_CLOSING && x->inflight == 0 && !x->tried)
                w = x;
        pthread_mutex_unlock(&wh->win_mu);
        if (!w)
            break;
        int rc = window_seal(wh, w);
        pthread_mutex_lock(&wh->win_mu);
        if (rc == 0)
            window_unlink_locked(wh, w);
        else
            w->tried = true; /* not again in this pass */
        pthread_mutex_unlock(&wh->win_mu);
        if (rc == 0)
            window_free(w);
    }
    pthread_mutex_lock(&wh->win_mu);
    for (struct wh_window *x = wh->windows; x; x = x->next) {
        x->tried = false;
        left++;
    }
    pthread_mutex_unlock(&wh->win_mu);
    return left;
}

static void *closer_main(void *arg)
{
    struct sl_webhook *wh = arg;
    int tick = SETTLE_MS;
    while (!atomic_load(&wh->stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)tick * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&wh->win_mu);
        if (!atomic_load(&wh->stop))
            pthread_cond_timedwait(&wh->stop_cv, &wh->win_mu, &ts);
        pthread_mutex_unlock(&wh->win_mu);
        settles_flush(wh);
        if (atomic_load(&wh->stop))
            break;
        int64_t now = now_ms();
        if (now - wh->beat_ms >= HEARTBEAT_MS) {
            wh->beat_ms = now;
            windows_beat(wh);
        }
        windows_close(wh, false);
        if (now - wh->recover_ms >= RECOVER_MS) {
            wh->recover_ms = now;
            windows_recover(wh);
        }
    }
    return NULL;
}

/* ---- the delivery ------------------------------------------------------- */

/* The answer to a delivery whose webhook-id was seen before: seen is what
 * its replay key holds ("pending", or the first delivery's run). */
static void answer_replay(struct sl_webhook_answer *ans, const struct sl_webhook_req *req,
                          const char *seen)
{
    if (seen && !strcmp(seen, "pending")) {
        /* the first delivery is still at work (or its gateway died and its
         * run waits for another one to seal it): its outcome decides, so
         * the sender is asked to come back */
        fail(ans, 503, "unavailable", "a delivery of webhook-id %s is in progress; retry later",
             req->id);
        return;
    }
    sl_info(COMP, "request %s: webhook-id %s of job %s was delivered before: not processed",
            req->rid, req->id, req->job_id);
    ans->status = 200;
    ans->body = json_pack("{s:b,s:s,s:s?}", "duplicate", 1, "webhook_id", req->id, "run_id", seen);
}

/* ---- deliveries and the engine (see the top) ---------------------------- */

/* A delivery between sl_webhook_begin() and its answer. */
struct sl_webhook_delivery {
    struct sl_webhook_delivery *next;
    struct sl_webhook *wh;
    struct sl_webhook_req req; /* borrowed until done() */
    struct sl_webhook_answer *ans;
    void (*done)(void *arg);
    void *arg;
    struct wh_job *j; /* held */
    struct build b;
    struct sl_reader_stats stats;
    bool ndjson;
    bool checked; /* the replay window was looked at before a run was recorded */
    int attempt;
    char rkey[600];
    /* while the engine takes it */
    struct wh_window *win; /* held (window_acquire) */
    struct wh_pending *p;
    struct sl_msg *fetched;
    uint32_t version;
    uint64_t row1, rows;
    bool with_fetched;
    char *packed, *unmapped;
    size_t plen;
    char err[1024];
};

/* The deliveries of one engine round whose records went to Kafka in one
 * send: answered together when Kafka reported on all of them (or after
 * KAFKA_WAIT_MS: kept then, as a refused send). */
struct wh_batch {
    struct wh_batch *next; /* the engine's list of batches in flight */
    struct sl_webhook *wh;
    struct sl_webhook_delivery **d;
    size_t n;
    struct wh_bus *hb;
    atomic_int refs;      /* the engine's list, the bus's report */
    atomic_bool claimed;  /* one of them answers the deliveries... */
    atomic_bool finished; /* ...and has (rc is set) */
    int rc;
    int64_t deadline_ms;
};

static void delivery_free(struct sl_webhook_delivery *d)
{
    struct sl_webhook *wh = d->wh;
    pending_free(d->p);
    sl_msg_unref(d->fetched);
    build_cleanup(&d->b);
    job_put(wh, d->j);
    free(d->packed);
    free(d->unmapped);
    if (!sl_spares_put(&wh->spares, d))
        free(d);
}

/* Answers d (ans set) and lets it go: its sender's connection is woken. */
static void delivery_answer(struct sl_webhook_delivery *d)
{
    void (*done)(void *) = d->done;
    void *arg = d->arg;
    delivery_free(d);
    done(arg);
}

/* The window d holds lets go of it without rows (before they were reserved). */
static void delivery_unhold(struct sl_webhook_delivery *d)
{
    sl_msg_unref(d->fetched);
    d->fetched = NULL;
    pending_free(d->p);
    d->p = NULL;
    free(d->packed);
    d->packed = NULL;
    free(d->unmapped);
    d->unmapped = NULL;
    if (d->win)
        window_release(d->wh, d->win, NULL, 0, 0, NULL);
    d->win = NULL;
}

/* What an engine round does with a delivery next. */
enum wh_next { NEXT_CLAIM, NEXT_ANSWERED, NEXT_AGAIN };

/* The delivery's window (its run) and everything that may fail before its
 * rows are reserved. NEXT_CLAIM: d->win held, packed for the claim. */
static enum wh_next delivery_prepare(struct sl_webhook *wh, struct sl_webhook_delivery *d)
{
    const struct sl_webhook_req *req = &d->req;
    char *err = d->err;
    size_t errsz = sizeof(d->err);
    int rc;
    if (!d->checked) {
        d->checked = true;
        if (!window_open(wh, req->job_id)) {
            /* a run is recorded for this delivery: a replay must not cause one */
            redisReply *r = redis_cmd(wh, err, errsz, "GET %s", d->rkey);
            if (!r) {
                fail(d->ans, 503, "unavailable", "cannot check webhook-id for a replay: %s", err);
                return NEXT_ANSWERED;
            }
            char *seen = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
            freeReplyObject(r);
            if (seen) {
                answer_replay(d->ans, req, seen);
                free(seen);
                return NEXT_ANSWERED;
            }
        }
    }
    if (!(d->win = window_acquire(wh, req->job_id, d->j->version, &rc, err, errsz))) {
        fail(d->ans, rc == SL_ERR_NOTFOUND ? 404 : 503,
             rc == SL_ERR_NOTFOUND ? "not_found" : "unavailable", "%s", err);
        return NEXT_ANSWERED;
    }
    struct wh_window *win = d->win;
    d->version = win->version;         /* fixed while the window is open */
    if (d->version != d->j->version) { /* the job changed since it was read: build for this one */
        job_put(wh, d->j);
        d->j = NULL;
        PGconn *c = NULL;
        rc = job_get(wh, &c, req->job_id, d->version, &d->j, err, errsz);
        db_put(wh, c);
        if (rc || !d->j->job) {
            fail(d->ans, 503, "unavailable", "cannot load job %s version %u: %s", req->job_id,
                 d->version, rc ? err : d->j->err);
            delivery_unhold(d);
            return NEXT_ANSWERED;
        }
        if ((rc = build_records(wh, req, d->ndjson, d->j, &d->b, &d->stats, err, errsz))) {
            fail(d->ans, 500, "internal", "%s", err);
            delivery_unhold(d);
            return NEXT_ANSWERED;
        }
    }
    struct build *b = &d->b;
    size_t n = b->nmsgs + 1;
    struct wh_pending *p = NULL;
    d->fetched = run_event(win->run_id, req->job_id, d->version, SL_EV_FETCHED);
    if (!d->fetched || !(p = d->p = calloc(1, sizeof(*p))) ||
        !(p->msgs = calloc(n, sizeof(*p->msgs))) || !(p->topics = calloc(n, sizeof(*p->topics))) ||
        !(p->rkey = strdup(d->rkey)) ||
        !(d->fetched->u.ev.source_name = sl_arena_strdup(&d->fetched->arena, "webhook"))) {
        fail(d->ans, 500, "internal", "out of memory");
        delivery_unhold(d);
        return NEXT_ANSWERED;
    }
    for (size_t i = 0; i < b->nmsgs; i++) /* built before the run had an id */
        if (!(b->msgs[i]->run_id = sl_arena_strdup(&b->msgs[i]->arena, win->run_id))) {
            fail(d->ans, 500, "internal", "out of memory");
            delivery_unhold(d);
            return NEXT_ANSWERED;
        }
    d->rows = b->rows;
    int taken = window_keys(wh, win, b);
    if (taken == 0) {
        struct sl_buf un;
        sl_buf_init(&un);
        for (size_t i = 0; i < b->rb.nunmapped; i++) {
            if (i)
                sl_buf_putc(&un, '\x1f');
            sl_buf_puts(&un, b->rb.unmapped[i]);
        }
        d->packed = delivery_pack(d->rows, d->ndjson, d->rkey, req->body, req->len, &d->plen);
        d->unmapped = strdup(un.len ? un.data : "");
        sl_buf_cleanup(&un);
        if (d->packed && d->unmapped)
            return NEXT_CLAIM;
        taken = -1;
    }
    delivery_unhold(d);
    if (taken == 1 && ++d->attempt < 8)
        return NEXT_AGAIN; /* a key of an earlier delivery of the run: the job's next run */
    fail(d->ans, 503, "unavailable", "cannot take the records of job %s now: %s", req->job_id,
         taken < 0 ? "out of memory" : "no run for them");
    return NEXT_ANSWERED;
}

/* What the claim (CLAIMS_LUA) of d answered: r, its code, and value, the
 * element after it; or r Redis's error (NULL: Redis failed, rerr says
 * why). */
static enum wh_next delivery_claimed(struct sl_webhook *wh, struct sl_webhook_delivery *d,
                                     redisReply *r, redisReply *value, const char *rerr)
{
    char *seen = NULL;
    int taken = -1;
    if (r && r->type != REDIS_REPLY_ERROR) {
        taken = claim_parse(r, value, &d->row1, &seen, d->err, sizeof(d->err));
    } else {
        snprintf(d->err, sizeof(d->err), "%s%s", r ? "redis refused: " : "",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : rerr);
    }
    if (taken == 1) {
        window_took(wh, d->win, d->rows, &d->with_fetched);
        return NEXT_CLAIM; /* its records go */
    }
    if (taken == 2) { /* the window is not ours any more (heartbeat) */
        pthread_mutex_lock(&wh->win_mu);
        d->win->state = WIN_CLOSING;
        d->win->lost = true;
        pthread_mutex_unlock(&wh->win_mu);
    }
    delivery_unhold(d);
    if (taken == 0) { /* seen before: answered, nothing sent */
        answer_replay(d->ans, &d->req, seen);
        free(seen);
        return NEXT_ANSWERED;
    }
    if (taken == 2 && ++d->attempt < 8)
        return NEXT_AGAIN;
    fail(d->ans, 503, "unavailable", "cannot take the records of job %s now: %s", d->req.job_id,
         taken < 0 ? d->err : "no run for them");
    return NEXT_ANSWERED;
}

/* The claim script of ds[0..n) (CLAIMS_LUA: by its SHA, or its text) and
 * its answer; NULL with err set when Redis failed. */
static redisReply *claims_call(struct sl_webhook *wh, redisContext *c,
                               struct sl_webhook_delivery **ds, size_t n, bool text, char *err,
                               size_t errsz)
{
    size_t argc = 5 + 7 * n, k = 0;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *argl = malloc(argc * sizeof(*argl));
    char(*keys)[2][80] = malloc(n * sizeof(*keys));
    char(*nums)[2][24] = malloc(n * sizeof(*nums));
    char nkeys[24], ttl[24];
    redisReply *r = NULL;
    if (!argv || !argl || !keys || !nums) {
        snprintf(err, errsz, "out of memory");
        goto out;
    }
    /* by argv: hiredis parsing a format string was a fifth of a claim */
#define ARG(s, len) (argv[k] = (s), argl[k++] = (len))
    snprintf(nkeys, sizeof(nkeys), "%zu", 3 * n);
    snprintf(ttl, sizeof(ttl), "%d", REPLAY_TTL_S);
    ARG(text ? "EVAL" : "EVALSHA", text ? 4 : 7);
    ARG(text ? CLAIMS_LUA : wh->claims_sha, text ? strlen(CLAIMS_LUA) : strlen(wh->claims_sha));
    ARG(nkeys, strlen(nkeys));
    for (size_t i = 0; i < n; i++) {
        win_keys(ds[i]->win->run_id, keys[i][0], keys[i][1]);
        ARG(ds[i]->rkey, strlen(ds[i]->rkey));
        ARG(keys[i][0], strlen(keys[i][0]));
        ARG(keys[i][1], strlen(keys[i][1]));
    }
    ARG(ttl, strlen(ttl));
    ARG(wh->me, strlen(wh->me));
    for (size_t i = 0; i < n; i++) {
        struct sl_webhook_delivery *d = ds[i];
        snprintf(nums[i][0], sizeof(nums[i][0]), "%llu", (unsigned long long)d->rows);
        snprintf(nums[i][1], sizeof(nums[i][1]), "%llu", (unsigned long long)d->req.len);
        ARG(nums[i][0], strlen(nums[i][0]));
        ARG(nums[i][1], strlen(nums[i][1]));
        ARG(d->packed ? d->packed : "", d->plen);
        ARG(d->unmapped, strlen(d->unmapped));
    }
#undef ARG
    if (redisAppendCommandArgv(c, (int)argc, argv, argl) != REDIS_OK ||
        redisGetReply(c, (void **)&r) != REDIS_OK) {
        snprintf(err, errsz, "redis failed: %s", c->errstr[0] ? c->errstr : "out of memory");
        r = NULL;
    }
out:
    free(argv);
    free(argl);
    free(keys);
    free(nums);
    return r;
}

/* The claims of ds[0..n) (a round's, in order): one script call for up to
 * CLAIMS_MAX of them; out[i] what each answered. */
static void claims_run(struct sl_webhook *wh, struct sl_webhook_delivery **ds, size_t n,
                       enum wh_next *out)
{
    char err[512] = "";
    redisContext *c = redis_get(wh, false, err, sizeof(err));
    for (size_t off = 0; off < n;) {
        size_t m = n - off < CLAIMS_MAX ? n - off : CLAIMS_MAX;
        redisReply *r = c ? claims_call(wh, c, ds + off, m, false, err, sizeof(err)) : NULL;
        if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
            freeReplyObject(r); /* a Redis that restarted: the text, cached again */
            r = claims_call(wh, c, ds + off, m, true, err, sizeof(err));
        }
        for (size_t i = 0; i < m; i++) {
            redisReply *e = r, *v = NULL; /* an error for all of them, or NULL */
            const char *why = err;
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 * m)
                e = r->element[2 * i], v = r->element[2 * i + 1];
            else if (r && r->type != REDIS_REPLY_ERROR)
                e = NULL, why = "redis answered the claims unexpectedly";
            out[off + i] = delivery_claimed(wh, ds[off + i], e, v, why);
        }
        freeReplyObject(r);
        off += m;
    }
    redis_put(wh, c);
}

/* Kafka reported on (or gave up waiting for) the records of d: answers it
 * (202, or 503 with its rows kept by the window) and lets the window go. */
static void delivery_sent(struct sl_webhook *wh, struct sl_webhook_delivery *d, int rc)
{
    const struct sl_webhook_req *req = &d->req;
    struct wh_window *win = d->win;
    struct wh_pending *kept = NULL;
    if (rc == 0) {
        settle(wh, d->rkey, win->run_id, d->rows ? d->row1 : 0);
        sl_debug(COMP, "request %s: webhook %s of job %s version %u: run %s rows %llu..%llu",
                 req->rid, req->id, req->job_id, d->version, win->run_id,
                 (unsigned long long)d->row1, (unsigned long long)(d->row1 + d->rows - 1));
        d->ans->status = 202;
        /* the answer of every delivery: written as text, not by jansson */
        struct sl_buf t = SL_BUF_INIT;
        sl_buf_puts(&t, "{\"run_id\":");
        sl_buf_json_str(&t, win->run_id, strlen(win->run_id));
        sl_buf_printf(&t, ",\"records\":%llu,\"first_row\":%llu,\"job_id\":",
                      (unsigned long long)d->rows, (unsigned long long)d->row1);
        sl_buf_json_str(&t, req->job_id, strlen(req->job_id));
        sl_buf_printf(&t, ",\"job_version\":%u}", (unsigned)d->version);
        d->ans->text = sl_buf_steal(&t);
    } else {
        /* kept: sent again when the window closes, and the replay key stays
         * "pending" until then (the sender's retry: 503, then 200) */
        char why[256];
        snprintf(why, sizeof(why), "kafka did not acknowledge the records: %s", sl_err_str(rc));
        sl_warn(COMP, "request %s: webhook %s of job %s: run %s keeps its rows for later: %s",
                req->rid, req->id, req->job_id, win->run_id, why);
        fail(d->ans, 503, "unavailable", "cannot take the records now (run %s): %s", win->run_id,
             why);
        d->p->first = d->rows ? d->row1 : 0;
        kept = d->p;
        d->p = NULL;
    }
    window_release(wh, win, &d->b, d->ans->status == 202 || kept ? req->len : 0, d->stats.encoding,
                   kept);
    d->win = NULL;
    delivery_answer(d);
}

static void batch_unref(struct wh_batch *bt)
{
    if (atomic_fetch_sub(&bt->refs, 1) == 1) {
        free(bt->d);
        free(bt);
    }
}

/* Answers the deliveries of bt, once (the bus's report, or the engine
 * giving up waiting for it). */
static void batch_finish(struct sl_webhook *wh, struct wh_batch *bt, int rc)
{
    if (atomic_exchange(&bt->claimed, true))
        return;
    bt->rc = rc;
    for (size_t i = 0; i < bt->n; i++)
        delivery_sent(wh, bt->d[i], rc);
    bt->n = 0;
    atomic_store(&bt->finished, true);
}

/* The bus's report on a batch (a thread of the bus). */
static void batch_reported(void *arg, int rc)
{
    struct wh_batch *bt = arg;
    batch_finish(bt->wh, bt, rc);
    batch_unref(bt);
}

/* Sends the records of the claimed deliveries ds[0..n) (each one's run
 * event first when it is its window's first delivery) in one send; their
 * answers come with Kafka's report (batch_reported). */
static void batch_send(struct sl_webhook *wh, struct sl_webhook_delivery **ds, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_webhook_delivery *d = ds[i];
        struct wh_pending *p = d->p;
        if (d->with_fetched) {
            p->topics[p->n] = SL_TOPIC_RUNS;
            p->msgs[p->n++] = d->fetched;
        } else {
            sl_msg_unref(d->fetched);
        }
        d->fetched = NULL;
        for (size_t k = 0; k < d->b.nmsgs; k++) {
            d->b.msgs[k]->u.rec.row += d->row1 - 1;
            p->topics[p->n] = SL_TOPIC_RAW;
            p->msgs[p->n++] = d->b.msgs[k];
        }
        d->b.nmsgs = 0; /* p's now */
        total += p->n;
    }
    struct wh_batch *bt = calloc(1, sizeof(*bt));
    struct sl_msg **out = malloc((total ? total : 1) * sizeof(*out));
    const char **topics = malloc((total ? total : 1) * sizeof(*topics));
    char err[512] = "out of memory";
    int rc = SL_ERR_NOMEM;
    if (bt && out && topics && (bt->d = malloc(n * sizeof(*bt->d)))) {
        bt->wh = wh;
        memcpy(bt->d, ds, n * sizeof(*ds));
        bt->n = n;
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t m = 0; m < ds[i]->p->n; m++) {
                topics[k] = ds[i]->p->topics[m];
                out[k++] = sl_msg_ref(ds[i]->p->msgs[m]); /* p keeps its own */
            }
        rc = SL_ERR_RETRY;
        if ((bt->hb = bus_get(wh, err, sizeof(err)))) {
            struct sl_bus *bus = bt->hb->bus;
            atomic_store(&bt->refs, 2);
            bt->deadline_ms = now_ms() + KAFKA_WAIT_MS;
            bt->next = wh->batches;
            wh->batches = bt;
            if (bus->ops->send_async) {
                rc = bus->ops->send_async(bus, topics, out, total, batch_reported, bt);
                if (rc)
                    batch_unref(bt); /* no report comes */
            } else {
                rc = send_acked(bus, topics, out, total, KAFKA_WAIT_MS);
                batch_unref(bt);
            }
            free(out);
            free(topics);
            if (rc)
                sl_warn(COMP, "cannot send the records of %zu deliveries: %s", n, sl_err_str(rc));
            if (rc || !bus->ops->send_async)
                batch_finish(wh, bt, rc);
            return;
        }
        for (size_t i = 0; i < total; i++)
            sl_msg_unref(out[i]);
    }
    sl_warn(COMP, "cannot send the records of %zu deliveries: %s", n, err);
    free(out);
    free(topics);
    if (bt) {
        free(bt->d);
        free(bt);
    }
    for (size_t i = 0; i < n; i++)
        delivery_sent(wh, ds[i], rc);
}

/* The batches in flight: those answered leave (their bus let go); those
 * Kafka did not report on within KAFKA_WAIT_MS are answered as refused
 * (all: every one of them). */
static void batches_check(struct sl_webhook *wh, bool all)
{
    int64_t now = now_ms();
    for (struct wh_batch **pp = &wh->batches; *pp;) {
        struct wh_batch *bt = *pp;
        if (!atomic_load(&bt->finished) && (all || now >= bt->deadline_ms))
            batch_finish(wh, bt, SL_ERR_TIMEOUT);
        if (!atomic_load(&bt->finished)) {
            pp = &bt->next;
            continue;
        }
        *pp = bt->next;
        bus_put(wh, bt->hb, bt->rc == SL_ERR_FATAL);
        batch_unref(bt);
    }
}

/* One round of the engine: the deliveries of list, taken together. */
static void engine_round(struct sl_webhook *wh, struct sl_webhook_delivery *list)
{
    while (list) {
        size_t n = 0;
        for (struct sl_webhook_delivery *d = list; d; d = d->next)
            n++;
        struct sl_webhook_delivery **ds = malloc(n * sizeof(*ds)), **cs = malloc(n * sizeof(*cs));
        enum wh_next *st = malloc(n * sizeof(*st)), *cn = malloc(n * sizeof(*cn));
        if (!ds || !cs || !st || !cn) { /* one at a time, then */
            free(ds);
            free(cs);
            free(st);
            free(cn);
            n = 1;
            ds = malloc(sizeof(*ds));
            cs = malloc(sizeof(*cs));
            st = malloc(sizeof(*st));
            cn = malloc(sizeof(*cn));
            if (!ds || !cs || !st || !cn)
                abort(); /* not even that: nothing sensible is left to do */
        }
        for (size_t i = 0; i < n; i++) {
            ds[i] = list;
            list = list->next;
            ds[i]->next = NULL;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) /* the window of each, in order */
            if ((st[i] = delivery_prepare(wh, ds[i])) == NEXT_CLAIM)
                cs[k++] = ds[i];
        claims_run(wh, cs, k, cn);
        /* in arrival order: the answered go, the claimed are sent, and those
         * that must go to a job's next run come again, in their order, before
         * anything that came after them */
        struct sl_webhook_delivery *again = NULL, **tail = &again;
        size_t m = 0;
        for (size_t i = 0, c = 0; i < n; i++) {
            enum wh_next x = st[i] == NEXT_CLAIM ? cn[c++] : st[i];
            if (x == NEXT_ANSWERED) {
                delivery_answer(ds[i]);
            } else if (x == NEXT_AGAIN) {
                *tail = ds[i];
                tail = &ds[i]->next;
            } else {
                cs[m++] = ds[i];
            }
        }
        *tail = list;
        list = again;
        if (m) {
            wh->taken += m;
            wh->sends++;
            sl_counter_add(wh->m_taken, (uint64_t)m);
            sl_counter_add(wh->m_sends, 1);
            batch_send(wh, cs, m);
        }
        free(ds);
        free(cs);
        free(st);
        free(cn);
    }
}

/* The engine: takes the queued deliveries a round at a time, so that those
 * that came while a round was at work share the next one's round trips. */
static void *engine_main(void *arg)
{
    struct sl_webhook *wh = arg;
    for (;;) {
        pthread_mutex_lock(&wh->q_mu);
        while (!wh->q_head && !wh->q_stop) {
            if (!wh->batches) {
                wh->q_idle = true;
                pthread_cond_wait(&wh->q_cv, &wh->q_mu);
                wh->q_idle = false;
                continue;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            wh->q_idle = true;
            int w = pthread_cond_timedwait(&wh->q_cv, &wh->q_mu, &ts);
            wh->q_idle = false;
            if (w) {
                pthread_mutex_unlock(&wh->q_mu);
                batches_check(wh, false);
                pthread_mutex_lock(&wh->q_mu);
            }
        }
        struct sl_webhook_delivery *list = wh->q_head;
        bool stop = wh->q_stop && !list;
        wh->q_head = NULL;
        wh->q_tail = &wh->q_head;
        pthread_mutex_unlock(&wh->q_mu);
        if (stop)
            break;
        wh->rounds++;
        engine_round(wh, list);
        batches_check(wh, false);
    }
    /* stopping: what Kafka has not reported on within its time is answered */
    int64_t until = now_ms() + KAFKA_WAIT_MS;
    while (wh->batches && now_ms() < until) {
        batches_check(wh, false);
        usleep(10000);
    }
    batches_check(wh, true);
    sl_info(COMP, "webhooks: %llu deliveries taken in %llu sends to kafka (%llu rounds)",
            (unsigned long long)wh->taken, (unsigned long long)wh->sends,
            (unsigned long long)wh->rounds);
    return NULL;
}

int sl_webhook_begin(struct sl_webhook *wh, const struct sl_webhook_req *req,
                     struct sl_webhook_answer *ans, void (*done)(void *arg), void *arg,
                     struct sl_webhook_delivery **out)
{
    *out = NULL;
    memset(ans, 0, sizeof(*ans));
    static const char *const hdr[] = {"webhook-id", "webhook-timestamp", "webhook-signature"};
    const char *hv[] = {req->id, req->timestamp, req->signature};
    for (int i = 0; i < 3; i++)
        if (!hv[i] || !hv[i][0]) {
            fail(ans, 400, "invalid_request", "the header %s is missing (Standard Webhooks)",
                 hdr[i]);
            return 0;
        }
    if (strlen(req->id) > 256) {
        fail(ans, 400, "invalid_request", "webhook-id is longer than 256 characters");
        return 0;
    }
    struct sl_webhook_delivery *d = sl_spares_get(&wh->spares);
    if (d)
        memset(d, 0, sizeof(*d));
    else
        d = calloc(1, sizeof(*d));
    if (!d) {
        fail(ans, 500, "internal", "out of memory");
        return 0;
    }
    d->wh = wh;
    d->req = *req;
    d->ans = ans;
    d->done = done;
    d->arg = arg;
    char *err = d->err;
    size_t errsz = sizeof(d->err);
    PGconn *c = NULL;
    int rc = job_current(wh, &c, req->job_id, &d->j, err, errsz);
    db_put(wh, c);
    if (rc == SL_ERR_NOTFOUND) {
        fail(ans, 404, "not_found", "%s", err);
        goto answered;
    } else if (rc) {
        fail(ans, 503, "unavailable", "the control plane failed: %s", err);
        goto answered;
    }
    struct wh_job *j = d->j;
    if (j->keylen == -1) {
        sl_warn(COMP, "request %s: job %s has no webhook secret (%s is not set)", req->rid,
                req->job_id, j->from);
        fail(ans, 404, "not_found", "job %s takes no webhooks", req->job_id);
        goto answered;
    }
    if (j->keylen < 0) {
        sl_warn(COMP, "request %s: the webhook secret of job %s (%s) is not whsec_<base64>",
                req->rid, req->job_id, j->from);
        fail(ans, 500, "internal", "the webhook secret of job %s is not valid", req->job_id);
        goto answered;
    }
    enum sl_webhook_verdict v =
        sl_webhook_verify(j->key, (size_t)j->keylen, req->id, req->timestamp, req->signature,
                          req->body ? req->body : "", req->len, (int64_t)time(NULL));
    if (v != SL_WEBHOOK_OK) {
        fail(ans, 401, "unauthorized", "%s", sl_webhook_verdict_str(v));
        goto answered;
    }
    if (!j->job) {
        fail(ans, 503, "unavailable", "cannot load job %s version %u: %s", req->job_id, j->version,
             j->err);
        goto answered;
    }
    /* the records, checked and built before anything is recorded */
    d->ndjson = is_ndjson(req->content_type, req->body ? req->body : "", req->len);
    rc = build_records(wh, req, d->ndjson, j, &d->b, &d->stats, err, errsz);
    if (rc < 0 && rc != SL_ERR_NOMEM && rc != SL_ERR_IO) {
        fail(ans, 400, "invalid_json", "the body is not %s: %s",
             d->ndjson ? "NDJSON objects" : "a JSON object or an array of objects", err);
        goto answered;
    } else if (rc) {
        fail(ans, 500, "internal", "%s", err);
        goto answered;
    }
    snprintf(d->rkey, sizeof(d->rkey), "sluice:webhook:%s:%s", req->job_id, req->id);
    *out = d;
    return 1;
answered:
    delivery_free(d);
    return 0;
}

void sl_webhook_go(struct sl_webhook *wh, struct sl_webhook_delivery *d)
{
    pthread_mutex_lock(&wh->q_mu);
    if (wh->q_stop) {
        pthread_mutex_unlock(&wh->q_mu);
        fail(d->ans, 503, "unavailable", "the gateway is stopping");
        delivery_answer(d);
        return;
    }
    *wh->q_tail = d;
    wh->q_tail = &d->next;
    if (wh->q_idle)
        pthread_cond_signal(&wh->q_cv);
    pthread_mutex_unlock(&wh->q_mu);
}
