/* The simulator's data plane: the link model (sl_sim_link: serialization
 * at the slower end, latency, FIFO per side, background share) on a
 * simulated clock, and whole simulations that split and move jobs through
 * the scheduler's core and the executor engine (every request answered
 * once, every split handed off, transfers that cost time). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/sim/sl_sim.h"
#include "bench/sim/sl_sim_link.h"
#include "common/sl_rand.h"
#include "tests/support/sl_test.h"

#define S_GB 1000000000ull /* bytes */

static sl_sim_links_t *s_links(uint32_t n, double gbps, double lat_us, bool bg)
{
    sl_sim_link_cfg_t c = {.gbps = gbps, .latency_us = lat_us, .bg_share = 0.2, .bg_on = bg};
    sl_sim_links_t *l = NULL;
    assert_int_equal(sl_sim_links_create(n, &c, &l), SL_OK);
    return l;
}

/* 1 GB at 100 Gbit/s is 80 ms on the wire. */
static void test_link_serialization_and_latency(void **state)
{
    (void)state;
    sl_sim_links_t *l = s_links(4, 100, 10, false);
    sl_time_t start;
    assert_int_equal(sl_sim_links_post(l, 0, 1, S_GB, SL_MS(5), &start), SL_MS(85) + SL_US(10));
    assert_int_equal(start, SL_MS(5));
    /* Latency is added to each arrival but holds no side: an empty
     * transfer behind the first leaves after its last byte. */
    assert_int_equal(sl_sim_links_post(l, 0, 1, 0, SL_MS(5), NULL), SL_MS(85) + SL_US(10));
    /* Nothing but the latency when the link is idle. */
    assert_int_equal(sl_sim_links_post(l, 2, 3, 0, SL_MS(1), NULL), SL_MS(1) + SL_US(10));
    /* The slower end sets the rate: 50 Gbit/s doubles the time. */
    sl_sim_links_set_gbps(l, 3, 50);
    assert_int_equal(sl_sim_links_post(l, 2, 3, S_GB, SL_MS(100), NULL), SL_MS(260) + SL_US(10));
    assert_true(sl_sim_links_rate(l, 3, 2) == 50e9 / 8);
    sl_sim_links_destroy(&l);
    assert_null(l);
    sl_sim_links_destroy(&l); /* NULL-safe */
}

/* Two transfers sharing a side: the second starts when the first's last
 * byte has left; transfers on other sides go at once. */
static void test_link_fifo(void **state)
{
    (void)state;
    sl_sim_links_t *l = s_links(4, 100, 10, false);
    sl_time_t a = sl_sim_links_post(l, 0, 1, S_GB, 0, NULL);
    sl_time_t start;
    sl_time_t b = sl_sim_links_post(l, 0, 2, S_GB, 0, &start); /* same sender */
    assert_int_equal(start, SL_MS(80));
    assert_int_equal(b, a + SL_MS(80));
    sl_time_t c = sl_sim_links_post(l, 3, 1, S_GB, 0, &start); /* same receiver as a */
    assert_int_equal(start, SL_MS(80));
    assert_int_equal(c, SL_MS(160) + SL_US(10));
    sl_time_t d = sl_sim_links_post(l, 2, 0, S_GB, 0, &start); /* 0 receives, 2 sends: free */
    assert_int_equal(start, 0);
    assert_int_equal(d, a);
    /* Posted after the queue drained: starts at once. */
    assert_int_equal(sl_sim_links_post(l, 0, 1, S_GB, SL_MS(500), NULL), SL_MS(580) + SL_US(10));
    /* A rejoined executor's sides are idle. */
    sl_sim_links_post(l, 0, 1, S_GB, SL_MS(600), NULL);
    sl_sim_links_reset(l, 0);
    sl_sim_links_reset(l, 1);
    assert_int_equal(sl_sim_links_post(l, 0, 1, 0, SL_MS(600), NULL), SL_MS(600) + SL_US(10));
    sl_sim_links_destroy(&l);
}

