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
 * verified against the system's CAs or source.tls.ca_file (or its older
 * name source.ftp.ca_file).
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
#include <unistd.h>

#include <openssl/evp.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/source.h"
#include "sluice/util.h"

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
    struct sl_source_body body; /* into req->fd, hashed, within source.max_bytes */
};

/* ---- the SSH host key -------------------------------------------------- */

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
    if ((rc = sl_source_expand(sf->known_hosts, NULL, "source.sftp.known_hosts", &x->known_hosts,
                               errbuf, errsz)) ||
        (rc = sl_source_expand(sf->private_key, NULL, "source.sftp.private_key", &x->private_key,
                               errbuf, errsz)) ||
        (rc = sl_source_expand(sf->public_key, NULL, "source.sftp.public_key", &x->public_key,
                               errbuf, errsz)) ||
        (rc = sl_source_expand(sf->passphrase, NULL, "source.sftp.passphrase", &x->passphrase,
                               errbuf, errsz)))
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
    if ((rc = sl_source_expand(src->auth_user, NULL, "source.auth.basic.user", &x->user, errbuf,
                               errsz)) ||
        (rc = sl_source_expand(src->auth_password, NULL, "source.auth.basic.password", &x->password,
                               errbuf, errsz)))
        return rc;
    SET(CURLOPT_URL, x->req->url);
    SET(CURLOPT_ERRORBUFFER, x->curl_err);
    SET(CURLOPT_WRITEFUNCTION, sl_source_body_write);
    SET(CURLOPT_WRITEDATA, &x->body);
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
    return sl_source_ca_file(x->c, src, &x->ca_file, errbuf, errsz);
}

/* ---- the transfer ------------------------------------------------------- */

/* One attempt (sl_source_attempt_fn of a struct xfer). */
static int attempt(void *ud, bool *transient, long *wait_ms, char *errbuf, size_t errsz)
{
    struct xfer *x = ud;
    const char *shown = x->req->shown;
    int rrc;
    x->curl_err[0] = x->ctx.refused[0] = x->hostkey[0] = '\0';
    if ((rrc = sl_source_body_reset(&x->body, "the download file", errbuf, errsz)))
        return rrc;
    CURLcode rc = curl_easy_perform(x->c);
    if (rc == CURLE_OK)
        return 0;
    const char *detail = sl_curl_error(rc, &x->ctx, x->curl_err);
    if ((rrc = sl_source_local_failure(&x->body, &x->ctx, rc, shown, "download", "source.max_bytes",
                                       x->src->max_bytes, errbuf, errsz)))
        return rrc;
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
        if (!x->sftp) /* the TLS certificate */
            return sl_source_curl_failure(rc, &x->ctx, x->curl_err, shown, transient, errbuf,
                                          errsz);
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server's identity could not be verified: %s%s", shown, detail,
                         x->sftp && x->src->sftp.host_key_sha256
                             ? " (the host key is not the one of source.sftp.host_key_sha256)"
                             : "");
    case CURLE_USE_SSL_FAILED:
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server does not offer TLS, which source.ftp.tls requires (%s)",
                         shown, detail);
    default:
        return sl_source_curl_failure(rc, &x->ctx, x->curl_err, shown, transient, errbuf, errsz);
    }
}

static int ftp_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                     size_t errsz)
{
    struct xfer x = {.req = req, .src = req->src};
    int rc = 0;
    memset(res, 0, sizeof(*res));
    x.ctx.guard = req->guard;
    x.sftp = !strncasecmp(req->url, "sftp://", 7);
    if (!x.sftp && strncasecmp(req->url, "ftp://", 6)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: not an ftp:// or sftp:// URL",
                       req->shown);
        goto out;
    }
    if (sl_source_body_init(&x.body, req->fd, true, req->src->max_bytes)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = setup(&x, errbuf, errsz)) ||
        (rc = sl_source_attempts(x.src, attempt, &x, errbuf, errsz)))
        goto out;
    sl_source_body_result(&x.body, res);
    res->pages = 1;
    sl_source_name_from_url(req->url, res->file_name, sizeof(res->file_name));
out:
    sl_source_curl_free(x.c);
    sl_source_wipe_free(x.user);
    sl_source_wipe_free(x.password);
    sl_source_wipe_free(x.passphrase);
    free(x.known_hosts);
    free(x.private_key);
    free(x.public_key);
    free(x.ca_file);
    sl_source_body_cleanup(&x.body);
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
