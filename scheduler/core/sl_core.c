/*
 * The decision core (see sl_core.h).
 *
 * State: a table of executors, two FIFO queues (interactive, batch), maps
 * from idempotency id and from sequence number to job, and a log of
 * finished jobs kept for done_ttl so that a resubmission is recognised.
 *
 * The finished-job log: a job is freed as soon as its result is out, and
 * what a resubmission needs (the id and the embedder's receipt, the packed
 * result) is appended to a log of large blocks in finishing order; the id
 * map then points at the record (tagged in its low bit). Forgetting pops
 * records from the front, so memory is walked in order and a block is
 * recycled whole. Keeping the finished sl_job_t itself (with a malloc'd
 * receipt) for done_ttl was rejected: 200,000 remembered jobs made every
 * submit, finish and forget a few cache misses and two frees of cold
 * memory, a quarter of the scheduler's time at full load, and took three
 * times the memory.
 *
 * Dispatch is late-binding: a job stays in the scheduler's queue until some
 * executor has a free credit, and is only then placed, by the policy, among
 * the executors free at that moment. Placing at arrival onto per-executor
 * queues (early binding) was rejected: it commits to a guess made with the
 * oldest information, and a slow or lost executor strands its whole queue.
 * The credit bound keeps each executor's own queue just deep enough to form
 * full batches.
 *
 * Failure: an executor silent for missed_heartbeats intervals is lost; its
 * in-flight jobs go back to the front of their queues and are dispatched
 * again (up to max_attempts). A late completion from the lost incarnation
 * is stale and ignored, so every job yields exactly one result.
 *
 * Placement knows two things beyond load: the prefix index (which executors
 * cache the leading blocks of the job, from their KV events) and the load
 * model (predicted TTFT on each executor, learned from every completion).
 * For every placement the core matches the job's block hashes once and
 * marks the hits on the executors (e->hit_blocks), so a policy reads them in
 * O(1) per candidate. A job that brings token ids instead of hashes is
 * hashed at submission, inside its own allocation, with the chained block
 * hash the executors' KV caches use (common/sl_hash.h) and the block size
 * most live executors advertise. Hashing per distinct block size was
 * rejected: hit counts in different block units would reach the policies,
 * which compare them with one block count per job; a cluster normally
 * shares one block size, and executors of a minority size only lose their
 * prefix hits, never correctness. Executors with a free credit sit in a
 * list updated on every credit change, so building the candidates costs the
 * free executors, not the whole table.
 *
 * Admission (when enabled) refuses at once, with a predicted retry-after:
 * a tenant over its token bucket (SL_BUSY_TENANT); any job while the cluster
 * is in the busy state (SL_BUSY_OVERLOAD), entered when predicted
 * utilization (prefill backlog over a horizon) passes busy_utilization and
 * left only below busy_utilization - busy_hysteresis, so the state does not
 * flap; batch jobs already at 90% of the threshold, so interactive work keeps
 * the last capacity; and a job whose best predicted TTFT misses its TTFT
 * deadline, or whose best predicted end (TTFT + TPOT x its output tokens)
 * misses its whole-job deadline (SL_BUSY_DEADLINE, with no retry-after: a
 * deadline is a budget from receipt, and a retry comes back later than the
 * client wanted). A job that runs anyway and ends past its whole-job
 * deadline is marked late in its result and counted. Rejecting late
 * (letting a job queue into a
 * timeout) was rejected: the client learns nothing and the queue serves work
 * that will be thrown away.
 */
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy.h"
#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "common/sl_map.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_ID_PROBES 4
#define S_ADMIT_SAMPLE 32 /* executors sampled for a deadline estimate in big clusters */

/* A finished job in the log: its id and its receipt. */
typedef struct s_done {
    uint64_t id_key;   /* its key in by_id */
    sl_time_t done_at; /* when it finished */
    uint32_t id_len;   /* bytes of the id, NUL included */
    uint32_t len;      /* bytes of the receipt */
    char data[];       /* the id, then the receipt */
} s_done_t;

/* One block of the log. */
typedef struct s_done_block {
    struct s_done_block *next; /* the next newer block */
    size_t cap;                /* bytes of data */
    size_t used;               /* bytes appended */
    size_t head;               /* bytes forgotten (the oldest record starts here) */
    _Alignas(8) uint8_t data[];
} s_done_block_t;

#define S_DONE_BLOCK (256u << 10)
/* Bytes a record takes in the log (8-aligned): header, id, receipt. */
static inline size_t s_done_size(size_t id_len, size_t len)
{
    return (sizeof(s_done_t) + id_len + len + 7) & ~(size_t)7;
}

typedef struct s_bucket {
    double tokens;  /* jobs the tenant may still submit */
    sl_time_t last; /* last refill */
} s_bucket_t;

/* A KV block size live executors advertise. */
typedef struct s_block_size {
    uint32_t tokens; /* tokens per block */
    uint32_t execs;  /* live executors advertising it */
} s_block_size_t;

struct sl_core {
    sl_core_cfg_t cfg;                 /* configuration */
    const sl_core_io_t *io;            /* action callbacks */
    void *io_arg;                      /* their argument */
    const sl_policy_ops_t *policy;     /* placement policy */
    void *policy_state;                /* its state */
    sl_map_t by_id;                    /* id hash (probed) -> job, or s_done_t | 1 */
    sl_map_t by_seq;                   /* seq -> job, while queued or running */
    sl_list_t queue[SL_PRIO_COUNT];    /* waiting jobs per class */
    uint32_t qlen[SL_PRIO_COUNT];      /* their lengths */
    s_done_block_t *done_head;         /* the finished-job log: oldest block */
    s_done_block_t *done_tail;         /* newest block (records are appended here) */
    s_done_block_t *done_spare;        /* an emptied block kept for reuse */
    uint32_t n_done;                   /* records in the log */
    uint32_t running;                  /* jobs dispatched */
    sl_exec_t **execs;                 /* table of max_executors slots */
    sl_exec_t **cands;                 /* scratch: placement candidates */
    uint32_t n_alive;                  /* live executors */
    int64_t free_credits;              /* sum of free credits of live executors */
    uint64_t next_seq;                 /* next job sequence number */
    bool draining;                     /* refusing new jobs */
    bool pumping;                      /* inside s_pump (no re-entry) */
    uint64_t counters[SL_CTR_COUNT];   /* statistics */
    sl_exec_t **alive_execs;           /* live executors */
    sl_exec_t **free_execs;            /* executors with a free credit */
    uint32_t n_free_execs;             /* entries of free_execs */
    sl_prefix_index_t *index;          /* cluster-wide prefix index */
    sl_load_model_t *model;            /* learned load model */
    sl_prefix_hit_t *hits;             /* scratch: prefix hits of the job being placed */
    size_t n_hits;                     /* entries of hits */
    uint32_t common_blocks;            /* leading blocks of the job taken as cached everywhere */
    uint64_t place_stamp;              /* current placement (marks candidates) */
    double queued_work_s;              /* predicted prefill of jobs in the scheduler's queue */
    uint32_t queued_with_due;          /* queued jobs that have a deadline (ticks scan only then) */
    bool busy;                         /* admission's busy state */
    double util_avg;                   /* utilization averaged over busy_smooth_ms */
    sl_time_t util_avg_at;             /* when util_avg was last updated (0 = never) */
    double util_cached;                /* last summed prefill backlog, seconds */
    sl_time_t util_at;                 /* when (recomputed at most every ms) */
    sl_map_t tenants;                  /* tenant hash -> s_bucket_t */
    uint64_t rand_state;               /* sampling for admission estimates */
    uint32_t hash_block_tokens;        /* block size token prompts are hashed with (0 = none) */
    uint64_t fit_context;              /* smallest context of a live executor (UINT64_MAX: none
                                          limited): a job within it and fit_vocab fits them all */
    uint64_t fit_vocab;                /* smallest vocabulary of a live executor, likewise */
};


