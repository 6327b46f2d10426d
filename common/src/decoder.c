/*
 * Streaming conversion of a source file's encoding to UTF-8 (reader.h).
 *
 * The CSV reader feeds raw blocks in any split; a character cut by a block
 * boundary waits in a few bytes of carry-over until its rest arrives. A byte
 * order mark at the start decides the encoding whatever the job says, and is
 * dropped. UTF-8 is validated and copied by hand (ASCII eight bytes at a
 * time); the other encodings go through glibc's iconv. Invalid input either
 * fails the feed (strict, the default) or, in lenient mode, becomes U+FFFD
 * and is reported to a callback so that the reader can reject just the row
 * holding it.
 */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sluice/err.h"
#include "sluice/reader.h"

/* Longest carry-over: a UTF-16 surrogate pair less one byte, a UTF-8
 * sequence less one byte, or an undecided BOM prefix. */
#define PEND_MAX 8

static const char REPLACEMENT[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */

struct sl_decoder {
    enum sl_encoding enc; /* as configured; after the BOM check, as used */
    bool big_endian;      /* utf-16 */
    bool started;         /* the BOM check is done */
    iconv_t cd;           /* (iconv_t)-1 for utf-8 */
    unsigned char pend[PEND_MAX];
    size_t npend;
    uint64_t off; /* input offset of pend[0], or of the next byte */
    sl_decoder_invalid_fn bad_fn;
    void *bad_ud;
    bool lenient;
};

struct sl_decoder *sl_decoder_new(enum sl_encoding enc)
{
    if (enc != SL_ENC_UTF8 && enc != SL_ENC_LATIN1 && enc != SL_ENC_WINDOWS_1252 &&
        enc != SL_ENC_UTF16)
        return NULL;
    struct sl_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->enc = enc;
    d->cd = (iconv_t)-1;
    return d;
}

void sl_decoder_destroy(struct sl_decoder *d)
{
    if (!d)
        return;
    if (d->cd != (iconv_t)-1)
        iconv_close(d->cd);
    free(d);
}

void sl_decoder_set_lenient(struct sl_decoder *d, sl_decoder_invalid_fn fn, void *ud)
{
    d->lenient = true;
    d->bad_fn = fn;
    d->bad_ud = ud;
}

enum sl_encoding sl_decoder_encoding(const struct sl_decoder *d)
{
    return d->enc;
}

static const char *display_name(const struct sl_decoder *d)
{
    switch (d->enc) {
    case SL_ENC_UTF8:
        return "UTF-8";
    case SL_ENC_LATIN1:
        return "latin1";
    case SL_ENC_WINDOWS_1252:
        return "windows-1252";
    case SL_ENC_UTF16:
        return d->big_endian ? "UTF-16BE" : "UTF-16LE";
    }
    return "?";
}

static int out_reserve(char **out, size_t *outlen, size_t *outcap, size_t extra)
{
    if (*outcap - *outlen >= extra)
        return 0;
    size_t ncap = *outcap ? *outcap : 4096;
    while (ncap - *outlen < extra) {
        if (ncap > SIZE_MAX / 2)
            return SL_ERR_NOMEM;
        ncap *= 2;
    }
    char *p = realloc(*out, ncap);
    if (!p)
        return SL_ERR_NOMEM;
    *out = p;
    *outcap = ncap;
    return 0;
}

/* An invalid sequence of n bytes at s, input offset off: an error (strict),
 * or U+FFFD and a report (lenient). Room for the replacement is reserved by
 * the caller. */
static int invalid(struct sl_decoder *d, const unsigned char *s, size_t n, uint64_t off,
                   bool at_end, char *out, size_t *outlen, char *errbuf, size_t errsz)
{
    if (!d->lenient) {
        if (at_end)
            return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                             "incomplete %s sequence at the end of the input (byte offset %llu)",
                             display_name(d), (unsigned long long)off);
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "invalid %s at byte offset %llu (0x%02x)",
                         display_name(d), (unsigned long long)off, s[0]);
    }
    (void)n;
    size_t at = *outlen;
    memcpy(out + at, REPLACEMENT, sizeof(REPLACEMENT));
    *outlen += sizeof(REPLACEMENT);
    if (d->bad_fn)
        d->bad_fn(d->bad_ud, off, at, s[0]);
    return 0;
}

/* Validates and copies UTF-8. Returns the number of bytes consumed (an
 * incomplete sequence at the end is left unless last) or a negative error. */
