/*
 * The mapper stage: a source row in, the same row with the target's
 * attributes (as text) and the row's mapping problems out. Pure: no state
 * beyond caches.
 *
 * Column names are resolved to positions once per distinct header (a CSV
 * file has one), not once per row: every field a template reads is a ref of
 * the job (struct sl_ref), and ref_col[] says where each ref sits in the
 * current header. Evaluation then reads vals[ref] directly.
 *
 * The mapped row is keyed on the bus by its target key, the key attributes'
 * values joined as the validator joins them, so that one key's rows stay in
 * order on one partition (a row missing a key value goes by its run).
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/err.h"
#include "sluice/job.h"
#include "sluice/log.h"
#include "sluice/stage.h"
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/util.h"

/* Between the values of a key of several attributes, as in the validator. */

struct mapper {
    const struct sl_stage_env *env;
    const struct sl_job *job; /* the job ref_col was computed for */
    char **names;             /* the header ref_col was computed for */
    size_t nnames;
    struct sl_names *names_obj; /* ... when records share it (held: no reuse) */
    int *ref_col;               /* job->nrefs entries */
    const char **vals;
    const char **names_tmp;
    size_t names_tmp_cap;
    size_t hash_key_len;
};

static int mapper_init(void **state, const struct sl_stage_env *env, char *errbuf, size_t errsz)
{
    struct mapper *m = calloc(1, sizeof(*m));
    if (!m)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    m->env = env;
    m->hash_key_len = env->hash_key ? strlen(env->hash_key) : 0;
    *state = m;
    return 0;
}

static void forget_header(struct mapper *m)
{
    sl_names_unref(m->names_obj);
    m->names_obj = NULL;
    for (size_t i = 0; i < m->nnames; i++)
        free(m->names[i]);
    free(m->names);
    m->names = NULL;
    m->nnames = 0;
}

static void mapper_destroy(void *state)
{
    struct mapper *m = state;
    if (!m)
        return;
    forget_header(m);
    free(m->ref_col);
    free(m->vals);
    free(m->names_tmp);
    free(m);
}

static bool same_header(const struct mapper *m, const struct sl_msg *in)
{
    const struct sl_record *r = &in->u.rec;
    if (in->names && in->names == m->names_obj)
        return r->nsrc == m->nnames; /* the file's shared header */
    if (r->nsrc != m->nnames)
        return false;
    for (uint32_t i = 0; i < r->nsrc; i++)
        if (strcmp(r->src[i].name, m->names[i]))
            return false;
    return true;
}

/* Resolves every ref of job against the record's field names. */
static int bind_header(struct mapper *m, const struct sl_job *job, const struct sl_msg *in)
{
    const struct sl_record *r = &in->u.rec;
    forget_header(m);
    if (in->names)
        m->names_obj = sl_names_ref(in->names);
    if (m->job != job) {
        free(m->ref_col);
        free(m->vals);
        m->ref_col = calloc(job->nrefs ? job->nrefs : 1, sizeof(int));
        m->vals = calloc(job->nrefs ? job->nrefs : 1, sizeof(char *));
        if (!m->ref_col || !m->vals)
            return SL_ERR_NOMEM;
        m->job = job;
    }
    if (r->nsrc > m->names_tmp_cap) {
        free(m->names_tmp);
        m->names_tmp = malloc(r->nsrc * sizeof(char *));
        if (!m->names_tmp)
            return SL_ERR_NOMEM;
        m->names_tmp_cap = r->nsrc;
    }
    m->names = calloc(r->nsrc ? r->nsrc : 1, sizeof(char *));
    if (!m->names)
        return SL_ERR_NOMEM;
    for (uint32_t i = 0; i < r->nsrc; i++) {
        if (!(m->names[i] = strdup(r->src[i].name)))
            return SL_ERR_NOMEM;
        m->nnames = i + 1;
        m->names_tmp[i] = r->src[i].name;
    }
    for (size_t k = 0; k < job->nrefs; k++)
        m->ref_col[k] = sl_column_find(job->refs[k].name, m->names_tmp, r->nsrc);
    return 0;
}

