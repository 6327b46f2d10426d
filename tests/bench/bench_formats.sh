#!/usr/bin/env bash
# Format benchmark: `sluice run` (embedded mode, file sink, in a temporary
# directory) on the same store rows as CSV, a JSON array, NDJSON, XML and
# XLSX, each beside a reference tool on the same file:
#   csv     mlr --icsv --ojsonl cat FILE > OUT       (Miller 6: CSV to NDJSON)
#   json    jq -c '.[]' FILE > OUT                   (one record a line; jq
#           holds the whole document: when the file is over a third of
#           MemAvailable the streaming form
#           jq -cn --stream 'fromstream(1|truncate_stream(inputs))' is used)
#   ndjson  jq -c . FILE > OUT
#   xml     xmllint --stream --noout FILE            (libxml2's reader, no output)
#   xlsx    openpyxl read_only, every row to a CSV   (/usr/bin/python3)
#
# Usage: tests/bench/bench_formats.sh [--rows N | --size SIZE] [--formats LIST] [--strict] [BUILD_DIR]
#   BUILD_DIR     where sluice and tests/bench/gen_formats are (default ./build);
#                 this script builds nothing: cmake --build BUILD_DIR --target sluice_cli gen_formats
#   --rows N      the same N rows in every format (default 1000000); the published
#                 records of every text format must then be byte-identical
#   --size SIZE   instead: each text format generated up to SIZE bytes (500M, 1G), so the
#                 row counts differ; XLSX gets the first rows of the CSV, at most 1,048,575
#                 (a sheet's limit)
#   --formats L   comma-separated subset of csv,json,ndjson,xml,xlsx (default: all; xlsx is
#                 left out, saying why, when sluice cannot read it or openpyxl is missing)
#   --strict      exit 1 when a count is wrong or sluice's peak RSS reaches 64 MiB
# Environment: BENCH_TIMEOUT seconds per measured command (default 1800),
#   BENCH_KEEP_TMP=1 keeps the temporary directory (data and outputs).
# Needs /usr/bin/time (time), mlr (miller), jq, xmllint (libxml2-utils), and for XLSX
# /usr/bin/python3 with openpyxl (python3-openpyxl). See docs/BENCHMARKS.md, "Formats".
# shellcheck disable=SC2016 # sh -c '... "$1"' is meant
set -euo pipefail

BUILD=./build
ROWS=1000000
SIZE=""
FORMATS=csv,json,ndjson,xml,xlsx
STRICT=0
TIMEOUT=${BENCH_TIMEOUT:-1800}
RSS_TARGET_KIB=$((64 * 1024))
XLSX_MAX_ROWS=1048575

die() {
    echo "bench_formats: $*" >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --rows)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || die "--rows needs a positive number"
        ROWS=$2
        shift
        ;;
    --size)
        [[ $# -ge 2 && "$2" =~ ^[0-9]+[KMGkmg]?$ ]] || die "--size needs a size like 500M or 1G"
        SIZE=$2
        shift
        ;;
    --formats)
        [[ $# -ge 2 ]] || die "--formats needs a list"
        FORMATS=$2
        shift
        ;;
    --strict) STRICT=1 ;;
    -h | --help)
        sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $1" ;;
    *) BUILD=$1 ;;
    esac
    shift
done
IFS=, read -r -a FMTS <<<"$FORMATS"
for f in "${FMTS[@]}"; do
    case $f in csv | json | ndjson | xml | xlsx) ;; *) die "unknown format '$f' in --formats" ;; esac
done

BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "build directory $BUILD does not exist"
SLUICE=$BUILD/sluice
GEN=$BUILD/tests/bench/gen_formats
for exe in "$SLUICE" "$GEN"; do
    [[ -x "$exe" ]] || die "$exe is missing: cmake --build $BUILD --target sluice_cli gen_formats"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing: apt-get install time"
