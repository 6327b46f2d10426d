/*
 * The webhook endpoint (webhook.h, docs/api.md "Webhooks").
 *
 * A delivery is checked in the order that costs an unsigned sender least:
 * headers (400), the job and its secret (404), the signature and its
 * timestamp (401, webhook_sig.h), the body's records (400: read twice by
 * the JSON reader, once to check and count before a run exists, once to
 * build the messages), the replay window (Redis SET NX: a webhook-id seen
 * before is answered 200 with the first delivery's run, 503 while that one
 * is still in flight), then the run is
 * queued in the control plane (trigger "webhook") and FETCHED, the records
 * and SEALED go to Kafka on the gateway's bus; the answer waits for Kafka's
 * acknowledgement. When Kafka cannot take them the run is failed, the
 * webhook-id forgotten (so that the sender's retry is processed) and the
 * answer is 503 with Retry-After.
 *
 * Records are built as the parser builds them (services/parser/parser.c):
 * source fields flattened by the JSON reader, rows 1..n, a reader's problem
 * as a "_row" format problem, keyed by the target key mapped from the row.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
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
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/util.h"
#include "sluice/webhook_sig.h"
#include "webhook.h"

#define COMP            "gateway"
#define REPLAY_TTL_S    600
#define KAFKA_WAIT_MS   5000
#define RETRY_AFTER_S   5
#define REDIS_TIMEOUT_S 2

struct sl_webhook {
    struct sl_webhook_deps deps;
    char *redis_url;
    pthread_mutex_t mu; /* the Redis connection, made again after a failure */
    redisContext *rc;
};

struct sl_webhook *sl_webhook_new(const char *redis_url, const struct sl_webhook_deps *deps)
{
    struct sl_webhook *wh = calloc(1, sizeof(*wh));
    if (!wh)
        return NULL;
    wh->deps = *deps;
    pthread_mutex_init(&wh->mu, NULL);
    if (!(wh->redis_url = strdup(redis_url ? redis_url : "redis://127.0.0.1:6379/0"))) {
        sl_webhook_destroy(wh);
        return NULL;
    }
    return wh;
}

void sl_webhook_destroy(struct sl_webhook *wh)
{
    if (!wh)
        return;
    if (wh->rc)
        redisFree(wh->rc);
    pthread_mutex_destroy(&wh->mu);
    free(wh->redis_url);
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
    const char *run_id, *job_id;
    uint32_t version;
    const struct sl_job *job; /* NULL: count only (the first pass) */
    uint64_t rows;
    struct sl_msg **msgs;
    size_t nmsgs, cap;
    struct sl_names *names;
    const char **vals; /* job->nrefs */
    const char *hash_key;
    /* the fields the mapping does not read, for the seal (as the parser's) */
    char **unmapped;
    size_t nunmapped;
};

/* Unmapped field names a seal lists, as the parser's MAX_UNMAPPED. */
#define MAX_UNMAPPED 500

/* Notes the names of a record that the mapping does not read. */
static int note_unmapped(struct build *b, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (sl_job_reads_column(b->job, names[i]))
            continue;
        size_t k = 0;
        while (k < b->nunmapped && strcmp(b->unmapped[k], names[i]))
            k++;
        if (k < b->nunmapped || b->nunmapped == MAX_UNMAPPED)
            continue;
        if (!b->unmapped && !(b->unmapped = calloc(MAX_UNMAPPED, sizeof(char *))))
            return SL_ERR_NOMEM;
        if (!(b->unmapped[b->nunmapped] = strdup(names[i])))
            return SL_ERR_NOMEM;
        b->nunmapped++;
    }
    return 0;
}

/* Keys m by the job's key attributes mapped from the row, as the parser's
 * set_key() does (no key when one does not map: any partition will do). */
