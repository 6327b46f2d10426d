# CLI tests of `sluice preview JOB.json [--input FILE] [--rows N] [--json]`:
# the first rows of the source beside their mapped values and problems, as
# a table and as one JSON document (checked with jq), the same values and
# problems a run gives; --rows; nothing written (no output files, no state
# directory, no temporary file left), a postgres destination never touched;
# CSV, JSON, XLSX and a remote (HTTP) source; and bad input: an empty file,
# a header only, a binary file, a file that breaks after the rows asked for,
# bad --rows values, an invalid job, a missing source.
# Run by ctest: bash test_preview.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# every temporary file of sluice goes here: it must be empty at the end
export TMPDIR=$TMP/tmpdir
mkdir -p "$TMPDIR"
# a postgres destination would be written to this database by a run
unset SLUICE_DESTINATION_URL SLUICE_POSTGRES_URL SLUICE_ALLOW_HOSTS

# jq_is NAME FILTER WANT: jq -c FILTER of the last run's stdout is WANT.
jq_is() {
    local got
    got=$(jq -c "$2" "$OUT.stdout" 2>&1)
    if [ "$got" = "$3" ]; then
        ok "$1: $2 is $3"
    else
        not_ok "$1: $2 is $got" "expected: $3" "stderr: $(head -c 600 "$OUT.stderr")"
    fi
}

# expect_line NAME LINE: the last run printed exactly this line on stdout.
expect_line() {
    if grep -qxF -- "$2" "$OUT.stdout"; then
        ok "$1: the line '$2'"
    else
        not_ok "$1: no line '$2'" "stdout: $(head -c 1500 "$OUT.stdout")"
    fi
}

# listing DIR: what DIR holds, but the captured output of run_in.
listing() {
    (cd "$1" && find . -mindepth 1 ! -name '.sluice.[0-9]*' | LC_ALL=C sort)
}

d=$(stage preview)
before=$(listing "$d")

# ---- the table ----------------------------------------------------------
run_in "$d" preview job.json
expect_exit table 0
expect_output table stdout "stores.csv (csv), job 'stores-preview'; nothing is published"
expect_output table stdout "row 1: valid"
expect_output table stdout "row 2: rejected (2 problems)"
expect_output table stdout "row 4: rejected (1 problem)"
expect_output table stdout "format: date: '31.02.2020' is not a valid date for format '%d.%m.%Y'"
expect_output table stdout "format: number: 'abc' is not a number in locale 'de'"
expect_output table stdout "duplicate_key: duplicate key: 'S001' was already seen in this run"
expect_output table stdout "too_long: must be at most 8 characters (is 11)"
expect_output table stdout "not_allowed: 'sold' is not one of: open, closed"
expect_output table stdout "6 rows previewed: 3 valid, 3 rejected"
expect_line table "unmapped columns: Notiz"
expect_line table "missing columns: none"
# one line per attribute: attribute, mapping, what it read, mapped value
expect_line table "  ATTRIBUTE  SOURCE                                READ                          MAPPED                        PROBLEM"
expect_line table "  opened_on  {{ Eroeffnung | date('%d.%m.%Y') }}   01.03.2019                    2019-03-01"
expect_line table "  revenue    {{ Umsatz | number('de') }}           1.234,5                       1234.50"
expect_line table "  label      {{ Name | trim }} ({{ Stadt }})       Name=Fine, Stadt=Kiel         Fine (Kiel)"
expect_line table "  country    (not mapped)                                                        DE"
expect_line table "  store_id   Filiale                               S0000000009                   S0000000009                   too_long: must be at most 8 characters (is 11)"
# cut to the column with an ellipsis; wide characters take two columns
expect_line table "  name       {{ Name | trim }}                     A store name far longer tha…  A store name far longer tha…"
expect_line table "  status     {{ Status | lower | default('open')…  sold                          sold                          not_allowed: 'sold' is not one of: open, closed"
expect_line table "  name       {{ Name | trim }}                     東京駅前店舗                  東京駅前店舗"
expect_line table "  label      {{ Name | trim }} ({{ Stadt }})       Name=東京駅前店舗, Stadt=東…  東京駅前店舗 (東京)"
expect_no_output table stdout "far longer than any column"
# no blanks at the ends of lines
if grep -q ' $' "$OUT.stdout"; then
    not_ok "table: lines end in blanks" "$(grep -n ' $' "$OUT.stdout" | head -3)"
