/*
 * The Redis state store (state.h), distributed mode's memory between messages.
 *
 * The last successful hash of a job is one string, sluice:job:<id>:last_sha256,
 * with no expiry; the validators of its source (state.h) one hash,
 * sluice:job:<id>:source_validators, written whole by one HSET. The keys seen in a run are the
 * fields of one hash, sluice:run:<id>:keys: a key shorter than 32 bytes is its own field, a longer
 * one its 32-byte SHA-256 (lengths differ, so the two never collide), which
 * bounds memory per key. The value of each field is the source row that first
 * had the key (decimal), so the same row asking again, be it a call retried
 * after its reply was lost (timeout, crash of the server after the write) or
 * a message redelivered to another process after a crash, is recognized and
 * still answered "new": an outage neither loses a key nor counts one twice.
 * One Lua script answers a whole batch of keys in order, atomically, and a
 * batch bigger than SCRIPT_KEYS_MAX is several scripts sent in one pipeline:
 * one round trip either way. The hash expires run_ttl seconds after its last
 * new key, so abandoned runs do not leak.
 *
 * Threads share a small pool of connections (one per concurrent caller, at
 * most POOL_MAX); a call that finds its connection broken reconnects with
 * exponential backoff for at most retry_for seconds before it gives up with
 * SL_ERR_RETRY, and the stage runner's own retry takes over. The password is
 * kept for AUTH only: messages name the server by host and port.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define DEFAULT_URL         "redis://127.0.0.1:6379/0"
#define DEFAULT_PORT        6379
#define POOL_MAX            16
#define JOB_ID_MAX          200
#define RUN_ID_MAX          1024 /* any bytes: prefix + id + suffix is one-to-one */
#define FIELD_RAW_MAX       31   /* longer keys are stored as their SHA-256 */
#define SCRIPT_KEYS_MAX     1024 /* questions per script call (< 8000: unpack); more: pipelined */
#define BACKOFF_FIRST_MS    50
#define BACKOFF_MAX_MS      2000
#define DEFAULT_CONNECT_S   2.0
#define DEFAULT_TIMEOUT_S   5.0
#define DEFAULT_RETRY_FOR_S 30.0
#define DEFAULT_RUN_TTL_S   (7 * 24 * 3600)

/* KEYS[1] the run's hash, ARGV[1] its expiry, ARGV[2] one byte per question:
 * '1' to add, '0' to check; then the n fields, then the n asking rows
 * (decimal). Answers each in order as state.h says: with add, 1 when the
 * field's first row is another one; without, when it is an earlier one (rows
 * compare as numbers: shorter decimal first, then by text). One HMGET reads
 * every field, one HSET writes the new ones (mine: the fields this call
 * adds, which later questions of the call must see; a field is either read
 * or mine, never both), so Redis runs two commands a call instead of one or
 * two a question. The answer is one string, a '0' or '1' per question: one
 * reply instead of n. Locals, not globals, in the loop: a script call of
 * 1,024 questions took ~10 % less of Redis's time so. */
static const char SEEN_SCRIPT[] =
    "local flags = ARGV[2]\n"
    "local n = #flags\n"
    "local first = redis.call('HMGET', KEYS[1], unpack(ARGV, 3, n + 2))\n"
    "local byte = string.byte\n"
    "local mine, set, out, ns = {}, {}, {}, 0\n"
    "for j = 1, n do\n"
    "  local f, row = ARGV[j + 2], ARGV[j + n + 2]\n"
    "  local v = first[j] or mine[f]\n"
    "  if byte(flags, j) == 49 then\n"
    "    if v then\n"
    "      out[j] = v == row and '0' or '1'\n"
    "    else\n"
    "      mine[f] = row\n"
    "      set[ns + 1] = f\n"
    "      set[ns + 2] = row\n"
    "      ns = ns + 2\n"
    "      out[j] = '0'\n"
    "    end\n"
    "  else\n"
    "    out[j] = (v and (#v < #row or (#v == #row and v < row))) and '1' or '0'\n"
    "  end\n"
    "end\n"
    "if ns > 0 then\n"
    "  redis.call('HSET', KEYS[1], unpack(set))\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "end\n"
    "return table.concat(out)\n";

struct conn {
    struct conn *next;
    redisContext *c; /* NULL: not connected */
};

struct state_redis {
    struct sl_state base;
    char *host; /* TCP, or NULL */
    int port;
    char *path; /* unix socket, or NULL */
    char *user, *password;
    long db;
    double connect_s, timeout_s, retry_for_s;
    long run_ttl_s;
    char where[160]; /* "host:port" or "unix:/path", for messages */
    char script_sha[41];

    pthread_mutex_t mu; /* guards idle, nconn */
    pthread_cond_t cv;
    struct conn *idle;
    int nconn;
};

/* ---- small helpers ---------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static struct timeval to_timeval(double s)
{
    struct timeval tv;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1000;
    return tv;
}

/* Same rules as the local store, so both answer alike: [A-Za-z0-9_.-]{1,200},
 * not "." or "..". */
static bool id_ok(const char *id, size_t max)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > max || !strcmp(id, ".") || !strcmp(id, ".."))
        return false;
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static bool sha_ok(const char *s, size_t n)
{
    return n == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* hiredis 0.14 writes with write(2): a server that went away must not kill
 * the process with SIGPIPE. Block it around each command and swallow one
 * raised by the command. */
struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigemptyset(&pend);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE) == 1;
}

