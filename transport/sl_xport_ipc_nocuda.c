/*
 * The CUDA IPC lane in builds without the CUDA toolkit (and in the
 * sanitizer build): the same API, every entry point SL_ERR_UNSUPPORTED after
 * checking its arguments as the CUDA version does, so callers and tests see
 * one contract. Kept apart so no CUDA symbol is referenced when nvcc is
 * absent (as sl_xport_nocuda.c is for the staging copy step).
 */
#include <sluice/xport_gpu.h>

#include <unistd.h>

#include "common/sl_log.h"

sl_status_t sl_xport_ipc_export(void *base, size_t len, void *buf, size_t cap, size_t *len_p)
{
    if (!base || len == 0 || !buf || !len_p || cap < SL_XPORT_IPC_BLOB_LEN)
        return SL_ERR_INVALID;
    SL_INFO("xport: CUDA IPC lane unavailable: built without CUDA");
    return SL_ERR_UNSUPPORTED;
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
    SL_INFO("xport: CUDA IPC lane unavailable: built without CUDA");
    return SL_ERR_UNSUPPORTED;
}

void sl_xport_ipc_close(sl_xport_ipc_t **ipc_p)
{
    if (ipc_p)
        *ipc_p = NULL;
}

uint64_t sl_xport_ipc_region_len(const sl_xport_ipc_t *ipc)
{
    return 0;
}

sl_status_t sl_xport_ipc_copy_blocks(sl_xport_ipc_t *ipc, sl_xport_op_t op, void *local,
                                     uint64_t local_len, const sl_xport_block_t *blocks, size_t n,
                                     sl_xport_ipc_done_cb_t cb, void *arg)
{
    return ipc ? SL_ERR_UNSUPPORTED : SL_ERR_INVALID;
}

unsigned sl_xport_ipc_progress(sl_xport_ipc_t *ipc)
{
    return 0;
}

sl_status_t sl_xport_ipc_wait(sl_xport_ipc_t *ipc)
{
    return ipc ? SL_ERR_UNSUPPORTED : SL_ERR_INVALID;
}
