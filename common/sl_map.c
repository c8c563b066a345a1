/*
 * uint64 -> pointer hash map (see sl_map.h). Keys are mixed with a bijective
 * function so sequential ids spread over the table; the table doubles at 70%
 * load. Chaining was rejected for its per-node allocations on the hot path.
 */
#include "common/sl_map.h"
#include "common/sl_hash.h"

#include <stdlib.h>

void sl_map_init(sl_map_t *map)
{
    map->slots = NULL;
    map->capacity = 0;
    map->count = 0;
}

void sl_map_fini(sl_map_t *map)
{
    free(map->slots);
    sl_map_init(map);
}

static size_t s_home(const sl_map_t *map, uint64_t key)
{
    return (size_t)sl_hash_mix64(key) & (map->capacity - 1);
}

void *sl_map_get(const sl_map_t *map, uint64_t key)
{
    if (!map->capacity)
        return NULL;
    size_t mask = map->capacity - 1;
    for (size_t i = s_home(map, key);; i = (i + 1) & mask) {
        sl_map_entry_t *e = &map->slots[i];
        if (!e->value)
            return NULL;
        if (e->key == key)
            return e->value;
    }
}

static void s_insert(sl_map_t *map, uint64_t key, void *value)
{
    size_t mask = map->capacity - 1;
    for (size_t i = s_home(map, key);; i = (i + 1) & mask) {
        sl_map_entry_t *e = &map->slots[i];
        if (!e->value) {
            e->key = key;
            e->value = value;
            map->count++;
            return;
        }
        if (e->key == key) {
            e->value = value;
            return;
        }
    }
}

static sl_status_t s_grow(sl_map_t *map)
{
    size_t cap = map->capacity ? map->capacity * 2 : 16;
    sl_map_entry_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return SL_ERR_NOMEM;
    sl_map_t old = *map;
    map->slots = slots;
    map->capacity = cap;
    map->count = 0;
    for (size_t i = 0; i < old.capacity; i++)
        if (old.slots[i].value)
            s_insert(map, old.slots[i].key, old.slots[i].value);
    free(old.slots);
    return SL_OK;
}

sl_status_t sl_map_put(sl_map_t *map, uint64_t key, void *value)
{
    if (!value)
        return SL_ERR_INVALID;
    if ((map->count + 1) * 10 > map->capacity * 7) {
        sl_status_t st = s_grow(map);
        if (st != SL_OK)
            return st;
    }
    s_insert(map, key, value);
    return SL_OK;
}

void *sl_map_swap(sl_map_t *map, uint64_t key, void *value)
{
    if (!map->capacity || !value)
        return NULL;
    size_t mask = map->capacity - 1;
    for (size_t i = s_home(map, key); map->slots[i].value; i = (i + 1) & mask)
        if (map->slots[i].key == key) {
            void *old = map->slots[i].value;
            map->slots[i].value = value;
            return old;
        }
    return NULL;
}

void sl_map_prefetch(const sl_map_t *map, uint64_t key)
{
    if (map->capacity)
        __builtin_prefetch(&map->slots[s_home(map, key)]);
}

void *sl_map_del(sl_map_t *map, uint64_t key)
{
    if (!map->capacity)
        return NULL;
    size_t mask = map->capacity - 1;
    size_t i = s_home(map, key);
    for (;; i = (i + 1) & mask) {
        if (!map->slots[i].value)
            return NULL;
        if (map->slots[i].key == key)
            break;
    }
    void *value = map->slots[i].value;
    /* Backward-shift: move later entries of the cluster into the hole when
     * their home position allows it. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; map->slots[j].value; j = (j + 1) & mask) {
        size_t home = s_home(map, map->slots[j].key);
        /* entry j may move to hole if home is not in (hole, j] cyclically */
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            map->slots[hole] = map->slots[j];
            hole = j;
        }
    }
    map->slots[hole].value = NULL;
    map->slots[hole].key = 0;
    map->count--;
    return value;
}

int sl_map_next(const sl_map_t *map, size_t *iter, uint64_t *key_p, void **value_p)
{
    for (size_t i = *iter; i < map->capacity; i++) {
        if (map->slots[i].value) {
            if (key_p)
                *key_p = map->slots[i].key;
            if (value_p)
                *value_p = map->slots[i].value;
            *iter = i + 1;
            return 1;
        }
    }
    *iter = map->capacity;
    return 0;
}
