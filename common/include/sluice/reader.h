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

struct sl_buf;

/* Names n columns from a header row by the rule every reader with a header
 * follows (CSV, XLSX, XLS), so that one header gives the same names in each:
 * column i is named by its text, data + off[i] (lens[i] bytes); an empty one
 * (lens[i] 0, or off[i] SIZE_MAX: no cell) "_<i+1>"; a name an earlier
 * column already has gets the first free "_2", "_3", ... appended ("Name",
 * "Name_2"; an empty third column "_3"). data NULL: no header, the columns
 * are "1", "2", ... (off and lens not read). The names are appended to
 * namebuf, each NUL-terminated, and names[0..n) (the caller's array) point
 * into it, valid until namebuf changes. Returns 0, or SL_ERR_NOMEM with
 * names not set (the caller says what it was reading). Any thread; it
 * touches only its arguments. */
int sl_reader_name_columns(const char *data, const size_t *off, const size_t *lens, size_t n,
                           struct sl_buf *namebuf, const char **names);

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

/* XML options as the job gives them (source.xml_records). */
struct sl_xml_opts {
    const char *records; /* "/Stores/Store"; NULL: every child element of the root */
    size_t max_value;    /* bytes of one field's value; 0: 16 MiB */
    size_t max_depth;    /* nesting of elements; 0: 256 (libxml2 stops at 256 anyway) */
    size_t max_fields;   /* fields of one record; 0: 16384 */
};

/* Reads XML from fd to the end (libxml2's xmlTextReader, streaming), calling
 * fn for each record; call from one thread, fd is read with read(2) and not
 * closed. The encoding comes from the BOM or the XML declaration (UTF-8,
 * UTF-16, ISO-8859-1, ...); values are handed out in UTF-8.
 *
 * A record is an element whose path of local names is records (namespace
 * prefixes ignored: "/Stores/Store" matches <s:Stores><s:Store>; a prefix in
 * records is ignored too). Its fields, in order of first appearance: its
 * attributes "@id"; the text of child elements "City", of nested ones
 * "Address/City", their attributes "Address/@type"; its own text "#text".
 * A repeated child element is numbered like a repeated CSV header name:
 * "Phone", "Phone_2", "Phone_3" (also in paths: "Phone_2/@type"). Text is
 * kept exactly (CDATA included, entities and character references decoded,
 * pieces of mixed content joined); whitespace-only text between element
 * tags (indentation) is ignored, between text pieces kept; an empty
 * element without attributes (<Fax/>) gives an empty value; namespace
 * declarations are no fields. Every row has row->error NULL and no NULL
 * value. A row and its names and values are borrowed for the callback only.
 *
 * Entities: DTDs and external entities are never loaded (XML_PARSE_NONET, a
 * deny-all loader, no entity substitution by libxml2); a reference to an
 * external entity fails the file ("external entities are not allowed
 * (&xxe;)"); an internal one is expanded only when its text holds no
 * markup and no other reference, otherwise the file fails (so billion
 * laughs fails at once).
 *
 * Returns 0, the callback's non-zero value (reading stops), or a negative
 * sl_err with errbuf set: SL_ERR_PARSE for malformed XML ("malformed XML at
 * line 3, column 7: <libxml2's message>"), for a root element that does not
 * match records ("no element matches /Stores/Store: the root element is
 * <Shops>"), or when nothing matches the parent of the records path either
 * ("no element matches /Stores/Store"; a matching but empty <Stores/> gives
 * 0 rows); SL_ERR_LIMIT ("record 12: the value of 'Note' is longer than N
 * bytes", "... more than N fields", "... elements nested deeper than N";
 * libxml2 itself refuses a text node over 10 MB as malformed); SL_ERR_IO,
 * SL_ERR_NOMEM, SL_ERR_INVALID for a records path that does not start with
 * '/'. stats, when not NULL, is updated as the file is read (bytes, rows;
 * encoding: the document's, when sluice has a name for it, else UTF-8). */
int sl_xml_read_fd(int fd, const struct sl_xml_opts *o, sl_row_fn fn, void *ud,
                   struct sl_reader_stats *stats, char *errbuf, size_t errsz);

