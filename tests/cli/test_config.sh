# The settings table cannot drift (issue 7):
#  1. `sluice config --markdown` (the table of common/src/settings.c) is
#     exactly what docs/configuration.md holds between its
#     `<!-- settings:begin -->` and `<!-- settings:end -->` markers;
#  2. every variable the C sources read with getenv("NAME") is a row of that
#     table or in the allow-list below (with its reason) (and so is every
#     ${env:NAME} template of the code), every indirect
#     getenv(expression) is one of the known ones below (with what it reads),
#     and every row is read somewhere;
#  3. a config file works end to end: `sluice --config FILE run` takes the
#     hash filter's key from the file (the same digests as from the
#     environment), and a service started with --config and
#     SLUICE_LOG_LEVEL=debug never prints a secret of the file.
# Run by ctest: bash test_config.sh <path-to-sluice> <repo-dir>.
# SLUICE_UPDATE_DOCS=1 rewrites the docs' table from the code instead of
# failing on a difference.

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

DOC=$REPO/docs/configuration.md
BIN=$(dirname "$SLUICE")
REGEN="SLUICE_UPDATE_DOCS=1 bash tests/cli/test_config.sh BUILD/sluice ."

# --- 1. the docs' table is the code's ---------------------------------------
"$SLUICE" config --markdown >"$TMP/table.md" 2>"$TMP/table.err"
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$TMP/table.md" ]; then
    not_ok "sluice config --markdown exits 0 with a table" "exit $rc: $(cat "$TMP/table.err")"
    finish
fi
if [ "$(grep -c '^<!-- settings:begin -->$' "$DOC")" != 1 ] ||
    [ "$(grep -c '^<!-- settings:end -->$' "$DOC")" != 1 ]; then
    not_ok "docs/configuration.md has one settings:begin and one settings:end marker"
    finish
fi
awk '/^<!-- settings:end -->$/ {p = 0} p {print} /^<!-- settings:begin -->$/ {p = 1}' \
    "$DOC" >"$TMP/doc_table.md"
if cmp -s "$TMP/table.md" "$TMP/doc_table.md"; then
    ok "docs/configuration.md's settings table is the code's (sluice config --markdown)"
elif [ "${SLUICE_UPDATE_DOCS:-0}" = 1 ]; then
    awk -v table="$TMP/table.md" '
        /^<!-- settings:end -->$/ {while ((getline l < table) > 0) print l; p = 0}
        !p {print}
        /^<!-- settings:begin -->$/ {p = 1}' "$DOC" >"$TMP/doc.new" && cp "$TMP/doc.new" "$DOC"
    ok "docs/configuration.md's settings table rewritten from the code"
else
    not_ok "docs/configuration.md's settings table is the code's (sluice config --markdown)" \
        "$(diff -u "$TMP/doc_table.md" "$TMP/table.md" | head -40)" \
        "regenerate it from the code (common/src/settings.c): $REGEN"
fi

# --- 2. every getenv() is in the table ---------------------------------------
# The table's variables (a pattern row SLUICE_X_<JOB> as its prefix SLUICE_X_).
sed -n 's/^| `\([A-Z0-9_]*\)\(<[A-Z]*>\)\{0,1\}` |.*/\1\2/p' "$TMP/table.md" >"$TMP/names"
in_table() {
    local n
    while IFS= read -r n; do
        case $n in
        *"<"*) [ "${1#"${n%%<*}"}" != "$1" ] && [ -n "${1#"${n%%<*}"}" ] && return 0 ;;
        *) [ "$n" = "$1" ] && return 0 ;;
        esac
    done <"$TMP/names"
    return 1
}
# Variables read that are no setting of a program, each with its reason.
ALLOW=(
    # libpq's own variables (libpq reads them itself; pg.c reads them only to
    # name the server in a "could not connect" message as libpq would)
    PGHOST PGPORT
    # glibc's malloc settings: service.c leaves malloc alone when the operator set them
    GLIBC_TUNABLES MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_
    # child-only: xls_reader.c passes its options to its sandboxed child process
    SLUICE_XLS_CHILD SLUICE_XLS_SHEET SLUICE_XLS_SHEET_INDEX SLUICE_XLS_MAX_MEMORY
    # the placeholder of ${env:NAME} in the code's messages and comments
    NAME
)
allowed() {
    local a
    for a in "${ALLOW[@]}"; do [ "$a" = "$1" ] && return 0; done
    return 1
}
SRC=(common services)
(cd "$REPO" && grep -rhoE '\b(secure_)?getenv\("[A-Za-z0-9_]+"\)' --include='*.c' --include='*.h' \
    "${SRC[@]}") | sed 's/.*("\(.*\)")/\1/' | sort -u >"$TMP/read"
