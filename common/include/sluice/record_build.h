/*
 * Records from source rows: the one place that turns a reader's row
 * (reader.h) into the Record a run's first stage sends, used by the parser
 * (services/parser/parser.c) and by the gateway's webhooks
 * (services/gateway/webhook.c), so that a pushed record and a record read
 * from a file are the same. A record carries the row's source fields under
 * names shared by consecutive rows that have the same names, a row the
 * reader could not read as a "_row" format problem, and, when keyed, the
 * bus key: the target key mapped from the row as the mapper maps it and
 * normalized as the validator will (see sl_record_build_row). On the way it
 * notes which fields the mapping reads were met and which fields it does
 * not read (a seal's unmapped columns).
 */
#ifndef SLUICE_RECORD_BUILD_H
#define SLUICE_RECORD_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/job.h"
#include "sluice/msg.h"
#include "sluice/reader.h"

/* Unmapped field names a run lists (a wide or ragged JSON source could
 * have any number); more are logged at debug level only. */
#define SL_RECORD_BUILD_MAX_UNMAPPED 500

struct sl_keyset;

/* The builder of one run's records; used by one thread. */
struct sl_record_build {
    /* set by the caller before sl_record_build_init() (all borrowed) */
    const char *run_id; /* of every record; NULL: set by the caller later */
    const char *job_id;
    uint32_t job_version;
    const struct sl_job *job; /* the run's job: its mapping and key */
    bool keyed;               /* set each record's bus key (distributed mode) */
    const char *hash_key;     /* SLUICE_HASH_KEY, for hash() in a key's mapping */
    bool names_vary;          /* each record names its own fields (JSON, XML) */
    /* what the names met so far said (read them, do not change them) */
    bool *ref_seen;  /* job->nrefs: the field of each ref was among them */
    char **unmapped; /* names the mapping does not read, in the order met */
    size_t nunmapped;
    /* private */
    struct sl_names *names;       /* shared by the records of the same names */
    const char *const *names_src; /* the reader's array they were made from */
    struct sl_keyset *names_seen; /* names_vary: every name met so far, from the second
                                   * call on or a wide first one (NAMES_FEW) */
    bool names_met;               /* names_vary: sl_record_build_names() was called */
    int *ref_col;                 /* keyed: the column of each ref, or -1 */
    const char **vals;            /* keyed: job->nrefs */
    const char *const *bound;     /* the names ref_col was computed for */
};

/* Prepares rb, whose caller's fields are set. 0 or SL_ERR_NOMEM (then
 * sl_record_build_cleanup() all the same). */
int sl_record_build_init(struct sl_record_build *rb);

/* Frees what rb holds; accepts a zeroed or half-built rb. */
void sl_record_build_cleanup(struct sl_record_build *rb);

/* Notes field names (a header's, or a record's own): which fields the
 * mapping reads are among them, which of them it does not read. Rows of
 * names_vary builders are noted by sl_record_build_row() themselves. 0 or
 * SL_ERR_NOMEM. */
int sl_record_build_names(struct sl_record_build *rb, const char *const *names, size_t n);

/* The Record of row in *out (a new message, the caller's): rb's run, job
 * and version, row->row, the source fields, row->error as a "_row" format
 * problem and, keyed, msg->key: the job's key attributes mapped from the
 * row, each normalized by its type (sl_type_key_value), joined by
 * SL_KEY_SEP; none when one of them is missing or does not map (the
 * validator rejects the row: any partition will do). The bus keeps every
 * row of one key on one partition in source order through the mapper and
 * the validator, so "the later row of a key" means the same in distributed
 * mode as in the source. 0 or SL_ERR_NOMEM. */
int sl_record_build_row(struct sl_record_build *rb, const struct sl_row *row, struct sl_msg **out);

#endif
