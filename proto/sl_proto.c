/*
 * Decoding, validation and framing of protocol messages.
 *
 * protobuf-c already rejects bytes that are not a well-formed encoding; what
 * it cannot know is what is sensible: a 100 MB prompt, a negative enum
 * value smuggled through proto3's open enums, a missing oneof. Every decoded
 * envelope goes through sl_proto_validate before anything reads it, so the
 * scheduler and executor code may trust field sizes and enum values.
 * The encoded size is checked before unpacking so an oversized message costs
 * no allocation. Messages are packed straight into the zmq_msg_t buffer to
 * avoid a copy.
 *
 * Decoding allocates from an arena owned by the message: protobuf-c's
 * default allocator makes one malloc per sub-message, string and repeated
 * field, which dominated the scheduler's profile; the arena makes it one or
 * two per message, freed at once by sl_proto_free. The arena header sits
 * just before the envelope (protobuf-c allocates the top message first, which
 * decode checks), so sl_proto_free finds it from the message pointer. The
 * header also counts references: the jobs of one batch keep pointers into
 * the one decoded envelope, freed with the last of them. Each thread keeps
 * the largest first chunk it freed for its next decode: a malloc and free of
 * up to 64 KiB per message made glibc trim and regrow the heap (a brk pair
 * and page faults per message in libsluice's profile).
 *
 * Batches (DispatchBatch, SubmitBatch, ResultBatch) are built without
 * protobuf-c structs for the whole batch: each item is packed, behind its
 * field tag and length, straight into one growing buffer, which is then the
 * encoding of the batch message; the envelope's own few bytes (version, body
 * tag, body length) are written into room left in front of it. Building a
 * Sluice__SubmitBatch of pointers and packing it would walk every item twice
 * (size, then pack) and needs the items alive until the send; a cached
 * Result can be appended as bytes. The items of these batches are checked
 * one by one by the receiver (sl_proto_validate_item), so one bad item is
 * answered on its own and the rest proceed.
 */
#include "proto/sl_proto.h"
#include "proto/sl_codec.h"
#include "common/sl_log.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

const sl_proto_limits_t sl_proto_limits_default = {
    .max_msg_bytes = 8u << 20,
    .max_prompt_tokens = 1u << 20,
    .max_token_ids = 1u << 18,
    .max_block_hashes = 1u << 13,
    .max_new_tokens = 1u << 16,
    .max_id_len = 128,
    .max_name_len = 128,
    .max_kv_events = 1u << 16,
    .max_xport_address = 8192,
    .max_models = 64,
    .max_slots = 4096,
    .max_batch = 4096,
};

static sl_status_t s_fail(sl_status_t st, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static sl_status_t s_fail(sl_status_t st, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

#define CHECK_STR(s, maxlen, what, required)                                                       \
    do {                                                                                           \
        size_t l_ = (s) ? strlen(s) : 0;                                                           \
        if ((required) && l_ == 0)                                                                 \
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "%s is empty", what);                    \
        if (l_ > (maxlen))                                                                         \
            return s_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "%s is %zu bytes (limit %u)", what,    \
                          l_, (unsigned)(maxlen));                                                 \
    } while (0)

#define CHECK_COUNT(n, maxn, what)                                                                 \
    do {                                                                                           \
        if ((size_t)(n) > (size_t)(maxn))                                                          \
            return s_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "%s has %zu entries (limit %u)",       \
                          what, (size_t)(n), (unsigned)(maxn));                                    \
    } while (0)

