/*
 * Unit tests of tz.c: real zones of the system tzdata (transitions and footer
 * rules) checked against known values and against glibc (setenv("TZ") +
 * localtime_r) as an independent oracle, local -> UTC in gaps and overlaps,
 * the civil-date helpers, and hostile input: unsafe names, truncated and
 * corrupted TZif files and bad footer strings, written to a temporary $TZDIR.
 */
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sluice/tz.h"

#define SYS_TZDIR "/usr/share/zoneinfo"

static char tmpdir[64];

/* ---- helpers ------------------------------------------------------------ */

static int64_t wall(int64_t y, unsigned mo, unsigned d, int h, int mi, int s)
{
    return sl_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

static const struct sl_tz *get_ok(const char *name)
{
    char err[256] = "";
    const struct sl_tz *tz = sl_tz_get(name, err, sizeof(err));
    if (!tz)
        fail_msg("sl_tz_get(%s): %s", name, err);
    return tz;
}

/* glibc's view: offset of instant t in TZ=spec. */
static void glibc_zone(const char *spec)
{
    setenv("TZ", spec, 1);
    tzset();
}

static long glibc_off(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm))
        fail_msg("localtime_r failed at %lld", (long long)t);
    return tm.tm_gmtoff;
}

static void use_tzdir(const char *dir)
{
    setenv("TZDIR", dir, 1);
}

static void put32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static void put64(FILE *f, int64_t v)
{
    put32(f, (uint32_t)((uint64_t)v >> 32));
    put32(f, (uint32_t)(uint64_t)v);
}

static void put_header(FILE *f, char version, uint32_t timecnt, uint32_t typecnt, uint32_t charcnt)
{
    fwrite("TZif", 1, 4, f);
    fputc(version, f);
    for (int i = 0; i < 15; i++)
        fputc(0, f);
    put32(f, 0); /* isutcnt */
    put32(f, 0); /* isstdcnt */
    put32(f, 0); /* leapcnt */
    put32(f, timecnt);
    put32(f, typecnt);
    put32(f, charcnt);
}

struct ttype {
    int32_t off;
    uint8_t isdst;
};

static char *tmp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    return path;
}

