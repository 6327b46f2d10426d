/*
 * HTTP and HTTPS sources (source.h), over libcurl.
 *
 * A fetch is one GET of the source URL, or with source.pagination one GET per
 * page, each made of requests that follow redirects (here, not in libcurl,
 * so that the job's headers and credentials go only to the source URL's own
 * origin: a redirect elsewhere gets neither), retried with exponential
 * backoff and jitter after a timeout, a lost connection, 408, 429 or a 5xx
 * (a Retry-After is honoured), within the job's time and size limits. Every
 * connection passes the SSRF guard (sl_curl_setup). ${env:NAME} in headers
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
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/source.h"
#include "sluice/util.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

#define MAX_REDIRECTS     5
#define PAGE_MAX          (64u << 20) /* bytes of one page, held in memory */
#define RETRY_AFTER_MAX_S 300         /* longer Retry-After: the run fails */
#define BACKOFF_MAX_MS    60000
#define ERRBODY_MAX       160   /* bytes of an error answer quoted in a message */
#define DISCARD_MAX       65536 /* bytes of an error or redirect body read at all */
#define JSON_DEPTH_MAX    512
#define LINK_MAX          8192

/* What one attempt came to. */
enum outcome { OK, RETRY, FAIL };

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
    char origin[512];         /* scheme://host:port of the source URL */
    char *cur_url;            /* the URL of the last request (after redirects) */

    /* the response */
    long status;
    char reason[64];
    char etag[SL_VALIDATOR_MAX];
    char last_modified[64];
    char content_type[128];
    char disposition[512];
    char retry_after[64];
    char *link_next; /* Link: rel="next" (malloc'ed), NULL none */

    /* the body: into fd (fd >= 0) or mem */
    int fd;
    struct sl_buf mem;
    EVP_MD_CTX *md;
    uint64_t bytes, cap;
    const char *cap_what; /* the limit's name and size, for the message */
    uint64_t cap_shown;
    bool over; /* the body passed cap */
    int werr;  /* errno of a failed write, 0 none */
    char errbody[ERRBODY_MAX + 1];
    size_t nerrbody, discarded;
};

/* ---- small helpers ------------------------------------------------------ */

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rnd32(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)now_ms() * 2654435761u;
    return r;
}

/* Copies header value v (n bytes, trimmed) into out[sz]; control
 * characters become nothing. */
static void copy_value(char *out, size_t sz, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < sz; i++)
        if ((unsigned char)v[i] >= 0x20 && v[i] != 0x7f)
            out[o++] = v[i];
    out[o] = '\0';
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
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

/* A plain file name from s (n bytes): its last path segment, without
 * control characters, leading dots or spaces, at most 200 bytes of valid
 * UTF-8; "" when nothing is left. */
static void plain_name(const char *s, size_t n, char *out, size_t sz)
{
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '/' || s[i - 1] == '\\') {
            s += i;
            n -= i;
            break;
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < sz && o < 200; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || ((c == '.' || c == ' ') && o == 0))
            continue;
        out[o++] = (char)c;
    }
    while (o && !sl_utf8_valid(out, o))
        o--; /* a character cut at the end */
    while (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out[sz] ("%2F" stays a '/': plain_name drops
 * what comes before). */
static size_t pct_decode(const char *s, size_t n, char *out, size_t sz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < sz; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < n && (h = hexval((unsigned char)s[i + 1])) >= 0 &&
            (l = hexval((unsigned char)s[i + 2])) >= 0) {
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
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
            n = pct_decode(q2 + 1, n, raw, sizeof(raw));
            if (!strncasecmp(p, "utf-8'", 6) && sl_utf8_valid(raw, n)) {
                plain_name(raw, n, out, sz);
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
            plain_name(raw, o, out, sz);
        return;
    }
}

/* The last path segment of url, percent-decoded, into out ("" none). */
static void name_from_url(const char *url, char *out, size_t sz)
{
    CURLU *u = curl_url();
    char *path = NULL;
    out[0] = '\0';
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
        !curl_url_get(u, CURLUPART_PATH, &path, 0)) {
        const char *seg = strrchr(path, '/');
        seg = seg ? seg + 1 : path;
        char raw[512];
        size_t n = pct_decode(seg, strlen(seg), raw, sizeof(raw));
        if (sl_utf8_valid(raw, n))
            plain_name(raw, n, out, sz);
    }
    curl_free(path);
    curl_url_cleanup(u);
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
    size_t n = size * nitems;
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        h->status = 0;
        h->reason[0] = h->etag[0] = h->last_modified[0] = h->content_type[0] = '\0';
        h->disposition[0] = h->retry_after[0] = '\0';
        free(h->link_next);
        h->link_next = NULL;
        const char *sp = memchr(line, ' ', n);
        if (sp) {
            h->status = strtol(sp + 1, NULL, 10);
            const char *rs = memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line));
            if (rs)
                copy_value(h->reason, sizeof(h->reason), rs + 1, n - (size_t)(rs + 1 - line));
        }
        return n;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon)
        return n;
    size_t kl = (size_t)(colon - line), vl = n - kl - 1;
    const char *v = colon + 1;
