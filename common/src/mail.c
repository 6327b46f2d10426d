/*
 * E-mail (mail.h): the SMTP settings, the MIME message and its delivery.
 *
 * The message is built with GMime 3 and written once, CRLF line ends, into
 * an unlinked temporary file; the attachment goes there from its own file
 * through GMime's base64 filter, so neither is ever held in memory. Each
 * attempt is one libcurl SMTP session that reads that file. libcurl tells
 * only that a session failed, not which recipient the server refused or
 * what it said, so a debug callback follows the dialogue: the verb of each
 * command sent (never its arguments, which for AUTH are the credentials)
 * and the final line of each reply, which gives every RCPT TO its answer
 * and every failure the server's own words, and tells a transient refusal
 * (4xx) from a permanent one (5xx).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gmime/gmime.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/mail.h"
#include "sluice/util.h"

#define COMP           "mail"
#define BACKOFF_MAX_MS 60000L /* no wait between attempts is longer */
#define PASSWORD_MAX   4096   /* bytes of SLUICE_SMTP_PASSWORD_FILE */
#define REPLY_MAX      200    /* bytes of a server reply kept for messages */
#define VERB_MAX       12

/* Every setting, SLUICE_SMTP_URL first. */
static const char *const smtp_vars[] = {
    "SLUICE_SMTP_URL",      "SLUICE_SMTP_USER",
    "SLUICE_SMTP_PASSWORD", "SLUICE_SMTP_PASSWORD_FILE",
    "SLUICE_SMTP_FROM",     "SLUICE_SMTP_STARTTLS",
    "SLUICE_SMTP_CA_FILE",  "SLUICE_SMTP_TIMEOUT",
    "SLUICE_SMTP_RETRIES",  "SLUICE_SMTP_RETRY_DELAY_MS",
};

/* ---- small helpers ------------------------------------------------------ */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static bool is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Appends the formatted text to buf (size sz) after sep when buf is not
 * empty; what does not fit becomes "...". */
static __attribute__((format(printf, 4, 5))) void append(char *buf, size_t sz, const char *sep,
                                                         const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 4 >= sz)
        return; /* already full (ends in "...") */
    if (len)
        len += (size_t)snprintf(buf + len, sz - len, "%s", sep);
    if (len < sz) {
        va_list ap;
        va_start(ap, fmt);
        len += (size_t)vsnprintf(buf + len, sz - len, fmt, ap);
        va_end(ap);
    }
    if (len >= sz)
        memcpy(buf + sz - 4, "...", 4);
}

/* A setting's value, NULL when unset or empty. */
static const char *setting(sl_smtp_lookup_fn get, void *ud, const char *name)
{
    const char *v = get(name, ud);
    return v && v[0] ? v : NULL;
}

/* A whole number of name (decimal digits only) in [min, max] into *out. */
static int parse_num(const char *name, const char *v, long min, long max, long *out, char *errbuf,
                     size_t errsz)
{
    long x = 0;
    bool ok = v[0] != '\0' && strlen(v) <= 9;
    for (const char *p = v; ok && *p; p++) {
        ok = *p >= '0' && *p <= '9';
        x = x * 10 + (*p - '0');
    }
    if (!ok || x < min || x > max)
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: '%s' is not a whole number from %ld to %ld", name,
                         has_ctl(v) ? "?" : v, min, max);
    *out = x;
    return 0;
}

/* ---- addresses ---------------------------------------------------------- */

/* One mailbox: an optional display name and the addr-spec. */
struct mailbox {
    char *name; /* NULL: none */
    char *addr;
};

static void mailbox_cleanup(struct mailbox *mb)
{
    free(mb->name);
    free(mb->addr);
    mb->name = mb->addr = NULL;
}

/* Whether a is an addr-spec we send to: a dot-atom local part and a domain
 * of letters, digits and hyphens (or an address literal), ASCII only (an
 * IDN domain in its xn-- form), at most 254 bytes (RFC 5321). */
static bool addr_spec_ok(const char *a)
{
    const char *at = strrchr(a, '@');
    size_t len = strlen(a);
    if (!at || at == a || len > 254 || at - a > 64 || !at[1])
        return false;
    for (const char *p = a; p < at; p++) {
        if (*p == '.') {
            if (p == a || p + 1 == at || p[1] == '.')
                return false;
        } else if (!is_alnum((unsigned char)*p) && !strchr("!#$%&'*+-/=?^_`{|}~", *p)) {
            return false;
        }
    }
    const char *d = at + 1;
    if (d[0] == '[') {
        size_t n = strlen(d);
        if (n < 3 || d[n - 1] != ']')
            return false;
        for (const char *p = d + 1; p < d + n - 1; p++)
            if (!is_alnum((unsigned char)*p) && !strchr(":.", *p))
                return false;
        return true;
    }
    for (const char *label = d;;) {
        size_t n = strcspn(label, ".");
        if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
            return false;
        for (size_t i = 0; i < n; i++)
            if (!is_alnum((unsigned char)label[i]) && label[i] != '-')
                return false;
        if (!label[n])
            return true;
        label += n + 1;
    }
}

/* Parses s, which must be one mailbox ("a@x" or "Name <a@x>"), into mb (the
 * caller cleans it up). what names s in messages ("SLUICE_SMTP_FROM",
 * "recipient 2"). 0, SL_ERR_INVALID or SL_ERR_NOMEM. */
