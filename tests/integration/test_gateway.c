/*
 * sluice-gateway over real servers: PostgreSQL, Redis and the mock Kafka
 * cluster on loopback, the gateway as its own process on a free loopback
 * port, and curl (the real client) for every endpoint and error.
 *
 * - Health: /healthz always, /readyz with PostgreSQL, Kafka and Redis.
 * - Access: no token and a bad token are 401, a role too low 403, in the
 *   one error shape whose request_id is the X-Request-Id header; tokens
 *   made by the admin work once shown and are stored only as SHA-256; no
 *   token ever reaches the log.
 * - Jobs: a bad job is 400 invalid_job naming the field; create, read (any
 *   version), update (a new version; the name must match), list with
 *   pagination, duplicate, disable/enable, delete; 404, 405, 409 and 413
 *   (announced and chunked bodies).
 * - Runs: run now is 202 with a queued run in sluice_runs and its JobTicket
 *   on sluice.tickets (read back with kcat); history with filters and
 *   pagination, one run, its rejected rows as NDJSON and CSV; a job with a
 *   run in flight cannot be deleted, and a name deleted and stored again
 *   goes on after its last version.
 * - Kafka down: run now is 503 and the run failed with the reason; /readyz
 *   names kafka (and redis, once Redis is stopped); both recover.
 * - 60 requests from 20 clients at once all answer right.
 * - SIGTERM stops the gateway with exit status 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gateway_server.h"

#define ADMIN "test-admin-token-0123456789abcdef"

static bool unfinished;

/* ---- helpers ------------------------------------------------------------- */

static char *slurp(const char *path, size_t *lenp)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t len = 0, cap = 4096;
    char *s = malloc(cap);
    size_t n;
    while (s && (n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 1024)
            s = realloc(s, cap *= 2);
    }
    fclose(f);
    if (s)
        s[len] = '\0';
    if (lenp)
        *lenp = len;
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* One response of curl: status, body, headers. */
struct resp {
    int status;
    char *body;
    char *headers;
    json_t *json; /* the body parsed, when it is JSON */
};

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* Runs curl: method on path (with query), with the bearer token (NULL:
 * none), body text (NULL: none; "@FILE": a file), extra curl arguments. */
static struct resp http(const char *method, const char *path, const char *token, const char *body,
                        const char *extra)
{
    char bodyf[128], outf[128], hdrf[128], cmd[2048], auth[256] = "", data[256] = "";
    snprintf(bodyf, sizeof(bodyf), "%s/req.body", tmp);
    snprintf(outf, sizeof(outf), "%s/resp.body", tmp);
    snprintf(hdrf, sizeof(hdrf), "%s/resp.headers", tmp);
    if (token)
        snprintf(auth, sizeof(auth), "-H 'Authorization: Bearer %s'", token);
    if (body && body[0] == '@') {
        snprintf(data, sizeof(data), "--data-binary '%s'", body);
    } else if (body) {
        write_text(bodyf, body);
        snprintf(data, sizeof(data), "--data-binary '@%s' -H 'Content-Type: application/json'",
                 bodyf);
    }
    snprintf(cmd, sizeof(cmd),
             "curl -s -S --max-time 30 -o '%s' -D '%s' -w '%%{http_code}' -X %s %s %s %s '%s%s'",
             outf, hdrf, method, auth, data, extra ? extra : "", base, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    struct resp r = {0};
    if (fscanf(p, "%d", &r.status) != 1)
        r.status = -1;
    pclose(p);
    r.body = slurp(outf, NULL);
    r.headers = slurp(hdrf, NULL);
    if (r.body)
        r.json = json_loads(r.body, JSON_DECODE_ANY, NULL);
    unlink(outf);
    unlink(hdrf);
    return r;
}

#define expect_status(r, code)                                                                     \
    do {                                                                                           \
        if ((r).status != (code))                                                                  \
            fail_msg("expected HTTP %d, got %d: %s", (code), (r).status,                           \
                     (r).body ? (r).body : "(no body)");                                           \
    } while (0)

/* Checks the error shape: code, field (NULL: none), and request_id equal
 * to the X-Request-Id header. */
static void expect_error(struct resp *r, int status, const char *code, const char *field)
{
    expect_status(*r, status);
    json_t *e = json_object_get(r->json, "error");
    if (!e)
        fail_msg("no error in the answer (HTTP %d): %s\n%s", r->status,
                 r->body ? r->body : "(no body)", r->headers ? r->headers : "");
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    if (field)
        assert_string_equal(json_string_value(json_object_get(e, "field")), field);
    const char *rid = json_string_value(json_object_get(e, "request_id"));
    assert_non_null(rid);
    char hdr[128];
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s", rid);
    if (!r->headers || !strcasestr(r->headers, hdr))
        fail_msg("no '%s' among the headers:\n%s", hdr, r->headers ? r->headers : "");
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The first value of a one-row query, as text (caller frees); NULL for none. */
static char *sql1(const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *res = PQexecParams(db, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    char *v = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    else if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
    return v;
}

static const char *job_doc(const char *name, const char *type, const char *desc)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\n  \"name\": \"%s\",\n  \"description\": \"%s\",\n"
             "  \"source\": {\"url\": \"stores.csv\", \"format\": \"csv\"},\n"
             "  \"target\": {\"object\": \"stores\", \"key\": [\"id\"], \"attributes\": {\n"
             "    \"id\": {\"type\": \"text\", \"required\": true},\n"
             "    \"name\": {\"type\": \"%s\"}}},\n"
             "  \"mapping\": {\"id\": \"Id\", \"name\": \"Name\"},\n"
             "  \"destination\": {\"type\": \"postgres\", \"table\": \"stores\"}\n}\n",
             name, desc, type);
    return buf;
}

/* A token of role made by the admin (caller frees). */
static char *make_token(const char *name, const char *role)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"name\": \"%s\", \"role\": \"%s\"}", name, role);
    struct resp r = http("POST", "/v1/tokens", ADMIN, body, NULL);
    expect_status(r, 201);
    assert_string_equal(jstr(r.json, "role"), role);
    char *tok = strdup(jstr(r.json, "token"));
    resp_free(&r);
    return tok;
}

