/*
 * HTTP(S) sources end to end, against real servers on loopback: Debian's
 * nginx serving files (ETag, Last-Modified, 304 on a conditional GET; also
 * over HTTPS with certificates of a test CA made in the temporary directory:
 * trusted through source.tls.ca_file, refused without it, for another host
 * name, and on a redirect down to http) and
 * sluice-test-http_api (tool_http_api.c, libmicrohttpd): every pagination
 * style, 429 and 5xx with Retry-After, a body that never ends, a server that
 * stalls, redirects, auth. Both are started by the group setup in a
 * temporary directory, on ports the kernel picks, and stopped by PID.
 *
 * The fetcher stage runs alone (stage_harness.h, with an allow-list for
 * loopback: every test source is on 127.0.0.1), and `sluice run` runs whole
 * jobs with an http:// source (embedded mode). Without the allow-list,
 * loopback, private, metadata and IPv4-mapped addresses and a redirect to
 * loopback are refused with the guard's reason. Every bad case must end in
 * a failed run with a clear reason in bounded time. Also: the validators
 * records of the local and the Redis state store, the job's new source
 * options, and the format of a file without an extension taken from its
 * content type.
 */
#include "../stage/stage_harness.h"

#include <jansson.h>

#include "redis_server.h"
#include "services.h"
#include "sluice/source.h"

#define FETCH_JOB_NAME "httpjob"
#include "fetch_servers.h"

#define API_BIN SLUICE_BUILD_DIR "/tests/sluice-test-http_api"
#define FETCHER SLUICE_BUILD_DIR "/sluice-fetcher"

static pid_t api_pid, nginx_pid;
static int api_port, nginx_port;
/* nginx over TLS with a certificate of the test CA for 127.0.0.1, and one
 * for another host name (files.example.com) */
static int tls_port, badname_port;
static char www[128]; /* nginx's root */
static char access_log[128];

static const char stores_csv[] = "id,name\n1,Berlin\n2,Hamburg\n3,Wien\n";

/* ---- the servers ---------------------------------------------------------- */

/* Starts the API server (stderr into tmp/http_api.log) and reads its port
 * from its first line. */
static int start_api(void)
{
    char *argv[] = {API_BIN, NULL}, log[128];
    snprintf(log, sizeof(log), "%s/http_api.log", tmp);
    api_pid = spawn_port(argv, log, &api_port);
    return api_pid > 0 ? 0 : -1;
}

/* Starts nginx (no daemon, one process) serving www on free ports: plain
 * HTTP, HTTPS with the certificate of 127.0.0.1 (tmp/server.crt, signed by
 * the test CA), and HTTPS with a certificate for files.example.com. */
static int start_nginx(void)
{
    char conf[256], path[256];
    snprintf(www, sizeof(www), "%s/www", tmp);
    snprintf(access_log, sizeof(access_log), "%s/nginx/access.log", tmp);
    snprintf(path, sizeof(path), "%s/nginx", tmp);
    char typed[192], lines[192];
    snprintf(typed, sizeof(typed), "%s/typed", www);
    snprintf(lines, sizeof(lines), "%s/lines", www);
    if (sl_mkdirs(www) || sl_mkdirs(path) || sl_mkdirs(typed) || sl_mkdirs(lines))
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        nginx_port = free_port();
        tls_port = free_port();
        badname_port = free_port();
        snprintf(conf, sizeof(conf), "%s/nginx/nginx.conf", tmp);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "daemon off;\nmaster_process off;\nworker_processes 1;\n"
                "pid %s/nginx/nginx.pid;\nerror_log %s/nginx/error.log;\n"
                "events { worker_connections 64; }\n"
                "http {\n"
                "  access_log %s;\n"
                "  client_body_temp_path %s/nginx/body;\n  proxy_temp_path %s/nginx/proxy;\n"
                "  fastcgi_temp_path %s/nginx/fastcgi;\n  uwsgi_temp_path %s/nginx/uwsgi;\n"
                "  scgi_temp_path %s/nginx/scgi;\n"
                "  types { text/csv csv; application/json json; }\n"
                "  default_type application/octet-stream;\n"
                "  server {\n    listen 127.0.0.1:%d; root %s;\n"
                /* files without an extension, typed by their directory */
                "    location /typed/ { default_type application/json; }\n"
                "    location /lines/ { default_type \"application/x-ndjson; charset=utf-8\"; }\n"
                "  }\n"
                "  server {\n    listen 127.0.0.1:%d ssl; root %s;\n"
                "    ssl_certificate %s/server.crt; ssl_certificate_key %s/server.key;\n"
                /* https -> http, which the source refuses */
                "    location = /down.csv { return 302 http://127.0.0.1:%d/stores.csv; }\n"
                "  }\n"
                "  server {\n    listen 127.0.0.1:%d ssl; root %s;\n"
                "    ssl_certificate %s/badname.crt; ssl_certificate_key %s/badname.key;\n"
                "  }\n"
                "}\n",
                tmp, tmp, access_log, tmp, tmp, tmp, tmp, tmp, nginx_port, www, tls_port, www, tmp,
                tmp, nginx_port, badname_port, www, tmp, tmp);
        fclose(f);
        snprintf(path, sizeof(path), "%s/nginx/error.log", tmp);
        pid_t parent = getpid();
        nginx_pid = fork();
        if (nginx_pid < 0)
            return -1;
        if (nginx_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(127);
            int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
                close(fd);
            }
            char prefix[128];
            snprintf(prefix, sizeof(prefix), "%s/nginx/", tmp);
            execl("/usr/sbin/nginx", "nginx", "-p", prefix, "-c", conf, "-e", path, (char *)NULL);
            _exit(127);
        }
        for (int i = 0; i < 200; i++) {
            if (port_open(nginx_port) && port_open(tls_port) && port_open(badname_port))
                return 0;
            if (waitpid(nginx_pid, NULL, WNOHANG) == nginx_pid)
                break;
            usleep(25000);
        }
        stop_pid(&nginx_pid);
    }
    return -1;
}