static sl_status_t s_job(const Sluice__Job *job, const sl_proto_limits_t *lim, char *err,
                         size_t err_len)
{
    if (!job)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "job is missing");
    CHECK_STR(job->id, lim->max_id_len, "job id", 1);
    CHECK_STR(job->tenant, lim->max_name_len, "tenant", 0);
    CHECK_STR(job->model, lim->max_name_len, "model", 0);
    CHECK_STR(job->session_key, lim->max_name_len, "session key", 0);
    if (job->priority != SLUICE__PRIORITY__PRIORITY_INTERACTIVE &&
        job->priority != SLUICE__PRIORITY__PRIORITY_BATCH)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "priority %d is not a known class",
                      (int)job->priority);
    if (job->max_new_tokens == 0 || job->max_new_tokens > lim->max_new_tokens)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "max_new_tokens %u outside [1, %u]",
                      job->max_new_tokens, lim->max_new_tokens);
    const Sluice__Prompt *p = job->prompt;
    if (!p)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "prompt is missing");
    CHECK_COUNT(p->n_token_ids, lim->max_token_ids, "prompt token_ids");
    CHECK_COUNT(p->n_block_hashes, lim->max_block_hashes, "prompt block_hashes");
    uint64_t length = p->length ? p->length : p->n_token_ids;
    if (length == 0)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "prompt is empty");
    if (length > lim->max_prompt_tokens)
        return s_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "prompt of %llu tokens (limit %u)",
                      (unsigned long long)length, lim->max_prompt_tokens);
    /* With token ids the prompt is those ids: a length that says otherwise
     * would make a backend read past them. */
    if (p->length && p->n_token_ids && p->n_token_ids != p->length)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "prompt length %u but %zu token ids",
                      p->length, p->n_token_ids);
    if (p->n_block_hashes) {
        if (p->block_tokens == 0 || p->block_tokens > 65536)
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "block_tokens %u outside [1, 65536]",
                          p->block_tokens);
        if ((uint64_t)p->n_block_hashes * p->block_tokens > length + p->block_tokens - 1)
            return s_fail(SL_ERR_MSG_RANGE, err, err_len,
                          "%zu blocks of %u tokens exceed a prompt of %llu tokens",
                          p->n_block_hashes, p->block_tokens, (unsigned long long)length);
    }
    return SL_OK;
}

static sl_status_t s_load(const Sluice__Load *l, char *err, size_t err_len)
{
    if (!l)
        return SL_OK;
    if (!(l->gpu_util >= 0 && l->gpu_util <= 1.5) || !(l->cpu_util >= 0 && l->cpu_util <= 1.5) ||
        !(l->busy >= 0 && l->busy <= 1.5))
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "utilization outside [0, 1]");
    if (l->has_gpu_mem && l->gpu_mem_used_bytes > l->gpu_mem_total_bytes)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "GPU memory used above its total");
    return SL_OK;
}

static sl_status_t s_result(const Sluice__Result *r, const sl_proto_limits_t *lim, char *err,
                            size_t err_len)
{
    if (!r)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "result is missing");
    CHECK_STR(r->job_id, lim->max_id_len, "result job id", 0);
    CHECK_COUNT(r->n_tokens, lim->max_token_ids, "result tokens");
    CHECK_STR(r->executor, lim->max_name_len, "result executor", 0);
    CHECK_STR(r->error, 1024, "result error", 0);
    if ((unsigned)r->status > SLUICE__RESULT_STATUS__RESULT_REJECTED)
        return s_fail(SL_ERR_MSG_RANGE, err, err_len, "result status %d unknown", (int)r->status);
    return SL_OK;
}

static sl_status_t s_batch_count(size_t n, const sl_proto_limits_t *lim, const char *what,
                                 char *err, size_t err_len)
{
    if (n == 0)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "%s batch is empty", what);
    CHECK_COUNT(n, lim->max_batch, what);
    return SL_OK;
}

