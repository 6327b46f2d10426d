/*
 * HTTP and HTTPS sources (source.h), over libcurl.
 *
 * A fetch is one GET of the source URL, or with source.pagination one GET per
 * page, each made of requests that follow redirects (here, not in libcurl,
 * so that the job's headers and credentials go only to the source URL's own
 * origin: a redirect elsewhere gets neither), retried with exponential
 * backoff and jitter after a timeout, a lost connection, 408, 429 or a 5xx
 * (a Retry-After is honoured), within the job's time and size limits. Every
 * connection passes the SSRF guard (sl_curl_setup); https servers are
 * verified against the system's CAs or source.tls.ca_file, and a redirect
 * from https to plain http is refused. ${env:NAME} in headers
 * and credentials is expanded just before the request and wiped after it;
 * messages name the URL as written.
 *
 * A single fetch streams the body into the fd while hashing it, and keeps
 * the response's validators (ETag, Last-Modified), content type and file
 * name; given validators, it asks conditionally and a 304 writes nothing.
 *
 * Pages are JSON. Each page is held in memory (at most PAGE_MAX bytes), its
 * records found at source.json.records by a small scanner and copied byte
 * for byte (numbers keep their exact spelling) into one JSON document of the
 * same shape, {"data":{"items":[<every page's records>]}}, so the parser
 * reads all pages as one file with the job's own records path. The next
 * page is the next page number, the next offset, the cursor found at
 * cursor_path, or the Link header's rel="next" (or the URL at next_path);
 * the pages end with an empty (or short) page, no cursor or no next link,
 * and more than max_pages pages fail the run.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/reader.h"
#include "sluice/source.h"
#include "sluice/util.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

#define MAX_REDIRECTS     5
#define PAGE_MAX          (64u << 20) /* bytes of one page, held in memory */
#define RETRY_AFTER_MAX_S 300         /* longer Retry-After: the run fails */
#define JSON_DEPTH_MAX    512
#define LINK_MAX          8192

/* A fetch: the handle, the request's headers, and the response being read. */
struct http {
    const struct sl_fetch_req *req;
    const struct sl_source *src;
    CURL *c;
    struct sl_curl_ctx ctx;
    char curl_err[CURL_ERROR_SIZE];
    struct curl_slist *own;   /* headers for the source's origin (with the job's) */
    struct curl_slist *other; /* headers for any other origin */
    char *user, *password;    /* basic auth, expanded */
    char *ca_file;            /* source.tls.ca_file, expanded; NULL: the system's CAs */
    char origin[512];         /* scheme://host:port of the source URL */
    char *cur_url;            /* the URL of the last request (after redirects) */

    /* the request being made (request()) */
    const char *url;
    bool cond;        /* with the validators */
    const char *what; /* names it in messages */

    /* the response */
    struct sl_source_head head;
    char disposition[512];
    char retry_after[64];
    char *link_next; /* Link: rel="next" (malloc'ed), NULL none */

    /* the body: into the file (a single fetch) or memory (a page), within
     * body.cap */
    struct sl_source_body body;
    const char *cap_what; /* the limit's name and size, for the message */
    uint64_t cap_shown;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "scheme://host:port" of url into out (lowercase), or "" when it does not
 * parse. */
static void origin_of(const char *url, char *out, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    out[0] = '\0';
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
        !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
        !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT)) {
        snprintf(out, n, "%s://%s:%s", scheme, host, port);
        for (char *p = out; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* The file name of Content-Disposition d (filename*= first, then
 * filename=), or "" into out. */
static void name_from_disposition(const char *d, char *out, size_t sz)
{
    char raw[512];
    out[0] = '\0';
    const char *p = strcasestr(d, "filename*=");
    if (p) {
        p += 10;
        const char *q1 = strchr(p, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        if (q1 && q2 && (!strncasecmp(p, "utf-8'", 6) || !strncasecmp(p, "iso-8859-1'", 11))) {
            size_t n = strcspn(q2 + 1, "; \t");
            n = sl_source_pct_decode(q2 + 1, n, raw, sizeof(raw));
            if (!strncasecmp(p, "utf-8'", 6) && sl_utf8_valid(raw, n)) {
                sl_source_plain_name(raw, n, out, sz);
                if (out[0])
                    return;
            }
        }
    }
    for (p = d; (p = strcasestr(p, "filename=")) != NULL; p += 9) {
        if (p > d && p[-1] == '*')
            continue;
        p += 9;
        size_t o = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"' && o + 1 < sizeof(raw); p++) {
                if (*p == '\\' && p[1])
                    p++;
                raw[o++] = *p;
            }
        } else {
            size_t n = strcspn(p, "; \t");
            o = n < sizeof(raw) - 1 ? n : sizeof(raw) - 1;
            memcpy(raw, p, o);
        }
        raw[o] = '\0';
        if (sl_utf8_valid(raw, o))
            sl_source_plain_name(raw, o, out, sz);
        return;
    }
}

/* Resolves ref against base (an absolute URL, or one relative to base) into
 * a new string (curl_free), or NULL. */
static char *resolve_url(const char *base, const char *ref)
{
    CURLU *u = curl_url();
    char *out = NULL;
    if (u && !curl_url_set(u, CURLUPART_URL, base, 0) &&
        !curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME))
        curl_url_get(u, CURLUPART_URL, &out, 0);
    curl_url_cleanup(u);
    return out;
}

