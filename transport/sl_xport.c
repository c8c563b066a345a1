/*
 * The transport engine: UCX (ucp) contexts, peers, transfers of block lists,
 * and the posting loop that puts the class scheduler in front of UCX.
 *
 * The idea. Every transfer is cut into chunks (chunk-kib) and only the
 * posting loop (s_schedule) hands chunks to UCX, in the order the class
 * scheduler picks (sl_xport_sched.c: stride scheduling between critical and
 * background, a token bucket on background, the in-flight cap), so with
 * little queued inside UCX the order picked is the order the wire sees.
 * Control traffic (notifications) is never queued: it goes out at once,
 * which is strict priority. Since the scheduler counts bytes whatever their
 * direction, gets are shaped like puts. After the last chunk, the endpoint
 * is flushed and only then the notification is sent, so it reaches the peer
 * after the data has landed. This file reads the clock and makes the UCX
 * calls; the scheduler decides, and is tested alone on a simulated clock.
 *
 * Each class has its own UCP context and worker, so each can carry its own
 * InfiniBand service level and RoCE traffic class (ucp_config_modify), and
 * the engine address is the three worker addresses together. Every context
 * is pinned to the same NICs (UCX_NET_DEVICES, chosen near the engine's GPU
 * by sl_xport_nic.c), and the TCP sockets a class's worker makes are marked
 * with the class's TOS byte (sl_xport_tcpmark.c): around the worker's
 * creation and each connect, and by a scan from progress on a timer.
 *
 * Alternatives rejected: handing whole transfers to UCX and relying on
 * per-endpoint queues (UCX serves its queues in its own order, so a large
 * background copy would sit in front of KV blocks); one context for all
 * classes (no per-class fabric marking).
 */
#include "transport/sl_xport_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "transport/sl_xport_nic.h"

#define S_ADDR_MAGIC 0x534c5841u /* "SLXA" */
/* Requests kept for reuse. */
#define S_REQ_POOL_MAX 1024
/* Link probe: transfers it keeps posted. */
#define S_PROBE_DEPTH 16

static const sl_cfg_field_t s_cfg_table[] = {
    SL_CFG_RANGE(sl_xport_cfg_t, chunk_kib, "xport-chunk-kib", "256", SL_CFG_INT, 4, 65536,
                 "transfers are cut into chunks of this many KiB so classes interleave"),
    SL_CFG_RANGE(sl_xport_cfg_t, inflight_kib, "xport-inflight-kib", "2048", SL_CFG_INT, 4, 1048576,
                 "cap on KiB posted to UCX and not yet completed"),
    SL_CFG_RANGE(sl_xport_cfg_t, bg_share, "xport-bg-share", "0.2", SL_CFG_DOUBLE, 0.01, 1,
                 "background's cap: its share of the link capacity (token bucket)"),
    SL_CFG_RANGE(sl_xport_cfg_t, bg_floor, "xport-bg-floor", "0.05", SL_CFG_DOUBLE, 0.001, 1,
                 "background's share of the bytes while critical wants the whole link (at most "
                 "xport-bg-share; equal to it: an 80:20 split)"),
    SL_CFG_RANGE(sl_xport_cfg_t, link_mbps, "xport-link-mbps", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "link capacity in MB/s for the background bucket (0: measure or unset)"),
    SL_CFG_RANGE(sl_xport_cfg_t, probe_window_ms, "xport-probe-window-ms", "250", SL_CFG_INT, 10,
                 60000, "link probe window: the measured capacity is the median window's rate"),
    SL_CFG_RANGE(sl_xport_cfg_t, stage_chunk_kib, "xport-stage-chunk-kib", "2048", SL_CFG_INT, 4,
                 4096, "device staging chunk in KiB (1 to 4 MiB in production)"),
    SL_CFG_RANGE(sl_xport_cfg_t, stage_slots, "xport-stage-slots", "4", SL_CFG_INT, 1, 64,
                 "bounce-buffer slots per staging ring (credits)"),
    SL_CFG_RANGE(sl_xport_cfg_t, ib_sl[SL_XPORT_CONTROL], "xport-sl-control", "-1", SL_CFG_INT, -1,
                 15, "InfiniBand service level of control traffic (-1: UCX default)"),
    SL_CFG_RANGE(sl_xport_cfg_t, ib_sl[SL_XPORT_CRITICAL], "xport-sl-critical", "-1", SL_CFG_INT,
                 -1, 15, "InfiniBand service level of critical traffic"),
    SL_CFG_RANGE(sl_xport_cfg_t, ib_sl[SL_XPORT_BACKGROUND], "xport-sl-background", "-1",
                 SL_CFG_INT, -1, 15, "InfiniBand service level of background traffic"),
    SL_CFG_RANGE(sl_xport_cfg_t, roce_tc[SL_XPORT_CONTROL], "xport-tc-control", "-1", SL_CFG_INT,
                 -1, 255, "RoCE traffic class (DSCP << 2) of control traffic"),
    SL_CFG_RANGE(sl_xport_cfg_t, roce_tc[SL_XPORT_CRITICAL], "xport-tc-critical", "-1", SL_CFG_INT,
                 -1, 255, "RoCE traffic class of critical traffic"),
    SL_CFG_RANGE(sl_xport_cfg_t, roce_tc[SL_XPORT_BACKGROUND], "xport-tc-background", "-1",
                 SL_CFG_INT, -1, 255, "RoCE traffic class of background traffic"),
    SL_CFG_RANGE(sl_xport_cfg_t, tos[SL_XPORT_CONTROL], "xport-tos-control", "184", SL_CFG_INT, 0,
                 255, "IP TOS of control sockets (184 = DSCP EF)"),
    SL_CFG_RANGE(sl_xport_cfg_t, tos[SL_XPORT_CRITICAL], "xport-tos-critical", "104", SL_CFG_INT, 0,
                 255, "IP TOS of critical traffic on TCP (104 = DSCP AF31)"),
    SL_CFG_RANGE(sl_xport_cfg_t, tos[SL_XPORT_BACKGROUND], "xport-tos-background", "32", SL_CFG_INT,
                 0, 255, "IP TOS of background traffic on TCP (32 = DSCP CS1)"),
    SL_CFG_RANGE(sl_xport_cfg_t, keepalive_ms, "xport-keepalive-ms", "1000", SL_CFG_INT, 10,
                 3600000, "UCX keepalive interval: how soon a silent dead peer is noticed"),
    SL_CFG_RANGE(sl_xport_cfg_t, close_flush_ms, "xport-close-flush-ms", "1000", SL_CFG_INT, 0,
                 60000,
                 "a disconnect waits this long at most for a live peer's connection handshake "
                 "still under way (0 = never)"),
    SL_CFG_FIELD(sl_xport_cfg_t, posix_peer_failure, "xport-posix-peer-failure", "true",
                 SL_CFG_BOOL, "let shared memory report peer failure (UCX_POSIX_ERROR_HANDLING)"),
    SL_CFG_FIELD(sl_xport_cfg_t, direct_copy, "xport-direct-copy", "true", SL_CFG_BOOL,
                 "on shared memory, copy chunks into the peer's mapped region with streaming "
                 "stores instead of UCX's put (sl_xport_copy.c)"),
    SL_CFG_FIELD(sl_xport_cfg_t, net_devices, "xport-net-devices", "auto", SL_CFG_STR,
                 "UCX_NET_DEVICES of the engine: auto (the NICs nearest xport-gpu-pci on the PCIe "
                 "tree; UCX's default without a GPU), empty (UCX's default) or a UCX device list"),
    SL_CFG_FIELD(sl_xport_cfg_t, gpu_pci, "xport-gpu-pci", "", SL_CFG_STR,
                 "PCI bus id of the GPU the engine serves, for xport-net-devices=auto (empty: "
                 "none)"),
    SL_CFG_FIELD(sl_xport_cfg_t, sysfs, "xport-sysfs", "/sys", SL_CFG_STR,
                 "sysfs root the NIC choice reads"),
    SL_CFG_RANGE(sl_xport_cfg_t, mark_interval_ms, "xport-mark-interval-ms", "100", SL_CFG_INT, 0,
                 60000,
                 "how often UCX's new TCP sockets (accepted from peers) are looked for and marked "
                 "with their class's TOS (0: never)"),
    SL_CFG_FIELD(sl_xport_cfg_t, tcp_congestion, "xport-tcp-congestion", "cubic", SL_CFG_STR,
                 "TCP congestion control set on UCX's sockets as they are marked (empty: the "
                 "host's default; BBR's 10-second RTT probe stalls a KV transfer)"),
    SL_CFG_END,
};

