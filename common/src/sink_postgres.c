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
 * A run's records are staged until the parser sealed the run (it read the
 * whole file: from then on only the destination can fail the run), then
 * applied as they come. sync() (publisher) and commit() (standalone) COPY
 * the buffered records, in one transaction with the run's progress
 * (sluice_progress: the facts of the runs topic and the counts of recorded
 * and rejected rows) and a bitmap of the rows recorded so far
 * (sluice_progress_rows, chunks of 65536 rows), so that a row redelivered by
 * Kafka, or sent twice by a stage that crashed before committing its input,
 * is counted and written once, whichever publisher gets it: before the seal
 * into the run's staging table (_sluice_stage_<hash of the run id>); once
 * the progress says sealed, the first sync applies the staging table and
 * drops it, and each batch is COPYed into a temporary table and applied in
 * the same transaction (a first load COPYs straight into the table, and an
 * unchanged re-run only checks: insert_absent, copy_absent, digest_check,
 * all_unchanged; its batches need no staging either: check_unchanged).
 * Every transaction of a run first locks its progress row: publishers
 * serialize per run and cannot deadlock.
 *
 * Each row written carries a digest of its values (DIGEST_COL, put_digest),
 * which a trigger clears when anyone else UPDATEs the row (digest_guard) and
 * the key's unique index INCLUDEs: a batch whose digests are all the table
 * rows' is unchanged, known from the index alone (digest_check).
 *
 * An application is one statement (build_apply) that counts, against the
 * table as it was before, which keys were absent, changed or unchanged;
 * when the validator flagged a key seen twice (last_wins), the last record
 * of each key by source row is applied and the earlier ones are counted as
 * updates, as the file sink does. Before it changes a row the run had not
 * written, it copies the old version into the run's undo table
 * (_sluice_undo_<hash>), so that a run that fails after rows were applied
 * (the destination refused a batch) can be taken back: finalize() deletes
 * the rows the run wrote (_sluice_run) and puts the undo table's rows back.
 * A failed run publishes nothing.
 *
 * finalize() (once per run among all publishers: the progress row says
 * final) applies what is still staged, with sync mirror deletes the rows
 * this run did not write (_sluice_run differs), then drops the run's tables
 * and stores the counts, all in one transaction.
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
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/pg.h"
#include "sluice/sink.h"

#include <openssl/evp.h>

#define BATCH_ROWS  5000
#define BATCH_BYTES (8u << 20)
#define RUN_COL     "_sluice_run"
#define DIGEST_COL  "_sluice_digest"
#define DUPS_COL    "_sluice_dups"
#define ROW_COL     "_sluice_row"
/* the columns the apply statement adds to each row (build_apply) */
#define J_ABSENT  "_sluice_absent"
#define J_MINE    "_sluice_mine"
#define J_CHANGED "_sluice_changed"
#define J_OTHER   "_sluice_other"
#define J_OLD     "_sluice_old"
#define J_NEW     "_sluice_new"
/* aliases of the apply statement's source rows and table rows: no
 * attribute can be named so (a row's column would be taken for the row) */
#define SRC         "_sluice_s"
#define OLD         "_sluice_o"
#define BATCH_TABLE "pg_temp._sluice_batch"
#define ROWS_TABLE  "pg_temp._sluice_rows"
#define KEYS_TABLE  "pg_temp._sluice_keys"
#define GUARD       "_sluice_digest_guard" /* the trigger and its function */
#define APPLY_STMT  "sluice_apply"
#define CHUNK_SHIFT 16 /* rows per bitmap chunk: 65536 (8 KiB) */
#define CHUNK_BYTES ((1u << CHUNK_SHIFT) / 8)
#define ROW_MAX     (1ull << 40) /* row numbers beyond are refused */

/* The run progress of every run written to this database: the facts of the
 * runs topic, the rows recorded (staged valid rows, rejected rows), and the
 * final counts; one row per run, locked by whoever changes the run. */
#define PROGRESS_DDL                                                                               \
    "CREATE TABLE IF NOT EXISTS sluice_progress ("                                                 \
    "  run_id text PRIMARY KEY,"                                                                   \
    "  job_id text,"                                                                               \
    "  final boolean NOT NULL DEFAULT false,"                                                      \
    "  fetched boolean NOT NULL DEFAULT false,"                                                    \
    "  sealed bigint,"                                                                             \
    "  failed boolean NOT NULL DEFAULT false,"                                                     \
    "  skipped boolean NOT NULL DEFAULT false,"                                                    \
    "  reason text,"                                                                               \
    "  sha256 text,"                                                                               \
    "  bytes bigint,"                                                                              \
    "  started_at bigint,"                                                                         \
    "  staged bigint NOT NULL DEFAULT 0,"                                                          \
    "  rejected bigint NOT NULL DEFAULT 0,"                                                        \
    "  duplicates bigint NOT NULL DEFAULT 0,"                                                      \
    "  dupflags bigint NOT NULL DEFAULT 0,"                                                        \
    "  published bigint, created bigint, updated bigint, unchanged bigint,"                        \
    "  not_created bigint, replaced bigint,"                                                       \
    "  applied boolean NOT NULL DEFAULT false,"                                                    \
    "  updated_at timestamptz NOT NULL DEFAULT now())"
/* Added by a later version: tables of the earlier one get it at start (the
 * catalog is checked first: ALTER TABLE would wait for every run's lock). */
#define PROGRESS_APPLIED_DDL                                                                       \
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "                      \
    "'sluice_progress'::regclass AND attname = 'applied' AND NOT attisdropped) THEN "              \
    "ALTER TABLE sluice_progress ADD COLUMN applied boolean NOT NULL DEFAULT false; "              \
    "END IF; END $$"
/* Which rows of a run are recorded: bitmaps of 2^CHUNK_SHIFT rows. */
#define PROGRESS_ROWS_DDL                                                                          \
    "CREATE TABLE IF NOT EXISTS sluice_progress_rows ("                                            \
    "  run_id text NOT NULL,"                                                                      \
    "  chunk integer NOT NULL,"                                                                    \
    "  bits bytea NOT NULL,"                                                                       \
    "  PRIMARY KEY (run_id, chunk))"

/* One buffered record: its COPY text, its source row, whether the validator
 * saw its key before in the run (last_wins). */
struct brow {
    size_t off, len; /* in rows */
    uint64_t srow;
    bool dup;
};

/* A bitmap chunk of the run's recorded rows, as read in a sync. */
struct chunk {
    int32_t no;
    bool dirty;
    unsigned char bits[CHUNK_BYTES];
};

struct pg_sink {
    struct sl_sink base;
    PGconn *conn;
    char *conninfo; /* for the idle pool (pg.h) */
    char *pool_tag; /* the session state conn has: the job version and table */
    bool ready;     /* the table and the session are prepared: conn may be pooled */
    EVP_MD_CTX *md; /* the rows' digests */
    EVP_MD *sha256; /* fetched once: an implicit fetch a row costs more than the hash */
    char *run_id;
    char where[256];            /* host:port for messages */
    char *what;                 /* "write to table \"t\" at host:port" */
    char *tq;                   /* the destination table, quoted */
    char stage[64];             /* the run's staging table, quoted */
    char undo[64];              /* the run's undo table (old rows it changed), quoted */
    const struct sl_attr **col; /* the attributes written: mapped, defaulted or key */
    size_t ncol;
    bool keyed;        /* upsert or mirror: applied by key */
    bool stage_ready;  /* the staging table exists */
    bool undo_ready;   /* the undo table exists */
    bool applied;      /* the progress row says: some rows were applied before the end */
    bool insert_first; /* try inserting unflagged rows first (insert_absent) */
    bool check_first;  /* try finding every row unchanged first (all_unchanged) */
    struct sl_buf rows;
    struct brow *row;
    size_t nrow, crow;
    struct chunk *chunk;
    size_t nchunk, cchunk;
    struct sl_counts counts; /* the run's results once final */
    struct sl_counts acc;    /* applied so far (the progress row's tallies) */
    struct sl_buf reason;    /* the stored reason of the last sync */
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

/* put_cols of every written attribute, then DIGEST_COL: the columns of a
 * buffered row's COPY line, as written to the table. */
static int put_row_cols(struct pg_sink *ps, struct sl_buf *b, const char *prefix)
{
    int rc = put_cols(ps, b, prefix, -1);
    if (rc == 0 && (sl_buf_printf(b, ", %s" DIGEST_COL, prefix)))
        rc = SL_ERR_NOMEM;
    return rc;
}

/* ---- preparing the table ------------------------------------------------ */

/* The bookkeeping columns of every table, after the attributes. */
static const struct {
    const char *name, *type;
} bookkeeping[] = {{RUN_COL, "text"}, {DIGEST_COL, "bigint"}};
#define NBOOKKEEPING (sizeof(bookkeeping) / sizeof(bookkeeping[0]))

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
    for (size_t i = 0; i < NBOOKKEEPING; i++)
        rc |= sl_buf_printf(b, "%s %s%s", bookkeeping[i].name, bookkeeping[i].type,
                            i + 1 < NBOOKKEEPING ? ", " : ")");
    if (rc)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    return setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz);
}

/* Adds the attribute columns (and the bookkeeping columns) that an existing
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
    for (size_t i = 0; i < job->nattrs + NBOOKKEEPING && rc == 0; i++) {
        bool attr = i < job->nattrs;
        const char *name = attr ? job->attrs[i].name : bookkeeping[i - job->nattrs].name;
        const char *type =
            attr ? pg_type_of(job->attrs[i].type) : bookkeeping[i - job->nattrs].type;
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

/* The digest's guard: a trigger that clears DIGEST_COL in every row an
 * UPDATE changes unless the session says it is sluice's (sluice.writing
 * on: the publisher's sessions, which write each row's new digest), so that
 * a row someone else changed is compared column by column again. Created
 * once, its function in the table's schema (created when missing, else
 * used as it is: another role may own it). */