static void write_bytes(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(tmp_path(name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Writes a TZif file under tmpdir: version 0 (32-bit data only) or '2' (a
 * minimal version 1 block, the 64-bit block, then the footer). */
static void write_tzif(const char *name, char version, const int64_t *trans, const uint8_t *idx,
                       size_t nt, const struct ttype *types, size_t ntypes, const char *footer)
{
    FILE *f = fopen(tmp_path(name), "wb");
    assert_non_null(f);
    if (version != 0) {
        put_header(f, version, 0, 1, 1);
        put32(f, 0);
        fputc(0, f);
        fputc(0, f);
        fputc(0, f);
    }
    put_header(f, version, (uint32_t)nt, (uint32_t)ntypes, 4);
    for (size_t i = 0; i < nt; i++) {
        if (version != 0)
            put64(f, trans[i]);
        else
            put32(f, (uint32_t)(int32_t)trans[i]);
    }
    for (size_t i = 0; i < nt; i++)
        fputc(idx[i], f);
    for (size_t i = 0; i < ntypes; i++) {
        put32(f, (uint32_t)types[i].off);
        fputc(types[i].isdst, f);
        fputc(0, f);
    }
    fwrite("XXX", 1, 4, f);
    if (version != 0)
        fprintf(f, "\n%s\n", footer ? footer : "");
    fclose(f);
}

/* A zone whose whole rule is a footer string. */
static const struct sl_tz *footer_zone(const char *name, const char *footer, char *err,
                                       size_t errsz)
{
    struct ttype t0 = {0, 0};
    write_tzif(name, '2', NULL, NULL, 0, &t0, 1, footer);
    use_tzdir(tmpdir);
    const struct sl_tz *tz = sl_tz_get(name, err, errsz);
    use_tzdir(SYS_TZDIR);
    return tz;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* Compares offsets with glibc at every step in [from, to), and checks that
 * local -> UTC gives back each instant (the earlier one in an overlap). */
static void compare_glibc(const struct sl_tz *tz, const char *spec, int64_t from, int64_t to,
                          int64_t step)
{
    glibc_zone(spec);
    int bad = 0;
    for (int64_t t = from; t < to && bad < 5; t += step) {
        long want = glibc_off(t);
        int got = sl_tz_offset_at(tz, t);
        if (got != want) {
            print_error("%s at %lld: offset %d, glibc %ld\n", spec, (long long)t, got, want);
            bad++;
            continue;
        }
        int64_t local = t + got;
        if (sl_tz_utc_to_local(tz, t) != local) {
            print_error("%s at %lld: utc_to_local\n", spec, (long long)t);
            bad++;
        }
        int kind = -1;
        int64_t back = sl_tz_local_to_utc(tz, local, &kind);
        if (kind == 1 || (kind == 0 && back != t) || (kind == 2 && back > t) ||
            back + sl_tz_offset_at(tz, back) != local) {
            print_error("%s at %lld: local_to_utc %lld kind %d\n", spec, (long long)t,
                        (long long)back, kind);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/sl_tz_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    use_tzdir(SYS_TZDIR);
    return 0;
}

/* After each test, even a failed one: back to the system tzdata. */
static int reset_env(void **state)
{
    use_tzdir(SYS_TZDIR);
    glibc_zone("UTC");
    return 0;
}

static int teardown(void **state)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- civil dates ---------------------------------------------------------- */

static void test_civil(void **state)
{
    assert_int_equal(sl_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(sl_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(sl_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(sl_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(sl_days_from_civil(0, 3, 1), -719468);
    /* leap years: 2000 and 2024 yes, 1900 and 2100 no */
    assert_int_equal(sl_days_from_civil(2000, 3, 1) - sl_days_from_civil(2000, 2, 28), 2);
    assert_int_equal(sl_days_from_civil(2024, 3, 1) - sl_days_from_civil(2024, 2, 28), 2);
    assert_int_equal(sl_days_from_civil(1900, 3, 1) - sl_days_from_civil(1900, 2, 28), 1);
    assert_int_equal(sl_days_from_civil(2100, 3, 1) - sl_days_from_civil(2100, 2, 28), 1);
    /* carry-over */
    assert_int_equal(sl_days_from_civil(2025, 13, 1), sl_days_from_civil(2026, 1, 1));
    assert_int_equal(sl_days_from_civil(2025, 3, 0), sl_days_from_civil(2025, 2, 28));
    assert_int_equal(sl_days_from_civil(2025, 1, 32), sl_days_from_civil(2025, 2, 1));

    int64_t y;
    unsigned m, d;
    sl_civil_from_days(19782, &y, &m, &d);
    assert_true(y == 2024 && m == 2 && d == 29);
    sl_civil_from_days(-1, &y, &m, &d);
    assert_true(y == 1969 && m == 12 && d == 31);
    sl_civil_from_days(-719469, &y, &m, &d);
    assert_true(y == 0 && m == 2 && d == 29); /* year 0 is a leap year */

    /* round trip and agreement with timegm over +-20000 years */
    for (int64_t z = -7400000; z <= 7400000; z += 97) {
        sl_civil_from_days(z, &y, &m, &d);
        assert_true(m >= 1 && m <= 12 && d >= 1 && d <= 31);
        assert_int_equal(sl_days_from_civil(y, m, d), z);
    }
    for (int64_t z = -800000; z <= 800000; z += 1009) {
        time_t t = (time_t)(z * 86400);
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        sl_civil_from_days(z, &y, &m, &d);
        assert_int_equal(y, tm.tm_year + 1900);
        assert_int_equal(m, (unsigned)tm.tm_mon + 1);
        assert_int_equal(d, (unsigned)tm.tm_mday);
    }
    /* extreme inputs neither crash nor overflow (checked by UBSan) */
    (void)sl_days_from_civil(INT64_MAX, 12, 31);
    (void)sl_days_from_civil(INT64_MIN, 1, 1);
    (void)sl_days_from_civil(2025, UINT32_MAX, UINT32_MAX);
    sl_civil_from_days(INT64_MAX, &y, &m, &d);
    sl_civil_from_days(INT64_MIN, NULL, NULL, NULL);
}

/* ---- UTC ------------------------------------------------------------------ */

static void test_utc(void **state)
{
    const struct sl_tz *utc = sl_tz_utc();
    assert_non_null(utc);
    assert_string_equal(sl_tz_name(utc), "UTC");
    assert_ptr_equal(get_ok("UTC"), utc);

    /* both work without any tzdata */
    use_tzdir(tmpdir);
    const struct sl_tz *etc = get_ok("Etc/UTC");
    assert_ptr_equal(get_ok("UTC"), utc);
    use_tzdir(SYS_TZDIR);
    assert_string_equal(sl_tz_name(etc), "Etc/UTC");

    int64_t t = wall(2025, 6, 1, 12, 0, 0);
    int kind = -1;
    assert_int_equal(sl_tz_offset_at(etc, t), 0);
    assert_int_equal(sl_tz_local_to_utc(utc, t, &kind), t);
    assert_int_equal(kind, 0);
    assert_int_equal(sl_tz_utc_to_local(etc, t), t);
    /* NULL is UTC */
    assert_string_equal(sl_tz_name(NULL), "UTC");
    assert_int_equal(sl_tz_offset_at(NULL, t), 0);
    /* saturation instead of overflow */
    assert_true(sl_tz_utc_to_local(utc, INT64_MAX) == INT64_MAX);
    assert_true(sl_tz_local_to_utc(utc, INT64_MIN, NULL) == INT64_MIN);
}

/* ---- real zones -------------------------------------------------------------- */

static void expect_l2u(const struct sl_tz *tz, int64_t local, int64_t want, int want_kind)
{
    int kind = -1;
    int64_t got = sl_tz_local_to_utc(tz, local, &kind);
    if (got != want || kind != want_kind)
        fail_msg("%s: local %lld -> %lld kind %d, want %lld kind %d", sl_tz_name(tz),
                 (long long)local, (long long)got, kind, (long long)want, want_kind);
}

static void test_berlin(void **state)
{
    const struct sl_tz *tz = get_ok("Europe/Berlin");
    assert_string_equal(sl_tz_name(tz), "Europe/Berlin");
    assert_ptr_equal(get_ok("Europe/Berlin"), tz);

    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 1, 15, 12, 0, 0)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 7, 1, 12, 0, 0)), 7200);
    /* the switch instants, 01:00Z both times */
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 30, 0, 59, 59)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 30, 1, 0, 0)), 7200);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 10, 26, 0, 59, 59)), 7200);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 10, 26, 1, 0, 0)), 3600);
    /* before the first transition: local mean time, +00:53:28 */
    assert_int_equal(sl_tz_offset_at(tz, wall(1850, 1, 1, 0, 0, 0)), 3208);

    /* gap: 02:00 to 03:00 does not exist */
    expect_l2u(tz, wall(2025, 3, 30, 1, 59, 59), wall(2025, 3, 30, 0, 59, 59), 0);
    expect_l2u(tz, wall(2025, 3, 30, 2, 0, 0), wall(2025, 3, 30, 1, 0, 0), 1);
    expect_l2u(tz, wall(2025, 3, 30, 2, 30, 0), wall(2025, 3, 30, 1, 30, 0), 1);
    expect_l2u(tz, wall(2025, 3, 30, 3, 0, 0), wall(2025, 3, 30, 1, 0, 0), 0);
    /* overlap: 02:00 to 03:00 happens twice, the first (CEST) wins */
    expect_l2u(tz, wall(2025, 10, 26, 1, 59, 59), wall(2025, 10, 25, 23, 59, 59), 0);
    expect_l2u(tz, wall(2025, 10, 26, 2, 0, 0), wall(2025, 10, 26, 0, 0, 0), 2);
    expect_l2u(tz, wall(2025, 10, 26, 2, 30, 0), wall(2025, 10, 26, 0, 30, 0), 2);
    expect_l2u(tz, wall(2025, 10, 26, 2, 59, 59), wall(2025, 10, 26, 0, 59, 59), 2);
    expect_l2u(tz, wall(2025, 10, 26, 3, 0, 0), wall(2025, 10, 26, 2, 0, 0), 0);

    /* 2100 is past the table: the footer rule (last Sundays of March and
     * October 2100 are the 28th and the 31st) */
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 1, 1, 0, 0, 0)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 3, 28, 0, 59, 59)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 3, 28, 1, 0, 0)), 7200);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 10, 31, 0, 59, 59)), 7200);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 10, 31, 1, 0, 0)), 3600);
    expect_l2u(tz, wall(2100, 3, 28, 2, 30, 0), wall(2100, 3, 28, 1, 30, 0), 1);
    expect_l2u(tz, wall(2100, 10, 31, 2, 30, 0), wall(2100, 10, 31, 0, 30, 0), 2);
    assert_int_equal(sl_tz_offset_at(tz, wall(9999, 7, 1, 0, 0, 0)), 7200);
}

