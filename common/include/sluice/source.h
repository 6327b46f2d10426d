/*
 * Remote sources: a job's source.url fetched into a file descriptor.
 *
 * Each kind of source (http and https now; ftp, sftp, imap(s) and s3 to come)
 * is one struct sl_source_ops in its own file (source_http.c) that fetches
 * one URL, with the job's headers, auth, limits and pagination, into an fd
 * and says what came: SHA-256 and size of the bytes written, the
 * validators of a conditional request, the content type and a file name.
 * The fetcher picks the ops by the URL's scheme (one table in
 * services/fetcher/fetcher.c), so a new kind of source is a new file and a
 * line there.
 *
 * Every connection any source makes goes through the SSRF guard
 * (fetch_guard.c): sl_curl_setup() prepares a libcurl handle so that each
 * socket's resolved address, redirects included, is checked before the
 * connection is made, and only the source's protocols are spoken. Loopback,
 * private, link-local, CGNAT, metadata and other special ranges are refused
 * unless the operator allow-lists them (SLUICE_ALLOW_HOSTS).
 */
#ifndef SLUICE_SOURCE_H
#define SLUICE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "sluice/job.h"
#include "sluice/state.h"

/* ---- the SSRF guard (fetch_guard.c) ------------------------------------ */

struct sl_fetch_guard;

/* A guard that refuses every non-public address except those of allow: a
 * comma-separated list of IPv4 or IPv6 addresses or CIDRs ("127.0.0.1/32",
 * "10.0.0.0/8", "::1", "[fd00::]/8") and host names ("files.internal": the
 * addresses it resolves to when a connection is checked). NULL or "" allows
 * nothing more. Returns the guard (sl_fetch_guard_destroy), or NULL with
 * errbuf naming the bad entry. A guard is immutable: any thread may use it. */
struct sl_fetch_guard *sl_fetch_guard_new(const char *allow, char *errbuf, size_t errsz);
void sl_fetch_guard_destroy(struct sl_fetch_guard *g);

/* Why sa (AF_INET or AF_INET6) is no public Internet address, e.g.
 * "loopback (127.0.0.0/8)", "cloud metadata (169.254.169.254)",
 * "IPv4-mapped IPv6 (::ffff:0:0/96)"; NULL for a public address. A static
 * string. */
const char *sl_addr_class(const struct sockaddr *sa);

/* Whether g lets a connection go to sa: 0, or SL_ERR_INVALID with why set
 * ("refused to connect to 10.1.2.3: private (10.0.0.0/8) address (allow it
 * in SLUICE_ALLOW_HOSTS)"). */
int sl_fetch_guard_check(const struct sl_fetch_guard *g, const struct sockaddr *sa, char *why,
                         size_t whysz);

/* What one libcurl handle needs of the guard; lives as long as the handle.
 * refused says why the guard refused the last connection it refused. */
struct sl_curl_ctx {
    const struct sl_fetch_guard *guard;
    char refused[256];
};

struct sl_curl_opts {
    const char *protocols;       /* CURLOPT_PROTOCOLS_STR: "http,https" */
    const char *redir_protocols; /* CURLOPT_REDIR_PROTOCOLS_STR; NULL: the same */
    bool follow;                 /* libcurl follows redirects itself (max_redirects) */
    long max_redirects;          /* with follow; default 5 when 0 */
    long connect_timeout;        /* seconds; 0: 10 */
    long timeout;                /* seconds for the whole transfer; 0: none */
    uint64_t max_bytes;          /* CURLOPT_MAXFILESIZE_LARGE (a declared size); 0: none */
};

/* Prepares c for one source: every socket checked by ctx->guard (which must
 * be set, and ctx must outlive c's transfers), protocols restricted, proxies
 * from the environment ignored (a proxy would connect where the guard cannot
 * see), timeouts, no signals, TCP keep-alive. Also runs curl_global_init
 * once. 0, or SL_ERR_INVALID / SL_ERR_NOMEM with errbuf set (e.g. libcurl
 * lacks a protocol). */
int sl_curl_setup(CURL *c, const struct sl_curl_opts *o, struct sl_curl_ctx *ctx, char *errbuf,
                  size_t errsz);

/* A message for a failed transfer: the guard's reason when it refused the
 * connection, else libcurl's detail (curl_err, the CURLOPT_ERRORBUFFER) or
 * curl_easy_strerror(rc). */
const char *sl_curl_error(CURLcode rc, const struct sl_curl_ctx *ctx, const char *curl_err);

/* url with its user information hidden (user:password@ becomes ***@), into out. */
void sl_url_redact(const char *url, char *out, size_t n);

/* ---- sources ------------------------------------------------------------ */

/* One fetch. Everything is borrowed for the call. */
struct sl_fetch_req {
    const char *url;             /* ${env:...} expanded: never logged, never in a message */
    const char *shown;           /* the URL as written, redacted: what messages name */
    const struct sl_source *src; /* headers, auth (expanded here, at use), limits,
                                    pagination */
    const struct sl_fetch_guard *guard;
    /* validators of the last fetch (NULL or "": none): the server may answer
     * "not modified" instead of sending the body again */
    const char *etag;
    const char *last_modified;
    int fd; /* the body goes here, from offset 0 (the fetch truncates it on a retry) */
};

struct sl_fetch_res {
    char sha256[65]; /* of the bytes written to fd */
    uint64_t bytes;
    bool not_modified; /* the server confirmed the validators: nothing was written */
    char etag[SL_VALIDATOR_MAX];
    char last_modified[64];
    char content_type[128]; /* of the response, "" unknown */
    char file_name[256];    /* from Content-Disposition, else the URL's last path segment;
                               a plain name (no '/', not starting with '.'), "" none */
    unsigned pages;         /* paginated sources: pages read */
    long status;            /* the last HTTP status, 0 none */
};

struct sl_source_ops {
    const char *name;
    const char *const *schemes; /* lowercase, NULL-terminated */
    /* Fetches req->url into req->fd. 0 with *res filled, or a negative
     * sl_err with errbuf set to why the run fails (naming req->shown, the
     * page, the HTTP status ...): SL_ERR_INVALID (refused by the guard, a
     * bad URL or answer), SL_ERR_LIMIT (max_bytes, max_pages, redirects),
     * SL_ERR_RETRY / SL_ERR_TIMEOUT (still failing after the retries),
     * SL_ERR_IO (writing fd), SL_ERR_NOMEM. Blocks for as long as the
     * source's limits allow; any thread, one call per fd. */
    int (*fetch)(const struct sl_fetch_req *req, struct sl_fetch_res *res, char *errbuf,
                 size_t errsz);
};

extern const struct sl_source_ops sl_source_http; /* http, https */

#endif
