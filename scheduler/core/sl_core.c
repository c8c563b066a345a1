/*
 * The decision core (see sl_core.h).
 *
 * State: a table of executors, two FIFO queues (interactive, batch), maps
 * from idempotency id and from sequence number to job, and a list of
 * finished jobs kept for done_ttl so that a resubmission is recognised.
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
 */
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy.h"
#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "common/sl_map.h"

#include <stdlib.h>
#include <string.h>

#define S_ID_PROBES 4

struct sl_core {
    sl_core_cfg_t cfg;                 /* configuration */
    const sl_core_io_t *io;            /* action callbacks */
    void *io_arg;                      /* their argument */
    const sl_policy_ops_t *policy;     /* placement policy */
    void *policy_state;                /* its state */
    sl_map_t by_id;                    /* id hash (probed) -> job */
    sl_map_t by_seq;                   /* seq -> job, while queued or running */
    sl_list_t queue[SL_PRIO_COUNT];    /* waiting jobs per class */
    uint32_t qlen[SL_PRIO_COUNT];      /* their lengths */
    sl_list_t done;                    /* finished jobs, oldest first */
    uint32_t n_done;                   /* their number */
    uint32_t running;                  /* jobs dispatched */
    sl_exec_t **execs;                 /* table of max_executors slots */
    sl_exec_t **cands;                 /* scratch: placement candidates */
    uint32_t n_alive;                  /* live executors */
    uint32_t exec_hi;                  /* 1 + highest slot ever used: scans stop here */
    int64_t free_credits;              /* sum of free credits of live executors */
    uint64_t next_seq;                 /* next job sequence number */
    bool draining;                     /* refusing new jobs */
    bool pumping;                      /* inside s_pump (no re-entry) */
    uint64_t counters[SL_CTR_COUNT];   /* statistics */
};


const sl_cfg_field_t sl_core_cfg_fields[] = {
    SL_CFG_FIELD(sl_core_cfg_t, policy, "policy", "least-outstanding", SL_CFG_STR,
                 "placement policy: round-robin, random, least-outstanding, p2c"),
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
};

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
    for (int p = 0; p < S_ID_PROBES; p++) {
        sl_job_t *job = sl_map_get(&core->by_id, s_id_key(id, p));
        if (!job)
            return NULL;
        if (strcmp(job->id, id) == 0)
            return job;
    }
    return NULL;
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
    sl_map_init(&core->by_id);
    sl_map_init(&core->by_seq);
    for (int p = 0; p < SL_PRIO_COUNT; p++)
        sl_list_init(&core->queue[p]);
    sl_list_init(&core->done);
    core->execs = calloc((size_t)cfg->max_executors, sizeof(*core->execs));
    core->cands = calloc((size_t)cfg->max_executors, sizeof(*core->cands));
    if (!core->execs || !core->cands)
        goto err_free;
    sl_policy_params_t params = {.core = core, .seed = (uint64_t)cfg->seed};
    if (policy->init(&params, &core->policy_state) != SL_OK)
        goto err_free;
    *core_p = core;
    return SL_OK;

err_free:
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
        s_job_free(core, val);
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
    free(core->cands);
    free(core->execs);
    free(core);
    *core_p = NULL;
}

/* Remove a finished job from the live structures and keep it for done_ttl. */
static void s_job_finish(sl_core_t *core, sl_job_t *job, sl_job_status_t status,
                         const sl_job_timings_t *t, const sl_exec_t *exec, const void *payload,
                         const char *error, sl_time_t now)
{
    sl_map_del(&core->by_seq, job->seq);
    job->state = SL_JOB_DONE;
    job->exec = NULL;
    job->done_at = now;
    sl_list_push_back(&core->done, &job->link);
    core->n_done++;
    switch (status) {
    case SL_JOB_OK: core->counters[SL_CTR_COMPLETED]++; break;
    case SL_JOB_EXPIRED: core->counters[SL_CTR_EXPIRED]++; break;
    case SL_JOB_CANCELED: core->counters[SL_CTR_CANCELED]++; break;
    default: core->counters[SL_CTR_FAILED]++; break;
    }
    core->io->result(core->io_arg, job, status, t, exec, payload, error);
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

static void s_exec_lose(sl_core_t *core, sl_exec_t *e, const char *why, sl_time_t now);

static void s_dispatch(sl_core_t *core, sl_job_t *job, sl_exec_t *e, sl_time_t now)
{
    s_dequeue(core, job);
    job->state = SL_JOB_RUNNING;
    job->exec = e;
    job->attempts++;
    job->dispatched = now;
    sl_list_push_back(&e->jobs, &job->link);
    e->inflight++;
    e->inflight_tokens += (uint64_t)job->prompt_tokens + job->max_new_tokens;
    core->free_credits--;
    core->running++;
    core->counters[SL_CTR_DISPATCHED]++;
    if (core->io->dispatch(core->io_arg, e, job) != SL_OK)
        s_exec_lose(core, e, "dispatch failed", now);
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
        for (uint32_t i = 0; i < core->exec_hi; i++) {
            sl_exec_t *e = core->execs[i];
            if (e && e->inflight < e->credits && s_serves(e, job))
                core->cands[n++] = e;
        }
        if (n == 0)
            break; /* head of line waits for an executor of its model */
        size_t pick = core->policy->place(core->policy_state, job, core->cands, n, now);
        if (pick >= n)
            pick = 0;
        s_dispatch(core, job, core->cands[pick], now);
    }
    core->pumping = false;
}

