/*
 * Wire codec (codec.h): struct sl_msg <-> the protobuf records of
 * proto/sluice.proto. The Kafka bus encodes what it sends and decodes what it
 * polls; the in-process bus passes messages as they are.
 *
 * Records and rejections, nearly all of the traffic, are written and read by
 * hand (encode_record, decode_record_wire: one pass for the sizes, one for
 * the bytes, every decoded string in one arena block). The other kinds go
 * through protobuf-c, and so do records and rejections in
 * sl_codec_encode_reference / sl_codec_decode_reference, the reference the
 * tests hold the hand-written path to (tests/unit/codec_reference.h).
 *
 * protobuf-c encoding builds the protobuf-c structs over the message's own
 * strings, with the few arrays it needs (repeated Field and Problem) in a
 * scratch arena on the stack, and packs straight into the caller's buffer.
 * Its decoding unpacks with an allocator that takes memory from the new
 * message's arena, so the decoded strings are used where protobuf-c put them.
 *
 * Mapping rules: a missing field value (NULL) is Field.missing = true; a
 * problem without a value is has_value = false; an optional string (ticket
 * input, record key, file content type and name, run event stage, status,
 * reason and source name, a ticket's run id) that is NULL goes on the wire
 * as the empty string and comes back as NULL. sl_msg.key is the bus key, not
 * part of the record. Strings must be UTF-8, as proto3 requires.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice.pb-c.h"

#include "sluice/bus.h"
#include "sluice/codec.h"
#include "sluice/reader.h"
#include "sluice/err.h"
#include "sluice/log.h"
#include "sluice/util.h"

/* The kind each logical topic carries; "dead" carries any. */
static const struct {
    const char *topic;
    enum sl_msg_kind kind;
} topic_kinds[] = {
    {SL_TOPIC_TICKETS, SL_MSG_TICKET}, {SL_TOPIC_FILES, SL_MSG_FILE},
    {SL_TOPIC_RAW, SL_MSG_RECORD},     {SL_TOPIC_MAPPED, SL_MSG_RECORD},
    {SL_TOPIC_VALID, SL_MSG_RECORD},   {SL_TOPIC_REJECTED, SL_MSG_REJECTION},
    {SL_TOPIC_RUNS, SL_MSG_RUN_EVENT},
};

/* ---- encoding ---- */

/* protobuf-c wants char *; it never writes through them when packing. */
static char *wire_str(const char *s)
{
    return (char *)(s ? s : "");
}

/* Whether every string handed to the packer is UTF-8; names the first one
 * that is not in *bad. */
static bool utf8_ok(const char *s, const char *what, const char **bad)
{
    if (!s || sl_utf8_valid(s, strlen(s)))
        return true;
    if (!*bad)
        *bad = what;
    return false;
}

static Sluice__Field **encode_fields(struct sl_arena *a, const struct sl_field *f, uint32_t n,
                                     const char **bad)
{
    Sluice__Field *v = sl_arena_alloc(a, (size_t)n * sizeof(*v));
    Sluice__Field **p = sl_arena_alloc(a, (size_t)n * sizeof(*p));
    if (!v || !p)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        sluice__field__init(&v[i]);
        v[i].name = wire_str(f[i].name);
        if (f[i].value)
            v[i].value = wire_str(f[i].value);
        else
            v[i].missing = 1;
        utf8_ok(f[i].name, "field name", bad);
        utf8_ok(f[i].value, "field value", bad);
        p[i] = &v[i];
    }
    return p;
}

static Sluice__Problem **encode_problems(struct sl_arena *a, const struct sl_problem *pr,
                                         uint32_t n, const char **bad)
{
    Sluice__Problem *v = sl_arena_alloc(a, (size_t)n * sizeof(*v));
    Sluice__Problem **p = sl_arena_alloc(a, (size_t)n * sizeof(*p));
    if (!v || !p)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        sluice__problem__init(&v[i]);
        v[i].attribute = wire_str(pr[i].attribute);
        v[i].code = wire_str(pr[i].code);
        v[i].message = wire_str(pr[i].message);
        v[i].value = wire_str(pr[i].value);
        v[i].has_value = pr[i].value != NULL;
        utf8_ok(pr[i].attribute, "problem attribute", bad);
        utf8_ok(pr[i].code, "problem code", bad);
        utf8_ok(pr[i].message, "problem message", bad);
        utf8_ok(pr[i].value, "problem value", bad);
        p[i] = &v[i];
    }
    return p;
}

/* Packs pm at the end of out; field > 0: as that length-delimited field of
 * an enclosing message (tag, length, then the message: a batch entry). */
