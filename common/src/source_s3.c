/*
 * S3 sources (source.h): s3://bucket/key, one GET signed with AWS Signature
 * Version 4 by libcurl (CURLOPT_AWS_SIGV4), over libcurl.
 *
 * The object is read from AWS (https://bucket.s3.REGION.amazonaws.com/key,
 * or path-style https://s3.REGION.amazonaws.com/bucket/key for buckets with
 * dots) or from an S3-compatible store at source.s3.endpoint (MinIO, Ceph,
 * ...: path-style, http://host:port/bucket/key, unless path_style is false).
 * The key is taken literally (as the AWS CLI does) and percent-encoded here
 * the way SigV4 canonicalizes it, so what is signed is what is sent. The
 * request carries x-amz-content-sha256 (the hash of the empty body), which S3
 * requires and libcurl 7.88 does not add, and x-amz-security-token with
 * temporary credentials.
 *
 * Credentials: source.s3.access_key_id and secret_access_key, by default
 * ${env:AWS_ACCESS_KEY_ID} and ${env:AWS_SECRET_ACCESS_KEY} (with
 * $AWS_SESSION_TOKEN when set), expanded just before the request and wiped
 * after it, never in a message. Region: source.s3.region, else $AWS_REGION,
 * $AWS_DEFAULT_REGION, else us-east-1.
 *
 * Like HTTP sources: the body streams into the fd, hashed, within
 * source.max_bytes; a timeout, a lost connection, 429, 500, 502, 503 and 504
 * are retried with backoff and jitter; an ETag from the last successful run
 * makes the GET conditional (If-None-Match) and 304 ends the run as not
 * modified. Failures name S3's error code and message (NoSuchKey,
 * SignatureDoesNotMatch, InvalidAccessKeyId, a redirect to the bucket's
 * region). Every connection passes the SSRF guard (sl_curl_setup); no
 * redirect is followed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

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

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3 {
    const struct sl_fetch_req *req;
    const struct sl_source *src;
    CURL *c;
    struct sl_curl_ctx ctx;
    char curl_err[CURL_ERROR_SIZE];
    struct curl_slist *hdrs;
    char *akid, *secret, *token, *endpoint; /* expanded (wiped after) */
    char *ca_file;                          /* source.tls.ca_file, expanded; NULL: none */
    char region[64];
    char *url;                  /* the request's */
    struct sl_source_head head; /* the response */
    char bucket_region[64];
    struct sl_source_body body; /* into req->fd, hashed, within source.max_bytes */
};

/* ---- small helpers ------------------------------------------------------ */

/* sl_source_expand(), and a value with a line break is refused (it goes
 * into a header). */
static int expand(const char *s, const char *def, const char *field, char **out, char *errbuf,
                  size_t errsz)
{
    int rc = sl_source_expand(s, def, field, out, errbuf, errsz);
    if (rc == 0 && *out && strpbrk(*out, "\r\n"))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the value has a line break", field);
    return rc;
}

/* The text of <tag> in the XML error answer body into out ("" none). */
static void xml_text(const char *body, const char *tag, char *out, size_t n)
{
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *s = strstr(body, open), *e = s ? strstr(s, close) : NULL;
    out[0] = '\0';
    if (s && e)
        sl_source_copy_value(out, n, s + strlen(open), (size_t)(e - s - strlen(open)));
}

/* ---- libcurl callbacks -------------------------------------------------- */

static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    struct s3 *x = ud;
    size_t n = size * nitems, vl = 0;
    const char *v;
    if (sl_source_head_line(&x->head, line, n))
        x->bucket_region[0] = '\0';
    else if ((v = sl_source_header(line, n, "x-amz-bucket-region", &vl)))
        sl_source_copy_value(x->bucket_region, sizeof(x->bucket_region), v, vl);
    return n;
}

/* A 2xx answer's body into the file, any other's kept for the message. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct s3 *x = ud;
    long st = x->head.status;
    return st >= 200 && st <= 299 ? sl_source_body_put(&x->body, data, size * nmemb)
                                  : sl_source_body_error(&x->body, data, size * nmemb);
}

/* ---- the request -------------------------------------------------------- */

/* The bucket and key of s3://bucket/key (borrowed into url), 0 or
 * SL_ERR_INVALID. */
