/*
 * Time zones from the system's tzdata (TZif files under /usr/share/zoneinfo,
 * or $TZDIR), with their real rules: transitions, then the POSIX TZ rule of
 * the file's footer for times after the last transition.
 *
 * Used by the datetime type and the datetime() filter (local time without an
 * offset -> UTC) and by the scheduler (next run in the job's zone). Loaded
 * zones are immutable and thread-safe.
 *
 * Times are seconds: an instant is seconds since 1970-01-01T00:00:00Z, a wall
 * time ("local") is the same count read as if the zone were UTC. Every
 * function below takes tz NULL as UTC, may be called from any thread, and is
 * exact for instants within +-2^55 s (a billion years); beyond, the offset of
 * the nearest bound is used and results saturate instead of overflowing.
 */
#ifndef SLUICE_TZ_H
#define SLUICE_TZ_H

#include <stddef.h>
#include <stdint.h>

struct sl_tz;

/* Loads zone name ("Europe/Berlin", "UTC") from $TZDIR (default
 * /usr/share/zoneinfo). NULL with errbuf set when the name is unsafe (empty,
 * absolute, "..", a character outside [A-Za-z0-9/_+-]), unknown, or its file
 * is not a valid TZif file (or a leap-second "right/" zone). "UTC" and
 * "Etc/UTC" are built in and need no tzdata. Zones are cached: the same
 * pointer is returned for the same name, owned by the cache and valid until
 * the process exits (never free it). Failures are not cached. */
const struct sl_tz *sl_tz_get(const char *name, char *errbuf, size_t errsz);

/* The UTC zone (never NULL); the same pointer as sl_tz_get("UTC"). */
const struct sl_tz *sl_tz_utc(void);

/* The name the zone was loaded under; owned by the zone. */
const char *sl_tz_name(const struct sl_tz *tz);

/* Offset from UTC in seconds (east positive) at the UTC instant t. */
int sl_tz_offset_at(const struct sl_tz *tz, int64_t t);

/* The UTC instant of a local wall time (seconds since the epoch as if UTC,
 * i.e. days_from_civil*86400 + seconds of day).
 * Gap (spring forward): the instant the clock reaches after the gap (the
 * wall time shifted by the gap's length), *kind = 1: Europe/Berlin
 * 2025-03-30 02:30 -> 01:30Z (= 03:30 CEST).
 * Overlap (fall back): the first (earlier) instant, *kind = 2: Europe/Berlin
 * 2025-10-26 02:30 -> 00:30Z (CEST). Else *kind 0.
 * kind may be NULL. */
int64_t sl_tz_local_to_utc(const struct sl_tz *tz, int64_t local, int *kind);

/* The local wall time (as seconds since the epoch as if UTC) of instant t. */
int64_t sl_tz_utc_to_local(const struct sl_tz *tz, int64_t t);

/* Civil date helpers (proleptic Gregorian, Howard Hinnant's algorithms).
 * sl_days_from_civil: days since 1970-01-01 of y-m-d; a month above 12 or a
 * day beyond the month carries over (2025-13-01 is 2026-01-01, day 0 the last
 * day of the month before). Exact for |y| <= 2^40.
 * sl_civil_from_days: the date of day z (any output pointer may be NULL);
 * exact for |z| <= 2^50. */
int64_t sl_days_from_civil(int64_t y, unsigned m, unsigned d);
void sl_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);

#endif