else
    ok "table: no line ends in a blank"
fi

# ---- JSON ---------------------------------------------------------------
run_in "$d" preview job.json --json
expect_exit json 0
jq_is json '.job' '"stores-preview"'
jq_is json '.format' '"csv"'
jq_is json '.counts' '{"previewed":6,"valid":3,"rejected":3}'
jq_is json '[.rows[].row]' '[1,2,3,4,5,6]'
jq_is json '[.rows[].status]' '["valid","rejected","valid","rejected","rejected","valid"]'
jq_is json '.rows[0].attributes' '{"store_id":"S001","name":"Berlin Mitte","city":"Berlin","label":"Berlin Mitte (Berlin)","opened_on":"2019-03-01","revenue":"1234.50","status":"open","region":"Nord","country":"DE"}'
jq_is json '.rows[0].source' '{"Filiale":"S001","Name":"  Berlin Mitte ","Stadt":"Berlin","Eroeffnung":"01.03.2019","Umsatz":"1.234,5","Status":"OPEN","Region":"Nord","Notiz":"first"}'
jq_is json '.rows[0].errors' '[]'
jq_is json '.rows[1].errors' '[{"attribute":"opened_on","code":"format","message":"date: '"'"'31.02.2020'"'"' is not a valid date for format '"'"'%d.%m.%Y'"'"'","value":"31.02.2020"},{"attribute":"revenue","code":"format","message":"number: '"'"'abc'"'"' is not a number in locale '"'"'de'"'"'","value":"abc"}]'
jq_is json '.rows[1].attributes.opened_on' 'null'
jq_is json '.rows[2].attributes.name' '"東京駅前店舗"'
jq_is json '.rows[2].attributes.region' 'null'
jq_is json '[.rows[3].errors[] | [.attribute, .code, .value]]' '[["store_id","duplicate_key","S001"]]'
jq_is json '[.rows[4].errors[] | [.attribute, .code, .value]]' '[["store_id","too_long","S0000000009"],["status","not_allowed","sold"]]'
jq_is json '.rows[5].attributes.status' '"open"'
jq_is json '.columns' '["Filiale","Name","Stadt","Eroeffnung","Umsatz","Status","Region","Notiz"]'
jq_is json '.unmapped_columns' '["Notiz"]'
jq_is json '.missing_columns' '[]'
jq_is json '.more_rows' 'false'

# the same problems a run rejects the rows for (the stages' own code)
r=$TMP/preview-run
cp -R "$d" "$r"
rm -f "$r"/.sluice.*
run_in "$r" run job.json --out out --state state --quiet
expect_exit "run of the preview job" 3
cp "$OUT.stdout" "$TMP/run.stdout"
run_in "$d" preview job.json --json
got=$(jq -c '[.rows[] | select(.status == "rejected") | {row, errors, source}]' "$OUT.stdout")
want=$(jq -s -c '[.[] | {row, errors, source}]' "$r/out/rejected.ndjson" 2>&1)
if [ "$got" = "$want" ]; then
    ok "json: rejected rows as the run's rejected.ndjson"
else
    not_ok "json: rejected rows differ from the run's rejected.ndjson" "preview: $got" "run:     $want"
fi
got=$(jq -c '[.rows[] | select(.status == "valid") | .attributes.store_id]' "$OUT.stdout")
want=$(jq -s -c '[.[].store_id]' "$r/out/stores.ndjson" 2>&1)
if [ "$got" = "$want" ]; then
    ok "json: valid rows are the ones the run publishes"
else
    not_ok "json: valid rows differ from the run's" "preview: $got" "run:     $want"
fi

