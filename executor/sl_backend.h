/*
 * Executor backends: what turns a sequence's prompt into output tokens.
 *
 * The engine (sl_engine.c) owns batching; a backend only admits sequences
 * (reserving KV blocks and finding cached prefix blocks), runs one iteration
 * over a batch, and releases sequences. A backend is a const ops table plus a
 * name, chosen at start by --backend:
 *   sim   a calibrated timing model: produces no real tokens, reports the
 *         time a GPU would have spent (the engine waits that long);
 *   null  completes every step at once (control-plane benchmarks);
 *   ref   a real transformer on CUDA or CPU (executor/ref/).
 * The engine runs on one thread; backends are called only from it.
 */
#ifndef SL_BACKEND_H
#define SL_BACKEND_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_clock.h"

/* Coefficients of the sim backend's timing model (see sl_backend_sim.c). */
typedef struct sl_sim_cfg {
    double prefill_base_us;          /* fixed cost of an iteration that has prefill work */
    double prefill_us_per_token;     /* per uncached prompt token */
    double prefill_us_per_token_ctx; /* attention: per token x context token (quadratic term) */
    double decode_base_us;           /* fixed cost of one decode step (weights read once) */
    double decode_us_per_seq;        /* per sequence in the batch */
    double decode_us_per_kv_token;   /* per KV token read by attention, summed over the batch */
    double speed;                    /* divides every time: 2 = twice as fast */
    int64_t kv_capacity_blocks;      /* prefix-cache capacity in blocks */
    int64_t max_context; /* prompt + new tokens of one sequence at most; 0 = unlimited */
    double fail_share;   /* fault injection: share of jobs failed at admission */
} sl_sim_cfg_t;

/* Called by a backend when a full KV block is cached or dropped. */
typedef struct sl_backend_kv_cb {
    void (*stored)(void *arg, uint64_t block_hash);  /* a block became reusable */
    void (*evicted)(void *arg, uint64_t block_hash); /* a block is gone */
    void *arg;                                       /* passed to both */
} sl_backend_kv_cb_t;

/* One forward step of a pipeline stage, as the first stage hands it on:
 * the step's rows (each a token position of one sequence slot), which rows
 * sample, the sequences of the slots, and the sequences ended since the
 * previous step (later stages release their KV). */
typedef struct sl_stage_seq {
    uint64_t id;       /* the sequence (sl_seq_t.id) */
    uint32_t capacity; /* its prompt + new tokens: KV positions to reserve */
    uint32_t pad;      /* zero */
} sl_stage_seq_t;

typedef struct sl_stage_step {
    uint32_t n_rows;            /* rows */
    uint32_t n_seqs;            /* sequence slots */
    uint32_t n_out;             /* rows that sample */
    uint32_t n_ended;           /* sequences ended before this step */
    const sl_stage_seq_t *seqs; /* [n_seqs] */
    const uint32_t *row_seq;    /* [n_rows] slot of each row */
    const uint32_t *pos;        /* [n_rows] position of each row */
    const uint32_t *out_rows;   /* [n_out] */
    const uint64_t *ended;      /* [n_ended] */
} sl_stage_step_t;

/* How a first pipeline stage reaches the rest of its chain: forward runs
 * the later stages on the step (x: [n_rows][width] fp32, the residual
 * stream after this stage) and returns the sampled token of each out row
 * in next[n_out]; an error fails the step's sequences. end notes a
 * sequence released here, for the later stages to release with the next
 * step. NULL forward: the backend holds the whole model. */
typedef struct sl_backend_stage {
    sl_status_t (*forward)(void *arg, const sl_stage_step_t *step, const float *x, uint32_t *next);
    void (*end)(void *arg, uint64_t id);
    void *arg; /* passed to both */
} sl_backend_stage_t;

/* What a backend holds of a model split by layers (sl_backend_ops_t.stage_info). */
typedef struct sl_backend_stage_info {
    uint32_t layer_first;  /* first layer held */
    uint32_t layer_count;  /* layers held */
    uint32_t layers_total; /* layers of the whole model */
    uint32_t width;        /* floats per row of the residual stream */
    void *ring;            /* the receive ring after the KV pool's blocks (NULL: none) */
    size_t ring_bytes;     /* its bytes */
} sl_backend_stage_info_t;

