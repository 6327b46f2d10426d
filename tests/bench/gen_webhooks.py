#!/usr/bin/python3
"""Pre-signed webhook deliveries for the webhook benchmark (bench_gateway.sh).

Writes N Standard Webhooks deliveries, one a line, as
  webhook-id <TAB> webhook-timestamp <TAB> webhook-signature <TAB> body
where the body is one small JSON object with a distinct "id" (c-000001, ...),
and the signature is v1,base64(HMAC-SHA256(key, id "." timestamp "." body)),
key the base64-decoded part of the secret after "whsec_" (docs/api.md
"Webhooks"). The ids and bodies depend on N and --first only, so two files
written at different times differ in their timestamps and signatures alone.
tests/bench/wrk_webhook.lua reads the file and sends its lines.

Usage: gen_webhooks.py --secret whsec_... --count N [--first K]
                       [--timestamp UNIX] [--prefix P] > FILE
"""
import argparse
import base64
import hashlib
import hmac
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secret", required=True, help="whsec_<base64 key>")
    ap.add_argument("--count", type=int, required=True, help="deliveries to write")
    ap.add_argument("--first", type=int, default=1, help="number of the first record")
    ap.add_argument("--timestamp", type=int, default=None, help="webhook-timestamp (default: now)")
    ap.add_argument("--prefix", default="msg_bench_", help="prefix of each webhook-id")
    a = ap.parse_args()
    if not a.secret.startswith("whsec_"):
        sys.exit("gen_webhooks: the secret must start with whsec_")
    key = base64.b64decode(a.secret[len("whsec_"):], validate=True)
    if a.count < 1:
        sys.exit("gen_webhooks: --count must be at least 1")
    ts = str(a.timestamp if a.timestamp is not None else int(time.time()))
    out = sys.stdout
    lines = []
    for n in range(a.first, a.first + a.count):
        wid = "%s%09d" % (a.prefix, n)
        body = json.dumps({"id": "c-%09d" % n, "name": "Contact %d" % n,
                           "email": "contact%d@example.com" % n}, separators=(", ", ": "))
        mac = hmac.new(key, ("%s.%s.%s" % (wid, ts, body)).encode(), hashlib.sha256).digest()
        lines.append("%s\t%s\tv1,%s\t%s\n" % (wid, ts, base64.b64encode(mac).decode(), body))
        if len(lines) >= 10000:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


if __name__ == "__main__":
    main()
