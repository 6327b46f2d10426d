/*
 * libpq helpers (pg.h): connecting with a timeout and a message naming the
 * server, running statements with PostgreSQL's error text, and identifier
 * quoting. Every module that talks to PostgreSQL goes through these, so that
 * messages and error classes read the same everywhere. The idle pool is a
 * short array under a mutex: it holds at most SL_PG_POOL_MAX connections,
 * each matched by its conninfo and tag exactly.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/msg.h"
#include "sluice/pg.h"

static void first_line(const char *msg, char *out, size_t outsz)
{
    if (!outsz)
        return;
    if (!msg)
        msg = "";
    /* libpq prefixes some messages with "ERROR:  " or "FATAL:  " */
    if (!strncmp(msg, "ERROR:  ", 8) || !strncmp(msg, "FATAL:  ", 8))
        msg += 8;
    size_t n = strcspn(msg, "\n");
    while (n && (msg[n - 1] == ' ' || msg[n - 1] == '\r'))
        n--;
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, msg, n);
    out[n] = '\0';
    if (!n)
        snprintf(out, outsz, "unknown error");
}

void sl_pg_message(PGconn *conn, const PGresult *res, char *out, size_t outsz)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg && res)
        msg = PQresultErrorMessage(res);
    if ((!msg || !*msg) && conn)
        msg = PQerrorMessage(conn);
    first_line(msg, out, outsz);
}

void sl_pg_where(const char *conninfo, char *out, size_t outsz)
{
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "hostaddr"))
            hostaddr = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
    }
    if (!host)
        host = hostaddr;
    if (!host)
        host = getenv("PGHOST");
    if (!host || !*host)
        host = "/var/run/postgresql"; /* Debian libpq's socket directory */
    if (!port)
        port = getenv("PGPORT");
    if (!port || !*port)
        port = "5432";
    snprintf(out, outsz, "%s:%s", host, port);
    PQconninfoFree(opts);
}

static void notice_sink(void *arg, const char *message)
{
    (void)arg;
    char line[256];
    first_line(message, line, sizeof(line));
    sl_debug("postgres", "%s", line);
}

PGconn *sl_pg_connect(const char *conninfo, int timeout_s, char *errbuf, size_t errsz)
{
    char where[256], tmo[16], msg[512];
    if (!conninfo)
        conninfo = "";
    sl_pg_where(conninfo, where, sizeof(where));
    /* a bare word is a database name to libpq; anything else must parse */
    bool uri = !strncmp(conninfo, "postgresql://", 13) || !strncmp(conninfo, "postgres://", 11);
    char *perr = NULL;
    PQconninfoOption *opts =
        uri || strchr(conninfo, '=') ? PQconninfoParse(conninfo, &perr) : PQconndefaults();
    if (!opts) {
        first_line(perr ? perr : "out of memory", msg, sizeof(msg));
        PQfreemem(perr);
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "invalid postgresql connection string: %s", msg);
        return NULL;
    }
    PQconninfoFree(opts);
    snprintf(tmo, sizeof(tmo), "%d", timeout_s > 0 ? timeout_s : SL_PG_CONNECT_TIMEOUT);
    /* Later keywords win: the defaults come before conninfo (dbname is
     * expanded into its settings), the client encoding after it. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding",
                                NULL};
    const char *const vals[] = {tmo, "sluice", conninfo, "UTF8", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM,
                  "could not connect to postgresql at %s: out of memory", where);
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        /* libpq: 'connection to server at "h" (a), port p failed: reason' */
        const char *e = PQerrorMessage(conn);
        const char *why = strstr(e, "failed: ");
        first_line(why ? why + 8 : e, msg, sizeof(msg));
        sl_seterr(errbuf, errsz, SL_ERR_RETRY, "could not connect to postgresql at %s: %s", where,
                  msg);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, notice_sink, NULL);
    return conn;
}

int sl_pg_error_class(PGconn *conn, const PGresult *res)
{
    if (conn && PQstatus(conn) == CONNECTION_BAD)
        return SL_ERR_RETRY;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strlen(state) != 5)
        return res && PQresultStatus(res) == PGRES_FATAL_ERROR ? SL_ERR_FATAL : SL_ERR_RETRY;
    if (!strncmp(state, "08", 2) || !strncmp(state, "40", 2) || !strncmp(state, "53", 2) ||
        !strncmp(state, "57P", 3))
        return SL_ERR_RETRY;
    if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2))
        return SL_ERR_INVALID;
    return SL_ERR_FATAL;
}

