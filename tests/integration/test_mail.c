/*
 * E-mail (mail.h) end to end, against a real SMTP server on loopback:
 * Debian's python3-aiosmtpd run by smtp_tool.py, started by each test in
 * the group's temporary directory on a port the kernel picks and stopped by
 * PID. The server saves every message it accepts with its envelope; the
 * test parses it with /usr/bin/python3's email package (smtp_tool.py
 * inspect, a parser independent of GMime) and checks the headers, both
 * bodies, and that the attachment decodes to exactly the file's bytes.
 *
 * Cases: the settings (SLUICE_SMTP_*: defaults, the URL's userinfo, the
 * password file, refusals naming the variable and never the password);
 * addresses that would inject headers; plain delivery with an attachment;
 * several recipients of whom one is refused (550: not retried) or refused
 * for now (450: retried alone); STARTTLS required with AUTH (and a wrong
 * password, a server without STARTTLS: no retry); smtps (and a certificate
 * not trusted); nothing listening (retried with backoff, then a clear
 * error); a server that never answers (the timeout); 451 once, then
 * accepted; a 10 MB attachment that must not be held in memory.
 */
#include "../stage/stage_harness.h"

#include <jansson.h>
#include <sys/resource.h>

#include "services.h"
#include "sluice/log.h"
#include "sluice/mail.h"

#include "fetch_servers.h"

#define PY       "/usr/bin/python3"
#define SMTPTOOL SLUICE_FIXTURES "/../integration/smtp_tool.py"
#define PASSWORD "s3cr3t:p@ss/word"
/* the same, percent-encoded for a URL's userinfo */
#define PASSWORD_URL "s3cr3t%3Ap%40ss%2Fword"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define XLSX_TYPE "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

/* every server a test started, stopped by the group teardown if the test
 * failed before it stopped it */
#define MAX_SERVERS 32
static pid_t servers[MAX_SERVERS];
static int nservers;

static char xlsx[256], csv[256], big[256], crt[256], crt_key[256], pwfile[256];

static const char csv_data[] = "row,attribute,problem\n"
                               "17,email,\"not an e-mail address: m\xc3\xbcller@\"\n"
                               "42,phone,not a phone number\n";

/* ---- the server --------------------------------------------------------- */

struct smtp {
    pid_t pid;
    int port;
    char dir[256]; /* where it saves the messages */
};

/* Starts smtp_tool.py serve with the options opts (a shell word list),
 * saving into tmp/name. */
static struct smtp smtp_start(const char *name, const char *opts)
{
    struct smtp s = {0};
    char cmd[1024], log[300];
    snprintf(s.dir, sizeof(s.dir), "%s/%s", tmp, name);
    snprintf(log, sizeof(log), "%s/%s.log", tmp, name);
    snprintf(cmd, sizeof(cmd), "exec " PY " " SMTPTOOL " serve --dir %s %s", s.dir, opts);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    s.pid = spawn_port(argv, log, &s.port);
    if (s.pid <= 0)
        fail_msg("cannot start the SMTP server %s (see %s)", name, log);
    assert_true(nservers < MAX_SERVERS);
    servers[nservers++] = s.pid;
    return s;
}

static void smtp_stop(struct smtp *s)
{
    for (int i = 0; i < nservers; i++)
        if (servers[i] == s->pid)
            servers[i] = 0;
    stop_pid(&s->pid);
}

/* The envelope of the n-th message s saved (json_decref), or NULL. */
static json_t *envelope(const struct smtp *s, int n)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/msg-%d.json", s->dir, n);
    return json_load_file(path, 0, NULL);
}

static int messages(const struct smtp *s)
{
    int n = 0;
    while (true) {
        char path[300];
        snprintf(path, sizeof(path), "%s/msg-%d.eml", s->dir, n + 1);
        if (access(path, F_OK))
            return n;
        n++;
    }
}

/* What Python's email package makes of the n-th message s saved. */
static json_t *inspect(const struct smtp *s, int n)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), PY " " SMTPTOOL " inspect %s/msg-%d.eml", s->dir, n);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_error_t err;
    json_t *j = json_loadf(p, 0, &err);
    int st = pclose(p);
    if (!j || st != 0)
        fail_msg("inspect %s/msg-%d.eml: %s (exit %d)", s->dir, n, j ? "" : err.text, st);
    return j;
}

static const char *jstr(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        fail_msg("no string %s in the message", key);
    return json_string_value(v);
}

/* ---- settings ------------------------------------------------------------- */

/* A lookup over "NAME=value" strings (NULL-terminated). */
static const char *kv_lookup(const char *name, void *ud)
{
    size_t n = strlen(name);
    for (const char *const *kv = ud; *kv; kv++)
        if (!strncmp(*kv, name, n) && (*kv)[n] == '=')
            return *kv + n + 1;
    return NULL;
}

