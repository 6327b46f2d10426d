/*
 * Unit tests of auto-mapping (suggest.c): folding and identifiers, name
 * scores (the same name, synonyms in English and German, umlauts, words,
 * one name inside another), matching by values alone, the filters a
 * column's values need, the order of confidence, one column per attribute,
 * required attributes first, the target proposed without a job (types,
 * scale, enumerations, required, key), the sample's bounds, the job
 * document of --write and the encoding guess.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/suggest.h"

/* A sample of nrows rows of ncols columns: header[c], cells[r * ncols + c]
 * (NULL: missing). */
static struct sl_suggest *sample(const char *const *header, size_t ncols, const char *const *cells,
                                 size_t nrows)
{
    struct sl_suggest *sg = sl_suggest_new(0, 0);
    assert_non_null(sg);
    assert_int_equal(sl_suggest_header(sg, header, ncols), 0);
    for (size_t r = 0; r < nrows; r++) {
        size_t lens[64];
        assert_true(ncols <= 64);
        for (size_t c = 0; c < ncols; c++)
            lens[c] = cells[r * ncols + c] ? strlen(cells[r * ncols + c]) : 0;
        struct sl_row row = {
            .row = r + 1, .names = header, .values = cells + r * ncols, .lens = lens, .n = ncols};
        assert_int_equal(sl_suggest_row(sg, &row), 0);
    }
    return sg;
}

static struct sl_job *job_of(const char *text)
{
    char err[512] = "";
    struct sl_job *job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    if (!job)
        fail_msg("job: %s", err);
    return job;
}

static struct sl_suggest_result *match(const struct sl_suggest *sg, const struct sl_job *job)
{
    char err[512] = "";
    struct sl_suggest_result *res = sl_suggest_match(sg, job, "stores", err, sizeof(err));
    if (!res)
        fail_msg("match: %s", err);
    return res;
}

static const struct sl_suggestion *item(const struct sl_suggest_result *res, const char *attr)
{
    for (size_t i = 0; i < res->nitems; i++)
        if (!strcmp(res->items[i].attribute, attr))
            return &res->items[i];
    return NULL;
}

static bool has_reason(const struct sl_suggestion *it, const char *text)
{
    for (size_t i = 0; i < it->nreasons; i++)
        if (strstr(it->reasons[i], text))
            return true;
    return false;
}

static void test_fold(void **state)
{
    char out[128];
    assert_string_equal(sl_suggest_fold("E-Mail", out, sizeof(out)), "email");
    assert_string_equal(sl_suggest_fold("Store ID", out, sizeof(out)), "storeid");
    assert_string_equal(sl_suggest_fold("store_id", out, sizeof(out)), "storeid");
    assert_string_equal(sl_suggest_fold("Eröffnung", out, sizeof(out)), "eroeffnung");
    assert_string_equal(sl_suggest_fold("Straße", out, sizeof(out)), "strasse");
    assert_string_equal(sl_suggest_fold("ÄÖÜ äöü", out, sizeof(out)), "aeoeueaeoeue");
    assert_string_equal(sl_suggest_fold("Café No.", out, sizeof(out)), "cafeno");
    assert_string_equal(sl_suggest_fold("Zip\xc2\xa0"
                                        "Code",
                                        out, sizeof(out)),
                        "zipcode");
    assert_string_equal(sl_suggest_fold(" - ", out, sizeof(out)), "");
}

static void test_ident(void **state)
{
    char out[64];
    assert_string_equal(sl_suggest_ident("Store ID", out, sizeof(out)), "store_id");
    assert_string_equal(sl_suggest_ident("StoreId", out, sizeof(out)), "store_id");
    assert_string_equal(sl_suggest_ident("E-Mail", out, sizeof(out)), "e_mail");
    assert_string_equal(sl_suggest_ident("Eröffnung", out, sizeof(out)), "eroeffnung");
    assert_string_equal(sl_suggest_ident("PLZ", out, sizeof(out)), "plz");
    assert_string_equal(sl_suggest_ident("address.city", out, sizeof(out)), "address_city");
    assert_string_equal(sl_suggest_ident("2024 Umsatz (€)", out, sizeof(out)), "col_2024_umsatz");
    assert_string_equal(sl_suggest_ident("€", out, sizeof(out)), "column");
    assert_string_equal(sl_suggest_ident("Город", out, sizeof(out)), "column");
    char lng[200];
    memset(lng, 'x', sizeof(lng) - 1);
    lng[sizeof(lng) - 1] = '\0';
    assert_int_equal(strlen(sl_suggest_ident(lng, out, sizeof(out))), 63);
}

