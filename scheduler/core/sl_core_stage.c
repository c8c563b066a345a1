/*
 * Pipeline stages in the core: which chain of stages each first stage
 * drives, and which executors may be given jobs.
 *
 * An executor that holds layers first..last of a model of total layers (its
 * hello) is a stage; one with total 0 holds the whole model and is placed
 * on as before. Only a first stage (first == 0) is ever given a job, and
 * only while it has a complete chain: stages whose ranges follow each other
 * without gap or overlap up to the last layer, all serving the first
 * stage's models, each reached over the data plane by the stage before it
 * (sl_core_exec_reaches, the peers' checks) and the last reaching the first
 * (the sampled tokens go back to it). The first stage runs every job it is
 * given through its chain, so the scheduler places a job by choosing a
 * first stage: the policy sees the first stages with a chain as its
 * candidates, with their load, and a job therefore goes to the least loaded
 * complete chain as the policy measures load.
 *
 * Chains are recomputed whenever an executor joins or is lost and whenever
 * a reachability bit changes (rare events, so a walk over the executors is
 * fine). Each first stage takes, for each next range, the stage that fewest
 * chains already use (then the lowest index), backtracking when a choice
 * leads to a dead end; so two first stages and two second stages form two
 * disjoint chains. When a first stage's chain changes (a stage of it was
 * lost or became unreachable, or a chain appeared), its running jobs are
 * requeued (their steps cannot go on without the lost stage's KV) and the
 * embedder is told the new chain (io->stage_plan); a first stage left
 * without a chain gets no jobs until one forms again.
 *
 * Rejected: a chain chosen per job (each first stage would have to split
 * its batches by chain, and the later stages' KV of one sequence would be
 * spread over changing chains); placing on later stages too (they would
 * have to embed tokens they do not hold).
 */
#include "scheduler/core/sl_core_int.h"

#include <stdlib.h>
#include <string.h>

static bool s_staged(const sl_exec_t *e)
{
    return e->layers_total != 0;
}

static bool s_first(const sl_exec_t *e)
{
    return s_staged(e) && e->layer_first == 0 && e->layer_last + 1 < e->layers_total;
}

bool sl_core_stage_ready(const sl_exec_t *e)
{
    if (!s_staged(e) || e->layer_last + 1 == e->layers_total)
        return !s_staged(e) || e->layer_first == 0; /* whole model (one stage of all layers) */
    return e->layer_first == 0 && e->stage_n > 0;
}

sl_status_t sl_core_stage_join(sl_exec_t *e, const sl_exec_info_t *info)
{
    if (info->layers_total &&
        (info->layer_first > info->layer_last || info->layer_last >= info->layers_total))
        return SL_ERR_INVALID;
    e->layer_first = info->layers_total ? info->layer_first : 0;
    e->layer_last = info->layers_total ? info->layer_last : 0;
    e->layers_total = info->layers_total;
    e->stage_n = 0;
    return SL_OK;
}

/* Whether b serves the same models as a (a stage of the same model). */
static bool s_same_models(const sl_exec_t *a, const sl_exec_t *b)
{
    if (a->n_models != b->n_models)
        return false;
    for (size_t i = 0; i < a->n_models; i++)
        if (strcmp(a->models[i], b->models[i]) != 0)
            return false;
    return true;
}

typedef struct s_walk {
    sl_core_t *core;        /* the core */
    const sl_exec_t *first; /* the chain's first stage */
    uint32_t *uses;         /* chains through each executor so far (by index) */
    uint32_t chain[SL_STAGE_MAX];
    uint32_t n; /* stages in chain */
} s_walk_t;

/* Candidates one hop tries at most before giving up on it. */
#define S_TRIES 64

/* Extend w's chain (its last stage ends at layer need - 1) to the last layer. */
static bool s_extend(s_walk_t *w, uint32_t need)
{
    sl_core_t *core = w->core;
    const sl_exec_t *first = w->first, *prev = core->execs[w->chain[w->n - 1]];
    if (need == first->layers_total)
        return sl_core_exec_reaches(core, prev, first); /* the tokens go back */
    if (w->n == SL_STAGE_MAX)
        return false;
    uint32_t tried[S_TRIES], n_tried = 0;
    while (n_tried < S_TRIES) {
        sl_exec_t *best = NULL;
        for (uint32_t i = 0; i < core->n_alive; i++) {
            sl_exec_t *x = core->alive_execs[i];
            bool was_tried = false;
            for (uint32_t k = 0; k < n_tried && !was_tried; k++)
                was_tried = tried[k] == x->index;
            if (was_tried || x->layers_total != first->layers_total || x->layer_first != need ||
                x->layer_last < x->layer_first || x->draining || !s_same_models(first, x) ||
                !sl_core_exec_reaches(core, prev, x))
                continue;
            if (!best || w->uses[x->index] < w->uses[best->index] ||
                (w->uses[x->index] == w->uses[best->index] && x->index < best->index))
                best = x;
        }
        if (!best)
            return false;
        w->chain[w->n++] = best->index;
        if (s_extend(w, best->layer_last + 1))
            return true;
        w->n--;
        tried[n_tried++] = best->index;
    }
    return false;
}

/* Requeue first's running jobs: its chain changed under them. */
static void s_requeue_all(sl_core_t *core, sl_exec_t *first, sl_time_t now)
{
    sl_list_t *pos, *tmp;
    for (pos = first->jobs.prev, tmp = pos->prev; pos != &first->jobs; pos = tmp, tmp = pos->prev)
        sl_core_job_requeue(core, SL_CONTAINER_OF(pos, sl_job_t, link),
                            "its chain of pipeline stages changed", now);
}

void sl_core_stage_update(sl_core_t *core, sl_time_t now)
{
    bool any = false;
    for (uint32_t i = 0; i < core->n_alive && !any; i++)
        any = s_first(core->alive_execs[i]);
    if (!any)
        return;
    uint32_t *uses = calloc((size_t)core->cfg.max_executors, sizeof(*uses));
    if (!uses) {
        sl_core_logf(core, SL_CORE_LOG_WARN, "pipeline chains not updated: out of memory");
        return;
    }
    for (uint32_t i = 0; i < core->n_alive; i++) {
        sl_exec_t *e = core->alive_execs[i];
        if (!s_first(e))
            continue;
        s_walk_t w = {.core = core, .first = e, .uses = uses, .n = 1};
        w.chain[0] = e->index;
        if (!s_extend(&w, e->layer_last + 1))
            w.n = 0;
        for (uint32_t k = 1; k < w.n; k++)
            uses[w.chain[k]]++;
        if (w.n == e->stage_n && memcmp(w.chain, e->stage_chain, w.n * sizeof(w.chain[0])) == 0)
            continue;
        sl_core_logf(core, SL_CORE_LOG_INFO, "executor %s: pipeline chain of %u stages%s", e->name,
                     w.n, w.n ? "" : " (none complete: it takes no jobs)");
        if (e->stage_n)
            s_requeue_all(core, e, now);
        memcpy(e->stage_chain, w.chain, sizeof(w.chain));
        e->stage_n = w.n;
        if (core->io->stage_plan) {
            sl_core_cb_enter(core);
            core->io->stage_plan(core->io_arg, e, e->stage_chain, e->stage_n);
            sl_core_cb_leave(core);
        }
    }
    free(uses);
}