static void test_new_york(void **state)
{
    const struct sl_tz *tz = get_ok("America/New_York");
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 1, 1, 0, 0, 0)), -18000);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 7, 1, 0, 0, 0)), -14400);
    /* 2025-03-09 02:00 EST -> 03:00 EDT; 2025-11-02 02:00 EDT -> 01:00 EST */
    expect_l2u(tz, wall(2025, 3, 9, 2, 30, 0), wall(2025, 3, 9, 7, 30, 0), 1);
    expect_l2u(tz, wall(2025, 3, 9, 3, 30, 0), wall(2025, 3, 9, 7, 30, 0), 0);
    expect_l2u(tz, wall(2025, 11, 2, 1, 30, 0), wall(2025, 11, 2, 5, 30, 0), 2);
    expect_l2u(tz, wall(2025, 11, 2, 2, 30, 0), wall(2025, 11, 2, 7, 30, 0), 0);
    /* 2100, footer: second Sunday of March is the 14th, first of Nov the 7th */
    expect_l2u(tz, wall(2100, 3, 14, 2, 30, 0), wall(2100, 3, 14, 7, 30, 0), 1);
    expect_l2u(tz, wall(2100, 11, 7, 1, 30, 0), wall(2100, 11, 7, 5, 30, 0), 2);
    /* LMT -4:56:02 before 1883-11-18 */
    assert_int_equal(sl_tz_offset_at(tz, wall(1800, 1, 1, 0, 0, 0)), -17762);
}

