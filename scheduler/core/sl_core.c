/*
 * The decision core (see sl_core.h): its life cycle, jobs from submission
 * to result, the two queues and the timers. The other subjects live in
 * their own files (sl_core_int.h lists them): the finished-job log,
 * admission, placement, the executor table and the learned state.
 *
 * State: a table of executors, two queues (interactive, batch; their order
 * between tenants and bands is sl_core_fair.c's), maps
 * from idempotency id and from sequence number to job, and the log of
 * finished jobs kept for done_ttl so that a resubmission is recognised.
 *
 * The core reports through its callbacks: actions (dispatch, result,
 * cancel, release, exec_lost) and lines for the embedder's log (io->log),
 * never a file or the terminal, so the daemon, the simulator and the tests decide
 * where its words go. While a callback runs, in_callback is raised and every
 * operation refuses (SL_ERR_REENTERED, counted): the core's lists may be
 * mid-walk, and an embedder that needs to act on a callback defers it
 * until the call that ran it returns. Allowing re-entry with a re-check
 * after every callback was rejected: every walk of a list would have to
 * assume that list could change under it.
 */
#include "scheduler/core/sl_core_int.h"
#include "scheduler/core/sl_policy_registry.h"
#include "scheduler/core/sl_text.h"
#include "common/sl_hash.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const sl_cfg_field_t sl_core_cfg_fields[] = {
    SL_CFG_FIELD(sl_core_cfg_t, policy, "policy", "least-outstanding", SL_CFG_STR,
                 "placement policy: " SL_POLICY_NAMES_TEXT),
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
    SL_CFG_RANGE(sl_core_cfg_t, explore_share, "explore-share", "0", SL_CFG_DOUBLE, 0, 1,
                 "learned: at most this share of placements goes to an executor whose "
                 "prediction is uncertain rather than the predicted best (an upper confidence "
                 "bound; never a job near its deadline; 0 = off)"),
    SL_CFG_RANGE(sl_core_cfg_t, place_hold, "place-hold", "0.5", SL_CFG_DOUBLE, 0, 1,
                 "learned: hold a job at the scheduler, rather than place it, while an executor "
                 "with no free place is predicted to give it its first token in under this "
                 "share of the best free executor's predicted TTFT, its expected wait for a "
                 "place included (0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, expire_predicted, "expire-predicted", "1", SL_CFG_DOUBLE, 0, 1000,
                 "with admission: a job whose predicted TTFT on the executor chosen for it "
                 "passes this multiple of what is left of its TTFT deadline is not dispatched "
                 "into a certain miss: refused (BUSY deadline) when placed during its own "
                 "submission, else expired at once (0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, model_forget, "model-forget", "0.98", SL_CFG_DOUBLE, 0.5, 1,
                 "load model forgetting factor per completion (lower adapts faster)"),
    SL_CFG_RANGE(sl_core_cfg_t, model_stale_ms, "model-stale-ms", "30000", SL_CFG_I64, 0, 86400000,
                 "an executor not chosen for this long is predicted by the fleet's "
                 "shared prior until it gets a job (so one bad stretch cannot starve it for "
                 "good; 0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, model_learn_us, "model-learn-us", "100", SL_CFG_I64, 0, 60000000,
                 "past a burst of 64, an executor's load model learns from at most one completion "
                 "per this many us (every completion is still scored; 0 = learn from all)"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_failures, "quarantine-failures", "3", SL_CFG_DOUBLE, 0,
                 1e9,
                 "recent failed jobs (decayed over fail-decay-ms) that quarantine an "
                 "executor (0 = never)"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_share, "quarantine-share", "0.5", SL_CFG_DOUBLE, 0, 1,
                 "...when they are at least this share of its recent jobs"),
    SL_CFG_RANGE(sl_core_cfg_t, fail_decay_ms, "fail-decay-ms", "10000", SL_CFG_I64, 1, 86400000,
                 "time constant of an executor's recent failed and finished job counts, in ms"),
    SL_CFG_RANGE(sl_core_cfg_t, quarantine_ms, "quarantine-ms", "30000", SL_CFG_I64, 1, 86400000,
                 "how long a quarantined executor gets no jobs, in ms"),
    SL_CFG_FIELD(sl_core_cfg_t, kv_split, "kv-split", "on", SL_CFG_BOOL,
                 "split a job over a prefill and a decode executor when the load model predicts "
                 "it ends sooner that way, transfer included (data-plane executors only)"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_split_margin, "kv-split-margin", "0.1", SL_CFG_DOUBLE, 0, 10,
                 "...sooner by at least this share of the single executor's predicted time"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_xfer_prior_mbps, "kv-xfer-prior-mbps", "1000", SL_CFG_DOUBLE,
                 0.001, 1e7, "KV transfer bandwidth assumed (MB/s) until transfers are measured"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_xfer_latency_us, "kv-xfer-latency-us", "500", SL_CFG_I64, 0,
                 60000000, "fixed cost of one KV transfer assumed until transfers are measured"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_move_timeout_ms, "kv-move-timeout-ms", "10000", SL_CFG_I64, 1,
                 86400000,
                 "a split whose KV has not reached the decode executor, or a move that has not "
                 "handed off, this long after it began is abandoned (the job is requeued or "
                 "stays)"),
    SL_CFG_FIELD(sl_core_cfg_t, kv_fetch, "kv-fetch", "on", SL_CFG_BOOL,
                 "pull the leading blocks of a job's prompt from a peer that caches them when "
                 "the load model predicts the transfer is faster than computing them"),
    SL_CFG_FIELD(sl_core_cfg_t, kv_rebalance, "kv-rebalance", "on", SL_CFG_BOOL,
                 "move running jobs with their KV to less loaded executors when the load model "
                 "predicts a gain (data-plane executors only)"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_rebalance_gain, "kv-rebalance-gain", "3", SL_CFG_DOUBLE, 1, 1000,
                 "...a predicted gain of at least this many times the move's predicted cost"),
    SL_CFG_RANGE(sl_core_cfg_t, kv_rebalance_ms, "kv-rebalance-ms", "200", SL_CFG_I64, 1, 3600000,
                 "look for a rebalancing move this often, in ms"),
    SL_CFG_RANGE(sl_core_cfg_t, adopt_grace_ms, "adopt-grace-ms", "3000", SL_CFG_I64, 0, 3600000,
                 "after a restart from the journal, how long restored jobs wait for the "
                 "executors that ran them to register again and claim them before they are "
                 "queued and dispatched again"),
    SL_CFG_FIELD(sl_core_cfg_t, tenant_fair, "tenant-fair", "on", SL_CFG_BOOL,
                 "within a priority band, tenants take turns by deficit round robin weighted "
                 "by token cost (off: first come, first served across tenants)"),
    SL_CFG_FIELD(sl_core_cfg_t, tenant_weights, "tenant-weights", "", SL_CFG_STR,
                 "share weights of tenants, name=weight,... (e.g. a=2,b=1); unlisted "
                 "tenants weigh 1"),
    SL_CFG_RANGE(sl_core_cfg_t, tenant_quantum, "tenant-quantum", "1024", SL_CFG_I64, 1, 1e9,
                 "tokens of credit a tenant of weight 1 gets per round robin turn"),
    SL_CFG_RANGE(sl_core_cfg_t, starvation_bound_ms, "starvation-bound-ms", "2000", SL_CFG_I64, 0,
                 86400000,
                 "a batch job queued longer than this is served before interactive ones "
                 "(0 = strict priority: batch waits while any interactive job does)"),
    SL_CFG_RANGE(sl_core_cfg_t, tenant_max_jobs, "tenant-max-jobs", "0", SL_CFG_INT, 0, 100000000,
                 "jobs one tenant may have queued and running; more get BUSY (0 = unlimited)"),
    SL_CFG_FIELD(sl_core_cfg_t, overload_shed, "overload-shed", "off", SL_CFG_BOOL,
                 "with the queue full or the busy state on, a new job takes the place of a "
                 "queued one that ranks below it (batch first, then the tenant most over its "
                 "weighted share), which is answered BUSY (off: the new job is refused)"),
    SL_CFG_END,
};

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
    [SL_CTR_REENTRY_REFUSED] = "calls_reentrant_refused",
    [SL_CTR_KV_SPLITS] = "kv_splits",
    [SL_CTR_KV_HANDOFFS] = "kv_handoffs",
    [SL_CTR_POLICY_INVALID] = "policy_invalid_choices",
    [SL_CTR_EXPLORED] = "placements_explored",
    [SL_CTR_PLACE_HELD] = "placements_held",
    [SL_CTR_EXPIRED_PREDICTED] = "jobs_expired_predicted",
    [SL_CTR_KV_SPLIT_FAILED] = "kv_splits_failed",
    [SL_CTR_KV_MIGRATIONS] = "kv_migrations",
    [SL_CTR_KV_MIGRATE_FAILED] = "kv_migrations_failed",
    [SL_CTR_KV_BYTES] = "kv_bytes_moved",
    [SL_CTR_KV_BLOCKS] = "kv_blocks_moved",
    [SL_CTR_KV_XFER_US] = "kv_xfer_us",
    [SL_CTR_KV_PAUSE_US] = "kv_migration_pause_us",
    [SL_CTR_KV_FETCHES] = "kv_fetches",
    [SL_CTR_KV_FETCH_FAILED] = "kv_fetches_failed",
    [SL_CTR_KV_BLOCKS_FETCHED] = "kv_blocks_fetched",
    [SL_CTR_KV_BLOCKS_RECOMPUTED] = "kv_blocks_recomputed",
    [SL_CTR_JOBS_RESUMED] = "jobs_resumed",
    [SL_CTR_CHUNKS_STALE] = "chunks_stale",
    [SL_CTR_CHUNKS_GAP] = "chunks_gap",
    [SL_CTR_STREAM_BYTES] = "stream_bytes_held",
    [SL_CTR_RESTORED] = "jobs_restored",
    [SL_CTR_ADOPTED] = "jobs_adopted",
    [SL_CTR_UNCLAIMED] = "jobs_unclaimed",
    [SL_CTR_TENANT_QUOTA] = "busy_tenant_quota",
    [SL_CTR_PROMOTED] = "jobs_promoted_starving",
    [SL_CTR_SHED_INTERACTIVE] = "jobs_shed_interactive",
    [SL_CTR_SHED_BATCH] = "jobs_shed_batch",
};

