/*
 * Foreign keys: JOBS.md's `references: "object.attribute"` makes an
 * attribute's value an error (`unknown_reference`) unless the destination
 * holds a record of that object with that attribute's value.
 *
 * The validator asks about a batch of values at once; each reference's
 * answers are cached (found and not found alike, for CACHE_SECONDS), so a
 * million rows pointing at a few hundred regions make a few queries, and a
 * million distinct values one query a batch. Where the records of an object
 * are:
 *   - a postgres destination (SLUICE_DESTINATION_URL): the table named like
 *     the object (the job's own destination.table for a reference into its
 *     own object), the column named like the attribute; looked up with one
 *     query a batch that uses the column's index (values cast to its type);
 *   - an NDJSON file destination (embedded mode): <object>.ndjson beside the
 *     job's own output file (what `sluice run other-job.json --out DIR`
 *     published there), read once into a set of fingerprints.
 */
#ifndef SLUICE_REFCHECK_H
#define SLUICE_REFCHECK_H

#include <stdbool.h>
#include <stddef.h>

struct sl_job;
struct sl_stage_env;
struct sl_refcheck;

/* One question: is value (normalized by the attribute's type) a record of
 * the object job->attrs[attr].references names? */
struct sl_ref_query {
    const struct sl_job *job;
    size_t attr;
    const char *value;
    bool found;        /* the answer */
    const char *error; /* not NULL: the reference cannot be checked at all (no such
                          table, column or file; a configuration problem, which
                          fails the run), why: "target.attributes.region_id.references:
                          the destination has no table regions" (borrowed from the
                          checker, valid as long as it lives) */
};

/* A checker over env's destination (destination_url, else the NDJSON files
 * beside env->sink_path); connects on first use. NULL when out of memory. */
struct sl_refcheck *sl_refcheck_new(const struct sl_stage_env *env);
/* Closes the connection and frees the caches; accepts NULL. */
void sl_refcheck_destroy(struct sl_refcheck *rc);

/* Answers q[0..n) (sets each found, or error). Returns 0, or an sl_err
 * with errbuf set when the destination cannot be asked now (retriable: ask
 * again later; what was answered stays cached). One thread. */
int sl_refcheck_lookup(struct sl_refcheck *rc, struct sl_ref_query *q, size_t n, char *errbuf,
                       size_t errsz);

#endif
