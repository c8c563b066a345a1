/*
 * Sluice transport, GPU memory lanes: two ways to move KV blocks that live
 * in device memory without going through the host.
 *
 * CUDA IPC lane (sl_xport_ipc_*): two processes on one node. The owner of a
 * device KV pool exports it as a small blob (a cudaIpcMemHandle_t with the
 * region's length, device and owner), which travels next to the UCX engine
 * address; the peer opens it once and then copies block lists between its
 * own device memory and the mapped region with one gather kernel per list on
 * a stream of its own. Completion is local (the copy's event); the peer tells
 * the owner through the control path that the bytes are in place.
 *
 * GPUDirect RDMA lane (sl_xport_verbs_*): between nodes through rdma-core
 * verbs. Device memory is registered with ibv_reg_dmabuf_mr from the dma-buf
 * that the CUDA driver exports (libcuda is opened with dlopen, so nothing
 * needs a driver at link time), host memory with ibv_reg_mr. One RC queue
 * pair per peer is brought up from an exchanged blob (QPN, LID, GID, PSN,
 * region address, length and rkey); a block list goes as RDMA WRITEs and a
 * final zero-length WRITE_WITH_IMM whose immediate reaches the peer after
 * the data (RC delivers in order).
 *
 * Both lanes are compiled into every build; where there is no CUDA build, no
 * GPU or no RDMA device, their entry points return SL_ERR_UNSUPPORTED and
 * say why in the log (info level). The blob codecs and the block checks are
 * pure and work everywhere.
 *
 * Threading: every object here belongs to one thread.
 */
#ifndef SLUICE_XPORT_GPU_H
#define SLUICE_XPORT_GPU_H

#include <sluice/xport.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- block lists (pure) ------------------------------------------------- */

/*
 * Check a block list against a local and a remote region of the given
 * lengths: SL_ERR_INVALID for an empty list or a zero-length block,
 * SL_ERR_MSG_RANGE for a block outside either region (overflow included).
 * *bytes_p (may be NULL) gets the total on success.
 */
sl_status_t sl_xport_blocks_check(const sl_xport_block_t *blocks, size_t n, uint64_t local_len,
                                  uint64_t remote_len, uint64_t *bytes_p);

/* ---- CUDA IPC lane ------------------------------------------------------ */

#define SL_XPORT_IPC_HANDLE_LEN 64 /* bytes of a cudaIpcMemHandle_t */
#define SL_XPORT_IPC_BLOB_LEN 112  /* bytes of an encoded IPC export blob */

/* What an IPC export blob says (the decoded form). */
typedef struct sl_xport_ipc_desc {
    uint8_t handle[SL_XPORT_IPC_HANDLE_LEN]; /* cudaIpcMemHandle_t of the allocation */
    uint8_t uuid[16];                        /* UUID of the exporter's GPU */
    uint64_t offset;                         /* region start inside the allocation */
    uint64_t len;                            /* region bytes */
    uint32_t pid;                            /* exporting process (it cannot open its own) */
} sl_xport_ipc_desc_t;

/* Encode d into buf (cap >= SL_XPORT_IPC_BLOB_LEN); *len_p gets the length. */
sl_status_t sl_xport_ipc_blob_encode(const sl_xport_ipc_desc_t *d, void *buf, size_t cap,
                                     size_t *len_p);

/* Decode and validate a blob: SL_ERR_MSG_MALFORMED for a wrong length or
 * magic, SL_ERR_MSG_VERSION for another version, SL_ERR_MSG_RANGE for a zero
 * length, an offset past 2^48 or a zero pid. *d is written only on success. */
sl_status_t sl_xport_ipc_blob_decode(const void *buf, size_t len, sl_xport_ipc_desc_t *d);

/*
 * Export [base, base + len) of device memory: base must lie inside one
 * cudaMalloc allocation (the blob names the allocation and base's offset in
 * it). Writes the blob into buf (cap >= SL_XPORT_IPC_BLOB_LEN) and its length
 * into *len_p. The caller keeps owning the memory and must keep it allocated
 * while peers have it open. SL_ERR_UNSUPPORTED without CUDA or a GPU,
 * SL_ERR_IO when CUDA refuses (logged); outputs written only on success.
 */
sl_status_t sl_xport_ipc_export(void *base, size_t len, void *buf, size_t cap, size_t *len_p);

typedef struct sl_xport_ipc sl_xport_ipc_t; /* an opened peer region and its copy stream */

/* Completion of one block-list copy: SL_OK once every byte is in place. */
typedef void (*sl_xport_ipc_done_cb_t)(void *arg, sl_status_t status);

#define SL_XPORT_IPC_SLOTS 8 /* block-list copies in flight per opened region */

/*
 * Open a peer's export blob in this process (cudaIpcOpenMemHandle on the
 * current device) and create the stream and copy slots used with it. On
 * success *ipc_p owns the mapping; on error *ipc_p is unchanged
 * (SL_ERR_MSG_* for a bad blob, SL_ERR_INVALID for this process's own blob,
 * SL_ERR_UNSUPPORTED without CUDA or a GPU, SL_ERR_IO when CUDA refuses).
 */
