/*
 * The job file (job.h, JOBS.md): parsing, checking and the job model.
 *
 * The loader walks the document once, section by section, and stops at the
 * first problem with a message that names the field path ("target.key[0]:
 * 'store' is not an attribute"). Unknown fields are refused with a
 * did-you-mean suggestion, because a misspelt optional field would otherwise
 * be silently ignored. Mapping templates are compiled here (template.h), so a
 * loaded job is ready for every stage and immutable afterwards.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sluice/arena.h"
#include "sluice/job.h"
#include "sluice/reader.h"
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/tz.h"
#include "sluice/schedule.h"
#include "sluice/util.h"

#define JOB_MAX_FILE  (32u << 20) /* bytes of a job file */
#define PATHSZ        256         /* a field path in a message */
#define NAME_MAX_LEN  128         /* job names */
#define IDENT_MAX_LEN 63          /* attributes, objects, tables (PostgreSQL) */
#define SHOW          "%.80s"     /* user text quoted in a message */

/* Loader state: the job being built and where its first problem goes. */
struct ld {
    struct sl_job *job;
    char *errbuf;
    size_t errsz;
    struct sl_arena arena; /* scratch of checks (decimals, defaults) */
    struct sl_refs refs;   /* field references collected by the templates */
};

/* ---- messages ---------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int bad(struct ld *ld, const char *path,
                                                     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ld->errbuf && ld->errsz) {
        if (path && path[0])
            snprintf(ld->errbuf, ld->errsz, "%s: %s", path, msg);
        else
            snprintf(ld->errbuf, ld->errsz, "%s", msg);
    }
    return -1;
}

static int nomem(struct ld *ld)
{
    return bad(ld, NULL, "out of memory");
}

/* parent.key into buf[PATHSZ] ("key" at the top level). A longer path is
 * cut and ends in "...": it only ever appears in a message. */
static const char *sub(char *buf, const char *parent, const char *key)
{
    int n;
    if (parent && parent[0])
        n = snprintf(buf, PATHSZ, "%s.%s", parent, key);
    else
        n = snprintf(buf, PATHSZ, "%s", key);
    if (n >= PATHSZ)
        memcpy(buf + PATHSZ - 4, "...", 4);
    return buf;
}

/* parent[i] into buf[PATHSZ]. */
static const char *idx(char *buf, const char *parent, size_t i)
{
    if (snprintf(buf, PATHSZ, "%s[%zu]", parent, i) >= PATHSZ)
        memcpy(buf + PATHSZ - 4, "...", 4);
    return buf;
}

static const char *kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Case-insensitive edit distance counting a swap of neighbours as one edit
 * (optimal string alignment: "cvs" is one edit from "csv"); SIZE_MAX for
 * long words. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[65][65];
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        int ca = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int cb = tolower((unsigned char)b[j - 1]);
            unsigned best = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < best)
                best = d[i][j - 1] + 1u;
            if (d[i - 1][j - 1] + (unsigned)(ca != cb) < best)
                best = d[i - 1][j - 1] + (unsigned)(ca != cb);
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                cb == tolower((unsigned char)a[i - 2]) && d[i - 2][j - 2] + 1u < best)
                best = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)best;
        }
    }
    return d[la][lb];
}

/* The closest candidate to a misspelt word, fed one candidate at a time. */
struct sugg {
    const char *word;
    const char *best;
    size_t dist;
};

static void sugg_try(struct sugg *s, const char *cand)
{
    size_t len = strlen(cand);
    size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    size_t d = edit_distance(s->word, cand);
    if (d <= limit && d < strlen(s->word) + (d == 0) && (!s->best || d < s->dist)) {
        s->best = cand;
        s->dist = d;
    }
}

static const char *suggest(const char *word, const char *const *names)
{
    struct sugg s = {word, NULL, 0};
    for (size_t i = 0; names[i]; i++)
        sugg_try(&s, names[i]);
    return s.best;
}

/* "a, b, c" of a NULL-terminated list into buf. */
static const char *join(char *buf, size_t n, const char *const *names)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; names[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

/* "unknown <what> 'x' (expected one of a, b; did you mean 'c'?)" at path. */
static int bad_choice(struct ld *ld, const char *path, const char *what, const char *value,
                      const char *const *names)
{
    char list[512];
    const char *s = suggest(value, names);
    join(list, sizeof(list), names);
    if (s)
        return bad(ld, path, "unknown %s '" SHOW "' (expected one of %s; did you mean '%s'?)", what,
                   value, list, s);
    return bad(ld, path, "unknown %s '" SHOW "' (expected one of %s)", what, value, list);
}

/* Refuses a member of obj that is not in allowed. */
static int check_keys(struct ld *ld, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i])
            continue;
        char list[512];
        const char *s = suggest(key, allowed);
        if (s)
            return bad(ld, path, "unknown field '" SHOW "' (did you mean '%s'?)", key, s);
        return bad(ld, path, "unknown field '" SHOW "' (expected one of %s)", key,
                   join(list, sizeof(list), allowed));
    }
    return 0;
}

/* ---- typed members ------------------------------------------------------ */

/* obj[key]; NULL when absent or null (null means "not given"). */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* An object member (NULL when absent); -1 when it is something else. */
static int get_obj(struct ld *ld, json_t *obj, const char *key, const char *parent, json_t **out)
{
    char p[PATHSZ];
    *out = member(obj, key);
    if (*out && !json_is_object(*out))
        return bad(ld, sub(p, parent, key), "must be an object (is %s)", kind(*out));
    return 0;
}

/* A string member (*out NULL when absent); nonempty refuses "". */
static int get_str(struct ld *ld, json_t *obj, const char *key, const char *parent, bool nonempty,
                   const char **out)
{
    char p[PATHSZ];
    json_t *v = member(obj, key);
    *out = NULL;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return bad(ld, sub(p, parent, key), "must be a string (is %s)", kind(v));
    if (nonempty && json_string_length(v) == 0)
        return bad(ld, sub(p, parent, key), "must not be empty");
    *out = json_string_value(v);
    return 0;
}

/* A copy of a string member (*out untouched when absent). */
static int dup_str(struct ld *ld, json_t *obj, const char *key, const char *parent, bool nonempty,
                   char **out)
{
    const char *s;
    if (get_str(ld, obj, key, parent, nonempty, &s))
        return -1;
    if (!s)
        return 0;
    if (!(*out = strdup(s)))
        return nomem(ld);
    return 0;
}

/* A boolean member (*out untouched when absent). */
static int get_bool(struct ld *ld, json_t *obj, const char *key, const char *parent, bool *out)
{
    char p[PATHSZ];
    json_t *v = member(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return bad(ld, sub(p, parent, key), "must be true or false (is %s)", kind(v));
    *out = json_is_true(v);
    return 0;
}

/* An integer member in lo..hi: 1 and *out when given, 0 absent, -1 bad. */
static int get_int(struct ld *ld, json_t *obj, const char *key, const char *parent, long lo,
                   long hi, long *out)
{
    char p[PATHSZ];
    json_t *v = member(obj, key);
    if (!v)
        return 0;
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : 0;
    if (!json_is_integer(v) || n < lo || n > hi) {
        if (hi == LONG_MAX)
            return bad(ld, sub(p, parent, key), "must be an integer of at least %ld", lo);
        return bad(ld, sub(p, parent, key), "must be an integer from %ld to %ld", lo, hi);
    }
    *out = (long)n;
    return 1;
}

/* One of names (case-sensitive), as its index: 1 when given, 0 absent. */
static int get_enum(struct ld *ld, json_t *obj, const char *key, const char *parent,
                    const char *what, const char *const *names, int *out)
{
    char p[PATHSZ];
    const char *s;
    if (get_str(ld, obj, key, parent, false, &s))
        return -1;
    if (!s)
        return 0;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) {
            *out = i;
            return 1;
        }
    }
    return bad_choice(ld, sub(p, parent, key), what, s, names);
}

/* The text of a JSON number, exact and without exponent, into buf[400]. */
static void number_text(const json_t *v, char *buf)
{
    if (json_is_integer(v)) {
        snprintf(buf, 400, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return;
    }
    double d = json_real_value(v);
    char g[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(g, sizeof(g), "%.*g", prec, d);
        if (strtod(g, NULL) == d)
            break;
    }
    /* Rewrite d.ddde[+-]XX as plain decimal digits. */
    char *e = strchr(g, 'e');
    if (!e) {
        snprintf(buf, 400, "%s", g);
        return;
    }
    int exp = atoi(e + 1);
    *e = '\0';
    char digits[64];
    size_t nd = 0;
    const char *m = g;
    bool neg = *m == '-';
    if (neg)
        m++;
    for (; *m; m++)
        if (isdigit((unsigned char)*m))
            digits[nd++] = *m;
    digits[nd] = '\0';
    int point = 1 + exp; /* digits before the decimal point */
    size_t o = 0;
    if (neg)
        buf[o++] = '-';
    if (point <= 0) {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int i = 0; i < -point && o < 390 - nd; i++)
            buf[o++] = '0';
        memcpy(buf + o, digits, nd);
        o += nd;
    } else {
        for (int i = 0; i < point && o < 390; i++) {
            buf[o++] = (size_t)i < nd ? digits[i] : '0';
        }
        if ((size_t)point < nd) {
            buf[o++] = '.';
            memcpy(buf + o, digits + point, nd - (size_t)point);
            o += nd - (size_t)point;
        }
    }
    buf[o] = '\0';
}

/* ---- syntax checks ------------------------------------------------------ */

static bool is_ident(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > IDENT_MAX_LEN || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

#define IDENT_RULE "letters, digits and '_', not starting with a digit, at most 63 characters"

/* Walks the ${env:NAME} of s: with out, expands them into out (a growing
 * buffer); without, only checks the syntax. 0 or -1 with msg set. */
struct growbuf {
    char *p;
    size_t n, cap;
};

static int gb_add(struct growbuf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int env_walk(const char *s, struct growbuf *out, char *msg, size_t msgsz)
{
    const char *p = s;
    for (;;) {
        const char *st = strstr(p, "${env:");
        if (!st)
            break;
        if (out && gb_add(out, p, (size_t)(st - p)))
            goto nomem;
        const char *name = st + 6, *end = strchr(name, '}');
        if (!end) {
            snprintf(msg, msgsz, "unclosed '${env:' at offset %zu", (size_t)(st - s));
            return -1;
        }
        size_t len = (size_t)(end - name);
        bool ok = len > 0 && len <= 255 && (isalpha((unsigned char)name[0]) || name[0] == '_');
        for (size_t i = 0; ok && i < len; i++)
            ok = isalnum((unsigned char)name[i]) || name[i] == '_';
        if (!ok) {
            snprintf(msg, msgsz,
                     "invalid environment variable name '%.*s' at offset %zu (expected "
                     "letters, digits and '_')",
                     (int)(len > 80 ? 80 : len), name, (size_t)(st - s));
            return -1;
        }
        if (out) {
            char var[256];
            memcpy(var, name, len);
            var[len] = '\0';
            const char *val = getenv(var);
            if (!val) {
                snprintf(msg, msgsz, "environment variable %s is not set", var);
                return -1;
            }
            if (gb_add(out, val, strlen(val)))
                goto nomem;
        }
        p = end + 1;
    }
    if (out && gb_add(out, p, strlen(p)))
        goto nomem;
    return 0;
nomem:
    snprintf(msg, msgsz, "out of memory");
    return -1;
}

char *sl_env_expand(const char *s, char *errbuf, size_t errsz)
{
    struct growbuf b = {0};
    char msg[512];
    if (env_walk(s, &b, msg, sizeof(msg))) {
        if (errbuf && errsz)
            snprintf(errbuf, errsz, "%s", msg);
        free(b.p);
        return NULL;
    }
    if (!b.p && !(b.p = strdup(""))) {
        if (errbuf && errsz)
            snprintf(errbuf, errsz, "out of memory");
    }
    return b.p;
}

static int check_env(struct ld *ld, const char *path, const char *s)
{
    char msg[512];
    if (env_walk(s, NULL, msg, sizeof(msg)))
        return bad(ld, path, "%s", msg);
    return 0;
}

/* The URL scheme of s lowercased into buf, or "" when s has none (a path, or
 * it starts with ${env:...}). */
static const char *url_scheme(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    buf[0] = '\0';
    if (!isalpha((unsigned char)s[0]))
        return buf;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')
        i++;
    if (strncmp(s + i, "://", 3) != 0)
        return buf;
    if (i >= n) /* longer than any scheme we know: cut, it is refused anyway */
        i = n - 1;
    for (size_t j = 0; j < i; j++)
        buf[j] = (char)tolower((unsigned char)s[j]);
    buf[i] = '\0';
    return buf;
}

static bool is_http_url(const char *s)
{
    char sch[16];
    url_scheme(s, sch, sizeof(sch));
    if (strcmp(sch, "http") && strcmp(sch, "https"))
        return false;
    const char *host = strstr(s, "://") + 3;
    return *host && *host != '/' && !strpbrk(s, " \t\r\n");
}

static bool is_email(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);
    if (!at || at == s || strchr(at + 1, '@') || n > 254 || (size_t)(at - s) > 64)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || strchr("<>()[]\\,;:\"", *p))
            return false;
    const char *dom = at + 1;
    const char *dot = strchr(dom, '.');
    if (!dot || dom[0] == '.' || s[n - 1] == '.' || strstr(dom, ".."))
        return false;
    return true;
}

