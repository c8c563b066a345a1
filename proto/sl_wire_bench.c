/*
 * The body of `sluice-bench codec` (bench/bench_codec.c parses its flags):
 * the fast codec (proto/sl_codec.h) against protobuf-c
 * on the four batch bodies that carry every job (SubmitBatch, DispatchBatch,
 * CompletionBatch, ResultBatch), built as the control plane builds them.
 *
 * For each body, encoding (protobuf-c: get_packed_size then pack; the
 * codec: backwards into a buffer) and decoding (protobuf-c's unpack and the
 * codec, both into the same bump allocator, so neither pays for malloc) are
 * timed in alternating rounds, and the medians are reported per item with
 * the speed-up. The decoded messages are checked against the originals
 * (re-packed bytes compared) before anything is timed.
 *
 * Rejected: timing one side after the other in a single long phase (the
 * host's speed drifts by tens of percent from one second to the next, see
 * sluice-bench ctlplane). It lives in proto/ because it measures proto's
 * internals, which nothing outside proto/ may touch.
 */
#include "proto/sl_wire_bench.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "proto/sl_codec.h"
#include "proto/sl_proto.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bump allocator over one buffer, reset before every decode. */
typedef struct s_bump {
    uint8_t *buf;
    size_t cap, used;
} s_bump_t;

static void *s_bump_alloc(void *data, size_t size)
{
    s_bump_t *b = data;
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (b->cap - b->used < size)
        return NULL;
    void *p = b->buf + b->used;
    b->used += size;
    return p;
}

static void s_bump_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

/* The bodies, as sl_msg_t envelopes, and everything they point to. */
typedef struct s_bodies {
    sl_msg_t env[4];
    Sluice__SubmitBatch sb;
    Sluice__DispatchBatch db;
    Sluice__CompletionBatch cb;
    Sluice__ResultBatch rb;
    Sluice__Submit *subs;
    Sluice__Dispatch *dis;
    Sluice__Completion *comps;
    Sluice__Job *jobs;
    Sluice__Job *trimmed;
    Sluice__Prompt prompt;
    Sluice__Result *results;
    Sluice__Timings *timings;
    char (*ids)[32];
    Sluice__Submit **psubs;
    Sluice__Dispatch **pdis;
    Sluice__Completion **pcomps;
    Sluice__Result **presults;
    char **paccepted;
} s_bodies_t;

static const char *const s_names[4] = {"SubmitBatch", "DispatchBatch", "CompletionBatch",
                                       "ResultBatch"};

