/*
 * The gateway's HTTP API (gateway.h, docs/api.md).
 *
 * libmicrohttpd calls on_request() once when a request's headers are in,
 * then once per piece of body, then once more at the end. The first call
 * routes the request, checks its bearer token and its announced size and
 * answers at once when any of them fails (401/403/404/405/413), so a
 * refused body is never read; the last call parses the body and runs the
 * handler. Every answer goes through reply() (JSON, X-Request-Id) and every
 * error through reply_error() (one shape: {"error": {"code", "message",
 * "field", "request_id"}}); on_completed() logs one line per request with
 * its id, never a header or a body.
 *
 * PostgreSQL connections come from a small pool (libpq connections are not
 * shared between threads); run-now tickets go through one Kafka bus.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <openssl/rand.h>

#include "gateway.h"
#include "webhook.h"
#include "sluice/api_store.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/msg.h"
#include "sluice/pg.h"
#include "sluice/report.h"
#include "sluice/run_report.h"
#include "sluice/spares.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define COMP             "gateway"
#define POOL_MAX         16
#define ID_MAX           256
#define LIST_DEFAULT     100
#define LIST_MAX         1000
#define REJECTED_PAGE    500
#define TICKET_WAIT_MS   10000
#define PROBE_TIMEOUT_MS 3000
#define DRAIN_MS         5000  /* stopping: the requests in progress may finish */
#define WORKERS          16    /* threads answering the API's requests */
#define HTTP_THREADS     2     /* libmicrohttpd's threads (poll each) */
#define RESUME_WAIT_MS   30000 /* stopping: the suspended connections' answers */
/* A connection's memory in MHD: its request line and headers, the read
 * buffer (a body is handed over in pieces) and the answer's headers. MHD
 * clears it before each request of a kept-alive connection, so half its
 * default of 32 KiB: a header block of 8 KiB (nginx's default limit) fits,
 * one beyond about 12 KiB is answered 431 (docs/api.md). */
#define CONN_MEMORY 16384

struct sl_gateway {
    struct MHD_Daemon *d;
    int port;
    atomic_int active; /* requests begun and not completed */
    char *postgres_url, *redis_url;
    char *brokers, *prefix, *kafka_config;
    size_t max_job, max_body;

    pthread_mutex_t pool_mu; /* idle control-plane connections */
    PGconn *idle[POOL_MAX];
    int nidle;

    pthread_mutex_t bus_mu; /* the run-now tickets' bus, made again after a failure */
    struct sl_bus *bus;

    pthread_mutex_t probe_mu; /* /readyz's Kafka client */
    rd_kafka_t *probe;

    struct sl_webhook *webhook; /* POST /v1/jobs/{id}/webhook (webhook.c) */

    /* the workers: every request but a webhook's is answered on one of
     * them, so that a slow PostgreSQL or Kafka never holds up the HTTP
     * threads (see on_request) */
    pthread_t workers[WORKERS];
    int nworkers;
    pthread_mutex_t w_mu;
    pthread_cond_t w_cv;
    struct req *w_head, **w_tail;
    bool w_stop;
    atomic_int suspended; /* connections suspended: resumed before MHD stops */

    char *blob_dir;        /* GET /v1/runs/{id}/source; NULL: none */
    pthread_mutex_t st_mu; /* the Redis of live progress, made on first use */
    struct sl_state *st;

    /* finished requests kept for the next ones (req_new, req_free): a
     * struct req is ~2.5 KiB (spares.h; malloc_consolidate was ~3 % of the
     * gateway under the webhook benchmark) */
    struct sl_spares spares;

    /* /metrics of every request (on_completed), each made at its first
     * use: requests by status class 0xx..5xx, their latency */
    struct sl_counter *_Atomic m_requests[6];
    struct sl_histogram *_Atomic m_seconds;
};

enum route {
    R_NONE = 0,
    R_HEALTHZ,
    R_READYZ,
    R_TOKENS,
    R_TOKEN,
    R_JOBS,
    R_JOB,
    R_JOB_DUPLICATE,
    R_JOB_ENABLE,
    R_JOB_DISABLE,
    R_JOB_RUNS,
    R_RUN,
    R_RUN_REJECTED,
    R_RUN_SOURCE,
    R_RUN_REPORT,
    R_JOB_WEBHOOK,
    R_JOB_TRIGGER,
};

/* One request, from its headers to its log line. */
struct req {
    char rid[65];     /* request id */
    char method[16];  /* for the log line */
    char path[512];   /* the path without the query: never a secret */
    char who[128];    /* the token's name, "-" without one */
    char arg[ID_MAX]; /* the job id, run id or token name of the path */
    enum route route;
    const char *allow;     /* the methods of the route, for a 405 */
    enum sl_api_role role; /* of the token */
    int status;            /* of the answer queued */
    int retry_after;       /* seconds of a Retry-After header; 0: none */
    bool answered;
    size_t limit; /* body bytes allowed */
    bool too_large;
    char *body;
    size_t len, cap;
    struct timespec t0;
    /* answered in the background (see on_request): the connection is
     * suspended from handing the request over until it is resumed */
    struct MHD_Connection *conn;
    struct req *wnext;     /* in the workers' queue */
    enum sl_api_role need; /* checked by the worker */
    bool offloaded;        /* a worker answers: queue() keeps the response */
    atomic_bool ready;     /* the background work is done */
    enum MHD_Result wrc;   /* the worker's dispatch() */
    struct MHD_Response *resp;
    bool counted;    /* in gw->suspended */
    bool *handed_on; /* the worker's: another thread answers rq now */
    bool webhook;    /* the webhook engine answers: wans */
    struct sl_webhook_answer wans;
};

/* ---- small helpers ------------------------------------------------------ */

#define SPARE_MAX  64          /* finished requests kept for reuse */
#define SPARE_BODY (64 * 1024) /* a body buffer kept with one, at most */

/* A zeroed request: a spare one when there is one (its body buffer kept
 * when small), else a new one. NULL: out of memory. */
static struct req *req_new(struct sl_gateway *gw)
{
    struct req *rq = sl_spares_get(&gw->spares);
    if (!rq)
        return calloc(1, sizeof(*rq));
    char *body = rq->body;
    size_t cap = rq->cap;
    memset(rq, 0, sizeof(*rq));
    rq->body = body;
    rq->cap = cap;
    if (body)
        body[0] = '\0';
    return rq;
}

static void req_drop(void *p)
{
    struct req *rq = p;
    free(rq->body);
    free(rq);
}

/* Keeps a finished request (its other resources freed) for req_new, or
 * frees it. */
static void req_free(struct sl_gateway *gw, struct req *rq)
{
    if (rq->cap > SPARE_BODY) {
        free(rq->body);
        rq->body = NULL;
        rq->cap = 0;
    }
    if (!sl_spares_put(&gw->spares, rq))
        req_drop(rq);
}

/* A request's id (X-Request-Id when the client gave none): 32 hex digits of
 * sl_random_key(), so that a request costs no system call and ids tell
 * nothing of the request count. */
