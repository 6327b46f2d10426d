/*
 * gen_stores: a deterministic generator of store rows for the embedded-mode
 * benchmark (tests/bench/bench_embedded.sh).
 *
 * It writes ROWS data rows shaped like the demo export
 * examples/stores/stores.csv (same header, ';', windows-1252 bytes, CRLF,
 * dd.mm.yyyy dates, 1.234,56 amounts), so that examples/stores/job.json runs
 * on its output unchanged. About 0.5% of the rows are bad, each for one of
 * the demo's reasons (impossible date, missing name, bad e-mail, duplicate
 * store number, unknown status, unreadable amount); every other store number
 * is unique. The output depends only on ROWS and SEED (a splitmix64 stream,
 * never rand()), and a summary of what a correct run must count goes to
 * stderr.
 *
 * Usage: gen_stores ROWS [SEED] > stores.csv
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_ROWS_PROG "gen_stores"
#include "gen_rows.h"

/* windows-1252 bytes; a separate string literal ends a \x escape */
#define AE   "\xE4"
#define OE   "\xF6"
#define UE   "\xFC"
#define SZ   "\xDF"
#define EURO "\x80"

#define BAD_PER_MILLE 5

enum bad_kind {
    BAD_NONE = -1,
    BAD_DATE = 0, /* 31.02.yyyy */
    BAD_NAME,     /* required name empty */
    BAD_EMAIL,    /* no '@' */
    BAD_DUP,      /* a store number seen before */
    BAD_STATUS,   /* not open or closed */
    BAD_AMOUNT,   /* 12,3,4 */
    BAD_KINDS,
};

static const char *const bad_names[BAD_KINDS] = {"date",      "name",   "email",
                                                 "duplicate", "status", "amount"};

struct city {
    const char *name; /* Ort, windows-1252 */
    const char *plz;
    const char *area; /* dialling code without the leading 0 */
    const char *region;
};

static const struct city cities[] = {
    {"Berlin", "10117", "30", "Ost"},
    {"Hamburg", "22767", "40", "Nord"},
    {"M" UE "nchen", "80802", "89", "S" UE "d"},
    {"K" OE "ln", "50825", "221", "West"},
    {"Frankfurt", "60313", "69", "Mitte"},
    {"Stuttgart", "70173", "711", "S" UE "d"},
    {"D" UE "sseldorf", "40212", "211", "West"},
    {"Leipzig", "04109", "341", "Ost"},
    {"Dresden", "01097", "351", "Ost"},
    {"N" UE "rnberg", "90402", "911", "S" UE "d"},
    {"Bremen", "28195", "421", "Nord"},
    {"Hannover", "30159", "511", "Nord"},
    {"Essen", "45130", "201", "West"},
    {"M" UE "nster", "48143", "251", "West"},
    {"Erfurt", "99084", "361", "Mitte"},
    {"G" OE "ttingen", "37073", "551", "Mitte"},
};
#define NCITIES (sizeof(cities) / sizeof(cities[0]))

static const char *const streets[] = {
    "Hauptstra" SZ "e", "Bahnhofstr.",  "Marktplatz",      "K" OE "nigstr.",
    "Gartenweg",        "Schillerstr.", "Gro" SZ "e Str.", "Lindenallee",
};
#define NSTREETS (sizeof(streets) / sizeof(streets[0]))

static const char *const quarters[] = {"Mitte", "Nord",      "S" UE "d",
                                       "Markt", "H" OE "fe", "Altstadt"};
#define NQUARTERS (sizeof(quarters) / sizeof(quarters[0]))

/* v in decimal, at least width digits (zero-padded). */
static void put_uint(uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (n < width)
        tmp[n++] = '0';
    while (n > 0)
        put_char(tmp[--n]);
}

/* cents as a German amount: 1.234.567,89 */
static void put_amount_de(uint64_t cents)
{
    uint64_t units = cents / 100;
    uint64_t group = 1;
    while (units / group >= 1000)
        group *= 1000;
    put_uint(units / group, 1);
    for (group /= 1000; group > 0; group /= 1000) {
        put_char('.');
        put_uint(units / group % 1000, 3);
    }
    put_char(',');
    put_uint(cents % 100, 2);
}