static int pack(const ProtobufCMessage *pm, struct sl_buf *out, unsigned field)
{
    size_t size = protobuf_c_message_get_packed_size(pm);
    if (sl_buf_reserve(out, size + 16))
        return SL_ERR_NOMEM;
    if (field) {
        uint8_t *p = (uint8_t *)out->data + out->len;
        size_t n = 0;
        p[n++] = (uint8_t)(field << 3 | 2);
        size_t v = size;
        for (; v >= 0x80; v >>= 7)
            p[n++] = (uint8_t)(v | 0x80);
        p[n++] = (uint8_t)v;
        out->len += n;
    }
    size_t n = protobuf_c_message_pack(pm, (uint8_t *)out->data + out->len);
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

/* The first 64 characters of a fixed sha256[65] field, NUL-terminated. */
static void copy_sha(char dst[65], const char src[65])
{
    size_t n = strnlen(src, 64);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* What a record leaves to its batch (sl_batch_enc): its run and job ids,
 * the names of its source fields, of its attributes. */
struct share {
    bool ids, src, attr;
};

/* Values of n fields and the indexes of the missing ones, for protobuf-c. */
static bool encode_values(struct sl_arena *a, const struct sl_field *f, uint32_t n, char ***values,
                          uint32_t **missing, size_t *nmissing, const char **bad)
{
    *values = sl_arena_alloc(a, (size_t)n * sizeof(**values));
    *missing = sl_arena_alloc(a, (size_t)n * sizeof(**missing));
    *nmissing = 0;
    if (!*values || !*missing)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        (*values)[i] = wire_str(f[i].value);
        utf8_ok(f[i].value, "field value", bad);
        if (!f[i].value)
            (*missing)[(*nmissing)++] = i;
    }
    return true;
}

static int encode_pb_shared(const struct sl_msg *m, struct sl_buf *out, unsigned field,
                            struct share sh);

/* sl_codec_encode through protobuf-c, or as field `field` of an enclosing
 * message (> 0): every kind but records and rejections, which encode_record
 * writes by hand (this path stays as their reference, for the tests). */
static int encode_pb(const struct sl_msg *m, struct sl_buf *out, unsigned field)
{
    return encode_pb_shared(m, out, field, (struct share){false, false, false});
}

/* encode_pb with what a record leaves to its batch (sh). */
static int encode_pb_shared(const struct sl_msg *m, struct sl_buf *out, unsigned field,
                            struct share sh)
{
    struct sl_arena scratch;
    const char *bad = NULL;
    int rc = 0;

    sl_arena_init(&scratch);
    utf8_ok(m->run_id, "run_id", &bad);
    utf8_ok(m->job_id, "job_id", &bad);
    switch (m->kind) {
    case SL_MSG_TICKET: {
        const struct sl_ticket *t = &m->u.ticket;
        Sluice__JobTicket w = SLUICE__JOB_TICKET__INIT;
        w.ticket_id = wire_str(t->ticket_id);
        w.job_id = wire_str(m->job_id);
        w.job_version = m->job_version;
        w.run_id = wire_str(m->run_id);
        w.trigger = wire_str(t->trigger);
        w.force = t->force;
        w.scheduled_at = t->scheduled_at;
        w.input = wire_str(t->input);
        utf8_ok(t->ticket_id, "ticket_id", &bad);
        utf8_ok(t->trigger, "trigger", &bad);
        utf8_ok(t->input, "input", &bad);
        if (!bad)
            rc = pack(&w.base, out, field);
        break;
    }
    case SL_MSG_FILE: {
        const struct sl_file *f = &m->u.file;
        char sha[65];
        Sluice__FileFetched w = SLUICE__FILE_FETCHED__INIT;
        copy_sha(sha, f->sha256);
        w.run_id = wire_str(m->run_id);
        w.job_id = wire_str(m->job_id);
        w.job_version = m->job_version;
        w.blob = wire_str(f->blob);
        w.sha256 = sha;
        w.bytes = f->bytes;
        w.content_type = wire_str(f->content_type);
        w.file_name = wire_str(f->file_name);
        w.fetched_at = f->fetched_at;
        utf8_ok(f->blob, "blob", &bad);
        utf8_ok(sha, "sha256", &bad);
        utf8_ok(f->content_type, "content_type", &bad);
        utf8_ok(f->file_name, "file_name", &bad);
        if (!bad)
            rc = pack(&w.base, out, field);
        break;
    }
    case SL_MSG_RECORD: {
        const struct sl_record *r = &m->u.rec;
        Sluice__Record w = SLUICE__RECORD__INIT;
        if (!sh.ids) { /* else the batch carries them */
            w.run_id = wire_str(m->run_id);
            w.job_id = wire_str(m->job_id);
            w.job_version = m->job_version;
        }
        w.row = r->row;
        w.n_problems = r->nprob;
        w.key = wire_str(r->key);
        w.duplicate = r->duplicate;
        if (sh.src) {
            w.n_source_values = r->nsrc;
            if (!encode_values(&scratch, r->src, r->nsrc, &w.source_values, &w.source_missing,
                               &w.n_source_missing, &bad)) {
                rc = SL_ERR_NOMEM;
                goto done;
            }
        } else if ((w.n_source = r->nsrc) &&
                   !(w.source = encode_fields(&scratch, r->src, r->nsrc, &bad))) {
            rc = SL_ERR_NOMEM;
            goto done;
        }
        if (sh.attr) {
            w.n_attribute_values = r->nattr;
            if (!encode_values(&scratch, r->attr, r->nattr, &w.attribute_values,
                               &w.attribute_missing, &w.n_attribute_missing, &bad)) {
                rc = SL_ERR_NOMEM;
                goto done;
            }
        } else if ((w.n_attributes = r->nattr) &&
                   !(w.attributes = encode_fields(&scratch, r->attr, r->nattr, &bad))) {
            rc = SL_ERR_NOMEM;
            goto done;
        }
        if (r->nprob && !(w.problems = encode_problems(&scratch, r->prob, r->nprob, &bad))) {
            rc = SL_ERR_NOMEM;
            goto done;
        }
        utf8_ok(r->key, "key", &bad);
        if (!bad)
            rc = pack(&w.base, out, field);
        break;
    }
    case SL_MSG_REJECTION: {
        const struct sl_record *r = &m->u.rec;
        Sluice__Rejection w = SLUICE__REJECTION__INIT;
        w.run_id = wire_str(m->run_id);
        w.job_id = wire_str(m->job_id);
        w.job_version = m->job_version;
        w.row = r->row;
        w.n_source = r->nsrc;
        w.n_problems = r->nprob;
        w.key = wire_str(r->key);
        if ((r->nsrc && !(w.source = encode_fields(&scratch, r->src, r->nsrc, &bad))) ||
            (r->nprob && !(w.problems = encode_problems(&scratch, r->prob, r->nprob, &bad)))) {
            rc = SL_ERR_NOMEM;
            goto done;
        }
        utf8_ok(r->key, "key", &bad);
        if (!bad)
            rc = pack(&w.base, out, field);
        break;
    }
    case SL_MSG_RUN_EVENT: {
        const struct sl_run_event *ev = &m->u.ev;
        const struct sl_counts *c = &ev->counts;
        char sha[65];
        Sluice__Counts wc = SLUICE__COUNTS__INIT;
        Sluice__RunEvent w = SLUICE__RUN_EVENT__INIT;
        if (ev->kind < SL_EV_FETCHED || ev->kind > SL_EV_FINAL) {
            sl_warn("codec", "cannot encode run event of run %s: unknown kind %d",
                    m->run_id ? m->run_id : "(none)", (int)ev->kind);
            rc = SL_ERR_INVALID;
            goto done;
        }
        copy_sha(sha, ev->sha256);
        wc.read = c->read;
        wc.published = c->published;
        wc.created = c->created;
        wc.updated = c->updated;
        wc.unchanged = c->unchanged;
        wc.rejected = c->rejected;
        wc.duplicates = c->duplicates;
        wc.not_created = c->not_created;
        wc.bytes = c->bytes;
        w.run_id = wire_str(m->run_id);
        w.job_id = wire_str(m->job_id);
        w.job_version = m->job_version;
        w.kind = (Sluice__RunEvent__Kind)ev->kind;
        w.stage = wire_str(ev->stage);
        w.record_count = ev->record_count;
        w.counts = &wc;
        w.status = wire_str(ev->status);
        w.reason = wire_str(ev->reason);
        w.sha256 = sha;
        w.bytes = ev->bytes;
        w.at = ev->at;
        w.source_name = wire_str(ev->source_name);
        w.n_columns = ev->ncolumns;
        w.columns = (char **)ev->columns;
        w.n_unmapped_columns = ev->nunmapped;
        w.unmapped_columns = (char **)ev->unmapped;
        char delim[2] = {ev->delimiter, '\0'};
        w.delimiter = delim;
        w.encoding = (char *)sl_encoding_name((enum sl_encoding)ev->encoding);
        utf8_ok(ev->stage, "stage", &bad);
        utf8_ok(ev->status, "status", &bad);
        utf8_ok(ev->reason, "reason", &bad);
        utf8_ok(sha, "sha256", &bad);
        utf8_ok(ev->source_name, "source_name", &bad);
        for (uint32_t i = 0; i < ev->ncolumns; i++) {
            if (!ev->columns[i]) {
                sl_warn("codec", "cannot encode run event of run %s: column %u is null",
                        m->run_id ? m->run_id : "(none)", (unsigned)i + 1);
                rc = SL_ERR_INVALID;
                goto done;
            }
            utf8_ok(ev->columns[i], "column name", &bad);
        }
        for (uint32_t i = 0; i < ev->nunmapped; i++) {
            if (!ev->unmapped[i]) {
                rc = SL_ERR_INVALID;
                goto done;
            }
            utf8_ok(ev->unmapped[i], "unmapped column name", &bad);
        }
        if (!bad)
            rc = pack(&w.base, out, field);
        break;
    }
    default:
        sl_warn("codec", "cannot encode message of unknown kind %d", (int)m->kind);
        rc = SL_ERR_INVALID;
        goto done;
    }
    if (bad) {
        /* The wire is proto3: other clients refuse a string that is not UTF-8,
         * so the producer hears about it rather than every consumer. */
        sl_warn("codec", "cannot encode %s of run %s: %s is not valid UTF-8",
                sl_msg_kind_str(m->kind), m->run_id ? m->run_id : "(none)", bad);
        rc = SL_ERR_INVALID;
    }
done:
    sl_arena_cleanup(&scratch);
    return rc;
}

/* ---- records and rejections, by hand ----
 *
 * Records and rejections are nearly all of the traffic (every row crosses
 * Kafka three times), and protobuf-c's descriptor-driven packing and
 * unpacking, with its strlen calls and allocations, was the largest CPU cost
 * of the mapper and the validator. So these two are written and read here
 * directly. The encoder writes exactly the bytes protobuf-c writes (fields in
 * number order, proto3 defaults omitted, the mapping rules above); the
 * decoder accepts and refuses exactly what protobuf-c 1.4 followed by
 * decode_record / decode_rejection does, with the same messages, and skips
 * unknown fields of every wire type but groups, so that fields added later
 * stay compatible. tests/unit/test_codec_fast.c and tests/fuzz/fuzz_codec.c
 * hold both paths to that. */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* What a field number of a Record or Rejection is. */
enum rec_role {
    R_UNKNOWN,
    R_RUN_ID,
    R_JOB_ID,
    R_JOB_VERSION,
    R_ROW,
    R_SOURCE,
    R_ATTRIBUTES,
    R_PROBLEMS,
    R_KEY,
    R_DUPLICATE,
    R_SRC_VALUES,
    R_SRC_MISSING,
    R_ATTR_VALUES,
    R_ATTR_MISSING,
};

/* The layout of a Record or a Rejection (proto/sluice.proto). */
struct rec_wire {
    const char *kind;                                     /* in messages */
    const char *pb_name;                                  /* sluice.<pb_name> */
    uint8_t source, attributes, problems, key, duplicate; /* field numbers, 0: none */
    uint8_t role[16];                                     /* enum rec_role by field number */
};

static const struct rec_wire record_wire = {
    .kind = "record",
    .pb_name = "Record",
    .source = 5,
    .attributes = 6,
    .problems = 7,
    .key = 8,
    .duplicate = 9,
    .role = {[1] = R_RUN_ID,
             [2] = R_JOB_ID,
             [3] = R_JOB_VERSION,
             [4] = R_ROW,
             [5] = R_SOURCE,
             [6] = R_ATTRIBUTES,
             [7] = R_PROBLEMS,
             [8] = R_KEY,
             [9] = R_DUPLICATE,
             [10] = R_SRC_VALUES,
             [11] = R_SRC_MISSING,
             [12] = R_ATTR_VALUES,
             [13] = R_ATTR_MISSING},
};

static const struct rec_wire rejection_wire = {
    .kind = "rejection",
    .pb_name = "Rejection",
    .source = 5,
    .problems = 6,
    .key = 7,
    .role = {[1] = R_RUN_ID,
             [2] = R_JOB_ID,
             [3] = R_JOB_VERSION,
             [4] = R_ROW,
             [5] = R_SOURCE,
             [6] = R_PROBLEMS,
             [7] = R_KEY},
};

static const struct rec_wire *rec_wire_of(enum sl_msg_kind kind)
{
    return kind == SL_MSG_RECORD ? &record_wire : &rejection_wire;
}

/* Whether s[0..n) is UTF-8: eight ASCII bytes at a time, sl_utf8_valid from
 * the first byte that is not ASCII (always the start of a character). */
static bool utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080u)
            break;
    }
    while (i < n && !(s[i] & 0x80))
        i++;
    return i == n || sl_utf8_valid(s + i, n - i);
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7)
        n++;
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7)
        *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* The bytes of a string field of n bytes: none when it is empty (proto3). */
static size_t str_size(size_t n)
{
    return n ? 1 + varint_size(n) + n : 0;
}

static uint8_t *put_str(uint8_t *p, unsigned field, const char *s, size_t n)
{
    if (!n)
        return p;
    *p++ = (uint8_t)(field << 3 | WT_LEN);
    p = put_varint(p, n);
    memcpy(p, s, n);
    return p + n;
}

/* The length of s (0 for NULL, which goes on the wire as ""); names s in
 * *bad when it is the first string that is not UTF-8. */
static size_t enc_len(const char *s, const char *what, const char **bad)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (!*bad && !utf8_valid(s, n))
        *bad = what;
    return n;
}

/* The size of a Field of name and value lengths l[0], l[1]: a NULL value is
 * missing = true, no value. */
static size_t field_size(const struct sl_field *f, const size_t *l)
{
    return str_size(l[0]) + (f->value ? str_size(l[1]) : 2);
}

static size_t problem_size(const struct sl_problem *p, const size_t *l)
{
    return str_size(l[0]) + str_size(l[1]) + str_size(l[2]) + str_size(l[3]) + (p->value ? 2 : 0);
}

/* The bytes of n fields as a repeated Field, their string lengths (name,
 * value) stored at *lp onwards. */
static size_t fields_size(const struct sl_field *f, uint32_t n, size_t **lp, const char **bad)
{
    size_t size = 0, *l = *lp;
    for (uint32_t i = 0; i < n; i++, l += 2) {
        l[0] = enc_len(f[i].name, "field name", bad);
        l[1] = enc_len(f[i].value, "field value", bad);
        size_t fs = field_size(&f[i], l);
        size += 1 + varint_size(fs) + fs;
    }
    *lp = l;
    return size;
}

static size_t problems_size(const struct sl_problem *p, uint32_t n, size_t **lp, const char **bad)
{
    size_t size = 0, *l = *lp;
    for (uint32_t i = 0; i < n; i++, l += 4) {
        l[0] = enc_len(p[i].attribute, "problem attribute", bad);
        l[1] = enc_len(p[i].code, "problem code", bad);
        l[2] = enc_len(p[i].message, "problem message", bad);
        l[3] = enc_len(p[i].value, "problem value", bad);
        size_t ps = problem_size(&p[i], l);
        size += 1 + varint_size(ps) + ps;
    }
    *lp = l;
    return size;
}

