/*
 * sluice-test-s3: a small S3-compatible server for tests/integration/
 * test_fetch_remote.c (libmicrohttpd), serving the objects of a directory
 * (DIR/<bucket>/<key>) path-style: GET and HEAD /<bucket>/<key>.
 *
 *   sluice-test-s3 DIR REGION ACCESS_KEY_ID SECRET_ACCESS_KEY [CERT KEY]
 *       listens on 127.0.0.1 at a port the kernel picks, printed as one line
 *       "PORT\n" on stdout once it listens; one line a request on stderr
 *       ("GET /bucket/key 200 -"); runs until it is killed (by PID). With
 *       CERT and KEY (PEM files) it speaks HTTPS only (libmicrohttpd's
 *       GnuTLS).
 *   sluice-test-s3 --selftest
 *       checks the verifier against the signature AWS documents for its
 *       "GET Object" example (Authenticating Requests: AWS Signature Version
 *       4, header-based auth); exit 0 when it agrees.
 *
 * Every request's AWS Signature Version 4 is verified independently of the
 * client (OpenSSL: SHA-256 and HMAC-SHA256): the canonical request is rebuilt
 * from the request as received (method, the path percent-decoded and encoded
 * again the S3 way, the query sorted, the signed headers trimmed), the
 * signing key derived from the secret, date, region and "s3", and the
 * signature compared. As S3 does, it answers with an XML error: 403
 * AccessDenied (no Authorization, an unsigned x-amz-* header), 400
 * InvalidRequest (no x-amz-content-sha256), 403 InvalidAccessKeyId, 400
 * AuthorizationHeaderMalformed (another region or service), 403
 * RequestTimeTooSkewed (more than 15 minutes off), 403
 * SignatureDoesNotMatch, 404 NoSuchBucket or NoSuchKey. Objects have a
 * quoted MD5 ETag and a Last-Modified; If-None-Match with the ETag answers
 * 304.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sluice/source.h"
#include "sluice/util.h"

#define MAX_SKEW_S 900

static const char *dir, *region, *akid, *secret;

/* ---- SigV4 -------------------------------------------------------------- */

static void hex(const unsigned char *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = '\0';
}

static void sha256_hex(const char *s, size_t n, char out[65])
{
    unsigned char d[32];
    unsigned dl = 0;
    EVP_Digest(s, n, d, &dl, EVP_sha256(), NULL);
    hex(d, 32, out);
}

static void hmac(const unsigned char *key, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned ol = 32;
    HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, strlen(msg), out, &ol);
}

/* Percent-decodes s[0..n) into out (at least n + 1 bytes): the sources'
 * own decoder (source_util.c). */
static size_t decode(const char *s, size_t n, char *out)
{
    return sl_source_pct_decode(s, n, out, n + 1);
}

/* URI-encodes s[0..n) the SigV4 way (unreserved kept; '/' kept when
 * keep_slash) onto out at *o (out has room for 3n more). */
static void encode(const char *s, size_t n, bool keep_slash, char *out, size_t *o)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
            out[(*o)++] = (char)c;
        else
            *o += (size_t)sprintf(out + *o, "%%%02X", c);
    }
    out[*o] = '\0';
}

/* A header of the request by its lowercase name, NULL when absent. */
typedef const char *(*lookup_fn)(void *ctx, const char *name);

struct qarg {
    char *k, *v; /* encoded canonically */
};