/* url with the query parameter name set to value (an earlier one of that
 * name removed), as a new string (free), or NULL when url does not parse or
 * out of memory. */
static char *with_param(const char *url, const char *name, const char *value)
{
    CURLU *u = curl_url();
    char *q = NULL, *ename = curl_easy_escape(NULL, name, 0),
         *evalue = curl_easy_escape(NULL, value, 0), *full = NULL, *out = NULL;
    struct sl_buf nq = SL_BUF_INIT;
    if (!u || !ename || !evalue || curl_url_set(u, CURLUPART_URL, url, 0))
        goto out;
    curl_url_get(u, CURLUPART_QUERY, &q, 0);
    size_t nl = strlen(ename);
    for (const char *p = q; p && *p;) {
        size_t n = strcspn(p, "&");
        bool same = n >= nl && !strncmp(p, ename, nl) && (n == nl || p[nl] == '=');
        if (!same && n && ((nq.len && sl_buf_putc(&nq, '&')) || sl_buf_append(&nq, p, n)))
            goto out;
        p += n + (p[n] == '&');
    }
    if (sl_buf_printf(&nq, "%s%s=%s", nq.len ? "&" : "", ename, evalue) ||
        curl_url_set(u, CURLUPART_QUERY, nq.data, 0) || curl_url_get(u, CURLUPART_URL, &full, 0))
        goto out;
    out = strdup(full);
out:
    curl_free(full);
    curl_free(q);
    curl_free(ename);
    curl_free(evalue);
    sl_buf_cleanup(&nq);
    curl_url_cleanup(u);
    return out;
}

/* The URL of rel="next" in one Link header value (RFC 8288), or NULL. */
static char *link_next(const char *v)
{
    const char *p = v;
    while ((p = strchr(p, '<')) != NULL) {
        const char *end = strchr(p, '>');
        if (!end)
            return NULL;
        const char *params = end + 1;
        /* this link's parameters run to the next ',' outside quotes */
        const char *q = params;
        bool quoted = false;
        for (; *q && (quoted || *q != ','); q++)
            if (*q == '"')
                quoted = !quoted;
        for (const char *r = params; r < q; r++) {
            if (strncasecmp(r, "rel=", 4))
                continue;
            r += 4;
            bool qt = *r == '"';
            r += qt;
            size_t n = qt ? strcspn(r, "\"") : strcspn(r, "; ,");
            if (r + n > q)
                n = (size_t)(q - r);
            /* rel may list several space-separated types */
            for (const char *w = r; w < r + n;) {
                size_t wl = strcspn(w, " \t\"");
                if (w + wl > r + n)
                    wl = (size_t)(r + n - w);
                if (wl == 4 && !strncasecmp(w, "next", 4))
                    return strndup(p + 1, (size_t)(end - p - 1));
                w += wl;
                while (w < r + n && (*w == ' ' || *w == '\t'))
                    w++;
            }
            break;
        }
        p = *q ? q + 1 : q;
    }
    return NULL;
}

/* ---- libcurl callbacks -------------------------------------------------- */

/* Keeps what the fetch needs of the response's header lines; a status line
 * starts a new response (an interim 1xx, or the next hop). */
static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    struct http *h = ud;
    size_t n = size * nitems, vl = 0;
    const char *v;
    if (sl_source_head_line(&h->head, line, n)) {
        h->disposition[0] = h->retry_after[0] = '\0';
        free(h->link_next);
        h->link_next = NULL;
    } else if ((v = sl_source_header(line, n, "content-disposition", &vl))) {
        sl_source_copy_value(h->disposition, sizeof(h->disposition), v, vl);
    } else if ((v = sl_source_header(line, n, "retry-after", &vl))) {
        sl_source_copy_value(h->retry_after, sizeof(h->retry_after), v, vl);
    } else if ((v = sl_source_header(line, n, "link", &vl)) && !h->link_next && vl < LINK_MAX) {
        char buf[LINK_MAX];
        sl_source_copy_value(buf, sizeof(buf), v, vl);
        h->link_next = link_next(buf);
    }
    return n;
}