const sl_cfg_field_t *const sl_xport_cfg_table = s_cfg_table;

static const char *const s_class_name[SL_XPORT_NCLASS] = {"control", "critical", "background"};

sl_status_t sl_xport_cfg_defaults(sl_xport_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    return sl_cfg_defaults(sl_xport_cfg_table, cfg);
}

int sl_xport_class_tos(const sl_xport_cfg_t *cfg, sl_xport_class_t cls)
{
    if (!cfg || (unsigned)cls >= SL_XPORT_NCLASS)
        return -1;
    return cfg->tos[cls];
}

sl_status_t sl_xport_status(ucs_status_t st)
{
    switch (st) {
    case UCS_OK:
        return SL_OK;
    case UCS_ERR_NO_MEMORY:
        return SL_ERR_NOMEM;
    case UCS_ERR_CANCELED:
        return SL_ERR_CANCELED;
    case UCS_ERR_UNSUPPORTED:
        return SL_ERR_UNSUPPORTED;
    case UCS_ERR_TIMED_OUT:
        return SL_ERR_TIMEOUT;
    case UCS_ERR_INVALID_PARAM:
        return SL_ERR_INVALID;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_IO_ERROR:
        return SL_ERR_PEER_LOST;
    default:
        return SL_ERR_LINK;
    }
    return SL_ERR_LINK;
}

/* ---- small helpers --------------------------------------------------- */

sl_xport_op_ctx_t *sl_xport_op_get(sl_xport_t *xp, sl_xport_req_t *req, uint64_t bytes)
{
    sl_xport_op_ctx_t *o = xp->op_free;
    if (o)
        xp->op_free = o->next;
    else if (!(o = malloc(sizeof(*o))))
        return NULL;
    o->req = req;
    o->bytes = bytes;
    o->slot = -1;
    o->next = NULL;
    return o;
}

static void s_op_put(sl_xport_t *xp, sl_xport_op_ctx_t *o)
{
    o->next = xp->op_free;
    xp->op_free = o;
}

void sl_xport_account(sl_xport_t *xp, sl_xport_class_t cls, uint64_t bytes, bool was_inflight)
{
    xp->stats.bytes[cls] += bytes;
    xp->stats.chunks[cls]++;
    if (was_inflight)
        sl_xport_sched_completed(&xp->sched, bytes);
}

void sl_xport_deliver_notif(sl_xport_t *xp, const void *data, size_t len)
{
    xp->stats.notifs_rx++;
    if (xp->notif_cb)
        xp->notif_cb(xp->notif_arg, data, len);
}

/* ---- request life ----------------------------------------------------- */

static void s_req_advance(sl_xport_req_t *req);

static void s_req_fail(sl_xport_req_t *req, sl_status_t st)
{
    if (req->status == SL_OK)
        req->status = st;
}

/* The request leaves its class queue (all chunks posted, or failed). */
static void s_req_unqueue(sl_xport_req_t *req)
{
    if (req->state == SL_XPORT_REQ_ISSUE) {
        sl_list_del(&req->link);
        req->state = SL_XPORT_REQ_DRAIN;
    }
}

/* A flush or a notification send of req is now inside UCX. */
static void s_wait_begin(sl_xport_req_t *req)
{
    req->ucx_wait = true;
    sl_list_push_back(&req->xp->waiting, &req->link);
}

/* UCX is done with req's flush or notification. False when req had been
 * orphaned (reported failed while UCX still held it): then it is released
 * here, or by s_run_done if its callback has not run yet. */
static bool s_wait_end(sl_xport_req_t *req)
{
    req->ucx_wait = false;
    if (req->orphan) {
        req->orphan = false;
        if (req->reported) {
            sl_list_del(&req->link);
            free(req);
        }
        return false;
    }
    sl_list_del(&req->link);
    return true;
}

static void s_flush_cb(void *request, ucs_status_t st, void *user_data)
{
    sl_xport_req_t *req = user_data;
    ucp_request_free(request);
    if (!s_wait_end(req))
        return;
    if (st != UCS_OK)
        s_req_fail(req, sl_xport_status(st));
    req->state = SL_XPORT_REQ_NOTIFY;
    s_req_advance(req);
}

static void s_notif_cb(void *request, ucs_status_t st, void *user_data)
{
    sl_xport_req_t *req = user_data;
    ucp_request_free(request);
    if (!s_wait_end(req))
        return;
    if (st != UCS_OK)
        s_req_fail(req, sl_xport_status(st));
    req->notif_len = 0;
    s_req_advance(req);
}

static void s_req_finish(sl_xport_req_t *req)
{
    req->state = SL_XPORT_REQ_DONE;
    sl_list_push_back(&req->xp->done, &req->link);
}

