/*
 * The copy kernel of the CUDA IPC lane: one launch copies a whole block
 * list (cut into pieces of at most 64 KiB on the host), each thread block
 * taking pieces in turn.
 *
 * Why a kernel and not cudaMemcpyAsync per block: a KV block list is
 * thousands of blocks of tens of KiB (per layer, K and V), and a copy call
 * costs microseconds of launch each, far more than moving 32 KiB at device
 * bandwidth; one launch over a descriptor array moves them at close to the
 * bandwidth of one large copy. The pieces bound the work per thread block,
 * so a list of a few large blocks still fills the GPU.
 *
 * Each thread moves 16-byte words, four loads in flight before its four
 * stores, when the piece's ends are 16-byte aligned (KV blocks are); other
 * pieces go byte by byte.
 */
#include "transport/sl_xport_ipc_kernel.h"

#include <cuda_runtime.h>

#define S_THREADS 256
#define S_UNROLL 4
#define S_MAX_GRID 4096

__global__ void s_gather(const sl_xport_ipc_piece_t *pieces, uint32_t n)
{
    for (uint32_t p = blockIdx.x; p < n; p += gridDim.x) {
        sl_xport_ipc_piece_t pc = pieces[p];
        if (((pc.src | pc.dst | pc.len) & 15u) == 0) {
            const uint4 *s = (const uint4 *)pc.src;
            uint4 *d = (uint4 *)pc.dst;
            uint64_t words = pc.len >> 4;
            uint64_t i = threadIdx.x;
            for (; i + (S_UNROLL - 1) * S_THREADS < words; i += S_UNROLL * S_THREADS) {
                uint4 v[S_UNROLL];
#pragma unroll
                for (int u = 0; u < S_UNROLL; u++)
                    v[u] = s[i + u * S_THREADS];
#pragma unroll
                for (int u = 0; u < S_UNROLL; u++)
                    d[i + u * S_THREADS] = v[u];
            }
            for (; i < words; i += S_THREADS)
                d[i] = s[i];
        } else {
            const unsigned char *s = (const unsigned char *)pc.src;
            unsigned char *d = (unsigned char *)pc.dst;
            for (uint64_t i = threadIdx.x; i < pc.len; i += S_THREADS)
                d[i] = s[i];
        }
    }
}

extern "C" int sl_xport_ipc_launch(const sl_xport_ipc_piece_t *pieces, uint32_t n, void *stream)
{
    if (n == 0)
        return 0;
    unsigned grid = n < S_MAX_GRID ? n : S_MAX_GRID;
    s_gather<<<grid, S_THREADS, 0, (cudaStream_t)stream>>>(pieces, n);
    return (int)cudaGetLastError();
}