/* An HTTP header name: an RFC 9110 token. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

/* ---- name, options ------------------------------------------------------ */

static const char *const TOP_KEYS[] = {
    "name",    "description", "timezone", "source",      "target",  "mapping", "lookups",
    "options", "schedule",    "report",   "destination", "targets", "webhook", NULL};

static int parse_name(struct ld *ld, json_t *root)
{
    struct sl_job *job = ld->job;
    const char *name;
    if (get_str(ld, root, "name", "", true, &name))
        return -1;
    if (!name)
        return bad(ld, "name", "required");
    size_t n = strlen(name);
    if (n > NAME_MAX_LEN)
        return bad(ld, "name", "must be at most %d characters (is %zu)", NAME_MAX_LEN, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-')
            return bad(ld, "name",
                       "'" SHOW "' has a character other than letters, digits, '_', '.' and '-' "
                       "(it names files and state)",
                       name);
    }
    if (name[0] == '.')
        return bad(ld, "name", "must not start with '.' (it names files and state)");
    if (!(job->name = strdup(name)) || !(job->id = strdup(name)))
        return nomem(ld);
    return dup_str(ld, root, "description", "", false, &job->description);
}

static int parse_options(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"allow_create", "sync",     "skip_unchanged",
                                       "duplicates",   "approval", NULL};
    static const char *const syncs[] = {"upsert", "append", "mirror", NULL};
    static const char *const dups[] = {"reject", "last_wins", NULL};
    struct sl_options *o = &ld->job->options;
    json_t *obj;
    int v;
    o->allow_create = true;
    o->sync = SL_SYNC_UPSERT;
    o->skip_unchanged = true;
    o->duplicates = SL_DUPS_REJECT;
    o->approval = false;
    if (get_obj(ld, root, "options", "", &obj))
        return -1;
    if (!obj)
        return 0;
    if (check_keys(ld, obj, "options", keys) ||
        get_bool(ld, obj, "allow_create", "options", &o->allow_create) ||
        get_bool(ld, obj, "skip_unchanged", "options", &o->skip_unchanged) ||
        get_bool(ld, obj, "approval", "options", &o->approval))
        return -1;
    int r = get_enum(ld, obj, "sync", "options", "sync mode", syncs, &v);
    if (r < 0)
        return -1;
    if (r)
        o->sync = (enum sl_sync)v;
    if ((r = get_enum(ld, obj, "duplicates", "options", "value", dups, &v)) < 0)
        return -1;
    if (r)
        o->duplicates = (enum sl_dups)v;
    return 0;
}

/* ---- schedule ----------------------------------------------------------- */

static const char *const WEEKDAYS[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};
static const char *const WEEKDAYS_LONG[] = {"sunday",   "monday", "tuesday",  "wednesday",
                                            "thursday", "friday", "saturday", NULL};
static const char *const MONTHS[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                     "aug", "sep", "oct", "nov", "dec", NULL};

struct cron_field {
    const char *name;
    int lo, hi;
    const char *const *names; /* NULL: numbers only */
    int name_base;            /* value of names[0] */
};

static const struct cron_field CRON_FIELDS[5] = {
    {"minute", 0, 59, NULL, 0},         {"hour", 0, 23, NULL, 0},
    {"day of month", 1, 31, NULL, 0},   {"month", 1, 12, MONTHS, 1},
    {"day of week", 0, 7, WEEKDAYS, 0},
};

/* A number or name of field f at *p; advances *p. */
static int cron_value(const char **p, const struct cron_field *f, int *out, char *msg, size_t n)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s) && v < 100000)
            v = v * 10 + (*s++ - '0');
        if (v < f->lo || v > f->hi) {
            snprintf(msg, n, "%s: %ld is out of range %d-%d", f->name, v, f->lo, f->hi);
            return -1;
        }
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) &&
        isalpha((unsigned char)s[2]) && !isalpha((unsigned char)s[3])) {
        for (int i = 0; f->names[i]; i++) {
            if (strncasecmp(f->names[i], s, 3) == 0) {
                *out = f->name_base + i;
                *p = s + 3;
                return 0;
            }
        }
    }
    size_t len = strcspn(s, ",-/");
    snprintf(msg, n, "%s: '%.*s' is not a %s", f->name, (int)(len > 20 ? 20 : len), s,
             f->names ? "number or name" : "number");
    return -1;
}

/* One field: a list of *, a, a-b, each with an optional /step. */
static int cron_field_check(const char *s, const struct cron_field *f, char *msg, size_t n)
{
    const char *p = s;
    for (;;) {
        int a = f->lo, b = f->hi;
        if (*p == '*') {
            p++;
        } else {
            if (cron_value(&p, f, &a, msg, n))
                return -1;
            if (*p == '-') {
                p++;
                if (cron_value(&p, f, &b, msg, n))
                    return -1;
                if (b < a) {
                    snprintf(msg, n, "%s: range %d-%d goes backwards", f->name, a, b);
                    return -1;
                }
            }
        }
        if (*p == '/') {
            p++;
            long step = 0;
            if (!isdigit((unsigned char)*p)) {
                snprintf(msg, n, "%s: '/' must be followed by a step", f->name);
                return -1;
            }
            while (isdigit((unsigned char)*p) && step < 100000)
                step = step * 10 + (*p++ - '0');
            if (step < 1 || step > f->hi - f->lo + 1) {
                snprintf(msg, n, "%s: step %ld is out of range 1-%d", f->name, step,
                         f->hi - f->lo + 1);
                return -1;
            }
        }
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p) {
            snprintf(msg, n, "%s: unexpected '%c' in '%.40s'", f->name, *p, s);
            return -1;
        }
        return 0;
    }
}

/* Checks a 5-field cron expression; 0 or -1 with msg set. */
static int cron_check(const char *expr, char *msg, size_t n)
{
    char buf[256], *fields[6], *save = NULL;
    int nf = 0;
    if (expr[0] == '@') {
        snprintf(msg, n, "macros like '%.20s' are not supported (use every 'daily', ...)", expr);
        return -1;
    }
    if (strlen(expr) >= sizeof(buf)) {
        snprintf(msg, n, "too long");
        return -1;
    }
    strcpy(buf, expr);
    for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (nf == 6)
            break;
        fields[nf++] = t;
    }
    if (nf != 5) {
        snprintf(msg, n, "expected 5 fields (minute hour day-of-month month day-of-week), got %s%d",
                 nf == 6 ? "more than " : "", nf == 6 ? 5 : nf);
        return -1;
    }
    for (int i = 0; i < 5; i++)
        if (cron_field_check(fields[i], &CRON_FIELDS[i], msg, n))
            return -1;
    return 0;
}

/* "HH:MM" (hour 0-23, one or two digits) or, when hourly, ":MM". */
static bool parse_at(const char *s, bool hourly, int *h, int *m)
{
    int hh = -1;
    if (!hourly) {
        if (!isdigit((unsigned char)s[0]))
            return false;
        hh = s[0] - '0';
        s++;
        if (isdigit((unsigned char)s[0]))
            hh = hh * 10 + (*s++ - '0');
        if (hh > 23)
            return false;
    }
    if (s[0] != ':' || !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]) || s[3])
        return false;
    int mm = (s[1] - '0') * 10 + (s[2] - '0');
    if (mm > 59)
        return false;
    *h = hh;
    *m = mm;
    return true;
}

static int load_tz(struct ld *ld, const char *path, const char *name)
{
    char msg[512] = "";
    if (!sl_tz_get(name, msg, sizeof(msg)))
        return bad(ld, path, "%s", msg[0] ? msg : "unknown time zone");
    return 0;
}

/* schedule.every into s->every (and s->minutes). */
static int parse_every(struct ld *ld, const char *every, struct sl_schedule *s)
{
    static const char *const cadences[] = {"hourly",  "daily", "workdays", "weekly",
                                           "monthly", "cron",  "15m",      NULL};
    static const enum sl_every values[] = {SL_EVERY_HOURLY, SL_EVERY_DAILY,   SL_EVERY_WORKDAYS,
                                           SL_EVERY_WEEKLY, SL_EVERY_MONTHLY, SL_EVERY_CRON};
    for (size_t i = 0; i < SL_ARRAY_LEN(values); i++) {
        if (!strcmp(every, cadences[i])) {
            s->every = values[i];
            return 0;
        }
    }
    /* "<n>m" minutes, or "<n>h" hours (an extension). */
    const char *d = every;
    long n = 0;
    while (isdigit((unsigned char)*d) && n < 100000000)
        n = n * 10 + (*d++ - '0');
    if (d == every || (strcmp(d, "m") && strcmp(d, "h"))) {
        const char *sg = suggest(every, cadences);
        return bad(ld, "schedule.every",
                   "unknown cadence '" SHOW "' (expected minutes like \"15m\", hourly, daily, "
                   "workdays, weekly, monthly or cron%s%s%s)",
                   every, sg ? "; did you mean '" : "", sg ? sg : "", sg ? "'?" : "");
    }
    if (*d == 'h')
        n *= 60;
    if (n < 1)
        return bad(ld, "schedule.every", "must be at least 1 minute");
    if (n > 527040)
        return bad(ld, "schedule.every", "must be at most a year (527040m)");
    s->every = SL_EVERY_MINUTES;
    s->minutes = (int)n;
    return 0;
}

/* schedule.on: the weekday of weekly, the day of the month of monthly. */
static int parse_on(struct ld *ld, json_t *obj, const char *every, struct sl_schedule *s)
{
    json_t *on = member(obj, "on");
    long d = 0;
    if (s->every == SL_EVERY_WEEKLY) {
        if (!on)
            return bad(ld, "schedule.on", "required for every 'weekly' (mon ... sun)");
        if (!json_is_string(on))
            return bad(ld, "schedule.on", "must be a weekday, mon ... sun (is %s)", kind(on));
        const char *day = json_string_value(on);
        for (int i = 0; i < 7; i++) {
            if (!strcasecmp(day, WEEKDAYS[i]) || !strcasecmp(day, WEEKDAYS_LONG[i])) {
                s->weekday = i;
                return 0;
            }
        }
        return bad_choice(ld, "schedule.on", "weekday", day, WEEKDAYS);
    }
    if (s->every == SL_EVERY_MONTHLY) {
        if (!on)
            return bad(ld, "schedule.on", "required for every 'monthly' (a day 1 to 31)");
        if (get_int(ld, obj, "on", "schedule", 1, 31, &d) < 0)
            return -1;
        s->monthday = (int)d;
        return 0;
    }
    if (on)
        return bad(ld, "schedule.on", "not used with every '" SHOW "'", every);
    return 0;
}

/* The schedule object, and the job's time zone (top-level "timezone", an
 * extension, else schedule.timezone, else UTC). */
