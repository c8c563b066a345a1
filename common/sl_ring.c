/*
 * FIFO ring of pointers (see sl_ring.h).
 *
 * Idea: a power-of-two array indexed with a mask; growing copies the items
 * oldest first to the start of the new array, so the mask changes with no
 * wrapped run to fix up.
 *
 * Rejected: a linked list of completions (a pointer chase and an allocation
 * per item on the client's per-job path); a fixed-size ring (the client's
 * completions are bounded by its pending jobs, which the user sizes).
 */
#include "common/sl_ring.h"

#include <stdlib.h>

void sl_ring_init(sl_ring_t *ring)
{
    *ring = (sl_ring_t){0};
}

void sl_ring_fini(sl_ring_t *ring)
{
    free(ring->slots);
    *ring = (sl_ring_t){0};
}

sl_status_t sl_ring_reserve(sl_ring_t *ring, size_t need)
{
    if (need <= ring->cap)
        return SL_OK;
    size_t cap = ring->cap ? ring->cap : 64;
    while (cap < need)
        cap *= 2;
    void **slots = malloc(cap * sizeof(*slots));
    if (!slots)
        return SL_ERR_NOMEM;
    for (size_t i = 0; i < ring->len; i++)
        slots[i] = sl_ring_at(ring, i);
    free(ring->slots);
    ring->slots = slots;
    ring->cap = cap;
    ring->head = 0;
    return SL_OK;
}

void *sl_ring_remove(sl_ring_t *ring, size_t i)
{
    size_t mask = ring->cap - 1;
    void *item = sl_ring_at(ring, i);
    for (size_t j = i; j + 1 < ring->len; j++)
        ring->slots[(ring->head + j) & mask] = ring->slots[(ring->head + j + 1) & mask];
    ring->len--;
    return item;
}
