/*
 * IMAP and IMAPS sources (source.h): the attachment of the newest message in
 * a folder whose attachment name matches source.attachment, over libcurl,
 * MIME parsed with GMime 3.
 *
 * The URL names the folder (imaps://mail.example.com/INBOX; no folder:
 * INBOX). One connection, one login: a UID FETCH lists every message's UID,
 * flags, INTERNALDATE (the time the server received it) and size; the
 * messages are then looked at newest first (by that time, then UID), at most
 * source.imap.max_messages of them. Each is downloaded whole into an
 * unlinked temporary file (at most twice source.max_bytes plus 1 MiB, since
 * base64 makes an attachment a third larger) and parsed there by GMime on a
 * file stream, so memory stays bounded whatever the message's size. The
 * first part whose file name (RFC 2231 and RFC 2047 names decoded by GMime)
 * matches the glob (case-insensitive; absent: any attachment) is decoded
 * (base64, quoted-printable, uuencode) and streamed into the fd, hashed and
 * counted against source.max_bytes. Fetching a message marks it \Seen on
 * most servers: a message that was unseen is marked unseen again afterwards,
 * so the mailbox looks as it did.
 *
 * No message with a matching attachment fails the run with a reason naming
 * the folder and the pattern. A validator ("imap:UID:SIZE:DATE" of the
 * message the attachment came from) lets a run whose newest matching message
 * is still the last successful run's end as not modified without reading it.
 *
 * Every connection passes the SSRF guard (sl_curl_setup); source.imap.tls
 * requires STARTTLS on imap://, and source.tls.ca_file (or its older name
 * source.imap.ca_file) verifies the server.
 * ${env:NAME} in the URL and the credentials is expanded just before use and
 * wiped after it; messages name the URL as written.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/source.h"
#include "sluice/util.h"

#define LIST_MAX  (64u << 20) /* bytes of the message list held in memory */
#define MSG_SLACK (1u << 20)  /* a message may be 2 * max_bytes + this */

/* A message of the folder. */
struct msg {
    unsigned long uid;
    int64_t date; /* INTERNALDATE, seconds since the epoch */
    uint64_t size;
    bool seen;
};

/* One fetch: the handle, the expanded settings, and the sink of the current
 * request (mem for the list, fd for a message). */
struct imap {
    const struct sl_fetch_req *req;
    const struct sl_source *src;
    CURL *c;
    struct sl_curl_ctx ctx;
    char curl_err[CURL_ERROR_SIZE];
    char *user, *password, *ca_file;
    char *base;                 /* the folder's URL, expanded */
    char folder[256];           /* its name, for messages */
    const char *glob;           /* source.attachment, or "*" */
    struct sl_source_body body; /* the sink of a request: memory, or a file */
    /* the request being made (request()) */
    const char *what;
};

/* ---- small helpers ------------------------------------------------------ */

/* ---- libcurl ------------------------------------------------------------ */

/* One attempt at the request of x->what (sl_source_attempt_fn of a struct
 * imap). */
static int attempt(void *ud, bool *transient, long *wait_ms, char *errbuf, size_t errsz)
{
    struct imap *x = ud;
    const char *shown = x->req->shown, *what = x->what;
    int rrc;
    x->curl_err[0] = x->ctx.refused[0] = '\0';
    if ((rrc = sl_source_body_reset(&x->body, "a temporary file", errbuf, errsz)))
        return rrc;
    CURLcode rc = curl_easy_perform(x->c);
    if (rc == CURLE_OK)
        return 0;
    const char *detail = sl_curl_error(rc, &x->ctx, x->curl_err);
    if (x->body.werr)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "%s: %s: cannot store the answer: %s", shown,
                         what, strerror(x->body.werr));
    if (x->body.over)
        return sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                         "%s: %s: the answer is larger than %llu bytes%s", shown, what,
                         (unsigned long long)x->body.cap,
                         x->body.fd >= 0 ? " (twice source.max_bytes and 1 MiB)" : "");
    if (x->ctx.refused[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: %s", shown, x->ctx.refused);
    if (rc == CURLE_LOGIN_DENIED && strstr(detail, "elect"))
        return sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND,
                         "%s: no folder '%s' on the server (or it cannot be opened: %s)", shown,
                         x->folder, detail);
    if (rc == CURLE_LOGIN_DENIED)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: login failed (%s): check the user and password in "
                         "source.auth.basic or the URL",
                         shown, detail);
    if (rc == CURLE_REMOTE_FILE_NOT_FOUND)
        return sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND, "%s: %s: no such message (%s)", shown,
                         what, detail);
    if (rc == CURLE_USE_SSL_FAILED)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the server does not offer STARTTLS, which source.imap.tls "
                         "requires (%s)",
                         shown, detail);
    char where[1024];
    snprintf(where, sizeof(where), "%s: %s", shown, what);
    return sl_source_curl_failure(rc, &x->ctx, x->curl_err, where, transient, errbuf, errsz);
}

