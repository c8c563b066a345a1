/*
 * The cluster-wide prefix index: KV block hash -> the executors that hold
 * that block, fed by the executors' stored/evicted events. A policy asks how
 * many leading blocks of a prompt each executor already caches.
 *
 * Bounded: at most max_entries hashes are remembered; beyond that the least
 * recently stored hash is forgotten (a cache hit then goes unnoticed, which
 * only costs placement quality, never correctness).
 */
#ifndef SL_PREFIX_INDEX_H
#define SL_PREFIX_INDEX_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

#define SL_PREFIX_MAX_HOLDERS 8 /* executors remembered per block (most recent) */

typedef struct sl_prefix_index sl_prefix_index_t;

/* One executor's leading-block match for a prompt. */
typedef struct sl_prefix_hit {
    uint32_t exec;   /* executor index */
    uint32_t blocks; /* leading blocks of the prompt it caches */
} sl_prefix_hit_t;

/* Create an index of at most max_entries hashes over executor indices
 * below max_execs. On error *index_p is unchanged. */
sl_status_t sl_prefix_index_create(size_t max_entries, uint32_t max_execs,
                                   sl_prefix_index_t **index_p);
/* Free it; NULL-safe, sets *index_p = NULL. */
void sl_prefix_index_destroy(sl_prefix_index_t **index_p);
/* exec now caches block hash. SL_ERR_NOMEM leaves the index unchanged. */
sl_status_t sl_prefix_index_stored(sl_prefix_index_t *index, uint32_t exec, uint64_t hash);
/* exec dropped block hash (unknown pairs are ignored). */
void sl_prefix_index_evicted(sl_prefix_index_t *index, uint32_t exec, uint64_t hash);
/* exec lost its whole cache (restart, loss). O(entries). */
void sl_prefix_index_reset(sl_prefix_index_t *index, uint32_t exec);
/*
 * For the prompt whose block hashes are hashes[0..n): *common_p = how many
 * leading blocks are crowded (stored by more executors than a block lists,
 * so taken as cached everywhere); into out (up to cap entries) every
 * executor known to cache more than that, with how many leading blocks it
 * caches. Returns the number of entries written.
 * O(n * SL_PREFIX_MAX_HOLDERS).
 */
size_t sl_prefix_index_match(const sl_prefix_index_t *index, const uint64_t *hashes, uint32_t n,
                             sl_prefix_hit_t *out, size_t cap, uint32_t *common_p);
/* A number that changes whenever what sl_prefix_index_match could return
 * may have changed (a store, an eviction, a reset), so a caller may keep a
 * match while it stays the same. */
uint64_t sl_prefix_index_gen(const sl_prefix_index_t *index);
/* Hashes indexed now. */
size_t sl_prefix_index_entries(const sl_prefix_index_t *index);
/* Blocks exec is known to cache. */
uint64_t sl_prefix_index_exec_blocks(const sl_prefix_index_t *index, uint32_t exec);
/* Hashes forgotten because the index was full. */
uint64_t sl_prefix_index_dropped(const sl_prefix_index_t *index);

#endif
