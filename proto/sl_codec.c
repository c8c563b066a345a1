/*
 * The fast codec: protobuf wire format to protobuf-c's generated structs and
 * back, driven by protobuf-c's generated descriptors.
 *
 * protobuf-c's reflective unpack and pack were a third of the scheduler
 * thread's time at full load: per message it scans every field into a side
 * array, finds each field by binary search, calls the allocator through a
 * function pointer per part, and packing sizes each sub-message once per
 * enclosing level. This codec does the same job for the encodings the
 * project's own programs write, and nothing more:
 *   - decoding is one pass per message (two for the batches, whose
 *     repeated sub-messages are counted first; a packed array is counted
 *     when it is met), with a compact table per message type built once
 *     from its descriptor (the field's offset, kind and pre-encoded tag,
 *     indexed by field number);
 *   - encoding runs backwards from the end of a buffer, so a sub-message's
 *     length is known when its header is written and nothing is sized.
 *
 * protobuf-c stays the judge of validity: whenever decoding meets something
 * that is not a canonical encoding of a known field (an unknown field, a
 * sub-message or oneof member given twice, a repeated scalar not packed, a
 * group, a varint of more than ten bytes or a tag or length of more than
 * five (protobuf-c's limits), a length past the end) it answers
 * SL_CODEC_DEFER and the caller runs protobuf-c on the same bytes. The
 * decoded structs are what protobuf-c builds: defaults from the generated
 * init, strings copied and NUL-terminated, absent sub-messages NULL, empty
 * repeated fields NULL with a count of 0. Tests decode and encode random
 * messages and random corruptions both ways and compare.
 *
 * Types and labels handled: the proto3 ones sluice.proto uses (int32,
 * uint32, uint64, bool, enum, float, string, bytes, message; singular,
 * repeated, oneof). A descriptor with anything else is decoded by
 * protobuf-c and encoded by it too (protobuf_c_message_pack into the room
 * it sizes), and so is a message holding unknown fields (one protobuf-c
 * decoded; it packs them after the known ones), so the codec is never
 * wrong, only sometimes not faster.
 *
 * Rejected: a hand-written encoder and decoder per message (ten copies of
 * the same loop, and every new field a chance to drift from the .proto);
 * decoding into views of the receive buffer (every user would need its own
 * lifetime rules; the arena already makes a decoded message one block).
 * Floats are copied as little-endian bytes: the project builds for x86-64
 * and arm64 only.
 */
#include "proto/sl_codec.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* Four-byte values (float, fixed32) are copied as they lie in memory. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the codec copies little-endian values");

#define S_MAX_ID 64     /* field numbers below this are looked up directly */
#define S_MAX_FIELDS 64 /* fields per message handled here */
#define S_MAX_TABS 64   /* message types handled here */
#define S_MAX_DEPTH 32  /* nesting decoded here */

/* How a field is laid out and written. */
enum { S_SINGLE, S_ONEOF, S_PACKED, S_EACH };

/* One field, in the few bytes the loops read (the descriptor's are 72). */
typedef struct s_fop {
    uint32_t offset; /* of the member */
    uint32_t qoff;   /* of the count (repeated) or of the oneof case */
    uint32_t id;     /* field number */
    uint8_t type;    /* ProtobufCType */
    uint8_t kind;    /* S_SINGLE, S_ONEOF, S_PACKED (repeated scalar), S_EACH (repeated,
                        one tag per element) */
    uint8_t wt;      /* wire type of one value */
    uint8_t sub;     /* message fields: their table */
    uint8_t esize;   /* bytes of one element of a repeated field */
    uint8_t taglen;  /* bytes of tag */
    uint8_t tag[5];  /* the tag as written (wire type 2 when packed) */
} s_fop_t;