/* JSON and NDJSON options as the job gives them (source.json). */
struct sl_json_opts {
    /* the array of records: "$.data.items" (or "data.items"); NULL, "" or
     * "$": the top-level array, or a top-level object as the one record */
    const char *records;
    bool ndjson; /* one record a line; records is not used */
    enum sl_encoding encoding;
    size_t max_value;  /* bytes of one record (NDJSON: one line); 0: 16 MiB */
    size_t max_depth;  /* nesting levels of one record; 0: 64 (at most 10000) */
    size_t max_fields; /* fields of one flattened record; 0: 16384 */
    size_t block_size; /* tests: raw bytes read at a time; 0: 64 KiB */
};

/* Reads JSON or NDJSON from fd to the end, calling fn for each record; call
 * from one thread, fd is read with read(2) and not closed. The text is
 * decoded to UTF-8 first (encoding; a BOM wins and is dropped). The document
 * is never held whole: the array at records is found by a scanner and each
 * element is cut out and parsed alone, so memory is one block and one record.
 *
 * A record object becomes a row: nested objects flattened with "."
 * (address.city), arrays by index (tags.0), names in order of first
 * appearance (a repeated name keeps its place and its last value); values are
 * text: strings decoded, numbers in their exact spelling from the input
 * ("1.50", "1e3"), "true" / "false"; null is a missing value (NULL, len 0);
 * empty objects and arrays give no field. Rows are numbered 1-based in input
 * order (JSON: the record's index in the array; NDJSON: non-blank lines).
 *
 * A bad row is still handed over, with row->error and no values: "record 7
 * is not an object (a number)"; NDJSON: "line 12: not an object (an array)",
 * "line 12: invalid JSON: expected ':' after a name (column 9)", "line 12:
 * invalid UTF-8 at byte offset N (0xff)" (blank lines are skipped). A
 * string holding \u0000 gives its row with its values and the error "record
 * 7: a NUL character (\u0000) in a string". A row and its names and values
 * are borrowed for the callback only.
 *
 * Returns 0, the callback's non-zero value (reading stops), or a negative
 * sl_err with errbuf set: SL_ERR_PARSE for a JSON document that is invalid
 * ("invalid JSON at byte N: ...", N an offset in the decoded UTF-8 text; a
 * file cut off, text after the value), "the file is empty (no JSON value)",
 * "no array at $.data.items" (the path is absent or holds no array), "the
 * top-level JSON value is a number, not an array of records or an object",
 * "invalid UTF-8 at byte offset N (0xff)" (JSON; reported once everything
 * before it has been read); SL_ERR_LIMIT for a record over a limit
 * ("record 7 is larger than N bytes (max_value)", "... nested deeper than 64
 * levels (max_depth)", "... has more than N fields (max_fields)"; NDJSON:
 * "line 12 ..."), SL_ERR_IO, SL_ERR_NOMEM, SL_ERR_INVALID for bad options
 * (a records path with an empty name). stats, when not NULL, is updated as
 * the file is read (bytes, rows, encoding; delimiter stays 0). */
int sl_json_read_fd(int fd, const struct sl_json_opts *opts, sl_row_fn fn, void *ud,
                    struct sl_reader_stats *stats, char *errbuf, size_t errsz);
/* sl_json_read_fd() of data[0..len) in memory (a webhook's body). */
int sl_json_read_mem(const char *data, size_t len, const struct sl_json_opts *opts, sl_row_fn fn,
                     void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz);

/* What a JSON value starting with byte c is, for messages: "an object",
 * "an array", "a string", "a boolean", "null", "a number"; NULL when no
 * JSON value starts so. */
const char *sl_json_kind(char c);

/* Spreadsheet options as the job gives them (source.sheet, source.header_row)
 * and the limits of the XLSX and XLS readers. */
struct sl_sheet_opts {
    const char *sheet; /* the sheet's name; NULL: by sheet_index */
    int sheet_index;   /* 1-based; 0: the first sheet (when sheet is NULL) */
    int header_row;    /* 1-based row of the column names; 0: 1 */
    size_t max_row;    /* bytes of one row's values; 0: 16 MiB */
    /* XLSX only: limits counted while the zip archive inflates */
    size_t max_strings;    /* bytes of the shared strings table; 0: 64 MiB */
    uint64_t max_inflated; /* bytes inflated from the archive in all; 0: 1 GiB */
    size_t max_entries;    /* entries of the archive; 0: 10000 */
    unsigned max_ratio;    /* inflated:compressed bytes of an entry over 1 MiB; 0: 200 */
    /* XLS only: FreeXL runs in a child process */
    unsigned timeout_s; /* seconds it may go without handing over a cell; 0: 60 */
    size_t max_memory;  /* address space it may add; 0: 2 GiB (not under sanitizers) */
};