static bool ok_status(long s)
{
    return s >= 200 && s < 300;
}

/* The body: a 2xx answer's into the sink (hashed, within cap), any other's
 * first bytes kept for the message. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http *h = ud;
    return ok_status(h->head.status) ? sl_source_body_put(&h->body, data, size * nmemb)
                                     : sl_source_body_error(&h->body, data, size * nmemb);
}

/* ---- requests ----------------------------------------------------------- */

/* Appends the header "name: PREFIXvalue" ("name;" when that is empty) to
 * the origin's list, value being the option of field with ${env:NAME}
 * expanded. 0 or an sl_err with errbuf naming the field. */
static int add_header(struct http *h, const char *field, const char *name, const char *prefix,
                      const char *value, char *errbuf, size_t errsz)
{
    char line[8192], *v = NULL;
    int rc = sl_source_expand(value, NULL, field, &v, errbuf, errsz);
    if (rc)
        return rc;
    if (strpbrk(v, "\r\n"))
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the expanded value has a line break",
                       field);
    /* "Name;" sends an empty header; "Name:" would remove it */
    else if (snprintf(line, sizeof(line), prefix[0] || v[0] ? "%s: %s%s" : "%s;%s%s", name, prefix,
                      v) >= (int)sizeof(line))
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: too long", field);
    else {
        struct curl_slist *l = curl_slist_append(h->own, line);
        if (l)
            h->own = l;
        else
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    explicit_bzero(line, sizeof(line));
    sl_source_wipe_free(v);
    return rc;
}

/* Expands the job's headers and credentials into h (the origin's header list
 * and the one for others). 0 or an sl_err with errbuf set. */
static int build_headers(struct http *h, char *errbuf, size_t errsz)
{
    const struct sl_source *src = h->src;
    char field[1024];
    int rc = 0;
    static const char ua[] = "User-Agent: sluice/" SLUICE_VERSION;
    if (!(h->own = curl_slist_append(NULL, ua)) || !(h->other = curl_slist_append(NULL, ua)))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < src->nheaders && rc == 0; i++) {
        snprintf(field, sizeof(field), "source.headers.%s", src->headers[i].name);
        rc = add_header(h, field, src->headers[i].name, "", src->headers[i].value, errbuf, errsz);
    }
    if (rc == 0 && src->auth_bearer)
        rc = add_header(h, "source.auth.bearer", "Authorization", "Bearer ", src->auth_bearer,
                        errbuf, errsz);
    if (rc == 0 && src->auth_user &&
        (rc = sl_source_expand(src->auth_user, NULL, "source.auth.basic.user", &h->user, errbuf,
                               errsz)) == 0)
        rc = sl_source_expand(src->auth_password, NULL, "source.auth.basic.password", &h->password,
                              errbuf, errsz);
    return rc;
}

