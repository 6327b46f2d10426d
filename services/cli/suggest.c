/* placeholder: replaced by the implementation of sluice suggest */
#include <stdio.h>

#include "commands.h"

int sl_cmd_suggest(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice: suggest is not implemented yet\n");
    return 1;
}