static int digest_guard(struct setup *su, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = su->ps;
    const char *params[] = {su->tq.data, GUARD};
    PGresult *res = NULL;
    int rc = setup_exec(su,
                        "SELECT n.nspname, EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = "
                        "c.oid AND t.tgname = $2), EXISTS (SELECT 1 FROM pg_proc p WHERE "
                        "p.pronamespace = n.oid AND p.proname = $2 AND p.pronargs = 0) "
                        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.oid = $1::regclass",
                        2, params, &res, errbuf, errsz);
    if (rc)
        return rc;
    if (PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] == 't') {
        PQclear(res);
        return 0;
    }
    struct sl_buf fn = SL_BUF_INIT, *b = &su->sql;
    bool have_fn = PQgetvalue(res, 0, 2)[0] == 't';
    rc = sl_pg_put_ident(&fn, ps->conn, PQgetvalue(res, 0, 0));
    PQclear(res);
    rc |= sl_buf_puts(&fn, "." GUARD "()");
    sl_buf_reset(b);
    rc |= sl_buf_printf(b,
                        "CREATE FUNCTION %s RETURNS trigger LANGUAGE plpgsql AS "
                        "$f$ BEGIN IF current_setting('sluice.writing', true) IS DISTINCT FROM "
                        "'on' THEN NEW." DIGEST_COL " := NULL; END IF; RETURN NEW; END $f$",
                        fn.data);
    if (rc) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    } else if (have_fn || (rc = setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz)) == 0) {
        sl_buf_reset(b);
        if (sl_buf_printf(b,
                          "CREATE TRIGGER " GUARD " BEFORE UPDATE ON %s FOR EACH ROW "
                          "EXECUTE FUNCTION %s",
                          su->tq.data, fn.data))
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        else
            rc = setup_exec(su, b->data, 0, NULL, NULL, errbuf, errsz);
    }
    sl_buf_cleanup(&fn);
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
    /* the digest beside the key: the unchanged check reads the index only */
    rc |= sl_buf_puts(b, ") INCLUDE (" DIGEST_COL ")");
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

/* Appends "o.k1 = s.k1 AND ..." for the key attributes. */
static int put_key_join(struct pg_sink *ps, struct sl_buf *b, const char *o, const char *s)
{
    const struct sl_job *job = ps->base.job;
    int rc = 0;
    for (size_t k = 0; k < job->nkey && rc == 0; k++) {
        rc |= sl_buf_printf(b, "%s%s.", k ? " AND " : "", o);
        rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
        rc |= sl_buf_printf(b, " = %s.", s);
        rc |= sl_pg_put_ident(b, ps->conn, job->key[k]);
    }
    return rc;
}

/* Appends "ROW(a.c1, ...) IS DISTINCT FROM ROW(b.c1, ...)" over the written
 * columns (a, b: prefixes such as "t."): whether the two rows differ. */
static int put_differs(struct pg_sink *ps, struct sl_buf *b, const char *a, const char *bb)
{
    int rc = sl_buf_puts(b, "ROW(");
    rc |= put_cols(ps, b, a, -1);
    rc |= sl_buf_puts(b, ") IS DISTINCT FROM ROW(");
    rc |= put_cols(ps, b, bb, -1);
    rc |= sl_buf_puts(b, ")");
    return rc;
}

/* The statement that applies the rows of table src (the written columns and
 * DUPS_COL, one row a key) to the destination and counts what it did:
 * absent keys, their replaced duplicates, changed rows, unchanged rows,
 * replaced duplicates of present keys (a key that a row of this run wrote
 * before, in an earlier batch, is one more). $1 is the run id.
 *
 * Each row of src is joined once to the table's row of its key (j: the
 * statement's one snapshot, before it writes); only absent and changed rows
 * are written (under mirror also rows another run wrote, to mark them), and
 * the counts come from j. With undo, the old version of every row it
 * changes that this run had not changed before goes into the run's undo
 * table. */
static int build_apply(struct pg_sink *ps, struct sl_buf *b, const char *src, bool undo)
{
    const struct sl_job *job = ps->base.job;
    bool mirror = job->options.sync == SL_SYNC_MIRROR;
    const char *tq = ps->tq;
    int rc = 0;
    sl_buf_reset(b);
    if (!ps->keyed) {
        rc |= sl_buf_printf(b, "WITH w AS (INSERT INTO %s (", tq);
        rc |= put_row_cols(ps, b, "");
        rc |= sl_buf_puts(b, ", " RUN_COL ") SELECT ");
        rc |= put_row_cols(ps, b, "");
        rc |= sl_buf_printf(b,
                            ", $1::text FROM %s RETURNING 1) "
                            "SELECT count(*), 0, 0, 0, 0 FROM w",
                            src);
        return rc ? SL_ERR_NOMEM : 0;
    }
    /* j: one narrow row a source row (the flags); the source row itself only
     * where it is written (J_NEW), the old one only where it is kept (J_OLD):
     * building and storing rows costs, and an unchanged re-run writes none */
    rc |= sl_buf_puts(b, "WITH j AS MATERIALIZED (SELECT " SRC "." DUPS_COL ", " OLD
                         ".ctid IS NULL AS " J_ABSENT ", coalesce(" OLD "." RUN_COL
                         " = $1::text, false) AS " J_MINE ", ");
    rc |= put_differs(ps, b, OLD ".", SRC ".");
    rc |= sl_buf_puts(b, " AS " J_CHANGED ", " OLD "." RUN_COL
                         " IS DISTINCT FROM $1::text AS " J_OTHER ", CASE WHEN ");
    rc |= put_differs(ps, b, OLD ".", SRC ".");
    if (mirror)
        rc |= sl_buf_puts(b, " OR " OLD "." RUN_COL " IS DISTINCT FROM $1::text");
    rc |= sl_buf_puts(b, " THEN " SRC " END AS " J_NEW);
    if (undo) {
        /* the old row only where it is kept: building it costs */
        rc |= sl_buf_puts(b, ", CASE WHEN " OLD ".ctid IS NOT NULL AND " OLD "." RUN_COL
                             " IS DISTINCT FROM $1::text");
        if (!mirror) {
            rc |= sl_buf_puts(b, " AND ");
            rc |= put_differs(ps, b, OLD ".", SRC ".");
        }
        rc |= sl_buf_puts(b, " THEN " OLD " END AS " J_OLD);
    }
    rc |= sl_buf_printf(b, " FROM %s " SRC " LEFT JOIN %s " OLD " ON ", src, tq);
    rc |= put_key_join(ps, b, OLD, SRC);
    rc |= sl_buf_puts(b, "), ");
    const char *write_if = mirror ? "(" J_CHANGED " OR " J_OTHER ")" : J_CHANGED;
    if (job->options.allow_create) {
        rc |= sl_buf_printf(b, "w AS (INSERT INTO %s AS t (", tq);
        rc |= put_row_cols(ps, b, "");
        rc |= sl_buf_puts(b, ", " RUN_COL ") SELECT ");
        rc |= put_row_cols(ps, b, "(" J_NEW ").");
        rc |= sl_buf_printf(b, ", $1::text FROM j WHERE %s ON CONFLICT (", write_if);
        rc |= put_cols(ps, b, "", 1);
        rc |= sl_buf_puts(b, ") DO UPDATE SET ");
        rc |= put_assignments(ps, b, "excluded.");
        rc |= sl_buf_puts(b, DIGEST_COL " = excluded." DIGEST_COL ", " RUN_COL
                                        " = excluded." RUN_COL " WHERE ");
        rc |= put_differs(ps, b, "t.", "excluded.");
        if (mirror)
            rc |= sl_buf_puts(b, " OR t." RUN_COL " IS DISTINCT FROM excluded." RUN_COL);
        rc |= sl_buf_puts(b, " RETURNING 1)");
    } else {
        rc |= sl_buf_printf(b, "w AS (UPDATE %s AS t SET ", tq);
        rc |= put_assignments(ps, b, "(j." J_NEW ").");
        rc |= sl_buf_puts(b, DIGEST_COL " = (j." J_NEW ")." DIGEST_COL ", " RUN_COL
                                        " = $1::text FROM j WHERE ");
        rc |= put_key_join(ps, b, "t", "(j." J_NEW ")");
        rc |= sl_buf_printf(b, " AND NOT j." J_ABSENT " AND j.%s RETURNING 1)",
                            mirror ? "(" J_CHANGED " OR j." J_OTHER ")" : J_CHANGED);
    }
    if (undo)
        rc |= sl_buf_printf(b,
                            ", u AS (INSERT INTO %s SELECT (" J_OLD ").* FROM j WHERE NOT " J_ABSENT
                            " AND " J_OTHER " AND %s RETURNING 1)",
                            ps->undo, write_if);
    /* w (and u) are executed whether or not they are read */
    rc |= sl_buf_puts(
        b, " SELECT count(*) FILTER (WHERE " J_ABSENT "), coalesce(sum(" DUPS_COL
           ") FILTER (WHERE " J_ABSENT "), 0), count(*) FILTER (WHERE NOT " J_ABSENT
           " AND NOT " J_MINE " AND " J_CHANGED "), count(*) FILTER (WHERE NOT " J_ABSENT
           " AND NOT " J_MINE " AND NOT " J_CHANGED "), coalesce(sum(" DUPS_COL
           ") FILTER (WHERE NOT " J_ABSENT "), 0) + count(*) FILTER (WHERE " J_MINE ") FROM j");
    return rc ? SL_ERR_NOMEM : 0;
}

static bool truth(const PGresult *res, int row, int col);

/* 0 when res says the command went through, else errbuf set; frees res. */
static int session_done(struct pg_sink *ps, PGresult *res, char *errbuf, size_t errsz)
{
    int rc = 0;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        char msg[400];
        sl_pg_message(ps->conn, res, msg, sizeof(msg));
        rc = sl_seterr(errbuf, errsz, res ? sl_pg_error_class(ps->conn, res) : SL_ERR_NOMEM,
                       "cannot %s: %s", ps->what, msg);
    }
    PQclear(res);
    return rc;
}

/* Prepares what a session needs: the temporary tables (rows emptied at each
 * commit) and the apply statement; again after a reconnection. */
