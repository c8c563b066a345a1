/*
 * proto/'s own header: the generated protobuf-c types and the pieces the
 * typed functions of sl_wire.h are built from (decoding, validation,
 * framing and batch building). Nothing outside proto/ and its tests
 * includes it; the rest of the tree speaks sl_wire.h.
 */
#ifndef SL_PROTO_H
#define SL_PROTO_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

#include "proto/sl_wire.h"
#include "proto/sluice.pb-c.h"

typedef Sluice__Envelope sl_msg_t;

/* The public handle is the decoded envelope itself. */
static inline sl_msg_t *sl_proto_msg(sl_wire_msg_t *m)
{
    return (sl_msg_t *)m;
}
static inline const sl_msg_t *sl_proto_cmsg(const sl_wire_msg_t *m)
{
    return (const sl_msg_t *)m;
}

/* The items of the batch bodies, validated one by one (sl_proto_validate_item). */
typedef enum sl_proto_item {
    SL_PROTO_ITEM_SUBMIT,   /* a Sluice__Submit of a SubmitBatch */
    SL_PROTO_ITEM_DISPATCH, /* a Sluice__Dispatch of a DispatchBatch */
    SL_PROTO_ITEM_ACCEPTED, /* a job id (char *) of a ResultBatch */
    SL_PROTO_ITEM_BUSY,     /* a Sluice__Busy of a ResultBatch */
    SL_PROTO_ITEM_RESULT,   /* a Sluice__Result of a ResultBatch */
} sl_proto_item_t;

/* ---- sl_validate.c ---- */

/*
 * Check the version, sizes, ranges and enum values of a decoded message.
 * For the batch bodies DispatchBatch, SubmitBatch and ResultBatch only the
 * item count is checked (1 to max_batch): the receiver checks each item
 * with sl_proto_validate_item, so one bad item does not cost the others.
 */
sl_status_t sl_proto_validate(const sl_msg_t *msg, const sl_proto_limits_t *lim, char *err,
                              size_t err_len);

/* Check one batch item of kind `item`. */
sl_status_t sl_proto_validate_item(sl_proto_item_t item, const void *ptr,
                                   const sl_proto_limits_t *lim, char *err, size_t err_len);

/* Check a Job as the scheduler will. */
sl_status_t sl_proto_validate_job(const Sluice__Job *job, const sl_proto_limits_t *lim, char *err,
                                  size_t err_len);

/* The wire's kind of a body case, and its name. */
sl_wire_kind_t sl_proto_kind(int body_case);
const char *sl_proto_body_name(int body_case);

/* Write a reason into err (when given) and return st. */
sl_status_t sl_proto_fail(sl_status_t st, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- sl_decode.c ---- */

/*
 * Decode buf and validate the result. On success *msg_p owns a new message
 * (free with sl_proto_free). On failure *msg_p is untouched, the status says
 * which kind of error (SL_ERR_MSG_*), and err holds a one-line reason.
 */
sl_status_t sl_proto_decode(const void *buf, size_t len, const sl_proto_limits_t *lim,
                            sl_msg_t **msg_p, char *err, size_t err_len);

/*
 * Keep the received frame the message was decoded from with the message
 * (takes *zmsg: a zmq_msg_t, moved), so the encoded jobs of a SubmitBatch
 * can be forwarded as they came (sl_proto_raw).
 */
void sl_proto_keep_frame(sl_msg_t *msg, void *zmsg);

/* The encoded bytes of the kept frame, or NULL. */
const uint8_t *sl_proto_raw(const sl_msg_t *msg, size_t *len_p);

/* Where the last lookup of a kept frame's items ended (an offset into it
 * and the index of the next item; 0: none yet), for sl_wire_submit_job_bytes. */
void sl_proto_raw_cursor(const sl_msg_t *msg, size_t **off_p, uint32_t **k_p);

/* Take one more reference to a decoded message; returns msg. */
sl_msg_t *sl_proto_ref(sl_msg_t *msg);

/* Drop a reference, freeing the message with the last; NULL-safe; *msg_p = NULL. */
void sl_proto_free(sl_msg_t **msg_p);

/* ---- sl_frame.c ---- */

/* Send env as one frame after the identity `to` (may be NULL); fills in
 * the version. Return values as sl_wire.h's senders. */
sl_status_t sl_proto_send(void *sock, const sl_wire_ident_t *to, sl_msg_t *env, int flags);

/* Protobuf varint encoding of v at p (room for 10 bytes); returns the bytes written. */
size_t sl_proto_varint(uint8_t *p, uint64_t v);
/* Bytes of v's varint encoding. */
size_t sl_proto_varint_len(uint64_t v);

/* Pack msg as an item of repeated field `field` of the batch body. */
sl_status_t sl_proto_batch_add(sl_wire_batch_t *b, uint32_t field, const ProtobufCMessage *msg);

/*
 * Add an item that is a message made of one sub-message (field msg_field =
 * msg) and varint fields (vfields[i] = vvalues[i], zeros left out as proto3
 * does), written in field order: the bytes protobuf-c would pack for it,
 * without sizing msg once per enclosing level.
 */
sl_status_t sl_proto_batch_add_nested(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                      const ProtobufCMessage *msg, const uint32_t *vfields,
                                      const uint64_t *vvalues, size_t n_v);

/* Append an item that is packed already. */
sl_status_t sl_proto_batch_add_packed(sl_wire_batch_t *b, uint32_t field, const void *item,
                                      size_t len);

/* Append an item made of a length-delimited field (msg_field = bytes),
 * varint fields after it (vfields ascending, all above msg_field; zeros
 * left out) and, when n_p > 0, a packed repeated varint field pfield
 * (above them all) holding pvalues[0..n_p). */
sl_status_t sl_proto_batch_add_wrapped(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                       const void *bytes, size_t len, const uint32_t *vfields,
                                       const uint64_t *vvalues, size_t n_v, uint32_t pfield,
                                       const uint32_t *pvalues, size_t n_p);

#endif
