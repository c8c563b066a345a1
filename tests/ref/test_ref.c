/*
 * The ref backend and its parts: KV manager, safetensors, model, and the
 * backend driven exactly the way an engine drives it (admit, step over a
 * batch mixing prefill and decode, sequences joining and leaving, release),
 * with every sequence's tokens checked against the model run directly.
 *
 * Tolerances: weight-only quantized models against the fp32 model's logits,
 * relative error ||l_q - l|| / ||l|| over every position of a prompt:
 *   bf16 <= 0.01, fp16 <= 0.002, int8 <= 0.02, int4 <= 0.25
 * (per-weight rounding of 2^-9, 2^-12, 1/254 and 1/14 of the group range
 * for uniform weights, carried through 2 layers and the output layer; the
 * tiny preset measures about 0.0023, 0.0003, 0.005 and 0.09, so each limit
 * leaves a margin of 2.5x or more for other seeds).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_map.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_kv.h"
#include "executor/ref/sl_model.h"
#include "executor/ref/sl_safetensors.h"
#include "scheduler/core/sl_core.h"
#include "tests/support/sl_test.h"

/* --- KV event recorder ----------------------------------------------------------- */

typedef struct events {
    sl_map_t stored;    /* hashes stored and not evicted since */
    uint64_t n_stored;  /* stored reports */
    uint64_t n_evicted; /* evicted reports */
    int bad;            /* an eviction of a hash not stored, or a double store */
} events_t;

static void ev_stored(void *arg, uint64_t h)
{
    events_t *e = arg;
    e->n_stored++;
    if (sl_map_get(&e->stored, h))
        e->bad = 1;
    sl_map_put(&e->stored, h, (void *)1);
}

static void ev_evicted(void *arg, uint64_t h)
{
    events_t *e = arg;
    e->n_evicted++;
    if (!sl_map_del(&e->stored, h))
        e->bad = 1;
}

static sl_backend_kv_cb_t ev_cb(events_t *e)
{
    memset(e, 0, sizeof(*e));
    sl_map_init(&e->stored);
    sl_backend_kv_cb_t cb = {ev_stored, ev_evicted, e};
    return cb;
}

static void s_fill_tokens(sl_rand_t *r, uint32_t *t, uint32_t n, uint32_t vocab)
{
    for (uint32_t i = 0; i < n; i++)
        t[i] = (uint32_t)sl_rand_below(r, vocab);
}

/* --- KV manager ------------------------------------------------------------------- */

static void test_kv_prefix_reuse(void **state)
{
    events_t ev;
    sl_kv_cfg_t cfg = {16, 4, ev_cb(&ev)};
    sl_kv_t *kv = NULL;
    assert_int_equal(sl_kv_create(&cfg, &kv), SL_OK);
    uint32_t p[20];
    for (uint32_t i = 0; i < 20; i++)
        p[i] = i * 3 + 1;
    sl_kv_seq_t *a = NULL, *b = NULL, *c = NULL;
    uint32_t cached = 99, n;
    /* 10 prompt tokens = 2 full blocks, capacity 14 -> 4 blocks */
    assert_int_equal(sl_kv_seq_admit(kv, p, 10, NULL, 14, &a, &cached), SL_OK);
    assert_int_equal(cached, 0);
    sl_kv_seq_table(a, &n);
    assert_int_equal(n, 4);
    sl_kv_seq_commit(kv, a);
    assert_int_equal(ev.n_stored, 2);
    /* same 8-token prefix, longer prompt: both blocks reused while a still runs */
    assert_int_equal(sl_kv_seq_admit(kv, p, 13, NULL, 13, &b, &cached), SL_OK);
    assert_int_equal(cached, 8);
    sl_kv_seq_commit(kv, b);
    assert_int_equal(ev.n_stored, 3); /* only its third block is new */
    const uint32_t *ta = sl_kv_seq_table(a, &n), *tb = sl_kv_seq_table(b, &n);
    assert_int_equal(ta[0], tb[0]);
    assert_int_equal(ta[1], tb[1]);
    assert_int_not_equal(ta[2], tb[2]);
    /* a prompt of exactly two blocks reuses only the first (the last token is computed) */
    assert_int_equal(sl_kv_seq_admit(kv, p, 8, NULL, 9, &c, &cached), SL_OK);
    assert_int_equal(cached, 4);
    sl_kv_seq_release(kv, &c);
    assert_null(c);
    /* different first token: no reuse */
    p[0] = 7777;
    assert_int_equal(sl_kv_seq_admit(kv, p, 10, NULL, 10, &c, &cached), SL_OK);
    assert_int_equal(cached, 0);
    p[0] = 1;
    sl_kv_stats_t s;
    sl_kv_stats(kv, &s);
    assert_int_equal(s.referenced + s.cached + s.free, 16);
    sl_kv_seq_release(kv, &a);
    sl_kv_seq_release(kv, &b);
    sl_kv_seq_release(kv, &c);
    sl_kv_stats(kv, &s);
    assert_int_equal(s.referenced, 0);
    assert_int_equal(s.cached, 3); /* 2 from a, 1 more from b (12 full of 13 tokens -> block 3) */
    assert_int_equal(ev.n_evicted, 0);
    assert_false(ev.bad);
    sl_kv_destroy(&kv);
    sl_kv_destroy(&kv);
    sl_map_fini(&ev.stored);
}

