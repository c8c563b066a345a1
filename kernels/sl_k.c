/*
 * Kernels front end: contexts, memory, weight formats, argument checks, and
 * the dispatch of every operation to the CPU or the CUDA implementation.
 *
 * The idea: the device is a property of the context, fixed when it is
 * created, so a caller (the model) is written once against this API and runs
 * unchanged on either device; the branch per call is one well-predicted
 * compare. Shapes are validated here once, so both implementations can
 * assume sane arguments.
 *
 * Rejected: inferring the device per pointer (cudaPointerGetAttributes costs
 * a driver call per operation and cannot tell host memory in a CPU-only
 * build); a tensor object with shape and device (more code than the few
 * shapes the model needs, and the shapes are already explicit arguments).
 */
#include "kernels/sl_k_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_clock.h"
#include "common/sl_log.h"

#ifdef SLUICE_HAVE_CUDA
#define S_CUDA(ctx) ((ctx)->dev == SL_K_CUDA)
#else
#define S_CUDA(ctx) 0
#endif

#ifdef SLUICE_HAVE_OPENBLAS
/* OpenBLAS's own thread-count setter (not in every cblas.h). */
void openblas_set_num_threads(int num_threads);
#endif

bool sl_k_cuda_available(void)
{
#ifdef SLUICE_HAVE_CUDA
    return sl_k_cuda_device_count() > 0;
#else
    return false;
#endif
}

const char *sl_k_cuda_device_name(void)
{
#ifdef SLUICE_HAVE_CUDA
    return sl_k_cuda_name();
#else
    return "none";
#endif
}

sl_status_t sl_k_ctx_create(sl_k_device_t dev, int threads, sl_k_ctx_h *ctx_p)
{
    if (dev != SL_K_CPU && dev != SL_K_CUDA) {
        SL_ERROR("kernels: unknown device %d", (int)dev);
        return SL_ERR_INVALID;
    }
#ifndef SLUICE_HAVE_CUDA
    if (dev == SL_K_CUDA) {
        SL_ERROR("kernels: this build has no CUDA support");
        return SL_ERR_UNSUPPORTED;
    }
#endif
    struct sl_k_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        SL_ERROR("kernels: out of memory for a context");
        return SL_ERR_NOMEM;
    }
    ctx->dev = dev;
    ctx->invariant = true;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ctx->threads = threads > 0 ? threads : ncpu > 0 ? (int)ncpu : 1;
    if (ctx->threads > SL_K_CPU_MAX_THREADS)
        ctx->threads = SL_K_CPU_MAX_THREADS;
#ifdef SLUICE_HAVE_CUDA
    if (dev == SL_K_CUDA) {
        sl_status_t st = sl_k_cuda_init(ctx);
        if (st != SL_OK) {
            free(ctx);
            return st;
        }
    }
#endif
#ifdef SLUICE_HAVE_OPENBLAS
    if (threads > 0)
        openblas_set_num_threads(threads);
#endif
    *ctx_p = ctx;
    return SL_OK;
}

void sl_k_ctx_destroy(sl_k_ctx_h *ctx_p)
{
    if (!ctx_p || !*ctx_p)
        return;
    struct sl_k_ctx *ctx = *ctx_p;
#ifdef SLUICE_HAVE_CUDA
    if (ctx->dev == SL_K_CUDA)
        sl_k_cuda_fini(ctx);
#endif
    free(ctx->scratch);
    free(ctx);
    *ctx_p = NULL;
}

void sl_k_ctx_set_invariant(sl_k_ctx_h ctx, bool on)
{
    ctx->invariant = on;
}

sl_k_device_t sl_k_ctx_device(const sl_k_ctx_h ctx)
{
    return ctx->dev;
}

float *sl_k_cpu_scratch(struct sl_k_ctx *ctx, size_t n)
{
    if (n <= ctx->scratch_floats)
        return ctx->scratch;
    size_t cap = ctx->scratch_floats ? ctx->scratch_floats : 1024;
    while (cap < n)
        cap *= 2;
    float *p = realloc(ctx->scratch, cap * sizeof(float));
    if (!p) {
        SL_ERROR("kernels: out of memory for %zu scratch floats", cap);
        return NULL;
    }
    ctx->scratch = p;
    ctx->scratch_floats = cap;
    return p;
}

sl_status_t sl_k_alloc(sl_k_ctx_h ctx, size_t bytes, void **ptr_p)
{
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_alloc(ctx, bytes, ptr_p);
#endif
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        SL_ERROR("kernels: out of memory for %zu bytes", bytes);
        return SL_ERR_NOMEM;
    }
    *ptr_p = p;
    return SL_OK;
}

void sl_k_free(sl_k_ctx_h ctx, void *ptr)
{
    if (!ptr)
        return;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        sl_k_cuda_free(ctx, ptr);
        return;
#endif
    }
    free(ptr);
}

