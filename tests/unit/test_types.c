/*
 * Unit tests of the attribute types (types.h): every type's accepted forms,
 * normalization and problems (codes and messages), the decimal helpers and
 * the currency list. Phone numbers are in test_phone.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/arena.h"
#include "sluice/err.h"
#include "sluice/tz.h"
#include "sluice/types.h"

static struct sl_arena arena;

static int setup(void **state)
{
    sl_arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    sl_arena_cleanup(&arena);
    return 0;
}

static struct sl_attr attr_of(enum sl_type t)
{
    struct sl_attr a;
    memset(&a, 0, sizeof(a));
    a.name = "a";
    a.type = t;
    a.min_length = -1;
    a.max_length = -1;
    a.scale = -1;
    return a;
}

/* The normalized value; fails the test on problems. */
static const char *check_tz(const struct sl_attr *a, const char *v, const struct sl_tz *tz)
{
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    const char *out = NULL;
    int rc = sl_type_check(a, v, tz, &arena, &out, probs);
    if (rc != 0)
        fail_msg("'%s': rc %d: %s: %s", v, rc, rc > 0 ? probs[0].code : "-",
                 rc > 0 ? probs[0].message : "-");
    assert_non_null(out);
    return out;
}

static const char *check(const struct sl_attr *a, const char *v)
{
    return check_tz(a, v, NULL);
}

#define assert_ok(a, v, want) assert_string_equal(check((a), (v)), (want))

/* The value is given back unchanged (the same pointer: no copy). */
#define assert_same(a, v)                                                                          \
    do {                                                                                           \
        const char *in_ = (v);                                                                     \
        assert_ptr_equal(check((a), in_), in_);                                                    \
    } while (0)

/* Exactly one problem (or the first of several when n < 0 is not given). */
static void assert_bad_n(const struct sl_attr *a, const char *v, int n, const char *code,
                         const char *msg)
{
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    const char *out = NULL;
    int rc = sl_type_check(a, v, NULL, &arena, &out, probs);
    if (rc <= 0)
        fail_msg("'%s' passed as '%s' (rc %d), expected %s", v, out ? out : "(null)", rc, code);
    if (n > 0)
        assert_int_equal(rc, n);
    assert_string_equal(probs[0].code, code);
    if (msg)
        assert_string_equal(probs[0].message, msg);
}

#define assert_bad(a, v, code, msg) assert_bad_n((a), (v), 1, (code), (msg))

/* ---- names ---- */

static void test_names(void **state)
{
    enum sl_type t;
    for (int i = SL_TYPE_TEXT; i <= SL_TYPE_ENUM; i++) {
        const char *name = sl_type_name((enum sl_type)i);
        assert_non_null(name);
        assert_int_equal(sl_type_parse(name, &t), 0);
        assert_int_equal(t, i);
    }
    assert_string_equal(sl_type_name(SL_TYPE_PHONE), "phone");
    assert_null(sl_type_name((enum sl_type)99));
    assert_int_equal(sl_type_parse("string", &t), -1);
    assert_int_equal(sl_type_parse("", &t), -1);
}

/* ---- text ---- */

static void test_text(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_TEXT);
    assert_same(&a, "  anything at all  ");
    a.max_length = 5;
    assert_same(&a, "Grüße"); /* 5 characters, 7 bytes */
    assert_bad(&a, "Grüßen", "too_long", "must be at most 5 characters (is 6)");
    a.max_length = 32;
    assert_bad(&a, "0123456789012345678901234567890123456789", "too_long",
               "must be at most 32 characters (is 40)");
    a.max_length = -1;
    a.min_length = 3;
    assert_same(&a, "abc");
    assert_bad(&a, "ab", "too_short", "must be at least 3 characters (is 2)");
    assert_bad(&a, "äö", "too_short", "must be at least 3 characters (is 2)");
    a.min_length = -1;
    assert_bad(&a, "bad \xff byte", "type",
               "'bad ? byte' is not valid UTF-8 text (check the source's encoding)");
}