static void test_kv_eviction_and_again(void **state)
{
    events_t ev;
    sl_kv_cfg_t cfg = {8, 4, ev_cb(&ev)};
    sl_kv_t *kv = NULL;
    assert_int_equal(sl_kv_create(&cfg, &kv), SL_OK);
    uint32_t p[32], cached;
    for (uint32_t i = 0; i < 32; i++)
        p[i] = i;
    sl_kv_seq_t *a = NULL, *b = NULL, *c = NULL;
    /* a: 17 tokens (4 full blocks) capacity 20 -> 5 blocks */
    assert_int_equal(sl_kv_seq_admit(kv, p, 17, NULL, 20, &a, &cached), SL_OK);
    sl_kv_seq_commit(kv, a);
    assert_int_equal(ev.n_stored, 4);
    /* b needs 4 blocks, only 3 free: not now, nothing changed */
    assert_int_equal(sl_kv_seq_admit(kv, p + 16, 16, NULL, 16, &b, &cached), SL_ERR_AGAIN);
    assert_null(b);
    /* more than the pool could ever hold */
    sl_test_expect_error("the pool has 8");
    assert_int_equal(sl_kv_seq_admit(kv, p, 4, NULL, 40, &b, &cached), SL_ERR_INVALID);
    sl_kv_seq_release(kv, &a); /* 4 cached, 4 free */
    sl_kv_stats_t s;
    sl_kv_stats(kv, &s);
    assert_int_equal(s.cached, 4);
    /* b (different tokens) takes the 4 free blocks, then c must evict */
    assert_int_equal(sl_kv_seq_admit(kv, p + 16, 16, NULL, 16, &b, &cached), SL_OK);
    assert_int_equal(ev.n_evicted, 0);
    /* c shares a's first 2 blocks and needs 1 more: evicts the deepest of a's chain first */
    assert_int_equal(sl_kv_seq_admit(kv, p, 10, NULL, 12, &c, &cached), SL_OK);
    assert_int_equal(cached, 8);
    assert_int_equal(ev.n_evicted, 1);
    sl_kv_seq_release(kv, &c);
    sl_kv_seq_release(kv, &b);
    /* a's first three blocks are still cached */
    assert_int_equal(sl_kv_seq_admit(kv, p, 13, NULL, 13, &a, &cached), SL_OK);
    assert_int_equal(cached, 12);
    sl_kv_seq_release(kv, &a);
    assert_false(ev.bad);
    sl_kv_destroy(&kv);
    sl_map_fini(&ev.stored);
}

/* --- model --------------------------------------------------------------------------- */

static sl_model_opts_t s_opts(sl_k_dtype_t dt)
{
    sl_model_opts_t o = {NULL, dt, SL_K_CPU, 42, 128, 0, 0, 0, 0, 0};
    return o;
}

static void test_model_deterministic(void **state)
{
    sl_model_cfg_t cfg;
    assert_int_equal(sl_model_preset("tiny", &cfg), SL_OK);
    sl_model_opts_t o = s_opts(SL_K_F32);
    sl_model_t *m1 = NULL, *m2 = NULL;
    assert_int_equal(sl_model_create(&cfg, &o, &m1), SL_OK);
    assert_int_equal(sl_model_create(&cfg, &o, &m2), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 1);
    uint32_t prompt[37], a[40], b[40], c[40];
    s_fill_tokens(&r, prompt, 37, cfg.vocab);
    float *logits = malloc(40 * cfg.vocab * sizeof(float));
    assert_int_equal(sl_model_generate(m1, prompt, 37, 40, a, logits), SL_OK);
    assert_int_equal(sl_model_generate(m1, prompt, 37, 40, b, NULL), SL_OK);
    assert_int_equal(sl_model_generate(m2, prompt, 37, 40, c, NULL), SL_OK);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_equal(a, c, sizeof(a));
    int distinct = 0;
    for (int i = 1; i < 40; i++)
        distinct += a[i] != a[0];
    assert_true(distinct > 0); /* not a constant stream */
    for (size_t i = 0; i < 40 * (size_t)cfg.vocab; i++)
        assert_true(isfinite(logits[i]) && fabsf(logits[i]) < 100.0f);
    /* another seed is another model */
    o.seed = 43;
    sl_model_destroy(&m2);
    assert_int_equal(sl_model_create(&cfg, &o, &m2), SL_OK);
    assert_int_equal(sl_model_generate(m2, prompt, 37, 40, c, NULL), SL_OK);
    assert_memory_not_equal(a, c, sizeof(a));
    free(logits);
    sl_model_destroy(&m1);
    sl_model_destroy(&m2);
    sl_model_destroy(&m2);
}

