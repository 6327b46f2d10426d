#!/usr/bin/env bash
# The run report by e-mail (issue 5), end to end in embedded mode: a real
# SMTP server on loopback (Debian's python3-aiosmtpd, tests/integration/
# smtp_tool.py) captures the message; Python's email package (not GMime)
# parses it and openpyxl (not libxlsxwriter) opens the attached workbook.
# Cases: a report to two recipients, one refused; a CSV report with a
# formula-like column name; an unreachable server (the run is not failed,
# the failure is recorded); a report of 100,000 rejected rows.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
TOOL=$REPO/tests/integration/smtp_tool.py
MAIL=$TMP/mail
mkdir -p "$MAIL"
"$PY" "$TOOL" serve --dir "$MAIL" --refuse bad@example.com >"$TMP/smtp.out" 2>"$TMP/smtp.err" &
SMTP_PID=$!
trap 'kill $SMTP_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do
    PORT=$(head -1 "$TMP/smtp.out" 2>/dev/null)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "FAIL - the SMTP server did not start: $(cat "$TMP/smtp.err")"; exit 1; }
export SLUICE_SMTP_URL=smtp://127.0.0.1:$PORT SLUICE_SMTP_STARTTLS=off SLUICE_SMTP_FROM=sluice@example.com

# with_report DIR FORMAT EMAILS...: the demo job of DIR with a report
with_report() {
    local dir=$1 fmt=$2
    shift 2
    "$PY" - "$dir/job.json" "$fmt" "$@" <<'PYJ'
import json, sys
p, fmt, emails = sys.argv[1], sys.argv[2], sys.argv[3:]
j = json.load(open(p))
j["report"] = {"email": emails, "format": fmt, "when": "errors"}
json.dump(j, open(p, "w"), indent=2)
PYJ
}

# check NAME PYTHON-EXPRESSION-SCRIPT: runs the script (stdin) with the
# message file and the run dir as arguments; ok when it prints "ok"
check() {
    local name=$1 got
    shift
    got=$("$PY" - "$@" 2>&1)
    if [ "$got" = ok ]; then ok "$name"; else not_ok "$name" "$got"; fi
}

# 1. the demo: 6 rows rejected, two recipients, one of them refused
d=$TMP/demo
cp -R "$REPO/examples/stores" "$d"
with_report "$d" xlsx owner@example.com bad@example.com
run_in "$d" run job.json --out out --state state
expect_exit "xlsx report" 3
expect_output "xlsx report" stdout "report:    partly_sent, out/report.xlsx"
check "xlsx report: run.json records the delivery and the refused recipient" "$d/out/run.json" <<'PYC'
import json, sys
r = json.load(open(sys.argv[1]))["report"]
assert r["status"] == "partly_sent", r
assert r["recipients"] == ["owner@example.com", "bad@example.com"], r
assert r["refused"].startswith("bad@example.com: 550"), r
assert r["attempts"] == 1 and r["file"] == "report.xlsx", r
print("ok")
PYC
check "xlsx report: the message, parsed, and its workbook, opened" "$MAIL/msg-1.eml" "$MAIL/msg-1.json" <<'PYC'
import email, email.policy, io, json, sys, openpyxl
env = json.load(open(sys.argv[2]))
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
assert m["Subject"] == "[sluice] store-locations completed with errors: 6 of 25 rows rejected", m["Subject"]
assert m["From"] == "sluice@example.com", m["From"]
plain = m.get_body(("plain",)).get_content()
html = m.get_body(("html",)).get_content()
assert "Rejected     6 (1 duplicate keys)" in plain, plain
assert "Most frequent problems" in plain and "<table" in html, plain
att = [p for p in m.iter_attachments()]
assert len(att) == 1, att
a = att[0]
assert a.get_filename().startswith("store-locations-") and a.get_filename().endswith("-rejected-rows.xlsx")
wb = openpyxl.load_workbook(io.BytesIO(a.get_content()))
assert wb.sheetnames[0] == "Summary", wb.sheetnames
ws = wb["Rejected rows"]
rows = list(ws.iter_rows(values_only=True))
assert rows[0][:3] == ("_row", "_errors", "Filiale"), rows[0]
assert len(rows) == 7, len(rows)
for row in ws.iter_rows():
    for c in row:
        assert c.data_type != "f", (c.coordinate, c.value)
