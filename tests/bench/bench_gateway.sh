#!/usr/bin/env bash
# Webhook benchmark (issue 6): sluice-gateway's POST /v1/jobs/{id}/webhook under wrk, beside
# nginx answering the same requests with a fixed 202 (the ceiling of HTTP on this machine)
# and libmicrohttpd alone (tests/bench/mhd_202.c: the gateway's HTTP library suspending and
# resuming every request as the gateway does, answering 202 without work), in one invocation. On loopback, in a temporary directory: PostgreSQL 15, Redis, the mock
# Kafka cluster, sluice-gateway, sluice-mapper, sluice-validator and sluice-publisher; a
# webhook job (one JSON object a delivery, a postgres destination table) created through
# the gateway's API; N distinct Standard Webhooks deliveries signed ahead of time
# (tests/bench/gen_webhooks.py) and sent by wrk (tests/bench/wrk_webhook.lua, each wrk
# thread its own slice). After wrk, waits until the destination table holds every record
# the gateway acknowledged (202) and reports records/s end to end (from the first request
# to the last record visible).
#
# Usage: tests/bench/bench_gateway.sh [--requests N] [--threads T] [--connections C]
#                                     [--duration S] [--wrk-timeout S] [--partitions P]
#                                     [--kafka-config K=V,...] [--pg-max-connections N]
#                                     [--durable] [--strict] [BUILD_DIR]
#   BUILD_DIR      where sluice-gateway, -mapper, -validator, -publisher and
#                  tests/sluice-test-mock_kafka and tests/bench/mhd_202 are (default ./build); builds nothing
#   --requests N   distinct signed deliveries generated (default 500000); a wrk thread that
#                  sends all of its slice starts it again: those repeats are replays (the
#                  gateway answers 200) and are reported as "wrapped" (raise N)
#   --threads T    wrk threads (-t, default 2)
#   --connections C  wrk connections (-c, default 128: a sender waits for each answer, which
#                  waits for Kafka, so 64 connections leave the gateway idle part of the time)
#   --duration S   seconds of each wrk run (-d, default 20; at most 240: a delivery's
#                  timestamp must be within 5 minutes of the gateway's clock)
#   --wrk-timeout S  wrk's --timeout (default 10): an answer slower than this is counted as a
#                  timeout, not in the latencies (the gateway waits up to 5 s for Kafka)
#   --partitions P partitions of each records topic (default 1: the mock broker walks each
#                  partition's message sets on every fetch, so its cost grows with partitions;
#                  8 as in bench_distributed.sh shows it, docs/BENCHMARKS.md)
#   --kafka-config librdkafka properties of the mapper, validator and publisher
#                  (SLUICE_KAFKA_CONFIG; default fetch.wait.max.ms=20, as bench_distributed.sh);
#                  the gateway gets none; '' for none
#   --pg-max-connections N  PostgreSQL's max_connections (default 100, its own default):
#                  the publisher holds two connections (ledger, sink) for each run it has
#                  open (a webhook run takes the deliveries of a window, docs/api.md)
#   --durable      PostgreSQL with fsync, synchronous_commit and full_page_writes on (default off)
#   --strict       exit 1 when a target is missed (gateway rps >= 0.5 x nginx rps, gateway
#                  p99 < 50 ms) or the destination lacks an acknowledged record, holds one twice,
#                  or differs from the rows of the runs (a delivery wrk gave up on when it
#                  stopped was taken unanswered: in the runs and the destination, not acked)
# Environment: BENCH_TIMEOUT seconds the destination may take to catch up after wrk (default
#   1800); BENCH_KEEP_TMP=1 keeps the temporary directory (logs, request files);
#   SLUICE_PG_BIN (default /usr/lib/postgresql/15/bin); BENCH_NO_INSTALL=1: never
#   apt-get install wrk.
# Needs wrk, nginx (nginx-light), /usr/bin/python3, curl, redis-server, psql and PostgreSQL 15's
# server; run as root it runs PostgreSQL as user postgres (runuser). Every process it started
# is stopped by PID on exit. See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
BUILD=./build
REQUESTS=500000
THREADS=2
CONNS=128
DURATION=20
WRK_TIMEOUT=10
PARTS=1
KAFKA_CONFIG=fetch.wait.max.ms=20
STRICT=0
PG_MAXCONN=100
PG_DURABILITY=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
TIMEOUT=${BENCH_TIMEOUT:-1800}
PG_BIN=${SLUICE_PG_BIN:-/usr/lib/postgresql/15/bin}
PYTHON=/usr/bin/python3
GENPY=$ROOT/tests/bench/gen_webhooks.py
LUA=$ROOT/tests/bench/wrk_webhook.lua
SERVICES=(mapper validator publisher gateway)
JOB_ID=bench-webhooks
TABLE=bench_webhooks
# targets (docs/BENCHMARKS.md, issue 6)
TARGET_RATIO=0.5
TARGET_P99_MS=50

