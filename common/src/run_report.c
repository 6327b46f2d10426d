/*
 * The run report (run_report.h): the error spreadsheet of a finished run
 * and the e-mail that carries it, with the run's summary in plain text and
 * HTML, to the data owner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/mail.h"
#include "sluice/report.h"
#include "sluice/run_report.h"
#include "sluice/sink.h"
#include "sluice/template.h"
#include "sluice/util.h"

bool sl_run_report_due(const struct sl_job *job, const struct sl_run_summary *sum)
{
    if (!job || !job->report.nemail)
        return false;
    bool failed = !strcmp(sum->status, "failed");
    switch (job->report.when) {
    case SL_REPORT_ALWAYS:
        return true;
    case SL_REPORT_FAILURE:
        return failed;
    case SL_REPORT_ERRORS:
    default:
        return failed || sum->counts.rejected > 0;
    }
}

/* "completed with errors" for "completed_with_errors". */
static void status_words(const char *status, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", status);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = ' ';
}

static void put_html(struct sl_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            sl_buf_puts(b, "&lt;");
            break;
        case '>':
            sl_buf_puts(b, "&gt;");
            break;
        case '&':
            sl_buf_puts(b, "&amp;");
            break;
        case '"':
            sl_buf_puts(b, "&quot;");
            break;
        default:
            sl_buf_putc(b, *s);
        }
    }
}

/* The body of the e-mail, as text (html false) or HTML. */
static int write_body(struct sl_buf *b, bool html, const struct sl_run_summary *sum,
                      const struct sl_report_problem *top, size_t ntop, const char *file,
                      const char *report_error)
{
    char status[64], started[32], finished[32];
    status_words(sum->status, status, sizeof(status));
    sl_format_utc(sum->started_at, false, started);
    sl_format_utc(sum->finished_at, false, finished);
    const struct sl_counts *c = &sum->counts;
    char line[512];
    struct {
        const char *label;
        char value[256];
    } rows[8];
    size_t nrows = 0;
#define ROW(l, ...)                                                                                \
    do {                                                                                           \
        rows[nrows].label = (l);                                                                   \
        snprintf(rows[nrows].value, sizeof(rows[nrows].value), __VA_ARGS__);                       \
        nrows++;                                                                                   \
    } while (0)
    ROW("Run", "%s", sum->run_id ? sum->run_id : "");
    ROW("Status", "%s", status);
    ROW("Started", "%s", started);
    ROW("Finished", "%s", finished);
    ROW("Rows read", "%llu", (unsigned long long)c->read);
    ROW("Published", "%llu (%llu created, %llu updated, %llu unchanged)",
        (unsigned long long)c->published, (unsigned long long)c->created,
        (unsigned long long)c->updated, (unsigned long long)c->unchanged);
    ROW("Rejected", "%llu (%llu duplicate keys)", (unsigned long long)c->rejected,
        (unsigned long long)c->duplicates);
    ROW("Not created", "%llu", (unsigned long long)c->not_created);
#undef ROW
    snprintf(line, sizeof(line), "The import \"%s\" %s.", sum->job ? sum->job : "", status);
    if (html) {
        sl_buf_puts(b, "<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n<p>");
        put_html(b, line);
        sl_buf_puts(b, "</p>\n");
        if (sum->reason) {
            sl_buf_puts(b, "<p><b>Why:</b> ");
            put_html(b, sum->reason);
            sl_buf_puts(b, "</p>\n");
        }
        sl_buf_puts(b, "<table cellpadding=\"4\">\n");
        for (size_t i = 0; i < nrows; i++) {
            sl_buf_puts(b, "<tr><th align=\"left\">");
            put_html(b, rows[i].label);
            sl_buf_puts(b, "</th><td>");
            put_html(b, rows[i].value);
            sl_buf_puts(b, "</td></tr>\n");
        }
        sl_buf_puts(b, "</table>\n");
        if (ntop) {
            sl_buf_puts(b,
                        "<p><b>Most frequent problems</b></p>\n<table cellpadding=\"4\">\n"
                        "<tr><th>Rows</th><th>Field</th><th>Problem</th><th>Example</th></tr>\n");
            for (size_t i = 0; i < ntop; i++) {
                sl_buf_printf(b, "<tr><td align=\"right\">%llu</td><td>",
                              (unsigned long long)top[i].count);
                put_html(b, top[i].attribute);
                sl_buf_puts(b, "</td><td>");
                put_html(b, top[i].code);
                sl_buf_puts(b, "</td><td>");
                put_html(b, top[i].message);
                sl_buf_puts(b, "</td></tr>\n");
            }
            sl_buf_puts(b, "</table>\n");
        }
        if (file) {
            sl_buf_puts(b, "<p>The attached spreadsheet lists every rejected row with what is "
                           "wrong; the cells to fix are highlighted. Please correct them at the "
                           "source and send the data again: the next run picks it up.</p>\n");
        } else if (report_error) {
            sl_buf_puts(b, "<p>The list of rejected rows could not be attached: ");
            put_html(b, report_error);
            sl_buf_puts(b, "</p>\n");
        }
        sl_buf_puts(b, "<p style=\"color: #666\">sent by sluice</p>\n</body></html>\n");
    } else {
        sl_buf_printf(b, "%s\n\n", line);
        if (sum->reason)
            sl_buf_printf(b, "Why: %s\n\n", sum->reason);
        for (size_t i = 0; i < nrows; i++)
            sl_buf_printf(b, "%-12s %s\n", rows[i].label, rows[i].value);
        if (ntop) {
            sl_buf_puts(b, "\nMost frequent problems:\n");
            for (size_t i = 0; i < ntop; i++)
                sl_buf_printf(b, "  %6llu x %s (%s): %s\n", (unsigned long long)top[i].count,
                              top[i].attribute, top[i].code, top[i].message);
        }
        if (file)
            sl_buf_puts(b, "\nThe attached spreadsheet lists every rejected row with what is "
                           "wrong;\nthe cells to fix are highlighted. Please correct them at the "
                           "source\nand send the data again: the next run picks it up.\n");
        else if (report_error)
            sl_buf_printf(b, "\nThe list of rejected rows could not be attached: %s\n",
                          report_error);
        sl_buf_puts(b, "\n-- \nsent by sluice\n");
    }
    return sl_buf_putc(b, '\0');
}

