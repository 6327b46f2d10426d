/*
 * Attribute types (types.h, JOBS.md "target"): checking and normalizing the
 * mapped text of one attribute, for the validator (every attribute of every
 * row) and for the job loader (defaults, bounds).
 *
 * Each check parses the value in place and returns it unchanged when it is
 * already normal, so that the common case allocates nothing; normalized
 * copies and problem messages live in the caller's arena. Decimals are exact
 * digit strings throughout: no floating point ever touches a value.
 *
 * Decisions beyond JOBS.md: every type but text trims surrounding white
 * space; integers accept a fraction of zeros ("12.00") and must fit a 64-bit
 * integer (PostgreSQL bigint); decimals accept ".5" and "5." and keep the
 * fraction digits as given unless a scale is set; dates accept a time of
 * exactly midnight ("2025-12-31 00:00:00", as database exports write dates);
 * datetimes accept a date alone (midnight in the job's zone) and " UTC" as an
 * offset, drop fraction digits past microseconds, and must fall in the years
 * 0001-9999 in UTC; e-mail addresses are dot-atoms (no quoted local parts)
 * whose domain is lowercased in ASCII (UTF-8 labels stay as given); URLs are
 * parsed by libcurl and returned as given.
 */
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "sluice/err.h"
#include "sluice/types.h"
#include "sluice/tz.h"
#include "sluice/util.h"

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define QUOTE_MAX   48 /* characters of a value quoted in a message */

/* ---- type names ---- */

static const char *const type_names[] = {
    [SL_TYPE_TEXT] = "text",         [SL_TYPE_INTEGER] = "integer", [SL_TYPE_DECIMAL] = "decimal",
    [SL_TYPE_BOOLEAN] = "boolean",   [SL_TYPE_DATE] = "date",       [SL_TYPE_DATETIME] = "datetime",
    [SL_TYPE_EMAIL] = "email",       [SL_TYPE_PHONE] = "phone",     [SL_TYPE_URL] = "url",
    [SL_TYPE_CURRENCY] = "currency", [SL_TYPE_ENUM] = "enum",
};

const char *sl_type_name(enum sl_type t)
{
    if ((unsigned)t >= SL_ARRAY_LEN(type_names))
        return NULL;
    return type_names[t];
}

int sl_type_parse(const char *name, enum sl_type *t)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(type_names); i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *t = (enum sl_type)i;
            return 0;
        }
    }
    return -1;
}

/* ---- small helpers ---- */

int sl_days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 0;
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Howard Hinnant's civil calendar algorithms (proleptic Gregorian). */
/* Civil dates: tz.h's (H. Hinnant's algorithms), with int months and days. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    return sl_days_from_civil(y, (unsigned)m, (unsigned)d);
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    unsigned um, ud;
    sl_civil_from_days(z, y, &um, &ud);
    *m = (int)um;
    *d = (int)ud;
}

/* Length of a white space character at s (ASCII or U+00A0), 0 if none. */
static size_t space_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r'))
        return 1;
    if (c == 0xc2 && n >= 2 && (unsigned char)s[1] == 0xa0)
        return 2;
    return 0;
}

