#!/usr/bin/env bash
# Distributed-mode benchmark: the five services over a Kafka-protocol broker,
# Redis and PostgreSQL 15, all on loopback; `sluice submit --run` of the demo
# job (examples/stores/job.json) on N generated rows into a postgres destination,
# then the same again with --force (every row unchanged), as --pairs pairs (the table
# dropped before each further first run; the medians are reported); beside it, on the
# same PostgreSQL, (a) psql \copy + one INSERT ... ON CONFLICT DO UPDATE and (b) pgloader.
#
# Usage: tests/bench/bench_distributed.sh [--rows N] [--partitions P] [--partitioner NAME]
#                                          [--kafka-config K=V,...] [--scale STAGE=N,...]
#                                          [--pairs N] [--durable] [--no-baselines] [--strict]
#                                          [BUILD_DIR]
#   BUILD_DIR     where build/sluice, the services, tests/sluice-test-mock_kafka and
#                 tests/bench/gen_stores are (default ./build); this script builds nothing
#   --rows N      rows to generate (default 1000000)
#   --partitions  partitions of each records topic (default N/24000, at least 32: the mock
#                 broker keeps only about 5 MiB a partition, and a consumer lagging further
#                 loses records; the parser can be done with a file before the mapper has
#                 read a tenth of it, so a raw topic must hold the whole file, ~200 B a row,
#                 ~70 B lz4-compressed as the bus sends it)
#   --partitioner `keyed` (default): the services' own keys, or one of librdkafka's
#                 partitioners for every producer (SLUICE_KAFKA_CONFIG); it applies to
#                 tickets, files and runs only: the bus partitions record batches itself,
#                 by target key
#   --kafka-config librdkafka properties for every service (SLUICE_KAFKA_CONFIG), e.g.
#                 linger.ms=50; default fetch.wait.max.ms=20 (the mock broker holds a fetch
#                 that found nothing for all of fetch.wait.max.ms, 500 ms by default, even
#                 when records arrive meanwhile, where Kafka answers as they arrive: each
#                 stage that caught up would idle up to half a second); '' for none
#   --scale       instances of a stage (default 1 each), e.g. validator=2: each further one
#                 joins the stage's consumer group and is listed as STAGE.N (validator.2)
#   --pairs N     first run + re-run pairs (default 3): each further first run loads the
#                 table dropped again (with --force: the file is the last successful run's);
#                 the report gives the median of each, and every pair's figures; the CPU
#                 table the mean of the pairs
#   --durable     PostgreSQL with its default durability (fsync, synchronous_commit and
#                 full_page_writes on) instead of all three off, as the integration tests run it
#   --no-baselines  no (a), no (b): sluice's runs only, to compare sluice with itself
#   --strict      exit 1 when a target is missed or a count is wrong (default: report only)
# Environment: BENCH_TIMEOUT seconds a run may take (default 1800); BENCH_KEEP_TMP=1
#   keeps the temporary directory (logs, data); BENCH_PG_STATS=1 loads pg_stat_statements
#   and prints the statements that took most of PostgreSQL's time in each run; SLUICE_PG_BIN (default
#   /usr/lib/postgresql/15/bin); BENCH_NO_INSTALL=1: never apt-get install pgloader.
# Needs redis-server, psql and PostgreSQL 15's server; run as root it runs PostgreSQL as
# user postgres (runuser). Everything lives in a temporary directory and every process it
# started is stopped by PID on exit. See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
BUILD=./build
ROWS=1000000
PARTS=
PARTITIONER=keyed
KAFKA_EXTRA=fetch.wait.max.ms=20
STRICT=0
PAIRS=3
PG_DURABILITY=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
SCALE_ARG=
BASELINES=1
TIMEOUT=${BENCH_TIMEOUT:-1800}
PG_BIN=${SLUICE_PG_BIN:-/usr/lib/postgresql/15/bin}
STAGES=(fetcher parser mapper validator publisher)
declare -A SCALE=() # instances of each stage (1, or --scale's)
PG_STATS_OPTS=
[[ "${BENCH_PG_STATS:-0}" == 1 ]] &&
    PG_STATS_OPTS=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"