static int parse_mailbox(const char *what, const char *s, struct mailbox *mb, char *errbuf,
                         size_t errsz)
{
    memset(mb, 0, sizeof(*mb));
    if (!s || !s[0])
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the address is empty", what);
    if (has_ctl(s))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "%s: the address holds a control character (CR, LF, ...)", what);
    if (!sl_utf8_valid(s, strlen(s)))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the address is not valid UTF-8", what);
    sl_gmime_global();
    InternetAddressList *list = internet_address_list_parse(NULL, s);
    InternetAddress *ia = NULL;
    int rc = 0;
    if (!list || internet_address_list_length(list) != 1 ||
        !INTERNET_ADDRESS_IS_MAILBOX(ia = internet_address_list_get_address(list, 0)) ||
        !addr_spec_ok(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: '%s' is not one valid e-mail address (a@example.com or "
                       "Name <a@example.com>)",
                       what, s);
        goto done;
    }
    const char *name = internet_address_get_name(ia);
    mb->addr = strdup(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
    mb->name = name && name[0] ? strdup(name) : NULL;
    if (!mb->addr || (name && name[0] && !mb->name)) {
        mailbox_cleanup(mb);
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "%s: out of memory", what);
    }
done:
    if (list)
        g_object_unref(list);
    return rc;
}

/* ---- configuration ------------------------------------------------------ */

/* The parts of SLUICE_SMTP_URL: cfg->url and cfg->implicit_tls, and its
 * userinfo percent-decoded (*user, *password: NULL when absent; the caller
 * frees them). Messages never echo the URL: it may hold a password. */
static int parse_url(struct sl_smtp_config *cfg, const char *v, char **user, char **password,
                     char *errbuf, size_t errsz)
{
    static const char *const var = "SLUICE_SMTP_URL";
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *frag = NULL,
         *opts = NULL;
    int rc = 0;
    *user = *password = NULL;
    CURLU *u = curl_url();
    if (!u)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "%s: out of memory", var);
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, v, CURLU_NON_SUPPORT_SCHEME);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (uc != CURLUE_OK) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s is not a valid URL (%s): expected smtp://host:port or smtps://host:port",
                       var, curl_url_strerror(uc));
        goto done;
    }
    if (strcasecmp(scheme, "smtp") && strcasecmp(scheme, "smtps")) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: the scheme must be smtp:// or smtps://, not %s://", var,
                       has_ctl(scheme) ? "?" : scheme);
        goto done;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
    curl_url_get(u, CURLUPART_OPTIONS, &opts, 0);
    if ((path && strcmp(path, "/") && path[0]) || query || frag) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: a path, query or fragment is not allowed (smtp://host:port)", var);
        goto done;
    }
    if (opts) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: login options (;AUTH=...) are not supported", var);
        goto done;
    }
    if ((uc = curl_url_get(u, CURLUPART_USER, user, CURLU_URLDECODE)) != CURLUE_OK &&
        uc != CURLUE_NO_USER) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the user name cannot be decoded", var);
        goto done;
    }
    if ((uc = curl_url_get(u, CURLUPART_PASSWORD, password, CURLU_URLDECODE)) != CURLUE_OK &&
        uc != CURLUE_NO_PASSWORD) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the password cannot be decoded", var);
        goto done;
    }
    if ((*user && has_ctl(*user)) || (*password && has_ctl(*password))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s: the user name or password holds a control character", var);
        goto done;
    }
    cfg->implicit_tls = !strcasecmp(scheme, "smtps");
    if (asprintf(&cfg->url, "%s://%s%s%s", cfg->implicit_tls ? "smtps" : "smtp", host,
                 port ? ":" : "", port ? port : "") < 0) {
        cfg->url = NULL;
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "%s: out of memory", var);
    }
done:
    if (rc) {
        if (*user)
            explicit_bzero(*user, strlen(*user));
        if (*password)
            explicit_bzero(*password, strlen(*password));
        curl_free(*user);
        curl_free(*password);
        *user = *password = NULL;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(frag);
    curl_free(opts);
    curl_url_cleanup(u);
    return rc;
}

/* The password held in the file at path (SLUICE_SMTP_PASSWORD_FILE, a
 * Kubernetes secret), trailing CR and LF dropped, into *out. */
static int read_password_file(const char *path, char **out, char *errbuf, size_t errsz)
{
    static const char *const var = "SLUICE_SMTP_PASSWORD_FILE";
    char *buf = malloc(PASSWORD_MAX + 1);
    int rc = 0;
    if (!buf)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "%s: out of memory", var);
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: cannot read %s: %s", var, path,
                       strerror(errno));
        goto done;
    }
    size_t n = fread(buf, 1, PASSWORD_MAX + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad || n > PASSWORD_MAX) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: cannot read %s: %s", var, path,
                       bad ? "read error" : "longer than 4096 bytes");
        goto done;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (!n || memchr(buf, '\0', n) || has_ctl(buf)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s: the password in %s is %s", var, path,
                       n ? "not one line of text" : "empty");
        goto done;
    }
    *out = buf;
    return 0;
done:
    explicit_bzero(buf, PASSWORD_MAX + 1);
    free(buf);
    return rc;
}

/* "sluice@<hostname>", or "sluice@localhost" when the host name is no
 * valid domain. */
static char *default_from(void)
{
    char host[256] = "", *from = NULL;
    if (gethostname(host, sizeof(host) - 1))
        host[0] = '\0';
    host[sizeof(host) - 1] = '\0';
    if (asprintf(&from, "sluice@%s", host) < 0)
        return NULL;
    if (!host[0] || !addr_spec_ok(from)) {
        free(from);
        from = strdup("sluice@localhost");
    }
    return from;
}

static const char *env_lookup(const char *name, void *ud)
{
    (void)ud;
    return getenv(name);
}

