/*
 * Phone numbers to E.164 (types.h): the phone type, without libphonenumber.
 *
 * A number is read as its digits (spaces, '-', '.', '/', '(', ')' and
 * Unicode spaces and dashes are separators), international when it starts
 * with '+', "00" or the region's own international prefix (011 in NANP, 0011
 * in Australia, 010 in Japan, 810 in Russia), else national, which needs the
 * attribute's region. A national number loses the region's trunk prefix ("0"
 * in most countries, "8" in Russia, "06" in Hungary, "1" in NANP); Italy, San
 * Marino and the Vatican have none: their leading 0 stays after +39. The
 * country calling code is found by E.164's prefix-free codes, the national
 * significant number (NSN) is checked against the country's plausible
 * lengths, and the whole number against E.164's 15 digits.
 *
 * Decisions: extensions ("ext. 12", "x12", "#12", ";ext=12") are refused, not
 * dropped, so that two lines of one switchboard never become the same key;
 * "+49 (0)30 ..." and "+49 030 ..." drop the 0 for countries whose trunk
 * prefix is 0; a national number that starts with the region's country code
 * but not its trunk prefix ("4930123456" in DE) is read as international
 * without the '+'; vanity letters ("1-800-FLOWERS") are refused.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/types.h"
#include "sluice/util.h"

#define TRUNK_OPT  1 /* the trunk prefix may be left out (NANP, Russia) */
#define MAX_DIGITS 24

struct ph_region {
    char region[3];
    char cc[4];
    char trunk[8];          /* trunk prefixes, '|' between alternatives; "" none */
    unsigned char min, max; /* plausible NSN lengths */
    unsigned char flags;
};

#define NANP(r)                                                                                    \
    {                                                                                              \
        r, "1", "1", 10, 10, TRUNK_OPT                                                             \
    }

