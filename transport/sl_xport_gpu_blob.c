/*
 * The pure parts of the GPU memory lanes (include/sluice/xport_gpu.h): the
 * block-list check both lanes run before touching a device, and the two
 * blobs that travel between executors through the scheduler (the CUDA IPC
 * export and the verbs connection).
 *
 * The idea: a blob is a fixed-size little-endian record with a magic, a
 * version and reserved bytes that must be zero, encoded field by field (no
 * struct copied to the wire, so padding and byte order never leak), and a
 * decoder that checks every field before the caller sees any. The blobs come
 * from other processes and hosts, so nothing in them is trusted: a blob
 * that decodes is one that a device call can be given.
 *
 * Kept apart from sl_xport_ipc.c and sl_xport_verbs.c so that they are
 * tested on any machine, without CUDA or an RDMA device.
 *
 * Alternative rejected: protobuf messages for the blobs (they are opaque
 * bytes to the control plane, which already carries them in a bytes field;
 * a fixed record is simpler to validate and to bound).
 */
#include <sluice/xport_gpu.h>

#include <string.h>

#define S_IPC_MAGIC 0x50494c53u   /* "SLIP" */
#define S_VERBS_MAGIC 0x42564c53u /* "SLVB" */
#define S_VERSION 1               /* version of both blobs */

static void s_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void s_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void s_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t s_get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t s_get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t s_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool s_all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

sl_status_t sl_xport_blocks_check(const sl_xport_block_t *blocks, size_t n, uint64_t local_len,
                                  uint64_t remote_len, uint64_t *bytes_p)
{
    if (!blocks || n == 0)
        return SL_ERR_INVALID;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const sl_xport_block_t *b = &blocks[i];
        if (b->len == 0)
            return SL_ERR_INVALID;
        if (b->local_off > local_len || b->len > local_len - b->local_off ||
            b->remote_off > remote_len || b->len > remote_len - b->remote_off)
            return SL_ERR_MSG_RANGE;
        total += b->len; /* each len is at most a region's length: no wrap in practice */
    }
    if (bytes_p)
        *bytes_p = total;
    return SL_OK;
}

/* ---- CUDA IPC export blob ----------------------------------------------
 *  0 magic u32 | 4 version u16 | 6 reserved u16 | 8 pid u32 | 12 reserved u32
 * 16 uuid[16] | 32 offset u64 | 40 len u64 | 48 handle[64]             = 112 */

sl_status_t sl_xport_ipc_blob_encode(const sl_xport_ipc_desc_t *d, void *buf, size_t cap,
                                     size_t *len_p)
{
    if (!d || !buf || !len_p || cap < SL_XPORT_IPC_BLOB_LEN)
        return SL_ERR_INVALID;
    uint8_t *p = buf;
    memset(p, 0, SL_XPORT_IPC_BLOB_LEN);
    s_put32(p, S_IPC_MAGIC);
    s_put16(p + 4, S_VERSION);
    s_put32(p + 8, d->pid);
    memcpy(p + 16, d->uuid, 16);
    s_put64(p + 32, d->offset);
    s_put64(p + 40, d->len);
    memcpy(p + 48, d->handle, SL_XPORT_IPC_HANDLE_LEN);
    *len_p = SL_XPORT_IPC_BLOB_LEN;
    return SL_OK;
}

sl_status_t sl_xport_ipc_blob_decode(const void *buf, size_t len, sl_xport_ipc_desc_t *d)
{
    const uint8_t *p = buf;
    if (!buf || !d || len != SL_XPORT_IPC_BLOB_LEN || s_get32(p) != S_IPC_MAGIC ||
        s_get16(p + 6) != 0 || s_get32(p + 12) != 0)
        return SL_ERR_MSG_MALFORMED;
    if (s_get16(p + 4) != S_VERSION)
        return SL_ERR_MSG_VERSION;
    sl_xport_ipc_desc_t out;
    out.pid = s_get32(p + 8);
    memcpy(out.uuid, p + 16, 16);
    out.offset = s_get64(p + 32);
    out.len = s_get64(p + 40);
    memcpy(out.handle, p + 48, SL_XPORT_IPC_HANDLE_LEN);
    /* device address spaces are 49 bits wide on every current GPU */
    if (out.pid == 0 || out.len == 0 || out.offset >= (1ull << 48) || out.len > (1ull << 48))
        return SL_ERR_MSG_RANGE;
    *d = out;
    return SL_OK;
}

/* ---- verbs connection blob ----------------------------------------------
 *  0 magic u32 | 4 version u16 | 6 lid u16 | 8 qpn u32 | 12 psn u32
 * 16 mtu u8 | 17 reserved[3] | 20 rkey u32 | 24 gid[16] | 40 addr u64
 * 48 len u64 | 56 reserved[8]                                           = 64 */

sl_status_t sl_xport_verbs_blob_encode(const sl_xport_verbs_desc_t *d, void *buf, size_t cap,
                                       size_t *len_p)
{
    if (!d || !buf || !len_p || cap < SL_XPORT_VERBS_BLOB_LEN)
        return SL_ERR_INVALID;
    uint8_t *p = buf;
    memset(p, 0, SL_XPORT_VERBS_BLOB_LEN);
    s_put32(p, S_VERBS_MAGIC);
    s_put16(p + 4, S_VERSION);
    s_put16(p + 6, d->lid);
    s_put32(p + 8, d->qpn);
    s_put32(p + 12, d->psn);
    p[16] = d->mtu;
    s_put32(p + 20, d->rkey);
    memcpy(p + 24, d->gid, 16);
    s_put64(p + 40, d->addr);
    s_put64(p + 48, d->len);
    *len_p = SL_XPORT_VERBS_BLOB_LEN;
    return SL_OK;
}

sl_status_t sl_xport_verbs_blob_decode(const void *buf, size_t len, sl_xport_verbs_desc_t *d)
{
    const uint8_t *p = buf;
    if (!buf || !d || len != SL_XPORT_VERBS_BLOB_LEN || s_get32(p) != S_VERBS_MAGIC ||
        !s_all_zero(p + 17, 3) || !s_all_zero(p + 56, 8))
        return SL_ERR_MSG_MALFORMED;
    if (s_get16(p + 4) != S_VERSION)
        return SL_ERR_MSG_VERSION;
    sl_xport_verbs_desc_t out;
    out.lid = s_get16(p + 6);
    out.qpn = s_get32(p + 8);
    out.psn = s_get32(p + 12);
    out.mtu = p[16];
    out.rkey = s_get32(p + 20);
    memcpy(out.gid, p + 24, 16);
    out.addr = s_get64(p + 40);
    out.len = s_get64(p + 48);
    if (out.qpn == 0 || out.qpn > 0xffffffu || out.psn > 0xffffffu || out.mtu < 1 || out.mtu > 5 ||
        out.len == 0 || out.addr > UINT64_MAX - out.len + 1 ||
        (out.lid == 0 && s_all_zero(out.gid, 16)))
        return SL_ERR_MSG_RANGE;
    *d = out;
    return SL_OK;
}
