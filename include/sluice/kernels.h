/*
 * Kernels: the arithmetic of the ref transformer behind one C API.
 *
 * Every operation has a CPU implementation (the oracle, fp32, matrix
 * products through OpenBLAS) and a CUDA implementation. Which one runs is
 * decided by the context the call is made in: a context is created for a
 * device, and every pointer passed with it must live on that device (host
 * memory for SL_K_CPU, device memory from sl_k_alloc for SL_K_CUDA). CUDA
 * calls are asynchronous on the context's stream; sl_k_sync waits for them.
 *
 * Shapes are row-major. A linear layer is y[m][n] = sum_k x[m][k] * w[n][k]
 * (weights stored output-major, the safetensors/Llama convention).
 *
 * The CPU path is batch-invariant by design: the arithmetic that produces a
 * row of any output does not depend on the other rows in the call, so a
 * sequence gives the same bits alone or batched, cold or from cached KV.
 *
 * Errors: every function returns SL_OK or a status; SL_ERR_INVALID for a bad
 * shape or argument (logged), SL_ERR_UNSUPPORTED for an operation or format
 * that the context's device lacks, SL_ERR_IO for a failed CUDA call (logged
 * with the CUDA error string). Outputs are undefined after an error.
 */
#ifndef SLUICE_KERNELS_H
#define SLUICE_KERNELS_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where a context's tensors live. */
typedef enum sl_k_device {
    SL_K_CPU = 0,  /* host memory, CPU arithmetic */
    SL_K_CUDA = 1, /* CUDA device memory, GPU arithmetic */
} sl_k_device_t;

/* Storage format of a weight matrix. */
typedef enum sl_k_dtype {
    SL_K_F32 = 0,  /* float */
    SL_K_BF16 = 1, /* bfloat16 (uint16_t bits) */
    SL_K_F16 = 2,  /* IEEE half (uint16_t bits) */
    SL_K_I8 = 3,   /* int8 weight-only, one float scale per group */
    SL_K_I4 = 4, /* int4 weight-only (two per byte, low nibble first), one float scale per group */
} sl_k_dtype_t;

/* Weight-only quantization groups: this many consecutive inputs share a scale. */
#define SL_K_GROUP_DEFAULT 32
/* Largest head dimension the attention kernels accept. */
#define SL_K_MAX_HEAD_DIM 256

typedef struct sl_k_ctx *sl_k_ctx_h; /* a device, its stream and library handles, scratch */

/* A weight matrix w[rows][cols] in one of the storage formats. */
typedef struct sl_k_weight {
    sl_k_dtype_t dtype; /* storage format */
    uint32_t rows;      /* output features (n) */
    uint32_t cols;      /* input features (k) */
    uint32_t group;     /* quantization group along cols (I8/I4 only) */
    void *data;         /* rows*cols elements (I4: rows*cols/2 bytes) */
    float *scales;      /* I8/I4: rows*(cols/group) scales; NULL otherwise */
} sl_k_weight_t;

/* A paged KV pool for one layer, as the attention kernels read it. Block b
 * holds block_tokens token slots; slot t of block b keeps the K of kv_heads
 * heads at k + b*block_stride + (t*kv_heads + h)*head_dim (V likewise). */
typedef struct sl_k_paged {
    float *k;              /* K of block 0, slot 0, head 0 */
    float *v;              /* V of block 0, slot 0, head 0 */
    size_t block_stride;   /* floats from one block to the next */
    uint32_t block_tokens; /* token slots per block */
    uint32_t kv_heads;     /* KV heads */
    uint32_t head_dim;     /* floats per head */
} sl_k_paged_t;

/* Rows of a paged-attention call: row r is a query at position pos[r] of
 * sequence row_seq[r], whose block table is tables + row_seq[r]*max_blocks;
 * it attends to positions 0..pos[r] of that sequence. All on the device. */
typedef struct sl_k_rows {
    uint32_t n_rows;         /* query rows */
    const uint32_t *pos;     /* position of each row */
    const uint32_t *row_seq; /* sequence of each row */
    const uint32_t *tables;  /* block tables, max_blocks entries per sequence */
    uint32_t max_blocks;     /* table stride */
} sl_k_rows_t;

