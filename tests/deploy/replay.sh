#!/bin/bash
# deploy/replay-dead.py against the mock Kafka broker (ctest: deploy_replay):
# dead letters made with kcat as the bus makes them (headers sluice-reason,
# sluice-topic, and sluice-partition/-offset for an undecodable one); a dry
# run produces nothing; a replay sends the refused message, binary value and
# key unchanged, to its sluice-topic, skips the undecodable one and one that
# --match leaves out, refuses one whose sluice-topic is outside the prefix.
# usage: replay.sh SLUICE_BINARY REPO
set -u
BUILD=$(dirname "$1")
REPO=$2
PY=/usr/bin/python3
TOOL=$REPO/deploy/replay-dead.py
# shellcheck source=../bench/lib.sh
. "$REPO/tests/bench/lib.sh"
TMP=$(mktemp -d)
MOCK_PID=0
cleanup() {
    [[ $MOCK_PID -gt 0 ]] && stop_pid "$MOCK_PID" TERM 10
    rm -rf "$TMP"
}
trap cleanup EXIT
passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
        passed=$((passed + 1))
    else
        echo "FAILED: $what"
        failed=$((failed + 1))
    fi
}
for tool in kcat "$PY"; do
    command -v "$tool" >/dev/null || { echo "replay.sh: $tool is missing: run deploy/install-deps.sh"; exit 1; }
done
$PY -c 'import confluent_kafka' 2>/dev/null ||
    { echo "replay.sh: python3-confluent-kafka is missing: run deploy/install-deps.sh"; exit 1; }

mkfifo "$TMP/kafka.in"
"$BUILD/tests/sluice-test-mock_kafka" --topic sluice.dead:2 --topic sluice.tickets:1 \
    --topic sluice.files:1 <"$TMP/kafka.in" >"$TMP/kafka.out" 2>&1 &
MOCK_PID=$!
exec 7>"$TMP/kafka.in"
BROKERS=
for _ in $(seq 100); do
    BROKERS=$(head -1 "$TMP/kafka.out")
    [[ -n $BROKERS ]] && break
    sleep 0.1
done
[[ -n $BROKERS ]] || { echo "FAILED: the mock broker did not start: $(cat "$TMP/kafka.out")"; exit 1; }
export SLUICE_KAFKA_BROKERS=$BROKERS

# the dead letters
printf 'ticket\000with a NUL\nand a newline\377' >"$TMP/refused.bin"
printf 'garbage' >"$TMP/undecodable.bin"
printf 'other' >"$TMP/other.bin"
kcat -P -b "$BROKERS" -t sluice.dead -p 0 -k job-a -H "sluice-reason=job 'a' does not exist" \
    -H sluice-topic=sluice.tickets "$TMP/refused.bin" &&
    kcat -P -b "$BROKERS" -t sluice.dead -p 1 -k job-b -H "sluice-reason=truncated protobuf" \
        -H sluice-topic=sluice.files -H sluice-partition=0 -H sluice-offset=7 "$TMP/undecodable.bin" &&
    kcat -P -b "$BROKERS" -t sluice.dead -p 1 -k job-c -H "sluice-reason=job 'c' does not exist" \
        -H sluice-topic=elsewhere.tickets "$TMP/other.bin" &&
    kcat -P -b "$BROKERS" -t sluice.dead -p 0 -k job-d -H "sluice-reason=disk full" \
        -H sluice-topic=sluice.files "$TMP/other.bin" ||
    { echo "FAILED: kcat cannot produce to the mock broker"; exit 1; }

count() { # count TOPIC: its messages
    kcat -C -b "$BROKERS" -t "$1" -o beginning -e -q -f '%k\n' 2>/dev/null | grep -c .
}

$PY "$TOOL" --dry-run --match 'does not exist' >"$TMP/dry.out" 2>&1
st=$?
cat "$TMP/dry.out"
check "dry run: exit 0" [ $st = 0 ]
check "dry run: would replay the refused ticket" grep -q "^would replay sluice.dead \[0\] offset 0 to sluice.tickets: job 'a' does not exist" "$TMP/dry.out"
check "dry run: skips the undecodable message" grep -q "^skipped sluice.dead \[1\] offset 0: could not be decoded" "$TMP/dry.out"
check "dry run: refuses a topic outside the prefix" grep -q "^refused sluice.dead \[1\] offset 1: its sluice-topic 'elsewhere.tickets'" "$TMP/dry.out"
check "dry run: --match leaves out another reason" grep -q "^skipped sluice.dead \[0\] offset 1: reason does not match: disk full" "$TMP/dry.out"
check "dry run: 1 to replay, 2 skipped, 1 refused" grep -qx "1 to replay, 2 skipped, 1 refused" "$TMP/dry.out"
check "dry run: nothing produced" [ "$(count sluice.tickets)" = 0 ]

$PY "$TOOL" --match 'does not exist' >"$TMP/run.out" 2>&1
st=$?
cat "$TMP/run.out"
check "replay: exit 0" [ $st = 0 ]
check "replay: 1 replayed, 2 skipped, 1 refused" grep -qx "1 replayed, 2 skipped, 1 refused" "$TMP/run.out"
check "replay: one message on sluice.tickets" [ "$(count sluice.tickets)" = 1 ]
kcat -C -b "$BROKERS" -t sluice.tickets -o beginning -c 1 -e -q -f '%s' >"$TMP/got.bin" 2>/dev/null
check "replay: the value, byte for byte" cmp -s "$TMP/refused.bin" "$TMP/got.bin"
check "replay: the key" [ "$(kcat -C -b "$BROKERS" -t sluice.tickets -o beginning -c 1 -e -q -f '%k' 2>/dev/null)" = job-a ]
check "replay: sluice.files untouched" [ "$(count sluice.files)" = 0 ]
check "replay: the dead-letter topic is unchanged" [ "$(count sluice.dead)" = 4 ]

$PY "$TOOL" --include-undecodable --from-offset 0 >"$TMP/all.out" 2>&1
st=$?
check "--include-undecodable: exit 0, 3 replayed" bash -c "[ $st = 0 ] && grep -qx '3 replayed, 0 skipped, 1 refused' '$TMP/all.out'"
check "--include-undecodable: 2 on sluice.files" [ "$(count sluice.files)" = 2 ]

$PY "$TOOL" --brokers 127.0.0.1:1 --kafka-config socket.timeout.ms=2000 >"$TMP/down.out" 2>&1
st=$?
check "an unreachable broker: exit 1 naming it" bash -c "[ $st = 1 ] && grep -q '127.0.0.1:1' '$TMP/down.out'"
$PY "$TOOL" --kafka-config nonsense >"$TMP/bad.out" 2>&1
st=$?
check "a malformed --kafka-config: exit 2 naming it" bash -c "[ $st = 2 ] && grep -q \"'nonsense' is not key=value\" '$TMP/bad.out'"

echo "$passed passed, $failed failed"
[[ $failed = 0 ]]
