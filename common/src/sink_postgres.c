/*
 * The PostgreSQL destination (sink.h): a run's valid records upserted,
 * appended or mirrored into one table.
 *
 * Opening the sink prepares the table under an advisory lock: created when
 * missing (one column per attribute, typed as JOBS.md says, plus the
 * bookkeeping column _sluice_run naming the run that last wrote the row, and
 * a unique index on the key); an existing table keeps its columns and their
 * types, gets the attribute columns it lacks added, and the unique index when
 * no unique index covers exactly the key. Other columns of an existing table
 * are left alone (they must be nullable or have defaults).
 *
 * write() buffers records as COPY text; a batch (BATCH_ROWS records or
 * BATCH_BYTES) is COPYed into a temporary table and applied with one
 * statement that also counts, against the table as it was before the
 * statement, which keys were absent, changed or unchanged. A key seen again in
 * the same batch replaces the earlier record there (ON CONFLICT cannot touch
 * one row twice); the earlier one is counted as an update, as the file sink
 * does. Because results are only known when a batch is applied, write() says
 * SL_WRITE_CREATED provisionally and counts() gives the real tallies.
 *
 * Every batch of a run goes into one transaction: commit() and
 * finish(success) commit it, finish(false) rolls back what is not yet
 * committed. Batches that commit() already committed stay (the publisher's
 * exactly-once bookkeeping will join the same transaction in a later step).
 * With sync mirror, finish(success) deletes the rows that this run did not
 * write (_sluice_run differs) in the same transaction as the last batch.
 *
 * Identifiers are always quoted with PQescapeIdentifier; values only travel
 * as COPY data or statement parameters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/sink.h"

#define BATCH_ROWS  5000
#define BATCH_BYTES (8u << 20)
#define NSLOT       16384 /* hash slots of a batch's keys: > 3 * BATCH_ROWS, a power of two */
#define RUN_COL     "_sluice_run"
#define DUPS_COL    "_sluice_dups"
#define BATCH_TABLE "pg_temp._sluice_batch"
#define APPLY_STMT  "sluice_apply"

/* One buffered record: its COPY text and its key in the batch buffers. */
struct brow {
    size_t off, len;   /* in rows */
    size_t koff, klen; /* in keys; klen 0: no key (append, or a key value missing) */
    uint32_t dups;     /* earlier records of the batch this one replaced */
    bool dead;         /* replaced by a later record of the same key */
};

struct pg_sink {
    struct sl_sink base;
    PGconn *conn;
    char *run_id;
    char where[256];            /* host:port for messages */
    char *what;                 /* "write to table \"t\" at host:port" */
    const struct sl_attr **col; /* the attributes written: mapped, defaulted or key */
    size_t ncol;
    bool keyed; /* upsert or mirror: applied by key, deduplicated per batch */
    bool in_tx, failed, finished;
    struct sl_buf rows, keys;
    struct brow *row;
    size_t nrow, crow, nlive;
    uint32_t *slot; /* row index + 1; 0: empty */
    struct sl_counts counts;
    char err[512];
};

/* ---- helpers ------------------------------------------------------------ */

static const char *pg_type_of(enum sl_type t)
{
    switch (t) {
    case SL_TYPE_INTEGER:
        return "bigint";
    case SL_TYPE_DECIMAL:
        return "numeric";
    case SL_TYPE_BOOLEAN:
        return "boolean";
    case SL_TYPE_DATE:
        return "date";
    case SL_TYPE_DATETIME:
        return "timestamptz";
    case SL_TYPE_CURRENCY:
        return "char(3)";
    default:
        return "text";
    }
}

/* The value of attribute i of the job in rec (mapped records carry them in
 * job order; anything else is matched by name); NULL when missing. */
static const char *value_of(const struct sl_record *r, const struct sl_attr *a, size_t i)
{
    if (i < r->nattr && (r->attr[i].name == a->name || !strcmp(r->attr[i].name, a->name)))
        return r->attr[i].value;
    for (uint32_t k = 0; k < r->nattr; k++)
        if (!strcmp(r->attr[k].name, a->name))
            return r->attr[k].value;
    return NULL;
}

/* Length of the valid UTF-8 sequence at s, 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if ((s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

/* One value in COPY text format; invalid UTF-8 becomes U+FFFD, as in the
 * NDJSON sink, rather than failing the whole batch at the server. */
