/*
 * The decision core of the scheduler: a pure library. Events go in as
 * function calls with the current time as an argument; actions come out
 * through the sl_core_io_t callbacks (dispatch a job, deliver a result).
 * No sockets, no threads, no clock reads: the daemon wraps it with ZeroMQ and
 * a real clock, the simulator with a virtual clock, tests with a fake one.
 *
 * One thread owns a core; nothing in it is locked.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_list.h"
#include "common/sl_types.h"
#include "scheduler/core/sl_load_model.h"
#include "scheduler/core/sl_prefix_index.h"

#include <stdio.h>

#define SL_CORE_MAX_NAME 128
/* Leading blocks of a token-id prompt the core hashes at most (the wire's
 * bound on block hashes a client may send). */
#define SL_CORE_MAX_PROMPT_BLOCKS 8192
/* Distinct executor KV block sizes the core counts to choose the one it
 * hashes prompts with (sizes past these are not counted). */
#define SL_CORE_BLOCK_SIZES 8

typedef struct sl_core sl_core_t;

typedef enum sl_job_state {
    SL_JOB_QUEUED,  /* waiting in the scheduler */
    SL_JOB_RUNNING, /* dispatched to an executor */
    SL_JOB_DONE,    /* result being delivered (inside io->result; freed after it) */
} sl_job_state_t;

typedef struct sl_exec sl_exec_t;

/* A job inside the core. Fields are read-only outside the core. */
typedef struct sl_job {
    uint64_t seq;            /* core-assigned handle, unique for the core's life */
    uint64_t id_hash;        /* hash of id */
    char *id;                /* idempotency id (inside this allocation) */
    char *tenant;            /* "" when none */
    char *model;             /* "" when none */
    char *session_key;       /* "" when none */
    sl_prio_t prio;          /* class */
    uint32_t prompt_tokens;  /* prompt length */
    uint32_t max_new_tokens; /* output budget */
    uint64_t *block_hashes;  /* prefix block hashes (inside this allocation) */
    uint32_t n_block_hashes; /* entries of block_hashes */
    uint32_t block_tokens;   /* tokens per hashed block */
    sl_time_t submitted;     /* receipt time */
    sl_time_t ttft_due;      /* absolute; 0 = none */
    sl_time_t due;           /* absolute; 0 = none */
    sl_time_t dispatched;    /* last dispatch time */
    const void *receipt;     /* set by io->result: bytes remembered with the finished id,
                                borrowed until it returns (see sl_core_done_find) */
    size_t receipt_len;      /* their length */
    sl_job_state_t state;    /* where it is */
    uint32_t attempts;       /* dispatches so far */
    sl_exec_t *exec;         /* executor running it (state RUNNING) */
    double predicted_ttft_us;/* the load model's prediction at placement (0 = none) */
    sl_lm_pred_t pred;       /* the load model's prediction for where it runs */
    uint32_t uncached_tokens;/* prompt tokens not cached where it was placed */
    uint32_t vocab_need;     /* largest prompt token id + 1 (0: no ids): executors' vocab >= it */
    float queued_work_s;     /* predicted prefill seconds while it waits in the scheduler */
    void *user;              /* the embedder's data (daemon: routing, payload) */
    sl_list_t link;          /* queue, executor in-flight list or done list */
} sl_job_t;

#define SL_EXEC_MAX_MODELS 16

/* An executor inside the core. Fields are read-only outside the core. */
struct sl_exec {
    uint32_t index;               /* slot in the core's table */
    char name[SL_CORE_MAX_NAME];  /* unique name */
    char backend[32];             /* backend name */
    char models[SL_EXEC_MAX_MODELS][SL_CORE_MAX_NAME]; /* models served */
    size_t n_models;              /* 0 = any model */
    uint32_t slots;               /* declared capacity */
    uint32_t credits;             /* in-flight bound actually used */
    uint32_t inflight;            /* jobs dispatched and not completed */
    uint64_t inflight_tokens;     /* prompt + output tokens of those jobs */
    sl_list_t jobs;               /* in-flight jobs */
    sl_exec_load_t load;          /* last heartbeat */
    sl_time_t joined;             /* join time */
    sl_time_t last_seen;          /* last message from it */
    uint64_t completed;           /* jobs that ended OK here */
    uint64_t failed;              /* jobs it failed or rejected (canceled ones count in neither) */
    uint32_t max_context_tokens;  /* prompt + new tokens of one job at most; 0 = unlimited */
    uint32_t vocab_size;          /* prompt token ids below this; 0 = unlimited */
    double fail_recent;           /* failed jobs, decayed over fail_decay_ms */
    double done_recent;           /* all jobs that ended here, decayed the same way */
    sl_time_t recent_at;          /* when both were last decayed */
    sl_time_t quarantined_until;  /* not placed on before this (0 = never quarantined) */
    uint32_t kv_blocks_total;     /* KV capacity */
    uint32_t kv_block_tokens;     /* tokens per KV block */
    double speed;                 /* declared speed hint */
    bool alive;                   /* false once lost (slot then free) */
    void *user;                   /* the embedder's data (daemon: identity) */
    void *policy_state;           /* per-executor state a policy may keep */
    uint64_t prefill_tokens;      /* uncached prompt tokens of its in-flight jobs */
    uint32_t hit_blocks;          /* during place(): leading blocks of the job it caches */
    uint32_t cand_pos;            /* during place(): its position among the candidates */
    uint64_t cand_stamp;          /* placement whose candidate list holds it */
    uint32_t free_pos;            /* position in the core's free-credit list */
    uint32_t alive_pos;           /* position in the core's list of live executors */
};

