#!/usr/bin/env bash
# Keeps the demo and the benchmark honest: runs examples/stores/job.json on
# its own stores.csv and on 20,000 generated rows, and checks run.json's
# counts against what the files plant (examples/README.md, gen_stores).
# Usage: check_demo.sh SLUICE GEN_STORES SOURCE_DIR   (registered with ctest)
set -euo pipefail

SLUICE=$1
GEN=$2
ROOT=$3
JOB=$ROOT/examples/stores/job.json
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FAILED=0

count() {
    sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$2" | head -n 1
}

# expect WHAT ACTUAL WANTED
expect() {
    if [[ "$2" != "$3" ]]; then
        echo "FAIL: $1: got '$2', want '$3'"
        FAILED=1
    fi
}

# run NAME [--input FILE]: runs the demo job into $TMP/NAME, sets RC
run() {
    local name=$1
    shift
    RC=0
    "$SLUICE" run --quiet "$@" --out "$TMP/$name" --state "$TMP/state" --force "$JOB" \
        >"$TMP/$name.log" 2>&1 || RC=$?
    if [[ ! -s "$TMP/$name/run.json" ]]; then
        echo "FAIL: $name: no run.json (exit $RC):"
        cat "$TMP/$name.log"
        exit 1
    fi
}

# The demo: 25 rows, 6 bad on purpose (one of them the duplicate 1003).
run demo
run_json=$TMP/demo/run.json
expect "demo exit status" "$RC" 3
expect "demo read" "$(count read "$run_json")" 25
expect "demo published" "$(count published "$run_json")" 19
expect "demo rejected" "$(count rejected "$run_json")" 6
expect "demo duplicates" "$(count duplicates "$run_json")" 1
expect "demo locations.ndjson lines" "$(wc -l <"$TMP/demo/locations.ndjson")" 19
expect "demo rejected.ndjson lines" "$(wc -l <"$TMP/demo/rejected.ndjson")" 6
expect "demo rejected rows" \
    "$(sed -n 's/^{"row":\([0-9]*\),.*/\1/p' "$TMP/demo/rejected.ndjson" | tr '\n' ' ')" \
    "13 14 15 17 18 19 "
expect "demo error codes" \
    "$(sed -n 's/^{"row":[0-9]*,"errors":\[{"attribute":"[a-z_]*","code":"\([a-z_]*\)".*/\1/p' \
        "$TMP/demo/rejected.ndjson" | tr '\n' ' ')" \
    "format required type duplicate_key not_allowed format "
if ! grep -q '"name":"Filiale München Schwabing"' "$TMP/demo/locations.ndjson"; then
    echo "FAIL: demo: windows-1252 name not published as UTF-8"
    FAILED=1
fi

# Generated rows: the counts the generator reports on stderr.
"$GEN" 20000 >"$TMP/gen.csv" 2>"$TMP/gen.expect"
run gen --input "$TMP/gen.csv"
want() {
    sed -n "s/.* $1=\([0-9]*\).*/\1/p" "$TMP/gen.expect"
}
run_json=$TMP/gen/run.json
expect "gen read" "$(count read "$run_json")" 20000
expect "gen published" "$(count published "$run_json")" "$(want published)"
expect "gen rejected" "$(count rejected "$run_json")" "$(want bad)"
expect "gen duplicates" "$(count duplicates "$run_json")" "$(want duplicate)"

if [[ $FAILED -ne 0 ]]; then
    exit 1
fi
echo "demo: read=25 published=19 rejected=6 duplicates=1; gen: $(cat "$TMP/gen.expect")"
