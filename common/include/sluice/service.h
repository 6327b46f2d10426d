/*
 * A stage as a distributed service: what every services/<stage>/main.c runs.
 *
 * sl_service_main() reads the configuration (each setting an environment
 * variable with a matching --flag, ARCHITECTURE.md "Configuration"),
 * refuses an unknown or malformed one naming it, picks the implementations
 * (Kafka bus, Redis state, the control plane's jobs, PostgreSQL sink and run
 * ledger), applies the control plane's migrations, and runs the stage until
 * SIGTERM or SIGINT, then finishes the message in hand, commits and leaves.
 */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include <stddef.h>
#include <stdio.h>

struct sl_stage;

/* One setting of a program: its environment variable, its --flag, its
 * default (NULL: none) and a line of help. */
struct sl_setting {
    const char *env;
    const char *flag;
    const char *def;
    const char *help;
};

/* Fills val[0..n) from the environment (an empty variable is unset), then
 * from the flags of argv (--flag VALUE or --flag=VALUE; the last one wins).
 * Returns 0, -1 after printing the usage for --help, or 2 with the reason on
 * stderr ("NAME: unknown option '--x' (see --help)"). extra_help, when not
 * NULL, is printed under the settings. */
int sl_settings_read(const char *name, const struct sl_setting *settings, size_t n, int argc,
                     char **argv, const char **val, const char *extra_help);
/* Prints name's usage: every setting with its flag, variable and default. */
void sl_settings_usage(const char *name, const struct sl_setting *settings, size_t n, FILE *out);

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
