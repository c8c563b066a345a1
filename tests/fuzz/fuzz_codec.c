/*
 * Fuzz target "codec": the fast codec against protobuf-c, on any bytes as
 * an Envelope. sl_codec.h promises that whatever sl_codec_decode decodes
 * (SL_CODEC_DONE) is what protobuf_c_message_unpack returns for the same
 * bytes, and that sl_codec_encode writes the bytes protobuf-c packs; this
 * target checks both on every input and aborts on a difference, so a
 * difference is a crash the fuzzer keeps. A decode that the codec defers is
 * protobuf-c's alone and is packed again through both encoders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sl_codec.h"
#include "proto/sl_proto.h"
#include "tests/fuzz/sl_fuzz.h"

/* A bump allocator over malloc'd blocks, all freed at the end of an input. */
typedef struct s_arena {
    void **blocks;
    size_t n, cap;
} s_arena_t;

static void *s_alloc(void *data, size_t size)
{
    s_arena_t *a = data;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **grown = realloc(a->blocks, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        a->blocks = grown;
        a->cap = cap;
    }
    void *p = malloc(size ? size : 1);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

static void s_arena_free(s_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
}

static void s_differ(const char *what)
{
    fprintf(stderr, "fuzz_codec: %s\n", what);
    abort();
}

/* Pack msg with protobuf-c into *buf_p (malloc'd); returns its length. */
static size_t s_pack(const ProtobufCMessage *msg, uint8_t **buf_p)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    if (protobuf_c_message_pack(msg, buf) != n)
        s_differ("protobuf-c packed a size other than it measured");
    *buf_p = buf;
    return n;
}

/* sl_codec_encode's bytes of msg must be protobuf-c's (ref, n). */
static void s_check_encode(const ProtobufCMessage *msg, const uint8_t *ref, size_t n)
{
    size_t cap = n + 64;
    uint8_t *buf = malloc(cap);
    if (!buf)
        abort();
    uint8_t *first = sl_codec_encode(msg, buf, buf + cap);
    if (!first || (size_t)(buf + cap - first) != n || memcmp(first, ref, n) != 0)
        s_differ("sl_codec_encode differs from protobuf_c_message_pack");
    /* one byte short of room: refused, never written below lo */
    if (n && sl_codec_encode(msg, buf + cap - n + 1, buf + cap))
        s_differ("sl_codec_encode wrote past its room");
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const ProtobufCMessageDescriptor *desc = &sluice__envelope__descriptor;
    ProtobufCMessage *ref = protobuf_c_message_unpack(desc, NULL, size, data);
    s_arena_t arena = {0};
    ProtobufCMessage *fast = NULL;
    int rc = sl_codec_decode(desc, data, size, s_alloc, &arena, &fast);
    if (rc == SL_CODEC_DONE) {
        if (!ref)
            s_differ("the codec decoded what protobuf-c refuses");
        uint8_t *a = NULL, *b = NULL;
        size_t na = s_pack(ref, &a), nb = s_pack(fast, &b);
        if (na != nb || memcmp(a, b, na) != 0)
            s_differ("the codec's message differs from protobuf-c's");
        s_check_encode(fast, a, na);
        free(a);
        free(b);
    } else if (ref) {
        uint8_t *a = NULL;
        size_t na = s_pack(ref, &a);
        s_check_encode(ref, a, na);
        free(a);
    }
    s_arena_free(&arena);
    if (ref)
        protobuf_c_message_free_unpacked(ref, NULL);
    return 0;
}
