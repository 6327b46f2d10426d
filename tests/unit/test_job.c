/*
 * Unit tests of the job loader (job.c): the JOBS.md example loads with every
 * field as written, defaults apply, and each bad document is refused with a
 * message that names the field and the problem.
 *
 * Documents are written with ` for " to keep them readable (see J()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/job.h"
#include "sluice/types.h"

#define FIX SLUICE_FIXTURES "/jobs"

/* The document s with every ` turned into " (a static buffer). */
static const char *J(const char *s)
{
    static char buf[8192];
    size_t n = strlen(s);
    assert_true(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++)
        buf[i] = s[i] == '`' ? '"' : s[i];
    return buf;
}

static struct sl_job *load(const char *doc, char *err, size_t errsz)
{
    const char *text = J(doc);
    return sl_job_load_json(text, strlen(text), NULL, err, errsz);
}

static struct sl_job *load_ok(const char *doc)
{
    char err[1024] = "";
    struct sl_job *job = load(doc, err, sizeof(err));
    if (!job)
        fail_msg("expected to load, got: %s\n  %s", err, J(doc));
    return job;
}

/* Whether doc is refused with want in the message; prints why not. */
static bool refused(const char *doc, const char *want)
{
    char err[1024] = "";
    struct sl_job *job = load(doc, err, sizeof(err));
    if (job) {
        sl_job_destroy(job);
        print_error("expected refusal with '%s', but it loaded:\n  %s\n", want, J(doc));
        return false;
    }
    if (!strstr(err, want)) {
        print_error("expected '%s' in the message, got '%s'\n  %s\n", want, err, J(doc));
        return false;
    }
    return true;
}

/* Building blocks of a minimal valid job. */
#define NAME  "`name`:`j`"
#define SRC   "`source`:{`url`:`in.csv`}"
#define ATTR1 "`id`:{`type`:`text`}"
#define TGT   "`target`:{`object`:`o`,`key`:[`id`],`attributes`:{" ATTR1 "}}"
#define MAP   "`mapping`:{`id`:`ID`}"
/* The minimal job plus top-level members x (",`options`:{...}"). */
#define JOB(x) "{" NAME "," SRC "," TGT "," MAP x "}"
/* The minimal job with source s. */
#define WITH_SOURCE(s) "{" NAME ",`source`:" s "," TGT "," MAP "}"
/* The minimal job with more attributes a (mapped or not by m). */
#define WITH_ATTRS(a, m)                                                                           \
    "{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`id`],`attributes`:{" ATTR1 "," a             \
    "}},`mapping`:{`id`:`ID`" m "}}"

static void test_example(void **state)
{
    char err[1024] = "";
    struct sl_job *job = sl_job_load_file(FIX "/jobs_md_example.json", err, sizeof(err));
    if (!job)
        fail_msg("%s", err);
    assert_string_equal(job->name, "store-locations");
    assert_string_equal(job->id, "store-locations");
    assert_int_equal(job->version, 1);
    assert_string_equal(job->description,
                        "Nightly import of store master data from the ERP export");
    assert_string_equal(job->dir, FIX);
    assert_non_null(job->doc);

    const struct sl_source *so = &job->source;
    assert_string_equal(so->url, "https://erp.example.com/export/stores.csv");
    assert_int_equal(so->nheaders, 1);
    assert_string_equal(so->headers[0].name, "Authorization");
    assert_string_equal(so->headers[0].value, "Bearer ${env:ERP_TOKEN}"); /* never expanded */
    assert_int_equal(so->format, SL_FORMAT_CSV);
    assert_int_equal(so->csv_delimiter, ';');
    assert_int_equal(so->csv_quote, '"');
    assert_true(so->csv_header);
    assert_int_equal(so->encoding, SL_ENC_LATIN1);
    assert_null(so->auth_bearer);
    assert_null(so->pagination);

    assert_string_equal(job->object, "locations");
    assert_int_equal(job->nkey, 1);
    assert_string_equal(job->key[0], "store_id");
    assert_int_equal(job->key_idx[0], 0);
    assert_int_equal(job->nattrs, 9);
    static const char *const names[] = {"store_id", "name",  "opened_on", "revenue",  "currency",
                                        "email",    "phone", "status",    "region_id"};
    static const enum sl_type types[] = {SL_TYPE_TEXT,    SL_TYPE_TEXT,     SL_TYPE_DATE,
                                         SL_TYPE_DECIMAL, SL_TYPE_CURRENCY, SL_TYPE_EMAIL,
                                         SL_TYPE_PHONE,   SL_TYPE_ENUM,     SL_TYPE_TEXT};
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(job->attrs[i].name, names[i]);
        assert_int_equal(job->attrs[i].type, types[i]);
        assert_int_equal(sl_job_attr_index(job, names[i]), (int)i);
        assert_non_null(job->attrs[i].map);
        assert_non_null(job->attrs[i].map_src);
    }
    assert_int_equal(sl_job_attr_index(job, "nope"), -1);
    const struct sl_attr *a = &job->attrs[0];
    assert_true(a->required);
    assert_int_equal(a->max_length, 32);
    assert_int_equal(a->min_length, -1);
    assert_null(a->pattern);
    assert_true(job->attrs[1].required);
    assert_false(job->attrs[2].required);
    assert_int_equal(job->attrs[3].scale, 2);
    assert_null(job->attrs[3].min);
    assert_string_equal(job->attrs[6].region, "DE");
    a = &job->attrs[7];
    assert_int_equal(a->nvalues, 2);
    assert_string_equal(a->values[0], "open");
    assert_string_equal(a->values[1], "closed");
    assert_false(a->on_unknown_default);
    assert_null(a->default_value);
    assert_string_equal(job->attrs[8].references, "regions.region_id");
    assert_null(job->attrs[0].references);

    assert_string_equal(job->attrs[0].map_src, "Filiale");
    assert_null(job->attrs[0].map_note);
    assert_string_equal(job->attrs[2].map_src, "{{ Eroeffnung | date('%d.%m.%Y') }}");
    assert_string_equal(job->attrs[2].map_note, "ERP writes German dates");
    assert_true(job->nrefs >= 9);
    bool seen_email = false;
    for (size_t i = 0; i < job->nrefs; i++)
        seen_email |= !strcmp(job->refs[i].name, "E-Mail");
    assert_true(seen_email);

    assert_true(job->options.allow_create);
    assert_int_equal(job->options.sync, SL_SYNC_UPSERT);
    assert_true(job->options.skip_unchanged);
    assert_int_equal(job->options.duplicates, SL_DUPS_REJECT);
    assert_false(job->options.approval);

    const struct sl_schedule *s = &job->schedule;
    assert_int_equal(s->every, SL_EVERY_DAILY);
    assert_int_equal(s->at_hour, 2);
    assert_int_equal(s->at_minute, 30);
    assert_string_equal(s->timezone, "Europe/Berlin");
    assert_true(s->enabled);
    assert_true(s->run_on_save);
    assert_string_equal(job->timezone, "Europe/Berlin");
    assert_non_null(job->tz);

    assert_int_equal(job->report.nemail, 1);
    assert_string_equal(job->report.email[0], "ops@example.com");
    assert_string_equal(job->report.format, "xlsx");
    assert_int_equal(job->report.when, SL_REPORT_ERRORS);

    assert_true(job->destination.given);
    assert_int_equal(job->destination.type, SL_DEST_POSTGRES);
    assert_string_equal(job->destination.table, "locations");
    sl_job_destroy(job);
}