static void request_id(char out[33])
{
    uint8_t id[16];
    sl_random_key(id, out);
    sl_hex(id, sizeof(id), out);
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of n bytes into out (4n/3+2 bytes at least). */
static void b64url_encode(const unsigned char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0';
}

/* Decodes base64url text into out[outsz] as a string; false when it is not
 * base64url or does not fit. */
static bool b64url_decode(const char *s, char *out, size_t outsz)
{
    size_t o = 0, bits = 0;
    uint32_t acc = 0;
    for (; *s; s++) {
        const char *k = strchr(B64URL, *s);
        if (!k)
            return false;
        acc = (acc << 6) | (uint32_t)(k - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= outsz)
                return false;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    return strlen(out) == o;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Whether s is 1..max characters of [A-Za-z0-9_.:-] (request ids, names). */
static bool plain_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("_.:-", s[i]))
            return false;
    return true;
}

/* ---- the connection pool ------------------------------------------------ */

static PGconn *pool_get(struct sl_gateway *gw, char *errbuf, size_t errsz)
{
    PGconn *c = NULL;
    pthread_mutex_lock(&gw->pool_mu);
    if (gw->nidle > 0)
        c = gw->idle[--gw->nidle];
    pthread_mutex_unlock(&gw->pool_mu);
    if (c && PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        c = NULL;
    }
    if (!c)
        c = sl_pg_connect(gw->postgres_url, 5, errbuf, errsz);
    return c;
}

/* Gives c back (or closes it when it is broken or the pool is full). */
static void pool_put(struct sl_gateway *gw, PGconn *c)
{
    if (!c)
        return;
    if (PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE) {
        PQfinish(c);
        return;
    }
    pthread_mutex_lock(&gw->pool_mu);
    if (gw->nidle < POOL_MAX) {
        gw->idle[gw->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&gw->pool_mu);
    PQfinish(c);
}

/* ---- answers ------------------------------------------------------------ */

/* Queues resp with the request id and status; takes resp over. */
static enum MHD_Result queue(struct MHD_Connection *conn, struct req *rq, int status,
                             struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "X-Request-Id", rq->rid);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (status == 405 && rq->allow)
        MHD_add_response_header(resp, "Allow", rq->allow);
    if (status == 401 && rq->route != R_JOB_WEBHOOK) /* webhooks: a signature, no token */
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (rq->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", rq->retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    rq->status = status;
    rq->answered = true;
    if (rq->offloaded) { /* a worker's: queued once the connection is resumed */
        if (rq->resp)
            MHD_destroy_response(rq->resp);
        rq->resp = resp;
        return MHD_YES;
    }
    enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Queues text (malloc'd JSON, or NULL for no body; taken) as the answer. */
static enum MHD_Result reply_text(struct MHD_Connection *conn, struct req *rq, int status,
                                  char *text, const char *location)
{
    size_t len = text ? strlen(text) : 0;
    if (text) { /* one line: curl and shells like a final newline */
        char *t = realloc(text, len + 2);
        if (t) {
            text = t;
            text[len++] = '\n';
            text[len] = '\0';
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, text ? text : (char *)"", text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    if (text)
        MHD_add_response_header(resp, "Content-Type", "application/json");
    if (location)
        MHD_add_response_header(resp, "Location", location);
    return queue(conn, rq, status, resp);
}

/* Answers status with body as JSON (NULL: no body); takes body over. */
static enum MHD_Result reply(struct MHD_Connection *conn, struct req *rq, int status, json_t *body,
                             const char *location)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return reply_text(conn, rq, status, text, location);
}

/* The one error shape of the API; field may be NULL. */
static enum MHD_Result __attribute__((format(printf, 6, 7)))
reply_error(struct MHD_Connection *conn, struct req *rq, int status, const char *code,
            const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s,s:s}", "code", code, "message", msg);
    if (e && field)
        json_object_set_new(e, "field", json_string(field));
    if (e)
        json_object_set_new(e, "request_id", json_string(rq->rid));
    if (status >= 500)
        sl_warn(COMP, "request %s: %s %s: %s", rq->rid, rq->method, rq->path, msg);
    return reply(conn, rq, status, e ? json_pack("{s:o}", "error", e) : NULL, NULL);
}

/* A failure of the control plane (sl_err rc, message err) as an answer:
 * 404 for what does not exist, 409 for a refusal, 503 for the rest. */
static enum MHD_Result reply_store_error(struct MHD_Connection *conn, struct req *rq, int rc,
                                         const char *err, const char *conflict_code)
{
    if (rc == SL_ERR_NOTFOUND)
        return reply_error(conn, rq, 404, "not_found", NULL, "%s", err);
    if (rc == SL_ERR_LIMIT)
        return reply_error(conn, rq, 409, conflict_code, NULL, "%s", err);
    if (rc == SL_ERR_NOMEM)
        return reply_error(conn, rq, 500, "internal", NULL, "out of memory");
    return reply_error(conn, rq, 503, "unavailable", NULL, "the control plane failed: %s", err);
}

/* ---- routes ------------------------------------------------------------- */

/* Splits path into at most 5 segments; their number, or -1 when longer. */
static int split_path(const char *path, char seg[5][ID_MAX])
{
    int n = 0;
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n == 5 || len >= ID_MAX)
            return -1;
        memcpy(seg[n], p, len);
        seg[n++][len] = '\0';
        p += len;
        while (*p == '/')
            p++;
    }
    return n;
}

static enum route match_route(const char *path, char arg[ID_MAX])
{
    char s[5][ID_MAX];
    int n = split_path(path, s);
    arg[0] = '\0';
    if (n == 1 && !strcmp(s[0], "healthz"))
        return R_HEALTHZ;
    if (n == 1 && !strcmp(s[0], "readyz"))
        return R_READYZ;
    if (n < 2 || strcmp(s[0], "v1"))
        return R_NONE;
    if (n >= 3)
        memcpy(arg, s[2], ID_MAX);
    if (!strcmp(s[1], "tokens"))
        return n == 2 ? R_TOKENS : n == 3 ? R_TOKEN : R_NONE;
    if (!strcmp(s[1], "runs"))
        return n == 3                                ? R_RUN
               : n == 4 && !strcmp(s[3], "rejected") ? R_RUN_REJECTED
               : n == 4 && !strcmp(s[3], "source")   ? R_RUN_SOURCE
               : n == 4 && !strcmp(s[3], "report")   ? R_RUN_REPORT
                                                     : R_NONE;
    if (strcmp(s[1], "jobs"))
        return R_NONE;
    if (n == 2)
        return R_JOBS;
    if (n == 3)
        return R_JOB;
    if (n != 4)
        return R_NONE;
    if (!strcmp(s[3], "duplicate"))
        return R_JOB_DUPLICATE;
    if (!strcmp(s[3], "enable"))
        return R_JOB_ENABLE;
    if (!strcmp(s[3], "disable"))
        return R_JOB_DISABLE;
    if (!strcmp(s[3], "runs"))
        return R_JOB_RUNS;
    if (!strcmp(s[3], "webhook"))
        return R_JOB_WEBHOOK;
    if (!strcmp(s[3], "trigger"))
        return R_JOB_TRIGGER;
    return R_NONE;
}

/* What method on route needs: the role (SL_ROLE_NONE: no token) and the
 * body limit. False, with the methods allowed in allow, when the route has
 * no such method. */
static bool route_needs(const struct sl_gateway *gw, enum route r, const char *m,
                        enum sl_api_role *role, size_t *limit, const char **allow)
{
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    *limit = gw->max_body;
    *role = SL_ROLE_VIEWER;
    switch (r) {
    case R_HEALTHZ:
    case R_READYZ:
        *role = SL_ROLE_NONE;
        *allow = "GET, HEAD";
        return get;
    case R_TOKENS:
        *role = SL_ROLE_ADMIN;
        *allow = "GET, POST";
        return get || post;
    case R_TOKEN:
        *role = SL_ROLE_ADMIN;
        *allow = "DELETE";
        return !strcmp(m, "DELETE");
    case R_JOBS:
        *allow = "GET, POST";
        if (post) {
            *role = SL_ROLE_ADMIN;
            *limit = gw->max_job;
        }
        return get || post;
    case R_JOB:
        *allow = "GET, PUT, DELETE";
        if (!strcmp(m, "PUT") || !strcmp(m, "DELETE")) {
            *role = SL_ROLE_ADMIN;
            *limit = gw->max_job;
            return true;
        }
        return get;
    case R_JOB_DUPLICATE:
    case R_JOB_ENABLE:
    case R_JOB_DISABLE:
        *role = SL_ROLE_ADMIN;
        *allow = "POST";
        return post;
    case R_JOB_RUNS:
        *allow = "GET, POST";
        if (post)
            *role = SL_ROLE_OPERATOR;
        return get || post;
    case R_RUN:
    case R_RUN_REJECTED:
    case R_RUN_SOURCE:
    case R_RUN_REPORT:
        *allow = "GET";
        return get;
    case R_JOB_TRIGGER:
        *role = SL_ROLE_TRIGGER;
        *allow = "POST";
        return post;
    case R_JOB_WEBHOOK: /* authenticated by its signature (webhook.c) */
        *role = SL_ROLE_NONE;
        *allow = "POST";
        *limit = SL_WEBHOOK_MAX_BODY;
        return post;
    default:
        return false;
    }
}

/* ---- access ------------------------------------------------------------- */

/* Checks the bearer token against need; answers 401/403/503 and returns
 * false when the request may not go on. */
static bool authorize(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq,
                      enum sl_api_role need)
{
    if (need == SL_ROLE_NONE)
        return true;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    const char *tok = NULL;
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        tok = h + 7;
        while (*tok == ' ')
            tok++;
    }
    if (!tok || !*tok) {
        reply_error(conn, rq, 401, "unauthorized", NULL,
                    "this request needs a bearer token (Authorization: Bearer TOKEN)");
        return false;
    }
    char sha[65], err[512] = "";
    sl_api_token_hash(tok, sha);
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_token_check(c, sha, &rq->role, rq->who, sizeof(rq->who), err, sizeof(err))
               : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc) {
        reply_error(conn, rq, 503, "unavailable", NULL, "cannot check the token: %s", err);
        return false;
    }
    if (rq->role == SL_ROLE_NONE) {
        snprintf(rq->who, sizeof(rq->who), "-");
        reply_error(conn, rq, 401, "unauthorized", NULL, "the bearer token is not valid");
        return false;
    }
    /* a trigger token may trigger and nothing else; operator and admin may
     * trigger too */
    bool ok = need == SL_ROLE_TRIGGER
                  ? rq->role == SL_ROLE_TRIGGER || rq->role == SL_ROLE_OPERATOR ||
                        rq->role == SL_ROLE_ADMIN
                  : rq->role != SL_ROLE_TRIGGER && rq->role >= need;
    if (!ok) {
        reply_error(conn, rq, 403, "forbidden", NULL,
                    "this request needs the role %s; the token '%s' has the role %s",
                    need == SL_ROLE_TRIGGER ? "trigger, operator or admin" : sl_api_role_name(need),
                    rq->who, sl_api_role_name(rq->role));
        return false;
    }
    return true;
}

/* ---- request bodies and parameters -------------------------------------- */

/* The body as a JSON object; NULL after answering 400. An empty body is
 * an empty object when empty_ok. */
static json_t *body_object(struct MHD_Connection *conn, struct req *rq, bool empty_ok)
{
    if (rq->len == 0 && empty_ok)
        return json_object();
    json_error_t je;
    json_t *v = json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
    if (!v) {
        reply_error(conn, rq, 400, "invalid_json", NULL,
                    "the body is not JSON: line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        reply_error(conn, rq, 400, "invalid_json", NULL, "the body must be a JSON object");
        return NULL;
    }
    return v;
}

/* Refuses (400) a member of o that is not in names (NULL-terminated). */
static bool only_fields(struct MHD_Connection *conn, struct req *rq, json_t *o,
                        const char *const *names)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        size_t i = 0;
        while (names[i] && strcmp(names[i], k))
            i++;
        if (!names[i]) {
            reply_error(conn, rq, 400, "invalid_request", k, "%s: unknown field", k);
            return false;
        }
    }
    return true;
}

static const char *query(struct MHD_Connection *conn, const char *name)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    return v && v[0] ? v : NULL;
}

/* ?limit= as 1..LIST_MAX (default LIST_DEFAULT); -1 after answering 400. */
static int query_limit(struct MHD_Connection *conn, struct req *rq)
{
    const char *v = query(conn, "limit");
    if (!v)
        return LIST_DEFAULT;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < 1 || n > LIST_MAX) {
        reply_error(conn, rq, 400, "invalid_parameter", "limit",
                    "limit: must be a number from 1 to %d", LIST_MAX);
        return -1;
    }
    return (int)n;
}

/* Whether s is an RFC 3339 date-time (2025-12-31T23:00:00Z, with optional
 * fraction and a numeric offset). */