static int prepare_session(struct pg_sink *ps, char *errbuf, size_t errsz)
{
    struct sl_buf sql = SL_BUF_INIT;
    int rc = 0;
    /* sluice.writing: this session's UPDATEs keep the digests they write
     * (digest_guard) */
    rc |= sl_buf_puts(&sql, "SET sluice.writing = 'on'; CREATE TEMP TABLE IF NOT EXISTS "
                            "_sluice_batch ON COMMIT DELETE ROWS AS SELECT ");
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_puts(&sql, ", 0::integer AS " DUPS_COL " FROM ");
    rc |= sl_buf_puts(&sql, ps->tq);
    rc |= sl_buf_puts(&sql, " WITH NO DATA; CREATE TEMP TABLE IF NOT EXISTS _sluice_rows "
                            "ON COMMIT DELETE ROWS AS SELECT ");
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_puts(&sql, ", 0::integer AS " DUPS_COL ", 0::bigint AS " ROW_COL " FROM ");
    rc |= sl_buf_puts(&sql, ps->tq);
    rc |= sl_buf_puts(&sql, " WITH NO DATA");
    if (ps->keyed) {
        rc |= sl_buf_puts(&sql, "; CREATE TEMP TABLE IF NOT EXISTS _sluice_keys "
                                "ON COMMIT DELETE ROWS AS SELECT ");
        rc |= put_cols(ps, &sql, "", 1);
        rc |= sl_buf_puts(&sql, ", " DIGEST_COL " FROM ");
        rc |= sl_buf_puts(&sql, ps->tq);
        rc |= sl_buf_puts(&sql, " WITH NO DATA");
    }
    if (rc) {
        sl_buf_cleanup(&sql);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    /* two statements: not PQexecParams */
    rc = session_done(ps, PQexec(ps->conn, sql.data), errbuf, errsz);
    if (rc == 0 && build_apply(ps, &sql, BATCH_TABLE, false))
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = session_done(ps, PQprepare(ps->conn, APPLY_STMT, sql.data, 1, NULL), errbuf, errsz);
    sl_buf_cleanup(&sql);
    /* which table the session is shaped after, for a sink that takes the
     * connection from the pool (session_current) */
    const char *params[] = {ps->tq};
    if (rc == 0)
        rc = sl_pg_exec(ps->conn, ps->what,
                        "SELECT set_config('sluice.prepared', (to_regclass($1)::oid)::text, false)",
                        1, params, NULL, errbuf, errsz);
    return rc;
}

/* Whether the session of a pooled connection still fits: prepared for the
 * table as it is now (not dropped and created again since), and the
 * progress tables are there. Another job version or table never gets the
 * connection (the pool tag), but the database may have changed meanwhile. */
static bool session_current(struct pg_sink *ps)
{
    const char *params[] = {ps->tq};
    PGresult *res = NULL;
    char err[512];
    bool ok = sl_pg_exec(ps->conn, ps->what,
                         "SELECT current_setting('sluice.prepared', true) IS NOT DISTINCT FROM "
                         "(to_regclass($1)::oid)::text AND to_regclass('sluice_progress') IS NOT "
                         "NULL AND to_regclass('sluice_progress_rows') IS NOT NULL",
                         1, params, &res, err, sizeof(err)) == 0 &&
              truth(res, 0, 0);
    PQclear(res);
    return ok;
}

/* Prepares the table, the session's batch table and the apply statement;
 * with a pooled connection (pooled: a sink of the same job, version and
 * table prepared both on it before) only checks the names and that the
 * session is current, else resets it (DISCARD ALL) and prepares it all. */
static int setup_table(struct pg_sink *ps, const char *table, bool pooled, char *errbuf,
                       size_t errsz)
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
        if (!strncmp(job->attrs[i].name, "_sluice_", 8)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "cannot %s: attribute %s: names starting with _sluice_ are sluice's "
                           "bookkeeping columns",
                           su.what, job->attrs[i].name);
            goto done;
        }
    }
    if (!(ps->tq = strdup(su.tq.data))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (pooled && session_current(ps))
        goto done;
    if (pooled && (rc = setup_exec(&su, "DISCARD ALL", 0, NULL, NULL, errbuf, errsz)))
        goto done;
    const char *lock[] = {su.tq.data};
    if ((rc = setup_exec(&su, "BEGIN", 0, NULL, NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, "SELECT pg_advisory_xact_lock(hashtext('sluice progress'))", 0, NULL,
                         NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, PROGRESS_DDL, 0, NULL, NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, PROGRESS_APPLIED_DDL, 0, NULL, NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, PROGRESS_ROWS_DDL, 0, NULL, NULL, errbuf, errsz)) ||
        (rc = setup_exec(&su, "SELECT pg_advisory_xact_lock(hashtext('sluice ' || $1))", 1, lock,
                         NULL, errbuf, errsz)) ||
        (rc = create_table(&su, errbuf, errsz)) || (rc = add_columns(&su, errbuf, errsz)) ||
        (ps->keyed && (rc = key_index(&su, errbuf, errsz))) ||
        (ps->keyed && (rc = digest_guard(&su, errbuf, errsz))) ||
        (rc = setup_exec(&su, "COMMIT", 0, NULL, NULL, errbuf, errsz)))
        goto done;

    rc = prepare_session(ps, errbuf, errsz);
done:
    sl_buf_cleanup(&su.tq);
    sl_buf_cleanup(&su.sql);
    return rc;
}

/* ---- sessions and transactions ----------------------------------------- */

/* ps->err = "cannot WHAT: MSG" from res (or the connection); the error's
 * class; the open transaction, if any, rolled back. */
static int failed_with(struct pg_sink *ps, const PGresult *res, const char *what)
{
    char msg[400];
    sl_pg_message(ps->conn, res, msg, sizeof(msg));
    snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", what ? what : ps->what, msg);
    int err = res ? sl_pg_error_class(ps->conn, res) : SL_ERR_RETRY;
    if (PQstatus(ps->conn) == CONNECTION_OK)
        PQclear(PQexec(ps->conn, "ROLLBACK"));
    sl_error("postgres", "run %s: %s", ps->run_id, ps->err);
    return err;
}

/* Runs sql with text parameters inside the current transaction; on failure
 * rolls back and returns the error's class with ps->err set. */
static int run(struct pg_sink *ps, const char *sql, int n, const char *const *params,
               PGresult **out)
{
    PGresult *res = PQexecParams(ps->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        int err = failed_with(ps, res, NULL);
        PQclear(res);
        return err;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return 0;
}

/* A lost connection is opened again (with its session's batch table and
 * statement) before the next transaction. */
static int ensure_session(struct pg_sink *ps)
{
    if (PQstatus(ps->conn) == CONNECTION_OK)
        return 0;
    PQreset(ps->conn);
    if (PQstatus(ps->conn) != CONNECTION_OK)
        return failed_with(ps, NULL, NULL);
    char err[512];
    int rc = prepare_session(ps, err, sizeof(err));
    if (rc) {
        snprintf(ps->err, sizeof(ps->err), "%s", err);
        return rc;
    }
    sl_info("postgres", "run %s: reconnected to %s", ps->run_id, ps->where);
    return 0;
}

static uint64_t num(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoull(PQgetvalue(res, row, col), NULL, 10);
}

static bool truth(const PGresult *res, int row, int col)
{
    return !PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't';
}

/* Reads the progress columns of PROGRESS_COLS at col 0.. of res into pr. */
#define PROGRESS_COLS                                                                              \
    "final, fetched, sealed, failed, skipped, reason, sha256, bytes, started_at, staged, "         \
    "rejected, duplicates, dupflags, published, created, updated, unchanged, not_created, "        \
    "replaced, applied"

static uint64_t read_progress(struct pg_sink *ps, const PGresult *res, struct sl_run_progress *pr)
{
    *pr = (struct sl_run_progress){0};
    pr->final = truth(res, 0, 0);
    pr->f.fetched = truth(res, 0, 1);
    pr->f.sealed = !PQgetisnull(res, 0, 2);
    pr->f.sealed_count = num(res, 0, 2);
    pr->f.failed = truth(res, 0, 3);
    pr->f.skipped = truth(res, 0, 4);
    sl_buf_reset(&ps->reason);
    if (!PQgetisnull(res, 0, 5) && sl_buf_puts(&ps->reason, PQgetvalue(res, 0, 5)) == 0)
        pr->f.reason = ps->reason.data;
    if (!PQgetisnull(res, 0, 6))
        snprintf(pr->f.sha256, sizeof(pr->f.sha256), "%s", PQgetvalue(res, 0, 6));
    pr->f.bytes = num(res, 0, 7);
    pr->f.started_at = (int64_t)num(res, 0, 8);
    pr->staged = num(res, 0, 9);
    pr->rejected = num(res, 0, 10);
    pr->duplicates = num(res, 0, 11);
    /* the tallies of what was applied so far; the run's once final */
    struct sl_counts *c = &ps->acc;
    *c = (struct sl_counts){0};
    c->published = num(res, 0, 13);
    c->created = num(res, 0, 14);
    c->updated = num(res, 0, 15);
    c->unchanged = num(res, 0, 16);
    c->not_created = num(res, 0, 17);
    c->duplicates = num(res, 0, 18);
    ps->applied = truth(res, 0, 19);
    if (pr->final)
        ps->counts = *c;
    return num(res, 0, 12); /* dupflags */
}

/* Starts the run's transaction: its progress row exists and is locked (every
 * change of a run's progress, staging and finalizing takes this lock first,
 * so publishers serialize per run and never deadlock). */
static int begin_run(struct pg_sink *ps, PGresult **progress)
{
    int rc = ensure_session(ps);
    if (rc)
        return rc;
    const char *params[] = {ps->run_id, ps->base.job->id};
    if ((rc = run(ps, "BEGIN", 0, NULL, NULL)) ||
        (rc = run(ps,
                  "INSERT INTO sluice_progress (run_id, job_id) VALUES ($1, $2) "
                  "ON CONFLICT (run_id) DO NOTHING",
                  2, params, NULL)))
        return rc;
    return run(ps, "SELECT " PROGRESS_COLS " FROM sluice_progress WHERE run_id = $1 FOR UPDATE", 1,
               params, progress);
}

/* ---- the bitmap of recorded rows ---------------------------------------- */

static struct chunk *chunk_of(struct pg_sink *ps, uint64_t row)
{
    int32_t no = (int32_t)(row >> CHUNK_SHIFT);
    for (size_t i = 0; i < ps->nchunk; i++)
        if (ps->chunk[i].no == no)
            return &ps->chunk[i];
    return NULL;
}

static int add_chunk(struct pg_sink *ps, int32_t no)
{
    for (size_t i = 0; i < ps->nchunk; i++)
        if (ps->chunk[i].no == no)
            return 0;
    if (ps->nchunk == ps->cchunk) {
        size_t n = ps->cchunk ? ps->cchunk * 2 : 4;
        struct chunk *nc = realloc(ps->chunk, n * sizeof(*nc));
        if (!nc)
            return SL_ERR_NOMEM;
        ps->chunk = nc;
        ps->cchunk = n;
    }
    struct chunk *c = &ps->chunk[ps->nchunk++];
    c->no = no;
    c->dirty = false;
    memset(c->bits, 0, sizeof(c->bits));
    return 0;
}

/* Whether row is recorded for the first time (and records it). */
static bool first_time(struct pg_sink *ps, uint64_t row)
{
    struct chunk *c = chunk_of(ps, row);
    size_t bit = row & ((1u << CHUNK_SHIFT) - 1);
    unsigned char mask = (unsigned char)(1u << (bit & 7));
    if (c->bits[bit >> 3] & mask)
        return false;
    c->bits[bit >> 3] |= mask;
    c->dirty = true;
    return true;
}

/* Reads the chunks that the buffered rows and rej fall into. */
static int load_chunks(struct pg_sink *ps, const struct sl_rejected_row *rej, size_t nrej)
{
    ps->nchunk = 0;
    int rc = 0;
    for (size_t i = 0; i < ps->nrow && rc == 0; i++)
        rc = add_chunk(ps, (int32_t)(ps->row[i].srow >> CHUNK_SHIFT));
    for (size_t i = 0; i < nrej && rc == 0; i++)
        rc = add_chunk(ps, (int32_t)(rej[i].row >> CHUNK_SHIFT));
    if (rc || !ps->nchunk)
        return rc;
    struct sl_buf list = SL_BUF_INIT;
    rc = sl_buf_putc(&list, '{');
    for (size_t i = 0; i < ps->nchunk; i++)
        rc |= sl_buf_printf(&list, "%s%d", i ? "," : "", (int)ps->chunk[i].no);
    rc |= sl_buf_putc(&list, '}');
    if (rc) {
        sl_buf_cleanup(&list);
        return SL_ERR_NOMEM;
    }
    const char *params[] = {ps->run_id, list.data};
    PGresult *res = PQexecParams(ps->conn,
                                 "SELECT chunk, bits FROM sluice_progress_rows "
                                 "WHERE run_id = $1 AND chunk = ANY($2::integer[])",
                                 2, NULL, params, NULL, NULL, 1);
    sl_buf_cleanup(&list);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = failed_with(ps, res, "read the run's recorded rows");
        PQclear(res);
        return rc;
    }
    for (int t = 0; t < PQntuples(res); t++) {
        const unsigned char *no = (const unsigned char *)PQgetvalue(res, t, 0);
        int32_t n =
            (int32_t)((uint32_t)no[0] << 24 | (uint32_t)no[1] << 16 | (uint32_t)no[2] << 8 | no[3]);
        struct chunk *c = chunk_of(ps, (uint64_t)n << CHUNK_SHIFT);
        size_t len = (size_t)PQgetlength(res, t, 1);
        if (c && PQgetlength(res, t, 0) == 4)
            memcpy(c->bits, PQgetvalue(res, t, 1), len < CHUNK_BYTES ? len : CHUNK_BYTES);
    }
    PQclear(res);
    return 0;
}

