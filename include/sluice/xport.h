/*
 * Sluice transport: a UCX (ucp) data plane for KV-cache blocks and
 * activations, with traffic classes.
 *
 * An engine owns one UCP context and worker per traffic class. Its address
 * (all class workers together) is published through the scheduler's
 * authenticated channel; a peer connects with it. Memory is registered once
 * and its remote key packed for the peer; the peer imports it and gets a
 * small integer id to name it in transfers. A transfer is a list of blocks
 * (scattered local ranges to scattered remote ranges) in one class, with one
 * completion callback and an optional notification that reaches the peer
 * only after the data has landed (data, then flush, then notification).
 *
 * Threading: an engine and everything created from it belong to one thread.
 * Callbacks run inside sl_xport_progress() (or inside a call that fails, never
 * both for the same transfer).
 */
#ifndef SLUICE_XPORT_H
#define SLUICE_XPORT_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_XPORT_NOTIF_MAX 4096      /* largest notification payload in bytes */
#define SL_XPORT_STAGE_NOTIF_MAX 256 /* ... of a transfer staged through host memory */
#define SL_XPORT_ADDR_MAX 65536      /* largest engine address in bytes */

typedef struct sl_xport sl_xport_t;           /* engine (opaque) */
typedef struct sl_xport_peer sl_xport_peer_t; /* connection to one remote engine (opaque) */
typedef struct sl_xport_mem sl_xport_mem_t;   /* a registered local region (opaque) */

/* Traffic classes, in priority order. */
typedef enum sl_xport_class {
    SL_XPORT_CONTROL = 0,    /* notifications; strict priority, tiny */
    SL_XPORT_CRITICAL = 1,   /* KV-cache blocks and activations */
    SL_XPORT_BACKGROUND = 2, /* logs, metrics, weights, checkpoints, prefetch */
    SL_XPORT_NCLASS = 3,     /* number of classes */
} sl_xport_class_t;

typedef enum sl_xport_op {
    SL_XPORT_PUT = 0, /* local blocks -> remote blocks */
    SL_XPORT_GET = 1, /* remote blocks -> local blocks */
} sl_xport_op_t;

typedef enum sl_xport_mem_type {
    SL_XPORT_MEM_HOST = 0, /* ordinary host memory */
    SL_XPORT_MEM_CUDA = 1, /* CUDA device memory (direct, or through host staging) */
} sl_xport_mem_type_t;

/* One block of a transfer: offsets are relative to the local region and the
 * remote region; len bytes are moved. */
typedef struct sl_xport_block {
    uint64_t local_off;  /* offset in the local region */
    uint64_t remote_off; /* offset in the remote region */
    uint64_t len;        /* bytes; must be > 0 */
} sl_xport_block_t;

/* Completion of a transfer: SL_OK once the data has landed and the
 * notification (if any) has been handed to the peer; an error otherwise
 * (SL_ERR_PEER_LOST when the peer failed). */
typedef void (*sl_xport_done_cb_t)(void *arg, sl_status_t status);

/* A notification received from a peer; data is valid during the call only. */
typedef void (*sl_xport_notif_cb_t)(void *arg, const void *data, size_t len);

/*
 * The copy step of the device staging pipeline: copy len bytes between a
 * device region and pinned host memory (either direction), and return only
 * once the bytes are in place. ctx is the engine's copy context. The CUDA
 * version copies on a CUDA stream; tests use plain memcpy.
 */
typedef sl_status_t (*sl_xport_copy_fn_t)(void *ctx, void *dst, const void *src, size_t len);