/* Long generations stay finite: the small preset's shape, shortened to 2 layers for speed. */
static void test_model_finite_long(void **state)
{
    sl_model_cfg_t cfg;
    assert_int_equal(sl_model_preset("tiny", &cfg), SL_OK);
    sl_model_opts_t o = s_opts(SL_K_F32);
    sl_model_t *m = NULL;
    assert_int_equal(sl_model_create(&cfg, &o, &m), SL_OK);
    uint32_t prompt[4] = {1, 2, 3, 4}, n = 400;
    uint32_t *out = malloc(n * 4);
    float *logits = malloc((size_t)n * cfg.vocab * 4);
    assert_int_equal(sl_model_generate(m, prompt, 4, n, out, logits), SL_OK);
    for (size_t i = 0; i < (size_t)n * cfg.vocab; i++)
        assert_true(isfinite(logits[i]) && fabsf(logits[i]) < 100.0f);
    free(out);
    free(logits);
    sl_model_destroy(&m);
}

/* Logits of every position of a prompt, one pass. */
static void s_prompt_logits(sl_model_t *m, const uint32_t *prompt, uint32_t n, float *logits)
{
    const sl_model_cfg_t *c = sl_model_cfg(m);
    uint32_t nb = (n + c->block_tokens - 1) / c->block_tokens;
    uint32_t table[64], pos[64], seq[64], rows[64], next[64];
    for (uint32_t i = 0; i < nb; i++)
        table[i] = nb - 1 - i; /* any blocks, in any order */
    for (uint32_t i = 0; i < n; i++)
        pos[i] = i, seq[i] = 0, rows[i] = i;
    const uint32_t *tables[1] = {table};
    sl_model_batch_t b = {n, prompt, pos, seq, 1, tables, &nb, n, rows};
    assert_int_equal(sl_model_forward(m, &b, next, logits), SL_OK);
}