# the duplicate key is there with its problem, and a highlighted cell has a comment
errs = [r[1] for r in rows[1:]]
assert any("duplicate key" in e for e in errs), errs
assert any(c.comment for row in ws.iter_rows() for c in row), "no comment"
print("ok")
PYC

# 2. CSV, and a source column named like a formula: neutralized in the
# attachment, untouched in errors.csv
d=$TMP/csv
mkdir -p "$d"
printf "id,=cmd|' /C calc'!A0,n\n1,=1+1,x\n2,ok,5\n" >"$d/in.csv"
cat >"$d/job.json" <<'JOB'
{"name": "formulas", "source": {"url": "in.csv"},
 "target": {"object": "things", "key": ["id"],
            "attributes": {"id": {"type": "text"}, "n": {"type": "integer"}}},
 "mapping": {"id": "id", "n": "n"},
 "report": {"email": ["owner@example.com"], "format": "csv"}}
JOB
run_in "$d" run job.json --out out --state state
expect_exit "csv report" 3
check "csv report: formulas neutralized in the attachment" "$MAIL/msg-2.eml" "$d/out/errors.csv" <<'PYC'
import csv, email, email.policy, io, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
a = list(m.iter_attachments())[0]
assert a.get_content_type() == "text/csv", a.get_content_type()
text = a.get_content() if isinstance(a.get_content(), str) else a.get_content().decode("utf-8-sig")
rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
assert rows[0] == ["_row", "_errors", "id", "'=cmd|' /C calc'!A0", "n"], rows[0]
assert rows[1][3] == "'=1+1", rows[1]
# errors.csv stays as JOBS.md defines it, for re-upload
e = list(csv.reader(open(sys.argv[2], newline="")))
assert e[0][3] == "=cmd|' /C calc'!A0" and e[1][3] == "=1+1", e
print("ok")
PYC

# 3. an unreachable server: retried, recorded on the run, the run not failed
d=$TMP/down
cp -R "$REPO/examples/stores" "$d"
with_report "$d" xlsx owner@example.com
SLUICE_SMTP_URL=smtp://127.0.0.1:1 SLUICE_SMTP_RETRIES=2 SLUICE_SMTP_RETRY_DELAY_MS=10 \
    run_in "$d" run job.json --out out --state state
expect_exit "unreachable smtp" 3
check "unreachable smtp: the failure recorded on the run" "$d/out/run.json" <<'PYC'
import json, sys
r = json.load(open(sys.argv[1]))
rep = r["report"]
assert r["status"] == "completed_with_errors", r["status"]
assert rep["status"] == "failed" and rep["attempts"] == 3, rep
assert "smtp://127.0.0.1:1" in rep["error"], rep
print("ok")
PYC

# 4. 100,000 rejected rows: the workbook streams (constant memory)
d=$TMP/big
mkdir -p "$d"
"$PY" -c "
import sys
with open('$d/in.csv', 'w') as f:
    f.write('id,n\n')
    for i in range(100000):
        f.write(f'{i},x{i}\n')
"
cat >"$d/job.json" <<'JOB'
{"name": "big", "source": {"url": "in.csv"},
 "target": {"object": "things", "key": ["id"],
            "attributes": {"id": {"type": "text"}, "n": {"type": "integer"}}},
 "mapping": {"id": "id", "n": "n"},
 "report": {"email": ["owner@example.com"]}}
JOB
run_in "$d" run job.json --out out --state state
expect_exit "100,000 rejected rows" 3
check "100,000 rejected rows: the attached workbook has them all" "$MAIL/msg-3.eml" <<'PYC'
import email, email.policy, io, sys, openpyxl
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
a = list(m.iter_attachments())[0]
wb = openpyxl.load_workbook(io.BytesIO(a.get_content()), read_only=True)
n = sum(1 for _ in wb["Rejected rows"].iter_rows(values_only=True))
assert n == 100001, n
print("ok")
PYC

finish