static void test_lord_howe(void **state)
{
    /* +10:30 standard, +11 daylight: a 30-minute shift */
    const struct sl_tz *tz = get_ok("Australia/Lord_Howe");
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 7, 1, 0, 0, 0)), 37800);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 1, 1, 0, 0, 0)), 39600);
    /* 2025-10-05 02:00 -> 02:30; 2025-04-06 02:00 -> 01:30 */
    expect_l2u(tz, wall(2025, 10, 5, 2, 15, 0), wall(2025, 10, 5, 2, 15, 0) - 37800, 1);
    expect_l2u(tz, wall(2025, 10, 5, 2, 30, 0), wall(2025, 10, 5, 2, 30, 0) - 39600, 0);
    expect_l2u(tz, wall(2025, 4, 6, 1, 45, 0), wall(2025, 4, 6, 1, 45, 0) - 39600, 2);
    expect_l2u(tz, wall(2025, 4, 6, 2, 0, 0), wall(2025, 4, 6, 2, 0, 0) - 37800, 0);
    expect_l2u(tz, wall(2100, 10, 3, 2, 15, 0), wall(2100, 10, 3, 2, 15, 0) - 37800, 1);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 12, 25, 0, 0, 0)), 39600);
}

static void test_kolkata(void **state)
{
    const struct sl_tz *tz = get_ok("Asia/Kolkata");
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 6, 1, 0, 0, 0)), 19800);
    assert_int_equal(sl_tz_offset_at(tz, wall(2100, 6, 1, 0, 0, 0)), 19800);
    assert_int_equal(sl_tz_offset_at(tz, wall(1800, 1, 1, 0, 0, 0)), 21208); /* LMT 5:53:28 */
    expect_l2u(tz, wall(2025, 6, 1, 5, 30, 0), wall(2025, 6, 1, 0, 0, 0), 0);
    expect_l2u(tz, wall(2200, 1, 1, 0, 0, 0), wall(2199, 12, 31, 18, 30, 0), 0);
}

/* Every zone against glibc from 1800 to 2200, and densely around today and
 * 2100 (footer rules). */
static void test_glibc_oracle(void **state)
{
    static const char *zones[] = {
        "Europe/Berlin",   "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
        "Europe/Dublin",   "America/Nuuk",     "Asia/Jerusalem",      "America/Sao_Paulo",
        "Pacific/Chatham", "Antarctica/Troll", "Africa/Casablanca",   "Pacific/Apia",
        "Europe/London",   "America/Santiago", "Asia/Tehran",         "Australia/Sydney",
    };
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        const struct sl_tz *tz = get_ok(zones[i]);
        compare_glibc(tz, zones[i], wall(1800, 1, 1, 0, 0, 0), wall(2200, 1, 1, 0, 0, 0),
                      86400 * 3 + 3607);
        compare_glibc(tz, zones[i], wall(2024, 1, 1, 0, 0, 0), wall(2026, 1, 1, 0, 0, 0), 1799);
        compare_glibc(tz, zones[i], wall(2099, 1, 1, 0, 0, 0), wall(2101, 1, 1, 0, 0, 0), 1799);
    }
    glibc_zone("UTC");
}