/* A line for io->log (before the core exists, or from it). */
static void s_vlog_io(const sl_core_io_t *io, void *io_arg, sl_core_log_level_t level,
                      const char *fmt, va_list ap)
{
    char line[512];
    if (!io->log)
        return;
    sl_text_vfmt(line, sizeof(line), fmt, ap);
    io->log(io_arg, level, line);
}

__attribute__((format(printf, 4, 5))) static void
s_log_io(const sl_core_io_t *io, void *io_arg, sl_core_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vlog_io(io, io_arg, level, fmt, ap);
    va_end(ap);
}

void sl_core_logf(sl_core_t *core, sl_core_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_core_cb_enter(core);
    s_vlog_io(core->io, core->io_arg, level, fmt, ap);
    sl_core_cb_leave(core);
    va_end(ap);
}

void sl_core_fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_text_vfmt(buf, len, fmt, ap);
    va_end(ap);
}

bool sl_core_reentry_refuse(sl_core_t *core, const char *op)
{
    core->counters[SL_CTR_REENTRY_REFUSED]++;
    sl_core_logf(core, SL_CORE_LOG_ERROR,
                 "%s called from inside one of the core's callbacks: refused (defer it until "
                 "the call that ran the callback returns)",
                 op);
    return true;
}

void sl_core_cfg_default(sl_core_cfg_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    sl_cfg_defaults(sl_core_cfg_fields, cfg);
}