static long long conv_utf8(struct sl_decoder *d, const unsigned char *s, size_t n, uint64_t base,
                           bool last, char **out, size_t *outlen, size_t *outcap, char *errbuf,
                           size_t errsz)
{
    /* Worst case: every byte invalid, three bytes of U+FFFD each. */
    if (n > (SIZE_MAX - 16) / 3 || out_reserve(out, outlen, outcap, n * 3 + 16))
        return SL_ERR_NOMEM;
    size_t i = 0, start = 0;
    while (i < n) {
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            need = 2;
        else if (c >= 0xe0 && c <= 0xef)
            need = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 4;
        else
            need = 0;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        /* k: length of the valid prefix (the maximal subpart when bad) */
        size_t k = 1;
        bool bad = need == 0, incomplete = false;
        while (!bad && k < need) {
            if (i + k >= n) {
                incomplete = true;
                break;
            }
            unsigned b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80) {
                bad = true;
                break;
            }
            k++;
        }
        if (!bad && !incomplete) {
            i += need;
            continue;
        }
        if (incomplete && !last)
            break;
        memcpy(*out + *outlen, s + start, i - start);
        *outlen += i - start;
        int rc = invalid(d, s + i, k, base + i, incomplete, *out, outlen, errbuf, errsz);
        if (rc)
            return rc;
        i += k;
        start = i;
    }
    memcpy(*out + *outlen, s + start, i - start);
    *outlen += i - start;
    return (long long)i;
}

static int open_iconv(struct sl_decoder *d, char *errbuf, size_t errsz)
{
    const char *from = "UTF-8";
    switch (d->enc) {
    case SL_ENC_UTF8:
        return 0;
    case SL_ENC_LATIN1:
        from = "ISO-8859-1";
        break;
    case SL_ENC_WINDOWS_1252:
        from = "CP1252";
        break;
    case SL_ENC_UTF16:
        from = d->big_endian ? "UTF-16BE" : "UTF-16LE";
        break;
    }
    d->cd = iconv_open("UTF-8", from);
    if (d->cd == (iconv_t)-1)
        return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "could not convert from %s: %s", from,
                         strerror(errno));
    return 0;
}

/* Converts with iconv; same contract as conv_utf8. */
static long long conv_iconv(struct sl_decoder *d, const unsigned char *s, size_t n, uint64_t base,
                            bool last, char **out, size_t *outlen, size_t *outcap, char *errbuf,
                            size_t errsz)
{
    size_t unit = d->enc == SL_ENC_UTF16 ? 2 : 1;
    size_t i = 0;
    while (i < n) {
        /* Three bytes of UTF-8 per input byte cover every case (and U+FFFD). */
        if (n - i > (SIZE_MAX - 16) / 3 || out_reserve(out, outlen, outcap, (n - i) * 3 + 16))
            return SL_ERR_NOMEM;
        size_t stop = n;
        if (unit == 1) {
            /* single-byte encodings keep ASCII as it is: copy ASCII runs,
             * leave only the runs of other bytes to iconv */
            size_t j = i;
            while (n - j >= 8) {
                uint64_t w;
                memcpy(&w, s + j, 8);
                if (w & 0x8080808080808080ull)
                    break;
                j += 8;
            }
            while (j < n && s[j] < 0x80)
                j++;
            memcpy(*out + *outlen, s + i, j - i);
            *outlen += j - i;
            i = j;
            if (i == n)
                break;
            for (stop = i; stop < n && s[stop] >= 0x80; stop++)
                ;
        }
        char *inp = (char *)(s + i), *outp = *out + *outlen;
        size_t inleft = stop - i, outleft = *outcap - *outlen;
        size_t r = iconv(d->cd, &inp, &inleft, &outp, &outleft);
        int e = errno;
        i = (size_t)((const unsigned char *)inp - s);
        *outlen = (size_t)(outp - *out);
        if (r != (size_t)-1 || e == E2BIG)
            continue;
        bool incomplete = e == EINVAL;
        if (incomplete && !last)
            break;
        if (!incomplete && e != EILSEQ)
            return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "could not convert from %s: %s",
                             display_name(d), strerror(e));
        size_t k = incomplete ? n - i : unit;
        if (k > n - i)
            k = n - i;
        if (out_reserve(out, outlen, outcap, sizeof(REPLACEMENT)))
            return SL_ERR_NOMEM;
        int rc = invalid(d, s + i, k, base + i, incomplete, *out, outlen, errbuf, errsz);
        if (rc)
            return rc;
        i += k;
    }
    return (long long)i;
}

static long long conv(struct sl_decoder *d, const unsigned char *s, size_t n, uint64_t base,
                      bool last, char **out, size_t *outlen, size_t *outcap, char *errbuf,
                      size_t errsz)
{
    if (d->enc == SL_ENC_UTF8)
        return conv_utf8(d, s, n, base, last, out, outlen, outcap, errbuf, errsz);
    return conv_iconv(d, s, n, base, last, out, outlen, outcap, errbuf, errsz);
}

/* Whether b[0..n) starts with a BOM: 1 decided (*bomlen 0 when none), 0
 * when more bytes are needed to tell. */
