/*
 * scorer: the Gateway API Inference Extension / llm-d endpoint picker, as a
 * baseline. Source: kubernetes-sigs/gateway-api-inference-extension, the
 * scorer READMEs: each scorer returns a value in [0, 1] and the picker takes
 * the highest weighted sum;
 *   prefix = matched prefix blocks / prompt blocks,
 *   queue  = (maxQ - q) / (maxQ - minQ), 1 when all equal,
 *   kv     = 1 - KV utilization,
 * with the shipped weights queue : kv : prefix = 2 : 2 : 1.
 * The queue depth q is the executor's outstanding jobs (in flight from this
 * scheduler plus those waiting in its engine at the last heartbeat); KV
 * utilization is from the last heartbeat. Ties go to the first candidate.
 */
#include "scheduler/core/sl_policy.h"

#include <stdlib.h>

#define S_W_QUEUE 2.0
#define S_W_KV 2.0
#define S_W_PREFIX 1.0

/* The state is the core, for the prefix hits of the job being placed. */
static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    *state_p = params->core;
    return SL_OK;
}

static void s_fini(void *state) {}

static double s_queue(const sl_exec_t *e)
{
    return (double)e->inflight + e->load.queued_jobs;
}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    const uint32_t *hit_blocks = sl_core_place_hit_blocks(state);
    double qmin = 1e300, qmax = -1e300;
    for (size_t i = 0; i < n; i++) {
        double q = s_queue(cands[i]);
        if (q < qmin)
            qmin = q;
        if (q > qmax)
            qmax = q;
    }
    size_t best = 0;
    double best_s = -1e300;
    for (size_t i = 0; i < n; i++) {
        const sl_exec_t *e = cands[i];
        double prefix =
            job->n_block_hashes ? (double)hit_blocks[e->index] / job->n_block_hashes : 0;
        double queue = qmax > qmin ? (qmax - s_queue(e)) / (qmax - qmin) : 1.0;
        double kv_total = (double)e->load.kv_blocks_used + e->load.kv_blocks_free;
        double kv = kv_total > 0 ? 1.0 - e->load.kv_blocks_used / kv_total : 1.0;
        double score = S_W_QUEUE * queue + S_W_KV * kv + S_W_PREFIX * prefix;
        if (score > best_s) {
            best_s = score;
            best = i;
        }
    }
    return best;
}

const sl_policy_ops_t sl_policy_scorer = {
    .name = "scorer",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