/* Loads kv (NULL-terminated) into cfg; fails the test when refused. */
static void cfg_load(struct sl_smtp_config *cfg, const char *const *kv)
{
    char err[512] = "";
    if (sl_smtp_config_load(cfg, kv_lookup, (void *)kv, err, sizeof(err)))
        fail_msg("refused: %s", err);
}

/* Expects kv refused with a message holding part (and not the password). */
static void cfg_refused(const char *const *kv, const char *part)
{
    struct sl_smtp_config cfg;
    char err[512] = "";
    int rc = sl_smtp_config_load(&cfg, kv_lookup, (void *)kv, err, sizeof(err));
    if (rc == 0) {
        sl_smtp_config_cleanup(&cfg);
        fail_msg("accepted, expected '%s'", part);
    }
    assert_int_equal(rc, SL_ERR_INVALID);
    if (!strstr(err, part))
        fail_msg("'%s' does not say '%s'", err, part);
    if (strstr(err, "s3cr3t"))
        fail_msg("the message shows the password: %s", err);
    assert_null(cfg.url);
}

/* The settings of a test server without TLS, quick retries. */
#define PLAIN_KV(url)                                                                              \
    (const char *const[])                                                                          \
    {                                                                                              \
        url, "SLUICE_SMTP_STARTTLS=off", "SLUICE_SMTP_FROM=Sluice <reports@sluice.test>",          \
            "SLUICE_SMTP_TIMEOUT=5", "SLUICE_SMTP_RETRIES=3", "SLUICE_SMTP_RETRY_DELAY_MS=50",     \
            NULL                                                                                   \
    }

static void cfg_plain(struct sl_smtp_config *cfg, int port)
{
    char url[128];
    snprintf(url, sizeof(url), "SLUICE_SMTP_URL=smtp://127.0.0.1:%d", port);
    cfg_load(cfg, PLAIN_KV(url));
}

/* ---- files ------------------------------------------------------------------ */

/* Writes n pseudo-random bytes (every byte value, CR and LF among them) to
 * path, 64 KiB at a time. */
static void write_bytes(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    static unsigned char buf[65536];
    uint32_t x = 2463534242u;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
        for (size_t i = 0; i < k; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf[i] = (unsigned char)x;
        }
        assert_int_equal(fwrite(buf, 1, k, f), k);
        done += k;
    }
    assert_int_equal(fclose(f), 0);
}

static void sha256_of(const char *path, char out[65], uint64_t *bytes)
{
    assert_int_equal(sl_sha256_file(path, out, bytes), 0);
}

/* Expects the attachment i of j to be the file path, named name, of type. */
static void expect_attachment(json_t *j, size_t i, const char *path, const char *name,
                              const char *type)
{
    char sha[65];
    uint64_t bytes = 0;
    sha256_of(path, sha, &bytes);
    json_t *a = json_array_get(json_object_get(j, "attachments"), i);
    assert_non_null(a);
    assert_string_equal(jstr(a, "filename"), name);
    assert_string_equal(jstr(a, "type"), type);
    assert_string_equal(jstr(a, "disposition"), "attachment");
    assert_string_equal(jstr(a, "cte"), "base64");
    assert_int_equal(json_integer_value(json_object_get(a, "size")), bytes);
    assert_string_equal(jstr(a, "sha256"), sha);
}

/* Expects a well-formed message: no defects, CRLF only, lines of at most
 * 998 bytes (RFC 5322). */
static void expect_clean(json_t *j)
{
    json_t *defects = json_object_get(j, "defects");
    if (json_array_size(defects)) {
        char *d = json_dumps(defects, 0);
        fail_msg("defects: %s", d);
    }
    assert_false(json_is_true(json_object_get(j, "bare_lf")));
    assert_true(json_integer_value(json_object_get(j, "max_line")) <= 998);
}

static double elapsed_since(double t0)
{
    return now_s() - t0;
}

/* ---- group ------------------------------------------------------------------ */

static int make_files(void)
{
    snprintf(xlsx, sizeof(xlsx), "%s/errors.xlsx", tmp);
    snprintf(csv, sizeof(csv), "%s/errors.csv", tmp);
    snprintf(big, sizeof(big), "%s/big.xlsx", tmp);
    snprintf(crt, sizeof(crt), "%s/smtp.crt", tmp);
    snprintf(crt_key, sizeof(crt_key), "%s/smtp.key", tmp);
    snprintf(pwfile, sizeof(pwfile), "%s/password", tmp);
    write_bytes(xlsx, 70000);
    put(tmp, "errors.csv", csv_data);
    put(tmp, "password", PASSWORD "\n"); /* as `echo` or a Kubernetes secret leaves it */
    /* a self-signed certificate for 127.0.0.1, its own CA */
    return shell("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                 "-nodes -keyout smtp.key -out smtp.crt -days 2 -subj /CN=127.0.0.1 "
                 "-addext subjectAltName=IP:127.0.0.1 >openssl.out 2>&1",
                 tmp)
               ? -1
               : 0;
}