static void test_text_pattern(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_TEXT);
    a.pattern = "[A-Z]{2}[0-9]+";
    assert_int_equal(regcomp(&a.re, "^([A-Z]{2}[0-9]+)$", REG_EXTENDED), 0);
    assert_same(&a, "DE123");
    assert_bad(&a, "DE12x", "pattern", "'DE12x' does not match the pattern [A-Z]{2}[0-9]+");
    assert_bad(&a, "xDE12", "pattern", NULL);
    /* several problems at once */
    a.max_length = 3;
    assert_bad_n(&a, "abcd", 2, "too_long", "must be at most 3 characters (is 4)");
    regfree(&a.re);

    /* unanchored compile: still a whole-value match */
    assert_int_equal(regcomp(&a.re, "[0-9]+", REG_EXTENDED), 0);
    a.max_length = -1;
    assert_same(&a, "123");
    assert_bad(&a, "12a", "pattern", NULL);
    assert_bad(&a, "a12", "pattern", NULL);
    regfree(&a.re);
}

/* ---- integer ---- */

static void test_integer(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_INTEGER);
    assert_same(&a, "42");
    assert_same(&a, "-42");
    assert_same(&a, "0");
    assert_ok(&a, "+5", "5");
    assert_ok(&a, "-0", "0");
    assert_ok(&a, "+0", "0");
    assert_ok(&a, "007", "7");
    assert_ok(&a, "-007", "-7");
    assert_ok(&a, "000", "0");
    assert_ok(&a, "  12 ", "12");
    assert_ok(&a,
              "\xc2\xa0"
              "12\t",
              "12");
    assert_ok(&a, "12.00", "12");
    assert_ok(&a, "12.", "12");
    assert_same(&a, "9223372036854775807");
    assert_same(&a, "-9223372036854775808");
    assert_ok(&a, "00009223372036854775807", "9223372036854775807");

    assert_bad(&a, "12a", "type", "'12a' is not an integer");
    assert_bad(&a, "1.5", "type", "'1.5' is not an integer (it has a fraction)");
    assert_bad(&a, "-", "type", "'-' is not an integer");
    assert_bad(&a, "+-1", "type", NULL);
    assert_bad(&a, ".5", "type", NULL);
    assert_bad(&a, "1 000", "type", NULL);
    assert_bad(&a, "1e3", "type", "'1e3' is not an integer (exponent notation is not accepted)");
    assert_bad(&a, "1,000", "type", NULL);
    assert_bad(&a, "9223372036854775808", "out_of_range",
               "'9223372036854775808' does not fit a 64-bit integer");
    assert_bad(&a, "-9223372036854775809", "out_of_range", NULL);
    assert_bad(&a, "123456789012345678901234567890", "out_of_range", NULL);
}

static void test_integer_bounds(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_INTEGER);
    a.min = "1";
    a.max = "100";
    assert_same(&a, "1");
    assert_same(&a, "100");
    assert_ok(&a, "0100", "100");
    assert_bad(&a, "0", "out_of_range", "must be at least 1 (is 0)");
    assert_bad(&a, "-5", "out_of_range", "must be at least 1 (is -5)");
    assert_bad(&a, "101", "out_of_range", "must be at most 100 (is 101)");
    /* bounds compare exactly, beyond 64 bits too */
    assert_bad(&a, "99999999999999999999999", "out_of_range",
               "must be at most 100 (is 99999999999999999999999)");
    a.min = "-9223372036854775808";
    a.max = "9223372036854775807";
    assert_same(&a, "-9223372036854775808");
    assert_bad(&a, "9223372036854775808", "out_of_range",
               "must be at most 9223372036854775807 (is 9223372036854775808)");
    /* decimal bounds on an integer */
    a.min = "0.5";
    a.max = NULL;
    assert_bad(&a, "0", "out_of_range", "must be at least 0.5 (is 0)");
    assert_same(&a, "1");
}

/* ---- decimal ---- */