const char *sl_core_counter_name(sl_core_counter_t c)
{
    return c < SL_CTR_COUNT ? s_counter_names[c] : "unknown";
}

static uint64_t s_id_key(const char *id, int probe)
{
    return sl_hash_bytes(id, strlen(id), (uint64_t)probe);
}

sl_job_t *sl_core_job_find(sl_core_t *core, const char *id)
{
    void *v = sl_core_id_find(core, id);
    return v && !sl_core_id_is_done(v) ? v : NULL;
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
    const sl_policy_ops_t *named = sl_policy_find(cfg->policy);
    if (!named) {
        s_log_io(io, io_arg, SL_CORE_LOG_ERROR, "unknown placement policy '%s'", cfg->policy);
        return SL_ERR_INVALID;
    }
    const sl_policy_ops_t *policy = cfg->policy_ops ? cfg->policy_ops : named;
    if (policy->api_version != SL_POLICY_API_VERSION) {
        s_log_io(io, io_arg, SL_CORE_LOG_ERROR, "policy '%s' was built for API %d, not %d",
                 policy->name, policy->api_version, SL_POLICY_API_VERSION);
        return SL_ERR_INVALID;
    }
    if (cfg->max_executors <= 0)
        return SL_ERR_INVALID;
    sl_status_t st = SL_ERR_NOMEM;
    sl_core_t *core = calloc(1, sizeof(*core));
    if (!core)
        return SL_ERR_NOMEM;
    core->cfg = *cfg;
    core->io = io;
    core->io_arg = io_arg;
    core->policy = policy;
    core->fallback = cfg->policy_ops ? named : NULL;
    core->next_seq = 1;
    core->fit_context = core->fit_vocab = UINT64_MAX;
    sl_map_init(&core->by_id);
    sl_map_init(&core->by_seq);
    for (int p = 0; p < SL_PRIO_COUNT; p++)
        sl_list_init(&core->queue[p]);
    sl_list_init(&core->held);
    sl_map_init(&core->tenants);
    core->rand_state = (uint64_t)cfg->seed;
    sl_rand_seed(&core->cand_rand, (uint64_t)cfg->seed ^ 0x9e3779b97f4a7c15ull);
    core->execs = calloc((size_t)cfg->max_executors, sizeof(*core->execs));
    core->cands = calloc((size_t)cfg->max_executors, sizeof(*core->cands));
    core->free_execs = calloc((size_t)cfg->max_executors, sizeof(*core->free_execs));
    core->free_index = calloc((size_t)cfg->max_executors, sizeof(*core->free_index));
    core->alive_execs = calloc((size_t)cfg->max_executors, sizeof(*core->alive_execs));
    core->alive_index = calloc((size_t)cfg->max_executors, sizeof(*core->alive_index));
    core->hits = calloc(SL_PREFIX_MAX_HOLDERS, sizeof(*core->hits));
    core->hit_blocks = calloc((size_t)cfg->max_executors, sizeof(*core->hit_blocks));
    if (!core->execs || !core->cands || !core->free_execs || !core->free_index ||
        !core->alive_execs || !core->alive_index || !core->hits || !core->hit_blocks)
        goto err_free;
    st = sl_core_fair_init(core); /* SL_ERR_INVALID: bad tenant-weights */
    if (st != SL_OK)
        goto err_free;
    st = SL_ERR_NOMEM;
    if (sl_prefix_index_create((size_t)cfg->prefix_index_max, (uint32_t)cfg->max_executors,
                               &core->index) != SL_OK)
        goto err_free;
    sl_lm_cfg_t lm = {.forget = cfg->model_forget,
                      .prior_forget = 0.995,
                      .p_init = 10.0,
                      .stale = SL_MS(cfg->model_stale_ms),
                      .learn_gap = SL_US(cfg->model_learn_us)};
    if (lm.forget <= 0 || lm.forget > 1)
        lm.forget = 0.98;
    if (sl_load_model_create(&lm, (uint32_t)cfg->max_executors, &core->model) != SL_OK)
        goto err_free;
    sl_policy_params_t params = {.core = core, .seed = (uint64_t)cfg->seed};
    if (core->fallback && core->fallback->init(&params, &core->fallback_state) != SL_OK)
        goto err_free;
    params.arg = cfg->policy_arg;
    if (policy->init(&params, &core->policy_state) != SL_OK) {
        if (core->fallback)
            core->fallback->fini(core->fallback_state);
        goto err_free;
    }
    *core_p = core;
    return SL_OK;

err_free:
    sl_core_fair_fini(core);
    sl_load_model_destroy(&core->model);
    sl_prefix_index_destroy(&core->index);
    free(core->hit_blocks);
    free(core->hits);
    free(core->free_execs);
    free(core->free_index);
    free(core->alive_index);
    free(core->alive_execs);
    free(core->cands);
    free(core->execs);
    free(core);
    return st;
}

