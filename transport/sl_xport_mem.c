/*
 * Memory registration of the transport engine: local regions registered
 * with UCX once per data class, their remote keys packed into a blob for a
 * peer, and a peer's blob validated and unpacked into a small integer id
 * that transfers name the remote region by.
 *
 * The idea. A region is registered once and reused by every transfer (UCX
 * registration is far too slow for the per-transfer path). Each data class
 * has its own UCP context (for its own fabric marking), so a region has one
 * memory handle and one packed key per data class; the blob carries them
 * all with the region's base and length, so the importer can check every
 * block of a transfer against the remote region before anything is queued.
 * Device memory that UCX cannot take is not registered at all: it is marked
 * for the staging pipeline (sl_xport_stage.c), and its blob says so.
 *
 * A region can also be allocated by UCX (sl_xport_mem_alloc): the critical
 * class's context allocates it (UCP_MEM_MAP_ALLOCATE, which on one host
 * picks a sysv or posix shared segment when those transports are on) and
 * the background context registers the same range. The critical key then
 * names a segment the peer can map, so a KV put on shared memory is a copy
 * by the sender instead of UCX's software RMA over active messages; the
 * background key is an ordinary registration (background may stay slower).
 * Over TCP the allocation is ordinary pages and nothing changes.
 *
 * Alternatives rejected: registering per transfer (cost); handing raw UCX
 * rkey buffers to callers (no bounds to check, no version, no staged flag);
 * naming remote regions by their address (a transfer could then point at a
 * key that was never imported); allocating in every class's context (one
 * range cannot be allocated twice, and the critical class is the one KV
 * moves in); one packed key unpacked for every class (a key names memory
 * domains by their index in the packing context, which another class's
 * context need not share).
 */
#include "transport/sl_xport_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"

#define S_RKEY_MAGIC 0x534c584bu /* "SLXK" */
#define S_RKEY_FLAG_STAGED 1u

sl_xport_mem_t *sl_xport_mem_find(sl_xport_t *xp, uint64_t addr, uint64_t len)
{
    sl_list_t *pos;
    sl_list_for_each(pos, &xp->mems)
    {
        sl_xport_mem_t *m = SL_CONTAINER_OF(pos, sl_xport_mem_t, link);
        uint64_t b = (uint64_t)(uintptr_t)m->base;
        if (addr >= b && len <= m->len && addr - b <= m->len - len)
            return m;
    }
    return NULL;
}

sl_status_t sl_xport_mem_register(sl_xport_t *xp, void *base, size_t len, sl_xport_mem_type_t type,
                                  sl_xport_mem_t **mem_p)
{
    if (!xp || !base || !len || !mem_p || (type != SL_XPORT_MEM_HOST && type != SL_XPORT_MEM_CUDA))
        return SL_ERR_INVALID;
    sl_xport_mem_t *m = calloc(1, sizeof(*m));
    if (!m)
        return SL_ERR_NOMEM;
    m->base = base;
    m->len = len;
    m->type = type;
    m->staged = type == SL_XPORT_MEM_CUDA && !xp->cuda_direct;
    sl_list_init(&m->link);
    if (m->staged) {
        sl_status_t ret;
        if (!xp->cfg.copy) {
            SL_ERROR("xport: CUDA memory needs the staging copy step, and this build has none");
            free(m);
            return SL_ERR_UNSUPPORTED;
        }
        if ((ret = sl_xport_stage_init(xp)) != SL_OK) {
            free(m);
            return ret;
        }
    } else {
        for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
            ucp_mem_map_params_t mp;
            memset(&mp, 0, sizeof(mp));
            mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                            UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
            mp.address = base;
            mp.length = len;
            mp.memory_type =
                type == SL_XPORT_MEM_CUDA ? UCS_MEMORY_TYPE_CUDA : UCS_MEMORY_TYPE_HOST;
            ucs_status_t st = ucp_mem_map(xp->ctx[c], &mp, &m->memh[c]);
            if (st != UCS_OK) {
                SL_ERROR("xport: ucp_mem_map(%zu bytes): %s", len, ucs_status_string(st));
                m->memh[c] = NULL;
                sl_xport_mem_deregister(xp, &m);
                return SL_ERR_IO;
            }
        }
    }
    sl_list_push_back(&xp->mems, &m->link);
    *mem_p = m;
    return SL_OK;
}