static void test_decimal(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DECIMAL);
    assert_same(&a, "1234.56");
    assert_same(&a, "-0.5");
    assert_same(&a, "1.50");
    assert_same(&a, "0.000");
    assert_same(&a, "7");
    assert_ok(&a, ".5", "0.5");
    assert_ok(&a, "-.5", "-0.5");
    assert_ok(&a, "5.", "5");
    assert_ok(&a, "+1.5", "1.5");
    assert_ok(&a, "007.50", "7.50");
    assert_ok(&a, "-0", "0");
    assert_ok(&a, "-0.00", "0.00");
    assert_ok(&a, " 3.14 ", "3.14");
    assert_ok(&a, "123456789012345678901234567890.123456789012345678901234567890",
              "123456789012345678901234567890.123456789012345678901234567890");

    assert_bad(&a, "1,5", "type",
               "'1,5' is not a decimal number (use '.' as the decimal point and no grouping; the "
               "number() filter converts '1.234,56' and '1,234.56')");
    assert_bad(&a, "1e5", "type",
               "'1e5' is not a decimal number (exponent notation is not accepted)");
    assert_bad(&a, "1.5E-3", "type", NULL);
    assert_bad(&a, ".", "type", "'.' is not a decimal number");
    assert_bad(&a, "-", "type", NULL);
    assert_bad(&a, "1.2.3", "type", NULL);
    assert_bad(&a, "abc", "type", "'abc' is not a decimal number");
    assert_bad(&a, "NaN", "type", NULL);
    assert_bad(&a, "1 000.5", "type", NULL);
    assert_bad(&a, "--1", "type", NULL);
}

static void test_decimal_scale(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DECIMAL);
    a.scale = 2;
    assert_same(&a, "1234.56");
    assert_ok(&a, "2.345", "2.34"); /* half-even: 4 is even */
    assert_ok(&a, "2.355", "2.36"); /* 5 is odd */
    assert_ok(&a, "2.3451", "2.35");
    assert_ok(&a, "2.3449999", "2.34");
    assert_ok(&a, "2.365", "2.36");
    assert_ok(&a, "2.375", "2.38");
    assert_ok(&a, "-2.345", "-2.34");
    assert_ok(&a, "-2.355", "-2.36");
    assert_ok(&a, "-0.005", "0.00");
    assert_ok(&a, "-0.0051", "-0.01");
    assert_ok(&a, "-0.004", "0.00");
    assert_ok(&a, "9.995", "10.00");
    assert_ok(&a, "99.999", "100.00");
    assert_ok(&a, "-999.995", "-1000.00");
    assert_ok(&a, "1", "1.00");
    assert_ok(&a, "1.5", "1.50");
    assert_ok(&a, ".5", "0.50");
    assert_ok(&a, "5.", "5.00");
    assert_ok(&a, "0.125", "0.12");
    assert_ok(&a, "0.135", "0.14");

    a.scale = 0;
    assert_same(&a, "12");
    assert_ok(&a, "0.5", "0");
    assert_ok(&a, "1.5", "2");
    assert_ok(&a, "2.5", "2");
    assert_ok(&a, "3.5", "4");
    assert_ok(&a, "2.51", "3");
    assert_ok(&a, "-2.5", "-2");
    assert_ok(&a, "-0.5", "0");
    assert_ok(&a, "9.5", "10");
    assert_ok(&a, "12.", "12");

    a.scale = 4;
    assert_ok(&a, "1.23", "1.2300");
    assert_ok(&a, "-1", "-1.0000");
}

static void test_decimal_bounds(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DECIMAL);
    a.scale = 2;
    a.min = "0";
    a.max = "1000.5";
    assert_ok(&a, "1000.50", "1000.50");
    assert_ok(&a, "1000.504", "1000.50"); /* bounds apply to the rounded value */
    assert_bad(&a, "1000.506", "out_of_range", "must be at most 1000.5 (is 1000.51)");
    assert_bad(&a, "-0.01", "out_of_range", "must be at least 0 (is -0.01)");
    assert_ok(&a, "-0.001", "0.00");
    assert_ok(&a, "0", "0.00");
}

