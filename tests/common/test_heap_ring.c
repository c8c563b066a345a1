/* Unit tests of common/sl_heap and common/sl_ring: order against a sorted
 * reference, ties in push order, index tracking under churn, growth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdlib.h>

#include "common/sl_heap.h"
#include "common/sl_rand.h"
#include "common/sl_ring.h"

typedef struct item {
    int64_t key;    /* its key while in the heap */
    uint64_t order; /* push number, for the tie check */
    size_t idx;     /* kept by the heap */
} item_t;

/* Every entry is no smaller than its parent and every item's index is its place. */
static void s_check(const sl_heap_t *h)
{
    for (size_t i = 0; i < h->len; i++) {
        const sl_heap_entry_t *e = &h->entries[i];
        if (h->idx_off != SL_HEAP_NO_INDEX)
            assert_int_equal(((const item_t *)e->ptr)->idx, i);
        if (i == 0)
            continue;
        const sl_heap_entry_t *p = &h->entries[(i - 1) / 2];
        assert_true(p->key <= e->key);
        if (h->order == SL_HEAP_KEY_FIFO && p->key == e->key)
            assert_true(p->seq < e->seq);
    }
}

/* Keys from a small range (many ties) come out sorted, equal keys in push order. */
static void test_heap_order_and_ties(void **state)
{
    (void)state;
    enum { N = 5000 };
    sl_heap_t h;
    sl_heap_init(&h, SL_HEAP_KEY_FIFO, SL_HEAP_NO_INDEX);
    sl_rand_t rng;
    sl_rand_seed(&rng, 7);
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(sl_heap_push(&h, (int64_t)(sl_rand_u64(&rng) % 50) - 25, NULL, i), SL_OK);
    s_check(&h);
    assert_int_equal(sl_heap_len(&h), N);
    assert_int_equal(sl_heap_top(&h)->key, -25);
    sl_heap_entry_t prev = {0}, e;
    for (size_t n = 0; n < N; n++) {
        assert_true(sl_heap_pop(&h, &e));
        if (n > 0) {
            assert_true(prev.key <= e.key);
            if (prev.key == e.key)
                assert_true(prev.word < e.word); /* the word is the push number */
        }
        prev = e;
    }
    assert_false(sl_heap_pop(&h, &e));
    assert_null(sl_heap_top(&h));
    sl_heap_fini(&h);
}

/* Items re-armed and removed at random: indices stay exact, removed items
 * read SL_HEAP_NO_INDEX, and the pops agree with a scan of what is left. */
static void test_heap_index_churn(void **state)
{
    (void)state;
    enum { N = 300, ROUNDS = 20000 };
    item_t *items = calloc(N, sizeof(*items));
    assert_non_null(items);
    sl_heap_t h;
    sl_heap_init(&h, SL_HEAP_KEY_FIFO, offsetof(item_t, idx));
    assert_int_equal(sl_heap_reserve(&h, N), SL_OK);
    const sl_heap_entry_t *array = h.entries;
    for (size_t i = 0; i < N; i++)
        items[i].idx = SL_HEAP_NO_INDEX;
    sl_rand_t rng;
    sl_rand_seed(&rng, 11);
    uint64_t pushes = 0;
    for (int round = 0; round < ROUNDS; round++) {
        item_t *it = &items[sl_rand_u64(&rng) % N];
        if (it->idx != SL_HEAP_NO_INDEX)
            sl_heap_remove(&h, it->idx);
        assert_int_equal(it->idx, SL_HEAP_NO_INDEX);
        if (sl_rand_u64(&rng) % 4 != 0) {
            it->key = (int64_t)(sl_rand_u64(&rng) % 1000);
            it->order = pushes++;
            assert_int_equal(sl_heap_push(&h, it->key, it, 0), SL_OK);
        }
        if (round % 997 == 0)
            s_check(&h);
    }
    s_check(&h);
    assert_ptr_equal(h.entries, array); /* reserved room: never reallocated */
    size_t left = 0;
    for (size_t i = 0; i < N; i++)
        left += items[i].idx != SL_HEAP_NO_INDEX;
    assert_int_equal(sl_heap_len(&h), left);
    sl_heap_entry_t e;
    while (sl_heap_len(&h) > 0) {
        /* the smallest (key, push number) of the items still in */
        item_t *want = NULL;
        for (size_t i = 0; i < N; i++) {
            item_t *c = &items[i];
            if (c->idx != SL_HEAP_NO_INDEX &&
                (!want || c->key < want->key || (c->key == want->key && c->order < want->order)))
                want = c;
        }
        assert_true(sl_heap_pop(&h, &e));
        assert_ptr_equal(e.ptr, want);
        assert_int_equal(want->idx, SL_HEAP_NO_INDEX);
    }
    sl_heap_fini(&h);
    free(items);
}