static void test_model_quantized(void **state)
{
    sl_model_cfg_t cfg;
    assert_int_equal(sl_model_preset("tiny", &cfg), SL_OK);
    uint32_t n = 48, prompt[48];
    sl_rand_t r;
    sl_rand_seed(&r, 7);
    s_fill_tokens(&r, prompt, n, cfg.vocab);
    size_t nl = (size_t)n * cfg.vocab;
    float *ref = malloc(nl * 4), *q = malloc(nl * 4);
    sl_model_opts_t o = s_opts(SL_K_F32);
    sl_model_t *m = NULL;
    assert_int_equal(sl_model_create(&cfg, &o, &m), SL_OK);
    s_prompt_logits(m, prompt, n, ref);
    sl_model_destroy(&m);
    const struct {
        sl_k_dtype_t dt;
        double tol;
    } cases[] = {{SL_K_BF16, 0.01}, {SL_K_F16, 0.002}, {SL_K_I8, 0.02}, {SL_K_I4, 0.25}};
    for (size_t c = 0; c < 4; c++) {
        o = s_opts(cases[c].dt);
        assert_int_equal(sl_model_create(&cfg, &o, &m), SL_OK);
        s_prompt_logits(m, prompt, n, q);
        double num = 0, den = 0;
        for (size_t i = 0; i < nl; i++) {
            num += (double)(q[i] - ref[i]) * (q[i] - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        double err = sqrt(num / den);
        print_message("%s logits rel error %.4f (limit %.3f)\n", sl_model_dtype_name(cases[c].dt),
                      err, cases[c].tol);
        assert_true(err <= cases[c].tol);
        sl_model_destroy(&m);
    }
    free(ref);
    free(q);
}

static void test_safetensors(void **state)
{
    char path[] = "/tmp/sluice-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    sl_model_cfg_t cfg, fcfg;
    assert_int_equal(sl_model_preset("tiny", &cfg), SL_OK);
    assert_int_equal(sl_model_write_synthetic(&cfg, 42, path), SL_OK);
    assert_int_equal(sl_model_cfg_from_file(path, &fcfg), SL_OK);
    assert_int_equal(fcfg.vocab, cfg.vocab);
    assert_int_equal(fcfg.dim, cfg.dim);
    assert_int_equal(fcfg.n_layers, cfg.n_layers);
    assert_int_equal(fcfg.n_heads, cfg.n_heads);
    assert_int_equal(fcfg.n_kv_heads, cfg.n_kv_heads);
    assert_int_equal(fcfg.ffn_dim, cfg.ffn_dim);
    /* the file gives the same tokens as the synthetic weights it was written from */
    sl_model_opts_t o = s_opts(SL_K_F32);
    sl_model_t *ms = NULL, *mf = NULL;
    assert_int_equal(sl_model_create(&cfg, &o, &ms), SL_OK);
    o.weights = path;
    assert_int_equal(sl_model_create(&cfg, &o, &mf), SL_OK);
    uint32_t prompt[9] = {5, 6, 7, 8, 9, 10, 11, 12, 13}, a[12], b[12];
    assert_int_equal(sl_model_generate(ms, prompt, 9, 12, a, NULL), SL_OK);
    assert_int_equal(sl_model_generate(mf, prompt, 9, 12, b, NULL), SL_OK);
    assert_memory_equal(a, b, sizeof(a));
    sl_model_destroy(&mf);
    /* a model of another shape: clear error for the mis-shaped tensor */
    sl_model_cfg_t wide = cfg;
    wide.ffn_dim = 320;
    sl_test_expect_error("has shape [256,128], the model needs [320,128]");
    assert_int_equal(sl_model_create(&wide, &o, &mf), SL_ERR_INVALID);
    assert_null(mf);
    /* more layers than the file has: clear error for the missing tensor */
    sl_model_cfg_t deep = cfg;
    deep.n_layers = 3;
    sl_test_expect_error("no tensor 'model.layers.2.input_layernorm.weight'");
    assert_int_equal(sl_model_create(&deep, &o, &mf), SL_ERR_NOT_FOUND);
    /* a truncated file is refused */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 200), 0);
    fclose(f);
    sl_test_expect_error("malformed header");
    assert_int_equal(sl_model_create(&cfg, &o, &mf), SL_ERR_INVALID);
    o.weights = "/nonexistent/weights.safetensors";
    sl_test_expect_error("cannot open /nonexistent/weights.safetensors");
    assert_int_equal(sl_model_create(&cfg, &o, &mf), SL_ERR_IO);
    sl_model_destroy(&ms);
    unlink(path);
}

/* --- the backend, driven like an engine ---------------------------------------------- */

typedef struct job {
    sl_seq_t seq;          /* what the engine hands the backend */
    uint32_t prompt[400];  /* prompt storage */
    uint32_t out[64];      /* output storage */
    uint32_t expect[64];   /* tokens of the model run directly */
    int arrive;            /* step at which it arrives */
    int state;             /* 0 waiting, 1 running, 2 finished */
    uint32_t cancel_after; /* the engine cancels it after this many tokens (0 = never) */
} job_t;

static sl_backend_params_t s_params(const char *device, sl_backend_kv_cb_t cb)
{
    sl_backend_params_t p;
    memset(&p, 0, sizeof(p));
    p.model = "tiny";
    p.weights = "";
    p.weight_format = "fp32";
    p.device = device;
    p.kv_blocks = 0;
    p.kv_block_tokens = 0;
    p.max_batch = 32;
    p.seed = 1234;
    p.threads = 0;
    p.kv_cb = cb;
    return p;
}