static int copy_value(struct sl_buf *b, const char *v)
{
    if (!v)
        return sl_buf_append(b, "\\N", 2);
    if (sl_buf_reserve(b, strlen(v) + 16))
        return SL_ERR_NOMEM;
    const unsigned char *s = (const unsigned char *)v;
    int rc = 0;
    while (*s && rc == 0) {
        const unsigned char *run = s;
        size_t n;
        while (*s && *s != '\\' && *s != '\n' && *s != '\r' && *s != '\t' && (n = utf8_len(s)))
            s += n;
        if (s > run)
            rc = sl_buf_append(b, run, (size_t)(s - run));
        if (!*s || rc)
            break;
        switch (*s) {
        case '\\':
            rc = sl_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            rc = sl_buf_append(b, "\\n", 2);
            break;
        case '\r':
            rc = sl_buf_append(b, "\\r", 2);
            break;
        case '\t':
            rc = sl_buf_append(b, "\\t", 2);
            break;
        default:
            rc = sl_buf_append(b, "\xEF\xBF\xBD", 3);
            break;
        }
        s++;
    }
    return rc ? SL_ERR_NOMEM : 0;
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Whether name is one of the job's key attributes. */
static bool is_key(const struct sl_job *job, const char *name)
{
    for (size_t k = 0; k < job->nkey; k++)
        if (!strcmp(job->key[k], name))
            return true;
    return false;
}

/* Appends the quoted column names of the written attributes, each prefixed
 * with prefix ("t." or ""), separated by ", ". keys: only key attributes
 * (true) or only the others (false), or all (-1). */
static int put_cols(struct pg_sink *ps, struct sl_buf *b, const char *prefix, int keys)
{
    const struct sl_job *job = ps->base.job;
    bool first = true;
    for (size_t i = 0; i < ps->ncol; i++) {
        if (keys >= 0 && is_key(job, ps->col[i]->name) != (keys == 1))
            continue;
        if ((!first && sl_buf_puts(b, ", ")) || sl_buf_puts(b, prefix))
            return SL_ERR_NOMEM;
        int rc = sl_pg_put_ident(b, ps->conn, ps->col[i]->name);
        if (rc)
            return rc;
        first = false;
    }
    return 0;
}

/* ps->err = "cannot WHAT: reason" (from sl_pg_exec) and the sink failed. */
static int fail(struct pg_sink *ps, int err)
{
    ps->failed = true;
    sl_error("postgres", "%s", ps->err);
    return err ? err : SL_ERR_FATAL;
}

static int exec_simple(struct pg_sink *ps, const char *sql)
{
    int rc = sl_pg_exec(ps->conn, ps->what, sql, 0, NULL, NULL, ps->err, sizeof(ps->err));
    return rc ? fail(ps, rc) : 0;
}

/* ---- preparing the table ------------------------------------------------ */

struct setup {
    struct pg_sink *ps;
    const char *table; /* as named */
    struct sl_buf tq;  /* quoted table name */
    struct sl_buf sql;
    char what[400];
};

static int setup_exec(struct setup *su, const char *sql, int n, const char *const *params,
                      PGresult **res, char *errbuf, size_t errsz)
{
    return sl_pg_exec(su->ps->conn, su->what, sql, n, params, res, errbuf, errsz);
}

static int create_table(struct setup *su, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = su->ps;
    const struct sl_job *job = ps->base.job;
    struct sl_buf *b = &su->sql;
    int rc = 0;
    sl_buf_reset(b);
    rc |= sl_buf_puts(b, "CREATE TABLE IF NOT EXISTS ");
    rc |= sl_buf_puts(b, su->tq.data);
    rc |= sl_buf_puts(b, " (");
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        if ((rc = sl_pg_put_ident(b, ps->conn, job->attrs[i].name)))
            return sl_seterr(errbuf, errsz, rc, "cannot %s: attribute name is not valid UTF-8",
                             su->what);
        rc |= sl_buf_printf(b, " %s, ", pg_type_of(job->attrs[i].type));
    }
    rc |= sl_buf_puts(b, RUN_COL " text)");
    if (rc)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    return setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz);
}