static int qarg_cmp(const void *a, const void *b)
{
    const struct qarg *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

/* The canonical query of raw (as received, "a=1&b=%20"), into a new string. */
static char *canonical_query(const char *raw)
{
    size_t n = 0, cap = 1;
    for (const char *p = raw; *p; p++)
        cap += *p == '&';
    struct qarg *a = calloc(cap, sizeof(*a));
    char *out = calloc(1, strlen(raw) * 3 + 2);
    char *copy = strdup(raw);
    if (!a || !out || !copy)
        abort();
    char *save = NULL;
    for (char *t = strtok_r(copy, "&", &save); t; t = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(t, '=');
        const char *v = eq ? eq + 1 : "";
        size_t kl = eq ? (size_t)(eq - t) : strlen(t);
        char *dk = malloc(kl + 1), *dv = malloc(strlen(v) + 1);
        size_t dkl = decode(t, kl, dk), dvl = decode(v, strlen(v), dv);
        a[n].k = malloc(dkl * 3 + 1);
        a[n].v = malloc(dvl * 3 + 1);
        size_t o = 0;
        encode(dk, dkl, false, a[n].k, &o);
        o = 0;
        encode(dv, dvl, false, a[n].v, &o);
        free(dk);
        free(dv);
        n++;
    }
    qsort(a, n, sizeof(*a), qarg_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, "&");
        strcat(out, a[i].k);
        strcat(out, "=");
        strcat(out, a[i].v);
        free(a[i].k);
        free(a[i].v);
    }
    free(a);
    free(copy);
    return out;
}

/* Appends a header value trimmed, inner runs of spaces as one. */
static void add_trimmed(char *out, size_t *o, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t start = *o;
    for (; *v; v++) {
        if ((*v == ' ' || *v == '\t') && *o > start && out[*o - 1] == ' ')
            continue;
        out[(*o)++] = *v == '\t' ? ' ' : *v;
    }
    while (*o > start && out[*o - 1] == ' ')
        (*o)--;
    out[*o] = '\0';
}

/* Verifies the Authorization header auth of a request: 0, or the HTTP
 * status with S3's error code and message. now 0 skips the clock check (the
 * self-test's date is from 2013). */
