/*
 * The ref model: weights, activations, KV pool, and the forward pass.
 *
 * The forward pass is written once against sl_k_* and runs on whichever
 * device the model's context is on. Every row goes through the same
 * operations whatever the batch holds: prompt rows and decode rows alike use
 * the paged attention kernel (a prompt row at position p attends to positions
 * 0..p through its sequence's block table), so a token's arithmetic does not
 * depend on whether it was computed in a prefill, a chunk of one, a decode
 * step, or after a cached prefix. With the batch-invariant CPU kernels this
 * makes the CPU path exactly reproducible; on CUDA it is reproducible for a
 * fixed batch shape.
 *
 * Synthetic weights are uniform with variance 1/fan_in (so each product keeps
 * unit scale), output projections further scaled by 1/sqrt(2 * layers) (so
 * the residual stream grows slowly with depth), norms near 1: activations
 * stay finite and logits O(1) over any generation length. Each tensor is
 * drawn from its own generator seeded by (seed, tensor name), so a tensor's
 * values do not depend on the model's other shapes or on load order.
 *
 * The KV pool is one allocation of n_blocks blocks, each holding every
 * layer's K and V for block_tokens positions, so moving a block between
 * executors is one contiguous copy per block (sl_k_kv_pack).
 *
 * Pipeline stages: a model built with a layer range holds those layers
 * only (plus the embedding on the first stage, the final norm and output
 * layer on the last) and a KV pool of those layers; its forward pass starts
 * from the residual stream the stage before it computed and stops after its
 * last layer. The layers keep their names (model.layers.<i> of the whole
 * model), so their synthetic weights are the whole model's, and the
 * residual stream crosses stages in fp32 unchanged: chained stages compute
 * bit for bit what one model computes.
 *
 * Rejected: a separate dense prefill path (faster attention for long
 * prompts on the GPU, but a cached-prefix run would then differ in the last
 * bits from a cold run); fp16 activations (halves bandwidth but loses the
 * fp32 CPU oracle's exactness).
 */
#include "executor/ref/sl_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_hash.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_safetensors.h"

#define S_LAYER_TENSORS 9

typedef struct s_layer {
    float *attn_norm;   /* [dim] */
    float *ffn_norm;    /* [dim] */
    sl_k_weight_t w[7]; /* q, k, v, o, gate, up, down */
} s_layer_t;

enum { S_WQ, S_WK, S_WV, S_WO, S_WGATE, S_WUP, S_WDOWN };

struct sl_model {
    sl_model_cfg_t cfg;    /* shape */
    sl_k_ctx_h ctx;        /* device */
    sl_k_dtype_t dtype;    /* format of the linear layers */
    uint32_t head_dim;     /* dim / n_heads */
    uint32_t kv_dim;       /* n_kv_heads * head_dim */
    float *embed;          /* [vocab][dim] fp32 */
    float *final_norm;     /* [dim] */
    sl_k_weight_t lm_head; /* [vocab][dim] */
    s_layer_t *layers;     /* n_local layers */
    uint32_t first;        /* first layer held (pipeline stage) */
    uint32_t n_local;      /* layers held */
    float *kv_pool;        /* n_blocks blocks of block_floats */
    uint32_t kv_blocks;    /* blocks in the pool */
    size_t pool_extra;     /* bytes after the blocks in the pool's allocation */
    size_t block_floats;   /* floats per block (all layers, K and V) */
    uint32_t max_rows;     /* rows per pass */
    uint32_t max_blocks;   /* table entries per sequence slot */
    /* device activations, max_rows rows each */
    float *x;             /* residual stream [rows][dim] */
    float *xn;            /* normalised stream [rows][dim] */
    float *q;             /* queries [rows][dim] */
    float *k;             /* keys of this pass [rows][kv_dim] */
    float *v;             /* values of this pass [rows][kv_dim] */
    float *att;           /* attention output [rows][dim] */
    float *tmp;           /* projection output [rows][dim] */
    float *gate;          /* feed-forward gate, then SwiGLU [rows][ffn] */
    float *up;            /* feed-forward up [rows][ffn] */
    float *logits;        /* [rows][vocab] of the sampled rows */
    uint32_t *d_tokens;   /* token of each row */
    uint32_t *d_pos;      /* position of each row */
    uint32_t *d_row_seq;  /* sequence slot of each row */
    uint32_t *d_tables;   /* block tables, max_blocks per slot */
    uint32_t *d_out_rows; /* rows that sample */
    uint32_t *d_next;     /* sampled tokens */
    uint32_t *h_tables;   /* host staging of the block tables */
};

/* --- presets and names --------------------------------------------------------- */

typedef struct s_preset {
    const char *name;   /* preset name */
    sl_model_cfg_t cfg; /* its shape */
} s_preset_t;

