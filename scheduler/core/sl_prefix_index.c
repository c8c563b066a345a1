/*
 * The prefix index (see sl_prefix_index.h).
 *
 * Idea: one entry per block hash with a small inline set of holders (at most
 * SL_PREFIX_MAX_HOLDERS executor indices; when a block is on more executors
 * than that, the oldest holder is forgotten, since a policy needs a few good
 * places for a prefix, not all of them). Entries sit in an LRU list ordered
 * by their last store; when the index is full the oldest entry is dropped,
 * so memory stays bounded under an endless stream of new prefixes.
 * A prompt's match walks its blocks once, narrowing the set of executors
 * that hold every block so far, so the cost does not grow with the cluster.
 *
 * Alternatives rejected: a radix tree over token ids (the executors already
 * give chained block hashes, so a flat hash map is equivalent and smaller);
 * a per-executor bitmap per hash (memory grows with the cluster size);
 * no bound (a week of unique prompts would exhaust memory).
 */
#include "scheduler/core/sl_prefix_index.h"
#include "common/sl_list.h"
#include "common/sl_map.h"

#include <stdbool.h>

#include <stdlib.h>
#include <string.h>

typedef struct s_entry {
    uint64_t hash;                           /* block hash */
    uint32_t holders[SL_PREFIX_MAX_HOLDERS]; /* executor indices, oldest first */
    uint32_t n_holders;                      /* entries of holders */
    bool crowded;                            /* held by more executors than listed */
    sl_list_t lru;                           /* position in the LRU (front = oldest) */
} s_entry_t;

struct sl_prefix_index {
    sl_map_t map;          /* hash -> s_entry_t */
    sl_list_t lru;         /* entries, least recently stored first */
    size_t max_entries;    /* bound on map size */
    uint32_t max_execs;    /* executor indices are below this */
    uint64_t *exec_blocks; /* per executor: blocks indexed */
    uint64_t dropped;      /* entries forgotten for room */
    uint64_t gen;          /* bumped by every change (sl_prefix_index_gen) */
};

sl_status_t sl_prefix_index_create(size_t max_entries, uint32_t max_execs,
                                   sl_prefix_index_t **index_p)
{
    if (max_entries == 0 || max_execs == 0)
        return SL_ERR_INVALID;
    sl_prefix_index_t *x = calloc(1, sizeof(*x));
    if (!x)
        return SL_ERR_NOMEM;
    x->exec_blocks = calloc(max_execs, sizeof(*x->exec_blocks));
    if (!x->exec_blocks) {
        free(x);
        return SL_ERR_NOMEM;
    }
    sl_map_init(&x->map);
    sl_list_init(&x->lru);
    x->max_entries = max_entries;
    x->max_execs = max_execs;
    *index_p = x;
    return SL_OK;
}

void sl_prefix_index_destroy(sl_prefix_index_t **index_p)
{
    sl_prefix_index_t *x = *index_p;
    if (!x)
        return;
    while (!sl_list_empty(&x->lru))
        free(SL_CONTAINER_OF(sl_list_pop_front(&x->lru), s_entry_t, lru));
    sl_map_fini(&x->map);
    free(x->exec_blocks);
    free(x);
    *index_p = NULL;
}

static void s_entry_drop(sl_prefix_index_t *x, s_entry_t *en)
{
    for (uint32_t i = 0; i < en->n_holders; i++)
        x->exec_blocks[en->holders[i]]--;
    sl_list_del(&en->lru);
    sl_map_del(&x->map, en->hash);
    free(en);
}

