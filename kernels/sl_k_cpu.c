/*
 * CPU kernels: the oracle the CUDA kernels are checked against, and the
 * arithmetic of the ref backend on machines without a GPU.
 *
 * The idea is batch invariance: every output row is computed by the same
 * sequence of float operations whatever the other rows of the call are, so
 * a sequence yields identical bits alone, in a batch, in a prefill or a
 * decode step, and from cached KV blocks. Dot products use eight fixed
 * partial sums combined in a fixed tree (vectorisable, never reassociated by
 * the compiler in ISO C mode, and built with -ffp-contract=off so no
 * compiler fuses a multiply into an add). Matrix products are our own
 * blocked product whose every output is exactly that dot product: tiles of
 * 4 inputs x 2 weight rows share their loads, but each output keeps its own
 * eight lanes, so the tile, block and panel sizes, the thread split and the
 * instruction set (an AVX2 clone where the CPU has it) change the speed,
 * never a bit. Half-precision and quantized weights are decoded to fp32
 * (exactly) a panel at a time and take the same product.
 *
 * OpenBLAS stays where the promise is not needed: a context switched to
 * sl_k_ctx_set_invariant(ctx, false) (benchmarks, callers that batch nothing)
 * gets plain sgemm, which is faster on long prompts.
 *
 * Rejected: OpenBLAS sgemm on the invariant path, even with padded row
 * counts. Which blocked kernel it takes, and so the order of each sum,
 * depends on the shape, the core type it detects or is told
 * (OPENBLAS_CORETYPE) and the cache size it is told (OPENBLAS_L2_SIZE); on
 * some of those a row computed alone differs from the same row in a batch,
 * and no padding rule holds for every build and machine. sgemv for single
 * rows (another order again).
 */
#include "kernels/sl_k_impl.h"

#ifdef SLUICE_HAVE_OPENBLAS
#include <cblas.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "common/sl_log.h"

#ifdef __clang__
/* GCC in ISO C mode never fuses; clang does unless told (CMake says it too). */
#pragma STDC FP_CONTRACT OFF
#endif

/* Dot product in a fixed order: eight strided partial sums, then a tree. */
static float s_dot(const float *a, const float *b, uint32_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += a[i + l] * b[i + l];
    float tail = 0.0f;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) +
           tail;
}

/* Decode row n of a non-fp32 weight into out[cols]. */
static void s_decode_row(const sl_k_weight_t *w, uint32_t n, float *out)
{
    uint32_t k = w->cols;
    switch (w->dtype) {
    case SL_K_F32:
        memcpy(out, (const float *)w->data + (size_t)n * k, k * sizeof(float));
        break;
    case SL_K_BF16: {
        const uint16_t *src = (const uint16_t *)w->data + (size_t)n * k;
        for (uint32_t i = 0; i < k; i++)
            out[i] = sl_k_bf16_to_f32(src[i]);
        break;
    }
    case SL_K_F16: {
        const uint16_t *src = (const uint16_t *)w->data + (size_t)n * k;
        for (uint32_t i = 0; i < k; i++)
            out[i] = sl_k_f16_to_f32(src[i]);
        break;
    }
    case SL_K_I8: {
        const int8_t *src = (const int8_t *)w->data + (size_t)n * k;
        const float *sc = w->scales + (size_t)n * (k / w->group);
        for (uint32_t g = 0; g < k / w->group; g++) {
            const int8_t *q = src + (size_t)g * w->group;
            float *o = out + (size_t)g * w->group, s = sc[g];
            for (uint32_t i = 0; i < w->group; i++)
                o[i] = (float)q[i] * s;
        }
        break;
    }
    case SL_K_I4: {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)n * (k / 2);
        const float *sc = w->scales + (size_t)n * (k / w->group);
        for (uint32_t g = 0; g < k / w->group; g++) {
            const uint8_t *q = src + (size_t)g * (w->group / 2);
            float *o = out + (size_t)g * w->group, s = sc[g];
            for (uint32_t i = 0; i < w->group / 2; i++) {
                o[2 * i] = (float)((int)(q[i] & 0xf) - 8) * s;
                o[2 * i + 1] = (float)((int)(q[i] >> 4) - 8) * s;
            }
        }
        break;
    }
    }
}

