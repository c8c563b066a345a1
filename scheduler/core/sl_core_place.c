/*
 * Placement and dispatch (see sl_core_int.h): which executor runs the job
 * the queues put next (sl_core_fair.c), and sending it there.
 *
 * Dispatch is late-binding: a job stays in the scheduler's queue until some
 * executor has a free credit, and is only then placed, by the policy, among
 * the executors free at that moment. Placing at arrival onto per-executor
 * queues (early binding) was rejected: it commits to a guess made with the
 * oldest information, and a slow or lost executor strands its whole queue.
 * The credit bound keeps each executor's own queue just deep enough to form
 * full batches.
 *
 * Placement knows two things beyond load: the prefix index (which executors
 * cache the leading blocks of the job, from their KV events) and the load
 * model (predicted TTFT on each executor, learned from every completion).
 * For every placement the core matches the job's block hashes once and
 * marks the hits in a table by executor index, so a policy reads them in
 * O(1) per candidate with no call (sl_core_place_hit_blocks, fetched once
 * per place(); a query per candidate cost cache-switch 1.2 us per decision
 * at 1,000 executors). Executors with a free
 * credit sit in a list updated on every credit change (sl_core_exec.c), so
 * building the candidates costs the free executors, not the whole table.
 */
#include "scheduler/core/sl_core_int.h"

#include <string.h>

static bool s_serves(const sl_exec_t *e, const sl_job_t *job)
{
    if (e->n_models == 0 || job->model[0] == '\0')
        return true;
    for (size_t i = 0; i < e->n_models; i++)
        if (strcmp(e->models[i], job->model) == 0)
            return true;
    return false;
}

bool sl_core_can_place(const sl_exec_t *e, const sl_job_t *job, sl_time_t now)
{
    return sl_core_kv_candidate(e) && sl_core_stage_ready(e) && s_serves(e, job) &&
           sl_core_exec_holds(e, (uint64_t)job->prompt_tokens + job->max_new_tokens,
                              job->vocab_need) &&
           !sl_core_exec_quarantined(e, now);
}

static void s_dispatch(sl_core_t *core, sl_job_t *job, sl_exec_t *e, sl_time_t now)
{
    sl_core_queue_del(core, job);
    job->state = SL_JOB_RUNNING;
    job->exec = e;
    job->attempts++;
    job->dispatched = now;
    job->resume_tokens = job->n_delivered; /* it goes on after what its client has */
    if (job->resume_tokens)
        core->counters[SL_CTR_JOBS_RESUMED]++;
    sl_list_push_back(&e->jobs, &job->link);
    if (e->inflight + 1 == e->credits)
        sl_core_free_del(core, e);
    e->inflight++;
    e->inflight_tokens += (uint64_t)job->prompt_tokens + job->max_new_tokens;
    e->prefill_tokens += job->uncached_tokens;
    core->free_credits--;
    core->running++;
    core->counters[SL_CTR_DISPATCHED]++;
    sl_core_cb_enter(core);
    sl_status_t st = core->io->dispatch(core->io_arg, e, job);
    sl_core_cb_leave(core);
    if (st != SL_OK)
        sl_core_exec_lose(core, e, "dispatch failed", now);
}

/* Leading blocks of the job cached on e (its marks valid): its own hits,
 * or those every executor is taken to have. */
static uint32_t s_hit_blocks(const sl_core_t *core, const sl_exec_t *e)
{
    uint32_t hit = core->hit_blocks[e->index];
    return hit > core->common_blocks ? hit : core->common_blocks;
}

/* Prompt tokens of job cached on e; one token is always computed. */

static uint32_t s_cached_tokens(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e)
{
    uint64_t c = (uint64_t)s_hit_blocks(core, e) * (job->block_tokens ? job->block_tokens : 16);
    if (c >= job->prompt_tokens)
        c = job->prompt_tokens ? job->prompt_tokens - 1 : 0;
    return (uint32_t)c;
}