/* One request: url with the IMAP command custom (NULL: fetch the message
 * the URL names) into fd (< 0: memory), within cap bytes, retried after
 * transient failures. what names it in messages. 0, or an sl_err with
 * errbuf set. */
static int request(struct imap *x, const char *url, const char *custom, int fd, uint64_t cap,
                   const char *what, char *errbuf, size_t errsz)
{
    curl_easy_setopt(x->c, CURLOPT_URL, url);
    curl_easy_setopt(x->c, CURLOPT_CUSTOMREQUEST, custom);
    x->body.fd = fd;
    x->body.cap = cap;
    x->what = what;
    return sl_source_attempts(x->src, attempt, x, errbuf, errsz);
}

/* ---- the message list --------------------------------------------------- */

/* Seconds since the epoch of an INTERNALDATE ("17-Jul-1996 02:44:25 -0700",
 * the day maybe space-padded), or -1. */
static int64_t internal_date(const char *s)
{
    static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    int d, y, hh, mm, ss, off;
    char mon[4];
    while (*s == ' ')
        s++;
    if (sscanf(s, "%2d-%3c-%4d %2d:%2d:%2d %5d", &d, mon, &y, &hh, &mm, &ss, &off) != 7)
        return -1;
    mon[3] = '\0';
    for (int i = 0; i < 3; i++)
        mon[i] = (char)tolower((unsigned char)mon[i]);
    const char *m = strstr(months, mon);
    if (!m || (m - months) % 3)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = (int)(m - months) / 3,
                    .tm_mday = d,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    int64_t t = (int64_t)timegm(&tm);
    int sign = off < 0 ? -1 : 1;
    off *= sign;
    return t - sign * ((off / 100) * 3600 + (off % 100) * 60);
}

/* The messages of the FETCH answers in text (untagged lines "* N FETCH
 * (UID u FLAGS (...) INTERNALDATE "..." RFC822.SIZE s)"), newest first, into
 * *out (caller frees); their number, or -1 out of memory. Lines that do not
 * parse are skipped. */
static long parse_list(char *text, struct msg **out)
{
    struct msg *m = NULL;
    size_t n = 0, cap = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (strncmp(line, "* ", 2) || !strstr(line, " FETCH ("))
            continue;
        const char *u = strstr(line, "UID "), *f = strstr(line, "FLAGS ("),
                   *d = strstr(line, "INTERNALDATE \""), *z = strstr(line, "RFC822.SIZE ");
        if (!u || !d || !z)
            continue;
        struct msg v = {.uid = strtoul(u + 4, NULL, 10),
                        .date = internal_date(d + 14),
                        .size = strtoull(z + 12, NULL, 10)};
        if (f) {
            const char *fe = strchr(f, ')');
            const char *seen = strcasestr(f, "\\Seen");
            v.seen = seen && (!fe || seen < fe);
        }
        if (!v.uid)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            struct msg *nm = realloc(m, nc * sizeof(*m));
            if (!nm) {
                free(m);
                return -1;
            }
            m = nm;
            cap = nc;
        }
        m[n++] = v;
    }
    /* newest first: by INTERNALDATE, then UID (later UIDs came later) */
    for (size_t i = 1; i < n; i++) { /* insertion sort: lists come nearly sorted */
        struct msg v = m[i];
        size_t j = i;
        while (j > 0 &&
               (m[j - 1].date < v.date || (m[j - 1].date == v.date && m[j - 1].uid < v.uid))) {
            m[j] = m[j - 1];
            j--;
        }
        m[j] = v;
    }
    *out = m;
    return (long)n;
}

/* ---- the attachment ----------------------------------------------------- */

struct find {
    const char *glob;
    GMimePart *part; /* the first matching part, NULL none */
    unsigned named;  /* parts with a file name */
};

