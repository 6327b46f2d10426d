/*
 * Wire codec (codec.h): struct sl_msg <-> the protobuf records of
 * proto/sluice.proto, through protobuf-c. The Kafka bus encodes what it sends
 * and decodes what it polls; the in-process bus passes messages as they are.
 *
 * Encoding builds the protobuf-c structs over the message's own strings, with
 * the few arrays it needs (repeated Field and Problem) in a scratch arena on
 * the stack, and packs straight into the caller's buffer. Decoding unpacks
 * with an allocator that takes memory from the new message's arena, so the
 * decoded strings are used where protobuf-c put them: one malloc per small
 * message, no copies, and everything freed with the message.
 *
 * Mapping rules: a missing field value (NULL) is Field.missing = true; a
 * problem without a value is has_value = false; an optional string (ticket
 * input, record key, file content type and name, run event stage, status,
 * reason and source name, a ticket's run id) that is NULL goes on the wire
 * as the empty string and comes back as NULL. sl_msg.key is the bus key, not
 * part of the record. Strings must be UTF-8, as proto3 requires.
 */
#include <stdint.h>
#include <stdio.h>
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

/* sl_codec_encode, or as field `field` of an enclosing message (> 0). */
static int encode(const struct sl_msg *m, struct sl_buf *out, unsigned field)
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
        w.run_id = wire_str(m->run_id);
        w.job_id = wire_str(m->job_id);
        w.job_version = m->job_version;
        w.row = r->row;
        w.n_source = r->nsrc;
        w.n_attributes = r->nattr;
        w.n_problems = r->nprob;
        w.key = wire_str(r->key);
        w.duplicate = r->duplicate;
        if ((r->nsrc && !(w.source = encode_fields(&scratch, r->src, r->nsrc, &bad))) ||
            (r->nattr && !(w.attributes = encode_fields(&scratch, r->attr, r->nattr, &bad))) ||
            (r->nprob && !(w.problems = encode_problems(&scratch, r->prob, r->nprob, &bad)))) {
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

int sl_codec_encode(const struct sl_msg *m, struct sl_buf *out)
{
    return encode(m, out, 0);
}

int sl_codec_batch_add(const struct sl_msg *m, struct sl_buf *batch)
{
    if (m->kind != SL_MSG_RECORD && m->kind != SL_MSG_REJECTION) {
        sl_warn("codec", "cannot batch a %s message", sl_msg_kind_str(m->kind));
        return SL_ERR_INVALID;
    }
    return encode(m, batch, 1); /* RecordBatch.records, RejectionBatch.rejections */
}

int sl_codec_batch_next(const void *data, size_t len, size_t *pos, const void **entry,
                        size_t *entry_len, char *errbuf, size_t errsz)
{
    const uint8_t *p = data;
    size_t at = *pos;
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

static bool decode_record(struct sl_msg *m, const Sluice__Record *w, char *errbuf, size_t errsz)
{
    struct sl_record *r = &m->u.rec;
    if (!decode_ids(m, w->run_id, w->job_id, w->job_version, "record", errbuf, errsz) ||
        !check_utf8(w->key, "key", "record", errbuf, errsz) ||
        !decode_fields(m, w->source, w->n_source, &r->src, &r->nsrc, &r->csrc, "record", errbuf,
                       errsz) ||
        !decode_fields(m, w->attributes, w->n_attributes, &r->attr, &r->nattr, &r->cattr, "record",
                       errbuf, errsz) ||
        !decode_problems(m, w->problems, w->n_problems, "record", errbuf, errsz))
        return false;
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
    if (w->n_columns > UINT32_MAX) {
        sl_seterr(errbuf, errsz, SL_ERR_PARSE, "cannot decode run event: too many columns");
        return false;
    }
    for (size_t i = 0; i < w->n_columns; i++)
        if (!check_utf8(w->columns[i], "a column name", k, errbuf, errsz))
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
    ev->delimiter = w->delimiter && strlen(w->delimiter) == 1 ? w->delimiter[0] : 0;
    enum sl_encoding enc = SL_ENC_UTF8;
    if (w->encoding && w->encoding[0] && sl_encoding_parse(w->encoding, &enc) == 0)
        ev->encoding = (int)enc;
    return true;
}

struct sl_msg *sl_codec_decode(enum sl_msg_kind kind, const void *data, size_t len, char *errbuf,
                               size_t errsz)
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
        ok = decode_record(m, (const Sluice__Record *)pm, errbuf, errsz);
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