/* The error answer's first line, printable, for a message ("" none). */
static const char *errbody_line(struct http *h)
{
    char *p = h->body.errbody;
    size_t n = strcspn(p, "\r\n");
    p[n] = '\0';
    for (char *q = p; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            *q = ' ';
    return p;
}

/* Seconds of a Retry-After value (delta-seconds or an HTTP date), -1 none. */
static long retry_after_s(const char *v)
{
    if (!v[0])
        return -1;
    if (isdigit((unsigned char)v[0])) {
        char *end;
        long s = strtol(v, &end, 10);
        return *end ? -1 : s;
    }
    time_t t = curl_getdate(v, NULL);
    if (t < 0)
        return -1;
    time_t now = time(NULL);
    return t > now ? (long)(t - now) : 0;
}

/* One attempt at h->url (sl_source_attempt_fn of a struct http): a GET
 * that follows up to MAX_REDIRECTS redirects, with the job's headers only
 * for the source's origin and the validators (h->cond) only on the first
 * request. The body goes to the sink. 0 with h->head.status 2xx or 304.
 * h->what names the request in messages ("https://x/a.csv", "page 3 of
 * https://..."). */
static int attempt(void *ud, bool *transient, long *wait_ms, char *errbuf, size_t errsz)
{
    struct http *h = ud;
    const struct sl_source *src = h->src;
    const char *what = h->what;
    int rc = sl_source_body_reset(&h->body, "the download file", errbuf, errsz);
    if (rc)
        return rc;
    char *cur = strdup(h->url);
    int64_t deadline = now_ms() + src->timeout * 1000;
    rc = SL_ERR_INVALID;
    if (!cur)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    for (int hop = 0;; hop++) {
        char origin[512];
        origin_of(cur, origin, sizeof(origin));
        bool own = origin[0] && !strcmp(origin, h->origin);
        struct curl_slist *cl = NULL, *hdrs = own ? h->own : h->other;
        char line[SL_VALIDATOR_MAX + 32];
        if (h->cond && hop == 0) {
            /* copies of the list's head: the conditional lines go in front */
            if (h->req->etag && h->req->etag[0]) {
                snprintf(line, sizeof(line), "If-None-Match: %s", h->req->etag);
                cl = curl_slist_append(cl, line);
            }
            if (h->req->last_modified && h->req->last_modified[0]) {
                snprintf(line, sizeof(line), "If-Modified-Since: %s", h->req->last_modified);
                cl = curl_slist_append(cl, line);
            }
            for (struct curl_slist *s = hdrs; s && cl; s = s->next)
                cl = curl_slist_append(cl, s->data);
            if (!cl) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                break;
            }
            hdrs = cl;
        }
        long left = (long)(deadline - now_ms());
        if (left <= 0) {
            curl_slist_free_all(cl);
            rc = sl_seterr(errbuf, errsz, SL_ERR_TIMEOUT,
                           "%s: no answer within source.timeout (%ld s)", what, src->timeout);
            *transient = true;
            break;
        }
        h->head.status = 0;
        h->curl_err[0] = '\0';
        h->ctx.refused[0] = '\0';
        curl_easy_setopt(h->c, CURLOPT_URL, cur);
        curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h->c, CURLOPT_USERNAME, own && h->user ? h->user : NULL);
        curl_easy_setopt(h->c, CURLOPT_PASSWORD, own && h->password ? h->password : NULL);
        curl_easy_setopt(h->c, CURLOPT_HTTPAUTH, own && h->user ? CURLAUTH_BASIC : CURLAUTH_NONE);
        curl_easy_setopt(h->c, CURLOPT_TIMEOUT_MS, left);
        CURLcode crc = curl_easy_perform(h->c);
        curl_slist_free_all(cl);
        free(h->cur_url);
        h->cur_url = cur;
        cur = NULL;
        if (crc != CURLE_OK && !(crc == CURLE_WRITE_ERROR && !ok_status(h->head.status) &&
                                 h->head.status && !h->body.werr && !h->body.over)) {
            if (!(rc = sl_source_local_failure(&h->body, &h->ctx, crc, what, "body", h->cap_what,
                                               h->cap_shown, errbuf, errsz)))
                rc = sl_source_curl_failure(crc, &h->ctx, h->curl_err, what, transient, errbuf,
                                            errsz);
            break;
        }
        long st = h->head.status;
        if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
            char *loc = NULL;
            curl_easy_getinfo(h->c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                               "%s: HTTP %ld redirect without a Location", what, st);
                break;
            }
            if (hop + 1 > MAX_REDIRECTS) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "%s: more than %d redirects", what,
                               MAX_REDIRECTS);
                break;
            }
            char lo[512];
            origin_of(loc, lo, sizeof(lo));
            if (strncmp(lo, "http://", 7) && strncmp(lo, "https://", 8)) {
                char shown[256];
                sl_url_redact(loc, shown, sizeof(shown));
                rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                               "%s: redirect to '%.200s' refused (only http and https)", what,
                               shown);
                break;
            }
            if (!strncmp(h->cur_url, "https:", 6) && !strncmp(lo, "http://", 7)) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                               "%s: redirect from https to plain http (%s) refused", what, lo);
                break;
            }
            if (!(cur = strdup(loc))) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                break;
            }
            if ((rc = sl_source_body_reset(&h->body, "the download file", errbuf, errsz)) != 0)
                break;
            continue;
        }
        if (ok_status(st) || (st == 304 && h->cond)) {
            rc = 0;
            break;
        }
        const char *body = errbody_line(h);
        long ra = retry_after_s(h->retry_after);
        bool again = st == 408 || st == 429 || (st >= 500 && st <= 599 && st != 501 && st != 505);
        rc = sl_seterr(errbuf, errsz, again ? SL_ERR_RETRY : SL_ERR_INVALID,
                       "%s: HTTP %ld%s%s%s%.120s%s", what, st, h->head.reason[0] ? " " : "",
                       h->head.reason, body[0] ? " (" : "", body, body[0] ? ")" : "");
        if (st == 304)
            sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                      "%s: HTTP 304 Not Modified to a request that asked for no validators", what);
        if (again && ra >= 0) {
            if (ra > RETRY_AFTER_MAX_S) {
                size_t l = strlen(errbuf);
                snprintf(errbuf + l, errsz - l,
                         "; the server asks to retry after %ld s, longer than sluice waits (%d s)",
                         ra, RETRY_AFTER_MAX_S);
                break;
            }
            *wait_ms = ra * 1000;
        }
        *transient = again;
        break;
    }
    free(cur);
    return rc;
}