/* The expected tokens: the same model built alone, prompt generated directly. */
static void s_expect(const sl_backend_params_t *p, job_t *jobs, int n)
{
    sl_model_cfg_t cfg;
    sl_model_opts_t o;
    assert_int_equal(sl_backend_ref_resolve(p, &cfg, &o), SL_OK);
    sl_model_t *m = NULL;
    assert_int_equal(sl_model_create(&cfg, &o, &m), SL_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(sl_model_generate(m, jobs[i].prompt, jobs[i].seq.prompt_len,
                                           jobs[i].seq.max_new_tokens, jobs[i].expect, NULL),
                         SL_OK);
    sl_model_destroy(&m);
}

/* An engine loop: arrivals join at their step, every step runs the whole
 * running batch (prefill and decode mixed), finished sequences leave. */
static void s_drive(const sl_backend_ops_t *ops, void *be, job_t *jobs, int n, int *max_mixed)
{
    int finished = 0;
    *max_mixed = 0;
    for (int step = 0; finished < n; step++) {
        assert_true(step < 10000);
        for (int i = 0; i < n; i++) {
            if (jobs[i].state != 0 || jobs[i].arrive > step)
                continue;
            sl_status_t st = ops->admit(be, &jobs[i].seq);
            if (st == SL_ERR_AGAIN)
                continue; /* retried after a release */
            assert_int_equal(st, SL_OK);
            jobs[i].state = 1;
        }
        sl_seq_t *batch[64];
        size_t nb = 0;
        int prefill = 0, decode = 0;
        for (int i = 0; i < n; i++)
            if (jobs[i].state == 1) {
                batch[nb++] = &jobs[i].seq;
                prefill += !jobs[i].seq.prefilled;
                decode += jobs[i].seq.prefilled;
            }
        if (prefill && decode && prefill + decode > *max_mixed)
            *max_mixed = prefill + decode;
        if (nb == 0)
            continue;
        sl_time_t cost = -1;
        assert_int_equal(ops->step(be, batch, nb, &cost), SL_OK);
        assert_int_equal(cost, 0);
        for (size_t b = 0; b < nb; b++)
            assert_true(batch[b]->prefilled);
        for (int i = 0; i < n; i++)
            if (jobs[i].state == 1 &&
                (jobs[i].seq.done ||
                 (jobs[i].cancel_after && jobs[i].seq.n_out >= jobs[i].cancel_after))) {
                ops->release(be, &jobs[i].seq);
                assert_null(jobs[i].seq.backend_state);
                jobs[i].state = 2;
                finished++;
            }
    }
}

static void s_job_init(job_t *j, uint64_t id, uint32_t prompt_len, uint32_t max_new, int arrive)
{
    memset(&j->seq, 0, sizeof(j->seq));
    j->seq.id = id;
    j->seq.prompt = j->prompt;
    j->seq.prompt_len = prompt_len;
    j->seq.max_new_tokens = max_new;
    j->seq.out = j->out;
    j->arrive = arrive;
    j->state = 0;
    j->cancel_after = 0;
}

static void s_backend_batch(const char *format)
{
    events_t ev;
    sl_backend_params_t p = s_params("cpu", ev_cb(&ev));
    p.weight_format = format;
    p.kv_blocks = 160;
    enum { N = 14 };
    job_t *jobs = calloc(N, sizeof(*jobs));
    sl_rand_t r;
    sl_rand_seed(&r, 99);
    uint32_t shared[64];
    s_fill_tokens(&r, shared, 64, 512);
    for (int i = 0; i < N; i++) {
        uint32_t len = 1 + (uint32_t)sl_rand_below(&r, 60);
        if (i == 3)
            len = 300; /* longer than a pass of 256 rows: chunked prefill */
        s_job_init(&jobs[i], 100 + i, len, 1 + (uint32_t)sl_rand_below(&r, 30),
                   (int)sl_rand_below(&r, 25));
        s_fill_tokens(&r, jobs[i].prompt, len, 512);
        if (i % 3 == 0) /* a third share a long prefix with each other */
            memcpy(jobs[i].prompt, shared, (len < 40 ? len : 40) * 4);
    }
    jobs[5].seq.max_new_tokens = 1;                                     /* done at prefill */
    memcpy(jobs[7].prompt, jobs[6].prompt, jobs[6].seq.prompt_len * 4); /* a full repeat */
    jobs[7].seq.prompt_len = jobs[6].seq.prompt_len;
    jobs[7].arrive = 40;
    s_expect(&p, jobs, N);

    void *be = NULL;
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    int mixed;
    s_drive(&sl_backend_ref, be, jobs, N, &mixed);
    print_message("largest batch mixing prefill and decode: %d sequences\n", mixed);
    assert_true(mixed >= 2);
    uint32_t reused = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].seq.n_out, jobs[i].seq.max_new_tokens);
        assert_memory_equal(jobs[i].out, jobs[i].expect, jobs[i].seq.n_out * 4);
        reused += jobs[i].seq.cached_tokens;
    }
    assert_true(jobs[7].seq.cached_tokens > 0 || jobs[6].seq.prompt_len <= 8);
    assert_true(reused > 0);
    assert_true(ev.n_stored > 0);
    assert_false(ev.bad);
    sl_backend_load_t load;
    sl_backend_ref.load(be, &load);
    assert_int_equal(load.kv_blocks_used + load.kv_blocks_free, 160);
    sl_backend_ref.destroy(be);
    free(jobs);
    sl_map_fini(&ev.stored);
}

