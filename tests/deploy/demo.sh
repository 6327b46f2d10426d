#!/bin/bash
# docker-compose.yml's demo, without Docker (ctest: deploy_demo): every
# service runs with the environment and command compose gives it
# (compose_env.py), against PostgreSQL and Redis on 127.0.0.1 and the mock
# Kafka broker (tests/sluice-test-mock_kafka) holding the topics of
# deploy/k8s/base/create-topics.sh; the compose names kafka, redis,
# postgres and the image's paths are mapped to those and to the repository.
# Then, as compose would: each service's HEALTHCHECK (deploy/healthcheck.sh)
# passes, the gateway is ready, the demo service's command submits and runs
# examples/stores/job.json and exits 0 with the run completed_with_errors,
# 25 read, 19 published, 6 rejected (as `sluice run` of the README), the
# rows are in the destination table, and `sluice migrate` (the Kubernetes
# migration Job's command) has nothing left to do.
# usage: demo.sh SLUICE_BINARY REPO
set -u
SLUICE=$1
REPO=$2
BUILD=$(dirname "$SLUICE")
HERE=$REPO/tests/deploy
PY=/usr/bin/python3
# shellcheck source=../bench/lib.sh
. "$REPO/tests/bench/lib.sh"
TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()
PG_PID=0
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p" TERM 15; done
    [[ $PG_PID -gt 0 ]] && stop_pid "$PG_PID" QUIT 10
    rm -rf "$TMP"
}
trap cleanup EXIT
# take_port VAR: a free port of 127.0.0.1 into VAR, never one taken before
# (in the shell itself: $RANDOM in a $(...) subshell repeats the parent's),
# below the ephemeral range that the clients' connections take ports from
TAKEN=" "
take_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ $TAKEN == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            TAKEN+="$p "
            printf -v "$1" %s "$p"
            return 0
        fi
    done
    return 1
}
passed=0
failed=0
ok() {
    echo "ok: $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAILED: $1"
    failed=$((failed + 1))
}
die() {
    echo "FAILED: $1"
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
}

# ---- PostgreSQL (the postgres service: user sluice, database sluice) ------
PG_BIN=${SLUICE_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x $PG_BIN/initdb ]] || die "PostgreSQL's server is missing (apt-get install postgresql)"
AS_PG=()
if [[ $EUID -eq 0 ]]; then
    AS_PG=(runuser -u postgres --)
    mkdir "$TMP/pg" && chown postgres: "$TMP/pg"
else
    mkdir "$TMP/pg"
fi
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$TMP/pg/data" -A trust -U postgres -E UTF8 --no-sync \
    >"$TMP/initdb.log" 2>&1 || die "initdb: $(tail -3 "$TMP/initdb.log")"
for _ in 1 2 3; do
    take_port PG_PORT || die "no free port"
    if "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$TMP/pg -c fsync=off" \
        start >"$TMP/pg_ctl.log" 2>&1; then
        PG_PID=$(head -1 "$TMP/pg/data/postmaster.pid")
        break
    fi
done
[[ $PG_PID -gt 0 ]] || die "PostgreSQL did not start: $(tail -3 "$TMP/pg/log" 2>/dev/null)"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qAt -c "CREATE ROLE sluice LOGIN PASSWORD 'sluice-demo'" \
    -c "CREATE DATABASE sluice OWNER sluice" postgres >/dev/null || die "cannot create the sluice database"

# ---- Redis -------------------------------------------------------------------
mkdir "$TMP/redis"
take_port REDIS_PORT || die "no free port"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$TMP/redis" \
    >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
wait_port "${PIDS[-1]}" "$REDIS_PORT" 10 || die "redis-server did not start: $(cat "$TMP/redis.log")"

# ---- Kafka: the mock broker with create-topics.sh's topics ------------------
TOPIC_ARGS=()
for t in $(sed -n 's/^for t in \([a-z. ]*\); do$/\1/p' "$REPO/deploy/k8s/base/create-topics.sh"); do
    TOPIC_ARGS+=(--topic "sluice.$t:2")
