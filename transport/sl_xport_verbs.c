/*
 * The GPUDirect RDMA lane (include/sluice/xport_gpu.h): KV block lists
 * written straight from one node's memory, device memory included, into
 * another's through rdma-core verbs, with the notification carried by the
 * same queue pair after the data.
 *
 * The idea. One object per peer: a device context, a protection domain, a
 * completion queue and one RC queue pair. The queue pair is brought up from
 * the peer's connection blob (sl_xport_gpu_blob.c), which travels through
 * the scheduler like a UCX address, so the lane opens no port and needs no
 * rdma_cm. Device memory is registered through dma-buf: the CUDA driver
 * exports the range as a dma-buf fd (sl_xport_cudrv.c, dlopen) and the NIC
 * maps it with ibv_reg_dmabuf_mr, which works with the upstream kernel
 * (no nvidia-peermem module). A block list is one chain of RDMA WRITEs, one
 * per block, ending with a zero-length RDMA WRITE WITH IMMEDIATE: RC
 * executes a queue pair's requests in order, so the peer's receive
 * completion for the immediate comes only after every byte before it has
 * been placed (the data, then the notification, as in the UCX engine).
 *
 * Send queue credits: every write uses one work request per block plus one;
 * only every signal_every-th request and the last of a list are signaled,
 * and each signaled completion returns the credits of the requests it
 * covers (its wr_id says how many), so completions stay few and the send
 * queue never overflows. Lists complete in order (RC), so the pending lists
 * are a ring and the oldest is the one a "last" completion finishes.
 *
 * A peer that stops answering fails the queue pair after the transport's
 * retries: 4.096 us x 2^verbs-ack-timeout x (verbs-retry-cnt + 1)
 * (sl_xport_verbs_fail_ns); every pending list then completes with
 * SL_ERR_PEER_LOST and further writes are refused.
 *
 * Alternatives rejected: rdma_cm to connect (a listening port and its own
 * address resolution, where the scheduler already carries blobs); UCX with
 * CUDA support (Debian's UCX has none); ibv_reg_mr on device pointers
 * (needs the out-of-tree nvidia-peermem module).
 */
#include <sluice/xport_gpu.h>

#include <arpa/inet.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "transport/sl_xport_cudrv.h"

static const sl_cfg_field_t s_cfg_table[] = {
    SL_CFG_FIELD(sl_xport_verbs_cfg_t, device, "verbs-device", "", SL_CFG_STR,
                 "RDMA device of the GPUDirect lane (ibv_devices); empty: the first found"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, port, "verbs-port", "1", SL_CFG_INT, 1, 255,
                 "port of the RDMA device"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, gid_index, "verbs-gid-index", "-1", SL_CFG_INT, -1, 255,
                 "GID index for RoCE or routed fabrics; -1: 0 on Ethernet ports, none (LID) on "
                 "InfiniBand"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, sq_depth, "verbs-sq-depth", "4096", SL_CFG_INT, 16, 65536,
                 "send work requests per queue pair (a list takes one per block plus one)"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, rq_depth, "verbs-rq-depth", "256", SL_CFG_INT, 4, 16384,
                 "receives kept posted for the peer's immediates"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, signal_every, "verbs-signal-every", "64", SL_CFG_INT, 1,
                 4096, "writes per signaled completion"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, ack_timeout, "verbs-ack-timeout", "14", SL_CFG_INT, 1, 31,
                 "ACK timeout exponent: each try waits 4.096 us x 2^n (14: 67 ms)"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, retry_cnt, "verbs-retry-cnt", "7", SL_CFG_INT, 0, 7,
                 "transport retries before a write to a silent peer fails"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, rnr_retry, "verbs-rnr-retry", "7", SL_CFG_INT, 0, 7,
                 "receiver-not-ready retries (7: forever)"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, ib_sl, "verbs-sl", "0", SL_CFG_INT, 0, 15,
                 "InfiniBand service level of the queue pair"),
    SL_CFG_RANGE(sl_xport_verbs_cfg_t, traffic_class, "verbs-traffic-class", "0", SL_CFG_INT, 0,
                 255, "RoCE traffic class (GRH) of the queue pair"),
    SL_CFG_END,
};

const sl_cfg_field_t *const sl_xport_verbs_cfg_table = s_cfg_table;

sl_status_t sl_xport_verbs_cfg_defaults(sl_xport_verbs_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    return sl_cfg_defaults(sl_xport_verbs_cfg_table, cfg);
}