static int store_chunks(struct pg_sink *ps)
{
    for (size_t i = 0; i < ps->nchunk; i++) {
        struct chunk *c = &ps->chunk[i];
        if (!c->dirty)
            continue;
        char no[16];
        snprintf(no, sizeof(no), "%d", (int)c->no);
        const char *values[] = {ps->run_id, no, (const char *)c->bits};
        const int lengths[] = {0, 0, CHUNK_BYTES}, formats[] = {0, 0, 1};
        PGresult *res = PQexecParams(ps->conn,
                                     "INSERT INTO sluice_progress_rows (run_id, chunk, bits) "
                                     "VALUES ($1, $2::integer, $3::bytea) ON CONFLICT "
                                     "(run_id, chunk) DO UPDATE SET bits = excluded.bits",
                                     3, NULL, values, lengths, formats, 0);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            int rc = failed_with(ps, res, "record the run's rows");
            PQclear(res);
            return rc;
        }
        PQclear(res);
    }
    return 0;
}

/* ---- staging and applying ----------------------------------------------- */

static void batch_reset(struct pg_sink *ps)
{
    sl_buf_reset(&ps->rows);
    ps->nrow = 0;
}

/* The run's staging table: the written columns, DUPS_COL and ROW_COL. */
static int ensure_stage(struct pg_sink *ps)
{
    if (ps->stage_ready)
        return 0;
    struct sl_buf sql = SL_BUF_INIT;
    int rc = sl_buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s AS SELECT ", ps->stage);
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_printf(
        &sql, ", 0::integer AS " DUPS_COL ", 0::bigint AS " ROW_COL " FROM %s WITH NO DATA",
        ps->tq);
    if (rc == 0)
        rc = run(ps, sql.data, 0, NULL, NULL);
    else
        rc = SL_ERR_NOMEM;
    sl_buf_cleanup(&sql);
    ps->stage_ready = rc == 0;
    return rc;
}

/* The run's undo table: the destination's columns, for the old versions of
 * the rows the run changed before it was final. */
static int ensure_undo(struct pg_sink *ps)
{
    if (ps->undo_ready)
        return 0;
    char sql[600];
    snprintf(sql, sizeof(sql), "CREATE TABLE IF NOT EXISTS %s AS SELECT * FROM %s WITH NO DATA",
             ps->undo, ps->tq);
    int rc = run(ps, sql, 0, NULL, NULL);
    ps->undo_ready = rc == 0;
    return rc;
}

static int copy_begin(struct pg_sink *ps, const char *copy);
static int copy_end(struct pg_sink *ps, bool ok, PGresult **refused);

/* COPYs the buffered rows marked take[i] with copy (a COPY ... FROM STDIN),
 * each line ended by tail, or when tail is NULL by DUPS_COL (the validator's
 * flag) and ROW_COL. A refusal by the server: *refused gets its result when
 * refused is not NULL (the caller decides), else the transaction is rolled
 * back (failed_with). */
static int copy_lines(struct pg_sink *ps, const char *copy, const bool *take, const char *tail,
                      PGresult **refused)
{
    int err = copy_begin(ps, copy);
    if (err)
        return err;
    bool ok = true;
    char own[40];
    int tn = tail ? (int)strlen(tail) : 0;
    for (size_t i = 0; i < ps->nrow && ok; i++) {
        const struct brow *r = &ps->row[i];
        if (!take[i])
            continue;
        const char *t = tail;
        int n = tn;
        if (!t) { /* DUPS_COL holds the validator's flag until apply_rows counts */
            n = snprintf(own, sizeof(own), "\t%d\t%llu\n", r->dup ? 1 : 0,
                         (unsigned long long)r->srow);
            t = own;
        }
        ok = PQputCopyData(ps->conn, ps->rows.data + r->off, (int)r->len) == 1 &&
             PQputCopyData(ps->conn, t, n) == 1;
    }
    return copy_end(ps, ok, refused);
}

/* Starts copy (a COPY ... FROM STDIN); on a refusal the transaction is
 * rolled back (failed_with). */
static int copy_begin(struct pg_sink *ps, const char *copy)
{
    PGresult *res = PQexec(ps->conn, copy);
    int err = !res || PQresultStatus(res) != PGRES_COPY_IN ? failed_with(ps, res, NULL) : 0;
    PQclear(res);
    return err;
}

/* Ends the COPY that copy_begin started, ok: every line was sent (else it
 * is aborted). A refusal by the server: *refused gets its result when
 * refused is not NULL, else the transaction is rolled back. */
static int copy_end(struct pg_sink *ps, bool ok, PGresult **refused)
{
    PGresult *res;
    ok = PQputCopyEnd(ps->conn, ok ? NULL : "sluice could not send the batch") == 1 && ok;
    int err = 0;
    while ((res = PQgetResult(ps->conn))) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !err) {
            if (refused && ok) {
                *refused = res;
                err = SL_ERR_INVALID;
                continue;
            }
            err = failed_with(ps, res, NULL);
        }
        PQclear(res);
    }
    if (!err && !ok)
        err = failed_with(ps, NULL, NULL);
    return err;
}

/* COPYs the buffered rows marked fresh[i] into table (the staging table or
 * ROWS_TABLE). */
static int copy_rows(struct pg_sink *ps, const char *table, const bool *fresh)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
    return copy_lines(ps, sql, fresh, NULL, NULL);
}

/* insert_absent's or copy_absent's statement inserted n rows: all of them. */
static int inserted_all(struct pg_sink *ps, uint64_t n, struct sl_counts *c, bool *all)
{
    c->created += n;
    c->published += n;
    *all = true;
    return run(ps, "RELEASE SAVEPOINT insert_first", 0, NULL, NULL);
}

/* insert_absent's or copy_absent's statement was refused (res): a key the
 * table has ends trying for the run (back to the savepoint: 0); any other
 * refusal is the caller's (rolled back). */
static int insert_refused(struct pg_sink *ps, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strcmp(state, "23505") != 0) /* not unique_violation */
        return failed_with(ps, res, NULL);
    sl_info("postgres", "run %s: the table has keys of the run: rows are compared from now on",
            ps->run_id);
    ps->insert_first = false;
    return run(ps, "ROLLBACK TO SAVEPOINT insert_first", 0, NULL, NULL);
}

/* insert_absent for the rows of this sync (fresh[i]) that the validator did
 * not flag, COPYed straight into the table: no temporary table, no INSERT
 * ... SELECT. *all: they all went in; else (a key the table has) nothing
 * did and the run compares rows from now on. */