static void sigpipe_restore(const struct sigpipe_guard *g)
{
    if (!g->was_pending) {
        sigset_t set, pend;
        sigemptyset(&pend);
        sigpending(&pend);
        if (sigismember(&pend, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            sigemptyset(&set);
            sigaddset(&set, SIGPIPE);
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* hiredis's message with a lowercase first letter, as our messages read. */
static void lower_first(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src && src[0] ? src : "unknown error");
    dst[0] = (char)tolower((unsigned char)dst[0]);
}

/* ---- the url ---------------------------------------------------------- */

/* The url with any user information masked, for messages. */
static void redact_url(const char *url, char *out, size_t n)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strrchr(scheme + 3, '@') : NULL;
    if (at)
        snprintf(out, n, "%.*s***%s", (int)(scheme + 3 - url), url, at);
    else
        snprintf(out, n, "%s", url);
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape or no memory. */
static char *pct_decode(const char *s, size_t n, bool *bad)
{
    char *out = malloc(n + 1), *o = out;
    *bad = false;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
            !isxdigit((unsigned char)s[i + 2])) {
            *bad = true;
            break;
        }
        char hex[3] = {s[i + 1], s[i + 2], '\0'};
        *o++ = (char)strtol(hex, NULL, 16);
        i += 2;
    }
    if (*bad) {
        free(out);
        return NULL;
    }
    *o = '\0';
    return out;
}

/* A positive number of seconds, at most a year. */
static bool parse_seconds(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d <= 0 || d > 366 * 86400.0)
        return false;
    *out = d;
    return true;
}

static bool parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    if (!isdigit((unsigned char)v[0]))
        return false;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

/* user:password or :password before the '@' of the url. */
static int parse_userinfo(struct state_redis *sr, const char *s, size_t n, const char *safe,
                          char *errbuf, size_t errsz)
{
    const char *colon = memchr(s, ':', n);
    bool bad = false;
    if (!colon)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "invalid redis url \"%s\": the part before '@' must be :password or "
                         "user:password",
                         safe);
    if (colon > s && !(sr->user = pct_decode(s, (size_t)(colon - s), &bad)))
        goto fail;
    if (!(sr->password = pct_decode(colon + 1, n - (size_t)(colon + 1 - s), &bad)))
        goto fail;
    return 0;
fail:
    if (bad)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "invalid redis url \"%s\": bad %%-escape in the user information", safe);
    return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not parse redis url: out of memory");
}

/* k=v&k=v after the '?'. */
static int parse_params(struct state_redis *sr, const char *q, bool unix_sock, const char *safe,
                        char *errbuf, size_t errsz)
{
    while (*q) {
        size_t n = strcspn(q, "&");
        char item[128];
        if (n >= sizeof(item))
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": query parameter too long", safe);
        memcpy(item, q, n);
        item[n] = '\0';
        q += n + (q[n] == '&');
        if (!n)
            continue;
        char *eq = strchr(item, '=');
        if (!eq)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": query parameter \"%s\" has no value", safe,
                             item);
        *eq = '\0';
        const char *k = item, *v = eq + 1;
        bool ok;
        if (!strcmp(k, "connect_timeout"))
            ok = parse_seconds(v, &sr->connect_s);
        else if (!strcmp(k, "timeout"))
            ok = parse_seconds(v, &sr->timeout_s);
        else if (!strcmp(k, "retry_for"))
            ok = parse_seconds(v, &sr->retry_for_s);
        else if (!strcmp(k, "run_ttl"))
            ok = parse_long(v, 1, 366L * 86400, &sr->run_ttl_s);
        else if (!strcmp(k, "db") && unix_sock)
            ok = parse_long(v, 0, 1000000, &sr->db);
        else
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": unknown query parameter \"%s\" (known: "
                             "%sconnect_timeout, timeout, retry_for, run_ttl)",
                             safe, k, unix_sock ? "db, " : "");
        if (!ok)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": %s must be %s", safe, k,
                             !strcmp(k, "db")        ? "a whole number from 0"
                             : !strcmp(k, "run_ttl") ? "a whole number of seconds from 1"
                                                     : "a positive number of seconds");
    }
    return 0;
}

static int parse_url(struct state_redis *sr, const char *url, char *errbuf, size_t errsz)
{
    char safe[256];
    redact_url(url, safe, sizeof(safe));
    bool unix_sock;
    const char *rest;
    if (!strncmp(url, "redis://", 8)) {
        unix_sock = false;
        rest = url + 8;
    } else if (!strncmp(url, "unix://", 7)) {
        unix_sock = true;
        rest = url + 7;
    } else if (!strncmp(url, "rediss://", 9)) {
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "invalid redis url \"%s\": TLS (rediss://) is not supported", safe);
    } else {
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "invalid redis url \"%s\": must start with redis:// or unix://", safe);
    }
    const char *at = strrchr(rest, '@');
    if (at) {
        int rc = parse_userinfo(sr, rest, (size_t)(at - rest), safe, errbuf, errsz);
        if (rc)
            return rc;
        rest = at + 1;
    }
    const char *q = strchr(rest, '?');
    size_t before_q = q ? (size_t)(q - rest) : strlen(rest);

    if (unix_sock) {
        if (before_q == 0 || rest[0] != '/')
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": unix:// needs an absolute socket path",
                             safe);
        if (before_q >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "invalid redis url \"%s\": socket path too long", safe);
        if (!(sr->path = strndup(rest, before_q)))
            return sl_seterr(errbuf, errsz, SL_ERR_NOMEM,
                             "could not parse redis url: out of memory");
        snprintf(sr->where, sizeof(sr->where), "unix:%s", sr->path);
    } else {
        size_t alen = strcspn(rest, "/?");
        const char *hs = rest, *he, *ps = NULL;
        if (alen && rest[0] == '[') {
            const char *close = memchr(rest, ']', alen);
            if (!close)
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                 "invalid redis url \"%s\": unclosed '[' in the host", safe);
            hs = rest + 1;
            he = close;
            if (close + 1 < rest + alen) {
                if (close[1] != ':')
                    return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                     "invalid redis url \"%s\": text after the host", safe);
                ps = close + 2;
            }
        } else {
            const char *colon = memchr(rest, ':', alen);
            he = colon ? colon : rest + alen;
            ps = colon ? colon + 1 : NULL;
        }
        if (he == hs)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "invalid redis url \"%s\": no host",
                             safe);
        sr->port = DEFAULT_PORT;
        if (ps) {
            char port[16];
            size_t pn = (size_t)(rest + alen - ps);
            long p = 0;
            if (pn >= sizeof(port))
                pn = sizeof(port) - 1;
            memcpy(port, ps, pn);
            port[pn] = '\0';
            if (!parse_long(port, 1, 65535, &p) || (size_t)(rest + alen - ps) >= sizeof(port))
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                 "invalid redis url \"%s\": the port must be a number from 1 to "
                                 "65535",
                                 safe);
            sr->port = (int)p;
        }
        if (!(sr->host = strndup(hs, (size_t)(he - hs))))
            return sl_seterr(errbuf, errsz, SL_ERR_NOMEM,
                             "could not parse redis url: out of memory");
        snprintf(sr->where, sizeof(sr->where), "%s%s%s:%d", strchr(sr->host, ':') ? "[" : "",
                 sr->host, strchr(sr->host, ':') ? "]" : "", sr->port);
        const char *dbs = rest + alen;
        if (*dbs == '/' && dbs + 1 < rest + before_q) {
            char db[16];
            size_t dn = (size_t)(rest + before_q - dbs - 1);
            if (dn < sizeof(db)) {
                memcpy(db, dbs + 1, dn);
                db[dn] = '\0';
            }
            if (dn >= sizeof(db) || !parse_long(db, 0, 1000000, &sr->db))
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                 "invalid redis url \"%s\": the database after '/' must be a "
                                 "number",
                                 safe);
        }
    }
    if (q)
        return parse_params(sr, q + 1, unix_sock, safe, errbuf, errsz);
    return 0;
}