static int parse_schedule(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"every",    "at",      "on",          "cron",
                                       "timezone", "enabled", "run_on_save", NULL};
    struct sl_job *job = ld->job;
    struct sl_schedule *s = &job->schedule;
    const char *top_tz, *tz = NULL, *every = NULL, *at = NULL, *cron = NULL;
    json_t *obj;
    char msg[512];

    s->every = SL_EVERY_NONE;
    s->at_hour = s->at_minute = -1;
    s->enabled = true;
    s->run_on_save = false;

    if (get_str(ld, root, "timezone", "", true, &top_tz) ||
        (top_tz && load_tz(ld, "timezone", top_tz)) || get_obj(ld, root, "schedule", "", &obj))
        return -1;
    if (obj) {
        if (check_keys(ld, obj, "schedule", keys) ||
            get_str(ld, obj, "timezone", "schedule", true, &tz) ||
            (tz && load_tz(ld, "schedule.timezone", tz)) ||
            get_bool(ld, obj, "enabled", "schedule", &s->enabled) ||
            get_bool(ld, obj, "run_on_save", "schedule", &s->run_on_save) ||
            get_str(ld, obj, "every", "schedule", true, &every) ||
            get_str(ld, obj, "at", "schedule", true, &at) ||
            get_str(ld, obj, "cron", "schedule", true, &cron))
            return -1;
        if (!every && cron)
            every = "cron";
        if (!every)
            return bad(ld, "schedule.every",
                       "required (\"15m\", hourly, daily, workdays, weekly, monthly or cron)");
        if (parse_every(ld, every, s))
            return -1;

        bool has_at = s->every != SL_EVERY_MINUTES && s->every != SL_EVERY_CRON;
        if (at && !has_at)
            return bad(ld, "schedule.at", "not used with every '" SHOW "'", every);
        if (has_at) {
            bool hourly = s->every == SL_EVERY_HOURLY;
            s->at_hour = hourly ? -1 : 0;
            s->at_minute = 0;
            if (at && !parse_at(at, hourly, &s->at_hour, &s->at_minute))
                return bad(ld, "schedule.at",
                           hourly ? "'" SHOW "' is not ':MM' (minute 00-59 of every hour)"
                                  : "'" SHOW "' is not 'HH:MM' (00:00 to 23:59)",
                           at);
        }
        if (cron && s->every != SL_EVERY_CRON)
            return bad(ld, "schedule.cron", "only used with every 'cron'");
        if (s->every == SL_EVERY_CRON) {
            if (!cron)
                return bad(ld, "schedule.cron", "required for every 'cron' (\"m h dom mon dow\")");
            struct sl_cron compiled; /* the calendar's parser: a cron that never matches too */
            if (cron_check(cron, msg, sizeof(msg)) ||
                sl_cron_parse(cron, &compiled, msg, sizeof(msg)))
                return bad(ld, "schedule.cron", "%s", msg);
            if (!(s->cron = strdup(cron)))
                return nomem(ld);
        }
        if (parse_on(ld, obj, every, s))
            return -1;
    }

    /* The schedule's zone: its own, else the job's. */
    const char *jtz = top_tz ? top_tz : tz ? tz : "UTC";
    if (!(job->timezone = strdup(jtz)) || !(s->timezone = strdup(tz ? tz : jtz)))
        return nomem(ld);
    if (!(job->tz = sl_tz_get(job->timezone, msg, sizeof(msg))))
        return bad(ld, top_tz ? "timezone" : "schedule.timezone", "%s", msg);
    return 0;
}

/* ---- source ------------------------------------------------------------- */

static const char *const FORMATS[] = {"auto", "csv", "json", "ndjson", "xml", "xlsx", "xls", NULL};

const char *sl_format_name(enum sl_format f)
{
    if ((int)f < 0 || (size_t)f >= SL_ARRAY_LEN(FORMATS) - 1)
        return NULL;
    return FORMATS[f];
}

static int parse_headers(struct ld *ld, json_t *obj, const char *path, struct sl_header_kv **out,
                         size_t *nout)
{
    const char *name;
    json_t *v;
    char p[PATHSZ];
    size_t n = json_object_size(obj);
    if (n == 0)
        return 0;
    if (!(*out = calloc(n, sizeof(**out))))
        return nomem(ld);
    json_object_foreach(obj, name, v)
    {
        sub(p, path, name);
        if (!is_token(name))
            return bad(ld, p, "'" SHOW "' is not a valid header name", name);
        for (size_t i = 0; i < *nout; i++)
            if (!strcasecmp((*out)[i].name, name))
                return bad(ld, p, "given twice (header names ignore case)");
        if (!json_is_string(v))
            return bad(ld, p, "must be a string (is %s)", kind(v));
        const char *val = json_string_value(v);
        if (strpbrk(val, "\r\n"))
            return bad(ld, p, "must not contain a line break");
        if (check_env(ld, p, val))
            return -1;
        struct sl_header_kv *h = &(*out)[(*nout)++];
        if (!(h->name = strdup(name)) || !(h->value = strdup(val)))
            return nomem(ld);
    }
    return 0;
}

static int parse_auth(struct ld *ld, json_t *src)
{
    static const char *const keys[] = {"basic", "bearer", NULL};
    static const char *const basic_keys[] = {"user", "password", NULL};
    struct sl_source *so = &ld->job->source;
    json_t *auth, *basic;
    const char *s;
    if (get_obj(ld, src, "auth", "source", &auth))
        return -1;
    if (!auth)
        return 0;
    if (check_keys(ld, auth, "source.auth", keys) ||
        get_obj(ld, auth, "basic", "source.auth", &basic) ||
        get_str(ld, auth, "bearer", "source.auth", true, &s))
        return -1;
    if (basic && s)
        return bad(ld, "source.auth", "give either basic or bearer, not both");
    if (!basic && !s)
        return bad(ld, "source.auth",
                   "expected {\"basic\": {\"user\", \"password\"}} or {\"bearer\": \"...\"}");
    for (size_t i = 0; i < so->nheaders; i++)
        if (!strcasecmp(so->headers[i].name, "Authorization"))
            return bad(ld, "source.auth", "conflicts with source.headers.%s", so->headers[i].name);
    if (s) {
        if (check_env(ld, "source.auth.bearer", s))
            return -1;
        if (!(so->auth_bearer = strdup(s)))
            return nomem(ld);
        return 0;
    }
    if (check_keys(ld, basic, "source.auth.basic", basic_keys) ||
        dup_str(ld, basic, "user", "source.auth.basic", true, &so->auth_user) ||
        dup_str(ld, basic, "password", "source.auth.basic", false, &so->auth_password))
        return -1;
    if (!so->auth_user)
        return bad(ld, "source.auth.basic.user", "required");
    if (!so->auth_password)
        return bad(ld, "source.auth.basic.password", "required");
    if (check_env(ld, "source.auth.basic.user", so->auth_user) ||
        check_env(ld, "source.auth.basic.password", so->auth_password))
        return -1;
    return 0;
}

/* One character of a CSV option ("\t" or "tab" for a tab). */
static int csv_char(struct ld *ld, json_t *csv, const char *key, char *out)
{
    char p[PATHSZ];
    const char *s;
    if (get_str(ld, csv, key, "source.csv", false, &s))
        return -1;
    if (!s)
        return 0;
    sub(p, "source.csv", key);
    if (!strcmp(s, "tab") || !strcmp(s, "\\t")) {
        *out = '\t';
        return 0;
    }
    if (strlen(s) != 1)
        return bad(ld, p, "must be one character (is '" SHOW "'; \"tab\" or \"\\t\" for a tab)", s);
    unsigned char c = (unsigned char)s[0];
    if (c >= 0x80)
        return bad(ld, p, "must be an ASCII character");
    if (c == '\n' || c == '\r' || c == '\0')
        return bad(ld, p, "must not be a line break");
    *out = (char)c;
    return 0;
}

/* A block (csv, json, ...) only fits its formats and auto. */
static int block_fits(struct ld *ld, const char *key, bool fits)
{
    char p[PATHSZ];
    if (fits)
        return 0;
    return bad(ld, sub(p, "source", key), "not used with source.format '%s'",
               sl_format_name(ld->job->source.format));
}

/* A records path: "$" then ".name" / "[n]" steps (json), or "/A/B" (xml). */
static bool records_ok(const char *s, bool xml)
{
    if (xml) {
        if (s[0] != '/' || s[1] == '\0')
            return false;
        size_t n = strlen(s);
        return s[n - 1] != '/' && !strstr(s, "//");
    }
    if (s[0] != '$')
        return false;
    for (const char *p = s + 1; *p;) {
        if (*p == '.') {
            size_t n = strcspn(p + 1, ".[");
            if (n == 0)
                return false;
            p += 1 + n;
        } else if (*p == '[') {
            const char *e = strchr(p, ']');
            if (!e || e == p + 1)
                return false;
            p = e + 1;
        } else {
            return false;
        }
    }
    return true;
}

/* source.url: required; a known scheme with a host, or a path. *scheme gets
 * the scheme ("" for a path or a url starting with ${env:...}). */
static int parse_url(struct ld *ld, json_t *src, char scheme[16])
{
    static const char *const schemes[] = {"http",  "https", "ftp",  "sftp", "imap",
                                          "imaps", "s3",    "file", NULL};
    const char *s;
    if (get_str(ld, src, "url", "source", true, &s))
        return -1;
    if (!s)
        return bad(ld, "source.url", "required");
    if (check_env(ld, "source.url", s))
        return -1;
    url_scheme(s, scheme, 16);
    if (scheme[0]) {
        size_t i = 0;
        while (schemes[i] && strcmp(schemes[i], scheme))
            i++;
        if (!schemes[i])
            return bad_choice(ld, "source.url", "scheme", scheme, schemes);
        const char *rest = strstr(s, "://") + 3;
        if (strcmp(scheme, "file") && (!rest[0] || rest[0] == '/'))
            return bad(ld, "source.url", "'" SHOW "' has no host", s);
    }
    if (!(ld->job->source.url = strdup(s)))
        return nomem(ld);
    return 0;
}

static int parse_csv(struct ld *ld, json_t *src)
{
    static const char *const keys[] = {"delimiter", "quote", "header", "encoding", NULL};
    static const char *const encodings[] = {"utf-8", "latin1", "windows-1252", "utf-16", NULL};
    struct sl_source *so = &ld->job->source;
    json_t *o;
    const char *s;
    if (get_obj(ld, src, "csv", "source", &o))
        return -1;
    if (!o)
        return 0;
    if (block_fits(ld, "csv", so->format == SL_FORMAT_AUTO || so->format == SL_FORMAT_CSV) ||
        check_keys(ld, o, "source.csv", keys) || csv_char(ld, o, "delimiter", &so->csv_delimiter) ||
        csv_char(ld, o, "quote", &so->csv_quote) ||
        get_bool(ld, o, "header", "source.csv", &so->csv_header) ||
        get_str(ld, o, "encoding", "source.csv", true, &s))
        return -1;
    if (so->csv_delimiter && so->csv_delimiter == so->csv_quote)
        return bad(ld, "source.csv.delimiter", "must differ from the quote character");
    if (s && sl_encoding_parse(s, &so->encoding))
        return bad_choice(ld, "source.csv.encoding", "encoding", s, encodings);
    return 0;
}

/* source.json.records and source.xml.records; source.records is the one of
 * the declared format (with auto: the only one given). */
