/*
 * Unit tests of the template language (template.c): column copies, field
 * references and their registration in sl_refs, literal text, constants,
 * row['...'], filter chains, the missing-value rule of whole templates and
 * every compile error with its message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/template.h"

static struct sl_arena arena;
static char errbuf[256];

/* Compiles src, evaluates it over row (name, value pairs, NULL-terminated)
 * and returns the value (in the arena, NULL: missing). */
static const char *ev(const char *src, const char *const *row)
{
    struct sl_refs refs = {0};
    struct sl_template *tpl = sl_template_compile(src, &refs, errbuf, sizeof(errbuf));
    if (!tpl)
        fail_msg("compile '%s': %s", src, errbuf);
    const char *vals[32] = {0}, *out, *err;
    assert_true(refs.n <= 32);
    for (size_t i = 0; i < refs.n; i++)
        for (size_t k = 0; row && row[k]; k += 2)
            if (!strcmp(refs.names[i], row[k]))
                vals[i] = row[k + 1];
    struct sl_eval_ctx ctx = {NULL, NULL, 0, &arena};
    int rc = sl_template_eval(tpl, vals, &ctx, &out, &err);
    if (rc)
        fail_msg("eval '%s': %s", src, err ? err : "?");
    if (out)
        out = sl_arena_strdup(&arena, out);
    sl_template_destroy(tpl);
    sl_refs_cleanup(&refs);
    return out;
}

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

static int setup(void **state)
{
    sl_arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    sl_arena_cleanup(&arena);
    return 0;
}

static void test_column(void **state)
{
    struct sl_refs refs = {0};
    struct sl_template *tpl = sl_template_compile("Filiale", &refs, errbuf, sizeof(errbuf));
    assert_non_null(tpl);
    size_t ref = 99;
    assert_true(sl_template_is_column(tpl, &ref));
    assert_int_equal(ref, 0);
    assert_int_equal(refs.n, 1);
    assert_string_equal(refs.names[0], "Filiale");
    const char *vals[] = {"42"}, *out, *err;
    struct sl_eval_ctx ctx = {NULL, NULL, 0, &arena};
    assert_int_equal(sl_template_eval(tpl, vals, &ctx, &out, &err), 0);
    assert_string_equal(out, "42");
    vals[0] = "";
    assert_int_equal(sl_template_eval(tpl, vals, &ctx, &out, &err), 0);
    assert_null(out);
    vals[0] = NULL;
    assert_int_equal(sl_template_eval(tpl, vals, &ctx, &out, &err), 0);
    assert_null(out);
    sl_template_destroy(tpl);

    /* "}}" alone and spaces do not make a template */
    tpl = sl_template_compile("Store }} Name", &refs, errbuf, sizeof(errbuf));
    assert_true(sl_template_is_column(tpl, &ref));
    assert_int_equal(ref, 1);
    assert_string_equal(refs.names[1], "Store }} Name");
    sl_template_destroy(tpl);

    tpl = sl_template_compile("{{ Filiale }}", &refs, errbuf, sizeof(errbuf));
    assert_false(sl_template_is_column(tpl, &ref));
    assert_false(sl_template_is_column(NULL, &ref));
    sl_template_destroy(tpl);
    sl_template_destroy(NULL);
    sl_refs_cleanup(&refs);
    sl_refs_cleanup(&refs);
}

