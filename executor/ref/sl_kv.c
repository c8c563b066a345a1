/*
 * KV manager: block pool, per-sequence block tables, prefix cache.
 *
 * The idea (vLLM's automatic prefix caching): a full prompt block is named
 * by a hash chained over every token before it, so a dictionary from hash to
 * block finds the longest cached prefix of a new prompt one block at a time.
 * Blocks are reference-counted; a block that nobody references but whose
 * hash is published stays cached on an LRU list and is evicted (its hash
 * reported) only when a fresh block is needed and the free stack is empty.
 * A released sequence puts its blocks on the LRU list last block first, so
 * the deep end of a chain is evicted before its root (a block is useless
 * without the blocks before it).
 *
 * A sequence reserves all the blocks it can ever need at admission, so a
 * running batch never fails for lack of KV and admission is the one place
 * that says "not now" (SL_ERR_AGAIN). Rejected: growing tables on demand
 * with preemption (more throughput under pressure, but a step could then
 * fail or recompute, which the engine contract does not provide for).
 */
#include "executor/ref/sl_kv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_hash.h"
#include "common/sl_list.h"
#include "common/sl_log.h"
#include "common/sl_map.h"

typedef struct s_block {
    uint64_t hash;  /* chained hash, valid when published */
    uint32_t ref;   /* sequences holding the block */
    bool published; /* in the hash map (cached for reuse) */
    sl_list_t lru;  /* on the LRU list when published and ref == 0 */
} s_block_t;

struct sl_kv {
    sl_kv_cfg_t cfg;    /* sizes and event callbacks */
    s_block_t *blocks;  /* n_blocks entries */
    uint32_t *free_ids; /* stack of free block ids */
    uint32_t n_free;    /* entries on the free stack */
    uint32_t n_cached;  /* blocks on the LRU list */
    sl_list_t lru;      /* unreferenced published blocks, least recently used first */
    sl_map_t by_hash;   /* published hash -> s_block_t */
};

struct sl_kv_seq {
    uint32_t n_blocks;      /* entries of table */
    uint32_t n_prompt_full; /* full prompt blocks (hashes known) */
    uint32_t n_hit;         /* leading blocks reused from the cache */
    uint32_t *table;        /* block ids */
    uint64_t *hashes;       /* chained hashes of the full prompt blocks */
};

sl_status_t sl_kv_create(const sl_kv_cfg_t *cfg, sl_kv_t **kv_p)
{
    if (!cfg->n_blocks || !cfg->block_tokens) {
        SL_ERROR("kv: a pool needs blocks (%u) of at least one token (%u)", cfg->n_blocks,
                 cfg->block_tokens);
        return SL_ERR_INVALID;
    }
    sl_kv_t *kv = calloc(1, sizeof(*kv));
    if (!kv)
        goto err_nomem;
    kv->blocks = calloc(cfg->n_blocks, sizeof(*kv->blocks));
    kv->free_ids = malloc(cfg->n_blocks * sizeof(*kv->free_ids));
    if (!kv->blocks || !kv->free_ids)
        goto err_free_kv;
    kv->cfg = *cfg;
    for (uint32_t i = 0; i < cfg->n_blocks; i++) {
        kv->free_ids[i] = cfg->n_blocks - 1 - i; /* pop order 0, 1, 2, ... */
        sl_list_init(&kv->blocks[i].lru);
    }
    kv->n_free = cfg->n_blocks;
    sl_list_init(&kv->lru);
    sl_map_init(&kv->by_hash);
    *kv_p = kv;
    return SL_OK;

err_free_kv:
    free(kv->blocks);
    free(kv->free_ids);
    free(kv);
err_nomem:
    SL_ERROR("kv: out of memory for a pool of %u blocks", cfg->n_blocks);
    return SL_ERR_NOMEM;
}

void sl_kv_destroy(sl_kv_t **kv_p)
{
    if (!kv_p || !*kv_p)
        return;
    sl_kv_t *kv = *kv_p;
    sl_map_fini(&kv->by_hash);
    free(kv->blocks);
    free(kv->free_ids);
    free(kv);
    *kv_p = NULL;
}

static uint32_t s_id(const sl_kv_t *kv, const s_block_t *b)
{
    return (uint32_t)(b - kv->blocks);
}

/* Take a block for a new sequence: the free stack first, else evict the LRU head. */
static uint32_t s_take(sl_kv_t *kv)
{
    if (kv->n_free)
        return kv->free_ids[--kv->n_free];
    sl_list_t *e = sl_list_pop_front(&kv->lru);
    s_block_t *b = SL_CONTAINER_OF(e, s_block_t, lru);
    kv->n_cached--;
    sl_map_del(&kv->by_hash, b->hash);
    b->published = false;
    if (kv->cfg.events.evicted)
        kv->cfg.events.evicted(kv->cfg.events.arg, b->hash);
    return s_id(kv, b);
}