static void test_decimal_helpers(void **state)
{
    char *s;
    assert_string_equal(s = sl_decimal_normalize("-0.50", -1, &arena), "-0.50");
    assert_string_equal(sl_decimal_normalize(" 007 ", -1, &arena), "7");
    assert_string_equal(sl_decimal_normalize("2.345", 2, &arena), "2.34");
    assert_string_equal(sl_decimal_normalize("-0", 3, &arena), "0.000");
    assert_string_equal(sl_decimal_normalize("0.0", -1, &arena), "0.0");
    assert_null(sl_decimal_normalize("", -1, &arena));
    assert_null(sl_decimal_normalize("1e3", -1, &arena));
    assert_null(sl_decimal_normalize("1,5", -1, &arena));
    assert_null(sl_decimal_normalize("+", 2, &arena));

    assert_int_equal(sl_decimal_cmp("1.5", "1.50"), 0);
    assert_int_equal(sl_decimal_cmp("-0", "0.000"), 0);
    assert_int_equal(sl_decimal_cmp("0", "-0.0"), 0);
    assert_true(sl_decimal_cmp("1", "2") < 0);
    assert_true(sl_decimal_cmp("10", "9") > 0);
    assert_true(sl_decimal_cmp("-10", "-9") < 0);
    assert_true(sl_decimal_cmp("-1", "0") < 0);
    assert_true(sl_decimal_cmp("0", "-1") > 0);
    assert_true(sl_decimal_cmp("0.1", "0.09") > 0);
    assert_true(sl_decimal_cmp("-0.1", "-0.09") < 0);
    assert_true(sl_decimal_cmp("1.0001", "1") > 0);
    assert_true(sl_decimal_cmp("007", "7.0") == 0);
    assert_true(sl_decimal_cmp("99999999999999999999", "100000000000000000000") < 0);
    assert_true(sl_decimal_cmp("-99999999999999999999", "-100000000000000000000") > 0);
    assert_true(sl_decimal_cmp(".5", "0.5") == 0);
    assert_true(sl_decimal_cmp("+3", "3") == 0);
}

/* ---- boolean ---- */

static void test_boolean(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_BOOLEAN);
    const char *yes[] = {"true", "TRUE", "True", "yes", "Y", "y",    "1",    "ja",
                         "JA",   "x",    "X",    "on",  "t", "wahr", " yes "};
    const char *no[] = {"false", "FALSE", "no", "N", "0", "nein", "Nein", "off", "f", "falsch"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_ok(&a, yes[i], "true");
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_ok(&a, no[i], "false");
    assert_bad(&a, "maybe", "type",
               "'maybe' is not a boolean (expected true/false, yes/no, y/n, 1/0, ja/nein or x)");
    assert_bad(&a, "2", "type", NULL);
    assert_bad(&a, "yess", "type", NULL);
    assert_bad(&a, "-", "type", NULL);
}

/* ---- date ---- */

static void test_date(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DATE);
    assert_same(&a, "2025-12-31");
    assert_same(&a, "2020-02-29");
    assert_same(&a, "2000-02-29");
    assert_same(&a, "0001-01-01");
    assert_ok(&a, " 2025-01-05 ", "2025-01-05");
    assert_ok(&a, "2025-01-05T00:00:00", "2025-01-05");
    assert_ok(&a, "2025-01-05 00:00", "2025-01-05");
    assert_ok(&a, "2025-01-05 00:00:00.000", "2025-01-05");

    assert_bad(&a, "31.02.2020", "type", "'31.02.2020' is not a date (expected YYYY-MM-DD)");
    assert_bad(&a, "2019-02-29", "type", "'2019-02-29' is not a date (2019-02 has 28 days)");
    assert_bad(&a, "1900-02-29", "type", "'1900-02-29' is not a date (1900-02 has 28 days)");
    assert_bad(&a, "2020-02-30", "type", "'2020-02-30' is not a date (2020-02 has 29 days)");
    assert_bad(&a, "2020-04-31", "type", "'2020-04-31' is not a date (2020-04 has 30 days)");
    assert_bad(&a, "2020-13-01", "type", "'2020-13-01' is not a date (month 13 does not exist)");
    assert_bad(&a, "2020-00-10", "type", "'2020-00-10' is not a date (month 00 does not exist)");
    assert_bad(&a, "2020-01-00", "type", "'2020-01-00' is not a date (day 00 does not exist)");
    assert_bad(&a, "0000-01-01", "type", "'0000-01-01' is not a date (year 0000 does not exist)");
    assert_bad(&a, "2020-1-5", "type", NULL);
    assert_bad(&a, "20200105", "type", NULL);
    assert_bad(&a, "2020-01-05x", "type", NULL);
    assert_bad(&a, "2020-01-05T13:00:00", "type",
               "'2020-01-05T13:00:00' is not a date (it has a time of day)");
    assert_bad(&a, "12/31/2025", "type", NULL);
}

