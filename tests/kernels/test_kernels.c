/*
 * CPU kernels against plain float64 references on fresh random inputs.
 *
 * Each check reports the relative error ||out - ref|| / ||ref|| and holds it
 * under a stated threshold:
 *   1e-5  fp32 arithmetic (unit roundoff 6e-8; sums of up to a few thousand
 *         terms stay two orders of magnitude under this);
 *   1e-5  quantized and half-precision products against the float64 product
 *         with the dequantized weights (the dequantization is exact in fp32,
 *         so only the fp32 accumulation differs);
 *   bitwise  paged attention against dense attention (same arithmetic by
 *         design), pack/unpack, and batch invariance of every product: each
 *         output equals the fixed-order dot below, bit for bit, alone, in
 *         any batch and in any split of a batch, whatever OpenBLAS is told
 *         (ctest runs this file under several OPENBLAS_CORETYPE values).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sluice/kernels.h>

#include "common/sl_rand.h"
#include "tests/support/sl_test.h"

#define TOL_F32 1e-5

static sl_rand_t s_rng;
static sl_k_ctx_h s_ctx;

static void s_fill(float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((sl_rand_double(&s_rng) * 2.0 - 1.0) * amp);
}

static double s_rel(const float *out, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(out[i]))
            return INFINITY;
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-300));
}

static void *s_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

/* The promise of the CPU product, written out: eight lane sums over k in
 * steps of 8, a fixed tree, then the tail in order. */
static float s_dot8(const float *a, const float *b, uint32_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            float p = a[i + l] * b[i + l];
            acc[l] = acc[l] + p;
        }
    float tail = 0.0f;
    for (; i < n; i++) {
        float p = a[i] * b[i];
        tail = tail + p;
    }
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
           tail;
}

/* float64 product with the dequantized weights. */
static void s_ref_linear(const float *x, uint32_t m, const float *wd, uint32_t n, uint32_t k,
                         double *y)
{
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double s = 0;
            for (uint32_t t = 0; t < k; t++)
                s += (double)x[(size_t)i * k + t] * wd[(size_t)j * k + t];
            y[(size_t)i * n + j] = s;
        }
}

static void s_check_linear(sl_k_dtype_t dt, uint32_t m, uint32_t n, uint32_t k)
{
    float *w = s_alloc((size_t)n * k * 4), *wd = s_alloc((size_t)n * k * 4);
    float *x = s_alloc((size_t)m * k * 4), *y = s_alloc((size_t)m * n * 4);
    float *y1 = s_alloc((size_t)n * 4);
    double *ref = s_alloc((size_t)m * n * 8);
    s_fill(w, (size_t)n * k, 0.1f);
    s_fill(x, (size_t)m * k, 1.0f);
    sl_k_weight_t wt = {dt, n, k, SL_K_GROUP_DEFAULT, NULL, NULL};
    wt.data = s_alloc(sl_k_weight_data_bytes(dt, n, k));
    size_t sb = sl_k_weight_scale_bytes(dt, n, k, wt.group);
    wt.scales = sb ? s_alloc(sb) : NULL;
    assert_int_equal(sl_k_weight_encode(dt, w, n, k, wt.group, wt.data, wt.scales), SL_OK);
    sl_k_weight_decode(&wt, wd);
    for (size_t i = 0; i < (size_t)m * n; i++)
        y[i] = NAN; /* poison: every element must be written */
    assert_int_equal(sl_k_linear(s_ctx, x, m, &wt, y), SL_OK);
    s_ref_linear(x, m, wd, n, k, ref);
    double err = s_rel(y, ref, (size_t)m * n);
    print_message("linear dtype=%d m=%u n=%u k=%u rel=%.2e\n", (int)dt, m, n, k, err);
    assert_true(err < TOL_F32);
    /* quantization itself stays near the fp32 weights */
    double qerr = 0, qden = 0;
    for (size_t i = 0; i < (size_t)n * k; i++) {
        qerr += (double)(wd[i] - w[i]) * (wd[i] - w[i]);
        qden += (double)w[i] * w[i];
    }
    double qtol = dt == SL_K_I4 ? 0.15 : dt == SL_K_I8 ? 0.01 : dt == SL_K_F32 ? 0 : 0.005;
    assert_true(sqrt(qerr / qden) <= qtol);
    /* batch invariance: every output is the fixed-order dot of its row ... */
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            float e = s_dot8(x + (size_t)i * k, wd + (size_t)j * k, k);
            if (memcmp(&e, &y[(size_t)i * n + j], 4) != 0)
                fail_msg("row %u col %u: %.9g, fixed-order dot %.9g", i, j,
                         (double)y[(size_t)i * n + j], (double)e);
        }
    /* ... so every row equals the same row computed alone ... */
    for (uint32_t i = 0; i < m; i++) {
        assert_int_equal(sl_k_linear(s_ctx, x + (size_t)i * k, 1, &wt, y1), SL_OK);
        assert_memory_equal(y1, y + (size_t)i * n, (size_t)n * 4);
    }
    /* ... and the batch split in two at an odd place gives the same bits */
    if (m > 2) {
        uint32_t h = m / 2 + 1;
        float *ys = s_alloc((size_t)m * n * 4);
        assert_int_equal(sl_k_linear(s_ctx, x, h, &wt, ys), SL_OK);
        assert_int_equal(sl_k_linear(s_ctx, x + (size_t)h * k, m - h, &wt, ys + (size_t)h * n),
                         SL_OK);
        assert_memory_equal(ys, y, (size_t)m * n * 4);
        free(ys);
    }
    free(wt.data);
    free(wt.scales);
    free(w), free(wd), free(x), free(y), free(y1), free(ref);
}