/* A key-only heap under the client's pattern (timers armed in batches with
 * one due time, most taken out before they are due): indices stay exact and
 * the pops come out in key order. */
static void test_heap_key_only(void **state)
{
    (void)state;
    enum { N = 2000, BATCH = 256, ROUNDS = 50000 };
    item_t *items = calloc(N, sizeof(*items));
    assert_non_null(items);
    sl_heap_t h;
    sl_heap_init(&h, SL_HEAP_KEY, offsetof(item_t, idx));
    for (size_t i = 0; i < N; i++)
        items[i].idx = SL_HEAP_NO_INDEX;
    int64_t now = 0;
    for (int round = 0; round < ROUNDS; round++) {
        if (round % BATCH == 0)
            now += 1000;
        item_t *armed = &items[round % N], *answered = &items[(round + N / 2) % N];
        if (armed->idx != SL_HEAP_NO_INDEX)
            sl_heap_remove(&h, armed->idx);
        armed->key = now + 5000;
        assert_int_equal(sl_heap_push(&h, armed->key, armed, 0), SL_OK);
        if (answered->idx != SL_HEAP_NO_INDEX)
            sl_heap_remove(&h, answered->idx);
        assert_int_equal(answered->idx, SL_HEAP_NO_INDEX);
        if (round % 1009 == 0)
            s_check(&h);
    }
    s_check(&h);
    int64_t last = INT64_MIN;
    sl_heap_entry_t e;
    while (sl_heap_pop(&h, &e)) {
        item_t *it = e.ptr;
        assert_true(e.key >= last);
        assert_int_equal(e.key, it->key);
        assert_int_equal(it->idx, SL_HEAP_NO_INDEX);
        last = e.key;
    }
    sl_heap_fini(&h);
    free(items);
}

/* FIFO across wrap-around and growth; remove keeps the order of the rest. */
static void test_ring_fifo(void **state)
{
    (void)state;
    sl_ring_t r;
    sl_ring_init(&r);
    assert_null(sl_ring_pop(&r));
    uintptr_t next_in = 1, next_out = 1;
    /* wrap inside the first 64 slots, then grow while wrapped */
    for (int i = 0; i < 40; i++)
        assert_int_equal(sl_ring_push(&r, (void *)next_in++), SL_OK);
    for (int i = 0; i < 30; i++)
        assert_ptr_equal(sl_ring_pop(&r), (void *)next_out++);
    for (int i = 0; i < 500; i++)
        assert_int_equal(sl_ring_push(&r, (void *)next_in++), SL_OK);
    assert_int_equal(sl_ring_len(&r), next_in - next_out);
    assert_int_equal(r.cap, 512);
    for (size_t i = 0; i < sl_ring_len(&r); i++)
        assert_ptr_equal(sl_ring_at(&r, i), (void *)(next_out + i));
    /* take out the third oldest and the newest */
    assert_ptr_equal(sl_ring_remove(&r, 2), (void *)(next_out + 2));
    assert_ptr_equal(sl_ring_remove(&r, sl_ring_len(&r) - 1), (void *)(next_in - 1));
    assert_ptr_equal(sl_ring_pop(&r), (void *)next_out++);
    assert_ptr_equal(sl_ring_pop(&r), (void *)next_out++);
    next_out++; /* the one removed */
    size_t n = sl_ring_len(&r);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(sl_ring_pop(&r), (void *)next_out++);
    assert_int_equal(next_out, next_in - 1);
    assert_null(sl_ring_pop(&r));
    sl_ring_fini(&r);
}

/* Reserved room: pushes up to it never reallocate. */
static void test_ring_reserve(void **state)
{
    (void)state;
    sl_ring_t r;
    sl_ring_init(&r);
    assert_int_equal(sl_ring_reserve(&r, 1000), SL_OK);
    void **slots = r.slots;
    assert_int_equal(r.cap, 1024);
    for (uintptr_t i = 1; i <= 1024; i++)
        assert_int_equal(sl_ring_push(&r, (void *)i), SL_OK);
    assert_ptr_equal(r.slots, slots);
    assert_int_equal(sl_ring_reserve(&r, 10), SL_OK);
    assert_ptr_equal(r.slots, slots);
    assert_ptr_equal(sl_ring_pop(&r), (void *)1);
    sl_ring_fini(&r);
    assert_null(r.slots);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_order_and_ties), cmocka_unit_test(test_heap_index_churn),
        cmocka_unit_test(test_heap_key_only),       cmocka_unit_test(test_ring_fifo),
        cmocka_unit_test(test_ring_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
