/*
 * Decoding into an arena owned by the message.
 *
 * protobuf-c's default allocator makes one malloc per sub-message, string
 * and repeated field, which dominated the scheduler's profile; the arena
 * makes it one or two per message, freed at once by sl_proto_free. The
 * arena header sits just before the envelope (the codec and protobuf-c
 * both allocate the top message first, which decode checks), so
 * sl_proto_free finds it from the message pointer. The header also counts
 * references: the jobs of one batch keep pointers into the one decoded
 * envelope, freed with the last of them. Each thread keeps the largest
 * first chunk it freed for its next decode: a malloc and free of up to 64
 * KiB per message made glibc trim and regrow the heap (a brk pair and page
 * faults per message in libsluice's profile).
 *
 * The header can also keep the received frame (sl_proto_keep_frame): the
 * scheduler forwards a submitted Job's bytes into its Dispatch as they
 * came, instead of encoding the decoded Job again, and those bytes live in
 * the frame. Copying them into the arena was rejected: for a long prompt
 * it is a second copy of the whole message for nothing.
 *
 * The version is read before the rest is decoded, so a peer of another
 * version is told so (SL_ERR_MSG_VERSION) even when its bodies no longer
 * decode as ours.
 */
#include "proto/sl_proto.h"
#include "proto/sl_codec.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef struct s_chunk {
    struct s_chunk *next; /* older chunk */
    size_t cap;           /* bytes of data[] */
    size_t used;          /* bytes handed out */
    max_align_t data[];   /* allocations */
} s_chunk_t;

typedef struct s_arena {
    s_chunk_t *head;        /* newest chunk (allocations come from it) */
    s_chunk_t *first;       /* the chunk holding this header */
    void *top;              /* the first allocation: the envelope */
    int failed;             /* an allocation failed */
    uint32_t refs;          /* owners of the message; freed when it drops to 0 */
    sl_wire_frame_t *frame; /* the frame it was decoded from (sl_proto_keep_frame), or NULL */
    size_t cursor_off;      /* in frame: where the last item looked up ended */
    uint32_t cursor_k;      /* the index of the item there; 0: no lookup yet */
} s_arena_t;

#define S_ALIGN(n) (((n) + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1))
/* Chunks stay below malloc's mmap threshold (128 KiB): a big batch decoded
 * into one huge chunk cost an mmap, page faults and an munmap per message. */
#define S_CHUNK_MAX (64u << 10)
#define S_HDR S_ALIGN(sizeof(s_arena_t))

static void *s_arena_alloc(void *data, size_t size)
{
    s_arena_t *a = data;
    size = S_ALIGN(size ? size : 1);
    s_chunk_t *c = a->head;
    if (c->cap - c->used < size) {
        size_t cap = c->cap * 2 < S_CHUNK_MAX ? c->cap * 2 : S_CHUNK_MAX;
        if (cap < size)
            cap = size;
        s_chunk_t *n = malloc(sizeof(*n) + cap);
        if (!n) {
            a->failed = 1;
            return NULL;
        }
        n->next = c;
        n->cap = cap;
        n->used = 0;
        a->head = c = n;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    if (!a->top)
        a->top = p;
    return p;
}

static void s_arena_free(void *data, void *ptr)
{
    /* everything goes at once in s_arena_release */
}

/* This thread's spare first chunk (freed with the thread, see s_spare_key). */
static __thread s_chunk_t *s_spare;
static pthread_key_t s_spare_key;
static pthread_once_t s_spare_once = PTHREAD_ONCE_INIT;
static int s_spare_ok; /* the key exists */

static void s_spare_free(void *chunk)
{
    free(chunk);
    s_spare = NULL;
}

static void s_spare_init(void)
{
    s_spare_ok = pthread_key_create(&s_spare_key, s_spare_free) == 0;
}

/* A first chunk of at least cap bytes: the spare when it is big enough. */
static s_chunk_t *s_chunk_first(size_t cap)
{
    s_chunk_t *c = s_spare;
    if (c && c->cap >= cap) {
        s_spare = NULL;
        if (s_spare_ok)
            pthread_setspecific(s_spare_key, NULL);
        return c;
    }
    c = malloc(sizeof(*c) + cap);
    if (c)
        c->cap = cap;
    return c;
}

/* Keep first as this thread's spare if it is the largest seen, else free it. */
static void s_chunk_keep(s_chunk_t *first)
{
    pthread_once(&s_spare_once, s_spare_init);
    if (!s_spare_ok || (s_spare && s_spare->cap >= first->cap)) {
        free(first);
        return;
    }
    free(s_spare);
    s_spare = first;
    pthread_setspecific(s_spare_key, first);
}

static void s_arena_release(s_arena_t *a)
{
    sl_wire_frame_free(&a->frame);
    s_chunk_t *c = a->head, *first = a->first;
    while (c) {
        s_chunk_t *next = c->next;
        if (c != first)
            free(c);
        c = next;
    }
    s_chunk_keep(first);
}

/* Drop everything allocated from a, keeping its first chunk and header. */
static void s_arena_reset(s_arena_t *a)
{
    s_chunk_t *c = a->head, *first = a->first;
    while (c != first) {
        s_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    first->used = S_HDR;
    a->head = first;
    a->top = NULL;
}

sl_status_t sl_proto_decode(const void *buf, size_t len, const sl_proto_limits_t *lim,
                            sl_msg_t **msg_p, char *err, size_t err_len)
{
    if (len > lim->max_msg_bytes)
        return sl_proto_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "message of %zu bytes (limit %zu)",
                             len, lim->max_msg_bytes);
    if (len == 0)
        return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len, "empty message");
    /* Envelope.version (field 1, a varint) comes first in every encoding
     * of ours; another version is refused before its body is read, so a
     * peer of another version is told so even when its bodies no longer
     * decode as ours. */
    const uint8_t *b = buf;
    if (len > 1 && b[0] == 0x08) {
        uint64_t v = 0;
        size_t i = 1;
        for (unsigned shift = 0; i < len && i < 11; shift += 7, i++) {
            v |= (uint64_t)(b[i] & 0x7f) << (shift < 64 ? shift : 0);
            if (!(b[i] & 0x80))
                break;
        }
        if (i < len && i < 11 && !(b[i] & 0x80) && v != SL_PROTO_VERSION)
            return sl_proto_fail(SL_ERR_MSG_VERSION, err, err_len,
                                 "protocol version %llu (expected %u)", (unsigned long long)v,
                                 SL_PROTO_VERSION);
    }
    /* Decoded structs take a few times the encoded size; one chunk usually does. */
    size_t cap = 4 * len + 1024;
    if (cap > S_CHUNK_MAX)
        cap = S_CHUNK_MAX;
    s_chunk_t *first = s_chunk_first(cap);
    if (!first)
        return sl_proto_fail(SL_ERR_NOMEM, err, err_len, "out of memory decoding %zu bytes", len);
    first->next = NULL;
    first->used = S_HDR;
    s_arena_t *a = (s_arena_t *)first->data;
    a->head = a->first = first;
    a->top = NULL;
    a->failed = 0;
    a->refs = 1;
    a->frame = NULL;
    sl_msg_t *m = NULL;
    ProtobufCMessage *fast = NULL;
    int r = sl_codec_decode(&sluice__envelope__descriptor, buf, len, s_arena_alloc, a, &fast);
    if (r == SL_CODEC_DONE) {
        m = (sl_msg_t *)fast;
    } else if (r == SL_CODEC_DEFER) {
        /* not a canonical encoding: protobuf-c decides, in a fresh arena */
        s_arena_reset(a);
        ProtobufCAllocator alloc = {
            .alloc = s_arena_alloc, .free = s_arena_free, .allocator_data = a};
        m = sluice__envelope__unpack(&alloc, len, buf);
    }
    if (!m || (void *)m != a->top || a->top != (char *)first->data + S_HDR) {
        int oom = a->failed;
        s_arena_release(a);
        if (m == NULL && !oom)
            return sl_proto_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                                 "%zu bytes are not a valid protobuf envelope", len);
        return sl_proto_fail(oom ? SL_ERR_NOMEM : SL_ERR_MSG_MALFORMED, err, err_len,
                             "cannot decode %zu bytes", len);
    }
    sl_status_t st = sl_proto_validate(m, lim, err, err_len);
    if (st != SL_OK) {
        s_arena_release(a);
        return st;
    }
    *msg_p = m;
    return SL_OK;
}