static uint8_t *put_fields(uint8_t *o, unsigned field, const struct sl_field *f, uint32_t n,
                           const size_t **lp)
{
    const size_t *l = *lp;
    for (uint32_t i = 0; i < n; i++, l += 2) {
        *o++ = (uint8_t)(field << 3 | WT_LEN);
        o = put_varint(o, field_size(&f[i], l));
        o = put_str(o, 1, f[i].name, l[0]);
        if (f[i].value) {
            o = put_str(o, 2, f[i].value, l[1]);
        } else {
            *o++ = 3 << 3 | WT_VARINT;
            *o++ = 1;
        }
    }
    *lp = l;
    return o;
}

static uint8_t *put_problems(uint8_t *o, unsigned field, const struct sl_problem *p, uint32_t n,
                             const size_t **lp)
{
    const size_t *l = *lp;
    for (uint32_t i = 0; i < n; i++, l += 4) {
        *o++ = (uint8_t)(field << 3 | WT_LEN);
        o = put_varint(o, problem_size(&p[i], l));
        o = put_str(o, 1, p[i].attribute, l[0]);
        o = put_str(o, 2, p[i].code, l[1]);
        o = put_str(o, 3, p[i].message, l[2]);
        o = put_str(o, 4, p[i].value, l[3]);
        if (p[i].value) {
            *o++ = 5 << 3 | WT_VARINT;
            *o++ = 1;
        }
    }
    *lp = l;
    return o;
}

/* The bytes of n fields as repeated values (the batch names them) and, when
 * some are missing, the packed indexes of those (*missing: their bytes);
 * the value lengths stored at (*lp)[1], [3], ... */
static size_t values_size(const struct sl_field *f, uint32_t n, size_t **lp, const char **bad,
                          size_t *missing)
{
    size_t size = 0, *l = *lp;
    *missing = 0;
    for (uint32_t i = 0; i < n; i++, l += 2) {
        l[0] = 0;
        l[1] = enc_len(f[i].value, "field value", bad);
        size += 1 + varint_size(l[1]) + l[1];
        if (!f[i].value)
            *missing += varint_size(i);
    }
    if (*missing)
        size += 1 + varint_size(*missing) + *missing;
    *lp = l;
    return size;
}

static uint8_t *put_values(uint8_t *o, unsigned vfield, const struct sl_field *f, uint32_t n,
                           const size_t **lp, size_t missing)
{
    const size_t *l = *lp;
    for (uint32_t i = 0; i < n; i++, l += 2) {
        *o++ = (uint8_t)(vfield << 3 | WT_LEN);
        o = put_varint(o, l[1]);
        if (l[1])
            memcpy(o, f[i].value, l[1]);
        o += l[1];
    }
    if (missing) {
        *o++ = (uint8_t)((vfield + 1) << 3 | WT_LEN);
        o = put_varint(o, missing);
        for (uint32_t i = 0; i < n; i++)
            if (!f[i].value)
                o = put_varint(o, i);
    }
    *lp = l;
    return o;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* Whether f[0..n) are named g[0..gn) (n > 0): pointers first, they are
 * mostly the same strings (a file's header, a job's attributes). */
static bool same_names(const struct sl_field *f, uint32_t n, const struct sl_field *g, uint32_t gn)
{
    if (!n || n != gn)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!same_str(f[i].name, g[i].name) || !f[i].name)
            return false;
    return true;
}

static struct share share_of(const struct sl_batch_enc *be, const struct sl_msg *m)
{
    struct share sh = {false, false, false};
    const struct sl_msg *f = be ? be->first : NULL;
    if (!f || m->kind != SL_MSG_RECORD)
        return sh;
    sh.ids = f->run_id && f->run_id[0] && same_str(m->run_id, f->run_id) &&
             same_str(m->job_id, f->job_id) && m->job_version == f->job_version;
    sh.src = same_names(m->u.rec.src, m->u.rec.nsrc, f->u.rec.src, f->u.rec.nsrc);
    sh.attr = same_names(m->u.rec.attr, m->u.rec.nattr, f->u.rec.attr, f->u.rec.nattr);
    return sh;
}

/* Strings whose lengths fit on the stack (a row of 128 fields); longer rows
 * take one malloc. */
#define LENS_STACK 256

/* encode_pb for a record or a rejection, in two passes: the lengths of every
 * string (strlen and the UTF-8 check, once), hence the exact size, then the
 * bytes straight into out. sh: what its batch carries for it. */
static int encode_record(const struct sl_msg *m, struct sl_buf *out, unsigned field,
                         struct share sh)
{
    const struct sl_record *r = &m->u.rec;
    const struct rec_wire *w = rec_wire_of(m->kind);
    uint32_t nattr = w->attributes ? r->nattr : 0;
    size_t nlens = 2 * ((size_t)r->nsrc + nattr) + 4 * (size_t)r->nprob;
    size_t stack_lens[LENS_STACK];
    size_t *lens = nlens <= LENS_STACK ? stack_lens : malloc(nlens * sizeof(*lens));
    const char *bad = NULL;
    int rc = 0;

    if (!lens)
        return SL_ERR_NOMEM;
    size_t *l = lens;
    size_t nrun = sh.ids ? 0 : enc_len(m->run_id, "run_id", &bad);
    size_t njob = sh.ids ? 0 : enc_len(m->job_id, "job_id", &bad);
    size_t size = str_size(nrun) + str_size(njob), smiss = 0, amiss = 0;
    if (m->job_version && !sh.ids)
        size += 1 + varint_size(m->job_version);
    if (r->row)
        size += 1 + varint_size(r->row);
    size += sh.src ? values_size(r->src, r->nsrc, &l, &bad, &smiss)
                   : fields_size(r->src, r->nsrc, &l, &bad);
    size += sh.attr ? values_size(r->attr, nattr, &l, &bad, &amiss)
                    : fields_size(r->attr, nattr, &l, &bad);
    size += problems_size(r->prob, r->nprob, &l, &bad);
    size_t nkey = enc_len(r->key, "key", &bad);
    size += str_size(nkey);
    bool dup = w->duplicate && r->duplicate;
    if (dup)
        size += 2;
    if (bad) {
        /* as encode_pb */
        sl_warn("codec", "cannot encode %s of run %s: %s is not valid UTF-8",
                sl_msg_kind_str(m->kind), m->run_id ? m->run_id : "(none)", bad);
        rc = SL_ERR_INVALID;
        goto done;
    }
    /* 16: the entry's tag and length (at most 11 bytes) and the NUL */
    if (sl_buf_reserve(out, size + 16)) {
        rc = SL_ERR_NOMEM;
        goto done;
    }
    uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
    if (field) {
        *o++ = (uint8_t)(field << 3 | WT_LEN);
        o = put_varint(o, size);
    }
    o = put_str(o, 1, m->run_id, nrun);
    o = put_str(o, 2, m->job_id, njob);
    if (m->job_version && !sh.ids) {
        *o++ = 3 << 3 | WT_VARINT;
        o = put_varint(o, m->job_version);
    }
    if (r->row) {
        *o++ = 4 << 3 | WT_VARINT;
        o = put_varint(o, r->row);
    }
    /* fields in number order, as protobuf-c writes them */
    const size_t *cl = lens, *sl = lens, *al;
    if (!sh.src)
        o = put_fields(o, w->source, r->src, r->nsrc, &cl);
    else
        cl += 2 * (size_t)r->nsrc;
    al = cl;
    if (!sh.attr)
        o = put_fields(o, w->attributes, r->attr, nattr, &cl);
    else
        cl += 2 * (size_t)nattr;
    o = put_problems(o, w->problems, r->prob, r->nprob, &cl);
    o = put_str(o, w->key, r->key, nkey);
    if (dup) {
        *o++ = (uint8_t)(w->duplicate << 3 | WT_VARINT);
        *o++ = 1;
    }
    if (sh.src)
        o = put_values(o, 10, r->src, r->nsrc, &sl, smiss);
    if (sh.attr)
        o = put_values(o, 12, r->attr, nattr, &al, amiss);
    out->len += (size_t)(o - start);
    out->data[out->len] = '\0';
done:
    if (lens != stack_lens)
        free(lens);
    return rc;
}

/* sl_codec_encode, or as field `field` of an enclosing message (> 0). */
static int encode(const struct sl_msg *m, struct sl_buf *out, unsigned field)
{
    static const struct share none = {false, false, false};
    if (m->kind == SL_MSG_RECORD || m->kind == SL_MSG_REJECTION)
        return encode_record(m, out, field, none);
    return encode_pb(m, out, field);
}

int sl_codec_encode_reference(const struct sl_msg *m, struct sl_buf *out, unsigned field)
{
    return encode_pb(m, out, field);
}

int sl_codec_encode(const struct sl_msg *m, struct sl_buf *out)
{
    return encode(m, out, 0);
}

/* The fields of a RecordBatch that say what its records share, from its
 * first record m (see sl_batch_enc), appended to out: 0 or SL_ERR_INVALID
 * (a string that is not UTF-8, logged) or SL_ERR_NOMEM. */
