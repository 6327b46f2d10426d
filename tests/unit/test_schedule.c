/*
 * Unit tests of schedule.c: the next slot of every cadence as exact UTC
 * instants, on ordinary days, month and year ends and across the
 * daylight-saving changes of Europe/Berlin and America/New_York in 2026
 * (plus a 30-minute change, Australia/Lord_Howe, and a skipped day,
 * Pacific/Apia 2011); cron fields compiled to bits; impossible and invalid
 * schedules refused; and, around every change, the calendar compared with
 * an independent minute-by-minute reading of the rules (docs/schedule.md).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/schedule.h"
#include "sluice/tz.h"

#define US      INT64_C(1000000)
#define MIN_US  (60 * US)
#define HOUR_US (3600 * US)
#define DAY_US  (86400 * US)

/* ---- helpers ------------------------------------------------------------ */

/* The UTC instant y-mo-d h:mi, in microseconds. */
static int64_t T(int64_t y, unsigned mo, unsigned d, int h, int mi)
{
    return (sl_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) * US;
}

static const char *iso(int64_t us, char *buf, size_t n)
{
    int64_t s = us / US, z = s / 86400, y;
    if (s % 86400 < 0)
        z--;
    int64_t sod = s - z * 86400;
    unsigned mo, d;
    sl_civil_from_days(z, &y, &mo, &d);
    snprintf(buf, n, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ", (long long)y, mo, d,
             (long long)(sod / 3600), (long long)(sod / 60 % 60), (long long)(sod % 60));
    return buf;
}

static struct sl_schedule minutes(int n, const char *tz)
{
    return (struct sl_schedule){.every = SL_EVERY_MINUTES,
                                .minutes = n,
                                .at_hour = -1,
                                .at_minute = -1,
                                .timezone = (char *)tz};
}

/* hourly (h -1), daily, workdays */
static struct sl_schedule at(enum sl_every every, int h, int m, const char *tz)
{
    return (struct sl_schedule){
        .every = every, .at_hour = h, .at_minute = m, .timezone = (char *)tz};
}

static struct sl_schedule weekly(int weekday, int h, int m, const char *tz)
{
    struct sl_schedule s = at(SL_EVERY_WEEKLY, h, m, tz);
    s.weekday = weekday;
    return s;
}

static struct sl_schedule monthly(int day, int h, int m, const char *tz)
{
    struct sl_schedule s = at(SL_EVERY_MONTHLY, h, m, tz);
    s.monthday = day;
    return s;
}

static struct sl_schedule cron(const char *expr, const char *tz)
{
    return (struct sl_schedule){.every = SL_EVERY_CRON,
                                .at_hour = -1,
                                .at_minute = -1,
                                .cron = (char *)expr,
                                .timezone = (char *)tz};
}

static int64_t next_ok(const struct sl_schedule *s, int64_t after, const char *file, int line)
{
    char err[512] = "", a[32];
    int64_t got = -1;
    int rc = sl_schedule_next(s, after, &got, err, sizeof(err));
    if (rc)
        fail_msg("%s:%d: after %s: error %d: %s", file, line, iso(after, a, sizeof(a)), rc, err);
    return got;
}

static void check_next(const struct sl_schedule *s, int64_t after, int64_t want, const char *file,
                       int line)
{
    int64_t got = next_ok(s, after, file, line);
    if (got != want) {
        char a[32], g[32], w[32];
        fail_msg("%s:%d: after %s: got %s, want %s", file, line, iso(after, a, sizeof(a)),
                 iso(got, g, sizeof(g)), iso(want, w, sizeof(w)));
    }
}

/* The slot of s after `after` is want. */
#define NEXT(s, after, want) check_next(&(s), after, want, __FILE__, __LINE__)

/* The slots of s after `after`, one after the other, are the rest. */
#define CHAIN(s, after, ...)                                                                       \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        int64_t prev_ = (after);                                                                   \
        for (size_t i_ = 0; i_ < sizeof(want_) / sizeof(want_[0]); i_++) {                         \
            check_next(&(s), prev_, want_[i_], __FILE__, __LINE__);                                \
            prev_ = want_[i_];                                                                     \
        }                                                                                          \
    } while (0)

/* sl_schedule_next refuses s with rc and want in the message. */
static void check_refused(const struct sl_schedule *s, int want_rc, const char *want,
                          const char *file, int line)
{
    char err[512] = "";
    int64_t got = -1;
    int rc = sl_schedule_next(s, T(2026, 1, 1, 0, 0), &got, err, sizeof(err));
    if (rc != want_rc || !strstr(err, want))
        fail_msg("%s:%d: want %d '%s', got %d '%s'", file, line, want_rc, want, rc, err);
    assert_int_equal(got, -1);
}
#define REFUSED(s, rc, want) check_refused(&(s), rc, want, __FILE__, __LINE__)

/* ---- every N minutes ---------------------------------------------------- */

static void test_minutes(void **state)
{
    (void)state;
    struct sl_schedule s = minutes(15, NULL);
    NEXT(s, T(2026, 5, 1, 10, 7), T(2026, 5, 1, 10, 15));
    NEXT(s, T(2026, 5, 1, 10, 15), T(2026, 5, 1, 10, 30)); /* on a slot: the next one */
    NEXT(s, T(2026, 5, 1, 10, 15) + 1, T(2026, 5, 1, 10, 30));
    NEXT(s, T(2026, 5, 1, 10, 15) - 1, T(2026, 5, 1, 10, 15));
    NEXT(s, T(2026, 12, 31, 23, 50), T(2027, 1, 1, 0, 0));
    NEXT(s, T(1969, 12, 31, 23, 50) + 1, T(1970, 1, 1, 0, 0)); /* before the epoch */

    s = minutes(1, "UTC");
    NEXT(s, T(2026, 5, 1, 10, 7) + 30 * US, T(2026, 5, 1, 10, 8));

    /* a divisor of a day: multiples from local midnight */
    s = minutes(120, NULL);
    NEXT(s, T(2026, 5, 1, 23, 0), T(2026, 5, 2, 0, 0));
    s = minutes(60, "Asia/Kolkata"); /* +05:30: on the local hour, :30 UTC */
    NEXT(s, T(2026, 5, 1, 4, 0), T(2026, 5, 1, 4, 30));
    s = minutes(90, "Europe/Berlin"); /* 00:00 01:30 03:00 ... CEST */
    NEXT(s, T(2026, 7, 1, 0, 0), T(2026, 7, 1, 1, 0));
    NEXT(s, T(2026, 7, 1, 1, 0), T(2026, 7, 1, 2, 30));
    s = minutes(1440, "Europe/Berlin"); /* local midnight */
    NEXT(s, T(2026, 7, 1, 12, 0), T(2026, 7, 1, 22, 0));

    /* not a divisor of a day: every N minutes from the epoch, any zone */
    s = minutes(7, NULL);
    NEXT(s, 0, 420 * US);
    NEXT(s, T(2026, 5, 1, 0, 0), (1777593600 / 420 + 1) * 420 * US);
    s = minutes(7, "Europe/Berlin");
    NEXT(s, T(2026, 5, 1, 0, 0), (1777593600 / 420 + 1) * 420 * US);
    s = minutes(1500, "America/New_York"); /* "25h" */
    NEXT(s, T(2026, 5, 1, 0, 0), (1777593600 / 90000 + 1) * 90000 * US);
}