for tool in mlr:miller jq:jq xmllint:libxml2-utils; do
    command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} is missing: apt-get install ${tool#*:}"
done
if grep -q 'CMAKE_BUILD_TYPE:STRING=Debug' "$BUILD/CMakeCache.txt" 2>/dev/null ||
    grep -q 'SLUICE_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "bench_formats: warning: $BUILD is a Debug or sanitizer build; numbers will be low" >&2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-formats.XXXXXX")
if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then
    echo "bench_formats: keeping $TMP" >&2
else
    trap 'rm -rf "$TMP"' EXIT
fi

# The XLSX writer: CSV rows on stdin (gen_formats' columns) to a workbook;
# id, opened and revenue become a number, a date and a number cell, as a
# spreadsheet export has them. Prints the number of data rows.
cat >"$TMP/mkxlsx.py" <<'EOF'
import csv, datetime, sys
from openpyxl import Workbook
wb = Workbook(write_only=True)
ws = wb.create_sheet("stores")
rows = csv.reader(sys.stdin)
ws.append(next(rows))
n = 0
for i, name, city, opened, revenue, email, status in rows:
    ws.append([int(i), name, city, datetime.date.fromisoformat(opened), float(revenue), email,
               status])
    n += 1
wb.save(sys.argv[1])
print(n)
EOF
# The XLSX reference: every row of the first sheet, read_only, to a CSV.
cat >"$TMP/readxlsx.py" <<'EOF'
import csv, sys
from openpyxl import load_workbook
wb = load_workbook(sys.argv[1], read_only=True)
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    for row in wb.worksheets[0].iter_rows(values_only=True):
        w.writerow(row)
EOF

# job FORMAT FILE: the job of every format: the seven fields as text
# attributes, appended (no key set), never skipped as unchanged.
job() {
    local extra=""
    [[ $1 == xml ]] && extra=', "xml": { "records": "/stores/store" }'
    cat >"$TMP/job-$1.json" <<EOF
{ "name": "bench-$1",
  "source": { "url": "$2", "format": "$1"$extra },
  "target": { "object": "stores",
    "attributes": { "id": {"type": "text", "required": true}, "name": {"type": "text"},
      "city": {"type": "text"}, "opened": {"type": "text"}, "revenue": {"type": "text"},
      "email": {"type": "text"}, "status": {"type": "text"} } },
  "mapping": { "id": "id", "name": "name", "city": "city", "opened": "opened",
               "revenue": "revenue", "email": "email", "status": "status" },
  "options": { "sync": "append", "skip_unchanged": false } }
EOF
}

# count NAME FILE: the integer "NAME": N of a JSON file (run.json)
count() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$2" | head -n 1
}

# measure NAME CMD...: runs CMD under timeout and /usr/bin/time; M_WALL,
# M_CPU (user + system), M_RSS (KiB), M_LOAD (1-minute load before), M_RC.
measure() {
    local name=$1 t
    shift
    sync # no writeback of the generated file during the measurement
    M_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    M_RC=0
    timeout "$TIMEOUT" /usr/bin/time -f '%e %U %S %M' -o "$TMP/$name.time" "$@" \
        >"$TMP/$name.log" 2>&1 || M_RC=$?
    if [[ $M_RC -eq 124 ]]; then
        echo "bench_formats: $name timed out after ${TIMEOUT}s" >&2
        exit 1
    fi
    t=$(tail -n 1 "$TMP/$name.time")
    read -r M_WALL u s M_RSS <<<"$t"
    M_CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
}