#define IS(name) (kl == sizeof(name) - 1 && !strncasecmp(line, name, kl))
    /* a validator too long to keep whole is not kept at all */
    if (IS("etag") && vl < sizeof(h->etag))
        copy_value(h->etag, sizeof(h->etag), v, vl);
    else if (IS("last-modified") && vl < sizeof(h->last_modified))
        copy_value(h->last_modified, sizeof(h->last_modified), v, vl);
    else if (IS("content-type"))
        copy_value(h->content_type, sizeof(h->content_type), v, vl);
    else if (IS("content-disposition"))
        copy_value(h->disposition, sizeof(h->disposition), v, vl);
    else if (IS("retry-after"))
        copy_value(h->retry_after, sizeof(h->retry_after), v, vl);
    else if (IS("link") && !h->link_next && vl < LINK_MAX) {
        char buf[LINK_MAX];
        copy_value(buf, sizeof(buf), v, vl);
        h->link_next = link_next(buf);
    }
#undef IS
    return n;
}

static bool ok_status(long s)
{
    return s >= 200 && s < 300;
}

/* The body: a 2xx answer's into the sink (hashed, within cap), any other's
 * first bytes kept for the message and the rest read up to DISCARD_MAX. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http *h = ud;
    size_t n = size * nmemb;
    if (!ok_status(h->status)) {
        size_t k = ERRBODY_MAX - h->nerrbody < n ? ERRBODY_MAX - h->nerrbody : n;
        memcpy(h->errbody + h->nerrbody, data, k);
        h->nerrbody += k;
        h->errbody[h->nerrbody] = '\0';
        h->discarded += n;
        return h->discarded > DISCARD_MAX ? 0 : n;
    }
    if (n > h->cap - h->bytes) {
        h->over = true;
        return 0;
    }
    if (h->fd >= 0) {
        for (size_t off = 0; off < n;) {
            ssize_t w = write(h->fd, data + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                h->werr = w < 0 ? errno : EIO;
                return 0;
            }
            off += (size_t)w;
        }
        EVP_DigestUpdate(h->md, data, n);
    } else if (sl_buf_append(&h->mem, data, n)) {
        h->werr = ENOMEM;
        return 0;
    }
    h->bytes += n;
    return n;
}

/* ---- requests ----------------------------------------------------------- */

/* Expands the job's headers and credentials into h (the origin's header list
 * and the one for others). 0 or an sl_err with errbuf set. */
