/*
 * What the remote sources share (source.h, "for source implementations").
 *
 * Each source_*.c speaks its own protocol; the rest is the same for all and
 * lives here once: secrets expanded at use and wiped after it, the retry
 * loop with its backoff and jitter, the body writer that streams a transfer
 * into the run's file (SHA-256, size cap) or into memory, plain file names
 * from URLs and attachment names, and the header lines of an HTTP response
 * (http and s3). The messages are the sources' own: these helpers name what
 * the caller tells them to.
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

#include <openssl/evp.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/source.h"
#include "sluice/util.h"

#define BACKOFF_MAX_MS 60000
#define DISCARD_MAX    65536 /* bytes of an error answer read at all */
#define NAME_MAX_BYTES 200   /* of a plain file name */

/* ---- secrets ------------------------------------------------------------ */

void sl_source_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

int sl_source_expand(const char *s, const char *def, const char *field, char **out, char *errbuf,
                     size_t errsz)
{
    char err[256] = "";
    *out = NULL;
    if (!s && !def)
        return 0;
    if (!(*out = sl_env_expand(s ? s : def, err, sizeof(err))))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s%s%s%s", field, err,
                         s ? "" : " (the default is ", s ? "" : def, s ? "" : ")");
    return 0;
}

/* ---- retries ------------------------------------------------------------ */

bool sl_source_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_FTP_ACCEPT_TIMEOUT:
    case CURLE_FTP_CANT_GET_HOST:
    case CURLE_FTP_WEIRD_PASV_REPLY:
    case CURLE_FTP_WEIRD_227_FORMAT:
        return true;
    default:
        return false;
    }
}

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

long sl_source_backoff_ms(long first_ms, long n)
{
    long delay = first_ms;
    for (long i = 0; i < n && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)time(NULL) * 2654435761u;
    return delay / 2 + (delay > 1 ? (long)(r % (uint32_t)(delay - delay / 2 + 1)) : 0);
}

int sl_source_attempts(const struct sl_source *src, sl_source_attempt_fn attempt, void *ud,
                       char *errbuf, size_t errsz)
{
    char msg[1024];
    for (long n = 0;; n++) {
        bool transient = false;
        long wait_ms = -1;
        msg[0] = '\0';
        int rc = attempt(ud, &transient, &wait_ms, msg, sizeof(msg));
        if (rc == 0)
            return 0;
        if (!transient || n >= src->retries) {
            if (n > 0 && transient)
                return sl_seterr(errbuf, errsz, rc, "%s (after %ld attempts)", msg, n + 1);
            return sl_seterr(errbuf, errsz, rc, "%s", msg);
        }
        long delay = wait_ms >= 0 ? wait_ms : sl_source_backoff_ms(src->retry_delay_ms, n);
        sl_info("fetcher", "%s; retrying in %ld ms (attempt %ld of %ld)", msg, delay, n + 2,
                src->retries + 1);
        msleep(delay);
    }
}

/* ---- file names --------------------------------------------------------- */

void sl_source_plain_name(const char *s, size_t n, char *out, size_t sz)
{
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '/' || s[i - 1] == '\\') {
            s += i;
            n -= i;
            break;
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < sz && o < NAME_MAX_BYTES; i++) {
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

size_t sl_source_pct_decode(const char *s, size_t n, char *out, size_t sz)
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

void sl_source_name_from_url(const char *url, char *out, size_t sz)
{
    CURLU *u = curl_url();
    char *path = NULL;
    out[0] = '\0';
    if (u && !curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) &&
        !curl_url_get(u, CURLUPART_PATH, &path, 0)) {
        const char *seg = strrchr(path, '/');
        seg = seg ? seg + 1 : path;
        char raw[512];
        size_t n = sl_source_pct_decode(seg, strlen(seg), raw, sizeof(raw));
        if (sl_utf8_valid(raw, n))
            sl_source_plain_name(raw, n, out, sz);
    }
    curl_free(path);
    curl_url_cleanup(u);
}

/* ---- HTTP response headers ---------------------------------------------- */

