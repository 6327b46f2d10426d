/*
 * Embedded mode (embedded.h): fetcher -> parser -> mapper -> validator ->
 * publisher, each stage on its own thread, through the in-process bus.
 *
 * The stages are the same code the services run; only the implementations
 * picked here differ (inproc bus, local state, file sink, local ledger).
 * The calling thread sends the ticket, follows the runs topic to draw the
 * progress bar, and stops the pipeline when the run is final.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embedded.h"
#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/sink.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define QUEUE_CAPACITY 1024
#define NSTAGES        5

struct stage_thread {
    struct sl_stage_runner *runner;
    pthread_t tid;
    bool started;
    atomic_bool *stop;
    struct sl_bus *bus;
    const char *name;
    int rc;
    char err[512];
};

static struct sl_sink *open_sink(const struct sl_job *job, const char *run_id,
                                 const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    if (env->destination_url)
        return sl_sink_postgres_open(env->destination_url, job, run_id, errbuf, errsz);
    if (sl_mkdirs(env->out_dir)) {
        sl_seterr(errbuf, errsz, SL_ERR_IO, "cannot create %s", env->out_dir);
        return NULL;
    }
    return sl_sink_file_open(env->sink_path, job, errbuf, errsz);
}

static struct sl_ledger *open_ledger(const struct sl_job *job, const char *run_id,
                                     const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct sl_ledger *lg = sl_ledger_local_open(env->out_dir, job, errbuf, errsz);
    if (lg)
        lg->smtp = env->smtp;
    return lg;
}

static void *stage_main(void *arg)
{
    struct stage_thread *t = arg;
    char name[16];
    snprintf(name, sizeof(name), "sl-%s", t->name);
    pthread_setname_np(pthread_self(), name); /* shows in top -H, perf, gdb */
    t->rc = sl_stage_runner_run(t->runner, t->stop, t->err, sizeof(t->err));
    if (t->rc) {
        sl_error("embedded", "%s", t->err);
        t->bus->ops->close(t->bus); /* wake everyone: the run cannot finish */
    }
    return NULL;
}

/* The progress bar: rows and bytes of the parser, drawn at most 10 times a
 * second, only after the run has taken a second. */
struct progress {
    bool on, drawn;
    int64_t start, last;
};

static void human_bytes(double b, char *out, size_t n)
{
    if (b >= 1e9)
        snprintf(out, n, "%.2f GB", b / 1e9);
    else if (b >= 1e6)
        snprintf(out, n, "%.1f MB", b / 1e6);
    else
        snprintf(out, n, "%.0f kB", b / 1e3);
}

static void progress_draw(struct progress *pg, const struct sl_run_event *ev)
{
    int64_t now = sl_now_us();
    if (!pg->on || now - pg->start < 1000000 || now - pg->last < 100000)
        return;
    pg->last = now;
    double secs = (double)(now - pg->start) / 1e6;
    double frac = ev->bytes ? (double)ev->counts.bytes / (double)ev->bytes : 0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[30] = '\0';
    char done[32], total[32];
    human_bytes((double)ev->counts.bytes, done, sizeof(done));
    human_bytes((double)ev->bytes, total, sizeof(total));
    fprintf(stderr, "\r[%s] %3d%%  %llu rows  %.0f rows/s  %s / %s   ", bar, (int)(frac * 100),
            (unsigned long long)ev->counts.read, (double)ev->counts.read / secs, done, total);
    fflush(stderr);
    pg->drawn = true;
}

static void progress_clear(struct progress *pg)
{
    if (pg->drawn) {
        fprintf(stderr, "\r%*s\r", 100, "");
        fflush(stderr);
    }
}