# the code's own ${env:NAME} templates (source_s3.c's default keys)
(cd "$REPO" && grep -rhoE '\$\{env:[A-Za-z0-9_]+\}' --include='*.c' "${SRC[@]}") |
    sed 's/^..env:\(.*\)}$/\1/' >>"$TMP/read"
# the SMTP settings mail.c reads through sl_smtp_config_load's lookup
sed -n '/smtp_vars\[\] = {/,/};/p' "$REPO/common/src/mail.c" | grep -oE '"[A-Z0-9_]+"' |
    tr -d '"' >>"$TMP/read"
missing=""
nread=0
while IFS= read -r n; do
    nread=$((nread + 1))
    in_table "$n" || allowed "$n" || missing="$missing $n"
done < <(sort -u "$TMP/read")
if [ -z "$missing" ] && [ "$nread" -gt 20 ]; then
    ok "every variable read with getenv(\"NAME\") ($nread) is in the table or allowed"
else
    not_ok "every variable read with getenv(\"NAME\") is in the table or allowed" \
        "missing:$missing (of $nread read)" \
        "add a row to sl_settings[] in common/src/settings.c (then: $REGEN)," \
        "or to ALLOW in tests/cli/test_config.sh with the reason"
fi
# Indirect reads, FILE:EXPRESSION, each resolved:
KNOWN=(
    # the settings reader itself: the table's rows, the file's pattern keys
    "common/src/settings.c:s->env" "common/src/settings.c:line"
    # SMTP: sl_smtp_config_from_env's lookup of smtp_vars (checked above)
    "common/src/mail.c:name"
    # the child's marker (allowed above)
    "common/src/xls_reader.c:CHILD_ENV"
    # ${env:NAME} in a job's strings: a variable the job's author names
    "common/src/job.c:var"
    # webhook.secret ${env:NAME} (the job's), and SLUICE_WEBHOOK_SECRET_<JOB> (a pattern row)
    "services/gateway/webhook.c:name" "services/gateway/webhook.c:name"
)
(cd "$REPO" && grep -rnoE '\b(secure_)?getenv\([^")][^)]*\)' --include='*.c' --include='*.h' \
    "${SRC[@]}") |
    sed -E 's/^([^:]*):[0-9]+:(secure_)?getenv\((.*)\)$/\1:\3/' | sort >"$TMP/indirect"
printf '%s\n' "${KNOWN[@]}" | sort >"$TMP/known"
if cmp -s "$TMP/indirect" "$TMP/known"; then
    ok "every indirect getenv(expression) ($(wc -l <"$TMP/indirect")) is a known one"
else
    not_ok "every indirect getenv(expression) is a known one" \
        "$(diff "$TMP/known" "$TMP/indirect")" \
        "resolve a new one (a row of the table, or in KNOWN of tests/cli/test_config.sh)"
fi

# And the other way: every row of the table is read somewhere (its name, a
# pattern's prefix, is a string of the code outside the table).
stale=""
while IFS= read -r n; do
    [ "$n" = SLUICE_CONFIG ] && continue # read by settings.c itself
    grep -rqE --include='*.c' --exclude=settings.c "\"${n%%<*}\"|\\{env:${n%%<*}\\}" \
        "$REPO/common" "$REPO/services" || stale="$stale $n"
done <"$TMP/names"
if [ -z "$stale" ]; then
    ok "every row of the table is read by the code"
else
    not_ok "every row of the table is read by the code" "read nowhere:$stale" \
        "remove the row from sl_settings[] in common/src/settings.c (then: $REGEN)"
fi

# --- 3. a config file end to end ---------------------------------------------
D=$(stage clean "$TMP/hash")
cat >"$D/job.json" <<'EOF'
{
  "name": "hashed",
  "source": { "url": "stores.csv" },
  "target": {
    "object": "stores",
    "key": ["store_id"],
    "attributes": { "store_id": { "type": "text" }, "pid": { "type": "text" } }
  },
  "mapping": { "store_id": "Filiale", "pid": "{{ Name | hash }}" }
}
EOF
printf '# the secret of the hash filter\nSLUICE_HASH_KEY="k3y-from-the-file"\n' >"$D/sluice.env"
run_in "$D" --config sluice.env run job.json --out out-file --quiet --force
rc_file=$RC
SLUICE_HASH_KEY=k3y-from-the-file run_in "$D" run job.json --out out-env --quiet --force
rc_env=$RC
SLUICE_HASH_KEY=another-key run_in "$D" run job.json --out out-other --quiet --force
f_file=$D/out-file/stores.ndjson
f_env=$D/out-env/stores.ndjson
if [ "$rc_file" = 0 ] && [ "$rc_env" = 0 ] && [ -s "$f_file" ] && cmp -s "$f_file" "$f_env" &&
    ! cmp -s "$f_file" "$D/out-other/stores.ndjson" && grep -q '"pid":"[0-9a-f]\{64\}"' "$f_file"; then
    ok "sluice --config FILE run: the hash key from the file, the same digests as from the environment"
