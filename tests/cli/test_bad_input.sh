# CLI tests of bad input in the text formats, end to end through `sluice
# run`: truncated and corrupt files of every text format, wrong encodings,
# a 500 MB JSON array (and a 500 MB array inside one record, and before the
# records), rows of 10,000 and 20,000 columns, XXE and billion laughs. Each
# must end in a rejected row or a failed run with a clear reason, in bounded
# time (every run under `timeout`) and memory (peak RSS from /usr/bin/time
# -f %M, below MAX_RSS_MIB).
#
# What the unit tests (tests/unit/test_{csv,json_reader,xml_reader}.c) and
# test_formats.sh, test_json.sh, test_xml.sh already cover end to end (a
# small truncated JSON, XXE of file:///etc/passwd in element content, a
# valid 10,000-column CSV, UTF-16 with and without BOM) is not repeated.
# Big inputs are generated into the temporary directory by
# tests/bench/gen_formats (SLUICE_GEN_FORMATS, set by ctest; by hand: the
# one next to the sluice binary) and deleted after their case.
# Run by ctest: bash test_bad_input.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

GEN=${SLUICE_GEN_FORMATS:-$(dirname "$SLUICE")/tests/bench/gen_formats}
if [ ! -x "$GEN" ] || [ ! -x /usr/bin/time ] || ! command -v timeout >/dev/null; then
    not_ok "setup: needs $GEN (cmake --build BUILD --target gen_formats), /usr/bin/time" \
        "(apt-get install time) and timeout (coreutils)"
    finish
fi

# Peak RSS a run may reach. Sanitizer builds carry shadow memory and a
# quarantine of freed blocks (ASan keeps up to 256 MiB): a looser bound.
MAX_RSS_MIB=64
if grep -q -e __asan_init -e __tsan_init "$SLUICE"; then
    MAX_RSS_MIB=512
    echo "# sanitizer build: peak RSS bound $MAX_RSS_MIB MiB"
fi
SECS=0 # wall seconds of the last run
RSS=0  # its peak RSS, KiB

# job DIR FORMAT FILE [SOURCE-EXTRA]: DIR/job.json reads FILE in FORMAT and
# maps id (required) and name; append, so that no key set grows.
job() {
    cat >"$1/job.json" <<EOF
{ "name": "bad-input",
  "source": { "url": "$3", "format": "$2"${4:+, $4} },
  "target": { "object": "stores",
    "attributes": { "id": {"type": "text", "required": true}, "name": {"type": "text"} } },
  "mapping": { "id": "id", "name": "name" },
  "options": { "sync": "append", "skip_unchanged": false } }
EOF
}