/* Adds the attribute columns (and the bookkeeping column) that an existing
 * table lacks; existing columns keep their types. */
static int add_columns(struct setup *su, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = su->ps;
    const struct sl_job *job = ps->base.job;
    const char *params[] = {su->tq.data};
    PGresult *res;
    int rc = setup_exec(su,
                        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                        "AND attnum > 0 AND NOT attisdropped",
                        1, params, &res, errbuf, errsz);
    if (rc)
        return rc;
    int nt = PQntuples(res);
    for (size_t i = 0; i <= job->nattrs && rc == 0; i++) {
        const char *name = i < job->nattrs ? job->attrs[i].name : RUN_COL;
        const char *type = i < job->nattrs ? pg_type_of(job->attrs[i].type) : "text";
        bool have = false;
        for (int t = 0; t < nt && !have; t++)
            have = !strcmp(PQgetvalue(res, t, 0), name);
        if (have)
            continue;
        struct sl_buf *b = &su->sql;
        sl_buf_reset(b);
        if (sl_buf_puts(b, "ALTER TABLE ") || sl_buf_puts(b, su->tq.data) ||
            sl_buf_puts(b, " ADD COLUMN IF NOT EXISTS ") || sl_pg_put_ident(b, ps->conn, name) ||
            sl_buf_printf(b, " %s", type)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            break;
        }
        sl_info("postgres", "table %s: adding column %s %s", su->table, name, type);
        rc = setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz);
    }
    PQclear(res);
    return rc;
}

/* Creates a unique index on the key unless a valid, non-partial unique
 * index on exactly the key columns exists (ON CONFLICT needs one). */
static int key_index(struct setup *su, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = su->ps;
    const struct sl_job *job = ps->base.job;
    struct sl_buf *b = &su->sql;
    const char **params = calloc(job->nkey + 1, sizeof(*params));
    if (!params)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    int rc = 0;
    sl_buf_reset(b);
    rc |= sl_buf_puts(b, "SELECT count(*) FROM pg_index i WHERE i.indrelid = $1::regclass "
                         "AND i.indisunique AND i.indisvalid AND i.indpred IS NULL "
                         "AND i.indexprs IS NULL AND (SELECT array_agg(a.attname::text ORDER BY "
                         "a.attname::text) FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS "
                         "k(num, ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
                         "a.attnum = k.num WHERE k.ord <= i.indnkeyatts) = (SELECT "
                         "array_agg(x ORDER BY x) FROM unnest(ARRAY[");
    params[0] = su->tq.data;
    for (size_t k = 0; k < job->nkey; k++) {
        rc |= sl_buf_printf(b, "%s$%zu", k ? ", " : "", k + 2);
        params[k + 1] = job->key[k];
    }
    rc |= sl_buf_puts(b, "]::text[]) AS x)");
    if (rc) {
        free(params);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    PGresult *res;
    rc = setup_exec(su, b->data, (int)job->nkey + 1, params, &res, errbuf, errsz);
    free(params);
    if (rc)
        return rc;
    bool have = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    if (have)
        return 0;
    sl_buf_reset(b);
    rc |= sl_buf_puts(b, "CREATE UNIQUE INDEX ON ");
    rc |= sl_buf_puts(b, su->tq.data);
    rc |= sl_buf_puts(b, " (");
    for (size_t k = 0; k < job->nkey && rc == 0; k++) {
        if (k)
            rc |= sl_buf_puts(b, ", ");
        rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
    }
    rc |= sl_buf_puts(b, ")");
    if (rc)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    sl_info("postgres", "table %s: creating a unique index on the key", su->table);
    return setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz);
}

/* The statement that applies a batch and answers one row: absent keys,
 * their replaced duplicates, changed rows, unchanged rows, the present
 * keys' replaced duplicates. */

/* "col = <from>col, " for every column but the key's: the SET list of an
 * upsert (from "excluded.") or of an update from the batch (from "s."). */
static int put_assignments(struct pg_sink *ps, struct sl_buf *b, const char *from)
{
    const struct sl_job *job = ps->base.job;
    int rc = 0;
    for (size_t i = 0; i < ps->ncol && rc == 0; i++) {
        if (is_key(job, ps->col[i]->name))
            continue;
        rc |= sl_pg_put_ident(b, ps->conn, ps->col[i]->name);
        rc |= sl_buf_puts(b, " = ");
        rc |= sl_buf_puts(b, from);
        rc |= sl_pg_put_ident(b, ps->conn, ps->col[i]->name);
        rc |= sl_buf_puts(b, ", ");
    }
    return rc;
}

