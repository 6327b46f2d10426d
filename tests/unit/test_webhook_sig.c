/*
 * Standard Webhooks signatures (webhook_sig.h): the reference library's
 * signature (npm standardwebhooks, computed once and written down here),
 * key rotation, other versions ignored, tampering, the ±5 minute window
 * and its edges, malformed timestamps, headers and secrets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sluice/webhook_sig.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define BODY   "{\"a\":1}"
#define TS     1700000000
/* new Webhook(SECRET).sign("msg_1", new Date(1700000000000), '{"a":1}') */
#define REF_SIG "hVsFLpmw4Ib/Xm0eZLt3KqYBZdt0U8gdGeuz0EsGv78="
#define OTHER   "v1,QKFeUV75r8ysyhbBhN+dvVQF4ZihID+asCUGD1wfQL8="

static unsigned char key[SL_WEBHOOK_KEY_MAX];
static int keylen;

static int setup(void **state)
{
    keylen = sl_webhook_key_decode(SECRET, key);
    return keylen == 24 ? 0 : -1;
}

static enum sl_webhook_verdict check(const char *ts, const char *sigs, const char *body,
                                     int64_t now)
{
    return sl_webhook_verify(key, (size_t)keylen, "msg_1", ts, sigs, body, strlen(body), now);
}

static void test_reference_signature(void **state)
{
    char sig[45];
    sl_webhook_sign(key, (size_t)keylen, "msg_1", "1700000000", BODY, strlen(BODY), sig);
    assert_string_equal(sig, REF_SIG);
    assert_int_equal(check("1700000000", "v1," REF_SIG, BODY, TS), SL_WEBHOOK_OK);
}

static void test_rotation_and_versions(void **state)
{
    /* a signature of another key first, the right one second */
    assert_int_equal(check("1700000000", OTHER " v1," REF_SIG, BODY, TS), SL_WEBHOOK_OK);
    assert_int_equal(check("1700000000", "v1," REF_SIG " " OTHER, BODY, TS), SL_WEBHOOK_OK);
    assert_int_equal(check("1700000000", "  v1," REF_SIG "  ", BODY, TS), SL_WEBHOOK_OK);
    /* only another key's */
    assert_int_equal(check("1700000000", OTHER, BODY, TS), SL_WEBHOOK_MISMATCH);
    /* other versions are ignored, never taken for v1 */
    assert_int_equal(check("1700000000", "v1a," REF_SIG, BODY, TS), SL_WEBHOOK_NO_SIGNATURE);
    assert_int_equal(check("1700000000", "v2," REF_SIG, BODY, TS), SL_WEBHOOK_NO_SIGNATURE);
    assert_int_equal(check("1700000000", "v2,xyz v1," REF_SIG, BODY, TS), SL_WEBHOOK_OK);
    assert_int_equal(check("1700000000", "", BODY, TS), SL_WEBHOOK_NO_SIGNATURE);
    assert_int_equal(check("1700000000", NULL, BODY, TS), SL_WEBHOOK_NO_SIGNATURE);
    /* a cut or lengthened signature */
    assert_int_equal(check("1700000000", "v1,hVsFLpmw4Ib", BODY, TS), SL_WEBHOOK_MISMATCH);
    assert_int_equal(check("1700000000", "v1," REF_SIG "A", BODY, TS), SL_WEBHOOK_MISMATCH);
}

static void test_tampering(void **state)
{
    assert_int_equal(check("1700000000", "v1," REF_SIG, "{\"a\":2}", TS), SL_WEBHOOK_MISMATCH);
    assert_int_equal(check("1700000000", "v1," REF_SIG, "{\"a\":1} ", TS), SL_WEBHOOK_MISMATCH);
    /* the timestamp is signed too */
    assert_int_equal(check("1700000001", "v1," REF_SIG, BODY, TS), SL_WEBHOOK_MISMATCH);
    /* and the id */
    assert_int_equal(sl_webhook_verify(key, (size_t)keylen, "msg_2", "1700000000", "v1," REF_SIG,
                                       BODY, strlen(BODY), TS),
                     SL_WEBHOOK_MISMATCH);
    /* and the key */
    unsigned char k2[SL_WEBHOOK_KEY_MAX];
    int n = sl_webhook_key_decode("whsec_dGVzdA==", k2);
    assert_int_equal(n, 4);
    assert_int_equal(sl_webhook_verify(k2, (size_t)n, "msg_1", "1700000000", "v1," REF_SIG, BODY,
                                       strlen(BODY), TS),
                     SL_WEBHOOK_MISMATCH);
}

static void test_window(void **state)
{
    const char *s = "v1," REF_SIG;
    assert_int_equal(check("1700000000", s, BODY, TS + 300), SL_WEBHOOK_OK);
    assert_int_equal(check("1700000000", s, BODY, TS - 300), SL_WEBHOOK_OK);
    assert_int_equal(check("1700000000", s, BODY, TS + 301), SL_WEBHOOK_STALE);
    assert_int_equal(check("1700000000", s, BODY, TS - 301), SL_WEBHOOK_FUTURE);
    assert_int_equal(check("1700000000", s, BODY, TS + 360), SL_WEBHOOK_STALE);
    assert_int_equal(check("1700000000", s, BODY, TS - 360), SL_WEBHOOK_FUTURE);
    assert_int_equal(check("", s, BODY, TS), SL_WEBHOOK_BAD_TIMESTAMP);
    assert_int_equal(check(NULL, s, BODY, TS), SL_WEBHOOK_BAD_TIMESTAMP);
    assert_int_equal(check("-1700000000", s, BODY, TS), SL_WEBHOOK_BAD_TIMESTAMP);
    assert_int_equal(check("1700000000.5", s, BODY, TS), SL_WEBHOOK_BAD_TIMESTAMP);
    assert_int_equal(check("99999999999999999999", s, BODY, TS), SL_WEBHOOK_BAD_TIMESTAMP);
    assert_non_null(strstr(sl_webhook_verdict_str(SL_WEBHOOK_STALE), "old"));
}

static void test_keys(void **state)
{
    unsigned char k[SL_WEBHOOK_KEY_MAX];
    assert_int_equal(sl_webhook_key_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", k), 24);
    assert_memory_equal(k, key, 24);
    assert_int_equal(sl_webhook_key_decode("whsec_dGVzdDE=", k), 5);
    assert_memory_equal(k, "test1", 5);
    assert_int_equal(sl_webhook_key_decode("whsec_", k), -1);
    assert_int_equal(sl_webhook_key_decode("whsec_abc", k), -1);
    assert_int_equal(sl_webhook_key_decode("whsec_ab!?", k), -1);
    assert_int_equal(sl_webhook_key_decode(NULL, k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_signature),
        cmocka_unit_test(test_rotation_and_versions),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
