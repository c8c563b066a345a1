/*
 * The policy lab's discrete-event simulator: the scheduler's decision core
 * and the executor's engine with the sim backend (the very code the daemons
 * run), on a virtual clock, replaying a request schedule. Deterministic for
 * a given seed: no wall clock enters a result.
 */
#ifndef SL_SIM_H
#define SL_SIM_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench/sl_trace.h"
#include "common/sl_hist.h"
#include "executor/sl_backend.h"

#define SL_SIM_MAX_EXECS 100000

typedef struct sl_sim_params {
    const sl_trace_t *trace;  /* arrival schedule (borrowed) */
    int executors;            /* cluster size */
    const double *speeds;     /* per executor speed factor (NULL: all 1) */
    const char *policy;       /* placement policy */
    bool admission;           /* predictive admission in the core */
    double busy_utilization;  /* admission threshold (0: the core's default) */
    double slo_ttft_mult;     /* TTFT SLO: at most this x the unloaded TTFT ... */
    double slo_ttft_floor_s;  /* ... and never below this */
    double slo_tpot_s;        /* mean TPOT SLO */
    int64_t heartbeat_ms;     /* heartbeat (load copy) interval */
    int credits;              /* jobs in flight per executor */
    int max_batch;            /* engine batch size */
    int run_steps;            /* the engines' run_steps: decode steps per wake-up at most
                               * (the same results, fewer events; 1 = a wake-up per step) */
    sl_sim_cfg_t model;       /* sim backend coefficients (speed is per executor) */
    uint32_t kv_block_tokens; /* tokens per KV block of the backend */
    double fail_at_s;         /* executors fail at this time (0 = never) */
    int fail_count;           /* how many fail */
    double fail_down_s;       /* they rejoin, empty, after this long */
    uint64_t seed;            /* policies' and admission's randomness */
    double batch_share;       /* share of requests submitted as SL_PRIO_BATCH (from the seed) */
    double explore_share;     /* the core's explore_share (< 0: the core's default) */
    /* The data plane (KV moves between executors, modelled by sl_sim_link.h). */
    bool data_plane;            /* executors register a KV region and reach each other */
    int prefill_execs;          /* executors of role prefill (the first ones) */
    int decode_execs;           /* executors of role decode (the next ones); the rest mixed */
    double kv_bytes_per_token;  /* KV bytes of one token */
    double link_gbps;           /* link bandwidth of each executor, Gbit/s */
    double link_latency_us;     /* one-way latency of a transfer */
    double bg_share;            /* share of a link background traffic takes while on */
    bool bg_traffic;            /* background traffic on the links */
    bool kv_split;              /* the core's kv_split: conditional disaggregation */
    bool kv_rebalance;          /* the core's kv_rebalance: move running jobs */
    bool kv_fetch;              /* the core's kv_fetch: pull a cached prefix from a peer */
    int64_t kv_move_timeout_ms; /* the core's kv_move_timeout_ms (0: the core's default) */
} sl_sim_params_t;

typedef struct sl_sim_report {
    uint64_t requests;             /* offered */
    uint64_t completed;            /* finished OK */
    uint64_t busy;                 /* refused with BUSY */
    uint64_t failed;               /* failed or expired */
    uint64_t slo_met;              /* completed within both SLOs */
    double span_s;                 /* arrival span of the schedule */
    double sim_end_s;              /* virtual time when the last job ended */
    double offered_rps;            /* requests / span */
    double goodput_rps;            /* slo_met / span */
    double slo_frac;               /* slo_met / requests */
    double p50_ttft_s;             /* over completed jobs */
    double p90_ttft_s;             /* over completed jobs */
    double p99_ttft_s;             /* over completed jobs */
    double mean_tpot_s;            /* over completed jobs with > 1 token */
    double busy_rate;              /* busy / requests */
    double hit_rate;               /* cached prompt tokens / prompt tokens (completed) */
    double ttft_mape;              /* the load model's prequential MAPE */
    uint64_t busy_by_reason[8];    /* BUSY counts by sl_busy_reason_t */
    sl_hist_t ttft_us;             /* TTFT distribution, microseconds */
    uint64_t events;               /* simulation events processed */
    uint64_t kv_splits;            /* jobs the core split (SL_CTR_KV_SPLITS) */
    uint64_t kv_handoffs;          /* splits whose KV reached the decode side */
    uint64_t kv_split_failed;      /* splits abandoned and requeued */
    uint64_t kv_migrations;        /* running jobs moved */
    uint64_t kv_migrate_failed;    /* moves abandoned */
    uint64_t kv_bytes;             /* KV bytes moved */
    uint64_t kv_fetches;           /* prefix fetches landed */
    uint64_t kv_fetch_failed;      /* prefix fetches that failed (job requeued) */
    uint64_t kv_blocks_fetched;    /* prompt blocks fetched from a peer's cache */
    uint64_t kv_blocks_recomputed; /* blocks a peer cached but the job's executor computed */
    uint64_t kv_xfers;             /* transfers landed */
    double split_share;            /* completed jobs whose prompt was computed elsewhere */
    double mean_xfer_ms;           /* mean transfer time, post -> landed */
    double mean_pause_ms;          /* mean pause of a moved job */
} sl_sim_report_t;

/* Defaults: 16 executors at speed 1, every request interactive, policy
 * learned with admission, SLOs 3x /
 * 1 s / 100 ms, heartbeats 100 ms, 32 credits = batch, the sim backend's
 * default coefficients (executor/sl_backend.c), KV blocks of 16 tokens; no
 * data plane (when on: all mixed, 131072 KV bytes per token (a
 * Llama-3-8B-class model in bf16: 2 x 32 layers x 8 KV heads x 128 x 2 B),
 * 100 Gbit/s links of 10 us, background share 0.2 but no background
 * traffic, no split, no rebalancing, no prefix fetch). */
void sl_sim_params_default(sl_sim_params_t *p);

/* Unloaded TTFT of a prompt (no cache, empty executor of speed 1), seconds. */
double sl_sim_unloaded_ttft(const sl_sim_params_t *p, uint32_t prompt_tokens);

/* Run one simulation. *rep is written on success; SL_ERR_INVALID for bad
 * parameters (logged), SL_ERR_NOMEM. */
sl_status_t sl_sim_run(const sl_sim_params_t *p, sl_sim_report_t *rep);

#endif
