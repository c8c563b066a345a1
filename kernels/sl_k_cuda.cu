/*
 * CUDA kernels: the GPU implementation of every sl_k_* operation.
 *
 * Activations stay fp32 so that the CPU oracle and the GPU compute the same
 * function and checks can hold fp32-level tolerances everywhere except the
 * half-precision products. The bandwidth-bound operations get their own
 * kernels:
 *   - weight-only int8/int4 products: one warp per output feature, each lane
 *     reading 16 bytes of weights per step (fully coalesced, 512 bytes per
 *     warp), the few activation rows read through the cache; up to 8 rows per
 *     pass, so a decode batch reads the weights once;
 *   - paged attention: one block per (query row, KV head) serving all query
 *     heads of the group, so K and V are read once per group; each warp walks
 *     a strided share of the tokens with an online softmax, four tokens in
 *     flight, and the warps merge their partial results in shared memory.
 *     Head dimension and group size are template parameters, so the per-head
 *     state stays in registers sized for the actual group.
 * fp32 and bf16/fp16 products go through cuBLAS (the activations are
 * converted to the weight format first; fp32 accumulation).
 *
 * Rejected: a split-context (flash-decoding) pass for very long contexts
 * with tiny batches (a second kernel and a merge; the batches this engine
 * runs already give hundreds of blocks); tensor-core kernels for the
 * quantized products (decode is memory-bound; cuBLAS covers large prompts);
 * bf16 KV (halves attention bytes, but the CPU oracle would no longer see
 * the same values).
 *
 * Every CUDA and cuBLAS call is checked; every launch is followed by
 * cudaGetLastError.
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sl_k_impl.h"

extern "C" {
#include "common/sl_log.h"
}

namespace
{

struct cuda_state {
    cudaStream_t stream;  /* every launch and copy of the context */
    cublasHandle_t blas;  /* bound to stream */
    void *scratch;        /* device scratch (converted activations) */
    size_t scratch_bytes; /* capacity of scratch */
};

cuda_state *st_of(sl_k_ctx *ctx)
{
    return static_cast<cuda_state *>(ctx->cuda);
}

#define S_CK(call)                                                                                 \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            SL_ERROR("cuda: %s failed: %s", #call, cudaGetErrorString(e_));                        \
            return SL_ERR_IO;                                                                      \
        }                                                                                          \
    } while (0)

#define S_CK_LAUNCH(what)                                                                          \
    do {                                                                                           \
        cudaError_t e_ = cudaGetLastError();                                                       \
        if (e_ != cudaSuccess) {                                                                   \
            SL_ERROR("cuda: launch of %s failed: %s", what, cudaGetErrorString(e_));               \
            return SL_ERR_IO;                                                                      \
        }                                                                                          \
    } while (0)

#define S_CKB(call)                                                                                \
    do {                                                                                           \
        cublasStatus_t b_ = (call);                                                                \
        if (b_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            SL_ERROR("cublas: %s failed: status %d", #call, (int)b_);                              \
            return SL_ERR_IO;                                                                      \
        }                                                                                          \
    } while (0)

unsigned s_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535u * 16u ? 65535u * 16u : b);
}

sl_status_t s_scratch(sl_k_ctx *ctx, size_t bytes, void **p)
{
    cuda_state *s = st_of(ctx);
    if (bytes > s->scratch_bytes) {
        if (s->scratch) {
            S_CK(cudaStreamSynchronize(s->stream));
            S_CK(cudaFree(s->scratch));
            s->scratch = nullptr;
            s->scratch_bytes = 0;
        }
        S_CK(cudaMalloc(&s->scratch, bytes));
        s->scratch_bytes = bytes;
    }
    *p = s->scratch;
    return SL_OK;
}

/* --- reductions ---------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024). */
__device__ float block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = lane < nw ? part[lane] : 0.0f;
    return warp_sum(v);
}

/* --- elementwise ----------------------------------------------------------- */

__global__ void k_rmsnorm(const float *__restrict__ x, const float *__restrict__ g, uint32_t dim,
                          float eps, float *y)
{
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (uint32_t j = threadIdx.x; j < dim; j += blockDim.x)
        ss += xr[j] * xr[j];
    ss = block_sum(ss);
    float inv = rsqrtf(ss / (float)dim + eps);
    for (uint32_t j = threadIdx.x; j < dim; j += blockDim.x)
        yr[j] = xr[j] * inv * g[j];
}

