/*
 * What a placement policy sees of the core: the job and the executor as
 * read-only records, and the queries a policy makes while it places one job
 * (predictions, prefix hits, candidates). sl_policy.h includes this and
 * nothing else of the core, so a policy built against it never depends on
 * the core's internals or on the embedder's side of its API (sl_core.h).
 */
#ifndef SL_CORE_VIEW_H
#define SL_CORE_VIEW_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"
#include "common/sl_list.h"
#include "common/sl_types.h"
#include "scheduler/core/sl_load_model.h"
#include "scheduler/core/sl_prefix_index.h"

#define SL_CORE_MAX_NAME 128
#define SL_EXEC_MAX_MODELS 16

typedef struct sl_core sl_core_t;

typedef enum sl_job_state {
    SL_JOB_QUEUED,  /* waiting in the scheduler */
    SL_JOB_RUNNING, /* dispatched to an executor */
    SL_JOB_DONE,    /* result being delivered (inside io->result; freed after it) */
} sl_job_state_t;

typedef struct sl_exec sl_exec_t;

/* A job inside the core. Fields are read-only outside the core. */
typedef struct sl_job {
    uint64_t seq;             /* core-assigned handle, unique for the core's life */
    uint64_t id_hash;         /* hash of id */
    char *id;                 /* idempotency id (inside this allocation) */
    char *tenant;             /* "" when none */
    char *model;              /* "" when none */
    char *session_key;        /* "" when none */
    sl_prio_t prio;           /* class */
    uint32_t prompt_tokens;   /* prompt length */
    uint32_t max_new_tokens;  /* output budget */
    uint64_t *block_hashes;   /* prefix block hashes (inside this allocation) */
    uint32_t n_block_hashes;  /* entries of block_hashes */
    uint32_t block_tokens;    /* tokens per hashed block */
    sl_time_t submitted;      /* receipt time */
    sl_time_t ttft_due;       /* absolute; 0 = none */
    sl_time_t due;            /* absolute; 0 = none */
    sl_time_t dispatched;     /* last dispatch time */
    const void *receipt;      /* set by io->result: bytes remembered with the finished id,
                                 borrowed until it returns (see sl_core_done_find) */
    size_t receipt_len;       /* their length */
    sl_job_state_t state;     /* where it is */
    uint32_t attempts;        /* dispatches so far */
    sl_exec_t *exec;          /* executor running it (state RUNNING) */
    double predicted_ttft_us; /* the load model's prediction at placement (0 = none) */
    sl_lm_pred_t pred;        /* the load model's prediction for where it runs */
    uint32_t uncached_tokens; /* prompt tokens not cached where it was placed */
    uint32_t vocab_need;      /* largest prompt token id + 1 (0: no ids): executors' vocab >= it */
    float queued_work_s;      /* predicted prefill seconds while it waits in the scheduler */
    /* Its KV moving between executors (the data plane; sl_core_kv.c). */
    sl_kv_mode_t kv_mode;     /* SL_KV_LOCAL: none; SL_KV_PUSH: split, kv_peer computes the
                                 prompt and hands its KV to exec, which decodes;     SL_KV_MIGRATE:
                                 moving     from exec     to kv_peer;              SL_KV_FETCH: exec
                                 pulls     its cached     prefix from kv_peer */
    sl_exec_t *kv_peer;       /* the other executor of the split or the move */
    uint64_t kv_nonce;        /* names the reservation at the receiving executor */
    sl_time_t kv_started;     /* when the split or the move began */
    sl_lm_pred_t kv_pred;     /* split: the prediction for kv_peer's prefill */
    float kv_xfer_pred_s;     /* the transfer time predicted for it */
    bool kv_split;            /* its prompt was computed by another executor (this run) */
    bool kv_no_move;          /* a split or fetch of it failed on the receiving side (no room):
                                 it runs where it is placed, its prompt computed there */
    uint32_t kv_fetch_blocks; /* SL_KV_FETCH: its leading blocks kv_peer caches (to pull) */
    bool cancel_asked;        /* its client canceled it while it ran: a CANCELED report ends it
                                 (any other CANCELED is an earlier attempt's, dropped) */
    /* Its streamed output (sl_core_stream.c): what the client already has. */
    uint32_t *delivered;       /* output tokens forwarded to the client, in order (owned; NULL
                                  until the first chunk); grows to max_new_tokens at most */
    uint32_t n_delivered;      /* the frontier: offset of the next token the client gets */
    uint32_t cap_delivered;    /* room in delivered */
    uint32_t resume_tokens;    /* delivered tokens its current attempt was dispatched with */
    sl_time_t first_delivered; /* when its first token was forwarded (0: none yet) */
    bool restored;             /* restored from a journal and not yet placed: it waits in the
                                  core's held list for its executor to claim it (adopt) */
    void *user;                /* the embedder's data (daemon: routing, payload) */
    sl_list_t link;            /* queue, executor in-flight list or done list */
    struct sl_core_tenant *tenant_rec; /* the core's record of its tenant (opaque) */
    sl_list_t tlink;                   /* its tenant's queue of its band, while queued */
} sl_job_t;

/* An executor inside the core. Fields are read-only outside the core; what
 * the core keeps only for its own bookkeeping (placement marks, list
 * positions) is in its private part (sl_core_int.h). */
