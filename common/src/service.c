/*
 * A stage as a distributed service (service.h).
 *
 * Configuration (settings.c): every setting is an environment variable with
 * a matching flag (SLUICE_KAFKA_BROKERS = --kafka-brokers VALUE or
 * --kafka-brokers=VALUE) and a line of the config file (--config FILE);
 * flag > environment > file > default. An unknown flag, an unknown key or a
 * malformed value stops the service with a message that names it (exit 2).
 */
#include <signal.h>
#include <stdatomic.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/bus.h"
#include "sluice/control.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/mail.h"
#include "sluice/metrics.h"
#include "sluice/pg.h"
#include "sluice/service.h"
#include "sluice/sink.h"
#include "sluice/source.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

enum {
    CFG_BROKERS,
    CFG_PREFIX,
    CFG_KAFKA_CONFIG,
    CFG_REDIS,
    CFG_POSTGRES,
    CFG_DESTINATION,
    CFG_BLOB_DIR,
    CFG_FILE_DIRS,
    CFG_HASH_KEY,
    CFG_ALLOW_HOSTS,
    CFG_GROUP,
    CFG_LOG_LEVEL,
    CFG_LOG_FORMAT,
    CFG_METRICS_ADDR,
    NCFG
};

/* The service's settings: rows of sl_settings[] (settings.c). */
static const char *const setting_names[NCFG] = {
    [CFG_BROKERS] = "SLUICE_KAFKA_BROKERS",
    [CFG_PREFIX] = "SLUICE_TOPIC_PREFIX",
    [CFG_KAFKA_CONFIG] = "SLUICE_KAFKA_CONFIG",
    [CFG_REDIS] = "SLUICE_REDIS_URL",
    [CFG_POSTGRES] = "SLUICE_POSTGRES_URL",
    [CFG_DESTINATION] = "SLUICE_DESTINATION_URL",
    [CFG_BLOB_DIR] = "SLUICE_BLOB_DIR",
    [CFG_FILE_DIRS] = "SLUICE_FILE_DIRS",
    [CFG_HASH_KEY] = "SLUICE_HASH_KEY",
    [CFG_ALLOW_HOSTS] = "SLUICE_ALLOW_HOSTS",
    [CFG_GROUP] = "SLUICE_GROUP",
    [CFG_LOG_LEVEL] = "SLUICE_LOG_LEVEL",
    [CFG_LOG_FORMAT] = "SLUICE_LOG_FORMAT",
    [CFG_METRICS_ADDR] = "SLUICE_METRICS_ADDR",
};

/* The resolved settings: val[] points into them for the process's life. */
static struct sl_config config;

/* Serves /metrics on the address of the settings ("off": none). 0, or the
 * exit status (2: the address is malformed or cannot be bound). */
static int start_metrics(const char *name, const char *addr, struct sl_metrics_server **srv)
{
    char err[256];
    *srv = NULL;
    if (!addr || !strcmp(addr, "off"))
        return 0;
    if (!(*srv = sl_metrics_serve(addr, err, sizeof(err)))) {
        char src[600];
        fprintf(stderr, "%s: %s (%s)\n", name, err,
                sl_config_source(&config, "SLUICE_METRICS_ADDR", src, sizeof(src)));
        return 2;
    }
    return 0;
}

static atomic_bool stopping;

/* Record stages allocate and free big buffers all the time (librdkafka's
 * fetch responses, record batches, arena blocks). By default glibc gives
 * such memory back to the kernel (munmap of a chunk over the mmap threshold,
 * trimming an arena's free top) and the next use faults it in again, each
 * page zeroed: a fifth of a record stage's CPU went to those page faults.
 * So the service keeps what it freed for reuse: chunks up to 32 MiB come
 * from the arenas and an arena keeps up to 64 MiB free at its top (the
 * price: a higher resident size, the peak the service once needed). An
 * operator's own malloc settings (GLIBC_TUNABLES, MALLOC_*_) win. */
