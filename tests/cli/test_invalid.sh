# CLI tests of job files that sluice refuses: exit 2 with a message naming
# the field (invalid JSON: its line and column), from run and from check;
# nothing is written for a refused run.
# Run by ctest: bash test_invalid.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

d=$(stage bad_jobs)

# bad_job FILE TEXT...: run refuses FILE with exit 2, prints every TEXT on
# stderr, and writes nothing.
bad_job() {
    local f=$1 t
    shift
    run_in "$d" run "$f" --out "out-$f" --state state
    expect_exit "run $f" 2
    for t in "$@"; do
        expect_output "run $f" stderr "$t"
    done
    expect_absent "run $f" "$d/out-$f"
}

# bad_check FILE TEXT: check refuses FILE the same way (the same loader:
# a few files are enough).
bad_check() {
    run_in "$d" check "$1"
    expect_exit "check $1" 2
    expect_output "check $1" stderr "$2"
}

bad_job invalid_json.json "invalid_json.json" "line 3, column 14"
bad_job duplicate_field.json "line 1" "duplicate"
bad_job trailing_garbage.json "line 1, column"
bad_job not_an_object.json "object"
bad_job unknown_type.json "target.attributes.id.type" "'txt'"
bad_job mapping_unknown_attr.json "mapping.foo"
bad_job no_url.json "source.url"
bad_job bad_delimiter.json "source.csv.delimiter"
bad_job bad_encoding.json "source.csv.encoding" "'ebcdic'"
bad_job bad_scale.json "target.attributes.id.scale"
bad_job bad_key.json "target.key" "'nope'"
bad_job unknown_filter.json "mapping.id" "nosuchfilter"
bad_job unterminated_template.json "mapping.name"
bad_job bad_duplicates.json "options.duplicates" "first_wins"
bad_job bad_allow_create.json "options.allow_create"
bad_job bad_schedule_at.json "schedule.at" "25:00"
bad_job unknown_field.json "optoins"
bad_job bad_name.json "name"
bad_job empty.json "empty.json"
bad_job no_such_job.json "no_such_job.json"

bad_check invalid_json.json "line 3, column 14"
bad_check unknown_type.json "target.attributes.id.type"
bad_check mapping_unknown_attr.json "mapping.foo"
bad_check no_such_job.json "no_such_job.json"

finish
