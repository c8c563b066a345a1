/* Internals of the transport engine shared by its files; not installed. */
#ifndef SL_XPORT_INT_H
#define SL_XPORT_INT_H

#include <sluice/xport.h>

#include <ucp/api/ucp.h>

#include "common/sl_list.h"
#include "transport/sl_xport_sched.h"
#include "transport/sl_xport_tcpmark.h"

#define SL_XPORT_WIRE_VERSION 1 /* version of the engine address and key blobs */
#define SL_XPORT_AM_NOTIF 1     /* AM id: notification after flushed data (control worker) */
#define SL_XPORT_AM_STAGE 2     /* AM id: one staged chunk (critical and background workers) */

/* A registered local region. */
struct sl_xport_mem {
    sl_list_t link;           /* in sl_xport.mems */
    void *base;               /* first byte */
    size_t len;               /* bytes */
    sl_xport_mem_type_t type; /* host or CUDA */
    bool staged;              /* device memory that UCX cannot take: goes through bounce buffers */
    ucp_mem_h memh[SL_XPORT_NCLASS]; /* per data class context; NULL for control and when staged */
};

/* A remote region imported from a peer. */
typedef struct sl_xport_rkey {
    uint64_t base;                    /* remote address of its first byte */
    uint64_t len;                     /* bytes */
    bool staged;                      /* remote side stages it: data goes by staged messages */
    ucp_rkey_h rkey[SL_XPORT_NCLASS]; /* unpacked per data class; NULL when staged */
} sl_xport_rkey_t;

/* Connection to one remote engine. */
struct sl_xport_peer {
    sl_list_t link;                   /* in sl_xport.peers */
    sl_xport_t *xp;                   /* owning engine */
    ucp_ep_h ep[SL_XPORT_NCLASS];     /* one endpoint per class worker */
    void *handshake[SL_XPORT_NCLASS]; /* flush posted at connect: done once the connection
                                         handshake is (UCX request; NULL = none) */
    bool failed;                      /* an endpoint reported an error */
    bool closed;                      /* endpoints closed after the failure */
    sl_xport_rkey_t **rkeys;          /* imported regions, index = id */
    uint32_t nrkeys;                  /* used entries */
    uint32_t cap_rkeys;               /* allocated entries */
    unsigned live_reqs;               /* transfers not yet completed */
};

/* Life of one transfer; advanced by s_req_advance() in sl_xport.c. */
typedef enum sl_xport_req_state {
    SL_XPORT_REQ_ISSUE,  /* in its class queue, chunks being posted */
    SL_XPORT_REQ_DRAIN,  /* all chunks posted, waiting for their completions */
    SL_XPORT_REQ_FLUSH,  /* endpoint flush in flight */
    SL_XPORT_REQ_NOTIFY, /* notification send in flight */
    SL_XPORT_REQ_DONE,   /* on the done list, callback pending */
} sl_xport_req_state_t;

/* One posted transfer. */
typedef struct sl_xport_req {
    sl_list_t link;                    /* class queue, then done list */
    sl_xport_t *xp;                    /* owning engine */
    sl_xport_peer_t *peer;             /* destination */
    sl_xport_req_state_t state;        /* where it is in its life */
    sl_xport_op_t op;                  /* put or get */
    sl_xport_class_t cls;              /* traffic class of its data */
    sl_xport_mem_t *local;             /* local region */
    sl_xport_rkey_t *remote;           /* remote region */
    bool staged;                       /* goes through the staging pipeline */
    sl_xport_block_t *blocks;          /* copy of the block list (kept across reuse) */
    size_t blocks_cap;                 /* its capacity in blocks */
    size_t nblocks;                    /* number of blocks */
    size_t cur_block;                  /* issue cursor: block */
    uint64_t cur_off;                  /* issue cursor: offset inside the block */
    uint32_t nchunks;                  /* staged: total chunks of the transfer */
    uint64_t key;                      /* staged: transfer key seen by the receiver */
    unsigned outstanding;              /* UCX operations posted and not completed */
    sl_status_t status;                /* first error, or SL_OK */
    bool ucx_wait;                     /* a flush or notification send is inside UCX */
    bool orphan;                       /* reported before UCX released it */
    bool reported;                     /* its callback has run (orphans only) */
    sl_xport_done_cb_t cb;             /* user completion */
    void *cb_arg;                      /* its argument */
    size_t notif_len;                  /* notification length (0 = none) */
    uint8_t notif[SL_XPORT_NOTIF_MAX]; /* notification payload */
} sl_xport_req_t;

/* Per-operation context of one posted UCX operation of a request. */
typedef struct sl_xport_op_ctx {
    sl_xport_req_t *req;                        /* owning request */
    uint64_t bytes;                             /* payload bytes of the operation */
    int slot;                                   /* staging slot it holds, or -1 */
    struct sl_xport_op_ctx *next;               /* free-list link while unused */
    uint8_t hdr[64 + SL_XPORT_STAGE_NOTIF_MAX]; /* staged chunk header; UCX reads it until
                                                   completion */
} sl_xport_op_ctx_t;

/* Argument of a class worker's AM handler. */
typedef struct sl_xport_am_arg {
    sl_xport_t *xp;       /* engine */
    sl_xport_class_t cls; /* class of the worker */
} sl_xport_am_arg_t;