static int split_url(const char *url, const char **bucket, size_t *bl, const char **key,
                     const char *shown, char *errbuf, size_t errsz)
{
    if (strncasecmp(url, "s3://", 5))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: not an s3:// URL", shown);
    *bucket = url + 5;
    *bl = strcspn(*bucket, "/");
    *key = (*bucket)[*bl] ? *bucket + *bl + 1 : "";
    if (*bl == 0 || *bl > 255 ||
        strspn(*bucket, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != *bl)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the bucket name must be letters, digits, '.', '-' or '_'", shown);
    if (!**key)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: names no object (s3://bucket/key)",
                         shown);
    if (strpbrk(*key, "\r\n"))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the key has a line break", shown);
    return 0;
}

/* key percent-encoded as SigV4 canonicalizes an S3 path: every byte but
 * A-Z a-z 0-9 - . _ ~ and '/' as %XX. A new string (free), or NULL. */
static char *encode_key(const char *key)
{
    size_t n = strlen(key);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (isalnum(*p) || strchr("-._~/", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return out;
}

/* The request URL into x->url. */
static int build_url(struct s3 *x, const char *bucket, size_t bl, const char *key, char *errbuf,
                     size_t errsz)
{
    int ps = x->src->s3.path_style;
    char *ek = encode_key(key);
    struct sl_buf u = SL_BUF_INIT;
    int rc = 0;
    if (!ek)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    if (ps < 0)
        ps = x->endpoint || memchr(bucket, '.', bl) ? 1 : 0;
    if (x->endpoint) {
        size_t el = strlen(x->endpoint);
        while (el && x->endpoint[el - 1] == '/')
            el--;
        const char *host = strstr(x->endpoint, "://");
        if (!host ||
            (strncasecmp(x->endpoint, "http://", 7) && strncasecmp(x->endpoint, "https://", 8))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "source.s3.endpoint: not an http:// or https:// URL");
            goto out;
        }
        host += 3;
        if (ps)
            rc = sl_buf_printf(&u, "%.*s/%.*s/%s", (int)el, x->endpoint, (int)bl, bucket, ek);
        else
            rc = sl_buf_printf(&u, "%.*s%.*s.%.*s/%s", (int)(host - x->endpoint), x->endpoint,
                               (int)bl, bucket, (int)(el - (size_t)(host - x->endpoint)), host, ek);
    } else if (ps) {
        rc = sl_buf_printf(&u, "https://s3.%s.amazonaws.com/%.*s/%s", x->region, (int)bl, bucket,
                           ek);
    } else {
        rc = sl_buf_printf(&u, "https://%.*s.s3.%s.amazonaws.com/%s", (int)bl, bucket, x->region,
                           ek);
    }
    if (rc)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    else
        x->url = sl_buf_steal(&u);
out:
    free(ek);
    sl_buf_cleanup(&u);
    return rc;
}

static int setup(struct s3 *x, char *errbuf, size_t errsz)
{
    const struct sl_source_s3 *o3 = &x->src->s3;
    const char *bucket = NULL, *key = NULL;
    size_t bl = 0;
    char *region = NULL;
    int rc;
    if ((rc = split_url(x->req->url, &bucket, &bl, &key, x->req->shown, errbuf, errsz)))
        return rc;
    const char *def_region = getenv("AWS_REGION");
    if (!def_region || !def_region[0])
        def_region = getenv("AWS_DEFAULT_REGION");
    if (!o3->region && def_region && def_region[0])
        region = strdup(def_region);
    else if ((rc = expand(o3->region, "us-east-1", "source.s3.region", &region, errbuf, errsz)))
        return rc;
    if (!region)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    size_t rl = strlen(region);
    bool region_ok = rl > 0 && rl < sizeof(x->region) &&
                     strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") == rl;
    snprintf(x->region, sizeof(x->region), "%s", region);
    free(region);
    if (!region_ok)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "source.s3.region: '%.60s' is not a region like eu-central-1", x->region);
    bool default_keys = !o3->access_key_id;
    if ((rc = expand(o3->endpoint, NULL, "source.s3.endpoint", &x->endpoint, errbuf, errsz)) ||
        (rc = expand(o3->access_key_id, "${env:AWS_ACCESS_KEY_ID}", "source.s3.access_key_id",
                     &x->akid, errbuf, errsz)) ||
        (rc = expand(o3->secret_access_key, "${env:AWS_SECRET_ACCESS_KEY}",
                     "source.s3.secret_access_key", &x->secret, errbuf, errsz)))
        return rc;
    if (o3->session_token) {
        if ((rc = expand(o3->session_token, NULL, "source.s3.session_token", &x->token, errbuf,
                         errsz)))
            return rc;
    } else if (default_keys && getenv("AWS_SESSION_TOKEN") && getenv("AWS_SESSION_TOKEN")[0]) {
        if ((rc = expand("${env:AWS_SESSION_TOKEN}", NULL, "AWS_SESSION_TOKEN", &x->token, errbuf,
                         errsz)))
            return rc;
    }
    if (!x->akid[0] || strchr(x->akid, '/') || strchr(x->akid, ':'))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "source.s3.access_key_id: %s (an access key id has no '/' or ':')",
                         x->akid[0] ? "not an access key id" : "empty");
    if (!x->secret[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "source.s3.secret_access_key: empty");
    if ((rc = build_url(x, bucket, bl, key, errbuf, errsz)))
        return rc;

    struct sl_curl_opts co = {
        .protocols = "http,https",
        .follow = false,
        .connect_timeout = x->src->connect_timeout,
        .timeout = x->src->timeout,
        .max_bytes = x->src->max_bytes,
    };
    if (!(x->c = curl_easy_init()))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot create a libcurl handle");
    if ((rc = sl_curl_setup(x->c, &co, &x->ctx, errbuf, errsz)) ||
        (rc = sl_source_ca_file(x->c, x->src, &x->ca_file, errbuf, errsz)))
        return rc;
    char line[SL_VALIDATOR_MAX + 64], sigv4[128];
    struct curl_slist *l = curl_slist_append(NULL, "x-amz-content-sha256: " EMPTY_SHA256);
    if (l && x->token) {
        char *t = malloc(strlen(x->token) + 32);
        if (t) {
            sprintf(t, "x-amz-security-token: %s", x->token);
            struct curl_slist *l2 = curl_slist_append(l, t);
            explicit_bzero(t, strlen(t));
            free(t);
            l = l2 ? l2 : (curl_slist_free_all(l), NULL);
        } else {
            curl_slist_free_all(l);
            l = NULL;
        }
    }
    if (l && x->req->etag && x->req->etag[0]) {
        snprintf(line, sizeof(line), "If-None-Match: %s", x->req->etag);
        struct curl_slist *l2 = curl_slist_append(l, line);
        l = l2 ? l2 : (curl_slist_free_all(l), NULL);
    }
    if (!l)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    x->hdrs = l;
    snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:s3", x->region);
    curl_easy_setopt(x->c, CURLOPT_URL, x->url);
    curl_easy_setopt(x->c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->c, CURLOPT_USERNAME, x->akid);
    curl_easy_setopt(x->c, CURLOPT_PASSWORD, x->secret);
    curl_easy_setopt(x->c, CURLOPT_USERAGENT, "sluice/" SLUICE_VERSION);
    if ((rc = (int)curl_easy_setopt(x->c, CURLOPT_AWS_SIGV4, sigv4)) != CURLE_OK)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: libcurl cannot sign for AWS: %s",
                         x->req->shown, curl_easy_strerror((CURLcode)rc));
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(x->c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->c, CURLOPT_LOW_SPEED_TIME, 60L);
    return 0;
}

