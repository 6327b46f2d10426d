/* placeholder: replaced by the implementation of sluice jobs / runs --server */
#include <stdio.h>

#include "commands.h"

int sl_cmd_jobs(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice: jobs is not implemented yet\n");
    return 1;
}

int sl_cmd_runs_remote(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice: runs --server is not implemented yet\n");
    return 1;
}
