/*
 * Device staging: moving CUDA memory with a UCX that cannot take device
 * pointers (Debian's UCX is built without CUDA).
 *
 * The idea. A staged put is a pipeline of chunks (stage-chunk-kib, 1 to
 * 4 MiB). The sender copies a chunk out of the device into a slot of its
 * pinned transmit ring (the copy step, one function pointer), sends it at
 * once as a UCX active message (zero-copy rendezvous from the registered
 * slot), and copies the next chunk while UCX moves the previous one. The
 * receiver takes each chunk into a slot of its pinned receive ring and
 * copies it into the device. Credits are the rings' slots: the sender posts
 * a chunk only while it holds a free transmit slot (freed when UCX completes
 * the send), and the receiver fetches a rendezvous chunk only into a free
 * receive slot, leaving the others parked inside UCX until one frees, so
 * neither ring can overflow and a slow receiver back-pressures the sender.
 * Every chunk header carries the transfer key, the chunk count and the
 * notification, and the receiver delivers the notification once every
 * chunk of the transfer has been copied in: data, then notification.
 *
 * Device pointers are never handed to UCX here: only ring slots and host
 * regions are.
 *
 * Alternatives rejected: RMA puts into a remote ring with explicit credit
 * messages (needs a ring address exchange per peer pair and a second
 * message per chunk; rendezvous active messages carry the same back-pressure
 * for free); staging whole transfers (no overlap between copy and wire, and
 * bounce memory as large as the largest transfer).
 */
#include "transport/sl_xport_int.h"

#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"

#define S_CHUNK_MAGIC 0x534c5843u /* "SLXC" */

/* Wire header of one staged chunk, followed by notif_len bytes. */
typedef struct s_chunk_hdr {
    uint32_t magic;     /* S_CHUNK_MAGIC */
    uint32_t nchunks;   /* chunks in the whole transfer */
    uint64_t key;       /* transfer key, unique per sending engine */
    uint64_t dst;       /* destination address in the receiver's region */
    uint32_t notif_len; /* notification bytes following the header */
    uint32_t reserved;  /* zero */
} s_chunk_hdr_t;

/* A staged transfer being received. */
typedef struct s_rx_xfer {
    sl_list_t link;                          /* in stage->rx_xfers */
    uint64_t key;                            /* transfer key */
    uint32_t nchunks;                        /* chunks expected */
    uint32_t landed;                         /* chunks copied in (or failed) */
    bool failed;                             /* a chunk failed: no notification */
    size_t notif_len;                        /* notification length */
    uint8_t notif[SL_XPORT_STAGE_NOTIF_MAX]; /* notification to deliver */
} s_rx_xfer_t;

/* One rendezvous chunk on the receive side. */
typedef struct s_rx_chunk {
    sl_list_t link;       /* in stage->rx_pending while waiting for a slot */
    sl_xport_t *xp;       /* engine */
    sl_xport_class_t cls; /* worker it arrived on */
    void *desc;           /* UCX data descriptor */
    size_t len;           /* bytes */
    uint8_t *dst;         /* destination */
    sl_xport_mem_t *mem;  /* destination region */
    s_rx_xfer_t *xfer;    /* transfer it belongs to */
    int slot;             /* receive slot, or -1 when received in place */
} s_rx_chunk_t;

struct sl_xport_stage {
    size_t slot_size;                   /* bytes per slot */
    int nslots;                         /* slots per ring */
    uint8_t *tx;                        /* transmit ring */
    uint8_t *rx;                        /* receive ring */
    ucp_mem_h tx_memh[SL_XPORT_NCLASS]; /* transmit ring registration per data class */
    int *tx_free;                       /* stack of free transmit slots */
    int tx_nfree;                       /* its depth */
    int *rx_free;                       /* stack of free receive slots */
    int rx_nfree;                       /* its depth */
    sl_list_t rx_pending;               /* chunks parked in UCX until a slot frees */
    sl_list_t rx_xfers;                 /* transfers being received */
};

