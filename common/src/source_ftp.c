/*
 * FTP, FTPS and SFTP sources (source.h), over libcurl.
 *
 * A fetch is one download of the file the URL names, streamed into the fd
 * while it is hashed and counted against source.max_bytes, retried with
 * backoff and jitter after a timeout or a lost connection, never after a
 * refused login or a missing file. Every connection passes the SSRF guard
 * (sl_curl_setup), the FTP data connection too: FTP runs passive (EPSV, then
 * PASV) and libcurl opens the data connection to the control connection's
 * address, whatever address a PASV answer names, through the same guarded
 * socket callback.
 *
 * FTP: anonymous, or the user of source.auth.basic (or of the URL);
 * source.ftp.tls requires explicit TLS (AUTH TLS) for the login and the data,
 * verified against the system's CAs or source.ftp.ca_file.
 *
 * SFTP: public-key (source.sftp.private_key, with an optional passphrase) or
 * password auth. The server's host key must be known before anything is
 * sent: it is checked against source.sftp.known_hosts (default
 * ~/.ssh/known_hosts) and/or pinned by source.sftp.host_key_sha256; an
 * unknown or changed key fails the run with the key's fingerprint, and with
 * neither a known_hosts file nor a pin the run fails rather than trust the
 * first key it sees.
 *
 * ${env:NAME} in the URL, the credentials and the sftp options is expanded
 * just before the transfer and wiped after it; messages name the URL as
 * written (user information hidden).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/source.h"
#include "sluice/util.h"

#define BACKOFF_MAX_MS 60000

/* One fetch: the handle, the expanded settings, the sink. */
struct xfer {
    const struct sl_fetch_req *req;
    const struct sl_source *src;
    bool sftp;
    CURL *c;
    struct sl_curl_ctx ctx;
    char curl_err[CURL_ERROR_SIZE];
    char hostkey[400]; /* why the SSH host key was refused, "" none */
    /* expanded at use (wiped after) */
    char *user, *password, *passphrase;
    char *known_hosts, *private_key, *public_key, *ca_file;
    /* the sink */
    int fd;
    EVP_MD_CTX *md;
    uint64_t bytes;
    bool over; /* passed source.max_bytes */
    int werr;  /* errno of a failed write, 0 none */
};

/* ---- small helpers ------------------------------------------------------ */

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* The wait before retry n+1 (n from 0): retry_delay doubling up to a
 * minute, a random time between half and all of it. */
static long backoff_ms(long first, long n)
{
    long delay = first;
    for (long i = 0; i < n && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)time(NULL) * 2654435761u;
    return delay / 2 + (delay > 1 ? (long)(r % (uint32_t)(delay - delay / 2 + 1)) : 0);
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Expands the option s (may be NULL) of field into *out. 0, or
 * SL_ERR_INVALID naming the field. */
static int expand(const char *s, const char *field, char **out, char *errbuf, size_t errsz)
{
    char err[256] = "";
    *out = NULL;
    if (!s)
        return 0;
    if (!(*out = sl_env_expand(s, err, sizeof(err))))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", field, err);
    return 0;
}

/* The last path segment of url, percent-decoded, as a plain file name (no
 * control characters, no leading dots, valid UTF-8) into out ("" none). */
static void name_from_url(const char *url, char *out, size_t sz)
{
    CURLU *u = curl_url();
    char *path = NULL;
    out[0] = '\0';
    if (u && !curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) &&
        !curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE)) {
        const char *seg = strrchr(path, '/');
        seg = seg ? seg + 1 : path;
        size_t o = 0;
        for (; *seg && o + 1 < sz && o < 200; seg++) {
            unsigned char c = (unsigned char)*seg;
            if (c < 0x20 || c == 0x7f || c == '\\' || ((c == '.' || c == ' ') && o == 0))
                continue;
            out[o++] = (char)c;
        }
        while (o && !sl_utf8_valid(out, o))
            o--;
        out[o] = '\0';
    }
    curl_free(path);
    curl_url_cleanup(u);
}

/* ---- libcurl callbacks -------------------------------------------------- */

