/*
 * The stage interface: one seam between the pipeline's logic and how it runs.
 *
 * A stage is a struct of callbacks over decoded messages (msg.h). The stage
 * runner (sl_stage_run) polls the stage's input topics from a bus, calls
 * process() for each message, lets the stage emit its outputs through an
 * emitter, and commits the consumer position only after process() returned,
 * i.e. after every output was handed to the bus. The same stage code runs in
 * embedded mode (inproc bus, one thread per stage) and as a service (kafka
 * bus, main.c only wires implementations together).
 */
#ifndef SLUICE_STAGE_H
#define SLUICE_STAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "sluice/bus.h"
#include "sluice/msg.h"

struct sl_job;
struct sl_jobs;
struct sl_state;
struct sl_sink;
struct sl_ledger;
struct sl_stage_env;

/* Opens the destination of job for one run (the publisher calls it). */
typedef struct sl_sink *(*sl_sink_open_fn)(const struct sl_job *job, const char *run_id,
                                           const struct sl_stage_env *env, char *errbuf,
                                           size_t errsz);
/* Opens the run ledger (rejected rows, run summary) for one run. */
typedef struct sl_ledger *(*sl_ledger_open_fn)(const struct sl_job *job, const char *run_id,
                                               const struct sl_stage_env *env, char *errbuf,
                                               size_t errsz);

/* What a stage may use; set up by main.c (or the embedded runner), shared by
 * every stage thread, read-only after start. */
struct sl_stage_env {
    struct sl_jobs *jobs;        /* job definitions by id and version */
    struct sl_state *st;         /* last-success hashes, per-run keys */
    const char *blob_dir;        /* where fetched files are kept */
    const char *out_dir;         /* embedded mode: where the run's files go */
    const char *sink_path;       /* embedded mode: the NDJSON file of published records */
    const char *destination_url; /* PostgreSQL of postgres destinations, or NULL */
    const char *job_dir;         /* embedded mode: relative source paths start here */
    const char *hash_key;        /* SLUICE_HASH_KEY or NULL */
    const char *allow_hosts;     /* SLUICE_ALLOW_HOSTS or NULL */
    const char *file_dirs;       /* SLUICE_FILE_DIRS: where file:// sources may be */
    const char *control_url;     /* services: the control plane (run ledger) */
    sl_sink_open_fn open_sink;
    sl_ledger_open_fn open_ledger;
    bool embedded;                     /* no servers: local files allowed as sources */
    const struct sl_smtp_config *smtp; /* run reports by e-mail; NULL: none */
};

struct sl_emit_metrics;
struct sl_progress;

struct sl_emitter {
    struct sl_bus *bus;
    const char *stage; /* name of the emitting stage */
    /* the runner's counters of messages out by topic (metrics.h); NULL:
     * not counted */
    struct sl_emit_metrics *metrics;
    /* the runner's counts of each run's records for its live progress
     * (state.h progress_add); NULL: not kept */
    struct sl_progress *progress;
};

/* Hands msg to the bus on topic (one reference taken over, even on error).
 * Blocks under backpressure. 0 or SL_ERR_CLOSED / a retriable error. */
int sl_emit(struct sl_emitter *em, const char *topic, struct sl_msg *msg);

struct sl_stage {
    const char *name;          /* "parser"; also the default consumer group */
    const char *const *inputs; /* NULL-terminated logical topic names */
    /* Builds the stage's private state. */
    int (*init)(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz);
    /* Processes one message, borrowed for the call. A poison error sends the
     * message to the dead-letter topic and the stage goes on; a fatal one
     * stops the runner. */
    int (*process)(void *state, const char *topic, struct sl_msg *in, struct sl_emitter *em);
    /* Optional: called when no input is waiting, before a commit. */
    int (*flush)(void *state, struct sl_emitter *em);
    void (*destroy)(void *state);
};

struct sl_stage_runner;

/* Subscribes stage to its inputs on bus (in group; NULL: the stage's name)
 * and builds its state, on the calling thread, so that no message sent after
 * this returns can be missed. NULL with errbuf set on error. */
struct sl_stage_runner *sl_stage_runner_new(const struct sl_stage *stage, struct sl_bus *bus,
                                            const char *group, const struct sl_stage_env *env,
                                            char *errbuf, size_t errsz);

/* Runs the stage until the bus closes (and its queue is drained) or *stop
 * becomes true. Returns 0, or the fatal error with errbuf set. Call from one
 * thread at a time. */
int sl_stage_runner_run(struct sl_stage_runner *r, atomic_bool *stop, char *errbuf, size_t errsz);

/* Messages processed so far (any thread, approximate). */
unsigned long long sl_stage_runner_count(const struct sl_stage_runner *r);

/* Destroys the stage state and unsubscribes; accepts NULL. */
void sl_stage_runner_destroy(struct sl_stage_runner *r);

/* The pipeline's stages (services/<name>/<name>.c). */
extern const struct sl_stage sl_stage_fetcher;
extern const struct sl_stage sl_stage_parser;
extern const struct sl_stage sl_stage_mapper;
extern const struct sl_stage sl_stage_validator;
extern const struct sl_stage sl_stage_publisher;

#endif