sl_status_t sl_xport_stage_init(sl_xport_t *xp)
{
    if (xp->stage)
        return SL_OK;
    sl_xport_stage_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ERR_NOMEM;
    s->slot_size = (size_t)xp->cfg.stage_chunk_kib << 10;
    s->nslots = xp->cfg.stage_slots;
    sl_list_init(&s->rx_pending);
    sl_list_init(&s->rx_xfers);
    size_t ring = s->slot_size * (size_t)s->nslots;
    s->tx_free = calloc((size_t)s->nslots, sizeof(int));
    s->rx_free = calloc((size_t)s->nslots, sizeof(int));
    if (!s->tx_free || !s->rx_free || posix_memalign((void **)&s->tx, 4096, ring) ||
        posix_memalign((void **)&s->rx, 4096, ring)) {
        xp->stage = s;
        sl_xport_stage_fini(xp);
        return SL_ERR_NOMEM;
    }
    xp->stage = s;
    sl_xport_cuda_pin(s->tx, ring);
    sl_xport_cuda_pin(s->rx, ring);
    for (int i = 0; i < s->nslots; i++) {
        s->tx_free[s->tx_nfree++] = i;
        s->rx_free[s->rx_nfree++] = i;
    }
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        ucp_mem_map_params_t mp;
        memset(&mp, 0, sizeof(mp));
        mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
        mp.address = s->tx;
        mp.length = ring;
        ucs_status_t st = ucp_mem_map(xp->ctx[c], &mp, &s->tx_memh[c]);
        if (st != UCS_OK) {
            SL_ERROR("xport: ucp_mem_map(staging ring): %s", ucs_status_string(st));
            s->tx_memh[c] = NULL;
            sl_xport_stage_fini(xp);
            return SL_ERR_IO;
        }
    }
    SL_DEBUG("xport: staging rings of %d x %zu KiB", s->nslots, s->slot_size >> 10);
    return SL_OK;
}

void sl_xport_stage_fini(sl_xport_t *xp)
{
    sl_xport_stage_t *s = xp->stage;
    sl_list_t *e;
    if (!s)
        return;
    while ((e = sl_list_pop_front(&s->rx_pending))) {
        s_rx_chunk_t *ch = SL_CONTAINER_OF(e, s_rx_chunk_t, link);
        ucp_am_data_release(xp->worker[ch->cls], ch->desc);
        free(ch);
    }
    while ((e = sl_list_pop_front(&s->rx_xfers)))
        free(SL_CONTAINER_OF(e, s_rx_xfer_t, link));
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (s->tx_memh[c])
            ucp_mem_unmap(xp->ctx[c], s->tx_memh[c]);
    if (s->tx) {
        sl_xport_cuda_unpin(s->tx);
        free(s->tx);
    }
    if (s->rx) {
        sl_xport_cuda_unpin(s->rx);
        free(s->rx);
    }
    free(s->tx_free);
    free(s->rx_free);
    free(s);
    xp->stage = NULL;
}

uint32_t sl_xport_stage_count(const sl_xport_t *xp, const sl_xport_req_t *req)
{
    uint64_t chunk = (uint64_t)xp->cfg.stage_chunk_kib << 10, n = 0;
    for (size_t i = 0; i < req->nblocks; i++)
        n += (req->blocks[i].len + chunk - 1) / chunk;
    return (uint32_t)n;
}

/* ---- sender ----------------------------------------------------------- */

static void s_send_done(sl_xport_op_ctx_t *o, ucs_status_t st)
{
    sl_xport_t *xp = o->req->xp;
    if (o->slot >= 0)
        xp->stage->tx_free[xp->stage->tx_nfree++] = o->slot;
    sl_xport_op_done(o, st);
}

static void s_send_cb(void *request, ucs_status_t st, void *user_data)
{
    s_send_done(user_data, st);
    ucp_request_free(request);
}