static void test_minutes_dst(void **state)
{
    (void)state;
    /* every 15 minutes of real time through both changes */
    struct sl_schedule s = minutes(15, "Europe/Berlin");
    CHAIN(s, T(2026, 3, 29, 0, 30), T(2026, 3, 29, 0, 45), /* 01:45 CET */
          T(2026, 3, 29, 1, 0),                            /* 03:00 CEST */
          T(2026, 3, 29, 1, 15));
    CHAIN(s, T(2026, 10, 25, 0, 30), T(2026, 10, 25, 0, 45), /* 02:45 CEST */
          T(2026, 10, 25, 1, 0),                             /* 02:00 CET, again */
          T(2026, 10, 25, 1, 15), T(2026, 10, 25, 1, 30), T(2026, 10, 25, 1, 45),
          T(2026, 10, 25, 2, 0)); /* 03:00 CET */
    s = minutes(15, "America/New_York");
    CHAIN(s, T(2026, 3, 8, 6, 30), T(2026, 3, 8, 6, 45), /* 01:45 EST */
          T(2026, 3, 8, 7, 0),                           /* 03:00 EDT */
          T(2026, 3, 8, 7, 15));
    CHAIN(s, T(2026, 11, 1, 5, 30), T(2026, 11, 1, 5, 45), /* 01:45 EDT */
          T(2026, 11, 1, 6, 0),                            /* 01:00 EST */
          T(2026, 11, 1, 6, 15));

    /* 40m: 02:00 and 02:40 CET are skipped: they run once, as the gap ends */
    s = minutes(40, "Europe/Berlin");
    CHAIN(s, T(2026, 3, 29, 0, 0), T(2026, 3, 29, 0, 20), /* 01:20 CET */
          T(2026, 3, 29, 1, 0),                           /* 03:00 CEST */
          T(2026, 3, 29, 1, 20),                          /* 03:20 CEST */
          T(2026, 3, 29, 2, 0));                          /* 04:00 CEST */

    /* 120m: the repeated 02:00 runs twice (an interval does not pause) */
    s = minutes(120, "Europe/Berlin");
    CHAIN(s, T(2026, 10, 24, 21, 0), T(2026, 10, 24, 22, 0), /* 00:00 CEST */
          T(2026, 10, 25, 0, 0),                             /* 02:00 CEST */
          T(2026, 10, 25, 1, 0),                             /* 02:00 CET */
          T(2026, 10, 25, 3, 0));                            /* 04:00 CET */

    /* a 30-minute change: Lord Howe +10:30 <-> +11 */
    s = minutes(15, "Australia/Lord_Howe");
    CHAIN(s, T(2026, 10, 3, 15, 0), T(2026, 10, 3, 15, 15), /* 01:45 +10:30 */
          T(2026, 10, 3, 15, 30),                           /* 02:30 +11 */
          T(2026, 10, 3, 15, 45));
    CHAIN(s, T(2027, 4, 3, 14, 30), T(2027, 4, 3, 14, 45), /* 01:45 +11 */
          T(2027, 4, 3, 15, 0),                            /* 01:30 +10:30, again */
          T(2027, 4, 3, 15, 15));
}

/* ---- hourly ------------------------------------------------------------- */

static void test_hourly(void **state)
{
    (void)state;
    struct sl_schedule s = at(SL_EVERY_HOURLY, -1, 15, NULL);
    NEXT(s, T(2026, 5, 1, 10, 14), T(2026, 5, 1, 10, 15));
    NEXT(s, T(2026, 5, 1, 10, 15), T(2026, 5, 1, 11, 15));
    NEXT(s, T(2026, 12, 31, 23, 20), T(2027, 1, 1, 0, 15));
    s = at(SL_EVERY_HOURLY, -1, 0, "Asia/Kolkata"); /* the local hour: :30 UTC */
    NEXT(s, T(2026, 5, 1, 4, 0), T(2026, 5, 1, 4, 30));
}

static void test_hourly_dst(void **state)
{
    (void)state;
    struct sl_schedule s = at(SL_EVERY_HOURLY, -1, 30, "Europe/Berlin");
    /* the skipped 02:30 runs at 03:00 CEST, then 03:30 as usual */
    CHAIN(s, T(2026, 3, 28, 23, 30), T(2026, 3, 29, 0, 30), /* 01:30 CET */
          T(2026, 3, 29, 1, 0),                             /* 02:30 -> 03:00 CEST */
          T(2026, 3, 29, 1, 30),                            /* 03:30 CEST */
          T(2026, 3, 29, 2, 30));
    /* the repeated 02:30 runs once, in CEST */
    CHAIN(s, T(2026, 10, 24, 23, 0), T(2026, 10, 24, 23, 30), /* 01:30 CEST */
          T(2026, 10, 25, 0, 30),                             /* 02:30 CEST */
          T(2026, 10, 25, 2, 30),                             /* 03:30 CET */
          T(2026, 10, 25, 3, 30));
    NEXT(s, T(2026, 10, 25, 1, 30), T(2026, 10, 25, 2, 30)); /* at 02:30 CET */
    NEXT(s, T(2026, 10, 25, 1, 0), T(2026, 10, 25, 2, 30));  /* at 02:00 CET */

    s = at(SL_EVERY_HOURLY, -1, 30, "America/New_York");
    CHAIN(s, T(2026, 3, 8, 6, 0), T(2026, 3, 8, 6, 30),   /* 01:30 EST */
          T(2026, 3, 8, 7, 0),                            /* 02:30 -> 03:00 EDT */
          T(2026, 3, 8, 7, 30));                          /* 03:30 EDT */
    CHAIN(s, T(2026, 11, 1, 5, 0), T(2026, 11, 1, 5, 30), /* 01:30 EDT */
          T(2026, 11, 1, 7, 30));                         /* 02:30 EST */

    /* on the hour, 02:00 and 03:00 are the same instant: one run */
    s = at(SL_EVERY_HOURLY, -1, 0, "Europe/Berlin");
    CHAIN(s, T(2026, 3, 29, 0, 0), T(2026, 3, 29, 1, 0), T(2026, 3, 29, 2, 0));
}