static int verify(const char *method, const char *raw_path, const char *raw_query, lookup_fn look,
                  void *ctx, time_t now, const char **code, char *msg, size_t msgsz)
{
    const char *auth = look(ctx, "authorization");
    const char *date = look(ctx, "x-amz-date");
    const char *payload = look(ctx, "x-amz-content-sha256");
    char cred[512], signed_h[512], sig[128];
    *code = "AccessDenied";
    if (!auth) {
        snprintf(msg, msgsz, "Access Denied (no Authorization header)");
        return 403;
    }
    const char *pc = strstr(auth, "Credential="), *ps = strstr(auth, "SignedHeaders="),
               *pg = strstr(auth, "Signature=");
    if (strncmp(auth, "AWS4-HMAC-SHA256 ", 17) || !pc || !ps || !pg ||
        sscanf(pc + 11, "%511[^,]", cred) != 1 || sscanf(ps + 14, "%511[^,]", signed_h) != 1 ||
        sscanf(pg + 10, "%127[0-9a-f]", sig) != 1) {
        *code = "AuthorizationHeaderMalformed";
        snprintf(msg, msgsz, "The authorization header is malformed");
        return 400;
    }
    if (!payload) {
        *code = "InvalidRequest";
        snprintf(msg, msgsz, "Missing required header for this request: x-amz-content-sha256");
        return 400;
    }
    if (!date) {
        snprintf(msg, msgsz, "AWS authentication requires a valid Date or x-amz-date header");
        return 403;
    }
    /* Credential=AKID/DATE/REGION/SERVICE/aws4_request */
    char c_akid[128], c_date[16], c_region[64], c_service[32], c_term[32];
    if (sscanf(cred, "%127[^/]/%15[^/]/%63[^/]/%31[^/]/%31s", c_akid, c_date, c_region, c_service,
               c_term) != 5 ||
        strcmp(c_term, "aws4_request")) {
        *code = "AuthorizationHeaderMalformed";
        snprintf(msg, msgsz, "The authorization header is malformed; the Credential is mal-formed");
        return 400;
    }
    if (strcmp(c_akid, akid)) {
        *code = "InvalidAccessKeyId";
        snprintf(msg, msgsz, "The AWS Access Key Id you provided does not exist in our records.");
        return 403;
    }
    if (strcmp(c_region, region) || strcmp(c_service, "s3")) {
        *code = "AuthorizationHeaderMalformed";
        snprintf(msg, msgsz,
                 "The authorization header is malformed; the region '%s' is wrong; expecting "
                 "'%s'",
                 c_region, region);
        return 400;
    }
    struct tm tm = {0};
    if (strlen(date) != 16 || !strptime(date, "%Y%m%dT%H%M%SZ", &tm) || strncmp(date, c_date, 8)) {
        snprintf(msg, msgsz, "X-Amz-Date must be YYYYMMDDTHHMMSSZ, the date of the credential");
        return 403;
    }
    if (now) {
        time_t t = timegm(&tm);
        if (t < now - MAX_SKEW_S || t > now + MAX_SKEW_S) {
            *code = "RequestTimeTooSkewed";
            snprintf(msg, msgsz,
                     "The difference between the request time and the current time is too "
                     "large.");
            return 403;
        }
    }
    /* the signed headers must hold host and every x-amz-* the request has */
    char need[520];
    snprintf(need, sizeof(need), ";%s;", signed_h);
    if (!strstr(need, ";host;") || !strstr(need, ";x-amz-date;") ||
        !strstr(need, ";x-amz-content-sha256;")) {
        snprintf(msg, msgsz,
                 "host, x-amz-date and x-amz-content-sha256 must be signed "
                 "(SignedHeaders=%.200s)",
                 signed_h);
        return 403;
    }

    /* the canonical request */
    size_t cap = strlen(raw_path) * 3 + strlen(raw_query) * 3 + 16384;
    char *creq = malloc(cap), *dpath = malloc(strlen(raw_path) + 1);
    if (!creq || !dpath)
        abort();
    size_t o = (size_t)sprintf(creq, "%s\n", method);
    size_t dl = decode(raw_path, strlen(raw_path), dpath);
    encode(dpath, dl, true, creq, &o);
    char *q = canonical_query(raw_query);
    o += (size_t)sprintf(creq + o, "\n%s\n", q);
    free(q);
    free(dpath);
    char names[512];
    snprintf(names, sizeof(names), "%s", signed_h);
    char *save = NULL;
    for (char *h = strtok_r(names, ";", &save); h; h = strtok_r(NULL, ";", &save)) {
        const char *v = look(ctx, h);
        if (!v || o + strlen(h) + strlen(v) + 4 > cap - 200) {
            free(creq);
            *code = "SignatureDoesNotMatch";
            snprintf(msg, msgsz, "the signed header %s is not in the request", h);
            return 403;
        }
        o += (size_t)sprintf(creq + o, "%s:", h);
        add_trimmed(creq, &o, v);
        creq[o++] = '\n';
    }
    o += (size_t)snprintf(creq + o, cap - o, "\n%s\n%s", signed_h, payload);
    char creq_hash[65];
    sha256_hex(creq, o, creq_hash);
    free(creq);

    char sts[512], scope[160];
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", c_date, c_region);
    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", date, scope, creq_hash);
    char k0[300];
    unsigned char k1[32], k2[32], k3[32], k4[32], s[32];
    snprintf(k0, sizeof(k0), "AWS4%s", secret);
    hmac((const unsigned char *)k0, strlen(k0), c_date, k1);
    hmac(k1, 32, c_region, k2);
    hmac(k2, 32, "s3", k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, s);
    char want[65];
    hex(s, 32, want);
    if (strlen(sig) != 64 || CRYPTO_memcmp(want, sig, 64)) {
        *code = "SignatureDoesNotMatch";
        snprintf(msg, msgsz,
                 "The request signature we calculated does not match the signature you "
                 "provided. Check your key and signing method.");
        return 403;
    }
    return 0;
}

/* ---- the self-test ------------------------------------------------------ */

struct fixed {
    const char *const *kv; /* name, value, ..., NULL */
};

static const char *fixed_look(void *ctx, const char *name)
{
    const struct fixed *f = ctx;
    for (size_t i = 0; f->kv[i]; i += 2)
        if (!strcasecmp(f->kv[i], name))
            return f->kv[i + 1];
    return NULL;
}

/* AWS's documented example: GET /test.txt of examplebucket with a Range,
 * signed 20130524T000000Z in us-east-1 with the example secret. */