/* Host <-> context memory; to_device says which way on a CUDA context. */
static sl_status_t s_copy(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes, int to_device)
{
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_copy(ctx, dst, src, bytes, to_device);
#endif
    }
    if (bytes)
        memmove(dst, src, bytes);
    return SL_OK;
}

sl_status_t sl_k_upload(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes)
{
    return s_copy(ctx, dst, src, bytes, 1);
}

sl_status_t sl_k_download(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes)
{
    return s_copy(ctx, dst, src, bytes, 0);
}

sl_status_t sl_k_sync(sl_k_ctx_h ctx)
{
#ifdef SLUICE_HAVE_CUDA
    if (ctx->dev == SL_K_CUDA)
        return sl_k_cuda_sync(ctx);
#endif
    return SL_OK;
}

sl_status_t sl_k_copy(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes)
{
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_copy_d2d(ctx, dst, src, bytes);
#endif
    }
    if (bytes)
        memmove(dst, src, bytes);
    return SL_OK;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

sl_status_t sl_k_time(sl_k_ctx_h ctx, sl_status_t (*fn)(void *arg), void *arg, int warmup, int reps,
                      double *median_ms_p)
{
    if (reps <= 0) {
        SL_ERROR("kernels: timing needs at least one repetition");
        return SL_ERR_INVALID;
    }
    double *ms = malloc((size_t)reps * sizeof(double));
    if (!ms) {
        SL_ERROR("kernels: out of memory");
        return SL_ERR_NOMEM;
    }
    sl_status_t st = SL_OK;
    for (int i = 0; i < warmup && st == SL_OK; i++)
        st = fn(arg);
    if (st == SL_OK)
        st = sl_k_sync(ctx);
    for (int i = 0; i < reps && st == SL_OK; i++) {
        if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
            st = sl_k_cuda_time_one(ctx, fn, arg, &ms[i]);
            continue;
#endif
        }
        sl_time_t t0 = sl_clock_now();
        st = fn(arg);
        ms[i] = (double)(sl_clock_now() - t0) / 1e6;
    }
    if (st == SL_OK) {
        qsort(ms, (size_t)reps, sizeof(double), s_cmp_double);
        *median_ms_p = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
    }
    free(ms);
    return st;
}

/* --- formats ----------------------------------------------------------------- */

static uint32_t s_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float s_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

uint16_t sl_k_f32_to_bf16(float f)
{
    uint32_t u = s_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float sl_k_bf16_to_f32(uint16_t h)
{
    return s_float((uint32_t)h << 16);
}

uint16_t sl_k_f32_to_f16(float f)
{
    uint32_t u = s_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00u;
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return sign | 0x7c00u;
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float v = s_float(a) * 16777216.0f;
        return sign | (uint16_t)lrintf(v);
    }
    uint32_t mant = a & 0x7fffffu, exp = (a >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return sign | (uint16_t)h;
}

float sl_k_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant / 16777216.0f;
        return (h & 0x8000u) ? -v : v;
    }
    if (exp == 31)
        return s_float(sign | 0x7f800000u | (mant << 13));
    return s_float(sign | ((exp + 112) << 23) | (mant << 13));
}

size_t sl_k_weight_data_bytes(sl_k_dtype_t dtype, uint32_t rows, uint32_t cols)
{
    size_t n = (size_t)rows * cols;
    switch (dtype) {
    case SL_K_F32:
        return n * 4;
    case SL_K_BF16:
    case SL_K_F16:
        return n * 2;
    case SL_K_I8:
        return n;
    case SL_K_I4:
        return n / 2;
    }
    return 0;
}

size_t sl_k_weight_scale_bytes(sl_k_dtype_t dtype, uint32_t rows, uint32_t cols, uint32_t group)
{
    if ((dtype != SL_K_I8 && dtype != SL_K_I4) || group == 0)
        return 0;
    return (size_t)rows * (cols / group) * sizeof(float);
}

