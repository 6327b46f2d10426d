/*
 * Unit tests of the mapping filters (filter.c through template.h): each
 * filter with a normal value, a missing one and awkward input (impossible
 * dates, German numbers, leap days, daylight-saving changes, multi-byte
 * text), and the compile-time checks of their arguments.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/template.h"
#include "sluice/tz.h"

static struct sl_arena arena;
static struct sl_job *test_job; /* lookups and zone of the ctx; NULL: none */
static const char *test_key = "key";
static char errbuf[256];

/* Compiles src and evaluates it over the row given as name, value pairs
 * (NULL-terminated). Returns the eval result; *out and *err live in the arena
 * until the next call. A compile error fails the test. */
static int eval_row(const char *src, const char *const *row, const char **out, const char **err)
{
    struct sl_refs refs = {0};
    sl_arena_reset(&arena);
    struct sl_template *tpl = sl_template_compile(src, &refs, errbuf, sizeof(errbuf));
    if (!tpl)
        fail_msg("compile '%s': %s", src, errbuf);
    const char *vals[16] = {0};
    assert_true(refs.n <= 16);
    for (size_t i = 0; i < refs.n; i++)
        for (size_t k = 0; row && row[k]; k += 2)
            if (!strcmp(refs.names[i], row[k]))
                vals[i] = row[k + 1];
    struct sl_eval_ctx ctx = {test_job, test_key, test_key ? strlen(test_key) : 0, &arena};
    *err = NULL;
    int rc = sl_template_eval(tpl, vals, &ctx, out, err);
    if (*out) /* outlive the template */
        *out = sl_arena_strdup(&arena, *out);
    sl_template_destroy(tpl);
    sl_refs_cleanup(&refs);
    return rc;
}

/* The value of src over a row where x is v (NULL: missing). */
static const char *ev(const char *src, const char *v)
{
    const char *row[] = {"x", v, NULL}, *out, *err;
    int rc = eval_row(src, row, &out, &err);
    if (rc)
        fail_msg("eval '%s' on '%s': %s", src, v ? v : "(missing)", err ? err : "?");
    return out;
}

/* The error message of src over x = v (the eval must fail). */
static const char *ev_err(const char *src, const char *v)
{
    const char *row[] = {"x", v, NULL}, *out, *err;
    int rc = eval_row(src, row, &out, &err);
    if (rc != SL_ERR_INVALID)
        fail_msg("eval '%s' on '%s' should fail, gave '%s'", src, v, out ? out : "(missing)");
    assert_non_null(err);
    return err;
}

/* The compile error of src (compiling must fail). */
static const char *compile_err(const char *src)
{
    struct sl_refs refs = {0};
    errbuf[0] = '\0';
    struct sl_template *tpl = sl_template_compile(src, &refs, errbuf, sizeof(errbuf));
    sl_refs_cleanup(&refs);
    if (tpl) {
        sl_template_destroy(tpl);
        fail_msg("'%s' should not compile", src);
    }
    return errbuf;
}

#define assert_ev(src, in, want) assert_string_equal(ev(src, in), want)
#define assert_missing(src, in)  assert_null(ev(src, in))
#define assert_has(s, part)                                                                        \
    do {                                                                                           \
        if (!strstr(s, part))                                                                      \
            fail_msg("'%s' does not contain '%s'", s, part);                                       \
    } while (0)

static int setup(void **state)
{
    sl_arena_init(&arena);
    test_job = NULL;
    test_key = "key";
    return 0;
}

static int teardown(void **state)
{
    sl_arena_cleanup(&arena);
    return 0;
}

static void test_trim(void **state)
{
    assert_ev("{{ x | trim }}", "  a b \t", "a b");
    assert_ev("{{ x | trim }}", "\xc2\xa0x\xe2\x80\xaf", "x"); /* nbsp, narrow nbsp */
    assert_ev("{{ x | trim }}", "abc", "abc");
    assert_missing("{{ x | trim }}", "   ");
    assert_missing("{{ x | trim }}", NULL);
    assert_missing("{{ x | trim }}", "");
}