/* Run fn on nt shares (jobs: nt structs of job_size bytes): share 0 on the
 * caller, the others on threads; a thread that fails to start runs its
 * share on the caller too. Returns when every share is done. */
static void s_fork_join(void *(*fn)(void *), void *jobs, size_t job_size, int nt)
{
    pthread_t tids[SL_K_CPU_MAX_THREADS];
    int started = 0;
    for (int t = 1; t < nt; t++) {
        void *job = (char *)jobs + (size_t)t * job_size;
        if (pthread_create(&tids[started], NULL, fn, job) == 0)
            started++;
        else
            fn(job);
    }
    fn(jobs);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
}

/* ---- the batch-invariant product ------------------------------------------
 *
 * Every output y[i][j] is s_dot(x_i, w_j, k) exactly: eight lane sums over k
 * in steps of 8 (lane l takes elements 8t + l), combined in s_dot's tree,
 * plus the sequential tail. A tile computes several outputs at once (more
 * arithmetic per load), but each output keeps its own lanes, so tiling, the
 * panel width, the thread split and the instruction set (SSE2 or AVX2: IEEE
 * products and sums round the same) never change a bit. No FMA: the file is
 * built with -ffp-contract=off and the AVX2 clone does not enable FMA. */

typedef float s_v8_t __attribute__((vector_size(32)));

#define S_V8_LOAD(v, p) memcpy(&(v), (p), sizeof(s_v8_t))

/* s_dot's combining tree over the lanes of *a, then its tail. */
static inline __attribute__((always_inline)) float s_v8_reduce(const s_v8_t *a, float tail)
{
    return ((((*a)[0] + (*a)[4]) + ((*a)[1] + (*a)[5])) +
            (((*a)[2] + (*a)[6]) + ((*a)[3] + (*a)[7]))) +
           tail;
}

/* The sequential tail of s_dot over elements [t, k). */
static inline __attribute__((always_inline)) float s_tail(const float *a, const float *b,
                                                          uint32_t t, uint32_t k)
{
    float tail = 0.0f;
    for (; t < k; t++)
        tail += a[t] * b[t];
    return tail;
}

/* y[r][c] = s_dot(x_r, w_c) for 4 inputs x 2 weight rows: the main tile,
 * written out so that the eight accumulators and the loads stay in
 * registers (16 with AVX2). */
static inline __attribute__((always_inline)) void
s_tile_4x2(const float *x, size_t ldx, const float *w, size_t ldw, uint32_t k, float *y, size_t ldy)
{
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *w0 = w,
                *w1 = w + ldw;
    s_v8_t a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    uint32_t t = 0;
    for (; t + 8 <= k; t += 8) {
        s_v8_t v0, v1, u;
        S_V8_LOAD(v0, w0 + t);
        S_V8_LOAD(v1, w1 + t);
        S_V8_LOAD(u, x0 + t);
        a00 += u * v0;
        a01 += u * v1;
        S_V8_LOAD(u, x1 + t);
        a10 += u * v0;
        a11 += u * v1;
        S_V8_LOAD(u, x2 + t);
        a20 += u * v0;
        a21 += u * v1;
        S_V8_LOAD(u, x3 + t);
        a30 += u * v0;
        a31 += u * v1;
    }
    y[0] = s_v8_reduce(&a00, s_tail(x0, w0, t, k));
    y[1] = s_v8_reduce(&a01, s_tail(x0, w1, t, k));
    y[ldy] = s_v8_reduce(&a10, s_tail(x1, w0, t, k));
    y[ldy + 1] = s_v8_reduce(&a11, s_tail(x1, w1, t, k));
    y[2 * ldy] = s_v8_reduce(&a20, s_tail(x2, w0, t, k));
    y[2 * ldy + 1] = s_v8_reduce(&a21, s_tail(x2, w1, t, k));
    y[3 * ldy] = s_v8_reduce(&a30, s_tail(x3, w0, t, k));
    y[3 * ldy + 1] = s_v8_reduce(&a31, s_tail(x3, w1, t, k));
}