/* One message type's table. */
typedef struct s_tab {
    const ProtobufCMessageDescriptor *desc;
    uint8_t idx[S_MAX_ID];     /* field number -> index in ops + 1; 0: unknown */
    s_fop_t ops[S_MAX_FIELDS]; /* the fields, in field-number order */
    uint8_t n_ops;             /* their number */
    bool ok;                   /* every field is of a kind handled here */
    bool count_first;          /* it has repeated delimited fields: count them first */
} s_tab_t;

static s_tab_t s_tabs[S_MAX_TABS];
static atomic_uint s_n_tabs; /* tables published (complete, never changed again) */
static pthread_mutex_t s_tabs_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t s_elem_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_UINT64:
        return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return sizeof(uint32_t); /* int32, uint32, enum, float */
    }
}

static unsigned s_wire_type(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
        return 5;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

static bool s_field_ok(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_NONE && f->label != PROTOBUF_C_LABEL_REPEATED)
        return false;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_BOOL:
    case PROTOBUF_C_TYPE_ENUM:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return true;
    default:
        return false;
    }
}

/* The table of desc, built with those of its sub-messages into slots from
 * *n on (caller holds the lock); its index, or -1 when there is no room. */
static int s_tab_build(const ProtobufCMessageDescriptor *desc, unsigned *n)
{
    for (unsigned i = 0; i < *n; i++)
        if (s_tabs[i].desc == desc)
            return (int)i;
    if (*n >= S_MAX_TABS)
        return -1;
    unsigned k = (*n)++;
    s_tab_t *t = &s_tabs[k];
    memset(t, 0, sizeof(*t));
    t->desc = desc;
    t->ok = desc->n_fields <= S_MAX_FIELDS;
    for (unsigned i = 0; t->ok && i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        if (f->id >= S_MAX_ID || !s_field_ok(f) || (i && f->id <= desc->fields[i - 1].id)) {
            t->ok = false;
            break;
        }
        s_fop_t *op = &t->ops[i];
        op->offset = f->offset;
        op->qoff = f->quantifier_offset;
        op->id = f->id;
        op->type = (uint8_t)f->type;
        op->wt = (uint8_t)s_wire_type(f->type);
        op->esize = (uint8_t)s_elem_size(f->type);
        if (f->label == PROTOBUF_C_LABEL_REPEATED && op->wt != 2 &&
            !(f->flags & PROTOBUF_C_FIELD_FLAG_PACKED)) {
            t->ok = false; /* a proto2-style unpacked repeated scalar */
            break;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            op->kind = op->wt != 2 ? S_PACKED : S_EACH;
        else
            op->kind = f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF ? S_ONEOF : S_SINGLE;
        uint64_t tag = ((uint64_t)f->id << 3) | (op->kind == S_PACKED ? 2u : op->wt);
        do {
            op->tag[op->taglen++] = (uint8_t)(tag | (tag >= 0x80 ? 0x80 : 0));
            tag >>= 7;
        } while (tag);
        t->idx[f->id] = (uint8_t)(i + 1);
        t->count_first |= f->label == PROTOBUF_C_LABEL_REPEATED && op->wt == 2;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int sub = s_tab_build(f->descriptor, n);
            if (sub < 0)
                t->ok = false;
            else
                op->sub = (uint8_t)sub;
        }
    }
    t->n_ops = (uint8_t)desc->n_fields;
    return (int)k;
}

/* The table of desc, built on first use. */
static const s_tab_t *s_tab_get(const ProtobufCMessageDescriptor *desc)
{
    unsigned n = atomic_load_explicit(&s_n_tabs, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (s_tabs[i].desc == desc)
            return &s_tabs[i];
    pthread_mutex_lock(&s_tabs_lock);
    n = atomic_load_explicit(&s_n_tabs, memory_order_relaxed);
    int k = s_tab_build(desc, &n);
    atomic_store_explicit(&s_n_tabs, n, memory_order_release);
    pthread_mutex_unlock(&s_tabs_lock);
    return k < 0 ? NULL : &s_tabs[k];
}

/* ---- decoding --------------------------------------------------------- */

typedef struct s_dec {
    sl_codec_alloc_fn alloc;
    void *data;
    int depth;
} s_dec_t;

/* A varint at *pp (at most ten bytes, the value fitting 64 bits); false if not. */
static inline bool s_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {
        *v = *p;
        *pp = p + 1;
        return true;
    }
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && p < end; shift += 7) {
        uint8_t b = *p++;
        if (shift == 63 && b > 1)
            return false;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            *pp = p;
            return true;
        }
    }
    return false;
}