static void test_case(void **state)
{
    assert_ev("{{ x | lower }}", "\xc3\x84\xc3\x96\xc3\x9c ABC", "\xc3\xa4\xc3\xb6\xc3\xbc abc");
    assert_ev("{{ x | lower }}", "Ops@Example.COM", "ops@example.com");
    assert_ev("{{ x | upper }}", "stra\xc3\237e", "STRASSE");
    assert_ev("{{ x | upper }}", "\xc3\xa4\xc3\xb6\xc3\xbc \xc3\xa9t\xc3\xa9",
              "\xc3\x84\xc3\x96\xc3\x9c \xc3\x89T\xc3\x89");
    assert_ev("{{ x | upper }}", "\xce\xb1\xce\xb2", "\xce\x91\xce\x92"); /* Greek */
    assert_ev("{{ x | title }}", "m\xc3\xbcller-l\xc3\274denscheidt",
              "M\xc3\xbcller-L\xc3\274denscheidt");
    assert_ev("{{ x | title }}", "\xc3\x84RGER im \xc3\234BERMUT",
              "\xc3\x84rger Im \xc3\234bermut");
    assert_ev("{{ x | title }}", "o'neil", "O'Neil");
    assert_ev("{{ x | title }}", "peter's BAR", "Peter's Bar");
    assert_ev("{{ x | title }}", "i'm d'angelo", "I'm D'Angelo");
    assert_ev("{{ x | title }}", "3rd street", "3rd Street");
    assert_missing("{{ x | upper }}", NULL);
    assert_missing("{{ x | title }}", NULL);
    /* invalid UTF-8 passes through byte by byte */
    assert_ev("{{ x | upper }}", "a\377b", "A\377B");
}

static void test_replace(void **state)
{
    assert_ev("{{ x | replace('-', '') }}", "12-34-56", "123456");
    assert_ev("{{ x | replace('a', 'bb') }}", "banana", "bbbnbbnbb");
    assert_ev("{{ x | replace('zz', 'y') }}", "banana", "banana");
    assert_missing("{{ x | replace('a', '') }}", "aaa");
    assert_missing("{{ x | replace('a', 'b') }}", NULL);
    assert_has(compile_err("{{ x | replace('', 'b') }}"), "replace: the text to replace is empty");
    /* results are bounded: 1000 matches times a 20000-byte replacement */
    static char many[1001], big[20001];
    memset(many, 'a', 1000);
    memset(big, 'b', 20000);
    const char *row[] = {"x", many, "y", big, NULL}, *out, *err;
    assert_int_equal(eval_row("{{ x | replace('a', y) }}", row, &out, &err), SL_ERR_INVALID);
    assert_has(err, "replace: the result would be longer than");
    assert_int_equal(eval_row("{{ x | regex_replace('a', y) }}", row, &out, &err), SL_ERR_INVALID);
    assert_has(err, "regex_replace: the result would be longer than");
    /* and the search is bounded: a pattern matching at every character of
     * a long value fails instead of taking quadratic time */
    static char longv[1 << 20];
    memset(longv, 'z', sizeof(longv) - 1);
    const char *row2[] = {"x", longv, NULL};
    assert_int_equal(eval_row("{{ x | regex_replace('a*', '-') }}", row2, &out, &err),
                     SL_ERR_INVALID);
    assert_has(err, "regex_replace: the pattern matches too often in this 1048575-byte value");
}