done
[[ ${#TOPIC_ARGS[@]} -gt 0 ]] || die "no topics in create-topics.sh"
mkfifo "$TMP/kafka.in"
"$BUILD/tests/sluice-test-mock_kafka" "${TOPIC_ARGS[@]}" <"$TMP/kafka.in" >"$TMP/kafka.out" 2>&1 &
PIDS+=($!)
exec 7>"$TMP/kafka.in" # its stdin stays open while this script runs
for _ in $(seq 100); do
    BROKERS=$(head -1 "$TMP/kafka.out")
    [[ -n $BROKERS ]] && break
    sleep 0.1
done
[[ -n $BROKERS ]] || die "the mock Kafka broker did not start: $(cat "$TMP/kafka.out")"

# ---- the services, as compose runs them --------------------------------------
MAP=(kafka:9092="$BROKERS" redis:6379="127.0.0.1:$REDIS_PORT" postgres:5432="127.0.0.1:$PG_PORT"
    /var/lib/sluice/blobs="$TMP/blobs" /opt/sluice/examples="$REPO/examples")
declare -A METRICS
start_service() { # start_service NAME
    local s=$1 vars=() line cmd=()
    local port http
    take_port port || die "no free port"
    take_port http || die "no free port"
    METRICS[$s]=$port
    while IFS= read -r line; do vars+=("$line"); done < <($PY "$HERE/compose_env.py" "$REPO" env "$s" "${MAP[@]}")
    while IFS= read -r -d '' line; do cmd+=("$line"); done < <($PY "$HERE/compose_env.py" "$REPO" command "$s" "${MAP[@]}")
    # each on its own ports here (in compose each has its own container)
    vars+=("SLUICE_METRICS_ADDR=127.0.0.1:$port")
    [[ $s == gateway ]] && vars+=("SLUICE_HTTP_ADDR=127.0.0.1:$http") && GATEWAY_PORT=$http
    (cd "$TMP" && exec env "${vars[@]}" PATH="$BUILD:$PATH" "${cmd[@]}") >"$TMP/$s.log" 2>&1 &
    PIDS+=($!)
}
SERVICES=(fetcher parser mapper validator publisher scheduler gateway)
for s in "${SERVICES[@]}"; do start_service "$s"; done
for s in "${SERVICES[@]}"; do
    healthy=0
    for _ in $(seq 80); do
        if SLUICE_METRICS_ADDR=0.0.0.0:${METRICS[$s]} sh "$REPO/deploy/healthcheck.sh" 2>/dev/null; then
            healthy=1
            break
        fi
        grep -q 'cannot\|error' "$TMP/$s.log" && break
        sleep 0.25
    done
    if [[ $healthy = 1 ]]; then
        ok "$s: healthy (deploy/healthcheck.sh)"
    else
        fail "$s: not healthy: $(tail -5 "$TMP/$s.log")"
    fi
done
[[ $failed = 0 ]] || die "a service is not healthy: no demo"
ready=$(curl -s "http://127.0.0.1:$GATEWAY_PORT/readyz")
if [[ $ready == *'"status":"ready"'* ]]; then
    ok "gateway: /readyz: $ready"
else
    fail "gateway: /readyz: $ready"
fi

# ---- the demo service ------------------------------------------------------------
DEMO=()
while IFS= read -r line; do DEMO+=("$line"); done < <($PY "$HERE/compose_env.py" "$REPO" env demo "${MAP[@]}")
cmd=()
while IFS= read -r -d '' line; do cmd+=("$line"); done < <($PY "$HERE/compose_env.py" "$REPO" command demo "${MAP[@]}")
if (cd "$TMP" && env "${DEMO[@]}" PATH="$BUILD:$PATH" timeout 240 "${cmd[@]}") >"$TMP/demo.log" 2>&1; then
    ok "demo: exit 0"
else
    fail "demo: exit $?: $(cat "$TMP/demo.log")"
fi
cat "$TMP/demo.log"
if grep -Eq '^[0-9a-f-]{36} +store-locations +[0-9]+ +completed_with_errors .* 25 +19 +6 ' "$TMP/demo.log"; then
    ok "demo: the run completed_with_errors: 25 read, 19 published, 6 rejected"
else
    fail "demo: the run is not completed_with_errors with 25 read, 19 published, 6 rejected"
fi
rows=$(psql -h 127.0.0.1 -p "$PG_PORT" -U sluice -qAt -c "SELECT count(*) FROM locations" sluice 2>&1)
if [[ $rows == 19 ]]; then ok "demo: 19 rows in table locations"; else fail "demo: table locations: $rows"; fi
out=$(env "${DEMO[@]}" "$SLUICE" migrate 2>&1)
if [[ $out == "control plane schema at version "* ]]; then
    ok "sluice migrate after the services: $out"
else
    fail "sluice migrate: $out"
fi
for s in "${SERVICES[@]}"; do
    if grep -q 'refused\|FATAL\|dead letter' "$TMP/$s.log"; then
        fail "$s logged: $(grep -m3 'refused\|FATAL\|dead letter' "$TMP/$s.log")"
    fi
done

echo "$passed passed, $failed failed"
[[ $failed = 0 ]]
