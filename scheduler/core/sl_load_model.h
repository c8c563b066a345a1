/*
 * The learned load model: for a job on an executor it predicts the queue
 * wait, the time to first token (TTFT) and the time per output token (TPOT),
 * and learns online from every completion, per executor, with a shared prior
 * for executors it has not seen yet. Pure: time is an argument.
 */
#ifndef SL_LOAD_MODEL_H
#define SL_LOAD_MODEL_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"
#include "common/sl_types.h"

#define SL_LM_NX                                                                                   \
    9              /* TTFT features: 1, uncached ktokens, attention term, work ahead s (the        \
                      backlog; with none, what is left of the step in progress by the step clock), \
                      1 when jobs are in flight there, KV overflow, 1 when work is ahead of it     \
                      (backlog or overflow), expected remainder of the step in progress s when     \
                      the clock does not give it, decode context per chunk */
#define SL_LM_NT 2 /* TPOT features: 1, running/32 */

typedef struct sl_load_model sl_load_model_t;

/* Where an executor is in its steps, as the scheduler follows it between
 * heartbeats: the latest step boundary it knows of (reported, a result's
 * arrival), the batch decoding after it, and the prompt tokens (with their
 * attention pairs) the steps from it have to compute. The steps after a
 * boundary are the engine's (chunked prefill, first come first served,
 * its step_tokens, SL_LM_STEP_TOKENS when it did not say, a step less one
 * per sequence decoding), timed by the
 * executor's reported costs: prompt steps while prompt tokens are queued,
 * decode steps of the batch after that. Pure; zeroed = nothing known. */
typedef struct sl_step_clock {
    uint32_t step_tokens; /* the executor's step budget (its hello); 0 = SL_LM_STEP_TOKENS */
    sl_time_t boundary;   /* latest step boundary known; 0 = none */
    uint32_t seqs;        /* sequences decoding after it */
    uint64_t ctx;         /* their context tokens */
    double tokens;        /* prompt tokens the steps from it have to compute */
    double pairs;         /* their attention pairs */
} sl_step_clock_t;

/* The clock read at one time (sl_step_clock_at). */
typedef struct sl_step_clock_now {
    double left_s; /* until the step in progress ends (0: at a boundary or idle) */
    double tokens; /* prompt tokens queued for the steps after it */
    double pairs;  /* their attention pairs */
    uint32_t seqs; /* sequences decoding */
    uint64_t ctx;  /* their context tokens */
    double budget; /* prompt tokens a step takes beside them */
} sl_step_clock_now_t;

#define SL_LM_STEP_TOKENS 2048 /* tokens an engine step computes at most (its --step-tokens) */

/* A heartbeat at now: load's step clock (has_step_clock) replaces what was
 * followed. */
void sl_step_clock_heartbeat(sl_step_clock_t *c, const sl_exec_load_t *load, sl_time_t now);
/* A job of prompt_tokens, of which uncached ones with pairs attention
 * pairs, was sent at now: they queue behind the prompt tokens there, and
 * it decodes after them. step_cost as for sl_step_clock_at. */
void sl_step_clock_dispatched(sl_step_clock_t *c, const float *step_cost, uint32_t prompt_tokens,
                              double uncached, double pairs, sl_time_t now);
/* A job of prompt_tokens that made output_tokens ended at now: a step
 * ended then, and it decodes no more. */
void sl_step_clock_completed(sl_step_clock_t *c, const float *step_cost, uint32_t prompt_tokens,
                             uint32_t output_tokens, sl_time_t now);
/* The clock at now (now not before its last event) into *out, by the
 * executor's step costs step_cost (SL_STEP_COST_N coefficients); false
 * when nothing is known (no heartbeat with a clock, or step_cost NULL). */
bool sl_step_clock_at(const sl_step_clock_t *c, const float *step_cost, sl_time_t now,
                      sl_step_clock_now_t *out);

/* What the model needs to know about a job on one executor. */
typedef struct sl_lm_query {
    uint32_t prompt_tokens; /* prompt length */
    uint32_t cached_tokens; /* of which cached on that executor */
    uint32_t running;       /* jobs in flight on that executor */
    uint64_t kv_need;       /* KV tokens the job reserves (prompt + output) */
    uint64_t kv_inflight;   /* KV tokens reserved by the jobs in flight there */
    uint64_t kv_capacity;   /* the executor's KV capacity in tokens (0 = unknown) */
    double step_s;          /* its mean step time lately (heartbeat), seconds (0 = unknown) */
    double busy;            /* its share of recent time spent in steps (heartbeat), 0..1 */
    const float *step_cost; /* its step cost model (heartbeat; SL_STEP_COST_N coefficients,
                               sl_step_cost_index_t), NULL = not reported */
    const sl_step_clock_now_t *clock; /* its step clock now (sl_step_clock_at), NULL = unknown */
} sl_lm_query_t;

/* A prediction, kept with the job until its result scores it. */
typedef struct sl_lm_pred {
    float x[SL_LM_NX];  /* TTFT features at placement */
    float xt[SL_LM_NT]; /* TPOT features at placement */
    float wait_s;       /* predicted wait before its prefill starts */
    float prefill_s;    /* predicted own prefill */
    float work_s;       /* what it adds to the executor's backlog: its tokens' share of a
                           prefill step (the step's fixed cost is paid once for many) */
    float ttft_s;       /* predicted executor-side TTFT */
    float tpot_s;       /* predicted time per output token */
    double work_mark;   /* the executor's prefill work sent, this job's included, s */
    bool valid;         /* a prediction was made */
} sl_lm_pred_t;