static void on_part(GMimeObject *parent, GMimeObject *obj, gpointer ud)
{
    struct find *f = ud;
    if (f->part || !GMIME_IS_PART(obj))
        return;
    const char *name = g_mime_part_get_filename(GMIME_PART(obj));
    if (!name || !name[0])
        return;
    f->named++;
    if (fnmatch(f->glob, name, FNM_CASEFOLD) == 0)
        f->part = GMIME_PART(obj);
}

/* Looks for the attachment in the message of file msgfd; when there is one,
 * decodes it into req->fd and fills res (*found true). 0, or an sl_err with
 * errbuf set. */
static int extract(struct imap *x, int msgfd, const struct msg *m, struct sl_fetch_res *res,
                   bool *found, char *errbuf, size_t errsz)
{
    const struct sl_fetch_req *req = x->req;
    GMimeStream *in = NULL, *out = NULL, *filt = NULL;
    GMimeParser *parser = NULL;
    GMimeMessage *message = NULL;
    GMimeFilter *sum = NULL;
    int rc = 0;
    *found = false;
    if (lseek(msgfd, 0, SEEK_SET) < 0)
        return sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot read a temporary file: %s",
                         strerror(errno));
    in = g_mime_stream_fs_new(msgfd);
    g_mime_stream_fs_set_owner(GMIME_STREAM_FS(in), FALSE);
    parser = g_mime_parser_new_with_stream(in);
    message = g_mime_parser_construct_message(parser, NULL);
    if (!message) {
        sl_info("fetcher", "%s: message UID %lu of '%s' is no MIME message: skipped", req->shown,
                m->uid, x->folder);
        goto out;
    }
    struct find f = {.glob = x->glob};
    g_mime_message_foreach(message, on_part, &f);
    if (!f.part)
        goto out;
    const char *name = g_mime_part_get_filename(f.part);
    GMimeDataWrapper *content = g_mime_part_get_content(f.part);
    if (!content) {
        sl_info("fetcher", "%s: the attachment '%.100s' of message UID %lu has no content: skipped",
                req->shown, name, m->uid);
        goto out;
    }
    if (ftruncate(req->fd, 0) || lseek(req->fd, 0, SEEK_SET) < 0) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot reset the download file: %s",
                       strerror(errno));
        goto out;
    }
    /* one byte past the limit tells that the attachment is larger */
    uint64_t bound =
        x->src->max_bytes < (uint64_t)INT64_MAX - 1 ? x->src->max_bytes + 1 : (uint64_t)INT64_MAX;
    out = g_mime_stream_fs_new_with_bounds(req->fd, 0, (gint64)bound);
    g_mime_stream_fs_set_owner(GMIME_STREAM_FS(out), FALSE);
    filt = g_mime_stream_filter_new(out);
    sum = g_mime_filter_checksum_new(G_CHECKSUM_SHA256);
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), sum);
    ssize_t w = g_mime_data_wrapper_write_to_stream(content, filt);
    int flushed = g_mime_stream_flush(filt);
    struct stat sb;
    if (fstat(req->fd, &sb)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot read the download file: %s",
                       strerror(errno));
        goto out;
    }
    if ((uint64_t)sb.st_size > x->src->max_bytes) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                       "%s: the attachment '%.100s' of message UID %lu in '%s' is larger than "
                       "source.max_bytes (%llu bytes)",
                       req->shown, name, m->uid, x->folder, (unsigned long long)x->src->max_bytes);
        goto out;
    }
    if (w < 0 || flushed) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "%s: cannot store the attachment: %s", req->shown,
                       strerror(errno));
        goto out;
    }
    unsigned char dig[32];
    size_t dl = g_mime_filter_checksum_get_digest(GMIME_FILTER_CHECKSUM(sum), dig, sizeof(dig));
    if (dl != sizeof(dig)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot hash the attachment");
        goto out;
    }
    sl_hex(dig, 32, res->sha256);
    res->bytes = (uint64_t)sb.st_size;
    sl_source_plain_name(name, strlen(name), res->file_name, sizeof(res->file_name));
    GMimeContentType *ct = g_mime_object_get_content_type(GMIME_OBJECT(f.part));
    char *type = ct ? g_mime_content_type_get_mime_type(ct) : NULL;
    /* application/octet-stream says nothing: the file name tells more */
    if (type && strcasecmp(type, "application/octet-stream"))
        snprintf(res->content_type, sizeof(res->content_type), "%s", type);
    g_free(type);
    *found = true;
