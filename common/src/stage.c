/*
 * The stage runner (stage.h): poll, process, emit, commit.
 *
 * The runner owns the consumer and the stage's private state. It commits the
 * consumer position only after process() has returned, i.e. after every
 * output of the input was handed to the bus; with the Kafka bus that is what
 * makes a crash lose nothing. Errors are handled by class: a poison message
 * goes to the dead-letter topic and the stage goes on; a retriable error is
 * retried with backoff; a fatal one stops the runner.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/stage.h"
#include "sluice/state.h"

/* A commit waits until every output sent so far is acknowledged: doing it
 * every 1000 messages stalls a busy stage, so it is done at most every
 * COMMIT_MS (and always when idle, and after COMMIT_MAX messages). A crash
 * redelivers at most that much, which every effect downstream tolerates. */
#define COMMIT_EVERY 1000
#define COMMIT_MAX   50000
#define COMMIT_MS    1000
#define IDLE_POLL_MS 100
/* A commit the group refused for now (a rebalance in progress) is tried
 * again after COMMIT_MS; the last one, when stopping, for up to
 * STOP_COMMIT_MS (part of the grace period, docs/architecture.md). */
#define STOP_COMMIT_MS 5000

/* Messages out of a runner, by topic: a few topics a stage, looked up by
 * the topic's address first (the SL_TOPIC_* constants), then its text. */
#define EMIT_TOPICS 8
struct sl_emit_metrics {
    const char *stage;
    const char *topic[EMIT_TOPICS];
    struct sl_counter *out[EMIT_TOPICS];
    size_t n;
};

/* Live progress (state.h progress_add): the records of each run in and out
 * of this stage, added to the store at most every PROGRESS_MS, so that
 * GET /v1/runs/{id} shows a run moving through the stages. */
#define PROGRESS_RUNS 16
#define PROGRESS_MS   1000
enum { P_RECORDS_IN, P_REJECTED_IN, P_RECORDS_OUT, P_REJECTED_OUT, P_N };
static const char *const PROGRESS_NAMES[P_N] = {"records_in", "rejected_in", "records_out",
                                                "rejected_out"};

struct sl_progress {
    struct sl_state *st;
    const char *stage;
    struct {
        char run_id[128];
        uint64_t n[P_N];
    } runs[PROGRESS_RUNS];
    size_t nruns, last;
    int64_t flushed_ms;
};

struct sl_stage_runner {
    const struct sl_stage *stage;
    struct sl_bus *bus;
    struct sl_consumer *c;
    const struct sl_stage_env *env;
    void *state;
    struct sl_emitter em;
    atomic_ullong count;
    /* metrics: messages in by input topic, the time of process(), dead
     * letters, messages out (the emitter's) */
    struct sl_counter *in[EMIT_TOPICS];
    struct sl_histogram *seconds;
    struct sl_counter *dead;
    struct sl_emit_metrics out;
    struct sl_progress *progress;
    bool unflushed; /* processed messages whose outputs a failed flush holds */
    bool gone;      /* the stage state is destroyed */
};

