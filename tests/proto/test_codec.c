/*
 * Differential tests of the fast codec (proto/sl_codec.h) against protobuf-c.
 * Random Envelopes of every body are encoded by both (same bytes, and the
 * room checks of sl_codec_encode) and decoded by both (sl_codec_decode must
 * answer DONE for protobuf-c's own bytes and build the same structs).
 * Corruptions and non-canonical encodings of those bytes (truncations, bit
 * flips, duplicated and unknown fields, a second oneof member, unpacked
 * repeated scalars, overlong varints, lengths past the end) may be left to
 * protobuf-c, but whatever the codec decodes must be what protobuf-c
 * decodes; an allocator failing at every point gives NOMEM or DEFER; and
 * sl_proto_decode accepts exactly what protobuf-c plus validation accept.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sl_codec.h"
#include "proto/sl_proto.h"

#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif

#ifdef S_ASAN
#include <sanitizer/asan_interface.h>
#define S_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define S_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#define S_REDZONE sizeof(max_align_t)
#define S_SCALE 2 /* sanitizer builds run half the iterations */
#else
#define S_POISON(p, n) ((void)(p), (void)(n))
#define S_UNPOISON(p, n) ((void)(p), (void)(n))
#define S_REDZONE 0
#define S_SCALE 1
#endif

#define S_ENC_MSGS (40000 / S_SCALE)  /* random messages encoded and decoded */
#define S_MUT_MSGS (6000 / S_SCALE)   /* messages whose corruptions are decoded */
#define S_MUT_EACH 40                 /* random corruptions per message */
#define S_NOMEM_MSGS (4000 / S_SCALE) /* messages decoded with a failing allocator */
#define S_BUF (1u << 20)

/* ---- random numbers (xorshift64*, fixed seeds) ------------------------ */

static uint64_t s_state;

static void s_seed(uint64_t seed)
{
    s_state = seed * 0x9e3779b97f4a7c15ull + 1;
}

static uint64_t s_next(void)
{
    s_state ^= s_state >> 12;
    s_state ^= s_state << 25;
    s_state ^= s_state >> 27;
    return s_state * 0x2545f4914f6cdd1dull;
}

static uint32_t s_below(uint32_t n)
{
    return (uint32_t)(s_next() % n);
}

/* ---- bump allocators --------------------------------------------------- */

typedef struct s_bump {
    uint8_t *base;
    size_t cap, used;
} s_bump_t;

static _Alignas(max_align_t) uint8_t s_gen_mem[8u << 20];
static _Alignas(max_align_t) uint8_t s_dec_mem[16u << 20];
static s_bump_t s_gen = {s_gen_mem, sizeof(s_gen_mem), 0};
static s_bump_t s_dec = {s_dec_mem, sizeof(s_dec_mem), 0};

/* size bytes aligned for any type; under ASan the rest stays poisoned */
static void *s_bump_alloc(void *data, size_t size)
{
    s_bump_t *b = data;
    size_t a = sizeof(max_align_t);
    size_t n = (size + a - 1) / a * a + S_REDZONE;
    if (b->cap - b->used < n)
        return NULL;
    uint8_t *p = b->base + b->used;
    b->used += n;
    S_UNPOISON(p, size);
    return p;
}

static void s_bump_reset(s_bump_t *b)
{
    S_POISON(b->base, b->used);
    b->used = 0;
}

static void *s_galloc(size_t size)
{
    void *p = s_bump_alloc(&s_gen, size);
    assert_non_null(p);
    return p;
}

/* An allocator that fails after budget allocations; each block is malloc'd
 * on its own (so ASan sees the bounds of every one) and freed by s_fail_drop. */
typedef struct s_failing {
    size_t budget, n;
    void *blocks[1 << 14];
} s_failing_t;

static void *s_failing_alloc(void *data, size_t size)
{
    s_failing_t *f = data;
    if (f->n >= f->budget || f->n >= sizeof(f->blocks) / sizeof(f->blocks[0]))
        return NULL;
    void *p = malloc(size ? size : 1);
    assert_non_null(p);
    f->blocks[f->n++] = p;
    return p;
}

static void s_failing_drop(s_failing_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->blocks[i]);
    f->n = 0;
}

/* ---- random messages --------------------------------------------------- */

static bool s_tame; /* values that mostly pass sl_proto_validate */

/* A value needing 1..10 varint bytes, 0, or UINT64_MAX. */
static uint64_t s_rand_u64(void)
{
    if (s_tame)
        return 1 + s_below(1000);
    unsigned k = s_below(12);
    if (k == 0)
        return 0;
    if (k >= 10)
        return k == 11 ? UINT64_MAX : s_next() | (1ull << 63);
    return (s_next() & ((1ull << (7 * k)) - 1)) | (1ull << (7 * k - 1));
}

/* A value needing 1..5 varint bytes, 0, or UINT32_MAX. */
static uint32_t s_rand_u32(void)
{
    if (s_tame)
        return 1 + s_below(64);
    unsigned k = s_below(7);
    if (k == 0)
        return 0;
    if (k == 6)
        return UINT32_MAX;
    uint64_t v = (s_next() & ((1ull << (7 * k)) - 1)) | (1ull << (7 * k - 1));
    return (uint32_t)(v | (k == 5 ? 1u << 31 : 0));
}