void sl_core_job_free(sl_core_t *core, sl_job_t *job)
{
    if (job->tenant_rec)
        job->tenant_rec->jobs--;
    sl_core_stream_free(core, job);
    if (core->io->release) {
        sl_core_cb_enter(core);
        core->io->release(core->io_arg, job);
        sl_core_cb_leave(core);
    }
    free(job);
}

void sl_core_destroy(sl_core_t **core_p)
{
    sl_core_t *core = *core_p;
    if (!core)
        return;
    if (sl_core_reentered(core, "sl_core_destroy"))
        return;
    /* Everything below runs callbacks: none may enter the core. */
    sl_core_cb_enter(core);
    size_t it = 0;
    void *val;
    while (sl_map_next(&core->by_id, &it, NULL, &val))
        if (!sl_core_id_is_done(val))
            sl_core_job_free(core, val);
    sl_core_done_fini(core);
    for (int i = 0; i < core->cfg.max_executors; i++) {
        sl_exec_t *e = core->execs[i];
        if (!e)
            continue;
        sl_core_policy_exec_change(core, e, false);
        if (core->io->exec_lost)
            core->io->exec_lost(core->io_arg, e, "scheduler shutting down");
        free(sl_core_exec_priv(e)->reach);
        free(sl_core_exec_priv(e));
    }
    core->policy->fini(core->policy_state);
    if (core->fallback)
        core->fallback->fini(core->fallback_state);
    sl_map_fini(&core->by_id);
    sl_map_fini(&core->by_seq);
    sl_core_fair_fini(core);
    sl_map_fini(&core->tenants);
    sl_load_model_destroy(&core->model);
    sl_prefix_index_destroy(&core->index);
    free(core->hit_blocks);
    free(core->hits);
    free(core->free_execs);
    free(core->free_index);
    free(core->alive_index);
    free(core->alive_execs);
    free(core->cands);
    free(core->execs);
    free(core);
    *core_p = NULL;
}