static void put_row(uint64_t store, enum bad_kind bad)
{
    const struct city *c = &cities[rng_below(NCITIES)];
    uint32_t r;

    /* Filiale */
    put_uint(store, 1);
    put_char(';');

    /* Name: sometimes padded (trim), sometimes quoted around the delimiter */
    if (bad != BAD_NAME) {
        r = rng_below(100);
        if (r == 0) {
            put_str("\"M" UE "ller & S" OE "hne; ");
            put_str(c->name);
            put_char('"');
        } else {
            if (r == 1)
                put_str("  ");
            put_str("Filiale ");
            put_str(c->name);
            if (r % 4 == 0) {
                put_char(' ');
                put_str(quarters[rng_below(NQUARTERS)]);
            }
            if (r == 1)
                put_str("  ");
        }
    }
    put_char(';');

    /* Eroeffnung: dd.mm.yyyy, a few empty (optional) */
    r = rng_below(100);
    if (bad == BAD_DATE) {
        put_str("31.02.");
        put_uint(1980 + rng_below(45), 4);
    } else if (r >= 3) {
        put_uint(1 + rng_below(28), 2);
        put_char('.');
        put_uint(1 + rng_below(12), 2);
        put_char('.');
        put_uint(1980 + rng_below(45), 4);
    }
    put_char(';');

    /* Umsatz: up to 999.999,99 */
    if (bad == BAD_AMOUNT) {
        put_uint(1 + rng_below(99), 1);
        put_char(',');
        put_uint(rng_below(10), 1);
        put_char(',');
        put_uint(rng_below(10), 1);
    } else {
        put_amount_de(rng_next() % UINT64_C(100000000));
    }
    put_char(';');

    /* Waehrung */
    r = rng_below(10);
    put_str(r < 7 ? "EUR" : r < 9 ? EURO : "eur");
    put_char(';');

    /* E-Mail: a few in capitals (lower), a few empty (optional) */
    r = rng_below(100);
    if (bad == BAD_EMAIL) {
        put_char('f');
        put_uint(store, 1);
        put_str("(at)filiale.de");
    } else if (r >= 2) {
        put_char(r < 12 ? 'F' : 'f');
        put_uint(store, 1);
        put_str(r < 12 ? "@Filiale.DE" : "@filiale.de");
    }
    put_char(';');

    /* Telefon: the usual German spellings, a few empty (optional) */
    r = rng_below(100);
    if (r >= 2) {
        switch (r % 4) {
        case 0:
            put_char('0');
            put_str(c->area);
            put_char(' ');
            break;
        case 1:
            put_str("+49 ");
            put_str(c->area);
            put_char(' ');
            break;
        case 2:
            put_str("(0");
            put_str(c->area);
            put_str(") ");
            break;
        default:
            put_char('0');
            put_str(c->area);
            put_char('/');
            break;
        }
        put_uint(100000 + rng_below(9900000), 6);
    }
    put_char(';');

    /* Status */
    r = rng_below(100);
    if (bad == BAD_STATUS)
        put_str("Renovierung");
    else
        put_str(r < 80 ? "open" : r < 90 ? "closed" : r < 95 ? "OPEN" : "");
    put_char(';');

    /* Region; Strasse; PLZ; Ort */
    put_str(c->region);
    put_char(';');
    put_str(streets[rng_below(NSTREETS)]);
    put_char(' ');
    put_uint(1 + rng_below(199), 1);
    put_char(';');
    put_str(c->plz);
    put_char(';');
    put_str(c->name);
    put_str("\r\n");
}

int main(int argc, char **argv)
{
    uint64_t nrows, seed = 20250101;
    uint64_t nbad[BAD_KINDS] = {0};
    uint64_t bad_total = 0, last_good = 0;
    const uint64_t first_store = 1000000;

    if (argc < 2 || argc > 3 || parse_u64(argv[1], &nrows) != 0 ||
        (argc == 3 && parse_u64(argv[2], &seed) != 0)) {
        fprintf(stderr, "usage: gen_stores ROWS [SEED] > stores.csv\n");
        return 2;
    }
    if (nrows > UINT64_C(100000000)) {
        fprintf(stderr, "gen_stores: ROWS must be at most 100000000\n");
        return 2;
    }
    rng_state = seed;

    put_str("Filiale;Name;Eroeffnung;Umsatz;Waehrung;E-Mail;Telefon;Status;Region;Strasse;PLZ;"
            "Ort\r\n");
    for (uint64_t i = 0; i < nrows; i++) {
        enum bad_kind bad = BAD_NONE;
        uint64_t store = first_store + i;

        if (rng_below(1000) < BAD_PER_MILLE) {
            bad = (enum bad_kind)rng_below(BAD_KINDS);
            /* a duplicate repeats a published row, so that its number is
             * known to the run; with none yet the row stays good */
            if (bad == BAD_DUP && last_good == 0)
                bad = BAD_NONE;
            else if (bad == BAD_DUP)
                store = last_good;
        }
        if (bad == BAD_NONE) {
            last_good = store;
        } else {
            nbad[bad]++;
            bad_total++;
        }
        put_row(store, bad);
        if (outlen > OUTBUF_SIZE - 1024)
            out_flush();
    }
    out_finish();

    fprintf(stderr, "gen_stores: rows=%" PRIu64 " bad=%" PRIu64 " published=%" PRIu64, nrows,
            bad_total, nrows - bad_total);
    for (int k = 0; k < BAD_KINDS; k++)
        fprintf(stderr, " %s=%" PRIu64, bad_names[k], nbad[k]);
    fputc('\n', stderr);
    return 0;
}