const sl_cfg_field_t sl_core_cfg_fields[] = {
    SL_CFG_FIELD(sl_core_cfg_t, policy, "policy", "least-outstanding", SL_CFG_STR,
                 "placement policy: learned, kv-cost, scorer, cache-switch, weighted, session, "
                 "round-robin, random, least-outstanding, p2c"),
    SL_CFG_RANGE(sl_core_cfg_t, credits, "credits", "0", SL_CFG_INT, 0, 4096,
                 "jobs in flight per executor (0 = the slots it declares)"),
    SL_CFG_RANGE(sl_core_cfg_t, heartbeat_ms, "heartbeat-ms", "100", SL_CFG_I64, 1, 600000,
                 "heartbeat interval expected from executors, in ms"),
    SL_CFG_RANGE(sl_core_cfg_t, missed_heartbeats, "missed-heartbeats", "3", SL_CFG_INT, 1, 1000,
                 "heartbeats an executor may miss before it is declared lost"),
    SL_CFG_RANGE(sl_core_cfg_t, queue_max, "queue-max", "100000", SL_CFG_INT, 1, 100000000,
                 "jobs waiting in the scheduler before new ones get BUSY"),
    SL_CFG_RANGE(sl_core_cfg_t, max_attempts, "max-attempts", "3", SL_CFG_INT, 1, 100,
                 "dispatches of one job before it fails after executor losses"),
    SL_CFG_RANGE(sl_core_cfg_t, done_ttl_ms, "done-ttl-ms", "60000", SL_CFG_I64, 0, 86400000,
                 "how long a finished job id is remembered for idempotent resubmission"),
    SL_CFG_RANGE(sl_core_cfg_t, done_max, "done-max", "200000", SL_CFG_INT, 0, 100000000,
                 "most finished job ids remembered; the oldest are forgotten first"),
    SL_CFG_RANGE(sl_core_cfg_t, busy_retry_ms, "busy-retry-ms", "1000", SL_CFG_I64, 1, 600000,
                 "retry-after sent with BUSY when no better estimate exists"),
    SL_CFG_RANGE(sl_core_cfg_t, max_executors, "max-executors", "4096", SL_CFG_INT, 1, 1000000,
                 "most executors the scheduler tracks at once"),
    SL_CFG_FIELD(sl_core_cfg_t, seed, "seed", "1", SL_CFG_I64, "seed of randomized policies"),
    SL_CFG_RANGE(sl_core_cfg_t, prefix_index_max, "prefix-index-max", "4000000", SL_CFG_I64, 1,
                 1e10, "block hashes the cluster-wide prefix index remembers (oldest forgotten)"),
    SL_CFG_FIELD(sl_core_cfg_t, admission, "admission", "false", SL_CFG_BOOL,
                 "predictive admission: BUSY at once on overload, missed deadline, tenant limit"),
    SL_CFG_RANGE(sl_core_cfg_t, busy_utilization, "busy-utilization", "0.8", SL_CFG_DOUBLE, 0.01,
                 100, "predicted utilization above which new jobs get BUSY"),
    SL_CFG_RANGE(sl_core_cfg_t, busy_smooth_ms, "busy-smooth-ms", "2000", SL_CFG_I64, 0, 3600000,
                 "time constant of the utilization average the busy state follows (a burst "
                 "shorter than this does not refuse work the deadline check would admit; "
                 "0 = instant)"),
    SL_CFG_RANGE(sl_core_cfg_t, busy_hysteresis, "busy-hysteresis", "0.1", SL_CFG_DOUBLE, 0, 100,
                 "the busy state ends below busy-utilization minus this"),
    SL_CFG_RANGE(sl_core_cfg_t, admit_horizon_ms, "admit-horizon-ms", "3000", SL_CFG_I64, 1,
                 3600000, "utilization = predicted prefill backlog per executor over this horizon"),
    SL_CFG_RANGE(sl_core_cfg_t, tenant_rate, "tenant-rate", "0", SL_CFG_DOUBLE, 0, 1e9,
                 "jobs per second one tenant may submit (token bucket; 0 = unlimited)"),
    SL_CFG_RANGE(sl_core_cfg_t, tenant_burst, "tenant-burst", "100", SL_CFG_DOUBLE, 1, 1e9,
                 "token bucket size per tenant, in jobs"),
    SL_CFG_RANGE(sl_core_cfg_t, model_forget, "model-forget", "0.98", SL_CFG_DOUBLE, 0.5, 1,
                 "load model forgetting factor per completion (lower adapts faster)"),
    SL_CFG_RANGE(sl_core_cfg_t, model_stale_ms, "model-stale-ms", "30000", SL_CFG_I64, 0,
                 86400000, "an executor not chosen for this long is predicted by the fleet's "
                 "shared prior until it gets a job (so one bad stretch cannot starve it for "
                 "good; 0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, model_learn_us, "model-learn-us", "100", SL_CFG_I64, 0, 60000000,
                 "past a burst of 64, an executor's load model learns from at most one completion "
                 "per this many us (every completion is still scored; 0 = learn from all)"),
    SL_CFG_FIELD(sl_core_cfg_t, state_file, "state-file", "", SL_CFG_STR,
                 "learned state (load model) read at start and written on clean exit"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_failures, "quarantine-failures", "3", SL_CFG_DOUBLE, 0,
                 1e9, "recent failed jobs (decayed over fail-decay-ms) that quarantine an "
                 "executor (0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_share, "quarantine-share", "0.5", SL_CFG_DOUBLE, 0, 1,
                 "...when they are at least this share of its recent jobs"),
    SL_CFG_RANGE(sl_core_cfg_t, fail_decay_ms, "fail-decay-ms", "10000", SL_CFG_I64, 1, 86400000,
                 "time constant of an executor's recent failed and finished job counts, in ms"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_ms, "quarantine-ms", "30000", SL_CFG_I64, 1, 86400000,
                 "how long a quarantined executor gets no jobs, in ms"),
    SL_CFG_END,
};

void sl_core_cfg_default(sl_core_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    sl_cfg_defaults(sl_core_cfg_fields, cfg);
}

static const char *const s_counter_names[SL_CTR_COUNT] = {
    [SL_CTR_SUBMITTED] = "jobs_submitted",
    [SL_CTR_ACCEPTED] = "jobs_accepted",
    [SL_CTR_DUPLICATES] = "jobs_duplicate",
    [SL_CTR_BUSY_OVERLOAD] = "busy_overload",
    [SL_CTR_BUSY_DEADLINE] = "busy_deadline",
    [SL_CTR_BUSY_QUEUE_FULL] = "busy_queue_full",
    [SL_CTR_BUSY_TENANT] = "busy_tenant",
    [SL_CTR_BUSY_NO_EXECUTOR] = "busy_no_executor",
    [SL_CTR_BUSY_DRAINING] = "busy_draining",
    [SL_CTR_DISPATCHED] = "jobs_dispatched",
    [SL_CTR_COMPLETED] = "jobs_completed",
    [SL_CTR_FAILED] = "jobs_failed",
    [SL_CTR_REQUEUED] = "jobs_requeued",
    [SL_CTR_EXPIRED] = "jobs_expired",
    [SL_CTR_CANCELED] = "jobs_canceled",
    [SL_CTR_EXECUTORS_JOINED] = "executors_joined",
    [SL_CTR_EXECUTORS_LOST] = "executors_lost",
    [SL_CTR_STALE_COMPLETIONS] = "completions_stale",
    [SL_CTR_KV_STORED] = "kv_blocks_stored",
    [SL_CTR_KV_EVICTED] = "kv_blocks_evicted",
    [SL_CTR_PREFIX_HIT_BLOCKS] = "prefix_hit_blocks",
    [SL_CTR_BUSY_ENTERED] = "busy_state_entered",
    [SL_CTR_DONE_DROPPED] = "done_not_remembered",
    [SL_CTR_PROMPTS_HASHED] = "prompts_hashed",
    [SL_CTR_LATE] = "jobs_late",
    [SL_CTR_REFUSED_NO_FIT] = "jobs_refused_no_fit",
    [SL_CTR_QUARANTINED] = "executors_quarantined",
};

const char *sl_core_counter_name(sl_core_counter_t c)
{
    return c < SL_CTR_COUNT ? s_counter_names[c] : "unknown";
}

static uint64_t s_id_key(const char *id, int probe)
{
    return sl_hash_bytes(id, strlen(id), (uint64_t)probe);
}

/* Values of by_id: a live job, or a finished one's record with bit 0 set. */
static inline bool s_is_done(const void *v)
{
    return ((uintptr_t)v & 1) != 0;
}

static inline s_done_t *s_done_of(const void *v)
{
    return (s_done_t *)((uintptr_t)v & ~(uintptr_t)1);
}

static inline const char *s_entry_id(const void *v)
{
    return s_is_done(v) ? s_done_of(v)->data : ((const sl_job_t *)v)->id;
}

/* The by_id value for id (live job or tagged record); NULL when unknown. */
static void *s_id_find(const sl_core_t *core, const char *id)
{
    size_t len = strlen(id);
    for (int p = 0; p < S_ID_PROBES; p++) {
        void *v = sl_map_get(&core->by_id, sl_hash_bytes(id, len, (uint64_t)p));
        if (!v)
            return NULL;
        if (strcmp(s_entry_id(v), id) == 0)
            return v;
    }
    return NULL;
}

