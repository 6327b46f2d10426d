/*
 * The SSRF guard of every remote source (source.h), and the libcurl setup
 * that every source built on libcurl shares.
 *
 * A job's source URL is user input, and the fetcher runs inside the
 * operator's network: without a guard, "http://169.254.169.254/..." reads
 * the cloud's credentials and "http://10.0.0.5:6379/" talks to an internal
 * Redis. Checking the URL's host name is not enough (DNS may answer anything,
 * differently the second time, and redirects go elsewhere), so the check
 * sits where libcurl opens each socket (CURLOPT_OPENSOCKETFUNCTION): the
 * address it is about to connect to, after resolution, for the first
 * request, every redirect and every retry. Addresses that are not public
 * Internet addresses are refused unless the operator's allow-list
 * (SLUICE_ALLOW_HOSTS) names them; proxies from the environment are turned
 * off, since a proxy would make the connection the guard cannot see.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/err.h"
#include "sluice/source.h"
#include "sluice/util.h"

#define HOST_MAX 253

/* One allow-list entry: an address range, or a host name. */
struct allow {
    int family;            /* AF_INET, AF_INET6, or 0 for a host name */
    unsigned char net[16]; /* network address (4 or 16 bytes) */
    unsigned bits;         /* prefix length */
    char *host;            /* host name entries */
};

struct sl_fetch_guard {
    struct allow *a;
    size_t n;
};

/* ---- address classes ---------------------------------------------------- */

struct range {
    unsigned char net[16];
    unsigned bits;
    const char *what;
};

/* Checked in order: the more specific first. */
static const struct range V4[] = {
    {{169, 254, 169, 254}, 32, "cloud metadata (169.254.169.254)"},
    {{0}, 8, "\"this network\" (0.0.0.0/8)"},
    {{10}, 8, "private (10.0.0.0/8)"},
    {{100, 64}, 10, "carrier-grade NAT (100.64.0.0/10)"},
    {{127}, 8, "loopback (127.0.0.0/8)"},
    {{169, 254}, 16, "link-local (169.254.0.0/16)"},
    {{172, 16}, 12, "private (172.16.0.0/12)"},
    {{192, 0, 0}, 24, "IETF protocol assignments (192.0.0.0/24)"},
    {{192, 0, 2}, 24, "documentation (192.0.2.0/24)"},
    {{192, 88, 99}, 24, "6to4 relay (192.88.99.0/24)"},
    {{192, 168}, 16, "private (192.168.0.0/16)"},
    {{198, 18}, 15, "benchmarking (198.18.0.0/15)"},
    {{198, 51, 100}, 24, "documentation (198.51.100.0/24)"},
    {{203, 0, 113}, 24, "documentation (203.0.113.0/24)"},
    {{224}, 4, "multicast (224.0.0.0/4)"},
    {{240}, 4, "reserved (240.0.0.0/4)"},
};

static const struct range V6[] = {
    {{0}, 128, "unspecified (::)"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback (::1)"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, "IPv4-mapped IPv6 (::ffff:0:0/96)"},
    {{0}, 96, "IPv4-compatible IPv6 (::/96)"},
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, "local-use NAT64 (64:ff9b:1::/48)"},
    {{0x01, 0x00}, 64, "discard (100::/64)"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation (2001:db8::/32)"},
    {{0x20, 0x01, 0, 0}, 32, "Teredo (2001::/32)"},
    {{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54},
     128,
     "cloud metadata (fd00:ec2::254)"},
    {{0xfc}, 7, "unique local (fc00::/7)"},
    {{0xfe, 0x80}, 10, "link-local (fe80::/10)"},
    {{0xfe, 0xc0}, 10, "site-local (fec0::/10)"},
    {{0xff}, 8, "multicast (ff00::/8)"},
};

static bool prefix_match(const unsigned char *a, const unsigned char *net, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, whole))
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

static const char *class_v4(const unsigned char *a)
{
    for (size_t i = 0; i < sizeof(V4) / sizeof(V4[0]); i++)
        if (prefix_match(a, V4[i].net, V4[i].bits))
            return V4[i].what;
    return NULL;
}

