/*
 * libFuzzer harness of the JSON and NDJSON reader.
 *
 * The first input byte picks the options (JSON or NDJSON, the records path,
 * the encoding, small limits), the second a small read block size; the rest
 * is the file. Each input is read twice, in 64 KiB blocks and in small ones:
 * both must hand over the same rows and end the same way. Every row must
 * have valid UTF-8 names and values, with lens matching, numbered 1, 2, ...
 * In one mode (bits 0x60 set: UTF-8 JSON, no path, large limits) jansson
 * is the oracle: a document jansson reads must be read, and one it refuses
 * must fail.
 */
#include <jansson.h>
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
    uint64_t rows;
};

static int on_row(void *ud, const struct sl_row *row)
{
    struct seen *s = ud;
    if (row->row != ++s->rows)
        abort();
    sl_buf_printf(&s->out, "%llu:", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        if (!row->names[i] || !sl_utf8_valid(row->names[i], strlen(row->names[i])))
            abort();
        sl_buf_puts(&s->out, row->names[i]);
        sl_buf_putc(&s->out, '=');
        for (size_t j = 0; j < i && row->n < 64; j++)
            if (strcmp(row->names[i], row->names[j]) == 0 && !row->error)
                abort(); /* names are unique */
        if (!row->values[i]) {
            if (row->lens[i])
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
    if (row->error) {
        if (!row->error[0])
            abort();
        sl_buf_puts(&s->out, row->error);
    }
    sl_buf_putc(&s->out, '\n');
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const char *const paths[] = {NULL, "$.data.items", "$.a", "x"};
    uint8_t sel = data[0];
    /* small blocks: 1 to 13 bytes; UTF-16 (configured or by BOM) at least 8,
     * as sl_decoder_feed mishandles invalid surrogates fed in smaller pieces
     * (the reader reads whole blocks, 64 KiB, so it never does that) */
    bool utf16 = ((sel >> 3) & 3) == SL_ENC_UTF16 ||
                 (size >= 4 &&
                  (memcmp(data + 2, "\xff\xfe", 2) == 0 || memcmp(data + 2, "\xfe\xff", 2) == 0));
    size_t small = utf16 ? 8 + data[1] % 9 : 1 + data[1] % 13;
    struct sl_json_opts o = {
        .ndjson = sel & 1,
        .records = paths[(sel >> 1) & 3],
        .encoding = (enum sl_encoding)((sel >> 3) & 3),
    };
    bool oracle = (sel & 0x60) == 0x60; /* a quarter of the inputs */
    if (oracle)
        o = (struct sl_json_opts){.max_depth = 10000};
    else if (sel & 0x80) {
        o.max_value = 40;
        o.max_depth = 3;
        o.max_fields = 5;
    }
    data += 2;
    size -= 2;

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
        o.block_size = k ? small : 0;
        struct sl_reader_stats st = {0};
        if (lseek(fd, 0, SEEK_SET) != 0)
            abort();
        rc[k] = sl_json_read_fd(fd, &o, on_row, &s[k], &st, err[k], sizeof(err[k]));
        if (rc[k] > 0 || (rc[k] == 0 && st.bytes != size) || st.rows != s[k].rows)
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

    if (oracle) {
        json_error_t je;
        json_t *j = json_loadb((const char *)data, size,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
        /* not compared: a BOM (ours to follow and drop, jansson refuses it) */
        bool skip =
            (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) ||
            (size >= 2 && (memcmp(data, "\xff\xfe", 2) == 0 || memcmp(data, "\xfe\xff", 2) == 0));
        /* jansson takes a raw NUL byte for the end of the input */
        if (memchr(data, 0, size))
            skip = true;
        if (j && !skip && (json_is_array(j) || json_is_object(j)) && rc[0] != 0)
            abort();
        if (!j && !skip && rc[0] == 0 && !strstr(je.text, "overflow") && !strstr(je.text, "depth"))
            abort();
        json_decref(j);
    }
    sl_buf_cleanup(&s[0].out);
    sl_buf_cleanup(&s[1].out);
    return 0;
}
