/*
 * The run report (JOBS.md `report`): when a finished run's report is due,
 * its error spreadsheet (report.h) is written and e-mailed (mail.h) to
 * `report.email`, with the summary in the body. A failed delivery is
 * recorded on the run, never fails it. Both ledgers call it once a run is
 * final: the local one reads rejected.ndjson, the control plane's its rows.
 */
#ifndef SLUICE_RUN_REPORT_H
#define SLUICE_RUN_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct sl_job;
struct sl_report_file;
struct sl_run_summary;
struct sl_smtp_config;

/* The rejected rows of a run, in row order, as rejected.ndjson objects. */
struct sl_report_rows {
    /* Sets *row to the next row (a new reference the caller drops), or NULL
     * at the end; 0, or an sl_err with errbuf set. */
    int (*next)(void *ud, json_t **row, char *errbuf, size_t errsz);
    void *ud;
    const char *const *columns; /* the source columns (NULL: from the first row) */
    size_t ncolumns;
};

/* Whether job asks for a report of the run sum describes: it has
 * recipients, and report.when is "always", "errors" (rows were rejected or
 * the run failed) or "failure" (the run failed). */
bool sl_run_report_due(const struct sl_job *job, const struct sl_run_summary *sum);

/* Links each attribute of job whose mapping reads one column to that
 * column (sl_report_file_link), so that the report highlights the cell the
 * owner has to fix. */
void sl_run_report_link(struct sl_report_file *rf, const struct sl_job *job);

/* Writes the report of the run into dir (report.xlsx or report.csv, as
 * report.format says; none for a run without rejected rows) and, when smtp
 * sends mail (may be NULL), e-mails it to the job's recipients. Returns what
 * became of it, for run.json and the run record (NULL only when out of
 * memory): {"recipients":[...],"format":"xlsx","file":"report.xlsx"|null,
 * "status":"sent"|"partly_sent"|"failed"|"not_sent","attempts":N,
 * "refused":"...","error":"..."} ("not_sent": e-mail is not configured;
 * "failed": with error). Blocks while the mail is tried (mail.h retries);
 * any thread. */
json_t *sl_run_report_send(const struct sl_job *job, const struct sl_run_summary *sum,
                           const struct sl_smtp_config *smtp, struct sl_report_rows *rows,
                           const char *dir);

#endif