int64_t sl_xport_verbs_fail_ns(const sl_xport_verbs_cfg_t *cfg)
{
    return (int64_t)(4096.0 * (double)(1ull << cfg->ack_timeout) * (cfg->retry_cnt + 1));
}

/* wr_id of a work request: receive bit, or the list's ring slot, the
 * credits it returns and whether it ends its list. */
#define S_WR_RECV (1ull << 63)
#define S_WR_LAST (1ull << 48)
#define S_WR_ID(slot, credits, last)                                                               \
    (((uint64_t)(slot) << 32) | (uint64_t)(credits) | ((last) ? S_WR_LAST : 0))

/* A block list in flight. */
typedef struct s_list {
    sl_xport_verbs_done_cb_t cb; /* completion */
    void *arg;                   /* its argument */
    sl_status_t status;          /* first error seen for it */
} s_list_t;

struct sl_xport_verbs_mr {
    struct ibv_mr *mr;        /* the registration */
    void *base;               /* first byte (the address the peer writes) */
    size_t len;               /* bytes */
    int fd;                   /* dma-buf fd of device memory, else -1 */
    sl_xport_mem_type_t type; /* host or CUDA */
};

struct sl_xport_verbs {
    sl_xport_verbs_cfg_t cfg;       /* configuration (copied) */
    char name[64];                  /* device name */
    struct ibv_context *ctx;        /* device context */
    struct ibv_pd *pd;              /* protection domain */
    struct ibv_cq *cq;              /* send and receive completions */
    struct ibv_qp *qp;              /* the RC queue pair */
    struct ibv_port_attr port;      /* port attributes at open */
    bool global;                    /* address with a GRH (GID) */
    int gid_index;                  /* GID index used when global */
    union ibv_gid gid;              /* our GID when global */
    uint32_t psn;                   /* our first packet sequence number */
    bool connected;                 /* queue pair in RTS */
    bool failed;                    /* a completion failed: the queue pair is unusable */
    sl_xport_verbs_desc_t remote;   /* the peer's blob */
    int sq_free;                    /* send work requests free */
    struct ibv_send_wr *wrs;        /* work request chain, sq_depth entries */
    struct ibv_sge *sges;           /* their gather entries */
    s_list_t *lists;                /* ring of lists in flight, sq_depth entries */
    unsigned head;                  /* oldest list */
    unsigned count;                 /* lists in flight */
    unsigned recv_posted;           /* receives posted */
    sl_xport_verbs_imm_cb_t imm_cb; /* immediate handler */
    void *imm_arg;                  /* its argument */
};

