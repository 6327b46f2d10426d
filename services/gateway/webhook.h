/*
 * The gateway's webhook endpoint (docs/api.md, "Webhooks"):
 * POST /v1/jobs/{id}/webhook. A delivery signed the Standard Webhooks way
 * (webhook_sig.h) under the job's secret becomes rows of a streaming run of
 * the job (trigger "webhook"): the deliveries a gateway takes for a job
 * within a window (window_ms, or window_rows rows) share one run, their
 * records go straight to the mapper's input topic as the parser would send
 * them (record_build.h), and the run is SEALED when the window closes. The
 * answer is 202 only once Kafka acknowledged the delivery's records.
 * A delivery is checked on the caller's thread (sl_webhook_begin), then
 * taken by the endpoint's engine thread with the others queued meanwhile
 * (one pipelined Redis round trip, one send on the endpoint's own producer,
 * sl_bus_ops.send_async) and answered from Kafka's report: no thread waits
 * for it. A webhook-id seen before for the job (Redis, 10 minutes) is
 * acknowledged and not processed again. gateway.c routes the request here;
 * this file knows nothing of HTTP but the answer's status.
 */
#ifndef SLUICE_GATEWAY_WEBHOOK_H
#define SLUICE_GATEWAY_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "sluice/bus.h"

/* What the gateway lends the endpoint: its control-plane connections, and
 * the Kafka settings of the endpoint's own producer. The endpoint does not
 * share the run-now tickets' bus: that one is destroyed and made again after
 * a failed ticket, which concurrent deliveries could not survive; and its
 * producer lingers less (linger.ms 2 unless kafka.config says otherwise: a
 * delivery's answer waits for the acknowledgement). */
struct sl_webhook_deps {
    void *gw;
    PGconn *(*db_get)(void *gw, char *errbuf, size_t errsz);
    void (*db_put)(void *gw, PGconn *c);
    struct sl_kafka_conf kafka; /* strings copied by sl_webhook_new */
    int window_ms;              /* a streaming run stays open this long (0: 1000) */
    uint64_t window_rows;       /* ...or until it has this many rows (0: 100000) */
};

/* The largest body of a delivery. */
#define SL_WEBHOOK_MAX_BODY (1024 * 1024)

struct sl_webhook;

/* The endpoint's state: the Redis of the replay window (redis_url, copied;
 * connected on first use), deps (copied), a cache of the jobs' parsed
 * versions and secrets, and the Kafka producer (made on first use, and
 * again after it failed for good). NULL when out of memory. */
struct sl_webhook *sl_webhook_new(const char *redis_url, const struct sl_webhook_deps *deps);
/* Closes the open windows (their runs SEALED: up to 10 s for what Kafka has
 * not acknowledged yet) and frees wh; no delivery may be running. Accepts
 * NULL. */
void sl_webhook_destroy(struct sl_webhook *wh);

/* One delivery, as received: every string borrowed for the call. */
struct sl_webhook_req {
    const char *job_id;
    const char *rid;                        /* the request id, for log lines */
    const char *id, *timestamp, *signature; /* the webhook-* headers (NULL: absent) */
    const char *content_type;               /* NULL: absent */
    const char *body;
    size_t len;
};

/* The answer: status, and either an error (code, message) for the API's one
 * error shape, or body (the caller's to free). retry_after: seconds for a
 * Retry-After header, 0 for none. */
struct sl_webhook_answer {
    int status;
    const char *code;
    char message[1024];
    json_t *body;
    char *text; /* or the body as JSON text (malloc'd): one of the two */
    int retry_after;
};

struct sl_webhook_delivery;

/* Begins one delivery (any thread; MHD's): its headers, job, signature and
 * records are checked here. 0: answered now (ans set). 1: *d goes on in
 * the background once given to sl_webhook_go(), and done(arg) is called
 * (on another thread) once ans is set; req's strings and ans must stay
 * valid until then. */
int sl_webhook_begin(struct sl_webhook *wh, const struct sl_webhook_req *req,
                     struct sl_webhook_answer *ans, void (*done)(void *arg), void *arg,
                     struct sl_webhook_delivery **d);
/* Whether job_id's current version is known without asking PostgreSQL
 * (sl_webhook_begin would not wait for it). */
bool sl_webhook_job_known(struct sl_webhook *wh, const char *job_id);
/* Hands d to the engine (the caller is ready for done() from now on). */
void sl_webhook_go(struct sl_webhook *wh, struct sl_webhook_delivery *d);

#endif
