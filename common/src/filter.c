/*
 * The filters of mapping templates (JOBS.md "mapping", template.h): one table
 * of name, arity, a prepare hook that runs once when a template compiles
 * (checks constant arguments, compiles regexes, loads time zones) and an
 * apply hook that runs per row. Apply hooks treat their input as UTF-8 text,
 * allocate only from the evaluation arena and return their input itself when
 * nothing changes; a value they cannot convert fails with SL_ERR_INVALID and
 * a message naming the filter and the value.
 *
 * Case mapping and regexes use a C.UTF-8 locale object (newlocale once, then
 * towupper_l / uselocale per call): the process locale is never touched, so
 * filters are thread-safe. Dates are parsed by our own strict, locale-free
 * parser rather than strptime.
 */
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#define SL_TEMPLATE_INTERNAL
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/template.h"
#include "sluice/tz.h"
#include "sluice/util.h"

/* ---- helpers ------------------------------------------------------------ */

/* ASCII classes: <ctype.h> depends on the process locale, these do not. */
static inline int a_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static inline int a_upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 32 : c;
}

static inline bool a_digit(int c)
{
    return c >= '0' && c <= '9';
}

static inline bool a_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool a_space(int c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static const char *const oom_msg = "out of memory";

/* The longest value replace and regex_replace build (a few matches times a
 * long replacement must not exhaust memory). */
#define VALUE_MAX (16 << 20)

/* A value as shown in messages: at most 80 bytes, cut on a character. */
static const char *shown(struct sl_arena *a, const char *v)
{
    size_t n = strlen(v);
    if (n <= 80)
        return v;
    size_t k = 77;
    while (k > 0 && ((unsigned char)v[k] & 0xc0) == 0x80)
        k--;
    char *s = sl_arena_alloc(a, k + 4);
    if (!s)
        return "...";
    memcpy(s, v, k);
    memcpy(s + k, "...", 4);
    return s;
}

__attribute__((format(printf, 3, 4))) static int fail(struct sl_eval_ctx *ctx, const char **errmsg,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = sl_arena_vprintf(ctx->arena, fmt, ap);
    va_end(ap);
    *errmsg = m ? m : oom_msg;
    return m ? SL_ERR_INVALID : SL_ERR_NOMEM;
}

static int nomem(const char **errmsg)
{
    *errmsg = oom_msg;
    return SL_ERR_NOMEM;
}

/* Decodes the code point at s (n > 0 bytes left): its length, or 0 when the
 * bytes are no valid UTF-8. */
static size_t utf8_dec(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xc2)
        return 0;
    if (c < 0xe0) {
        if (n < 2 || (s[1] & 0xc0) != 0x80)
            return 0;
        *cp = ((c & 0x1fu) << 6) | (s[1] & 0x3fu);
        return 2;
    }
    if (c < 0xf0) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        uint32_t v = ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
        if (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        *cp = v;
        return 3;
    }
    if (c < 0xf5) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        uint32_t v =
            ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
        if (v < 0x10000 || v > 0x10ffff)
            return 0;
        *cp = v;
        return 4;
    }
    return 0;
}

static size_t utf8_enc(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Length of the white space at s (ASCII or Unicode space), 0 if none. */
static size_t space_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r'))
        return 1;
    if (c < 0x80)
        return 0;
    uint32_t cp;
    size_t k = utf8_dec((const unsigned char *)s, n, &cp);
    if (!k)
        return 0;
    if (cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200b) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 || cp == 0xfeff)
        return k;
    return 0;
}

/* The bounds [*b, *e) of s without leading and trailing white space. */
static void trim_bounds(const char *s, size_t n, size_t *b, size_t *e)
{
    size_t i = 0, j = n, k;
    while (i < n && (k = space_len(s + i, n - i)))
        i += k;
    while (j > i) {
        unsigned char c = (unsigned char)s[j - 1];
        if (c < 0x80) {
            if (!a_space(c))
                break;
            j--;
            continue;
        }
        size_t st = j - 1; /* the start of the last character */
        while (st > i && j - st < 4 && ((unsigned char)s[st] & 0xc0) == 0x80)
            st--;
        if (space_len(s + st, j - st) != j - st)
            break;
        j = st;
    }
    *b = i;
    *e = j;
}

/* Writes v as width decimal digits with leading zeros at o. */
static char *put_num(char *o, int v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + width;
}

/* ---- locale ------------------------------------------------------------- */

static locale_t utf8_loc;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
    static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8"};
    for (size_t i = 0; i < SL_ARRAY_LEN(names) && !utf8_loc; i++)
        utf8_loc = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
}

/* A UTF-8 LC_CTYPE locale object, or (locale_t)0 when the system has none. */
static locale_t utf8_locale(void)
{
    pthread_once(&utf8_once, utf8_init);
    return utf8_loc;
}

