/*
 * gen_formats: the same deterministic store rows as CSV, a JSON array,
 * NDJSON or XML, for the format benchmark (tests/bench/bench_formats.sh) and
 * the bad-input tests (tests/cli/test_bad_input.sh).
 *
 * Every format carries the same seven fields of the same rows, named alike
 * (id, name, city, opened, revenue, email, status), so that one mapping reads
 * them all: CSV with a header, ',' and LF, quoting the names that need it;
 * a top-level JSON array of flat objects, one a line, revenue a JSON number;
 * NDJSON, the same objects without the array; XML, <stores><store><id>...
 * with one child element a field. The text is UTF-8 and about one row in
 * fifty needs escaping in its format (a quote, a comma, '&' and '<'). Every
 * row is valid for tests/bench/bench_formats.sh's job: a run publishes them
 * all. The output depends only on ROWS and SEED (splitmix64, never rand())
 * and is written as it is made, so any size takes a few MB of memory.
 *
 * Usage: gen_formats FORMAT ROWS [SEED] > FILE
 *        gen_formats --bytes N[K|M|G] FORMAT [SEED] > FILE
 * FORMAT is csv, json, ndjson or xml. --bytes writes rows until the output
 * holds at least N bytes (K, M, G: powers of 1024), then closes the document.
 * A summary line goes to stderr: "gen_formats: format=csv rows=N bytes=B".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_ROWS_PROG "gen_formats"
#include "gen_rows.h"

#define ROW_MAX 1024 /* bytes of one row in any format, with room to spare */

enum format { FMT_CSV, FMT_JSON, FMT_NDJSON, FMT_XML };

static const char *const format_names[] = {"csv", "json", "ndjson", "xml"};

/* UTF-8 city names: a few bytes outside ASCII in most rows */
static const char *const cities[] = {
    "Berlin",    "Hamburg",         "M\xc3\xbcnchen", "K\xc3\xb6ln",    "Frankfurt",
    "Stuttgart", "Leipzig",         "Dresden",        "Bremen",         "D\xc3\xbcsseldorf",
    "Hannover",  "N\xc3\xbcrnberg", "Essen",          "M\xc3\xbcnster",
};
#define NCITIES (sizeof(cities) / sizeof(cities[0]))

/* "S\303\274d": octal, since a hex escape would swallow the d */
static const char *const quarters[] = {"Mitte", "Nord", "S\303\274d", "Markt", "Altstadt"};
#define NQUARTERS (sizeof(quarters) / sizeof(quarters[0]))

/* One row's values, as text (UTF-8, unescaped). */
struct row {
    char id[24];
    char name[128];
    const char *city;
    char opened[16];
    char revenue[32];
    char email[64];
    const char *status;
};

static void make_row(uint64_t store, struct row *r)
{
    const char *city = cities[rng_below(NCITIES)];
    uint32_t x = rng_below(100);

    snprintf(r->id, sizeof(r->id), "%" PRIu64, store);
    if (x == 0) /* a quote, a comma, '&' and '<': escaping in every format */
        snprintf(r->name, sizeof(r->name), "\"M\xc3\xbcller & S\xc3\xb6hne\", <%s>", city);
    else if (x % 4 == 1)
        snprintf(r->name, sizeof(r->name), "Filiale %s %s", city, quarters[rng_below(NQUARTERS)]);
    else
        snprintf(r->name, sizeof(r->name), "Filiale %s", city);
    r->city = city;
    snprintf(r->opened, sizeof(r->opened), "%04u-%02u-%02u", 1980 + rng_below(45),
             1 + rng_below(12), 1 + rng_below(28));
    uint64_t cents = rng_next() % UINT64_C(100000000);
    snprintf(r->revenue, sizeof(r->revenue), "%" PRIu64 ".%02u", cents / 100,
             (unsigned)(cents % 100));
    snprintf(r->email, sizeof(r->email), "f%" PRIu64 "@filiale.de", store);
    r->status = rng_below(10) < 8 ? "open" : "closed";
}

/* CSV: quoted when the value holds a quote, a comma or a line break. */
static void put_csv(const char *s)
{
    if (!strpbrk(s, "\",\r\n")) {
        put_str(s);
        return;
    }
    put_char('"');
    for (; *s; s++) {
        if (*s == '"')
            put_char('"');
        put_char(*s);
    }
    put_char('"');
}

/* A JSON string: quotes and backslashes escaped (the values hold no control
 * characters). */
static void put_json_str(const char *s)
{
    put_char('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            put_char('\\');
        put_char(*s);
    }
    put_char('"');
}

/* XML character data: & and < escaped (> too, for symmetry). */
static void put_xml_text(const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            put_str("&amp;");
            break;
        case '<':
            put_str("&lt;");
            break;
        case '>':
            put_str("&gt;");
            break;
        default:
            put_char(*s);
        }
    }
}

