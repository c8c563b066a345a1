/*
 * cache-switch: the SGLang gateway's cache-aware policy, as a baseline.
 * Sources: sgl-project/sglang, sgl-router README; lightseekorg/smg,
 * docs/concepts/routing/cache-aware.md. While the cluster is balanced, route
 * to the executor with the longest prefix match if the match ratio exceeds
 * 0.3, else to the least loaded; the cluster is imbalanced when
 * max_load - min_load > 64 (absolute) and max_load > 1.5 * min_load
 * (relative), and then the least loaded wins. Load is the number of jobs
 * outstanding on the executor, as the router counts its running requests.
 */
#include "scheduler/core/sl_policy.h"

#include <stdlib.h>

#define S_MATCH_RATIO 0.3
#define S_ABS_GAP 64.0
#define S_REL_GAP 1.5

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
    size_t least = 0, match = 0;
    double lmin = 1e300, lmax = -1e300;
    uint32_t best_hit = 0;
    for (size_t i = 0; i < n; i++) {
        double l = cands[i]->inflight;
        if (l < lmin) {
            lmin = l;
            least = i;
        }
        if (l > lmax)
            lmax = l;
        uint32_t hit = hit_blocks[cands[i]->index];
        if (hit > best_hit) {
            best_hit = hit;
            match = i;
        }
    }
    bool imbalanced = lmax - lmin > S_ABS_GAP && lmax > S_REL_GAP * lmin;
    if (imbalanced || job->n_block_hashes == 0)
        return least;
    double ratio = (double)best_hit / job->n_block_hashes;
    return ratio > S_MATCH_RATIO ? match : least;
}

const sl_policy_ops_t sl_policy_cache_switch = {
    .name = "cache-switch",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