/* --- contexts and memory --------------------------------------------------- */

/* True when this build has CUDA and a CUDA device is present. */
bool sl_k_cuda_available(void);
/* Name of the CUDA device (or "none"); static storage. */
const char *sl_k_cuda_device_name(void);

/* Create a context on dev. threads > 0 sets the CPU threads: OpenBLAS's (process-wide)
 * and this context's attention threads (0 = every online CPU, at most 16).
 * *ctx_p owns it on success; SL_ERR_UNSUPPORTED when dev is absent. */
sl_status_t sl_k_ctx_create(sl_k_device_t dev, int threads, sl_k_ctx_h *ctx_p);
/* Destroy a context (NULL-safe, sets *ctx_p = NULL); memory from sl_k_alloc must be freed first. */
void sl_k_ctx_destroy(sl_k_ctx_h *ctx_p);
/* Whether this context's CPU products are batch-invariant (the default):
 * each output row's bits depend on that row and the weights alone, whatever
 * else is in the call, on every machine (our own fixed-order product).
 * false: OpenBLAS sgemm, faster on long prompts, with no such promise (a
 * row alone may differ in its last bits from the same row in a batch). No
 * effect on CUDA, or on CPU builds without OpenBLAS (always invariant). */
void sl_k_ctx_set_invariant(sl_k_ctx_h ctx, bool on);
/* The device of a context. */
sl_k_device_t sl_k_ctx_device(const sl_k_ctx_h ctx);

/* Allocate bytes on the context's device (zeroed on CPU, uninitialised on CUDA). */
sl_status_t sl_k_alloc(sl_k_ctx_h ctx, size_t bytes, void **ptr_p);
/* Free memory from sl_k_alloc (NULL-safe). */
void sl_k_free(sl_k_ctx_h ctx, void *ptr);
/* Copy host -> device memory of the context (a plain copy on CPU); synchronous. */
sl_status_t sl_k_upload(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes);
/* Copy device memory of the context -> host; synchronous. */
sl_status_t sl_k_download(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes);
/* Copy bytes between two buffers of the context's device (queued on CUDA). */
sl_status_t sl_k_copy(sl_k_ctx_h ctx, void *dst, const void *src, size_t bytes);
/* Wait for all work queued on the context. */
sl_status_t sl_k_sync(sl_k_ctx_h ctx);

/* Time fn(arg) on the context: warmup untimed calls, then reps timed calls
 * (CUDA events around each call on CUDA, the monotonic clock on the CPU);
 * *median_ms_p is the median. Stops at fn's first error and returns it. */
sl_status_t sl_k_time(sl_k_ctx_h ctx, sl_status_t (*fn)(void *arg), void *arg, int warmup, int reps,
                      double *median_ms_p);

/* --- format conversion and quantization (host memory, any context) -------- */

uint16_t sl_k_f32_to_bf16(float f); /* round to nearest even */
float sl_k_bf16_to_f32(uint16_t h);
uint16_t sl_k_f32_to_f16(float f); /* round to nearest even, saturating to inf */
float sl_k_f16_to_f32(uint16_t h);

/* Bytes of the data and scales of a rows x cols matrix in dtype. */
size_t sl_k_weight_data_bytes(sl_k_dtype_t dtype, uint32_t rows, uint32_t cols);
size_t sl_k_weight_scale_bytes(sl_k_dtype_t dtype, uint32_t rows, uint32_t cols, uint32_t group);

/* Convert / quantize host fp32 w[rows][cols] into host buffers data and scales
 * (sizes from the functions above; scales NULL unless I8/I4). Symmetric
 * quantization: scale = max|w| of the group / 127 (I8) or / 7 (I4).
 * SL_ERR_INVALID when cols is not a multiple of group (I8/I4) or odd (I4). */
sl_status_t sl_k_weight_encode(sl_k_dtype_t dtype, const float *w, uint32_t rows, uint32_t cols,
                               uint32_t group, void *data, float *scales);
