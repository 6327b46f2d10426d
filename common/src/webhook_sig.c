/*
 * Standard Webhooks signatures (webhook_sig.h): HMAC-SHA256 over
 * "id.timestamp.body", base64, compared in constant time. Used by the
 * gateway's webhook endpoint (services/gateway/webhook.c).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "sluice/webhook_sig.h"

int sl_webhook_key_decode(const char *secret, unsigned char key[SL_WEBHOOK_KEY_MAX])
{
    if (!secret)
        return -1;
    if (!strncmp(secret, "whsec_", 6))
        secret += 6;
    size_t n = strlen(secret);
    if (n == 0 || n % 4 || n / 4 * 3 > SL_WEBHOOK_KEY_MAX)
        return -1;
    unsigned char tmp[SL_WEBHOOK_KEY_MAX + 3];
    int len = EVP_DecodeBlock(tmp, (const unsigned char *)secret, (int)n);
    if (len < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding's bytes too */
    if (secret[n - 1] == '=')
        len--;
    if (secret[n - 2] == '=')
        len--;
    if (len <= 0 || len > SL_WEBHOOK_KEY_MAX)
        return -1;
    memcpy(key, tmp, (size_t)len);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return len;
}

/* HMAC, fetched from the provider once, and a thread's last key set up in
 * a context of its own (a digest fetch and two key blocks a delivery were
 * most of a signature's cost): each delivery copies that context. */
static EVP_MAC *hmac;
static pthread_key_t keyed_tls;
static bool keyed_ok;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

struct keyed {
    EVP_MAC_CTX *ctx;
    size_t keylen;
    unsigned char key[SL_WEBHOOK_KEY_MAX];
};

static void keyed_free(void *p)
{
    struct keyed *k = p;
    EVP_MAC_CTX_free(k->ctx);
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

static void hmac_init(void)
{
    hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    keyed_ok = pthread_key_create(&keyed_tls, keyed_free) == 0;
}

/* A new HMAC-SHA256 context keyed with key (NULL on failure). */
static EVP_MAC_CTX *mac_new(const unsigned char *key, size_t keylen)
{
    EVP_MAC_CTX *h = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (h && !EVP_MAC_init(h, key, keylen, params)) {
        EVP_MAC_CTX_free(h);
        h = NULL;
    }
    return h;
}

/* A context keyed with key, to use once: a copy of this thread's last one
 * when the key is the same. */
static EVP_MAC_CTX *mac_keyed(const unsigned char *key, size_t keylen)
{
    pthread_once(&hmac_once, hmac_init);
    if (!keyed_ok || keylen > SL_WEBHOOK_KEY_MAX)
        return mac_new(key, keylen);
    struct keyed *k = pthread_getspecific(keyed_tls);
    if (!k) {
        if (!(k = calloc(1, sizeof(*k))) || pthread_setspecific(keyed_tls, k)) {
            free(k);
            return mac_new(key, keylen);
        }
    }
    if (!k->ctx || k->keylen != keylen || CRYPTO_memcmp(k->key, key, keylen)) {
        EVP_MAC_CTX_free(k->ctx);
        k->keylen = keylen;
        memcpy(k->key, key, keylen);
        if (!(k->ctx = mac_new(key, keylen)))
            return NULL;
    }
    return EVP_MAC_CTX_dup(k->ctx);
}

/* HMAC-SHA256 of id.timestamp.body into mac[32] (EVP_MAC: OpenSSL 3). */
static void mac_of(const unsigned char *key, size_t keylen, const char *id, const char *ts,
                   const char *body, size_t len, unsigned char mac[32])
{
    size_t maclen = 0;
    EVP_MAC_CTX *h = mac_keyed(key, keylen);
    if (!h || !EVP_MAC_update(h, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(h, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(h, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(h, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(h, (const unsigned char *)body, len) || !EVP_MAC_final(h, mac, &maclen, 32))
        RAND_bytes(mac, 32); /* a failure never matches */
    EVP_MAC_CTX_free(h);
}

void sl_webhook_sign(const unsigned char *key, size_t keylen, const char *id, const char *timestamp,
                     const char *body, size_t len, char out[45])
{
    unsigned char mac[32];
    mac_of(key, keylen, id, timestamp, body, len, mac);
    EVP_EncodeBlock((unsigned char *)out, mac, 32);
}

enum sl_webhook_verdict sl_webhook_verify(const unsigned char *key, size_t keylen, const char *id,
                                          const char *timestamp, const char *sigs, const char *body,
                                          size_t len, int64_t now)
{
    const char *t = timestamp;
    if (!t || !*t || strlen(t) > 18)
        return SL_WEBHOOK_BAD_TIMESTAMP;
    for (const char *p = t; *p; p++)
        if (!isdigit((unsigned char)*p))
            return SL_WEBHOOK_BAD_TIMESTAMP;
    int64_t ts = strtoll(t, NULL, 10);
    if (ts < now - SL_WEBHOOK_TOLERANCE_S)
        return SL_WEBHOOK_STALE;
    if (ts > now + SL_WEBHOOK_TOLERANCE_S)
        return SL_WEBHOOK_FUTURE;
    char want[45];
    sl_webhook_sign(key, keylen, id, timestamp, body, len, want);
    bool any = false, match = false;
    for (const char *p = sigs ? sigs : ""; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        size_t n = (size_t)(e - p);
        if (n > 3 && !memcmp(p, "v1,", 3)) {
            any = true;
            /* every signature is compared, in constant time, matched or not */
            if (n - 3 == 44 && CRYPTO_memcmp(p + 3, want, 44) == 0)
                match = true;
        }
        p = e;
    }
    OPENSSL_cleanse(want, sizeof(want));
    if (!any)
        return SL_WEBHOOK_NO_SIGNATURE;
    return match ? SL_WEBHOOK_OK : SL_WEBHOOK_MISMATCH;
}

const char *sl_webhook_verdict_str(enum sl_webhook_verdict v)
{
    switch (v) {
    case SL_WEBHOOK_OK:
        return "the signature is valid";
    case SL_WEBHOOK_BAD_TIMESTAMP:
        return "webhook-timestamp is not a number of seconds";
    case SL_WEBHOOK_STALE:
        return "webhook-timestamp is more than 5 minutes old";
    case SL_WEBHOOK_FUTURE:
        return "webhook-timestamp is more than 5 minutes in the future";
    case SL_WEBHOOK_NO_SIGNATURE:
        return "webhook-signature holds no v1 signature";
    case SL_WEBHOOK_MISMATCH:
        return "no signature of webhook-signature matches";
    }
    return "the signature is not valid";
}