static int build_headers(struct http *h, char *errbuf, size_t errsz)
{
    const struct sl_source *src = h->src;
    char line[8192], err[256] = "";
    int rc = 0;
    static const char ua[] = "User-Agent: sluice/" SLUICE_VERSION;
    if (!(h->own = curl_slist_append(NULL, ua)) || !(h->other = curl_slist_append(NULL, ua)))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < src->nheaders && rc == 0; i++) {
        char *v = sl_env_expand(src->headers[i].value, err, sizeof(err));
        if (!v) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.headers.%s: %s",
                           src->headers[i].name, err);
            break;
        }
        if (strpbrk(v, "\r\n"))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "source.headers.%s: the expanded value has a line break",
                           src->headers[i].name);
        /* "Name;" sends an empty header; "Name:" would remove it */
        else if (snprintf(line, sizeof(line), v[0] ? "%s: %s" : "%s;", src->headers[i].name, v) >=
                 (int)sizeof(line))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.headers.%s: too long",
                           src->headers[i].name);
        else {
            struct curl_slist *l = curl_slist_append(h->own, line);
            if (l)
                h->own = l;
            else
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        }
        explicit_bzero(line, sizeof(line));
        wipe_free(v);
    }
    if (rc == 0 && src->auth_bearer) {
        char *v = sl_env_expand(src->auth_bearer, err, sizeof(err));
        if (!v)
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.auth.bearer: %s", err);
        else if (strpbrk(v, "\r\n"))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "source.auth.bearer: the expanded value has a line break");
        else if (snprintf(line, sizeof(line), "Authorization: Bearer %s", v) >= (int)sizeof(line))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.auth.bearer: too long");
        else {
            struct curl_slist *l = curl_slist_append(h->own, line);
            if (l)
                h->own = l;
            else
                rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        }
        explicit_bzero(line, sizeof(line));
        wipe_free(v);
    }
    if (rc == 0 && src->auth_user) {
        if (!(h->user = sl_env_expand(src->auth_user, err, sizeof(err))))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.auth.basic.user: %s", err);
        else if (!(h->password = sl_env_expand(src->auth_password, err, sizeof(err))))
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.auth.basic.password: %s", err);
    }
    return rc;
}

/* Resets the sink for a new body. */
static int sink_reset(struct http *h, char *errbuf, size_t errsz)
{
    h->bytes = 0;
    h->over = false;
    h->werr = 0;
    h->nerrbody = h->discarded = 0;
    h->errbody[0] = '\0';
    if (h->fd < 0) {
        sl_buf_reset(&h->mem);
        return 0;
    }
    if (ftruncate(h->fd, 0) || lseek(h->fd, 0, SEEK_SET) < 0 ||
        !EVP_DigestInit_ex(h->md, EVP_sha256(), NULL))
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot reset the download file: %s",
                         strerror(errno));
    return 0;
}

/* Why an attempt failed, into errbuf; *rc its sl_err. */
struct fail {
    int rc;
    long retry_after_ms; /* the server's wish, -1 none */
};