static int group_setup(void **state)
{
    (void)state;
    /* quiet, unless SLUICE_LOG_LEVEL asks for the module's warnings */
    if (!getenv("SLUICE_LOG_LEVEL") || sl_log_setup(getenv("SLUICE_LOG_LEVEL"), "text"))
        sl_log_set_level(SL_LOG_ERROR);
    return fs_mktmp("/tmp/sluice-mail-XXXXXX") || fs_start(make_files, "openssl", "openssl.out")
               ? -1
               : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nservers; i++)
        stop_pid(&servers[i]);
    fs_rmtmp();
    return 0;
}

/* ---- tests: settings ---------------------------------------------------------- */

static void test_config(void **state)
{
    (void)state;
    struct sl_smtp_config cfg;
    char err[512] = "";

    /* nothing set: e-mail off */
    cfg_load(&cfg, (const char *const[]){NULL});
    assert_false(sl_smtp_enabled(&cfg));
    sl_smtp_config_cleanup(&cfg);
    cfg_refused((const char *const[]){"SLUICE_SMTP_USER=x", NULL},
                "SLUICE_SMTP_USER is set but SLUICE_SMTP_URL is not");

    /* defaults; the userinfo percent-decoded and kept out of the URL */
    cfg_load(&cfg, (const char *const[]){
                       "SLUICE_SMTP_URL=smtp://rep%40orts:" PASSWORD_URL "@127.0.0.1:2525", NULL});
    assert_true(sl_smtp_enabled(&cfg));
    assert_string_equal(cfg.url, "smtp://127.0.0.1:2525");
    assert_false(cfg.implicit_tls);
    assert_string_equal(cfg.user, "rep@orts");
    assert_string_equal(cfg.password, PASSWORD);
    assert_int_equal(cfg.starttls, SL_SMTP_TLS_REQUIRED);
    assert_int_equal(cfg.timeout_s, 60);
    assert_int_equal(cfg.retries, 3);
    assert_int_equal(cfg.retry_delay_ms, 1000);
    assert_null(cfg.ca_file);
    assert_true(!strncmp(cfg.from, "sluice@", 7));
    sl_smtp_config_cleanup(&cfg);
    assert_null(cfg.password);

    /* the variables win over the userinfo; the password file loses its newline */
    char pwf[300], ca[300];
    snprintf(pwf, sizeof(pwf), "SLUICE_SMTP_PASSWORD_FILE=%s", pwfile);
    snprintf(ca, sizeof(ca), "SLUICE_SMTP_CA_FILE=%s", crt);
    cfg_load(&cfg, (const char *const[]){
                       "SLUICE_SMTP_URL=smtps://u:p@mail.example.com", "SLUICE_SMTP_USER=reporter",
                       pwf, ca, "SLUICE_SMTP_FROM=Reports <r@example.com>",
                       "SLUICE_SMTP_STARTTLS=off", "SLUICE_SMTP_TIMEOUT=7", "SLUICE_SMTP_RETRIES=0",
                       "SLUICE_SMTP_RETRY_DELAY_MS=0", NULL});
    assert_string_equal(cfg.url, "smtps://mail.example.com");
    assert_true(cfg.implicit_tls);
    assert_string_equal(cfg.user, "reporter");
    assert_string_equal(cfg.password, PASSWORD);
    assert_string_equal(cfg.ca_file, crt);
    assert_string_equal(cfg.from, "Reports <r@example.com>");
    assert_int_equal(cfg.starttls, SL_SMTP_TLS_OFF);
    assert_int_equal(cfg.timeout_s, 7);
    assert_int_equal(cfg.retries, 0);
    assert_int_equal(cfg.retry_delay_ms, 0);
    sl_smtp_config_cleanup(&cfg);

    /* the environment */
    setenv("SLUICE_SMTP_URL", "smtp://127.0.0.1:25", 1);
    setenv("SLUICE_SMTP_STARTTLS", "opportunistic", 1);
    assert_int_equal(sl_smtp_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.url, "smtp://127.0.0.1:25");
    assert_int_equal(cfg.starttls, SL_SMTP_TLS_OPPORTUNISTIC);
    sl_smtp_config_cleanup(&cfg);
    setenv("SLUICE_SMTP_URL", "SMTP://[::1]:587/", 1);
    assert_int_equal(sl_smtp_config_from_env(&cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.url, "smtp://[::1]:587");
    sl_smtp_config_cleanup(&cfg);
    unsetenv("SLUICE_SMTP_URL");
    unsetenv("SLUICE_SMTP_STARTTLS");

    /* refusals name the variable, never show the password */
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=http://u:s3cr3t@host", NULL},
                "SLUICE_SMTP_URL: the scheme must be smtp:// or smtps://");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://u:s3cr3t@host:99999", NULL},
                "SLUICE_SMTP_URL is not a valid URL");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://u:s3cr3t@host/x", NULL},
                "SLUICE_SMTP_URL: a path");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_PASSWORD=s3cr3t",
                                      pwf, "SLUICE_SMTP_USER=u", NULL},
                "SLUICE_SMTP_PASSWORD and SLUICE_SMTP_PASSWORD_FILE are both set");
    cfg_refused(
        (const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_PASSWORD=s3cr3t", NULL},
        "SLUICE_SMTP_PASSWORD is set but no user");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://u@host", NULL}, "has no password");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://host",
                                      "SLUICE_SMTP_PASSWORD_FILE=/nonexistent/pw", NULL},
                "SLUICE_SMTP_PASSWORD_FILE: cannot read /nonexistent/pw");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://u:s3cr3t@host",
                                      "SLUICE_SMTP_STARTTLS=opportunistic", NULL},
                "SLUICE_SMTP_STARTTLS: opportunistic would send the password in clear text");
    cfg_refused(
        (const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_STARTTLS=yes", NULL},
        "SLUICE_SMTP_STARTTLS: 'yes' is not one of required, opportunistic, off");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_TIMEOUT=0", NULL},
                "SLUICE_SMTP_TIMEOUT: '0' is not a whole number from 1 to 86400");
    cfg_refused(
        (const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_RETRIES=-1", NULL},
        "SLUICE_SMTP_RETRIES: '-1' is not a whole number");
    cfg_refused(
        (const char *const[]){"SLUICE_SMTP_URL=smtp://host", "SLUICE_SMTP_RETRY_DELAY_MS=1s", NULL},
        "SLUICE_SMTP_RETRY_DELAY_MS: '1s'");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://host",
                                      "SLUICE_SMTP_FROM=a@example.com, b@example.com", NULL},
                "SLUICE_SMTP_FROM: 'a@example.com, b@example.com' is not one valid e-mail address");
    cfg_refused((const char *const[]){"SLUICE_SMTP_URL=smtp://host",
                                      "SLUICE_SMTP_CA_FILE=/nonexistent/ca.pem", NULL},
                "SLUICE_SMTP_CA_FILE: cannot read /nonexistent/ca.pem");
}