__global__ void k_rope(float *x, const uint32_t *__restrict__ pos, uint32_t m, uint32_t heads,
                       uint32_t head_dim, float theta)
{
    uint32_t half = head_dim / 2;
    size_t total = (size_t)m * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t row = (uint32_t)(i / half), j = (uint32_t)(i % half);
        double ang = (double)pos[row] * pow((double)theta, -2.0 * (double)j / (double)head_dim);
        double sd, cd;
        sincos(ang, &sd, &cd);
        float c = (float)cd, s = (float)sd;
        for (uint32_t h = 0; h < heads; h++) {
            float *xh = x + ((size_t)row * heads + h) * head_dim;
            float x0 = xh[j], x1 = xh[j + half];
            xh[j] = x0 * c - x1 * s;
            xh[j + half] = x1 * c + x0 * s;
        }
    }
}

__global__ void k_swiglu(const float *gate, const float *__restrict__ up, size_t n, float *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void k_add(float *y, const float *__restrict__ x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ void k_embed(const float *__restrict__ table, const uint32_t *__restrict__ ids,
                        uint32_t dim, float *out)
{
    const float *src = table + (size_t)ids[blockIdx.x] * dim;
    float *dst = out + (size_t)blockIdx.x * dim;
    for (uint32_t j = threadIdx.x; j < dim; j += blockDim.x)
        dst[j] = src[j];
}

template <typename T> __device__ T to_half_t(float f);
template <> __device__ __nv_bfloat16 to_half_t<__nv_bfloat16>(float f)
{
    return __float2bfloat16_rn(f);
}
template <> __device__ __half to_half_t<__half>(float f)
{
    return __float2half_rn(f);
}

template <typename T> __global__ void k_convert(const float *__restrict__ x, size_t n, T *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = to_half_t<T>(x[i]);
}

/* --- weight-only quantized products ------------------------------------- */

constexpr int QROWS = 8;  /* activation rows per pass */
constexpr int QWARPS = 8; /* warps per block */
constexpr int QRW = 2;    /* output features per warp: each x load serves both */

__device__ __forceinline__ uint32_t word_of(const uint4 &r, int i)
{
    return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

/* Byte j of w as the float 2^23 + byte (the byte lands in the mantissa),
 * minus bias: one byte permute and one add per value, no integer-to-float
 * conversion (a quarter-rate instruction that would bound the kernel). */
__device__ __forceinline__ float magic_byte(uint32_t w, uint32_t j, float bias)
{
    return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7440u | j)) - bias;
}

/* The quantized values of one 32-bit word, unscaled: int4 -> 8 values (low
 * nibble first), int8 -> 4. Exact: small integers in fp32. */
template <bool INT4> struct qword {
    static constexpr int n = INT4 ? 8 : 4;
};

template <bool INT4>
__device__ __forceinline__ void decode_word(uint32_t w, float (&q)[qword<INT4>::n])
{
    if constexpr (INT4) {
        uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
#pragma unroll
        for (uint32_t j = 0; j < 4; j++) {
            q[2 * j] = magic_byte(lo, j, 8388616.0f); /* 2^23 + 8: nibbles hold q + 8 */
            q[2 * j + 1] = magic_byte(hi, j, 8388616.0f);
        }
    } else {
        uint32_t u = w ^ 0x80808080u; /* two's complement byte -> q + 128 */
#pragma unroll
        for (uint32_t j = 0; j < 4; j++)
            q[j] = magic_byte(u, j, 8388736.0f); /* 2^23 + 128 */
    }
}

/* y[i][row] for M rows of x and QRW consecutive weight rows per warp; each
 * lane takes 16-byte chunks (one scale each: the group is a multiple of the
 * chunk), sums q * x unscaled within the chunk, then scales once. */
template <int M, bool INT4>
__global__ void __launch_bounds__(QWARPS * 32)
    k_qgemv(const float *__restrict__ x, uint32_t k, const uint8_t *__restrict__ w,
            const float *__restrict__ scales, uint32_t group, uint32_t n, float *__restrict__ y)
{
    constexpr int VW = qword<INT4>::n; /* values per 32-bit word */
    int lane = threadIdx.x & 31;
    uint32_t row0 = (blockIdx.x * QWARPS + (threadIdx.x >> 5)) * QRW;
    if (row0 >= n)
        return;
    size_t row_bytes = INT4 ? k / 2 : k;
    uint32_t groups = k / group;
    float acc[QRW][M];
#pragma unroll
    for (int rr = 0; rr < QRW; rr++)
#pragma unroll
        for (int i = 0; i < M; i++)
            acc[rr][i] = 0.0f;
    for (size_t off = (size_t)lane * 16; off < row_bytes; off += 32 * 16) {
        uint32_t k0 = (uint32_t)(INT4 ? off * 2 : off);
        uint4 raw[QRW];
        float sc[QRW];
#pragma unroll
        for (int rr = 0; rr < QRW; rr++) {
            uint32_t row = row0 + rr < n ? row0 + rr : n - 1;
            raw[rr] = __ldg(reinterpret_cast<const uint4 *>(w + row * row_bytes + off));
            sc[rr] = __ldg(scales + (size_t)row * groups + k0 / group);
        }
        float part[QRW][M];
#pragma unroll
        for (int rr = 0; rr < QRW; rr++)
#pragma unroll
            for (int i = 0; i < M; i++)
                part[rr][i] = 0.0f;
#pragma unroll
        for (int wi = 0; wi < 4; wi++) {
            float q[QRW][VW];
#pragma unroll
            for (int rr = 0; rr < QRW; rr++)
                decode_word<INT4>(word_of(raw[rr], wi), q[rr]);
#pragma unroll
            for (int v = 0; v < VW / 4; v++)
#pragma unroll
                for (int i = 0; i < M; i++) {
                    float4 xv = __ldg(
                        reinterpret_cast<const float4 *>(x + (size_t)i * k + k0 + wi * VW) + v);
#pragma unroll
                    for (int rr = 0; rr < QRW; rr++) {
                        float a = part[rr][i];
                        a = fmaf(xv.x, q[rr][4 * v], a);
                        a = fmaf(xv.y, q[rr][4 * v + 1], a);
                        a = fmaf(xv.z, q[rr][4 * v + 2], a);
                        a = fmaf(xv.w, q[rr][4 * v + 3], a);
                        part[rr][i] = a;
                    }
                }
        }
#pragma unroll
        for (int rr = 0; rr < QRW; rr++)
#pragma unroll
            for (int i = 0; i < M; i++)
                acc[rr][i] = fmaf(part[rr][i], sc[rr], acc[rr][i]);
    }
#pragma unroll
    for (int rr = 0; rr < QRW; rr++)
#pragma unroll
        for (int i = 0; i < M; i++) {
            float s = warp_sum(acc[rr][i]);
            if (lane == 0 && row0 + rr < n)
                y[(size_t)i * n + row0 + rr] = s;
        }
}

template <bool INT4>
sl_status_t s_qgemv(sl_k_ctx *ctx, const float *x, uint32_t m, const sl_k_weight_t *w, float *y)
{
    cudaStream_t st = st_of(ctx)->stream;
    uint32_t per_block = QWARPS * QRW;
    dim3 grid((w->rows + per_block - 1) / per_block), block(QWARPS * 32);
    const uint8_t *wd = static_cast<const uint8_t *>(w->data);
    for (uint32_t r0 = 0; r0 < m; r0 += QROWS) {
        uint32_t mm = m - r0 < (uint32_t)QROWS ? m - r0 : (uint32_t)QROWS;
        const float *xr = x + (size_t)r0 * w->cols;
        float *yr = y + (size_t)r0 * w->rows;
        switch (mm) {
#define S_Q(M_)                                                                                    \
    case M_:                                                                                       \
        k_qgemv<M_, INT4>                                                                          \
            <<<grid, block, 0, st>>>(xr, w->cols, wd, w->scales, w->group, w->rows, yr);           \
        break;
            S_Q(1) S_Q(2) S_Q(3) S_Q(4) S_Q(5) S_Q(6) S_Q(7) S_Q(8)
#undef S_Q
        }
        S_CK_LAUNCH("k_qgemv");
    }
    return SL_OK;
}

/* --- attention --------------------------------------------------------------- */

constexpr int AWARPS = 8; /* warps per attention block */
constexpr int ATOK = 4;   /* tokens in flight per warp */

/* K/V addresses of one sequence in a paged pool. */
struct paged_seq {
    const float *k, *v;    /* pool bases */
    size_t block_stride;   /* floats per block */
    uint32_t block_tokens; /* slots per block */
    uint32_t kv_heads;     /* KV heads */
    uint32_t head_dim;     /* floats per head */
    const uint32_t *table; /* this sequence's block table */
    __device__ size_t off(uint32_t t, uint32_t g) const
    {
        return (size_t)table[t / block_tokens] * block_stride +
               ((size_t)(t % block_tokens) * kv_heads + g) * head_dim;
    }
};

/* A paged pool and the rows of a call: binds row r to its sequence. */
struct paged_at {
    paged_seq base;          /* pool (table filled per row) */
    const uint32_t *pos;     /* position of each row */
    const uint32_t *row_seq; /* sequence of each row */
    const uint32_t *tables;  /* block tables */
    uint32_t max_blocks;     /* table stride */
    __device__ uint32_t len(uint32_t r) const
    {
        return pos[r] + 1;
    }
    __device__ paged_seq row(uint32_t r) const
    {
        paged_seq s = base;
        s.table = tables + (size_t)row_seq[r] * max_blocks;
        return s;
    }
};

/* K/V addresses of contiguous [s][kv_heads][head_dim] tensors (causal). */
struct dense_at {
    const float *k, *v; /* token 0, head 0 */
    uint32_t kv_heads;  /* KV heads */
    uint32_t head_dim;  /* floats per head */
    __device__ uint32_t len(uint32_t r) const
    {
        return r + 1;
    }
    __device__ dense_at row(uint32_t) const
    {
        return *this;
    }
    __device__ size_t off(uint32_t t, uint32_t g) const
    {
        return ((size_t)t * kv_heads + g) * head_dim;
    }
};

template <int DPL> __device__ __forceinline__ void load_dpl(const float *p, float (&r)[DPL])
{
    if constexpr (DPL % 4 == 0) {
#pragma unroll
        for (int i = 0; i < DPL / 4; i++) {
            float4 v = __ldg(reinterpret_cast<const float4 *>(p) + i);
            r[4 * i] = v.x, r[4 * i + 1] = v.y, r[4 * i + 2] = v.z, r[4 * i + 3] = v.w;
        }
    } else if constexpr (DPL == 2) {
        float2 v = __ldg(reinterpret_cast<const float2 *>(p));
        r[0] = v.x, r[1] = v.y;
    } else {
#pragma unroll
        for (int i = 0; i < DPL; i++)
            r[i] = __ldg(p + i);
    }
}

/* One block per (row, KV head): the G query heads kvh*G .. kvh*G+G-1 of
 * row r attend to positions 0..len-1; head_dim = 32 * DPL. Each warp takes
 * ATOK tokens per step (its K and V loads all issued before any use), keeps
 * an online softmax per head, and the warps merge in shared memory. */
template <int DPL, int G, typename AT>
__global__ void __launch_bounds__(AWARPS * 32)
    k_attn(AT at_all, const float *__restrict__ q, uint32_t heads, float scale,
           float *__restrict__ out)
{
    constexpr int D = 32 * DPL;
    __shared__ float s_m[AWARPS][G], s_l[AWARPS][G];
    __shared__ float s_acc[AWARPS][G][D];
    uint32_t r = blockIdx.x, kvh = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint32_t len = at_all.len(r);
    const auto at = at_all.row(r);
    float qr[G][DPL], acc[G][DPL], mx[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        mx[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++)
            acc[g][i] = 0.0f;
        load_dpl<DPL>(q + ((size_t)r * heads + kvh * G + g) * D + lane * DPL, qr[g]);
    }
    for (uint32_t t0 = warp; t0 < len; t0 += ATOK * AWARPS) {
        float kk[ATOK][DPL], vv[ATOK][DPL];
        bool has[ATOK];
#pragma unroll
        for (int u = 0; u < ATOK; u++) {
            uint32_t t = t0 + u * AWARPS;
            has[u] = t < len; /* the same for the whole warp */
            size_t o = at.off(has[u] ? t : t0, kvh);
            load_dpl<DPL>(at.k + o + lane * DPL, kk[u]);
            load_dpl<DPL>(at.v + o + lane * DPL, vv[u]);
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float d[ATOK], p[ATOK];
#pragma unroll
            for (int u = 0; u < ATOK; u++) {
                d[u] = 0.0f;
#pragma unroll
                for (int i = 0; i < DPL; i++)
                    d[u] += qr[g][i] * kk[u][i];
            }
#pragma unroll
            for (int u = 0; u < ATOK; u++) {
                float sum = warp_sum(d[u]);
                d[u] = has[u] ? sum * scale : -INFINITY;
            }
            float mn = mx[g];
#pragma unroll
            for (int u = 0; u < ATOK; u++)
                mn = fmaxf(mn, d[u]); /* finite: token t0 always exists */
            float c = expf(mx[g] - mn), psum = 0.0f;
#pragma unroll
            for (int u = 0; u < ATOK; u++) {
                p[u] = expf(d[u] - mn);
                psum += p[u];
            }
            l[g] = l[g] * c + psum;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                float a = acc[g][i] * c;
#pragma unroll
                for (int u = 0; u < ATOK; u++)
                    a += p[u] * vv[u][i];
                acc[g][i] = a;
            }
            mx[g] = mn;
        }
    }
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (lane == 0)
            s_m[warp][g] = mx[g], s_l[warp][g] = l[g];
#pragma unroll
        for (int i = 0; i < DPL; i++)
            s_acc[warp][g][lane * DPL + i] = acc[g][i];
    }
    __syncthreads();
    for (uint32_t e = threadIdx.x; e < (uint32_t)(G * D); e += blockDim.x) {
        uint32_t g = e / D, j = e % D;
        float m = -INFINITY;
        for (int w = 0; w < AWARPS; w++)
            m = fmaxf(m, s_m[w][g]);
        float sum = 0.0f, o = 0.0f;
        for (int w = 0; w < AWARPS; w++) {
            if (s_m[w][g] == -INFINITY) /* a warp that saw no token */
                continue;
            float c = expf(s_m[w][g] - m);
            sum += s_l[w][g] * c;
            o += s_acc[w][g][j] * c;
        }
        out[((size_t)r * heads + kvh * G + g) * D + j] = o / sum;
    }
}