/* The test CA's certificates of nginx. */
static int make_certs(void)
{
    return fs_make_ca() || fs_make_cert("server", "IP:127.0.0.1") ||
                   fs_make_cert("badname", "DNS:files.example.com")
               ? -1
               : 0;
}

static int group_setup(void **state)
{
    return fs_mktmp("/tmp/sluice-http-XXXXXX") || fs_start(make_certs, "the test CA", "ca.out") ||
                   fs_start(start_api, API_BIN, "http_api.log") ||
                   fs_start(start_nginx, "nginx", "nginx/error.log")
               ? -1
               : 0;
}

static int group_teardown(void **state)
{
    stop_pid(&api_pid);
    stop_pid(&nginx_pid);
    fs_rmtmp();
    return 0;
}

/* Writes data to www/name. */
static void serve(const char *name, const char *data)
{
    put(www, name, data);
}

/* The HTTP status of nginx's last logged request. */
static int last_status(void)
{
    size_t len = 0;
    char *log = sl_read_file(access_log, &len);
    assert_non_null(log);
    while (len && log[len - 1] == '\n')
        log[--len] = '\0';
    char *line = strrchr(log, '\n') ? strrchr(log, '\n') + 1 : log;
    char *q = strstr(line, "\" "); /* after the request line */
    int st = q ? atoi(q + 2) : -1;
    free(log);
    return st;
}

static char *url_of(int port, const char *path)
{
    char *u = malloc(512);
    assert_non_null(u);
    snprintf(u, 512, "http://127.0.0.1:%d%s", port, path);
    return u;
}

/* ---- tests: files on nginx, conditional GET ---------------------------- */

static void test_nginx_file_and_conditional_get(void **state)
{
    serve("stores.csv", stores_csv);
    struct sh *h = fjob(state, LOOPBACK, "\"url\":\"http://127.0.0.1:%d/stores.csv\"", nginx_port);

    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 5000, NULL);
    assert_int_equal(f->u.file.bytes, strlen(stores_csv));
    assert_string_equal(f->u.file.file_name, "stores.csv");
    assert_string_equal(f->u.file.content_type, "text/csv");
    char *body = sh_read(f->u.file.blob);
    assert_string_equal(body, stores_csv);
    free(body);
    assert_non_null(strstr(f->u.file.blob, "/out/source/stores.csv"));
    assert_int_equal(last_status(), 200);
    struct sl_source_validators v;
    assert_int_equal(h->st->ops->get_validators(h->st, "httpjob", &v), 0);
    assert_true(v.etag[0] != '\0');
    assert_true(v.last_modified[0] != '\0');
    assert_string_equal(v.sha256, f->u.file.sha256);

    /* not the last successful run's body: unconditional, fetched again */
    ticket(h, NULL, false);
    struct sl_msg *f2 = expect_file(h, 5000, NULL);
    assert_int_equal(last_status(), 200);

    /* the run succeeded: the next fetch is conditional, 304, skipped */
    assert_int_equal(h->st->ops->set_last_sha(h->st, "httpjob", f2->u.file.sha256), 0);
    ticket(h, NULL, false);
    struct sl_msg *m = next_event(h, 5000);
    if (m->u.ev.kind != SL_EV_SKIPPED)
        fail_msg("expected SKIPPED, got %s (%s)", sl_run_event_kind_str(m->u.ev.kind),
                 m->u.ev.reason ? m->u.ev.reason : "");
    assert_non_null(strstr(m->u.ev.reason, "not modified"));
    assert_string_equal(m->u.ev.sha256, f2->u.file.sha256);
    assert_int_equal(m->u.ev.bytes, strlen(stores_csv));
    sh_expect_none(h, SL_MSG_FILE, 0);
    assert_int_equal(last_status(), 304);

    /* --force: unconditional */
    ticket(h, NULL, true);
    expect_file(h, 5000, NULL);
    assert_int_equal(last_status(), 200);

    /* a changed file: the server answers 200 with the new body */
    sleep(1); /* a new Last-Modified second, so that nginx's ETag changes too */
    serve("stores.csv", "id,name\n9,Graz\n");
    ticket(h, NULL, false);
    f = expect_file(h, 5000, NULL);
    assert_int_equal(last_status(), 200);
    assert_int_equal(f->u.file.bytes, strlen("id,name\n9,Graz\n"));
    serve("stores.csv", stores_csv);

    /* a missing file */
    char *u = url_of(nginx_port, "/nosuch.csv");
    ticket(h, u, false);
    expect_failed(h, 5000, "HTTP 404", "/nosuch.csv", NULL);
    free(u);
}