static void test_days_in_month(void **state)
{
    assert_int_equal(sl_days_in_month(2020, 2), 29);
    assert_int_equal(sl_days_in_month(2019, 2), 28);
    assert_int_equal(sl_days_in_month(1900, 2), 28);
    assert_int_equal(sl_days_in_month(2000, 2), 29);
    assert_int_equal(sl_days_in_month(2024, 1), 31);
    assert_int_equal(sl_days_in_month(2024, 4), 30);
    assert_int_equal(sl_days_in_month(2024, 12), 31);
    assert_int_equal(sl_days_in_month(2024, 0), 0);
    assert_int_equal(sl_days_in_month(2024, 13), 0);
}

/* ---- datetime ---- */

static void test_datetime_utc(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DATETIME);
    assert_same(&a, "2025-12-31T23:00:00Z");
    assert_same(&a, "2025-12-31T23:00:00.123Z");
    assert_same(&a, "2025-12-31T23:00:00.123456Z");
    assert_ok(&a, "2025-12-31t23:00:00z", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31 23:00:00Z", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2026-01-01T00:00:00+01:00", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31T20:30:00-02:30", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31T23:00:00+0000", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31T23:00:00-00:00", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2026-01-01T01:00:00+02", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31 23:00:00 +00:00", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31 23:00:00 UTC", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31T23:00:00.1234567Z", "2025-12-31T23:00:00.123456Z");
    assert_ok(&a, "2025-12-31T23:00:00,5Z", "2025-12-31T23:00:00.5Z");
    assert_ok(&a, "2025-12-31T23:00:00.500+01:00", "2025-12-31T22:00:00.500Z");
    assert_ok(&a, "2021-03-01T00:30:00+01:00", "2021-02-28T23:30:00Z");
    assert_ok(&a, "2020-03-01T00:30:00+01:00", "2020-02-29T23:30:00Z");
    /* without an offset: the zone (NULL: UTC) */
    assert_ok(&a, "2025-12-31 23:00", "2025-12-31T23:00:00Z");
    assert_ok(&a, "2025-12-31T23:00:05", "2025-12-31T23:00:05Z");
    assert_ok(&a, "2025-12-31", "2025-12-31T00:00:00Z");
    /* a leap second rolls over, as PostgreSQL does */
    assert_ok(&a, "2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z");

    const char *expect = "expected RFC 3339, e.g. 2025-12-31T23:00:00Z";
    char msg[200];
    snprintf(msg, sizeof(msg), "'31.12.2025 23:00' is not a datetime (%s)", expect);
    assert_bad(&a, "31.12.2025 23:00", "type", msg);
    assert_bad(&a, "2025-12-31T23", "type", NULL);
    assert_bad(&a, "2025-12-31T23:00:00.Z", "type", NULL);
    assert_bad(&a, "2025-12-31T23:00:00+1:00", "type", NULL);
    assert_bad(&a, "2025-12-31T23:00:00 CET", "type", NULL);
    assert_bad(&a, "2025-12-31T23:00:00Zjunk", "type", NULL);
    assert_bad(&a, "2025-12-31X23:00:00Z", "type", NULL);
    assert_bad(&a, "2025-02-29T10:00:00Z", "type",
               "'2025-02-29T10:00:00Z' is not a datetime (2025-02 has 28 days)");
    assert_bad(&a, "2025-12-31T24:00:00Z", "type",
               "'2025-12-31T24:00:00Z' is not a datetime (hour 24 does not exist)");
    assert_bad(&a, "2025-12-31T23:60:00Z", "type",
               "'2025-12-31T23:60:00Z' is not a datetime (minute 60 does not exist)");
    assert_bad(&a, "2025-12-31T23:59:61Z", "type",
               "'2025-12-31T23:59:61Z' is not a datetime (second 61 does not exist)");
    assert_bad(&a, "2025-12-31T23:00:00+24:00", "type",
               "'2025-12-31T23:00:00+24:00' is not a datetime (offset +24:00 does not exist)");
    assert_bad(&a, "9999-12-31T23:00:00-02:00", "out_of_range",
               "'9999-12-31T23:00:00-02:00' is outside the years 0001 to 9999 in UTC");
    assert_bad(&a, "0001-01-01T00:30:00+01:00", "out_of_range", NULL);
}

