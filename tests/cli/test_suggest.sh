# CLI tests of `sluice suggest FILE [--job JOB.json] [--write OUT.json]
# [--force] [--json] [--rows N]`: the mapping proposed for a German ERP
# export (latin1, ';'), for a JSON file and for an XLSX workbook made here
# with openpyxl, with and without a job; the JSON output checked with jq;
# what --write writes passes `sluice check` (and the job without --job
# runs); OUT.json is not replaced without --force; exit 1 for a file that
# cannot be read, 2 for a bad command line or job file.
# Run by ctest: bash test_suggest.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# expect_jq NAME FILTER: the last run's stdout is JSON for which jq -e
# FILTER is true.
expect_jq() {
    if jq -e "$2" "$OUT.stdout" >/dev/null 2>&1; then
        ok "$1: $2"
    else
        not_ok "$1: $2 is not true" "stdout: $(head -c 1500 "$OUT.stdout")" \
            "stderr: $(head -c 600 "$OUT.stderr")"
    fi
}

# expect_jq_file NAME FILE FILTER
expect_jq_file() {
    if jq -e "$3" "$2" >/dev/null 2>&1; then
        ok "$1: $3"
    else
        not_ok "$1: ${2##*/}: $3 is not true" "$(head -c 1500 "$2")"
    fi
}

d=$(stage suggest)

# ---- the German ERP export without a job: a target is proposed ----------
run_in "$d" suggest stores.csv
expect_exit "erp" 0
expect_output "erp" stdout "stores.csv: csv, delimiter ';', latin1; 6 rows sampled, 8 columns"
expect_output "erp" stdout "attribute"
expect_output "erp" stdout "confidence"
expect_output "erp" stdout "eroeffnung"
expect_output "erp" stdout "values: 100% dates dd.mm.yyyy"
expect_output "erp" stdout "key (filiale)"

run_in "$d" suggest stores.csv --json
expect_exit "erp --json" 0
expect_jq "erp --json" '.format == "csv" and .delimiter == ";" and .encoding == "latin1"'
expect_jq "erp --json" '.rows == 6 and .columns == 8 and (.suggestions | length) == 8'
expect_jq "erp --json" '.unmatched_columns == [] and .unmapped_attributes == []'
expect_jq "erp --json" '.target.object == "stores" and .target.key == ["filiale"]'
expect_jq "erp --json" '[.target.attributes | keys_unsorted[]] == ["filiale","name","plz","e_mail","telefon","eroeffnung","umsatz","waehrung"]'
expect_jq "erp --json" '.target.attributes.e_mail.type == "email"'
expect_jq "erp --json" '.target.attributes.plz.type == "text"'
expect_jq "erp --json" '.target.attributes.eroeffnung == {"type": "date", "required": true}'
expect_jq "erp --json" '.target.attributes.umsatz == {"type": "decimal", "required": true, "scale": 2}'
expect_jq "erp --json" '.target.attributes.waehrung.type == "currency"'
expect_jq "erp --json" '.target.attributes | all(.[]; has("region") | not)'
expect_jq "erp --json" '.suggestions[] | select(.attribute == "eroeffnung") | .column == "Eröffnung" and .mapping == "{{ Eröffnung | date('"'"'%d.%m.%Y'"'"') }}"'
expect_jq "erp --json" '.suggestions[] | select(.attribute == "umsatz") | .mapping == "{{ Umsatz | number('"'"'de'"'"') }}"'
expect_jq "erp --json" '.suggestions[] | select(.attribute == "waehrung") | .mapping == "{{ Währung | currency_code }}"'
expect_jq "erp --json" '.suggestions[] | select(.attribute == "e_mail") | .mapping == "E-Mail" and .reasons == ["values: 100% e-mail"] and .confidence == 1'
expect_jq "erp --json" 'all(.suggestions[]; .required and (.confidence >= 0 and .confidence <= 1))'