static void test_defaults(void **state)
{
    struct sl_job *job = load_ok(JOB(""));
    assert_string_equal(job->dir, ".");
    assert_null(job->description);
    assert_int_equal(job->source.format, SL_FORMAT_AUTO);
    assert_int_equal(job->source.csv_delimiter, 0);
    assert_int_equal(job->source.csv_quote, '"');
    assert_true(job->source.csv_header);
    assert_int_equal(job->source.encoding, SL_ENC_UTF8);
    assert_int_equal(job->source.header_row, 1);
    assert_int_equal(job->source.sheet_index, 0);
    assert_null(job->source.sheet);
    assert_null(job->source.records);
    assert_true(job->attrs[0].required); /* a key attribute */
    assert_int_equal(job->attrs[0].scale, -1);
    assert_int_equal(job->attrs[0].max_length, -1);
    assert_true(job->options.allow_create);
    assert_int_equal(job->options.sync, SL_SYNC_UPSERT);
    assert_true(job->options.skip_unchanged);
    assert_int_equal(job->options.duplicates, SL_DUPS_REJECT);
    assert_false(job->options.approval);
    assert_int_equal(job->schedule.every, SL_EVERY_NONE);
    assert_true(job->schedule.enabled);
    assert_false(job->schedule.run_on_save);
    assert_string_equal(job->schedule.timezone, "UTC");
    assert_string_equal(job->timezone, "UTC");
    assert_non_null(job->tz);
    assert_int_equal(job->report.nemail, 0);
    assert_string_equal(job->report.format, "xlsx");
    assert_int_equal(job->report.when, SL_REPORT_ERRORS);
    assert_false(job->destination.given);
    assert_int_equal(job->destination.type, SL_DEST_FILE);
    assert_null(job->destination.path);
    assert_int_equal(job->nrefs, 1);
    assert_string_equal(job->refs[0].name, "ID");
    sl_job_destroy(job);

    /* A postgres destination's table defaults to the object name. */
    job = load_ok(JOB(",`destination`:{`type`:`postgres`}"));
    assert_string_equal(job->destination.table, "o");
    sl_job_destroy(job);

    /* append needs no key; key attributes stay optional then. */
    job = load_ok("{" NAME "," SRC ",`target`:{`object`:`o`,`attributes`:{" ATTR1 "}}," MAP
                  ",`options`:{`sync`:`append`}}");
    assert_int_equal(job->nkey, 0);
    assert_int_equal(job->options.sync, SL_SYNC_APPEND);
    assert_false(job->attrs[0].required);
    sl_job_destroy(job);
}

static void test_attr_options(void **state)
{
    struct sl_job *job = load_ok(WITH_ATTRS(
        "`code`:{`type`:`text`,`pattern`:`[A-Z]{2}-[0-9]+`,`min_length`:4,`max_length`:10},"
        "`qty`:{`type`:`integer`,`min`:0,`max`:`1000`,`default`:7},"
        "`price`:{`type`:`decimal`,`scale`:2,`min`:`-0.50`,`max`:1e3},"
        "`tel`:{`type`:`phone`,`region`:`de`},"
        "`st`:{`type`:`enum`,`values`:[`a`,`b`,`other`],`on_unknown`:`default`,`default`:`other`},"
        "`ok`:`boolean`,"
        "`mail`:{`type`:`email`,`description`:`who to ask`}",
        ",`code`:{`value`:`{{ Code | upper }}`,`note`:`upper-case in the ERP`},`qty`:`Qty`"));
    const struct sl_attr *a = &job->attrs[1];
    assert_string_equal(a->pattern, "[A-Z]{2}-[0-9]+");
    assert_int_equal(regexec(&a->re, "DE-123", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&a->re, "xDE-123", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&a->re, "DE-123x", 0, NULL, 0), 0);
    assert_int_equal(a->min_length, 4);
    assert_int_equal(a->max_length, 10);
    assert_string_equal(a->map_note, "upper-case in the ERP");
    a = &job->attrs[2];
    assert_string_equal(a->min, "0");
    assert_string_equal(a->max, "1000");
    assert_string_equal(a->default_value, "7");
    a = &job->attrs[3];
    assert_int_equal(a->scale, 2);
    assert_int_equal(sl_decimal_cmp(a->min, "-0.5"), 0);
    assert_string_equal(a->max, "1000");
    assert_string_equal(job->attrs[4].region, "DE");
    a = &job->attrs[5];
    assert_true(a->on_unknown_default);
    assert_string_equal(a->default_value, "other");
    assert_int_equal(job->attrs[6].type, SL_TYPE_BOOLEAN); /* "ok": "boolean" */
    assert_int_equal(job->attrs[7].max_length, -1);
    assert_null(job->attrs[6].map);
    sl_job_destroy(job);
}