/* Final timings the core computes for a result. */
typedef struct sl_job_timings {
    sl_time_t queued; /* receipt -> (last) dispatch */
    sl_time_t ttft;   /* receipt -> first token */
    sl_time_t end;    /* receipt -> completion */
    bool late;        /* ended OK past its whole-job deadline (set by the core) */
} sl_job_timings_t;

/* Actions. Each callback gets the io_arg given at create. */
typedef struct sl_core_io {
    /* Send job to exec (attempt counts from 1). A failure is treated as the
     * executor being lost. */
    sl_status_t (*dispatch)(void *arg, sl_exec_t *exec, sl_job_t *job);
    /* The job ended: deliver its result. exec may be NULL (expired, canceled
     * while queued, failed after too many losses). payload is what the
     * embedder passed with the completion (NULL otherwise). The embedder may
     * set job->receipt: the core copies it and keeps it with the id for
     * done_ttl. The job is released and freed when this returns. */
    void (*result)(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                   const sl_exec_t *exec, const void *payload, const char *error);
    /* Ask exec to stop running job (canceled by its client). */
    void (*cancel)(void *arg, sl_exec_t *exec, sl_job_t *job);
    /* The core frees job (after its result, or at destroy): free job->user. */
    void (*release)(void *arg, sl_job_t *job);
    /* exec was declared lost (after its jobs were requeued): free exec->user. */
    void (*exec_lost)(void *arg, sl_exec_t *exec, const char *why);
} sl_core_io_t;

/* Configuration; every field is a knob of the scheduler (sl_core_cfg_fields). */
typedef struct sl_core_cfg {
    char policy[64];          /* placement policy name */
    int credits;              /* in-flight jobs per executor; 0 = the executor's slots */
    int64_t heartbeat_ms;     /* expected heartbeat interval */
    int missed_heartbeats;    /* heartbeats missed before an executor is lost */
    int queue_max;            /* jobs waiting in the scheduler before BUSY */
    int max_attempts;         /* dispatches before a job fails after executor losses */
    int64_t done_ttl_ms;      /* how long a finished job id is remembered */
    int done_max;             /* most finished jobs remembered (oldest forgotten first) */
    int64_t busy_retry_ms;    /* retry-after for refusals with no better estimate */
    int max_executors;        /* executor table size */
    int64_t seed;             /* random policies */
    int64_t prefix_index_max; /* block hashes the prefix index remembers */
    bool admission;           /* predictive admission (deadline, overload, tenants) */
    double busy_utilization;  /* enter the busy state above this predicted utilization */
    double busy_hysteresis;   /* leave it below busy_utilization minus this */
    int64_t busy_smooth_ms;   /* time constant of the utilization the busy state follows */
    int64_t admit_horizon_ms; /* utilization = predicted prefill backlog / this horizon */
    double tenant_rate;       /* jobs/s each tenant may submit; 0 = unlimited */
    double tenant_burst;      /* bucket size of each tenant, jobs */
    double model_forget;      /* load model: per-executor forgetting factor */
    int64_t model_stale_ms;   /* load model: unchosen this long -> predicted by the prior */
    int64_t model_learn_us;   /* load model: at most one learned completion per this, per exec */
    char state_file[256];     /* learned state saved on exit, read at start ("" = none) */
    double quarantine_failures; /* recent failures that quarantine an executor; 0 = never */
    double quarantine_share;  /* ... when they are at least this share of its recent jobs */
    int64_t fail_decay_ms;    /* time constant of an executor's recent failure count */
    int64_t quarantine_ms;    /* how long a quarantined executor gets no jobs */
} sl_core_cfg_t;

/* Config table rows for sl_core_cfg_t embedded at offset base of a larger struct. */
extern const sl_cfg_field_t sl_core_cfg_fields[];
/* Fill cfg with the defaults of sl_core_cfg_fields. */
void sl_core_cfg_default(sl_core_cfg_t *cfg);