# ---- --rows -------------------------------------------------------------
run_in "$d" preview job.json --rows 2 --json
expect_exit "--rows 2" 0
jq_is "--rows 2" '.counts' '{"previewed":2,"valid":1,"rejected":1}'
jq_is "--rows 2" '[.rows[].row]' '[1,2]'
jq_is "--rows 2" '.more_rows' 'true'
run_in "$d" preview job.json --rows=3
expect_exit "--rows=3" 0
expect_output "--rows=3" stdout "3 rows previewed (more follow"
expect_output "--rows=3" stdout "row 3: valid"
expect_no_output "--rows=3" stdout "row 4:"
# the duplicate is not seen when its first row is all that was read
run_in "$d" preview job.json --rows 10000 --json
expect_exit "--rows 10000 (more than the file has)" 0
jq_is "--rows 10000" '.counts.previewed' '6'
jq_is "--rows 10000" '.more_rows' 'false'
for bad in 0 abc 1e9 -1 10001 99999999999999999999 ''; do
    run_in "$d" preview job.json --rows "$bad"
    expect_exit "--rows '$bad'" 2
    expect_output "--rows '$bad'" stderr "--rows must be a whole number from 1 to 10000"
done
run_in "$d" preview job.json --rows
expect_exit "--rows without a value" 2
expect_output "--rows without a value" stderr "'--rows' needs an argument"

# ---- a postgres destination is never touched ------------------------------
SLUICE_DESTINATION_URL=postgresql://sluice@127.0.0.1:1/nowhere run_in "$d" preview job.json --json
expect_exit "postgres destination" 0
jq_is "postgres destination" '.counts.previewed' '6'
expect_no_output "postgres destination" stderr "postgres"

# ---- nothing written ----------------------------------------------------
after=$(listing "$d")
if [ "$before" = "$after" ]; then
    ok "preview wrote nothing in the working directory (no sluice-out, no .sluice)"
else
    not_ok "preview changed the working directory" "$(diff <(echo "$before") <(echo "$after"))"
fi

# ---- other inputs -------------------------------------------------------
# JSON by its file name: every record names its own fields
run_in "$d" preview job.json --input stores.json --json
expect_exit "--input JSON" 0
jq_is "--input JSON" '.format' '"json"'
jq_is "--input JSON" '.counts' '{"previewed":2,"valid":1,"rejected":1}'
jq_is "--input JSON" '.rows[0].attributes.revenue' '"12.50"'
jq_is "--input JSON" '.rows[0].attributes.opened_on' '"2021-05-05"'
jq_is "--input JSON" '.rows[1].source' '{"Filiale":"J002","Name":null,"Stadt":"Dortmund","Eroeffnung":"2021-05-06","Umsatz":"1.000,00","Status":"closed"}'
jq_is "--input JSON" '.rows[1].errors' '[{"attribute":"name","code":"required","message":"is required","value":null}]'
jq_is "--input JSON" '.unmapped_columns' '["Extra.a"]'
jq_is "--input JSON" '.missing_columns' '["Region"]'
run_in "$d" preview job.json --input stores.json
expect_line "--input JSON" "missing columns: Region (mapping.region)"
# records with different fields keep their own names
printf '[{"Filiale":"A1","Name":"a"},{"Stadt":"x","Status":"open"}]\n' >"$d/vary.json"
run_in "$d" preview job.json --input vary.json --json
jq_is "records with other fields" '[.rows[].source]' '[{"Filiale":"A1","Name":"a"},{"Stadt":"x","Status":"open"}]'
jq_is "records with other fields" '.rows[1].attributes.city' '"x"'

# XLSX (the workbook and job of the spreadsheet tests)
x=$TMP/xlsx
mkdir -p "$x"
cp "$REPO/tests/fixtures/sheets/cli/xlsx_stores/job.json" "$REPO/tests/fixtures/sheets/stores.xlsx" "$x/"
run_in "$x" preview job.json --rows 2 --json
expect_exit "XLSX" 0
jq_is "XLSX" '.format' '"xlsx"'
jq_is "XLSX" '[.rows[].attributes.store_id]' '["S-001","S-002"]'
jq_is "XLSX" '.rows[0].attributes.opened_on' '"2019-03-01"'
jq_is "XLSX" '.rows[0].attributes.updated_at' '"2024-05-06T07:08:09Z"'
jq_is "XLSX" '.more_rows' 'true'