static uint32_t case_map(uint32_t c, bool upper)
{
    if (c < 0x80) {
        if (upper && c >= 'a' && c <= 'z')
            return c - 32;
        if (!upper && c >= 'A' && c <= 'Z')
            return c + 32;
        return c;
    }
    locale_t l = utf8_locale();
    if (l) {
        wint_t w = upper ? towupper_l((wint_t)c, l) : towlower_l((wint_t)c, l);
        if (w > 0 && w <= 0x10ffff && !(w >= 0xd800 && w <= 0xdfff))
            return (uint32_t)w;
        return c;
    }
    /* Latin-1 when no UTF-8 locale exists */
    if (upper && c >= 0xe0 && c <= 0xfe && c != 0xf7)
        return c - 32;
    if (!upper && c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    return c;
}

static bool is_alnum(uint32_t c)
{
    if (c < 0x80)
        return a_alpha((int)c) || a_digit((int)c);
    locale_t l = utf8_locale();
    if (l)
        return iswalnum_l((wint_t)c, l);
    return c >= 0xc0 && c != 0xd7 && c != 0xf7;
}

/* ---- trim, lower, upper, title, digits, truncate ------------------------ */

static int f_trim(const struct sl_fcall *fc, const char *in, const char *const *args,
                  struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    size_t n = strlen(in), b = 0, e = 0;
    trim_bounds(in, n, &b, &e);
    if (b == 0 && e == n) {
        *out = in;
        return 0;
    }
    if (!(*out = sl_arena_strndup(ctx->arena, in + b, e - b)))
        return nomem(errmsg);
    return 0;
}

enum { CASE_LOWER, CASE_UPPER, CASE_TITLE };

static int convert_case(const char *in, int mode, struct sl_eval_ctx *ctx, const char **out,
                        const char **errmsg)
{
    size_t n = strlen(in), i;
    if (mode != CASE_TITLE) {
        for (i = 0; i < n; i++) {
            unsigned char c = (unsigned char)in[i];
            if (c >= 0x80 || (mode == CASE_LOWER ? (c >= 'A' && c <= 'Z') : (c >= 'a' && c <= 'z')))
                break;
        }
        if (i == n) {
            *out = in;
            return 0;
        }
    }
    /* a code point of k bytes maps to at most 3k/2 bytes; ß to "SS" */
    size_t cap = 2 * n + 4, o = 0;
    char *buf = sl_arena_alloc(ctx->arena, cap);
    if (!buf)
        return nomem(errmsg);
    size_t word = 0; /* letters of the current word so far (title) */
    bool apos = false;
    uint32_t first = 0; /* the first letter of the word (title) */
    for (i = 0; i < n && o + 4 < cap;) {
        uint32_t c = (unsigned char)in[i];
        if (mode != CASE_TITLE && c < 0x80) {
            buf[o++] = (char)(mode == CASE_UPPER ? a_upper((int)c) : a_lower((int)c));
            i++;
            continue;
        }
        size_t k = utf8_dec((const unsigned char *)in + i, n - i, &c);
        if (!k) {
            buf[o++] = in[i++];
            word = 0;
            continue;
        }
        i += k;
        if (mode == CASE_UPPER && c == 0xdf) {
            buf[o++] = 'S';
            buf[o++] = 'S';
            continue;
        }
        bool upper = mode == CASE_UPPER;
        if (mode == CASE_TITLE) {
            /* a word starts after anything not alphanumeric; O'Neil and
             * D'Angelo keep the capital after a one-letter prefix, Peter's
             * and I'm do not */
            bool prefix = apos && word == 1 && first != 'i' && first != 'I';
            upper = word == 0 || prefix;
            if (is_alnum(c)) {
                if (word == 0)
                    first = c;
                word = prefix ? 1 : word + 1;
                apos = false;
            } else if ((c == '\'' || c == 0x2019) && word > 0 && !apos) {
                apos = true;
            } else {
                word = 0;
                apos = false;
            }
        }
        o += utf8_enc(case_map(c, upper), buf + o);
    }
    buf[o] = '\0';
    *out = buf;
    return 0;
}

static int f_lower(const struct sl_fcall *fc, const char *in, const char *const *args,
                   struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    return convert_case(in, CASE_LOWER, ctx, out, errmsg);
}

static int f_upper(const struct sl_fcall *fc, const char *in, const char *const *args,
                   struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    return convert_case(in, CASE_UPPER, ctx, out, errmsg);
}

static int f_title(const struct sl_fcall *fc, const char *in, const char *const *args,
                   struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    return convert_case(in, CASE_TITLE, ctx, out, errmsg);
}

static int f_digits(const struct sl_fcall *fc, const char *in, const char *const *args,
                    struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    size_t n = strlen(in), d = 0;
    for (size_t i = 0; i < n; i++)
        d += in[i] >= '0' && in[i] <= '9';
    if (d == n) {
        *out = in;
        return 0;
    }
    char *buf = sl_arena_alloc(ctx->arena, d + 1);
    if (!buf)
        return nomem(errmsg);
    d = 0;
    for (size_t i = 0; i < n; i++)
        if (in[i] >= '0' && in[i] <= '9')
            buf[d++] = in[i];
    buf[d] = '\0';
    *out = buf;
    return 0;
}

static int prep_truncate(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *a = &fc->args[0];
    if (a->kind != SL_OPERAND_CONST || !a->is_int || a->num < 1 || a->num > INT_MAX)
        return sl_seterr(errbuf, errsz, -1, "truncate: the length must be a positive integer");
    return 0;
}

static int f_truncate(const struct sl_fcall *fc, const char *in, const char *const *args,
                      struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    long long want = fc->args[0].num, chars = 0;
    size_t i = 0;
    for (; in[i]; i++) {
        if (((unsigned char)in[i] & 0xc0) != 0x80) {
            if (chars == want)
                break;
            chars++;
        }
    }
    if (!in[i]) {
        *out = in;
        return 0;
    }
    if (!(*out = sl_arena_strndup(ctx->arena, in, i)))
        return nomem(errmsg);
    return 0;
}

/* ---- replace, split, default, coalesce ---------------------------------- */

static int prep_replace(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *a = &fc->args[0];
    if (a->kind == SL_OPERAND_CONST && !a->str)
        return sl_seterr(errbuf, errsz, -1, "replace: the text to replace is empty");
    return 0;
}

static int f_replace(const struct sl_fcall *fc, const char *in, const char *const *args,
                     struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    const char *a = args[0], *b = args[1] ? args[1] : "";
    *out = in;
    if (!a)
        return 0;
    size_t alen = strlen(a), blen = strlen(b), n = strlen(in), hits = 0;
    for (const char *p = in; (p = strstr(p, a)); p += alen)
        hits++;
    if (!hits)
        return 0;
    if (blen > alen && (n > VALUE_MAX || hits > (VALUE_MAX - n) / (blen - alen)))
        return fail(ctx, errmsg, "replace: the result would be longer than %d bytes", VALUE_MAX);
    size_t len = n - hits * alen + hits * blen;
    char *buf = sl_arena_alloc(ctx->arena, len + 1), *o = buf;
    if (!buf)
        return nomem(errmsg);
    const char *p = in, *q;
    while ((q = strstr(p, a))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, b, blen);
        o += blen;
        p = q + alen;
    }
    memcpy(o, p, strlen(p) + 1);
    *out = buf;
    return 0;
}

static int prep_split(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *sep = &fc->args[0], *i = &fc->args[1];
    if (sep->kind == SL_OPERAND_CONST && !sep->str)
        return sl_seterr(errbuf, errsz, -1, "split: the separator is empty");
    if (i->kind != SL_OPERAND_CONST || !i->is_int || i->num > INT_MAX || i->num < -INT_MAX)
        return sl_seterr(errbuf, errsz, -1,
                         "split: the index must be an integer (0 the first part, -1 the last)");
    return 0;
}

static int f_split(const struct sl_fcall *fc, const char *in, const char *const *args,
                   struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    const char *sep = args[0];
    long long idx = fc->args[1].num;
    if (!sep) { /* a missing separator: the value is one part */
        *out = idx == 0 || idx == -1 ? in : NULL;
        return 0;
    }
    size_t slen = strlen(sep);
    if (idx < 0) {
        long long parts = 1;
        for (const char *p = in; (p = strstr(p, sep)); p += slen)
            parts++;
        idx += parts;
        if (idx < 0) {
            *out = NULL;
            return 0;
        }
    }
    const char *p = in;
    for (long long k = 0; k < idx; k++) {
        p = strstr(p, sep);
        if (!p) {
            *out = NULL;
            return 0;
        }
        p += slen;
    }
    const char *e = strstr(p, sep);
    if (!e) {
        *out = p; /* the rest of in: already NUL-terminated */
        return 0;
    }
    if (!(*out = sl_arena_strndup(ctx->arena, p, (size_t)(e - p))))
        return nomem(errmsg);
    return 0;
}

static int f_default(const struct sl_fcall *fc, const char *in, const char *const *args,
                     struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    *out = in ? in : args[0];
    return 0;
}

static int f_coalesce(const struct sl_fcall *fc, const char *in, const char *const *args,
                      struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    *out = in;
    for (size_t i = 0; !*out && i < fc->nargs; i++)
        *out = args[i];
    return 0;
}

/* ---- regex_replace ------------------------------------------------------ */

#define RE_MAX_PATTERN 1024
#define RE_MAX_SIZE    1000
#define RE_MAX_REPEAT  255

/* Estimated size of the regex tree of an alternation at *pp (glibc copies a
 * group once per repetition, so a{100}{100} costs 10000 nodes); stops at ')'
 * or the end. Saturates above RE_MAX_SIZE. */