static int copy_absent(struct pg_sink *ps, const bool *fresh, struct sl_counts *c, bool *all)
{
    struct sl_buf sql = SL_BUF_INIT, tail = SL_BUF_INIT;
    bool *take = calloc(ps->nrow + 1, sizeof(*take));
    PGresult *refused = NULL;
    *all = false;
    int rc = sl_buf_printf(&sql, "COPY %s (", ps->tq);
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_puts(&sql, ", " RUN_COL ") FROM STDIN");
    rc |= sl_buf_putc(&tail, '\t');
    rc |= copy_value(&tail, ps->run_id);
    rc |= sl_buf_putc(&tail, '\n');
    if (rc || !take) {
        snprintf(ps->err, sizeof(ps->err), "out of memory");
        rc = SL_ERR_NOMEM;
        goto done;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < ps->nrow; i++)
        n += take[i] = fresh[i] && !ps->row[i].dup;
    if ((rc = run(ps, "SAVEPOINT insert_first", 0, NULL, NULL)))
        goto done;
    rc = copy_lines(ps, sql.data, take, tail.data, &refused);
    if (rc == 0)
        rc = inserted_all(ps, n, c, all);
    else if (refused) /* else rolled back */
        rc = insert_refused(ps, refused);
done:
    PQclear(refused);
    free(take);
    sl_buf_cleanup(&sql);
    sl_buf_cleanup(&tail);
    return rc;
}

/* Inserts the rows of src that the validator did not flag (DUPS_COL 0: no
 * earlier row of the run has their key) with a plain INSERT: while a run
 * writes keys the table does not have (a first load), that is all there is to
 * do for them, and it costs a third of what build_apply's statement does (no
 * join, no conflict arbitration). *all: they all went in, as created; a key
 * the table has (or has twice in src) makes PostgreSQL refuse the statement:
 * it is taken back to the savepoint, *all is false, and the run no longer
 * tries (ps->insert_first). Other errors are the caller's. */
static int insert_absent(struct pg_sink *ps, const char *src, struct sl_counts *c, bool *all)
{
    const char *params[] = {ps->run_id};
    struct sl_buf sql = SL_BUF_INIT;
    PGresult *res = NULL;
    *all = false;
    int rc = sl_buf_printf(&sql, "INSERT INTO %s (", ps->tq);
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_puts(&sql, ", " RUN_COL ") SELECT ");
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_printf(&sql, ", $1::text FROM %s WHERE " DUPS_COL " = 0", src);
    if (rc) {
        snprintf(ps->err, sizeof(ps->err), "out of memory");
        rc = SL_ERR_NOMEM;
        goto done;
    }
    if ((rc = run(ps, "SAVEPOINT insert_first", 0, NULL, NULL)))
        goto done;
    res = PQexecParams(ps->conn, sql.data, 1, NULL, params, NULL, NULL, 0);
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
        rc = inserted_all(ps, strtoull(PQcmdTuples(res), NULL, 10), c, all);
    else
        rc = insert_refused(ps, res);
done:
    PQclear(res);
    sl_buf_cleanup(&sql);
    return rc;
}

/* Whether every row of src equals the table's row of its key, which another
 * run wrote (an unchanged re-run): then applying them writes nothing, and
 * the counts are what build_apply's statement would say, from one lighter
 * statement (no rows built or kept): src's distinct keys unchanged, the
 * other rows replaced duplicates. *all: so, counted into *c; else the run
 * no longer tries (ps->check_first). */
static int all_unchanged(struct pg_sink *ps, const char *src, struct sl_counts *c, bool *all)
{
    const char *params[] = {ps->run_id};
    struct sl_buf sql = SL_BUF_INIT;
    PGresult *res = NULL;
    *all = false;
    int rc = sl_buf_puts(&sql, "SELECT count(*) FILTER (WHERE " OLD ".ctid IS NULL OR " OLD
                               "." RUN_COL " IS NOT DISTINCT FROM $1::text OR ");
    rc |= put_differs(ps, &sql, OLD ".", SRC ".");
    /* when every row has its table row (none differs), the table rows met
     * are src's distinct keys (the key is unique in the table): counting
     * them costs a sort of row addresses, not a grouping of src by key */
    rc |= sl_buf_printf(
        &sql, "), count(*), count(DISTINCT " OLD ".ctid) FROM %s " SRC " LEFT JOIN %s " OLD " ON ",
        src, ps->tq);
    rc |= put_key_join(ps, &sql, OLD, SRC);
    if (rc) {
        snprintf(ps->err, sizeof(ps->err), "out of memory");
        rc = SL_ERR_NOMEM;
        goto done;
    }
    if ((rc = run(ps, sql.data, 1, params, &res)))
        goto done;
    if (PQntuples(res) != 1 || PQnfields(res) != 3) {
        rc = failed_with(ps, res, NULL);
        goto done;
    }
    uint64_t differ = num(res, 0, 0), rows = num(res, 0, 1), keys = num(res, 0, 2);
    if (differ || keys > rows) {
        sl_info("postgres",
                "run %s: rows differ from the table's: every row is compared from now "
                "on",
                ps->run_id);
        ps->check_first = false;
        goto done;
    }
    c->unchanged += keys;
    c->updated += rows - keys; /* a key there twice: the last row replaced the others */
    c->duplicates += rows - keys;
    c->published += rows;
    *all = true;
done:
    PQclear(res);
    sl_buf_cleanup(&sql);
    return rc;
}

/* The key fields of row r's COPY text (the written columns, then the
 * digest), tab-separated, appended to b, then the digest: a KEYS_TABLE line
 * without its newline; *klen: the bytes of the key fields. iskey[i]:
 * ps->col[i] is a key attribute. */
static int key_line(struct pg_sink *ps, const struct brow *r, const bool *iskey, struct sl_buf *b,
                    size_t *klen)
{
    const char *p = ps->rows.data + r->off, *end = p + r->len;
    size_t start = b->len;
    bool first = true;
    for (size_t i = 0; i <= ps->ncol && p <= end; i++) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *stop = tab ? tab : end;
        if (i == ps->ncol) /* the digest (last) */
            *klen = b->len - start;
        if (i == ps->ncol || iskey[i]) {
            if ((!first && sl_buf_putc(b, '\t')) || sl_buf_append(b, p, (size_t)(stop - p)))
                return SL_ERR_NOMEM;
            first = false;
        }
        p = stop + 1;
    }
    return 0;
}

/* The unchanged check by digest: a row's digest stays in the table only
 * while no one but sluice changed the row (digest_guard), so a row whose
 * digest is the table row's is that row. The key and digest of each row of
 * this sync (fresh[i]) are COPYed into KEYS_TABLE and joined to the key's
 * index, which INCLUDEs the digest: the table's rows are not read. *all:
 * every digest is the table row's: the rows count as unchanged. A key the
 * table lacks ends checking for the run (check_first); any other difference
 * (a digest cleared by an UPDATE, or one of another set of columns) is left
 * to all_unchanged, which compares the columns. Only for rows the validator
 * did not flag and no key twice: then none of them can be a row this run
 * wrote, and each is one key. */
static int digest_check(struct pg_sink *ps, const bool *fresh, struct sl_counts *c, bool *all)
{
    const struct sl_job *job = ps->base.job;
    *all = false;
    if (!ps->keyed || !ps->check_first)
        return 0;
    struct sl_buf lines = SL_BUF_INIT, sql = SL_BUF_INIT;
    bool *iskey = calloc(ps->ncol + 1, sizeof(*iskey));
    struct sl_keyset *keys = sl_keyset_new();
    PGresult *res = NULL;
    size_t n = 0;
    int rc = iskey && keys ? 0 : SL_ERR_NOMEM;
    for (size_t i = 0; i < ps->ncol && rc == 0; i++)
        iskey[i] = is_key(job, ps->col[i]->name);
    for (size_t i = 0; i < ps->nrow && rc == 0; i++) {
        if (!fresh[i])
            continue;
        if (ps->row[i].dup)
            goto done; /* flagged: all_unchanged counts it */
        size_t start = lines.len, klen = 0;
        if ((rc = key_line(ps, &ps->row[i], iskey, &lines, &klen)))
            break;
        int seen = sl_keyset_test(keys, lines.data + start, klen, true);
        if (seen) { /* a key twice (or its fingerprint): all_unchanged counts it */
            rc = seen < 0 ? SL_ERR_NOMEM : 0;
            goto done;
        }
        n++;
        rc = sl_buf_putc(&lines, '\n') ? SL_ERR_NOMEM : 0;
    }
    if (rc || n == 0 || (rc = copy_begin(ps, "COPY " KEYS_TABLE " FROM STDIN")) ||
        (rc = copy_end(ps, PQputCopyData(ps->conn, lines.data, (int)lines.len) == 1, NULL)))
        goto done;
    rc = sl_buf_puts(&sql, "SELECT count(*) FILTER (WHERE " OLD ".");
    rc |= sl_pg_put_ident(&sql, ps->conn, job->key[0]);
    rc |= sl_buf_puts(&sql, " IS NULL), count(*) FILTER (WHERE " OLD "." DIGEST_COL
                            " IS DISTINCT FROM " SRC "." DIGEST_COL "), count(*) FROM " KEYS_TABLE
                            " " SRC " LEFT JOIN ");
    rc |= sl_buf_printf(&sql, "%s " OLD " ON ", ps->tq);
    rc |= put_key_join(ps, &sql, OLD, SRC);
    if (rc) {
        rc = SL_ERR_NOMEM;
        goto done;
    }
    if ((rc = run(ps, sql.data, 0, NULL, &res)))
        goto done;
    uint64_t absent = num(res, 0, 0), differ = num(res, 0, 1), rows = num(res, 0, 2);
    if (absent) {
        sl_info("postgres",
                "run %s: the table lacks keys of the run: rows are compared from now on",
                ps->run_id);
        ps->check_first = false;
    } else if (!differ && rows == n) {
        c->unchanged += rows;
        c->published += rows;
        *all = true;
    }
done:
    if (rc == SL_ERR_NOMEM)
        snprintf(ps->err, sizeof(ps->err), "out of memory");
    PQclear(res);
    free(iskey);
    sl_keyset_destroy(keys);
    sl_buf_cleanup(&lines);
    sl_buf_cleanup(&sql);
    return rc;
}

