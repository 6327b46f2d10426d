/*
 * sluice-test-http_api: the HTTP server of tests/integration/test_fetch_http.c
 * (libmicrohttpd, one thread per connection), on 127.0.0.1 at a port the
 * kernel picks, printed as one line "PORT\n" on stdout once it listens. It
 * runs until it is killed (the test stops it by PID).
 *
 * What it serves (every list is items 1..n, n = 25 unless ?n= says, each
 * {"id":I,"name":"item-I","price":I.50}, numbers spelt exactly so):
 *   /page?page=P[&per_page=S]     {"data":{"items":[page P of S (10)]}}
 *   /offset?offset=O&limit=L      {"results":[items O+1..O+L],"total":n}
 *   /cursor[?cursor=cK]           {"items":[10 from K],"meta":{"next":"cK'"|null}}
 *   /cursor_loop                  {"items":[1],"meta":{"next":"again"}} forever
 *   /link[?p=P]                   a top-level array, Link: </link?p=P+1>; rel="next"
 *   /flaky?id=K&fail=N&code=C[&retry_after=S]
 *                                 the first N requests of id K answer C (with
 *                                 Retry-After: S), then 200 text/csv "id\n1\n2\n"
 *   /hits?id=K                    how many requests /flaky had for id K
 *   /forever                      200 text/csv that never ends
 *   /stall                        200 text/csv: "id\n1\n", then nothing, ever
 *   /redirect?to=URL              302 to URL
 *   /auth                         200 csv with "Authorization: Bearer s3cret" and
 *                                 "X-Api-Key: k3y", else 401
 *   /echo                         the request's headers, one "name: value" a line
 *   /cd                           text/csv with Content-Disposition "report 2024.csv"
 *   /status?code=C                answers C with body "status C"
 *   /big?bytes=N                  N bytes of "x", with Content-Length
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#define ITEMS_DEFAULT 25
#define NKEYS         64

/* Request counts of /flaky by id. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char id[64];
    long hits;
} keys[NKEYS];

static long hit(const char *id, bool add)
{
    long n = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < NKEYS; i++) {
        if (!keys[i].id[0] && add) {
            snprintf(keys[i].id, sizeof(keys[i].id), "%s", id);
        }
        if (!strcmp(keys[i].id, id)) {
            if (add)
                keys[i].hits++;
            n = keys[i].hits;
            break;
        }
    }
    pthread_mutex_unlock(&mu);
    return n;
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static long arg_long(struct MHD_Connection *c, const char *name, long def)
{
    const char *v = arg(c, name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

/* A growing text. */
struct text {
    char *p;
    size_t n, cap;
};

static void add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (t->p && (size_t)k < t->cap - t->n) {
            t->n += (size_t)k;
            return;
        }
        t->cap = (t->cap + (size_t)k + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (!t->p)
            abort();
    }
}

/* Items first..last (1-based, clamped to n) as a JSON array. */
static void items(struct text *t, long first, long last, long n)
{
    add(t, "[");
    for (long i = first; i <= last && i <= n; i++)
        add(t, "%s{\"id\":%ld,\"name\":\"item-%ld\",\"price\":%ld.50}", i > first ? "," : "", i, i,
            i);
    add(t, "]");
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type,
                                 struct text *t, const char *const *hdrs)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(t->n, t->p ? t->p : "", MHD_RESPMEM_MUST_COPY);
    free(t->p);
    if (type)
        MHD_add_response_header(r, "Content-Type", type);
    for (size_t i = 0; hdrs && hdrs[i]; i += 2)
        MHD_add_response_header(r, hdrs[i], hdrs[i + 1]);
    enum MHD_Result rc = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rc;
}

static ssize_t forever_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    size_t n = max < 4096 ? max : 4096;
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 8 == 7) ? '\n' : '1';
    return (ssize_t)n;
}

static ssize_t stall_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    if (pos == 0) {
        memcpy(buf, "id\n1\n", 5);
        return 5;
    }
    for (;;)
        sleep(60); /* killed with the process */
}

static ssize_t big_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    memset(buf, 'x', max);
    return (ssize_t)max;
}