/* A tag or a length: protobuf-c reads neither from more than five bytes. */
static inline bool s_varint5(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    const uint8_t *p = *pp;
    return s_varint(pp, end, v) && *pp - p <= 5;
}

/* Skip one value of wire type wt; false if it does not fit or is a group. */
static bool s_skip(const uint8_t **pp, const uint8_t *end, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0:
        return s_varint(pp, end, &v);
    case 1:
        if (end - *pp < 8)
            return false;
        *pp += 8;
        return true;
    case 2:
        if (!s_varint5(pp, end, &v) || v > (uint64_t)(end - *pp))
            return false;
        *pp += v;
        return true;
    case 5:
        if (end - *pp < 4)
            return false;
        *pp += 4;
        return true;
    default:
        return false;
    }
}

/* Store one scalar read from [*pp, end) at dst; false if it does not parse. */
static bool s_scalar(ProtobufCType type, const uint8_t **pp, const uint8_t *end, void *dst)
{
    uint64_t v;
    if (type == PROTOBUF_C_TYPE_FLOAT || type == PROTOBUF_C_TYPE_FIXED32) {
        if (end - *pp < 4)
            return false;
        memcpy(dst, *pp, 4); /* little-endian, as the wire (checked at the top) */
        *pp += 4;
        return true;
    }
    if (!s_varint(pp, end, &v))
        return false;
    switch (type) {
    case PROTOBUF_C_TYPE_UINT64:
        *(uint64_t *)dst = v;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)dst = v != 0;
        break;
    default: /* int32, uint32, enum: the low 32 bits, as protobuf-c */
        *(uint32_t *)dst = (uint32_t)v;
        break;
    }
    return true;
}

/*
 * First pass over a message with repeated delimited fields (the batches):
 * count each one's elements and allocate the arrays, leaving the counts at
 * 0 for the fill. Packed scalars are counted when they are met.
 */
static int s_count(const s_tab_t *t, const uint8_t *p, const uint8_t *end, uint8_t *m, s_dec_t *d)
{
    size_t count[S_MAX_FIELDS] = {0};
    while (p < end) {
        uint64_t tag;
        if (!s_varint5(&p, end, &tag) || (tag >> 3) >= S_MAX_ID || !t->idx[tag >> 3])
            return SL_CODEC_DEFER;
        unsigned fi = t->idx[tag >> 3] - 1u, wt = (unsigned)(tag & 7);
        if (!s_skip(&p, end, wt))
            return SL_CODEC_DEFER;
        if (t->ops[fi].kind == S_EACH && t->ops[fi].wt == 2)
            count[fi]++;
    }
    for (unsigned fi = 0; fi < t->n_ops; fi++) {
        if (!count[fi])
            continue;
        void *arr = d->alloc(d->data, count[fi] * t->ops[fi].esize);
        if (!arr)
            return SL_CODEC_NOMEM;
        *(void **)(m + t->ops[fi].offset) = arr;
    }
    return SL_CODEC_DONE;
}

static int s_msg(const s_tab_t *t, const uint8_t *p, const uint8_t *end, s_dec_t *d, void **out);

