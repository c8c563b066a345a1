/*
 * An executor's step cost model, fitted from its own steps (see
 * sl_step_cost.c). Pure: the engine feeds it each step's make-up and
 * duration; the fitted coefficients go out with the heartbeat's load.
 */
#ifndef SL_STEP_COST_H
#define SL_STEP_COST_H

#include "common/sl_types.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_step_cost {
    double th[SL_STEP_COST_N];                /* coefficients, seconds per unit feature */
    double p[SL_STEP_COST_N][SL_STEP_COST_N]; /* inverse information (covariance) */
    uint64_t steps;                           /* steps learned */
    uint64_t prefill_steps;                   /* ...of which computed prompt tokens */
    uint64_t decode_steps;                    /* ...of which decoded */
    uint32_t agree_prefill;                   /* steps in a row computing prompts it predicted
                                                 within S_READY_TOL before learning them */
    uint32_t agree_decode;                    /* ...and decoding */
    bool ready;                               /* reported from now on (sl_step_cost_ready) */
    double drift;                             /* recent mean signed relative error */
    uint64_t resets;                          /* times the drift made it relearn */
} sl_step_cost_t;

/* One step's make-up as the model's features (sl_step_cost_index_t order):
 * prompts it computes (chunks of), their tokens, their attention pairs
 * (sum over the prompts of chunk x (tokens before it + chunk / 2)),
 * sequences decoding and the context tokens they read. */
void sl_step_cost_features(uint32_t n_prefill, uint64_t prefill_tokens, double attn_pairs,
                           uint32_t n_decode, uint64_t decode_ctx, double x[SL_STEP_COST_N]);
/* Start from nothing known. */
void sl_step_cost_init(sl_step_cost_t *c);
/* A step with features x took seconds. */
void sl_step_cost_learn(sl_step_cost_t *c, const double x[SL_STEP_COST_N], double seconds);
/* Enough steps of both kinds were seen for the fit to be reported. */
bool sl_step_cost_ready(const sl_step_cost_t *c);

#endif