/* Non-ambiguous wall times against glibc's mktime. */
static void test_mktime_oracle(void **state)
{
    static const char *zones[] = {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"};
    for (size_t i = 0; i < 3; i++) {
        const struct sl_tz *tz = get_ok(zones[i]);
        glibc_zone(zones[i]);
        for (int64_t local = wall(2023, 1, 1, 0, 0, 0); local < wall(2027, 1, 1, 0, 0, 0);
             local += 3 * 3600 + 600) {
            int64_t y;
            unsigned m, d;
            sl_civil_from_days(local / 86400, &y, &m, &d);
            struct tm tm = {.tm_year = (int)y - 1900,
                            .tm_mon = (int)m - 1,
                            .tm_mday = (int)d,
                            .tm_hour = (int)(local % 86400 / 3600),
                            .tm_min = (int)(local % 3600 / 60),
                            .tm_isdst = -1};
            time_t want = mktime(&tm);
            int kind = -1;
            int64_t got = sl_tz_local_to_utc(tz, local, &kind);
            if (kind == 0 && got != want)
                fail_msg("%s local %lld: %lld, mktime %lld", zones[i], (long long)local,
                         (long long)got, (long long)want);
        }
    }
    glibc_zone("UTC");
}

/* ---- footer strings ----------------------------------------------------------- */

static void test_footer_rules(void **state)
{
    /* zones with no transitions at all: the footer is the whole rule */
    static const char *specs[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "<+03>-3",
        "<+0530>-5:30",
        "<-0330>3:30<-0230>,M3.2.0/-2:30,M11.1.0/-1",
        "AAA3BBB,J60/2,J300/2",
        "AAA3BBB,59,299",
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
        "IST-2IDT,M3.4.4/26,M10.5.0",
        "IST-1GMT0,M10.5.0,M3.5.0/1",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "XXX-1:30:15YYY-2:45,M4.5.6/-20,M10.1.1/50",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        char name[32], err[256] = "";
        snprintf(name, sizeof(name), "Footer/f%zu", i);
        const struct sl_tz *tz = footer_zone(name, specs[i], err, sizeof(err));
        if (!tz)
            fail_msg("footer %s: %s", specs[i], err);
        compare_glibc(tz, specs[i], wall(1990, 1, 1, 0, 0, 0), wall(2110, 1, 1, 0, 0, 0),
                      86400 + 3607);
        compare_glibc(tz, specs[i], wall(2024, 1, 1, 0, 0, 0), wall(2025, 1, 1, 0, 0, 0), 599);
    }
    /* no rule given: the US rule, as tzcode does (glibc takes the history of
     * its posixrules file instead, so it is no oracle here) */
    char err[256] = "";
    const struct sl_tz *tz = footer_zone("Footer/default", "AAA5BBB", err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 9, 6, 59, 59)), -18000);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 9, 7, 0, 0)), -14400);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 11, 2, 5, 59, 59)), -14400);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 11, 2, 6, 0, 0)), -18000);
    glibc_zone("UTC");

    /* daylight time all year (RFC 8536's example); glibc gets the turn of
     * the year wrong, so the values are fixed here */
    tz = footer_zone("Footer/allyear", "EST5EDT4,0/0,J365/25", err, sizeof(err));
    assert_non_null(tz);
    for (int64_t t = wall(1999, 12, 1, 0, 0, 0); t < wall(2102, 2, 1, 0, 0, 0); t += 86400 / 5)
        assert_int_equal(sl_tz_offset_at(tz, t), -14400);
    expect_l2u(tz, wall(2100, 1, 1, 0, 0, 0), wall(2100, 1, 1, 4, 0, 0), 0);

    /* Jn never counts February 29, n does */
    tz = footer_zone("Footer/julian", "AAA0BBB,J60/0,J61/0", err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(sl_tz_offset_at(tz, wall(2024, 2, 29, 12, 0, 0)), 0);
    assert_int_equal(sl_tz_offset_at(tz, wall(2024, 3, 1, 12, 0, 0)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2023, 3, 1, 12, 0, 0)), 3600);
    tz = footer_zone("Footer/zero", "AAA0BBB,59/0,60/0", err, sizeof(err));
    assert_non_null(tz);
    assert_int_equal(sl_tz_offset_at(tz, wall(2024, 2, 29, 12, 0, 0)), 3600);
    assert_int_equal(sl_tz_offset_at(tz, wall(2024, 3, 1, 12, 0, 0)), 0);
    assert_int_equal(sl_tz_offset_at(tz, wall(2023, 3, 1, 12, 0, 0)), 3600);

    /* a rule time of -1 hour: changes on the day before, at 23:00 */
    tz = footer_zone("Footer/nuuk", "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", err, sizeof(err));
    assert_non_null(tz);
    /* last Sunday of March 2025 is the 30th: Saturday 23:00 -02 = 01:00Z */
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 30, 0, 59, 59)), -7200);
    assert_int_equal(sl_tz_offset_at(tz, wall(2025, 3, 30, 1, 0, 0)), -3600);
}