sl_status_t sl_core_job_submit(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                               sl_time_t now, sl_job_t **job_p, sl_busy_reason_t *reason_p,
                               sl_time_t *retry_after_p)
{
    sl_busy_reason_t reason;
    core->counters[SL_CTR_SUBMITTED]++;
    if (!desc->id || !desc->id[0] || desc->prio >= SL_PRIO_COUNT)
        return SL_ERR_INVALID;
    sl_job_t *old = sl_core_job_find(core, desc->id);
    if (old) {
        core->counters[SL_CTR_DUPLICATES]++;
        *job_p = old;
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
    if (core->qlen[0] + core->qlen[1] >= (uint32_t)core->cfg.queue_max) {
        reason = SL_BUSY_QUEUE_FULL;
        goto busy;
    }

    size_t l_id = strlen(desc->id) + 1;
    size_t l_tenant = (desc->tenant ? strlen(desc->tenant) : 0) + 1;
    size_t l_model = (desc->model ? strlen(desc->model) : 0) + 1;
    size_t l_sess = (desc->session_key ? strlen(desc->session_key) : 0) + 1;
    size_t hashes = (size_t)desc->n_block_hashes * sizeof(uint64_t);
    sl_job_t *job = calloc(1, sizeof(*job) + hashes + l_id + l_tenant + l_model + l_sess);
    if (!job)
        return SL_ERR_NOMEM;
    char *p = (char *)(job + 1);
    job->block_hashes = (uint64_t *)p;
    if (hashes)
        memcpy(job->block_hashes, desc->block_hashes, hashes);
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
    job->n_block_hashes = desc->n_block_hashes;
    job->block_tokens = desc->block_tokens;
    job->prio = desc->prio;
    job->prompt_tokens = desc->prompt_tokens;
    job->max_new_tokens = desc->max_new_tokens;
    job->submitted = now;
    job->ttft_due = desc->ttft_deadline > 0 ? now + desc->ttft_deadline : 0;
    job->due = desc->deadline > 0 ? now + desc->deadline : 0;
    job->state = SL_JOB_QUEUED;
    job->seq = core->next_seq++;
    job->user = user;

    int probe = 0;
    while (probe < S_ID_PROBES && sl_map_get(&core->by_id, s_id_key(job->id, probe)))
        probe++;
    if (probe == S_ID_PROBES) {
        SL_WARN("job id '%s' collides with %d others; refusing it", job->id, S_ID_PROBES);
        free(job);
        return SL_ERR_EXISTS;
    }
    job->id_hash = s_id_key(job->id, probe);
    if (sl_map_put(&core->by_id, job->id_hash, job) != SL_OK) {
        free(job);
        return SL_ERR_NOMEM;
    }
    if (sl_map_put(&core->by_seq, job->seq, job) != SL_OK) {
        sl_map_del(&core->by_id, job->id_hash);
        free(job);
        return SL_ERR_NOMEM;
    }
    sl_list_push_back(&core->queue[job->prio], &job->link);
    core->qlen[job->prio]++;
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
    e->inflight--;
    e->inflight_tokens -= (uint64_t)job->prompt_tokens + job->max_new_tokens;
    e->completed++;
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
    if (!job || job->state == SL_JOB_DONE)
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
    sl_list_init(&e->jobs);
    e->joined = e->last_seen = now;
    e->alive = true;
    e->user = user;
    core->execs[free_slot] = e;
    if ((uint32_t)free_slot + 1 > core->exec_hi)
        core->exec_hi = (uint32_t)free_slot + 1;
    core->n_alive++;
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
    SL_WARN("executor %s lost (%s): requeueing %u jobs", e->name, why, e->inflight);
    core->execs[e->index] = NULL;
    e->alive = false;
    core->n_alive--;
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
        sl_list_push_front(&core->queue[job->prio], &job->link);
        core->qlen[job->prio]++;
        core->counters[SL_CTR_REQUEUED]++;
    }
    e->inflight = 0;
    if (core->policy->exec_change)
        core->policy->exec_change(core->policy_state, e, false);
    if (core->io->exec_lost)
        core->io->exec_lost(core->io_arg, e, why);
    free(e);
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
    while (!sl_list_empty(&core->done)) {
        sl_job_t *job = SL_CONTAINER_OF(core->done.next, sl_job_t, link);
        if (now - job->done_at < ttl && core->n_done <= (uint32_t)core->cfg.done_max)
            break;
        sl_list_del(&job->link);
        core->n_done--;
        sl_map_del(&core->by_id, job->id_hash);
        s_job_free(core, job);
    }
}

void sl_core_tick(sl_core_t *core, sl_time_t now)
{
    sl_time_t limit = SL_MS(core->cfg.heartbeat_ms) * core->cfg.missed_heartbeats;
    for (uint32_t i = 0; i < core->exec_hi; i++) {
        sl_exec_t *e = core->execs[i];
        if (e && now - e->last_seen > limit)
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