/* attempt() with the job's retries (sl_source_attempts: backoff, or the
 * server's Retry-After): url with the validators when cond, what naming it
 * in messages. 0 (h->head.status 2xx or 304), or the last failure's sl_err. */
static int request(struct http *h, const char *url, bool cond, const char *what, char *errbuf,
                   size_t errsz)
{
    h->url = url;
    h->cond = cond;
    h->what = what;
    return sl_source_attempts(h->src, attempt, h, errbuf, errsz);
}

/* ---- pages: a small JSON scanner ---------------------------------------- */

/* Each scan_* gets the text p..e at a value and returns where it ends, or
 * NULL when it is no valid JSON. */
static const char *ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *scan_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            if (++p >= e)
                return NULL;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (p + i >= e || !isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return NULL;
}

static const char *digits(const char *p, const char *e)
{
    const char *s = p;
    while (p < e && isdigit((unsigned char)*p))
        p++;
    return p > s ? p : NULL;
}

static const char *scan_number(const char *p, const char *e)
{
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (!(p = digits(p, e)))
        return NULL;
    if (p < e && *p == '.' && !(p = digits(p + 1, e)))
        return NULL;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p = digits(p, e)))
            return NULL;
    }
    return p;
}

static const char *scan_value(const char *p, const char *e, int depth)
{
    p = ws(p, e);
    if (p >= e || depth > JSON_DEPTH_MAX)
        return NULL;
    switch (*p) {
    case '"':
        return scan_string(p, e);
    case '{':
    case '[': {
        bool obj = *p == '{';
        char close = obj ? '}' : ']';
        p = ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (obj) {
                if (p >= e || *p != '"' || !(p = scan_string(p, e)))
                    return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            if (!(p = scan_value(p, e, depth + 1)))
                return NULL;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p = ws(p + 1, e);
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    case 't':
        return e - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
    case 'f':
        return e - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
    case 'n':
        return e - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
    default:
        return scan_number(p, e);
    }
}

/* Whether the JSON string at s..se (quotes included) is name. */
static bool key_is(const char *s, const char *se, const char *name, size_t nl)
{
    if (!memchr(s, '\\', (size_t)(se - s)))
        return (size_t)(se - s) == nl + 2 && !memcmp(s + 1, name, nl);
    json_t *k = json_loadb(s, (size_t)(se - s), JSON_DECODE_ANY, NULL);
    bool same =
        json_is_string(k) && json_string_length(k) == nl && !memcmp(json_string_value(k), name, nl);
    json_decref(k);
    return same;
}

/* The value at path ("$.a.b": object members only, like the JSON reader)
 * within the valid JSON text p..e: its start and *end, or NULL when a step
 * is missing or not an object. */
static const char *find_path(const char *p, const char *e, const char *path, const char **end)
{
    p = ws(p, e);
    const char *s = path && path[0] == '$' ? path + 1 : path ? path : "";
    if (*s == '.')
        s++;
    while (*s) {
        size_t nl = strcspn(s, ".");
        if (p >= e || *p != '{')
            return NULL;
        p = ws(p + 1, e);
        const char *found = NULL;
        while (p < e && *p == '"') {
            const char *ke = scan_string(p, e);
            const char *v = ws(ws(ke, e) + 1, e);
            if (key_is(p, ke, s, nl))
                found = v; /* the last of duplicate names wins, like jansson */
            p = ws(scan_value(v, e, 0), e);
            if (p < e && *p == ',')
                p = ws(p + 1, e);
        }
        if (!found)
            return NULL;
        p = found;
        s += nl;
        if (*s == '.')
            s++;
    }
    *end = scan_value(p, e, 0);
    return p;
}

/* ---- pages: the assembled document -------------------------------------- */

struct blob {
    struct sl_source_body out; /* req->fd, hashed, within source.max_bytes */
    uint64_t records;
};

static int blob_put(struct blob *b, const char *p, size_t n, char *errbuf, size_t errsz)
{
    if (sl_source_body_put(&b->out, p, n) == n)
        return 0;
    if (b->out.over)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "the pages together are larger than source.max_bytes (%llu bytes)",
                         (unsigned long long)b->out.cap);
    return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot store the pages: %s", strerror(b->out.werr));
}

/* The opening (or closing) of the document around the records: one object
 * per component of the records path. */
static int blob_frame(struct blob *b, const char *path, bool open, char *errbuf, size_t errsz)
{
    struct sl_buf t = SL_BUF_INIT;
    const char *s = path && path[0] == '$' ? path + 1 : path ? path : "";
    if (*s == '.')
        s++;
    int rc = 0;
    size_t ncomp = 0;
    while (*s && rc == 0) {
        size_t nl = strcspn(s, ".");
        if (open)
            rc = sl_buf_putc(&t, '{') || sl_buf_json_str(&t, s, nl) || sl_buf_putc(&t, ':');
        ncomp++;
        s += nl;
        if (*s == '.')
            s++;
    }
    if (rc == 0)
        rc = sl_buf_puts(&t, open ? "[\n" : "\n]");
    for (size_t i = 0; !open && i < ncomp && rc == 0; i++)
        rc = sl_buf_putc(&t, '}');
    if (rc == 0)
        rc = sl_buf_putc(&t, '\n');
    rc = rc ? sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory")
            : blob_put(b, t.data, t.len, errbuf, errsz);
    sl_buf_cleanup(&t);
    return rc;
}

/* Copies the records of one page (the array at the records path of the
 * valid JSON page p..e) into the document; *n gets their number. A page
 * whose path is missing or null has none. */
static int page_records(struct blob *b, const char *records, const char *p, const char *e,
                        uint64_t *n, const char *what, char *errbuf, size_t errsz)
{
    const char *end = NULL, *a = find_path(p, e, records, &end);
    *n = 0;
    if (!a || *a == 'n')
        return 0;
    if (*a != '[')
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s: %s is %s, not an array of records%s",
                         what, records ? records : "the page", sl_json_kind(*a),
                         records ? "" : " (give source.json.records)");
    const char *q = ws(a + 1, end);
    while (q < end && *q != ']') {
        const char *ve = scan_value(q, end, 0);
        int rc = 0;
        if (b->records)
            rc = blob_put(b, ",\n", 2, errbuf, errsz);
        if (rc || (rc = blob_put(b, q, (size_t)(ve - q), errbuf, errsz)))
            return rc;
        b->records++;
        (*n)++;
        q = ws(ve, end);
        if (q < end && *q == ',')
            q = ws(q + 1, end);
    }
    return 0;
}

