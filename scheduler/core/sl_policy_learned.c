/*
 * The learned policy: place the job where its predicted time to first token
 * is smallest, by the core's load model (queue wait on that executor from
 * its predicted backlog, plus its own prefill of the tokens that executor
 * does not cache), keeping end-to-end deadlines: among executors whose
 * predicted end (TTFT + TPOT x output) meets the job's deadline the lowest
 * TTFT wins; when none meets it, the lowest predicted end.
 *
 * This is the Mooncake Conductor's rule (ttft = queue_wait + prefill(len -
 * prefix), smallest wins; RFC kvcache-ai/Mooncake#977) with the
 * coefficients learned online per executor instead of profiled offline, and
 * evaluated in the scheduler's thread instead of by a predictor service
 * (llm-d predicted-latency scheduling calls a sidecar once per candidate).
 *
 * Cost: with many candidates (more than S_FULL_SCAN) it evaluates the
 * executors caching a prefix of the job plus S_SAMPLE random candidates, so
 * a decision stays a few microseconds at 1000 executors. It declares the
 * sample (ops.sample), so on a large fleet the core itself offers only the
 * prefix holders and S_SAMPLE free executors drawn at random, and the
 * candidate list costs the sample, not the fleet; sampling loses
 * little because a random sample of 32 almost surely holds an executor in
 * the least-loaded tenth. A full scan was rejected for that size (it is
 * O(executors) multiply-adds per job); heaps keyed by backlog were rejected
 * because the key depends on the job (its cache hits).
 */
#include "scheduler/core/sl_policy.h"
#include "common/sl_rand.h"

#include <math.h>
#include <stdlib.h>

#define S_FULL_SCAN 64
#define S_SAMPLE 32

typedef struct s_learned {
    sl_core_t *core; /* for predictions and the prefix hits */
    sl_rand_t rand;  /* candidate sampling */
} s_learned_t;

static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    s_learned_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ERR_NOMEM;
    st->core = params->core;
    sl_rand_seed(&st->rand, params->seed);
    *state_p = st;
    return SL_OK;
}

static void s_fini(void *state)
{
    free(state);
}

typedef struct s_best {
    size_t pick; /* best candidate so far */
    int rank;    /* 2: fits and meets the deadline, 1: fits, 0: neither */
    double key;  /* its cost within the rank */
} s_best_t;

/* Weight of the stall a prefill causes to the jobs decoding beside it. */
#define S_STALL_WEIGHT 0.3

static void s_consider(s_learned_t *st, sl_job_t *job, sl_exec_t *const *cands, size_t i,
                       sl_time_t now, s_best_t *b)
{
    const sl_exec_t *e = cands[i];
    sl_lm_pred_t p;
    sl_core_predict(st->core, job, e, now, &p);
    double ttft = p.ttft_s;
    /* Its KV must fit beside the jobs already there, or it waits for them
     * to finish (seconds, not milliseconds). */
    uint64_t cap = (uint64_t)e->kv_blocks_total * e->kv_block_tokens;
    uint64_t need = (uint64_t)job->prompt_tokens + job->max_new_tokens;
    bool fits = cap == 0 || e->inflight_tokens + need <= cap;
    double end = ttft + (double)p.tpot_s * job->max_new_tokens;
    bool meets = !job->due || now + (sl_time_t)(end * 1e9) <= job->due;
    int rank = fits ? (meets ? 2 : 1) : 0;
    /* Its prefill also stalls every job decoding there. */
    double key = (rank == 1 ? end : ttft) + S_STALL_WEIGHT * p.prefill_s * e->inflight;
    if (!fits)
        key = (double)(e->inflight_tokens + need - cap) / (double)(cap ? cap : 1) + ttft;
    if (rank > b->rank || (rank == b->rank && key < b->key)) {
        b->pick = i;
        b->rank = rank;
        b->key = key;
    }
}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    s_learned_t *st = state;
    s_best_t b = {.pick = 0, .rank = -1, .key = INFINITY};
    if (n <= S_FULL_SCAN) {
        for (size_t i = 0; i < n; i++)
            s_consider(st, job, cands, i, now, &b);
        return b.pick;
    }
    size_t n_hits, pos;
    const sl_prefix_hit_t *hits = sl_core_place_hits(st->core, &n_hits);
    for (size_t h = 0; h < n_hits; h++) {
        sl_exec_t *e = sl_core_exec_get(st->core, hits[h].exec);
        if (e && sl_core_place_candidate(st->core, e, &pos))
            s_consider(st, job, cands, pos, now, &b);
    }
    for (int k = 0; k < S_SAMPLE; k++)
        s_consider(st, job, cands, (size_t)sl_rand_below(&st->rand, n), now, &b);
    return b.pick;
}

const sl_policy_ops_t sl_policy_learned = {
    .name = "learned",
    .api_version = SL_POLICY_API_VERSION,
    .sample = S_SAMPLE,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