static int parse_records(struct ld *ld, json_t *src)
{
    static const char *const keys[] = {"records", NULL};
    struct sl_source *so = &ld->job->source;
    enum sl_format f = so->format;
    json_t *o;
    const char *s;
    char p[PATHSZ], rp[PATHSZ];
    for (int xml = 0; xml < 2; xml++) {
        const char *key = xml ? "xml" : "json";
        char **dst = xml ? &so->xml_records : &so->json_records;
        if (get_obj(ld, src, key, "source", &o))
            return -1;
        if (!o)
            continue;
        sub(p, "source", key);
        if (block_fits(ld, key,
                       f == SL_FORMAT_AUTO || f == (xml ? SL_FORMAT_XML : SL_FORMAT_JSON)) ||
            check_keys(ld, o, p, keys) || get_str(ld, o, "records", p, true, &s))
            return -1;
        if (!s)
            continue;
        if (!records_ok(s, xml))
            return bad(ld, sub(rp, p, "records"),
                       xml ? "'" SHOW "' is not an element path like /Stores/Store"
                           : "'" SHOW "' is not a path like $.data.items",
                       s);
        if (!(*dst = strdup(s)))
            return nomem(ld);
    }
    const char *rec = f == SL_FORMAT_JSON  ? so->json_records
                      : f == SL_FORMAT_XML ? so->xml_records
                      : !so->xml_records   ? so->json_records
                      : !so->json_records  ? so->xml_records
                                           : NULL;
    if (rec && !(so->records = strdup(rec)))
        return nomem(ld);
    return 0;
}

/* source.xlsx or source.xls (the same options, either key). */
static int parse_sheet(struct ld *ld, json_t *src)
{
    static const char *const keys[] = {"sheet", "header_row", NULL};
    struct sl_source *so = &ld->job->source;
    enum sl_format f = so->format;
    json_t *o;
    char p[PATHSZ], sp[PATHSZ];
    long n = 0;
    if (member(src, "xlsx") && member(src, "xls"))
        return bad(ld, "source.xls", "give either source.xlsx or source.xls (the same options)");
    const char *key = member(src, "xlsx") ? "xlsx" : "xls";
    if (get_obj(ld, src, key, "source", &o))
        return -1;
    if (!o)
        return 0;
    sub(p, "source", key);
    if (block_fits(ld, key, f == SL_FORMAT_AUTO || f == SL_FORMAT_XLSX || f == SL_FORMAT_XLS) ||
        check_keys(ld, o, p, keys))
        return -1;
    json_t *sh = member(o, "sheet");
    sub(sp, p, "sheet");
    if (json_is_string(sh)) {
        if (json_string_length(sh) == 0)
            return bad(ld, sp, "must not be empty");
        if (!(so->sheet = strdup(json_string_value(sh))))
            return nomem(ld);
    } else if (sh) {
        if (!json_is_integer(sh) || json_integer_value(sh) < 1 || json_integer_value(sh) > 65535)
            return bad(ld, sp, "must be a sheet name or a 1-based sheet number");
        so->sheet_index = (int)json_integer_value(sh);
    }
    int r = get_int(ld, o, "header_row", p, 1, 1048576, &n);
    if (r < 0)
        return -1;
    if (r)
        so->header_row = (int)n;
    return 0;
}

/* A query parameter name of source.pagination (default def when absent). */
static int pag_param(struct ld *ld, json_t *o, const char *key, const char *def, char **out)
{
    char p[PATHSZ];
    const char *s;
    if (get_str(ld, o, key, "source.pagination", true, &s))
        return -1;
    if (!s)
        s = def;
    if (!s)
        return 0;
    if (strlen(s) > 128 || strpbrk(s, "&=#? \t\r\n"))
        return bad(ld, sub(p, "source.pagination", key),
                   "'" SHOW "' is not a query parameter name (at most 128 characters, none of "
                   "& = # ? or spaces)",
                   s);
    if (!(*out = strdup(s)))
        return nomem(ld);
    return 0;
}

/* A body path of source.pagination ("$.meta.next"): required or not. */
static int pag_path(struct ld *ld, json_t *o, const char *key, bool required, char **out)
{
    char p[PATHSZ];
    const char *s;
    sub(p, "source.pagination", key);
    if (get_str(ld, o, key, "source.pagination", true, &s))
        return -1;
    if (!s)
        return required ? bad(ld, p, "required (a path like $.meta.next)") : 0;
    if (!records_ok(s, false))
        return bad(ld, p, "'" SHOW "' is not a path like $.meta.next", s);
    if (!(*out = strdup(s)))
        return nomem(ld);
    return 0;
}

/* source.pagination, whose type is already known (t): its options by type. */
static int parse_pagination(struct ld *ld, json_t *o, const char *scheme, enum sl_pag_type t)
{
    static const char *const page_keys[] = {
        "type", "page_param", "start_page", "page_size", "page_size_param", "max_pages", NULL};
    static const char *const offset_keys[] = {
        "type", "offset_param", "start_offset", "limit", "limit_param", "max_pages", NULL};
    static const char *const cursor_keys[] = {"type", "cursor_path", "cursor_param", "max_pages",
                                              NULL};
    static const char *const link_keys[] = {"type", "next_path", "max_pages", NULL};
    static const char *const *const keys[] = {NULL, page_keys, offset_keys, cursor_keys, link_keys};
    struct sl_source *so = &ld->job->source;
    struct sl_pagination *pg = &so->pag;
    long n;
    int r;
    pg->type = t;
    pg->max_pages = 1000;
    if (check_keys(ld, o, "source.pagination", keys[t]))
        return -1;
    if (scheme[0] && strcmp(scheme, "http") && strcmp(scheme, "https"))
        return bad(ld, "source.pagination", "only used with http:// and https:// sources");
    if (so->format != SL_FORMAT_AUTO && so->format != SL_FORMAT_JSON)
        return bad(ld, "source.pagination",
                   "pages are read as JSON: not used with source.format '%s'",
                   sl_format_name(so->format));
    if ((r = get_int(ld, o, "max_pages", "source.pagination", 1, 1000000, &n)) < 0)
        return -1;
    if (r)
        pg->max_pages = n;
    switch (t) {
    case SL_PAG_PAGE:
        pg->start = 1;
        if (pag_param(ld, o, "page_param", "page", &pg->param) ||
            pag_param(ld, o, "page_size_param", NULL, &pg->size_param) ||
            get_int(ld, o, "start_page", "source.pagination", 0, 1000000000, &pg->start) < 0 ||
            get_int(ld, o, "page_size", "source.pagination", 1, 1000000, &pg->size) < 0)
            return -1;
        if (pg->size_param && !pg->size)
            return bad(ld, "source.pagination.page_size",
                       "required with source.pagination.page_size_param");
        return 0;
    case SL_PAG_OFFSET:
        pg->size = 100;
        if (pag_param(ld, o, "offset_param", "offset", &pg->param) ||
            pag_param(ld, o, "limit_param", "limit", &pg->size_param) ||
            get_int(ld, o, "start_offset", "source.pagination", 0, LONG_MAX, &pg->start) < 0 ||
            get_int(ld, o, "limit", "source.pagination", 1, 1000000, &pg->size) < 0)
            return -1;
        return 0;
    case SL_PAG_CURSOR:
        if (pag_path(ld, o, "cursor_path", true, &pg->path) ||
            pag_param(ld, o, "cursor_param", "cursor", &pg->param))
            return -1;
        return 0;
    case SL_PAG_LINK:
        return pag_path(ld, o, "next_path", false, &pg->path);
    default:
        return 0;
    }
}

/* The limits of a remote fetch: source.timeout, connect_timeout, retries,
 * retry_delay, max_bytes. */
static int parse_limits(struct ld *ld, json_t *src)
{
    struct sl_source *so = &ld->job->source;
    long n;
    int r;
    so->connect_timeout = 10;
    so->timeout = 300;
    so->retries = 3;
    so->retry_delay_ms = 1000;
    so->max_bytes = 1ull << 30;
    int given = get_int(ld, src, "connect_timeout", "source", 1, 600, &so->connect_timeout);
    if (given < 0 || get_int(ld, src, "timeout", "source", 1, 86400, &so->timeout) < 0 ||
        get_int(ld, src, "retries", "source", 0, 10, &so->retries) < 0)
        return -1;
    if ((r = get_int(ld, src, "max_bytes", "source", 1, LONG_MAX, &n)) < 0)
        return -1;
    if (r)
        so->max_bytes = (uint64_t)n;
    json_t *d = member(src, "retry_delay");
    if (d) {
        double s = json_is_number(d) ? json_number_value(d) : -1;
        if (!(s >= 0 && s <= 600))
            return bad(ld, "source.retry_delay", "must be a number of seconds from 0 to 600");
        so->retry_delay_ms = (long)(s * 1000 + 0.5);
    }
    if (so->connect_timeout > so->timeout && given)
        return bad(ld, "source.connect_timeout",
                   "must not be longer than source.timeout (%ld seconds)", so->timeout);
    if (so->connect_timeout > so->timeout)
        so->connect_timeout = so->timeout; /* the default, within a short timeout */
    return 0;
}

/* A string option of a source block that may hold ${env:NAME} (*out
 * untouched when absent). */
static int env_str(struct ld *ld, json_t *o, const char *key, const char *parent, char **out)
{
    char p[PATHSZ];
    if (dup_str(ld, o, key, parent, true, out))
        return -1;
    return *out ? check_env(ld, sub(p, parent, key), *out) : 0;
}

/* Whether the source block key fits the URL's scheme (a or b; any when the
 * URL starts with ${env:...}); which names them for the message. */
static int block_scheme(struct ld *ld, const char *key, const char *scheme, const char *a,
                        const char *b, const char *which)
{
    char p[PATHSZ];
    if (!scheme[0] || !strcmp(scheme, a) || (b && !strcmp(scheme, b)))
        return 0;
    return bad(ld, sub(p, "source", key), "only used with %s sources", which);
}

/* ca_file of the block o at path (source.ftp, source.imap): the older name
 * of source.tls.ca_file, field; one of the two names at most. */
static int ca_alias(struct ld *ld, json_t *o, const char *path, const char *field)
{
    struct sl_source *so = &ld->job->source;
    if (!member(o, "ca_file"))
        return 0;
    if (so->ca_file)
        return bad(ld, field, "give the CA file once, as source.tls.ca_file (%s is its older name)",
                   field);
    if (env_str(ld, o, "ca_file", path, &so->ca_file))
        return -1;
    so->ca_file_field = field;
    return 0;
}

/* source.ftp, source.sftp, source.imap and source.s3: the options of the
 * non-HTTP sources (docs/sources.md), each only with its scheme. */