# --write: a new job that check accepts and that runs
run_in "$d" suggest stores.csv --write new.json
expect_exit "erp --write" 0
expect_output "erp --write" stdout "wrote new.json"
expect_jq_file "erp --write" "$d/new.json" '.name == "stores" and .source.url == "stores.csv" and .source.format == "csv"'
expect_jq_file "erp --write" "$d/new.json" '.source.csv == {"delimiter": ";", "encoding": "latin1"}'
expect_jq_file "erp --write" "$d/new.json" '.options.sync == "upsert" and .target.key == ["filiale"]'
expect_jq_file "erp --write" "$d/new.json" '[keys_unsorted[]] == ["name","description","source","target","mapping","options"]'
expect_jq_file "erp --write" "$d/new.json" '.mapping.umsatz.value == "{{ Umsatz | number('"'"'de'"'"') }}" and (.mapping.umsatz.note | startswith("suggested"))'
run_in "$d" check new.json --input stores.csv
expect_exit "erp --write: check" 0
expect_output "erp --write: check" stdout "every column the mapping reads is in the file"
run_in "$d" run new.json --out out --state state --quiet
expect_exit "erp --write: run" 0
if [ "$(wc -l <"$d/out/stores.ndjson")" -eq 6 ] &&
    grep -q '"eroeffnung":"2019-03-01","umsatz":"1234.50","waehrung":"EUR"' "$d/out/stores.ndjson" &&
    grep -q '"waehrung":"GBP"' "$d/out/stores.ndjson"; then
    ok "erp --write: run publishes the 6 rows, converted"
else
    not_ok "erp --write: run publishes the 6 rows, converted" "$(cat "$d/out/stores.ndjson")"
fi

# an existing OUT.json is not replaced without --force
cp "$d/new.json" "$d/new.json.before"
run_in "$d" suggest stores.csv --rows 2 --write new.json
expect_exit "erp --write again" 2
expect_output "erp --write again" stderr "new.json exists"
if cmp -s "$d/new.json" "$d/new.json.before"; then
    ok "erp --write again: new.json unchanged"
else
    not_ok "erp --write again: new.json was changed"
fi
run_in "$d" suggest stores.csv --write new.json --force --json
expect_exit "erp --write --force" 0
expect_jq "erp --write --force" '.rows == 6'
expect_output "erp --write --force" stderr "wrote new.json"
run_in "$d" check new.json
expect_exit "erp --write --force: check" 0

# ---- the same export against a job's target (its mapping left empty) ----
run_in "$d" suggest stores.csv --job job.json --json
expect_exit "erp --job" 0
expect_jq "erp --job" '(.suggestions | length) == 8 and .unmapped_attributes == ["status"] and .unmatched_columns == []'
expect_jq "erp --job" '.suggestions[0:2] | map(.attribute) | sort == ["name", "store_id"]'
expect_jq "erp --job" '.suggestions[0:2] | all(.required)'
expect_jq "erp --job" '.suggestions[2:] | all(.required | not)'
expect_jq "erp --job" '[.suggestions[2:][].confidence] | . == (sort | reverse)'
expect_jq "erp --job" 'has("target") | not'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "store_id") | .column == "Filiale" and .reasons == ["synonym of filiale"]'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "zip") | .column == "PLZ" and .reasons == ["synonym of plz"]'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "opened_on") | .mapping == "{{ Eröffnung | date('"'"'%d.%m.%Y'"'"') }}" and .confidence > 0.9'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "revenue") | .mapping == "{{ Umsatz | number('"'"'de'"'"') }}"'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "currency") | .mapping == "{{ Währung | currency_code }}" and (.reasons[0] == "synonym of waehrung")'
expect_jq "erp --job" '.suggestions[] | select(.attribute == "phone") | .mapping == "Telefon" and .reasons[1] == "values: 100% phone numbers"'
# contact: no name in common, the values are e-mails
expect_jq "erp --job" '.suggestions[] | select(.attribute == "contact") | .column == "E-Mail" and .reasons == ["values: 100% e-mail"] and .confidence < 0.9'