sl_job_t *sl_core_job_find(sl_core_t *core, const char *id)
{
    void *v = s_id_find(core, id);
    return v && !s_is_done(v) ? v : NULL;
}

bool sl_core_done_find(const sl_core_t *core, const char *id, const void **receipt_p,
                       size_t *len_p)
{
    void *v = s_id_find(core, id);
    if (!v || !s_is_done(v))
        return false;
    const s_done_t *rec = s_done_of(v);
    *receipt_p = rec->data + rec->id_len;
    *len_p = rec->len;
    return true;
}

/* Append job's record to the log; NULL when there is no memory for it. */
static s_done_t *s_done_append(sl_core_t *core, const sl_job_t *job, sl_time_t now)
{
    size_t id_len = strlen(job->id) + 1;
    size_t need = s_done_size(id_len, job->receipt_len);
    s_done_block_t *b = core->done_tail;
    if (job->receipt_len > UINT32_MAX)
        return NULL;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > S_DONE_BLOCK ? need : S_DONE_BLOCK;
        s_done_block_t *nb = core->done_spare;
        if (nb && nb->cap >= cap)
            core->done_spare = NULL;
        else if (!(nb = malloc(sizeof(*nb) + cap)))
            return NULL;
        else
            nb->cap = cap;
        nb->next = NULL;
        nb->used = nb->head = 0;
        if (b)
            b->next = nb;
        else
            core->done_head = nb;
        core->done_tail = b = nb;
    }
    s_done_t *rec = (s_done_t *)(b->data + b->used);
    b->used += need;
    rec->id_key = job->id_hash;
    rec->done_at = now;
    rec->id_len = (uint32_t)id_len;
    rec->len = (uint32_t)job->receipt_len;
    memcpy(rec->data, job->id, id_len);
    if (job->receipt_len)
        memcpy(rec->data + id_len, job->receipt, job->receipt_len);
    core->n_done++;
    return rec;
}

/* The oldest record of the log, or NULL; emptied blocks are recycled. */
static s_done_t *s_done_front(sl_core_t *core)
{
    s_done_block_t *b;
    while ((b = core->done_head) && b->head == b->used) {
        if (b == core->done_tail) {
            b->head = b->used = 0;
            return NULL;
        }
        core->done_head = b->next;
        if (!core->done_spare && b->cap == S_DONE_BLOCK)
            core->done_spare = b;
        else
            free(b);
    }
    return b ? (s_done_t *)(b->data + b->head) : NULL;
}

void sl_core_job_prefetch(const sl_core_t *core, const char *id)
{
    sl_map_prefetch(&core->by_id, s_id_key(id, 0));
}

void sl_core_complete_prefetch(const sl_core_t *core, uint64_t seq)
{
    const sl_job_t *job = sl_map_get(&core->by_seq, seq);
    if (job)
        sl_map_prefetch(&core->by_id, job->id_hash);
}

sl_job_t *sl_core_job_get(sl_core_t *core, uint64_t seq)
{
    return sl_map_get(&core->by_seq, seq);
}

sl_status_t sl_core_create(const sl_core_cfg_t *cfg, const sl_core_io_t *io, void *io_arg,
                           sl_core_t **core_p)
{
    const sl_policy_ops_t *policy = sl_policy_find(cfg->policy);
    if (!policy) {
        SL_ERROR("unknown placement policy '%s'", cfg->policy);
        return SL_ERR_INVALID;
    }
    if (policy->api_version != SL_POLICY_API_VERSION) {
        SL_ERROR("policy '%s' was built for API %d, not %d", policy->name, policy->api_version,
                 SL_POLICY_API_VERSION);
        return SL_ERR_INVALID;
    }
    if (cfg->max_executors <= 0)
        return SL_ERR_INVALID;
    sl_core_t *core = calloc(1, sizeof(*core));
    if (!core)
        return SL_ERR_NOMEM;
    core->cfg = *cfg;
    core->io = io;
    core->io_arg = io_arg;
    core->policy = policy;
    core->next_seq = 1;
    core->fit_context = core->fit_vocab = UINT64_MAX;
    sl_map_init(&core->by_id);
    sl_map_init(&core->by_seq);
    for (int p = 0; p < SL_PRIO_COUNT; p++)
        sl_list_init(&core->queue[p]);
    sl_map_init(&core->tenants);
    core->rand_state = (uint64_t)cfg->seed;
    core->execs = calloc((size_t)cfg->max_executors, sizeof(*core->execs));
    core->cands = calloc((size_t)cfg->max_executors, sizeof(*core->cands));
    core->free_execs = calloc((size_t)cfg->max_executors, sizeof(*core->free_execs));
    core->alive_execs = calloc((size_t)cfg->max_executors, sizeof(*core->alive_execs));
    core->hits = calloc(SL_PREFIX_MAX_HOLDERS, sizeof(*core->hits));
    if (!core->execs || !core->cands || !core->free_execs || !core->alive_execs || !core->hits)
        goto err_free;
    if (sl_prefix_index_create((size_t)cfg->prefix_index_max, (uint32_t)cfg->max_executors,
                               &core->index) != SL_OK)
        goto err_free;
    sl_lm_cfg_t lm = {.forget = cfg->model_forget, .prior_forget = 0.995, .p_init = 10.0,
                      .stale = SL_MS(cfg->model_stale_ms), .learn_gap = SL_US(cfg->model_learn_us)};
    if (lm.forget <= 0 || lm.forget > 1)
        lm.forget = 0.98;
    if (sl_load_model_create(&lm, (uint32_t)cfg->max_executors, &core->model) != SL_OK)
        goto err_free;
    sl_policy_params_t params = {.core = core, .seed = (uint64_t)cfg->seed};
    if (policy->init(&params, &core->policy_state) != SL_OK)
        goto err_free;
    *core_p = core;
    return SL_OK;

err_free:
    sl_load_model_destroy(&core->model);
    sl_prefix_index_destroy(&core->index);
    free(core->hits);
    free(core->free_execs);
    free(core->alive_execs);
    free(core->cands);
    free(core->execs);
    free(core);
    return SL_ERR_NOMEM;
}

static void s_job_free(sl_core_t *core, sl_job_t *job)
{
    if (core->io->release)
        core->io->release(core->io_arg, job);
    free(job);
}