# Can this sluice read XLSX? A 3-row workbook says (the reader is new).
XLSX_OK=""
if [[ ",$FORMATS," == *,xlsx,* ]]; then
    if ! /usr/bin/python3 -c 'import openpyxl' 2>/dev/null; then
        XLSX_OK="no: /usr/bin/python3 has no openpyxl (apt-get install python3-openpyxl)"
    else
        "$GEN" csv 3 2>/dev/null | /usr/bin/python3 "$TMP/mkxlsx.py" "$TMP/probe.xlsx" >/dev/null
        job xlsx "$TMP/probe.xlsx"
        if "$SLUICE" run --quiet "$TMP/job-xlsx.json" --out "$TMP/probe" --state "$TMP/state" \
            >/dev/null 2>&1 && [[ "$(count published "$TMP/probe/run.json")" == 3 ]]; then
            XLSX_OK=yes
        else
            XLSX_OK="no: sluice cannot read it ($(sed -n 's/.*"reason": "\(.*\)".*/\1/p' \
                "$TMP/probe/run.json" 2>/dev/null))"
        fi
        rm -rf "$TMP/probe" "$TMP/probe.xlsx"
    fi
fi

RESULTS=()
MISSED=0
FIRST_SHA=""
for fmt in "${FMTS[@]}"; do
    ext=$fmt
    data=$TMP/stores.$ext
    if [[ $fmt == xlsx ]]; then
        if [[ $XLSX_OK != yes ]]; then
            echo "== xlsx left out: $XLSX_OK"
            continue
        fi
        n=$ROWS
        if [[ -n $SIZE || $n -gt $XLSX_MAX_ROWS ]]; then
            n=$XLSX_MAX_ROWS
        fi
        echo "== generating $n rows as xlsx (openpyxl, write_only)"
        rows=$("$GEN" csv "$n" 2>/dev/null | /usr/bin/python3 "$TMP/mkxlsx.py" "$data")
    else
        if [[ -n $SIZE ]]; then
            echo "== generating $SIZE of $fmt"
            "$GEN" --bytes "$SIZE" "$fmt" >"$data" 2>"$TMP/gen.txt"
        else
            echo "== generating $ROWS rows as $fmt"
            "$GEN" "$fmt" "$ROWS" >"$data" 2>"$TMP/gen.txt"
        fi
        rows=$(sed -n 's/.* rows=\([0-9]*\).*/\1/p' "$TMP/gen.txt")
    fi
    bytes=$(stat -c %s "$data")
    job "$fmt" "$data"

    # (a) sluice, embedded, publishing to a file
    echo "-- sluice run --quiet job-$fmt.json ($bytes bytes, $rows rows)"
    rm -rf "$TMP/out" "$TMP/state"
    measure "sluice-$fmt" "$SLUICE" run --quiet "$TMP/job-$fmt.json" --out "$TMP/out" \
        --state "$TMP/state"
    if [[ $M_RC -ne 0 ]]; then
        echo "bench_formats: sluice exited $M_RC on $fmt:" >&2
        tail -n 20 "$TMP/sluice-$fmt.log" >&2
        [[ -f "$TMP/out/run.json" ]] && cat "$TMP/out/run.json" >&2
        exit 1
    fi
    s_wall=$M_WALL s_cpu=$M_CPU s_rss=$M_RSS s_load=$M_LOAD
    read_n=$(count read "$TMP/out/run.json")
    pub_n=$(count published "$TMP/out/run.json")
    echo "   run.json: read=$read_n published=$pub_n (generated: $rows)"
    if [[ "$read_n" != "$rows" || "$pub_n" != "$rows" ]]; then
        echo "   WARNING: counts differ from the generated rows" >&2
        MISSED=1
    fi
    # the same rows give the same records, whatever the format (XLSX: revenue
    # is a number cell there, 909336 rather than 909336.00)
    if [[ -z $SIZE && $fmt != xlsx ]]; then
        sha=$(sha256sum <"$TMP/out/stores.ndjson" | cut -d' ' -f1)
        if [[ -z $FIRST_SHA ]]; then
            FIRST_SHA=$sha
        elif [[ $sha != "$FIRST_SHA" ]]; then
            echo "   WARNING: the published records differ from the first format's" >&2
            MISSED=1
        else
            echo "   published records identical to the first format's"
        fi
    fi
    rm -rf "$TMP/out" "$TMP/state"

    # (b) the reference tool on the same file (sh -c: its output to a file)
    ref_out=$TMP/ref.out
    case $fmt in
    csv)
        ref="mlr --icsv --ojsonl cat"
        measure "ref-$fmt" sh -c 'mlr --icsv --ojsonl cat "$1" >"$2"' sh "$data" "$ref_out"
        ;;
    json)
        avail=$(awk '/^MemAvailable:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)
        if [[ $bytes -lt $((avail / 3)) ]]; then
            ref="jq -c '.[]'"
            measure "ref-$fmt" sh -c 'jq -c ".[]" "$1" >"$2"' sh "$data" "$ref_out"
        else
            ref="jq -cn --stream"
            measure "ref-$fmt" sh -c \
                'jq -cn --stream "fromstream(1|truncate_stream(inputs))" "$1" >"$2"' sh \
                "$data" "$ref_out"
        fi
        ;;
    ndjson)
        ref="jq -c ."
        measure "ref-$fmt" sh -c 'jq -c . "$1" >"$2"' sh "$data" "$ref_out"
        ;;
    xml)
        ref="xmllint --stream"
        : >"$ref_out"
        measure "ref-$fmt" xmllint --stream --noout "$data"
        ;;
    xlsx)
        ref="openpyxl read_only"
        measure "ref-$fmt" /usr/bin/python3 "$TMP/readxlsx.py" "$data" "$ref_out"
        ;;
    esac
    if [[ $M_RC -ne 0 ]]; then
        echo "bench_formats: $ref exited $M_RC on $fmt:" >&2
        tail -n 20 "$TMP/ref-$fmt.log" >&2
        exit 1
    fi
    ref_lines=$(wc -l <"$ref_out")
    echo "   $ref: $M_WALL s, $ref_lines lines out"
    rm -f "$ref_out"
    RESULTS+=("$fmt $bytes $rows $s_wall $s_cpu $s_rss $s_load ${ref// /\~} $M_WALL $M_CPU $M_RSS $M_LOAD")
    rm -f "$data"