static int build_apply(struct setup *su, struct sl_buf *b)
{
    struct pg_sink *ps = su->ps;
    const struct sl_job *job = ps->base.job;
    bool mirror = job->options.sync == SL_SYNC_MIRROR;
    const char *tq = su->tq.data;
    int rc = 0;
    sl_buf_reset(b);
    if (!ps->keyed) {
        rc |= sl_buf_printf(b, "WITH w AS (INSERT INTO %s (", tq);
        rc |= put_cols(ps, b, "", -1);
        rc |= sl_buf_puts(b, ", " RUN_COL ") SELECT ");
        rc |= put_cols(ps, b, "", -1);
        rc |= sl_buf_puts(b, ", $1::text FROM " BATCH_TABLE " RETURNING 1) "
                             "SELECT count(*), 0, 0, 0, 0 FROM w");
        return rc ? SL_ERR_NOMEM : 0;
    }
    if (job->options.allow_create) {
        rc |= sl_buf_printf(b, "WITH w AS (INSERT INTO %s AS t (", tq);
        rc |= put_cols(ps, b, "", -1);
        rc |= sl_buf_puts(b, ", " RUN_COL ") SELECT ");
        rc |= put_cols(ps, b, "", -1);
        rc |= sl_buf_puts(b, ", $1::text FROM " BATCH_TABLE " ON CONFLICT (");
        rc |= put_cols(ps, b, "", 1);
        rc |= sl_buf_puts(b, ") DO UPDATE SET ");
        rc |= put_assignments(ps, b, "excluded.");
        rc |= sl_buf_puts(b, RUN_COL " = excluded." RUN_COL " WHERE ROW(");
        rc |= put_cols(ps, b, "t.", -1);
        rc |= sl_buf_puts(b, ") IS DISTINCT FROM ROW(");
        rc |= put_cols(ps, b, "excluded.", -1);
        rc |= sl_buf_puts(b, ")");
        if (mirror)
            rc |= sl_buf_puts(b, " OR t." RUN_COL " IS DISTINCT FROM excluded." RUN_COL);
        rc |= sl_buf_puts(b, " RETURNING 1) ");
    } else {
        rc |= sl_buf_printf(b, "WITH w AS (UPDATE %s AS t SET ", tq);
        rc |= put_assignments(ps, b, "s.");
        rc |= sl_buf_puts(b, RUN_COL " = $1::text FROM " BATCH_TABLE " s WHERE ");
        for (size_t k = 0; k < job->nkey && rc == 0; k++) {
            rc |= sl_buf_puts(b, k ? " AND t." : "t.");
            rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
            rc |= sl_buf_puts(b, " = s.");
            rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
        }
        rc |= sl_buf_puts(b, " AND (ROW(");
        rc |= put_cols(ps, b, "t.", -1);
        rc |= sl_buf_puts(b, ") IS DISTINCT FROM ROW(");
        rc |= put_cols(ps, b, "s.", -1);
        rc |= sl_buf_puts(b, ")");
        if (mirror)
            rc |= sl_buf_puts(b, " OR t." RUN_COL " IS DISTINCT FROM $1::text");
        rc |= sl_buf_puts(b, ") RETURNING 1) ");
    }
    /* w is executed whether or not it is read; the join sees the table as it
     * was before (one snapshot for the whole statement) */
    rc |= sl_buf_puts(b, "SELECT count(*) FILTER (WHERE o.ctid IS NULL), "
                         "coalesce(sum(s." DUPS_COL ") FILTER (WHERE o.ctid IS NULL), 0), "
                         "count(*) FILTER (WHERE o.ctid IS NOT NULL AND ROW(");
    rc |= put_cols(ps, b, "o.", -1);
    rc |= sl_buf_puts(b, ") IS DISTINCT FROM ROW(");
    rc |= put_cols(ps, b, "s.", -1);
    rc |= sl_buf_puts(b, ")), count(*) FILTER (WHERE o.ctid IS NOT NULL AND ROW(");
    rc |= put_cols(ps, b, "o.", -1);
    rc |= sl_buf_puts(b, ") IS NOT DISTINCT FROM ROW(");
    rc |= put_cols(ps, b, "s.", -1);
    rc |= sl_buf_puts(b, ")), coalesce(sum(s." DUPS_COL ") FILTER (WHERE o.ctid IS NOT NULL), 0) "
                         "FROM " BATCH_TABLE " s LEFT JOIN ");
    rc |= sl_buf_puts(b, tq);
    rc |= sl_buf_puts(b, " o ON ");
    for (size_t k = 0; k < job->nkey && rc == 0; k++) {
        rc |= sl_buf_puts(b, k ? " AND o." : "o.");
        rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
        rc |= sl_buf_puts(b, " = s.");
        rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
    }
    return rc ? SL_ERR_NOMEM : 0;
}

