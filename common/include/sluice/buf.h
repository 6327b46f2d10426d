/*
 * Growable byte buffer and the escapes every writer needs (JSON strings,
 * CSV fields). The buffer is always NUL-terminated after a successful append.
 */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_buf {
    char *data;
    size_t len, cap;
};

#define SL_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void sl_buf_init(struct sl_buf *b);
void sl_buf_cleanup(struct sl_buf *b);
static inline void sl_buf_reset(struct sl_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}
/* Each returns 0 or SL_ERR_NOMEM. */
int sl_buf_reserve(struct sl_buf *b, size_t extra);
int sl_buf_append(struct sl_buf *b, const void *p, size_t n);
int sl_buf_puts(struct sl_buf *b, const char *s);
int sl_buf_putc(struct sl_buf *b, char c);
/* Appends code point cp (at most U+10FFFF, no surrogate) as UTF-8. */
int sl_buf_put_utf8(struct sl_buf *b, uint32_t cp);
int sl_buf_printf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_buf_vprintf(struct sl_buf *b, const char *fmt, va_list ap);
/* A JSON string literal with quotes; invalid UTF-8 bytes become U+FFFD. */
int sl_buf_json_str(struct sl_buf *b, const char *s, size_t n);
/* One CSV field: quoted when it holds delim, a quote, CR or LF, or leading/
 * trailing space; quotes doubled. */
int sl_buf_csv_field(struct sl_buf *b, const char *s, size_t n, char delim);
/* Takes the data out of the buffer (caller frees); the buffer is left empty. */
char *sl_buf_steal(struct sl_buf *b);

#endif