/* ---- tests: HTTPS with the test CA --------------------------------------- */

static void test_https(void **state)
{
    char u[256];
    serve("stores.csv", stores_csv);
    /* the test CA verifies nginx: downloaded; then a conditional GET over TLS */
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"https://127.0.0.1:%d/stores.csv\","
                        "\"tls\":{\"ca_file\":\"%s/ca.crt\"}",
                        tls_port, tmp);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 5000, stores_csv);
    assert_string_equal(f->u.file.content_type, "text/csv");
    assert_string_equal(f->u.file.file_name, "stores.csv");
    assert_int_equal(last_status(), 200);
    assert_int_equal(h->st->ops->set_last_sha(h->st, "httpjob", f->u.file.sha256), 0);
    ticket(h, NULL, false);
    expect_skipped(h, 5000, "HTTP 304 Not Modified");
    assert_int_equal(last_status(), 304);

    /* a certificate of the same CA for another host name */
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/stores.csv", badname_port);
    ticket(h, u, false);
    const char *reason =
        expect_failed(h, 5000, u, "the server's TLS certificate was not accepted", NULL);
    if (!strstr(reason, "127.0.0.1") || !strstr(reason, "match"))
        fail_msg("the reason does not say the name does not match: %s", reason);
    assert_null(strstr(reason, "source.tls.ca_file")); /* the CA is not the problem */

    /* https -> http: refused, nothing fetched over plain http */
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/down.csv", tls_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "redirect from https to plain http", NULL);

    /* without the CA: the system's CAs do not know it */
    h = fjob(state, LOOPBACK, "\"url\":\"https://127.0.0.1:%d/stores.csv\"", tls_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "the server's TLS certificate was not accepted",
                  "unable to get local issuer certificate", "source.tls.ca_file", NULL);

    /* a CA file that is not there: the option and the file named */
    h = fjob(state, LOOPBACK,
             "\"url\":\"https://127.0.0.1:%d/stores.csv\","
             "\"tls\":{\"ca_file\":\"%s/nosuch-ca.pem\"}",
             tls_port, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.tls.ca_file: cannot read", "nosuch-ca.pem", NULL);

    /* a file that holds no certificate */
    h = fjob(state, LOOPBACK,
             "\"url\":\"https://127.0.0.1:%d/stores.csv\","
             "\"tls\":{\"ca_file\":\"%s/www/stores.csv\"}",
             tls_port, tmp);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.tls.ca_file", NULL);
}

/* ---- tests: the SSRF guard ---------------------------------------------- */

static void test_guard_refuses_without_allow_list(void **state)
{
    struct sh *h = fjob(state, NULL, "\"url\":\"http://127.0.0.1:%d/cd\",\"timeout\":5", api_port);
    char u[512];
    double t0 = now_s();
    ticket(h, NULL, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.1", "loopback", "SLUICE_ALLOW_HOSTS",
                  NULL);
    ticket(h, "http://10.1.2.3/export.csv", false);
    expect_failed(h, 5000, "refused to connect to 10.1.2.3", "private (10.0.0.0/8)", NULL);
    ticket(h, "http://169.254.169.254/latest/meta-data/iam/", false);
    expect_failed(h, 5000, "169.254.169.254", "cloud metadata", NULL);
    snprintf(u, sizeof(u), "http://[::ffff:127.0.0.1]:%d/cd", api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "::ffff:127.0.0.1", "IPv4-mapped", NULL);
    ticket(h, "http://localhost:1/x.csv", false);
    expect_failed(h, 5000, "loopback", NULL);
    /* refused before any connection: no waiting for timeouts */
    assert_true(now_s() - t0 < 4);
}

static void test_guard_refuses_redirect_to_loopback(void **state)
{
    struct sh *h = fjob(state, LOOPBACK, "\"url\":\"http://127.0.0.1:%d/cd\"", api_port);
    char u[512];
    /* the allowed server redirects to loopback addresses the list lacks */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/redirect?to=http://127.0.0.2:%d/cd", api_port,
             api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "refused to connect to 127.0.0.2", "loopback", NULL);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/redirect?to=http://%%5B::1%%5D:%d/cd", api_port,
             api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "refused to connect to ::1", "loopback", NULL);
    ticket(h, NULL, false); /* the allowed one itself works */
    struct sl_msg *f = expect_file(h, 5000, NULL);
    assert_string_equal(f->u.file.file_name, "report 2024.csv");
    assert_string_equal(f->u.file.content_type, "text/csv; charset=utf-8");
    /* redirects to other protocols and too many redirects */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/redirect?to=file:///etc/passwd", api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "redirect to 'file:///etc/passwd' refused", NULL);
    char chain[2048];
    snprintf(chain, sizeof(chain), "http://127.0.0.1:%d/redirect?to=", api_port);
    for (int i = 0; i < 6; i++) {
        char next[2048];
        char *esc = curl_easy_escape(NULL, chain, 0);
        snprintf(next, sizeof(next), "http://127.0.0.1:%d/redirect?to=%s", api_port, esc);
        curl_free(esc);
        snprintf(chain, sizeof(chain), "%s", next);
    }
    ticket(h, chain, false);
    expect_failed(h, 5000, "more than 5 redirects", NULL);
}

