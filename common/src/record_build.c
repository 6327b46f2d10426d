/*
 * Records from source rows (record_build.h): what the parser and the
 * gateway's webhooks share of turning a reader's row into a Record, so
 * that both send the same record for the same row.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice/buf.h"
#include "sluice/err.h"
#include "sluice/keyset.h"
#include "sluice/log.h"
#include "sluice/record_build.h"
#include "sluice/template.h"
#include "sluice/types.h"
#include "sluice/util.h"

int sl_record_build_init(struct sl_record_build *rb)
{
    const struct sl_job *job = rb->job;
    rb->keyed = rb->keyed && job->nkey;
    if (!(rb->ref_seen = calloc(job->nrefs + 1, sizeof(bool))))
        return SL_ERR_NOMEM;
    if (rb->keyed && (!(rb->ref_col = calloc(job->nrefs + 1, sizeof(*rb->ref_col))) ||
                      !(rb->vals = calloc(job->nrefs + 1, sizeof(*rb->vals)))))
        return SL_ERR_NOMEM;
    return 0;
}

void sl_record_build_cleanup(struct sl_record_build *rb)
{
    free(rb->ref_seen);
    sl_keyset_destroy(rb->names_seen);
    for (size_t i = 0; i < rb->nunmapped; i++)
        free(rb->unmapped[i]);
    free(rb->unmapped);
    free(rb->ref_col);
    free(rb->vals);
    sl_names_unref(rb->names);
    rb->ref_seen = NULL;
    rb->names_seen = NULL;
    rb->names_met = false;
    rb->unmapped = NULL;
    rb->nunmapped = 0;
    rb->ref_col = NULL;
    rb->vals = NULL;
    rb->names = NULL;
}

/* A first call with at most this many names finds the repeated ones among
 * them by comparing: a webhook delivery of one record needs no set (its
 * table is 10 KiB, zeroed). */
#define NAMES_FEW 16

/* names_vary: the set of the names met, made on the second call (or a first
 * one of more than NAMES_FEW names). The first call's names are gone by
 * then; of them only the unmapped ones matter (noting a mapped name again
 * changes nothing), and those are in rb->unmapped. */
static int names_set(struct sl_record_build *rb, size_t n)
{
    bool first = !rb->names_met;
    rb->names_met = true;
    if (rb->names_seen || (first && n <= NAMES_FEW))
        return 0;
    if (!(rb->names_seen = sl_keyset_new()))
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < rb->nunmapped; i++)
        if (sl_keyset_test(rb->names_seen, rb->unmapped[i], strlen(rb->unmapped[i]), true) < 0)
            return SL_ERR_NOMEM;
    return 0;
}

/* 1 when names[i] was met before (by names_seen, else among names[0..i)),
 * 0 when not, SL_ERR_NOMEM. */
static int name_met(struct sl_record_build *rb, const char *const *names, size_t i)
{
    if (rb->names_seen)
        return sl_keyset_test(rb->names_seen, names[i], strlen(names[i]), true);
    for (size_t k = 0; k < i; k++)
        if (strcmp(names[k], names[i]) == 0)
            return 1;
    return 0;
}

int sl_record_build_names(struct sl_record_build *rb, const char *const *names, size_t n)
{
    const struct sl_job *job = rb->job;
    if (rb->names_vary && names_set(rb, n))
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (rb->names_vary) {
            int seen = name_met(rb, names, i);
            if (seen < 0)
                return SL_ERR_NOMEM;
            if (seen)
                continue;
        }
        for (size_t k = 0; k < job->nrefs; k++)
            if (!rb->ref_seen[k] && sl_column_find(job->refs[k].name, &names[i], 1) == 0)
                rb->ref_seen[k] = true;
        if (sl_job_reads_column(job, names[i]))
            continue;
        if (rb->nunmapped == SL_RECORD_BUILD_MAX_UNMAPPED) {
            sl_debug("record", "run %s: more than %d unmapped columns, '%s' not listed",
                     rb->run_id ? rb->run_id : "(new)", SL_RECORD_BUILD_MAX_UNMAPPED, names[i]);
            continue;
        }
        if (!rb->unmapped && !(rb->unmapped = calloc(SL_RECORD_BUILD_MAX_UNMAPPED, sizeof(char *))))
            return SL_ERR_NOMEM;
        if (!(rb->unmapped[rb->nunmapped] = strdup(names[i])))
            return SL_ERR_NOMEM;
        rb->nunmapped++;
    }
    return 0;
}

