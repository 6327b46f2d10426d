/*
 * The stage test harness: one stage driven alone through the in-process bus.
 *
 * sh_start() loads a job from a JSON string into a one-job registry, makes a
 * temporary directory (local state in it, and for the publisher a file sink
 * and a local ledger writing there), subscribes a test consumer to the
 * topics the test wants to watch, builds the stage runner on the calling
 * thread (so that nothing sent afterwards is missed) and runs it in a
 * thread. The test then sends inputs with sl_bus_send(), takes outputs with
 * sh_next() (a timeout instead of a hang; the harness keeps what it hands
 * out, so a failed assertion leaks nothing), and sh_stop() closes the bus,
 * joins the thread and removes everything. Included by every tests/stage
 * test program; it is not a test itself.
 */
#ifndef SLUICE_STAGE_HARNESS_H
#define SLUICE_STAGE_HARNESS_H

#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sluice/bus.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/msg.h"
#include "sluice/sink.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/util.h"

#define SH_FN static __attribute__((unused))

/* How long an expected output may take, and how long to wait to be sure
 * that nothing more comes. */
#define SH_WAIT_MS    3000
#define SH_QUIET_MS   200
#define SH_RUN_ID     "run-1"
#define SH_MAX_TOPICS 8

/* When set before sh_start(), the stage sees the state store it returns for
 * the harness's local one (which it may wrap; the harness destroys only the
 * local one). */
static struct sl_state *(*sh_state_hook)(struct sl_state *local) __attribute__((unused));
/* When not 0 before sh_start(), the in-process bus holds this many messages
 * a topic (default 1024) */
static size_t sh_bus_capacity __attribute__((unused));

struct sh {
    char dir[64];        /* the test's temporary directory */
    char state_dir[96];  /* dir/state */
    char out_dir[96];    /* dir/out: the ledger's files */
    char sink_path[128]; /* dir/out/<object>.ndjson */
    struct sl_job *job;  /* owned by jobs */
    struct sl_jobs *jobs;
    struct sl_state *st;
    struct sl_stage_env env;
    struct sl_bus *bus;
    struct sl_consumer *watch;
    struct sl_stage_runner *runner;
    pthread_t tid;
    bool running;
    atomic_bool stop;
    int run_rc;
    char run_err[512];
    struct sl_msg **held; /* what sh_next*() returned: freed by sh_stop() */
    size_t nheld, cheld;
};

/* The run SH_RUN_ID writes into env->out_dir; any other run into
 * out_dir/<run id>, so that runs of one test never share files. */
static struct sl_sink *sh_open_sink(const struct sl_job *job, const char *run_id,
                                    const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    if (!strcmp(run_id, SH_RUN_ID)) {
        if (sl_mkdirs(env->out_dir)) {
            snprintf(errbuf, errsz, "cannot create %s", env->out_dir);
            return NULL;
        }
        return sl_sink_file_open(env->sink_path, job, errbuf, errsz);
    }
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/%s", env->out_dir, run_id);
    snprintf(path, sizeof(path), "%s/%s.ndjson", dir, job->object);
    if (sl_mkdirs(dir)) {
        snprintf(errbuf, errsz, "cannot create %s", dir);
        return NULL;
    }
    return sl_sink_file_open(path, job, errbuf, errsz);
}

static struct sl_ledger *sh_open_ledger(const struct sl_job *job, const char *run_id,
                                        const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    if (!strcmp(run_id, SH_RUN_ID))
        return sl_ledger_local_open(env->out_dir, job, errbuf, errsz);
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", env->out_dir, run_id);
    return sl_ledger_local_open(dir, job, errbuf, errsz);
}

static void *sh_thread(void *arg)
{
    struct sh *h = arg;
    h->run_rc = sl_stage_runner_run(h->runner, &h->stop, h->run_err, sizeof(h->run_err));
    return NULL;
}

static int sh_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Loads job_json, prepares the directory and the environment, watches
 * topics (NULL-terminated) and starts stage. Fails the test on any error. */