static bool rfc3339(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10 ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
        return false;
    s += 11;
    if (sscanf(s, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
        return false;
    s += 8;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return false;
        while (isdigit((unsigned char)*s))
            s++;
    }
    if ((*s == 'Z' || *s == 'z') && s[1] == '\0') {
    } else if ((*s == '+' || *s == '-') && isdigit((unsigned char)s[1]) &&
               isdigit((unsigned char)s[2]) && s[3] == ':' && isdigit((unsigned char)s[4]) &&
               isdigit((unsigned char)s[5]) && s[6] == '\0') {
    } else {
        return false;
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return mo >= 1 && mo <= 12 && d >= 1 && d <= mdays[mo - 1] && h <= 23 && mi <= 59 && sec <= 60;
}

/* The field a job loader's message names ("target.attributes.x.type:
 * unknown type 'txt'" -> "target.attributes.x.type"), or NULL. */
static char *job_error_field(const char *msg, char *out, size_t outsz)
{
    const char *colon = strstr(msg, ": ");
    size_t n = colon ? (size_t)(colon - msg) : 0;
    if (n == 0 || n >= outsz || !strncmp(msg, "line ", 5))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (isspace((unsigned char)msg[i]))
            return NULL;
    memcpy(out, msg, n);
    out[n] = '\0';
    return out;
}

/* The body as a job (NULL after answering 400 invalid_job). */
static struct sl_job *body_job(struct MHD_Connection *conn, struct req *rq)
{
    char err[1024] = "", field[256];
    struct sl_job *job =
        sl_job_load_json(rq->body ? rq->body : "", rq->len, NULL, err, sizeof(err));
    if (!job)
        reply_error(conn, rq, 400, "invalid_job", job_error_field(err, field, sizeof(field)), "%s",
                    err[0] ? err : "the job is not valid");
    return job;
}

/* ---- handlers ----------------------------------------------------------- */

static enum MHD_Result h_healthz(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    return reply(conn, rq, 200, json_pack("{s:s}", "status", "ok"), NULL);
}

static void kafka_conf_set(rd_kafka_conf_t *kc, const char *k, const char *v)
{
    char e[256];
    if (rd_kafka_conf_set(kc, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK)
        sl_warn(COMP, "kafka property %s: %s", k, e);
}

/* The client of /readyz's Kafka check (made once): metadata requests only. */
static rd_kafka_t *probe_client(struct sl_gateway *gw)
{
    pthread_mutex_lock(&gw->probe_mu);
    if (!gw->probe) {
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        kafka_conf_set(kc, "bootstrap.servers", gw->brokers);
        kafka_conf_set(kc, "client.id", "sluice-gateway-probe");
        kafka_conf_set(kc, "log_level", "3");
        char *cfg = gw->kafka_config ? strdup(gw->kafka_config) : NULL, *save = NULL;
        for (char *kv = cfg ? strtok_r(cfg, ",", &save) : NULL; kv;
             kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            if (eq) {
                *eq = '\0';
                kafka_conf_set(kc, kv, eq + 1);
            }
        }
        free(cfg);
        char e[256];
        if (!(gw->probe = rd_kafka_new(RD_KAFKA_PRODUCER, kc, e, sizeof(e)))) {
            rd_kafka_conf_destroy(kc);
            sl_warn(COMP, "cannot make the kafka check's client: %s", e);
        }
    }
    rd_kafka_t *rk = gw->probe;
    pthread_mutex_unlock(&gw->probe_mu);
    return rk;
}

static enum MHD_Result h_readyz(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    char err[512] = "", why[1600] = "";
    json_t *checks = json_object();
    /* PostgreSQL: a statement on a pooled connection */
    PGconn *c = pool_get(gw, err, sizeof(err));
    if (c &&
        sl_pg_exec(c, "check the control plane", "SELECT 1", 0, NULL, NULL, err, sizeof(err)) == 0)
        json_object_set_new(checks, "postgres", json_string("ok"));
    else {
        json_object_set_new(checks, "postgres", json_string(err));
        snprintf(why + strlen(why), sizeof(why) - strlen(why), "postgres: %s; ", err);
    }
    pool_put(gw, c);
    /* Kafka: the cluster's metadata (its brokers) */
    rd_kafka_t *rk = probe_client(gw);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr =
        rk ? rd_kafka_metadata(rk, 0, NULL, &md, PROBE_TIMEOUT_MS) : RD_KAFKA_RESP_ERR__FAIL;
    if (kerr == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0) {
        json_object_set_new(checks, "kafka", json_string("ok"));
    } else {
        snprintf(err, sizeof(err), "no broker of %s answered: %s", gw->brokers,
                 kerr ? rd_kafka_err2str(kerr) : "no brokers");
        json_object_set_new(checks, "kafka", json_string(err));
        snprintf(why + strlen(why), sizeof(why) - strlen(why), "kafka: %s; ", err);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    /* Redis: a connection (the store connects and fails fast) */
    struct sl_state *st = sl_state_redis_new(gw->redis_url, err, sizeof(err));
    if (st) {
        json_object_set_new(checks, "redis", json_string("ok"));
        sl_state_destroy(st);
    } else {
        json_object_set_new(checks, "redis", json_string(err));
        snprintf(why + strlen(why), sizeof(why) - strlen(why), "redis: %s; ", err);
    }
    if (!why[0])
        return reply(conn, rq, 200, json_pack("{s:s,s:o}", "status", "ready", "checks", checks),
                     NULL);
    why[strlen(why) - 2] = '\0';
    json_t *e =
        json_pack("{s:s,s:s,s:s}", "code", "not_ready", "message", why, "request_id", rq->rid);
    sl_warn(COMP, "request %s: not ready: %s", rq->rid, why);
    return reply(conn, rq, 503, json_pack("{s:o,s:o}", "error", e, "checks", checks), NULL);
}

/* Token names: [a-z][a-z0-9_.-]{0,63} (the bootstrap token's name,
 * SLUICE_ADMIN_TOKEN, can never be one). */
static bool token_name_ok(const char *name)
{
    if (!name || !plain_name(name, 64) || !islower((unsigned char)name[0]))
        return false;
    for (const char *p = name; *p; p++)
        if (isupper((unsigned char)*p) || *p == ':')
            return false;
    return true;
}

/* A token's "jobs": absent (NULL, every job) or an array of 1 to 1000 job
 * ids; false after answering 400. */
static bool token_jobs(struct MHD_Connection *conn, struct req *rq, json_t *jobs, bool trigger)
{
    if (!jobs)
        return true;
    if (!trigger) {
        reply_error(conn, rq, 400, "invalid_request", "jobs",
                    "jobs: only a token of the role trigger is limited to some jobs");
        return false;
    }
    size_t n = json_array_size(jobs);
    bool ok = json_is_array(jobs) && n >= 1 && n <= 1000;
    for (size_t i = 0; ok && i < n; i++) {
        const char *id = json_string_value(json_array_get(jobs, i));
        ok = id && plain_name(id, 128);
    }
    if (!ok)
        reply_error(conn, rq, 400, "invalid_request", "jobs",
                    "jobs: must be an array of 1 to 1000 job ids");
    return ok;
}

/* POST /v1/tokens {"name","role","jobs"}: the new token, shown once. */
static enum MHD_Result h_token_create(struct sl_gateway *gw, struct MHD_Connection *conn,
                                      struct req *rq)
{
    static const char *const fields[] = {"name", "role", "jobs", NULL};
    json_t *o = body_object(conn, rq, false);
    if (!o || !only_fields(conn, rq, o, fields)) {
        json_decref(o);
        return rq->answered ? MHD_YES : MHD_NO;
    }
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *rname = json_string_value(json_object_get(o, "role"));
    enum sl_api_role role = sl_api_role_parse(rname);
    enum MHD_Result r;
    if (!token_name_ok(name)) {
        r = reply_error(conn, rq, 400, "invalid_request", "name",
                        "name: required, 1 to 64 characters of a-z 0-9 _ . - starting "
                        "with a letter");
    } else if (role == SL_ROLE_NONE) {
        r = reply_error(conn, rq, 400, "invalid_request", "role",
                        "role: must be one of admin, operator, viewer, trigger");
    } else if (!token_jobs(conn, rq, json_object_get(o, "jobs"), role == SL_ROLE_TRIGGER)) {
        r = MHD_YES;
    } else {
        unsigned char raw[32];
        char token[64], secret[48], sha[65], err[512] = "";
        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            r = reply_error(conn, rq, 500, "internal", NULL, "no random bytes for a token");
            goto out;
        }
        b64url_encode(raw, sizeof(raw), secret);
        snprintf(token, sizeof(token), "sl_%s", secret);
        sl_api_token_hash(token, sha);
        PGconn *c = pool_get(gw, err, sizeof(err));
        json_t *jobs = json_object_get(o, "jobs");
        int rc =
            c ? sl_api_token_put(c, name, role, sha, jobs, false, err, sizeof(err)) : SL_ERR_RETRY;
        pool_put(gw, c);
        if (rc)
            r = reply_store_error(conn, rq, rc, err, "token_exists");
        else {
            sl_info(COMP, "request %s: token '%s' (%s) created", rq->rid, name,
                    sl_api_role_name(role));
            r = reply(conn, rq, 201,
                      json_pack("{s:s,s:s,s:O?,s:s}", "name", name, "role", sl_api_role_name(role),
                                "jobs", jobs, "token", token),
                      NULL);
        }
        OPENSSL_cleanse(raw, sizeof(raw));
        OPENSSL_cleanse(token, sizeof(token));
        OPENSSL_cleanse(secret, sizeof(secret));
    }
out:
    json_decref(o);
    return r;
}

static enum MHD_Result h_tokens_list(struct sl_gateway *gw, struct MHD_Connection *conn,
                                     struct req *rq)
{
    char err[512] = "";
    json_t *items = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_tokens_list(c, &items, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    return reply(conn, rq, 200, json_pack("{s:o}", "items", items), NULL);
}

static enum MHD_Result h_token_delete(struct sl_gateway *gw, struct MHD_Connection *conn,
                                      struct req *rq)
{
    char err[512] = "";
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_token_delete(c, rq->arg, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    return reply(conn, rq, 204, NULL, NULL);
}

/* Stores the checked job (text: the body) as its next version and answers
 * 201 (a new job), 200 (a new version, or the same document again). */
static enum MHD_Result store_job(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq,
                                 const struct sl_job *job, const char *text, size_t len,
                                 bool is_new)
{
    char err[1024] = "", loc[300];
    uint32_t version = 0;
    int created = 0;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_control_put_job(c, job, text, len, &version, &created, err, sizeof(err))
               : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    snprintf(loc, sizeof(loc), "/v1/jobs/%s", job->name);
    sl_info(COMP, "request %s: job %s %s version %u", rq->rid, job->name,
            created ? "stored as" : "unchanged at", version);
    return reply(
        conn, rq, created && is_new ? 201 : 200,
        json_pack("{s:s,s:i,s:b}", "id", job->name, "version", (int)version, "changed", created),
        loc);
}

/* Whether job id exists (*exists): 0, or -1 after answering an error. */
static int job_exists(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq,
                      const char *id, bool *exists)
{
    char err[512] = "";
    json_t *meta = NULL;
    char *doc = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_job_get(c, id, 0, &meta, &doc, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    json_decref(meta);
    free(doc);
    *exists = rc == 0;
    if (rc && rc != SL_ERR_NOTFOUND) {
        reply_store_error(conn, rq, rc, err, "conflict");
        return -1;
    }
    return 0;
}

static enum MHD_Result h_job_create(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq)
{
    struct sl_job *job = body_job(conn, rq);
    if (!job)
        return MHD_YES;
    bool exists = false;
    enum MHD_Result r = MHD_YES;
    if (job_exists(gw, conn, rq, job->name, &exists) == 0)
        r = store_job(gw, conn, rq, job, rq->body, rq->len, !exists);
    sl_job_destroy(job);
    return r;
}

static enum MHD_Result h_job_update(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq)
{
    struct sl_job *job = body_job(conn, rq);
    if (!job)
        return MHD_YES;
    enum MHD_Result r = MHD_YES;
    bool exists = false;
    if (strcmp(job->name, rq->arg))
        r = reply_error(conn, rq, 400, "invalid_job", "name",
                        "name: the document names the job '%.128s', the path '%s'", job->name,
                        rq->arg);
    else if (job_exists(gw, conn, rq, rq->arg, &exists) == 0 && !exists)
        r = reply_error(conn, rq, 404, "not_found", NULL,
                        "no job is named '%s' (POST /v1/jobs creates one)", rq->arg);
    else if (!rq->answered)
        r = store_job(gw, conn, rq, job, rq->body, rq->len, false);
    sl_job_destroy(job);
    return r;
}

static enum MHD_Result h_job_get(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    const char *v = query(conn, "version");
    unsigned long version = 0;
    if (v) {
        char *end;
        version = strtoul(v, &end, 10);
        if (*end || version < 1 || version > 2147483647UL || v[0] == '-')
            return reply_error(conn, rq, 400, "invalid_parameter", "version",
                               "version: must be a version number (1, 2, ...)");
    }
    char err[512] = "";
    json_t *meta = NULL;
    char *doc = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_job_get(c, rq->arg, (uint32_t)version, &meta, &doc, err, sizeof(err))
               : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    json_t *d = json_loads(doc, JSON_DECODE_ANY, NULL);
    json_object_set_new(meta, "document", d ? d : json_string(doc));
    free(doc);
    return reply(conn, rq, 200, meta, NULL);
}

static enum MHD_Result h_jobs_list(struct sl_gateway *gw, struct MHD_Connection *conn,
                                   struct req *rq)
{
    int limit = query_limit(conn, rq);
    if (limit < 0)
        return MHD_YES;
    const char *cur = query(conn, "cursor");
    char after[ID_MAX] = "";
    if (cur && !b64url_decode(cur, after, sizeof(after)))
        return reply_error(conn, rq, 400, "invalid_parameter", "cursor",
                           "cursor: not a cursor this API gave");
    char err[512] = "";
    json_t *items = NULL;
    bool more = false;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_jobs_list(c, cur ? after : NULL, limit, &items, &more, err, sizeof(err))
               : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    json_t *next = json_null();
    if (more && json_array_size(items) > 0) {
        const char *last = json_string_value(
            json_object_get(json_array_get(items, json_array_size(items) - 1), "id"));
        char enc[ID_MAX * 2];
        b64url_encode((const unsigned char *)last, strlen(last), enc);
        json_decref(next);
        next = json_string(enc);
    }
    return reply(conn, rq, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next), NULL);
}

static enum MHD_Result h_job_duplicate(struct sl_gateway *gw, struct MHD_Connection *conn,
                                       struct req *rq)
{
    static const char *const fields[] = {"name", NULL};
    json_t *o = body_object(conn, rq, false);
    if (!o || !only_fields(conn, rq, o, fields)) {
        json_decref(o);
        return rq->answered ? MHD_YES : MHD_NO;
    }
    enum MHD_Result r = MHD_YES;
    const char *name = json_string_value(json_object_get(o, "name"));
    char err[1024] = "", *doc = NULL, *text = NULL;
    json_t *meta = NULL, *d = NULL;
    struct sl_job *job = NULL;
    bool exists = false;
    if (!name) {
        r = reply_error(conn, rq, 400, "invalid_request", "name",
                        "name: required, the new job's name");
        goto out;
    }
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_job_get(c, rq->arg, 0, &meta, &doc, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc) {
        r = reply_store_error(conn, rq, rc, err, "conflict");
        goto out;
    }
    if (!(d = json_loads(doc, 0, NULL)) || !json_is_object(d) ||
        json_object_set_new(d, "name", json_string(name)) ||
        !(text = json_dumps(d, JSON_INDENT(2)))) {
        r = reply_error(conn, rq, 500, "internal", NULL, "cannot copy the job's document");
        goto out;
    }
    if (!(job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err)))) {
        r = reply_error(conn, rq, 400, "invalid_job", "name", "%s", err);
        goto out;
    }
    if (job_exists(gw, conn, rq, name, &exists))
        goto out;
    if (exists) {
        r = reply_error(conn, rq, 409, "job_exists", "name", "a job named '%s' exists already",
                        name);
        goto out;
    }
    r = store_job(gw, conn, rq, job, text, strlen(text), true);
out:
    sl_job_destroy(job);
    free(text);
    free(doc);
    json_decref(d);
    json_decref(meta);
    json_decref(o);
    return r;
}

static enum MHD_Result h_job_enable(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq, bool enabled)
{
    char err[512] = "";
    json_t *meta = NULL;
    char *doc = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_job_set_enabled(c, rq->arg, enabled, err, sizeof(err)) : SL_ERR_RETRY;
    if (rc == 0)
        rc = sl_api_job_get(c, rq->arg, 0, &meta, &doc, err, sizeof(err));
    pool_put(gw, c);
    free(doc);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    sl_info(COMP, "request %s: job %s %s", rq->rid, rq->arg, enabled ? "enabled" : "disabled");
    return reply(conn, rq, 200, meta, NULL);
}

static enum MHD_Result h_job_delete(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq)
{
    char err[512] = "";
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_job_delete(c, rq->arg, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "job_busy");
    sl_info(COMP, "request %s: job %s deleted", rq->rid, rq->arg);
    return reply(conn, rq, 204, NULL, NULL);
}

/* Sends run_id's ticket and waits for Kafka's acknowledgement. 0 or an sl_err. */
static int send_ticket(struct sl_gateway *gw, const char *run_id, const char *job_id,
                       uint32_t version, bool force, const char *trigger, char *errbuf,
                       size_t errsz)
{
    struct sl_msg *t = sl_msg_new(SL_MSG_TICKET, run_id, job_id, version);
    if (!t)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    t->u.ticket.ticket_id = t->run_id;
    t->u.ticket.trigger = trigger;
    t->u.ticket.force = force;
    t->u.ticket.scheduled_at = sl_now_us();
    t->key = t->job_id;
    pthread_mutex_lock(&gw->bus_mu);
    int rc = 0;
    if (!gw->bus) {
        struct sl_kafka_conf kc = {.brokers = gw->brokers,
                                   .topic_prefix = gw->prefix,
                                   .config = gw->kafka_config,
                                   .client_id = "sluice-gateway"};
        if (!(gw->bus = sl_bus_kafka_new(&kc, errbuf, errsz)))
            rc = SL_ERR_FATAL;
    }
    if (rc == 0) {
        rc = sl_bus_send(gw->bus, SL_TOPIC_TICKETS, t);
        t = NULL;
        if (rc == 0)
            rc = gw->bus->ops->flush(gw->bus, TICKET_WAIT_MS);
        if (rc)
            sl_seterr(errbuf, errsz, rc, "kafka at %s did not acknowledge the ticket: %s",
                      gw->brokers, sl_err_str(rc));
        if (rc == SL_ERR_FATAL) { /* a failed delivery spoils the producer: a new one */
            sl_bus_destroy(gw->bus);
            gw->bus = NULL;
        }
    }
    pthread_mutex_unlock(&gw->bus_mu);
    sl_msg_unref(t);
    return rc;
}

static enum MHD_Result h_run_now(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    static const char *const fields[] = {"force", NULL};
    json_t *o = body_object(conn, rq, true);
    if (!o || !only_fields(conn, rq, o, fields)) {
        json_decref(o);
        return rq->answered ? MHD_YES : MHD_NO;
    }
    json_t *f = json_object_get(o, "force");
    bool force = json_is_true(f), bad = f && !json_is_boolean(f);
    json_decref(o);
    if (bad)
        return reply_error(conn, rq, 400, "invalid_request", "force",
                           "force: must be true or false");
    char err[1024] = "", run_id[37], loc[128];
    uint32_t version = 0;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc =
        c ? sl_api_run_queue(c, rq->arg, "api", run_id, &version, err, sizeof(err)) : SL_ERR_RETRY;
    if (rc) {
        pool_put(gw, c);
        return reply_store_error(conn, rq, rc, err, "conflict");
    }
    rc = send_ticket(gw, run_id, rq->arg, version, force, "api", err, sizeof(err));
    if (rc) {
        char e2[512];
        if (sl_api_run_fail(c, run_id, err, e2, sizeof(e2)))
            sl_warn(COMP, "run %s: %s", run_id, e2);
        pool_put(gw, c);
        return reply_error(conn, rq, 503, "unavailable", NULL, "cannot start run %s: %s", run_id,
                           err);
    }
    pool_put(gw, c);
    sl_info(COMP, "request %s: run %s of job %s version %u requested%s", rq->rid, run_id, rq->arg,
            version, force ? " (forced)" : "");
    snprintf(loc, sizeof(loc), "/v1/runs/%s", run_id);
    return reply(conn, rq, 202,
                 json_pack("{s:s,s:s,s:i,s:s,s:b}", "run_id", run_id, "job_id", rq->arg,
                           "job_version", (int)version, "status", "queued", "force", force),
                 loc);
}

static const char *const RUN_STATUSES[] = {
    "queued", "running", "succeeded", "completed_with_errors", "skipped", "failed", NULL};

static enum MHD_Result h_runs_list(struct sl_gateway *gw, struct MHD_Connection *conn,
                                   struct req *rq)
{
    struct sl_api_run_filter f = {.status = query(conn, "status"),
                                  .since = query(conn, "since"),
                                  .until = query(conn, "until")};
    if ((f.limit = query_limit(conn, rq)) < 0)
        return MHD_YES;
    if (f.status) {
        size_t i = 0;
        while (RUN_STATUSES[i] && strcmp(RUN_STATUSES[i], f.status))
            i++;
        if (!RUN_STATUSES[i])
            return reply_error(conn, rq, 400, "invalid_parameter", "status",
                               "status: must be one of queued, running, succeeded, "
                               "completed_with_errors, skipped, failed");
    }
    if (f.since && !rfc3339(f.since))
        return reply_error(conn, rq, 400, "invalid_parameter", "since",
                           "since: must be an RFC 3339 date-time (2025-12-31T23:00:00Z)");
    if (f.until && !rfc3339(f.until))
        return reply_error(conn, rq, 400, "invalid_parameter", "until",
                           "until: must be an RFC 3339 date-time (2025-12-31T23:00:00Z)");
    const char *cur = query(conn, "cursor");
    char after[ID_MAX + 32];
    if (cur) {
        char *colon = NULL, *end = NULL;
        if (b64url_decode(cur, after, sizeof(after)) && (colon = strchr(after, ':')))
            f.after_us = strtoll(after, &end, 10);
        if (!colon || end != colon || !colon[1])
            return reply_error(conn, rq, 400, "invalid_parameter", "cursor",
                               "cursor: not a cursor this API gave");
        f.after_id = colon + 1;
    }
    char err[512] = "";
    json_t *items = NULL;
    bool more = false;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_runs_list(c, rq->arg, &f, &items, &more, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    json_t *next = NULL;
    size_t n = json_array_size(items);
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        if (more && i == n - 1) {
            char plain[ID_MAX + 32], enc[2 * (ID_MAX + 32)];
            snprintf(plain, sizeof(plain), "%lld:%s",
                     (long long)json_integer_value(json_object_get(it, "_cursor_us")),
                     json_string_value(json_object_get(it, "id")));
            b64url_encode((const unsigned char *)plain, strlen(plain), enc);
            next = json_string(enc);
        }
        json_object_del(it, "_cursor_us");
    }
    return reply(conn, rq, 200,
                 json_pack("{s:o,s:o}", "items", items, "next_cursor", next ? next : json_null()),
                 NULL);
}

static void add_progress(struct sl_gateway *gw, json_t *run);

static enum MHD_Result h_run_get(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    char err[512] = "";
    json_t *run = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_run_get(c, rq->arg, &run, err, sizeof(err)) : SL_ERR_RETRY;
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    add_progress(gw, run);
    return reply(conn, rq, 200, run, NULL);
}

/* ---- the rejected rows, streamed a page at a time ------------------------ */

struct rejected_stream {
    struct sl_gateway *gw;
    PGconn *conn;
    char run_id[ID_MAX];
    char rid[65];
    bool csv, done;
    json_t *columns; /* CSV: the source columns */
    int64_t after;   /* the last row sent */
    char *buf;       /* rendered, not yet sent: buf[off..len) */
    size_t len, off, cap;
};

static bool rs_put(struct rejected_stream *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b)
            return false;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return true;
}

/* One CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
static bool rs_csv(struct rejected_stream *s, const char *v, bool first)
{
    if (!first && !rs_put(s, ",", 1))
        return false;
    if (!v)
        return true;
    if (!strpbrk(v, ",\"\r\n"))
        return rs_put(s, v, strlen(v));
    if (!rs_put(s, "\"", 1))
        return false;
    for (const char *p = v; *p; p++)
        if ((*p == '"' && !rs_put(s, "\"", 1)) || !rs_put(s, p, 1))
            return false;
    return rs_put(s, "\"", 1);
}

/* Renders one row: NDJSON as stored, or the CSV of the error file
 * (JOBS.md: _row, _errors "attribute: message; ...", the source columns). */
static bool rs_row(struct rejected_stream *s, json_t *row)
{
    if (!s->csv) {
        char *t = json_dumps(row, JSON_COMPACT);
        bool ok = t && rs_put(s, t, strlen(t)) && rs_put(s, "\n", 1);
        free(t);
        return ok;
    }
    char num[32];
    snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(row, "row")));
    struct rejected_stream e = {0}; /* the _errors text */
    size_t i;
    json_t *pr;
    json_array_foreach(json_object_get(row, "errors"), i, pr)
    {
        const char *a = json_string_value(json_object_get(pr, "attribute"));
        const char *m = json_string_value(json_object_get(pr, "message"));
        if ((i && !rs_put(&e, "; ", 2)) || !rs_put(&e, a ? a : "", a ? strlen(a) : 0) ||
            !rs_put(&e, ": ", 2) || !rs_put(&e, m ? m : "", m ? strlen(m) : 0)) {
            free(e.buf);
            return false;
        }
    }
    if (!rs_put(&e, "", 0)) {
        free(e.buf);
        return false;
    }
    e.buf[e.len] = '\0';
    bool ok = rs_csv(s, num, true) && rs_csv(s, e.buf, false);
    free(e.buf);
    json_t *src = json_object_get(row, "source"), *col;
    json_array_foreach(s->columns, i, col)
    {
        json_t *v = json_object_get(src, json_string_value(col));
        ok = ok && rs_csv(s, json_is_string(v) ? json_string_value(v) : NULL, false);
    }
    return ok && rs_put(s, "\r\n", 2);
}