static const char *class_v6(const unsigned char *a)
{
    for (size_t i = 0; i < sizeof(V6) / sizeof(V6[0]); i++)
        if (prefix_match(a, V6[i].net, V6[i].bits))
            return V6[i].what;
    /* addresses that embed an IPv4 address reach it */
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    if (!memcmp(a, nat64, 12) && class_v4(a + 12))
        return "NAT64 (64:ff9b::/96) of a non-public IPv4 address";
    if (a[0] == 0x20 && a[1] == 0x02 && class_v4(a + 2))
        return "6to4 (2002::/16) of a non-public IPv4 address";
    return NULL;
}

const char *sl_addr_class(const struct sockaddr *sa)
{
    if (!sa)
        return "no address";
    if (sa->sa_family == AF_INET)
        return class_v4((const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return class_v6((const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return "not an IP address";
}

/* ---- the allow-list ----------------------------------------------------- */

static bool host_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HOST_MAX || s[0] == '.' || s[0] == '-' || strstr(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
            return false;
    return true;
}

/* Parses one entry (trimmed, NUL-terminated, writable) into *e. */
static int parse_entry(char *s, struct allow *e, char *errbuf, size_t errsz)
{
    char shown[128];
    snprintf(shown, sizeof(shown), "%s", s);
    if (strstr(s, "://"))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "SLUICE_ALLOW_HOSTS: '%s' is no IP address, CIDR or host name (give the "
                         "host, not a URL)",
                         shown);
    char *slash = strchr(s, '/');
    long bits = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (!isdigit((unsigned char)slash[1]) || *end || errno || bits < 0)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "SLUICE_ALLOW_HOSTS: '%s' has a bad prefix length", shown);
    }
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s[n - 1] = '\0';
        s++;
    }
    if (inet_pton(AF_INET, s, e->net) == 1) {
        e->family = AF_INET;
        if (bits > 32)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "SLUICE_ALLOW_HOSTS: '%s': an IPv4 prefix is at most 32 bits", shown);
        e->bits = bits < 0 ? 32 : (unsigned)bits;
        return 0;
    }
    if (inet_pton(AF_INET6, s, e->net) == 1) {
        e->family = AF_INET6;
        if (bits > 128)
            return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                             "SLUICE_ALLOW_HOSTS: '%s': an IPv6 prefix is at most 128 bits", shown);
        e->bits = bits < 0 ? 128 : (unsigned)bits;
        return 0;
    }
    if (bits >= 0 || !host_ok(s))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "SLUICE_ALLOW_HOSTS: '%s' is no IP address, CIDR or host name", shown);
    for (char *p = s; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!(e->host = strdup(s)))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    return 0;
}

struct sl_fetch_guard *sl_fetch_guard_new(const char *allow, char *errbuf, size_t errsz)
{
    struct sl_fetch_guard *g = calloc(1, sizeof(*g));
    char *copy = allow ? strdup(allow) : NULL;
    if (!g || (allow && !copy)) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    size_t cap = 1;
    for (const char *p = allow; p && *p; p++)
        cap += *p == ',';
    if (copy && !(g->a = calloc(cap, sizeof(*g->a)))) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        if (!n)
            continue;
        if (parse_entry(tok, &g->a[g->n], errbuf, errsz))
            goto fail;
        g->n++;
    }
    free(copy);
    return g;
fail:
    free(copy);
    sl_fetch_guard_destroy(g);
    return NULL;
}

void sl_fetch_guard_destroy(struct sl_fetch_guard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->a[i].host);
    free(g->a);
    free(g);
}

/* Whether the address (family, 4 or 16 bytes) is in a range entry of g. An
 * IPv4 range also holds the IPv4-mapped IPv6 form of its addresses. */
static bool in_ranges(const struct sl_fetch_guard *g, int family, const unsigned char *a)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    for (size_t i = 0; i < g->n; i++) {
        const struct allow *e = &g->a[i];
        if (e->family == family && prefix_match(a, e->net, e->bits))
            return true;
        if (e->family == AF_INET && family == AF_INET6 && !memcmp(a, mapped, 12) &&
            prefix_match(a + 12, e->net, e->bits))
            return true;
    }
    return false;
}

/* Whether a host name entry of g resolves to the address (now: a name's
 * addresses may change). */