/* Reads one worksheet of an XLSX workbook from fd (libzip reads it with
 * pread(2): fd is neither closed nor moved), calling hdr_fn (when not NULL)
 * with the column names once and fn for each data row; call from one
 * thread. The sheet XML is streamed through libxml2's xmlTextReader as it
 * inflates, never loaded whole; the shared strings table and the styles are
 * loaded first (max_strings). The XML parser runs as the XML reader's does
 * (no entity substitution, no DTD loading, XML_PARSE_NONET, a deny-all
 * entity loader); comments, processing instructions and CDATA sections are
 * filtered out before it (CDATA kept as text), and a DTD fails the file.
 *
 * The sheet is opts->sheet by name (exact, else ASCII case-insensitive), or
 * the sheet_index-th in workbook order (hidden sheets count), or the first.
 * Rows above header_row are skipped; the header row's cells name the
 * columns as CSV headers do ("Name", "Name_2", an empty one "_3"), up to its
 * last non-empty cell. Each later row that has a non-empty cell is a data
 * row, numbered 1, 2, ... (blank rows are skipped, wherever they are); a
 * cell that is absent or empty in the file is a missing value (NULL). Cell
 * values follow sl_sheet_cell_text: shared and inline strings (rich text
 * runs joined, phonetic runs dropped, _xHHHH_ escapes decoded), booleans
 * "true" / "false", error values as shown ("#N/A"), formulas as their cached
 * result (none: missing), numbers by the cell's number format.
 *
 * A bad row is still handed over, with row->error naming the cell: "cell
 * C7: 'abc' is not a number", "cell B3: shared string 99 does not exist
 * (the table has 12)", "cell F7: 'x' is right of the header's last column
 * E" (the value is dropped). A row and its values are borrowed for the
 * callback only; the names stay valid until the function returns.
 *
 * Returns 0, the callback's non-zero value (reading stops), or a negative
 * sl_err with errbuf set: SL_ERR_PARSE for a file that is no XLSX workbook
 * or is truncated or corrupt ("not an XLSX file: ...", "xl/worksheets/
 * sheet1.xml: malformed XML at line 3, column 7: ...", "... CRC error"), a
 * sheet that does not exist ("no sheet named 'Stors' (the workbook has
 * 'Stores', 'Notes')", "no sheet 3: the workbook has 2 sheets"), a sheet
 * without its header row ("sheet 'Stores' is empty", "sheet 'Stores': the
 * header row 2 is empty"); SL_ERR_LIMIT for a zip bomb ("xl/worksheets/
 * sheet1.xml inflates to more than 200 times its compressed size",
 * "... more than N bytes in all", "the archive has N entries, more than
 * 10000"), shared strings over max_strings, a row over max_row; SL_ERR_IO,
 * SL_ERR_NOMEM, SL_ERR_INVALID for bad options. stats, when not NULL, is
 * updated as the sheet is read (bytes: the part of the file the inflated
 * sheet stands for, the file's size at the end; rows; encoding UTF-8). */
int sl_xlsx_read_fd(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                    void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz);

/* Reads one worksheet of an XLS (BIFF5/BIFF8) workbook from fd with FreeXL,
 * like sl_xlsx_read_fd (same sheet choice, header, naming, blank rows and
 * errors; max_row applies, the XLSX limits do not). FreeXL parses untrusted
 * bytes with known memory-safety bugs and a date conversion whose time
 * grows with the date's serial, so it runs in a child process (fork, no
 * exec) that hands the cells over a pipe: a crash there fails the file, not
 * the caller; the child is killed (by its PID) when it goes timeout_s
 * seconds without handing over a cell, and it may use max_memory bytes.
 * FreeXL opens the file by path, /proc/self/fd/<fd>, so fd needs no name
 * and is not moved. It loads the chosen sheet whole (it refuses one over
 * 256 MB of cells; an XLS sheet has at most 65536 rows).
 *
 * Cell values: text as is, numbers as sl_sheet_number_text, dates and
 * times FreeXL recognised by the cell's format re-computed from their
 * serial by sl_sheet_serial_text (so the 1900 and 1904 date systems and
 * years after 2100 come out right), booleans "1" / "0" (FreeXL reads them
 * as numbers). FreeXL 1.0 does not read formula results: a formula cell is
 * a missing value. Returns as sl_xlsx_read_fd ("not an XLS file: ...",
 * "the XLS file is corrupt: ...", "the XLS file is password-protected",
 * "FreeXL crashed reading the file (signal 11): it is corrupt", "FreeXL
 * took more than 60 s without a cell: a corrupt or crafted file"). */