SH_FN void sh_start(struct sh *h, const struct sl_stage *stage, const char *job_json,
                    const char *const *topics)
{
    memset(h, 0, sizeof(*h));
    atomic_init(&h->stop, false);
    snprintf(h->dir, sizeof(h->dir), "/tmp/sluice-stage-XXXXXX");
    assert_non_null(mkdtemp(h->dir));
    snprintf(h->state_dir, sizeof(h->state_dir), "%s/state", h->dir);
    snprintf(h->out_dir, sizeof(h->out_dir), "%s/out", h->dir);

    char err[512] = "";
    h->job = sl_job_load_json(job_json, strlen(job_json), h->dir, err, sizeof(err));
    if (!h->job)
        fail_msg("job: %s", err);
    snprintf(h->sink_path, sizeof(h->sink_path), "%s/%s.ndjson", h->out_dir, h->job->object);
    h->jobs = sl_jobs_single_new(h->job);
    assert_non_null(h->jobs);
    h->st = sl_state_local_new(h->state_dir, err, sizeof(err));
    if (!h->st)
        fail_msg("state: %s", err);
    h->env = (struct sl_stage_env){
        .jobs = h->jobs,
        .st = h->st,
        .out_dir = h->out_dir,
        .sink_path = h->sink_path,
        .job_dir = h->dir,
        .open_sink = sh_open_sink,
        .open_ledger = sh_open_ledger,
        .embedded = true,
    };
    if (sh_state_hook)
        h->env.st = sh_state_hook(h->st);
    h->bus = sl_bus_inproc_new(sh_bus_capacity ? sh_bus_capacity : 1024);
    assert_non_null(h->bus);
    size_t n = 0;
    while (topics[n])
        n++;
    h->watch = h->bus->ops->subscribe(h->bus, "test", topics, n, err, sizeof(err));
    if (!h->watch)
        fail_msg("subscribe: %s", err);
    h->runner = sl_stage_runner_new(stage, h->bus, NULL, &h->env, err, sizeof(err));
    if (!h->runner)
        fail_msg("runner: %s", err);
    assert_int_equal(pthread_create(&h->tid, NULL, sh_thread, h), 0);
    h->running = true;
}

/* Closes the bus, joins the stage and frees everything (the directory too,
 * unless SLUICE_KEEP_TMP is set); h->run_rc says how the stage ended. Safe
 * to call twice and on a half-started harness. */
SH_FN void sh_stop(struct sh *h)
{
    if (h->bus)
        h->bus->ops->close(h->bus);
    if (h->running)
        pthread_join(h->tid, NULL);
    h->running = false;
    /* drain what the watcher still holds */
    struct sl_msg *m;
    while (h->watch && h->bus->ops->poll(h->watch, &m, NULL, 0) == 0)
        sl_msg_unref(m);
    sl_stage_runner_destroy(h->runner);
    if (h->watch)
        h->bus->ops->unsubscribe(h->watch);
    sl_bus_destroy(h->bus);
    sl_state_destroy(h->st);
    sl_jobs_destroy(h->jobs);
    for (size_t i = 0; i < h->nheld; i++)
        sl_msg_unref(h->held[i]);
    free(h->held);
    h->held = NULL;
    h->nheld = h->cheld = 0;
    h->runner = NULL;
    h->watch = NULL;
    h->bus = NULL;
    h->st = NULL;
    h->jobs = NULL;
    if (h->dir[0] && !getenv("SLUICE_KEEP_TMP"))
        nftw(h->dir, sh_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    h->dir[0] = '\0';
}

/* cmocka setup and teardown: every test gets a zeroed struct sh in *state,
 * and the teardown stops whatever sh_start() started, even after a failed
 * assertion. */
SH_FN int sh_setup(void **state)
{
    *state = calloc(1, sizeof(struct sh));
    return *state ? 0 : -1;
}

SH_FN int sh_teardown(void **state)
{
    struct sh *h = *state;
    int rc = h->run_rc;
    char err[512];
    snprintf(err, sizeof(err), "%s", h->run_err);
    h->run_rc = 0;
    sh_stop(h);
    rc = rc ? rc : h->run_rc;
    free(h);
    if (rc)
        print_error("the stage stopped with an error: %s\n", err);
    return rc ? -1 : 0;
}

#define SH_TEST(f) cmocka_unit_test_setup_teardown(f, sh_setup, sh_teardown)

/* The next message on a watched topic within timeout_ms, not held: the
 * caller unrefs it. NULL on timeout. */
static struct sl_msg *sh_poll(struct sh *h, const char **topic, int timeout_ms)
{
    struct sl_msg *m = NULL;
    const char *t = NULL;
    if (h->bus->ops->poll(h->watch, &m, &t, timeout_ms))
        return NULL;
    if (topic)
        *topic = t;
    return m;
}

/* Keeps m until sh_stop(), so that a test that fails half-way leaks
 * nothing; returns m. */
static struct sl_msg *sh_hold(struct sh *h, struct sl_msg *m)
{
    if (h->nheld == h->cheld) {
        size_t c = h->cheld ? 2 * h->cheld : 64;
        struct sl_msg **p = realloc(h->held, c * sizeof(*p));
        if (!p) {
            sl_msg_unref(m);
            fail_msg("out of memory");
        }
        h->held = p;
        h->cheld = c;
    }
    h->held[h->nheld++] = m;
    return m;
}

/* The next message on a watched topic within timeout_ms, or NULL. *topic,
 * when not NULL, gets the topic name. The message stays the harness's
 * (freed by sh_stop()): the test reads it and never unrefs it; so for every
 * sh_next*() below. */
SH_FN struct sl_msg *sh_next_within(struct sh *h, const char **topic, int timeout_ms)
{
    struct sl_msg *m = sh_poll(h, topic, timeout_ms);
    return m ? sh_hold(h, m) : NULL;
}

/* The next message, which must come within SH_WAIT_MS on topic (when not
 * NULL). */
SH_FN struct sl_msg *sh_next(struct sh *h, const char *topic)
{
    const char *t = NULL;
    struct sl_msg *m = sh_next_within(h, &t, SH_WAIT_MS);
    if (!m)
        fail_msg("no message came within %d ms (expected one on %s)", SH_WAIT_MS,
                 topic ? topic : "any topic");
    if (topic && strcmp(t, topic))
        fail_msg("expected a message on %s, got a %s on %s", topic, sl_msg_kind_str(m->kind), t);
    return m;
}

/* The next run event, skipping PROGRESS events and any message that is not
 * a run event. */
SH_FN struct sl_msg *sh_next_event(struct sh *h)
{
    for (;;) {
        struct sl_msg *m = sh_next(h, NULL);
        if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind != SL_EV_PROGRESS)
            return m;
    }
}