sl_msg_t *sl_proto_ref(sl_msg_t *msg)
{
    ((s_arena_t *)((char *)msg - S_HDR))->refs++;
    return msg;
}

void sl_proto_free(sl_msg_t **msg_p)
{
    if (*msg_p) {
        s_arena_t *a = (s_arena_t *)((char *)*msg_p - S_HDR);
        if (--a->refs == 0)
            s_arena_release(a);
        *msg_p = NULL;
    }
}

/* A received frame, shared by the decoded message and whoever keeps bytes
 * of it (the scheduler's jobs, until they end). */
struct sl_wire_frame {
    uint32_t refs; /* owners; freed when it drops to 0 */
    zmq_msg_t msg; /* the frame */
};

void sl_proto_keep_frame(sl_msg_t *msg, void *zmsg)
{
    s_arena_t *a = (s_arena_t *)((char *)msg - S_HDR);
    sl_wire_frame_t *f = malloc(sizeof(*f));
    if (!f)
        return; /* its jobs' bytes cannot be forwarded: sl_wire_submit_job_bytes says so */
    f->refs = 1;
    zmq_msg_init(&f->msg);
    zmq_msg_move(&f->msg, zmsg);
    sl_wire_frame_free(&a->frame);
    a->frame = f;
    a->cursor_off = 0;
    a->cursor_k = 0;
}

const uint8_t *sl_proto_raw(const sl_msg_t *msg, size_t *len_p)
{
    s_arena_t *a = (s_arena_t *)((char *)msg - S_HDR);
    if (!a->frame)
        return NULL;
    *len_p = zmq_msg_size(&a->frame->msg);
    return zmq_msg_data(&a->frame->msg);
}

sl_wire_frame_t *sl_wire_msg_frame(const sl_wire_msg_t *msg)
{
    s_arena_t *a = (s_arena_t *)((char *)msg - S_HDR);
    if (a->frame)
        a->frame->refs++;
    return a->frame;
}

void sl_wire_frame_free(sl_wire_frame_t **frame_p)
{
    sl_wire_frame_t *f = *frame_p;
    if (f && --f->refs == 0) {
        zmq_msg_close(&f->msg);
        free(f);
    }
    *frame_p = NULL;
}

void sl_proto_raw_cursor(const sl_msg_t *msg, size_t **off_p, uint32_t **k_p)
{
    s_arena_t *a = (s_arena_t *)((char *)msg - S_HDR);
    *off_p = &a->cursor_off;
    *k_p = &a->cursor_k;
}