int sl_xls_read_fd(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                   void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz);

/* The cell rules both spreadsheet readers share (sheet_cell.c). */

/* What a number format shows a number as. */
enum sl_cell_kind {
    SL_CELL_NUMBER = 0, /* a number (General, 0.00, @, currencies, ...) */
    SL_CELL_DATE,       /* a date: y, d or month letters */
    SL_CELL_DATETIME,   /* a date and a time of day */
    SL_CELL_TIME,       /* a time of day: h, s, minutes, AM/PM */
    SL_CELL_DURATION,   /* elapsed time: [h]:mm:ss, [mm]:ss */
};

/* The kind of number format id with format code (NULL: the built-in one):
 * built-in 14-17 dates, 18-21 and 45, 47 times, 22 date and time, 46
 * elapsed time, every other built-in id a number. A code is read from its
 * first section (up to ';'), skipping quoted text, \x escapes, _x and *x,
 * and [colors], [$-409] locales and [>100] conditions ([h], [mm], [ss] are
 * elapsed time); "m" is minutes after "h" or before "s", else the month. */
enum sl_cell_kind sl_sheet_numfmt_kind(unsigned id, const char *code);

/* The shortest decimal that reads back as v exactly (the first of "%.1e"
 * .. "%.17e" that strtod returns as v), written out in plain notation:
 * "1234.5", "0.30000000000000004", "1e21" as "1000000000000000000000",
 * -0 as "0". Returns its length, or 0 for NaN and infinities (nothing
 * written). out needs SL_SHEET_NUM_MAX bytes. */
#define SL_SHEET_NUM_MAX 400
size_t sl_sheet_number_text(double v, char *out);

/* An Excel date serial as ISO text by kind: SL_CELL_DATE "YYYY-MM-DD",
 * SL_CELL_DATETIME "YYYY-MM-DDTHH:MM:SS", SL_CELL_TIME "HH:MM:SS" (the time
 * of day), SL_CELL_DURATION "HH:MM:SS" with hours past 24 ("36:00:00");
 * times get ".mmm" when the serial has milliseconds (rounded to the
 * millisecond). date1904: day 0 is 1904-01-01, else day 1 is 1900-01-01
 * with Excel's fictitious 1900-02-29 as day 60; a date-kind serial below 1
 * in the 1900 system has no day and is given as its time of day. Returns the
 * length, or 0 (nothing written) for SL_CELL_NUMBER, a negative or
 * non-finite serial, or one after 9999-12-31: such a number is given as
 * sl_sheet_number_text. out needs SL_SHEET_DATE_MAX bytes. */
#define SL_SHEET_DATE_MAX 40
size_t sl_sheet_serial_text(double serial, bool date1904, enum sl_cell_kind kind, char *out);

/* The cell text of a number under a number format of kind: the date text
 * when there is one, else the number text. Returns the length; 0 and ""
 * for NaN and infinities. out needs SL_SHEET_NUM_MAX bytes. */
size_t sl_sheet_cell_text(double v, bool date1904, enum sl_cell_kind kind, char *out);

/* The letters of 0-based column col ("A", "Z", "AA", "XFD") into out[8]. */
void sl_sheet_col_name(uint32_t col, char out[8]);

/* At most the first 40 bytes of s[0..n) (whole UTF-8 characters) for a
 * message, with "..." when cut, into out; returns out. */
#define SL_SHEET_EXCERPT_MAX 48
const char *sl_sheet_excerpt(const char *s, size_t n, char out[SL_SHEET_EXCERPT_MAX]);