/* What an S3 error code asks the user to check. */
static const char *hint(const char *code)
{
    if (!strcmp(code, "SignatureDoesNotMatch"))
        return " (check source.s3.secret_access_key)";
    if (!strcmp(code, "InvalidAccessKeyId"))
        return " (check source.s3.access_key_id)";
    if (!strcmp(code, "AuthorizationHeaderMalformed"))
        return " (check source.s3.region)";
    if (!strcmp(code, "NoSuchKey"))
        return " (no such object in the bucket)";
    if (!strcmp(code, "NoSuchBucket"))
        return " (no such bucket)";
    if (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken"))
        return " (check source.s3.session_token)";
    if (!strcmp(code, "RequestTimeTooSkewed"))
        return " (the fetcher's clock is off)";
    return "";
}

/* One attempt (sl_source_attempt_fn of a struct s3): 0 with status 2xx, or
 * 304 to a conditional request. */
static int attempt(void *ud, bool *transient, long *wait_ms, char *errbuf, size_t errsz)
{
    struct s3 *x = ud;
    const char *shown = x->req->shown;
    bool cond = x->req->etag && x->req->etag[0];
    int rrc;
    x->head.status = 0;
    x->curl_err[0] = x->ctx.refused[0] = '\0';
    if ((rrc = sl_source_body_reset(&x->body, "the download file", errbuf, errsz)))
        return rrc;
    CURLcode rc = curl_easy_perform(x->c);
    long st = x->head.status;
    bool http_err =
        rc == CURLE_WRITE_ERROR && st && (st < 200 || st > 299) && !x->body.werr && !x->body.over;
    if (rc != CURLE_OK && !http_err) {
        if ((rrc = sl_source_local_failure(&x->body, &x->ctx, rc, shown, "object",
                                           "source.max_bytes", x->src->max_bytes, errbuf, errsz)))
            return rrc;
        return sl_source_curl_failure(rc, &x->ctx, x->curl_err, shown, transient, errbuf, errsz);
    }
    if ((st >= 200 && st <= 299) || (st == 304 && cond))
        return 0;
    char code[64], text[256];
    xml_text(x->body.errbody, "Code", code, sizeof(code));
    xml_text(x->body.errbody, "Message", text, sizeof(text));
    if (st >= 300 && st <= 399) {
        char where[128] = "";
        if (x->bucket_region[0])
            snprintf(where, sizeof(where), ": the bucket is in %s, set source.s3.region to it",
                     x->bucket_region);
        else
            snprintf(where, sizeof(where), ": check source.s3.region and source.s3.endpoint");
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: HTTP %ld %s%s%s", shown, st,
                         code[0] ? code : x->head.reason, text[0] ? " " : "", where);
    }
    *transient = st == 429 || st == 500 || st == 502 || st == 503 || st == 504 ||
                 !strcmp(code, "RequestTimeout") || !strcmp(code, "SlowDown");
    return sl_seterr(errbuf, errsz,
                     *transient  ? SL_ERR_RETRY
                     : st == 404 ? SL_ERR_NOTFOUND
                                 : SL_ERR_INVALID,
                     "%s: HTTP %ld %s%s%s%s%s", shown, st, code[0] ? code : x->head.reason,
                     text[0] ? " (" : "", text, text[0] ? ")" : "", hint(code));
}

