/*
 * The run ledger in the control plane (sink.h): a run's rejected rows and its
 * summary in PostgreSQL (sluice_runs, sluice_rejected_rows; control.c).
 *
 * Rejected rows are written in batches as one JSON array parameter
 * (jsonb_populate_recordset: parsed once, where json_populate_recordset
 * parsed each row's jsonb columns again), keyed by run and row, so a
 * redelivered rejection changes nothing. The run row is created when the
 * ledger opens and updated once when the run is final; the source header and
 * CSV delimiter are kept on it so that the error file can be rebuilt for
 * download. The finish that makes the run final also sends the run report
 * when the job asks for one (run_report.h), from the rows stored here, and
 * records what became of it (sluice_runs.report).
 *
 * Opening the ledger of a run again (the publisher closes the ledgers of
 * idle runs to bound its connections) changes nothing stored: the run row
 * is inserted only when missing, and a flush leaves nothing in memory. The
 * connection goes back to the idle pool (pg.h) when the ledger is destroyed
 * outside a transaction: a ledger leaves no session state behind.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/run_report.h"
#include "sluice/reader.h"
#include "sluice/sink.h"
#include "sluice/util.h"

#define BATCH_ROWS 1000
#define POOL_TAG   "ledger" /* no session state: any ledger may take the connection */

struct pg_ledger {
    struct sl_ledger base;
    PGconn *conn;
    char *conninfo; /* for the run report's own connection */
    char *run_id;
    struct sl_buf rows; /* a JSON array of the rejected rows not yet written */
    size_t nrows;
    char err[512];
};

static int flush_rows(struct pg_ledger *pl)
{
    if (!pl->nrows)
        return 0;
    if (sl_buf_putc(&pl->rows, ']'))
        return SL_ERR_NOMEM;
    const char *params[] = {pl->rows.data};
    int rc = sl_pg_exec(pl->conn, "store the rejected rows",
                        "INSERT INTO sluice_rejected_rows (run_id, row, errors, source) "
                        "SELECT run_id, row, errors, source FROM "
                        "jsonb_populate_recordset(NULL::sluice_rejected_rows, $1::jsonb) "
                        "ON CONFLICT (run_id, row) DO NOTHING",
                        1, params, NULL, pl->err, sizeof(pl->err));
    sl_buf_reset(&pl->rows);
    pl->nrows = 0;
    return rc;
}

static int pgl_reject(struct sl_ledger *lg, const struct sl_msg *m)
{
    struct pg_ledger *pl = (struct pg_ledger *)lg;
    struct sl_buf *b = &pl->rows;
    int rc = sl_buf_puts(b, pl->nrows ? ",{\"run_id\":" : "[{\"run_id\":");
    rc |= sl_buf_json_str(b, pl->run_id, strlen(pl->run_id));
    rc |= sl_buf_putc(b, ',');
    if (rc || sl_rejection_json(b, m) || sl_buf_putc(b, '}'))
        return SL_ERR_NOMEM;
    pl->nrows++;
    return pl->nrows >= BATCH_ROWS ? flush_rows(pl) : 0;
}

/* names[0..n) as a JSON array appended to b; 0 or non-zero out of memory. */
static int json_names(struct sl_buf *b, const char *const *names, size_t n)
{
    int rc = sl_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            rc |= sl_buf_putc(b, ',');
        rc |= sl_buf_json_str(b, names[i], strlen(names[i]));
    }
    return rc | sl_buf_putc(b, ']');
}

