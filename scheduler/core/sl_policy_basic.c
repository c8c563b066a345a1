/*
 * The load-only placement policies: round-robin, random, least-outstanding
 * (nginx least_conn: fewest jobs in flight, ties broken round-robin so equal
 * executors share evenly) and power-of-two-choices (Mitzenmacher: two random
 * candidates, the less loaded wins; near least-outstanding's balance with
 * O(1) work and no herding on stale load). They ignore prefix caches and
 * speeds; they are the baselines the cache-aware and learned policies beat.
 */
#include "scheduler/core/sl_policy.h"
#include "common/sl_rand.h"

#include <stdlib.h>
#include <string.h>

typedef struct s_basic {
    uint64_t next;  /* round-robin cursor */
    sl_rand_t rand; /* random choices */
} s_basic_t;

static sl_status_t s_init(const sl_policy_params_t *params, void **state_p)
{
    s_basic_t *st = calloc(1, sizeof(*st));
    if (!st)
        return SL_ERR_NOMEM;
    sl_rand_seed(&st->rand, params->seed);
    *state_p = st;
    return SL_OK;
}

static void s_fini(void *state)
{
    free(state);
}

/* Round-robin over executor indices, so the order is stable while the
 * candidate set changes with credits. */
static size_t s_rr_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n,
                         sl_time_t now)
{
    s_basic_t *st = state;
    size_t best = 0;
    uint64_t best_d = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(cands[i]->index - st->next) & 0xffffffffu;
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    st->next = cands[best]->index + 1u;
    return best;
}

static size_t s_random_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n,
                             sl_time_t now)
{
    s_basic_t *st = state;
    return (size_t)sl_rand_below(&st->rand, n);
}

/* Outstanding work relative to capacity, so a bigger executor takes more. */
static double s_outstanding(const sl_exec_t *e)
{
    return (double)e->inflight / (double)(e->credits ? e->credits : 1);
}

static size_t s_lo_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n,
                         sl_time_t now)
{
    s_basic_t *st = state;
    size_t best = 0, start = (size_t)(st->next++ % n);
    double best_v = 1e300;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        double v = s_outstanding(cands[i]);
        if (v < best_v) {
            best_v = v;
            best = i;
        }
    }
    return best;
}

static size_t s_p2c_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n,
                          sl_time_t now)
{
    s_basic_t *st = state;
    if (n == 1)
        return 0;
    size_t a = (size_t)sl_rand_below(&st->rand, n);
    size_t b = (size_t)sl_rand_below(&st->rand, n - 1);
    if (b >= a)
        b++;
    double va = s_outstanding(cands[a]), vb = s_outstanding(cands[b]);
    if (va != vb)
        return va < vb ? a : b;
    return cands[a]->load.queued_tokens <= cands[b]->load.queued_tokens ? a : b;
}

const sl_policy_ops_t sl_policy_round_robin = {
    .name = "round-robin",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_rr_place,
    .fini = s_fini,
};
const sl_policy_ops_t sl_policy_random = {
    .name = "random",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_random_place,
    .fini = s_fini,
};
const sl_policy_ops_t sl_policy_least_outstanding = {
    .name = "least-outstanding",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_lo_place,
    .fini = s_fini,
};
const sl_policy_ops_t sl_policy_p2c = {
    .name = "p2c",
    .api_version = SL_POLICY_API_VERSION,
    .init = s_init,
    .place = s_p2c_place,
    .fini = s_fini,
};