static size_t on_data(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (n > x->src->max_bytes - x->bytes) {
        x->over = true;
        return 0;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(x->fd, data + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            x->werr = w < 0 ? errno : EIO;
            return 0;
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(x->md, data, n);
    x->bytes += n;
    return n;
}

static const char *key_type(enum curl_khtype t)
{
    switch (t) {
    case CURLKHTYPE_RSA1:
        return "RSA1";
    case CURLKHTYPE_RSA:
        return "RSA";
    case CURLKHTYPE_DSS:
        return "DSA";
    case CURLKHTYPE_ECDSA:
        return "ECDSA";
    case CURLKHTYPE_ED25519:
        return "ED25519";
    default:
        return "unknown";
    }
}

/* The OpenSSH fingerprint ("SHA256:" and unpadded base64) of a host key
 * (raw, or base64 when len is 0) into out. */
static void fingerprint(const struct curl_khkey *k, char *out, size_t n)
{
    unsigned char raw[16384], dig[EVP_MAX_MD_SIZE];
    unsigned char b64[2 * EVP_MAX_MD_SIZE];
    const unsigned char *p = (const unsigned char *)k->key;
    size_t len = k->len;
    unsigned dl = 0;
    snprintf(out, n, "SHA256:?");
    if (!p)
        return;
    if (len == 0) { /* base64 text */
        size_t tl = strlen(k->key);
        if (tl > sizeof(raw) / 4 * 3)
            return;
        int d = EVP_DecodeBlock(raw, p, (int)tl);
        if (d < 0)
            return;
        len = (size_t)d;
        while (tl && k->key[tl - 1] == '=' && len) { /* padding decodes to zeros */
            tl--;
            len--;
        }
        p = raw;
    }
    if (!EVP_Digest(p, len, dig, &dl, EVP_sha256(), NULL))
        return;
    int bl = EVP_EncodeBlock(b64, dig, (int)dl);
    while (bl > 0 && b64[bl - 1] == '=')
        bl--;
    snprintf(out, n, "SHA256:%.*s", bl, (const char *)b64);
}

/* Checks the server's host key against known_hosts (libcurl's match): a
 * known key goes on, any other is refused with why in x->hostkey. */
static int on_hostkey(CURL *c, const struct curl_khkey *known, const struct curl_khkey *found,
                      enum curl_khmatch match, void *ud)
{
    struct xfer *x = ud;
    char fp[96];
    if (match == CURLKHMATCH_OK)
        return CURLKHSTAT_FINE;
    fingerprint(found, fp, sizeof(fp));
    if (match == CURLKHMATCH_MISMATCH)
        snprintf(x->hostkey, sizeof(x->hostkey),
                 "host key mismatch: the server's %s key %s is not the one %s holds for this "
                 "host (the server was reinstalled or someone is in between: check it before "
                 "updating the file)",
                 key_type(found->keytype), fp, x->known_hosts ? x->known_hosts : "known_hosts");
    else
        snprintf(x->hostkey, sizeof(x->hostkey),
                 "unknown host key: the server's %s key %s is not in %s (add the host's line, "
                 "e.g. from ssh-keyscan, once its fingerprint is confirmed)",
                 key_type(found->keytype), fp, x->known_hosts ? x->known_hosts : "known_hosts");
    return CURLKHSTAT_REJECT;
}

/* ---- setup -------------------------------------------------------------- */

/* Whether path (an expanded option of field) is a readable file: 0, or
 * SL_ERR_INVALID naming it. */
static int readable(const char *path, const char *field, char *errbuf, size_t errsz)
{
    if (access(path, R_OK))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: cannot read %s: %s", field, path,
                         strerror(errno));
    return 0;
}

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        CURLcode src_ = curl_easy_setopt(x->c, opt, val);                                          \
        if (src_ != CURLE_OK)                                                                      \
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: cannot set %s: %s",               \
                             x->req->shown, #opt, curl_easy_strerror(src_));                       \
    } while (0)

static int setup_sftp(struct xfer *x, char *errbuf, size_t errsz)
{
    const struct sl_source_sftp *sf = &x->src->sftp;
    int rc;
    if ((rc = expand(sf->known_hosts, "source.sftp.known_hosts", &x->known_hosts, errbuf, errsz)) ||
        (rc = expand(sf->private_key, "source.sftp.private_key", &x->private_key, errbuf, errsz)) ||
        (rc = expand(sf->public_key, "source.sftp.public_key", &x->public_key, errbuf, errsz)) ||
        (rc = expand(sf->passphrase, "source.sftp.passphrase", &x->passphrase, errbuf, errsz)))
        return rc;
    if (!x->known_hosts && !sf->host_key_sha256) {
        const char *home = getenv("HOME");
        char *def = home && home[0] ? sl_path_join(home, ".ssh/known_hosts") : NULL;
        if (def && access(def, R_OK) == 0) {
            x->known_hosts = def;
        } else {
            free(def);
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "%s: no known host key to check the server against: give "
                             "source.sftp.known_hosts (a file in OpenSSH's format, e.g. from "
                             "ssh-keyscan) or source.sftp.host_key_sha256 (~/.ssh/known_hosts "
                             "of the fetcher's user is not there)",
                             x->req->shown);
        }
    }
    if (x->known_hosts) {
        if ((rc = readable(x->known_hosts, "source.sftp.known_hosts", errbuf, errsz)))
            return rc;
        SET(CURLOPT_SSH_KNOWNHOSTS, x->known_hosts);
        SET(CURLOPT_SSH_KEYFUNCTION, on_hostkey);
        SET(CURLOPT_SSH_KEYDATA, x);
    }
    if (sf->host_key_sha256)
        SET(CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, sf->host_key_sha256);
    long types = CURLSSH_AUTH_PASSWORD | CURLSSH_AUTH_KEYBOARD;
    if (x->private_key) {
        if ((rc = readable(x->private_key, "source.sftp.private_key", errbuf, errsz)) ||
            (x->public_key &&
             (rc = readable(x->public_key, "source.sftp.public_key", errbuf, errsz))))
            return rc;
        SET(CURLOPT_SSH_PRIVATE_KEYFILE, x->private_key);
        if (x->public_key)
            SET(CURLOPT_SSH_PUBLIC_KEYFILE, x->public_key);
        if (x->passphrase)
            SET(CURLOPT_KEYPASSWD, x->passphrase);
        types = x->password ? types | CURLSSH_AUTH_PUBLICKEY : CURLSSH_AUTH_PUBLICKEY;
    }
    SET(CURLOPT_SSH_AUTH_TYPES, types);
    return 0;
}

