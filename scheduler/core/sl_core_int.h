/*
 * What the files of the core share and nobody else sees: the core's state,
 * each executor's private part, the finished-job log's records, and the
 * functions one subject calls in another. Not installed and not included
 * outside scheduler/core/ (policies see sl_core_view.h only).
 *
 * The subjects: sl_core.c (life cycle, jobs, queues, timers), sl_core_done.c
 * (the finished-job log), sl_core_admit.c (admission), sl_core_place.c
 * (placement and dispatch), sl_core_exec.c (the executor table),
 * sl_core_adopt.c (jobs restored from a journal, adopted or queued),
 * sl_core_state.c (saving and restoring the learned state), sl_core_fair.c
 * (the queues: tenants, bands, quotas and shedding).
 */
#ifndef SL_CORE_INT_H
#define SL_CORE_INT_H

#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy.h"
#include "common/sl_map.h"
#include "common/sl_rand.h"

/* Probes of the id map before an id counts as colliding (SL_ERR_ID_COLLISION). */
#define SL_CORE_ID_PROBES 4

/* The core's private part of an executor: bookkeeping no policy or
 * embedder reads. The public record is its first member, so the table
 * stores &pub and sl_core_exec_priv() gets back here. (The placement's
 * prefix hits are in sl_core.hit_blocks, by index, so a policy reads them
 * without a call per candidate.) */
typedef struct sl_core_exec {
    sl_exec_t pub;       /* what the embedder and the policies see */
    uint32_t cand_pos;   /* during a placement: its position among the candidates */
    uint64_t cand_stamp; /* placement whose candidate list holds it */
    uint32_t free_pos;   /* position in the core's free-credit list */
    uint32_t alive_pos;  /* position in the core's list of live executors */
    uint64_t *reach;     /* data plane: bit i set = it reached executor i (NULL: none) */
} sl_core_exec_t;

static inline sl_core_exec_t *sl_core_exec_priv(const sl_exec_t *e)
{
    return SL_CONTAINER_OF((sl_exec_t *)e, sl_core_exec_t, pub);
}

/* A finished job in the log: its id and its receipt. */
typedef struct sl_core_done {
    uint64_t id_key;   /* its key in by_id */
    sl_time_t done_at; /* when it finished */
    uint32_t id_len;   /* bytes of the id, NUL included */
    uint32_t len;      /* bytes of the receipt */
    char data[];       /* the id, then the receipt */
} sl_core_done_t;

/* One block of the log. */
typedef struct sl_core_done_block {
    struct sl_core_done_block *next; /* the next newer block */
    size_t cap;                      /* bytes of data */
    size_t used;                     /* bytes appended */
    size_t head;                     /* bytes forgotten (the oldest record starts here) */
    _Alignas(8) uint8_t data[];      /* records */
} sl_core_done_block_t;

/* A tenant as the core knows it (sl_core_fair.c): admission's token bucket,
 * its quota count and its part of each band's queue. Created at its first
 * job and kept until the core is destroyed. */
typedef struct sl_core_tenant {
    uint64_t key;                   /* hash of its name: its key in the tenants map */
    double weight;                  /* its share weight (tenant_weights; 1 when unlisted) */
    double quantum;                 /* deficit one round robin turn adds: tenant_quantum x weight */
    uint32_t jobs;                  /* its jobs queued or running (tenant_max_jobs) */
    uint32_t queued[SL_PRIO_COUNT]; /* its queued jobs per band */
    double queued_cost[SL_PRIO_COUNT]; /* their token cost (prompt + new tokens) */
    double deficit[SL_PRIO_COUNT];     /* tokens it may still be served this turn, per band */
    sl_list_t q[SL_PRIO_COUNT];        /* its queued jobs per band, in queue order (job->tlink) */
    sl_list_t act[SL_PRIO_COUNT];      /* its place in core->active[band] while queued there */
    double bucket;                     /* admission: jobs it may still submit (tenant_rate) */
    sl_time_t bucket_at;               /* last refill of the bucket */
    bool bucket_set;                   /* the bucket was filled once */
} sl_core_tenant_t;

/* One row of the parsed tenant_weights knob. */
typedef struct sl_core_weight {
    uint64_t key;  /* hash of the tenant's name */
    double weight; /* its weight */
} sl_core_weight_t;