static void test_regex_replace(void **state)
{
    assert_ev("{{ x | regex_replace('[0-9]+', '#') }}", "a1b22c", "a#b#c");
    assert_ev("{{ x | regex_replace('([a-z]+)@([a-z.]+)', '\\2/\\1') }}", "ops@example.com",
              "example.com/ops");
    assert_ev("{{ x | regex_replace('x*', '-') }}", "abc", "-a-b-c-");
    assert_ev("{{ x | regex_replace('^ +| +$', '') }}", "  a b  ", "a b");
    assert_ev("{{ x | regex_replace('.', 'x') }}", "\xc3\244b", "xx"); /* UTF-8 aware */
    assert_ev("{{ x | regex_replace('\\.', ',') }}", "1.5", "1,5");
    assert_ev("{{ x | regex_replace('[[:space:]]+', ' ') }}", "a \t b", "a b");
    assert_missing("{{ x | regex_replace('.', 'x') }}", NULL);
    assert_missing("{{ x | regex_replace('.*', '') }}", "abc");
    /* the pattern from the row, compiled per row */
    const char *row[] = {"x", "a1", "p", "[0-9]", NULL}, *out, *err;
    assert_int_equal(eval_row("{{ x | regex_replace(p, '_') }}", row, &out, &err), 0);
    assert_string_equal(out, "a_");
    const char *bad[] = {"x", "a1", "p", "(", NULL};
    assert_int_equal(eval_row("{{ x | regex_replace(p, '_') }}", bad, &out, &err), SL_ERR_INVALID);
    assert_has(err, "regex_replace: invalid pattern '('");

    assert_has(compile_err("{{ x | regex_replace('(', 'x') }}"),
               "regex_replace: invalid pattern '('");
    assert_has(compile_err("{{ x | regex_replace('a', '\\1') }}"),
               "'\\1' refers to a group the pattern does not have");
    assert_has(compile_err("{{ x | regex_replace('((a{100}){100}){100}', 'x') }}"),
               "repeats too much");
    assert_has(compile_err("{{ x | regex_replace('(a)\\1', 'x') }}"), "back-references");
    assert_has(compile_err("{{ x | regex_replace('a.*?b', 'x') }}"),
               "a repetition right after a repetition ('*?')");
    assert_has(compile_err("{{ x | regex_replace('k+*+', 'x') }}"), "right after a repetition");
    assert_has(compile_err("{{ x | regex_replace('a{2}{3}', 'x') }}"), "right after a repetition");
    assert_has(compile_err("{{ x | regex_replace('a{300}', 'x') }}"),
               "repetition counts above 255");
    /* realistic patterns stay well inside the limits */
    assert_ev("{{ x | regex_replace('^([0-9]{1,3})(\\.[0-9]{1,3}){3}$', 'ip \\1') }}",
              "192.168.0.1", "ip 192");
    assert_ev("{{ x | regex_replace('^(.{0,5}).*$', '\\1') }}", "abcdefgh", "abcde");
    assert_ev("{{ x | regex_replace('[[:digit:]]{2,}', '#') }}", "a1b22c333", "a1b#c#");
}

static void test_digits_truncate(void **state)
{
    assert_ev("{{ x | digits }}", "+49 (30) 123-45", "493012345");
    assert_ev("{{ x | digits }}", "0815", "0815");
    assert_missing("{{ x | digits }}", "abc");
    assert_missing("{{ x | digits }}", NULL);

    assert_ev("{{ x | truncate(3) }}", "M\xc3\xbcller", "M\xc3\xbcl");
    assert_ev("{{ x | truncate(2) }}", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
              "\xe6\x97\xa5\xe6\x9c\xac");
    assert_ev("{{ x | truncate(10) }}", "ab", "ab");
    assert_ev("{{ x | truncate(1) }}", "\xf0\x9f\x98\x80x", "\xf0\x9f\x98\x80");
    assert_missing("{{ x | truncate(3) }}", NULL);
    assert_has(compile_err("{{ x | truncate(0) }}"), "truncate: the length must be a positive");
    assert_has(compile_err("{{ x | truncate('a') }}"), "truncate: the length must be a positive");
    assert_has(compile_err("{{ x | truncate(1.5) }}"), "truncate: the length must be a positive");
}

