/*
 * Log shipping on a simulated clock: lines come out in order and split by
 * kind; a ring too small for a burst drops the oldest lines and counts
 * them; the bucket holds the bytes sent over any window to the rate (plus
 * one batch); a failed send keeps its batch for the next try while new
 * lines keep the ring's bound; lines pushed from several threads at once
 * are all accounted for (shipped or dropped).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "executor/sl_logship.h"

static sl_logship_t *s_make(size_t ring, size_t batch, double rate)
{
    sl_logship_cfg_t cfg = {.ring_bytes = ring, .batch_bytes = batch, .rate_bps = rate};
    sl_logship_t *ls = NULL;
    assert_int_equal(sl_logship_create(&cfg, 0, &ls), SL_OK);
    return ls;
}

static void s_push(sl_logship_t *ls, sl_logship_kind_t kind, const char *fmt, int i)
{
    char line[64];
    int n = snprintf(line, sizeof(line), fmt, i);
    sl_logship_push(ls, kind, line, (size_t)n);
}

static void test_logship_order_and_kinds(void **state)
{
    (void)state;
    sl_logship_t *ls = s_make(64 << 10, 16 << 10, 1e9);
    for (int i = 0; i < 10; i++)
        s_push(ls, i % 3 ? SL_LOGSHIP_LOG : SL_LOGSHIP_TRACE, i % 3 ? "log %d" : "trace %d", i);
    sl_logship_batch_t b;
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_OK);
    assert_int_equal(b.n_logs, 6);
    assert_int_equal(b.n_traces, 4);
    assert_string_equal(b.logs[0], "log 1");
    assert_string_equal(b.logs[5], "log 8");
    assert_string_equal(b.traces[0], "trace 0");
    assert_string_equal(b.traces[3], "trace 9");
    sl_logship_sent(ls, 0, true);
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_ERR_AGAIN); /* nothing left */
    sl_logship_stats_t st;
    sl_logship_stats(ls, &st);
    assert_int_equal(st.lines_shipped, 10);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.ring_used, 0);
    /* Invalid configurations are refused. */
    sl_logship_t *bad = NULL;
    sl_logship_cfg_t cfg = {.ring_bytes = 1024, .batch_bytes = 16, .rate_bps = 1};
    assert_int_equal(sl_logship_create(&cfg, 0, &bad), SL_ERR_INVALID);
    cfg = (sl_logship_cfg_t){.ring_bytes = 1024, .batch_bytes = 4096, .rate_bps = 0};
    assert_int_equal(sl_logship_create(&cfg, 0, &bad), SL_ERR_INVALID);
    assert_null(bad);
    sl_logship_destroy(&ls);
    assert_null(ls);
}

/* A burst larger than the ring: the newest lines survive, the rest are counted. */
static void test_logship_burst_drops_oldest(void **state)
{
    (void)state;
    sl_logship_t *ls = s_make(4096, 16 << 10, 1e9);
    const int n = 10000;
    for (int i = 0; i < n; i++)
        s_push(ls, SL_LOGSHIP_LOG, "line %05d", i); /* 10 bytes + 3 of header each */
    sl_logship_stats_t st;
    sl_logship_stats(ls, &st);
    assert_true(st.ring_used <= 4096);
    assert_int_equal(st.lines_pushed, n);
    uint64_t kept = (uint64_t)n - st.dropped;
    assert_int_equal(kept, 4096 / 13);
    sl_logship_batch_t b;
    char want[32];
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_OK);
    assert_int_equal(b.n_logs, SL_LOGSHIP_BATCH_LINES); /* a batch's most lines */
    snprintf(want, sizeof(want), "line %05d", (int)(n - kept));
    assert_string_equal(b.logs[0], want);
    sl_logship_sent(ls, 0, true);
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_OK);
    assert_int_equal(b.n_logs, kept - SL_LOGSHIP_BATCH_LINES);
    snprintf(want, sizeof(want), "line %05d", n - 1);
    assert_string_equal(b.logs[b.n_logs - 1], want);
    sl_logship_sent(ls, 0, true);
    sl_logship_destroy(&ls);
}

/* The bytes charged over a long run stay at rate x time + one batch. */
static void test_logship_bucket_paces(void **state)
{
    (void)state;
    const double rate = 100e3; /* 100 kB/s */
    sl_logship_t *ls = s_make(1 << 20, 4096, rate);
    char line[200];
    memset(line, 'x', sizeof(line));
    double sent_bytes = 0;
    sl_time_t now = 0, end = SL_MS(10000);
    for (; now < end; now += SL_MS(1)) {
        for (int i = 0; i < 10; i++) /* 2 MB/s offered: 20 times the rate */
            sl_logship_push(ls, SL_LOGSHIP_LOG, line, sizeof(line));
        sl_logship_batch_t b;
        while (sl_logship_next(ls, now, &b) == SL_OK) {
            sent_bytes += (double)b.bytes + (b.n_logs + b.n_traces) * SL_LOGSHIP_LINE_OVERHEAD +
                          SL_LOGSHIP_BATCH_OVERHEAD;
            sl_logship_sent(ls, now, true);
        }
    }
    double depth =
        4096 + SL_LOGSHIP_BATCH_LINES * SL_LOGSHIP_LINE_OVERHEAD + SL_LOGSHIP_BATCH_OVERHEAD;
    double allowed = rate * 10 + depth;
    assert_true(sent_bytes <= allowed);
    assert_true(sent_bytes >= 0.95 * rate * 10); /* and it does use the rate */
    sl_logship_stats_t st;
    sl_logship_stats(ls, &st);
    assert_true(st.dropped > 0); /* the rest did not fit the ring */
    assert_true(st.ring_used <= 1 << 20);
    sl_logship_destroy(&ls);
}

