/*
 * Standard Webhooks signatures (https://www.standardwebhooks.com): the pure
 * part of the gateway's webhook endpoint, kept apart from HTTP so that it
 * can be tested alone. A secret is "whsec_<base64>" (the key is the decoded
 * part); a signature is base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))
 * over the raw body bytes; the webhook-signature header is a space-separated
 * list of "v1,<base64>" (several while keys rotate; other versions are
 * ignored); the timestamp (unix seconds) must be within the tolerance of now.
 */
#ifndef SLUICE_WEBHOOK_SIG_H
#define SLUICE_WEBHOOK_SIG_H

#include <stddef.h>
#include <stdint.h>

/* The tolerance of webhook-timestamp around now, in seconds (the spec's 5 minutes). */
#define SL_WEBHOOK_TOLERANCE_S 300
/* The largest key accepted (decoded bytes). */
#define SL_WEBHOOK_KEY_MAX 128

enum sl_webhook_verdict {
    SL_WEBHOOK_OK = 0,
    SL_WEBHOOK_BAD_TIMESTAMP = 1, /* not a number of seconds */
    SL_WEBHOOK_STALE = 2,         /* older than the tolerance */
    SL_WEBHOOK_FUTURE = 3,        /* newer than the tolerance */
    SL_WEBHOOK_NO_SIGNATURE = 4,  /* no v1 signature in the header */
    SL_WEBHOOK_MISMATCH = 5,      /* no v1 signature matches */
};

/* Decodes secret ("whsec_<base64>"; the prefix is optional, as in the
 * reference libraries) into key[SL_WEBHOOK_KEY_MAX]; the key's length, or
 * -1 when it is not base64, is empty or too long. Any thread. */
int sl_webhook_key_decode(const char *secret, unsigned char key[SL_WEBHOOK_KEY_MAX]);

/* The v1 signature of id, timestamp and body under key, base64, into
 * out[45]. Any thread. */
void sl_webhook_sign(const unsigned char *key, size_t keylen, const char *id, const char *timestamp,
                     const char *body, size_t len, char out[45]);

/* Checks one delivery: timestamp against now (unix seconds), then each v1
 * signature of the header sigs against id.timestamp.body, in constant time
 * (CRYPTO_memcmp). Returns a verdict; its text is sl_webhook_verdict_str().
 * Any thread; nothing is kept. */
enum sl_webhook_verdict sl_webhook_verify(const unsigned char *key, size_t keylen, const char *id,
                                          const char *timestamp, const char *sigs, const char *body,
                                          size_t len, int64_t now);

/* "the signature does not match", ...: lowercase, for answers and logs. */
const char *sl_webhook_verdict_str(enum sl_webhook_verdict v);

#endif