static int32_t s_rand_i32(void)
{
    static const int32_t special[] = {0, 1, -1, -2, 127, -128, 1000, -1000, INT32_MAX, INT32_MIN};
    if (s_below(2))
        return special[s_below(sizeof(special) / sizeof(special[0]))];
    return (int32_t)s_rand_u32();
}

static float s_rand_float(void)
{
    static const float special[] = {0.0f, -0.0f, 1.0f, 0.5f, -1.0f, 1e-40f, 3.4e38f};
    if (s_tame)
        return (float)s_below(101) / 100.0f;
    if (s_below(4) == 0) {
        uint32_t bits = (uint32_t)s_next(); /* NaNs, infinities and denormals too */
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
    }
    return special[s_below(sizeof(special) / sizeof(special[0]))];
}

static char *s_rand_str(bool may_be_null)
{
    if (!s_tame && may_be_null && s_below(16) == 0)
        return NULL;
    size_t len = s_tame            ? 1 + s_below(8)
                 : s_below(4) == 0 ? 0
                 : s_below(8)      ? s_below(16)
                                   : 100 + s_below(200);
    char *s = s_galloc(len + 1);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)(s_tame ? 'a' + s_below(26) : 1 + s_below(255));
    s[len] = '\0';
    return s;
}

static void s_rand_bytes(ProtobufCBinaryData *bd)
{
    size_t len = s_below(3) == 0 ? 0 : s_below(8) ? 1 + s_below(40) : 128 + s_below(300);
    if (s_tame && len > 64)
        len = 64;
    bd->len = len;
    bd->data = len ? s_galloc(len) : NULL;
    for (size_t i = 0; i < len; i++)
        bd->data[i] = (uint8_t)s_next();
}

static int32_t s_rand_enum(const ProtobufCEnumDescriptor *ed)
{
    if (s_tame || s_below(2))
        return ed->values[s_below(ed->n_values)].value;
    static const int32_t odd[] = {-1, -7, INT32_MIN, INT32_MAX, 77, 6, 1000};
    return odd[s_below(sizeof(odd) / sizeof(odd[0]))];
}

static ProtobufCMessage *s_rand_msg(const ProtobufCMessageDescriptor *desc, int oneof_id);

/* One value of field f (not its repeated array) into dst. */
static void s_rand_value(const ProtobufCFieldDescriptor *f, void *dst, bool in_array)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
        *(int32_t *)dst = s_rand_i32();
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *(uint32_t *)dst = s_rand_u32();
        break;
    case PROTOBUF_C_TYPE_UINT64:
        *(uint64_t *)dst = s_rand_u64();
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *(protobuf_c_boolean *)dst =
            s_below(8) ? (protobuf_c_boolean)s_below(2) : (protobuf_c_boolean)(2 + s_below(100));
        break;
    case PROTOBUF_C_TYPE_ENUM:
        *(int32_t *)dst = s_rand_enum(f->descriptor);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        *(float *)dst = s_rand_float();
        break;
    case PROTOBUF_C_TYPE_STRING:
        *(char **)dst = s_rand_str(in_array ? false : true);
        break;
    case PROTOBUF_C_TYPE_BYTES:
        s_rand_bytes(dst);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        /* absent, empty or random; an array holds messages only */
        if (!in_array && s_below(s_tame ? 12 : 4) == 0) {
            *(void **)dst = NULL;
        } else if (s_below(6) == 0) {
            const ProtobufCMessageDescriptor *sub = f->descriptor;
            *(void **)dst = s_galloc(sub->sizeof_message);
            protobuf_c_message_init(sub, *(void **)dst);
        } else {
            *(void **)dst = s_rand_msg(f->descriptor, -1);
        }
        break;
    default:
        fail_msg("field %s has a type this test does not generate", f->name);
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
        return sizeof(uint32_t);
    }
}

/*
 * A random message of desc from s_gen. oneof_id picks the member of its
 * oneof (0: none; -1: random); every other field is set or left at its
 * default at random, repeated ones with 0..N entries.
 */
static ProtobufCMessage *s_rand_msg(const ProtobufCMessageDescriptor *desc, int oneof_id)
{
    uint8_t *m = s_galloc(desc->sizeof_message);
    protobuf_c_message_init(desc, m);
    if (oneof_id < 0) {
        oneof_id = 0;
        for (unsigned i = 0; i < desc->n_fields; i++)
            if ((desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && s_below(3) == 0)
                oneof_id = (int)desc->fields[i].id;
    }
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        uint8_t *member = m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if ((int)f->id != oneof_id)
                continue;
            *(uint32_t *)(m + f->quantifier_offset) = f->id;
            if (!s_tame && s_below(40) == 0)
                continue; /* the case set, the member left NULL */
            s_rand_value(f, member, true);
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = s_below(3) == 0 ? 0 : s_below(6) ? 1 + s_below(5) : 6 + s_below(40);
            if (s_tame && n == 0)
                n = 1;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && n > 6)
                n = 6;
            size_t es = s_elem_size(f->type);
            uint8_t *arr = n ? s_galloc(n * es) : NULL;
            for (size_t j = 0; j < n; j++)
                s_rand_value(f, arr + j * es, true);
            *(size_t *)(m + f->quantifier_offset) = n;
            *(void **)member = arr;
            continue;
        }
        if (!s_tame && s_below(4) == 0)
            continue; /* left at its default */
        s_rand_value(f, member, false);
    }
    return (ProtobufCMessage *)m;
}