static void test_split(void **state)
{
    assert_ev("{{ x | split(';', 1) }}", "a;b;c", "b");
    assert_ev("{{ x | split(';', 0) }}", "a;b;c", "a");
    assert_ev("{{ x | split(';', 2) }}", "a;b;c", "c");
    assert_ev("{{ x | split(';', -1) }}", "a;b;c", "c");
    assert_ev("{{ x | split(';', -3) }}", "a;b;c", "a");
    assert_missing("{{ x | split(';', 3) }}", "a;b;c");
    assert_missing("{{ x | split(';', -4) }}", "a;b;c");
    assert_missing("{{ x | split(';', 1) }}", "a;;c");
    assert_ev("{{ x | split(', ', 1) }}", "Berlin, DE", "DE");
    assert_ev("{{ x | split(' ', 0) }}", "nosep", "nosep");
    assert_missing("{{ x | split(' ', 1) }}", "nosep");
    assert_missing("{{ x | split(' ', 0) }}", NULL);
    assert_has(compile_err("{{ x | split('', 0) }}"), "split: the separator is empty");
    assert_has(compile_err("{{ x | split(',', 'a') }}"), "split: the index must be an integer");
    assert_has(compile_err("{{ x | split(',') }}"), "filter 'split' takes 2 arguments");
}

static void test_default_coalesce(void **state)
{
    assert_ev("{{ x | default('open') }}", NULL, "open");
    assert_ev("{{ x | default('open') }}", "", "open");
    assert_ev("{{ x | default('open') }}", "closed", "closed");
    assert_ev("{{ x | default(0) }}", NULL, "0");
    assert_ev("{{ x | trim | default('n/a') }}", "   ", "n/a");
    assert_ev("{{ x | lower | default('open') }}", "OPEN", "open");

    const char *row[] = {"x", NULL, "Other", "o", "Third", "t", NULL}, *out, *err;
    assert_int_equal(eval_row("{{ x | coalesce(row['Other']) }}", row, &out, &err), 0);
    assert_string_equal(out, "o");
    assert_int_equal(eval_row("{{ x | coalesce(row['None'], Third, 'c') }}", row, &out, &err), 0);
    assert_string_equal(out, "t");
    assert_int_equal(eval_row("{{ x | coalesce(row['None'], 'c') }}", row, &out, &err), 0);
    assert_string_equal(out, "c");
    assert_int_equal(eval_row("{{ x | coalesce(row['None']) }}", row, &out, &err), 0);
    assert_null(out);
    assert_int_equal(eval_row("{{ Third | coalesce(row['Other']) }}", row, &out, &err), 0);
    assert_string_equal(out, "t");
    /* the default comes from the row */
    assert_int_equal(eval_row("{{ x | default(Other) | upper }}", row, &out, &err), 0);
    assert_string_equal(out, "O");
    assert_has(compile_err("{{ x | coalesce }}"), "filter 'coalesce' takes 1 to");
}