static void test_datetime_zone(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_DATETIME);
    char err[256];
    const struct sl_tz *berlin = sl_tz_get("Europe/Berlin", err, sizeof(err));
    if (!berlin)
        fail_msg("Europe/Berlin: %s", err);
    assert_string_equal(check_tz(&a, "2026-01-01 00:00:00", berlin), "2025-12-31T23:00:00Z");
    assert_string_equal(check_tz(&a, "2025-07-01 12:00", berlin), "2025-07-01T10:00:00Z");
    assert_string_equal(check_tz(&a, "2025-07-01T12:00:00.25", berlin), "2025-07-01T10:00:00.25Z");
    /* a date alone: midnight there */
    assert_string_equal(check_tz(&a, "2025-07-01", berlin), "2025-06-30T22:00:00Z");
    /* an offset wins over the zone */
    assert_string_equal(check_tz(&a, "2025-07-01T12:00:00Z", berlin), "2025-07-01T12:00:00Z");
    assert_string_equal(check_tz(&a, "2025-07-01T12:00:00+05:00", berlin), "2025-07-01T07:00:00Z");
    /* spring forward (02:00 -> 03:00 on 2025-03-30): a wall time in the gap
     * is the instant the clock reaches after it */
    assert_string_equal(check_tz(&a, "2025-03-30 02:30", berlin), "2025-03-30T01:30:00Z");
    assert_string_equal(check_tz(&a, "2025-03-30 03:30", berlin), "2025-03-30T01:30:00Z");
    /* fall back (03:00 -> 02:00 on 2025-10-26): the earlier instant */
    assert_string_equal(check_tz(&a, "2025-10-26 02:30", berlin), "2025-10-26T00:30:00Z");

    const struct sl_tz *ny = sl_tz_get("America/New_York", err, sizeof(err));
    if (!ny)
        fail_msg("America/New_York: %s", err);
    assert_string_equal(check_tz(&a, "2025-12-31 18:00", ny), "2025-12-31T23:00:00Z");
    assert_string_equal(check_tz(&a, "2025-12-31 18:00", sl_tz_utc()), "2025-12-31T18:00:00Z");
}

/* ---- email ---- */

