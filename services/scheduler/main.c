/*
 * sluice-scheduler: fires the control plane's due jobs as tickets (minute
 * cadences; the full calendar comes with issue 6). Safe to run as several
 * replicas: due jobs are locked FOR UPDATE SKIP LOCKED and a slot's run id is
 * derived from the job and the slot.
 */
#include "sluice/service.h"

int main(int argc, char **argv)
{
    return sl_service_scheduler_main(argc, argv);
}