static int set_key(struct build *b, const struct sl_row *row, struct sl_msg *m)
{
    const struct sl_job *job = b->job;
    for (size_t k = 0; k < job->nrefs; k++) {
        int c = sl_column_find(job->refs[k].name, row->names, row->n);
        b->vals[k] = c >= 0 && (size_t)c < row->n && row->values[c] && row->values[c][0]
                         ? row->values[c]
                         : NULL;
    }
    struct sl_eval_ctx ctx = {
        .job = job,
        .hash_key = b->hash_key,
        .hash_key_len = b->hash_key ? strlen(b->hash_key) : 0,
        .arena = &m->arena,
    };
    struct sl_buf key = SL_BUF_INIT;
    int rc = 0;
    for (size_t k = 0; k < job->nkey && rc == 0; k++) {
        const struct sl_attr *a = &job->attrs[job->key_idx[k]];
        const char *v = NULL, *msg = NULL;
        if (a->map && sl_template_eval(a->map, b->vals, &ctx, &v, &msg) != 0)
            v = NULL;
        if (v && v[0])
            v = sl_type_key_value(a, v, job->tz, &m->arena);
        if (!v || !v[0]) {
            sl_buf_cleanup(&key);
            return 0;
        }
        if ((k && sl_buf_putc(&key, SL_KEY_SEP)) || sl_buf_puts(&key, v))
            rc = SL_ERR_NOMEM;
    }
    if (rc == 0 && !(m->key = sl_arena_strndup(&m->arena, key.data, key.len)))
        rc = SL_ERR_NOMEM;
    sl_buf_cleanup(&key);
    return rc;
}

static int on_row(void *ud, const struct sl_row *row)
{
    struct build *b = ud;
    b->rows++;
    if (!b->job)
        return 0;
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, b->run_id, b->job_id, b->version);
    if (!m)
        return SL_ERR_NOMEM;
    m->u.rec.row = row->row;
    bool same = b->names && b->names->n == row->n;
    for (size_t i = 0; same && i < row->n; i++)
        same = !strcmp(b->names->names[i], row->names[i]);
    if (!same) {
        sl_names_unref(b->names);
        if (!(b->names = sl_names_new(row->names, row->n)) || note_unmapped(b, row->names, row->n))
            goto nomem;
    }
    if (sl_msg_set_src_row(m, b->names, row->values, row->lens, row->n) ||
        (row->error && sl_msg_add_problem(m, "_row", "format", row->error, NULL)) ||
        (b->job->nkey && set_key(b, row, m)))
        goto nomem;
    if (b->nmsgs == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct sl_msg **v = realloc(b->msgs, cap * sizeof(*v));
        if (!v)
            goto nomem;
        b->msgs = v;
        b->cap = cap;
    }
    b->msgs[b->nmsgs++] = m;
    return 0;
nomem:
    sl_msg_unref(m);
    return SL_ERR_NOMEM;
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

/* Sends FETCHED, the records and SEALED, and waits for Kafka's
 * acknowledgement. 0, or an sl_err with errbuf set. Takes the records. */
