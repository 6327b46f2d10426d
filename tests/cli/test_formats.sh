# CLI tests of source files that are hard to read: encodings (windows-1252,
# UTF-16), quoted fields with delimiters and line breaks, 10,000 columns,
# an empty file and a header without rows. errors.csv must come back in the
# source's delimiter and encoding with the source columns byte-identical.
# Run by ctest: bash test_formats.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# windows-1252 with ';': errors.csv in windows-1252 with ';'.
d=$(stage cp1252)
run_in "$d" run job.json --out out --state state
expect_exit cp1252 3
expect_files cp1252 "$d/out" "$FIX/cp1252/expected"
# the source columns of each rejected row, byte for byte (a data row of the
# source is "id;..." and its errors.csv line "row;errors;id;...")
for row in 3 4 5; do
    src=$(grep -a "^$row;" "$d/stores.csv" | tr -d '\r')
    got=$(grep -a "^$row;" "$d/out/errors.csv" | tr -d '\r' | cut -d';' -f3-)
    if [ -n "$src" ] && [ "$src" = "$got" ]; then
        ok "cp1252: row $row source columns byte-identical"
    else
        not_ok "cp1252: row $row source columns changed" "source: $(printf %s "$src" | cat -v)" \
            "errors.csv: $(printf %s "$got" | cat -v)"
    fi
done

# UTF-16 (BOM, tabs) declared in the job: errors.csv in UTF-16 too.
d=$(stage utf16)
run_in "$d" run job.json --out out --state state
expect_exit utf16 3
expect_files utf16 "$d/out" "$FIX/utf16/expected"

# UTF-16 with a BOM, no encoding in the job: the BOM wins, for reading and
# for the errors.csv that goes back to the person who sent the file.
d=$(stage utf16_bom)
run_in "$d" run job.json --out out --state state
expect_exit utf16_bom 3
expect_files utf16_bom "$d/out" "$FIX/utf16_bom/expected"

# Quoted fields: delimiters, doubled quotes, LF and CR LF inside quotes.
d=$(stage quoted)
run_in "$d" run job.json --out out --state state
expect_exit quoted 3
expect_files quoted "$d/out" "$FIX/quoted/expected"

# 10,000 columns: the CSV is generated (216 kB), one row valid, one not.
d=$(stage wide)
awk 'BEGIN {
    n = 10000
    for (i = 1; i <= n; i++) printf "%sc%d", (i > 1 ? "," : ""), i
    printf "\n"
    for (r = 1; r <= 2; r++) {
        printf "K%d", r
        for (i = 2; i < n; i++) printf ",r%dc%d", r, i
        printf ",%s\n", (r == 1 ? "10000" : "NaN")
    }
}' >"$d/wide.csv"
run_in "$d" run job.json --out out --state state
expect_exit wide 3
# items.ndjson and run.json as committed; errors.csv and rejected.ndjson
# (hundreds of kB) checked against the generated source instead
same_file wide "$d/out/items.ndjson" "$FIX/wide/expected/items.ndjson"
same_file wide "$d/out/run.json" "$FIX/wide/expected/run.json"
rej=$(cat "$d/out/rejected.ndjson")
want_head='{"row":2,"errors":[{"attribute":"last","code":"type","message":"'"'NaN'"' is not an integer","value":"NaN"}],"source":{"c1":"K2","c2":"r2c2","c3":"r2c3",'
want_tail='"c9998":"r2c9998","c9999":"r2c9999","c10000":"NaN"}}'
if [[ $rej == "$want_head"* && $rej == *"$want_tail" && $rej != *$'\n'* ]]; then
    ok "wide: rejected.ndjson has the row with its 10,000 source fields"
else
    not_ok "wide: rejected.ndjson differs" "$(printf %s "$rej" | head -c 300)"
fi
# errors.csv: _row, _errors, then the 10,000 source columns as they were
if [ "$(head -1 "$d/out/errors.csv" | tr -d '\r' | cut -d, -f3-)" = "$(sed -n 1p "$d/wide.csv")" ]; then
    ok "wide: errors.csv header is _row,_errors and the source header"
else
    not_ok "wide: errors.csv header differs from the source header"
fi
if [ "$(sed -n 2p "$d/out/errors.csv" | tr -d '\r')" = "2,last: 'NaN' is not an integer,$(sed -n 3p "$d/wide.csv")" ]; then
    ok "wide: errors.csv row is _row, _errors and the source row"
else
    not_ok "wide: errors.csv row differs" "$(sed -n 2p "$d/out/errors.csv" | head -c 300)"
fi

# An empty file: failed (exit 1) with a reason that says so; nothing
# published.
d=$(stage empty_file)
run_in "$d" run job.json --out out --state state
expect_exit empty_file 1
expect_output empty_file any "empty"
same_file empty_file "$d/out/run.json" "$FIX/empty_file/expected/run.json"
expect_absent empty_file "$d/out/things.ndjson" "$d/out/things.ndjson.tmp"

# A header and no rows: succeeded, an empty things.ndjson.
d=$(stage header_only)
run_in "$d" run job.json --out out --state state
expect_exit header_only 0
expect_files header_only "$d/out" "$FIX/header_only/expected"

finish