/* Sorted by region (bsearch). Regions sharing a code share its rules. */
static const struct ph_region regions[] = {
    {"AD", "376", "", 6, 9, 0},
    {"AE", "971", "0", 8, 9, 0},
    {"AF", "93", "0", 9, 9, 0},
    NANP("AG"),
    NANP("AI"),
    {"AL", "355", "0", 6, 9, 0},
    {"AM", "374", "0", 8, 8, 0},
    {"AO", "244", "", 9, 9, 0},
    {"AR", "54", "0", 10, 11, TRUNK_OPT},
    NANP("AS"),
    {"AT", "43", "0", 5, 13, 0},
    {"AU", "61", "0", 9, 9, 0},
    {"AW", "297", "", 7, 7, 0},
    {"AX", "358", "0", 5, 12, 0},
    {"AZ", "994", "0|8", 9, 9, 0},
    {"BA", "387", "0", 8, 9, 0},
    NANP("BB"),
    {"BD", "880", "0", 8, 10, 0},
    {"BE", "32", "0", 8, 9, 0},
    {"BF", "226", "", 8, 8, 0},
    {"BG", "359", "0", 6, 9, 0},
    {"BH", "973", "", 8, 8, 0},
    {"BI", "257", "", 8, 8, 0},
    {"BJ", "229", "", 8, 10, 0},
    {"BL", "590", "0", 9, 9, 0},
    NANP("BM"),
    {"BN", "673", "", 7, 7, 0},
    {"BO", "591", "0", 8, 8, 0},
    {"BQ", "599", "", 7, 8, 0},
    {"BR", "55", "0", 10, 11, TRUNK_OPT},
    NANP("BS"),
    {"BT", "975", "", 7, 8, 0},
    {"BW", "267", "", 7, 8, 0},
    {"BY", "375", "80|0|8", 9, 10, TRUNK_OPT},
    {"BZ", "501", "", 7, 7, 0},
    NANP("CA"),
    {"CC", "61", "0", 9, 9, 0},
    {"CD", "243", "0", 9, 9, 0},
    {"CF", "236", "", 8, 8, 0},
    {"CG", "242", "", 9, 9, 0},
    {"CH", "41", "0", 9, 9, 0},
    {"CI", "225", "", 8, 10, 0},
    {"CK", "682", "", 5, 5, 0},
    {"CL", "56", "", 9, 9, 0},
    {"CM", "237", "", 8, 9, 0},
    {"CN", "86", "0", 8, 11, 0},
    {"CO", "57", "", 8, 10, 0},
    {"CR", "506", "", 8, 8, 0},
    {"CU", "53", "0", 6, 8, 0},
    {"CV", "238", "", 7, 7, 0},
    {"CW", "599", "", 7, 8, 0},
    {"CX", "61", "0", 9, 9, 0},
    {"CY", "357", "", 8, 8, 0},
    {"CZ", "420", "", 9, 9, 0},
    {"DE", "49", "0", 6, 13, 0},
    {"DJ", "253", "", 8, 8, 0},
    {"DK", "45", "", 8, 8, 0},
    NANP("DM"),
    NANP("DO"),
    {"DZ", "213", "0", 8, 9, 0},
    {"EC", "593", "0", 8, 9, 0},
    {"EE", "372", "", 7, 10, 0},
    {"EG", "20", "0", 8, 10, 0},
    {"EH", "212", "0", 9, 9, 0},
    {"ER", "291", "0", 7, 7, 0},
    {"ES", "34", "", 9, 9, 0},
    {"ET", "251", "0", 9, 9, 0},
    {"FI", "358", "0", 5, 12, 0},
    {"FJ", "679", "", 7, 7, 0},
    {"FK", "500", "", 5, 5, 0},
    {"FM", "691", "", 7, 7, 0},
    {"FO", "298", "", 6, 6, 0},
    {"FR", "33", "0", 9, 9, 0},
    {"GA", "241", "", 7, 8, 0},
    {"GB", "44", "0", 9, 10, 0},
    NANP("GD"),
    {"GE", "995", "0", 9, 9, 0},
    {"GF", "594", "0", 9, 9, 0},
    {"GG", "44", "0", 9, 10, 0},
    {"GH", "233", "0", 9, 9, 0},
    {"GI", "350", "", 8, 8, 0},
    {"GL", "299", "", 6, 6, 0},
    {"GM", "220", "", 7, 7, 0},
    {"GN", "224", "", 8, 9, 0},
    {"GP", "590", "0", 9, 9, 0},
    {"GQ", "240", "", 9, 9, 0},
    {"GR", "30", "", 10, 10, 0},
    {"GS", "500", "", 5, 5, 0},
    {"GT", "502", "", 8, 8, 0},
    NANP("GU"),
    {"GW", "245", "", 7, 9, 0},
    {"GY", "592", "", 7, 7, 0},
    {"HK", "852", "", 8, 8, 0},
    {"HN", "504", "", 8, 8, 0},
    {"HR", "385", "0", 7, 9, 0},
    {"HT", "509", "", 8, 8, 0},
    {"HU", "36", "06", 8, 9, 0},
    {"ID", "62", "0", 8, 12, 0},
    {"IE", "353", "0", 7, 10, 0},
    {"IL", "972", "0", 8, 9, 0},
    {"IM", "44", "0", 9, 10, 0},
    {"IN", "91", "0", 10, 10, 0},
    {"IO", "246", "", 7, 7, 0},
    {"IQ", "964", "0", 8, 10, 0},
    {"IR", "98", "0", 10, 10, 0},
    {"IS", "354", "", 7, 9, 0},
    {"IT", "39", "", 6, 11, 0},
    {"JE", "44", "0", 9, 10, 0},
    NANP("JM"),
    {"JO", "962", "0", 8, 9, 0},
    {"JP", "81", "0", 9, 10, 0},
    {"KE", "254", "0", 7, 10, 0},
    {"KG", "996", "0", 9, 9, 0},
    {"KH", "855", "0", 8, 9, 0},
    {"KI", "686", "", 5, 8, 0},
    {"KM", "269", "", 7, 7, 0},
    NANP("KN"),
    {"KP", "850", "0", 6, 10, 0},
    {"KR", "82", "0", 8, 10, 0},
    {"KW", "965", "", 8, 8, 0},
    NANP("KY"),
    {"KZ", "7", "8", 10, 10, TRUNK_OPT},
    {"LA", "856", "0", 8, 10, 0},
    {"LB", "961", "0", 7, 8, 0},
    NANP("LC"),
    {"LI", "423", "", 7, 9, 0},
    {"LK", "94", "0", 9, 9, 0},
    {"LR", "231", "0", 7, 9, 0},
    {"LS", "266", "", 8, 8, 0},
    {"LT", "370", "8|0", 8, 8, 0},
    {"LU", "352", "", 4, 11, 0},
    {"LV", "371", "", 8, 8, 0},
    {"LY", "218", "0", 8, 9, 0},
    {"MA", "212", "0", 9, 9, 0},
    {"MC", "377", "0", 8, 9, 0},
    {"MD", "373", "0", 8, 8, 0},
    {"ME", "382", "0", 8, 8, 0},
    {"MF", "590", "0", 9, 9, 0},
    {"MG", "261", "0", 9, 9, 0},
    {"MH", "692", "", 7, 7, 0},
    {"MK", "389", "0", 8, 8, 0},
    {"ML", "223", "", 8, 8, 0},
    {"MM", "95", "0", 7, 10, 0},
    {"MN", "976", "0", 8, 8, 0},
    {"MO", "853", "", 8, 8, 0},
    NANP("MP"),
    {"MQ", "596", "0", 9, 9, 0},
    {"MR", "222", "", 8, 8, 0},
    NANP("MS"),
    {"MT", "356", "", 8, 8, 0},
    {"MU", "230", "", 7, 8, 0},
    {"MV", "960", "", 7, 7, 0},
    {"MW", "265", "0", 7, 9, 0},
    {"MX", "52", "", 10, 10, 0},
    {"MY", "60", "0", 8, 10, 0},
    {"MZ", "258", "", 8, 9, 0},
    {"NA", "264", "0", 8, 9, 0},
    {"NC", "687", "", 6, 6, 0},
    {"NE", "227", "", 8, 8, 0},
    {"NF", "672", "", 6, 6, 0},
    {"NG", "234", "0", 8, 10, 0},
    {"NI", "505", "", 8, 8, 0},
    {"NL", "31", "0", 9, 10, 0},
    {"NO", "47", "", 8, 8, 0},
    {"NP", "977", "0", 8, 10, 0},
    {"NR", "674", "", 7, 7, 0},
    {"NU", "683", "", 4, 5, 0},
    {"NZ", "64", "0", 8, 10, 0},
    {"OM", "968", "", 8, 8, 0},
    {"PA", "507", "", 7, 8, 0},
    {"PE", "51", "0", 8, 9, 0},
    {"PF", "689", "", 8, 8, 0},
    {"PG", "675", "", 7, 8, 0},
    {"PH", "63", "0", 8, 10, 0},
    {"PK", "92", "0", 9, 10, 0},
    {"PL", "48", "", 9, 9, 0},
    {"PM", "508", "0", 6, 6, 0},
    NANP("PR"),
    {"PS", "970", "0", 8, 9, 0},
    {"PT", "351", "", 9, 9, 0},
    {"PW", "680", "", 7, 7, 0},
    {"PY", "595", "0", 6, 9, 0},
    {"QA", "974", "", 8, 8, 0},
    {"RE", "262", "0", 9, 9, 0},
    {"RO", "40", "0", 9, 9, 0},
    {"RS", "381", "0", 7, 10, 0},
    {"RU", "7", "8", 10, 10, TRUNK_OPT},
    {"RW", "250", "0", 9, 9, 0},
    {"SA", "966", "0", 9, 9, 0},
    {"SB", "677", "", 5, 7, 0},
    {"SC", "248", "", 7, 7, 0},
    {"SD", "249", "0", 9, 9, 0},
    {"SE", "46", "0", 7, 10, 0},
    {"SG", "65", "", 8, 8, 0},
    {"SH", "290", "", 4, 5, 0},
    {"SI", "386", "0", 8, 8, 0},
    {"SJ", "47", "", 8, 8, 0},
    {"SK", "421", "0", 9, 9, 0},
    {"SL", "232", "0", 8, 8, 0},
    {"SM", "378", "", 6, 10, 0},
    {"SN", "221", "", 9, 9, 0},
    {"SO", "252", "0", 7, 9, 0},
    {"SR", "597", "", 6, 7, 0},
    {"SS", "211", "0", 9, 9, 0},
    {"ST", "239", "", 7, 7, 0},
    {"SV", "503", "", 8, 8, 0},
    NANP("SX"),
    {"SY", "963", "0", 8, 9, 0},
    {"SZ", "268", "", 8, 8, 0},
    NANP("TC"),
    {"TD", "235", "", 8, 8, 0},
    {"TF", "262", "0", 9, 9, 0},
    {"TG", "228", "", 8, 8, 0},
    {"TH", "66", "0", 8, 9, 0},
    {"TJ", "992", "8", 9, 9, TRUNK_OPT},
    {"TK", "690", "", 4, 7, 0},
    {"TL", "670", "", 7, 8, 0},
    {"TM", "993", "8", 8, 8, TRUNK_OPT},
    {"TN", "216", "", 8, 8, 0},
    {"TO", "676", "", 5, 7, 0},
    {"TR", "90", "0", 10, 10, 0},
    NANP("TT"),
    {"TV", "688", "", 5, 7, 0},
    {"TW", "886", "0", 8, 9, 0},
    {"TZ", "255", "0", 9, 9, 0},
    {"UA", "380", "0", 9, 9, 0},
    {"UG", "256", "0", 9, 9, 0},
    NANP("US"),
    {"UY", "598", "0", 8, 8, 0},
    {"UZ", "998", "8", 9, 9, TRUNK_OPT},
    {"VA", "39", "", 6, 11, 0},
    NANP("VC"),
    {"VE", "58", "0", 10, 10, 0},
    NANP("VG"),
    NANP("VI"),
    {"VN", "84", "0", 9, 10, 0},
    {"VU", "678", "", 5, 7, 0},
    {"WF", "681", "", 6, 9, 0},
    {"WS", "685", "", 5, 7, 0},
    {"XK", "383", "0", 8, 9, 0},
    {"YE", "967", "0", 7, 9, 0},
    {"YT", "262", "0", 9, 9, 0},
    {"ZA", "27", "0", 9, 9, 0},
    {"ZM", "260", "0", 9, 9, 0},
    {"ZW", "263", "0", 8, 10, 0},
};