static int setup(struct xfer *x, char *errbuf, size_t errsz)
{
    const struct sl_source *src = x->src;
    struct sl_curl_opts o = {
        .protocols = x->sftp ? "sftp" : "ftp",
        .connect_timeout = src->connect_timeout,
        .timeout = src->timeout,
        .max_bytes = src->max_bytes,
    };
    int rc;
    if (!(x->c = curl_easy_init()))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot create a libcurl handle");
    if ((rc = sl_curl_setup(x->c, &o, &x->ctx, errbuf, errsz)))
        return rc;
    if ((rc = expand(src->auth_user, "source.auth.basic.user", &x->user, errbuf, errsz)) ||
        (rc =
             expand(src->auth_password, "source.auth.basic.password", &x->password, errbuf, errsz)))
        return rc;
    SET(CURLOPT_URL, x->req->url);
    SET(CURLOPT_ERRORBUFFER, x->curl_err);
    SET(CURLOPT_WRITEFUNCTION, on_data);
    SET(CURLOPT_WRITEDATA, x);
    /* a transfer that stalls for a minute is dead, whatever source.timeout says */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, 60L);
    if (x->user) {
        SET(CURLOPT_USERNAME, x->user);
        SET(CURLOPT_PASSWORD, x->password ? x->password : "");
    }
    if (x->sftp)
        return setup_sftp(x, errbuf, errsz);
    SET(CURLOPT_FTPPORT, NULL); /* passive */
    SET(CURLOPT_FTP_USE_EPSV, 1L);
    SET(CURLOPT_FTP_SKIP_PASV_IP, 1L);
    SET(CURLOPT_FTP_FILEMETHOD, (long)CURLFTPMETHOD_SINGLECWD);
    if (src->tls) {
        SET(CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
        SET(CURLOPT_FTPSSLAUTH, (long)CURLFTPAUTH_TLS);
    }
    if ((rc = expand(src->ca_file, "source.ftp.ca_file", &x->ca_file, errbuf, errsz)))
        return rc;
    if (x->ca_file) {
        if ((rc = readable(x->ca_file, "source.ftp.ca_file", errbuf, errsz)))
            return rc;
        SET(CURLOPT_CAINFO, x->ca_file);
    }
    return 0;
}

/* ---- the transfer ------------------------------------------------------- */

/* One attempt. 0, or an sl_err with errbuf set and *transient telling
 * whether another attempt may do better. */
