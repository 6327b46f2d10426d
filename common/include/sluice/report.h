/*
 * The error report of a run (issue 5): the file e-mailed to the data owner,
 * who is not an engineer, when rows of a run are rejected (docs/reports.md).
 *
 * XLSX (libxlsxwriter, constant-memory mode): sheet "Summary" (the run, its
 * counts, the most frequent problems and how to fix them), shown first, and
 * sheet "Rejected rows": `_row`, `_errors`, then the source columns, with the
 * offending cells highlighted and explained in a cell comment. CSV: the same
 * columns as RFC 4180 UTF-8 text with spreadsheet formulas neutralized. Rows
 * stream to the file as they are added: memory holds one row whatever their
 * number. Every source text is written as a string, never as a formula.
 *
 * One thread at a time per report; any number of reports may be written at
 * once by different threads.
 */
#ifndef SLUICE_REPORT_H
#define SLUICE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sluice/msg.h"

/* Cells of the XLSX that carry a comment: the first ones only. libxlsxwriter
 * keeps every comment in memory until the workbook is closed (about 500
 * bytes each), so more would break the memory bound; later offending cells
 * are still highlighted and `_errors` still lists every problem. */
#define SL_REPORT_MAX_COMMENTS 1000
/* Data rows an XLSX sheet holds (Excel's 1,048,576 rows less the header).
 * Rows beyond are counted (in the summary and in the top problems) but not
 * written. A CSV has no limit. */
#define SL_REPORT_MAX_XLSX_ROWS 1048575u
/* Problems listed in the summary sheet. */
#define SL_REPORT_TOP 10

enum sl_report_format { SL_REPORT_XLSX = 0, SL_REPORT_CSV };

/* The run, for the summary sheet. Every string may be NULL (shown empty) and
 * is borrowed for the duration of the call it is passed to. */
struct sl_report_meta {
    const char *job, *run_id, *status;
    const char *reason;              /* why the run failed or was skipped, or NULL */
    const char *source;              /* the source file name or URL, or NULL */
    int64_t started_at, finished_at; /* unix microseconds; 0: unknown */
    struct sl_counts counts;
};

/* One kind of problem (attribute and code) and how often it occurred. */
struct sl_report_problem {
    const char *attribute, *code;
    const char *message; /* the message of the first problem of this kind */
    uint64_t count;
};

struct sl_report_file;

/* The format that the job's report.format names: "csv" is SL_REPORT_CSV,
 * anything else (NULL, "xlsx") SL_REPORT_XLSX. */
enum sl_report_format sl_report_format_from_name(const char *name);
/* The file name extension of fmt, without the dot ("xlsx", "csv"). */
const char *sl_report_format_ext(enum sl_report_format fmt);

/* Starts a report at path (written to path.tmp, renamed to path by a
 * successful close, so that path is either absent or complete). Temporary
 * files of libxlsxwriter go into path's directory, unlinked at once.
 *
 * columns[0..ncolumns) are the source columns, in the order the owner sent
 * them: the source header, followed by any field that a row of the run has
 * and the header lacks (the caller knows them: the local ledger collects them
 * from rejected.ndjson as errors.csv does, the PostgreSQL one from its rows).
 * With columns NULL they are the keys of the first added row's "source"
 * object, in its order. A source field that is not among the columns is left
 * out of its row and counted in the summary ("values not shown"), and so
 * are the columns past the 16,382 that an XLSX sheet holds besides `_row`
 * and `_errors`. Column names are copied.
 *
 * meta is copied (its strings too) for the summary; close may replace it with
 * the final one. Returns the report, or NULL with errbuf set: path.tmp
 * cannot be created (SL_ERR_IO), out of memory (SL_ERR_NOMEM). */
struct sl_report_file *sl_report_file_new(const char *path, enum sl_report_format fmt,
                                          const struct sl_report_meta *meta,
                                          const char *const *columns, size_t ncolumns, char *errbuf,
                                          size_t errsz);

/* Says that target attribute reads source column (the job's mapping: an
 * attribute copied from a column or computed by a template that reads it).
 * A problem of that attribute highlights the row's cell of that column and
 * explains itself in its comment; an attribute may read several columns and
 * a column feed several attributes. A problem whose attribute reads no column
 * of the report ("_row", a constant) highlights the row's `_errors` cell
 * instead. column is matched like a mapping's column reference (exactly,
 * then case- and space-insensitively); one that matches no column is ignored.
 * Call before the first sl_report_file_add(). Returns 0 or SL_ERR_NOMEM
 * (SL_ERR_INVALID after the first row). */
int sl_report_file_link(struct sl_report_file *rf, const char *attribute, const char *column);

/* Adds one rejected row: one line of rejected.ndjson parsed with jansson,
 * {"row":N,"errors":[{"attribute","code","message","value"}],"source":{..}}
 * (JOBS.md), borrowed for the call. Rows are written in the order they are
 * added (ascending `row` in practice). Returns 0, SL_ERR_INVALID when
 * rejected is not such an object (nothing written), or SL_ERR_IO /
 * SL_ERR_NOMEM with errbuf set, after which every call but close and destroy
 * fails. */
int sl_report_file_add(struct sl_report_file *rf, const json_t *rejected, char *errbuf,
                       size_t errsz);

/* The rows added so far (written or, past SL_REPORT_MAX_XLSX_ROWS, not). */
uint64_t sl_report_file_rows(const struct sl_report_file *rf);

/* The most frequent problems so far, for the e-mail body: fills out[0..n)
 * with up to n kinds (attribute, code), by count descending, then first
 * seen; returns how many. The strings belong to rf and live until it is
 * closed or destroyed: copy what must outlive it. */
size_t sl_report_file_top(const struct sl_report_file *rf, struct sl_report_problem *out, size_t n);

/* Finishes the report: the summary sheet (from meta when not NULL, else the
 * meta given to new: the counts and times of a run are known at its end),
 * then the file is renamed into place. Frees rf, whatever the outcome.
 * Returns 0, or an sl_err with errbuf set (path is then not written). */
int sl_report_file_close(struct sl_report_file *rf, const struct sl_report_meta *meta, char *errbuf,
                         size_t errsz);

/* Abandons the report: frees rf and removes its temporary file; path itself
 * is never touched. Accepts NULL. */
void sl_report_file_destroy(struct sl_report_file *rf);

#endif