static void test_schedule(void **state)
{
    struct sl_job *job = load_ok(JOB(",`schedule`:{`every`:`15m`}"));
    assert_int_equal(job->schedule.every, SL_EVERY_MINUTES);
    assert_int_equal(job->schedule.minutes, 15);
    assert_int_equal(job->schedule.at_hour, -1);
    sl_job_destroy(job);

    job = load_ok(JOB(",`schedule`:{`every`:`2h`}"));
    assert_int_equal(job->schedule.minutes, 120);
    sl_job_destroy(job);

    job = load_ok(JOB(",`schedule`:{`every`:`hourly`,`at`:`:15`}"));
    assert_int_equal(job->schedule.every, SL_EVERY_HOURLY);
    assert_int_equal(job->schedule.at_hour, -1);
    assert_int_equal(job->schedule.at_minute, 15);
    sl_job_destroy(job);

    job = load_ok(JOB(",`schedule`:{`every`:`workdays`}"));
    assert_int_equal(job->schedule.every, SL_EVERY_WORKDAYS);
    assert_int_equal(job->schedule.at_hour, 0);
    assert_int_equal(job->schedule.at_minute, 0);
    sl_job_destroy(job);

    job = load_ok(JOB(",`schedule`:{`every`:`weekly`,`on`:`fri`,`at`:`7:05`,`enabled`:false}"));
    assert_int_equal(job->schedule.every, SL_EVERY_WEEKLY);
    assert_int_equal(job->schedule.weekday, 5);
    assert_int_equal(job->schedule.at_hour, 7);
    assert_int_equal(job->schedule.at_minute, 5);
    assert_false(job->schedule.enabled);
    sl_job_destroy(job);

    job = load_ok(JOB(",`schedule`:{`every`:`monthly`,`on`:31,`at`:`23:59`}"));
    assert_int_equal(job->schedule.every, SL_EVERY_MONTHLY);
    assert_int_equal(job->schedule.monthday, 31);
    sl_job_destroy(job);

    static const char *const crons[] = {
        "* * * * *",       "*/5 * * * *",          "0 2 * * mon-fri", "30 4 1,15 * *",
        "0 0 1 jan,JUL *", "0-30/10 8-18 * * 1-5", "5 0 * 8 sun",     "0 12 31 12 7",
    };
    for (size_t i = 0; i < sizeof(crons) / sizeof(crons[0]); i++) {
        char doc[512];
        snprintf(doc, sizeof(doc), JOB(",`schedule`:{`every`:`cron`,`cron`:`%s`}"), crons[i]);
        job = load_ok(doc);
        assert_int_equal(job->schedule.every, SL_EVERY_CRON);
        assert_string_equal(job->schedule.cron, crons[i]);
        sl_job_destroy(job);
    }

    /* The top-level timezone (an extension) is the job's, and the schedule's
     * unless it has its own. */
    job = load_ok(JOB(",`timezone`:`America/New_York`,`schedule`:{`every`:`daily`}"));
    assert_string_equal(job->timezone, "America/New_York");
    assert_string_equal(job->schedule.timezone, "America/New_York");
    sl_job_destroy(job);
    job = load_ok(
        JOB(",`timezone`:`Asia/Tokyo`,`schedule`:{`every`:`daily`,`timezone`:`Europe/Paris`}"));
    assert_string_equal(job->timezone, "Asia/Tokyo");
    assert_string_equal(job->schedule.timezone, "Europe/Paris");
    sl_job_destroy(job);
}

static void test_source(void **state)
{
    struct sl_job *job = load_ok(WITH_SOURCE(
        "{`url`:`sftp://files.example.com/in/${env:DAY}.csv`,`format`:`csv`,"
        "`csv`:{`delimiter`:`\\t`,`quote`:`'`,`header`:false,`encoding`:`windows-1252`},"
        "`auth`:{`basic`:{`user`:`me`,`password`:`${env:PW}`}},`headers`:{`X-A`:`1`}}"));
    const struct sl_source *so = &job->source;
    assert_int_equal(so->csv_delimiter, '\t');
    assert_int_equal(so->csv_quote, '\'');
    assert_false(so->csv_header);
    assert_int_equal(so->encoding, SL_ENC_WINDOWS_1252);
    assert_string_equal(so->auth_user, "me");
    assert_string_equal(so->auth_password, "${env:PW}");
    assert_string_equal(so->url, "sftp://files.example.com/in/${env:DAY}.csv");
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`x.csv`,`csv`:{`delimiter`:`tab`}}"));
    assert_int_equal(job->source.csv_delimiter, '\t');
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`https://api.example.com/v1/stores`,`format`:`json`,"
                              "`json`:{`records`:`$.data.items`},`auth`:{`bearer`:`${env:T}`},"
                              "`pagination`:{`type`:`cursor`,`cursor_path`:`$.next`}}"));
    assert_int_equal(job->source.format, SL_FORMAT_JSON);
    assert_string_equal(job->source.records, "$.data.items");
    assert_string_equal(job->source.json_records, "$.data.items");
    assert_string_equal(job->source.auth_bearer, "${env:T}");
    assert_non_null(job->source.pagination);
    assert_string_equal(json_string_value(json_object_get(job->source.pagination, "cursor_path")),
                        "$.next");
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`stores.xml`,`xml`:{`records`:`/Stores/Store`}}"));
    assert_string_equal(job->source.records, "/Stores/Store");
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`book.xlsx`,`format`:`xlsx`,`xlsx`:{`sheet`:2,"
                              "`header_row`:3}}"));
    assert_int_equal(job->source.format, SL_FORMAT_XLSX);
    assert_int_equal(job->source.sheet_index, 2);
    assert_null(job->source.sheet);
    assert_int_equal(job->source.header_row, 3);
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`book.xls`,`xls`:{`sheet`:`Stores`}}"));
    assert_string_equal(job->source.sheet, "Stores");
    assert_int_equal(job->source.sheet_index, 0);
    sl_job_destroy(job);

    job = load_ok(WITH_SOURCE("{`url`:`imaps://mail.example.com/INBOX`,"
                              "`attachment`:`stores-*.csv`}"));
    assert_string_equal(job->source.attachment, "stores-*.csv");
    sl_job_destroy(job);

    assert_string_equal(sl_format_name(SL_FORMAT_NDJSON), "ndjson");
    assert_string_equal(sl_format_name(SL_FORMAT_AUTO), "auto");
    assert_null(sl_format_name((enum sl_format)99));
}

static void test_lookups(void **state)
{
    struct sl_job *job =
        load_ok("{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`id`],`attributes`:{" ATTR1
                ",`country`:`text`}},`mapping`:{`id`:`ID`,`country`:`{{ Land | "
                "lookup('countries') }}`},`lookups`:{`countries`:{`Deutschland`:`DE`}}}");
    const struct sl_lookup *lk = sl_job_lookup(job, "countries");
    assert_non_null(lk);
    assert_string_equal(json_string_value(json_object_get(lk->map, "Deutschland")), "DE");
    assert_null(sl_job_lookup(job, "nope"));
    sl_job_destroy(job);

    job = load_ok(JOB(",`destination`:{`type`:`http`,`url`:`https://h.example.com/in`,"
                      "`headers`:{`Authorization`:`Bearer ${env:TOK}`}}"));
    assert_int_equal(job->destination.type, SL_DEST_HTTP);
    assert_string_equal(job->destination.url, "https://h.example.com/in");
    assert_int_equal(job->destination.nheaders, 1);
    sl_job_destroy(job);

    job = load_ok(JOB(",`destination`:{`type`:`file`,`path`:`out/o.ndjson`},"
                      "`report`:{`email`:[`a@b.example`,`c.d@e.example`],`format`:`csv`,"
                      "`when`:`failure`}"));
    assert_int_equal(job->destination.type, SL_DEST_FILE);
    assert_string_equal(job->destination.path, "out/o.ndjson");
    assert_int_equal(job->report.nemail, 2);
    assert_string_equal(job->report.format, "csv");
    assert_int_equal(job->report.when, SL_REPORT_FAILURE);
    sl_job_destroy(job);
}

