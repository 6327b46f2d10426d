/* placeholder: replaced by the implementation of sluice preview */
#include <stdio.h>

#include "commands.h"

int sl_cmd_preview(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "sluice: preview is not implemented yet\n");
    return 1;
}
