/*
 * CUDA pieces of the transport: the probe of UCX's CUDA support, the staging
 * copy step on a CUDA stream, and pinning of the bounce rings. Built only
 * when the toolkit is found; sl_xport_nocuda.c stands in otherwise.
 *
 * The idea: ask UCX twice. Its context must list CUDA among its memory types,
 * and a registered device buffer must not come back as host memory (a UCX
 * without CUDA support registers any pointer as host memory and would then
 * read device addresses from the CPU). Only if both hold are device pointers
 * handed to UCX. The copy step runs cudaMemcpyAsync on one non-blocking
 * stream and waits for that stream only, so the pipeline's copies do not
 * serialise behind the application's default-stream work.
 *
 * Alternative rejected: trusting ucp_context_query alone (a UCX built with
 * CUDA on a host whose driver lacks peer memory still reports CUDA).
 */
#include "transport/sl_xport_int.h"

#include <cuda_runtime.h>
#include <string.h>

#include "common/sl_log.h"

static cudaStream_t s_stream; /* copy stream, created on first use */

static sl_status_t s_cuda_copy(void *ctx, void *dst, const void *src, size_t len)
{
    cudaError_t e;
    if (!s_stream &&
        (e = cudaStreamCreateWithFlags(&s_stream, cudaStreamNonBlocking)) != cudaSuccess) {
        SL_ERROR("xport: cudaStreamCreate: %s", cudaGetErrorString(e));
        return SL_ERR_IO;
    }
    if ((e = cudaMemcpyAsync(dst, src, len, cudaMemcpyDefault, s_stream)) != cudaSuccess ||
        (e = cudaStreamSynchronize(s_stream)) != cudaSuccess) {
        SL_ERROR("xport: cudaMemcpyAsync(%zu bytes): %s", len, cudaGetErrorString(e));
        return SL_ERR_IO;
    }
    return SL_OK;
}

sl_xport_copy_fn_t sl_xport_cuda_copy_fn(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
        return NULL;
    return s_cuda_copy;
}

bool sl_xport_cuda_probe(sl_xport_t *xp)
{
    ucp_context_attr_t ca;
    memset(&ca, 0, sizeof(ca));
    ca.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
    if (ucp_context_query(xp->ctx[SL_XPORT_CRITICAL], &ca) != UCS_OK ||
        !(ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)))
        return false;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
        return false;
    void *d = NULL;
    if (cudaMalloc(&d, 1 << 20) != cudaSuccess)
        return false;
    bool direct = false;
    ucp_mem_map_params_t mp;
    ucp_mem_h memh;
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    mp.address = d;
    mp.length = 1 << 20;
    if (ucp_mem_map(xp->ctx[SL_XPORT_CRITICAL], &mp, &memh) == UCS_OK) {
        ucp_mem_attr_t ma;
        memset(&ma, 0, sizeof(ma));
        ma.field_mask = UCP_MEM_ATTR_FIELD_MEM_TYPE;
        if (ucp_mem_query(memh, &ma) == UCS_OK && ma.mem_type == UCS_MEMORY_TYPE_CUDA)
            direct = true;
        ucp_mem_unmap(xp->ctx[SL_XPORT_CRITICAL], memh);
    }
    cudaFree(d);
    return direct;
}

void sl_xport_cuda_pin(void *p, size_t len)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0 &&
        cudaHostRegister(p, len, cudaHostRegisterDefault) != cudaSuccess)
        SL_WARN("xport: cudaHostRegister(%zu bytes) failed; staging uses pageable memory", len);
}

void sl_xport_cuda_unpin(void *p)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0)
        cudaHostUnregister(p);
}