sl_status_t sl_xport_verbs_open(const sl_xport_verbs_cfg_t *cfg, sl_xport_verbs_t **vb_p)
{
    if (!cfg || !vb_p || cfg->sq_depth < 2 || cfg->rq_depth < 1 || cfg->signal_every < 1)
        return SL_ERR_INVALID;
    int num = 0;
    struct ibv_device **devs = ibv_get_device_list(&num);
    if (!devs) {
        SL_INFO("xport: GPUDirect RDMA lane unavailable: no RDMA support (ibv_get_device_list: "
                "%m)");
        return SL_ERR_UNSUPPORTED;
    }
    struct ibv_device *dev = NULL;
    for (int i = 0; i < num && !dev; i++)
        if (!cfg->device[0] || !strcmp(ibv_get_device_name(devs[i]), cfg->device))
            dev = devs[i];
    if (!dev) {
        if (num == 0)
            SL_INFO("xport: GPUDirect RDMA lane unavailable: no RDMA device found");
        else
            SL_INFO("xport: GPUDirect RDMA lane unavailable: no RDMA device named '%s' (%d found)",
                    cfg->device, num);
        ibv_free_device_list(devs);
        return SL_ERR_UNSUPPORTED;
    }
    sl_status_t st = SL_ERR_IO;
    sl_xport_verbs_t *vb = calloc(1, sizeof(*vb));
    if (!vb) {
        ibv_free_device_list(devs);
        return SL_ERR_NOMEM;
    }
    vb->cfg = *cfg;
    snprintf(vb->name, sizeof(vb->name), "%s", ibv_get_device_name(dev));
    vb->ctx = ibv_open_device(dev);
    ibv_free_device_list(devs);
    if (!vb->ctx) {
        /* listed in sysfs but not reachable, as in a container without
         * /dev/infiniband: the lane is unavailable here, not broken */
        SL_INFO("xport: GPUDirect RDMA lane unavailable: cannot open %s (%m)", vb->name);
        st = SL_ERR_UNSUPPORTED;
        goto err_free;
    }
    if (ibv_query_port(vb->ctx, (uint8_t)cfg->port, &vb->port) != 0) {
        SL_WARN("xport: %s has no port %d", vb->name, cfg->port);
        st = SL_ERR_INVALID;
        goto err_close_device;
    }
    if (vb->port.state != IBV_PORT_ACTIVE) {
        SL_INFO("xport: GPUDirect RDMA lane unavailable: %s port %d is not active", vb->name,
                cfg->port);
        st = SL_ERR_UNSUPPORTED;
        goto err_close_device;
    }
    vb->gid_index = cfg->gid_index;
    if (vb->gid_index < 0 && vb->port.link_layer == IBV_LINK_LAYER_ETHERNET)
        vb->gid_index = 0;
    vb->global = vb->gid_index >= 0;
    if (vb->global && ibv_query_gid(vb->ctx, (uint8_t)cfg->port, vb->gid_index, &vb->gid) != 0) {
        SL_WARN("xport: %s port %d has no GID %d", vb->name, cfg->port, vb->gid_index);
        st = SL_ERR_INVALID;
        goto err_close_device;
    }
    if (!(vb->pd = ibv_alloc_pd(vb->ctx))) {
        SL_ERROR("xport: ibv_alloc_pd(%s): %m", vb->name);
        goto err_close_device;
    }
    if (!(vb->cq = ibv_create_cq(vb->ctx, cfg->sq_depth + cfg->rq_depth, NULL, NULL, 0))) {
        SL_ERROR("xport: ibv_create_cq(%s, %d): %m", vb->name, cfg->sq_depth + cfg->rq_depth);
        goto err_dealloc_pd;
    }
    struct ibv_qp_init_attr qia;
    memset(&qia, 0, sizeof(qia));
    qia.send_cq = vb->cq;
    qia.recv_cq = vb->cq;
    qia.qp_type = IBV_QPT_RC;
    qia.cap.max_send_wr = (uint32_t)cfg->sq_depth;
    qia.cap.max_recv_wr = (uint32_t)cfg->rq_depth;
    qia.cap.max_send_sge = 1;
    qia.cap.max_recv_sge = 1;
    if (!(vb->qp = ibv_create_qp(vb->pd, &qia))) {
        SL_ERROR("xport: ibv_create_qp(%s, RC, %d send): %m", vb->name, cfg->sq_depth);
        goto err_destroy_cq;
    }
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof(a));
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = (uint8_t)cfg->port;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    int rc = ibv_modify_qp(vb->qp, &a,
                           IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    if (rc != 0) {
        errno = rc;
        SL_ERROR("xport: ibv_modify_qp(%s, INIT): %m", vb->name);
        goto err_destroy_qp;
    }
    vb->wrs = calloc((size_t)cfg->sq_depth, sizeof(*vb->wrs));
    vb->sges = calloc((size_t)cfg->sq_depth, sizeof(*vb->sges));
    vb->lists = calloc((size_t)cfg->sq_depth, sizeof(*vb->lists));
    if (!vb->wrs || !vb->sges || !vb->lists) {
        st = SL_ERR_NOMEM;
        goto err_free_arrays;
    }
    vb->sq_free = cfg->sq_depth;
    vb->psn = (uint32_t)((uint64_t)sl_clock_now() ^ ((uint64_t)getpid() << 8)) & 0xffffffu;
    SL_INFO("xport: GPUDirect RDMA lane on %s port %d (%s, LID %u, QPN %u)", vb->name, cfg->port,
            vb->port.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand", vb->port.lid,
            vb->qp->qp_num);
    *vb_p = vb;
    return SL_OK;

err_free_arrays:
    free(vb->wrs);
    free(vb->sges);
    free(vb->lists);
err_destroy_qp:
    ibv_destroy_qp(vb->qp);
err_destroy_cq:
    ibv_destroy_cq(vb->cq);
err_dealloc_pd:
    ibv_dealloc_pd(vb->pd);
err_close_device:
    ibv_close_device(vb->ctx);
err_free:
    free(vb);
    return st;
}

const char *sl_xport_verbs_device_name(const sl_xport_verbs_t *vb)
{
    return vb ? vb->name : "";
}