static int pgl_columns(struct sl_ledger *lg, const struct sl_run_event *ev)
{
    struct pg_ledger *pl = (struct pg_ledger *)lg;
    struct sl_buf b = SL_BUF_INIT, u = SL_BUF_INIT;
    int rc = json_names(&b, ev->columns, ev->ncolumns);
    rc |= json_names(&u, ev->unmapped, ev->nunmapped);
    char delim[2] = {ev->delimiter, '\0'};
    const char *params[] = {pl->run_id, b.data, ev->delimiter ? delim : NULL,
                            sl_encoding_name((enum sl_encoding)ev->encoding), u.data};
    if (rc == 0)
        rc = sl_pg_exec(pl->conn, "store the run's columns",
                        "UPDATE sluice_runs SET columns = $2::jsonb, delimiter = $3, "
                        "encoding = $4, unmapped_columns = $5::jsonb WHERE id = $1",
                        5, params, NULL, pl->err, sizeof(pl->err));
    else
        rc = SL_ERR_NOMEM;
    sl_buf_cleanup(&b);
    sl_buf_cleanup(&u);
    return rc;
}

/* A run report to send: what it needs once the ledger is gone, with a
 * connection of its own (a report may take minutes: retries with backoff,
 * a slow SMTP server), so that the publisher goes on meanwhile. */
struct report_task {
    PGconn *conn;
    char *run_id;
    const struct sl_job *job;          /* the registry's: lives as long as the process */
    const struct sl_smtp_config *smtp; /* the service's: the same */
    struct sl_run_summary sum;         /* its strings owned below */
    char *s_job, *s_status, *s_reason, *s_sha;
};

/* Reports being sent by threads now: more wait for one (backpressure). */
#define REPORT_THREADS 4
static atomic_int reports_inflight;

static void task_free(struct report_task *t)
{
    if (!t)
        return;
    if (t->conn)
        PQfinish(t->conn);
    free(t->run_id);
    free(t->s_job);
    free(t->s_status);
    free(t->s_reason);
    free(t->s_sha);
    free(t);
}

/* The stored rejected rows of a run, a page at a time, in row order. */
struct rows_page {
    struct report_task *t;
    PGresult *res;
    int at;
    char after[24]; /* the last row handed over */
    bool done;
};

static int next_row(void *ud, json_t **row, char *errbuf, size_t errsz)
{
    struct rows_page *rp = ud;
    *row = NULL;
    if (rp->res && rp->at >= PQntuples(rp->res)) {
        rp->done = PQntuples(rp->res) < BATCH_ROWS;
        PQclear(rp->res);
        rp->res = NULL;
    }
    if (!rp->res && !rp->done) {
        const char *params[] = {rp->t->run_id, rp->after};
        int rc = sl_pg_exec(rp->t->conn, "read the rejected rows",
                            "SELECT row, errors::text, source::text FROM sluice_rejected_rows "
                            "WHERE run_id = $1 AND row > $2::bigint ORDER BY row LIMIT 1000",
                            2, params, &rp->res, errbuf, errsz);
        if (rc)
            return rc;
        rp->at = 0;
    }
    if (!rp->res || rp->at >= PQntuples(rp->res))
        return 0;
    int i = rp->at++;
    snprintf(rp->after, sizeof(rp->after), "%s", PQgetvalue(rp->res, i, 0));
    json_t *errors = json_loads(PQgetvalue(rp->res, i, 1), 0, NULL);
    json_t *source = json_loads(PQgetvalue(rp->res, i, 2), 0, NULL);
    *row = json_pack("{s:I,s:o*,s:o*}", "row", (json_int_t)strtoll(rp->after, NULL, 10), "errors",
                     errors, "source", source);
    return *row ? 0 : sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
}