run_in "$d" suggest stores.csv --job job.json
expect_exit "erp --job table" 0
expect_output "erp --job table" stdout "synonym of plz"
expect_output "erp --job table" stdout "attributes without a column:"
expect_output "erp --job table" stdout "status"

run_in "$d" suggest stores.csv --job job.json --write filled.json
expect_exit "erp --job --write" 0
expect_jq_file "erp --job --write" "$d/filled.json" '.description | startswith("Store master data")'
expect_jq_file "erp --job --write" "$d/filled.json" '.source.csv.encoding == "latin1" and .target.object == "locations"'
expect_jq_file "erp --job --write" "$d/filled.json" '(.mapping | keys_unsorted) == ["store_id","name","zip","opened_on","revenue","currency","contact","phone"]'
expect_jq_file "erp --job --write" "$d/filled.json" '.mapping.store_id.value == "Filiale"'
run_in "$d" check filled.json --input stores.csv
expect_exit "erp --job --write: check" 0
run_in "$d" run filled.json --out out2 --state state --quiet
expect_exit "erp --job --write: run" 0

# the JOBS.md example: its own entries stay where no column fits
run_in "$d" suggest stores.csv --job "$REPO/tests/fixtures/jobs/jobs_md_example.json" --write md.json
expect_exit "JOBS.md example --write" 0
expect_output "JOBS.md example --write" stdout "the job's own mapping kept for status, region_id"
expect_jq_file "JOBS.md example --write" "$d/md.json" '.mapping.status == "{{ Status | lower | default('"'"'open'"'"') }}" and .mapping.email.value == "E-Mail"'
run_in "$d" check md.json
expect_exit "JOBS.md example --write: check" 0

# a mapping that has some entries: the others are proposed (the job loads
# although its required name has none yet)
cat >"$d/partial.json" <<'EOF'
{ "name": "partial", "source": { "url": "stores.csv", "csv": { "delimiter": ";", "encoding": "latin1" } },
  "target": { "object": "o", "key": ["store_id"],
    "attributes": { "store_id": { "type": "text" }, "name": { "type": "text", "required": true },
                    "zip": { "type": "text" } } },
  "mapping": { "zip": "{{ PLZ | trim }}" } }
EOF
run_in "$d" suggest stores.csv --job partial.json --json
expect_exit "partial mapping" 0
expect_jq "partial mapping" '[.suggestions[] | [.attribute, .column]] == [["name","Name"],["store_id","Filiale"],["zip","PLZ"]]'

# a required attribute no column fits: the job is written, not valid yet
cat >"$d/needs.json" <<'EOF'
{ "name": "needs", "source": { "url": "stores.csv", "csv": { "encoding": "latin1" } },
  "target": { "object": "o", "key": ["store_id"],
    "attributes": { "store_id": { "type": "text" }, "iban": { "type": "text", "required": true } } } }
EOF
run_in "$d" suggest stores.csv --job needs.json --write needs-out.json
expect_exit "unfinished --write" 0
expect_output "unfinished --write" stdout "not valid yet"
expect_output "unfinished --write" stdout "iban"
run_in "$d" check needs-out.json
expect_exit "unfinished --write: check" 2
expect_output "unfinished --write: check" stderr "iban"

# with --job the job's source options apply: this one says nothing of the
# encoding, so the file is read as UTF-8, which it is not
printf '{ "name": "u", "source": { "url": "stores.csv" }, "target": { "object": "o", "key": ["id"], "attributes": { "id": { "type": "text" } } } }' >"$d/utf8job.json"
run_in "$d" suggest stores.csv --job utf8job.json
expect_exit "--job: the job's encoding" 1
expect_output "--job: the job's encoding" stderr "stores.csv: line 1: the header row is not valid UTF-8"

# ---- windows-1252 (€) and --rows ------------------------------------------
printf 'Nr;Betrag;Währung\n1;1.000,00;€\n2;20,50;€\n3;3,00;EUR\n' |
    iconv -f utf-8 -t windows-1252 >"$d/cp1252.csv"
