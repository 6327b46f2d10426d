/*
 * The sluice command's subcommands that live in files of their own
 * (main.c dispatches to them). Each takes the arguments after the command
 * name (argv[0] is the command) and returns the process's exit status
 * (0 success, 1 failure, 2 invalid job file or command line).
 */
#ifndef SLUICE_CLI_COMMANDS_H
#define SLUICE_CLI_COMMANDS_H

/* sluice preview JOB.json [--input FILE] [--rows N] [--json] (preview.c) */
int sl_cmd_preview(int argc, char **argv);

/* sluice suggest FILE [--job JOB.json] [--write OUT.json] [--json] (suggest.c) */
int sl_cmd_suggest(int argc, char **argv);

/* sluice jobs ... / sluice runs ... --server URL: the gateway's API (remote.c) */
int sl_cmd_jobs(int argc, char **argv);
int sl_cmd_runs_remote(int argc, char **argv);

#endif