/* ---- tests: pagination -------------------------------------------------- */

/* Checks that the blob is one JSON document with items 1..n at path (NULL:
 * the top level), in order, their numbers spelt as the server did. */
static void expect_items(const struct sl_msg *f, const char *path, int n)
{
    char *text = sh_read(f->u.file.blob);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"price\":21.50"));
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (!doc)
        fail_msg("the assembled pages are no JSON: %s", jerr.text);
    json_t *a = doc;
    for (const char *p = path; p && *p;) {
        size_t l = strcspn(p, ".");
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)l, p);
        a = json_object_get(a, key);
        p += l + (p[l] == '.');
    }
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), (size_t)n);
    for (int i = 0; i < n; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(a, (size_t)i), "id")),
                         i + 1);
    json_decref(doc);
    free(text);
}

static void test_pagination_styles(void **state)
{
    static const struct {
        const char *url, *records, *pagination;
    } cases[] = {
        {"/page", "data.items",
         "{\"type\":\"page\",\"page_size\":10,\"page_size_param\":\"per_page\"}"},
        {"/page?per_page=10", "data.items", "{\"type\":\"page\"}"}, /* to the empty page */
        {"/offset", "results", "{\"type\":\"offset\",\"limit\":10}"},
        {"/cursor", "items", "{\"type\":\"cursor\",\"cursor_path\":\"$.meta.next\"}"},
        {"/link", NULL, "{\"type\":\"link\"}"},
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(cases); i++) {
        char rec[128] = "";
        if (cases[i].records)
            snprintf(rec, sizeof(rec), ",\"json\":{\"records\":\"$.%s\"}", cases[i].records);
        struct sh *h =
            fjob(state, LOOPBACK, "\"url\":\"http://127.0.0.1:%d%s\",\"pagination\":%s%s", api_port,
                 cases[i].url, cases[i].pagination, rec);
        ticket(h, NULL, false);
        struct sl_msg *f = expect_file(h, 5000, NULL);
        expect_items(f, cases[i].records, 25);
        assert_string_equal(f->u.file.content_type, "application/json");
        assert_non_null(strstr(f->u.file.file_name, ".json"));
        /* the same pages again: the same SHA-256, skipped once it succeeded */
        assert_int_equal(h->st->ops->set_last_sha(h->st, "httpjob", f->u.file.sha256), 0);
        ticket(h, NULL, false);
        struct sl_msg *m = next_event(h, 5000);
        assert_int_equal(m->u.ev.kind, SL_EV_SKIPPED);
    }
}

static void test_pagination_failures(void **state)
{
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"http://127.0.0.1:%d/cursor_loop\",\"json\":{\"records\":"
                        "\"$.items\"},\"pagination\":{\"type\":\"cursor\",\"cursor_path\":"
                        "\"$.meta.next\"}",
                        api_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "page 2 of", "repeats an earlier one", NULL);

    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/page?n=1000\",\"json\":{\"records\":"
             "\"$.data.items\"},\"pagination\":{\"type\":\"page\",\"max_pages\":2}",
             api_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "more than source.pagination.max_pages (2) pages", NULL);

    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/cd\",\"pagination\":{\"type\":\"link\"}", api_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "page 1 of", "not valid JSON", NULL);

    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/offset\",\"pagination\":{\"type\":\"offset\"}",
             api_port);
    ticket(h, NULL, false);
    expect_failed(h, 5000, "the page is an object, not an array of records",
                  "give source.json.records", NULL);

    /* a page that never ends: bounded by max_bytes */
    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/forever\",\"max_bytes\":200000,"
             "\"pagination\":{\"type\":\"link\"}",
             api_port);
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes for all pages together (200000 bytes)",
                  NULL);
}

/* ---- tests: retries, limits --------------------------------------------- */