static int send_run(struct sl_webhook *wh, struct build *b, const char *sha256, size_t bytes,
                    const struct sl_reader_stats *stats, const char *source, char *errbuf,
                    size_t errsz)
{
    struct sl_msg *fetched = run_event(b->run_id, b->job_id, b->version, SL_EV_FETCHED);
    struct sl_msg *sealed = run_event(b->run_id, b->job_id, b->version, SL_EV_SEALED);
    size_t next = 0;
    int rc = 0;
    if (!fetched || !sealed) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(fetched->u.ev.sha256, sha256, 65);
    fetched->u.ev.bytes = bytes;
    fetched->u.ev.source_name = sl_arena_strdup(&fetched->arena, source);
    sealed->u.ev.record_count = b->rows;
    sealed->u.ev.counts.read = b->rows;
    sealed->u.ev.counts.bytes = stats->bytes;
    sealed->u.ev.encoding = stats->encoding;
    if (b->nunmapped) {
        if (!(sealed->u.ev.unmapped =
                  sl_arena_alloc(&sealed->arena, b->nunmapped * sizeof(char *)))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < b->nunmapped; i++)
            sealed->u.ev.unmapped[i] = sl_arena_strdup(&sealed->arena, b->unmapped[i]);
        sealed->u.ev.nunmapped = (uint32_t)b->nunmapped;
    }
    struct sl_bus *bus = wh->deps.bus_lock(wh->deps.gw, errbuf, errsz);
    if (!bus) {
        rc = SL_ERR_RETRY;
        goto out;
    }
    rc = sl_bus_send(bus, SL_TOPIC_RUNS, fetched);
    fetched = NULL;
    for (; rc == 0 && next < b->nmsgs; next++) {
        rc = sl_bus_send(bus, SL_TOPIC_RAW, b->msgs[next]);
        b->msgs[next] = NULL;
    }
    if (rc == 0) {
        rc = sl_bus_send(bus, SL_TOPIC_RUNS, sealed);
        sealed = NULL;
    }
    if (rc == 0)
        rc = bus->ops->flush(bus, KAFKA_WAIT_MS);
    if (rc)
        sl_seterr(errbuf, errsz, rc, "kafka did not acknowledge the records: %s", sl_err_str(rc));
    wh->deps.bus_unlock(wh->deps.gw, rc == SL_ERR_FATAL);
out:
    sl_msg_unref(fetched);
    sl_msg_unref(sealed);
    return rc;
}

