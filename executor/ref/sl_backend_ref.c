/*
 * The ref backend: admit, step, release over sl_model and sl_kv.
 *
 * admit reserves every KV block a sequence can need (prompt plus
 * max_new_tokens) and reuses the blocks of its longest cached prefix, so
 * steps never run out of KV. step packs the batch into forward passes of at
 * most max_rows rows: the uncomputed prompt tokens of new sequences (a long
 * prompt is split over passes: chunked prefill) and one row per running
 * sequence, then samples greedily from each sequence's last row. Since the
 * model computes every row the same way whatever surrounds it, a sequence's
 * tokens do not depend on its batch, its chunking or its cached prefix (on
 * the CPU exactly; see sl_model.c).
 *
 * Trace replay (prompt == NULL with block hashes): the prompt's token ids
 * are drawn from generators seeded by the block hashes, so equal hash chains
 * give equal prompts; when the trace's block size equals the pool's, the
 * trace's own hashes name the blocks, so the scheduler's index and the
 * executor's cache agree.
 *
 * Pipeline stages (params layer_first / layer_count): the first stage is
 * driven by the engine as usual; after its layers it hands each pass's
 * residual stream to params->stage, which runs the later stages and returns
 * the sampled tokens. A later stage is never given jobs: its executor calls
 * sl_backend_ref_stage_run for each step the stage before it sends, which
 * reserves KV for the sequences it sees first (keyed by sequence id) and
 * releases the ones the first stage ended. Stages do not reuse cached
 * prefixes (each stage's cache would have to hold the same prefixes, and
 * nothing keeps them in step): every stage computes every prompt token.
 *
 * Rejected: preempting sequences when the pool runs dry (see sl_kv.c);
 * separate prefill and decode passes (two passes per step instead of one
 * whenever prompts arrive while others decode).
 */
#include "executor/ref/sl_backend_ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"
#include "common/sl_map.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_kv.h"

typedef struct s_ref {
    sl_model_t *model;  /* weights, activations, KV tensors */
    sl_kv_t *kv;        /* block bookkeeping and prefix cache */
    sl_model_cfg_t cfg; /* model shape */
    uint32_t max_rows;  /* rows per forward pass */
    /* staging of one pass, max_rows entries each */
    uint32_t *tokens;        /* token of each row */
    uint32_t *pos;           /* position of each row */
    uint32_t *row_seq;       /* slot of each row */
    uint32_t *out_rows;      /* rows that sample */
    uint32_t *next;          /* sampled tokens */
    const uint32_t **tables; /* block table of each slot */
    uint32_t *n_table;       /* its length */
    sl_seq_t **out_seq;      /* sequence of each sampling row */
    /* pipeline stage */
    bool staged;              /* the model is part of a chain of stages */
    bool first, last;         /* embeds tokens / samples */
    sl_backend_stage_t stage; /* first stage: the rest of the chain */
    float *hidden;            /* [max_rows][dim] residual stream handed on (host) */
    sl_stage_seq_t *slots;    /* [max_rows] sequence of each slot of a pass */
    sl_map_t later;           /* later stage: sequence id + 1 -> sl_kv_seq_t */
} s_ref_t;

typedef struct s_seq_state {
    sl_kv_seq_t *kv;   /* block table */
    uint32_t *prompt;  /* synthesized prompt (trace replay), else NULL */
    uint32_t computed; /* prompt tokens whose KV is in the cache */
} s_seq_state_t;

