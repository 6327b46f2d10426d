/*
 * The validator stage: a mapped row in; a valid Record (attributes
 * normalized, key set) or a Rejection with every problem of the row out.
 *
 * Missing values take the attribute's default, then face `required`; present
 * values are checked and normalized by their type (types.h). The key of a row
 * without problems is remembered for the run in the state store, with the
 * row's number; a key that another row had before is a duplicate: rejected,
 * or with `duplicates: last_wins` passed on marked as replacing the earlier
 * row. The same row coming again (a redelivery) is no duplicate of itself.
 *
 * Rows are not asked about one by one: a validated row is held, and the held
 * rows' keys are resolved with one seen_keys() call (one round trip to Redis)
 * when BATCH_MAX rows are held or the runner calls flush(), which it does
 * before every commit and whenever the input runs dry, so holding loses
 * nothing. Then every held row goes out in the order it came, valid ones to
 * records.valid and rejections to records.rejected, whether it had a key to
 * ask about or not. A row with no key goes out at once when nothing is held.
 *
 * A store that can answer later (seen_keys_ask, Redis) works beside the
 * validator: once BATCH_MAX rows are held and not yet asked about, the
 * answer to the previous batch is taken and its rows go out, then this
 * batch's keys are asked, and the validator checks the next rows while Redis
 * looks them up. One call is outstanding at most, so batches are answered in
 * the order they came, as seen_keys() would answer them one after another.
 *
 * References (`references: "object.attribute"`, refcheck.h) are looked up
 * for the same batches, just before their keys are asked about (a row that
 * names an unknown record must not claim its key): one lookup a batch,
 * answers cached. A reference that cannot be checked at all (no such table
 * in the destination) fails the run with the reason.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/refcheck.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/types.h"

#define BATCH_MAX 1024            /* rows held before their keys are resolved */
#define HELD_MAX  (2 * BATCH_MAX) /* a batch asked about, and the next one */

/* A validated row waiting for its key's answer and its turn to go out. */
struct held {
    struct sl_msg *out;       /* owned; NULL once it went out */
    const struct sl_job *job; /* borrowed: the registry outlives the stage */
    bool ask;                 /* its key (rec.key) must be looked up */
    bool add;                 /* ... and claimed: the row has no problem */
    bool answered;            /* seen holds the answer */
    bool finished;            /* duplicate handled, kind set: ready to go */
    bool dead;                /* the store refused its question: dead letter */
    bool refs_done;           /* its references were looked up */
    int seen;
};

#define FAILED_RUNS 8 /* runs this validator failed lately (said once each) */

struct validator {
    const struct sl_stage_env *env;
    struct sl_buf key;
    struct held *held; /* HELD_MAX of them */
    size_t nheld;
    size_t nsent;            /* held[0..nsent) went out already */
    size_t nasked;           /* held[nsent..nasked) answered or in call */
    struct sl_seen_query *q; /* HELD_MAX each: one seen_keys() call */
    size_t *qi;              /* the held row of each question */
    int *ans;
    struct sl_seen_call *call; /* asked, not answered yet (seen_keys_ask) */
    size_t *cqi;               /* HELD_MAX each: call's questions' held rows */
    int *cans;
    size_t ncall;
    /* the names of a decoded batch's attributes (a reference) that are the
     * attributes of job names_job in its order: its records need no name
     * compared (jobs live as long as the process) */
    struct sl_names *names;
    const struct sl_job *names_job;
    bool in_order; /* the current record's attributes are its job's, in order */
    /* references */
    struct sl_refcheck *refs; /* made on first use */
    struct sl_ref_query *rq;  /* a batch's questions */
    size_t *rq_row;           /* the held row of each */
    size_t rq_cap;
    char failed[FAILED_RUNS][64];
    unsigned nfailed;
    /* metrics: rows rejected, problems by code (a code's counter cached) */
    struct sl_counter *rejected_rows;
    const char *code[24];
    struct sl_counter *by_code[24];
    size_t ncodes;
};