static struct sl_counter *out_counter(struct sl_emit_metrics *mx, const char *topic)
{
    for (size_t i = 0; i < mx->n; i++)
        if (mx->topic[i] == topic || !strcmp(mx->topic[i], topic))
            return mx->out[i];
    if (mx->n == EMIT_TOPICS)
        return NULL;
    char labels[160];
    snprintf(labels, sizeof(labels), "stage=\"%s\",topic=\"%s\"", mx->stage, topic);
    mx->topic[mx->n] = topic;
    mx->out[mx->n] = sl_metrics_counter("sluice_messages_out_total",
                                        "messages a stage handed to the bus, by topic", labels);
    return mx->out[mx->n++];
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Adds what was counted to the store and starts counting afresh. */
static void progress_flush(struct sl_progress *p)
{
    p->flushed_ms = mono_ms();
    for (size_t i = 0; i < p->nruns; i++) {
        char names[P_N][96];
        const char *fields[P_N];
        uint64_t deltas[P_N];
        size_t n = 0;
        for (int k = 0; k < P_N; k++)
            if (p->runs[i].n[k]) {
                snprintf(names[n], sizeof(names[n]), "%s.%s", p->stage, PROGRESS_NAMES[k]);
                fields[n] = names[n];
                deltas[n++] = p->runs[i].n[k];
            }
        if (n)
            p->st->ops->progress_add(p->st, p->runs[i].run_id, fields, deltas, n);
    }
    p->nruns = 0;
    p->last = 0;
}

/* Counts one record (or rejection) of msg's run as what (P_*). */
static void progress_count(struct sl_progress *p, const struct sl_msg *msg, int what)
{
    if (!p || !msg->run_id || (msg->kind != SL_MSG_RECORD && msg->kind != SL_MSG_REJECTION))
        return;
    if (msg->kind == SL_MSG_REJECTION)
        what++; /* P_REJECTED_IN, P_REJECTED_OUT */
    size_t i = p->last;
    if (i >= p->nruns || strcmp(p->runs[i].run_id, msg->run_id)) {
        for (i = 0; i < p->nruns && strcmp(p->runs[i].run_id, msg->run_id); i++)
            ;
        if (i == p->nruns) {
            if (strlen(msg->run_id) >= sizeof(p->runs[0].run_id))
                return;
            if (p->nruns == PROGRESS_RUNS)
                progress_flush(p);
            i = p->nruns++;
            snprintf(p->runs[i].run_id, sizeof(p->runs[i].run_id), "%s", msg->run_id);
            memset(p->runs[i].n, 0, sizeof(p->runs[i].n));
        }
        p->last = i;
    }
    p->runs[i].n[what]++;
}

int sl_emit(struct sl_emitter *em, const char *topic, struct sl_msg *msg)
{
    if (em->progress) /* before the bus takes msg */
        progress_count(em->progress, msg, P_RECORDS_OUT);
    int rc = sl_bus_send(em->bus, topic, msg);
    if (rc == 0 && em->metrics)
        sl_counter_add(out_counter(em->metrics, topic), 1);
    return rc;
}

/* Before the bus commits on its own (rebalance, close): the stage sends
 * what it holds back, or the offsets stay uncommitted. */
static int revoke_hook(void *arg)
{
    struct sl_stage_runner *r = arg;
    if (r->gone)
        return r->unflushed ? SL_ERR_RETRY : 0;
    int rc = r->stage->flush(r->state, &r->em);
    r->unflushed = rc != 0;
    return rc;
}

struct sl_stage_runner *sl_stage_runner_new(const struct sl_stage *stage, struct sl_bus *bus,
                                            const char *group, const struct sl_stage_env *env,
                                            char *errbuf, size_t errsz)
{
    struct sl_stage_runner *r = calloc(1, sizeof(*r));
    if (!r) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->stage = stage;
    r->bus = bus;
    r->env = env;
    r->em.bus = bus;
    r->em.stage = stage->name;
    r->em.metrics = &r->out;
    r->out.stage = stage->name;
    size_t n = 0;
    while (stage->inputs[n])
        n++;
    char labels[160];
    for (size_t i = 0; i < n && i < EMIT_TOPICS; i++) {
        snprintf(labels, sizeof(labels), "stage=\"%s\",topic=\"%s\"", stage->name,
                 stage->inputs[i]);
        r->in[i] = sl_metrics_counter("sluice_messages_in_total",
                                      "messages a stage processed, by topic", labels);
    }
    snprintf(labels, sizeof(labels), "stage=\"%s\"", stage->name);
    r->seconds = sl_metrics_histogram("sluice_stage_seconds",
                                      "time a stage took to process one message", labels);
    r->dead = sl_metrics_counter("sluice_dead_letters_total",
                                 "messages a stage could not process, sent to the dead-letter "
                                 "topic",
                                 labels);
    if (env && env->st && env->st->ops->progress_add) {
        if (!(r->progress = calloc(1, sizeof(*r->progress)))) {
            sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
            goto fail;
        }
        r->progress->st = env->st;
        r->progress->stage = stage->name;
        r->em.progress = r->progress;
    }
    r->c = bus->ops->subscribe(bus, group ? group : stage->name, stage->inputs, n, errbuf, errsz);
    if (!r->c)
        goto fail;
    if (stage->init && stage->init(&r->state, env, errbuf, errsz))
        goto fail;
    if (stage->flush && bus->ops->set_revoke_hook)
        bus->ops->set_revoke_hook(r->c, revoke_hook, r);
    return r;
fail:
    sl_stage_runner_destroy(r);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sends a message that the stage could not process to the dead-letter
 * topic, with the reason: the last warning or error the stage logged while
 * processing it, else the error's name. */
static void dead_letter(struct sl_stage_runner *r, const char *topic, struct sl_msg *msg, int rc)
{
    const char *why = sl_log_last()[0] ? sl_log_last() : sl_err_str(rc);
    char reason[600];
    snprintf(reason, sizeof(reason), "%s", why);
    sl_warn(r->stage->name, "%s message from %s of run %s is poison (%s): sent to %s",
            sl_msg_kind_str(msg->kind), topic, msg->run_id ? msg->run_id : "-", reason,
            SL_TOPIC_DEAD);
    if (r->bus->ops->send_dead)
        r->bus->ops->send_dead(r->bus, topic, sl_msg_ref(msg), reason);
    else
        sl_bus_send(r->bus, SL_TOPIC_DEAD, sl_msg_ref(msg));
}

static bool stopping(atomic_bool *stop)
{
    return stop && atomic_load(stop);
}

/* The last commit of a stopping runner: tried again while the group
 * refuses it for now (a rebalance in progress), for up to STOP_COMMIT_MS. */
static int stop_commit(struct sl_stage_runner *r)
{
    int64_t until = mono_ms() + STOP_COMMIT_MS;
    for (;;) {
        int rc = r->bus->ops->commit(r->c);
        if (rc == 0 || sl_err_class(rc) != SL_ERRCLASS_RETRIABLE || mono_ms() >= until)
            return rc;
        sleep_ms(200);
    }
}

int sl_stage_runner_run(struct sl_stage_runner *r, atomic_bool *stop, char *errbuf, size_t errsz)
{
    const struct sl_stage *st = r->stage;
    unsigned uncommitted = 0;
    bool idle_flushed = true;
    bool abandoned = false; /* stopped with a message in hand not processed */
    long flush_backoff = 100;
    int64_t last_commit = mono_ms();
    int64_t commit_after = 0; /* a refused commit: not again before */
    int rc = 0;
    /* stopping (SIGTERM), the rest of the message in hand (the records of
     * a batch) is still processed: its offset is stored once all are */
    while (!stopping(stop) || (r->bus->ops->in_hand && r->bus->ops->in_hand(r->c))) {
        struct sl_msg *msg = NULL;
        const char *topic = NULL;
        rc = r->bus->ops->poll(r->c, &msg, &topic, idle_flushed ? IDLE_POLL_MS : 0);
        if (rc == SL_ERR_TIMEOUT || rc == SL_ERR_CLOSED) {
            bool closed = rc == SL_ERR_CLOSED;
            rc = 0;
            if (!idle_flushed && st->flush)
                r->unflushed = (rc = st->flush(r->state, &r->em)) != 0;
            if (rc == SL_ERR_CLOSED)
                return 0; /* as when process() meets a closed bus */
            if (rc && sl_err_class(rc) == SL_ERRCLASS_RETRIABLE && !closed) {
                /* nothing is committed until the flush went through */
                sl_warn(st->name, "flush failed (%s): retrying", sl_err_str(rc));
                sleep_ms(flush_backoff);
                if (flush_backoff < 5000)
                    flush_backoff *= 2;
                continue;
            }
            flush_backoff = 100;
            idle_flushed = true;
            if (r->progress && r->progress->nruns)
                progress_flush(r->progress);
            if (rc == 0 && uncommitted && mono_ms() >= commit_after) {
                if ((rc = r->bus->ops->commit(r->c)) == 0)
                    uncommitted = 0;
                else if (sl_err_class(rc) == SL_ERRCLASS_RETRIABLE)
                    commit_after = mono_ms() + COMMIT_MS; /* stored: tried again */
            }
            if (rc && sl_err_class(rc) == SL_ERRCLASS_FATAL)
                return sl_seterr(errbuf, errsz, rc, "%s: flush failed: %s", st->name,
                                 sl_err_str(rc));
            if (closed)
                return 0;
            continue;
        }
        if (rc) {
            if (sl_err_class(rc) == SL_ERRCLASS_RETRIABLE) {
                sleep_ms(100);
                continue;
            }
            return sl_seterr(errbuf, errsz, rc, "%s: cannot poll: %s", st->name, sl_err_str(rc));
        }
        idle_flushed = false;
        long backoff = 50;
        sl_log_last_clear();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < EMIT_TOPICS && st->inputs[i]; i++)
            if (topic && (st->inputs[i] == topic || !strcmp(st->inputs[i], topic))) {
                sl_counter_add(r->in[i], 1);
                break;
            }
        for (;;) {
            rc = st->process(r->state, topic, msg, &r->em);
            if (rc == 0 || sl_err_class(rc) != SL_ERRCLASS_RETRIABLE || stopping(stop))
                break;
            sl_warn(st->name, "retrying a %s message: %s", sl_msg_kind_str(msg->kind),
                    sl_err_str(rc));
            sleep_ms(backoff);
            if (backoff < 5000)
                backoff *= 2;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        sl_histogram_observe(r->seconds, (double)(t1.tv_sec - t0.tv_sec) +
                                             (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        if (rc && sl_err_class(rc) == SL_ERRCLASS_POISON) {
            dead_letter(r, topic, msg, rc);
            sl_counter_add(r->dead, 1);
            rc = 0;
        }
        if (rc && sl_err_class(rc) == SL_ERRCLASS_RETRIABLE && stopping(stop)) {
            /* stopping while it failed: not processed, so its offset is
             * not committed (the next owner gets it again); what came
             * before is */
            sl_warn(st->name,
                    "stopping with a %s message of run %s not processed (%s): it comes "
                    "again to the next consumer",
                    sl_msg_kind_str(msg->kind), msg->run_id ? msg->run_id : "-", sl_err_str(rc));
            sl_msg_unref(msg);
            abandoned = true;
            rc = 0;
            break;
        }
        if (r->progress && rc == 0) {
            progress_count(r->progress, msg, P_RECORDS_IN);
            if (mono_ms() - r->progress->flushed_ms >= PROGRESS_MS)
                progress_flush(r->progress);
        }
        sl_msg_unref(msg);
        if (rc == SL_ERR_CLOSED)
            return 0;
        if (rc)
            return sl_seterr(errbuf, errsz, rc, "%s: %s", st->name, sl_err_str(rc));
        atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
        r->unflushed = st->flush != NULL;
        if (++uncommitted >= COMMIT_EVERY &&
            (uncommitted >= COMMIT_MAX || mono_ms() - last_commit >= COMMIT_MS) &&
            mono_ms() >= commit_after) {
            last_commit = mono_ms();
            if (st->flush && (r->unflushed = (rc = st->flush(r->state, &r->em)) != 0)) {
                if (rc == SL_ERR_CLOSED)
                    return 0;
                if (sl_err_class(rc) == SL_ERRCLASS_FATAL)
                    return sl_seterr(errbuf, errsz, rc, "%s: flush failed", st->name);
                rc = 0; /* not committed: the idle path retries the flush */
                continue;
            }
            if ((rc = r->bus->ops->commit(r->c)) != 0 && sl_err_class(rc) == SL_ERRCLASS_FATAL)
                return sl_seterr(errbuf, errsz, rc, "%s: cannot commit: %s", st->name,
                                 sl_err_str(rc));
            if (rc == 0)
                uncommitted = 0;
            else /* refused for now (a rebalance): stored, tried again */
                commit_after = mono_ms() + COMMIT_MS;
            rc = 0;
        }
    }
    /* stopped (SIGTERM): what was processed is sent and committed before we
     * leave, unless its outputs could not be flushed (they come again) */
    if ((uncommitted || abandoned) && st->flush)
        r->unflushed = st->flush(r->state, &r->em) != 0;
    if (uncommitted && !abandoned && !r->unflushed && (rc = stop_commit(r)) != 0)
        sl_warn(st->name,
                "stopping: could not commit (%s): the next consumer gets the messages "
                "since the last commit again",
                sl_err_str(rc));
    if (r->progress && r->progress->nruns)
        progress_flush(r->progress);
    return 0;
}

unsigned long long sl_stage_runner_count(const struct sl_stage_runner *r)
{
    return atomic_load_explicit(&r->count, memory_order_relaxed);
}

void sl_stage_runner_destroy(struct sl_stage_runner *r)
{
    if (!r)
        return;
    if (r->state && r->stage->destroy)
        r->stage->destroy(r->state);
    r->gone = true; /* unsubscribing may revoke: the state is no more */
    if (r->c)
        r->bus->ops->unsubscribe(r->c);
    free(r->progress);
    free(r);
}