int sl_pg_exec(PGconn *conn, const char *what, const char *sql, int n, const char *const *params,
               PGresult **res, char *errbuf, size_t errsz)
{
    if (res)
        *res = NULL;
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (res)
            *res = r;
        else
            PQclear(r);
        return 0;
    }
    char msg[512];
    sl_pg_message(conn, r, msg, sizeof(msg));
    int err = r ? sl_pg_error_class(conn, r) : SL_ERR_RETRY;
    if (!r && PQstatus(conn) != CONNECTION_BAD && !strcmp(msg, "unknown error"))
        err = SL_ERR_NOMEM;
    sl_seterr(errbuf, errsz, err, "cannot %s: %s", what, msg);
    PQclear(r);
    return err;
}

int sl_pg_put_ident(struct sl_buf *b, PGconn *conn, const char *name)
{
    char *q = PQescapeIdentifier(conn, name, strlen(name));
    if (!q)
        return SL_ERR_INVALID;
    int rc = sl_buf_puts(b, q);
    PQfreemem(q);
    return rc ? SL_ERR_NOMEM : 0;
}

/* ---- the idle pool ------------------------------------------------------ */

struct pooled {
    PGconn *conn;
    char *conninfo, *tag;
    int64_t since; /* unix microseconds */
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pooled pool[SL_PG_POOL_MAX];
static size_t pool_n;
static unsigned long long pool_hits;

/* Takes entry i out of the pool (the caller owns its connection). */
static PGconn *pool_take(size_t i)
{
    PGconn *conn = pool[i].conn;
    free(pool[i].conninfo);
    free(pool[i].tag);
    pool[i] = pool[--pool_n];
    pool[pool_n] = (struct pooled){0};
    return conn;
}

/* Closes the connections idle too long; under pool_mu. Returns them in
 * out[0..*n) to be PQfinish()ed outside the lock. */
static void pool_expire(int64_t now, PGconn **out, size_t *n)
{
    for (size_t i = 0; i < pool_n;) {
        if (now - pool[i].since >= (int64_t)SL_PG_POOL_IDLE_S * 1000000)
            out[(*n)++] = pool_take(i);
        else
            i++;
    }
}

PGconn *sl_pg_pool_get(const char *conninfo, const char *tag)
{
    PGconn *conn = NULL, *old[SL_PG_POOL_MAX];
    size_t nold = 0;
    if (!conninfo)
        conninfo = "";
    pthread_mutex_lock(&pool_mu);
    pool_expire(sl_now_us(), old, &nold);
    /* the newest of the kind: the least likely to have timed out anywhere */
    size_t best = pool_n;
    for (size_t i = 0; i < pool_n; i++)
        if (!strcmp(pool[i].conninfo, conninfo) && !strcmp(pool[i].tag, tag) &&
            (best == pool_n || pool[i].since > pool[best].since))
            best = i;
    if (best < pool_n) {
        conn = pool_take(best);
        pool_hits++;
    }
    pthread_mutex_unlock(&pool_mu);
    for (size_t i = 0; i < nold; i++)
        PQfinish(old[i]);
    return conn;
}

void sl_pg_pool_put(PGconn *conn, const char *conninfo, const char *tag)
{
    if (!conn)
        return;
    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE) {
        PQfinish(conn);
        return;
    }
    char *ci = strdup(conninfo ? conninfo : ""), *tg = strdup(tag);
    if (!ci || !tg) {
        free(ci);
        free(tg);
        PQfinish(conn);
        return;
    }
    PGconn *old[SL_PG_POOL_MAX + 1];
    size_t nold = 0;
    int64_t now = sl_now_us();
    pthread_mutex_lock(&pool_mu);
    pool_expire(now, old, &nold);
    if (pool_n == SL_PG_POOL_MAX) { /* the oldest makes room */
        size_t oldest = 0;
        for (size_t i = 1; i < pool_n; i++)
            if (pool[i].since < pool[oldest].since)
                oldest = i;
        old[nold++] = pool_take(oldest);
    }
    pool[pool_n++] = (struct pooled){.conn = conn, .conninfo = ci, .tag = tg, .since = now};
    pthread_mutex_unlock(&pool_mu);
    for (size_t i = 0; i < nold; i++)
        PQfinish(old[i]);
}

size_t sl_pg_pool_idle(void)
{
    pthread_mutex_lock(&pool_mu);
    size_t n = pool_n;
    pthread_mutex_unlock(&pool_mu);
    return n;
}

unsigned long long sl_pg_pool_reused(void)
{
    pthread_mutex_lock(&pool_mu);
    unsigned long long n = pool_hits;
    pthread_mutex_unlock(&pool_mu);
    return n;
}

void sl_pg_pool_clear(void)
{
    PGconn *old[SL_PG_POOL_MAX];
    size_t nold = 0;
    pthread_mutex_lock(&pool_mu);
    while (pool_n)
        old[nold++] = pool_take(pool_n - 1);
    pthread_mutex_unlock(&pool_mu);
    for (size_t i = 0; i < nold; i++)
        PQfinish(old[i]);
}