/* A string of len bytes at p, copied and NUL-terminated; NULL if out of memory. */
static char *s_str(const uint8_t *p, size_t len, s_dec_t *d)
{
    char *s = d->alloc(d->data, len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* One length-delimited value [p, q) of field op into dst. */
static int s_delimited(const s_fop_t *op, const uint8_t *p, const uint8_t *q, s_dec_t *d, void *dst)
{
    size_t len = (size_t)(q - p);
    switch (op->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_msg(&s_tabs[op->sub], p, q, d, dst);
    case PROTOBUF_C_TYPE_STRING:
        return (*(char **)dst = s_str(p, len, d)) ? SL_CODEC_DONE : SL_CODEC_NOMEM;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *bd = dst;
        bd->len = len;
        bd->data = NULL;
        if (len && !(bd->data = d->alloc(d->data, len)))
            return SL_CODEC_NOMEM;
        if (len)
            memcpy(bd->data, p, len);
        return SL_CODEC_DONE;
    }
    default:
        return SL_CODEC_DEFER;
    }
}

/* A packed field's elements [p, q): counted, allocated and stored. */
static int s_packed(const s_fop_t *op, const uint8_t *p, const uint8_t *q, uint8_t *m, s_dec_t *d)
{
    size_t *n = (size_t *)(m + op->qoff), len = (size_t)(q - p), count = 0;
    if (*n)
        return SL_CODEC_DEFER; /* given twice: protobuf-c appends */
    if (op->wt == 5) {         /* float, fixed32: four bytes each, copied as one block */
        if (len % 4)
            return SL_CODEC_DEFER;
        count = len / 4;
        if (!count)
            return SL_CODEC_DONE;
        uint8_t *arr = d->alloc(d->data, len);
        if (!arr)
            return SL_CODEC_NOMEM;
        memcpy(arr, p, len);
        *(void **)(m + op->offset) = arr;
        *n = count;
        return SL_CODEC_DONE;
    } else {
        if (len && (q[-1] & 0x80))
            return SL_CODEC_DEFER;
        for (size_t i = 0; i < len; i++)
            count += !(p[i] & 0x80);
    }
    if (!count)
        return SL_CODEC_DONE;
    uint8_t *arr = d->alloc(d->data, count * op->esize);
    if (!arr)
        return SL_CODEC_NOMEM;
    *(void **)(m + op->offset) = arr;
    for (size_t i = 0; i < count; i++)
        if (!s_scalar(op->type, &p, q, arr + i * op->esize))
            return SL_CODEC_DEFER;
    *n = count;
    return SL_CODEC_DONE;
}

static int s_msg(const s_tab_t *t, const uint8_t *p, const uint8_t *end, s_dec_t *d, void **out)
{
    const ProtobufCMessageDescriptor *desc = t->desc;
    if (!t->ok || d->depth >= S_MAX_DEPTH)
        return SL_CODEC_DEFER;
    uint8_t *m = d->alloc(d->data, desc->sizeof_message);
    if (!m)
        return SL_CODEC_NOMEM;
    desc->message_init((ProtobufCMessage *)m);
    int r;
    if (t->count_first && (r = s_count(t, p, end, m, d)) != SL_CODEC_DONE)
        return r;
    d->depth++;
    uint64_t seen = 0; /* sub-messages given */
    while (p < end) {
        uint64_t tag, len = 0;
        if (!s_varint5(&p, end, &tag) || (tag >> 3) >= S_MAX_ID || !t->idx[tag >> 3])
            return SL_CODEC_DEFER;
        unsigned fi = t->idx[tag >> 3] - 1u, wt = (unsigned)(tag & 7);
        const s_fop_t *op = &t->ops[fi];
        uint8_t *member = m + op->offset;
        if (op->wt != 2) { /* a scalar */
            if (op->kind == S_PACKED) {
                if (wt != 2 || !s_varint5(&p, end, &len) || len > (uint64_t)(end - p))
                    return SL_CODEC_DEFER; /* unpacked: protobuf-c takes both */
                if ((r = s_packed(op, p, p + len, m, d)) != SL_CODEC_DONE)
                    return r;
                p += len;
            } else if (wt != op->wt || !s_scalar(op->type, &p, end, member)) {
                return SL_CODEC_DEFER;
            }
            continue;
        }
        if (wt != 2 || !s_varint5(&p, end, &len) || len > (uint64_t)(end - p))
            return SL_CODEC_DEFER;
        const uint8_t *q = p + len;
        if (op->kind == S_EACH) {
            /* the counting pass allocated the array */
            size_t *n = (size_t *)(m + op->qoff);
            void *dst = *(uint8_t **)member + *n * op->esize;
            if ((r = s_delimited(op, p, q, d, dst)) != SL_CODEC_DONE)
                return r;
            (*n)++;
            p = q;
            continue;
        }
        if (op->kind == S_ONEOF) {
            uint32_t *which = (uint32_t *)(m + op->qoff);
            if (*which)
                return SL_CODEC_DEFER; /* a second member of the oneof */
            *which = op->id;
        } else if (op->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (seen & (1ull << fi))
                return SL_CODEC_DEFER; /* protobuf-c merges a repeated sub-message */
            seen |= 1ull << fi;
        }
        if ((r = s_delimited(op, p, q, d, member)) != SL_CODEC_DONE)
            return r;
        p = q;
    }
    d->depth--;
    *out = m;
    return SL_CODEC_DONE;
}

int sl_codec_decode(const ProtobufCMessageDescriptor *desc, const void *buf, size_t len,
                    sl_codec_alloc_fn alloc, void *alloc_data, ProtobufCMessage **msg_p)
{
    const s_tab_t *t = s_tab_get(desc);
    if (!t)
        return SL_CODEC_DEFER;
    s_dec_t d = {.alloc = alloc, .data = alloc_data};
    void *m = NULL;
    int r = s_msg(t, buf, (const uint8_t *)buf + len, &d, &m);
    if (r == SL_CODEC_DONE)
        *msg_p = m;
    return r;
}

/* ---- encoding --------------------------------------------------------- */

/* Bytes of the varint encoding of v. */
static inline size_t s_varint_len(uint64_t v)
{
    return (size_t)(64 - __builtin_clzll(v | 1) + 6) / 7;
}

/* Write v as a varint ending at p; the new start, or NULL below lo. */
static inline uint8_t *s_put_varint(uint8_t *p, uint8_t *lo, uint64_t v)
{
    if (v < 0x80 && p > lo) {
        *--p = (uint8_t)v;
        return p;
    }
    size_t n = s_varint_len(v);
    if ((size_t)(p - lo) < n)
        return NULL;
    p -= n;
    for (size_t i = 0; i + 1 < n; i++, v >>= 7)
        p[i] = (uint8_t)(v | 0x80);
    p[n - 1] = (uint8_t)v;
    return p;
}

static inline uint8_t *s_put_bytes(uint8_t *p, uint8_t *lo, const void *src, size_t len)
{
    if ((size_t)(p - lo) < len)
        return NULL;
    p -= len;
    if (len)
        memcpy(p, src, len);
    return p;
}

static uint8_t *s_enc(const s_tab_t *t, const ProtobufCMessage *m, uint8_t *lo, uint8_t *p);

/* The value of a field (no tag) ending at p. */
static inline uint8_t *s_enc_value(const s_fop_t *op, const void *v, uint8_t *lo, uint8_t *p)
{
    switch (op->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_ENUM: /* negative: ten bytes, sign-extended */
        return s_put_varint(p, lo, (uint64_t)(int64_t) * (const int32_t *)v);
    case PROTOBUF_C_TYPE_UINT32:
        return s_put_varint(p, lo, *(const uint32_t *)v);
    case PROTOBUF_C_TYPE_UINT64:
        return s_put_varint(p, lo, *(const uint64_t *)v);
    case PROTOBUF_C_TYPE_BOOL:
        return s_put_varint(p, lo, *(const protobuf_c_boolean *)v ? 1 : 0);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
        return s_put_bytes(p, lo, v, 4);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        size_t len = s ? strlen(s) : 0;
        p = s_put_bytes(p, lo, s, len);
        return p ? s_put_varint(p, lo, len) : NULL;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = v;
        p = s_put_bytes(p, lo, bd->data, bd->len);
        return p ? s_put_varint(p, lo, bd->len) : NULL;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)v;
        uint8_t *end = p;
        if (sub && !(p = s_enc(&s_tabs[op->sub], sub, lo, p)))
            return NULL;
        return s_put_varint(p, lo, (uint64_t)(end - p));
    }
    default:
        return NULL;
    }
}