/* Each bad document and a piece of the message it must get. */
static const struct {
    const char *doc;
    const char *want;
} BAD[] = {
    /* JSON itself */
    {"{`name`:`j`,\n `source`: {`url`: }}", "line 2, column 20: unexpected token"},
    {"{`name`:`j`,`name`:`k`}", "duplicate object key"},
    {JOB("") " trailing", "end of file expected"},
    {"[1,2]", "the job must be a JSON object (is an array)"},
    {"", "the job file is empty"},
    {" \n\t ", "the job file is empty"},
    /* unknown fields, with suggestions */
    {"{" NAME ",`sorce`:{`url`:`a`}," TGT "," MAP "}",
     "unknown field 'sorce' (did you mean 'source'?)"},
    {WITH_SOURCE("{`url`:`a`,`delimter`:`;`}"), "source: unknown field 'delimter'"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`delimter`:`;`}}"),
     "source.csv: unknown field 'delimter' (did you mean 'delimiter'?)"},
    {JOB(",`options`:{`allow_creat`:true}"),
     "options: unknown field 'allow_creat' (did you mean 'allow_create'?)"},
    {WITH_ATTRS("`x`:{`type`:`text`,`requird`:true}", ""),
     "target.attributes.x: unknown field 'requird' (did you mean 'required'?)"},
    {JOB(",`schedule`:{`every`:`daily`,`timzone`:`UTC`}"),
     "schedule: unknown field 'timzone' (did you mean 'timezone'?)"},
    {JOB(",`bogus`:1"), "unknown field 'bogus' (expected one of name, description"},
    /* required fields */
    {"{" SRC "," TGT "," MAP "}", "name: required"},
    {"{" NAME "," TGT "," MAP "}", "source: required"},
    {WITH_SOURCE("{`format`:`csv`}"), "source.url: required"},
    {"{" NAME "," SRC "," MAP "}", "target: required"},
    {"{" NAME "," SRC ",`target`:{`key`:[`id`],`attributes`:{" ATTR1 "}}," MAP "}",
     "target.object: required"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`id`]}," MAP "}",
     "target.attributes: required"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[],`attributes`:{}}," MAP "}",
     "target.attributes: must not be empty"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`attributes`:{" ATTR1 "}}," MAP "}",
     "target.key: required"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[],`attributes`:{" ATTR1 "}}," MAP "}",
     "target.key: must not be empty unless options.sync is 'append'"},
    {"{" NAME "," SRC "," TGT "}", "mapping: required"},
    {WITH_ATTRS("`x`:{}", ""), "target.attributes.x.type: required"},
    /* name */
    {"{`name`:`a b`," SRC "," TGT "," MAP "}", "name: 'a b' has a character other than"},
    {"{`name`:`..`," SRC "," TGT "," MAP "}", "name: must not start with '.'"},
    {"{`name`:``," SRC "," TGT "," MAP "}", "name: must not be empty"},
    {"{`name`:7," SRC "," TGT "," MAP "}", "name: must be a string (is a number)"},
    /* types and their options */
    {WITH_ATTRS("`revenue`:{`type`:`decimall`}", ""),
     "target.attributes.revenue.type: unknown type 'decimall' (expected one of text, integer, "
     "decimal"},
    {WITH_ATTRS("`revenue`:{`type`:`decimall`}", ""), "did you mean 'decimal'?"},
    {WITH_ATTRS("`n`:{`type`:`integer`,`max_length`:3}", ""),
     "target.attributes.n.max_length: not used with type 'integer' (only with text)"},
    {WITH_ATTRS("`n`:{`type`:`text`,`scale`:2}", ""),
     "target.attributes.n.scale: not used with type 'text' (only with decimal)"},
    {WITH_ATTRS("`n`:{`type`:`decimal`,`scale`:39}", ""),
     "target.attributes.n.scale: must be an integer from 0 to 38"},
    {WITH_ATTRS("`n`:{`type`:`decimal`,`scale`:`2`}", ""),
     "target.attributes.n.scale: must be an integer from 0 to 38"},
    {WITH_ATTRS("`n`:{`type`:`text`,`max_length`:0}", ""),
     "target.attributes.n.max_length: must be an integer of at least 1"},
    {WITH_ATTRS("`n`:{`type`:`text`,`min_length`:5,`max_length`:3}", ""),
     "target.attributes.n.min_length: must not be greater than max_length (5 > 3)"},
    {WITH_ATTRS("`n`:{`type`:`text`,`pattern`:`(ab`}", ""),
     "target.attributes.n.pattern: invalid regular expression: "},
    {WITH_ATTRS("`n`:{`type`:`integer`,`min`:`abc`}", ""),
     "target.attributes.n.min: 'abc' is not a number"},
    {WITH_ATTRS("`n`:{`type`:`integer`,`min`:1.5}", ""),
     "target.attributes.n.min: must be an integer for type 'integer'"},
    {WITH_ATTRS("`n`:{`type`:`integer`,`min`:10,`max`:5}", ""),
     "target.attributes.n.min: must not be greater than max (10 > 5)"},
    {WITH_ATTRS("`n`:{`type`:`integer`,`max`:true}", ""),
     "target.attributes.n.max: must be a number (is a boolean)"},
    {WITH_ATTRS("`p`:{`type`:`phone`,`region`:`XX`}", ""),
     "target.attributes.p.region: unknown region 'XX'"},
    {WITH_ATTRS("`p`:{`type`:`phone`,`region`:`DEU`}", ""),
     "target.attributes.p.region: unknown region 'DEU'"},
    {WITH_ATTRS("`s`:{`type`:`enum`}", ""), "target.attributes.s.values: required for type 'enum'"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[]}", ""),
     "target.attributes.s.values: must be a non-empty array of strings"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[`a`,1]}", ""),
     "target.attributes.s.values[1]: must be a string (is a number)"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[`a`,`a`]}", ""),
     "target.attributes.s.values[1]: 'a' is listed twice"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[`a`],`on_unknown`:`ignore`}", ""),
     "target.attributes.s.on_unknown: unknown value 'ignore' (expected one of error, default)"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[`a`],`on_unknown`:`default`}", ""),
     "target.attributes.s.default: required when on_unknown is 'default'"},
    {WITH_ATTRS("`s`:{`type`:`enum`,`values`:[`a`],`default`:`b`}", ""),
     "target.attributes.s.default: 'b' is not one of values"},
    {WITH_ATTRS("`n`:{`type`:`integer`,`default`:`x1`}", ""),
     "target.attributes.n.default: 'x1' is not "},
    {WITH_ATTRS("`d`:{`type`:`date`,`default`:``}", ""),
     "target.attributes.d.default: must not be empty"},
    {WITH_ATTRS("`d`:{`type`:`date`,`default`:[1]}", ""),
     "target.attributes.d.default: must be a string, number or boolean (is an array)"},
    {WITH_ATTRS("`r`:{`type`:`text`,`references`:`regions`}", ""),
     "target.attributes.r.references: 'regions' is not 'object.attribute'"},
    {WITH_ATTRS("`r`:{`type`:`text`,`references`:`o.nope`}", ""),
     "target.attributes.r.references: 'nope' is not an attribute of o"},
    {WITH_ATTRS("`r`:{`type`:`text`,`required`:`yes`}", ""),
     "target.attributes.r.required: must be true or false (is a string)"},
    {WITH_ATTRS("`bad name`:`text`", ""),
     "target.attributes.bad name: 'bad name' is not a valid attribute name"},
    {WITH_ATTRS("`r`:5", ""), "target.attributes.r: must be an object like"},
    {"{" NAME "," SRC ",`target`:{`object`:`my objects`,`key`:[`id`],`attributes`:{" ATTR1 "}}," MAP
     "}",
     "target.object: 'my objects' is not a valid object name"},
    /* key */
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`store`],`attributes`:{`store_id`:`text`}},"
     "`mapping`:{`store_id`:`S`}}",
     "target.key[0]: 'store' is not an attribute"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`stor_id`],`attributes`:{`store_id`:`text`"
     "}},`mapping`:{`store_id`:`S`}}",
     "did you mean 'store_id'?"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[`id`,`id`],`attributes`:{" ATTR1 "}}," MAP
     "}",
     "target.key[1]: 'id' is listed twice"},
    {"{" NAME "," SRC ",`target`:{`object`:`o`,`key`:[3],`attributes`:{" ATTR1 "}}," MAP "}",
     "target.key[0]: must be a string (is a number)"},
    /* mapping */
    {WITH_ATTRS("`name`:`text`", ",`foo`:`X`"),
     "mapping.foo: no such attribute in target.attributes"},
    {WITH_ATTRS("`name`:`text`", ",`nme`:`X`"),
     "mapping.nme: no such attribute in target.attributes (did you mean 'name'?)"},
    {WITH_ATTRS("`name`:`text`", ",`name`:`{{ Name | trim `"),
     "mapping.name: unclosed '{{' at offset 0"},
    {WITH_ATTRS("`name`:`text`", ",`name`:{`value`:`ab{{ x`}"),
     "mapping.name.value: unclosed '{{' at offset 2"},
    {WITH_ATTRS("`name`:`text`", ",`name`:{`note`:`n`}"), "mapping.name.value: required"},
    {WITH_ATTRS("`name`:`text`", ",`name`:{`value`:`x`,`nte`:`n`}"),
     "mapping.name: unknown field 'nte' (did you mean 'note'?)"},
    {WITH_ATTRS("`name`:`text`", ",`name`:``"), "mapping.name: must not be empty"},
    {WITH_ATTRS("`name`:`text`", ",`name`:5"), "mapping.name: must be a string or"},
    {WITH_ATTRS("`name`:{`type`:`text`,`required`:true}", ""),
     "mapping: no entry for required attribute 'name'"},
    {WITH_ATTRS("`c`:`text`", ",`c`:`{{ L | lookup('countries') }}`"), "mapping.c: "},
    {JOB(",`lookups`:{`t`:{`a`:1}}"), "lookups.t.a: must be a string (is a number)"},
    {JOB(",`lookups`:{`t`:[]}"), "lookups.t: must be an object"},
    /* source */
    {WITH_SOURCE("{`url`:`gopher://x/y`}"), "source.url: unknown scheme 'gopher'"},
    {WITH_SOURCE("{`url`:`https:///x`}"), "source.url: 'https:///x' has no host"},
    {WITH_SOURCE("{`url`:`https://x/${env:TOKEN`}"), "source.url: unclosed '${env:' at offset"},
    {WITH_SOURCE("{`url`:`a`,`headers`:{`X`:`${env:1A}`}}"),
     "source.headers.X: invalid environment variable name '1A'"},
    {WITH_SOURCE("{`url`:`a`,`headers`:{`X`:5}}"), "source.headers.X: must be a string"},
    {WITH_SOURCE("{`url`:`a`,`headers`:{`Bad Name`:`v`}}"),
     "source.headers.Bad Name: 'Bad Name' is not a valid header name"},
    {WITH_SOURCE("{`url`:`a`,`headers`:{`X`:`a\\r\\nY: b`}}"),
     "source.headers.X: must not contain a line break"},
    {WITH_SOURCE("{`url`:`a`,`format`:`cvs`}"),
     "source.format: unknown format 'cvs' (expected one of auto, csv, json, ndjson, xml, xlsx, "
     "xls; did you mean 'csv'?)"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`delimiter`:`;;`}}"),
     "source.csv.delimiter: must be one character"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`delimiter`:``}}"),
     "source.csv.delimiter: must be one character"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`delimiter`:`\\``}}"),
     "source.csv.delimiter: must differ from the quote character"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`encoding`:`latin2`}}"),
     "source.csv.encoding: unknown encoding 'latin2'"},
    {WITH_SOURCE("{`url`:`a`,`csv`:{`header`:`yes`}}"),
     "source.csv.header: must be true or false (is a string)"},
    {WITH_SOURCE("{`url`:`a`,`format`:`json`,`csv`:{`header`:true}}"),
     "source.csv: not used with source.format 'json'"},
    {WITH_SOURCE("{`url`:`a`,`json`:{`records`:`data.items`}}"),
     "source.json.records: 'data.items' is not a path like $.data.items"},
    {WITH_SOURCE("{`url`:`a`,`xml`:{`records`:`Stores/Store`}}"),
     "source.xml.records: 'Stores/Store' is not an element path"},
    {WITH_SOURCE("{`url`:`a`,`xlsx`:{`sheet`:0}}"),
     "source.xlsx.sheet: must be a sheet name or a 1-based sheet number"},
    {WITH_SOURCE("{`url`:`a`,`xlsx`:{`header_row`:0}}"),
     "source.xlsx.header_row: must be an integer from 1 to"},
    {WITH_SOURCE("{`url`:`a`,`xlsx`:{},`xls`:{}}"), "source.xls: give either"},
    {WITH_SOURCE("{`url`:`a`,`auth`:{`basic`:{`user`:`u`,`password`:`p`},`bearer`:`t`}}"),
     "source.auth: give either basic or bearer, not both"},
    {WITH_SOURCE("{`url`:`a`,`auth`:{`basic`:{`user`:`u`}}}"),
     "source.auth.basic.password: required"},
    {WITH_SOURCE("{`url`:`a`,`auth`:{`digest`:{}}}"),
     "source.auth: unknown field 'digest' (expected one of basic, bearer)"},
    {WITH_SOURCE("{`url`:`a`,`auth`:{`bearer`:`t`},`headers`:{`authorization`:`x`}}"),
     "source.auth: conflicts with source.headers.authorization"},
    {WITH_SOURCE("{`url`:`a`,`pagination`:{`type`:`pages`}}"),
     "source.pagination.type: unknown pagination type 'pages'"},
    {WITH_SOURCE("{`url`:`a`,`pagination`:{`next`:1}}"), "source.pagination.type: required"},
    {WITH_SOURCE("{`url`:`https://h/x`,`attachment`:`*.csv`}"),
     "source.attachment: only used with imap:// and imaps:// sources"},
    {WITH_SOURCE("`in.csv`"), "source: must be an object (is a string)"},
    /* options */
    {JOB(",`options`:{`sync`:`mirorr`}"),
     "options.sync: unknown sync mode 'mirorr' (expected one of upsert, append, mirror; did you "
     "mean 'mirror'?)"},
    {JOB(",`options`:{`duplicates`:`first`}"), "options.duplicates: unknown value 'first'"},
    {JOB(",`options`:{`approval`:1}"), "options.approval: must be true or false (is a number)"},
    /* schedule */
    {JOB(",`schedule`:{`every`:`dayly`}"),
     "schedule.every: unknown cadence 'dayly' (expected minutes like \"15m\", hourly, daily"},
    {JOB(",`schedule`:{`every`:`dayly`}"), "did you mean 'daily'?"},
    {JOB(",`schedule`:{`every`:`0m`}"), "schedule.every: must be at least 1 minute"},
    {JOB(",`schedule`:{`every`:`15s`}"), "schedule.every: unknown cadence '15s'"},
    {JOB(",`schedule`:{`at`:`02:00`}"), "schedule.every: required"},
    {JOB(",`schedule`:{`every`:`daily`,`at`:`24:00`}"), "schedule.at: '24:00' is not 'HH:MM'"},
    {JOB(",`schedule`:{`every`:`daily`,`at`:`2:5`}"), "schedule.at: '2:5' is not 'HH:MM'"},
    {JOB(",`schedule`:{`every`:`hourly`,`at`:`02:15`}"), "schedule.at: '02:15' is not ':MM'"},
    {JOB(",`schedule`:{`every`:`15m`,`at`:`02:15`}"), "schedule.at: not used with every '15m'"},
    {JOB(",`schedule`:{`every`:`weekly`}"), "schedule.on: required for every 'weekly'"},
    {JOB(",`schedule`:{`every`:`weekly`,`on`:`fry`}"),
     "schedule.on: unknown weekday 'fry' (expected one of sun, mon"},
    {JOB(",`schedule`:{`every`:`monthly`,`on`:32}"),
     "schedule.on: must be an integer from 1 to 31"},
    {JOB(",`schedule`:{`every`:`daily`,`on`:`mon`}"), "schedule.on: not used with every 'daily'"},
    {JOB(",`schedule`:{`every`:`cron`}"), "schedule.cron: required for every 'cron'"},
    {JOB(",`webhook`:{`secret`:`whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`}"),
     "webhook.secret: must be \"${env:NAME}\""},
    {JOB(",`webhook`:{`secret`:`${env:A}`,`key`:`x`}"),
     "webhook: unknown field 'key' (expected one of secret)"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`0 0 31 2 *`}"),
     "schedule.cron: never matches: none of its days of the month occurs in its months"},
    {JOB(",`schedule`:{`every`:`daily`,`cron`:`* * * * *`}"),
     "schedule.cron: only used with every 'cron'"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`* * * *`}"),
     "schedule.cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`60 * * * *`}"),
     "schedule.cron: minute: 60 is out of range 0-59"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`0 24 * * *`}"),
     "schedule.cron: hour: 24 is out of range 0-23"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`0 0 0 * *`}"),
     "schedule.cron: day of month: 0 is out of range 1-31"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`0 0 * foo *`}"),
     "schedule.cron: month: 'foo' is not a number or name"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`0 0 * * 8`}"),
     "schedule.cron: day of week: 8 is out of range 0-7"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`*/0 * * * *`}"),
     "schedule.cron: minute: step 0 is out of range"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`5-1 * * * *`}"),
     "schedule.cron: minute: range 5-1 goes backwards"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`@daily`}"), "schedule.cron: macros like '@daily'"},
    {JOB(",`schedule`:{`every`:`cron`,`cron`:`1,,2 * * * *`}"), "schedule.cron: minute: "},
    {JOB(",`schedule`:{`every`:`daily`,`timezone`:`Europe/Berlinn`}"), "schedule.timezone: "},
    {JOB(",`schedule`:{`every`:`daily`,`timezone`:`../etc/passwd`}"), "schedule.timezone: "},
    {JOB(",`timezone`:`Mars/Olympus`"), "timezone: "},
    {JOB(",`schedule`:{`every`:`daily`,`enabled`:`no`}"),
     "schedule.enabled: must be true or false"},
    /* report */
    {JOB(",`report`:{`email`:[`ops@`]}"), "report.email[0]: 'ops@' is not an e-mail address"},
    {JOB(",`report`:{`email`:[`a@b.example`,`x y@z.example`]}"),
     "report.email[1]: 'x y@z.example' is not an e-mail address"},
    {JOB(",`report`:{`email`:[7]}"), "report.email[0]: must be a string (is a number)"},
    {JOB(",`report`:{`format`:`pdf`}"),
     "report.format: unknown format 'pdf' (expected one of xlsx, csv)"},
    {JOB(",`report`:{`when`:`never`}"),
     "report.when: unknown value 'never' (expected one of errors, always, failure)"},
    /* destination */
    {JOB(",`destination`:{`table`:`t`}"), "destination.type: required (postgres, http or file)"},
    {JOB(",`destination`:{`type`:`kafka`}"), "destination.type: unknown destination type 'kafka'"},
    {JOB(",`destination`:{`type`:`postgres`,`table`:`drop table;`}"),
     "destination.table: 'drop table;' is not a valid table name"},
    {JOB(",`destination`:{`type`:`postgres`,`url`:`https://x`}"),
     "destination.url: not used with type 'postgres'"},
    {JOB(",`destination`:{`type`:`http`}"), "destination.url: required for type 'http'"},
    {JOB(",`destination`:{`type`:`http`,`url`:`ftp://x/y`}"),
     "destination.url: 'ftp://x/y' is not an http:// or https:// URL"},
    {JOB(",`destination`:{`type`:`file`,`table`:`t`}"),
     "destination.table: not used with type 'file'"},
};

