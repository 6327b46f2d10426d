/*
 * The scheduler's calendar (schedule.h): the next slot of a job's schedule.
 *
 * Every cadence but "Nm" becomes one calendar, a compiled cron (bit sets of
 * minutes, hours, days, months and weekdays) plus, for monthly, a day of
 * the month clamped to the month's length. The next slot is searched on the
 * zone's wall clock, a month, a day, then an hour at a time, skipping what
 * cannot match, so the search costs a few steps per candidate month and is
 * bounded (400 years: the Gregorian calendar's cycle). Each wall time found
 * becomes an instant with tz.h (first occurrence of a repeated time, the end
 * of the gap for a skipped one). "Nm" is searched on instants instead,
 * offset period by offset period, because its repeated times run twice.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/schedule.h"
#include "sluice/tz.h"

#define US_PER_S      INT64_C(1000000)
#define SECS_PER_DAY  86400
#define HORIZON_YEARS 400
/* Wall times tried while they still map to instants at or before `after`:
 * only those a fall-back repeats, at most the widest offset change tzdata
 * allows (RFC 8536: -25h to +26h) in minutes. */
#define REPEAT_MAX (52 * 60)
/* Offset changes crossed while looking for one "Nm" slot. */
#define CHANGES_MAX 64

#define EXPR_MAX 256

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b)
{
    return a - floor_div(a, b) * b;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned month_len(int64_t y, unsigned m)
{
    static const unsigned len[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m];
}

/* 0 (Sunday) .. 6 of day z (1970-01-01, day 0, was a Thursday). */
static unsigned weekday(int64_t z)
{
    return (unsigned)floor_mod(z + 4, 7);
}

/* ---- cron expressions --------------------------------------------------- */

static const char *const MONTHS[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                     "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const WDAYS[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

struct cron_field {
    const char *name;
    int lo, hi;
    const char *const *names; /* NULL: numbers only */
    int name_base;            /* the value of names[0] */
};

static const struct cron_field FIELDS[5] = {
    {"minute", 0, 59, NULL, 0},  {"hour", 0, 23, NULL, 0},        {"day of month", 1, 31, NULL, 0},
    {"month", 1, 12, MONTHS, 1}, {"day of week", 0, 7, WDAYS, 0},
};

/* A number or name of field f at *p into *out; advances *p. */
static int cron_value(const char **p, const struct cron_field *f, int *out, char *errbuf,
                      size_t errsz)
{
    const char *s = *p;
    if (*s >= '0' && *s <= '9') {
        long v = 0;
        while (*s >= '0' && *s <= '9' && v < 100000)
            v = v * 10 + (*s++ - '0');
        if (v < f->lo || v > f->hi)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %ld is out of range %d-%d",
                             f->name, v, f->lo, f->hi);
        *out = (int)v;
        *p = s;
        return 0;
    }
    size_t len = strcspn(s, ",-/");
    if (f->names && len == 3) {
        for (int i = 0; f->names[i]; i++) {
            if (strncasecmp(f->names[i], s, 3) == 0) {
                *out = f->name_base + i;
                *p = s + 3;
                return 0;
            }
        }
    }
    return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: '%.*s' is not a %s", f->name,
                     (int)(len > 20 ? 20 : len), s, f->names ? "number or name" : "number");
}

/* Field s of f into bits (bit v for each value v; 7 of day of week is 0). */
static int cron_field(const char *s, const struct cron_field *f, uint64_t *bits, char *errbuf,
                      size_t errsz)
{
    const char *p = s;
    *bits = 0;
    for (;;) {
        int a = f->lo, b = f->hi, rc;
        bool single = false;
        if (*p == '*') {
            p++;
        } else {
            if ((rc = cron_value(&p, f, &a, errbuf, errsz)) != 0)
                return rc;
            single = true;
            if (*p == '-') {
                p++;
                if ((rc = cron_value(&p, f, &b, errbuf, errsz)) != 0)
                    return rc;
                if (b < a)
                    return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                     "%s: range %d-%d goes backwards", f->name, a, b);
                single = false;
            }
        }
        long step = 1;
        if (*p == '/') {
            p++;
            if (*p < '0' || *p > '9')
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                 "%s: '/' must be followed by a step", f->name);
            step = 0;
            while (*p >= '0' && *p <= '9' && step < 100000)
                step = step * 10 + (*p++ - '0');
            if (step < 1 || step > f->hi - f->lo + 1)
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: step %ld is out of range 1-%d",
                                 f->name, step, f->hi - f->lo + 1);
            if (single) /* "a/step": from a to the field's maximum */
                b = f->hi;
        } else if (single) {
            b = a;
        }
        for (long v = a; v <= b; v += step)
            *bits |= UINT64_C(1) << (f->names == WDAYS && v == 7 ? 0 : v);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: unexpected '%c' in '%.40s'",
                             f->name, *p, s);
        return 0;
    }
}