int sl_smtp_config_load(struct sl_smtp_config *cfg, sl_smtp_lookup_fn get, void *ud, char *errbuf,
                        size_t errsz)
{
    char *url_user = NULL, *url_password = NULL;
    const char *v;
    int rc = 0;
    memset(cfg, 0, sizeof(*cfg));
    cfg->starttls = SL_SMTP_TLS_REQUIRED;
    cfg->timeout_s = SL_SMTP_DEFAULT_TIMEOUT_S;
    cfg->retries = SL_SMTP_DEFAULT_RETRIES;
    cfg->retry_delay_ms = SL_SMTP_DEFAULT_RETRY_DELAY_MS;
    sl_curl_global();

    const char *url = setting(get, ud, "SLUICE_SMTP_URL");
    if (!url) {
        /* e-mail is off: a setting made for it would be silently ignored */
        for (size_t i = 1; i < SL_ARRAY_LEN(smtp_vars); i++)
            if (setting(get, ud, smtp_vars[i]))
                return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                                 "%s is set but SLUICE_SMTP_URL is not (e-mail is off without it)",
                                 smtp_vars[i]);
        return 0;
    }
    if ((rc = parse_url(cfg, url, &url_user, &url_password, errbuf, errsz)))
        goto fail;

    /* the credentials: each variable wins over the URL's userinfo */
    const char *user = setting(get, ud, "SLUICE_SMTP_USER");
    const char *pw = setting(get, ud, "SLUICE_SMTP_PASSWORD");
    const char *pw_file = setting(get, ud, "SLUICE_SMTP_PASSWORD_FILE");
    if ((user && has_ctl(user)) || (pw && has_ctl(pw))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "%s holds a control character",
                       user && has_ctl(user) ? "SLUICE_SMTP_USER" : "SLUICE_SMTP_PASSWORD");
        goto fail;
    }
    if (pw && pw_file) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "SLUICE_SMTP_PASSWORD and SLUICE_SMTP_PASSWORD_FILE are both set: set one");
        goto fail;
    }
    if (!user && url_user && url_user[0])
        user = url_user;
    if (!pw && !pw_file && url_password && url_password[0])
        pw = url_password;
    if (pw_file && (rc = read_password_file(pw_file, &cfg->password, errbuf, errsz)))
        goto fail;
    if ((user && !(cfg->user = strdup(user))) || (pw && !(cfg->password = strdup(pw)))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "SLUICE_SMTP_USER: out of memory");
        goto fail;
    }
    if (cfg->password && !cfg->user) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "%s is set but no user (SLUICE_SMTP_USER or the user of SLUICE_SMTP_URL)",
                       pw        ? "SLUICE_SMTP_PASSWORD"
                       : pw_file ? "SLUICE_SMTP_PASSWORD_FILE"
                                 : "the password of SLUICE_SMTP_URL");
        goto fail;
    }
    if (cfg->user && !cfg->password) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "the SMTP user %s has no password (SLUICE_SMTP_PASSWORD, "
                       "SLUICE_SMTP_PASSWORD_FILE or the URL's)",
                       cfg->user);
        goto fail;
    }

    if ((v = setting(get, ud, "SLUICE_SMTP_STARTTLS"))) {
        if (!strcasecmp(v, "required"))
            cfg->starttls = SL_SMTP_TLS_REQUIRED;
        else if (!strcasecmp(v, "opportunistic"))
            cfg->starttls = SL_SMTP_TLS_OPPORTUNISTIC;
        else if (!strcasecmp(v, "off"))
            cfg->starttls = SL_SMTP_TLS_OFF;
        else {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                           "SLUICE_SMTP_STARTTLS: '%s' is not one of required, opportunistic, off",
                           has_ctl(v) ? "?" : v);
            goto fail;
        }
    }
    if (!cfg->implicit_tls && cfg->user && cfg->starttls == SL_SMTP_TLS_OPPORTUNISTIC) {
        /* a server (or whoever is in between) that offers no STARTTLS would
         * get the password in clear text */
        rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                       "SLUICE_SMTP_STARTTLS: opportunistic would send the password in clear "
                       "text when STARTTLS is not offered: use required (or off to send it in "
                       "clear text on purpose)");
        goto fail;
    }
    if (!cfg->implicit_tls && cfg->user && cfg->starttls == SL_SMTP_TLS_OFF)
        sl_warn(COMP, "SLUICE_SMTP_STARTTLS=off: the password for %s goes to %s in clear text",
                cfg->user, cfg->url);

    if ((v = setting(get, ud, "SLUICE_SMTP_FROM"))) {
        struct mailbox mb;
        if ((rc = parse_mailbox("SLUICE_SMTP_FROM", v, &mb, errbuf, errsz)))
            goto fail;
        mailbox_cleanup(&mb);
        cfg->from = strdup(v);
    } else {
        cfg->from = default_from();
    }
    if (!cfg->from) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "SLUICE_SMTP_FROM: out of memory");
        goto fail;
    }

    if ((v = setting(get, ud, "SLUICE_SMTP_CA_FILE"))) {
        if (access(v, R_OK)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_INVALID, "SLUICE_SMTP_CA_FILE: cannot read %s: %s",
                           v, strerror(errno));
            goto fail;
        }
        if (!(cfg->ca_file = strdup(v))) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "SLUICE_SMTP_CA_FILE: out of memory");
            goto fail;
        }
    }
    long n;
    if ((v = setting(get, ud, "SLUICE_SMTP_TIMEOUT"))) {
        if ((rc = parse_num("SLUICE_SMTP_TIMEOUT", v, 1, 86400, &n, errbuf, errsz)))
            goto fail;
        cfg->timeout_s = n;
    }
    if ((v = setting(get, ud, "SLUICE_SMTP_RETRIES"))) {
        if ((rc = parse_num("SLUICE_SMTP_RETRIES", v, 0, 100, &n, errbuf, errsz)))
            goto fail;
        cfg->retries = (int)n;
    }
    if ((v = setting(get, ud, "SLUICE_SMTP_RETRY_DELAY_MS"))) {
        if ((rc = parse_num("SLUICE_SMTP_RETRY_DELAY_MS", v, 0, BACKOFF_MAX_MS, &n, errbuf, errsz)))
            goto fail;
        cfg->retry_delay_ms = n;
    }
    wipe_free(url_user);
    wipe_free(url_password);
    return 0;
