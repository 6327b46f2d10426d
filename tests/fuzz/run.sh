#!/bin/sh
# Builds the libFuzzer harnesses with clang and runs each for a bounded time
# on a copy of its seed corpus (and with tests/fuzz/<kind>.dict when there is
# one).   tests/fuzz/run.sh [SECONDS]   (default 30)
# A crash, leak or timeout fails the script and leaves the input in build-fuzz/.
set -eu
cd "$(dirname "$0")/../.."
SECS=${1:-30}
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DSLUICE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
targets=$(for src in tests/fuzz/fuzz_*.c; do basename "$src" .c; done)
# shellcheck disable=SC2086
cmake --build build-fuzz -j"$(nproc)" --target $targets >/dev/null
status=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    kind=${name#fuzz_}
    work=$(mktemp -d)
    if [ -d "tests/fuzz/corpus/$kind" ]; then
        cp -r "tests/fuzz/corpus/$kind/." "$work/"
    fi
    log="build-fuzz/$name.log"
    dict=""
    if [ -f "tests/fuzz/$kind.dict" ]; then
        dict="-dict=../tests/fuzz/$kind.dict"
    fi
    set +e
    # shellcheck disable=SC2086
    (cd build-fuzz && "tests/$name" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 $dict "$work" >"$name.log" 2>&1)
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    if [ "$rc" = 0 ]; then
        echo "fuzz: $name ok, $runs inputs in ${SECS}s"
    else
        echo "fuzz: $name FAILED (exit $rc), see $log"
        grep -E "^(==|SUMMARY)" "$log" | head -20 || true
        status=1
    fi
    rm -rf "$work"
done
exit $status