/* ---- daily, workdays, weekly -------------------------------------------- */

static void test_daily(void **state)
{
    (void)state;
    struct sl_schedule s = at(SL_EVERY_DAILY, 9, 0, NULL);
    NEXT(s, T(2026, 5, 1, 8, 59), T(2026, 5, 1, 9, 0));
    NEXT(s, T(2026, 5, 1, 9, 0), T(2026, 5, 2, 9, 0));
    NEXT(s, T(2026, 12, 31, 9, 0), T(2027, 1, 1, 9, 0));
    NEXT(s, T(2028, 2, 28, 9, 0), T(2028, 2, 29, 9, 0));
    s = at(SL_EVERY_DAILY, 9, 0, "Europe/Berlin");
    NEXT(s, T(2026, 7, 1, 0, 0), T(2026, 7, 1, 7, 0));   /* CEST */
    NEXT(s, T(2026, 1, 15, 0, 0), T(2026, 1, 15, 8, 0)); /* CET */
    s = at(SL_EVERY_DAILY, 0, 0, "Asia/Tokyo");
    NEXT(s, T(2026, 5, 1, 15, 0), T(2026, 5, 2, 15, 0));
    s = at(SL_EVERY_DAILY, 0, 30, "America/Los_Angeles"); /* the local new year */
    NEXT(s, T(2026, 12, 31, 8, 30), T(2027, 1, 1, 8, 30));
}

static void test_daily_dst(void **state)
{
    (void)state;
    /* 02:30 is skipped on 2026-03-29: 03:00 CEST */
    struct sl_schedule s = at(SL_EVERY_DAILY, 2, 30, "Europe/Berlin");
    CHAIN(s, T(2026, 3, 28, 1, 30), T(2026, 3, 29, 1, 0), T(2026, 3, 30, 0, 30));
    /* 02:30 is repeated on 2026-10-25: once, in CEST */
    CHAIN(s, T(2026, 10, 24, 0, 30), T(2026, 10, 25, 0, 30), T(2026, 10, 26, 1, 30));
    NEXT(s, T(2026, 10, 25, 1, 15), T(2026, 10, 26, 1, 30)); /* 02:15 CET */
    NEXT(s, T(2026, 10, 25, 1, 30), T(2026, 10, 26, 1, 30)); /* 02:30 CET */
    /* the edges of the gap */
    s = at(SL_EVERY_DAILY, 2, 0, "Europe/Berlin");
    NEXT(s, T(2026, 3, 28, 12, 0), T(2026, 3, 29, 1, 0));
    s = at(SL_EVERY_DAILY, 3, 0, "Europe/Berlin");
    NEXT(s, T(2026, 3, 28, 12, 0), T(2026, 3, 29, 1, 0));
    s = at(SL_EVERY_DAILY, 1, 59, "Europe/Berlin");
    NEXT(s, T(2026, 3, 28, 12, 0), T(2026, 3, 29, 0, 59));

    /* New York: 02:30 skipped on 03-08, 01:30 repeated on 11-01 */
    s = at(SL_EVERY_DAILY, 2, 30, "America/New_York");
    CHAIN(s, T(2026, 3, 7, 7, 30), T(2026, 3, 8, 7, 0), T(2026, 3, 9, 6, 30));
    s = at(SL_EVERY_DAILY, 1, 30, "America/New_York");
    CHAIN(s, T(2026, 10, 31, 5, 30), T(2026, 11, 1, 5, 30), T(2026, 11, 2, 6, 30));
    NEXT(s, T(2026, 11, 1, 6, 0), T(2026, 11, 2, 6, 30)); /* 01:00 EST */

    /* a 30-minute gap: Lord Howe 02:00 -> 02:30 */
    s = at(SL_EVERY_DAILY, 2, 15, "Australia/Lord_Howe");
    CHAIN(s, T(2026, 10, 2, 15, 45), T(2026, 10, 3, 15, 30), T(2026, 10, 4, 15, 15));
    /* a skipped day: Samoa went from -10 to +14 after 2011-12-29 */
    s = at(SL_EVERY_DAILY, 9, 0, "Pacific/Apia");
    CHAIN(s, T(2011, 12, 29, 19, 0), T(2011, 12, 30, 10, 0), /* Dec 31 00:00 */
          T(2011, 12, 30, 19, 0));                           /* Dec 31 09:00 */
}

static void test_workdays(void **state)
{
    (void)state;
    struct sl_schedule s = at(SL_EVERY_WORKDAYS, 8, 0, NULL);
    NEXT(s, T(2026, 5, 8, 7, 0), T(2026, 5, 8, 8, 0));    /* Friday */
    NEXT(s, T(2026, 5, 8, 8, 0), T(2026, 5, 11, 8, 0));   /* -> Monday */
    NEXT(s, T(2026, 5, 9, 12, 0), T(2026, 5, 11, 8, 0));  /* Saturday */
    NEXT(s, T(2026, 5, 10, 23, 0), T(2026, 5, 11, 8, 0)); /* Sunday */
    NEXT(s, T(2026, 5, 11, 8, 0), T(2026, 5, 12, 8, 0));
    NEXT(s, T(2026, 12, 31, 8, 0), T(2027, 1, 1, 8, 0)); /* a Friday */
    NEXT(s, T(2027, 1, 1, 8, 0), T(2027, 1, 4, 8, 0));
    /* the weekend of the zone, not of UTC */
    s = at(SL_EVERY_WORKDAYS, 8, 0, "Asia/Tokyo");
    NEXT(s, T(2026, 5, 7, 23, 0), T(2026, 5, 10, 23, 0)); /* Mon 08:00 JST */
}