/* Assembles rows from a sheet's cells for both readers: skips the rows
 * above the header row, names the columns from it, skips blank rows,
 * numbers and hands over the data rows, keeps the first problem of a row as
 * its error. A reader calls sl_sheet_rows_begin for each sheet row in
 * ascending order, sl_sheet_rows_cell for its cells (any column order; a
 * column given twice keeps the last value), sl_sheet_rows_bad for a cell it
 * cannot read, and sl_sheet_rows_finish at the end of the sheet. */
struct sl_sheet_rows;

struct sl_sheet_rows_cfg {
    const char *sheet;   /* the sheet's name, for messages (copied) */
    uint32_t header_row; /* 1-based; 0: 1 */
    size_t max_row;      /* 0: 16 MiB */
    sl_header_fn hdr_fn; /* may be NULL */
    sl_row_fn fn;
    void *ud;
    struct sl_reader_stats *stats; /* rows updated; may be NULL */
    char *errbuf;
    size_t errsz;
};

/* What both spreadsheet readers do first with their arguments (those of
 * sl_xlsx_read_fd; o not NULL): clears errbuf, checks the options, resets
 * stats (encoding UTF-8) and checks that fd is a file with bytes in it.
 * Returns 0 with *size the file's size and *cfg set for sl_sheet_rows_new
 * but for its sheet; or, errbuf set, SL_ERR_INVALID ("no row callback",
 * "header_row and the sheet number must be 1 or more"), SL_ERR_IO ("could
 * not read the file: ...") or SL_ERR_PARSE ("the file is empty"). */
int sl_sheet_read_begin(int fd, const struct sl_sheet_opts *o, sl_header_fn hdr_fn, sl_row_fn fn,
                        void *ud, struct sl_reader_stats *stats, char *errbuf, size_t errsz,
                        struct sl_sheet_rows_cfg *cfg, uint64_t *size);

/* NULL when out of memory. Destroy with sl_sheet_rows_destroy (accepts NULL). */
struct sl_sheet_rows *sl_sheet_rows_new(const struct sl_sheet_rows_cfg *cfg);
void sl_sheet_rows_destroy(struct sl_sheet_rows *sr);
/* Starts sheet row row (1-based), handing over the one before it. Returns 0,
 * the callback's value, or a negative sl_err (errbuf set): SL_ERR_PARSE for
 * a row number not above the last one ("sheet 'S': row 4 comes after row
 * 7") or out of 1..1048576, or a header row that is blank or unreadable. */
int sl_sheet_rows_begin(struct sl_sheet_rows *sr, uint32_t row);
/* Sets the value of column col (0-based, below 16384) of the current row
 * to v[0..n) (copied). 0, SL_ERR_LIMIT (max_row), SL_ERR_PARSE (col out of
 * range) or SL_ERR_NOMEM, errbuf set. */
int sl_sheet_rows_cell(struct sl_sheet_rows *sr, uint32_t col, const char *v, size_t n);
/* Records a problem of cell col of the current row ("cell C7: " and the
 * formatted text); the row keeps its first problem. */
void sl_sheet_rows_bad(struct sl_sheet_rows *sr, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The current sheet row, 0 before the first. */
uint32_t sl_sheet_rows_current(const struct sl_sheet_rows *sr);
/* Hands over the last row and checks that the header was found. Returns
 * as sl_sheet_rows_begin ("sheet 'S' is empty", "sheet 'S': the header row
 * 2 is empty"). */
int sl_sheet_rows_finish(struct sl_sheet_rows *sr);

/* The format of a source file (JOBS.md): declared unless SL_FORMAT_AUTO,
 * else from the file name's extension (name may be NULL), then the content
 * type (may be NULL), then the first bytes of fd (read with pread: the
 * offset is left alone); a spreadsheet's content wins over its name
 * (book.xls that is an XLSX workbook). Never SL_FORMAT_AUTO. */
enum sl_format sl_format_detect(enum sl_format declared, const char *name, const char *content_type,
                                int fd);

/* Reads fd in format fmt with the options of src (the job's source), as
 * the format's reader does: hdr_fn (may be NULL) gets the header of the
 * formats that have one (CSV, XLSX, XLS), fn every row. Returns what the
 * format's reader returns; SL_ERR_INVALID for SL_FORMAT_AUTO. */
int sl_source_read_fd(int fd, enum sl_format fmt, const struct sl_source *src, sl_header_fn hdr_fn,
                      sl_row_fn fn, void *ud, struct sl_reader_stats *stats, char *errbuf,
                      size_t errsz);

#endif