fail:
    wipe_free(url_user);
    wipe_free(url_password);
    sl_smtp_config_cleanup(cfg);
    return rc;
}

int sl_smtp_config_from_env(struct sl_smtp_config *cfg, char *errbuf, size_t errsz)
{
    return sl_smtp_config_load(cfg, env_lookup, NULL, errbuf, errsz);
}

void sl_smtp_config_cleanup(struct sl_smtp_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->url);
    free(cfg->user);
    wipe_free(cfg->password);
    free(cfg->from);
    free(cfg->ca_file);
    memset(cfg, 0, sizeof(*cfg));
}

bool sl_smtp_enabled(const struct sl_smtp_config *cfg)
{
    return cfg && cfg->url;
}

/* ---- the message -------------------------------------------------------- */

/* A copy of text whose CRLF line ends are LF (GMime writes every line end
 * as CRLF; a CR left in would be encoded as =0D), or NULL. */
static char *lf_text(const char *text)
{
    char *out = malloc(strlen(text) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = text; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            *o++ = *p;
    *o = '\0';
    return out;
}

/* A text/SUBTYPE part of text, UTF-8, quoted-printable; NULL without memory. */
static GMimeObject *text_part(const char *subtype, const char *text)
{
    char *t = lf_text(text);
    if (!t)
        return NULL;
    /* not g_mime_text_part_set_text(): it recodes text that fits a smaller
     * charset (Latin-1) */
    GMimeTextPart *tp = g_mime_text_part_new_with_subtype(subtype);
    g_mime_text_part_set_charset(tp, "utf-8");
    GMimeStream *mem = g_mime_stream_mem_new_with_buffer(t, strlen(t));
    GMimeDataWrapper *content =
        g_mime_data_wrapper_new_with_stream(mem, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content(GMIME_PART(tp), content);
    g_object_unref(content);
    g_object_unref(mem);
    g_mime_part_set_content_encoding(GMIME_PART(tp), GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
    free(t);
    return GMIME_OBJECT(tp);
}

/* Whether s is a MIME token (RFC 2045) of n bytes. */
static bool mime_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c))
            return false;
    }
    return true;
}

/* Whether t is "type/subtype" optionally followed by "; parameters". */
static bool content_type_ok(const char *t)
{
    size_t a = strcspn(t, "/");
    if (!t[a] || !mime_token(t, a))
        return false;
    const char *sub = t + a + 1;
    size_t b = strcspn(sub, ";");
    while (b && sub[b - 1] == ' ')
        b--;
    return mime_token(sub, b) && !has_ctl(t) && sl_utf8_valid(t, strlen(t));
}

/* The attachment part: the file fd (taken over) as it is, base64. */
static GMimeObject *attachment_part(int fd, const char *name, const char *type)
{
    GMimeContentType *ct = g_mime_content_type_parse(NULL, type);
    GMimePart *part = g_mime_part_new();
    g_mime_object_set_content_type(GMIME_OBJECT(part), ct);
    g_object_unref(ct);
    g_mime_object_set_disposition(GMIME_OBJECT(part), GMIME_DISPOSITION_ATTACHMENT);
    g_mime_part_set_filename(part, name);
    /* UTF-8 for a non-ASCII name (GMime would pick Latin-1 when it fits) */
    GMimeParam *param = g_mime_param_list_get_parameter(
        g_mime_content_disposition_get_parameters(
            g_mime_object_get_content_disposition(GMIME_OBJECT(part))),
        "filename");
    if (param)
        g_mime_param_set_charset(param, "utf-8");
    param = g_mime_param_list_get_parameter(
        g_mime_content_type_get_parameters(g_mime_object_get_content_type(GMIME_OBJECT(part))),
        "name");
    if (param)
        g_mime_param_set_charset(param, "utf-8");
    GMimeStream *in = g_mime_stream_fs_new(fd);
    GMimeDataWrapper *content =
        g_mime_data_wrapper_new_with_stream(in, GMIME_CONTENT_ENCODING_DEFAULT);
    g_object_unref(in);
    g_mime_part_set_content(part, content);
    g_object_unref(content);
    g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
    return GMIME_OBJECT(part);
}

/* Adds mb to the header list, a non-ASCII name encoded as UTF-8 (GMime
 * would pick Latin-1 when it fits). */
static void add_mailbox(InternetAddressList *list, const struct mailbox *mb)
{
    InternetAddress *ia = internet_address_mailbox_new(mb->name, mb->addr);
    internet_address_set_charset(ia, "utf-8");
    internet_address_list_add(list, ia);
    g_object_unref(ia);
}

/* Writes the message of m (from and to already parsed) into the unlinked
 * temporary file *fd_out, rewound, of *size bytes; *msgid its Message-ID
 * (caller frees with g_free). 0, SL_ERR_IO or SL_ERR_NOMEM. */