/* Sends the report of task's run and records its outcome. */
static void send_report(struct report_task *t)
{
    char err[512] = "";
    const char *params[] = {t->run_id, NULL};
    PGresult *res = NULL;
    json_t *columns = NULL;
    if (sl_pg_exec(t->conn, "read the run's columns",
                   "SELECT columns::text FROM sluice_runs WHERE id = $1", 1, params, &res, err,
                   sizeof(err)) == 0 &&
        PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
        columns = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    PQclear(res);
    size_t ncols = json_array_size(columns);
    const char **cols = ncols ? calloc(ncols, sizeof(char *)) : NULL;
    for (size_t i = 0; cols && i < ncols; i++)
        cols[i] = json_string_value(json_array_get(columns, i));
    const char *tmpdir = getenv("TMPDIR");
    char dirbuf[512];
    snprintf(dirbuf, sizeof(dirbuf), "%s/sluice-report-XXXXXX",
             tmpdir && tmpdir[0] ? tmpdir : "/tmp");
    char *d = mkdtemp(dirbuf);
    struct rows_page rp = {.t = t, .after = "0"};
    struct sl_report_rows rows = {
        .next = next_row, .ud = &rp, .columns = cols, .ncolumns = cols ? ncols : 0};
    json_t *out =
        sl_run_report_send(t->job, &t->sum, t->smtp, d ? &rows : NULL, d ? d : "/nonexistent");
    PQclear(rp.res);
    if (d) { /* the attachment went out (or not): nothing of it is kept */
        DIR *dh = opendir(d);
        struct dirent *de;
        while (dh && (de = readdir(dh)))
            if (de->d_name[0] != '.') {
                char p[1024];
                snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
                unlink(p);
            }
        if (dh)
            closedir(dh);
        rmdir(d);
    }
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    params[1] = text;
    if (text && sl_pg_exec(t->conn, "record the run report",
                           "UPDATE sluice_runs SET report = $2::jsonb WHERE id = $1", 2, params,
                           NULL, err, sizeof(err)))
        sl_warn("report", "run %s: %s", t->run_id, err);
    free(text);
    json_decref(out);
    free(cols);
    json_decref(columns);
}

static void *report_main(void *arg)
{
    struct report_task *t = arg;
    send_report(t);
    task_free(t);
    atomic_fetch_sub(&reports_inflight, 1);
    return NULL;
}

/* Starts the report of the run pl finished (s): on a thread of its own with
 * its own connection, else (no connection, too many reports under way) here. */
static void start_report(struct pg_ledger *pl, const struct sl_run_summary *s)
{
    struct report_task *t = calloc(1, sizeof(*t));
    if (!t || !(t->run_id = strdup(pl->run_id)) || (s->job && !(t->s_job = strdup(s->job))) ||
        (s->status && !(t->s_status = strdup(s->status))) ||
        (s->reason && !(t->s_reason = strdup(s->reason))) ||
        (s->sha256 && !(t->s_sha = strdup(s->sha256)))) {
        sl_error("report", "run %s: out of memory: no report", pl->run_id);
        task_free(t);
        return;
    }
    t->job = pl->base.job;
    t->smtp = pl->base.smtp;
    t->sum = *s;
    t->sum.run_id = t->run_id;
    t->sum.job = t->s_job;
    t->sum.status = t->s_status;
    t->sum.reason = t->s_reason;
    t->sum.sha256 = t->s_sha;
    const char *params[] = {pl->run_id};
    char err[512];
    sl_pg_exec(pl->conn, "record the run report", /* seen until the thread says more */
               "UPDATE sluice_runs SET report = '{\"status\": \"sending\"}' WHERE id = $1", 1,
               params, NULL, err, sizeof(err));
    if (atomic_fetch_add(&reports_inflight, 1) < REPORT_THREADS && pl->conninfo &&
        (t->conn = sl_pg_connect(pl->conninfo, SL_PG_CONNECT_TIMEOUT, err, sizeof(err)))) {
        pthread_t tid;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int started = pthread_create(&tid, &attr, report_main, t) == 0;
        pthread_attr_destroy(&attr);
        if (started)
            return;
    }
    atomic_fetch_sub(&reports_inflight, 1);
    /* here and now, on the ledger's connection */
    if (t->conn)
        PQfinish(t->conn);
    t->conn = pl->conn;
    send_report(t);
    t->conn = NULL;
    task_free(t);
}

static int pgl_finish(struct sl_ledger *lg, const struct sl_run_summary *s, char *errbuf,
                      size_t errsz)
{
    struct pg_ledger *pl = (struct pg_ledger *)lg;
    int rc = flush_rows(pl);
    if (rc)
        return sl_seterr(errbuf, errsz, rc, "%s", pl->err);
    const struct sl_counts *c = &s->counts;
    char counts[512], started[32], finished[32], bytes[24];
    snprintf(counts, sizeof(counts),
             "{\"read\":%llu,\"published\":%llu,\"created\":%llu,\"updated\":%llu,"
             "\"unchanged\":%llu,\"rejected\":%llu,\"duplicates\":%llu,\"not_created\":%llu}",
             (unsigned long long)c->read, (unsigned long long)c->published,
             (unsigned long long)c->created, (unsigned long long)c->updated,
             (unsigned long long)c->unchanged, (unsigned long long)c->rejected,
             (unsigned long long)c->duplicates, (unsigned long long)c->not_created);
    sl_format_utc(s->started_at, true, started);
    sl_format_utc(s->finished_at, true, finished);
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)s->bytes);
    const char *params[] = {pl->run_id, s->status, s->reason, started,
                            finished,   s->sha256, bytes,     counts};
    PGresult *res = NULL;
    rc = sl_pg_exec(pl->conn, "finish the run",
                    "UPDATE sluice_runs SET status = $2, reason = $3, "
                    "started_at = $4::timestamptz, finished_at = $5::timestamptz, "
                    "source_sha256 = $6, source_bytes = $7::bigint, counts = $8::jsonb "
                    "WHERE id = $1 AND status IN ('queued', 'running')",
                    8, params, &res, errbuf, errsz);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = 1; /* final already: the first finish stays */
    PQclear(res);
    /* the run is final once: its report goes out once, after (a crash
     * between the two loses the report, never the run) */
    if (rc == 0 && sl_run_report_due(lg->job, s))
        start_report(pl, s);
    return rc;
}