static int s3_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                    size_t errsz)
{
    struct s3 x = {.req = req, .src = req->src};
    int rc;
    memset(res, 0, sizeof(*res));
    x.ctx.guard = req->guard;
    if (sl_source_body_init(&x.body, req->fd, true, req->src->max_bytes)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = setup(&x, errbuf, errsz)) ||
        (rc = sl_source_attempts(x.src, attempt, &x, errbuf, errsz)))
        goto out;
    res->status = x.head.status;
    res->pages = 1;
    if (x.head.status == 304) {
        res->not_modified = true;
        snprintf(res->etag, sizeof(res->etag), "%s", req->etag);
        snprintf(res->not_modified_why, sizeof(res->not_modified_why), "S3 304 Not Modified");
        goto out;
    }
    sl_source_body_result(&x.body, res);
    sl_source_head_result(&x.head, res);
    const char *key = strchr(req->url + 5, '/'); /* the key's last segment, taken literally */
    if (key)
        sl_source_plain_name(key + 1, strlen(key + 1), res->file_name, sizeof(res->file_name));
out:
    sl_source_curl_free(x.c);
    curl_slist_free_all(x.hdrs); /* may hold the session token */
    sl_source_wipe_free(x.akid);
    sl_source_wipe_free(x.secret);
    sl_source_wipe_free(x.token);
    sl_source_wipe_free(x.endpoint);
    free(x.ca_file);
    free(x.url);
    sl_source_body_cleanup(&x.body);
    return rc;
}

static const char *const s3_schemes[] = {"s3", NULL};

const struct sl_source_ops sl_source_s3 = {
    .name = "s3",
    .schemes = s3_schemes,
    .fetch = s3_fetch,
};