# try NAME DIR [LIMIT_S]: runs DIR/job.json under timeout (default 30 s) and
# /usr/bin/time; sets RC, OUT (like run_in), SECS and RSS, and checks that
# the run ended in time and below MAX_RSS_MIB.
try() {
    local name=$1 dir=$2 limit=${3:-30} t
    OUT=$dir/.sluice.$((PASSED + FAILED))
    pushd "$dir" >/dev/null || return
    timeout -k 5 "$limit" /usr/bin/time -f '%e %M' -o "$OUT.time" \
        "$SLUICE" run --quiet job.json --out out --state state >"$OUT.stdout" 2>"$OUT.stderr"
    RC=$?
    popd >/dev/null || return
    if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
        not_ok "$name: did not finish within $limit s" "stderr: $(head -c 600 "$OUT.stderr")"
        return
    fi
    t=$(tail -n 1 "$OUT.time")
    SECS=${t% *}
    RSS=${t#* }
    if [ "$RSS" -lt $((MAX_RSS_MIB * 1024)) ]; then
        ok "$name: finished in $SECS s, peak RSS $((RSS / 1024)) MiB < $MAX_RSS_MIB MiB"
    else
        not_ok "$name: peak RSS $((RSS / 1024)) MiB, bound $MAX_RSS_MIB MiB ($SECS s)"
    fi
}

# run_json_field DIR NAME: FIELD gets the value of "NAME" in DIR/out/run.json
# (a string without its quotes, or a number); empty when absent.
run_json_field() {
    local re='"'"$2"'": ("(([^"\\]|\\.)*)"|([0-9]+))'
    slurp "$1/out/run.json"
    FIELD=""
    [[ $TEXT =~ $re ]] && FIELD=${BASH_REMATCH[2]}${BASH_REMATCH[4]}
    return 0
}

# expect_failed NAME DIR TEXT: exit 1, run.json status failed with a reason
# holding TEXT and the file's name, nothing published.
expect_failed() {
    local name=$1 dir=$2 text=$3
    expect_exit "$name" 1
    run_json_field "$dir" status
    local status=$FIELD
    run_json_field "$dir" reason
    if [ "$status" = failed ] && [[ $FIELD == *"$text"* ]]; then
        ok "$name: failed: $FIELD"
    else
        not_ok "$name: status '$status', reason '$FIELD', expected failed with '$text'"
    fi
    run_json_field "$dir" published
    if [ "$FIELD" = 0 ] && [ ! -e "$dir/out/stores.ndjson" ]; then
        ok "$name: nothing published"
    else
        not_ok "$name: published '$FIELD' rows of a failed run"
    fi
}

# expect_counts NAME DIR READ PUBLISHED REJECTED
expect_counts() {
    local name=$1 dir=$2 got="" k
    for k in read published rejected; do
        run_json_field "$dir" $k
        got="$got $FIELD"
    done
    if [ "$got" = " $3 $4 $5" ]; then
        ok "$name: read $3, published $4, rejected $5"
    else
        not_ok "$name: read, published, rejected:$got; expected $3 $4 $5"
    fi
}

# expect_rejected NAME DIR ROW TEXT: errors.csv has row ROW with TEXT in its
# errors.
expect_rejected() {
    local name=$1 dir=$2 row=$3 text=$4 line
    line=$(grep -a -m 1 "^$row," "$dir/out/errors.csv")
    if [[ $line == *"$text"* ]]; then
        ok "$name: row $row rejected: $text"
    else
        not_ok "$name: errors.csv row $row lacks '$text'" "$(head -c 400 "$dir/out/errors.csv")"
    fi
}

# case_dir NAME: a fresh directory for a case, printed.
case_dir() {
    rm -rf "${TMP:?}/$1"
    mkdir -p "$TMP/$1"
    echo "$TMP/$1"
}

XML_RECORDS='"xml": {"records": "/stores/store"}'

# Small generated files of each format: 40 rows, all valid.
"$GEN" csv 40 >"$TMP/s.csv" 2>/dev/null
"$GEN" json 40 >"$TMP/s.json" 2>/dev/null
"$GEN" ndjson 40 >"$TMP/s.ndjson" 2>/dev/null
"$GEN" xml 40 >"$TMP/s.xml" 2>/dev/null

# ---- truncated files ----------------------------------------------------

# CSV cut in the middle of row 21: that row is rejected, short
d=$(case_dir csv_cut)
{ head -n 21 "$TMP/s.csv"; sed -n 22p "$TMP/s.csv" | head -c 30; } >"$d/s.csv"
job "$d" csv s.csv
try csv_cut "$d"
expect_exit csv_cut 3
expect_counts csv_cut "$d" 21 20 1
expect_rejected csv_cut "$d" 21 "the header has 7"

# CSV cut inside a quoted field: unterminated, rejected
d=$(case_dir csv_cut_quote)
{ head -n 11 "$TMP/s.csv"; printf '999,"Filiale Ber'; } >"$d/s.csv"
job "$d" csv s.csv
try csv_cut_quote "$d"
expect_exit csv_cut_quote 3
expect_counts csv_cut_quote "$d" 11 10 1
expect_rejected csv_cut_quote "$d" 11 "unterminated quoted field"

# CSV cut inside a UTF-8 character ("M\xc3" of "München"): rejected
d=$(case_dir csv_cut_utf8)
printf 'id,name\n1,a\n2,M\xc3' >"$d/s.csv"
job "$d" csv s.csv
try csv_cut_utf8 "$d"
expect_exit csv_cut_utf8 3
expect_counts csv_cut_utf8 "$d" 2 1 1
expect_rejected csv_cut_utf8 "$d" 2 "invalid UTF-8 at byte offset 15 (0xc3)"

# JSON cut inside a record of a 2,000-row array: failed, naming the place
d=$(case_dir json_cut)
"$GEN" json 2000 2>/dev/null | head -c 100000 >"$d/s.json"
job "$d" json s.json
try json_cut "$d"
expect_failed json_cut "$d" "s.json: invalid JSON at byte 100000: unexpected end of the file inside a record (is the file cut off?)"

# NDJSON cut in the middle of line 31: that line is rejected
d=$(case_dir ndjson_cut)
{ head -n 30 "$TMP/s.ndjson"; sed -n 31p "$TMP/s.ndjson" | head -c 40; } >"$d/s.ndjson"
job "$d" ndjson s.ndjson
try ndjson_cut "$d"
expect_exit ndjson_cut 3
expect_counts ndjson_cut "$d" 31 30 1
expect_rejected ndjson_cut "$d" 31 "line 31: invalid JSON: unterminated string"

# NDJSON cut inside a UTF-8 character: rejected
d=$(case_dir ndjson_cut_utf8)
printf '{"id":"1","name":"a"}\n{"id":"2","name":"M\xc3' >"$d/s.ndjson"
job "$d" ndjson s.ndjson
try ndjson_cut_utf8 "$d"
expect_exit ndjson_cut_utf8 3
expect_rejected ndjson_cut_utf8 "$d" 2 "line 2: invalid UTF-8 at byte offset 41 (0xc3)"

# XML cut in the middle: failed, with line and column
d=$(case_dir xml_cut)
head -c 3000 "$TMP/s.xml" >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try xml_cut "$d"
expect_failed xml_cut "$d" "s.xml: malformed XML at line"

# UTF-16 with an odd number of bytes (cut in a code unit): the last row
# is rejected
d=$(case_dir utf16_odd)
{
    printf '\xff\xfe'
    printf 'id,name\n1,a\n2,b\n' | iconv -f UTF-8 -t UTF-16LE
    printf 'x'
} >"$d/s.csv"
job "$d" csv s.csv
try utf16_odd "$d"
expect_exit utf16_odd 3
expect_counts utf16_odd "$d" 3 2 1

# ---- corrupt files ------------------------------------------------------

# gzip-compressed files under a text format's name
for f in csv json xml; do
    d=$(case_dir gzip_$f)
    gzip -c "$TMP/s.$f" >"$d/s.$f"
    if [ $f = xml ]; then job "$d" $f s.$f "$XML_RECORDS"; else job "$d" $f s.$f; fi
    try gzip_$f "$d"
done
expect_failed gzip_csv "$TMP/gzip_csv" "s.csv: the file looks binary (NUL byte at offset"
expect_failed gzip_json "$TMP/gzip_json" "s.json: not JSON: the file starts with byte 0x1f"
expect_failed gzip_xml "$TMP/gzip_xml" "s.xml: malformed XML at line 1"

# JSON with garbage in the middle: failed at that byte
d=$(case_dir json_garbage)
{
    head -c 2000 "$TMP/s.json"
    printf '\x01garbage]]'
    tail -c +2011 "$TMP/s.json"
} >"$d/s.json"
job "$d" json s.json
try json_garbage "$d"
expect_failed json_garbage "$d" "s.json: invalid JSON at byte 2000"

# NDJSON with broken lines: each one a rejected row, the others published
d=$(case_dir ndjson_garbage)
sed -e '5s/"id"/"id/' -e '6s/$/ ]]/' -e '7s/^/\x01/' -e '8s/Filiale/\xff\xfe/' \
    "$TMP/s.ndjson" >"$d/s.ndjson"
job "$d" ndjson s.ndjson
try ndjson_garbage "$d"
expect_exit ndjson_garbage 3
expect_counts ndjson_garbage "$d" 40 36 4
expect_rejected ndjson_garbage "$d" 5 "line 5: invalid JSON: expected ':' after a name"
expect_rejected ndjson_garbage "$d" 6 "line 6: invalid JSON: unexpected text after the value"
expect_rejected ndjson_garbage "$d" 7 "line 7: invalid JSON: unexpected character"
expect_rejected ndjson_garbage "$d" 8 "line 8: invalid UTF-8 at byte offset"

# XML with a mismatched end tag on line 12: failed there
d=$(case_dir xml_mismatch)
sed '12s|</name>|</nam>|' "$TMP/s.xml" >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try xml_mismatch "$d"
expect_failed xml_mismatch "$d" "s.xml: malformed XML at line 12, column"

# ---- wrong encodings ----------------------------------------------------

# latin1 bytes in a CSV read as UTF-8: that row is rejected
d=$(case_dir csv_latin1)
printf 'id,name\n1,M\xfcller\n2,ok\n' >"$d/s.csv"
job "$d" csv s.csv
try csv_latin1 "$d"
expect_exit csv_latin1 3
expect_counts csv_latin1 "$d" 2 1 1
expect_rejected csv_latin1 "$d" 1 "invalid UTF-8 at byte offset 11 (0xfc)"

# UTF-16 without a BOM read as UTF-8: failed, with a hint
d=$(case_dir csv_utf16_as_utf8)
iconv -f UTF-8 -t UTF-16LE "$TMP/s.csv" >"$d/s.csv"
job "$d" csv s.csv
try csv_utf16_as_utf8 "$d"
expect_failed csv_utf16_as_utf8 "$d" "set source.csv.encoding to utf-16"

# latin1 bytes in JSON: failed at that byte
d=$(case_dir json_latin1)
sed '5s/Filiale/Fili\xe4le/' "$TMP/s.json" >"$d/s.json"
job "$d" json s.json
try json_latin1 "$d"
expect_failed json_latin1 "$d" "s.json: invalid UTF-8 at byte offset"

# latin1 bytes in NDJSON: that line is rejected
d=$(case_dir ndjson_latin1)
sed '5s/Filiale/Fili\xe4le/' "$TMP/s.ndjson" >"$d/s.ndjson"
job "$d" ndjson s.ndjson
try ndjson_latin1 "$d"
expect_exit ndjson_latin1 3
expect_counts ndjson_latin1 "$d" 40 39 1
expect_rejected ndjson_latin1 "$d" 5 "line 5: invalid UTF-8 at byte offset"

# latin1 bytes in XML declared UTF-8; UTF-8 in XML labelled UTF-16; an
# encoding nobody knows: failed with libxml2's reason
d=$(case_dir xml_latin1)
sed '5s/Filiale/Fili\xe4le/' "$TMP/s.xml" >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try xml_latin1 "$d"
expect_failed xml_latin1 "$d" "Input is not proper UTF-8"
d=$(case_dir xml_not_utf16)
sed '1s/UTF-8/UTF-16/' "$TMP/s.xml" >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try xml_not_utf16 "$d"
expect_failed xml_not_utf16 "$d" "Document labelled UTF-16 but has UTF-8 content"
d=$(case_dir xml_unknown_encoding)
sed '1s/UTF-8/X-NO-SUCH-CHARSET/' "$TMP/s.xml" >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try xml_unknown_encoding "$d"
expect_failed xml_unknown_encoding "$d" "Unsupported encoding X-NO-SUCH-CHARSET"

# ---- big inputs ---------------------------------------------------------

# A 500 MB JSON array of records: streamed, every record published
d=$(case_dir json_500mb)
"$GEN" --bytes 500M json >"$d/s.json" 2>"$d/gen.txt"
rows=$(sed -n 's/.* rows=\([0-9]*\).*/\1/p' "$d/gen.txt")
job "$d" json s.json
try json_500mb "$d" 120
expect_exit json_500mb 0
expect_counts json_500mb "$d" "$rows" "$rows" 0
echo "# json_500mb: $rows records, $(stat -c %s "$d/s.json") bytes in $SECS s"
rm -rf "$d"

# One record holding a 500 MB array: failed at the record size limit
# (the generator is `yes`: the newlines are JSON whitespace)
d=$(case_dir json_500mb_record)
{
    printf '[{"id": "1", "name": "a", "n": ['
    yes '12345678,' | head -c 500M
    printf '0]}, {"id": "2"}]\n'
} >"$d/s.json"
job "$d" json s.json
try json_500mb_record "$d" 60
expect_failed json_500mb_record "$d" "s.json: record 1 is larger than 16777216 bytes (max_value)"
rm -rf "$d"

# 500 MB of another member before the records: skipped, not held
d=$(case_dir json_500mb_before)
{
    printf '{"junk": ['
    yes '12345678,' | head -c 500M
    printf '0], "data": [{"id": "1", "name": "a"}]}\n'
} >"$d/s.json"
job "$d" json s.json '"json": {"records": "$.data"}'
try json_500mb_before "$d" 120
expect_exit json_500mb_before 0
expect_counts json_500mb_before "$d" 1 1 0
rm -rf "$d"

# An NDJSON line of 40 MB: failed at the record size limit
d=$(case_dir ndjson_40mb_line)
{
    printf '{"id": "1", "name": "'
    head -c 40M /dev/zero | tr '\0' x
    printf '"}\n{"id": "2"}\n'
} >"$d/s.ndjson"
job "$d" ndjson s.ndjson
try ndjson_40mb_line "$d"
expect_failed ndjson_40mb_line "$d" "s.ndjson: line 1 is longer than 16777216 bytes (max_value)"
rm -rf "$d"

# A row of 10,000 columns under a 3-column header: rejected, the extra
# values counted, not kept
d=$(case_dir csv_10000_columns)
awk 'BEGIN {
    print "id,name,city"; print "1,a,b"
    printf "2"; for (i = 2; i <= 10000; i++) printf ",v%d", i; print ""
    print "3,c,d"
}' >"$d/s.csv"
job "$d" csv s.csv
try csv_10000_columns "$d"
expect_exit csv_10000_columns 3
expect_counts csv_10000_columns "$d" 3 2 1
expect_rejected csv_10000_columns "$d" 2 "has 10000 fields, the header has 3 (extra: 'v4', 'v5', 'v6', 'v7', 'v8' and 9992 more)"