static long re_estimate(const char **pp, int depth)
{
    const char *p = *pp;
    long total = 0;
    if (depth > 64) {
        *pp = p + strlen(p);
        return RE_MAX_SIZE + 1;
    }
    while (*p && *p != ')') {
        long atom = 1;
        if (*p == '|') {
            p++;
            continue;
        }
        if (*p == '(') {
            p++;
            atom = re_estimate(&p, depth + 1) + 1;
            if (*p == ')')
                p++;
        } else if (*p == '[') {
            p++;
            if (*p == '^')
                p++;
            if (*p == ']')
                p++;
            while (*p && *p != ']') {
                if (*p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
                    char close = p[1];
                    p += 2;
                    while (*p && !(*p == close && p[1] == ']'))
                        p++;
                    if (*p)
                        p += 2;
                } else {
                    p++;
                }
            }
            if (*p)
                p++;
        } else if (*p == '\\' && p[1]) {
            p += 2;
        } else {
            p++;
        }
        for (;;) { /* quantifiers */
            if (*p == '*' || *p == '?') {
                p++;
                atom += 1;
            } else if (*p == '+') { /* x+ is compiled as x x* */
                p++;
                atom = atom > RE_MAX_SIZE / 2 ? RE_MAX_SIZE + 1 : atom * 2;
            } else if (*p == '{' && a_digit((unsigned char)p[1])) {
                long lo = 0, hi = -1;
                p++;
                while (a_digit((unsigned char)*p) && lo <= RE_MAX_SIZE)
                    lo = lo * 10 + (*p++ - '0');
                while (a_digit((unsigned char)*p))
                    p++;
                if (*p == ',') {
                    p++;
                    if (a_digit((unsigned char)*p)) {
                        hi = 0;
                        while (a_digit((unsigned char)*p) && hi <= RE_MAX_SIZE)
                            hi = hi * 10 + (*p++ - '0');
                        while (a_digit((unsigned char)*p))
                            p++;
                    }
                }
                if (*p == '}')
                    p++;
                long factor = (hi > lo ? hi : lo) + 1;
                atom = atom > RE_MAX_SIZE / factor ? RE_MAX_SIZE + 1 : atom * factor;
            } else {
                break;
            }
        }
        total += atom;
        if (total > RE_MAX_SIZE) {
            *pp = p + strlen(p);
            return RE_MAX_SIZE + 1;
        }
    }
    *pp = p;
    return total;
}

/* Compiles the ERE pat under the UTF-8 locale after refusing what would be
 * too costly (back-references, huge repetitions). 0, or -1 with msg set. */
static int re_compile(regex_t *re, const char *pat, char *msg, size_t msgsz)
{
    if (strlen(pat) > RE_MAX_PATTERN) {
        snprintf(msg, msgsz, "the pattern is longer than %d bytes", RE_MAX_PATTERN);
        return -1;
    }
    bool in_br = false, after_q = false;
    for (const char *p = pat; *p; p++) {
        bool q = false;
        if (!in_br && *p == '\\' && p[1]) {
            if (p[1] >= '1' && p[1] <= '9') {
                snprintf(msg, msgsz, "back-references are not supported in the pattern");
                return -1;
            }
            p++;
        } else if (!in_br && *p == '[') {
            in_br = true;
            if (p[1] == '^')
                p++;
            if (p[1] == ']')
                p++;
        } else if (in_br && *p == '[' && (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
            char close = p[1];
            p += 2;
            while (*p && !(*p == close && p[1] == ']'))
                p++;
            if (!*p)
                break;
            p++;
        } else if (in_br) {
            in_br = *p != ']';
        } else if (*p == '*' || *p == '+' || *p == '?' || (*p == '{' && a_digit(p[1]))) {
            /* glibc expands stacked and large repetitions into huge automata */
            if (after_q) {
                snprintf(msg, msgsz,
                         "a repetition right after a repetition ('%.2s') is not "
                         "supported",
                         p - 1);
                return -1;
            }
            q = true;
            if (*p == '{') {
                long n = 0;
                for (p++; *p && *p != '}'; p++) {
                    if (a_digit(*p) && (n = n * 10 + (*p - '0')) > RE_MAX_REPEAT) {
                        snprintf(msg, msgsz, "repetition counts above %d are not supported",
                                 RE_MAX_REPEAT);
                        return -1;
                    }
                    if (*p == ',')
                        n = 0;
                }
                if (!*p)
                    break;
            }
        }
        after_q = q;
    }
    const char *p = pat;
    long size = 0;
    while (*p) {
        size += re_estimate(&p, 0);
        if (*p)
            p++; /* an unbalanced ')' */
        if (size > RE_MAX_SIZE)
            break;
    }
    if (size > RE_MAX_SIZE) {
        snprintf(msg, msgsz, "the pattern repeats too much");
        return -1;
    }
    locale_t l = utf8_locale(), old = (locale_t)0;
    if (l)
        old = uselocale(l);
    int rc = regcomp(re, pat, REG_EXTENDED);
    if (l)
        uselocale(old);
    if (rc) {
        char m[128];
        regerror(rc, re, m, sizeof(m));
        for (char *c = m; *c; c++)
            *c = (char)a_lower((unsigned char)*c);
        snprintf(msg, msgsz, "%s", m);
        return -1;
    }
    return 0;
}

/* The highest \N of a replacement (0 when none). */
static int repl_max_group(const char *s)
{
    int max = 0;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            if (s[1] >= '0' && s[1] <= '9' && s[1] - '0' > max)
                max = s[1] - '0';
            s++;
        }
    }
    return max;
}

static int prep_regex_replace(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *pat = &fc->args[0], *rep = &fc->args[1];
    if (pat->kind != SL_OPERAND_CONST)
        return 0;
    if (!pat->str)
        return sl_seterr(errbuf, errsz, -1, "regex_replace: the pattern is empty");
    char msg[160];
    if (re_compile(&fc->re, pat->str, msg, sizeof(msg)))
        return sl_seterr(errbuf, errsz, -1, "regex_replace: invalid pattern '%s': %s", pat->str,
                         msg);
    fc->has_re = true;
    if (rep->kind == SL_OPERAND_CONST && rep->str) {
        int g = repl_max_group(rep->str);
        if ((size_t)g > fc->re.re_nsub)
            return sl_seterr(errbuf, errsz, -1,
                             "regex_replace: '\\%d' refers to a group the pattern does not have",
                             g);
    }
    return 0;
}

struct sbuf {
    struct sl_arena *a;
    char *p;
    size_t len, cap;
};

/* Appends n bytes: 0, -1 out of memory, -2 when the result would exceed
 * VALUE_MAX. */
static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (n > VALUE_MAX - b->len)
        return -2;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = sl_arena_alloc(b->a, cap);
        if (!p)
            return -1;
        if (b->len)
            memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* regexec costs about the length of the value per call (glibc walks the
 * multibyte text up to the start again), so a pattern matching at every
 * character of a long value would take quadratic time: the calls of one
 * substitution may cost at most REGEX_WORK_MAX value bytes in total. */
#define REGEX_WORK_MAX ((size_t)64 << 20)