/* Finish the oldest list with st; the ring slot is free before cb runs. */
static void s_list_done(sl_xport_verbs_t *vb, sl_status_t st)
{
    s_list_t *l = &vb->lists[vb->head];
    sl_xport_verbs_done_cb_t cb = l->cb;
    void *arg = l->arg;
    if (l->status != SL_OK)
        st = l->status;
    memset(l, 0, sizeof(*l));
    vb->head = (vb->head + 1) % (unsigned)vb->cfg.sq_depth;
    vb->count--;
    if (cb)
        cb(arg, st);
}

void sl_xport_verbs_close(sl_xport_verbs_t **vb_p)
{
    if (!vb_p || !*vb_p)
        return;
    sl_xport_verbs_t *vb = *vb_p;
    *vb_p = NULL;
    /* what already completed is reported as such, the rest as shut down */
    sl_xport_verbs_progress(vb);
    vb->imm_cb = NULL;
    while (vb->count > 0)
        s_list_done(vb, SL_ERR_SHUTDOWN);
    ibv_destroy_qp(vb->qp);
    ibv_destroy_cq(vb->cq);
    ibv_dealloc_pd(vb->pd);
    ibv_close_device(vb->ctx);
    free(vb->wrs);
    free(vb->sges);
    free(vb->lists);
    free(vb);
}

sl_status_t sl_xport_verbs_reg(sl_xport_verbs_t *vb, void *base, size_t len,
                               sl_xport_mem_type_t type, sl_xport_verbs_mr_t **mr_p)
{
    if (!vb || !base || len == 0 || !mr_p ||
        (type != SL_XPORT_MEM_HOST && type != SL_XPORT_MEM_CUDA))
        return SL_ERR_INVALID;
    sl_xport_verbs_mr_t *m = calloc(1, sizeof(*m));
    if (!m)
        return SL_ERR_NOMEM;
    m->base = base;
    m->len = len;
    m->fd = -1;
    m->type = type;
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
    if (type == SL_XPORT_MEM_HOST) {
        if (!(m->mr = ibv_reg_mr(vb->pd, base, len, access))) {
            SL_ERROR("xport: ibv_reg_mr(%s, %zu bytes): %m", vb->name, len);
            free(m);
            return SL_ERR_IO;
        }
    } else {
        uint64_t off = 0;
        sl_status_t st = sl_xport_cudrv_dmabuf(base, len, &m->fd, &off);
        if (st != SL_OK) {
            free(m);
            return st;
        }
        m->mr = ibv_reg_dmabuf_mr(vb->pd, off, len, (uint64_t)(uintptr_t)base, m->fd, access);
        if (!m->mr) {
            int err = errno;
            close(m->fd);
            free(m);
            errno = err;
            if (err == EOPNOTSUPP || err == ENOSYS || err == EPROTONOSUPPORT) {
                SL_INFO("xport: %s cannot register dma-bufs (%m)", vb->name);
                return SL_ERR_UNSUPPORTED;
            }
            SL_ERROR("xport: ibv_reg_dmabuf_mr(%s, %zu bytes of device memory): %m", vb->name, len);
            return SL_ERR_IO;
        }
    }
    *mr_p = m;
    return SL_OK;
}

void sl_xport_verbs_dereg(sl_xport_verbs_t *vb, sl_xport_verbs_mr_t **mr_p)
{
    if (!mr_p || !*mr_p)
        return;
    sl_xport_verbs_mr_t *m = *mr_p;
    *mr_p = NULL;
    ibv_dereg_mr(m->mr);
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}

sl_status_t sl_xport_verbs_local_blob(sl_xport_verbs_t *vb, const sl_xport_verbs_mr_t *mr,
                                      void *buf, size_t cap, size_t *len_p)
{
    if (!vb || !mr)
        return SL_ERR_INVALID;
    sl_xport_verbs_desc_t d;
    memset(&d, 0, sizeof(d));
    d.qpn = vb->qp->qp_num;
    d.psn = vb->psn;
    d.lid = vb->port.lid;
    d.mtu = (uint8_t)vb->port.active_mtu;
    if (vb->global)
        memcpy(d.gid, vb->gid.raw, 16);
    d.addr = (uint64_t)(uintptr_t)mr->base;
    d.len = mr->len;
    d.rkey = mr->mr->rkey;
    return sl_xport_verbs_blob_encode(&d, buf, cap, len_p);
}

/* Post one zero-length receive (it takes one immediate). */
static int s_post_recv(sl_xport_verbs_t *vb)
{
    struct ibv_recv_wr wr, *bad = NULL;
    memset(&wr, 0, sizeof(wr));
    wr.wr_id = S_WR_RECV;
    int rc = ibv_post_recv(vb->qp, &wr, &bad);
    if (rc == 0)
        vb->recv_posted++;
    return rc;
}