# The same with 2 KB values: a 20 MB row
d=$(case_dir csv_10000_wide_values)
awk 'BEGIN {
    x = sprintf("%2000s", ""); gsub(/ /, "x", x)
    print "id,name,city"; printf "2"; for (i = 2; i <= 10000; i++) printf ",%s", x; print ""
    print "3,c,d"
}' >"$d/s.csv"
job "$d" csv s.csv
try csv_10000_wide_values "$d"
expect_exit csv_10000_wide_values 3
expect_rejected csv_10000_wide_values "$d" 1 "has 10000 fields, the header has 3"

# 20,000 columns: over max_columns, failed
d=$(case_dir csv_20000_columns)
awk 'BEGIN {
    print "id,name,city"; print "1,a,b"
    printf "2"; for (i = 2; i <= 20000; i++) printf ",v%d", i; print ""
}' >"$d/s.csv"
job "$d" csv s.csv
try csv_20000_columns "$d"
expect_failed csv_20000_columns "$d" "s.csv: line 3: a row has more than 16384 columns (max_columns)"

# ---- XML entities -------------------------------------------------------

# A secret the entities below point at: it must appear in no output.
SECRET=$TMP/secret.txt
echo "SECRET-XXE-$$-$RANDOM" >"$SECRET"
# no_secret NAME DIR: the secret's text is in no file of DIR/out and not in
# what sluice printed.
no_secret() {
    local s
    s=$(cat "$SECRET")
    if grep -rqa "$s" "$2/out" "$OUT.stdout" "$OUT.stderr" 2>/dev/null; then
        not_ok "$1: the secret file's text leaked into the output"
    else
        ok "$1: nothing of the secret file in the output"
    fi
}