sl_status_t sl_xport_ipc_open(const void *blob, size_t len, sl_xport_ipc_t **ipc_p);

/* Wait for the copies in flight (their callbacks run, with SL_ERR_SHUTDOWN
 * when the wait fails), unmap the region, free the slots. NULL-safe; sets
 * *ipc_p = NULL. */
void sl_xport_ipc_close(sl_xport_ipc_t **ipc_p);

/* Bytes of the opened region. */
uint64_t sl_xport_ipc_region_len(const sl_xport_ipc_t *ipc);

/*
 * Copy a block list between local device memory [local, local + local_len)
 * and the opened region: SL_XPORT_PUT writes the region, SL_XPORT_GET reads
 * it. The list is checked first (sl_xport_blocks_check); the copy is
 * enqueued on the region's stream (one descriptor upload and one kernel) and
 * the call returns. cb (may be NULL) runs exactly once from
 * sl_xport_ipc_progress() or sl_xport_ipc_close(). On error nothing is
 * enqueued and cb is not called: SL_ERR_AGAIN when SL_XPORT_IPC_SLOTS
 * copies are in flight, SL_ERR_INVALID / SL_ERR_MSG_RANGE for a bad list,
 * SL_ERR_IO when CUDA refuses. The block list is copied; the caller keeps it.
 */
sl_status_t sl_xport_ipc_copy_blocks(sl_xport_ipc_t *ipc, sl_xport_op_t op, void *local,
                                     uint64_t local_len, const sl_xport_block_t *blocks, size_t n,
                                     sl_xport_ipc_done_cb_t cb, void *arg);

/* Run the callbacks of finished copies, oldest first; returns how many ran. */
unsigned sl_xport_ipc_progress(sl_xport_ipc_t *ipc);

/* Block until every copy in flight has finished, then progress. */
sl_status_t sl_xport_ipc_wait(sl_xport_ipc_t *ipc);

/* ---- GPUDirect RDMA lane (rdma-core verbs) ------------------------------ */

#define SL_XPORT_VERBS_BLOB_LEN 64 /* bytes of an encoded connection blob */

/* What a verbs connection blob says: one side's queue pair and region. */
typedef struct sl_xport_verbs_desc {
    uint32_t qpn;    /* queue pair number (24 bits) */
    uint32_t psn;    /* first packet sequence number (24 bits) */
    uint16_t lid;    /* port LID (InfiniBand); 0 on RoCE */
    uint8_t mtu;     /* enum ibv_mtu of the port's active MTU (1..5) */
    uint8_t gid[16]; /* port GID at the configured index (RoCE, routed IB) */
    uint64_t addr;   /* remote address of the region's first byte */
    uint64_t len;    /* region bytes */
    uint32_t rkey;   /* the region's remote key */
} sl_xport_verbs_desc_t;

/* Encode d into buf (cap >= SL_XPORT_VERBS_BLOB_LEN). */
sl_status_t sl_xport_verbs_blob_encode(const sl_xport_verbs_desc_t *d, void *buf, size_t cap,
                                       size_t *len_p);

/* Decode and validate: SL_ERR_MSG_MALFORMED (length, magic, reserved bits),
 * SL_ERR_MSG_VERSION, SL_ERR_MSG_RANGE (QPN zero or over 24 bits, PSN over
 * 24 bits, MTU outside 1..5, zero length, region wrapping past 2^64, neither
 * a LID nor a GID). *d is written only on success. */
sl_status_t sl_xport_verbs_blob_decode(const void *buf, size_t len, sl_xport_verbs_desc_t *d);

/* Verbs lane configuration; every knob is a row of sl_xport_verbs_cfg_table. */
typedef struct sl_xport_verbs_cfg {
    char device[64];   /* RDMA device name; empty = the first one found */
    int port;          /* port number (from 1) */
    int gid_index;     /* GID table index for RoCE / routed fabrics; -1 = none (IB LID) */
    int sq_depth;      /* send work requests per queue pair */
    int rq_depth;      /* receive work requests kept posted for immediates */
    int signal_every;  /* writes per signaled completion */
    int ack_timeout;   /* local ACK timeout exponent: 4.096 us x 2^n per try */
    int retry_cnt;     /* transport retries before a write fails (0..7) */
    int rnr_retry;     /* receiver-not-ready retries (0..7, 7 = forever) */
    int ib_sl;         /* InfiniBand service level of the queue pair */
    int traffic_class; /* RoCE traffic class (GRH) */
} sl_xport_verbs_cfg_t;

/* Knob table (common/sl_cfg.h), ending with SL_CFG_END. */
extern const struct sl_cfg_field *const sl_xport_verbs_cfg_table;

/* Fill cfg with the table's defaults. */
sl_status_t sl_xport_verbs_cfg_defaults(sl_xport_verbs_cfg_t *cfg);

/* The longest time a write to a silent peer waits before it fails:
 * 4.096 us x 2^ack_timeout x (retry_cnt + 1), in nanoseconds. */