/* Everything a backend is created from. Strings are borrowed for create only. */
typedef struct sl_backend_params {
    const char *model;         /* model preset name ("tiny", "small", ...) or "" */
    const char *weights;       /* safetensors path, or "" for synthetic weights */
    const char *weight_format; /* "fp32", "bf16", "fp16", "int8", "int4" */
    const char *device;        /* "auto", "cpu" or "cuda" */
    uint32_t kv_blocks;        /* KV pool size in blocks (0 = backend default) */
    uint32_t kv_block_tokens;  /* tokens per KV block */
    uint32_t max_batch;        /* sequences in one step at most */
    uint64_t seed;             /* synthetic weights and any sampling */
    int threads;               /* CPU threads for compute (0 = default) */
    const sl_sim_cfg_t *sim;   /* sim backend coefficients */
    sl_backend_kv_cb_t kv_cb;  /* KV events (may have NULL functions) */
    uint32_t layer_first;      /* pipeline stage: first layer held (ref; 0 = from the first) */
    uint32_t layer_count;      /* layers held (0 = the whole model from layer_first) */
    sl_backend_stage_t stage;  /* first stage of a chain: the later stages */
    size_t stage_ring_bytes;   /* a stage's receive ring, allocated after its KV pool */
} sl_backend_params_t;

/* One sequence (job) inside an engine. The engine owns it; the backend
 * fills the progress fields and may hang its own state on backend_state. */
typedef struct sl_seq {
    /* What a step reads and writes comes first, in one cache line where
     * the structure is aligned to one; what admission alone reads, and the
     * error text, after it. */
    uint64_t id;             /* engine-unique id (the scheduler's job_seq) */
    uint32_t prompt_len;     /* prompt tokens (>= ids given) */
    uint32_t max_new_tokens; /* generation stops here */
    int interactive;         /* 1 for the interactive class */

    /* progress, written by the backend */
    uint32_t cached_tokens; /* prompt tokens found in the prefix cache at admit */
    uint32_t prefill_done;  /* uncached prompt tokens processed so far (chunked prefill) */
    uint32_t prefill_chunk; /* engine: prompt tokens to process this step (0 = all left) */
    uint32_t n_out;         /* tokens produced so far */
    bool prefilled;         /* prompt processed; first token produced */
    bool done;              /* generation finished (max tokens or end of sequence) */
    uint32_t *out;          /* output tokens, capacity max_new_tokens (engine-allocated) */
    void *backend_state;    /* backend's own per-sequence state */

    const uint32_t *prompt;       /* prompt token ids, or NULL for trace replay */
    const uint64_t *block_hashes; /* trace-replay prefix block hashes, or NULL */
    uint32_t n_block_hashes;      /* entries of block_hashes */
    uint32_t hash_block_tokens;   /* tokens per entry of block_hashes */
    char error[160];              /* why admit or step failed it ("" = say the status only) */
} sl_seq_t;

/* Uncached prompt tokens of seq still to compute (chunked prefill). */
static inline uint32_t sl_seq_prefill_left(const sl_seq_t *seq)
{
    uint32_t total =
        seq->prompt_len > seq->cached_tokens ? seq->prompt_len - seq->cached_tokens : 0;
    return total > seq->prefill_done ? total - seq->prefill_done : 0;
}

/* Prompt tokens of seq its next step computes: the chunk the engine gave
 * it (chunked prefill), or all that is left. */
static inline uint32_t sl_seq_prefill_chunk(const sl_seq_t *seq)
{
    uint32_t left = sl_seq_prefill_left(seq);
    return seq->prefill_chunk && seq->prefill_chunk < left ? seq->prefill_chunk : left;
}

/* KV occupancy reported in heartbeats; used + free is the pool's capacity,
 * which the executor advertises in its hello with the block size. */
typedef struct sl_backend_load {
    uint32_t kv_blocks_used;  /* blocks held by running sequences or cached */
    uint32_t kv_blocks_free;  /* blocks available now */
    uint32_t kv_block_tokens; /* tokens per block (0 = the backend keeps no KV) */
} sl_backend_load_t;

/* What one sequence may be at most; the executor declares it in its hello
 * so that the scheduler never sends a job the backend would refuse. */
typedef struct sl_backend_limits {
    uint32_t max_context_tokens; /* prompt + new tokens; 0 = unlimited */
    uint32_t vocab_size;         /* prompt token ids are below this; 0 = unlimited */
} sl_backend_limits_t;