static void test_backend_batch(void **state)
{
    s_backend_batch("fp32");
}

static void test_backend_batch_int4(void **state)
{
    s_backend_batch("int4");
}

/* Many sequences through a small pool: admission waits (AGAIN), cached
 * blocks are evicted and reported, some sequences are canceled midway;
 * every token produced still equals the model run directly. */
static void test_backend_churn(void **state)
{
    events_t ev;
    sl_backend_params_t p = s_params("cpu", ev_cb(&ev));
    p.kv_blocks = 40; /* 320 tokens */
    enum { N = 40 };
    job_t *jobs = calloc(N, sizeof(*jobs));
    sl_rand_t r;
    sl_rand_seed(&r, 2024);
    uint32_t family[3][48];
    for (int f = 0; f < 3; f++)
        s_fill_tokens(&r, family[f], 48, 512);
    for (int i = 0; i < N; i++) {
        uint32_t len = 8 + (uint32_t)sl_rand_below(&r, 80);
        s_job_init(&jobs[i], 1000 + i, len, 1 + (uint32_t)sl_rand_below(&r, 24),
                   (int)sl_rand_below(&r, 60));
        s_fill_tokens(&r, jobs[i].prompt, len, 512);
        uint32_t shared = (uint32_t)sl_rand_below(&r, 49);
        memcpy(jobs[i].prompt, family[i % 3], (shared < len ? shared : len) * 4);
        if (i % 7 == 3 && jobs[i].seq.max_new_tokens > 2)
            jobs[i].cancel_after = jobs[i].seq.max_new_tokens / 2;
    }
    s_expect(&p, jobs, N);
    void *be = NULL;
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    int mixed;
    s_drive(&sl_backend_ref, be, jobs, N, &mixed);
    uint32_t reused = 0, canceled = 0;
    for (int i = 0; i < N; i++) {
        uint32_t want = jobs[i].cancel_after ? jobs[i].cancel_after : jobs[i].seq.max_new_tokens;
        assert_true(jobs[i].seq.n_out >= want);
        assert_memory_equal(jobs[i].out, jobs[i].expect, jobs[i].seq.n_out * 4);
        reused += jobs[i].seq.cached_tokens;
        canceled += jobs[i].cancel_after != 0;
    }
    print_message("churn: %u prompt tokens reused, %llu blocks stored, %llu evicted, %u canceled\n",
                  reused, (unsigned long long)ev.n_stored, (unsigned long long)ev.n_evicted,
                  canceled);
    assert_true(reused > 0);
    assert_true(ev.n_evicted > 0);
    assert_true(canceled > 0);
    assert_false(ev.bad);
    sl_backend_load_t load;
    sl_backend_ref.load(be, &load);
    assert_int_equal(load.kv_blocks_used + load.kv_blocks_free, 40);
    /* nothing is held: the blocks still cached count as free (evicted on demand) */
    assert_int_equal(load.kv_blocks_used, 0);
    assert_true(sl_map_count(&ev.stored) > 0);
    sl_backend_ref.destroy(be);
    free(jobs);
    sl_map_fini(&ev.stored);
}

/* The same sequence alone and in a batch with others gives the same tokens,
 * and a prompt whose prefix is cached gives exactly the tokens of a cold run. */
static void test_backend_invariance(void **state)
{
    events_t ev;
    sl_backend_params_t p = s_params("auto", ev_cb(&ev));
    p.device = "cpu";
    job_t *j = calloc(6, sizeof(*j));
    sl_rand_t r;
    sl_rand_seed(&r, 5);
    for (int i = 0; i < 6; i++) {
        s_job_init(&j[i], i, 33 + i * 7, 20, 0);
        s_fill_tokens(&r, j[i].prompt, j[i].seq.prompt_len, 512);
    }
    void *be = NULL;
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    int mixed;
    /* alone */
    s_drive(&sl_backend_ref, be, j, 1, &mixed);
    uint32_t alone[20];
    memcpy(alone, j[0].out, sizeof(alone));
    assert_int_equal(j[0].seq.cached_tokens, 0);
    /* again with five others (its prefix is now cached) */
    for (int i = 0; i < 6; i++)
        s_job_init(&j[i], 10 + i, j[i].seq.prompt_len, 20, i);
    s_drive(&sl_backend_ref, be, j, 6, &mixed);
    assert_int_equal(j[0].seq.cached_tokens, 32);
    assert_memory_equal(alone, j[0].out, sizeof(alone));
    /* and with the cache gone (a fresh backend): still the same */
    sl_backend_ref.destroy(be);
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    s_job_init(&j[0], 20, j[0].seq.prompt_len, 20, 0);
    s_drive(&sl_backend_ref, be, j, 1, &mixed);
    assert_memory_equal(alone, j[0].out, sizeof(alone));
    sl_backend_ref.destroy(be);
    free(j);
    sl_map_fini(&ev.stored);
}