/* Prepares the table, the session's batch table and the apply statement. */
static int setup_table(struct pg_sink *ps, const char *table, char *errbuf, size_t errsz)
{
    const struct sl_job *job = ps->base.job;
    struct setup su = {.ps = ps, .table = table};
    sl_buf_init(&su.tq);
    sl_buf_init(&su.sql);
    snprintf(su.what, sizeof(su.what), "prepare table %s at %s", table, ps->where);
    int rc = sl_pg_put_ident(&su.tq, ps->conn, table);
    if (rc) {
        sl_seterr(errbuf, errsz, rc, "cannot %s: %s", su.what,
                  rc == SL_ERR_NOMEM ? "out of memory" : "the name is not valid UTF-8");
        goto done;
    }
    for (size_t i = 0; i < job->nattrs; i++) {
        struct sl_buf tmp = SL_BUF_INIT;
        rc = sl_pg_put_ident(&tmp, ps->conn, job->attrs[i].name);
        sl_buf_cleanup(&tmp);
        if (rc) {
            sl_seterr(errbuf, errsz, rc, "cannot %s: attribute name %s", su.what,
                      rc == SL_ERR_NOMEM ? "out of memory" : "is not valid UTF-8");
            goto done;
        }
        if (!strcmp(job->attrs[i].name, RUN_COL) || !strcmp(job->attrs[i].name, DUPS_COL)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "cannot %s: attribute %s has the name of sluice's bookkeeping column",
                           su.what, job->attrs[i].name);
            goto done;
        }
    }
    const char *lock[] = {su.tq.data};
    if ((rc = setup_exec(&su, "BEGIN", 0, NULL, NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, "SELECT pg_advisory_xact_lock(hashtext('sluice ' || $1))", 1, lock,
                         NULL, errbuf, errsz)) ||
        (rc = create_table(&su, errbuf, errsz)) || (rc = add_columns(&su, errbuf, errsz)) ||
        (ps->keyed && (rc = key_index(&su, errbuf, errsz))) ||
        (rc = setup_exec(&su, "COMMIT", 0, NULL, NULL, errbuf, errsz)))
        goto done;

    sl_buf_reset(&su.sql);
    rc |= sl_buf_puts(&su.sql, "CREATE TEMP TABLE _sluice_batch AS SELECT ");
    rc |= put_cols(ps, &su.sql, "", -1);
    rc |= sl_buf_puts(&su.sql, ", 0::integer AS " DUPS_COL " FROM ");
    rc |= sl_buf_puts(&su.sql, su.tq.data);
    rc |= sl_buf_puts(&su.sql, " WITH NO DATA");
    if (rc) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = setup_exec(&su, su.sql.data, 0, NULL, NULL, errbuf, errsz)))
        goto done;
    if ((rc = build_apply(&su, &su.sql))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    PGresult *res = PQprepare(ps->conn, APPLY_STMT, su.sql.data, 1, NULL);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[400];
        sl_pg_message(ps->conn, res, msg, sizeof(msg));
        rc = sl_seterr(errbuf, errsz, res ? sl_pg_error_class(ps->conn, res) : SL_ERR_NOMEM,
                       "cannot %s: %s", su.what, msg);
    }
    PQclear(res);
done:
    sl_buf_cleanup(&su.tq);
    sl_buf_cleanup(&su.sql);
    return rc;
}

/* ---- batches ------------------------------------------------------------ */

