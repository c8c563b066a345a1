/*
 * The decision core of the scheduler: a pure library. Events go in as
 * function calls with the current time as an argument; actions come out
 * through the sl_core_io_t callbacks (dispatch a job, deliver a result).
 * No sockets, no threads, no clock reads: the daemon wraps it with ZeroMQ and
 * a real clock, the simulator with a virtual clock, tests with a fake one.
 *
 * The core writes no file and no log: what it has to say goes out through
 * io->log, its state is saved to and restored from a buffer
 * (sl_core_state_save/load), and the embedder does the I/O. It is not
 * re-entrant: a callback must not call back into the core's operations
 * (such a call is refused with SL_ERR_REENTERED and counted); the embedder
 * defers what it wants to do until the call that ran the callback returns.
 *
 * One thread owns a core; nothing in it is locked. The job and executor
 * records and the queries a policy uses are in sl_core_view.h.
 */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_cfg.h"
#include "scheduler/core/sl_core_view.h"

/* Leading blocks of a token-id prompt the core hashes at most (the wire's
 * bound on block hashes a client may send). */
#define SL_CORE_MAX_PROMPT_BLOCKS 8192
/* Distinct executor KV block sizes the core counts to choose the one it
 * hashes prompts with (sizes past these are not counted). */
#define SL_CORE_BLOCK_SIZES 8

/* Final timings the core computes for a result. */
typedef struct sl_job_timings {
    sl_time_t queued; /* receipt -> (last) dispatch */
    sl_time_t ttft;   /* receipt -> first token */
    sl_time_t end;    /* receipt -> completion */
    bool late;        /* ended OK past its whole-job deadline (set by the core) */
} sl_job_timings_t;

/* Severity of a line the core hands to io->log (the values of
 * sl_log_level_t, so an embedder that uses common/sl_log.h passes it on). */
typedef enum sl_core_log_level {
    SL_CORE_LOG_ERROR = 0, /* something the operator must act on */
    SL_CORE_LOG_WARN = 1,  /* the core refused or dropped something */
    SL_CORE_LOG_INFO = 2,  /* an event worth a line (an executor left) */
} sl_core_log_level_t;

/* Actions. Each callback gets the io_arg given at create. None may call an
 * operation of the core (one that changes it; read-only queries are fine):
 * such a call is refused with SL_ERR_REENTERED. */
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
    /* Start moving running job (job->kv_mode SL_KV_MIGRATE) from job->exec
     * to job->kv_peer: the receiver reserves, then the sender pushes.
     * Optional (NULL: jobs never move). A failure abandons the move. */
    sl_status_t (*migrate)(void *arg, sl_job_t *job);
    /* A line for the embedder's log (optional: NULL drops them). msg is one
     * line without a newline, valid during the call. */
    void (*log)(void *arg, sl_core_log_level_t level, const char *msg);
    /* The chain of pipeline stages first drives changed (n 0: none, it takes
     * no jobs until it has one). Optional (NULL: no stages served). */
    void (*stage_plan)(void *arg, sl_exec_t *first, const uint32_t *chain, uint32_t n);
    /* A queued job was shed under overload (overload_shed) to make room
     * for a job that ranks above it: answer its client BUSY with reason and
     * retry_after. The job is released and freed when this returns, and its
     * id is forgotten (a resubmission is a new job). Optional (NULL: the
     * core answers through result instead, SL_JOB_REJECTED with an error
     * that names the retry-after). */
    void (*shed)(void *arg, sl_job_t *job, sl_busy_reason_t reason, sl_time_t retry_after);
} sl_core_io_t;