void sl_source_copy_value(char *out, size_t sz, const char *v, size_t n)
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

const char *sl_source_header(const char *line, size_t n, const char *name, size_t *vl)
{
    const char *colon = memchr(line, ':', n);
    size_t kl = strlen(name);
    if (!colon || (size_t)(colon - line) != kl || strncasecmp(line, name, kl))
        return NULL;
    *vl = n - kl - 1;
    return colon + 1;
}

bool sl_source_head_line(struct sl_source_head *hd, const char *line, size_t n)
{
    if (n >= 5 && !strncmp(line, "HTTP/", 5)) {
        hd->status = 0;
        hd->reason[0] = hd->etag[0] = hd->last_modified[0] = hd->content_type[0] = '\0';
        const char *sp = memchr(line, ' ', n);
        if (sp) {
            hd->status = strtol(sp + 1, NULL, 10);
            const char *rs = memchr(sp + 1, ' ', n - (size_t)(sp + 1 - line));
            if (rs)
                sl_source_copy_value(hd->reason, sizeof(hd->reason), rs + 1,
                                     n - (size_t)(rs + 1 - line));
        }
        return true;
    }
    size_t vl = 0;
    const char *v;
    /* a validator too long to keep whole is not kept at all */
    if ((v = sl_source_header(line, n, "etag", &vl))) {
        if (vl < sizeof(hd->etag))
            sl_source_copy_value(hd->etag, sizeof(hd->etag), v, vl);
    } else if ((v = sl_source_header(line, n, "last-modified", &vl))) {
        if (vl < sizeof(hd->last_modified))
            sl_source_copy_value(hd->last_modified, sizeof(hd->last_modified), v, vl);
    } else if ((v = sl_source_header(line, n, "content-type", &vl))) {
        sl_source_copy_value(hd->content_type, sizeof(hd->content_type), v, vl);
    }
    return false;
}

void sl_source_head_result(const struct sl_source_head *hd, struct sl_fetch_res *res)
{
    memcpy(res->etag, hd->etag, sizeof(res->etag));
    memcpy(res->last_modified, hd->last_modified, sizeof(res->last_modified));
    memcpy(res->content_type, hd->content_type, sizeof(res->content_type));
}

/* ---- the body ----------------------------------------------------------- */

