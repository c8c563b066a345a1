/*
 * The sim backend: spends the time a GPU would, produces placeholder tokens.
 *
 * Timing model for one iteration over a batch (all times in microseconds,
 * divided by `speed`):
 *   prefill part, when some sequence still needs its prompt:
 *     prefill_base + sum_i [ per_token * n_i + per_token_ctx * n_i * (c_i + n_i / 2) ]
 *     with n_i the prompt tokens computed in this step (all uncached ones, or
 *     the engine's chunk of them under chunked prefill) and c_i the tokens
 *     before them (cached, or computed in earlier chunks): the second term is
 *     attention over the context, quadratic in the prompt, and sums over the
 *     chunks to the same total as one whole-prompt step;
 *   decode part, for sequences already generating:
 *     decode_base + per_seq * batch + per_kv_token * sum of their context lengths.
 * Prefill is compute-bound (cost per token), decode is bandwidth-bound (the
 * weights are read once per step, the KV cache once per sequence).
 *
 * Default coefficients: an 8B Llama-class model (Llama 3 8B: 8.0e9
 * parameters, 32 layers, 8 KV heads of 128, so 128 KiB of bf16 KV per token)
 * on one H100 SXM, from NVIDIA's H100 datasheet rates (989 TFLOP/s dense
 * bf16, 3.35 TB/s HBM3) at assumed efficiencies
 * (about 55% of peak FLOP/s in prefill, 85% of peak bandwidth in decode):
 *   per_token     = 2 * 8.0e9 FLOP / (0.55 * 989e12) = 29 us
 *   per_token_ctx = 4 * 4096 * 32 FLOP / (0.55 * 989e12) = 0.00096 us
 *   decode_base   = 16.1e9 B / (0.85 * 3.35e12 B/s) = 5650 us
 *   per_kv_token  = 131072 B / (0.85 * 3.35e12 B/s) = 0.046 us
 * The rates are NVIDIA's published H100 SXM specifications; the two
 * efficiencies are assumptions, not fitted to a serving measurement. Fit
 * them to a measured engine with the --sim-* knobs (published vLLM runs of
 * Llama 3.1 8B on one H100, e.g. Microsoft's Azure HPC blog "Performance of
 * Llama 3.1 8B AI Inference using vLLM on ND-H100-v5", Aug 2025, are the
 * comparison to make).
 * Every coefficient is a knob (--sim-*).
 *
 * Prefix cache: an LRU over block hashes with a capacity in tokens (H100's
 * 80 GB less 16 GB of weights, at 128 KiB per token: 480k tokens). Trace
 * jobs bring their own block hashes (Mooncake: 512 tokens each); jobs with
 * real token ids are hashed in blocks of kv_block_tokens with the chained
 * block hash the scheduler and the ref KV manager use (sl_hash_kv_block).
 * Stored and evicted blocks are reported so the scheduler can index them.
 * A block counts once, in the cache, however many sequences share it; blocks
 * are not pinned while in use (a simplification: a real engine would hold
 * them), so under pressure a running sequence's prefix may be evicted.
 */
#include "executor/sl_backend.h"
#include "common/sl_hash.h"
#include "common/sl_list.h"
#include "common/sl_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_block {
    uint64_t hash;   /* block hash */
    uint32_t tokens; /* tokens it holds */
    sl_list_t lru;   /* position in the LRU list (front = oldest) */
} s_block_t;

typedef struct s_sim {
    sl_sim_cfg_t cfg;         /* timing model */
    uint32_t block_tokens;    /* tokens per block for hashing real prompts */
    sl_backend_kv_cb_t kv;    /* KV events */
    sl_map_t blocks;          /* hash -> s_block_t */
    sl_list_t lru;            /* cached blocks, oldest first */
    uint64_t cached_tokens;   /* tokens in cached blocks */
    uint64_t running_tokens;  /* KV tokens of running sequences */
    uint64_t capacity_tokens; /* KV capacity */
    uint64_t admitted;        /* admissions tried (the fault injection's clock) */
} s_sim_t;

typedef struct s_seq {
    uint32_t n_hashes;    /* blocks of the prompt */
    uint32_t hash_tokens; /* tokens per block */
    uint64_t reserved;    /* KV tokens reserved in running_tokens */
    uint64_t hashes[];    /* the prompt's block hashes */
} s_seq_t;

static sl_status_t s_create(const sl_backend_params_t *p, void **state_p)
{
    s_sim_t *s = calloc(1, sizeof(*s));
    if (!s)
        return SL_ERR_NOMEM;
    s->cfg = *p->sim;
    if (s->cfg.speed <= 0)
        s->cfg.speed = 1;
    s->block_tokens = p->kv_block_tokens ? p->kv_block_tokens : 16;
    s->kv = p->kv_cb;
    s->capacity_tokens =
        (uint64_t)(s->cfg.kv_capacity_blocks > 0 ? s->cfg.kv_capacity_blocks : 1) * s->block_tokens;
    sl_map_init(&s->blocks);
    sl_list_init(&s->lru);
    *state_p = s;
    return SL_OK;
}