static int selftest(void)
{
    static const char *const kv[] = {
        "host",
        "examplebucket.s3.amazonaws.com",
        "range",
        "bytes=0-9",
        "x-amz-content-sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "x-amz-date",
        "20130524T000000Z",
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        NULL,
    };
    struct fixed f = {kv};
    const char *code = "";
    char msg[512] = "";
    region = "us-east-1";
    akid = "AKIAIOSFODNN7EXAMPLE";
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    int st = verify("GET", "/test.txt", "", fixed_look, &f, 0, &code, msg, sizeof(msg));
    if (st) {
        fprintf(stderr, "selftest: the documented signature is refused: %d %s %s\n", st, code, msg);
        return 1;
    }
    /* and one changed byte of the secret is refused */
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    st = verify("GET", "/test.txt", "", fixed_look, &f, 0, &code, msg, sizeof(msg));
    if (st != 403 || strcmp(code, "SignatureDoesNotMatch")) {
        fprintf(stderr, "selftest: a wrong secret is not refused (%d %s)\n", st, code);
        return 1;
    }
    printf("selftest ok\n");
    return 0;
}

/* ---- the server --------------------------------------------------------- */

static const char *conn_look(void *ctx, const char *name)
{
    return MHD_lookup_connection_value(ctx, MHD_HEADER_KIND, name);
}

struct qbuild {
    char *p;
    size_t n, cap;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct qbuild *q = cls;
    size_t need = strlen(key) + (value ? strlen(value) : 0) + 3;
    if (q->n + need >= q->cap) {
        q->cap = (q->n + need) * 2;
        q->p = realloc(q->p, q->cap);
        if (!q->p)
            abort();
    }
    q->n += (size_t)sprintf(q->p + q->n, "%s%s=%s", q->n ? "&" : "", key, value ? value : "");
    return MHD_YES;
}

/* Whether an x-amz-* header of the request is missing from signed. */
struct unsigned_check {
    const char *signed_h;
    bool bad;
};