static void test_bad_documents(void **state)
{
    size_t failed = 0;
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++)
        failed += !refused(BAD[i].doc, BAD[i].want);
    assert_int_equal(failed, 0);
}

/* Bad job files in the fixtures, each with what its message must hold. */
static const struct {
    const char *file;
    const char *want;
} BAD_FILES[] = {
    {"bad_typo_source.json", "unknown field 'sorce' (did you mean 'source'?)"},
    {"bad_type.json",
     "target.attributes.revenue.type: unknown type 'decimall' (expected one of text, integer"},
    {"bad_mapping_attr.json", "mapping.foo: no such attribute in target.attributes"},
    {"bad_key.json", "target.key[0]: 'store' is not an attribute"},
    {"bad_template.json", "mapping.name: unclosed '{{' at offset 3"},
    {"bad_cadence.json", "schedule.every: unknown cadence 'dayly'"},
    {"bad_sync.json", "options.sync: unknown sync mode 'merge'"},
    {"bad_delimiter.json", "source.csv.delimiter: must be one character"},
    {"bad_syntax.json", "line 3, column 14: "},
    {"bad_scale.json", "target.attributes.revenue.scale: must be an integer from 0 to 38"},
    {"bad_cron.json", "schedule.cron: day of week: 'fridy' is not a number or name"},
    {"bad_no_url.json", "source.url: required"},
};