void sl_core_destroy(sl_core_t **core_p)
{
    sl_core_t *core = *core_p;
    if (!core)
        return;
    size_t it = 0;
    void *val;
    while (sl_map_next(&core->by_id, &it, NULL, &val))
        if (!s_is_done(val))
            s_job_free(core, val);
    for (s_done_block_t *b = core->done_head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(core->done_spare);
    for (int i = 0; i < core->cfg.max_executors; i++) {
        sl_exec_t *e = core->execs[i];
        if (!e)
            continue;
        if (core->policy->exec_change)
            core->policy->exec_change(core->policy_state, e, false);
        if (core->io->exec_lost)
            core->io->exec_lost(core->io_arg, e, "scheduler shutting down");
        free(e);
    }
    core->policy->fini(core->policy_state);
    sl_map_fini(&core->by_id);
    sl_map_fini(&core->by_seq);
    it = 0;
    while (sl_map_next(&core->tenants, &it, NULL, &val))
        free(val);
    sl_map_fini(&core->tenants);
    sl_load_model_destroy(&core->model);
    sl_prefix_index_destroy(&core->index);
    free(core->hits);
    free(core->free_execs);
    free(core->alive_execs);
    free(core->cands);
    free(core->execs);
    free(core);
    *core_p = NULL;
}

/* Forget the oldest finished job (rec, the front of the log). */
static void s_done_pop(sl_core_t *core, s_done_t *rec)
{
    s_done_block_t *b = core->done_head;
    b->head += s_done_size(rec->id_len, rec->len);
    core->n_done--;
    /* The log is walked in order; the map slots are not: start loading the
     * next one's while this one is removed. */
    if (b->head < b->used)
        sl_map_prefetch(&core->by_id, ((s_done_t *)(b->data + b->head))->id_key);
    void *v = sl_map_get(&core->by_id, rec->id_key);
    if (v && s_done_of(v) == rec)
        sl_map_del(&core->by_id, rec->id_key);
}

/* Deliver a finished job's result, remember its id and receipt for
 * done_ttl in the log, and free the job. */
static void s_job_finish(sl_core_t *core, sl_job_t *job, sl_job_status_t status,
                         const sl_job_timings_t *t, const sl_exec_t *exec, const void *payload,
                         const char *error, sl_time_t now)
{
    sl_map_del(&core->by_seq, job->seq);
    job->state = SL_JOB_DONE;
    job->exec = NULL;
    job->receipt = NULL;
    job->receipt_len = 0;
    sl_job_timings_t tl = *t;
    tl.late = status == SL_JOB_OK && job->due && now > job->due;
    if (tl.late)
        core->counters[SL_CTR_LATE]++;
    switch (status) {
    case SL_JOB_OK: core->counters[SL_CTR_COMPLETED]++; break;
    case SL_JOB_EXPIRED: core->counters[SL_CTR_EXPIRED]++; break;
    case SL_JOB_CANCELED: core->counters[SL_CTR_CANCELED]++; break;
    default: core->counters[SL_CTR_FAILED]++; break;
    }
    core->io->result(core->io_arg, job, status, &tl, exec, payload, error);
    s_done_t *rec = s_done_append(core, job, now);
    if (rec) {
        sl_map_swap(&core->by_id, job->id_hash, (void *)((uintptr_t)rec | 1));
        /* Past the count bound the oldest goes now, one per finish (its map
         * slot was prefetched by the previous one), not thousands per tick. */
        s_done_t *old;
        if (core->n_done > (uint32_t)core->cfg.done_max && (old = s_done_front(core)))
            s_done_pop(core, old);
    } else {
        /* no memory to remember it: a resubmission will run it again */
        sl_map_del(&core->by_id, job->id_hash);
        core->counters[SL_CTR_DONE_DROPPED]++;
    }
    s_job_free(core, job);
}

static void s_timings_queued(const sl_job_t *job, sl_time_t now, sl_job_timings_t *t)
{
    t->queued = (job->dispatched ? job->dispatched : now) - job->submitted;
    t->ttft = 0;
    t->end = now - job->submitted;
}

static void s_dequeue(sl_core_t *core, sl_job_t *job)
{
    sl_list_del(&job->link);
    core->qlen[job->prio]--;
    if (job->due || job->ttft_due)
        core->queued_with_due--;
    core->queued_work_s -= job->queued_work_s;
    if (core->qlen[0] + core->qlen[1] == 0)
        core->queued_work_s = 0; /* no drift from rounding */
}

static void s_enqueue(sl_core_t *core, sl_job_t *job, bool front)
{
    if (front)
        sl_list_push_front(&core->queue[job->prio], &job->link);
    else
        sl_list_push_back(&core->queue[job->prio], &job->link);
    core->qlen[job->prio]++;
    if (job->due || job->ttft_due)
        core->queued_with_due++;
    core->queued_work_s += job->queued_work_s;
}

/* The free-credit list: an executor is in it while inflight < credits. */
static void s_free_add(sl_core_t *core, sl_exec_t *e)
{
    e->free_pos = core->n_free_execs;
    core->free_execs[core->n_free_execs++] = e;
}

static void s_free_del(sl_core_t *core, sl_exec_t *e)
{
    sl_exec_t *last = core->free_execs[--core->n_free_execs];
    core->free_execs[e->free_pos] = last;
    last->free_pos = e->free_pos;
}

static bool s_serves(const sl_exec_t *e, const sl_job_t *job)
{
    if (e->n_models == 0 || job->model[0] == '\0')
        return true;
    for (size_t i = 0; i < e->n_models; i++)
        if (strcmp(e->models[i], job->model) == 0)
            return true;
    return false;
}

/* e can hold a job of need tokens (prompt + new) with ids below vocab_need. */
static bool s_holds(const sl_exec_t *e, uint64_t need, uint32_t vocab_need)
{
    return (e->max_context_tokens == 0 || need <= e->max_context_tokens) &&
           (e->vocab_size == 0 || vocab_need <= e->vocab_size);
}

/* The common placement filter every policy's candidates pass: e serves the
 * job's model, can hold it, and is not quarantined. */
static bool s_can_place(const sl_exec_t *e, const sl_job_t *job, sl_time_t now)
{
    return s_serves(e, job) &&
           s_holds(e, (uint64_t)job->prompt_tokens + job->max_new_tokens, job->vocab_need) &&
           !sl_core_exec_quarantined(e, now);
}

static void s_exec_lose(sl_core_t *core, sl_exec_t *e, const char *why, sl_time_t now);

static void s_dispatch(sl_core_t *core, sl_job_t *job, sl_exec_t *e, sl_time_t now)
{
    s_dequeue(core, job);
    job->state = SL_JOB_RUNNING;
    job->exec = e;
    job->attempts++;
    job->dispatched = now;
    sl_list_push_back(&e->jobs, &job->link);
    if (e->inflight + 1 == e->credits)
        s_free_del(core, e);
    e->inflight++;
    e->inflight_tokens += (uint64_t)job->prompt_tokens + job->max_new_tokens;
    e->prefill_tokens += job->uncached_tokens;
    core->free_credits--;
    core->running++;
    core->counters[SL_CTR_DISPATCHED]++;
    if (core->io->dispatch(core->io_arg, e, job) != SL_OK)
        s_exec_lose(core, e, "dispatch failed", now);
}

/* Prompt tokens of job cached on e (e->hit_blocks valid); one token is
 * always computed. */
static uint32_t s_hit_blocks(const sl_core_t *core, const sl_exec_t *e)
{
    return e->hit_blocks > core->common_blocks ? e->hit_blocks : core->common_blocks;
}

static uint32_t s_cached_tokens(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e)
{
    uint64_t c = (uint64_t)s_hit_blocks(core, e) * (job->block_tokens ? job->block_tokens : 16);
    if (c >= job->prompt_tokens)
        c = job->prompt_tokens ? job->prompt_tokens - 1 : 0;
    return (uint32_t)c;
}

static void s_hits_mark(sl_core_t *core, const sl_job_t *job)
{
    core->n_hits = sl_prefix_index_match(core->index, job->block_hashes, job->n_block_hashes,
                                         core->hits, SL_PREFIX_MAX_HOLDERS, &core->common_blocks);
    for (size_t i = 0; i < core->n_hits; i++) {
        sl_exec_t *e = core->execs[core->hits[i].exec];
        if (e)
            e->hit_blocks = core->hits[i].blocks;
    }
}

static void s_hits_clear(sl_core_t *core)
{
    for (size_t i = 0; i < core->n_hits; i++) {
        sl_exec_t *e = core->execs[core->hits[i].exec];
        if (e)
            e->hit_blocks = 0;
    }
    core->n_hits = 0;
    core->common_blocks = 0;
}

void sl_core_predict(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e,
                     sl_time_t now, sl_lm_pred_t *pred)
{
    sl_lm_query_t q = {.prompt_tokens = job->prompt_tokens,
                       .cached_tokens = s_cached_tokens(core, job, e),
                       .running = e->inflight,
                       .kv_need = (uint64_t)job->prompt_tokens + job->max_new_tokens,
                       .kv_inflight = e->inflight_tokens,
                       .kv_capacity = (uint64_t)e->kv_blocks_total * e->kv_block_tokens};
    sl_load_model_predict(core->model, e->index, &q, now, pred);
}

const sl_prefix_hit_t *sl_core_place_hits(const sl_core_t *core, size_t *n_p, uint64_t *stamp_p)
{
    *n_p = core->n_hits;
    *stamp_p = core->place_stamp;
    return core->hits;
}

/* Place queued jobs while some executor has a free credit. */
static void s_pump(sl_core_t *core, sl_time_t now)
{
    if (core->pumping)
        return;
    core->pumping = true;
    while (core->free_credits > 0) {
        sl_job_t *job = NULL;
        for (int p = 0; p < SL_PRIO_COUNT && !job; p++)
            if (!sl_list_empty(&core->queue[p]))
                job = SL_CONTAINER_OF(core->queue[p].next, sl_job_t, link);
        if (!job)
            break;
        size_t n = 0;
        uint64_t stamp = ++core->place_stamp;
        for (uint32_t i = 0; i < core->n_free_execs; i++) {
            sl_exec_t *e = core->free_execs[i];
            if (s_can_place(e, job, now)) {
                e->cand_pos = (uint32_t)n;
                e->cand_stamp = stamp;
                core->cands[n++] = e;
            }
        }
        if (n == 0)
            break; /* head of line waits for an executor that can take it */
        s_hits_mark(core, job);
        size_t pick = core->policy->place(core->policy_state, job, core->cands, n, now);
        if (pick >= n)
            pick = 0;
        sl_exec_t *e = core->cands[pick];
        sl_core_predict(core, job, e, now, &job->pred);
        job->predicted_ttft_us = job->pred.ttft_s * 1e6;
        uint32_t cached = s_cached_tokens(core, job, e);
        job->uncached_tokens = job->prompt_tokens - cached;
        core->counters[SL_CTR_PREFIX_HIT_BLOCKS] += s_hit_blocks(core, e);
        sl_load_model_dispatched(core->model, e->index, &job->pred, now);
        /* The backlog sum grows by exactly this prefill (the executor's
         * clock restarts from now if it had drained): kept up to date here
         * rather than summed over every executor again at the next submit. */
        core->util_cached += job->pred.prefill_s;
        s_hits_clear(core);
        s_dispatch(core, job, e, now);
    }
    core->pumping = false;
}

static uint64_t s_rand(sl_core_t *core)
{
    core->rand_state += 0x9e3779b97f4a7c15ull;
    return sl_hash_mix64(core->rand_state);
}

double sl_core_utilization(sl_core_t *core, sl_time_t now)
{
    if (core->n_alive == 0)
        return 0;
    /* The backlog sum is O(executors): reuse it for up to a millisecond
     * unless a dispatch changed it. */
    if (core->util_at == 0 || now < core->util_at || now - core->util_at >= SL_MS(1)) {
        double backlog = 0;
        for (uint32_t i = 0; i < core->n_alive; i++)
            backlog += sl_load_model_backlog_s(core->model, core->alive_execs[i]->index, now);
        core->util_cached = backlog;
        core->util_at = now ? now : 1;
    }
    double prefill = (core->util_cached + core->queued_work_s) /
                     ((double)core->n_alive * (double)core->cfg.admit_horizon_ms / 1e3);
    /* Decode-bound load does not show in the prefill backlog: the share of
     * the executors' in-flight places taken (jobs queued here count too)
     * rises toward 1 as the running batches fill, where decode steps and
     * KV run out. Utilization is whichever is higher. */
    double places = (double)core->running + (double)core->free_credits;
    double slots = places > 0 ? ((double)core->running + core->qlen[0] + core->qlen[1]) / places
                              : 0.0;
    return prefill > slots ? prefill : slots;
}

bool sl_core_busy(const sl_core_t *core)
{
    return core->busy;
}

/* Best predicted TTFT of job over the executors caching its prefix and a
 * sample of the others (all of them in a small cluster), and in *end_p the
 * best predicted end (TTFT + TPOT x max_new_tokens, the model's whole-job
 * estimate). Sets the job's predicted queued work to the prefill on the
 * executor of the best TTFT. */
static double s_best_ttft(sl_core_t *core, sl_job_t *job, sl_time_t now, double *end_p)
{
    double best = INFINITY, best_prefill = 0, best_end = INFINITY;
    sl_lm_pred_t pred;
    s_hits_mark(core, job);
    for (size_t i = 0; i < core->n_hits; i++) {
        sl_exec_t *e = core->execs[core->hits[i].exec];
        if (!e || !s_can_place(e, job, now))
            continue;
        sl_core_predict(core, job, e, now, &pred);
        if (pred.ttft_s < best) {
            best = pred.ttft_s;
            best_prefill = pred.prefill_s;
        }
        double end = pred.ttft_s + (double)pred.tpot_s * job->max_new_tokens;
        if (end < best_end)
            best_end = end;
    }
    uint32_t n = core->n_alive, k = n <= 2 * S_ADMIT_SAMPLE ? n : S_ADMIT_SAMPLE;
    for (uint32_t i = 0; i < k; i++) {
        sl_exec_t *e = core->alive_execs[k == n ? i : (uint32_t)(s_rand(core) % n)];
        if (!s_can_place(e, job, now))
            continue;
        sl_core_predict(core, job, e, now, &pred);
        if (pred.ttft_s < best) {
            best = pred.ttft_s;
            best_prefill = pred.prefill_s;
        }
        double end = pred.ttft_s + (double)pred.tpot_s * job->max_new_tokens;
        if (end < best_end)
            best_end = end;
    }
    s_hits_clear(core);
    job->queued_work_s = (float)best_prefill;
    /* No free credit: it also waits its turn in the scheduler's queue. */
    if (core->n_free_execs == 0 && core->n_alive) {
        best += core->queued_work_s / core->n_alive;
        best_end += core->queued_work_s / core->n_alive;
    }
    *end_p = best_end;
    return best;
}

/* The largest prompt token id + 1; 0 without ids. */
static uint32_t s_vocab_need(const uint32_t *ids, uint32_t n)
{
    uint32_t top = 0;
    for (uint32_t i = 0; i < n; i++)
        top = ids[i] > top ? ids[i] : top;
    return ids && n ? (top == UINT32_MAX ? UINT32_MAX : top + 1) : 0;
}

static bool s_serves_model(const sl_exec_t *e, const char *model)
{
    if (e->n_models == 0 || !model || model[0] == '\0')
        return true;
    for (size_t i = 0; i < e->n_models; i++)
        if (strcmp(e->models[i], model) == 0)
            return true;
    return false;
}

/* Whether some live executor can hold a job of need tokens with ids below
 * vocab_need. A job within every executor's limits (the common case) costs
 * two comparisons; a larger one a walk over the live executors that serve
 * its model. A job whose model no executor serves is left to wait for one,
 * as before limits existed. */
static bool s_fits_some(const sl_core_t *core, const char *model, uint64_t need,
                        uint32_t vocab_need)
{
    if (need <= core->fit_context && vocab_need <= core->fit_vocab)
        return true;
    bool served = false;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        const sl_exec_t *e = core->alive_execs[i];
        if (!s_serves_model(e, model))
            continue;
        served = true;
        if (s_holds(e, need, vocab_need))
            return true;
    }
    return !served;
}