else
    not_ok "sluice --config FILE run: the hash key from the file" "exit $rc_file and $rc_env" \
        "$(cat "$OUT.stderr")" "$(head -3 "$f_file" "$f_env" 2>&1)"
fi
# SLUICE_CONFIG names the file too; the environment wins over it
printf 'SLUICE_HASH_KEY=other\n' >"$D/other.env"
SLUICE_CONFIG=other.env SLUICE_HASH_KEY=k3y-from-the-file run_in "$D" run job.json --out out-both \
    --quiet --force
f_both=$D/out-both/stores.ndjson
if [ "$RC" = 0 ] && cmp -s "$f_both" "$f_env"; then
    ok "SLUICE_CONFIG: the environment wins over the file"
else
    not_ok "SLUICE_CONFIG: the environment wins over the file" "exit $RC" "$(cat "$OUT.stderr")"
fi
printf 'SLUICE_HASH_KEY=x\nSLUICE_HASH_KY=k3y-typo\n' >"$D/typo.env"
run_in "$D" --config typo.env run job.json --quiet
slurp "$OUT.stderr"
if [ "$RC" = 2 ] && [[ $TEXT == *"typo.env:2: unknown setting 'SLUICE_HASH_KY'"* ]] &&
    [[ $TEXT != *k3y* ]]; then
    ok "sluice --config: an unknown key stops it naming FILE:LINE and the key, not the value"
else
    not_ok "sluice --config: an unknown key stops it naming FILE:LINE" "exit $RC: $TEXT"
fi

# A service with --config, debug logs: the secrets of the file are used
# (the SMTP password reaches mail.c, which refuses it without a URL) but
# never printed; the names and lines are.
S=$TMP/svc
mkdir -p "$S"
cat >"$S/sluice.env" <<'EOF'
SLUICE_LOG_LEVEL=debug
SLUICE_METRICS_ADDR=off
SLUICE_POSTGRES_URL=postgresql://u:pg-s3cret-pw@127.0.0.1:1/db
SLUICE_HASH_KEY='hash-s3cret-key'
SLUICE_SMTP_PASSWORD="smtp-s3cret-pw"
AWS_SECRET_ACCESS_KEY=aws-s3cret-key
SLUICE_ADMIN_TOKEN=admin-s3cret-token-0123
SLUICE_WEBHOOK_SECRET_ORDERS=webhook-s3cret
EOF
(cd "$S" && env -u SLUICE_LOG_LEVEL timeout 20 "$BIN/sluice-publisher" --config sluice.env \
    >"$S/out" 2>&1)
rc=$?
slurp "$S/out"
if [ $rc = 2 ] && [[ $TEXT == *"setting SLUICE_SMTP_PASSWORD from sluice.env:5"* ]] &&
    [[ $TEXT == *"SLUICE_SMTP_PASSWORD is set but SLUICE_SMTP_URL is not"* ]] &&
    [[ $TEXT != *s3cret* ]]; then
    ok "sluice-publisher --config: a secret of the file is used, never printed (debug log)"
else
    not_ok "sluice-publisher --config: a secret of the file is used, never printed" "exit $rc" \
        "$TEXT"
fi
# a bad value from the file: the message names the file and the line
printf 'SLUICE_POSTGRES_URL=postgresql://127.0.0.1:1/db\nSLUICE_METRICS_ADDR=nope\n' >"$S/bad.env"
(cd "$S" && timeout 20 "$BIN/sluice-parser" --config bad.env >"$S/bad" 2>&1)
rc=$?
slurp "$S/bad"
if [ $rc = 2 ] && [[ $TEXT == *"(SLUICE_METRICS_ADDR in bad.env:2)"* ]]; then
    ok "sluice-parser --config: a bad value names the file and the line"
else
    not_ok "sluice-parser --config: a bad value names the file and the line" "exit $rc" "$TEXT"
fi
# the gateway: its admin token and a webhook secret from the same file; it
# cannot reach PostgreSQL (port 1 of loopback) and says so, without them
(cd "$S" && env -u SLUICE_LOG_LEVEL timeout 20 "$BIN/sluice-gateway" --config sluice.env \
    --http-addr 127.0.0.1:0 >"$S/gw" 2>&1)
rc=$?
slurp "$S/gw"
if [ $rc = 1 ] && [[ $TEXT == *"setting SLUICE_ADMIN_TOKEN from sluice.env:7"* ]] &&
    [[ $TEXT == *"setting SLUICE_HTTP_ADDR from --http-addr"* ]] &&
    [[ $TEXT == *"127.0.0.1"* ]] && [[ $TEXT != *s3cret* ]]; then
    ok "sluice-gateway --config: the file's settings, no secret printed"
else
    not_ok "sluice-gateway --config: the file's settings, no secret printed" "exit $rc" "$TEXT"
fi

finish