/* The next cursor at path in the page (a string or a number; NULL with *rc
 * 0 when there is none: missing, null or ""). The caller frees. */
static char *page_cursor(const char *p, const char *e, const char *path, const char *what, int *rc,
                         char *errbuf, size_t errsz)
{
    const char *end = NULL, *v = find_path(p, e, path, &end);
    *rc = 0;
    if (!v || *v == 'n')
        return NULL;
    if (*v == '"') {
        json_t *s = json_loadb(v, (size_t)(end - v), JSON_DECODE_ANY, NULL);
        char *out =
            json_is_string(s) && json_string_length(s) ? strdup(json_string_value(s)) : NULL;
        bool empty = json_is_string(s) && !json_string_length(s);
        json_decref(s);
        if (!out && !empty)
            *rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return out;
    }
    if (*v == '-' || isdigit((unsigned char)*v)) {
        char *out = strndup(v, (size_t)(end - v));
        if (!out)
            *rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return out;
    }
    *rc = sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s: %s is %s, not a cursor (a string or number)",
                    what, path, sl_json_kind(*v));
    return NULL;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The URL of page number (or offset) value, with the page size when the
 * job sends one; NULL when the URL does not parse or out of memory. */
static char *numbered_url(const struct http *h, long value)
{
    const struct sl_pagination *pg = &h->src->pag;
    char num[32];
    snprintf(num, sizeof(num), "%ld", value);
    char *u = with_param(h->req->url, pg->param, num);
    if (u && pg->size_param) {
        snprintf(num, sizeof(num), "%ld", pg->size);
        char *u2 = with_param(u, pg->size_param, num);
        free(u);
        u = u2;
    }
    return u;
}

/* Fetches every page into the document (req->fd): 0 with res filled, or an
 * sl_err naming the page. */
