/*
 * sluice-bench kernels: check every CUDA kernel against the CPU one on fresh
 * random inputs, then time the bandwidth-bound ones with CUDA events after
 * warm-up and compare them with a device-to-device copy measured in the same
 * run (bytes read plus bytes written over time). The quantized products are
 * also compared with cuBLAS on the same shape in bf16.
 *
 * Without a CUDA device it says so, prints RESULT gpu=none and exits 0.
 * Exit status 1 when a check fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/kernels.h>

#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

typedef struct bench {
    sl_k_ctx_h gpu;   /* CUDA context */
    sl_k_ctx_h cpu;   /* CPU context (the oracle) */
    sl_rand_t rng;    /* fresh inputs */
    int checks;       /* checks run */
    int failed;       /* checks failed */
    int warmup, reps; /* timing */
} bench_t;

static void s_fill(bench_t *b, float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((sl_rand_double(&b->rng) * 2.0 - 1.0) * amp);
}

static void *s_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench kernels: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Device copy of host data (exits on failure: a bench has nothing to unwind). */
static void *s_dev(bench_t *b, const void *host, size_t bytes)
{
    void *d = NULL;
    if (sl_k_alloc(b->gpu, bytes, &d) != SL_OK ||
        (host && sl_k_upload(b->gpu, d, host, bytes) != SL_OK)) {
        fprintf(stderr, "bench kernels: device allocation of %zu bytes failed\n", bytes);
        exit(1);
    }
    return d;
}

static void s_down(bench_t *b, void *host, const void *dev, size_t bytes)
{
    if (sl_k_download(b->gpu, host, dev, bytes) != SL_OK) {
        fprintf(stderr, "bench kernels: download failed\n");
        exit(1);
    }
}

static void s_ok(sl_status_t st, const char *what)
{
    if (st != SL_OK) {
        fprintf(stderr, "bench kernels: %s failed: %s\n", what, sl_status_str(st));
        exit(1);
    }
}

/* Compare a GPU result with the CPU one: relative L2 error, NaN fails. */
static void s_check(bench_t *b, const char *name, const float *gpu, const float *cpu, size_t n,
                    double tol)
{
    double num = 0, den = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(gpu[i]))
            nan = 1;
        num += ((double)gpu[i] - cpu[i]) * ((double)gpu[i] - cpu[i]);
        den += (double)cpu[i] * cpu[i];
    }
    double rel = nan ? INFINITY : sqrt(num / (den > 0 ? den : 1e-300));
    int ok = rel <= tol;
    b->checks++;
    b->failed += !ok;
    printf("check %-28s rel_err %.2e  limit %.0e  %s\n", name, rel, tol, ok ? "ok" : "FAIL");
}

static void s_check_exact(bench_t *b, const char *name, const void *gpu, const void *cpu,
                          size_t bytes)
{
    int ok = memcmp(gpu, cpu, bytes) == 0;
    b->checks++;
    b->failed += !ok;
    printf("check %-28s exact                     %s\n", name, ok ? "ok" : "FAIL");
}

/* --- checks ----------------------------------------------------------------------- */

static void s_check_linear(bench_t *b, sl_k_dtype_t dt, uint32_t m, uint32_t n, uint32_t k,
                           double tol)
{
    float *w = s_xmalloc((size_t)n * k * 4), *x = s_xmalloc((size_t)m * k * 4);
    float *yc = s_xmalloc((size_t)m * n * 4), *yg = s_xmalloc((size_t)m * n * 4);
    s_fill(b, w, (size_t)n * k, 0.05f);
    s_fill(b, x, (size_t)m * k, 1.0f);
    size_t db = sl_k_weight_data_bytes(dt, n, k),
           sb = sl_k_weight_scale_bytes(dt, n, k, SL_K_GROUP_DEFAULT);
    sl_k_weight_t hw = {dt, n, k, SL_K_GROUP_DEFAULT, s_xmalloc(db), sb ? s_xmalloc(sb) : NULL};
    s_ok(sl_k_weight_encode(dt, w, n, k, hw.group, hw.data, hw.scales), "encode");
    s_ok(sl_k_linear(b->cpu, x, m, &hw, yc), "cpu linear");
    sl_k_weight_t dw = hw;
    dw.data = s_dev(b, hw.data, db);
    dw.scales = sb ? s_dev(b, hw.scales, sb) : NULL;
    float *dx = s_dev(b, x, (size_t)m * k * 4), *dy = s_dev(b, NULL, (size_t)m * n * 4);
    s_ok(sl_k_linear(b->gpu, dx, m, &dw, dy), "gpu linear");
    s_down(b, yg, dy, (size_t)m * n * 4);
    char name[64];
    snprintf(name, sizeof(name), "linear %s m=%u n=%u k=%u", sl_model_dtype_name(dt), m, n, k);
    s_check(b, name, yg, yc, (size_t)m * n, tol);
    sl_k_free(b->gpu, dw.data), sl_k_free(b->gpu, dw.scales), sl_k_free(b->gpu, dx),
        sl_k_free(b->gpu, dy);
    free(hw.data), free(hw.scales), free(w), free(x), free(yc), free(yg);
}