static const char *const field_names[] = {"id",      "name",  "city",  "opened",
                                          "revenue", "email", "status"};
#define NFIELDS (sizeof(field_names) / sizeof(field_names[0]))

static void put_row(enum format fmt, const struct row *r, uint64_t i)
{
    const char *v[NFIELDS] = {r->id, r->name, r->city, r->opened, r->revenue, r->email, r->status};
    switch (fmt) {
    case FMT_CSV:
        for (size_t k = 0; k < NFIELDS; k++) {
            if (k)
                put_char(',');
            put_csv(v[k]);
        }
        put_char('\n');
        break;
    case FMT_JSON:
    case FMT_NDJSON:
        if (fmt == FMT_JSON && i > 0)
            put_str(",\n");
        put_char('{');
        for (size_t k = 0; k < NFIELDS; k++) {
            if (k)
                put_char(',');
            put_json_str(field_names[k]);
            put_char(':');
            if (!strcmp(field_names[k], "revenue"))
                put_str(v[k]); /* a number, in its exact spelling */
            else
                put_json_str(v[k]);
        }
        put_char('}');
        if (fmt == FMT_NDJSON)
            put_char('\n');
        break;
    case FMT_XML:
        put_str("<store>");
        for (size_t k = 0; k < NFIELDS; k++) {
            put_char('<');
            put_str(field_names[k]);
            put_char('>');
            put_xml_text(v[k]);
            put_str("</");
            put_str(field_names[k]);
            put_char('>');
        }
        put_str("</store>\n");
        break;
    }
}

static void put_head(enum format fmt)
{
    switch (fmt) {
    case FMT_CSV:
        for (size_t k = 0; k < NFIELDS; k++) {
            if (k)
                put_char(',');
            put_str(field_names[k]);
        }
        put_char('\n');
        break;
    case FMT_JSON:
        put_str("[\n");
        break;
    case FMT_NDJSON:
        break;
    case FMT_XML:
        put_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stores>\n");
        break;
    }
}

static void put_tail(enum format fmt, uint64_t rows)
{
    if (fmt == FMT_JSON)
        put_str(rows ? "\n]\n" : "]\n");
    else if (fmt == FMT_XML)
        put_str("</stores>\n");
}

/* "512M" and the like: powers of 1024; -1 for anything else or overflow. */
static int parse_size(const char *s, uint64_t *v)
{
    char buf[32];
    size_t n = strlen(s);
    int shift = 0;
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, s, n + 1);
    switch (buf[n - 1]) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    default:
        break;
    }
    if (shift)
        buf[n - 1] = '\0';
    if (parse_u64(buf, v) != 0 || *v > (UINT64_MAX >> shift))
        return -1;
    *v <<= shift;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: gen_formats csv|json|ndjson|xml ROWS [SEED] > FILE\n"
                    "       gen_formats --bytes N[K|M|G] csv|json|ndjson|xml [SEED] > FILE\n");
    return 2;
}

int main(int argc, char **argv)
{
    uint64_t nrows = 0, max_bytes = 0, seed = 20250101;
    const uint64_t first_store = 1000000;
    int a = 1;
    int fmt = -1;

    if (argc > 2 && !strcmp(argv[1], "--bytes")) {
        if (parse_size(argv[2], &max_bytes) != 0 || max_bytes == 0) {
            fprintf(stderr, "gen_formats: --bytes '%s' is no size (e.g. 500M, 1G)\n", argv[2]);
            return 2;
        }
        a = 3;
    }
    if (a >= argc)
        return usage();
    for (int k = 0; k < (int)(sizeof(format_names) / sizeof(format_names[0])); k++)
        if (!strcmp(argv[a], format_names[k]))
            fmt = k;
    if (fmt < 0) {
        fprintf(stderr, "gen_formats: unknown format '%s' (csv, json, ndjson or xml)\n", argv[a]);
        return 2;
    }
    a++;
    if (!max_bytes) {
        if (a >= argc || parse_u64(argv[a], &nrows) != 0) {
            fprintf(stderr, "gen_formats: ROWS must be a number\n");
            return usage();
        }
        a++;
    }
    if (a < argc && parse_u64(argv[a++], &seed) != 0) {
        fprintf(stderr, "gen_formats: SEED must be a number\n");
        return usage();
    }
    if (a != argc)
        return usage();
    rng_state = seed;

    put_head((enum format)fmt);
    uint64_t i = 0;
    for (;; i++) {
        if (max_bytes ? written + outlen >= max_bytes : i >= nrows)
            break;
        struct row r;
        make_row(first_store + i, &r);
        put_row((enum format)fmt, &r, i);
        if (outlen > OUTBUF_SIZE - ROW_MAX)
            out_flush();
    }
    put_tail((enum format)fmt, i);
    out_finish();
    fprintf(stderr, "gen_formats: format=%s rows=%" PRIu64 " bytes=%" PRIu64 "\n",
            format_names[fmt], i, written);
    return 0;
}
