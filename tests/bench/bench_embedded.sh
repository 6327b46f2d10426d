#!/usr/bin/env bash
# Embedded-mode benchmark: `sluice run` of the demo job (examples/stores/job.json)
# on generated store rows, beside Miller converting the same file to NDJSON.
#
# Usage: tests/bench/bench_embedded.sh [--5m] [--strict] [BUILD_DIR]
#   BUILD_DIR   where build/sluice and build/tests/bench/gen_stores are (default ./build);
#               this script builds nothing: cmake --build BUILD_DIR --target sluice_cli gen_stores
#   --5m        also run on 5,000,000 rows (or BENCH_5M=1)
#   --strict    exit 1 when a target is missed (default: report only)
# Environment: BENCH_ROWS (default 1000000) replaces the 1M size;
#   BENCH_TIMEOUT seconds per measured command (default 600).
# Needs /usr/bin/time (Debian package time) and mlr (Debian package miller).
# Data goes to tests/bench/data/ (gitignored, reused: the generator is deterministic).
# See docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=./build
STRICT=0
SIZES=("${BENCH_ROWS:-1000000}")
[[ "${BENCH_5M:-0}" == 1 ]] && SIZES+=(5000000)
TIMEOUT=${BENCH_TIMEOUT:-600}

for arg in "$@"; do
    case "$arg" in
    --5m) SIZES+=(5000000) ;;
    --strict) STRICT=1 ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "bench_embedded: unknown option $arg" >&2
        exit 2
        ;;
    *) BUILD=$arg ;;
    esac
done

BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || {
    echo "bench_embedded: build directory $BUILD does not exist" >&2
    exit 2
}
SLUICE=$BUILD/sluice
GEN=$BUILD/tests/bench/gen_stores
JOB=$ROOT/examples/stores/job.json
DATA=$ROOT/tests/bench/data
for exe in "$SLUICE" "$GEN"; do
    if [[ ! -x "$exe" ]]; then
        echo "bench_embedded: $exe is missing: cmake --build $BUILD --target sluice_cli gen_stores" >&2
        exit 2
    fi
done
if [[ ! -x /usr/bin/time ]]; then
    echo "bench_embedded: /usr/bin/time is missing: apt-get install time" >&2
    exit 2
fi
if ! command -v mlr >/dev/null; then
    echo "bench_embedded: mlr is missing: apt-get install miller" >&2
    exit 2
fi
if grep -q 'CMAKE_BUILD_TYPE:STRING=Debug' "$BUILD/CMakeCache.txt" 2>/dev/null ||
    grep -q 'SLUICE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "bench_embedded: warning: $BUILD is a Debug or sanitizer build; numbers will be low" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$DATA"

# time_field FILE: "wall_seconds cpu_seconds max_rss_kib" from /usr/bin/time -v output
time_fields() {
    awk -F': ' '
        /Elapsed \(wall clock\)/ {
            n = split($2, p, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + p[i]
            wall = s
        }
        /User time \(seconds\)/ { cpu += $2 }
        /System time \(seconds\)/ { cpu += $2 }
        /Maximum resident set size/ { rss = $2 }
        END { printf "%.2f %.2f %d\n", wall, cpu, rss }' "$1"
}

# count NAME FILE: the integer "NAME": N of a JSON file (run.json)
count() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$2" | head -n 1
}