/* Advance a request whose chunks are all posted, one state at a time. */
static void s_req_advance(sl_xport_req_t *req)
{
    ucp_request_param_t prm;
    ucs_status_ptr_t sp;

    for (;;) {
        switch (req->state) {
        case SL_XPORT_REQ_ISSUE:
        case SL_XPORT_REQ_DONE:
            return;
        case SL_XPORT_REQ_DRAIN:
            if (req->outstanding)
                return;
            if (req->peer->failed)
                s_req_fail(req, SL_ERR_PEER_LOST);
            if (req->status != SL_OK || req->staged) {
                /* a staged transfer carries its notification with its chunks */
                s_req_finish(req);
                return;
            }
            memset(&prm, 0, sizeof(prm));
            prm.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
            prm.cb.send = s_flush_cb;
            prm.user_data = req;
            req->state = SL_XPORT_REQ_FLUSH;
            s_wait_begin(req);
            sp = ucp_ep_flush_nbx(req->peer->ep[req->cls], &prm);
            if (!UCS_PTR_IS_PTR(sp))
                s_wait_end(req);
            if (sp == NULL) {
                req->state = SL_XPORT_REQ_NOTIFY;
                continue;
            }
            if (UCS_PTR_IS_ERR(sp)) {
                s_req_fail(req, sl_xport_status(UCS_PTR_STATUS(sp)));
                s_req_finish(req);
            }
            return;
        case SL_XPORT_REQ_FLUSH:
            return;
        case SL_XPORT_REQ_NOTIFY:
            if (req->ucx_wait)
                return;
            if (req->peer->failed)
                s_req_fail(req, SL_ERR_PEER_LOST);
            if (req->status != SL_OK || req->notif_len == 0) {
                s_req_finish(req);
                return;
            }
            memset(&prm, 0, sizeof(prm));
            prm.op_attr_mask =
                UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
            prm.flags = UCP_AM_SEND_FLAG_EAGER;
            prm.cb.send = s_notif_cb;
            prm.user_data = req;
            s_wait_begin(req);
            sp = ucp_am_send_nbx(req->peer->ep[SL_XPORT_CONTROL], SL_XPORT_AM_NOTIF, NULL, 0,
                                 req->notif, req->notif_len, &prm);
            if (!UCS_PTR_IS_PTR(sp))
                s_wait_end(req);
            if (sp == NULL) {
                req->notif_len = 0;
                continue;
            }
            if (UCS_PTR_IS_ERR(sp)) {
                s_req_fail(req, sl_xport_status(UCS_PTR_STATUS(sp)));
                s_req_finish(req);
            }
            return;
        }
    }
}

void sl_xport_op_done(sl_xport_op_ctx_t *octx, ucs_status_t st)
{
    sl_xport_req_t *req = octx->req;
    sl_xport_t *xp = req->xp;

    sl_xport_account(xp, req->cls, st == UCS_OK ? octx->bytes : 0, false);
    sl_xport_sched_completed(&xp->sched, octx->bytes);
    if (st == UCS_OK) {
        if (req->staged)
            xp->stats.staged_bytes += octx->bytes;
    } else {
        s_req_fail(req, sl_xport_status(st));
        s_req_unqueue(req);
    }
    s_op_put(xp, octx);
    req->outstanding--;
    s_req_advance(req);
}

static void s_rma_cb(void *request, ucs_status_t st, void *user_data)
{
    sl_xport_op_done(user_data, st);
    ucp_request_free(request);
}

/* ---- posting one chunk ------------------------------------------------ */

/* Post up to one chunk of req's blocks as RMA operations. */
static sl_status_t s_issue_rma(sl_xport_t *xp, sl_xport_req_t *req, uint64_t *bytes_p)
{
    uint64_t budget = xp->sched.chunk, sent = 0;
    ucp_request_param_t prm;
    ucp_ep_h ep = req->peer->ep[req->cls];
    ucp_rkey_h rkey = req->remote->rkey[req->cls];

    while (budget && req->cur_block < req->nblocks) {
        const sl_xport_block_t *b = &req->blocks[req->cur_block];
        uint64_t n = b->len - req->cur_off;
        if (n > budget)
            n = budget;
        uint8_t *laddr = (uint8_t *)req->local->base + b->local_off + req->cur_off;
        uint64_t raddr = req->remote->base + b->remote_off + req->cur_off;
        sl_xport_op_ctx_t *o = sl_xport_op_get(xp, req, n);
        if (!o) {
            if (!sent)
                return SL_ERR_NOMEM;
            break;
        }
        void *rptr = NULL;
        ucs_status_ptr_t sp = NULL; /* NULL: complete now (our copy, or UCX inline) */
        if (xp->cfg.direct_copy && req->local->type == SL_XPORT_MEM_HOST &&
            ucp_rkey_ptr(rkey, raddr, &rptr) == UCS_OK) {
            /* shared memory maps the peer's region here: copy it ourselves */
            if (req->op == SL_XPORT_PUT)
                sl_xport_copy_stream(rptr, laddr, n);
            else
                sl_xport_copy_stream(laddr, rptr, n);
            xp->stats.direct_bytes += n;
        } else {
            memset(&prm, 0, sizeof(prm));
            prm.op_attr_mask =
                UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
            prm.cb.send = s_rma_cb;
            prm.user_data = o;
            prm.memh = req->local->memh[req->cls];
            sp = req->op == SL_XPORT_PUT ? ucp_put_nbx(ep, laddr, n, raddr, rkey, &prm)
                                         : ucp_get_nbx(ep, laddr, n, raddr, rkey, &prm);
        }
        req->outstanding++;
        sl_xport_sched_posted(&xp->sched, n);
        if (sp == NULL)
            sl_xport_op_done(o, UCS_OK);
        else if (UCS_PTR_IS_ERR(sp))
            sl_xport_op_done(o, UCS_PTR_STATUS(sp));
        sent += n;
        budget -= n;
        req->cur_off += n;
        if (req->cur_off == b->len) {
            req->cur_block++;
            req->cur_off = 0;
        }
        if (req->status != SL_OK)
            break;
    }
    *bytes_p = sent;
    return SL_OK;
}

/* ---- the class scheduler (decisions in sl_xport_sched.c) ------------- */

void sl_xport_set_link_bps(sl_xport_t *xp, double bps)
{
    sl_xport_sched_set_link(&xp->sched, bps, sl_clock_now());
    if (bps > 0)
        SL_INFO("xport: link %.0f MB/s, background bucket %.0f MB/s", bps / 1e6,
                xp->sched.bucket_rate / 1e6);
}

sl_status_t sl_xport_bg_take(sl_xport_t *xp, uint64_t bytes)
{
    return sl_xport_sched_bg_take(&xp->sched, bytes, sl_clock_now()) ? SL_OK : SL_ERR_AGAIN;
}

/* The head request of a class, dropping requests of failed peers. */
static sl_xport_req_t *s_head(sl_xport_t *xp, int cls)
{
    while (!sl_list_empty(&xp->queue[cls])) {
        sl_xport_req_t *req = SL_CONTAINER_OF(xp->queue[cls].next, sl_xport_req_t, link);
        if (!req->peer->failed && req->status == SL_OK)
            return req;
        s_req_fail(req, SL_ERR_PEER_LOST);
        s_req_unqueue(req);
        s_req_advance(req);
    }
    return NULL;
}

