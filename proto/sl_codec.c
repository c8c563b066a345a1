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
 *   - decoding is one pass per message (two where it has repeated fields:
 *     a count, then the fill), with a field table indexed by field number,
 *     built once per descriptor from the descriptor itself;
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

#define S_MAX_ID 64     /* field numbers below this are looked up directly */
#define S_MAX_FIELDS 64 /* fields per message handled here */
#define S_MAX_TABS 64   /* message types handled here */
#define S_MAX_DEPTH 32  /* nesting decoded here */

/* One message type's decoding table. */
typedef struct s_tab {
    const ProtobufCMessageDescriptor *desc;
    uint8_t idx[S_MAX_ID];     /* field number -> index in desc->fields + 1; 0: unknown */
    uint8_t sub[S_MAX_FIELDS]; /* message fields: their table */
    bool ok;                   /* every field is of a kind handled here */
    bool repeated;             /* it has repeated fields: count them first */
} s_tab_t;

static s_tab_t s_tabs[S_MAX_TABS];
static atomic_uint s_n_tabs; /* tables published (complete, never changed again) */
static pthread_mutex_t s_tabs_lock = PTHREAD_MUTEX_INITIALIZER;

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
        if (f->id >= S_MAX_ID || !s_field_ok(f)) {
            t->ok = false;
            break;
        }
        t->idx[f->id] = (uint8_t)(i + 1);
        t->repeated |= f->label == PROTOBUF_C_LABEL_REPEATED;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int sub = s_tab_build(f->descriptor, n);
            if (sub < 0)
                t->ok = false;
            else
                t->sub[i] = (uint8_t)sub;
        }
    }
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

