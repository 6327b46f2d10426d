/*
 * ISO 4217 currency codes in use (types.h): the currency type and the
 * currency_code filter check against this list.
 *
 * The list is ISO 4217's list one as of 2025: active codes including funds
 * and precious metals (CHE, XAU, ...), plus XCG (Caribbean guilder, 2025) and
 * ZWG (Zimbabwe Gold, 2024); HRK (withdrawn 2023) is gone, and XTS (for
 * tests) and XXX (no currency) are left out because no record is priced in
 * them. ANG, CUC, SLL and ZWL are still listed while they are phased out.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/types.h"
#include "sluice/util.h"

/* Sorted (bsearch). */
static const char codes[][4] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR",
    "XOF", "XPD", "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
};

static int code_cmp(const void *key, const void *elem)
{
    return memcmp(key, elem, 3);
}

const char *sl_currency_code(const char *code)
{
    char up[3];
    for (int i = 0; i < 3; i++) {
        char c = code[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return NULL;
        up[i] = c;
    }
    if (code[3] != '\0')
        return NULL;
    const char(*hit)[4] = bsearch(up, codes, SL_ARRAY_LEN(codes), sizeof(codes[0]), code_cmp);
    return hit ? *hit : NULL;
}

bool sl_currency_valid(const char *code)
{
    return sl_currency_code(code) != NULL;
}