static void test_date(void **state)
{
    assert_ev("{{ x | date('%d.%m.%Y') }}", "31.12.2025", "2025-12-31");
    assert_ev("{{ x | date('%d.%m.%Y') }}", "1.2.2020", "2020-02-01");
    assert_ev("{{ x | date('%d.%m.%Y') }}", " 29.02.2020 ", "2020-02-29");
    assert_ev("{{ x | date('%d.%m.%Y') }}", "29.02.2000", "2000-02-29");
    assert_string_equal(ev_err("{{ x | date('%d.%m.%Y') }}", "31.02.2020"),
                        "date: '31.02.2020' is not a valid date for format '%d.%m.%Y'");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "29.02.2019"), "'29.02.2019' is not a valid");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "29.02.1900"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "31.04.2020"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "00.01.2020"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "1.13.2020"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "31.12.2025x"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "31.12.25"), "is not a valid date");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "tomorrow"), "is not a valid date");
    /* ISO dates (spreadsheet cells) are accepted whatever the format */
    assert_ev("{{ x | date('%d.%m.%Y') }}", "2025-12-31", "2025-12-31");
    assert_ev("{{ x | date('%d.%m.%Y') }}", "2025-12-31T14:30:00", "2025-12-31");
    assert_has(ev_err("{{ x | date('%d.%m.%Y') }}", "2025-02-30"), "is not a valid date");
    /* month names, English and German */
    assert_ev("{{ x | date('%d. %B %Y') }}", "3. M\xc3\xa4rz 2025", "2025-03-03");
    assert_ev("{{ x | date('%d. %B %Y') }}", "3. M\xc3\x84RZ 2025", "2025-03-03");
    assert_ev("{{ x | date('%d. %B %Y') }}", "1. Oktober 2024", "2024-10-01");
    assert_ev("{{ x | date('%d %b %y') }}", "12 Dec 25", "2025-12-12");
    assert_ev("{{ x | date('%d %b %y') }}", "12 dez 99", "1999-12-12");
    assert_ev("{{ x | date('%b %d, %Y') }}", "Jan. 5, 2024", "2024-01-05");
    assert_ev("{{ x | date('%a, %d %b %Y %H:%M:%S %z') }}", "Wed, 31 Dec 2025 23:00:00 +0100",
              "2025-12-31");
    assert_has(ev_err("{{ x | date('%d %B %Y') }}", "3 Mayday 2025"), "is not a valid date");
    /* day of the year, US form with AM/PM, %e, %F */
    assert_ev("{{ x | date('%Y-%j') }}", "2024-060", "2024-02-29");
    assert_has(ev_err("{{ x | date('%Y-%j') }}", "2023-366"), "is not a valid date");
    assert_ev("{{ x | date('%m/%d/%Y %I:%M %p') }}", "12/31/2025 11:30 PM", "2025-12-31");
    assert_ev("{{ x | date('%e.%m.%Y') }}", " 5.06.2025", "2025-06-05");
    assert_ev("{{ x | date('%F') }}", "2025-06-05", "2025-06-05");
    assert_ev("{{ x | date('%Y%m%d') }}", "20250605", "2025-06-05");
    assert_missing("{{ x | date('%d.%m.%Y') }}", NULL);

    assert_has(compile_err("{{ x | date('%d.%m') }}"), "needs a year, a month and a day");
    assert_has(compile_err("{{ x | date('%Q') }}"), "date: unsupported directive '%Q'");
    assert_has(compile_err("{{ x | date('%d.%m.%Y%') }}"), "ends with a lone '%'");
    assert_has(compile_err("{{ x | date(fmt) }}"), "date: the format must be a quoted constant");
    assert_has(compile_err("{{ x | date('%d.%m.%Y %I:%M') }}"), "%I and %p together");
    assert_has(compile_err("{{ x | date }}"), "filter 'date' takes 1 argument");
}

