/*
 * Encoding of sl_msg to the protobuf wire records of proto/sluice.proto and
 * back. The Kafka bus uses it; the in-process bus does not need it.
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/buf.h"
#include "sluice/msg.h"

/* Appends the protobuf encoding of m (its kind's message) to out; m is only
 * read, m->key (the bus key) is not encoded. Returns 0, SL_ERR_NOMEM, or
 * SL_ERR_INVALID (logged, out unchanged) for an unknown kind or run event
 * kind or a string that is not UTF-8. Any thread. */
int sl_codec_encode(const struct sl_msg *m, struct sl_buf *out);

/* Decodes a message of kind from data into a new message (one reference,
 * the caller's; every string in its arena; data is not kept). Empty optional
 * strings come back NULL, Field.missing as a NULL value. NULL with errbuf set
 * when the bytes are not a valid record ("poison": not protobuf, no job_id,
 * no run_id except on a ticket, bad UTF-8, unknown run event kind) or on out
 * of memory. Any thread. */
struct sl_msg *sl_codec_decode(enum sl_msg_kind kind, const void *data, size_t len, char *errbuf,
                               size_t errsz);

/* Record batches: a Kafka message on a records topic carries a RecordBatch
 * (records.raw, .mapped, .valid) or RejectionBatch (records.rejected) of
 * proto/sluice.proto, i.e. its records' encodings as field 1 one after the
 * other. A RecordBatch also says once what its records share: the first
 * record's run, job and field names (fields 2 to 6); a record that shares
 * them carries only its values (Record.source_values and the like).
 *
 * Building a batch: be (zeroed for each new batch, SL_BATCH_ENC_INIT) holds
 * what the batch said it shares: a reference to its first record. be may be
 * NULL: m is written whole, as a batch entry. */
struct sl_batch_enc {
    struct sl_msg *first; /* the record whose ids and names the batch carries */
};
#define SL_BATCH_ENC_INIT                                                                          \
    {                                                                                              \
        NULL                                                                                       \
    }
/* Appends m (a record or rejection) to batch. Returns as sl_codec_encode. */
int sl_codec_batch_add(struct sl_batch_enc *be, const struct sl_msg *m, struct sl_buf *batch);
/* Drops what be holds, for the next batch (zeroed again). */
void sl_codec_batch_enc_reset(struct sl_batch_enc *be);

/* Reading a batch: what its records share, from sl_codec_batch_begin. */
struct sl_batch_dec {
    enum sl_msg_kind kind;
    struct sl_names *names; /* source names, then attribute names; NULL: none */
    uint32_t nsrc, nattr;
    const char *run_id, *job_id; /* in names' allocation, or NULL */
    uint32_t job_version;
    /* what the last batch read with it shared: a batch that shares the same
     * takes these very names, so that the records of consecutive batches
     * have the same name pointers (cheap to compare); zeroed at first */
    struct sl_names *last;
    size_t last_bytes;
    uint32_t last_nsrc;
};
#define SL_BATCH_DEC_INIT                                                                          \
    {                                                                                              \
        0                                                                                          \
    }
/* Checks the framing of the whole batch data[0..len) of records of kind
 * (every entry, and for a RecordBatch fields 2 to 6) and reads what its
 * records share into *bd. 0, or SL_ERR_PARSE / SL_ERR_NOMEM with errbuf set
 * (nothing to end then). */
int sl_codec_batch_begin(struct sl_batch_dec *bd, enum sl_msg_kind kind, const void *data,
                         size_t len, char *errbuf, size_t errsz);
/* Decodes an entry of the batch (sl_codec_batch_next) as sl_codec_decode
 * does, with what the batch says its records share. */
struct sl_msg *sl_codec_batch_decode(const struct sl_batch_dec *bd, const void *entry, size_t len,
                                     char *errbuf, size_t errsz);
/* Ends reading a batch (its records keep what they need); bd keeps the
 * batch's names for the next one, until sl_codec_batch_release. */
void sl_codec_batch_end(struct sl_batch_dec *bd);
void sl_codec_batch_release(struct sl_batch_dec *bd);

/* The next entry of a batch data[0..len) from *pos (start at 0): 1 with
 * *entry / *entry_len (the encoding of one record, for sl_codec_batch_decode)
 * and *pos advanced, 0 at the end, or SL_ERR_PARSE with errbuf set when the
 * bytes at *pos are neither a batch entry nor one of fields 2 to 6 of a
 * RecordBatch (which it steps over). */
int sl_codec_batch_next(const void *data, size_t len, size_t *pos, const void **entry,
                        size_t *entry_len, char *errbuf, size_t errsz);

/* The kind carried by a topic name ("records.valid" -> SL_MSG_RECORD), or 0
 * ("dead", unknown). A prefixed name ("prod.records.valid", separator '.',
 * '-' or '_') maps as its logical name. */
enum sl_msg_kind sl_codec_topic_kind(const char *topic);

/* Tests and benchmarks only: the protobuf-c path, which the hand-written
 * record and rejection codec must match byte for byte (field as in
 * sl_codec_batch_add: 0 plain, 1 a batch entry). */
int sl_codec_encode_reference(const struct sl_msg *m, struct sl_buf *out, unsigned field);
struct sl_msg *sl_codec_decode_reference(enum sl_msg_kind kind, const void *data, size_t len,
                                         char *errbuf, size_t errsz);
/* The same for batches: sl_codec_batch_add and sl_codec_batch_decode through
 * protobuf-c. */
int sl_codec_batch_add_reference(struct sl_batch_enc *be, const struct sl_msg *m,
                                 struct sl_buf *batch);
struct sl_msg *sl_codec_batch_decode_reference(const struct sl_batch_dec *bd, const void *entry,
                                               size_t len, char *errbuf, size_t errsz);

#endif