static bool in_hosts(const struct sl_fetch_guard *g, int family, const unsigned char *a)
{
    for (size_t i = 0; i < g->n; i++) {
        if (!g->a[i].host)
            continue;
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        if (getaddrinfo(g->a[i].host, NULL, &hints, &res))
            continue;
        bool hit = false;
        for (struct addrinfo *r = res; r && !hit; r = r->ai_next) {
            if (r->ai_family == AF_INET && family == AF_INET)
                hit = !memcmp(&((struct sockaddr_in *)r->ai_addr)->sin_addr, a, 4);
            else if (r->ai_family == AF_INET6 && family == AF_INET6)
                hit = !memcmp(&((struct sockaddr_in6 *)r->ai_addr)->sin6_addr, a, 16);
        }
        freeaddrinfo(res);
        if (hit)
            return true;
    }
    return false;
}

int sl_fetch_guard_check(const struct sl_fetch_guard *g, const struct sockaddr *sa, char *why,
                         size_t whysz)
{
    char text[INET6_ADDRSTRLEN] = "?";
    const char *cls = sl_addr_class(sa);
    if (!cls)
        return 0;
    if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
        return sl_seterr(why, whysz, SL_ERR_INVALID, "refused to connect: %s", cls);
    int family = sa->sa_family;
    const unsigned char *a =
        family == AF_INET ? (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr
                          : (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (g && (in_ranges(g, family, a) || in_hosts(g, family, a)))
        return 0;
    inet_ntop(family, a, text, sizeof(text));
    return sl_seterr(why, whysz, SL_ERR_INVALID,
                     "refused to connect to %s: a %s address, not a public one (the SSRF guard; "
                     "the operator may allow it in SLUICE_ALLOW_HOSTS)",
                     text, cls);
}

/* ---- libcurl ------------------------------------------------------------ */

/* Opens the socket of each connection libcurl makes, after the guard said
 * yes; CURL_SOCKET_BAD (libcurl: "could not connect") with ctx->refused set
 * when it said no. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct sl_curl_ctx *ctx = clientp;
    if (sl_fetch_guard_check(ctx->guard, &addr->addr, ctx->refused, sizeof(ctx->refused)))
        return CURL_SOCKET_BAD;
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if ((rc = curl_easy_setopt(c, opt, val)) != CURLE_OK) {                                    \
            what = #opt;                                                                           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

int sl_curl_setup(CURL *c, const struct sl_curl_opts *o, struct sl_curl_ctx *ctx, char *errbuf,
                  size_t errsz)
{
    CURLcode curl_init_rc = (CURLcode)sl_curl_global();
    if (curl_init_rc != CURLE_OK)
        return sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot initialize libcurl: %s",
                         curl_easy_strerror(curl_init_rc));
    if (!c || !o || !ctx || !o->protocols)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "sl_curl_setup: no handle or protocols");
    CURLcode rc = CURLE_OK;
    const char *what = "";
    ctx->refused[0] = '\0';
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, ctx);
    SETOPT(CURLOPT_PROTOCOLS_STR, o->protocols);
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, o->redir_protocols ? o->redir_protocols : o->protocols);
    SETOPT(CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
    SETOPT(CURLOPT_MAXREDIRS, o->max_redirects > 0 ? o->max_redirects : 5L);
    SETOPT(CURLOPT_PROXY, ""); /* never a proxy from the environment */
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_CONNECTTIMEOUT, o->connect_timeout > 0 ? o->connect_timeout : 10L);
    SETOPT(CURLOPT_TIMEOUT, o->timeout > 0 ? o->timeout : 0L);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    if (o->max_bytes)
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    return 0;
fail:
    return sl_seterr(errbuf, errsz, rc == CURLE_OUT_OF_MEMORY ? SL_ERR_NOMEM : SL_ERR_INVALID,
                     "cannot set up libcurl (%s): %s", what, curl_easy_strerror(rc));
}

const char *sl_curl_error(CURLcode rc, const struct sl_curl_ctx *ctx, const char *curl_err)
{
    if (ctx && ctx->refused[0] && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST))
        return ctx->refused;
    if (curl_err && curl_err[0])
        return curl_err;
    return curl_easy_strerror(rc);
}

void sl_url_redact(const char *url, char *out, size_t n)
{
    const char *sep = strstr(url, "://");
    const char *host = sep ? sep + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = NULL;
    for (const char *p = host; p < end; p++)
        if (*p == '@')
            at = p;
    if (!at) {
        snprintf(out, n, "%s", url);
        return;
    }
    snprintf(out, n, "%.*s***%s", (int)(host - url), url, at);
}