/* Start loading what checking e as a candidate and predicting on it read. */
static inline void s_exec_prefetch(const sl_core_t *core, const sl_exec_t *e, uint32_t index)
{
    const sl_core_exec_t *x = sl_core_exec_priv(e);
    __builtin_prefetch(e);
    __builtin_prefetch((const char *)e + 64);
    __builtin_prefetch((const char *)e + 128);
    __builtin_prefetch((const char *)e + 192);
    __builtin_prefetch(&x->cand_stamp);
    sl_load_model_prefetch(core->model, index); /* index, not e->index: e is not loaded yet */
}

void sl_core_hits_mark(sl_core_t *core, const sl_job_t *job)
{
    /* Admission and placement of one job look its prefix up in turn, the
     * index unchanged between them: the second time, the first's match
     * (still in hits, which only this function writes) is taken again. */
    uint64_t gen = sl_prefix_index_gen(core->index);
    if (core->hits_seq == job->seq + 1 && core->hits_gen == gen) {
        core->n_hits = core->hits_len;
        core->common_blocks = core->hits_common;
    } else {
        core->n_hits =
            sl_prefix_index_match(core->index, job->block_hashes, job->n_block_hashes, core->hits,
                                  SL_PREFIX_MAX_HOLDERS, &core->common_blocks);
        core->hits_seq = job->seq + 1;
        core->hits_gen = gen;
        core->hits_len = core->n_hits;
        core->hits_common = core->common_blocks;
    }
    /* by index (an executor's index is its slot): the holders' records
     * are only prefetched here, for the candidate checks that follow */
    for (size_t i = 0; i < core->n_hits; i++) {
        uint32_t idx = core->hits[i].exec;
        const sl_exec_t *e = core->execs[idx];
        if (e) {
            core->hit_blocks[idx] = core->hits[i].blocks;
            s_exec_prefetch(core, e, idx);
        }
    }
}

void sl_core_hits_clear(sl_core_t *core)
{
    for (size_t i = 0; i < core->n_hits; i++)
        core->hit_blocks[core->hits[i].exec] = 0;
    core->n_hits = 0;
    core->common_blocks = 0;
}

void sl_core_predict(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e, sl_time_t now,
                     sl_lm_pred_t *pred)
{
    sl_core_predict_cached(core, job, e, s_cached_tokens(core, job, e), now, pred);
}

void sl_core_predict_cached(const sl_core_t *core, const sl_job_t *job, const sl_exec_t *e,
                            uint32_t cached_tokens, sl_time_t now, sl_lm_pred_t *pred)
{
    const float *cost = sl_core_exec_step_cost(e);
    sl_step_clock_now_t clock;
    bool has_clock = sl_step_clock_at(&e->clock, cost, now, &clock);
    sl_lm_query_t q = {.prompt_tokens = job->prompt_tokens,
                       .cached_tokens = cached_tokens,
                       .running = e->inflight,
                       .kv_need = (uint64_t)job->prompt_tokens + job->max_new_tokens,
                       .kv_inflight = e->inflight_tokens,
                       .kv_capacity = (uint64_t)e->kv_blocks_total * e->kv_block_tokens,
                       .step_s = e->load.step_time_us / 1e6,
                       .busy = e->load.busy,
                       .step_cost = cost,
                       .clock = has_clock ? &clock : NULL};
    sl_load_model_predict(core->model, e->index, &q, now, pred);
}

double sl_core_exec_uncertainty(const sl_core_t *core, const sl_exec_t *e)
{
    return sl_load_model_exec_uncertainty(core->model, e->index);
}

double sl_core_explore_share(const sl_core_t *core)
{
    return core->cfg.explore_share;
}

void sl_core_note_explored(sl_core_t *core)
{
    core->counters[SL_CTR_EXPLORED]++;
}

const sl_prefix_hit_t *sl_core_place_hits(const sl_core_t *core, size_t *n_p)
{
    *n_p = core->n_hits;
    return core->hits;
}

const uint32_t *sl_core_place_hit_blocks(const sl_core_t *core)
{
    return core->hit_blocks;
}

bool sl_core_place_candidate(const sl_core_t *core, const sl_exec_t *e, size_t *pos_p)
{
    const sl_core_exec_t *x = sl_core_exec_priv(e);
    if (!core->placing || x->cand_stamp != core->place_stamp)
        return false;
    *pos_p = x->cand_pos;
    return true;
}