typedef struct sl_lm_cfg {
    double forget;       /* per-executor RLS forgetting factor (0.98: adapts in ~50 jobs) */
    double prior_forget; /* shared prior's forgetting factor (for 16 executors or fewer) */
    double p_init;       /* initial covariance scale of a new executor */
    sl_time_t stale;     /* an executor sent nothing for this long is predicted by the
                            shared prior until it gets a job again (0 = never) */
    sl_time_t learn_gap; /* past a burst, an executor's model learns from at most one
                            completion per this interval (the rest are still scored;
                            0 = every one) */
} sl_lm_cfg_t;

/* Create a model for executor indices below max_execs. */
sl_status_t sl_load_model_create(const sl_lm_cfg_t *cfg, uint32_t max_execs,
                                 sl_load_model_t **model_p);
void sl_load_model_destroy(sl_load_model_t **model_p);
/* The fleet has this many executors: the fleet models forget per completion
 * so that their memory spans about the same time however many executors
 * feed them (prior_forget as given for 16 or fewer, prior_forget^(16 / n)
 * for n above). */
void sl_load_model_fleet(sl_load_model_t *m, uint32_t executors);
/* Executor exec (re)starts from the shared prior. */
void sl_load_model_exec_reset(sl_load_model_t *m, uint32_t exec, sl_time_t now);
/* Predict q on exec at now into *pred. O(SL_LM_NX). */
void sl_load_model_predict(const sl_load_model_t *m, uint32_t exec, const sl_lm_query_t *q,
                           sl_time_t now, sl_lm_pred_t *pred);
/* The job predicted by pred was sent to exec: its prefill joins the backlog
 * (and pred records how much work had been sent there with it). */
void sl_load_model_dispatched(sl_load_model_t *m, uint32_t exec, sl_lm_pred_t *pred, sl_time_t now);
/* How uncertain exec's predictions are: the recent relative TTFT error of
 * the predictor it uses plus 1 / sqrt(1 + jobs learned there). */
double sl_load_model_exec_uncertainty(const sl_load_model_t *m, uint32_t exec);
/* Predicted seconds until exec has worked off what it was sent. */
double sl_load_model_backlog_s(const sl_load_model_t *m, uint32_t exec, sl_time_t now);
/* The fleet model's prefill of an uncached prompt of prompt_tokens on an
 * idle executor of scale 1 (the part of a prediction that is the job's
 * alone, computed once per job for sl_load_model_screen). */
double sl_load_model_fleet_prefill(const sl_load_model_t *m, uint32_t prompt_tokens);
/* A rough TTFT of a job whose fleet prefill is prefill_s on exec at now:
 * its backlog plus that prefill at its speed, read from two dense arrays
 * (no per-executor record), to screen many candidates and predict on the
 * best few. */
double sl_load_model_screen(const sl_load_model_t *m, uint32_t exec, double prefill_s,
                            sl_time_t now);
/* Start loading what sl_load_model_predict reads of exec (a hint: no effect
 * on any result). */
void sl_load_model_prefetch(const sl_load_model_t *m, uint32_t exec);
/* The sum of sl_load_model_backlog_s over the n executors execs[], in that
 * order, each term at most cap_s (the same sum, added in the same order, as
 * a loop of those calls). */
double sl_load_model_backlog_sum_s(const sl_load_model_t *m, const uint32_t *execs, uint32_t n,
                                   sl_time_t now, double cap_s);
/* A job predicted by pred finished on exec at now with the measured
 * executor-side TTFT, wait before its prefill step and TPOT (seconds; queue
 * and tpot < 0 when unknown): score, then learn. */
void sl_load_model_observe(sl_load_model_t *m, uint32_t exec, const sl_lm_pred_t *pred,
                           double ttft_s, double queue_s, double tpot_s, sl_time_t now);
/* Prequential mean absolute percentage error of TTFT (scored before learning). */
/* Learn only the time per output token of a job whose prompt was computed
 * elsewhere (a split job's decode side): its TTFT says nothing of this
 * executor's prefill. */
void sl_load_model_observe_tpot(sl_load_model_t *m, uint32_t exec, const sl_lm_pred_t *pred,
                                double tpot_s);
double sl_load_model_mape(const sl_load_model_t *m);
/* Same over the recent past (exponentially weighted, ~500 jobs). */
double sl_load_model_mape_recent(const sl_load_model_t *m);
/* Number of scored predictions. */
uint64_t sl_load_model_samples(const sl_load_model_t *m);
/* Per-token prefill seconds per 1000 tokens learned for exec (its speed). */
double sl_load_model_exec_rate(const sl_load_model_t *m, uint32_t exec);

/* Save the learned state (text, versioned) into buf of cap bytes,
 * NUL-terminated; *len_p is its length without the NUL. SL_ERR_OVERFLOW
 * when cap is too small: *len_p is then the length needed. */
sl_status_t sl_load_model_save(const sl_load_model_t *m, char *buf, size_t cap, size_t *len_p);
/* Restore from text written by save, starting at *pos_p and ending before
 * end (need not be NUL-terminated); *pos_p is advanced past it. On bad
 * text returns SL_ERR_INVALID with the reason in *why_p (a static string)
 * and the model unchanged. */
sl_status_t sl_load_model_load(sl_load_model_t *m, const char **pos_p, const char *end,
                               const char **why_p);

#endif