/* Register [base, base+len) of host memory with class cls's context. */
static sl_status_t s_map_host(sl_xport_t *xp, int cls, void *base, size_t len, ucp_mem_h *memh_p)
{
    ucp_mem_map_params_t mp;
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
    mp.address = base;
    mp.length = len;
    mp.memory_type = UCS_MEMORY_TYPE_HOST;
    ucs_status_t st = ucp_mem_map(xp->ctx[cls], &mp, memh_p);
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_mem_map(%zu bytes): %s", len, ucs_status_string(st));
        return SL_ERR_IO;
    }
    return SL_OK;
}

sl_status_t sl_xport_mem_alloc(sl_xport_t *xp, size_t len, sl_xport_mem_type_t type, void **base_p,
                               sl_xport_mem_t **mem_p)
{
    if (!xp || !len || !base_p || !mem_p)
        return SL_ERR_INVALID;
    if (type == SL_XPORT_MEM_CUDA)
        return SL_ERR_UNSUPPORTED;
    if (type != SL_XPORT_MEM_HOST)
        return SL_ERR_INVALID;
    sl_xport_mem_t *m = calloc(1, sizeof(*m));
    if (!m)
        return SL_ERR_NOMEM;
    m->type = type;
    sl_list_init(&m->link);

    ucp_mem_map_params_t mp;
    memset(&mp, 0, sizeof(mp));
    mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_FLAGS | UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
    mp.address = NULL;
    mp.length = len;
    mp.flags = UCP_MEM_MAP_ALLOCATE;
    mp.memory_type = UCS_MEMORY_TYPE_HOST;
    ucs_status_t st = ucp_mem_map(xp->ctx[SL_XPORT_CRITICAL], &mp, &m->memh[SL_XPORT_CRITICAL]);
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_mem_map(allocate %zu bytes): %s", len, ucs_status_string(st));
        free(m);
        return st == UCS_ERR_NO_MEMORY ? SL_ERR_NOMEM : SL_ERR_IO;
    }
    ucp_mem_attr_t attr;
    memset(&attr, 0, sizeof(attr));
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    st = ucp_mem_query(m->memh[SL_XPORT_CRITICAL], &attr);
    if (st != UCS_OK || !attr.address || attr.length < len) {
        SL_ERROR("xport: ucp_mem_query of an allocated region: %s", ucs_status_string(st));
        goto err_unmap;
    }
    m->base = attr.address;
    m->len = len;
    for (int c = SL_XPORT_CRITICAL + 1; c < SL_XPORT_NCLASS; c++)
        if (s_map_host(xp, c, m->base, len, &m->memh[c]) != SL_OK)
            goto err_unmap;
    sl_list_push_back(&xp->mems, &m->link);
    *base_p = m->base;
    *mem_p = m;
    return SL_OK;

err_unmap:
    sl_xport_mem_deregister(xp, &m);
    return SL_ERR_IO;
}

void sl_xport_mem_deregister(sl_xport_t *xp, sl_xport_mem_t **mem_p)
{
    if (!mem_p || !*mem_p)
        return;
    sl_xport_mem_t *m = *mem_p;
    /* highest class first: an allocated region's memory goes with its
     * critical handle, after the other contexts have let go of the range */
    for (int c = SL_XPORT_NCLASS - 1; c >= 0; c--)
        if (m->memh[c])
            ucp_mem_unmap(xp->ctx[c], m->memh[c]);
    sl_list_del(&m->link);
    free(m);
    *mem_p = NULL;
}

/* Blob: magic, version, flags (u32 each), base, len (u64 each), then per
 * data class a 32-bit length and the packed UCX rkey (length 0 when staged). */