/* ---- connections ------------------------------------------------------ */

/* A new connection, authenticated and on the right database, or NULL with
 * msg set (never holding the password). */
static redisContext *conn_open(struct state_redis *sr, char *msg, size_t msz)
{
    char why[160];
    redisReply *r = NULL;
    struct timeval ctv = to_timeval(sr->connect_s);
    redisContext *c = sr->path ? redisConnectUnixWithTimeout(sr->path, ctv)
                               : redisConnectWithTimeout(sr->host, sr->port, ctv);
    if (!c || c->err) {
        lower_first(why, sizeof(why), c ? c->errstr : "out of memory");
        snprintf(msg, msz, "could not connect to redis at %s: %s", sr->where, why);
        goto fail;
    }
    if (redisSetTimeout(c, to_timeval(sr->timeout_s)) != REDIS_OK) {
        snprintf(msg, msz, "could not set the timeout of the connection to redis at %s", sr->where);
        goto fail;
    }
    if (!sr->path)
        redisEnableKeepAlive(c);
    struct sigpipe_guard g;
    sigpipe_block(&g);
    if (sr->password) {
        const char *argv[3] = {"AUTH", sr->user ? sr->user : sr->password, sr->password};
        r = redisCommandArgv(c, sr->user ? 3 : 2, argv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            lower_first(why, sizeof(why), r ? r->str : c->errstr);
            snprintf(msg, msz, "could not authenticate to redis at %s: %s", sr->where, why);
            sigpipe_restore(&g);
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (sr->db) {
        char db[24];
        snprintf(db, sizeof(db), "%ld", sr->db);
        const char *argv[2] = {"SELECT", db};
        r = redisCommandArgv(c, 2, argv, NULL);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            lower_first(why, sizeof(why), r ? r->str : c->errstr);
            snprintf(msg, msz, "could not select database %ld of redis at %s: %s", sr->db,
                     sr->where, why);
            sigpipe_restore(&g);
            goto fail;
        }
        freeReplyObject(r);
        r = NULL;
    }
    sigpipe_restore(&g);
    return c;
fail:
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return NULL;
}

/* A connection for this caller alone: an idle one, a new slot, or the next
 * one returned when POOL_MAX are busy. Its c may be NULL (connect lazily). */
static struct conn *conn_get(struct state_redis *sr)
{
    struct conn *cn = NULL;
    pthread_mutex_lock(&sr->mu);
    for (;;) {
        if (sr->idle) {
            cn = sr->idle;
            sr->idle = cn->next;
            break;
        }
        if (sr->nconn < POOL_MAX) {
            if ((cn = calloc(1, sizeof(*cn))))
                sr->nconn++;
            break;
        }
        pthread_cond_wait(&sr->cv, &sr->mu);
    }
    pthread_mutex_unlock(&sr->mu);
    return cn;
}

static void conn_put(struct state_redis *sr, struct conn *cn)
{
    pthread_mutex_lock(&sr->mu);
    cn->next = sr->idle;
    sr->idle = cn;
    pthread_cond_signal(&sr->cv);
    pthread_mutex_unlock(&sr->mu);
}

/* Errors Redis gives while it cannot serve yet (loading its data after a
 * restart, a busy script, a failover): wait and retry like a lost connection. */
static bool reply_transient(const redisReply *r)
{
    static const char *const prefixes[] = {"LOADING",  "BUSY",        "MASTERDOWN",
                                           "TRYAGAIN", "CLUSTERDOWN", "READONLY"};
    if (r->type != REDIS_REPLY_ERROR || !r->str)
        return false;
    for (size_t i = 0; i < SL_ARRAY_LEN(prefixes); i++)
        if (!strncmp(r->str, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/* One command of a pipeline: argc arguments of lens[i] bytes (lens NULL:
 * NUL-terminated). */
struct cmd {
    int argc;
    const char **argv;
    const size_t *lens;
};

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
}

/* Writes the ncmd commands to c without waiting for their replies (SIGPIPE
 * blocked by the caller). False when the connection failed. */
static bool pipeline_write(redisContext *c, const struct cmd *cmds, size_t ncmd)
{
    bool ok = true;
    for (size_t i = 0; i < ncmd && ok; i++)
        ok = redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].lens) == REDIS_OK;
    for (int done = 0; ok && !done;)
        ok = redisBufferWrite(c, &done) == REDIS_OK;
    return ok;
}

static void lost_connection(const struct state_redis *sr, const redisContext *c, char *msg,
                            size_t msz)
{
    char why[160];
    lower_first(why, sizeof(why), c->errstr);
    snprintf(msg, msz, "lost the connection to redis at %s: %s", sr->where, why);
}

/* Reads the replies of ncmd commands written to c into rep (SIGPIPE blocked
 * by the caller). True when every reply came; false with msg set when the
 * connection failed or Redis cannot serve yet (every reply freed). */
static bool pipeline_read(const struct state_redis *sr, redisContext *c, redisReply **rep,
                          size_t ncmd, char *msg, size_t msz)
{
    memset(rep, 0, ncmd * sizeof(*rep));
    for (size_t i = 0; i < ncmd; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || !r) {
            lost_connection(sr, c, msg, msz);
            free_replies(rep, ncmd);
            return false;
        }
        rep[i] = r;
    }
    for (size_t i = 0; i < ncmd; i++) {
        if (reply_transient(rep[i])) {
            snprintf(msg, msz, "redis at %s cannot serve yet: %.120s", sr->where, rep[i]->str);
            free_replies(rep, ncmd);
            return false;
        }
    }
    return true;
}

