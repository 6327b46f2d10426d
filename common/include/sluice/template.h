/*
 * Mapping templates and filters (JOBS.md "mapping").
 *
 * A mapping entry is compiled once, when the job loads:
 *   "Source Column"                 a direct copy of a column
 *   "text {{ expr | f | g(a) }} ..." a template; text outside {{ }} is literal
 * expr is a field name (Name, address.city), row['Any Column'], or a quoted
 * constant ('DE'). Filter arguments are constants, numbers or row['X'] / field
 * references. Every field a template reads is registered in the job's refs
 * (struct sl_ref) and known by its index there, so that the mapper resolves
 * column names once per header and evaluation is a plain array access.
 *
 * Syntax details:
 * - "}}" outside an expression is literal text; a literal "{{" is written as
 *   a constant: {{ '{{' }}.
 * - A field name is letters, digits, '_', '.', '-' and any non-ASCII UTF-8
 *   (Straße); a dotted path (address.city) is one name. A bare token that is
 *   a number (42, -1, 2.5) is a numeric constant: use row['2020'] for a
 *   column named like a number. `row` alone is the column "row".
 * - Quoted constants take '...' or "..."; \' \" \\ are escapes, any other
 *   backslash is kept as written (so '\.' reaches a regex unchanged).
 *
 * Evaluation follows the missing-value rule: a missing value (NULL) passes
 * through every filter unchanged except default and coalesce. An empty string
 * is a missing value wherever it appears: an empty cell of the row, the
 * constant '', and the result of a filter ("   " | trim) all become NULL.
 * A template that is a single {{ expr }} without literal text yields the
 * value itself, so a missing value stays missing. With literal text around,
 * missing pieces render as ""; but when every expression of the template is
 * missing the result is missing too ("{{ a }} {{ b }}" with a and b empty is
 * missing, not " "). A filter that cannot convert its input fails with a
 * "format" problem for the row.
 *
 * Filters beyond what JOBS.md spells out:
 * - trim strips ASCII and Unicode white space (nbsp, narrow nbsp, ...);
 *   lower/upper/title map all of Unicode (upper: ß -> SS); title starts a
 *   word after any non-alphanumeric and keeps O'Neil, D'Angelo.
 * - regex_replace: POSIX ERE matched on characters (UTF-8), every match
 *   replaced, \0..\9 in the replacement; back-references in the pattern and
 *   huge repetitions are refused at compile time.
 * - truncate(n) counts code points; split(sep, i) takes negative i from the
 *   end (-1 the last part).
 * - date(fmt), datetime(fmt[, tz]): fmt is a quoted constant with %d %e %m %Y
 *   %y (69-99 -> 19xx) %j %b %B %h (English and German month names) %a %A
 *   %H %I %p %M %S %f %z (Z, +01, +0100, +01:00) %F %T %R %D %% and literal
 *   text; a space matches one or more spaces, surrounding space is ignored.
 *   Whatever fmt says, ISO 8601 input (2025-12-31, 2025-12-31T23:00:00[Z])
 *   is accepted too (spreadsheet cells arrive so). datetime without %z uses
 *   tz (a constant or a field), else the job's zone, else UTC; a wall time in
 *   a daylight-saving gap moves forward by the gap, a repeated one takes
 *   the earlier instant (sl_tz_local_to_utc). Output: YYYY-MM-DD and
 *   YYYY-MM-DDTHH:MM:SS[.frac]Z.
 * - number(locale): 'de' (also de-DE, de-AT), 'en' (en-US, en-GB), 'fr'
 *   (space groups), 'de-CH' / 'ch' (1'234.56). Groups are 1-3 digits then
 *   exactly 3; spaces and nbsp also group; a trailing minus (SAP: 1.234,56-)
 *   is a sign; a value that is not valid in the locale but plain (1234.5) is
 *   taken as plain. Output keeps every digit: -0,50 -> -0.50, 007 -> 7.
 * - currency_code: ISO 4217 codes in any case, symbols and names (€ $ £ ¥
 *   US$ Fr. CHF zł Kč R$ ...); ambiguous ones (kr) are errors.
 * - lookup: exact match of the whole value; a JSON null in the table maps to
 *   missing.
 *
 * A compiled template is immutable and may be evaluated by any number of
 * threads at once, each with its own sl_eval_ctx.
 */
#ifndef SLUICE_TEMPLATE_H
#define SLUICE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/arena.h"

struct sl_job;
struct sl_template;

/* Collects the field references of a job while its templates compile. Start
 * zeroed ({0}); names are heap copies owned by refs (sl_refs_cleanup). */
struct sl_refs {
    char **names;
    size_t n, cap;
};

/* Compiles src. A string without "{{" is a direct column copy. Field names
 * are added to refs (once each; a name stays registered even when a later
 * part of src fails to compile). Returns a template the caller owns
 * (sl_template_destroy), or NULL with errbuf set on error: syntax errors name
 * the offset ("unclosed '{{' at offset 12", "empty expression at offset 3"),
 * filter errors name the filter ("unknown filter 'lowr' (did you mean
 * 'lower'?)", "filter 'truncate' takes 1 argument", "date: unsupported
 * directive '%Q' in format '%Q'"). Constant regexes, date formats and time
 * zones are checked and compiled here. Not thread-safe on the same refs. */