static void test_linear_f32(void **state)
{
    s_check_linear(SL_K_F32, 1, 40, 64);
    s_check_linear(SL_K_F32, 19, 96, 160);
    s_check_linear(SL_K_F32, 37, 257, 512);
}

static void test_linear_half(void **state)
{
    s_check_linear(SL_K_BF16, 5, 64, 128);
    s_check_linear(SL_K_F16, 5, 64, 128);
}

static void test_linear_quant(void **state)
{
    s_check_linear(SL_K_I8, 1, 64, 256);
    s_check_linear(SL_K_I8, 7, 96, 512);
    s_check_linear(SL_K_I4, 1, 64, 256);
    s_check_linear(SL_K_I4, 8, 96, 512);
}

/* Shapes that cross the product's input blocks and weight panels, take
 * the threaded path (a single decode row over a large weight too), and
 * leave a tail of k % 8. */
static void test_linear_shapes(void **state)
{
    s_check_linear(SL_K_F32, 70, 130, 1000);
    s_check_linear(SL_K_F32, 1, 2050, 1024);
    s_check_linear(SL_K_F32, 3, 7, 13);
    s_check_linear(SL_K_I4, 33, 66, 992);
    s_check_linear(SL_K_BF16, 9, 2049, 1024);
}

/* A context set not invariant (plain OpenBLAS where the build has it) is
 * still a correct product, and switching back restores the promise. */
static void test_linear_blas(void **state)
{
    sl_k_ctx_set_invariant(s_ctx, false);
    uint32_t m = 19, n = 96, k = 160;
    float *w = s_alloc((size_t)n * k * 4), *x = s_alloc((size_t)m * k * 4),
          *y = s_alloc((size_t)m * n * 4);
    double *ref = s_alloc((size_t)m * n * 8);
    s_fill(w, (size_t)n * k, 0.1f);
    s_fill(x, (size_t)m * k, 1.0f);
    sl_k_weight_t wt = {SL_K_F32, n, k, SL_K_GROUP_DEFAULT, w, NULL};
    assert_int_equal(sl_k_linear(s_ctx, x, m, &wt, y), SL_OK);
    s_ref_linear(x, m, w, n, k, ref);
    assert_true(s_rel(y, ref, (size_t)m * n) < TOL_F32);
    sl_k_ctx_set_invariant(s_ctx, true);
    s_check_linear(SL_K_F32, 19, 96, 160);
    free(w), free(x), free(y), free(ref);
}