static void test_refs(void **state)
{
    struct sl_refs refs = {0};
    const char *srcs[] = {
        "{{ Name | trim }}",
        "{{ row['E-Mail'] | lower }}",
        "{{ Name }} ({{ address.city }})",
        "{{ x | coalesce(row[\"Other Col\"], Name, 'c') }}",
        "E-Mail",
    };
    for (size_t i = 0; i < sizeof(srcs) / sizeof(srcs[0]); i++) {
        struct sl_template *tpl = sl_template_compile(srcs[i], &refs, errbuf, sizeof(errbuf));
        if (!tpl)
            fail_msg("%s: %s", srcs[i], errbuf);
        sl_template_destroy(tpl);
    }
    const char *want[] = {"Name", "E-Mail", "address.city", "x", "Other Col"};
    assert_int_equal(refs.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(refs.names[i], want[i]);
    sl_refs_cleanup(&refs);
    assert_int_equal(refs.n, 0);
    assert_null(refs.names);
}

static void test_literals(void **state)
{
    const char *row[] = {"Filiale",
                         "42",
                         "Name",
                         "  Berlin Mitte ",
                         "E-Mail",
                         "Ops@X.DE",
                         "Stra\xc3\237e",
                         "Hauptstr. 1",
                         "empty",
                         "",
                         NULL};
    assert_string_equal(ev("ID-{{ Filiale }}", row), "ID-42");
    assert_string_equal(ev("{{ Filiale }}/{{ Name | trim }}!", row), "42/Berlin Mitte!");
    assert_string_equal(ev("{{Name|trim|upper}}", row), "BERLIN MITTE");
    assert_string_equal(ev("{{ row['E-Mail'] | lower }}", row), "ops@x.de");
    assert_string_equal(ev("{{ row [ \"E-Mail\" ] }}", row), "Ops@X.DE");
    assert_string_equal(ev("{{ Stra\xc3\237e }}", row), "Hauptstr. 1");
    assert_string_equal(ev("a }} b {{ Filiale }}", row), "a }} b 42");
    assert_string_equal(ev("{{ '{{' }} x }}", row), "{{ x }}");
    /* missing pieces of a template with text render as "" ... */
    assert_string_equal(ev("{{ Filiale }} {{ nope }}", row), "42 ");
    assert_string_equal(ev("<{{ empty }}|{{ Filiale }}>", row), "<|42>");
    /* ... unless every piece is missing */
    assert_null(ev("{{ nope }} {{ empty }}", row));
    assert_null(ev("ID-{{ nope }}", row));
    assert_null(ev("{{ nope }}", row));
    assert_null(ev("{{ empty }}", row));
    assert_null(ev("{{ row['nope'] | upper }}", row));
    /* many pieces */
    assert_string_equal(ev("{{ Filiale }}.{{ Filiale }}.{{ Filiale }}.{{ Filiale }}.{{ Filiale }}."
                           "{{ Filiale }}.{{ Filiale }}.{{ Filiale }}.{{ Filiale }}.{{ Filiale }}",
                           row),
                        "42.42.42.42.42.42.42.42.42.42");
}

static void test_constants(void **state)
{
    assert_string_equal(ev("{{ 'DE' }}", NULL), "DE");
    assert_string_equal(ev("{{ \"it's\" }}", NULL), "it's");
    assert_string_equal(ev("{{ 'it\\'s' }}", NULL), "it's");
    assert_string_equal(ev("{{ 'a\\\\b' }}", NULL), "a\\b");
    assert_string_equal(ev("{{ 'a\\.b' }}", NULL), "a\\.b");
    assert_string_equal(ev("{{ 'a}}b' }}", NULL), "a}}b");
    assert_string_equal(ev("{{ 42 }}", NULL), "42");
    assert_string_equal(ev("{{ -1.5 }}", NULL), "-1.5");
    assert_string_equal(ev("{{ 'de' | upper }}", NULL), "DE");
    assert_null(ev("{{ '' }}", NULL));
    assert_null(ev("x{{ '' }}", NULL)); /* every piece missing */
    assert_string_equal(ev("{{ '' | default('d') }}", NULL), "d");
    /* a field named like a keyword or with digits */
    const char *row[] = {"row", "r", "2020", "y", "tags.0", "t", "a-b", "ab", NULL};
    assert_string_equal(ev("{{ row }}", row), "r");
    assert_string_equal(ev("{{ row['2020'] }}", row), "y");
    assert_string_equal(ev("{{ 2020 }}", row), "2020");
    assert_string_equal(ev("{{ tags.0 }}", row), "t");
    assert_string_equal(ev("{{ a-b }}", row), "ab");
}

static void test_chains(void **state)
{
    const char *row[] = {"Status", "OPEN", "Other", "o", NULL};
    assert_string_equal(ev("{{ Status | lower | default('open') }}", row), "open");
    assert_string_equal(ev("{{ nope | lower | default('open') }}", row), "open");
    assert_string_equal(ev("{{ nope | default(Other) | upper }}", row), "O");
    assert_string_equal(ev("{{ nope | upper | coalesce(row['Other']) | upper }}", row), "O");
    assert_null(ev("{{ nope | trim | lower | upper }}", row));
    assert_string_equal(ev("{{ Status | replace('O', '0') | truncate(3) | lower }}", row), "0pe");
    assert_string_equal(ev("{{ Status\n|\tlower\n}}", row), "open");
}

static void test_eval_error(void **state)
{
    struct sl_refs refs = {0};
    struct sl_template *tpl =
        sl_template_compile("on {{ d | date('%d.%m.%Y') }}", &refs, errbuf, sizeof(errbuf));
    assert_non_null(tpl);
    const char *vals[] = {"31.02.2020"}, *out = "x", *err = NULL;
    struct sl_eval_ctx ctx = {NULL, NULL, 0, &arena};
    assert_int_equal(sl_template_eval(tpl, vals, &ctx, &out, &err), SL_ERR_INVALID);
    assert_string_equal(err, "date: '31.02.2020' is not a valid date for format '%d.%m.%Y'");
    vals[0] = "29.02.2020";
    assert_int_equal(sl_template_eval(tpl, vals, &ctx, &out, &err), 0);
    assert_string_equal(out, "on 2020-02-29");
    sl_template_destroy(tpl);
    sl_refs_cleanup(&refs);
}

static void test_compile_errors(void **state)
{
    assert_string_equal(compile_err("{{ Name"), "unclosed '{{' at offset 0");
    assert_string_equal(compile_err("abc {{ Name | trim "), "unclosed '{{' at offset 4");
    assert_string_equal(compile_err("a {{ Name }} {{"), "unclosed '{{' at offset 13");
    assert_string_equal(compile_err("x {{ }}"), "empty expression at offset 2");
    assert_string_equal(compile_err("{{}}"), "empty expression at offset 0");
    assert_string_equal(compile_err("{{ Name | lowr }}"),
                        "unknown filter 'lowr' (did you mean 'lower'?)");
    assert_string_equal(compile_err("{{ Name | datetme('%F') }}"),
                        "unknown filter 'datetme' (did you mean 'datetime'?)");
    assert_string_equal(compile_err("{{ Name | frobnicate }}"),
                        "unknown filter 'frobnicate' at offset 10");
    assert_string_equal(compile_err("{{ a | truncate }}"), "filter 'truncate' takes 1 argument");
    assert_string_equal(compile_err("{{ a | trim(1) }}"), "filter 'trim' takes no arguments");
    assert_string_equal(compile_err("{{ a | trim() | replace('a') }}"),
                        "filter 'replace' takes 2 arguments");
    assert_string_equal(compile_err("{{ 'abc }}"), "unterminated string at offset 3");
    assert_string_equal(compile_err("{{ row['X\"] }}"), "unterminated string at offset 7");
    assert_string_equal(compile_err("{{ a b }}"), "expected '|' or '}}' at offset 5, found 'b'");
    assert_string_equal(compile_err("{{ a } }}"), "expected '|' or '}}' at offset 5, found '}'");
    assert_string_equal(compile_err("{{ a | }}"),
                        "expected a filter name after '|' at offset 7, found '}'");
    assert_string_equal(compile_err("{{ a | replace('x' 'y') }}"),
                        "expected ',' or ')' at offset 19, found '''");
    assert_string_equal(compile_err("{{ a | replace('x', "),
                        "expected a field name, row['...'] or a quoted constant at offset 20, "
                        "found the end");
    assert_string_equal(compile_err("{{ a | replace('x', 'y' }}"),
                        "expected ',' or ')' at offset 24, found '}'");
    assert_string_equal(compile_err("{{ a | replace('x', 'y'"),
                        "unclosed '(' of filter 'replace' at offset 7");
    assert_string_equal(compile_err("{{ row[X] }}"),
                        "expected a quoted column name after 'row[' at offset 7");
    assert_string_equal(compile_err("{{ row['X' }}"), "expected ']' at offset 11, found '}'");
    assert_string_equal(compile_err("{{ row[''] }}"), "empty column name at offset 7");
    assert_string_equal(compile_err("{{ !x }}"),
                        "expected a field name, row['...'] or a quoted constant at offset 3, "
                        "found '!'");
    assert_string_equal(compile_err("{{ -x }}"), "expected a number at offset 3");
    assert_string_equal(compile_err("{{ 'a' 'b' }}"),
                        "expected '|' or '}}' at offset 7, found '''");
    assert_string_equal(compile_err(""), "the mapping is empty");
    assert_string_equal(compile_err("{{ x | upper }} {{ y | lookup(t) }}"),
                        "lookup: the table name must be a quoted constant");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eval_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compile_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