sl_status_t sl_backend_ref_resolve(const sl_backend_params_t *p, sl_model_cfg_t *cfg,
                                   sl_model_opts_t *opts)
{
    sl_model_cfg_t c;
    sl_model_opts_t o;
    memset(&o, 0, sizeof(o));
    const char *model = p->model ? p->model : "";
    const char *weights = p->weights ? p->weights : "";
    sl_status_t st;
    if (model[0]) {
        /* an unknown preset is a bad value of --model, like any other */
        if ((st = sl_model_preset(model, &c)) == SL_ERR_NOT_FOUND)
            st = SL_ERR_INVALID;
    } else if (weights[0])
        st = sl_model_cfg_from_file(weights, &c);
    else {
        SL_ERROR("ref backend: give a model preset (--model tiny|small|medium) or a weight file");
        st = SL_ERR_INVALID;
    }
    if (st != SL_OK)
        return st;
    if (p->kv_block_tokens)
        c.block_tokens = p->kv_block_tokens;

    const char *dev = p->device && p->device[0] ? p->device : "auto";
    if (!strcmp(dev, "cpu")) {
        o.device = SL_K_CPU;
    } else if (!strcmp(dev, "cuda") || !strcmp(dev, "gpu")) {
        if (!sl_k_cuda_available()) {
            SL_ERROR("ref backend: device cuda asked for, but no CUDA device is present%s",
#ifdef SLUICE_HAVE_CUDA
                     ""
#else
                     " (this build has no CUDA)"
#endif
            );
            return SL_ERR_UNSUPPORTED;
        }
        o.device = SL_K_CUDA;
    } else if (!strcmp(dev, "auto")) {
        o.device = sl_k_cuda_available() ? SL_K_CUDA : SL_K_CPU;
    } else {
        SL_ERROR("ref backend: unknown device '%s' (auto, cpu, cuda)", dev);
        return SL_ERR_INVALID;
    }
    const char *fmt = p->weight_format && p->weight_format[0] ? p->weight_format : "auto";
    if (!strcmp(fmt, "auto"))
        o.dtype = o.device == SL_K_CUDA ? SL_K_BF16 : SL_K_F32;
    else if ((st = sl_model_dtype_parse(fmt, &o.dtype)) != SL_OK)
        return st;
    uint32_t seq_blocks = (c.max_ctx + c.block_tokens - 1) / c.block_tokens;
    o.kv_blocks = p->kv_blocks ? p->kv_blocks : 8 * seq_blocks;
    o.max_rows = p->max_batch > 256 ? p->max_batch : 256;
    o.weights = weights;
    o.seed = p->seed;
    o.threads = p->threads;
    o.layer_first = p->layer_first;
    o.layer_count = p->layer_count;
    o.pool_extra = p->stage_ring_bytes;
    *cfg = c;
    *opts = o;
    return SL_OK;
}

static void s_destroy(void *state);

static sl_status_t s_create(const sl_backend_params_t *params, void **state_p)
{
    sl_model_cfg_t cfg;
    sl_model_opts_t opts;
    sl_status_t st = sl_backend_ref_resolve(params, &cfg, &opts);
    if (st != SL_OK)
        return st;
    s_ref_t *r = calloc(1, sizeof(*r));
    if (!r) {
        SL_ERROR("ref backend: out of memory");
        return SL_ERR_NOMEM;
    }
    if ((st = sl_model_create(&cfg, &opts, &r->model)) != SL_OK)
        goto err_destroy;
    r->cfg = *sl_model_cfg(r->model);
    r->max_rows = sl_model_max_rows(r->model);
    sl_kv_cfg_t kc = {opts.kv_blocks, r->cfg.block_tokens, params->kv_cb};
    if ((st = sl_kv_create(&kc, &r->kv)) != SL_OK)
        goto err_destroy;
    uint32_t first, count;
    sl_model_layers(r->model, &first, &count);
    r->staged = count != r->cfg.n_layers;
    r->first = sl_model_is_first(r->model);
    r->last = sl_model_is_last(r->model);
    r->stage = params->stage;
    sl_map_init(&r->later);
    size_t n = r->max_rows;
    if (r->staged) {
        r->hidden = malloc(n * r->cfg.dim * sizeof(float));
        r->slots = calloc(n, sizeof(*r->slots));
        if (!r->hidden || !r->slots) {
            SL_ERROR("ref backend: out of memory");
            st = SL_ERR_NOMEM;
            goto err_destroy;
        }
    }
    r->tokens = malloc(n * 4), r->pos = malloc(n * 4), r->row_seq = malloc(n * 4);
    r->out_rows = malloc(n * 4), r->next = malloc(n * 4), r->n_table = malloc(n * 4);
    r->tables = malloc(n * sizeof(*r->tables)), r->out_seq = malloc(n * sizeof(*r->out_seq));
    if (!r->tokens || !r->pos || !r->row_seq || !r->out_rows || !r->next || !r->n_table ||
        !r->tables || !r->out_seq) {
        SL_ERROR("ref backend: out of memory");
        st = SL_ERR_NOMEM;
        goto err_destroy;
    }
    *state_p = r;
    return SL_OK;

err_destroy:
    s_destroy(r);
    return st;
}