/* -2: the result is too long; -3: too much work (REGEX_WORK_MAX). */
static int regex_subst(const regex_t *re, const char *in, const char *rep, struct sbuf *b)
{
    regmatch_t m[10];
    size_t n = strlen(in), pos = 0, work = 0;
    size_t nm = re->re_nsub + 1 < 10 ? re->re_nsub + 1 : 10;
    int eflags = 0, rc;
    if ((rc = sbuf_add(b, "", 0)))
        return rc;
    while (pos <= n) {
        if ((work += n + 1) > REGEX_WORK_MAX)
            return -3;
        /* REG_STARTEND: the search starts at pos without regexec measuring
         * the rest of the string again (quadratic on a long value); the
         * offsets it gives are from in */
        m[0].rm_so = (regoff_t)pos;
        m[0].rm_eo = (regoff_t)n;
        if (regexec(re, in, nm, m, eflags | REG_STARTEND))
            break;
        size_t so = (size_t)m[0].rm_so - pos, eo = (size_t)m[0].rm_eo - pos;
        if ((rc = sbuf_add(b, in + pos, so)))
            return rc;
        for (const char *r = rep; *r; r++) {
            if (*r == '\\' && r[1] >= '0' && r[1] <= '9') {
                size_t g = (size_t)(r[1] - '0');
                if (g < nm && m[g].rm_so >= 0 &&
                    (rc = sbuf_add(b, in + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so))))
                    return rc;
                r++;
            } else if (*r == '\\' && r[1] == '\\') {
                if ((rc = sbuf_add(b, "\\", 1)))
                    return rc;
                r++;
            } else if ((rc = sbuf_add(b, r, 1))) {
                return rc;
            }
        }
        if (eo == so) { /* an empty match: copy one character and go on */
            if (pos + eo >= n) {
                pos = n + 1;
                break;
            }
            uint32_t cp;
            size_t k = utf8_dec((const unsigned char *)in + pos + eo, n - pos - eo, &cp);
            k = k ? k : 1;
            if ((rc = sbuf_add(b, in + pos + eo, k)))
                return rc;
            pos += eo + k;
        } else {
            pos += eo;
        }
        eflags = REG_NOTBOL;
    }
    if (pos <= n && (rc = sbuf_add(b, in + pos, n - pos)))
        return rc;
    return 0;
}

static int f_regex_replace(const struct sl_fcall *fc, const char *in, const char *const *args,
                           struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    const char *rep = args[1] ? args[1] : "";
    regex_t tmp;
    const regex_t *re = &fc->re;
    if (!fc->has_re) { /* the pattern comes from the row */
        *out = in;
        if (!args[0])
            return 0;
        char msg[160];
        if (re_compile(&tmp, args[0], msg, sizeof(msg)))
            return fail(ctx, errmsg, "regex_replace: invalid pattern '%s': %s",
                        shown(ctx->arena, args[0]), msg);
        re = &tmp;
    }
    struct sbuf b = {ctx->arena, NULL, 0, 0};
    locale_t l = utf8_locale(), old = (locale_t)0;
    if (l)
        old = uselocale(l);
    int rc = regex_subst(re, in, rep, &b);
    if (l)
        uselocale(old);
    if (re == &tmp)
        regfree(&tmp);
    if (rc == -2)
        return fail(ctx, errmsg, "regex_replace: the result would be longer than %d bytes",
                    VALUE_MAX);
    if (rc == -3)
        return fail(ctx, errmsg,
                    "regex_replace: the pattern matches too often in this %zu-byte value "
                    "(more than %zu bytes of searching)",
                    strlen(in), REGEX_WORK_MAX);
    if (rc)
        return nomem(errmsg);
    *out = b.p;
    return 0;
}

/* ---- date, datetime ----------------------------------------------------- */

struct dt {
    int year, mon, day, yday; /* -1: not given */
    int hour, min, sec;       /* 0 when not given */
    char frac[10];            /* %f digits, "" none */
    int pm;                   /* -1: no %p, 0 am, 1 pm */
    bool hour12;
    bool has_off;
    int off; /* seconds east of UTC */
};

struct name_num {
    const char *name; /* lowercase; "ä" as UTF-8 */
    int num;
};

static const struct name_num month_names[] = {
    {"january", 1},     {"jan", 1},       {"januar", 1},     {"j\xc3\xa4nner", 1}, {"jaenner", 1},
    {"february", 2},    {"feb", 2},       {"februar", 2},    {"march", 3},         {"mar", 3},
    {"m\xc3\xa4rz", 3}, {"maerz", 3},     {"m\xc3\xa4r", 3}, {"mrz", 3},           {"april", 4},
    {"apr", 4},         {"may", 5},       {"mai", 5},        {"june", 6},          {"jun", 6},
    {"juni", 6},        {"july", 7},      {"jul", 7},        {"juli", 7},          {"august", 8},
    {"aug", 8},         {"september", 9}, {"sep", 9},        {"sept", 9},          {"october", 10},
    {"oct", 10},        {"oktober", 10},  {"okt", 10},       {"november", 11},     {"nov", 11},
    {"december", 12},   {"dec", 12},      {"dezember", 12},  {"dez", 12},
};

static const struct name_num weekday_names[] = {
    {"monday", 1},  {"mon", 1},       {"montag", 1},     {"mo", 1},       {"tuesday", 2},
    {"tue", 2},     {"tues", 2},      {"dienstag", 2},   {"di", 2},       {"wednesday", 3},
    {"wed", 3},     {"mittwoch", 3},  {"mi", 3},         {"thursday", 4}, {"thu", 4},
    {"thur", 4},    {"thurs", 4},     {"donnerstag", 4}, {"do", 4},       {"friday", 5},
    {"fri", 5},     {"freitag", 5},   {"fr", 5},         {"saturday", 6}, {"sat", 6},
    {"samstag", 6}, {"sonnabend", 6}, {"sa", 6},         {"sunday", 0},   {"sun", 0},
    {"sonntag", 0}, {"so", 0},
};

/* Bytes of s that match name case-insensitively (ASCII and ä/Ä), or 0. */
static size_t name_match(const char *s, const char *name)
{
    size_t i = 0;
    for (; name[i]; i++) {
        unsigned char c = (unsigned char)s[i], m = (unsigned char)name[i];
        if (m == 0xa4 && i > 0 && (unsigned char)name[i - 1] == 0xc3 && c == 0x84)
            continue; /* Ä */
        if (a_lower(c) != m)
            return 0;
    }
    return i;
}

/* The number of the longest name of tab at *sp, advancing *sp; -1 if none. */
static int names_scan(const struct name_num *tab, size_t n, const char **sp, char next_fmt)
{
    size_t best = 0;
    int num = -1;
    for (size_t i = 0; i < n; i++) {
        size_t k = name_match(*sp, tab[i].name);
        if (k > best) {
            best = k;
            num = tab[i].num;
        }
    }
    if (num < 0)
        return -1;
    /* a letter right after the name means a different word ("Mayday") */
    if (a_alpha((unsigned char)(*sp)[best]))
        return -1;
    *sp += best;
    if (**sp == '.' && next_fmt != '.') /* "Jan." */
        (*sp)++;
    return num;
}

static bool num_scan(const char **sp, int minw, int maxw, int *v)
{
    const char *s = *sp;
    int n = 0, val = 0;
    while (n < maxw && s[n] >= '0' && s[n] <= '9') {
        val = val * 10 + (s[n] - '0');
        n++;
    }
    if (n < minw)
        return false;
    *sp = s + n;
    *v = val;
    return true;
}

