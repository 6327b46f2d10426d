/*
 * Remote sources: a job's source.url fetched into a file descriptor.
 *
 * Each kind of source (http(s), ftp, sftp, imap(s), s3) is one struct
 * sl_source_ops in its own file (source_http.c, source_ftp.c, ...) that
 * fetches one URL, with the job's headers, auth, limits and pagination, into
 * an fd and says what came: SHA-256 and size of the bytes written, the
 * validators of a conditional request, the content type and a file name.
 * The fetcher picks the ops by the URL's scheme (one table in
 * services/fetcher/fetcher.c), so a new kind of source is a new file and a
 * line there. What the sources share (secrets, retries, the body writer,
 * file names, HTTP response headers) is in source_util.c, declared at the
 * end of this header.
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

#include "sluice/buf.h"
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
    /* with not_modified: what showed it, for the fetcher's log line and the
     * skipped run's reason ("HTTP 304 Not Modified", "S3 304 Not Modified",
     * "the newest message ... is UID 7, the one of the last successful run") */
    char not_modified_why[320];
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

/* The sources of this version, for the fetcher's table (SOURCES). */
extern const struct sl_source_ops sl_source_http; /* http, https (source_http.c) */
extern const struct sl_source_ops sl_source_ftp;  /* ftp (source_ftp.c) */
extern const struct sl_source_ops sl_source_sftp; /* sftp (source_ftp.c) */
extern const struct sl_source_ops sl_source_imap; /* imap, imaps (source_imap.c) */
extern const struct sl_source_ops sl_source_s3;   /* s3 (source_s3.c) */

/* ---- for source implementations (source_util.c) ------------------------ */

/* What every source_*.c needs alike. The fetcher does not call these; each
 * may be called from any thread, on the objects of one fetch. */

/* Frees s (NULL: nothing) after overwriting it with zeros: for strings that
 * may hold a secret (an expanded ${env:NAME}, a URL with a password). */
void sl_source_wipe_free(char *s);

/* Expands ${env:NAME} in the option s of field ("source.sftp.passphrase"),
 * or in def when s is NULL, into *out (caller frees, with
 * sl_source_wipe_free); *out is NULL when both are NULL. 0, or
 * SL_ERR_INVALID with errbuf naming the field, and the default when def was
 * used: "source.s3.access_key_id: environment variable AWS_ACCESS_KEY_ID is
 * not set (the default is ${env:AWS_ACCESS_KEY_ID})". */
int sl_source_expand(const char *s, const char *def, const char *field, char **out, char *errbuf,
                     size_t errsz);

/* Whether a transfer that failed with rc may succeed when tried again: a
 * timeout, a refused, unresolved or lost connection, a partial answer, a
 * failed TLS handshake, a broken HTTP/2 stream or FTP data connection. */
bool sl_source_transient(CURLcode rc);

/* The wait before retry n + 1 (n from 0) of a source whose first retry
 * waits first_ms: first_ms doubling up to a minute, a random time between
 * half and all of it (jitter). */
long sl_source_backoff_ms(long first_ms, long n);

/* One attempt of a transfer (ud: the source's own state): 0, or a negative
 * sl_err with errbuf set to why it failed, *transient telling whether
 * another attempt may do better, and *wait_ms (preset to -1) how long the
 * server asks to wait before it (Retry-After), -1 for the backoff. */
typedef int (*sl_source_attempt_fn)(void *ud, bool *transient, long *wait_ms, char *errbuf,
                                    size_t errsz);

/* Calls attempt until it succeeds, fails for good, or src->retries more
 * attempts failed too; between two it logs "REASON; retrying in D ms
 * (attempt N of M)" and waits. 0, or the last failure's sl_err with errbuf
 * set to its reason, " (after N attempts)" added when a transient failure
 * was retried. Blocks for the waits. */
int sl_source_attempts(const struct sl_source *src, sl_source_attempt_fn attempt, void *ud,
                       char *errbuf, size_t errsz);

/* A plain file name from s (n bytes: a path, an attachment's name): its
 * last segment after '/' or '\', without control characters, leading dots
 * or spaces and trailing spaces, at most 200 bytes of valid UTF-8 (a
 * character cut at the end is dropped), into out[sz]; "" when nothing is
 * left. */
void sl_source_plain_name(const char *s, size_t n, char *out, size_t sz);

/* Percent-decodes s[0..n) into out[sz] (cut to fit, NUL-terminated;
 * malformed escapes are kept as they are). Returns the decoded length. */
size_t sl_source_pct_decode(const char *s, size_t n, char *out, size_t sz);

/* The last path segment of url (any scheme; no query), percent-decoded, as
 * a plain name (sl_source_plain_name) into out[sz]; "" when the URL does not
 * parse or the segment is empty or no UTF-8. */
void sl_source_name_from_url(const char *url, char *out, size_t sz);

/* Copies the header value v (n bytes) into out[sz]: surrounding blanks and
 * the line break trimmed, control characters dropped, cut to fit. */
void sl_source_copy_value(char *out, size_t sz, const char *v, size_t n);

/* What an HTTP response's header said (http and s3 sources). */
struct sl_source_head {
    long status; /* 0: no status line yet */
    char reason[64];
    char etag[SL_VALIDATOR_MAX];
    char last_modified[64];
    char content_type[128];
};

/* Takes one header line (n bytes, as libcurl's CURLOPT_HEADERFUNCTION gets
 * it) into hd. A status line starts a new response (an interim 1xx, the
 * next hop of a redirect): hd is cleared, its status and reason kept, and
 * true returned, so that the caller clears what it keeps itself. ETag and
 * Last-Modified are kept when they fit whole, Content-Type cut to fit.
 * false for any other line. */
