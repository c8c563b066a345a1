/*
 * The history checker of sluice-bench chaos (bench/sl_history.c): each
 * broken promise is counted, and a clean history counts none.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "bench/sl_history.h"
#include "tests/support/sl_test.h"

static sl_history_t *s_h(void)
{
    sl_history_t *h = sl_history_create(2, 8);
    assert_non_null(h);
    return h;
}

/* submit, accept, chunks in order, one result: nothing to report */
static void test_clean(void **state)
{
    (void)state;
    sl_history_t *h = s_h();
    sl_history_report_t r;
    assert_int_equal(sl_history_note(h, SL_HEV_SUBMIT, 0, 1, 0, 1, 0, 0), SL_OK);
    assert_int_equal(sl_history_note(h, SL_HEV_SUBMIT, 0, 1, 0, 2, 0, 0), SL_OK); /* a resend */
    sl_history_note(h, SL_HEV_ACCEPT, 0, 1, 0, 3, 0, 0);
    sl_history_note(h, SL_HEV_ACCEPT, 0, 1, 0, 3, 0, 0); /* the resend's Accepted */
    sl_history_note(h, SL_HEV_CHUNK, 0, 1, 0, 4, 0, 3);
    sl_history_note(h, SL_HEV_CHUNK, 0, 1, 0, 5, 3, 2);
    assert_false(sl_history_done(h, 0, 1));
    sl_history_note(h, SL_HEV_RESULT, 0, 1, 0, 6, 0, 5);
    assert_true(sl_history_done(h, 0, 1));
    sl_history_note(h, SL_HEV_SUBMIT, 1, 0, 1, 7, 0, 0);
    sl_history_note(h, SL_HEV_BUSY, 1, 0, 1, 8, 0, 0); /* refused, retried, accepted */
    sl_history_note(h, SL_HEV_SUBMIT, 1, 0, 1, 9, 0, 0);
    sl_history_note(h, SL_HEV_ACCEPT, 1, 0, 1, 10, 0, 0);
    sl_history_note(h, SL_HEV_RESULT, 1, 0, 1, 11, 0, 4);
    sl_history_check(h, &r);
    assert_int_equal(r.submitted, 2);
    assert_int_equal(r.accepted, 2);
    assert_int_equal(r.results, 2);
    assert_int_equal(r.lost + r.duplicated + r.wrong_client + r.backwards + r.unaccepted_results +
                         r.chunk_dups + r.chunk_gaps + r.stream_short,
                     0);
    sl_history_destroy(&h);
    assert_null(h);
}

/* lost, duplicated, wrong client, backwards, a result never accepted */
static void test_broken_promises(void **state)
{
    (void)state;
    sl_history_t *h = s_h();
    sl_history_report_t r;
    for (uint32_t j = 0; j < 5; j++) {
        sl_history_note(h, SL_HEV_SUBMIT, 0, j, 0, 1, 0, 0);
        if (j != 4)
            sl_history_note(h, SL_HEV_ACCEPT, 0, j, 0, 2, 0, 0);
    }
    /* job 0: lost (accepted, no result) */
    sl_history_note(h, SL_HEV_RESULT, 0, 1, 0, 3, 0, 1); /* job 1: twice */
    sl_history_note(h, SL_HEV_RESULT, 0, 1, 0, 4, 0, 1);
    sl_history_note(h, SL_HEV_RESULT, 0, 2, 1, 3, 0, 1); /* job 2's result at client 1 */
    sl_history_note(h, SL_HEV_RESULT, 0, 3, 0, 3, 0, 1); /* job 3: Accepted after its result */
    sl_history_note(h, SL_HEV_ACCEPT, 0, 3, 0, 4, 0, 0);
    sl_history_note(h, SL_HEV_RESULT, 0, 4, 0, 3, 0, 1); /* job 4: never accepted */
    assert_int_equal(sl_history_note(h, SL_HEV_RESULT, 7, 0, 0, 3, 0, 1), SL_ERR_INVALID);
    sl_history_check(h, &r);
    assert_int_equal(r.lost, 2); /* job 0, and job 2 (its result went elsewhere) */
    assert_int_equal(r.duplicated, 1);
    assert_int_equal(r.wrong_client, 2); /* client 1, and an owner out of range */
    assert_int_equal(r.backwards, 1);
    assert_int_equal(r.unaccepted_results, 1);
    sl_history_destroy(&h);
}

/* a stream: a repeated chunk, an overlapping one, a gap, a short stream */
static void test_streams(void **state)
{
    (void)state;
    sl_history_t *h = s_h();
    sl_history_report_t r;
    sl_history_note(h, SL_HEV_SUBMIT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_ACCEPT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 2, 0, 4);
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 3, 0, 4);   /* again from 0: 4 twice */
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 4, 2, 4);   /* 2..5: 2 twice */
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 5, 8, 2);   /* 6, 7 missing */
    sl_history_note(h, SL_HEV_RESULT, 0, 0, 0, 6, 0, 12); /* 12 tokens, 10 streamed */
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 7, 10, 2);  /* after the result */
    sl_history_check(h, &r);
    assert_int_equal(r.chunk_dups, 6);
    assert_int_equal(r.chunk_gaps, 1);
    assert_int_equal(r.backwards, 1);
    assert_int_equal(r.stream_short, 0); /* 12 received in the end, gap counted apart */
    sl_history_destroy(&h);

    h = s_h();
    sl_history_note(h, SL_HEV_SUBMIT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_ACCEPT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 2, 0, 3);
    sl_history_note(h, SL_HEV_RESULT, 0, 0, 0, 3, 0, 5);
    sl_history_check(h, &r);
    assert_int_equal(r.stream_short, 1);
    sl_history_destroy(&h);

    /* a job that failed: its result need not match its stream */
    h = s_h();
    sl_history_note(h, SL_HEV_SUBMIT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_ACCEPT, 0, 0, 0, 1, 0, 0);
    sl_history_note(h, SL_HEV_CHUNK, 0, 0, 0, 2, 0, 3);
    sl_history_note(h, SL_HEV_RESULT, 0, 0, 0, 3, 1, 0);
    sl_history_check(h, &r);
    assert_int_equal(r.stream_short, 0);
    sl_history_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_broken_promises),
        cmocka_unit_test(test_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
