/*
 * Sluice placement policies as plugins: the interface a shared library
 * implements so that `sluice-scheduler --policy-path lib.so` places jobs
 * with it.
 *
 * A plugin exports one function, sl_policy_plugin_v1(), returning its
 * table. The scheduler loads the library at start, checks the table's abi
 * field against SL_POLICY_PLUGIN_ABI, and then, for every job it places,
 * calls place() with the job and the executors that can take it now, each
 * described by a plain record (its name, its load, the prefix blocks of
 * the job it caches, the learned model's predictions for the job there).
 * The records are copies, valid during the call only: a plugin reads
 * nothing of the scheduler's memory and links against nothing of it.
 *
 * A choice outside [0, n) is not trusted: the job is placed by the
 * built-in policy named by --policy instead, and the scheduler's counter
 * policy_invalid_choices counts it. The plugin runs on the scheduler's
 * thread: place() must not block.
 *
 * Versioning: a change to any record or to the table's layout raises
 * SL_POLICY_PLUGIN_ABI; the scheduler refuses a table built for another.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SL_POLICY_PLUGIN_ABI 1

/* The job being placed. */
typedef struct sl_policy_plugin_job {
    const char *id;          /* the client's idempotency id */
    const char *tenant;      /* "" when none */
    const char *model;       /* "" when none */
    int priority;            /* 0 interactive, 1 batch */
    uint32_t prompt_tokens;  /* prompt length */
    uint32_t max_new_tokens; /* output budget */
    double ttft_left_s;      /* time left before its first-token deadline; 0 = none */
} sl_policy_plugin_job_t;

/* One executor that can take the job now. */
typedef struct sl_policy_plugin_exec {
    const char *name;        /* its unique name */
    uint32_t inflight;       /* jobs dispatched to it and not completed */
    uint32_t credits;        /* jobs it may have in flight at most */
    uint64_t queued_tokens;  /* prompt and output tokens of its in-flight jobs */
    uint32_t cached_blocks;  /* leading blocks of the job's prompt it caches */
    double speed;            /* its declared speed hint (1 = nominal) */
    int prediction_valid;    /* the learned model predicted the job here */
    double predicted_ttft_s; /* its predicted time to first token here */
    double predicted_tpot_s; /* its predicted time per output token here */
} sl_policy_plugin_exec_t;

/* How a job placed by the plugin ended. */
typedef struct sl_policy_plugin_result {
    const char *executor; /* where it ran */
    int ok;               /* 1: it completed */
    uint32_t output_tokens;
    double ttft_s; /* executor-side time to first token */
    double e2e_s;  /* executor-side time to its last token */
} sl_policy_plugin_result_t;

/* The table a plugin returns. */
typedef struct sl_policy_plugin {
    uint32_t abi;     /* SL_POLICY_PLUGIN_ABI it was built against */
    const char *name; /* shown in logs and `sluice status` */
    /* Create the plugin's state; 0 on success. seed: for randomized ones. */
    int (*init)(uint64_t seed, void **state_p);
    /* Choose one of n >= 1 candidates: an index in [0, n). */
    size_t (*place)(void *state, const sl_policy_plugin_job_t *job,
                    const sl_policy_plugin_exec_t *cands, size_t n);
    /* A job ended (optional: NULL). */
    void (*observe)(void *state, const sl_policy_plugin_job_t *job,
                    const sl_policy_plugin_result_t *res);
    /* Free the state (optional: NULL). */
    void (*fini)(void *state);
} sl_policy_plugin_t;

/* The one symbol a plugin exports. */
const sl_policy_plugin_t *sl_policy_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif
