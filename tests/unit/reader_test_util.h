/*
 * What the reader tests share (test_xlsx_reader.c, test_xls_reader.c,
 * test_xml_reader.c): a clock, a memfd of given bytes, the peak-RSS check
 * of the streaming tests, and for the spreadsheet readers the rows collected
 * as text and the read-and-check of a file. Static inline, for tests only:
 * a failed check fails the current cmocka test.
 */
#ifndef SLUICE_READER_TEST_UTIL_H
#define SLUICE_READER_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sluice/buf.h"
#include "sluice/reader.h"
#include "sluice/util.h"

/* Under AddressSanitizer freed memory sits in a quarantine of up to 256 MB
 * and the address space is terabytes: peak RSS says nothing about streaming
 * there, and a memory limit cannot be set. */
#if defined(__SANITIZE_ADDRESS__)
#define READER_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define READER_TEST_ASAN 1
#endif
#endif
#ifndef READER_TEST_ASAN
#define READER_TEST_ASAN 0
#endif

/* Seconds on the monotonic clock. */
static inline double rt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A memfd holding data[0..len), positioned at its start; the caller closes it. */
static inline int rt_mem_fd(const void *data, size_t len)
{
    int fd = memfd_create("reader_test", 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Fails unless the peak RSS grew by less than max_kib KiB from ru0 to ru1
 * (getrusage's ru_maxrss is in KiB): what was read was streamed. Not
 * checked under AddressSanitizer. */
static inline void rt_assert_rss_growth(const struct rusage *ru0, const struct rusage *ru1,
                                        long max_kib)
{
    if (!READER_TEST_ASAN)
        assert_true(ru1->ru_maxrss - ru0->ru_maxrss < max_kib);
}

/* A streaming read measured: rt_stream_start just before it, rt_stream_stop
 * just after it, rt_stream_report once its result is checked. */
struct rt_stream {
    struct rusage ru0, ru1;
    double t0, secs;
};

static inline void rt_stream_start(struct rt_stream *m)
{
    getrusage(RUSAGE_SELF, &m->ru0);
    m->t0 = rt_now();
}

static inline void rt_stream_stop(struct rt_stream *m)
{
    m->secs = rt_now() - m->t0;
    getrusage(RUSAGE_SELF, &m->ru1);
}

/* Prints "<what>: <bytes> bytes<note>, <rows> rows in <secs> s, max RSS
 * <before> -> <after> KiB" and fails unless the peak RSS grew by less than
 * 32 MB: the input was streamed. */
static inline void rt_stream_report(const struct rt_stream *m, const char *what, uint64_t bytes,
                                    const char *note, uint64_t rows)
{
    print_message("%s: %llu bytes%s, %llu rows in %.2f s, max RSS %ld -> %ld KiB\n", what,
                  (unsigned long long)bytes, note, (unsigned long long)rows, m->secs,
                  m->ru0.ru_maxrss, m->ru1.ru_maxrss);
    rt_assert_rss_growth(&m->ru0, &m->ru1, 32 * 1024);
}

/* ---- the spreadsheet readers ---- */

/* Rows as text: "H name|name\n" once, then "R1 name=value|name=<null>
 * !error\n"; the row callback returns 7 at row stop_at. */
struct rt_coll {
    struct sl_buf out;
    uint64_t rows, stop_at;
};

static inline int rt_hdr(void *ud, const char *const *names, size_t n)
{
    struct rt_coll *c = ud;
    sl_buf_puts(&c->out, "H ");
    for (size_t i = 0; i < n; i++)
        sl_buf_printf(&c->out, "%s%s", i ? "|" : "", names[i]);
    sl_buf_putc(&c->out, '\n');
    return 0;
}

static inline int rt_row(void *ud, const struct sl_row *row)
{
    struct rt_coll *c = ud;
    assert_int_equal(row->row, ++c->rows);
    sl_buf_printf(&c->out, "R%llu ", (unsigned long long)row->row);
    for (size_t i = 0; i < row->n; i++) {
        if (row->values[i]) {
            assert_int_equal(strlen(row->values[i]), row->lens[i]);
            assert_true(sl_utf8_valid(row->values[i], row->lens[i]));
        } else {
            assert_int_equal(row->lens[i], 0);
        }
        sl_buf_printf(&c->out, "%s%s=%s", i ? "|" : "", row->names[i],
                      row->values[i] ? row->values[i] : "<null>");
    }
    if (row->error)
        sl_buf_printf(&c->out, " !%s", row->error);
    sl_buf_putc(&c->out, '\n');
    return row->row == c->stop_at ? 7 : 0;
}

/* sl_xlsx_read_fd or sl_xls_read_fd. */
typedef int (*rt_sheet_read_fn)(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn,
                                sl_row_fn fn, void *ud, struct sl_reader_stats *stats, char *errbuf,
                                size_t errsz);

/* Reads fd with reader and o, appending the rows to c, and checks what every
 * read must hold: bounded time (10 s), a message with every failure, the
 * rows counted in the stats, and the file's size as the bytes read when it
 * succeeds. err (may be NULL) gets the message. Returns reader's result. */
static inline int rt_sheet_read(rt_sheet_read_fn reader, int fd, const struct sl_sheet_opts *o,
                                struct rt_coll *c, char *err, size_t errsz)
{
    sl_buf_puts(&c->out, "");
    struct sl_reader_stats st = {0};
    char e[1024] = "";
    double t0 = rt_now();
    int rc = reader(fd, o, rt_hdr, rt_row, c, &st, e, sizeof(e));
    assert_true(rt_now() - t0 < 10);
    if (rc < 0)
        assert_true(e[0] != '\0');
    assert_int_equal(st.rows, c->rows);
    if (rc == 0) {
        struct stat sb;
        assert_int_equal(fstat(fd, &sb), 0);
        assert_int_equal(st.bytes, (uint64_t)sb.st_size);
    }
    if (err)
        snprintf(err, errsz, "%s", e);
    return rc;
}

/* rt_sheet_read into *out (the rows as text; the caller frees it). */
static inline int rt_sheet_read_fd(rt_sheet_read_fn reader, int fd, const struct sl_sheet_opts *o,
                                   char **out, char *err, size_t errsz)
{
    struct rt_coll c = {.out = SL_BUF_INIT};
    int rc = rt_sheet_read(reader, fd, o, &c, err, errsz);
    *out = sl_buf_steal(&c.out);
    return rc;
}

/* rt_sheet_read_fd of the file at path. */
static inline int rt_sheet_read_file(rt_sheet_read_fn reader, const char *path,
                                     const struct sl_sheet_opts *o, char **out, char *err,
                                     size_t errsz)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("cannot open %s", path);
    int rc = rt_sheet_read_fd(reader, fd, o, out, err, errsz);
    close(fd);
    return rc;
}

/* Expects the file at path to give exactly rows. */
static inline void rt_sheet_expect(rt_sheet_read_fn reader, const char *path,
                                   const struct sl_sheet_opts *o, const char *rows)
{
    char *out, err[1024];
    int rc = rt_sheet_read_file(reader, path, o, &out, err, sizeof(err));
    if (rc)
        fail_msg("%s: rc %d: %s", path, rc, err);
    if (strcmp(out, rows) != 0)
        fail_msg("%s:\n%s\nexpected:\n%s", path, out, rows);
    free(out);
}

/* Expects the file at path to fail with rc and a message containing msg. */
static inline void rt_sheet_expect_fail(rt_sheet_read_fn reader, const char *path,
                                        const struct sl_sheet_opts *o, int rc, const char *msg)
{
    char *out, err[1024];
    int r = rt_sheet_read_file(reader, path, o, &out, err, sizeof(err));
    free(out);
    if (r != rc || !strstr(err, msg))
        fail_msg("%s: rc %d '%s', expected %d '%s'", path, r, err, rc, msg);
}

/* Reads the file at path (at least min bytes, under 8 KiB) damaged: cut
 * after 0, step, 2 * step, ... bytes, and whole with the byte at 0, flip,
 * 2 * flip, ... changed (^ 0x21). Every read gives rows or fails with a
 * reason, in bounded time (rt_sheet_read); with prefix_rc not 0, a cut file
 * gives rows or fails with exactly prefix_rc. */
static inline void rt_sheet_read_damaged(rt_sheet_read_fn reader, const char *path, size_t min,
                                         size_t step, size_t flip, int prefix_rc)
{
    int src = open(path, O_RDONLY);
    if (src < 0)
        fail_msg("cannot open %s", path);
    char buf[8192], copy[8192], *out, err[512];
    ssize_t r = read(src, buf, sizeof(buf));
    close(src);
    assert_true(r >= (ssize_t)min && r < (ssize_t)sizeof(buf));
    size_t n = (size_t)r;
    for (size_t len = 0; len < n; len += step) {
        int fd = rt_mem_fd(buf, len);
        int rc = rt_sheet_read_fd(reader, fd, NULL, &out, err, sizeof(err));
        assert_true(prefix_rc ? rc == prefix_rc || rc == 0 : rc <= 0);
        free(out);
        close(fd);
    }
    for (size_t at = 0; at < n; at += flip) {
        memcpy(copy, buf, n);
        copy[at] ^= 0x21;
        int fd = rt_mem_fd(copy, n);
        assert_true(rt_sheet_read_fd(reader, fd, NULL, &out, err, sizeof(err)) <= 0);
        free(out);
        close(fd);
    }
}

#endif