/* The smallest limits over the live executors (fast path of s_fits_some);
 * O(executors), at joins and losses only. */
static void s_fit_choose(sl_core_t *core)
{
    core->fit_context = core->fit_vocab = UINT64_MAX;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        const sl_exec_t *e = core->alive_execs[i];
        if (e->max_context_tokens && e->max_context_tokens < core->fit_context)
            core->fit_context = e->max_context_tokens;
        if (e->vocab_size && e->vocab_size < core->fit_vocab)
            core->fit_vocab = e->vocab_size;
    }
}

/* Why no live executor of model holds a job of prompt + out tokens with
 * ids below vocab_need. */
static void s_misfit(const sl_core_t *core, const char *model, uint32_t prompt, uint32_t out,
                     uint32_t vocab_need, char *why, size_t why_len)
{
    uint64_t ctx = 0, vocab = 0; /* largest over the executors of its model; UINT64_MAX: unlimited */
    for (uint32_t i = 0; i < core->n_alive; i++) {
        const sl_exec_t *e = core->alive_execs[i];
        if (!s_serves_model(e, model))
            continue;
        uint64_t c = e->max_context_tokens ? e->max_context_tokens : UINT64_MAX;
        uint64_t v = e->vocab_size ? e->vocab_size : UINT64_MAX;
        ctx = c > ctx ? c : ctx;
        vocab = v > vocab ? v : vocab;
    }
    uint64_t need = (uint64_t)prompt + out;
    if (need > ctx)
        snprintf(why, why_len, "prompt %u + %u new tokens exceed every executor's context "
                 "(largest %llu)", prompt, out, (unsigned long long)ctx);
    else if (vocab_need > vocab)
        snprintf(why, why_len, "prompt token id %u is outside every executor's vocabulary "
                 "(largest %llu)", vocab_need - 1, (unsigned long long)vocab);
    else
        snprintf(why, why_len, "no executor holds both prompt %u + %u new tokens and token "
                 "id %u", prompt, out, vocab_need ? vocab_need - 1 : 0);
}

void sl_core_job_misfit(const sl_core_t *core, const sl_job_desc_t *desc, char *why,
                        size_t why_len)
{
    s_misfit(core, desc->model, desc->prompt_tokens, desc->max_new_tokens,
             s_vocab_need(desc->token_ids, desc->n_token_ids), why, why_len);
}

/* After a loss: queued jobs that no live executor can hold any more (the
 * one that could is gone) end REJECTED with the reason instead of waiting
 * at the head of the queue for good. While no executor is left at all,
 * they wait for one, as every job does. O(queue), at losses only. */