static int batch_header(const struct sl_msg *m, struct sl_buf *out)
{
    const struct sl_record *r = &m->u.rec;
    const char *bad = NULL;
    size_t nrun = enc_len(m->run_id, "run_id", &bad), njob = enc_len(m->job_id, "job_id", &bad);
    size_t size = str_size(nrun) + str_size(njob);
    if (m->job_version)
        size += 1 + varint_size(m->job_version);
    for (uint32_t i = 0; i < r->nsrc; i++) {
        size_t n = enc_len(r->src[i].name, "field name", &bad);
        size += 1 + varint_size(n) + n;
    }
    for (uint32_t i = 0; i < r->nattr; i++) {
        size_t n = enc_len(r->attr[i].name, "field name", &bad);
        size += 1 + varint_size(n) + n;
    }
    if (bad) {
        sl_warn("codec", "cannot encode record of run %s: %s is not valid UTF-8",
                m->run_id ? m->run_id : "(none)", bad);
        return SL_ERR_INVALID;
    }
    if (sl_buf_reserve(out, size + 1))
        return SL_ERR_NOMEM;
    uint8_t *start = (uint8_t *)out->data + out->len, *o = start;
    o = put_str(o, 2, m->run_id, nrun);
    o = put_str(o, 3, m->job_id, njob);
    if (m->job_version) {
        *o++ = 4 << 3 | WT_VARINT;
        o = put_varint(o, m->job_version);
    }
    for (int k = 0; k < 2; k++) {
        const struct sl_field *f = k ? r->attr : r->src;
        uint32_t n = k ? r->nattr : r->nsrc;
        for (uint32_t i = 0; i < n; i++) {
            size_t l = f[i].name ? strlen(f[i].name) : 0;
            *o++ = (uint8_t)((5 + k) << 3 | WT_LEN);
            o = put_varint(o, l);
            if (l)
                memcpy(o, f[i].name, l);
            o += l;
        }
    }
    out->len += (size_t)(o - start);
    out->data[out->len] = '\0';
    return 0;
}

/* sl_codec_batch_add with the entry written by add (hand or protobuf-c) and
 * the header by header. */
static int batch_add_with(struct sl_batch_enc *be, const struct sl_msg *m, struct sl_buf *batch,
                          int (*header)(const struct sl_msg *, struct sl_buf *),
                          int (*add)(const struct sl_msg *, struct sl_buf *, struct share))
{
    if (m->kind != SL_MSG_RECORD && m->kind != SL_MSG_REJECTION) {
        sl_warn("codec", "cannot batch a %s message", sl_msg_kind_str(m->kind));
        return SL_ERR_INVALID;
    }
    if (be && m->kind == SL_MSG_RECORD &&
        (!m->run_id || !m->run_id[0] || !m->job_id || !m->job_id[0])) {
        /* in a batch, a record without a run id would take the batch's */
        sl_warn("codec", "cannot encode record: it has no %s",
                !m->run_id || !m->run_id[0] ? "run_id" : "job_id");
        return SL_ERR_INVALID;
    }
    size_t start = batch->len;
    bool first = be && !be->first && m->kind == SL_MSG_RECORD;
    if (first) {
        int rc = header(m, batch);
        if (rc)
            return rc;
        be->first = sl_msg_ref((struct sl_msg *)m); /* only read */
    }
    int rc = add(m, batch, share_of(be, m)); /* RecordBatch.records, RejectionBatch.rejections */
    if (rc && first) {
        batch->len = start;
        if (batch->data)
            batch->data[start] = '\0';
        sl_codec_batch_enc_reset(be);
    }
    return rc;
}

static int add_hand(const struct sl_msg *m, struct sl_buf *batch, struct share sh)
{
    return encode_record(m, batch, 1, sh);
}

static int add_pb(const struct sl_msg *m, struct sl_buf *batch, struct share sh)
{
    return encode_pb_shared(m, batch, 1, sh);
}

/* batch_header through protobuf-c: a RecordBatch of no records. */
static int batch_header_pb(const struct sl_msg *m, struct sl_buf *out)
{
    const struct sl_record *r = &m->u.rec;
    const char *bad = NULL;
    Sluice__RecordBatch w = SLUICE__RECORD_BATCH__INIT;
    char *none[1];
    char **src = r->nsrc ? malloc(r->nsrc * sizeof(*src)) : none;
    char **attr = r->nattr ? malloc(r->nattr * sizeof(*attr)) : none;
    int rc = 0;
    if (!src || !attr) {
        rc = SL_ERR_NOMEM;
        goto done;
    }
    w.run_id = wire_str(m->run_id);
    w.job_id = wire_str(m->job_id);
    w.job_version = m->job_version;
    utf8_ok(m->run_id, "run_id", &bad);
    utf8_ok(m->job_id, "job_id", &bad);
    for (uint32_t i = 0; i < r->nsrc; i++) {
        src[i] = wire_str(r->src[i].name);
        utf8_ok(r->src[i].name, "field name", &bad);
    }
    for (uint32_t i = 0; i < r->nattr; i++) {
        attr[i] = wire_str(r->attr[i].name);
        utf8_ok(r->attr[i].name, "field name", &bad);
    }
    w.n_source_names = r->nsrc;
    w.source_names = src;
    w.n_attribute_names = r->nattr;
    w.attribute_names = attr;
    if (bad) {
        sl_warn("codec", "cannot encode record of run %s: %s is not valid UTF-8",
                m->run_id ? m->run_id : "(none)", bad);
        rc = SL_ERR_INVALID;
    } else {
        rc = pack(&w.base, out, 0);
    }
done:
    if (src && src != none)
        free(src);
    if (attr && attr != none)
        free(attr);
    return rc;
}

int sl_codec_batch_add_reference(struct sl_batch_enc *be, const struct sl_msg *m,
                                 struct sl_buf *batch)
{
    return batch_add_with(be, m, batch, batch_header_pb, add_pb);
}

int sl_codec_batch_add(struct sl_batch_enc *be, const struct sl_msg *m, struct sl_buf *batch)
{
    return batch_add_with(be, m, batch, batch_header, add_hand);
}

void sl_codec_batch_enc_reset(struct sl_batch_enc *be)
{
    if (!be)
        return;
    sl_msg_unref(be->first);
    be->first = NULL;
}

/* ---- decoding ---- */

static void *arena_pb_alloc(void *data, size_t size)
{
    return sl_arena_alloc(data, size);
}

static void arena_pb_free(void *data, void *p)
{
    /* Freed with the message's arena. */
}

/* NULL for the empty string: optional strings travel as "". */
static const char *opt_str(const char *s)
{
    return s && s[0] ? s : NULL;
}

/* Checks that s (never NULL from protobuf-c) is UTF-8; sets errbuf. */
static bool check_utf8(const char *s, const char *what, const char *kind, char *errbuf,
                       size_t errsz)
{
    if (sl_utf8_valid(s, strlen(s)))
        return true;
    sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: %s is not valid UTF-8", kind, what);
    return false;
}

static bool decode_sha(char dst[65], const char *src, const char *kind, char *errbuf, size_t errsz)
{
    size_t n = strlen(src);
    if (n > 64 || strspn(src, "0123456789abcdefABCDEF") != n) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                  "cannot decode %s: sha256 is not a hex SHA-256 (%zu characters)", kind, n);
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

/* Fills the message's run and job ids from the record's; a ticket may come
 * without a run id (the fetcher assigns one), every other kind needs both. */
static bool decode_ids(struct sl_msg *m, const char *run_id, const char *job_id,
                       uint32_t job_version, const char *kind, char *errbuf, size_t errsz)
{
    if (!check_utf8(run_id, "run_id", kind, errbuf, errsz) ||
        !check_utf8(job_id, "job_id", kind, errbuf, errsz))
        return false;
    if (!job_id[0] || (!run_id[0] && m->kind != SL_MSG_TICKET)) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: it has no %s", kind,
                  job_id[0] ? "run_id" : "job_id");
        return false;
    }
    m->run_id = opt_str(run_id);
    m->job_id = job_id;
    m->job_version = job_version;
    return true;
}

static bool decode_fields(struct sl_msg *m, Sluice__Field **pf, size_t n, struct sl_field **out,
                          uint32_t *nout, uint32_t *cout, const char *kind, char *errbuf,
                          size_t errsz)
{
    if (!n)
        return true;
    if (n > UINT32_MAX) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: too many fields", kind);
        return false;
    }
    struct sl_field *f = sl_arena_alloc(&m->arena, n * sizeof(*f));
    if (!f) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode %s: out of memory", kind);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!check_utf8(pf[i]->name, "a field name", kind, errbuf, errsz) ||
            !check_utf8(pf[i]->value, "a field value", kind, errbuf, errsz))
            return false;
        f[i].name = pf[i]->name;
        f[i].value = pf[i]->missing ? NULL : pf[i]->value;
    }
    *out = f;
    *nout = *cout = (uint32_t)n;
    return true;
}

static bool decode_problems(struct sl_msg *m, Sluice__Problem **pp, size_t n, const char *kind,
                            char *errbuf, size_t errsz)
{
    struct sl_record *r = &m->u.rec;
    if (!n)
        return true;
    if (n > UINT32_MAX) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: too many problems", kind);
        return false;
    }
    struct sl_problem *p = sl_arena_alloc(&m->arena, n * sizeof(*p));
    if (!p) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode %s: out of memory", kind);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const Sluice__Problem *w = pp[i];
        if (!check_utf8(w->attribute, "a problem attribute", kind, errbuf, errsz) ||
            !check_utf8(w->code, "a problem code", kind, errbuf, errsz) ||
            !check_utf8(w->message, "a problem message", kind, errbuf, errsz) ||
            !check_utf8(w->value, "a problem value", kind, errbuf, errsz))
            return false;
        p[i].attribute = w->attribute[0] ? w->attribute : "_row";
        p[i].code = w->code;
        p[i].message = w->message;
        p[i].value = w->has_value ? w->value : NULL;
    }
    r->prob = p;
    r->nprob = r->cprob = (uint32_t)n;
    return true;
}

static bool decode_ticket(struct sl_msg *m, const Sluice__JobTicket *w, char *errbuf, size_t errsz)
{
    struct sl_ticket *t = &m->u.ticket;
    if (!decode_ids(m, w->run_id, w->job_id, w->job_version, "ticket", errbuf, errsz) ||
        !check_utf8(w->ticket_id, "ticket_id", "ticket", errbuf, errsz) ||
        !check_utf8(w->trigger, "trigger", "ticket", errbuf, errsz) ||
        !check_utf8(w->input, "input", "ticket", errbuf, errsz))
        return false;
    t->ticket_id = w->ticket_id;
    t->trigger = w->trigger;
    t->force = w->force != 0;
    t->scheduled_at = w->scheduled_at;
    t->input = opt_str(w->input);
    return true;
}

