/*
 * libFuzzer harness of the CSV reader and the decoder.
 *
 * The first input byte picks the options (encoding, delimiter, quote,
 * header, small limits), the rest is the file. Each input is read twice,
 * through the fast line path and through libcsv alone: both must hand over
 * the same rows and end the same way. Every row must hold as many values as
 * the header has names, in valid UTF-8, with lens matching.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/reader.h"
#include "sluice/util.h"

struct seen {
    struct sl_buf out;
    size_t ncols;
    int hdr_calls;
};

static int on_hdr(void *ud, const char *const *names, size_t n)
{
    struct seen *s = ud;
    if (++s->hdr_calls > 1)
        abort();
    s->ncols = n;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !sl_utf8_valid(names[i], strlen(names[i])))
            abort();
        for (size_t j = 0; j < i && n < 64; j++)
            if (strcmp(names[i], names[j]) == 0)
                abort(); /* names are unique */
        sl_buf_puts(&s->out, names[i]);
        sl_buf_putc(&s->out, '\x1f');
    }
    sl_buf_putc(&s->out, '\n');
    return 0;
}

static int on_row(void *ud, const struct sl_row *row)
{
    struct seen *s = ud;
    if (s->hdr_calls != 1 || row->n != s->ncols)
        abort();
    sl_buf_printf(&s->out, "%llu:", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        if (!row->values[i]) {
            if (row->lens[i] || !row->error)
                abort();
            sl_buf_puts(&s->out, "\x1e");
            continue;
        }
        if (row->values[i][row->lens[i]] != '\0')
            abort();
        if (!sl_utf8_valid(row->values[i], row->lens[i]))
            abort();
        if (!row->error && strlen(row->values[i]) != row->lens[i])
            abort();
        sl_buf_append(&s->out, row->values[i], row->lens[i]);
        sl_buf_putc(&s->out, '\x1f');
    }
    if (row->error)
        sl_buf_puts(&s->out, row->error);
    sl_buf_putc(&s->out, '\n');
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char delims[] = {0, ',', ';', '\t', '|', 0, ',', ' '};
    uint8_t sel = data[0];
    struct sl_csv_opts o = {
        .delimiter = delims[sel & 7],
        .quote = (sel & 0x08) ? '\'' : 0,
        .header = !(sel & 0x10),
        .encoding = (enum sl_encoding)((sel >> 5) & 3),
    };
    if (sel & 0x80) {
        o.max_field = 16;
        o.max_columns = 6;
        o.max_row = 48;
    }
    data++;
    size--;

    int fd = memfd_create("fuzz", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size)
        abort();
    struct seen s[2];
    int rc[2];
    char err[2][256];
    for (int k = 0; k < 2; k++) {
        memset(&s[k], 0, sizeof(s[k]));
        sl_buf_init(&s[k].out);
        sl_buf_puts(&s[k].out, "");
        o.no_fast_path = k;
        struct sl_reader_stats st = {0};
        if (lseek(fd, 0, SEEK_SET) != 0)
            abort();
        rc[k] = sl_csv_read_fd(fd, &o, on_hdr, on_row, &s[k], &st, err[k], sizeof(err[k]));
        if (rc[k] > 0 || (rc[k] == 0 && st.bytes != size))
            abort();
        if (rc[k] < 0 && !err[k][0])
            abort(); /* every failure says why */
    }
    close(fd);
    /* both ways must agree; a limit may be noticed in a different place */
    if (rc[0] != rc[1])
        abort();
    if (rc[0] != SL_ERR_LIMIT &&
        (s[0].out.len != s[1].out.len || memcmp(s[0].out.data, s[1].out.data, s[0].out.len)))
        abort();
    if (rc[0] < 0 && rc[0] != SL_ERR_LIMIT && strcmp(err[0], err[1]))
        abort();
    sl_buf_cleanup(&s[0].out);
    sl_buf_cleanup(&s[1].out);

    /* the decoder alone, strict, fed in two pieces */
    struct sl_decoder *d = sl_decoder_new(o.encoding);
    if (!d)
        abort();
    char *out = NULL;
    size_t outlen = 0, outcap = 0, cut = size ? sel % (size + 1) : 0;
    char e[256];
    int r =
        sl_decoder_feed(d, (const char *)data, cut, false, &out, &outlen, &outcap, e, sizeof(e));
    if (!r)
        r = sl_decoder_feed(d, (const char *)data + cut, size - cut, true, &out, &outlen, &outcap,
                            e, sizeof(e));
    if (!r && !sl_utf8_valid(out, outlen))
        abort();
    sl_decoder_destroy(d);
    free(out);
    return 0;
}