/* Post chunks while the scheduler picks a class; returns chunks posted. */
static unsigned s_schedule(sl_xport_t *xp)
{
    unsigned posted = 0;
    bool blocked[SL_XPORT_NCLASS] = {false, false, false};
    /* the clock is read only when the bucket needs it: without a link
     * capacity the posting loop reads none */
    sl_time_t now = xp->sched.bucket_rate > 0 ? sl_clock_now() : 0;

    for (;;) {
        bool ready[SL_XPORT_NCLASS] = {false, false, false};
        for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++)
            ready[c] = !blocked[c] && s_head(xp, c);
        int pick = sl_xport_sched_next(&xp->sched, ready, xp->live[SL_XPORT_CRITICAL] > 0, now);
        if (pick < 0)
            break;
        sl_xport_req_t *req = s_head(xp, pick);
        uint64_t bytes = 0;
        sl_status_t st =
            req->staged ? sl_xport_stage_issue(xp, req, &bytes) : s_issue_rma(xp, req, &bytes);
        if (st == SL_ERR_AGAIN) {
            blocked[pick] = true;
            continue;
        }
        if (st != SL_OK)
            s_req_fail(req, st);
        sl_xport_sched_charge(&xp->sched, (sl_xport_class_t)pick, bytes);
        posted++;
        if (req->status != SL_OK || req->cur_block >= req->nblocks) {
            s_req_unqueue(req);
            s_req_advance(req);
        }
    }
    return posted;
}

/* ---- progress --------------------------------------------------------- */

static unsigned s_run_done(sl_xport_t *xp)
{
    unsigned n = 0;
    sl_list_t *e;
    while ((e = sl_list_pop_front(&xp->done))) {
        sl_xport_req_t *req = SL_CONTAINER_OF(e, sl_xport_req_t, link);
        if (req->status == SL_OK)
            xp->stats.xfers_ok++;
        else
            xp->stats.xfers_failed++;
        req->peer->live_reqs--;
        xp->live[req->cls]--;
        if (req->cb)
            req->cb(req->cb_arg, req->status);
        if (req->orphan) {
            /* UCX still holds it: s_wait_end() frees it, or destroy does */
            free(req->blocks);
            req->blocks = NULL;
            req->reported = true;
            sl_list_push_back(&xp->orphans, &req->link);
        } else if (xp->req_pool_len < S_REQ_POOL_MAX) {
            sl_list_push_front(&xp->req_pool, &req->link);
            xp->req_pool_len++;
        } else {
            free(req->blocks);
            free(req);
        }
        n++;
    }
    return n;
}

static void s_fail_all(sl_xport_t *xp, sl_xport_peer_t *only, sl_status_t st);
static void s_ep_close(sl_xport_t *xp, ucp_ep_h ep);

/* Report the peer's transfers whose flush or notification is still inside
 * UCX as failed now: UCX 1.13 does not always complete those on an endpoint
 * that failed or was closed by force. */
static void s_orphan_waiting(sl_xport_t *xp, sl_xport_peer_t *peer, sl_status_t st)
{
    sl_list_t *pos, *tmp;
    sl_list_for_each_safe(pos, tmp, &xp->waiting)
    {
        sl_xport_req_t *req = SL_CONTAINER_OF(pos, sl_xport_req_t, link);
        if (req->peer != peer)
            continue;
        sl_list_del(&req->link);
        req->orphan = true;
        s_req_fail(req, st);
        s_req_finish(req);
    }
}

/* A peer reported failure: fail its queued transfers and close its
 * endpoints, which completes its operations still inside UCX with errors. */
static void s_reap_failed(sl_xport_t *xp)
{
    sl_list_t *pos;
    xp->failed_pending = false;
    sl_list_for_each(pos, &xp->peers)
    {
        sl_xport_peer_t *peer = SL_CONTAINER_OF(pos, sl_xport_peer_t, link);
        if (!peer->failed || peer->closed)
            continue;
        peer->closed = true;
        s_fail_all(xp, peer, SL_ERR_PEER_LOST);
        for (int c = 0; c < SL_XPORT_NCLASS; c++) {
            if (peer->ep[c])
                s_ep_close(xp, peer->ep[c]);
            peer->ep[c] = NULL;
        }
        s_orphan_waiting(xp, peer, SL_ERR_PEER_LOST);
    }
}

unsigned sl_xport_progress(sl_xport_t *xp)
{
    unsigned n = 0;
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        while (ucp_worker_progress(xp->worker[c]))
            n++;
    if (xp->failed_pending)
        s_reap_failed(xp);
    if (xp->cfg.mark_interval_ms && sl_xport_tcpmark_active(&xp->mark)) {
        sl_time_t now = sl_clock_now();
        if (now >= xp->mark_next) {
            sl_xport_tcpmark_scan(&xp->mark); /* sockets accepted from peers since */
            xp->mark_next = now + SL_MS(xp->cfg.mark_interval_ms);
        }
    }
    n += s_schedule(xp);
    n += s_run_done(xp);
    return n;
}

int sl_xport_fd(const sl_xport_t *xp)
{
    return xp->epfd;
}

sl_status_t sl_xport_arm(sl_xport_t *xp)
{
    if (!sl_list_empty(&xp->done))
        return SL_ERR_AGAIN;
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        ucs_status_t st = ucp_worker_arm(xp->worker[c]);
        if (st == UCS_ERR_BUSY)
            return SL_ERR_AGAIN;
        if (st != UCS_OK) {
            SL_ERROR("xport: ucp_worker_arm(%s): %s", s_class_name[c], ucs_status_string(st));
            return SL_ERR_IO;
        }
    }
    return SL_OK;
}

/* ---- notifications ---------------------------------------------------- */

static ucs_status_t s_notif_am_cb(void *arg, const void *header, size_t header_len, void *data,
                                  size_t len, const ucp_am_recv_param_t *param)
{
    sl_xport_t *xp = ((sl_xport_am_arg_t *)arg)->xp;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
        SL_WARN("xport: dropping a notification sent by rendezvous (%zu bytes)", len);
        ucp_am_data_release(xp->worker[SL_XPORT_CONTROL], data);
        return UCS_OK;
    }
    if (len > SL_XPORT_NOTIF_MAX) {
        SL_WARN("xport: dropping a %zu-byte notification (limit %d)", len, SL_XPORT_NOTIF_MAX);
        return UCS_OK;
    }
    sl_xport_deliver_notif(xp, data, len);
    return UCS_OK;
}

void sl_xport_set_notif_handler(sl_xport_t *xp, sl_xport_notif_cb_t cb, void *arg)
{
    xp->notif_cb = cb;
    xp->notif_arg = arg;
}

/* ---- engine ----------------------------------------------------------- */

/* Apply one UCX setting; a transport not built into this UCX only warns. */
static void s_config_set(ucp_config_t *config, const char *name, const char *value)
{
    ucs_status_t st = ucp_config_modify(config, name, value);
    if (st != UCS_OK)
        SL_DEBUG("xport: UCX setting %s=%s not applied: %s", name, value, ucs_status_string(st));
}

