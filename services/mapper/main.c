/*
 * sluice-mapper: the mapper stage as a distributed service (service.h wires it to
 * Kafka, Redis and PostgreSQL; the stage itself is services/mapper/mapper.c).
 */
#include "sluice/service.h"
#include "sluice/stage.h"

int main(int argc, char **argv)
{
    return sl_service_main(&sl_stage_mapper, argc, argv);
}