/* y[0][c] = s_dot(x, w_c) for one input x 2 weight rows (decode rows). */
static inline __attribute__((always_inline)) void s_tile_1x2(const float *x, const float *w,
                                                             size_t ldw, uint32_t k, float *y)
{
    const float *w0 = w, *w1 = w + ldw;
    s_v8_t a0 = {0}, a1 = {0};
    uint32_t t = 0;
    for (; t + 8 <= k; t += 8) {
        s_v8_t u, v0, v1;
        S_V8_LOAD(u, x + t);
        S_V8_LOAD(v0, w0 + t);
        S_V8_LOAD(v1, w1 + t);
        a0 += u * v0;
        a1 += u * v1;
    }
    y[0] = s_v8_reduce(&a0, s_tail(x, w0, t, k));
    y[1] = s_v8_reduce(&a1, s_tail(x, w1, t, k));
}

/* y[0][0] = s_dot(x, w) (the last odd weight row). */
static inline __attribute__((always_inline)) float s_tile_1x1(const float *x, const float *w,
                                                              uint32_t k)
{
    s_v8_t a = {0};
    uint32_t t = 0;
    for (; t + 8 <= k; t += 8) {
        s_v8_t u, v;
        S_V8_LOAD(u, x + t);
        S_V8_LOAD(v, w + t);
        a += u * v;
    }
    return s_v8_reduce(&a, s_tail(x, w, t, k));
}

/* y[m][nw] (row stride ldy) = x[m][k] w[nw][k]^T for one panel of weight
 * rows, in 4 x 2 tiles (1 x 2 and 1 x 1 at the edges). Cloned for AVX2 where the CPU has it (eight
 * lanes per instruction instead of four); both clones give the same bits. */
__attribute__((target_clones("avx2", "default"))) static void
s_panel(const float *x, uint32_t m, const float *w, uint32_t nw, uint32_t k, float *y, size_t ldy)
{
    uint32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *xi = x + (size_t)i * k;
        float *yi = y + (size_t)i * ldy;
        uint32_t j = 0;
        for (; j + 2 <= nw; j += 2)
            s_tile_4x2(xi, k, w + (size_t)j * k, k, k, yi + j, ldy);
        if (j < nw)
            for (uint32_t r = 0; r < 4; r++)
                yi[r * ldy + j] = s_tile_1x1(xi + (size_t)r * k, w + (size_t)j * k, k);
    }
    for (; i < m; i++) {
        const float *xi = x + (size_t)i * k;
        float *yi = y + (size_t)i * ldy;
        uint32_t j = 0;
        for (; j + 2 <= nw; j += 2)
            s_tile_1x2(xi, w + (size_t)j * k, k, k, yi + j);
        if (j < nw)
            yi[j] = s_tile_1x1(xi, w + (size_t)j * k, k);
    }
}

/* Input rows per block (their fp32 rows stay in L2 while every weight panel
 * passes) and weight rows per panel (decoded once per block, kept in L1/L2). */
#define SL_K_CPU_XBLOCK_BYTES (128u * 1024u)
#define SL_K_CPU_PANEL_BYTES (16u * 1024u)
/* Products smaller than this many multiply-adds run on the caller alone
 * (a thread costs about 50 us to start). */
#define SL_K_CPU_THREAD_MACS (1u << 21)

/* A share of an invariant product: weight rows [j0, j1) against all inputs. */
typedef struct s_gemm_job {
    const float *x;         /* inputs [m][k] */
    uint32_t m;             /* input rows */
    const sl_k_weight_t *w; /* weights [n][k], any format */
    uint32_t j0, j1;        /* this share's weight rows */
    uint32_t pw;            /* weight rows per panel */
    float *wbuf;            /* decoded panel [pw][k]; unused for fp32 */
    float *y;               /* outputs [m][n] */
} s_gemm_job_t;

static void *s_gemm_run(void *arg)
{
    const s_gemm_job_t *g = arg;
    uint32_t k = g->w->cols, n = g->w->rows;
    uint32_t mb = (SL_K_CPU_XBLOCK_BYTES / (4u * k)) & ~3u, pw = g->pw;
    if (mb < 4)
        mb = 4;
    for (uint32_t i = 0; i < g->m; i += mb) {
        uint32_t mi = g->m - i < mb ? g->m - i : mb;
        for (uint32_t j = g->j0; j < g->j1; j += pw) {
            uint32_t nw = g->j1 - j < pw ? g->j1 - j : pw;
            const float *wp = (const float *)g->w->data + (size_t)j * k;
            if (g->w->dtype != SL_K_F32) {
                for (uint32_t r = 0; r < nw; r++)
                    s_decode_row(g->w, j + r, g->wbuf + (size_t)r * k);
                wp = g->wbuf;
            }
            s_panel(g->x + (size_t)i * k, mi, wp, nw, k, g->y + (size_t)i * n + j, n);
        }
    }
    return NULL;
}