/* Matches s against fmt, filling dt. 0, or -1 when s does not match. */
static int dt_scan(const char *fmt, const char **sp, struct dt *dt, int depth)
{
    const char *s = *sp;
    int v;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            if (a_space((unsigned char)*f)) {
                if (!a_space((unsigned char)*s))
                    return -1;
                while (a_space((unsigned char)*s))
                    s++;
                while (a_space((unsigned char)f[1]))
                    f++;
            } else if (a_lower((unsigned char)*f) != a_lower((unsigned char)*s) || !*s) {
                return -1;
            } else {
                s++;
            }
            continue;
        }
        f++;
        switch (*f) {
        case 'e':
            if (*s == ' ')
                s++;
            /* fall through */
        case 'd':
            if (!num_scan(&s, 1, 2, &dt->day))
                return -1;
            break;
        case 'm':
            if (!num_scan(&s, 1, 2, &dt->mon))
                return -1;
            break;
        case 'Y':
            if (!num_scan(&s, 4, 4, &dt->year))
                return -1;
            break;
        case 'y':
            if (!num_scan(&s, 2, 2, &v))
                return -1;
            dt->year = v < 69 ? 2000 + v : 1900 + v;
            break;
        case 'j':
            if (!num_scan(&s, 1, 3, &dt->yday))
                return -1;
            break;
        case 'H':
        case 'I':
            if (!num_scan(&s, 1, 2, &dt->hour))
                return -1;
            dt->hour12 = *f == 'I';
            break;
        case 'M':
            if (!num_scan(&s, 1, 2, &dt->min))
                return -1;
            break;
        case 'S':
            if (!num_scan(&s, 1, 2, &dt->sec))
                return -1;
            break;
        case 'f': {
            int n = 0;
            while (n < 9 && s[n] >= '0' && s[n] <= '9') {
                dt->frac[n] = s[n];
                n++;
            }
            if (!n || (s[n] >= '0' && s[n] <= '9'))
                return -1;
            dt->frac[n] = '\0';
            s += n;
            break;
        }
        case 'b':
        case 'B':
        case 'h':
            if ((dt->mon = names_scan(month_names, SL_ARRAY_LEN(month_names), &s, f[1])) < 0)
                return -1;
            break;
        case 'a':
        case 'A':
            if (names_scan(weekday_names, SL_ARRAY_LEN(weekday_names), &s, f[1]) < 0)
                return -1;
            break;
        case 'p':
            if ((s[0] == 'a' || s[0] == 'A' || s[0] == 'p' || s[0] == 'P') &&
                (s[1] == 'm' || s[1] == 'M')) {
                dt->pm = s[0] == 'p' || s[0] == 'P';
                s += 2;
            } else {
                return -1;
            }
            break;
        case 'z':
            if (*s == 'Z' || *s == 'z') {
                s++;
                dt->has_off = true;
                dt->off = 0;
            } else if (*s == '+' || *s == '-' || (unsigned char)*s == 0xe2) {
                int sign = *s == '+' ? 1 : -1, h, m = 0;
                if ((unsigned char)*s == 0xe2) { /* U+2212 minus sign */
                    if ((unsigned char)s[1] != 0x88 || (unsigned char)s[2] != 0x92)
                        return -1;
                    s += 2;
                }
                s++;
                if (!num_scan(&s, 2, 2, &h))
                    return -1;
                if (*s == ':') {
                    s++;
                    if (!num_scan(&s, 2, 2, &m))
                        return -1;
                } else if (s[0] >= '0' && s[0] <= '9') {
                    if (!num_scan(&s, 2, 2, &m))
                        return -1;
                }
                if (h > 23 || m > 59)
                    return -1;
                dt->has_off = true;
                dt->off = sign * (h * 3600 + m * 60);
            } else {
                return -1;
            }
            break;
        case 'T':
        case 'F':
        case 'R':
        case 'D': {
            const char *sub = *f == 'T'   ? "%H:%M:%S"
                              : *f == 'F' ? "%Y-%m-%d"
                              : *f == 'R' ? "%H:%M"
                                          : "%m/%d/%y";
            if (depth > 0 || dt_scan(sub, &s, dt, depth + 1))
                return -1;
            break;
        }
        case 'n':
        case 't':
            while (a_space((unsigned char)*s))
                s++;
            break;
        case '%':
            if (*s != '%')
                return -1;
            s++;
            break;
        default:
            return -1;
        }
    }
    *sp = s;
    return 0;
}

enum {
    DF_YEAR = 1 << 0,
    DF_MON = 1 << 1,
    DF_DAY = 1 << 2,
    DF_YDAY = 1 << 3,
    DF_HOUR12 = 1 << 4,
    DF_AMPM = 1 << 5,
};

/* Checks the directives of fmt: their DF_ flags, or -1 with *bad set to the
 * unknown directive ('\0': a '%' at the end). */
static int fmt_flags(const char *fmt, char *bad)
{
    int fl = 0;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%')
            continue;
        f++;
        switch (*f) {
        case 'Y':
        case 'y':
            fl |= DF_YEAR;
            break;
        case 'm':
        case 'b':
        case 'B':
        case 'h':
            fl |= DF_MON;
            break;
        case 'd':
        case 'e':
            fl |= DF_DAY;
            break;
        case 'j':
            fl |= DF_YDAY;
            break;
        case 'F':
        case 'D':
            fl |= DF_YEAR | DF_MON | DF_DAY;
            break;
        case 'I':
            fl |= DF_HOUR12;
            break;
        case 'p':
            fl |= DF_AMPM;
            break;
        case 'H':
        case 'M':
        case 'S':
        case 'f':
        case 'a':
        case 'A':
        case 'z':
        case 'T':
        case 'R':
        case 'n':
        case 't':
        case '%':
            break;
        default:
            *bad = *f;
            return -1;
        }
        if (!*f)
            break;
    }
    return fl;
}

static int prep_dateformat(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const char *name = fc->def->name;
    const struct sl_operand *a = &fc->args[0];
    if (a->kind != SL_OPERAND_CONST || !a->str)
        return sl_seterr(errbuf, errsz, -1, "%s: the format must be a quoted constant like '%s'",
                         name, "%d.%m.%Y");
    char bad = 0;
    int fl = fmt_flags(a->str, &bad);
    if (fl < 0 && !bad)
        return sl_seterr(errbuf, errsz, -1, "%s: format '%s' ends with a lone '%%'", name, a->str);
    if (fl < 0)
        return sl_seterr(errbuf, errsz, -1, "%s: unsupported directive '%%%c' in format '%s'", name,
                         bad, a->str);
    if (!(fl & DF_YEAR) || !((fl & DF_MON && fl & DF_DAY) || fl & DF_YDAY))
        return sl_seterr(errbuf, errsz, -1,
                         "%s: format '%s' needs a year, a month and a day (or %%j)", name, a->str);
    if (!(fl & DF_HOUR12) != !(fl & DF_AMPM))
        return sl_seterr(errbuf, errsz, -1, "%s: format '%s' must use %%I and %%p together", name,
                         a->str);
    return 0;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Civil dates: tz.h's (H. Hinnant's algorithms), with int months and days. */
static int64_t civil_days(int64_t y, int m, int d)
{
    return sl_days_from_civil(y, (unsigned)m, (unsigned)d);
}

static void civil_from(int64_t z, int64_t *y, int *m, int *d)
{
    unsigned um, ud;
    sl_civil_from_days(z, y, &um, &ud);
    *m = (int)um;
    *d = (int)ud;
}

/* Checks the calendar and the clock of a scanned dt and completes it (month
 * and day from %j, 24-hour clock from %I %p). */