/* Configuration; every field is a knob of the scheduler (sl_core_cfg_fields). */
typedef struct sl_core_cfg {
    char policy[64]; /* placement policy name (with policy_ops: the fallback's) */
    /* Set in code, not a knob: a policy from outside the registry (a
     * plugin loaded by the daemon) and the argument its init receives.
     * policy then names the built-in that places a job when it returns a
     * choice out of range. NULL: the registry's policy named by policy. */
    const struct sl_policy_ops *policy_ops;
    void *policy_arg;
    int credits;                /* in-flight jobs per executor; 0 = the executor's slots */
    int64_t heartbeat_ms;       /* expected heartbeat interval */
    int missed_heartbeats;      /* heartbeats missed before an executor is lost */
    int queue_max;              /* jobs waiting in the scheduler before BUSY */
    int max_attempts;           /* dispatches before a job fails after executor losses */
    int64_t done_ttl_ms;        /* how long a finished job id is remembered */
    int done_max;               /* most finished jobs remembered (oldest forgotten first) */
    int64_t busy_retry_ms;      /* retry-after for refusals with no better estimate */
    int max_executors;          /* executor table size */
    int64_t seed;               /* random policies */
    int64_t prefix_index_max;   /* block hashes the prefix index remembers */
    bool admission;             /* predictive admission (deadline, overload, tenants) */
    double busy_utilization;    /* enter the busy state above this predicted utilization */
    double busy_hysteresis;     /* leave it below busy_utilization minus this */
    int64_t busy_smooth_ms;     /* time constant of the utilization the busy state follows */
    int64_t admit_horizon_ms;   /* utilization = predicted prefill backlog / this horizon */
    double tenant_rate;         /* jobs/s each tenant may submit; 0 = unlimited */
    double tenant_burst;        /* bucket size of each tenant, jobs */
    double explore_share;       /* learned: share of placements that may explore, at most */
    double place_hold;          /* learned: hold a job while an executor without a free place
                                   would start it in under this share of the best free
                                   one's predicted TTFT (0 = never) */
    double expire_predicted;    /* with admission: a queued job whose predicted TTFT on the
                                   executor chosen for it passes this multiple of what is
                                   left of its TTFT deadline is not dispatched: refused
                                   (BUSY deadline) inside its own submission, else
                                   expired (0 = never) */
    double model_forget;        /* load model: per-executor forgetting factor */
    int64_t model_stale_ms;     /* load model: unchosen this long -> predicted by the prior */
    int64_t model_learn_us;     /* load model: at most one learned completion per this, per exec */
    double quarantine_failures; /* recent failures that quarantine an executor; 0 = never */
    double quarantine_share;    /* ... when they are at least this share of its recent jobs */
    int64_t fail_decay_ms;      /* time constant of an executor's recent failure count */
    int64_t quarantine_ms;      /* how long a quarantined executor gets no jobs */
    bool kv_split;              /* split a job over a prefill and a decode executor when
                                   the model predicts it ends sooner (data plane) */
    double kv_split_margin;     /* ... sooner by at least this share */
    double kv_xfer_prior_mbps;  /* KV transfer bandwidth assumed before any is measured */
    int64_t kv_xfer_latency_us; /* fixed cost of one KV transfer assumed before measured */
    int64_t kv_move_timeout_ms; /* a split or move not handed off in this long is abandoned */
    bool kv_fetch;              /* pull a job's cached prefix from a peer when the model
predicts the transfer beats computing it */
    bool kv_rebalance;          /* move running jobs to less loaded executors when the
                                   model predicts a gain */
    double kv_rebalance_gain;   /* ... a gain of this many times the move's predicted cost */
    int64_t kv_rebalance_ms;    /* look for such a move this often */
    int64_t adopt_grace_ms;     /* restored jobs wait this long for their executors to claim
                                   them before they are queued (sl_core_job_restore) */
    /* fairness and priorities (sl_core_fair.c) */
    bool tenant_fair;                    /* deficit round robin between tenants in a band (false:
                                            first come, first served across tenants) */
    char tenant_weights[SL_CFG_STR_MAX]; /* "name=weight,..." (unlisted tenants weigh 1) */
    int64_t tenant_quantum;              /* tokens of deficit a tenant of weight 1 gets per round */
    int64_t starvation_bound_ms;         /* a batch job waiting longer is served before interactive
                                            ones (0 = strict priority) */
    int tenant_max_jobs;                 /* jobs queued + running per tenant; 0 = unlimited */
    bool overload_shed;                  /* queue full or busy: a newcomer that ranks above a queued
                                            job takes its place, the queued one gets BUSY */
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
    SL_CTR_DONE_DROPPED,    /* finished jobs not remembered (no memory for the record) */
    SL_CTR_PROMPTS_HASHED,  /* token-id prompts whose block hashes the core computed */
    SL_CTR_LATE,            /* jobs that ended OK past their whole-job deadline */
    SL_CTR_REFUSED_NO_FIT,  /* jobs refused at submit: no live executor can hold them */
    SL_CTR_QUARANTINED,     /* executors quarantined for failing their recent jobs */
    SL_CTR_REENTRY_REFUSED, /* calls from inside the core's own callbacks, refused */
    SL_CTR_KV_SPLITS,       /* jobs split: prefill on one executor, decode on another */
    SL_CTR_KV_HANDOFFS,     /* splits whose KV reached the decode executor */
    SL_CTR_KV_SPLIT_FAILED, /* splits abandoned (a side lost, refused or timed out): requeued */
    SL_CTR_KV_MIGRATIONS,   /* running jobs moved with their KV */
    SL_CTR_KV_MIGRATE_FAILED,
    /* moves abandoned: the job went on where it was */ SL_CTR_KV_BYTES, /* KV bytes moved between
                                                                            executors */
    SL_CTR_KV_BLOCKS,            /* KV blocks moved between executors */
    SL_CTR_KV_XFER_US,           /* time KV transfers took, summed (microseconds) */
    SL_CTR_KV_PAUSE_US,          /* pauses of moved sequences, summed (microseconds) */
    SL_CTR_KV_FETCHES,           /* prefix fetches: a job's cached prefix pulled from a peer */
    SL_CTR_KV_FETCH_FAILED,      /* prefix fetches that failed (the job was requeued) */
    SL_CTR_KV_BLOCKS_FETCHED,    /* prompt blocks fetched from a peer's cache */
    SL_CTR_KV_BLOCKS_RECOMPUTED, /* prompt blocks a peer cached but the job's executor computed */
    SL_CTR_JOBS_RESUMED,         /* streaming jobs dispatched again after their delivered tokens */
    SL_CTR_CHUNKS_STALE,         /* token chunks dropped: from an executor not running the job,
                                    or wholly before its delivered frontier (a duplicate) */
    SL_CTR_CHUNKS_GAP,           /* token chunks dropped: past the frontier or max_new_tokens */
    SL_CTR_STREAM_BYTES,         /* gauge: bytes held for delivered tokens of running jobs */
    SL_CTR_RESTORED,             /* jobs restored from a journal after a restart */
    SL_CTR_ADOPTED,              /* restored jobs claimed by their executor (not run again) */
    SL_CTR_UNCLAIMED,            /* restored jobs nobody claimed in the grace: queued */
    SL_CTR_POLICY_INVALID,       /* placements whose policy returned a choice out of range */
    SL_CTR_TENANT_QUOTA,         /* jobs refused BUSY_TENANT: their tenant at tenant_max_jobs */
    SL_CTR_PROMOTED,             /* batch jobs dispatched ahead of waiting interactive ones
                                    (past starvation_bound_ms) */
    SL_CTR_SHED_INTERACTIVE,     /* queued interactive jobs shed under overload (answered BUSY) */
    SL_CTR_SHED_BATCH,           /* queued batch jobs shed under overload (answered BUSY) */
    SL_CTR_EXPLORED,             /* placements the policy made to learn (explore_share) */
    SL_CTR_PLACE_HELD,           /* placements put off: the job waited for a better executor
                                    to free a place (place_hold) */
    SL_CTR_EXPIRED_PREDICTED,    /* queued jobs expired at placement: their predicted TTFT
                                    on the executor chosen passed what was left of their
                                    TTFT deadline (expire_predicted; also in SL_CTR_EXPIRED) */
    SL_CTR_COUNT,
} sl_core_counter_t;

