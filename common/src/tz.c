/*
 * Time zones (tz.h): TZif files of the system tzdata ($TZDIR, else
 * /usr/share/zoneinfo) read into a table of transitions plus the POSIX TZ rule
 * of the file's footer, which governs every instant after the last
 * transition (RFC 8536). Files are untrusted input: every count is checked
 * against the file's size and a bad file is refused with a message. Loaded
 * zones are immutable and kept in a process-wide cache, so the pointers handed
 * out stay valid until exit and may be shared between threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/tz.h"

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_NAME_MAX    255
#define TZ_FILE_MAX    (1 << 20) /* real TZif files are a few KiB */
#define TZ_HEADER_LEN  44
#define TZ_FOOTER_MAX  255
/* RFC 8536's range of a UT offset, in seconds. */
#define TZ_OFF_MIN (-89999)
#define TZ_OFF_MAX 93599
/* Instants are evaluated within +-2^55 s (a billion years): calendar
 * arithmetic on them cannot overflow. */
#define TZ_T_LIMIT ((int64_t)1 << 55)
/* Transitions looked at around one wall time by sl_tz_local_to_utc. */
#define TZ_SCAN_MAX 64

/* One date of a POSIX TZ rule: Jn, n or Mm.w.d, then /time. */
enum tz_date_kind {
    TZ_DATE_JULIAN, /* Jn: 1..365, February 29 never counted */
    TZ_DATE_ZERO,   /* n: 0..365, February 29 counted */
    TZ_DATE_MONTH,  /* Mm.w.d: weekday d of week w (5 = last) of month m */
};

struct tz_date {
    enum tz_date_kind kind;
    int day; /* Jn / n: the day; Mm.w.d: the weekday 0 (Sunday) .. 6 */
    int week;
    int month;
    int32_t secs; /* local time of the change, -167h .. 167h (RFC 8536) */
};

struct tz_rule {
    int32_t std_off; /* seconds east of UTC */
    int32_t dst_off;
    bool has_dst;
    struct tz_date start; /* standard -> daylight, in standard time */
    struct tz_date end;   /* daylight -> standard, in daylight time */
};

struct sl_tz {
    const char *name;
    size_t ntrans;
    const int64_t *trans;     /* strictly ascending instants */
    const int32_t *trans_off; /* offset in effect from trans[i] on */
    int32_t first_off;        /* before the first transition: type 0 */
    bool has_rule;            /* the footer rule, after the last transition */
    struct tz_rule rule;
    struct sl_tz *next; /* cache list */
};

struct tz_event {
    int64_t t;
    int32_t off;
};

static const struct sl_tz tz_utc = {.name = "UTC"};
static const struct sl_tz tz_etc_utc = {.name = "Etc/UTC"};

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_tz *tz_cache;

/* ---- calendar ---------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static bool is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* Hinnant's days_from_civil; month and day outside their range carry over
 * (month 13 is January of the next year, day 0 the last of the month before).
 * Years are clamped to +-2^40 so that nothing overflows. */
int64_t sl_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    const int64_t ylim = (int64_t)1 << 40;
    y = clamp64(y, -ylim, ylim);
    if (m == 0) {
        y -= 1;
        m = 12;
    } else if (m > 12) {
        y += (m - 1) / 12;
        m = (m - 1) % 12 + 1;
    }
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                           /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;   /* [0, 146096] */
    return era * 146097 + doe - 719468 + (int64_t)d - 1;
}

/* Hinnant's civil_from_days; days are clamped to +-2^50. */
void sl_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    const int64_t zlim = (int64_t)1 << 50;
    z = clamp64(z, -zlim, zlim) + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    unsigned mm = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    if (y)
        *y = yoe + era * 400 + (mm <= 2);
    if (m)
        *m = mm;
    if (d)
        *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
}

/* ---- POSIX TZ rule ------------------------------------------------------ */