/* Applies the rows of src (the written columns, DUPS_COL and ROW_COL: the
 * staging table or ROWS_TABLE) and adds what it did to *c. distinct: a key
 * may be there more than once (the validator flagged a duplicate): the last
 * row of each key by source row is applied, and the earlier ones count as
 * updates, as the file sink counts them. undo: see build_apply. The caller's
 * transaction stays open (or is rolled back on error). */
static int apply_rows(struct pg_sink *ps, const char *src, bool distinct, bool undo,
                      struct sl_counts *c)
{
    const struct sl_job *job = ps->base.job;
    const char *params[] = {ps->run_id};
    struct sl_buf sql = SL_BUF_INIT;
    PGresult *res = NULL;
    int rc = 0;
    const char *subset = ""; /* the rows left to apply, of src */
    if (ps->insert_first) {
        bool all;
        if ((rc = insert_absent(ps, src, c, &all)))
            goto done;
        if (all && !distinct)
            goto done;
        if (all)
            subset = " WHERE " DUPS_COL " <> 0"; /* the flagged rows */
    }
    if (!*subset && ps->check_first) {
        bool all;
        if ((rc = all_unchanged(ps, src, c, &all)) || all)
            goto done;
    }
    if (!*subset && (!ps->keyed || (!distinct && job->options.allow_create))) {
        /* one statement straight from src; a key there twice (the validator
         * did not flag it) falls back to the distinct path */
        if (build_apply(ps, &sql, src, undo) || (rc = run(ps, "SAVEPOINT direct", 0, NULL, NULL)))
            goto done;
        res = PQexecParams(ps->conn, sql.data, 1, NULL, params, NULL, NULL, 0);
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            rc = run(ps, "RELEASE SAVEPOINT direct", 0, NULL, NULL);
            goto counted;
        }
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (!ps->keyed || !state || strcmp(state, "21000") != 0) {
            rc = failed_with(ps, res, NULL);
            goto done;
        }
        PQclear(res);
        res = NULL;
        if ((rc = run(ps, "ROLLBACK TO SAVEPOINT direct", 0, NULL, NULL)))
            goto done;
    }
    /* the last record of each key (by source row), with how many it replaced */
    sl_buf_reset(&sql);
    rc = sl_buf_puts(&sql, "INSERT INTO " BATCH_TABLE " SELECT DISTINCT ON (");
    rc |= put_cols(ps, &sql, "", 1);
    rc |= sl_buf_puts(&sql, ") ");
    rc |= put_row_cols(ps, &sql, "");
    rc |= sl_buf_puts(&sql, ", (count(*) OVER (PARTITION BY ");
    rc |= put_cols(ps, &sql, "", 1);
    rc |= sl_buf_printf(&sql, ") - 1)::integer FROM %s%s ORDER BY ", src, subset);
    rc |= put_cols(ps, &sql, "", 1);
    rc |= sl_buf_puts(&sql, ", " ROW_COL " DESC");
    if (rc) {
        rc = SL_ERR_NOMEM;
        snprintf(ps->err, sizeof(ps->err), "out of memory");
        goto done;
    }
    if ((rc = run(ps, "TRUNCATE " BATCH_TABLE, 0, NULL, NULL)) ||
        (rc = run(ps, sql.data, 0, NULL, NULL)))
        goto done;
    if (undo) {
        if (build_apply(ps, &sql, BATCH_TABLE, true)) {
            rc = SL_ERR_NOMEM;
            snprintf(ps->err, sizeof(ps->err), "out of memory");
            goto done;
        }
        res = PQexecParams(ps->conn, sql.data, 1, NULL, params, NULL, NULL, 0);
    } else {
        res = PQexecPrepared(ps->conn, APPLY_STMT, 1, params, NULL, NULL, 0);
    }
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = failed_with(ps, res, NULL);
        goto done;
    }
counted:
    if (PQntuples(res) != 1 || PQnfields(res) != 5) {
        rc = failed_with(ps, res, NULL);
        goto done;
    }
    uint64_t absent = num(res, 0, 0), absent_dups = num(res, 0, 1), changed = num(res, 0, 2),
             same = num(res, 0, 3), present_dups = num(res, 0, 4);
    struct sl_counts d = {0};
    if (job->options.allow_create || !ps->keyed) {
        d.created = absent;
        d.updated = absent_dups;
    } else {
        d.not_created = absent + absent_dups;
    }
    d.updated += changed + present_dups;
    d.unchanged = same;
    d.published = d.created + d.updated + d.unchanged;
    d.duplicates = absent_dups + present_dups;
    c->published += d.published;
    c->created += d.created;
    c->updated += d.updated;
    c->unchanged += d.unchanged;
    c->not_created += d.not_created;
    c->duplicates += d.duplicates;
done:
    PQclear(res);
    sl_buf_cleanup(&sql);
    return rc;
}

/* Whether table (quoted) exists. */
static int table_exists(struct pg_sink *ps, const char *table, bool *exists)
{
    const char *params[] = {table};
    PGresult *res = NULL;
    int rc = run(ps, "SELECT to_regclass($1) IS NOT NULL", 1, params, &res);
    if (rc == 0)
        *exists = truth(res, 0, 0);
    PQclear(res);
    return rc;
}

/* Whether the run's staging table exists (some publisher staged rows).
 * Always asked, never taken from stage_ready: another publisher of the run
 * may have applied and dropped the table this one created. */
static int stage_exists(struct pg_sink *ps, bool *exists)
{
    int rc = table_exists(ps, ps->stage, exists);
    if (rc == 0)
        ps->stage_ready = *exists;
    return rc;
}

/* A refusal by the destination (the data, not the connection): the run
 * fails. */
static bool refusal(int rc)
{
    return rc && rc != SL_ERR_NOMEM && sl_err_class(rc) != SL_ERRCLASS_RETRIABLE;
}

/* The planner settings of a transaction that joins batches to the table: a
 * batch is small beside the table: join it by the key's index, never by
 * hashing or sorting the whole table (the planner knows nothing of the
 * temporary table's rows); and in this transaction's process alone: a
 * parallel worker is a process started for one statement, dearer than the
 * part of a batch it would take, on cores the pipeline uses. */
static int batch_plans(struct pg_sink *ps)
{
    return run(ps,
               "SELECT set_config('enable_hashjoin', 'off', true), "
               "set_config('enable_mergejoin', 'off', true), "
               "set_config('max_parallel_workers_per_gather', '0', true)",
               0, NULL, NULL);
}

/* Before the seal, a batch of an unchanged re-run need not be staged: the
 * rows of this sync (fresh[i]) are COPYed into ROWS_TABLE and found equal
 * to the table's (all_unchanged, which writes nothing), so only their counts
 * are kept (*all), as applying them at the seal would have counted them; a
 * run that fails later still publishes nothing and counts none. Not with
 * duplicates last_wins: a flagged row staged later would be counted apart
 * from the earlier row of its key that was counted here. Else, or when a row
 * differs (the run stages and compares from now on), the caller stages. */
static int check_unchanged(struct pg_sink *ps, const bool *fresh, struct sl_counts *d, bool *all)
{
    const struct sl_job *job = ps->base.job;
    *all = false;
    if (!ps->check_first || job->options.duplicates != SL_DUPS_REJECT || job->options.approval)
        return 0;
    int rc = batch_plans(ps);
    if (rc || (rc = digest_check(ps, fresh, d, all)) || *all || !ps->check_first)
        return rc;
    if ((rc = copy_rows(ps, ROWS_TABLE, fresh)) == 0)
        rc = all_unchanged(ps, ROWS_TABLE, d, all);
    return rc;
}

/* Once the parser sealed the run (it read the whole file: the run can no
 * longer fail but by the destination), rows are applied as they come rather
 * than staged: first what was staged before the seal, then each batch. */
static int apply_now(struct pg_sink *ps, uint64_t dupflags, const bool *fresh, bool batch_dups,
                     bool copy, struct sl_counts *d, bool *stage_applied)
{
    int rc = batch_plans(ps);
    bool staged = false;
    if (rc == 0)
        rc = stage_exists(ps, &staged);
    if (rc == 0 && staged) {
        char drop[128];
        snprintf(drop, sizeof(drop), "DROP TABLE %s", ps->stage);
        if ((rc = ensure_undo(ps)) || (rc = apply_rows(ps, ps->stage, dupflags > 0, true, d)) ||
            (rc = run(ps, drop, 0, NULL, NULL)))
            return rc;
        ps->stage_ready = false;
        *stage_applied = true;
    }
    if (rc == 0 && copy) {
        bool all = false;
        if (!batch_dups && (rc = digest_check(ps, fresh, d, &all)))
            return rc;
        if (all)
            return 0;
        if (ps->insert_first && (rc = copy_absent(ps, fresh, d, &all)))
            return rc;
        if (all && !batch_dups)
            return 0;
        bool *take = (bool *)fresh, *flagged = NULL;
        if (all) { /* the flagged rows are left, to compare */
            if (!(take = flagged = calloc(ps->nrow + 1, sizeof(*flagged)))) {
                snprintf(ps->err, sizeof(ps->err), "out of memory");
                return SL_ERR_NOMEM;
            }
            for (size_t i = 0; i < ps->nrow; i++)
                flagged[i] = fresh[i] && ps->row[i].dup;
        }
        if ((rc = ensure_undo(ps)) == 0 && (rc = copy_rows(ps, ROWS_TABLE, take)) == 0)
            rc = apply_rows(ps, ROWS_TABLE, batch_dups, true, d);
        free(flagged);
    }
    return rc;
}

/* One sync (sink.h) in one transaction. refused: the destination refused
 * this sync's rows before: they are recorded, not applied, and the run
 * fails with that reason. */
