#!/bin/bash
# The deployment files, checked offline (ctest: deploy_check):
#  1. docker-compose.yml is valid for docker-compose (1.29, Debian 12's);
#  2. kubectl kustomize renders deploy/k8s/overlays/dev and prod (and the
#     base); every kubectl of $SLUICE_KUBECTLS (space-separated; default
#     kubectl) is tried, e.g. Debian's kubectl 1.20 (kustomize v2.0.3) and a
#     current one;
#  3. the rendered manifests are valid against tests/deploy/schemas
#     (validate.py: hand-written, strict schemas of the Kubernetes, KEDA and
#     Prometheus Operator kinds);
#  4. and against the upstream schemas (validate.js, under node: the models
#     of the npm packages kubernetes-models, @kubernetes-models/keda and
#     @kubernetes-models/prometheus-operator, pinned in
#     tests/deploy/package.json and package-lock.json);
#  5. yamllint (.yamllint) passes on the compose file and deploy/k8s;
#  6. deploy/Dockerfile follows the rules below (hadolint is not packaged for
#     Debian: a grep per rule);
#  7. nothing named in compose or Kubernetes drifted from the code (drift.py).
# usage: check.sh SLUICE_BINARY REPO
# Needs docker-compose, kubectl (kubernetes-client), yamllint,
# python3-jsonschema, python3-yaml, node and tests/deploy/node_modules (npm
# ci --prefix tests/deploy): deploy/install-deps.sh installs them.
set -u
SLUICE=$1
REPO=$2
BUILD=$(dirname "$SLUICE")
HERE=$REPO/tests/deploy
PY=/usr/bin/python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0
ok() {
    echo "ok: $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAILED: $1"
    failed=$((failed + 1))
}
need() {
    if ! command -v "$1" >/dev/null; then
        echo "check.sh: $1 is missing: run deploy/install-deps.sh (package $2)" >&2
        exit 1
    fi
}
need docker-compose docker-compose
need yamllint yamllint
need kubectl kubernetes-client
if ! $PY -c 'import jsonschema, yaml' 2>/dev/null; then
    echo "check.sh: $PY lacks jsonschema or yaml: run deploy/install-deps.sh" \
        "(python3-jsonschema, python3-yaml)" >&2
    exit 1
fi
need node nodejs
if [ ! -d "$HERE/node_modules/kubernetes-models" ]; then
    echo "check.sh: $HERE/node_modules lacks kubernetes-models: run" \
        "deploy/install-deps.sh (npm ci --prefix tests/deploy)" >&2
    exit 1
fi
cd "$REPO" || exit 1

# 1. compose
if docker-compose -f docker-compose.yml config -q 2>"$TMP/compose.err"; then
    ok "docker-compose config -q ($(docker-compose version --short 2>/dev/null))"
else
    fail "docker-compose config: $(cat "$TMP/compose.err")"
fi
# the one-shots must be allowed to end: the demo and topics have no restart
for svc in topics demo; do
    if docker-compose -f docker-compose.yml config | awk -v s="  $svc:" '
        $0 == s {in_s = 1; next} in_s && /^  [a-z]/ {in_s = 0} in_s && /restart: .no./ {found = 1}
        END {exit !found}'; then
        ok "compose: $svc is a one-shot (restart: \"no\")"
    else
        fail "compose: $svc must not be restarted (restart: \"no\")"
    fi
done

# 2. kustomize, with every kubectl asked for
rendered=()
for k in ${SLUICE_KUBECTLS:-kubectl}; do
    v=$($k version --client 2>/dev/null | head -1 | grep -o 'v[0-9][0-9.]*' | head -1)
    for o in base overlays/dev overlays/prod; do
        out=$TMP/$(echo "$k-$o" | tr '/' '_').yaml
        if $k kustomize "deploy/k8s/$o" >"$out" 2>"$TMP/kustomize.err"; then
            ok "$k ($v) kustomize deploy/k8s/$o: $(grep -c '^kind:' "$out") objects"
            [ "$o" = base ] || rendered+=("$out")
        else
            fail "$k ($v) kustomize deploy/k8s/$o: $(grep -v Warning "$TMP/kustomize.err")"
        fi
    done
