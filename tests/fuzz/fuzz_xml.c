/*
 * libFuzzer harness of the XML reader (xml_reader.c).
 *
 * The first input byte picks the options (the records path, small limits),
 * the rest is the file. Every run must end with 0 (all bytes read) or a
 * negative sl_err that says why; every row must have unique, non-empty,
 * valid UTF-8 names and values in valid UTF-8 without NULs, with lens
 * matching; the row numbers count up. A DTD in the input must never make
 * the reader open a file or the network (the deny-all entity loader).
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
    uint64_t rows;
};

static int on_row(void *ud, const struct sl_row *row)
{
    struct seen *s = ud;
    if (row->row != ++s->rows || row->error)
        abort();
    sl_buf_printf(&s->out, "%llu:", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        const char *nm = row->names[i], *v = row->values[i];
        if (!nm || !*nm || !v || !sl_utf8_valid(nm, strlen(nm)))
            abort();
        if (v[row->lens[i]] != '\0' || strlen(v) != row->lens[i] || !sl_utf8_valid(v, row->lens[i]))
            abort();
        for (size_t j = 0; j < i && row->n < 64; j++)
            if (strcmp(nm, row->names[j]) == 0)
                abort(); /* names are unique */
        sl_buf_puts(&s->out, nm);
        sl_buf_putc(&s->out, '=');
        sl_buf_append(&s->out, v, row->lens[i]);
        sl_buf_putc(&s->out, '\x1f');
    }
    sl_buf_putc(&s->out, '\n');
    return 0;
}

static int read_once(int fd, const struct sl_xml_opts *o, struct seen *s, char *err, size_t errsz,
                     struct sl_reader_stats *st)
{
    memset(s, 0, sizeof(*s));
    sl_buf_init(&s->out);
    sl_buf_puts(&s->out, "");
    int rc = sl_xml_read_fd(fd, o, on_row, s, st, err, errsz);
    if (rc > 0 || (rc < 0 && !err[0]))
        abort(); /* every failure says why */
    if (st->rows != s->rows)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char *const paths[] = {NULL, "/r/s", "/Stores/Store", "/l/s"};
    uint8_t sel = data[0];
    struct sl_xml_opts o = {.records = paths[sel & 3]};
    if (sel & 0x80) {
        o.max_value = 8;
        o.max_depth = 5;
        o.max_fields = 4;
    }
    data++;
    size--;

    int fd = memfd_create("fuzz", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size || lseek(fd, 0, SEEK_SET) != 0)
        abort();
    struct seen s;
    char err[512] = "";
    struct sl_reader_stats st = {0};
    int rc = read_once(fd, &o, &s, err, sizeof(err), &st);
    if (rc == 0 && st.bytes != size)
        abort();
    close(fd);

    sl_buf_cleanup(&s.out);
    return 0;
}