int sl_embedded_run(struct sl_job *job, const struct sl_embedded_opts *opts,
                    struct sl_embedded_result *res, char *errbuf, size_t errsz)
{
    static const struct sl_stage *const stages[NSTAGES] = {
        &sl_stage_fetcher,   &sl_stage_parser,    &sl_stage_mapper,
        &sl_stage_validator, &sl_stage_publisher,
    };
    struct stage_thread th[NSTAGES];
    memset(th, 0, sizeof(th));
    atomic_bool stop;
    atomic_init(&stop, false);
    memset(res, 0, sizeof(*res));
    int rc = 0;
    struct sl_consumer *runs = NULL;
    struct sl_jobs *jobs = sl_jobs_single_new(job);
    struct sl_bus *bus = sl_bus_inproc_new(QUEUE_CAPACITY);
    struct sl_state *st = NULL;
    if (!jobs || !bus) {
        if (!jobs)
            sl_job_destroy(job);
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (!(st = sl_state_local_new(opts->state_dir, errbuf, errsz))) {
        rc = SL_ERR_IO;
        goto out;
    }
    const char *hash_key = getenv("SLUICE_HASH_KEY");
    struct sl_stage_env env = {
        .jobs = jobs,
        .st = st,
        .out_dir = opts->out_dir,
        .sink_path = opts->sink_path,
        .job_dir = job->dir,
        .hash_key = hash_key && hash_key[0] ? hash_key : NULL,
        .allow_hosts = getenv("SLUICE_ALLOW_HOSTS"),
        .destination_url = opts->destination_url,
        .smtp = opts->smtp,
        .open_sink = open_sink,
        .open_ledger = open_ledger,
        .embedded = true,
    };
    const char *topics[] = {SL_TOPIC_RUNS, SL_TOPIC_FILES};
    if (!(runs = bus->ops->subscribe(bus, "cli", topics, 2, errbuf, errsz))) {
        rc = SL_ERR_NOMEM;
        goto out;
    }
    for (int i = 0; i < NSTAGES; i++) {
        th[i].runner = sl_stage_runner_new(stages[i], bus, NULL, &env, errbuf, errsz);
        if (!th[i].runner) {
            rc = SL_ERR_FATAL;
            goto out;
        }
        th[i].stop = &stop;
        th[i].bus = bus;
        th[i].name = stages[i]->name;
    }
    for (int i = 0; i < NSTAGES; i++) {
        if (pthread_create(&th[i].tid, NULL, stage_main, &th[i])) {
            rc = sl_seterr(errbuf, errsz, SL_ERR_FATAL, "cannot start the %s thread",
                           stages[i]->name);
            goto out;
        }
        th[i].started = true;
    }

    sl_new_run_id(res->run_id);
    struct sl_msg *t = sl_msg_new(SL_MSG_TICKET, res->run_id, job->id, job->version);
    if (!t) {
        rc = sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        goto out;
    }
    t->u.ticket.trigger = "cli";
    t->u.ticket.force = opts->force;
    t->u.ticket.scheduled_at = sl_now_us();
    t->u.ticket.input = opts->input ? sl_arena_strdup(&t->arena, opts->input) : NULL;
    res->started_us = t->u.ticket.scheduled_at;
    if ((rc = sl_bus_send(bus, SL_TOPIC_TICKETS, t)) != 0) {
        sl_seterr(errbuf, errsz, rc, "cannot send the ticket: %s", sl_err_str(rc));
        goto out;
    }

    struct progress pg = {.on = opts->progress, .start = sl_now_us()};
    for (;;) {
        struct sl_msg *m = NULL;
        int prc = bus->ops->poll(runs, &m, NULL, 200);
        if (prc == SL_ERR_TIMEOUT)
            continue;
        if (prc) {
            progress_clear(&pg);
            rc = SL_ERR_FATAL;
            for (int i = 0; i < NSTAGES; i++)
                if (th[i].rc) {
                    sl_seterr(errbuf, errsz, th[i].rc, "%s", th[i].err);
                    break;
                }
            if (!errbuf[0])
                sl_seterr(errbuf, errsz, rc, "the pipeline stopped before the run finished");
            goto out;
        }
        bool final = false;
        if (m->kind == SL_MSG_FILE && m->run_id && !strcmp(m->run_id, res->run_id) &&
            m->u.file.blob)
            snprintf(res->blob, sizeof(res->blob), "%s", m->u.file.blob);
        if (m->kind == SL_MSG_RUN_EVENT && m->run_id && !strcmp(m->run_id, res->run_id)) {
            const struct sl_run_event *ev = &m->u.ev;
            if (ev->kind == SL_EV_PROGRESS && ev->stage && !strcmp(ev->stage, "parser"))
                progress_draw(&pg, ev);
            if (ev->kind == SL_EV_FINAL) {
                final = true;
                snprintf(res->status, sizeof(res->status), "%s", ev->status ? ev->status : "");
                snprintf(res->reason, sizeof(res->reason), "%s", ev->reason ? ev->reason : "");
                res->counts = ev->counts;
                res->finished_us = ev->at ? ev->at : sl_now_us();
            }
        }
        sl_msg_unref(m);
        if (final)
            break;
    }
    progress_clear(&pg);
out:
    if (bus)
        bus->ops->close(bus);
    for (int i = 0; i < NSTAGES; i++)
        if (th[i].started)
            pthread_join(th[i].tid, NULL);
    for (int i = 0; i < NSTAGES; i++)
        sl_stage_runner_destroy(th[i].runner);
    if (runs)
        bus->ops->unsubscribe(runs);
    sl_bus_destroy(bus);
    sl_state_destroy(st);
    sl_jobs_destroy(jobs);
    return rc;
}