static enum MHD_Result echo_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    add(cls, "%s: %s\n", key, value ? value : "");
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    struct text t = {0};
    long n = arg_long(c, "n", ITEMS_DEFAULT);
    char buf[512];
    if (!strcmp(url, "/page")) {
        long p = arg_long(c, "page", 1), s = arg_long(c, "per_page", 10);
        add(&t, "{\"data\":{\"items\":");
        items(&t, (p - 1) * s + 1, p * s, n);
        add(&t, "}}");
        return send_text(c, 200, "application/json", &t, NULL);
    }
    if (!strcmp(url, "/offset")) {
        long o = arg_long(c, "offset", 0), l = arg_long(c, "limit", 10);
        add(&t, "{\"results\":");
        items(&t, o + 1, o + l, n);
        add(&t, ",\"total\":%ld}", n);
        return send_text(c, 200, "application/json", &t, NULL);
    }
    if (!strcmp(url, "/cursor")) {
        const char *cur = arg(c, "cursor");
        long k = cur && cur[0] == 'c' ? strtol(cur + 1, NULL, 10) : 1;
        add(&t, "{\"items\":");
        items(&t, k, k + 9, n);
        if (k + 10 <= n)
            add(&t, ",\"meta\":{\"next\":\"c%ld\"}}", k + 10);
        else
            add(&t, ",\"meta\":{\"next\":null}}");
        return send_text(c, 200, "application/json", &t, NULL);
    }
    if (!strcmp(url, "/cursor_loop")) {
        add(&t, "{\"items\":");
        items(&t, 1, 1, 1);
        add(&t, ",\"meta\":{\"next\":\"again\"}}");
        return send_text(c, 200, "application/json", &t, NULL);
    }
    if (!strcmp(url, "/link")) {
        long p = arg_long(c, "p", 1);
        items(&t, (p - 1) * 10 + 1, p * 10, n);
        snprintf(buf, sizeof(buf), "</link?p=%ld&n=%ld>; rel=\"next\", </link?p=1>; rel=\"first\"",
                 p + 1, n);
        const char *hdrs[] = {"Link", buf, NULL};
        return send_text(c, 200, "application/json", &t, p * 10 < n ? hdrs : NULL);
    }
    if (!strcmp(url, "/flaky")) {
        const char *id = arg(c, "id");
        long fail = arg_long(c, "fail", 1), code = arg_long(c, "code", 503);
        const char *ra = arg(c, "retry_after");
        long k = hit(id ? id : "", true);
        if (k <= fail) {
            add(&t, "try again later");
            const char *hdrs[] = {"Retry-After", ra, NULL};
            return send_text(c, (unsigned)code, "text/plain", &t, ra ? hdrs : NULL);
        }
        add(&t, "id\n1\n2\n");
        return send_text(c, 200, "text/csv", &t, NULL);
    }
    if (!strcmp(url, "/hits")) {
        const char *id = arg(c, "id");
        add(&t, "%ld", hit(id ? id : "", false));
        return send_text(c, 200, "text/plain", &t, NULL);
    }
    if (!strcmp(url, "/forever") || !strcmp(url, "/stall")) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, 4096, url[1] == 'f' ? forever_cb : stall_cb, NULL, NULL);
        MHD_add_response_header(r, "Content-Type", "text/csv");
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    if (!strcmp(url, "/big")) {
        struct MHD_Response *r = MHD_create_response_from_callback(
            (uint64_t)arg_long(c, "bytes", 1 << 20), 4096, big_cb, NULL, NULL);
        MHD_add_response_header(r, "Content-Type", "text/csv");
        enum MHD_Result rc = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return rc;
    }
    if (!strcmp(url, "/redirect")) {
        const char *to = arg(c, "to");
        add(&t, "moved");
        const char *hdrs[] = {"Location", to ? to : "/", NULL};
        return send_text(c, 302, "text/plain", &t, hdrs);
    }
    if (!strcmp(url, "/auth")) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
        if (!a || strcmp(a, "Bearer s3cret") || !k || strcmp(k, "k3y")) {
            add(&t, "who are you?");
            return send_text(c, 401, "text/plain", &t, NULL);
        }
        add(&t, "id\nsecret-1\n");
        return send_text(c, 200, "text/csv", &t, NULL);
    }
    if (!strcmp(url, "/echo")) {
        MHD_get_connection_values(c, MHD_HEADER_KIND, echo_header, &t);
        return send_text(c, 200, "text/plain", &t, NULL);
    }
    if (!strcmp(url, "/cd")) {
        add(&t, "id\nA\nB\n");
        const char *hdrs[] = {"Content-Disposition", "attachment; filename=\"report 2024.csv\"",
                              NULL};
        return send_text(c, 200, "text/csv; charset=utf-8", &t, hdrs);
    }
    if (!strcmp(url, "/status")) {
        long code = arg_long(c, "code", 404);
        add(&t, "status %ld", code);
        return send_text(c, (unsigned)code, "text/plain", &t, NULL);
    }
    add(&t, "no such endpoint");
    return send_text(c, 404, "text/plain", &t, NULL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "sluice-test-http_api: cannot start the server\n");
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (!info || !info->port) {
        fprintf(stderr, "sluice-test-http_api: no port\n");
        return 1;
    }
    printf("%u\n", (unsigned)info->port);
    fflush(stdout);
    for (;;)
        pause();
}
