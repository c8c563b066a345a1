/*
 * Binary min-heap of entries ordered by key: the timer heap of the client and
 * the event queue of the simulator.
 *
 * Each entry carries the caller's pointer and a word beside the key, so that
 * sifting compares inside the array instead of chasing a pointer per level.
 * A SL_HEAP_KEY_FIFO heap hands out equal keys in push order, so the order of
 * a run never depends on the heap's shape (the simulator); a SL_HEAP_KEY heap
 * hands them out in no set order and moves fewer entries among equal keys
 * (the client's timers, armed in batches at one instant).
 *
 * A heap made with an index offset keeps a size_t inside each pointed-to
 * item equal to that item's position (SL_HEAP_NO_INDEX while it is not in
 * the heap), which is what sl_heap_remove() needs to take an item out
 * before it is due.
 */
#ifndef SL_HEAP_H
#define SL_HEAP_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An item's index while it is not in the heap; as an index offset: items carry no index. */
#define SL_HEAP_NO_INDEX SIZE_MAX

typedef enum sl_heap_order {
    SL_HEAP_KEY,      /* by key; equal keys in no set order */
    SL_HEAP_KEY_FIFO, /* by key, then push order */
} sl_heap_order_t;

typedef struct sl_heap_entry {
    int64_t key;   /* smallest first */
    uint64_t seq;  /* push order, set by the heap (breaks ties in a SL_HEAP_KEY_FIFO heap) */
    void *ptr;     /* the caller's item (not owned) */
    uint64_t word; /* the caller's word */
} sl_heap_entry_t;

typedef struct sl_heap {
    sl_heap_entry_t *entries; /* the heap array (owned) */
    size_t len;               /* entries in use */
    size_t cap;               /* entries allocated */
    uint64_t next_seq;        /* seq of the next push */
    sl_heap_order_t order;    /* how equal keys come out */
    size_t idx_off;           /* offset of the size_t index inside *ptr, or SL_HEAP_NO_INDEX */
} sl_heap_t;

/* Initialise an empty heap (no allocation until the first push or reserve).
 * idx_off: offsetof the item's size_t index field, or SL_HEAP_NO_INDEX. */
void sl_heap_init(sl_heap_t *heap, sl_heap_order_t order, size_t idx_off);
/* Free the array; the items are not touched. */
void sl_heap_fini(sl_heap_t *heap);
/* Make room for cap entries in all, so that pushes up to that many cannot
 * fail. SL_ERR_NOMEM leaves the heap unchanged. */
sl_status_t sl_heap_reserve(sl_heap_t *heap, size_t cap);
/* Add an entry, growing the array when it is full. SL_ERR_NOMEM leaves the heap unchanged. */
sl_status_t sl_heap_push(sl_heap_t *heap, int64_t key, void *ptr, uint64_t word);
/* Take the smallest entry out into *entry_p; false (and *entry_p untouched) when empty. */
bool sl_heap_pop(sl_heap_t *heap, sl_heap_entry_t *entry_p);
/* Take out the entry at position i (an item's index; i < len). */
void sl_heap_remove(sl_heap_t *heap, size_t i);

/* The smallest entry, or NULL when empty; valid until the heap changes. */
static inline const sl_heap_entry_t *sl_heap_top(const sl_heap_t *heap)
{
    return heap->len > 0 ? &heap->entries[0] : NULL;
}

static inline size_t sl_heap_len(const sl_heap_t *heap)
{
    return heap->len;
}

#endif
