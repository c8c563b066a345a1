/*
 * kv-cost: the NVIDIA Dynamo KV router's cost, as a baseline.
 * Source: ai-dynamo/dynamo, docs/components/router/router-concepts.md:
 *   prefill = max(active_prefill_blocks + incoming_prompt_blocks - overlap_blocks, 0)
 *   decode  = active_decode_blocks + incoming_blocks
 *   cost    = prefill_load_scale * prefill + decode   (scale 1 by default)
 * lowest cost wins (the optional softmax sampling is off by default).
 * Overlap blocks come from the prefix index (fed by stored/removed KV
 * events, as in Dynamo). Blocks are counted in the job's hash-block size.
 * Active prefill blocks: the uncached prompt tokens of the jobs in flight on
 * the executor. Dynamo drops a request from the prefill count at its first
 * token; this core hears of a job only at its end, so a job counts as
 * prefilling until then (the one approximation, documented in POLICIES.md).
 * Active decode blocks: the prompt + output tokens of the jobs in flight.
 */
#include "scheduler/core/sl_policy.h"

#include <stdlib.h>

/* The state is the core, for the prefix hits of the job being placed. */
static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    *state_p = params->core;
    return SL_OK;
}

static void s_fini(void *state) {}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    const uint32_t *hit_blocks = sl_core_place_hit_blocks(state);
    double bt = job->block_tokens ? job->block_tokens : 16;
    double incoming = (double)job->prompt_tokens / bt;
    double incoming_all = ((double)job->prompt_tokens + job->max_new_tokens) / bt;
    size_t best = 0;
    double best_cost = 1e300;
    for (size_t i = 0; i < n; i++) {
        const sl_exec_t *e = cands[i];
        double active_prefill = (double)e->prefill_tokens / bt;
        double prefill = active_prefill + incoming - (double)hit_blocks[e->index];
        if (prefill < 0)
            prefill = 0;
        double decode = (double)e->inflight_tokens / bt + incoming_all;
        double cost = 1.0 * prefill + decode;
        if (cost < best_cost) {
            best_cost = cost;
            best = i;
        }
    }
    return best;
}

const sl_policy_ops_t sl_policy_kv_cost = {
    .name = "kv-cost",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