# control characters never reach the terminal as they are
printf 'Filiale,Name\nE1,"\033[31mred\033[0m\nline"\n' >"$d/esc.csv"
run_in "$d" preview job.json --input esc.csv
expect_exit "control characters" 0
if grep -q $'\033' "$OUT.stdout"; then
    not_ok "control characters: an escape byte reached the table"
else
    ok "control characters: no escape byte in the table"
fi
expect_output "control characters" stdout "�[31mred�[0m↵line"
run_in "$d" preview job.json --input esc.csv --json
jq_is "control characters" '.rows[0].source.Name' '"\u001b[31mred\u001b[0m\nline"'

# last_wins: the later row of a key replaces the earlier one
l=$(stage last_wins)
run_in "$l" preview job.json
expect_exit "last_wins" 0
expect_output "last_wins" stdout "row 3: valid (replaces an earlier row of the same key)"

# ---- bad input ----------------------------------------------------------
: >"$d/empty.csv"
run_in "$d" preview job.json --input empty.csv
expect_exit "empty file" 1
expect_output "empty file" stderr "empty.csv: the file is empty"
expect_no_output "empty file" stdout "rows previewed"

head -n 1 "$d/stores.csv" >"$d/header.csv"
run_in "$d" preview job.json --input header.csv
expect_exit "header only" 0
expect_output "header only" stdout "0 rows previewed: 0 valid, 0 rejected"
run_in "$d" preview job.json --input header.csv --json
jq_is "header only" '.rows' '[]'
jq_is "header only" '.counts' '{"previewed":0,"valid":0,"rejected":0}'
jq_is "header only" '.unmapped_columns' '["Notiz"]'

head -c 4096 "$SLUICE" >"$d/binary.csv"
run_in "$d" preview job.json --input binary.csv
expect_exit "binary file" 1
expect_output "binary file" stderr "binary.csv: the file looks binary"
head -c 4096 "$SLUICE" >"$d/binary.xlsx"
run_in "$d" preview job.json --input binary.xlsx --json
expect_exit "binary file named .xlsx" 1
expect_output "binary file named .xlsx" stderr "binary.xlsx"
if [ -s "$OUT.stdout" ]; then
    not_ok "binary file named .xlsx: something on stdout" "$(head -c 300 "$OUT.stdout")"
else
    ok "binary file named .xlsx: no half a document on stdout"
fi

# a file that breaks after its third record: reading stops after the rows
# asked for (and the one after, to know whether more follow)
printf '[{"Filiale":"A1","Name":"a"},{"Filiale":"A2","Name":"b"},{"Filiale":"A3","Name":"c"} oops' \
    >"$d/cut.json"
run_in "$d" preview job.json --input cut.json --rows 2 --json
expect_exit "broken after the rows asked for" 0
jq_is "broken after the rows asked for" '[.counts.previewed, .more_rows]' '[2,true]'
expect_no_output "broken after the rows asked for" stderr "cut.json"
run_in "$d" preview job.json --input cut.json --rows 3 --json
expect_exit "broken right after the rows asked for" 0
jq_is "broken right after the rows asked for" '.counts.previewed' '3'
expect_output "broken right after the rows asked for" stderr "warning: cut.json: invalid JSON"
run_in "$d" preview job.json --input cut.json --rows 5 --json
expect_exit "broken within the rows asked for" 1
expect_output "broken within the rows asked for" stderr "cut.json: invalid JSON"

run_in "$d" preview job.json --input nosuch.csv
expect_exit "--input missing" 2
expect_output "--input missing" stderr "--input nosuch.csv"

sed 's/"url": "stores.csv"/"url": "nosuch.csv"/' "$d/job.json" >"$d/nosource.json"
run_in "$d" preview nosource.json
expect_exit "source missing" 1
expect_output "source missing" stderr "cannot read source nosuch.csv"