static void test_bad_files(void **state)
{
    char path[512], err[1024];
    for (size_t i = 0; i < sizeof(BAD_FILES) / sizeof(BAD_FILES[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", FIX, BAD_FILES[i].file);
        err[0] = '\0';
        struct sl_job *job = sl_job_load_file(path, err, sizeof(err));
        if (job)
            fail_msg("%s loaded", path);
        if (strncmp(err, path, strlen(path)) || strncmp(err + strlen(path), ": ", 2))
            fail_msg("message does not start with the path: %s", err);
        if (!strstr(err, BAD_FILES[i].want))
            fail_msg("%s: expected '%s', got '%s'", path, BAD_FILES[i].want, err);
    }
    /* Every bad_*.json is refused, every good_*.json loads. */
    DIR *d = opendir(FIX);
    assert_non_null(d);
    struct dirent *de;
    int nbad = 0, ngood = 0;
    while ((de = readdir(d))) {
        bool isbad = !strncmp(de->d_name, "bad_", 4), isgood = !strncmp(de->d_name, "good_", 5);
        if (!isbad && !isgood)
            continue;
        snprintf(path, sizeof(path), "%s/%s", FIX, de->d_name);
        struct sl_job *job = sl_job_load_file(path, err, sizeof(err));
        if (isbad && job)
            fail_msg("%s loaded", path);
        if (isgood && !job)
            fail_msg("%s", err);
        sl_job_destroy(job);
        nbad += isbad;
        ngood += isgood;
    }
    closedir(d);
    assert_true(nbad >= 12);
    assert_true(ngood >= 1);
}

static void test_file_errors(void **state)
{
    char err[1024];
    assert_null(sl_job_load_file(FIX "/no-such.json", err, sizeof(err)));
    assert_non_null(strstr(err, FIX "/no-such.json: could not read: No such file"));
    assert_null(sl_job_load_file(FIX, err, sizeof(err)));
    assert_non_null(strstr(err, ": is a directory"));
    /* NULL errbuf is fine. */
    assert_null(sl_job_load_file(FIX "/no-such.json", NULL, 0));
    assert_null(sl_job_load_json("{", 1, NULL, NULL, 0));
    /* dir is kept. */
    const char *doc = J(JOB(""));
    struct sl_job *job = sl_job_load_json(doc, strlen(doc), "/srv/jobs", err, sizeof(err));
    assert_non_null(job);
    assert_string_equal(job->dir, "/srv/jobs");
    sl_job_destroy(job);
    /* len bounds the document: a NUL or garbage after it is not read. */
    char buf[1024];
    snprintf(buf, sizeof(buf), "%sGARBAGE", J(JOB("")));
    job = sl_job_load_json(buf, strlen(buf) - 7, NULL, err, sizeof(err));
    assert_non_null(job);
    sl_job_destroy(job);
    sl_job_destroy(NULL);
}

static void test_env_expand(void **state)
{
    char err[256];
    setenv("SLUICE_TEST_TOKEN", "s3cr3t", 1);
    setenv("SLUICE_TEST_EMPTY", "", 1);
    unsetenv("SLUICE_TEST_UNSET");
    char *s = sl_env_expand("Bearer ${env:SLUICE_TEST_TOKEN}", err, sizeof(err));
    assert_string_equal(s, "Bearer s3cr3t");
    free(s);
    s = sl_env_expand("${env:SLUICE_TEST_TOKEN}/${env:SLUICE_TEST_EMPTY}x${env:SLUICE_TEST_TOKEN}",
                      err, sizeof(err));
    assert_string_equal(s, "s3cr3t/xs3cr3t");
    free(s);
    s = sl_env_expand("no vars, ${other} and $HOME kept", err, sizeof(err));
    assert_string_equal(s, "no vars, ${other} and $HOME kept");
    free(s);
    s = sl_env_expand("", err, sizeof(err));
    assert_string_equal(s, "");
    free(s);
    assert_null(
        sl_env_expand("a ${env:SLUICE_TEST_UNSET} ${env:SLUICE_TEST_TOKEN}", err, sizeof(err)));
    assert_string_equal(err, "environment variable SLUICE_TEST_UNSET is not set");
    assert_null(
        sl_env_expand("${env:SLUICE_TEST_TOKEN} ${env:SLUICE_TEST_UNSET}", err, sizeof(err)));
    assert_null(strstr(err, "s3cr3t"));
    assert_null(sl_env_expand("x ${env:SLUICE_TEST_TOKEN", err, sizeof(err)));
    assert_string_equal(err, "unclosed '${env:' at offset 2");
    assert_null(sl_env_expand("${env:A-B}", err, sizeof(err)));
    assert_non_null(strstr(err, "invalid environment variable name 'A-B'"));
    assert_null(sl_env_expand("${env:}", err, sizeof(err)));

    /* Loading never expands, even when the variable is unset. */
    struct sl_job *job =
        load_ok(WITH_SOURCE("{`url`:`https://h.example.com/${env:SLUICE_TEST_UNSET}`}"));
    assert_string_equal(job->source.url, "https://h.example.com/${env:SLUICE_TEST_UNSET}");
    sl_job_destroy(job);
}

static void test_registry(void **state)
{
    char err[256];
    struct sl_job *job = load_ok(JOB(""));
    struct sl_jobs *jobs = sl_jobs_single_new(job);
    assert_non_null(jobs);
    assert_ptr_equal(sl_jobs_get(jobs, "j", 0, err, sizeof(err)), job);
    assert_ptr_equal(sl_jobs_get(jobs, "j", 1, err, sizeof(err)), job);
    assert_null(sl_jobs_get(jobs, "k", 0, err, sizeof(err)));
    assert_string_equal(err, "unknown job 'k'");
    assert_null(sl_jobs_get(jobs, "j", 2, err, sizeof(err)));
    assert_string_equal(err, "job 'j' has no version 2");
    sl_jobs_destroy(jobs);
    sl_jobs_destroy(NULL);
}

/* Every prefix of the example is refused cleanly (no crash, no leak). */
static void test_truncated(void **state)
{
    size_t len;
    char err[1024];
    FILE *f = fopen(FIX "/jobs_md_example.json", "rb");
    assert_non_null(f);
    char *text = malloc(1 << 16);
    len = fread(text, 1, 1 << 16, f);
    fclose(f);
    for (size_t n = 0; n + 2 < len; n += 7) {
        struct sl_job *job = sl_job_load_json(text, n, NULL, err, sizeof(err));
        assert_null(job);
        assert_true(err[0] != '\0');
    }
    free(text);
}

/* "targets": one source row feeds several objects; each target is a job
 * of its own (id <name>#<object>) over the job's source and options. */
#define CRM_TARGETS                                                                                \
    "{`name`:`crm`,`source`:{`url`:`crm.csv`},`options`:{`sync`:`upsert`},"                        \
    "`destination`:{`type`:`postgres`,`table`:`ignored`},`targets`:["                              \
    "{`object`:`accounts`,`key`:[`no`],`attributes`:{`no`:{`type`:`text`}},"                       \
    "`mapping`:{`no`:`account_no`},`options`:{`duplicates`:`last_wins`}},"                         \
    "{`object`:`contacts`,`key`:[`email`],`attributes`:{`email`:{`type`:`email`},"                 \
    "`account`:{`type`:`text`,`references`:`accounts.no`}},"                                       \
    "`mapping`:{`email`:`E-Mail`,`account`:`{{ account_no | trim }}`}}]}"

static void test_targets(void **state)
{
    struct sl_job *job = load_ok(CRM_TARGETS);
    assert_int_equal(job->ntargets, 2);
    assert_string_equal(job->id, "crm");
    assert_string_equal(job->object, "accounts"); /* the job is its first target */
    const struct sl_job *a = job->targets[0], *c = job->targets[1];
    assert_string_equal(a->id, "crm#accounts");
    assert_string_equal(c->id, "crm#contacts");
    assert_string_equal(c->name, "crm");
    assert_string_equal(c->source.url, "crm.csv");
    assert_int_equal(c->nattrs, 2);
    assert_string_equal(c->attrs[1].references, "accounts.no");
    assert_string_equal(c->refs[0].name, "E-Mail");
    /* options: the target's over the job's */
    assert_int_equal(a->options.duplicates, SL_DUPS_LAST_WINS);
    assert_int_equal(c->options.duplicates, SL_DUPS_REJECT);
    /* the job's destination table is no target's: each defaults to its object */
    assert_int_equal(c->destination.type, SL_DEST_POSTGRES);
    assert_string_equal(c->destination.table, "contacts");
    assert_int_equal(c->ntargets, 0);
    sl_job_destroy(job);

    /* refusals name the target */
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[{`object`:`o`,"
                        "`key`:[`k`],`attributes`:{`k`:{`type`:`txt`}},`mapping`:{`k`:`k`}}]}",
                        "targets[0].attributes.k.type: unknown type 'txt'"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[{`object`:`o`,"
                        "`key`:[`k`],`attributes`:{`k`:{`type`:`text`}},`mapping`:{`kk`:`k`}}]}",
                        "targets[0].mapping.kk"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[{`object`:`o`,"
                        "`key`:[`k`],`attributes`:{`k`:{`type`:`text`}}}]}",
                        "targets[0].mapping: required"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:["
                        "{`object`:`o`,`key`:[`k`],`attributes`:{`k`:{`type`:`text`}},"
                        "`mapping`:{`k`:`k`}},"
                        "{`object`:`o`,`key`:[`k`],`attributes`:{`k`:{`type`:`text`}},"
                        "`mapping`:{`k`:`k`}}]}",
                        "targets[1].object: 'o' is targets[0]'s already"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[],"
                        "`mapping`:{`k`:`k`}}",
                        "targets: a job has either target and mapping, or targets"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[]}",
                        "targets: must be an array of 1 to 16 targets"));
    assert_true(refused("{`name`:`x`,`source`:{`url`:`a.csv`},`targets`:[{`object`:`o`,"
                        "`key`:[`k`],`attributes`:{`k`:{`type`:`text`}},`mapping`:{`k`:`k`},"
                        "`table`:`t`}]}",
                        "targets[0].table: unknown field"));
}

int main(void)
{
    setenv("TZDIR", "/usr/share/zoneinfo", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example),       cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_attr_options),  cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_source),        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_bad_documents), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_file_errors),   cmocka_unit_test(test_env_expand),
        cmocka_unit_test(test_registry),      cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
