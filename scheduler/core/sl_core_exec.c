/*
 * The executor table (see sl_core_int.h): executors joining, proving
 * themselves alive, reporting KV events, failing their jobs and being lost,
 * and what the table answers about them (who can hold a job, which KV block
 * size prompts are hashed with).
 *
 * Failure: an executor silent for missed_heartbeats intervals is lost (its
 * check runs in sl_core_tick); its in-flight jobs go back to the front of
 * their queues and are dispatched again (up to max_attempts). A late
 * completion from the lost incarnation is stale and ignored, so every job
 * yields exactly one result. An executor whose recent jobs mostly failed is
 * quarantined for a while instead (it frees its credits at once, and would
 * otherwise look like the idlest executor to every load-based policy).
 *
 * A job that brings token ids instead of hashes is hashed at submission with
 * the chained block hash the executors' KV caches use (common/sl_hash.h) and
 * the block size most live executors advertise, chosen here at joins and
 * losses. Hashing per distinct block size was rejected: hit counts in
 * different block units would reach the policies, which compare them with
 * one block count per job; a cluster normally shares one block size, and
 * executors of a minority size only lose their prefix hits, never
 * correctness.
 *
 * Each executor is allocated with its private part (sl_core_exec_t): list
 * positions and placement marks stay out of the record others read.
 */
#include "scheduler/core/sl_core_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A KV block size live executors advertise. */
typedef struct s_block_size {
    uint32_t tokens; /* tokens per block */
    uint32_t execs;  /* live executors advertising it */
} s_block_size_t;

/* Copy src into dst of cap bytes, cut to fit, NUL-terminated. */
static void s_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* e can hold a job of need tokens (prompt + new) with ids below vocab_need. */
bool sl_core_exec_holds(const sl_exec_t *e, uint64_t need, uint32_t vocab_need)
{
    return (e->max_context_tokens == 0 || need <= e->max_context_tokens) &&
           (e->vocab_size == 0 || vocab_need <= e->vocab_size);
}

/* The largest prompt token id + 1; 0 without ids. */
uint32_t sl_core_vocab_need(const uint32_t *ids, uint32_t n)
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
bool sl_core_fits_some(const sl_core_t *core, const char *model, uint64_t need, uint32_t vocab_need)
{
    if (need <= core->fit_context && vocab_need <= core->fit_vocab)
        return true;
    bool served = false;
    for (uint32_t i = 0; i < core->n_alive; i++) {
        const sl_exec_t *e = core->alive_execs[i];
        if (!s_serves_model(e, model))
            continue;
        served = true;
        if (sl_core_exec_holds(e, need, vocab_need))
            return true;
    }
    return !served;
}

/* The smallest limits over the live executors (fast path of sl_core_fits_some); * O(executors), at
 * joins and losses only. */
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
    uint64_t ctx = 0,
             vocab = 0; /* largest over the executors of its model; UINT64_MAX: unlimited */
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
        sl_core_fmt(why, why_len,
                    "prompt %u + %u new tokens exceed every executor's context "
                    "(largest %llu)",
                    prompt, out, (unsigned long long)ctx);
    else if (vocab_need > vocab)
        sl_core_fmt(why, why_len,
                    "prompt token id %u is outside every executor's vocabulary "
                    "(largest %llu)",
                    vocab_need - 1, (unsigned long long)vocab);
    else
        sl_core_fmt(why, why_len,
                    "no executor holds both prompt %u + %u new tokens and token "
                    "id %u",
                    prompt, out, vocab_need ? vocab_need - 1 : 0);
}

void sl_core_job_misfit(const sl_core_t *core, const sl_job_desc_t *desc, char *why, size_t why_len)
{
    s_misfit(core, desc->model, desc->prompt_tokens, desc->max_new_tokens,
             sl_core_vocab_need(desc->token_ids, desc->n_token_ids), why, why_len);
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
            if (sl_core_fits_some(core, job->model,
                                  (uint64_t)job->prompt_tokens + job->max_new_tokens,
                                  job->vocab_need))
                continue;
            sl_job_timings_t t;
            s_misfit(core, job->model, job->prompt_tokens, job->max_new_tokens, job->vocab_need,
                     why, sizeof(why));
            sl_core_queue_del(core, job);
            sl_core_timings_queued(job, now, &t);
            sl_core_job_finish(core, job, SL_JOB_REJECTED, &t, NULL, NULL, why, now);
        }
    }
}

