/*
 * The control plane in PostgreSQL: schema migrations, jobs with versions,
 * and the job registry the distributed services read.
 *
 * A job is stored as the document the user gave (text, so that nothing of it
 * is reordered or lost), one row per version; a run always names the version
 * it ran, and a stored version never changes. Migrations are numbered, each
 * applied once in its own transaction under an advisory lock, so that any
 * number of services may start at the same time.
 */
#ifndef SLUICE_CONTROL_H
#define SLUICE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct sl_job;
struct sl_jobs;

/* Applies every migration the database lacks. Returns 0, or an sl_err with
 * errbuf set. Safe to call concurrently from several processes. */
int sl_control_migrate(PGconn *conn, char *errbuf, size_t errsz);

/* The schema version the code knows (the last migration's number). */
int sl_control_schema_version(void);

/* Stores the job document text (len bytes, already loaded and checked as
 * job) as the next version of the job named job->name, creating the job at
 * version 1. A document equal to the current version stores nothing. On
 * success *version is the job's current version and *created says whether a
 * new version was stored. Returns 0 or an sl_err with errbuf set. */
int sl_control_put_job(PGconn *conn, const struct sl_job *job, const char *text, size_t len,
                       uint32_t *version, int *created, char *errbuf, size_t errsz);

/* Fires every enabled job whose next_run_at has come (now_us, unix
 * microseconds): records a queued run and sends its ticket on bus, then moves
 * next_run_at to the first slot after now, so that a scheduler that was down
 * fires a missed job once, not once per missed slot. Due jobs are locked
 * FOR UPDATE SKIP LOCKED and a ticket's run id is derived from the job and
 * the slot, so replicas never fire a slot twice. *fired: tickets sent.
 * Returns 0 or an sl_err with errbuf set. */
struct sl_bus;
int sl_scheduler_tick(PGconn *conn, struct sl_bus *bus, int64_t now_us, int *fired, char *errbuf,
                      size_t errsz);

/* A registry of the jobs stored in the control plane at conninfo. Versions
 * are loaded on first use and cached (a stored version never changes).
 * Thread-safe. NULL with errbuf set when the database cannot be reached. */
struct sl_jobs *sl_jobs_pg_new(const char *conninfo, char *errbuf, size_t errsz);

#endif