/* ---- set-up -------------------------------------------------------------- */

static int setup(void **state)
{
    static const char *const topics[] = {"sluice.tickets:1", "sluice.runs:1", NULL};
    return gateway_server_start("sluice-gw", topics, ADMIN);
}

static int teardown(void **state)
{
    return gateway_server_stop(unfinished);
}

/* ---- tests --------------------------------------------------------------- */

static void test_health(void **state)
{
    unfinished = true;
    struct resp r = http("GET", "/healthz", NULL, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(jstr(r.json, "status"), "ok");
    assert_non_null(strcasestr(r.headers, "X-Request-Id: "));
    resp_free(&r);
    r = http("GET", "/readyz", NULL, NULL, NULL);
    expect_status(r, 200);
    json_t *checks = json_object_get(r.json, "checks");
    assert_string_equal(jstr(checks, "postgres"), "ok");
    assert_string_equal(jstr(checks, "kafka"), "ok");
    assert_string_equal(jstr(checks, "redis"), "ok");
    resp_free(&r);
    /* a request id the client gives is kept */
    r = http("GET", "/nowhere", NULL, NULL, "-H 'X-Request-Id: my-trace-42'");
    expect_error(&r, 404, "not_found", NULL);
    assert_string_equal(jstr(json_object_get(r.json, "error"), "request_id"), "my-trace-42");
    resp_free(&r);
    /* headers of 8 KiB are taken; far larger ones refused with 431 */
    const size_t sizes[] = {8000, 20000};
    for (size_t i = 0; i < 2; i++) {
        char path[128], extra[160];
        snprintf(path, sizeof(path), "%s/big.headers", tmp);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("X-Big: ", f);
        for (size_t k = 0; k < sizes[i]; k++)
            fputc('a', f);
        fputc('\n', f);
        fclose(f);
        snprintf(extra, sizeof(extra), "-H '@%s'", path);
        r = http("GET", "/healthz", NULL, NULL, extra);
        expect_status(r, i == 0 ? 200 : 431);
        resp_free(&r);
    }
    unfinished = false;
}

static void test_access(void **state)
{
    unfinished = true;
    struct resp r = http("GET", "/v1/jobs", NULL, NULL, NULL);
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);
    r = http("GET", "/v1/jobs", "not-a-token", NULL, NULL);
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);
    r = http("GET", "/v1/jobs", NULL, NULL, "-H 'Authorization: Basic YWRtaW46YWRtaW4='");
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);

    char *viewer = make_token("ci-viewer", "viewer");
    char *operator= make_token("ci-operator", "operator");
    /* stored hashed only */
    char *hex = sql1("SELECT count(*) FROM sluice_api_tokens WHERE token_sha256 = "
                     "encode(sha256(convert_to($1, 'UTF8')), 'hex')",
                     viewer);
    assert_string_equal(hex, "1");
    free(hex);
    hex =
        sql1("SELECT count(*) FROM sluice_api_tokens WHERE token_sha256 = $1 OR name = $1", viewer);
    assert_string_equal(hex, "0");
    free(hex);

    r = http("GET", "/v1/jobs", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_true(json_is_array(json_object_get(r.json, "items")));
    resp_free(&r);
    r = http("POST", "/v1/jobs", viewer, job_doc("x", "text", "d"), NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs", operator, job_doc("x", "text", "d"), NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/tokens", operator, "{\"name\":\"x\",\"role\":\"admin\"}", NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN, "{\"name\":\"ci-bad\",\"role\":\"root\"}", NULL);
    expect_error(&r, 400, "invalid_request", "role");
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN, "{\"name\":\"Bad Name\",\"role\":\"viewer\"}", NULL);
    expect_error(&r, 400, "invalid_request", "name");
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN, "{\"name\":\"ci-viewer\",\"role\":\"viewer\"}", NULL);
    expect_error(&r, 409, "token_exists", NULL);
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN, "{\"name\": ", NULL);
    expect_error(&r, 400, "invalid_json", NULL);
    resp_free(&r);
    r = http("GET", "/v1/tokens", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    assert_null(strstr(r.body, "sha256"));
    resp_free(&r);
    /* a deleted token stops working */
    char *gone = make_token("ci-gone", "viewer");
    r = http("DELETE", "/v1/tokens/ci-gone", ADMIN, NULL, NULL);
    expect_status(r, 204);
    resp_free(&r);
    r = http("GET", "/v1/jobs", gone, NULL, NULL);
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);
    r = http("DELETE", "/v1/tokens/ci-gone", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* no token in the log, but every request with its id (the access log
     * is written in batches, at most 50 ms late) */
    char path[128];
    snprintf(path, sizeof(path), "%s/gateway.log", tmp);
    char *log = NULL;
    for (int i = 0; i < 40; i++) {
        free(log);
        log = slurp(path, NULL);
        assert_non_null(log);
        if (strstr(log, "DELETE /v1/tokens/ci-gone -> 404"))
            break;
        usleep(50000);
    }
    assert_null(strstr(log, ADMIN));
    assert_null(strstr(log, viewer));
    assert_null(strstr(log, operator));
    assert_null(strstr(log, gone));
    assert_non_null(strstr(log, "GET /v1/jobs -> 401"));
    assert_non_null(strstr(log, "GET /v1/jobs -> 200 by ci-viewer"));
    free(log);
    free(viewer);
    free(operator);
    free(gone);
    unfinished = false;
}

