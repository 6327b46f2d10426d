/*
 * Embedded mode: every stage of the pipeline in one process, wired through
 * the in-process bus, state in a local directory, results in files.
 */
#ifndef SLUICE_CLI_EMBEDDED_H
#define SLUICE_CLI_EMBEDDED_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/msg.h"

struct sl_job;
struct sl_smtp_config;

struct sl_embedded_opts {
    const char *out_dir;               /* where the run's files go */
    const char *sink_path;             /* NDJSON of published records */
    const char *state_dir;             /* last-success hashes */
    const char *input;                 /* a local file instead of source.url, or NULL */
    const char *destination_url;       /* PostgreSQL of a postgres destination, or NULL */
    bool force;                        /* ignore skip_unchanged */
    bool progress;                     /* draw a progress bar on stderr */
    const struct sl_smtp_config *smtp; /* the run report's e-mail; NULL: none */
};

struct sl_embedded_result {
    char run_id[37];
    char status[32]; /* succeeded, completed_with_errors, skipped, failed */
    char reason[1024];
    struct sl_counts counts;
    int64_t started_us, finished_us;
    char blob[1024]; /* the file the run read (fetched or local), "" when none */
};

/* Runs job once, to the end. Takes ownership of job. Returns 0 when the run
 * reached a final status (in res), or a negative sl_err with errbuf set when
 * the pipeline itself could not run. */
int sl_embedded_run(struct sl_job *job, const struct sl_embedded_opts *opts,
                    struct sl_embedded_result *res, char *errbuf, size_t errsz);

#endif