/* Background traffic takes its share of the critical class's bandwidth. */
static void test_link_background_share(void **state)
{
    (void)state;
    sl_sim_links_t *on = s_links(2, 100, 0, true), *off = s_links(2, 100, 0, false);
    assert_int_equal(sl_sim_links_post(off, 0, 1, S_GB, 0, NULL), SL_MS(80));
    assert_int_equal(sl_sim_links_post(on, 0, 1, S_GB, 0, NULL), SL_MS(100)); /* 80 Gbit/s */
    assert_true(sl_sim_links_rate(on, 0, 1) == 0.8 * 100e9 / 8);
    sl_sim_links_destroy(&on);
    sl_sim_links_destroy(&off);
    sl_sim_link_cfg_t bad = {.gbps = 100, .bg_share = 1.0};
    sl_sim_links_t *l = NULL;
    assert_int_equal(sl_sim_links_create(2, &bad, &l), SL_ERR_INVALID);
    bad = (sl_sim_link_cfg_t){.gbps = 0};
    assert_int_equal(sl_sim_links_create(2, &bad, &l), SL_ERR_INVALID);
    bad = (sl_sim_link_cfg_t){.gbps = 1, .latency_us = -1};
    assert_int_equal(sl_sim_links_create(2, &bad, &l), SL_ERR_INVALID);
    assert_null(l);
}

/* ---- whole simulations ---- */

/* A Mooncake-format trace of n requests, one every gap_ms, with prefixes
 * shared among 20 conversations, or none when unique (the lab test's
 * generator). */
static sl_trace_t *s_trace(int n, int gap_ms, uint64_t seed, bool unique)
{
    sl_rand_t r;
    sl_rand_seed(&r, seed);
    size_t cap = (size_t)n * 400 + 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int conv = unique ? i : (int)sl_rand_below(&r, 20);
        int blocks = 2 + (int)sl_rand_below(&r, 10);
        len += (size_t)snprintf(text + len, cap - len,
                                "{\"timestamp\": %d, \"input_length\": %d, \"output_length\": %d, "
                                "\"hash_ids\": [",
                                i * gap_ms, blocks * 512 - 100, 20 + (int)sl_rand_below(&r, 100));
        for (int b = 0; b < blocks; b++)
            len += (size_t)snprintf(text + len, cap - len, "%s%d", b ? ", " : "", conv * 100 + b);
        len += (size_t)snprintf(text + len, cap - len, "]}\n");
    }
    sl_trace_t *t = NULL;
    assert_int_equal(sl_trace_parse(text, len, SL_TRACE_MOONCAKE, "test", &t), SL_OK);
    free(text);
    return t;
}

static void s_params(sl_sim_params_t *p, const sl_trace_t *t)
{
    sl_sim_params_default(p);
    p->trace = t;
    p->executors = 4;
    p->seed = 3;
    p->data_plane = true;
}

/* Fixed roles: every job is split, its KV handed off, and the run is a
 * function of its parameters. */
static void test_sim_split_every_job(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(200, 300, 5, false);
    sl_sim_params_t p;
    s_params(&p, t);
    p.prefill_execs = 1;
    p.decode_execs = 3;
    sl_sim_report_t a, b;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(sl_sim_run(&p, &b), SL_OK);
    assert_int_equal(a.completed + a.busy + a.failed, 200);
    assert_true(a.completed > 150);
    assert_int_equal(a.kv_handoffs, a.completed);
    assert_true(a.split_share == 1.0);
    assert_int_equal(a.kv_split_failed, 0);
    assert_int_equal(a.kv_xfers, a.kv_handoffs);
    /* whole blocks of 16 tokens of 131072 bytes move */
    assert_true(a.kv_bytes > 0 && a.kv_bytes % (16ull * 131072) == 0);
    assert_true(a.mean_xfer_ms > 0.01);
    assert_int_equal(a.events, b.events);
    assert_int_equal(a.slo_met, b.slo_met);
    assert_int_equal(a.kv_bytes, b.kv_bytes);
    assert_memory_equal(a.ttft_us.bucket, b.ttft_us.bucket, sizeof(a.ttft_us.bucket));
    sl_trace_destroy(&t);
}

/* The transfer is on the path to the first token (prompts share nothing,
 * so every block of each moves): a thin link makes the
 * split jobs' first tokens later, and the transfers longer by about the
 * ratio of the bandwidths. */
static void test_sim_link_costs_ttft(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(100, 1000, 9, true);
    sl_sim_params_t p;
    s_params(&p, t);
    p.prefill_execs = 2;
    p.decode_execs = 2;
    p.admission = false;
    sl_sim_report_t fast, slow;
    assert_int_equal(sl_sim_run(&p, &fast), SL_OK);
    p.link_gbps = 10;
    assert_int_equal(sl_sim_run(&p, &slow), SL_OK);
    assert_int_equal(fast.completed, 100);
    assert_int_equal(slow.completed, 100);
    assert_true(slow.p50_ttft_s > fast.p50_ttft_s + 0.05);
    assert_true(slow.mean_xfer_ms > 8 * fast.mean_xfer_ms);
    assert_int_equal(slow.kv_split_failed, 0);
    sl_trace_destroy(&t);
}