RESULTS=()
MISSED=0
for rows in "${SIZES[@]}"; do
    csv=$DATA/stores-$rows.csv
    if [[ ! -s "$csv" || ! -s "$csv.expect" ]]; then
        echo "== generating $rows rows into $csv"
        "$GEN" "$rows" >"$csv.tmp" 2>"$csv.expect.tmp"
        mv "$csv.tmp" "$csv"
        mv "$csv.expect.tmp" "$csv.expect"
    fi
    bytes=$(stat -c %s "$csv")
    expect_pub=$(sed -n 's/.* published=\([0-9]*\).*/\1/p' "$csv.expect")
    expect_bad=$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' "$csv.expect")
    expect_dup=$(sed -n 's/.* duplicate=\([0-9]*\).*/\1/p' "$csv.expect")
    echo "== $rows rows, $bytes bytes ($(cat "$csv.expect"))"

    # (a) sluice, embedded; exit 3 (completed_with_errors) is the expected outcome
    rm -rf "$TMP/out" "$TMP/state"
    echo "-- sluice run --input $csv --out TMP --force $JOB"
    sync # no writeback of the generated file or an earlier run during the measurement
    s_load=$(cut -d' ' -f1 /proc/loadavg)
    rc=0
    timeout "$TIMEOUT" /usr/bin/time -v -o "$TMP/sluice.time" \
        "$SLUICE" run --input "$csv" --out "$TMP/out" --state "$TMP/state" --force "$JOB" \
        >"$TMP/sluice.log" 2>&1 || rc=$?
    if [[ $rc -ne 0 && $rc -ne 3 ]]; then
        echo "bench_embedded: sluice exited $rc (124: timed out after ${TIMEOUT}s):" >&2
        tail -n 20 "$TMP/sluice.log" >&2
        exit 1
    fi
    read -r s_wall s_cpu s_rss < <(time_fields "$TMP/sluice.time")
    run=$TMP/out/run.json
    read_n=$(count read "$run")
    pub_n=$(count published "$run")
    rej_n=$(count rejected "$run")
    dup_n=$(count duplicates "$run")
    echo "   run.json: read=$read_n published=$pub_n rejected=$rej_n duplicates=$dup_n" \
        "(generator: published=$expect_pub bad=$expect_bad duplicate=$expect_dup)"
    if [[ "$read_n" != "$rows" || "$pub_n" != "$expect_pub" || "$dup_n" != "$expect_dup" ]]; then
        echo "   WARNING: counts differ from what the generator planted" >&2
        MISSED=1
    fi
    out_lines=$(wc -l <"$TMP/out/locations.ndjson")

    # (b) Miller: CSV to NDJSON, the same file, output to a file as well
    echo "-- mlr --icsv --ifs ';' --ojsonl cat $csv"
    rm -rf "$TMP/out"
    sync
    m_load=$(cut -d' ' -f1 /proc/loadavg)
    rc=0
    timeout "$TIMEOUT" /usr/bin/time -v -o "$TMP/mlr.time" \
        mlr --icsv --ifs ';' --ojsonl cat "$csv" >"$TMP/mlr.ndjson" 2>"$TMP/mlr.log" || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "bench_embedded: mlr exited $rc (124: timed out after ${TIMEOUT}s):" >&2
        tail -n 20 "$TMP/mlr.log" >&2
        exit 1
    fi
    read -r m_wall m_cpu m_rss < <(time_fields "$TMP/mlr.time")
    mlr_lines=$(wc -l <"$TMP/mlr.ndjson")
    echo "   sluice wrote $out_lines records, mlr $mlr_lines"
    rm -f "$TMP/mlr.ndjson"

    RESULTS+=("$rows $bytes $s_wall $s_cpu $s_rss $s_load $m_wall $m_cpu $m_rss $m_load")
done

echo
echo "Embedded-mode benchmark ($(nproc) cores; $(uname -m); $(mlr --version))"
printf '%-10s %-7s %8s %8s %11s %8s %10s %12s %6s\n' rows tool wall_s cpu_s rows/s MB/s peak_MiB \
    rows/cpu_s load
for r in "${RESULTS[@]}"; do
    read -r rows bytes s_wall s_cpu s_rss s_load m_wall m_cpu m_rss m_load <<<"$r"
    awk -v rows="$rows" -v bytes="$bytes" -v sw="$s_wall" -v sc="$s_cpu" -v sr="$s_rss" \
        -v sl="$s_load" -v mw="$m_wall" -v mc="$m_cpu" -v mr="$m_rss" -v ml="$m_load" '
        function rate(n, t) { return t > 0 ? n / t : 0 }
        BEGIN {
            srate = rate(rows, sw); mrate = rate(rows, mw)
            fmt = "%-10d %-7s %8.2f %8.2f %11.0f %8.1f %10.1f %12.0f %6.2f\n"
            printf fmt, rows, "sluice", sw, sc, srate, rate(bytes / 1e6, sw), sr / 1024, rate(rows, sc), sl
            printf fmt, rows, "mlr", mw, mc, mrate, rate(bytes / 1e6, mw), mr / 1024, rate(rows, mc), ml
            ratio = mrate > 0 ? srate / mrate : 0
            printf "%-10s sluice/mlr rows/s: %.2fx (target >= 2x: %s); sluice peak RSS %.1f MiB (target < 64 MiB: %s)\n",
                "", ratio, (ratio >= 2 ? "met" : "MISSED"), sr / 1024, (sr < 64 * 1024 ? "met" : "MISSED")
            exit ((ratio >= 2 && sr < 64 * 1024) ? 0 : 1)
        }' || MISSED=1
done

echo "(load: 1-minute load average before the command; above $(nproc) other work shared the"
echo " cores and wall-time numbers are low: compare rows/cpu_s, or rerun on a quiet machine)"

if [[ $STRICT -eq 1 && $MISSED -ne 0 ]]; then
    exit 1
fi
exit 0
