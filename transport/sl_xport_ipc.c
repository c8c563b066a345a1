/*
 * The CUDA IPC lane (include/sluice/xport_gpu.h): two processes on one node
 * share a device KV pool through a cudaIpcMemHandle_t, and block lists move
 * device to device without the host or UCX.
 *
 * The idea. The owner exports its pool once (the handle, the region's
 * offset inside its allocation, its length, the GPU's UUID and the owner's
 * pid, in a fixed blob that travels with the engine address). A peer opens
 * it once (cudaIpcOpenMemHandle) and keeps the mapping with a stream of its
 * own and SL_XPORT_IPC_SLOTS copy slots. A copy of a block list takes a
 * slot: the list is cut into pieces of at most 64 KiB into the slot's
 * pinned descriptor buffer, uploaded to the slot's device buffer, and one
 * gather kernel copies every piece (sl_xport_ipc_kernel.cu); an event
 * recorded after it is the completion, polled in order by progress. A
 * slot's buffers are reused only after its event has fired, so the upload
 * never reads a descriptor being rewritten; they grow to the largest list
 * seen and are never shrunk, so a steady stream allocates nothing.
 *
 * The owner learns that the bytes landed from the peer, through the
 * control path (the UCX notification or the executor's own messages): the
 * lane only completes locally.
 *
 * Alternatives rejected: cudaMemcpyAsync per block (microseconds of call per
 * 32 KiB block, a fraction of the device's bandwidth for KV lists);
 * cudaMemcpyBatchAsync (its signature changed between CUDA 12.8 and 13, and
 * it still costs per-copy work on the host); UCX's cuda_ipc transport
 * (Debian's UCX is built without CUDA).
 */
#include <sluice/xport_gpu.h>

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "transport/sl_xport_cudrv.h"
#include "transport/sl_xport_ipc_kernel.h"

/* One block-list copy slot. */
typedef struct s_slot {
    cudaEvent_t done;           /* recorded after the kernel */
    sl_xport_ipc_piece_t *host; /* pinned descriptor buffer */
    sl_xport_ipc_piece_t *dev;  /* device descriptor buffer */
    size_t cap;                 /* capacity of both, in pieces */
    sl_xport_ipc_done_cb_t cb;  /* completion */
    void *arg;                  /* its argument */
} s_slot_t;

struct sl_xport_ipc {
    uint8_t *mapped;                   /* base of the mapped allocation */
    uint8_t *base;                     /* the region: mapped + offset */
    uint64_t len;                      /* region bytes */
    cudaStream_t stream;               /* copy stream (non-blocking) */
    s_slot_t slot[SL_XPORT_IPC_SLOTS]; /* copy slots */
    unsigned head;                     /* oldest slot in flight */
    unsigned count;                    /* slots in flight */
};

/* True when a GPU is there; says why not otherwise. */
static bool s_have_gpu(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        SL_INFO("xport: CUDA IPC lane unavailable: no GPU (%s)",
                e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        return false;
    }
    return true;
}

sl_status_t sl_xport_ipc_export(void *base, size_t len, void *buf, size_t cap, size_t *len_p)
{
    if (!base || len == 0 || !buf || !len_p || cap < SL_XPORT_IPC_BLOB_LEN)
        return SL_ERR_INVALID;
    if (!s_have_gpu())
        return SL_ERR_UNSUPPORTED;
    uint64_t abase, asize;
    sl_status_t st = sl_xport_cudrv_range(base, &abase, &asize);
    if (st != SL_OK)
        return st;
    uint64_t off = (uint64_t)(uintptr_t)base - abase;
    if (len > asize - off) {
        SL_WARN("xport: IPC export of %zu bytes runs past its allocation (%llu bytes)", len,
                (unsigned long long)asize);
        return SL_ERR_INVALID;
    }
    sl_xport_ipc_desc_t d;
    memset(&d, 0, sizeof(d));
    cudaIpcMemHandle_t h;
    cudaError_t e = cudaIpcGetMemHandle(&h, base);
    if (e != cudaSuccess) {
        SL_ERROR("xport: cudaIpcGetMemHandle: %s", cudaGetErrorString(e));
        return SL_ERR_IO;
    }
    _Static_assert(sizeof(h) == SL_XPORT_IPC_HANDLE_LEN, "cudaIpcMemHandle_t is 64 bytes");
    memcpy(d.handle, &h, sizeof(h));
    int dev = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        memcpy(d.uuid, &prop.uuid, sizeof(d.uuid));
    d.offset = off;
    d.len = len;
    d.pid = (uint32_t)getpid();
    return sl_xport_ipc_blob_encode(&d, buf, cap, len_p);
}