/* One split job alone: its transfer takes exactly its bytes at the link's
 * rate plus the latency, and the core sees those bytes. */
static void test_sim_single_transfer(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(1, 1000, 21, true);
    sl_sim_params_t p;
    s_params(&p, t);
    p.prefill_execs = 1;
    p.decode_execs = 1;
    p.executors = 2;
    p.admission = false;
    p.link_gbps = 40;
    p.link_latency_us = 250;
    sl_sim_report_t a;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(a.completed, 1);
    assert_int_equal(a.kv_xfers, 1);
    uint64_t blocks = (t->reqs[0].input_len + 15) / 16; /* nothing cached on the decode side */
    assert_int_equal(a.kv_bytes, blocks * 16 * 131072);
    double want_ms = (double)a.kv_bytes * 8 / 40e9 * 1e3 + 0.25;
    assert_true(fabs(a.mean_xfer_ms - want_ms) < 1e-3);
    sl_trace_destroy(&t);
}

/* Conditional splits, moves and failures together: whatever the data
 * plane does, every request is answered exactly once. */
static void test_sim_moves_and_failures(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(400, 100, 11, false);
    static const double speeds[4] = {1, 1, 0.25, 0.25};
    sl_sim_params_t p;
    s_params(&p, t);
    p.speeds = speeds;
    p.kv_split = true;
    p.kv_rebalance = true;
    sl_sim_report_t a;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(a.completed + a.busy + a.failed, 400);
    assert_true(a.kv_migrations > 0);
    assert_true(a.mean_pause_ms > 0);
    p.prefill_execs = 1;
    p.decode_execs = 1;
    p.fail_at_s = 10;
    p.fail_count = 2;
    p.fail_down_s = 5;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(a.completed + a.busy + a.failed, 400);
    assert_true(a.completed > 300);
    sl_trace_destroy(&t);
}

/* Prefix fetch: with executors' KV blocks of the trace's hash block, a job
 * placed away from its cached prefix pulls it from the peer that holds it
 * (the holder's cache as its KV events reported it), computes the rest,
 * and every request is answered once. */
static void test_sim_prefix_fetch(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(400, 40, 13, false);
    sl_sim_params_t p;
    s_params(&p, t);
    p.kv_block_tokens = t->block_tokens;
    p.model.kv_capacity_blocks = 30000 * 16 / t->block_tokens;
    p.kv_fetch = true;
    sl_sim_report_t a, b;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(sl_sim_run(&p, &b), SL_OK);
    assert_int_equal(a.completed + a.busy + a.failed, 400);
    assert_true(a.kv_fetches > 0);
    assert_true(a.kv_blocks_fetched >= a.kv_fetches);
    assert_int_equal(a.kv_handoffs, 0);
    /* whole blocks of the trace's 512 tokens move */
    assert_true(a.kv_bytes > 0 && a.kv_bytes % (512ull * 131072) == 0);
    assert_int_equal(a.kv_bytes, a.kv_blocks_fetched * 512ull * 131072);
    assert_int_equal(a.events, b.events);
    assert_int_equal(a.kv_fetches, b.kv_fetches);
    /* without it, the same prompts' blocks are computed again */
    p.kv_fetch = false;
    assert_int_equal(sl_sim_run(&p, &b), SL_OK);
    assert_int_equal(b.kv_fetches, 0);
    assert_true(b.kv_blocks_recomputed > a.kv_blocks_recomputed);
    sl_trace_destroy(&t);
}

/* Roles the cluster cannot hold are refused. */
static void test_sim_bad_roles(void **state)
{
    (void)state;
    sl_trace_t *t = s_trace(10, 100, 1, false);
    sl_sim_params_t p;
    s_params(&p, t);
    p.prefill_execs = 3;
    p.decode_execs = 2;
    sl_sim_report_t a;
    sl_test_expect_error("sim: bad data plane parameters");
    assert_int_equal(sl_sim_run(&p, &a), SL_ERR_INVALID);
    sl_trace_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_serialization_and_latency),
        cmocka_unit_test(test_link_fifo),
        cmocka_unit_test(test_link_background_share),
        cmocka_unit_test(test_sim_split_every_job),
        cmocka_unit_test(test_sim_link_costs_ttft),
        cmocka_unit_test(test_sim_single_transfer),
        cmocka_unit_test(test_sim_moves_and_failures),
        cmocka_unit_test(test_sim_prefix_fetch),
        cmocka_unit_test(test_sim_bad_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