struct sl_core {
    sl_core_cfg_t cfg;                /* configuration */
    const sl_core_io_t *io;           /* action callbacks */
    void *io_arg;                     /* their argument */
    const sl_policy_ops_t *policy;    /* placement policy */
    void *policy_state;               /* its state */
    const sl_policy_ops_t *fallback;  /* built-in placing when policy's choice is out of range
                                         (with cfg.policy_ops); NULL: the first candidate */
    void *fallback_state;             /* its state */
    uint32_t in_callback;             /* callbacks (io or policy) now running: no re-entry */
    sl_map_t by_id;                   /* id hash (probed) -> job, or sl_core_done_t | 1 */
    sl_map_t by_seq;                  /* seq -> job, while queued or running */
    sl_list_t queue[SL_PRIO_COUNT];   /* waiting jobs per class */
    uint32_t qlen[SL_PRIO_COUNT];     /* their lengths */
    sl_core_done_block_t *done_head;  /* the finished-job log: oldest block */
    sl_core_done_block_t *done_tail;  /* newest block (records are appended here) */
    sl_core_done_block_t *done_spare; /* an emptied block kept for reuse */
    uint32_t n_done;                  /* records in the log */
    uint32_t running;                 /* jobs dispatched */
    sl_exec_t **execs;                /* table of max_executors slots */
    sl_exec_t **cands;                /* scratch: placement candidates */
    uint32_t n_alive;                 /* live executors */
    int64_t free_credits;             /* sum of free credits of live executors */
    uint64_t next_seq;                /* next job sequence number */
    bool draining;                    /* refusing new jobs */
    bool pumping;                     /* inside sl_core_pump (no re-entry) */
    sl_job_t *submitting;             /* the job sl_core_job_submit is pumping for (the pump
                                         marks it SL_JOB_DONE, unqueued, to have it refused) */
    bool placing;                     /* inside policy->place (candidate marks valid) */
    uint64_t counters[SL_CTR_COUNT];  /* statistics */
    sl_exec_t **alive_execs;          /* live executors */
    uint32_t *alive_index;            /* their indices, in the same order (a dense array
                                       * for the backlog sum: no executor record read) */
    sl_exec_t **free_execs;           /* executors with a free credit */
    uint32_t *free_index;             /* their indices, in the same order (a draw's load model
                                         is prefetched without reading the executor first) */
    uint32_t n_free_execs;            /* entries of free_execs */
    sl_prefix_index_t *index;         /* cluster-wide prefix index */
    sl_load_model_t *model;           /* learned load model */
    sl_prefix_hit_t *hits;            /* scratch: prefix hits of the job being placed */
    uint32_t *hit_blocks;             /* per executor index: leading blocks of that job it
                                         caches (0 outside a placement) */
    size_t n_hits;                    /* entries of hits */
    uint32_t common_blocks;           /* leading blocks of the job taken as cached everywhere */
    uint64_t hits_seq;                /* the job whose match hits still holds (seq + 1; 0: none) */
    uint64_t hits_gen;                /* ... at this generation of the index */
    size_t hits_len;                  /* ... its entries */
    uint32_t hits_common;             /* ... its common_blocks */
    uint64_t place_stamp;             /* current placement (marks candidates) */
    double queued_work_s;             /* predicted prefill of jobs in the scheduler's queue */
    uint32_t queued_with_due;         /* queued jobs that have a deadline (ticks scan only then) */
    bool busy;                        /* admission's busy state */
    double util_avg;                  /* utilization averaged over busy_smooth_ms */
    sl_time_t util_avg_at;            /* when util_avg was last updated (0 = never) */
    double util_cached;               /* last summed prefill backlog, seconds */
    sl_time_t util_at;                /* when (recomputed at most every ms) */
    double done_rate;                 /* jobs leaving their places per second (EWMA) */
    sl_time_t done_rate_at;           /* last update of done_rate */
    sl_map_t tenants;                 /* tenant hash -> sl_core_tenant_t */
    sl_list_t active[SL_PRIO_COUNT];  /* per band: tenants with queued jobs, round-robin order */
    uint32_t n_active[SL_PRIO_COUNT]; /* their numbers */
    sl_core_tenant_t *tenant_last;    /* the tenant looked up last (most lookups repeat it) */
    sl_core_tenant_t tenant_spill;    /* tenants whose record could not be allocated share it */
    sl_core_weight_t *weights;        /* tenant_weights, parsed */
    size_t n_weights;                 /* its rows */
    uint64_t rand_state;              /* sampling for admission estimates */
    sl_rand_t cand_rand;              /* drawing sampled candidates (policy->sample) */
    uint32_t hash_block_tokens;       /* block size token prompts are hashed with (0 = none) */
    uint64_t fit_context;             /* smallest context of a live executor (UINT64_MAX: none
                                         limited): a job within it and fit_vocab fits them all */
    uint64_t fit_vocab;               /* smallest vocabulary of a live executor, likewise */
    /* the data plane (sl_core_kv.c) */
    uint32_t n_data_plane;  /* live executors with a data plane */
    uint32_t n_kv_moving;   /* running jobs split or moving (kv_mode != LOCAL) */
    double xfer_s_per_byte; /* learned KV transfer time per byte */
    double xfer_lat_s;      /* learned fixed cost of one transfer */
    uint64_t xfer_samples;  /* transfers learned from */
    uint64_t kv_nonce;      /* last reservation nonce handed out */
    sl_time_t rebalance_at; /* next look for a rebalancing move */
    bool drain_pending;     /* a draining executor holds a job not yet moved: look every tick */
    /* restored jobs (sl_core_adopt.c) */
    sl_list_t held;       /* restored jobs waiting to be claimed, in seq order */
    uint32_t n_held;      /* their number */
    sl_time_t held_until; /* when the unclaimed ones are queued */
};