/* Deliver a finished job's result, remember its id and receipt for
 * done_ttl in the log, and free the job. */
void sl_core_job_finish(sl_core_t *core, sl_job_t *job, sl_job_status_t status,
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
    case SL_JOB_OK:
        core->counters[SL_CTR_COMPLETED]++;
        break;
    case SL_JOB_EXPIRED:
        core->counters[SL_CTR_EXPIRED]++;
        break;
    case SL_JOB_CANCELED:
        core->counters[SL_CTR_CANCELED]++;
        break;
    default:
        core->counters[SL_CTR_FAILED]++;
        break;
    }
    sl_core_cb_enter(core);
    core->io->result(core->io_arg, job, status, &tl, exec, payload, error);
    sl_core_cb_leave(core);
    sl_core_done_remember(core, job, now);
    sl_core_job_free(core, job);
}

void sl_core_job_expire(sl_core_t *core, sl_job_t *job, const char *why, sl_time_t now)
{
    sl_job_timings_t t;
    sl_core_queue_del(core, job);
    sl_core_timings_queued(job, now, &t);
    sl_core_job_finish(core, job, SL_JOB_EXPIRED, &t, NULL, NULL, why, now);
}

void sl_core_timings_queued(const sl_job_t *job, sl_time_t now, sl_job_timings_t *t)
{
    t->queued = (job->dispatched ? job->dispatched : now) - job->submitted;
    t->ttft = 0;
    t->end = now - job->submitted;
}

sl_status_t sl_core_id_probe(const sl_core_t *core, const char *id, uint64_t *key_p, void **old_p)
{
    size_t len = strlen(id);
    for (int probe = 0; probe < SL_CORE_ID_PROBES; probe++) {
        uint64_t key = sl_hash_bytes(id, len, (uint64_t)probe);
        void *old = sl_map_get(&core->by_id, key);
        if (!old) {
            *key_p = key;
            return SL_OK;
        }
        if (strcmp(sl_core_entry_id(old), id) == 0) {
            *old_p = old;
            return SL_ERR_EXISTS;
        }
    }
    return SL_ERR_ID_COLLISION;
}