template <int DPL, typename AT>
bool s_attn_launch(uint32_t G, dim3 grid, dim3 block, cudaStream_t st, const AT &at, const float *q,
                   uint32_t heads, float scale, float *out)
{
    switch (G) {
    case 1:
        k_attn<DPL, 1, AT><<<grid, block, 0, st>>>(at, q, heads, scale, out);
        return true;
    case 2:
        k_attn<DPL, 2, AT><<<grid, block, 0, st>>>(at, q, heads, scale, out);
        return true;
    case 4:
        k_attn<DPL, 4, AT><<<grid, block, 0, st>>>(at, q, heads, scale, out);
        return true;
    case 8:
        k_attn<DPL, 8, AT><<<grid, block, 0, st>>>(at, q, heads, scale, out);
        return true;
    }
    return false;
}

template <typename AT>
sl_status_t s_attn(sl_k_ctx *ctx, const AT &at, const float *q, uint32_t n_rows, uint32_t heads,
                   uint32_t kv_heads, uint32_t head_dim, float scale, float *out)
{
    uint32_t G = heads / kv_heads;
    dim3 grid(n_rows, kv_heads), block(AWARPS * 32);
    cudaStream_t st = st_of(ctx)->stream;
    bool ok = false;
    switch (head_dim) {
    case 32:
        ok = s_attn_launch<1>(G, grid, block, st, at, q, heads, scale, out);
        break;
    case 64:
        ok = s_attn_launch<2>(G, grid, block, st, at, q, heads, scale, out);
        break;
    case 128:
        ok = s_attn_launch<4>(G, grid, block, st, at, q, heads, scale, out);
        break;
    }
    if (!ok) {
        SL_ERROR("cuda attention: head dimension %u with %u query heads per KV head is not "
                 "supported (32, 64 or 128; 1, 2, 4 or 8)",
                 head_dim, G);
        return SL_ERR_UNSUPPORTED;
    }
    S_CK_LAUNCH("k_attn");
    return SL_OK;
}