/* Country codes that belong to no region (freephone, satellite, networks):
 * only E.164's total length is checked. */
static const char *const nongeo[] = {"800", "808", "870", "878", "881", "882", "883", "888", "979"};

/* Code -> first region of regions[] with it, for codes of 1, 2, 3 digits;
 * -1 none, -2 a non-geographic code. */
static short idx1[10], idx2[100], idx3[1000];
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_build(void)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(idx1); i++)
        idx1[i] = -1;
    for (size_t i = 0; i < SL_ARRAY_LEN(idx2); i++)
        idx2[i] = -1;
    for (size_t i = 0; i < SL_ARRAY_LEN(idx3); i++)
        idx3[i] = -1;
    for (size_t i = 0; i < SL_ARRAY_LEN(nongeo); i++)
        idx3[atoi(nongeo[i])] = -2;
    for (size_t i = SL_ARRAY_LEN(regions); i-- > 0;) {
        const char *cc = regions[i].cc;
        int code = atoi(cc);
        switch (strlen(cc)) {
        case 1:
            idx1[code] = (short)i;
            break;
        case 2:
            idx2[code] = (short)i;
            break;
        default:
            idx3[code] = (short)i;
            break;
        }
    }
}

static int region_cmp(const void *key, const void *elem)
{
    const char *k = key;
    const struct ph_region *r = elem;
    return strncasecmp(k, r->region, 2);
}

