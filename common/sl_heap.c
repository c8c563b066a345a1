/*
 * Binary min-heap (see sl_heap.h).
 *
 * Idea: sift with a hole instead of swaps (the moving entry is written once,
 * at its final place), and the item's index slot written at every move when
 * the heap tracks indices: one predictable branch, no callback, so the
 * client's timer heap costs what its hand-written heap did.
 *
 * The push-order tie break is a choice of the heap, not a given: ordering
 * equal keys moves entries through runs of them that a key-only heap leaves
 * alone, which doubled the cost of the client's timers (armed 256 at a time
 * with one due time) in a test of its pattern, so the client does without it.
 *
 * Rejected: a compare function pointer per heap (an indirect call per level
 * on the client's per-job path, and the two orders are the only ones the
 * callers need); macros that stamp out one heap per entry type (a second
 * copy of the code per user is what this file removes).
 */
#include "common/sl_heap.h"

#include <stdlib.h>

static inline bool s_less(const sl_heap_t *heap, const sl_heap_entry_t *a, const sl_heap_entry_t *b)
{
    return a->key < b->key ||
           (heap->order == SL_HEAP_KEY_FIFO && a->key == b->key && a->seq < b->seq);
}

static inline void s_index_set(const sl_heap_t *heap, void *ptr, size_t i)
{
    if (heap->idx_off != SL_HEAP_NO_INDEX)
        *(size_t *)((char *)ptr + heap->idx_off) = i;
}

/* Write e at position i. */
static inline void s_put(sl_heap_t *heap, size_t i, const sl_heap_entry_t *e)
{
    heap->entries[i] = *e;
    s_index_set(heap, e->ptr, i);
}

/* Place e at hole i or above it. */
static void s_sift_up(sl_heap_t *heap, size_t i, const sl_heap_entry_t *e)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_less(heap, e, &heap->entries[parent]))
            break;
        s_put(heap, i, &heap->entries[parent]);
        i = parent;
    }
    s_put(heap, i, e);
}

/* Place e at hole i or below it. */
static void s_sift_down(sl_heap_t *heap, size_t i, const sl_heap_entry_t *e)
{
    size_t n = heap->len;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const sl_heap_entry_t *best = e;
        if (l < n && s_less(heap, &heap->entries[l], best)) {
            m = l;
            best = &heap->entries[l];
        }
        if (r < n && s_less(heap, &heap->entries[r], best))
            m = r;
        if (m == i)
            break;
        s_put(heap, i, &heap->entries[m]);
        i = m;
    }
    s_put(heap, i, e);
}

void sl_heap_init(sl_heap_t *heap, sl_heap_order_t order, size_t idx_off)
{
    *heap = (sl_heap_t){.order = order, .idx_off = idx_off};
}

void sl_heap_fini(sl_heap_t *heap)
{
    free(heap->entries);
    heap->entries = NULL;
    heap->len = heap->cap = 0;
}

sl_status_t sl_heap_reserve(sl_heap_t *heap, size_t cap)
{
    if (cap <= heap->cap)
        return SL_OK;
    sl_heap_entry_t *e = realloc(heap->entries, cap * sizeof(*e));
    if (!e)
        return SL_ERR_NOMEM;
    heap->entries = e;
    heap->cap = cap;
    return SL_OK;
}

sl_status_t sl_heap_push(sl_heap_t *heap, int64_t key, void *ptr, uint64_t word)
{
    if (heap->len == heap->cap) {
        sl_status_t st = sl_heap_reserve(heap, heap->cap ? heap->cap * 2 : 64);
        if (st != SL_OK)
            return st;
    }
    sl_heap_entry_t e = {.key = key, .seq = heap->next_seq++, .ptr = ptr, .word = word};
    s_sift_up(heap, heap->len++, &e);
    return SL_OK;
}

/* Take out the root, bottom-up (Floyd): the hole at the root goes down to
 * a leaf along the smaller children, one comparison a level instead of
 * two, and the last entry, which came from the bottom and mostly belongs
 * there, rises from that leaf, usually a level or none. */
bool sl_heap_pop(sl_heap_t *heap, sl_heap_entry_t *entry_p)
{
    if (heap->len == 0)
        return false;
    *entry_p = heap->entries[0];
    s_index_set(heap, entry_p->ptr, SL_HEAP_NO_INDEX);
    size_t n = --heap->len;
    if (n == 0)
        return true;
    sl_heap_entry_t last = heap->entries[n];
    size_t i = 0, l;
    while ((l = 2 * i + 1) < n) {
        size_t c = l + 1 < n && s_less(heap, &heap->entries[l + 1], &heap->entries[l]) ? l + 1 : l;
        s_put(heap, i, &heap->entries[c]);
        i = c;
    }
    s_sift_up(heap, i, &last);
    return true;
}

void sl_heap_remove(sl_heap_t *heap, size_t i)
{
    s_index_set(heap, heap->entries[i].ptr, SL_HEAP_NO_INDEX);
    sl_heap_entry_t last = heap->entries[--heap->len];
    if (i == heap->len)
        return;
    if (i > 0 && s_less(heap, &last, &heap->entries[(i - 1) / 2]))
        s_sift_up(heap, i, &last);
    else
        s_sift_down(heap, i, &last);
}