/* Writes the ncmd commands at once and reads their replies into rep: one
 * round trip. True when every reply came; false with msg set when the
 * connection failed or Redis cannot serve yet (every reply freed). */
static bool pipeline_once(struct state_redis *sr, redisContext *c, const struct cmd *cmds,
                          size_t ncmd, redisReply **rep, char *msg, size_t msz)
{
    struct sigpipe_guard g;
    sigpipe_block(&g);
    bool ok = pipeline_write(c, cmds, ncmd);
    if (!ok)
        lost_connection(sr, c, msg, msz);
    else
        ok = pipeline_read(sr, c, rep, ncmd, msg, msz);
    sigpipe_restore(&g);
    return ok;
}

/* Runs ncmd commands in one pipeline, reconnecting with exponential backoff
 * while Redis is unreachable or cannot serve yet, for at most retry_for
 * seconds; every retry sends all of them again, so each must be safe to run
 * twice. 0 with rep[0..ncmd) set (the caller frees them; any may be an error
 * reply), else SL_ERR_RETRY (gave up) or SL_ERR_NOMEM with none set. Any
 * thread. */
static int run_pipeline(struct state_redis *sr, const struct cmd *cmds, size_t ncmd,
                        redisReply **rep)
{
    memset(rep, 0, ncmd * sizeof(*rep));
    struct conn *cn = conn_get(sr);
    if (!cn)
        return SL_ERR_NOMEM;
    double deadline = now_s() + sr->retry_for_s;
    long delay = BACKOFF_FIRST_MS;
    bool warned = false, fresh = true;
    int rc = 0;
    char msg[512];
    for (;;) {
        if (!cn->c)
            cn->c = conn_open(sr, msg, sizeof(msg));
        if (cn->c) {
            if (pipeline_once(sr, cn->c, cmds, ncmd, rep, msg, sizeof(msg)))
                break;
            redisFree(cn->c);
            cn->c = NULL;
            if (fresh) {
                /* A pooled connection may just be stale (the server restarted
                 * while it was idle): one new connection before backing off. */
                fresh = false;
                continue;
            }
        }
        fresh = false;
        if (!warned) {
            sl_warn("state", "%s; retrying for up to %.0f s", msg, sr->retry_for_s);
            warned = true;
        }
        double left = deadline - now_s();
        if (left <= 0) {
            sl_error("state", "%s; giving up after %.0f s", msg, sr->retry_for_s);
            rc = SL_ERR_RETRY;
            break;
        }
        sleep_ms(delay < left * 1000 ? delay : (long)(left * 1000) + 1);
        delay = delay * 2 < BACKOFF_MAX_MS ? delay * 2 : BACKOFF_MAX_MS;
    }
    if (rc == 0 && warned)
        sl_info("state", "redis at %s is back", sr->where);
    conn_put(sr, cn);
    return rc;
}

/* run_pipeline() of one command: its reply (the caller frees it; it may be
 * an error reply), or NULL with *rc SL_ERR_RETRY or SL_ERR_NOMEM. */
static redisReply *run_cmd(struct state_redis *sr, int argc, const char **argv,
                           const size_t *argvlen, int *rc)
{
    struct cmd cmd = {argc, argv, argvlen};
    redisReply *r = NULL;
    *rc = run_pipeline(sr, &cmd, 1, &r);
    return r;
}

/* ---- the ops ---------------------------------------------------------- */

static void job_key(const char *job_id, char *out, size_t n)
{
    snprintf(out, n, "sluice:job:%s:last_sha256", job_id);
}

static void run_key(const char *run_id, char *out, size_t n)
{
    snprintf(out, n, "sluice:run:%s:keys", run_id);
}

/* Whether job_id can be part of a key; when not, says that it cannot
 * <doing> ("cannot read last hash: job id ..."). */
static bool job_id_usable(const char *job_id, const char *doing)
{
    if (id_ok(job_id, JOB_ID_MAX))
        return true;
    sl_warn("state", "cannot %s: job id \"%s\" is not a safe name", doing,
            job_id ? job_id : "(null)");
    return false;
}

/* Runs a command that writes key, argv[0..argc): 0, SL_ERR_FATAL for an
 * error reply (logged), or SL_ERR_RETRY / SL_ERR_NOMEM as run_cmd. */
static int run_write(struct state_redis *sr, int argc, const char **argv, const char *key)
{
    int rc = 0;
    redisReply *r = run_cmd(sr, argc, argv, NULL, &rc);
    if (!r)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        sl_error("state", "could not write %s to redis at %s: %s", key, sr->where, r->str);
        rc = SL_ERR_FATAL;
    }
    freeReplyObject(r);
    return rc;
}

static int redis_get_last_sha(struct sl_state *st, const char *job_id, char out[65])
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!job_id_usable(job_id, "read last hash"))
        return SL_ERR_INVALID;
    char key[JOB_ID_MAX + 64];
    job_key(job_id, key, sizeof(key));
    const char *argv[2] = {"GET", key};
    int rc = 0;
    redisReply *r = run_cmd(sr, 2, argv, NULL, &rc);
    if (!r)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = SL_ERR_NOTFOUND;
    } else if (r->type == REDIS_REPLY_STRING && sha_ok(r->str, r->len)) {
        memcpy(out, r->str, 64);
        out[64] = '\0';
    } else if (r->type == REDIS_REPLY_ERROR) {
        sl_error("state", "could not read %s from redis at %s: %s", key, sr->where, r->str);
        rc = SL_ERR_FATAL;
    } else {
        /* Treating it as "never succeeded" would silently reprocess. */
        sl_error("state", "could not read %s from redis at %s: not a hex SHA-256", key, sr->where);
        rc = SL_ERR_PARSE;
    }
    freeReplyObject(r);
    return rc;
}

