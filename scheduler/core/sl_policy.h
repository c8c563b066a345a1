/*
 * Placement policies: a const ops table plus a name (nginx-style modules).
 * The core calls place() with the executors that can take the job now (alive,
 * serving its model, with free credit) and dispatches to the one returned.
 * observe() sees every completion so a policy can learn.
 *
 * This header is what a built-in policy is built against: the ops table
 * and, through sl_core_view.h, the read-only job and executor records and
 * the queries a policy makes, nothing of the core's embedder API. The
 * built-in policies are listed in sl_policy_registry.h. A policy from a
 * shared library is built against <sluice/policy.h> instead and reaches the
 * core through the daemon's adapter (scheduler/sl_policy_plugin.c), given
 * as sl_core_cfg_t.policy_ops.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include "scheduler/core/sl_core_view.h"

#define SL_POLICY_API_VERSION 4

/* place(): hold the job rather than place it now (see sl_core_place_later). */
#define SL_POLICY_WAIT ((size_t)-1)

typedef struct sl_policy_params {
    sl_core_t *core; /* the core, for the queries of sl_core_view.h */
    uint64_t seed;   /* for randomized policies */
    void *arg;       /* the embedder's argument (sl_core_cfg_t.policy_arg); NULL for built-ins */
} sl_policy_params_t;

typedef struct sl_policy_ops {
    const char *name; /* chosen with --policy */
    int api_version;  /* SL_POLICY_API_VERSION it was built against */
    /* 0: place() sees every executor that can take the job. k > 0: the
     * policy samples, so where more than 2k executors have a free credit
     * the core offers the executors caching a prefix of the job and k drawn
     * at random from the free ones (those that can take it), not all: the
     * candidates then cost k, not the fleet. When none of those can take
     * the job, every free executor is offered. */
    uint32_t sample;
    /* Create the policy's state. */
    sl_status_t (*init)(const sl_policy_params_t *params, void **state_p);
    /* Choose among n >= 1 candidates; return an index in [0, n), or
     * SL_POLICY_WAIT to hold the job at the scheduler's head of line until
     * the next placement chance (a freed place, a new executor; counted as
     * placements_held). Any other value is counted as
     * policy_invalid_choices and the fallback, if any, or the first
     * candidate is taken. May set job->predicted_ttft_us. */
    size_t (*place)(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now);
    /* A job completed on exec (optional). */
    void (*observe)(void *state, const sl_job_t *job, const sl_exec_t *exec,
                    const sl_job_result_t *res, sl_time_t now);
    /* An executor joined or was lost (optional). */
    void (*exec_change)(void *state, sl_exec_t *exec, bool joined);
    /* Free the state. */
    void (*fini)(void *state);
} sl_policy_ops_t;

#endif