cp "$FIX/bad_jobs/bad_key.json" "$d/"
run_in "$d" preview bad_key.json
expect_exit "invalid job" 2
expect_output "invalid job" stderr "target.key"
run_in "$d" preview nosuch.json
expect_exit "no job file" 2
expect_output "no job file" stderr "nosuch.json"
run_in "$d" preview
expect_exit "no arguments" 2
run_in "$d" preview job.json --out x
expect_exit "an option of run" 2
expect_output "an option of run" stderr "unknown option '--out'"
run_in "$d" preview job.json other.json
expect_exit "two job files" 2
run_in "$d" preview --help
expect_exit "--help" 0
expect_output "--help" stdout "usage: sluice preview JOB.json"

# ---- a remote source, fetched as a run fetches it -------------------------
if command -v python3 >/dev/null; then
    w=$TMP/www
    mkdir -p "$w"
    cp "$d/stores.csv" "$w/"
    (cd "$w" && exec timeout 120 python3 -u -m http.server 0 --bind 127.0.0.1) >"$TMP/http.log" 2>&1 &
    http_pid=$!
    port=""
    for _ in $(seq 50); do
        port=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$TMP/http.log" | head -1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    sed "s#\"url\": \"stores.csv\"#\"url\": \"http://127.0.0.1:$port/stores.csv\"#" "$d/job.json" \
        >"$d/remote.json"
    run_in "$d" preview remote.json --json
    expect_exit "remote, refused by the SSRF guard" 1
    expect_output "remote, refused by the SSRF guard" stderr "SLUICE_ALLOW_HOSTS"
    SLUICE_ALLOW_HOSTS=127.0.0.1/32 run_in "$d" preview remote.json --json
    expect_exit "remote" 0
    jq_is "remote" '.file' "\"http://127.0.0.1:$port/stores.csv\""
    jq_is "remote" '.counts' '{"previewed":6,"valid":3,"rejected":3}'
    jq_is "remote" '.rows[0].attributes.revenue' '"1234.50"'
    sed -i 's#/stores.csv#/nosuch.csv#' "$d/remote.json"
    SLUICE_ALLOW_HOSTS=127.0.0.1/32 run_in "$d" preview remote.json
    expect_exit "remote, not found" 1
    expect_output "remote, not found" stderr "nosuch.csv: HTTP 404"
    kill "$http_pid" 2>/dev/null
    wait "$http_pid" 2>/dev/null
else
    ok "remote: skipped (no python3 for a local HTTP server)"
fi

# every temporary directory and file was removed
left=$(ls -A "$TMPDIR")
if [ -z "$left" ]; then
    ok "no temporary file left behind"
else
    not_ok "temporary files left behind in TMPDIR" "$left"
fi

# references: looked up where `sluice run` publishes (here sluice-out/<job>/,
# NDJSON); without it, a warning says they were not checked
d=$TMP/prefs
mkdir -p "$d"
printf 'id,region\n1,north\n2,east\n' >"$d/s.csv"
cat >"$d/job.json" <<'JOB'
{"name": "shops", "source": {"url": "s.csv"},
 "target": {"object": "shops", "key": ["id"],
            "attributes": {"id": {"type": "text"},
                           "region": {"type": "text", "references": "regions.region_id"}}},
 "mapping": {"id": "id", "region": "region"}}
JOB
run_in "$d" preview job.json
expect_exit "references unchecked" 0
expect_output "references unchecked" stdout "warning: references not checked: target.attributes.region.references: cannot read sluice-out/shops/regions.ndjson"
mkdir -p "$d/sluice-out/shops"
printf '{"region_id":"north"}\n' >"$d/sluice-out/shops/regions.ndjson"
run_in "$d" preview job.json --json
expect_exit "references" 0
if jq -e '.rows[1].errors[0].code == "unknown_reference" and .rows[0].status == "valid"
          and .warnings == []' "$OUT.stdout" >/dev/null; then
    ok "references: the unknown region shown as unknown_reference"
else
    not_ok "references: preview --json" "$(cat "$OUT.stdout")"
fi
# schema drift: a run would fail; the preview says so
sed -i '1s/region/area/' "$d/s.csv"
run_in "$d" preview job.json
expect_exit "missing column" 0
expect_output "missing column" stdout "warning: a run of this job would fail on this file: a column the mapping reads is missing"

finish
