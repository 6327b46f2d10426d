#!/bin/sh
# Builds sluice and runs the whole test suite under ctest.
#   tests/run-all.sh             the normal build, in ./build
#   tests/run-all.sh --sanitize  the AddressSanitizer + UBSan build, in ./build-asan
set -eu
cd "$(dirname "$0")/.."
BUILD=build
FLAGS="-DCMAKE_BUILD_TYPE=RelWithDebInfo"
if [ "${1:-}" = "--sanitize" ]; then
    BUILD=build-asan
    FLAGS="-DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" $FLAGS >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)"