static void test_email(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_EMAIL);
    assert_same(&a, "ops@example.com");
    assert_same(&a, "First.Last+tag@sub.example.co.uk");
    assert_ok(&a, "  Ops@Example.COM ", "Ops@example.com");
    assert_same(&a, "o'brien@example.ie");
    assert_same(&a, "user@xn--mnchen-3ya.de");
    assert_same(&a, "jörg@münchen.de");
    assert_same(&a, "a@b.xn--p1ai");
    assert_same(&a, "x@my-host.example");

    assert_bad(&a, "A <a@b.c>", "type",
               "'A <a@b.c>' is not an e-mail address (give the address alone, without a display "
               "name or <>)");
    assert_bad(&a, "<a@b.de>", "type", NULL);
    assert_bad(&a, "a@b.de, c@d.de", "type",
               "'a@b.de, c@d.de' is not one e-mail address but several");
    assert_bad(&a, "a@b.de;c@d.de", "type", NULL);
    assert_bad(&a, "example.com", "type", "'example.com' is not an e-mail address (it has no @)");
    assert_bad(&a, "a@b@c.de", "type",
               "'a@b@c.de' is not an e-mail address (it has more than one @)");
    assert_bad(&a, "@example.com", "type",
               "'@example.com' is not an e-mail address (the part before the @ is empty)");
    assert_bad(&a, "a@", "type", "'a@' is not an e-mail address (the domain is empty)");
    assert_bad(
        &a, "a b@example.com", "type",
        "'a b@example.com' is not an e-mail address (the part before the @ contains a space)");
    assert_bad(&a, "a@localhost", "type",
               "'a@localhost' is not an e-mail address (the domain 'localhost' has no '.')");
    assert_bad(
        &a, "a@-x.com", "type",
        "'a@-x.com' is not an e-mail address (the domain label '-x' starts or ends with '-')");
    assert_bad(&a, "a@x-.com", "type", NULL);
    assert_bad(
        &a, "a@example.123", "type",
        "'a@example.123' is not an e-mail address (the top-level domain '123' is not letters)");
    assert_bad(&a, "a@example.c", "type", NULL);
    assert_bad(&a, "a@example..com", "type",
               "'a@example..com' is not an e-mail address (the domain has an empty label ('..' or "
               "a '.' at its start or end))");
    assert_bad(&a, "a@example.com.", "type", NULL);
    assert_bad(&a, "a@.example.com", "type", NULL);
    assert_bad(&a, "a@exa_mple.com", "type",
               "'a@exa_mple.com' is not an e-mail address (the domain contains '_')");
    assert_bad(&a, ".a@example.com", "type", NULL);
    assert_bad(&a, "a.@example.com", "type", NULL);
    assert_bad(
        &a, "a..b@example.com", "type",
        "'a..b@example.com' is not an e-mail address (the part before the @ has a '.' at its "
        "start or end, or '..')");
    assert_bad(&a, "a(b)@example.com", "type",
               "'a(b)@example.com' is not an e-mail address (the part before the @ contains '(')");
    assert_bad(&a, "\"a b\"@example.com", "type", NULL);
    assert_bad(&a, "a@exa mple.com", "type",
               "'a@exa mple.com' is not an e-mail address (the domain contains a space)");
    assert_bad(&a, "a\xff@example.com", "type",
               "'a?@example.com' is not an e-mail address (it is not valid UTF-8)");
    char longlocal[80];
    memset(longlocal, 'a', 65);
    strcpy(longlocal + 65, "@example.com");
    assert_bad(&a, longlocal, "type", NULL);
}

/* ---- url ---- */

static void test_url(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_URL);
    assert_same(&a, "https://example.com");
    assert_same(&a, "http://example.com/path?q=1#frag");
    assert_same(&a, "HTTPS://Example.com:8443/a");
    assert_same(&a, "https://user:pw@example.com/");
    assert_same(&a, "http://[::1]:8080/");
    assert_same(&a, "http://127.0.0.1/x");
    assert_ok(&a, "  https://example.com/a  ", "https://example.com/a");

    assert_bad(&a, "www.example.com", "type",
               "'www.example.com' is not an absolute http(s) URL (no http:// or https:// at its "
               "start)");
    assert_bad(&a, "/relative/path", "type", NULL);
    assert_bad(&a, "ftp://example.com/x", "type",
               "'ftp://example.com/x' is not an absolute http(s) URL (scheme 'ftp' is not http or "
               "https)");
    assert_bad(&a, "mailto:a@b.de", "type", NULL);
    assert_bad(&a, "https://", "type", NULL);
    assert_bad(&a, "http:///path", "type", NULL);
    assert_bad(&a, "https://exa mple.com", "type",
               "'https://exa mple.com' is not an absolute http(s) URL (it contains a space)");
    assert_bad(&a, "https://example.com:99999/", "type",
               "'https://example.com:99999/' is not an absolute http(s) URL (bad port number)");
    assert_bad(&a, "https://[::1/", "type", NULL);
}

/* ---- currency ---- */