static void test_backend_trace_replay(void **state)
{
    events_t ev;
    sl_backend_params_t p = s_params("cpu", ev_cb(&ev));
    void *be = NULL;
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    uint64_t hashes[4] = {0x1111, 0x2222, 0x3333, 0x4444};
    job_t *j = calloc(2, sizeof(*j));
    for (int i = 0; i < 2; i++) {
        s_job_init(&j[i], i, 29, 3, i * 50);
        j[i].seq.prompt = NULL;
        j[i].seq.block_hashes = hashes;
        j[i].seq.n_block_hashes = 4;
        j[i].seq.hash_block_tokens = 8; /* the tiny preset's block size */
    }
    int mixed;
    s_drive(&sl_backend_ref, be, j, 2, &mixed);
    assert_int_equal(j[1].seq.cached_tokens, 24);
    assert_memory_equal(j[0].out, j[1].out, 3 * 4);
    /* the trace's own hashes were reported */
    for (int i = 0; i < 3; i++)
        assert_non_null(sl_map_get(&ev.stored, hashes[i]));
    sl_backend_ref.destroy(be);
    free(j);
    sl_map_fini(&ev.stored);
}

static void test_backend_errors(void **state)
{
    events_t ev;
    sl_backend_params_t p = s_params("cpu", ev_cb(&ev));
    void *be = NULL;
    p.model = "huge";
    sl_test_expect_error("unknown preset 'huge'");
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_ERR_INVALID);
    p.model = "tiny";
    p.device = "tpu";
    sl_test_expect_error("unknown device 'tpu'");
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_ERR_INVALID);
    p.device = "cpu";
    p.weight_format = "int3";
    sl_test_expect_error("unknown weight format 'int3'");
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_ERR_INVALID);
    p.weight_format = "fp32";
    if (!sl_k_cuda_available()) {
        p.device = "cuda";
        sl_test_expect_error("no CUDA device");
        assert_int_equal(sl_backend_ref.create(&p, &be), SL_ERR_UNSUPPORTED);
        p.device = "cpu";
    }
    assert_null(be);

    p.kv_blocks = 12; /* 96 tokens */
    assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
    job_t *j = calloc(3, sizeof(*j));
    s_job_init(&j[0], 1, 500, 13, 0); /* longer than the context */
    assert_int_equal(sl_backend_ref.admit(be, &j[0].seq), SL_ERR_INVALID);
    s_job_init(&j[0], 1, 5, 5, 0);
    j[0].prompt[2] = 512; /* outside the vocabulary */
    assert_int_equal(sl_backend_ref.admit(be, &j[0].seq), SL_ERR_INVALID);
    j[0].prompt[2] = 3;
    s_job_init(&j[0], 1, 60, 20, 0); /* 10 blocks */
    s_job_init(&j[1], 2, 20, 4, 0);  /* 3 blocks: must wait */
    assert_int_equal(sl_backend_ref.admit(be, &j[0].seq), SL_OK);
    assert_int_equal(sl_backend_ref.admit(be, &j[1].seq), SL_ERR_AGAIN);
    assert_null(j[1].seq.backend_state);
    sl_backend_ref.release(be, &j[0].seq); /* canceled before any step */
    assert_int_equal(sl_backend_ref.admit(be, &j[1].seq), SL_OK);
    sl_backend_ref.release(be, &j[1].seq);
    sl_backend_ref.destroy(be);
    free(j);
    sl_map_fini(&ev.stored);
}

/* --- the scheduler hashes prompts as the KV manager does ----------------------------- */

/* Stored hashes in the order the backend reports them. */
typedef struct stored_order {
    uint64_t h[64]; /* hashes reported */
    uint32_t n;     /* entries of h */
} stored_order_t;

static void ord_stored(void *arg, uint64_t h)
{
    stored_order_t *o = arg;
    assert_true(o->n < 64);
    o->h[o->n++] = h;
}

/* The core's view of the last job it dispatched. */
typedef struct placed {
    uint64_t h[64];        /* its block hashes */
    uint32_t n;            /* entries of h */
    uint32_t block_tokens; /* their block size */
} placed_t;

static sl_status_t pl_dispatch(void *arg, sl_exec_t *exec, sl_job_t *job)
{
    placed_t *pl = arg;
    assert_true(job->n_block_hashes <= 64);
    pl->n = job->n_block_hashes;
    pl->block_tokens = job->block_tokens;
    memcpy(pl->h, job->block_hashes, (size_t)pl->n * sizeof(uint64_t));
    return SL_OK;
}