static int parse_remote(struct ld *ld, json_t *src, const char *scheme)
{
    static const char *const ftp_keys[] = {"tls", "ca_file", NULL};
    static const char *const imap_keys[] = {"tls", "ca_file", "max_messages", NULL};
    static const char *const sftp_keys[] = {"known_hosts", "host_key_sha256", "private_key",
                                            "public_key",  "passphrase",      NULL};
    static const char *const s3_keys[] = {
        "region",        "endpoint", "path_style", "access_key_id", "secret_access_key",
        "session_token", NULL};
    static const char *const tls_keys[] = {"ca_file", NULL};
    struct sl_source *so = &ld->job->source;
    json_t *o;
    so->max_messages = 100;
    so->s3.path_style = -1;

    /* source.tls: what every TLS source verifies its server with */
    if (get_obj(ld, src, "tls", "source", &o))
        return -1;
    if (o) {
        if (!strcmp(scheme, "sftp"))
            return bad(ld, "source.tls",
                       "not used with sftp:// sources (SSH: give source.sftp.known_hosts or "
                       "host_key_sha256)");
        if (!strcmp(scheme, "file"))
            return bad(ld, "source.tls", "not used with file:// sources");
        if (check_keys(ld, o, "source.tls", tls_keys) ||
            env_str(ld, o, "ca_file", "source.tls", &so->ca_file))
            return -1;
        if (so->ca_file)
            so->ca_file_field = "source.tls.ca_file";
    }

    if (get_obj(ld, src, "ftp", "source", &o))
        return -1;
    if (o && (block_scheme(ld, "ftp", scheme, "ftp", NULL, "ftp://") ||
              check_keys(ld, o, "source.ftp", ftp_keys) ||
              get_bool(ld, o, "tls", "source.ftp", &so->tls) ||
              ca_alias(ld, o, "source.ftp", "source.ftp.ca_file")))
        return -1;

    if (get_obj(ld, src, "imap", "source", &o))
        return -1;
    if (o) {
        if (block_scheme(ld, "imap", scheme, "imap", "imaps", "imap:// and imaps://") ||
            check_keys(ld, o, "source.imap", imap_keys) ||
            get_bool(ld, o, "tls", "source.imap", &so->tls) ||
            ca_alias(ld, o, "source.imap", "source.imap.ca_file") ||
            get_int(ld, o, "max_messages", "source.imap", 1, 100000, &so->max_messages) < 0)
            return -1;
        if (so->tls && !strcmp(scheme, "imaps"))
            return bad(ld, "source.imap.tls",
                       "imaps:// is TLS already (tls is STARTTLS on imap://)");
    }

    if (get_obj(ld, src, "sftp", "source", &o))
        return -1;
    if (o) {
        struct sl_source_sftp *sf = &so->sftp;
        if (block_scheme(ld, "sftp", scheme, "sftp", NULL, "sftp://") ||
            check_keys(ld, o, "source.sftp", sftp_keys) ||
            env_str(ld, o, "known_hosts", "source.sftp", &sf->known_hosts) ||
            dup_str(ld, o, "host_key_sha256", "source.sftp", true, &sf->host_key_sha256) ||
            env_str(ld, o, "private_key", "source.sftp", &sf->private_key) ||
            env_str(ld, o, "public_key", "source.sftp", &sf->public_key) ||
            env_str(ld, o, "passphrase", "source.sftp", &sf->passphrase))
            return -1;
        if (sf->host_key_sha256) {
            /* as ssh-keygen -l prints it: "SHA256:" and 43 base64 characters */
            char *k = sf->host_key_sha256;
            const char *b = !strncmp(k, "SHA256:", 7) ? k + 7 : k;
            size_t n = strlen(b);
            while (n && b[n - 1] == '=')
                n--;
            if (n != 43 || strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789+/") != n)
                return bad(ld, "source.sftp.host_key_sha256",
                           "'" SHOW "' is not a SHA-256 fingerprint like ssh-keygen -l prints "
                           "(SHA256: and 43 base64 characters)",
                           k);
            memmove(k, b, n);
            k[n] = '\0';
        }
        if ((sf->public_key || sf->passphrase) && !sf->private_key)
            return bad(ld, sf->passphrase ? "source.sftp.passphrase" : "source.sftp.public_key",
                       "only used with source.sftp.private_key");
    }

    if (get_obj(ld, src, "s3", "source", &o))
        return -1;
    if (o) {
        struct sl_source_s3 *s3 = &so->s3;
        bool path_style = false;
        if (block_scheme(ld, "s3", scheme, "s3", NULL, "s3://") ||
            check_keys(ld, o, "source.s3", s3_keys) ||
            env_str(ld, o, "region", "source.s3", &s3->region) ||
            env_str(ld, o, "endpoint", "source.s3", &s3->endpoint) ||
            get_bool(ld, o, "path_style", "source.s3", &path_style) ||
            env_str(ld, o, "access_key_id", "source.s3", &s3->access_key_id) ||
            env_str(ld, o, "secret_access_key", "source.s3", &s3->secret_access_key) ||
            env_str(ld, o, "session_token", "source.s3", &s3->session_token))
            return -1;
        if (member(o, "path_style"))
            s3->path_style = path_style;
        if (s3->region && !strstr(s3->region, "${") &&
            strspn(s3->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(s3->region))
            return bad(ld, "source.s3.region", "'" SHOW "' is not a region like eu-central-1",
                       s3->region);
        if (s3->endpoint && !strstr(s3->endpoint, "${") && !is_http_url(s3->endpoint))
            return bad(ld, "source.s3.endpoint",
                       "'" SHOW "' is not an http:// or https:// URL with a host", s3->endpoint);
        if (!s3->access_key_id != !s3->secret_access_key)
            return bad(
                ld, s3->access_key_id ? "source.s3.secret_access_key" : "source.s3.access_key_id",
                "required with source.s3.%s (give both, or neither for "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                s3->access_key_id ? "access_key_id" : "secret_access_key");
    }

    if (!strcmp(scheme, "s3")) {
        const char *key = strchr(so->url + 5, '/');
        if (!key || !key[1])
            return bad(ld, "source.url", "'" SHOW "' names no object (s3://bucket/key)", so->url);
    }
    if (!strcmp(scheme, "s3") && (so->auth_user || so->auth_bearer))
        return bad(ld, "source.auth",
                   "not used with s3:// sources (give source.s3.access_key_id and "
                   "secret_access_key)");
    if (so->auth_bearer && scheme[0] && strcmp(scheme, "http") && strcmp(scheme, "https"))
        return bad(ld, "source.auth.bearer",
                   "only used with http:// and https:// sources (give source.auth.basic)");
    return 0;
}

static int parse_source(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"url",
                                       "headers",
                                       "auth",
                                       "format",
                                       "csv",
                                       "json",
                                       "xml",
                                       "xlsx",
                                       "xls",
                                       "pagination",
                                       "attachment",
                                       "timeout",
                                       "connect_timeout",
                                       "retries",
                                       "retry_delay",
                                       "max_bytes",
                                       "ftp",
                                       "sftp",
                                       "imap",
                                       "s3",
                                       "tls",
                                       NULL};
    static const char *const pag_types[] = {"page", "offset", "cursor", "link", NULL};
    struct sl_source *so = &ld->job->source;
    json_t *src, *o;
    const char *s;
    char scheme[16];
    int v, r;

    so->format = SL_FORMAT_AUTO;
    so->csv_quote = '"';
    so->csv_header = true;
    so->encoding = SL_ENC_UTF8;
    so->header_row = 1;
    if (get_obj(ld, root, "source", "", &src))
        return -1;
    if (!src)
        return bad(ld, "source", "required (an object with at least \"url\")");
    if (check_keys(ld, src, "source", keys) || parse_url(ld, src, scheme))
        return -1;

    if (get_obj(ld, src, "headers", "source", &o) ||
        (o && parse_headers(ld, o, "source.headers", &so->headers, &so->nheaders)) ||
        parse_auth(ld, src))
        return -1;

    if ((r = get_enum(ld, src, "format", "source", "format", FORMATS, &v)) < 0)
        return -1;
    if (r)
        so->format = (enum sl_format)v;
    if (parse_csv(ld, src) || parse_records(ld, src) || parse_sheet(ld, src))
        return -1;

    /* pagination: kept as given, its type checked */
    if (get_obj(ld, src, "pagination", "source", &o))
        return -1;
    if (o) {
        if ((r = get_enum(ld, o, "type", "source.pagination", "pagination type", pag_types, &v)) <
            0)
            return -1;
        if (r == 0)
            return bad(ld, "source.pagination.type", "required (page, offset, cursor or link)");
        so->pagination = json_incref(o);
        if (parse_pagination(ld, o, scheme, (enum sl_pag_type)(v + 1)))
            return -1;
    }
    if (parse_limits(ld, src) || parse_remote(ld, src, scheme))
        return -1;

    if (get_str(ld, src, "attachment", "source", true, &s))
        return -1;
    if (s) {
        if (scheme[0] && strcmp(scheme, "imap") && strcmp(scheme, "imaps"))
            return bad(ld, "source.attachment", "only used with imap:// and imaps:// sources");
        if (!(so->attachment = strdup(s)))
            return nomem(ld);
    }
    return 0;
}

/* ---- target ------------------------------------------------------------- */

#define TBIT(t) (1u << (t))
#define NUMERIC (TBIT(SL_TYPE_INTEGER) | TBIT(SL_TYPE_DECIMAL))

/* Which types take an attribute option. */
static const struct {
    const char *key;
    unsigned types;
    const char *which;
} ATTR_OPTS[] = {
    /* clang-format off */
    {"max_length", TBIT(SL_TYPE_TEXT),    "text"},
    {"min_length", TBIT(SL_TYPE_TEXT),    "text"},
    {"pattern",    TBIT(SL_TYPE_TEXT),    "text"},
    {"min",        NUMERIC,               "integer, decimal"},
    {"max",        NUMERIC,               "integer, decimal"},
    {"scale",      TBIT(SL_TYPE_DECIMAL), "decimal"},
    {"region",     TBIT(SL_TYPE_PHONE),   "phone"},
    {"values",     TBIT(SL_TYPE_ENUM),    "enum"},
    {"on_unknown", TBIT(SL_TYPE_ENUM),    "enum"},
    /* clang-format on */
};

static const char *const ATTR_KEYS[] = {
    "type",  "required", "default", "max_length", "min_length", "pattern",     "min", "max",
    "scale", "region",   "values",  "on_unknown", "references", "description", NULL};

static void attr_init(struct sl_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->min_length = a->max_length = -1;
    a->scale = -1;
}

/* min or max: a number or numeric string, as canonical decimal text. */
static int parse_bound(struct ld *ld, json_t *obj, const char *key, const char *path,
                       struct sl_attr *a, char **out)
{
    char p[PATHSZ], num[400];
    const char *text;
    json_t *v = member(obj, key);
    if (!v)
        return 0;
    sub(p, path, key);
    if (json_is_number(v)) {
        number_text(v, num);
        text = num;
    } else if (json_is_string(v)) {
        text = json_string_value(v);
    } else {
        return bad(ld, p, "must be a number (is %s)", kind(v));
    }
    const char *norm = sl_decimal_normalize(text, -1, &ld->arena);
    if (!norm)
        return bad(ld, p, "'" SHOW "' is not a number", text);
    if (a->type == SL_TYPE_INTEGER && strchr(norm, '.'))
        return bad(ld, p, "must be an integer for type 'integer' (is %s)", norm);
    if (!(*out = strdup(norm)))
        return nomem(ld);
    return 0;
}

static int parse_default(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    char p[PATHSZ], num[400];
    const char *text;
    json_t *v = member(obj, "default");
    if (!v)
        return 0;
    sub(p, path, "default");
    if (json_is_string(v))
        text = json_string_value(v);
    else if (json_is_number(v))
        text = (number_text(v, num), num);
    else if (json_is_boolean(v))
        text = json_is_true(v) ? "true" : "false";
    else
        return bad(ld, p, "must be a string, number or boolean (is %s)", kind(v));
    if (!text[0])
        return bad(ld, p, "must not be empty (an empty string is a missing value)");
    if (a->type == SL_TYPE_ENUM) {
        size_t i = 0;
        while (i < a->nvalues && strcmp(a->values[i], text))
            i++;
        if (i == a->nvalues)
            return bad(ld, p, "'" SHOW "' is not one of values", text);
        if (!(a->default_value = strdup(text)))
            return nomem(ld);
        return 0;
    }
    const char *out = NULL;
    struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
    memset(probs, 0, sizeof(probs));
    int n = sl_type_check(a, text, ld->job->tz, &ld->arena, &out, probs);
    if (n > 0 && probs[0].message) /* the message quotes the value when it helps */
        return bad(ld, p, "%s", probs[0].message);
    if (n > 0)
        return bad(ld, p, "'" SHOW "' is not a valid %s", text, sl_type_name(a->type));
    if (n < 0 || !out)
        return nomem(ld);
    if (!(a->default_value = strdup(out)))
        return nomem(ld);
    return 0;
}

static int parse_values(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    char p[PATHSZ], ip[PATHSZ];
    json_t *vals = member(obj, "values");
    sub(p, path, "values");
    if (!vals)
        return bad(ld, p, "required for type 'enum' (a non-empty array of strings)");
    if (!json_is_array(vals) || json_array_size(vals) == 0)
        return bad(ld, p, "must be a non-empty array of strings");
    size_t n = json_array_size(vals);
    if (!(a->values = calloc(n, sizeof(*a->values))))
        return nomem(ld);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(vals, i);
        idx(ip, p, i);
        if (!json_is_string(v))
            return bad(ld, ip, "must be a string (is %s)", kind(v));
        const char *s = json_string_value(v);
        if (!s[0])
            return bad(ld, ip, "must not be empty");
        for (size_t j = 0; j < a->nvalues; j++)
            if (!strcmp(a->values[j], s))
                return bad(ld, ip, "'" SHOW "' is listed twice", s);
        if (!(a->values[a->nvalues] = strdup(s)))
            return nomem(ld);
        a->nvalues++;
    }
    return 0;
}