static void batch_reset(struct pg_sink *ps)
{
    sl_buf_reset(&ps->rows);
    sl_buf_reset(&ps->keys);
    ps->nrow = ps->nlive = 0;
    memset(ps->slot, 0, NSLOT * sizeof(*ps->slot));
}

static int copy_rows(struct pg_sink *ps)
{
    PGresult *res = PQexec(ps->conn, "COPY " BATCH_TABLE " FROM STDIN");
    if (!res || PQresultStatus(res) != PGRES_COPY_IN) {
        char msg[400];
        sl_pg_message(ps->conn, res, msg, sizeof(msg));
        snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what, msg);
        int err = res ? sl_pg_error_class(ps->conn, res) : SL_ERR_RETRY;
        PQclear(res);
        return fail(ps, err);
    }
    PQclear(res);
    bool ok = true;
    char tail[24];
    for (size_t i = 0; i < ps->nrow && ok; i++) {
        const struct brow *r = &ps->row[i];
        if (r->dead)
            continue;
        int n = snprintf(tail, sizeof(tail), "\t%u\n", r->dups);
        ok = PQputCopyData(ps->conn, ps->rows.data + r->off, (int)r->len) == 1 &&
             PQputCopyData(ps->conn, tail, n) == 1;
    }
    ok = PQputCopyEnd(ps->conn, ok ? NULL : "sluice could not send the batch") == 1 && ok;
    int err = 0;
    while ((res = PQgetResult(ps->conn))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !err) {
            char msg[400];
            sl_pg_message(ps->conn, res, msg, sizeof(msg));
            snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what, msg);
            err = sl_pg_error_class(ps->conn, res);
        }
        PQclear(res);
    }
    if (!err && !ok) {
        char msg[400];
        sl_pg_message(ps->conn, NULL, msg, sizeof(msg));
        snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what, msg);
        err = SL_ERR_RETRY;
    }
    return err ? fail(ps, err) : 0;
}

static uint64_t num(const PGresult *res, int col)
{
    return strtoull(PQgetvalue(res, 0, col), NULL, 10);
}

/* Applies the buffered batch inside the run's transaction. */
static int flush(struct pg_sink *ps)
{
    if (ps->failed)
        return SL_ERR_FATAL;
    if (!ps->nlive) {
        batch_reset(ps);
        return 0;
    }
    int rc;
    if (!ps->in_tx) {
        if ((rc = exec_simple(ps, "BEGIN")))
            return rc;
        ps->in_tx = true;
    }
    if ((rc = copy_rows(ps)))
        return rc;
    const char *params[] = {ps->run_id};
    PGresult *res = PQexecPrepared(ps->conn, APPLY_STMT, 1, params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        PQnfields(res) != 5) {
        char msg[400];
        sl_pg_message(ps->conn, res, msg, sizeof(msg));
        snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what, msg);
        int err = res ? sl_pg_error_class(ps->conn, res) : SL_ERR_RETRY;
        PQclear(res);
        return fail(ps, err);
    }
    uint64_t absent = num(res, 0), absent_dups = num(res, 1), changed = num(res, 2),
             same = num(res, 3), present_dups = num(res, 4);
    PQclear(res);
    struct sl_counts *c = &ps->counts;
    if (ps->base.job->options.allow_create || !ps->keyed) {
        c->created += absent;
        c->updated += absent_dups;
    } else {
        c->not_created += absent + absent_dups;
    }
    c->updated += changed + present_dups;
    c->unchanged += same;
    c->published = c->created + c->updated + c->unchanged;
    if ((rc = exec_simple(ps, "TRUNCATE " BATCH_TABLE)))
        return rc;
    batch_reset(ps);
    return 0;
}

/* Finds the live row of the batch with key (klen bytes at keys+koff);
 * returns its slot (empty when none). */
static size_t find_slot(struct pg_sink *ps, size_t koff, size_t klen)
{
    const char *key = ps->keys.data + koff;
    size_t s = hash_bytes(key, klen) & (NSLOT - 1);
    while (ps->slot[s]) {
        const struct brow *r = &ps->row[ps->slot[s] - 1];
        if (r->klen == klen && !memcmp(ps->keys.data + r->koff, key, klen))
            break;
        s = (s + 1) & (NSLOT - 1);
    }
    return s;
}

