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
 * other. sl_codec_batch_add appends m (a record or rejection) to batch.
 * Returns as sl_codec_encode. */
int sl_codec_batch_add(const struct sl_msg *m, struct sl_buf *batch);

/* The next entry of a batch data[0..len) from *pos (start at 0): 1 with
 * *entry / *entry_len (the encoding of one record, for sl_codec_decode) and
 * *pos advanced, 0 at the end, or SL_ERR_PARSE with errbuf set when the
 * bytes at *pos are not a batch entry. */
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

#endif
