#!/bin/sh
# The image's HEALTHCHECK: GET /healthz of the service in this container, on
# the port of SLUICE_METRICS_ADDR (default 0.0.0.0:9464; every service
# serves /healthz there, docs/metrics.md). Exit 0 when it answers 2xx.
set -eu
addr=${SLUICE_METRICS_ADDR:-0.0.0.0:9464}
if [ "$addr" = off ]; then
    echo "healthcheck: SLUICE_METRICS_ADDR is off: no /healthz to ask" >&2
    exit 1
fi
exec curl -fsS -o /dev/null --max-time 4 "http://127.0.0.1:${addr##*:}/healthz"