typedef struct sl_backend_ops {
    const char *name;     /* --backend value */
    bool chunked_prefill; /* step honours seq->prefill_chunk */
    bool instant_step;    /* step returns at once (modelled cost or no work): the executor
                             needs no link thread to keep heartbeating through it */
    /* Create the backend; *state_p owns it on success. */
    sl_status_t (*create)(const sl_backend_params_t *params, void **state_p);
    /* Destroy the backend; every sequence must be released first. */
    void (*destroy)(void *state);
    /* Reserve what seq needs and look up its cached prefix (sets
     * cached_tokens). SL_ERR_AGAIN when there is no room now (the engine
     * retries after a release); other errors fail the job. */
    sl_status_t (*admit)(void *state, sl_seq_t *seq);
    /* One iteration over the batch: sequences with !prefilled get their
     * prompt processed (with chunked_prefill, prefill_chunk tokens of it,
     * the first token only once all of it is done) and their first token;
     * the others get one more token.
     * Appends to seq->out, sets prefilled/done. *cost_p is the time the
     * engine must still wait before the tokens count as produced (the sim
     * model's modelled time; 0 for backends that really computed). */
    sl_status_t (*step)(void *state, sl_seq_t *const *seqs, size_t n, sl_time_t *cost_p);
    /* Optional, for a backend whose costs are modelled: the cost step would
     * return for these sequences (all prefilled) once they have had `ahead`
     * more decode steps, changing nothing. Lets the engine plan a run of
     * steps (sl_engine_cfg_t run_steps). NULL: none. */
    sl_time_t (*decode_cost)(void *state, sl_seq_t *const *seqs, size_t n, uint32_t ahead);
    /* Release a sequence (finished or canceled): free its blocks, keeping full
     * prompt blocks cached for reuse where the backend caches. */
    void (*release)(void *state, sl_seq_t *seq);
    /* Current KV occupancy. */
    void (*load)(void *state, sl_backend_load_t *load);
    /* The limits of one sequence (NULL: none). admit refuses what exceeds
     * them, with the reason in seq->error. */
    void (*limits)(void *state, sl_backend_limits_t *limits);

    /* The data plane. A backend that keeps its KV tensors in one pool of
     * equal blocks gives kv_pool and kv_table (the executor registers the pool
     * with the transport once and moves blocks by id); one that keeps none
     * (sim, null) leaves them NULL and the executor moves a stand-in region
     * sized like the KV it models. */
    /* The pool: its base, its bytes and the bytes of one block (all layers
     * of block b at base + b * block_bytes); *device_p says it is CUDA device
     * memory. NULL: no pool. */
    void *(*kv_pool)(void *state, size_t *bytes_p, size_t *block_bytes_p, bool *device_p);
    /* The block table of an admitted sequence: *n_p block ids, one per
     * block of positions. NULL: no tables. */
    const uint32_t *(*kv_table)(void *state, const sl_seq_t *seq, uint32_t *n_p);
    /* A peer wrote the KV of positions [0, prompt_len + n_out - 1) into the
     * blocks of the admitted seq, whose out[0..n_out) the engine has set
     * (n_out >= 1): it is prefilled, and its next step decodes. Prompt
     * blocks are published in the prefix cache as after a prefill. With
     * n_out == 0 a peer wrote only the leading cached_tokens positions (a
     * prefix fetch; the engine set cached_tokens): the rest of the prompt
     * is computed here. */
    sl_status_t (*kv_import)(void *state, sl_seq_t *seq);
    /* Hold the blocks of the longest cached prefix of hashes[0..n) so a
     * peer can read them: *ids_p / *n_found_p are their ids, *hold_p what
     * kv_unhold releases. SL_ERR_NOT_FOUND when none is cached. NULL: none. */
    sl_status_t (*kv_hold)(void *state, const uint64_t *hashes, uint32_t n, void **hold_p,
                           const uint32_t **ids_p, uint32_t *n_found_p);
    void (*kv_unhold)(void *state, void *hold);

    /* Pipeline stages (NULL: the backend holds whole models only). */
    void (*stage_info)(void *state, sl_backend_stage_info_t *info);
    /* A later stage runs its layers on a step the stage before sent. */
    sl_status_t (*stage_run)(void *state, const sl_stage_step_t *step, const float *x_in,
                             float *x_out, uint32_t *next);
} sl_backend_ops_t;

extern const sl_backend_ops_t sl_backend_sim;
extern const sl_backend_ops_t sl_backend_null;

/* Find a built-in backend by name; NULL when unknown. */
const sl_backend_ops_t *sl_backend_find(const char *name);
/* The names of the backends built in, ", "-separated (static storage). */
const char *sl_backend_names(void);

#endif