static ssize_t rejected_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct rejected_stream *s = cls;
    while (s->off == s->len) {
        if (s->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->off = s->len = 0;
        char err[512] = "";
        json_t *rows = NULL;
        if (sl_api_rejected_page(s->conn, s->run_id, s->after, REJECTED_PAGE, &rows, err,
                                 sizeof(err))) {
            sl_warn(COMP, "request %s: the rejected rows of run %s broke off: %s", s->rid,
                    s->run_id, err);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row)
        {
            s->after = json_integer_value(json_object_get(row, "row"));
            if (!rs_row(s, row)) {
                json_decref(rows);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        if (json_array_size(rows) < REJECTED_PAGE)
            s->done = true;
        json_decref(rows);
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void rejected_free(void *cls)
{
    struct rejected_stream *s = cls;
    pool_put(s->gw, s->conn);
    json_decref(s->columns);
    free(s->buf);
    free(s);
}

static enum MHD_Result h_run_rejected(struct sl_gateway *gw, struct MHD_Connection *conn,
                                      struct req *rq)
{
    const char *fmt = query(conn, "format");
    if (fmt && strcmp(fmt, "ndjson") && strcmp(fmt, "csv"))
        return reply_error(conn, rq, 400, "invalid_parameter", "format",
                           "format: must be ndjson or csv");
    struct rejected_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return reply_error(conn, rq, 500, "internal", NULL, "out of memory");
    char err[512] = "";
    s->gw = gw;
    s->csv = fmt && !strcmp(fmt, "csv");
    snprintf(s->run_id, sizeof(s->run_id), "%s", rq->arg);
    snprintf(s->rid, sizeof(s->rid), "%s", rq->rid);
    s->conn = pool_get(gw, err, sizeof(err));
    int rc = s->conn ? sl_api_run_columns(s->conn, rq->arg, &s->columns, err, sizeof(err))
                     : SL_ERR_RETRY;
    if (rc) {
        rejected_free(s);
        return reply_store_error(conn, rq, rc, err, "conflict");
    }
    if (s->csv) { /* the header line */
        bool ok = rs_csv(s, "_row", true) && rs_csv(s, "_errors", false);
        size_t i;
        json_t *col;
        json_array_foreach(s->columns, i, col) ok = ok && rs_csv(s, json_string_value(col), false);
        if (!ok || !rs_put(s, "\r\n", 2)) {
            rejected_free(s);
            return reply_error(conn, rq, 500, "internal", NULL, "out of memory");
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024,
                                                                  rejected_read, s, rejected_free);
    if (!resp) {
        rejected_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            s->csv ? "text/csv; charset=utf-8" : "application/x-ndjson");
    if (s->csv) {
        char cd[ID_MAX + 64];
        snprintf(cd, sizeof(cd), "attachment; filename=\"errors-%s.csv\"", rq->arg);
        MHD_add_response_header(resp, "Content-Disposition", cd);
    }
    return queue(conn, rq, 200, resp);
}

/* ---- the trigger API ------------------------------------------------------ */

/* An idempotency key: 1 to 200 printable ASCII characters. */
static bool key_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n < 1 || n > 200)
        return false;
    for (const char *p = k; *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return false;
    return true;
}

/* POST /v1/jobs/{id}/trigger {"idempotency_key","force"}: an upstream
 * system says its export is done. A run like run now's (trigger "trigger";
 * skip_unchanged applies unless force), at most one per idempotency key
 * (the Idempotency-Key header or the body's): the same key again answers
 * 200 with the first run. A trigger token may trigger the jobs it lists. */
static enum MHD_Result h_trigger(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    static const char *const fields[] = {"idempotency_key", "force", NULL};
    json_t *o = body_object(conn, rq, true);
    if (!o || !only_fields(conn, rq, o, fields)) {
        json_decref(o);
        return rq->answered ? MHD_YES : MHD_NO;
    }
    json_t *f = json_object_get(o, "force"), *k = json_object_get(o, "idempotency_key");
    const char *hkey = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Idempotency-Key");
    char key[256] = "";
    enum MHD_Result r = MHD_YES;
    bool force = json_is_true(f);
    if (f && !json_is_boolean(f)) {
        r = reply_error(conn, rq, 400, "invalid_request", "force", "force: must be true or false");
        goto out;
    }
    if (k && !key_ok(json_string_value(k))) {
        r = reply_error(conn, rq, 400, "invalid_request", "idempotency_key",
                        "idempotency_key: must be 1 to 200 printable ASCII characters");
        goto out;
    }
    if (hkey && !key_ok(hkey)) {
        r = reply_error(conn, rq, 400, "invalid_request", "Idempotency-Key",
                        "the Idempotency-Key header must be 1 to 200 printable ASCII characters");
        goto out;
    }
    if (k && hkey && strcmp(hkey, json_string_value(k))) {
        r = reply_error(conn, rq, 400, "invalid_request", "idempotency_key",
                        "idempotency_key and the Idempotency-Key header differ");
        goto out;
    }
    snprintf(key, sizeof(key), "%s", hkey ? hkey : k ? json_string_value(k) : "");

    char err[1024] = "", run_id[37], loc[128];
    uint32_t version = 0;
    bool found = false, covered = true;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? 0 : SL_ERR_RETRY;
    if (rc == 0 && rq->role == SL_ROLE_TRIGGER)
        rc = sl_api_token_covers(c, rq->who, rq->arg, &covered, err, sizeof(err));
    if (rc == 0 && !covered) {
        pool_put(gw, c);
        r = reply_error(conn, rq, 403, "forbidden", NULL,
                        "the token '%s' may not trigger job %s (not among its jobs)", rq->who,
                        rq->arg);
        goto out;
    }
    if (rc == 0)
        rc = sl_api_run_queue_keyed(c, rq->arg, "trigger", key[0] ? key : NULL, run_id, &version,
                                    &found, err, sizeof(err));
    if (rc) {
        pool_put(gw, c);
        r = reply_store_error(conn, rq, rc, err, "conflict");
        goto out;
    }
    snprintf(loc, sizeof(loc), "/v1/runs/%s", run_id);
    if (found) {
        json_t *run = NULL;
        rc = sl_api_run_get(c, run_id, &run, err, sizeof(err));
        pool_put(gw, c);
        if (rc) {
            r = reply_store_error(conn, rq, rc, err, "conflict");
            goto out;
        }
        sl_info(COMP, "request %s: job %s triggered again with idempotency key of run %s", rq->rid,
                rq->arg, run_id);
        json_object_set_new(run, "run_id", json_string(run_id));
        json_object_set_new(run, "duplicate", json_true());
        r = reply(conn, rq, 200, run, loc);
        goto out;
    }
    rc = send_ticket(gw, run_id, rq->arg, version, force, "trigger", err, sizeof(err));
    if (rc) {
        char e2[512];
        /* a keyed run that never started is forgotten: the caller's retry
         * with the same key starts it */
        if (key[0] ? sl_api_run_forget(c, run_id, e2, sizeof(e2))
                   : sl_api_run_fail(c, run_id, err, e2, sizeof(e2)))
            sl_warn(COMP, "run %s: %s", run_id, e2);
        pool_put(gw, c);
        rq->retry_after = 5;
        r = reply_error(conn, rq, 503, "unavailable", NULL, "cannot start run %s: %s", run_id, err);
        goto out;
    }
    pool_put(gw, c);
    sl_info(COMP, "request %s: job %s version %u triggered by '%s': run %s%s", rq->rid, rq->arg,
            version, rq->who, run_id, force ? " (forced)" : "");
    r = reply(conn, rq, 202,
              json_pack("{s:s,s:s,s:i,s:s,s:s,s:b,s:s*}", "run_id", run_id, "job_id", rq->arg,
                        "job_version", (int)version, "trigger", "trigger", "status", "queued",
                        "force", force, "idempotency_key", key[0] ? key : NULL),
              loc);
out:
    json_decref(o);
    return r;
}

/* ---- live progress ------------------------------------------------------ */

/* The Redis of live progress (state.h), connected on first use; NULL when
 * it cannot be reached now (the run is shown without). */
static struct sl_state *progress_store(struct sl_gateway *gw)
{
    pthread_mutex_lock(&gw->st_mu);
    if (!gw->st) {
        char err[512];
        if (!(gw->st = sl_state_redis_new(gw->redis_url, err, sizeof(err))))
            sl_warn(COMP, "no live progress of runs: %s", err);
    }
    pthread_mutex_unlock(&gw->st_mu);
    return gw->st;
}

static void progress_field(const char *field, uint64_t value, void *arg)
{
    json_t *stages = arg;
    if (!strcmp(field, "updated_ms")) {
        char at[32];
        sl_format_utc((int64_t)value * 1000, true, at);
        json_object_set_new(stages, "_updated_at", json_string(at));
        return;
    }
    const char *dot = strchr(field, '.');
    if (!dot || dot == field || dot - field > 31)
        return;
    char stage[32];
    snprintf(stage, sizeof(stage), "%.*s", (int)(dot - field), field);
    json_t *s = json_object_get(stages, stage);
    if (!s)
        json_object_set_new(stages, stage, s = json_object());
    json_object_set_new(s, dot + 1, json_integer((json_int_t)value));
}

/* run's "progress": {"stages": {"<stage>": {"records_in", ...}},
 * "updated_at"}, from what the stages counted (null: none counted, or the
 * store is away). */
static void add_progress(struct sl_gateway *gw, json_t *run)
{
    struct sl_state *st = progress_store(gw);
    json_t *stages = json_object();
    const char *id = json_string_value(json_object_get(run, "id"));
    if (st && stages && id && st->ops->progress_get)
        st->ops->progress_get(st, id, progress_field, stages);
    json_t *at = json_incref(json_object_get(stages, "_updated_at"));
    json_object_del(stages, "_updated_at");
    if (json_object_size(stages))
        json_object_set_new(
            run, "progress",
            json_pack("{s:o,s:o}", "stages", stages, "updated_at", at ? at : json_null()));
    else {
        json_decref(stages);
        json_decref(at);
        json_object_set_new(run, "progress", json_null());
    }
}

/* ---- downloads: the run's source file and its error report -------------- */

/* The one file in dir (not hidden, not a partial download) opened for
 * reading, its name into name; -1 when there is none. */
static int open_blob(const char *dir, char *name, size_t namesz, struct stat *stp)
{
    DIR *d = opendir(dir);
    int fd = -1;
    for (struct dirent *de; d && fd < 0 && (de = readdir(d));) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' || (n > 5 && !strcmp(de->d_name + n - 5, ".part")))
            continue;
        int f = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (f >= 0 && fstat(f, stp) == 0 && S_ISREG(stp->st_mode)) {
            fd = f;
            snprintf(name, namesz, "%s", de->d_name);
        } else if (f >= 0) {
            close(f);
        }
    }
    if (d)
        closedir(d);
    return fd;
}

/* A file name fit for Content-Disposition: quotes, backslashes and
 * control or non-ASCII bytes become '_'. */
static void safe_filename(const char *in, char *out, size_t outsz)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outsz; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[i] = ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\' ? '_' : (char)ch;
    }
    out[i] = '\0';
}

/* GET /v1/runs/{id}/source: the file the run read, from the blob store
 * (<blob_dir>/<job>/<run>/; a later target's run "<run>-t<n>" reads its
 * first target's). */
static enum MHD_Result h_run_source(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq)
{
    char err[512] = "";
    json_t *run = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_run_get(c, rq->arg, &run, err, sizeof(err)) : SL_ERR_RETRY;
    /* a later target's run: the first target's run fetched the file */
    char root[ID_MAX];
    const char *t = strstr(rq->arg, "-t");
    json_t *first = NULL;
    if (rc == 0 && t && t[2] && strspn(t + 2, "0123456789") == strlen(t + 2)) {
        snprintf(root, sizeof(root), "%.*s", (int)(t - rq->arg), rq->arg);
        if (sl_api_run_get(c, root, &first, err, sizeof(err)))
            first = NULL;
    }
    pool_put(gw, c);
    if (rc)
        return reply_store_error(conn, rq, rc, err, "conflict");
    json_t *owner = first ? first : run;
    const char *job = json_string_value(json_object_get(owner, "job_id"));
    const char *id = json_string_value(json_object_get(owner, "id"));
    const char *trigger = json_string_value(json_object_get(run, "trigger"));
    int fd = -1;
    char name[256] = "", dir[4096];
    struct stat sb;
    if (gw->blob_dir && job && id && plain_name(id, ID_MAX) && !strchr(job, '/') &&
        strcmp(job, "..") && strcmp(job, ".")) {
        snprintf(dir, sizeof(dir), "%s/%s/%s", gw->blob_dir, job, id);
        fd = open_blob(dir, name, sizeof(name), &sb);
    }
    enum MHD_Result r;
    if (fd < 0) {
        r = reply_error(
            conn, rq, 404, "not_found", NULL, "run %s has no stored source file%s", rq->arg,
            trigger && !strcmp(trigger, "webhook") ? ": a webhook delivery is not kept as a file"
            : !gw->blob_dir                        ? " (the gateway has no SLUICE_BLOB_DIR)"
                            : " in the blob store (not fetched yet, skipped, or removed)");
        json_decref(run);
        json_decref(first);
        return r;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!resp) {
        close(fd);
        json_decref(run);
        json_decref(first);
        return MHD_NO;
    }
    char cd[600], safe[256];
    safe_filename(name, safe, sizeof(safe));
    snprintf(cd, sizeof(cd), "attachment; filename=\"%s\"", safe);
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", cd);
    const char *sha =
        json_string_value(json_object_get(json_object_get(owner, "source"), "sha256"));
    if (sha) {
        char etag[80];
        snprintf(etag, sizeof(etag), "\"%s\"", sha);
        MHD_add_response_header(resp, "ETag", etag);
    }
    json_decref(run);
    json_decref(first);
    return queue(conn, rq, 200, resp);
}

/* Unix microseconds of an RFC 3339 UTC time as the API writes it; 0 when
 * absent. */
static int64_t api_time_us(const json_t *v)
{
    const char *s = json_string_value(v);
    struct tm tm = {0};
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end)
        return 0;
    int64_t us = (int64_t)timegm(&tm) * 1000000;
    if (*end == '.')
        us += strtol(end + 1, NULL, 10) * 1000;
    return us;
}

