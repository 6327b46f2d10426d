/*
 * Process metrics (metrics.h): a registry of counters, gauges and
 * histograms, the Prometheus text format, and the /metrics endpoint.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

enum kind { COUNTER, GAUGE, HISTOGRAM };

static const double BOUNDS[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
#define NBOUNDS (sizeof(BOUNDS) / sizeof(BOUNDS[0]))

struct sl_counter {
    _Atomic int64_t v;
};

struct sl_histogram {
    atomic_ullong bucket[NBOUNDS + 1]; /* the last: above every bound */
    atomic_ullong sum_ns;
    atomic_ullong count;
};

struct metric {
    enum kind kind;
    char *name, *help, *labels;
    union {
        struct sl_counter c;
        struct sl_histogram h;
    } u;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct metric **metrics;
static size_t nmetrics, cmetrics;

/* The metric name{labels} of kind, made when new; NULL out of memory. */
static struct metric *lookup(enum kind kind, const char *name, const char *help, const char *labels)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock(&lock);
    struct metric *m = NULL;
    for (size_t i = 0; i < nmetrics && !m; i++)
        if (metrics[i]->kind == kind && !strcmp(metrics[i]->name, name) &&
            !strcmp(metrics[i]->labels, labels))
            m = metrics[i];
    if (!m && nmetrics == cmetrics) {
        size_t cap = cmetrics ? 2 * cmetrics : 64;
        struct metric **grown = realloc(metrics, cap * sizeof(*grown));
        if (grown) {
            metrics = grown;
            cmetrics = cap;
        }
    }
    if (!m && nmetrics < cmetrics && (m = calloc(1, sizeof(*m)))) {
        m->kind = kind;
        m->name = strdup(name);
        m->help = strdup(help ? help : "");
        m->labels = strdup(labels);
        if (m->name && m->help && m->labels) {
            metrics[nmetrics++] = m;
        } else {
            free(m->name);
            free(m->help);
            free(m->labels);
            free(m);
            m = NULL;
        }
    }
    pthread_mutex_unlock(&lock);
    return m;
}

struct sl_counter *sl_metrics_counter(const char *name, const char *help, const char *labels)
{
    struct metric *m = lookup(COUNTER, name, help, labels);
    return m ? &m->u.c : NULL;
}

struct sl_counter *sl_metrics_gauge(const char *name, const char *help, const char *labels)
{
    struct metric *m = lookup(GAUGE, name, help, labels);
    return m ? &m->u.c : NULL;
}

void sl_counter_add(struct sl_counter *c, uint64_t n)
{
    if (c)
        atomic_fetch_add_explicit(&c->v, (int64_t)n, memory_order_relaxed);
}