static int s_build(s_bodies_t *b, int n)
{
    memset(b, 0, sizeof(*b));
    b->subs = calloc((size_t)n, sizeof(*b->subs));
    b->dis = calloc((size_t)n, sizeof(*b->dis));
    b->comps = calloc((size_t)n, sizeof(*b->comps));
    b->jobs = calloc((size_t)n, sizeof(*b->jobs));
    b->trimmed = calloc((size_t)n, sizeof(*b->trimmed));
    b->results = calloc((size_t)n, sizeof(*b->results));
    b->timings = calloc((size_t)n, sizeof(*b->timings));
    b->ids = calloc((size_t)n, sizeof(*b->ids));
    b->psubs = calloc((size_t)n, sizeof(*b->psubs));
    b->pdis = calloc((size_t)n, sizeof(*b->pdis));
    b->pcomps = calloc((size_t)n, sizeof(*b->pcomps));
    b->presults = calloc((size_t)n, sizeof(*b->presults));
    b->paccepted = calloc((size_t)n, sizeof(*b->paccepted));
    if (!b->subs || !b->dis || !b->comps || !b->jobs || !b->trimmed || !b->results || !b->timings ||
        !b->ids || !b->psubs || !b->pdis || !b->pcomps || !b->presults || !b->paccepted)
        return -1;
    sluice__prompt__init(&b->prompt);
    b->prompt.length = 16;
    for (int i = 0; i < n; i++) {
        snprintf(b->ids[i], sizeof(b->ids[i]), "ctl-4242-%010d", i);
        Sluice__Job *j = &b->jobs[i];
        sluice__job__init(j);
        j->id = b->ids[i];
        j->tenant = "ctlplane";
        j->prompt = &b->prompt;
        j->max_new_tokens = 1;
        sluice__submit__init(&b->subs[i]);
        b->subs[i].job = j;
        b->psubs[i] = &b->subs[i];
        /* the scheduler forwards the job as it was submitted */
        b->trimmed[i] = *j;
        sluice__dispatch__init(&b->dis[i]);
        b->dis[i].job = &b->trimmed[i];
        b->dis[i].job_seq = 1000000 + (uint64_t)i;
        b->dis[i].attempt = 1;
        b->pdis[i] = &b->dis[i];
        Sluice__Timings *t = &b->timings[i];
        sluice__timings__init(t);
        t->queued_us = 1200 + (uint64_t)i;
        t->ttft_us = 2400 + (uint64_t)i;
        t->end_us = 2500 + (uint64_t)i;
        t->prompt_tokens = 16;
        t->output_tokens = 1;
        t->exec_ttft_us = 300;
        t->exec_end_us = 310;
        t->exec_queue_us = 20;
        t->has_exec_queue = 1;
        Sluice__Result *r = &b->results[i];
        sluice__result__init(r);
        r->job_id = b->ids[i];
        r->timings = t;
        r->executor = "ctl-e0";
        r->attempts = 1;
        b->presults[i] = r;
        sluice__completion__init(&b->comps[i]);
        b->comps[i].job_seq = b->dis[i].job_seq;
        b->comps[i].result = r;
        b->pcomps[i] = &b->comps[i];
        b->paccepted[i] = b->ids[i];
    }
    sluice__submit_batch__init(&b->sb);
    b->sb.n_submits = (size_t)n;
    b->sb.submits = b->psubs;
    sluice__dispatch_batch__init(&b->db);
    b->db.n_dispatches = (size_t)n;
    b->db.dispatches = b->pdis;
    sluice__completion_batch__init(&b->cb);
    b->cb.n_completions = (size_t)n;
    b->cb.completions = b->pcomps;
    sluice__result_batch__init(&b->rb);
    b->rb.n_accepted = (size_t)n;
    b->rb.accepted = b->paccepted;
    b->rb.n_results = (size_t)n;
    b->rb.results = b->presults;
    b->rb.queue_depth = 1500;
    for (int k = 0; k < 4; k++) {
        sluice__envelope__init(&b->env[k]);
        b->env[k].version = SL_PROTO_VERSION;
    }
    b->env[0].body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
    b->env[0].submits = &b->sb;
    b->env[1].body_case = SLUICE__ENVELOPE__BODY_DISPATCHES;
    b->env[1].dispatches = &b->db;
    b->env[2].body_case = SLUICE__ENVELOPE__BODY_COMPLETIONS;
    b->env[2].completions = &b->cb;
    b->env[3].body_case = SLUICE__ENVELOPE__BODY_RESULTS;
    b->env[3].results = &b->rb;
    return 0;
}

static void s_free(s_bodies_t *b)
{
    free(b->subs);
    free(b->dis);
    free(b->comps);
    free(b->jobs);
    free(b->trimmed);
    free(b->results);
    free(b->timings);
    free(b->ids);
    free(b->psubs);
    free(b->pdis);
    free(b->pcomps);
    free(b->presults);
    free(b->paccepted);
}

/* What one measurement runs: encode or decode one envelope, by either side. */
typedef struct s_op {
    const sl_msg_t *env;  /* to encode */
    const uint8_t *bytes; /* its encoding, to decode */
    size_t len;           /* bytes of it */
    uint8_t *out;         /* room to encode into */
    size_t cap;           /* bytes of out */
    s_bump_t *arena;      /* decoding memory */
} s_op_t;

static int s_run(const s_op_t *op, int which)
{
    switch (which) {
    case 0: { /* protobuf-c encode */
        size_t len = protobuf_c_message_get_packed_size(&op->env->base);
        return protobuf_c_message_pack(&op->env->base, op->out) == len ? 0 : -1;
    }
    case 1: /* codec encode */
        return sl_codec_encode(&op->env->base, op->out, op->out + op->cap) ? 0 : -1;
    case 2: { /* protobuf-c decode */
        op->arena->used = 0;
        ProtobufCAllocator a = {
            .alloc = s_bump_alloc, .free = s_bump_free, .allocator_data = op->arena};
        return protobuf_c_message_unpack(&sluice__envelope__descriptor, &a, op->len, op->bytes)
                   ? 0
                   : -1;
    }
    default: { /* codec decode */
        ProtobufCMessage *m = NULL;
        op->arena->used = 0;
        return sl_codec_decode(&sluice__envelope__descriptor, op->bytes, op->len, s_bump_alloc,
                               op->arena, &m) == SL_CODEC_DONE
                   ? 0
                   : -1;
    }
    }
}

