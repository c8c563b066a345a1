/*
 * Framing: envelopes onto ZeroMQ frames and back, and batch bodies built
 * straight into one buffer.
 *
 * Messages are packed straight into a buffer on the stack, or into the
 * zmq_msg_t for a large one, to avoid a copy. Batches (SubmitBatch,
 * DispatchBatch, CompletionBatch, ResultBatch) are built without protobuf-c
 * structs for the whole batch: each item is packed, behind its field tag
 * and length, straight into one growing buffer, which is then the encoding
 * of the batch message; the envelope's own few bytes (version, body tag,
 * body length) are written into room left in front of it. Building a
 * Sluice__SubmitBatch of pointers and packing it would walk every item
 * twice (size, then pack) and needs the items alive until the send; a
 * cached Result or a submitted Job can be appended as bytes.
 */
#include "proto/sl_proto.h"
#include "proto/sl_codec.h"
#include "common/sl_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* The errno of a failed zmq send as a status (logged when unexpected). */
static sl_status_t s_send_errno(void)
{
    if (errno == EAGAIN)
        return SL_ERR_AGAIN;
    if (errno == EHOSTUNREACH)
        return SL_ERR_PEER_LOST;
    if (errno != ETERM)
        SL_WARN("zmq send failed: %s", zmq_strerror(errno));
    return SL_ERR_LINK;
}

sl_status_t sl_proto_send(void *sock, const sl_wire_ident_t *to, sl_msg_t *env, int flags)
{
    zmq_msg_t msg;
    env->version = SL_PROTO_VERSION;
    if (to && zmq_send(sock, to->data, to->len, ZMQ_SNDMORE | flags) < 0)
        return s_send_errno();
    /* Most envelopes are small: encoded on the stack, sent as a copy. */
    uint8_t small[2048];
    uint8_t *p = sl_codec_encode(&env->base, small, small + sizeof(small));
    if (p) {
        if (zmq_send(sock, p, (size_t)(small + sizeof(small) - p), flags) < 0)
            return s_send_errno();
        return SL_OK;
    }
    size_t size = sluice__envelope__get_packed_size(env);
    if (zmq_msg_init_size(&msg, size) != 0) {
        SL_ERROR("zmq_msg_init_size(%zu): %m", size);
        return SL_ERR_NOMEM;
    }
    sluice__envelope__pack(env, zmq_msg_data(&msg));
    if (zmq_msg_send(&msg, sock, flags) < 0) {
        zmq_msg_close(&msg);
        return s_send_errno();
    }
    return SL_OK;
}

size_t sl_proto_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

size_t sl_proto_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        n++;
        v >>= 7;
    }
    return n;
}

/* v as a varint ending at p; the new start, or NULL below lo. */
static uint8_t *s_put_uint(uint8_t *p, uint8_t *lo, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = sl_proto_varint(tmp, v);
    if ((size_t)(p - lo) < n)
        return NULL;
    memcpy(p - n, tmp, n);
    return p - n;
}

/* Envelope bytes in front of a body: version, body tag, body length. */
#define S_ENV_HEAD 24

static size_t s_env_head(uint8_t *p, uint32_t body_field, size_t body_len)
{
    size_t n = 0;
    p[n++] = 0x08; /* field 1 (version), varint */
    n += sl_proto_varint(p + n, SL_PROTO_VERSION);
    n += sl_proto_varint(p + n, ((uint64_t)body_field << 3) | 2);
    n += sl_proto_varint(p + n, body_len);
    return n;
}

void sl_wire_batch_init(sl_wire_batch_t *b, sl_wire_kind_t kind)
{
    memset(b, 0, sizeof(*b));
    switch (kind) {
    case SL_WIRE_SUBMITS:
        b->body = SLUICE__ENVELOPE__BODY_SUBMITS;
        break;
    case SL_WIRE_RESULTS:
        b->body = SLUICE__ENVELOPE__BODY_RESULTS;
        break;
    case SL_WIRE_DISPATCHES:
        b->body = SLUICE__ENVELOPE__BODY_DISPATCHES;
        break;
    case SL_WIRE_COMPLETIONS:
        b->body = SLUICE__ENVELOPE__BODY_COMPLETIONS;
        break;
    default:
        b->body = 0;
        break; /* a programming error: sends are refused */
    }
    b->len = S_ENV_HEAD;
}

void sl_wire_batch_fini(sl_wire_batch_t *b)
{
    free(b->buf);
    b->buf = NULL;
    b->cap = 0;
    sl_wire_batch_clear(b);
}

void sl_wire_batch_clear(sl_wire_batch_t *b)
{
    b->len = S_ENV_HEAD;
    b->n = 0;
    b->scalar = 0;
}

