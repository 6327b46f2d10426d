/*
 * The validator stage: a mapped row in; a valid Record (attributes
 * normalized, key set) or a Rejection with every problem of the row out.
 *
 * Missing values take the attribute's default, then face `required`; present
 * values are checked and normalized by their type (types.h). The key of a row
 * without problems is remembered for the run in the state store; a key seen
 * before is a duplicate: rejected, or with `duplicates: last_wins` passed on
 * marked as replacing the earlier row.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/stage.h"
#include "sluice/state.h"
#include "sluice/types.h"

#define KEY_SEP '\x1f'

struct validator {
    const struct sl_stage_env *env;
    struct sl_buf key;
};

static int validator_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct validator *v = calloc(1, sizeof(*v));
    if (!v)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    v->env = env;
    *state = v;
    return 0;
}

static void validator_destroy(void *state)
{
    struct validator *v = state;
    if (v)
        sl_buf_cleanup(&v->key);
    free(v);
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

/* Builds the key text into v->key; false when a key attribute is missing or
 * has a problem. */
static bool build_key(struct validator *v, const struct sl_job *job, struct sl_record *r)
{
    sl_buf_reset(&v->key);
    if (job->nkey == 0)
        return false;
    for (size_t k = 0; k < job->nkey; k++) {
        const struct sl_attr *a = &job->attrs[job->key_idx[k]];
        struct sl_field *f = attr_of(r, job, job->key_idx[k]);
        if (!f || !f->value || has_problem(r, a->name))
            return false;
        if ((k && sl_buf_putc(&v->key, KEY_SEP)) || sl_buf_puts(&v->key, f->value))
            return false;
    }
    return true;
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

static int validator_process(void *state, const char *topic, struct sl_msg *in,
                             struct sl_emitter *em)
{
    struct validator *v = state;
    if (in->kind != SL_MSG_RECORD)
        return SL_ERR_INVALID;
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
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        const struct sl_attr *a = &job->attrs[i];
        struct sl_field *f = attr_of(r, job, i);
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

    if (build_key(v, job, r)) {
        r->key = out->key = sl_arena_strndup(&out->arena, v->key.data, v->key.len);
        bool add = r->nprob == 0;
        int seen = v->env->st->ops->seen_key(v->env->st, out->run_id, v->key.data, v->key.len, add);
        if (seen < 0) {
            sl_msg_unref(out);
            return seen;
        }
        if (seen && job->options.duplicates == SL_DUPS_REJECT) {
            const char *attr = job->nkey == 1 ? job->key[0] : "_key";
            char *shown = sl_arena_strndup(&out->arena, v->key.data, v->key.len);
            for (char *p = shown; p && *p; p++)
                if (*p == KEY_SEP)
                    *p = ',';
            char *msg = sl_arena_printf(&out->arena,
                                        "duplicate key: '%s' was already seen in this run", shown);
            if (!msg || sl_msg_add_problem(out, attr, "duplicate_key", msg, shown)) {
                sl_msg_unref(out);
                return SL_ERR_NOMEM;
            }
        } else if (seen && r->nprob == 0) {
            r->duplicate = true;
        }
    }
    if (r->nprob) {
        sort_problems(job, r);
        out->kind = SL_MSG_REJECTION;
        return sl_emit(em, SL_TOPIC_REJECTED, out);
    }
    return sl_emit(em, SL_TOPIC_VALID, out);
}

static const char *const validator_inputs[] = {SL_TOPIC_MAPPED, NULL};

const struct sl_stage sl_stage_validator = {
    .name = "validator",
    .inputs = validator_inputs,
    .init = validator_init,
    .process = validator_process,
    .destroy = validator_destroy,
};