void sl_xport_ucx_config(const sl_xport_cfg_t *cfg, int cls, ucp_config_t *config)
{
    static const char *const ib_tls[] = {"RC_VERBS", "RC_MLX5", "DC_MLX5", "UD_VERBS", "UD_MLX5"};
    char name[64], val[16];

    snprintf(val, sizeof(val), "%dms", cfg->keepalive_ms);
    s_config_set(config, "KEEPALIVE_INTERVAL", val);
    if (cfg->net_devices[0])
        s_config_set(config, "NET_DEVICES", cfg->net_devices);
    for (size_t i = 0; i < sizeof(ib_tls) / sizeof(ib_tls[0]); i++) {
        if (cfg->ib_sl[cls] >= 0) {
            snprintf(name, sizeof(name), "%s_SL", ib_tls[i]);
            snprintf(val, sizeof(val), "%d", cfg->ib_sl[cls]);
            s_config_set(config, name, val);
        }
        if (cfg->roce_tc[cls] >= 0) {
            snprintf(name, sizeof(name), "%s_TRAFFIC_CLASS", ib_tls[i]);
            snprintf(val, sizeof(val), "%d", cfg->roce_tc[cls]);
            s_config_set(config, name, val);
        }
    }
}

static sl_status_t s_context_create(sl_xport_t *xp, int cls)
{
    ucp_config_t *config;
    ucs_status_t st = ucp_config_read(NULL, NULL, &config);

    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_config_read: %s", ucs_status_string(st));
        return SL_ERR_IO;
    }
    sl_xport_ucx_config(&xp->cfg, cls, config);

    ucp_params_t params;
    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
    params.features =
        UCP_FEATURE_AM | UCP_FEATURE_WAKEUP | (cls == SL_XPORT_CONTROL ? 0 : UCP_FEATURE_RMA);
    params.name = s_class_name[cls];
    st = ucp_init(&params, config, &xp->ctx[cls]);
    ucp_config_release(config);
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_init(%s): %s", s_class_name[cls], ucs_status_string(st));
        return SL_ERR_IO;
    }

    ucp_worker_params_t wp;
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (xp->cfg.mark_interval_ms)
        sl_xport_tcpmark_begin(&xp->mark);
    st = ucp_worker_create(xp->ctx[cls], &wp, &xp->worker[cls]);
    if (xp->cfg.mark_interval_ms)
        sl_xport_tcpmark_end(&xp->mark, (sl_xport_class_t)cls); /* its listening sockets */
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_worker_create(%s): %s", s_class_name[cls], ucs_status_string(st));
        return SL_ERR_IO;
    }

    ucp_am_handler_param_t hp;
    memset(&hp, 0, sizeof(hp));
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG;
    hp.id = cls == SL_XPORT_CONTROL ? SL_XPORT_AM_NOTIF : SL_XPORT_AM_STAGE;
    hp.cb = cls == SL_XPORT_CONTROL ? s_notif_am_cb : sl_xport_stage_am_cb;
    xp->am_arg[cls].xp = xp;
    xp->am_arg[cls].cls = (sl_xport_class_t)cls;
    hp.arg = &xp->am_arg[cls];
    st = ucp_worker_set_am_recv_handler(xp->worker[cls], &hp);
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_worker_set_am_recv_handler: %s", ucs_status_string(st));
        return SL_ERR_IO;
    }

    int efd;
    st = ucp_worker_get_efd(xp->worker[cls], &efd);
    if (st != UCS_OK) {
        SL_ERROR("xport: ucp_worker_get_efd: %s", ucs_status_string(st));
        return SL_ERR_IO;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)cls};
    if (epoll_ctl(xp->epfd, EPOLL_CTL_ADD, efd, &ev) < 0) {
        SL_ERROR("xport: epoll_ctl: %m");
        return SL_ERR_IO;
    }
    return SL_OK;
}

/* Pack the class workers' addresses: magic, version, then per class a
 * 32-bit length and the bytes. */
static sl_status_t s_address_pack(sl_xport_t *xp)
{
    ucp_address_t *a[SL_XPORT_NCLASS] = {NULL};
    size_t alen[SL_XPORT_NCLASS], total = 8;
    sl_status_t ret = SL_OK;

    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        ucs_status_t st = ucp_worker_get_address(xp->worker[c], &a[c], &alen[c]);
        if (st != UCS_OK) {
            SL_ERROR("xport: ucp_worker_get_address: %s", ucs_status_string(st));
            ret = SL_ERR_IO;
            goto out_release;
        }
        total += 4 + alen[c];
    }
    if (total > SL_XPORT_ADDR_MAX) {
        SL_ERROR("xport: engine address of %zu bytes exceeds %d", total, SL_XPORT_ADDR_MAX);
        ret = SL_ERR_OVERFLOW;
        goto out_release;
    }
    xp->addr = malloc(total);
    if (!xp->addr) {
        ret = SL_ERR_NOMEM;
        goto out_release;
    }
    uint32_t hdr[2] = {S_ADDR_MAGIC, SL_XPORT_WIRE_VERSION};
    size_t off = 8;
    memcpy(xp->addr, hdr, 8);
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        uint32_t l = (uint32_t)alen[c];
        memcpy(xp->addr + off, &l, 4);
        memcpy(xp->addr + off + 4, a[c], alen[c]);
        off += 4 + alen[c];
    }
    xp->addr_len = total;
out_release:
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (a[c])
            ucp_worker_release_address(xp->worker[c], a[c]);
    return ret;
}

static void s_fail_all(sl_xport_t *xp, sl_xport_peer_t *only, sl_status_t st)
{
    for (int c = SL_XPORT_CRITICAL; c < SL_XPORT_NCLASS; c++) {
        sl_list_t *pos, *tmp;
        sl_list_for_each_safe(pos, tmp, &xp->queue[c])
        {
            sl_xport_req_t *req = SL_CONTAINER_OF(pos, sl_xport_req_t, link);
            if (only && req->peer != only)
                continue;
            s_req_fail(req, st);
            s_req_unqueue(req);
            s_req_advance(req);
        }
    }
}

static void s_ep_close(sl_xport_t *xp, ucp_ep_h ep)
{
    ucp_request_param_t prm;
    memset(&prm, 0, sizeof(prm));
    prm.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    prm.flags = UCP_EP_CLOSE_FLAG_FORCE;
    ucs_status_ptr_t sp = ucp_ep_close_nbx(ep, &prm);
    if (UCS_PTR_IS_PTR(sp)) {
        while (ucp_request_check_status(sp) == UCS_INPROGRESS)
            for (int c = 0; c < SL_XPORT_NCLASS; c++)
                ucp_worker_progress(xp->worker[c]);
        ucp_request_free(sp);
    }
}

static void s_peer_free(sl_xport_t *xp, sl_xport_peer_t *peer)
{
    sl_xport_rkeys_release(peer);
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (peer->ep[c])
            s_ep_close(xp, peer->ep[c]);
    free(peer);
}