static void test_datetime(void **state)
{
    const char *berlin = "{{ x | datetime('%d.%m.%Y %H:%M', 'Europe/Berlin') }}";
    assert_ev(berlin, "31.12.2025 23:00", "2025-12-31T22:00:00Z");
    assert_ev(berlin, "30.06.2025 12:00", "2025-06-30T10:00:00Z");
    assert_ev(berlin, "01.01.2026 00:30", "2025-12-31T23:30:00Z");
    /* spring forward: 02:30 does not exist and becomes 03:30 CEST */
    assert_ev(berlin, "30.03.2025 02:30", "2025-03-30T01:30:00Z");
    assert_ev(berlin, "30.03.2025 01:59", "2025-03-30T00:59:00Z");
    assert_ev(berlin, "30.03.2025 03:00", "2025-03-30T01:00:00Z");
    /* fall back: 02:30 happens twice, the first (CEST) wins */
    assert_ev(berlin, "26.10.2025 02:30", "2025-10-26T00:30:00Z");
    assert_ev(berlin, "26.10.2025 03:00", "2025-10-26T02:00:00Z");
    assert_has(ev_err(berlin, "31.02.2025 10:00"),
               "datetime: '31.02.2025 10:00' is not a valid date and time");
    assert_has(ev_err(berlin, "31.12.2025 24:00"), "is not a valid date and time");
    assert_has(ev_err(berlin, "31.12.2025 23:60"), "is not a valid date and time");
    assert_missing(berlin, NULL);

    /* no zone: the job's, else UTC */
    assert_ev("{{ x | datetime('%d.%m.%Y %H:%M:%S') }}", "31.12.2025 23:00:00",
              "2025-12-31T23:00:00Z");
    struct sl_job job;
    memset(&job, 0, sizeof(job));
    job.tz = (struct sl_tz *)sl_tz_get("Europe/Berlin", errbuf, sizeof(errbuf));
    assert_non_null(job.tz);
    test_job = &job;
    assert_ev("{{ x | datetime('%d.%m.%Y %H:%M:%S') }}", "31.12.2025 23:00:00",
              "2025-12-31T22:00:00Z");
    assert_ev("{{ x | datetime('%d.%m.%Y') }}", "01.07.2025", "2025-06-30T22:00:00Z");
    /* an offset in the value wins over every zone */
    assert_ev("{{ x | datetime('%Y-%m-%dT%H:%M:%S%z', 'America/New_York') }}",
              "2025-12-31T23:00:00+01:00", "2025-12-31T22:00:00Z");
    assert_ev("{{ x | datetime('%Y-%m-%d %H:%M %z') }}", "2025-12-31 23:00 -0530",
              "2026-01-01T04:30:00Z");
    assert_ev("{{ x | datetime('%d.%m.%Y') }}", "2025-12-31T23:00:00Z", "2025-12-31T23:00:00Z");
    assert_ev("{{ x | datetime('%d.%m.%Y') }}", "2025-12-31T23:00:00.250Z",
              "2025-12-31T23:00:00.25Z");
    assert_ev("{{ x | datetime('%d.%m.%Y') }}", "2025-06-30", "2025-06-29T22:00:00Z");
    /* the zone from the row */
    const char *row[] = {"x", "31.12.2025 23:00", "zone", "America/New_York", NULL}, *out, *err;
    assert_int_equal(eval_row("{{ x | datetime('%d.%m.%Y %H:%M', zone) }}", row, &out, &err), 0);
    assert_string_equal(out, "2026-01-01T04:00:00Z");
    const char *bad[] = {"x", "31.12.2025 23:00", "zone", "Mars/Olympus", NULL};
    assert_int_equal(eval_row("{{ x | datetime('%d.%m.%Y %H:%M', zone) }}", bad, &out, &err),
                     SL_ERR_INVALID);
    assert_string_equal(err, "datetime: unknown time zone 'Mars/Olympus'");
    test_job = NULL;

    assert_has(compile_err("{{ x | datetime('%d.%m.%Y', 'Mars/Olympus') }}"),
               "datetime: unknown time zone 'Mars/Olympus'");
    assert_has(compile_err("{{ x | datetime('%H:%M') }}"), "needs a year, a month and a day");
    assert_has(compile_err("{{ x | datetime('%d.%m.%Y', 'UTC', 'x') }}"),
               "filter 'datetime' takes 1 or 2 arguments");
}