# xml_case NAME TEXT: a case directory with s.xml holding TEXT (printf
# format, %s: the secret's path) and the job.
xml_case() {
    local d
    d=$(case_dir "$1")
    # shellcheck disable=SC2059
    printf "$2" "$SECRET" >"$d/s.xml"
    job "$d" xml s.xml "$XML_RECORDS"
    echo "$d"
}

# an external entity over the network: refused, nothing fetched
d=$(xml_case xxe_http '<?xml version="1.0"?>
<!DOCTYPE stores [<!ENTITY x SYSTEM "http://127.0.0.1:9/%%s">]>
<stores><store><id>1</id><name>&x;</name></store></stores>\n')
try xxe_http "$d"
expect_failed xxe_http "$d" "s.xml: external entities are not allowed (&x;)"

# an external entity in an attribute: refused
d=$(xml_case xxe_attribute '<?xml version="1.0"?>
<!DOCTYPE stores [<!ENTITY x SYSTEM "file://%s">]>
<stores><store id="&x;"><id>1</id><name>n</name></store></stores>\n')
try xxe_attribute "$d"
expect_failed xxe_attribute "$d" "s.xml: malformed XML at line 3"
no_secret xxe_attribute "$d"

# an external parameter entity and an external DTD subset: never loaded,
# the records are read
d=$(xml_case xxe_parameter '<?xml version="1.0"?>
<!DOCTYPE stores [<!ENTITY %% p SYSTEM "file://%s"> %%p;]>
<stores><store><id>1</id><name>n</name></store></stores>\n')
try xxe_parameter "$d"
expect_exit xxe_parameter 0
expect_counts xxe_parameter "$d" 1 1 0
no_secret xxe_parameter "$d"
d=$(xml_case xxe_dtd '<?xml version="1.0"?>
<!DOCTYPE stores SYSTEM "file://%s">
<stores><store><id>1</id><name>n</name></store></stores>\n')
try xxe_dtd "$d"
expect_exit xxe_dtd 0
no_secret xxe_dtd "$d"

# XInclude is not processed: the element is no text
d=$(xml_case xinclude '<?xml version="1.0"?>
<stores xmlns:xi="http://www.w3.org/2001/XInclude"><store><id>1</id><name>n<xi:include href="file://%s" parse="text"/></name></store></stores>\n')
try xinclude "$d"
expect_exit xinclude 0
no_secret xinclude "$d"

# billion laughs (10^9 "lol"s), in an element and in an attribute: failed
# at once
laughs='<?xml version="1.0"?>\n<!DOCTYPE stores [\n<!ENTITY lol "lol">\n'
prev=lol
for i in 1 2 3 4 5 6 7 8 9; do
    laughs="$laughs<!ENTITY lol$i \""
    for k in 1 2 3 4 5 6 7 8 9 10; do laughs="$laughs&$prev;"; done
    laughs="$laughs\">\n"
    prev=lol$i
done
laughs="$laughs]>\n"
d=$(xml_case billion_laughs "$laughs<stores><store><id>1</id><name>&lol9;</name></store></stores>\n")
try billion_laughs "$d" 10
expect_failed billion_laughs "$d" "Detected an entity reference loop"
d=$(xml_case billion_laughs_attr "$laughs<stores><store a=\"&lol9;\"><id>1</id></store></stores>\n")
try billion_laughs_attr "$d" 10
expect_failed billion_laughs_attr "$d" "Detected an entity reference loop"

# quadratic blowup: a 100 kB entity referenced 100,000 times (10 GB of
# text): failed at the value size limit
d=$(case_dir quadratic_blowup)
{
    printf '<!DOCTYPE stores [<!ENTITY a "'
    head -c 100000 /dev/zero | tr '\0' a
    printf '">]><stores><store><id>1</id><name>'
    yes '&a;' | head -n 100000 | tr -d '\n'
    printf '</name></store></stores>\n'
} >"$d/s.xml"
job "$d" xml s.xml "$XML_RECORDS"
try quadratic_blowup "$d" 10
expect_failed quadratic_blowup "$d" "s.xml: record 1: the value of 'name' is longer than 16777216 bytes"

finish