/* Before its endpoints are closed by force, wait for the connection
 * handshake of a live peer (the flushes posted at connect) to end, for at
 * most close_flush_ms; a handshake long done costs nothing. UCX 1.13
 * aborts a process whose endpoint fails while one of its handshake replies
 * is still queued (an assertion in ucp_request_send_state_ff, dropped in
 * later releases: openucx/ucx#8175), and a force-close here before the
 * other side's reply went out, on an endpoint never used, did that to the
 * other side (an executor, when a peer connected, put and went away within
 * a few milliseconds). */
static void s_peer_settle(sl_xport_t *xp, sl_xport_peer_t *peer, sl_time_t until)
{
    for (;;) {
        bool busy = false;
        for (int c = 0; c < SL_XPORT_NCLASS; c++)
            busy |= peer->handshake[c] &&
                    ucp_request_check_status(peer->handshake[c]) == UCS_INPROGRESS;
        if (!busy || peer->failed || sl_clock_now() >= until)
            break;
        for (int c = 0; c < SL_XPORT_NCLASS; c++)
            ucp_worker_progress(xp->worker[c]);
    }
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if (peer->handshake[c]) {
            ucp_request_free(peer->handshake[c]); /* (one in progress is freed as it ends) */
            peer->handshake[c] = NULL;
        }
}

/* Disconnect peer, its endpoints settled until `until` at most. */
static void s_disconnect(sl_xport_t *xp, sl_xport_peer_t *peer, sl_time_t until)
{
    s_fail_all(xp, peer, SL_ERR_CANCELED);
    s_peer_settle(xp, peer, until);
    /* closing the endpoints completes their outstanding operations */
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        if (peer->ep[c])
            s_ep_close(xp, peer->ep[c]);
        peer->ep[c] = NULL;
    }
    s_orphan_waiting(xp, peer, SL_ERR_CANCELED);
    while (peer->live_reqs) {
        for (int c = 0; c < SL_XPORT_NCLASS; c++)
            ucp_worker_progress(xp->worker[c]);
        s_run_done(xp);
    }
    sl_list_del(&peer->link);
    s_peer_free(xp, peer);
}

void sl_xport_disconnect(sl_xport_t *xp, sl_xport_peer_t **peer_p)
{
    if (!peer_p || !*peer_p)
        return;
    s_disconnect(xp, *peer_p, sl_clock_now() + SL_MS(xp->cfg.close_flush_ms));
    *peer_p = NULL;
}

/* Resolve xport-net-devices=auto: the NICs of rank 0 seen from the GPU, or
 * UCX's default when there is no GPU, no PCI NIC, or the tree cannot be
 * read (the engine still works, through whatever NIC UCX picks). */
static void s_net_devices_resolve(sl_xport_cfg_t *cfg)
{
    char list[sizeof(cfg->net_devices)];
    if (strcmp(cfg->net_devices, "auto") != 0)
        return;
    cfg->net_devices[0] = '\0';
    if (!cfg->gpu_pci[0] || getenv("UCX_NET_DEVICES"))
        return; /* no GPU, or the operator chose */
    sl_status_t st = sl_xport_nic_nearest(cfg->sysfs, cfg->gpu_pci, list, sizeof(list));
    if (st != SL_OK) {
        SL_WARN("xport: no NIC choice for GPU %s (%s): UCX picks the NICs", cfg->gpu_pci,
                sl_status_str(st));
        return;
    }
    if (!list[0]) {
        SL_INFO("xport: no PCI NIC under %s: UCX picks the NICs", cfg->sysfs);
        return;
    }
    SL_INFO("xport: GPU %s: UCX_NET_DEVICES=%s (the nearest NICs)", cfg->gpu_pci, list);
    memcpy(cfg->net_devices, list, sizeof(list));
}

sl_status_t sl_xport_create(const sl_xport_cfg_t *cfg, sl_xport_t **xp_p)
{
    sl_status_t ret;
    sl_xport_t *xp;

    if (!cfg || !xp_p || cfg->chunk_kib <= 0 || cfg->inflight_kib <= 0 || cfg->bg_share <= 0 ||
        cfg->bg_share > 1 || cfg->stage_chunk_kib <= 0 || cfg->stage_slots <= 0) {
        SL_ERROR("xport: bad engine configuration");
        return SL_ERR_INVALID;
    }
    xp = calloc(1, sizeof(*xp));
    if (!xp)
        return SL_ERR_NOMEM;
    xp->cfg = *cfg;
    if (!xp->cfg.copy)
        xp->cfg.copy = sl_xport_cuda_copy_fn();
    sl_xport_sched_init(&xp->sched, cfg->bg_share, cfg->bg_floor, (uint64_t)cfg->chunk_kib << 10,
                        (uint64_t)cfg->inflight_kib << 10);
    sl_list_init(&xp->peers);
    sl_list_init(&xp->mems);
    sl_list_init(&xp->done);
    sl_list_init(&xp->waiting);
    sl_list_init(&xp->orphans);
    sl_list_init(&xp->req_pool);
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        sl_list_init(&xp->queue[c]);
    sl_rand_t r;
    sl_rand_seed(&r, (uint64_t)sl_clock_now() ^ ((uint64_t)getpid() << 32));
    xp->id = sl_rand_u64(&r);

    /* UCX 1.13 reads shared-memory transport settings from the environment
     * only (ucp_config_modify leaves them unused), so set them there unless
     * the operator already chose */
    const char *tls = getenv("UCX_TLS");
    if (cfg->posix_peer_failure && (!tls || strstr(tls, "all") || strstr(tls, "sm") ||
                                    strstr(tls, "posix") || strstr(tls, "sysv"))) {
        setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
        setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
    }
    s_net_devices_resolve(&xp->cfg);
    sl_xport_tcpmark_init(&xp->mark, cfg->tos);
    sl_xport_tcpmark_set_congestion(&xp->mark, cfg->tcp_congestion);
    xp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (xp->epfd < 0) {
        SL_ERROR("xport: epoll_create1: %m");
        ret = SL_ERR_IO;
        goto err_free;
    }
    for (int c = 0; c < SL_XPORT_NCLASS; c++)
        if ((ret = s_context_create(xp, c)) != SL_OK)
            goto err_destroy;
    if ((ret = s_address_pack(xp)) != SL_OK)
        goto err_destroy;
    xp->cuda_direct = sl_xport_cuda_probe(xp);
    if (cfg->link_mbps > 0)
        sl_xport_set_link_bps(xp, cfg->link_mbps * 1e6);
    SL_INFO("xport: engine up, CUDA memory %s", xp->cuda_direct ? "direct" : "staged");
    if (cfg->mark_interval_ms && sl_xport_tcpmark_active(&xp->mark))
        SL_INFO("xport: UCX's TCP sockets marked per class: TOS %d/%d/%d, %u/%u/%u listening "
                "endpoints, congestion control %s",
                cfg->tos[0], cfg->tos[1], cfg->tos[2], xp->mark.nlisten[0], xp->mark.nlisten[1],
                xp->mark.nlisten[2], cfg->tcp_congestion[0] ? cfg->tcp_congestion : "(host's)");
    *xp_p = xp;
    return SL_OK;

err_destroy:
    sl_xport_destroy(&xp);
    return ret;
err_free:
    free(xp);
    return ret;
}