void sl_tune_malloc(void)
{
#ifdef __GLIBC__
    const char *t = getenv("GLIBC_TUNABLES");
    if ((t && strstr(t, "glibc.malloc.")) || getenv("MALLOC_MMAP_THRESHOLD_") ||
        getenv("MALLOC_TRIM_THRESHOLD_"))
        return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

/* SIGTERM or SIGINT: stop gracefully (the runner finishes the message in
 * hand, commits, leaves the group). A second one: exit at once with
 * 128 + the signal, nothing more committed (the next consumer gets the
 * messages since the last commit again). */
static void on_signal(int sig)
{
    if (atomic_exchange(&stopping, true)) {
        static const char msg[] = "sluice: second signal: exiting at once\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(128 + sig);
    }
}

/* From the start on, so that a stop asked for while the service starts
 * (connecting, migrating) ends in a graceful stop too. */
static void catch_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Fills val[] from the flags, the environment and the config file
 * (sl_config_read): 0, -1 (--help), or the exit status. */
static int read_settings(const char *name, int argc, char **argv, const char *val[NCFG])
{
    int rc = sl_config_read(&config, name, SL_PROG_SERVICE, argc, argv, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < NCFG; i++)
        val[i] = sl_config_get(&config, setting_names[i]);
    char src[600], src2[600];
    if (sl_log_setup(val[CFG_LOG_LEVEL], val[CFG_LOG_FORMAT])) {
        fprintf(
            stderr, "%s: SLUICE_LOG_LEVEL '%s' (%s) or SLUICE_LOG_FORMAT '%s' (%s) is not valid\n",
            name, val[CFG_LOG_LEVEL],
            sl_config_source(&config, "SLUICE_LOG_LEVEL", src, sizeof(src)), val[CFG_LOG_FORMAT],
            sl_config_source(&config, "SLUICE_LOG_FORMAT", src2, sizeof(src2)));
        return 2;
    }
    sl_config_log(&config);
    char gerr[256];
    struct sl_fetch_guard *guard = sl_fetch_guard_new(val[CFG_ALLOW_HOSTS], gerr, sizeof(gerr));
    if (!guard) {
        fprintf(stderr, "%s: %s (%s)\n", name, gerr,
                sl_config_source(&config, "SLUICE_ALLOW_HOSTS", src, sizeof(src)));
        return 2;
    }
    sl_fetch_guard_destroy(guard);
    if (!val[CFG_POSTGRES]) {
        fprintf(stderr, "%s: SLUICE_POSTGRES_URL (--postgres-url) is required\n", name);
        return 2;
    }
    if (!val[CFG_DESTINATION])
        val[CFG_DESTINATION] = val[CFG_POSTGRES];
    return 0;
}

static struct sl_sink *open_sink(const struct sl_job *job, const char *run_id,
                                 const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    switch (job->destination.type) {
    case SL_DEST_POSTGRES:
        return sl_sink_postgres_open(env->destination_url, job, run_id, errbuf, errsz);
    case SL_DEST_FILE:
        if (job->destination.given && job->destination.path)
            return sl_sink_file_open(job->destination.path, job, errbuf, errsz);
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "a job without a destination publishes only in embedded mode");
        return NULL;
    default:
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "http destinations are not supported by this version of the publisher");
        return NULL;
    }
}

static struct sl_ledger *open_ledger(const struct sl_job *job, const char *run_id,
                                     const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct sl_ledger *lg =
        sl_ledger_postgres_open(env->control_url, job, run_id, NULL, errbuf, errsz);
    if (lg)
        lg->smtp = env->smtp;
    return lg;
}