/* ---- sink ops ----------------------------------------------------------- */

static int pg_write(struct sl_sink *sk, const struct sl_msg *rec, bool duplicate,
                    enum sl_write_result *res)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    const struct sl_job *job = sk->job;
    *res = SL_WRITE_CREATED;
    (void)duplicate; /* a repeated key is found in the batch or by the table */
    if (ps->failed)
        return SL_ERR_FATAL;
    if (ps->finished || rec->kind != SL_MSG_RECORD) {
        snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what,
                 ps->finished ? "the run is finished" : "not a record");
        return SL_ERR_INVALID;
    }
    const struct sl_record *r = &rec->u.rec;
    if (ps->nrow == ps->crow) {
        size_t n = ps->crow ? ps->crow * 2 : 1024;
        struct brow *nr = realloc(ps->row, n * sizeof(*nr));
        if (!nr)
            return SL_ERR_NOMEM;
        ps->row = nr;
        ps->crow = n;
    }
    struct brow *br = &ps->row[ps->nrow];
    *br = (struct brow){.off = ps->rows.len, .koff = ps->keys.len};
    for (size_t i = 0; i < ps->ncol; i++) {
        const struct sl_attr *a = ps->col[i];
        if ((i && sl_buf_putc(&ps->rows, '\t')) ||
            copy_value(&ps->rows, value_of(r, a, (size_t)(a - job->attrs))))
            return SL_ERR_NOMEM;
    }
    br->len = ps->rows.len - br->off;
    if (ps->keyed) {
        bool whole = true;
        for (size_t k = 0; k < job->nkey && whole; k++) {
            const struct sl_attr *a = &job->attrs[job->key_idx[k]];
            const char *v = value_of(r, a, job->key_idx[k]);
            whole = v != NULL;
            if (v && sl_buf_printf(&ps->keys, "%zu:%s", strlen(v), v))
                return SL_ERR_NOMEM;
        }
        br->klen = whole ? ps->keys.len - br->koff : 0;
        if (!whole)
            ps->keys.len = br->koff;
    }
    if (br->klen) {
        size_t s = find_slot(ps, br->koff, br->klen);
        if (ps->slot[s]) {
            struct brow *old = &ps->row[ps->slot[s] - 1];
            old->dead = true;
            br->dups = old->dups + 1;
            ps->nlive--;
        }
        ps->slot[s] = (uint32_t)(ps->nrow + 1);
    }
    ps->nrow++;
    ps->nlive++;
    if (ps->nlive >= BATCH_ROWS || ps->nrow >= 4 * BATCH_ROWS || ps->rows.len >= BATCH_BYTES)
        return flush(ps);
    return 0;
}

static int pg_commit(struct sl_sink *sk, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    int rc = flush(ps);
    if (!rc && ps->in_tx) {
        rc = exec_simple(ps, "COMMIT");
        ps->in_tx = false;
    }
    if (rc)
        return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    return 0;
}

static int pg_finish(struct sl_sink *sk, bool success, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    if (ps->finished)
        return 0;
    ps->finished = true;
    int rc = 0;
    if (success) {
        rc = flush(ps);
        if (!rc && sk->job->options.sync == SL_SYNC_MIRROR && sk->keep_unseen)
            sl_warn("postgres", "run %s: rows were rejected: mirror keeps the rows it did not see",
                    ps->run_id);
        else if (!rc && sk->job->options.sync == SL_SYNC_MIRROR) {
            if (!ps->in_tx && !(rc = exec_simple(ps, "BEGIN")))
                ps->in_tx = true;
            if (!rc) {
                struct sl_buf sql = SL_BUF_INIT;
                const char *params[] = {ps->run_id};
                PGresult *res = NULL;
                if (sl_buf_puts(&sql, "DELETE FROM ") ||
                    sl_pg_put_ident(&sql, ps->conn,
                                    sk->job->destination.table ? sk->job->destination.table
                                                               : sk->job->object) ||
                    sl_buf_puts(&sql, " WHERE " RUN_COL " IS DISTINCT FROM $1::text"))
                    rc = SL_ERR_NOMEM;
                else
                    rc = sl_pg_exec(ps->conn, ps->what, sql.data, 1, params, &res, ps->err,
                                    sizeof(ps->err));
                if (rc == SL_ERR_NOMEM)
                    snprintf(ps->err, sizeof(ps->err), "out of memory");
                if (!rc)
                    sl_info("postgres", "run %s: mirror deleted %s rows", ps->run_id,
                            PQcmdTuples(res));
                else
                    fail(ps, rc);
                PQclear(res);
                sl_buf_cleanup(&sql);
            }
        }
        if (!rc && ps->in_tx) {
            rc = exec_simple(ps, "COMMIT");
            ps->in_tx = false;
        }
    }
    if (ps->in_tx) {
        PGresult *res = PQexec(ps->conn, "ROLLBACK");
        PQclear(res);
        ps->in_tx = false;
    }
    batch_reset(ps);
    if (rc)
        return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    return 0;
}