/* Whether some month of cron has a day of the month of cron (Feb: 29). */
static bool cron_days_occur(const struct sl_cron *cron)
{
    for (unsigned m = 1; m <= 12; m++) {
        unsigned len = m == 2 ? 29 : month_len(2001, m);
        uint32_t days = (uint32_t)((UINT64_C(1) << (len + 1)) - 2); /* bits 1..len */
        if ((cron->months >> m & 1) && (cron->mdays & days))
            return true;
    }
    return false;
}

int sl_cron_parse(const char *expr, struct sl_cron *cron, char *errbuf, size_t errsz)
{
    char buf[EXPR_MAX], *fields[6], *save = NULL;
    int nf = 0;
    if (!expr || !*expr)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "empty cron expression");
    if (strlen(expr) >= sizeof(buf))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "too long (at most %d characters)",
                         EXPR_MAX - 1);
    strcpy(buf, expr);
    for (char *t = strtok_r(buf, " \t", &save); t && nf < 6; t = strtok_r(NULL, " \t", &save))
        fields[nf++] = t;
    if (nf != 5)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "expected 5 fields (minute hour day-of-month month day-of-week), got %s%d",
                         nf == 6 ? "more than " : "", nf == 6 ? 5 : nf);
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) {
        int rc = cron_field(fields[i], &FIELDS[i], &bits[i], errbuf, errsz);
        if (rc)
            return rc;
    }
    struct sl_cron c = {
        .minutes = bits[0],
        .hours = (uint32_t)bits[1],
        .mdays = (uint32_t)bits[2],
        .months = (uint16_t)bits[3],
        .wdays = (uint8_t)bits[4],
        .mdays_star = fields[2][0] == '*',
        .wdays_star = fields[4][0] == '*',
    };
    /* With both day fields restricted any weekday matches every month; else
     * a day of the month must exist in one of the months (each date falls
     * on every weekday within the 400-year cycle). */
    if ((c.mdays_star || c.wdays_star) && !cron_days_occur(&c))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "never matches: none of its days of the month occurs in its months");
    *cron = c;
    return 0;
}

/* ---- the calendar on the wall clock ------------------------------------- */

/* A clock-time cadence: the cron, or on `monthday` of every month (clamped
 * to its length) at the cron's times when monthday is not 0. */
struct cal {
    struct sl_cron cron;
    unsigned monthday;
};

static bool cal_day(const struct cal *c, int64_t z, unsigned d, unsigned len)
{
    if (c->monthday)
        return d == (c->monthday < len ? c->monthday : len);
    bool dm = c->cron.mdays >> d & 1, wm = c->cron.wdays >> weekday(z) & 1;
    return c->cron.mdays_star || c->cron.wdays_star ? dm && wm : dm || wm;
}

/* The first time of the day at or after h:m, as seconds of the day; -1:
 * none that day. */
static int cal_time(const struct cal *c, unsigned h, unsigned m)
{
    for (; h < 24; h++, m = 0) {
        if (!(c->cron.hours >> h & 1))
            continue;
        uint64_t mins = c->cron.minutes & (~UINT64_C(0) << m);
        if (mins)
            return (int)(h * 3600 + (unsigned)__builtin_ctzll(mins) * 60);
    }
    return -1;
}

/* The first wall time of c strictly after wall time w (both seconds since
 * the epoch as if UTC); false when none within HORIZON_YEARS. */
