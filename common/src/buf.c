/*
 * Growable byte buffer and JSON / CSV escapes (buf.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"

void sl_buf_init(struct sl_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void sl_buf_cleanup(struct sl_buf *b)
{
    free(b->data);
    sl_buf_init(b);
}

int sl_buf_reserve(struct sl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) {
        if (ncap > SIZE_MAX / 2)
            return SL_ERR_NOMEM;
        ncap *= 2;
    }
    char *p = realloc(b->data, ncap);
    if (!p)
        return SL_ERR_NOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int sl_buf_append(struct sl_buf *b, const void *p, size_t n)
{
    if (sl_buf_reserve(b, n))
        return SL_ERR_NOMEM;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int sl_buf_puts(struct sl_buf *b, const char *s)
{
    return sl_buf_append(b, s, strlen(s));
}

int sl_buf_putc(struct sl_buf *b, char c)
{
    if (b->len + 2 > b->cap && sl_buf_reserve(b, 1))
        return SL_ERR_NOMEM;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
}

int sl_buf_vprintf(struct sl_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0 || sl_buf_reserve(b, (size_t)n))
        return SL_ERR_NOMEM;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sl_buf_printf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sl_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int sl_buf_json_str(struct sl_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (sl_buf_reserve(b, n + 2))
        return SL_ERR_NOMEM;
    b->data[b->len++] = '"';
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* copy the longest run that needs no escape */
        size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i && sl_buf_append(b, p + i, j - i))
            return SL_ERR_NOMEM;
        i = j;
        if (i >= n)
            break;
        unsigned c = p[i];
        char esc[8];
        size_t elen = 2;
        esc[0] = '\\';
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c == '\b') {
            esc[1] = 'b';
        } else if (c == '\f') {
            esc[1] = 'f';
        } else if (c < 0x20 || c == 0x7f) {
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        } else {
            size_t l = utf8_seq(p + i, n - i);
            if (l) {
                if (sl_buf_append(b, p + i, l))
                    return SL_ERR_NOMEM;
                i += l;
            } else {
                if (sl_buf_append(b, "\xef\xbf\xbd", 3))
                    return SL_ERR_NOMEM;
                i++;
            }
            continue;
        }
        if (sl_buf_append(b, esc, elen))
            return SL_ERR_NOMEM;
        i++;
    }
    return sl_buf_putc(b, '"');
}

int sl_buf_csv_field(struct sl_buf *b, const char *s, size_t n, char delim)
{
    bool quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == delim || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote)
        return sl_buf_append(b, s, n);
    if (sl_buf_reserve(b, n + 2) || sl_buf_putc(b, '"'))
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' && sl_buf_putc(b, '"'))
            return SL_ERR_NOMEM;
        if (sl_buf_putc(b, s[i]))
            return SL_ERR_NOMEM;
    }
    return sl_buf_putc(b, '"');
}

int sl_buf_put_utf8(struct sl_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return sl_buf_append(b, u, n);
}

char *sl_buf_steal(struct sl_buf *b)
{
    char *p = b->data;
    if (!p)
        p = calloc(1, 1);
    sl_buf_init(b);
    return p;
}