/* Counts a rejection's problems by code (sluice_rejections_total). */
static void count_rejection(struct validator *v, const struct sl_record *r)
{
    if (!v->rejected_rows)
        v->rejected_rows =
            sl_metrics_counter("sluice_rejected_rows_total", "rows the validator rejected", "");
    sl_counter_add(v->rejected_rows, 1);
    for (uint32_t i = 0; i < r->nprob; i++) {
        const char *code = r->prob[i].code;
        size_t k = 0;
        while (k < v->ncodes && strcmp(v->code[k], code))
            k++;
        if (k == v->ncodes) {
            if (k == sizeof(v->code) / sizeof(v->code[0]))
                continue;
            char value[64], labels[96];
            sl_metrics_label_value(code, value, sizeof(value));
            snprintf(labels, sizeof(labels), "code=\"%s\"", value);
            struct sl_counter *c = sl_metrics_counter("sluice_rejections_total",
                                                      "problems of rejected rows, by code", labels);
            char *copy = strdup(code);
            if (!c || !copy) {
                free(copy);
                continue;
            }
            v->code[k] = copy;
            v->by_code[k] = c;
            v->ncodes++;
        }
        sl_counter_add(v->by_code[k], 1);
    }
}

static void validator_destroy(void *state)
{
    struct validator *v = state;
    if (!v)
        return;
    if (v->call) /* the call's memory is freed with its answer */
        v->env->st->ops->seen_keys_answer(v->env->st, v->call, v->cans);
    /* rows still held never went out: their inputs are not committed either */
    for (size_t i = 0; i < v->nheld; i++)
        sl_msg_unref(v->held[i].out);
    free(v->held);
    free(v->q);
    free(v->qi);
    free(v->ans);
    free(v->cqi);
    free(v->cans);
    sl_buf_cleanup(&v->key);
    sl_names_unref(v->names);
    sl_refcheck_destroy(v->refs);
    for (size_t i = 0; i < v->ncodes; i++)
        free((char *)v->code[i]);
    free(v->rq);
    free(v->rq_row);
    free(v);
}

static int validator_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct validator *v = calloc(1, sizeof(*v));
    if (!v || !(v->held = calloc(HELD_MAX, sizeof(*v->held))) ||
        !(v->q = calloc(HELD_MAX, sizeof(*v->q))) || !(v->qi = calloc(HELD_MAX, sizeof(*v->qi))) ||
        !(v->ans = calloc(HELD_MAX, sizeof(*v->ans))) ||
        !(v->cqi = calloc(HELD_MAX, sizeof(*v->cqi))) ||
        !(v->cans = calloc(HELD_MAX, sizeof(*v->cans)))) {
        validator_destroy(v);
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    }
    v->env = env;
    *state = v;
    return 0;
}

static bool has_problem(const struct sl_record *r, const char *attr)
{
    for (uint32_t i = 0; i < r->nprob; i++)
        if (r->prob[i].attribute == attr || !strcmp(r->prob[i].attribute, attr))
            return true;
    return false;
}

/* The attribute values of the record in job order (mapped records carry
 * them in that order; a record from elsewhere is matched by name). */
static struct sl_field *attr_of(struct sl_record *r, const struct sl_job *job, size_t i)
{
    if (i < r->nattr &&
        (r->attr[i].name == job->attrs[i].name || !strcmp(r->attr[i].name, job->attrs[i].name)))
        return &r->attr[i];
    for (uint32_t k = 0; k < r->nattr; k++)
        if (!strcmp(r->attr[k].name, job->attrs[i].name))
            return &r->attr[k];
    return NULL;
}

/* Whether the attributes of m are those of job, in its order (as the mapper
 * sends them): compared by name once per batch of records that share their
 * names (codec.h), else for each record. */
static bool attrs_in_order(struct validator *v, const struct sl_msg *m, const struct sl_job *job)
{
    const struct sl_record *r = &m->u.rec;
    if (r->nattr != job->nattrs)
        return false;
    if (m->wire_names && m->wire_names == v->names && job == v->names_job)
        return true;
    for (size_t i = 0; i < job->nattrs; i++)
        if (r->attr[i].name != job->attrs[i].name && strcmp(r->attr[i].name, job->attrs[i].name))
            return false;
    if (m->wire_names) {
        sl_names_unref(v->names);
        v->names = sl_names_ref(m->wire_names);
        v->names_job = job;
    }
    return true;
}

/* The field of attribute i of job in r (see attr_of). */
static struct sl_field *field_of(const struct validator *v, struct sl_record *r,
                                 const struct sl_job *job, size_t i)
{
    return v->in_order ? &r->attr[i] : attr_of(r, job, i);
}

/* Builds the key text into v->key; false when a key attribute is missing or
 * has a problem. */