/* Engine configuration; every knob is a row of sl_xport_cfg_table. */
typedef struct sl_xport_cfg {
    int chunk_kib;                /* scheduling unit: transfers are cut into chunks of this size */
    int inflight_kib;             /* cap on bytes posted to UCX and not yet completed */
    double bg_share;              /* background's cap: its share of the link (token bucket) */
    double bg_floor;              /* background's share of the bytes while critical contends */
    double link_mbps;             /* link capacity in MB/s for the background bucket; 0 = unset */
    int probe_window_ms;          /* link probe measuring window (the capacity is the median one) */
    int stage_chunk_kib;          /* device staging chunk (1 to 4 MiB) */
    int stage_slots;              /* bounce-buffer slots per ring (credits) */
    int ib_sl[SL_XPORT_NCLASS];   /* InfiniBand service level per class; -1 = UCX default */
    int roce_tc[SL_XPORT_NCLASS]; /* RoCE traffic class per class; -1 = UCX default */
    int tos[SL_XPORT_NCLASS];     /* IP TOS byte (DSCP << 2) per class for TCP sockets */
    int keepalive_ms;        /* UCX keepalive interval (dead-peer detection on shared memory) */
    int close_flush_ms;      /* a disconnect waits this long at most for a live peer's
                                connection handshake still under way (0 = never) */
    char net_devices[256];   /* UCX_NET_DEVICES of every context: "auto" (the NICs nearest
                                gpu_pci, or UCX's default without one), "" (UCX's default) or
                                a UCX device list */
    char gpu_pci[32];        /* PCI bus id of the GPU the engine serves ("" = none) */
    char sysfs[256];         /* sysfs root the NIC choice reads */
    int mark_interval_ms;    /* how often UCX's new TCP sockets are looked for and marked
                                (0 = never) */
    char tcp_congestion[16]; /* TCP congestion control of UCX's sockets ("": the host's) */
    bool posix_peer_failure; /* let shared memory report peer failure (UCX_POSIX_ERROR_HANDLING) */
    bool direct_copy;        /* copy into a peer region shared memory maps, not UCX's put */
    sl_xport_copy_fn_t copy; /* staging copy step; NULL = CUDA when built, else none */
    void *copy_ctx;          /* context passed to copy */
} sl_xport_cfg_t;

/* Knob table (common/sl_cfg.h) for sl_cfg_load(), ending with SL_CFG_END;
 * copy and copy_ctx are set in code, not here. */
extern const struct sl_cfg_field *const sl_xport_cfg_table;

/* Per-class counters (bytes posted to UCX and completed). */
typedef struct sl_xport_stats {
    uint64_t bytes[SL_XPORT_NCLASS];  /* payload bytes completed, per class */
    uint64_t chunks[SL_XPORT_NCLASS]; /* chunks completed, per class */
    uint64_t xfers_ok;                /* transfers completed successfully */
    uint64_t xfers_failed;            /* transfers completed with an error */
    uint64_t notifs_rx;               /* notifications received */
    uint64_t staged_bytes;            /* bytes moved through the staging pipeline */
    uint64_t direct_bytes;            /* bytes copied by the engine into or out of a peer's
                                       * region mapped by shared memory (xport-direct-copy) */
} sl_xport_stats_t;

/* Fill cfg with the table's defaults. */
sl_status_t sl_xport_cfg_defaults(sl_xport_cfg_t *cfg);

/*
 * Create an engine: one UCP context and worker per class, marked per class,
 * with peer-failure error handling. Probes whether UCX takes CUDA memory.
 * On success *xp_p owns the engine; on error *xp_p is unchanged and nothing
 * is left allocated.
 */
sl_status_t sl_xport_create(const sl_xport_cfg_t *cfg, sl_xport_t **xp_p);

/* Destroy the engine: fails every pending transfer with SL_ERR_SHUTDOWN,
 * closes peers, releases memory handles. NULL-safe; sets *xp_p = NULL. */
void sl_xport_destroy(sl_xport_t **xp_p);

/* The engine's address, to be sent to peers. The buffer belongs to the
 * engine and lives as long as it. */
sl_status_t sl_xport_address(sl_xport_t *xp, const void **addr_p, size_t *len_p);

/* True when UCX takes CUDA device pointers directly (GPUDirect RDMA);
 * false when device memory goes through the staging pipeline. */
bool sl_xport_cuda_direct(const sl_xport_t *xp);