die() {
    echo "bench_distributed: $*" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --rows) [[ $# -ge 2 ]] || die "--rows needs a number"; ROWS=$2; shift ;;
    --rows=*) ROWS=${1#--rows=} ;;
    --partitions) [[ $# -ge 2 ]] || die "--partitions needs a number"; PARTS=$2; shift ;;
    --partitions=*) PARTS=${1#--partitions=} ;;
    --partitioner) [[ $# -ge 2 ]] || die "--partitioner needs a name"; PARTITIONER=$2; shift ;;
    --partitioner=*) PARTITIONER=${1#--partitioner=} ;;
    --kafka-config) [[ $# -ge 2 ]] || die "--kafka-config needs K=V,..."; KAFKA_EXTRA=$2; shift ;;
    --kafka-config=*) KAFKA_EXTRA=${1#--kafka-config=} ;;
    --scale) [[ $# -ge 2 ]] || die "--scale needs STAGE=N,..."; SCALE_ARG=$2; shift ;;
    --scale=*) SCALE_ARG=${1#--scale=} ;;
    --pairs) [[ $# -ge 2 ]] || die "--pairs needs a number"; PAIRS=$2; shift ;;
    --pairs=*) PAIRS=${1#--pairs=} ;;
    --strict) STRICT=1 ;;
    --durable) PG_DURABILITY= ;;
    --no-baselines) BASELINES=0 ;;
    -h | --help)
        sed -n '2,46p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $1" ;;
    *) BUILD=$1 ;;
    esac
    shift
done
# SERVICES: one name per process, the first instance of a stage by the stage's
# name, a further one as STAGE.N (validator.2): its binary is sluice-STAGE
SERVICES=()
for st in "${STAGES[@]}"; do SCALE[$st]=1; done
IFS=',' read -r -a scale_items <<<"${SCALE_ARG:-}"
for item in "${scale_items[@]}"; do
    st=${item%%=*} n=${item#*=}
    [[ -n "${SCALE[$st]:-}" && "$n" =~ ^[1-9]$ && "$item" == *=* ]] ||
        die "--scale wants STAGE=N (N 1..9, STAGE one of ${STAGES[*]}), not '$item'"
    SCALE[$st]=$n
done
for st in "${STAGES[@]}"; do
    SERVICES+=("$st")
    for ((i = 2; i <= SCALE[$st]; i++)); do SERVICES+=("$st.$i"); done
done
[[ "$ROWS" =~ ^[1-9][0-9]*$ && "$ROWS" -le 100000000 ]] || die "--rows must be 1..100000000, not '$ROWS'"
if [[ -z "$PARTS" ]]; then
    PARTS=$(((ROWS + 23999) / 24000))
    ((PARTS >= 32)) || PARTS=32
    ((PARTS <= 1000)) || PARTS=1000
fi
[[ "$PARTS" =~ ^[1-9][0-9]*$ && "$PARTS" -le 1000 ]] || die "--partitions must be 1..1000, not '$PARTS'"
[[ "$PARTITIONER" =~ ^(keyed|random|consistent|consistent_random|murmur2|murmur2_random|fnv1a|fnv1a_random)$ ]] ||
    die "--partitioner must be keyed or one of librdkafka's partitioners (random, murmur2, ...), not '$PARTITIONER'"
[[ "$PAIRS" =~ ^[1-9]$ ]] || die "--pairs must be 1..9, not '$PAIRS'"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TIMEOUT must be a number of seconds, not '$TIMEOUT'"

BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "build directory $BUILD does not exist"
SLUICE=$BUILD/sluice
GEN=$BUILD/tests/bench/gen_stores
MOCK=$BUILD/tests/sluice-test-mock_kafka
for exe in "$SLUICE" "$GEN" "$MOCK" "${STAGES[@]/#/$BUILD/sluice-}"; do
    [[ -x "$exe" ]] || die "$exe is missing: cmake --build $BUILD --target sluice_cli gen_stores" \
        "sluice-test-mock_kafka ${STAGES[*]/#/sluice-}"
done
for exe in "$PG_BIN/initdb" "$PG_BIN/pg_ctl"; do
    [[ -x "$exe" ]] || die "$exe is missing: apt-get install postgresql-15 (or set SLUICE_PG_BIN)"
done
command -v redis-server >/dev/null || die "redis-server is missing: apt-get install redis-server"
PSQL=$PG_BIN/psql
[[ -x "$PSQL" ]] || PSQL=$(command -v psql) || die "psql is missing: apt-get install postgresql-client"
if grep -q 'CMAKE_BUILD_TYPE:STRING=Debug' "$BUILD/CMakeCache.txt" 2>/dev/null ||
    grep -q 'SLUICE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "bench_distributed: warning: $BUILD is a Debug or sanitizer build; numbers will be low" >&2
fi
AS_PG=()
if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the user postgres (PostgreSQL refuses root)"
    AS_PG=(runuser -u postgres --)
fi
TICK=$(getconf CLK_TCK)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-dist.XXXXXX")
chmod 755 "$TMP" # user postgres must reach its directory below
mkdir -p "$TMP/data" "$TMP/blobs" "$TMP/redis"
declare -A SVC_PID=()
KAFKA_PID=0
KAFKA_FD=
REDIS_PID=0
PG_PID=0

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$? s
    set +e
    trap - EXIT INT TERM
    for s in "${SERVICES[@]}"; do
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
        echo "bench_distributed: logs and data kept in $TMP" >&2
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
    for f in "$TMP"/*.log "$TMP/pg/log"; do
        [[ -s "$f" ]] || continue
        echo "---- last lines of $f" >&2
        tail -n 15 "$f" >&2
    done
}

fail() {
    echo "bench_distributed: $*" >&2
    show_logs
    exit 1
}

# ticks_of STATFILE: utime + stime (clock ticks) and the parent PID, from /proc/PID/stat
# (fields after the command name, which may hold spaces: ppid is the 2nd, utime the 12th)
ticks_of() {
    local line f
    read -r line 2>/dev/null <"$1" || return 1
    read -r -a f <<<"${line##*) }"
    echo "$((f[11] + f[12])) ${f[1]}"
}

# cpu_ticks PID: utime + stime so far, 0 when gone
cpu_ticks() {
    local t
    t=$(ticks_of "/proc/$1/stat") || t=0
    echo "${t%% *}"
}

# pg_sample: notes the CPU ticks of the postmaster and each of its children (backends
# come and go: sampled at every poll while a run goes on, a finished backend keeps its
# last count). Cheap, no subshell: the children come from /proc/PID/task/PID/children,
# else from a scan of /proc.
declare -A PG_SEEN=()
pg_sample() {
    local p line f kids=()
    if [[ -r "/proc/$PG_PID/task/$PG_PID/children" ]]; then
        read -r -a kids <"/proc/$PG_PID/task/$PG_PID/children" || true
        kids=("$PG_PID" "${kids[@]}")
    else
        for p in /proc/[0-9]*; do
            read -r line 2>/dev/null <"$p/stat" || continue
            read -r -a f <<<"${line##*) }"
            [[ "${p#/proc/}" == "$PG_PID" || "${f[1]}" == "$PG_PID" ]] && kids+=("${p#/proc/}")
        done
    fi
    for p in "${kids[@]}"; do
        read -r line 2>/dev/null <"/proc/$p/stat" || continue
        read -r -a f <<<"${line##*) }"
        PG_SEEN[$p]=$((f[11] + f[12]))
    done
}

# pg_ticks: CPU ticks of PostgreSQL's processes seen so far
pg_ticks() {
    local total=0 p
    pg_sample
    for p in "${!PG_SEEN[@]}"; do
        total=$((total + PG_SEEN[$p]))
    done
    echo "$total"
}

# cpu_snapshot: "fetcher parser mapper validator publisher broker redis postgres" ticks
cpu_snapshot() {
    local s out=()
    for s in "${SERVICES[@]}"; do
        out+=("$(cpu_ticks "${SVC_PID[$s]}")")
    done
    pg_sample # in this shell: $(pg_ticks) cannot keep what it saw
    out+=("$(cpu_ticks "$KAFKA_PID")" "$(cpu_ticks "$REDIS_PID")" "$(pg_ticks)")
    echo "${out[*]}"
}

q() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# poll_q SQL: ANSWER, the rows of one query ('|' between columns), from one psql
# that every poll shares (started by the first): a psql and the backend it forks
# for each poll took ~5 % of a core from the pipeline being measured
POLL_PID=0
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

# ---- the data -------------------------------------------------------------
CSV=$TMP/data/stores-$ROWS.csv
echo "== generating $ROWS rows into $CSV"
"$GEN" "$ROWS" >"$CSV" 2>"$CSV.expect" || fail "gen_stores failed: $(cat "$CSV.expect")"
BYTES=$(stat -c %s "$CSV")
EXPECT_PUB=$(sed -n 's/.* published=\([0-9]*\).*/\1/p' "$CSV.expect")
EXPECT_BAD=$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' "$CSV.expect")
EXPECT_DUP=$(sed -n 's/.* duplicate=\([0-9]*\).*/\1/p' "$CSV.expect")
echo "   $BYTES bytes ($(cat "$CSV.expect"))"
cp "$ROOT/examples/stores/stores.csv" "$TMP/data/warmup.csv"

# ---- PostgreSQL 15 (as tests/integration/pg_server.h starts it) ----------
mkdir "$TMP/pg"
[[ $EUID -eq 0 ]] && chown postgres: "$TMP/pg"
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$TMP/pg/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$TMP/initdb.out" 2>&1 || fail "initdb failed: $(tail -n 5 "$TMP/initdb.out")"
for _ in 1 2 3; do
    PG_PORT=$(free_port) || fail "no free port on 127.0.0.1"
    if "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$TMP/pg/data" -l "$TMP/pg/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$TMP/pg$PG_DURABILITY$PG_STATS_OPTS" \
        start >"$TMP/pg_ctl.out" 2>&1; then
        PG_PID=$(head -n 1 "$TMP/pg/data/postmaster.pid")
        break
    fi
    [[ -s "$TMP/pg/data/postmaster.pid" ]] && stop_pid "$(head -n 1 "$TMP/pg/data/postmaster.pid")" QUIT 10
done
[[ $PG_PID -gt 0 ]] || fail "PostgreSQL did not start"
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGDATABASE=postgres
PG_URL="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
echo "== PostgreSQL $(q -c 'SHOW server_version') on 127.0.0.1:$PG_PORT (PID $PG_PID; fsync, synchronous_commit, full_page_writes $([[ -n "$PG_DURABILITY" ]] && echo off || echo "on: --durable"))"
[[ -z "$PG_STATS_OPTS" ]] || q -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null

# ---- Redis ----------------------------------------------------------------
for _ in 1 2 3 4 5; do
    REDIS_PORT=$(free_port) || fail "no free port on 127.0.0.1"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$TMP/redis" --daemonize no >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        alive "$REDIS_PID" || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
            break 2
        fi
        sleep 0.05
    done
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
export SLUICE_KAFKA_BROKERS=$BROKERS
export SLUICE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export SLUICE_POSTGRES_URL=$PG_URL
export SLUICE_BLOB_DIR=$TMP/blobs
export SLUICE_FILE_DIRS=$TMP/data
export SLUICE_LOG_LEVEL=info
export SLUICE_METRICS_ADDR=off # several services on one host
unset SLUICE_DESTINATION_URL SLUICE_TOPIC_PREFIX SLUICE_KAFKA_CONFIG SLUICE_GROUP
KAFKA_CONFIG=$([[ "$PARTITIONER" == keyed ]] || echo "partitioner=$PARTITIONER")
KAFKA_CONFIG+=${KAFKA_EXTRA:+${KAFKA_CONFIG:+,}$KAFKA_EXTRA}
[[ -z "$KAFKA_CONFIG" ]] || export SLUICE_KAFKA_CONFIG=$KAFKA_CONFIG
echo "== the services: ${SERVICES[*]/#/sluice-} (SLUICE_KAFKA_CONFIG=${KAFKA_CONFIG:-none})"
for s in "${SERVICES[@]}"; do
    "$BUILD/sluice-${s%%.*}" >"$TMP/$s.log" 2>&1 &
    SVC_PID[$s]=$!
done

# check_services: every service still runs, and none was told that records it had not
# read yet are gone (the mock broker drops the oldest beyond ~5 MiB a partition; the
# run would then wait forever for them)
check_services() {
    local s lost
    for s in "${SERVICES[@]}"; do
        alive "${SVC_PID[$s]}" || fail "sluice-$s (PID ${SVC_PID[$s]}) exited"
        lost=$(grep -m 1 'Offset out of range' "$TMP/$s.log" || true)
        [[ -z "$lost" ]] || fail "the mock broker dropped records before sluice-$s read them (it keeps" \
            "only ~5 MiB a partition; try more --partitions): $lost"
    done
}

# write_job NAME CSV TABLE FILE: the demo job, reading CSV, publishing into TABLE
write_job() {
    sed -e "s|\"name\": *\"store-locations\"|\"name\": \"$1\"|" \
        -e "s|\"url\": *\"stores.csv\"|\"url\": \"file://$2\"|" \
        -e "s|^}\$|,\"destination\": {\"type\": \"postgres\", \"table\": \"$3\"}}|" \
        "$ROOT/examples/stores/job.json" >"$4"
    if ! grep -q "\"name\": \"$1\"" "$4" || ! grep -q "file://$2" "$4" ||
        ! grep -q "\"table\": \"$3\"" "$4"; then
        fail "could not derive $4 from examples/stores/job.json (its layout changed?)"
    fi
    "$SLUICE" check "$4" >/dev/null || fail "sluice check $4 failed"
}

# submit JOB [--force]: sets RUN_ID and T0 (the time just before submit)
submit() {
    local out job=$1
    shift
    T0=$(now)
    out=$("$SLUICE" submit "$job" --run "$@" 2>&1) || fail "sluice submit $job --run $* failed: $out"
    RUN_ID=$(sed -n 's/^run \([0-9a-f-]\{36\}\) requested$/\1/p' <<<"$out")
    [[ -n "$RUN_ID" ]] || fail "sluice submit printed no run id: $out"
}

# wait_final: polls sluice_runs until RUN_ID is final; sets R_* (status, counts) and T1
wait_final() {
    local row start=$SECONDS next=30
    while :; do
        poll_q "SELECT status, coalesce(counts->>'read', ''), coalesce(counts->>'published', ''),
                  coalesce(counts->>'created', ''), coalesce(counts->>'updated', ''),
                  coalesce(counts->>'unchanged', ''), coalesce(counts->>'rejected', ''),
                  coalesce(counts->>'duplicates', ''), coalesce(extract(epoch FROM finished_at)::text, ''),
                  coalesce(replace(reason, '|', '/'), '')
                  FROM sluice_runs WHERE id = '$RUN_ID'" || fail "cannot read sluice_runs: $ANSWER"
        row=$ANSWER
        T1=$(now)
        IFS='|' read -r R_STATUS R_READ R_PUB R_CREATED R_UPDATED R_UNCHANGED R_REJ R_DUP R_FIN R_REASON <<<"$row"
        [[ -n "$R_STATUS" && "$R_STATUS" != queued && "$R_STATUS" != running ]] && break
        (((SECONDS - start) % 5 == 0)) && check_services # greps: every 5 s
        pg_sample
        ((SECONDS - start <= TIMEOUT)) ||
            fail "run $RUN_ID is still '${R_STATUS:-missing}' after ${TIMEOUT}s (BENCH_TIMEOUT)"
        if ((SECONDS - start >= next)); then
            echo "   ... ${next}s, status ${R_STATUS:-missing}"
            next=$((next + 30))
        fi
        sleep 1
    done
    # the publisher's own finish time is exact; the poll only says when we saw it
    [[ -n "$R_FIN" ]] && T1=$R_FIN
}

# ---- warm-up: consumer groups formed, connections made, tables migrated ----
write_job bench-warmup "$TMP/data/warmup.csv" bench_warmup "$TMP/warmup.json"
echo "== warm-up: the demo's 25-row stores.csv through the services"
submit "$TMP/warmup.json"
wait_final
[[ "$R_STATUS" == completed_with_errors && "$R_READ" == 25 ]] ||
    fail "warm-up run $RUN_ID: status $R_STATUS, read $R_READ (want completed_with_errors, 25): $R_REASON"

# ---- the measured runs ------------------------------------------------------
JOB=$TMP/job.json
TABLE=bench_stores
write_job bench-distributed "$CSV" "$TABLE" "$JOB"
declare -A WALL=() CPU0=() CPU1=() LOAD=() SUMMARY=()
MISSED=0

# settle: the database done with what earlier work left it (the checkpoint writing the
# pages a load dirtied, autovacuum visiting the rows it inserted), as it is when a
# scheduled run comes hours after the last: a run does not pay for the one before it
settle() {
    local i
    q -c "CHECKPOINT" >/dev/null
    [[ "$(q -c "SELECT to_regclass('$TABLE') IS NOT NULL")" == t ]] &&
        q -c "VACUUM (ANALYZE) $TABLE" >/dev/null
    for ((i = 0; i < 600; i++)); do
        [[ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")" == 0 ]] &&
            break
        sleep 0.1
    done
    q -c "CHECKPOINT" >/dev/null
}

# sluice_run NAME [--force]
sluice_run() {
    local name=$1 force=${2:-}
    echo "-- $name: sluice submit job.json --run $force"
    settle
    sync
    LOAD[$name]=$(cut -d' ' -f1 /proc/loadavg)
    CPU0[$name]=$(cpu_snapshot)
    [[ -n "$PG_STATS_OPTS" ]] && q -c "SELECT pg_stat_statements_reset()" >/dev/null
    submit "$JOB" ${force:+"$force"}
    wait_final
    CPU1[$name]=$(cpu_snapshot)
    [[ -n "$PG_STATS_OPTS" ]] && pg_stats
    WALL[$name]=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.2f", b - a }')
    SUMMARY[$name]="status=$R_STATUS read=$R_READ published=$R_PUB created=$R_CREATED updated=$R_UPDATED unchanged=$R_UNCHANGED rejected=$R_REJ duplicates=$R_DUP"
    echo "   run $RUN_ID: ${WALL[$name]} s; ${SUMMARY[$name]}${R_REASON:+ reason=$R_REASON}"
    [[ "$R_STATUS" == failed ]] && fail "run $RUN_ID failed: $R_REASON"
    return 0
}

# pg_stats: the statements that took most of PostgreSQL's time since the last reset
pg_stats() {
    q -F ' | ' -c "SELECT round(total_exec_time::numeric / 1000, 2) AS s, calls, rows,
                   left(regexp_replace(query, '\s+', ' ', 'g'), 110)
                   FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12" |
        sed 's/^/   pg: /'
}

# expect WHAT GOT WANT
expect() {
    if [[ "$2" != "$3" ]]; then
        echo "   WARNING: $1 is $2, want $3" >&2
        MISSED=1
    fi
}

# the runs of pair P: first run P (pair 1: "first"; further: "firstP" on the table
# dropped again, --force since the file is the last successful run's), then re-run P
for ((p = 1; p <= PAIRS; p++)); do
    sfx=$( ((p == 1)) || echo "$p")
    if ((p > 1)); then
        q -c "DROP TABLE $TABLE" >/dev/null
        sluice_run "first$sfx" --force
    else
        sluice_run first
    fi
    expect "first run $p: status" "$R_STATUS" completed_with_errors
    expect "first run $p: read" "$R_READ" "$ROWS"
    expect "first run $p: published" "$R_PUB" "$EXPECT_PUB"
    expect "first run $p: created" "$R_CREATED" "$EXPECT_PUB"
    expect "first run $p: rejected" "$R_REJ" "$EXPECT_BAD"
    expect "first run $p: duplicates" "$R_DUP" "$EXPECT_DUP"
    DEST_ROWS=$(q -c "SELECT count(*) FROM $TABLE")
    expect "rows in $TABLE" "$DEST_ROWS" "$EXPECT_PUB"

    sluice_run "rerun$sfx" --force
    expect "--force re-run $p: status" "$R_STATUS" completed_with_errors
    expect "--force re-run $p: read" "$R_READ" "$ROWS"
    expect "--force re-run $p: created" "$R_CREATED" 0
    if [[ "$PARTITIONER" == keyed ]]; then
        expect "--force re-run $p: unchanged" "$R_UNCHANGED" "$EXPECT_PUB"
        expect "--force re-run $p: updated" "$R_UPDATED" 0
    else
        # a duplicate key's two rows no longer share a partition, so which of them the
        # validator sees first (and publishes) can differ from one run to the next
        expect "--force re-run $p: unchanged + updated" $((R_UNCHANGED + R_UPDATED)) "$EXPECT_PUB"
        if ((R_UPDATED > EXPECT_DUP)); then
            expect "--force re-run $p: updated (at most the $EXPECT_DUP duplicate keys)" "$R_UPDATED" "<= $EXPECT_DUP"
        elif ((R_UPDATED > 0)); then
            echo "   ($R_UPDATED of the $EXPECT_DUP duplicate keys went the other way this time: partitioner $PARTITIONER)"
        fi
    fi
done
# RUNS_first, RUNS_rerun: the names of each kind of run, pair by pair
RUNS_first=(first) RUNS_rerun=(rerun)
for ((p = 2; p <= PAIRS; p++)); do RUNS_first+=("first$p") RUNS_rerun+=("rerun$p"); done
# median NAME...: the median wall time of the runs named
median() {
    local n
    for n in "$@"; do echo "${WALL[$n]}"; done | sort -g |
        awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
WALL[first_median]=$(median "${RUNS_first[@]}")
WALL[rerun_median]=$(median "${RUNS_rerun[@]}")
LOAD[first_median]=${LOAD[first]} LOAD[rerun_median]=${LOAD[rerun]}

# peak RSS and CPU of the services, read before anything is stopped
declare -A HWM=()
for s in "${SERVICES[@]}"; do
    HWM[$s]=$(awk '/^VmHWM:/ { print $2 }' "/proc/${SVC_PID[$s]}/status" 2>/dev/null || echo 0)
done
HWM[broker]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$KAFKA_PID/status" 2>/dev/null || echo 0)
HWM[redis]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$REDIS_PID/status" 2>/dev/null || echo 0)
HWM[postgres]=0
CPU_END=$(cpu_snapshot)
check_services
# the services' work is done: stop them now, so that the baselines have the cores
for s in "${SERVICES[@]}"; do
    stop_pid "${SVC_PID[$s]}" TERM 10
    unset "SVC_PID[$s]"
done

# ---- how full the record batches were: Kafka messages per records topic ----
# (every record of the warm-up and both runs; a message is one RecordBatch)
declare -A KMSGS=()
if command -v kcat >/dev/null; then
    for t in records.raw records.mapped records.valid records.rejected; do
        KMSGS[$t]=$(timeout 120 kcat -C -b "$BROKERS" -t "sluice.$t" -o beginning -e -q \
            -f 'x\n' 2>/dev/null | wc -l || echo "?")
    done
    RAW_RECS=$((2 * ROWS + 25))
    echo "== Kafka messages: records.raw ${KMSGS[records.raw]}, records.mapped" \
        "${KMSGS[records.mapped]}, records.valid ${KMSGS[records.valid]}, records.rejected" \
        "${KMSGS[records.rejected]}; $RAW_RECS records each on raw and mapped:" \
        "$(awk -v r="$RAW_RECS" -v m="${KMSGS[records.raw]}" 'BEGIN { if (m > 0) printf "%.0f", r / m; else print "?" }')" \
        "and $(awk -v r="$RAW_RECS" -v m="${KMSGS[records.mapped]}" 'BEGIN { if (m > 0) printf "%.0f", r / m; else print "?" }')" \
        "records a message"
fi

if ((BASELINES)); then
    # ---- the baselines: the same rows, typed as the destination, as one CSV -----
    # the demo job's attributes (examples/stores/job.json), store_id its key
    ATTRS=(store_id name opened_on revenue currency email phone status region_id)
    join() { # SEP PREFIX SUFFIX WORD...: PREFIX WORD SUFFIX for each WORD, joined by SEP
        local sep=$1 pre=$2 suf=$3 out='' w
        shift 3
        for w in "$@"; do out+=${out:+$sep}$pre$w$suf; done
        echo "$out"
    }
    COLS=$(join ', ' '' '' "${ATTRS[@]}")
    CLEAN=$TMP/data/published.csv
    q -c "\\copy (SELECT $COLS FROM $TABLE ORDER BY store_id) TO '$CLEAN' WITH (FORMAT csv, HEADER)"
    CLEAN_ROWS=$(($(wc -l <"$CLEAN") - 1))
    CLEAN_BYTES=$(stat -c %s "$CLEAN")
    echo "== baselines load the $CLEAN_ROWS rows sluice published (as a UTF-8 CSV of the destination's"
    echo "   columns, $CLEAN_BYTES bytes) into tables like $TABLE (CREATE TABLE ... (LIKE $TABLE INCLUDING ALL))"
    SETS=$(for a in "${ATTRS[@]:1}"; do echo "$a = excluded.$a, "; done | tr -d '\n')
    cat >"$TMP/copy_upsert.sql" <<EOF
BEGIN;
CREATE TEMP TABLE batch ON COMMIT DROP AS SELECT $COLS FROM $TABLE WITH NO DATA;
\\copy batch FROM '$CLEAN' WITH (FORMAT csv, HEADER)
INSERT INTO bench_copy_upsert AS t ($COLS, _sluice_run) SELECT $COLS, 'baseline' FROM batch
ON CONFLICT (store_id) DO UPDATE SET ${SETS}_sluice_run = excluded._sluice_run
WHERE ROW($(join ', ' t. '' "${ATTRS[@]}")) IS DISTINCT FROM ROW($(join ', ' excluded. '' "${ATTRS[@]}"));
COMMIT;
EOF
    q -c "CREATE TABLE bench_copy_upsert (LIKE $TABLE INCLUDING ALL)" \
        -c "CREATE TABLE bench_pgloader (LIKE $TABLE INCLUDING ALL)"

    # timed NAME CMD...: runs CMD, sets WALL[NAME], LOAD[NAME]; returns CMD's status
    timed() {
        local name=$1 t0 t1 rc=0
        shift
        sync
        LOAD[$name]=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(now)
        "$@" || rc=$?
        t1=$(now)
        WALL[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        return "$rc"
    }

    echo "-- (a) psql: \\copy into a temporary table + one INSERT ... ON CONFLICT DO UPDATE"
    timed copy_upsert q -f "$TMP/copy_upsert.sql" >"$TMP/copy_upsert.log" 2>&1 ||
        fail "(a) failed: $(tail -n 5 "$TMP/copy_upsert.log")"
    A_ROWS=$(q -c "SELECT count(*) FROM bench_copy_upsert")
    expect "rows in bench_copy_upsert" "$A_ROWS" "$CLEAN_ROWS"
    # same_rows TABLE: rows of TABLE that differ from the sluice destination's (0: the same)
    same_rows() {
        q -c "SELECT count(*) FROM ((SELECT $COLS FROM $1 EXCEPT ALL SELECT $COLS FROM $TABLE)
              UNION ALL (SELECT $COLS FROM $TABLE EXCEPT ALL SELECT $COLS FROM $1)) d"
    }
    expect "rows of bench_copy_upsert unlike $TABLE" "$(same_rows bench_copy_upsert)" 0
    echo "   ${WALL[copy_upsert]} s, $A_ROWS rows"
    echo "-- (a) again: the same file, every row unchanged"
    timed copy_upsert_again q -f "$TMP/copy_upsert.sql" >"$TMP/copy_upsert.log" 2>&1 ||
        fail "(a) again failed: $(tail -n 5 "$TMP/copy_upsert.log")"
    echo "   ${WALL[copy_upsert_again]} s"

    echo "-- (b) pgloader"
    B_WHY=
    if ! command -v pgloader >/dev/null; then
        if [[ "${BENCH_NO_INSTALL:-0}" != 1 && $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "   pgloader is missing: apt-get install -y pgloader"
            DEBIAN_FRONTEND=noninteractive apt-get install -y pgloader >"$TMP/apt.log" 2>&1 ||
                B_WHY="apt-get install -y pgloader failed: $(tail -n 2 "$TMP/apt.log" | tr '\n' ' ')"
        else
            B_WHY="pgloader is missing (apt-get install pgloader)"
        fi
    fi
    if [[ -z "$B_WHY" ]]; then
        cat >"$TMP/load.pgloader" <<EOF
LOAD CSV
     FROM '$CLEAN'
          (store_id, $(join ', ' '' ' [null if blanks]' "${ATTRS[@]:1}"))
     INTO postgresql://postgres@127.0.0.1:$PG_PORT/postgres
          TARGET TABLE bench_pgloader
          ($COLS)
     WITH skip header = 1,
          fields optionally enclosed by '"',
          fields escaped by double-quote,
          fields terminated by ','
;
EOF
        rc=0
        timed pgloader pgloader --no-ssl-cert-verification --root-dir "$TMP/pgloader" \
            "$TMP/load.pgloader" >"$TMP/pgloader.log" 2>&1 || rc=$?
        B_ROWS=$(q -c "SELECT count(*) FROM bench_pgloader")
        if [[ $rc -ne 0 ]]; then
            B_WHY="pgloader exited $rc: $(grep -m 3 -i -E 'error|fatal' "$TMP/pgloader.log" | tr '\n' ' ')"
        elif [[ "$B_ROWS" != "$CLEAN_ROWS" ]]; then
            B_WHY="pgloader loaded $B_ROWS of $CLEAN_ROWS rows: $(grep -m 3 -i -E 'error|warning' "$TMP/pgloader.log" | tr '\n' ' ')"
        else
            echo "   ${WALL[pgloader]} s, $B_ROWS rows (pgloader's own total: $(sed -n \
                's/.*Total import time .* \([0-9.]*s\)$/\1/p' "$TMP/pgloader.log"))"
            expect "rows of bench_pgloader unlike $TABLE" "$(same_rows bench_pgloader)" 0
        fi
    fi
    if [[ -n "$B_WHY" ]]; then
        echo "   (b) skipped: $B_WHY" >&2
        unset "WALL[pgloader]"
        MISSED=1
    fi
else
    CLEAN_ROWS=$EXPECT_PUB
fi

# ---- the report -------------------------------------------------------------
echo
echo "Distributed-mode benchmark: $ROWS rows ($BYTES bytes), $(nproc) cores, $(uname -m)," \
    "PostgreSQL $(q -c 'SHOW server_version'), $PARTS partitions a records topic, partitioner $PARTITIONER${KAFKA_EXTRA:+, $KAFKA_EXTRA}"
printf '%-34s %10s %9s %11s %6s\n' what rows wall_s rows/s load
row() { # LABEL ROWS NAME
    [[ -n "${WALL[$3]:-}" ]] || {
        printf '%-34s %10s %9s %11s %6s\n' "$1" "$2" - - -
        return
    }
    awk -v l="$1" -v n="$2" -v w="${WALL[$3]}" -v ld="${LOAD[$3]}" \
        'BEGIN { printf "%-34s %10d %9.2f %11.0f %6.2f\n", l, n, w, (w > 0 ? n / w : 0), ld }'
}
rate() { [[ -n "${WALL[$2]:-}" ]] && awk -v n="$1" -v w="${WALL[$2]}" 'BEGIN { print (w > 0 ? n / w : 0) }'; }
row "sluice, first run" "$ROWS" first_median
row "sluice, --force re-run (unchanged)" "$ROWS" rerun_median
if ((PAIRS > 1)); then
    echo "(sluice: the median of $PAIRS pairs; load: the first pair's) pair by pair, wall_s first / re-run (re-run/first):"
    for ((p = 0; p < PAIRS; p++)); do
        awk -v p=$((p + 1)) -v a="${WALL[${RUNS_first[$p]}]}" -v b="${WALL[${RUNS_rerun[$p]}]}" \
            'BEGIN { printf "   pair %d: %.2f / %.2f (%.2fx)\n", p, a, b, (b > 0 ? a / b : 0) }'
    done
fi
((BASELINES)) || echo "(--no-baselines: no (a), no (b))"
row "(a) psql \\copy + INSERT ON CONFLICT" "$CLEAN_ROWS" copy_upsert
row "(a) again (every row unchanged)" "$CLEAN_ROWS" copy_upsert_again
row "(b) pgloader" "$CLEAN_ROWS" pgloader
S1=$(rate "$ROWS" first_median)
S2=$(rate "$ROWS" rerun_median)
RA=$(rate "$CLEAN_ROWS" copy_upsert || true)
RB=$(rate "$CLEAN_ROWS" pgloader || true)
awk -v s1="$S1" -v s2="$S2" -v ra="${RA:-}" -v rb="${RB:-}" '
    BEGIN {
        ok = 1
        if (ra != "") {
            r = s1 / ra
            printf "sluice/(a): %.2fx (target >= 0.5x: %s)\n", r, (r >= 0.5 ? "met" : "MISSED"); ok = ok && r >= 0.5
        } else
            printf "sluice/(a): - (psql did not run)\n"
        if (rb != "") {
            r = s1 / rb
            printf "sluice/(b): %.2fx (target >= 3x: %s)\n", r, (r >= 3 ? "met" : "MISSED"); ok = ok && r >= 3
        } else
            printf "sluice/(b): - (pgloader did not run)\n"
        r = s2 / s1
        printf "re-run/first run: %.2fx (target >= 1x: %s)\n", r, (r >= 1 ? "met" : "MISSED"); ok = ok && r >= 1
        exit ok ? 0 : 1
    }' || MISSED=1
for ((p = 0; p < PAIRS; p++)); do
    n=$( ((PAIRS == 1)) || echo " $((p + 1))")
    echo "first run$n:  ${SUMMARY[${RUNS_first[$p]}]}"
    echo "re-run$n:     ${SUMMARY[${RUNS_rerun[$p]}]}"
done
echo "generator:  published=$EXPECT_PUB bad=$EXPECT_BAD duplicate=$EXPECT_DUP"

echo
echo "CPU seconds (utime+stime from /proc/PID/stat) and peak RSS (VmHWM) of each process:"
printf '%-17s %11s %11s %13s %13s\n' process first_run rerun since_start peak_RSS_MiB
names=("${SERVICES[@]/#/sluice-}" broker redis postgres)
# spent KIND: each process's CPU ticks in the runs of KIND (first, rerun), all pairs
spent() {
    local -n runs=RUNS_$1
    local r i c0 c1
    local -a sum=()
    for r in "${runs[@]}"; do
        read -r -a c0 <<<"${CPU0[$r]}"
        read -r -a c1 <<<"${CPU1[$r]}"
        for i in "${!c1[@]}"; do sum[i]=$((${sum[i]:-0} + c1[i] - c0[i])); done
    done
    echo "${sum[*]}"
}
read -r -a ca <<<"$(spent first)"
read -r -a cb <<<"$(spent rerun)"
read -r -a ce <<<"$CPU_END"
for i in "${!names[@]}"; do
    key=${names[$i]#sluice-}
    awk -v n="${names[$i]}" -v a="${ca[$i]}" -v b="${cb[$i]}" -v t="${ce[$i]}" -v np="$PAIRS" \
        -v tk="$TICK" -v h="${HWM[$key]:-0}" '
        BEGIN { printf "%-17s %11.2f %11.2f %13.2f %13s\n", n, a / tk / np, b / tk / np, t / tk,
                (h > 0 ? sprintf("%.1f", h / 1024) : "-") }'
done
echo "(first_run, rerun: the mean of the $PAIRS pairs; postgres: the postmaster and its backends,"
echo " sampled every poll; broker: the mock Kafka broker; since_start: from start to the end"
echo " of the last re-run, warm-up included. load: the 1-minute load average before the"
echo " command; above $(nproc) other work shared the cores)"

if [[ $STRICT -eq 1 && $MISSED -ne 0 ]]; then
    exit 1
fi
exit 0