/* Named counters kept by the core. */
typedef enum sl_core_counter {
    SL_CTR_SUBMITTED,
    SL_CTR_ACCEPTED,
    SL_CTR_DUPLICATES,
    SL_CTR_BUSY_OVERLOAD,
    SL_CTR_BUSY_DEADLINE,
    SL_CTR_BUSY_QUEUE_FULL,
    SL_CTR_BUSY_TENANT,
    SL_CTR_BUSY_NO_EXECUTOR,
    SL_CTR_BUSY_DRAINING,
    SL_CTR_DISPATCHED,
    SL_CTR_COMPLETED,
    SL_CTR_FAILED,
    SL_CTR_REQUEUED,
    SL_CTR_EXPIRED,
    SL_CTR_CANCELED,
    SL_CTR_EXECUTORS_JOINED,
    SL_CTR_EXECUTORS_LOST,
    SL_CTR_STALE_COMPLETIONS,
    SL_CTR_KV_STORED,
    SL_CTR_KV_EVICTED,
    SL_CTR_PREFIX_HIT_BLOCKS,
    SL_CTR_BUSY_ENTERED,
    SL_CTR_DONE_DROPPED, /* finished jobs not remembered (no memory for the record) */
    SL_CTR_PROMPTS_HASHED, /* token-id prompts whose block hashes the core computed */
    SL_CTR_LATE,           /* jobs that ended OK past their whole-job deadline */
    SL_CTR_REFUSED_NO_FIT, /* jobs refused at submit: no live executor can hold them */
    SL_CTR_QUARANTINED,    /* executors quarantined for failing their recent jobs */
    SL_CTR_COUNT,
} sl_core_counter_t;

const char *sl_core_counter_name(sl_core_counter_t c);

/* Create a core. io must outlive it. On error *core_p is unchanged. */
sl_status_t sl_core_create(const sl_core_cfg_t *cfg, const sl_core_io_t *io, void *io_arg,
                           sl_core_t **core_p);
/* Destroy a core, releasing every job and executor through io; NULL-safe. */
void sl_core_destroy(sl_core_t **core_p);

/*
 * A job arrives. A job that gives token ids and no block hashes gets the
 * chained hashes (sl_hash_kv_block) of its leading full blocks, at most
 * SL_CORE_MAX_PROMPT_BLOCKS, in blocks of sl_core_hash_block_tokens(), so
 * the prefix index matches it against what executors report. Returns:
 *  SL_OK          accepted; *job_p is the new job, which owns user;
 *  SL_ERR_EXISTS  same id as a known job; *job_p is that job while it is
 *                 queued or running, NULL when it finished within done_ttl
 *                 (sl_core_done_find has its receipt); user is not taken;
 *  SL_ERR_BUSY    refused; *reason_p and *retry_after_p say why and when
 *                 (0 for SL_BUSY_DEADLINE: the deadline cannot be met, a
 *                 retry would only come back later);
 *                 user is not taken;
 *  SL_ERR_NO_EXECUTOR  refused for good: no live executor can hold it (its
 *                 context or vocabulary is too small; sl_core_job_misfit
 *                 says how); user is not taken.
 * Accepted jobs are placed at once when an executor has free credit.
 */
sl_status_t sl_core_job_submit(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                               sl_time_t now, sl_job_t **job_p, sl_busy_reason_t *reason_p,
                               sl_time_t *retry_after_p);

/* Why no live executor can hold desc (the refusal SL_ERR_NO_EXECUTOR of
 * sl_core_job_submit), written into why (always NUL-terminated). */
void sl_core_job_misfit(const sl_core_t *core, const sl_job_desc_t *desc, char *why,
                        size_t why_len);

/* Whether e is quarantined at now: its recent jobs failed, so no job is
 * placed on it until e->quarantined_until. */
static inline bool sl_core_exec_quarantined(const sl_exec_t *e, sl_time_t now)
{
    return e->quarantined_until > now;
}

/* An executor reports the end of job seq. Stale reports (job not running on
 * that executor) are counted and ignored: SL_ERR_NOT_FOUND. */
sl_status_t sl_core_job_complete(sl_core_t *core, uint32_t exec_index, uint64_t seq,
                                 const sl_job_result_t *res, const void *payload, sl_time_t now);

/* A hint that job seq is about to complete: starts loading its place in
 * the id map, which finishing it updates. Changes nothing. */
void sl_core_complete_prefetch(const sl_core_t *core, uint64_t seq);

/* The client cancels a job by id. SL_ERR_NOT_FOUND when unknown or done. */
sl_status_t sl_core_job_cancel(sl_core_t *core, const char *id, sl_time_t now);

/* Job by sequence number while queued or running; NULL otherwise. */
sl_job_t *sl_core_job_get(sl_core_t *core, uint64_t seq);