static void s_reject_unfit(sl_core_t *core, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    char why[256];
    if (core->n_alive == 0 || (core->fit_context == UINT64_MAX && core->fit_vocab == UINT64_MAX))
        return; /* no live executor has limits: every job fits */
    for (int p = 0; p < SL_PRIO_COUNT; p++) {
        sl_list_for_each_safe(pos, tmp, &core->queue[p])
        {
            sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
            if (s_fits_some(core, job->model,
                            (uint64_t)job->prompt_tokens + job->max_new_tokens, job->vocab_need))
                continue;
            sl_job_timings_t t;
            s_misfit(core, job->model, job->prompt_tokens, job->max_new_tokens, job->vocab_need,
                     why, sizeof(why));
            s_dequeue(core, job);
            s_timings_queued(job, now, &t);
            s_job_finish(core, job, SL_JOB_REJECTED, &t, NULL, NULL, why, now);
        }
    }
}

/* Admission: false (with reason and retry-after) to refuse job now. */
static bool s_admit(sl_core_t *core, sl_job_t *job, sl_time_t now, sl_busy_reason_t *reason_p,
                    sl_time_t *retry_p)
{
    if (core->cfg.tenant_rate > 0) {
        uint64_t key = sl_hash_bytes(job->tenant, strlen(job->tenant), 7) | 1;
        s_bucket_t *b = sl_map_get(&core->tenants, key);
        if (!b) {
            b = malloc(sizeof(*b));
            if (b && sl_map_put(&core->tenants, key, b) != SL_OK) {
                free(b);
                b = NULL;
            }
            if (b) {
                b->tokens = core->cfg.tenant_burst;
                b->last = now;
            }
        }
        if (b) {
            b->tokens += (double)(now - b->last) / 1e9 * core->cfg.tenant_rate;
            if (b->tokens > core->cfg.tenant_burst)
                b->tokens = core->cfg.tenant_burst;
            b->last = now;
            if (b->tokens < 1.0) {
                *reason_p = SL_BUSY_TENANT;
                *retry_p = (sl_time_t)((1.0 - b->tokens) / core->cfg.tenant_rate * 1e9) + 1;
                return false;
            }
            b->tokens -= 1.0;
        }
    }
    double util = sl_core_utilization(core, now);
    if (core->cfg.busy_smooth_ms == 0 || core->util_avg_at == 0) {
        core->util_avg = util;
    } else if (now > core->util_avg_at) {
        double a = 1.0 - exp(-(double)(now - core->util_avg_at) /
                             ((double)core->cfg.busy_smooth_ms * 1e6));
        core->util_avg += a * (util - core->util_avg);
    }
    core->util_avg_at = now > 0 ? now : 1;
    util = core->util_avg;
    double high = core->cfg.busy_utilization, low = high - core->cfg.busy_hysteresis;
    double horizon_s = (double)core->cfg.admit_horizon_ms / 1e3;
    if (!core->busy && util > high) {
        core->busy = true;
        core->counters[SL_CTR_BUSY_ENTERED]++;
    } else if (core->busy && util < low) {
        core->busy = false;
    }
    double limit = job->prio == SL_PRIO_BATCH ? 0.9 * high : high;
    if (core->busy || util > limit) {
        double target = job->prio == SL_PRIO_BATCH ? 0.9 * low : low;
        double wait_s = (util - target) * horizon_s;
        *reason_p = SL_BUSY_OVERLOAD;
        *retry_p = (sl_time_t)((wait_s > 0.01 ? wait_s : 0.01) * 1e9);
        return false;
    }
    double best_end;
    double best = s_best_ttft(core, job, now, &best_end);
    /* A deadline is a budget from receipt: a retry would come back later
     * than the client wanted, so these refusals carry no retry-after. */
    bool ttft_missed = job->ttft_due && isfinite(best) &&
                       best > (double)(job->ttft_due - now) / 1e9;
    bool end_missed = job->due && isfinite(best_end) &&
                      best_end > (double)(job->due - now) / 1e9;
    if (ttft_missed || end_missed) {
        *reason_p = SL_BUSY_DEADLINE;
        *retry_p = 0;
        return false;
    }
    return true;
}

sl_status_t sl_core_job_submit(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                               sl_time_t now, sl_job_t **job_p, sl_busy_reason_t *reason_p,
                               sl_time_t *retry_after_p)
{
    sl_busy_reason_t reason;
    core->counters[SL_CTR_SUBMITTED]++;
    if (!desc->id || !desc->id[0] || desc->prio >= SL_PRIO_COUNT)
        return SL_ERR_INVALID;
    /* One pass over the id's probe keys: the job itself, or the first free key. */
    size_t l_id = strlen(desc->id) + 1;
    uint64_t id_key = 0;
    int probe = 0;
    for (; probe < S_ID_PROBES; probe++) {
        id_key = sl_hash_bytes(desc->id, l_id - 1, (uint64_t)probe);
        void *old = sl_map_get(&core->by_id, id_key);
        if (!old)
            break;
        if (strcmp(s_entry_id(old), desc->id) == 0) {
            core->counters[SL_CTR_DUPLICATES]++;
            *job_p = s_is_done(old) ? NULL : old;
            return SL_ERR_EXISTS;
        }
    }
    if (core->draining) {
        reason = SL_BUSY_DRAINING;
        goto busy;
    }
    if (core->n_alive == 0) {
        reason = SL_BUSY_NO_EXECUTOR;
        goto busy;
    }
    if (core->qlen[0] + core->qlen[1] >= (uint32_t)core->cfg.queue_max) {
        reason = SL_BUSY_QUEUE_FULL;
        goto busy;
    }
    uint32_t vocab_need = s_vocab_need(desc->token_ids, desc->n_token_ids);
    if (!s_fits_some(core, desc->model, (uint64_t)desc->prompt_tokens + desc->max_new_tokens,
                     vocab_need)) {
        core->counters[SL_CTR_REFUSED_NO_FIT]++;
        return SL_ERR_NO_EXECUTOR;
    }

    size_t l_tenant = (desc->tenant ? strlen(desc->tenant) : 0) + 1;
    size_t l_model = (desc->model ? strlen(desc->model) : 0) + 1;
    size_t l_sess = (desc->session_key ? strlen(desc->session_key) : 0) + 1;
    /* Token ids without block hashes: hash their full blocks in place below. */
    uint32_t n_hashes = desc->n_block_hashes, block_tokens = desc->block_tokens;
    bool hash_tokens = !n_hashes && desc->n_token_ids && desc->token_ids && core->hash_block_tokens;
    if (hash_tokens) {
        block_tokens = core->hash_block_tokens;
        n_hashes = desc->n_token_ids / block_tokens;
        if (n_hashes > SL_CORE_MAX_PROMPT_BLOCKS)
            n_hashes = SL_CORE_MAX_PROMPT_BLOCKS;
    }
    size_t hashes = (size_t)n_hashes * sizeof(uint64_t);
    sl_job_t *job = calloc(1, sizeof(*job) + hashes + l_id + l_tenant + l_model + l_sess);
    if (!job)
        return SL_ERR_NOMEM;
    char *p = (char *)(job + 1);
    job->block_hashes = (uint64_t *)p;
    if (hash_tokens && n_hashes) {
        sl_hash_kv_blocks(desc->token_ids, desc->n_token_ids, block_tokens, job->block_hashes,
                          n_hashes);
        core->counters[SL_CTR_PROMPTS_HASHED]++;
    } else if (hashes) {
        memcpy(job->block_hashes, desc->block_hashes, hashes);
    }
    p += hashes;
    job->id = p;
    memcpy(p, desc->id, l_id);
    p += l_id;
    job->tenant = p;
    memcpy(p, desc->tenant ? desc->tenant : "", l_tenant);
    p += l_tenant;
    job->model = p;
    memcpy(p, desc->model ? desc->model : "", l_model);
    p += l_model;
    job->session_key = p;
    memcpy(p, desc->session_key ? desc->session_key : "", l_sess);
    job->n_block_hashes = n_hashes;
    job->block_tokens = block_tokens;
    job->prio = desc->prio;
    job->prompt_tokens = desc->prompt_tokens;
    job->max_new_tokens = desc->max_new_tokens;
    job->vocab_need = vocab_need;
    job->submitted = now;
    job->ttft_due = desc->ttft_deadline > 0 ? now + desc->ttft_deadline : 0;
    job->due = desc->deadline > 0 ? now + desc->deadline : 0;
    job->state = SL_JOB_QUEUED;
    job->seq = core->next_seq++;
    job->user = user;

    if (probe == S_ID_PROBES) {
        SL_WARN("job id '%s' collides with %d others; refusing it", job->id, S_ID_PROBES);
        free(job);
        return SL_ERR_EXISTS;
    }
    job->id_hash = id_key;
    if (sl_map_put(&core->by_id, job->id_hash, job) != SL_OK) {
        free(job);
        return SL_ERR_NOMEM;
    }
    if (sl_map_put(&core->by_seq, job->seq, job) != SL_OK) {
        sl_map_del(&core->by_id, job->id_hash);
        free(job);
        return SL_ERR_NOMEM;
    }
    sl_time_t retry = 0;
    if (core->cfg.admission && !s_admit(core, job, now, &reason, &retry)) {
        sl_map_del(&core->by_seq, job->seq);
        sl_map_del(&core->by_id, job->id_hash);
        free(job);
        core->counters[SL_CTR_BUSY_OVERLOAD + reason]++;
        *reason_p = reason;
        *retry_after_p = reason == SL_BUSY_DEADLINE ? 0
                         : retry > 0                 ? retry
                                                     : SL_MS(core->cfg.busy_retry_ms);
        return SL_ERR_BUSY;
    }
    s_enqueue(core, job, false);
    core->counters[SL_CTR_ACCEPTED]++;
    *job_p = job;
    s_pump(core, now);
    return SL_OK;

busy:
    core->counters[SL_CTR_BUSY_OVERLOAD + reason]++;
    *reason_p = reason;
    *retry_after_p = SL_MS(core->cfg.busy_retry_ms);
    return SL_ERR_BUSY;
}