static void test_currency(void **state)
{
    struct sl_attr a = attr_of(SL_TYPE_CURRENCY);
    assert_same(&a, "EUR");
    assert_same(&a, "USD");
    assert_ok(&a, "eur", "EUR");
    assert_ok(&a, " chf ", "CHF");
    assert_ok(&a, "Gbp", "GBP");
    const char *codes[] = {"JPY", "CNY", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "AUD",
                           "CAD", "BRL", "INR", "ZAR", "MXN", "XAU", "XCG", "ZWG", "CHE"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        assert_same(&a, codes[i]);
    assert_bad(&a, "EURO", "type", "'EURO' is not an ISO 4217 currency code");
    assert_bad(&a, "DEM", "type", NULL); /* withdrawn */
    assert_bad(&a, "HRK", "type", NULL);
    assert_bad(&a, "XXX", "type", NULL);
    assert_bad(&a, "E1R", "type", NULL);
    assert_bad(&a, "\xe2\x82\xac", "type",
               "'\xe2\x82\xac' is not an ISO 4217 currency code (the currency_code filter "
               "converts symbols)");
    assert_bad(&a, "$", "type", NULL);

    assert_true(sl_currency_valid("EUR"));
    assert_true(sl_currency_valid("usd"));
    assert_false(sl_currency_valid("EU"));
    assert_false(sl_currency_valid(""));
    assert_false(sl_currency_valid("EURO"));
    assert_false(sl_currency_valid("XTS"));
    assert_string_equal(sl_currency_code("jpy"), "JPY");
    assert_null(sl_currency_code("ABC"));
    /* the first and last of the list */
    assert_true(sl_currency_valid("AED"));
    assert_true(sl_currency_valid("ZWL"));
}

/* ---- enum ---- */

static void test_enum(void **state)
{
    char *values[] = {"open", "closed", "Temporarily Closed"};
    struct sl_attr a = attr_of(SL_TYPE_ENUM);
    a.values = values;
    a.nvalues = 3;
    assert_same(&a, "open");
    assert_same(&a, "Temporarily Closed");
    assert_ptr_equal(check(&a, "OPEN"), values[0]);
    assert_ptr_equal(check(&a, " Closed "), values[1]);
    assert_ptr_equal(check(&a, "temporarily closed"), values[2]);
    assert_bad(&a, "foo", "not_allowed", "'foo' is not one of: open, closed, Temporarily Closed");
    assert_bad(&a, "opened", "not_allowed", NULL);

    a.on_unknown_default = true;
    a.default_value = "open";
    assert_string_equal(check(&a, "foo"), "open");
    assert_ptr_equal(check(&a, "CLOSED"), values[1]);

    char *many[12] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"};
    struct sl_attr m = attr_of(SL_TYPE_ENUM);
    m.values = many;
    m.nvalues = 12;
    assert_bad(&m, "z", "not_allowed",
               "'z' is not one of: a, b, c, d, e, f, g, h, i, j, ... (12 values)");
}

/* ---- messages ---- */

static void test_quote(void **state)
{
    const char *s = "short";
    assert_ptr_equal(sl_type_quote(s, &arena), s);
    assert_string_equal(sl_type_quote("tab\there", &arena), "tab?here");
    assert_string_equal(sl_type_quote("bad\xc3", &arena), "bad?");
    char longv[200];
    memset(longv, 'x', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    const char *qv = sl_type_quote(longv, &arena);
    assert_int_equal(strlen(qv), 48 + 3);
    assert_string_equal(qv + 48, "...");
    /* cut on a character boundary */
    char umlauts[120] = "";
    for (int i = 0; i < 50; i++)
        strcat(umlauts, "\xc3\xa4");
    qv = sl_type_quote(umlauts, &arena);
    assert_int_equal(strlen(qv), 96 + 3);

    /* a long bad value is cut in the message */
    struct sl_attr a = attr_of(SL_TYPE_INTEGER);
    assert_bad(&a, longv, "type", NULL);
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    const char *out;
    assert_int_equal(sl_type_check(&a, longv, NULL, &arena, &out, probs), 1);
    assert_true(strlen(probs[0].message) < 80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_pattern, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decimal_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decimal_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decimal_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boolean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_date, setup, teardown),
        cmocka_unit_test_setup_teardown(test_days_in_month, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datetime_utc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datetime_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email, setup, teardown),
        cmocka_unit_test_setup_teardown(test_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_currency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quote, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