/* The next run event of kind, skipping every other message. */
SH_FN struct sl_msg *sh_next_event_of(struct sh *h, enum sl_run_event_kind kind)
{
    for (;;) {
        struct sl_msg *m = sh_next(h, NULL);
        if (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == kind)
            return m;
    }
}

/* Asserts that no message of kind (0: any) with the given event kind (0:
 * any) arrives within SH_QUIET_MS; other messages are dropped. */
SH_FN void sh_expect_none(struct sh *h, enum sl_msg_kind kind, enum sl_run_event_kind evk)
{
    int64_t end = sl_now_us() + SH_QUIET_MS * 1000;
    for (;;) {
        int64_t left = (end - sl_now_us()) / 1000;
        if (left <= 0)
            return;
        const char *t = NULL;
        struct sl_msg *m = sh_poll(h, &t, (int)left);
        if (!m)
            return;
        bool bad = (!kind || m->kind == kind) &&
                   (!evk || (m->kind == SL_MSG_RUN_EVENT && m->u.ev.kind == evk));
        enum sl_msg_kind k = m->kind;
        int e = m->kind == SL_MSG_RUN_EVENT ? (int)m->u.ev.kind : 0;
        sl_msg_unref(m);
        if (bad)
            fail_msg("unexpected %s (event %s) on %s", sl_msg_kind_str(k),
                     e ? sl_run_event_kind_str((enum sl_run_event_kind)e) : "-", t);
    }
}

/* A new message of the test's run and job. */
SH_FN struct sl_msg *sh_msg(struct sh *h, enum sl_msg_kind kind)
{
    struct sl_msg *m = sl_msg_new(kind, SH_RUN_ID, h->job->id, 0);
    assert_non_null(m);
    return m;
}

/* A source row: names[i] = values[i] for i < n (a value may be NULL). */
SH_FN struct sl_msg *sh_row(struct sh *h, uint64_t row, const char *const *names,
                            const char *const *values, size_t n)
{
    struct sl_msg *m = sh_msg(h, SL_MSG_RECORD);
    m->u.rec.row = row;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sl_msg_add_src(m, names[i], values[i], values[i] ? strlen(values[i]) : 0),
                         0);
    return m;
}

/* Sends m on topic (the bus takes it). */
SH_FN void sh_send(struct sh *h, const char *topic, struct sl_msg *m)
{
    assert_int_equal(sl_bus_send(h->bus, topic, m), 0);
}

/* The value of the mapped attribute name of rec; fails when it is absent.
 * NULL: a missing value. */
SH_FN const char *sh_attr(const struct sl_msg *m, const char *name)
{
    for (uint32_t i = 0; i < m->u.rec.nattr; i++)
        if (!strcmp(m->u.rec.attr[i].name, name))
            return m->u.rec.attr[i].value;
    fail_msg("the record has no attribute %s", name);
    return NULL;
}

/* The index of the problem of attribute with code in rec, or -1. */
SH_FN int sh_problem(const struct sl_msg *m, const char *attribute, const char *code)
{
    for (uint32_t i = 0; i < m->u.rec.nprob; i++)
        if (!strcmp(m->u.rec.prob[i].attribute, attribute) && !strcmp(m->u.rec.prob[i].code, code))
            return (int)i;
    return -1;
}

/* Writes len bytes of data to dir/name; returns the path (caller frees). */
SH_FN char *sh_write(const char *dir, const char *name, const char *data, size_t len)
{
    char *path = sl_path_join(dir, name);
    assert_non_null(path);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The whole content of path (caller frees), or NULL when it does not exist. */
SH_FN char *sh_read(const char *path)
{
    size_t len = 0;
    return sl_read_file(path, &len);
}

SH_FN bool sh_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

#endif
