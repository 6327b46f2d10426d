/*
 * Metrics of a process in the Prometheus text format (issue 6, "/metrics
 * from every service").
 *
 * A metric is a name with a fixed set of labels ("stage=\"parser\",topic=
 * \"files\""); asking for it once returns a handle that lives as long as the
 * process, and counting through the handle is one atomic add, so the hot
 * paths (a record through a stage) pay nothing more. Handles are looked up
 * under a lock: cache them. sl_metrics_render() writes every metric as the
 * text exposition format; sl_metrics_serve() answers GET /metrics with it
 * (libmicrohttpd) on the address of SLUICE_METRICS_ADDR.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct sl_buf;
struct sl_counter;
struct sl_histogram;

/* The counter name{labels} (labels: "" or 'k="v",k2="v2"', values already
 * escaped), made on first use; help is its HELP text (the first one given
 * wins). NULL out of memory (counting through NULL does nothing). Any
 * thread. */
struct sl_counter *sl_metrics_counter(const char *name, const char *help, const char *labels);
void sl_counter_add(struct sl_counter *c, uint64_t n);

/* A gauge: a counter that can be set (rendered as TYPE gauge). */
struct sl_counter *sl_metrics_gauge(const char *name, const char *help, const char *labels);
void sl_gauge_set(struct sl_counter *g, int64_t v);

/* The histogram name{labels} of seconds, with the buckets 1 ms .. 10 s. */
struct sl_histogram *sl_metrics_histogram(const char *name, const char *help, const char *labels);
void sl_histogram_observe(struct sl_histogram *h, double seconds);

/* Escapes v as a label value ("\\", "\"", "\n") into out (cut to outsz). */
void sl_metrics_label_value(const char *v, char *out, size_t outsz);

/* Appends every metric in the text exposition format (version 0.0.4) to b.
 * 0 or SL_ERR_NOMEM. Any thread. */
int sl_metrics_render(struct sl_buf *b);

/* An HTTP server on addr ("host:port", "[v6]:port" or ":port") answering
 * GET /metrics (and GET /healthz: "ok"). NULL with errbuf set when addr is
 * malformed or cannot be bound. */
struct sl_metrics_server;
struct sl_metrics_server *sl_metrics_serve(const char *addr, char *errbuf, size_t errsz);
/* Stops it; accepts NULL. */
void sl_metrics_server_stop(struct sl_metrics_server *s);

#endif
