/*
 * The state store: what stages remember between messages and runs.
 *
 * local (a directory, embedded mode) and redis (distributed mode) behind one
 * struct sl_state_ops. Keys are the job id and the run id; values small.
 */
#ifndef SLUICE_STATE_H
#define SLUICE_STATE_H

#include <stdbool.h>
#include <stddef.h>

struct sl_state;

struct sl_state_ops {
    const char *name;
    /* The SHA-256 (hex) of the last successful run of job into out; 0, or
     * SL_ERR_NOTFOUND when the job never succeeded. */
    int (*get_last_sha)(struct sl_state *st, const char *job_id, char out[65]);
    int (*set_last_sha)(struct sl_state *st, const char *job_id, const char *sha256);
    /* Whether key was seen in run: 1 seen before, 0 not. With add, key is
     * remembered from now on. Negative on error. */
    int (*seen_key)(struct sl_state *st, const char *run_id, const char *key, size_t keylen,
                    bool add);
    /* The run is over: forget its per-run state. */
    int (*end_run)(struct sl_state *st, const char *run_id);
    void (*destroy)(struct sl_state *st);
};

struct sl_state {
    const struct sl_state_ops *ops;
};

/* State in directory dir (created when missing): jobs/<job>.sha256 files;
 * per-run keys in memory. NULL with errbuf set on error. */
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