out:
    if (sum)
        g_object_unref(sum);
    if (filt)
        g_object_unref(filt);
    if (out)
        g_object_unref(out);
    if (message)
        g_object_unref(message);
    if (parser)
        g_object_unref(parser);
    if (in)
        g_object_unref(in);
    return rc;
}

/* ---- the source --------------------------------------------------------- */

/* The folder's URL from the job's (expanded) into x->base and x->folder. 0
 * or SL_ERR_INVALID. */
static int folder_url(struct imap *x, char *errbuf, size_t errsz)
{
    const char *url = x->req->url;
    CURLU *u = curl_url();
    char *path = NULL, *user = NULL;
    int rc = 0;
    if (!u)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) || strpbrk(url, "?#")) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: not an imap:// or imaps:// URL of a folder "
                       "(imaps://host/INBOX, no query)",
                       x->req->shown);
        goto out;
    }
    if (strchr(path, ';')) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: give only the folder in the URL (imaps://host/INBOX): the fetcher "
                       "picks the message itself",
                       x->req->shown);
        goto out;
    }
    const char *p = path;
    while (*p == '/')
        p++;
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    snprintf(x->folder, sizeof(x->folder), "%.*s", (int)pl, pl ? p : "INBOX");
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    const char *after = strstr(url, "://") + 3;
    bool no_path = !strchr(after, '/') || strchr(after, '/') >= url + ul;
    if (!(x->base = malloc(ul + 8)))
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    else
        snprintf(x->base, ul + 8, "%.*s%s", (int)ul, url, no_path ? "/INBOX" : "");
    if (rc == 0 && !x->src->auth_user && (curl_url_get(u, CURLUPART_USER, &user, 0) || !user[0]))
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: no user to log in with: give source.auth.basic or user@ in the URL",
                       x->req->shown);
out:
    curl_free(path);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