/* Offer e to the policy (once per placement), if it can take job. */
static void s_cand_add(sl_core_t *core, sl_exec_t *e, const sl_job_t *job, uint64_t stamp,
                       sl_time_t now, size_t *n_p)
{
    sl_core_exec_t *x = sl_core_exec_priv(e);
    if (x->cand_stamp == stamp || !sl_core_can_place(e, job, now))
        return;
    x->cand_pos = (uint32_t)*n_p;
    x->cand_stamp = stamp;
    core->cands[(*n_p)++] = e;
}

/* Whether the policy samples and the free executors outnumber twice its
 * sample: then the candidates are drawn (s_cands_sampled). */
static bool s_sampling(const sl_core_t *core)
{
    uint32_t k = core->policy->sample;
    return k && core->n_free_execs > 2 * k;
}

/* Draws screened for each candidate offered by s_cands_sampled. */
#define S_SCREEN_DRAWS 2
/* Candidates s_cands_sampled offers at most besides the prefix holders (a
 * larger declared sample is cut to it: the offered ones are kept on the
 * stack and prefetched together). */
#define S_DRAW_BATCH 64

/* The free prefix holders of the job (marked: sl_core_hits_mark) and
 * policy->sample free executors drawn at random, those that can take it;
 * 0 when none can. */
static size_t s_cands_sampled(sl_core_t *core, const sl_job_t *job, uint64_t stamp, sl_time_t now)
{
    uint32_t k = core->policy->sample, nf = core->n_free_execs;
    size_t n = 0;
    for (size_t h = 0; h < core->n_hits; h++) {
        sl_exec_t *e = core->execs[core->hits[h].exec];
        if (!e)
            continue;
        uint32_t pos = sl_core_exec_priv(e)->free_pos;
        if (pos < nf && core->free_execs[pos] == e)
            s_cand_add(core, e, job, stamp, now, &n);
    }
    /* Twice the sample is drawn, in pairs, and of each pair the one the
     * load model's dense arrays rate better (backlog and speed:
     * sl_load_model_screen) is offered, so that the policy's full
     * predictions, each a few cache misses (the executor's record, its
     * candidate mark, its load model), go to draws worth them; the best of
     * all the draws always wins its pair. The offered ones are prefetched
     * together before they are checked, so their misses overlap instead of
     * following one another. */
    uint32_t keep = k < S_DRAW_BATCH ? k : S_DRAW_BATCH;
    double pf = sl_load_model_fleet_prefill(core->model, job->prompt_tokens);
    uint32_t best[S_DRAW_BATCH];
    for (uint32_t j = 0; j < keep; j++) {
        uint32_t a = (uint32_t)sl_rand_below(&core->cand_rand, nf);
        double ka = sl_load_model_screen(core->model, core->free_index[a], pf, now);
        for (int t = 1; t < S_SCREEN_DRAWS; t++) {
            uint32_t b = (uint32_t)sl_rand_below(&core->cand_rand, nf);
            double kb = sl_load_model_screen(core->model, core->free_index[b], pf, now);
            if (kb < ka) {
                a = b;
                ka = kb;
            }
        }
        best[j] = a;
    }
    for (uint32_t j = 0; j < keep; j++)
        s_exec_prefetch(core, core->free_execs[best[j]], core->free_index[best[j]]);
    for (uint32_t j = 0; j < keep; j++)
        s_cand_add(core, core->free_execs[best[j]], job, stamp, now, &n);
    return n;
}

/* The policy's choice among the n candidates, inside a callback section
 * with the candidate marks valid; n or more when it chose none. */
static size_t s_policy_place(sl_core_t *core, const sl_policy_ops_t *ops, void *state,
                             sl_job_t *job, size_t n, sl_time_t now)
{
    core->placing = true;
    sl_core_cb_enter(core);
    size_t pick = ops->place(state, job, core->cands, n, now);
    sl_core_cb_leave(core);
    core->placing = false;
    return pick;
}

