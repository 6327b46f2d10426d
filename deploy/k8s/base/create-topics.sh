#!/bin/sh
# Creates every topic sluice uses (common/include/sluice/bus.h), each with
# TOPIC_PARTITIONS partitions (default 6: the most replicas of a stage that
# can share the work) and TOPIC_REPLICATION replicas (default 1; 3 in
# production), prefixed with SLUICE_TOPIC_PREFIX (default sluice.). Topics
# that exist are left as they are. Runs in the apache/kafka image (its
# kafka-topics.sh): the topics service of docker-compose.yml and the
# sluice-topics Job of deploy/k8s.
set -eu
: "${KAFKA_BOOTSTRAP:=kafka:9092}"
: "${TOPIC_PARTITIONS:=6}"
: "${TOPIC_REPLICATION:=1}"
: "${SLUICE_TOPIC_PREFIX:=sluice.}"
KAFKA_TOPICS=${KAFKA_TOPICS_BIN:-/opt/kafka/bin/kafka-topics.sh}
for t in tickets files records.raw records.mapped records.valid records.rejected runs dead; do
    "$KAFKA_TOPICS" --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists \
        --topic "$SLUICE_TOPIC_PREFIX$t" --partitions "$TOPIC_PARTITIONS" \
        --replication-factor "$TOPIC_REPLICATION"
done
"$KAFKA_TOPICS" --bootstrap-server "$KAFKA_BOOTSTRAP" --list