/* The error answer's first line, printable, for a message ("" none). */
static const char *errbody_line(struct http *h)
{
    char *p = h->errbody;
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

/* One attempt at url: a GET that follows up to MAX_REDIRECTS redirects,
 * with the job's headers only for the source's origin and the validators
 * (cond) only on the first request. The body goes to the sink. OK with
 * h->status 2xx or 304; RETRY or FAIL with errbuf and f set. what names the
 * request in messages ("https://x/a.csv", "page 3 of https://..."). */
static enum outcome attempt(struct http *h, const char *url, bool cond, const char *what,
                            struct fail *f, char *errbuf, size_t errsz)
{
    const struct sl_source *src = h->src;
    char *cur = strdup(url);
    int64_t deadline = now_ms() + src->timeout * 1000;
    enum outcome out = FAIL;
    f->rc = SL_ERR_INVALID;
    f->retry_after_ms = -1;
    if (!cur) {
        f->rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return FAIL;
    }
    for (int hop = 0;; hop++) {
        char origin[512];
        origin_of(cur, origin, sizeof(origin));
        bool own = origin[0] && !strcmp(origin, h->origin);
        struct curl_slist *cl = NULL, *hdrs = own ? h->own : h->other;
        char line[SL_VALIDATOR_MAX + 32];
        if (cond && hop == 0) {
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
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                break;
            }
            hdrs = cl;
        }
        long left = (long)(deadline - now_ms());
        if (left <= 0) {
            curl_slist_free_all(cl);
            f->rc = sl_seterr(errbuf, errsz, SL_ERR_TIMEOUT,
                              "%s: no answer within source.timeout (%ld s)", what, src->timeout);
            out = RETRY;
            break;
        }
        h->status = 0;
        h->curl_err[0] = '\0';
        h->ctx.refused[0] = '\0';
        curl_easy_setopt(h->c, CURLOPT_URL, cur);
        curl_easy_setopt(h->c, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h->c, CURLOPT_USERNAME, own && h->user ? h->user : NULL);
        curl_easy_setopt(h->c, CURLOPT_PASSWORD, own && h->password ? h->password : NULL);
        curl_easy_setopt(h->c, CURLOPT_HTTPAUTH, own && h->user ? CURLAUTH_BASIC : CURLAUTH_NONE);
        curl_easy_setopt(h->c, CURLOPT_TIMEOUT_MS, left);
        CURLcode rc = curl_easy_perform(h->c);
        curl_slist_free_all(cl);
        free(h->cur_url);
        h->cur_url = cur;
        cur = NULL;
        if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && !ok_status(h->status) && h->status &&
                                !h->werr && !h->over)) {
            if (h->werr) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "%s: cannot store the body: %s", what,
                                  strerror(h->werr));
            } else if (h->over || rc == CURLE_FILESIZE_EXCEEDED) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "%s: larger than %s (%llu bytes)",
                                  what, h->cap_what, (unsigned long long)h->cap_shown);
            } else if (h->ctx.refused[0]) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", what, h->ctx.refused);
            } else {
                bool transient = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
                                 rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_RECV_ERROR ||
                                 rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
                                 rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 ||
                                 rc == CURLE_HTTP2_STREAM || rc == CURLE_SSL_CONNECT_ERROR;
                f->rc = sl_seterr(errbuf, errsz,
                                  rc == CURLE_OPERATION_TIMEDOUT ? SL_ERR_TIMEOUT
                                  : transient                    ? SL_ERR_RETRY
                                                                 : SL_ERR_INVALID,
                                  "%s: %s%s", what, sl_curl_error(rc, &h->ctx, h->curl_err),
                                  rc == CURLE_OPERATION_TIMEDOUT ? " (source.timeout)" : "");
                out = transient ? RETRY : FAIL;
            }
            break;
        }
        long st = h->status;
        if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
            char *loc = NULL;
            curl_easy_getinfo(h->c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                  "%s: HTTP %ld redirect without a Location", what, st);
                break;
            }
            if (hop + 1 > MAX_REDIRECTS) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "%s: more than %d redirects", what,
                                  MAX_REDIRECTS);
                break;
            }
            char lo[512];
            origin_of(loc, lo, sizeof(lo));
            if (strncmp(lo, "http://", 7) && strncmp(lo, "https://", 8)) {
                char shown[256];
                sl_url_redact(loc, shown, sizeof(shown));
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                  "%s: redirect to '%.200s' refused (only http and https)", what,
                                  shown);
                break;
            }
            if (!strncmp(h->cur_url, "https:", 6) && !strncmp(lo, "http://", 7)) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                  "%s: redirect from https to plain http (%s) refused", what, lo);
                break;
            }
            if (!(cur = strdup(loc))) {
                f->rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
                break;
            }
            if ((f->rc = sink_reset(h, errbuf, errsz)) != 0)
                break;
            continue;
        }
        if (ok_status(st) || (st == 304 && cond)) {
            out = OK;
            f->rc = 0;
            break;
        }
        const char *body = errbody_line(h);
        long ra = retry_after_s(h->retry_after);
        bool transient =
            st == 408 || st == 429 || (st >= 500 && st <= 599 && st != 501 && st != 505);
        f->rc = sl_seterr(errbuf, errsz, transient ? SL_ERR_RETRY : SL_ERR_INVALID,
                          "%s: HTTP %ld%s%s%s%.120s%s", what, st, h->reason[0] ? " " : "",
                          h->reason, body[0] ? " (" : "", body, body[0] ? ")" : "");
        if (st == 304)
            sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                      "%s: HTTP 304 Not Modified to a request that asked for no validators", what);
        if (transient && ra >= 0) {
            if (ra > RETRY_AFTER_MAX_S) {
                size_t l = strlen(errbuf);
                snprintf(errbuf + l, errsz - l,
                         "; the server asks to retry after %ld s, longer than sluice waits (%d s)",
                         ra, RETRY_AFTER_MAX_S);
                break;
            }
            f->retry_after_ms = ra * 1000;
        }
        out = transient ? RETRY : FAIL;
        break;
    }
    free(cur);
    return out;
}