void sl_core_pump(sl_core_t *core, sl_time_t now)
{
    if (core->pumping)
        return;
    core->pumping = true;
    while (core->free_credits > 0) {
        sl_job_t *job = sl_core_queue_next(core, now);
        if (!job)
            break;
        uint64_t stamp = ++core->place_stamp;
        size_t n = 0;
        /* the prefix holders are looked up first only when they are drawn
         * with the sample; otherwise after the candidates, so that a head
         * of line that waits costs no lookup */
        bool sampled = s_sampling(core);
        if (sampled) {
            sl_core_hits_mark(core, job);
            n = s_cands_sampled(core, job, stamp, now);
        }
        if (n == 0)
            for (uint32_t i = 0; i < core->n_free_execs; i++)
                s_cand_add(core, core->free_execs[i], job, stamp, now, &n);
        if (n == 0) {
            if (sampled)
                sl_core_hits_clear(core);
            break; /* head of line waits for an executor that can take it */
        }
        if (!sampled)
            sl_core_hits_mark(core, job);
        size_t pick = s_policy_place(core, core->policy, core->policy_state, job, n, now);
        if (pick == SL_POLICY_WAIT) {
            core->counters[SL_CTR_PLACE_HELD]++;
            sl_core_hits_clear(core);
            break; /* head of line waits for a better executor to free a place */
        }
        if (pick >= n) {
            core->counters[SL_CTR_POLICY_INVALID]++;
            pick = core->fallback
                       ? s_policy_place(core, core->fallback, core->fallback_state, job, n, now)
                       : 0;
            if (pick >= n)
                pick = 0;
        }
        sl_exec_t *e = core->cands[pick];
        sl_core_predict(core, job, e, now, &job->pred);
        job->kv_xfer_pred_s = 0;
        job->kv_fetch_blocks = 0;
        if (!sl_core_kv_place(core, job, e, now)) {
            sl_core_hits_clear(core);
            break; /* a decode executor waits for a prefill executor to be free */
        }
        /* Judged once the data plane has chosen: a split or a prefix fetch
         * (reserved by now) gives another TTFT than job->pred, and is left
         * to run. */
        if (job->kv_mode == SL_KV_LOCAL && sl_core_place_doomed(core, job, now)) {
            sl_core_hits_clear(core);
            if (job == core->submitting) { /* refused by sl_core_job_submit */
                sl_core_queue_del(core, job);
                job->state = SL_JOB_DONE;
            } else {
                core->counters[SL_CTR_EXPIRED_PREDICTED]++;
                sl_core_job_expire(core, job, "TTFT deadline predicted missed at placement", now);
            }
            continue;
        }
        /* A split job's prompt is computed by its kv_peer: its prediction counts there. */
        bool split = job->kv_mode == SL_KV_PUSH;
        sl_lm_pred_t *pp = split ? &job->kv_pred : &job->pred;
        sl_exec_t *pe = split ? job->kv_peer : e;
        job->predicted_ttft_us = (pp->ttft_s + job->kv_xfer_pred_s) * 1e6;
        uint32_t cached = s_cached_tokens(core, job, e);
        if (job->kv_mode == SL_KV_FETCH && job->kv_fetch_blocks * job->block_tokens > cached)
            cached = job->kv_fetch_blocks * job->block_tokens; /* pulled from kv_peer */
        job->uncached_tokens = job->prompt_tokens - cached;
        core->counters[SL_CTR_PREFIX_HIT_BLOCKS] += s_hit_blocks(core, e);
        sl_load_model_dispatched(core->model, pe->index, pp, now);
        {
            /* its prompt queues on the executor's step clock */
            double u = job->uncached_tokens, c = job->prompt_tokens - u;
            sl_step_clock_dispatched(&pe->clock, sl_core_exec_step_cost(pe), job->prompt_tokens, u,
                                     u * (c + u / 2), now);
        }
        /* The backlog sum grows by exactly this prefill (the executor's
         * clock restarts from now if it had drained): kept up to date here
         * rather than summed over every executor again at the next submit. */
        core->util_cached += pp->work_s < core->cfg.admit_horizon_ms / 1e3
                                 ? pp->work_s
                                 : core->cfg.admit_horizon_ms / 1e3;
        sl_core_hits_clear(core);
        sl_core_queue_charge(core, job);
        s_dispatch(core, job, e, now);
    }
    core->pumping = false;
}
