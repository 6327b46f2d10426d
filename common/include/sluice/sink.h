/*
 * Destinations (sinks) and run ledgers: where a run's results go.
 *
 * A sink receives the valid records of one run, in order, and says for each
 * whether it created, updated, left unchanged or skipped (not_created) a
 * destination record. finish() makes the run's writes visible (success) or
 * discards them. Implementations: file (NDJSON), postgres, http.
 *
 * A ledger receives the rejected rows of one run and its final summary:
 * local (errors.csv, rejected.ndjson, run.json in a directory) and postgres
 * (the control plane's runs and rejected rows).
 */
#ifndef SLUICE_SINK_H
#define SLUICE_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sluice/buf.h"
#include "sluice/msg.h"

struct sl_job;

enum sl_write_result {
    SL_WRITE_CREATED = 0,
    SL_WRITE_UPDATED,
    SL_WRITE_UNCHANGED,
    SL_WRITE_NOT_CREATED,
};

struct sl_sink;

/* What a publisher learned of a run from the runs topic (sl_sink_ops.sync).
 * Each fact is kept once stored: the first reason, sha256 and start win. */
struct sl_run_facts {
    bool fetched; /* sha256, bytes, started_at are set */
    bool sealed;  /* the parser's record count is sealed_count */
    bool failed, skipped;
    uint64_t sealed_count, bytes;
    int64_t started_at; /* unix microseconds */
    char sha256[65];
    const char *reason; /* why the run failed or was skipped, or NULL */
};

/* A rejected row as run progress counts it. */
struct sl_rejected_row {
    uint64_t row;
    bool duplicate; /* rejected as a duplicate key */
};

/* A run's progress as a durable sink stored it. */
struct sl_run_progress {
    struct sl_run_facts f; /* f.reason is borrowed until the sink's next call */
    uint64_t staged;       /* valid rows recorded (staged, or applied once sealed) */
    uint64_t rejected, duplicates;
    bool final; /* some publisher finalized the run */
};

struct sl_sink_ops {
    const char *name;
    /* Writes one valid record (SL_MSG_RECORD, attributes normalized). A
     * duplicate (last_wins) says so, so that the sink counts an update. */
    int (*write)(struct sl_sink *sk, const struct sl_msg *rec, bool duplicate,
                 enum sl_write_result *res);
    /* Makes every write so far durable. */
    int (*commit)(struct sl_sink *sk, char *errbuf, size_t errsz);
    /* End of run: success publishes (rename, mirror deletes), else discard. */
    int (*finish)(struct sl_sink *sk, bool success, char *errbuf, size_t errsz);
    void (*destroy)(struct sl_sink *sk);
    /* Optional (NULL: the results write() gave are final). A sink that
     * batches learns the results only when a batch is applied: its write()
     * says SL_WRITE_CREATED for every record (provisional: each record is
     * counted once, as published, so published + rejected + not_created still
     * reaches the sealed count) and counts() then fills c's published,
     * created, updated, unchanged and not_created with the real tallies of
     * every record applied so far; after finish(success) they are the run's.
     * Other fields of c are left alone. */
    void (*counts)(struct sl_sink *sk, struct sl_counts *c);
    /* Optional: why the last write() or commit() failed ("cannot write to
     * table items at 127.0.0.1:5432: ..."), or NULL. Borrowed until the next
     * call on sk. */
    const char *(*last_error)(struct sl_sink *sk);

    /* Optional, both or neither: durable run progress (the postgres sink).
     * Such a sink stages a run's records and applies them all at once when
     * the run is final, and keeps the run's progress beside them, so that
     * any number of publishers, each getting some of the run's messages,
     * any of them redelivered, count every row exactly once.
     *
     * sync() makes the records written since the last sync, the rejected rows
     * rej[0..nrej) (already stored in the ledger) and the facts fx durable in
     * one transaction, counting only rows that no sync recorded before (by
     * run and row number), and fills *out with the run's progress as stored.
     * Records of a run that is final already are dropped. */
    int (*sync)(struct sl_sink *sk, const struct sl_run_facts *fx,
                const struct sl_rejected_row *rej, size_t nrej, struct sl_run_progress *out,
                char *errbuf, size_t errsz);
    /* Finalizes the run once among all publishers: with success, applies
     * the records still staged to the destination (and mirror deletes
     * unless keep_unseen), else discards them and takes back what was
     * applied; fills c's published, created,
     * updated, unchanged, not_created and duplicates (records replaced by a
     * later one of the same key), and *out with the run's final progress
     * (out->f.failed and f.reason say when the destination refused the
     * run: it then failed and published nothing). 0 when this call
     * finalized the run, 1 when some call did before (c and out then hold
     * what that call stored), or an error (nothing changed; retriable ones
     * may be retried). */
    int (*finalize)(struct sl_sink *sk, bool success, bool keep_unseen, struct sl_run_progress *out,
                    struct sl_counts *c, char *errbuf, size_t errsz);
};