/* attempt() with the job's retries: backoff from retry_delay, doubling, a
 * random share of it (full jitter in its upper half), or the server's
 * Retry-After. 0 (h->status 2xx or 304), or the last failure's sl_err. */
static int request(struct http *h, const char *url, bool cond, const char *what, char *errbuf,
                   size_t errsz)
{
    const struct sl_source *src = h->src;
    char msg[1024];
    for (long n = 0;; n++) {
        struct fail f;
        int rc = sink_reset(h, errbuf, errsz);
        if (rc)
            return rc;
        enum outcome o = attempt(h, url, cond, what, &f, msg, sizeof(msg));
        if (o == OK)
            return 0;
        if (o == FAIL || n >= src->retries) {
            if (n > 0 && o == RETRY)
                return sl_seterr(errbuf, errsz, f.rc, "%s (after %ld attempts)", msg, n + 1);
            return sl_seterr(errbuf, errsz, f.rc, "%s", msg);
        }
        long delay = src->retry_delay_ms;
        for (long i = 0; i < n && delay < BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > BACKOFF_MAX_MS)
            delay = BACKOFF_MAX_MS;
        delay = delay / 2 + (delay > 1 ? (long)(rnd32() % (uint32_t)(delay - delay / 2 + 1)) : 0);
        if (f.retry_after_ms >= 0)
            delay = f.retry_after_ms;
        sl_info("fetcher", "%s; retrying in %ld ms (attempt %ld of %ld)", msg, delay, n + 2,
                src->retries + 1);
        msleep(delay);
    }
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
                    if (p + i >= e || hexval((unsigned char)p[i]) < 0)
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

static const char *json_kind(char c)
{
    switch (c) {
    case '{':
        return "an object";
    case '[':
        return "an array";
    case '"':
        return "a string";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        return "a number";
    }
}

/* ---- pages: the assembled document -------------------------------------- */

struct blob {
    int fd;
    EVP_MD_CTX *md;
    uint64_t bytes, cap;
    uint64_t records;
};

static int blob_put(struct blob *b, const char *p, size_t n, char *errbuf, size_t errsz)
{
    if (n > b->cap - b->bytes)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "the pages together are larger than source.max_bytes (%llu bytes)",
                         (unsigned long long)b->cap);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(b->fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot store the pages: %s",
                             strerror(w < 0 ? errno : EIO));
        off += (size_t)w;
    }
    EVP_DigestUpdate(b->md, p, n);
    b->bytes += n;
    return 0;
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
                         what, records ? records : "the page", json_kind(*a),
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
                    what, path, json_kind(*v));
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
    struct blob b = {.fd = h->req->fd, .cap = src->max_bytes};
    char what[400];
    char *next = NULL;     /* the URL of the next page */
    uint64_t *seen = NULL; /* hashes of the cursors or links followed */
    long page_no = pg->start, offset = pg->start;
    int rc = 0;
    if (!(b.md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(b.md, EVP_sha256(), NULL) ||
        !(seen = calloc((size_t)pg->max_pages + 1, sizeof(*seen)))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = blob_frame(&b, records, true, errbuf, errsz)))
        goto out;
    h->fd = -1; /* pages go to memory first */
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
        uint64_t left = src->max_bytes - b.bytes;
        h->cap = left < PAGE_MAX ? left : PAGE_MAX;
        h->cap_what = left < PAGE_MAX ? "source.max_bytes for all pages together" : "a page may be";
        h->cap_shown = left < PAGE_MAX ? src->max_bytes : PAGE_MAX;
        if ((rc = request(h, next, false, what, errbuf, errsz)))
            goto out;
        res->pages++;
        res->status = h->status;
        const char *p = h->mem.data ? h->mem.data : "", *e = p + h->mem.len;
        const char *ve = scan_value(p, e, 0);
        if (!ve || ws(ve, e) != e) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_PARSE, "%s: the page is not valid JSON%s%.60s",
                           what, h->content_type[0] ? " (content type " : "",
                           h->content_type[0] ? h->content_type : "");
            if (h->content_type[0]) {
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
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(b.md, dig, &dl);
    sl_hex(dig, 32, res->sha256);
    res->bytes = b.bytes;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    char base[256];
    name_from_url(h->req->url, base, sizeof(base));
    size_t bl = strlen(base);
    if (!bl)
        snprintf(res->file_name, sizeof(res->file_name), "pages.json");
    else if (bl >= 5 && !strcasecmp(base + bl - 5, ".json"))
        snprintf(res->file_name, sizeof(res->file_name), "%s", base);
    else
        snprintf(res->file_name, sizeof(res->file_name), "%.200s.json", base);
    sl_info("fetcher", "%s: %u pages, %llu records, %llu bytes", h->req->shown, res->pages,
            (unsigned long long)b.records, (unsigned long long)b.bytes);
out:
    free(next);
    free(seen);
    EVP_MD_CTX_free(b.md);
    return rc;
}