sl_status_t sl_kv_seq_admit(sl_kv_t *kv, const uint32_t *tokens, uint32_t n_prompt,
                            const uint64_t *hashes, uint32_t capacity_tokens, sl_kv_seq_t **seq_p,
                            uint32_t *cached_tokens_p)
{
    uint32_t bt = kv->cfg.block_tokens;
    if (n_prompt == 0 || capacity_tokens < n_prompt || (!tokens && !hashes)) {
        SL_ERROR("kv: bad sequence (%u prompt tokens, capacity %u)", n_prompt, capacity_tokens);
        return SL_ERR_INVALID;
    }
    uint32_t n_blocks = (capacity_tokens + bt - 1) / bt;
    if (n_blocks > kv->cfg.n_blocks) {
        SL_ERROR("kv: a sequence of %u tokens needs %u blocks, the pool has %u", capacity_tokens,
                 n_blocks, kv->cfg.n_blocks);
        return SL_ERR_INVALID;
    }
    sl_kv_seq_t *seq = calloc(1, sizeof(*seq));
    uint32_t n_full = n_prompt / bt;
    if (!seq)
        goto err_nomem;
    seq->table = malloc(n_blocks * sizeof(*seq->table));
    seq->hashes = malloc((n_full ? n_full : 1) * sizeof(*seq->hashes));
    if (!seq->table || !seq->hashes)
        goto err_free_seq;
    seq->n_blocks = n_blocks;
    seq->n_prompt_full = n_full;
    if (hashes)
        memcpy(seq->hashes, hashes, (size_t)n_full * sizeof(*seq->hashes));
    else
        sl_hash_kv_blocks(tokens, n_prompt, bt, seq->hashes, n_full);

    /* longest cached prefix, leaving the block of the last prompt token to compute */
    uint32_t max_hit = (n_prompt - 1) / bt, hit = 0, pinned_idle = 0;
    for (; hit < max_hit; hit++) {
        s_block_t *b = sl_map_get(&kv->by_hash, seq->hashes[hit]);
        if (!b)
            break;
        seq->table[hit] = s_id(kv, b);
        pinned_idle += b->ref == 0;
    }
    if (n_blocks - hit > kv->n_free + kv->n_cached - pinned_idle) {
        free(seq->table);
        free(seq->hashes);
        free(seq);
        return SL_ERR_AGAIN;
    }
    for (uint32_t i = 0; i < hit; i++) {
        s_block_t *b = &kv->blocks[seq->table[i]];
        if (b->ref++ == 0) {
            sl_list_del(&b->lru);
            kv->n_cached--;
        }
    }
    for (uint32_t i = hit; i < n_blocks; i++) {
        uint32_t id = s_take(kv);
        kv->blocks[id].ref = 1;
        seq->table[i] = id;
    }
    seq->n_hit = hit;
    *seq_p = seq;
    *cached_tokens_p = hit * bt;
    return SL_OK;

err_free_seq:
    free(seq->table);
    free(seq->hashes);
    free(seq);
err_nomem:
    SL_ERROR("kv: out of memory for a block table of %u blocks", n_blocks);
    return SL_ERR_NOMEM;
}

sl_status_t sl_kv_seq_hold(sl_kv_t *kv, const uint64_t *hashes, uint32_t n, sl_kv_seq_t **seq_p,
                           uint32_t *n_found_p)
{
    uint32_t hit = 0;
    while (hit < n && sl_map_get(&kv->by_hash, hashes[hit]))
        hit++;
    *n_found_p = hit;
    if (hit == 0)
        return SL_ERR_NOT_FOUND;
    sl_kv_seq_t *seq = calloc(1, sizeof(*seq));
    if (!seq || !(seq->table = malloc(hit * sizeof(*seq->table))) ||
        !(seq->hashes = malloc(hit * sizeof(*seq->hashes)))) {
        if (seq)
            free(seq->table);
        free(seq);
        return SL_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < hit; i++) {
        s_block_t *b = sl_map_get(&kv->by_hash, hashes[i]);
        seq->table[i] = s_id(kv, b);
        seq->hashes[i] = hashes[i];
        if (b->ref++ == 0) {
            sl_list_del(&b->lru);
            kv->n_cached--;
        }
    }
    seq->n_blocks = seq->n_prompt_full = seq->n_hit = hit;
    *seq_p = seq;
    return SL_OK;
}

void sl_kv_seq_commit(sl_kv_t *kv, sl_kv_seq_t *seq)
{
    for (uint32_t i = seq->n_hit; i < seq->n_prompt_full; i++) {
        s_block_t *b = &kv->blocks[seq->table[i]];
        if (b->published || sl_map_get(&kv->by_hash, seq->hashes[i]))
            continue;
        if (sl_map_put(&kv->by_hash, seq->hashes[i], b) != SL_OK) {
            SL_WARN("kv: out of memory publishing a block; it stays private");
            continue;
        }
        b->hash = seq->hashes[i];
        b->published = true;
        if (kv->cfg.events.stored)
            kv->cfg.events.stored(kv->cfg.events.arg, b->hash);
    }
    seq->n_hit = seq->n_prompt_full; /* committed once */
}

void sl_kv_seq_release(sl_kv_t *kv, sl_kv_seq_t **seq_p)
{
    if (!seq_p || !*seq_p)
        return;
    sl_kv_seq_t *seq = *seq_p;
    for (uint32_t i = seq->n_blocks; i-- > 0;) {
        s_block_t *b = &kv->blocks[seq->table[i]];
        if (--b->ref)
            continue;
        if (b->published) {
            sl_list_push_back(&kv->lru, &b->lru);
            kv->n_cached++;
        } else {
            kv->free_ids[kv->n_free++] = seq->table[i];
        }
    }
    free(seq->table);
    free(seq->hashes);
    free(seq);
    *seq_p = NULL;
}

const uint32_t *sl_kv_seq_table(const sl_kv_seq_t *seq, uint32_t *n_blocks_p)
{
    *n_blocks_p = seq->n_blocks;
    return seq->table;
}

void sl_kv_stats(const sl_kv_t *kv, sl_kv_stats_t *stats)
{
    stats->free = kv->n_free;
    stats->cached = kv->n_cached;
    stats->referenced = kv->cfg.n_blocks - kv->n_free - kv->n_cached;
}