static void s_check_elementwise(bench_t *b)
{
    uint32_t m = 33, dim = 1024, heads = 8, hd = 128;
    size_t n = (size_t)m * dim;
    float *x = s_xmalloc(n * 4), *u = s_xmalloc(n * 4), *g = s_xmalloc(dim * 4);
    float *yc = s_xmalloc(n * 4), *yg = s_xmalloc(n * 4);
    uint32_t *pos = s_xmalloc(m * 4);
    s_fill(b, x, n, 3.0f), s_fill(b, u, n, 2.0f), s_fill(b, g, dim, 1.0f);
    for (uint32_t i = 0; i < m; i++)
        pos[i] = (uint32_t)sl_rand_below(&b->rng, 8192);
    float *dx = s_dev(b, x, n * 4), *du = s_dev(b, u, n * 4), *dg = s_dev(b, g, dim * 4);
    float *dy = s_dev(b, NULL, n * 4);
    uint32_t *dpos = s_dev(b, pos, m * 4);

    s_ok(sl_k_rmsnorm(b->cpu, x, g, m, dim, 1e-5f, yc), "rmsnorm");
    s_ok(sl_k_rmsnorm(b->gpu, dx, dg, m, dim, 1e-5f, dy), "rmsnorm");
    s_down(b, yg, dy, n * 4);
    s_check(b, "rmsnorm", yg, yc, n, 1e-5);

    memcpy(yc, x, n * 4);
    s_ok(sl_k_rope(b->cpu, yc, pos, m, heads, hd, 10000.0f), "rope");
    s_ok(sl_k_copy(b->gpu, dy, dx, n * 4), "copy");
    s_ok(sl_k_rope(b->gpu, dy, dpos, m, heads, hd, 10000.0f), "rope");
    s_down(b, yg, dy, n * 4);
    s_check(b, "rope", yg, yc, n, 1e-5);

    s_ok(sl_k_swiglu(b->cpu, x, u, n, yc), "swiglu");
    s_ok(sl_k_swiglu(b->gpu, dx, du, n, dy), "swiglu");
    s_down(b, yg, dy, n * 4);
    s_check(b, "swiglu", yg, yc, n, 1e-5);

    memcpy(yc, x, n * 4);
    s_ok(sl_k_add(b->cpu, yc, u, n), "add");
    s_ok(sl_k_copy(b->gpu, dy, dx, n * 4), "copy");
    s_ok(sl_k_add(b->gpu, dy, du, n), "add");
    s_down(b, yg, dy, n * 4);
    s_check(b, "add", yg, yc, n, 1e-6);

    uint32_t ids[7], *dids;
    for (int i = 0; i < 7; i++)
        ids[i] = (uint32_t)sl_rand_below(&b->rng, m);
    dids = s_dev(b, ids, sizeof(ids));
    s_ok(sl_k_embed(b->cpu, x, ids, 7, dim, yc), "embed");
    s_ok(sl_k_embed(b->gpu, dx, dids, 7, dim, dy), "embed");
    s_down(b, yg, dy, 7 * dim * 4);
    s_check_exact(b, "embed", yg, yc, 7 * dim * 4);

    uint32_t amc[33], amg[33], *dam = s_dev(b, NULL, sizeof(amg));
    s_ok(sl_k_argmax(b->cpu, x, m, dim, amc), "argmax");
    s_ok(sl_k_argmax(b->gpu, dx, m, dim, dam), "argmax");
    s_down(b, amg, dam, sizeof(amg));
    s_check_exact(b, "argmax", amg, amc, sizeof(amg));

    sl_k_free(b->gpu, dx), sl_k_free(b->gpu, du), sl_k_free(b->gpu, dg), sl_k_free(b->gpu, dy);
    sl_k_free(b->gpu, dpos), sl_k_free(b->gpu, dids), sl_k_free(b->gpu, dam);
    free(x), free(u), free(g), free(yc), free(yg), free(pos);
}