sl_status_t sl_proto_validate(const sl_msg_t *m, const sl_proto_limits_t *lim, char *err,
                              size_t err_len)
{
    if (m->version != SL_PROTO_VERSION)
        return s_fail(SL_ERR_MSG_VERSION, err, err_len, "protocol version %u (expected %u)",
                      m->version, SL_PROTO_VERSION);
    switch (m->body_case) {
    case SLUICE__ENVELOPE__BODY_SUBMIT:
        return m->submit ? s_job(m->submit->job, lim, err, err_len)
                         : s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "empty submit");
    case SLUICE__ENVELOPE__BODY_ACCEPTED:
        CHECK_STR(m->accepted->job_id, lim->max_id_len, "job id", 1);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_BUSY:
        CHECK_STR(m->busy->job_id, lim->max_id_len, "job id", 0);
        CHECK_STR(m->busy->detail, 1024, "busy detail", 0);
        if ((unsigned)m->busy->reason > SLUICE__BUSY_REASON__BUSY_DRAINING)
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "busy reason %d unknown",
                          (int)m->busy->reason);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_RESULT:
        return s_result(m->result, lim, err, err_len);
    case SLUICE__ENVELOPE__BODY_TOKEN_CHUNK:
        CHECK_STR(m->token_chunk->job_id, lim->max_id_len, "job id", 0);
        CHECK_COUNT(m->token_chunk->n_tokens, lim->max_token_ids, "chunk tokens");
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_CANCEL:
        CHECK_STR(m->cancel->job_id, lim->max_id_len, "job id", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_HELLO: {
        const Sluice__ExecutorHello *h = m->hello;
        CHECK_STR(h->name, lim->max_name_len, "executor name", 1);
        CHECK_STR(h->zone, lim->max_name_len, "zone", 0);
        CHECK_STR(h->backend, lim->max_name_len, "backend", 0);
        CHECK_COUNT(h->n_models, lim->max_models, "models");
        for (size_t i = 0; i < h->n_models; i++)
            CHECK_STR(h->models[i], lim->max_name_len, "model name", 1);
        CHECK_COUNT(h->xport_address.len, lim->max_xport_address, "xport address bytes");
        if (h->slots == 0 || h->slots > lim->max_slots)
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "slots %u outside [1, %u]", h->slots,
                          lim->max_slots);
        if (!(h->speed >= 0 && h->speed <= 1000))
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "speed outside [0, 1000]");
        if (h->kv_block_tokens > 65536) /* the scheduler hashes prompts in blocks of it */
            return s_fail(SL_ERR_MSG_RANGE, err, err_len, "kv_block_tokens %u outside [0, 65536]",
                          h->kv_block_tokens);
        return SL_OK;
    }
    case SLUICE__ENVELOPE__BODY_WELCOME:
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_HEARTBEAT:
        return s_load(m->heartbeat->load, err, err_len);
    case SLUICE__ENVELOPE__BODY_DISPATCH:
        return s_job(m->dispatch->job, lim, err, err_len);
    case SLUICE__ENVELOPE__BODY_COMPLETION:
        return s_result(m->completion->result, lim, err, err_len);
    case SLUICE__ENVELOPE__BODY_COMPLETIONS:
        CHECK_COUNT(m->completions->n_completions, lim->max_batch, "completions");
        for (size_t i = 0; i < m->completions->n_completions; i++) {
            sl_status_t st = s_result(m->completions->completions[i]->result, lim, err, err_len);
            if (st != SL_OK)
                return st;
        }
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_DISPATCHES:
        return s_batch_count(m->dispatches->n_dispatches, lim, "dispatches", err, err_len);
    case SLUICE__ENVELOPE__BODY_SUBMITS:
        return s_batch_count(m->submits->n_submits, lim, "submits", err, err_len);
    case SLUICE__ENVELOPE__BODY_RESULTS:
        return s_batch_count(m->results->n_accepted + m->results->n_busy +
                                 m->results->n_results,
                             lim, "result batch", err, err_len);
    case SLUICE__ENVELOPE__BODY_KV_EVENT:
        CHECK_COUNT(m->kv_event->n_stored, lim->max_kv_events, "kv stored");
        CHECK_COUNT(m->kv_event->n_evicted, lim->max_kv_events, "kv evicted");
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_STATUS_REQUEST:
    case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_ERROR:
        CHECK_STR(m->error->message, 1024, "error message", 0);
        CHECK_STR(m->error->job_id, lim->max_id_len, "error job id", 0);
        return SL_OK;
    case SLUICE__ENVELOPE__BODY_GOODBYE:
        CHECK_STR(m->goodbye->reason, 1024, "goodbye reason", 0);
        return SL_OK;
    default:
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "envelope has no known body (%d)",
                      (int)m->body_case);
    }
}

sl_status_t sl_proto_validate_item(int body_case, const void *item, const sl_proto_limits_t *lim,
                                   char *err, size_t err_len)
{
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    env.version = SL_PROTO_VERSION;
    env.body_case = (Sluice__Envelope__BodyCase)body_case;
    switch (body_case) {
    case SLUICE__ENVELOPE__BODY_DISPATCH: env.dispatch = (Sluice__Dispatch *)item; break;
    case SLUICE__ENVELOPE__BODY_SUBMIT: env.submit = (Sluice__Submit *)item; break;
    case SLUICE__ENVELOPE__BODY_ACCEPTED: env.accepted = (Sluice__Accepted *)item; break;
    case SLUICE__ENVELOPE__BODY_BUSY: env.busy = (Sluice__Busy *)item; break;
    case SLUICE__ENVELOPE__BODY_RESULT: env.result = (Sluice__Result *)item; break;
    default:
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "'%s' is not a batch item",
                      sl_proto_body_name(body_case));
    }
    if (!item)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "batch item is missing");
    return sl_proto_validate(&env, lim, err, err_len);
}

