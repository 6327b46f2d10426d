/*
 * Auto-mapping (`sluice suggest`): a mapping proposed from a sample of a
 * source file.
 *
 * The caller reads the file with any reader (reader.h) and hands the header
 * and the first rows to a struct sl_suggest, which keeps them (at most
 * max_rows rows and max_bytes bytes: the sample, never the file). Then
 * sl_suggest_match() profiles each column's values with the project's own
 * checkers (sl_type_check for integers, decimals, booleans, dates, e-mails,
 * URLs, phone numbers and currency codes; the mapping filters date(),
 * number() and currency_code, compiled as templates, for the forms that
 * need converting) and either matches a job's target attributes to the
 * columns (names, a built-in EN/DE synonym table, the values) or, without a
 * job, proposes a target with one attribute per column. Every proposed
 * mapping is checked by loading the proposed job (sl_job_load_json).
 *
 * Nothing here does I/O but sl_suggest_encoding(); one thread at a time.
 */
#ifndef SLUICE_SUGGEST_H
#define SLUICE_SUGGEST_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "sluice/arena.h"
#include "sluice/job.h"
#include "sluice/reader.h"

/* Defaults of sl_suggest_new. */
#define SL_SUGGEST_ROWS      1000
#define SL_SUGGEST_MAX_BYTES (64u << 20)
/* A value longer than this is kept cut (at a character boundary). */
#define SL_SUGGEST_MAX_VALUE   512
#define SL_SUGGEST_MAX_COLUMNS 16384
/* A match below this confidence is not proposed. */
#define SL_SUGGEST_MIN_CONFIDENCE 0.35
#define SL_SUGGEST_MAX_REASONS    3

/* The sample of one file being collected. */
struct sl_suggest;

/* A sample of at most max_rows rows (0: SL_SUGGEST_ROWS) and max_bytes
 * bytes of values and bookkeeping (0: SL_SUGGEST_MAX_BYTES). NULL when out
 * of memory. Destroy with sl_suggest_destroy (accepts NULL). */
struct sl_suggest *sl_suggest_new(size_t max_rows, size_t max_bytes);
void sl_suggest_destroy(struct sl_suggest *sg);

/* Registers the file's columns in header order (the formats with a header:
 * a column may have no value in the sample and still be matched). names are
 * copied. 0 or SL_ERR_NOMEM. */
int sl_suggest_header(struct sl_suggest *sg, const char *const *names, size_t n);

/* Adds one row: its values are copied under their names (a name not seen
 * before adds a column, as JSON and XML records bring them); a row with an
 * error and no values is skipped. Returns 0, 1 when the sample is full
 * (max_rows rows or max_bytes: a reader callback returns it to stop
 * reading), or SL_ERR_NOMEM. */
int sl_suggest_row(struct sl_suggest *sg, const struct sl_row *row);

/* Rows and columns in the sample. */
size_t sl_suggest_nrows(const struct sl_suggest *sg);
size_t sl_suggest_ncolumns(const struct sl_suggest *sg);

/* One proposed mapping entry: attribute <- column. */
struct sl_suggestion {
    const char *attribute;
    enum sl_type type;
    bool required;
    const char *column;
    const char *filter;  /* what the values need, "number('de')"; NULL: none */
    const char *mapping; /* the mapping entry: "Umsatz", "{{ Umsatz | number('de') }}",
                            "{{ row['Store Name'] | date('%d.%m.%Y') }}" */
    double confidence;   /* 0..1, two decimals */
    const char *reasons[SL_SUGGEST_MAX_REASONS]; /* "name", "synonym of plz",
                                                    "values: 98% e-mail" */
    size_t nreasons;
};

/* A column no attribute takes, with what its values look like. */
struct sl_suggest_column {
    const char *name;
    const char *profile; /* "values: 100% integers"; NULL: nothing to say */
};

/* An attribute of the job that no column fits. */
struct sl_suggest_attr {
    const char *name;
    bool required;
};