sl_status_t sl_xport_stage_issue(sl_xport_t *xp, sl_xport_req_t *req, uint64_t *bytes_p)
{
    sl_xport_stage_t *s = xp->stage;
    uint64_t chunk = (uint64_t)xp->cfg.stage_chunk_kib << 10;
    const sl_xport_block_t *b = &req->blocks[req->cur_block];
    uint64_t n = b->len - req->cur_off;
    const uint8_t *src = (const uint8_t *)req->local->base + b->local_off + req->cur_off;
    const void *buf = src;
    ucp_mem_h memh = req->local->memh[req->cls];
    int slot = -1;

    if (n > chunk)
        n = chunk;
    if (req->local->staged) {
        if (!s || s->tx_nfree == 0)
            return SL_ERR_AGAIN;
        slot = s->tx_free[--s->tx_nfree];
        uint8_t *dst = s->tx + (size_t)slot * s->slot_size;
        sl_status_t cst = xp->cfg.copy(xp->cfg.copy_ctx, dst, src, n);
        if (cst != SL_OK) {
            s->tx_free[s->tx_nfree++] = slot;
            SL_ERROR("xport: staging copy-out of %llu bytes failed: %s", (unsigned long long)n,
                     sl_status_str(cst));
            return cst;
        }
        buf = dst;
        memh = s->tx_memh[req->cls];
    }
    sl_xport_op_ctx_t *o = sl_xport_op_get(xp, req, n);
    if (!o) {
        if (slot >= 0)
            s->tx_free[s->tx_nfree++] = slot;
        return SL_ERR_NOMEM;
    }
    o->slot = slot;
    s_chunk_hdr_t h = {S_CHUNK_MAGIC,
                       req->nchunks,
                       req->key,
                       req->remote->base + b->remote_off + req->cur_off,
                       (uint32_t)req->notif_len,
                       0};
    memcpy(o->hdr, &h, sizeof(h));
    if (req->notif_len)
        memcpy(o->hdr + sizeof(h), req->notif, req->notif_len);

    ucp_request_param_t prm;
    memset(&prm, 0, sizeof(prm));
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                       UCP_OP_ATTR_FIELD_MEMH | UCP_OP_ATTR_FIELD_FLAGS;
    prm.cb.send = s_send_cb;
    prm.user_data = o;
    prm.memh = memh;
    prm.flags = UCP_AM_SEND_FLAG_REPLY;
    req->outstanding++;
    sl_xport_sched_posted(&xp->sched, n);
    ucs_status_ptr_t sp = ucp_am_send_nbx(req->peer->ep[req->cls], SL_XPORT_AM_STAGE, o->hdr,
                                          sizeof(h) + req->notif_len, buf, n, &prm);
    req->cur_off += n;
    if (req->cur_off == b->len) {
        req->cur_block++;
        req->cur_off = 0;
    }
    if (sp == NULL)
        s_send_done(o, UCS_OK);
    else if (UCS_PTR_IS_ERR(sp))
        s_send_done(o, UCS_PTR_STATUS(sp));
    *bytes_p = n;
    return SL_OK;
}

/* ---- receiver --------------------------------------------------------- */

static s_rx_xfer_t *s_rx_xfer(sl_xport_stage_t *s, const s_chunk_hdr_t *h, const void *notif)
{
    sl_list_t *pos;
    sl_list_for_each(pos, &s->rx_xfers)
    {
        s_rx_xfer_t *x = SL_CONTAINER_OF(pos, s_rx_xfer_t, link);
        if (x->key == h->key)
            return x;
    }
    s_rx_xfer_t *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->key = h->key;
    x->nchunks = h->nchunks;
    x->notif_len = h->notif_len;
    memcpy(x->notif, notif, h->notif_len);
    sl_list_push_back(&s->rx_xfers, &x->link);
    return x;
}

/* One chunk of x is in place (or failed); deliver the notification after the last. */
static void s_rx_landed(sl_xport_t *xp, s_rx_xfer_t *x, size_t len, bool ok)
{
    if (ok)
        xp->stats.staged_bytes += len;
    else
        x->failed = true;
    if (++x->landed < x->nchunks)
        return;
    sl_list_del(&x->link);
    if (!x->failed && x->notif_len)
        sl_xport_deliver_notif(xp, x->notif, x->notif_len);
    free(x);
}

static sl_status_t s_copy_in(sl_xport_t *xp, sl_xport_mem_t *m, void *dst, const void *src,
                             size_t len)
{
    if (!m->staged) {
        memcpy(dst, src, len);
        return SL_OK;
    }
    sl_status_t st = xp->cfg.copy(xp->cfg.copy_ctx, dst, src, len);
    if (st != SL_OK)
        SL_ERROR("xport: staging copy-in of %zu bytes failed: %s", len, sl_status_str(st));
    return st;
}

static void s_rx_start(sl_xport_t *xp, s_rx_chunk_t *ch);