/* Addresses are single mailboxes without control characters: nothing is
 * sent otherwise (attempts 0). */
static void test_bad_addresses(void **state)
{
    (void)state;
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, 1); /* never connected to */
    struct sl_mail_result res;
    char err[512] = "";
    const char *bad[] = {"a@example.com\r\nBcc: evil@example.com",
                         "a@example.com, b@example.com",
                         "not an address",
                         "a@@example.com",
                         "a@exa mple.com",
                         ""};
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        const char *to[] = {"ok@example.com", bad[i]};
        struct sl_mail m = {.to = to, .nto = 2, .subject = "s", .text = "t"};
        assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
        assert_false(res.delivered);
        assert_int_equal(res.attempts, 0);
        if (!strstr(err, "recipient 2") || strcmp(err, res.error))
            fail_msg("'%s' does not name recipient 2", err);
    }
    const char *to[] = {"ok@example.com"};
    struct sl_mail m = {
        .from = "x@example.com\nBcc: evil@example.com", .to = to, .nto = 1, .text = "t"};
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_non_null(strstr(err, "the sender: the address holds a control character"));
    m = (struct sl_mail){.to = to, .nto = 1, .text = "t", .attach_path = "/nonexistent/x.csv"};
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_IO);
    assert_non_null(strstr(err, "cannot read the attachment /nonexistent/x.csv"));
    m = (struct sl_mail){
        .to = to, .nto = 1, .text = "t", .attach_path = csv, .attach_type = "text/csv\r\nX: y"};
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    m = (struct sl_mail){.to = to, .nto = 1};
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_non_null(strstr(err, "no body"));
    sl_smtp_config_cleanup(&cfg);
}

/* ---- tests: delivery ---------------------------------------------------------- */

static const char text_body[] =
    "Run 42 of job stores: 3 rows rejected.\r\n"
    ".a line that starts with a dot\n"
    "Gr\xc3\xbc\xc3\x9f"
    "e aus K\xc3\xb6ln \xe2\x82\xac\n"
    "a long line: "
    "0123456789012345678901234567890123456789012345678901234567890123456"
    "789012345678901234567890123456789 end\n";
static const char html_body[] = "<html><body><p>Run 42 of job <b>stores</b>: 3 rows "
                                "rejected.</p><p>Gr\xc3\xbc\xc3\x9f"
                                "e aus K\xc3\xb6ln</p>"
                                "</body></html>\n";