struct sl_template *sl_template_compile(const char *src, struct sl_refs *refs, char *errbuf,
                                        size_t errsz);
/* Frees tpl; accepts NULL. */
void sl_template_destroy(struct sl_template *tpl);

/* Whether tpl is a direct column copy, and of which ref index (ref may be
 * NULL). */
bool sl_template_is_column(const struct sl_template *tpl, size_t *ref);

/* Whether tpl reads exactly one field as the head of its expressions (a
 * column copy, or "{{ Umsatz | number('de') }}"), and which ref: the source
 * value a problem of the attribute is about. */
bool sl_template_input_ref(const struct sl_template *tpl, size_t *ref);

/* Whether tpl reads the field of ref index ref anywhere (an expression's
 * head or a filter's argument). */
bool sl_template_reads(const struct sl_template *tpl, size_t ref);

/* Checks that the lookup tables the template names exist in job (called by
 * the job loader once lookups are known). 0 or -1 with errbuf set ("unknown
 * lookup table 'countries'"). */
int sl_template_check_lookups(const struct sl_template *tpl, const struct sl_job *job, char *errbuf,
                              size_t errsz);

/* What evaluation needs besides the row. */
struct sl_eval_ctx {
    const struct sl_job *job; /* lookups, timezone; may be NULL (no lookups, UTC) */
    const char *hash_key;     /* HMAC key of the hash filter; NULL: hash fails */
    size_t hash_key_len;
    struct sl_arena *arena; /* results and scratch live here */
};

/* Evaluates tpl over a row whose referenced values are vals[ref index] (NULL
 * or "": missing). On success *out is the value (NULL: missing) and 0 is
 * returned. On a conversion failure returns SL_ERR_INVALID with *errmsg set
 * (in the arena: "date: '31.02.2020' is not a valid date for format
 * '%d.%m.%Y'"); SL_ERR_NOMEM when the arena is exhausted. *out is borrowed:
 * it points into the arena, into vals, into tpl or into the job's lookups,
 * and lives as long as the shortest of those. Allocates only from
 * ctx->arena (regex_replace with a pattern read from the row compiles it per
 * row). Thread-safe for distinct ctx. */
int sl_template_eval(const struct sl_template *tpl, const char *const *vals,
                     struct sl_eval_ctx *ctx, const char **out, const char **errmsg);

/* Frees the names of refs and leaves it empty; accepts a zeroed refs. */
void sl_refs_cleanup(struct sl_refs *refs);

/* Whether name is a filter of JOBS.md. */
bool sl_filter_exists(const char *name);

#ifdef SL_TEMPLATE_INTERNAL
/*
 * Private to template.c (parser, evaluator) and filter.c (the filters).
 */
#include <regex.h>

struct sl_tz;

#define SL_FILTER_MAX_ARGS 16

enum sl_operand_kind { SL_OPERAND_CONST = 0, SL_OPERAND_FIELD };

/* A constant or a field reference: an expression's head or a filter argument. */
struct sl_operand {
    enum sl_operand_kind kind;
    size_t ref;    /* FIELD: index in the refs */
    char *str;     /* CONST: the text, NULL for '' (missing); owned */
    bool is_int;   /* CONST: an integer number */
    long long num; /* its value */
    size_t off;    /* offset in the template source */
};

enum sl_filter_id {
    SL_F_TRIM = 0,
    SL_F_LOWER,
    SL_F_UPPER,
    SL_F_TITLE,
    SL_F_REPLACE,
    SL_F_REGEX_REPLACE,
    SL_F_DIGITS,
    SL_F_TRUNCATE,
    SL_F_SPLIT,
    SL_F_DEFAULT,
    SL_F_COALESCE,
    SL_F_DATE,
    SL_F_DATETIME,
    SL_F_NUMBER,
    SL_F_CURRENCY_CODE,
    SL_F_LOOKUP,
    SL_F_HASH,
};

struct sl_filter_def;

/* One filter of an expression, with what its prepare hook compiled. */
struct sl_fcall {
    const struct sl_filter_def *def;
    size_t off; /* of the filter name in the source */
    struct sl_operand *args;
    size_t nargs;
    regex_t re; /* regex_replace with a constant pattern */
    bool has_re;
    const struct sl_tz *tz; /* datetime with a constant zone */
    int mode;               /* number: the locale */
};

struct sl_filter_def {
    const char *name;
    enum sl_filter_id id;
    unsigned min_args, max_args;
    bool sees_missing; /* called for a missing input (default, coalesce) */
    /* Checks constant arguments and compiles what it can; 0 or -1 with
     * errbuf set. NULL: nothing to check. */
    int (*prepare)(struct sl_fcall *fc, char *errbuf, size_t errsz);
    /* args[i] is the value of fc->args[i] (NULL: missing). */
    int (*apply)(const struct sl_fcall *fc, const char *in, const char *const *args,
                 struct sl_eval_ctx *ctx, const char **out, const char **errmsg);
};

/* The filter named by the len bytes at name, or NULL. */
const struct sl_filter_def *sl_filter_find(const char *name, size_t len);
/* The filter name closest to the len bytes at name, or NULL when none is close. */
const char *sl_filter_suggest(const char *name, size_t len);
/* Frees what prepare compiled into fc (not fc->args). */
void sl_filter_release(struct sl_fcall *fc);
#endif

#endif