static long hits(const char *id)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "curl -s 'http://127.0.0.1:%d/hits?id=%s'", api_port, id);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    long n = -1;
    if (fscanf(p, "%ld", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

static void test_retries(void **state)
{
    char *job =
        job_of("\"url\":\"http://127.0.0.1:%d/cd\",\"retries\":3,\"retry_delay\":0.05", api_port);
    struct sh *h = fstart(state, job, LOOPBACK);
    free(job);
    char u[512];

    /* two 503s, then the file */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/flaky?id=a&fail=2&code=503", api_port);
    ticket(h, u, false);
    struct sl_msg *f = expect_file(h, 5000, NULL);
    char *body = sh_read(f->u.file.blob);
    assert_string_equal(body, "id\n1\n2\n");
    free(body);
    assert_int_equal(hits("a"), 3);

    /* 429 with Retry-After: 1 is waited for, not the 50 ms backoff */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/flaky?id=b&fail=1&code=429&retry_after=1",
             api_port);
    double t0 = now_s();
    ticket(h, u, false);
    expect_file(h, 5000, NULL);
    assert_true(now_s() - t0 >= 0.95);
    assert_int_equal(hits("b"), 2);

    /* always 500: fails after the retries, saying so */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/flaky?id=c&fail=100&code=500", api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "HTTP 500", "try again later", "after 4 attempts", NULL);
    assert_int_equal(hits("c"), 4);

    /* 404 is not retried */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/flaky?id=d&fail=100&code=404", api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "HTTP 404", NULL);
    assert_int_equal(hits("d"), 1);

    /* a Retry-After longer than sluice waits fails at once */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/flaky?id=e&fail=100&code=503&retry_after=3600",
             api_port);
    t0 = now_s();
    ticket(h, u, false);
    expect_failed(h, 5000, "HTTP 503", "retry after 3600 s", NULL);
    assert_true(now_s() - t0 < 3);

    /* nobody listens: connection refused, retried, then failed */
    int port = free_port();
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x.csv", port);
    ticket(h, u, false);
    expect_failed(h, 5000, "after 4 attempts", NULL);
}

static void test_limits(void **state)
{
    struct sh *h = fjob(state, LOOPBACK,
                        "\"url\":\"http://127.0.0.1:%d/forever\",\"max_bytes\":100000,"
                        "\"timeout\":20,\"retries\":1,\"retry_delay\":0",
                        api_port);
    char u[512];
    double t0 = now_s();
    ticket(h, NULL, false);
    expect_failed(h, 10000, "larger than source.max_bytes (100000 bytes)", NULL);
    assert_true(now_s() - t0 < 5);

    /* a declared size over the limit: refused before the body */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/big?bytes=5000000", api_port);
    ticket(h, u, false);
    expect_failed(h, 5000, "larger than source.max_bytes", NULL);

    /* within it: fine */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/big?bytes=99999", api_port);
    ticket(h, u, false);
    struct sl_msg *f = expect_file(h, 5000, NULL);
    assert_int_equal(f->u.file.bytes, 99999);

    /* a server that stalls: timeout, one retry, failed in bounded time */
    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/stall\",\"timeout\":1,\"connect_timeout\":1,"
             "\"retries\":1,\"retry_delay\":0",
             api_port);
    t0 = now_s();
    ticket(h, NULL, false);
    expect_failed(h, 10000, "timed out", "source.timeout", "after 2 attempts", NULL);
    double took = now_s() - t0;
    assert_true(took >= 1.9 && took < 6);
}

/* ---- tests: headers, auth, secrets -------------------------------------- */

static void test_headers_auth_and_secrets(void **state)
{
    setenv("SLUICE_TEST_TOKEN", "s3cret", 1);
    setenv("SLUICE_TEST_KEY", "k3y", 1);
    char *job =
        job_of("\"url\":\"http://127.0.0.1:%d/auth\",\"headers\":{\"X-Api-Key\":"
               "\"${env:SLUICE_TEST_KEY}\"},\"auth\":{\"bearer\":\"${env:SLUICE_TEST_TOKEN}\"}",
               api_port);
    struct sh *h = fstart(state, job, LOOPBACK ",localhost");
    free(job);
    char u[512];

    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 5000, NULL);
    char *body = sh_read(f->u.file.blob);
    assert_string_equal(body, "id\nsecret-1\n");
    free(body);
    assert_string_equal(f->u.file.file_name, "auth");

    /* same origin: the job's headers go along */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/redirect?to=/echo", api_port);
    ticket(h, u, false);
    f = expect_file(h, 5000, NULL);
    body = sh_read(f->u.file.blob);
    assert_non_null(strstr(body, "X-Api-Key: k3y"));
    assert_non_null(strstr(body, "Authorization: Bearer s3cret"));
    assert_non_null(strstr(body, "User-Agent: sluice/"));
    free(body);

    /* another origin (localhost is another host name): neither header */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/redirect?to=http://localhost:%d/echo", api_port,
             api_port);
    ticket(h, u, false);
    f = expect_file(h, 5000, NULL);
    body = sh_read(f->u.file.blob);
    assert_null(strstr(body, "k3y"));
    assert_null(strstr(body, "s3cret"));
    assert_null(strstr(body, "Authorization"));
    free(body);

    /* a wrong secret: 401, and the secret is in no message */
    setenv("SLUICE_TEST_TOKEN", "wr0ng-t0ken", 1);
    ticket(h, NULL, false);
    const char *reason = expect_failed(h, 5000, "HTTP 401", "who are you?", NULL);
    assert_null(strstr(reason, "wr0ng-t0ken"));
    assert_null(strstr(reason, "k3y"));

    /* an unset one: named, the run fails */
    unsetenv("SLUICE_TEST_TOKEN");
    ticket(h, NULL, false);
    expect_failed(h, 5000, "source.auth.bearer", "SLUICE_TEST_TOKEN is not set", NULL);
    unsetenv("SLUICE_TEST_KEY");

    /* basic auth: "u:p" */
    setenv("SLUICE_TEST_PW", "p", 1);
    h = fjob(state, LOOPBACK,
             "\"url\":\"http://127.0.0.1:%d/echo\",\"auth\":{\"basic\":{\"user\":\"u\","
             "\"password\":\"${env:SLUICE_TEST_PW}\"}}",
             api_port);
    ticket(h, NULL, false);
    f = expect_file(h, 5000, NULL);
    body = sh_read(f->u.file.blob);
    assert_non_null(strstr(body, "Authorization: Basic dTpw"));
    free(body);
    unsetenv("SLUICE_TEST_PW");
}