/* ---- the source --------------------------------------------------------- */

static int fetch_one(struct http *h, struct sl_fetch_res *res, char *errbuf, size_t errsz)
{
    const struct sl_fetch_req *req = h->req;
    bool cond = (req->etag && req->etag[0]) || (req->last_modified && req->last_modified[0]);
    h->fd = req->fd;
    h->cap = h->cap_shown = h->src->max_bytes;
    h->cap_what = "source.max_bytes";
    if (!(h->md = EVP_MD_CTX_new()))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    int rc = request(h, req->url, cond, req->shown, errbuf, errsz);
    if (rc)
        return rc;
    res->status = h->status;
    res->pages = 1;
    if (h->status == 304) {
        res->not_modified = true;
        snprintf(res->etag, sizeof(res->etag), "%s", req->etag ? req->etag : "");
        snprintf(res->last_modified, sizeof(res->last_modified), "%s",
                 req->last_modified ? req->last_modified : "");
        return 0;
    }
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(h->md, dig, &dl);
    sl_hex(dig, 32, res->sha256);
    res->bytes = h->bytes;
    memcpy(res->etag, h->etag, sizeof(res->etag));
    memcpy(res->last_modified, h->last_modified, sizeof(res->last_modified));
    memcpy(res->content_type, h->content_type, sizeof(res->content_type));
    if (h->disposition[0])
        name_from_disposition(h->disposition, res->file_name, sizeof(res->file_name));
    if (!res->file_name[0])
        name_from_url(h->cur_url ? h->cur_url : req->url, res->file_name, sizeof(res->file_name));
    if (!res->file_name[0] && h->cur_url)
        name_from_url(req->url, res->file_name, sizeof(res->file_name));
    return 0;
}

static int http_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                      size_t errsz)
{
    struct http h = {.req = req, .src = req->src, .fd = -1};
    memset(res, 0, sizeof(*res));
    sl_buf_init(&h.mem);
    h.ctx.guard = req->guard;
    int rc = 0;
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
        .max_bytes = req->src->pag.type ? 0 : req->src->max_bytes,
    };
    if ((rc = sl_curl_setup(h.c, &o, &h.ctx, errbuf, errsz)) ||
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
    rc = req->src->pag.type ? fetch_pages(&h, res, errbuf, errsz)
                            : fetch_one(&h, res, errbuf, errsz);
out:
    if (h.c) {
        /* libcurl keeps copies of the credentials in the handle until here */
        curl_easy_setopt(h.c, CURLOPT_USERNAME, NULL);
        curl_easy_setopt(h.c, CURLOPT_PASSWORD, NULL);
        curl_easy_cleanup(h.c);
    }
    curl_slist_free_all(h.own);
    curl_slist_free_all(h.other);
    wipe_free(h.user);
    wipe_free(h.password);
    free(h.cur_url);
    free(h.link_next);
    EVP_MD_CTX_free(h.md);
    sl_buf_cleanup(&h.mem);
    return rc;
}

static const char *const http_schemes[] = {"http", "https", NULL};

const struct sl_source_ops sl_source_http = {
    .name = "http",
    .schemes = http_schemes,
    .fetch = http_fetch,
};