static int build_message(const struct sl_mail *m, const struct mailbox *from,
                         const struct mailbox *to, size_t nto, const char *attach_name,
                         const char *attach_type, int *fd_out, curl_off_t *size, char **msgid,
                         char *errbuf, size_t errsz)
{
    GMimeMessage *msg = NULL;
    GMimeObject *body = NULL;
    GMimeFormatOptions *fo = NULL;
    GMimeStream *out = NULL;
    char *subject = NULL;
    const char *tmpdir = NULL;
    int rc = 0, afd = -1, fd = -1;
    *fd_out = -1;
    *msgid = NULL;

    if (m->attach_path) {
        struct stat st;
        if ((afd = open(m->attach_path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(afd, &st) ||
            !S_ISREG(st.st_mode)) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot read the attachment %s: %s",
                           m->attach_path, afd < 0 ? strerror(errno) : "not a regular file");
            goto fail;
        }
    }
    if ((fd = sl_temp_fd("sluice-mail", &tmpdir)) < 0) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create a temporary file in %s: %s", tmpdir,
                       strerror(errno));
        goto fail;
    }

    msg = g_mime_message_new(TRUE);
    add_mailbox(g_mime_message_get_from(msg), from);
    for (size_t i = 0; i < nto; i++)
        add_mailbox(g_mime_message_get_to(msg), &to[i]);
    /* a control character would end the header line: a space instead */
    if (!(subject = strdup(m->subject ? m->subject : ""))) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (char *p = subject; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    g_mime_message_set_subject(msg, subject, "utf-8");
    GDateTime *now = g_date_time_new_now_local();
    g_mime_message_set_date(msg, now);
    g_date_time_unref(now);
    *msgid = g_mime_utils_generate_message_id(strrchr(from->addr, '@') + 1);
    g_mime_message_set_message_id(msg, *msgid);
    /* RFC 3834: no vacation auto-replies to a machine's report */
    g_mime_object_set_header(GMIME_OBJECT(msg), "Auto-Submitted", "auto-generated", NULL);

    GMimeObject *text = m->text ? text_part("plain", m->text) : NULL;
    GMimeObject *html = m->html ? text_part("html", m->html) : NULL;
    if ((m->text && !text) || (m->html && !html)) {
        if (text)
            g_object_unref(text);
        if (html)
            g_object_unref(html);
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (text && html) {
        GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
        g_mime_multipart_add(alt, text); /* the least preferred first (RFC 2046) */
        g_mime_multipart_add(alt, html);
        g_object_unref(text);
        g_object_unref(html);
        body = GMIME_OBJECT(alt);
    } else {
        body = text ? text : html;
    }
    if (afd >= 0) {
        GMimeMultipart *mixed = g_mime_multipart_new_with_subtype("mixed");
        GMimeObject *att = attachment_part(afd, attach_name, attach_type);
        afd = -1; /* the part's stream closes it */
        g_mime_multipart_add(mixed, body);
        g_mime_multipart_add(mixed, att);
        g_object_unref(body);
        g_object_unref(att);
        body = GMIME_OBJECT(mixed);
    }
    g_mime_message_set_mime_part(msg, body);

    fo = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    out = g_mime_stream_fs_new(fd);
    g_mime_stream_fs_set_owner(GMIME_STREAM_FS(out), FALSE);
    errno = 0;
    ssize_t n = g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, out);
    if (n < 0 || g_mime_stream_flush(out)) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO,
                       "cannot write the message (its attachment %s, into a temporary file in "
                       "%s): %s",
                       m->attach_path ? m->attach_path : "none", tmpdir,
                       errno ? strerror(errno) : "write error");
        goto fail;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot rewind a temporary file in %s: %s", tmpdir,
                       strerror(errno));
        goto fail;
    }
    *size = (curl_off_t)n;
    *fd_out = fd;
    fd = -1;
fail:
    if (out)
        g_object_unref(out);
    if (fo)
        g_mime_format_options_free(fo);
    if (body)
        g_object_unref(body);
    if (msg)
        g_object_unref(msg);
    free(subject);
    if (afd >= 0)
        close(afd);
    if (fd >= 0)
        close(fd);
    if (rc) {
        g_free(*msgid);
        *msgid = NULL;
    }
    return rc;
}

/* ---- sending ------------------------------------------------------------ */

#if CURL_AT_LEAST_VERSION(8, 2, 0)
#define RCPT_ALLOWFAILS CURLOPT_MAIL_RCPT_ALLOWFAILS
#else
#define RCPT_ALLOWFAILS CURLOPT_MAIL_RCPT_ALLLOWFAILS /* its name before 8.2 */
#endif

enum rcpt_state { RCPT_PENDING, RCPT_DELIVERED, RCPT_REFUSED };

/* A recipient of the envelope. */
struct rcpt {
    const struct mailbox *mb;
    char *angle; /* "<addr>", for RCPT TO */
    enum rcpt_state state;
    int try_code;          /* the answer to its RCPT TO in this session; 0: none */
    int code;              /* the last refusal (4xx, 5xx) of its RCPT TO; 0: none */
    char reply[REPLY_MAX]; /* that refusal's text */
};

/* One SMTP session (an attempt), as the debug callback follows it. */
struct session {
    struct rcpt *rcpts;
    size_t *order; /* the recipient of each RCPT TO of the session, in order */
    size_t norder;
    size_t nrcpt_sent;         /* RCPT TO commands sent so far */
    char verb[VERB_MAX];       /* the last command sent; "" before the first (the greeting) */
    int code;                  /* the last final reply line's code; 0: none */
    char reply[REPLY_MAX];     /* its text */
    char reply_verb[VERB_MAX]; /* the command it answered */
    bool quit;                 /* QUIT sent: what follows is no answer to the message */
    int fd;                    /* the message */
    int read_errno;            /* why reading fd failed; 0: it did not */
};

/* A command libcurl sent: only its verb is looked at. A line that starts
 * with no known verb is part of a SASL exchange (credentials): skipped. */
static void on_command(struct session *s, const char *data, size_t size)
{
    static const char *const with_args[] = {"EHLO", "HELO", "AUTH", "MAIL", "RCPT"};
    static const char *const bare[] = {"DATA", "QUIT", "STARTTLS", "RSET", "NOOP"};
    char verb[VERB_MAX];
    size_t n = 0;
    while (n < size && n < VERB_MAX - 1 && data[n] != ' ' && data[n] != '\r' && data[n] != '\n') {
        char c = data[n];
        verb[n++] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
    }
    verb[n] = '\0';
    bool args = n < size && data[n] == ' ';
    const char *const *known = args ? with_args : bare;
    size_t nknown = args ? SL_ARRAY_LEN(with_args) : SL_ARRAY_LEN(bare);
    for (size_t i = 0; i < nknown; i++)
        if (!strcmp(verb, known[i])) {
            memcpy(s->verb, verb, n + 1);
            if (!strcmp(verb, "RCPT"))
                s->nrcpt_sent++;
            /* libcurl says QUIT after a failure too: its 221 must not hide
             * the answer that made the session fail */
            s->quit |= !strcmp(verb, "QUIT");
            return;
        }
}