/* ---- tests: the state stores' validators -------------------------------- */

static void validators_roundtrip(struct sl_state *st)
{
    struct sl_source_validators v = {.bytes = 1234}, out;
    assert_int_equal(st->ops->get_validators(st, "vjob", &out), SL_ERR_NOTFOUND);
    memset(v.url_sha256, 'a', 64);
    memset(v.sha256, 'b', 64);
    snprintf(v.etag, sizeof(v.etag), "W/\"5f-abc\"");
    snprintf(v.last_modified, sizeof(v.last_modified), "Tue, 03 Mar 2026 10:00:00 GMT");
    assert_int_equal(st->ops->set_validators(st, "vjob", &v), 0);
    assert_int_equal(st->ops->get_validators(st, "vjob", &out), 0);
    assert_memory_equal(&v, &out, sizeof(v));
    /* replaced whole: no field of the older record stays */
    v.etag[0] = '\0';
    v.bytes = 7;
    assert_int_equal(st->ops->set_validators(st, "vjob", &v), 0);
    assert_int_equal(st->ops->get_validators(st, "vjob", &out), 0);
    assert_string_equal(out.etag, "");
    assert_int_equal(out.bytes, 7);
    /* malformed records are refused */
    snprintf(v.etag, sizeof(v.etag), "a\nb");
    assert_int_equal(st->ops->set_validators(st, "vjob", &v), SL_ERR_INVALID);
    v.etag[0] = '\0';
    v.sha256[3] = 'X';
    assert_int_equal(st->ops->set_validators(st, "vjob", &v), SL_ERR_INVALID);
    assert_int_equal(st->ops->set_validators(st, "../x", &v), SL_ERR_INVALID);
}

static void test_state_validators(void **state)
{
    char err[512], dir[128];
    snprintf(dir, sizeof(dir), "%s/vstate", tmp);
    struct sl_state *st = sl_state_local_new(dir, err, sizeof(err));
    assert_non_null(st);
    validators_roundtrip(st);
    /* a hand-edited file reads as no record (SL_ERR_PARSE), never a crash */
    char path[256];
    snprintf(path, sizeof(path), "%s/jobs/vjob.validators", dir);
    free(sh_write(dir, "jobs/vjob.validators", "{\"etag\":1}", 10));
    struct sl_source_validators out;
    assert_int_equal(st->ops->get_validators(st, "vjob", &out), SL_ERR_PARSE);
    sl_state_destroy(st);

    struct redis_server rs;
    if (redis_server_start(&rs, false))
        fail_msg("cannot start redis-server");
    char url[128];
    redis_server_url(&rs, 0, NULL, url, sizeof(url));
    st = sl_state_redis_new(url, err, sizeof(err));
    if (!st) {
        redis_server_stop(&rs);
        fail_msg("%s", err);
    }
    validators_roundtrip(st);
    sl_state_destroy(st);
    redis_server_stop(&rs);
}

/* ---- tests: job options ------------------------------------------------- */