static void pg_counts(struct sl_sink *sk, struct sl_counts *c)
{
    const struct pg_sink *ps = (const struct pg_sink *)sk;
    c->published = ps->counts.published;
    c->created = ps->counts.created;
    c->updated = ps->counts.updated;
    c->unchanged = ps->counts.unchanged;
    c->not_created = ps->counts.not_created;
}

static const char *pg_last_error(struct sl_sink *sk)
{
    const struct pg_sink *ps = (const struct pg_sink *)sk;
    return ps->err[0] ? ps->err : NULL;
}

static void pg_destroy(struct sl_sink *sk)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    if (!ps)
        return;
    /* an open transaction is rolled back by the server when we go */
    if (ps->conn)
        PQfinish(ps->conn);
    free(ps->run_id);
    free(ps->what);
    free(ps->col);
    free(ps->row);
    free(ps->slot);
    sl_buf_cleanup(&ps->rows);
    sl_buf_cleanup(&ps->keys);
    free(ps);
}

static const struct sl_sink_ops pg_ops = {
    .name = "postgres",
    .write = pg_write,
    .commit = pg_commit,
    .finish = pg_finish,
    .destroy = pg_destroy,
    .counts = pg_counts,
    .last_error = pg_last_error,
};

struct sl_sink *sl_sink_postgres_open(const char *conninfo, const struct sl_job *job,
                                      const char *run_id, char *errbuf, size_t errsz)
{
    const char *table = job->destination.table ? job->destination.table : job->object;
    struct pg_sink *ps = calloc(1, sizeof(*ps));
    if (!ps) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ps->base.ops = &pg_ops;
    ps->base.job = job;
    ps->keyed = job->options.sync != SL_SYNC_APPEND;
    sl_buf_init(&ps->rows);
    sl_buf_init(&ps->keys);
    sl_pg_where(conninfo, ps->where, sizeof(ps->where));
    size_t wn = strlen(table) + strlen(ps->where) + 32;
    ps->run_id = strdup(run_id ? run_id : "");
    ps->what = malloc(wn);
    ps->col = calloc(job->nattrs + 1, sizeof(*ps->col));
    ps->slot = calloc(NSLOT, sizeof(*ps->slot));
    if (!ps->run_id || !ps->what || !ps->col || !ps->slot) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(ps->what, wn, "write to table %s at %s", table, ps->where);
    if (!table || !*table) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "destination.table: no table name");
        goto fail;
    }
    if (ps->keyed && job->nkey == 0) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "target.key: required by sync %s with a postgres destination",
                  job->options.sync == SL_SYNC_MIRROR ? "mirror" : "upsert");
        goto fail;
    }
    /* an attribute without a mapping or default stays unset: its column is
     * neither written nor compared; key attributes always are */
    for (size_t i = 0; i < job->nattrs; i++) {
        if (job->attrs[i].map || job->attrs[i].default_value ||
            (ps->keyed && is_key(job, job->attrs[i].name)))
            ps->col[ps->ncol++] = &job->attrs[i];
    }
    if (!ps->ncol) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "cannot %s: no attribute has a mapping or a default", ps->what);
        goto fail;
    }
    if (!(ps->conn = sl_pg_connect(conninfo, SL_PG_CONNECT_TIMEOUT, errbuf, errsz)))
        goto fail;
    if (setup_table(ps, table, errbuf, errsz))
        goto fail;
    return &ps->base;
fail:
    pg_destroy(&ps->base);
    return NULL;
}
