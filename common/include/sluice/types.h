/*
 * Attribute types (JOBS.md "target"): checking and normalizing one value.
 *
 * sl_type_check() takes the mapped text of one attribute and returns its
 * normalized text (decimal digits rounded to scale, booleans as true/false,
 * dates ISO, datetimes UTC "Z", phones E.164, e-mail domains lowercased, ...)
 * or the problems it has. The validator calls it for every attribute of every
 * row; it allocates only from the arena.
 */
#ifndef SLUICE_TYPES_H
#define SLUICE_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/arena.h"
#include "sluice/job.h"

/* One problem found by a check (strings in the arena or static). */
struct sl_type_problem {
    const char *code;    /* JOBS.md error code */
    const char *message; /* "must be at most 32 characters (is 40)" */
};

#define SL_TYPE_MAX_PROBLEMS 4

/* Checks value (not NULL, not empty: missing values are the caller's) against
 * attr. tz: the zone of datetimes without an offset (NULL: UTC). On success
 * returns 0 and *out is the normalized value: value itself when it is already
 * normal, else a string in arena (or a static one). Otherwise returns the
 * number of problems (1..SL_TYPE_MAX_PROBLEMS) written to probs, with
 * messages in arena; SL_ERR_NOMEM (< 0) when the arena is out of memory.
 * Every type but text first trims surrounding white space (and no-break
 * spaces). Called from any thread; attr is only read. */
int sl_type_check(const struct sl_attr *attr, const char *value, const struct sl_tz *tz,
                  struct sl_arena *arena, const char **out,
                  struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS]);

/* The value of attribute attr as the validator keys a row by it: value
 * normalized by sl_type_check (in arena when it changed), or NULL when value
 * does not pass attr's checks (the validator then asks about no key) or
 * arena is out of memory. The stages before the validator key their
 * messages with it, so that rows whose key values differ only before
 * normalization ("ann@Example.COM", " ann@example.com") share a partition
 * and keep their file order. */
const char *sl_type_key_value(const struct sl_attr *attr, const char *value, const struct sl_tz *tz,
                              struct sl_arena *arena);

/* The text of a value for a message: s itself when it is short and clean,
 * else a copy in arena cut to 48 characters ("..." appended) with control
 * characters and invalid UTF-8 replaced by '?'. Never NULL (a static
 * placeholder when arena is out of memory). */
const char *sl_type_quote(const char *s, struct sl_arena *arena);

/* Decimal text helpers (exact, no floating point). A decimal is an optional
 * sign, digits and an optional '.' with digits ("1234.56", "-0.5", "+7",
 * ".5", "5."), surrounding white space allowed; no exponent, no grouping. */
/* Normalizes decimal s into arena: no '+', no leading zeros ("007.5" ->
 * "7.5", ".5" -> "0.5", "5." -> "5"), no negative zero ("-0.00" -> "0.00").
 * scale < 0 keeps the fraction digits as given ("1.50" stays "1.50");
 * scale >= 0 rounds half-even to exactly scale places ("2.345" -> "2.34",
 * "2.355" -> "2.36", "1" -> "1.00"). NULL when s is no decimal (or out of
 * memory). */
char *sl_decimal_normalize(const char *s, int scale, struct sl_arena *arena);
/* Compares two decimals numerically ("1.50" equals "1.5", "-0" equals "0"):
 * <0, 0, >0. Either side may be any decimal sl_decimal_normalize accepts;
 * a side that is no decimal orders as strcmp would. */
int sl_decimal_cmp(const char *a, const char *b);

/* Whether code is an ISO 4217 currency code in use (case-insensitive;
 * "XTS" and "XXX", the codes for tests and for no currency, are not). */
bool sl_currency_valid(const char *code);
/* The static upper-case code of an ISO 4217 currency in use ("eur" ->
 * "EUR"); NULL when code is none. */
const char *sl_currency_code(const char *code);

/* Phone number to E.164 ("+49301234567") in arena; region: ISO alpha-2 of
 * national numbers ("" or NULL: none). Accepts "+49 30 1234567",
 * "0049 30 1234567", "+49 (0)30 1234567", "tel:+49-30-1234567", and with a
 * region "030 1234567", "(030) 123 45 67", "212-555-0100" (US). Extensions
 * ("ext. 12", "x12") are refused: E.164 cannot hold them. NULL with *why set
 * to the whole message naming the value (in arena, or static) when s cannot
 * be normalized. */
char *sl_phone_e164(const char *s, const char *region, struct sl_arena *arena, const char **why);
/* Whether region is a known ISO 3166 alpha-2 region with phone numbers
 * (case-insensitive; the loader should keep it upper-case). */
bool sl_phone_region_valid(const char *region);

/* Days in month m (1-12) of year y (proleptic Gregorian). */
int sl_days_in_month(int y, int m);

#endif