/* Connect to a peer given its address. The engine owns the peer; the caller
 * may release it early with sl_xport_disconnect(). On error nothing is kept. */
sl_status_t sl_xport_connect(sl_xport_t *xp, const void *addr, size_t len,
                             sl_xport_peer_t **peer_p);

/* Fail the peer's pending transfers with SL_ERR_CANCELED and close it.
 * NULL-safe; sets *peer_p = NULL. */
void sl_xport_disconnect(sl_xport_t *xp, sl_xport_peer_t **peer_p);

/* True once the peer has failed; its transfers then complete with an error. */
bool sl_xport_peer_failed(const sl_xport_peer_t *peer);

/*
 * Register [base, base+len) once for reuse. CUDA memory is registered with
 * UCX only when UCX takes it; otherwise it is marked for staging and never
 * handed to UCX. The caller keeps owning the memory; *mem_p must be
 * deregistered before the memory is freed. On error *mem_p is unchanged.
 */
sl_status_t sl_xport_mem_register(sl_xport_t *xp, void *base, size_t len, sl_xport_mem_type_t type,
                                  sl_xport_mem_t **mem_p);

/*
 * Allocate len bytes of host memory through UCX and register them, so that a
 * peer on the same host can map the region and a put into it (or from it)
 * is a plain copy (over posix/sysv shared memory; registered application
 * memory is carried by UCX's software RMA instead). The memory is allocated
 * in the critical class's context (the class that moves KV-cache) and the
 * same range is registered with the background class's context; the packed
 * key carries both. *base_p is the first byte (page aligned; its contents
 * are undefined). The region owns the memory: sl_xport_mem_deregister()
 * (or engine destroy) frees it. Only SL_XPORT_MEM_HOST: SL_ERR_UNSUPPORTED
 * for CUDA, SL_ERR_INVALID for bad arguments, SL_ERR_NOMEM or SL_ERR_IO when
 * UCX cannot allocate or register. On error nothing is kept and the outputs
 * are unchanged.
 */
sl_status_t sl_xport_mem_alloc(sl_xport_t *xp, size_t len, sl_xport_mem_type_t type, void **base_p,
                               sl_xport_mem_t **mem_p);

/* Deregister; NULL-safe; sets *mem_p = NULL. Transfers using it must be done.
 * A region from sl_xport_mem_alloc() is freed as well. */
void sl_xport_mem_deregister(sl_xport_t *xp, sl_xport_mem_t **mem_p);

/* Pack the region's remote key for a peer. On success *buf_p is a malloc'd
 * buffer the caller frees with free(). */
sl_status_t sl_xport_mem_pack(sl_xport_t *xp, const sl_xport_mem_t *mem, void **buf_p,
                              size_t *len_p);

/* Import a packed remote key from this peer; *id_p names the remote region in
 * transfers to the peer. The blob is validated (SL_ERR_MSG_MALFORMED when it
 * is not one). On error *id_p is unchanged. */
sl_status_t sl_xport_rkey_import(sl_xport_t *xp, sl_xport_peer_t *peer, const void *buf, size_t len,
                                 uint32_t *id_p);

/* A transfer request; the engine copies what it needs (blocks included). */
typedef struct sl_xport_xfer {
    sl_xport_op_t op;               /* put or get */
    sl_xport_class_t cls;           /* critical or background (control is for notifications) */
    sl_xport_mem_t *local;          /* local registered region */
    uint32_t remote;                /* remote region id from sl_xport_rkey_import() */
    const sl_xport_block_t *blocks; /* block list */
    size_t nblocks;                 /* number of blocks; must be > 0 */
    const void *notif;              /* notification for the peer after the data; may be NULL */
    size_t notif_len;               /* its length, <= SL_XPORT_NOTIF_MAX (staged:
                                       SL_XPORT_STAGE_NOTIF_MAX) */
    sl_xport_done_cb_t cb;          /* completion callback; may be NULL */
    void *cb_arg;                   /* its argument */
} sl_xport_xfer_t;