static void build_cleanup(struct build *b)
{
    for (size_t i = 0; i < b->nmsgs; i++)
        sl_msg_unref(b->msgs[i]);
    free(b->msgs);
    free(b->vals);
    sl_names_unref(b->names);
    for (size_t i = 0; i < b->nunmapped; i++)
        free(b->unmapped[i]);
    free(b->unmapped);
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

    char err[1024] = "", from[300] = "", run_id[37] = "", rkey[600];
    PGconn *c = NULL;
    json_t *meta = NULL;
    char *doc = NULL, *secret = NULL;
    struct sl_job *job = NULL;
    struct build b = {.job_id = req->job_id};
    bool claimed = false;
    redisReply *r = NULL;
    unsigned char key[SL_WEBHOOK_KEY_MAX];
    int keylen = -1;

    if (!(c = wh->deps.db_get(wh->deps.gw, err, sizeof(err)))) {
        fail(ans, 503, "unavailable", "the control plane failed: %s", err);
        goto out;
    }
    int rc = sl_api_job_get(c, req->job_id, 0, &meta, &doc, err, sizeof(err));
    if (rc == SL_ERR_NOTFOUND) {
        fail(ans, 404, "not_found", "%s", err);
        goto out;
    } else if (rc) {
        fail(ans, 503, "unavailable", "the control plane failed: %s", err);
        goto out;
    }
    if (!(secret = job_secret(req->job_id, doc, from, sizeof(from)))) {
        sl_warn(COMP, "request %s: job %s has no webhook secret (%s is not set)", req->rid,
                req->job_id, from);
        fail(ans, 404, "not_found", "job %s takes no webhooks", req->job_id);
        goto out;
    }
    if ((keylen = sl_webhook_key_decode(secret, key)) < 0) {
        sl_warn(COMP, "request %s: the webhook secret of job %s (%s) is not whsec_<base64>",
                req->rid, req->job_id, from);
        fail(ans, 500, "internal", "the webhook secret of job %s is not valid", req->job_id);
        goto out;
    }
    enum sl_webhook_verdict v =
        sl_webhook_verify(key, (size_t)keylen, req->id, req->timestamp, req->signature,
                          req->body ? req->body : "", req->len, (int64_t)time(NULL));
    if (v != SL_WEBHOOK_OK) {
        fail(ans, 401, "unauthorized", "%s", sl_webhook_verdict_str(v));
        goto out;
    }

    /* the records, checked and counted before anything is recorded */
    bool ndjson = is_ndjson(req->content_type, req->body ? req->body : "", req->len);
    struct sl_reader_stats stats = {0};
    rc = read_records(req->body ? req->body : "", req->len, ndjson, &b, &stats, err, sizeof(err));
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
    r = redis_cmd(wh, err, sizeof(err), "SET %s %s NX EX %d", rkey, "pending", REPLAY_TTL_S);
    if (!r) {
        fail(ans, 503, "unavailable", "cannot check webhook-id for a replay: %s", err);
        goto out;
    }
    bool fresh = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!fresh) {
        r = redis_cmd(wh, err, sizeof(err), "GET %s", rkey);
        const char *first = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;
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
        freeReplyObject(r);
        r = NULL;
        goto out;
    }
    claimed = true;

    /* the run, recorded like run now's, and its job version */
    uint32_t version = 0;
    if ((rc = sl_api_run_queue(c, req->job_id, "webhook", run_id, &version, err, sizeof(err)))) {
        fail(ans, rc == SL_ERR_NOTFOUND ? 404 : 503,
             rc == SL_ERR_NOTFOUND ? "not_found" : "unavailable", "%s", err);
        run_id[0] = '\0';
        goto out;
    }
    json_decref(meta);
    free(doc);
    meta = NULL;
    doc = NULL;
    if ((rc = sl_api_job_get(c, req->job_id, version, &meta, &doc, err, sizeof(err))) ||
        !(job = sl_job_load_json(doc, strlen(doc), NULL, err, sizeof(err)))) {
        fail(ans, 503, "unavailable", "cannot load job %s version %u: %s", req->job_id, version,
             err);
        goto out;
    }
    b = (struct build){.run_id = run_id,
                       .job_id = req->job_id,
                       .version = version,
                       .job = job,
                       .hash_key = getenv("SLUICE_HASH_KEY")};
    if (job->nrefs && !(b.vals = calloc(job->nrefs, sizeof(*b.vals)))) {
        fail(ans, 500, "internal", "out of memory");
        goto out;
    }
    memset(&stats, 0, sizeof(stats));
    if ((rc = read_records(req->body ? req->body : "", req->len, ndjson, &b, &stats, err,
                           sizeof(err)))) {
        fail(ans, 500, "internal", "%s", err);
        goto out;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    char sha[65], source[300];
    SHA256((const unsigned char *)(req->body ? req->body : ""), req->len, md);
    sl_hex(md, sizeof(md), sha);
    snprintf(source, sizeof(source), "webhook %s", req->id);
    if ((rc = send_run(wh, &b, sha, req->len, &stats, source, err, sizeof(err)))) {
        fail(ans, 503, "unavailable", "cannot take the records of run %s: %s", run_id, err);
        goto out;
    }
    r = redis_cmd(wh, err, sizeof(err), "SET %s %s XX KEEPTTL", rkey, run_id);
    freeReplyObject(r);
    sl_info(COMP, "request %s: webhook %s of job %s version %u: run %s, %llu records", req->rid,
            req->id, req->job_id, version, run_id, (unsigned long long)b.rows);
    ans->status = 202;
    ans->body = json_pack("{s:s,s:I,s:s,s:i}", "run_id", run_id, "records", (json_int_t)b.rows,
                          "job_id", req->job_id, "job_version", (int)version);
    run_id[0] = '\0'; /* not failed below */
out:
    if (ans->status >= 500 && claimed) { /* the sender's retry must be processed */
        r = redis_cmd(wh, err, sizeof(err), "DEL %s", rkey);
        freeReplyObject(r);
    }
    if (ans->status >= 400 && run_id[0] && c) {
        char e2[512];
        if (sl_api_run_fail(c, run_id, ans->message, e2, sizeof(e2)))
            sl_warn(COMP, "run %s: %s", run_id, e2);
    }
    build_cleanup(&b);
    sl_job_destroy(job);
    json_decref(meta);
    free(doc);
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    OPENSSL_cleanse(key, sizeof(key));
    wh->deps.db_put(wh->deps.gw, c);
}
