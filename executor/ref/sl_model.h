/*
 * The ref model: a decoder-only transformer of the Llama family (RMSNorm,
 * rotary positions, grouped-query attention over a paged KV cache, SwiGLU
 * feed-forward), running on the CPU or a CUDA device through sl_k_*.
 *
 * The model owns its weights, its activations and the KV pool (indexed by
 * block id; which block belongs to whom is the KV manager's business). One
 * forward pass processes any mix of rows (prompt tokens of several sequences,
 * one decode token of others) and returns the greedy next token of the rows
 * asked for.
 *
 * A pipeline stage holds layers [layer_first, layer_first + layer_count) of
 * the model only (opts): the first stage also embeds tokens, the last one
 * also holds the final norm and the output layer; each keeps the KV of its
 * own layers. A stage takes its residual stream in from the stage before
 * it and hands it on (sl_model_forward_stage); chained stages compute
 * exactly what the whole model computes (same weights per tensor name).
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <sluice/kernels.h>
#include <sluice/status.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct sl_model sl_model_t; /* weights, activations and KV pool on one device */

/* Shape of a model. */
typedef struct sl_model_cfg {
    uint32_t vocab;        /* vocabulary size */
    uint32_t dim;          /* width of the residual stream */
    uint32_t n_layers;     /* transformer blocks */
    uint32_t n_heads;      /* query heads (head_dim = dim / n_heads) */
    uint32_t n_kv_heads;   /* KV heads (divides n_heads) */
    uint32_t ffn_dim;      /* hidden width of the feed-forward */
    uint32_t block_tokens; /* tokens per KV block */
    uint32_t max_ctx;      /* longest sequence (prompt + output) */
    float rope_theta;      /* rotary base */
    float norm_eps;        /* RMSNorm epsilon */
} sl_model_cfg_t;

/* How a model is built. */
typedef struct sl_model_opts {
    const char *weights;  /* safetensors path, or NULL / "" for synthetic weights */
    sl_k_dtype_t dtype;   /* format of the linear layers */
    sl_k_device_t device; /* where everything lives */
    uint64_t seed;        /* synthetic weights */
    uint32_t kv_blocks;   /* KV pool size in blocks */
    uint32_t max_rows;    /* rows per forward pass at most (0 = 256) */
    int threads;          /* CPU BLAS threads (0 = library default) */
    uint32_t layer_first; /* pipeline stage: first layer held (0 for the whole model) */
    uint32_t layer_count; /* layers held from layer_first (0 = through the last one) */
    size_t pool_extra;    /* bytes after the KV blocks in the pool's allocation (a pipeline
                             stage's receive ring, registered with the pool) */
} sl_model_opts_t;

/* One forward pass. Row r is token tokens[r] at position pos[r] of sequence
 * slot row_seq[r]; every position up to pos[r] of that slot must have its KV
 * in the slot's blocks already or be a row of this pass. */
typedef struct sl_model_batch {
    uint32_t n_rows;               /* rows to process */
    const uint32_t *tokens;        /* token id of each row */
    const uint32_t *pos;           /* position of each row */
    const uint32_t *row_seq;       /* sequence slot of each row */
    uint32_t n_seqs;               /* sequence slots */
    const uint32_t *const *tables; /* block table of each slot */
    const uint32_t *n_table;       /* entries of each table */
    uint32_t n_out;                /* rows whose next token is wanted */
    const uint32_t *out_rows;      /* those rows, each < n_rows */
} sl_model_batch_t;

/* Fill cfg with a named preset: "tiny" (tests), "small" (CPU demo),
 * "medium" (GPU demo). SL_ERR_NOT_FOUND for an unknown name (logged). */
sl_status_t sl_model_preset(const char *name, sl_model_cfg_t *cfg);
/* Parse "fp32", "bf16", "fp16", "int8", "int4"; SL_ERR_INVALID otherwise (logged). */
sl_status_t sl_model_dtype_parse(const char *name, sl_k_dtype_t *dtype_p);
/* Name of a weight format ("fp32", ...). */
const char *sl_model_dtype_name(sl_k_dtype_t dtype);

