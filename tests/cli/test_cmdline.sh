# CLI tests of the command line: usage errors (exit 2 with a message that
# names what is wrong, nothing written), --help and --version, and the
# default directories of `sluice run`.
# Run by ctest: bash test_cmdline.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# bad_cmd NAME TEXT ARGS...: exit 2, TEXT on stderr, usage hint, no crash.
bad_cmd() {
    local name=$1 text=$2
    shift 2
    run_in "$TMP/cmd" "$@"
    expect_exit "$name" 2
    expect_output "$name" stderr "$text"
}

mkdir -p "$TMP/cmd"
cp "$FIX/clean/job.json" "$FIX/clean/stores.csv" "$TMP/cmd/"

bad_cmd "no command" "missing command"
bad_cmd "unknown command" "unknown command 'frobnicate'" frobnicate
bad_cmd "run without a job" "missing the job file" run
run_in "$TMP/cmd" run
expect_no_output "run without a job: message is formatted" stderr "%s"
bad_cmd "check without a job" "missing the job file" check
bad_cmd "unknown option" "--bogus" run --bogus job.json
bad_cmd "short option" "-o" run -o x job.json
bad_cmd "two job files" "unexpected argument 'job2.json'" run job.json job2.json
bad_cmd "--out without its value" "--out" run job.json --out
run_in "$TMP/cmd" run job.json --out
expect_output "--out without its value: says a value is missing" stderr "argument"
bad_cmd "--input of a missing file" "nosuch.csv" run job.json --input nosuch.csv
bad_cmd "check --force" "check takes only --input" check job.json --force
bad_cmd "check --out" "check takes only --input" check job.json --out x
bad_cmd "check --input of a missing file" "nosuch.csv" check job.json --input nosuch.csv
if [ -e "$TMP/cmd/sluice-out" ] || [ -e "$TMP/cmd/.sluice" ] || [ -e "$TMP/cmd/x" ]; then
    not_ok "refused command lines wrote files" "$(ls -A "$TMP/cmd")"
else
    ok "refused command lines wrote nothing"
fi

# --help and --version are not errors.
for args in "--help" "run --help" "check --help" "help"; do
    # shellcheck disable=SC2086
    run_in "$TMP/cmd" $args
    expect_exit "sluice $args" 0
    expect_output "sluice $args" stdout "usage: sluice"
done
run_in "$TMP/cmd" --version
expect_exit "sluice --version" 0
expect_output "sluice --version" stdout "sluice "

# the defaults: --out sluice-out/<job name>, --state .sluice
run_in "$TMP/cmd" run job.json --quiet
expect_exit "default directories" 0
expect_files "default directories" "$TMP/cmd/sluice-out/stores-clean" "$FIX/clean/expected"
if [ -f "$TMP/cmd/.sluice/jobs/stores-clean.sha256" ]; then
    ok "default directories: state in .sluice"
else
    not_ok "default directories: no .sluice/jobs/stores-clean.sha256"
fi

finish
