# CLI tests of JSON and NDJSON sources: a records path with other members
# before and after it, flattened fields (address.city, tags.1), numbers in
# their exact spelling, a record that is no object; NDJSON with a bad line
# and a non-object line (rejected rows, not a failed file).
# Run by ctest: bash test_json.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

for name in json_stores ndjson_stores; do
    d=$(stage $name)
    run_in "$d" run job.json --out out --state state
    expect_exit $name 3
    expect_files $name "$d/out" "$FIX/$name/expected"
done

# a JSON file cut off in the middle fails the run, naming the place
d=$(stage json_stores "$TMP/truncated")
head -c 120 "$FIX/json_stores/stores.json" >"$d/stores.json"
run_in "$d" run job.json --out out --state state
expect_exit truncated 1
expect_output truncated any "invalid JSON at byte"

finish