static bool cal_next_wall(const struct cal *c, int64_t w, int64_t *out)
{
    int64_t t = floor_div(w, 60) + 1; /* the next whole minute */
    int64_t z = floor_div(t, 1440), y;
    unsigned mo, d, h = (unsigned)(t - z * 1440) / 60, m = (unsigned)(t - z * 1440) % 60;
    sl_civil_from_days(z, &y, &mo, &d);
    for (int64_t end = y + HORIZON_YEARS; y <= end;) {
        if (c->cron.months >> mo & 1) {
            unsigned len = month_len(y, mo);
            for (z = sl_days_from_civil(y, mo, d); d <= len; d++, z++, h = m = 0) {
                int s;
                if (cal_day(c, z, d, len) && (s = cal_time(c, h, m)) >= 0) {
                    *out = z * SECS_PER_DAY + s;
                    return true;
                }
            }
        }
        if (++mo > 12) {
            mo = 1;
            y++;
        }
        d = 1;
        h = m = 0;
    }
    return false;
}

/* The first instant in (lo, hi] whose offset is not o, given that lo's is
 * and hi's is not: the one offset change between them. */
static int64_t first_change(const struct sl_tz *tz, int64_t lo, int64_t hi, int o)
{
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sl_tz_offset_at(tz, mid) == o)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* The instant wall time w runs at: its first occurrence, or when w falls in
 * a gap, the instant the gap ends (the clock's next valid time). */
static int64_t wall_instant(const struct sl_tz *tz, int64_t w)
{
    int kind;
    int64_t t = sl_tz_local_to_utc(tz, w, &kind);
    if (kind != 1)
        return t;
    /* t = w - (offset before the gap): the gap ends in (t - gap, t] */
    int before = (int)(w - t), gap = sl_tz_offset_at(tz, t) - before;
    if (gap <= 0 || sl_tz_offset_at(tz, t - gap) != before)
        return t; /* not a plain gap (not seen in tzdata): keep tz.h's answer */
    return first_change(tz, t - gap, t, before);
}

static int emit(int64_t t, int64_t *next_us, char *errbuf, size_t errsz)
{
    if (t > INT64_MAX / US_PER_S)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "the next slot is beyond the year 294000");
    *next_us = t * US_PER_S;
    return 0;
}

/* The first slot of c strictly after after_us in tz. Wall time maps to
 * instants monotonically, so the answer is the first wall time after the
 * clock's reading at `after` that maps past `after` (only the times a
 * fall-back repeats map before it). */
static int cal_next(const struct cal *c, const struct sl_tz *tz, int64_t after_us, int64_t *next_us,
                    char *errbuf, size_t errsz)
{
    int64_t a = floor_div(after_us, US_PER_S);
    int64_t w = sl_tz_utc_to_local(tz, a);
    for (int i = 0; i < REPEAT_MAX; i++) {
        if (!cal_next_wall(c, w, &w))
            return sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "no slot within %d years", HORIZON_YEARS);
        int64_t t = wall_instant(tz, w);
        if (t > a)
            return emit(t, next_us, errbuf, errsz);
    }
    return sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "no slot after %d repeated wall times",
                     REPEAT_MAX);
}

int sl_cron_next(const struct sl_cron *cron, const struct sl_tz *tz, int64_t after_us,
                 int64_t *next_us, char *errbuf, size_t errsz)
{
    struct cal c = {.cron = *cron};
    return cal_next(&c, tz, after_us, next_us, errbuf, errsz);
}

/* ---- every N minutes ---------------------------------------------------- */

/* The first slot of every `minutes` strictly after after_us: on the local
 * clock's multiples of the period from midnight when it divides a day (run
 * at both occurrences of a repeated time, at a gap's end for skipped ones),
 * else on the epoch's. */
static int minutes_next(int minutes, const struct sl_tz *tz, int64_t after_us, int64_t *next_us,
                        char *errbuf, size_t errsz)
{
    int64_t p = (int64_t)minutes * 60, a = floor_div(after_us, US_PER_S);
    if (SECS_PER_DAY % p != 0)
        return emit(a + 1 + floor_mod(-(a + 1), p), next_us, errbuf, errsz);
    for (int i = 0; i < CHANGES_MAX; i++) {
        int o = sl_tz_offset_at(tz, a + 1);
        int64_t c = a + 1 + floor_mod(-(a + 1 + o), p); /* the next multiple at offset o */
        if (sl_tz_offset_at(tz, c) == o)
            return emit(c, next_us, errbuf, errsz);
        int64_t change = first_change(tz, a + 1, c, o);
        int o2 = sl_tz_offset_at(tz, change);
        /* a spring-forward skipping a multiple: it runs as the gap ends */
        if (o2 > o && change + o + floor_mod(-(change + o), p) < change + o2)
            return emit(change, next_us, errbuf, errsz);
        a = change - 1; /* go on at the new offset */
    }
    return sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "no slot after %d offset changes", CHANGES_MAX);
}