sl_status_t sl_xport_mem_pack(sl_xport_t *xp, const sl_xport_mem_t *mem, void **buf_p,
                              size_t *len_p)
{
    void *packed[SL_XPORT_NCLASS] = {NULL};
    size_t plen[SL_XPORT_NCLASS] = {0}, total = 28;
    sl_status_t ret = SL_OK;

    if (!xp || !mem || !buf_p || !len_p)
        return SL_ERR_INVALID;
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        if (!mem->staged) {
            ucs_status_t st = ucp_rkey_pack(xp->ctx[c], mem->memh[c], &packed[c], &plen[c]);
            if (st != UCS_OK) {
                SL_ERROR("xport: ucp_rkey_pack: %s", ucs_status_string(st));
                ret = SL_ERR_IO;
                goto out_release;
            }
        }
        total += 4 + plen[c];
    }
    uint8_t *b = malloc(total);
    if (!b) {
        ret = SL_ERR_NOMEM;
        goto out_release;
    }
    uint32_t h[3] = {S_RKEY_MAGIC, SL_XPORT_WIRE_VERSION, mem->staged ? S_RKEY_FLAG_STAGED : 0};
    uint64_t r[2] = {(uint64_t)(uintptr_t)mem->base, mem->len};
    memcpy(b, h, 12);
    memcpy(b + 12, r, 16);
    size_t off = 28;
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        uint32_t l = (uint32_t)plen[c];
        memcpy(b + off, &l, 4);
        if (l)
            memcpy(b + off + 4, packed[c], l);
        off += 4 + l;
    }
    *buf_p = b;
    *len_p = total;
out_release:
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (packed[c])
            ucp_rkey_buffer_release(packed[c]);
    return ret;
}

sl_status_t sl_xport_rkey_import(sl_xport_t *xp, sl_xport_peer_t *peer, const void *buf, size_t len,
                                 uint32_t *id_p)
{
    const uint8_t *p = buf;
    uint32_t h[3];
    uint64_t r[2];
    size_t off = 28;

    if (!xp || !peer || !buf || !id_p)
        return SL_ERR_INVALID;
    if (len < 28)
        return SL_ERR_MSG_MALFORMED;
    memcpy(h, p, 12);
    memcpy(r, p + 12, 16);
    if (h[0] != S_RKEY_MAGIC || (h[2] & ~S_RKEY_FLAG_STAGED) || r[1] == 0 || r[0] + r[1] < r[0])
        return SL_ERR_MSG_MALFORMED;
    if (h[1] != SL_XPORT_WIRE_VERSION)
        return SL_ERR_MSG_VERSION;
    if (peer->failed)
        return SL_ERR_PEER_LOST;
    if (peer->nrkeys == peer->cap_rkeys) {
        uint32_t cap = peer->cap_rkeys ? peer->cap_rkeys * 2 : 8;
        sl_xport_rkey_t **n = realloc(peer->rkeys, cap * sizeof(*n));
        if (!n)
            return SL_ERR_NOMEM;
        peer->rkeys = n;
        peer->cap_rkeys = cap;
    }
    sl_xport_rkey_t *rk = calloc(1, sizeof(*rk));
    if (!rk)
        return SL_ERR_NOMEM;
    rk->base = r[0];
    rk->len = r[1];
    rk->staged = h[2] & S_RKEY_FLAG_STAGED;
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        uint32_t l;
        if (len - off < 4)
            goto err_malformed;
        memcpy(&l, p + off, 4);
        if (len - off - 4 < l || (l == 0) != rk->staged)
            goto err_malformed;
        if (l) {
            ucs_status_t st = ucp_ep_rkey_unpack(peer->ep[c], p + off + 4, &rk->rkey[c]);
            if (st != UCS_OK) {
                SL_WARN("xport: ucp_ep_rkey_unpack: %s", ucs_status_string(st));
                goto err_malformed;
            }
        }
        off += 4 + l;
    }
    if (off != len)
        goto err_malformed;
    peer->rkeys[peer->nrkeys] = rk;
    *id_p = peer->nrkeys++;
    return SL_OK;

err_malformed:
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (rk->rkey[c])
            ucp_rkey_destroy(rk->rkey[c]);
    free(rk);
    return SL_ERR_MSG_MALFORMED;
}

void sl_xport_rkeys_release(sl_xport_peer_t *peer)
{
    for (uint32_t i = 0; i < peer->nrkeys; i++) {
        for (int c = 0; c < SL_XPORT_NCLASS; c++)
            if (peer->rkeys[i]->rkey[c])
                ucp_rkey_destroy(peer->rkeys[i]->rkey[c]);
        free(peer->rkeys[i]);
    }
    free(peer->rkeys);
    peer->rkeys = NULL;
    peer->nrkeys = peer->cap_rkeys = 0;
}