/* Sets out's bus key to its key attributes' values as mapped and normalized
 * by their types (as the validator keys the row), joined by SL_KEY_SEP; none
 * when the job has no key or a key value is missing, empty, failed to map or
 * is not valid. out's attributes are the job's, in job order. */
static int set_key(struct sl_msg *out, const struct sl_job *job)
{
    const struct sl_record *r = &out->u.rec;
    const struct sl_field *attr = r->attr;
    size_t len = 0;
    out->key = NULL;
    if (job->nkey == 0)
        return 0;
    const char **vals = sl_arena_alloc(&out->arena, job->nkey * sizeof(*vals));
    if (!vals)
        return SL_ERR_NOMEM;
    for (size_t k = 0; k < job->nkey; k++) {
        const struct sl_attr *a = &job->attrs[job->key_idx[k]];
        const char *v = attr[job->key_idx[k]].value;
        if (!v || !v[0])
            return 0;
        for (uint32_t i = 0; i < r->nprob; i++)
            if (!strcmp(r->prob[i].attribute, a->name))
                return 0;
        /* normalized as the validator will key the row */
        if (!(v = sl_type_key_value(a, v, job->tz, &out->arena)) || !v[0])
            return 0;
        vals[k] = v;
        len += strlen(v) + 1;
    }
    char *key = sl_arena_alloc(&out->arena, len);
    if (!key)
        return SL_ERR_NOMEM;
    char *p = key;
    for (size_t k = 0; k < job->nkey; k++) {
        const char *v = vals[k];
        size_t n = strlen(v);
        if (k)
            *p++ = SL_KEY_SEP;
        memcpy(p, v, n);
        p += n;
    }
    *p = '\0';
    out->key = key;
    return 0;
}

static int mapper_process(void *state, const char *topic, struct sl_msg *in, struct sl_emitter *em)
{
    struct mapper *m = state;
    if (in->kind != SL_MSG_RECORD)
        return SL_ERR_INVALID;
    char err[256];
    const struct sl_job *job =
        sl_jobs_get(m->env->jobs, in->job_id, in->job_version, err, sizeof(err));
    if (!job) {
        sl_warn("mapper", "record of run %s: %s", in->run_id, err);
        return SL_ERR_NOTFOUND;
    }
    if (m->job != job || !same_header(m, in)) {
        int rc = bind_header(m, job, in);
        if (rc)
            return rc;
    }
    /* read the values from the message we change, so that every pointer the
     * attributes get (source values, results) lives in its arena */
    struct sl_msg *out = sl_msg_take(in);
    if (!out)
        return SL_ERR_NOMEM;
    const struct sl_record *src = &out->u.rec;
    for (size_t k = 0; k < job->nrefs; k++) {
        const char *v = m->ref_col[k] >= 0 ? src->src[m->ref_col[k]].value : NULL;
        m->vals[k] = v && *v ? v : NULL;
    }
    struct sl_eval_ctx ctx = {
        .job = job,
        .hash_key = m->env->hash_key,
        .hash_key_len = m->hash_key_len,
        .arena = &out->arena,
    };
    out->u.rec.nattr = 0;
    int rc = 0;
    for (size_t i = 0; i < job->nattrs && rc == 0; i++) {
        const struct sl_attr *a = &job->attrs[i];
        const char *val = NULL, *msg = NULL;
        if (a->map && sl_template_eval(a->map, m->vals, &ctx, &val, &msg) != 0) {
            size_t ref;
            const char *input = sl_template_input_ref(a->map, &ref) ? m->vals[ref] : NULL;
            rc = sl_msg_add_problem(out, a->name, "format", msg ? msg : "cannot convert the value",
                                    input);
            val = NULL;
        }
        if (rc == 0)
            rc = sl_msg_add_attr_ref(out, a->name, val);
    }
    if (rc == 0)
        rc = set_key(out, job);
    if (rc) {
        sl_msg_unref(out);
        return rc;
    }
    return sl_emit(em, SL_TOPIC_MAPPED, out);
}

static const char *const mapper_inputs[] = {SL_TOPIC_RAW, NULL};

const struct sl_stage sl_stage_mapper = {
    .name = "mapper",
    .inputs = mapper_inputs,
    .init = mapper_init,
    .process = mapper_process,
    .destroy = mapper_destroy,
};
