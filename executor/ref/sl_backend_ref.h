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

#endif