/* Reply lines of the server: the last line of each reply ("250 ok", not
 * "250-SIZE") is kept with the command it answers. */
static void on_reply(struct session *s, const char *data, size_t size)
{
    const char *p = data, *end = data + size;
    while (p < end && !s->quit) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        size_t len = (size_t)((eol ? eol : end) - p);
        while (len && p[len - 1] == '\r')
            len--;
        if (len >= 3 && p[0] >= '1' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
            p[2] <= '9' && (len == 3 || p[3] == ' ')) {
            s->code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
            size_t k = len < REPLY_MAX - 1 ? len : REPLY_MAX - 1;
            for (size_t i = 0; i < k; i++) {
                unsigned char c = (unsigned char)p[i];
                s->reply[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
            }
            s->reply[k] = '\0';
            memcpy(s->reply_verb, s->verb, sizeof(s->verb));
            if (!strcmp(s->verb, "RCPT") && s->nrcpt_sent && s->nrcpt_sent <= s->norder) {
                struct rcpt *r = &s->rcpts[s->order[s->nrcpt_sent - 1]];
                r->try_code = s->code;
                if (s->code >= 400) {
                    r->code = s->code;
                    memcpy(r->reply, s->reply, sizeof(r->reply));
                }
            }
        }
        p = next;
    }
}

static int on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *ud)
{
    (void)c;
    if (type == CURLINFO_HEADER_OUT)
        on_command(ud, data, size);
    else if (type == CURLINFO_HEADER_IN)
        on_reply(ud, data, size);
    return 0;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct session *s = ud;
    for (;;) {
        ssize_t n = read(s->fd, buf, size * nitems);
        if (n >= 0)
            return (size_t)n;
        if (errno != EINTR) {
            s->read_errno = errno;
            return CURL_READFUNC_ABORT;
        }
    }
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    struct session *s = ud;
    return lseek(s->fd, (off_t)offset, origin) < 0 ? CURL_SEEKFUNC_FAIL : CURL_SEEKFUNC_OK;
}

/* One SMTP session that sends the message (size bytes, s->fd) from
 * mail_from ("<addr>") to the pending recipients. libcurl's result, its
 * detail in curl_err; s says what the server answered. */
static CURLcode session_run(const struct sl_smtp_config *cfg, struct session *s, size_t nr,
                            const char *mail_from, curl_off_t size, char *curl_err)
{
    struct curl_slist *list = NULL;
    CURLcode rc = CURLE_OK;
    s->norder = s->nrcpt_sent = 0;
    s->verb[0] = s->reply[0] = s->reply_verb[0] = '\0';
    s->code = s->read_errno = 0;
    s->quit = false;
    curl_err[0] = '\0';
    for (size_t i = 0; i < nr; i++) {
        struct rcpt *r = &s->rcpts[i];
        if (r->state != RCPT_PENDING)
            continue;
        struct curl_slist *l = curl_slist_append(list, r->angle);
        if (!l) {
            curl_slist_free_all(list);
            return CURLE_OUT_OF_MEMORY;
        }
        list = l;
        r->try_code = 0;
        s->order[s->norder++] = i;
    }
    if (lseek(s->fd, 0, SEEK_SET)) {
        s->read_errno = errno;
        curl_slist_free_all(list);
        return CURLE_READ_ERROR;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        curl_slist_free_all(list);
        return CURLE_FAILED_INIT;
    }
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, cfg->url);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_MAIL_FROM, mail_from);
    SET(CURLOPT_MAIL_RCPT, list);
    SET(RCPT_ALLOWFAILS, 1L);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, s);
    SET(CURLOPT_SEEKFUNCTION, on_seek);
    SET(CURLOPT_SEEKDATA, s);
    SET(CURLOPT_INFILESIZE_LARGE, size); /* SIZE=: a server may refuse it before the upload */
    if (!cfg->implicit_tls)
        SET(CURLOPT_USE_SSL, cfg->starttls == SL_SMTP_TLS_REQUIRED        ? (long)CURLUSESSL_ALL
                             : cfg->starttls == SL_SMTP_TLS_OPPORTUNISTIC ? (long)CURLUSESSL_TRY
                                                                          : (long)CURLUSESSL_NONE);
    if (cfg->user) {
        SET(CURLOPT_USERNAME, cfg->user);
        SET(CURLOPT_PASSWORD, cfg->password);
    }
    if (cfg->ca_file)
        SET(CURLOPT_CAINFO, cfg->ca_file);
    /* the timeout bounds every silence (connecting, each reply, a stalled
     * upload) but not a large attachment that keeps moving */
    SET(CURLOPT_CONNECTTIMEOUT, cfg->timeout_s);
    SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, cfg->timeout_s);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, cfg->timeout_s);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, curl_err);
    SET(CURLOPT_DEBUGFUNCTION, on_debug);
    SET(CURLOPT_DEBUGDATA, s);
    SET(CURLOPT_VERBOSE, 1L); /* for on_debug only: it prints nothing */
#undef SET
    if (rc == CURLE_OK)
        rc = curl_easy_perform(c);
    /* libcurl keeps copies of the credentials in the handle until here */
    curl_easy_setopt(c, CURLOPT_USERNAME, NULL);
    curl_easy_setopt(c, CURLOPT_PASSWORD, NULL);
    curl_easy_cleanup(c);
    curl_slist_free_all(list);
    return rc;
}

/* Why session s failed (rc, curl_err) into out: the server's answer when it
 * refused something, else libcurl's reason. Whether trying again later may
 * succeed (no connection, a timeout, a 4xx answer). */
