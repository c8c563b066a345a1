/*
 * The ref backend: a real transformer (sl_model) over a paged KV cache with
 * prefix reuse (sl_kv), on CUDA when present, else on the CPU.
 *
 * Parameters it reads from sl_backend_params_t:
 *   model          preset name ("tiny", "small", "medium"); may be "" when
 *                  weights is given (the shape is then read from the file);
 *   weights        safetensors path with Llama tensor names, "" = synthetic;
 *   weight_format  "fp32", "bf16", "fp16", "int8", "int4" ("" or "auto":
 *                  fp32 on the CPU, bf16 on CUDA);
 *   device         "auto" (CUDA when a device is present), "cpu", "cuda";
 *   kv_blocks      pool size (0 = room for 8 full-context sequences);
 *   kv_block_tokens tokens per block (0 = the preset's);
 *   max_batch      sequences per step (rows per forward pass >= this);
 *   seed           synthetic weights; threads  CPU BLAS threads;
 *   kv_cb          stored / evicted block hashes.
 */
#ifndef SL_BACKEND_REF_H
#define SL_BACKEND_REF_H

#include "executor/ref/sl_model.h"
#include "executor/sl_backend.h"

extern const sl_backend_ops_t sl_backend_ref;

/* Resolve the model shape and build options the ref backend would use for
 * params (device and format resolved, pool sized), without building it. */
sl_status_t sl_backend_ref_resolve(const sl_backend_params_t *params, sl_model_cfg_t *cfg,
                                   sl_model_opts_t *opts);

/* Later pipeline stages (an executor whose model does not start at layer
 * 0 is given no jobs; it runs the steps the stage before it sends; also
 * the ops' stage_run). state is the backend's (sl_engine_backend). */
/* Run this stage's layers on one step: first release step->ended, reserve
 * KV for sequences not seen before (SL_ERR_AGAIN when the pool is full).
 * x_in [n_rows][width] host; a middle stage writes x_out [n_rows][width],
 * the last one the sampled tokens next[n_out]. */
sl_status_t sl_backend_ref_stage_run(void *state, const sl_stage_step_t *step, const float *x_in,
                                     float *x_out, uint32_t *next);
/* Release the KV of sequence id on this stage (nothing when it holds none). */
void sl_backend_ref_stage_end(void *state, uint64_t id);

#endif