static int64_t rule_day(const struct tz_date *dt, int64_t y)
{
    switch (dt->kind) {
    case TZ_DATE_JULIAN:
        return sl_days_from_civil(y, 1, 1) + dt->day - 1 + (is_leap(y) && dt->day >= 60);
    case TZ_DATE_ZERO:
        return sl_days_from_civil(y, 1, 1) + dt->day;
    case TZ_DATE_MONTH:
    default: {
        int64_t first = sl_days_from_civil(y, (unsigned)dt->month, 1);
        int64_t next = sl_days_from_civil(y, (unsigned)dt->month + 1, 1);
        int wd = (int)(((first % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
        int64_t day = first + (dt->day - wd + 7) % 7 + 7 * (int64_t)(dt->week - 1);
        while (day >= next)
            day -= 7;
        return day;
    }
    }
}

/* The local year (in standard time) of instant t. */
static int64_t rule_year(const struct tz_rule *r, int64_t t)
{
    int64_t y;
    sl_civil_from_days(floor_div(t + r->std_off, 86400), &y, NULL, NULL);
    return y;
}

/* The changes of years y0..y1 in time order (ties keep year order, which
 * makes a rule with daylight time all year stay in daylight time). */
static size_t rule_events(const struct tz_rule *r, int64_t y0, int64_t y1, struct tz_event *ev)
{
    size_t n = 0;
    for (int64_t y = y0; y <= y1; y++) {
        ev[n].t = rule_day(&r->start, y) * 86400 + r->start.secs - r->std_off;
        ev[n++].off = r->dst_off;
        ev[n].t = rule_day(&r->end, y) * 86400 + r->end.secs - r->dst_off;
        ev[n++].off = r->std_off;
    }
    for (size_t i = 1; i < n; i++) {
        struct tz_event e = ev[i];
        size_t j = i;
        for (; j > 0 && ev[j - 1].t > e.t; j--)
            ev[j] = ev[j - 1];
        ev[j] = e;
    }
    return n;
}

static int32_t rule_offset(const struct tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    /* A rule time may lie up to a week outside its year: every change of
     * year y-2 is before t, so the list always has one at or before t. */
    struct tz_event ev[8];
    int64_t y = rule_year(r, t);
    size_t n = rule_events(r, y - 2, y + 1, ev);
    int32_t off = r->std_off;
    for (size_t i = 0; i < n && ev[i].t <= t; i++)
        off = ev[i].off;
    return off;
}

/* ---- lookups ------------------------------------------------------------ */

static int32_t tz_offset(const struct sl_tz *tz, int64_t t)
{
    size_t n = tz->ntrans;
    if (n == 0 || t > tz->trans[n - 1]) {
        if (tz->has_rule)
            return rule_offset(&tz->rule, t);
        return n ? tz->trans_off[n - 1] : tz->first_off;
    }
    if (t < tz->trans[0])
        return tz->first_off;
    size_t lo = 0, hi = n; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->trans_off[lo];
}

/* The first change after t into *next; false when there is none. */
static bool tz_next_change(const struct sl_tz *tz, int64_t t, int64_t *next)
{
    size_t n = tz->ntrans;
    if (n && t < tz->trans[n - 1]) {
        size_t lo = 0, hi = n - 1; /* the first trans[i] > t is in [lo, hi] */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (tz->trans[mid] > t)
                hi = mid;
            else
                lo = mid + 1;
        }
        *next = tz->trans[lo];
        return true;
    }
    if (!tz->has_rule || !tz->rule.has_dst)
        return false;
    struct tz_event ev[8];
    int64_t y = rule_year(&tz->rule, t);
    size_t ne = rule_events(&tz->rule, y - 1, y + 2, ev);
    for (size_t i = 0; i < ne; i++) {
        if (ev[i].t > t) {
            *next = ev[i].t;
            return true;
        }
    }
    return false;
}

const struct sl_tz *sl_tz_utc(void)
{
    return &tz_utc;
}

const char *sl_tz_name(const struct sl_tz *tz)
{
    return tz ? tz->name : tz_utc.name;
}

int sl_tz_offset_at(const struct sl_tz *tz, int64_t t)
{
    return tz_offset(tz ? tz : &tz_utc, clamp64(t, -TZ_T_LIMIT, TZ_T_LIMIT));
}

int64_t sl_tz_utc_to_local(const struct sl_tz *tz, int64_t t)
{
    return sat_add(t, sl_tz_offset_at(tz, t));
}

static void add_offset(int32_t *offs, size_t *n, int32_t off)
{
    for (size_t i = 0; i < *n; i++)
        if (offs[i] == off)
            return;
    offs[(*n)++] = off;
}

int64_t sl_tz_local_to_utc(const struct sl_tz *tz, int64_t local, int *kind)
{
    if (!tz)
        tz = &tz_utc;
    if (kind)
        *kind = 0;
    if (local < -TZ_T_LIMIT || local > TZ_T_LIMIT)
        return sat_add(local, -sl_tz_offset_at(tz, local));

    /* Every instant that shows this wall time lies in [from, to]; the
     * offsets in effect there are the candidates. */
    int64_t from = local - TZ_OFF_MAX - 1, to = local - TZ_OFF_MIN + 1;
    int32_t offs[TZ_SCAN_MAX + 1];
    size_t noffs = 0;
    bool gap = false;
    int64_t gap_utc = 0;
    add_offset(offs, &noffs, tz_offset(tz, from));
    int64_t cur = from, next;
    for (int i = 0; i < TZ_SCAN_MAX && tz_next_change(tz, cur, &next) && next <= to; i++) {
        int32_t before = tz_offset(tz, next - 1), after = tz_offset(tz, next);
        add_offset(offs, &noffs, after);
        if (!gap && after > before && local >= next + before && local < next + after) {
            gap = true;
            gap_utc = local - before; /* the wall time moved on by the gap */
        }
        cur = next;
    }

    int64_t best = 0;
    int nsol = 0;
    for (size_t i = 0; i < noffs; i++) {
        int64_t t = local - offs[i];
        if (tz_offset(tz, t) != offs[i])
            continue;
        if (nsol == 0 || t < best)
            best = t;
        nsol++;
    }
    if (nsol) {
        if (kind && nsol > 1)
            *kind = 2;
        return best;
    }
    if (gap) {
        if (kind)
            *kind = 1;
        return gap_utc;
    }
    return local - tz_offset(tz, local); /* not reached with sane data */
}

/* ---- POSIX TZ strings (the TZif footer) -------------------------------- */

static bool tzs_name(const char **sp)
{
    const char *s = *sp;
    size_t n = 0;
    if (*s == '<') {
        for (s++; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                  (*s >= '0' && *s <= '9') || *s == '+' || *s == '-';
             s++)
            n++;
        if (*s++ != '>')
            return false;
    } else {
        for (; (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'); s++)
            n++;
    }
    if (n < 3)
        return false;
    *sp = s;
    return true;
}

static bool tzs_num(const char **sp, int maxdig, int max, int *out)
{
    const char *s = *sp;
    int v = 0, nd = 0;
    while (*s >= '0' && *s <= '9') {
        if (++nd > maxdig)
            return false;
        v = v * 10 + (*s++ - '0');
    }
    if (nd == 0 || v > max)
        return false;
    *sp = s;
    *out = v;
    return true;
}

/* [+-]hh[:mm[:ss]] with hours up to maxh, into seconds. */
static bool tzs_hms(const char **sp, int maxh, int32_t *out)
{
    const char *s = *sp;
    int sign = 1, h, m = 0, sec = 0;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    if (!tzs_num(&s, 3, maxh, &h))
        return false;
    if (*s == ':') {
        s++;
        if (!tzs_num(&s, 2, 59, &m))
            return false;
        if (*s == ':') {
            s++;
            if (!tzs_num(&s, 2, 59, &sec))
                return false;
        }
    }
    *sp = s;
    *out = sign * (h * 3600 + m * 60 + sec);
    return true;
}

static bool tzs_date(const char **sp, struct tz_date *dt)
{
    const char *s = *sp;
    memset(dt, 0, sizeof(*dt));
    if (*s == 'J') {
        s++;
        dt->kind = TZ_DATE_JULIAN;
        if (!tzs_num(&s, 3, 365, &dt->day) || dt->day < 1)
            return false;
    } else if (*s == 'M') {
        s++;
        dt->kind = TZ_DATE_MONTH;
        if (!tzs_num(&s, 2, 12, &dt->month) || dt->month < 1 || *s++ != '.' ||
            !tzs_num(&s, 1, 5, &dt->week) || dt->week < 1 || *s++ != '.' ||
            !tzs_num(&s, 1, 6, &dt->day))
            return false;
    } else {
        dt->kind = TZ_DATE_ZERO;
        if (!tzs_num(&s, 3, 365, &dt->day))
            return false;
    }
    dt->secs = 7200;
    if (*s == '/') {
        s++;
        if (!tzs_hms(&s, 167, &dt->secs))
            return false;
    }
    *sp = s;
    return true;
}

/* Parses a POSIX TZ string with RFC 8536's extensions (rule times from -167
 * to 167 hours); false when it is not one. */
static bool tzs_parse(const char *s, struct tz_rule *r)
{
    int32_t v;
    memset(r, 0, sizeof(*r));
    if (!tzs_name(&s) || !tzs_hms(&s, 24, &v))
        return false;
    r->std_off = -v;
    if (*s == '\0')
        return true;
    if (!tzs_name(&s))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*s && *s != ',') {
        if (!tzs_hms(&s, 24, &v))
            return false;
        r->dst_off = -v;
    }
    if (*s == '\0') {
        /* No rule: POSIX leaves it to the implementation; tzcode and glibc
         * use the United States' rule. */
        r->start = (struct tz_date){TZ_DATE_MONTH, 0, 2, 3, 7200};
        r->end = (struct tz_date){TZ_DATE_MONTH, 0, 1, 11, 7200};
        return true;
    }
    if (*s++ != ',' || !tzs_date(&s, &r->start) || *s++ != ',' || !tzs_date(&s, &r->end))
        return false;
    return *s == '\0';
}

/* ---- TZif files --------------------------------------------------------- */

struct tzif_hdr {
    uint8_t version;
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static const char *tzif_header(const uint8_t *p, size_t n, size_t off, struct tzif_hdr *h)
{
    if (off > n)
        return "truncated header";
    p += off;
    if (memcmp(p, "TZif", n - off < 4 ? n - off : 4) != 0)
        return "not a tzif file (bad magic)";
    if (n - off < TZ_HEADER_LEN)
        return "truncated header";
    h->version = p[4];
    if (h->version != 0 && h->version < '2')
        return "unknown version";
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return NULL;
}

/* Bytes of the data block after a header, for 4- or 8-byte times. */
static uint64_t tzif_block_len(const struct tzif_hdr *h, unsigned tsize)
{
    return (uint64_t)h->timecnt * tsize + h->timecnt + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* Reads the data block at off (just after its header) into tz. */
static const char *tzif_block(const uint8_t *p, size_t n, size_t off, const struct tzif_hdr *h,
                              unsigned tsize, struct sl_tz *tz)
{
    if (h->typecnt == 0)
        return "no local time types";
    if (h->typecnt > 256)
        return "more than 256 local time types";
    if (h->charcnt == 0)
        return "empty time zone designations";
    if ((h->isutcnt && h->isutcnt != h->typecnt) || (h->isstdcnt && h->isstdcnt != h->typecnt))
        return "indicator counts do not match the type count";
    if (h->leapcnt)
        return "leap-second zones (right/) are not supported";
    if (tzif_block_len(h, tsize) > n - off)
        return "truncated data block";

    const uint8_t *tp = p + off;
    const uint8_t *ip = tp + (size_t)h->timecnt * tsize;
    const uint8_t *yp = ip + h->timecnt;
    int32_t offs[256];
    for (uint32_t i = 0; i < h->typecnt; i++) {
        const uint8_t *e = yp + (size_t)i * 6;
        int32_t o = (int32_t)be32(e);
        if (o < TZ_OFF_MIN || o > TZ_OFF_MAX)
            return "utc offset out of range";
        if (e[4] > 1)
            return "bad dst flag";
        if (e[5] >= h->charcnt)
            return "bad designation index";
        offs[i] = o;
    }
    tz->first_off = offs[0];

    const char *why = NULL;
    int64_t *trans = NULL;
    int32_t *trans_off = NULL;
    if (h->timecnt) {
        trans = malloc((size_t)h->timecnt * sizeof(*trans));
        trans_off = malloc((size_t)h->timecnt * sizeof(*trans_off));
        if (!trans || !trans_off) {
            why = "out of memory";
            goto fail;
        }
    }
    for (uint32_t i = 0; i < h->timecnt; i++) {
        const uint8_t *e = tp + (size_t)i * tsize;
        int64_t t = tsize == 8 ? be64(e) : (int64_t)(int32_t)be32(e);
        if (i && t <= trans[i - 1]) {
            why = "transition times not in ascending order";
            goto fail;
        }
        if (ip[i] >= h->typecnt) {
            why = "bad local time type index";
            goto fail;
        }
        trans[i] = t;
        trans_off[i] = offs[ip[i]];
    }
    tz->ntrans = h->timecnt;
    tz->trans = trans;
    tz->trans_off = trans_off;
    return NULL;

fail:
    free(trans);
    free(trans_off);
    return why;
}

/* Parses a whole TZif file into tz; NULL or what is wrong with it. */
static const char *tzif_parse(const uint8_t *p, size_t n, struct sl_tz *tz)
{
    struct tzif_hdr h;
    const char *why = tzif_header(p, n, 0, &h);
    if (why)
        return why;
    if (h.version == 0)
        return tzif_block(p, n, TZ_HEADER_LEN, &h, 4, tz);

    /* Version 2+: skip the 32-bit block, read the 64-bit one and the footer. */
    uint64_t skip = TZ_HEADER_LEN + tzif_block_len(&h, 4);
    if (skip > n)
        return "truncated version 1 data block";
    size_t off = (size_t)skip;
    if ((why = tzif_header(p, n, off, &h)))
        return why;
    if (h.version < '2')
        return "second header is not version 2 or later";
    off += TZ_HEADER_LEN;
    if ((why = tzif_block(p, n, off, &h, 8, tz)))
        return why;
    off += (size_t)tzif_block_len(&h, 8);
    if (off >= n || p[off] != '\n')
        return "missing footer";
    const uint8_t *s = p + off + 1;
    const uint8_t *nl = memchr(s, '\n', n - off - 1);
    if (!nl)
        return "truncated footer";
    size_t len = (size_t)(nl - s);
    if (len == 0)
        return NULL; /* no rule: the last transition's type stays */
    char buf[TZ_FOOTER_MAX + 1];
    if (len > TZ_FOOTER_MAX || memchr(s, '\0', len))
        return "invalid tz string in footer";
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!tzs_parse(buf, &tz->rule))
        return "invalid tz string in footer";
    tz->has_rule = true;
    return NULL;
}

/* ---- loading and the cache ---------------------------------------------- */

static void tz_free(struct sl_tz *tz)
{
    if (!tz)
        return;
    free((char *)tz->name);
    free((int64_t *)tz->trans);
    free((int32_t *)tz->trans_off);
    free(tz);
}

/* What is wrong with a zone name, or NULL: names are relative paths under the
 * zoneinfo directory and must never leave it. */
static const char *tz_name_problem(const char *name)
{
    size_t n = strnlen(name, TZ_NAME_MAX + 1);
    if (n == 0)
        return "empty name";
    if (n > TZ_NAME_MAX)
        return "name too long";
    if (name[0] == '/')
        return "absolute paths are not allowed";
    if (strstr(name, ".."))
        return "\"..\" is not allowed";
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '/' || *c == '_' || *c == '+' || *c == '-'))
            return "only letters, digits and / _ + - are allowed";
    }
    if (name[n - 1] == '/' || strstr(name, "//"))
        return "empty path component";
    return NULL;
}

/* name for a message: at most 64 characters, unprintable ones as '?'. */
static void tz_quote(const char *name, char out[68])
{
    size_t i = 0;
    for (; name[i] && i < 64; i++)
        out[i] = name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?';
    if (name[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static int tz_read(const char *path, uint8_t **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        goto fail;
    }
    if (st.st_size > TZ_FILE_MAX) {
        errno = EFBIG;
        goto fail;
    }
    size_t cap = (size_t)st.st_size, got = 0;
    buf = malloc(cap ? cap : 1);
    if (!buf)
        goto fail;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *len = got;
    return 0;

fail:;
    int e = errno;
    free(buf);
    close(fd);
    errno = e;
    return -1;
}

static struct sl_tz *tz_load(const char *name, char *errbuf, size_t errsz)
{
    const char *dir = getenv("TZDIR");
    if (!dir || !dir[0])
        dir = TZ_DEFAULT_DIR;
    char path[PATH_MAX];
    uint8_t *data = NULL;
    size_t len = 0;
    struct sl_tz *tz = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "time zone \"%s\": path too long", name);
        goto fail;
    }
    if (tz_read(path, &data, &len) != 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
            sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "unknown time zone \"%s\" (no file %s)", name,
                      path);
        else
            sl_seterr(errbuf, errsz, SL_ERR_IO, "could not read time zone file %s: %s", path,
                      strerror(errno));
        goto fail;
    }
    tz = calloc(1, sizeof(*tz));
    if (!tz || !(tz->name = strdup(name))) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "time zone \"%s\": out of memory", name);
        goto fail;
    }
    const char *why = tzif_parse(data, len, tz);
    if (why) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "invalid time zone file %s: %s", path, why);
        goto fail;
    }
    free(data);
    return tz;