static bool decode_file(struct sl_msg *m, const Sluice__FileFetched *w, char *errbuf, size_t errsz)
{
    struct sl_file *f = &m->u.file;
    if (!decode_ids(m, w->run_id, w->job_id, w->job_version, "file", errbuf, errsz) ||
        !check_utf8(w->blob, "blob", "file", errbuf, errsz) ||
        !check_utf8(w->content_type, "content_type", "file", errbuf, errsz) ||
        !check_utf8(w->file_name, "file_name", "file", errbuf, errsz) ||
        !decode_sha(f->sha256, w->sha256, "file", errbuf, errsz))
        return false;
    f->blob = w->blob;
    f->bytes = w->bytes;
    f->content_type = opt_str(w->content_type);
    f->file_name = opt_str(w->file_name);
    f->fetched_at = w->fetched_at;
    return true;
}

/* The shape rules of a record's values against its batch (both decoders):
 * NULL, or what is wrong. has_fields: it has source (attributes) Field
 * entries; nvalues, nmissing: its *_values and *_missing entries; named: the
 * names the batch gives; bad_index: the first missing index out of range,
 * + 1. */
static const char *values_shape(bool has_fields, size_t nvalues, size_t nmissing, size_t named,
                                bool batch, uint64_t bad_index, const char *which, char *why,
                                size_t whysz)
{
    if (!nvalues && !nmissing)
        return NULL;
    if (has_fields)
        snprintf(why, whysz, "it has both %s and %s_values", which, which);
    else if (!batch)
        snprintf(why, whysz, "it has %s_values outside a batch that names them", which);
    else if (nvalues != named)
        snprintf(why, whysz, "it has %zu %s_values, its batch names %zu", nvalues, which, named);
    else if (bad_index)
        snprintf(why, whysz, "%s_missing names value %llu of %zu", which,
                 (unsigned long long)(bad_index - 1), nvalues);
    else
        return NULL;
    return why;
}

/* The first index of missing[0..n) that is not below nvalues, + 1; 0: none. */
static uint64_t first_bad_index(const uint32_t *missing, size_t n, size_t nvalues)
{
    for (size_t i = 0; i < n; i++)
        if (missing[i] >= nvalues)
            return (uint64_t)missing[i] + 1;
    return 0;
}

/* Fields named names[0..n) with values[0..n), missing[0..nmissing) NULL. */
static bool decode_values(struct sl_msg *m, char **values, size_t n, const char *const *names,
                          const uint32_t *missing, size_t nmissing, struct sl_field **out,
                          uint32_t *nout, uint32_t *cout, char *errbuf, size_t errsz)
{
    if (!n)
        return true;
    struct sl_field *f = sl_arena_alloc(&m->arena, n * sizeof(*f));
    if (!f) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode record: out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!check_utf8(values[i], "a field value", "record", errbuf, errsz))
            return false;
        f[i].name = names[i];
        f[i].value = values[i];
    }
    for (size_t i = 0; i < nmissing; i++)
        f[missing[i]].value = NULL;
    *out = f;
    *nout = *cout = (uint32_t)n;
    return true;
}

static bool decode_record(struct sl_msg *m, const Sluice__Record *w, const struct sl_batch_dec *bd,
                          char *errbuf, size_t errsz)
{
    struct sl_record *r = &m->u.rec;
    char why[120];
    const char *shape = values_shape(
        w->n_source > 0, w->n_source_values, w->n_source_missing, bd ? bd->nsrc : 0, bd != NULL,
        first_bad_index(w->source_missing, w->n_source_missing, w->n_source_values), "source", why,
        sizeof(why));
    if (!shape)
        shape = values_shape(
            w->n_attributes > 0, w->n_attribute_values, w->n_attribute_missing, bd ? bd->nattr : 0,
            bd != NULL,
            first_bad_index(w->attribute_missing, w->n_attribute_missing, w->n_attribute_values),
            "attribute", why, sizeof(why));
    if (shape) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode record: %s", shape);
        return false;
    }
    const char *run = w->run_id, *job = w->job_id;
    uint32_t version = w->job_version;
    if (bd && bd->run_id && bd->run_id[0] && !run[0]) {
        if (!(run = sl_arena_strdup(&m->arena, bd->run_id)) ||
            !(job = sl_arena_strdup(&m->arena, bd->job_id))) {
            sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode record: out of memory");
            return false;
        }
        version = bd->job_version;
    }
    const char *const *names = bd && bd->names ? bd->names->names : NULL;
    if (!decode_ids(m, run, job, version, "record", errbuf, errsz) ||
        !check_utf8(w->key, "key", "record", errbuf, errsz) ||
        (w->n_source_values
             ? !decode_values(m, w->source_values, w->n_source_values, names, w->source_missing,
                              w->n_source_missing, &r->src, &r->nsrc, &r->csrc, errbuf, errsz)
             : !decode_fields(m, w->source, w->n_source, &r->src, &r->nsrc, &r->csrc, "record",
                              errbuf, errsz)) ||
        (w->n_attribute_values
             ? !decode_values(m, w->attribute_values, w->n_attribute_values,
                              names ? names + bd->nsrc : NULL, w->attribute_missing,
                              w->n_attribute_missing, &r->attr, &r->nattr, &r->cattr, errbuf, errsz)
             : !decode_fields(m, w->attributes, w->n_attributes, &r->attr, &r->nattr, &r->cattr,
                              "record", errbuf, errsz)) ||
        !decode_problems(m, w->problems, w->n_problems, "record", errbuf, errsz))
        return false;
    if ((w->n_source_values || w->n_attribute_values) && bd->names)
        m->wire_names = sl_names_ref(bd->names);
    r->row = w->row;
    r->key = opt_str(w->key);
    r->duplicate = w->duplicate;
    return true;
}

static bool decode_rejection(struct sl_msg *m, const Sluice__Rejection *w, char *errbuf,
                             size_t errsz)
{
    struct sl_record *r = &m->u.rec;
    if (!decode_ids(m, w->run_id, w->job_id, w->job_version, "rejection", errbuf, errsz) ||
        !check_utf8(w->key, "key", "rejection", errbuf, errsz) ||
        !decode_fields(m, w->source, w->n_source, &r->src, &r->nsrc, &r->csrc, "rejection", errbuf,
                       errsz) ||
        !decode_problems(m, w->problems, w->n_problems, "rejection", errbuf, errsz))
        return false;
    r->row = w->row;
    r->key = opt_str(w->key);
    return true;
}

static bool decode_run_event(struct sl_msg *m, const Sluice__RunEvent *w, char *errbuf,
                             size_t errsz)
{
    struct sl_run_event *ev = &m->u.ev;
    const char *k = "run event";
    if (!decode_ids(m, w->run_id, w->job_id, w->job_version, k, errbuf, errsz) ||
        !check_utf8(w->stage, "stage", k, errbuf, errsz) ||
        !check_utf8(w->status, "status", k, errbuf, errsz) ||
        !check_utf8(w->reason, "reason", k, errbuf, errsz) ||
        !check_utf8(w->source_name, "source_name", k, errbuf, errsz) ||
        !decode_sha(ev->sha256, w->sha256, k, errbuf, errsz))
        return false;
    if ((int)w->kind < SL_EV_FETCHED || (int)w->kind > SL_EV_FINAL) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode run event: unknown kind %d",
                  (int)w->kind);
        return false;
    }
    if (w->n_columns > UINT32_MAX || w->n_unmapped_columns > UINT32_MAX) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode run event: too many columns");
        return false;
    }
    for (size_t i = 0; i < w->n_columns; i++)
        if (!check_utf8(w->columns[i], "a column name", k, errbuf, errsz))
            return false;
    for (size_t i = 0; i < w->n_unmapped_columns; i++)
        if (!check_utf8(w->unmapped_columns[i], "an unmapped column name", k, errbuf, errsz))
            return false;
    ev->kind = (enum sl_run_event_kind)w->kind;
    ev->stage = opt_str(w->stage);
    ev->record_count = w->record_count;
    if (w->counts) {
        const Sluice__Counts *c = w->counts;
        ev->counts = (struct sl_counts){
            .read = c->read,
            .published = c->published,
            .created = c->created,
            .updated = c->updated,
            .unchanged = c->unchanged,
            .rejected = c->rejected,
            .duplicates = c->duplicates,
            .not_created = c->not_created,
            .bytes = c->bytes,
        };
    }
    ev->status = opt_str(w->status);
    ev->reason = opt_str(w->reason);
    ev->bytes = w->bytes;
    ev->at = w->at;
    ev->source_name = opt_str(w->source_name);
    ev->columns = w->n_columns ? (const char **)w->columns : NULL;
    ev->ncolumns = (uint32_t)w->n_columns;
    ev->unmapped = w->n_unmapped_columns ? (const char **)w->unmapped_columns : NULL;
    ev->nunmapped = (uint32_t)w->n_unmapped_columns;
    ev->delimiter = w->delimiter && strlen(w->delimiter) == 1 ? w->delimiter[0] : 0;
    enum sl_encoding enc = SL_ENC_UTF8;
    if (w->encoding && w->encoding[0] && sl_encoding_parse(w->encoding, &enc) == 0)
        ev->encoding = (int)enc;
    return true;
}

/* sl_codec_decode through protobuf-c: every kind but records and rejections,
 * which decode_record_wire reads by hand (this path stays as their reference,
 * for the tests). */
