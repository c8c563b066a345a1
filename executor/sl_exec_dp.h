/*
 * The executor's data plane: one transport engine, the KV region registered
 * with it, the peers the scheduler hands out, and the moves of a job's KV
 * between executors (a split job's prompt, a moved sequence). Runs on the
 * engine thread, beside the engine it moves KV for.
 */
#ifndef SL_EXEC_DP_H
#define SL_EXEC_DP_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"
#include "common/sl_types.h"
#include "executor/sl_engine.h"
#include "proto/sl_wire.h"

typedef struct sl_exec_dp sl_exec_dp_t;

/* What a data plane is made with; every timeout is a knob of the executor. */
typedef struct sl_exec_dp_cfg {
    const char *tls;               /* UCX_TLS of the engine ("" = the environment's) */
    int64_t kv_bytes_per_token;    /* stand-in region: KV bytes of one token */
    int64_t kv_region_max_mib;     /* stand-in region: at most this large */
    int64_t peer_check_timeout_ms; /* a peer that does not answer its check is unreachable */
    int64_t xfer_timeout_ms;       /* a push not completed this long fails (its peer is dropped) */
    int64_t release_grace_ms;      /* a canceled reservation's blocks are kept this long before
                                      they are released (a write in flight may still land) */
    uint32_t kv_blocks;            /* the backend's pool in blocks (stand-in size) */
    uint32_t kv_block_tokens;      /* tokens per block */
    int gpu_index; /* CUDA device whose nearest NICs the engine uses when the KV pool is not on
                      a GPU (-1: none) */
    double bg_link_mbps; /* link capacity (MB/s) background is held under a share of
                            (0 = the engine's own setting) */
    double bg_share;     /* that share, with bg_link_mbps */
} sl_exec_dp_cfg_t;

/* Counters (the executor logs them and sends them in heartbeats). */
typedef struct sl_exec_dp_stats {
    uint64_t reserved;       /* reservations made for jobs awaiting KV */
    uint64_t imports;        /* jobs whose KV landed and that went on here */
    uint64_t pushes_ok;      /* pushes of a job's KV that landed */
    uint64_t pushes_failed;  /* pushes that failed or were refused before posting */
    uint64_t migrations_out; /* running jobs moved away */
    uint64_t bytes_sent;     /* KV bytes pushed */
    uint64_t bytes_received; /* KV bytes that landed in reservations */
    uint64_t blocks_sent;    /* KV blocks pushed */
    uint64_t notifs_refused; /* notifications for no reservation, or not matching it */
    uint64_t blocks_fetched; /* prompt blocks that came from a peer's cache (prefix fetch) */
    uint64_t pause_us_total; /* pauses of moved sequences, summed */
    uint32_t reservations;   /* reservations outstanding now */
} sl_exec_dp_stats_t;

/* What the data plane calls back into the executor with. */
typedef struct sl_exec_dp_io {
    /* job ends without a completion report (its KV went to a peer, or the
     * scheduler gave it up already); called before the data plane ends it */
    void (*silence)(void *arg, sl_engine_job_t *job);
    void *arg; /* passed to silence */
} sl_exec_dp_io_t;

/* Create: the engine, the region (the backend's pool when it has one, else
 * a stand-in sized kv_blocks x kv_block_tokens x kv_bytes_per_token, capped),
 * its key and a scratch region for peer checks. Logs why on error. */
sl_status_t sl_exec_dp_create(const sl_exec_dp_cfg_t *cfg, sl_engine_t *engine,
                              const sl_exec_dp_io_t *io, sl_exec_dp_t **dp_p);
/* Close every connection to a peer (NULL-safe): the transfers in flight
 * fail and their callbacks run, and the transport is progressed while the
 * connections close, so a peer's late put still lands in memory that is
 * registered. Call it before deregistering memory other modules put in
 * this transport (the pipeline stage's ring); sl_exec_dp_destroy does it
 * too. The peers' connections handed out (sl_exec_dp_peer) are gone
 * after it. */
void sl_exec_dp_close_peers(sl_exec_dp_t *dp);
/* Release (NULL-safe, sets *dp_p = NULL). */
void sl_exec_dp_destroy(sl_exec_dp_t **dp_p);
/* The socket to the scheduler (PeerReach, KvReserved, KvSent go there). */
void sl_exec_dp_set_sock(sl_exec_dp_t *dp, void *sock);
/* Fill the hello's data-plane fields (pointers owned by dp). */
void sl_exec_dp_hello(const sl_exec_dp_t *dp, sl_wire_hello_t *h);
/* The engine's fd, progress (also expires checks and pushes), arm. */
int sl_exec_dp_fd(const sl_exec_dp_t *dp);
void sl_exec_dp_progress(sl_exec_dp_t *dp, sl_time_t now);
sl_status_t sl_exec_dp_arm(sl_exec_dp_t *dp);
/* Messages from the scheduler: peers joined or gone; a job's KV plan. */
void sl_exec_dp_on_peers(sl_exec_dp_t *dp, const sl_wire_msg_t *msg, sl_time_t now);
void sl_exec_dp_on_plan(sl_exec_dp_t *dp, const sl_kv_plan_t *plan, sl_time_t now);
/* A job is about to be submitted: apply the plan that came before it. */
void sl_exec_dp_on_dispatch(sl_exec_dp_t *dp, sl_engine_job_t *job, sl_time_t now);
/* The engine held a job (its sl_engine_cb_t.held). */
void sl_exec_dp_held(sl_exec_dp_t *dp, sl_engine_job_t *job, sl_engine_held_t why, sl_time_t now);
/* The scheduler cancels job_seq: true when the data plane takes care of it
 * (a push in flight ends it when done; a reservation is released after the
 * grace period); false: cancel it in the engine as usual. */
bool sl_exec_dp_cancel(sl_exec_dp_t *dp, uint64_t job_seq, sl_time_t now);
/* A job ended (its sl_engine_cb_t.done): forget what the data plane held for it. */
void sl_exec_dp_job_end(sl_exec_dp_t *dp, sl_engine_job_t *job);
/* The transport engine (the data plane keeps it; other parts of the daemon
 * register regions of their own with it, e.g. weights served to peers, and
 * pipeline stages post on it). */
struct sl_xport *sl_exec_dp_xport(const sl_exec_dp_t *dp);
/* Background bytes sent beside the engine (log shipping) take from its
 * background bucket: SL_OK when taken or when there is none, SL_ERR_AGAIN
 * when it holds fewer tokens now (sl_xport_bg_take). */
sl_status_t sl_exec_dp_bg_take(sl_exec_dp_t *dp, uint64_t bytes);
/* Counters. */
void sl_exec_dp_stats(const sl_exec_dp_t *dp, sl_exec_dp_stats_t *stats);

/* For pipeline stages (sl_exec_stage.c), which share the engine and the
 * peers: the engine; a handler offered every notification first (it
 * returns true for one of its own); the connection to reached peer index,
 * its KV region's id in our transfers and its bytes (false: not reached). */
struct sl_xport;
struct sl_xport_peer;
void sl_exec_dp_set_notif_other(sl_exec_dp_t *dp,
                                bool (*other)(void *arg, const void *data, size_t len), void *arg);
bool sl_exec_dp_peer(const sl_exec_dp_t *dp, uint32_t index, struct sl_xport_peer **conn_p,
                     uint32_t *remote_p, uint64_t *region_bytes_p);

#endif