static void trim(const char **s, size_t *n)
{
    size_t k;
    while (*n && (k = space_len(*s, *n))) {
        *s += k;
        *n -= k;
    }
    while (*n) {
        unsigned char c = (unsigned char)(*s)[*n - 1];
        if (c == ' ' || (c >= '\t' && c <= '\r'))
            (*n)--;
        else if (c == 0xa0 && *n >= 2 && (unsigned char)(*s)[*n - 2] == 0xc2)
            *n -= 2;
        else
            break;
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
    if (len > n || !sl_utf8_valid((const char *)s, len))
        return 0;
    return len;
}

const char *sl_type_quote(const char *s, struct sl_arena *arena)
{
    static const char oom[] = "(value)";
    size_t n = strlen(s), chars = 0, i = 0;
    bool clean = true;
    while (i < n && chars < QUOTE_MAX) {
        unsigned char c = (unsigned char)s[i];
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0 || c < 0x20 || c == 0x7f) {
            clean = false;
            k = k ? k : 1;
        }
        i += k;
        chars++;
    }
    if (clean && i == n)
        return s;
    char *out = sl_arena_alloc(arena, i + 4);
    if (!out)
        return oom;
    size_t o = 0;
    for (size_t j = 0; j < i;) {
        unsigned char c = (unsigned char)s[j];
        size_t k = utf8_seq((const unsigned char *)s + j, i - j);
        if (k == 0 || c < 0x20 || c == 0x7f) {
            out[o++] = '?';
            j += k ? k : 1;
        } else {
            memcpy(out + o, s + j, k);
            o += k;
            j += k;
        }
    }
    if (i < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* The state of one sl_type_check call. */
struct check {
    const struct sl_attr *attr;
    const char *value; /* as given */
    struct sl_arena *arena;
    struct sl_type_problem *probs;
    int n;
    bool nomem;
};

__attribute__((format(printf, 3, 4))) static void problem(struct check *c, const char *code,
                                                          const char *fmt, ...)
{
    if (c->n >= SL_TYPE_MAX_PROBLEMS)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = sl_arena_vprintf(c->arena, fmt, ap);
    va_end(ap);
    if (!msg) {
        c->nomem = true;
        return;
    }
    c->probs[c->n].code = code;
    c->probs[c->n].message = msg;
    c->n++;
}

/* The value quoted for a message. */
static const char *q(struct check *c)
{
    return sl_type_quote(c->value, c->arena);
}

/* The view s[0..n) as a string: c->value itself when the view is all of it. */
static const char *view_str(struct check *c, const char *s, size_t n)
{
    if (s == c->value && s[n] == '\0')
        return s;
    char *p = sl_arena_strndup(c->arena, s, n);
    if (!p)
        c->nomem = true;
    return p;
}

/* ---- decimals ---- */

struct dec {
    bool neg, plus, point;
    const char *ip; /* integer digits without leading zeros */
    size_t il;
    size_t int_given; /* integer digits as written */
    const char *fp;   /* fraction digits as written */
    size_t fl;
};

static bool dec_parse(const char *s, size_t n, struct dec *d)
{
    size_t i = 0;
    memset(d, 0, sizeof(*d));
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        d->neg = s[i] == '-';
        d->plus = s[i] == '+';
        i++;
    }
    size_t start = i;
    while (i < n && IS_DIGIT(s[i]))
        i++;
    d->int_given = i - start;
    size_t z = start;
    while (z < i && s[z] == '0')
        z++;
    d->ip = s + z;
    d->il = i - z;
    if (i < n && s[i] == '.') {
        d->point = true;
        i++;
        d->fp = s + i;
        while (i < n && IS_DIGIT(s[i]))
            i++;
        d->fl = (size_t)(s + i - d->fp);
    }
    return i == n && d->int_given + d->fl > 0;
}

static bool dec_is_zero(const struct dec *d)
{
    if (d->il)
        return false;
    for (size_t i = 0; i < d->fl; i++)
        if (d->fp[i] != '0')
            return false;
    return true;
}

/* Whether d written as it is already is the normal form for scale. */
static bool dec_is_normal(const struct dec *d, int scale)
{
    return !d->plus && d->int_given >= 1 && d->int_given == (d->il ? d->il : 1) &&
           (!d->point || d->fl > 0) && !(d->neg && dec_is_zero(d)) &&
           (scale < 0 || d->fl == (size_t)scale);
}

static char *dec_format(const struct dec *d, int scale, struct sl_arena *arena)
{
    size_t il = d->il ? d->il : 1;
    size_t fl = scale < 0 ? d->fl : (size_t)scale;
    /* sign, carry digit, integer digits, point, fraction, NUL */
    char *buf = sl_arena_alloc(arena, il + fl + 4);
    if (!buf)
        return NULL;
    char *digits = buf + 2; /* room for the sign and a carry digit before */
    if (d->il)
        memcpy(digits, d->ip, d->il);
    else
        digits[0] = '0';
    size_t keep = d->fl < fl ? d->fl : fl;
    if (keep)
        memcpy(digits + il, d->fp, keep);
    memset(digits + il + keep, '0', fl - keep);
    size_t nd = il + fl;
    if (scale >= 0 && d->fl > fl) {
        /* half-even on the first dropped digit and whatever follows it */
        char first = d->fp[fl];
        bool rest = false;
        for (size_t i = fl + 1; i < d->fl && !rest; i++)
            rest = d->fp[i] != '0';
        bool odd = (digits[nd - 1] - '0') & 1;
        if (first > '5' || (first == '5' && (rest || odd))) {
            size_t i = nd;
            while (i > 0 && digits[i - 1] == '9')
                digits[--i] = '0';
            if (i > 0) {
                digits[i - 1]++;
            } else {
                *--digits = '1';
                nd++;
                il++;
            }
        }
    }
    bool zero = true;
    for (size_t i = 0; i < nd && zero; i++)
        zero = digits[i] == '0';
    /* strip a leading zero left by "0.x" style input when il > 1 cannot
     * happen: ip has no leading zeros and a carry adds a '1' */
    char *out = digits;
    if (d->neg && !zero)
        *--out = '-';
    /* move the fraction right by one to make room for the point */
    if (fl) {
        memmove(digits + il + 1, digits + il, fl);
        digits[il] = '.';
        digits[il + 1 + fl] = '\0';
    } else {
        digits[il] = '\0';
    }
    return out;
}

char *sl_decimal_normalize(const char *s, int scale, struct sl_arena *arena)
{
    size_t n = strlen(s);
    struct dec d;
    trim(&s, &n);
    if (!dec_parse(s, n, &d))
        return NULL;
    return dec_format(&d, scale, arena);
}

int sl_decimal_cmp(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    struct dec x, y;
    const char *ta = a, *tb = b;
    trim(&ta, &na);
    trim(&tb, &nb);
    if (!dec_parse(ta, na, &x) || !dec_parse(tb, nb, &y))
        return strcmp(a, b);
    bool xz = dec_is_zero(&x), yz = dec_is_zero(&y);
    int xs = xz ? 0 : x.neg ? -1 : 1;
    int ys = yz ? 0 : y.neg ? -1 : 1;
    if (xs != ys)
        return xs < ys ? -1 : 1;
    if (xs == 0)
        return 0;
    int mag;
    if (x.il != y.il) {
        mag = x.il < y.il ? -1 : 1;
    } else {
        mag = memcmp(x.ip, y.ip, x.il);
        size_t fl = x.fl > y.fl ? x.fl : y.fl;
        for (size_t i = 0; mag == 0 && i < fl; i++) {
            char cx = i < x.fl ? x.fp[i] : '0';
            char cy = i < y.fl ? y.fp[i] : '0';
            mag = cx - cy;
        }
        mag = mag < 0 ? -1 : mag > 0;
    }
    return xs < 0 ? -mag : mag;
}

/* Checks v against the attribute's min and max. */
static void check_bounds(struct check *c, const char *v)
{
    const struct sl_attr *attr = c->attr;
    if (attr->min && sl_decimal_cmp(v, attr->min) < 0)
        problem(c, "out_of_range", "must be at least %s (is %s)", attr->min,
                sl_type_quote(v, c->arena));
    if (attr->max && sl_decimal_cmp(v, attr->max) > 0)
        problem(c, "out_of_range", "must be at most %s (is %s)", attr->max,
                sl_type_quote(v, c->arena));
}

/* A hint for a number written the way people (not machines) write it. */
static const char *number_hint(const char *s, size_t n)
{
    if (memchr(s, ',', n))
        return " (use '.' as the decimal point and no grouping; the number() filter converts "
               "'1.234,56' and '1,234.56')";
    /* only for what looks like one: digits, then e/E, then an optional
     * sign and digits ("1.5e3", "-2E-4") */
    const char *e = memchr(s, 'e', n);
    if (!e)
        e = memchr(s, 'E', n);
    if (e && e > s && e[-1] >= '0' && e[-1] <= '9') {
        const char *p = e + 1, *end = s + n;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        bool digits = p < end;
        for (; p < end; p++)
            digits = digits && *p >= '0' && *p <= '9';
        if (digits)
            return " (exponent notation is not accepted)";
    }
    return "";
}

/* ---- the checks ---- */

static const char *check_text(struct check *c, const char *v)
{
    const struct sl_attr *attr = c->attr;
    size_t n = strlen(v);
    if (!sl_utf8_valid(v, n)) {
        problem(c, "type", "'%s' is not valid UTF-8 text (check the source's encoding)", q(c));
        return NULL;
    }
    bool need_len =
        (attr->max_length >= 0 && n > (size_t)attr->max_length) || (attr->min_length > 0);
    if (need_len) {
        size_t chars = sl_utf8_len(v, n);
        if (attr->max_length >= 0 && chars > (size_t)attr->max_length)
            problem(c, "too_long", "must be at most %ld characters (is %zu)", attr->max_length,
                    chars);
        if (attr->min_length > 0 && chars < (size_t)attr->min_length)
            problem(c, "too_short", "must be at least %ld characters (is %zu)", attr->min_length,
                    chars);
    }
    if (attr->pattern) {
        /* whole-value match, also when re was compiled without anchors (and
         * left untouched by REG_NOSUB: then the loader anchored it) */
        regmatch_t m = {.rm_so = 0, .rm_eo = (regoff_t)n};
        int rc = regexec(&attr->re, v, 1, &m, 0);
        if (rc != 0 || m.rm_so != 0 || (size_t)m.rm_eo != n)
            problem(c, "pattern", "'%s' does not match the pattern %s", q(c),
                    sl_type_quote(attr->pattern, c->arena));
    }
    return c->n ? NULL : v;
}

static const char *check_integer(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    trim(&s, &n);
    size_t i = 0;
    bool neg = false, plus = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        neg = s[i] == '-';
        plus = !neg;
        i++;
    }
    size_t ds = i;
    while (i < n && IS_DIGIT(s[i]))
        i++;
    size_t de = i;
    bool frac = false;
    if (de > ds && i < n && s[i] == '.') {
        for (i++; i < n && IS_DIGIT(s[i]); i++)
            frac |= s[i] != '0';
    }
    if (de == ds || i != n || frac) {
        problem(c, "type", "'%s' is not an integer%s", q(c),
                frac && i == n ? " (it has a fraction)" : number_hint(s, n));
        return NULL;
    }
    size_t z = ds;
    while (z + 1 < de && s[z] == '0')
        z++;
    size_t nd = de - z;
    if (nd == 1 && s[z] == '0')
        neg = false;
    const char *out;
    if (s == v && v[n] == '\0' && !plus && z == ds && de == n && !(s[0] == '-' && !neg)) {
        out = v;
    } else {
        char *p = sl_arena_alloc(c->arena, nd + 2);
        if (!p) {
            c->nomem = true;
            return NULL;
        }
        size_t o = 0;
        if (neg)
            p[o++] = '-';
        memcpy(p + o, s + z, nd);
        p[o + nd] = '\0';
        out = p;
    }
    check_bounds(c, out);
    if (c->n == 0) {
        bool fits = nd < 19 ||
                    (nd == 19 &&
                     memcmp(s + z, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0);
        if (!fits)
            problem(c, "out_of_range", "'%s' does not fit a 64-bit integer", q(c));
    }
    return c->n ? NULL : out;
}

static const char *check_decimal(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    struct dec d;
    trim(&s, &n);
    if (!dec_parse(s, n, &d)) {
        problem(c, "type", "'%s' is not a decimal number%s", q(c), number_hint(s, n));
        return NULL;
    }
    const char *out;
    if (s == v && s[n] == '\0' && dec_is_normal(&d, c->attr->scale)) {
        out = v;
    } else {
        out = dec_format(&d, c->attr->scale, c->arena);
        if (!out) {
            c->nomem = true;
            return NULL;
        }
    }
    check_bounds(c, out);
    return c->n ? NULL : out;
}

static const char *check_boolean(struct check *c, const char *v)
{
    static const struct {
        const char *text;
        bool val;
    } words[] = {
        {"true", true}, {"false", false}, {"yes", true},     {"no", false},  {"y", true},
        {"n", false},   {"1", true},      {"0", false},      {"ja", true},   {"nein", false},
        {"j", true},    {"x", true},      {"on", true},      {"off", false}, {"t", true},
        {"f", false},   {"wahr", true},   {"falsch", false},
    };
    const char *s = v;
    size_t n = strlen(v);
    trim(&s, &n);
    for (size_t i = 0; i < SL_ARRAY_LEN(words); i++) {
        if (strlen(words[i].text) == n && strncasecmp(s, words[i].text, n) == 0)
            return words[i].val ? "true" : "false";
    }
    problem(c, "type",
            "'%s' is not a boolean (expected true/false, yes/no, y/n, 1/0, ja/nein or x)", q(c));
    return NULL;
}

/* Reads exactly w digits at s. */
static bool digits_at(const char *s, int w, int *out)
{
    int v = 0;
    for (int i = 0; i < w; i++) {
        if (!IS_DIGIT(s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses "YYYY-MM-DD" at s (n >= 10 bytes readable up to the first
 * non-matching one). 0 ok; -1 not that shape; else the calendar is wrong
 * and *why says how (arena). */
static int parse_date(struct check *c, const char *s, size_t n, int *y, int *m, int *d,
                      const char **why)
{
    if (n < 10 || !digits_at(s, 4, y) || s[4] != '-' || !digits_at(s + 5, 2, m) || s[7] != '-' ||
        !digits_at(s + 8, 2, d))
        return -1;
    *why = NULL;
    if (*y == 0)
        *why = "year 0000 does not exist";
    else if (*m < 1 || *m > 12)
        *why = sl_arena_printf(c->arena, "month %02d does not exist", *m);
    else if (*d < 1)
        *why = "day 00 does not exist";
    else if (*d > sl_days_in_month(*y, *m))
        *why = sl_arena_printf(c->arena, "%04d-%02d has %d days", *y, *m, sl_days_in_month(*y, *m));
    else
        return 0;
    if (!*why)
        *why = "no such day";
    return 1;
}

static const char *check_date(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    int y, m, d;
    const char *why;
    trim(&s, &n);
    int rc = parse_date(c, s, n, &y, &m, &d, &why);
    if (rc < 0) {
        problem(c, "type", "'%s' is not a date (expected YYYY-MM-DD)", q(c));
        return NULL;
    }
    if (rc > 0) {
        problem(c, "type", "'%s' is not a date (%s)", q(c), why);
        return NULL;
    }
    if (n > 10) {
        /* "T00:00", " 00:00:00", "T00:00:00.000" and the like: a date */
        const char *t = s + 10;
        size_t tn = n - 10;
        bool midnight = (t[0] == 'T' || t[0] == ' ') && tn >= 6 && memcmp(t + 1, "00:00", 5) == 0;
        for (size_t i = 6; midnight && i < tn; i++)
            midnight = t[i] == '0' || t[i] == ':' || t[i] == '.';
        if (!midnight) {
            bool has_time = (t[0] == 'T' || t[0] == ' ') && tn >= 3 && IS_DIGIT(t[1]);
            problem(c, "type", "'%s' is not a date (%s)", q(c),
                    has_time ? "it has a time of day" : "expected YYYY-MM-DD");
            return NULL;
        }
        n = 10;
    }
    return view_str(c, s, n);
}

/* Writes v as w digits with leading zeros. */
static void put_digits(char *p, int v, int w)
{
    for (int i = w - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* An RFC 3339 datetime (and the forms the file comment lists) as UTC
 * "YYYY-MM-DDTHH:MM:SS[.ffffff]Z"; NULL when a problem was recorded. */
static const char *check_datetime(struct check *c, const char *v, const struct sl_tz *tz)
{
    static const char expect[] = "expected RFC 3339, e.g. 2025-12-31T23:00:00Z";
    const char *s = v;
    size_t n = strlen(v);
    int y, mo, d, h = 0, mi = 0, sec = 0;
    const char *why;
    trim(&s, &n);
    int rc = parse_date(c, s, n, &y, &mo, &d, &why);
    if (rc < 0)
        goto bad_shape;
    if (rc > 0) {
        problem(c, "type", "'%s' is not a datetime (%s)", q(c), why);
        return NULL;
    }
    size_t i = 10;
    const char *frac = NULL;
    size_t fracn = 0;
    bool has_sec = false, utc_z = false, has_off = false, off_space = false;
    int off = 0; /* seconds east of UTC */
    if (i < n) {
        if (s[i] != 'T' && s[i] != 't' && s[i] != ' ')
            goto bad_shape;
        i++;
        if (n - i < 5 || !digits_at(s + i, 2, &h) || s[i + 2] != ':' ||
            !digits_at(s + i + 3, 2, &mi))
            goto bad_shape;
        i += 5;
        if (i < n && s[i] == ':') {
            if (n - i < 3 || !digits_at(s + i + 1, 2, &sec))
                goto bad_shape;
            has_sec = true;
            i += 3;
            if (i < n && (s[i] == '.' || s[i] == ',')) {
                frac = s + ++i;
                while (i < n && IS_DIGIT(s[i]))
                    i++;
                fracn = (size_t)(s + i - frac);
                if (fracn == 0)
                    goto bad_shape;
            }
        }
        if (i < n && s[i] == ' ' && i + 1 < n) {
            off_space = true;
            i++;
        }
        if (i < n) {
            has_off = true;
            if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
                utc_z = s[i] == 'Z';
            } else if (n - i == 3 && memcmp(s + i, "UTC", 3) == 0) {
                /* "2025-12-31 23:00:00 UTC" */
            } else if (s[i] == '+' || s[i] == '-') {
                int oh, om = 0;
                size_t rest = n - i - 1;
                const char *o = s + i + 1;
                if (rest == 5 && o[2] == ':' && digits_at(o, 2, &oh) && digits_at(o + 3, 2, &om))
                    ;
                else if (rest == 4 && digits_at(o, 2, &oh) && digits_at(o + 2, 2, &om))
                    ;
                else if (rest == 2 && digits_at(o, 2, &oh))
                    ;
                else
                    goto bad_shape;
                if (oh > 23 || om > 59) {
                    problem(c, "type", "'%s' is not a datetime (offset %.*s does not exist)", q(c),
                            (int)(n - i), s + i);
                    return NULL;
                }
                off = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
            } else {
                goto bad_shape;
            }
        }
    }
    if (h > 23 || mi > 59 || sec > 60) {
        problem(c, "type", "'%s' is not a datetime (%s %02d does not exist)", q(c),
                h > 23    ? "hour"
                : mi > 59 ? "minute"
                          : "second",
                h > 23    ? h
                : mi > 59 ? mi
                          : sec);
        return NULL;
    }
    int64_t local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    int64_t utc;
    if (has_off)
        utc = local - off;
    else if (tz)
        utc = sl_tz_local_to_utc(tz, local, NULL);
    else
        utc = local;
    /* already normal: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" as given */
    if (s == v && v[n] == '\0' && s[10] == 'T' && has_sec && sec < 60 && utc_z && !off_space &&
        fracn <= 6 && (!frac || frac[-1] == '.'))
        return v;
    if (fracn > 6)
        fracn = 6;
    int64_t days = utc >= 0 ? utc / 86400 : -((-utc + 86399) / 86400);
    int64_t sod = utc - days * 86400, yy;
    int mm, dd;
    civil_from_days(days, &yy, &mm, &dd);
    if (yy < 1 || yy > 9999) {
        problem(c, "out_of_range", "'%s' is outside the years 0001 to 9999 in UTC", q(c));
        return NULL;
    }
    char *out = sl_arena_alloc(c->arena, 28);
    if (!out) {
        c->nomem = true;
        return NULL;
    }
    put_digits(out, (int)yy, 4);
    out[4] = '-';
    put_digits(out + 5, mm, 2);
    out[7] = '-';
    put_digits(out + 8, dd, 2);
    out[10] = 'T';
    put_digits(out + 11, (int)(sod / 3600), 2);
    out[13] = ':';
    put_digits(out + 14, (int)(sod / 60 % 60), 2);
    out[16] = ':';
    put_digits(out + 17, (int)(sod % 60), 2);
    size_t o = 19;
    if (fracn) {
        out[o++] = '.';
        memcpy(out + o, frac, fracn);
        o += fracn;
    }
    out[o++] = 'Z';
    out[o] = '\0';
    return out;
bad_shape:
    problem(c, "type", "'%s' is not a datetime (%s)", q(c), expect);
    return NULL;
}

/* Characters of an RFC 5322 dot-atom besides letters, digits and '.'. */
static bool atext(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || IS_DIGIT(ch) || ch >= 0x80 ||
           (ch && strchr("!#$%&'*+/=?^_`{|}~-", ch));
}

static const char *check_email(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    const char *why = NULL;
    trim(&s, &n);
    if (!sl_utf8_valid(s, n)) {
        why = "it is not valid UTF-8";
        goto bad;
    }
    size_t ats = 0, at = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '@') {
            ats++;
            at = i;
        }
    }
    if (memchr(s, '<', n) || memchr(s, '>', n)) {
        why = "give the address alone, without a display name or <>";
        goto bad;
    }
    if (ats > 1 && (memchr(s, ',', n) || memchr(s, ';', n) || memchr(s, ' ', n))) {
        problem(c, "type", "'%s' is not one e-mail address but several", q(c));
        return NULL;
    }
    if (ats == 0) {
        why = "it has no @";
        goto bad;
    }
    if (ats > 1) {
        why = "it has more than one @";
        goto bad;
    }
    const char *local = s, *dom = s + at + 1;
    size_t ll = at, dl = n - at - 1;
    if (ll == 0) {
        why = "the part before the @ is empty";
        goto bad;
    }
    if (ll > 64) {
        why = "the part before the @ is longer than 64 characters";
        goto bad;
    }
    for (size_t i = 0; i < ll; i++) {
        unsigned char ch = (unsigned char)local[i];
        if (ch == '.') {
            if (i == 0 || i + 1 == ll || local[i + 1] == '.') {
                why = "the part before the @ has a '.' at its start or end, or '..'";
                goto bad;
            }
        } else if (ch == ' ' || ch == '\t') {
            why = "the part before the @ contains a space";
            goto bad;
        } else if (!atext(ch)) {
            why = sl_arena_printf(c->arena, "the part before the @ contains '%c'",
                                  ch >= 0x20 && ch < 0x7f ? ch : '?');
            goto bad;
        }
    }
    if (dl == 0) {
        why = "the domain is empty";
        goto bad;
    }
    if (dl > 253) {
        why = "the domain is longer than 253 characters";
        goto bad;
    }
    /* labels */
    bool upper = false, dot = false;
    size_t lstart = 0;
    for (size_t i = 0; i <= dl; i++) {
        if (i < dl && dom[i] != '.') {
            unsigned char ch = (unsigned char)dom[i];
            upper |= ch >= 'A' && ch <= 'Z';
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || IS_DIGIT(ch) ||
                      ch == '-' || ch >= 0x80;
            if (!ok) {
                why = ch == ' ' ? "the domain contains a space"
                                : sl_arena_printf(c->arena, "the domain contains '%c'",
                                                  ch >= 0x20 && ch < 0x7f ? ch : '?');
                goto bad;
            }
            continue;
        }
        size_t len = i - lstart;
        const char *lab = dom + lstart;
        if (len == 0) {
            why = "the domain has an empty label ('..' or a '.' at its start or end)";
            goto bad;
        }
        if (len > 63) {
            why = "a label of the domain is longer than 63 characters";
            goto bad;
        }
        if (lab[0] == '-' || lab[len - 1] == '-') {
            why = sl_arena_printf(c->arena, "the domain label '%.*s' starts or ends with '-'",
                                  (int)len, lab);
            goto bad;
        }
        if (i == dl) {
            /* top-level domain: letters, an IDN "xn--" label, or UTF-8 */
            bool letters = len >= 2;
            for (size_t k = 0; k < len && letters; k++) {
                unsigned char ch = (unsigned char)lab[k];
                letters = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch >= 0x80;
            }
            if (!dot) {
                why = sl_arena_printf(c->arena, "the domain '%.*s' has no '.'", (int)dl, dom);
                goto bad;
            }
            if (!letters && !(len > 4 && strncasecmp(lab, "xn--", 4) == 0)) {
                why = sl_arena_printf(c->arena, "the top-level domain '%.*s' is not letters",
                                      (int)len, lab);
                goto bad;
            }
        } else {
            dot = true;
        }
        lstart = i + 1;
    }
    if (!upper)
        return view_str(c, s, n);
    char *out = sl_arena_strndup(c->arena, s, n);
    if (!out) {
        c->nomem = true;
        return NULL;
    }
    for (size_t i = at + 1; i < n; i++)
        if (out[i] >= 'A' && out[i] <= 'Z')
            out[i] = (char)(out[i] - 'A' + 'a');
    return out;
bad:
    if (!why)
        c->nomem = true;
    else
        problem(c, "type", "'%s' is not an e-mail address (%s)", q(c), why);
    return NULL;
}

static const char *url_why(CURLUcode uc)
{
    switch (uc) {
    case CURLUE_BAD_PORT_NUMBER:
        return "bad port number";
    case CURLUE_NO_HOST:
        return "no host";
    case CURLUE_BAD_HOSTNAME:
        return "bad host name";
    case CURLUE_BAD_IPV6:
        return "bad IPv6 address";
    case CURLUE_MALFORMED_INPUT:
        return "malformed";
    case CURLUE_BAD_SCHEME:
        return "bad scheme";
    case CURLUE_BAD_LOGIN:
    case CURLUE_BAD_USER:
    case CURLUE_BAD_PASSWORD:
        return "bad user or password part";
    case CURLUE_BAD_PATH:
        return "bad path";
    case CURLUE_BAD_QUERY:
        return "bad query";
    case CURLUE_BAD_FRAGMENT:
        return "bad fragment";
    case CURLUE_OUT_OF_MEMORY:
        return NULL;
    default:
        return "malformed";
    }
}

static const char *check_url(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    const char *why = NULL;
    trim(&s, &n);
    const char *url = view_str(c, s, n);
    if (!url)
        return NULL;
    const char *sep = strstr(url, "://");
    if (!sep) {
        why = "no http:// or https:// at its start";
        goto bad;
    }
    size_t sl = (size_t)(sep - url);
    if (!((sl == 4 && strncasecmp(url, "http", 4) == 0) ||
          (sl == 5 && strncasecmp(url, "https", 5) == 0))) {
        why = sl < 16 && sl > 0
                  ? sl_arena_printf(c->arena, "scheme '%.*s' is not http or https", (int)sl, url)
                  : "no http:// or https:// at its start";
        if (!why)
            c->nomem = true;
        goto bad;
    }
    if (strchr("/?#", url[sl + 3])) { /* "http:///x": curl would take x as the host */
        why = "no host";
        goto bad;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch <= 0x20 || ch == 0x7f) {
            why = ch == ' ' ? "it contains a space" : "it contains a control character";
            goto bad;
        }
    }
    CURLU *h = curl_url();
    if (!h) {
        c->nomem = true;
        return NULL;
    }
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
    if (uc == CURLUE_OK) {
        char *host = NULL;
        uc = curl_url_get(h, CURLUPART_HOST, &host, 0);
        if (uc == CURLUE_OK && (!host || !host[0]))
            uc = CURLUE_NO_HOST;
        curl_free(host);
    }
    curl_url_cleanup(h);
    if (uc != CURLUE_OK) {
        why = url_why(uc);
        if (!why) {
            c->nomem = true;
            return NULL;
        }
        goto bad;
    }
    return url;
bad:
    if (why)
        problem(c, "type", "'%s' is not an absolute http(s) URL (%s)", q(c), why);
    return NULL;
}

static const char *check_currency(struct check *c, const char *v)
{
    const char *s = v;
    size_t n = strlen(v);
    trim(&s, &n);
    if (n == 3) {
        char code[4] = {s[0], s[1], s[2], '\0'};
        const char *canon = sl_currency_code(code);
        if (canon)
            return s == v && memcmp(v, canon, 4) == 0 ? v : canon;
    }
    bool symbol = (n == 1 && (s[0] == '$')) ||
                  (n == 2 && (memcmp(s, "\xc2\xa3", 2) == 0 || memcmp(s, "\xc2\xa5", 2) == 0)) ||
                  (n == 3 && memcmp(s, "\xe2\x82\xac", 3) == 0);
    problem(c, "type", "'%s' is not an ISO 4217 currency code%s", q(c),
            symbol ? " (the currency_code filter converts symbols)" : "");
    return NULL;
}

static const char *check_phone(struct check *c, const char *v)
{
    const char *why = NULL;
    const char *out = sl_phone_e164(v, c->attr->region, c->arena, &why);
    if (out)
        return strcmp(out, v) == 0 ? v : out;
    if (!why)
        c->nomem = true;
    else if (c->n < SL_TYPE_MAX_PROBLEMS) {
        c->probs[c->n].code = "type";
        c->probs[c->n].message = why;
        c->n++;
    }
    return NULL;
}

static const char *check_enum(struct check *c, const char *v)
{
    const struct sl_attr *attr = c->attr;
    for (size_t i = 0; i < attr->nvalues; i++)
        if (strcmp(v, attr->values[i]) == 0)
            return v;
    const char *s = v;
    size_t n = strlen(v);
    trim(&s, &n);
    for (size_t i = 0; i < attr->nvalues; i++)
        if (strlen(attr->values[i]) == n && strncasecmp(s, attr->values[i], n) == 0)
            return attr->values[i];
    if (attr->on_unknown_default && attr->default_value)
        return attr->default_value;
    /* "'foo' is not one of: open, closed" (the first 10 values) */
    size_t cap = 0, shown = attr->nvalues < 10 ? attr->nvalues : 10;
    for (size_t i = 0; i < shown; i++)
        cap += strlen(sl_type_quote(attr->values[i], c->arena)) + 2;
    char *list = sl_arena_alloc(c->arena, cap + 48);
    if (!list) {
        c->nomem = true;
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < shown; i++) {
        const char *val = sl_type_quote(attr->values[i], c->arena);
        size_t len = strlen(val);
        if (i) {
            memcpy(list + o, ", ", 2);
            o += 2;
        }
        memcpy(list + o, val, len);
        o += len;
    }
    list[o] = '\0';
    if (shown < attr->nvalues)
        snprintf(list + o, 48, ", ... (%zu values)", attr->nvalues);
    problem(c, "not_allowed", "'%s' is not one of: %s", q(c), list);
    return NULL;
}

int sl_type_check(const struct sl_attr *attr, const char *value, const struct sl_tz *tz,
                  struct sl_arena *arena, const char **out,
                  struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS])
{
    struct check c = {.attr = attr, .value = value, .arena = arena, .probs = probs};
    const char *res = NULL;
    switch (attr->type) {
    case SL_TYPE_TEXT:
        res = check_text(&c, value);
        break;
    case SL_TYPE_INTEGER:
        res = check_integer(&c, value);
        break;
    case SL_TYPE_DECIMAL:
        res = check_decimal(&c, value);
        break;
    case SL_TYPE_BOOLEAN:
        res = check_boolean(&c, value);
        break;
    case SL_TYPE_DATE:
        res = check_date(&c, value);
        break;
    case SL_TYPE_DATETIME:
        res = check_datetime(&c, value, tz);
        break;
    case SL_TYPE_EMAIL:
        res = check_email(&c, value);
        break;
    case SL_TYPE_PHONE:
        res = check_phone(&c, value);
        break;
    case SL_TYPE_URL:
        res = check_url(&c, value);
        break;
    case SL_TYPE_CURRENCY:
        res = check_currency(&c, value);
        break;
    case SL_TYPE_ENUM:
        res = check_enum(&c, value);
        break;
    default:
        problem(&c, "type", "unknown attribute type %d", (int)attr->type);
        break;
    }
    if (c.n > 0)
        return c.n;
    if (!res || c.nomem)
        return SL_ERR_NOMEM;
    *out = res;
    return 0;
}

const char *sl_type_key_value(const struct sl_attr *attr, const char *value, const struct sl_tz *tz,
                              struct sl_arena *arena)
{
    const char *norm = NULL;
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    return sl_type_check(attr, value, tz, arena, &norm, probs) == 0 ? norm : NULL;
}