static bool build_key(struct validator *v, const struct sl_job *job, struct sl_record *r)
{
    sl_buf_reset(&v->key);
    if (job->nkey == 0)
        return false;
    for (size_t k = 0; k < job->nkey; k++) {
        const struct sl_attr *a = &job->attrs[job->key_idx[k]];
        struct sl_field *f = field_of(v, r, job, job->key_idx[k]);
        if (!f || !f->value || has_problem(r, a->name))
            return false;
        if ((k && sl_buf_putc(&v->key, SL_KEY_SEP)) || sl_buf_puts(&v->key, f->value))
            return false;
    }
    return true;
}

static bool has_references(const struct sl_job *job)
{
    for (size_t i = 0; i < job->nattrs; i++)
        if (job->attrs[i].references)
            return true;
    return false;
}

/* Fails run with reason on the runs topic, once per run. */
static int fail_run(struct validator *v, struct sl_emitter *em, const struct sl_msg *m,
                    const char *reason)
{
    for (unsigned i = 0; i < FAILED_RUNS; i++)
        if (m->run_id && !strncmp(v->failed[i], m->run_id, sizeof(v->failed[i]) - 1))
            return 0;
    struct sl_msg *ev = sl_msg_new(SL_MSG_RUN_EVENT, m->run_id, m->job_id, m->job_version);
    if (!ev || !(ev->u.ev.reason = sl_arena_strdup(&ev->arena, reason))) {
        sl_msg_unref(ev);
        return SL_ERR_NOMEM;
    }
    ev->u.ev.kind = SL_EV_FAILED;
    ev->u.ev.stage = "validator";
    ev->u.ev.at = sl_now_us();
    sl_info("validator", "run %s failed: %s", m->run_id ? m->run_id : "-", reason);
    int rc = sl_emit(em, SL_TOPIC_RUNS, ev);
    if (rc == 0 && m->run_id)
        snprintf(v->failed[v->nfailed++ % FAILED_RUNS], sizeof(v->failed[0]), "%s", m->run_id);
    return rc;
}

/* Looks up the references of the held rows [from, to) that were not looked
 * up yet, in one batch: a value with no record is an unknown_reference
 * problem of its row (which then claims no key). 0, or the error (the
 * destination is away) with the rows still to be looked up. */
static int check_refs(struct validator *v, struct sl_emitter *em, size_t from, size_t to)
{
    size_t nq = 0;
    for (size_t i = from; i < to; i++) {
        struct held *h = &v->held[i];
        if (h->refs_done || h->dead || !h->out)
            continue;
        if (!has_references(h->job)) {
            h->refs_done = true;
            continue;
        }
        struct sl_record *r = &h->out->u.rec;
        for (size_t k = 0; k < h->job->nattrs; k++) {
            const struct sl_attr *a = &h->job->attrs[k];
            if (!a->references)
                continue;
            struct sl_field *f = attr_of(r, h->job, k);
            if (!f || !f->value || has_problem(r, a->name))
                continue;
            if (nq == v->rq_cap) {
                size_t cap = v->rq_cap ? 2 * v->rq_cap : 256;
                struct sl_ref_query *q = realloc(v->rq, cap * sizeof(*q));
                if (q)
                    v->rq = q;
                size_t *qr = realloc(v->rq_row, cap * sizeof(*qr));
                if (qr)
                    v->rq_row = qr;
                if (!q || !qr)
                    return SL_ERR_NOMEM;
                v->rq_cap = cap;
            }
            v->rq[nq] = (struct sl_ref_query){.job = h->job, .attr = k, .value = f->value};
            v->rq_row[nq++] = i;
        }
    }
    if (nq) {
        char err[512] = "";
        if (!v->refs && !(v->refs = sl_refcheck_new(v->env)))
            return SL_ERR_NOMEM;
        int rc = sl_refcheck_lookup(v->refs, v->rq, nq, err, sizeof(err));
        if (rc) {
            sl_warn("validator", "cannot look up references: %s", err);
            return rc;
        }
        for (size_t j = 0; j < nq; j++) {
            const struct sl_ref_query *q = &v->rq[j];
            struct held *h = &v->held[v->rq_row[j]];
            const struct sl_attr *a = &q->job->attrs[q->attr];
            if (q->error) {
                if ((rc = fail_run(v, em, h->out, q->error)))
                    return rc;
                continue;
            }
            if (q->found)
                continue;
            const char *dot = strchr(a->references, '.');
            char *msg =
                sl_arena_printf(&h->out->arena, "no %.*s record has %s '%s'",
                                (int)(dot - a->references), a->references, dot + 1, q->value);
            if (!msg || sl_msg_add_problem(h->out, a->name, "unknown_reference", msg, q->value))
                return SL_ERR_NOMEM;
        }
    }
    for (size_t i = from; i < to; i++) {
        struct held *h = &v->held[i];
        if (!h->refs_done && h->out) {
            h->refs_done = true;
            h->add = h->ask && !h->out->u.rec.nprob;
        }
    }
    return 0;
}