static int fetch_pages(struct http *h, struct sl_fetch_res *res, char *errbuf, size_t errsz)
{
    const struct sl_source *src = h->src;
    const struct sl_pagination *pg = &src->pag;
    const char *records = src->json_records ? src->json_records : src->records;
    struct blob b = {.records = 0};
    char what[400];
    char *next = NULL;     /* the URL of the next page */
    uint64_t *seen = NULL; /* hashes of the cursors or links followed */
    long page_no = pg->start, offset = pg->start;
    int rc = 0;
    if (sl_source_body_init(&b.out, h->req->fd, true, src->max_bytes) ||
        !(seen = calloc((size_t)pg->max_pages + 1, sizeof(*seen)))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = blob_frame(&b, records, true, errbuf, errsz)))
        goto out;
    next = pg->type == SL_PAG_PAGE || pg->type == SL_PAG_OFFSET ? numbered_url(h, pg->start)
                                                                : strdup(h->req->url);
    if (!next) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: cannot add the page parameters to the URL", h->req->shown);
        goto out;
    }
    /* the loop proper: next holds the URL of the page to read */
    for (long i = 0;; i++) {
        if (i >= pg->max_pages) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                           "%s: more than source.pagination.max_pages (%ld) pages", h->req->shown,
                           pg->max_pages);
            goto out;
        }
        snprintf(what, sizeof(what), "page %ld of %s", i + 1, h->req->shown);
        uint64_t left = src->max_bytes - b.out.bytes;
        h->body.cap = left < PAGE_MAX ? left : PAGE_MAX;
        h->cap_what = left < PAGE_MAX ? "source.max_bytes for all pages together" : "a page may be";
        h->cap_shown = left < PAGE_MAX ? src->max_bytes : PAGE_MAX;
        if ((rc = request(h, next, false, what, errbuf, errsz)))
            goto out;
        res->pages++;
        res->status = h->head.status;
        const char *p = h->body.mem.data ? h->body.mem.data : "", *e = p + h->body.mem.len;
        const char *ve = scan_value(p, e, 0);
        if (!ve || ws(ve, e) != e) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s: the page is not valid JSON%s%.60s",
                           what, h->head.content_type[0] ? " (content type " : "",
                           h->head.content_type[0] ? h->head.content_type : "");
            if (h->head.content_type[0]) {
                size_t l = strlen(errbuf);
                snprintf(errbuf + l, errsz - l, ")");
            }
            goto out;
        }
        uint64_t n = 0;
        if ((rc = page_records(&b, records, p, e, &n, what, errbuf, errsz)))
            goto out;
        char *follow = NULL; /* the next page's URL, NULL: this was the last */
        switch (pg->type) {
        case SL_PAG_PAGE:
            if (n == 0 || (pg->size && n < (uint64_t)pg->size))
                break;
            if (!(follow = numbered_url(h, ++page_no)))
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            break;
        case SL_PAG_OFFSET:
            if (n == 0 || n < (uint64_t)pg->size)
                break;
            offset += (long)n;
            if (!(follow = numbered_url(h, offset)))
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            break;
        case SL_PAG_CURSOR: {
            char *cur = page_cursor(p, e, pg->path, what, &rc, errbuf, errsz);
            if (!cur)
                break;
            uint64_t hv = fnv1a(cur);
            for (long k = 0; k < i + 1 && rc == 0; k++)
                if (seen[k] == hv)
                    rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                   "%s: the cursor at %s repeats an earlier one (the pages "
                                   "would never end)",
                                   what, pg->path);
            seen[i + 1] = hv;
            if (rc == 0 && !(follow = with_param(h->req->url, pg->param, cur)))
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            free(cur);
            break;
        }
        case SL_PAG_LINK: {
            char *ref = NULL;
            if (pg->path) {
                ref = page_cursor(p, e, pg->path, what, &rc, errbuf, errsz);
            } else if (h->link_next) {
                ref = h->link_next;
                h->link_next = NULL;
            }
            if (!ref)
                break;
            char *abs = resolve_url(h->cur_url ? h->cur_url : next, ref);
            free(ref);
            if (!abs || (strncasecmp(abs, "http://", 7) && strncasecmp(abs, "https://", 8))) {
                rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                               "%s: the next page's link is not an http(s) URL", what);
                curl_free(abs);
                break;
            }
            uint64_t hv = fnv1a(abs);
            seen[0] = fnv1a(next);
            for (long k = 0; k < i + 1 && rc == 0; k++)
                if (seen[k] == hv)
                    rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                   "%s: the next link leads to a page read before (the pages "
                                   "would never end)",
                                   what);
            seen[i + 1] = hv;
            if (rc == 0 && !(follow = strdup(abs)))
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            curl_free(abs);
            break;
        }
        default:
            break;
        }
        if (rc)
            goto out;
        if (!follow)
            break;
        free(next);
        next = follow;
    }
    if ((rc = blob_frame(&b, records, false, errbuf, errsz)))
        goto out;
    sl_source_body_result(&b.out, res);
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    char base[256];
    sl_source_name_from_url(h->req->url, base, sizeof(base));
    size_t bl = strlen(base);
    if (!bl)
        snprintf(res->file_name, sizeof(res->file_name), "pages.json");
    else if (bl >= 5 && !strcasecmp(base + bl - 5, ".json"))
        snprintf(res->file_name, sizeof(res->file_name), "%s", base);
    else
        snprintf(res->file_name, sizeof(res->file_name), "%.200s.json", base);
    sl_info("fetcher", "%s: %u pages, %llu records, %llu bytes", h->req->shown, res->pages,
            (unsigned long long)b.records, (unsigned long long)b.out.bytes);