static const int s_bodies[] = {0, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 26, 27, 28, 29};
#define S_N_BODIES (sizeof(s_bodies) / sizeof(s_bodies[0]))

/* The i-th random Envelope (bodies in turn; every other one tame). */
static Sluice__Envelope *s_rand_env(unsigned i)
{
    s_tame = (i / S_N_BODIES) % 2 == 1;
    Sluice__Envelope *env =
        (Sluice__Envelope *)s_rand_msg(&sluice__envelope__descriptor, s_bodies[i % S_N_BODIES]);
    if (s_tame)
        env->version = SL_PROTO_VERSION;
    return env;
}

/* ---- comparing decoded messages ---------------------------------------- */

static bool s_same_msg(const ProtobufCMessage *a, const ProtobufCMessage *b, const char **where);

static bool s_same_value(const ProtobufCFieldDescriptor *f, const void *a, const void *b,
                         const char **where)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *x = *(char *const *)a, *y = *(char *const *)b;
        return (!x && !y) || (x && y && strcmp(x, y) == 0);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *x = a, *y = b;
        return x->len == y->len && !x->data == !y->data &&
               (!x->len || memcmp(x->data, y->data, x->len) == 0);
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return s_same_msg(*(ProtobufCMessage *const *)a, *(ProtobufCMessage *const *)b, where);
    default:
        return memcmp(a, b, s_elem_size(f->type)) == 0;
    }
}

/* a and b hold the same values, field by field (NULL-ness included). */
static bool s_same_msg(const ProtobufCMessage *a, const ProtobufCMessage *b, const char **where)
{
    if (!a || !b)
        return !a && !b;
    const ProtobufCMessageDescriptor *desc = a->descriptor;
    *where = desc->name;
    if (b->descriptor != desc || a->n_unknown_fields != b->n_unknown_fields)
        return false;
    for (unsigned i = 0; i < a->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *x = &a->unknown_fields[i], *y = &b->unknown_fields[i];
        if (x->tag != y->tag || x->wire_type != y->wire_type || x->len != y->len ||
            memcmp(x->data, y->data, x->len) != 0)
            return false;
    }
    const uint8_t *pa = (const uint8_t *)a, *pb = (const uint8_t *)b;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &desc->fields[i];
        *where = f->name;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t ca = *(const uint32_t *)(pa + f->quantifier_offset);
            uint32_t cb = *(const uint32_t *)(pb + f->quantifier_offset);
            if (ca != cb)
                return false;
            if (ca != f->id)
                continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t na = *(const size_t *)(pa + f->quantifier_offset);
            size_t nb = *(const size_t *)(pb + f->quantifier_offset);
            const uint8_t *xa = *(uint8_t *const *)(pa + f->offset);
            const uint8_t *xb = *(uint8_t *const *)(pb + f->offset);
            if (na != nb || !xa != !xb)
                return false;
            size_t es = s_elem_size(f->type);
            for (size_t j = 0; j < na; j++)
                if (!s_same_value(f, xa + j * es, xb + j * es, where))
                    return false;
            continue;
        }
        if (!s_same_value(f, pa + f->offset, pb + f->offset, where))
            return false;
    }
    return true;
}

/* ---- the checks ---------------------------------------------------------- */

static uint8_t s_a[S_BUF], s_b[S_BUF], s_c[S_BUF];

/* protobuf_c_message_pack into s_a (its length) */
static size_t s_pack(const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    assert_true(len <= S_BUF);
    assert_int_equal(protobuf_c_message_pack(m, s_a), len);
    return len;
}

/* sl_codec_encode(m) is protobuf-c's packing of m, byte for byte, and it
 * needs exactly that room. */
static void s_check_encode(const ProtobufCMessage *m)
{
    size_t len = s_pack(m);
    uint8_t *hi = s_b + S_BUF;
    uint8_t *p = sl_codec_encode(m, s_b, hi);
    assert_non_null(p);
    assert_int_equal((size_t)(hi - p), len);
    assert_memory_equal(p, s_a, len);

    /* exactly enough room, then one byte too little: nothing below lo */
    enum { G = 64 };
    memset(s_c, 0xa5, G + len);
    p = sl_codec_encode(m, s_c + G, s_c + G + len);
    assert_ptr_equal(p, s_c + G);
    assert_memory_equal(p, s_a, len);
    for (size_t i = 0; i < G; i++)
        assert_int_equal(s_c[i], 0xa5);
    if (len) {
        memset(s_c, 0xa5, G + len);
        assert_null(sl_codec_encode(m, s_c + G + 1, s_c + G + len));
        for (size_t i = 0; i < G + 1; i++)
            assert_int_equal(s_c[i], 0xa5);
    }
}

static unsigned s_n_done, s_n_defer, s_n_pc_ok;

/*
 * Both decoders on len bytes at buf: a DONE from the codec is what
 * protobuf-c decodes (field by field, and packed again by protobuf-c); what
 * protobuf-c decodes, the codec encodes as protobuf-c packs it. Returns the
 * codec's answer.
 */