static void test_footer_invalid(void **state)
{
    static const char *bad[] = {
        "CET-1CEST,M3.5.0",
        "AB-1",
        "CET",
        "CET-25",
        "<AB>1",
        "<+03-3",
        "CET-1CEST,M13.1.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.0.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,J0,J365",
        "CET-1CEST,366,J365",
        "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-1CEST,M3.5.0,M10.5.0/3x",
        "CET-1CEST,M3.5.0,M10.5.0,",
        "CET-1:60",
        "CET-1CEST-2:00:99",
        "CET-1CEST,M3.5.0/,M10.5.0",
        "CET-0001",
        "1CET",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[32], err[256] = "";
        snprintf(name, sizeof(name), "BadFooter/b%zu", i);
        if (footer_zone(name, bad[i], err, sizeof(err)))
            fail_msg("footer %s accepted", bad[i]);
        assert_non_null(strstr(err, "invalid tz string in footer"));
    }
    /* an empty footer is allowed: the last type stays */
    char err[256] = "";
    struct ttype types[2] = {{3600, 0}, {7200, 1}};
    int64_t trans[1] = {1000000000};
    uint8_t idx[1] = {1};
    write_tzif("BadFooter/empty", '2', trans, idx, 1, types, 2, "");
    use_tzdir(tmpdir);
    const struct sl_tz *tz = sl_tz_get("BadFooter/empty", err, sizeof(err));
    use_tzdir(SYS_TZDIR);
    assert_non_null(tz);
    assert_int_equal(sl_tz_offset_at(tz, 0), 3600);
    assert_int_equal(sl_tz_offset_at(tz, 4000000000LL), 7200);
}

/* ---- TZif files ------------------------------------------------------------ */

static void test_version1(void **state)
{
    struct ttype types[2] = {{3600, 0}, {7200, 1}};
    int64_t trans[3] = {-1000000000, 1000000000, 1100000000};
    uint8_t idx[3] = {0, 1, 0};
    write_tzif("V1/zone", 0, trans, idx, 3, types, 2, NULL);
    use_tzdir(tmpdir);
    char err[256] = "";
    const struct sl_tz *tz = sl_tz_get("V1/zone", err, sizeof(err));
    use_tzdir(SYS_TZDIR);
    if (!tz)
        fail_msg("v1: %s", err);
    assert_int_equal(sl_tz_offset_at(tz, -2000000000), 3600);
    assert_int_equal(sl_tz_offset_at(tz, 999999999), 3600);
    assert_int_equal(sl_tz_offset_at(tz, 1000000000), 7200);
    assert_int_equal(sl_tz_offset_at(tz, 1099999999), 7200);
    assert_int_equal(sl_tz_offset_at(tz, 1100000000), 3600);
    assert_int_equal(sl_tz_offset_at(tz, INT64_MAX), 3600);
    /* the fall-back at 1100000000 repeats 7200 + 1100000000 - 3600 .. */
    expect_l2u(tz, 1100000000 + 3600 + 1800, 1100000000 - 1800, 2);
}

static void test_truncated(void **state)
{
    size_t len;
    uint8_t *data = slurp(SYS_TZDIR "/Europe/Berlin", &len);
    assert_true(len > 100);
    write_bytes("Trunc/full", data, len);
    use_tzdir(tmpdir);
    char err[512];
    assert_non_null(sl_tz_get("Trunc/full", err, sizeof(err)));
    /* every proper prefix is refused with a message */
    for (size_t n = 0; n < len; n++) {
        char name[32];
        snprintf(name, sizeof(name), "Trunc/b%zu", n);
        write_bytes(name, data, n);
        err[0] = '\0';
        if (sl_tz_get(name, err, sizeof(err)))
            fail_msg("prefix of %zu bytes accepted", n);
        assert_non_null(strstr(err, "invalid time zone file"));
        if (n < 44)
            assert_non_null(strstr(err, "truncated header"));
    }
    use_tzdir(SYS_TZDIR);
    free(data);
}