struct sl_suggest_result {
    /* required attributes first, then by confidence (highest first), then
     * in target order */
    struct sl_suggestion *items;
    size_t nitems;
    struct sl_suggest_column *unmatched; /* in column order */
    size_t nunmatched;
    struct sl_suggest_attr *unmapped; /* in target order */
    size_t nunmapped;
    /* without a job: the proposed target {"object", "key", "attributes"}
     * and options {"sync", ...}; NULL with a job */
    json_t *target;
    json_t *options;
    json_t *mapping; /* attribute -> mapping entry, in target order */
    size_t rows, columns;
    struct sl_arena arena; /* the strings above */
};

/* Matches the sample: with job (its target attributes; its source and
 * mapping are not read), each attribute to at most one column and each
 * column to at most one attribute, greedily by confidence; without a job,
 * one attribute per column, object named object (an identifier is made of
 * it; NULL: "records"). Returns the result (caller destroys it), or NULL
 * with errbuf set: out of memory, or "the proposed job does not load: ..."
 * (a proposed template that does not compile; a bug). The sample is only
 * read. */
struct sl_suggest_result *sl_suggest_match(const struct sl_suggest *sg, const struct sl_job *job,
                                           const char *object, char *errbuf, size_t errsz);
void sl_suggest_result_destroy(struct sl_suggest_result *res);

/* The result as the JSON document of `sluice suggest --json`:
 * {"rows", "columns", "suggestions": [{"attribute", "type", "required",
 * "column", "mapping", "confidence", "reasons"}], "unmatched_columns":
 * [names], "unmapped_attributes": [names]} and, without a job, "target".
 * A new reference; NULL when out of memory. */
json_t *sl_suggest_result_json(const struct sl_suggest_result *res);

/* The job document of `sluice suggest --write`: a deep copy of base (the
 * job file as given, or {"name", "source", ...} made by the caller) with
 * "mapping" replaced: the proposed entries, and base's own entries for the
 * attributes that got none; without a job also "target" and "options"
 * (when base has none). NULL when out of memory. */
json_t *sl_suggest_job_doc(const struct sl_suggest_result *res, const json_t *base);

/* The building blocks, exported for the tests. */

/* s folded for comparing names into out (outsz > 0): ASCII lower case,
 * ä ö ü -> ae oe ue, ß -> ss, other Latin-1 accents dropped (é -> e);
 * spaces, punctuation and symbols removed ("E-Mail" -> "email", "Store ID"
 * -> "storeid", "Eröffnung" -> "eroeffnung"). Returns out. */
char *sl_suggest_fold(const char *s, char *out, size_t outsz);

/* How well attribute name attr and column name col match by name alone:
 * 1 for the same folded name, about 0.9 for synonyms of the built-in table
 * ("zip" / "PLZ"), less for shared words, one name inside the other and
 * similar spelling; 0 for nothing in common. why (may be NULL) gets the
 * reason: "name", "synonym of plz", "similar name (store ~ filiale)",
 * "name contains email", "similar spelling". */
double sl_suggest_name_score(const char *attr, const char *col, char *why, size_t whysz);

/* An attribute name made of column name col into out (outsz >= 64):
 * folded as sl_suggest_fold but words kept apart by '_' ("Store ID" ->
 * "store_id", "StoreId" -> "store_id", "E-Mail" -> "e_mail"), [a-z0-9_]
 * only, at most 63 characters, "col_" before a leading digit, "column" for
 * nothing left. Returns out. */
char *sl_suggest_ident(const char *col, char *out, size_t outsz);

/* The encoding of a CSV file without a BOM, guessed from up to its first
 * 8 MiB (read with pread: fd's offset is left alone): SL_ENC_UTF8 when they
 * are valid UTF-8 (or start with a BOM, which the reader follows), else
 * SL_ENC_WINDOWS_1252 when they use its printable bytes 0x80-0x9f (€, „),
 * else SL_ENC_LATIN1. */
enum sl_encoding sl_suggest_encoding(int fd);

#endif
