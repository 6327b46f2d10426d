/*
 * The scheduler's calendar: when a job's schedule (struct sl_schedule of
 * job.h, JOBS.md "schedule") is due next, in the schedule's own time zone
 * with the zone's real rules from tzdata (tz.h). docs/schedule.md is the
 * user's description of every cadence; the rules in short:
 *
 * - Every cadence but "Nm" names times of the zone's clock: hourly at :MM,
 *   daily / workdays (Mon-Fri) / weekly on a weekday / monthly on a day
 *   (clamped to the month's last day) at HH:MM, and cron "m h dom mon dow".
 *   Each such time runs exactly once: a time a spring-forward skips runs
 *   when the clock resumes (02:30 Europe/Berlin on 2026-03-29 runs at 03:00
 *   CEST = 01:00Z; several skipped times run once, together); a time a
 *   fall-back repeats runs at its first occurrence only.
 * - "Nm" is an interval. When N divides a day (1440) its slots are the
 *   clock's multiples of N from local midnight ("15m": :00 :15 :30 :45,
 *   "120m": 00:00, 02:00, ...), and the interval does not pause in a
 *   repeated hour (both 02:15s run); slots a gap skips run once when the
 *   clock resumes. Any other N ("7m", "25h") counts N minutes of real time
 *   from the Unix epoch, whatever the zone.
 *
 * Slots are whole seconds (in practice whole minutes). All functions are
 * pure (no state of their own, no clock) and may be called from any
 * thread; cost: microseconds, bounded (no minute-by-minute search).
 */
#ifndef SLUICE_SCHEDULE_H
#define SLUICE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_schedule;
struct sl_tz;

/* A compiled cron expression "m h dom mon dow": one bit per value that
 * matches. Day of week 7 is read as Sunday (0). A day matches when its
 * month matches and: if day of month and day of week are both restricted
 * (neither field begins with '*'), when EITHER matches; otherwise when both
 * do (so "*" leaves the other field alone, and "*" + "*" is every day). */
struct sl_cron {
    uint64_t minutes; /* bit m: minute m, 0-59 */
    uint32_t hours;   /* bit h: hour h, 0-23 */
    uint32_t mdays;   /* bit d: day of month d, 1-31 */
    uint16_t months;  /* bit m: month m, 1-12 */
    uint8_t wdays;    /* bit d: day of week d, 0 (Sunday) - 6 */
    bool mdays_star;  /* the day-of-month field begins with '*' */
    bool wdays_star;  /* the day-of-week field begins with '*' */
};

/* Compiles expr, five fields separated by blanks. Each field is a
 * comma-separated list of "*", "a" or "a-b", each optionally "/step"
 * ("a/step" means a to the field's maximum, every step); values are numbers
 * or, for month and day of week, English three-letter names (jan..dec,
 * sun..sat, any case). 0 and *cron set, or SL_ERR_INVALID with errbuf set
 * ("day of month: 32 is out of range 1-31"), also for an expression that
 * can never match ("never matches: none of its days of the month occurs
 * in its months": "0 0 31 2 *"). Any thread. */
int sl_cron_parse(const char *expr, struct sl_cron *cron, char *errbuf, size_t errsz);

/* The first slot of cron strictly after after_us (unix microseconds), read
 * on the clock of tz (NULL: UTC) with the DST rules above. 0 and *next_us
 * set, or SL_ERR_LIMIT with errbuf set when no slot exists within 400
 * years (impossible for a cron that sl_cron_parse accepted, unless after_us
 * is near the end of int64 microseconds). Any thread. */
int sl_cron_next(const struct sl_cron *cron, const struct sl_tz *tz, int64_t after_us,
                 int64_t *next_us, char *errbuf, size_t errsz);

/* The first slot of s strictly after after_us (unix microseconds), in s's
 * time zone (s->timezone, NULL: UTC; loaded with sl_tz_get, so cached). 0 and
 * *next_us set, or an sl_err with errbuf set naming the field:
 * SL_ERR_INVALID for a schedule without cadence (SL_EVERY_NONE), a zone that
 * cannot load, a field out of range or a cron that does not compile or never
 * matches ("schedule.cron: '0 0 31 2 *': never matches: ..."); SL_ERR_LIMIT
 * when the slot is beyond int64 microseconds. An after_us exactly on a slot
 * gives the slot after it. s is only read. Any thread. */
int sl_schedule_next(const struct sl_schedule *s, int64_t after_us, int64_t *next_us, char *errbuf,
                     size_t errsz);

/* Where a schedule goes once its due slot slot_us has fired at now_us: the
 * first slot strictly after both, i.e. sl_schedule_next(s, max(slot_us,
 * now_us)). A scheduler that was down past several slots thus fires once
 * (the run of the slot it had stored, slot_us) and then waits for the first
 * slot still in the future: never one run per missed slot, and never
 * slot_us twice even if the clock went back. Returns as sl_schedule_next. */
int sl_schedule_advance(const struct sl_schedule *s, int64_t slot_us, int64_t now_us,
                        int64_t *next_us, char *errbuf, size_t errsz);

#endif