__global__ void k_kv_write(float *kp, float *vp, size_t block_stride, uint32_t block_tokens,
                           uint32_t row_floats, const uint32_t *__restrict__ pos,
                           const uint32_t *__restrict__ row_seq,
                           const uint32_t *__restrict__ tables, uint32_t max_blocks,
                           const float *__restrict__ k, const float *__restrict__ v)
{
    uint32_t r = blockIdx.x;
    const uint32_t *table = tables + (size_t)row_seq[r] * max_blocks;
    uint32_t t = pos[r];
    size_t off =
        (size_t)table[t / block_tokens] * block_stride + (size_t)(t % block_tokens) * row_floats;
    for (uint32_t j = threadIdx.x; j < row_floats; j += blockDim.x) {
        kp[off + j] = k[(size_t)r * row_floats + j];
        vp[off + j] = v[(size_t)r * row_floats + j];
    }
}

/* One block per KV block: copy block_bytes between the pool and the buffer. */
template <typename T>
__global__ void k_kv_move(T *pool, size_t block_elems, const uint32_t *__restrict__ blocks, T *buf,
                          int pack)
{
    T *p = pool + (size_t)blocks[blockIdx.x] * block_elems;
    T *b = buf + (size_t)blockIdx.x * block_elems;
    for (size_t i = threadIdx.x; i < block_elems; i += blockDim.x) {
        if (pack)
            b[i] = p[i];
        else
            p[i] = b[i];
    }
}