static void s_destroy(void *state)
{
    s_sim_t *s = state;
    while (!sl_list_empty(&s->lru))
        free(SL_CONTAINER_OF(sl_list_pop_front(&s->lru), s_block_t, lru));
    sl_map_fini(&s->blocks);
    free(s);
}

/* Evict least recently used blocks until cache and running fit. */
static void s_evict(s_sim_t *s)
{
    while (s->cached_tokens + s->running_tokens > s->capacity_tokens && !sl_list_empty(&s->lru)) {
        s_block_t *b = SL_CONTAINER_OF(sl_list_pop_front(&s->lru), s_block_t, lru);
        sl_map_del(&s->blocks, b->hash);
        s->cached_tokens -= b->tokens;
        if (s->kv.evicted)
            s->kv.evicted(s->kv.arg, b->hash);
        free(b);
    }
}

static sl_status_t s_admit(void *state, sl_seq_t *seq)
{
    s_sim_t *s = state;
    uint32_t n = 0, bt = 0;
    uint64_t need = (uint64_t)seq->prompt_len + seq->max_new_tokens;
    if (s->cfg.fail_share > 0) {
        /* Deterministic: the k-th admission fails when floor(k x share) steps up. */
        uint64_t k = ++s->admitted;
        if ((uint64_t)((double)k * s->cfg.fail_share) >
            (uint64_t)((double)(k - 1) * s->cfg.fail_share)) {
            snprintf(seq->error, sizeof(seq->error), "injected failure (--sim-fail-share %g)",
                     s->cfg.fail_share);
            return SL_ERR_JOB_FAILED;
        }
    }
    if (s->cfg.max_context > 0 && need > (uint64_t)s->cfg.max_context) {
        snprintf(seq->error, sizeof(seq->error), "%u prompt + %u new tokens (context %lld)",
                 seq->prompt_len, seq->max_new_tokens, (long long)s->cfg.max_context);
        return SL_ERR_INVALID;
    }
    if (s->running_tokens > 0 && s->running_tokens + need > s->capacity_tokens)
        return SL_ERR_AGAIN;
    if (seq->block_hashes && seq->n_block_hashes) {
        n = seq->n_block_hashes;
        bt = seq->hash_block_tokens ? seq->hash_block_tokens : 512;
    } else if (seq->prompt) {
        n = seq->prompt_len / s->block_tokens;
        bt = s->block_tokens;
    }
    s_seq_t *ss = malloc(sizeof(*ss) + (size_t)n * sizeof(uint64_t));
    if (!ss)
        return SL_ERR_NOMEM;
    ss->n_hashes = n;
    ss->hash_tokens = bt;
    if (seq->block_hashes && seq->n_block_hashes) {
        memcpy(ss->hashes, seq->block_hashes, (size_t)n * sizeof(uint64_t));
    } else {
        sl_hash_kv_blocks(seq->prompt, seq->prompt_len, bt, ss->hashes, n);
    }
    /* The longest cached prefix; touched so it is the last to go. */
    uint32_t hit = 0;
    while (hit < n) {
        s_block_t *b = sl_map_get(&s->blocks, ss->hashes[hit]);
        if (!b)
            break;
        sl_list_del(&b->lru);
        sl_list_push_back(&s->lru, &b->lru);
        hit++;
    }
    uint64_t cached = (uint64_t)hit * bt;
    if (cached >= seq->prompt_len)
        cached = seq->prompt_len ? seq->prompt_len - 1 : 0; /* one token is always computed */
    seq->cached_tokens = (uint32_t)cached;
    /* Blocks found in the cache are shared, counted once there. */
    ss->reserved = need - cached;
    s->running_tokens += ss->reserved;
    s_evict(s);
    seq->backend_state = ss;
    return SL_OK;
}

/* After prefill the prompt's blocks are cached; the tokens they hold move
 * from the sequence's reservation to the cache, so they count once. */
static void s_store(s_sim_t *s, s_seq_t *ss, uint32_t max_new)
{
    for (uint32_t i = 0; i < ss->n_hashes; i++) {
        s_block_t *b = sl_map_get(&s->blocks, ss->hashes[i]);
        if (b) {
            sl_list_del(&b->lru);
            sl_list_push_back(&s->lru, &b->lru);
            continue;
        }
        b = malloc(sizeof(*b));
        if (!b || sl_map_put(&s->blocks, ss->hashes[i], b) != SL_OK) {
            free(b);
            return;
        }
        b->hash = ss->hashes[i];
        b->tokens = ss->hash_tokens;
        sl_list_push_back(&s->lru, &b->lru);
        s->cached_tokens += b->tokens;
        uint64_t movable = ss->reserved > max_new ? ss->reserved - max_new : 0;
        uint64_t moved = b->tokens < movable ? b->tokens : movable;
        ss->reserved -= moved;
        s->running_tokens -= moved;
        if (s->kv.stored)
            s->kv.stored(s->kv.arg, b->hash);
    }
    s_evict(s);
}

