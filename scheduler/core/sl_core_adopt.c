/*
 * Restored jobs (see sl_core_job_restore in sl_core.h): what a journal kept
 * across a scheduler restart comes back here, and the executors that were
 * running some of those jobs claim them when they register again.
 *
 * A restored job cannot go into the queue at once: the executor that ran
 * it before the crash may still be running it, and the first executor to
 * register would be handed every queued job, so most jobs would run twice.
 * Restored jobs therefore wait in a held list for adopt_grace_ms. A hello
 * that lists a held job (same seq, same id) moves it onto that executor as
 * running, without a dispatch; when the grace ends the rest are queued at
 * the front, oldest first, and run again (at least once towards executors;
 * the client still gets one result, since there is one job per id).
 * Recording every dispatch in the journal instead, so that only jobs that
 * were running need to wait, was rejected: it doubles the journal's writes
 * on the hot path to shorten a wait that happens only after a crash.
 */
#include "scheduler/core/sl_core_int.h"

#include <stdlib.h>
#include <string.h>

sl_status_t sl_core_job_restore(sl_core_t *core, const sl_job_desc_t *desc, void *user,
                                uint64_t seq, sl_time_t now, sl_job_t **job_p)
{
    if (sl_core_reentered(core, "sl_core_job_restore"))
        return SL_ERR_REENTERED;
    if (!desc->id || !desc->id[0] || desc->prio >= SL_PRIO_COUNT || seq == 0)
        return SL_ERR_INVALID;
    uint64_t id_key = 0;
    void *old = NULL;
    sl_status_t st = sl_core_id_probe(core, desc->id, &id_key, &old);
    if (st != SL_OK)
        return st;
    if (sl_map_get(&core->by_seq, seq))
        return SL_ERR_EXISTS;
    sl_job_t *job =
        sl_core_job_new(core, desc, sl_core_vocab_need(desc->token_ids, desc->n_token_ids), now);
    if (!job)
        return SL_ERR_NOMEM;
    job->seq = seq;
    job->id_hash = id_key;
    job->user = user;
    job->restored = true;
    if (sl_map_put(&core->by_id, job->id_hash, job) != SL_OK) {
        free(job);
        return SL_ERR_NOMEM;
    }
    if (sl_map_put(&core->by_seq, job->seq, job) != SL_OK) {
        sl_map_del(&core->by_id, job->id_hash);
        free(job);
        return SL_ERR_NOMEM;
    }
    if (seq >= core->next_seq)
        core->next_seq = seq + 1;
    sl_core_tenant_attach(core, job);
    sl_list_push_back(&core->held, &job->link);
    if (core->n_held++ == 0)
        core->held_until = now + SL_MS(core->cfg.adopt_grace_ms);
    core->counters[SL_CTR_RESTORED]++;
    *job_p = job;
    return SL_OK;
}

void sl_core_seq_floor(sl_core_t *core, uint64_t seq)
{
    if (seq > core->next_seq)
        core->next_seq = seq;
}

uint64_t sl_core_seq_next(const sl_core_t *core)
{
    return core->next_seq;
}

uint32_t sl_core_held(const sl_core_t *core)
{
    return core->n_held;
}

void sl_core_held_del(sl_core_t *core, sl_job_t *job)
{
    sl_list_del(&job->link);
    job->restored = false;
    core->n_held--;
}

void sl_core_adopt(sl_core_t *core, sl_exec_t *e, const sl_held_job_t *held, uint32_t n_held,
                   sl_time_t now)
{
    for (uint32_t i = 0; i < n_held && e->inflight < e->credits; i++) {
        sl_job_t *job = sl_map_get(&core->by_seq, held[i].seq);
        if (!job || !job->restored || !held[i].id || strcmp(job->id, held[i].id) != 0)
            continue;
        sl_core_held_del(core, job);
        job->state = SL_JOB_RUNNING;
        job->exec = e;
        job->attempts = held[i].attempt > job->attempts ? held[i].attempt : job->attempts + 1;
        job->dispatched = now;
        sl_core_predict_cached(core, job, e, 0, now, &job->pred);
        sl_list_push_back(&e->jobs, &job->link);
        sl_core_credit_take(core, e);
        e->inflight_tokens += (uint64_t)job->prompt_tokens + job->max_new_tokens;
        core->running++;
        core->counters[SL_CTR_ADOPTED]++;
    }
    sl_core_logf(core, SL_CORE_LOG_INFO, "executor %s registered again holding %u jobs", e->name,
                 n_held);
}

void sl_core_held_tick(sl_core_t *core, sl_time_t now)
{
    if (!core->n_held || now < core->held_until)
        return;
    uint32_t n = core->n_held;
    /* Backwards, each to the front: the oldest ends first in its queue. */
    while (core->n_held) {
        sl_job_t *job = SL_CONTAINER_OF(core->held.prev, sl_job_t, link);
        sl_core_held_del(core, job);
        sl_core_queue_add(core, job, true);
        core->counters[SL_CTR_UNCLAIMED]++;
    }
    sl_core_logf(core, SL_CORE_LOG_INFO,
                 "%u restored jobs were not claimed by any executor: queued to run again", n);
}
