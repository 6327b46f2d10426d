/*
 * sluice-gateway: the HTTP API (docs/api.md) as a service. Reads the
 * settings like every service (sl_config_read: an environment variable, a
 * --flag, a line of the config file; an unknown flag or key or a bad value
 * exits 2 naming it),
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

#define NAME         "sluice-gateway"
#define LOG_FLUSH_MS 50 /* the access log's batches (main) */

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
    CFG_ADMIN_TOKEN,
    CFG_WINDOW_MS,
    CFG_WINDOW_ROWS,
    NCFG
};

/* The gateway's settings: rows of sl_settings[] (common/src/settings.c). */
static const char *const setting_names[NCFG] = {
    [CFG_HTTP_ADDR] = "SLUICE_HTTP_ADDR",         [CFG_POSTGRES] = "SLUICE_POSTGRES_URL",
    [CFG_BROKERS] = "SLUICE_KAFKA_BROKERS",       [CFG_PREFIX] = "SLUICE_TOPIC_PREFIX",
    [CFG_KAFKA_CONFIG] = "SLUICE_KAFKA_CONFIG",   [CFG_REDIS] = "SLUICE_REDIS_URL",
    [CFG_MAX_JOB] = "SLUICE_HTTP_MAX_JOB_BYTES",  [CFG_BLOB_DIR] = "SLUICE_BLOB_DIR",
    [CFG_LOG_LEVEL] = "SLUICE_LOG_LEVEL",         [CFG_LOG_FORMAT] = "SLUICE_LOG_FORMAT",
    [CFG_METRICS_ADDR] = "SLUICE_METRICS_ADDR",   [CFG_ADMIN_TOKEN] = "SLUICE_ADMIN_TOKEN",
    [CFG_WINDOW_MS] = "SLUICE_WEBHOOK_WINDOW_MS", [CFG_WINDOW_ROWS] = "SLUICE_WEBHOOK_WINDOW_ROWS",
};

/* The resolved settings: val[] points into them for the process's life. */
static struct sl_config config;

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

/* Fills val[] from the flags, the environment and the config file: 0, -1
 * (--help), or the exit status of a bad setting. */
static int read_settings(int argc, char **argv, const char *val[NCFG])
{
    int rc = sl_config_read(&config, NAME, SL_PROG_GATEWAY, argc, argv, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < NCFG; i++)
        val[i] = sl_config_get(&config, setting_names[i]);
    char src[600], src2[600];
    if (sl_log_setup(val[CFG_LOG_LEVEL], val[CFG_LOG_FORMAT])) {
        fprintf(
            stderr, "%s: SLUICE_LOG_LEVEL '%s' (%s) or SLUICE_LOG_FORMAT '%s' (%s) is not valid\n",
            NAME, val[CFG_LOG_LEVEL],
            sl_config_source(&config, "SLUICE_LOG_LEVEL", src, sizeof(src)), val[CFG_LOG_FORMAT],
            sl_config_source(&config, "SLUICE_LOG_FORMAT", src2, sizeof(src2)));
        return 2;
    }
    sl_config_log(&config);
    if (!val[CFG_POSTGRES]) {
        fprintf(stderr, "%s: SLUICE_POSTGRES_URL (--postgres-url) is required\n", NAME);
        return 2;
    }
    char *end;
    unsigned long long mj = strtoull(val[CFG_MAX_JOB], &end, 10);
    if (*end || mj < 1024 || mj > 64ULL * 1024 * 1024 || val[CFG_MAX_JOB][0] == '-') {
        fprintf(stderr,
                "%s: SLUICE_HTTP_MAX_JOB_BYTES '%s' (%s) is not a size from 1024 to 67108864\n",
                NAME, val[CFG_MAX_JOB],
                sl_config_source(&config, "SLUICE_HTTP_MAX_JOB_BYTES", src, sizeof(src)));
        return 2;
    }
    unsigned long long wm = strtoull(val[CFG_WINDOW_MS], &end, 10);
    if (*end || wm < 10 || wm > 3600000 || val[CFG_WINDOW_MS][0] == '-') {
        fprintf(stderr,
                "%s: SLUICE_WEBHOOK_WINDOW_MS '%s' (%s) is not milliseconds from 10 to 3600000\n",
                NAME, val[CFG_WINDOW_MS],
                sl_config_source(&config, "SLUICE_WEBHOOK_WINDOW_MS", src, sizeof(src)));
        return 2;
    }
    unsigned long long wr = strtoull(val[CFG_WINDOW_ROWS], &end, 10);
    if (*end || wr < 1 || wr > 100000000 || val[CFG_WINDOW_ROWS][0] == '-') {
        fprintf(stderr,
                "%s: SLUICE_WEBHOOK_WINDOW_ROWS '%s' (%s) is not a count from 1 to 100000000\n",
                NAME, val[CFG_WINDOW_ROWS],
                sl_config_source(&config, "SLUICE_WEBHOOK_WINDOW_ROWS", src, sizeof(src)));
        return 2;
    }
    return 0;
}

/* Applies the migrations and stores the bootstrap admin token (never
 * logged; only its SHA-256 is kept). 0, or the exit status. */
static int prepare_control_plane(const char *url, const char *admin)
{
    char err[1024] = "";
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
    if ((rc = prepare_control_plane(val[CFG_POSTGRES], val[CFG_ADMIN_TOKEN])) != 0)
        return rc;
    sl_tune_malloc();
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
        .webhook_window_ms = (int)strtol(val[CFG_WINDOW_MS], NULL, 10),
        .webhook_window_rows = strtoull(val[CFG_WINDOW_ROWS], NULL, 10),
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
        char src[600];
        fprintf(stderr, "%s: %s (%s)\n", NAME, err,
                sl_config_source(&config, "SLUICE_METRICS_ADDR", src, sizeof(src)));
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
    /* the access log (a line a request) is written in batches: at most
     * LOG_FLUSH_MS late, and in order with every other line */
    sl_log_buffering(true);
    while (!atomic_load(&stopping)) {
        usleep(LOG_FLUSH_MS * 1000);
        sl_log_flush();
    }
    sl_info(NAME, "stopping: finishing the requests in progress");
    sl_gateway_destroy(gw);
    sl_metrics_server_stop(metrics);
    sl_info(NAME, "stopped");
    sl_log_buffering(false);
    return 0;
}
