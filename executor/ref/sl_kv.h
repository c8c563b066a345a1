/*
 * KV manager: a pool of fixed-size KV blocks, block tables per sequence, and
 * a prefix cache keyed by chained block hashes.
 *
 * Block i of a prompt (block_tokens tokens) has the hash
 *   h_i = sl_hash_kv_block(h_{i-1}, tokens of block i), h_{-1} = 0 (common/sl_hash.h),
 * so a hash names a block together with everything before it, and equal
 * hashes mean equal KV. The scheduler computes the same hashes from token ids
 * with the same function to match prompts against its cluster-wide prefix
 * index. Only the manager's bookkeeping lives
 * here; the KV tensors themselves belong to the model, indexed by block id.
 */
#ifndef SL_KV_H
#define SL_KV_H

#include <sluice/status.h>

#include <stdint.h>

#include "executor/sl_backend.h"

typedef struct sl_kv sl_kv_t;         /* the pool and its prefix cache */
typedef struct sl_kv_seq sl_kv_seq_t; /* one sequence's block table */

/* What a KV manager is created from. */
typedef struct sl_kv_cfg {
    uint32_t n_blocks;         /* blocks in the pool */
    uint32_t block_tokens;     /* tokens per block */
    sl_backend_kv_cb_t events; /* stored / evicted hash reports (functions may be NULL) */
} sl_kv_cfg_t;

/* Occupancy of the pool. */
typedef struct sl_kv_stats {
    uint32_t referenced; /* blocks held by live sequences */
    uint32_t cached;     /* unreferenced blocks kept for their hash (evictable) */
    uint32_t free;       /* blocks holding nothing */
} sl_kv_stats_t;

/* Create a manager; *kv_p owns it. SL_ERR_INVALID for a zero size. */
sl_status_t sl_kv_create(const sl_kv_cfg_t *cfg, sl_kv_t **kv_p);
/* Destroy a manager (NULL-safe, sets *kv_p = NULL); every sequence must be released first.
 * Cached blocks are dropped without evicted reports (the executor is going away). */
void sl_kv_destroy(sl_kv_t **kv_p);

/*
 * Admit a sequence of capacity_tokens tokens whose first n_prompt tokens are
 * known: reuse every cached block of the longest cached prefix of the prompt
 * (never the block holding the last prompt token, whose logits must be
 * computed) and reserve fresh blocks for the rest, evicting least recently
 * used cached blocks as needed. hashes, when not NULL, gives the chained
 * hashes of the n_prompt / block_tokens full prompt blocks (trace replay);
 * otherwise they are computed from tokens.
 * On success *seq_p owns the table and *cached_tokens_p is the number of
 * prompt tokens whose KV is already in the reused blocks. SL_ERR_AGAIN when
 * the pool cannot hold it now (nothing changed); SL_ERR_INVALID when it could
 * never fit.
 */
sl_status_t sl_kv_seq_admit(sl_kv_t *kv, const uint32_t *tokens, uint32_t n_prompt,
                            const uint64_t *hashes, uint32_t capacity_tokens, sl_kv_seq_t **seq_p,
                            uint32_t *cached_tokens_p);
/* The prompt's KV is computed: publish its full blocks in the prefix cache
 * (reporting each newly stored hash). A block whose hash another sequence
 * already published stays private to this sequence. */
void sl_kv_seq_commit(sl_kv_t *kv, sl_kv_seq_t *seq);
/* Hold the longest cached prefix of the chained hashes[0..n) (a peer
 * fetches those blocks): a table of just those blocks, referenced so they
 * are not evicted until released. *n_found_p blocks (0: SL_ERR_NOT_FOUND,
 * nothing held). */
sl_status_t sl_kv_seq_hold(sl_kv_t *kv, const uint64_t *hashes, uint32_t n, sl_kv_seq_t **seq_p,
                           uint32_t *n_found_p);
/* Release a sequence (NULL-safe, sets *seq_p = NULL): published blocks stay
 * cached until evicted, the others are freed. */
void sl_kv_seq_release(sl_kv_t *kv, sl_kv_seq_t **seq_p);
/* The sequence's block table (one block id per block_tokens positions). */
const uint32_t *sl_kv_seq_table(const sl_kv_seq_t *seq, uint32_t *n_blocks_p);
/* Current occupancy. */
void sl_kv_stats(const sl_kv_t *kv, sl_kv_stats_t *stats);

#endif