static void s_destroy(void *state)
{
    s_ref_t *r = state;
    if (!r)
        return;
    size_t iter = 0;
    uint64_t key;
    void *val;
    while (sl_map_next(&r->later, &iter, &key, &val)) {
        sl_kv_seq_t *ks = val;
        sl_kv_seq_release(r->kv, &ks);
    }
    sl_map_fini(&r->later);
    free(r->hidden), free(r->slots);
    sl_kv_destroy(&r->kv);
    sl_model_destroy(&r->model);
    free(r->tokens), free(r->pos), free(r->row_seq), free(r->out_rows), free(r->next);
    free(r->n_table), free(r->tables), free(r->out_seq);
    free(r);
}

/* Trace replay: token ids drawn from the block hashes (and the id past them). */
static uint32_t *s_synth_prompt(const s_ref_t *r, const sl_seq_t *seq)
{
    uint32_t *p = malloc((size_t)seq->prompt_len * sizeof(uint32_t));
    if (!p)
        return NULL;
    uint32_t hbt = seq->hash_block_tokens ? seq->hash_block_tokens : r->cfg.block_tokens;
    if (hbt == 0)
        hbt = 16;
    sl_rand_t rng = {{0}}; /* seeded at the first token of every block */
    for (uint32_t i = 0; i < seq->prompt_len; i++) {
        uint32_t b = i / hbt;
        if (i % hbt == 0)
            sl_rand_seed(&rng, b < seq->n_block_hashes ? seq->block_hashes[b]
                                                       : sl_hash_combine(seq->id, b));
        p[i] = (uint32_t)sl_rand_below(&rng, r->cfg.vocab);
    }
    return p;
}

static sl_status_t s_admit(void *state, sl_seq_t *seq)
{
    s_ref_t *r = state;
    const sl_model_cfg_t *c = &r->cfg;
    if (seq->prompt_len == 0 || (!seq->prompt && !seq->block_hashes) || !seq->out ||
        (uint64_t)seq->prompt_len + seq->max_new_tokens > c->max_ctx) {
        snprintf(seq->error, sizeof(seq->error), "%u prompt + %u new tokens (context %u)%s",
                 seq->prompt_len, seq->max_new_tokens, c->max_ctx,
                 seq->prompt || seq->block_hashes ? "" : ", no prompt");
        SL_WARN("ref backend: sequence %llu rejected: %s", (unsigned long long)seq->id, seq->error);
        return SL_ERR_INVALID;
    }
    if (r->staged && (!r->first || !r->stage.forward)) {
        snprintf(seq->error, sizeof(seq->error), "%s",
                 r->first ? "this pipeline stage has no chain to the later stages"
                          : "this executor is a later pipeline stage (it takes no jobs)");
        SL_WARN("ref backend: sequence %llu rejected: %s", (unsigned long long)seq->id, seq->error);
        return SL_ERR_INVALID;
    }
    s_seq_state_t *ss = calloc(1, sizeof(*ss));
    if (!ss) {
        SL_ERROR("ref backend: out of memory");
        return SL_ERR_NOMEM;
    }
    const uint32_t *prompt = seq->prompt;
    const uint64_t *hashes = NULL;
    if (!prompt) {
        ss->prompt = s_synth_prompt(r, seq);
        if (!ss->prompt) {
            free(ss);
            SL_ERROR("ref backend: out of memory");
            return SL_ERR_NOMEM;
        }
        prompt = ss->prompt;
        if (seq->hash_block_tokens == c->block_tokens &&
            seq->n_block_hashes >= seq->prompt_len / c->block_tokens)
            hashes = seq->block_hashes;
    }
    for (uint32_t i = 0; i < seq->prompt_len; i++)
        if (prompt[i] >= c->vocab) {
            snprintf(seq->error, sizeof(seq->error),
                     "token %u at %u is outside the vocabulary (%u)", prompt[i], i, c->vocab);
            SL_WARN("ref backend: sequence %llu rejected: %s", (unsigned long long)seq->id,
                    seq->error);
            free(ss->prompt);
            free(ss);
            return SL_ERR_INVALID;
        }
    uint32_t cached = 0;
    /* a stage admits one token's worth of prompt: no cached prefix is
     * reused (the later stages would not hold it) and none is published */
    sl_status_t st =
        sl_kv_seq_admit(r->kv, prompt, r->staged ? 1 : seq->prompt_len, r->staged ? NULL : hashes,
                        seq->prompt_len + seq->max_new_tokens, &ss->kv, &cached);
    if (st != SL_OK) {
        free(ss->prompt);
        free(ss);
        return st;
    }
    ss->computed = cached;
    seq->cached_tokens = cached;
    seq->prefilled = false;
    seq->done = false;
    seq->n_out = 0;
    seq->backend_state = ss;
    return SL_OK;
}

