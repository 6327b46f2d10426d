/*
 * sluice-gateway: the HTTP API (docs/api.md) as a service. Reads the
 * settings like every service (an environment variable with a matching
 * --flag; a flag wins; an unknown flag or bad value exits 2 naming it),
 * applies the control plane's migrations, stores SLUICE_ADMIN_TOKEN (hashed)
 * as the bootstrap admin token, serves until SIGTERM or SIGINT, then lets
 * the requests in progress finish and exits 0.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "gateway.h"
#include "sluice/api_store.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/pg.h"
#include "sluice/service.h"

#define NAME "sluice-gateway"

enum {
    CFG_HTTP_ADDR,
    CFG_POSTGRES,
    CFG_BROKERS,
    CFG_PREFIX,
    CFG_KAFKA_CONFIG,
    CFG_REDIS,
    CFG_MAX_JOB,
    CFG_BLOB_DIR,
    CFG_LOG_LEVEL,
    CFG_LOG_FORMAT,
    CFG_METRICS_ADDR,
    NCFG
};

static const struct sl_setting settings[NCFG] = {
    [CFG_HTTP_ADDR] = {"SLUICE_HTTP_ADDR", "--http-addr", "0.0.0.0:8080",
                       "listen address host:port"},
    [CFG_POSTGRES] = {"SLUICE_POSTGRES_URL", "--postgres-url", NULL,
                      "control-plane PostgreSQL (required)"},
    [CFG_BROKERS] = {"SLUICE_KAFKA_BROKERS", "--kafka-brokers", "localhost:9092",
                     "Kafka bootstrap servers"},
    [CFG_PREFIX] = {"SLUICE_TOPIC_PREFIX", "--topic-prefix", "sluice.",
                    "prefix of every topic name"},
    [CFG_KAFKA_CONFIG] = {"SLUICE_KAFKA_CONFIG", "--kafka-config", NULL,
                          "extra librdkafka properties k=v,k=v"},
    [CFG_REDIS] = {"SLUICE_REDIS_URL", "--redis-url", "redis://127.0.0.1:6379/0",
                   "Redis (webhook replays, run progress)"},
    [CFG_MAX_JOB] = {"SLUICE_HTTP_MAX_JOB_BYTES", "--http-max-job-bytes", "1048576",
                     "largest job document accepted"},
    [CFG_BLOB_DIR] = {"SLUICE_BLOB_DIR", "--blob-dir", "./blobs",
                      "the fetcher's blob store, read for GET /v1/runs/{id}/source"},
    [CFG_LOG_LEVEL] = {"SLUICE_LOG_LEVEL", "--log-level", "info", "debug, info, warn, error"},
    [CFG_LOG_FORMAT] = {"SLUICE_LOG_FORMAT", "--log-format", "text", "text or json"},
    [CFG_METRICS_ADDR] = {"SLUICE_METRICS_ADDR", "--metrics-addr", "0.0.0.0:9464",
                          "host:port of GET /metrics (Prometheus) and /healthz; off: none"},
};

static atomic_bool stopping;

/* SIGTERM or SIGINT: stop (no new connections, the requests in progress
 * finish); a second one: exit at once with 128 + the signal. */
static void on_signal(int sig)
{
    if (atomic_exchange(&stopping, true)) {
        static const char msg[] = NAME ": second signal: exiting at once\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(128 + sig);
    }
}

/* Fills val[] from the environment, then the flags: 0, -1 (--help), or the
 * exit status of a bad setting. */