/* Nanoseconds per run of `which`, over about duration_ms; < 0 on failure. */
static double s_time(const s_op_t *op, int which, int duration_ms)
{
    uint64_t n = 0;
    sl_time_t start = sl_clock_now(), end = start + SL_MS(duration_ms), now;
    do {
        for (int i = 0; i < 16; i++)
            if (s_run(op, which) != 0)
                return -1;
        n += 16;
        now = sl_clock_now();
    } while (now < end);
    return (double)(now - start) / (double)n;
}

/* Decode bytes with the codec and check it packs back to the same bytes. */
static int s_check(const s_op_t *op)
{
    ProtobufCMessage *m = NULL;
    op->arena->used = 0;
    if (sl_codec_decode(&sluice__envelope__descriptor, op->bytes, op->len, s_bump_alloc, op->arena,
                        &m) != SL_CODEC_DONE)
        return -1;
    uint8_t *p = sl_codec_encode(m, op->out, op->out + op->cap);
    if (!p || (size_t)(op->out + op->cap - p) != op->len || memcmp(p, op->bytes, op->len))
        return -1;
    return 0;
}

int sl_wire_codec_bench(int items, int rounds, int duration_ms)
{
    struct {
        int items, rounds, duration_ms;
    } cfg = {items, rounds, duration_ms};
    int rc = 1;
    s_bodies_t b;
    s_bump_t arena = {.cap = 64u << 20};
    size_t cap = 16u << 20;
    uint8_t *bytes[4] = {0}, *out = malloc(cap);
    arena.buf = malloc(arena.cap);
    double *t = calloc((size_t)cfg.rounds * 16, sizeof(double));
    if (s_build(&b, cfg.items) != 0 || !out || !arena.buf || !t) {
        fprintf(stderr, "sluice-bench codec: out of memory\n");
        goto out;
    }
    s_op_t ops[4];
    for (int k = 0; k < 4; k++) {
        size_t len = protobuf_c_message_get_packed_size(&b.env[k].base);
        if (!(bytes[k] = malloc(len)))
            goto out;
        protobuf_c_message_pack(&b.env[k].base, bytes[k]);
        ops[k] = (s_op_t){.env = &b.env[k],
                          .bytes = bytes[k],
                          .len = len,
                          .out = out,
                          .cap = cap,
                          .arena = &arena};
        if (s_check(&ops[k]) != 0) {
            fprintf(stderr, "sluice-bench codec: %s does not round-trip\n", s_names[k]);
            goto out;
        }
    }
    printf("codec: %d items per batch, %d rounds of %d ms per measurement\n", cfg.items, cfg.rounds,
           cfg.duration_ms);
    for (int r = 0; r < cfg.rounds; r++)
        for (int k = 0; k < 4; k++)
            for (int w = 0; w < 4; w++) {
                /* alternate which side goes first from round to round */
                int which = r & 1 ? w ^ 1 : w;
                double ns = s_time(&ops[k], which, cfg.duration_ms);
                if (ns < 0) {
                    fprintf(stderr, "sluice-bench codec: %s failed\n", s_names[k]);
                    goto out;
                }
                t[(size_t)(k * 4 + which) * (size_t)cfg.rounds + (size_t)r] = ns;
            }
    double enc_base = 0, enc_fast = 0, dec_base = 0, dec_fast = 0;
    for (int k = 0; k < 4; k++) {
        double m[4];
        for (int w = 0; w < 4; w++)
            m[w] = sl_median(&t[(size_t)(k * 4 + w) * (size_t)cfg.rounds], (size_t)cfg.rounds) /
                   cfg.items;
        printf("%-15s %6zu bytes  encode: protobuf-c %6.1f ns/item, codec %6.1f (%.2fx)  "
               "decode: protobuf-c %6.1f ns/item, codec %6.1f (%.2fx)\n",
               s_names[k], ops[k].len, m[0], m[1], m[0] / m[1], m[2], m[3], m[2] / m[3]);
        enc_base += m[0];
        enc_fast += m[1];
        dec_base += m[2];
        dec_fast += m[3];
    }
    printf("per job (one item of each body): encode %.1f -> %.1f ns, decode %.1f -> %.1f ns\n",
           enc_base, enc_fast, dec_base, dec_fast);
    printf("RESULT encode_speedup=%.2f decode_speedup=%.2f codec_ns_per_job=%.1f "
           "protobuf_c_ns_per_job=%.1f\n",
           enc_base / enc_fast, dec_base / dec_fast, enc_fast + dec_fast, enc_base + dec_base);
    rc = 0;
out:
    for (int k = 0; k < 4; k++)
        free(bytes[k]);
    s_free(&b);
    free(out);
    free(arena.buf);
    free(t);
    return rc;
}