static enum MHD_Result check_amz(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct unsigned_check *u = cls;
    if (strncasecmp(key, "x-amz-", 6))
        return MHD_YES;
    char lower[128], want[140];
    size_t i = 0;
    for (; key[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)tolower((unsigned char)key[i]);
    lower[i] = '\0';
    snprintf(want, sizeof(want), ";%s;", lower);
    char have[600];
    snprintf(have, sizeof(have), ";%s;", u->signed_h);
    if (!strstr(have, want))
        u->bad = true;
    return MHD_YES;
}

static enum MHD_Result send_error(struct MHD_Connection *c, const char *method,
                                  const char *raw_path, int status, const char *code,
                                  const char *msg)
{
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                     "<Message>%s</Message><Resource>%.200s</Resource><RequestId>sluice-test"
                     "</RequestId></Error>",
                     code, msg, raw_path);
    struct MHD_Response *r = MHD_create_response_from_buffer(strcmp(method, "HEAD") ? (size_t)n : 0,
                                                             body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/xml");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    fprintf(stderr, "%s %s %d %s\n", method, raw_path, status, code);
    return ret;
}

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcasecmp(dot, ".csv"))
        return "text/csv";
    if (!strcasecmp(dot, ".json"))
        return "application/json";
    if (!strcasecmp(dot, ".xml"))
        return "application/xml";
    return "application/octet-stream";
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return send_error(c, method, url, 405, "MethodNotAllowed",
                          "The specified method is not allowed against this resource.");
    struct qbuild q = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &q);
    const char *code = "";
    char msg[512] = "";
    int st = verify(method, url, q.p ? q.p : "", conn_look, c, time(NULL), &code, msg, sizeof(msg));
    free(q.p);
    if (st)
        return send_error(c, method, url, st, code, msg);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "authorization");
    const char *ps = strstr(auth, "SignedHeaders=");
    char signed_h[512] = "";
    sscanf(ps + 14, "%511[^,]", signed_h);
    struct unsigned_check u = {.signed_h = signed_h};
    MHD_get_connection_values(c, MHD_HEADER_KIND, check_amz, &u);
    if (u.bad)
        return send_error(c, method, url, 403, "AccessDenied",
                          "There were headers present in the request which were not signed");

    /* /bucket/key */
    size_t ul = strlen(url);
    char *path = malloc(ul + 1);
    if (!path)
        abort();
    decode(url, ul, path);
    const char *bucket = path[0] == '/' ? path + 1 : path;
    const char *slash = strchr(bucket, '/');
    size_t bl = slash ? (size_t)(slash - bucket) : strlen(bucket);
    const char *key = slash ? slash + 1 : "";
    char file[4096], bdir[2048];
    snprintf(bdir, sizeof(bdir), "%s/%.*s", dir, (int)bl, bucket);
    struct stat sb;
    enum MHD_Result ret;
    if (!bl || memchr(bucket, '.', 1) || stat(bdir, &sb) || !S_ISDIR(sb.st_mode)) {
        ret =
            send_error(c, method, url, 404, "NoSuchBucket", "The specified bucket does not exist");
        goto out;
    }
    snprintf(file, sizeof(file), "%s/%s", bdir, key);
    if (!key[0] || strstr(key, "..") || stat(file, &sb) || !S_ISREG(sb.st_mode)) {
        ret = send_error(c, method, url, 404, "NoSuchKey", "The specified key does not exist.");
        goto out;
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = send_error(c, method, url, 500, "InternalError", strerror(errno));
        goto out;
    }
    /* the ETag: the MD5 of the object, quoted */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536], dig[16];
    unsigned dlen = 0;
    EVP_DigestInit_ex(md, EVP_md5(), NULL);
    for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;)
        EVP_DigestUpdate(md, buf, (size_t)n);
    EVP_DigestFinal_ex(md, dig, &dlen);
    EVP_MD_CTX_free(md);
    lseek(fd, 0, SEEK_SET);
    char etag[40], lm[64];
    etag[0] = '"';
    hex(dig, 16, etag + 1);
    strcat(etag, "\"");
    struct tm tm;
    gmtime_r(&sb.st_mtime, &tm);
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "if-none-match");
    struct MHD_Response *r;
    int status = 200;
    if (inm && (!strcmp(inm, etag) || !strcmp(inm, "*"))) {
        close(fd);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        status = 304;
    } else if (!strcmp(method, "HEAD")) {
        close(fd);
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    }
    MHD_add_response_header(r, "ETag", etag);
    MHD_add_response_header(r, "Last-Modified", lm);
    MHD_add_response_header(r, "Content-Type", type_of(key));
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    fprintf(stderr, "%s %s %d -\n", method, url, status);
out:
    free(path);
    return ret;
}

/* Keeps the path as received: the signature covers the encoded form. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--selftest"))
        return selftest();
    if (argc != 5 && argc != 7) {
        fprintf(stderr,
                "usage: sluice-test-s3 DIR REGION ACCESS_KEY_ID SECRET [CERT KEY] | --selftest\n");
        return 2;
    }
    char *cert = NULL, *key = NULL;
    if (argc == 7) {
        size_t len = 0;
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            fprintf(stderr, "sluice-test-s3: this libmicrohttpd has no TLS\n");
            return 1;
        }
        if (!(cert = sl_read_file(argv[5], &len)) || !(key = sl_read_file(argv[6], &len))) {
            fprintf(stderr, "sluice-test-s3: cannot read %s: %s\n", cert ? argv[6] : argv[5],
                    strerror(errno));
            return 1;
        }
    }
    dir = argv[1];
    region = argv[2];
    akid = argv[3];
    secret = argv[4];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    struct MHD_Daemon *d =
        cert
            ? MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, handle, NULL,
                               MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                               MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END)
            : MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR,
                               (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                               MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "sluice-test-s3: cannot start the server\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        fprintf(stderr, "sluice-test-s3: no port\n");
        return 1;
    }
    printf("%u\n", (unsigned)info->port);
    fflush(stdout);
    for (;;)
        pause();
}
