/*
 * Format readers: a source file streamed into rows.
 *
 * Every format (csv_reader.c now; json, xml, xlsx, xls later) turns bytes
 * into rows of named text values and hands each row to a callback, holding
 * no more than one row (and one input block) in memory. A row that cannot be
 * read (ragged, bad encoding) is still handed over, with a reason, so that it
 * becomes a rejected row; a file that cannot be read at all fails the run.
 */
#ifndef SLUICE_READER_H
#define SLUICE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/job.h"

/* One row. names[i] / values[i] for i < n; values[i] NULL: missing (a short
 * row's absent cells). error: NULL, or why the row is bad (it is rejected
 * with code "format" and attribute "_row"). */
struct sl_row {
    uint64_t row; /* 1-based data row (header rows not counted) */
    const char *const *names;
    const char *const *values;
    const size_t *lens; /* value lengths (values are NUL-terminated too) */
    size_t n;
    const char *error;
};

/* Called for every row; a non-zero return stops the reader with that value. */
typedef int (*sl_row_fn)(void *ud, const struct sl_row *row);

struct sl_reader_stats {
    uint64_t bytes; /* input bytes consumed so far */
    uint64_t rows;  /* rows handed over so far */
    /* what the reader used, set once the first block is read: the delimiter
     * (given or detected) and the encoding (given, or the BOM's) */
    char delimiter;
    enum sl_encoding encoding;
};

/* CSV options as the job gives them (struct sl_source). */
struct sl_csv_opts {
    char delimiter; /* 0: detect from , ; \t | in the first block */
    char quote;     /* 0: '"' */
    bool header;    /* false: columns are named "1", "2", ... */
    enum sl_encoding encoding;
    size_t max_field;   /* bytes; 0: 1 MiB */
    size_t max_columns; /* 0: 16384 */
    size_t max_row;     /* bytes of one row's values; 0: 16 MiB (never below max_field) */
    bool no_fast_path;  /* tests: every byte through libcsv (slower, same rows) */
};

/* Reads CSV from fd to the end, calling fn for each data row; call from one
 * thread, fd is read with read(2) and not closed. The text is decoded to
 * UTF-8 first (encoding; a BOM wins and is dropped); delimiter 0 is guessed
 * from the decoded first block. The header row (when header) names the
 * columns: duplicate or empty names are made unique ("Name", "Name_2"; "_3"
 * for the third, empty one); hdr_fn, when not NULL, gets the names once
 * before the first row. Blank lines are skipped.
 *
 * A bad row is still handed over, with row->error: "has 3 fields, the header
 * has 5" (missing values NULL), "has 6 fields, the header has 5 (extra:
 * 'x')" (extra values dropped), "invalid UTF-8 at byte offset N (0xff)"
 * (the bytes become U+FFFD), "a NUL byte in the data", "unterminated quoted
 * field" (a quote still open at the end of the file). A row and its
 * values are borrowed for the callback only; the names stay valid until
 * sl_csv_read_fd returns.
 *
 * Returns 0, the callback's non-zero value (reading stops), or a negative
 * sl_err with errbuf set: SL_ERR_PARSE for a file that is no CSV ("the file
 * is empty (no header row)", "the file looks binary (NUL byte at offset N),
 * not CSV", a header that is not valid in the encoding), SL_ERR_LIMIT
 * ("line N: a field is longer than ..."), SL_ERR_IO, SL_ERR_NOMEM,
 * SL_ERR_INVALID for bad options. stats, when not NULL, is updated as the
 * file is read (plain stores, for a progress display). */
typedef int (*sl_header_fn)(void *ud, const char *const *names, size_t n);

int sl_csv_read_fd(int fd, const struct sl_csv_opts *opts, sl_header_fn hdr_fn, sl_row_fn fn,
                   void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz);

/* Guesses the delimiter of a CSV sample (decoded UTF-8 text): the one of
 * , ; \t | that splits the first 20 lines (outside quotes) into the most
 * consistent, largest field count; ',' when nothing fits. */
char sl_csv_detect_delimiter(const char *buf, size_t len, char quote);

/* Streaming conversion of an encoding to UTF-8 (iconv). */
struct sl_decoder;

/* A decoder from enc. A BOM at the start of the input wins over enc (UTF-8
 * BOM, UTF-16 LE/BE BOMs) and is dropped. NULL when out of memory or enc is
 * no encoding. Free with sl_decoder_destroy (accepts NULL). */
struct sl_decoder *sl_decoder_new(enum sl_encoding enc);
/* Converts in[0..inlen) (any split, even inside a character) and appends
 * UTF-8 to *out (realloc'ed buffer, *outlen and *outcap updated). last: no more
 * input follows. Invalid input: SL_ERR_PARSE with errbuf naming the byte
 * offset. For UTF-8 input the bytes are validated and copied. */
int sl_decoder_feed(struct sl_decoder *d, const char *in, size_t inlen, bool last, char **out,
                    size_t *outlen, size_t *outcap, char *errbuf, size_t errsz);
void sl_decoder_destroy(struct sl_decoder *d);

/* Reports one invalid sequence in lenient mode: offset is its position in
 * the input (bytes from the start, a BOM included), at the position in *out
 * where its U+FFFD replacement begins, byte its first byte. */
typedef void (*sl_decoder_invalid_fn)(void *ud, uint64_t offset, size_t at, unsigned char byte);

/* Switches d to lenient mode: from now on an invalid sequence (or one cut
 * off by the end of the input) does not fail sl_decoder_feed but becomes
 * U+FFFD and is reported to fn (may be NULL). */
void sl_decoder_set_lenient(struct sl_decoder *d, sl_decoder_invalid_fn fn, void *ud);

/* The encoding in use: the configured one until the start of the input has
 * been seen, then the one its BOM names, if any. */
enum sl_encoding sl_decoder_encoding(const struct sl_decoder *d);

/* 0 and *enc, or -1 for an unknown encoding name ("utf-8", "utf8", "latin1",
 * "iso-8859-1", "windows-1252", "cp1252", "utf-16"). */
int sl_encoding_parse(const char *name, enum sl_encoding *enc);
const char *sl_encoding_name(enum sl_encoding enc);

#endif
