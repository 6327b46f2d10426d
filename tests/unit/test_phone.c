/*
 * Unit tests of phone numbers to E.164 (types.h sl_phone_e164): national and
 * international forms of DE, US, GB, FR, IT, CH, AT, NL and others, trunk
 * prefixes, extensions, and every refusal's message; also through
 * sl_type_check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sluice/arena.h"
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

static void ok(const char *region, const char *in, const char *want)
{
    const char *why = NULL;
    char *got = sl_phone_e164(in, region, &arena, &why);
    if (!got)
        fail_msg("'%s' (%s): %s", in, region, why ? why : "(null)");
    if (strcmp(got, want) != 0)
        fail_msg("'%s' (%s): got %s, want %s", in, region, got, want);
}

static void bad(const char *region, const char *in, const char *msg)
{
    const char *why = NULL;
    char *got = sl_phone_e164(in, region, &arena, &why);
    if (got)
        fail_msg("'%s' (%s) passed as %s", in, region, got);
    assert_non_null(why);
    if (msg && strcmp(why, msg) != 0)
        fail_msg("'%s' (%s): message\n  %s\nwanted\n  %s", in, region, why, msg);
}

static void test_de(void **state)
{
    ok("", "+49 30 1234567", "+49301234567");
    ok("DE", "+49 30 1234567", "+49301234567");
    ok("US", "+49 30 1234567", "+49301234567"); /* international: region ignored */
    ok("", "0049 30 1234567", "+49301234567");
    ok("DE", "030 1234567", "+49301234567");
    ok("DE", "(030) 123 45 67", "+49301234567");
    ok("DE", "030/1234567-89", "+4930123456789");
    ok("DE", "030-123 456 7", "+49301234567");
    ok("DE", "0171 1234567", "+491711234567");
    ok("de", "030 1234567", "+49301234567");
    ok("", "+49 (0)30 1234567", "+49301234567");
    ok("", "+49 (0) 30 1234567", "+49301234567");
    ok("", "+49 030 1234567", "+49301234567");
    ok("", "+49301234567", "+49301234567");
    ok("", "tel:+49-30-1234567", "+49301234567");
    ok("", "TEL:+49-30-1234567", "+49301234567");
    ok("DE", "4930123456", "+4930123456"); /* the country code without '+' */
    ok("DE", " 030 1234567 ", "+49301234567");
    ok("DE",
       "030\xc2\xa0"
       "1234567",
       "+49301234567"); /* no-break space */
    ok("DE",
       "030\xe2\x80\x93"
       "1234567",
       "+49301234567"); /* en dash */
    bad("", "030 1234567", "'030 1234567' is a national number; set the attribute's region");
    bad("DE", "30 1234567",
        "'30 1234567' is not a complete national number of DE (expected it to start with 0, or "
        "with +49)");
    bad("", "+49 301",
        "'+49 301' has too few digits for +49 (3 after the country code, 6 to 13 expected)");
    bad("DE", "030 12", NULL);
    bad("", "+49 12345678901234", NULL);
    bad("", "+49 00 30 1234567",
        "'+49 00 30 1234567' is not a valid number of +49 (it starts with 0 after the country "
        "code)");
}

static void test_us(void **state)
{
    ok("", "+1 (212) 555-0100", "+12125550100");
    ok("US", "212-555-0100", "+12125550100");
    ok("US", "(212) 555-0100", "+12125550100");
    ok("US", "1-212-555-0100", "+12125550100");
    ok("US", "1 (212) 555-0100", "+12125550100");
    ok("US", "212.555.0100", "+12125550100");
    ok("CA", "416-555-0199", "+14165550199");
    ok("US", "011 49 30 1234567", "+49301234567");
    ok("US", "+1 212 555 0100", "+12125550100");
    bad("US", "555-0100",
        "'555-0100' has too few digits for +1 (7 after the country code, 10 "
        "expected)");
    bad("", "212-555-0100", "'212-555-0100' is a national number; set the attribute's region");
    bad("US", "212-555-0100 ext. 12",
        "'212-555-0100 ext. 12' has an extension, which E.164 numbers cannot hold");
    bad("US", "212-555-0100 x12", NULL);
    bad("US", "212-555-0100 X 12", NULL);
    bad("US", "212-555-0100, ext 12", NULL);
    bad("US", "212-555-0100 #12", NULL);
    bad("", "+1 212 555 0100 extension 7", NULL);
    bad("", "tel:+1-212-555-0100;ext=12", NULL);
    bad("US", "1-800-FLOWERS", "'1-800-FLOWERS' is not a phone number (it contains letters)");
}

