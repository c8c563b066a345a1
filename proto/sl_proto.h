/*
 * Protocol layer: decoding with validation, encoding and ZeroMQ framing of
 * the Envelope defined in sluice.proto. Nothing above this layer touches an
 * undecoded or unvalidated message.
 */
#ifndef SL_PROTO_H
#define SL_PROTO_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

#include "proto/sluice.pb-c.h"

#define SL_PROTO_VERSION 1

typedef Sluice__Envelope sl_msg_t;

/* Bounds every decoded message is checked against. */
typedef struct sl_proto_limits {
    size_t max_msg_bytes;       /* whole encoded envelope */
    uint32_t max_prompt_tokens; /* Prompt.length */
    uint32_t max_token_ids;     /* entries of Prompt.token_ids, Result.tokens, TokenChunk.tokens */
    uint32_t max_block_hashes;  /* entries of Prompt.block_hashes */
    uint32_t max_new_tokens;    /* Job.max_new_tokens */
    uint32_t max_id_len;        /* Job.id and every job_id */
    uint32_t max_name_len;      /* tenant, model, session key, executor name, zone */
    uint32_t max_kv_events;     /* entries of one KvEvent list */
    uint32_t max_xport_address; /* bytes of ExecutorHello.xport_address */
    uint32_t max_models;        /* entries of ExecutorHello.models */
    uint32_t max_slots;         /* ExecutorHello.slots */
    uint32_t max_batch;         /* items of one batch body (completions, dispatches, submits, results) */
} sl_proto_limits_t;

/* The defaults: 8 MiB messages, 1 Mi-token prompts, 64 Ki new tokens. */
extern const sl_proto_limits_t sl_proto_limits_default;

/*
 * Decode buf and validate the result. On success *msg_p owns a new message
 * (free with sl_proto_free). On failure *msg_p is untouched, the status says
 * which kind of error (SL_ERR_MSG_*), and err holds a one-line reason.
 */
sl_status_t sl_proto_decode(const void *buf, size_t len, const sl_proto_limits_t *lim,
                            sl_msg_t **msg_p, char *err, size_t err_len);

/*
 * Check sizes, ranges and enum values of a decoded message. For the batch
 * bodies DispatchBatch, SubmitBatch and ResultBatch only the item count is
 * checked (1 to max_batch): the receiver checks each item with
 * sl_proto_validate_item, so one bad item does not cost the others.
 */
sl_status_t sl_proto_validate(const sl_msg_t *msg, const sl_proto_limits_t *lim, char *err,
                              size_t err_len);

/*
 * Check one batch item as if it were the body of an envelope of body_case:
 * SLUICE__ENVELOPE__BODY_DISPATCH with a Sluice__Dispatch, _SUBMIT with a
 * Sluice__Submit, _ACCEPTED, _BUSY or _RESULT with theirs.
 */
sl_status_t sl_proto_validate_item(int body_case, const void *item, const sl_proto_limits_t *lim,
                                   char *err, size_t err_len);

/*
 * Take one more reference to a decoded message (from sl_proto_decode), so
 * that several owners may keep pointers into it (the jobs of one batch);
 * each owner drops its reference with sl_proto_free. Returns msg.
 */
sl_msg_t *sl_proto_ref(sl_msg_t *msg);

/* Drop a reference to a decoded message, freeing it with the last one;
 * NULL-safe; sets *msg_p = NULL. */
void sl_proto_free(sl_msg_t **msg_p);

/* A short name of the body case ("submit", "heartbeat", ...) for logs and counters. */
const char *sl_proto_body_name(int body_case);

/*
 * Send env as one frame on a ZeroMQ socket, preceded by the routing identity
 * frame when ident is non-NULL (ROUTER sockets). Fills in the version.
 * flags are zmq_send flags (ZMQ_DONTWAIT). SL_ERR_AGAIN when the socket would
 * block under ZMQ_DONTWAIT; SL_ERR_LINK on other failures (logged).
 */
sl_status_t sl_wire_send(void *sock, const void *ident, size_t ident_len, sl_msg_t *env,
                         int flags);

/*
 * Send one envelope whose body (field number body_field of Envelope) is
 * given already packed: a cached Result, a Submit encoded at submission.
 * Same framing and return values as sl_wire_send.
 */