/* pattern: compiled anchored, "^(pattern)$", into a->re. */
static int parse_pattern(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    char p[PATHSZ], why[256];
    const char *s;
    if (get_str(ld, obj, "pattern", path, true, &s))
        return -1;
    if (!s)
        return 0;
    size_t n = strlen(s) + 5;
    char *anchored = malloc(n);
    if (!anchored)
        return nomem(ld);
    snprintf(anchored, n, "^(%s)$", s);
    int err = regcomp(&a->re, anchored, REG_EXTENDED | REG_NOSUB);
    free(anchored);
    if (err) {
        regerror(err, &a->re, why, sizeof(why));
        return bad(ld, sub(p, path, "pattern"), "invalid regular expression: %s", why);
    }
    if (!(a->pattern = strdup(s))) { /* from here on sl_job_destroy calls regfree */
        regfree(&a->re);
        return nomem(ld);
    }
    return 0;
}

/* region: an ISO 3166 alpha-2 code, stored upper-case. */
static int parse_region(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    char p[PATHSZ], reg[3] = {0};
    const char *s;
    if (get_str(ld, obj, "region", path, true, &s))
        return -1;
    if (!s)
        return 0;
    if (strlen(s) == 2) {
        reg[0] = (char)toupper((unsigned char)s[0]);
        reg[1] = (char)toupper((unsigned char)s[1]);
    }
    if (!reg[0] || !sl_phone_region_valid(reg))
        return bad(ld, sub(p, path, "region"),
                   "unknown region '" SHOW "' (expected an ISO 3166 alpha-2 code like DE)", s);
    memcpy(a->region, reg, sizeof(reg));
    return 0;
}

/* references: "object.attribute". */
static int parse_references(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    char p[PATHSZ], objname[IDENT_MAX_LEN + 2] = "";
    const char *s;
    if (get_str(ld, obj, "references", path, true, &s))
        return -1;
    if (!s)
        return 0;
    const char *dot = strchr(s, '.');
    if (dot && (size_t)(dot - s) <= IDENT_MAX_LEN)
        snprintf(objname, sizeof(objname), "%.*s", (int)(dot - s), s);
    if (!dot || !is_ident(objname) || !is_ident(dot + 1))
        return bad(ld, sub(p, path, "references"),
                   "'" SHOW "' is not 'object.attribute' (two names of " IDENT_RULE ")", s);
    if (!(a->references = strdup(s)))
        return nomem(ld);
    return 0;
}

/* The members of one attribute object (type first: it decides the rest). */
static int parse_attr_fields(struct ld *ld, json_t *obj, const char *path, struct sl_attr *a)
{
    static const char *const unknowns[] = {"error", "default", NULL};
    char p[PATHSZ];
    const char *s;
    long scale = -1;
    int r, v = 0;

    if (check_keys(ld, obj, path, ATTR_KEYS) || get_str(ld, obj, "type", path, true, &s))
        return -1;
    sub(p, path, "type");
    if (!s)
        return bad(ld, p, "required");
    if (sl_type_parse(s, &a->type)) {
        const char *names[16];
        size_t n = 0;
        for (int t = SL_TYPE_TEXT; t <= SL_TYPE_ENUM && n < 15; t++)
            if (sl_type_name((enum sl_type)t))
                names[n++] = sl_type_name((enum sl_type)t);
        names[n] = NULL;
        return bad_choice(ld, p, "type", s, names);
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(ATTR_OPTS); i++)
        if (member(obj, ATTR_OPTS[i].key) && !(ATTR_OPTS[i].types & TBIT(a->type)))
            return bad(ld, sub(p, path, ATTR_OPTS[i].key), "not used with type '%s' (only with %s)",
                       sl_type_name(a->type), ATTR_OPTS[i].which);

    if (get_bool(ld, obj, "required", path, &a->required) ||
        get_int(ld, obj, "max_length", path, 1, LONG_MAX, &a->max_length) < 0 ||
        get_int(ld, obj, "min_length", path, 0, LONG_MAX, &a->min_length) < 0)
        return -1;
    if (a->min_length >= 0 && a->max_length >= 0 && a->min_length > a->max_length)
        return bad(ld, sub(p, path, "min_length"),
                   "must not be greater than max_length (%ld > %ld)", a->min_length, a->max_length);
    if (parse_pattern(ld, obj, path, a) || parse_bound(ld, obj, "min", path, a, &a->min) ||
        parse_bound(ld, obj, "max", path, a, &a->max))
        return -1;
    if (a->min && a->max && sl_decimal_cmp(a->min, a->max) > 0)
        return bad(ld, sub(p, path, "min"), "must not be greater than max (%s > %s)", a->min,
                   a->max);
    if ((r = get_int(ld, obj, "scale", path, 0, 38, &scale)) < 0)
        return -1;
    if (r)
        a->scale = (int)scale;
    if (parse_region(ld, obj, path, a))
        return -1;
    if (a->type == SL_TYPE_ENUM) {
        if (parse_values(ld, obj, path, a) ||
            get_enum(ld, obj, "on_unknown", path, "value", unknowns, &v) < 0)
            return -1;
        a->on_unknown_default = v == 1;
        if (a->on_unknown_default && !member(obj, "default"))
            return bad(ld, sub(p, path, "default"), "required when on_unknown is 'default'");
    }
    if (parse_references(ld, obj, path, a) || get_str(ld, obj, "description", path, false, &s))
        return -1;
    return parse_default(ld, obj, path, a); /* last: checked against all of the above */
}

/* One attribute, name: def, at path. */
static int parse_attr(struct ld *ld, const char *name, json_t *def, const char *path,
                      struct sl_attr *a)
{
    if (!(a->name = strdup(name)))
        return nomem(ld);
    if (!is_ident(name))
        return bad(ld, path, "'" SHOW "' is not a valid attribute name (" IDENT_RULE ")", name);
    if (json_is_object(def))
        return parse_attr_fields(ld, def, path, a);
    if (!json_is_string(def))
        return bad(ld, path, "must be an object like {\"type\": \"text\"} (is %s)", kind(def));
    /* "name": "text" is {"type": "text"} */
    json_t *obj = json_pack("{sO}", "type", def);
    if (!obj)
        return nomem(ld);
    int rc = parse_attr_fields(ld, obj, path, a);
    json_decref(obj);
    return rc;
}

/* The closest attribute name to word, or NULL. */
static const char *suggest_attr(const struct sl_job *job, const char *word)
{
    struct sugg s = {word, NULL, 0};
    for (size_t i = 0; i < job->nattrs; i++)
        sugg_try(&s, job->attrs[i].name);
    return s.best;
}

static int parse_key(struct ld *ld, json_t *target)
{
    struct sl_job *job = ld->job;
    json_t *key = member(target, "key");
    bool append = job->options.sync == SL_SYNC_APPEND;
    char p[PATHSZ];
    if (!key) {
        if (append)
            return 0;
        return bad(ld, "target.key",
                   "required (the attributes that identify a record) unless options.sync is "
                   "'append'");
    }
    json_t *one = NULL;
    if (json_is_string(key)) { /* "key": "id" is ["id"] */
        if (!(key = one = json_pack("[O]", key)))
            return nomem(ld);
    }
    int rc = -1;
    if (!json_is_array(key)) {
        bad(ld, "target.key", "must be an array of attribute names (is %s)", kind(key));
        goto out;
    }
    size_t n = json_array_size(key);
    if (n == 0 && !append) {
        bad(ld, "target.key", "must not be empty unless options.sync is 'append'");
        goto out;
    }
    if (n && (!(job->key = calloc(n, sizeof(*job->key))) ||
              !(job->key_idx = calloc(n, sizeof(*job->key_idx))))) {
        nomem(ld);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(key, i);
        idx(p, "target.key", i);
        if (!json_is_string(v)) {
            bad(ld, p, "must be a string (is %s)", kind(v));
            goto out;
        }
        const char *s = json_string_value(v);
        int ai = sl_job_attr_index(job, s);
        if (ai < 0) {
            const char *sg = suggest_attr(job, s);
            if (sg)
                bad(ld, p, "'" SHOW "' is not an attribute (did you mean '%s'?)", s, sg);
            else
                bad(ld, p, "'" SHOW "' is not an attribute", s);
            goto out;
        }
        for (size_t j = 0; j < job->nkey; j++) {
            if (job->key_idx[j] == (size_t)ai) {
                bad(ld, p, "'" SHOW "' is listed twice", s);
                goto out;
            }
        }
        if (!(job->key[job->nkey] = strdup(s))) {
            nomem(ld);
            goto out;
        }
        job->key_idx[job->nkey++] = (size_t)ai;
        if (!append)
            job->attrs[ai].required = true; /* a record without its key cannot be stored */
    }
    rc = 0;
out:
    json_decref(one);
    return rc;
}

static int parse_target(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"object", "key", "attributes", NULL};
    struct sl_job *job = ld->job;
    json_t *target, *attrs, *def;
    const char *s, *name;
    char p[PATHSZ];

    if (get_obj(ld, root, "target", "", &target))
        return -1;
    if (!target)
        return bad(ld, "target", "required (an object with object, key and attributes)");
    if (check_keys(ld, target, "target", keys) || get_str(ld, target, "object", "target", true, &s))
        return -1;
    if (!s)
        return bad(ld, "target.object", "required");
    if (!is_ident(s))
        return bad(ld, "target.object", "'" SHOW "' is not a valid object name (" IDENT_RULE ")",
                   s);
    if (!(job->object = strdup(s)))
        return nomem(ld);

    if (get_obj(ld, target, "attributes", "target", &attrs))
        return -1;
    if (!attrs)
        return bad(ld, "target.attributes", "required (an object of attribute name -> type)");
    size_t n = json_object_size(attrs);
    if (n == 0)
        return bad(ld, "target.attributes", "must not be empty");
    if (!(job->attrs = calloc(n, sizeof(*job->attrs))))
        return nomem(ld);
    json_object_foreach(attrs, name, def)
    {
        struct sl_attr *a = &job->attrs[job->nattrs];
        attr_init(a);
        job->nattrs++;
        if (parse_attr(ld, name, def, sub(p, "target.attributes", name), a))
            return -1;
    }
    /* A reference into this same object must name one of its attributes. */
    size_t olen = strlen(job->object);
    for (size_t i = 0; i < job->nattrs; i++) {
        const char *ref = job->attrs[i].references;
        if (ref && !strncmp(ref, job->object, olen) && ref[olen] == '.' &&
            sl_job_attr_index(job, ref + olen + 1) < 0) {
            char ap[PATHSZ];
            sub(ap, sub(p, "target.attributes", job->attrs[i].name), "references");
            return bad(ld, ap, "'%s' is not an attribute of %s", ref + olen + 1, job->object);
        }
    }
    return parse_key(ld, target);
}

/* ---- lookups, mapping --------------------------------------------------- */

static int parse_lookups(struct ld *ld, json_t *root)
{
    struct sl_job *job = ld->job;
    json_t *obj, *tab, *v;
    const char *name, *from;
    char p[PATHSZ], q[PATHSZ];
    if (get_obj(ld, root, "lookups", "", &obj))
        return -1;
    if (!obj || json_object_size(obj) == 0)
        return 0;
    if (!(job->lookups = calloc(json_object_size(obj), sizeof(*job->lookups))))
        return nomem(ld);
    json_object_foreach(obj, name, tab)
    {
        sub(p, "lookups", name);
        if (!name[0])
            return bad(ld, "lookups", "a table name must not be empty");
        if (!json_is_object(tab))
            return bad(ld, p, "must be an object of \"from\": \"to\" strings (is %s)", kind(tab));
        json_object_foreach(tab, from, v)
        {
            if (!json_is_string(v))
                return bad(ld, sub(q, p, from), "must be a string (is %s)", kind(v));
        }
        struct sl_lookup *lk = &job->lookups[job->nlookups];
        if (!(lk->name = strdup(name)))
            return nomem(ld);
        lk->map = json_incref(tab);
        job->nlookups++;
    }
    return 0;
}