/*
 * Post a transfer to a peer. Validates everything first: SL_ERR_INVALID for
 * an empty list, zero-length block or bad class, SL_ERR_NOT_FOUND for an
 * unknown remote id, SL_ERR_MSG_RANGE for a block outside either region,
 * SL_ERR_PEER_LOST for a failed peer, SL_ERR_UNSUPPORTED for a staged get.
 * On error nothing is queued and cb is not called; on success cb is called
 * exactly once from sl_xport_progress().
 */
sl_status_t sl_xport_post(sl_xport_t *xp, sl_xport_peer_t *peer, const sl_xport_xfer_t *xfer);

/* Set the handler of notifications received from any peer. */
void sl_xport_set_notif_handler(sl_xport_t *xp, sl_xport_notif_cb_t cb, void *arg);

/* Drive UCX and the class scheduler; returns how many events it handled. */
unsigned sl_xport_progress(sl_xport_t *xp);

/* A file descriptor that becomes readable when sl_xport_progress() has work. */
int sl_xport_fd(const sl_xport_t *xp);

/* Prepare to sleep on sl_xport_fd(): SL_OK when it is safe to sleep,
 * SL_ERR_AGAIN when there is work to progress first. */
sl_status_t sl_xport_arm(sl_xport_t *xp);

/* Set the link capacity (bytes per second) that the background bucket is a
 * share of; 0 removes the bucket. */
void sl_xport_set_link_bps(sl_xport_t *xp, double bps);

/* Background bytes sent outside the engine (log shipping on a socket of
 * its own) take their share of the background bucket, so that all the
 * background traffic of the process stays under the share together:
 * SL_OK when taken or when there is no bucket (no link capacity set),
 * SL_ERR_AGAIN (nothing taken) when the bucket holds fewer tokens now. */
sl_status_t sl_xport_bg_take(sl_xport_t *xp, uint64_t bytes);

/*
 * Measure the link to a peer by saturating it with critical puts of len
 * bytes for the given time, and set the result as the link capacity. The
 * puts walk the local and the remote region block by block (both must hold
 * at least len bytes; the local region is sent, the remote one overwritten).
 * After a warm-up of a quarter of the time, the time is cut into windows of
 * xport-probe-window-ms and the capacity is the median window's rate. Other
 * traffic should be quiet. On error the capacity is unchanged: SL_ERR_INVALID
 * (bad arguments, unknown remote id), SL_ERR_MSG_RANGE (len larger than a
 * region), or the first transfer error.
 */
sl_status_t sl_xport_link_probe(sl_xport_t *xp, sl_xport_peer_t *peer, sl_xport_mem_t *local,
                                uint32_t remote, uint64_t len, double seconds, double *bps_p);

/* The UCX_NET_DEVICES the engine's contexts were made with, after "auto" was
 * resolved; "" when UCX chose (its default). Lives as long as the engine. */
const char *sl_xport_net_devices(const sl_xport_t *xp);

/* Print, per class, the UCX transports and lanes the peer's endpoints use. */
void sl_xport_peer_describe(const sl_xport_peer_t *peer, FILE *out);

/* Copy the per-class counters. */
void sl_xport_stats(const sl_xport_t *xp, sl_xport_stats_t *stats);

/* The IP TOS byte (DSCP << 2) of class cls's TCP traffic (xport-tos-*), or
 * -1 for an unknown class. A ZeroMQ socket that carries the class is marked
 * with it by its owner: sl_wire_sock_mark(sock, sl_xport_class_tos(cfg, cls))
 * (proto/sl_wire_mark.h), so the transport does not link ZeroMQ. */
int sl_xport_class_tos(const sl_xport_cfg_t *cfg, sl_xport_class_t cls);

/* The CUDA copy step (cudaMemcpyAsync on a stream, then synchronize), or
 * NULL when the build has no CUDA. */
sl_xport_copy_fn_t sl_xport_cuda_copy_fn(void);

#ifdef __cplusplus
}
#endif
#endif