/* Run the pass staged in r and hand out its tokens. */
static sl_status_t s_run(s_ref_t *r, uint32_t n_rows, uint32_t n_slots, uint32_t n_out)
{
    sl_model_batch_t b = {n_rows,    r->tokens,  r->pos, r->row_seq, n_slots,
                          r->tables, r->n_table, n_out,  r->out_rows};
    sl_status_t st;
    if (r->staged) { /* the first stage of a chain: the rest runs the later layers */
        st = sl_model_forward_stage(r->model, &b, NULL, r->hidden, NULL, NULL);
        sl_stage_step_t step = {n_rows,     n_slots, n_out,       0,   r->slots,
                                r->row_seq, r->pos,  r->out_rows, NULL};
        if (st == SL_OK)
            st = r->stage.forward(r->stage.arg, &step, r->hidden, r->next);
    } else {
        st = sl_model_forward(r->model, &b, r->next, NULL);
    }
    if (st != SL_OK)
        return st;
    for (uint32_t i = 0; i < n_out; i++) {
        sl_seq_t *seq = r->out_seq[i];
        s_seq_state_t *ss = seq->backend_state;
        if (!seq->prefilled) {
            seq->prefilled = true;
            sl_kv_seq_commit(r->kv, ss->kv);
        }
        if (seq->n_out < seq->max_new_tokens)
            seq->out[seq->n_out++] = r->next[i];
        seq->done = seq->n_out >= seq->max_new_tokens;
    }
    return SL_OK;
}

static sl_status_t s_step(void *state, sl_seq_t *const *seqs, size_t n, sl_time_t *cost_p)
{
    s_ref_t *r = state;
    size_t i = 0;
    *cost_p = 0;
    while (i < n) {
        uint32_t rows = 0, slots = 0, outs = 0;
        while (i < n && rows < r->max_rows) {
            sl_seq_t *seq = seqs[i];
            s_seq_state_t *ss = seq->backend_state;
            if (seq->done || !ss) {
                i++;
                continue;
            }
            uint32_t slot = slots++;
            r->tables[slot] = sl_kv_seq_table(ss->kv, &r->n_table[slot]);
            if (r->slots)
                r->slots[slot] =
                    (sl_stage_seq_t){seq->id, seq->prompt_len + seq->max_new_tokens, 0};
            if (!seq->prefilled) {
                const uint32_t *prompt = ss->prompt ? ss->prompt : seq->prompt;
                uint32_t take = seq->prompt_len - ss->computed;
                if (take > r->max_rows - rows)
                    take = r->max_rows - rows;
                for (uint32_t t = 0; t < take; t++, rows++) {
                    r->tokens[rows] = prompt[ss->computed + t];
                    r->pos[rows] = ss->computed + t;
                    r->row_seq[rows] = slot;
                }
                ss->computed += take;
                if (ss->computed < seq->prompt_len)
                    break; /* the pass is full; the rest of the prompt goes in the next one */
                r->out_rows[outs] = rows - 1;
            } else {
                r->tokens[rows] = seq->out[seq->n_out - 1];
                r->pos[rows] = seq->prompt_len + seq->n_out - 1;
                r->row_seq[rows] = slot;
                r->out_rows[outs] = rows++;
            }
            r->out_seq[outs++] = seq;
            i++;
        }
        if (rows == 0)
            break;
        sl_status_t st = s_run(r, rows, slots, outs);
        if (st != SL_OK)
            return st;
    }
    return SL_OK;
}