typedef struct s_chunk {
    struct s_chunk *next; /* older chunk */
    size_t cap;           /* bytes of data[] */
    size_t used;          /* bytes handed out */
    max_align_t data[];   /* allocations */
} s_chunk_t;

typedef struct s_arena {
    s_chunk_t *head;  /* newest chunk (allocations come from it) */
    s_chunk_t *first; /* the chunk holding this header */
    void *top;        /* the first allocation: the envelope */
    int failed;       /* an allocation failed */
    uint32_t refs;    /* owners of the message; freed when it drops to 0 */
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
        return s_fail(SL_ERR_MSG_TOO_BIG, err, err_len, "message of %zu bytes (limit %zu)", len,
                      lim->max_msg_bytes);
    if (len == 0)
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "empty message");
    /* Decoded structs take a few times the encoded size; one chunk usually does. */
    size_t cap = 4 * len + 1024;
    if (cap > S_CHUNK_MAX)
        cap = S_CHUNK_MAX;
    s_chunk_t *first = s_chunk_first(cap);
    if (!first)
        return s_fail(SL_ERR_NOMEM, err, err_len, "out of memory decoding %zu bytes", len);
    first->next = NULL;
    first->used = S_HDR;
    s_arena_t *a = (s_arena_t *)first->data;
    a->head = a->first = first;
    a->top = NULL;
    a->failed = 0;
    a->refs = 1;
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
            return s_fail(SL_ERR_MSG_MALFORMED, err, err_len,
                          "%zu bytes are not a valid protobuf envelope", len);
        return s_fail(oom ? SL_ERR_NOMEM : SL_ERR_MSG_MALFORMED, err, err_len,
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

const char *sl_proto_body_name(int body_case)
{
    switch (body_case) {
    case SLUICE__ENVELOPE__BODY_SUBMIT: return "submit";
    case SLUICE__ENVELOPE__BODY_ACCEPTED: return "accepted";
    case SLUICE__ENVELOPE__BODY_BUSY: return "busy";
    case SLUICE__ENVELOPE__BODY_RESULT: return "result";
    case SLUICE__ENVELOPE__BODY_TOKEN_CHUNK: return "token_chunk";
    case SLUICE__ENVELOPE__BODY_CANCEL: return "cancel";
    case SLUICE__ENVELOPE__BODY_HELLO: return "hello";
    case SLUICE__ENVELOPE__BODY_WELCOME: return "welcome";
    case SLUICE__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case SLUICE__ENVELOPE__BODY_DISPATCH: return "dispatch";
    case SLUICE__ENVELOPE__BODY_COMPLETION: return "completion";
    case SLUICE__ENVELOPE__BODY_KV_EVENT: return "kv_event";
    case SLUICE__ENVELOPE__BODY_STATUS_REQUEST: return "status_request";
    case SLUICE__ENVELOPE__BODY_STATUS_REPLY: return "status_reply";
    case SLUICE__ENVELOPE__BODY_ERROR: return "error";
    case SLUICE__ENVELOPE__BODY_GOODBYE: return "goodbye";
    case SLUICE__ENVELOPE__BODY_COMPLETIONS: return "completions";
    case SLUICE__ENVELOPE__BODY_DISPATCHES: return "dispatches";
    case SLUICE__ENVELOPE__BODY_SUBMITS: return "submits";
    case SLUICE__ENVELOPE__BODY_RESULTS: return "results";
    default: return "unknown";
    }
}

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

sl_status_t sl_wire_send(void *sock, const void *ident, size_t ident_len, sl_msg_t *env,
                         int flags)
{
    zmq_msg_t msg;
    env->version = SL_PROTO_VERSION;
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | flags) < 0)
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

size_t sl_wire_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* v as a varint ending at p; the new start, or NULL below lo. */
static uint8_t *s_put_uint(uint8_t *p, uint8_t *lo, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = sl_wire_varint(tmp, v);
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
    n += sl_wire_varint(p + n, SL_PROTO_VERSION);
    n += sl_wire_varint(p + n, ((uint64_t)body_field << 3) | 2);
    n += sl_wire_varint(p + n, body_len);
    return n;
}