/* Count how a job ended on e, and quarantine e when its recent jobs mostly
 * failed: a backend that fails jobs at once frees its credits at once, and
 * without this every load-based policy would take it for the idlest
 * executor and send it most of the work. Canceled jobs say nothing. */
static void s_exec_outcome(sl_core_t *core, sl_exec_t *e, sl_job_status_t status, sl_time_t now)
{
    bool failed = status == SL_JOB_FAILED || status == SL_JOB_REJECTED;
    if (status == SL_JOB_OK)
        e->completed++;
    else if (failed)
        e->failed++;
    else
        return;
    if (now > e->recent_at) {
        double keep = exp(-(double)(now - e->recent_at) / ((double)core->cfg.fail_decay_ms * 1e6));
        e->fail_recent *= keep;
        e->done_recent *= keep;
        e->recent_at = now;
    }
    e->done_recent += 1.0;
    if (!failed)
        return;
    e->fail_recent += 1.0;
    /* (+0.01: failures a moment apart count whole, so 3 quick ones are 3) */
    if (core->cfg.quarantine_failures <= 0 || sl_core_exec_quarantined(e, now) ||
        e->fail_recent + 0.01 < core->cfg.quarantine_failures ||
        e->fail_recent < core->cfg.quarantine_share * e->done_recent)
        return;
    e->quarantined_until = now + SL_MS(core->cfg.quarantine_ms);
    core->counters[SL_CTR_QUARANTINED]++;
    SL_WARN("executor %s quarantined for %lld ms: %.1f of its last %.1f jobs failed (decayed)",
            e->name, (long long)core->cfg.quarantine_ms, e->fail_recent, e->done_recent);
    /* It starts afresh when the quarantine ends. */
    e->fail_recent = e->done_recent = 0;
}

sl_status_t sl_core_job_complete(sl_core_t *core, uint32_t exec_index, uint64_t seq,
                                 const sl_job_result_t *res, const void *payload, sl_time_t now)
{
    sl_exec_t *e = sl_core_exec_get(core, exec_index);
    sl_job_t *job = sl_map_get(&core->by_seq, seq);
    if (!e || !job || job->state != SL_JOB_RUNNING || job->exec != e) {
        core->counters[SL_CTR_STALE_COMPLETIONS]++;
        return SL_ERR_NOT_FOUND;
    }
    e->last_seen = now;
    sl_list_del(&job->link);
    if (e->inflight == e->credits)
        s_free_add(core, e);
    e->inflight--;
    e->inflight_tokens -= (uint64_t)job->prompt_tokens + job->max_new_tokens;
    e->prefill_tokens -= job->uncached_tokens;
    s_exec_outcome(core, e, res->status, now);
    if (res->status == SL_JOB_OK && res->exec_ttft > 0) {
        double tpot = res->output_tokens > 1 && res->exec_end > res->exec_ttft
                          ? (double)(res->exec_end - res->exec_ttft) / 1e9 /
                                (double)(res->output_tokens - 1)
                          : -1.0;
        double queue = res->has_exec_queue ? (double)res->exec_queue / 1e9 : -1.0;
        sl_load_model_observe(core->model, e->index, &job->pred, (double)res->exec_ttft / 1e9,
                              queue, tpot, now);
    }
    core->free_credits++;
    core->running--;
    sl_job_timings_t t = {
        .queued = job->dispatched - job->submitted,
        .ttft = job->dispatched - job->submitted + res->exec_ttft,
        .end = now - job->submitted,
    };
    if (t.ttft > t.end)
        t.ttft = t.end;
    if (core->policy->observe)
        core->policy->observe(core->policy_state, job, e, res, now);
    s_job_finish(core, job, res->status, &t, e, payload, NULL, now);
    s_pump(core, now);
    return SL_OK;
}

sl_status_t sl_core_job_cancel(sl_core_t *core, const char *id, sl_time_t now)
{
    sl_job_t *job = sl_core_job_find(core, id);
    sl_job_timings_t t;
    if (!job)
        return SL_ERR_NOT_FOUND;
    if (job->state == SL_JOB_QUEUED) {
        s_dequeue(core, job);
        s_timings_queued(job, now, &t);
        s_job_finish(core, job, SL_JOB_CANCELED, &t, NULL, NULL, "canceled by client", now);
        return SL_OK;
    }
    if (core->io->cancel)
        core->io->cancel(core->io_arg, job->exec, job);
    return SL_OK;
}

/* Choose the block size token prompts are hashed with: the one most live
 * executors advertise, ties to the smaller. O(executors), at joins and
 * losses only. */
static void s_block_size_choose(sl_core_t *core)
{
    s_block_size_t sizes[SL_CORE_BLOCK_SIZES];
    uint32_t n = 0, best = 0;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        uint32_t t = core->alive_execs[i]->kv_block_tokens, k = 0;
        if (t == 0)
            continue;
        while (k < n && sizes[k].tokens != t)
            k++;
        if (k == n) {
            if (n == SL_CORE_BLOCK_SIZES)
                continue;
            sizes[n++] = (s_block_size_t){.tokens = t, .execs = 0};
        }
        sizes[k].execs++;
    }
    for (uint32_t k = 1; k < n; k++)
        if (sizes[k].execs > sizes[best].execs ||
            (sizes[k].execs == sizes[best].execs && sizes[k].tokens < sizes[best].tokens))
            best = k;
    core->hash_block_tokens = n ? sizes[best].tokens : 0;
}

uint32_t sl_core_hash_block_tokens(const sl_core_t *core)
{
    return core->hash_block_tokens;
}