static bool explain(const struct sl_smtp_config *cfg, const struct session *s, CURLcode rc,
                    const char *curl_err, const char *sender, char *out, size_t n)
{
    const char *detail = curl_err[0] ? curl_err : curl_easy_strerror(rc);
    out[0] = '\0';
    if (s->read_errno) {
        snprintf(out, n, "cannot read the message's temporary file: %s", strerror(s->read_errno));
        return false;
    }
    if (!strcmp(s->reply_verb, "RCPT") && rc == CURLE_SEND_ERROR) {
        /* ALLOWFAILS: libcurl gives up only when every RCPT TO was refused */
        bool transient = false;
        snprintf(out, n, "the server refused every recipient: ");
        size_t prefix = strlen(out);
        for (size_t i = 0; i < s->norder; i++) {
            const struct rcpt *r = &s->rcpts[s->order[i]];
            char *tail = out + prefix;
            append(tail, n - prefix, "; ", "%s: %s", r->mb->addr, r->reply);
            transient |= r->try_code >= 400 && r->try_code < 500;
        }
        return transient;
    }
    if (s->code >= 400 && strcmp(s->reply_verb, "RCPT")) {
        const char *v = s->reply_verb;
        if (!v[0])
            snprintf(out, n, "the server refused the session: %s", s->reply);
        else if (!strcmp(v, "AUTH"))
            snprintf(out, n, "the login as %s failed: %s", cfg->user ? cfg->user : "?", s->reply);
        else if (!strcmp(v, "MAIL"))
            snprintf(out, n, "the server refused the sender %s: %s%s", sender, s->reply,
                     s->code == 530 && !cfg->user
                         ? " (it wants a login: SLUICE_SMTP_USER and SLUICE_SMTP_PASSWORD)"
                         : "");
        else if (!strcmp(v, "DATA"))
            snprintf(out, n, "the server refused the message: %s", s->reply);
        else
            snprintf(out, n, "the server refused %s: %s", v, s->reply);
        return s->code < 500;
    }
    switch (rc) {
    case CURLE_USE_SSL_FAILED:
        snprintf(out, n,
                 "the server does not offer STARTTLS (%s); SLUICE_SMTP_STARTTLS is required "
                 "(a server without TLS needs off)",
                 detail);
        return false;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(out, n, "the server's TLS certificate was not accepted: %s%s", detail,
                 cfg->ca_file ? "" : " (a certificate of a private CA needs SLUICE_SMTP_CA_FILE)");
        return false;
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, n, "the CA certificates of SLUICE_SMTP_CA_FILE cannot be used: %s", detail);
        return false;
    case CURLE_LOGIN_DENIED:
        snprintf(out, n, "the login as %s failed: %s", cfg->user ? cfg->user : "?", detail);
        return false;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(out, n, "%s (SLUICE_SMTP_TIMEOUT is %ld s)", detail, cfg->timeout_s);
        return true;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_PARTIAL_FILE:
    case CURLE_UPLOAD_FAILED:
    case CURLE_AGAIN:
        snprintf(out, n, "%s", detail);
        return true;
    default:
        snprintf(out, n, "%s", detail);
        return false;
    }
}

/* The wait before retry number retry (1, 2, ...): base doubled for each
 * retry after the first, +-25 % at random so that many senders do not come
 * back at once, at most BACKOFF_MAX_MS. */
static long backoff_ms(long base, int retry)
{
    long d = base;
    for (int i = 1; i < retry && d < BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    uint32_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint32_t)ts.tv_nsec;
    }
    return d - d / 4 + (long)(r % (uint32_t)(d / 2 + 1));
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

static size_t count_pending(const struct rcpt *rcpts, size_t nr)
{
    size_t n = 0;
    for (size_t i = 0; i < nr; i++)
        n += rcpts[i].state == RCPT_PENDING;
    return n;
}

/* The attachment's file name (m->attach_name or the path's last component)
 * and content type, checked, into *name and *type (*name: caller frees). */
static int attachment_names(const struct sl_mail *m, char **name, const char **type, char *errbuf,
                            size_t errsz)
{
    const char *base = strrchr(m->attach_path, '/');
    const char *n = m->attach_name ? m->attach_name : base ? base + 1 : m->attach_path;
    *type = m->attach_type ? m->attach_type : "application/octet-stream";
    if (!n[0] || has_ctl(n) || !sl_utf8_valid(n, strlen(n)) || strpbrk(n, "/\\"))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "the attachment's name is not a file name (UTF-8, no control "
                         "characters, no slash)");
    if (!content_type_ok(*type))
        return sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                         "the attachment's content type '%s' is not type/subtype",
                         has_ctl(*type) ? "?" : *type);
    if (!(*name = strdup(n)))
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    return 0;
}

int sl_mail_send(const struct sl_smtp_config *cfg, const struct sl_mail *m,
                 struct sl_mail_result *res, char *errbuf, size_t errsz)
{
    struct mailbox from = {0}, *to = NULL;
    struct rcpt *rcpts = NULL;
    size_t *order = NULL, nr = 0;
    char *mail_from = NULL, *msgid = NULL, *attach_name = NULL;
    const char *attach_type = NULL;
    char detail[sizeof(res->error)] = "", curl_err[CURL_ERROR_SIZE] = "";
    curl_off_t size = 0;
    bool transient = false;
    int rc = 0, fd = -1;
    memset(res, 0, sizeof(*res));
    const char *url = sl_smtp_enabled(cfg) ? cfg->url : "(none)";