sl_status_t sl_wire_send_packed(void *sock, const void *ident, size_t ident_len,
                                 uint32_t body_field, const void *body, size_t body_len,
                                 int flags)
{
    uint8_t head[S_ENV_HEAD];
    size_t hl = s_env_head(head, body_field, body_len);
    zmq_msg_t msg;
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | flags) < 0)
        return s_send_errno();
    if (zmq_msg_init_size(&msg, hl + body_len) != 0) {
        SL_ERROR("zmq_msg_init_size(%zu): %m", hl + body_len);
        return SL_ERR_NOMEM;
    }
    memcpy(zmq_msg_data(&msg), head, hl);
    memcpy((uint8_t *)zmq_msg_data(&msg) + hl, body, body_len);
    if (zmq_msg_send(&msg, sock, flags) < 0) {
        zmq_msg_close(&msg);
        return s_send_errno();
    }
    return SL_OK;
}

void sl_wire_batch_init(sl_wire_batch_t *b, uint32_t body_field)
{
    memset(b, 0, sizeof(*b));
    b->body = body_field;
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

sl_status_t sl_wire_batch_add_packed(sl_wire_batch_t *b, uint32_t field, const void *item,
                                     size_t len)
{
    uint8_t *p = s_batch_room(b, 20 + len);
    if (!p)
        return SL_ERR_NOMEM;
    size_t n = sl_wire_varint(p, ((uint64_t)field << 3) | 2);
    n += sl_wire_varint(p + n, len);
    memcpy(p + n, item, len);
    b->len += n + len;
    b->n++;
    return SL_OK;
}

sl_status_t sl_wire_batch_add_uint(sl_wire_batch_t *b, uint32_t field, uint64_t value)
{
    uint8_t *p = s_batch_room(b, 20);
    if (!p)
        return SL_ERR_NOMEM;
    size_t n = sl_wire_varint(p, (uint64_t)field << 3);
    n += sl_wire_varint(p + n, value);
    b->len += n;
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
        size_t n = sl_wire_varint(q, ((uint64_t)field << 3) | 2);
        n += sl_wire_varint(q + n, body);
        memmove(q + n, p, body);
        b->len += n + body;
        b->n++;
        return SL_OK;
    }
}

sl_status_t sl_wire_batch_add_nested(sl_wire_batch_t *b, uint32_t field, uint32_t msg_field,
                                     const ProtobufCMessage *msg, const uint32_t *vfields,
                                     const uint64_t *vvalues, size_t n_v)
{
    if (msg_field == 0)
        return SL_ERR_INVALID;
    return s_batch_item(b, field, msg_field, msg, vfields, vvalues, n_v);
}

sl_status_t sl_wire_batch_add(sl_wire_batch_t *b, uint32_t field, const ProtobufCMessage *msg)
{
    return s_batch_item(b, field, 0, msg, NULL, NULL, 0);
}

sl_status_t sl_wire_batch_send(void *sock, const void *ident, size_t ident_len,
                               sl_wire_batch_t *b, int flags)
{
    if (b->n == 0)
        return SL_OK;
    uint8_t head[S_ENV_HEAD];
    size_t body_len = b->len - S_ENV_HEAD;
    size_t hl = s_env_head(head, b->body, body_len);
    uint8_t *start = b->buf + S_ENV_HEAD - hl;
    memcpy(start, head, hl);
    sl_wire_batch_clear(b);
    if (ident && zmq_send(sock, ident, ident_len, ZMQ_SNDMORE | flags) < 0)
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
                         sl_wire_ident_t *ident, sl_msg_t **msg_p, char *err, size_t err_len)
{
    zmq_msg_t part;
    int more = 0;
    size_t sz = sizeof(more);
    sl_status_t st;

    ident->len = 0;
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
            return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "message has no payload frame");
        flags = 0; /* the rest of a multipart message is already here */
    }
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, flags) < 0) {
        zmq_msg_close(&part);
        return errno == EAGAIN ? SL_ERR_AGAIN : SL_ERR_LINK;
    }
    more = zmq_msg_more(&part);
    if (more) {
        zmq_msg_close(&part);
        s_drain(sock, more);
        return s_fail(SL_ERR_MSG_MALFORMED, err, err_len, "message has extra frames");
    }
    st = sl_proto_decode(zmq_msg_data(&part), zmq_msg_size(&part), lim, msg_p, err, err_len);
    zmq_msg_close(&part);
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
