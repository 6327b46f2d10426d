/*
 * The servers an integration test of the services needs, started together:
 * PostgreSQL, Redis and the mock Kafka cluster, on loopback, with a new
 * directory for the logs. Header-only.
 */
#ifndef SLUICE_TEST_SERVERS_H
#define SLUICE_TEST_SERVERS_H

#include <stdio.h>
#include <stdlib.h>

#include "kafka_mock.h"
#include "pg_server.h"
#include "redis_server.h"

/* Makes the directory dir[dirsz] from pattern (mkdtemp: ends in XXXXXX)
 * and starts pg, rs and km (the cluster with topics, "name:partitions").
 * 0, or -1 saying why on stderr (the caller stops what started). */
static __attribute__((unused)) int servers_start(char *dir, size_t dirsz, const char *pattern,
                                                 struct pg_server *pg, struct redis_server *rs,
                                                 struct kafka_mock *km, const char *const *topics)
{
    snprintf(dir, dirsz, "%s", pattern);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return -1;
    }
    if (pg_server_start(pg)) {
        fprintf(stderr, "cannot start postgresql: %s\n", pg->err);
        return -1;
    }
    if (redis_server_start(rs, false) || kafka_mock_start(km, topics))
        return -1;
    return 0;
}

#endif