const char *sl_core_counter_name(sl_core_counter_t c);

/* Create a core. io must outlive it. On error *core_p is unchanged. */
sl_status_t sl_core_create(const sl_core_cfg_t *cfg, const sl_core_io_t *io, void *io_arg,
                           sl_core_t **core_p);
/* Destroy a core, releasing every job and executor through io; NULL-safe.
 * Refused (logged, nothing freed) when called from inside a callback. */
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
 *  SL_ERR_ID_COLLISION  the id's hash collides with other ids on every
 *                 probe of the id map (logged); user is not taken;
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

/*
 * A job the embedder's journal kept across a restart comes back, with its
 * old sequence number, without admission (it was accepted once). It is
 * held, not queued: an executor that registers within adopt_grace_ms and
 * lists it among the jobs it holds (sl_exec_info_t.held, matched by seq
 * and id) gets it marked running there instead of dispatched again; the
 * jobs nobody claimed are queued (in seq order, ahead of new ones) when
 * the grace ends. Returns SL_OK (*job_p the job, which owns user),
 * SL_ERR_EXISTS (id or seq known; user not taken), SL_ERR_NOMEM,
 * SL_ERR_INVALID. The next new job's seq is above every restored one.
 */
sl_status_t sl_core_job_restore(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                                uint64_t seq, sl_time_t now, sl_job_t **job_p);
/* A finished job the embedder's journal kept across a restart: its id and
 * receipt join the finished-job log (for done_ttl from now), so a
 * resubmission gets the stored result. SL_ERR_EXISTS when the id is known. */
