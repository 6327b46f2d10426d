/*
 * What the gateway's HTTP API (services/gateway) reads and changes in the
 * control plane: API tokens (kept as SHA-256 only), jobs as listed and
 * shown to users, enabling and deleting them, run-now requests, and runs
 * with their rejected rows.
 *
 * Every function takes a connection the caller owns and uses from one
 * thread at a time; none leaves a transaction open. Results come as jansson
 * values (caller json_decref()s them) shaped as the API returns them
 * (docs/api.md), so that the HTTP layer only routes and encodes. Failures
 * return an sl_err with errbuf set: SL_ERR_NOTFOUND for a job, run or token
 * that does not exist, SL_ERR_LIMIT for a refusal because of the state of
 * things (a job with a run in flight, a name taken), anything else is the
 * database's (sl_pg_exec).
 */
#ifndef SLUICE_API_STORE_H
#define SLUICE_API_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

/* Roles of API tokens, lowest first: a role may do what the lower ones may.
 * SL_ROLE_TRIGGER stands apart: it may only trigger runs (POST
 * /v1/jobs/{id}/trigger), of the jobs its token lists or of every job, and
 * nothing else; operator and admin may trigger too. */
enum sl_api_role {
    SL_ROLE_NONE = 0,
    SL_ROLE_VIEWER,
    SL_ROLE_OPERATOR,
    SL_ROLE_ADMIN,
    SL_ROLE_TRIGGER
};

/* "viewer", "operator", "admin", "trigger" (SL_ROLE_NONE: ""). */
const char *sl_api_role_name(enum sl_api_role role);
/* The role named name, or SL_ROLE_NONE. */
enum sl_api_role sl_api_role_parse(const char *name);

/* SHA-256 of token as lowercase hex into out[65]. */
void sl_api_token_hash(const char *token, char out[65]);

/* Stores a token of name and role by its hash (sl_api_token_hash); replace
 * true overwrites a token of the same name (the bootstrap admin token), else
 * a taken name is SL_ERR_LIMIT. jobs (a JSON array of job ids, or NULL: every
 * job) limits a trigger token to those jobs. */
int sl_api_token_put(PGconn *conn, const char *name, enum sl_api_role role, const char *sha256,
                     const json_t *jobs, bool replace, char *errbuf, size_t errsz);

/* Whether the token named name may trigger job id: *ok false when its
 * list of jobs leaves the job out. */
int sl_api_token_covers(PGconn *conn, const char *name, const char *id, bool *ok, char *errbuf,
                        size_t errsz);

/* The role and name (into name[namesz]) of the token whose hash is sha256;
 * SL_ROLE_NONE when no token has it (not an error). The stored hash is
 * compared in constant time. Returns 0 or an sl_err. */
int sl_api_token_check(PGconn *conn, const char *sha256, enum sl_api_role *role, char *name,
                       size_t namesz, char *errbuf, size_t errsz);

/* The tokens as [{"name","role","created_at"}] (never their hashes). */
int sl_api_tokens_list(PGconn *conn, json_t **out, char *errbuf, size_t errsz);

/* Deletes the token of name; SL_ERR_NOTFOUND when there is none. */
int sl_api_token_delete(PGconn *conn, const char *name, char *errbuf, size_t errsz);

/* Up to limit jobs with ids after `after` (NULL: from the first), by id:
 * [{"id","current_version","enabled","next_run_at","created_at",
 * "updated_at"}]. *more says whether jobs follow the last one. */
int sl_api_jobs_list(PGconn *conn, const char *after, int limit, json_t **out, bool *more,
                     char *errbuf, size_t errsz);

/* Job id's metadata (as one item of the list, plus "version" and
 * "version_created_at") and the text of its version (0: the current one)
 * into *doc (caller frees). SL_ERR_NOTFOUND for an unknown job or version. */
int sl_api_job_get(PGconn *conn, const char *id, uint32_t version, json_t **meta, char **doc,
                   char *errbuf, size_t errsz);

/* Sets whether the scheduler fires job id (the versions stay as they are). */
int sl_api_job_set_enabled(PGconn *conn, const char *id, bool enabled, char *errbuf, size_t errsz);

/* Deletes job id and its versions (its runs stay, as history); SL_ERR_LIMIT
 * while one of its runs (or its targets' runs) is queued or running. A job
 * of the same name stored later starts after the deleted one's last version
 * (sluice_job_tombstones), so that a (job, version) pair never names two
 * documents. */
int sl_api_job_delete(PGconn *conn, const char *id, char *errbuf, size_t errsz);

/* Records a queued run of the current version of job id with a new run id
 * (run_id[37]) and the job's version in *version; SL_ERR_NOTFOUND for an
 * unknown job. The caller then sends the ticket (and sl_api_run_fail()s the
 * run when it cannot). */
int sl_api_run_queue(PGconn *conn, const char *id, const char *trigger, char run_id[37],
                     uint32_t *version, char *errbuf, size_t errsz);

/* sl_api_run_queue() for a trigger with an idempotency key (NULL: none):
 * the first request of a (job, key) records the run, a later one finds it:
 * *found true, run_id and *version the first one's, nothing recorded. */
int sl_api_run_queue_keyed(PGconn *conn, const char *id, const char *trigger, const char *key,
                           char run_id[37], uint32_t *version, bool *found, char *errbuf,
                           size_t errsz);

/* Removes a run that is still queued and never got its ticket out, so that
 * its idempotency key can start it again. */
int sl_api_run_forget(PGconn *conn, const char *run_id, char *errbuf, size_t errsz);

/* Fails a run that is still queued, with reason. */
int sl_api_run_fail(PGconn *conn, const char *run_id, const char *reason, char *errbuf,
                    size_t errsz);

/* What selects the runs of a job (every field optional). */
struct sl_api_run_filter {
    const char *status;   /* one status */
    const char *since;    /* RFC 3339: started at or after */
    const char *until;    /* RFC 3339: started before */
    int64_t after_us;     /* cursor: runs started before this (unix us)... */
    const char *after_id; /* ...or at it with a smaller id; NULL: from the newest */
    int limit;
};

/* The runs of job id and of its targets ("<id>#<object>"), newest first, as
 * [{"id","job_id","job_version","trigger","status","reason","started_at",
 * "finished_at","counts"}], each with "_cursor_us" (unix us of started_at,
 * for the next page's cursor; the caller removes it). *more says whether
 * runs follow. SL_ERR_NOTFOUND when the job does not exist and has no runs. */
int sl_api_runs_list(PGconn *conn, const char *id, const struct sl_api_run_filter *f, json_t **out,
                     bool *more, char *errbuf, size_t errsz);

/* Run id as an object: the list's fields plus "source" {"sha256","bytes"},
 * "unmapped_columns", "report" and "rejected_rows". */
int sl_api_run_get(PGconn *conn, const char *run_id, json_t **out, char *errbuf, size_t errsz);

/* The source columns of run id (a JSON array, or an empty one when the run
 * recorded none) into *columns; SL_ERR_NOTFOUND for an unknown run. */
int sl_api_run_columns(PGconn *conn, const char *run_id, json_t **columns, char *errbuf,
                       size_t errsz);

/* Up to limit rejected rows of run_id after source row `after`, in row
 * order, as [{"row","errors","source"}]. */
int sl_api_rejected_page(PGconn *conn, const char *run_id, int64_t after, int limit, json_t **out,
                         char *errbuf, size_t errsz);

#endif