/* Room for need more bytes; returns where they go, or NULL (batch unchanged). */
static uint8_t *s_batch_room(sl_wire_batch_t *b, size_t need)
{
    if (b->cap - b->len < need || !b->buf) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + need)
            cap *= 2;
        uint8_t *buf = realloc(b->buf, cap);
        if (!buf)
            return NULL;
        b->buf = buf;
        b->cap = cap;
    }
    return b->buf + b->len;
}

sl_status_t sl_proto_batch_add_packed(sl_wire_batch_t *b, uint32_t field, const void *item,
                                      size_t len)
{
    uint8_t *p = s_batch_room(b, 20 + len);
    if (!p)
        return SL_ERR_NOMEM;
    size_t n = sl_proto_varint(p, ((uint64_t)field << 3) | 2);
    n += sl_proto_varint(p + n, len);
    memcpy(p + n, item, len);
    b->len += n + len;
    b->n++;
    return SL_OK;
}

/*
 * Append one item, encoded backwards into the free end of the buffer (see
 * sl_codec.h): the varint fields above msg_field, msg behind its own tag
 * (msg_field 0: msg is the item itself), the varint fields below it; then
 * the item's tag and length go in front and the bytes move down behind
 * them. The buffer doubles until the item fits.
 */
static sl_status_t s_batch_item(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                const ProtobufCMessage *msg, const uint32_t *vfields,
                                const uint64_t *vvalues, size_t n_v)
{
    for (size_t need = 256;; need = b->cap - b->len + 1) {
        if (!s_batch_room(b, need))
            return SL_ERR_NOMEM;
        uint8_t *lo = b->buf + b->len + 20, *hi = b->buf + b->cap, *p = hi;
        for (size_t i = n_v; i-- > 0 && p;)
            if (vfields[i] > msg_field && vvalues[i] && (p = s_put_uint(p, lo, vvalues[i])))
                p = s_put_uint(p, lo, (uint64_t)vfields[i] << 3);
        uint8_t *end = p;
        if (p && (p = sl_codec_encode(msg, lo, p)) && msg_field &&
            (p = s_put_uint(p, lo, (uint64_t)(end - p))))
            p = s_put_uint(p, lo, ((uint64_t)msg_field << 3) | 2);
        for (size_t i = n_v; i-- > 0 && p;)
            if (vfields[i] < msg_field && vvalues[i] && (p = s_put_uint(p, lo, vvalues[i])))
                p = s_put_uint(p, lo, (uint64_t)vfields[i] << 3);
        if (!p)
            continue;
        size_t body = (size_t)(hi - p);
        uint8_t *q = b->buf + b->len;
        size_t n = sl_proto_varint(q, ((uint64_t)field << 3) | 2);
        n += sl_proto_varint(q + n, body);
        memmove(q + n, p, body);
        b->len += n + body;
        b->n++;
        return SL_OK;
    }
}

sl_status_t sl_proto_batch_add_nested(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                      const ProtobufCMessage *msg, const uint32_t *vfields,
                                      const uint64_t *vvalues, size_t n_v)
{
    if (msg_field == 0)
        return SL_ERR_INVALID;
    return s_batch_item(b, field, msg_field, msg, vfields, vvalues, n_v);
}

sl_status_t sl_proto_batch_add(sl_wire_batch_t *b, uint32_t field, const ProtobufCMessage *msg)
{
    return s_batch_item(b, field, 0, msg, NULL, NULL, 0);
}

sl_status_t sl_wire_batch_send(void *sock, const sl_wire_ident_t *to, sl_wire_batch_t *b, int flags)
{
    if (b->n == 0)
        return SL_OK;
    if (b->body == 0) {
        sl_wire_batch_clear(b);
        return SL_ERR_INVALID;
    }
    /* ResultBatch.queue_depth = 4, written once after the items */
    if (b->body == SLUICE__ENVELOPE__BODY_RESULTS && b->scalar) {
        uint8_t *p = s_batch_room(b, 12);
        if (p) {
            size_t n = sl_proto_varint(p, 4u << 3);
            n += sl_proto_varint(p + n, b->scalar);
            b->len += n;
        }
    }
    uint8_t head[S_ENV_HEAD];
    size_t body_len = b->len - S_ENV_HEAD;
    size_t hl = s_env_head(head, b->body, body_len);
    uint8_t *start = b->buf + S_ENV_HEAD - hl;
    memcpy(start, head, hl);
    sl_wire_batch_clear(b);
    if (to && zmq_send(sock, to->data, to->len, ZMQ_SNDMORE | flags) < 0)
        return s_send_errno();
    if (zmq_send(sock, start, hl + body_len, flags) < 0)
        return s_send_errno();
    return SL_OK;
}