static void test_plain_delivery(void **state)
{
    (void)state;
    struct smtp s = smtp_start("plain", "");
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, s.port);
    const char *to[] = {"Anna M\xc3\xbcller <anna@example.com>", "ops@example.org"};
    struct sl_mail m = {
        .to = to,
        .nto = 2,
        .subject = "Sluice: run 42 \xe2\x80\x93 3 rows rejected\r\nBcc: evil@example.com",
        .text = text_body,
        .html = html_body,
        .attach_path = xlsx,
        .attach_name = "errors.xlsx",
        .attach_type = XLSX_TYPE,
    };
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_true(res.delivered);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.ndelivered, 2);
    assert_int_equal(res.nrefused, 0);
    assert_string_equal(res.error, "");
    assert_string_equal(res.refused, "");

    json_t *env = envelope(&s, 1);
    assert_non_null(env);
    assert_string_equal(jstr(env, "mail_from"), "reports@sluice.test");
    assert_int_equal(json_array_size(json_object_get(env, "rcpt_tos")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(env, "rcpt_tos"), 0)),
                        "anna@example.com");
    assert_string_equal(json_string_value(json_array_get(json_object_get(env, "rcpt_tos"), 1)),
                        "ops@example.org");
    json_decref(env);

    json_t *j = inspect(&s, 1);
    expect_clean(j);
    assert_string_equal(jstr(j, "from"), "reports@sluice.test");
    assert_string_equal(jstr(j, "from_name"), "Sluice");
    json_t *hto = json_object_get(j, "to");
    assert_int_equal(json_array_size(hto), 2);
    assert_string_equal(json_string_value(json_array_get(hto, 0)), "anna@example.com");
    assert_string_equal(json_string_value(json_array_get(hto, 1)), "ops@example.org");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "to_names"), 0)),
                        "Anna M\xc3\xbcller");
    /* CR and LF became spaces: no header was injected */
    assert_string_equal(jstr(j, "subject"),
                        "Sluice: run 42 \xe2\x80\x93 3 rows rejected  Bcc: evil@example.com");
    json_t *names = json_object_get(j, "header_names");
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (!strcasecmp(json_string_value(v), "Bcc"))
            fail_msg("a Bcc header was injected");
    }
    assert_non_null(strstr(jstr(j, "message_id"), "@sluice.test>"));
    assert_string_equal(jstr(j, "auto_submitted"), "auto-generated");
    assert_string_equal(jstr(j, "mime_version"), "1.0");
    assert_true(strlen(jstr(j, "date")) >= 25); /* parsed, with its zone */

    json_t *parts = json_object_get(j, "structure");
    const char *want[] = {"multipart/mixed", "multipart/alternative", "text/plain", "text/html",
                          XLSX_TYPE};
    assert_int_equal(json_array_size(parts), SL_ARRAY_LEN(want));
    for (i = 0; i < SL_ARRAY_LEN(want); i++)
        assert_string_equal(json_string_value(json_array_get(parts, i)), want[i]);
    /* the bodies as sent, line ends LF once decoded */
    char *want_text = strdup(text_body);
    char *w = want_text;
    for (const char *p = text_body; *p; p++)
        if (*p != '\r')
            *w++ = *p;
    *w = '\0';
    assert_string_equal(jstr(j, "plain"), want_text);
    free(want_text);
    assert_string_equal(jstr(j, "html"), html_body);
    assert_string_equal(jstr(j, "plain_charset"), "utf-8");
    assert_string_equal(jstr(j, "html_charset"), "utf-8");
    assert_string_equal(jstr(j, "plain_cte"), "quoted-printable");
    assert_int_equal(json_array_size(json_object_get(j, "attachments")), 1);
    expect_attachment(j, 0, xlsx, "errors.xlsx", XLSX_TYPE);
    json_decref(j);

    /* text only, a CSV attachment named after its file, a non-ASCII name */
    const char *one[] = {"ops@example.org"};
    m = (struct sl_mail){.from = "Other <other@sluice.test>",
                         .to = one,
                         .nto = 1,
                         .subject = "plain",
                         .text = "see the attachment\n",
                         .attach_path = csv,
                         .attach_type = "text/csv"};
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    m.attach_name = "Fehler \xc3\xbc"
                    "bersicht.csv";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    j = inspect(&s, 2);
    expect_clean(j);
    assert_string_equal(jstr(j, "from"), "other@sluice.test");
    parts = json_object_get(j, "structure");
    assert_int_equal(json_array_size(parts), 3);
    assert_string_equal(json_string_value(json_array_get(parts, 1)), "text/plain");
    expect_attachment(j, 0, csv, "errors.csv", "text/csv");
    json_decref(j);
    j = inspect(&s, 3);
    expect_attachment(j, 0, csv,
                      "Fehler \xc3\xbc"
                      "bersicht.csv",
                      "text/csv");
    json_decref(j);

    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

/* One recipient refused (550): delivered to the others, the refused one
 * reported with the server's reply, no retry. Every recipient refused:
 * not delivered, no retry either. */
