/*
 * A stage as a distributed service: what every services/<stage>/main.c runs.
 *
 * sl_service_main() reads the configuration (sl_config_read below: each
 * setting an environment variable, a --flag and a config-file line),
 * refuses an unknown or malformed one naming it, picks the implementations
 * (Kafka bus, Redis state, the control plane's jobs, PostgreSQL sink and run
 * ledger), applies the control plane's migrations, and runs the stage until
 * SIGTERM or SIGINT, then finishes the message in hand (a batch: all its
 * records), flushes the stage, commits once Kafka acknowledged the outputs,
 * leaves the consumer group (the rebalance is immediate), flushes the
 * producer and exits 0. A second SIGTERM or SIGINT exits at once with 128 +
 * the signal, committing nothing more (docs/architecture.md, "Shutdown").
 */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include <stddef.h>
#include <stdio.h>

struct sl_stage;

/* Configuration (common/src/settings.c, docs/configuration.md).
 *
 * Every setting is an environment variable; most also have a --flag; and
 * every one may be given in a config file (--config FILE or SLUICE_CONFIG,
 * env-file format: NAME=value lines). Precedence: flag > environment >
 * config file > default. All settings of every program are rows of one
 * table, sl_settings[]; `sluice config --markdown` prints it as the table of
 * docs/configuration.md (a test fails when the two differ, and another when
 * the code reads a variable the table lacks).
 *
 * A value given by a flag or the file is exported to the process
 * environment (setenv, before any thread starts), so code deep in the
 * libraries that reads a setting with getenv() (SMTP, AWS, TZDIR, TMPDIR,
 * HOME, SLUICE_WEBHOOK_SECRET_<JOB>) sees the same value as the program. */

/* The programs a setting belongs to (struct sl_setting.programs). */
#define SL_PROG_SERVICE 1u /* sluice-fetcher ... sluice-publisher, sluice-scheduler */
#define SL_PROG_GATEWAY 2u /* sluice-gateway */
#define SL_PROG_CLI     4u /* sluice: read from the environment and the file, no flags */

/* struct sl_setting.kind bits. */
#define SL_SETTING_SECRET  1u /* never logged, never echoed in an error */
#define SL_SETTING_PATTERN 2u /* env is PREFIX<NAME>: every variable starting with PREFIX */

/* One row of the table: its environment variable, its --flag (NULL:
 * environment or config file only, e.g. a secret, as a flag would show in
 * ps), its default (NULL: none), a line of help, the programs that read it,
 * SL_SETTING_* bits and, for the docs, who reads it and (when not the
 * default as it is) how the default reads. Adding a setting is adding a row. */
struct sl_setting {
    const char *env;
    const char *flag;
    const char *def;
    const char *help;
    unsigned programs;
    unsigned kind;
    const char *read_by;
    const char *doc_def;
};

extern const struct sl_setting sl_settings[];
extern const size_t sl_settings_count;

/* The resolved settings of one program (sl_config_read). */
struct sl_config {
    const char *name;
    unsigned program;
    const char *file;   /* the config file read, or NULL */
    const char **val;   /* [sl_settings_count]: the value or NULL (unset) */
    unsigned char *src; /* [sl_settings_count]: where each came from (settings.c) */
    unsigned *line;     /* [sl_settings_count]: the file's line of a value from it */
    char *file_text;    /* the file's values point into it */
};

/* Resolves name's settings (program: one SL_PROG_*): the defaults, the
 * config file (--config FILE, else SLUICE_CONFIG), the environment (an
 * empty variable is unset), then the flags of argv (--flag VALUE or
 * --flag=VALUE; the last one wins); exports values from flags or the file
 * to the environment. Returns 0, -1 after printing the usage for --help
 * (then extra_help, when not NULL), or 2 with the reason on stderr
 * ("NAME: unknown option '--x' (see --help)", "FILE:LINE: unknown setting
 * 'X'"); a value is never part of a message. sl_config_cleanup() after any
 * return. */
int sl_config_read(struct sl_config *cfg, const char *name, unsigned program, int argc, char **argv,
                   const char *extra_help);
/* The value of the setting env (a name of the program's table, else the
 * program aborts: a typo in the code) or NULL when unset. */
const char *sl_config_get(const struct sl_config *cfg, const char *env);
/* Where env's value came from, for a message about it: "--metrics-addr"
 * (the flag), "SLUICE_METRICS_ADDR in /etc/sluice.env:3" (the file),
 * "SLUICE_METRICS_ADDR in the environment", "--metrics-addr, the default"
 * or "SLUICE_METRICS_ADDR" (unset). Written to buf, which is returned. */
const char *sl_config_source(const struct sl_config *cfg, const char *env, char *buf, size_t bufsz);
/* Logs at debug level where each setting that is set came from (the flag,
 * the environment or FILE:LINE): names only, never a value (a URL may hold
 * a password). */
void sl_config_log(const struct sl_config *cfg);
void sl_config_cleanup(struct sl_config *cfg);
/* Prints the usage of program: every setting with its flag, variable and
 * default. */
void sl_settings_usage(const char *name, unsigned program, FILE *out);
/* Prints the table of docs/configuration.md (between its settings markers). */
void sl_settings_markdown(FILE *out);

/* Keeps what a service frees for reuse (glibc: chunks up to 32 MiB from the
 * arenas, 64 MiB kept at an arena's top) instead of giving it back to the
 * kernel and faulting it in again; an operator's GLIBC_TUNABLES or MALLOC_*_
 * settings win. Called by sl_service_main() and the gateway. */
void sl_tune_malloc(void);

/* Runs stage as the service named "sluice-<stage name>"; returns the exit
 * status (0 after a graceful stop, 1 on a fatal error, 2 on a bad setting). */
int sl_service_main(const struct sl_stage *stage, int argc, char **argv);

/* sluice-scheduler: fires due jobs (sl_scheduler_tick) once a second until
 * SIGTERM or SIGINT. Same settings, same exit statuses. */
int sl_service_scheduler_main(int argc, char **argv);

#endif