static void test_number(void **state)
{
    const char *de = "{{ x | number('de') }}", *en = "{{ x | number('en') }}";
    assert_ev(de, "1.234,56", "1234.56");
    assert_ev(de, "-0,5", "-0.5");
    assert_ev(de, "1.234.567,89", "1234567.89");
    assert_ev(de, "1234,5", "1234.5");
    assert_ev(de, "1234.5", "1234.5"); /* plain form */
    assert_ev(de, "1.234", "1234");
    assert_ev(de, "0.001", "0.001");
    assert_ev(de, "0,50", "0.50");
    assert_ev(de, ",5", "0.5");
    assert_ev(de, "+5", "5");
    assert_ev(de, "007", "7");
    assert_ev(de, "-0", "0");
    assert_ev(de, "-0,00", "0.00");
    assert_ev(de, " 1 234,56 ", "1234.56");
    assert_ev(de, "1\xc2\240234,56", "1234.56");
    assert_ev(de, "1.234,56-", "-1234.56");
    assert_has(ev_err(de, "1.23.4,5"), "number: '1.23.4,5' is not a number in locale 'de'");
    assert_has(ev_err(de, "1.2345,6"), "is not a number");
    assert_has(ev_err(de, "12a"), "is not a number");
    assert_has(ev_err(de, "5,"), "is not a number");
    assert_has(ev_err(de, "1,234.56"), "is not a number");
    assert_has(ev_err(de, "5 \xe2\x82\xac"), "is not a number");
    assert_has(ev_err(de, "1e5"), "is not a number");
    assert_has(ev_err(de, "--5"), "is not a number");
    assert_has(ev_err(de, "1.234 567,5"), "is not a number");
    assert_has(ev_err(de, "-"), "is not a number");
    assert_missing(de, NULL);

    assert_ev(en, "1,234.56", "1234.56");
    assert_ev(en, "1234.5", "1234.5");
    assert_ev(en, "-1,234,567.891", "-1234567.891");
    assert_has(ev_err(en, "1,5"), "is not a number in locale 'en'");
    assert_has(ev_err(en, "1.234,56"), "is not a number");
    assert_ev("{{ x | number('fr') }}", "1 234,56", "1234.56");
    assert_ev("{{ x | number('de-CH') }}", "1'234.56", "1234.56");

    assert_has(compile_err("{{ x | number('xx') }}"), "number: unknown locale 'xx'");
    assert_has(compile_err("{{ x | number }}"), "filter 'number' takes 1 argument");
}

static void test_currency_code(void **state)
{
    const char *t = "{{ x | currency_code }}";
    assert_ev(t, "\xe2\x82\xac", "EUR");
    assert_ev(t, "$", "USD");
    assert_ev(t, "\xc2\xa3", "GBP");
    assert_ev(t, "\xc2\xa5", "JPY");
    assert_ev(t, "eur", "EUR");
    assert_ev(t, " EUR ", "EUR");
    assert_ev(t, "CHF", "CHF");
    assert_ev(t, "Fr.", "CHF");
    assert_ev(t, "US$", "USD");
    assert_ev(t, "z\xc5\x82", "PLN");
    assert_ev(t, "Euro", "EUR");
    assert_string_equal(ev_err(t, "XYZ"), "currency_code: 'XYZ' is not a known currency");
    assert_has(ev_err(t, "kr"), "is not a known currency");
    assert_has(ev_err(t, "\xe2\x82\xac\xe2\x82\xac"), "is not a known currency");
    assert_missing(t, NULL);
    assert_has(compile_err("{{ x | currency_code('EUR') }}"), "takes no arguments");
}

static void test_lookup(void **state)
{
    struct sl_lookup lk = {"countries", json_pack("{s:s, s:s, s:n}", "Deutschland", "DE",
                                                  "\xc3\x96sterreich", "AT", "Unbekannt")};
    struct sl_job job;
    memset(&job, 0, sizeof(job));
    job.lookups = &lk;
    job.nlookups = 1;
    test_job = &job;
    assert_ev("{{ x | lookup('countries') }}", "Deutschland", "DE");
    assert_ev("{{ x | lookup('countries') }}", "\xc3\x96sterreich", "AT");
    assert_missing("{{ x | lookup('countries') }}", "Unbekannt"); /* null: missing */
    assert_string_equal(ev_err("{{ x | lookup('countries') }}", "Frankreich"),
                        "lookup: 'Frankreich' is not in table 'countries'");
    assert_ev("{{ x | lookup('countries', 'XX') }}", "Frankreich", "XX");
    assert_ev("{{ x | trim | lookup('countries', 'XX') }}", " Deutschland ", "DE");
    assert_missing("{{ x | lookup('countries') }}", NULL);
    const char *row[] = {"x", "Frankreich", "iso", "FR", NULL}, *out, *err;
    assert_int_equal(eval_row("{{ x | lookup('countries', iso) }}", row, &out, &err), 0);
    assert_string_equal(out, "FR");

    /* the table must exist when the job loads */
    struct sl_refs refs = {0};
    struct sl_template *tpl =
        sl_template_compile("{{ x | lookup('regions') }}", &refs, errbuf, sizeof(errbuf));
    assert_non_null(tpl);
    assert_int_equal(sl_template_check_lookups(tpl, &job, errbuf, sizeof(errbuf)), -1);
    assert_string_equal(errbuf, "unknown lookup table 'regions'");
    sl_template_destroy(tpl);
    tpl = sl_template_compile("a {{ x | trim | lookup('countries') }}", &refs, errbuf,
                              sizeof(errbuf));
    assert_non_null(tpl);
    assert_int_equal(sl_template_check_lookups(tpl, &job, errbuf, sizeof(errbuf)), 0);
    sl_template_destroy(tpl);
    sl_refs_cleanup(&refs);
    assert_has(compile_err("{{ x | lookup(table) }}"), "lookup: the table name must be a quoted");
    assert_has(compile_err("{{ x | lookup }}"), "filter 'lookup' takes 1 or 2 arguments");
    test_job = NULL;
    json_decref(lk.map);
}