static void test_job_source_options(void **state)
{
    char err[512] = "";
    char *job = job_of("\"url\":\"https://api.example.com/v1/x\",\"timeout\":60,"
                       "\"connect_timeout\":5,\"retries\":0,\"retry_delay\":0.25,"
                       "\"max_bytes\":1000,\"json\":{\"records\":\"$.data\"},"
                       "\"pagination\":{\"type\":\"offset\",\"limit\":50,"
                       "\"offset_param\":\"skip\",\"limit_param\":\"take\",\"max_pages\":7}");
    struct sl_job *j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    if (!j)
        fail_msg("%s", err);
    const struct sl_source *so = &j->source;
    assert_int_equal(so->timeout, 60);
    assert_int_equal(so->connect_timeout, 5);
    assert_int_equal(so->retries, 0);
    assert_int_equal(so->retry_delay_ms, 250);
    assert_int_equal(so->max_bytes, 1000);
    assert_int_equal(so->pag.type, SL_PAG_OFFSET);
    assert_string_equal(so->pag.param, "skip");
    assert_string_equal(so->pag.size_param, "take");
    assert_int_equal(so->pag.size, 50);
    assert_int_equal(so->pag.max_pages, 7);
    sl_job_destroy(j);

    job = job_of("\"url\":\"https://h/x\"");
    j = sl_job_load_json(job, strlen(job), NULL, err, sizeof(err));
    free(job);
    assert_non_null(j);
    assert_int_equal(j->source.timeout, 300);
    assert_int_equal(j->source.connect_timeout, 10);
    assert_int_equal(j->source.retries, 3);
    assert_int_equal(j->source.retry_delay_ms, 1000);
    assert_int_equal(j->source.max_bytes, 1ull << 30);
    assert_int_equal(j->source.pag.type, SL_PAG_NONE);
    sl_job_destroy(j);

    expect_bad_job("\"url\":\"https://h/x\",\"format\":\"csv\",\"pagination\":{\"type\":\"page\"}",
                   "source.pagination: pages are read as JSON: not used with source.format 'csv'");
    expect_bad_job("\"url\":\"sftp://h/x\",\"pagination\":{\"type\":\"link\"}",
                   "source.pagination: only used with http:// and https:// sources");
    expect_bad_job("\"url\":\"https://h/x\",\"pagination\":{\"type\":\"cursor\"}",
                   "source.pagination.cursor_path: required");
    expect_bad_job("\"url\":\"https://h/x\",\"pagination\":{\"type\":\"offset\",\"limt\":5}",
                   "source.pagination: unknown field 'limt' (did you mean 'limit'?)");
    expect_bad_job("\"url\":\"https://h/x\",\"pagination\":{\"type\":\"page\","
                   "\"page_size_param\":\"per_page\"}",
                   "source.pagination.page_size: required with");
    expect_bad_job("\"url\":\"https://h/x\",\"pagination\":{\"type\":\"cursor\","
                   "\"cursor_path\":\"next\"}",
                   "source.pagination.cursor_path: 'next' is not a path like $.meta.next");
    expect_bad_job("\"url\":\"https://h/x\",\"pagination\":{\"type\":\"page\","
                   "\"page_param\":\"a&b\"}",
                   "source.pagination.page_param: 'a&b' is not a query parameter name");
    expect_bad_job("\"url\":\"https://h/x\",\"retries\":11",
                   "source.retries: must be an integer from 0 to 10");
    expect_bad_job("\"url\":\"https://h/x\",\"retry_delay\":-1", "source.retry_delay: must be");
    expect_bad_job("\"url\":\"https://h/x\",\"timeout\":5,\"connect_timeout\":6",
                   "source.connect_timeout: must not be longer than source.timeout");
    expect_bad_job("\"url\":\"https://h/x\",\"max_bytes\":0",
                   "source.max_bytes: must be an integer of at least 1");
    expect_bad_job("\"url\":\"https://h/x\",\"timout\":5",
                   "source: unknown field 'timout' (did you mean 'timeout'?)");
}

/* ---- tests: `sluice run` ------------------------------------------------ */

static void test_sluice_run_end_to_end(void **state)
{
    char dir[128], src[512], out[8192], path[256];
    snprintf(dir, sizeof(dir), "%s/e2e", tmp);
    assert_int_equal(sl_mkdirs(dir), 0);
    serve("e2e.csv", "id,name,price\n1,Berlin,1.50\n2,Hamburg,2.25\n");
    snprintf(src, sizeof(src), "\"url\":\"http://127.0.0.1:%d/e2e.csv\"", nginx_port);
    write_job(dir, src);
    const char *allow = "SLUICE_ALLOW_HOSTS=127.0.0.1/32,::1";

    int rc = sluice_run(allow, dir, out, sizeof(out));
    if (rc != 0)
        fail_msg("sluice run exited %d: %s", rc, out);
    snprintf(path, sizeof(path), "%s/out/things.ndjson", dir);
    assert_int_equal(count_lines(path), 2);
    char *text = sh_read(path);
    assert_non_null(strstr(text, "\"price\":\"2.25\""));
    free(text);
    snprintf(path, sizeof(path), "%s/out/source/e2e.csv", dir);
    assert_true(sh_exists(path));
    snprintf(path, sizeof(path), "%s/out/run.json", dir);
    text = sh_read(path);
    assert_non_null(strstr(text, "\"succeeded\""));
    free(text);

    /* unchanged: a conditional GET, 304, skipped (exit 4) */
    rc = sluice_run(allow, dir, out, sizeof(out));
    if (rc != 4)
        fail_msg("the second run exited %d (expected 4, skipped): %s", rc, out);
    assert_int_equal(last_status(), 304);

    /* no allow-list: the guard refuses loopback, the run fails (exit 1) */
    rc = sluice_run("env -u SLUICE_ALLOW_HOSTS", dir, out, sizeof(out));
    if (rc != 1 || !strstr(out, "refused to connect to 127.0.0.1") || !strstr(out, "loopback"))
        fail_msg("without an allow-list: exit %d: %s", rc, out);

    /* a malformed allow-list stops the run and names it */
    rc = sluice_run("SLUICE_ALLOW_HOSTS=10.0.0.0/99", dir, out, sizeof(out));
    if (rc == 0 || !strstr(out, "SLUICE_ALLOW_HOSTS"))
        fail_msg("a malformed allow-list: exit %d: %s", rc, out);

    /* and the service refuses to start with it (exit 2), naming the setting */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "SLUICE_POSTGRES_URL=postgresql://nobody@127.0.0.1:1/x %s --allow-hosts 10.0.0.0/99 "
             ">%s/fetcher.out 2>&1",
             FETCHER, dir);
    assert_int_equal(shell("%s", cmd), 2);
    snprintf(path, sizeof(path), "%s/fetcher.out", dir);
    text = sh_read(path);
    if (!strstr(text, "SLUICE_ALLOW_HOSTS") || !strstr(text, "at most 32 bits"))
        fail_msg("sluice-fetcher said: %s", text);
    free(text);

    /* a paginated API: every page's records in one run, exact numbers */
    snprintf(src, sizeof(src),
             "\"url\":\"http://127.0.0.1:%d/cursor\",\"json\":{\"records\":\"$.items\"},"
             "\"pagination\":{\"type\":\"cursor\",\"cursor_path\":\"$.meta.next\"}",
             api_port);
    write_job(dir, src);
    rc = sluice_run(allow, dir, out, sizeof(out));
    if (rc != 0)
        fail_msg("the paginated run exited %d: %s", rc, out);
    snprintf(path, sizeof(path), "%s/out/things.ndjson", dir);
    assert_int_equal(count_lines(path), 25);
    text = sh_read(path);
    assert_non_null(strstr(text, "\"price\":\"21.50\""));
    free(text);
}

