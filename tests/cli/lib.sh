# Helpers of the CLI tests (tests/cli/test_*.sh), sourced, never run alone.
#
# Every test script is run by ctest as `bash test_x.sh <path-to-sluice>
# <repo-dir>`. A case copies tests/fixtures/cli/<case>/ (without its
# expected/ folder) into a temporary directory, runs the real sluice binary
# there, and compares its output files byte for byte with
# tests/fixtures/cli/<case>/expected/. run.json is compared after replacing
# what differs from run to run (run_id, started_at, finished_at), each
# checked for its form first. The script prints one line per check and
# "N passed, M failed" at the end, and exits non-zero when a check failed.
# SLUICE_KEEP_TMP=1 keeps the temporary directory for a look afterwards.

set -u

SLUICE=${1:?usage: bash test_x.sh <path-to-sluice> <repo-dir>}
REPO=${2:?usage: bash test_x.sh <path-to-sluice> <repo-dir>}
case $SLUICE in /*) ;; *) SLUICE=$PWD/$SLUICE ;; esac
FIX=$REPO/tests/fixtures/cli
TMP=$(mktemp -d /tmp/sluice-cli-XXXXXX)
if [ "${SLUICE_KEEP_TMP:-0}" = 1 ]; then
    echo "# keeping $TMP"
else
    trap 'rm -rf "$TMP"' EXIT
fi
export SLUICE_LOG_LEVEL=warn
unset SLUICE_HASH_KEY SLUICE_LOG_FORMAT
PASSED=0
FAILED=0
RC=0   # exit status of the last run_in
OUT="" # stdout + stderr files of the last run_in: $OUT.stdout, $OUT.stderr

ok() {
    PASSED=$((PASSED + 1))
    echo "ok   - $1"
}

# not_ok NAME [DETAIL...]: one failed check, with details indented.
not_ok() {
    FAILED=$((FAILED + 1))
    echo "FAIL - $1"
    shift
    local l
    for l in "$@"; do
        printf '%s\n' "$l" | sed 's/^/       /'
    done
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && exit 0
    exit 1
}

# stage CASE [DIR]: copies the fixture case (without its expected*/
# folders) to DIR (default $TMP/CASE) and prints DIR.
stage() {
    local dir=${2:-$TMP/$1}
    rm -rf "$dir"
    cp -R "$FIX/$1" "$dir"
    rm -rf "$dir"/expected*
    echo "$dir"
}

# run_in DIR ARGS...: runs sluice ARGS in DIR; sets RC and OUT.
run_in() {
    local dir=$1
    shift
    OUT=$dir/.sluice.$((PASSED + FAILED))
    pushd "$dir" >/dev/null || return
    "$SLUICE" "$@" >"$OUT.stdout" 2>"$OUT.stderr"
    RC=$?
    popd >/dev/null || return
}

# slurp FILE: TEXT gets the content of FILE (no process: the CLI tests run
# many checks and a fork is slow on a busy machine).
slurp() {
    TEXT=""
    [ -f "$1" ] && IFS= read -r -d '' TEXT <"$1"
    return 0
}

# output_of stdout|stderr|any: TEXT gets what the last run printed there.
output_of() {
    local both
    case $1 in
    stdout) slurp "$OUT.stdout" ;;
    stderr) slurp "$OUT.stderr" ;;
    *)
        slurp "$OUT.stdout"
        both=$TEXT
        slurp "$OUT.stderr"
        TEXT=$both$TEXT
        ;;
    esac
}

# expect_exit NAME WANT: the last run's exit status.
expect_exit() {
    if [ "$RC" -eq "$2" ]; then
        ok "$1: exit $2"
    else
        not_ok "$1: exit $RC, expected $2" "stdout: $(head -c 600 "$OUT.stdout")" \
            "stderr: $(head -c 600 "$OUT.stderr")"
    fi
}

# expect_output NAME stdout|stderr|any FIXED-TEXT: the last run printed it.
expect_output() {
    output_of "$2"
    if [[ $TEXT == *"$3"* ]]; then
        ok "$1: $2 has '$3'"
    else
        not_ok "$1: $2 lacks '$3'" "stdout: $(head -c 600 "$OUT.stdout")" \
            "stderr: $(head -c 600 "$OUT.stderr")"
    fi
}