run_in "$d" suggest cp1252.csv --json --rows 2
expect_exit "windows-1252" 0
expect_jq "windows-1252" '.encoding == "windows-1252" and .rows == 2'
expect_jq "windows-1252" '.suggestions[] | select(.attribute == "waehrung") | .mapping == "{{ Währung | currency_code }}"'
expect_jq "windows-1252" '.target.key == ["nr"]'

# ---- JSON ---------------------------------------------------------------------
run_in "$d" suggest customers.json --json
expect_exit "json" 0
expect_jq "json" '.format == "json" and .rows == 6 and .columns == 15 and (has("delimiter") | not)'
expect_jq "json" '.target.object == "customers" and .target.key == ["customer_id"]'
expect_jq "json" '.target.attributes.customer_id.type == "integer"'
expect_jq "json" '.target.attributes.email.type == "email"'
expect_jq "json" '.target.attributes.phone.type == "phone"'
expect_jq "json" '.target.attributes.birth_date.type == "date"'
expect_jq "json" '.target.attributes.created_at.type == "datetime"'
expect_jq "json" '.target.attributes.active.type == "boolean"'
expect_jq "json" '.target.attributes.status == {"type": "enum", "required": true, "values": ["gold", "silver", "bronze"]}'
expect_jq "json" '.target.attributes.website == {"type": "url"}'
expect_jq "json" '.target.attributes.balance.type == "decimal"'
expect_jq "json" '.target.attributes.address_zip.type == "text"'
expect_jq "json" '.suggestions[] | select(.attribute == "address_city") | .mapping == "address.city"'
expect_jq "json" '.suggestions[-1].attribute == "website"'
run_in "$d" suggest customers.json --write customers-job.json
expect_exit "json --write" 0
run_in "$d" check customers-job.json
expect_exit "json --write: check" 0
run_in "$d" run customers-job.json --out out3 --state state --quiet
expect_exit "json --write: run" 0

# a JSON job with its records path, the target's names in English
cat >"$d/crm.json" <<'EOF'
{ "name": "crm", "source": { "url": "customers.json" },
  "target": { "object": "contacts", "key": ["customer_no"],
    "attributes": {
      "customer_no": { "type": "integer", "required": true },
      "vorname": { "type": "text" }, "nachname": { "type": "text" },
      "e_mail_adresse": { "type": "email" }, "geburtsdatum": { "type": "date" },
      "ort": { "type": "text" }, "land": { "type": "text" }, "plz": { "type": "text" } } },
  "mapping": {} }
EOF
run_in "$d" suggest customers.json --job crm.json --json
expect_exit "json --job" 0
expect_jq "json --job" '.suggestions[] | select(.attribute == "customer_no") | .column == "customerId"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "vorname") | .column == "firstName"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "nachname") | .column == "lastName"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "e_mail_adresse") | .column == "email"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "geburtsdatum") | .column == "birthDate"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "ort") | .column == "address.city"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "land") | .column == "address.country"'
expect_jq "json --job" '.suggestions[] | select(.attribute == "plz") | .column == "address.zip"'
expect_jq "json --job" '.unmapped_attributes == []'

# ---- XLSX (made with openpyxl) ---------------------------------------------
if /usr/bin/python3 -c 'import openpyxl' 2>/dev/null; then
    /usr/bin/python3 - "$d/articles.xlsx" <<'EOF'
import datetime, sys, openpyxl
wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Artikel"
ws.append(["Artikelnummer", "Bezeichnung", "Preis", "Menge", "Lieferdatum", "Aktiv", "Webseite"])
for r in [
    ("A-100", "Schraube M4", 0.15, 1000, datetime.date(2025, 1, 15), "ja", "https://shop.example.com/a100"),
    ("A-101", "Mutter M4", 0.05, 2500, datetime.date(2025, 2, 1), "nein", "https://shop.example.com/a101"),
    ("A-102", "Unterlegscheibe", 0.02, 5000, datetime.date(2025, 2, 28), "ja", "https://shop.example.com/a102"),
    ("A-103", "Dübel 6 mm", 0.1, 800, datetime.date(2025, 3, 10), "ja", "https://shop.example.com/a103"),
]:
    ws.append(list(r))