    if (!sl_smtp_enabled(cfg)) {
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_INVALID,
                       "e-mail is off (SLUICE_SMTP_URL is not set)");
        goto done;
    }
    CURLcode curl_init_rc = (CURLcode)sl_curl_global();
    if (curl_init_rc != CURLE_OK) {
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_FATAL, "libcurl cannot start: %s",
                       curl_easy_strerror(curl_init_rc));
        goto done;
    }
    if (!m->to || !m->nto) {
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_INVALID, "the message has no recipient");
        goto done;
    }
    if (!m->text && !m->html) {
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_INVALID,
                       "the message has no body (text or html)");
        goto done;
    }
    const struct {
        const char *what, *s;
    } texts[] = {{"subject", m->subject}, {"text", m->text}, {"html", m->html}};
    for (size_t i = 0; i < SL_ARRAY_LEN(texts); i++)
        if (texts[i].s && !sl_utf8_valid(texts[i].s, strlen(texts[i].s))) {
            rc = sl_seterr(detail, sizeof(detail), SL_ERR_INVALID, "the %s is not valid UTF-8",
                           texts[i].what);
            goto done;
        }
    if ((rc = parse_mailbox(m->from ? "the sender" : "SLUICE_SMTP_FROM",
                            m->from ? m->from : cfg->from, &from, detail, sizeof(detail))))
        goto done;
    if (!(to = calloc(m->nto, sizeof(*to))) || !(rcpts = calloc(m->nto, sizeof(*rcpts))) ||
        !(order = calloc(m->nto, sizeof(*order)))) {
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < m->nto; i++) {
        char what[32];
        snprintf(what, sizeof(what), "recipient %zu", i + 1);
        if ((rc = parse_mailbox(what, m->to[i], &to[i], detail, sizeof(detail))))
            goto done;
        bool dup = false; /* once in the envelope, however often in To */
        for (size_t j = 0; j < nr && !dup; j++)
            dup = !strcasecmp(rcpts[j].mb->addr, to[i].addr);
        if (dup)
            continue;
        rcpts[nr].mb = &to[i];
        if (asprintf(&rcpts[nr].angle, "<%s>", to[i].addr) < 0) {
            rcpts[nr].angle = NULL;
            rc = sl_seterr(detail, sizeof(detail), SL_ERR_NOMEM, "out of memory");
            goto done;
        }
        nr++;
    }
    if (m->attach_path &&
        (rc = attachment_names(m, &attach_name, &attach_type, detail, sizeof(detail))))
        goto done;
    if (asprintf(&mail_from, "<%s>", from.addr) < 0) {
        mail_from = NULL;
        rc = sl_seterr(detail, sizeof(detail), SL_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = build_message(m, &from, to, m->nto, attach_name, attach_type, &fd, &size, &msgid,
                            detail, sizeof(detail))))
        goto done;

    struct session s = {.rcpts = rcpts, .order = order, .fd = fd};
    for (int attempt = 1;; attempt++) {
        if (attempt > 1) {
            long wait = backoff_ms(cfg->retry_delay_ms, attempt - 1);
            sl_warn(
                COMP,
                "could not send the report to %s (attempt %d of %d): %s; trying again in %ld ms",
                url, attempt - 1, cfg->retries + 1, detail, wait);
            sleep_ms(wait);
        }
        res->attempts = attempt;
        CURLcode crc = session_run(cfg, &s, nr, mail_from, size, curl_err);
        for (size_t k = 0; k < s.norder; k++) {
            struct rcpt *r = &rcpts[order[k]];
            if (r->try_code >= 200 && r->try_code < 300 && crc == CURLE_OK)
                r->state = RCPT_DELIVERED;
            else if (r->try_code >= 500)
                r->state = RCPT_REFUSED;
        }
        size_t pending = count_pending(rcpts, nr);
        if (crc == CURLE_OK) {
            transient = pending > 0; /* refused with 4xx: those are tried again */
            snprintf(detail, sizeof(detail), "the server refused %zu recipient%s for now", pending,
                     pending == 1 ? "" : "s");
        } else {
            transient = explain(cfg, &s, crc, curl_err, from.addr, detail, sizeof(detail));
            if (s.read_errno)
                rc = SL_ERR_IO;
        }
        if (!pending || !transient || attempt > cfg->retries)
            break;
    }

    for (size_t i = 0; i < nr; i++) {
        const struct rcpt *r = &rcpts[i];
        if (r->state == RCPT_DELIVERED) {
            res->ndelivered++;
        } else if (r->code) {
            res->nrefused++;
            append(res->refused, sizeof(res->refused), "; ", "%s: %s", r->mb->addr, r->reply);
        }
    }
    res->delivered = res->ndelivered > 0;
    if (res->delivered) {
        rc = 0;
        sl_info(COMP, "sent the report %s to %zu of %zu recipients via %s (attempt %d)", msgid,
                res->ndelivered, nr, url, res->attempts);
        if (res->nrefused)
            sl_warn(COMP, "the report %s was refused for %zu recipient%s: %s", msgid, res->nrefused,
                    res->nrefused == 1 ? "" : "s", res->refused);
    } else if (!rc) {
        rc = transient ? SL_ERR_RETRY : SL_ERR_INVALID;
    }
done:
    if (rc) {
        char tries[32] = "";
        if (res->attempts)
            snprintf(tries, sizeof(tries), " (%d attempt%s)", res->attempts,
                     res->attempts == 1 ? "" : "s");
        int len = snprintf(res->error, sizeof(res->error), "could not send the report to %s%s: %s",
                           url, tries, detail);
        if (len >= (int)sizeof(res->error))
            memcpy(res->error + sizeof(res->error) - 4, "...", 4);
        sl_warn(COMP, "%s", res->error);
        sl_seterr(errbuf, errsz, rc, "%s", res->error);
    }
    if (fd >= 0)
        close(fd);
    g_free(msgid);
    free(mail_from);
    free(attach_name);
    for (size_t i = 0; rcpts && i < nr; i++)
        free(rcpts[i].angle);
    free(rcpts);
    free(order);
    for (size_t i = 0; to && i < m->nto; i++)
        mailbox_cleanup(&to[i]);
    free(to);
    mailbox_cleanup(&from);
    return rc;
}