static int parse_mapping(struct ld *ld, json_t *root)
{
    static const char *const entry_keys[] = {"value", "note", NULL};
    struct sl_job *job = ld->job;
    json_t *obj, *v;
    const char *name;
    char p[PATHSZ], vp[PATHSZ], msg[512];

    if (get_obj(ld, root, "mapping", "", &obj))
        return -1;
    if (!obj)
        return bad(ld, "mapping",
                   "required (an object of attribute -> source column or "
                   "template)");
    json_object_foreach(obj, name, v)
    {
        const char *src, *note = NULL;
        sub(p, "mapping", name);
        int ai = sl_job_attr_index(job, name);
        if (ai < 0) {
            const char *sg = suggest_attr(job, name);
            if (sg)
                return bad(ld, p, "no such attribute in target.attributes (did you mean '%s'?)",
                           sg);
            return bad(ld, p, "no such attribute in target.attributes");
        }
        struct sl_attr *a = &job->attrs[ai];
        snprintf(vp, sizeof(vp), "%s", p);
        if (json_is_object(v)) {
            if (check_keys(ld, v, p, entry_keys) || get_str(ld, v, "value", p, true, &src) ||
                get_str(ld, v, "note", p, false, &note))
                return -1;
            if (!src)
                return bad(ld, sub(vp, p, "value"), "required");
            sub(vp, p, "value");
        } else if (json_is_string(v)) {
            src = json_string_value(v);
            if (!src[0])
                return bad(ld, p, "must not be empty (a source column or a template)");
        } else {
            return bad(ld, p, "must be a string or {\"value\": ..., \"note\": ...} (is %s)",
                       kind(v));
        }
        msg[0] = '\0';
        if (!(a->map = sl_template_compile(src, &ld->refs, msg, sizeof(msg))))
            return bad(ld, vp, "%s", msg[0] ? msg : "invalid template");
        if (!(a->map_src = strdup(src)) || (note && !(a->map_note = strdup(note))))
            return nomem(ld);
    }
    for (size_t i = 0; i < job->nattrs; i++) {
        struct sl_attr *a = &job->attrs[i];
        if (a->map) {
            msg[0] = '\0';
            if (sl_template_check_lookups(a->map, job, msg, sizeof(msg)))
                return bad(ld, sub(p, "mapping", a->name), "%s",
                           msg[0] ? msg : "unknown lookup table");
        } else if (a->required && !a->default_value) {
            return bad(ld, "mapping",
                       "no entry for required attribute '%s' (map it or give it a default)",
                       a->name);
        }
    }
    if (json_object_size(obj) == 0)
        return bad(ld, "mapping", "must not be empty");
    /* The refs move into the job. */
    if (ld->refs.n) {
        if (!(job->refs = calloc(ld->refs.n, sizeof(*job->refs))))
            return nomem(ld);
        for (size_t i = 0; i < ld->refs.n; i++) {
            job->refs[i].name = ld->refs.names[i];
            ld->refs.names[i] = NULL;
        }
        job->nrefs = ld->refs.n;
    }
    return 0;
}

/* ---- report, destination ------------------------------------------------ */

static int parse_report(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"email", "format", "when", NULL};
    static const char *const formats[] = {"xlsx", "csv", NULL};
    static const char *const whens[] = {"errors", "always", "failure", NULL};
    struct sl_report *rp = &ld->job->report;
    json_t *obj, *em;
    char p[PATHSZ];
    int v = 0;

    rp->when = SL_REPORT_ERRORS;
    if (get_obj(ld, root, "report", "", &obj))
        return -1;
    if (obj) {
        if (check_keys(ld, obj, "report", keys) ||
            get_enum(ld, obj, "format", "report", "format", formats, &v) < 0)
            return -1;
        int when = 0;
        if (get_enum(ld, obj, "when", "report", "value", whens, &when) < 0)
            return -1;
        rp->when = (enum sl_report_when)when;
        em = member(obj, "email");
        json_t *one = NULL;
        if (json_is_string(em))
            em = one = json_pack("[O]", em);
        if (em && !json_is_array(em))
            return bad(ld, "report.email", "must be an array of e-mail addresses (is %s)",
                       kind(em));
        size_t n = json_array_size(em);
        if (n && !(rp->email = calloc(n, sizeof(*rp->email)))) {
            json_decref(one);
            return nomem(ld);
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(em, i);
            const char *s = json_string_value(e);
            idx(p, "report.email", i);
            if (!s || !is_email(s)) {
                json_decref(one);
                if (!s)
                    return bad(ld, p, "must be a string (is %s)", kind(e));
                return bad(ld, p, "'" SHOW "' is not an e-mail address", s);
            }
            if (!(rp->email[rp->nemail] = strdup(s))) {
                json_decref(one);
                return nomem(ld);
            }
            rp->nemail++;
        }
        json_decref(one);
    }
    if (!(rp->format = strdup(formats[v])))
        return nomem(ld);
    return 0;
}

static int parse_destination(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"type", "table", "url", "headers", "path", NULL};
    static const char *const types[] = {"file", "postgres", "http", NULL};
    struct sl_destination *d = &ld->job->destination;
    json_t *obj, *h;
    int v;
    const char *s;

    d->type = SL_DEST_FILE;
    if (get_obj(ld, root, "destination", "", &obj))
        return -1;
    if (!obj)
        return 0;
    d->given = true;
    if (check_keys(ld, obj, "destination", keys))
        return -1;
    int r = get_enum(ld, obj, "type", "destination", "destination type", types, &v);
    if (r < 0)
        return -1;
    if (!r)
        return bad(ld, "destination.type", "required (postgres, http or file)");
    d->type = (enum sl_dest_type)v;
    /* Each type's own fields only. */
    static const char *const own[3][3] = {
        {"path", NULL, NULL}, {"table", NULL, NULL}, {"url", "headers", NULL}};
    for (size_t i = 1; keys[i]; i++) {
        bool mine = false;
        for (size_t j = 0; own[v][j]; j++)
            mine |= !strcmp(own[v][j], keys[i]);
        char p[PATHSZ];
        if (!mine && member(obj, keys[i]))
            return bad(ld, sub(p, "destination", keys[i]), "not used with type '%s'", types[v]);
    }
    switch (d->type) {
    case SL_DEST_POSTGRES:
        if (get_str(ld, obj, "table", "destination", true, &s))
            return -1;
        if (!s)
            s = ld->job->object;
        else if (!is_ident(s))
            return bad(ld, "destination.table",
                       "'" SHOW "' is not a valid table name (" IDENT_RULE ")", s);
        if (!(d->table = strdup(s)))
            return nomem(ld);
        break;
    case SL_DEST_HTTP:
        if (get_str(ld, obj, "url", "destination", true, &s))
            return -1;
        if (!s)
            return bad(ld, "destination.url", "required for type 'http'");
        if (check_env(ld, "destination.url", s))
            return -1;
        if (strncmp(s, "${env:", 6) && !is_http_url(s))
            return bad(ld, "destination.url", "'" SHOW "' is not an http:// or https:// URL", s);
        if (!(d->url = strdup(s)))
            return nomem(ld);
        if (get_obj(ld, obj, "headers", "destination", &h) ||
            (h && parse_headers(ld, h, "destination.headers", &d->headers, &d->nheaders)))
            return -1;
        break;
    case SL_DEST_FILE:
        if (dup_str(ld, obj, "path", "destination", true, &d->path))
            return -1;
        break;
    }
    return 0;
}

/* "webhook": {"secret": "${env:NAME}"}: the key of the job's webhook
 * (docs/api.md "Webhooks"); the secret itself is never stored in the job. */
static int parse_webhook(struct ld *ld, json_t *root)
{
    static const char *const keys[] = {"secret", NULL};
    json_t *obj;
    const char *s;
    if (get_obj(ld, root, "webhook", "", &obj))
        return -1;
    if (!obj)
        return 0;
    if (check_keys(ld, obj, "webhook", keys) || get_str(ld, obj, "secret", "webhook", true, &s))
        return -1;
    size_t n = s ? strlen(s) : 0;
    if (!s || n < 8 || strncmp(s, "${env:", 6) || s[n - 1] != '}' || strchr(s + 6, '$'))
        return bad(ld, "webhook.secret",
                   "must be \"${env:NAME}\", the environment variable that holds the secret "
                   "(whsec_...): a secret is never stored in the job");
    return check_env(ld, "webhook.secret", s);
}

/* ---- loading ------------------------------------------------------------ */

static int load(struct ld *ld, json_t *root)
{
    if (check_keys(ld, root, "", TOP_KEYS) || parse_name(ld, root) || parse_options(ld, root) ||
        parse_schedule(ld, root) || parse_source(ld, root) || parse_target(ld, root) ||
        parse_lookups(ld, root) || parse_mapping(ld, root) || parse_report(ld, root) ||
        parse_destination(ld, root) || parse_webhook(ld, root))
        return -1;
    return 0;
}

/* ---- several targets ---------------------------------------------------- */

const struct sl_job *sl_jobs_get(struct sl_jobs *jobs, const char *job_id, uint32_t version,
                                 char *errbuf, size_t errsz)
{
    const char *hash = job_id ? strchr(job_id, '#') : NULL;
    if (!hash)
        return jobs->ops->get(jobs, job_id, version, errbuf, errsz);
    char parent[NAME_MAX_LEN + 1];
    size_t n = (size_t)(hash - job_id);
    if (n > NAME_MAX_LEN) {
        snprintf(errbuf, errsz, "no job %.200s", job_id);
        return NULL;
    }
    memcpy(parent, job_id, n);
    parent[n] = '\0';
    const struct sl_job *job = jobs->ops->get(jobs, parent, version, errbuf, errsz);
    if (!job) /* a registry of the target itself (embedded mode runs one) */
        return jobs->ops->get(jobs, job_id, version, errbuf, errsz);
    for (size_t i = 0; i < job->ntargets; i++)
        if (!strcmp(job->targets[i]->id, job_id))
            return job->targets[i];
    snprintf(errbuf, errsz, "job %s (version %u) has no target %.100s", parent, job->version,
             hash + 1);
    return NULL;
}

#define TARGETS_MAX 16

/* Loads root, a document of one target (no "targets"), for dir. */
static struct sl_job *load_root(json_t *root, const char *dir, char *errbuf, size_t errsz)
{
    struct ld ld = {.errbuf = errbuf, .errsz = errsz};
    sl_arena_init(&ld.arena);
    if (errbuf && errsz)
        errbuf[0] = '\0';
    if (!(ld.job = calloc(1, sizeof(*ld.job))) ||
        !(ld.job->dir = strdup(dir && dir[0] ? dir : "."))) {
        nomem(&ld);
        goto fail;
    }
    ld.job->version = 1;
    ld.job->doc = json_incref(root);
    if (load(&ld, root))
        goto fail;
    sl_refs_cleanup(&ld.refs);
    sl_arena_cleanup(&ld.arena);
    return ld.job;
fail:
    sl_refs_cleanup(&ld.refs);
    sl_arena_cleanup(&ld.arena);
    sl_job_destroy(ld.job);
    return NULL;
}

/* The document of target i of a job with "targets": the job with that
 * target's object, key and attributes as "target", its mapping as
 * "mapping", and its destination (else the job's, whose table then
 * defaults to the target's object). */
static json_t *target_doc(json_t *root, json_t *t)
{
    json_t *doc = json_deep_copy(root);
    if (!doc)
        return NULL;
    json_object_del(doc, "targets");
    json_t *target = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(t, k, v)
    {
        if (!strcmp(k, "mapping") || !strcmp(k, "destination") || !strcmp(k, "options"))
            continue;
        json_object_set(target, k, v);
    }
    json_object_set_new(doc, "target", target);
    if (json_object_get(t, "mapping"))
        json_object_set(doc, "mapping", json_object_get(t, "mapping"));
    /* a target's options over the job's (duplicates: last_wins for the
     * account that several contact rows repeat) */
    json_t *o = json_object_get(t, "options");
    if (json_is_object(o)) {
        json_t *jo = json_object_get(doc, "options");
        if (json_is_object(jo))
            json_object_update(jo, o);
        else
            json_object_set(doc, "options", o);
    } else if (o) {
        json_object_set(doc, "options", o); /* not an object: the loader says so */
    }
    json_t *d = json_object_get(t, "destination");
    if (d) {
        json_object_set(doc, "destination", d);
    } else if (json_is_object(json_object_get(doc, "destination"))) {
        json_object_del(json_object_get(doc, "destination"), "table");
        json_object_del(json_object_get(doc, "destination"), "path");
    }
    return doc;
}