sl_status_t sl_k_weight_encode(sl_k_dtype_t dtype, const float *w, uint32_t rows, uint32_t cols,
                               uint32_t group, void *data, float *scales)
{
    size_t n = (size_t)rows * cols;
    if (dtype == SL_K_I8 || dtype == SL_K_I4) {
        if (group == 0 || cols % group || (dtype == SL_K_I4 && group % 2)) {
            SL_ERROR("kernels: %u columns do not split into quantization groups of %u", cols,
                     group);
            return SL_ERR_INVALID;
        }
    }
    switch (dtype) {
    case SL_K_F32:
        memcpy(data, w, n * sizeof(float));
        return SL_OK;
    case SL_K_BF16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)data)[i] = sl_k_f32_to_bf16(w[i]);
        return SL_OK;
    case SL_K_F16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)data)[i] = sl_k_f32_to_f16(w[i]);
        return SL_OK;
    case SL_K_I8:
    case SL_K_I4: {
        float qmax = dtype == SL_K_I8 ? 127.0f : 7.0f;
        uint32_t groups = cols / group;
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t g = 0; g < groups; g++) {
                const float *src = w + (size_t)r * cols + (size_t)g * group;
                float amax = 0.0f;
                for (uint32_t i = 0; i < group; i++)
                    amax = fmaxf(amax, fabsf(src[i]));
                float scale = amax > 0.0f ? amax / qmax : 1.0f;
                scales[(size_t)r * groups + g] = scale;
                for (uint32_t i = 0; i < group; i++) {
                    long q = lrintf(src[i] / scale);
                    q = q < -(long)qmax ? -(long)qmax : q > (long)qmax ? (long)qmax : q;
                    size_t idx = (size_t)r * cols + (size_t)g * group + i;
                    if (dtype == SL_K_I8) {
                        ((int8_t *)data)[idx] = (int8_t)q;
                    } else {
                        uint8_t *b = (uint8_t *)data + idx / 2;
                        uint8_t nib = (uint8_t)(q + 8);
                        *b = (idx & 1) ? (uint8_t)((*b & 0x0f) | (nib << 4))
                                       : (uint8_t)((*b & 0xf0) | nib);
                    }
                }
            }
        return SL_OK;
    }
    }
    SL_ERROR("kernels: unknown weight format %d", (int)dtype);
    return SL_ERR_INVALID;
}

void sl_k_weight_decode(const sl_k_weight_t *w, float *out)
{
    size_t k = w->cols;
    for (uint32_t r = 0; r < w->rows; r++) {
        float *o = out + r * k;
        for (uint32_t i = 0; i < w->cols; i++) {
            size_t idx = r * k + i;
            switch (w->dtype) {
            case SL_K_F32:
                o[i] = ((const float *)w->data)[idx];
                break;
            case SL_K_BF16:
                o[i] = sl_k_bf16_to_f32(((const uint16_t *)w->data)[idx]);
                break;
            case SL_K_F16:
                o[i] = sl_k_f16_to_f32(((const uint16_t *)w->data)[idx]);
                break;
            case SL_K_I8:
                o[i] = (float)((const int8_t *)w->data)[idx] *
                       w->scales[r * (k / w->group) + i / w->group];
                break;
            case SL_K_I4: {
                uint8_t b = ((const uint8_t *)w->data)[idx / 2];
                int q = (int)((idx & 1) ? (b >> 4) : (b & 0xf)) - 8;
                o[i] = (float)q * w->scales[r * (k / w->group) + i / w->group];
                break;
            }
            }
        }
    }
}

/* --- operations ---------------------------------------------------------------- */

#define S_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            SL_ERROR("kernels: " __VA_ARGS__);                                                     \
            return SL_ERR_INVALID;                                                                 \
        }                                                                                          \
    } while (0)

sl_status_t sl_k_linear(sl_k_ctx_h ctx, const float *x, uint32_t m, const sl_k_weight_t *w,
                        float *y)
{
    S_CHECK(w && w->data && w->rows && w->cols, "linear: empty weight");
    if (w->dtype == SL_K_I8 || w->dtype == SL_K_I4)
        S_CHECK(w->scales && w->group && w->cols % w->group == 0 && w->group % 2 == 0,
                "linear: bad quantization groups (%u columns, group %u)", w->cols, w->group);
    if (m == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_linear(ctx, x, m, w, y);
#endif
    }
    return sl_k_cpu_linear(ctx, x, m, w, y);
}

sl_status_t sl_k_rmsnorm(sl_k_ctx_h ctx, const float *x, const float *g, uint32_t m, uint32_t dim,
                         float eps, float *y)
{
    S_CHECK(dim > 0, "rmsnorm: zero width");
    if (m == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_rmsnorm(ctx, x, g, m, dim, eps, y);
#endif
    }
    sl_k_cpu_rmsnorm(x, g, m, dim, eps, y);
    return SL_OK;
}

sl_status_t sl_k_rope(sl_k_ctx_h ctx, float *x, const uint32_t *pos, uint32_t m, uint32_t heads,
                      uint32_t head_dim, float theta)
{
    S_CHECK(head_dim % 2 == 0 && head_dim <= SL_K_MAX_HEAD_DIM && heads > 0,
            "rope: bad head shape (%u heads of %u)", heads, head_dim);
    if (m == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_rope(ctx, x, pos, m, heads, head_dim, theta);
#endif
    }
    sl_k_cpu_rope(x, pos, m, heads, head_dim, theta);
    return SL_OK;
}