/* Keys m by its target key (record_build.h). */
static int set_key(struct sl_record_build *rb, const struct sl_row *row, struct sl_msg *m)
{
    const struct sl_job *job = rb->job;
    if (rb->bound != row->names) {
        for (size_t k = 0; k < job->nrefs; k++)
            rb->ref_col[k] = sl_column_find(job->refs[k].name, row->names, row->n);
        rb->bound = row->names;
    }
    for (size_t k = 0; k < job->nrefs; k++) {
        int c = rb->ref_col[k];
        rb->vals[k] = c >= 0 && (size_t)c < row->n && row->values[c] && row->values[c][0]
                          ? row->values[c]
                          : NULL;
    }
    struct sl_eval_ctx ctx = {
        .job = job,
        .hash_key = rb->hash_key,
        .hash_key_len = rb->hash_key ? strlen(rb->hash_key) : 0,
        .arena = &m->arena,
    };
    struct sl_buf key = SL_BUF_INIT;
    int rc = 0;
    for (size_t k = 0; k < job->nkey && rc == 0; k++) {
        const struct sl_attr *a = &job->attrs[job->key_idx[k]];
        const char *v = NULL, *msg = NULL;
        if (a->map && sl_template_eval(a->map, rb->vals, &ctx, &v, &msg) != 0)
            v = NULL;
        if (v && v[0])
            v = sl_type_key_value(a, v, job->tz, &m->arena); /* as the validator will */
        if (!v || !v[0]) {
            sl_buf_cleanup(&key);
            return 0; /* the validator rejects it: any partition will do */
        }
        if ((k && sl_buf_putc(&key, SL_KEY_SEP)) || sl_buf_puts(&key, v))
            rc = SL_ERR_NOMEM;
    }
    if (rc == 0 && !(m->key = sl_arena_strndup(&m->arena, key.data, key.len)))
        rc = SL_ERR_NOMEM;
    sl_buf_cleanup(&key);
    return rc;
}

/* Whether nm holds row's names: readers whose records name their own
 * fields (JSON, XML) hand every row over in the same array. */
static bool same_names(const struct sl_names *nm, const struct sl_row *row)
{
    for (size_t i = 0; i < row->n; i++)
        if (strcmp(nm->names[i], row->names[i]))
            return false;
    return true;
}

int sl_record_build_row(struct sl_record_build *rb, const struct sl_row *row, struct sl_msg **out)
{
    *out = NULL;
    struct sl_msg *m = sl_msg_new(SL_MSG_RECORD, rb->run_id, rb->job_id, rb->job_version);
    if (!m)
        return SL_ERR_NOMEM;
    m->u.rec.row = row->row;
    if (!rb->names || rb->names_src != row->names || rb->names->n != row->n ||
        (rb->names_vary && !same_names(rb->names, row))) {
        sl_names_unref(rb->names);
        if (!(rb->names = sl_names_new(row->names, row->n)))
            goto nomem;
        rb->names_src = row->names;
        rb->bound = NULL; /* set_key resolves the refs again */
        if (rb->names_vary && sl_record_build_names(rb, row->names, row->n))
            goto nomem;
    }
    if (sl_msg_set_src_row(m, rb->names, row->values, row->lens, row->n) ||
        (row->error && sl_msg_add_problem(m, "_row", "format", row->error, NULL)) ||
        (rb->keyed && set_key(rb, row, m)))
        goto nomem;
    *out = m;
    return 0;
nomem:
    sl_msg_unref(m);
    return SL_ERR_NOMEM;
}