void sl_xport_destroy(sl_xport_t **xp_p)
{
    if (!xp_p || !*xp_p)
        return;
    sl_xport_t *xp = *xp_p;

    s_fail_all(xp, NULL, SL_ERR_SHUTDOWN);
    sl_time_t until = sl_clock_now() + SL_MS(xp->cfg.close_flush_ms); /* one wait for all */
    while (!sl_list_empty(&xp->peers)) {
        sl_xport_peer_t *peer = SL_CONTAINER_OF(xp->peers.next, sl_xport_peer_t, link);
        s_disconnect(xp, peer, until);
    }
    s_run_done(xp);
    sl_xport_stage_fini(xp);
    while (!sl_list_empty(&xp->mems)) {
        sl_xport_mem_t *m = SL_CONTAINER_OF(xp->mems.next, sl_xport_mem_t, link);
        sl_xport_mem_deregister(xp, &m);
    }
    free(xp->addr);
    for (int c = SL_XPORT_NCLASS - 1; c >= 0; c--) {
        if (xp->worker[c])
            ucp_worker_destroy(xp->worker[c]);
        if (xp->ctx[c])
            ucp_cleanup(xp->ctx[c]);
    }
    while (!sl_list_empty(&xp->req_pool)) {
        sl_xport_req_t *req =
            SL_CONTAINER_OF(sl_list_pop_front(&xp->req_pool), sl_xport_req_t, link);
        free(req->blocks);
        free(req);
    }
    /* the workers are gone, so no callback can reach an orphan any more */
    while (!sl_list_empty(&xp->orphans)) {
        sl_list_t *e = sl_list_pop_front(&xp->orphans);
        free(SL_CONTAINER_OF(e, sl_xport_req_t, link));
    }
    if (xp->epfd >= 0)
        close(xp->epfd);
    sl_xport_tcpmark_fini(&xp->mark);
    while (xp->op_free) {
        sl_xport_op_ctx_t *o = xp->op_free;
        xp->op_free = o->next;
        free(o);
    }
    free(xp);
    *xp_p = NULL;
}

sl_status_t sl_xport_address(sl_xport_t *xp, const void **addr_p, size_t *len_p)
{
    if (!xp || !addr_p || !len_p)
        return SL_ERR_INVALID;
    *addr_p = xp->addr;
    *len_p = xp->addr_len;
    return SL_OK;
}

bool sl_xport_cuda_direct(const sl_xport_t *xp)
{
    return xp->cuda_direct;
}

bool sl_xport_peer_failed(const sl_xport_peer_t *peer)
{
    return peer->failed;
}

static void s_ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t st)
{
    sl_xport_peer_t *peer = arg;
    if (!peer->failed)
        SL_WARN("xport: peer failed: %s", ucs_status_string(st));
    peer->failed = true;
    peer->xp->failed_pending = true;
}

sl_status_t sl_xport_connect(sl_xport_t *xp, const void *addr, size_t len, sl_xport_peer_t **peer_p)
{
    const uint8_t *p = addr;
    const uint8_t *part[SL_XPORT_NCLASS];
    uint32_t hdr[2];
    size_t off = 8;

    if (!xp || !addr || !peer_p)
        return SL_ERR_INVALID;
    if (len < 8 || len > SL_XPORT_ADDR_MAX)
        return SL_ERR_MSG_MALFORMED;
    memcpy(hdr, p, 8);
    if (hdr[0] != S_ADDR_MAGIC)
        return SL_ERR_MSG_MALFORMED;
    if (hdr[1] != SL_XPORT_WIRE_VERSION)
        return SL_ERR_MSG_VERSION;
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        uint32_t l;
        if (len - off < 4)
            return SL_ERR_MSG_MALFORMED;
        memcpy(&l, p + off, 4);
        if (l == 0 || len - off - 4 < l)
            return SL_ERR_MSG_MALFORMED;
        part[c] = p + off + 4;
        off += 4 + l;
    }
    if (off != len)
        return SL_ERR_MSG_MALFORMED;

    sl_xport_peer_t *peer = calloc(1, sizeof(*peer));
    if (!peer)
        return SL_ERR_NOMEM;
    peer->xp = xp;
    sl_list_init(&peer->link);
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        ucp_ep_params_t ep;
        memset(&ep, 0, sizeof(ep));
        ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                        UCP_EP_PARAM_FIELD_ERR_HANDLER;
        ep.address = (const ucp_address_t *)part[c];
        ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
        ep.err_handler.cb = s_ep_err_cb;
        ep.err_handler.arg = peer;
        if (xp->cfg.mark_interval_ms && sl_xport_tcpmark_active(&xp->mark))
            sl_xport_tcpmark_begin(&xp->mark);
        ucs_status_t st = ucp_ep_create(xp->worker[c], &ep, &peer->ep[c]);
        if (xp->cfg.mark_interval_ms && sl_xport_tcpmark_active(&xp->mark))
            sl_xport_tcpmark_end(&xp->mark, (sl_xport_class_t)c); /* its connections */
        if (st != UCS_OK) {
            SL_ERROR("xport: ucp_ep_create(%s): %s", s_class_name[c], ucs_status_string(st));
            peer->ep[c] = NULL;
            s_peer_free(xp, peer);
            return st == UCS_ERR_UNREACHABLE ? SL_ERR_LINK : SL_ERR_IO;
        }
    }
    /* the handshake's end, for a disconnect to wait for (s_peer_settle) */
    ucp_request_param_t prm;
    memset(&prm, 0, sizeof(prm));
    for (int c = 0; c < SL_XPORT_NCLASS && xp->cfg.close_flush_ms > 0; c++) {
        ucs_status_ptr_t sp = ucp_ep_flush_nbx(peer->ep[c], &prm);
        peer->handshake[c] = UCS_PTR_IS_PTR(sp) ? sp : NULL;
    }
    sl_list_push_back(&xp->peers, &peer->link);
    *peer_p = peer;
    return SL_OK;
}

/* ---- posting transfers ------------------------------------------------ */

/* A request with room for nblocks blocks, from the pool when one is there
 * (the pool keeps each request's block array, so a steady stream of
 * transfers allocates nothing). Everything but the block array is zeroed. */
static sl_xport_req_t *s_req_get(sl_xport_t *xp, size_t nblocks)
{
    sl_list_t *e = sl_list_pop_front(&xp->req_pool);
    sl_xport_req_t *req;
    if (e) {
        req = SL_CONTAINER_OF(e, sl_xport_req_t, link);
        xp->req_pool_len--;
    } else if (!(req = calloc(1, sizeof(*req)))) {
        return NULL;
    }
    sl_xport_block_t *blocks = req->blocks;
    size_t cap = req->blocks_cap;
    if (cap < nblocks) {
        sl_xport_block_t *n = realloc(blocks, nblocks * sizeof(*n));
        if (!n) {
            free(blocks);
            free(req);
            return NULL;
        }
        blocks = n;
        cap = nblocks;
    }
    memset(req, 0, offsetof(sl_xport_req_t, notif));
    req->blocks = blocks;
    req->blocks_cap = cap;
    return req;
}