void sl_run_report_link(struct sl_report_file *rf, const struct sl_job *job)
{
    for (size_t i = 0; i < job->nattrs; i++) {
        size_t ref;
        if (job->attrs[i].map && sl_template_input_ref(job->attrs[i].map, &ref) && ref < job->nrefs)
            sl_report_file_link(rf, job->attrs[i].name, job->refs[ref].name);
    }
}

json_t *sl_run_report_send(const struct sl_job *job, const struct sl_run_summary *sum,
                           const struct sl_smtp_config *smtp, struct sl_report_rows *rows,
                           const char *dir)
{
    enum sl_report_format fmt = sl_report_format_from_name(job->report.format);
    json_t *out = json_object();
    json_t *to = json_array();
    if (!out || !to) {
        json_decref(out);
        json_decref(to);
        return NULL;
    }
    for (size_t i = 0; i < job->report.nemail; i++)
        json_array_append_new(to, json_string(job->report.email[i]));
    json_object_set_new(out, "recipients", to);
    json_object_set_new(out, "format", json_string(sl_report_format_ext(fmt)));

    /* the spreadsheet, when rows were rejected */
    char err[512] = "", name[64], *path = NULL;
    struct sl_report_problem top[SL_REPORT_TOP];
    size_t ntop = 0;
    snprintf(name, sizeof(name), "report.%s", sl_report_format_ext(fmt));
    if (sum->counts.rejected > 0 && rows) {
        path = sl_path_join(dir, name);
        struct sl_report_meta meta = {
            .job = sum->job,
            .run_id = sum->run_id,
            .status = sum->status,
            .reason = sum->reason,
            .started_at = sum->started_at,
            .finished_at = sum->finished_at,
            .counts = sum->counts,
        };
        struct sl_report_file *rf = path ? sl_report_file_new(path, fmt, &meta, rows->columns,
                                                              rows->ncolumns, err, sizeof(err))
                                         : NULL;
        int rc = rf ? 0 : SL_ERR_IO;
        if (rf)
            sl_run_report_link(rf, job);
        for (json_t *row = NULL; rc == 0;) {
            if ((rc = rows->next(rows->ud, &row, err, sizeof(err))) != 0 || !row)
                break;
            rc = sl_report_file_add(rf, row, err, sizeof(err));
            json_decref(row);
        }
        if (rc == 0) {
            ntop = sl_report_file_top(rf, top, SL_REPORT_TOP);
            /* the strings of top live until close: copy what the body needs */
            for (size_t i = 0; i < ntop; i++) {
                top[i].attribute = top[i].attribute ? strdup(top[i].attribute) : NULL;
                top[i].code = top[i].code ? strdup(top[i].code) : NULL;
                top[i].message = top[i].message ? strdup(top[i].message) : NULL;
            }
            rc = sl_report_file_close(rf, &meta, err, sizeof(err));
            rf = NULL;
        }
        sl_report_file_destroy(rf);
        if (rc) {
            sl_warn("report", "run %s: cannot write the report %s: %s", sum->run_id,
                    path ? path : name, err);
            free(path);
            path = NULL;
        }
    }
    json_object_set_new(out, "file", path ? json_string(name) : json_null());

    if (!sl_smtp_enabled(smtp)) {
        json_object_set_new(out, "status", json_string("not_sent"));
        json_object_set_new(out, "error",
                            json_string("e-mail is not configured (SLUICE_SMTP_URL is not set)"));
    } else {
        char subject[300], status[64];
        status_words(sum->status, status, sizeof(status));
        if (sum->counts.rejected)
            snprintf(subject, sizeof(subject), "[sluice] %s %s: %llu of %llu rows rejected",
                     sum->job ? sum->job : "", status, (unsigned long long)sum->counts.rejected,
                     (unsigned long long)sum->counts.read);
        else
            snprintf(subject, sizeof(subject), "[sluice] %s %s", sum->job ? sum->job : "", status);
        struct sl_buf text = SL_BUF_INIT, html = SL_BUF_INIT;
        const char *report_error = sum->counts.rejected && !path ? err : NULL;
        write_body(&text, false, sum, top, ntop, path, report_error);
        write_body(&html, true, sum, top, ntop, path, report_error);
        char attach[200];
        char day[32];
        sl_format_utc(sum->started_at, false, day);
        day[10] = '\0';
        snprintf(attach, sizeof(attach), "%s-%s-rejected-rows.%s", sum->job ? sum->job : "run", day,
                 sl_report_format_ext(fmt));
        struct sl_mail m = {
            .to = (const char *const *)job->report.email,
            .nto = job->report.nemail,
            .subject = subject,
            .text = text.data,
            .html = html.data,
            .attach_path = path,
            .attach_name = path ? attach : NULL,
            .attach_type =
                fmt == SL_REPORT_CSV
                    ? "text/csv; charset=utf-8"
                    : "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        };
        struct sl_mail_result res;
        char merr[512] = "";
        int rc = text.data && html.data ? sl_mail_send(smtp, &m, &res, merr, sizeof(merr))
                                        : SL_ERR_NOMEM;
        if (rc == SL_ERR_NOMEM && !(text.data && html.data)) {
            memset(&res, 0, sizeof(res));
            snprintf(res.error, sizeof(res.error), "out of memory");
        }
        const char *st = !res.delivered ? "failed" : res.nrefused ? "partly_sent" : "sent";
        json_object_set_new(out, "status", json_string(st));
        json_object_set_new(out, "attempts", json_integer(res.attempts));
        if (res.refused[0])
            json_object_set_new(out, "refused", json_string(res.refused));
        if (!res.delivered)
            json_object_set_new(out, "error", json_string(res.error[0] ? res.error : merr));
        if (res.delivered)
            sl_info("report", "run %s: report sent to %zu of %zu recipients", sum->run_id,
                    res.ndelivered, job->report.nemail);
        else
            sl_warn("report", "run %s: the report could not be sent: %s", sum->run_id,
                    res.error[0] ? res.error : merr);
        sl_buf_cleanup(&text);
        sl_buf_cleanup(&html);
    }
    for (size_t i = 0; i < ntop; i++) {
        free((char *)top[i].attribute);
        free((char *)top[i].code);
        free((char *)top[i].message);
    }
    free(path);
    return out;
}
