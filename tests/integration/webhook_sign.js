// Signs a webhook body with the Standard Webhooks reference library (npm
// standardwebhooks) for tests/integration/test_webhook.c, and prints curl
// header arguments, one a line:
//   node webhook_sign.js SECRET[,SECRET2...] MSG_ID UNIX_SECONDS BODY_FILE
// Several secrets give several v1 signatures (key rotation).
"use strict";
const fs = require("fs");
const path = require("path");
let Webhook;
try {
    ({ Webhook } = require(path.join(__dirname, "node_modules", "standardwebhooks")));
} catch (e) {
    process.stderr.write("npm package standardwebhooks is missing: run " +
        "'npm install --prefix tests/integration standardwebhooks' (deploy/install-deps.sh)\n");
    process.exit(3);
}
const [secrets, id, ts, file] = process.argv.slice(2);
if (!file) {
    process.stderr.write("usage: webhook_sign.js SECRET[,SECRET...] ID UNIX_SECONDS BODY_FILE\n");
    process.exit(2);
}
const body = fs.readFileSync(file);
const when = new Date(Number(ts) * 1000);
const sigs = secrets.split(",").map((s) => new Webhook(s).sign(id, when, body));
process.stdout.write(`webhook-id: ${id}\nwebhook-timestamp: ${ts}\n` +
    `webhook-signature: ${sigs.join(" ")}\n`);