static void s_release(void *state, sl_seq_t *seq)
{
    s_ref_t *r = state;
    s_seq_state_t *ss = seq->backend_state;
    if (!ss)
        return;
    sl_kv_seq_release(r->kv, &ss->kv);
    if (r->staged && r->stage.end)
        r->stage.end(r->stage.arg, seq->id);
    free(ss->prompt);
    free(ss);
    seq->backend_state = NULL;
}

static void *s_kv_pool(void *state, size_t *bytes_p, size_t *block_bytes_p, bool *device_p)
{
    s_ref_t *r = state;
    *device_p = sl_k_ctx_device(sl_model_ctx(r->model)) == SL_K_CUDA;
    void *pool = sl_model_kv_pool(r->model, block_bytes_p);
    sl_kv_stats_t s;
    sl_kv_stats(r->kv, &s);
    size_t ring = 0;
    sl_model_pool_extra(r->model, &ring);
    *bytes_p = *block_bytes_p * ((size_t)s.referenced + s.cached + s.free) + ring;
    return pool;
}

static const uint32_t *s_kv_table(void *state, const sl_seq_t *seq, uint32_t *n_p)
{
    (void)state;
    const s_seq_state_t *ss = seq->backend_state;
    *n_p = 0;
    return ss ? sl_kv_seq_table(ss->kv, n_p) : NULL;
}

/* A peer computed the KV: the prompt counts as computed, its full blocks
 * are published as after a prefill, and decoding goes on from out[n_out-1]. */
static sl_status_t s_kv_import(void *state, sl_seq_t *seq)
{
    s_ref_t *r = state;
    s_seq_state_t *ss = seq->backend_state;
    if (!ss)
        return SL_ERR_INVALID;
    if (seq->n_out == 0) { /* a fetched prefix: the rest of the prompt is computed here */
        if (seq->cached_tokens >= seq->prompt_len || seq->cached_tokens < ss->computed)
            return SL_ERR_INVALID;
        ss->computed = seq->cached_tokens;
        seq->prefill_done = 0;
        return SL_OK;
    }
    ss->computed = seq->prompt_len;
    seq->prefill_done = seq->prompt_len - seq->cached_tokens;
    seq->prefilled = true;
    sl_kv_seq_commit(r->kv, ss->kv);
    seq->done = seq->n_out >= seq->max_new_tokens;
    return SL_OK;
}

static sl_status_t s_kv_hold(void *state, const uint64_t *hashes, uint32_t n, void **hold_p,
                             const uint32_t **ids_p, uint32_t *n_found_p)
{
    s_ref_t *r = state;
    sl_kv_seq_t *seq = NULL;
    sl_status_t st = sl_kv_seq_hold(r->kv, hashes, n, &seq, n_found_p);
    if (st != SL_OK)
        return st;
    uint32_t nb = 0;
    *ids_p = sl_kv_seq_table(seq, &nb);
    *hold_p = seq;
    return SL_OK;
}

static void s_kv_unhold(void *state, void *hold)
{
    s_ref_t *r = state;
    sl_kv_seq_t *seq = hold;
    sl_kv_seq_release(r->kv, &seq);
}

static void s_load(void *state, sl_backend_load_t *load)
{
    s_ref_t *r = state;
    sl_kv_stats_t s;
    sl_kv_stats(r->kv, &s);
    /* Cached blocks nobody references are evicted on demand: available. */
    load->kv_blocks_used = s.referenced;
    load->kv_blocks_free = s.free + s.cached;
    load->kv_block_tokens = r->cfg.block_tokens;
}