static const s_preset_t s_presets[] = {
    {"tiny", {512, 128, 2, 4, 2, 256, 8, 512, 10000.0f, 1e-5f}},
    {"small", {8192, 512, 8, 8, 4, 1408, 16, 2048, 10000.0f, 1e-5f}},
    {"medium", {32000, 2048, 16, 16, 8, 5632, 16, 4096, 10000.0f, 1e-5f}},
};

sl_status_t sl_model_preset(const char *name, sl_model_cfg_t *cfg)
{
    for (size_t i = 0; i < sizeof(s_presets) / sizeof(s_presets[0]); i++)
        if (!strcmp(s_presets[i].name, name)) {
            *cfg = s_presets[i].cfg;
            return SL_OK;
        }
    SL_ERROR("model: unknown preset '%s' (tiny, small, medium)", name);
    return SL_ERR_NOT_FOUND;
}

static const char *const s_dtype_names[] = {"fp32", "bf16", "fp16", "int8", "int4"};

sl_status_t sl_model_dtype_parse(const char *name, sl_k_dtype_t *dtype_p)
{
    for (int i = 0; i < 5; i++)
        if (!strcmp(name, s_dtype_names[i])) {
            *dtype_p = (sl_k_dtype_t)i;
            return SL_OK;
        }
    SL_ERROR("model: unknown weight format '%s' (fp32, bf16, fp16, int8, int4)", name);
    return SL_ERR_INVALID;
}

const char *sl_model_dtype_name(sl_k_dtype_t dtype)
{
    return (unsigned)dtype < 5 ? s_dtype_names[dtype] : "?";
}

/* Name and shape of tensor i (0..8) of a layer; *out_proj for o/down. */
static void s_layer_tensor(const sl_model_cfg_t *c, int i, uint32_t layer, char *name, size_t len,
                           uint32_t *ndim, uint64_t *shape, int *out_proj)
{
    static const char *const fmt[S_LAYER_TENSORS] = {
        "model.layers.%u.input_layernorm.weight",
        "model.layers.%u.self_attn.q_proj.weight",
        "model.layers.%u.self_attn.k_proj.weight",
        "model.layers.%u.self_attn.v_proj.weight",
        "model.layers.%u.self_attn.o_proj.weight",
        "model.layers.%u.post_attention_layernorm.weight",
        "model.layers.%u.mlp.gate_proj.weight",
        "model.layers.%u.mlp.up_proj.weight",
        "model.layers.%u.mlp.down_proj.weight",
    };
    uint32_t kv_dim = c->n_kv_heads * (c->dim / c->n_heads);
    const uint64_t rows[S_LAYER_TENSORS] = {c->dim, c->dim,     kv_dim,     kv_dim, c->dim,
                                            c->dim, c->ffn_dim, c->ffn_dim, c->dim};
    const uint64_t cols[S_LAYER_TENSORS] = {0, c->dim, c->dim, c->dim,    c->dim,
                                            0, c->dim, c->dim, c->ffn_dim};
    snprintf(name, len, fmt[i], layer);
    *ndim = cols[i] ? 2 : 1;
    shape[0] = rows[i];
    shape[1] = cols[i];
    *out_proj = i == 4 || i == 8;
}

/* --- weight sources ------------------------------------------------------------ */

typedef struct s_src {
    const sl_model_cfg_t *cfg; /* model shape */
    uint64_t seed;             /* synthetic weights */
    sl_st_t *st;               /* file, or NULL for synthetic */
} s_src_t;

static void s_synth(const s_src_t *src, const char *name, uint32_t ndim, const uint64_t *shape,
                    int out_proj, float *out)
{
    sl_rand_t r;
    sl_rand_seed(&r, sl_hash_bytes(name, strlen(name), src->seed));
    size_t n = ndim == 2 ? (size_t)(shape[0] * shape[1]) : (size_t)shape[0];
    double amp;
    if (ndim == 1)
        amp = 0.1; /* norm gains 1 +- 0.1 */
    else if (!strcmp(name, "model.embed_tokens.weight"))
        amp = sqrt(3.0);
    else
        amp =
            sqrt(3.0 / (double)shape[1]) * (out_proj ? 1.0 / sqrt(2.0 * src->cfg->n_layers) : 1.0);
    for (size_t i = 0; i < n; i++) {
        double u = sl_rand_double(&r) * 2.0 - 1.0;
        out[i] = (float)(ndim == 1 ? 1.0 + amp * u : amp * u);
    }
}

static sl_status_t s_read(const s_src_t *src, const char *name, uint32_t ndim,
                          const uint64_t *shape, int out_proj, float *out)
{
    if (src->st)
        return sl_st_read_f32(src->st, name, ndim, shape, out);
    s_synth(src, name, ndim, shape, out_proj, out);
    return SL_OK;
}

/* --- building -------------------------------------------------------------------- */