static const struct ph_region *region_find(const char *region)
{
    if (!region || strlen(region) != 2)
        return NULL;
    return bsearch(region, regions, SL_ARRAY_LEN(regions), sizeof(regions[0]), region_cmp);
}

bool sl_phone_region_valid(const char *region)
{
    return region_find(region) != NULL;
}

/* The length of the trunk prefix of r that digits start with, trying the
 * alternatives in order and taking the first whose rest has a plausible
 * length when fit is set (else the first that matches); 0 none. */
static size_t trunk_match(const struct ph_region *r, const char *d, size_t nd, bool fit)
{
    const char *t = r->trunk;
    while (*t) {
        size_t len = strcspn(t, "|");
        if (nd > len && memcmp(d, t, len) == 0 &&
            (!fit || (nd - len >= r->min && nd - len <= r->max)))
            return len;
        t += len;
        if (*t == '|')
            t++;
    }
    return 0;
}

/* Whether a trunk prefix of r starts with '0': then no NSN of r does. */
static bool trunk_zero(const struct ph_region *r)
{
    return r->trunk[0] == '0' || strstr(r->trunk, "|0") != NULL;
}

/* Extension markers, lower case; after one come digits only. */
static size_t ext_marker(const char *s, size_t n)
{
    static const char *const marks[] = {"extension", "extn", "ext", "durchwahl",
                                        "poste",     "dw",   "x",   "#"};
    for (size_t i = 0; i < SL_ARRAY_LEN(marks); i++) {
        size_t len = strlen(marks[i]);
        if (n >= len && strncasecmp(s, marks[i], len) == 0)
            return len;
    }
    return 0;
}