sl_status_t sl_core_done_restore(sl_core_t *core, const char *id, const void *receipt, size_t len,
                                 sl_time_t now);
/* Raise the next sequence number to at least seq (the journal keeps a
 * bound on those handed out, so a restarted core never reuses one an
 * executor may still hold). */
void sl_core_seq_floor(sl_core_t *core, uint64_t seq);
/* The sequence number the next job gets. */
uint64_t sl_core_seq_next(const sl_core_t *core);
/* Restored jobs still waiting to be claimed. */
uint32_t sl_core_held(const sl_core_t *core);

/* Why no live executor can hold desc (the refusal SL_ERR_NO_EXECUTOR of
 * sl_core_job_submit), written into why (always NUL-terminated). */
void sl_core_job_misfit(const sl_core_t *core, const sl_job_desc_t *desc, char *why,
                        size_t why_len);

/* An executor reports the end of job seq. Stale reports (job not running on
 * that executor) are counted and ignored: SL_ERR_NOT_FOUND. */
sl_status_t sl_core_job_complete(sl_core_t *core, uint32_t exec_index, uint64_t seq,
                                 const sl_job_result_t *res, const void *payload, sl_time_t now);

/*
 * Executor exec_index streamed tokens[0..n) of job seq's output, the first
 * at offset. The core keeps per job the tokens already forwarded to its
 * client (the delivered frontier), across attempts, and forwards each
 * offset once, in order: on SL_OK the client gets tokens[*skip_p ..
 * *skip_p + *fwd_p), which the core recorded (the frontier moved past
 * them; a chunk overlapping the frontier is trimmed). Otherwise nothing is
 * forwarded and the chunk is counted:
 *  SL_ERR_NOT_FOUND  stale: the job does not run there (a lost incarnation,
 *                    an earlier attempt), or it is unknown or done;
 *  SL_ERR_EXISTS     wholly before the frontier (a duplicate, a late chunk);
 *  SL_ERR_INVALID    it starts past the frontier (a gap, never forwarded:
 *                    the Result still carries every token) or runs past
 *                    max_new_tokens;
 *  SL_ERR_NOMEM      no memory to record it (not forwarded).
 * A job dispatched again carries the delivered tokens (job->delivered,
 * job->resume_tokens of them) to its new executor, which goes on after them.
 */
sl_status_t sl_core_job_chunk(sl_core_t *core, uint32_t exec_index, uint64_t seq, uint32_t offset,
                              const uint32_t *tokens, uint32_t n, sl_time_t now, uint32_t *skip_p,
                              uint32_t *fwd_p);

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
 * old incarnation). *index_p is its handle. exec->user is set to user.
 * Restored jobs that info->held lists (same seq and id) are adopted: marked
 * running on it, within its credits, before anything is placed on it; the
 * embedder finds which by sl_core_job_get (job->exec) and tells the
 * executor to drop the others. */
sl_status_t sl_core_exec_join(sl_core_t *core, const sl_exec_info_t *info, void *user,
                              sl_time_t now, uint32_t *index_p);
/* A heartbeat with load. SL_ERR_NOT_FOUND for an unknown or lost index. */
sl_status_t sl_core_exec_heartbeat(sl_core_t *core, uint32_t index, const sl_exec_load_t *load,
                                   sl_time_t now);
