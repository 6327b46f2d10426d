# CLI tests of `sluice run`: the run statuses and exit codes of JOBS.md and
# the four files a run writes, compared with tests/fixtures/cli/*/expected/.
# Run by ctest: bash test_run.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# A clean run: exit 0, every row published.
d=$(stage clean)
run_in "$d" run job.json --out out --state state
expect_exit clean 0
expect_files clean "$d/out" "$FIX/clean/expected"
expect_output clean stdout "succeeded"

# The same file again: skipped (exit 4), nothing published, the
# last-success hash unchanged.
run_in "$d" run job.json --out out2 --state state
expect_exit skipped 4
expect_files skipped "$d/out2" "$FIX/clean/expected-skipped"
expect_output skipped stdout "unchanged"

# --force runs it anyway, with the clean run's results.
run_in "$d" run job.json --out out3 --state state --force
expect_exit force 0
expect_files force "$d/out3" "$FIX/clean/expected"

# A changed file is not skipped.
printf 'S004,Neu,01.01.2024,1,ja,,1,\n' >>"$d/stores.csv"
run_in "$d" run job.json --out out4 --state state --quiet
expect_exit "changed file" 0
if [ ! -s "$OUT.stdout" ]; then ok "--quiet: no summary"; else not_ok "--quiet printed" "$(cat "$OUT.stdout")"; fi

# A job file given from another directory: source.url is relative to it.
mkdir -p "$TMP/elsewhere"
d=$(stage clean "$TMP/clean-elsewhere")
run_in "$TMP/elsewhere" run "$d/job.json" --out out --state state
expect_exit "job in another directory" 0
expect_files "job in another directory" "$TMP/elsewhere/out" "$FIX/clean/expected"

# Bad rows: exit 3; errors.csv and rejected.ndjson list every problem.
d=$(stage bad_rows)
run_in "$d" run job.json --out out --state state
expect_exit bad_rows 3
expect_files bad_rows "$d/out" "$FIX/bad_rows/expected"
expect_output bad_rows stdout "completed_with_errors"

# A missing source file: exit 1, run.json says failed, nothing published.
d=$(stage missing_source)
run_in "$d" run job.json --out out --state state
expect_exit missing_source 1
same_file missing_source "$d/out/run.json" "$FIX/missing_source/expected/run.json"
expect_absent missing_source "$d/out/things.ndjson" "$d/out/things.ndjson.tmp"
expect_output missing_source any "nosuch.csv"
if ls "$d/state/jobs"/*.sha256 >/dev/null 2>&1; then
    not_ok "missing_source: a failed run stored a last-success hash"
else
    ok "missing_source: no last-success hash"
fi

# --input overrides source.url (which names a file that does not exist).
d=$(stage input_override)
run_in "$d" run job.json --out out --state state --input other.csv
expect_exit "--input" 0
expect_files "--input" "$d/out" "$FIX/input_override/expected"

# --input relative to the working directory, the job file elsewhere.
d=$(stage input_override "$TMP/input-elsewhere")
mkdir -p "$TMP/cwd"
cp "$d/other.csv" "$TMP/cwd/mine.csv"
rm "$d/other.csv"
run_in "$TMP/cwd" run "$d/job.json" --out out --state state --input mine.csv
expect_exit "--input relative to the working directory" 0
expect_files "--input relative to the working directory" "$TMP/cwd/out" \
    "$FIX/input_override/expected"

# duplicates: last_wins, keys compared after normalization.
d=$(stage last_wins)
run_in "$d" run job.json --out out --state state
expect_exit last_wins 3
expect_files last_wins "$d/out" "$FIX/last_wins/expected"

# allow_create false: every valid record is counted as not_created.
d=$(stage no_create)
run_in "$d" run job.json --out out --state state
expect_exit no_create 0
expect_files no_create "$d/out" "$FIX/no_create/expected"

# schema drift: the export lost the column Eroeffnung (and gained one): the
# run fails before anything is published, naming the column, the attribute
# and the file's columns; run.json lists what the mapping does not read.
d=$(stage clean)
sed -i -e '1s/,Eroeffnung,/,Opened,/' -e '1s/$/,Extra/' -e '2,$s/$/,x/' "$d/stores.csv"
run_in "$d" run job.json --out out --state state
expect_exit "vanished column" 1
expect_output "vanished column" stdout "stores.csv: the file has no column 'Eroeffnung' (mapping.opened_on); its columns: Filiale, Name, Opened,"
expect_absent "vanished column" "$d/out/stores.ndjson"
slurp "$d/out/run.json"
if [[ $TEXT == *'"status": "failed"'* && $TEXT == *"no column 'Eroeffnung'"* ]]; then
    ok "vanished column: run.json says failed and why"
else
    not_ok "vanished column: run.json" "$TEXT"
fi
# the same column back, the extra one kept: unmapped_columns lists it
sed -i -e '1s/,Opened,/,Eroeffnung,/' "$d/stores.csv"
run_in "$d" run job.json --out out --state state
expect_exit "unmapped column" 0
slurp "$d/out/run.json"
if [[ $TEXT == *$'"unmapped_columns": [\n    "Extra"\n  ]'* ]]; then
    ok "unmapped column: run.json lists Extra"
else
    not_ok "unmapped column: run.json" "$TEXT"
fi

# references into an NDJSON destination: regions published first into the
# same --out, then shops that reference them; an unknown one is rejected, and
# without the regions file the run fails naming the reference.
d=$TMP/refs
mkdir -p "$d"
printf 'id,name\nnorth,Nord\nsouth,Süd\n' >"$d/regions.csv"
printf 'id,region\n1,north\n2,east\n3,\n' >"$d/shops.csv"
cat >"$d/regions.json" <<'JOB'
{"name": "regions", "source": {"url": "regions.csv"},
 "target": {"object": "regions", "key": ["region_id"],
            "attributes": {"region_id": {"type": "text"}, "name": {"type": "text"}}},
 "mapping": {"region_id": "id", "name": "name"}}
JOB
cat >"$d/shops.json" <<'JOB'
{"name": "shops", "source": {"url": "shops.csv"},
 "target": {"object": "shops", "key": ["id"],
            "attributes": {"id": {"type": "text"},
                           "region": {"type": "text", "references": "regions.region_id"}}},
 "mapping": {"id": "id", "region": "region"}}
JOB
run_in "$d" run shops.json --out out --state state
expect_exit "references without the regions file" 1
expect_output "references without the regions file" stdout "target.attributes.region.references: cannot read out/regions.ndjson"
run_in "$d" run regions.json --out out --state state
expect_exit "references: regions published" 0
run_in "$d" run shops.json --out out --state state
expect_exit "references" 3
slurp "$d/out/rejected.ndjson"
want='{"row":2,"errors":[{"attribute":"region","code":"unknown_reference","message":"no regions record has region_id '"'east'"'","value":"east"}],"source":{"id":"2","region":"east"}}'
if [ "$TEXT" = "$want"$'\n' ]; then
    ok "references: the unknown region rejected"
else
    not_ok "references: rejected.ndjson" "$TEXT"
fi

finish