static void test_gb(void **state)
{
    ok("", "+44 20 7946 0958", "+442079460958");
    ok("GB", "020 7946 0958", "+442079460958");
    ok("", "+44 (0)20 7946 0958", "+442079460958");
    ok("GB", "07700 900123", "+447700900123");
    ok("", "0044 7700 900123", "+447700900123");
    ok("GB", "(01632) 960 001", "+441632960001");
    bad("GB", "020 7946 09", NULL);
}

static void test_fr_it(void **state)
{
    ok("", "+33 1 23 45 67 89", "+33123456789");
    ok("FR", "01 23 45 67 89", "+33123456789");
    ok("FR", "06.12.34.56.78", "+33612345678");
    ok("", "+33 (0)6 12 34 56 78", "+33612345678");
    bad("FR", "01 23 45 67", NULL);

    /* Italy keeps its leading 0 after +39 */
    ok("", "+39 06 1234 5678", "+390612345678");
    ok("IT", "06 1234 5678", "+390612345678");
    ok("IT", "02 12345678", "+390212345678");
    ok("IT", "333 123 4567", "+393331234567");
    ok("", "+39 333 1234567", "+393331234567");
    ok("", "0039 06 1234 5678", "+390612345678");
    ok("VA", "06 698 12345", "+390669812345");
}

static void test_ch_at_nl(void **state)
{
    ok("", "+41 44 123 45 67", "+41441234567");
    ok("CH", "044 123 45 67", "+41441234567");
    ok("", "0041 44 123 45 67", "+41441234567");
    ok("CH", "079 123 45 67", "+41791234567");
    bad("CH", "044 123 45 6",
        "'044 123 45 6' has too few digits for +41 (8 after the country code, 9 expected)");

    ok("", "+43 1 234567", "+431234567");
    ok("AT", "01 234 5678", "+4312345678");
    ok("AT", "0664 1234567", "+436641234567");
    ok("", "+43 (0)664 1234567", "+436641234567");

    ok("", "+31 20 123 4567", "+31201234567");
    ok("NL", "020-1234567", "+31201234567");
    ok("NL", "06-12345678", "+31612345678");
    ok("NL", "06 1234 5678", "+31612345678");
}

static void test_others(void **state)
{
    /* Russia: trunk 8, optional */
    ok("RU", "8 (495) 123-45-67", "+74951234567");
    ok("RU", "495 123 45 67", "+74951234567");
    ok("RU", "8 800 123 45 67", "+78001234567");
    ok("", "+7 495 123 45 67", "+74951234567");
    ok("", "+7 8 495 123 45 67", "+74951234567");
    ok("RU", "8 10 49 30 1234567", "+49301234567");
    /* Hungary: trunk 06 */
    ok("HU", "06 1 234 5678", "+3612345678");
    ok("", "+36 1 234 5678", "+3612345678");
    /* no trunk prefix */
    ok("ES", "612 345 678", "+34612345678");
    ok("ES", "34 612 345 678", "+34612345678");
    ok("DK", "32 12 34 56", "+4532123456");
    ok("PL", "512 345 678", "+48512345678");
    /* Australia, Japan */
    ok("AU", "(02) 9876 5432", "+61298765432");
    ok("AU", "0011 49 30 1234567", "+49301234567");
    ok("JP", "03-1234-5678", "+81312345678");
    ok("JP", "010 1 212 555 0100", "+12125550100");
    ok("IN", "098765 43210", "+919876543210");
    ok("CN", "010 1234 5678", "+861012345678");
    ok("BR", "(11) 91234-5678", "+5511912345678");
    ok("BR", "011 91234-5678", "+5511912345678");
    ok("", "+55 11 91234 5678", "+5511912345678");
    ok("MX", "55 1234 5678", "+525512345678");
    ok("AU", "0412 345 678", "+61412345678");
    ok("ZA", "021 123 4567", "+27211234567");
    ok("", "+800 1234 5678", "+80012345678"); /* international freephone */
    ok("", "+683 4002", "+6834002");          /* Niue: 4 digits */
}