static bool dt_valid(struct dt *dt)
{
    if (dt->year < 0)
        return false;
    if (dt->yday >= 0) {
        if (dt->yday < 1 || dt->yday > (is_leap(dt->year) ? 366 : 365))
            return false;
        int64_t y;
        int m, d;
        civil_from(civil_days(dt->year, 1, 1) + dt->yday - 1, &y, &m, &d);
        if ((dt->mon >= 0 && dt->mon != m) || (dt->day >= 0 && dt->day != d))
            return false;
        dt->mon = m;
        dt->day = d;
    }
    if (dt->mon < 1 || dt->mon > 12 || dt->day < 1 || dt->day > days_in_month(dt->year, dt->mon))
        return false;
    if (dt->hour12) {
        if (dt->hour < 1 || dt->hour > 12 || dt->pm < 0)
            return false;
        dt->hour = dt->hour % 12 + (dt->pm ? 12 : 0);
    }
    return dt->hour <= 23 && dt->min <= 59 && dt->sec <= 59;
}

/* ISO 8601 forms accepted besides the job's format: spreadsheet cells and
 * JSON sources deliver dates this way (JOBS.md "source"). */
static const char *const iso_formats[] = {
    "%Y-%m-%d",          "%Y-%m-%dT%H:%M:%S%z",  "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
};

static bool dt_try(const char *fmt, const char *s, size_t n, struct dt *dt)
{
    *dt = (struct dt){.year = -1, .mon = -1, .day = -1, .yday = -1, .pm = -1};
    const char *p = s;
    if (dt_scan(fmt, &p, dt, 0) || p != s + n)
        return false;
    return dt_valid(dt);
}

/* Parses in (trimmed) by fmt, then by the ISO forms. */
static bool dt_parse(const char *fmt, const char *in, struct sl_arena *a, struct dt *dt)
{
    size_t n = strlen(in), b = 0, e = 0;
    trim_bounds(in, n, &b, &e);
    const char *s = in;
    if (b || e != n) {
        if (!(s = sl_arena_strndup(a, in + b, e - b)))
            return false;
        n = e - b;
    }
    if (dt_try(fmt, s, n, dt))
        return true;
    for (size_t i = 0; i < SL_ARRAY_LEN(iso_formats); i++)
        if (strcmp(fmt, iso_formats[i]) && dt_try(iso_formats[i], s, n, dt))
            return true;
    return false;
}

static int f_date(const struct sl_fcall *fc, const char *in, const char *const *args,
                  struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    struct dt dt;
    const char *fmt = fc->args[0].str;
    if (!dt_parse(fmt, in, ctx->arena, &dt))
        return fail(ctx, errmsg, "date: '%s' is not a valid date for format '%s'",
                    shown(ctx->arena, in), fmt);
    char *buf = sl_arena_alloc(ctx->arena, 11);
    if (!buf)
        return nomem(errmsg);
    char *o = put_num(buf, dt.year, 4);
    *o++ = '-';
    o = put_num(o, dt.mon, 2);
    *o++ = '-';
    o = put_num(o, dt.day, 2);
    *o = '\0';
    *out = buf;
    return 0;
}

static int prep_datetime(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    if (prep_dateformat(fc, errbuf, errsz))
        return -1;
    if (fc->nargs < 2 || fc->args[1].kind != SL_OPERAND_CONST)
        return 0;
    if (!fc->args[1].str)
        return sl_seterr(errbuf, errsz, -1, "datetime: the time zone is empty");
    char msg[200];
    if (!(fc->tz = sl_tz_get(fc->args[1].str, msg, sizeof(msg))))
        return sl_seterr(errbuf, errsz, -1, "datetime: unknown time zone '%s'", fc->args[1].str);
    return 0;
}

static int f_datetime(const struct sl_fcall *fc, const char *in, const char *const *args,
                      struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    struct dt dt;
    const char *fmt = fc->args[0].str;
    if (!dt_parse(fmt, in, ctx->arena, &dt))
        return fail(ctx, errmsg, "datetime: '%s' is not a valid date and time for format '%s'",
                    shown(ctx->arena, in), fmt);
    int64_t local =
        civil_days(dt.year, dt.mon, dt.day) * 86400 + dt.hour * 3600 + dt.min * 60 + dt.sec;
    int64_t t;
    if (dt.has_off) {
        t = local - dt.off;
    } else {
        const struct sl_tz *tz = fc->tz;
        if (!tz && fc->nargs > 1 && args[1]) {
            char msg[200];
            if (!(tz = sl_tz_get(args[1], msg, sizeof(msg))))
                return fail(ctx, errmsg, "datetime: unknown time zone '%s'",
                            shown(ctx->arena, args[1]));
        }
        if (!tz && ctx->job)
            tz = ctx->job->tz;
        t = tz ? sl_tz_local_to_utc(tz, local, NULL) : local;
    }
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), y;
    int64_t sod = t - days * 86400;
    int m, d;
    civil_from(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return fail(ctx, errmsg, "datetime: '%s' is out of range", shown(ctx->arena, in));
    /* 2025-12-31T23:00:00[.frac]Z; trailing zeros of the fraction go (.500 -> .5) */
    size_t fl = strlen(dt.frac);
    while (fl > 0 && dt.frac[fl - 1] == '0')
        fl--;
    char *buf = sl_arena_alloc(ctx->arena, 22 + fl);
    if (!buf)
        return nomem(errmsg);
    char *o = put_num(buf, (int)y, 4);
    *o++ = '-';
    o = put_num(o, m, 2);
    *o++ = '-';
    o = put_num(o, d, 2);
    *o++ = 'T';
    o = put_num(o, (int)(sod / 3600), 2);
    *o++ = ':';
    o = put_num(o, (int)(sod / 60 % 60), 2);
    *o++ = ':';
    o = put_num(o, (int)(sod % 60), 2);
    if (fl) {
        *o++ = '.';
        memcpy(o, dt.frac, fl);
        o += fl;
    }
    *o++ = 'Z';
    *o = '\0';
    *out = buf;
    return 0;
}

/* ---- number ------------------------------------------------------------- */

enum { NUM_DE, NUM_EN, NUM_FR, NUM_CH };

struct num_locale {
    const char *name;
    int mode;
};

static const struct num_locale num_locales[] = {
    {"de", NUM_DE},    {"de-de", NUM_DE}, {"de_de", NUM_DE}, {"de-at", NUM_DE}, {"de_at", NUM_DE},
    {"en", NUM_EN},    {"en-us", NUM_EN}, {"en_us", NUM_EN}, {"en-gb", NUM_EN}, {"en_gb", NUM_EN},
    {"fr", NUM_FR},    {"fr-fr", NUM_FR}, {"fr_fr", NUM_FR}, {"ch", NUM_CH},    {"de-ch", NUM_CH},
    {"de_ch", NUM_CH}, {"fr-ch", NUM_CH}, {"fr_ch", NUM_CH},
};

static int prep_number(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *a = &fc->args[0];
    if (a->kind == SL_OPERAND_CONST && a->str) {
        for (size_t i = 0; i < SL_ARRAY_LEN(num_locales); i++) {
            if (!strcasecmp(a->str, num_locales[i].name)) {
                fc->mode = num_locales[i].mode;
                return 0;
            }
        }
    }
    return sl_seterr(errbuf, errsz, -1,
                     "number: unknown locale '%s' (use 'de', 'en', 'fr' or 'de-CH')",
                     a->kind == SL_OPERAND_CONST && a->str ? a->str : "");
}

/* A separator between digit groups at s: its kind (1 the locale's group
 * character, 2 a space, 3 an apostrophe) and *len, or 0. */