static void s_check_attention(bench_t *b, uint32_t hd)
{
    uint32_t s = 200, heads = 8, kvh = 2;
    size_t nq = (size_t)s * heads * hd, nk = (size_t)s * kvh * hd;
    float *q = s_xmalloc(nq * 4), *k = s_xmalloc(nk * 4), *v = s_xmalloc(nk * 4);
    float *oc = s_xmalloc(nq * 4), *og = s_xmalloc(nq * 4);
    s_fill(b, q, nq, 2.0f), s_fill(b, k, nk, 2.0f), s_fill(b, v, nk, 1.0f);
    float scale = 1.0f / sqrtf((float)hd);
    float *dq = s_dev(b, q, nq * 4), *dk = s_dev(b, k, nk * 4), *dv = s_dev(b, v, nk * 4);
    float *dout = s_dev(b, NULL, nq * 4);
    char name[64];
    s_ok(sl_k_attn_prefill(b->cpu, q, k, v, s, heads, kvh, hd, scale, oc), "attn prefill");
    s_ok(sl_k_attn_prefill(b->gpu, dq, dk, dv, s, heads, kvh, hd, scale, dout), "attn prefill");
    s_down(b, og, dout, nq * 4);
    snprintf(name, sizeof(name), "attn prefill d=%u", hd);
    s_check(b, name, og, oc, nq, 1e-5);

    /* paged: the same K/V scattered over a pool by kv_write, rows of 3 sequences */
    uint32_t bt = 16, nblocks = 64, max_blocks = 16;
    size_t stride = (size_t)2 * bt * kvh * hd; /* K then V in each block, like the model */
    float *pool = s_xmalloc(nblocks * stride * 4);
    s_fill(b, pool, nblocks * stride, 5.0f);
    uint32_t tables[3 * 16], perm[64];
    for (uint32_t i = 0; i < nblocks; i++)
        perm[i] = i;
    for (uint32_t i = nblocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)sl_rand_below(&b->rng, i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    memcpy(tables, perm, sizeof(tables));
    uint32_t rows = s, *pos = s_xmalloc(rows * 4), *rs = s_xmalloc(rows * 4);
    for (uint32_t r = 0; r < rows; r++) /* rows 0..199 split over 3 sequences */
        rs[r] = r % 3, pos[r] = r / 3 + 130 * (r % 3 == 2);
    float *dpool = s_dev(b, pool, nblocks * stride * 4);
    uint32_t *dtab = s_dev(b, tables, sizeof(tables)), *dpos = s_dev(b, pos, rows * 4);
    uint32_t *drs = s_dev(b, rs, rows * 4);
    sl_k_paged_t kvc = {pool, pool + (size_t)bt * kvh * hd, stride, bt, kvh, hd};
    sl_k_paged_t kvg = {dpool, dpool + (size_t)bt * kvh * hd, stride, bt, kvh, hd};
    sl_k_rows_t rc = {rows, pos, rs, tables, max_blocks}, rg = {rows, dpos, drs, dtab, max_blocks};
    s_ok(sl_k_kv_write(b->cpu, &kvc, &rc, k, v), "kv write");
    s_ok(sl_k_kv_write(b->gpu, &kvg, &rg, dk, dv), "kv write");
    float *pool_back = s_xmalloc(nblocks * stride * 4);
    s_down(b, pool_back, dpool, nblocks * stride * 4);
    snprintf(name, sizeof(name), "kv write d=%u", hd);
    s_check_exact(b, name, pool_back, pool, nblocks * stride * 4);
    s_ok(sl_k_attn_paged(b->cpu, &kvc, &rc, q, heads, scale, oc), "attn paged");
    s_ok(sl_k_attn_paged(b->gpu, &kvg, &rg, dq, heads, scale, dout), "attn paged");
    s_down(b, og, dout, nq * 4);
    snprintf(name, sizeof(name), "attn paged d=%u", hd);
    s_check(b, name, og, oc, nq, 1e-5);

    /* pack then unpack: the same blocks come back */
    size_t bb = stride * 4;
    uint32_t *dblocks = s_dev(b, perm, 20 * 4);
    void *dbuf = s_dev(b, NULL, 20 * bb);
    char *buf = s_xmalloc(20 * bb), *ref = s_xmalloc(20 * bb);
    s_ok(sl_k_kv_pack(b->cpu, pool, bb, perm, 20, ref), "pack");
    s_ok(sl_k_kv_pack(b->gpu, dpool, bb, dblocks, 20, dbuf), "pack");
    s_down(b, buf, dbuf, 20 * bb);
    s_check_exact(b, "kv pack", buf, ref, 20 * bb);
    float *zero = calloc(nblocks * stride, 4);
    s_ok(sl_k_upload(b->gpu, dpool, zero, nblocks * stride * 4), "upload");
    s_ok(sl_k_kv_unpack(b->gpu, dpool, bb, dblocks, 20, dbuf), "unpack");
    s_down(b, pool_back, dpool, nblocks * stride * 4);
    int same = 1;
    for (uint32_t i = 0; i < 20; i++)
        same &= !memcmp((char *)pool_back + (size_t)perm[i] * bb,
                        (char *)pool + (size_t)perm[i] * bb, bb);
    s_check_exact(b, "kv unpack", &same, &(int){1}, sizeof(int));

    sl_k_free(b->gpu, dq), sl_k_free(b->gpu, dk), sl_k_free(b->gpu, dv), sl_k_free(b->gpu, dout);
    sl_k_free(b->gpu, dpool), sl_k_free(b->gpu, dtab), sl_k_free(b->gpu, dpos),
        sl_k_free(b->gpu, drs);
    sl_k_free(b->gpu, dblocks), sl_k_free(b->gpu, dbuf);
    free(q), free(k), free(v), free(oc), free(og), free(pool), free(pos), free(rs), free(pool_back);
    free(buf), free(ref), free(zero);
}

/* The whole model: the tiny preset on CUDA against the CPU, same weights. */
static void s_check_model(bench_t *b, sl_k_dtype_t dt, double tol)
{
    sl_model_cfg_t cfg;
    s_ok(sl_model_preset("tiny", &cfg), "preset");
    sl_model_opts_t o = {NULL, dt, SL_K_CPU, 42, 64, 0, 0, 0, 0, 0};
    sl_model_t *mc = NULL, *mg = NULL;
    s_ok(sl_model_create(&cfg, &o, &mc), "cpu model");
    o.device = SL_K_CUDA;
    s_ok(sl_model_create(&cfg, &o, &mg), "cuda model");
    uint32_t prompt[24], n_new = 16, tc[16], tg[16];
    for (int i = 0; i < 24; i++)
        prompt[i] = (uint32_t)sl_rand_below(&b->rng, cfg.vocab);
    float *lc = s_xmalloc((size_t)n_new * cfg.vocab * 4),
          *lg = s_xmalloc((size_t)n_new * cfg.vocab * 4);
    s_ok(sl_model_generate(mc, prompt, 24, 1, tc, lc), "cpu generate");
    s_ok(sl_model_generate(mg, prompt, 24, 1, tg, lg), "cuda generate");
    char name[64];
    snprintf(name, sizeof(name), "model tiny %s logits", sl_model_dtype_name(dt));
    s_check(b, name, lg, lc, cfg.vocab, tol);
    s_ok(sl_model_generate(mc, prompt, 24, n_new, tc, NULL), "cpu generate");
    s_ok(sl_model_generate(mg, prompt, 24, n_new, tg, NULL), "cuda generate");
    uint32_t same = 0;
    while (same < n_new && tc[same] == tg[same])
        same++;
    printf("info  model tiny %s: %u of %u greedy tokens equal before the first difference\n",
           sl_model_dtype_name(dt), same, n_new);
    free(lc), free(lg);
    sl_model_destroy(&mc);
    sl_model_destroy(&mg);
}

/* Sequences driven through a backend until all are done (all admitted at once). */
typedef struct run_seqs {
    uint32_t n;          /* sequences */
    uint32_t prompt_len; /* tokens per prompt */
    uint32_t max_new;    /* tokens to generate */
    uint32_t *prompts;   /* n * prompt_len */
    uint32_t *outs;      /* n * max_new */
    sl_seq_t *seqs;      /* n */
} run_seqs_t;

static void s_run_init(bench_t *b, run_seqs_t *r, uint32_t n, uint32_t prompt_len, uint32_t max_new,
                       uint32_t vocab)
{
    r->n = n, r->prompt_len = prompt_len, r->max_new = max_new;
    r->prompts = s_xmalloc((size_t)n * prompt_len * 4);
    r->outs = s_xmalloc((size_t)n * max_new * 4);
    r->seqs = calloc(n, sizeof(*r->seqs));
    for (size_t i = 0; i < (size_t)n * prompt_len; i++)
        r->prompts[i] = (uint32_t)sl_rand_below(&b->rng, vocab);
    for (uint32_t i = 0; i < n / 2; i++) /* half share a prefix with another */
        memcpy(r->prompts + (size_t)(n - 1 - i) * prompt_len, r->prompts + (size_t)i * prompt_len,
               prompt_len / 2 * 4);
}

static void s_run_admit(const sl_backend_ops_t *ops, void *be, run_seqs_t *r)
{
    for (uint32_t i = 0; i < r->n; i++) {
        sl_seq_t *q = &r->seqs[i];
        memset(q, 0, sizeof(*q));
        q->id = i;
        q->prompt = r->prompts + (size_t)i * r->prompt_len;
        q->prompt_len = r->prompt_len;
        q->max_new_tokens = r->max_new;
        q->out = r->outs + (size_t)i * r->max_new;
        s_ok(ops->admit(be, q), "admit");
    }
}

/* One engine step over every unfinished sequence. */
static void s_run_step(const sl_backend_ops_t *ops, void *be, run_seqs_t *r)
{
    sl_seq_t **batch = s_xmalloc(r->n * sizeof(*batch));
    size_t nb = 0;
    sl_time_t cost;
    for (uint32_t i = 0; i < r->n; i++)
        if (!r->seqs[i].done)
            batch[nb++] = &r->seqs[i];
    if (nb)
        s_ok(ops->step(be, batch, nb, &cost), "step");
    free(batch);
}

static void s_run_release(const sl_backend_ops_t *ops, void *be, run_seqs_t *r)
{
    for (uint32_t i = 0; i < r->n; i++)
        ops->release(be, &r->seqs[i]);
}

static void s_run_free(run_seqs_t *r)
{
    free(r->prompts), free(r->outs), free(r->seqs);
}

static sl_backend_params_t s_params(const char *model, const char *device, const char *format,
                                    uint32_t max_batch)
{
    sl_backend_params_t p;
    memset(&p, 0, sizeof(p));
    p.model = model, p.weights = "", p.weight_format = format, p.device = device;
    p.max_batch = max_batch;
    p.seed = 7;
    return p;
}

/* The ref backend on CUDA against the ref backend on the CPU, batched. */
static void s_check_backend(bench_t *b)
{
    run_seqs_t rc, rg;
    s_run_init(b, &rc, 12, 40, 12, 512);
    rg = rc;
    rg.outs = s_xmalloc((size_t)rc.n * rc.max_new * 4);
    rg.seqs = calloc(rc.n, sizeof(*rg.seqs));
    void *bc = NULL, *bg = NULL;
    sl_backend_params_t pc = s_params("tiny", "cpu", "fp32", 32),
                        pg = s_params("tiny", "cuda", "fp32", 32);
    s_ok(sl_backend_ref.create(&pc, &bc), "cpu backend");
    s_ok(sl_backend_ref.create(&pg, &bg), "cuda backend");
    s_run_admit(&sl_backend_ref, bc, &rc);
    s_run_admit(&sl_backend_ref, bg, &rg);
    for (uint32_t t = 0; t < rc.max_new; t++) {
        s_run_step(&sl_backend_ref, bc, &rc);
        s_run_step(&sl_backend_ref, bg, &rg);
    }
    uint32_t first_same = 0, all_same = 0;
    for (uint32_t i = 0; i < rc.n; i++) {
        first_same += rc.outs[(size_t)i * rc.max_new] == rg.outs[(size_t)i * rc.max_new];
        all_same += !memcmp(rc.outs + (size_t)i * rc.max_new, rg.outs + (size_t)i * rc.max_new,
                            rc.max_new * 4);
    }
    /* fp32 on both sides: a greedy choice flips only on a near tie */
    int ok = first_same == rc.n && all_same * 10 >= rc.n * 9;
    b->checks++;
    b->failed += !ok;
    printf("check %-28s %u/%u first tokens, %u/%u sequences equal  %s\n", "backend tiny fp32 cuda",
           first_same, rc.n, all_same, rc.n, ok ? "ok" : "FAIL");
    s_run_release(&sl_backend_ref, bc, &rc);
    s_run_release(&sl_backend_ref, bg, &rg);
    sl_backend_ref.destroy(bc);
    sl_backend_ref.destroy(bg);
    free(rg.outs), free(rg.seqs);
    s_run_free(&rc);
}

/* End-to-end speed of the medium preset: 32 prompts of 512 tokens, then decode steps. */
static void s_time_backend(bench_t *b, const char *format, double *prefill_tps, double *decode_ms)
{
    void *be = NULL;
    sl_backend_params_t p = s_params("medium", "cuda", format, 32);
    s_ok(sl_backend_ref.create(&p, &be), "medium backend");
    run_seqs_t r;
    s_run_init(b, &r, 32, 512, 17, 32000);
    s_run_admit(&sl_backend_ref, be, &r);
    sl_time_t t0 = sl_clock_now();
    s_run_step(&sl_backend_ref, be, &r);
    sl_time_t t1 = sl_clock_now();
    s_run_step(&sl_backend_ref, be, &r); /* warm-up decode */
    sl_time_t t2 = sl_clock_now();
    for (int i = 0; i < 15; i++)
        s_run_step(&sl_backend_ref, be, &r);
    sl_time_t t3 = sl_clock_now();
    uint32_t cached = 0;
    for (uint32_t i = 0; i < r.n; i++)
        cached += r.seqs[i].cached_tokens;
    *prefill_tps = (double)(r.n * r.prompt_len - cached) / ((double)(t1 - t0) / 1e9);
    *decode_ms = (double)(t3 - t2) / 1e6 / 15;
    printf("%-34s %10.3f %10s %8s   prefill %.0f tok/s, decode %.0f tok/s (batch 32)\n", format,
           *decode_ms, "-", "-", *prefill_tps, 32.0 / (*decode_ms / 1e3));
    s_run_release(&sl_backend_ref, be, &r);
    sl_backend_ref.destroy(be);
    s_run_free(&r);
}

/* --- timing ------------------------------------------------------------------------- */

typedef struct copy_arg {
    sl_k_ctx_h ctx;  /* device */
    void *dst, *src; /* buffers */
    size_t bytes;    /* per copy */
} copy_arg_t;

static sl_status_t s_copy_fn(void *a)
{
    copy_arg_t *c = a;
    return sl_k_copy(c->ctx, c->dst, c->src, c->bytes);
}

typedef struct linear_arg {
    sl_k_ctx_h ctx;     /* device */
    const float *x;     /* input rows */
    uint32_t m;         /* rows */
    sl_k_weight_t w[2]; /* two weight sets, used in turn (defeats the L2 cache) */
    float *y;           /* output */
    int turn;           /* which set next */
} linear_arg_t;

static sl_status_t s_linear_fn(void *a)
{
    linear_arg_t *l = a;
    l->turn ^= 1;
    return sl_k_linear(l->ctx, l->x, l->m, &l->w[l->turn], l->y);
}

typedef struct attn_arg {
    sl_k_ctx_h ctx;   /* device */
    sl_k_paged_t kv;  /* pool */
    sl_k_rows_t rows; /* one row per sequence */
    const float *q;   /* queries */
    uint32_t heads;   /* query heads */
    float *out;       /* output */
} attn_arg_t;

static sl_status_t s_attn_fn(void *a)
{
    attn_arg_t *t = a;
    return sl_k_attn_paged(t->ctx, &t->kv, &t->rows, t->q, t->heads, 0.08838835f, t->out);
}

/* Fill a device buffer with random floats through a reusable host chunk. */
static void s_dev_random(bench_t *b, float *d, size_t n, float amp)
{
    size_t chunk = (size_t)1 << 22;
    float *h = s_xmalloc(chunk * 4);
    s_fill(b, h, chunk, amp);
    for (size_t off = 0; off < n; off += chunk) {
        size_t c = n - off < chunk ? n - off : chunk;
        h[(off / chunk) % chunk] += 1.0f; /* chunks differ */
        s_ok(sl_k_upload(b->gpu, d + off, h, c * 4), "upload");
    }
    free(h);
}

static double s_time(bench_t *b, sl_status_t (*fn)(void *), void *arg)
{
    double ms = 0;
    s_ok(sl_k_time(b->gpu, fn, arg, b->warmup, b->reps, &ms), "timing");
    return ms;
}

/* A device weight of random values in format dt (encoded on the host). */
static sl_k_weight_t s_dev_weight(bench_t *b, sl_k_dtype_t dt, uint32_t n, uint32_t k)
{
    size_t db = sl_k_weight_data_bytes(dt, n, k),
           sb = sl_k_weight_scale_bytes(dt, n, k, SL_K_GROUP_DEFAULT);
    sl_k_weight_t w = {dt, n, k, SL_K_GROUP_DEFAULT, NULL, NULL};
    /* encode a band of rows at a time to bound host memory */
    uint32_t band = 256;
    float *hf = s_xmalloc((size_t)band * k * 4);
    void *hd = s_xmalloc(sl_k_weight_data_bytes(dt, band, k));
    float *hs = sb ? s_xmalloc(sl_k_weight_scale_bytes(dt, band, k, SL_K_GROUP_DEFAULT)) : NULL;
    w.data = s_dev(b, NULL, db);
    w.scales = sb ? s_dev(b, NULL, sb) : NULL;
    for (uint32_t r = 0; r < n; r += band) {
        s_fill(b, hf, (size_t)band * k, 0.05f);
        s_ok(sl_k_weight_encode(dt, hf, band, k, SL_K_GROUP_DEFAULT, hd, hs), "encode");
        size_t rb = sl_k_weight_data_bytes(dt, band, k),
               rsb = sl_k_weight_scale_bytes(dt, band, k, SL_K_GROUP_DEFAULT);
        s_ok(sl_k_upload(b->gpu, (char *)w.data + (size_t)(r / band) * rb, hd, rb), "upload");
        if (sb)
            s_ok(sl_k_upload(b->gpu, (char *)w.scales + (size_t)(r / band) * rsb, hs, rsb),
                 "upload");
    }
    free(hf), free(hd), free(hs);
    return w;
}

static void s_free_weight(bench_t *b, sl_k_weight_t *w)
{
    sl_k_free(b->gpu, w->data);
    sl_k_free(b->gpu, w->scales);
}

/* Time y = x W^T for m rows with two weight sets in format dt; returns ms, bytes via *bytes_p. */
static double s_time_linear(bench_t *b, sl_k_dtype_t dt, uint32_t m, uint32_t n, uint32_t k,
                            double *bytes_p)
{
    linear_arg_t a = {b->gpu, NULL, m, {{0}}, NULL, 0};
    a.w[0] = s_dev_weight(b, dt, n, k);
    a.w[1] = s_dev_weight(b, dt, n, k);
    float *x = s_dev(b, NULL, (size_t)m * k * 4);
    s_dev_random(b, x, (size_t)m * k, 1.0f);
    a.x = x;
    a.y = s_dev(b, NULL, (size_t)m * n * 4);
    double ms = s_time(b, s_linear_fn, &a);
    *bytes_p = (double)sl_k_weight_data_bytes(dt, n, k) +
               (double)sl_k_weight_scale_bytes(dt, n, k, SL_K_GROUP_DEFAULT) + (double)m * k * 4 +
               (double)m * n * 4;
    s_free_weight(b, &a.w[0]);
    s_free_weight(b, &a.w[1]);
    sl_k_free(b->gpu, x);
    sl_k_free(b->gpu, a.y);
    return ms;
}

int sl_bench_kernels_main(int argc, char **argv)
{
    bench_t b;
    memset(&b, 0, sizeof(b));
    b.warmup = 5;
    b.reps = 30;
    uint64_t seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: sluice-bench kernels [--seed N] [--reps N]\n"
                   "Checks every CUDA kernel against the CPU one, then times decode attention and\n"
                   "the quantized products against a device-to-device copy.\n");
            return 0;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            seed = strtoull(argv[++i], NULL, 0);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            b.reps = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 30;
        } else {
            fprintf(stderr, "sluice-bench kernels: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!sl_k_cuda_available()) {
#ifdef SLUICE_HAVE_CUDA
        printf("kernels: no CUDA device is present; nothing to check or time on a GPU.\n");
#else
        printf("kernels: no CUDA device is present (this build has no CUDA support).\n");
#endif
        printf("RESULT gpu=none checks=0 failed=0\n");
        return 0;
    }
    sl_rand_seed(&b.rng, seed);
    printf("kernels: device %s, seed %llu\n", sl_k_cuda_device_name(), (unsigned long long)seed);
    s_ok(sl_k_ctx_create(SL_K_CUDA, 0, &b.gpu), "cuda context");
    s_ok(sl_k_ctx_create(SL_K_CPU, 0, &b.cpu), "cpu context");

    /* --- correctness: every kernel against the CPU ------------------------------- */
    s_check_linear(&b, SL_K_F32, 7, 320, 512, 1e-5);
    s_check_linear(&b, SL_K_BF16, 7, 320, 512, 1e-2); /* the GPU rounds x to bf16 too */
    s_check_linear(&b, SL_K_F16, 7, 320, 512, 2e-3);
    for (uint32_t m = 1; m <= 13; m += 4) {
        s_check_linear(&b, SL_K_I8, m, 333, 1024, 1e-5);
        s_check_linear(&b, SL_K_I4, m, 333, 1024, 1e-5);
    }
    s_check_elementwise(&b);
    s_check_attention(&b, 64);
    s_check_attention(&b, 128);
    s_check_model(&b, SL_K_F32, 1e-4);
    s_check_model(&b, SL_K_I4, 1e-4);
    s_check_model(&b, SL_K_BF16, 3e-2);
    s_check_backend(&b);

    /* --- bandwidth: copy baseline ------------------------------------------------ */
    copy_arg_t c = {b.gpu, NULL, NULL, (size_t)1 << 30};
    c.src = s_dev(&b, NULL, c.bytes);
    c.dst = s_dev(&b, NULL, c.bytes);
    s_dev_random(&b, c.src, c.bytes / 4, 1.0f);
    double copy_ms = s_time(&b, s_copy_fn, &c);
    double copy_gbps = 2.0 * (double)c.bytes / copy_ms / 1e6;
    sl_k_free(b.gpu, c.src);
    sl_k_free(b.gpu, c.dst);
    printf("\n%-34s %10s %10s %8s\n", "kernel", "ms", "GB/s", "of copy");
    printf("%-34s %10.3f %10.1f %8.2f\n", "d2d copy 1 GiB", copy_ms, copy_gbps, 1.0);

    /* --- decode attention: 32 sequences x 4096 tokens, 32/8 heads of 128, paged ---- */
    uint32_t B = 32, ctx = 4096, H = 32, KVH = 8, D = 128, BT = 16;
    uint32_t per_seq = ctx / BT, nblocks = B * per_seq;
    size_t stride = (size_t)2 * BT * KVH * D;
    attn_arg_t at;
    memset(&at, 0, sizeof(at));
    float *pool = s_dev(&b, NULL, (size_t)nblocks * stride * 4);
    s_dev_random(&b, pool, (size_t)nblocks * stride, 1.0f);
    uint32_t *tables = s_xmalloc((size_t)nblocks * 4), *pos = s_xmalloc(B * 4),
             *rs = s_xmalloc(B * 4);
    for (uint32_t i = 0; i < nblocks; i++)
        tables[i] = i;
    for (uint32_t i = nblocks - 1; i > 0; i--) { /* scattered blocks */
        uint32_t j = (uint32_t)sl_rand_below(&b.rng, i + 1), t = tables[i];
        tables[i] = tables[j], tables[j] = t;
    }
    for (uint32_t i = 0; i < B; i++)
        pos[i] = ctx - 1, rs[i] = i;
    float *q = s_dev(&b, NULL, (size_t)B * H * D * 4),
          *out = s_dev(&b, NULL, (size_t)B * H * D * 4);
    s_dev_random(&b, q, (size_t)B * H * D, 1.0f);
    at.ctx = b.gpu;
    at.kv = (sl_k_paged_t){pool, pool + (size_t)BT * KVH * D, stride, BT, KVH, D};
    at.rows = (sl_k_rows_t){B, s_dev(&b, pos, B * 4), s_dev(&b, rs, B * 4),
                            s_dev(&b, tables, (size_t)nblocks * 4), per_seq};
    at.q = q, at.heads = H, at.out = out;
    double attn_ms = s_time(&b, s_attn_fn, &at);
    double attn_bytes =
        (double)B * ctx * KVH * D * 4 * 2 + 2.0 * B * H * D * 4 + (double)nblocks * 4;
    double attn_gbps = attn_bytes / attn_ms / 1e6;
    printf("%-34s %10.3f %10.1f %8.2f\n", "decode attn b32 ctx4096 h32/8 d128", attn_ms, attn_gbps,
           attn_gbps / copy_gbps);
    /* and check this large case too: gather sequence 0 and B-1 with pack, attend on the CPU */
    for (uint32_t sidx = 0; sidx < B; sidx += B - 1) {
        size_t bb = stride * 4;
        float *packed = s_dev(&b, NULL, per_seq * bb);
        s_ok(sl_k_kv_pack(b.gpu, pool, bb,
                          (const uint32_t *)at.rows.tables + (size_t)sidx * per_seq, per_seq,
                          packed),
             "pack");
        float *hp = s_xmalloc(per_seq * bb), *hq = s_xmalloc((size_t)H * D * 4);
        float *ho = s_xmalloc((size_t)H * D * 4), *hc = s_xmalloc((size_t)H * D * 4);
        s_down(&b, hp, packed, per_seq * bb);
        s_down(&b, hq, q + (size_t)sidx * H * D, (size_t)H * D * 4);
        s_down(&b, ho, out + (size_t)sidx * H * D, (size_t)H * D * 4);
        uint32_t *ident = s_xmalloc(per_seq * 4), zero = 0, p = ctx - 1;
        for (uint32_t i = 0; i < per_seq; i++)
            ident[i] = i;
        sl_k_paged_t hkv = {hp, hp + (size_t)BT * KVH * D, stride, BT, KVH, D};
        sl_k_rows_t hr = {1, &p, &zero, ident, per_seq};
        s_ok(sl_k_attn_paged(b.cpu, &hkv, &hr, hq, H, 0.08838835f, hc), "cpu attention");
        s_check(&b, sidx ? "decode attn large, last seq" : "decode attn large, seq 0", ho, hc,
                (size_t)H * D, 1e-5);
        free(hp), free(hq), free(ho), free(hc), free(ident);
        sl_k_free(b.gpu, packed);
    }
    sl_k_free(b.gpu, pool), sl_k_free(b.gpu, q), sl_k_free(b.gpu, out);
    sl_k_free(b.gpu, (void *)at.rows.pos), sl_k_free(b.gpu, (void *)at.rows.row_seq);
    sl_k_free(b.gpu, (void *)at.rows.tables);
    free(tables), free(pos), free(rs);

    /* --- quantized products: 16384 x 8192 weights, against cuBLAS bf16 ------------ */
    uint32_t N = 16384, K = 8192;
    double by4, by8, by16, by4m, by16m;
    double i4_ms = s_time_linear(&b, SL_K_I4, 1, N, K, &by4);
    double i8_ms = s_time_linear(&b, SL_K_I8, 1, N, K, &by8);
    double bf_ms = s_time_linear(&b, SL_K_BF16, 1, N, K, &by16);
    double i4m_ms = s_time_linear(&b, SL_K_I4, 8, N, K, &by4m);
    double bfm_ms = s_time_linear(&b, SL_K_BF16, 8, N, K, &by16m);
    double i4_gbps = by4 / i4_ms / 1e6, i8_gbps = by8 / i8_ms / 1e6, bf_gbps = by16 / bf_ms / 1e6;
    printf("%-34s %10.3f %10.1f %8.2f\n", "int4 gemv m=1 16384x8192 (ours)", i4_ms, i4_gbps,
           i4_gbps / copy_gbps);
    printf("%-34s %10.3f %10.1f %8.2f\n", "int8 gemv m=1 16384x8192 (ours)", i8_ms, i8_gbps,
           i8_gbps / copy_gbps);
    printf("%-34s %10.3f %10.1f %8.2f\n", "bf16 gemv m=1 16384x8192 (cuBLAS)", bf_ms, bf_gbps,
           bf_gbps / copy_gbps);
    double flops8 = 2.0 * 8 * N * K;
    printf("%-34s %10.3f %10.1f %8.2f   %.2f TFLOP/s\n", "int4 m=8 16384x8192 (ours)", i4m_ms,
           by4m / i4m_ms / 1e6, by4m / i4m_ms / 1e6 / copy_gbps, flops8 / i4m_ms / 1e9);
    printf("%-34s %10.3f %10.1f %8.2f   %.2f TFLOP/s\n", "bf16 m=8 16384x8192 (cuBLAS)", bfm_ms,
           by16m / bfm_ms / 1e6, by16m / bfm_ms / 1e6 / copy_gbps, flops8 / bfm_ms / 1e9);
    double gm_bytes;
    double gemm_ms = s_time_linear(&b, SL_K_BF16, 4096, 4096, 4096, &gm_bytes);
    double gemm_tflops = 2.0 * 4096.0 * 4096.0 * 4096.0 / gemm_ms / 1e9;
    printf("%-34s %10.3f %10s %8s   %.1f TFLOP/s\n", "bf16 gemm 4096^3 (cuBLAS)", gemm_ms, "-", "-",
           gemm_tflops);

    printf("\n%-34s %10s   (medium preset, 32 x 512-token prompts)\n", "ref backend on CUDA",
           "decode ms");
    double bf_tps, bf_step, i4_tps, i4_step;
    s_time_backend(&b, "bf16", &bf_tps, &bf_step);
    s_time_backend(&b, "int4", &i4_tps, &i4_step);

    printf("\nchecks: %d run, %d failed\n", b.checks, b.failed);
    printf("RESULT gpu=\"%s\" checks=%d failed=%d copy_gbps=%.1f decode_attn_gbps=%.1f "
           "decode_attn_bw_ratio=%.3f int4_gemv_gbps=%.1f int4_gemv_bw_ratio=%.3f "
           "int8_gemv_bw_ratio=%.3f int4_vs_cublas_bf16_speedup=%.2f "
           "int4_m8_vs_cublas_bf16_speedup=%.2f "
           "bf16_gemm_tflops=%.1f medium_bf16_decode_ms=%.2f medium_int4_decode_ms=%.2f "
           "medium_bf16_prefill_tps=%.0f\n",
           sl_k_cuda_device_name(), b.checks, b.failed, copy_gbps, attn_gbps, attn_gbps / copy_gbps,
           i4_gbps, i4_gbps / copy_gbps, i8_gbps / copy_gbps, bf_ms / i4_ms, bfm_ms / i4m_ms,
           gemm_tflops, bf_step, i4_step, bf_tps);
    sl_k_ctx_destroy(&b.gpu);
    sl_k_ctx_destroy(&b.cpu);
    return b.failed ? 1 : 0;
}