__global__ void k_argmax(const float *__restrict__ logits, uint32_t vocab, uint32_t *ids)
{
    __shared__ float s_v[32];
    __shared__ uint32_t s_i[32];
    const float *l = logits + (size_t)blockIdx.x * vocab;
    float bv = -INFINITY;
    uint32_t bi = 0xffffffffu;
    for (uint32_t j = threadIdx.x; j < vocab; j += blockDim.x)
        if (l[j] > bv || bi == 0xffffffffu)
            bv = l[j], bi = j;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        uint32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi))
            bv = ov, bi = oi;
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0)
        s_v[warp] = bv, s_i[warp] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (s_v[w] > bv || (s_v[w] == bv && s_i[w] < bi))
                bv = s_v[w], bi = s_i[w];
        ids[blockIdx.x] = bi;
    }
}

} // namespace

/* --- the C entry points -------------------------------------------------------- */

extern "C" {

int sl_k_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver or no device: not an error here */
        return 0;
    }
    return n;
}

const char *sl_k_cuda_name(void)
{
    static char name[256];
    cudaDeviceProp p;
    if (sl_k_cuda_device_count() <= 0 || cudaGetDeviceProperties(&p, 0) != cudaSuccess)
        return "none";
    snprintf(name, sizeof(name), "%.200s (sm_%d%d, %d SMs)", p.name, p.major, p.minor,
             p.multiProcessorCount);
    return name;
}