/* Orders the row's problems as the job lists its attributes (row-level
 * problems first), keeping the order of problems of the same attribute. */
static void sort_problems(const struct sl_job *job, struct sl_record *r)
{
    for (uint32_t i = 1; i < r->nprob; i++) {
        struct sl_problem p = r->prob[i];
        int pi = sl_job_attr_index(job, p.attribute);
        uint32_t k = i;
        while (k > 0 && sl_job_attr_index(job, r->prob[k - 1].attribute) > pi) {
            r->prob[k] = r->prob[k - 1];
            k--;
        }
        r->prob[k] = p;
    }
}

static bool same_run(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

/* Whether h waits for the answer about its key. */
static bool unanswered(const struct held *h)
{
    return h->ask && !h->answered && !h->dead;
}

/* The questions of the unanswered rows of held[from..nheld) that are of the
 * run of held[from] (one of them) into v->q, their rows into qi: how many.
 * *others: unanswered rows of another run are there too. */
static size_t gather(struct validator *v, size_t from, size_t *qi, bool *others)
{
    const char *run = v->held[from].out->run_id;
    size_t n = 0;
    *others = false;
    for (size_t k = from; k < v->nheld; k++) {
        const struct held *o = &v->held[k];
        if (!unanswered(o))
            continue;
        if (k != from && !same_run(o->out->run_id, run)) {
            *others = true;
            continue;
        }
        const struct sl_record *r = &o->out->u.rec;
        v->q[n] = (struct sl_seen_query){
            .key = r->key, .keylen = strlen(r->key), .row = r->row, .add = o->add};
        qi[n++] = k;
    }
    return n;
}

/* The answers ans[0..n) to the rows held[qi[j]]. */
static void set_answers(struct validator *v, const size_t *qi, const int *ans, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        v->held[qi[j]].seen = ans[j];
        v->held[qi[j]].answered = true;
    }
}

/* The store refused the questions of n held rows (held[qi[j]]) for run:
 * as bad input (poison), the rows are marked for the dead-letter topic and
 * 0 returned; any other error is returned as it is. */
static int poison_rows(struct validator *v, const size_t *qi, size_t n, const char *run, int rc)
{
    if (sl_err_class(rc) != SL_ERRCLASS_POISON)
        return rc;
    sl_warn("validator", "cannot look up the keys of %zu records of run %s: %s", n, run ? run : "-",
            sl_err_str(rc));
    for (size_t j = 0; j < n; j++)
        v->held[qi[j]].dead = true;
    return 0;
}

/* Takes the answer of the call asked (if any) into its rows. On an error
 * the rows stay unanswered and count as not asked: they are asked again. */
static int take_answer(struct validator *v)
{
    if (!v->call)
        return 0;
    struct sl_state *st = v->env->st;
    int rc = st->ops->seen_keys_answer(st, v->call, v->cans);
    v->call = NULL;
    size_t n = v->ncall;
    v->ncall = 0;
    if (rc) {
        if (sl_err_class(rc) != SL_ERRCLASS_POISON)
            v->nasked = v->nsent; /* unanswered: to be asked again */
        return poison_rows(v, v->cqi, n, v->held[v->cqi[0]].out->run_id, rc);
    }
    set_answers(v, v->cqi, v->cans, n);
    return 0;
}

/* Answers every held row's question, one seen_keys() call per run among
 * them (a batch is almost always of one run). A run the store refuses as bad
 * input (poison) marks its rows for the dead-letter topic. 0, or the store's
 * error; what was answered stays answered for the retry. */
static int resolve(struct validator *v)
{
    struct sl_state *st = v->env->st;
    for (size_t i = v->nsent; i < v->nheld; i++) {
        if (!unanswered(&v->held[i]))
            continue;
        const char *run = v->held[i].out->run_id;
        bool others;
        size_t n = gather(v, i, v->qi, &others);
        int rc = st->ops->seen_keys(st, run, v->q, n, v->ans);
        if (rc) {
            if ((rc = poison_rows(v, v->qi, n, run, rc)) != 0)
                return rc;
            continue;
        }
        set_answers(v, v->qi, v->ans, n);
    }
    return 0;
}