int sl_service_main(const struct sl_stage *stage, int argc, char **argv)
{
    char name[64], group[80], err[1024] = "";
    snprintf(name, sizeof(name), "sluice-%s", stage->name);
    sl_tune_malloc();
    const char *val[NCFG];
    int rc = read_settings(name, argc, argv, val);
    if (rc)
        return rc < 0 ? 0 : rc;
    catch_signals();
    snprintf(group, sizeof(group), "%s", val[CFG_GROUP] ? val[CFG_GROUP] : name);

    struct sl_jobs *jobs = NULL;
    struct sl_state *st = NULL;
    struct sl_bus *bus = NULL;
    struct sl_stage_runner *runner = NULL;
    /* the publisher sends run reports: its SMTP settings, checked at start */
    struct sl_smtp_config smtp = {0};
    if (!strcmp(stage->name, "publisher") && sl_smtp_config_from_env(&smtp, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 2;
    }
    struct sl_metrics_server *metrics = NULL;
    if ((rc = start_metrics(name, val[CFG_METRICS_ADDR], &metrics)) != 0) {
        sl_smtp_config_cleanup(&smtp);
        return rc;
    }
    PGconn *conn = sl_pg_connect(val[CFG_POSTGRES], SL_PG_CONNECT_TIMEOUT, err, sizeof(err));
    rc = 1;
    if (!conn || sl_control_migrate(conn, err, sizeof(err)))
        goto fail;
    PQfinish(conn);
    conn = NULL;
    if (!(jobs = sl_jobs_pg_new(val[CFG_POSTGRES], err, sizeof(err))) ||
        !(st = sl_state_redis_new(val[CFG_REDIS], err, sizeof(err))))
        goto fail;
    struct sl_kafka_conf kc = {
        .brokers = val[CFG_BROKERS],
        .topic_prefix = val[CFG_PREFIX],
        .config = val[CFG_KAFKA_CONFIG],
        .client_id = name,
    };
    if (!(bus = sl_bus_kafka_new(&kc, err, sizeof(err)))) {
        rc = 2;
        goto fail;
    }
    if (sl_mkdirs(val[CFG_BLOB_DIR])) {
        snprintf(err, sizeof(err), "cannot create SLUICE_BLOB_DIR %s", val[CFG_BLOB_DIR]);
        goto fail;
    }
    struct sl_stage_env env = {
        .jobs = jobs,
        .st = st,
        .blob_dir = val[CFG_BLOB_DIR],
        .control_url = val[CFG_POSTGRES],
        .destination_url = val[CFG_DESTINATION],
        .hash_key = val[CFG_HASH_KEY],
        .allow_hosts = val[CFG_ALLOW_HOSTS],
        .file_dirs = val[CFG_FILE_DIRS],
        .open_sink = open_sink,
        .open_ledger = open_ledger,
        .embedded = false,
        .smtp = &smtp,
    };
    if (!(runner = sl_stage_runner_new(stage, bus, group, &env, err, sizeof(err))))
        goto fail;
    sl_info(name, "started: group %s, brokers %s, topics %s*", group, val[CFG_BROKERS],
            val[CFG_PREFIX]);
    rc = sl_stage_runner_run(runner, &stopping, err, sizeof(err)) ? 1 : 0;
    if (rc == 0) {
        sl_info(name, "stopping: the message in hand is done; leaving the group");
        bus->ops->flush(bus, 10000);
    }
fail:
    if (rc)
        sl_error(name, "%s", err[0] ? err : "cannot start");
    sl_stage_runner_destroy(runner); /* closes the consumer: leaves the group */
    sl_bus_destroy(bus);
    sl_state_destroy(st);
    if (jobs)
        sl_jobs_destroy(jobs);
    PQfinish(conn);
    sl_smtp_config_cleanup(&smtp);
    sl_metrics_server_stop(metrics);
    if (rc == 0)
        sl_info(name, "stopped");
    return rc;
}

int sl_service_scheduler_main(int argc, char **argv)
{
    const char *name = "sluice-scheduler";
    const char *val[NCFG];
    int rc = read_settings(name, argc, argv, val);
    if (rc)
        return rc < 0 ? 0 : rc;
    catch_signals();
    char err[1024] = "";
    struct sl_metrics_server *metrics = NULL;
    if ((rc = start_metrics(name, val[CFG_METRICS_ADDR], &metrics)) != 0)
        return rc;
    struct sl_counter *fired_total =
        sl_metrics_counter("sluice_scheduler_tickets_total", "tickets the scheduler sent", "");
    struct sl_kafka_conf kc = {
        .brokers = val[CFG_BROKERS],
        .topic_prefix = val[CFG_PREFIX],
        .config = val[CFG_KAFKA_CONFIG],
        .client_id = name,
    };
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    PGconn *conn =
        bus ? sl_pg_connect(val[CFG_POSTGRES], SL_PG_CONNECT_TIMEOUT, err, sizeof(err)) : NULL;
    if (!bus || !conn || sl_control_migrate(conn, err, sizeof(err))) {
        sl_error(name, "%s", err);
        PQfinish(conn);
        sl_bus_destroy(bus);
        sl_metrics_server_stop(metrics);
        return bus ? 1 : 2;
    }
    sl_info(name, "started: brokers %s", val[CFG_BROKERS]);
    while (!atomic_load(&stopping)) {
        int fired = 0;
        if (PQstatus(conn) != CONNECTION_OK)
            PQreset(conn);
        if (sl_scheduler_tick(conn, bus, sl_now_us(), &fired, err, sizeof(err)))
            sl_warn(name, "%s", err); /* the slot stays due: the next tick tries again */
        else if (fired)
            sl_info(name, "fired %d scheduled run(s)", fired);
        sl_counter_add(fired_total, (uint64_t)(fired > 0 ? fired : 0));
        for (int i = 0; i < 10 && !atomic_load(&stopping); i++)
            usleep(100000);
    }
    sl_info(name, "stopped");
    PQfinish(conn);
    sl_bus_destroy(bus);
    sl_metrics_server_stop(metrics);
    return 0;
}