static void test_corrupt(void **state)
{
    size_t len;
    uint8_t *data = slurp(SYS_TZDIR "/America/New_York", &len);
    uint8_t *mut = malloc(len);
    assert_non_null(mut);
    char err[512];
    use_tzdir(tmpdir);

    /* huge counts in either header */
    /* where the 64-bit header starts: after the version 1 block */
    size_t v2;
    {
        uint32_t c[6];
        for (int i = 0; i < 6; i++)
            c[i] = (uint32_t)data[20 + 4 * i] << 24 | (uint32_t)data[21 + 4 * i] << 16 |
                   (uint32_t)data[22 + 4 * i] << 8 | data[23 + 4 * i];
        v2 = 44 + (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0];
        assert_true(v2 + 44 < len);
    }
    size_t hdrs[2] = {0, v2};
    int n = 0;
    for (int h = 0; h < 2; h++) {
        for (int field = 0; field < 6; field++) {
            static const uint32_t vals[] = {0xffffffffu, 0x80000000u, 0x10000u, 257, 1};
            for (size_t v = 0; v < 5; v++) {
                memcpy(mut, data, len);
                uint8_t *p = mut + hdrs[h] + 20 + 4 * field;
                p[0] = (uint8_t)(vals[v] >> 24);
                p[1] = (uint8_t)(vals[v] >> 16);
                p[2] = (uint8_t)(vals[v] >> 8);
                p[3] = (uint8_t)vals[v];
                char name[32];
                snprintf(name, sizeof(name), "Count/c%d", n++);
                write_bytes(name, mut, len);
                const struct sl_tz *tz = sl_tz_get(name, err, sizeof(err));
                if (tz) {
                    (void)sl_tz_offset_at(tz, 0);
                    (void)sl_tz_local_to_utc(tz, wall(2025, 3, 9, 2, 30, 0), NULL);
                }
            }
        }
    }

    /* random byte flips (fixed seed): load or refuse, never crash */
    srand(42);
    for (int i = 0; i < 3000; i++) {
        memcpy(mut, data, len);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++)
            mut[(size_t)rand() % len] = (uint8_t)rand();
        char name[32];
        snprintf(name, sizeof(name), "Flip/f%d", i);
        write_bytes(name, mut, len);
        const struct sl_tz *tz = sl_tz_get(name, err, sizeof(err));
        if (!tz) {
            assert_non_null(strstr(err, "invalid time zone file"));
            continue;
        }
        for (int64_t t = wall(1700, 1, 1, 0, 0, 0); t < wall(2300, 1, 1, 0, 0, 0);
             t += 86400 * 97 + 1234) {
            int off = sl_tz_offset_at(tz, t);
            assert_true(off >= -89999 && off <= 93599);
            int kind;
            int64_t back = sl_tz_local_to_utc(tz, t, &kind);
            assert_true(kind >= 0 && kind <= 2);
            assert_true(back > t - 200000 && back < t + 200000);
        }
    }

    /* not a TZif file at all, a directory, a file with a leap-second table */
    write_bytes("Bad/text", "Europe/Berlin\n", 14);
    assert_null(sl_tz_get("Bad/text", err, sizeof(err)));
    assert_non_null(strstr(err, "not a tzif file"));
    assert_null(sl_tz_get("Bad", err, sizeof(err)));
    assert_non_null(strstr(err, "unknown time zone"));
    memcpy(mut, data, len);
    mut[v2 + 28 + 3] = 1; /* leapcnt 1 in the 64-bit header */
    write_bytes("Bad/leap", mut, len);
    assert_null(sl_tz_get("Bad/leap", err, sizeof(err)));
    assert_non_null(strstr(err, "leap-second"));
    memcpy(mut, data, len);
    mut[4] = '1'; /* no such version */
    write_bytes("Bad/version", mut, len);
    assert_null(sl_tz_get("Bad/version", err, sizeof(err)));
    assert_non_null(strstr(err, "version"));

    use_tzdir(SYS_TZDIR);
    free(mut);
    free(data);
}

/* ---- names and the cache ----------------------------------------------------- */