sl_job_t *sl_core_job_new(sl_core_t *core, const sl_job_desc_t *desc, uint32_t vocab_need,
                          sl_time_t now)
{
    size_t l_id = strlen(desc->id) + 1;
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
        return NULL;
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
    return job;
}

sl_status_t sl_core_job_submit(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                               sl_time_t now, sl_job_t **job_p, sl_busy_reason_t *reason_p,
                               sl_time_t *retry_after_p)
{
    if (sl_core_reentered(core, "sl_core_job_submit"))
        return SL_ERR_REENTERED;
    sl_busy_reason_t reason;
    core->counters[SL_CTR_SUBMITTED]++;
    if (!desc->id || !desc->id[0] || desc->prio >= SL_PRIO_COUNT)
        return SL_ERR_INVALID;
    /* One pass over the id's probe keys: the job itself, or the first free key. */
    uint64_t id_key = 0;
    void *old = NULL;
    sl_status_t pst = sl_core_id_probe(core, desc->id, &id_key, &old);
    if (pst == SL_ERR_EXISTS) {
        core->counters[SL_CTR_DUPLICATES]++;
        *job_p = sl_core_id_is_done(old) ? NULL : old;
        return SL_ERR_EXISTS;
    }
    if (core->draining) {
        reason = SL_BUSY_DRAINING;
        goto busy;
    }
    if (core->n_alive == 0) {
        reason = SL_BUSY_NO_EXECUTOR;
        goto busy;
    }
    if (core->cfg.tenant_max_jobs > 0 &&
        sl_core_tenant_get(core, desc->tenant)->jobs >= (uint32_t)core->cfg.tenant_max_jobs) {
        core->counters[SL_CTR_TENANT_QUOTA]++;
        reason = SL_BUSY_TENANT;
        goto busy;
    }
    double cost = (double)desc->prompt_tokens + (double)desc->max_new_tokens;
    if (core->qlen[0] + core->qlen[1] >= (uint32_t)core->cfg.queue_max) {
        sl_job_t *victim = core->cfg.overload_shed
                               ? sl_core_shed_victim(core, desc->prio, desc->tenant, cost)
                               : NULL;
        if (!victim) {
            reason = SL_BUSY_QUEUE_FULL;
            goto busy;
        }
        sl_core_job_shed(core, victim, SL_BUSY_QUEUE_FULL, SL_MS(core->cfg.busy_retry_ms), now);
    }
    uint32_t vocab_need = sl_core_vocab_need(desc->token_ids, desc->n_token_ids);
    if (!sl_core_fits_some(core, desc->model, (uint64_t)desc->prompt_tokens + desc->max_new_tokens,
                           vocab_need)) {
        core->counters[SL_CTR_REFUSED_NO_FIT]++;
        return SL_ERR_NO_EXECUTOR;
    }
    if (pst == SL_ERR_ID_COLLISION) {
        sl_core_logf(core, SL_CORE_LOG_WARN, "job id '%s' collides with %d others; refusing it",
                     desc->id, SL_CORE_ID_PROBES);
        return SL_ERR_ID_COLLISION;
    }
    sl_job_t *job = sl_core_job_new(core, desc, vocab_need, now);
    if (!job)
        return SL_ERR_NOMEM;
    job->seq = core->next_seq++;
    job->user = user;
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
    sl_job_t *victim = NULL;
    if (core->cfg.admission && !sl_core_admit(core, job, now, &reason, &retry) &&
        !(reason == SL_BUSY_OVERLOAD && core->cfg.overload_shed &&
          (victim = sl_core_shed_victim(core, desc->prio, desc->tenant, cost))))
        goto refuse;
    if (victim) /* overload: it takes the place of one that ranks below it */
        sl_core_job_shed(core, victim, SL_BUSY_OVERLOAD,
                         retry > 0 ? retry : SL_MS(core->cfg.busy_retry_ms), now);
    sl_core_tenant_attach(core, job);
    sl_core_queue_add(core, job, false);
    /* The pump may find its TTFT deadline lost on the executor it would
     * take (sl_core_place_doomed): it then takes the job out of the queue
     * and marks it done, and it is refused here as admission refuses (it
     * was never accepted: the caller still owns user and has told its
     * client nothing). */
    core->submitting = job;
    sl_core_pump(core, now);
    core->submitting = NULL;
    if (job->state == SL_JOB_DONE) {
        reason = SL_BUSY_DEADLINE;
        goto refuse;
    }
    core->counters[SL_CTR_ACCEPTED]++;
    *job_p = job;
    return SL_OK;

refuse: /* never accepted: forgotten, and the caller keeps user */
    sl_map_del(&core->by_seq, job->seq);
    sl_map_del(&core->by_id, job->id_hash);
    if (job->tenant_rec)
        job->tenant_rec->jobs--;
    free(job);
    core->counters[SL_CTR_BUSY_OVERLOAD + reason]++;
    *reason_p = reason;
    *retry_after_p = reason == SL_BUSY_DEADLINE ? 0
                     : retry > 0                ? retry
                                                : SL_MS(core->cfg.busy_retry_ms);
    return SL_ERR_BUSY;

busy:
    core->counters[SL_CTR_BUSY_OVERLOAD + reason]++;
    *reason_p = reason;
    *retry_after_p = SL_MS(core->cfg.busy_retry_ms);
    return SL_ERR_BUSY;
}

