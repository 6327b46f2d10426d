#!/usr/bin/python3
"""Replays the messages of sluice's dead-letter topic (<prefix>dead) to the
topics they came from (their sluice-topic header), key and value unchanged,
once the cause of their refusal is fixed (docs/operations.md, "The
dead-letter topic"). A message seen twice changes nothing downstream, so a
replay is safe to repeat.

It reads the dead-letter topic from the beginning (or --from-offset) up to
its end when it starts, without a consumer group (nothing is committed: the
topic stays as it is), and for each message:
- skips one that could not be decoded (it has a sluice-partition header: it
  would fail again) unless --include-undecodable;
- skips one whose sluice-reason does not match --match REGEX (if given);
- refuses one whose sluice-topic is not a topic of the prefix, or the
  dead-letter topic itself;
- else produces it to its sluice-topic (with --dry-run: only says so).
One line per message on standard output; exit 0 when every message meant to
be replayed was acknowledged by the brokers (acks=all, idempotent), 1 when
one was not, 2 on a bad command line.

Needs python3-confluent-kafka (Debian 12). Settings as the services take
them: --brokers (SLUICE_KAFKA_BROKERS, default localhost:9092), --prefix
(SLUICE_TOPIC_PREFIX, default sluice.), --kafka-config k=v,k=v
(SLUICE_KAFKA_CONFIG: librdkafka properties, e.g. security.protocol=ssl).

usage: replay-dead.py [--brokers B] [--prefix P] [--kafka-config K=V,...]
                      [--match REGEX] [--include-undecodable]
                      [--from-offset N] [--dry-run]
"""
import argparse
import os
import re
import sys

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
except ImportError:
    sys.stderr.write("replay-dead.py: needs python3-confluent-kafka (apt-get install python3-confluent-kafka)\n")
    sys.exit(2)


def kafka_config(text):
    conf = {}
    for pair in filter(None, (text or "").split(",")):
        if "=" not in pair:
            raise ValueError(f"--kafka-config: '{pair}' is not key=value")
        k, v = pair.split("=", 1)
        conf[k.strip()] = v.strip()
    return conf


def main():
    ap = argparse.ArgumentParser(description="Replay sluice's dead-letter topic.")
    ap.add_argument("--brokers", default=os.environ.get("SLUICE_KAFKA_BROKERS") or "localhost:9092")
    ap.add_argument("--prefix", default=os.environ.get("SLUICE_TOPIC_PREFIX") or "sluice.")
    ap.add_argument("--kafka-config", default=os.environ.get("SLUICE_KAFKA_CONFIG") or "")
    ap.add_argument("--match", help="replay only messages whose sluice-reason matches this regular expression")
    ap.add_argument("--include-undecodable", action="store_true",
                    help="also replay messages that could not be decoded (sluice-partition header)")
    ap.add_argument("--from-offset", type=int, default=0, help="start at this offset of every partition")
    ap.add_argument("--dry-run", action="store_true", help="list what would be replayed, produce nothing")
    a = ap.parse_args()
    try:
        extra = kafka_config(a.kafka_config)
        match = re.compile(a.match) if a.match else None
    except (ValueError, re.error) as e:
        sys.stderr.write(f"replay-dead.py: {e}\n")
        return 2
    dead = a.prefix + "dead"
    base = dict(extra, **{"bootstrap.servers": a.brokers})

    consumer = Consumer(dict(base, **{"group.id": "sluice-replay-dead", "enable.auto.commit": False,
                                      "enable.auto.offset.store": False}))
    try:
        meta = consumer.list_topics(dead, timeout=10)
    except KafkaException as e:
        sys.stderr.write(f"replay-dead.py: cannot reach Kafka at {a.brokers}: {e}\n")
        return 1
    tmeta = meta.topics.get(dead)
    if tmeta is None or tmeta.error is not None or not tmeta.partitions:
        print(f"{dead}: no such topic: nothing to replay")
        return 0
    # where each partition ends now: later messages are not this replay's
    ends, assign = {}, []
    for p in sorted(tmeta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(dead, p), timeout=10)
        start = max(low, a.from_offset)
        if start < high:
            ends[p] = high
            assign.append(TopicPartition(dead, p, start))
    producer = None if a.dry_run else Producer(dict(base, **{"enable.idempotence": True, "acks": "all"}))
    failures = []
    counts = {"replayed": 0, "skipped": 0, "refused": 0}

    def delivered(err, msg):
        if err is not None:
            failures.append(f"{msg.topic()}: {err}")

    if assign:
        consumer.assign(assign)
    while ends:
        msg = consumer.poll(10)
        if msg is None:
            sys.stderr.write("replay-dead.py: no message for 10 s before the end of the topic\n")
            return 1
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.stderr.write(f"replay-dead.py: {msg.error()}\n")
            return 1
        p, off = msg.partition(), msg.offset()
        if p not in ends or off >= ends[p]:
            continue  # produced after the replay started
        if off + 1 >= ends[p]:
            del ends[p]  # this partition's last message of the replay
        hdrs = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
        reason = hdrs.get("sluice-reason", "")
        target = hdrs.get("sluice-topic", "")
        where = f"{dead} [{p}] offset {off}"
        if "sluice-partition" in hdrs and not a.include_undecodable:
            counts["skipped"] += 1
            print(f"skipped {where}: could not be decoded ({reason}); --include-undecodable replays it")
            continue
        if match and not match.search(reason):
            counts["skipped"] += 1
            print(f"skipped {where}: reason does not match: {reason}")
            continue
        if not target.startswith(a.prefix) or target == dead or len(target) == len(a.prefix):
            counts["refused"] += 1
            print(f"refused {where}: its sluice-topic '{target}' is not a topic of the prefix {a.prefix}")
            continue
        counts["replayed"] += 1
        print(f"{'would replay' if a.dry_run else 'replayed'} {where} to {target}: {reason}")
        if producer is not None:
            producer.produce(target, value=msg.value(), key=msg.key(), on_delivery=delivered)
            producer.poll(0)
    consumer.close()
    if producer is not None and producer.flush(30) > 0:
        failures.append("not every message was acknowledged within 30 s")
    for f in failures:
        sys.stderr.write(f"replay-dead.py: {f}\n")
    print(f"{counts['replayed']} {'to replay' if a.dry_run else 'replayed'}, {counts['skipped']} skipped, "
          f"{counts['refused']} refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