static int redis_set_last_sha(struct sl_state *st, const char *job_id, const char *sha256)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!job_id_usable(job_id, "store last hash"))
        return SL_ERR_INVALID;
    if (!sha256 || !sha_ok(sha256, strlen(sha256))) {
        sl_warn("state", "cannot store last hash of job %s: not a lowercase hex SHA-256", job_id);
        return SL_ERR_INVALID;
    }
    char key[JOB_ID_MAX + 64];
    job_key(job_id, key, sizeof(key));
    const char *argv[3] = {"SET", key, sha256};
    return run_write(sr, 3, argv, key);
}

/* The hash field of a key into field, *flen bytes: the key itself up to
 * FIELD_RAW_MAX bytes, else its SHA-256. False when hashing failed. */
static bool key_field(const char *key, size_t keylen, unsigned char field[32], size_t *flen)
{
    if (keylen <= FIELD_RAW_MAX) {
        if (keylen)
            memcpy(field, key, keylen);
        *flen = keylen;
        return true;
    }
    unsigned int mdlen = 0;
    if (!EVP_Digest(key, keylen, field, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return false;
    *flen = 32;
    return true;
}

/* v in decimal into out (no NUL); its length. */
static size_t u64_dec(uint64_t v, char out[24])
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void put_arg(const char **argv, size_t *lens, size_t *a, const char *arg, size_t len)
{
    argv[*a] = arg;
    lens[(*a)++] = len;
}

/* What one script call answers: a string of n bytes, each '0' or '1'. */
static bool script_reply_ok(const redisReply *r, size_t n)
{
    if (r->type != REDIS_REPLY_STRING || r->len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (r->str[i] != '0' && r->str[i] != '1')
            return false;
    return true;
}

/* One seen_keys() call: its commands (scripts of at most SCRIPT_KEYS_MAX
 * questions each) and, once asked, the connection their replies come on. */
struct sl_seen_call {
    struct state_redis *sr;
    char *run_id; /* for messages */
    size_t n, ncmd;
    struct cmd *cmds;
    redisReply **rep;
    size_t *lens;    /* of cmds[0]'s arguments: EVAL replaces EVALSHA */
    struct conn *cn; /* NULL: not sent (or failed): answer runs the pipeline itself */
    void *mem;       /* every argument, field and row text, the flags: one block */
};

static void call_free(struct sl_seen_call *call)
{
    if (!call)
        return;
    if (call->cn)
        conn_put(call->sr, call->cn);
    free(call->run_id);
    free(call->mem);
    free(call);
}

/* The commands of n questions of run_id into a new *out. */
static int call_build(struct state_redis *sr, const char *run_id, const struct sl_seen_query *q,
                      size_t n, struct sl_seen_call **out)
{
    if (!run_id || (n && !q))
        return SL_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!q[i].key && q[i].keylen)
            return SL_ERR_INVALID;
    if (strlen(run_id) > RUN_ID_MAX) {
        sl_warn("state", "cannot look up a key: run id longer than %d bytes", RUN_ID_MAX);
        return SL_ERR_INVALID;
    }
    struct sl_seen_call *call = calloc(1, sizeof(*call));
    if (!call || !(call->run_id = strdup(run_id))) {
        free(call);
        return SL_ERR_NOMEM;
    }
    call->sr = sr;
    call->n = n;
    char rkey[RUN_ID_MAX + 32], ttl[24];
    run_key(run_id, rkey, sizeof(rkey));
    size_t rkeylen = strlen(rkey);
    int ttllen = snprintf(ttl, sizeof(ttl), "%ld", sr->run_ttl_s);
    size_t ncmd = (n + SCRIPT_KEYS_MAX - 1) / SCRIPT_KEYS_MAX;
    size_t nargv = 6 * ncmd + 2 * n;
    /* every argument, its length, each question's field and row text, the
     * run's key and expiry, the add flags, the commands and their replies */
    struct item {
        unsigned char field[32];
        char row[24];
    };
    size_t bytes = nargv * (sizeof(char *) + sizeof(size_t)) + n * sizeof(struct item) +
                   ncmd * (sizeof(struct cmd) + sizeof(redisReply *)) + sizeof(rkey) + sizeof(ttl) +
                   n;
    void *mem = call->mem = malloc(bytes);
    if (!mem) {
        call_free(call);
        return SL_ERR_NOMEM;
    }
    const char **argv = mem;
    size_t *lens = call->lens = (size_t *)(argv + nargv);
    struct cmd *cmds = call->cmds = (struct cmd *)(lens + nargv);
    redisReply **rep = call->rep = (redisReply **)(cmds + ncmd);
    struct item *items = (struct item *)(rep + ncmd);
    char *keep = (char *)(items + n);
    char *flags = keep + sizeof(rkey) + sizeof(ttl);
    memcpy(keep, rkey, rkeylen + 1);
    memcpy(keep + sizeof(rkey), ttl, (size_t)ttllen + 1);
    call->ncmd = ncmd;
    size_t a = 0;
    for (size_t c = 0; c < ncmd; c++) {
        size_t from = c * SCRIPT_KEYS_MAX,
               to = from + SCRIPT_KEYS_MAX < n ? from + SCRIPT_KEYS_MAX : n;
        cmds[c] = (struct cmd){(int)(6 + 2 * (to - from)), argv + a, lens + a};
        put_arg(argv, lens, &a, "EVALSHA", 7);
        put_arg(argv, lens, &a, sr->script_sha, 40);
        put_arg(argv, lens, &a, "1", 1);
        put_arg(argv, lens, &a, keep, rkeylen);
        put_arg(argv, lens, &a, keep + sizeof(rkey), (size_t)ttllen);
        put_arg(argv, lens, &a, flags + from, to - from);
        size_t rows = a + (to - from); /* the rows follow the fields */
        for (size_t i = from; i < to; i++) {
            struct item *it = &items[i];
            size_t flen = 0;
            if (!key_field(q[i].key, q[i].keylen, it->field, &flen)) {
                sl_error("state", "could not hash a key: SHA-256 failed");
                call_free(call);
                return SL_ERR_FATAL;
            }
            flags[i] = q[i].add ? '1' : '0';
            put_arg(argv, lens, &a, (const char *)it->field, flen);
            put_arg(argv, lens, &rows, it->row, u64_dec(q[i].row, it->row));
        }
        a = rows;
    }
    *out = call;
    return 0;
}

/* Writes call's commands on a connection of its own, without waiting for
 * the replies. Any failure leaves call unsent: the answer retries. */
static void call_send(struct sl_seen_call *call)
{
    struct state_redis *sr = call->sr;
    struct conn *cn = conn_get(sr);
    if (!cn)
        return;
    char msg[256];
    if (!cn->c)
        cn->c = conn_open(sr, msg, sizeof(msg));
    struct sigpipe_guard g;
    sigpipe_block(&g);
    bool ok = cn->c && pipeline_write(cn->c, call->cmds, call->ncmd);
    sigpipe_restore(&g);
    if (!ok && cn->c) {
        redisFree(cn->c); /* a half-written pipeline: this connection is done */
        cn->c = NULL;
    }
    if (ok)
        call->cn = cn;
    else
        conn_put(sr, cn);
}

/* The replies of a sent call into call->rep: true when every one came and
 * none says Redis cannot serve yet; else the connection is dropped (the
 * answer runs the pipeline again, which says what went wrong if it lasts). */
static bool call_recv(struct sl_seen_call *call)
{
    struct conn *cn = call->cn;
    char msg[512];
    struct sigpipe_guard g;
    sigpipe_block(&g);
    bool ok = pipeline_read(call->sr, cn->c, call->rep, call->ncmd, msg, sizeof(msg));
    sigpipe_restore(&g);
    if (!ok) {
        redisFree(cn->c);
        cn->c = NULL;
    }
    call->cn = NULL;
    conn_put(call->sr, cn);
    return ok;
}

static int redis_seen_keys_answer(struct sl_state *st, struct sl_seen_call *call, int *out)
{
    (void)st;
    if (!call)
        return SL_ERR_INVALID;
    struct state_redis *sr = call->sr;
    int rc = 0;
    if (call->n && !out) {
        rc = SL_ERR_INVALID;
        goto out;
    }
    if (!call->ncmd)
        goto out;
    /* what was sent, else (not sent, connection lost, Redis loading) the
     * whole pipeline again with reconnects and backoff: each question asked
     * twice has the same answer */
    bool got = call->cn && call_recv(call);
    for (int attempt = 0;; attempt++) {
        if (!got && (rc = run_pipeline(sr, call->cmds, call->ncmd, call->rep)) != 0)
            goto out;
        got = false;
        bool noscript = false;
        for (size_t c = 0; c < call->ncmd; c++)
            noscript |= call->rep[c]->type == REDIS_REPLY_ERROR &&
                        !strncmp(call->rep[c]->str, "NOSCRIPT", 8);
        if (!noscript || attempt)
            break;
        /* A restarted or flushed server forgot the script: the first command
         * loads it with EVAL, the ones behind it in the pipeline find it. */
        free_replies(call->rep, call->ncmd);
        call->cmds[0].argv[0] = "EVAL";
        call->cmds[0].argv[1] = SEEN_SCRIPT;
        call->lens[0] = 4;
        call->lens[1] = sizeof(SEEN_SCRIPT) - 1;
    }
    for (size_t c = 0; c < call->ncmd && rc == 0; c++) {
        const redisReply *r = call->rep[c];
        size_t from = c * SCRIPT_KEYS_MAX, k = (size_t)(call->cmds[c].argc - 6) / 2;
        if (!script_reply_ok(r, k)) {
            sl_error("state", "could not look up %zu keys of run %s in redis at %s: %s", call->n,
                     call->run_id, sr->where,
                     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            rc = SL_ERR_FATAL;
            break;
        }
        for (size_t i = 0; i < k; i++)
            out[from + i] = r->str[i] == '1';
    }
    free_replies(call->rep, call->ncmd);
out:
    call_free(call);
    return rc;
}

static int redis_seen_keys_ask(struct sl_state *st, const char *run_id,
                               const struct sl_seen_query *q, size_t n, struct sl_seen_call **call)
{
    if (!call)
        return SL_ERR_INVALID;
    *call = NULL;
    int rc = call_build((struct state_redis *)st, run_id, q, n, call);
    if (rc == 0 && n)
        call_send(*call);
    return rc;
}

static int redis_seen_keys(struct sl_state *st, const char *run_id, const struct sl_seen_query *q,
                           size_t n, int *out)
{
    if (n && !out)
        return SL_ERR_INVALID;
    struct sl_seen_call *call = NULL;
    int rc = redis_seen_keys_ask(st, run_id, q, n, &call);
    return rc ? rc : redis_seen_keys_answer(st, call, out);
}

static int redis_seen_key(struct sl_state *st, const char *run_id, const char *key, size_t keylen,
                          uint64_t row, bool add)
{
    struct sl_seen_query q = {.key = key, .keylen = keylen, .row = row, .add = add};
    int seen = 0;
    int rc = redis_seen_keys(st, run_id, &q, 1, &seen);
    return rc ? rc : seen;
}

static int redis_end_run(struct sl_state *st, const char *run_id)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!run_id)
        return SL_ERR_INVALID;
    if (strlen(run_id) > RUN_ID_MAX)
        return 0; /* seen_key never stored such a run */
    char rkey[RUN_ID_MAX + 32];
    run_key(run_id, rkey, sizeof(rkey));
    /* UNLINK frees a big hash in the background instead of stalling Redis. */
    const char *argv[2] = {"UNLINK", rkey};
    int rc = 0;
    redisReply *r = run_cmd(sr, 2, argv, NULL, &rc);
    if (!r)
        return rc;
    if (r->type == REDIS_REPLY_ERROR) {
        sl_error("state", "could not delete %s in redis at %s: %s", rkey, sr->where, r->str);
        rc = SL_ERR_FATAL;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- live progress ------------------------------------------------------ */

#define PROGRESS_FIELDS_MAX 16
#define PROGRESS_TTL        "604800" /* 7 days */

static void progress_key(const char *run_id, char *out, size_t n)
{
    snprintf(out, n, "sluice:run:%s:progress", run_id);
}

/* Runs the ncmd commands once on a pooled connection (or, when that one
 * turns out stale, on a new one): no backoff, no wait for a Redis that is
 * away (the caller can do without). */
static int pipeline_try(struct state_redis *sr, const struct cmd *cmds, size_t ncmd,
                        redisReply **rep)
{
    struct conn *cn = conn_get(sr);
    if (!cn)
        return SL_ERR_NOMEM;
    char msg[512] = "";
    bool ok = false, pooled = cn->c != NULL;
    /* a pooled connection may be stale (Redis restarted): one new one */
    for (int attempt = 0; !ok && attempt < (pooled ? 2 : 1); attempt++) {
        if (!cn->c)
            cn->c = conn_open(sr, msg, sizeof(msg));
        ok = cn->c && pipeline_once(sr, cn->c, cmds, ncmd, rep, msg, sizeof(msg));
        if (!ok && cn->c) {
            redisFree(cn->c);
            cn->c = NULL;
        }
    }
    conn_put(sr, cn);
    if (!ok)
        sl_debug("state", "%s", msg);
    return ok ? 0 : SL_ERR_RETRY;
}

static int redis_progress_add(struct sl_state *st, const char *run_id, const char *const *fields,
                              const uint64_t *deltas, size_t n)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!run_id || strlen(run_id) > RUN_ID_MAX || n > PROGRESS_FIELDS_MAX)
        return SL_ERR_INVALID;
    char key[RUN_ID_MAX + 32], num[PROGRESS_FIELDS_MAX][24], now[24];
    progress_key(run_id, key, sizeof(key));
    const char *argv[PROGRESS_FIELDS_MAX + 2][4];
    struct cmd cmds[PROGRESS_FIELDS_MAX + 2];
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        num[i][u64_dec(deltas[i], num[i])] = '\0';
        argv[nc][0] = "HINCRBY", argv[nc][1] = key, argv[nc][2] = fields[i], argv[nc][3] = num[i];
        cmds[nc] = (struct cmd){4, argv[nc], NULL};
        nc++;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    now[u64_dec((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, now)] = '\0';
    argv[nc][0] = "HSET", argv[nc][1] = key, argv[nc][2] = "updated_ms", argv[nc][3] = now;
    cmds[nc] = (struct cmd){4, argv[nc], NULL};
    nc++;
    argv[nc][0] = "EXPIRE", argv[nc][1] = key, argv[nc][2] = PROGRESS_TTL;
    cmds[nc] = (struct cmd){3, argv[nc], NULL};
    nc++;
    redisReply *rep[PROGRESS_FIELDS_MAX + 2];
    int rc = pipeline_try(sr, cmds, nc, rep);
    if (rc)
        return rc;
    for (size_t i = 0; i < nc; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR && rc == 0) {
            sl_warn("state", "could not count the progress of run %s in redis at %s: %s", run_id,
                    sr->where, rep[i]->str);
            rc = SL_ERR_FATAL;
        }
    free_replies(rep, nc);
    return rc;
}

static int redis_progress_get(struct sl_state *st, const char *run_id,
                              void (*fn)(const char *field, uint64_t value, void *arg), void *arg)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!run_id || strlen(run_id) > RUN_ID_MAX)
        return 0;
    char key[RUN_ID_MAX + 32];
    progress_key(run_id, key, sizeof(key));
    const char *argv[2] = {"HGETALL", key};
    struct cmd cmd = {2, argv, NULL};
    redisReply *r = NULL;
    int rc = pipeline_try(sr, &cmd, 1, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (r->element[i]->type == REDIS_REPLY_STRING &&
                r->element[i + 1]->type == REDIS_REPLY_STRING)
                fn(r->element[i]->str, strtoull(r->element[i + 1]->str, NULL, 10), arg);
    } else if (r->type == REDIS_REPLY_ERROR) {
        rc = SL_ERR_FATAL;
    }
    freeReplyObject(r);
    return rc;
}

