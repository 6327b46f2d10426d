/*
 * The state store: what stages remember between messages and runs.
 *
 * local (a directory, embedded mode) and redis (distributed mode) behind one
 * struct sl_state_ops. Keys are the job id and the run id; values small.
 * Per job: the SHA-256 of the last successful run, and the validators (ETag,
 * Last-Modified) of the source's last fetch.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_state;
struct sl_seen_call; /* seen_keys_ask() */

/* One question of seen_keys(): was key seen in the run by another row? */
struct sl_seen_query {
    const char *key; /* keylen bytes, any (NUL included); NULL only when keylen is 0 */
    size_t keylen;
    uint64_t row; /* the source row asking (struct sl_record.row) */
    bool add;     /* a new key is remembered as first seen by row */
};

/* What a job remembers of its source's last complete fetch, for a
 * conditional request the next time (HTTP: If-None-Match, If-Modified-Since).
 * Strings are NUL-terminated, "" when the server sent none. */
#define SL_VALIDATOR_MAX 256
struct sl_source_validators {
    char url_sha256[65]; /* hex SHA-256 of the source URL as written (never expanded) */
    char etag[SL_VALIDATOR_MAX];
    char last_modified[64];
    char sha256[65]; /* hex SHA-256 of the body that came with them */
    uint64_t bytes;  /* its size */
};

struct sl_state_ops {
    const char *name;
    /* The SHA-256 (hex) of the last successful run of job into out; 0, or
     * SL_ERR_NOTFOUND when the job never succeeded. */
    int (*get_last_sha)(struct sl_state *st, const char *job_id, char out[65]);
    int (*set_last_sha)(struct sl_state *st, const char *job_id, const char *sha256);
    /* Whether key is a duplicate in run for source row row: the store
     * remembers, per run, each key with the row that first had it. 1 when
     * that row is another one, 0 when the key is new or its first row is row
     * itself (a redelivered message asks again: same answer, nothing
     * changes). With add, a new key is remembered as first seen by row;
     * without add nothing is remembered, and a key first seen by a later row
     * (a greater number) is no duplicate either: the asking row came first in
     * the source and only failed for another reason, so a redelivery of it
     * answers as it did the first time. Negative on error. */
    int (*seen_key)(struct sl_state *st, const char *run_id, const char *key, size_t keylen,
                    uint64_t row, bool add);
    /* The run is over: forget its per-run state. */
    int (*end_run)(struct sl_state *st, const char *run_id);
    void (*destroy)(struct sl_state *st);
    /* n questions of run at once, answered into out[0..n) (0 or 1) exactly
     * as n seen_key() calls in order would (the second row of a key in the
     * batch is a duplicate of the first), in one round trip to Redis. 0, or
     * negative on error: then out is undefined and some of the adds may have
     * been made, which is harmless, since asking the same batch again gives
     * the same answers (for checks without add, as long as a key's rows are
     * asked in their source order). q and out are the caller's; any thread. */
    int (*seen_keys)(struct sl_state *st, const char *run_id, const struct sl_seen_query *q,
                     size_t n, int *out);
    /* seen_keys() in two halves, so that the caller can work while the store
     * answers: seen_keys_ask() sends the questions (q may be reused once it
     * returns) and sets *call; seen_keys_answer() waits for the answers of
     * *call into out[0..n), retrying as seen_keys() does, and frees call,
     * whatever it returns. A caller has at most one call asked and not yet
     * answered, so calls are answered in the order asked. 0 or a negative
     * sl_err each (ask fails only on bad input or memory: a lost connection
     * is the answer's to retry). NULL in a store that answers at once. */
    int (*seen_keys_ask)(struct sl_state *st, const char *run_id, const struct sl_seen_query *q,
                         size_t n, struct sl_seen_call **call);
    int (*seen_keys_answer)(struct sl_state *st, struct sl_seen_call *call, int *out);
    /* The validators of job's source as last saved, into *out: 0, or
     * SL_ERR_NOTFOUND when none were saved, or another negative sl_err (a
     * record that is not one reads as SL_ERR_PARSE: fetch unconditionally). */
    int (*get_validators)(struct sl_state *st, const char *job_id,
                          struct sl_source_validators *out);
    /* Replaces job's validators with *v (every string NUL-terminated within
     * its array, no line break; sha256 lowercase hex). 0 or a negative
     * sl_err; any thread. */
    int (*set_validators)(struct sl_state *st, const char *job_id,
                          const struct sl_source_validators *v);
    /* Optional (NULL: no live progress is kept, as in embedded mode): adds
     * deltas[i] to the counter fields[i] ("<stage>.<what>", e.g.
     * "mapper.records_in") of the run's live progress, and stamps it with the
     * time ("updated_ms", unix milliseconds). Best effort: one attempt,
     * nothing retried, so that a slow store never holds a stage (a lost
     * update only makes the figures lag); kept 7 days. 0 or a negative
     * sl_err; any thread. */
    int (*progress_add)(struct sl_state *st, const char *run_id, const char *const *fields,
                        const uint64_t *deltas, size_t n);
    /* Optional: calls fn(field, value, arg) for each counter of the run's
     * live progress (none when nothing was kept). 0 or a negative sl_err. */
    int (*progress_get)(struct sl_state *st, const char *run_id,
                        void (*fn)(const char *field, uint64_t value, void *arg), void *arg);
};

struct sl_state {
    const struct sl_state_ops *ops;
};

/* State in directory dir (created when missing): jobs/<job>.sha256 and
 * jobs/<job>.validators (JSON) files; per-run keys in memory, compact (6 to 9 bytes a key): a set
 * of the keys, and the row that first had a key only for keys first had by the last 16384 rows or
 * more. So seen_key() and seen_keys() answer as above every question of a row no more than 16384
 * below the highest row asked in the run so far, whatever the order; a row further below that asks
 * again about a key whose first row is also that far below gets 1, a duplicate, even when it is
 * that first row (a late redelivery) or only checks and came before it (redis answers 0 to both).
 * Embedded mode never asks so: its one validator gets each row of a run once, in file order (the
 * parser numbers them so, the in-process bus keeps the order and never redelivers), and asks no row
 * twice, since this store fails only for lack of memory, which stops the run; a batch (at most 1024
 * rows) asked again right after it failed would still be answered exactly. NULL with errbuf set on
 * error. */
struct sl_state *sl_state_local_new(const char *dir, char *errbuf, size_t errsz);

/* State in Redis (distributed mode) at url: "redis://[[user]:password@]host[:port][/db]"
 * or "unix://[[user]:password@]/path[?db=N]", both with optional query
 * parameters connect_timeout, timeout, retry_for (seconds) and run_ttl
 * (seconds a run's keys outlive its last new key). NULL url: SLUICE_REDIS_URL,
 * else redis://127.0.0.1:6379/0. Connects once to fail fast; later outages
 * block each call, reconnecting with backoff, for at most retry_for seconds,
 * then the call returns SL_ERR_RETRY. NULL with errbuf set (never holding
 * the password) on a bad url or when redis cannot be reached. The caller owns
 * the store; every op may be called from any thread. */
struct sl_state *sl_state_redis_new(const char *url, char *errbuf, size_t errsz);

/* Destroys st; accepts NULL. */
void sl_state_destroy(struct sl_state *st);

#endif
