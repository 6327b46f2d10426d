#!/usr/bin/env bash
# A job of several targets (job.h "targets"): one CRM export feeds accounts
# and their contacts. Each target is a run of its own over the same file,
# in order: contacts reference accounts (references) and find the ones just
# published; a rejected account makes its contacts unknown_reference; out/
# holds each object's NDJSON, each target's error files and run.json, and a
# run.json that sums them up; unchanged, the whole job is skipped; a first
# target that fails stops the rest. (Distributed: test_distributed.c.)
. "$(dirname "$0")/lib.sh"

d=$(stage targets)
run_in "$d" run job.json --out out --state state
expect_exit "two targets" 3
expect_output "two targets" stdout "crm-import: completed_with_errors (2 targets): out/run.json"
slurp "$d/out/accounts.ndjson"
want='{"account_no":"A1","name":"Acme GmbH"}
{"account_no":"A1","name":"Acme GmbH"}
{"account_no":"A3","name":"Gamma AG"}
'
[ "$TEXT" = "$want" ] && ok "two targets: accounts published" || not_ok "two targets: accounts.ndjson" "$TEXT"
slurp "$d/out/contacts.ndjson"
want='{"email":"anna@acme.example","account_no":"A1","name":"Anna Schmidt"}
{"email":"bob@acme.example","account_no":"A1","name":"Bob Meier"}
'
[ "$TEXT" = "$want" ] && ok "two targets: contacts published" || not_ok "two targets: contacts.ndjson" "$TEXT"
slurp "$d/out/contacts/errors.csv"
if [[ $TEXT == *"3,account_no: no accounts record has account_no 'A2',A2,,carl@beta.example"* &&
      $TEXT == *"4,email: 'not-an-email' is not an e-mail address"* ]]; then
    ok "two targets: the contact of the rejected account is an unknown reference"
else
    not_ok "two targets: contacts/errors.csv" "$TEXT"
fi
slurp "$d/out/accounts/errors.csv"
[[ $TEXT == *"3,name: is required,A2,,"* ]] && ok "two targets: the account without a name rejected" ||
    not_ok "two targets: accounts/errors.csv" "$TEXT"
if jq -e '.status == "completed_with_errors" and .counts.read == 4 and .counts.published == 5
          and .counts.rejected == 3 and ([.targets[].object] == ["accounts", "contacts"])
          and ([.targets[].counts.published] == [3, 2])' "$d/out/run.json" >/dev/null; then
    ok "two targets: run.json sums the targets up"
else
    not_ok "two targets: run.json" "$(cat "$d/out/run.json")"
fi
[ -f "$d/out/accounts/run.json" ] && [ -f "$d/out/contacts/run.json" ] &&
    ok "two targets: each target's run.json" || not_ok "two targets: a target's run.json is missing"

# the same file again: every target skipped
run_in "$d" run job.json --out out --state state
expect_exit "two targets, unchanged" 4

# the first target fails (its column vanished): the contacts are not run
sed -i '1s/company/firm/' "$d/crm.csv"
run_in "$d" run job.json --out out2 --state state
expect_exit "first target failed" 1
expect_output "first target failed" stderr "targets[0] (accounts) failed: the targets after it are not run"
expect_absent "first target failed" "$d/out2/contacts.ndjson"
if jq -e '.status == "failed" and (.reason | startswith("targets[0] (accounts): crm.csv: the file has no column '"'company'"'"))' \
    "$d/out2/run.json" >/dev/null; then
    ok "first target failed: run.json says which and why"
else
    not_ok "first target failed: run.json" "$(cat "$d/out2/run.json")"
fi

finish
