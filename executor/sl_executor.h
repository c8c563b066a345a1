/*
 * The executor daemon: registers with the scheduler, heartbeats its load
 * and host load (sl_link.h; from a thread of its own with the ref backend,
 * so a long step does not silence it), and runs dispatched jobs through
 * the engine.
 */
#ifndef SL_EXECUTOR_H
#define SL_EXECUTOR_H

#include "common/sl_cfg.h"
#include "common/sl_daemon_cfg.h"
#include "executor/sl_backend.h"
#include "executor/sl_engine.h"

typedef struct sl_executor_cfg {
    sl_engine_cfg_t engine;         /* batching knobs */
    sl_sim_cfg_t sim;               /* sim backend model */
    char scheduler[SL_CFG_STR_MAX]; /* scheduler's executor endpoint */
    char name[SL_CFG_STR_MAX];      /* unique name ("" = host-pid) */
    char backend[32];               /* sim, null or ref */
    char models[SL_CFG_STR_MAX];    /* comma-separated models served ("" = any) */
    char model[SL_CFG_STR_MAX];     /* ref: model preset */
    char weights[SL_CFG_STR_MAX];   /* ref: safetensors path */
    char weight_format[16];         /* ref: fp32, bf16, fp16, int8, int4 */
    char device[16];                /* ref: auto, cpu, cuda */
    char zone[64];                  /* placement zone label */
    int slots;                      /* jobs accepted in flight */
    int kv_blocks;                  /* KV pool in blocks (0 = backend default) */
    int kv_block_tokens;            /* tokens per KV block */
    int64_t seed;                   /* synthetic weights, placeholder tokens */
    int threads;                    /* compute threads (0 = default) */
    int64_t heartbeat_ms;           /* 0 = the interval the scheduler sends */
    int64_t hello_retry_ms;         /* resend hello while not welcomed */
    int64_t wait_log_ms;            /* log the wait for a welcome this often */
    int64_t link_timeout_ms;        /* ZeroMQ heartbeat timeout of the connection */
    int64_t stall_timeout_ms; /* heartbeats stop when the engine thread is silent this long (0 =
                                 never) */
    int gpu_index;            /* NVML index of the GPU heartbeats measure (-1 = none) */
    char nvml_lib[SL_CFG_STR_MAX]; /* NVML library loaded at run time ("" = GPU not measured) */
    int max_msg_batch;             /* items of one batch message accepted */
    int64_t turn_budget_us;        /* engine steps run back to back for this long per loop turn */
    int recv_batch;                /* messages read per loop turn at most */
    double speed_hint;             /* speed declared in hello (0 = unknown) */
    bool data_plane;               /* embed a transport engine and register the KV region */
    char data_plane_tls[64];       /* UCX_TLS for that engine ("" = the environment's) */
    int64_t kv_bytes_per_token;    /* bytes of KV one token holds in the registered region */
    int64_t kv_region_max_mib;     /* the registered region is at most this large */
    int64_t
        peer_check_timeout_ms; /* a data-plane peer that does not answer the check is unreachable */
    char role[16];             /* mixed, prefill or decode */
    int64_t kv_xfer_timeout_ms;  /* a push of a job's KV not done this long fails */
    int64_t kv_release_grace_ms; /* a canceled reservation's blocks are released this much later */
    char layers[32];             /* pipeline stage: "A-B" layers held ("" = the whole model) */
    int64_t stage_ring_kib;      /* pipeline stage: receive ring */
    int64_t stage_step_timeout_ms; /* pipeline stage: a step not back this long fails */
    bool log_ship;                 /* ship log lines and job traces to the scheduler's collector */
    int64_t log_ship_kib;       /* lines waiting to be shipped are held in this many KiB at most */
    int64_t log_ship_batch_kib; /* text of one shipped batch at most */
    int log_ship_tos;           /* IP TOS byte of the shipping connection (background DSCP) */
    double bg_link_mbps;        /* link capacity in MB/s background is held under a share of */
    double bg_share;            /* that share */
    double log_ship_max_kibps;  /* shipping rate when the link capacity is unknown */
    char weights_from[16];      /* ref --weights: auto, peer or file */
    bool weights_serve;         /* serve the weight file to starting peers (data plane on) */
    int64_t weights_query_timeout_ms; /* the scheduler names a holder within this long */
    int64_t weights_pull_timeout_ms;  /* a pull from a peer not done this long falls back */
    sl_daemon_cfg_t daemon;           /* the knobs every daemon has (sl_daemon_cfg_fields) */
} sl_executor_cfg_t;

extern const sl_cfg_field_t sl_executor_cfg_fields[];

typedef struct sl_executor sl_executor_t;

sl_status_t sl_executor_create(const sl_executor_cfg_t *cfg, sl_executor_t **exec_p);
/* Serve until stopped; then finish running jobs, say goodbye and return
 * SL_OK. Returns at once, with the cause logged, when the scheduler refuses
 * to register it: SL_ERR_EXISTS (its name is in use by a live executor),
 * SL_ERR_INVALID (the endpoint is not the scheduler's executor endpoint);
 * SL_ERR_IO when polling fails. */
sl_status_t sl_executor_run(sl_executor_t *exec);
void sl_executor_stop(sl_executor_t *exec);
void sl_executor_destroy(sl_executor_t **exec_p);
void sl_executor_handle_signals(sl_executor_t *exec);

#endif