static void test_jobs(void **state)
{
    unfinished = true;
    /* invalid: the field is named */
    struct resp r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-stores", "txt", "v1"), NULL);
    expect_error(&r, 400, "invalid_job", "target.attributes.name.type");
    assert_non_null(strstr(jstr(json_object_get(r.json, "error"), "message"), "txt"));
    resp_free(&r);
    r = http("POST", "/v1/jobs", ADMIN, "{\"name\": \"x\",", NULL);
    expect_error(&r, 400, "invalid_job", NULL);
    resp_free(&r);

    /* create, again unchanged, read */
    r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-stores", "text", "v1"), NULL);
    expect_status(r, 201);
    assert_string_equal(jstr(r.json, "id"), "gw-stores");
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 1);
    assert_non_null(strcasestr(r.headers, "Location: /v1/jobs/gw-stores"));
    resp_free(&r);
    r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-stores", "text", "v1"), NULL);
    expect_status(r, 200);
    assert_false(json_is_true(json_object_get(r.json, "changed")));
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 1);
    assert_true(json_is_true(json_object_get(r.json, "enabled")));
    assert_string_equal(jstr(json_object_get(r.json, "document"), "description"), "v1");
    resp_free(&r);

    /* update: a new version; the name must match; unknown jobs are 404 */
    r = http("PUT", "/v1/jobs/gw-stores", ADMIN, job_doc("gw-stores", "text", "v2"), NULL);
    expect_status(r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 2);
    resp_free(&r);
    r = http("PUT", "/v1/jobs/gw-stores", ADMIN, job_doc("other", "text", "v2"), NULL);
    expect_error(&r, 400, "invalid_job", "name");
    resp_free(&r);
    r = http("PUT", "/v1/jobs/gw-nope", ADMIN, job_doc("gw-nope", "text", "v2"), NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores?version=1", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(r.json, "current_version")), 2);
    assert_string_equal(jstr(json_object_get(r.json, "document"), "description"), "v1");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores?version=9", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores?version=x", ADMIN, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "version");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-nope", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* duplicate */
    r = http("POST", "/v1/jobs/gw-stores/duplicate", ADMIN, "{\"name\": \"gw-stores-copy\"}", NULL);
    expect_status(r, 201);
    assert_string_equal(jstr(r.json, "id"), "gw-stores-copy");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores-copy", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(jstr(json_object_get(r.json, "document"), "name"), "gw-stores-copy");
    assert_string_equal(jstr(json_object_get(r.json, "document"), "description"), "v2");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-stores/duplicate", ADMIN, "{\"name\": \"gw-stores-copy\"}", NULL);
    expect_error(&r, 409, "job_exists", "name");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-stores/duplicate", ADMIN, "{\"name\": \"bad name!\"}", NULL);
    expect_error(&r, 400, "invalid_job", "name");
    resp_free(&r);
    r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-third", "text", "v1"), NULL);
    expect_status(r, 201);
    resp_free(&r);

    /* the list, one page at a time */
    const char *want[] = {"gw-stores", "gw-stores-copy", "gw-third"};
    char path[512] = "/v1/jobs?limit=1";
    for (int i = 0; i < 3; i++) {
        r = http("GET", path, ADMIN, NULL, NULL);
        expect_status(r, 200);
        json_t *items = json_object_get(r.json, "items");
        assert_int_equal(json_array_size(items), 1);
        assert_string_equal(jstr(json_array_get(items, 0), "id"), want[i]);
        assert_non_null(json_object_get(json_array_get(items, 0), "current_version"));
        assert_non_null(json_object_get(json_array_get(items, 0), "updated_at"));
        const char *next = jstr(r.json, "next_cursor");
        if (i < 2) {
            assert_non_null(next);
            snprintf(path, sizeof(path), "/v1/jobs?limit=1&cursor=%s", next);
        } else {
            assert_null(next);
        }
        resp_free(&r);
    }
    r = http("GET", "/v1/jobs?limit=0", ADMIN, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "limit");
    resp_free(&r);
    r = http("GET", "/v1/jobs?cursor=!!", ADMIN, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "cursor");
    resp_free(&r);

    /* enable / disable */
    r = http("POST", "/v1/jobs/gw-third/disable", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_true(json_is_false(json_object_get(r.json, "enabled")));
    resp_free(&r);
    char *en = sql1("SELECT enabled FROM sluice_jobs WHERE id = $1", "gw-third");
    assert_string_equal(en, "f");
    free(en);
    r = http("POST", "/v1/jobs/gw-third/enable", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_true(json_is_true(json_object_get(r.json, "enabled")));
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-nope/enable", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* delete */
    r = http("DELETE", "/v1/jobs/gw-third", ADMIN, NULL, NULL);
    expect_status(r, 204);
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-third", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("DELETE", "/v1/jobs/gw-third", ADMIN, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    /* the same name again goes on after the deleted job's last version */
    r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-third", "text", "again"), NULL);
    expect_status(r, 201);
    assert_int_equal(json_integer_value(json_object_get(r.json, "version")), 2);
    resp_free(&r);
    r = http("DELETE", "/v1/jobs/gw-third", ADMIN, NULL, NULL);
    expect_status(r, 204);
    resp_free(&r);

    /* methods and sizes */
    r = http("PATCH", "/v1/jobs/gw-stores", ADMIN, "{}", NULL);
    expect_error(&r, 405, "method_not_allowed", NULL);
    assert_non_null(strcasestr(r.headers, "Allow: GET, PUT, DELETE"));
    resp_free(&r);
    char big[128];
    snprintf(big, sizeof(big), "%s/big.json", tmp);
    FILE *f = fopen(big, "wb");
    assert_non_null(f);
    fputs("{\"name\": \"gw-big\", \"description\": \"", f);
    for (int i = 0; i < 1100 * 1024; i++)
        fputc('x', f);
    fputs("\"}", f);
    fclose(f);
    char at[140];
    snprintf(at, sizeof(at), "@%s", big);
    r = http("POST", "/v1/jobs", ADMIN, at, NULL);
    expect_error(&r, 413, "too_large", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs", ADMIN, at, "-H 'Transfer-Encoding: chunked'");
    expect_error(&r, 413, "too_large", NULL);
    resp_free(&r);
    /* the gateway is fine after them */
    r = http("GET", "/v1/jobs/gw-stores", ADMIN, NULL, NULL);
    expect_status(r, 200);
    resp_free(&r);
    unfinished = false;
}

static void test_runs(void **state)
{
    unfinished = true;
    char *viewer = make_token("ci-run-viewer", "viewer");
    char *op = make_token("ci-run-operator", "operator");
    struct resp r = http("POST", "/v1/jobs/gw-stores/runs", viewer, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-nope/runs", op, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-stores/runs", op, "{\"force\": \"yes\"}", NULL);
    expect_error(&r, 400, "invalid_request", "force");
    resp_free(&r);

    /* run now: a queued run and its ticket */
    r = http("POST", "/v1/jobs/gw-stores/runs", op, "{\"force\": true}", NULL);
    expect_status(r, 202);
    char run_id[64];
    snprintf(run_id, sizeof(run_id), "%s", jstr(r.json, "run_id"));
    assert_int_equal(strlen(run_id), 36);
    assert_int_equal(json_integer_value(json_object_get(r.json, "job_version")), 2);
    resp_free(&r);
    char *st = sql1("SELECT status || ' ' || trigger || ' ' || job_version FROM sluice_runs "
                    "WHERE id = $1",
                    run_id);
    assert_non_null(st);
    assert_string_equal(st, "queued api 2");
    free(st);
    char cmd[1024], out[128];
    snprintf(out, sizeof(out), "%s/ticket.bin", tmp);
    snprintf(cmd, sizeof(cmd),
             "kcat -C -b %s -t sluice.tickets -c 1 -e -o beginning -f '%%k|%%s' > %s 2>/dev/null",
             km.bootstrap, out);
    assert_int_equal(shell("%s", cmd), 0);
    size_t tlen = 0;
    char *ticket = slurp(out, &tlen);
    assert_non_null(ticket);
    assert_true(tlen > 10 && !memcmp(ticket, "gw-stores|", 10));
    assert_non_null(memmem(ticket, tlen, run_id, strlen(run_id)));
    assert_non_null(memmem(ticket, tlen, "api", 3));
    free(ticket);

    /* a job with a run in flight is not deleted */
    r = http("DELETE", "/v1/jobs/gw-stores", ADMIN, NULL, NULL);
    expect_error(&r, 409, "job_busy", NULL);
    resp_free(&r);

    /* the run, and the history */
    char path[512];
    snprintf(path, sizeof(path), "/v1/runs/%s", run_id);
    r = http("GET", path, viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(jstr(r.json, "status"), "queued");
    assert_string_equal(jstr(r.json, "job_id"), "gw-stores");
    resp_free(&r);
    r = http("GET", "/v1/runs/00000000-0000-0000-0000-000000000000", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* what the pipeline would have recorded: two finished runs with
     * rejected rows, the queued one above */
    PGresult *res = PQexec(
        db, "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status, started_at, "
            "  finished_at, counts, columns) VALUES "
            "('run-old', 'gw-stores', 1, 'schedule', 'succeeded', '2025-01-01T00:00:00Z', "
            "  '2025-01-01T00:01:00Z', '{\"read\": 2, \"published\": 2, \"rejected\": 0}', NULL), "
            "('run-err', 'gw-stores', 1, 'schedule', 'completed_with_errors', "
            "  '2025-06-01T00:00:00Z', '2025-06-01T00:01:00Z', "
            "  '{\"read\": 3, \"published\": 1, \"rejected\": 2}', '[\"Id\", \"Name\"]');"
            "INSERT INTO sluice_rejected_rows (run_id, row, errors, source) VALUES "
            "('run-err', 2, '[{\"attribute\": \"id\", \"code\": \"required\", "
            "  \"message\": \"a value is required\", \"value\": null}]', "
            "  '{\"Id\": \"\", \"Name\": \"Berlin, Mitte\"}'), "
            "('run-err', 3, '[{\"attribute\": \"id\", \"code\": \"too_long\", "
            "  \"message\": \"longer than 3\", \"value\": \"abcd\"}, {\"attribute\": \"name\", "
            "  \"code\": \"required\", \"message\": \"a value is required\", \"value\": null}]', "
            "  '{\"Id\": \"abcd\", \"Name\": \"say \\\"hi\\\"\"}')");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s", PQerrorMessage(db));
    PQclear(res);

    const char *order[] = {run_id, "run-err", "run-old"};
    snprintf(path, sizeof(path), "/v1/jobs/gw-stores/runs?limit=2");
    r = http("GET", path, viewer, NULL, NULL);
    expect_status(r, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(jstr(json_array_get(items, 0), "id"), order[0]);
    assert_string_equal(jstr(json_array_get(items, 1), "id"), order[1]);
    assert_null(json_object_get(json_array_get(items, 0), "_cursor_us"));
    assert_non_null(jstr(r.json, "next_cursor"));
    snprintf(path, sizeof(path), "/v1/jobs/gw-stores/runs?limit=2&cursor=%s",
             jstr(r.json, "next_cursor"));
    resp_free(&r);
    r = http("GET", path, viewer, NULL, NULL);
    expect_status(r, 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "id"), order[2]);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores/runs?status=completed_with_errors", viewer, NULL, NULL);
    expect_status(r, 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "id"), "run-err");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(items, 0), "counts"), "rejected")),
                     2);
    resp_free(&r);
    r = http("GET",
             "/v1/jobs/gw-stores/runs?since=2025-03-01T00:00:00Z&until=2025-12-31T00:00:00%2B01:00",
             viewer, NULL, NULL);
    expect_status(r, 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "id"), "run-err");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores/runs?since=yesterday", viewer, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "since");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-stores/runs?status=done", viewer, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "status");
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-nope/runs", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* one run, and its rejected rows */
    r = http("GET", "/v1/runs/run-err", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(jstr(r.json, "status"), "completed_with_errors");
    assert_int_equal(json_integer_value(json_object_get(r.json, "rejected_rows")), 2);
    assert_string_equal(jstr(r.json, "started_at"), "2025-06-01T00:00:00.000Z");
    resp_free(&r);
    r = http("GET", "/v1/runs/run-err/rejected", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_non_null(strcasestr(r.headers, "Content-Type: application/x-ndjson"));
    char *nl = strchr(r.body, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *row = json_loads(r.body, 0, NULL);
    assert_non_null(row);
    assert_int_equal(json_integer_value(json_object_get(row, "row")), 2);
    assert_string_equal(jstr(json_object_get(row, "source"), "Name"), "Berlin, Mitte");
    json_decref(row);
    row = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(row);
    assert_int_equal(json_integer_value(json_object_get(row, "row")), 3);
    json_decref(row);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-err/rejected?format=csv", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(
        r.body, "_row,_errors,Id,Name\r\n"
                "2,id: a value is required,,\"Berlin, Mitte\"\r\n"
                "3,id: longer than 3; name: a value is required,abcd,\"say \"\"hi\"\"\"\r\n");
    resp_free(&r);
    r = http("GET", "/v1/runs/run-old/rejected", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(r.body, "");
    resp_free(&r);
    r = http("GET", "/v1/runs/run-err/rejected?format=xml", viewer, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "format");
    resp_free(&r);
    r = http("GET", "/v1/runs/nope/rejected", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* once the run is final, the job can go; its runs stay as history */
    res = PQexecParams(db, "UPDATE sluice_runs SET status = 'failed' WHERE id = $1", 1, NULL,
                       (const char *[]){run_id}, NULL, NULL, 0);
    PQclear(res);
    r = http("DELETE", "/v1/jobs/gw-stores", ADMIN, NULL, NULL);
    expect_status(r, 204);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-err", viewer, NULL, NULL);
    expect_status(r, 200);
    resp_free(&r);
    free(viewer);
    free(op);
    unfinished = false;
}

/* The trigger API: trigger tokens (of some jobs, for nothing else),
 * idempotency keys (header or body: the same key answers the first run),
 * force, 404/403/400; operator and admin may trigger too. */
static void test_trigger(void **state)
{
    unfinished = true;
    struct resp r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-trig", "text", "t"), NULL);
    expect_status(r, 201);
    resp_free(&r);
    r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-other", "text", "o"), NULL);
    expect_status(r, 201);
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN,
             "{\"name\": \"ci-upstream\", \"role\": \"trigger\", \"jobs\": [\"gw-trig\"]}", NULL);
    expect_status(r, 201);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "jobs"), 0)),
                        "gw-trig");
    char *up = strdup(jstr(r.json, "token"));
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN,
             "{\"name\": \"ci-bad\", \"role\": \"viewer\", \"jobs\": [\"gw-trig\"]}", NULL);
    expect_error(&r, 400, "invalid_request", "jobs");
    resp_free(&r);
    r = http("POST", "/v1/tokens", ADMIN,
             "{\"name\": \"ci-bad\", \"role\": \"trigger\", \"jobs\": []}", NULL);
    expect_error(&r, 400, "invalid_request", "jobs");
    resp_free(&r);
    r = http("GET", "/v1/tokens", ADMIN, NULL, NULL);
    expect_status(r, 200);
    assert_non_null(
        strstr(r.body, "\"name\":\"ci-upstream\",\"role\":\"trigger\",\"jobs\":[\"gw-trig\"]"));
    resp_free(&r);
    char *viewer = make_token("ci-trig-viewer", "viewer");
    char *op = make_token("ci-trig-operator", "operator");

    /* a key in the header: one run, and the same run again */
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, NULL,
             "-H 'Idempotency-Key: export-2026-11-23'");
    expect_status(r, 202);
    char run1[64];
    snprintf(run1, sizeof(run1), "%s", jstr(r.json, "run_id"));
    assert_string_equal(jstr(r.json, "trigger"), "trigger");
    assert_string_equal(jstr(r.json, "idempotency_key"), "export-2026-11-23");
    assert_non_null(strcasestr(r.headers, "Location: /v1/runs/"));
    resp_free(&r);
    char *st = sql1("SELECT status || ' ' || trigger || ' ' || idempotency_key FROM sluice_runs "
                    "WHERE id = $1",
                    run1);
    assert_string_equal(st, "queued trigger export-2026-11-23");
    free(st);
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, "{\"idempotency_key\": \"export-2026-11-23\"}",
             NULL);
    expect_status(r, 200);
    assert_string_equal(jstr(r.json, "run_id"), run1);
    assert_true(json_is_true(json_object_get(r.json, "duplicate")));
    assert_string_equal(jstr(r.json, "status"), "queued");
    resp_free(&r);
    st = sql1("SELECT count(*) FROM sluice_runs WHERE job_id = 'gw-trig'", NULL);
    assert_string_equal(st, "1");
    free(st);
    /* the ticket says who asked */
    char out[128];
    snprintf(out, sizeof(out), "%s/tickets.bin", tmp);
    assert_int_equal(shell("kcat -C -b %s -t sluice.tickets -e -o beginning -f '%%k|%%s\\n' > %s "
                           "2>/dev/null",
                           km.bootstrap, out),
                     0);
    size_t tlen = 0;
    char *tickets = slurp(out, &tlen);
    char *at = tickets ? memmem(tickets, tlen, run1, strlen(run1)) : NULL;
    assert_non_null(at);
    assert_non_null(memmem(at, tlen - (size_t)(at - tickets), "trigger", 7));
    free(tickets);

    /* another key, no key, force */
    r = http("POST", "/v1/jobs/gw-trig/trigger", up,
             "{\"idempotency_key\": \"export-2\", \"force\": true}", NULL);
    expect_status(r, 202);
    assert_string_not_equal(jstr(r.json, "run_id"), run1);
    assert_true(json_is_true(json_object_get(r.json, "force")));
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", op, NULL, NULL);
    expect_status(r, 202);
    assert_null(json_object_get(r.json, "idempotency_key"));
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", ADMIN, "{}", NULL);
    expect_status(r, 202);
    resp_free(&r);
    st = sql1("SELECT count(*) FROM sluice_runs WHERE job_id = 'gw-trig'", NULL);
    assert_string_equal(st, "4");
    free(st);

    /* refusals */
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, "{\"idempotency_key\": \"a\"}",
             "-H 'Idempotency-Key: b'");
    expect_error(&r, 400, "invalid_request", "idempotency_key");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, "{\"idempotency_key\": \"\"}", NULL);
    expect_error(&r, 400, "invalid_request", "idempotency_key");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, "{\"force\": 1}", NULL);
    expect_error(&r, 400, "invalid_request", "force");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", up, "{\"wait\": true}", NULL);
    expect_error(&r, 400, "invalid_request", "wait");
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-other/trigger", up, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", viewer, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/trigger", NULL, NULL, NULL);
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-nope/trigger", op, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("GET", "/v1/jobs/gw-trig/trigger", op, NULL, NULL);
    expect_error(&r, 405, "method_not_allowed", NULL);
    resp_free(&r);
    /* a trigger token does nothing else, not even read */
    r = http("GET", "/v1/jobs", up, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    r = http("POST", "/v1/jobs/gw-trig/runs", up, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    snprintf(out, sizeof(out), "/v1/runs/%s", run1);
    r = http("GET", out, up, NULL, NULL);
    expect_error(&r, 403, "forbidden", NULL);
    resp_free(&r);
    free(up);
    free(viewer);
    free(op);
    unfinished = false;
}

/* A run's source file from the blob store (a later target's run: the first
 * target's), its error report (XLSX opened by openpyxl, CSV), and its live
 * progress as the stages counted it in Redis. */
static void test_downloads(void **state)
{
    unfinished = true;
    char *viewer = make_token("ci-dl-viewer", "viewer");
    PGresult *res = PQexec(
        db,
        "INSERT INTO sluice_runs (id, job_id, job_version, trigger, status, started_at, "
        "  finished_at, counts, columns, source_sha256, source_bytes) VALUES "
        "('run-src', 'gw-dl#stores', 1, 'schedule', 'completed_with_errors', "
        "  '2025-06-01T00:00:00Z', '2025-06-01T00:01:00Z', "
        "  '{\"read\": 3, \"published\": 1, \"rejected\": 2}', '[\"Id\", \"Name\"]', "
        "  'abc123', 42), "
        "('run-src-t2', 'gw-dl#contacts', 1, 'schedule', 'succeeded', now(), now(), "
        "  '{\"read\": 3}', NULL, NULL, NULL), "
        "('run-nofile', 'gw-dl', 1, 'schedule', 'failed', now(), now(), NULL, NULL, NULL, NULL), "
        "('run-wh', 'gw-dl', 1, 'webhook', 'succeeded', now(), now(), NULL, NULL, NULL, NULL), "
        "('run-busy', 'gw-dl', 1, 'api', 'running', now(), NULL, NULL, NULL, NULL, NULL);"
        "INSERT INTO sluice_rejected_rows (run_id, row, errors, source) VALUES "
        "('run-src', 2, '[{\"attribute\": \"id\", \"code\": \"required\", "
        "  \"message\": \"a value is required\", \"value\": null}]', "
        "  '{\"Id\": \"\", \"Name\": \"=HYPERLINK(1)\"}'), "
        "('run-src', 3, '[{\"attribute\": \"name\", \"code\": \"too_long\", "
        "  \"message\": \"longer than 3\", \"value\": \"Mitte\"}]', "
        "  '{\"Id\": \"7\", \"Name\": \"Mitte\"}')");
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fail_msg("%s", PQerrorMessage(db));
    PQclear(res);
    const char *csv = "Id;Name\n1;Berlin\n;=HYPERLINK(1)\n7;Mitte\n";
    assert_int_equal(shell("mkdir -p %s/blobs/gw-dl#stores/run-src", tmp), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/blobs/gw-dl#stores/run-src/stores \"de\".csv", tmp);
    write_text(path, csv);

    /* the source, byte for byte, for the run and its second target's */
    struct resp r = http("GET", "/v1/runs/run-src/source", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(r.body, csv);
    assert_non_null(
        strcasestr(r.headers, "Content-Disposition: attachment; filename=\"stores _de_.csv\""));
    assert_non_null(strcasestr(r.headers, "ETag: \"abc123\""));
    resp_free(&r);
    r = http("GET", "/v1/runs/run-src-t2/source", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_string_equal(r.body, csv);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-nofile/source", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-wh/source", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    assert_non_null(strstr(r.body, "webhook"));
    resp_free(&r);
    r = http("GET", "/v1/runs/nope/source", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-src/source", NULL, NULL, NULL);
    expect_error(&r, 401, "unauthorized", NULL);
    resp_free(&r);

    /* the report: CSV (a leading = neutralized) and XLSX */
    r = http("GET", "/v1/runs/run-src/report?format=csv", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_non_null(strcasestr(r.headers, "Content-Type: text/csv"));
    assert_non_null(strcasestr(r.headers, "filename=\"report-run-src.csv\""));
    assert_non_null(strstr(r.body, "_row,_errors,Id,Name\r\n"));
    assert_non_null(strstr(r.body, "2,id: a value is required,,'=HYPERLINK(1)\r\n"));
    assert_non_null(strstr(r.body, "3,name: longer than 3,7,Mitte\r\n"));
    resp_free(&r);
    char xlsx[256];
    snprintf(xlsx, sizeof(xlsx), "%s/report.xlsx", tmp);
    assert_int_equal(
        shell("curl -s -f -H 'Authorization: Bearer %s' -o %s '%s/v1/runs/run-src/report'", viewer,
              xlsx, base),
        0);
    assert_int_equal(
        shell("/usr/bin/python3 -c \"\n"
              "import openpyxl, sys\n"
              "wb = openpyxl.load_workbook(sys.argv[1])\n"
              "assert wb.sheetnames == ['Summary', 'Rejected rows'], wb.sheetnames\n"
              "rows = [[c.value for c in r] for r in wb['Rejected rows'].iter_rows()]\n"
              "assert rows[0] == ['_row', '_errors', 'Id', 'Name'], rows[0]\n"
              "assert rows[1][0] == 2 and rows[1][3] == '=HYPERLINK(1)', rows[1]\n"
              "assert wb['Rejected rows']['D2'].data_type == 's'\n"
              "assert rows[2][0] == 3 and rows[2][2] == '7', rows[2]\n"
              "assert len(rows) == 3, rows\n"
              "s = ' '.join(str(c.value) for r in wb['Summary'].iter_rows() for c in r)\n"
              "assert 'gw-dl#stores' in s and 'run-src' in s, s\n\" %s",
              xlsx),
        0);
    r = http("GET", "/v1/runs/run-busy/report", viewer, NULL, NULL);
    expect_error(&r, 409, "run_in_progress", NULL);
    resp_free(&r);
    r = http("GET", "/v1/runs/run-src/report?format=pdf", viewer, NULL, NULL);
    expect_error(&r, 400, "invalid_parameter", "format");
    resp_free(&r);
    r = http("GET", "/v1/runs/nope/report", viewer, NULL, NULL);
    expect_error(&r, 404, "not_found", NULL);
    resp_free(&r);

    /* live progress: what the stages counted (state.h progress_add) */
    r = http("GET", "/v1/runs/run-busy", viewer, NULL, NULL);
    expect_status(r, 200);
    assert_true(json_is_null(json_object_get(r.json, "progress")));
    resp_free(&r);
    assert_int_equal(
        shell("redis-cli -p %d HSET sluice:run:run-busy:progress parser.records_out 1000 "
              "mapper.records_in 900 mapper.records_out 880 mapper.rejected_out 20 "
              "updated_ms 1763900000000 > /dev/null",
              rs.port),
        0);
    r = http("GET", "/v1/runs/run-busy", viewer, NULL, NULL);
    expect_status(r, 200);
    json_t *p = json_object_get(json_object_get(r.json, "progress"), "stages");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(p, "parser"), "records_out")), 1000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(p, "mapper"), "rejected_out")), 20);
    assert_string_equal(jstr(json_object_get(r.json, "progress"), "updated_at"),
                        "2025-11-23T12:13:20.000Z");
    resp_free(&r);
    free(viewer);
    unfinished = false;
}

/* Kafka down: run now answers 503 and the run is failed with the reason
 * (a ticket delivered later finds the run final and is ignored); /readyz
 * says kafka. Up again: both work. */
static void test_kafka_down(void **state)
{
    unfinished = true;
    struct resp r = http("POST", "/v1/jobs", ADMIN, job_doc("gw-down", "text", "v1"), NULL);
    expect_status(r, 201);
    resp_free(&r);
    char reply[256];
    for (int b = 1; b <= 3; b++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "down %d", b);
        assert_int_equal(kafka_mock_cmd(&km, cmd, reply, sizeof(reply)), 0);
    }
    r = http("POST", "/v1/jobs/gw-down/runs", ADMIN, NULL, NULL);
    expect_error(&r, 503, "unavailable", NULL);
    resp_free(&r);
    char *status =
        sql1("SELECT status || ': ' || reason FROM sluice_runs WHERE job_id = $1", "gw-down");
    assert_non_null(status);
    assert_non_null(strstr(status, "failed: kafka at "));
    free(status);
    r = http("GET", "/readyz", NULL, NULL, NULL);
    expect_error(&r, 503, "not_ready", NULL);
    assert_string_not_equal(jstr(json_object_get(r.json, "checks"), "kafka"), "ok");
    resp_free(&r);
    for (int b = 1; b <= 3; b++) {
        char cmd[32];
        snprintf(cmd, sizeof(cmd), "up %d", b);
        assert_int_equal(kafka_mock_cmd(&km, cmd, reply, sizeof(reply)), 0);
    }
    r = http("POST", "/v1/jobs/gw-down/runs", ADMIN, NULL, NULL);
    expect_status(r, 202);
    resp_free(&r);
    r = http("GET", "/readyz", NULL, NULL, NULL);
    expect_status(r, 200);
    resp_free(&r);
    unfinished = false;
}