/* Applies the answer to a held row: a duplicate_key problem (duplicates:
 * reject) or the duplicate flag (last_wins, a row without problems), then
 * makes a row with problems a rejection. Once per row. */
static int finish(struct held *h)
{
    struct sl_msg *out = h->out;
    struct sl_record *r = &out->u.rec;
    const struct sl_job *job = h->job;
    if (h->ask && h->seen && job->options.duplicates == SL_DUPS_REJECT) {
        const char *attr = job->nkey == 1 ? job->key[0] : "_key";
        char *shown = sl_arena_strdup(&out->arena, r->key);
        for (char *p = shown; p && *p; p++)
            if (*p == SL_KEY_SEP)
                *p = ',';
        char *msg = shown
                        ? sl_arena_printf(&out->arena,
                                          "duplicate key: '%s' was already seen in this run", shown)
                        : NULL;
        if (!msg || sl_msg_add_problem(out, attr, "duplicate_key", msg, shown))
            return SL_ERR_NOMEM;
    } else if (h->ask && h->seen && r->nprob == 0) {
        r->duplicate = true;
    }
    if (r->nprob) {
        sort_problems(job, r);
        out->kind = SL_MSG_REJECTION;
    }
    h->finished = true;
    return 0;
}

/* Sends one held row to its topic; a row that cannot be sent (poison) or
 * whose question the store refused goes to the dead-letter topic instead,
 * as the runner does with a poison input. 0 once it is out of our hands,
 * else the error with the row still held. */
static int send_held(struct validator *v, struct held *h, struct sl_emitter *em)
{
    int rc = 0;
    if (!h->dead) {
        if (!h->finished && (rc = finish(h)) != 0)
            return rc;
        const char *topic = h->out->kind == SL_MSG_REJECTION ? SL_TOPIC_REJECTED : SL_TOPIC_VALID;
        if (h->out->kind == SL_MSG_RECORD)
            h->out->u.rec.nsrc = 0; /* the publisher writes attributes: half the bytes */
        rc = sl_emit(em, topic, sl_msg_ref(h->out));
        if (rc == 0 && h->out->kind == SL_MSG_REJECTION)
            count_rejection(v, &h->out->u.rec);
        if (rc == 0) {
            sl_msg_unref(h->out);
            h->out = NULL;
            return 0;
        }
        if (sl_err_class(rc) != SL_ERRCLASS_POISON)
            return rc;
    }
    sl_warn("validator", "record of run %s, row %llu is poison (%s): sent to %s",
            h->out->run_id ? h->out->run_id : "-", (unsigned long long)h->out->u.rec.row,
            h->dead ? "its key cannot be looked up" : sl_err_str(rc), SL_TOPIC_DEAD);
    sl_emit(em, SL_TOPIC_DEAD, h->out);
    h->out = NULL;
    return 0;
}

/* Resolves the held rows' keys and sends every held row, in order. 0 with
 * nothing held any more, or the error with what did not go out still held
 * (a retry goes on where this stopped, asking nothing twice). */
static int drain(struct validator *v, struct sl_emitter *em)
{
    int rc = take_answer(v);
    if (rc == 0)
        rc = check_refs(v, em, v->nsent, v->nheld);
    if (rc == 0)
        rc = resolve(v);
    for (; rc == 0 && v->nsent < v->nheld; v->nsent++)
        rc = send_held(v, &v->held[v->nsent], em);
    if (rc)
        return rc;
    v->nheld = v->nsent = v->nasked = 0;
    return 0;
}

/* A batch of BATCH_MAX rows held and not asked about (seen_keys_ask): the
 * previous batch's answer is taken and its rows go out, then this batch's
 * keys are asked; rows of several runs are resolved at once instead. 0, or
 * the error with every row still held that did not go out (a retry asks
 * again what was not answered). */