static void test_hash(void **state)
{
    /* RFC 4231-style check against a well-known HMAC-SHA256 vector */
    assert_ev("{{ x | hash }}", "The quick brown fox jumps over the lazy dog",
              "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    assert_missing("{{ x | hash }}", NULL);
    test_key = NULL;
    assert_string_equal(ev_err("{{ x | hash }}", "a"), "hash needs the SLUICE_HASH_KEY secret");
    test_key = "key";
}

static void test_long_values_in_messages(void **state)
{
    char big[300];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *m = ev_err("{{ x | number('de') }}", big);
    assert_true(strlen(m) < 160);
    assert_has(m, "...' is not a number");
}

static void test_exists(void **state)
{
    static const char *const names[] = {
        "trim",     "lower",    "upper",         "title",   "replace",  "regex_replace",
        "digits",   "truncate", "split",         "default", "coalesce", "date",
        "datetime", "number",   "currency_code", "lookup",  "hash"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_true(sl_filter_exists(names[i]));
    assert_false(sl_filter_exists("lowr"));
    assert_false(sl_filter_exists(""));
    assert_false(sl_filter_exists(NULL));
}

/* Templates shared by threads: each thread its own arena and hash key. */
static struct sl_template *shared_tpl;

static void *eval_thread(void *arg)
{
    const char *key = arg;
    struct sl_arena a;
    sl_arena_init(&a);
    struct sl_eval_ctx ctx = {NULL, key, strlen(key), &a};
    const char *vals[] = {"  stra\xc3\237e 12 ", "31.12.2025 23:00"}, *out, *err;
    char first[256] = "";
    intptr_t bad = 0;
    for (int i = 0; i < 2000; i++) {
        if (sl_template_eval(shared_tpl, vals, &ctx, &out, &err) || !out) {
            bad = 1;
            break;
        }
        if (!first[0])
            snprintf(first, sizeof(first), "%s", out);
        else if (strcmp(first, out))
            bad = 1;
        sl_arena_reset(&a);
    }
    sl_arena_cleanup(&a);
    return (void *)bad;
}

static void test_threads(void **state)
{
    struct sl_refs refs = {0};
    shared_tpl =
        sl_template_compile("{{ x | trim | upper | regex_replace('[0-9]+', '#') }}/{{ x | hash }}/"
                            "{{ d | datetime('%d.%m.%Y %H:%M', 'Europe/Berlin') }}",
                            &refs, errbuf, sizeof(errbuf));
    assert_non_null(shared_tpl);
    pthread_t th[4];
    const char *keys[4] = {"k1", "k2", "k1", "k2"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, eval_thread, (void *)keys[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        assert_null(bad);
    }
    sl_template_destroy(shared_tpl);
    sl_refs_cleanup(&refs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regex_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digits_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_coalesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_date, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_currency_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_values_in_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_datetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
