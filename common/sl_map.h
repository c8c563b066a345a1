/*
 * Hash map from uint64_t keys to non-NULL pointers. Open addressing with
 * linear probing and backward-shift deletion: no tombstones, so lookups stay
 * short under endless insert/delete churn (jobs, KV block hashes).
 */
#ifndef SL_MAP_H
#define SL_MAP_H

#include <sluice/status.h>

#include <stddef.h>
#include <stdint.h>

typedef struct sl_map_entry {
    uint64_t key; /* the key */
    void *value;  /* NULL marks an empty slot */
} sl_map_entry_t;

typedef struct sl_map {
    sl_map_entry_t *slots; /* capacity slots, capacity a power of two */
    size_t capacity;       /* number of slots */
    size_t count;          /* occupied slots */
} sl_map_t;

/* Initialise an empty map (no allocation until the first put). */
void sl_map_init(sl_map_t *map);
/* Free the slots; values are not touched. */
void sl_map_fini(sl_map_t *map);
/* Value for key, or NULL. */
void *sl_map_get(const sl_map_t *map, uint64_t key);
/* Insert or replace; value must be non-NULL. SL_ERR_NOMEM leaves the map unchanged. */
sl_status_t sl_map_put(sl_map_t *map, uint64_t key, void *value);
/* Replace the value of a present key (nothing allocated, so it cannot fail);
 * returns the old value, or NULL (map unchanged) when key is absent. */
void *sl_map_swap(sl_map_t *map, uint64_t key, void *value);
/* Start loading the slot where key lives or would go (a cache hint for a
 * get, put or del soon after; changes nothing). */
void sl_map_prefetch(const sl_map_t *map, uint64_t key);
/* Remove key; returns its value or NULL if absent. */
void *sl_map_del(sl_map_t *map, uint64_t key);
static inline size_t sl_map_count(const sl_map_t *map)
{
    return map->count;
}
/* Iterate: start with *iter = 0; returns 0 at the end. Do not modify the map meanwhile. */
int sl_map_next(const sl_map_t *map, size_t *iter, uint64_t *key_p, void **value_p);

#endif