static void test_names(void **state)
{
    char longname[400];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *bad[] = {
        "",
        "..",
        "../etc/passwd",
        "/etc/passwd",
        "Europe/../../etc/passwd",
        "Europe/..",
        "Europe/Berlin\n",
        "Europe/Ber lin",
        "Europe//Berlin",
        "Europe/",
        longname,
        "Europe/Berlin%s",
        "zone.tab",
        "Europe\\Berlin",
        "Europe/Berlin\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        if (sl_tz_get(bad[i], err, sizeof(err)))
            fail_msg("name %zu accepted", i);
        assert_non_null(strstr(err, "invalid time zone name"));
        for (const char *c = err; *c; c++) /* hostile bytes never reach the message */
            assert_true(*c >= 0x20 && *c < 0x7f);
    }
    char err[256] = "";
    assert_null(sl_tz_get(NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing"));
    assert_null(sl_tz_get("Mars/Olympus_Mons", err, sizeof(err)));
    assert_non_null(strstr(err, "unknown time zone \"Mars/Olympus_Mons\""));
    assert_null(sl_tz_get("Europe", err, sizeof(err))); /* a directory */
    assert_non_null(strstr(err, "unknown time zone"));
    assert_null(sl_tz_get("Mars/Olympus_Mons", NULL, 0)); /* no errbuf */
    /* characters that are allowed */
    assert_non_null(get_ok("Etc/GMT+5"));
    assert_int_equal(sl_tz_offset_at(get_ok("Etc/GMT-14"), 0), 14 * 3600);
    assert_non_null(get_ok("America/Port-au-Prince"));
}

struct race {
    const struct sl_tz *seen[3];
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    static const char *names[3] = {"Europe/Paris", "Asia/Tokyo", "America/Chicago"};
    for (int i = 0; i < 200; i++) {
        const struct sl_tz *tz = sl_tz_get(names[i % 3], NULL, 0);
        if (!tz || (r->seen[i % 3] && r->seen[i % 3] != tz))
            return (void *)1;
        r->seen[i % 3] = tz;
        (void)sl_tz_local_to_utc(tz, wall(2025, 3, 30, 2, 30, 0), NULL);
    }
    return NULL;
}

static void test_cache_threads(void **state)
{
    pthread_t th[8];
    struct race r[8];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    for (int i = 0; i < 8; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_null(ret);
    }
    for (int i = 1; i < 8; i++)
        for (int j = 0; j < 3; j++)
            assert_ptr_equal(r[i].seen[j], r[0].seen[j]);
    assert_ptr_equal(get_ok("Asia/Tokyo"), r[0].seen[1]);
    assert_string_equal(sl_tz_name(r[0].seen[1]), "Asia/Tokyo");
}

static void test_extremes(void **state)
{
    const struct sl_tz *tz = get_ok("Europe/Berlin");
    (void)sl_tz_offset_at(tz, INT64_MAX);
    (void)sl_tz_offset_at(tz, INT64_MIN);
    assert_true(sl_tz_utc_to_local(tz, INT64_MAX) == INT64_MAX);
    assert_true(sl_tz_local_to_utc(tz, INT64_MIN, NULL) == INT64_MIN);
    assert_true(sl_tz_local_to_utc(tz, INT64_MAX, NULL) < INT64_MAX);
    int kind;
    (void)sl_tz_local_to_utc(tz, (int64_t)1 << 55, &kind);
    (void)sl_tz_local_to_utc(tz, -((int64_t)1 << 55), &kind);
    /* a billion years out the footer rule still holds */
    int64_t far = wall(1000002025, 7, 1, 0, 0, 0);
    assert_int_equal(sl_tz_offset_at(tz, far), 7200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_civil, reset_env),
        cmocka_unit_test_teardown(test_utc, reset_env),
        cmocka_unit_test_teardown(test_berlin, reset_env),
        cmocka_unit_test_teardown(test_new_york, reset_env),
        cmocka_unit_test_teardown(test_lord_howe, reset_env),
        cmocka_unit_test_teardown(test_kolkata, reset_env),
        cmocka_unit_test_teardown(test_glibc_oracle, reset_env),
        cmocka_unit_test_teardown(test_mktime_oracle, reset_env),
        cmocka_unit_test_teardown(test_footer_rules, reset_env),
        cmocka_unit_test_teardown(test_footer_invalid, reset_env),
        cmocka_unit_test_teardown(test_version1, reset_env),
        cmocka_unit_test_teardown(test_truncated, reset_env),
        cmocka_unit_test_teardown(test_corrupt, reset_env),
        cmocka_unit_test_teardown(test_names, reset_env),
        cmocka_unit_test_teardown(test_cache_threads, reset_env),
        cmocka_unit_test_teardown(test_extremes, reset_env),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
