# CLI tests of XML sources: a records path under a default namespace,
# attributes (@id), nested children (Address/City), CDATA, and the rejected
# rows' source fields in errors.csv and rejected.ndjson.
# Run by ctest: bash test_xml.sh <path-to-sluice> <repo-dir>.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

d=$(stage xml_stores)
run_in "$d" run job.json --out out --state state
expect_exit xml_stores 3
expect_files xml_stores "$d/out" "$FIX/xml_stores/expected"

# XXE: an external entity fails the run, and the file's contents appear nowhere
d=$(stage xml_stores "$TMP/xxe")
cat >"$d/stores.xml" <<'XML'
<?xml version="1.0"?>
<!DOCTYPE Export [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<Export xmlns="urn:erp"><Stores><Store id="1"><Name>&x;</Name></Store></Stores></Export>
XML
run_in "$d" run job.json --out out --state state
expect_exit xxe 1
if grep -rq "root:" "$d/out" "$OUT" 2>/dev/null; then
    not_ok "xxe: /etc/passwd leaked into the output"
else
    ok "xxe: nothing of /etc/passwd in the output"
fi

finish