static struct sl_msg *decode_pb(enum sl_msg_kind kind, const void *data, size_t len,
                                const struct sl_batch_dec *bd, char *errbuf, size_t errsz)
{
    static const struct {
        const ProtobufCMessageDescriptor *desc;
        const char *name;
    } kinds[] = {
        [SL_MSG_TICKET] = {&sluice__job_ticket__descriptor, "ticket"},
        [SL_MSG_FILE] = {&sluice__file_fetched__descriptor, "file"},
        [SL_MSG_RECORD] = {&sluice__record__descriptor, "record"},
        [SL_MSG_REJECTION] = {&sluice__rejection__descriptor, "rejection"},
        [SL_MSG_RUN_EVENT] = {&sluice__run_event__descriptor, "run event"},
    };
    if ((int)kind < SL_MSG_TICKET || (int)kind > SL_MSG_RUN_EVENT) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "cannot decode message of unknown kind %d",
                  (int)kind);
        return NULL;
    }
    if (!data && len) {
        sl_seterr(errbuf, errsz, SL_ERR_INVALID, "cannot decode %s: no data", kinds[kind].name);
        return NULL;
    }
    struct sl_msg *m = sl_msg_new(kind, NULL, NULL, 0);
    if (!m) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode %s: out of memory", kinds[kind].name);
        return NULL;
    }
    ProtobufCAllocator alloc = {arena_pb_alloc, arena_pb_free, &m->arena};
    ProtobufCMessage *pm =
        protobuf_c_message_unpack(kinds[kind].desc, &alloc, len, len ? data : (const void *)"");
    if (!pm) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                  "cannot decode %s: %zu bytes are not a valid sluice.%s protobuf",
                  kinds[kind].name, len, kinds[kind].desc->short_name);
        goto fail;
    }
    bool ok = false;
    switch (kind) {
    case SL_MSG_TICKET:
        ok = decode_ticket(m, (const Sluice__JobTicket *)pm, errbuf, errsz);
        break;
    case SL_MSG_FILE:
        ok = decode_file(m, (const Sluice__FileFetched *)pm, errbuf, errsz);
        break;
    case SL_MSG_RECORD:
        ok = decode_record(m, (const Sluice__Record *)pm, bd, errbuf, errsz);
        break;
    case SL_MSG_REJECTION:
        ok = decode_rejection(m, (const Sluice__Rejection *)pm, errbuf, errsz);
        break;
    case SL_MSG_RUN_EVENT:
        ok = decode_run_event(m, (const Sluice__RunEvent *)pm, errbuf, errsz);
        break;
    }
    if (!ok)
        goto fail;
    return m;
fail:
    sl_msg_unref(m);
    return NULL;
}

/* Bytes of the input; n may be 0. */
struct slice {
    const uint8_t *p;
    size_t n;
};

/* One field of a message being read: its number, wire type, and its bytes
 * as protobuf-c scans them (v[0..n), for WT_LEN the length prefix of hdr
 * bytes included). */
struct wire_item {
    uint32_t tag;
    unsigned wt;
    const uint8_t *v;
    size_t n, hdr;
};

static uint64_t varint_value(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) /* n <= 10: bits past 64 drop, as protobuf-c */
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    return v;
}

/* protobuf-c reads a bool of any wire type: true when any of its bytes
 * (for WT_LEN, the length prefix too) has a low bit set. */
static bool wire_bool(const struct wire_item *it)
{
    for (size_t i = 0; i < it->n; i++)
        if (it->v[i] & 0x7f)
            return true;
    return false;
}

static struct slice wire_payload(const struct wire_item *it)
{
    return (struct slice){it->v + it->hdr, it->n - it->hdr};
}

/* The field of p[*at..len) (*at < len) into *it, *at past it; false when the
 * bytes are not a field as protobuf-c reads them: a tag of more than 5 bytes
 * or of field number 0 in one byte, a varint of more than 10 bytes, a length
 * of more than 5 bytes or past the end, a value cut short, a group (wire
 * types 3 and 4) or wire type 6 or 7. */
static bool next_item_any(const uint8_t *p, size_t len, size_t *at, struct wire_item *it)
{
    size_t i = *at, rem = len - i;
    uint8_t b = p[i];
    it->wt = b & 7;
    if (!(b & 0x80)) {
        it->tag = b >> 3;
        if (!it->tag)
            return false;
        i++;
    } else {
        /* protobuf-c takes a longer tag of number 0 for an unknown field */
        uint32_t tag = (b & 0x7f) >> 3;
        size_t max = rem < 5 ? rem : 5, k = 1;
        for (unsigned shift = 4; k < max; k++, shift += 7) {
            tag |= (uint32_t)(p[i + k] & 0x7f) << shift;
            if (!(p[i + k] & 0x80))
                break;
        }
        if (k >= max)
            return false;
        it->tag = tag;
        i += k + 1;
    }
    rem = len - i;
    it->v = p + i;
    it->hdr = 0;
    switch (it->wt) {
    case WT_VARINT: {
        size_t max = rem < 10 ? rem : 10, k = 0;
        while (k < max && (p[i + k] & 0x80))
            k++;
        if (k >= max)
            return false;
        it->n = k + 1;
        break;
    }
    case WT_I64:
    case WT_I32:
        it->n = it->wt == WT_I64 ? 8 : 4;
        if (rem < it->n)
            return false;
        break;
    case WT_LEN: {
        size_t max = rem < 5 ? rem : 5, k = 0;
        uint64_t v = 0;
        for (; k < max; k++) {
            v |= (uint64_t)(p[i + k] & 0x7f) << (7 * k);
            if (!(p[i + k] & 0x80))
                break;
        }
        if (k >= max || v > INT_MAX || v > rem - (k + 1))
            return false;
        it->hdr = k + 1;
        it->n = k + 1 + (size_t)v;
        break;
    }
    default:
        return false;
    }
    *at = i + it->n;
    return true;
}

/* next_item_any, inline for what nearly every field is: a tag of one byte
 * and a length (under 128) or a varint of one byte. */
static inline bool next_item(const uint8_t *p, size_t len, size_t *at, struct wire_item *it)
{
    size_t i = *at;
    if (len - i >= 2 && p[i] >= 8 && p[i] < 0x80 && p[i + 1] < 0x80) {
        unsigned wt = p[i] & 7;
        size_t n = wt == WT_LEN ? 1 + (size_t)p[i + 1] : 1;
        if ((wt == WT_LEN || wt == WT_VARINT) && n <= len - i - 1) {
            it->tag = p[i] >> 3;
            it->wt = wt;
            it->v = p + i + 1;
            it->n = n;
            it->hdr = wt == WT_LEN;
            *at = i + 1 + n;
            return true;
        }
    }
    return next_item_any(p, len, at, it);
}

/* Whether the C string the bytes make (up to a NUL, as decode_pb sees them)
 * is UTF-8. */
static bool utf8_cstr(struct slice s)
{
    if (utf8_valid((const char *)s.p, s.n))
        return true;
    const uint8_t *z = memchr(s.p, 0, s.n);
    return z && utf8_valid((const char *)s.p, (size_t)(z - s.p));
}

/* Whether the C string the bytes make is "". */
static bool cstr_empty(struct slice s)
{
    return !s.n || !s.p[0];
}

/* Where a decoded message's strings go: one arena block of len + 1 bytes for
 * an input of len. That is enough: each non-empty string of n bytes takes
 * n + 1 here and at least n + 2 of the input (tag, length, bytes), and the
 * strings kept are in disjoint parts of the input (the last of a repeated
 * field only). Empty strings are the constant "". */
struct str_space {
    char *p, *end;
};

/* A NUL-terminated copy of s; NULL only if the space were too small, which
 * the sizing above rules out. */
static const char *take_str(struct str_space *sp, struct slice s)
{
    if (!s.n)
        return "";
    if ((size_t)(sp->end - sp->p) <= s.n)
        return NULL;
    char *d = sp->p;
    memcpy(d, s.p, s.n);
    d[s.n] = '\0';
    sp->p += s.n + 1;
    return d;
}

/* take_str and utf8_cstr in one pass: the copy, eight bytes at a time,
 * notes any byte that is not ASCII, and only a string with one is checked by
 * utf8_cstr. *utf8: whether the string is UTF-8. */
static const char *take_str_utf8(struct str_space *sp, struct slice s, bool *utf8)
{
    *utf8 = true;
    if (!s.n)
        return "";
    if ((size_t)(sp->end - sp->p) <= s.n)
        return NULL;
    char *d = sp->p;
    uint64_t bits = 0;
    size_t i = 0;
    for (; s.n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s.p + i, 8);
        memcpy(d + i, &w, 8);
        bits |= w;
    }
    for (; i < s.n; i++) {
        d[i] = (char)s.p[i];
        bits |= s.p[i];
    }
    d[s.n] = '\0';
    sp->p += s.n + 1;
    if (bits & 0x8080808080808080u)
        *utf8 = utf8_cstr(s);
    return d;
}

static const uint8_t no_bytes[1];

struct wire_field {
    struct slice name, value;
    bool missing;
};

/* A Field message in; false when it is not one. Plain locals, not slices
 * stored and reloaded whole: that costs a store-forwarding stall a field. */
static bool read_field(struct slice in, struct wire_field *f)
{
    const uint8_t *np = no_bytes, *vp = no_bytes;
    size_t nn = 0, vn = 0;
    bool missing = false;
    for (size_t at = 0; at < in.n;) {
        struct wire_item it;
        if (!next_item(in.p, in.n, &at, &it))
            return false;
        if (it.tag == 1 || it.tag == 2) {
            if (it.wt != WT_LEN)
                return false;
            if (it.tag == 1) {
                np = it.v + it.hdr;
                nn = it.n - it.hdr;
            } else {
                vp = it.v + it.hdr;
                vn = it.n - it.hdr;
            }
        } else if (it.tag == 3) {
            missing = wire_bool(&it);
        }
    }
    f->name.p = np;
    f->name.n = nn;
    f->value.p = vp;
    f->value.n = vn;
    f->missing = missing;
    return true;
}

struct wire_problem {
    struct slice s[4]; /* attribute, code, message, value */
    bool has_value;
};

static bool read_problem(struct slice in, struct wire_problem *pr)
{
    const uint8_t *sp[4] = {no_bytes, no_bytes, no_bytes, no_bytes};
    size_t sn[4] = {0, 0, 0, 0};
    bool has_value = false;
    for (size_t at = 0; at < in.n;) {
        struct wire_item it;
        if (!next_item(in.p, in.n, &at, &it))
            return false;
        if (it.tag >= 1 && it.tag <= 4) {
            if (it.wt != WT_LEN)
                return false;
            sp[it.tag - 1] = it.v + it.hdr;
            sn[it.tag - 1] = it.n - it.hdr;
        } else if (it.tag == 5) {
            has_value = wire_bool(&it);
        }
    }
    for (int i = 0; i < 4; i++) {
        pr->s[i].p = sp[i];
        pr->s[i].n = sn[i];
    }
    pr->has_value = has_value;
    return true;
}

/* Whether tag byte b is one of fields 2 to 6 of a RecordBatch. */
static bool batch_field(uint8_t b)
{
    unsigned f = b >> 3, wt = b & 7;
    return (f >= 2 && f <= 6 && f != 4 && wt == WT_LEN) || (f == 4 && wt == WT_VARINT);
}