static sl_status_t s_validate(sl_xport_t *xp, sl_xport_peer_t *peer, const sl_xport_xfer_t *x,
                              sl_xport_rkey_t **rk_p)
{
    if (!xp || !peer || !x || !x->local || !x->blocks || x->nblocks == 0)
        return SL_ERR_INVALID;
    if (x->cls != SL_XPORT_CRITICAL && x->cls != SL_XPORT_BACKGROUND)
        return SL_ERR_INVALID;
    if (x->op != SL_XPORT_PUT && x->op != SL_XPORT_GET)
        return SL_ERR_INVALID;
    if (x->notif_len > SL_XPORT_NOTIF_MAX || (x->notif_len && !x->notif))
        return SL_ERR_INVALID;
    if (peer->failed)
        return SL_ERR_PEER_LOST;
    if (x->remote >= peer->nrkeys)
        return SL_ERR_NOT_FOUND;
    sl_xport_rkey_t *rk = peer->rkeys[x->remote];
    for (size_t i = 0; i < x->nblocks; i++) {
        const sl_xport_block_t *b = &x->blocks[i];
        if (b->len == 0)
            return SL_ERR_INVALID;
        if (b->len > x->local->len || b->local_off > x->local->len - b->len || b->len > rk->len ||
            b->remote_off > rk->len - b->len)
            return SL_ERR_MSG_RANGE;
    }
    if ((x->local->staged || rk->staged) && x->notif_len > SL_XPORT_STAGE_NOTIF_MAX)
        return SL_ERR_INVALID; /* it travels in each chunk's header */
    if ((x->local->staged || rk->staged) && x->op == SL_XPORT_GET)
        return SL_ERR_UNSUPPORTED;
    *rk_p = rk;
    return SL_OK;
}

sl_status_t sl_xport_post(sl_xport_t *xp, sl_xport_peer_t *peer, const sl_xport_xfer_t *x)
{
    sl_xport_rkey_t *rk = NULL;
    sl_status_t ret = s_validate(xp, peer, x, &rk);
    if (ret != SL_OK)
        return ret;

    sl_xport_req_t *req = s_req_get(xp, x->nblocks);
    if (!req)
        return SL_ERR_NOMEM;
    memcpy(req->blocks, x->blocks, x->nblocks * sizeof(*req->blocks));
    req->xp = xp;
    req->peer = peer;
    req->state = SL_XPORT_REQ_ISSUE;
    req->op = x->op;
    req->cls = x->cls;
    req->local = x->local;
    req->remote = rk;
    req->staged = x->local->staged || rk->staged;
    req->nblocks = x->nblocks;
    req->cb = x->cb;
    req->cb_arg = x->cb_arg;
    req->notif_len = x->notif_len;
    if (x->notif_len)
        memcpy(req->notif, x->notif, x->notif_len);
    if (req->staged) {
        req->nchunks = sl_xport_stage_count(xp, req);
        req->key = xp->id ^ ++xp->seq;
    }
    /* a class that was idle rejoins at the current virtual time, so it
     * cannot claim the bandwidth it did not use while idle */
    if (sl_list_empty(&xp->queue[x->cls]))
        sl_xport_sched_join(&xp->sched, x->cls);
    sl_list_push_back(&xp->queue[x->cls], &req->link);
    peer->live_reqs++;
    xp->live[x->cls]++;
    s_schedule(xp);
    return SL_OK;
}

/* ---- link probe and stats --------------------------------------------- */

static void s_probe_cb(void *arg, sl_status_t st)
{
    int *pending = arg;
    (*pending)--;
    if (st != SL_OK)
        pending[1] = st;
}

sl_status_t sl_xport_link_probe(sl_xport_t *xp, sl_xport_peer_t *peer, sl_xport_mem_t *local,
                                uint32_t remote, uint64_t len, double seconds, double *bps_p)
{
    int state[2] = {0, SL_OK}; /* transfers in flight, first error */
    sl_xport_probe_t probe;
    sl_status_t ret = SL_OK;
    double bps = 0;

    if (!xp || !peer || !local || !bps_p || seconds <= 0 || len == 0 || remote >= peer->nrkeys)
        return SL_ERR_INVALID;
    /* walk both regions block by block, as a stream of distinct blocks
     * does: one block put again and again stays in the caches of both
     * hosts and measures a faster path than any real transfer takes */
    uint64_t span = local->len < peer->rkeys[remote]->len ? local->len : peer->rkeys[remote]->len;
    if (len > span)
        return SL_ERR_MSG_RANGE;
    sl_xport_block_t blk = {0, 0, len};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = local,
                         .remote = remote,
                         .blocks = &blk,
                         .nblocks = 1,
                         .cb = s_probe_cb,
                         .cb_arg = state};
    uint64_t off = 0;
    sl_xport_probe_start(&probe, SL_MS(xp->cfg.probe_window_ms), (sl_time_t)(seconds * 1e9),
                         sl_clock_now());
    while (!sl_xport_probe_done(&probe) && state[1] == SL_OK) {
        while (state[0] < S_PROBE_DEPTH) {
            blk.local_off = blk.remote_off = off;
            off = off + 2 * len <= span ? off + len : 0;
            if ((ret = sl_xport_post(xp, peer, &x)) != SL_OK)
                goto out_drain;
            state[0]++;
        }
        sl_xport_progress(xp);
        sl_xport_probe_observe(&probe, sl_clock_now(), xp->stats.bytes[SL_XPORT_CRITICAL]);
    }
    ret = (sl_status_t)state[1];
out_drain:
    while (state[0] > 0)
        sl_xport_progress(xp);
    if (ret == SL_OK && (ret = sl_xport_probe_result(&probe, &bps)) == SL_OK) {
        SL_INFO("xport: link probe %.0f MB/s, median of %d windows of %.0f ms (%.0f to %.0f MB/s)",
                bps / 1e6, probe.nrate, (double)probe.win / 1e6, probe.rate[0] / 1e6,
                probe.rate[probe.nrate - 1] / 1e6);
        sl_xport_set_link_bps(xp, bps);
        *bps_p = bps;
    }
    return ret;
}

void sl_xport_stats(const sl_xport_t *xp, sl_xport_stats_t *stats)
{
    *stats = xp->stats;
}

const char *sl_xport_net_devices(const sl_xport_t *xp)
{
    return xp->cfg.net_devices;
}

void sl_xport_peer_describe(const sl_xport_peer_t *peer, FILE *out)
{
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        fprintf(out, "class %s:\n", s_class_name[c]);
        if (peer->ep[c])
            ucp_ep_print_info(peer->ep[c], out);
    }
}