/* The collector is away: the batch waits, the ring stays bounded, and the
 * same lines go out first once a send succeeds. */
static void test_logship_failed_send_keeps_batch(void **state)
{
    (void)state;
    sl_logship_t *ls = s_make(1024, 4096, 1e9);
    for (int i = 0; i < 5; i++)
        s_push(ls, SL_LOGSHIP_LOG, "early %d", i);
    sl_logship_batch_t b;
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_OK);
    assert_int_equal(b.n_logs, 5);
    sl_logship_sent(ls, 0, false);
    for (int i = 0; i < 1000; i++)
        s_push(ls, SL_LOGSHIP_LOG, "late %d", i);
    sl_logship_stats_t st;
    sl_logship_stats(ls, &st);
    assert_true(st.dropped > 0);
    assert_true(st.ring_used <= 1024);
    assert_int_equal(st.send_failed, 1);
    assert_int_equal(sl_logship_next(ls, SL_MS(1), &b), SL_OK);
    assert_int_equal(b.n_logs, 5);
    assert_string_equal(b.logs[0], "early 0");
    sl_logship_sent(ls, SL_MS(1), true);
    assert_int_equal(sl_logship_next(ls, SL_MS(2), &b), SL_OK);
    assert_string_equal(b.logs[b.n_logs - 1], "late 999");
    sl_logship_sent(ls, SL_MS(2), true);
    sl_logship_destroy(&ls);
}

/* A stand-in for the transport's bucket: gives what it holds. */
static sl_status_t s_gate(void *arg, uint64_t bytes)
{
    uint64_t *tokens = arg;
    if (*tokens < bytes)
        return SL_ERR_AGAIN;
    *tokens -= bytes;
    return SL_OK;
}

/* A batch waits for the shared bucket and is taken from it once. */
static void test_logship_gate(void **state)
{
    (void)state;
    uint64_t tokens = 0;
    sl_logship_cfg_t cfg = {.ring_bytes = 4096,
                            .batch_bytes = 4096,
                            .rate_bps = 1e9,
                            .gate = s_gate,
                            .gate_arg = &tokens};
    sl_logship_t *ls = NULL;
    assert_int_equal(sl_logship_create(&cfg, 0, &ls), SL_OK);
    s_push(ls, SL_LOGSHIP_LOG, "gated %d", 1);
    sl_logship_batch_t b;
    assert_int_equal(sl_logship_next(ls, 0, &b), SL_ERR_AGAIN);
    tokens = 1000;
    assert_int_equal(sl_logship_next(ls, SL_MS(1), &b), SL_OK);
    assert_int_equal(b.n_logs, 1);
    uint64_t cost = 7 + SL_LOGSHIP_LINE_OVERHEAD + SL_LOGSHIP_BATCH_OVERHEAD;
    assert_int_equal(tokens, 1000 - cost);
    sl_logship_sent(ls, SL_MS(1), true);
    sl_logship_destroy(&ls);
}

typedef struct {
    sl_logship_t *ls;
    int n;
} s_pusher_t;

static void *s_pusher(void *arg)
{
    s_pusher_t *p = arg;
    for (int i = 0; i < p->n; i++)
        s_push(p->ls, SL_LOGSHIP_LOG, "from a thread %d", i);
    return NULL;
}

/* Pushes from four threads while one takes: every line shipped or dropped. */
static void test_logship_threads(void **state)
{
    (void)state;
    sl_logship_t *ls = s_make(8192, 4096, 1e12);
    pthread_t th[4];
    s_pusher_t p = {.ls = ls, .n = 20000};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, s_pusher, &p), 0);
    uint64_t taken = 0;
    sl_time_t now = 0;
    for (int k = 0; k < 2000; k++) {
        sl_logship_batch_t b;
        now += SL_MS(1);
        if (sl_logship_next(ls, now, &b) == SL_OK) {
            for (uint32_t i = 0; i < b.n_logs; i++)
                assert_memory_equal(b.logs[i], "from a thread ", 14);
            taken += b.n_logs;
            sl_logship_sent(ls, now, true);
        }
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    sl_logship_batch_t b;
    for (now += SL_MS(1); sl_logship_next(ls, now, &b) == SL_OK; now += SL_MS(1)) {
        taken += b.n_logs;
        sl_logship_sent(ls, now, true);
    }
    sl_logship_stats_t st;
    sl_logship_stats(ls, &st);
    assert_int_equal(st.lines_pushed, 80000);
    assert_int_equal(taken + st.dropped, 80000);
    assert_int_equal(st.lines_shipped, taken);
    sl_logship_destroy(&ls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logship_order_and_kinds),
        cmocka_unit_test(test_logship_burst_drops_oldest),
        cmocka_unit_test(test_logship_bucket_paces),
        cmocka_unit_test(test_logship_failed_send_keeps_batch),
        cmocka_unit_test(test_logship_threads),
        cmocka_unit_test(test_logship_gate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