/* The rejected rows of a run from the control plane, a page at a time. */
struct report_rows {
    PGconn *c;
    const char *run_id;
    json_t *page;
    size_t at;
    int64_t after;
    bool done;
};

static int report_next(void *ud, json_t **row, char *errbuf, size_t errsz)
{
    struct report_rows *rr = ud;
    *row = NULL;
    if (rr->page && rr->at >= json_array_size(rr->page)) {
        rr->done = json_array_size(rr->page) < REJECTED_PAGE;
        json_decref(rr->page);
        rr->page = NULL;
    }
    if (!rr->page && !rr->done) {
        int rc = sl_api_rejected_page(rr->c, rr->run_id, rr->after, REJECTED_PAGE, &rr->page,
                                      errbuf, errsz);
        if (rc)
            return rc;
        rr->at = 0;
    }
    json_t *r = rr->page ? json_array_get(rr->page, rr->at++) : NULL;
    if (r) {
        rr->after = json_integer_value(json_object_get(r, "row"));
        *row = json_incref(r);
    }
    return 0;
}

/* The job a run ran (a target's: its part of the job), for the report's
 * links from attributes to columns; NULL when it cannot be had. */
static struct sl_job *run_job(PGconn *c, const json_t *run)
{
    const char *id = json_string_value(json_object_get(run, "job_id"));
    json_int_t ver = json_integer_value(json_object_get(run, "job_version"));
    char parent[ID_MAX], err[512];
    if (!id || ver <= 0)
        return NULL;
    snprintf(parent, sizeof(parent), "%.*s", (int)strcspn(id, "#"), id);
    json_t *meta = NULL;
    char *doc = NULL;
    struct sl_job *job = NULL;
    if (sl_api_job_get(c, parent, (uint32_t)ver, &meta, &doc, err, sizeof(err)) == 0)
        job = sl_job_load_json(doc, strlen(doc), NULL, err, sizeof(err));
    json_decref(meta);
    free(doc);
    return job;
}