done

echo
echo "Format benchmark ($(nproc) cores; $(uname -m); sluice from $BUILD)"
printf '%-7s %9s %10s %8s %7s %8s %10s %8s | %-23s %8s %7s %9s %6s\n' format MB rows wall_s cpu_s \
    MB/s rows/s peak_MiB reference wall_s MB/s peak_MiB load
for r in "${RESULTS[@]}"; do
    read -r fmt bytes rows sw sc sr sl ref rw _ rr rl <<<"$r"
    awk -v f="$fmt" -v b="$bytes" -v n="$rows" -v sw="$sw" -v sc="$sc" -v sr="$sr" -v sl="$sl" \
        -v ref="${ref//\~/ }" -v rw="$rw" -v rr="$rr" -v rl="$rl" -v target="$RSS_TARGET_KIB" '
        function rate(x, t) { return t > 0 ? x / t : 0 }
        BEGIN {
            mb = b / 1e6
            printf "%-7s %9.1f %10d %8.2f %7.2f %8.1f %10.0f %8.1f | %-23s %8.2f %7.1f %9.1f %6s\n",
                f, mb, n, sw, sc, rate(mb, sw), rate(n, sw), sr / 1024, ref, rw, rate(mb, rw),
                rr / 1024, sl "/" rl
            exit (sr < target ? 0 : 1)
        }' || {
        echo "        sluice peak RSS reached the 64 MiB target on $fmt"
        MISSED=1
    }
done
echo "(MB = 10^6 bytes of input; wall_s and MB/s of sluice include writing its NDJSON output;"
echo " the references write theirs too, except xmllint; load: 1-minute load average before"
echo " sluice / before the reference; above $(nproc) other work shared the cores)"
[[ -n $XLSX_OK && $XLSX_OK != yes ]] && echo "xlsx left out: $XLSX_OK"

if [[ $STRICT -eq 1 && $MISSED -ne 0 ]]; then
    exit 1
fi
exit 0