static int s_check_decode(const uint8_t *buf, size_t len)
{
    s_bump_reset(&s_dec);
    ProtobufCMessage *fast = NULL;
    int r = sl_codec_decode(&sluice__envelope__descriptor, buf, len, s_bump_alloc, &s_dec, &fast);
    assert_true(r == SL_CODEC_DONE || r == SL_CODEC_DEFER);
    Sluice__Envelope *pc = sluice__envelope__unpack(NULL, len, buf);
    if (r == SL_CODEC_DONE) {
        s_n_done++;
        if (!pc)
            fail_msg("the codec decoded %zu bytes protobuf-c rejects", len);
        const char *where = "";
        if (!s_same_msg(fast, &pc->base, &where))
            fail_msg("decoded messages differ at %s (%zu bytes)", where, len);
        size_t n = s_pack(fast);
        memcpy(s_c, s_a, n);
        assert_int_equal(s_pack(&pc->base), n);
        assert_memory_equal(s_a, s_c, n);
        s_check_encode(fast);
    } else {
        s_n_defer++;
    }
    if (pc) {
        s_n_pc_ok++;
        s_check_encode(&pc->base);
        sluice__envelope__free_unpacked(pc, NULL);
    }
    return r;
}

/* ---- corruptions -------------------------------------------------------- */

static size_t s_put_varint(uint8_t *o, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
}

/* v in nb bytes (more than it needs: an overlong encoding) */
static size_t s_put_varint_long(uint8_t *o, uint64_t v, size_t nb)
{
    for (size_t i = 0; i + 1 < nb; i++, v >>= 7)
        o[i] = (uint8_t)((v & 0x7f) | 0x80);
    o[nb - 1] = (uint8_t)(v & 0x7f);
    return nb;
}

static size_t s_varint_len(uint64_t v)
{
    uint8_t tmp[10];
    return s_put_varint(tmp, v);
}

static bool s_get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    const uint8_t *p = *pp;
    for (unsigned i = 0; i < 10 && p < end; i++) {
        uint8_t b = *p++;
        r |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = r;
            *pp = p;
            return true;
        }
    }
    return false;
}

/* One field of an encoding: [start, tag_end) the tag, [val, end) its value
 * (after the length for wire type 2). */
typedef struct s_fld {
    size_t start, tag_end, val, end;
    uint64_t id;
    unsigned wt;
} s_fld_t;

#define S_MAX_FLDS 512

/* The fields of [b, b + len); -1 if it does not parse. */
static int s_fields(const uint8_t *b, size_t len, s_fld_t *fs)
{
    const uint8_t *p = b, *e = b + len;
    int n = 0;
    while (p < e) {
        if (n == S_MAX_FLDS)
            return -1;
        s_fld_t *f = &fs[n++];
        uint64_t tag, v;
        f->start = (size_t)(p - b);
        if (!s_get_varint(&p, e, &tag))
            return -1;
        f->tag_end = f->val = (size_t)(p - b);
        f->id = tag >> 3;
        f->wt = (unsigned)(tag & 7);
        switch (f->wt) {
        case 0:
            if (!s_get_varint(&p, e, &v))
                return -1;
            break;
        case 1:
        case 5:
            if ((size_t)(e - p) < (f->wt == 1 ? 8u : 4u))
                return -1;
            p += f->wt == 1 ? 8 : 4;
            break;
        case 2:
            if (!s_get_varint(&p, e, &v) || v > (uint64_t)(e - p))
                return -1;
            f->val = (size_t)(p - b);
            p += v;
            break;
        default:
            return -1;
        }
        f->end = (size_t)(p - b);
    }
    return n;
}

static const ProtobufCFieldDescriptor *s_field(const ProtobufCMessageDescriptor *desc, uint64_t id)
{
    return id > UINT32_MAX ? NULL : protobuf_c_message_descriptor_get_field(desc, (unsigned)id);
}