/* ---- tests: the format from the content type ----------------------------- */

static void test_format_from_content_type(void **state)
{
    static const char json[] = "[{\"id\":1,\"name\":\"Berlin\",\"price\":\"1.50\"},"
                               "{\"id\":2,\"name\":\"Hamburg\",\"price\":\"2.25\"}]";
    static const char ndjson[] = "{\"id\":1,\"name\":\"Berlin\",\"price\":\"1.50\"}\n"
                                 "{\"id\":2,\"name\":\"Hamburg\",\"price\":\"2.25\"}\n"
                                 "{\"id\":3,\"name\":\"Wien\",\"price\":\"3.00\"}\n";
    serve("typed/stores", json);
    serve("lines/stores", ndjson);

    /* the fetcher passes nginx's type and the name, which has no extension */
    struct sh *h =
        fjob(state, LOOPBACK, "\"url\":\"http://127.0.0.1:%d/typed/stores\"", nginx_port);
    ticket(h, NULL, false);
    struct sl_msg *f = expect_file(h, 5000, NULL);
    assert_string_equal(f->u.file.file_name, "stores");
    assert_string_equal(f->u.file.content_type, "application/json");
    char *u = url_of(nginx_port, "/lines/stores");
    ticket(h, u, false);
    free(u);
    f = expect_file(h, 5000, NULL);
    assert_string_equal(f->u.file.content_type, "application/x-ndjson; charset=utf-8");

    /* `sluice run` with no source.format: the parser reads them by their
     * type (the NDJSON one would fail as JSON, which its first bytes say) */
    static const char *const paths[] = {"typed", "lines"};
    static const size_t rows[] = {2, 3};
    const char *allow = "SLUICE_ALLOW_HOSTS=127.0.0.1/32";
    for (size_t i = 0; i < SL_ARRAY_LEN(paths); i++) {
        char dir[128], src[512], out[8192], path[256];
        snprintf(dir, sizeof(dir), "%s/ctype-%s", tmp, paths[i]);
        assert_int_equal(sl_mkdirs(dir), 0);
        snprintf(src, sizeof(src), "\"url\":\"http://127.0.0.1:%d/%s/stores\"", nginx_port,
                 paths[i]);
        write_job(dir, src);
        int rc = sluice_run(allow, dir, out, sizeof(out));
        if (rc != 0)
            fail_msg("sluice run of /%s/stores exited %d: %s", paths[i], rc, out);
        snprintf(path, sizeof(path), "%s/out/things.ndjson", dir);
        assert_int_equal(count_lines(path), rows[i]);
        char *text = sh_read(path);
        assert_non_null(strstr(text, "\"price\":\"2.25\""));
        free(text);
        snprintf(path, sizeof(path), "%s/out/source/stores", dir);
        assert_true(sh_exists(path));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        SH_TEST(test_nginx_file_and_conditional_get),
        SH_TEST(test_https),
        SH_TEST(test_guard_refuses_without_allow_list),
        SH_TEST(test_guard_refuses_redirect_to_loopback),
        SH_TEST(test_pagination_styles),
        SH_TEST(test_pagination_failures),
        SH_TEST(test_retries),
        SH_TEST(test_limits),
        SH_TEST(test_headers_auth_and_secrets),
        cmocka_unit_test(test_state_validators),
        cmocka_unit_test(test_job_source_options),
        cmocka_unit_test(test_sluice_run_end_to_end),
        SH_TEST(test_format_from_content_type),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