/* Find a queued or running job by id; NULL when unknown or finished. */
sl_job_t *sl_core_job_find(sl_core_t *core, const char *id);

/* A job finished within done_ttl: true, with the receipt its io->result
 * left (*receipt_p valid until the next call into the core; length 0 when
 * it left none). false when no finished job with this id is remembered. */
bool sl_core_done_find(const sl_core_t *core, const char *id, const void **receipt_p,
                       size_t *len_p);
/* A hint that a job with this id is about to be submitted or found: starts
 * loading its place in the id map (that map holds every job finished within
 * done_ttl, so a lookup is a cache miss). Changes nothing. */
void sl_core_job_prefetch(const sl_core_t *core, const char *id);

/* An executor joins (or rejoins under the same name, which first loses the
 * old incarnation). *index_p is its handle. exec->user is set to user. */
sl_status_t sl_core_exec_join(sl_core_t *core, const sl_exec_info_t *info, void *user,
                              sl_time_t now, uint32_t *index_p);
/* A heartbeat with load. SL_ERR_NOT_FOUND for an unknown or lost index. */
sl_status_t sl_core_exec_heartbeat(sl_core_t *core, uint32_t index, const sl_exec_load_t *load,
                                   sl_time_t now);
/* Any other message from an executor also proves it alive. */
sl_status_t sl_core_exec_touch(sl_core_t *core, uint32_t index, sl_time_t now);
/* The executor is gone (goodbye, or the embedder knows it died): requeue its jobs. */
sl_status_t sl_core_exec_lost(sl_core_t *core, uint32_t index, const char *why, sl_time_t now);
/* Executor by index, NULL when unknown or lost. */
sl_exec_t *sl_core_exec_get(sl_core_t *core, uint32_t index);
/* Number of executor table slots (iterate 0..n-1 with sl_core_exec_get). */
uint32_t sl_core_exec_slots(const sl_core_t *core);
/* Live executors. */
uint32_t sl_core_exec_count(const sl_core_t *core);
/* The KV block size token-id prompts are hashed with: the one advertised
 * by the most live executors (ties: the smaller); 0 while none advertises
 * one (prompts are then not hashed). Executors with another block size
 * report hashes of other blocks and so never match such a prompt. */
uint32_t sl_core_hash_block_tokens(const sl_core_t *core);

/* Timers: executor liveness, job deadlines, forgetting finished jobs. Call
 * at least every heartbeat interval. */
void sl_core_tick(sl_core_t *core, sl_time_t now);

/* Stop accepting (BUSY draining); queued and running jobs go on. */
void sl_core_drain(sl_core_t *core);
/* Jobs not yet finished (queued + running). */
uint32_t sl_core_jobs_pending(const sl_core_t *core);
uint32_t sl_core_queue_depth(const sl_core_t *core, sl_prio_t prio);
uint32_t sl_core_inflight(const sl_core_t *core);
uint64_t sl_core_counter(const sl_core_t *core, sl_core_counter_t c);
const char *sl_core_policy_name(const sl_core_t *core);

/* KV events of executor index: blocks stored and evicted (in that order);
 * reset first forgets everything it held. SL_ERR_NOT_FOUND for an unknown
 * executor. */
sl_status_t sl_core_exec_kv_event(sl_core_t *core, uint32_t index, const uint64_t *stored,
                                  size_t n_stored, const uint64_t *evicted, size_t n_evicted,
                                  bool reset, sl_time_t now);
/* The cluster-wide prefix index (read-only use). */
const sl_prefix_index_t *sl_core_prefix_index(const sl_core_t *core);
/* The learned load model (read-only use). */
const sl_load_model_t *sl_core_load_model(const sl_core_t *core);
/* Predict job on e at now with e->hit_blocks (valid inside place()). */
void sl_core_predict(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e,
                     sl_time_t now, sl_lm_pred_t *pred);
/* Inside place(): the executors caching a prefix of the job, and the stamp
 * that marks candidates (e->cand_stamp == stamp means e is cands[e->cand_pos]). */
const sl_prefix_hit_t *sl_core_place_hits(const sl_core_t *core, size_t *n_p, uint64_t *stamp_p);
/* Predicted utilization (prefill backlog over the admission horizon). */
double sl_core_utilization(sl_core_t *core, sl_time_t now);
/* Whether admission is in the busy state. */
bool sl_core_busy(const sl_core_t *core);
/* Save / restore the learned state (load model prior, versioned text). On a
 * bad file, load logs the reason, returns SL_ERR_INVALID and changes nothing. */
sl_status_t sl_core_state_save(const sl_core_t *core, FILE *f);
sl_status_t sl_core_state_load(sl_core_t *core, FILE *f);

#endif