static int bom_check(struct sl_decoder *d, const unsigned char *b, size_t n, bool last,
                     size_t *bomlen)
{
    *bomlen = 0;
    if (n == 0)
        return last;
    if (b[0] == 0xef) {
        if (n < 2 || (b[1] == 0xbb && n < 3))
            return last;
        if (b[1] == 0xbb && b[2] == 0xbf) {
            d->enc = SL_ENC_UTF8;
            *bomlen = 3;
        }
        return 1;
    }
    if (b[0] == 0xff || b[0] == 0xfe) {
        if (n < 2)
            return last;
        if ((b[0] == 0xff && b[1] == 0xfe) || (b[0] == 0xfe && b[1] == 0xff)) {
            d->enc = SL_ENC_UTF16;
            d->big_endian = b[0] == 0xfe;
            *bomlen = 2;
        }
        return 1;
    }
    return 1;
}

int sl_decoder_feed(struct sl_decoder *d, const char *in, size_t inlen, bool last, char **out,
                    size_t *outlen, size_t *outcap, char *errbuf, size_t errsz)
{
    static const unsigned char none[1];
    const unsigned char *s = in ? (const unsigned char *)in : none;
    if (!in)
        inlen = 0;

    if (!d->started) {
        unsigned char head[3];
        size_t nh = d->npend;
        memcpy(head, d->pend, nh);
        for (size_t i = 0; nh < 3 && i < inlen; i++)
            head[nh++] = s[i];
        size_t bomlen;
        if (!bom_check(d, head, nh, last, &bomlen)) {
            /* an undecided BOM prefix: fewer than 3 bytes in all */
            memcpy(d->pend + d->npend, s, inlen);
            d->npend += inlen;
            return 0;
        }
        d->started = true;
        int rc = open_iconv(d, errbuf, errsz);
        if (rc)
            return rc;
        /* drop the BOM from pend first, then from the input */
        size_t from_pend = bomlen < d->npend ? bomlen : d->npend;
        memmove(d->pend, d->pend + from_pend, d->npend - from_pend);
        d->npend -= from_pend;
        d->off += from_pend;
        s += bomlen - from_pend;
        inlen -= bomlen - from_pend;
        d->off += bomlen - from_pend;
    }

    while (d->npend) {
        /* finish the carried-over character with the first new bytes */
        unsigned char tmp[2 * PEND_MAX];
        size_t k = inlen < PEND_MAX ? inlen : PEND_MAX;
        memcpy(tmp, d->pend, d->npend);
        memcpy(tmp + d->npend, s, k);
        long long c = conv(d, tmp, d->npend + k, d->off, last && k == inlen, out, outlen, outcap,
                           errbuf, errsz);
        if (c < 0)
            return (int)c;
        if (c > 0 && (size_t)c < d->npend) {
            /* the first c carried-over bytes were converted (in lenient
             * mode, e.g. a lone surrogate replaced): drop them, retry */
            memmove(d->pend, d->pend + c, d->npend - (size_t)c);
            d->npend -= (size_t)c;
            d->off += (uint64_t)c;
            continue;
        }
        if (c == 0) {
            /* still incomplete: only possible when all input is in tmp */
            if (d->npend + k > PEND_MAX || k < inlen)
                return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "decoder carry-over overflow");
            memcpy(d->pend + d->npend, s, k);
            d->npend += k;
            return 0;
        }
        size_t used = (size_t)c - d->npend;
        d->off += (uint64_t)c;
        d->npend = 0;
        s += used;
        inlen -= used;
    }

    long long c = conv(d, s, inlen, d->off, last, out, outlen, outcap, errbuf, errsz);
    if (c < 0)
        return (int)c;
    d->off += (uint64_t)c;
    size_t rest = inlen - (size_t)c;
    if (rest > PEND_MAX)
        return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "decoder carry-over overflow");
    memcpy(d->pend, s + c, rest);
    d->npend = rest;
    return 0;
}

int sl_encoding_parse(const char *name, enum sl_encoding *enc)
{
    static const struct {
        const char *name;
        enum sl_encoding enc;
    } names[] = {
        {"utf-8", SL_ENC_UTF8},          {"utf8", SL_ENC_UTF8},
        {"us-ascii", SL_ENC_UTF8},       {"ascii", SL_ENC_UTF8},
        {"latin1", SL_ENC_LATIN1},       {"latin-1", SL_ENC_LATIN1},
        {"iso-8859-1", SL_ENC_LATIN1},   {"iso8859-1", SL_ENC_LATIN1},
        {"iso_8859-1", SL_ENC_LATIN1},   {"windows-1252", SL_ENC_WINDOWS_1252},
        {"cp1252", SL_ENC_WINDOWS_1252}, {"utf-16", SL_ENC_UTF16},
        {"utf16", SL_ENC_UTF16},         {"utf-16le", SL_ENC_UTF16},
    };
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *enc = names[i].enc;
            return 0;
        }
    }
    return -1;
}

const char *sl_encoding_name(enum sl_encoding enc)
{
    switch (enc) {
    case SL_ENC_UTF8:
        return "utf-8";
    case SL_ENC_LATIN1:
        return "latin1";
    case SL_ENC_WINDOWS_1252:
        return "windows-1252";
    case SL_ENC_UTF16:
        return "utf-16";
    }
    return NULL;
}