/* Many clients at once: every answer is right (the connection pool). */
static void test_concurrent(void **state)
{
    unfinished = true;
    char out[128];
    snprintf(out, sizeof(out), "%s/codes", tmp);
    assert_int_equal(shell("seq 60 | xargs -P 20 -I{} curl -s -o /dev/null -w '%%{http_code}\\n' "
                           "-H 'Authorization: Bearer %s' '%s/v1/jobs/gw-stores-copy?n={}' > %s",
                           ADMIN, base, out),
                     0);
    char *codes = slurp(out, NULL);
    assert_non_null(codes);
    int n = 0;
    for (const char *p = codes; (p = strstr(p, "200\n")) != NULL; p += 4)
        n++;
    if (n != 60)
        fail_msg("60 requests, %d answered 200:\n%s", n, codes);
    free(codes);
    /* /metrics counts them (its own port, SLUICE_METRICS_ADDR) */
    snprintf(out, sizeof(out), "%s/metrics.txt", tmp);
    assert_int_equal(shell("curl -sf %s > %s", metrics_url, out), 0);
    char *m = slurp(out, NULL);
    assert_non_null(m);
    const char *c2 = strstr(m, "sluice_http_requests_total{code=\"2xx\"} ");
    if (!c2 || atol(c2 + strlen("sluice_http_requests_total{code=\"2xx\"} ")) < 60 ||
        !strstr(m, "sluice_http_requests_total{code=\"4xx\"}") ||
        !strstr(m, "# TYPE sluice_http_request_seconds histogram"))
        fail_msg("/metrics: %s", m);
    free(m);
    unfinished = false;
}