/* ---- schedules ---------------------------------------------------------- */

#define ALL_MINUTES ((UINT64_C(1) << 60) - 1)
#define ALL_HOURS   ((UINT32_C(1) << 24) - 1)
#define ALL_MDAYS   (UINT32_C(0xfffffffe))
#define ALL_MONTHS  ((uint16_t)0x1ffe)
#define ALL_WDAYS   ((uint8_t)0x7f)

/* The calendar of a clock-time cadence of s (not minutes, not cron). */
static int schedule_cal(const struct sl_schedule *s, struct cal *c, char *errbuf, size_t errsz)
{
    *c = (struct cal){.cron = {.minutes = 0,
                               .hours = ALL_HOURS,
                               .mdays = ALL_MDAYS,
                               .months = ALL_MONTHS,
                               .wdays = ALL_WDAYS,
                               .mdays_star = true,
                               .wdays_star = true}};
    if (s->at_minute < 0 || s->at_minute > 59)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "schedule.at: minute %d is out of range 0-59", s->at_minute);
    c->cron.minutes = UINT64_C(1) << s->at_minute;
    if (s->every == SL_EVERY_HOURLY)
        return 0;
    if (s->at_hour < 0 || s->at_hour > 23)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.at: hour %d is out of range 0-23",
                         s->at_hour);
    c->cron.hours = UINT32_C(1) << s->at_hour;
    switch (s->every) {
    case SL_EVERY_WORKDAYS:
        c->cron.wdays = 0x3e; /* Monday .. Friday */
        break;
    case SL_EVERY_WEEKLY:
        if (s->weekday < 0 || s->weekday > 6)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "schedule.on: weekday %d is out of range 0 (sun) - 6 (sat)",
                             s->weekday);
        c->cron.wdays = (uint8_t)(1u << s->weekday);
        break;
    case SL_EVERY_MONTHLY:
        if (s->monthday < 1 || s->monthday > 31)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "schedule.on: day %d is out of range 1-31", s->monthday);
        c->monthday = (unsigned)s->monthday;
        break;
    default: /* daily */
        break;
    }
    return 0;
}

int sl_schedule_next(const struct sl_schedule *s, int64_t after_us, int64_t *next_us, char *errbuf,
                     size_t errsz)
{
    char msg[512] = "";
    const struct sl_tz *tz = sl_tz_utc();
    if (s->every == SL_EVERY_NONE)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.every: the job has no schedule");
    if (s->timezone && !(tz = sl_tz_get(s->timezone, msg, sizeof(msg))))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.timezone: %s",
                         msg[0] ? msg : "cannot load the time zone");

    struct cal c;
    int rc;
    switch (s->every) {
    case SL_EVERY_MINUTES:
        if (s->minutes < 1 || s->minutes > 527040)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "schedule.every: %d minutes is out of range 1-527040", s->minutes);
        return minutes_next(s->minutes, tz, after_us, next_us, errbuf, errsz);
    case SL_EVERY_CRON:
        memset(&c, 0, sizeof(c));
        if (!s->cron)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.cron: missing");
        if (sl_cron_parse(s->cron, &c.cron, msg, sizeof(msg)))
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.cron: '%.100s': %s", s->cron,
                             msg);
        break;
    case SL_EVERY_HOURLY:
    case SL_EVERY_DAILY:
    case SL_EVERY_WORKDAYS:
    case SL_EVERY_WEEKLY:
    case SL_EVERY_MONTHLY:
        if ((rc = schedule_cal(s, &c, errbuf, errsz)) != 0)
            return rc;
        break;
    default:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "schedule.every: unknown cadence %d",
                         (int)s->every);
    }
    if ((rc = cal_next(&c, tz, after_us, next_us, msg, sizeof(msg))) != 0)
        return sl_seterr(errbuf, errsz, rc, "schedule of time zone %s: %s", sl_tz_name(tz), msg);
    return 0;
}

int sl_schedule_advance(const struct sl_schedule *s, int64_t slot_us, int64_t now_us,
                        int64_t *next_us, char *errbuf, size_t errsz)
{
    return sl_schedule_next(s, slot_us > now_us ? slot_us : now_us, next_us, errbuf, errsz);
}