static int step(struct validator *v, struct sl_emitter *em)
{
    struct sl_state *st = v->env->st;
    int rc = take_answer(v);
    for (; rc == 0 && v->nsent < v->nasked; v->nsent++)
        rc = send_held(v, &v->held[v->nsent], em);
    if (rc)
        return rc;
    /* the rows left to the front: room for the next batch */
    size_t left = v->nheld - v->nsent;
    memmove(v->held, v->held + v->nsent, left * sizeof(*v->held));
    v->nasked -= v->nsent;
    v->nheld = left;
    v->nsent = 0;
    if ((rc = check_refs(v, em, v->nasked, v->nheld)) != 0)
        return rc;
    size_t from = v->nasked;
    while (from < v->nheld && !unanswered(&v->held[from]))
        from++;
    if (from == v->nheld) { /* nothing to ask */
        v->nasked = v->nheld;
        return 0;
    }
    const char *run = v->held[from].out->run_id;
    bool others;
    size_t n = gather(v, from, v->cqi, &others);
    if (others)
        return drain(v, em); /* rows of two runs: no call for them */
    v->nasked = v->nheld;
    rc = st->ops->seen_keys_ask(st, run, v->q, n, &v->call);
    if (rc) {
        v->nasked = v->nsent; /* asked again by the next drain */
        return poison_rows(v, v->cqi, n, run, rc);
    }
    v->ncall = n;
    return 0;
}

/* Sends everything held. An error (Redis away for longer than its
 * retry_for) leaves the rest held for the next call, and the runner must
 * not commit their inputs meanwhile. */
static int validator_flush(void *state, struct sl_emitter *em)
{
    return drain(state, em);
}

static int validator_process(void *state, const char *topic, struct sl_msg *in,
                             struct sl_emitter *em)
{
    struct validator *v = state;
    if (in->kind != SL_MSG_RECORD)
        return SL_ERR_INVALID;
    /* make room first: a retriable error here gets this same input again */
    if (v->nheld - v->nasked >= BATCH_MAX || v->nheld == HELD_MAX) {
        const struct sl_state_ops *ops = v->env->st->ops;
        int rc = ops->seen_keys_ask && ops->seen_keys_answer ? step(v, em) : drain(v, em);
        if (rc == 0 && v->nheld == HELD_MAX) /* a failed answer was asked again */
            rc = drain(v, em);
        if (rc)
            return rc;
    }
    char err[256];
    const struct sl_job *job =
        sl_jobs_get(v->env->jobs, in->job_id, in->job_version, err, sizeof(err));
    if (!job) {
        sl_warn("validator", "record of run %s: %s", in->run_id, err);
        return SL_ERR_NOTFOUND;
    }
    struct sl_msg *out = sl_msg_take(in);
    if (!out)
        return SL_ERR_NOMEM;
    struct sl_record *r = &out->u.rec;
    int rc = 0;
    v->in_order = attrs_in_order(v, out, job);
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        const struct sl_attr *a = &job->attrs[i];
        struct sl_field *f = field_of(v, r, job, i);
        if (!f) {
            if ((rc = sl_msg_add_attr(out, a->name, NULL)))
                break;
            f = &r->attr[r->nattr - 1];
        }
        if (has_problem(r, a->name))
            continue; /* the mapping already failed on it */
        const char *val = f->value && f->value[0] ? f->value : NULL;
        if (!val)
            val = a->default_value;
        if (!val) {
            f->value = NULL;
            if (a->required)
                rc = sl_msg_add_problem(out, a->name, "required", "is required", NULL);
            continue;
        }
        const char *norm = NULL;
        struct sl_type_problem probs[SL_TYPE_MAX_PROBLEMS];
        int np = sl_type_check(a, val, job->tz, &out->arena, &norm, probs);
        if (np < 0) {
            rc = np;
            break;
        }
        for (int k = 0; k < np && rc == 0; k++)
            rc = sl_msg_add_problem(out, a->name, probs[k].code, probs[k].message, val);
        f->value = np ? val : norm;
    }
    if (rc) {
        sl_msg_unref(out);
        return rc;
    }

    bool ask = build_key(v, job, r);
    if (ask && !(r->key = out->key = sl_arena_strndup(&out->arena, v->key.data, v->key.len))) {
        sl_msg_unref(out);
        return SL_ERR_NOMEM;
    }
    v->held[v->nheld++] =
        (struct held){.out = out, .job = job, .ask = ask, .add = ask && !r->nprob};
    if (ask || v->nheld > 1)
        return 0;
    /* nothing to ask and nothing ahead of it: out at once. When that fails
     * for now the row stays held for the next drain; this input is done. */
    rc = drain(v, em);
    return sl_err_class(rc) == SL_ERRCLASS_RETRIABLE ? 0 : rc;
}

static const char *const validator_inputs[] = {SL_TOPIC_MAPPED, NULL};

const struct sl_stage sl_stage_validator = {
    .name = "validator",
    .inputs = validator_inputs,
    .init = validator_init,
    .process = validator_process,
    .flush = validator_flush,
    .destroy = validator_destroy,
};