static int group_sep(const char *s, size_t n, int mode, size_t *len)
{
    unsigned char c = (unsigned char)s[0];
    *len = 1;
    if ((mode == NUM_DE && c == '.') || (mode == NUM_EN && c == ','))
        return 1;
    if (mode == NUM_CH && c == '\'')
        return 3;
    if (mode == NUM_CH && n >= 3 && c == 0xe2 && (unsigned char)s[1] == 0x80 &&
        (unsigned char)s[2] == 0x99) {
        *len = 3;
        return 3;
    }
    if (c == ' ')
        return 2;
    size_t k = space_len(s, n);
    if (k > 1) {
        *len = k;
        return 2;
    }
    return 0;
}

/* Parses s[0..n) as a number of mode (mode < 0: plain, '.' decimal and no
 * groups) into the exact canonical text at out (room for n + 2 bytes).
 * 0 or -1. */
static int number_scan(const char *s, size_t n, int mode, char *out)
{
    char dec = mode == NUM_DE || mode == NUM_FR ? ',' : '.';
    bool neg = false;
    size_t i = 0;
    if (n && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    } else if (n > 1 && s[n - 1] == '-') { /* SAP writes 1.234,56- */
        neg = true;
        n--;
    }
    size_t o = 0, idigits = 0, cur = 0;
    int sep = 0;
    if (neg)
        out[o++] = '-';
    size_t istart = o;
    while (i < n) {
        size_t k;
        int kind;
        if (s[i] >= '0' && s[i] <= '9') {
            if (!(o == istart && s[i] == '0')) /* leading zeros */
                out[o++] = s[i];
            idigits++;
            cur++;
            i++;
        } else if (mode >= 0 && (kind = group_sep(s + i, n - i, mode, &k))) {
            /* groups: 1-3 digits not starting with 0 ("0.001" is no group), then 3 */
            if (!idigits || (sep && kind != sep) || (sep ? cur != 3 : cur > 3 || o == istart))
                return -1;
            sep = kind;
            cur = 0;
            i += k;
        } else {
            break;
        }
    }
    if (sep && cur != 3)
        return -1;
    if (o == istart && idigits)
        out[o++] = '0';
    size_t fdigits = 0;
    if (i < n && s[i] == dec) {
        i++;
        if (o == istart)
            out[o++] = '0';
        out[o++] = '.';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, fdigits++)
            out[o++] = s[i];
        if (!fdigits)
            return -1;
    }
    if (i != n || (!idigits && !fdigits))
        return -1;
    out[o] = '\0';
    if (neg) { /* -0 and -0.00 lose the sign */
        bool zero = true;
        for (size_t k = 1; k < o && zero; k++)
            zero = out[k] == '0' || out[k] == '.';
        if (zero)
            memmove(out, out + 1, o);
    }
    return 0;
}

static int f_number(const struct sl_fcall *fc, const char *in, const char *const *args,
                    struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    size_t n = strlen(in), b = 0, e = 0;
    trim_bounds(in, n, &b, &e);
    char *buf = sl_arena_alloc(ctx->arena, e - b + 3);
    if (!buf)
        return nomem(errmsg);
    if (number_scan(in + b, e - b, fc->mode, buf) && number_scan(in + b, e - b, -1, buf))
        return fail(ctx, errmsg, "number: '%s' is not a number in locale '%s'",
                    shown(ctx->arena, in), fc->args[0].str);
    *out = buf;
    return 0;
}

/* ---- currency_code ------------------------------------------------------ */

/* ISO 4217 codes in use (and HRK, SLL, ZWL that old files still hold). */
static const char iso4217[] =
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP "
    "DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS "
    "INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR "
    "PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS "
    "SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW "
    "UZS VED VES VND VUV WST XAF XAG XAU XCD XCG XDR XOF XPD XPF XPT YER ZAR ZMW ZWG ZWL";

struct sym_code {
    const char *sym; /* ASCII letters lowercase */
    const char *code;
};

static const struct sym_code currency_syms[] = {
    {"\xe2\x82\xac", "EUR"}, /* € */
    {"euro", "EUR"},         {"euros", "EUR"},      {"$", "USD"},
    {"us$", "USD"},          {"us-dollar", "USD"},  {"dollar", "USD"},
    {"\xc2\xa3", "GBP"},                                                     /* £ */
    {"\xc2\xa5", "JPY"},                                                     /* ¥ */
    {"\xef\xbf\xa5", "JPY"},                                                 /* fullwidth ¥ */
    {"\xe5\x86\x86", "JPY"},                                                 /* 円 */
    {"yen", "JPY"},          {"cn\xc2\xa5", "CNY"}, {"\xe5\x85\x83", "CNY"}, /* 元 */
    {"rmb", "CNY"},          {"fr.", "CHF"},        {"fr", "CHF"},
    {"sfr.", "CHF"},         {"sfr", "CHF"},        {"franken", "CHF"},
    {"\xe2\x82\xb9", "INR"}, /* ₹ */
    {"\xe2\x82\xbd", "RUB"}, /* ₽ */
    {"\xe2\x82\xba", "TRY"}, /* ₺ */
    {"\xe2\x82\xa9", "KRW"}, /* ₩ */
    {"\xe2\x82\xaa", "ILS"}, /* ₪ */
    {"\xe2\x82\xab", "VND"}, /* ₫ */
    {"\xe2\x82\xb4", "UAH"}, /* ₴ */
    {"\xe2\x82\xb1", "PHP"}, /* ₱ */
    {"\xe2\x82\xa6", "NGN"}, /* ₦ */
    {"\xe0\xb8\xbf", "THB"}, /* ฿ */
    {"z\xc5\x82", "PLN"},    /* zł */
    {"k\xc4\x8d", "CZK"},    /* Kč */
    {"ft", "HUF"},           {"lei", "RON"},        {"r$", "BRL"},
    {"c$", "CAD"},           {"ca$", "CAD"},        {"a$", "AUD"},
    {"au$", "AUD"},          {"nz$", "NZD"},        {"hk$", "HKD"},
    {"s$", "SGD"},           {"sg$", "SGD"},        {"mx$", "MXN"},
    {"pfund", "GBP"},
};

/* Whether s (n bytes) equals sym, ASCII letters of s compared lowercase. */
static bool sym_eq(const char *s, size_t n, const char *sym)
{
    size_t i = 0;
    for (; i < n && sym[i]; i++)
        if (a_lower((unsigned char)s[i]) != (unsigned char)sym[i])
            return false;
    return i == n && !sym[i];
}

static int f_currency_code(const struct sl_fcall *fc, const char *in, const char *const *args,
                           struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    size_t n = strlen(in), b = 0, e = 0;
    trim_bounds(in, n, &b, &e);
    const char *s = in + b;
    n = e - b;
    if (n == 3 && a_alpha((unsigned char)s[0]) && a_alpha((unsigned char)s[1]) &&
        a_alpha((unsigned char)s[2])) {
        char code[4] = {(char)a_upper((unsigned char)s[0]), (char)a_upper((unsigned char)s[1]),
                        (char)a_upper((unsigned char)s[2]), '\0'};
        for (const char *p = iso4217; *p; p += p[3] ? 4 : 3) {
            if (!memcmp(p, code, 3)) {
                *out = p[3] ? sl_arena_strndup(ctx->arena, p, 3) : p;
                return *out ? 0 : nomem(errmsg);
            }
        }
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(currency_syms); i++) {
        if (sym_eq(s, n, currency_syms[i].sym)) {
            *out = currency_syms[i].code;
            return 0;
        }
    }
    return fail(ctx, errmsg, "currency_code: '%s' is not a known currency", shown(ctx->arena, in));
}