static int setup(struct imap *x, char *errbuf, size_t errsz)
{
    const struct sl_source *src = x->src;
    struct sl_curl_opts o = {
        .protocols = "imap,imaps",
        .connect_timeout = src->connect_timeout,
        .timeout = src->timeout,
    };
    int rc;
    if (!(x->c = curl_easy_init()))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot create a libcurl handle");
    if ((rc = sl_curl_setup(x->c, &o, &x->ctx, errbuf, errsz)) ||
        (rc = sl_source_expand(src->auth_user, NULL, "source.auth.basic.user", &x->user, errbuf,
                               errsz)) ||
        (rc = sl_source_expand(src->auth_password, NULL, "source.auth.basic.password", &x->password,
                               errbuf, errsz)) ||
        (rc = sl_source_ca_file(x->c, src, &x->ca_file, errbuf, errsz)))
        return rc;
    curl_easy_setopt(x->c, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, sl_source_body_write);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, &x->body);
    curl_easy_setopt(x->c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(x->c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (x->user) {
        curl_easy_setopt(x->c, CURLOPT_USERNAME, x->user);
        curl_easy_setopt(x->c, CURLOPT_PASSWORD, x->password ? x->password : "");
    }
    if (src->tls)
        curl_easy_setopt(x->c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
    return 0;
}

/* Walks the messages newest first until one has the attachment. */
static int find_attachment(struct imap *x, const struct msg *m, long n, struct sl_fetch_res *res,
                           char *errbuf, size_t errsz)
{
    const struct sl_fetch_req *req = x->req;
    const struct sl_source *src = x->src;
    uint64_t msg_cap =
        src->max_bytes > (UINT64_MAX - MSG_SLACK) / 2 ? UINT64_MAX : src->max_bytes * 2 + MSG_SLACK;
    long looked = 0;
    int rc = 0, fd = sl_temp_fd("sluice-imap", NULL);
    if (fd < 0)
        return sl_seterr(errbuf, errsz, SL_ERR_IO,
                         "cannot create a temporary file for a message: %s", strerror(errno));
    for (long i = 0; i < n && looked < src->max_messages; i++, looked++) {
        char etag[SL_VALIDATOR_MAX];
        snprintf(etag, sizeof(etag), "imap:%lu:%llu:%lld", m[i].uid, (unsigned long long)m[i].size,
                 (long long)m[i].date);
        if (req->etag && !strcmp(req->etag, etag)) {
            /* no newer message matched: this one, whose attachment the last
             * successful run read, is still the newest that does */
            res->not_modified = true;
            snprintf(res->etag, sizeof(res->etag), "%s", etag);
            snprintf(res->not_modified_why, sizeof(res->not_modified_why),
                     "the newest message in '%.100s' with an attachment matching '%.100s' is "
                     "still UID %lu, the one of the last successful run",
                     x->folder, x->glob, m[i].uid);
            goto out;
        }
        if (m[i].size > msg_cap) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_LIMIT,
                           "%s: message UID %lu in '%s' has %llu bytes, more than a message with "
                           "an attachment of source.max_bytes can have (%llu): raise "
                           "source.max_bytes or move the message away",
                           req->shown, m[i].uid, x->folder, (unsigned long long)m[i].size,
                           (unsigned long long)msg_cap);
            goto out;
        }
        char url[4200], what[64];
        snprintf(url, sizeof(url), "%s/;UID=%lu", x->base, m[i].uid);
        snprintf(what, sizeof(what), "message UID %lu", m[i].uid);
        if (strlen(x->base) > 4096) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the URL is too long", req->shown);
            goto out;
        }
        rc = request(x, url, NULL, fd, msg_cap, what, errbuf, errsz);
        if (rc == SL_ERR_NOTFOUND) { /* expunged meanwhile */
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (!m[i].seen) {
            /* reading it marked it seen: as it was before */
            char cmd[64], err[512];
            snprintf(cmd, sizeof(cmd), "UID STORE %lu -FLAGS.SILENT (\\Seen)", m[i].uid);
            if (request(x, x->base, cmd, -1, 4096, "UID STORE", err, sizeof(err)))
                sl_warn("fetcher", "could not mark the message unseen again: %s", err);
        }
        bool found = false;
        if ((rc = extract(x, fd, &m[i], res, &found, errbuf, errsz)))
            goto out;
        if (found) {
            snprintf(res->etag, sizeof(res->etag), "%s", etag);
            sl_info("fetcher", "%s: attachment '%s' of message UID %lu (%llu bytes)", req->shown,
                    res->file_name, m[i].uid, (unsigned long long)res->bytes);
            goto out;
        }
    }
    if (n == 0)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND,
                       "%s: no message in folder '%s' has an attachment matching '%s' (the "
                       "folder is empty)",
                       req->shown, x->folder, x->glob);
    else if (looked < n)
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND,
                       "%s: none of the newest %ld messages in folder '%s' has an attachment "
                       "matching '%s' (source.imap.max_messages; %ld messages in all)",
                       req->shown, looked, x->folder, x->glob, n);
    else
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOTFOUND,
                       "%s: no message in folder '%s' has an attachment matching '%s' (%ld "
                       "messages looked at)",
                       req->shown, x->folder, x->glob, n);
out:
    close(fd);
    return rc;
}

static int imap_fetch(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                      size_t errsz)
{
    struct imap x = {.req = req, .src = req->src};
    struct msg *m = NULL;
    int rc;
    memset(res, 0, sizeof(*res));
    sl_source_body_init(&x.body, -1, false, 0); /* fd and cap: request() */
    x.ctx.guard = req->guard;
    x.glob = req->src->attachment ? req->src->attachment : "*";
    sl_gmime_global();
    if ((rc = folder_url(&x, errbuf, errsz)) || (rc = setup(&x, errbuf, errsz)))
        goto out;
    rc = request(&x, x.base, "UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)", -1, LIST_MAX,
                 "listing the messages", errbuf, errsz);
    if (rc)
        goto out;
    char none[1] = "";
    long n = parse_list(x.body.mem.data ? x.body.mem.data : none, &m);
    if (n < 0) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    sl_buf_cleanup(&x.body.mem);
    rc = find_attachment(&x, m, n, res, errbuf, errsz);
    res->pages = 1;
out:
    sl_source_curl_free(x.c);
    sl_source_wipe_free(x.user);
    sl_source_wipe_free(x.password);
    free(x.ca_file);
    sl_source_wipe_free(x.base); /* it may hold a password */
    free(m);
    sl_source_body_cleanup(&x.body);
    return rc;
}

static const char *const imap_schemes[] = {"imap", "imaps", NULL};

const struct sl_source_ops sl_source_imap = {
    .name = "imap",
    .schemes = imap_schemes,
    .fetch = imap_fetch,
};
