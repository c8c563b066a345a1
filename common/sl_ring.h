/*
 * FIFO ring of pointers that grows in powers of two: the client's queue of
 * completions not yet handed out.
 *
 * Push and pop are inline (the client does one of each per job); room is
 * reserved ahead with sl_ring_reserve() by a caller that must not fail later,
 * and sl_ring_remove() takes one item out of the middle keeping the others
 * in order (a blocking call waiting for one job among many).
 */
#ifndef SL_RING_H
#define SL_RING_H

#include <sluice/status.h>

#include <stddef.h>

typedef struct sl_ring {
    void **slots; /* cap slots (owned) */
    size_t head;  /* slot of the oldest item */
    size_t len;   /* items in the ring */
    size_t cap;   /* slots, zero or a power of two */
} sl_ring_t;

/* Initialise an empty ring (no allocation until the first reserve or push). */
void sl_ring_init(sl_ring_t *ring);
/* Free the slots; the items are not touched. */
void sl_ring_fini(sl_ring_t *ring);
/* Make room for need items in all, so that pushes up to that many cannot
 * fail; the order is kept. SL_ERR_NOMEM leaves the ring unchanged. */
sl_status_t sl_ring_reserve(sl_ring_t *ring, size_t need);
/* Take out the i-th oldest item (i < len), keeping the others in order. */
void *sl_ring_remove(sl_ring_t *ring, size_t i);

static inline size_t sl_ring_len(const sl_ring_t *ring)
{
    return ring->len;
}

/* The i-th oldest item (i < len), left in place. */
static inline void *sl_ring_at(const sl_ring_t *ring, size_t i)
{
    return ring->slots[(ring->head + i) & (ring->cap - 1)];
}

/* Append item (not owned), growing the ring when it is full. SL_ERR_NOMEM
 * leaves the ring unchanged; never fails within reserved room. */
static inline sl_status_t sl_ring_push(sl_ring_t *ring, void *item)
{
    if (ring->len == ring->cap) {
        sl_status_t st = sl_ring_reserve(ring, ring->len + 1);
        if (st != SL_OK)
            return st;
    }
    ring->slots[(ring->head + ring->len) & (ring->cap - 1)] = item;
    ring->len++;
    return SL_OK;
}

/* Take out the oldest item; NULL when empty. */
static inline void *sl_ring_pop(sl_ring_t *ring)
{
    if (ring->len == 0)
        return NULL;
    void *item = ring->slots[ring->head];
    ring->head = (ring->head + 1) & (ring->cap - 1);
    ring->len--;
    return item;
}

#endif