static int sync_once(struct pg_sink *ps, const struct sl_run_facts *fx,
                     const struct sl_rejected_row *rej, size_t nrej, struct sl_run_progress *out,
                     const char *refused, bool *refused_now)
{
    const struct sl_job *job = ps->base.job;
    bool *fresh = NULL;
    PGresult *res = NULL;
    int rc = begin_run(ps, &res);
    if (rc)
        goto done;
    uint64_t dupflags = read_progress(ps, res, out);
    PQclear(res);
    res = NULL;
    /* what becomes of the rows: dropped (final), recorded only (failed),
     * applied (sealed), or staged */
    bool keep =
        !out->final && !out->f.failed && !out->f.skipped && !fx->failed && !fx->skipped && !refused;
    bool apply = keep && out->f.sealed && !job->options.approval;
    uint64_t staged = 0, rejected = 0, dups = 0, flags = 0;
    bool batch_dups = false, stage_applied = false;
    struct sl_counts d = {0};
    if (!out->final && (ps->nrow || nrej)) {
        if ((rc = load_chunks(ps, rej, nrej)))
            goto done;
        if (!(fresh = calloc(ps->nrow + 1, sizeof(*fresh)))) {
            rc = SL_ERR_NOMEM;
            snprintf(ps->err, sizeof(ps->err), "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nrej; i++) {
            if (first_time(ps, rej[i].row)) {
                rejected++;
                dups += rej[i].duplicate;
            }
        }
        for (size_t i = 0; i < ps->nrow; i++) {
            if ((fresh[i] = first_time(ps, ps->row[i].srow))) {
                staged++;
                flags += ps->row[i].dup;
                batch_dups |= ps->row[i].dup;
            }
        }
        if (staged + rejected < ps->nrow + nrej)
            sl_info("postgres", "run %s: %zu rows were recorded before (redelivered): skipped",
                    ps->run_id, ps->nrow + nrej - (size_t)(staged + rejected));
    }
    if (apply) {
        rc = apply_now(ps, dupflags, fresh, batch_dups, staged > 0, &d, &stage_applied);
        if (rc) {
            *refused_now = refusal(rc);
            goto done;
        }
        flags = 0; /* dupflags counts the staged rows' flags only */
    } else if (keep && staged) {
        bool all = false;
        if ((rc = check_unchanged(ps, fresh, &d, &all)) ||
            (!all && ((rc = ensure_stage(ps)) || (rc = copy_rows(ps, ps->stage, fresh)))))
            goto done;
    }
    if (!out->final && (ps->nrow || nrej) && (rc = store_chunks(ps)))
        goto done;
    char v[13][24];
    const uint64_t n[] = {staged,           rejected,    dups,          flags,
                          fx->sealed_count, fx->bytes,   d.published,   d.created,
                          d.updated,        d.unchanged, d.not_created, d.duplicates};
    for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)n[i]);
    char started[24];
    snprintf(started, sizeof(started), "%lld", (long long)fx->started_at);
    const char *reason = fx->failed || fx->skipped ? fx->reason : refused;
    const char *params[] = {
        ps->run_id,
        v[0],
        v[1],
        v[2],
        v[3],
        fx->fetched ? "t" : "f",
        fx->sealed ? v[4] : NULL,
        fx->failed || refused ? "t" : "f",
        fx->skipped ? "t" : "f",
        reason,
        fx->fetched && fx->sha256[0] ? fx->sha256 : NULL,
        fx->fetched ? v[5] : NULL,
        fx->fetched && fx->started_at ? started : NULL,
        v[6],
        v[7],
        v[8],
        v[9],
        v[10],
        v[11],
        apply && (staged || stage_applied) ? "t" : "f",
        stage_applied ? "t" : "f",
    };
    rc = run(ps,
             "UPDATE sluice_progress SET staged = staged + $2::bigint, "
             "rejected = rejected + $3::bigint, duplicates = duplicates + $4::bigint, "
             "dupflags = CASE WHEN $21::boolean THEN 0 ELSE dupflags END + $5::bigint, "
             "fetched = fetched OR $6::boolean, "
             "sealed = coalesce(sealed, $7::bigint), failed = failed OR $8::boolean, "
             "skipped = skipped OR $9::boolean, reason = coalesce(reason, $10), "
             "sha256 = coalesce(sha256, $11), bytes = coalesce(bytes, $12::bigint), "
             "started_at = coalesce(started_at, $13::bigint), "
             "published = coalesce(published, 0) + $14::bigint, "
             "created = coalesce(created, 0) + $15::bigint, "
             "updated = coalesce(updated, 0) + $16::bigint, "
             "unchanged = coalesce(unchanged, 0) + $17::bigint, "
             "not_created = coalesce(not_created, 0) + $18::bigint, "
             "replaced = coalesce(replaced, 0) + $19::bigint, "
             "applied = applied OR $20::boolean, updated_at = now() "
             "WHERE run_id = $1 RETURNING " PROGRESS_COLS,
             21, params, &res);
    if (rc)
        goto done;
    read_progress(ps, res, out);
    rc = run(ps, "COMMIT", 0, NULL, NULL);
done:
    PQclear(res);
    free(fresh);
    return rc;
}

static int pg_sync(struct sl_sink *sk, const struct sl_run_facts *fx,
                   const struct sl_rejected_row *rej, size_t nrej, struct sl_run_progress *out,
                   char *errbuf, size_t errsz)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    static const struct sl_run_facts none;
    struct sl_run_progress scratch;
    if (!fx)
        fx = &none;
    if (!out)
        out = &scratch;
    bool refused = false;
    int rc = sync_once(ps, fx, rej, nrej, out, NULL, &refused);
    if (rc && refused) {
        /* the run fails: its rows are recorded (so that it completes), the
         * reason kept, and finalize undoes what was applied */
        char why[sizeof(ps->err)];
        snprintf(why, sizeof(why), "%s", ps->err);
        sl_error("postgres", "run %s: the destination refused rows: the run fails: %s", ps->run_id,
                 why);
        bool again = false;
        ps->stage_ready = ps->undo_ready = false; /* rolled back */
        rc = sync_once(ps, fx, rej, nrej, out, why, &again);
    }
    if (rc == 0) {
        batch_reset(ps); /* staged, applied, or dropped when the run is final */
    } else {
        /* rolled back: a table this sync created is gone again */
        ps->stage_ready = ps->undo_ready = false;
        sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    }
    return rc;
}

/* ---- finalizing --------------------------------------------------------- */

/* Deletes the rows of the table that this run did not write. */
static int mirror_delete(struct pg_sink *ps)
{
    struct sl_buf sql = SL_BUF_INIT;
    const char *params[] = {ps->run_id};
    PGresult *res = NULL;
    int rc =
        sl_buf_printf(&sql, "DELETE FROM %s WHERE " RUN_COL " IS DISTINCT FROM $1::text", ps->tq);
    if (rc == 0 && (rc = run(ps, sql.data, 1, params, &res)) == 0)
        sl_info("postgres", "run %s: mirror deleted %s rows", ps->run_id, PQcmdTuples(res));
    PQclear(res);
    sl_buf_cleanup(&sql);
    return rc;
}

/* Takes back what a failed run applied before it was final: the rows it
 * wrote go, the old versions it kept come back. */
static int undo_applied(struct pg_sink *ps)
{
    const char *params[] = {ps->run_id};
    char sql[600];
    PGresult *res = NULL;
    bool exists = false;
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE " RUN_COL " = $1::text", ps->tq);
    int rc = run(ps, sql, 1, params, &res);
    if (rc)
        return rc;
    sl_info("postgres", "run %s failed: the %s rows it wrote are taken back", ps->run_id,
            PQcmdTuples(res));
    PQclear(res);
    if ((rc = table_exists(ps, ps->undo, &exists)) || !exists)
        return rc;
    snprintf(sql, sizeof(sql), "INSERT INTO %s SELECT * FROM %s", ps->tq, ps->undo);
    return run(ps, sql, 0, NULL, NULL);
}

/* Marks the run final with ps->counts (zero unless applied) and drops what
 * was staged and kept for undo; commits. */
static int close_run(struct pg_sink *ps, bool failed, const char *reason,
                     struct sl_run_progress *pr)
{
    const struct sl_counts *c = &ps->counts;
    char v[6][24];
    const uint64_t n[6] = {c->published, c->created,     c->updated,
                           c->unchanged, c->not_created, c->duplicates};
    for (int i = 0; i < 6; i++)
        snprintf(v[i], sizeof(v[i]), "%llu", (unsigned long long)n[i]);
    const char *params[] = {ps->run_id, failed ? "t" : "f", reason, v[0], v[1], v[2], v[3], v[4],
                            v[5]};
    char drop[160];
    snprintf(drop, sizeof(drop), "DROP TABLE IF EXISTS %s, %s", ps->stage, ps->undo);
    PGresult *res = NULL;
    int rc = run(ps,
                 "UPDATE sluice_progress SET final = true, failed = failed OR $2::boolean, "
                 "reason = coalesce(reason, $3), published = $4::bigint, created = $5::bigint, "
                 "updated = $6::bigint, unchanged = $7::bigint, not_created = $8::bigint, "
                 "replaced = $9::bigint, updated_at = now() WHERE run_id = $1 "
                 "RETURNING " PROGRESS_COLS,
                 9, params, &res);
    if (rc == 0) {
        read_progress(ps, res, pr);
        PQclear(res);
        if ((rc = run(ps, drop, 0, NULL, NULL)) == 0 &&
            (rc = run(ps, "DELETE FROM sluice_progress_rows WHERE run_id = $1", 1, params, NULL)) ==
                0)
            rc = run(ps, "COMMIT", 0, NULL, NULL);
    }
    ps->stage_ready = ps->undo_ready = false;
    return rc;
}

static void copy_counts(const struct pg_sink *ps, struct sl_counts *c)
{
    if (!c)
        return;
    c->published = ps->counts.published;
    c->created = ps->counts.created;
    c->updated = ps->counts.updated;
    c->unchanged = ps->counts.unchanged;
    c->not_created = ps->counts.not_created;
    c->duplicates = ps->counts.duplicates;
}