out:
    free(next);
    free(seen);
    sl_source_body_cleanup(&b.out);
    return rc;
}

/* ---- the source --------------------------------------------------------- */

static int fetch_one(struct http *h, struct sl_fetch_res *res, char *errbuf, size_t errsz)
{
    const struct sl_fetch_req *req = h->req;
    bool cond = (req->etag && req->etag[0]) || (req->last_modified && req->last_modified[0]);
    h->cap_shown = h->body.cap;
    h->cap_what = "source.max_bytes";
    int rc = request(h, req->url, cond, req->shown, errbuf, errsz);
    if (rc)
        return rc;
    res->status = h->head.status;
    res->pages = 1;
    if (h->head.status == 304) {
        res->not_modified = true;
        snprintf(res->etag, sizeof(res->etag), "%s", req->etag ? req->etag : "");
        snprintf(res->last_modified, sizeof(res->last_modified), "%s",
                 req->last_modified ? req->last_modified : "");
        snprintf(res->not_modified_why, sizeof(res->not_modified_why), "HTTP 304 Not Modified");
        return 0;
    }
    sl_source_body_result(&h->body, res);
    sl_source_head_result(&h->head, res);
    if (h->disposition[0])
        name_from_disposition(h->disposition, res->file_name, sizeof(res->file_name));
    if (!res->file_name[0])
        sl_source_name_from_url(h->cur_url ? h->cur_url : req->url, res->file_name,
                                sizeof(res->file_name));
    if (!res->file_name[0] && h->cur_url)
        sl_source_name_from_url(req->url, res->file_name, sizeof(res->file_name));
    return 0;
}

static int http_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                      size_t errsz)
{
    struct http h = {.req = req, .src = req->src};
    bool pages = req->src->pag.type != SL_PAG_NONE;
    memset(res, 0, sizeof(*res));
    h.ctx.guard = req->guard;
    int rc = 0;
    /* a single fetch streams into the file; pages go to memory first */
    if (sl_source_body_init(&h.body, pages ? -1 : req->fd, !pages, req->src->max_bytes)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    origin_of(req->url, h.origin, sizeof(h.origin));
    if (!h.origin[0] || (strncmp(h.origin, "http://", 7) && strncmp(h.origin, "https://", 8))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: not a valid http(s) URL", req->shown);
        goto out;
    }
    if (!(h.c = curl_easy_init())) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot create a libcurl handle");
        goto out;
    }
    struct sl_curl_opts o = {
        .protocols = "http,https",
        .follow = false, /* here, to keep the job's headers to its origin */
        .connect_timeout = req->src->connect_timeout,
        .timeout = req->src->timeout,
        .max_bytes = pages ? 0 : req->src->max_bytes,
    };
    if ((rc = sl_curl_setup(h.c, &o, &h.ctx, errbuf, errsz)) ||
        (rc = sl_source_ca_file(h.c, req->src, &h.ca_file, errbuf, errsz)) ||
        (rc = build_headers(&h, errbuf, errsz)))
        goto out;
    curl_easy_setopt(h.c, CURLOPT_ERRORBUFFER, h.curl_err);
    curl_easy_setopt(h.c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h.c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(h.c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h.c, CURLOPT_WRITEDATA, &h);
    curl_easy_setopt(h.c, CURLOPT_HTTPGET, 1L);
    /* a transfer that stalls for a minute is dead, whatever source.timeout says */
    curl_easy_setopt(h.c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h.c, CURLOPT_LOW_SPEED_TIME, 60L);
    rc = pages ? fetch_pages(&h, res, errbuf, errsz) : fetch_one(&h, res, errbuf, errsz);
out:
    sl_source_curl_free(h.c);
    curl_slist_free_all(h.own);
    curl_slist_free_all(h.other);
    sl_source_wipe_free(h.user);
    sl_source_wipe_free(h.password);
    free(h.cur_url);
    free(h.link_next);
    free(h.ca_file);
    sl_source_body_cleanup(&h.body);
    return rc;
}

static const char *const http_schemes[] = {"http", "https", NULL};

const struct sl_source_ops sl_source_http = {
    .name = "http",
    .schemes = http_schemes,
    .fetch = http_fetch,
};