sl_status_t sl_core_job_complete(sl_core_t *core, uint32_t exec_index, uint64_t seq,
                                 const sl_job_result_t *res, const void *payload, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_job_complete"))
        return SL_ERR_REENTERED;
    sl_exec_t *e = sl_core_exec_get(core, exec_index);
    sl_job_t *job = sl_map_get(&core->by_seq, seq);
    if (e && job && job->state == SL_JOB_RUNNING && job->kv_mode == SL_KV_MIGRATE &&
        job->kv_peer == e) {
        /* The destination of a move ended its reservation on its own: the
         * job stays where it runs. */
        core->counters[SL_CTR_KV_MIGRATE_FAILED]++;
        sl_core_kv_detach(core, job, false);
        return SL_OK;
    }
    if (!e || !job || job->state != SL_JOB_RUNNING || job->exec != e ||
        (res->status == SL_JOB_CANCELED && !job->cancel_asked)) {
        /* A CANCELED nobody asked for this attempt: the earlier attempt's,
         * canceled when the job was requeued (same handle, same executor). */
        core->counters[SL_CTR_STALE_COMPLETIONS]++;
        return SL_ERR_NOT_FOUND;
    }
    e->last_seen = now;
    if (res->status == SL_JOB_OK && (job->kv_mode == SL_KV_PUSH || job->kv_mode == SL_KV_FETCH)) {
        /* It ran on the KV its peer sent, whose report is still on its way
         * (it comes stale): the handoff happened. */
        core->counters[job->kv_mode == SL_KV_PUSH ? SL_CTR_KV_HANDOFFS : SL_CTR_KV_FETCHES]++;
        sl_core_kv_detach(core, job, false);
    }
    sl_core_kv_detach(core, job, true); /* a split's prefill side or a move's destination */
    sl_list_del(&job->link);
    if (e->inflight == e->credits)
        sl_core_free_add(core, e);
    e->inflight--;
    e->inflight_tokens -= (uint64_t)job->prompt_tokens + job->max_new_tokens;
    if (res->status == SL_JOB_OK) /* its last step ended as its result was sent */
        sl_step_clock_completed(&e->clock, sl_core_exec_step_cost(e), job->prompt_tokens,
                                res->output_tokens, now);
    e->prefill_tokens -= job->uncached_tokens;
    sl_core_exec_outcome(core, e, res->status, now);
    if (res->status == SL_JOB_OK && job->kv_split) {
        /* its prompt was computed elsewhere: only its decoding was here */
        if (res->output_tokens > 1 && res->exec_end > res->exec_ttft)
            sl_load_model_observe_tpot(core->model, e->index, &job->pred,
                                       (double)(res->exec_end - res->exec_ttft) / 1e9 /
                                           (double)(res->output_tokens - 1));
    } else if (res->status == SL_JOB_OK && res->exec_ttft > 0 && job->resume_tokens == 0) {
        /* (a resumed run computed its delivered tokens as prompt: not what
         * the model predicted for the job, so it learns nothing from it) */
        double tpot =
            res->output_tokens > 1 && res->exec_end > res->exec_ttft
                ? (double)(res->exec_end - res->exec_ttft) / 1e9 / (double)(res->output_tokens - 1)
                : -1.0;
        double queue = res->has_exec_queue ? (double)res->exec_queue / 1e9 : -1.0;
        sl_load_model_observe(core->model, e->index, &job->pred, (double)res->exec_ttft / 1e9,
                              queue, tpot, now);
    }
    core->free_credits++;
    core->running--;
    sl_core_done_rate_note(core, now);
    sl_job_timings_t t = {
        .queued = job->dispatched - job->submitted,
        .ttft = job->dispatched - job->submitted + res->exec_ttft,
        .end = now - job->submitted,
    };
    if (job->first_delivered && job->first_delivered - job->submitted < t.ttft)
        t.ttft = job->first_delivered - job->submitted; /* an earlier attempt streamed it */
    if (t.ttft > t.end)
        t.ttft = t.end;
    sl_core_cb_enter(core);
    if (core->policy->observe)
        core->policy->observe(core->policy_state, job, e, res, now);
    if (core->fallback && core->fallback->observe)
        core->fallback->observe(core->fallback_state, job, e, res, now);
    sl_core_cb_leave(core);
    sl_core_job_finish(core, job, res->status, &t, e, payload, NULL, now);
    sl_core_pump(core, now);
    return SL_OK;
}