/* Free a slot's buffers and event (any of them may be missing). */
static void s_slot_free(s_slot_t *s)
{
    if (s->host)
        cudaFreeHost(s->host);
    if (s->dev)
        cudaFree(s->dev);
    if (s->done)
        cudaEventDestroy(s->done);
    memset(s, 0, sizeof(*s));
}

/* Grow a free slot's descriptor buffers to hold n pieces. */
static sl_status_t s_slot_reserve(s_slot_t *s, size_t n)
{
    if (n <= s->cap)
        return SL_OK;
    size_t cap = s->cap ? s->cap : 1024;
    while (cap < n)
        cap *= 2;
    sl_xport_ipc_piece_t *h = NULL, *d = NULL;
    cudaError_t e = cudaHostAlloc((void **)&h, cap * sizeof(*h), cudaHostAllocDefault);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&d, cap * sizeof(*d));
    if (e != cudaSuccess) {
        SL_ERROR("xport: IPC descriptor buffers of %zu pieces: %s", cap, cudaGetErrorString(e));
        if (h)
            cudaFreeHost(h);
        return SL_ERR_NOMEM;
    }
    if (s->host)
        cudaFreeHost(s->host);
    if (s->dev)
        cudaFree(s->dev);
    s->host = h;
    s->dev = d;
    s->cap = cap;
    return SL_OK;
}