int sl_codec_batch_next(const void *data, size_t len, size_t *pos, const void **entry,
                        size_t *entry_len, char *errbuf, size_t errsz)
{
    const uint8_t *p = data;
    size_t at = *pos;
    while (at < len && batch_field(p[at])) {
        struct wire_item it;
        if (!next_item(p, len, &at, &it))
            return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "the field at byte %zu is cut short", at);
        *pos = at;
    }
    if (at >= len)
        return 0;
    if (p[at] != (1 << 3 | 2))
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "byte %zu is 0x%02x, not the tag of an entry",
                         at, p[at]);
    uint64_t v = 0;
    size_t i = at + 1;
    for (unsigned shift = 0;; shift += 7, i++) {
        if (i >= len || shift > 28)
            return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "bad length of the entry at byte %zu",
                             at);
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80))
            break;
    }
    i++;
    if (v > len - i)
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                         "the entry at byte %zu says %llu bytes, %zu are left", at,
                         (unsigned long long)v, len - i);
    *entry = p + i;
    *entry_len = (size_t)v;
    *pos = i + (size_t)v;
    return 1;
}

static enum rec_role role_of(const struct rec_wire *w, uint32_t tag)
{
    return tag < 16 ? (enum rec_role)w->role[tag] : R_UNKNOWN;
}

/* The number of varints of a packed list p[0..n), or -1 when the last one
 * is cut short or one is longer than 10 bytes (protobuf-c refuses both). */
static long packed_count(const uint8_t *p, size_t n)
{
    long count = 0;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (++run > 10)
            return -1;
        if (!(p[i] & 0x80)) {
            count++;
            run = 0;
        }
    }
    return run ? -1 : count;
}

/* Calls f(arg, index) for each index of a *_missing item (packed or not). */
static void each_index(const struct wire_item *it, void (*f)(void *, uint32_t), void *arg)
{
    if (it->wt == WT_VARINT) {
        f(arg, (uint32_t)varint_value(it->v, it->n));
        return;
    }
    struct slice pl = wire_payload(it);
    for (size_t i = 0, start = 0; i < pl.n; i++) {
        if (!(pl.p[i] & 0x80)) {
            f(arg, (uint32_t)varint_value(pl.p + start, i - start + 1));
            start = i + 1;
        }
    }
}

/* The fields of a record that its batch names, as decode_record_wire reads
 * them (f[0..n)), while the missing indexes are applied. */
struct values_in {
    struct sl_field *f;
    size_t n;
    uint64_t bad_index; /* the first missing index out of range, + 1 */
};

static void set_missing(void *arg, uint32_t i)
{
    struct values_in *v = arg;
    if (i < v->n)
        v->f[i].value = NULL;
    else if (!v->bad_index)
        v->bad_index = (uint64_t)i + 1;
}

/* decode_pb for a record or a rejection, in two passes over the bytes: the
 * record's own fields and the number of entries of each list, then, into one
 * arena block for the lists and every string, the entries. The checks are
 * decode_record's, in its order, after those of the wire (protobuf-c reads
 * the whole message before decode_record looks at it). */
static struct sl_msg *decode_record_wire(enum sl_msg_kind kind, const uint8_t *data, size_t len,
                                         const struct sl_batch_dec *bd, char *errbuf, size_t errsz)
{
    const struct rec_wire *w = rec_wire_of(kind);
    const char *k = w->kind;
    struct slice run = {no_bytes, 0}, job = run, key = run;
    uint32_t job_version = 0;
    uint64_t row = 0;
    bool dup = false;
    size_t nsrc = 0, nattr = 0, nprob = 0, lists_at = len;
    size_t nsv = 0, nav = 0, nsm = 0, nam = 0; /* values and missing indexes */
    struct wire_item it;
    struct sl_msg *m = NULL;

    if (!len)
        data = no_bytes;
    for (size_t at = 0; at < len;) {
        size_t here = at;
        if (!next_item(data, len, &at, &it))
            goto bad_wire;
        enum rec_role ro = role_of(w, it.tag);
        switch (ro) {
        case R_RUN_ID:
        case R_JOB_ID:
        case R_KEY:
            if (it.wt != WT_LEN)
                goto bad_wire;
            *(ro == R_RUN_ID ? &run : ro == R_JOB_ID ? &job : &key) = wire_payload(&it);
            break;
        case R_JOB_VERSION:
        case R_ROW:
            if (it.wt != WT_VARINT)
                goto bad_wire;
            if (ro == R_ROW)
                row = varint_value(it.v, it.n);
            else
                job_version = (uint32_t)varint_value(it.v, it.n);
            break;
        case R_SOURCE:
        case R_ATTRIBUTES:
        case R_PROBLEMS:
            if (it.wt != WT_LEN)
                goto bad_wire;
            (*(ro == R_SOURCE ? &nsrc : ro == R_ATTRIBUTES ? &nattr : &nprob))++;
            if (lists_at == len)
                lists_at = here;
            break;
        case R_DUPLICATE:
            dup = wire_bool(&it);
            break;
        case R_SRC_VALUES:
        case R_ATTR_VALUES:
            if (it.wt != WT_LEN)
                goto bad_wire;
            (*(ro == R_SRC_VALUES ? &nsv : &nav))++;
            if (lists_at == len)
                lists_at = here;
            break;
        case R_SRC_MISSING:
        case R_ATTR_MISSING: {
            long n = 1;
            if (it.wt == WT_LEN)
                n = packed_count(it.v + it.hdr, it.n - it.hdr);
            else if (it.wt != WT_VARINT)
                goto bad_wire;
            if (n < 0)
                goto bad_wire;
            *(ro == R_SRC_MISSING ? &nsm : &nam) += (size_t)n;
            if (lists_at == len)
                lists_at = here;
            break;
        }
        case R_UNKNOWN:
            break;
        }
    }
    if (nsrc + nsv > UINT32_MAX || nattr + nav > UINT32_MAX || nprob > UINT32_MAX) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: too many %s", k,
                  nprob > UINT32_MAX ? "problems" : "fields");
        return NULL;
    }

    /* the batch's run and job ids, for a record without a run id */
    bool batch_ids = bd && bd->run_id && bd->run_id[0] && cstr_empty(run);
    size_t idlen = batch_ids ? strlen(bd->run_id) + strlen(bd->job_id) + 2 : 0;
    size_t nsf = nsrc + nsv, naf = nattr + nav; /* all source fields, all attributes */
    m = sl_msg_new(kind, NULL, NULL, 0);
    size_t need = (nsf + naf) * sizeof(struct sl_field) + nprob * sizeof(struct sl_problem);
    char *block = m ? sl_arena_alloc(&m->arena, need + len + 1 + idlen) : NULL;
    if (!block) {
        sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "cannot decode %s: out of memory", k);
        goto fail;
    }
    struct sl_field *src = (struct sl_field *)(void *)block, *attr = src + nsf;
    struct sl_problem *prob = (struct sl_problem *)(void *)(attr + naf);
    struct str_space sp = {(char *)(prob + nprob), block + need + len + 1 + idlen};
    const char *bad[3] = {NULL, NULL, NULL}; /* the first of source, attributes, problems */
    size_t is = 0, ia = 0, ip = 0;
    const char *const *bnames = bd && bd->names ? bd->names->names : NULL;
    for (size_t at = lists_at; at < len;) {
        if (!next_item(data, len, &at, &it))
            goto bad_wire;
        enum rec_role ro = role_of(w, it.tag);
        if (ro == R_SRC_VALUES || ro == R_ATTR_VALUES) {
            bool s_ = ro == R_SRC_VALUES, vu;
            size_t named = !bd ? 0 : s_ ? bd->nsrc : bd->nattr;
            size_t idx = s_ ? is : ia;
            struct sl_field *o = s_ ? &src[is++] : &attr[ia++];
            o->name = idx < named ? bnames[(s_ ? 0 : bd->nsrc) + idx] : "";
            if (!(o->value = take_str_utf8(&sp, wire_payload(&it), &vu)))
                goto bad_wire;
            const char **b = &bad[s_ ? 0 : 1];
            if (!*b && !vu)
                *b = "a field value";
        } else if (ro == R_SOURCE || ro == R_ATTRIBUTES) {
            struct wire_field f;
            if (!read_field(wire_payload(&it), &f) || (ro == R_SOURCE ? is >= nsf : ia >= naf))
                goto bad_wire;
            struct sl_field *o = ro == R_SOURCE ? &src[is++] : &attr[ia++];
            bool nu, vu;
            o->name = take_str_utf8(&sp, f.name, &nu);
            if (f.missing) {
                o->value = NULL;
                vu = utf8_cstr(f.value); /* checked all the same */
            } else if (!(o->value = take_str_utf8(&sp, f.value, &vu))) {
                goto bad_wire;
            }
            if (!o->name)
                goto bad_wire;
            const char **b = &bad[ro == R_SOURCE ? 0 : 1];
            if (!*b && !(nu && vu))
                *b = nu ? "a field value" : "a field name";
        } else if (ro == R_PROBLEMS) {
            static const char *const pwhat[4] = {"a problem attribute", "a problem code",
                                                 "a problem message", "a problem value"};
            struct wire_problem pr;
            if (!read_problem(wire_payload(&it), &pr) || ip >= nprob)
                goto bad_wire;
            struct sl_problem *o = &prob[ip++];
            bool u[4] = {true, true, true, true};
            /* an attribute "" as a C string is UTF-8 and means the row */
            o->attribute = cstr_empty(pr.s[0]) ? "_row" : take_str_utf8(&sp, pr.s[0], &u[0]);
            o->code = take_str_utf8(&sp, pr.s[1], &u[1]);
            o->message = take_str_utf8(&sp, pr.s[2], &u[2]);
            if (pr.has_value) {
                o->value = take_str_utf8(&sp, pr.s[3], &u[3]);
            } else {
                o->value = NULL;
                u[3] = utf8_cstr(pr.s[3]); /* checked all the same */
            }
            if (!o->attribute || !o->code || !o->message || (pr.has_value && !o->value))
                goto bad_wire;
            for (int i = 0; i < 4 && !bad[2]; i++)
                if (!u[i])
                    bad[2] = pwhat[i];
        }
    }

    /* values the batch names: missing ones, then their shape */
    struct values_in sv = {src, nsv, 0}, av = {attr, nav, 0};
    if (nsm || nam) {
        for (size_t at = lists_at; at < len;) {
            if (!next_item(data, len, &at, &it)) /* read before: it cannot fail */
                break;
            enum rec_role ro = role_of(w, it.tag);
            if (ro == R_SRC_MISSING || ro == R_ATTR_MISSING)
                each_index(&it, set_missing, ro == R_SRC_MISSING ? &sv : &av);
        }
    }
    char why[120];
    const char *shape = values_shape(nsrc > 0, nsv, nsm, bd ? bd->nsrc : 0, bd != NULL,
                                     sv.bad_index, "source", why, sizeof(why));
    if (!shape)
        shape = values_shape(nattr > 0, nav, nam, bd ? bd->nattr : 0, bd != NULL, av.bad_index,
                             "attribute", why, sizeof(why));
    if (shape) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: %s", k, shape);
        goto fail;
    }
    if (batch_ids) {
        char *ids = sp.p;
        sp.p += idlen;
        size_t rl = strlen(bd->run_id) + 1;
        memcpy(ids, bd->run_id, rl);
        memcpy(ids + rl, bd->job_id, idlen - rl);
        run = (struct slice){(const uint8_t *)ids, rl - 1};
        job = (struct slice){(const uint8_t *)ids + rl, idlen - rl - 1};
        job_version = bd->job_version;
    }

    /* decode_ids, then the key, then the lists in order */
    const char *what = !utf8_cstr(run) ? "run_id" : !utf8_cstr(job) ? "job_id" : NULL;
    if (!what && (cstr_empty(job) || cstr_empty(run))) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: it has no %s", k,
                  cstr_empty(job) ? "job_id" : "run_id");
        goto fail;
    }
    if (!what && !utf8_cstr(key))
        what = "key";
    for (int i = 0; i < 3 && !what; i++)
        what = bad[i];
    if (what) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode %s: %s is not valid UTF-8", k, what);
        goto fail;
    }
    struct sl_record *r = &m->u.rec;
    if (batch_ids) { /* copied above */
        m->run_id = (const char *)run.p;
        m->job_id = (const char *)job.p;
    } else {
        m->run_id = take_str(&sp, run);
        m->job_id = take_str(&sp, job);
    }
    m->job_version = job_version;
    r->row = row;
    r->key = cstr_empty(key) ? NULL : take_str(&sp, key);
    r->duplicate = dup;
    if (!m->run_id || !m->job_id || (!cstr_empty(key) && !r->key))
        goto bad_wire;
    r->src = nsf ? src : NULL;
    r->nsrc = r->csrc = (uint32_t)nsf;
    r->attr = naf ? attr : NULL;
    r->nattr = r->cattr = (uint32_t)naf;
    if ((nsv || nav) && bd->names)
        m->wire_names = sl_names_ref(bd->names);
    r->prob = nprob ? prob : NULL;
    r->nprob = r->cprob = (uint32_t)nprob;
    return m;