sl_status_t sl_wire_send_packed(void *sock, const void *ident, size_t ident_len,
                                 uint32_t body_field, const void *body, size_t body_len,
                                 int flags);

/*
 * A batch body under construction: items are packed one after the other
 * straight into one buffer, which is the encoding of a message whose
 * repeated fields hold them, and sent as the body of one envelope. The
 * buffer is kept between sends, so a steady stream of batches allocates
 * nothing.
 */
typedef struct sl_wire_batch {
    uint8_t *buf;      /* header room, then the packed items */
    size_t len;        /* bytes used, header room included */
    size_t cap;        /* bytes allocated */
    uint32_t n;        /* items added since the last send */
    uint32_t body;     /* Envelope field number of the batch body */
} sl_wire_batch_t;

/* Protobuf varint encoding of v at p (room for 10 bytes); returns the bytes written. */
size_t sl_wire_varint(uint8_t *p, uint64_t v);

/* An empty batch for body field body_field (e.g. SubmitBatch = 28); allocates nothing. */
void sl_wire_batch_init(sl_wire_batch_t *b, uint32_t body_field);

/* Free the buffer; the batch is empty and may be used again. */
void sl_wire_batch_fini(sl_wire_batch_t *b);

/* Forget the items added since the last send. */
void sl_wire_batch_clear(sl_wire_batch_t *b);

/* Append a varint field (not an item: not counted in n; a scalar the batch
 * body carries once, written last). SL_ERR_NOMEM leaves the batch unchanged. */
sl_status_t sl_wire_batch_add_uint(sl_wire_batch_t *b, uint32_t field, uint64_t value);

/* Pack msg as an item of repeated field `field` of the batch body.
 * SL_ERR_NOMEM leaves the batch unchanged. */
sl_status_t sl_wire_batch_add(sl_wire_batch_t *b, uint32_t field, const ProtobufCMessage *msg);

/*
 * Add an item that is a message made of one sub-message (field msg_field =
 * msg) and varint fields (vfields[i] = vvalues[i], zeros left out as proto3
 * does), written in field order: the bytes protobuf-c would pack for it,
 * without sizing msg once per enclosing level (Dispatch{job, job_seq,
 * attempt}, Completion{job_seq, result}). SL_ERR_NOMEM leaves the batch
 * unchanged.
 */
sl_status_t sl_wire_batch_add_nested(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                     const ProtobufCMessage *msg, const uint32_t *vfields,
                                     const uint64_t *vvalues, size_t n_v);

/* Append an item that is packed already. SL_ERR_NOMEM leaves the batch unchanged. */
sl_status_t sl_wire_batch_add_packed(sl_wire_batch_t *b, uint32_t field, const void *item,
                                     size_t len);

/*
 * Send the batch as one envelope (after the identity frame when ident is
 * non-NULL) and empty it, whether or not the send succeeded. Nothing is sent
 * for an empty batch (SL_OK). Return values as sl_wire_send.
 */
sl_status_t sl_wire_batch_send(void *sock, const void *ident, size_t ident_len,
                               sl_wire_batch_t *b, int flags);

/* A received identity frame (ROUTER peers). */
typedef struct sl_wire_ident {
    unsigned char data[256]; /* identity bytes */
    size_t len;              /* identity length; 0 for non-ROUTER sockets */
} sl_wire_ident_t;

/*
 * Receive one message. For a ROUTER socket (router != 0) expects an identity
 * frame then one payload frame. Returns SL_ERR_AGAIN when nothing is waiting
 * (with ZMQ_DONTWAIT), SL_ERR_MSG_* for a bad message (the identity is still
 * filled in so the caller can answer with an Error, all its frames are
 * consumed, err says why), SL_OK with *msg_p owning the decoded message.
 */
sl_status_t sl_wire_recv(void *sock, int router, int flags, const sl_proto_limits_t *lim,
                         sl_wire_ident_t *ident, sl_msg_t **msg_p, char *err, size_t err_len);

/*
 * Read one event from the PAIR socket of a ZeroMQ socket monitor without
 * waiting: its number (ZMQ_EVENT_*) in *event_p; the endpoint frame that
 * follows it is read and dropped. SL_ERR_AGAIN when none is waiting.
 */
sl_status_t sl_wire_monitor_event(void *mon, uint16_t *event_p);

#endif