static void test_refusals(void **state)
{
    bad("", "+999 1234567", "'+999 1234567' starts with no known country calling code");
    bad("", "+0049 30 1234567", NULL);
    bad("", "++49 30 1234567", "'++49 30 1234567' is not a phone number (unexpected '+')");
    bad("", "49+30", NULL);
    bad("", "+", "'+' is not a phone number (it has no digits)");
    bad("DE", "()", NULL);
    bad("DE", "030 123456, 030 654321",
        "'030 123456, 030 654321' is not a phone number "
        "(unexpected ',')");
    bad("DE", "abc", "'abc' is not a phone number (it contains letters)");
    bad("DE", "030 1234567 \xff", "'030 1234567 ?' is not a phone number (unexpected character)");
    bad("", "+49 1234 5678 9012 3456 7890 1234", NULL);
    bad("", "+1 212 555 0100 1234", NULL);
    bad("ZZ", "030 1234567", "'030 1234567' cannot be read: region 'ZZ' is unknown");
    ok("", "+49 30 12345678901", "+493012345678901"); /* 15 digits in all */
    bad("", "+49 30 123456789012", NULL);
}

static void test_regions(void **state)
{
    /* every ISO 3166 region with phone numbers (also checks the table's order) */
    static const char all[] =
        "AD AE AF AG AI AL AM AO AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ "
        "BR BS BT BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM "
        "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR "
        "GS GT GU GW GY HK HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM "
        "KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO "
        "MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH "
        "PK PL PM PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR "
        "SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG US UY UZ VA VC "
        "VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";
    for (const char *p = all; *p; p += p[2] ? 3 : 2) {
        char r[3] = {p[0], p[1], '\0'};
        if (!sl_phone_region_valid(r))
            fail_msg("region %s", r);
    }
    assert_true(sl_phone_region_valid("de"));
    assert_false(sl_phone_region_valid("ZZ"));
    assert_false(sl_phone_region_valid("BV")); /* Bouvet Island: no numbers */
    assert_false(sl_phone_region_valid(""));
    assert_false(sl_phone_region_valid("D"));
    assert_false(sl_phone_region_valid("DEU"));
    assert_false(sl_phone_region_valid(NULL));
}

static void test_type_check(void **state)
{
    struct sl_attr a;
    memset(&a, 0, sizeof(a));
    a.type = SL_TYPE_PHONE;
    a.min_length = a.max_length = -1;
    a.scale = -1;
    strcpy(a.region, "DE");
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    const char *out = NULL;
    assert_int_equal(sl_type_check(&a, "030 1234567", NULL, &arena, &out, probs), 0);
    assert_string_equal(out, "+49301234567");
    const char *norm = "+49301234567";
    assert_int_equal(sl_type_check(&a, norm, NULL, &arena, &out, probs), 0);
    assert_ptr_equal(out, norm);
    assert_int_equal(sl_type_check(&a, "30 1234567", NULL, &arena, &out, probs), 1);
    assert_string_equal(probs[0].code, "type");
    a.region[0] = '\0';
    assert_int_equal(sl_type_check(&a, "030 1234567", NULL, &arena, &out, probs), 1);
    assert_string_equal(probs[0].message,
                        "'030 1234567' is a national number; set the attribute's region");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_de, setup, teardown),
        cmocka_unit_test_setup_teardown(test_us, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fr_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ch_at_nl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_type_check, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