static sl_status_t s_upload_f32(sl_model_t *m, const float *host, size_t n, float **dev_p)
{
    void *d;
    sl_status_t st = sl_k_alloc(m->ctx, n * sizeof(float), &d);
    if (st == SL_OK)
        st = sl_k_upload(m->ctx, d, host, n * sizeof(float));
    if (st != SL_OK) {
        sl_k_free(m->ctx, d);
        return st;
    }
    *dev_p = d;
    return SL_OK;
}

static sl_status_t s_upload_weight(sl_model_t *m, const float *host, uint32_t rows, uint32_t cols,
                                   sl_k_weight_t *w)
{
    sl_k_weight_t hw = {m->dtype, rows, cols, SL_K_GROUP_DEFAULT, NULL, NULL};
    size_t db = sl_k_weight_data_bytes(m->dtype, rows, cols);
    size_t sb = sl_k_weight_scale_bytes(m->dtype, rows, cols, SL_K_GROUP_DEFAULT);
    sl_status_t st = SL_ERR_NOMEM;
    hw.data = malloc(db);
    hw.scales = sb ? malloc(sb) : NULL;
    if (!hw.data || (sb && !hw.scales)) {
        SL_ERROR("model: out of memory encoding a %ux%u weight", rows, cols);
        goto out;
    }
    st = sl_k_weight_encode(m->dtype, host, rows, cols, SL_K_GROUP_DEFAULT, hw.data, hw.scales);
    if (st != SL_OK)
        goto out;
    *w = hw;
    w->data = w->scales = NULL;
    if ((st = sl_k_alloc(m->ctx, db, &w->data)) != SL_OK ||
        (st = sl_k_upload(m->ctx, w->data, hw.data, db)) != SL_OK)
        goto out;
    if (sb) {
        void *s;
        if ((st = sl_k_alloc(m->ctx, sb, &s)) != SL_OK)
            goto out;
        w->scales = s;
        st = sl_k_upload(m->ctx, w->scales, hw.scales, sb);
    }
out:
    free(hw.data);
    free(hw.scales);
    return st;
}

static void s_free_weight(sl_model_t *m, sl_k_weight_t *w)
{
    sl_k_free(m->ctx, w->data);
    sl_k_free(m->ctx, w->scales);
    w->data = NULL;
    w->scales = NULL;
}

static sl_status_t s_check_cfg(const sl_model_cfg_t *c, sl_k_dtype_t dtype)
{
    if (!c->vocab || !c->dim || !c->n_layers || !c->n_heads || !c->n_kv_heads || !c->ffn_dim ||
        !c->block_tokens || !c->max_ctx || c->dim % c->n_heads || c->n_heads % c->n_kv_heads ||
        (c->dim / c->n_heads) % 2 || c->dim / c->n_heads > SL_K_MAX_HEAD_DIM) {
        SL_ERROR("model: inconsistent shape (vocab %u, dim %u, layers %u, heads %u/%u, ffn %u, "
                 "block %u, ctx %u)",
                 c->vocab, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim,
                 c->block_tokens, c->max_ctx);
        return SL_ERR_INVALID;
    }
    if ((dtype == SL_K_I8 || dtype == SL_K_I4) &&
        (c->dim % SL_K_GROUP_DEFAULT || c->ffn_dim % SL_K_GROUP_DEFAULT)) {
        SL_ERROR("model: %s needs width %u and feed-forward %u to be multiples of %u",
                 sl_model_dtype_name(dtype), c->dim, c->ffn_dim, SL_K_GROUP_DEFAULT);
        return SL_ERR_INVALID;
    }
    return SL_OK;
}

static sl_status_t s_alloc_act(sl_model_t *m, size_t bytes, void *ptr_p)
{
    return sl_k_alloc(m->ctx, bytes, (void **)ptr_p);
}