static int attempt(struct xfer *x, bool *transient, char *errbuf, size_t errsz)
{
    const char *shown = x->req->shown;
    *transient = false;
    x->bytes = 0;
    x->over = false;
    x->werr = 0;
    x->curl_err[0] = x->ctx.refused[0] = x->hostkey[0] = '\0';
    if (ftruncate(x->fd, 0) || lseek(x->fd, 0, SEEK_SET) < 0 ||
        !EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot reset the download file: %s",
                         strerror(errno));
    CURLcode rc = curl_easy_perform(x->c);
    if (rc == CURLE_OK)
        return 0;
    const char *detail = sl_curl_error(rc, &x->ctx, x->curl_err);
    if (x->werr)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "%s: cannot store the download: %s", shown,
                         strerror(x->werr));
    if (x->over || rc == CURLE_FILESIZE_EXCEEDED)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "%s: larger than source.max_bytes (%llu bytes)", shown,
                         (unsigned long long)x->src->max_bytes);
    if (x->ctx.refused[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", shown, x->ctx.refused);
    if (x->hostkey[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", shown, x->hostkey);
    switch (rc) {
    case CURLE_LOGIN_DENIED:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: login failed (%s): check %s", shown,
                         detail,
                         x->sftp && x->private_key
                             ? "the user (source.auth.basic or the URL), source.sftp.private_key "
                               "and its passphrase"
                             : "the user and the password (source.auth.basic or the URL)");
    case CURLE_REMOTE_FILE_NOT_FOUND:
        return sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "%s: no such file on the server (%s)",
                         shown, detail);
    case CURLE_REMOTE_ACCESS_DENIED:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: no such directory, or access denied (%s)", shown, detail);
    case CURLE_PEER_FAILED_VERIFICATION:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server's identity could not be verified: %s%s", shown, detail,
                         x->sftp && x->src->sftp.host_key_sha256
                             ? " (the host key is not the one of source.sftp.host_key_sha256)"
                             : "");
    case CURLE_USE_SSL_FAILED:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server does not offer TLS, which source.ftp.tls requires (%s)",
                         shown, detail);
    case CURLE_OPERATION_TIMEDOUT:
        *transient = true;
        return sl_seterr(errbuf, errsz, SL_ERR_TIMEOUT, "%s: %s (source.timeout)", shown, detail);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_FTP_ACCEPT_TIMEOUT:
    case CURLE_FTP_CANT_GET_HOST:
    case CURLE_FTP_WEIRD_PASV_REPLY:
    case CURLE_FTP_WEIRD_227_FORMAT:
        *transient = true;
        return sl_seterr(errbuf, errsz, SL_ERR_RETRY, "%s: %s", shown, detail);
    default:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", shown, detail);
    }
}

static int ftp_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                     size_t errsz)
{
    struct xfer x = {.req = req, .src = req->src, .fd = req->fd};
    char msg[1024];
    int rc = 0;
    memset(res, 0, sizeof(*res));
    x.ctx.guard = req->guard;
    x.sftp = !strncasecmp(req->url, "sftp://", 7);
    if (!x.sftp && strncasecmp(req->url, "ftp://", 6)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: not an ftp:// or sftp:// URL",
                       req->shown);
        goto out;
    }
    if (!(x.md = EVP_MD_CTX_new())) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = setup(&x, errbuf, errsz)))
        goto out;
    for (long n = 0;; n++) {
        bool transient;
        rc = attempt(&x, &transient, msg, sizeof(msg));
        if (rc == 0)
            break;
        if (!transient || n >= x.src->retries) {
            if (n > 0 && transient)
                sl_seterr(errbuf, errsz, rc, "%s (after %ld attempts)", msg, n + 1);
            else
                sl_seterr(errbuf, errsz, rc, "%s", msg);
            goto out;
        }
        long delay = backoff_ms(x.src->retry_delay_ms, n);
        sl_info("fetcher", "%s; retrying in %ld ms (attempt %ld of %ld)", msg, delay, n + 2,
                x.src->retries + 1);
        msleep(delay);
    }
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_DigestFinal_ex(x.md, dig, &dl);
    sl_hex(dig, 32, res->sha256);
    res->bytes = x.bytes;
    res->pages = 1;
    name_from_url(req->url, res->file_name, sizeof(res->file_name));
out:
    if (x.c) {
        /* libcurl keeps copies of the credentials in the handle until here */
        curl_easy_setopt(x.c, CURLOPT_USERNAME, NULL);
        curl_easy_setopt(x.c, CURLOPT_PASSWORD, NULL);
        curl_easy_setopt(x.c, CURLOPT_KEYPASSWD, NULL);
        curl_easy_cleanup(x.c);
    }
    wipe_free(x.user);
    wipe_free(x.password);
    wipe_free(x.passphrase);
    free(x.known_hosts);
    free(x.private_key);
    free(x.public_key);
    free(x.ca_file);
    EVP_MD_CTX_free(x.md);
    return rc;
}

static const char *const ftp_schemes[] = {"ftp", NULL};
static const char *const sftp_schemes[] = {"sftp", NULL};

const struct sl_source_ops sl_source_ftp = {
    .name = "ftp",
    .schemes = ftp_schemes,
    .fetch = ftp_fetch,
};

const struct sl_source_ops sl_source_sftp = {
    .name = "sftp",
    .schemes = sftp_schemes,
    .fetch = ftp_fetch,
};
