/*
 * The webhook endpoint (POST /v1/jobs/{id}/webhook) over real servers:
 * PostgreSQL, Redis, the mock Kafka cluster and sluice-gateway as its own
 * process, requests sent by curl and signed by the Standard Webhooks
 * reference library (npm standardwebhooks, run with node:
 * tests/integration/webhook_sign.js). What reached Kafka is read back with
 * the Kafka bus's own consumer.
 *
 * - A JSON object, an array (nested fields flattened) and NDJSON (by
 *   Content-Type and sniffed) are 202 {"run_id", "records"}; the records are
 *   on sluice.records.raw (rows 1..n, source fields flattened) between FETCHED (sha256 and bytes of
 * the body) and SEALED (the count) on sluice.runs; the run is in sluice_runs with trigger webhook.
 * - A second signature of another key (rotation) is accepted.
 * - Tampered body, stale (-6 min) and future (+6 min) timestamps: 401;
 *   missing headers 400; unknown job 404; invalid JSON 400; too large 413;
 *   none of them makes a run.
 * - A replayed webhook-id is answered 200 with the first run, no second run.
 * - Brokers down: 503 with Retry-After, the run failed; once up, the same
 *   delivery again is 202 (the failed one's id was forgotten).
 * - End to end, with sluice-mapper, -validator and -publisher as processes
 *   and a PostgreSQL destination: a delivery's run ends succeeded with its
 *   counts and rows; one with an invalid value and one whose record lacks a
 *   field the mapping reads (the required key) end completed_with_errors,
 *   those rows in sluice_rejected_rows; a burst of 200 concurrent
 *   deliveries (curl --parallel, signed here with webhook_sig.h) is 202
 *   every one, and every record of them is in the destination.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gateway_server.h"
#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/util.h"
#include "sluice/webhook_sig.h"

#define ADMIN  "test-admin-token-0123456789abcdef"
#define JOB    "wh-crm"
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define OLDKEY "whsec_dGVzdF9vbGRfa2V5X19fX19fX19fX19f"
#define SIGNER SLUICE_FIXTURES "/../integration/webhook_sign.js"
#define PIPE   "wh-pipe" /* the job of the end-to-end tests */
#define BURST  200

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

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