for (c,) in ws.iter_rows(min_row=2, min_col=5, max_col=5):
    c.number_format = "DD.MM.YYYY"
wb.save(sys.argv[1])
EOF
    run_in "$d" suggest articles.xlsx --json
    expect_exit "xlsx" 0
    expect_jq "xlsx" '.format == "xlsx" and .rows == 4 and .target.key == ["artikelnummer"]'
    expect_jq "xlsx" '.target.attributes.preis == {"type": "decimal", "required": true, "scale": 2}'
    expect_jq "xlsx" '.target.attributes.menge.type == "integer" and .target.attributes.lieferdatum.type == "date"'
    expect_jq "xlsx" '.target.attributes.aktiv.type == "boolean" and .target.attributes.webseite.type == "url"'
    run_in "$d" suggest articles.xlsx --job products.json --json
    expect_exit "xlsx --job" 0
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "sku") | .column == "Artikelnummer" and .mapping == "Artikelnummer"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "title") | .column == "Bezeichnung"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "price") | .column == "Preis"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "quantity") | .column == "Menge"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "delivery_date") | .column == "Lieferdatum" and .mapping == "Lieferdatum"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "active") | .column == "Aktiv"'
    expect_jq "xlsx --job" '.suggestions[] | select(.attribute == "url") | .column == "Webseite"'
    expect_jq "xlsx --job" '.unmatched_columns == [] and .unmapped_attributes == []'
    run_in "$d" suggest articles.xlsx --job products.json --write products-out.json
    expect_exit "xlsx --job --write" 0
    run_in "$d" check products-out.json
    expect_exit "xlsx --job --write: check" 0
    run_in "$d" run products-out.json --out out4 --state state --quiet
    expect_exit "xlsx --job --write: run" 0
else
    ok "xlsx: skipped (no openpyxl for /usr/bin/python3)"
fi

# ---- errors -----------------------------------------------------------------------
run_in "$d" suggest nosuch.csv
expect_exit "missing file" 1
expect_output "missing file" stderr "nosuch.csv"
printf 'PK\003\004 not really a workbook' >"$d/broken.xlsx"
run_in "$d" suggest broken.xlsx
expect_exit "broken xlsx" 1
expect_output "broken xlsx" stderr "broken.xlsx"
: >"$d/empty.csv"
run_in "$d" suggest empty.csv
expect_exit "empty file" 1
expect_output "empty file" stderr "empty.csv"
run_in "$d" suggest stores.csv --job nosuch.json
expect_exit "missing job" 2
expect_output "missing job" stderr "nosuch.json"
printf '{ "name": "x", "source": { "url": "a.csv" }, "target": { "object": "o", "key": ["id"], "attributes": { "id": { "type": "txt" } } } }' >"$d/badjob.json"
run_in "$d" suggest stores.csv --job badjob.json
expect_exit "bad job" 2
expect_output "bad job" stderr "target.attributes.id.type"
printf '{ "name": ' >"$d/brokenjob.json"
run_in "$d" suggest stores.csv --job brokenjob.json
expect_exit "broken job" 2
expect_output "broken job" stderr "brokenjob.json: line 1"
run_in "$d" suggest
expect_exit "no file" 2
run_in "$d" suggest stores.csv extra.csv
expect_exit "two files" 2
run_in "$d" suggest stores.csv --rows 0
expect_exit "--rows 0" 2
expect_output "--rows 0" stderr "--rows"
run_in "$d" suggest stores.csv --rows
expect_exit "--rows without a number" 2
run_in "$d" suggest stores.csv --force
expect_exit "--force without --write" 2
run_in "$d" suggest stores.csv --frobnicate
expect_exit "unknown option" 2
run_in "$d" suggest --help
expect_exit "--help" 0
expect_output "--help" stdout "usage: sluice suggest FILE"

finish