/* GET /v1/runs/{id}/report?format=xlsx|csv: the error report of a final
 * run (report.h), the spreadsheet the data owner gets by e-mail, built now
 * from the stored rejected rows into an unlinked temporary file. */
static enum MHD_Result h_run_report(struct sl_gateway *gw, struct MHD_Connection *conn,
                                    struct req *rq)
{
    const char *fq = query(conn, "format");
    if (fq && strcmp(fq, "xlsx") && strcmp(fq, "csv"))
        return reply_error(conn, rq, 400, "invalid_parameter", "format",
                           "format: must be xlsx or csv");
    enum sl_report_format fmt = fq && !strcmp(fq, "csv") ? SL_REPORT_CSV : SL_REPORT_XLSX;
    char err[512] = "";
    json_t *run = NULL, *columns = NULL;
    PGconn *c = pool_get(gw, err, sizeof(err));
    int rc = c ? sl_api_run_get(c, rq->arg, &run, err, sizeof(err)) : SL_ERR_RETRY;
    if (rc == 0)
        rc = sl_api_run_columns(c, rq->arg, &columns, err, sizeof(err));
    if (rc) {
        pool_put(gw, c);
        json_decref(run);
        return reply_store_error(conn, rq, rc, err, "conflict");
    }
    const char *status = json_string_value(json_object_get(run, "status"));
    if (status && (!strcmp(status, "queued") || !strcmp(status, "running"))) {
        pool_put(gw, c);
        enum MHD_Result r =
            reply_error(conn, rq, 409, "run_in_progress", NULL,
                        "run %s is %s: its report is ready once the run is final", rq->arg, status);
        json_decref(run);
        json_decref(columns);
        return r;
    }
    struct sl_job *job = run_job(c, run);
    const struct sl_job *target = job;
    const char *job_id = json_string_value(json_object_get(run, "job_id"));
    for (size_t i = 0; job && i < job->ntargets; i++)
        if (!strcmp(job->targets[i]->id, job_id))
            target = job->targets[i];
    size_t ncols = json_array_size(columns);
    const char **cols = calloc(ncols + 1, sizeof(char *));
    for (size_t i = 0; cols && i < ncols; i++)
        cols[i] = json_string_value(json_array_get(columns, i));
    json_t *counts = json_object_get(run, "counts");
#define COUNT(k) ((uint64_t)json_integer_value(json_object_get(counts, k)))
    struct sl_report_meta meta = {
        .job = job_id,
        .run_id = rq->arg,
        .status = status,
        .reason = json_string_value(json_object_get(run, "reason")),
        .started_at = api_time_us(json_object_get(run, "started_at")),
        .finished_at = api_time_us(json_object_get(run, "finished_at")),
        .counts = {.read = COUNT("read"),
                   .published = COUNT("published"),
                   .created = COUNT("created"),
                   .updated = COUNT("updated"),
                   .unchanged = COUNT("unchanged"),
                   .rejected = COUNT("rejected"),
                   .duplicates = COUNT("duplicates"),
                   .not_created = COUNT("not_created")},
    };
#undef COUNT
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/sluice-gw-report-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    bool made = mkdtemp(dir) != NULL;
    snprintf(path, sizeof(path), "%s/report.%s", dir, sl_report_format_ext(fmt));
    struct sl_report_file *rf =
        made && cols ? sl_report_file_new(path, fmt, &meta, cols, ncols, err, sizeof(err)) : NULL;
    rc = rf ? 0 : SL_ERR_IO;
    if (!made || !cols)
        snprintf(err, sizeof(err), "no temporary file for the report: %s", strerror(errno));
    if (rf && target)
        sl_run_report_link(rf, target);
    struct report_rows rr = {.c = c, .run_id = rq->arg};
    for (json_t *row = NULL; rc == 0;) {
        if ((rc = report_next(&rr, &row, err, sizeof(err))) != 0 || !row)
            break;
        rc = sl_report_file_add(rf, row, err, sizeof(err));
        json_decref(row);
    }
    json_decref(rr.page);
    pool_put(gw, c);
    if (rc == 0) {
        rc = sl_report_file_close(rf, &meta, err, sizeof(err));
        rf = NULL;
    }
    sl_report_file_destroy(rf);
    int fd = rc == 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat sb;
    if (fd >= 0 && fstat(fd, &sb)) {
        close(fd);
        fd = -1;
    }
    unlink(path); /* the open descriptor keeps it until sent */
    if (made)
        rmdir(dir);
    sl_job_destroy(job);
    free(cols);
    json_decref(columns);
    json_decref(run);
    if (fd < 0)
        return reply_error(conn, rq, 500, "internal", NULL, "cannot write the report of run %s: %s",
                           rq->arg, err[0] ? err : strerror(errno));
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    char cd[ID_MAX + 64];
    snprintf(cd, sizeof(cd), "attachment; filename=\"report-%s.%s\"", rq->arg,
             sl_report_format_ext(fmt));
    MHD_add_response_header(
        resp, "Content-Type",
        fmt == SL_REPORT_CSV ? "text/csv; charset=utf-8"
                             : "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    MHD_add_response_header(resp, "Content-Disposition", cd);
    return queue(conn, rq, 200, resp);
}

/* ---- webhooks (webhook.c) ----------------------------------------------- */

static PGconn *wh_db_get(void *gw, char *errbuf, size_t errsz)
{
    return pool_get(gw, errbuf, errsz);
}

static void wh_db_put(void *gw, PGconn *c)
{
    pool_put(gw, c);
}

/* Suspends conn until its request's answer is ready (counted, so that the
 * stop waits for it: MHD must not stop with a connection suspended). */
static void suspend(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    atomic_fetch_add(&gw->suspended, 1);
    rq->counted = true;
    MHD_suspend_connection(conn);
}

static void unsuspended(struct sl_gateway *gw, struct req *rq)
{
    if (rq->counted)
        atomic_fetch_sub(&gw->suspended, 1);
    rq->counted = false;
}

/* Hands rq to a worker (worker_main); conn is resumed when it answered. */
static void offload(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    suspend(gw, conn, rq);
    pthread_mutex_lock(&gw->w_mu);
    *gw->w_tail = rq;
    gw->w_tail = &rq->wnext;
    pthread_cond_signal(&gw->w_cv);
    pthread_mutex_unlock(&gw->w_mu);
}

/* Queues the webhook endpoint's answer to rq (rq->wans). */
static enum MHD_Result reply_webhook(struct MHD_Connection *conn, struct req *rq)
{
    struct sl_webhook_answer *ans = &rq->wans;
    rq->retry_after = ans->retry_after;
    if (ans->code)
        return reply_error(conn, rq, ans->status, ans->code, NULL, "%s", ans->message);
    if (ans->text) {
        char *text = ans->text;
        ans->text = NULL; /* reply_text()'s now */
        return reply_text(conn, rq, ans->status, text, NULL);
    }
    json_t *body = ans->body;
    ans->body = NULL; /* reply()'s now */
    return reply(conn, rq, ans->status, body, NULL);
}

/* The webhook engine answered rq (its thread): the connection goes on. */
static void webhook_done(void *arg)
{
    struct req *rq = arg;
    struct MHD_Connection *conn = rq->conn;
    atomic_store(&rq->ready, true);
    MHD_resume_connection(conn);
}

static enum MHD_Result h_webhook(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    struct sl_webhook_req wr = {
        .job_id = rq->arg,
        .rid = rq->rid,
        .id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-id"),
        .timestamp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-timestamp"),
        .signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-signature"),
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .body = rq->body,
        .len = rq->len,
    };
    if (!rq->offloaded && !sl_webhook_job_known(gw->webhook, rq->arg)) {
        /* the job must be read from PostgreSQL first: on a worker */
        offload(gw, conn, rq);
        return MHD_YES;
    }
    struct sl_webhook_answer *ans = &rq->wans;
    struct sl_webhook_delivery *d = NULL;
    if (sl_webhook_begin(gw->webhook, &wr, ans, webhook_done, rq, &d) == 0)
        return reply_webhook(conn, rq);
    /* the engine answers (webhook_done): suspended until then (a worker's
     * request already is, and the worker lets the engine resume it) */
    rq->webhook = true;
    if (rq->offloaded) {
        rq->offloaded = false;
        *rq->handed_on = true;
    } else {
        suspend(gw, conn, rq);
    }
    sl_webhook_go(gw->webhook, d); /* rq may be gone once this returns */
    return MHD_YES;
}

/* ---- the request cycle -------------------------------------------------- */

static enum MHD_Result dispatch(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq)
{
    const char *m = rq->method;
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD");
    switch (rq->route) {
    case R_HEALTHZ:
        return h_healthz(gw, conn, rq);
    case R_READYZ:
        return h_readyz(gw, conn, rq);
    case R_TOKENS:
        return get ? h_tokens_list(gw, conn, rq) : h_token_create(gw, conn, rq);
    case R_TOKEN:
        return h_token_delete(gw, conn, rq);
    case R_JOBS:
        return get ? h_jobs_list(gw, conn, rq) : h_job_create(gw, conn, rq);
    case R_JOB:
        return get                 ? h_job_get(gw, conn, rq)
               : !strcmp(m, "PUT") ? h_job_update(gw, conn, rq)
                                   : h_job_delete(gw, conn, rq);
    case R_JOB_DUPLICATE:
        return h_job_duplicate(gw, conn, rq);
    case R_JOB_ENABLE:
        return h_job_enable(gw, conn, rq, true);
    case R_JOB_DISABLE:
        return h_job_enable(gw, conn, rq, false);
    case R_JOB_RUNS:
        return get ? h_runs_list(gw, conn, rq) : h_run_now(gw, conn, rq);
    case R_RUN:
        return h_run_get(gw, conn, rq);
    case R_RUN_REJECTED:
        return h_run_rejected(gw, conn, rq);
    case R_JOB_WEBHOOK:
        return h_webhook(gw, conn, rq);
    case R_JOB_TRIGGER:
        return h_trigger(gw, conn, rq);
    case R_RUN_SOURCE:
        return h_run_source(gw, conn, rq);
    case R_RUN_REPORT:
        return h_run_report(gw, conn, rq);
    default:
        return reply_error(conn, rq, 404, "not_found", NULL, "no such endpoint");
    }
}

/* The first call of a request: everything that can be decided from the
 * headers. Returns whether the body may come. */
static bool admit(struct sl_gateway *gw, struct MHD_Connection *conn, struct req *rq,
                  const char *url)
{
    rq->route = match_route(url, rq->arg); /* the whole path: rq->path may be cut */
    if (rq->route == R_NONE) {
        reply_error(conn, rq, 404, "not_found", NULL, "no such endpoint: %s %s", rq->method,
                    rq->path);
        return false;
    }
    enum sl_api_role need;
    const char *allow = "";
    if (!route_needs(gw, rq->route, rq->method, &need, &rq->limit, &allow)) {
        rq->allow = allow;
        reply_error(conn, rq, 405, "method_not_allowed", NULL, "%s is not allowed here (%s)",
                    rq->method, allow);
        return false;
    }
    rq->need = need; /* checked by the worker (authorize() may wait for PostgreSQL) */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > rq->limit) {
        rq->too_large = true;
        reply_error(conn, rq, 413, "too_large", NULL, "the body is larger than %zu bytes",
                    rq->limit);
        return false;
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct sl_gateway *gw = cls;
    struct req *rq = *con_cls;
    if (!rq) {
        if (!(rq = req_new(gw)))
            return MHD_NO;
        *con_cls = rq;
        atomic_fetch_add(&gw->active, 1); /* on_completed counts it out */
        clock_gettime(CLOCK_MONOTONIC, &rq->t0);
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (plain_name(given, 64))
            snprintf(rq->rid, sizeof(rq->rid), "%s", given);
        else
            request_id(rq->rid);
        snprintf(rq->method, sizeof(rq->method), "%s", method);
        snprintf(rq->path, sizeof(rq->path), "%s", url);
        snprintf(rq->who, sizeof(rq->who), "-");
        if (!admit(gw, conn, rq, url) && !rq->answered)
            return MHD_NO;
        return MHD_YES;
    }
    if (atomic_load(&rq->ready)) { /* resumed: the answer is here */
        unsuspended(gw, rq);
        if (rq->webhook)
            return reply_webhook(conn, rq);
        struct MHD_Response *resp = rq->resp;
        rq->resp = NULL;
        if (!resp)
            return MHD_NO;
        enum MHD_Result r = MHD_queue_response(conn, (unsigned)rq->status, resp);
        MHD_destroy_response(resp);
        return rq->wrc == MHD_NO ? MHD_NO : r;
    }
    if (rq->answered) { /* refused before its body: drop what still comes */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > rq->limit) {
            rq->too_large = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 4096;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *b = realloc(rq->body, cap);
            if (!b)
                return MHD_NO;
            rq->body = b;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->too_large)
        return reply_error(conn, rq, 413, "too_large", NULL, "the body is larger than %zu bytes",
                           rq->limit);
    rq->conn = conn;
    if (rq->route == R_JOB_WEBHOOK)
        return h_webhook(gw, conn, rq);
    offload(gw, conn, rq);
    return MHD_YES;
}

/* A worker: answers the requests handed to it (authorize, then dispatch),
 * keeping the answer for the connection's thread (queue()). */
static void *worker_main(void *arg)
{
    struct sl_gateway *gw = arg;
    for (;;) {
        pthread_mutex_lock(&gw->w_mu);
        while (!gw->w_head && !gw->w_stop)
            pthread_cond_wait(&gw->w_cv, &gw->w_mu);
        struct req *rq = gw->w_head;
        if (rq && !(gw->w_head = rq->wnext))
            gw->w_tail = &gw->w_head;
        pthread_mutex_unlock(&gw->w_mu);
        if (!rq)
            break;
        rq->wnext = NULL;
        rq->offloaded = true;
        bool handed_on = false;
        rq->handed_on = &handed_on;
        enum MHD_Result wrc = MHD_YES;
        if (authorize(gw, rq->conn, rq, rq->need))
            wrc = dispatch(gw, rq->conn, rq);
        if (handed_on)
            continue; /* a webhook delivery: the engine answers it (rq may be gone) */
        rq->wrc = wrc;
        rq->handed_on = NULL;
        rq->offloaded = false;
        struct MHD_Connection *conn = rq->conn;
        atomic_store(&rq->ready, true);
        MHD_resume_connection(conn);
    }
    return NULL;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *con_cls;
    if (!rq)
        return;
    *con_cls = NULL;
    static const char *const why[] = {"",           " (error)",      " (timed out)",
                                      " (stopped)", " (read error)", " (client went away)"};
    double ms = ms_since(&rq->t0);
    sl_log_buffered(SL_LOG_INFO, COMP, "request %s: %s %s -> %d by %s in %.1f ms%s", rq->rid,
                    rq->method, rq->path, rq->status, rq->who, ms,
                    (unsigned)toe < SL_ARRAY_LEN(why) ? why[toe] : "");
    /* /metrics: requests by status class, and their latency */
    struct sl_gateway *gw = cls;
    int k = rq->status >= 100 && rq->status < 600 ? rq->status / 100 : 0;
    struct sl_counter *c = atomic_load(&gw->m_requests[k]);
    if (!c) { /* the registry gives every thread the same one */
        char labels[32];
        snprintf(labels, sizeof(labels), "code=\"%dxx\"", k);
        c = sl_metrics_counter("sluice_http_requests_total",
                               "requests the gateway answered, by status class", labels);
        atomic_store(&gw->m_requests[k], c);
    }
    sl_counter_add(c, 1);
    struct sl_histogram *h = atomic_load(&gw->m_seconds);
    if (!h) {
        h = sl_metrics_histogram("sluice_http_request_seconds",
                                 "time the gateway took to answer a request", "");
        atomic_store(&gw->m_seconds, h);
    }
    sl_histogram_observe(h, ms / 1000);
    unsuspended(cls, rq);
    if (rq->resp)
        MHD_destroy_response(rq->resp);
    json_decref(rq->wans.body);
    free(rq->wans.text);
    req_free(gw, rq);
    atomic_fetch_sub(&((struct sl_gateway *)cls)->active, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    sl_debug(COMP, "libmicrohttpd: %s", msg);
}

/* ---- life cycle --------------------------------------------------------- */

/* Parses addr ("host:port", "[v6]:port", ":port") into sa; 0 or -1. */
static int parse_addr(const char *addr, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[256] = "", port[16] = "";
    const char *colon;
    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - addr - 1) >= sizeof(host))
            return -1;
        memcpy(host, addr + 1, (size_t)(rb - addr - 1));
        colon = rb + 1;
    } else {
        if (!(colon = strrchr(addr, ':')) || (size_t)(colon - addr) >= sizeof(host))
            return -1;
        memcpy(host, addr, (size_t)(colon - addr));
    }
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port) ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
        return -1;
    snprintf(port, sizeof(port), "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    if (getaddrinfo(host[0] ? host : "0.0.0.0", port, &hints, &ai) || !ai)
        return -1;
    memcpy(sa, ai->ai_addr, ai->ai_addrlen);
    *salen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

struct sl_gateway *sl_gateway_new(const struct sl_gateway_conf *conf, int *rcp, char *errbuf,
                                  size_t errsz)
{
    int rc = SL_ERR_NOMEM;
    struct sl_gateway *gw = calloc(1, sizeof(*gw));
    if (!gw)
        goto fail_nomem;
    pthread_mutex_init(&gw->pool_mu, NULL);
    sl_spares_init(&gw->spares, SPARE_MAX);
    pthread_mutex_init(&gw->bus_mu, NULL);
    pthread_mutex_init(&gw->probe_mu, NULL);
    pthread_mutex_init(&gw->st_mu, NULL);
    gw->max_job = conf->max_job_bytes ? conf->max_job_bytes : 1024 * 1024;
    gw->max_body = conf->max_body_bytes ? conf->max_body_bytes : 64 * 1024;
    const struct sl_kafka_conf *kc = &conf->kafka;
    if (!(gw->postgres_url = strdup(conf->postgres_url)) ||
        !(gw->redis_url = strdup(conf->redis_url ? conf->redis_url : "redis://127.0.0.1:6379/0")) ||
        !(gw->brokers = strdup(kc->brokers ? kc->brokers : "localhost:9092")) ||
        !(gw->prefix = strdup(kc->topic_prefix ? kc->topic_prefix : "sluice.")) ||
        (kc->config && !(gw->kafka_config = strdup(kc->config))) ||
        (conf->blob_dir && !(gw->blob_dir = strdup(conf->blob_dir))))
        goto fail_nomem;
    struct sl_kafka_conf bc = {.brokers = gw->brokers,
                               .topic_prefix = gw->prefix,
                               .config = gw->kafka_config,
                               .client_id = "sluice-gateway"};
    if (!(gw->bus = sl_bus_kafka_new(&bc, errbuf, errsz))) {
        rc = SL_ERR_INVALID;
        goto fail;
    }
    struct sl_webhook_deps wd = {.gw = gw,
                                 .db_get = wh_db_get,
                                 .db_put = wh_db_put,
                                 .kafka = bc,
                                 .window_ms = conf->webhook_window_ms,
                                 .window_rows = conf->webhook_window_rows};
    if (!(gw->webhook = sl_webhook_new(gw->redis_url, &wd)))
        goto fail_nomem;
    struct sockaddr_storage sa;
    socklen_t salen = 0;
    if (parse_addr(conf->http_addr, &sa, &salen)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "SLUICE_HTTP_ADDR '%s' is not host:port (e.g. 0.0.0.0:8080, [::]:8080)",
                       conf->http_addr);
        goto fail;
    }
    pthread_mutex_init(&gw->w_mu, NULL);
    pthread_cond_init(&gw->w_cv, NULL);
    gw->w_tail = &gw->w_head;
    for (; gw->nworkers < WORKERS; gw->nworkers++)
        if (pthread_create(&gw->workers[gw->nworkers], NULL, worker_main, gw))
            goto fail_nomem;
    /* a few event-driven HTTP threads: a request that waits (for
     * PostgreSQL, Kafka, Redis) is suspended meanwhile, not a thread held
     * (see on_request); MHD_USE_ITC: MHD_quiesce_daemon() at the stop and
     * resuming connections. poll(), not epoll: with epoll MHD takes a
     * suspended connection out of the set and puts it back (two epoll_ctl
     * calls a webhook delivery, ~10 % of the gateway under the benchmark),
     * while poll() builds its set each turn from the connections not
     * suspended; at CONNECTION_LIMIT (512) that set stays small
     * (mhd_202 alone: +35 % requests/s, docs/BENCHMARKS.md) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    gw->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, gw, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)512, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONN_MEMORY, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, gw, MHD_OPTION_END);
    if (!gw->d) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot listen on %s: %m", conf->http_addr);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(gw->d, MHD_DAEMON_INFO_BIND_PORT);
    gw->port = di ? di->port : 0;
    if (rcp)
        *rcp = 0;
    return gw;
fail_nomem:
    rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
fail:
    if (rcp)
        *rcp = rc;
    sl_gateway_destroy(gw);
    return NULL;
}

int sl_gateway_port(const struct sl_gateway *gw)
{
    return gw->port;
}

void sl_gateway_destroy(struct sl_gateway *gw)
{
    if (!gw)
        return;
    if (gw->d) {
        /* no new connections; the requests in progress finish (up to
         * DRAIN_MS), then every connection is closed and its thread joined */
        MHD_socket ls = MHD_quiesce_daemon(gw->d);
        if (ls != MHD_INVALID_SOCKET)
            close(ls);
        for (int i = 0; i < DRAIN_MS / 10 && atomic_load(&gw->active) > 0; i++)
            usleep(10000);
        if (atomic_load(&gw->active) > 0)
            sl_warn(COMP, "stopping with %d requests still in progress", atomic_load(&gw->active));
        /* MHD must not stop with a connection suspended: their answers come
         * (the webhook engine gives up on Kafka after 5 s) */
        for (int i = 0; i < RESUME_WAIT_MS / 10 && atomic_load(&gw->suspended) > 0; i++)
            usleep(10000);
        if (atomic_load(&gw->suspended) > 0)
            sl_error(COMP,
                     "stopping with %d requests still unanswered: their connections are "
                     "dropped",
                     atomic_load(&gw->suspended));
        else
            MHD_stop_daemon(gw->d);
    }
    if (gw->w_tail) {
        pthread_mutex_lock(&gw->w_mu);
        gw->w_stop = true;
        pthread_cond_broadcast(&gw->w_cv);
        pthread_mutex_unlock(&gw->w_mu);
        for (int i = 0; i < gw->nworkers; i++)
            pthread_join(gw->workers[i], NULL);
        pthread_mutex_destroy(&gw->w_mu);
        pthread_cond_destroy(&gw->w_cv);
    }
    sl_webhook_destroy(gw->webhook);
    if (gw->bus)
        gw->bus->ops->flush(gw->bus, TICKET_WAIT_MS);
    sl_bus_destroy(gw->bus);
    if (gw->probe)
        rd_kafka_destroy(gw->probe);
    while (gw->nidle > 0)
        PQfinish(gw->idle[--gw->nidle]);
    pthread_mutex_destroy(&gw->pool_mu);
    sl_spares_cleanup(&gw->spares, req_drop);
    pthread_mutex_destroy(&gw->bus_mu);
    pthread_mutex_destroy(&gw->probe_mu);
    free(gw->postgres_url);
    free(gw->redis_url);
    free(gw->blob_dir);
    sl_state_destroy(gw->st);
    pthread_mutex_destroy(&gw->st_mu);
    free(gw->brokers);
    free(gw->prefix);
    free(gw->kafka_config);
    free(gw);
}
