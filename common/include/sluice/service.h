/*
 * A stage as a distributed service: what every services/<stage>/main.c runs.
 *
 * sl_service_main() reads the configuration (each setting an environment
 * variable with a matching --flag, ARCHITECTURE.md "Configuration"),
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

/* Runs stage as the service named "sluice-<stage name>"; returns the exit
 * status (0 after a graceful stop, 1 on a fatal error, 2 on a bad setting). */
int sl_service_main(const struct sl_stage *stage, int argc, char **argv);

/* sluice-scheduler: fires due jobs (sl_scheduler_tick) once a second until
 * SIGTERM or SIGINT. Same settings, same exit statuses. */
int sl_service_scheduler_main(int argc, char **argv);

#endif