/* errbuf's message of target i: "target.x" and "mapping.x" become
 * "targets[i].x" and "targets[i].mapping.x", as the user wrote them. */
static void target_message(char *errbuf, size_t errsz, size_t i)
{
    if (!errbuf || !errsz)
        return;
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", errbuf);
    if (!strncmp(msg, "target.", 7))
        snprintf(errbuf, errsz, "targets[%zu].%s", i, msg + 7);
    else if (!strncmp(msg, "target:", 7))
        snprintf(errbuf, errsz, "targets[%zu]:%s", i, msg + 7);
    else if (!strncmp(msg, "mapping", 7) || !strncmp(msg, "destination", 11) ||
             !strncmp(msg, "options", 7))
        snprintf(errbuf, errsz, "targets[%zu].%s", i, msg);
}

/* A job of several targets ("targets": an extension of JOBS.md): each is
 * checked as a job of its own over the same source; the job returned is the
 * first target's, with every target in job->targets. */
static struct sl_job *load_targets(json_t *root, const char *dir, char *errbuf, size_t errsz)
{
    json_t *ts = json_object_get(root, "targets");
    if (json_object_get(root, "target") || json_object_get(root, "mapping")) {
        snprintf(errbuf, errsz,
                 "targets: a job has either target and mapping, or targets (each with its "
                 "mapping)");
        return NULL;
    }
    if (!json_is_array(ts) || json_array_size(ts) == 0 || json_array_size(ts) > TARGETS_MAX) {
        snprintf(errbuf, errsz, "targets: must be an array of 1 to %d targets", TARGETS_MAX);
        return NULL;
    }
    static const char *const keys[] = {"object",  "key",         "attributes",  "mapping",
                                       "options", "destination", "description", NULL};
    size_t n = json_array_size(ts);
    struct sl_job **sub = calloc(n, sizeof(*sub));
    struct sl_job *job = NULL;
    if (!sub) {
        snprintf(errbuf, errsz, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(ts, i);
        if (!json_is_object(t)) {
            snprintf(errbuf, errsz,
                     "targets[%zu]: must be an object (object, key, attributes, "
                     "mapping)",
                     i);
            goto fail;
        }
        const char *k;
        json_t *v;
        json_object_foreach(t, k, v)
        {
            bool known = false;
            for (size_t j = 0; keys[j] && !known; j++)
                known = !strcmp(keys[j], k);
            if (!known) {
                snprintf(errbuf, errsz,
                         "targets[%zu].%.64s: unknown field (object, key, attributes, mapping, "
                         "options, destination)",
                         i, k);
                goto fail;
            }
        }
        if (!json_object_get(t, "mapping")) {
            snprintf(errbuf, errsz, "targets[%zu].mapping: required", i);
            goto fail;
        }
        json_t *doc = target_doc(root, t);
        if (!doc) {
            snprintf(errbuf, errsz, "out of memory");
            goto fail;
        }
        sub[i] = load_root(doc, dir, errbuf, errsz);
        json_decref(doc);
        if (!sub[i]) {
            target_message(errbuf, errsz, i);
            goto fail;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(sub[j]->object, sub[i]->object)) {
                snprintf(errbuf, errsz, "targets[%zu].object: '%s' is targets[%zu]'s already", i,
                         sub[i]->object, j);
                goto fail;
            }
        /* its own id: state (last success) and runs are per target */
        char *id = NULL;
        if (asprintf(&id, "%s#%s", sub[i]->name, sub[i]->object) < 0) {
            snprintf(errbuf, errsz, "out of memory");
            goto fail;
        }
        free(sub[i]->id);
        sub[i]->id = id;
    }
    /* the job itself: the first target's, holding them all */
    json_t *doc = target_doc(root, json_array_get(ts, 0));
    job = doc ? load_root(doc, dir, errbuf, errsz) : NULL;
    json_decref(doc);
    if (!job)
        goto fail;
    json_decref(job->doc);
    job->doc = json_incref(root);
    job->targets = sub;
    job->ntargets = n;
    return job;
fail:
    for (size_t i = 0; i < n; i++)
        sl_job_destroy(sub[i]);
    free(sub);
    return NULL;
}

struct sl_job *sl_job_load_json(const char *text, size_t len, const char *dir, char *errbuf,
                                size_t errsz)
{
    struct ld ld = {.errbuf = errbuf, .errsz = errsz};
    json_error_t jerr;
    json_t *root = NULL;

    sl_arena_init(&ld.arena);
    if (errbuf && errsz)
        errbuf[0] = '\0';
    if (!(ld.job = calloc(1, sizeof(*ld.job)))) {
        nomem(&ld);
        goto fail;
    }
    ld.job->version = 1;
    if (!(ld.job->dir = strdup(dir && dir[0] ? dir : "."))) {
        nomem(&ld);
        goto fail;
    }
    size_t lead = 0;
    while (text && lead < len && strchr(" \t\r\n", text[lead]))
        lead++;
    if (!text || lead == len) {
        bad(&ld, NULL, "the job file is empty (expected a JSON object)");
        goto fail;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        bad(&ld, NULL, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        bad(&ld, NULL, "the job must be a JSON object (is %s)", kind(root));
        goto fail;
    }
    if (json_object_get(root, "targets")) {
        sl_job_destroy(ld.job);
        ld.job = load_targets(root, dir, errbuf, errsz);
        json_decref(root);
        sl_refs_cleanup(&ld.refs);
        sl_arena_cleanup(&ld.arena);
        return ld.job;
    }
    ld.job->doc = json_incref(root);
    if (load(&ld, root))
        goto fail;
    json_decref(root);
    sl_refs_cleanup(&ld.refs);
    sl_arena_cleanup(&ld.arena);
    return ld.job;
fail:
    json_decref(root);
    sl_refs_cleanup(&ld.refs);
    sl_arena_cleanup(&ld.arena);
    sl_job_destroy(ld.job);
    return NULL;
}

struct sl_job *sl_job_load_file(const char *path, char *errbuf, size_t errsz)
{
    struct sl_job *job = NULL;
    char *text = NULL, *dir = NULL, msg[1024] = "";
    size_t len = 0;
    struct stat st;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(msg, sizeof(msg), "is a directory");
        goto fail;
    }
    if (stat(path, &st) == 0 && st.st_size > (off_t)JOB_MAX_FILE) {
        snprintf(msg, sizeof(msg), "too large (%lld bytes; at most %u)", (long long)st.st_size,
                 JOB_MAX_FILE);
        goto fail;
    }
    if (!(text = sl_read_file(path, &len))) {
        snprintf(msg, sizeof(msg), "could not read: %s", strerror(errno));
        goto fail;
    }
    if (!(dir = sl_path_dir(path))) {
        snprintf(msg, sizeof(msg), "out of memory");
        goto fail;
    }
    job = sl_job_load_json(text, len, dir, msg, sizeof(msg));
    if (!job)
        goto fail;
    free(text);
    free(dir);
    return job;
fail:
    if (errbuf && errsz)
        snprintf(errbuf, errsz, "%s: %s", path, msg);
    free(text);
    free(dir);
    return NULL;
}

static void free_headers(struct sl_header_kv *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

void sl_job_destroy(struct sl_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->ntargets; i++)
        sl_job_destroy(job->targets[i]);
    free(job->targets);
    free(job->id);
    free(job->name);
    free(job->description);

    struct sl_source *so = &job->source;
    free(so->url);
    free_headers(so->headers, so->nheaders);
    free(so->auth_user);
    free(so->auth_password);
    free(so->auth_bearer);
    free(so->records);
    free(so->json_records);
    free(so->xml_records);
    free(so->sheet);
    json_decref(so->pagination);
    free(so->attachment);
    free(so->pag.param);
    free(so->pag.size_param);
    free(so->pag.path);
    free(so->ca_file);
    free(so->sftp.known_hosts);
    free(so->sftp.host_key_sha256);
    free(so->sftp.private_key);
    free(so->sftp.public_key);
    free(so->sftp.passphrase);
    free(so->s3.region);
    free(so->s3.endpoint);
    free(so->s3.access_key_id);
    free(so->s3.secret_access_key);
    free(so->s3.session_token);

    free(job->object);
    for (size_t i = 0; i < job->nkey; i++)
        free(job->key[i]);
    free(job->key);
    free(job->key_idx);
    for (size_t i = 0; i < job->nattrs; i++) {
        struct sl_attr *a = &job->attrs[i];
        free(a->name);
        free(a->default_value);
        if (a->pattern)
            regfree(&a->re);
        free(a->pattern);
        free(a->min);
        free(a->max);
        for (size_t j = 0; j < a->nvalues; j++)
            free(a->values[j]);
        free(a->values);
        free(a->references);
        sl_template_destroy(a->map);
        free(a->map_src);
        free(a->map_note);
    }
    free(job->attrs);
    for (size_t i = 0; i < job->nlookups; i++) {
        free(job->lookups[i].name);
        json_decref(job->lookups[i].map);
    }
    free(job->lookups);
    for (size_t i = 0; i < job->nrefs; i++)
        free(job->refs[i].name);
    free(job->refs);

    free(job->schedule.cron);
    free(job->schedule.timezone);
    for (size_t i = 0; i < job->report.nemail; i++)
        free(job->report.email[i]);
    free(job->report.email);
    free(job->report.format);
    free(job->destination.table);
    free(job->destination.url);
    free_headers(job->destination.headers, job->destination.nheaders);
    free(job->destination.path);
    free(job->timezone);
    free(job->dir);
    json_decref(job->doc);
    free(job);
}

int sl_job_attr_index(const struct sl_job *job, const char *name)
{
    for (size_t i = 0; i < job->nattrs; i++)
        if (job->attrs[i].name && !strcmp(job->attrs[i].name, name))
            return (int)i;
    return -1;
}

const struct sl_lookup *sl_job_lookup(const struct sl_job *job, const char *name)
{
    for (size_t i = 0; i < job->nlookups; i++)
        if (!strcmp(job->lookups[i].name, name))
            return &job->lookups[i];
    return NULL;
}

/* ---- the registry of one job ------------------------------------------- */

struct jobs_single {
    struct sl_jobs base;
    struct sl_job *job;
};

static const struct sl_job *single_get(struct sl_jobs *jobs, const char *job_id, uint32_t version,
                                       char *errbuf, size_t errsz)
{
    const struct sl_job *job = ((struct jobs_single *)jobs)->job;
    if (!job_id || strcmp(job_id, job->id)) {
        if (errbuf && errsz)
            snprintf(errbuf, errsz, "unknown job '%.128s'", job_id ? job_id : "");
        return NULL;
    }
    if (version && version != job->version) {
        if (errbuf && errsz)
            snprintf(errbuf, errsz, "job '%s' has no version %u", job->id, (unsigned)version);
        return NULL;
    }
    return job;
}

static void single_destroy(struct sl_jobs *jobs)
{
    struct jobs_single *s = (struct jobs_single *)jobs;
    sl_job_destroy(s->job);
    free(s);
}

static const struct sl_jobs_ops SINGLE_OPS = {.get = single_get, .destroy = single_destroy};

struct sl_jobs *sl_jobs_single_new(struct sl_job *job)
{
    struct jobs_single *s = calloc(1, sizeof(*s));
    if (!s) {
        sl_job_destroy(job);
        return NULL;
    }
    s->base.ops = &SINGLE_OPS;
    s->job = job;
    return &s->base;
}

void sl_jobs_destroy(struct sl_jobs *jobs)
{
    if (jobs)
        jobs->ops->destroy(jobs);
}

bool sl_job_reads_column(const struct sl_job *job, const char *name)
{
    for (size_t k = 0; k < job->nrefs; k++)
        if (sl_column_find(job->refs[k].name, &name, 1) == 0)
            return true;
    return false;
}