/* ---- source validators -------------------------------------------------- */

static const char *const VALIDATOR_FIELDS[5] = {"url_sha256", "etag", "last_modified", "sha256",
                                                "bytes"};

static void validators_key(const char *job_id, char *out, size_t n)
{
    snprintf(out, n, "sluice:job:%s:source_validators", job_id);
}

/* Whether s (n bytes) fits out[max] as text without control characters. */
static bool text_ok(const char *s, size_t n, size_t max)
{
    if (n >= max || memchr(s, '\0', n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static int redis_get_validators(struct sl_state *st, const char *job_id,
                                struct sl_source_validators *out)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!job_id_usable(job_id, "read source validators"))
        return SL_ERR_INVALID;
    char key[JOB_ID_MAX + 64];
    validators_key(job_id, key, sizeof(key));
    const char *argv[7] = {"HMGET", key};
    for (int i = 0; i < 5; i++)
        argv[2 + i] = VALIDATOR_FIELDS[i];
    int rc = 0;
    redisReply *r = run_cmd(sr, 7, argv, NULL, &rc);
    if (!r)
        return rc;
    memset(out, 0, sizeof(*out));
    if (r->type == REDIS_REPLY_ERROR) {
        sl_error("state", "could not read %s from redis at %s: %s", key, sr->where, r->str);
        rc = SL_ERR_FATAL;
    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        rc = SL_ERR_PARSE;
    } else if (r->element[0]->type == REDIS_REPLY_NIL) {
        rc = SL_ERR_NOTFOUND;
    } else {
        redisReply **e = r->element;
        char *dst[4] = {out->url_sha256, out->etag, out->last_modified, out->sha256};
        size_t max[4] = {65, sizeof(out->etag), sizeof(out->last_modified), 65};
        for (int i = 0; i < 5 && rc == 0; i++)
            if (e[i]->type != REDIS_REPLY_STRING ||
                (i < 4 && !text_ok(e[i]->str, e[i]->len, max[i])))
                rc = SL_ERR_PARSE;
        for (int i = 0; i < 4 && rc == 0; i++)
            memcpy(dst[i], e[i]->str, e[i]->len + 1);
        char *end = NULL;
        errno = 0;
        unsigned long long b = rc == 0 ? strtoull(e[4]->str, &end, 10) : 0;
        if (rc == 0 && (errno || end == e[4]->str || *end || e[4]->str[0] == '-' ||
                        !sha_ok(out->url_sha256, strlen(out->url_sha256)) ||
                        !sha_ok(out->sha256, strlen(out->sha256))))
            rc = SL_ERR_PARSE;
        out->bytes = b;
        if (rc == SL_ERR_PARSE)
            sl_warn("state", "ignoring %s in redis at %s: not a validators record", key, sr->where);
    }
    freeReplyObject(r);
    return rc;
}

static int redis_set_validators(struct sl_state *st, const char *job_id,
                                const struct sl_source_validators *v)
{
    struct state_redis *sr = (struct state_redis *)st;
    if (!job_id_usable(job_id, "store source validators"))
        return SL_ERR_INVALID;
    if (!v || !sha_ok(v->url_sha256, strnlen(v->url_sha256, 65)) ||
        !sha_ok(v->sha256, strnlen(v->sha256, 65)) ||
        !text_ok(v->etag, strnlen(v->etag, sizeof(v->etag)), sizeof(v->etag)) ||
        !text_ok(v->last_modified, strnlen(v->last_modified, sizeof(v->last_modified)),
                 sizeof(v->last_modified))) {
        sl_warn("state", "cannot store source validators of job %s: malformed", job_id);
        return SL_ERR_INVALID;
    }
    char key[JOB_ID_MAX + 64], bytes[24];
    validators_key(job_id, key, sizeof(key));
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)v->bytes);
    /* one HSET of every field: atomic, and no field of an older record stays */
    const char *argv[12] = {"HSET", key};
    const char *vals[5] = {v->url_sha256, v->etag, v->last_modified, v->sha256, bytes};
    for (int i = 0; i < 5; i++) {
        argv[2 + 2 * i] = VALIDATOR_FIELDS[i];
        argv[3 + 2 * i] = vals[i];
    }
    return run_write(sr, 12, argv, key);
}