int64_t sl_xport_verbs_fail_ns(const sl_xport_verbs_cfg_t *cfg);

typedef struct sl_xport_verbs sl_xport_verbs_t;       /* device, PD, CQ, one RC QP */
typedef struct sl_xport_verbs_mr sl_xport_verbs_mr_t; /* a registered region */

/* Completion of one block-list write: SL_OK once the peer acknowledged the
 * data and the immediate; SL_ERR_PEER_LOST when the queue pair failed. */
typedef void (*sl_xport_verbs_done_cb_t)(void *arg, sl_status_t status);

/* An immediate received from the peer (after the data it follows). */
typedef void (*sl_xport_verbs_imm_cb_t)(void *arg, uint32_t imm);

/*
 * Find the RDMA device (cfg->device, or the first), open it, and create a
 * protection domain, a completion queue and an RC queue pair in INIT. On
 * success *vb_p owns them; on error nothing is kept and *vb_p is unchanged:
 * SL_ERR_UNSUPPORTED when there is no RDMA device, not the one named, one
 * that cannot be opened here or whose port is not active (an info line says
 * so), SL_ERR_INVALID for a bad port or knob, SL_ERR_IO when
 * a verbs call fails (logged with its cause).
 */
sl_status_t sl_xport_verbs_open(const sl_xport_verbs_cfg_t *cfg, sl_xport_verbs_t **vb_p);

/* Destroy the queue pair, completion queue, protection domain and device
 * context; pending writes complete with SL_ERR_SHUTDOWN. Regions must have
 * been deregistered. NULL-safe; sets *vb_p = NULL. */
void sl_xport_verbs_close(sl_xport_verbs_t **vb_p);

/* The opened device's name (valid while vb lives). */
const char *sl_xport_verbs_device_name(const sl_xport_verbs_t *vb);

/*
 * Register [base, base + len) for local writes and remote writes. Host
 * memory goes through ibv_reg_mr; CUDA device memory through the dma-buf fd
 * from cuMemGetHandleForAddressRange (libcuda.so.1 opened with dlopen) and
 * ibv_reg_dmabuf_mr. The caller keeps owning the memory. On error *mr_p is
 * unchanged: SL_ERR_UNSUPPORTED when the driver or device cannot export or
 * take dma-bufs, SL_ERR_IO when registration fails.
 */
sl_status_t sl_xport_verbs_reg(sl_xport_verbs_t *vb, void *base, size_t len,
                               sl_xport_mem_type_t type, sl_xport_verbs_mr_t **mr_p);

/* Deregister; NULL-safe; sets *mr_p = NULL. Writes using it must be done. */
void sl_xport_verbs_dereg(sl_xport_verbs_t *vb, sl_xport_verbs_mr_t **mr_p);

/* This side's connection blob (queue pair, port, and the region mr that the
 * peer may write), into buf (cap >= SL_XPORT_VERBS_BLOB_LEN). */
sl_status_t sl_xport_verbs_local_blob(sl_xport_verbs_t *vb, const sl_xport_verbs_mr_t *mr,
                                      void *buf, size_t cap, size_t *len_p);

/*
 * Bring the queue pair up to the peer described by its blob (INIT -> RTR ->
 * RTS) and post the receives that take its immediates. The blob is decoded
 * and validated first (SL_ERR_MSG_*). SL_ERR_EXISTS when already connected;
 * SL_ERR_IO when a transition fails (logged). On error the queue pair is
 * left unusable for this peer (close and reopen).
 */
sl_status_t sl_xport_verbs_connect(sl_xport_verbs_t *vb, const void *blob, size_t len);

/*
 * Write a block list from the local region mr into the peer's region, then
 * a zero-length WRITE_WITH_IMM carrying imm, which the peer sees only after
 * the data. Checked first (sl_xport_blocks_check against mr and the peer's
 * region); on error nothing is posted and cb is not called (SL_ERR_INVALID,
 * SL_ERR_MSG_RANGE, SL_ERR_PEER_LOST once the queue pair failed,
 * SL_ERR_AGAIN when the send queue cannot take the list now; lists longer
 * than sq_depth - 1 blocks are SL_ERR_OVERFLOW). cb (may be NULL) runs
 * exactly once from sl_xport_verbs_progress() or sl_xport_verbs_close().
 */
sl_status_t sl_xport_verbs_write_blocks(sl_xport_verbs_t *vb, sl_xport_verbs_mr_t *mr,
                                        const sl_xport_block_t *blocks, size_t n, uint32_t imm,
                                        sl_xport_verbs_done_cb_t cb, void *arg);

/* Set the handler of immediates received from the peer. */
void sl_xport_verbs_set_imm_handler(sl_xport_verbs_t *vb, sl_xport_verbs_imm_cb_t cb, void *arg);

/* Poll the completion queue: run write callbacks and the immediate handler,
 * repost receives; returns how many completions it handled. */
unsigned sl_xport_verbs_progress(sl_xport_verbs_t *vb);

#ifdef __cplusplus
}
#endif
#endif