static int pg_finalize(struct sl_sink *sk, bool success, bool keep_unseen,
                       struct sl_run_progress *out, struct sl_counts *c, char *errbuf, size_t errsz)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    struct sl_run_progress scratch;
    if (!out)
        out = &scratch;
    PGresult *res = NULL;
    int rc = begin_run(ps, &res);
    if (rc)
        return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    ps->counts = (struct sl_counts){0};
    uint64_t dupflags = read_progress(ps, res, out);
    PQclear(res);
    if (out->final) { /* finalized before: by another publisher, or by us before a crash */
        rc = run(ps, "COMMIT", 0, NULL, NULL);
        copy_counts(ps, c);
        return rc ? sl_seterr(errbuf, errsz, rc, "%s", ps->err) : 1;
    }
    bool failed = !success && !out->f.skipped; /* a skipped run discards, not fails */
    char reason[512] = "";
    if (success) {
        struct sl_counts d = ps->acc; /* what was applied as it came */
        bool staged = false;
        rc = stage_exists(ps, &staged);
        if (rc == 0 && staged)
            rc = apply_rows(ps, ps->stage, dupflags > 0, false, &d);
        if (rc == 0 && sk->job->options.sync == SL_SYNC_MIRROR) {
            if (keep_unseen)
                sl_warn("postgres",
                        "run %s: rows were rejected: mirror keeps the rows it did "
                        "not see",
                        ps->run_id);
            else
                rc = mirror_delete(ps);
        }
        if (rc == 0)
            ps->counts = d;
        if (rc && sl_err_class(rc) != SL_ERRCLASS_RETRIABLE) {
            /* the destination refused the run: it fails, and publishes nothing */
            snprintf(reason, sizeof(reason), "%s", ps->err);
            failed = true;
            ps->stage_ready = false;
            if ((rc = begin_run(ps, &res)) == 0) {
                read_progress(ps, res, out);
                PQclear(res);
                if (out->final) {
                    rc = run(ps, "COMMIT", 0, NULL, NULL);
                    copy_counts(ps, c);
                    return rc ? sl_seterr(errbuf, errsz, rc, "%s", ps->err) : 1;
                }
            }
        }
        if (rc)
            return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    }
    if (ps->applied && !(success && !failed) && (rc = undo_applied(ps)))
        return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    if ((rc = close_run(ps, failed, reason[0] ? reason : NULL, out)))
        return sl_seterr(errbuf, errsz, rc, "%s", ps->err);
    copy_counts(ps, c);
    return 0;
}

/* ---- sink ops ----------------------------------------------------------- */

/* Appends DIGEST_COL to the row whose COPY text starts at off in ps->rows:
 * the first 64 bits of the SHA-256 of that text (the written columns as they
 * go to the table), as a bigint. Equal digests, equal rows: two different
 * rows of a key share one by chance once in 2^64. */
static int put_digest(struct pg_sink *ps, size_t off)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_DigestInit_ex(ps->md, ps->sha256, NULL) ||
        !EVP_DigestUpdate(ps->md, ps->rows.data + off, ps->rows.len - off) ||
        !EVP_DigestFinal_ex(ps->md, md, &n) || n < 8)
        return SL_ERR_NOMEM;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | md[i];
    /* as a signed decimal, written backwards from the end of text */
    char text[24], *p = text + sizeof(text);
    bool neg = v >> 63;
    uint64_t u = neg ? ~v + 1 : v; /* the magnitude of (int64_t)v */
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg)
        *--p = '-';
    *--p = '\t';
    return sl_buf_append(&ps->rows, p, (size_t)(text + sizeof(text) - p)) ? SL_ERR_NOMEM : 0;
}

static int pg_write(struct sl_sink *sk, const struct sl_msg *rec, bool duplicate,
                    enum sl_write_result *res)
{
    struct pg_sink *ps = (struct pg_sink *)sk;
    const struct sl_job *job = sk->job;
    *res = SL_WRITE_CREATED; /* provisional: the results come at the end of the run */
    if (rec->kind != SL_MSG_RECORD || rec->u.rec.row >= ROW_MAX) {
        snprintf(ps->err, sizeof(ps->err), "cannot %s: %s", ps->what,
                 rec->kind != SL_MSG_RECORD ? "not a record" : "row number out of range");
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
    *br = (struct brow){.off = ps->rows.len, .srow = r->row, .dup = duplicate};
    for (size_t i = 0; i < ps->ncol; i++) {
        const struct sl_attr *a = ps->col[i];
        if ((i && sl_buf_putc(&ps->rows, '\t')) ||
            copy_value(&ps->rows, value_of(r, a, (size_t)(a - job->attrs))))
            return SL_ERR_NOMEM;
    }
    if (put_digest(ps, br->off))
        return SL_ERR_NOMEM;
    br->len = ps->rows.len - br->off;
    ps->nrow++;
    if (ps->nrow >= 4 * BATCH_ROWS || ps->rows.len >= BATCH_BYTES) {
        char err[512];
        return pg_sync(sk, NULL, NULL, 0, NULL, err, sizeof(err));
    }
    return 0;
}

static int pg_commit(struct sl_sink *sk, char *errbuf, size_t errsz)
{
    return pg_sync(sk, NULL, NULL, 0, NULL, errbuf, errsz);
}

/* Standalone use (no publisher): stages what is left and finalizes. */
static int pg_finish(struct sl_sink *sk, bool success, char *errbuf, size_t errsz)
{
    struct sl_run_progress pr;
    int rc = pg_sync(sk, NULL, NULL, 0, NULL, errbuf, errsz);
    if (rc)
        return rc;
    rc = pg_finalize(sk, success, sk->keep_unseen, &pr, NULL, errbuf, errsz);
    if (rc < 0)
        return rc;
    if (success && pr.f.failed)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s",
                         pr.f.reason ? pr.f.reason : "the run failed");
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
    /* an open transaction is rolled back by the server when we go; a
     * connection outside any transaction waits in the pool for the next
     * sink of the same job version and table (its session state is theirs) */
    if (ps->conn && ps->ready && ps->pool_tag)
        sl_pg_pool_put(ps->conn, ps->conninfo, ps->pool_tag);
    else if (ps->conn)
        PQfinish(ps->conn);
    free(ps->conninfo);
    free(ps->pool_tag);
    free(ps->run_id);
    free(ps->what);
    free(ps->tq);
    free(ps->col);
    free(ps->row);
    free(ps->chunk);
    EVP_MD_CTX_free(ps->md);
    EVP_MD_free(ps->sha256);
    sl_buf_cleanup(&ps->rows);
    sl_buf_cleanup(&ps->reason);
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
    .sync = pg_sync,
    .finalize = pg_finalize,
};

/* prefix ("_sluice_stage_") and the first 32 hex digits of SHA-256(run
 * id), quoted: any run id gives a valid, distinct table name. */
static int run_table_name(const char *prefix, const char *run_id, char out[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(run_id, strlen(run_id), md, &mdlen, EVP_sha256(), NULL) || mdlen < 16)
        return SL_ERR_FATAL;
    int n = snprintf(out, 64, "\"%s", prefix);
    for (int i = 0; i < 16; i++)
        n += snprintf(out + n, (size_t)(64 - n), "%02x", md[i]);
    snprintf(out + n, (size_t)(64 - n), "\"");
    return 0;
}

/* ps->pool_tag: what the session state (prepare_session) follows from, the
 * job (its id, version and document: a job loaded twice under one version
 * may differ) and the table; a connection given back under the same tag is
 * ready for this sink. A job without its document gets no tag (NULL: its
 * connections are not pooled). 0 or SL_ERR_NOMEM. */
static int pool_tag(struct pg_sink *ps, const char *table)
{
    const struct sl_job *job = ps->base.job;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!job->doc)
        return 0;
    char *doc = json_dumps(job->doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!doc || !EVP_Digest(doc, strlen(doc), md, &mdlen, EVP_sha256(), NULL) || mdlen < 16) {
        free(doc);
        return SL_ERR_NOMEM;
    }
    free(doc);
    struct sl_buf b = SL_BUF_INIT;
    int rc = sl_buf_printf(&b, "sink\x1f%s\x1f%u\x1f%s\x1f", job->id, job->version, table);
    for (unsigned i = 0; i < 16; i++)
        rc |= sl_buf_printf(&b, "%02x", md[i]);
    if (rc) {
        sl_buf_cleanup(&b);
        return SL_ERR_NOMEM;
    }
    ps->pool_tag = sl_buf_steal(&b);
    return ps->pool_tag ? 0 : SL_ERR_NOMEM;
}

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
    ps->md = EVP_MD_CTX_new();
    ps->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    ps->keyed = job->options.sync != SL_SYNC_APPEND;
    ps->insert_first = ps->keyed && job->options.allow_create;
    ps->check_first = ps->keyed && job->options.sync != SL_SYNC_MIRROR;
    sl_buf_init(&ps->rows);
    sl_buf_init(&ps->reason);
    sl_pg_where(conninfo, ps->where, sizeof(ps->where));
    size_t wn = (table ? strlen(table) : 0) + strlen(ps->where) + 32;
    ps->run_id = strdup(run_id ? run_id : "");
    ps->what = malloc(wn);
    ps->col = calloc(job->nattrs + 1, sizeof(*ps->col));
    if (!ps->run_id || !ps->what || !ps->col || !ps->md || !ps->sha256) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(ps->what, wn, "write to table %s at %s", table ? table : "", ps->where);
    if (run_table_name("_sluice_stage_", ps->run_id, ps->stage) ||
        run_table_name("_sluice_undo_", ps->run_id, ps->undo)) {
        sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot %s: SHA-256 failed", ps->what);
        goto fail;
    }
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
    if (!(ps->conninfo = strdup(conninfo ? conninfo : "")) || pool_tag(ps, table)) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    bool pooled = ps->pool_tag && (ps->conn = sl_pg_pool_get(ps->conninfo, ps->pool_tag)) != NULL;
    if (!pooled && !(ps->conn = sl_pg_connect(conninfo, SL_PG_CONNECT_TIMEOUT, errbuf, errsz)))
        goto fail;
    if (setup_table(ps, table, pooled, errbuf, errsz))
        goto fail;
    ps->ready = true;
    return &ps->base;
fail:
    pg_destroy(&ps->base);
    return NULL;
}