static int read_settings(int argc, char **argv, const char *val[NCFG])
{
    int rc = sl_settings_read(NAME, settings, NCFG, argc, argv, val,
                              "  " /* the one setting without a flag */
                              "                       SLUICE_ADMIN_TOKEN         bootstrap admin "
                              "token, stored hashed (environment only)\n");
    if (rc)
        return rc;
    if (sl_log_setup(val[CFG_LOG_LEVEL], val[CFG_LOG_FORMAT])) {
        fprintf(stderr, "%s: SLUICE_LOG_LEVEL '%s' or SLUICE_LOG_FORMAT '%s' is not valid\n", NAME,
                val[CFG_LOG_LEVEL], val[CFG_LOG_FORMAT]);
        return 2;
    }
    if (!val[CFG_POSTGRES]) {
        fprintf(stderr, "%s: SLUICE_POSTGRES_URL (--postgres-url) is required\n", NAME);
        return 2;
    }
    char *end;
    unsigned long long mj = strtoull(val[CFG_MAX_JOB], &end, 10);
    if (*end || mj < 1024 || mj > 64ULL * 1024 * 1024 || val[CFG_MAX_JOB][0] == '-') {
        fprintf(stderr, "%s: SLUICE_HTTP_MAX_JOB_BYTES '%s' is not a size from 1024 to 67108864\n",
                NAME, val[CFG_MAX_JOB]);
        return 2;
    }
    return 0;
}

/* Applies the migrations and stores the bootstrap admin token (never
 * logged; only its SHA-256 is kept). 0, or the exit status. */
static int prepare_control_plane(const char *url)
{
    char err[1024] = "";
    const char *admin = getenv("SLUICE_ADMIN_TOKEN");
    if (admin && admin[0] && strlen(admin) < 16) {
        fprintf(stderr, "%s: SLUICE_ADMIN_TOKEN is too short (16 characters at least)\n", NAME);
        return 2;
    }
    PGconn *c = sl_pg_connect(url, SL_PG_CONNECT_TIMEOUT, err, sizeof(err));
    int rc = !c || sl_control_migrate(c, err, sizeof(err));
    if (rc == 0 && admin && admin[0]) {
        char sha[65];
        sl_api_token_hash(admin, sha);
        rc = sl_api_token_put(c, "SLUICE_ADMIN_TOKEN", SL_ROLE_ADMIN, sha, NULL, true, err,
                              sizeof(err));
        OPENSSL_cleanse(sha, sizeof(sha));
        if (rc == 0)
            sl_info(NAME, "the bootstrap admin token (SLUICE_ADMIN_TOKEN) is stored");
    }
    PQfinish(c);
    if (rc) {
        sl_error(NAME, "%s", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *val[NCFG];
    int rc = read_settings(argc, argv, val);
    if (rc)
        return rc < 0 ? 0 : rc;
    if ((rc = prepare_control_plane(val[CFG_POSTGRES])) != 0)
        return rc;
    struct sl_gateway_conf conf = {
        .http_addr = val[CFG_HTTP_ADDR],
        .postgres_url = val[CFG_POSTGRES],
        .redis_url = val[CFG_REDIS],
        .kafka = {.brokers = val[CFG_BROKERS],
                  .topic_prefix = val[CFG_PREFIX],
                  .config = val[CFG_KAFKA_CONFIG],
                  .client_id = NAME},
        .max_job_bytes = strtoull(val[CFG_MAX_JOB], NULL, 10),
        .blob_dir = val[CFG_BLOB_DIR],
    };
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[1024] = "";
    struct sl_metrics_server *metrics = NULL;
    if (strcmp(val[CFG_METRICS_ADDR], "off") &&
        !(metrics = sl_metrics_serve(val[CFG_METRICS_ADDR], err, sizeof(err)))) {
        fprintf(stderr, "%s: %s (--metrics-addr)\n", NAME, err);
        return 2;
    }
    struct sl_gateway *gw = sl_gateway_new(&conf, &rc, err, sizeof(err));
    if (!gw) {
        sl_error(NAME, "%s", err);
        sl_metrics_server_stop(metrics);
        return rc == SL_ERR_INVALID ? 2 : 1;
    }
    sl_info(NAME, "listening on %s (port %d): brokers %s, topics %s*", val[CFG_HTTP_ADDR],
            sl_gateway_port(gw), val[CFG_BROKERS], val[CFG_PREFIX]);
    while (!atomic_load(&stopping))
        usleep(100000);
    sl_info(NAME, "stopping: finishing the requests in progress");
    sl_gateway_destroy(gw);
    sl_metrics_server_stop(metrics);
    sl_info(NAME, "stopped");
    return 0;
}