static void s_rx_done(s_rx_chunk_t *ch, ucs_status_t st)
{
    sl_xport_t *xp = ch->xp;
    sl_xport_stage_t *s = xp->stage;
    bool ok = st == UCS_OK;
    if (!ok)
        SL_WARN("xport: receiving a staged chunk failed: %s", ucs_status_string(st));
    if (ch->slot >= 0) {
        if (ok)
            ok = s_copy_in(xp, ch->mem, ch->dst, s->rx + (size_t)ch->slot * s->slot_size,
                           ch->len) == SL_OK;
        s->rx_free[s->rx_nfree++] = ch->slot;
    }
    s_rx_landed(xp, ch->xfer, ch->len, ok);
    free(ch);
    /* the freed slot goes to the oldest parked chunk */
    sl_list_t *e;
    while (s->rx_nfree > 0 && (e = sl_list_pop_front(&s->rx_pending)))
        s_rx_start(xp, SL_CONTAINER_OF(e, s_rx_chunk_t, link));
}

static void s_recv_cb(void *request, ucs_status_t st, size_t length, void *user_data)
{
    s_rx_done(user_data, st);
    ucp_request_free(request);
}

/* Fetch a rendezvous chunk into its slot (or in place for a host region). */
static void s_rx_start(sl_xport_t *xp, s_rx_chunk_t *ch)
{
    sl_xport_stage_t *s = xp->stage;
    void *buf = ch->dst;
    ucp_request_param_t prm;

    memset(&prm, 0, sizeof(prm));
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    prm.cb.recv_am = s_recv_cb;
    prm.user_data = ch;
    if (ch->mem->staged) {
        ch->slot = s->rx_free[--s->rx_nfree];
        buf = s->rx + (size_t)ch->slot * s->slot_size;
    } else {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
        prm.memh = ch->mem->memh[ch->cls];
    }
    ucs_status_ptr_t sp = ucp_am_recv_data_nbx(xp->worker[ch->cls], ch->desc, buf, ch->len, &prm);
    if (sp == NULL)
        s_rx_done(ch, UCS_OK);
    else if (UCS_PTR_IS_ERR(sp))
        s_rx_done(ch, UCS_PTR_STATUS(sp));
}

ucs_status_t sl_xport_stage_am_cb(void *arg, const void *header, size_t header_len, void *data,
                                  size_t len, const ucp_am_recv_param_t *param)
{
    sl_xport_am_arg_t *a = arg;
    sl_xport_t *xp = a->xp;
    bool rndv = param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV;
    s_chunk_hdr_t h;
    sl_xport_mem_t *m;
    s_rx_xfer_t *x;

    if (header_len < sizeof(h))
        goto drop;
    memcpy(&h, header, sizeof(h));
    if (h.magic != S_CHUNK_MAGIC || h.nchunks == 0 || h.notif_len > SL_XPORT_STAGE_NOTIF_MAX ||
        header_len != sizeof(h) + h.notif_len || h.reserved != 0) {
        SL_WARN("xport: dropping a malformed staged chunk header (%zu bytes)", header_len);
        goto drop;
    }
    /* the destination must lie inside memory this engine registered */
    if (len == 0 || !(m = sl_xport_mem_find(xp, h.dst, len))) {
        SL_WARN("xport: dropping a staged chunk of %zu bytes for unregistered memory", len);
        goto drop;
    }
    if (!xp->stage && sl_xport_stage_init(xp) != SL_OK)
        goto drop;
    if (m->staged && len > xp->stage->slot_size) {
        SL_WARN("xport: dropping a staged chunk of %zu bytes: slots are %zu bytes", len,
                xp->stage->slot_size);
        goto drop;
    }
    if (!(x = s_rx_xfer(xp->stage, &h, (const uint8_t *)header + sizeof(h))))
        goto drop;
    if (!rndv) {
        bool ok = s_copy_in(xp, m, (void *)(uintptr_t)h.dst, data, len) == SL_OK;
        s_rx_landed(xp, x, len, ok);
        return UCS_OK;
    }
    s_rx_chunk_t *ch = calloc(1, sizeof(*ch));
    if (!ch) {
        s_rx_landed(xp, x, len, false);
        goto drop;
    }
    ch->xp = xp;
    ch->cls = a->cls;
    ch->desc = data;
    ch->len = len;
    ch->dst = (uint8_t *)(uintptr_t)h.dst;
    ch->mem = m;
    ch->xfer = x;
    ch->slot = -1;
    sl_list_init(&ch->link);
    if (m->staged && (xp->stage->rx_nfree == 0 || !sl_list_empty(&xp->stage->rx_pending)))
        sl_list_push_back(&xp->stage->rx_pending, &ch->link);
    else
        s_rx_start(xp, ch);
    return UCS_INPROGRESS;

drop:
    if (rndv)
        ucp_am_data_release(xp->worker[a->cls], data);
    return UCS_OK;
}
