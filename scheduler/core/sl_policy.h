/*
 * Placement policies: a const ops table plus a name (nginx-style modules).
 * The core calls place() with the executors that can take the job now (alive,
 * serving its model, with free credit) and dispatches to the one returned.
 * observe() sees every completion so a policy can learn.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include "scheduler/core/sl_core.h"

#define SL_POLICY_API_VERSION 1

typedef struct sl_policy_params {
    sl_core_t *core;      /* the core, for queries (read-only use) */
    uint64_t seed;        /* for randomized policies */
} sl_policy_params_t;

typedef struct sl_policy_ops {
    const char *name; /* chosen with --policy */
    int api_version;  /* SL_POLICY_API_VERSION it was built against */
    /* Create the policy's state. */
    sl_status_t (*init)(const sl_policy_params_t *params, void **state_p);
    /* Choose among n >= 1 candidates; return an index in [0, n). May set
     * job->predicted_ttft_us. */
    size_t (*place)(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n, sl_time_t now);
    /* A job completed on exec (optional). */
    void (*observe)(void *state, const sl_job_t *job, const sl_exec_t *exec,
                    const sl_job_result_t *res, sl_time_t now);
    /* An executor joined or was lost (optional). */
    void (*exec_change)(void *state, sl_exec_t *exec, bool joined);
    /* Free the state. */
    void (*fini)(void *state);
} sl_policy_ops_t;

extern const sl_policy_ops_t sl_policy_round_robin;
extern const sl_policy_ops_t sl_policy_random;
extern const sl_policy_ops_t sl_policy_least_outstanding;
extern const sl_policy_ops_t sl_policy_p2c;
extern const sl_policy_ops_t sl_policy_learned;
extern const sl_policy_ops_t sl_policy_kv_cost;
extern const sl_policy_ops_t sl_policy_scorer;
extern const sl_policy_ops_t sl_policy_cache_switch;
extern const sl_policy_ops_t sl_policy_weighted;
extern const sl_policy_ops_t sl_policy_session;

/* Find a built-in policy by name; NULL when unknown. */
const sl_policy_ops_t *sl_policy_find(const char *name);
/* Names of the built-in policies, NULL-terminated. */
const char *const *sl_policy_names(void);

#endif