static void test_refused_recipient(void **state)
{
    (void)state;
    struct smtp s = smtp_start("refused", "--refuse nobody@example.com --refuse gone@example.com");
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, s.port);
    const char *to[] = {"a@example.com", "nobody@example.com", "b@example.com"};
    struct sl_mail m = {.to = to,
                        .nto = 3,
                        .subject = "report",
                        .text = "text",
                        .html = "<p>html</p>",
                        .attach_path = csv,
                        .attach_type = "text/csv"};
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_true(res.delivered);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.ndelivered, 2);
    assert_int_equal(res.nrefused, 1);
    assert_string_equal(res.refused,
                        "nobody@example.com: 550 5.1.1 <nobody@example.com>: no such user");
    json_t *env = envelope(&s, 1);
    json_t *rcpts = json_object_get(env, "rcpt_tos");
    assert_int_equal(json_array_size(rcpts), 2);
    assert_string_equal(json_string_value(json_array_get(rcpts, 0)), "a@example.com");
    assert_string_equal(json_string_value(json_array_get(rcpts, 1)), "b@example.com");
    json_decref(env);
    json_t *j = inspect(&s, 1);
    expect_clean(j);
    assert_int_equal(json_array_size(json_object_get(j, "to")), 3); /* the header names all */
    expect_attachment(j, 0, csv, "errors.csv", "text/csv");
    json_decref(j);

    const char *none[] = {"nobody@example.com", "gone@example.com"};
    m.to = none;
    m.nto = 2;
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_false(res.delivered);
    assert_int_equal(res.attempts, 1);
    assert_int_equal(res.nrefused, 2);
    assert_non_null(
        strstr(res.error, "the server refused every recipient: nobody@example.com: 550"));
    assert_non_null(strstr(res.refused, "gone@example.com: 550"));
    assert_string_equal(err, res.error);
    assert_int_equal(messages(&s), 1);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

/* A recipient refused for now (450): the others get the message at once,
 * it alone at the next attempt. */
static void test_deferred_recipient(void **state)
{
    (void)state;
    struct smtp s = smtp_start("deferred", "--defer-once later@example.com");
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, s.port);
    const char *to[] = {"a@example.com", "later@example.com"};
    struct sl_mail m = {.to = to, .nto = 2, .subject = "report", .text = "text"};
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_true(res.delivered);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(res.ndelivered, 2);
    assert_int_equal(res.nrefused, 0);
    assert_int_equal(messages(&s), 2);
    json_t *e1 = envelope(&s, 1), *e2 = envelope(&s, 2);
    assert_int_equal(json_array_size(json_object_get(e1, "rcpt_tos")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e1, "rcpt_tos"), 0)),
                        "a@example.com");
    assert_int_equal(json_array_size(json_object_get(e2, "rcpt_tos")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(e2, "rcpt_tos"), 0)),
                        "later@example.com");
    json_decref(e1);
    json_decref(e2);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

/* STARTTLS required and AUTH: delivered over TLS as the user; a wrong
 * password fails at once (535, no retry) without showing the password; a
 * server that offers no STARTTLS gets nothing. */
static void test_starttls_auth(void **state)
{
    (void)state;
    char opts[1024];
    snprintf(opts, sizeof(opts), "--starttls %s %s --require-starttls --auth 'reporter:%s'", crt,
             crt_key, PASSWORD);
    struct smtp s = smtp_start("starttls", opts);
    char url[128], pwf[300], ca[300];
    snprintf(url, sizeof(url), "SLUICE_SMTP_URL=smtp://127.0.0.1:%d", s.port);
    snprintf(pwf, sizeof(pwf), "SLUICE_SMTP_PASSWORD_FILE=%s", pwfile);
    snprintf(ca, sizeof(ca), "SLUICE_SMTP_CA_FILE=%s", crt);
    struct sl_smtp_config cfg;
    cfg_load(&cfg, (const char *const[]){url, "SLUICE_SMTP_USER=reporter", pwf, ca,
                                         "SLUICE_SMTP_FROM=reports@sluice.test",
                                         "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    assert_int_equal(cfg.starttls, SL_SMTP_TLS_REQUIRED);
    const char *to[] = {"ops@example.org"};
    struct sl_mail m = {.to = to,
                        .nto = 1,
                        .subject = "over TLS",
                        .text = "text",
                        .html = "<p>html</p>",
                        .attach_path = xlsx,
                        .attach_name = "errors.xlsx",
                        .attach_type = XLSX_TYPE};
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_true(res.delivered);
    assert_int_equal(res.attempts, 1);
    json_t *env = envelope(&s, 1);
    assert_true(json_is_true(json_object_get(env, "tls")));
    assert_string_equal(jstr(env, "auth"), "reporter");
    json_decref(env);
    json_t *j = inspect(&s, 1);
    expect_clean(j);
    expect_attachment(j, 0, xlsx, "errors.xlsx", XLSX_TYPE);
    json_decref(j);
    sl_smtp_config_cleanup(&cfg);

    /* no login where one is required: permanent, with a hint */
    cfg_load(&cfg, (const char *const[]){url, ca, "SLUICE_SMTP_FROM=reports@sluice.test",
                                         "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_int_equal(res.attempts, 1);
    if (!strstr(res.error, "the server refused the sender reports@sluice.test: 530") ||
        !strstr(res.error, "SLUICE_SMTP_USER"))
        fail_msg("%s", res.error);
    sl_smtp_config_cleanup(&cfg);

    /* a wrong password: permanent */
    cfg_load(&cfg, (const char *const[]){url, "SLUICE_SMTP_USER=reporter",
                                         "SLUICE_SMTP_PASSWORD=s3cr3t-wrong", ca,
                                         "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_false(res.delivered);
    assert_int_equal(res.attempts, 1);
    if (!strstr(res.error, "the login as reporter failed: 535"))
        fail_msg("%s", res.error);
    assert_null(strstr(res.error, "s3cr3t"));
    assert_non_null(strstr(res.error, url + strlen("SLUICE_SMTP_URL=")));
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);

    /* STARTTLS required, not offered */
    struct smtp p = smtp_start("nostarttls", "");
    snprintf(url, sizeof(url), "SLUICE_SMTP_URL=smtp://127.0.0.1:%d", p.port);
    cfg_load(&cfg, (const char *const[]){url, "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_int_equal(res.attempts, 1);
    if (!strstr(res.error, "the server does not offer STARTTLS"))
        fail_msg("%s", res.error);
    assert_int_equal(messages(&p), 0);
    sl_smtp_config_cleanup(&cfg);

    /* opportunistic (no login): clear text when STARTTLS is not offered */
    cfg_load(&cfg, (const char *const[]){url, "SLUICE_SMTP_STARTTLS=opportunistic", NULL});
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    env = envelope(&p, 1);
    assert_false(json_is_true(json_object_get(env, "tls")));
    json_decref(env);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&p);
}

/* smtps: TLS from the first byte, the credentials in the URL's userinfo;
 * without the CA the certificate is not accepted (no retry). */
static void test_smtps(void **state)
{
    (void)state;
    char opts[1024];
    snprintf(opts, sizeof(opts), "--tls %s %s --auth 'rep@orts:%s'", crt, crt_key, PASSWORD);
    struct smtp s = smtp_start("smtps", opts);
    char url[256], ca[300];
    snprintf(url, sizeof(url), "SLUICE_SMTP_URL=smtps://rep%%40orts:%s@127.0.0.1:%d", PASSWORD_URL,
             s.port);
    snprintf(ca, sizeof(ca), "SLUICE_SMTP_CA_FILE=%s", crt);
    struct sl_smtp_config cfg;
    cfg_load(&cfg, (const char *const[]){url, ca, "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    const char *to[] = {"ops@example.org"};
    struct sl_mail m = {.to = to, .nto = 1, .subject = "smtps", .text = "text"};
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_int_equal(res.attempts, 1);
    json_t *env = envelope(&s, 1);
    assert_true(json_is_true(json_object_get(env, "tls")));
    assert_string_equal(jstr(env, "auth"), "rep@orts");
    json_decref(env);
    sl_smtp_config_cleanup(&cfg);

    cfg_load(&cfg, (const char *const[]){url, "SLUICE_SMTP_RETRY_DELAY_MS=50", NULL});
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_INVALID);
    assert_int_equal(res.attempts, 1);
    if (!strstr(res.error, "the server's TLS certificate was not accepted") ||
        !strstr(res.error, "SLUICE_SMTP_CA_FILE"))
        fail_msg("%s", res.error);
    assert_null(strstr(res.error, "s3cr3t"));
    assert_null(strstr(res.error, "rep%40orts"));
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

/* ---- tests: failures and retries --------------------------------------------- */

/* Nothing listens: retried with backoff (50, 100, 200 ms +-25 %), then not
 * delivered with a clear error, in bounded time. */
static void test_unreachable(void **state)
{
    (void)state;
    int port = free_port();
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, port);
    const char *to[] = {"ops@example.org"};
    struct sl_mail m = {.to = to, .nto = 1, .subject = "s", .text = "t", .attach_path = xlsx};
    struct sl_mail_result res;
    char err[512] = "", want[128];
    double t0 = now_s();
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_RETRY);
    double took = elapsed_since(t0);
    assert_false(res.delivered);
    assert_int_equal(res.attempts, 4);
    snprintf(want, sizeof(want),
             "could not send the report to smtp://127.0.0.1:%d (4 attempts): ", port);
    if (strncmp(res.error, want, strlen(want)) || !strstr(res.error, "onnect"))
        fail_msg("%s", res.error);
    assert_string_equal(err, res.error);
    if (took < 0.75 * (50 + 100 + 200) / 1000.0 || took > 10)
        fail_msg("took %.3f s", took);
    sl_smtp_config_cleanup(&cfg);
}

/* A server that accepts the connection and never answers: the timeout
 * ends each attempt. */
static void test_silent_server(void **state)
{
    (void)state;
    struct smtp s = smtp_start("silent", "--silent");
    char url[128];
    snprintf(url, sizeof(url), "SLUICE_SMTP_URL=smtp://127.0.0.1:%d", s.port);
    struct sl_smtp_config cfg;
    cfg_load(&cfg,
             (const char *const[]){url, "SLUICE_SMTP_STARTTLS=off", "SLUICE_SMTP_TIMEOUT=1",
                                   "SLUICE_SMTP_RETRIES=1", "SLUICE_SMTP_RETRY_DELAY_MS=10", NULL});
    const char *to[] = {"ops@example.org"};
    struct sl_mail m = {.to = to, .nto = 1, .subject = "s", .text = "t"};
    struct sl_mail_result res;
    char err[512] = "";
    double t0 = now_s();
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_RETRY);
    double took = elapsed_since(t0);
    assert_int_equal(res.attempts, 2);
    if (!strstr(res.error, "SLUICE_SMTP_TIMEOUT is 1 s"))
        fail_msg("%s", res.error);
    if (took < 1.5 || took > 8)
        fail_msg("took %.3f s", took);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

/* 451 to the first DATA: the second attempt delivers, once. */
static void test_transient_then_accepted(void **state)
{
    (void)state;
    struct smtp s = smtp_start("451", "--fail-data 1");
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, s.port);
    const char *to[] = {"a@example.com", "b@example.com"};
    struct sl_mail m = {
        .to = to, .nto = 2, .subject = "s", .text = "t", .html = "<p>h</p>", .attach_path = csv};
    struct sl_mail_result res;
    char err[512] = "";
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    assert_true(res.delivered);
    assert_int_equal(res.attempts, 2);
    assert_int_equal(res.ndelivered, 2);
    assert_string_equal(res.refused, "");
    assert_int_equal(messages(&s), 1);
    json_t *env = envelope(&s, 1);
    assert_int_equal(json_integer_value(json_object_get(env, "data_attempts")), 2);
    assert_int_equal(json_array_size(json_object_get(env, "rcpt_tos")), 2);
    json_decref(env);
    json_t *j = inspect(&s, 1);
    expect_clean(j);
    expect_attachment(j, 0, csv, "errors.csv", "application/octet-stream");
    json_decref(j);

    /* always 451: the retries run out */
    struct smtp t = smtp_start("451-always", "--fail-data 100");
    sl_smtp_config_cleanup(&cfg);
    cfg_plain(&cfg, t.port);
    assert_int_equal(sl_mail_send(&cfg, &m, &res, err, sizeof(err)), SL_ERR_RETRY);
    assert_int_equal(res.attempts, 4);
    if (!strstr(res.error,
                "(4 attempts): the server refused the message: 451 4.3.0 try again later"))
        fail_msg("%s", res.error);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&t);
    smtp_stop(&s);
}

/* A 10 MB attachment: streamed from its file, never held in memory. */
static void test_large_attachment(void **state)
{
    (void)state;
    const size_t size = 10u << 20;
    write_bytes(big, size);
    struct smtp s = smtp_start("large", "");
    struct sl_smtp_config cfg;
    cfg_plain(&cfg, s.port);
    const char *to[] = {"ops@example.org"};
    struct sl_mail m = {.to = to,
                        .nto = 1,
                        .subject = "100,000 rows",
                        .text = "the errors are attached",
                        .html = "<p>the errors are attached</p>",
                        .attach_path = big,
                        .attach_name = "errors.xlsx",
                        .attach_type = XLSX_TYPE};
    struct sl_mail_result res;
    char err[512] = "";
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    double t0 = now_s();
    if (sl_mail_send(&cfg, &m, &res, err, sizeof(err)))
        fail_msg("%s", err);
    double took = elapsed_since(t0);
    getrusage(RUSAGE_SELF, &after);
    long grew_kb = after.ru_maxrss - before.ru_maxrss;
    /* ASan keeps freed memory in quarantine: libcurl's and GMime's
     * per-chunk buffers then count (about 20 MB here); without it the peak
     * grows by some 100 KiB */
    if (!UNDER_ASAN && grew_kb > (long)(size / 1024 / 4))
        fail_msg("the peak RSS grew by %ld KiB sending a %zu KiB attachment", grew_kb, size / 1024);
    assert_true(res.delivered);
    assert_true(took < 30);
    json_t *j = inspect(&s, 1);
    expect_clean(j);
    expect_attachment(j, 0, big, "errors.xlsx", XLSX_TYPE);
    json_decref(j);
    sl_smtp_config_cleanup(&cfg);
    smtp_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_plain_delivery),
        cmocka_unit_test(test_refused_recipient),
        cmocka_unit_test(test_deferred_recipient),
        cmocka_unit_test(test_starttls_auth),
        cmocka_unit_test(test_smtps),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_silent_server),
        cmocka_unit_test(test_transient_then_accepted),
        cmocka_unit_test(test_large_attachment),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