static uint32_t s_token(const sl_seq_t *seq, uint32_t i)
{
    return (uint32_t)(sl_hash_mix64(seq->id * 131 + i) % 32000);
}

/* A decode step's modelled microseconds (at speed 1): one formula for the
 * step and its preview (s_decode_cost), so that a planned run ends where
 * its steps do. */
static double s_decode_us(const sl_sim_cfg_t *c, size_t n_decode, double ctx)
{
    return c->decode_base_us + c->decode_us_per_seq * (double)n_decode +
           c->decode_us_per_kv_token * ctx;
}

static sl_status_t s_step(void *state, sl_seq_t *const *seqs, size_t n, sl_time_t *cost_p)
{
    s_sim_t *s = state;
    const sl_sim_cfg_t *c = &s->cfg;
    double prefill = 0, decode = 0, ctx = 0;
    size_t n_prefill = 0, n_decode = 0;
    for (size_t i = 0; i < n; i++) {
        sl_seq_t *seq = seqs[i];
        if (!seq->prefilled) {
            /* This step's chunk of the prompt, after the chunks before it. */
            uint32_t chunk = sl_seq_prefill_chunk(seq);
            double nt = chunk;
            double before = (double)seq->cached_tokens + seq->prefill_done;
            prefill +=
                c->prefill_us_per_token * nt + c->prefill_us_per_token_ctx * nt * (before + nt / 2);
            seq->prefill_done += chunk;
            n_prefill++;
        } else {
            ctx += (double)seq->prompt_len + seq->n_out;
            n_decode++;
        }
    }
    if (n_prefill)
        prefill += c->prefill_base_us;
    if (n_decode)
        decode = s_decode_us(c, n_decode, ctx);
    for (size_t i = 0; i < n; i++) {
        sl_seq_t *seq = seqs[i];
        if (!seq->prefilled) {
            if (sl_seq_prefill_left(seq) > 0)
                continue; /* more chunks to go: no token yet */
            seq->prefilled = true;
            s_store(s, seq->backend_state, seq->max_new_tokens);
        }
        if (seq->n_out < seq->max_new_tokens) {
            seq->out[seq->n_out] = s_token(seq, seq->n_out);
            seq->n_out++;
        }
        if (seq->n_out >= seq->max_new_tokens)
            seq->done = true;
    }
    *cost_p = (sl_time_t)((prefill + decode) / c->speed * 1000.0);
    return SL_OK;
}

static sl_time_t s_decode_cost(void *state, sl_seq_t *const *seqs, size_t n, uint32_t ahead)
{
    const s_sim_t *s = state;
    const sl_sim_cfg_t *c = &s->cfg;
    double ctx = 0; /* summed as s_step sums it: whole numbers, exact in a double */
    for (size_t i = 0; i < n; i++)
        ctx += (double)seqs[i]->prompt_len + seqs[i]->n_out;
    ctx += (double)ahead * (double)n;
    return (sl_time_t)(s_decode_us(c, n, ctx) / c->speed * 1000.0);
}

/* A peer computed the prompt: it is cached here from now on, as after a
 * prefill, and decoding costs what it costs for any prefilled sequence. */
static sl_status_t s_kv_import(void *state, sl_seq_t *seq)
{
    s_sim_t *s = state;
    if (!seq->backend_state)
        return SL_ERR_INVALID;
    if (seq->n_out == 0) /* a fetched prefix: cached_tokens (set by the engine) cost nothing */
        return seq->cached_tokens < seq->prompt_len ? SL_OK : SL_ERR_INVALID;
    seq->prefill_done = sl_seq_prefill_left(seq) + seq->prefill_done;
    seq->prefilled = true;
    s_store(s, seq->backend_state, seq->max_new_tokens);
    seq->done = seq->n_out >= seq->max_new_tokens;
    return SL_OK;
}

static void s_release(void *state, sl_seq_t *seq)
{
    s_sim_t *s = state;
    s_seq_t *ss = seq->backend_state;
    if (!ss)
        return;
    s->running_tokens -= ss->reserved;
    free(ss);
    seq->backend_state = NULL;
}

static void s_load(void *state, sl_backend_load_t *load)
{
    s_sim_t *s = state;
    uint64_t used = (s->cached_tokens + s->running_tokens) / s->block_tokens;
    uint64_t cap = s->capacity_tokens / s->block_tokens;
    load->kv_blocks_used = (uint32_t)(used < cap ? used : cap);
    load->kv_blocks_free = (uint32_t)(cap - load->kv_blocks_used);
    load->kv_block_tokens = s->block_tokens;
}

static void s_limits(void *state, sl_backend_limits_t *limits)
{
    const s_sim_t *s = state;
    limits->max_context_tokens = (uint32_t)s->cfg.max_context;
}

const sl_backend_ops_t sl_backend_sim = {
    .name = "sim",
    .chunked_prefill = true,
    .instant_step = true,
    .create = s_create,
    .destroy = s_destroy,
    .admit = s_admit,
    .step = s_step,
    .decode_cost = s_decode_cost,
    .release = s_release,
    .load = s_load,
    .limits = s_limits,
    .kv_import = s_kv_import,
};