struct sl_exec {
    /* The fields placement reads come first, the names last, so that a
     * candidate's checks and prediction touch a few cache lines of it. */
    uint32_t index;              /* slot in the core's table */
    size_t n_models;             /* 0 = any model */
    uint32_t slots;              /* declared capacity */
    uint32_t credits;            /* in-flight bound actually used */
    uint32_t inflight;           /* jobs dispatched and not completed */
    uint64_t inflight_tokens;    /* prompt + output tokens of those jobs */
    sl_step_clock_t clock;       /* where it is in its steps (heartbeats, results, dispatches) */
    sl_list_t jobs;              /* in-flight jobs */
    sl_time_t joined;            /* join time */
    sl_time_t last_seen;         /* last message from it */
    uint64_t completed;          /* jobs that ended OK here */
    uint64_t failed;             /* jobs it failed or rejected (canceled ones count in neither) */
    uint32_t max_context_tokens; /* prompt + new tokens of one job at most; 0 = unlimited */
    uint32_t vocab_size;         /* prompt token ids below this; 0 = unlimited */
    double fail_recent;          /* failed jobs, decayed over fail_decay_ms */
    double done_recent;          /* all jobs that ended here, decayed the same way */
    sl_time_t recent_at;         /* when both were last decayed */
    sl_time_t quarantined_until; /* not placed on before this (0 = never quarantined) */
    uint32_t kv_blocks_total;    /* KV capacity */
    uint32_t kv_block_tokens;    /* tokens per KV block */
    double speed;                /* declared speed hint */
    bool alive;                  /* false once lost (slot then free) */
    void *user;                  /* the embedder's data (daemon: identity) */
    void *policy_state;          /* per-executor state a policy may keep */
    uint64_t prefill_tokens;     /* uncached prompt tokens of its in-flight jobs */
    sl_exec_role_t role;         /* which part of a job it serves */
    bool data_plane;             /* it registered a KV region: KV can move to and from it */
    double kv_bytes_per_token;   /* KV bytes of one token there (data plane) */
    uint32_t kv_peer_jobs;       /* jobs it serves as kv_peer (counted in inflight) */
    bool draining;               /* it asked to leave: no new jobs, its jobs move away */
    bool kv_fetch_source;        /* it can send blocks of its prefix cache to a peer */
    /* Pipeline stages (sl_core_stage.c). */
    uint32_t layer_first;               /* first layer it holds */
    uint32_t layer_last;                /* last layer it holds (inclusive) */
    uint32_t layers_total;              /* of a model of this many; 0 = the whole model */
    uint32_t stage_n;                   /* stages in it; 0 = none (it takes no jobs) */
    uint32_t stage_chain[SL_STAGE_MAX]; /* a first stage: the chain it drives (itself first) */
    sl_exec_load_t load;                /* last heartbeat */
    char name[SL_CORE_MAX_NAME];        /* unique name */
    char backend[32];                   /* backend name */
    char models[SL_EXEC_MAX_MODELS][SL_CORE_MAX_NAME]; /* models served */
};

/* e's step cost model from its last heartbeat (SL_STEP_COST_N
 * coefficients), NULL when it reports none. */
static inline const float *sl_core_exec_step_cost(const sl_exec_t *e)
{
    return e->load.has_step_cost ? e->load.step_cost : NULL;
}

/* Whether e is quarantined at now: its recent jobs failed, so no job is
 * placed on it until e->quarantined_until. */
static inline bool sl_core_exec_quarantined(const sl_exec_t *e, sl_time_t now)
{
    return e->quarantined_until > now;
}

/* Executor by index, NULL when unknown or lost. */
sl_exec_t *sl_core_exec_get(sl_core_t *core, uint32_t index);
/* Number of executor table slots (iterate 0..n-1 with sl_core_exec_get). */
uint32_t sl_core_exec_slots(const sl_core_t *core);
/* Live executors. */
uint32_t sl_core_exec_count(const sl_core_t *core);
/* The cluster-wide prefix index (read-only use). */
const sl_prefix_index_t *sl_core_prefix_index(const sl_core_t *core);
/* The learned load model (read-only use). */
const sl_load_model_t *sl_core_load_model(const sl_core_t *core);
/* How uncertain the load model is about e: its recent relative TTFT error
 * plus 1 / sqrt(1 + jobs learned there) (1 for an executor never seen). */
double sl_core_exec_uncertainty(const sl_core_t *core, const sl_exec_t *e);
/* The share of placements a policy may spend exploring (explore_share). */
double sl_core_explore_share(const sl_core_t *core);
/* A policy made a placement to learn: counted as placements_explored. */
void sl_core_note_explored(sl_core_t *core);
/* Inside place(): whether job should rather wait (SL_POLICY_WAIT) than go
 * to the best free candidate, predicted to give its first token in
 * best_ttft_s: true when a live executor with no free place is predicted
 * to give it in under place_hold x best_ttft_s, counting its expected wait
 * for a place (the mean time between departures there). Looks at every
 * live executor up to 64 of them, at 32 drawn at random beyond. */
bool sl_core_place_later(sl_core_t *core, const sl_job_t *job, double best_ttft_s, sl_time_t now);
/* Predict job on e at now, with e's prefix hits of the job being placed
 * (valid inside place(); none elsewhere). */
void sl_core_predict(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e, sl_time_t now,
                     sl_lm_pred_t *pred);
/* Inside place(): by executor index (e->index), the leading blocks of the
 * job each executor caches; all 0 outside place(). Owned by the core. */
const uint32_t *sl_core_place_hit_blocks(const sl_core_t *core);
/* Inside place(): the executors caching a prefix of the job, *n_p of them
 * (candidates or not; sl_core_place_candidate tells). */
const sl_prefix_hit_t *sl_core_place_hits(const sl_core_t *core, size_t *n_p);
/* Inside place(): true when e is one of the candidates, at cands[*pos_p];
 * false otherwise (and outside place()). */
bool sl_core_place_candidate(const sl_core_t *core, const sl_exec_t *e, size_t *pos_p);

#endif