/* Count how a job ended on e, and quarantine e when its recent jobs mostly
 * failed: a backend that fails jobs at once frees its credits at once, and
 * without this every load-based policy would take it for the idlest
 * executor and send it most of the work. Canceled jobs say nothing. */
void sl_core_exec_outcome(sl_core_t *core, sl_exec_t *e, sl_job_status_t status, sl_time_t now)
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
    sl_core_logf(core, SL_CORE_LOG_WARN,
                 "executor %s quarantined for %lld ms: %.1f of its last %.1f jobs failed "
                 "(decayed)",
                 e->name, (long long)core->cfg.quarantine_ms, e->fail_recent, e->done_recent);
    /* It starts afresh when the quarantine ends. */
    e->fail_recent = e->done_recent = 0;
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
    if (sl_core_reentered(core, "sl_core_exec_join"))
        return SL_ERR_REENTERED;
    if (!info->name || !info->name[0] || strlen(info->name) >= SL_CORE_MAX_NAME ||
        info->slots == 0 || info->n_models > SL_EXEC_MAX_MODELS)
        return SL_ERR_INVALID;
    int free_slot = -1;
    for (int i = 0; i < core->cfg.max_executors; i++) {
        sl_exec_t *e = core->execs[i];
        if (e && strcmp(e->name, info->name) == 0) {
            sl_core_exec_lose(core, e, "rejoined", now);
            e = NULL;
        }
        if (!e && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        sl_core_logf(core, SL_CORE_LOG_WARN, "executor table full (%d): refusing '%s'",
                     core->cfg.max_executors, info->name);
        return SL_ERR_OVERFLOW;
    }
    sl_core_exec_t *x = calloc(1, sizeof(*x));
    if (!x)
        return SL_ERR_NOMEM;
    sl_exec_t *e = &x->pub;
    e->index = (uint32_t)free_slot;
    s_copy(e->name, sizeof(e->name), info->name);
    s_copy(e->backend, sizeof(e->backend), info->backend ? info->backend : "");
    for (size_t i = 0; i < info->n_models; i++) {
        if (strlen(info->models[i]) >= SL_CORE_MAX_NAME) {
            free(x);
            return SL_ERR_INVALID;
        }
        s_copy(e->models[i], SL_CORE_MAX_NAME, info->models[i]);
    }
    e->n_models = info->n_models;
    e->slots = info->slots;
    e->credits = core->cfg.credits > 0 && (uint32_t)core->cfg.credits < info->slots
                     ? (uint32_t)core->cfg.credits
                     : info->slots;
    e->kv_blocks_total = info->kv_blocks_total;
    e->kv_block_tokens = info->kv_block_tokens;
    e->clock.step_tokens = info->step_tokens;
    e->speed = info->speed;
    e->max_context_tokens = info->max_context_tokens;
    e->vocab_size = info->vocab_size;
    if (sl_core_stage_join(e, info) != SL_OK) {
        sl_core_logf(core, SL_CORE_LOG_WARN, "executor '%s' refused: layers %u-%u of %u",
                     info->name, info->layer_first, info->layer_last, info->layers_total);
        free(x);
        return SL_ERR_INVALID;
    }
    sl_status_t kst = sl_core_kv_exec_join(core, e, info);
    if (kst != SL_OK) {
        sl_core_logf(core, SL_CORE_LOG_WARN,
                     "executor '%s' refused: a prefill or decode role needs a data plane",
                     info->name);
        free(x);
        return kst;
    }
    sl_list_init(&e->jobs);
    e->joined = e->last_seen = now;
    e->alive = true;
    e->user = user;
    core->execs[free_slot] = e;
    x->alive_pos = core->n_alive;
    core->alive_execs[core->n_alive] = e;
    core->alive_index[core->n_alive] = e->index;
    core->n_alive++;
    sl_load_model_fleet(core->model, core->n_alive);
    sl_core_free_add(core, e);
    s_block_size_choose(core);
    s_fit_choose(core);
    sl_prefix_index_reset(core->index, e->index);
    sl_load_model_exec_reset(core->model, e->index, now);
    core->free_credits += e->credits;
    core->counters[SL_CTR_EXECUTORS_JOINED]++;
    sl_core_cb_enter(core);
    sl_core_policy_exec_change(core, e, true);
    sl_core_cb_leave(core);
    *index_p = e->index;
    if (info->n_held && core->n_held)
        sl_core_adopt(core, e, info->held, info->n_held, now);
    sl_core_stage_update(core, now);
    sl_core_pump(core, now);
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
    if (sl_core_reentered(core, "sl_core_exec_heartbeat"))
        return SL_ERR_REENTERED;
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    e->load = *load;
    e->last_seen = now;
    sl_step_clock_heartbeat(&e->clock, load, now);
    return SL_OK;
}