static sl_status_t s_load(sl_model_t *m, const s_src_t *src)
{
    const sl_model_cfg_t *c = &m->cfg;
    size_t biggest = (size_t)c->vocab * c->dim;
    if ((size_t)c->ffn_dim * c->dim > biggest)
        biggest = (size_t)c->ffn_dim * c->dim;
    float *host = malloc(biggest * sizeof(float));
    if (!host) {
        SL_ERROR("model: out of memory for a %zu-float staging buffer", biggest);
        return SL_ERR_NOMEM;
    }
    sl_status_t st;
    uint64_t emb_shape[2] = {c->vocab, c->dim}, norm_shape[1] = {c->dim};
    bool first = m->first == 0, last = m->first + m->n_local == c->n_layers;
    sl_st_tensor_t t;
    bool tied = src->st && sl_st_find(src->st, "lm_head.weight", &t) != SL_OK;
    if (first || (last && tied)) {
        if ((st = s_read(src, "model.embed_tokens.weight", 2, emb_shape, 0, host)) != SL_OK)
            goto out;
        if (first && (st = s_upload_f32(m, host, (size_t)c->vocab * c->dim, &m->embed)) != SL_OK)
            goto out;
    }
    if (last) {
        if (tied)
            SL_INFO("model: no lm_head.weight, tying the output layer to the embedding");
        else if ((st = s_read(src, "lm_head.weight", 2, emb_shape, 0, host)) != SL_OK)
            goto out;
        if ((st = s_upload_weight(m, host, c->vocab, c->dim, &m->lm_head)) != SL_OK)
            goto out;
        if ((st = s_read(src, "model.norm.weight", 1, norm_shape, 0, host)) != SL_OK ||
            (st = s_upload_f32(m, host, c->dim, &m->final_norm)) != SL_OK)
            goto out;
    }
    for (uint32_t ll = 0; ll < m->n_local; ll++) {
        uint32_t l = m->first + ll;
        s_layer_t *L = &m->layers[ll];
        for (int i = 0, wi = 0; i < S_LAYER_TENSORS; i++) {
            char name[128];
            uint32_t ndim;
            uint64_t shape[2];
            int out_proj;
            s_layer_tensor(c, i, l, name, sizeof(name), &ndim, shape, &out_proj);
            if ((st = s_read(src, name, ndim, shape, out_proj, host)) != SL_OK)
                goto out;
            if (ndim == 1)
                st = s_upload_f32(m, host, c->dim, i == 0 ? &L->attn_norm : &L->ffn_norm);
            else
                st = s_upload_weight(m, host, (uint32_t)shape[0], (uint32_t)shape[1], &L->w[wi++]);
            if (st != SL_OK)
                goto out;
        }
    }
out:
    free(host);
    return st;
}

static sl_status_t s_alloc_all(sl_model_t *m)
{
    const sl_model_cfg_t *c = &m->cfg;
    size_t R = m->max_rows, F = sizeof(float);
    sl_status_t st;
    if ((st = s_alloc_act(m, R * c->dim * F, &m->x)) ||
        (st = s_alloc_act(m, R * c->dim * F, &m->xn)) ||
        (st = s_alloc_act(m, R * c->dim * F, &m->q)) ||
        (st = s_alloc_act(m, R * m->kv_dim * F, &m->k)) ||
        (st = s_alloc_act(m, R * m->kv_dim * F, &m->v)) ||
        (st = s_alloc_act(m, R * c->dim * F, &m->att)) ||
        (st = s_alloc_act(m, R * c->dim * F, &m->tmp)) ||
        (st = s_alloc_act(m, R * c->ffn_dim * F, &m->gate)) ||
        (st = s_alloc_act(m, R * c->ffn_dim * F, &m->up)) ||
        (st = s_alloc_act(m, R * c->vocab * F, &m->logits)) ||
        (st = s_alloc_act(m, R * 4, &m->d_tokens)) || (st = s_alloc_act(m, R * 4, &m->d_pos)) ||
        (st = s_alloc_act(m, R * 4, &m->d_row_seq)) ||
        (st = s_alloc_act(m, R * 4, &m->d_out_rows)) || (st = s_alloc_act(m, R * 4, &m->d_next)) ||
        (st = s_alloc_act(m, R * m->max_blocks * 4, &m->d_tables)))
        return st;
    m->h_tables = calloc(R * m->max_blocks, sizeof(uint32_t));
    if (!m->h_tables) {
        SL_ERROR("model: out of memory for block tables");
        return SL_ERR_NOMEM;
    }
    m->block_floats = (size_t)m->n_local * 2 * c->block_tokens * m->kv_dim;
    st = s_alloc_act(m, (size_t)m->kv_blocks * m->block_floats * F + m->pool_extra, &m->kv_pool);
    if (st != SL_OK)
        SL_ERROR("model: cannot allocate a KV pool of %u blocks (%zu MiB)", m->kv_blocks,
                 (size_t)m->kv_blocks * m->block_floats * F >> 20);
    return st;
}

