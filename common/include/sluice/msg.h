/*
 * Decoded wire records: what stages exchange.
 *
 * One struct sl_msg carries any of the records of proto/sluice.proto. All of
 * a message's strings and arrays live in its arena, so a message is freed with
 * one call. On the in-process bus messages travel as they are (no encoding);
 * the Kafka bus encodes them with codec.h. A message handed to sl_emit() or
 * sl_bus_send() is owned by the bus from then on and must not be changed:
 * several consumers may hold references to it (sl_msg_ref).
 */
#ifndef SLUICE_MSG_H
#define SLUICE_MSG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/arena.h"

enum sl_msg_kind {
    SL_MSG_TICKET = 1,
    SL_MSG_FILE = 2,
    SL_MSG_RECORD = 3,
    SL_MSG_REJECTION = 4,
    SL_MSG_RUN_EVENT = 5,
};

/* A named value; value NULL: missing. */
struct sl_field {
    const char *name;
    const char *value;
};

/* One problem of a row (all strings in the message arena). */
struct sl_problem {
    const char *attribute; /* target attribute, or "_row" */
    const char *code;      /* required, type, too_long, ... (see JOBS.md) */
    const char *message;   /* lowercase, says what is wrong */
    const char *value;     /* the offending value, NULL when missing */
};

struct sl_ticket {
    const char *ticket_id;
    const char *trigger;
    bool force;
    int64_t scheduled_at; /* unix microseconds */
    const char *input;    /* override of source.url, or NULL */
};

struct sl_file {
    const char *blob; /* path of the raw file */
    char sha256[65];  /* hex */
    uint64_t bytes;
    const char *content_type;
    const char *file_name;
    int64_t fetched_at;
};

/* A source row (SL_MSG_RECORD) or a rejected one (SL_MSG_REJECTION). */
struct sl_record {
    uint64_t row; /* 1-based data row of the source */
    struct sl_field *src;
    uint32_t nsrc, csrc;
    struct sl_field *attr; /* mapped attributes; NULL until mapped */
    uint32_t nattr, cattr;
    struct sl_problem *prob;
    uint32_t nprob, cprob;
    const char *key; /* the target key, or NULL */
    bool duplicate;  /* last_wins: this row replaces an earlier one of the run */
};

enum sl_run_event_kind {
    SL_EV_FETCHED = 1,
    SL_EV_PROGRESS = 2,
    SL_EV_SEALED = 3,
    SL_EV_FAILED = 4,
    SL_EV_SKIPPED = 5,
    SL_EV_FINAL = 6,
};

struct sl_counts {
    uint64_t read, published, created, updated, unchanged, rejected, duplicates, not_created;
    uint64_t bytes;
};

struct sl_run_event {
    enum sl_run_event_kind kind;
    const char *stage;
    uint64_t record_count;
    struct sl_counts counts;
    const char *status; /* succeeded, completed_with_errors, skipped, failed */
    const char *reason;
    char sha256[65];
    uint64_t bytes;
    int64_t at; /* unix microseconds */
    const char *source_name;
    const char **columns; /* the source header, when the format has one */
    uint32_t ncolumns;
    char delimiter;        /* the CSV delimiter used (given or detected), or 0 */
    int encoding;          /* enum sl_encoding of the source text (given or its BOM's) */
    const char **unmapped; /* SEALED: the source columns the mapping does not read */
    uint32_t nunmapped;
};

/* An immutable, reference-counted list of field names (a file's header),
 * shared by every record of the file instead of copied into each. */
struct sl_names {
    atomic_int refs;
    size_t n;
    const char *names[]; /* the strings follow the array */
};

/* A new list of copies of names[0..n), one reference; NULL out of memory. */
struct sl_names *sl_names_new(const char *const *names, size_t n);
struct sl_names *sl_names_ref(struct sl_names *nm);
void sl_names_unref(struct sl_names *nm);

struct sl_msg {
    enum sl_msg_kind kind;
    atomic_int refs;
    const char *run_id;
    const char *job_id;
    uint32_t job_version;
    const char *key;             /* bus partitioning key (NULL: none) */
    struct sl_names *names;      /* source field names live here when set */
    struct sl_names *wire_names; /* names shared by a decoded batch's records (codec.h) */
    union {
        struct sl_ticket ticket;
        struct sl_file file;
        struct sl_record rec; /* SL_MSG_RECORD and SL_MSG_REJECTION */
        struct sl_run_event ev;
    } u;
    struct sl_arena arena; /* owns every string and array above */
};

/* A new message of kind with one reference, run and job ids copied; NULL when
 * out of memory. */
struct sl_msg *sl_msg_new(enum sl_msg_kind kind, const char *run_id, const char *job_id,
                          uint32_t job_version);
/* Adds a reference (any thread). */
struct sl_msg *sl_msg_ref(struct sl_msg *m);
/* Drops a reference, freeing the message with the last one; accepts NULL. */
void sl_msg_unref(struct sl_msg *m);

/* A deep copy of m with one reference (the copy may be changed). */
struct sl_msg *sl_msg_clone(const struct sl_msg *m);
/* For a stage that forwards a changed version of the message it was given:
 * m itself (with a reference added) when nobody else holds it, so that it can
 * be changed in place, else a clone. NULL when out of memory. */
struct sl_msg *sl_msg_take(struct sl_msg *m);

/* Appends a source field / a mapped attribute (name and value copied into the
 * arena, value may be NULL). Return 0 or SL_ERR_NOMEM. */
int sl_msg_add_src(struct sl_msg *m, const char *name, const char *value, size_t vlen);
int sl_msg_add_attr(struct sl_msg *m, const char *name, const char *value);
/* The same without copies: name and value must live as long as the message
 * (in its arena, or in the job, which outlives every message of its runs). */
int sl_msg_add_attr_ref(struct sl_msg *m, const char *name, const char *value);
/* Appends a problem; strings are copied, value may be NULL. */
int sl_msg_add_problem(struct sl_msg *m, const char *attribute, const char *code,
                       const char *message, const char *value);
/* Sets all source fields of a record at once: names from nm (a reference is
 * taken), the n values (NULL: missing; lens[i] bytes each) copied into the
 * arena in one allocation. Replaces any source fields already there. */
int sl_msg_set_src_row(struct sl_msg *m, struct sl_names *nm, const char *const *values,
                       const size_t *lens, size_t n);
/* Reserves room for n source fields (a hint, to avoid regrowth). */
int sl_msg_reserve_src(struct sl_msg *m, uint32_t n);

/* "ticket", "file", "record", "rejection", "run_event". */
const char *sl_msg_kind_str(enum sl_msg_kind kind);
const char *sl_run_event_kind_str(enum sl_run_event_kind kind);

/* Microseconds since the epoch (CLOCK_REALTIME). */
int64_t sl_now_us(void);
/* A new random run id (UUID v4 text) into out[37]. */
void sl_new_run_id(char out[37]);

#endif