done
# what each overlay promises
for out in "${rendered[@]}"; do
    case $out in
    *dev.yaml) want=HorizontalPodAutoscaler nowant=ScaledObject ;;
    *) want=ScaledObject nowant=HorizontalPodAutoscaler ;;
    esac
    if [ "$(grep -c "^kind: $want$" "$out")" = 5 ] && ! grep -q "^kind: $nowant$" "$out"; then
        ok "$(basename "$out"): 5 ${want}s, no $nowant"
    else
        fail "$(basename "$out"): want 5 ${want}s (one per consumer stage) and no $nowant"
    fi
done

# 3. schemas
if [ ${#rendered[@]} -gt 0 ] && $PY "$HERE/validate.py" "${rendered[@]}" >"$TMP/validate.out" 2>&1; then
    ok "$(tail -1 "$TMP/validate.out")"
else
    fail "schemas: $(cat "$TMP/validate.out" 2>/dev/null)"
fi

# 4. upstream schemas
if [ ${#rendered[@]} -gt 0 ] && node "$HERE/validate.js" "${rendered[@]}" >"$TMP/validate-js.out" 2>&1; then
    ok "$(tail -1 "$TMP/validate-js.out")"
else
    fail "upstream schemas: $(cat "$TMP/validate-js.out" 2>/dev/null)"
fi

# 5. yamllint
if yamllint -s -c .yamllint docker-compose.yml .yamllint deploy/k8s >"$TMP/yamllint.out" 2>&1; then
    ok "yamllint"
else
    fail "yamllint: $(cat "$TMP/yamllint.out")"
fi

# 6. the Dockerfile's rules
DF=deploy/Dockerfile
rule() { # rule DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "Dockerfile: $what"; else fail "Dockerfile: $what"; fi
}
# every FROM names a pinned tag (not latest, not untagged)
rule "every FROM is pinned" awk '/^FROM /{n++; if ($2 !~ /:/ || $2 ~ /:latest$/) bad=1} END {exit bad || !n}' $DF
rule "no latest tag anywhere" bash -c "! grep -n ':latest' $DF"
rule "the last USER is not root" bash -c \
    "u=\$(grep '^USER ' $DF | tail -1 | awk '{print \$2}'); [ -n \"\$u\" ] && [ \"\${u%%:*}\" != root ] && [ \"\${u%%:*}\" != 0 ]"
rule "a HEALTHCHECK" grep -q '^HEALTHCHECK ' $DF
rule "apt-get install with --no-install-recommends" bash -c \
    "! grep -n 'apt-get install' $DF | grep -v -- '--no-install-recommends'"
rule "every RUN with apt-get update removes the lists" bash -c \
    "awk '/^RUN /{r=\$0; while (r ~ /\\\\\$/ && (getline l) > 0) r = r l; if (r ~ /apt-get update|install-deps/ && r !~ /rm -rf \\/var\\/lib\\/apt\\/lists/) bad=1} END {exit bad}' $DF"
rule "the runtime stage is debian:12-slim" grep -q '^FROM debian:12-slim ' $DF
rule "the build stage is debian:12" grep -q '^FROM debian:12 AS build' $DF
rule "what COPY needs is not in .dockerignore" bash -c \
    "! grep -qx 'examples\\|deploy\\|services\\|common' .dockerignore"
rule "the healthcheck script is copied" grep -q '^COPY deploy/healthcheck.sh ' $DF
if sh -n deploy/healthcheck.sh && sh -n deploy/k8s/base/create-topics.sh; then
    ok "healthcheck.sh and create-topics.sh parse (sh -n)"
else
    fail "healthcheck.sh or create-topics.sh has a syntax error"
fi

# 7. drift
if [ ${#rendered[@]} -gt 0 ] && $PY "$HERE/drift.py" "$REPO" "$BUILD" "${rendered[@]}" >"$TMP/drift.out" 2>&1; then
    ok "$(tail -1 "$TMP/drift.out")"
else
    fail "drift: $(cat "$TMP/drift.out" 2>/dev/null)"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