sl_status_t sl_model_create(const sl_model_cfg_t *cfg, const sl_model_opts_t *opts,
                            sl_model_t **model_p)
{
    sl_status_t st = s_check_cfg(cfg, opts->dtype);
    if (st != SL_OK)
        return st;
    if (!opts->kv_blocks) {
        SL_ERROR("model: the KV pool needs at least one block");
        return SL_ERR_INVALID;
    }
    sl_model_t *m = calloc(1, sizeof(*m));
    if (!m) {
        SL_ERROR("model: out of memory");
        return SL_ERR_NOMEM;
    }
    m->cfg = *cfg;
    m->dtype = opts->dtype;
    m->head_dim = cfg->dim / cfg->n_heads;
    m->kv_dim = cfg->n_kv_heads * m->head_dim;
    m->kv_blocks = opts->kv_blocks;
    m->pool_extra = (opts->pool_extra + 7) & ~(size_t)7;
    m->max_rows = opts->max_rows ? opts->max_rows : 256;
    m->max_blocks = (cfg->max_ctx + cfg->block_tokens - 1) / cfg->block_tokens;
    if (opts->layer_first >= cfg->n_layers ||
        (uint64_t)opts->layer_first + opts->layer_count > cfg->n_layers) {
        SL_ERROR("model: layers %u+%u are outside the model's %u", opts->layer_first,
                 opts->layer_count, cfg->n_layers);
        free(m);
        return SL_ERR_INVALID;
    }
    m->first = opts->layer_first;
    m->n_local = opts->layer_count ? opts->layer_count : cfg->n_layers - opts->layer_first;
    m->layers = calloc(m->n_local, sizeof(*m->layers));
    if (!m->layers) {
        free(m);
        SL_ERROR("model: out of memory");
        return SL_ERR_NOMEM;
    }
    s_src_t src = {cfg, opts->seed, NULL};
    if ((st = sl_k_ctx_create(opts->device, opts->threads, &m->ctx)) != SL_OK)
        goto err_destroy;
    if (opts->weights && opts->weights[0] && (st = sl_st_open(opts->weights, &src.st)) != SL_OK)
        goto err_destroy;
    st = s_load(m, &src);
    sl_st_close(&src.st);
    if (st != SL_OK || (st = s_alloc_all(m)) != SL_OK)
        goto err_destroy;
    if (m->n_local != cfg->n_layers)
        SL_INFO("model: pipeline stage holding layers %u-%u of %u", m->first,
                m->first + m->n_local - 1, cfg->n_layers);
    SL_INFO("model: %u layers, width %u, %u/%u heads, ffn %u, vocab %u, %s weights on %s, %u KV "
            "blocks of %u tokens",
            cfg->n_layers, cfg->dim, cfg->n_heads, cfg->n_kv_heads, cfg->ffn_dim, cfg->vocab,
            sl_model_dtype_name(opts->dtype), opts->device == SL_K_CUDA ? "cuda" : "cpu",
            m->kv_blocks, cfg->block_tokens);
    *model_p = m;
    return SL_OK;

err_destroy:
    sl_model_destroy(&m);
    return st;
}

void sl_model_destroy(sl_model_t **model_p)
{
    if (!model_p || !*model_p)
        return;
    sl_model_t *m = *model_p;
    if (m->ctx) {
        for (uint32_t l = 0; m->layers && l < m->n_local; l++) {
            sl_k_free(m->ctx, m->layers[l].attn_norm);
            sl_k_free(m->ctx, m->layers[l].ffn_norm);
            for (int i = 0; i < 7; i++)
                s_free_weight(m, &m->layers[l].w[i]);
        }
        s_free_weight(m, &m->lm_head);
        void *bufs[] = {m->embed,     m->final_norm, m->kv_pool,    m->x,        m->xn,
                        m->q,         m->k,          m->v,          m->att,      m->tmp,
                        m->gate,      m->up,         m->logits,     m->d_tokens, m->d_pos,
                        m->d_row_seq, m->d_tables,   m->d_out_rows, m->d_next};
        for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
            sl_k_free(m->ctx, bufs[i]);
        sl_k_ctx_destroy(&m->ctx);
    }
    free(m->layers);
    free(m->h_tables);
    free(m);
    *model_p = NULL;
}

const sl_model_cfg_t *sl_model_cfg(const sl_model_t *model)
{
    return &model->cfg;
}

sl_k_ctx_h sl_model_ctx(const sl_model_t *model)
{
    return model->ctx;
}

uint32_t sl_model_max_rows(const sl_model_t *model)
{
    return model->max_rows;
}

void sl_model_layers(const sl_model_t *model, uint32_t *first_p, uint32_t *count_p)
{
    *first_p = model->first;
    *count_p = model->n_local;
}

void *sl_model_pool_extra(const sl_model_t *model, size_t *bytes_p)
{
    *bytes_p = model->pool_extra;
    return model->pool_extra ? model->kv_pool + (size_t)model->kv_blocks * model->block_floats
                             : NULL;
}

bool sl_model_is_first(const sl_model_t *model)
{
    return model->first == 0;
}

bool sl_model_is_last(const sl_model_t *model)
{
    return model->first + model->n_local == model->cfg.n_layers;
}

void *sl_model_kv_pool(const sl_model_t *model, size_t *block_bytes_p)
{
    *block_bytes_p = model->block_floats * sizeof(float);
    return model->kv_pool;
}

/* --- forward ---------------------------------------------------------------------- */

