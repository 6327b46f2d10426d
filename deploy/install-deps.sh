#!/bin/sh
# Installs the Debian 12 packages that sluice needs to build, test and
# benchmark. Run as root, or as a user who may sudo.
set -eu
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi
PACKAGES="
    build-essential cmake pkg-config
    libjansson-dev libcsv-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
    libssl-dev libcurl4-openssl-dev libcmocka-dev tzdata
    libxml2-dev libzip-dev libfreexl-dev libmicrohttpd-dev libgmime-3.0-dev libxlsxwriter-dev
    librdkafka-dev libhiredis-dev libpq-dev
"
# the fuzzers (clang -fsanitize=fuzzer), the benchmark's reference tools, the
# real servers and clients of the integration tests, and the checkers of the
# deployment files (tests/deploy/check.sh)
EXTRA="clang libclang-rt-14-dev miller time libxml2-utils jq redis-server postgresql kcat
    nginx-light wrk vsftpd openssh-server openssh-client dovecot-imapd openssl python3-openpyxl python3-xlwt
    python3-aiosmtpd curl
    docker-compose yamllint python3-jsonschema python3-yaml python3-confluent-kafka"
if [ "${SLUICE_MINIMAL:-0}" = 1 ]; then
    EXTRA=""
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# the servers the tests start themselves (nginx, vsftpd, sshd, dovecot) must
# not be started by their packages: deny service starts while installing
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES $EXTRA >/dev/null
# the Standard Webhooks reference library that signs test_webhook's requests,
# under node. A node from elsewhere (NodeSource's bundles npm and conflicts
# with Debian's npm package) is used as it is.
if [ -n "$EXTRA" ]; then
    command -v node >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null
    command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
    npm install --no-audit --no-fund --prefix "$(dirname "$0")/../tests/integration" \
        standardwebhooks@1 >/dev/null
    # the upstream Kubernetes, KEDA and Prometheus Operator models that
    # tests/deploy/validate.js checks the rendered manifests with, at the
    # versions of tests/deploy/package-lock.json (npm ci replaces
    # tests/deploy/node_modules with exactly those)
    npm ci --no-audit --no-fund --prefix "$(dirname "$0")/../tests/deploy" >/dev/null
    # tests/deploy/check.sh renders deploy/k8s with kubectl kustomize: Debian's
    # kubectl (1.20) unless one is installed already
    command -v kubectl >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends \
        kubernetes-client >/dev/null
fi
echo "sluice: build dependencies installed"
