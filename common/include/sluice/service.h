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

struct sl_stage;

/* Runs stage as the service named "sluice-<stage name>"; returns the exit
 * status (0 after a graceful stop, 1 on a fatal error, 2 on a bad setting). */
int sl_service_main(const struct sl_stage *stage, int argc, char **argv);

/* sluice-scheduler: fires due jobs (sl_scheduler_tick) once a second until
 * SIGTERM or SIGINT. Same settings, same exit statuses. */
int sl_service_scheduler_main(int argc, char **argv);

#endif