static void test_formats(void **state)
{
    assert_int_equal(sl_k_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(sl_k_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(sl_k_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(sl_k_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(sl_k_f32_to_f16(1e6f), 0x7c00);
    assert_true(sl_k_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    for (int i = 0; i < 10000; i++) {
        float f;
        s_fill(&f, 1, 100.0f);
        float h = sl_k_f16_to_f32(sl_k_f32_to_f16(f)), b = sl_k_bf16_to_f32(sl_k_f32_to_bf16(f));
        assert_true(fabsf(h - f) <= fabsf(f) * 0x1p-11f + 0x1p-24f);
        assert_true(fabsf(b - f) <= fabsf(f) * 0x1p-8f);
    }
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint8_t d[4];
    float sc[2];
    sl_test_expect_error("quantization groups");
    assert_int_equal(sl_k_weight_encode(SL_K_I4, w, 1, 6, 4, d, sc), SL_ERR_INVALID);
}

static void test_rmsnorm_swiglu_add_embed(void **state)
{
    uint32_t m = 9, dim = 200;
    size_t n = (size_t)m * dim;
    float *x = s_alloc(n * 4), *g = s_alloc(dim * 4), *y = s_alloc(n * 4), *u = s_alloc(n * 4);
    double *ref = s_alloc(n * 8);
    s_fill(x, n, 3.0f);
    s_fill(g, dim, 1.0f);
    s_fill(u, n, 2.0f);
    assert_int_equal(sl_k_rmsnorm(s_ctx, x, g, m, dim, 1e-5f, y), SL_OK);
    for (uint32_t i = 0; i < m; i++) {
        double ss = 0;
        for (uint32_t j = 0; j < dim; j++)
            ss += (double)x[i * dim + j] * x[i * dim + j];
        double inv = 1.0 / sqrt(ss / dim + 1e-5);
        for (uint32_t j = 0; j < dim; j++)
            ref[i * dim + j] = x[i * dim + j] * inv * g[j];
    }
    assert_true(s_rel(y, ref, n) < TOL_F32);

    assert_int_equal(sl_k_swiglu(s_ctx, x, u, n, y), SL_OK);
    for (size_t i = 0; i < n; i++)
        ref[i] = x[i] / (1.0 + exp(-(double)x[i])) * u[i];
    assert_true(s_rel(y, ref, n) < TOL_F32);

    memcpy(y, x, n * 4);
    assert_int_equal(sl_k_add(s_ctx, y, u, n), SL_OK);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)x[i] + u[i];
    assert_true(s_rel(y, ref, n) < TOL_F32);

    uint32_t ids[3] = {4, 0, 8};
    assert_int_equal(sl_k_embed(s_ctx, x, ids, 3, dim, y), SL_OK);
    for (int i = 0; i < 3; i++)
        assert_memory_equal(y + i * dim, x + ids[i] * dim, dim * 4);
    free(x), free(g), free(y), free(u), free(ref);
}

static void test_rope(void **state)
{
    uint32_t m = 6, heads = 3, d = 64;
    size_t n = (size_t)m * heads * d;
    uint32_t pos[6] = {0, 1, 7, 100, 999, 4095};
    float *x = s_alloc(n * 4), *y = s_alloc(n * 4);
    double *ref = s_alloc(n * 8);
    s_fill(x, n, 1.0f);
    memcpy(y, x, n * 4);
    assert_int_equal(sl_k_rope(s_ctx, y, pos, m, heads, d, 10000.0f), SL_OK);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t h = 0; h < heads; h++)
            for (uint32_t j = 0; j < d / 2; j++) {
                double a = pos[i] * pow(10000.0, -2.0 * j / d);
                const float *xh = x + (i * heads + h) * d;
                double *rh = ref + (i * heads + h) * d;
                rh[j] = xh[j] * cos(a) - xh[j + d / 2] * sin(a);
                rh[j + d / 2] = xh[j + d / 2] * cos(a) + xh[j] * sin(a);
            }
    assert_true(s_rel(y, ref, n) < TOL_F32);
    free(x), free(y), free(ref);
}

/* float64 causal attention with grouped heads over dense q, k, v. */
static void s_ref_attn(const float *q, const float *k, const float *v, uint32_t s, uint32_t heads,
                       uint32_t kvh, uint32_t d, double scale, double *out)
{
    double *p = s_alloc(s * 8);
    for (uint32_t i = 0; i < s; i++)
        for (uint32_t h = 0; h < heads; h++) {
            uint32_t g = h / (heads / kvh);
            const float *qi = q + ((size_t)i * heads + h) * d;
            double mx = -INFINITY, sum = 0;
            for (uint32_t t = 0; t <= i; t++) {
                const float *kt = k + ((size_t)t * kvh + g) * d;
                double dot = 0;
                for (uint32_t j = 0; j < d; j++)
                    dot += (double)qi[j] * kt[j];
                p[t] = dot * scale;
                mx = fmax(mx, p[t]);
            }
            for (uint32_t t = 0; t <= i; t++)
                sum += (p[t] = exp(p[t] - mx));
            double *o = out + ((size_t)i * heads + h) * d;
            for (uint32_t j = 0; j < d; j++) {
                double acc = 0;
                for (uint32_t t = 0; t <= i; t++)
                    acc += p[t] * v[((size_t)t * kvh + g) * d + j];
                o[j] = acc / sum;
            }
        }
    free(p);
}

static void test_attn_prefill(void **state)
{
    uint32_t s = 70, heads = 8, kvh = 2, d = 32;
    size_t nq = (size_t)s * heads * d, nk = (size_t)s * kvh * d;
    float *q = s_alloc(nq * 4), *k = s_alloc(nk * 4), *v = s_alloc(nk * 4), *o = s_alloc(nq * 4);
    double *ref = s_alloc(nq * 8);
    s_fill(q, nq, 2.0f);
    s_fill(k, nk, 2.0f);
    s_fill(v, nk, 1.0f);
    float scale = 1.0f / sqrtf((float)d);
    assert_int_equal(sl_k_attn_prefill(s_ctx, q, k, v, s, heads, kvh, d, scale, o), SL_OK);
    s_ref_attn(q, k, v, s, heads, kvh, d, scale, ref);
    double err = s_rel(o, ref, nq);
    print_message("attn prefill rel=%.2e\n", err);
    assert_true(err < TOL_F32);
    sl_test_expect_error("6 query heads");
    assert_int_equal(sl_k_attn_prefill(s_ctx, q, k, v, s, 6, 4, d, scale, o), SL_ERR_INVALID);
    free(q), free(k), free(v), free(o), free(ref);
}

/* Paged attention (via kv_write into scattered blocks) equals dense attention. */
static void test_attn_paged(void **state)
{
    uint32_t heads = 4, kvh = 2, d = 64, bt = 8, nblocks = 64, nseq = 3;
    uint32_t lens[3] = {1, 29, 57};
    uint32_t max_blocks = 8;
    size_t kvrow = (size_t)kvh * d, stride = (size_t)bt * kvrow;
    float *kpool = s_alloc(nblocks * stride * 4), *vpool = s_alloc(nblocks * stride * 4);
    s_fill(kpool, nblocks * stride, 5.0f); /* garbage where nothing was written */
    s_fill(vpool, nblocks * stride, 5.0f);
    uint32_t tables[3 * 8];
    /* a random permutation of blocks shared out among the sequences */
    uint32_t perm[64];
    for (uint32_t i = 0; i < nblocks; i++)
        perm[i] = i;
    for (uint32_t i = nblocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)sl_rand_below(&s_rng, i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (uint32_t i = 0; i < nseq * max_blocks; i++)
        tables[i] = perm[i];
    sl_k_paged_t kv = {kpool, vpool, stride, bt, kvh, d};
    float scale = 0.125f;
    for (uint32_t s = 0; s < nseq; s++) {
        uint32_t L = lens[s];
        float *q = s_alloc((size_t)L * heads * d * 4), *k = s_alloc(L * kvrow * 4);
        float *v = s_alloc(L * kvrow * 4), *dense = s_alloc((size_t)L * heads * d * 4);
        float *paged = s_alloc((size_t)L * heads * d * 4);
        uint32_t *pos = s_alloc(L * 4), *rs = s_alloc(L * 4);
        s_fill(q, (size_t)L * heads * d, 2.0f);
        s_fill(k, L * kvrow, 2.0f);
        s_fill(v, L * kvrow, 1.0f);
        for (uint32_t i = 0; i < L; i++)
            pos[i] = i, rs[i] = s;
        sl_k_rows_t rows = {L, pos, rs, tables, max_blocks};
        assert_int_equal(sl_k_kv_write(s_ctx, &kv, &rows, k, v), SL_OK);
        assert_int_equal(sl_k_attn_prefill(s_ctx, q, k, v, L, heads, kvh, d, scale, dense), SL_OK);
        assert_int_equal(sl_k_attn_paged(s_ctx, &kv, &rows, q, heads, scale, paged), SL_OK);
        assert_memory_equal(dense, paged, (size_t)L * heads * d * 4);
        /* decode form: only the last row, alone */
        sl_k_rows_t last = {1, pos + L - 1, rs, tables, max_blocks};
        assert_int_equal(sl_k_attn_paged(s_ctx, &kv, &last, q + (size_t)(L - 1) * heads * d, heads,
                                         scale, paged),
                         SL_OK);
        assert_memory_equal(dense + (size_t)(L - 1) * heads * d, paged, (size_t)heads * d * 4);
        free(q), free(k), free(v), free(dense), free(paged), free(pos), free(rs);
    }
    free(kpool), free(vpool);
}

static void test_pack_unpack(void **state)
{
    size_t bb = 3 * 1024 + 4;
    uint32_t nb = 40, n = 11;
    char *pool = s_alloc(nb * bb), *copy = s_alloc(nb * bb), *buf = s_alloc(n * bb);
    for (size_t i = 0; i < nb * bb; i++)
        pool[i] = (char)sl_rand_u64(&s_rng);
    memcpy(copy, pool, nb * bb);
    uint32_t blocks[11];
    for (uint32_t i = 0; i < n; i++)
        blocks[i] = (i * 7 + 3) % nb;
    assert_int_equal(sl_k_kv_pack(s_ctx, pool, bb, blocks, n, buf), SL_OK);
    for (uint32_t i = 0; i < n; i++)
        assert_memory_equal(buf + i * bb, pool + (size_t)blocks[i] * bb, bb);
    for (uint32_t i = 0; i < n; i++)
        memset(pool + (size_t)blocks[i] * bb, 0x5a, bb);
    assert_int_equal(sl_k_kv_unpack(s_ctx, pool, bb, blocks, n, buf), SL_OK);
    assert_memory_equal(pool, copy, nb * bb);
    free(pool), free(copy), free(buf);
}

static void test_argmax(void **state)
{
    float l[2][5] = {{1, 3, 3, -1, 0}, {-5, -4, -3, -2, -1}};
    uint32_t ids[2];
    assert_int_equal(sl_k_argmax(s_ctx, &l[0][0], 2, 5, ids), SL_OK);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 4);
}

typedef struct copy_arg {
    void *dst, *src; /* buffers */
    size_t n;        /* bytes */
    int calls;       /* calls made */
} copy_arg_t;

static sl_status_t s_copy_fn(void *arg)
{
    copy_arg_t *c = arg;
    c->calls++;
    return sl_k_copy(s_ctx, c->dst, c->src, c->n);
}

static sl_status_t s_fail_fn(void *arg)
{
    return SL_ERR_IO;
}

static void test_copy_and_time(void **state)
{
    char a[4096], b[4096];
    memset(a, 7, sizeof(a));
    copy_arg_t c = {b, a, sizeof(a), 0};
    double ms = -1;
    assert_int_equal(sl_k_time(s_ctx, s_copy_fn, &c, 2, 5, &ms), SL_OK);
    assert_int_equal(c.calls, 7);
    assert_true(ms >= 0);
    assert_memory_equal(a, b, sizeof(a));
    ms = -1;
    assert_int_equal(sl_k_time(s_ctx, s_fail_fn, NULL, 0, 3, &ms), SL_ERR_IO);
    assert_true(ms == -1); /* output untouched on error */
    assert_int_equal(sl_k_ctx_device(s_ctx), SL_K_CPU);
    if (!sl_k_cuda_available()) {
        sl_k_ctx_h g = NULL;
        sl_test_expect_error("CUDA");
        assert_int_not_equal(sl_k_ctx_create(SL_K_CUDA, 0, &g), SL_OK);
        assert_null(g);
        assert_string_equal(sl_k_cuda_device_name(), "none");
    }
}

static int s_setup(void **state)
{
    /* fresh inputs each run; SLUICE_TEST_SEED replays a failing one */
    const char *env = getenv("SLUICE_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    print_message("seed %llu (SLUICE_TEST_SEED replays it)\n", (unsigned long long)seed);
    sl_rand_seed(&s_rng, seed);
    return sl_k_ctx_create(SL_K_CPU, 0, &s_ctx) == SL_OK ? 0 : -1;
}

static int s_teardown(void **state)
{
    sl_k_ctx_destroy(&s_ctx);
    sl_k_ctx_destroy(&s_ctx); /* NULL-safe */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_f32),
        cmocka_unit_test(test_linear_half),
        cmocka_unit_test(test_linear_quant),
        cmocka_unit_test(test_linear_shapes),
        cmocka_unit_test(test_linear_blas),
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_rmsnorm_swiglu_add_embed),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attn_prefill),
        cmocka_unit_test(test_attn_paged),
        cmocka_unit_test(test_pack_unpack),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_copy_and_time),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