/* Whether s[0..n) is an extension: an optional ',' or ';', a marker,
 * optional ".: ", then digits (and spaces) to the end. */
static bool is_extension(const char *s, size_t n)
{
    size_t i = 0;
    if (n && (s[0] == ',' || s[0] == ';')) { /* "..., ext. 12" */
        i = 1;
        while (i < n && s[i] == ' ')
            i++;
    }
    size_t m = ext_marker(s + i, n - i);
    if (!m)
        return false;
    i += m;
    while (i < n && (s[i] == '.' || s[i] == ':' || s[i] == ' '))
        i++;
    size_t digits = 0;
    for (; i < n; i++) {
        if (s[i] >= '0' && s[i] <= '9')
            digits++;
        else if (s[i] != ' ' && s[i] != '-')
            return false;
    }
    return digits > 0;
}

/* Length of a separator at s: ASCII ones, and U+00A0, U+2007, U+2009,
 * U+202F (spaces), U+2010..U+2015 (dashes); 0 none. */
static size_t separator(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    if (strchr(" \t-./()", s[0]) && s[0])
        return 1;
    if (n >= 2 && s[0] == 0xc2 && s[1] == 0xa0)
        return 2;
    if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
        (s[2] == 0x87 || s[2] == 0x89 || s[2] == 0xaf || (s[2] >= 0x90 && s[2] <= 0x95)))
        return 3;
    return 0;
}

struct phone {
    const char *value; /* as given, for messages */
    struct sl_arena *arena;
    const char **why;
};

__attribute__((format(printf, 2, 3))) static char *fail(struct phone *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *detail = sl_arena_vprintf(p->arena, fmt, ap);
    va_end(ap);
    *p->why = detail
                  ? sl_arena_printf(p->arena, "'%s' %s", sl_type_quote(p->value, p->arena), detail)
                  : NULL;
    return NULL;
}

/* "+<cc><nsn>" after the checks of E.164 and of the country's lengths. */
static char *finish(struct phone *p, const char *cc, const struct ph_region *r, const char *nsn,
                    size_t nn)
{
    size_t cl = strlen(cc);
    if (r && (nn < r->min || nn > r->max)) {
        if (r->min == r->max)
            return fail(p, "has too %s digits for +%s (%zu after the country code, %u expected)",
                        nn < r->min ? "few" : "many", cc, nn, r->min);
        return fail(p, "has too %s digits for +%s (%zu after the country code, %u to %u expected)",
                    nn < r->min ? "few" : "many", cc, nn, r->min, r->max);
    }
    if (cl + nn > 15)
        return fail(p, "has too many digits for a phone number (%zu, at most 15)", cl + nn);
    if (!r && cl + nn < 8)
        return fail(p, "has too few digits for a phone number (%zu, at least 8)", cl + nn);
    if (r && trunk_zero(r) && nsn[0] == '0')
        return fail(p, "is not a valid number of +%s (it starts with 0 after the country code)",
                    cc);
    char *out = sl_arena_alloc(p->arena, 1 + cl + nn + 1);
    if (!out) {
        *p->why = NULL;
        return NULL;
    }
    out[0] = '+';
    memcpy(out + 1, cc, cl);
    memcpy(out + 1 + cl, nsn, nn);
    out[1 + cl + nn] = '\0';
    return out;
}

/* digits (without '+' or international prefix) as an international number. */
static char *international(struct phone *p, const char *d, size_t nd)
{
    pthread_once(&idx_once, idx_build);
    int code = 0;
    for (size_t len = 1; len <= 3 && len < nd; len++) {
        code = code * 10 + (d[len - 1] - '0');
        short at = len == 1 ? idx1[code] : len == 2 ? idx2[code] : idx3[code];
        if (at == -1)
            continue;
        char cc[4];
        memcpy(cc, d, len);
        cc[len] = '\0';
        if (at == -2)
            return finish(p, cc, NULL, d + len, nd - len);
        const struct ph_region *r = &regions[at];
        const char *nsn = d + len;
        size_t nn = nd - len;
        /* "+49 (0)30 ...", "+49 030 ...", "+7 8 495 ...": the trunk prefix
         * written after the country code */
        if (trunk_zero(r) && nsn[0] == '0') {
            size_t t = trunk_match(r, nsn, nn, false);
            if (t && nsn[0] == '0') {
                nsn += t;
                nn -= t;
            }
        } else if (nn < r->min || nn > r->max) {
            size_t t = trunk_match(r, nsn, nn, true);
            nsn += t;
            nn -= t;
        }
        return finish(p, cc, r, nsn, nn);
    }
    return fail(p, "starts with no known country calling code");
}