static int pgl_flush(struct sl_ledger *lg, char *errbuf, size_t errsz)
{
    struct pg_ledger *pl = (struct pg_ledger *)lg;
    int rc = flush_rows(pl);
    return rc ? sl_seterr(errbuf, errsz, rc, "%s", pl->err) : 0;
}

static void pgl_destroy(struct sl_ledger *lg)
{
    struct pg_ledger *pl = (struct pg_ledger *)lg;
    if (pl->conn && pl->conninfo)
        sl_pg_pool_put(pl->conn, pl->conninfo, POOL_TAG);
    else if (pl->conn)
        PQfinish(pl->conn);
    free(pl->run_id);
    free(pl->conninfo);
    sl_buf_cleanup(&pl->rows);
    free(pl);
}

static const struct sl_ledger_ops pg_ledger_ops = {
    .name = "postgres",
    .reject = pgl_reject,
    .columns = pgl_columns,
    .finish = pgl_finish,
    .destroy = pgl_destroy,
    .flush = pgl_flush,
};

struct sl_ledger *sl_ledger_postgres_open(const char *conninfo, const struct sl_job *job,
                                          const char *run_id, const char *trigger, char *errbuf,
                                          size_t errsz)
{
    struct pg_ledger *pl = calloc(1, sizeof(*pl));
    if (!pl || !(pl->run_id = strdup(run_id)) || !(pl->conninfo = strdup(conninfo))) {
        if (pl)
            free(pl->run_id);
        free(pl);
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pl->base.ops = &pg_ledger_ops;
    pl->base.job = job;
    if (!(pl->conn = sl_pg_pool_get(conninfo, POOL_TAG)) &&
        !(pl->conn = sl_pg_connect(conninfo, SL_PG_CONNECT_TIMEOUT, errbuf, errsz)))
        goto fail;
    char ver[24];
    snprintf(ver, sizeof(ver), "%u", job->version);
    const char *params[] = {run_id, job->id, ver, trigger ? trigger : "unknown"};
    if (sl_pg_exec(pl->conn, "record the run",
                   "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status) "
                   "VALUES ($1, $2, $3::integer, $4, 'running') ON CONFLICT (id) DO NOTHING",
                   4, params, NULL, errbuf, errsz))
        goto fail;
    return &pl->base;
fail:
    pgl_destroy(&pl->base);
    return NULL;
}
