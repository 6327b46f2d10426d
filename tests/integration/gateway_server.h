/*
 * What the gateway's integration tests share (test_gateway.c, test_webhook.c,
 * test_remote_cli.c): PostgreSQL, Redis and the mock Kafka cluster on
 * loopback, and sluice-gateway on a free port with the bootstrap admin token
 * admin and its blob store in <tmp>/blobs, in a temporary directory;
 * stopped by PID. One test program
 * includes it once: its globals are the test's.
 */
#ifndef SLUICE_TEST_GATEWAY_SERVER_H
#define SLUICE_TEST_GATEWAY_SERVER_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"
#include "servers.h"
#include "services.h"

static struct pg_server pg;
static struct redis_server rs;
static struct kafka_mock km;
static pid_t gw_pid;
static char tmp[64], base[64]; /* the directory of the logs; http://127.0.0.1:PORT */
static char metrics_url[128];  /* the gateway's /metrics, on a port of its own */
static PGconn *db;             /* a connection to the control plane */

/* Starts the servers (the cluster with topics, "name:partitions") and the
 * gateway in a new directory /tmp/<prefix>-XXXXXX, the gateway's settings in
 * the environment (whatever else the caller set there too; its /metrics at
 * metrics_url), and waits until it answers /healthz. 0, or -1 saying why on stderr. */
static __attribute__((unused)) int
gateway_server_start(const char *prefix, const char *const *topics, const char *admin)
{
    char pattern[sizeof(tmp)];
    snprintf(pattern, sizeof(pattern), "/tmp/%s-XXXXXX", prefix);
    if (servers_start(tmp, sizeof(tmp), pattern, &pg, &rs, &km, topics))
        return -1;
    char redis_url[256], addr[64];
    redis_server_url(&rs, 0, NULL, redis_url, sizeof(redis_url));
    int port = pg_server_free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    setenv("SLUICE_KAFKA_BROKERS", km.bootstrap, 1);
    setenv("SLUICE_REDIS_URL", redis_url, 1);
    setenv("SLUICE_POSTGRES_URL", pg.conninfo, 1);
    setenv("SLUICE_HTTP_ADDR", addr, 1);
    setenv("SLUICE_ADMIN_TOKEN", admin, 1);
    setenv("SLUICE_LOG_LEVEL", "info", 1);
    char blobs[128];
    snprintf(blobs, sizeof(blobs), "%s/blobs", tmp);
    setenv("SLUICE_BLOB_DIR", blobs, 0); /* the caller's, when it set one */
    char maddr[64];
    snprintf(maddr, sizeof(maddr), "127.0.0.1:%d", pg_server_free_port());
    snprintf(metrics_url, sizeof(metrics_url), "http://%s/metrics", maddr);
    setenv("SLUICE_METRICS_ADDR", maddr, 1); /* the gateway's alone */
    gw_pid = svc_start("gateway", tmp);
    unsetenv("SLUICE_METRICS_ADDR");
    if (gw_pid <= 0)
        return -1;
    for (int i = 0; i < 100; i++) {
        if (shell("curl -s -o /dev/null --max-time 1 %s/healthz", base) == 0)
            break;
        usleep(100000);
    }
    db = PQconnectdb(pg.conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to postgresql: %s\n", PQerrorMessage(db));
        return -1;
    }
    return 0;
}

/* Stops the gateway (it must exit 0) and the servers; the directory stays
 * when keep (a test did not finish) or SLUICE_KEEP_TMP is set. 0 or -1. */
static __attribute__((unused)) int gateway_server_stop(bool keep)
{
    int bad = svc_stop(gw_pid, "gateway");
    PQfinish(db);
    kafka_mock_stop(&km);
    redis_server_stop(&rs);
    pg_server_stop(&pg);
    if (bad || keep || getenv("SLUICE_KEEP_TMP")) {
        fprintf(stderr, "the gateway's log is in %s/gateway.log\n", tmp);
        return bad ? -1 : 0;
    }
    return shell("rm -rf %s", tmp) == 0 ? 0 : -1;
}

#endif