char *sl_phone_e164(const char *s, const char *region, struct sl_arena *arena, const char **why)
{
    struct phone p = {.value = s, .arena = arena, .why = why};
    char d[MAX_DIGITS];
    size_t nd = 0, n = strlen(s), i = 0;
    bool plus = false;
    while (n && strchr(" \t\r\n", s[n - 1]))
        n--;
    while (i < n && strchr(" \t\r\n", s[i]))
        i++;
    if (n - i >= 4 && strncasecmp(s + i, "tel:", 4) == 0) {
        i += 4;
        const char *semi = memchr(s + i, ';', n - i);
        if (semi) {
            const char *ext = strstr(semi, ";ext=");
            if (ext && ext < s + n)
                return fail(&p, "has an extension, which E.164 numbers cannot hold");
            n = (size_t)(semi - s);
        }
    }
    while (i < n) {
        char ch = s[i];
        size_t k;
        if (ch >= '0' && ch <= '9') {
            if (nd == MAX_DIGITS)
                return fail(&p, "has too many digits for a phone number");
            d[nd++] = ch;
            i++;
        } else if (ch == '+') {
            if (nd || plus)
                return fail(&p, "is not a phone number (unexpected '+')");
            plus = true;
            i++;
        } else if ((k = separator(s + i, n - i))) {
            i += k;
        } else if (nd && is_extension(s + i, n - i)) {
            return fail(&p, "has an extension, which E.164 numbers cannot hold");
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            return fail(&p, "is not a phone number (it contains letters)");
        } else if (ch > 0x20 && ch < 0x7f) {
            return fail(&p, "is not a phone number (unexpected '%c')", ch);
        } else {
            return fail(&p, "is not a phone number (unexpected character)");
        }
    }
    if (nd == 0)
        return fail(&p, "is not a phone number (it has no digits)");

    const struct ph_region *r = region && region[0] ? region_find(region) : NULL;
    if (region && region[0] && !r)
        return fail(&p, "cannot be read: region '%s' is unknown", region);
    if (plus)
        return international(&p, d, nd);
    /* international prefixes: 00 everywhere, and the region's own */
    static const struct {
        const char *prefix;
        const char *cc;
    } idd[] = {{"0011", "61"}, {"011", "1"}, {"010", "81"}, {"810", "7"}, {"810", "375"}};
    if (r) {
        for (size_t j = 0; j < SL_ARRAY_LEN(idd); j++) {
            size_t len = strlen(idd[j].prefix);
            if (strcmp(r->cc, idd[j].cc) == 0 && nd > len && memcmp(d, idd[j].prefix, len) == 0)
                return international(&p, d + len, nd - len);
        }
    }
    if (nd > 2 && d[0] == '0' && d[1] == '0')
        return international(&p, d + 2, nd - 2);
    if (!r)
        return fail(&p, "is a national number; set the attribute's region");

    /* national: the trunk prefix, or none where there is none */
    size_t t = trunk_match(r, d, nd, true);
    if (t)
        return finish(&p, r->cc, r, d + t, nd - t);
    bool has_trunk = r->trunk[0] != '\0';
    if ((!has_trunk || (r->flags & TRUNK_OPT)) && nd >= r->min && nd <= r->max)
        return finish(&p, r->cc, r, d, nd);
    size_t cl = strlen(r->cc);
    if (nd > cl && memcmp(d, r->cc, cl) == 0 && nd - cl >= r->min && nd - cl <= r->max)
        return international(&p, d, nd);
    if (has_trunk && !(r->flags & TRUNK_OPT) && !trunk_match(r, d, nd, false)) {
        size_t tl = strcspn(r->trunk, "|");
        return fail(&p,
                    "is not a complete national number of %.2s (expected it to start with %.*s, "
                    "or with +%s)",
                    r->region, (int)tl, r->trunk, r->cc);
    }
    t = trunk_match(r, d, nd, false);
    return finish(&p, r->cc, r, d + t, nd - t);
}