die() {
    echo "bench_gateway: $*" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --requests) [[ $# -ge 2 ]] || die "--requests needs a number"; REQUESTS=$2; shift ;;
    --requests=*) REQUESTS=${1#--requests=} ;;
    --threads | -t) [[ $# -ge 2 ]] || die "--threads needs a number"; THREADS=$2; shift ;;
    --threads=*) THREADS=${1#--threads=} ;;
    --connections | -c) [[ $# -ge 2 ]] || die "--connections needs a number"; CONNS=$2; shift ;;
    --connections=*) CONNS=${1#--connections=} ;;
    --duration | -d) [[ $# -ge 2 ]] || die "--duration needs seconds"; DURATION=$2; shift ;;
    --duration=*) DURATION=${1#--duration=} ;;
    --wrk-timeout) [[ $# -ge 2 ]] || die "--wrk-timeout needs seconds"; WRK_TIMEOUT=$2; shift ;;
    --wrk-timeout=*) WRK_TIMEOUT=${1#--wrk-timeout=} ;;
    --partitions) [[ $# -ge 2 ]] || die "--partitions needs a number"; PARTS=$2; shift ;;
    --partitions=*) PARTS=${1#--partitions=} ;;
    --kafka-config) [[ $# -ge 2 ]] || die "--kafka-config needs K=V,..."; KAFKA_CONFIG=$2; shift ;;
    --kafka-config=*) KAFKA_CONFIG=${1#--kafka-config=} ;;
    --pg-max-connections) [[ $# -ge 2 ]] || die "--pg-max-connections needs a number"; PG_MAXCONN=$2; shift ;;
    --pg-max-connections=*) PG_MAXCONN=${1#--pg-max-connections=} ;;
    --durable) PG_DURABILITY= ;;
    --strict) STRICT=1 ;;
    -h | --help)
        sed -n '2,50p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $1" ;;
    *) BUILD=$1 ;;
    esac
    shift
done
DURATION=${DURATION%s}
WRK_TIMEOUT=${WRK_TIMEOUT%s}
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ && "$REQUESTS" -le 10000000 ]] ||
    die "--requests must be 1..10000000, not '$REQUESTS'"
[[ "$THREADS" =~ ^[1-9][0-9]*$ && "$THREADS" -le 64 ]] || die "--threads must be 1..64, not '$THREADS'"
[[ "$CONNS" =~ ^[1-9][0-9]*$ && "$CONNS" -le 500 ]] || die "--connections must be 1..500, not '$CONNS'"
((CONNS >= THREADS)) || die "--connections ($CONNS) must be at least --threads ($THREADS)"
((REQUESTS >= THREADS)) || die "--requests ($REQUESTS) must be at least --threads ($THREADS)"
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$DURATION" -le 240 ]] ||
    die "--duration must be 1..240 seconds, not '$DURATION'"
[[ "$WRK_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "--wrk-timeout must be a number of seconds, not '$WRK_TIMEOUT'"
[[ "$PARTS" =~ ^[1-9][0-9]*$ && "$PARTS" -le 1000 ]] || die "--partitions must be 1..1000, not '$PARTS'"
[[ "$PG_MAXCONN" =~ ^[1-9][0-9]*$ && "$PG_MAXCONN" -ge 20 && "$PG_MAXCONN" -le 5000 ]] ||
    die "--pg-max-connections must be 20..5000, not '$PG_MAXCONN'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a number of seconds, not '$TIMEOUT'"

BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "build directory $BUILD does not exist"
MOCK=$BUILD/tests/sluice-test-mock_kafka
MHD202=$BUILD/tests/bench/mhd_202
for exe in "$MOCK" "$MHD202" "${SERVICES[@]/#/$BUILD/sluice-}"; do
    [[ -x "$exe" ]] || die "$exe is missing: cmake --build $BUILD --target sluice-test-mock_kafka mhd_202" \
        "${SERVICES[*]/#/sluice-}"
done
for exe in "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
    [[ -x "$exe" ]] || die "$exe is missing: apt-get install postgresql-15 (or set SLUICE_PG_BIN)"
done
command -v redis-server >/dev/null || die "redis-server is missing: apt-get install redis-server"
command -v nginx >/dev/null || die "nginx is missing: apt-get install nginx-light"
command -v curl >/dev/null || die "curl is missing: apt-get install curl"
[[ -x "$PYTHON" ]] || die "$PYTHON is missing: apt-get install python3"
PSQL=$PG_BIN/psql
[[ -x "$PSQL" ]] || PSQL=$(command -v psql) || die "psql is missing: apt-get install postgresql-client"
if ! command -v wrk >/dev/null; then
    if [[ "${BENCH_NO_INSTALL:-0}" != 1 && $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "== wrk is missing: apt-get install -y wrk"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
            die "apt-get install -y wrk failed"
    else
        die "wrk is missing: apt-get install wrk (deploy/install-deps.sh)"
    fi
fi
if grep -q 'CMAKE_BUILD_TYPE:STRING=Debug' "$BUILD/CMakeCache.txt" 2>/dev/null ||
    grep -q 'SLUICE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "bench_gateway: warning: $BUILD is a Debug or sanitizer build; numbers will be low" >&2
fi
AS_PG=()
if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the user postgres (PostgreSQL refuses root)"
    AS_PG=(runuser -u postgres --)
fi
TICK=$(getconf CLK_TCK)
NCPU=$(nproc)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-gw.XXXXXX")
chmod 755 "$TMP" # user postgres must reach its directory below
mkdir -p "$TMP/data" "$TMP/redis" "$TMP/nginx"
declare -A SVC_PID=()
KAFKA_PID=0
KAFKA_FD=
REDIS_PID=0
PG_PID=0
NGINX_PID=0
MHD_PID=0
WRK_PID=0
POLL_PID=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$? s
    set +e
    trap - EXIT INT TERM
    stop_pid "$WRK_PID" INT 5
    stop_pid "$NGINX_PID" TERM 5 # fast shutdown; the master stops its workers
    stop_pid "$MHD_PID" TERM 5
    # the gateway first: it lets the requests in progress finish
    for s in gateway mapper validator publisher; do
        [[ -n "${SVC_PID[$s]:-}" ]] && stop_pid "${SVC_PID[$s]}" TERM 10
    done
    if [[ -n "$KAFKA_FD" ]]; then
        exec {KAFKA_FD}>&- # its stdin closes: it stops by itself
    fi
    stop_pid "$POLL_PID" TERM 5
    stop_pid "$KAFKA_PID" TERM 5
    stop_pid "$REDIS_PID" TERM 5
    stop_pid "$PG_PID" QUIT 10 # immediate shutdown: the data is disposable
    if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then
        echo "bench_gateway: logs and data kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tails of the logs, on a failure
show_logs() {
    local f
    for f in "$TMP"/*.log "$TMP/pg/log" "$TMP/nginx/error.log"; do
        [[ -s "$f" ]] || continue
        echo "---- last lines of $f" >&2
        tail -n 15 "$f" >&2
    done
}

fail() {
    echo "bench_gateway: $*" >&2
    show_logs
    exit 1
}

# cpu_ticks PID: utime + stime so far (clock ticks), 0 when gone
cpu_ticks() {
    local line f
    read -r line 2>/dev/null <"/proc/$1/stat" || {
        echo x # gone
        return
    }
    read -r -a f <<<"${line##*) }"
    echo "$((f[11] + f[12]))"
}

# tree_ticks PID: CPU ticks of PID and of its children alive now (x when PID is gone)
tree_ticks() {
    local p t total kids=()
    total=$(cpu_ticks "$1")
    [[ "$total" != x ]] || {
        echo x
        return
    }
    if [[ -r "/proc/$1/task/$1/children" ]]; then
        read -r -a kids <"/proc/$1/task/$1/children" || true
    fi
    for p in "${kids[@]}"; do
        t=$(cpu_ticks "$p")
        [[ "$t" == x ]] || total=$((total + t))
    done
    echo "$total"
}

# pg_ticks: CPU ticks of the postmaster and its children alive now (the services keep
# their connections, so their backends live through the benchmark)
pg_ticks() { tree_ticks "$PG_PID"; }

# cpu_snapshot: "gateway mapper validator publisher broker redis postgres" ticks
CPU_NAMES=(sluice-gateway sluice-mapper sluice-validator sluice-publisher broker redis postgres)
cpu_snapshot() {
    echo "$(cpu_ticks "${SVC_PID[gateway]}") $(cpu_ticks "${SVC_PID[mapper]}")" \
        "$(cpu_ticks "${SVC_PID[validator]}") $(cpu_ticks "${SVC_PID[publisher]}")" \
        "$(cpu_ticks "$KAFKA_PID") $(cpu_ticks "$REDIS_PID") $(pg_ticks)"
}

q() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# poll_q SQL: ANSWER, the rows of one query ('|' between columns), from one psql that
# every poll shares (as bench_distributed.sh: no psql and backend forked a poll)
poll_q() {
    local line
    if ((POLL_PID == 0)) || ! alive "$POLL_PID"; then
        coproc POLL { exec "$PSQL" -X -q -A -t -F '|' 2>&1; } # sets POLL_PID
    fi
    printf '%s;\nSELECT %s;\n' "$1" "'-- end of answer'" >&"${POLL[1]}" || return 1
    ANSWER=
    while IFS= read -r -t 60 line <&"${POLL[0]}"; do
        [[ "$line" == "-- end of answer" ]] && return 0
        [[ "$line" == ERROR:* ]] && return 1
        ANSWER+=${ANSWER:+$'\n'}$line
    done
    return 1
}

# ---- PostgreSQL 15 (as tests/integration/pg_server.h starts it) ----------
mkdir "$TMP/pg"
[[ $EUID -eq 0 ]] && chown postgres: "$TMP/pg"
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$TMP/pg/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$TMP/initdb.out" 2>&1 || fail "initdb failed: $(tail -n 5 "$TMP/initdb.out")"
for _ in 1 2 3; do
    PG_PORT=$(free_port) || fail "no free port on 127.0.0.1"
    if "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$TMP/pg -c max_connections=$PG_MAXCONN$PG_DURABILITY" \
        start >"$TMP/pg_ctl.out" 2>&1; then
        PG_PID=$(head -n 1 "$TMP/pg/data/postmaster.pid")
        break
    fi
    [[ -s "$TMP/pg/data/postmaster.pid" ]] && stop_pid "$(head -n 1 "$TMP/pg/data/postmaster.pid")" QUIT 10
done
[[ $PG_PID -gt 0 ]] || fail "PostgreSQL did not start"
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=postgres
PG_URL="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
PG_VERSION=$(q -c 'SHOW server_version')
echo "== PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (PID $PG_PID; fsync, synchronous_commit, full_page_writes $([[ -n "$PG_DURABILITY" ]] && echo off || echo "on: --durable"))"

# ---- Redis ----------------------------------------------------------------
for _ in 1 2 3 4 5; do
    REDIS_PORT=$(free_port) || fail "no free port on 127.0.0.1"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$TMP/redis" --daemonize no >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_port "$REDIS_PID" "$REDIS_PORT" 5 && break
    stop_pid "$REDIS_PID" TERM 5
    REDIS_PID=0
done
[[ $REDIS_PID -gt 0 ]] || fail "redis-server did not start"
echo "== $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$REDIS_PORT (PID $REDIS_PID; no persistence)"

# ---- the mock Kafka broker; its stdin is ours, so it dies with this script --
TOPICS=()
for t in sluice.tickets:1 sluice.files:2 "sluice.records.raw:$PARTS" "sluice.records.mapped:$PARTS" \
    "sluice.records.valid:$PARTS" "sluice.records.rejected:$PARTS" sluice.runs:2 sluice.dead:1; do
    TOPICS+=(--topic "$t")
done
mkfifo "$TMP/kafka.in"
"$MOCK" "${TOPICS[@]}" <"$TMP/kafka.in" >"$TMP/kafka.out" 2>"$TMP/kafka.log" &
KAFKA_PID=$!
exec {KAFKA_FD}>"$TMP/kafka.in"
BROKERS=
for ((i = 0; i < 150; i++)); do
    alive "$KAFKA_PID" || fail "the mock Kafka broker exited"
    BROKERS=$(head -n 1 "$TMP/kafka.out")
    [[ -n "$BROKERS" ]] && break
    sleep 0.1
done
[[ -n "$BROKERS" ]] || fail "the mock Kafka broker printed no bootstrap servers in 15 s"
echo "== mock Kafka broker (librdkafka's mock cluster) at $BROKERS (PID $KAFKA_PID; records topics: $PARTS partitions)"

# ---- the services ---------------------------------------------------------
SECRET=whsec_$(head -c 24 /dev/urandom | base64)
ADMIN=bench-admin-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SLUICE_KAFKA_BROKERS=$BROKERS
export SLUICE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export SLUICE_POSTGRES_URL=$PG_URL
export SLUICE_LOG_LEVEL=info
export SLUICE_METRICS_ADDR=off # several services on one host
export SLUICE_BENCH_WEBHOOK_SECRET=$SECRET # the job names it: "${env:SLUICE_BENCH_WEBHOOK_SECRET}"
unset SLUICE_DESTINATION_URL SLUICE_TOPIC_PREFIX SLUICE_KAFKA_CONFIG SLUICE_GROUP SLUICE_ADMIN_TOKEN
[[ -z "$KAFKA_CONFIG" ]] || export SLUICE_KAFKA_CONFIG=$KAFKA_CONFIG
echo "== the services: sluice-mapper, sluice-validator, sluice-publisher (SLUICE_KAFKA_CONFIG=${KAFKA_CONFIG:-none}), sluice-gateway"
for s in mapper validator publisher; do
    "$BUILD/sluice-$s" >"$TMP/$s.log" 2>&1 &
    SVC_PID[$s]=$!
done
for _ in 1 2 3; do
    GW_PORT=$(free_port) || fail "no free port on 127.0.0.1"
    env -u SLUICE_KAFKA_CONFIG SLUICE_HTTP_ADDR="127.0.0.1:$GW_PORT" SLUICE_ADMIN_TOKEN="$ADMIN" \
        "$BUILD/sluice-gateway" >"$TMP/gateway.log" 2>&1 &
    SVC_PID[gateway]=$!
    wait_port "${SVC_PID[gateway]}" "$GW_PORT" 30 && break
    stop_pid "${SVC_PID[gateway]}" TERM 10
    unset "SVC_PID[gateway]"
done
[[ -n "${SVC_PID[gateway]:-}" ]] || fail "sluice-gateway did not start"
GW=http://127.0.0.1:$GW_PORT
for ((i = 0; i < 300; i++)); do
    code=$(curl -s -o "$TMP/readyz.json" -w '%{http_code}' --max-time 10 "$GW/readyz" || true)
    [[ "$code" == 200 ]] && break
    alive "${SVC_PID[gateway]}" || fail "sluice-gateway exited"
    sleep 0.1
done
[[ "$code" == 200 ]] || fail "$GW/readyz is $code after 30 s: $(cat "$TMP/readyz.json" 2>/dev/null)"
echo "== sluice-gateway at $GW (PID ${SVC_PID[gateway]}): ready"

# check_services: every service still runs
check_services() {
    local s
    for s in "${SERVICES[@]}"; do
        alive "${SVC_PID[$s]}" || fail "sluice-$s (PID ${SVC_PID[$s]}) exited"
    done
}

# ---- the job: one contact a delivery, into the table $TABLE --------------
cat >"$TMP/job.json" <<EOF
{"name": "$JOB_ID", "source": {"url": "contacts.json", "format": "json"},
 "target": {"object": "contacts", "key": ["id"], "attributes": {
   "id": {"type": "text", "required": true}, "name": {"type": "text"},
   "email": {"type": "text"}}},
 "mapping": {"id": "id", "name": "name", "email": "email"},
 "destination": {"type": "postgres", "table": "$TABLE"},
 "webhook": {"secret": "\${env:SLUICE_BENCH_WEBHOOK_SECRET}"}}
EOF
code=$(curl -s -o "$TMP/job.out" -w '%{http_code}' --max-time 30 -X POST \
    -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    --data-binary "@$TMP/job.json" "$GW/v1/jobs" || true)
[[ "$code" == 201 ]] || fail "POST /v1/jobs answered $code (want 201): $(cat "$TMP/job.out" 2>/dev/null)"
echo "== job $JOB_ID created through POST /v1/jobs: $(cat "$TMP/job.out")"
URL=$GW/v1/jobs/$JOB_ID/webhook

# gen FILE [ARGS...]: signed deliveries, timestamp now (gen_webhooks.py)
gen() {
    local out=$1
    shift
    "$PYTHON" "$GENPY" --secret "$SECRET" "$@" >"$out" || fail "gen_webhooks.py failed"
}

# ---- warm-up: one delivery through the whole pipeline (the destination table made,
# consumer groups formed, connections opened); its record is c-000000000 ----------
WARM_ID=c-000000000
gen "$TMP/data/warmup.tsv" --first 0 --count 1 --prefix msg_warmup_
IFS=$'\t' read -r w_id w_ts w_sig w_body <"$TMP/data/warmup.tsv"
printf '%s' "$w_body" >"$TMP/data/warmup.json"
code=$(curl -s -o "$TMP/warmup.out" -w '%{http_code}' --max-time 30 -X POST \
    -H 'Content-Type: application/json' -H "webhook-id: $w_id" -H "webhook-timestamp: $w_ts" \
    -H "webhook-signature: $w_sig" --data-binary "@$TMP/data/warmup.json" "$URL" || true)
[[ "$code" == 202 ]] || fail "the warm-up delivery answered $code (want 202): $(cat "$TMP/warmup.out" 2>/dev/null)"
echo "== warm-up delivery: 202 $(cat "$TMP/warmup.out")"
WARM_RUN=$(sed -n 's/.*"run_id" *: *"\([^"]*\)".*/\1/p' "$TMP/warmup.out")
for ((i = 0; i < 600; i++)); do
    if [[ "$(q -c "SELECT to_regclass('$TABLE') IS NOT NULL")" == t ]] &&
        [[ "$(q -c "SELECT count(*) FROM $TABLE WHERE id = '$WARM_ID'")" == 1 ]]; then
        break
    fi
    ((i % 50)) || check_services
    sleep 0.1
done
[[ "$(q -c "SELECT to_regclass('$TABLE') IS NOT NULL")" == t ]] ||
    fail "the warm-up record did not reach $TABLE in 60 s"
echo "   its record is in $TABLE after $(awk -v i="$i" 'BEGIN { printf "%.1f", i / 10 }') s"

# ---- wrk ------------------------------------------------------------------
# children_s: CHILDREN_S, the CPU seconds (user + system) of the children this shell has
# waited for (bash's times; not to be called in $(...): a subshell's children are its own)
children_s() {
    times >"$TMP/times.out"
    CHILDREN_S=$(awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%.3f", t }' "$TMP/times.out")
}

# run_wrk NAME URL [SERVER_PID [AT_START AT_END]]: wrk with the settings and a freshly
# signed request file (the same ids and bodies each time: only timestamps and signatures
# differ); sets RES[NAME.<key>] from the script's WRK_RESULT line, STATUS[NAME], and the
# CPU seconds of wrk (WRK_CPU[NAME]) and of SERVER_PID with its children (SRV_CPU[NAME])
# while requests are sent. wrk's script reads the whole request file first (seconds of
# CPU for 500,000 lines) once a thread, starting each thread after its init, and counts
# --duration from when all are started: then (wrk has its threads beside its main one)
# the traffic starts, and what wrk used before is left out.
# AT_START and AT_END: commands run then (the gateway's CPU and Redis snapshots).
declare -A RES=() WRK_CPU=() SRV_CPU=()
run_wrk() {
    local name=$1 url=$2 srv=${3:-0} at_start=${4:-:} at_end=${5:-:} line kv c0 c1 s0 s1 w0 k
    local tasks=()
    gen "$TMP/data/requests.tsv" --first 1 --count "$REQUESTS"
    echo "-- $name: wrk -t$THREADS -c$CONNS -d${DURATION}s --timeout ${WRK_TIMEOUT}s -s wrk_webhook.lua $url ($REQUESTS signed deliveries)"
    LOAD[$name]=$(cut -d' ' -f1 /proc/loadavg)
    children_s
    c0=$CHILDREN_S
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout "${WRK_TIMEOUT}s" -s "$LUA" "$url" \
        -- "$TMP/data/requests.tsv" "$THREADS" >"$TMP/wrk-$name.out" 2>&1 &
    WRK_PID=$!
    for ((k = 0; k < 12000; k++)); do # its script's init() done: up to 4 minutes
        tasks=("/proc/$WRK_PID/task/"*)
        ((${#tasks[@]} > THREADS)) && break
        alive "$WRK_PID" || break
        sleep 0.02
    done
    w0=$(cpu_ticks "$WRK_PID")
    [[ "$w0" != x ]] || w0=0
    s0=$(tree_ticks "$srv")
    $at_start
    T0[$name]=$(now)
    wait "$WRK_PID" || fail "wrk failed: $(tail -n 5 "$TMP/wrk-$name.out")"
    WRK_PID=0
    T_END[$name]=$(now)
    s1=$(tree_ticks "$srv")
    $at_end
    children_s
    c1=$CHILDREN_S
    WRK_CPU[$name]=$(awk -v a="$c0" -v b="$c1" -v w="$w0" -v tk="$TICK" 'BEGIN { printf "%.3f", b - a - w / tk }')
    SRV_CPU[$name]=$(awk -v a="$s0" -v b="$s1" -v tk="$TICK" \
        'BEGIN { printf "%.3f", (a == "x" || b == "x" ? 0 : (b - a) / tk) }')
    line=$(grep -m 1 '^WRK_RESULT ' "$TMP/wrk-$name.out") ||
        fail "wrk printed no WRK_RESULT line: $(tail -n 5 "$TMP/wrk-$name.out")"
    for kv in ${line#WRK_RESULT }; do
        RES[$name.${kv%%=*}]=${kv#*=}
    done
    STATUS[$name]=$(sed -n 's/^WRK_STATUS //p' "$TMP/wrk-$name.out")
    echo "   ${RES[$name.requests]} answers in ${RES[$name.duration_s]} s: ${RES[$name.rps]} req/s," \
        "p50 ${RES[$name.p50_ms]} ms, p99 ${RES[$name.p99_ms]} ms, max ${RES[$name.max_ms]} ms;" \
        "status ${STATUS[$name]:-none}; errors connect ${RES[$name.errors_connect]}" \
        "read ${RES[$name.errors_read]} write ${RES[$name.errors_write]} timeout ${RES[$name.errors_timeout]}"
}
declare -A LOAD=() T0=() T_END=() STATUS=()

# ---- nginx: the same requests answered 202 by nginx itself ---------------
NGINX_PORT=$(free_port) || fail "no free port on 127.0.0.1"
cat >"$TMP/nginx/nginx.conf" <<EOF
# the ceiling of HTTP here: nginx answering every request 202 without work
worker_processes $NCPU;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    # a connection is kept as long as wrk keeps it, as the gateway does (nginx's
    # default closes it after 1000 requests)
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/nginx/client_body;
    default_type application/json;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { return 202 '{"ok":true}'; }
    }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!
wait_port "$NGINX_PID" "$NGINX_PORT" 10 || fail "nginx did not start on 127.0.0.1:$NGINX_PORT"
echo "== nginx $(nginx -v 2>&1 | sed 's|.*nginx/||') at 127.0.0.1:$NGINX_PORT (PID $NGINX_PID; $NCPU workers)"
run_wrk nginx "http://127.0.0.1:$NGINX_PORT/v1/jobs/$JOB_ID/webhook" "$NGINX_PID"
stop_pid "$NGINX_PID" TERM 10 # its cores are the gateway's now
NGINX_PID=0

# ---- libmicrohttpd alone: the gateway's HTTP library, suspending and resuming
# every request as the gateway does, answering 202 without work (mhd_202.c)
MHD_PORT=$(free_port) || fail "no free port on 127.0.0.1"
"$MHD202" "$MHD_PORT" >"$TMP/mhd_202.log" 2>&1 &
MHD_PID=$!
wait_port "$MHD_PID" "$MHD_PORT" 10 || fail "mhd_202 did not start on 127.0.0.1:$MHD_PORT"
echo "== mhd_202 (libmicrohttpd $(pkg-config --modversion libmicrohttpd 2>/dev/null || echo '?'), suspend/resume, 202) at 127.0.0.1:$MHD_PORT (PID $MHD_PID)"
run_wrk mhd "http://127.0.0.1:$MHD_PORT/v1/jobs/$JOB_ID/webhook" "$MHD_PID"
stop_pid "$MHD_PID" TERM 10
MHD_PID=0

# ---- the gateway ------------------------------------------------------------
check_services
GW_LOG_LINES0=$(wc -l <"$TMP/gateway.log")
redis_stats() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO commandstats 2>/dev/null | tr -d '\r' || true; }
gw_start() {
    redis_stats >"$TMP/redis-stats.a"
    CPU_A=$(cpu_snapshot)
}
gw_end() {
    CPU_B=$(cpu_snapshot)
    redis_stats >"$TMP/redis-stats.b"
}
run_wrk gateway "$URL" "${SVC_PID[gateway]}" gw_start gw_end
WRK_202=${RES[gateway.s202]}
WRAPPED=${RES[gateway.wrapped]}
MISSED=0
if ((WRAPPED > 0)); then
    echo "   WARNING: wrk sent $WRAPPED requests again after its $REQUESTS deliveries (replays," \
        "answered 200): raise --requests" >&2
    MISSED=1
fi

# ---- the destination catching up -------------------------------------------
# Acknowledged: the deliveries the gateway answered 202 (its log; each is one record here).
# wrk's 202 count falls short of it by the requests in flight when wrk stopped (up to one
# a connection): the gateway still answered them 202 and their records are in Kafka. The
# deliveries are rows of streaming runs (one a second); a delivery answered 503 whose rows
# the gateway kept is sent again when its run closes, and shows in the runs' counts (and
# in the destination) beyond the acknowledged. Done when the destination holds at least
# every acknowledged record and no webhook run is queued or running.
sleep 1 # the answers in flight when wrk stopped are logged
GW_202=$(tail -n +"$((GW_LOG_LINES0 + 1))" "$TMP/gateway.log" | grep -c "POST /v1/jobs/$JOB_ID/webhook -> 202" || true)
ACKED=$GW_202
# answers the gateway could not give: wrk closed the connection while the delivery waited for
# Kafka (its records were taken: the sender would retry and be answered 200, a duplicate)
GW_GONE=$(tail -n +"$((GW_LOG_LINES0 + 1))" "$TMP/gateway.log" | grep -c "POST /v1/jobs/$JOB_ID/webhook -> 0 by" || true)
echo "-- waiting for $TABLE to hold every acknowledged record ($ACKED answered 202; wrk saw $WRK_202)"
start=$SECONDS next=30 last=-1 last_change=$SECONDS PEAK_CONN=0 DIED=
while :; do
    poll_q "SELECT (SELECT count(*) FROM $TABLE WHERE id <> '$WARM_ID'),
                   count(*) FILTER (WHERE status IN ('queued', 'running')),
                   (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                   coalesce(sum((counts->>'read')::bigint) FILTER (WHERE status <> 'failed'), 0)
            FROM sluice_runs WHERE job_id = '$JOB_ID' AND trigger = 'webhook'
            AND id::text <> '$WARM_RUN'" ||
        fail "cannot poll $TABLE and sluice_runs: $ANSWER"
    T_SEEN=$(now)
    IFS='|' read -r DEST PENDING NCONN RUN_ROWS <<<"$ANSWER"
    ((NCONN > PEAK_CONN)) && PEAK_CONN=$NCONN
    ((DEST >= ACKED && PENDING == 0)) && break
    # a service that exits ends the wait: the report says which, and what it logged last
    for s in "${SERVICES[@]}"; do
        alive "${SVC_PID[$s]}" && continue
        DIED+="sluice-$s (PID ${SVC_PID[$s]}) exited: $(grep -i -E '\b(error|fatal)\b' "$TMP/$s.log" |
            tail -n 2 | sed -E 's/^[0-9TZ:.+-]+ +//' | tr '\n' ' ')"$'\n'
    done
    if [[ -n "$DIED" ]]; then
        echo "   ERROR: a service exited while $TABLE held $DEST of $ACKED records: giving up" >&2
        break
    fi
    if ((DEST != last)); then
        last=$DEST last_change=$SECONDS
    fi
    if ((PENDING == 0 && SECONDS - last_change >= 15)); then
        echo "   WARNING: no run pending and $TABLE holds $DEST of $ACKED records for 15 s: giving up" >&2
        break
    fi
    if ((SECONDS - last_change >= 300)); then
        echo "   WARNING: $TABLE stuck at $DEST of $ACKED records for 300 s ($PENDING runs pending): giving up" >&2
        break
    fi
    if ((SECONDS - start > TIMEOUT)); then
        echo "   WARNING: $TABLE holds $DEST of $ACKED records after ${TIMEOUT}s (BENCH_TIMEOUT): giving up" >&2
        break
    fi
    if ((SECONDS - start >= next)); then
        echo "   ... ${next}s: $DEST of $ACKED records, $PENDING runs pending"
        next=$((next + 30))
    fi
    sleep 0.5
done
CPU_C=$(cpu_snapshot)
# the last record visible: the publisher's finish time of the last successful run is
# exact; the poll only says when we saw it
T_LAST=$(q -c "SELECT coalesce(extract(epoch FROM max(finished_at))::text, '')
               FROM sluice_runs WHERE job_id = '$JOB_ID' AND trigger = 'webhook'
               AND status IN ('succeeded', 'completed_with_errors') AND id::text <> '$WARM_RUN'")
[[ -n "$T_LAST" ]] && awk -v a="$T_LAST" -v b="$T_SEEN" 'BEGIN { exit !(a <= b) }' || T_LAST=$T_SEEN
E2E_S=$(awk -v a="${T0[gateway]}" -v b="$T_LAST" 'BEGIN { printf "%.2f", b - a }')
CATCHUP_S=$(awk -v a="${T_END[gateway]}" -v b="$T_LAST" 'BEGIN { printf "%.2f", (b > a ? b - a : 0) }')
RUNS_BY_STATUS=$(q -F '=' -c "SELECT status, count(*) FROM sluice_runs WHERE job_id = '$JOB_ID'
                              AND trigger = 'webhook' GROUP BY status ORDER BY status" | tr '\n' ' ')
FAILED_REASONS=$(q -F ' x ' -c "SELECT count(*), left(coalesce(reason, '(none)'), 120) FROM sluice_runs
                                WHERE job_id = '$JOB_ID' AND trigger = 'webhook' AND status = 'failed'
                                GROUP BY 2 ORDER BY 1 DESC LIMIT 5")
DUP_IDS=$(q -c "SELECT count(*) - count(DISTINCT id) FROM $TABLE")

# what the gateway logged while wrk ran and after: warnings and errors by message
GW_WARN=$(tail -n +"$((GW_LOG_LINES0 + 1))" "$TMP/gateway.log" | grep -i -E '\b(warn|warning|error|fatal)\b' || true)
GW_WARN_N=$(grep -c . <<<"$GW_WARN" || true)
SVC_WARN=""
for s in mapper validator publisher; do
    n=$(grep -c -i -E '\b(warn|warning|error|fatal)\b' "$TMP/$s.log" || true)
    SVC_WARN+="sluice-$s $n, "
done

# ---- the report -------------------------------------------------------------
echo
echo "Webhook benchmark: $REQUESTS signed deliveries generated, wrk -t$THREADS -c$CONNS -d${DURATION}s" \
    "--timeout ${WRK_TIMEOUT}s, $NCPU cores, $(uname -m), PostgreSQL $PG_VERSION, $PARTS partitions a records topic"
printf '%-22s %10s %10s %10s %10s %10s %9s %6s\n' what requests req/s p50_ms p99_ms max_ms non-2xx load
declare -A LABEL=([nginx]="nginx (return 202)" [mhd]="mhd_202 (MHD, 202)" [gateway]="sluice-gateway")
for n in nginx mhd gateway; do
    printf '%-22s %10s %10s %10s %10s %10s %9s %6s\n' "${LABEL[$n]}" "${RES[$n.requests]}" "${RES[$n.rps]}" "${RES[$n.p50_ms]}" \
        "${RES[$n.p99_ms]}" "${RES[$n.max_ms]}" "${RES[$n.non2xx]}" "${LOAD[$n]}"
done
echo "status (nginx):   ${STATUS[nginx]:-none}; wrk errors: connect ${RES[nginx.errors_connect]}," \
    "read ${RES[nginx.errors_read]}, write ${RES[nginx.errors_write]}, timeout ${RES[nginx.errors_timeout]}"
echo "status (gateway): ${STATUS[gateway]:-none}; wrk errors: connect ${RES[gateway.errors_connect]}," \
    "read ${RES[gateway.errors_read]}, write ${RES[gateway.errors_write]}, timeout ${RES[gateway.errors_timeout]};" \
    "p90 ${RES[gateway.p90_ms]} ms, p99.9 ${RES[gateway.p999_ms]} ms; wrapped $WRAPPED"
echo "records acked (202):        $ACKED (the gateway's answers 202; wrk read $WRK_202:" \
    "$((GW_202 - WRK_202)) were in flight when wrk stopped); $GW_GONE more taken whose answer wrk" \
    "did not wait for; rows of the runs: ${RUN_ROWS:-?}"
echo "records in destination:     $DEST (table $TABLE, the warm-up record not counted; $DUP_IDS duplicate ids)"
awk -v a="$ACKED" -v d="$DEST" -v e="$E2E_S" -v c="$CATCHUP_S" 'BEGIN {
    printf "records/s end to end:       %.1f (%d records in %.2f s from the first request to the last record visible; %.2f s after wrk ended)%s\n",
        (e > 0 ? d / e : 0), d, e, c, (d < a ? "; INCOMPLETE: the wait ended first" : "") }'
echo "webhook runs by status:     ${RUNS_BY_STATUS:-none}(the warm-up's included)"
echo "PostgreSQL client connections: at most $PEAK_CONN seen while catching up (max_connections $(q -c 'SHOW max_connections'))"
[[ -z "$DIED" ]] || printf 'SERVICE EXITED: %s' "$DIED"
[[ -z "$FAILED_REASONS" ]] || sed 's/^/  failed: /' <<<"$FAILED_REASONS"
echo "log lines with warn/error:  sluice-gateway $GW_WARN_N (during and after wrk), ${SVC_WARN%, }"
if ((GW_WARN_N > 0)); then
    echo "  gateway's most frequent (timestamps and ids cut):"
    sed -E 's/^[0-9TZ:.+ -]+//; s/[0-9a-f]{8}-[0-9a-f-]{27}/<id>/g; s/request [0-9a-f]{32}/request <rid>/; s/msg_bench_[0-9]+/<webhook-id>/g' <<<"$GW_WARN" |
        sort | uniq -c | sort -rn | head -n 5 | sed 's/^/  /'
fi
awk -v g="${RES[gateway.rps]}" -v n="${RES[nginx.rps]}" -v m="${RES[mhd.rps]}" -v p="${RES[gateway.p99_ms]}" \
    -v tr="$TARGET_RATIO" -v tp="$TARGET_P99_MS" -v a="$ACKED" -v d="$DEST" -v rr="${RUN_ROWS:-0}" \
    -v dup="$DUP_IDS" '
    BEGIN {
        ok = 1
        r = (n > 0 ? g / n : 0)
        printf "gateway/nginx req/s: %.3fx (target >= %sx: %s)\n", r, tr, (r >= tr ? "met" : "MISSED"); ok = ok && r >= tr
        printf "gateway/mhd_202 req/s: %.3fx (mhd_202/nginx: %.3fx; no target: what the HTTP library leaves)\n", (m > 0 ? g / m : 0), (n > 0 ? m / n : 0)
        printf "gateway p99: %s ms (target < %s ms: %s)\n", p, tp, (p < tp ? "met" : "MISSED"); ok = ok && p < tp
        good = d >= a && d == rr && dup == 0
        printf "every acknowledged record in the destination, once, and every row of the runs: %s\n",
            (good ? "yes (" d " >= " a " acked; " rr " rows)" : "NO (" d " in destination, " a " acked, " rr " rows of the runs, " dup " duplicates)")
        ok = ok && good
        exit ok ? 0 : 1
    }' || MISSED=1

echo
echo "CPU seconds (utime+stime from /proc/PID/stat) and peak RSS (VmHWM):"
printf '%-18s %10s %10s %13s\n' process during_wrk catching_up peak_RSS_MiB
read -r -a ca <<<"$CPU_A"
read -r -a cb <<<"$CPU_B"
read -r -a cc <<<"$CPU_C"
PIDS=("${SVC_PID[gateway]}" "${SVC_PID[mapper]}" "${SVC_PID[validator]}" "${SVC_PID[publisher]}" \
    "$KAFKA_PID" "$REDIS_PID" "$PG_PID")
for i in "${!CPU_NAMES[@]}"; do
    h=$(awk '/^VmHWM:/ { print $2 }' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0)
    [[ "${CPU_NAMES[$i]}" == postgres ]] && h=0
    awk -v n="${CPU_NAMES[$i]}" -v a="${ca[$i]}" -v b="${cb[$i]}" -v c="${cc[$i]}" -v tk="$TICK" -v h="$h" '
        function d(x, y) { return (x == "x" || y == "x" || y < x) ? "-" : sprintf("%.2f", (y - x) / tk) }
        BEGIN { printf "%-18s %10s %10s %13s\n", n, d(a, b), d(b, c), (h > 0 ? sprintf("%.1f", h / 1024) : "-") }'
done
echo "(-: the process was gone, or for postgres backends that had exited took their count along;"
echo " postgres: the postmaster and the backends alive at each snapshot; wrk ran on the same"
echo " $NCPU cores; load: the 1-minute load average before each wrk run)"

# ---- the cores' budget: CPU a request of wrk, of the server and of what is behind it --
echo
echo "CPU a request (microseconds of CPU during wrk over wrk's answers; wrk's own from the shell's times):"
# PIPE_US: the processes behind the gateway a request, in all; PIPE_PARTS: each of them
IFS=$'\t' read -r PIPE_US PIPE_PARTS < <(awk -v req="${RES[gateway.requests]}" -v tk="$TICK" \
    -v a="${ca[*]:1}" -v b="${cb[*]:1}" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    split("mapper validator publisher broker redis postgres", n, " ")
    t = 0; parts = ""
    for (i = 1; i <= 6; i++) {
        v = (x[i] != "x" && y[i] != "x" && y[i] >= x[i] && req > 0) ? (y[i] - x[i]) / tk * 1e6 / req : 0
        t += v
        parts = parts sprintf("%s%s %.1f", (i > 1 ? ", " : ""), n[i], v)
    }
    printf "%.1f\t%s\n", t, parts }')
printf '%-22s %8s %8s   %s\n' what wrk server "behind the server (the gateway's pipeline)"
for n in nginx mhd gateway; do
    awk -v l="${LABEL[$n]}" -v w="${WRK_CPU[$n]}" -v c="${SRV_CPU[$n]}" -v r="${RES[$n.requests]}" \
        -v n="$n" -v p="$PIPE_US" -v pp="$PIPE_PARTS" 'BEGIN {
        printf "%-22s %8.1f %8.1f   %s\n", l, (r > 0 ? w * 1e6 / r : 0), (r > 0 ? c * 1e6 / r : 0),
            (n == "gateway" ? p " (" pp ")" : "-") }'
done
# Redis's commands during wrk (INFO commandstats): calls and microseconds a request
awk -v r="${RES[gateway.requests]}" -F '[:=,]' '
    FNR == NR && /^cmdstat_/ { c0[$1] = $3; u0[$1] = $5; next }
    /^cmdstat_/ { c = $3 - c0[$1]; u = $5 - u0[$1]; if (c > 0) { calls[$1] = c; us[$1] = u; t += u } }
    END {
        if (r <= 0 || t <= 0) exit
        printf "Redis commands a request (INFO commandstats during wrk: calls and microseconds of execution a request; a script'"'"'s include the commands it calls):"
        n = 0
        for (k in us) order[++n] = k
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (us[order[j]] > us[order[i]]) { x = order[i]; order[i] = order[j]; order[j] = x }
        for (i = 1; i <= n && i <= 8; i++) { k = order[i]; sub("cmdstat_", "", k); printf "%s %s x%.2f %.1f us", (i > 1 ? "," : ""), k, calls[order[i]] / r, us[order[i]] / r }
        printf "\n" }' "$TMP/redis-stats.a" "$TMP/redis-stats.b"
awk -v n="${RES[nginx.rps]}" -v tr="$TARGET_RATIO" -v cores="$NCPU" -v r="${RES[gateway.requests]}" \
    -v w="${WRK_CPU[gateway]}" -v g="${SRV_CPU[gateway]}" -v p="$PIPE_US" -v m="${RES[mhd.requests]}" \
    -v mc="${SRV_CPU[mhd]}" 'BEGIN {
    if (n <= 0 || r <= 0) exit
    b = cores * 1e6 / (tr * n); wu = w * 1e6 / r; gu = g * 1e6 / r
    printf "budget at %sx nginx (%.0f req/s): %d cores give %.1f us a request; wrk (%.1f) and what is behind the gateway (%.1f) leave %.1f us for the gateway, which took %.1f", \
        tr, tr * n, cores, b, wu, p, b - wu - p, gu
    if (m > 0) printf " (mhd_202 answering 202 without work: %.1f)", mc * 1e6 / m
    printf "\n" }'

if [[ -n "$DIED" ]]; then
    show_logs
    exit 1
fi
if [[ $STRICT -eq 1 && $MISSED -ne 0 ]]; then
    exit 1
fi
exit 0