/* Shape of the model stored in a safetensors file with Llama tensor names:
 * vocab, width, layers and feed-forward width from the shapes; heads from the
 * metadata "num_attention_heads" (else head_dim 64); KV heads from the k_proj
 * shape; max_ctx from "max_position_embeddings" (else 2048); block_tokens 16. */
sl_status_t sl_model_cfg_from_file(const char *path, sl_model_cfg_t *cfg);

/* Build a model; *model_p owns it. Weights are synthetic (from opts->seed,
 * scaled so activations stay finite) or read from opts->weights, where a
 * missing or mis-shaped tensor is a logged SL_ERR_NOT_FOUND / SL_ERR_INVALID.
 * SL_ERR_UNSUPPORTED when the device is absent. */
sl_status_t sl_model_create(const sl_model_cfg_t *cfg, const sl_model_opts_t *opts,
                            sl_model_t **model_p);
/* Free everything (NULL-safe, sets *model_p = NULL). */
void sl_model_destroy(sl_model_t **model_p);
/* The model's shape. */
const sl_model_cfg_t *sl_model_cfg(const sl_model_t *model);
/* The kernels context (device) of the model. */
sl_k_ctx_h sl_model_ctx(const sl_model_t *model);
/* Rows per forward pass at most. */
uint32_t sl_model_max_rows(const sl_model_t *model);

/* Run one forward pass: writes the KV of every row into its slot's blocks and
 * the greedy next token of each out row into next[n_out] (host memory);
 * logits, when not NULL, receives their logits [n_out][vocab] (host). */
sl_status_t sl_model_forward(sl_model_t *model, const sl_model_batch_t *batch, uint32_t *next,
                             float *logits);

/* Layers held: [*first_p, *first_p + *count_p) of cfg->n_layers. */
void sl_model_layers(const sl_model_t *model, uint32_t *first_p, uint32_t *count_p);
/* Whether the model embeds tokens (first stage) and samples (last stage). */
bool sl_model_is_first(const sl_model_t *model);
bool sl_model_is_last(const sl_model_t *model);

/* One forward pass of a stage. x_in (host, [n_rows][dim] fp32) is the
 * residual stream from the stage before; NULL on the first stage, which
 * embeds batch->tokens. On a stage that is not the last, x_out (host,
 * [n_rows][dim]) receives the stream after its layers and next / logits are
 * not written (batch->n_out is ignored); on the last stage it is as
 * sl_model_forward. SL_ERR_INVALID when x_in is missing on a later stage or
 * x_out on an earlier one (logged). */
sl_status_t sl_model_forward_stage(sl_model_t *model, const sl_model_batch_t *batch,
                                   const float *x_in, float *x_out, uint32_t *next, float *logits);

/* Generate max_new greedy tokens after a prompt, the plain way (whole prompt
 * in passes of max_rows rows, then one token at a time), using blocks
 * 0.. of the model's own pool: the reference the backend is checked against.
 * logits, when not NULL, receives the logits of each generated token
 * [max_new][vocab]. Do not mix with a KV manager on the same model. */
sl_status_t sl_model_generate(sl_model_t *model, const uint32_t *prompt, uint32_t n_prompt,
                              uint32_t max_new, uint32_t *out, float *logits);

/* The KV pool (device memory) and the bytes of one block: block b spans all
 * layers held at pool + b * block_bytes, so sl_k_kv_pack moves whole blocks. */
void *sl_model_kv_pool(const sl_model_t *model, size_t *block_bytes_p);
/* The opts->pool_extra bytes right after the pool's blocks (NULL when 0). */
void *sl_model_pool_extra(const sl_model_t *model, size_t *bytes_p);

/* Write the synthetic fp32 weights of (cfg, seed) to a safetensors file with
 * Llama tensor names and head counts in the metadata. */
sl_status_t sl_model_write_synthetic(const sl_model_cfg_t *cfg, uint64_t seed, const char *path);

#endif