bool sl_source_head_line(struct sl_source_head *hd, const char *line, size_t n);

/* The value of the header line (n bytes) when its name is name (compared
 * case-insensitively), with *vl its length to the end of the line (line
 * break included: trim with sl_source_copy_value); else NULL. */
const char *sl_source_header(const char *line, size_t n, const char *name, size_t *vl);

/* The response's validators and content type into res (a 2xx answer's). */
void sl_source_head_result(const struct sl_source_head *hd, struct sl_fetch_res *res);

#define SL_SOURCE_ERRBODY_MAX 2048 /* bytes of an error answer kept for its message */

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX */

/* Where the body of a transfer goes: an fd (hashed with SHA-256 when asked)
 * or memory, at most cap bytes. Set up by sl_source_body_init, freed by
 * sl_source_body_cleanup; the source owns it, libcurl's callbacks fill it. */
struct sl_source_body {
    int fd;                                  /* the body goes here when >= 0, else into mem */
    struct sl_buf mem;                       /* fd < 0 */
    struct evp_md_ctx_st *md;                /* SHA-256 of what went to fd; NULL: not hashed */
    uint64_t cap;                            /* bytes a body may have; the caller may change it */
    uint64_t bytes;                          /* taken since the last reset */
    bool over;                               /* more than cap came: the transfer was stopped */
    int werr;                                /* errno of a failed write (ENOMEM: of mem), 0 none */
    char errbody[SL_SOURCE_ERRBODY_MAX + 1]; /* an error answer's first bytes */
    size_t nerrbody, discarded;
};

/* Prepares b for bodies into fd (< 0: into memory) of at most cap bytes,
 * hashed when hash (fd only). 0 or SL_ERR_NOMEM. */
int sl_source_body_init(struct sl_source_body *b, int fd, bool hash, uint64_t cap);
/* Frees what b holds (not the fd); accepts a zeroed or half-built b. */
void sl_source_body_cleanup(struct sl_source_body *b);

/* Starts a new body (an attempt, a redirect's next hop): counts and the
 * error answer cleared, mem emptied, or the fd truncated (from offset 0)
 * and the hash restarted. 0, or SL_ERR_IO with errbuf "cannot reset WHAT:
 * reason". */
int sl_source_body_reset(struct sl_source_body *b, const char *what, char *errbuf, size_t errsz);

/* Takes n bytes of the body: n, or 0 to stop the transfer (b->over: more
 * than cap; b->werr: the write failed). */
size_t sl_source_body_put(struct sl_source_body *b, const char *data, size_t n);

/* The CURLOPT_WRITEFUNCTION of a transfer whose CURLOPT_WRITEDATA is a
 * struct sl_source_body: sl_source_body_put. */
size_t sl_source_body_write(char *data, size_t size, size_t nmemb, void *body);

/* Takes n bytes of an error answer instead of the body: its first
 * SL_SOURCE_ERRBODY_MAX bytes are kept in errbody (NUL-terminated) for the
 * message, the rest read and dropped up to 64 KiB; n, or 0 after that. */
size_t sl_source_body_error(struct sl_source_body *b, const char *data, size_t n);

/* The SHA-256 (hex) and size of the hashed body into res. */
void sl_source_body_result(struct sl_source_body *b, struct sl_fetch_res *res);

/* Why a transfer failed (libcurl's rc) when it was not the server's doing,
 * into errbuf: the body could not be stored ("WHAT: cannot store the
 * STORED: reason", SL_ERR_IO), it passed its cap or the size the server
 * announced did ("WHAT: larger than LIMIT (N bytes)", SL_ERR_LIMIT), or the
 * guard refused the connection ("WHAT: the guard's reason",
 * SL_ERR_INVALID). 0 when none of these: the source explains rc itself. */
int sl_source_local_failure(const struct sl_source_body *b, const struct sl_curl_ctx *ctx,
                            CURLcode rc, const char *what, const char *stored, const char *limit,
                            uint64_t limit_bytes, char *errbuf, size_t errsz);

/* Why a transfer failed (libcurl's rc, curl_err its CURLOPT_ERRORBUFFER)
 * for a source with nothing more specific to say, into errbuf: "WHAT:
 * reason" (sl_curl_error), " (source.timeout)" added after a timeout; a
 * server certificate that was not accepted is "WHAT: the server's TLS
 * certificate was not accepted: libcurl's reason", with a hint at
 * source.tls.ca_file when no known CA signed it.
 * Returns SL_ERR_TIMEOUT, SL_ERR_RETRY or SL_ERR_INVALID, with *transient
 * (sl_source_transient) telling whether to try again. */
int sl_source_curl_failure(CURLcode rc, const struct sl_curl_ctx *ctx, const char *curl_err,
                           const char *what, bool *transient, char *errbuf, size_t errsz);

/* The job's CA file (source.tls.ca_file, or its older names
 * source.ftp.ca_file and source.imap.ca_file: src->ca_file_field) expanded
 * into *out (caller frees; NULL when the job gives none: the system's CAs)
 * and set as the CAs that verify c's TLS servers. 0, or SL_ERR_INVALID with
 * errbuf naming the option and the file that cannot be read. */
int sl_source_ca_file(CURL *c, const struct sl_source *src, char **out, char *errbuf, size_t errsz);

/* Cleans up c (NULL: nothing) after clearing the credentials libcurl keeps
 * copies of until then (user, password, key passphrase). */
void sl_source_curl_free(CURL *c);

#endif