static void redis_destroy(struct sl_state *st)
{
    struct state_redis *sr = (struct state_redis *)st;
    struct conn *cn, *next;
    for (cn = sr->idle; cn; cn = next) {
        next = cn->next;
        if (cn->c)
            redisFree(cn->c);
        free(cn);
    }
    pthread_cond_destroy(&sr->cv);
    pthread_mutex_destroy(&sr->mu);
    free(sr->host);
    free(sr->path);
    free(sr->user);
    if (sr->password) {
        explicit_bzero(sr->password, strlen(sr->password));
        free(sr->password);
    }
    free(sr);
}

static const struct sl_state_ops redis_ops = {
    .name = "redis",
    .get_last_sha = redis_get_last_sha,
    .set_last_sha = redis_set_last_sha,
    .seen_key = redis_seen_key,
    .end_run = redis_end_run,
    .destroy = redis_destroy,
    .seen_keys = redis_seen_keys,
    .seen_keys_ask = redis_seen_keys_ask,
    .seen_keys_answer = redis_seen_keys_answer,
    .get_validators = redis_get_validators,
    .set_validators = redis_set_validators,
    .progress_add = redis_progress_add,
    .progress_get = redis_progress_get,
};

/* A state store in Redis at url (NULL: SLUICE_REDIS_URL, else
 * redis://127.0.0.1:6379/0); see state.h for the url's form. Connects once so
 * that a wrong address or password fails at start. Returns NULL with errbuf
 * set on a bad url, when redis cannot be reached, or out of memory. The caller
 * owns the store (sl_state_destroy, once no op is running); every op may be
 * called from any thread. */