# expect_no_output NAME stdout|stderr|any FIXED-TEXT
expect_no_output() {
    output_of "$2"
    if [[ $TEXT == *"$3"* ]]; then
        not_ok "$1: $2 has '$3'" "stdout: $(head -c 600 "$OUT.stdout")" \
            "stderr: $(head -c 600 "$OUT.stderr")"
    else
        ok "$1: $2 has no '$3'"
    fi
}

# normalize_run_json FILE: run.json with the values of one run replaced
# (for diffs; same_file compares without forking).
normalize_run_json() {
    sed -E -e 's/^(  "run_id": )"[^"]*"/\1"RUN_ID"/' \
        -e 's/^(  "(started|finished)_at": )"[^"]*"/\1"TIME"/' "$1"
}

RE_UUID='^  "run_id": "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",$'
RE_TIME='^  "(started|finished)_at": "([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z)",$'

# read_run_json FILE: NORM gets the normalized text of FILE, FORM_ERR what
# is wrong with the values normalized away (empty: a UUID v4 run id, RFC
# 3339 UTC times, started <= finished). Pure bash: no process per call.
read_run_json() {
    local -a lines
    local l started="" finished="" uuid=0
    mapfile -t lines <"$1"
    NORM=""
    FORM_ERR=""
    for l in "${lines[@]}"; do
        if [[ $l == '  "run_id": '* ]]; then
            [[ $l =~ $RE_UUID ]] && uuid=1
            l='  "run_id": "RUN_ID",'
        elif [[ $l == '  "started_at": '* || $l == '  "finished_at": '* ]]; then
            if [[ $l =~ $RE_TIME ]]; then
                [ "${BASH_REMATCH[1]}" = started ] && started=${BASH_REMATCH[2]}
                [ "${BASH_REMATCH[1]}" = finished ] && finished=${BASH_REMATCH[2]}
            fi
            l=${l%%: *}': "TIME",'
        fi
        NORM+=$l$'\n'
    done
    if [ "$uuid" = 0 ]; then
        FORM_ERR="run_id is no UUID v4"
    elif [ -z "$started" ] || [ -z "$finished" ]; then
        FORM_ERR="started_at or finished_at is not an RFC 3339 UTC time"
    elif [[ $started > $finished ]]; then
        FORM_ERR="started_at $started is after finished_at $finished"
    fi
}

# same_file NAME GOT WANT: byte-identical (run.json: after normalizing).
same_file() {
    local name=$1 got=$2 want=$3 base=${2##*/}
    if [ ! -e "$got" ]; then
        not_ok "$name: $base was not written"
        return
    fi
    if [ "$base" = run.json ]; then
        read_run_json "$want"
        local want_norm=$NORM
        read_run_json "$got"
        if [ -n "$FORM_ERR" ]; then
            not_ok "$name: run.json: $FORM_ERR" "$(cat "$got")"
        elif [ "$NORM" = "$want_norm" ]; then
            ok "$name: run.json as expected"
        else
            not_ok "$name: run.json differs from $want" \
                "$(diff -u <(normalize_run_json "$want") <(normalize_run_json "$got") | head -30)"
        fi
        return
    fi
    if cmp -s "$got" "$want"; then
        ok "$name: $base as expected"
    else
        not_ok "$name: $base differs from $want" \
            "$(diff -u --text "$want" "$got" | head -30 | cat -v)"
    fi
}

# expect_files NAME OUTDIR EXPECTED_DIR: every file of EXPECTED_DIR is in
# OUTDIR, identical; OUTDIR holds nothing else (no leftover .tmp files).
expect_files() {
    local name=$1 out=$2 want=$3 f
    if [ ! -d "$want" ]; then
        not_ok "$name: no expected files in $want"
        return
    fi
    for f in "$want"/*; do
        same_file "$name" "$out/${f##*/}" "$f"
    done
    local extra=""
    for f in "$out"/* "$out"/.*; do
        case ${f##*/} in . | .. | '*' | '.*') continue ;; esac
        [ -e "$want/${f##*/}" ] || extra="$extra ${f##*/}"
    done
    if [ -n "$extra" ]; then
        not_ok "$name: unexpected files in the output directory:$extra"
    else
        ok "$name: no other files in the output directory"
    fi
}

# expect_absent NAME PATH...
expect_absent() {
    local name=$1 p
    shift
    for p in "$@"; do
        if [ -e "$p" ]; then
            not_ok "$name: ${p##*/} exists but must not"
        else
            ok "$name: no ${p##*/}"
        fi
    done
}