sl_status_t sl_k_swiglu(sl_k_ctx_h ctx, const float *gate, const float *up, size_t n, float *out)
{
    if (n == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_swiglu(ctx, gate, up, n, out);
#endif
    }
    sl_k_cpu_swiglu(gate, up, n, out);
    return SL_OK;
}

sl_status_t sl_k_add(sl_k_ctx_h ctx, float *y, const float *x, size_t n)
{
    if (n == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_add(ctx, y, x, n);
#endif
    }
    sl_k_cpu_add(y, x, n);
    return SL_OK;
}

sl_status_t sl_k_embed(sl_k_ctx_h ctx, const float *table, const uint32_t *ids, uint32_t m,
                       uint32_t dim, float *out)
{
    if (m == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_embed(ctx, table, ids, m, dim, out);
#endif
    }
    sl_k_cpu_embed(table, ids, m, dim, out);
    return SL_OK;
}

static sl_status_t s_check_heads(uint32_t heads, uint32_t kv_heads, uint32_t head_dim)
{
    S_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0,
            "attention: %u query heads do not group over %u KV heads", heads, kv_heads);
    S_CHECK(head_dim > 0 && head_dim <= SL_K_MAX_HEAD_DIM, "attention: head dimension %u",
            head_dim);
    return SL_OK;
}

sl_status_t sl_k_attn_prefill(sl_k_ctx_h ctx, const float *q, const float *k, const float *v,
                              uint32_t s, uint32_t heads, uint32_t kv_heads, uint32_t head_dim,
                              float scale, float *out)
{
    sl_status_t st = s_check_heads(heads, kv_heads, head_dim);
    if (st != SL_OK || s == 0)
        return st;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_attn_prefill(ctx, q, k, v, s, heads, kv_heads, head_dim, scale, out);
#endif
    }
    return sl_k_cpu_attn_prefill(ctx, q, k, v, s, heads, kv_heads, head_dim, scale, out);
}

sl_status_t sl_k_attn_paged(sl_k_ctx_h ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                            const float *q, uint32_t heads, float scale, float *out)
{
    sl_status_t st = s_check_heads(heads, kv->kv_heads, kv->head_dim);
    if (st != SL_OK)
        return st;
    S_CHECK(kv->block_tokens > 0 && rows->max_blocks > 0, "attention: empty block table");
    if (rows->n_rows == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_attn_paged(ctx, kv, rows, q, heads, scale, out);
#endif
    }
    return sl_k_cpu_attn_paged(ctx, kv, rows, q, heads, scale, out);
}

sl_status_t sl_k_kv_write(sl_k_ctx_h ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                          const float *k, const float *v)
{
    S_CHECK(kv->block_tokens > 0 && kv->kv_heads > 0 && kv->head_dim > 0,
            "kv write: bad pool shape");
    if (rows->n_rows == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_kv_write(ctx, kv, rows, k, v);
#endif
    }
    sl_k_cpu_kv_write(kv, rows, k, v);
    return SL_OK;
}

sl_status_t sl_k_kv_pack(sl_k_ctx_h ctx, const void *pool, size_t block_bytes,
                         const uint32_t *blocks, uint32_t n, void *dst)
{
    S_CHECK(block_bytes > 0, "kv pack: zero block size");
    if (n == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_kv_move(ctx, (void *)pool, block_bytes, blocks, n, dst, 1);
#endif
    }
    for (uint32_t i = 0; i < n; i++)
        memcpy((char *)dst + (size_t)i * block_bytes,
               (const char *)pool + (size_t)blocks[i] * block_bytes, block_bytes);
    return SL_OK;
}

sl_status_t sl_k_kv_unpack(sl_k_ctx_h ctx, void *pool, size_t block_bytes, const uint32_t *blocks,
                           uint32_t n, const void *src)
{
    S_CHECK(block_bytes > 0, "kv unpack: zero block size");
    if (n == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_kv_move(ctx, pool, block_bytes, blocks, n, (void *)src, 0);
#endif
    }
    for (uint32_t i = 0; i < n; i++)
        memcpy((char *)pool + (size_t)blocks[i] * block_bytes,
               (const char *)src + (size_t)i * block_bytes, block_bytes);
    return SL_OK;
}

sl_status_t sl_k_argmax(sl_k_ctx_h ctx, const float *logits, uint32_t m, uint32_t vocab,
                        uint32_t *ids)
{
    S_CHECK(vocab > 0, "argmax: empty vocabulary");
    if (m == 0)
        return SL_OK;
    if (S_CUDA(ctx)) {
#ifdef SLUICE_HAVE_CUDA
        return sl_k_cuda_argmax(ctx, logits, m, vocab, ids);
#endif
    }
    sl_k_cpu_argmax(logits, m, vocab, ids);
    return SL_OK;
}