/* ---- calling out: every io and policy callback runs inside these ---- */

/* A callback starts / ends; while one runs, the core's operations refuse. */
static inline void sl_core_cb_enter(sl_core_t *core)
{
    core->in_callback++;
}

static inline void sl_core_cb_leave(sl_core_t *core)
{
    core->in_callback--;
}

/* Tell the policy, and the fallback if any, that e joined or left; called
 * inside a callback section (sl_core_cb_enter). */
static inline void sl_core_policy_exec_change(sl_core_t *core, sl_exec_t *e, bool joined)
{
    if (core->policy->exec_change)
        core->policy->exec_change(core->policy_state, e, joined);
    if (core->fallback && core->fallback->exec_change)
        core->fallback->exec_change(core->fallback_state, e, joined);
}

/* Count and log a refused call of op; returns true. */
bool sl_core_reentry_refuse(sl_core_t *core, const char *op);

/* At the top of every operation: true (counted, logged) when it was called
 * from inside a callback, and must return SL_ERR_REENTERED at once. */
static inline bool sl_core_reentered(sl_core_t *core, const char *op)
{
    return core->in_callback != 0 && sl_core_reentry_refuse(core, op);
}

/* A line for io->log, formatted like printf (dropped without io->log). */
void sl_core_logf(sl_core_t *core, sl_core_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Format like snprintf into buf of len bytes (cut to fit, NUL-terminated). */
void sl_core_fmt(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- jobs and queues (sl_core.c) ---- */

/* Deliver a finished job's result, remember it in the log, free the job. */
void sl_core_job_finish(sl_core_t *core, sl_job_t *job, sl_job_status_t status,
                        const sl_job_timings_t *t, const sl_exec_t *exec, const void *payload,
                        const char *error, sl_time_t now);
/* A queued job ends SL_JOB_EXPIRED, with why, taken out of its queue. */
void sl_core_job_expire(sl_core_t *core, sl_job_t *job, const char *why, sl_time_t now);
/* Timings of a job that ends without (another) run: queued until now. */
void sl_core_timings_queued(const sl_job_t *job, sl_time_t now, sl_job_timings_t *t);
/* Free a job record (its tenant's count follows), through io->release. */
void sl_core_job_free(sl_core_t *core, sl_job_t *job);

/* ---- the queues: tenants, bands, quotas, shedding (sl_core_fair.c) ---- */

/* Parse tenant_weights and set up the bands (at create); SL_ERR_INVALID
 * (logged through io) on bad text, SL_ERR_NOMEM. */
sl_status_t sl_core_fair_init(sl_core_t *core);
/* Free the tenants and the weights (at destroy). */
void sl_core_fair_fini(sl_core_t *core);
/* The record of tenant (created at its first use; never NULL: without
 * memory for a record the tenant shares the spill record). */
sl_core_tenant_t *sl_core_tenant_get(sl_core_t *core, const char *tenant);
/* Count job against its tenant (quota) until sl_core_job_free. */
void sl_core_tenant_attach(sl_core_t *core, sl_job_t *job);
/* Put a job in its band's queue and its tenant's (front: a requeued one) /
 * take it out of both. */
void sl_core_queue_add(sl_core_t *core, sl_job_t *job, bool front);
void sl_core_queue_del(sl_core_t *core, sl_job_t *job);
/* The job to place next: the batch head past starvation_bound_ms, else
 * the first band with jobs, and in it the head of the tenant whose
 * deficit allows (tenant_fair with several tenants) or the oldest job;
 * NULL when nothing is queued. Taking it out is sl_core_queue_del. */
sl_job_t *sl_core_queue_next(sl_core_t *core, sl_time_t now);
/* job (from sl_core_queue_next) is being dispatched with its uncached
 * tokens known: its tenant's deficit pays for it. */
void sl_core_queue_charge(sl_core_t *core, const sl_job_t *job);
/* Overload (queue full, or admission's busy state) and overload_shed: the
 * queued job a newcomer of prio and tenant (cost tokens) displaces, NULL
 * when none ranks below it. */
sl_job_t *sl_core_shed_victim(sl_core_t *core, sl_prio_t prio, const char *tenant, double cost);
/* Take job out of the queue and answer it BUSY (io->shed, or io->result
 * REJECTED); its id is forgotten and it is freed. */
void sl_core_job_shed(sl_core_t *core, sl_job_t *job, sl_busy_reason_t reason,
                      sl_time_t retry_after, sl_time_t now);

/* The prediction for job on e as if cached_tokens of its prompt were
 * cached there (sl_core_predict takes them from e's prefix hits). */
void sl_core_predict_cached(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e,
                            uint32_t cached_tokens, sl_time_t now, sl_lm_pred_t *pred);

/* ---- credits and requeueing (sl_core_kv.c) ---- */

/* Take / give back one of e's credits (the free list and the totals follow). */
void sl_core_credit_take(sl_core_t *core, sl_exec_t *e);
void sl_core_credit_give(sl_core_t *core, sl_exec_t *e);
/* A running job goes back to the front of the queue (or fails after
 * max_attempts) without its executor being lost: its credit is given
 * back and any KV move of it is abandoned. */
void sl_core_job_requeue(sl_core_t *core, sl_job_t *job, const char *why, sl_time_t now);

/* ---- streamed output (sl_core_stream.c) ---- */

/* Free what job holds of its delivered tokens (the job is being freed). */
void sl_core_stream_free(sl_core_t *core, sl_job_t *job);
/* ---- restored jobs (sl_core_adopt.c) ---- */

/* A new job record for desc (not yet in any map or list; seq unset). */
sl_job_t *sl_core_job_new(sl_core_t *core, const sl_job_desc_t *desc, uint32_t vocab_need,
                          sl_time_t now);
/* The id's key in by_id: SL_OK with the first free probe key, SL_ERR_EXISTS
 * with *old_p the entry of the same id, SL_ERR_ID_COLLISION. */
sl_status_t sl_core_id_probe(const sl_core_t *core, const char *id, uint64_t *key_p, void **old_p);
/* Adopt the restored jobs e claims (at its join, before any placement). */
void sl_core_adopt(sl_core_t *core, sl_exec_t *e, const sl_held_job_t *held, uint32_t n_held,
                   sl_time_t now);
/* A restored job leaves the held list (placed, canceled or finished). */
void sl_core_held_del(sl_core_t *core, sl_job_t *job);
/* Queue the restored jobs nobody claimed once the grace is over. */
void sl_core_held_tick(sl_core_t *core, sl_time_t now);

/* ---- pipeline stages (sl_core_stage.c) ---- */

/* Whether e may be given a job as far as stages go: it holds the whole
 * model, or it is a first stage with a complete chain. */
bool sl_core_stage_ready(const sl_exec_t *e);
/* Check and copy an executor's layer range at join (SL_ERR_INVALID when
 * it is not a range of its model). */
sl_status_t sl_core_stage_join(sl_exec_t *e, const sl_exec_info_t *info);
/* Recompute the chain of every first stage after a join, a loss or a
 * reachability change; a first stage whose chain changed has its running
 * jobs requeued and is told its new chain (io->stage_plan). */
void sl_core_stage_update(sl_core_t *core, sl_time_t now);

/* ---- the data plane (sl_core_kv.c) ---- */

/* An executor joins / is lost: its role, region and reachability. */
sl_status_t sl_core_kv_exec_join(sl_core_t *core, sl_exec_t *e, const sl_exec_info_t *info);
void sl_core_kv_exec_lose(sl_core_t *core, sl_exec_t *e, sl_time_t now);
/* Whether e may be the policy's candidate for a whole job or a decode. */
bool sl_core_kv_candidate(const sl_exec_t *e);
/* After the policy chose d for job: split it when a prefill executor is
 * predicted to make it end sooner (or when d only decodes). False when d
 * only decodes and no prefill executor can take the prompt now. */
bool sl_core_kv_place(sl_core_t *core, sl_job_t *job, sl_exec_t *d, sl_time_t now);
/* The job stops moving: the peer's credit goes back (and it is told to drop
 * the job when cancel_peer). */
void sl_core_kv_detach(sl_core_t *core, sl_job_t *job, bool cancel_peer);
/* Timers: abandoned moves, rebalancing. */
void sl_core_kv_tick(sl_core_t *core, sl_time_t now);

/* ---- the finished-job log (sl_core_done.c) ---- */

/* Values of by_id: a live job, or a finished one's record with bit 0 set. */
static inline bool sl_core_id_is_done(const void *v)
{
    return ((uintptr_t)v & 1) != 0;
}

static inline sl_core_done_t *sl_core_done_of(const void *v)
{
    return (sl_core_done_t *)((uintptr_t)v & ~(uintptr_t)1);
}

static inline const char *sl_core_entry_id(const void *v)
{
    return sl_core_id_is_done(v) ? sl_core_done_of(v)->data : ((const sl_job_t *)v)->id;
}

/* The by_id value for id (live job or tagged record); NULL when unknown. */
void *sl_core_id_find(const sl_core_t *core, const char *id);
/* Remember the finished job (its id and receipt) in place of it in by_id;
 * without memory for the record the id is forgotten (counted). */
void sl_core_done_remember(sl_core_t *core, const sl_job_t *job, sl_time_t now);
/* Forget records past done_ttl or beyond done_max. */
void sl_core_done_forget(sl_core_t *core, sl_time_t now);
/* Free the whole log (at destroy). */
void sl_core_done_fini(sl_core_t *core);

/* ---- admission (sl_core_admit.c) ---- */

/* A job left its place (the rate places free up at, for admission). */
void sl_core_done_rate_note(sl_core_t *core, sl_time_t now);
/* Predicted wait of a job queued now for a place (credit), seconds. */
double sl_core_place_wait_s(const sl_core_t *core, sl_time_t now);
/* false (with reason and retry-after) to refuse job now. */
bool sl_core_admit(sl_core_t *core, sl_job_t *job, sl_time_t now, sl_busy_reason_t *reason_p,
                   sl_time_t *retry_p);
/* At placement, with job->pred made for the executor chosen and the job to
 * be computed there (no split, no prefix fetch): whether its TTFT deadline
 * is predicted lost there (expire_predicted), so it is refused or expires
 * rather than being dispatched. Only with admission, and only for a job
 * never dispatched. */
bool sl_core_place_doomed(const sl_core_t *core, const sl_job_t *job, sl_time_t now);

/* ---- placement (sl_core_place.c) ---- */

/* Place queued jobs while some executor has a free credit. */
void sl_core_pump(sl_core_t *core, sl_time_t now);
/* The common filter every candidate passes: serves the job's model, holds
 * it, not quarantined. */
bool sl_core_can_place(const sl_exec_t *e, const sl_job_t *job, sl_time_t now);
/* Match job's prefix against the index and mark the hits on the
 * executors / clear the marks. */
void sl_core_hits_mark(sl_core_t *core, const sl_job_t *job);
void sl_core_hits_clear(sl_core_t *core);

/* ---- the executor table (sl_core_exec.c) ---- */

/* The free-credit list: an executor is in it while inflight < credits.
 * (Inline: on every dispatch and completion at the credit bound.) */
static inline void sl_core_free_add(sl_core_t *core, sl_exec_t *e)
{
    sl_core_exec_priv(e)->free_pos = core->n_free_execs;
    core->free_index[core->n_free_execs] = e->index;
    core->free_execs[core->n_free_execs++] = e;
}

static inline void sl_core_free_del(sl_core_t *core, sl_exec_t *e)
{
    sl_exec_t *last = core->free_execs[--core->n_free_execs];
    uint32_t pos = sl_core_exec_priv(e)->free_pos;
    core->free_execs[pos] = last;
    core->free_index[pos] = core->free_index[core->n_free_execs];
    sl_core_exec_priv(last)->free_pos = pos;
}
/* e can hold a job of need tokens (prompt + new) with ids below vocab_need. */
bool sl_core_exec_holds(const sl_exec_t *e, uint64_t need, uint32_t vocab_need);
/* Whether some live executor can hold such a job of model. */
bool sl_core_fits_some(const sl_core_t *core, const char *model, uint64_t need,
                       uint32_t vocab_need);
/* The largest prompt token id + 1; 0 without ids. */
uint32_t sl_core_vocab_need(const uint32_t *ids, uint32_t n);
/* Count how a job ended on e; quarantine e when its recent jobs failed. */
void sl_core_exec_outcome(sl_core_t *core, sl_exec_t *e, sl_job_status_t status, sl_time_t now);
/* e is lost: requeue (or fail) its jobs, free it. */
void sl_core_exec_lose(sl_core_t *core, sl_exec_t *e, const char *why, sl_time_t now);

#endif
