/*
 * weighted: the seeds' load-weight formula behind nginx least_conn, as a
 * baseline. Source: the seeds' design (PEERS.md, "The seeds' load weight"):
 *   weight = min(1 / (cpu + 0.1), 1 / (gpu + 0.1)) * 100
 * with cpu and gpu utilizations in [0, 1] from the last heartbeat, and nginx
 * least_conn with weights in front: the fewest outstanding jobs per unit of
 * weight wins ((inflight + 1) / weight; ties round-robin).
 *
 * cpu and gpu are the executor's measured host CPU busy share and GPU
 * utilization when its heartbeat carries them. One it could not measure (no
 * GPU, no /proc/stat, no NVML) is replaced by the engine's busy fraction,
 * the share of time it spent in steps: the best stand-in for how loaded
 * that executor is, where 0 would make it look idle whatever its work.
 */
#include "scheduler/core/sl_policy.h"

#include <stdlib.h>

typedef struct s_weighted {
    uint64_t next; /* tie-break rotation */
} s_weighted_t;

static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    s_weighted_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ERR_NOMEM;
    *state_p = st;
    return SL_OK;
}

static void s_fini(void *state)
{
    free(state);
}

static double s_weight(const sl_exec_t *e)
{
    double cpu = e->load.has_cpu_util ? e->load.cpu_util : e->load.busy;
    double gpu = e->load.has_gpu_util ? e->load.gpu_util : e->load.busy;
    double a = 1.0 / (cpu + 0.1), b = 1.0 / (gpu + 0.1);
    return (a < b ? a : b) * 100.0;
}

static size_t s_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now)
{
    s_weighted_t *st = state;
    size_t best = 0, start = (size_t)(st->next++ % n);
    double best_v = 1e300;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        double v = ((double)cands[i]->inflight + 1.0) / s_weight(cands[i]);
        if (v < best_v) {
            best_v = v;
            best = i;
        }
    }
    return best;
}

const sl_policy_ops_t sl_policy_weighted = {
    .name = "weighted",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_place,
    .fini = s_fini,
};