static void test_shutdown(void **state)
{
    unfinished = true;
    /* not ready without Redis: 503 saying which, while /healthz stays 200 */
    redis_server_stop(&rs);
    struct resp r = http("GET", "/readyz", NULL, NULL, NULL);
    expect_error(&r, 503, "not_ready", NULL);
    json_t *checks = json_object_get(r.json, "checks");
    assert_string_equal(jstr(checks, "postgres"), "ok");
    assert_string_equal(jstr(checks, "kafka"), "ok");
    assert_string_not_equal(jstr(checks, "redis"), "ok");
    assert_non_null(strstr(jstr(json_object_get(r.json, "error"), "message"), "redis"));
    resp_free(&r);
    r = http("GET", "/healthz", NULL, NULL, NULL);
    expect_status(r, 200);
    resp_free(&r);
    assert_int_equal(svc_stop(gw_pid, "gateway"), 0);
    gw_pid = 0;
    char path[128];
    snprintf(path, sizeof(path), "%s/gateway.log", tmp);
    char *log = slurp(path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "stopped"));
    free(log);
    unfinished = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health),     cmocka_unit_test(test_access),
        cmocka_unit_test(test_jobs),       cmocka_unit_test(test_runs),
        cmocka_unit_test(test_trigger),    cmocka_unit_test(test_downloads),
        cmocka_unit_test(test_kafka_down), cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