/* A proto3 field left out of the encoding (protobuf-c's test, type by type). */
static inline bool s_zeroish(const s_fop_t *op, const void *v)
{
    switch (op->type) {
    case PROTOBUF_C_TYPE_UINT64:
        return *(const uint64_t *)v == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)v == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)v == 0;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)v;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)v)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)v == NULL;
    default:
        return *(const uint32_t *)v == 0;
    }
}

/* m with protobuf-c itself (a descriptor this codec does not handle, or
 * unknown fields kept from a decode). */
static uint8_t *s_enc_fallback(const ProtobufCMessage *m, uint8_t *lo, uint8_t *p)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if ((size_t)(p - lo) < len)
        return NULL;
    p -= len;
    protobuf_c_message_pack(m, p);
    return p;
}

static inline uint8_t *s_put_tag(const s_fop_t *op, uint8_t *lo, uint8_t *p)
{
    return s_put_bytes(p, lo, op->tag, op->taglen);
}

static uint8_t *s_enc(const s_tab_t *t, const ProtobufCMessage *m, uint8_t *lo, uint8_t *p)
{
    const uint8_t *base = (const uint8_t *)m;
    if (!t->ok || m->n_unknown_fields)
        return s_enc_fallback(m, lo, p);
    for (unsigned i = t->n_ops; i-- > 0 && p;) {
        const s_fop_t *op = &t->ops[i];
        const uint8_t *v = base + op->offset;
        switch (op->kind) {
        case S_SINGLE:
            if (s_zeroish(op, v))
                continue;
            break;
        case S_ONEOF:
            if (*(const uint32_t *)(base + op->qoff) != op->id ||
                (op->wt == 2 && op->type != PROTOBUF_C_TYPE_BYTES && !*(void *const *)v))
                continue;
            break;
        default: {
            size_t n = *(const size_t *)(base + op->qoff);
            const uint8_t *arr = *(uint8_t *const *)v;
            if (!n)
                continue;
            if (op->kind == S_EACH) {
                for (size_t j = n; j-- > 0 && p;)
                    if ((p = s_enc_value(op, arr + j * op->esize, lo, p)))
                        p = s_put_tag(op, lo, p);
                continue;
            }
            uint8_t *packed_end = p;
            if (op->wt == 5) /* float, fixed32: the array is its encoding */
                p = s_put_bytes(p, lo, arr, n * 4);
            else
                for (size_t j = n; j-- > 0 && p;)
                    p = s_enc_value(op, arr + j * op->esize, lo, p);
            if (p)
                p = s_put_varint(p, lo, (uint64_t)(packed_end - p));
            if (p)
                p = s_put_tag(op, lo, p);
            continue;
        }
        }
        if ((p = s_enc_value(op, v, lo, p)))
            p = s_put_tag(op, lo, p);
    }
    return p;
}

uint8_t *sl_codec_encode(const ProtobufCMessage *msg, uint8_t *lo, uint8_t *hi)
{
    const s_tab_t *t = s_tab_get(msg->descriptor);
    return t ? s_enc(t, msg, lo, hi) : s_enc_fallback(msg, lo, hi);
}