sl_status_t sl_core_exec_touch(sl_core_t *core, uint32_t index, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_exec_touch"))
        return SL_ERR_REENTERED;
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    e->last_seen = now;
    return SL_OK;
}

void sl_core_exec_lose(sl_core_t *core, sl_exec_t *e, const char *why, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    if (e->inflight == 0 && strcmp(why, "said goodbye") == 0) /* an orderly stop loses nothing */
        sl_core_logf(core, SL_CORE_LOG_INFO, "executor %s left (%s)", e->name, why);
    else
        sl_core_logf(core, SL_CORE_LOG_WARN, "executor %s lost (%s): requeueing %u jobs", e->name,
                     why, e->inflight);
    core->execs[e->index] = NULL;
    e->alive = false;
    if (e->inflight < e->credits)
        sl_core_free_del(core, e);
    sl_exec_t *last = core->alive_execs[core->n_alive - 1];
    uint32_t alive_pos = sl_core_exec_priv(e)->alive_pos;
    core->alive_execs[alive_pos] = last;
    core->alive_index[alive_pos] = last->index;
    sl_core_exec_priv(last)->alive_pos = alive_pos;
    core->n_alive--;
    sl_load_model_fleet(core->model, core->n_alive);
    s_block_size_choose(core);
    s_fit_choose(core);
    sl_prefix_index_reset(core->index, e->index);
    core->free_credits -= (int64_t)e->credits - (int64_t)e->inflight;
    core->counters[SL_CTR_EXECUTORS_LOST]++;
    sl_core_kv_exec_lose(core, e, now);
    /* Walk backwards so that pushing each to the queue front keeps their order. */
    for (pos = e->jobs.prev, tmp = pos->prev; pos != &e->jobs; pos = tmp, tmp = pos->prev) {
        sl_job_t *job = SL_CONTAINER_OF(pos, sl_job_t, link);
        sl_list_del(&job->link);
        core->running--;
        job->exec = NULL;
        if (job->attempts >= (uint32_t)core->cfg.max_attempts) {
            sl_job_timings_t t;
            sl_core_timings_queued(job, now, &t);
            sl_core_job_finish(core, job, SL_JOB_FAILED, &t, NULL, NULL,
                               "executors lost while running the job", now);
            continue;
        }
        job->state = SL_JOB_QUEUED;
        sl_core_queue_add(core, job, true);
        core->counters[SL_CTR_REQUEUED]++;
    }
    e->inflight = 0;
    sl_core_cb_enter(core);
    sl_core_policy_exec_change(core, e, false);
    if (core->io->exec_lost)
        core->io->exec_lost(core->io_arg, e, why);
    sl_core_cb_leave(core);
    free(sl_core_exec_priv(e));
    sl_core_stage_update(core, now);
    s_reject_unfit(core, now);
    sl_core_pump(core, now);
}

sl_status_t sl_core_exec_lost(sl_core_t *core, uint32_t index, const char *why, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_exec_lost"))
        return SL_ERR_REENTERED;
    sl_exec_t *e = sl_core_exec_get(core, index);
    if (!e)
        return SL_ERR_NOT_FOUND;
    sl_core_exec_lose(core, e, why, now);
    return SL_OK;
}

sl_status_t sl_core_exec_kv_event(sl_core_t *core, uint32_t index, const uint64_t *stored,
                                  size_t n_stored, const uint64_t *evicted, size_t n_evicted,
                                  bool reset, sl_time_t now)
{
    if (sl_core_reentered(core, "sl_core_exec_kv_event"))
        return SL_ERR_REENTERED;
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