/* ---- lookup, hash ------------------------------------------------------- */

static int prep_lookup(struct sl_fcall *fc, char *errbuf, size_t errsz)
{
    const struct sl_operand *a = &fc->args[0];
    if (a->kind != SL_OPERAND_CONST || !a->str)
        return sl_seterr(errbuf, errsz, -1, "lookup: the table name must be a quoted constant");
    return 0;
}

static int f_lookup(const struct sl_fcall *fc, const char *in, const char *const *args,
                    struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    const char *table = fc->args[0].str;
    const struct sl_lookup *lk = ctx->job ? sl_job_lookup(ctx->job, table) : NULL;
    if (!lk)
        return fail(ctx, errmsg, "lookup: unknown lookup table '%s'", table);
    json_t *v = json_object_get(lk->map, in);
    if (v && json_is_string(v)) {
        *out = json_string_value(v);
        return 0;
    }
    if (v && json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    if (fc->nargs > 1) {
        *out = args[1];
        return 0;
    }
    return fail(ctx, errmsg, "lookup: '%s' is not in table '%s'", shown(ctx->arena, in), table);
}

/* HMAC-SHA256 contexts: OpenSSL 3 fetches the algorithm and expands the key
 * on every one-shot HMAC() (microseconds), so each thread keeps one keyed
 * context and only re-initialises it per value. */
struct hmac_tls {
    EVP_MAC_CTX *ctx;
    char *key;
    size_t keylen;
};

static EVP_MAC *hmac_mac;
static pthread_key_t hmac_key;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static bool hmac_ok;

static void hmac_tls_free(void *p)
{
    struct hmac_tls *t = p;
    EVP_MAC_CTX_free(t->ctx);
    free(t->key);
    free(t);
}

static void hmac_init(void)
{
    hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    hmac_ok = hmac_mac && !pthread_key_create(&hmac_key, hmac_tls_free);
}

/* The HMAC-SHA256 of in under key into md[32]; 0 or -1. */
static int hmac_sha256(const char *key, size_t keylen, const char *in, unsigned char *md)
{
    pthread_once(&hmac_once, hmac_init);
    if (!hmac_ok)
        return -1;
    struct hmac_tls *t = pthread_getspecific(hmac_key);
    if (!t) {
        if (!(t = calloc(1, sizeof(*t))))
            return -1;
        if (pthread_setspecific(hmac_key, t)) {
            free(t);
            return -1;
        }
    }
    int ok;
    if (t->ctx && t->keylen == keylen && !memcmp(t->key, key, keylen)) {
        ok = EVP_MAC_init(t->ctx, NULL, 0, NULL);
    } else {
        char *copy = malloc(keylen);
        if (!copy)
            return -1;
        memcpy(copy, key, keylen);
        free(t->key);
        t->key = copy;
        t->keylen = keylen;
        if (!t->ctx && !(t->ctx = EVP_MAC_CTX_new(hmac_mac)))
            return -1;
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                               OSSL_PARAM_construct_end()};
        ok = EVP_MAC_init(t->ctx, (const unsigned char *)key, keylen, params);
        if (!ok)
            t->keylen = (size_t)-1; /* set the key again next time */
    }
    size_t len = 0;
    if (!ok || !EVP_MAC_update(t->ctx, (const unsigned char *)in, strlen(in)) ||
        !EVP_MAC_final(t->ctx, md, &len, 32) || len != 32)
        return -1;
    return 0;
}

static int f_hash(const struct sl_fcall *fc, const char *in, const char *const *args,
                  struct sl_eval_ctx *ctx, const char **out, const char **errmsg)
{
    if (!ctx->hash_key || !ctx->hash_key_len)
        return fail(ctx, errmsg, "hash needs the SLUICE_HASH_KEY secret");
    unsigned char md[32];
    if (hmac_sha256(ctx->hash_key, ctx->hash_key_len, in, md))
        return fail(ctx, errmsg, "hash: HMAC-SHA256 failed");
    char *buf = sl_arena_alloc(ctx->arena, 65);
    if (!buf)
        return nomem(errmsg);
    sl_hex(md, 32, buf);
    *out = buf;
    return 0;
}

/* ---- the table ---------------------------------------------------------- */

static const struct sl_filter_def filters[] = {
    {"trim", SL_F_TRIM, 0, 0, false, NULL, f_trim},
    {"lower", SL_F_LOWER, 0, 0, false, NULL, f_lower},
    {"upper", SL_F_UPPER, 0, 0, false, NULL, f_upper},
    {"title", SL_F_TITLE, 0, 0, false, NULL, f_title},
    {"replace", SL_F_REPLACE, 2, 2, false, prep_replace, f_replace},
    {"regex_replace", SL_F_REGEX_REPLACE, 2, 2, false, prep_regex_replace, f_regex_replace},
    {"digits", SL_F_DIGITS, 0, 0, false, NULL, f_digits},
    {"truncate", SL_F_TRUNCATE, 1, 1, false, prep_truncate, f_truncate},
    {"split", SL_F_SPLIT, 2, 2, false, prep_split, f_split},
    {"default", SL_F_DEFAULT, 1, 1, true, NULL, f_default},
    {"coalesce", SL_F_COALESCE, 1, SL_FILTER_MAX_ARGS, true, NULL, f_coalesce},
    {"date", SL_F_DATE, 1, 1, false, prep_dateformat, f_date},
    {"datetime", SL_F_DATETIME, 1, 2, false, prep_datetime, f_datetime},
    {"number", SL_F_NUMBER, 1, 1, false, prep_number, f_number},
    {"currency_code", SL_F_CURRENCY_CODE, 0, 0, false, NULL, f_currency_code},
    {"lookup", SL_F_LOOKUP, 1, 2, false, prep_lookup, f_lookup},
    {"hash", SL_F_HASH, 0, 0, false, NULL, f_hash},
};

const struct sl_filter_def *sl_filter_find(const char *name, size_t len)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(filters); i++)
        if (strlen(filters[i].name) == len && !memcmp(filters[i].name, name, len))
            return &filters[i];
    return NULL;
}

bool sl_filter_exists(const char *name)
{
    return name && sl_filter_find(name, strlen(name));
}

/* Levenshtein distance of a[0..n) and b, case-insensitive; capped inputs. */
static size_t edit_distance(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b), row[32];
    if (n >= 31 || m >= 31)
        return SIZE_MAX;
    for (size_t j = 0; j <= m; j++)
        row[j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t up = row[j];
            size_t cost = a_lower((unsigned char)a[i - 1]) != b[j - 1];
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

const char *sl_filter_suggest(const char *name, size_t len)
{
    const char *best = NULL;
    size_t bestd = SIZE_MAX;
    for (size_t i = 0; i < SL_ARRAY_LEN(filters); i++) {
        size_t d = edit_distance(name, len, filters[i].name);
        if (d < bestd) {
            bestd = d;
            best = filters[i].name;
        }
    }
    size_t limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    return bestd <= limit ? best : NULL;
}

void sl_filter_release(struct sl_fcall *fc)
{
    if (fc && fc->has_re) {
        regfree(&fc->re);
        fc->has_re = false;
    }
}
