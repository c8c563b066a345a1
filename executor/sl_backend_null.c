/*
 * The null backend: every job completes in its first step, at no cost, with
 * max_new_tokens placeholder tokens. It exists to measure the control plane
 * (scheduler, protocol, executor loop) without any model time.
 */
#include "executor/sl_backend.h"

#include <stdlib.h>
#include <string.h>

static int s_state;

static sl_status_t s_create(const sl_backend_params_t *p, void **state_p)
{
    *state_p = &s_state;
    return SL_OK;
}

static void s_destroy(void *state) {}

static sl_status_t s_admit(void *state, sl_seq_t *seq)
{
    seq->cached_tokens = 0;
    return SL_OK;
}

static sl_status_t s_step(void *state, sl_seq_t *const *seqs, size_t n, sl_time_t *cost_p)
{
    for (size_t i = 0; i < n; i++) {
        sl_seq_t *seq = seqs[i];
        for (uint32_t k = seq->n_out; k < seq->max_new_tokens; k++)
            seq->out[k] = k;
        seq->n_out = seq->max_new_tokens;
        seq->prefilled = seq->done = true;
    }
    *cost_p = 0;
    return SL_OK;
}

static void s_release(void *state, sl_seq_t *seq) {}

static void s_load(void *state, sl_backend_load_t *load)
{
    load->kv_blocks_used = 0;
    load->kv_blocks_free = 0;
    load->kv_block_tokens = 0;
}

const sl_backend_ops_t sl_backend_null = {
    .name = "null",
    .instant_step = true,
    .create = s_create,
    .destroy = s_destroy,
    .admit = s_admit,
    .step = s_step,
    .release = s_release,
    .load = s_load,
};