sl_status_t sl_k_cuda_init(sl_k_ctx *ctx)
{
    if (sl_k_cuda_device_count() <= 0) {
        SL_ERROR("cuda: no CUDA device present");
        return SL_ERR_UNSUPPORTED;
    }
    cuda_state *s = static_cast<cuda_state *>(calloc(1, sizeof(cuda_state)));
    if (!s) {
        SL_ERROR("cuda: out of memory for a context");
        return SL_ERR_NOMEM;
    }
    cudaError_t e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        SL_ERROR("cuda: cudaStreamCreate failed: %s", cudaGetErrorString(e));
        free(s);
        return SL_ERR_IO;
    }
    cublasStatus_t b = cublasCreate(&s->blas);
    if (b == CUBLAS_STATUS_SUCCESS)
        b = cublasSetStream(s->blas, s->stream);
    if (b != CUBLAS_STATUS_SUCCESS) {
        SL_ERROR("cublas: handle creation failed: status %d", (int)b);
        cudaStreamDestroy(s->stream);
        free(s);
        return SL_ERR_IO;
    }
    ctx->cuda = s;
    return SL_OK;
}

void sl_k_cuda_fini(sl_k_ctx *ctx)
{
    cuda_state *s = st_of(ctx);
    if (!s)
        return;
    cudaStreamSynchronize(s->stream);
    cudaFree(s->scratch);
    cublasDestroy(s->blas);
    cudaStreamDestroy(s->stream);
    free(s);
    ctx->cuda = nullptr;
}

sl_status_t sl_k_cuda_alloc(sl_k_ctx *ctx, size_t bytes, void **ptr_p)
{
    void *p = nullptr;
    S_CK(cudaMalloc(&p, bytes ? bytes : 1));
    *ptr_p = p;
    return SL_OK;
}

void sl_k_cuda_free(sl_k_ctx *ctx, void *ptr)
{
    cudaStreamSynchronize(st_of(ctx)->stream);
    cudaError_t e = cudaFree(ptr);
    if (e != cudaSuccess)
        SL_ERROR("cuda: cudaFree failed: %s", cudaGetErrorString(e));
}

sl_status_t sl_k_cuda_copy(sl_k_ctx *ctx, void *dst, const void *src, size_t bytes, int to_device)
{
    cudaStream_t st = st_of(ctx)->stream;
    S_CK(cudaMemcpyAsync(dst, src, bytes,
                         to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, st));
    S_CK(cudaStreamSynchronize(st));
    return SL_OK;
}