fail:
    free(data);
    tz_free(tz);
    return NULL;
}

static struct sl_tz *tz_cache_find(const char *name)
{
    for (struct sl_tz *tz = tz_cache; tz; tz = tz->next)
        if (strcmp(tz->name, name) == 0)
            return tz;
    return NULL;
}

const struct sl_tz *sl_tz_get(const char *name, char *errbuf, size_t errsz)
{
    if (!name) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "time zone name is missing");
        return NULL;
    }
    const char *why = tz_name_problem(name);
    if (why) {
        char q[68];
        tz_quote(name, q);
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "invalid time zone name \"%s\": %s", q, why);
        return NULL;
    }
    if (strcmp(name, "UTC") == 0)
        return &tz_utc;
    if (strcmp(name, "Etc/UTC") == 0)
        return &tz_etc_utc;

    pthread_mutex_lock(&tz_lock);
    struct sl_tz *found = tz_cache_find(name);
    pthread_mutex_unlock(&tz_lock);
    if (found)
        return found;

    /* Loaded outside the lock; a thread that loses the race frees its copy. */
    struct sl_tz *tz = tz_load(name, errbuf, errsz);
    if (!tz)
        return NULL;
    pthread_mutex_lock(&tz_lock);
    found = tz_cache_find(name);
    if (!found) {
        tz->next = tz_cache;
        tz_cache = found = tz;
        tz = NULL;
    }
    pthread_mutex_unlock(&tz_lock);
    tz_free(tz);
    return found;
}