/* Any other message from an executor also proves it alive. */
sl_status_t sl_core_exec_touch(sl_core_t *core, uint32_t index, sl_time_t now);
/* The executor is gone (goodbye, or the embedder knows it died): requeue its jobs. */
sl_status_t sl_core_exec_lost(sl_core_t *core, uint32_t index, const char *why, sl_time_t now);
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
/* Jobs of tenant (NULL or "": the unnamed one) queued or running, the
 * count tenant_max_jobs bounds; 0 for a tenant the core never saw. */
uint32_t sl_core_tenant_jobs(const sl_core_t *core, const char *tenant);
uint32_t sl_core_inflight(const sl_core_t *core);
uint64_t sl_core_counter(const sl_core_t *core, sl_core_counter_t c);
const char *sl_core_policy_name(const sl_core_t *core);

/* KV events of executor index: blocks stored and evicted (in that order);
 * reset first forgets everything it held. SL_ERR_NOT_FOUND for an unknown
 * executor. */
sl_status_t sl_core_exec_kv_event(sl_core_t *core, uint32_t index, const uint64_t *stored,
                                  size_t n_stored, const uint64_t *evicted, size_t n_evicted,
                                  bool reset, sl_time_t now);
/* The data plane (sl_core_kv.c). Executor from reached (ok) or could not
 * reach to with a transfer (PeerReach): KV moves only along reached pairs.
 * SL_ERR_NOT_FOUND for an unknown executor. */
sl_status_t sl_core_exec_reach(sl_core_t *core, uint32_t from, uint32_t to, bool ok, sl_time_t now);
/* Whether from reached to (KV can be written from one into the other). */
bool sl_core_exec_reaches(const sl_core_t *core, const sl_exec_t *from, const sl_exec_t *to);
/* Executor exec_index ended the push of a job's KV (KvSent): a split's
 * prefill side handing off to the decode side, or a move's source handing
 * off to the destination. SL_ERR_NOT_FOUND when stale (counted). */
sl_status_t sl_core_kv_sent(sl_core_t *core, uint32_t exec_index, const sl_kv_sent_t *sent,
                            sl_time_t now);
/* Executor exec_index could not reserve blocks for job seq (KvReserved with
 * an error): the split or move is abandoned. SL_ERR_NOT_FOUND when stale. */
sl_status_t sl_core_kv_refused(sl_core_t *core, uint32_t exec_index, uint64_t seq, const char *why,
                               sl_time_t now);
/* Move running job seq to the executor the model predicts best for the
 * rest of it (or to_index when not UINT32_MAX). SL_ERR_AGAIN when no
 * executor can take it now. */
sl_status_t sl_core_job_migrate(sl_core_t *core, uint64_t seq, uint32_t to_index, sl_time_t now);
/* Predicted seconds to move bytes of KV between two executors (learned). */
double sl_core_kv_xfer_predict(const sl_core_t *core, double bytes);
/* Executor index is leaving: it gets no new jobs, and its running jobs move
 * to others where the data plane allows (the rest finish there). */
sl_status_t sl_core_exec_drain(sl_core_t *core, uint32_t index, sl_time_t now);

/* Predicted utilization (prefill backlog over the admission horizon). */
double sl_core_utilization(sl_core_t *core, sl_time_t now);
/* Whether admission is in the busy state. */
bool sl_core_busy(const sl_core_t *core);
/* Save the learned state (load model prior, versioned text) into buf of
 * cap bytes, NUL-terminated; *len_p is its length without the NUL.
 * SL_ERR_OVERFLOW when cap is too small: *len_p is then the length needed
 * (call again with more than that) and buf holds nothing usable. The
 * embedder writes it where it keeps state (the daemon: --state-file). */
sl_status_t sl_core_state_save(const sl_core_t *core, char *buf, size_t cap, size_t *len_p);
/* Restore what save wrote, len bytes of buf (need not be NUL-terminated).
 * On bad text logs the reason, returns SL_ERR_INVALID and changes nothing;
 * SL_ERR_REENTERED from inside a callback. */
sl_status_t sl_core_state_load(sl_core_t *core, const char *buf, size_t len);

#endif
