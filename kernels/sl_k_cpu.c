/*
 * CPU kernels: the oracle the CUDA kernels are checked against, and the
 * arithmetic of the ref backend on machines without a GPU.
 *
 * The idea is batch invariance: every output row is computed by the same
 * sequence of float operations whatever the other rows of the call are, so
 * a sequence yields identical bits alone, in a batch, in a prefill or a
 * decode step, and from cached KV blocks. Dot products use eight fixed
 * partial sums combined in a fixed tree (vectorisable, never reassociated by
 * the compiler in ISO C mode). fp32 matrix products go through OpenBLAS
 * sgemm with the row count padded to a multiple of SL_K_CPU_ROW_PAD (and up
 * to a minimum size), so that every call takes the same blocked kernel path
 * (OpenBLAS switches to other kernels for single-row and small products,
 * which accumulate in a different order); rows never interact inside sgemm
 * because it only splits the reduction by a blocking that depends on k alone.
 *
 * Half-precision and quantized weights are decoded to fp32 (exactly) and go
 * through the same sgemm. Builds without OpenBLAS (SLUICE_HAVE_OPENBLAS
 * undefined: a bare GPU machine running scripts/gpu-check) fall back to the
 * fixed-order dot per output, slower but equally invariant.
 *
 * Rejected: our own fp32 GEMM as the default (invariant by construction but
 * an order of magnitude slower than OpenBLAS on prompts); sgemv for single
 * rows (a different accumulation order from sgemm, so a sequence decoded
 * alone would diverge from the same sequence in a batch).
 */
#include "kernels/sl_k_impl.h"

#ifdef SLUICE_HAVE_OPENBLAS
#include <cblas.h>
#endif
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/sl_log.h"

#define SL_K_CPU_ROW_PAD 16
/* OpenBLAS builds with its "small matrix" kernels (AVX-512 cores, 0.3.16 and
 * later) send products with m*n*k up to about 1e6 through kernels that sum
 * in another order; padding rows keeps every call above that, with margin. */
#define SL_K_CPU_MIN_MNK 2e6

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
    return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail;
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

sl_status_t sl_k_cpu_linear(struct sl_k_ctx *ctx, const float *x, uint32_t m, const sl_k_weight_t *w,
                            float *y)
{
    uint32_t n = w->rows, k = w->cols;
#ifdef SLUICE_HAVE_OPENBLAS
    /* Every format goes through the same padded sgemm: other formats are
     * decoded to fp32 first (exact), so quantized prompts run at BLAS speed
     * and stay batch-invariant. */
    uint32_t mp = (m + SL_K_CPU_ROW_PAD - 1) / SL_K_CPU_ROW_PAD * SL_K_CPU_ROW_PAD;
    while ((double)mp * n * k < SL_K_CPU_MIN_MNK)
        mp += SL_K_CPU_ROW_PAD;
    size_t wf = w->dtype == SL_K_F32 ? 0 : (size_t)n * k;
    float *buf = sl_k_cpu_scratch(ctx, (size_t)mp * k + (size_t)mp * n + wf);
    if (!buf)
        return SL_ERR_NOMEM;
    float *xp = buf, *yp = buf + (size_t)mp * k, *wd = yp + (size_t)mp * n;
    const float *wp = w->data;
    if (wf) {
        for (uint32_t j = 0; j < n; j++)
            s_decode_row(w, j, wd + (size_t)j * k);
        wp = wd;
    }
    memcpy(xp, x, (size_t)m * k * sizeof(float));
    memset(xp + (size_t)m * k, 0, (size_t)(mp - m) * k * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mp, (int)n, (int)k, 1.0f, xp, (int)k, wp,
                (int)k, 0.0f, yp, (int)n);
    memcpy(y, yp, (size_t)m * n * sizeof(float));
    return SL_OK;
#else
    /* Without BLAS: decode one weight row, then one fixed-order dot per
     * input row; the weight is read once per call whatever m is. */
    float *row = sl_k_cpu_scratch(ctx, k);
    if (!row)
        return SL_ERR_NOMEM;
    for (uint32_t j = 0; j < n; j++) {
        s_decode_row(w, j, row);
        for (uint32_t i = 0; i < m; i++)
            y[(size_t)i * n + j] = s_dot(x + (size_t)i * k, row, k);
    }
    return SL_OK;
#endif
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
    const float *k;   /* key of token 0 for this head */
    const float *v;   /* value of token 0 for this head */
    size_t stride;    /* floats from one token to the next */
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

sl_status_t sl_k_cpu_attn_prefill(struct sl_k_ctx *ctx, const float *q, const float *k, const float *v,
                                  uint32_t s, uint32_t heads, uint32_t kv_heads, uint32_t head_dim,
                                  float scale, float *out)
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
    const sl_k_paged_t *kv;  /* the pool */
    const uint32_t *table;   /* the sequence's block table */
    uint32_t head;           /* KV head */
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

sl_status_t sl_k_cpu_attn_paged(struct sl_k_ctx *ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                                const float *q, uint32_t heads, float scale, float *out)
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
    pthread_t tids[SL_K_CPU_MAX_THREADS];
    int started = 0;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (s_attn_job_t){kv, rows, q, heads, scale, out, items * (size_t)t / (size_t)nt,
                                 items * (size_t)(t + 1) / (size_t)nt, scores + (size_t)t * max_ctx};
        /* share 0 runs on the caller; a thread that fails to start runs here too */
        if (t > 0 && pthread_create(&tids[started], NULL, s_attn_run, &jobs[t]) == 0) {
            started++;
            continue;
        }
        if (t > 0)
            s_attn_run(&jobs[t]);
    }
    s_attn_run(&jobs[0]);
    for (int t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    return SL_OK;
}

void sl_k_cpu_kv_write(const sl_k_paged_t *kv, const sl_k_rows_t *rows, const float *k, const float *v)
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