sl_status_t sl_k_cuda_sync(sl_k_ctx *ctx)
{
    S_CK(cudaStreamSynchronize(st_of(ctx)->stream));
    return SL_OK;
}

sl_status_t sl_k_cuda_copy_d2d(sl_k_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    S_CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st_of(ctx)->stream));
    return SL_OK;
}

sl_status_t sl_k_cuda_time_one(sl_k_ctx *ctx, sl_status_t (*fn)(void *arg), void *arg, double *ms_p)
{
    cudaStream_t st = st_of(ctx)->stream;
    cudaEvent_t a, b;
    S_CK(cudaEventCreate(&a));
    cudaError_t e = cudaEventCreate(&b);
    if (e != cudaSuccess) {
        cudaEventDestroy(a);
        SL_ERROR("cuda: cudaEventCreate failed: %s", cudaGetErrorString(e));
        return SL_ERR_IO;
    }
    sl_status_t rc = SL_ERR_IO;
    float ms = 0.0f;
    if ((e = cudaEventRecord(a, st)) != cudaSuccess)
        goto out;
    rc = fn(arg);
    if (rc != SL_OK)
        goto out;
    rc = SL_ERR_IO;
    if ((e = cudaEventRecord(b, st)) != cudaSuccess ||
        (e = cudaEventSynchronize(b)) != cudaSuccess ||
        (e = cudaEventElapsedTime(&ms, a, b)) != cudaSuccess)
        goto out;
    *ms_p = ms;
    rc = SL_OK;
out:
    if (rc == SL_ERR_IO && e != cudaSuccess)
        SL_ERROR("cuda: timing with events failed: %s", cudaGetErrorString(e));
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return rc;
}

sl_status_t sl_k_cuda_linear(sl_k_ctx *ctx, const float *x, uint32_t m, const sl_k_weight_t *w,
                             float *y)
{
    cuda_state *s = st_of(ctx);
    const float one = 1.0f, zero = 0.0f;
    int n = (int)w->rows, k = (int)w->cols;
    switch (w->dtype) {
    case SL_K_F32:
        /* column-major view: y^T[n][m] = W^T(k x n)^T * x^T(k x m) */
        S_CKB(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, (int)m, k, &one,
                          static_cast<const float *>(w->data), k, x, k, &zero, y, n));
        return SL_OK;
    case SL_K_BF16:
    case SL_K_F16: {
        void *xh;
        size_t nx = (size_t)m * w->cols;
        sl_status_t st = s_scratch(ctx, nx * 2, &xh);
        if (st != SL_OK)
            return st;
        cudaDataType_t t = w->dtype == SL_K_BF16 ? CUDA_R_16BF : CUDA_R_16F;
        if (w->dtype == SL_K_BF16)
            k_convert<__nv_bfloat16>
                <<<s_blocks(nx, 256), 256, 0, s->stream>>>(x, nx, static_cast<__nv_bfloat16 *>(xh));
        else
            k_convert<__half>
                <<<s_blocks(nx, 256), 256, 0, s->stream>>>(x, nx, static_cast<__half *>(xh));
        S_CK_LAUNCH("k_convert");
        S_CKB(cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, (int)m, k, &one, w->data, t, k, xh,
                           t, k, &zero, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return SL_OK;
    }
    case SL_K_I8:
    case SL_K_I4: {
        uint32_t chunk = w->dtype == SL_K_I4 ? 32 : 16;
        if (w->group % chunk || w->cols % chunk) {
            SL_ERROR("cuda linear: %s groups must be multiples of %u (group %u, %u columns)",
                     w->dtype == SL_K_I4 ? "int4" : "int8", chunk, w->group, w->cols);
            return SL_ERR_UNSUPPORTED;
        }
        return w->dtype == SL_K_I4 ? s_qgemv<true>(ctx, x, m, w, y)
                                   : s_qgemv<false>(ctx, x, m, w, y);
    }
    }
    SL_ERROR("cuda linear: unknown weight format %d", (int)w->dtype);
    return SL_ERR_INVALID;
}

sl_status_t sl_k_cuda_rmsnorm(sl_k_ctx *ctx, const float *x, const float *g, uint32_t m,
                              uint32_t dim, float eps, float *y)
{
    k_rmsnorm<<<m, 256, 0, st_of(ctx)->stream>>>(x, g, dim, eps, y);
    S_CK_LAUNCH("k_rmsnorm");
    return SL_OK;
}

sl_status_t sl_k_cuda_rope(sl_k_ctx *ctx, float *x, const uint32_t *pos, uint32_t m, uint32_t heads,
                           uint32_t head_dim, float theta)
{
    size_t n = (size_t)m * (head_dim / 2);
    k_rope<<<s_blocks(n, 128), 128, 0, st_of(ctx)->stream>>>(x, pos, m, heads, head_dim, theta);
    S_CK_LAUNCH("k_rope");
    return SL_OK;
}

sl_status_t sl_k_cuda_swiglu(sl_k_ctx *ctx, const float *gate, const float *up, size_t n,
                             float *out)
{
    k_swiglu<<<s_blocks(n, 256), 256, 0, st_of(ctx)->stream>>>(gate, up, n, out);
    S_CK_LAUNCH("k_swiglu");
    return SL_OK;
}

sl_status_t sl_k_cuda_add(sl_k_ctx *ctx, float *y, const float *x, size_t n)
{
    k_add<<<s_blocks(n, 256), 256, 0, st_of(ctx)->stream>>>(y, x, n);
    S_CK_LAUNCH("k_add");
    return SL_OK;
}

sl_status_t sl_k_cuda_embed(sl_k_ctx *ctx, const float *table, const uint32_t *ids, uint32_t m,
                            uint32_t dim, float *out)
{
    k_embed<<<m, 128, 0, st_of(ctx)->stream>>>(table, ids, dim, out);
    S_CK_LAUNCH("k_embed");
    return SL_OK;
}

sl_status_t sl_k_cuda_attn_prefill(sl_k_ctx *ctx, const float *q, const float *k, const float *v,
                                   uint32_t s, uint32_t heads, uint32_t kv_heads, uint32_t head_dim,
                                   float scale, float *out)
{
    dense_at at = {k, v, kv_heads, head_dim};
    return s_attn(ctx, at, q, s, heads, kv_heads, head_dim, scale, out);
}

sl_status_t sl_k_cuda_attn_paged(sl_k_ctx *ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                                 const float *q, uint32_t heads, float scale, float *out)
{
    paged_at at = {
        {kv->k, kv->v, kv->block_stride, kv->block_tokens, kv->kv_heads, kv->head_dim, nullptr},
        rows->pos,
        rows->row_seq,
        rows->tables,
        rows->max_blocks};
    return s_attn(ctx, at, q, rows->n_rows, heads, kv->kv_heads, kv->head_dim, scale, out);
}

sl_status_t sl_k_cuda_kv_write(sl_k_ctx *ctx, const sl_k_paged_t *kv, const sl_k_rows_t *rows,
                               const float *k, const float *v)
{
    k_kv_write<<<rows->n_rows, 128, 0, st_of(ctx)->stream>>>(
        kv->k, kv->v, kv->block_stride, kv->block_tokens, kv->kv_heads * kv->head_dim, rows->pos,
        rows->row_seq, rows->tables, rows->max_blocks, k, v);
    S_CK_LAUNCH("k_kv_write");
    return SL_OK;
}

sl_status_t sl_k_cuda_kv_move(sl_k_ctx *ctx, void *pool, size_t block_bytes, const uint32_t *blocks,
                              uint32_t n, void *buf, int pack)
{
    cudaStream_t st = st_of(ctx)->stream;
    if (block_bytes % 16 == 0 && ((uintptr_t)pool | (uintptr_t)buf) % 16 == 0)
        k_kv_move<uint4><<<n, 256, 0, st>>>(static_cast<uint4 *>(pool), block_bytes / 16, blocks,
                                            static_cast<uint4 *>(buf), pack);
    else
        k_kv_move<uint8_t><<<n, 256, 0, st>>>(static_cast<uint8_t *>(pool), block_bytes, blocks,
                                              static_cast<uint8_t *>(buf), pack);
    S_CK_LAUNCH("k_kv_move");
    return SL_OK;
}

sl_status_t sl_k_cuda_argmax(sl_k_ctx *ctx, const float *logits, uint32_t m, uint32_t vocab,
                             uint32_t *ids)
{
    k_argmax<<<m, 256, 0, st_of(ctx)->stream>>>(logits, vocab, ids);
    S_CK_LAUNCH("k_argmax");
    return SL_OK;
}

} // extern "C"