/* Decode host data/scales back to fp32 w[rows][cols] (what the products compute with). */
void sl_k_weight_decode(const sl_k_weight_t *w_host, float *out);

/* --- operations ------------------------------------------------------------ */

/* y[m][n] = sum_k x[m][k] w[n][k]. On CPU every format is decoded to fp32
 * and multiplied by the batch-invariant product (OpenBLAS sgemm when the
 * context was set not invariant); on CUDA fp32 through cuBLAS, BF16/F16
 * through cuBLAS with fp32 accumulation (x rounded to the weight format),
 * I8/I4 through the weight-only kernels. x and y are fp32 and must not overlap. */
sl_status_t sl_k_linear(sl_k_ctx_h ctx, const float *x, uint32_t m, const sl_k_weight_t *w,
                        float *y);

/* y[m][:] = x[m][:] / sqrt(mean(x[m]^2) + eps) * g (y may alias x). */
sl_status_t sl_k_rmsnorm(sl_k_ctx_h ctx, const float *x, const float *g, uint32_t m, uint32_t dim,
                         float eps, float *y);

/* Rotary position embedding in place on x[m][heads][head_dim] at positions
 * pos[m] (rotate-half pairing: element i with i + head_dim/2, as Llama's
 * safetensors weights expect). */
sl_status_t sl_k_rope(sl_k_ctx_h ctx, float *x, const uint32_t *pos, uint32_t m, uint32_t heads,
                      uint32_t head_dim, float theta);

/* out[i] = silu(gate[i]) * up[i] for n elements (out may alias gate). */
sl_status_t sl_k_swiglu(sl_k_ctx_h ctx, const float *gate, const float *up, size_t n, float *out);

/* y[i] += x[i] for n elements. */
sl_status_t sl_k_add(sl_k_ctx_h ctx, float *y, const float *x, size_t n);

/* out[r][:] = table[ids[r]][:] for m rows of dim floats; ids < vocab. */
sl_status_t sl_k_embed(sl_k_ctx_h ctx, const float *table, const uint32_t *ids, uint32_t m,
                       uint32_t dim, float *out);

/* Causal attention over contiguous q[s][heads][d], k and v [s][kv_heads][d]:
 * out[i][h] = softmax_j<=i(q[i][h].k[j][g] * scale) v[j][g], g = h / (heads/kv_heads). */
sl_status_t sl_k_attn_prefill(sl_k_ctx_h ctx, const float *q, const float *k, const float *v,
                              uint32_t s, uint32_t heads, uint32_t kv_heads, uint32_t head_dim,
                              float scale, float *out);

/* Attention of rows q[n_rows][heads][head_dim] over a paged KV pool (see
 * sl_k_rows_t; grouped-query heads). Decode is one row per sequence; the
 * model also uses it for prompt rows, so a token's arithmetic is the same
 * whether it was computed in a prefill or a decode step. */
sl_status_t sl_k_attn_paged(sl_k_ctx_h ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                            const float *q, uint32_t heads, float scale, float *out);

/* Store k, v [n_rows][kv_heads][head_dim] into the slot of each row's position. */
sl_status_t sl_k_kv_write(sl_k_ctx_h ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                          const float *k, const float *v);

/* Gather whole blocks blocks[0..n) of a pool (block_bytes each, block b at
 * pool + b*block_bytes) into one contiguous buffer dst (n*block_bytes). */
sl_status_t sl_k_kv_pack(sl_k_ctx_h ctx, const void *pool, size_t block_bytes,
                         const uint32_t *blocks, uint32_t n, void *dst);
/* Scatter a contiguous buffer back into blocks[0..n) of a pool. */
sl_status_t sl_k_kv_unpack(sl_k_ctx_h ctx, void *pool, size_t block_bytes, const uint32_t *blocks,
                           uint32_t n, const void *src);

/* Greedy sampling: ids[r] = argmax of logits[r][0..vocab) (lowest index on ties). */
sl_status_t sl_k_argmax(sl_k_ctx_h ctx, const float *logits, uint32_t m, uint32_t vocab,
                        uint32_t *ids);

#ifdef __cplusplus
}
#endif
#endif