static void test_name_scores(void **state)
{
    char why[160];
    /* the same name once folded */
    assert_true(sl_suggest_name_score("email", "E-Mail", why, sizeof(why)) == 1.0);
    assert_string_equal(why, "name");
    assert_true(sl_suggest_name_score("store_id", "Store ID", why, sizeof(why)) == 1.0);
    assert_true(sl_suggest_name_score("strasse", "Straße", why, sizeof(why)) == 1.0);
    assert_true(sl_suggest_name_score("waehrung", "Währung", why, sizeof(why)) == 1.0);
    /* synonyms, English and German */
    double s = sl_suggest_name_score("zip", "PLZ", why, sizeof(why));
    assert_true(s >= 0.85 && s < 1.0);
    assert_string_equal(why, "synonym of plz");
    assert_true(sl_suggest_name_score("postal_code", "Postleitzahl", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("phone", "Telefon", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("email", "Emailadresse", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("email", "Mail", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("city", "Ort", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("country", "Land", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("street", "Straße", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("name", "Bezeichnung", why, sizeof(why)) >= 0.85);
    assert_true(sl_suggest_name_score("revenue", "Umsatz", why, sizeof(why)) >= 0.85);
    /* umlauts in the synonym */
    assert_true(sl_suggest_name_score("currency", "Währung", why, sizeof(why)) >= 0.85);
    assert_string_equal(why, "synonym of waehrung");
    assert_true(sl_suggest_name_score("opened_on", "Eröffnung", why, sizeof(why)) >= 0.85);
    /* word by word, one name inside the other */
    s = sl_suggest_name_score("customer_email", "E-Mail", why, sizeof(why));
    assert_true(s >= 0.5 && s < 0.85);
    s = sl_suggest_name_score("email", "Kontakt E-Mail", why, sizeof(why));
    assert_true(s >= 0.5 && s < 0.85);
    assert_string_equal(why, "name contains email");
    s = sl_suggest_name_score("delivery_date", "Lieferdatum", why, sizeof(why));
    assert_true(s >= 0.85);
    s = sl_suggest_name_score("phone", "Telefonnummer 2", why, sizeof(why));
    assert_true(s >= 0.5);
    /* a closer spelling wins among synonyms */
    assert_true(sl_suggest_name_score("mobile", "Mobil", NULL, 0) >
                sl_suggest_name_score("mobile", "Telefon", NULL, 0));
    /* nothing in common */
    assert_true(sl_suggest_name_score("name", "Umsatz", why, sizeof(why)) == 0);
    assert_string_equal(why, "");
    assert_true(sl_suggest_name_score("email", "", why, sizeof(why)) == 0);
}

static const char *const ERP_HEADER[] = {"Filiale", "Name",      "PLZ",    "E-Mail",
                                         "Telefon", "Eröffnung", "Umsatz", "Währung"};
static const char *const ERP_ROWS[] = {
    "F001",
    "Berlin Mitte",
    "10115",
    "berlin@example.com",
    "030 1234567",
    "01.03.2019",
    "1.234,50",
    "EUR",
    "F002",
    "Hamburg",
    "20457",
    "hamburg@example.com",
    "040 7654321",
    "15.11.2020",
    "99,99",
    "€",
    "F003",
    "Köln",
    "50667",
    "koeln@example.com",
    "0221 555123",
    "31.12.2021",
    "12.000,00",
    "EUR",
    "F004",
    "Dresden",
    "01067",
    "dresden@example.com",
    "+49 351 8889990",
    "28.02.2022",
    "0,00",
    "EUR",
};

static const char ERP_JOB[] =
    "{\"name\":\"t\",\"source\":{\"url\":\"stores.csv\"},"
    "\"target\":{\"object\":\"locations\",\"key\":[\"store_id\"],\"attributes\":{"
    "\"store_id\":{\"type\":\"text\",\"required\":true},"
    "\"name\":{\"type\":\"text\",\"required\":true},"
    "\"zip\":{\"type\":\"text\"},"
    "\"opened_on\":{\"type\":\"date\"},"
    "\"revenue\":{\"type\":\"decimal\",\"scale\":2},"
    "\"currency\":{\"type\":\"currency\"},"
    "\"email\":{\"type\":\"email\"},"
    "\"phone\":{\"type\":\"phone\",\"region\":\"DE\"},"
    "\"status\":{\"type\":\"enum\",\"values\":[\"open\",\"closed\"]}}},"
    "\"mapping\":{\"store_id\":\"x\",\"name\":\"y\"}}";

/* The German ERP export against the JOBS.md target: every column found,
 * each with the filter its values need. */
static void test_erp_job(void **state)
{
    struct sl_suggest *sg = sample(ERP_HEADER, 8, ERP_ROWS, 4);
    struct sl_job *job = job_of(ERP_JOB);
    struct sl_suggest_result *res = match(sg, job);
    assert_int_equal(res->nitems, 8);
    const struct sl_suggestion *it;

    assert_non_null(it = item(res, "store_id"));
    assert_string_equal(it->column, "Filiale");
    assert_string_equal(it->mapping, "Filiale");
    assert_true(has_reason(it, "synonym of filiale"));
    assert_non_null(it = item(res, "name"));
    assert_string_equal(it->mapping, "Name");
    assert_true(it->confidence == 1.0);
    assert_non_null(it = item(res, "zip"));
    assert_string_equal(it->column, "PLZ");
    assert_true(has_reason(it, "synonym of plz"));
    assert_non_null(it = item(res, "email"));
    assert_string_equal(it->mapping, "E-Mail");
    assert_true(it->confidence == 1.0);
    assert_true(has_reason(it, "values: 100% e-mail"));
    assert_non_null(it = item(res, "phone"));
    assert_string_equal(it->mapping, "Telefon"); /* the attribute's region DE takes them */
    assert_true(has_reason(it, "values: 100% phone numbers"));
    assert_non_null(it = item(res, "opened_on"));
    assert_string_equal(it->filter, "date('%d.%m.%Y')");
    assert_string_equal(it->mapping, "{{ Eröffnung | date('%d.%m.%Y') }}");
    assert_non_null(it = item(res, "revenue"));
    assert_string_equal(it->mapping, "{{ Umsatz | number('de') }}");
    assert_non_null(it = item(res, "currency"));
    assert_string_equal(it->mapping, "{{ Währung | currency_code }}");
    assert_true(has_reason(it, "synonym of waehrung"));

    assert_int_equal(res->nunmatched, 0);
    assert_int_equal(res->nunmapped, 1);
    assert_string_equal(res->unmapped[0].name, "status");
    assert_false(res->unmapped[0].required);
    assert_null(res->target);
    assert_string_equal(json_string_value(json_object_get(res->mapping, "revenue")),
                        "{{ Umsatz | number('de') }}");

    /* required attributes first, then by confidence */
    assert_true(res->items[0].required && res->items[1].required);
    assert_false(res->items[2].required);
    for (size_t i = 3; i < res->nitems; i++)
        assert_true(res->items[i - 1].confidence >= res->items[i].confidence);
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* A column whose values are e-mails fits an e-mail attribute by values
 * alone (less sure than by name); text by values alone fits nothing. */
static void test_values_only(void **state)
{
    static const char *const h[] = {"A", "B", "C"};
    static const char *const rows[] = {
        "Anna",
        "anna@example.com",
        "2024-01-05",
        "Ben",
        "ben@example.org",
        "2024-02-11",
        "Cleo",
        "cleo@example.de",
        "2024-03-20",
        "Dan",
        NULL,
        "2024-04-02",
    };
    struct sl_suggest *sg = sample(h, 3, rows, 4);
    struct sl_job *job =
        job_of("{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":\"o\","
               "\"key\":[\"contact\"],\"attributes\":{\"contact\":{\"type\":\"email\"},"
               "\"since\":{\"type\":\"date\"},\"label\":{\"type\":\"text\"}}},"
               "\"mapping\":{\"contact\":\"x\"}}");
    struct sl_suggest_result *res = match(sg, job);
    const struct sl_suggestion *it = item(res, "contact");
    assert_non_null(it);
    assert_string_equal(it->column, "B");
    assert_true(it->confidence >= 0.5 && it->confidence < 0.9);
    assert_int_equal(it->nreasons, 1);
    assert_string_equal(it->reasons[0], "values: 100% e-mail");
    assert_non_null(it = item(res, "since"));
    assert_string_equal(it->column, "C");
    assert_null(item(res, "label"));
    assert_int_equal(res->nunmatched, 1);
    assert_string_equal(res->unmatched[0].name, "A");
    assert_string_equal(res->unmatched[0].profile, "values: text, unique");
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* Values that contradict the type lower the confidence of a name match. */
static void test_values_against_name(void **state)
{
    static const char *const h[] = {"Datum", "Created"};
    static const char *const rows[] = {"soon",       "2024-01-05", "later",
                                       "2024-02-11", "never",      "2024-03-01"};
    struct sl_suggest *sg = sample(h, 2, rows, 3);
    struct sl_job *job =
        job_of("{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":\"o\","
               "\"key\":[\"date\"],\"attributes\":{\"date\":{\"type\":\"date\"},"
               "\"created\":{\"type\":\"date\"}}},\"mapping\":{\"date\":\"x\"}}");
    struct sl_suggest_result *res = match(sg, job);
    const struct sl_suggestion *d = item(res, "date"), *c = item(res, "created");
    assert_non_null(d);
    assert_non_null(c);
    assert_string_equal(d->column, "Datum");
    assert_string_equal(c->column, "Created");
    assert_true(d->confidence < 0.5);
    assert_true(has_reason(d, "values: 0% ISO dates"));
    assert_true(c->confidence == 1.0);
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* One column per attribute and one attribute per column: the most
 * confident pair first. */
static void test_one_to_one(void **state)
{
    static const char *const h[] = {"Email 2", "E-Mail", "Mobil", "Telefon"};
    static const char *const rows[] = {
        "a2@example.com", "a@example.com", "+49 170 1234567", "+49 30 1234567",
        "b2@example.com", "b@example.com", "+49 171 7654321", "+49 40 7654321",
    };
    struct sl_suggest *sg = sample(h, 4, rows, 2);
    struct sl_job *job =
        job_of("{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":\"o\","
               "\"key\":[\"email\"],\"attributes\":{\"phone\":{\"type\":\"phone\"},"
               "\"mobile\":{\"type\":\"phone\"},\"email\":{\"type\":\"email\"},"
               "\"backup_email\":{\"type\":\"email\"}}},\"mapping\":{\"email\":\"x\"}}");
    struct sl_suggest_result *res = match(sg, job);
    assert_int_equal(res->nitems, 4);
    assert_string_equal(item(res, "email")->column, "E-Mail");
    assert_string_equal(item(res, "backup_email")->column, "Email 2");
    assert_string_equal(item(res, "mobile")->column, "Mobil");
    assert_string_equal(item(res, "phone")->column, "Telefon");
    for (size_t i = 0; i < res->nitems; i++)
        for (size_t j = i + 1; j < res->nitems; j++)
            assert_string_not_equal(res->items[i].column, res->items[j].column);
    /* E-Mail fits both e-mail attributes; the more confident pair takes it */
    assert_true(item(res, "email")->confidence > item(res, "backup_email")->confidence);
    assert_int_equal(res->nunmatched, 0);
    assert_int_equal(res->nunmapped, 0);
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* Required attributes come first whatever their confidence; an attribute
 * that nothing fits is listed with its required flag. */
static void test_required_first(void **state)
{
    static const char *const h[] = {"note", "Bezeichnung"};
    static const char *const rows[] = {"a", "Alpha", "b", "Beta"};
    struct sl_suggest *sg = sample(h, 2, rows, 2);
    struct sl_job *job =
        job_of("{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":\"o\","
               "\"key\":[\"id\"],\"attributes\":{\"note\":{\"type\":\"text\"},"
               "\"name\":{\"type\":\"text\",\"required\":true},"
               "\"id\":{\"type\":\"text\"}}},\"mapping\":{\"id\":\"x\",\"name\":\"y\"}}");
    struct sl_suggest_result *res = match(sg, job);
    assert_int_equal(res->nitems, 2);
    assert_string_equal(res->items[0].attribute, "name");
    assert_true(res->items[0].required);
    assert_true(res->items[0].confidence < res->items[1].confidence);
    assert_string_equal(res->items[1].attribute, "note");
    assert_int_equal(res->nunmapped, 1);
    assert_string_equal(res->unmapped[0].name, "id");
    assert_true(res->unmapped[0].required); /* a key attribute */
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* The filters values need, and names that are no template field names. */
static void test_mapping_forms(void **state)
{
    static const char *const h[] = {"Open Date", "Betrag €", "Kunde's Nr", "Preis"};
    static const char *const rows[] = {
        "12/31/2025", "1,234.50", "K1",         "12.5",      "01/15/2024", "99.00",
        "K2",         "7",        "06/30/2023", "10,000.00", "K3",         "0.25",
    };
    struct sl_suggest *sg = sample(h, 4, rows, 3);
    struct sl_job *job =
        job_of("{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":\"o\","
               "\"key\":[\"customer_no\"],\"attributes\":{\"open_date\":{\"type\":\"date\"},"
               "\"amount\":{\"type\":\"decimal\"},\"customer_no\":{\"type\":\"text\"},"
               "\"price\":{\"type\":\"decimal\"}}},\"mapping\":{\"customer_no\":\"x\"}}");
    struct sl_suggest_result *res = match(sg, job);
    const struct sl_suggestion *it;
    assert_non_null(it = item(res, "open_date"));
    assert_string_equal(it->mapping, "{{ row['Open Date'] | date('%m/%d/%Y') }}");
    assert_non_null(it = item(res, "amount"));
    assert_string_equal(it->mapping, "{{ row['Betrag €'] | number('en') }}");
    assert_non_null(it = item(res, "customer_no"));
    assert_string_equal(it->mapping, "Kunde's Nr"); /* a column copy needs no quoting */
    assert_non_null(it = item(res, "price"));
    assert_string_equal(it->mapping, "Preis");
    assert_null(it->filter);
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

static const char *attr_type(const struct sl_suggest_result *res, const char *name)
{
    json_t *a = json_object_get(json_object_get(res->target, "attributes"), name);
    return json_string_value(json_object_get(a, "type"));
}

/* Without a job: one attribute per column, its type from the values. */
static void test_propose(void **state)
{
    static const char *const h[] = {"Name",    "Kunden Nr", "PLZ",    "Betrag", "Menge",
                                    "Datum",   "Aktiv",     "Status", "Web",    "name",
                                    "Telefon", "Zeit",      "Leer"};
    static const char *const rows[] = {
        "Anna",
        "K-1",
        "01067",
        "1.234,50",
        "3",
        "31.12.2025",
        "ja",
        "open",
        "https://a.example.com",
        "x",
        "+49 30 1234567",
        "2025-01-05T10:00:00Z",
        NULL,
        "Anna",
        "K-2",
        "10115",
        "99,9",
        "12",
        "01.01.2024",
        "nein",
        "closed",
        "https://b.example.com",
        "y",
        "+49 40 1234567",
        "2025-01-06 11:30",
        NULL,
        "Cleo",
        "K-3",
        "20457",
        "0,5",
        "7",
        "15.06.2023",
        "ja",
        "open",
        "https://c.example.com",
        NULL,
        "+49 89 1234567",
        "2025-01-07T12:00:00+01:00",
        NULL,
        "Dan",
        "K-4",
        "50667",
        "12",
        "0",
        "28.02.2022",
        "nein",
        "open",
        "https://d.example.com",
        "z",
        "+49 221 123456",
        "2025-01-08T00:00:00Z",
        NULL,
    };
    struct sl_suggest *sg = sample(h, 13, rows, 4);
    assert_int_equal(sl_suggest_nrows(sg), 4);
    assert_int_equal(sl_suggest_ncolumns(sg), 13);
    struct sl_suggest_result *res = match(sg, NULL);
    assert_non_null(res->target);
    assert_string_equal(json_string_value(json_object_get(res->target, "object")), "stores");
    /* the key: unique, every row, a name that says so (not the first unique) */
    json_t *key = json_object_get(res->target, "key");
    assert_int_equal(json_array_size(key), 1);
    assert_string_equal(json_string_value(json_array_get(key, 0)), "kunden_nr");
    assert_string_equal(attr_type(res, "name"), "text");
    assert_string_equal(attr_type(res, "name_2"), "text"); /* unique names */
    assert_string_equal(attr_type(res, "plz"), "text");    /* 01067 keeps its zero */
    assert_string_equal(attr_type(res, "betrag"), "decimal");
    json_t *betrag = json_object_get(json_object_get(res->target, "attributes"), "betrag");
    assert_int_equal(json_integer_value(json_object_get(betrag, "scale")), 2);
    assert_string_equal(attr_type(res, "menge"), "integer");
    assert_string_equal(attr_type(res, "datum"), "date");
    assert_string_equal(attr_type(res, "aktiv"), "boolean");
    assert_string_equal(attr_type(res, "status"), "enum");
    json_t *st = json_object_get(json_object_get(res->target, "attributes"), "status");
    json_t *vals = json_object_get(st, "values");
    assert_int_equal(json_array_size(vals), 2);
    assert_string_equal(json_string_value(json_array_get(vals, 0)), "open");
    assert_string_equal(json_string_value(json_array_get(vals, 1)), "closed");
    assert_string_equal(attr_type(res, "web"), "url");
    assert_string_equal(attr_type(res, "telefon"), "phone");
    assert_null(json_object_get(
        json_object_get(json_object_get(res->target, "attributes"), "telefon"), "region"));
    assert_string_equal(attr_type(res, "zeit"), "datetime");
    assert_string_equal(attr_type(res, "leer"), "text");
    /* required: no value missing in the sample */
    const struct sl_suggestion *it = item(res, "name_2");
    assert_false(it->required);
    assert_true(item(res, "name")->required);
    assert_false(item(res, "leer")->required);
    assert_true(has_reason(item(res, "leer"), "no values in the sample"));
    assert_string_equal(item(res, "betrag")->mapping, "{{ Betrag | number('de') }}");
    assert_string_equal(item(res, "datum")->mapping, "{{ Datum | date('%d.%m.%Y') }}");
    assert_true(has_reason(item(res, "kunden_nr"), "key"));
    /* the required ones first */
    size_t i = 0;
    while (i < res->nitems && res->items[i].required)
        i++;
    for (; i < res->nitems; i++)
        assert_false(res->items[i].required);
    assert_string_equal(json_string_value(json_object_get(res->options, "sync")), "upsert");

    /* the job it makes loads */
    json_t *base = json_pack("{s:s,s:{s:s}}", "name", "t", "source", "url", "x.csv");
    json_t *doc = sl_suggest_job_doc(res, base);
    assert_non_null(doc);
    char *text = json_dumps(doc, 0), err[512] = "";
    struct sl_job *job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    if (!job)
        fail_msg("the proposed job: %s", err);
    assert_int_equal(job->nattrs, 13);
    assert_string_equal(job->key[0], "kunden_nr");
    json_t *entry = json_object_get(json_object_get(doc, "mapping"), "betrag");
    assert_string_equal(json_string_value(json_object_get(entry, "value")),
                        "{{ Betrag | number('de') }}");
    assert_non_null(strstr(json_string_value(json_object_get(entry, "note")), "suggested"));
    sl_job_destroy(job);
    free(text);
    json_decref(doc);
    json_decref(base);
    sl_suggest_result_destroy(res);
    sl_suggest_destroy(sg);
}

/* No column is unique: no key, rows are appended. */
static void test_propose_no_key(void **state)
{
    static const char *const h[] = {"Farbe", "Größe"};
    static const char *const rows[] = {"rot", "1", "rot", "2", "blau", "2"};
    struct sl_suggest *sg = sample(h, 2, rows, 3);
    struct sl_suggest_result *res = match(sg, NULL);
    assert_null(json_object_get(res->target, "key"));
    assert_string_equal(json_string_value(json_object_get(res->options, "sync")), "append");
    assert_non_null(item(res, "groesse"));
    json_t *base = json_pack("{s:s,s:{s:s}}", "name", "t", "source", "url", "x.csv");
    json_t *doc = sl_suggest_job_doc(res, base);
    char *text = json_dumps(doc, 0), err[512] = "";
    struct sl_job *job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    if (!job)
        fail_msg("the proposed job: %s", err);
    sl_job_destroy(job);
    free(text);
    json_decref(doc);
    json_decref(base);
    sl_suggest_result_destroy(res);
    sl_suggest_destroy(sg);
}

/* The job document of --write with a job: proposed entries replace, the
 * job's own entries stay for attributes no column fits. */
static void test_job_doc(void **state)
{
    static const char *const h[] = {"E-Mail"};
    static const char *const rows[] = {"a@example.com"};
    struct sl_suggest *sg = sample(h, 1, rows, 1);
    const char *text = "{\"name\":\"t\",\"source\":{\"url\":\"x.csv\"},\"target\":{\"object\":"
                       "\"o\",\"key\":[\"id\"],\"attributes\":{\"id\":{\"type\":\"text\"},"
                       "\"email\":{\"type\":\"email\"}}},\"mapping\":{\"id\":\"Nr\","
                       "\"email\":\"Mail\"}}";
    struct sl_job *job = job_of(text);
    struct sl_suggest_result *res = match(sg, job);
    json_t *base = json_loads(text, 0, NULL);
    json_t *doc = sl_suggest_job_doc(res, base);
    json_t *map = json_object_get(doc, "mapping");
    assert_string_equal(json_string_value(json_object_get(map, "id")), "Nr");
    assert_string_equal(json_string_value(json_object_get(json_object_get(map, "email"), "value")),
                        "E-Mail");
    json_t *out = sl_suggest_result_json(res);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "rows")), 1);
    json_t *s0 = json_array_get(json_object_get(out, "suggestions"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "attribute")), "email");
    assert_string_equal(json_string_value(json_object_get(s0, "column")), "E-Mail");
    assert_true(json_real_value(json_object_get(s0, "confidence")) == 1.0);
    assert_true(json_is_array(json_object_get(s0, "reasons")));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(out, "unmapped_attributes"), 0)), "id");
    assert_int_equal(json_array_size(json_object_get(out, "unmatched_columns")), 0);
    json_decref(out);
    json_decref(doc);
    json_decref(base);
    sl_suggest_result_destroy(res);
    sl_job_destroy(job);
    sl_suggest_destroy(sg);
}

/* The sample: at most max_rows rows, records with fields of their own,
 * blank values missing, long values cut. */
static void test_sample_bounds(void **state)
{
    struct sl_suggest *sg = sl_suggest_new(3, 0);
    const char *n1[] = {"id", "name"}, *v1[] = {"1", "  "};
    const char *n2[] = {"id", "city"}, *v2[] = {"2", "Berlin"};
    size_t l1[] = {1, 2}, l2[] = {1, 6};
    struct sl_row r1 = {.row = 1, .names = n1, .values = v1, .lens = l1, .n = 2};
    struct sl_row r2 = {.row = 2, .names = n2, .values = v2, .lens = l2, .n = 2};
    struct sl_row bad = {.row = 3, .error = "record 3 is not an object (a number)"};
    assert_int_equal(sl_suggest_row(sg, &r1), 0);
    assert_int_equal(sl_suggest_row(sg, &bad), 0); /* skipped */
    assert_int_equal(sl_suggest_row(sg, &r2), 0);
    assert_int_equal(sl_suggest_ncolumns(sg), 3);
    char *lng = malloc(5000);
    memset(lng, 'a', 4999);
    lng[4999] = '\0';
    const char *n3[] = {"id", "note"}, *v3[] = {"3", lng};
    size_t l3[] = {1, 4999};
    struct sl_row r3 = {.row = 4, .names = n3, .values = v3, .lens = l3, .n = 2};
    assert_int_equal(sl_suggest_row(sg, &r3), 1); /* full */
    assert_int_equal(sl_suggest_row(sg, &r1), 1);
    assert_int_equal(sl_suggest_nrows(sg), 3);
    free(lng);
    struct sl_suggest_result *res = match(sg, NULL);
    assert_int_equal(res->rows, 3);
    assert_int_equal(res->columns, 4);
    assert_string_equal(attr_type(res, "id"), "integer");
    assert_true(item(res, "id")->required);
    assert_false(item(res, "name")->required); /* blank: missing */
    assert_false(item(res, "city")->required);
    sl_suggest_result_destroy(res);
    sl_suggest_destroy(sg);

    /* the byte budget stops the sample too */
    sg = sl_suggest_new(1000, 200);
    const char *n4[] = {"v"}, *v4[] = {"some text of a row"};
    size_t l4[] = {18};
    struct sl_row r4 = {.row = 1, .names = n4, .values = v4, .lens = l4, .n = 1};
    int rc = 0, rows = 0;
    while (rc == 0 && rows < 1000) {
        rc = sl_suggest_row(sg, &r4);
        rows++;
    }
    assert_int_equal(rc, 1);
    assert_true(rows < 20);
    sl_suggest_destroy(sg);
}

static enum sl_encoding encoding_of(const void *data, size_t n)
{
    char path[] = "/tmp/sluice-test-suggest-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    enum sl_encoding enc = sl_suggest_encoding(fd);
    close(fd);
    unlink(path);
    return enc;
}

static void test_encoding(void **state)
{
    assert_int_equal(encoding_of("Name;Ort\nA;Köln\n", 17), SL_ENC_UTF8);
    assert_int_equal(encoding_of("Name;Ort\nA;K\xf6ln\n", 16), SL_ENC_LATIN1);
    assert_int_equal(encoding_of("Preis\n5 \x80\n\x84quoted\x93\n", 18), SL_ENC_WINDOWS_1252);
    /* 0x81 is no windows-1252 character */
    assert_int_equal(encoding_of("a\x81\xe4\n", 4), SL_ENC_LATIN1);
    assert_int_equal(encoding_of("\xef\xbb\xbfName\n", 8), SL_ENC_UTF8);
    assert_int_equal(encoding_of("\xff\xfeN\0a\0", 6), SL_ENC_UTF8);
    assert_int_equal(encoding_of("", 0), SL_ENC_UTF8);
    /* a UTF-8 character across the first block's end */
    size_t n = 65536 + 10;
    char *big = malloc(n);
    memset(big, 'a', n);
    memcpy(big + 65535, "\xc3\xb6", 2);
    assert_int_equal(encoding_of(big, n), SL_ENC_UTF8);
    /* a cut-off character at the very end */
    big[n - 1] = '\xc3';
    assert_int_equal(encoding_of(big, n), SL_ENC_LATIN1);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fold),           cmocka_unit_test(test_ident),
        cmocka_unit_test(test_name_scores),    cmocka_unit_test(test_erp_job),
        cmocka_unit_test(test_values_only),    cmocka_unit_test(test_values_against_name),
        cmocka_unit_test(test_one_to_one),     cmocka_unit_test(test_required_first),
        cmocka_unit_test(test_mapping_forms),  cmocka_unit_test(test_propose),
        cmocka_unit_test(test_propose_no_key), cmocka_unit_test(test_job_doc),
        cmocka_unit_test(test_sample_bounds),  cmocka_unit_test(test_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