static void s_limits(void *state, sl_backend_limits_t *limits)
{
    const s_ref_t *r = state;
    limits->max_context_tokens = r->cfg.max_ctx;
    limits->vocab_size = r->cfg.vocab;
}

/* --- later pipeline stages ------------------------------------------------------- */

void sl_backend_ref_stage_end(void *state, uint64_t id)
{
    s_ref_t *r = state;
    sl_kv_seq_t *ks = sl_map_del(&r->later, id + 1);
    sl_kv_seq_release(r->kv, &ks);
}

sl_status_t sl_backend_ref_stage_run(void *state, const sl_stage_step_t *step, const float *x_in,
                                     float *x_out, uint32_t *next)
{
    s_ref_t *r = state;
    if (!r->staged || r->first) {
        SL_ERROR("ref backend: a step from an earlier stage, but this executor holds layer 0");
        return SL_ERR_INVALID;
    }
    for (uint32_t i = 0; i < step->n_ended; i++)
        sl_backend_ref_stage_end(r, step->ended[i]);
    if (step->n_rows > r->max_rows || step->n_seqs > r->max_rows) {
        SL_WARN("ref backend: a stage step of %u rows, %u sequences (at most %u)", step->n_rows,
                step->n_seqs, r->max_rows);
        return SL_ERR_INVALID;
    }
    for (uint32_t s = 0; s < step->n_seqs; s++) {
        const sl_stage_seq_t *q = &step->seqs[s];
        sl_kv_seq_t *ks = sl_map_get(&r->later, q->id + 1);
        if (!ks) {
            uint32_t zero = 0, cached = 0;
            sl_status_t st =
                q->capacity > r->cfg.max_ctx
                    ? SL_ERR_INVALID
                    : sl_kv_seq_admit(r->kv, &zero, 1, NULL, q->capacity, &ks, &cached);
            if (st == SL_OK && (st = sl_map_put(&r->later, q->id + 1, ks)) != SL_OK)
                sl_kv_seq_release(r->kv, &ks);
            if (st != SL_OK) {
                SL_WARN("ref backend: no KV for sequence %llu of %u tokens on this stage: %s",
                        (unsigned long long)q->id, q->capacity, sl_status_str(st));
                return st;
            }
        }
        r->tables[s] = sl_kv_seq_table(ks, &r->n_table[s]);
    }
    /* a row's position must lie in its sequence's KV (the message's
     * counts are checked by the stage; its positions are checked here) */
    for (uint32_t i = 0; i < step->n_rows; i++) {
        uint32_t s = step->row_seq[i];
        if (s >= step->n_seqs || step->pos[i] / r->cfg.block_tokens >= r->n_table[s]) {
            SL_WARN("ref backend: row %u of a stage step is at position %u, outside its "
                    "sequence's KV",
                    i, step->pos[i]);
            return SL_ERR_INVALID;
        }
        r->tokens[i] = 0; /* later stages do not embed */
    }
    sl_model_batch_t b = {step->n_rows, r->tokens,  step->pos,   step->row_seq, step->n_seqs,
                          r->tables,    r->n_table, step->n_out, step->out_rows};
    return sl_model_forward_stage(r->model, &b, x_in, r->last ? NULL : x_out, r->last ? next : NULL,
                                  NULL);
}

static void s_stage_info(void *state, sl_backend_stage_info_t *info)
{
    const s_ref_t *r = state;
    sl_model_layers(r->model, &info->layer_first, &info->layer_count);
    info->layers_total = r->cfg.n_layers;
    info->width = r->cfg.dim;
    info->ring = sl_model_pool_extra(r->model, &info->ring_bytes);
}

const sl_backend_ops_t sl_backend_ref = {
    .name = "ref",
    .create = s_create,
    .destroy = s_destroy,
    .admit = s_admit,
    .step = s_step,
    .release = s_release,
    .load = s_load,
    .limits = s_limits,
    .kv_pool = s_kv_pool,
    .kv_table = s_kv_table,
    .kv_import = s_kv_import,
    .kv_hold = s_kv_hold,
    .kv_unhold = s_kv_unhold,
    .stage_info = s_stage_info,
    .stage_run = sl_backend_ref_stage_run,
};