/* Staging state (sl_xport_stage.c). */
typedef struct sl_xport_stage sl_xport_stage_t;

/* The engine. */
struct sl_xport {
    sl_xport_cfg_t cfg;                   /* configuration (copied) */
    ucp_context_h ctx[SL_XPORT_NCLASS];   /* one context per class (own fabric marking) */
    ucp_worker_h worker[SL_XPORT_NCLASS]; /* one worker per class */
    int epfd;                             /* epoll over the workers' event fds */
    uint8_t *addr;                        /* packed engine address */
    size_t addr_len;                      /* its length */
    bool cuda_direct;                     /* UCX takes CUDA pointers */
    uint64_t id;                          /* random engine id for staged transfer keys */
    uint64_t seq;                         /* staged transfer sequence */
    sl_list_t peers;                      /* connected peers */
    sl_list_t mems;                       /* registered regions */
    sl_list_t queue[SL_XPORT_NCLASS];     /* requests with chunks left to post */
    sl_list_t done;                       /* completed requests, callbacks pending */
    sl_list_t waiting;                    /* requests with a flush or notification in UCX */
    sl_list_t orphans;                    /* reported failed, UCX still holds a callback */
    sl_list_t req_pool;                   /* finished requests kept for reuse */
    unsigned req_pool_len;                /* their number */
    unsigned live[SL_XPORT_NCLASS];       /* transfers posted and not yet reported, per class */
    sl_xport_sched_t sched;               /* class scheduler, bucket, bytes in flight in UCX */
    sl_xport_notif_cb_t notif_cb;         /* notification handler */
    void *notif_arg;                      /* its argument */
    sl_xport_stats_t stats;               /* counters */
    sl_xport_stage_t *stage;              /* staging rings, created on first use */
    sl_xport_op_ctx_t *op_free;           /* pool of operation contexts */
    sl_xport_am_arg_t am_arg[SL_XPORT_NCLASS]; /* AM handler arguments */
    bool failed_pending;                       /* a peer failed since the last progress */
    sl_xport_tcpmark_t mark;                   /* TOS marking of UCX's TCP sockets */
    int64_t mark_next;                         /* next marking scan (sl_clock_now time) */
};

/* Take an operation context from the pool (malloc only when it is empty). */
sl_xport_op_ctx_t *sl_xport_op_get(sl_xport_t *xp, sl_xport_req_t *req, uint64_t bytes);

/* Record completion of bytes of one class (counters and in-flight cap). */
void sl_xport_account(sl_xport_t *xp, sl_xport_class_t cls, uint64_t bytes, bool was_inflight);
/* Deliver a received notification to the handler. */
void sl_xport_deliver_notif(sl_xport_t *xp, const void *data, size_t len);
/* Write the engine's UCX settings for class cls into config (keepalive,
 * UCX_NET_DEVICES, the InfiniBand service level and RoCE traffic class of
 * every verbs transport); a setting UCX refuses is left out (debug log). */
void sl_xport_ucx_config(const sl_xport_cfg_t *cfg, int cls, ucp_config_t *config);
/* Map a UCX status to ours. */
sl_status_t sl_xport_status(ucs_status_t st);
/* Memory registration (sl_xport_mem.c). */
/* Find the registered region holding [addr, addr+len), or NULL. */
sl_xport_mem_t *sl_xport_mem_find(sl_xport_t *xp, uint64_t addr, uint64_t len);
/* Destroy the remote keys imported from peer (its endpoints still open). */
void sl_xport_rkeys_release(sl_xport_peer_t *peer);
/* A staged operation of req finished with st; releases octx. */
void sl_xport_op_done(sl_xport_op_ctx_t *octx, ucs_status_t st);

/* Copy n bytes from src to dst with streaming stores, fenced before it
 * returns (sl_xport_copy.c); for a peer's region mapped by shared memory. */
void sl_xport_copy_stream(void *dst, const void *src, size_t n);

/* Staging (sl_xport_stage.c). */
sl_status_t sl_xport_stage_init(sl_xport_t *xp);
void sl_xport_stage_fini(sl_xport_t *xp);
/* Post the next staged chunk of req; SL_ERR_AGAIN when no slot is free.
 * *bytes_p gets the chunk's payload size. */
sl_status_t sl_xport_stage_issue(sl_xport_t *xp, sl_xport_req_t *req, uint64_t *bytes_p);
/* Count the chunks of a staged transfer. */
uint32_t sl_xport_stage_count(const sl_xport_t *xp, const sl_xport_req_t *req);
/* The AM handler of staged chunks. */
ucs_status_t sl_xport_stage_am_cb(void *arg, const void *header, size_t header_len, void *data,
                                  size_t len, const ucp_am_recv_param_t *param);

/* CUDA helpers (sl_xport_cuda.c, or stubs without CUDA). */
/* True when UCX takes CUDA memory: context memory types include CUDA and a
 * registered device buffer is not reported as host memory. */
bool sl_xport_cuda_probe(sl_xport_t *xp);
/* Page-lock host memory for fast device copies; no-op without CUDA. */
void sl_xport_cuda_pin(void *p, size_t len);
void sl_xport_cuda_unpin(void *p);

#endif