/* Store one scalar read from [*pp, end) at dst; false if it does not parse. */
static bool s_scalar(ProtobufCType type, const uint8_t **pp, const uint8_t *end, void *dst)
{
    uint64_t v;
    if (type == PROTOBUF_C_TYPE_FLOAT) {
        if (end - *pp < 4)
            return false;
        memcpy(dst, *pp, 4);
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
 * First pass over a message with repeated fields: count each one's
 * elements, allocate the arrays and leave the counts at 0 for the fill.
 */
static int s_count(const s_tab_t *t, const uint8_t *p, const uint8_t *end, uint8_t *m,
                   s_dec_t *d)
{
    const ProtobufCMessageDescriptor *desc = t->desc;
    size_t count[S_MAX_FIELDS] = {0};
    uint64_t packed_seen = 0;
    while (p < end) {
        uint64_t tag;
        if (!s_varint5(&p, end, &tag) || (tag >> 3) >= S_MAX_ID || !t->idx[tag >> 3])
            return SL_CODEC_DEFER;
        unsigned fi = t->idx[tag >> 3] - 1u, wt = (unsigned)(tag & 7);
        const ProtobufCFieldDescriptor *f = &desc->fields[fi];
        const uint8_t *v = p;
        if (!s_skip(&p, end, wt))
            return SL_CODEC_DEFER;
        if (f->label != PROTOBUF_C_LABEL_REPEATED)
            continue;
        if (wt != 2)
            return SL_CODEC_DEFER; /* an unpacked repeated scalar */
        ProtobufCType ty = f->type;
        if (ty == PROTOBUF_C_TYPE_STRING || ty == PROTOBUF_C_TYPE_BYTES ||
            ty == PROTOBUF_C_TYPE_MESSAGE) {
            count[fi]++;
            continue;
        }
        if (packed_seen & (1ull << fi))
            return SL_CODEC_DEFER; /* a packed field given twice */
        packed_seen |= 1ull << fi;
        uint64_t len = 0;
        s_varint(&v, end, &len);
        if (ty == PROTOBUF_C_TYPE_FLOAT) {
            if (len % 4)
                return SL_CODEC_DEFER;
            count[fi] = len / 4;
        } else {
            if (len && (v[len - 1] & 0x80))
                return SL_CODEC_DEFER;
            for (uint64_t i = 0; i < len; i++)
                count[fi] += !(v[i] & 0x80);
        }
    }
    for (unsigned fi = 0; fi < desc->n_fields; fi++) {
        if (!count[fi])
            continue;
        const ProtobufCFieldDescriptor *f = &desc->fields[fi];
        void *arr = d->alloc(d->data, count[fi] * s_elem_size(f->type));
        if (!arr)
            return SL_CODEC_NOMEM;
        *(void **)(m + f->offset) = arr;
    }
    return SL_CODEC_DONE;
}

static int s_msg(const s_tab_t *t, const uint8_t *p, const uint8_t *end, s_dec_t *d,
                 void **out);

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

/* One length-delimited value [p, q) of field f into dst. */
static int s_delimited(const s_tab_t *t, unsigned fi, const uint8_t *p, const uint8_t *q,
                       s_dec_t *d, void *dst)
{
    const ProtobufCFieldDescriptor *f = &t->desc->fields[fi];
    size_t len = (size_t)(q - p);
    switch (f->type) {
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_msg(&s_tabs[t->sub[fi]], p, q, d, dst);
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

static int s_msg(const s_tab_t *t, const uint8_t *p, const uint8_t *end, s_dec_t *d,
                 void **out)
{
    const ProtobufCMessageDescriptor *desc = t->desc;
    if (!t->ok || d->depth >= S_MAX_DEPTH)
        return SL_CODEC_DEFER;
    uint8_t *m = d->alloc(d->data, desc->sizeof_message);
    if (!m)
        return SL_CODEC_NOMEM;
    desc->message_init((ProtobufCMessage *)m);
    int r;
    if (t->repeated && (r = s_count(t, p, end, m, d)) != SL_CODEC_DONE)
        return r;
    d->depth++;
    uint64_t seen = 0; /* sub-messages and oneof members given */
    while (p < end) {
        uint64_t tag, len = 0;
        if (!s_varint5(&p, end, &tag) || (tag >> 3) >= S_MAX_ID || !t->idx[tag >> 3])
            return SL_CODEC_DEFER;
        unsigned fi = t->idx[tag >> 3] - 1u, wt = (unsigned)(tag & 7);
        const ProtobufCFieldDescriptor *f = &desc->fields[fi];
        uint8_t *member = m + f->offset;
        ProtobufCType ty = f->type;
        bool delimited = ty == PROTOBUF_C_TYPE_STRING || ty == PROTOBUF_C_TYPE_BYTES ||
                         ty == PROTOBUF_C_TYPE_MESSAGE;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            /* the counting pass checked the wire types and lengths */
            size_t *n = (size_t *)(m + f->quantifier_offset);
            s_varint(&p, end, &len);
            const uint8_t *q = p + len;
            if (delimited) {
                void *dst = *(uint8_t **)member + *n * s_elem_size(ty);
                if ((r = s_delimited(t, fi, p, q, d, dst)) != SL_CODEC_DONE)
                    return r;
                (*n)++;
            } else {
                uint8_t *arr = *(uint8_t **)member;
                while (p < q)
                    if (!s_scalar(ty, &p, q, arr + (*n)++ * s_elem_size(ty)))
                        return SL_CODEC_DEFER;
            }
            p = q;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)(m + f->quantifier_offset);
            if (*which)
                return SL_CODEC_DEFER; /* a second member of the oneof */
            *which = f->id;
        }
        if (!delimited) {
            if (wt != (ty == PROTOBUF_C_TYPE_FLOAT ? 5u : 0u) || !s_scalar(ty, &p, end, member))
                return SL_CODEC_DEFER;
            continue;
        }
        if (wt != 2 || !s_varint5(&p, end, &len) || len > (uint64_t)(end - p))
            return SL_CODEC_DEFER;
        if (ty == PROTOBUF_C_TYPE_MESSAGE) {
            if (seen & (1ull << fi))
                return SL_CODEC_DEFER; /* protobuf-c merges a repeated sub-message */
            seen |= 1ull << fi;
        }
        if ((r = s_delimited(t, fi, p, p + len, d, member)) != SL_CODEC_DONE)
            return r;
        p += len;
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

static uint8_t *s_enc(const ProtobufCMessage *m, uint8_t *lo, uint8_t *p);

/* The value of a field (no tag) ending at p. */
static uint8_t *s_enc_value(ProtobufCType type, const void *v, uint8_t *lo, uint8_t *p)
{
    switch (type) {
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
        if (sub && !(p = s_enc(sub, lo, p)))
            return NULL;
        return s_put_varint(p, lo, (uint64_t)(end - p));
    }
    default:
        return NULL;
    }
}

static unsigned s_wire_type(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_FLOAT:
        return 5;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

/* A proto3 field left out of the encoding (protobuf-c's test, type by type). */
static bool s_zeroish(ProtobufCType type, const void *v)
{
    switch (type) {
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

/* m with protobuf-c itself (a descriptor this codec does not handle). */
static uint8_t *s_enc_fallback(const ProtobufCMessage *m, uint8_t *lo, uint8_t *p)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    if ((size_t)(p - lo) < len)
        return NULL;
    p -= len;
    protobuf_c_message_pack(m, p);
    return p;
}

static uint8_t *s_enc(const ProtobufCMessage *m, uint8_t *lo, uint8_t *p)
{
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    const uint8_t *base = (const uint8_t *)m;
    uint8_t *end = p;
    if (m->n_unknown_fields)
        return s_enc_fallback(m, lo, end);
    for (unsigned i = desc->n_fields; i-- > 0 && p;) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        const uint8_t *v = base + f->offset;
        if (!s_field_ok(f))
            return s_enc_fallback(m, lo, end);
        uint64_t tag = (uint64_t)f->id << 3;
        unsigned wt = s_wire_type(f->type);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const uint8_t *arr = *(uint8_t *const *)v;
            size_t es = s_elem_size(f->type);
            if (!n)
                continue;
            if (wt == 2 || !(f->flags & PROTOBUF_C_FIELD_FLAG_PACKED)) {
                for (size_t j = n; j-- > 0 && p;)
                    if ((p = s_enc_value(f->type, arr + j * es, lo, p)))
                        p = s_put_varint(p, lo, tag | wt);
                continue;
            }
            uint8_t *packed_end = p;
            for (size_t j = n; j-- > 0 && p;)
                p = s_enc_value(f->type, arr + j * es, lo, p);
            if (p)
                p = s_put_varint(p, lo, (uint64_t)(packed_end - p));
            if (p)
                p = s_put_varint(p, lo, tag | 2);
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id ||
                (wt == 2 && f->type != PROTOBUF_C_TYPE_BYTES && !*(void *const *)v))
                continue;
        } else if (s_zeroish(f->type, v)) {
            continue;
        }
        if ((p = s_enc_value(f->type, v, lo, p)))
            p = s_put_varint(p, lo, tag | wt);
    }
    return p;
}

uint8_t *sl_codec_encode(const ProtobufCMessage *msg, uint8_t *lo, uint8_t *hi)
{
    return s_enc(msg, lo, hi);
}