static bool s_packed(const ProtobufCFieldDescriptor *f)
{
    return f && f->label == PROTOBUF_C_LABEL_REPEATED && f->type != PROTOBUF_C_TYPE_STRING &&
           f->type != PROTOBUF_C_TYPE_BYTES && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

/* A random field index of fs[0..n) for which ok holds; -1 if none. */
static int s_pick(const s_fld_t *fs, int n, const ProtobufCMessageDescriptor *desc,
                  bool (*ok)(const s_fld_t *, const ProtobufCMessageDescriptor *))
{
    int cand[S_MAX_FLDS], k = 0;
    for (int i = 0; i < n; i++)
        if (!ok || ok(&fs[i], desc))
            cand[k++] = i;
    return k ? cand[s_below((uint32_t)k)] : -1;
}

static bool s_is_delimited(const s_fld_t *f, const ProtobufCMessageDescriptor *desc)
{
    return f->wt == 2;
}

static bool s_is_varint(const s_fld_t *f, const ProtobufCMessageDescriptor *desc)
{
    return f->wt == 0;
}

static bool s_is_packed(const s_fld_t *f, const ProtobufCMessageDescriptor *desc)
{
    return f->wt == 2 && s_packed(s_field(desc, f->id));
}

static bool s_is_sub(const s_fld_t *f, const ProtobufCMessageDescriptor *desc)
{
    const ProtobufCFieldDescriptor *fd = s_field(desc, f->id);
    return f->wt == 2 && fd && fd->type == PROTOBUF_C_TYPE_MESSAGE;
}

enum {
    S_OP_BYTES,    /* flip, overwrite, insert, delete bytes or truncate */
    S_OP_DUP,      /* a field given twice */
    S_OP_UNKNOWN,  /* an unknown field number */
    S_OP_ONEOF2,   /* another member of the oneof */
    S_OP_UNPACK,   /* a packed field as one tag per element */
    S_OP_SPLIT,    /* a packed field in two runs */
    S_OP_LONG_TAG, /* a tag in more bytes than it needs */
    S_OP_LONG_LEN, /* a length in more bytes than it needs */
    S_OP_LONG_VAL, /* a varint value in more bytes than it needs */
    S_OP_LEN_PAST, /* a length running past the end */
    S_OP_WIRETYPE, /* a tag with another wire type */
    S_OP_ZERO,     /* a field written with its zero value */
    S_OP_SWAP,     /* two fields out of order */
    S_N_OPS
};

/* in with some bytes flipped, overwritten, inserted or deleted, or cut. */
static size_t s_mutate_bytes(const uint8_t *in, size_t len, uint8_t *out)
{
    memcpy(out, in, len);
    size_t at = len ? s_below((uint32_t)len) : 0;
    switch (s_below(5)) {
    case 0: /* flip bits */
        for (unsigned k = 1 + s_below(3); k-- > 0 && len;)
            out[s_below((uint32_t)len)] ^= (uint8_t)(1u << s_below(8));
        return len;
    case 1: /* overwrite bytes */
        for (unsigned k = 1 + s_below(3); k-- > 0 && len;)
            out[s_below((uint32_t)len)] = (uint8_t)s_next();
        return len;
    case 2: { /* insert bytes */
        size_t k = 1 + s_below(4);
        memmove(out + at + k, out + at, len - at);
        for (size_t i = 0; i < k; i++)
            out[at + i] = (uint8_t)s_next();
        return len + k;
    }
    case 3: { /* delete bytes */
        size_t k = 1 + s_below(4);
        if (k > len - at)
            k = len - at;
        memmove(out + at, out + at + k, len - at - k);
        return len - k;
    }
    default:
        return at;
    }
}

/* in (a message of desc) with one field-level corruption at this level;
 * out has room for 4 * len + 64 bytes. */
static size_t s_mutate_fields(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                              const s_fld_t *fs, int n, uint8_t *out)
{
    size_t o = 0;
    int k;
    switch (s_below(S_N_OPS)) {
    case S_OP_DUP:
        if ((k = s_pick(fs, n, desc, NULL)) < 0)
            break;
        memcpy(out, in, len);
        memcpy(out + len, in + fs[k].start, fs[k].end - fs[k].start);
        return len + fs[k].end - fs[k].start;
    case S_OP_UNKNOWN: {
        static const uint64_t ids[] = {0,  2,  5,   9,   30,   31,   40,   62,    63,
                                       64, 65, 127, 128, 1000, 2047, 2048, 65535, 536870911};
        static const unsigned wts[] = {0, 1, 2, 5, 0, 2, 3};
        size_t at = n ? fs[s_below((uint32_t)n)].start : 0;
        if (s_below(2))
            at = len;
        memcpy(out, in, at);
        o = at;
        unsigned wt = wts[s_below(sizeof(wts) / sizeof(wts[0]))];
        o += s_put_varint(out + o, ids[s_below(sizeof(ids) / sizeof(ids[0]))] << 3 | wt);
        size_t vl = wt == 1 ? 8 : wt == 5 ? 4 : wt == 2 ? s_below(6) : 0;
        if (wt == 0)
            o += s_put_varint(out + o, s_rand_u64());
        if (wt == 2)
            o += s_put_varint(out + o, vl);
        for (size_t i = 0; i < vl; i++)
            out[o++] = (uint8_t)s_next();
        memcpy(out + o, in + at, len - at);
        return o + len - at;
    }
    case S_OP_ONEOF2: {
        const ProtobufCFieldDescriptor *members[64];
        unsigned nm = 0;
        for (unsigned i = 0; i < desc->n_fields && nm < 64; i++)
            if (desc->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                members[nm++] = &desc->fields[i];
        if (!nm)
            break;
        const ProtobufCFieldDescriptor *g = members[s_below(nm)];
        memcpy(out, in, len);
        o = len;
        o += s_put_varint(out + o, (uint64_t)g->id << 3 | 2);
        k = s_pick(fs, n, desc, s_is_sub);
        if (k >= 0 && s_below(2)) { /* another body's bytes under this tag */
            o += s_put_varint(out + o, fs[k].end - fs[k].val);
            memcpy(out + o, in + fs[k].val, fs[k].end - fs[k].val);
            o += fs[k].end - fs[k].val;
        } else {
            out[o++] = 0;
        }
        return o;
    }
    case S_OP_UNPACK:
    case S_OP_SPLIT: {
        if ((k = s_pick(fs, n, desc, s_is_packed)) < 0)
            break;
        const s_fld_t *f = &fs[k];
        memcpy(out, in, f->start);
        o = f->start;
        const uint8_t *p = in + f->val, *e = in + f->end;
        size_t cut = f->end - f->val ? s_below((uint32_t)(f->end - f->val + 1)) : 0;
        if (s_below(2) == 0) { /* unpacked: a tag per element, the values as they were */
            while (p < e) {
                const uint8_t *q = p;
                uint64_t v = 0;
                if (!s_get_varint(&q, e, &v))
                    q = e;
                o += s_put_varint(out + o, f->id << 3);
                memcpy(out + o, p, (size_t)(q - p));
                o += (size_t)(q - p);
                p = q;
            }
        } else { /* two packed runs, cut anywhere */
            o += s_put_varint(out + o, f->id << 3 | 2);
            o += s_put_varint(out + o, cut);
            memcpy(out + o, p, cut);
            o += cut;
            o += s_put_varint(out + o, f->id << 3 | 2);
            o += s_put_varint(out + o, (size_t)(e - p) - cut);
            memcpy(out + o, p + cut, (size_t)(e - p) - cut);
            o += (size_t)(e - p) - cut;
        }
        memcpy(out + o, in + f->end, len - f->end);
        return o + len - f->end;
    }
    case S_OP_LONG_TAG:
    case S_OP_LONG_LEN:
    case S_OP_LONG_VAL: {
        unsigned op = s_below(3);
        k = s_pick(fs, n, desc, op == 0 ? NULL : op == 1 ? s_is_delimited : s_is_varint);
        if (k < 0)
            break;
        const s_fld_t *f = &fs[k];
        const uint8_t *p = in + f->start, *e = in + len;
        uint64_t v = 0;
        size_t from = f->start, to;
        if (op != 0)
            p = in + (from = f->tag_end);
        s_get_varint(&p, e, &v);
        to = (size_t)(p - in);
        memcpy(out, in, from);
        o = from;
        o += s_put_varint_long(out + o, v, s_varint_len(v) + 1 + s_below(s_below(2) ? 5 : 10));
        memcpy(out + o, in + to, len - to);
        return o + len - to;
    }
    case S_OP_LEN_PAST: {
        if ((k = s_pick(fs, n, desc, s_is_delimited)) < 0)
            break;
        const s_fld_t *f = &fs[k];
        memcpy(out, in, f->tag_end);
        o = f->tag_end;
        o += s_put_varint(out + o, f->end - f->val + 1 + s_below(s_below(2) ? 3 : 300));
        memcpy(out + o, in + f->val, len - f->val);
        return o + len - f->val;
    }
    case S_OP_WIRETYPE: {
        if ((k = s_pick(fs, n, desc, NULL)) < 0)
            break;
        const s_fld_t *f = &fs[k];
        memcpy(out, in, f->start);
        o = f->start;
        o += s_put_varint(out + o, f->id << 3 | ((f->wt + 1 + s_below(7)) & 7));
        memcpy(out + o, in + f->tag_end, len - f->tag_end);
        return o + len - f->tag_end;
    }
    case S_OP_ZERO: {
        const ProtobufCFieldDescriptor *g = &desc->fields[s_below(desc->n_fields)];
        size_t at = n && s_below(2) ? fs[s_below((uint32_t)n)].start : len;
        memcpy(out, in, at);
        o = at;
        if (g->type == PROTOBUF_C_TYPE_FLOAT && g->label != PROTOBUF_C_LABEL_REPEATED) {
            o += s_put_varint(out + o, (uint64_t)g->id << 3 | 5);
            memset(out + o, 0, 4);
            o += 4;
        } else if (g->type == PROTOBUF_C_TYPE_STRING || g->type == PROTOBUF_C_TYPE_BYTES ||
                   g->type == PROTOBUF_C_TYPE_MESSAGE || g->label == PROTOBUF_C_LABEL_REPEATED) {
            o += s_put_varint(out + o, (uint64_t)g->id << 3 | 2);
            out[o++] = 0;
        } else {
            o += s_put_varint(out + o, (uint64_t)g->id << 3);
            out[o++] = 0;
        }
        memcpy(out + o, in + at, len - at);
        return o + len - at;
    }
    case S_OP_SWAP: {
        if (n < 2)
            break;
        int i = (int)s_below((uint32_t)n - 1), j = i + 1 + (int)s_below((uint32_t)(n - i - 1));
        memcpy(out, in, fs[i].start);
        o = fs[i].start;
        memcpy(out + o, in + fs[j].start, fs[j].end - fs[j].start);
        o += fs[j].end - fs[j].start;
        memcpy(out + o, in + fs[i].end, fs[j].start - fs[i].end);
        o += fs[j].start - fs[i].end;
        memcpy(out + o, in + fs[i].start, fs[i].end - fs[i].start);
        o += fs[i].end - fs[i].start;
        memcpy(out + o, in + fs[j].end, len - fs[j].end);
        return o + len - fs[j].end;
    }
    default:
        break;
    }
    return s_mutate_bytes(in, len, out);
}

/* in (a message of desc) with one corruption, at this level or inside one
 * of its sub-messages (their lengths kept right); out has room for
 * 4 * len + 64 bytes per level below. */
static size_t s_mutate(const ProtobufCMessageDescriptor *desc, const uint8_t *in, size_t len,
                       uint8_t *out, int depth)
{
    s_fld_t *fs = malloc(S_MAX_FLDS * sizeof(*fs));
    assert_non_null(fs);
    int n = s_fields(in, len, fs);
    size_t o;
    int k = n > 0 && depth < 8 && s_below(3) ? s_pick(fs, n, desc, s_is_sub) : -1;
    if (n < 0) {
        o = s_mutate_bytes(in, len, out);
    } else if (k >= 0) {
        const s_fld_t *f = &fs[k];
        size_t sub_len = f->end - f->val;
        uint8_t *sub = malloc(8 * sub_len + 1024);
        assert_non_null(sub);
        size_t m = s_mutate(s_field(desc, f->id)->descriptor, in + f->val, sub_len, sub, depth + 1);
        memcpy(out, in, f->tag_end);
        o = f->tag_end;
        o += s_put_varint(out + o, m);
        memcpy(out + o, sub, m);
        o += m;
        memcpy(out + o, in + f->end, len - f->end);
        o += len - f->end;
        free(sub);
    } else {
        o = s_mutate_fields(desc, in, len, fs, n, out);
    }
    free(fs);
    return o;
}

/*
 * Calls check on the bytes of S_MUT_MSGS random Envelopes from seed, each
 * cut at every length and corrupted S_MUT_EACH times (one to three
 * corruptions on top of each other).
 */
static void s_for_each_mutant(uint64_t seed, void (*check)(const uint8_t *, size_t))
{
    static uint8_t orig[S_BUF], cur[S_BUF], next[S_BUF];
    s_seed(seed);
    for (unsigned i = 0; i < S_MUT_MSGS; i++) {
        s_bump_reset(&s_gen);
        size_t len = s_pack(&s_rand_env(i)->base);
        if (len > 4096)
            continue; /* keep the corpus quick */
        memcpy(orig, s_a, len);
        for (size_t cut = 0; cut < len; cut++)
            check(orig, cut);
        for (unsigned j = 0; j < S_MUT_EACH; j++) {
            size_t n = len;
            memcpy(cur, orig, len);
            for (unsigned stack = 1 + s_below(3) / 2 + s_below(4) / 3; stack-- > 0;) {
                n = s_mutate(&sluice__envelope__descriptor, cur, n, next, 0);
                assert_true(n < S_BUF / 4);
                memcpy(cur, next, n);
            }
            check(cur, n);
        }
    }
}

/* ---- tests -------------------------------------------------------------- */

static void test_encode_random(void **state)
{
    unsigned bodies[64] = {0};
    s_seed(1);
    for (unsigned i = 0; i < S_ENC_MSGS; i++) {
        s_bump_reset(&s_gen);
        Sluice__Envelope *env = s_rand_env(i);
        bodies[env->body_case]++;
        s_check_encode(&env->base);
    }
    for (size_t i = 0; i < S_N_BODIES; i++)
        assert_true(bodies[s_bodies[i]] > 0);
}

static void test_decode_random(void **state)
{
    s_seed(1);
    for (unsigned i = 0; i < S_ENC_MSGS; i++) {
        s_bump_reset(&s_gen);
        size_t len = s_pack(&s_rand_env(i)->base);
        static uint8_t packed[S_BUF];
        memcpy(packed, s_a, len);
        /* protobuf-c's own bytes are canonical: the fast path takes them */
        assert_int_equal(s_check_decode(packed, len), SL_CODEC_DONE);
        /* and the codec's decoding packs back to the same bytes */
        s_bump_reset(&s_dec);
        ProtobufCMessage *m = NULL;
        assert_int_equal(
            sl_codec_decode(&sluice__envelope__descriptor, packed, len, s_bump_alloc, &s_dec, &m),
            SL_CODEC_DONE);
        assert_int_equal(s_pack(m), len);
        assert_memory_equal(s_a, packed, len);
    }
}

static void s_check_mutant(const uint8_t *buf, size_t len)
{
    s_check_decode(buf, len);
}

static void test_decode_corrupt(void **state)
{
    s_n_done = s_n_defer = s_n_pc_ok = 0;
    s_for_each_mutant(2, s_check_mutant);
    print_message(
        "corrupted inputs: %u decoded by the codec, %u deferred; protobuf-c accepted %u\n",
        s_n_done, s_n_defer, s_n_pc_ok);
    assert_true(s_n_done > 0 && s_n_defer > 0);
}

/* Fixed encodings around protobuf-c's limits on tags and lengths. */
static void test_decode_vectors(void **state)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
    } v[] = {
        {"version, tag in 1 byte", {0x08, 0x01}, 2},
        {"version, tag in 5 bytes", {0x88, 0x80, 0x80, 0x80, 0x00, 0x01}, 6},
        {"version, tag in 6 bytes", {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01}, 7},
        {"version, tag in 10 bytes",
         {0x88, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01},
         11},
        {"goodbye, length in 5 bytes", {0xca, 0x01, 0x80, 0x80, 0x80, 0x80, 0x00}, 7},
        {"goodbye, length in 6 bytes", {0xca, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 8},
        {"goodbye reason, length in 6 bytes",
         {0xca, 0x01, 0x08, 0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 'x'},
         11},
        {"kv_event stored, packed length in 6 bytes",
         {0xaa, 0x01, 0x08, 0x0a, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x07},
         11},
        {"version, value in 10 bytes",
         {0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
         11},
        {"version, value in 11 bytes",
         {0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
         12},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        Sluice__Envelope *pc = sluice__envelope__unpack(NULL, v[i].len, v[i].bytes);
        int r = s_check_decode(v[i].bytes, v[i].len);
        print_message("%s: protobuf-c %s, codec %s\n", v[i].what, pc ? "accepts" : "rejects",
                      r == SL_CODEC_DONE ? "decodes" : "defers");
        sluice__envelope__free_unpacked(pc, NULL);
    }
}

/* Every allocation failing in turn: NOMEM or DEFER, never a crash or a
 * half-built DONE. */
static void s_check_nomem(const uint8_t *buf, size_t len)
{
    static s_failing_t f;
    f.budget = SIZE_MAX;
    ProtobufCMessage *m = NULL;
    int full = sl_codec_decode(&sluice__envelope__descriptor, buf, len, s_failing_alloc, &f, &m);
    size_t needed = f.n;
    s_failing_drop(&f);
    assert_true(full == SL_CODEC_DONE || full == SL_CODEC_DEFER);
    for (size_t k = 0; k < needed; k++) {
        f.budget = k;
        m = NULL;
        int r = sl_codec_decode(&sluice__envelope__descriptor, buf, len, s_failing_alloc, &f, &m);
        s_failing_drop(&f);
        if (full == SL_CODEC_DONE)
            assert_int_equal(r, SL_CODEC_NOMEM);
        else
            assert_true(r == SL_CODEC_NOMEM || r == SL_CODEC_DEFER);
    }
}

static unsigned s_n_mutants;

static void s_check_nomem_some(const uint8_t *buf, size_t len)
{
    if (s_n_mutants++ % 16 == 0)
        s_check_nomem(buf, len);
}

static void test_decode_nomem(void **state)
{
    s_seed(3);
    for (unsigned i = 0; i < S_NOMEM_MSGS; i++) {
        s_bump_reset(&s_gen);
        size_t len = s_pack(&s_rand_env(i)->base);
        static uint8_t packed[S_BUF];
        memcpy(packed, s_a, len);
        s_check_nomem(packed, len);
    }
    s_n_mutants = 0;
    s_for_each_mutant(4, s_check_nomem_some);
}

static unsigned s_n_ok, s_n_invalid, s_n_malformed;

/* sl_proto_decode accepts exactly what protobuf-c decodes and validation
 * passes, decodes it to the same message, and fails as validation does. */
static void s_check_entry(const uint8_t *buf, size_t len)
{
    const sl_proto_limits_t *lim = &sl_proto_limits_default;
    char err[256], err2[256];
    sl_msg_t *m = NULL;
    sl_status_t st = sl_proto_decode(buf, len, lim, &m, err, sizeof(err));
    Sluice__Envelope *pc = sluice__envelope__unpack(NULL, len, buf);
    sl_status_t want = SL_ERR_MSG_MALFORMED;
    if (len > 0 && len <= lim->max_msg_bytes && pc)
        want = sl_proto_validate(pc, lim, err2, sizeof(err2));
    /* Another version is refused as such before the body is read, whether
     * or not the body decodes (a version field first, its varint whole). */
    if (len > 1 && len <= lim->max_msg_bytes && buf[0] == 0x08) {
        uint64_t v = 0;
        size_t i = 1;
        for (unsigned shift = 0; i < len && i < 11; shift += 7, i++) {
            v |= (uint64_t)(buf[i] & 0x7f) << (shift < 64 ? shift : 0);
            if (!(buf[i] & 0x80))
                break;
        }
        if (i < len && i < 11 && !(buf[i] & 0x80) && v != SL_PROTO_VERSION)
            want = SL_ERR_MSG_VERSION;
    }
    if (st != want)
        fail_msg("sl_proto_decode of %zu bytes: %d (%s), protobuf-c and validation: %d", len,
                 (int)st, st == SL_OK ? "" : err, (int)want);
    if (st == SL_OK) {
        s_n_ok++;
        const char *where = "";
        assert_non_null(m);
        if (!s_same_msg(&m->base, &pc->base, &where))
            fail_msg("sl_proto_decode and protobuf-c differ at %s", where);
        sl_proto_free(&m);
    } else {
        assert_null(m);
        if (pc)
            s_n_invalid++;
        else
            s_n_malformed++;
    }
    sluice__envelope__free_unpacked(pc, NULL);
}

static void test_proto_decode_entry(void **state)
{
    s_n_ok = s_n_invalid = s_n_malformed = 0;
    s_seed(5);
    for (unsigned i = 0; i < S_ENC_MSGS / 2; i++) {
        s_bump_reset(&s_gen);
        size_t len = s_pack(&s_rand_env(i)->base);
        static uint8_t packed[S_BUF];
        memcpy(packed, s_a, len);
        s_check_entry(packed, len);
    }
    s_for_each_mutant(6, s_check_entry);
    print_message("sl_proto_decode: %u valid, %u invalid, %u malformed\n", s_n_ok, s_n_invalid,
                  s_n_malformed);
    assert_true(s_n_ok > 0 && s_n_invalid > 0 && s_n_malformed > 0);
}

int main(void)
{
    S_POISON(s_dec_mem, sizeof(s_dec_mem));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_random),  cmocka_unit_test(test_decode_random),
        cmocka_unit_test(test_decode_corrupt), cmocka_unit_test(test_decode_vectors),
        cmocka_unit_test(test_decode_nomem),   cmocka_unit_test(test_proto_decode_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