sl_status_t sl_core_job_cancel(sl_core_t *core, const char *id, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_job_cancel"))
        return SL_ERR_REENTERED;
    sl_job_t *job = sl_core_job_find(core, id);
    sl_job_timings_t t;
    if (!job)
        return SL_ERR_NOT_FOUND;
    if (job->state == SL_JOB_QUEUED) {
        if (job->restored)
            sl_core_held_del(core, job);
        else
            sl_core_queue_del(core, job);
        sl_core_timings_queued(job, now, &t);
        sl_core_job_finish(core, job, SL_JOB_CANCELED, &t, NULL, NULL, "canceled by client", now);
        return SL_OK;
    }
    job->cancel_asked = true;
    if (core->io->cancel) {
        sl_core_cb_enter(core);
        core->io->cancel(core->io_arg, job->exec, job);
        if (job->kv_peer)
            core->io->cancel(core->io_arg, job->kv_peer, job);
        sl_core_cb_leave(core);
    }
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
            if ((job->due && now >= job->due) || (job->ttft_due && now >= job->ttft_due))
                sl_core_job_expire(core, job, "deadline passed while queued", now);
        }
    }
}

void sl_core_tick(sl_core_t *core, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_tick"))
        return;
    sl_time_t limit = SL_MS(core->cfg.heartbeat_ms) * core->cfg.missed_heartbeats;
    /* Backwards: losing an executor moves the last one into its place. */
    for (uint32_t i = core->n_alive; i-- > 0;) {
        sl_exec_t *e = core->alive_execs[i];
        if (now - e->last_seen > limit)
            sl_core_exec_lose(core, e, "missed heartbeats", now);
    }
    s_expire_queued(core, now);
    sl_core_held_tick(core, now);
    sl_core_done_forget(core, now);
    sl_core_kv_tick(core, now);
    sl_core_pump(core, now);
}

void sl_core_drain(sl_core_t *core)
{
    if (sl_core_reentered(core, "sl_core_drain"))
        return;
    core->draining = true;
}

uint32_t sl_core_jobs_pending(const sl_core_t *core)
{
    return core->qlen[0] + core->qlen[1] + core->running + core->n_held;
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

const sl_prefix_index_t *sl_core_prefix_index(const sl_core_t *core)
{
    return core->index;
}

const sl_load_model_t *sl_core_load_model(const sl_core_t *core)
{
    return core->model;
}