void sl_gauge_set(struct sl_counter *g, int64_t v)
{
    if (g)
        atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

struct sl_histogram *sl_metrics_histogram(const char *name, const char *help, const char *labels)
{
    struct metric *m = lookup(HISTOGRAM, name, help, labels);
    return m ? &m->u.h : NULL;
}

void sl_histogram_observe(struct sl_histogram *h, double seconds)
{
    if (!h)
        return;
    size_t b = 0;
    while (b < NBOUNDS && seconds > BOUNDS[b])
        b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    if (seconds > 0)
        atomic_fetch_add_explicit(&h->sum_ns, (unsigned long long)(seconds * 1e9),
                                  memory_order_relaxed);
}

void sl_metrics_label_value(const char *v, char *out, size_t outsz)
{
    size_t o = 0;
    for (; v && *v && o + 3 < outsz; v++) {
        if (*v == '\\' || *v == '"') {
            out[o++] = '\\';
            out[o++] = *v;
        } else if (*v == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *v;
        }
    }
    if (outsz)
        out[o < outsz ? o : outsz - 1] = '\0';
}

/* name{labels[,extra]} value */
static int sample(struct sl_buf *b, const char *name, const char *suffix, const char *labels,
                  const char *extra, const char *value)
{
    int rc = sl_buf_printf(b, "%s%s", name, suffix);
    if (labels[0] || (extra && extra[0]))
        rc |= sl_buf_printf(b, "{%s%s%s}", labels, labels[0] && extra && extra[0] ? "," : "",
                            extra ? extra : "");
    return rc | sl_buf_printf(b, " %s\n", value);
}

int sl_metrics_render(struct sl_buf *b)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    bool *done = calloc(nmetrics ? nmetrics : 1, sizeof(bool));
    if (!done) {
        pthread_mutex_unlock(&lock);
        return SL_ERR_NOMEM;
    }
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < nmetrics; i++) {
        if (done[i])
            continue;
        const struct metric *f = metrics[i];
        rc |= sl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                            types[f->kind]);
        /* the family together: every metric of this name */
        for (size_t j = i; j < nmetrics; j++) {
            const struct metric *m = metrics[j];
            if (done[j] || strcmp(m->name, f->name) || m->kind != f->kind)
                continue;
            done[j] = true;
            char v[64];
            if (m->kind != HISTOGRAM) {
                snprintf(v, sizeof(v), "%lld",
                         (long long)atomic_load_explicit(&m->u.c.v, memory_order_relaxed));
                rc |= sample(b, m->name, "", m->labels, NULL, v);
                continue;
            }
            unsigned long long cum = 0;
            for (size_t k = 0; k <= NBOUNDS; k++) {
                cum += atomic_load_explicit(&m->u.h.bucket[k], memory_order_relaxed);
                char le[32];
                if (k < NBOUNDS)
                    snprintf(le, sizeof(le), "le=\"%g\"", BOUNDS[k]);
                else
                    snprintf(le, sizeof(le), "le=\"+Inf\"");
                snprintf(v, sizeof(v), "%llu", cum);
                rc |= sample(b, m->name, "_bucket", m->labels, le, v);
            }
            snprintf(v, sizeof(v), "%.9f",
                     (double)atomic_load_explicit(&m->u.h.sum_ns, memory_order_relaxed) / 1e9);
            rc |= sample(b, m->name, "_sum", m->labels, NULL, v);
            snprintf(v, sizeof(v), "%llu",
                     atomic_load_explicit(&m->u.h.count, memory_order_relaxed));
            rc |= sample(b, m->name, "_count", m->labels, NULL, v);
        }
    }
    free(done);
    pthread_mutex_unlock(&lock);
    return rc ? SL_ERR_NOMEM : 0;
}

/* ---- the endpoint ------------------------------------------------------- */

struct sl_metrics_server {
    struct MHD_Daemon *d;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)cls, (void)version, (void)upload, (void)upload_size, (void)state;
    struct sl_buf b = SL_BUF_INIT;
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; version=0.0.4; charset=utf-8";
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        sl_buf_puts(&b, "method not allowed\n");
    } else if (!strcmp(url, "/metrics")) {
        if (sl_metrics_render(&b)) {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
            sl_buf_reset(&b);
            sl_buf_puts(&b, "out of memory\n");
        }
    } else if (!strcmp(url, "/healthz")) {
        sl_buf_puts(&b, "ok\n");
    } else {
        status = MHD_HTTP_NOT_FOUND;
        sl_buf_puts(&b, "not found: /metrics, /healthz\n");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(b.len, b.data ? b.data : (char *)"", MHD_RESPMEM_MUST_COPY);
    sl_buf_cleanup(&b);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

struct sl_metrics_server *sl_metrics_serve(const char *addr, char *errbuf, size_t errsz)
{
    char host[256] = "", port[16] = "";
    const char *colon = strrchr(addr ? addr : "", ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= sizeof(port) ||
        (size_t)(colon - addr) >= sizeof(host)) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID,
                  "SLUICE_METRICS_ADDR: '%.100s' is not host:port (e.g. 0.0.0.0:9464)",
                  addr ? addr : "");
        return NULL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    snprintf(port, sizeof(port), "%s", colon + 1);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "SLUICE_METRICS_ADDR: '%.100s': %s", addr,
                  gai_strerror(gai));
        return NULL;
    }
    struct sl_metrics_server *s = calloc(1, sizeof(*s));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (s)
        s->d =
            MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s || !s->d) {
        free(s);
        sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot serve metrics on %.100s (in use?)", addr);
        return NULL;
    }
    sl_info("metrics", "serving /metrics on %s", addr);
    return s;
}

void sl_metrics_server_stop(struct sl_metrics_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->d);
    free(s);
}