int sl_source_body_init(struct sl_source_body *b, int fd, bool hash, uint64_t cap)
{
    memset(b, 0, sizeof(*b));
    b->fd = fd;
    b->cap = cap;
    sl_buf_init(&b->mem);
    if (hash && fd >= 0 &&
        (!(b->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(b->md, EVP_sha256(), NULL)))
        return SL_ERR_NOMEM;
    return 0;
}

void sl_source_body_cleanup(struct sl_source_body *b)
{
    EVP_MD_CTX_free(b->md);
    b->md = NULL;
    sl_buf_cleanup(&b->mem);
}

int sl_source_body_reset(struct sl_source_body *b, const char *what, char *errbuf, size_t errsz)
{
    b->bytes = 0;
    b->over = false;
    b->werr = 0;
    b->nerrbody = b->discarded = 0;
    b->errbody[0] = '\0';
    if (b->fd < 0) {
        sl_buf_reset(&b->mem);
        return 0;
    }
    if (ftruncate(b->fd, 0) || lseek(b->fd, 0, SEEK_SET) < 0 ||
        (b->md && !EVP_DigestInit_ex(b->md, EVP_sha256(), NULL)))
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot reset %s: %s", what, strerror(errno));
    return 0;
}

size_t sl_source_body_put(struct sl_source_body *b, const char *data, size_t n)
{
    if (n > b->cap - b->bytes) {
        b->over = true;
        return 0;
    }
    if (b->fd >= 0) {
        for (size_t off = 0; off < n;) {
            ssize_t w = write(b->fd, data + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                b->werr = w < 0 ? errno : EIO;
                return 0;
            }
            off += (size_t)w;
        }
        if (b->md)
            EVP_DigestUpdate(b->md, data, n);
    } else if (sl_buf_append(&b->mem, data, n)) {
        b->werr = ENOMEM;
        return 0;
    }
    b->bytes += n;
    return n;
}

size_t sl_source_body_write(char *data, size_t size, size_t nmemb, void *body)
{
    return sl_source_body_put(body, data, size * nmemb);
}

size_t sl_source_body_error(struct sl_source_body *b, const char *data, size_t n)
{
    size_t room = SL_SOURCE_ERRBODY_MAX - b->nerrbody, k = room < n ? room : n;
    memcpy(b->errbody + b->nerrbody, data, k);
    b->nerrbody += k;
    b->errbody[b->nerrbody] = '\0';
    b->discarded += n;
    return b->discarded > DISCARD_MAX ? 0 : n;
}

void sl_source_body_result(struct sl_source_body *b, struct sl_fetch_res *res)
{
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (b->md && EVP_DigestFinal_ex(b->md, dig, &dl) && dl == 32)
        sl_hex(dig, 32, res->sha256);
    res->bytes = b->bytes;
}

/* ---- libcurl ------------------------------------------------------------ */

int sl_source_local_failure(const struct sl_source_body *b, const struct sl_curl_ctx *ctx,
                            CURLcode rc, const char *what, const char *stored, const char *limit,
                            uint64_t limit_bytes, char *errbuf, size_t errsz)
{
    if (b->werr)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "%s: cannot store the %s: %s", what, stored,
                         strerror(b->werr));
    if (b->over || rc == CURLE_FILESIZE_EXCEEDED)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT, "%s: larger than %s (%llu bytes)", what,
                         limit, (unsigned long long)limit_bytes);
    if (ctx->refused[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", what, ctx->refused);
    return 0;
}

int sl_source_curl_failure(CURLcode rc, const struct sl_curl_ctx *ctx, const char *curl_err,
                           const char *what, bool *transient, char *errbuf, size_t errsz)
{
    if (rc == CURLE_PEER_FAILED_VERIFICATION) {
        const char *why = sl_curl_error(rc, ctx, curl_err);
        bool issuer = strstr(why, "issuer") || strstr(why, "self-signed") ||
                      strstr(why, "self signed") || strstr(why, "unknown ca");
        *transient = false;
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server's TLS certificate was not accepted: %s%s", what, why,
                         issuer ? " (a certificate of a private CA needs its CA in "
                                  "source.tls.ca_file)"
                                : "");
    }
    if (rc == CURLE_SSL_CACERT_BADFILE) {
        *transient = false;
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the CA certificates (source.tls.ca_file) cannot be used: %s", what,
                         sl_curl_error(rc, ctx, curl_err));
    }
    bool timeout = rc == CURLE_OPERATION_TIMEDOUT;
    *transient = sl_source_transient(rc);
    return sl_seterr(errbuf, errsz,
                     timeout      ? SL_ERR_TIMEOUT
                     : *transient ? SL_ERR_RETRY
                                  : SL_ERR_INVALID,
                     "%s: %s%s", what, sl_curl_error(rc, ctx, curl_err),
                     timeout ? " (source.timeout)" : "");
}

int sl_source_ca_file(CURL *c, const struct sl_source *src, char **out, char *errbuf, size_t errsz)
{
    const char *field = src->ca_file_field ? src->ca_file_field : "source.tls.ca_file";
    int rc = sl_source_expand(src->ca_file, NULL, field, out, errbuf, errsz);
    if (rc || !*out)
        return rc;
    if (access(*out, R_OK))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: cannot read %s: %s", field, *out,
                         strerror(errno));
    CURLcode crc = curl_easy_setopt(c, CURLOPT_CAINFO, *out);
    if (crc != CURLE_OK)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", field, curl_easy_strerror(crc));
    return 0;
}

void sl_source_curl_free(CURL *c)
{
    if (!c)
        return;
    /* libcurl keeps copies of the credentials in the handle until here */
    curl_easy_setopt(c, CURLOPT_USERNAME, NULL);
    curl_easy_setopt(c, CURLOPT_PASSWORD, NULL);
    curl_easy_setopt(c, CURLOPT_KEYPASSWD, NULL);
    curl_easy_cleanup(c);
}
