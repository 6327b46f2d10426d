/*
 * The gateway's HTTP API (docs/api.md): jobs, runs, API tokens and the
 * health checks over libmicrohttpd, one thread per connection, in front of
 * the control plane (api_store.h, control.h) and the Kafka bus (run-now
 * tickets). services/gateway/main.c reads the settings and runs it.
 */
#ifndef SLUICE_GATEWAY_H
#define SLUICE_GATEWAY_H

#include <stddef.h>

#include "sluice/bus.h"

struct sl_gateway;

struct sl_gateway_conf {
    const char *http_addr;    /* "host:port", "[v6]:port" or ":port"; port 0: any */
    const char *postgres_url; /* the control plane */
    const char *redis_url;    /* webhook replays, run progress; checked by /readyz */
    struct sl_kafka_conf kafka;
    size_t max_job_bytes;  /* body limit of job documents; 0: 1 MiB */
    size_t max_body_bytes; /* body limit of every other request; 0: 64 KiB */
    const char *blob_dir;  /* the fetcher's blob store (run sources); NULL: none */
    int webhook_window_ms; /* a streaming webhook run stays open this long; 0: 1000 */
    unsigned long long webhook_window_rows; /* ...or until this many rows; 0: 100000 */
};

/* Starts serving conf (strings are copied). Returns the gateway, or NULL
 * with errbuf set (a bad address: SL_ERR_INVALID in *rc when rc is not
 * NULL). The caller's thread only waits; requests run on the server's
 * threads. */
struct sl_gateway *sl_gateway_new(const struct sl_gateway_conf *conf, int *rc, char *errbuf,
                                  size_t errsz);

/* The port the gateway listens on (the kernel's pick for port 0). */
int sl_gateway_port(const struct sl_gateway *gw);

/* Stops accepting, lets the requests in progress finish, sends what the
 * bus holds and frees everything; accepts NULL. */
void sl_gateway_destroy(struct sl_gateway *gw);

#endif