/* Consume the remaining frames of a multipart message. */
static void s_drain(void *sock, int more)
{
    zmq_msg_t part;
    int rc;
    size_t sz = sizeof(more);
    while (more) {
        zmq_msg_init(&part);
        rc = zmq_msg_recv(&part, sock, 0);
        zmq_msg_close(&part);
        if (rc < 0)
            return;
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) != 0)
            return;
    }
}

sl_status_t sl_wire_recv(void *sock, int router, int flags, const sl_proto_limits_t *lim,
                         sl_wire_ident_t *ident, sl_wire_msg_t **msg_p, char *err, size_t err_len)
{
    zmq_msg_t part;
    int more = 0;
    size_t sz = sizeof(more);
    sl_status_t st;

    ident->len = 0;
    ident->user[0] = '\0';
    if (router) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, flags) < 0) {
            zmq_msg_close(&part);
            return errno == EAGAIN ? SL_ERR_AGAIN : SL_ERR_LINK;
        }
        size_t n = zmq_msg_size(&part);
        if (n > sizeof(ident->data))
            n = sizeof(ident->data);
        memcpy(ident->data, zmq_msg_data(&part), n);
        ident->len = n;
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        if (!more)
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "message has no payload frame");
        flags = 0; /* the rest of a multipart message is already here */
    }
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, flags) < 0) {
        zmq_msg_close(&part);
        return errno == EAGAIN ? SL_ERR_AGAIN : SL_ERR_LINK;
    }
    if (router) { /* the payload carries the connection's metadata, the identity not */
        const char *user = zmq_msg_gets(&part, "User-Id"); /* set by a ZAP handler */
        if (user)
            snprintf(ident->user, sizeof(ident->user), "%s", user);
    }
    more = zmq_msg_more(&part);
    if (more) {
        zmq_msg_close(&part);
        s_drain(sock, more);
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "message has extra frames");
    }
    sl_msg_t *m = NULL;
    st = sl_proto_decode(zmq_msg_data(&part), zmq_msg_size(&part), lim, &m, err, err_len);
    if (st == SL_OK && m->body_case == SLUICE__ENVELOPE__BODY_SUBMITS)
        sl_proto_keep_frame(m, &part); /* its jobs' bytes are forwarded as they came */
    zmq_msg_close(&part);
    if (st == SL_OK)
        *msg_p = (sl_wire_msg_t *)m;
    (void)sz;
    return st;
}

sl_status_t sl_wire_monitor_event(void *mon, uint16_t *event_p)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return SL_ERR_AGAIN;
    }
    uint16_t event = 0;
    if (zmq_msg_size(&part) >= sizeof(event))
        memcpy(&event, zmq_msg_data(&part), sizeof(event));
    int more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    while (more) { /* the endpoint frame */
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, mon, 0) < 0)
            more = 0;
        else
            more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    *event_p = event;
    return SL_OK;
}

sl_status_t sl_proto_batch_add_wrapped(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                       const void *bytes, size_t len, const uint32_t *vfields,
                                       const uint64_t *vvalues, size_t n_v, uint32_t pfield,
                                       const uint32_t *pvalues, size_t n_p)
{
    size_t pl = 0; /* bytes of the packed values */
    for (size_t i = 0; i < n_p; i++)
        pl += sl_proto_varint_len(pvalues[i]);
    uint8_t *p = s_batch_room(b, 40 + len + 20 * n_v + (n_p ? 20 + pl : 0));
    if (!p)
        return SL_ERR_NOMEM;
    size_t inner = sl_proto_varint(p, len) + 1 + (msg_field >= 16) + len; /* tag, length, bytes */
    uint8_t vbuf[64];
    size_t vl = 0;
    for (size_t i = 0; i < n_v && vl + 20 <= sizeof(vbuf); i++) {
        if (!vvalues[i])
            continue;
        vl += sl_proto_varint(vbuf + vl, (uint64_t)vfields[i] << 3);
        vl += sl_proto_varint(vbuf + vl, vvalues[i]);
    }
    uint8_t phead[20]; /* the packed field's tag and length */
    size_t ph = 0;
    if (n_p) {
        ph = sl_proto_varint(phead, ((uint64_t)pfield << 3) | 2);
        ph += sl_proto_varint(phead + ph, pl);
    }
    size_t n = sl_proto_varint(p, ((uint64_t)field << 3) | 2);
    n += sl_proto_varint(p + n, inner + vl + ph + pl);
    n += sl_proto_varint(p + n, ((uint64_t)msg_field << 3) | 2);
    n += sl_proto_varint(p + n, len);
    memcpy(p + n, bytes, len);
    n += len;
    memcpy(p + n, vbuf, vl);
    n += vl;
    memcpy(p + n, phead, ph);
    n += ph;
    for (size_t i = 0; i < n_p; i++)
        n += sl_proto_varint(p + n, pvalues[i]);
    b->len += n;
    b->n++;
    return SL_OK;
}