sl_status_t sl_xport_verbs_connect(sl_xport_verbs_t *vb, const void *blob, size_t len)
{
    if (!vb)
        return SL_ERR_INVALID;
    if (vb->connected)
        return SL_ERR_EXISTS;
    sl_xport_verbs_desc_t r;
    sl_status_t st = sl_xport_verbs_blob_decode(blob, len, &r);
    if (st != SL_OK) {
        SL_WARN("xport: refusing a verbs connection blob: %s", sl_status_str(st));
        return st;
    }
    bool remote_has_gid = false;
    for (int i = 0; i < 16; i++)
        remote_has_gid |= r.gid[i] != 0;
    if (vb->global && !remote_has_gid) {
        SL_WARN("xport: the peer's verbs blob has no GID, and %s needs one", vb->name);
        return SL_ERR_MSG_RANGE;
    }
    int rc;
    while (vb->recv_posted < (unsigned)vb->cfg.rq_depth)
        if ((rc = s_post_recv(vb)) != 0) {
            errno = rc;
            SL_ERROR("xport: ibv_post_recv(%s): %m", vb->name);
            return SL_ERR_IO;
        }
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof(a));
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = (enum ibv_mtu)(r.mtu < vb->port.active_mtu ? r.mtu : vb->port.active_mtu);
    a.dest_qp_num = r.qpn;
    a.rq_psn = r.psn;
    a.max_dest_rd_atomic = 1;
    a.min_rnr_timer = 12;
    a.ah_attr.port_num = (uint8_t)vb->cfg.port;
    a.ah_attr.dlid = r.lid;
    a.ah_attr.sl = (uint8_t)vb->cfg.ib_sl;
    if (vb->global) {
        a.ah_attr.is_global = 1;
        memcpy(a.ah_attr.grh.dgid.raw, r.gid, 16);
        a.ah_attr.grh.sgid_index = (uint8_t)vb->gid_index;
        a.ah_attr.grh.hop_limit = 64;
        a.ah_attr.grh.traffic_class = (uint8_t)vb->cfg.traffic_class;
    }
    rc = ibv_modify_qp(vb->qp, &a,
                       IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                           IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (rc != 0) {
        errno = rc;
        SL_ERROR("xport: ibv_modify_qp(%s, RTR to QPN %u): %m", vb->name, r.qpn);
        return SL_ERR_IO;
    }
    memset(&a, 0, sizeof(a));
    a.qp_state = IBV_QPS_RTS;
    a.timeout = (uint8_t)vb->cfg.ack_timeout;
    a.retry_cnt = (uint8_t)vb->cfg.retry_cnt;
    a.rnr_retry = (uint8_t)vb->cfg.rnr_retry;
    a.sq_psn = vb->psn;
    a.max_rd_atomic = 1;
    rc = ibv_modify_qp(vb->qp, &a,
                       IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                           IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    if (rc != 0) {
        errno = rc;
        SL_ERROR("xport: ibv_modify_qp(%s, RTS): %m", vb->name);
        return SL_ERR_IO;
    }
    vb->remote = r;
    vb->connected = true;
    return SL_OK;
}

sl_status_t sl_xport_verbs_write_blocks(sl_xport_verbs_t *vb, sl_xport_verbs_mr_t *mr,
                                        const sl_xport_block_t *blocks, size_t n, uint32_t imm,
                                        sl_xport_verbs_done_cb_t cb, void *arg)
{
    if (!vb || !mr || !vb->connected)
        return SL_ERR_INVALID;
    if (vb->failed)
        return SL_ERR_PEER_LOST;
    sl_status_t st = sl_xport_blocks_check(blocks, n, mr->len, vb->remote.len, NULL);
    if (st != SL_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (blocks[i].len > vb->port.max_msg_sz)
            return SL_ERR_INVALID;
    if (n + 1 > (size_t)vb->cfg.sq_depth)
        return SL_ERR_OVERFLOW;
    if ((size_t)vb->sq_free < n + 1 || vb->count == (unsigned)vb->cfg.sq_depth)
        return SL_ERR_AGAIN;
    unsigned slot = (vb->head + vb->count) % (unsigned)vb->cfg.sq_depth;
    uint32_t credits = 0;
    for (size_t i = 0; i <= n; i++) {
        struct ibv_send_wr *w = &vb->wrs[i];
        memset(w, 0, sizeof(*w));
        w->next = i < n ? &vb->wrs[i + 1] : NULL;
        w->wr.rdma.rkey = vb->remote.rkey;
        credits++;
        if (i < n) {
            vb->sges[i].addr = (uint64_t)(uintptr_t)mr->base + blocks[i].local_off;
            vb->sges[i].length = (uint32_t)blocks[i].len;
            vb->sges[i].lkey = mr->mr->lkey;
            w->sg_list = &vb->sges[i];
            w->num_sge = 1;
            w->opcode = IBV_WR_RDMA_WRITE;
            w->wr.rdma.remote_addr = vb->remote.addr + blocks[i].remote_off;
            if (credits == (uint32_t)vb->cfg.signal_every) {
                w->send_flags = IBV_SEND_SIGNALED;
                w->wr_id = S_WR_ID(slot, credits, false);
                credits = 0;
            } else {
                w->wr_id = S_WR_ID(slot, 0, false);
            }
        } else {
            w->opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
            w->imm_data = htonl(imm);
            w->wr.rdma.remote_addr = vb->remote.addr;
            w->send_flags = IBV_SEND_SIGNALED;
            w->wr_id = S_WR_ID(slot, credits, true);
        }
    }
    s_list_t *l = &vb->lists[slot];
    l->cb = cb;
    l->arg = arg;
    l->status = SL_OK;
    struct ibv_send_wr *bad = NULL;
    int rc = ibv_post_send(vb->qp, vb->wrs, &bad);
    if (rc != 0 && bad == vb->wrs) {
        memset(l, 0, sizeof(*l));
        errno = rc;
        SL_ERROR("xport: ibv_post_send(%s, %zu writes): %m", vb->name, n + 1);
        return SL_ERR_IO;
    }
    vb->count++;
    vb->sq_free -= (int)(n + 1);
    if (rc != 0) {
        /* part of the list went out: fail the queue pair, so that what was
         * posted is flushed and the list completes with an error */
        errno = rc;
        SL_ERROR("xport: ibv_post_send(%s) took only part of a list: %m", vb->name);
        struct ibv_qp_attr a;
        memset(&a, 0, sizeof(a));
        a.qp_state = IBV_QPS_ERR;
        ibv_modify_qp(vb->qp, &a, IBV_QP_STATE);
        vb->failed = true;
        l->status = SL_ERR_PEER_LOST;
    }
    return SL_OK;
}

void sl_xport_verbs_set_imm_handler(sl_xport_verbs_t *vb, sl_xport_verbs_imm_cb_t cb, void *arg)
{
    vb->imm_cb = cb;
    vb->imm_arg = arg;
}

unsigned sl_xport_verbs_progress(sl_xport_verbs_t *vb)
{
    struct ibv_wc wc[16];
    unsigned handled = 0;
    int got;
    while (vb && (got = ibv_poll_cq(vb->cq, 16, wc)) > 0) {
        for (int i = 0; i < got; i++, handled++) {
            const struct ibv_wc *c = &wc[i];
            if (c->wr_id & S_WR_RECV) {
                vb->recv_posted--;
                if (c->status != IBV_WC_SUCCESS)
                    continue; /* flushed: the queue pair is going down */
                if (c->opcode == IBV_WC_RECV_RDMA_WITH_IMM && vb->imm_cb)
                    vb->imm_cb(vb->imm_arg, ntohl(c->imm_data));
                int rc = vb->failed ? 0 : s_post_recv(vb);
                if (rc != 0) {
                    errno = rc;
                    SL_ERROR("xport: reposting a receive on %s: %m", vb->name);
                }
                continue;
            }
            unsigned slot = (unsigned)((c->wr_id >> 32) & 0xffff);
            vb->sq_free += (int)(c->wr_id & 0xffffffffu);
            if (c->status != IBV_WC_SUCCESS) {
                if (!vb->failed && c->status != IBV_WC_WR_FLUSH_ERR)
                    SL_ERROR("xport: RDMA write on %s failed: %s (vendor error %u)", vb->name,
                             ibv_wc_status_str(c->status), c->vendor_err);
                vb->failed = true;
                if (slot < (unsigned)vb->cfg.sq_depth)
                    vb->lists[slot].status = SL_ERR_PEER_LOST;
            }
            if ((c->wr_id & S_WR_LAST) && vb->count > 0)
                s_list_done(vb, c->status == IBV_WC_SUCCESS ? SL_OK : SL_ERR_PEER_LOST);
        }
    }
    return handled;
}