struct resp {
    int status;
    char *body;
    char *headers;
    json_t *json;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

/* curl: method on path with the body in file bodyf (NULL: none) and extra
 * curl arguments. */
static struct resp curl(const char *method, const char *path, const char *bodyf, const char *extra)
{
    char outf[128], hdrf[128], cmd[4096], data[256] = "";
    snprintf(outf, sizeof(outf), "%s/resp.body", tmp);
    snprintf(hdrf, sizeof(hdrf), "%s/resp.headers", tmp);
    if (bodyf)
        snprintf(data, sizeof(data), "--data-binary '@%s'", bodyf);
    snprintf(cmd, sizeof(cmd),
             "curl -s -S --max-time 30 -o '%s' -D '%s' -w '%%{http_code}' -X %s %s %s '%s%s'", outf,
             hdrf, method, data, extra ? extra : "", base, path);
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

static void expect_error(struct resp *r, int status, const char *code)
{
    expect_status(*r, status);
    json_t *e = json_object_get(r->json, "error");
    assert_non_null(e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    assert_non_null(json_string_value(json_object_get(e, "request_id")));
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static char *sql1(const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *res = PQexecParams(db, sql, param ? 1 : 0, NULL, params, NULL, NULL, 0);
    char *v = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    else if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
    return v;
}

/* The job's runs that took deliveries (the gateway records the job's next
 * streaming run ahead, queued, and removes it when no delivery came). */
static int runs_of_job(void)
{
    char *n =
        sql1("SELECT count(*) FROM sluice_runs WHERE job_id = $1 AND status <> 'queued'", JOB);
    int v = atoi(n);
    free(n);
    return v;
}

/* The reference library must be there: without it the test fails (never
 * skips) saying how to install it. */
static void need_signer(void)
{
    if (shell("command -v node >/dev/null 2>&1") != 0)
        fail_msg("node is missing: apt-get install nodejs npm (deploy/install-deps.sh)");
    if (shell("cd %s/.. && node -e \"require('./integration/node_modules/standardwebhooks')\" "
              ">/dev/null 2>&1",
              SLUICE_FIXTURES) != 0)
        fail_msg("npm package standardwebhooks is missing: run 'npm install --prefix "
                 "tests/integration standardwebhooks' in the repository (deploy/install-deps.sh)");
}

/* Posts body (len bytes) to job's webhook, signed by the reference library
 * with secrets ("a,b": two signatures) for id at now + skew seconds;
 * sent_body, when not NULL, is sent instead (tampering). */
static struct resp post(const char *job, const char *body, size_t len, const char *secrets,
                        const char *id, long skew, const char *ctype, const char *sent_body)
{
    need_signer();
    char bodyf[128], sentf[128], hdrf[128], extra[512], path[256];
    snprintf(bodyf, sizeof(bodyf), "%s/wh.body", tmp);
    snprintf(sentf, sizeof(sentf), "%s/wh.sent", tmp);
    snprintf(hdrf, sizeof(hdrf), "%s/wh.headers", tmp);
    write_file(bodyf, body, len);
    if (shell("node '%s' '%s' '%s' %ld '%s' > '%s'", SIGNER, secrets, id, (long)time(NULL) + skew,
              bodyf, hdrf) != 0)
        fail_msg("webhook_sign.js failed (node, npm standardwebhooks)");
    if (sent_body)
        write_file(sentf, sent_body, strlen(sent_body));
    snprintf(extra, sizeof(extra), "-H @'%s' -H 'Content-Type: %s'", hdrf,
             ctype ? ctype : "application/json");
    snprintf(path, sizeof(path), "/v1/jobs/%s/webhook", job);
    return curl("POST", path, sent_body ? sentf : bodyf, extra);
}

/* What a run put on Kafka, read back with a consumer of its own. */
struct seen {
    int records, fetched, sealed;
    uint64_t sealed_count, sealed_bytes;
    uint64_t rows[64];
    char first_name[64], first_city[64], first_key[64];
    char unmapped[256]; /* the seal's, joined by "," */
};

static void collect(const char *run_id, int want, struct seen *s)
{
    memset(s, 0, sizeof(*s));
    char err[512] = "", group[64];
    static int n;
    snprintf(group, sizeof(group), "wh-test-%d-%d", (int)getpid(), ++n);
    struct sl_kafka_conf kc = {.brokers = km.bootstrap, .topic_prefix = "sluice."};
    struct sl_bus *bus = sl_bus_kafka_new(&kc, err, sizeof(err));
    assert_non_null(bus);
    const char *topics[] = {SL_TOPIC_RAW, SL_TOPIC_RUNS};
    struct sl_consumer *c = bus->ops->subscribe(bus, group, topics, 2, err, sizeof(err));
    assert_non_null(c);
    for (int idle = 0; idle < 40 && !(s->sealed && s->records >= want && s->fetched);) {
        struct sl_msg *m = NULL;
        const char *topic = NULL;
        int rc = bus->ops->poll(c, &m, &topic, 250);
        if (rc == SL_ERR_TIMEOUT) {
            idle++;
            continue;
        }
        assert_int_equal(rc, 0);
        if (strcmp(m->run_id, run_id)) {
            sl_msg_unref(m);
            continue;
        }
        if (m->kind == SL_MSG_RECORD) {
            if (s->records < 64)
                s->rows[s->records] = m->u.rec.row;
            if (m->u.rec.row == 1) {
                for (uint32_t i = 0; i < m->u.rec.nsrc; i++) {
                    const struct sl_field *f = &m->u.rec.src[i];
                    if (!strcmp(f->name, "name") && f->value)
                        snprintf(s->first_name, sizeof(s->first_name), "%s", f->value);
                    if (!strcmp(f->name, "address.city") && f->value)
                        snprintf(s->first_city, sizeof(s->first_city), "%s", f->value);
                }
                if (m->key)
                    snprintf(s->first_key, sizeof(s->first_key), "%s", m->key);
            }
            s->records++;
        } else if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_FETCHED) {
            s->fetched++;
        } else if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == SL_EV_SEALED) {
            s->sealed++;
            s->sealed_count = m->u.ev.record_count;
            s->sealed_bytes = m->u.ev.counts.bytes;
            for (uint32_t i = 0; i < m->u.ev.nunmapped; i++)
                snprintf(s->unmapped + strlen(s->unmapped),
                         sizeof(s->unmapped) - strlen(s->unmapped), "%s%s", i ? "," : "",
                         m->u.ev.unmapped[i]);
        }
        sl_msg_unref(m);
    }
    bus->ops->unsubscribe(c);
    sl_bus_destroy(bus);
}

/* ---- set-up -------------------------------------------------------------- */

static int setup(void **state)
{
    static const char *const topics[] = {"sluice.tickets:1",       "sluice.runs:2",
                                         "sluice.records.raw:2",   "sluice.records.mapped:2",
                                         "sluice.records.valid:2", "sluice.records.rejected:1",
                                         "sluice.dead:1",          NULL};
    setenv("SLUICE_WEBHOOK_SECRET_WH_CRM", SECRET, 1); /* the jobs' secrets */
    setenv("SLUICE_WEBHOOK_SECRET_WH_PIPE", SECRET, 1);
    return gateway_server_start("sluice-wh", topics, ADMIN);
}

/* The value of the counter name on the gateway's /metrics (0: not there yet). */
static long long metric(const char *name)
{
    char out[160];
    snprintf(out, sizeof(out), "%s/metrics.txt", tmp);
    assert_int_equal(shell("curl -sf %s > %s", metrics_url, out), 0);
    char *text = slurp(out, NULL);
    assert_non_null(text);
    long long v = 0;
    size_t n = strlen(name);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (!strncmp(line, name, n) && line[n] == ' ')
            v = atoll(line + n + 1);
    free(text);
    return v;
}

static pid_t pipe_pid[3]; /* mapper, validator, publisher (test_pipeline) */
static const char *const pipe_svc[] = {"mapper", "validator", "publisher"};

static int teardown(void **state)
{
    int bad = 0;
    for (int i = 0; i < 3; i++)
        if (svc_stop(pipe_pid[i], pipe_svc[i]))
            bad = -1;
    return gateway_server_stop(unfinished || bad) || bad;
}

/* ---- tests --------------------------------------------------------------- */

static void test_job(void **state)
{
    unfinished = true;
    need_signer();
    static const char doc[] =
        "{\"name\": \"" JOB "\", \"source\": {\"url\": \"crm.json\", \"format\": \"json\"},\n"
        " \"target\": {\"object\": \"contacts\", \"key\": [\"id\"], \"attributes\": {\n"
        "   \"id\": {\"type\": \"text\", \"required\": true}, \"name\": {\"type\": \"text\"},\n"
        "   \"city\": {\"type\": \"text\"}}},\n"
        " \"mapping\": {\"id\": \"{{ id | trim }}\", \"name\": \"name\", \"city\": "
        "\"address.city\"},\n"
        " \"destination\": {\"type\": \"postgres\", \"table\": \"contacts\"}}\n";
    char f[128], extra[128];
    snprintf(f, sizeof(f), "%s/job.json", tmp);
    write_file(f, doc, strlen(doc));
    snprintf(extra, sizeof(extra), "-H 'Authorization: Bearer %s'", ADMIN);
    struct resp r = curl("POST", "/v1/jobs", f, extra);
    expect_status(r, 201);
    resp_free(&r);
    unfinished = false;
}

static void check_run(struct resp *r, int n, const char *body, struct seen *s)
{
    expect_status(*r, 202);
    assert_int_equal(json_integer_value(json_object_get(r->json, "records")), n);
    const char *run_id = jstr(r->json, "run_id");
    assert_non_null(run_id);
    collect(run_id, n, s);
    assert_int_equal(s->records, n);
    assert_int_equal(s->fetched, 1);
    assert_int_equal(s->sealed, 1);
    assert_int_equal(s->sealed_count, n);
    assert_int_equal(s->sealed_bytes, strlen(body));
    assert_int_equal(json_integer_value(json_object_get(r->json, "first_row")), 1);
    bool seen_row[65] = {false};
    for (int i = 0; i < n; i++) {
        assert_true(s->rows[i] >= 1 && s->rows[i] <= (uint64_t)n);
        assert_false(seen_row[s->rows[i]]);
        seen_row[s->rows[i]] = true;
    }
    char *trig =
        sql1("SELECT trigger || ' ' || job_id FROM sluice_runs WHERE id::text = $1", run_id);
    assert_non_null(trig);
    assert_string_equal(trig, "webhook " JOB);
    free(trig);
}

static void test_object(void **state)
{
    unfinished = true;
    const char *body = "{\"id\": \" c-1 \", \"name\": \"Ada\", \"address\": {\"city\": \"Köln\"}}";
    struct resp r = post(JOB, body, strlen(body), SECRET, "msg_object_1", 0, NULL, NULL);
    struct seen s;
    check_run(&r, 1, body, &s);
    assert_string_equal(s.first_name, "Ada");
    assert_string_equal(s.first_city, "Köln");
    resp_free(&r);
    unfinished = false;
}

static void test_array_and_rotation(void **state)
{
    unfinished = true;
    const char *body = "[{\"id\": \"a\", \"name\": \"A\", \"address\": {\"city\": \"Bonn\"}},"
                       " {\"id\": \"b\", \"name\": \"B\"}, {\"id\": \"c\", \"tags\": [1, 2]}]";
    /* signed with the old key and the new one: the new one matches */
    struct resp r = post(JOB, body, strlen(body), OLDKEY "," SECRET, "msg_array_1", 0, NULL, NULL);
    struct seen s;
    check_run(&r, 3, body, &s);
    assert_string_equal(s.first_city, "Bonn");
    assert_string_equal(s.unmapped, "tags.0,tags.1"); /* the seal lists them, as the parser's */
    resp_free(&r);
    /* the old key alone is refused */
    r = post(JOB, body, strlen(body), OLDKEY, "msg_array_2", 0, NULL, NULL);
    expect_error(&r, 401, "unauthorized");
    resp_free(&r);
    unfinished = false;
}

static void test_ndjson(void **state)
{
    unfinished = true;
    const char *body = "{\"id\": \"n1\", \"name\": \"N1\"}\n\n{\"id\": \"n2\", \"name\": \"N2\"}\n";
    struct resp r =
        post(JOB, body, strlen(body), SECRET, "msg_ndjson_1", 0, "application/x-ndjson", NULL);
    struct seen s;
    check_run(&r, 2, body, &s);
    assert_string_equal(s.first_name, "N1");
    resp_free(&r);
    /* sniffed: more than one object, one a line */
    r = post(JOB, body, strlen(body), SECRET, "msg_ndjson_2", 0, NULL, NULL);
    check_run(&r, 2, body, &s);
    resp_free(&r);
    /* sniffed past brackets and quotes inside strings */
    const char *tricky =
        "{\"id\": \"n3}\", \"name\": \"a \\\" {[\"}\n{\"id\": \"n4\", \"name\": \"]}\"}";
    r = post(JOB, tricky, strlen(tricky), SECRET, "msg_ndjson_3", 0, NULL, NULL);
    check_run(&r, 2, tricky, &s);
    assert_string_equal(s.first_name, "a \" {[");
    resp_free(&r);
    unfinished = false;
}

/* Deliveries of a job close in time are rows of one streaming run: each
 * answered with its first row, the run SEALED once with every row. */
static void test_window(void **state)
{
    unfinished = true;
    const char *b1 = "{\"id\": \"w1\", \"name\": \"W1\"}";
    const char *b2 = "[{\"id\": \"w2\", \"name\": \"W2\"}, {\"id\": \"w3\", \"name\": \"W3\"}]";
    struct resp r1 = post(JOB, b1, strlen(b1), SECRET, "msg_window_1", 0, NULL, NULL);
    struct resp r2 = post(JOB, b2, strlen(b2), SECRET, "msg_window_2", 0, NULL, NULL);
    expect_status(r1, 202);
    expect_status(r2, 202);
    const char *run_id = jstr(r1.json, "run_id");
    assert_non_null(run_id);
    assert_string_equal(jstr(r2.json, "run_id"), run_id);
    assert_int_equal(json_integer_value(json_object_get(r1.json, "first_row")), 1);
    assert_int_equal(json_integer_value(json_object_get(r2.json, "first_row")), 2);
    /* a change of a record the run already has goes to the job's next run
     * (not "a key seen twice in one run"): it closes this one */
    const char *b3 = "{\"id\": \" w2 \", \"name\": \"W2 again\"}";
    struct resp r3 = post(JOB, b3, strlen(b3), SECRET, "msg_window_3", 0, NULL, NULL);
    expect_status(r3, 202);
    assert_string_not_equal(jstr(r3.json, "run_id"), run_id);
    assert_int_equal(json_integer_value(json_object_get(r3.json, "first_row")), 1);
    resp_free(&r3);
    struct seen s;
    collect(run_id, 3, &s);
    assert_int_equal(s.records, 3);
    assert_int_equal(s.fetched, 1);
    assert_int_equal(s.sealed, 1);
    assert_int_equal(s.sealed_count, 3);
    assert_int_equal(s.sealed_bytes, strlen(b1) + strlen(b2));
    bool seen_row[4] = {false};
    for (int i = 0; i < 3; i++) {
        assert_true(s.rows[i] >= 1 && s.rows[i] <= 3);
        assert_false(seen_row[s.rows[i]]);
        seen_row[s.rows[i]] = true;
    }
    resp_free(&r1);
    resp_free(&r2);
    unfinished = false;
}

static void test_refused(void **state)
{
    unfinished = true;
    int before = runs_of_job();
    const char *body = "{\"id\": \"x\", \"name\": \"X\"}";
    struct resp r = post(JOB, body, strlen(body), SECRET, "msg_bad_1", 0, NULL,
                         "{\"id\": \"x\", \"name\": \"Mallory\"}");
    expect_error(&r, 401, "unauthorized");
    assert_null(strcasestr(r.headers, "WWW-Authenticate"));
    resp_free(&r);
    r = post(JOB, body, strlen(body), SECRET, "msg_bad_2", -360, NULL, NULL);
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(r.body, "old"));
    resp_free(&r);
    r = post(JOB, body, strlen(body), SECRET, "msg_bad_3", 360, NULL, NULL);
    expect_error(&r, 401, "unauthorized");
    assert_non_null(strstr(r.body, "future"));
    resp_free(&r);
    /* signed under another job's name: that job takes no webhooks / does not exist */
    r = post("no-such-job", body, strlen(body), SECRET, "msg_bad_4", 0, NULL, NULL);
    expect_error(&r, 404, "not_found");
    resp_free(&r);
    /* signed, but not records */
    const char *bad = "{\"id\": \"x\",";
    r = post(JOB, bad, strlen(bad), SECRET, "msg_bad_5", 0, NULL, NULL);
    expect_error(&r, 400, "invalid_json");
    resp_free(&r);
    const char *num = "42";
    r = post(JOB, num, strlen(num), SECRET, "msg_bad_6", 0, NULL, NULL);
    expect_error(&r, 400, "invalid_json");
    resp_free(&r);
    /* headers missing; a bearer token is no substitute */
    char f[128];
    snprintf(f, sizeof(f), "%s/plain.json", tmp);
    write_file(f, body, strlen(body));
    r = curl("POST", "/v1/jobs/" JOB "/webhook", f, "-H 'Authorization: Bearer " ADMIN "'");
    expect_error(&r, 400, "invalid_request");
    assert_non_null(strstr(r.body, "webhook-id"));
    resp_free(&r);
    r = curl("GET", "/v1/jobs/" JOB "/webhook", NULL, NULL);
    expect_error(&r, 405, "method_not_allowed");
    resp_free(&r);
    /* too large: refused before the body is read */
    size_t big = 1024 * 1024 + 10;
    char *b = malloc(big + 1);
    memset(b, ' ', big);
    memcpy(b, "{\"id\": \"big\"}", 13);
    b[big] = '\0';
    r = post(JOB, b, big, SECRET, "msg_bad_7", 0, NULL, NULL);
    expect_error(&r, 413, "too_large");
    resp_free(&r);
    free(b);
    assert_int_equal(runs_of_job(), before);
    unfinished = false;
}

/* A delivery sent again (a retry, freshly signed): acknowledged as a
 * duplicate (200), not processed; in the few milliseconds before the first
 * one's replay key is settled, a retry is told to come back (503). */
static struct resp post_again(const char *body, const char *id)
{
    struct resp r = {0};
    for (int i = 0; i < 20; i++) {
        r = post(JOB, body, strlen(body), SECRET, id, 0, NULL, NULL);
        if (r.status != 503)
            break;
        resp_free(&r);
        usleep(50000);
    }
    expect_status(r, 200);
    assert_true(json_is_true(json_object_get(r.json, "duplicate")));
    return r;
}

static void test_replay(void **state)
{
    unfinished = true;
    const char *body = "{\"id\": \"r1\", \"name\": \"R\"}";
    struct resp r = post(JOB, body, strlen(body), SECRET, "msg_replay_1", 0, NULL, NULL);
    expect_status(r, 202);
    char *run_id = strdup(jstr(r.json, "run_id"));
    resp_free(&r);
    int before = runs_of_job();
    /* the same delivery again: acknowledged, not processed */
    r = post_again(body, "msg_replay_1");
    assert_string_equal(jstr(r.json, "run_id"), run_id);
    resp_free(&r);
    assert_int_equal(runs_of_job(), before);
    struct seen s;
    collect(run_id, 1, &s);
    assert_int_equal(s.records, 1);
    assert_int_equal(s.sealed, 1);
    free(run_id);

    /* a Redis that forgot the claim script (a restart, SCRIPT FLUSH): the
     * gateway claims with the script's text and goes on; replays still
     * answered as such */
    redisContext *rc = redis_server_connect(&rs);
    assert_non_null(rc);
    redisReply *fl = redisCommand(rc, "SCRIPT FLUSH");
    assert_non_null(fl);
    assert_int_equal(fl->type, REDIS_REPLY_STATUS);
    freeReplyObject(fl);
    redisFree(rc);
    body = "{\"id\": \"r2\", \"name\": \"R2\"}";
    r = post(JOB, body, strlen(body), SECRET, "msg_replay_2", 0, NULL, NULL);
    expect_status(r, 202);
    resp_free(&r);
    r = post_again(body, "msg_replay_2");
    resp_free(&r);
    unfinished = false;
}

/* Takes the mock cluster's three brokers "down" or brings them "up". */
static void brokers(const char *what)
{
    char reply[256], cmd[32];
    for (int b = 1; b <= 3; b++) {
        snprintf(cmd, sizeof(cmd), "%s %d", what, b);
        assert_int_equal(kafka_mock_cmd(&km, cmd, reply, sizeof(reply)), 0);
    }
}

static void test_kafka_down(void **state)
{
    unfinished = true;
    brokers("down");
    const char *body = "{\"id\": \"d1\", \"name\": \"D\"}";
    struct resp r = post(JOB, body, strlen(body), SECRET, "msg_down_1", 0, NULL, NULL);
    expect_error(&r, 503, "unavailable");
    if (!strcasestr(r.headers, "Retry-After: "))
        fail_msg("no Retry-After among the headers:\n%s", r.headers);
    resp_free(&r);
    /* the gateway keeps the delivery's rows in its run and sends them again
     * when Kafka is back; a retry meanwhile is told to come back later */
    r = post(JOB, body, strlen(body), SECRET, "msg_down_1", 0, NULL, NULL);
    expect_error(&r, 503, "unavailable");
    assert_non_null(strstr(r.body, "in progress"));
    resp_free(&r);
    brokers("up");
    /* the sender retries after Retry-After: once the kept rows are taken,
     * the delivery is acknowledged as a duplicate of that run (the producer
     * takes a few seconds to reconnect) */
    for (int i = 0; i < 30; i++) {
        r = post(JOB, body, strlen(body), SECRET, "msg_down_1", 0, NULL, NULL);
        if (r.status != 503)
            break;
        resp_free(&r);
        sleep(1);
    }
    expect_status(r, 200);
    assert_true(json_is_true(json_object_get(r.json, "duplicate")));
    const char *run_id = jstr(r.json, "run_id");
    assert_non_null(run_id);
    struct seen s;
    collect(run_id, 1, &s);
    /* the first send may have reached Kafka after its answer timed out, so
     * the row can be there more than once: the same row of the same run,
     * which the stages count once (a redelivery) */
    assert_true(s.records >= 1);
    for (int i = 0; i < s.records && i < 64; i++)
        assert_int_equal(s.rows[i], 1);
    assert_true(s.fetched >= 1);
    assert_int_equal(s.sealed, 1);
    assert_int_equal(s.sealed_count, 1);
    resp_free(&r);
    unfinished = false;
}

/* ---- end to end ------------------------------------------------------- */

/* The run's status and counts once it is final (a minute at most). */
static void wait_run(const char *run_id, char *status, size_t stsz, json_t **counts)
{
    for (int i = 0; i < 600; i++) {
        char *st = sql1("SELECT status || ' ' || coalesce(counts::text, '{}') FROM sluice_runs "
                        "WHERE id::text = $1 AND status NOT IN ('queued', 'running')",
                        run_id);
        if (st) {
            char *sp = strchr(st, ' ');
            *sp = '\0';
            snprintf(status, stsz, "%s", st);
            *counts = json_loads(sp + 1, 0, NULL);
            free(st);
            return;
        }
        usleep(100000);
    }
    fail_msg("run %s did not finish in a minute (logs in %s)", run_id, tmp);
}

static json_int_t count_of(json_t *counts, const char *name)
{
    return json_integer_value(json_object_get(counts, name));
}

/* Posts body to PIPE and waits for its run: its status and counts. */
static char *pipe_run(const char *body, const char *id, int records, char *status, size_t stsz,
                      json_t **counts)
{
    struct resp r = post(PIPE, body, strlen(body), SECRET, id, 0, NULL, NULL);
    expect_status(r, 202);
    assert_int_equal(json_integer_value(json_object_get(r.json, "records")), records);
    char *run_id = strdup(jstr(r.json, "run_id"));
    resp_free(&r);
    wait_run(run_id, status, stsz, counts);
    return run_id;
}

static void test_pipeline(void **state)
{
    unfinished = true;
    static const char doc[] =
        "{\"name\": \"" PIPE "\", \"source\": {\"url\": \"push.json\", \"format\": \"json\"},\n"
        " \"target\": {\"object\": \"pushed\", \"key\": [\"id\"], \"attributes\": {\n"
        "   \"id\": {\"type\": \"text\", \"required\": true}, \"name\": {\"type\": \"text\"},\n"
        "   \"age\": {\"type\": \"integer\"}}},\n"
        " \"mapping\": {\"id\": \"{{ id | trim }}\", \"name\": \"name\", \"age\": \"age\"},\n"
        " \"destination\": {\"type\": \"postgres\", \"table\": \"wh_pushed\"}}\n";
    char f[128], extra[128], status[64];
    snprintf(f, sizeof(f), "%s/pipe.json", tmp);
    write_file(f, doc, strlen(doc));
    snprintf(extra, sizeof(extra), "-H 'Authorization: Bearer %s'", ADMIN);
    struct resp r = curl("POST", "/v1/jobs", f, extra);
    expect_status(r, 201);
    resp_free(&r);
    for (int i = 0; i < 3; i++)
        assert_true((pipe_pid[i] = svc_start(pipe_svc[i], tmp)) > 0);

    /* every record good: succeeded, in the destination */
    json_t *counts = NULL;
    char *run_id = pipe_run("[{\"id\": \"p1\", \"name\": \"Ada\", \"age\": \"36\"},"
                            " {\"id\": \" p2 \", \"name\": \"Bob\", \"age\": 41},"
                            " {\"id\": \"p3\", \"name\": \"Cy\"}]",
                            "msg_pipe_1", 3, status, sizeof(status), &counts);
    assert_string_equal(status, "succeeded");
    assert_int_equal(count_of(counts, "read"), 3);
    assert_int_equal(count_of(counts, "published"), 3);
    assert_int_equal(count_of(counts, "rejected"), 0);
    json_decref(counts);
    free(run_id);
    char *v = sql1("SELECT string_agg(id || ':' || coalesce(name, '') || ':' || "
                   "coalesce(age::text, ''), ',' ORDER BY id) FROM wh_pushed",
                   NULL);
    assert_string_equal(v, "p1:Ada:36,p2:Bob:41,p3:Cy:");
    free(v);

    /* an invalid value: that row rejected with its reason, the others published */
    run_id = pipe_run("[{\"id\": \"p4\", \"age\": \"old\"}, {\"id\": \"p5\", \"age\": 5}]",
                      "msg_pipe_2", 2, status, sizeof(status), &counts);
    assert_string_equal(status, "completed_with_errors");
    assert_int_equal(count_of(counts, "published"), 1);
    assert_int_equal(count_of(counts, "rejected"), 1);
    json_decref(counts);
    v = sql1("SELECT count(*) FROM sluice_rejected_rows WHERE run_id::text = $1", run_id);
    assert_string_equal(v, "1");
    free(v);
    free(run_id);

    /* a record without a field the mapping reads (id, required): no schema
     * drift for a delivery (docs/api.md), the row is rejected by the
     * validator's rules; the run's other rows are published */
    run_id = pipe_run("{\"name\": \"Nobody\"}\n{\"id\": \"p6\", \"name\": \"Six\"}\n", "msg_pipe_3",
                      2, status, sizeof(status), &counts);
    assert_string_equal(status, "completed_with_errors");
    assert_int_equal(count_of(counts, "published"), 1);
    assert_int_equal(count_of(counts, "rejected"), 1);
    json_decref(counts);
    v = sql1("SELECT count(*) FROM sluice_rejected_rows WHERE run_id::text = $1", run_id);
    assert_string_equal(v, "1");
    free(v);
    free(run_id);
    v = sql1("SELECT count(*) FROM wh_pushed", NULL);
    assert_string_equal(v, "5");
    free(v);

    /* a record changed twice in a row: two runs, both published, the later
     * value stays */
    const char *c1 = "{\"id\": \"p7\", \"name\": \"first\"}";
    const char *c2 = "{\"id\": \"p7\", \"name\": \"second\"}";
    struct resp a1 = post(PIPE, c1, strlen(c1), SECRET, "msg_pipe_4", 0, NULL, NULL);
    struct resp a2 = post(PIPE, c2, strlen(c2), SECRET, "msg_pipe_5", 0, NULL, NULL);
    expect_status(a1, 202);
    expect_status(a2, 202);
    assert_string_not_equal(jstr(a1.json, "run_id"), jstr(a2.json, "run_id"));
    for (int k = 0; k < 2; k++) {
        wait_run(jstr((k ? a2 : a1).json, "run_id"), status, sizeof(status), &counts);
        assert_string_equal(status, "succeeded");
        assert_int_equal(count_of(counts, "published"), 1);
        json_decref(counts);
    }
    resp_free(&a1);
    resp_free(&a2);
    v = sql1("SELECT name FROM wh_pushed WHERE id = 'p7'", NULL);
    assert_string_equal(v, "second");
    free(v);
    unfinished = false;
}

/* BURST deliveries of 2 records each at once (curl --parallel), signed
 * here: every one 202, every run succeeded, every record in the table. */
/* The count, rows read and published of the succeeded webhook runs of $1. */
#define FINAL_RUNS                                                                                 \
    "SELECT count(*) || ' ' || coalesce(sum((counts->>'read')::int), 0) || ' ' || "                \
    "coalesce(sum((counts->>'published')::int), 0) FROM sluice_runs WHERE job_id = $1 AND "        \
    "status = 'succeeded' AND trigger = 'webhook'"

static void test_burst(void **state)
{
    unfinished = true;
    int before[3];
    char *v = sql1(FINAL_RUNS, PIPE);
    assert_int_equal(sscanf(v, "%d %d %d", &before[0], &before[1], &before[2]), 3);
    free(v);
    unsigned char key[SL_WEBHOOK_KEY_MAX];
    int keylen = sl_webhook_key_decode(SECRET, key);
    assert_true(keylen > 0);
    char cfg[128], codes[128], ts[32];
    snprintf(cfg, sizeof(cfg), "%s/burst.cfg", tmp);
    snprintf(codes, sizeof(codes), "%s/burst.codes", tmp);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    FILE *cf = fopen(cfg, "w");
    assert_non_null(cf);
    for (int i = 0; i < BURST; i++) {
        char body[256], bodyf[128], id[64], sig[45];
        snprintf(body, sizeof(body),
                 "[{\"id\": \"b%d-1\", \"name\": \"B%d\", \"age\": %d},"
                 " {\"id\": \"b%d-2\", \"name\": \"B%d\"}]",
                 i, i, i, i, i);
        snprintf(bodyf, sizeof(bodyf), "%s/burst-%d.json", tmp, i);
        write_file(bodyf, body, strlen(body));
        snprintf(id, sizeof(id), "msg_burst_%d", i);
        sl_webhook_sign(key, (size_t)keylen, id, ts, body, strlen(body), sig);
        fprintf(cf,
                "%surl = \"%s/v1/jobs/" PIPE "/webhook\"\ndata-binary = \"@%s\"\n"
                "header = \"Content-Type: application/json\"\nheader = \"webhook-id: %s\"\n"
                "header = \"webhook-timestamp: %s\"\nheader = \"webhook-signature: v1,%s\"\n"
                "output = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\nmax-time = 60\n",
                i ? "next\n" : "", base, bodyf, id, ts, sig);
    }
    fclose(cf);
    long long taken0 = metric("sluice_webhook_deliveries_total");
    long long sends0 = metric("sluice_webhook_sends_total");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(
        shell(
            "curl -s --parallel --parallel-immediate --parallel-max %d -K '%s' > '%s' 2>/dev/null",
            BURST, cfg, codes),
        0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "# %d concurrent deliveries answered in %.2f s\n", BURST, secs);
    char *text = slurp(codes, NULL);
    assert_non_null(text);
    int n202 = 0, other = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (!strcmp(line, "202"))
            n202++;
        else if (other++ < 5)
            fprintf(stderr, "# a delivery was answered %s\n", line);
    free(text);
    assert_int_equal(n202, BURST);
    assert_int_equal(other, 0);
    /* the engine took them in rounds: fewer sends to Kafka than deliveries */
    long long taken = metric("sluice_webhook_deliveries_total") - taken0;
    long long sends = metric("sluice_webhook_sends_total") - sends0;
    fprintf(stderr, "# the engine sent %lld deliveries to kafka in %lld sends\n", taken, sends);
    assert_int_equal(taken, BURST);
    assert_true(sends >= 1 && sends < taken);
    /* every run final and succeeded, every record published */
    v = NULL;
    for (int i = 0; i < 1200; i++) {
        free(v);
        v = sql1("SELECT count(*) FROM sluice_runs WHERE job_id = $1 AND status IN ('queued', "
                 "'running')",
                 PIPE);
        if (!strcmp(v, "0"))
            break;
        usleep(100000);
    }
    assert_string_equal(v, "0");
    free(v);
    /* the deliveries shared a few streaming runs, every one succeeded and
     * counted every row */
    int nruns = 0, nread = 0, npub = 0;
    v = sql1(FINAL_RUNS, PIPE);
    assert_int_equal(sscanf(v, "%d %d %d", &nruns, &nread, &npub), 3);
    free(v);
    nruns -= before[0];
    fprintf(stderr, "# %d deliveries were rows of %d streaming runs\n", BURST, nruns);
    assert_true(nruns >= 1 && nruns <= BURST / 4);
    assert_int_equal(nread - before[1], 2 * BURST);
    assert_int_equal(npub - before[2], 2 * BURST);
    v = sql1("SELECT count(*) FROM sluice_runs WHERE job_id = $1 AND status NOT IN ('succeeded', "
             "'completed_with_errors')",
             PIPE);
    assert_string_equal(v, "0");
    free(v);
    v = sql1("SELECT count(*) FROM wh_pushed WHERE id LIKE 'b%'", NULL);
    assert_int_equal(atoi(v), 2 * BURST);
    free(v);
    unfinished = false;
}

/* Starts a gateway with the settings in the environment and waits until it
 * answers. */
static void gateway_again(void)
{
    assert_true((gw_pid = svc_start("gateway", tmp)) > 0);
    for (int i = 0; i < 100; i++) {
        if (shell("curl -s -o /dev/null --max-time 1 %s/healthz", base) == 0)
            return;
        usleep(100000);
    }
    fail_msg("the gateway did not answer /healthz (log in %s)", tmp);
}

/* A gateway killed while its streaming run is open (one delivery of it
 * refused by Kafka, kept): another one seals the run from what the window
 * kept in Redis once the dead one's lock expired, sending the kept delivery
 * again, and every acknowledged record reaches the destination. */
static void test_gateway_killed(void **state)
{
    unfinished = true;
    assert_int_equal(svc_stop(gw_pid, "gateway"), 0);
    setenv("SLUICE_WEBHOOK_WINDOW_MS", "120000", 1); /* it stays open */
    gateway_again();
    const char *b1 = "{\"id\": \"k1\", \"name\": \"K1\", \"extra\": 1}";
    const char *b2 = "[{\"id\": \"k2\", \"name\": \"K2\"}, {\"id\": \"k3\", \"age\": 3}]";
    struct resp r1 = post(PIPE, b1, strlen(b1), SECRET, "msg_killed_1", 0, NULL, NULL);
    struct resp r2 = post(PIPE, b2, strlen(b2), SECRET, "msg_killed_2", 0, NULL, NULL);
    expect_status(r1, 202);
    expect_status(r2, 202);
    char *run_id = strdup(jstr(r1.json, "run_id"));
    assert_string_equal(jstr(r2.json, "run_id"), run_id);
    resp_free(&r1);
    resp_free(&r2);
    /* one more that Kafka does not take: the gateway keeps it for the run */
    brokers("down");
    const char *b5 = "{\"id\": \"k5\", \"name\": \"K5\"}";
    struct resp r5 = post(PIPE, b5, strlen(b5), SECRET, "msg_killed_5", 0, NULL, NULL);
    expect_error(&r5, 503, "unavailable");
    resp_free(&r5);
    assert_int_equal(kill(gw_pid, SIGKILL), 0);
    waitpid(gw_pid, NULL, 0);
    brokers("up");
    unsetenv("SLUICE_WEBHOOK_WINDOW_MS");
    gateway_again();
    /* the new gateway takes deliveries at once, in a run of its own */
    const char *b3 = "{\"id\": \"k4\", \"name\": \"K4\"}";
    struct resp r3 = post(PIPE, b3, strlen(b3), SECRET, "msg_killed_3", 0, NULL, NULL);
    expect_status(r3, 202);
    assert_string_not_equal(jstr(r3.json, "run_id"), run_id);
    resp_free(&r3);
    /* the dead gateway's run: sealed by the new one (lock: 15 s) */
    char status[64];
    json_t *counts = NULL;
    wait_run(run_id, status, sizeof(status), &counts);
    assert_string_equal(status, "succeeded");
    assert_int_equal(count_of(counts, "read"), 4);
    assert_int_equal(count_of(counts, "published"), 4);
    json_decref(counts);
    char *v =
        sql1("SELECT string_agg(id, ',' ORDER BY id) FROM wh_pushed WHERE id LIKE 'k%'", NULL);
    assert_string_equal(v, "k1,k2,k3,k4,k5");
    free(v);
    v = sql1("SELECT coalesce(unmapped_columns::text, '') FROM sluice_runs WHERE id::text = $1",
             run_id);
    assert_non_null(strstr(v, "extra"));
    free(v);
    /* its deliveries again: duplicates of that run */
    r1 = post(PIPE, b1, strlen(b1), SECRET, "msg_killed_1", 0, NULL, NULL);
    expect_status(r1, 200);
    assert_string_equal(jstr(r1.json, "run_id"), run_id);
    resp_free(&r1);
    r5 = post(PIPE, b5, strlen(b5), SECRET, "msg_killed_5", 0, NULL, NULL);
    expect_status(r5, 200);
    assert_string_equal(jstr(r5.json, "run_id"), run_id);
    resp_free(&r5);
    free(run_id);
    unfinished = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_job),
        cmocka_unit_test(test_object),
        cmocka_unit_test(test_array_and_rotation),
        cmocka_unit_test(test_ndjson),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_kafka_down),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_burst),
        cmocka_unit_test(test_gateway_killed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