/* The invariant product, its weight rows split over up to ctx->threads
 * threads (each output is computed the same way on any of them). */
static sl_status_t s_linear_invariant(struct sl_k_ctx *ctx, const float *x, uint32_t m,
                                      const sl_k_weight_t *w, float *y)
{
    uint32_t n = w->rows, k = w->cols;
    uint32_t pw = (SL_K_CPU_PANEL_BYTES / (4u * k)) & ~1u;
    if (pw < 2)
        pw = 2;
    int nt = (double)m * n * k >= SL_K_CPU_THREAD_MACS ? ctx->threads : 1;
    if ((uint32_t)nt > (n + 1) / 2)
        nt = (int)((n + 1) / 2);
    if (nt < 1)
        nt = 1;
    size_t per = w->dtype == SL_K_F32 ? 0 : (size_t)pw * k;
    float *wbuf = per ? sl_k_cpu_scratch(ctx, (size_t)nt * per) : NULL;
    if (per && !wbuf)
        return SL_ERR_NOMEM;
    s_gemm_job_t jobs[SL_K_CPU_MAX_THREADS];
    uint32_t pairs = (n + 1) / 2;
    for (int t = 0; t < nt; t++) {
        uint32_t j0 = 2 * (uint32_t)((uint64_t)pairs * (uint64_t)t / (uint64_t)nt);
        uint32_t j1 = 2 * (uint32_t)((uint64_t)pairs * (uint64_t)(t + 1) / (uint64_t)nt);
        jobs[t] = (s_gemm_job_t){
            x, m, w, j0, j1 < n ? j1 : n, pw, wbuf ? wbuf + (size_t)t * per : NULL, y};
    }
    s_fork_join(s_gemm_run, jobs, sizeof(jobs[0]), nt);
    return SL_OK;
}

#ifdef SLUICE_HAVE_OPENBLAS
/* OpenBLAS sgemm on the shape as given: fastest on long prompts, but which
 * blocked kernel it takes (and so the order of each sum) depends on the
 * shape, the core type and the cache sizes it was told, so a row's bits may
 * depend on the rows beside it. Other formats are decoded to fp32 first. */
static sl_status_t s_linear_blas(struct sl_k_ctx *ctx, const float *x, uint32_t m,
                                 const sl_k_weight_t *w, float *y)
{
    uint32_t n = w->rows, k = w->cols;
    const float *wp = w->data;
    if (w->dtype != SL_K_F32) {
        float *wd = sl_k_cpu_scratch(ctx, (size_t)n * k);
        if (!wd)
            return SL_ERR_NOMEM;
        for (uint32_t j = 0; j < n; j++)
            s_decode_row(w, j, wd + (size_t)j * k);
        wp = wd;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k,
                wp, (int)k, 0.0f, y, (int)n);
    return SL_OK;
}
#endif

sl_status_t sl_k_cpu_linear(struct sl_k_ctx *ctx, const float *x, uint32_t m,
                            const sl_k_weight_t *w, float *y)
{
#ifdef SLUICE_HAVE_OPENBLAS
    if (!ctx->invariant)
        return s_linear_blas(ctx, x, m, w, y);
#endif
    return s_linear_invariant(ctx, x, m, w, y);
}

void sl_k_cpu_rmsnorm(const float *x, const float *g, uint32_t m, uint32_t dim, float eps, float *y)
{
    for (uint32_t i = 0; i < m; i++) {
        const float *xi = x + (size_t)i * dim;
        float *yi = y + (size_t)i * dim;
        float ss = s_dot(xi, xi, dim);
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (uint32_t j = 0; j < dim; j++)
            yi[j] = xi[j] * inv * g[j];
    }
}