sl_status_t sl_xport_ipc_open(const void *blob, size_t len, sl_xport_ipc_t **ipc_p)
{
    if (!ipc_p)
        return SL_ERR_INVALID;
    sl_xport_ipc_desc_t d;
    sl_status_t st = sl_xport_ipc_blob_decode(blob, len, &d);
    if (st != SL_OK) {
        SL_WARN("xport: refusing a CUDA IPC blob: %s", sl_status_str(st));
        return st;
    }
    if (d.pid == (uint32_t)getpid()) {
        SL_WARN("xport: a process cannot open its own CUDA IPC export");
        return SL_ERR_INVALID;
    }
    if (!s_have_gpu())
        return SL_ERR_UNSUPPORTED;
    sl_xport_ipc_t *ipc = calloc(1, sizeof(*ipc));
    if (!ipc)
        return SL_ERR_NOMEM;
    cudaIpcMemHandle_t h;
    memcpy(&h, d.handle, sizeof(h));
    void *mapped = NULL;
    cudaError_t e = cudaIpcOpenMemHandle(&mapped, h, cudaIpcMemLazyEnablePeerAccess);
    if (e != cudaSuccess) {
        SL_ERROR("xport: cudaIpcOpenMemHandle (exporter pid %u): %s", d.pid, cudaGetErrorString(e));
        st = SL_ERR_IO;
        goto err_free;
    }
    ipc->mapped = mapped;
    ipc->base = ipc->mapped + d.offset;
    ipc->len = d.len;
    if ((e = cudaStreamCreateWithFlags(&ipc->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        SL_ERROR("xport: cudaStreamCreate: %s", cudaGetErrorString(e));
        st = SL_ERR_IO;
        goto err_close_handle;
    }
    for (unsigned i = 0; i < SL_XPORT_IPC_SLOTS; i++) {
        e = cudaEventCreateWithFlags(&ipc->slot[i].done, cudaEventDisableTiming);
        if (e != cudaSuccess) {
            SL_ERROR("xport: cudaEventCreate: %s", cudaGetErrorString(e));
            st = SL_ERR_IO;
            goto err_free_slots;
        }
    }
    SL_DEBUG("xport: opened CUDA IPC region of %llu bytes from pid %u", (unsigned long long)d.len,
             d.pid);
    *ipc_p = ipc;
    return SL_OK;

err_free_slots:
    for (unsigned i = 0; i < SL_XPORT_IPC_SLOTS; i++)
        s_slot_free(&ipc->slot[i]);
    cudaStreamDestroy(ipc->stream);
err_close_handle:
    cudaIpcCloseMemHandle(mapped);
err_free:
    free(ipc);
    return st;
}

uint64_t sl_xport_ipc_region_len(const sl_xport_ipc_t *ipc)
{
    return ipc ? ipc->len : 0;
}

sl_status_t sl_xport_ipc_copy_blocks(sl_xport_ipc_t *ipc, sl_xport_op_t op, void *local,
                                     uint64_t local_len, const sl_xport_block_t *blocks, size_t n,
                                     sl_xport_ipc_done_cb_t cb, void *arg)
{
    if (!ipc || !local || (op != SL_XPORT_PUT && op != SL_XPORT_GET))
        return SL_ERR_INVALID;
    sl_status_t st = sl_xport_blocks_check(blocks, n, local_len, ipc->len, NULL);
    if (st != SL_OK)
        return st;
    if (ipc->count == SL_XPORT_IPC_SLOTS)
        return SL_ERR_AGAIN;
    size_t npieces = 0;
    for (size_t i = 0; i < n; i++)
        npieces += (blocks[i].len + SL_XPORT_IPC_PIECE - 1) / SL_XPORT_IPC_PIECE;
    if (npieces > UINT32_MAX)
        return SL_ERR_OVERFLOW;
    s_slot_t *s = &ipc->slot[(ipc->head + ipc->count) % SL_XPORT_IPC_SLOTS];
    if ((st = s_slot_reserve(s, npieces)) != SL_OK)
        return st;
    uint64_t lbase = (uint64_t)(uintptr_t)local, rbase = (uint64_t)(uintptr_t)ipc->base;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t l = lbase + blocks[i].local_off, r = rbase + blocks[i].remote_off;
        for (uint64_t off = 0; off < blocks[i].len; off += SL_XPORT_IPC_PIECE) {
            uint64_t len = blocks[i].len - off;
            if (len > SL_XPORT_IPC_PIECE)
                len = SL_XPORT_IPC_PIECE;
            s->host[k].src = op == SL_XPORT_PUT ? l + off : r + off;
            s->host[k].dst = op == SL_XPORT_PUT ? r + off : l + off;
            s->host[k].len = len;
            k++;
        }
    }
    cudaError_t e = cudaMemcpyAsync(s->dev, s->host, npieces * sizeof(*s->host),
                                    cudaMemcpyHostToDevice, ipc->stream);
    if (e == cudaSuccess)
        e = (cudaError_t)sl_xport_ipc_launch(s->dev, (uint32_t)npieces, ipc->stream);
    if (e == cudaSuccess)
        e = cudaEventRecord(s->done, ipc->stream);
    if (e != cudaSuccess) {
        SL_ERROR("xport: CUDA IPC copy of %zu blocks: %s", n, cudaGetErrorString(e));
        /* nothing may still read the slot's buffers when it is reused */
        cudaStreamSynchronize(ipc->stream);
        return SL_ERR_IO;
    }
    s->cb = cb;
    s->arg = arg;
    ipc->count++;
    return SL_OK;
}

/* Retire the oldest slot with st and run its callback (after the slot is
 * free, so the callback may post again). */
static void s_retire(sl_xport_ipc_t *ipc, sl_status_t st)
{
    s_slot_t *s = &ipc->slot[ipc->head];
    sl_xport_ipc_done_cb_t cb = s->cb;
    void *arg = s->arg;
    s->cb = NULL;
    s->arg = NULL;
    ipc->head = (ipc->head + 1) % SL_XPORT_IPC_SLOTS;
    ipc->count--;
    if (cb)
        cb(arg, st);
}

unsigned sl_xport_ipc_progress(sl_xport_ipc_t *ipc)
{
    unsigned ran = 0;
    while (ipc && ipc->count > 0) {
        cudaError_t e = cudaEventQuery(ipc->slot[ipc->head].done);
        if (e == cudaErrorNotReady)
            break;
        if (e != cudaSuccess)
            SL_ERROR("xport: CUDA IPC copy failed: %s", cudaGetErrorString(e));
        s_retire(ipc, e == cudaSuccess ? SL_OK : SL_ERR_IO);
        ran++;
    }
    return ran;
}

sl_status_t sl_xport_ipc_wait(sl_xport_ipc_t *ipc)
{
    if (!ipc)
        return SL_ERR_INVALID;
    cudaError_t e = cudaStreamSynchronize(ipc->stream);
    sl_xport_ipc_progress(ipc);
    if (e != cudaSuccess) {
        SL_ERROR("xport: CUDA IPC stream: %s", cudaGetErrorString(e));
        return SL_ERR_IO;
    }
    return SL_OK;
}

void sl_xport_ipc_close(sl_xport_ipc_t **ipc_p)
{
    if (!ipc_p || !*ipc_p)
        return;
    sl_xport_ipc_t *ipc = *ipc_p;
    *ipc_p = NULL;
    if (cudaStreamSynchronize(ipc->stream) == cudaSuccess)
        sl_xport_ipc_progress(ipc);
    while (ipc->count > 0)
        s_retire(ipc, SL_ERR_SHUTDOWN);
    for (unsigned i = 0; i < SL_XPORT_IPC_SLOTS; i++)
        s_slot_free(&ipc->slot[i]);
    cudaStreamDestroy(ipc->stream);
    cudaIpcCloseMemHandle(ipc->mapped);
    free(ipc);
}
