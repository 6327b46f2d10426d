# CLI tests of spreadsheet sources: `sluice run` on the XLSX and XLS
# workbooks of tests/fixtures/sheets (made by openpyxl and xlwt, see make.py)
# end to end, in both date systems, by file name and by content; and bad
# workbooks (truncated, corrupt, zip bombs, a DTD, no workbook, a sheet that
# does not exist), each a failed run whose reason names the file, in bounded
# time. Run by ctest: bash test_xlsx.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SHEETS=$REPO/tests/fixtures/sheets

# sheet_case CASE WORKBOOK [NAME]: stages tests/fixtures/sheets/cli/CASE
# with WORKBOOK copied in as NAME (default: its own name), and the expected
# files with the workbook's SHA-256 and size in run.json, under $TMP/want-N.
# Sets D (the run directory) and WANT.
sheet_case() {
    local name=${3:-$2}
    D=$TMP/$1-$name
    WANT=$TMP/want-$1-$name
    rm -rf "$D" "$WANT"
    mkdir -p "$D" "$WANT"
    cp "$SHEETS/cli/$1/job.json" "$D/"
    cp "$SHEETS/$2" "$D/$name"
    cp "$SHEETS/cli/$1/expected/"* "$WANT/" 2>/dev/null
    if [ -f "$WANT/run.json" ]; then
        local sum bytes
        sum=$(sha256sum "$SHEETS/$2" | cut -d' ' -f1)
        bytes=$(wc -c <"$SHEETS/$2" | tr -d ' ')
        sed -i -e "s/@SHA256@/$sum/" -e "s/@BYTES@/$bytes/" "$WANT/run.json"
    fi
}

# XLSX (openpyxl): the sheet by name, header row 2, dates, a blank row,
# formatted empty rows at the end, a duplicate key and bad values rejected
sheet_case xlsx_stores stores.xlsx
run_in "$D" run job.json --out out --state state
expect_exit xlsx_stores 3
expect_files xlsx_stores "$D/out" "$WANT"

# the same workbook in the 1904 date system: the same rows
sheet_case xlsx_stores stores_1904.xlsx stores.xlsx
run_in "$D" run job.json --out out --state state
expect_exit xlsx_1904 3
for f in stores.ndjson errors.csv rejected.ndjson; do
    same_file xlsx_1904 "$D/out/$f" "$WANT/$f"
done

# XLS (xlwt): the same cell rules (0.1 + 0.2 is exact in XLS; FreeXL reads
# booleans as 1 / 0, which the boolean attribute takes)
sheet_case xls_stores stores.xls
run_in "$D" run job.json --out out --state state
expect_exit xls_stores 3
expect_files xls_stores "$D/out" "$WANT"

sheet_case xls_stores stores_1904.xls stores.xls
run_in "$D" run job.json --out out --state state
expect_exit xls_1904 3
for f in stores.ndjson errors.csv rejected.ndjson; do
    same_file xls_1904 "$D/out/$f" "$WANT/$f"
done

# an XLSX workbook named .xls: the content wins over the name
sheet_case xls_stores stores.xlsx stores.xls
run_in "$D" run job.json --out out --state state
expect_exit xlsx_named_xls 3
same_file xlsx_named_xls "$D/out/stores.ndjson" "$SHEETS/cli/xlsx_stores/expected/stores.ndjson"

# a sheet that does not exist
sheet_case xlsx_stores stores.xlsx
sed -i 's/"sheet": "Stores"/"sheet": "Stors"/' "$D/job.json"
run_in "$D" run job.json --out out --state state
expect_exit xlsx_no_sheet 1
expect_output xlsx_no_sheet any \
    "stores.xlsx: no sheet named 'Stors' (the workbook has 'Notes', 'Stores', 'Hidden')"
sheet_case xls_stores stores.xls
sed -i 's/"sheet": "Stores"/"sheet": 5/' "$D/job.json"
run_in "$D" run job.json --out out --state state
expect_exit xls_no_sheet 1
expect_output xls_no_sheet any "stores.xls: no sheet 5: the workbook has 3 sheets"

# bad files: a failed run with the reason, in bounded time (ctest's timeout
# would catch a hang; a bomb must fail in seconds)
# bad LABEL FILE NAME REASON [SHEET]
bad() {
    local label=$1 file=$2 name=$3 want=$4 sheet=${5:-} t0 t1
    sheet_case bad_file "bad/$file" "$name"
    sed -i "s/\"book.xlsx\"/\"$name\"/" "$D/job.json"
    [ -n "$sheet" ] && sed -i "s/\"url\": /\"xlsx\": { \"sheet\": $sheet }, \"url\": /" "$D/job.json"
    t0=$(date +%s)
    run_in "$D" run job.json --out out --state state
    t1=$(date +%s)
    expect_exit "$label" 1
    expect_output "$label" any "$name: $want"
    if [ $((t1 - t0)) -le 20 ]; then
        ok "$label: failed in $((t1 - t0)) s"
    else
        not_ok "$label: took $((t1 - t0)) s"
    fi
}
bad truncated_xlsx truncated.xlsx book.xlsx "not an XLSX file: no zip archive"
bad corrupt_xlsx corrupt.xlsx book.xlsx "xl/worksheets/sheet2.xml cannot be inflated" 2
bad bomb_xlsx bomb.xlsx book.xlsx "xl/worksheets/sheet1.xml declares 67109056 bytes"
bad bomb_lying_xlsx bomb_lying.xlsx book.xlsx \
    "xl/worksheets/sheet1.xml inflates to more than 200 times its compressed size"
bad dtd_xlsx dtd.xlsx book.xlsx \
    "xl/worksheets/sheet1.xml: a DTD or declaration (<!D...) is not allowed"
bad no_workbook_xlsx no_workbook.xlsx book.xlsx \
    "not an XLSX file: the zip archive has no workbook (xl/workbook.xml)"
bad truncated_xls truncated.xls book.xls "the XLS file is truncated or corrupt"
bad corrupt_xls corrupt.xls book.xls "the XLS file"

finish