sl_status_t sl_core_exec_join(sl_core_t *core, const sl_exec_info_t *info, void *user,
                              sl_time_t now, uint32_t *index_p)
{
    if (!info->name || !info->name[0] || strlen(info->name) >= SL_CORE_MAX_NAME ||
        info->slots == 0 || info->n_models > SL_EXEC_MAX_MODELS)
        return SL_ERR_INVALID;
    int free_slot = -1;
    for (int i = 0; i < core->cfg.max_executors; i++) {
        sl_exec_t *e = core->execs[i];
        if (e && strcmp(e->name, info->name) == 0) {
            s_exec_lose(core, e, "rejoined", now);
            e = NULL;
        }
        if (!e && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        SL_WARN("executor table full (%d): refusing '%s'", core->cfg.max_executors, info->name);
        return SL_ERR_OVERFLOW;
    }
    sl_exec_t *e = calloc(1, sizeof(*e));
    if (!e)
        return SL_ERR_NOMEM;
    e->index = (uint32_t)free_slot;
    snprintf(e->name, sizeof(e->name), "%s", info->name);
    snprintf(e->backend, sizeof(e->backend), "%s", info->backend ? info->backend : "");
    for (size_t i = 0; i < info->n_models; i++) {
        if (strlen(info->models[i]) >= SL_CORE_MAX_NAME) {
            free(e);
            return SL_ERR_INVALID;
        }
        snprintf(e->models[i], SL_CORE_MAX_NAME, "%s", info->models[i]);
    }
    e->n_models = info->n_models;
    e->slots = info->slots;
    e->credits = core->cfg.credits > 0 && (uint32_t)core->cfg.credits < info->slots
                     ? (uint32_t)core->cfg.credits
                     : info->slots;
    e->kv_blocks_total = info->kv_blocks_total;
    e->kv_block_tokens = info->kv_block_tokens;
    e->speed = info->speed;
    e->max_context_tokens = info->max_context_tokens;
    e->vocab_size = info->vocab_size;
    sl_list_init(&e->jobs);
    e->joined = e->last_seen = now;
    e->alive = true;
    e->user = user;
    core->execs[free_slot] = e;
    e->alive_pos = core->n_alive;
    core->alive_execs[core->n_alive] = e;
    core->n_alive++;
    s_free_add(core, e);
    s_block_size_choose(core);
    s_fit_choose(core);
    sl_prefix_index_reset(core->index, e->index);
    sl_load_model_exec_reset(core->model, e->index, now);
    core->free_credits += e->credits;
    core->counters[SL_CTR_EXECUTORS_JOINED]++;
    if (core->policy->exec_change)
        core->policy->exec_change(core->policy_state, e, true);
    *index_p = e->index;
    s_pump(core, now);
    return SL_OK;
}

sl_exec_t *sl_core_exec_get(sl_core_t *core, uint32_t index)
{
    if (index >= (uint32_t)core->cfg.max_executors)
        return NULL;
    return core->execs[index];
}

uint32_t sl_core_exec_slots(const sl_core_t *core)
{
    return (uint32_t)core->cfg.max_executors;
}

uint32_t sl_core_exec_count(const sl_core_t *core)
{
    return core->n_alive;
}

sl_status_t sl_core_exec_heartbeat(sl_core_t *core, uint32_t index, const sl_exec_load_t *load,
                                   sl_time_t now)
{
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    e->load = *load;
    e->last_seen = now;
    return SL_OK;
}

sl_status_t sl_core_exec_touch(sl_core_t *core, uint32_t index, sl_time_t now)
{
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    e->last_seen = now;
    return SL_OK;
}

static void s_exec_lose(sl_core_t *core, sl_exec_t *e, const char *why, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    if (e->inflight == 0 && strcmp(why, "said goodbye") == 0)
        SL_INFO("executor %s left (%s)", e->name, why); /* an orderly stop loses nothing */
    else
        SL_WARN("executor %s lost (%s): requeueing %u jobs", e->name, why, e->inflight);
    core->execs[e->index] = NULL;
    e->alive = false;
    if (e->inflight < e->credits)
        s_free_del(core, e);
    sl_exec_t *last = core->alive_execs[core->n_alive - 1];
    core->alive_execs[e->alive_pos] = last;
    last->alive_pos = e->alive_pos;
    core->n_alive--;
    s_block_size_choose(core);
    s_fit_choose(core);
    sl_prefix_index_reset(core->index, e->index);
    core->free_credits -= (int64_t)e->credits - (int64_t)e->inflight;
    core->counters[SL_CTR_EXECUTORS_LOST]++;
    /* Walk backwards so that pushing each to the queue front keeps their order. */
    for (pos = e->jobs.prev, tmp = pos->prev; pos != &e->jobs; pos = tmp, tmp = pos->prev) {
        sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
        sl_list_del(&job->link);
        core->running--;
        job->exec = NULL;
        if (job->attempts >= (uint32_t)core->cfg.max_attempts) {
            sl_job_timings_t t;
            s_timings_queued(job, now, &t);
            s_job_finish(core, job, SL_JOB_FAILED, &t, NULL, NULL,
                         "executors lost while running the job", now);
            continue;
        }
        job->state = SL_JOB_QUEUED;
        s_enqueue(core, job, true);
        core->counters[SL_CTR_REQUEUED]++;
    }
    e->inflight = 0;
    if (core->policy->exec_change)
        core->policy->exec_change(core->policy_state, e, false);
    if (core->io->exec_lost)
        core->io->exec_lost(core->io_arg, e, why);
    free(e);
    s_reject_unfit(core, now);
    s_pump(core, now);
}

sl_status_t sl_core_exec_lost(sl_core_t *core, uint32_t index, const char *why, sl_time_t now)
{
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    s_exec_lose(core, e, why, now);
    return SL_OK;
}

static void s_expire_queued(sl_core_t *core, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    if (core->queued_with_due == 0)
        return; /* nothing to expire: no walk over a long queue every tick */
    for (int p = 0; p < SL_PRIO_COUNT; p++) {
        sl_list_for_each_safe(pos, tmp, &core->queue[p])
        {
            sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
            if ((job->due && now >= job->due) || (job->ttft_due && now >= job->ttft_due)) {
                sl_job_timings_t t;
                s_dequeue(core, job);
                s_timings_queued(job, now, &t);
                s_job_finish(core, job, SL_JOB_EXPIRED, &t, NULL, NULL,
                             "deadline passed while queued", now);
            }
        }
    }
}

/* Forget finished jobs past their time to live, or beyond the count bound
 * (memory stays bounded at any completion rate). */
static void s_forget_done(sl_core_t *core, sl_time_t now)
{
    sl_time_t ttl = SL_MS(core->cfg.done_ttl_ms);
    s_done_t *rec;
    while ((rec = s_done_front(core))) {
        if (now - rec->done_at < ttl && core->n_done <= (uint32_t)core->cfg.done_max)
            break;
        s_done_pop(core, rec);
    }
}

void sl_core_tick(sl_core_t *core, sl_time_t now)
{
    sl_time_t limit = SL_MS(core->cfg.heartbeat_ms) * core->cfg.missed_heartbeats;
    /* Backwards: losing an executor moves the last one into its place. */
    for (uint32_t i = core->n_alive; i-- > 0;) {
        sl_exec_t *e = core->alive_execs[i];
        if (now - e->last_seen > limit)
            s_exec_lose(core, e, "missed heartbeats", now);
    }
    s_expire_queued(core, now);
    s_forget_done(core, now);
    s_pump(core, now);
}

void sl_core_drain(sl_core_t *core)
{
    core->draining = true;
}

uint32_t sl_core_jobs_pending(const sl_core_t *core)
{
    return core->qlen[0] + core->qlen[1] + core->running;
}

uint32_t sl_core_queue_depth(const sl_core_t *core, sl_prio_t prio)
{
    return prio < SL_PRIO_COUNT ? core->qlen[prio] : 0;
}

uint32_t sl_core_inflight(const sl_core_t *core)
{
    return core->running;
}

uint64_t sl_core_counter(const sl_core_t *core, sl_core_counter_t c)
{
    return c < SL_CTR_COUNT ? core->counters[c] : 0;
}

const char *sl_core_policy_name(const sl_core_t *core)
{
    return core->policy->name;
}

sl_status_t sl_core_exec_kv_event(sl_core_t *core, uint32_t index, const uint64_t *stored,
                                  size_t n_stored, const uint64_t *evicted, size_t n_evicted,
                                  bool reset, sl_time_t now)
{
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    e->last_seen = now;
    if (reset)
        sl_prefix_index_reset(core->index, index);
    for (size_t i = 0; i < n_stored; i++)
        if (sl_prefix_index_stored(core->index, index, stored[i]) != SL_OK)
            break; /* out of memory: the index only loses hits */
    for (size_t i = 0; i < n_evicted; i++)
        sl_prefix_index_evicted(core->index, index, evicted[i]);
    core->counters[SL_CTR_KV_STORED] += n_stored;
    core->counters[SL_CTR_KV_EVICTED] += n_evicted;
    return SL_OK;
}

const sl_prefix_index_t *sl_core_prefix_index(const sl_core_t *core)
{
    return core->index;
}

const sl_load_model_t *sl_core_load_model(const sl_core_t *core)
{
    return core->model;
}

sl_status_t sl_core_state_save(const sl_core_t *core, FILE *f)
{
    fprintf(f, "sluice-scheduler-state 1\n");
    return sl_load_model_save(core->model, f);
}

sl_status_t sl_core_state_load(sl_core_t *core, FILE *f)
{
    char magic[64];
    int version;
    if (fscanf(f, "%63s %d", magic, &version) != 2 || strcmp(magic, "sluice-scheduler-state")) {
        SL_ERROR("state file: not a scheduler state file (bad header)");
        return SL_ERR_INVALID;
    }
    if (version != 1) {
        SL_ERROR("state file: version %d, this build reads version 1", version);
        return SL_ERR_INVALID;
    }
    return sl_load_model_load(core->model, f);
}