bad_wire:
    sl_seterr(errbuf, errsz, SL_ERR_PARSE,
              "cannot decode %s: %zu bytes are not a valid sluice.%s protobuf", k, len, w->pb_name);
fail:
    sl_msg_unref(m);
    return NULL;
}

/* sl_codec_decode, with what a batch says its records share (bd: records
 * only; NULL: nothing). */
static struct sl_msg *decode_in(enum sl_msg_kind kind, const void *data, size_t len,
                                const struct sl_batch_dec *bd, char *errbuf, size_t errsz)
{
    if (kind != SL_MSG_RECORD)
        bd = NULL;
    if ((kind == SL_MSG_RECORD || kind == SL_MSG_REJECTION) && (data || !len))
        return decode_record_wire(kind, data, len, bd, errbuf, errsz);
    return decode_pb(kind, data, len, bd, errbuf, errsz);
}

struct sl_msg *sl_codec_decode(enum sl_msg_kind kind, const void *data, size_t len, char *errbuf,
                               size_t errsz)
{
    return decode_in(kind, data, len, NULL, errbuf, errsz);
}

struct sl_msg *sl_codec_decode_reference(enum sl_msg_kind kind, const void *data, size_t len,
                                         char *errbuf, size_t errsz)
{
    return decode_pb(kind, data, len, NULL, errbuf, errsz);
}

enum sl_msg_kind sl_codec_topic_kind(const char *topic)
{
    if (!topic)
        return 0;
    size_t tl = strlen(topic);
    for (size_t i = 0; i < SL_ARRAY_LEN(topic_kinds); i++) {
        const char *name = topic_kinds[i].topic;
        size_t nl = strlen(name);
        if (tl == nl && !memcmp(topic, name, nl))
            return topic_kinds[i].kind;
        /* A prefixed physical name (SLUICE_TOPIC_PREFIX): "prod.records.raw". */
        if (tl > nl && !memcmp(topic + tl - nl, name, nl) && strchr(".-_", topic[tl - nl - 1]))
            return topic_kinds[i].kind;
    }
    return 0;
}

/* ---- batches ---- */

int sl_codec_batch_begin(struct sl_batch_dec *bd, enum sl_msg_kind kind, const void *data,
                         size_t len, char *errbuf, size_t errsz)
{
    const uint8_t *p = data;
    struct slice run = {no_bytes, 0}, job = run;
    size_t nsrc = 0, nattr = 0, bytes = 0;
    uint32_t version = 0;
    sl_codec_batch_end(bd); /* one not ended; what the last one shared stays */
    bd->kind = kind;
    struct sl_names *last = bd->last;
    for (size_t at = 0; at < len;) {
        size_t here = at;
        struct wire_item it;
        if (p[at] == (1 << 3 | WT_LEN) || kind != SL_MSG_RECORD || !batch_field(p[at])) {
            const void *e;
            size_t elen;
            int r = sl_codec_batch_next(data, len, &at, &e, &elen, errbuf, errsz);
            if (r < 0)
                return r;
            continue;
        }
        if (!next_item(p, len, &at, &it))
            return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "the field at byte %zu is cut short",
                             here);
        struct slice v = wire_payload(&it);
        switch (it.tag) {
        case 2:
            run = v;
            break;
        case 3:
            job = v;
            break;
        case 4:
            version = (uint32_t)varint_value(it.v, it.n);
            break;
        default: /* 5, 6: names, as C strings (protobuf-c's) */
            if (!utf8_cstr(v))
                return sl_seterr(errbuf, errsz, SL_ERR_PARSE,
                                 "a field name at byte %zu is not valid UTF-8", here);
            (*(it.tag == 5 ? &nsrc : &nattr))++;
            if (nsrc + nattr > UINT32_MAX / 2)
                return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "too many field names");
            bytes += v.n + 1;
        }
    }
    if (!utf8_cstr(run) || !utf8_cstr(job))
        return sl_seterr(errbuf, errsz, SL_ERR_PARSE, "its %s is not valid UTF-8",
                         utf8_cstr(run) ? "job_id" : "run_id");
    size_t n = nsrc + nattr;
    if (!n && cstr_empty(run))
        return 0; /* nothing shared */
    bytes += sizeof(struct sl_names) + n * sizeof(char *) + run.n + job.n + 2;
    struct sl_names *nm = malloc(bytes);
    if (!nm)
        return sl_seterr(errbuf, errsz, SL_ERR_NOMEM, "out of memory");
    atomic_init(&nm->refs, 1);
    nm->n = n;
    char *o = (char *)&nm->names[n];
    size_t is = 0, ia = nsrc, strings = 0;
    for (size_t at = 0; at < len;) {
        struct wire_item it;
        if (!next_item(p, len, &at, &it)) /* read above: it cannot fail */
            break;
        if ((it.tag != 5 && it.tag != 6) || it.wt != WT_LEN)
            continue;
        struct slice v = wire_payload(&it);
        size_t l = v.n;
        const uint8_t *z = l ? memchr(v.p, 0, l) : NULL;
        if (z)
            l = (size_t)(z - v.p);
        if (l)
            memcpy(o, v.p, l);
        o[l] = '\0';
        nm->names[it.tag == 5 ? is++ : ia++] = o;
        o += l + 1;
        strings += l + 1;
    }
    size_t fixed = sizeof(struct sl_names) + n * sizeof(char *);
    size_t run_at = fixed + strings, job_at = run_at + run.n + 1;
    memcpy(o, run.p, run.n);
    o[run.n] = '\0';
    o += run.n + 1;
    memcpy(o, job.p, job.n);
    o[job.n] = '\0';
    /* the same as the last batch's (same layout, same bytes): take those */
    struct sl_names *use = nm;
    if (last && bd->last_bytes == bytes && last->n == n && bd->last_nsrc == nsrc &&
        !memcmp((char *)last + fixed, (char *)nm + fixed, bytes - fixed)) {
        use = sl_names_ref(last);
        free(nm);
    } else {
        sl_names_unref(last);
        bd->last = sl_names_ref(nm);
        bd->last_bytes = bytes;
        bd->last_nsrc = nsrc;
    }
    bd->run_id = (char *)use + run_at;
    bd->job_id = (char *)use + job_at;
    bd->names = use;
    bd->nsrc = (uint32_t)nsrc;
    bd->nattr = (uint32_t)nattr;
    bd->job_version = version;
    return 0;
}

struct sl_msg *sl_codec_batch_decode(const struct sl_batch_dec *bd, const void *entry, size_t len,
                                     char *errbuf, size_t errsz)
{
    return decode_in(bd->kind, entry, len, bd, errbuf, errsz);
}

struct sl_msg *sl_codec_batch_decode_reference(const struct sl_batch_dec *bd, const void *entry,
                                               size_t len, char *errbuf, size_t errsz)
{
    return decode_pb(bd->kind, entry, len, bd->kind == SL_MSG_RECORD ? bd : NULL, errbuf, errsz);
}

void sl_codec_batch_end(struct sl_batch_dec *bd)
{
    sl_names_unref(bd->names);
    *bd = (struct sl_batch_dec){.kind = bd->kind,
                                .last = bd->last,
                                .last_bytes = bd->last_bytes,
                                .last_nsrc = bd->last_nsrc};
}

void sl_codec_batch_release(struct sl_batch_dec *bd)
{
    sl_codec_batch_end(bd);
    sl_names_unref(bd->last);
    bd->last = NULL;
    bd->last_bytes = 0;
}