static sl_status_t s_check_batch(const sl_model_t *m, const sl_model_batch_t *b)
{
    const sl_model_cfg_t *c = &m->cfg;
    if (b->n_rows > m->max_rows || b->n_seqs > m->max_rows || b->n_out > b->n_rows) {
        SL_ERROR("model: batch of %u rows, %u sequences, %u outputs exceeds %u rows", b->n_rows,
                 b->n_seqs, b->n_out, m->max_rows);
        return SL_ERR_INVALID;
    }
    for (uint32_t s = 0; s < b->n_seqs; s++)
        for (uint32_t i = 0; i < b->n_table[s]; i++)
            if (b->tables[s][i] >= m->kv_blocks || b->n_table[s] > m->max_blocks) {
                SL_ERROR("model: block table %u is invalid", s);
                return SL_ERR_INVALID;
            }
    for (uint32_t r = 0; r < b->n_rows; r++) {
        uint32_t s = b->row_seq[r];
        if (b->tokens[r] >= c->vocab || s >= b->n_seqs || b->pos[r] >= c->max_ctx ||
            b->pos[r] / c->block_tokens >= b->n_table[s]) {
            SL_ERROR("model: row %u (token %u, position %u, sequence %u) is invalid", r,
                     b->tokens[r], b->pos[r], s);
            return SL_ERR_INVALID;
        }
    }
    for (uint32_t i = 0; i < b->n_out; i++)
        if (b->out_rows[i] >= b->n_rows) {
            SL_ERROR("model: output row %u is not in the batch", b->out_rows[i]);
            return SL_ERR_INVALID;
        }
    return SL_OK;
}

#define S_TRY(expr)                                                                                \
    do {                                                                                           \
        if ((st = (expr)) != SL_OK)                                                                \
            return st;                                                                             \
    } while (0)

sl_status_t sl_model_forward(sl_model_t *m, const sl_model_batch_t *b, uint32_t *next,
                             float *logits)
{
    return sl_model_forward_stage(m, b, NULL, NULL, next, logits);
}

sl_status_t sl_model_forward_stage(sl_model_t *m, const sl_model_batch_t *b, const float *x_in,
                                   float *x_out, uint32_t *next, float *logits)
{
    bool first = sl_model_is_first(m), last = sl_model_is_last(m);
    if (first != !x_in || (!last && !x_out)) {
        SL_ERROR(
            "model: stage of layers %u-%u: residual stream %s", m->first, m->first + m->n_local - 1,
            first != !x_in ? (first ? "given to the first stage" : "missing") : "output missing");
        return SL_ERR_INVALID;
    }
    sl_status_t st = s_check_batch(m, b);
    if (st != SL_OK || b->n_rows == 0)
        return st;
    const sl_model_cfg_t *c = &m->cfg;
    sl_k_ctx_h ctx = m->ctx;
    uint32_t R = b->n_rows, D = c->dim, hd = m->head_dim;
    for (uint32_t s = 0; s < b->n_seqs; s++)
        memcpy(m->h_tables + (size_t)s * m->max_blocks, b->tables[s],
               b->n_table[s] * sizeof(uint32_t));
    S_TRY(sl_k_upload(ctx, m->d_tokens, b->tokens, R * 4));
    S_TRY(sl_k_upload(ctx, m->d_pos, b->pos, R * 4));
    S_TRY(sl_k_upload(ctx, m->d_row_seq, b->row_seq, R * 4));
    S_TRY(sl_k_upload(ctx, m->d_tables, m->h_tables, (size_t)b->n_seqs * m->max_blocks * 4));
    if (b->n_out)
        S_TRY(sl_k_upload(ctx, m->d_out_rows, b->out_rows, b->n_out * 4));

    sl_k_rows_t rows = {R, m->d_pos, m->d_row_seq, m->d_tables, m->max_blocks};
    size_t layer_floats = (size_t)2 * c->block_tokens * m->kv_dim;
    float scale = 1.0f / sqrtf((float)hd);
    if (first)
        S_TRY(sl_k_embed(ctx, m->embed, m->d_tokens, R, D, m->x));
    else
        S_TRY(sl_k_upload(ctx, m->x, x_in, (size_t)R * D * sizeof(float)));
    for (uint32_t l = 0; l < m->n_local; l++) {
        s_layer_t *L = &m->layers[l];
        float *kbase = m->kv_pool + l * layer_floats;
        sl_k_paged_t kv = {kbase,           kbase + (size_t)c->block_tokens * m->kv_dim,
                           m->block_floats, c->block_tokens,
                           c->n_kv_heads,   hd};
        S_TRY(sl_k_rmsnorm(ctx, m->x, L->attn_norm, R, D, c->norm_eps, m->xn));
        S_TRY(sl_k_linear(ctx, m->xn, R, &L->w[S_WQ], m->q));
        S_TRY(sl_k_linear(ctx, m->xn, R, &L->w[S_WK], m->k));
        S_TRY(sl_k_linear(ctx, m->xn, R, &L->w[S_WV], m->v));
        S_TRY(sl_k_rope(ctx, m->q, m->d_pos, R, c->n_heads, hd, c->rope_theta));
        S_TRY(sl_k_rope(ctx, m->k, m->d_pos, R, c->n_kv_heads, hd, c->rope_theta));
        S_TRY(sl_k_kv_write(ctx, &kv, &rows, m->k, m->v));
        S_TRY(sl_k_attn_paged(ctx, &kv, &rows, m->q, c->n_heads, scale, m->att));
        S_TRY(sl_k_linear(ctx, m->att, R, &L->w[S_WO], m->tmp));
        S_TRY(sl_k_add(ctx, m->x, m->tmp, (size_t)R * D));
        S_TRY(sl_k_rmsnorm(ctx, m->x, L->ffn_norm, R, D, c->norm_eps, m->xn));
        S_TRY(sl_k_linear(ctx, m->xn, R, &L->w[S_WGATE], m->gate));
        S_TRY(sl_k_linear(ctx, m->xn, R, &L->w[S_WUP], m->up));
        S_TRY(sl_k_swiglu(ctx, m->gate, m->up, (size_t)R * c->ffn_dim, m->gate));
        S_TRY(sl_k_linear(ctx, m->gate, R, &L->w[S_WDOWN], m->tmp));
        S_TRY(sl_k_add(ctx, m->x, m->tmp, (size_t)R * D));
    }
    if (!last)
        return sl_k_download(ctx, x_out, m->x, (size_t)R * D * sizeof(float));
    if (b->n_out == 0)
        return sl_k_sync(ctx);
    /* only the rows that sample go through the output layer */
    S_TRY(sl_k_embed(ctx, m->x, m->d_out_rows, b->n_out, D, m->xn));
    S_TRY(sl_k_rmsnorm(ctx, m->xn, m->final_norm, b->n_out, D, c->norm_eps, m->xn));
    S_TRY(sl_k_linear(ctx, m->xn, b->n_out, &m->lm_head, m->logits));
    S_TRY(sl_k_argmax(ctx, m->logits, b->n_out, c->vocab, m->d_next));
    S_TRY(sl_k_download(ctx, next, m->d_next, b->n_out * 4));
    if (logits)
        S_TRY(sl_k_download(ctx, logits, m->logits, (size_t)b->n_out * c->vocab * sizeof(float)));
    return SL_OK;
}

