/*
 * What the integration tests of the distributed pipeline share
 * (test_crash.c, test_rolling_restart.c): PostgreSQL, Redis and the mock
 * Kafka cluster on loopback in a temporary directory, NROWS generated stores
 * in its inputs/, the services' settings in the environment, the counts of
 * embedded mode on the same file as the reference, and the helpers to write
 * and submit the demo job and to query PostgreSQL. One test program includes
 * it once, after cmocka.h, with NROWS and REPO defined: its globals are the
 * test's.
 */
#ifndef SLUICE_TEST_DISTRIBUTED_ENV_H
#define SLUICE_TEST_DISTRIBUTED_ENV_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"
#include "servers.h"
#include "services.h"

static struct pg_server pg;
static struct redis_server rs;
static struct kafka_mock km;
static char tmp[64];
static json_t *expected; /* embedded mode's run.json counts */
static long expected_rows;

static __attribute__((unused)) PGconn *connect_pg(void)
{
    PGconn *c = PQconnectdb(pg.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static __attribute__((unused)) long query_long(PGconn *c, const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    long v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* The demo job over the generated file, as job NAME into table NAME. */
static void write_job(const char *name)
{
    assert_int_equal(shell("sed -e 's|\"url\": *\"stores.csv\"|\"url\": "
                           "\"file://%s/inputs/stores.csv\"|' "
                           "-e 's|\"name\": \"store-locations\"|\"name\": \"%s\"|' "
                           "-e 's|^}$|,\"destination\": {\"type\": \"postgres\", \"table\": "
                           "\"%s\"}}|' %s/examples/stores/job.json > %s/%s.json",
                           tmp, name, name, REPO, tmp, name),
                     0);
}

/* sluice submit JOB --run: the run id into run_id (37 bytes). */
static __attribute__((unused)) void submit_run(const char *name, char *run_id)
{
    char line[512];
    snprintf(line, sizeof(line), "%s/sluice submit %s/%s.json --run 2>&1", SLUICE_BUILD_DIR, tmp,
             name);
    FILE *p = popen(line, "r");
    assert_non_null(p);
    run_id[0] = '\0';
    while (fgets(line, sizeof(line), p)) {
        fprintf(stderr, "# %s", line);
        sscanf(line, "run %36s requested", run_id);
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(strlen(run_id), 36);
}

/* Starts the servers (the cluster with topics, "name:partitions") in a new
 * directory /tmp/<prefix>-XXXXXX, generates the input, puts the services'
 * settings in the environment (SLUICE_KAFKA_CONFIG kafka_config; the
 * caller's SLUICE_LOG_LEVEL, else info), and runs job <prefix>_embedded in
 * embedded mode for the expected counts. 0, or -1 saying why on stderr. */
static int dist_env_start(const char *prefix, const char *const *topics, const char *kafka_config)
{
    char pattern[sizeof(tmp)];
    snprintf(pattern, sizeof(pattern), "/tmp/sluice-%s-XXXXXX", prefix);
    if (servers_start(tmp, sizeof(tmp), pattern, &pg, &rs, &km, topics))
        return -1;
    char redis_url[256], dir[256];
    redis_server_url(&rs, 0, NULL, redis_url, sizeof(redis_url));
    snprintf(dir, sizeof(dir), "%s/inputs", tmp);
    if (mkdir(dir, 0755))
        return -1;
    if (shell("%s/tests/bench/gen_stores %d > %s/stores.csv 2>/dev/null", SLUICE_BUILD_DIR, NROWS,
              dir))
        return -1;
    setenv("SLUICE_KAFKA_BROKERS", km.bootstrap, 1);
    setenv("SLUICE_REDIS_URL", redis_url, 1);
    setenv("SLUICE_POSTGRES_URL", pg.conninfo, 1);
    snprintf(dir, sizeof(dir), "%s/blobs", tmp);
    setenv("SLUICE_BLOB_DIR", dir, 1);
    snprintf(dir, sizeof(dir), "%s/inputs", tmp);
    setenv("SLUICE_FILE_DIRS", dir, 1);
    setenv("SLUICE_LOG_LEVEL", "info", 0);
    setenv("SLUICE_KAFKA_CONFIG", kafka_config, 1);

    /* the reference: embedded mode on the same file */
    char name[64], path[256];
    snprintf(name, sizeof(name), "%s_embedded", prefix);
    write_job(name);
    if (shell("env -u SLUICE_POSTGRES_URL %s/sluice run %s/%s.json --out %s/emb "
              "--state %s/estate --quiet",
              SLUICE_BUILD_DIR, tmp, name, tmp, tmp) != 3)
        return -1;
    snprintf(path, sizeof(path), "%s/emb/run.json", tmp);
    json_t *run = json_load_file(path, 0, NULL);
    if (!run)
        return -1;
    expected = json_incref(json_object_get(run, "counts"));
    json_decref(run);
    expected_rows = (long)json_integer_value(json_object_get(expected, "published"));
    char *shown = json_dumps(expected, JSON_COMPACT | JSON_SORT_KEYS);
    fprintf(stderr, "# embedded: %s\n", shown ? shown : "?");
    free(shown);
    return expected_rows < NROWS / 2 ? -1 : 0;
}

/* Stops the servers; the directory goes unless keep or SLUICE_KEEP_TMP is
 * set (then it is named). 0 or -1. */
static int dist_env_stop(bool keep)
{
    json_decref(expected);
    kafka_mock_stop(&km);
    redis_server_stop(&rs);
    pg_server_stop(&pg);
    if (keep || getenv("SLUICE_KEEP_TMP")) {
        fprintf(stderr, "service logs are in %s\n", tmp);
        return 0;
    }
    return shell("rm -rf %s", tmp) == 0 ? 0 : -1;
}

#endif