struct sl_state *sl_state_redis_new(const char *url, char *errbuf, size_t errsz)
{
    struct state_redis *sr = NULL;
    bool mu_ok = false, cv_ok = false;
    if (!url || !url[0])
        url = getenv("SLUICE_REDIS_URL");
    if (!url || !url[0])
        url = DEFAULT_URL;
    if (!(sr = calloc(1, sizeof(*sr)))) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not create redis state store: out of memory");
        return NULL;
    }
    sr->connect_s = DEFAULT_CONNECT_S;
    sr->timeout_s = DEFAULT_TIMEOUT_S;
    sr->retry_for_s = DEFAULT_RETRY_FOR_S;
    sr->run_ttl_s = DEFAULT_RUN_TTL_S;
    if (parse_url(sr, url, errbuf, errsz))
        goto fail;
    if (!(mu_ok = !pthread_mutex_init(&sr->mu, NULL)) ||
        !(cv_ok = !pthread_cond_init(&sr->cv, NULL))) {
        sl_seterr(errbuf, errsz, SL_ERR_FATAL,
                  "could not create redis state store: mutex init failed");
        goto fail;
    }
    unsigned char md[20];
    unsigned int mdlen = 0;
    if (!EVP_Digest(SEEN_SCRIPT, sizeof(SEEN_SCRIPT) - 1, md, &mdlen, EVP_sha1(), NULL) ||
        mdlen != 20) {
        sl_seterr(errbuf, errsz, SL_ERR_FATAL, "could not create redis state store: SHA-1 failed");
        goto fail;
    }
    sl_hex(md, 20, sr->script_sha);

    struct conn *cn = calloc(1, sizeof(*cn));
    if (!cn) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "could not create redis state store: out of memory");
        goto fail;
    }
    if (!(cn->c = conn_open(sr, errbuf ? errbuf : (char[1]){0}, errbuf ? errsz : 1))) {
        free(cn);
        goto fail;
    }
    sr->idle = cn;
    sr->nconn = 1;
    sr->base.ops = &redis_ops;
    return &sr->base;
fail:
    if (cv_ok)
        pthread_cond_destroy(&sr->cv);
    if (mu_ok)
        pthread_mutex_destroy(&sr->mu);
    free(sr->host);
    free(sr->path);
    free(sr->user);
    if (sr->password)
        explicit_bzero(sr->password, strlen(sr->password));
    free(sr->password);
    free(sr);
    return NULL;
}