static void test_weekly(void **state)
{
    (void)state;
    struct sl_schedule s = weekly(1, 9, 0, "Europe/Berlin"); /* Monday */
    NEXT(s, T(2026, 5, 11, 6, 59), T(2026, 5, 11, 7, 0));
    NEXT(s, T(2026, 5, 11, 7, 0), T(2026, 5, 18, 7, 0));
    NEXT(s, T(2026, 10, 20, 0, 0), T(2026, 10, 26, 8, 0)); /* now CET */
    s = weekly(0, 23, 30, NULL);                           /* Sunday */
    NEXT(s, T(2026, 5, 8, 0, 0), T(2026, 5, 10, 23, 30));
    s = weekly(5, 12, 0, NULL); /* Friday */
    NEXT(s, T(2026, 12, 25, 12, 0), T(2027, 1, 1, 12, 0));
    s = weekly(0, 2, 30, "Europe/Berlin"); /* Sunday 02:30 on the spring change */
    CHAIN(s, T(2026, 3, 22, 1, 30), T(2026, 3, 29, 1, 0), T(2026, 4, 5, 0, 30));
}

/* ---- monthly ------------------------------------------------------------ */

static void test_monthly(void **state)
{
    (void)state;
    struct sl_schedule s = monthly(31, 0, 0, NULL);
    CHAIN(s, T(2026, 1, 31, 0, 0), T(2026, 2, 28, 0, 0), T(2026, 3, 31, 0, 0), T(2026, 4, 30, 0, 0),
          T(2026, 5, 31, 0, 0), T(2026, 6, 30, 0, 0));
    NEXT(s, T(2026, 12, 31, 0, 0), T(2027, 1, 31, 0, 0));
    CHAIN(s, T(2028, 1, 31, 0, 0), T(2028, 2, 29, 0, 0), T(2028, 3, 31, 0, 0));
    s = monthly(30, 0, 0, NULL);
    CHAIN(s, T(2026, 1, 30, 0, 0), T(2026, 2, 28, 0, 0), T(2026, 3, 30, 0, 0));
    NEXT(s, T(2028, 1, 30, 0, 0), T(2028, 2, 29, 0, 0));
    s = monthly(29, 0, 0, NULL);
    CHAIN(s, T(2026, 1, 29, 0, 0), T(2026, 2, 28, 0, 0), T(2026, 3, 29, 0, 0));
    CHAIN(s, T(2028, 1, 29, 0, 0), T(2028, 2, 29, 0, 0), T(2028, 3, 29, 0, 0));
    NEXT(s, T(2100, 1, 29, 0, 0), T(2100, 2, 28, 0, 0)); /* 2100 is no leap year */
    s = monthly(15, 12, 0, "Australia/Sydney");
    NEXT(s, T(2026, 5, 1, 0, 0), T(2026, 5, 15, 2, 0));
    s = monthly(1, 0, 0, "Europe/Berlin"); /* the local new year: 23:00 UTC */
    NEXT(s, T(2026, 12, 1, 0, 0), T(2026, 12, 31, 23, 0));
    NEXT(s, T(2026, 12, 31, 23, 0), T(2027, 1, 31, 23, 0));
}

/* ---- cron --------------------------------------------------------------- */

static void test_cron_parse(void **state)
{
    (void)state;
    struct sl_cron c;
    char err[256] = "";
    assert_int_equal(sl_cron_parse("1-5,10 */6 1 jan,DEC 5-7", &c, err, sizeof(err)), 0);
    assert_true(c.minutes == (UINT64_C(0x3e) | UINT64_C(1) << 10));
    assert_int_equal(c.hours, 1u << 0 | 1u << 6 | 1u << 12 | 1u << 18);
    assert_int_equal(c.mdays, 1u << 1);
    assert_int_equal(c.months, 1u << 1 | 1u << 12);
    assert_int_equal(c.wdays, 1u << 5 | 1u << 6 | 1u << 0); /* 7 is Sunday */
    assert_false(c.mdays_star);
    assert_false(c.wdays_star);

    assert_int_equal(sl_cron_parse("10-50/10 5/6 */10 * mon-fri", &c, err, sizeof(err)), 0);
    assert_true(c.minutes == (UINT64_C(1) << 10 | UINT64_C(1) << 20 | UINT64_C(1) << 30 |
                              UINT64_C(1) << 40 | UINT64_C(1) << 50));
    assert_int_equal(c.hours, 1u << 5 | 1u << 11 | 1u << 17 | 1u << 23); /* 5/6: 5 to 23 */
    assert_int_equal(c.mdays, 1u << 1 | 1u << 11 | 1u << 21 | 1u << 31);
    assert_int_equal(c.months, 0x1ffe);
    assert_int_equal(c.wdays, 0x3e);
    assert_true(c.mdays_star);
    assert_false(c.wdays_star);

    assert_int_equal(sl_cron_parse("*\t*  * * *", &c, err, sizeof(err)), 0);
    assert_true(c.minutes == (UINT64_C(1) << 60) - 1);
    assert_int_equal(c.hours, (1u << 24) - 1);
    assert_int_equal(c.wdays, 0x7f);
    assert_true(c.mdays_star && c.wdays_star);
    assert_int_equal(sl_cron_parse("0 0 * * 0-7/7", &c, err, sizeof(err)), 0);
    assert_int_equal(c.wdays, 1); /* 0 and 7: Sunday */

    static const struct {
        const char *expr, *msg;
    } bad[] = {
        {"60 * * * *", "minute: 60 is out of range 0-59"},
        {"* 24 * * *", "hour: 24 is out of range 0-23"},
        {"* * 0 * *", "day of month: 0 is out of range 1-31"},
        {"* * * 13 *", "month: 13 is out of range 1-12"},
        {"* * * * 8", "day of week: 8 is out of range 0-7"},
        {"* * * * *  *", "expected 5 fields"},
        {"* * * *", "expected 5 fields"},
        {"", "empty"},
        {"@daily", "expected 5 fields"},
        {"x * * * *", "minute: 'x' is not a number"},
        {"* * * foo *", "month: 'foo' is not a number or name"},
        {"* * * * monday", "day of week: 'monday' is not a number or name"},
        {"5-1 * * * *", "range 5-1 goes backwards"},
        {"*/0 * * * *", "step 0 is out of range 1-60"},
        {"*/ * * * *", "'/' must be followed by a step"},
        {"1,,2 * * * *", "minute: '' is not a number"},
        {"1;2 * * * *", "unexpected ';'"},
        {"0 0 31 2 *", "never matches"},
        {"0 0 30 2 *", "never matches"},
        {"0 0 30-31 feb *", "never matches"},
        {"0 0 31 4,6,9,11 *", "never matches"},
        {"0 0 31 2 */2", "never matches"}, /* '*' day of week: day 31 must match */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        int rc = sl_cron_parse(bad[i].expr, &c, err, sizeof(err));
        if (rc != SL_ERR_INVALID || !strstr(err, bad[i].msg))
            fail_msg("'%s': want '%s', got %d '%s'", bad[i].expr, bad[i].msg, rc, err);
    }
    /* both day fields restricted: either may match, so Feb Mondays do */
    assert_int_equal(sl_cron_parse("0 0 31 2 mon", &c, err, sizeof(err)), 0);
}