void sl_k_cpu_rope(float *x, const uint32_t *pos, uint32_t m, uint32_t heads, uint32_t head_dim,
                   float theta)
{
    uint32_t half = head_dim / 2;
    for (uint32_t i = 0; i < m; i++) {
        for (uint32_t j = 0; j < half; j++) {
            double inv_freq = pow((double)theta, -2.0 * (double)j / (double)head_dim);
            double ang = (double)pos[i] * inv_freq;
            float c = (float)cos(ang), s = (float)sin(ang);
            for (uint32_t h = 0; h < heads; h++) {
                float *xh = x + ((size_t)i * heads + h) * head_dim;
                float x0 = xh[j], x1 = xh[j + half];
                xh[j] = x0 * c - x1 * s;
                xh[j + half] = x1 * c + x0 * s;
            }
        }
    }
}

void sl_k_cpu_swiglu(const float *gate, const float *up, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void sl_k_cpu_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

void sl_k_cpu_embed(const float *table, const uint32_t *ids, uint32_t m, uint32_t dim, float *out)
{
    for (uint32_t i = 0; i < m; i++)
        memcpy(out + (size_t)i * dim, table + (size_t)ids[i] * dim, dim * sizeof(float));
}

/* One query head over n keys/values reached through key_at/val_at. */
typedef const float *(*s_kv_at_fn)(const void *arg, uint32_t t);

static void s_attend(const float *q, uint32_t n, uint32_t d, float scale, s_kv_at_fn key_at,
                     s_kv_at_fn val_at, const void *arg, float *scores, float *out)
{
    float mx = -INFINITY;
    for (uint32_t t = 0; t < n; t++) {
        scores[t] = s_dot(q, key_at(arg, t), d) * scale;
        if (scores[t] > mx)
            mx = scores[t];
    }
    float sum = 0.0f;
    for (uint32_t t = 0; t < n; t++) {
        scores[t] = expf(scores[t] - mx);
        sum += scores[t];
    }
    float inv = 1.0f / sum;
    for (uint32_t j = 0; j < d; j++)
        out[j] = 0.0f;
    for (uint32_t t = 0; t < n; t++) {
        const float *v = val_at(arg, t);
        float p = scores[t] * inv;
        for (uint32_t j = 0; j < d; j++)
            out[j] += p * v[j];
    }
}

/* Where one head's keys and values are, for s_attend. */
typedef struct s_dense_at {
    const float *k; /* key of token 0 for this head */
    const float *v; /* value of token 0 for this head */
    size_t stride;  /* floats from one token to the next */
} s_dense_at_t;

static const float *s_dense_k(const void *arg, uint32_t t)
{
    const s_dense_at_t *a = arg;
    return a->k + (size_t)t * a->stride;
}

static const float *s_dense_v(const void *arg, uint32_t t)
{
    const s_dense_at_t *a = arg;
    return a->v + (size_t)t * a->stride;
}

sl_status_t sl_k_cpu_attn_prefill(struct sl_k_ctx *ctx, const float *q, const float *k,
                                  const float *v, uint32_t s, uint32_t heads, uint32_t kv_heads,
                                  uint32_t head_dim, float scale, float *out)
{
    float *scores = sl_k_cpu_scratch(ctx, s);
    if (!scores)
        return SL_ERR_NOMEM;
    uint32_t grp = heads / kv_heads;
    for (uint32_t i = 0; i < s; i++)
        for (uint32_t h = 0; h < heads; h++) {
            s_dense_at_t at = {k + (size_t)(h / grp) * head_dim, v + (size_t)(h / grp) * head_dim,
                               (size_t)kv_heads * head_dim};
            s_attend(q + ((size_t)i * heads + h) * head_dim, i + 1, head_dim, scale, s_dense_k,
                     s_dense_v, &at, scores, out + ((size_t)i * heads + h) * head_dim);
        }
    return SL_OK;
}

/* Where one head's keys and values are in a paged pool, for s_attend. */
typedef struct s_paged_at {
    const sl_k_paged_t *kv; /* the pool */
    const uint32_t *table;  /* the sequence's block table */
    uint32_t head;          /* KV head */
} s_paged_at_t;

static size_t s_paged_off(const s_paged_at_t *a, uint32_t t)
{
    const sl_k_paged_t *kv = a->kv;
    uint32_t b = a->table[t / kv->block_tokens], slot = t % kv->block_tokens;
    return (size_t)b * kv->block_stride + ((size_t)slot * kv->kv_heads + a->head) * kv->head_dim;
}

static const float *s_paged_k(const void *arg, uint32_t t)
{
    const s_paged_at_t *a = arg;
    return a->kv->k + s_paged_off(a, t);
}

static const float *s_paged_v(const void *arg, uint32_t t)
{
    const s_paged_at_t *a = arg;
    return a->kv->v + s_paged_off(a, t);
}

/* A share of a paged-attention call: items [begin, end) of rows x heads. */
typedef struct s_attn_job {
    const sl_k_paged_t *kv;  /* pool */
    const sl_k_rows_t *rows; /* rows */
    const float *q;          /* queries */
    uint32_t heads;          /* query heads */
    float scale;             /* score scale */
    float *out;              /* output */
    size_t begin, end;       /* items (row * heads + head) */
    float *scores;           /* this share's scratch, max context floats */
} s_attn_job_t;

static void *s_attn_run(void *arg)
{
    s_attn_job_t *j = arg;
    const sl_k_paged_t *kv = j->kv;
    const sl_k_rows_t *rows = j->rows;
    uint32_t grp = j->heads / kv->kv_heads, d = kv->head_dim;
    for (size_t it = j->begin; it < j->end; it++) {
        uint32_t r = (uint32_t)(it / j->heads), h = (uint32_t)(it % j->heads);
        const uint32_t *table = rows->tables + (size_t)rows->row_seq[r] * rows->max_blocks;
        s_paged_at_t at = {kv, table, h / grp};
        s_attend(j->q + ((size_t)r * j->heads + h) * d, rows->pos[r] + 1, d, j->scale, s_paged_k,
                 s_paged_v, &at, j->scores, j->out + ((size_t)r * j->heads + h) * d);
    }
    return NULL;
}

sl_status_t sl_k_cpu_attn_paged(struct sl_k_ctx *ctx, const sl_k_paged_t *kv,
                                const sl_k_rows_t *rows, const float *q, uint32_t heads,
                                float scale, float *out)
{
    uint64_t work = 0;
    uint32_t max_ctx = 0;
    for (uint32_t r = 0; r < rows->n_rows; r++) {
        if (rows->pos[r] + 1 > max_ctx)
            max_ctx = rows->pos[r] + 1;
        work += (uint64_t)(rows->pos[r] + 1) * heads * kv->head_dim;
    }
    /* Threads only when the call is worth their start (about 50 us each);
     * each (row, head) is computed the same way on any thread. */
    int nt = work >= (1u << 21) ? ctx->threads : 1;
    size_t items = (size_t)rows->n_rows * heads;
    if ((size_t)nt > items)
        nt = (int)items;
    if (nt < 1)
        nt = 1;
    float *scores = sl_k_cpu_scratch(ctx, (size_t)nt * max_ctx);
    if (!scores)
        return SL_ERR_NOMEM;
    s_attn_job_t jobs[SL_K_CPU_MAX_THREADS];
    for (int t = 0; t < nt; t++)
        jobs[t] = (s_attn_job_t){kv,
                                 rows,
                                 q,
                                 heads,
                                 scale,
                                 out,
                                 items * (size_t)t / (size_t)nt,
                                 items * (size_t)(t + 1) / (size_t)nt,
                                 scores + (size_t)t * max_ctx};
    s_fork_join(s_attn_run, jobs, sizeof(jobs[0]), nt);
    return SL_OK;
}

void sl_k_cpu_kv_write(const sl_k_paged_t *kv, const sl_k_rows_t *rows, const float *k,
                       const float *v)
{
    size_t row_floats = (size_t)kv->kv_heads * kv->head_dim;
    for (uint32_t r = 0; r < rows->n_rows; r++) {
        const uint32_t *table = rows->tables + (size_t)rows->row_seq[r] * rows->max_blocks;
        uint32_t t = rows->pos[r];
        size_t off = (size_t)table[t / kv->block_tokens] * kv->block_stride +
                     (size_t)(t % kv->block_tokens) * row_floats;
        memcpy(kv->k + off, k + r * row_floats, row_floats * sizeof(float));
        memcpy(kv->v + off, v + r * row_floats, row_floats * sizeof(float));
    }
}

void sl_k_cpu_argmax(const float *logits, uint32_t m, uint32_t vocab, uint32_t *ids)
{
    for (uint32_t i = 0; i < m; i++) {
        const float *l = logits + (size_t)i * vocab;
        uint32_t best = 0;
        for (uint32_t j = 1; j < vocab; j++)
            if (l[j] > l[best])
                best = j;
        ids[i] = best;
    }
}