static void pl_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                      const sl_exec_t *exec, const void *payload, const char *error)
{
}

/*
 * A ref backend (the tiny preset's 8-token blocks, then 16-token blocks)
 * runs prompts and reports the hashes of the blocks it caches; the
 * scheduler's core, told the block size the backend advertises, hashes the
 * same token ids at submission: the two lists must be equal, block for
 * block, for prompts shorter than a block, of exact multiples and with a
 * partial last block.
 */
static void test_scheduler_hashes_match_kv(void **state)
{
    static const uint32_t lens[] = {5, 8, 41, 64, 203};
    static const uint32_t block_sizes[] = {0, 16}; /* 0: the preset's */
    sl_rand_t r;
    sl_rand_seed(&r, 2024);
    for (size_t b = 0; b < sizeof(block_sizes) / sizeof(block_sizes[0]); b++) {
        stored_order_t ord = {.n = 0};
        sl_backend_kv_cb_t cb = {ord_stored, NULL, &ord};
        sl_backend_params_t p = s_params("cpu", cb);
        p.kv_block_tokens = block_sizes[b];
        void *be = NULL;
        assert_int_equal(sl_backend_ref.create(&p, &be), SL_OK);
        sl_backend_load_t load;
        sl_backend_ref.load(be, &load);
        uint32_t bt = load.kv_block_tokens;
        assert_int_equal(bt, block_sizes[b] ? block_sizes[b] : 8);
        assert_true(load.kv_blocks_used + load.kv_blocks_free > 0);

        placed_t pl;
        sl_core_io_t io = {.dispatch = pl_dispatch, .result = pl_result};
        sl_core_cfg_t cfg;
        sl_core_cfg_default(&cfg);
        sl_core_t *core = NULL;
        assert_int_equal(sl_core_create(&cfg, &io, &pl, &core), SL_OK);
        sl_exec_info_t info = {.name = "e",
                               .slots = 64,
                               .kv_blocks_total = load.kv_blocks_used + load.kv_blocks_free,
                               .kv_block_tokens = bt};
        uint32_t index;
        assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &index), SL_OK);
        assert_int_equal(sl_core_hash_block_tokens(core), bt);

        job_t *j = calloc(1, sizeof(*j));
        for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
            s_job_init(j, k, lens[k], 1, 0);
            s_fill_tokens(&r, j->prompt, lens[k], 512);
            ord.n = 0;
            int mixed;
            s_drive(&sl_backend_ref, be, j, 1, &mixed);
            assert_int_equal(ord.n, lens[k] / bt); /* every full block is new */

            char id[32];
            snprintf(id, sizeof(id), "b%zu-k%zu", b, k);
            sl_job_desc_t d = {.id = id,
                               .prio = SL_PRIO_INTERACTIVE,
                               .prompt_tokens = lens[k],
                               .max_new_tokens = 1,
                               .token_ids = j->prompt,
                               .n_token_ids = lens[k]};
            sl_job_t *job = NULL;
            sl_busy_reason_t why;
            sl_time_t retry;
            memset(&pl, 0xff, sizeof(pl));
            uint64_t hashed = sl_core_counter(core, SL_CTR_PROMPTS_HASHED);
            assert_int_equal(sl_core_job_submit(core, &d, NULL, 1, &job, &why, &retry), SL_OK);
            assert_int_equal(pl.n, ord.n);
            assert_int_equal(pl.block_tokens, bt);
            assert_memory_equal(pl.h, ord.h, (size_t)ord.n * sizeof(uint64_t));
            assert_int_equal(sl_core_counter(core, SL_CTR_PROMPTS_HASHED), hashed + (ord.n > 0));
        }
        free(j);
        sl_core_destroy(&core);
        sl_backend_ref.destroy(be);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_prefix_reuse),
        cmocka_unit_test(test_kv_eviction_and_again),
        cmocka_unit_test(test_model_deterministic),
        cmocka_unit_test(test_model_finite_long),
        cmocka_unit_test(test_model_quantized),
        cmocka_unit_test(test_safetensors),
        cmocka_unit_test(test_backend_batch),
        cmocka_unit_test(test_backend_batch_int4),
        cmocka_unit_test(test_backend_churn),
        cmocka_unit_test(test_backend_invariance),
        cmocka_unit_test(test_backend_trace_replay),
        cmocka_unit_test(test_backend_errors),
        cmocka_unit_test(test_scheduler_hashes_match_kv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