static void test_cron(void **state)
{
    (void)state;
    struct sl_schedule s = cron("0 9-17 * * mon-fri", NULL);
    NEXT(s, T(2026, 5, 8, 17, 0), T(2026, 5, 11, 9, 0));
    NEXT(s, T(2026, 5, 11, 9, 30), T(2026, 5, 11, 10, 0));
    s = cron("10-50/10 * * * *", NULL);
    CHAIN(s, T(2026, 5, 1, 10, 5), T(2026, 5, 1, 10, 10), T(2026, 5, 1, 10, 20));
    NEXT(s, T(2026, 5, 1, 10, 50), T(2026, 5, 1, 11, 10));
    s = cron("5/20 * * * *", NULL);
    CHAIN(s, T(2026, 5, 1, 10, 45), T(2026, 5, 1, 11, 5), T(2026, 5, 1, 11, 25));
    s = cron("*/15 * * * *", NULL);
    CHAIN(s, T(2026, 12, 31, 23, 40), T(2026, 12, 31, 23, 45), T(2027, 1, 1, 0, 0));
    s = cron("0 0 1,15 * *", NULL);
    CHAIN(s, T(2026, 1, 1, 0, 0), T(2026, 1, 15, 0, 0), T(2026, 2, 1, 0, 0));
    s = cron("0 12 * jan,jul sun", NULL);
    CHAIN(s, T(2026, 2, 1, 0, 0), T(2026, 7, 5, 12, 0), T(2026, 7, 12, 12, 0));
    NEXT(s, T(2026, 7, 26, 12, 0), T(2027, 1, 3, 12, 0));
    s = cron("0 0 * * 7", NULL); /* Sunday */
    NEXT(s, T(2026, 5, 8, 0, 0), T(2026, 5, 10, 0, 0));
    s = cron("0 0 1 JAN *", NULL);
    NEXT(s, T(2026, 1, 1, 0, 0), T(2027, 1, 1, 0, 0));
    s = cron("59 23 31 12 *", NULL);
    NEXT(s, T(2026, 12, 31, 23, 59), T(2027, 12, 31, 23, 59));
    s = cron("0 8 * * 1-5", "Asia/Tokyo");
    NEXT(s, T(2026, 5, 8, 0, 0), T(2026, 5, 10, 23, 0));

    /* day of month and day of week both restricted: either */
    s = cron("0 0 15 * mon", NULL);
    CHAIN(s, T(2026, 5, 11, 0, 0), T(2026, 5, 15, 0, 0), T(2026, 5, 18, 0, 0));
    s = cron("0 0 31 2 mon", NULL);
    NEXT(s, T(2026, 1, 1, 0, 0), T(2026, 2, 2, 0, 0));
    /* one of them '*': both must (the other alone, when it is all) */
    s = cron("0 0 15 * *", NULL);
    CHAIN(s, T(2026, 5, 11, 0, 0), T(2026, 5, 15, 0, 0), T(2026, 6, 15, 0, 0));
    s = cron("0 0 * * 1", NULL);
    CHAIN(s, T(2026, 5, 11, 0, 0), T(2026, 5, 18, 0, 0), T(2026, 5, 25, 0, 0));
    s = cron("0 0 */10 * mon", NULL); /* days 1, 11, 21, 31 that are Mondays */
    CHAIN(s, T(2026, 5, 1, 0, 0), T(2026, 5, 11, 0, 0), T(2026, 6, 1, 0, 0));

    /* rare, far and never */
    s = cron("0 0 29 2 *", NULL);
    NEXT(s, T(2026, 3, 1, 0, 0), T(2028, 2, 29, 0, 0));
    NEXT(s, T(2096, 3, 1, 0, 0), T(2104, 2, 29, 0, 0)); /* 2100 has none */
    s = cron("0 0 31 2 *", NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.cron: '0 0 31 2 *': never matches");
    s = cron("0 0 30 2 *", "Europe/Berlin");
    REFUSED(s, SL_ERR_INVALID, "never matches");
    s = cron("0 0 32 * *", NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.cron: '0 0 32 * *': day of month: 32 is out of range");

    /* compiled once, used many times */
    struct sl_cron c;
    char err[256];
    int64_t next = 0;
    assert_int_equal(sl_cron_parse("30 2 * * *", &c, err, sizeof(err)), 0);
    const struct sl_tz *berlin = sl_tz_get("Europe/Berlin", err, sizeof(err));
    assert_non_null(berlin);
    assert_int_equal(sl_cron_next(&c, berlin, T(2026, 3, 28, 12, 0), &next, err, sizeof(err)), 0);
    assert_true(next == T(2026, 3, 29, 1, 0));
    assert_int_equal(sl_cron_next(&c, NULL, T(2026, 3, 28, 12, 0), &next, err, sizeof(err)), 0);
    assert_true(next == T(2026, 3, 29, 2, 30));
}

static void test_cron_dst(void **state)
{
    (void)state;
    /* a fixed time: as daily */
    struct sl_schedule s = cron("30 2 * * *", "Europe/Berlin");
    CHAIN(s, T(2026, 3, 28, 1, 30), T(2026, 3, 29, 1, 0), T(2026, 3, 30, 0, 30));
    CHAIN(s, T(2026, 10, 24, 0, 30), T(2026, 10, 25, 0, 30), T(2026, 10, 26, 1, 30));
    s = cron("30 2 * * *", "America/New_York");
    CHAIN(s, T(2026, 3, 7, 7, 30), T(2026, 3, 8, 7, 0), T(2026, 3, 9, 6, 30));
    s = cron("30 1 * * *", "America/New_York");
    CHAIN(s, T(2026, 10, 31, 5, 30), T(2026, 11, 1, 5, 30), T(2026, 11, 2, 6, 30));

    /* every quarter of the clock: nothing is lost in spring, the repeated
     * hour already ran in autumn (use "15m" for an interval that keeps on) */
    s = cron("*/15 * * * *", "Europe/Berlin");
    CHAIN(s, T(2026, 3, 29, 0, 30), T(2026, 3, 29, 0, 45), /* 01:45 CET */
          T(2026, 3, 29, 1, 0),                            /* 03:00 CEST */
          T(2026, 3, 29, 1, 15));
    CHAIN(s, T(2026, 10, 25, 0, 30), T(2026, 10, 25, 0, 45), /* 02:45 CEST */
          T(2026, 10, 25, 2, 0),                             /* 03:00 CET */
          T(2026, 10, 25, 2, 15));
    s = cron("*/15 * * * *", "America/New_York");
    CHAIN(s, T(2026, 3, 8, 6, 30), T(2026, 3, 8, 6, 45), T(2026, 3, 8, 7, 0));
    CHAIN(s, T(2026, 11, 1, 5, 30), T(2026, 11, 1, 5, 45), /* 01:45 EDT */
          T(2026, 11, 1, 7, 0));                           /* 02:00 EST */

    /* every minute of the skipped hour: once, as it ends */
    s = cron("* 2 * * *", "Europe/Berlin");
    CHAIN(s, T(2026, 3, 29, 0, 0), T(2026, 3, 29, 1, 0), T(2026, 3, 30, 0, 0));
    /* every minute of the repeated hour: the first time through only */
    NEXT(s, T(2026, 10, 24, 23, 59), T(2026, 10, 25, 0, 0));
    NEXT(s, T(2026, 10, 25, 0, 59), T(2026, 10, 26, 1, 0));
    NEXT(s, T(2026, 10, 25, 1, 0), T(2026, 10, 26, 1, 0));
}

/* ---- every cadence, in general ------------------------------------------ */

static void test_on_the_slot(void **state)
{
    (void)state;
    const struct sl_schedule all[] = {
        minutes(15, "Europe/Berlin"),
        minutes(7, NULL),
        at(SL_EVERY_HOURLY, -1, 30, "America/New_York"),
        at(SL_EVERY_DAILY, 2, 30, "Europe/Berlin"),
        at(SL_EVERY_WORKDAYS, 8, 0, "Asia/Tokyo"),
        weekly(3, 1, 30, "America/New_York"),
        monthly(31, 2, 30, "Europe/Berlin"),
        cron("*/10 1-3 1,15 * mon", "Europe/Berlin"),
    };
    /* from many instants through 2026: the slot is later, the slot of the
     * instant before it is itself, and an after on it moves on */
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        for (int64_t after = T(2026, 1, 1, 0, 0); after < T(2027, 1, 1, 0, 0);
             after += 7 * HOUR_US + 13 * MIN_US + 17 * US) {
            int64_t n = next_ok(&all[i], after, __FILE__, __LINE__);
            assert_true(n > after);
            check_next(&all[i], n - 1, n, __FILE__, __LINE__);
            check_next(&all[i], after + (n - after) / 2, n, __FILE__, __LINE__);
            assert_true(next_ok(&all[i], n, __FILE__, __LINE__) > n);
        }
    }
}

/* Walks 2026 slot by slot: "15m" is always 15 minutes apart; hourly and
 * daily run once per wall time (one fewer hourly on the hour in spring). */
static void test_walk_a_year(void **state)
{
    (void)state;
    struct sl_schedule s = minutes(15, "Europe/Berlin");
    int64_t t = T(2026, 1, 1, 0, 0) - 1;
    int n = 0;
    while ((t = next_ok(&s, t, __FILE__, __LINE__)) < T(2027, 1, 1, 0, 0)) {
        assert_int_equal(t % (15 * MIN_US), 0);
        n++;
    }
    assert_int_equal(n, 365 * 96);

    s = at(SL_EVERY_HOURLY, -1, 30, "Europe/Berlin");
    for (n = 0, t = T(2025, 12, 31, 23, 0);
         (t = next_ok(&s, t, __FILE__, __LINE__)) < T(2026, 12, 31, 23, 0);)
        n++;
    assert_int_equal(n, 365 * 24); /* the skipped 02:30 ran at 03:00 */
    s = at(SL_EVERY_HOURLY, -1, 0, "Europe/Berlin");
    for (n = 0, t = T(2025, 12, 31, 23, 0) - 1;
         (t = next_ok(&s, t, __FILE__, __LINE__)) < T(2026, 12, 31, 23, 0);)
        n++;
    assert_int_equal(n, 365 * 24 - 1); /* 02:00 and 03:00 are one instant */

    s = at(SL_EVERY_DAILY, 2, 30, "Europe/Berlin");
    const struct sl_tz *tz = sl_tz_get("Europe/Berlin", NULL, 0);
    int64_t day = sl_days_from_civil(2026, 1, 1);
    for (n = 0, t = T(2025, 12, 31, 23, 0);
         (t = next_ok(&s, t, __FILE__, __LINE__)) < T(2026, 12, 31, 23, 0); n++, day++) {
        int64_t local = sl_tz_utc_to_local(tz, t / US);
        assert_int_equal(local / 86400, day);
        assert_int_equal(local % 86400, day == sl_days_from_civil(2026, 3, 29) ? 3 * 3600 : 9000);
    }
    assert_int_equal(n, 365);
}

/* ---- an independent reading of the rules -------------------------------- */

static int64_t fdiv(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static bool cron_matches(const struct sl_cron *c, int64_t w)
{
    int64_t z = fdiv(w, 86400), sod = w - z * 86400, y;
    unsigned mo, d, wd = (unsigned)(z - fdiv(z + 4, 7) * 7 + 4);
    sl_civil_from_days(z, &y, &mo, &d);
    bool dm = c->mdays >> d & 1, wm = c->wdays >> wd & 1;
    bool day = c->mdays_star || c->wdays_star ? dm && wm : dm || wm;
    return (c->months >> mo & 1) && day && (c->hours >> (sod / 3600) & 1) &&
           (c->minutes >> (sod / 60 % 60) & 1);
}

/* Minute by minute on instants: a clock-time cadence fires at t when a
 * matching wall time lies above every wall time shown before t and at or
 * below the one shown at t (so: first shown at t, or skipped just before).
 * -1: none within horizon seconds. */
static int64_t oracle_cron(const struct sl_cron *c, const struct sl_tz *tz, int64_t a,
                           int64_t horizon)
{
    int64_t t0 = fdiv(a, 60) * 60, seen = sl_tz_utc_to_local(tz, a);
    for (int64_t t = t0 - 27 * 3600; t <= a; t += 60) {
        int64_t l = sl_tz_utc_to_local(tz, t);
        seen = l > seen ? l : seen;
    }
    for (int64_t t = t0 + 60; t <= a + horizon; t += 60) {
        int64_t l = sl_tz_utc_to_local(tz, t);
        if (l <= seen)
            continue;
        for (int64_t w = fdiv(seen, 60) * 60 + 60; w <= l; w += 60)
            if (cron_matches(c, w))
                return t;
        seen = l;
    }
    return -1;
}

/* "Nm" dividing a day: fires at t when the clock shows a multiple, or went
 * past one in a gap just before t. */
static int64_t oracle_minutes(int n, const struct sl_tz *tz, int64_t a, int64_t horizon)
{
    int64_t p = n * 60;
    for (int64_t t = fdiv(a, 60) * 60 + 60; t <= a + horizon; t += 60) {
        int64_t l = sl_tz_utc_to_local(tz, t), lp = sl_tz_utc_to_local(tz, t - 60);
        if (l - lp >= 60 ? fdiv(l, p) > fdiv(lp, p) : l % p == 0)
            return t;
    }
    return -1;
}

static void test_against_oracle(void **state)
{
    (void)state;
    static const struct {
        const char *zone;
        int64_t y;
        unsigned mo, d;
    } changes[] = {
        {"Europe/Berlin", 2026, 3, 29},       {"Europe/Berlin", 2026, 10, 25},
        {"America/New_York", 2026, 3, 8},     {"America/New_York", 2026, 11, 1},
        {"Australia/Lord_Howe", 2026, 10, 4}, {"Australia/Lord_Howe", 2027, 4, 4},
        {"Pacific/Apia", 2011, 12, 30},       {"America/Havana", 2026, 3, 8},
    };
    static const char *const crons[] = {
        "30 2 * * *",   "0 2 * * *",     "30 1 * * *",     "*/15 * * * *", "* 2 * * *",
        "0,30 2 * * *", "*/7 0-3 * * *", "45 1,2,3 * * *", "0 * * * *",    "59 23 * * *",
        "0 0 * * *",    "15 * * * *",    "5 9 * * *",
    };
    static const int mins[] = {1, 15, 40, 45, 90, 120, 1440};
    char err[256];
    for (size_t z = 0; z < sizeof(changes) / sizeof(changes[0]); z++) {
        const struct sl_tz *tz = sl_tz_get(changes[z].zone, err, sizeof(err));
        if (!tz)
            fail_msg("%s: %s", changes[z].zone, err);
        int64_t day = sl_days_from_civil(changes[z].y, changes[z].mo, changes[z].d) * 86400;
        for (size_t i = 0; i < sizeof(crons) / sizeof(crons[0]); i++) {
            struct sl_cron c;
            assert_int_equal(sl_cron_parse(crons[i], &c, err, sizeof(err)), 0);
            struct sl_schedule s = cron(crons[i], changes[z].zone);
            for (int64_t a = day - 36 * 3600; a < day + 36 * 3600; a += 37 * 60 + 13) {
                int64_t want = oracle_cron(&c, tz, a, 2 * 86400);
                int64_t got = next_ok(&s, a * US, __FILE__, __LINE__);
                if (want < 0 || got != want * US) {
                    char x[32], g[32], w[32];
                    fail_msg("%s %s after %s: got %s, oracle %s", changes[z].zone, crons[i],
                             iso(a * US, x, sizeof(x)), iso(got, g, sizeof(g)),
                             iso(want * US, w, sizeof(w)));
                }
            }
        }
        for (size_t i = 0; i < sizeof(mins) / sizeof(mins[0]); i++) {
            struct sl_schedule s = minutes(mins[i], changes[z].zone);
            for (int64_t a = day - 36 * 3600; a < day + 36 * 3600; a += 11 * 60 + 7) {
                int64_t want = oracle_minutes(mins[i], tz, a, 2 * 86400);
                int64_t got = next_ok(&s, a * US, __FILE__, __LINE__);
                if (want < 0 || got != want * US) {
                    char x[32], g[32], w[32];
                    fail_msg("%s %dm after %s: got %s, oracle %s", changes[z].zone, mins[i],
                             iso(a * US, x, sizeof(x)), iso(got, g, sizeof(g)),
                             iso(want * US, w, sizeof(w)));
                }
            }
        }
    }
}

/* ---- missed slots, errors, the job loader ------------------------------- */

static void test_advance(void **state)
{
    (void)state;
    char err[256];
    int64_t next = 0;
    /* down from Friday 09:00 to Tuesday noon: one run, then Wednesday */
    struct sl_schedule s = at(SL_EVERY_DAILY, 9, 0, "Europe/Berlin");
    assert_int_equal(
        sl_schedule_advance(&s, T(2026, 5, 1, 7, 0), T(2026, 5, 5, 10, 0), &next, err, sizeof(err)),
        0);
    assert_true(next == T(2026, 5, 6, 7, 0));
    /* on time */
    assert_int_equal(sl_schedule_advance(&s, T(2026, 5, 1, 7, 0), T(2026, 5, 1, 7, 0) + 200000,
                                         &next, err, sizeof(err)),
                     0);
    assert_true(next == T(2026, 5, 2, 7, 0));
    /* the clock went back: never the same slot twice */
    assert_int_equal(
        sl_schedule_advance(&s, T(2026, 5, 1, 7, 0), T(2026, 5, 1, 6, 0), &next, err, sizeof(err)),
        0);
    assert_true(next == T(2026, 5, 2, 7, 0));
    s = minutes(15, NULL);
    assert_int_equal(sl_schedule_advance(&s, T(2026, 5, 1, 10, 0), T(2026, 5, 1, 13, 7), &next, err,
                                         sizeof(err)),
                     0);
    assert_true(next == T(2026, 5, 1, 13, 15));
}

static void test_refused(void **state)
{
    (void)state;
    struct sl_schedule s = {.every = SL_EVERY_NONE, .timezone = "UTC"};
    REFUSED(s, SL_ERR_INVALID, "schedule.every: the job has no schedule");
    s = at(SL_EVERY_DAILY, 9, 0, "Mars/Olympus_Mons");
    REFUSED(s, SL_ERR_INVALID, "schedule.timezone: unknown time zone \"Mars/Olympus_Mons\"");
    s = at(SL_EVERY_DAILY, 9, 0, "");
    REFUSED(s, SL_ERR_INVALID, "schedule.timezone: ");
    s = at(SL_EVERY_DAILY, 24, 0, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.at: hour 24 is out of range 0-23");
    s = at(SL_EVERY_HOURLY, -1, 60, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.at: minute 60 is out of range 0-59");
    s = weekly(7, 0, 0, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.on: weekday 7");
    s = monthly(0, 0, 0, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.on: day 0 is out of range 1-31");
    s = minutes(0, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.every: 0 minutes");
    s = cron(NULL, NULL);
    REFUSED(s, SL_ERR_INVALID, "schedule.cron: missing");

    /* the end of time */
    char err[256] = "";
    int64_t next = -1;
    s = at(SL_EVERY_DAILY, 9, 0, NULL);
    assert_int_equal(sl_schedule_next(&s, INT64_MAX - 1, &next, err, sizeof(err)), SL_ERR_LIMIT);
    assert_int_equal(next, -1);
    assert_int_equal(sl_schedule_next(&s, INT64_MIN, &next, err, sizeof(err)), 0);
    assert_true(next > INT64_MIN && next < INT64_MIN + DAY_US + 1);
}

static void test_from_job(void **state)
{
    (void)state;
    static const char *doc = "{\"name\":\"j\",\"source\":{\"url\":\"in.csv\"},"
                             "\"target\":{\"object\":\"o\",\"key\":[\"id\"],\"attributes\":{\"id\":"
                             "{\"type\":\"text\"}}},"
                             "\"mapping\":{\"id\":\"ID\"},\"schedule\":%s}";
    const struct {
        const char *schedule;
        int64_t after, want;
    } cases[] = {
        {"{\"every\":\"monthly\",\"on\":31,\"at\":\"06:00\",\"timezone\":\"America/New_York\"}",
         T(2026, 2, 1, 0, 0), T(2026, 2, 28, 11, 0)},
        {"{\"every\":\"hourly\",\"at\":\":45\",\"timezone\":\"Asia/Kolkata\"}", T(2026, 5, 1, 4, 0),
         T(2026, 5, 1, 4, 15)},
        {"{\"every\":\"weekly\",\"on\":\"sunday\",\"at\":\"2:30\",\"timezone\":\"Europe/Berlin\"}",
         T(2026, 3, 28, 0, 0), T(2026, 3, 29, 1, 0)},
        {"{\"every\":\"workdays\"}", T(2026, 5, 8, 0, 0), T(2026, 5, 11, 0, 0)},
        {"{\"every\":\"2h\",\"timezone\":\"Europe/Berlin\"}", T(2026, 7, 1, 0, 30),
         T(2026, 7, 1, 2, 0)},
        {"{\"cron\":\"0 7 * * sat\",\"timezone\":\"America/New_York\"}", T(2026, 5, 1, 0, 0),
         T(2026, 5, 2, 11, 0)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024], err[512] = "";
        snprintf(text, sizeof(text), doc, cases[i].schedule);
        struct sl_job *job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
        if (!job)
            fail_msg("%s: %s", cases[i].schedule, err);
        check_next(&job->schedule, cases[i].after, cases[i].want, __FILE__, __LINE__);
        sl_job_destroy(job);
    }
    /* the loader refuses a cron that never matches (with the calendar's
     * parser); the calendar itself too, for a schedule made otherwise */
    char text[1024], err[512] = "";
    snprintf(text, sizeof(text), doc, "{\"every\":\"cron\",\"cron\":\"0 0 31 2 *\"}");
    struct sl_job *job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    assert_null(job);
    assert_non_null(strstr(err, "schedule.cron: never matches"));
    struct sl_schedule impossible = {.every = SL_EVERY_CRON, .cron = (char *)"0 0 31 2 *"};
    REFUSED(impossible, SL_ERR_INVALID, "schedule.cron: '0 0 31 2 *': never matches");
    snprintf(text, sizeof(text), doc, "{\"every\":\"daily\",\"enabled\":false}");
    job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    assert_non_null(job);
    check_next(&job->schedule, T(2026, 5, 1, 0, 0), T(2026, 5, 2, 0, 0), __FILE__, __LINE__);
    sl_job_destroy(job);
    /* no schedule: nothing to compute */
    snprintf(text, sizeof(text),
             "{\"name\":\"j\",\"source\":{\"url\":\"in.csv\"},"
             "\"target\":{\"object\":\"o\",\"key\":[\"id\"],"
             "\"attributes\":{\"id\":{\"type\":\"text\"}}},\"mapping\":{\"id\":\"ID\"}}");
    job = sl_job_load_json(text, strlen(text), NULL, err, sizeof(err));
    assert_non_null(job);
    REFUSED(job->schedule, SL_ERR_INVALID, "schedule.every: the job has no schedule");
    sl_job_destroy(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minutes),        cmocka_unit_test(test_minutes_dst),
        cmocka_unit_test(test_hourly),         cmocka_unit_test(test_hourly_dst),
        cmocka_unit_test(test_daily),          cmocka_unit_test(test_daily_dst),
        cmocka_unit_test(test_workdays),       cmocka_unit_test(test_weekly),
        cmocka_unit_test(test_monthly),        cmocka_unit_test(test_cron_parse),
        cmocka_unit_test(test_cron),           cmocka_unit_test(test_cron_dst),
        cmocka_unit_test(test_on_the_slot),    cmocka_unit_test(test_walk_a_year),
        cmocka_unit_test(test_against_oracle), cmocka_unit_test(test_advance),
        cmocka_unit_test(test_refused),        cmocka_unit_test(test_from_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