struct sl_sink {
    const struct sl_sink_ops *ops;
    const struct sl_job *job;
    /* Set by the publisher before finish(): some rows of the run were
     * rejected, so sync mirror must not delete the records the file still
     * holds but failed to deliver (they would vanish for a typo). */
    bool keep_unseen;
};

/* NDJSON file sink writing path (through path.tmp, renamed at success). */
struct sl_sink *sl_sink_file_open(const char *path, const struct sl_job *job, char *errbuf,
                                  size_t errsz);
void sl_sink_destroy(struct sl_sink *sk);

/* PostgreSQL sink (sink_postgres.c) writing the job's records to
 * destination.table (default: the object) of the database conninfo names (a
 * libpq URI or keyword string). Creates the table when missing (columns typed
 * as JOBS.md says, a unique index on the key, bookkeeping column
 * _sluice_run), adds missing attribute columns to an existing one. Records
 * are applied in batches inside one transaction that commit() and
 * finish(success) commit; results come from counts(). run_id is copied.
 * Returns the sink, or NULL with errbuf set ("could not connect to
 * postgresql at 127.0.0.1:5432: Connection refused"). */
struct sl_sink *sl_sink_postgres_open(const char *conninfo, const struct sl_job *job,
                                      const char *run_id, char *errbuf, size_t errsz);

/* The summary of a finished run. */
struct sl_run_summary {
    const char *run_id;
    const char *job;                 /* job name */
    const char *status;              /* succeeded, completed_with_errors, skipped, failed */
    const char *reason;              /* why it failed or was skipped, or NULL */
    int64_t started_at, finished_at; /* unix microseconds */
    const char *sha256;              /* of the source, or NULL */
    uint64_t bytes;
    struct sl_counts counts;
    const char *out_files[4]; /* files written, for the CLI summary */
};

struct sl_ledger;

struct sl_ledger_ops {
    const char *name;
    /* Records one rejected row (SL_MSG_REJECTION). */
    int (*reject)(struct sl_ledger *lg, const struct sl_msg *rej);
    /* Optional: what the parser's seal (ev) says of the source: its header,
     * CSV delimiter and text encoding (enum sl_encoding), so that the error
     * file keeps the source's columns and comes back as the source came, and
     * the columns the mapping does not read (run.json unmapped_columns). */
    int (*columns)(struct sl_ledger *lg, const struct sl_run_event *ev);
    /* Writes the run summary and closes the run's files. 0, or 1 when the
     * run was final in the ledger already (another publisher, or this one
     * before a crash, finished it: nothing is changed), or an error. */
    int (*finish)(struct sl_ledger *lg, const struct sl_run_summary *sum, char *errbuf,
                  size_t errsz);
    void (*destroy)(struct sl_ledger *lg);
    /* Optional: makes every rejected row so far durable (a durable sink's
     * sync() counts them next). */
    int (*flush)(struct sl_ledger *lg, char *errbuf, size_t errsz);
};

struct sl_smtp_config;

struct sl_ledger {
    const struct sl_ledger_ops *ops;
    const struct sl_job *job;
    /* Set by whoever opens the ledger: the SMTP settings of the run report
     * (run_report.h), which finish() sends when the job asks for one; NULL
     * or e-mail off: the report is written, and recorded as not sent. */
    const struct sl_smtp_config *smtp;
};

/* Local ledger in dir: rejected.ndjson as rows arrive; errors.csv and
 * run.json at finish. */
struct sl_ledger *sl_ledger_local_open(const char *dir, const struct sl_job *job, char *errbuf,
                                       size_t errsz);
void sl_ledger_destroy(struct sl_ledger *lg);

/* Ledger in the control plane (ledger_postgres.c): records the run (status
 * running) at once, its rejected rows in batches, the source header at the
 * seal, and the summary at finish. The schema must be migrated
 * (sl_control_migrate). NULL with errbuf set when the database cannot be
 * reached. */
struct sl_ledger *sl_ledger_postgres_open(const char *conninfo, const struct sl_job *job,
                                          const char *run_id, const char *trigger, char *errbuf,
                                          size_t errsz);

/* The members of a rejected row's JSON object, without the braces:
 * "row":N,"errors":[{"attribute","code","message","value"}],"source":{...}
 * (JOBS.md's rejected.ndjson), appended to b. 0 or SL_ERR_NOMEM. */
int sl_rejection_json(struct sl_buf *b, const struct sl_msg *rej);

/* The counts of a run as run.json writes them ({"read", "published",
 * "created", "updated", "unchanged", "rejected", "duplicates",
 * "not_created"}), a new object; NULL out of memory. */
json_t *sl_counts_json(const struct sl_counts *c);
/* us (unix microseconds) as an RFC 3339 UTC time string, or null for 0. */
json_t *sl_time_json(int64_t us);

/* One published record as a JSON object line (attributes typed as JOBS.md
 * says, in the job's attribute order, unset attributes left out) appended
 * to b, with a trailing newline. */
int sl_ndjson_record(struct sl_buf *b, const struct sl_job *job, const struct sl_msg *rec);

#endif