sl_status_t sl_model_generate(sl_model_t *m, const uint32_t *prompt, uint32_t n_prompt,
                              uint32_t max_new, uint32_t *out, float *logits)
{
    const sl_model_cfg_t *c = &m->cfg;
    uint32_t total = n_prompt + max_new;
    uint32_t n_blocks = (total + c->block_tokens - 1) / c->block_tokens;
    if (n_prompt == 0 || total > c->max_ctx || n_blocks > m->kv_blocks) {
        SL_ERROR("model: cannot generate %u tokens after %u (context %u, %u KV blocks)", max_new,
                 n_prompt, c->max_ctx, m->kv_blocks);
        return SL_ERR_INVALID;
    }
    uint32_t *table = malloc(n_blocks * 4), *pos = malloc(m->max_rows * 4);
    uint32_t *seq0 = calloc(m->max_rows, 4);
    sl_status_t st = SL_ERR_NOMEM;
    if (!table || !pos || !seq0) {
        SL_ERROR("model: out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < n_blocks; i++)
        table[i] = i;
    const uint32_t *tables[1] = {table};
    st = SL_OK;
    for (uint32_t done = 0; done < n_prompt && st == SL_OK;) {
        uint32_t n = n_prompt - done < m->max_rows ? n_prompt - done : m->max_rows;
        for (uint32_t i = 0; i < n; i++)
            pos[i] = done + i;
        uint32_t last = n - 1;
        int final = done + n == n_prompt;
        sl_model_batch_t b = {
            n, prompt + done, pos, seq0, 1, tables, &n_blocks, final && max_new ? 1u : 0u, &last};
        st = sl_model_forward(m, &b, out, logits);
        done += n;
    }
    for (uint32_t i = 1; i < max_new && st == SL_OK; i++) {
        uint32_t p = n_prompt + i - 1, zero = 0;
        sl_model_batch_t b = {1, &out[i - 1], &p, seq0, 1, tables, &n_blocks, 1, &zero};
        st = sl_model_forward(m, &b, &out[i], logits ? logits + (size_t)i * c->vocab : NULL);
    }
out:
    free(table);
    free(pos);
    free(seq0);
    return st;
}

/* --- files ---------------------------------------------------------------------------- */

sl_status_t sl_model_cfg_from_file(const char *path, sl_model_cfg_t *cfg)
{
    sl_st_t *st = NULL;
    sl_status_t rc = sl_st_open(path, &st);
    if (rc != SL_OK)
        return rc;
    sl_model_cfg_t c;
    memset(&c, 0, sizeof(c));
    sl_st_tensor_t t;
    char name[128];
    rc = SL_ERR_INVALID;
    if (sl_st_find(st, "model.embed_tokens.weight", &t) != SL_OK || t.ndim != 2) {
        SL_ERROR("model: %s has no 2-D model.embed_tokens.weight", path);
        goto out;
    }
    c.vocab = (uint32_t)t.shape[0];
    c.dim = (uint32_t)t.shape[1];
    while (snprintf(name, sizeof(name), "model.layers.%u.self_attn.q_proj.weight", c.n_layers),
           sl_st_find(st, name, &t) == SL_OK)
        c.n_layers++;
    if (sl_st_find(st, "model.layers.0.mlp.gate_proj.weight", &t) != SL_OK || t.ndim != 2 ||
        c.n_layers == 0) {
        SL_ERROR("model: %s has no layers (model.layers.0.mlp.gate_proj.weight)", path);
        goto out;
    }
    c.ffn_dim = (uint32_t)t.shape[0];
    const char *heads = sl_st_meta(st, "num_attention_heads");
    const char *ctxlen = sl_st_meta(st, "max_position_embeddings");
    c.n_heads = heads ? (uint32_t)strtoul(heads, NULL, 10) : c.dim / 64;
    if (!c.n_heads || sl_st_find(st, "model.layers.0.self_attn.k_proj.weight", &t) != SL_OK ||
        t.ndim != 2) {
        SL_ERROR("model: %s: cannot tell the head layout", path);
        goto out;
    }
    c.n_kv_heads = (uint32_t)(t.shape[0] / (c.dim / c.n_heads));
    c.block_tokens = 16;
    c.max_ctx = ctxlen ? (uint32_t)strtoul(ctxlen, NULL, 10) : 2048;
    const char *theta = sl_st_meta(st, "rope_theta");
    c.rope_theta = theta ? strtof(theta, NULL) : 10000.0f;
    c.norm_eps = 1e-5f;
    *cfg = c;
    rc = SL_OK;
out:
    sl_st_close(&st);
    return rc;
}

sl_status_t sl_model_write_synthetic(const sl_model_cfg_t *cfg, uint64_t seed, const char *path)
{
    sl_status_t st = s_check_cfg(cfg, SL_K_F32);
    if (st != SL_OK)
        return st;
    size_t n = 3 + (size_t)cfg->n_layers * S_LAYER_TENSORS;
    sl_st_write_tensor_t *ts = calloc(n, sizeof(*ts));
    char(*names)[128] = calloc(n, sizeof(*names));
    s_src_t src = {cfg, seed, NULL};
    st = SL_ERR_NOMEM;
    if (!ts || !names)
        goto out;
    size_t k = 0;
    const char *top[3] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"};
    for (int i = 0; i < 3; i++, k++) {
        snprintf(names[k], sizeof(names[k]), "%s", top[i]);
        ts[k].ndim = i < 2 ? 2 : 1;
        ts[k].shape[0] = i < 2 ? cfg->vocab : cfg->dim;
        ts[k].shape[1] = cfg->dim;
    }
    for (uint32_t l = 0; l < cfg->n_layers; l++)
        for (int i = 0; i < S_LAYER_TENSORS; i++, k++) {
            int out_proj;
            s_layer_tensor(cfg, i, l, names[k], sizeof(names[k]), &ts[k].ndim, ts[k].shape,
                           &out_proj);
        }
    for (k = 0; k < n; k++) {
        ts[k].name = names[k];
        size_t cnt =
            ts[k].ndim == 2 ? (size_t)(ts[k].shape[0] * ts[k].shape[1]) : (size_t)ts[k].shape[0];
        float *d = malloc(cnt * sizeof(float));
        if (!d)
            goto out;
        int out_proj = strstr(names[k], "o_proj") || strstr(names[k], "down_proj");
        s_synth(&src, names[k], ts[k].ndim, ts[k].shape, out_proj, d);
        ts[k].data = d;
    }
    char heads[16], kvh[16], ctxlen[16];
    snprintf(heads, sizeof(heads), "%u", cfg->n_heads);
    snprintf(kvh, sizeof(kvh), "%u", cfg->n_kv_heads);
    snprintf(ctxlen, sizeof(ctxlen), "%u", cfg->max_ctx);
    const char *meta[] = {"num_attention_heads",     heads, "num_key_value_heads", kvh,
                          "max_position_embeddings", ctxlen};
    st = sl_st_write(path, ts, n, meta, 3);
out:
    if (st == SL_ERR_NOMEM)
        SL_ERROR("model: out of memory writing %s", path);
    for (k = 0; ts && k < n; k++)
        free((void *)ts[k].data);
    free(ts);
    free(names);
    return st;
}
