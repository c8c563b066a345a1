/*
 * Inside the kernels library: the context structure and the two
 * implementations (CPU always, CUDA when built) behind sl_k.c's dispatch.
 * Arguments reaching these functions have been validated by sl_k.c.
 */
#ifndef SL_K_IMPL_H
#define SL_K_IMPL_H

#include <stdbool.h>

#include <sluice/kernels.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most threads a CPU kernel call uses. */
#define SL_K_CPU_MAX_THREADS 16

struct sl_k_ctx {
    sl_k_device_t dev;     /* where this context's tensors live */
    int threads;           /* threads for CPU attention and products (1..SL_K_CPU_MAX_THREADS) */
    bool invariant;        /* CPU products batch-invariant (default) or plain OpenBLAS sgemm */
    void *cuda;            /* CUDA state (stream, cuBLAS handle, scratch); NULL on CPU */
    float *scratch;        /* CPU scratch (grown on demand, never shrunk) */
    size_t scratch_floats; /* capacity of scratch */
};

/* CPU scratch of at least n floats, or NULL when out of memory (logged). */
float *sl_k_cpu_scratch(struct sl_k_ctx *ctx, size_t n);

/* --- CPU implementations (sl_k_cpu.c) --- */
sl_status_t sl_k_cpu_linear(struct sl_k_ctx *ctx, const float *x, uint32_t m,
                            const sl_k_weight_t *w, float *y);
void sl_k_cpu_rmsnorm(const float *x, const float *g, uint32_t m, uint32_t dim, float eps,
                      float *y);
void sl_k_cpu_rope(float *x, const uint32_t *pos, uint32_t m, uint32_t heads, uint32_t head_dim,
                   float theta);
void sl_k_cpu_swiglu(const float *gate, const float *up, size_t n, float *out);
void sl_k_cpu_add(float *y, const float *x, size_t n);
void sl_k_cpu_embed(const float *table, const uint32_t *ids, uint32_t m, uint32_t dim, float *out);
sl_status_t sl_k_cpu_attn_prefill(struct sl_k_ctx *ctx, const float *q, const float *k,
                                  const float *v, uint32_t s, uint32_t heads, uint32_t kv_heads,
                                  uint32_t head_dim, float scale, float *out);
sl_status_t sl_k_cpu_attn_paged(struct sl_k_ctx *ctx, const sl_k_paged_t *kv,
                                const sl_k_rows_t *rows, const float *q, uint32_t heads,
                                float scale, float *out);
void sl_k_cpu_kv_write(const sl_k_paged_t *kv, const sl_k_rows_t *rows, const float *k,
                       const float *v);
void sl_k_cpu_argmax(const float *logits, uint32_t m, uint32_t vocab, uint32_t *ids);

#ifdef SLUICE_HAVE_CUDA
/* --- CUDA implementations (sl_k_cuda.cu) --- */
int sl_k_cuda_device_count(void);
const char *sl_k_cuda_name(void);
sl_status_t sl_k_cuda_init(struct sl_k_ctx *ctx);
void sl_k_cuda_fini(struct sl_k_ctx *ctx);
sl_status_t sl_k_cuda_alloc(struct sl_k_ctx *ctx, size_t bytes, void **ptr_p);
void sl_k_cuda_free(struct sl_k_ctx *ctx, void *ptr);
sl_status_t sl_k_cuda_copy(struct sl_k_ctx *ctx, void *dst, const void *src, size_t bytes,
                           int to_device);
sl_status_t sl_k_cuda_sync(struct sl_k_ctx *ctx);
sl_status_t sl_k_cuda_copy_d2d(struct sl_k_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Time one call of fn on the context's stream with CUDA events. */
sl_status_t sl_k_cuda_time_one(struct sl_k_ctx *ctx, sl_status_t (*fn)(void *arg), void *arg,
                               double *ms_p);
sl_status_t sl_k_cuda_linear(struct sl_k_ctx *ctx, const float *x, uint32_t m,
                             const sl_k_weight_t *w, float *y);
sl_status_t sl_k_cuda_rmsnorm(struct sl_k_ctx *ctx, const float *x, const float *g, uint32_t m,
                              uint32_t dim, float eps, float *y);
sl_status_t sl_k_cuda_rope(struct sl_k_ctx *ctx, float *x, const uint32_t *pos, uint32_t m,
                           uint32_t heads, uint32_t head_dim, float theta);
sl_status_t sl_k_cuda_swiglu(struct sl_k_ctx *ctx, const float *gate, const float *up, size_t n,
                             float *out);
sl_status_t sl_k_cuda_add(struct sl_k_ctx *ctx, float *y, const float *x, size_t n);
sl_status_t sl_k_cuda_embed(struct sl_k_ctx *ctx, const float *table, const uint32_t *ids,
                            uint32_t m, uint32_t dim, float *out);
sl_status_t sl_k_cuda_attn_prefill(struct sl_k_ctx *ctx, const float *q, const float *k,
                                   const float *v, uint32_t s, uint32_t heads, uint32_t kv_heads,
                                   uint32_t head_dim, float scale, float *out);
sl_status_t sl_k_cuda_attn_paged(struct sl_k_ctx *ctx, const sl_k_paged_t *kv,
                                 const sl_k_rows_t *rows, const float *q, uint32_t heads,
                                 float scale, float *out);
sl_status_t sl_k_cuda_kv_write(struct sl_k_ctx *ctx, const sl_k_paged_t *kv,
                               const sl_k_rows_t *rows, const float *k, const float *v);
sl_status_t sl_k_cuda_kv_move(struct sl_k_ctx *ctx, void *pool, size_t block_bytes,
                              const uint32_t *blocks, uint32_t n, void *buf, int pack);
sl_status_t sl_k_cuda_argmax(struct sl_k_ctx *ctx, const float *logits, uint32_t m, uint32_t vocab,
                             uint32_t *ids);
#endif

#ifdef __cplusplus
}
#endif
#endif
