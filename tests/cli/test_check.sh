# CLI tests of `sluice check JOB.json [--input FILE]`: a valid job is
# described (exit 0); with --input, every column the mapping reads must be
# in the file's header (read in the job's delimiter and encoding), else
# exit 2 naming the mapping entry and the column.
# Run by ctest: bash test_check.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

d=$(stage clean)
run_in "$d" check job.json
expect_exit "check" 0
expect_output "check" stdout "job 'stores-clean' is valid"
expect_output "check" stdout "key (store_id)"
if [ -e "$d/sluice-out" ] || [ -e "$d/.sluice" ]; then
    not_ok "check wrote files" "$(ls -A "$d")"
else
    ok "check wrote nothing"
fi

# the example of JOBS.md is valid as it stands
run_in "$d" check "$REPO/tests/fixtures/jobs/jobs_md_example.json"
expect_exit "check JOBS.md example" 0

run_in "$d" check job.json --input stores.csv
expect_exit "check --input" 0
expect_output "check --input" stdout "every column the mapping reads is in the file"

# a header without E-Mail and Land (read through row['E-Mail'] and a
# plain column copy), with one column nobody reads
printf 'Filiale,Name,Eroeffnung,Umsatz,Aktiv,MITARBEITER,Extra\n' >"$d/partial.csv"
run_in "$d" check job.json --input partial.csv
expect_exit "check --input, columns missing" 2
expect_output "check --input, columns missing" stderr "mapping.email"
expect_output "check --input, columns missing" stderr "'E-Mail'"
expect_output "check --input, columns missing" stderr "mapping.country"
expect_output "check --input, columns missing" stderr "'Land'"
expect_no_output "check --input, columns missing" stderr "mapping.staff"
expect_output "check --input, columns missing" stdout "Extra"

# the job's delimiter and encoding apply
d=$(stage cp1252)
run_in "$d" check job.json --input stores.csv
expect_exit "check --input windows-1252 ';'" 0
iconv -f utf-8 -t windows-1252 >"$d/partial.csv" <<'EOF'
Filiale;Name;Straße
1;a;b
EOF
run_in "$d" check job.json --input partial.csv
expect_exit "check --input windows-1252, a column missing" 2
expect_output "check --input windows-1252, a column missing" stderr "'Stadt'"
expect_output "check --input windows-1252, a column missing" stdout "Straße"

d=$(stage utf16)
run_in "$d" check job.json --input prices.csv
expect_exit "check --input UTF-16" 0
printf 'id,name,price\r\n' | iconv -f utf-8 -t utf-16 >"$d/comma16.csv"
run_in "$d" check job.json --input comma16.csv
expect_exit "check --input UTF-16 with ','" 0
printf 'id\tname\r\n' | iconv -f utf-8 -t utf-16 >"$d/noprice16.csv"
run_in "$d" check job.json --input noprice16.csv
expect_exit "check --input UTF-16, a column missing" 2
expect_output "check --input UTF-16, a column missing" stderr "'price'"

# an input that has no header at all
: >"$d/empty.csv"
run_in "$d" check job.json --input empty.csv
expect_exit "check --input of an empty file" 2
expect_output "check --input of an empty file" stderr "empty"

finish