sl_status_t sl_prefix_index_stored(sl_prefix_index_t *x, uint32_t exec, uint64_t hash)
{
    if (exec >= x->max_execs)
        return SL_ERR_INVALID;
    x->gen++;
    s_entry_t *en = sl_map_get(&x->map, hash);
    if (!en) {
        if (sl_map_count(&x->map) >= x->max_entries && !sl_list_empty(&x->lru)) {
            s_entry_drop(x, SL_CONTAINER_OF(x->lru.next, s_entry_t, lru));
            x->dropped++;
        }
        en = calloc(1, sizeof(*en));
        if (!en)
            return SL_ERR_NOMEM;
        en->hash = hash;
        if (sl_map_put(&x->map, hash, en) != SL_OK) {
            free(en);
            return SL_ERR_NOMEM;
        }
        sl_list_push_back(&x->lru, &en->lru);
    } else {
        sl_list_del(&en->lru);
        sl_list_push_back(&x->lru, &en->lru);
    }
    for (uint32_t i = 0; i < en->n_holders; i++) {
        if (en->holders[i] == exec) {
            /* Move to the newest position. */
            memmove(&en->holders[i], &en->holders[i + 1],
                    (en->n_holders - i - 1) * sizeof(uint32_t));
            en->holders[en->n_holders - 1] = exec;
            return SL_OK;
        }
    }
    if (en->n_holders == SL_PREFIX_MAX_HOLDERS) {
        en->crowded = true; /* a hot block (a shared system prompt): likely everywhere */
        x->exec_blocks[en->holders[0]]--;
        memmove(&en->holders[0], &en->holders[1], (SL_PREFIX_MAX_HOLDERS - 1) * sizeof(uint32_t));
        en->n_holders--;
    }
    en->holders[en->n_holders++] = exec;
    x->exec_blocks[exec]++;
    return SL_OK;
}

void sl_prefix_index_evicted(sl_prefix_index_t *x, uint32_t exec, uint64_t hash)
{
    x->gen++;
    s_entry_t *en = sl_map_get(&x->map, hash);
    if (!en)
        return;
    for (uint32_t i = 0; i < en->n_holders; i++) {
        if (en->holders[i] != exec)
            continue;
        memmove(&en->holders[i], &en->holders[i + 1], (en->n_holders - i - 1) * sizeof(uint32_t));
        en->n_holders--;
        x->exec_blocks[exec]--;
        if (en->n_holders == 0)
            s_entry_drop(x, en);
        return;
    }
}

void sl_prefix_index_reset(sl_prefix_index_t *x, uint32_t exec)
{
    if (exec >= x->max_execs || x->exec_blocks[exec] == 0)
        return;
    x->gen++;
    sl_list_t *pos, *tmp;
    sl_list_for_each_safe(pos, tmp, &x->lru)
    {
        s_entry_t *en = SL_CONTAINER_OF(pos, s_entry_t, lru);
        sl_prefix_index_evicted(x, exec, en->hash);
    }
}

size_t sl_prefix_index_match(const sl_prefix_index_t *x, const uint64_t *hashes, uint32_t n,
                             sl_prefix_hit_t *out, size_t cap, uint32_t *common_p)
{
    /* Leading crowded blocks are taken as held by every executor: the
     * holder list of a block that more than SL_PREFIX_MAX_HOLDERS executors
     * stored says little about who else has it, and without this the
     * executors left off the list of a shared first block would never
     * match the rest of a prompt they do hold. */
    uint32_t b = 0;
    const s_entry_t *en = NULL;
    while (b < n && (en = sl_map_get(&x->map, hashes[b])) != NULL && en->crowded)
        b++;
    *common_p = b;
    if (b == n || !en || cap == 0)
        return 0;
    size_t m = 0;
    for (uint32_t i = 0; i < en->n_holders && m < cap; i++)
        out[m++] = (sl_prefix_hit_t){.exec = en->holders[i], .blocks = b + 1};
    /* An executor still matches after block b while its count equals b;
     * each one advances while it holds the next block (or the block is
     * crowded), and the walk stops when none is left. */
    size_t live = m;
    for (b = b + 1; b < n && live > 0; b++) {
        en = sl_map_get(&x->map, hashes[b]);
        if (!en)
            break;
        size_t still = 0;
        for (size_t k = 0; k < m; k++) {
            if (out[k].blocks != b)
                continue; /* dropped out earlier */
            bool has = en->crowded;
            for (uint32_t i = 0; i < en->n_holders && !has; i++)
                has = en->holders[i] == out[k].exec;
            if (has) {
                out[k].blocks++;
                still++;
            }
        }
        live = still;
    }
    return m;
}

uint64_t sl_prefix_index_gen(const sl_prefix_index_t *x)
{
    return x->gen;
}

size_t sl_prefix_index_entries(const sl_prefix_index_t *x)
{
    return sl_map_count(&x->map);
}

uint64_t sl_prefix_index_exec_blocks(const sl_prefix_index_t *x, uint32_t exec)
{
    return exec < x->max_execs ? x->exec_blocks[exec] : 0;
}

uint64_t sl_prefix_index_dropped(const sl_prefix_index_t *x)
{
    return x->dropped;
}
