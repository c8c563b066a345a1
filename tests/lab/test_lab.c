/* Unit tests of the policy lab: prefix index, load model, every policy,
 * admission with hysteresis, and the simulator's determinism. Simulated
 * clock only; nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim/sl_sim.h"
#include "common/sl_rand.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_load_model.h"
#include "scheduler/core/sl_policy_registry.h"
#include "scheduler/core/sl_prefix_index.h"
#include "tests/support/sl_test.h"

/* ---------------- prefix index ---------------- */

static void test_index_match(void **state)
{
    sl_prefix_index_t *x = NULL;
    assert_int_equal(sl_prefix_index_create(1000, 16, &x), SL_OK);
    uint64_t h[5] = {11, 12, 13, 14, 15};
    for (int i = 0; i < 5; i++)
        sl_prefix_index_stored(x, 2, h[i]);
    for (int i = 0; i < 2; i++)
        sl_prefix_index_stored(x, 7, h[i]);
    sl_prefix_index_stored(x, 9, h[1]); /* not a leading block: no match */
    sl_prefix_hit_t out[SL_PREFIX_MAX_HOLDERS];
    uint32_t common;
    size_t n = sl_prefix_index_match(x, h, 5, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(n, 2);
    assert_int_equal(common, 0);
    for (size_t i = 0; i < n; i++) {
        if (out[i].exec == 2)
            assert_int_equal(out[i].blocks, 5);
        else if (out[i].exec == 7)
            assert_int_equal(out[i].blocks, 2);
        else
            fail();
    }
    assert_int_equal(sl_prefix_index_exec_blocks(x, 2), 5);
    sl_prefix_index_evicted(x, 2, 13);
    n = sl_prefix_index_match(x, h, 5, out, SL_PREFIX_MAX_HOLDERS, &common);
    for (size_t i = 0; i < n; i++)
        if (out[i].exec == 2)
            assert_int_equal(out[i].blocks, 2);
    sl_prefix_index_reset(x, 2);
    assert_int_equal(sl_prefix_index_exec_blocks(x, 2), 0);
    n = sl_prefix_index_match(x, h, 5, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].exec, 7);
    /* Unknown pairs are ignored. */
    sl_prefix_index_evicted(x, 3, 999);
    sl_prefix_index_destroy(&x);
    assert_null(x);
}

static void test_index_bounded(void **state)
{
    sl_prefix_index_t *x = NULL;
    assert_int_equal(sl_prefix_index_create(1000, 64, &x), SL_OK);
    /* An endless stream of new prefixes: memory stays at the bound. */
    for (uint64_t i = 0; i < 200000; i++) {
        assert_int_equal(sl_prefix_index_stored(x, (uint32_t)(i % 64), i * 7919 + 1), SL_OK);
        assert_true(sl_prefix_index_entries(x) <= 1000);
    }
    assert_int_equal(sl_prefix_index_entries(x), 1000);
    assert_int_equal(sl_prefix_index_dropped(x), 199000);
    uint64_t total = 0;
    for (uint32_t e = 0; e < 64; e++)
        total += sl_prefix_index_exec_blocks(x, e);
    assert_int_equal(total, 1000);
    /* A block on more executors than the holder set keeps the newest (seen
     * through a second block everyone holds after the crowded first). */
    uint64_t h[2] = {42, 43};
    for (uint32_t e = 0; e < 20; e++)
        sl_prefix_index_stored(x, e, h[0]);
    for (uint32_t e = 0; e < 20; e++)
        sl_prefix_index_stored(x, e, h[1]);
    sl_prefix_hit_t out[SL_PREFIX_MAX_HOLDERS];
    uint32_t common;
    size_t n = sl_prefix_index_match(x, h, 2, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(common, 2);
    assert_int_equal(n, 0);
    uint64_t blocks = 0;
    for (uint32_t e = 0; e < 20; e++)
        blocks += sl_prefix_index_exec_blocks(x, e) > 0;
    assert_true(blocks <= SL_PREFIX_MAX_HOLDERS + 16); /* the bound held */
    sl_prefix_index_destroy(&x);
}

/* A first block stored by more executors than a block lists (a shared
 * system prompt) does not hide the rest of a prompt from the executors left
 * off its list. */
static void test_prefix_index_crowded(void **state)
{
    (void)state;
    sl_prefix_index_t *x = NULL;
    assert_int_equal(sl_prefix_index_create(1000, 32, &x), SL_OK);
    uint64_t h[4] = {100, 101, 102, 103};
    for (uint32_t e = 0; e < 20; e++)
        sl_prefix_index_stored(x, e, h[0]);
    sl_prefix_index_stored(x, 3, h[1]); /* 3 fell off block 0's list */
    sl_prefix_index_stored(x, 3, h[2]);
    sl_prefix_hit_t out[SL_PREFIX_MAX_HOLDERS];
    uint32_t common;
    size_t n = sl_prefix_index_match(x, h, 4, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(common, 1);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].exec, 3);
    assert_int_equal(out[0].blocks, 3);
    /* Only the crowded block known: everyone has one block, no one more. */
    uint64_t other[2] = {100, 555};
    n = sl_prefix_index_match(x, other, 2, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(common, 1);
    assert_int_equal(n, 0);
    /* A block no one holds stops the walk at once. */
    uint64_t none = 777;
    n = sl_prefix_index_match(x, &none, 1, out, SL_PREFIX_MAX_HOLDERS, &common);
    assert_int_equal(common, 0);
    assert_int_equal(n, 0);
    sl_prefix_index_destroy(&x);
}

/* ---------------- load model ---------------- */

/* The synthetic law: per-token and attention costs, and the decode work of
 * the jobs in flight (a fixed cost per step and their KV read once per
 * 2048-token chunk of the prompt), scaled by 1/speed. */
static double s_law(const sl_lm_query_t *q, double speed)
{
    double u = (double)q->prompt_tokens - q->cached_tokens;
    return (0.004 + 0.040 * u / 1000 + 0.0015 * u * (q->cached_tokens + u / 2) / 1e6 +
            (q->running > 0 ? 0.003 : 0.0) + 0.05 * (double)q->kv_inflight / 1e6 * (1 + u / 2048)) /
           speed;
}

static void s_query(sl_rand_t *r, sl_lm_query_t *q)
{
    memset(q, 0, sizeof(*q)); /* no KV overflow unless a test sets one */
    q->prompt_tokens = 100 + (uint32_t)sl_rand_below(r, 16000);
    q->cached_tokens = (uint32_t)sl_rand_below(r, q->prompt_tokens);
    q->running = (uint32_t)sl_rand_below(r, 32);
    q->kv_inflight = (uint64_t)q->running * sl_rand_below(r, 8000);
}

/* Train exec on n samples of the law; returns the mean error of the last 100. */
static double s_train(sl_load_model_t *m, uint32_t exec, sl_rand_t *r, int n, double speed)
{
    double err = 0;
    for (int i = 0; i < n; i++) {
        sl_lm_query_t q;
        sl_lm_pred_t p;
        s_query(r, &q);
        /* Far apart in time: no backlog, the wait feature is zero. */
        sl_time_t now = (sl_time_t)(i + 1) * SL_MS(100000);
        sl_load_model_predict(m, exec, &q, now, &p);
        double y = s_law(&q, speed);
        if (i >= n - 100)
            err += fabs(p.ttft_s - y) / y / 100.0;
        sl_load_model_observe(m, exec, &p, y, -1.0, 0.01, now);
    }
    return err;
}

static sl_load_model_t *s_model(void)
{
    sl_lm_cfg_t cfg = {.forget = 0.98, .prior_forget = 0.995, .p_init = 10};
    sl_load_model_t *m = NULL;
    assert_int_equal(sl_load_model_create(&cfg, 8, &m), SL_OK);
    return m;
}

static void test_model_converges(void **state)
{
    sl_load_model_t *m = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 5);
    double err = s_train(m, 0, &r, 400, 1.0);
    assert_true(err < 0.02);
    /* Prequential error over the whole run is scored before learning. */
    assert_int_equal(sl_load_model_samples(m), 400);
    assert_true(sl_load_model_mape(m) < 0.25);
    /* The per-token coefficient is the law's. */
    assert_true(fabs(sl_load_model_exec_rate(m, 0) - 0.040) < 0.004);
    sl_load_model_destroy(&m);
}

static void test_model_adapts_and_prior(void **state)
{
    sl_load_model_t *m = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 9);
    s_train(m, 0, &r, 300, 1.0);
    s_train(m, 1, &r, 300, 1.0);
    /* Executor 0 slows to half speed: within 300 jobs it is predicted again
     * (the error of its last 100 predictions is under 5%). */
    double err = s_train(m, 0, &r, 300, 0.5);
    assert_true(err < 0.05);
    assert_true(fabs(sl_load_model_exec_rate(m, 0) - 0.080) < 0.01);
    /* Executor 1 did not slow down. */
    assert_true(fabs(sl_load_model_exec_rate(m, 1) - 0.040) < 0.005);
    /* A new executor starts from the shared prior: sensible at its first job. */
    sl_load_model_exec_reset(m, 5, 0);
    sl_lm_query_t q = {.prompt_tokens = 8000, .cached_tokens = 2000, .running = 4};
    sl_lm_pred_t p;
    sl_load_model_predict(m, 5, &q, SL_MS(1), &p);
    double y = s_law(&q, 1.0);
    assert_true(p.ttft_s > 0.5 * y && p.ttft_s < 2.0 * y);
    /* Backlog: a dispatched job delays the next one by its prefill. */
    sl_load_model_predict(m, 1, &q, SL_MS(1), &p);
    sl_load_model_dispatched(m, 1, &p, SL_MS(1));
    sl_lm_pred_t p2;
    sl_load_model_predict(m, 1, &q, SL_MS(1), &p2);
    assert_true(p2.wait_s > 0.9 * p.prefill_s);
    assert_true(p2.ttft_s > p.ttft_s);
    /* Executor 2 is four times faster than the prior: found out too. */
    sl_load_model_exec_reset(m, 2, 0);
    err = s_train(m, 2, &r, 300, 4.0);
    assert_true(err < 0.05);
    assert_true(fabs(sl_load_model_exec_rate(m, 2) - 0.010) < 0.002);
    sl_load_model_destroy(&m);
}

/* Job i of a run on executor 0 of m: predicted for q, far apart in time
 * from the others (no backlog), then observed as having waited wait s
 * (reported as its queue time) before a prefill of the law. */
static void s_job_waited(sl_load_model_t *m, int i, const sl_lm_query_t *q, double wait)
{
    sl_lm_pred_t p;
    sl_time_t now = (sl_time_t)(i + 1) * SL_MS(100000);
    sl_load_model_predict(m, 0, q, now, &p);
    sl_load_model_observe(m, 0, &p, wait + s_law(q, 1.0), wait, 0.01, now);
}

/* When results say when each job's prefill began, the TTFT splits into the
 * wait and the prefill step and each part learns from its own measurement:
 * waits the features cannot explain (here random, up to 2 s) do not blur
 * the prefill cost. */
static void test_model_split(void **state)
{
    sl_load_model_t *m = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 21);
    for (int i = 0; i < 400; i++) {
        sl_lm_query_t q;
        s_query(&r, &q);
        s_job_waited(m, i, &q, (double)sl_rand_below(&r, 2000) / 1000.0);
    }
    assert_true(fabs(sl_load_model_exec_rate(m, 0) - 0.040) < 0.002);
    sl_lm_query_t q = {.prompt_tokens = 12000, .cached_tokens = 3000, .running = 8};
    sl_lm_pred_t p;
    sl_load_model_predict(m, 0, &q, SL_MS(1), &p);
    assert_true(fabs(p.prefill_s - s_law(&q, 1.0)) < 0.05 * s_law(&q, 1.0));
    /* The wait is the backlog at face value plus what was learned beyond
     * it: dispatching a job adds its prefill's token work and a step's
     * fixed costs for each full chunk of 2,048 tokens, at most its whole
     * predicted prefill, to the next wait. 9,000 tokens fill steps of their
     * own: all of the prefill counts (the law has no cost per chunk). */
    assert_true(p.work_s <= p.prefill_s);
    assert_true(p.work_s > 0.9 * p.prefill_s);
    sl_load_model_dispatched(m, 0, &p, SL_MS(1));
    sl_lm_pred_t p2;
    sl_load_model_predict(m, 0, &q, SL_MS(1), &p2);
    assert_true(p2.wait_s - p.wait_s > 0.99 * p.work_s);
    /* 500 tokens share a step with the prompts batched beside them: the
     * step's fixed costs (the law's 4 ms, and 3 ms while jobs decode)
     * count a quarter (500 / 2,048), not whole. */
    sl_lm_query_t s = {.prompt_tokens = 500, .running = 8};
    sl_load_model_predict(m, 0, &s, SL_MS(1), &p);
    assert_true(p.work_s < p.prefill_s - 0.5 * 0.007);
    assert_true(p.work_s > p.prefill_s - 0.007);
    sl_load_model_destroy(&m);
}

/* A job with nothing ahead of it still waits out the step in progress: the
 * heartbeat's busy share and mean step time give the expected remainder
 * (busy x step / 2), and the wait model learns it. Here the executor
 * reports each job's wait as exactly that remainder; after training the
 * predicted wait follows it (a busy executor of 80 ms steps against an
 * idle one), where a model without the feature predicts one mean wait for
 * both. */
static void test_model_step_remainder(void **state)
{
    (void)state;
    sl_load_model_t *m = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 33);
    for (int i = 0; i < 600; i++) {
        sl_lm_query_t q;
        s_query(&r, &q);
        q.busy = (double)sl_rand_below(&r, 1001) / 1000.0;
        q.step_s = (double)(5 + sl_rand_below(&r, 96)) / 1000.0;
        s_job_waited(m, i, &q, q.busy * q.step_s / 2);
    }
    sl_lm_query_t idle = {.prompt_tokens = 1000, .running = 8}, busy = idle;
    busy.busy = 1.0;
    busy.step_s = 0.080;
    sl_lm_pred_t pi, pb;
    sl_load_model_predict(m, 0, &idle, SL_MS(1), &pi);
    sl_load_model_predict(m, 0, &busy, SL_MS(1), &pb);
    assert_true(pi.wait_s < 0.005);
    assert_true(fabs(pb.wait_s - 0.040) < 0.008);
    assert_true(fabs(pb.ttft_s - (0.040 + s_law(&busy, 1.0))) < 0.1 * (0.040 + s_law(&busy, 1.0)));
    sl_load_model_destroy(&m);
}

/* An executor not chosen for longer than the stale time is predicted by
 * the shared prior (so one bad stretch cannot starve it for good), and by
 * its own model again once it gets a job. */
static void test_model_stale(void **state)
{
    sl_lm_cfg_t cfg = {.forget = 0.98, .prior_forget = 0.995, .p_init = 10, .stale = SL_MS(30000)};
    sl_load_model_t *m = NULL;
    assert_int_equal(sl_load_model_create(&cfg, 4, &m), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 17);
    /* Executor 0 looked four times slower than the rest of the fleet. */
    for (int i = 0; i < 200; i++) {
        for (uint32_t x = 0; x < 4; x++) {
            sl_lm_query_t q;
            sl_lm_pred_t p;
            s_query(&r, &q);
            sl_load_model_predict(m, x, &q, 0, &p);
            sl_load_model_observe(m, x, &p, s_law(&q, x == 0 ? 0.25 : 1.0), 0.0, 0.01, 0);
        }
    }
    sl_lm_query_t q = {.prompt_tokens = 8000, .cached_tokens = 0, .running = 0};
    sl_lm_pred_t own, fleet, later;
    sl_load_model_predict(m, 0, &q, SL_MS(1000), &own);
    assert_true(own.ttft_s > 3.0 * s_law(&q, 1.0));
    /* Not chosen for 31 s: judged as the fleet is. */
    sl_load_model_predict(m, 0, &q, SL_MS(31000), &fleet);
    assert_true(fleet.ttft_s < 2.0 * s_law(&q, 1.0));
    /* It gets a job: its own model again. */
    sl_load_model_dispatched(m, 0, &fleet, SL_MS(31000));
    sl_load_model_predict(m, 0, &q, SL_MS(32000), &later);
    assert_true(later.prefill_s > 3.0 * s_law(&q, 1.0));
    sl_load_model_destroy(&m);
}

/* An executor that reports its step cost model is predicted by it, not by
 * what the load model learned of it from whole TTFTs: the prompt's tokens
 * and attention, and a step's fixed costs (the prefill's, and the decode's
 * while jobs are in flight) for each step it takes; the backlog gets those
 * per full chunk of 2,048 tokens. */
static void test_model_step_cost(void **state)
{
    (void)state;
    sl_load_model_t *m = s_model();
    const float k[SL_STEP_COST_N] = {0.001f, 0.029f, 0.001f, 0.006f, 0.0006f, 0.05f};
    /* 5,000 tokens, nothing decoding: 3 steps of 1 ms, 145 ms of tokens,
     * 12.5 ms of attention */
    sl_lm_query_t q = {.prompt_tokens = 5000, .step_cost = k};
    sl_lm_pred_t p;
    sl_load_model_predict(m, 0, &q, 0, &p);
    double tok = 0.029 * 5 + 0.001 * 12.5;
    assert_true(fabs(p.prefill_s - (tok + 3 * 0.001)) < 1e-5);
    assert_true(fabs(p.work_s - (tok + 0.001 * 5000 / 2048.0)) < 1e-5);
    /* 16 jobs in flight holding 200,000 KV tokens: each step also decodes */
    q.running = 16;
    q.kv_inflight = 200000;
    sl_load_model_predict(m, 0, &q, 0, &p);
    double fixed = 0.001 + 0.006 + 0.0006 * 0.5 + 0.05 * 0.2;
    assert_true(fabs(p.prefill_s - (tok + 3 * fixed)) < 1e-5);
    /* ...and the step in progress is expected half done: half a decode
     * step of those jobs by the reported costs, not the heartbeat's mean
     * step (set here to something else) */
    q.busy = 1;
    q.step_s = 0.5;
    sl_load_model_predict(m, 0, &q, 0, &p);
    assert_true(fabs(p.x[7] - (0.006 + 0.0006 * 0.5 + 0.05 * 0.2) / 2) < 1e-6);
    q.running = 0;
    q.kv_inflight = 0;
    sl_load_model_predict(m, 0, &q, 0, &p);
    assert_true(p.x[7] == 0); /* nothing in flight: it starts at once */
    q.running = 16;
    q.kv_inflight = 200000;
    /* not reported: the learned model's prediction (its prior here), and
     * the heartbeat's remainder */
    q.step_cost = NULL;
    sl_load_model_predict(m, 0, &q, 0, &p);
    assert_true(fabs(p.prefill_s - (tok + 3 * fixed)) > 1e-3);
    assert_true(fabs(p.x[7] - 0.25) < 1e-6);
    sl_load_model_destroy(&m);
}

/* The step clock follows an executor's steps between heartbeats, on a
 * simulated clock: what is left of the reported step, then prompt steps
 * while prompt tokens are queued (a budget of 2,048 tokens less one per
 * sequence decoding, first come first served), then the decode steps of
 * the batch, all by the reported costs; a job sent queues its prompt, a
 * result ends a decode step. A prediction with nothing queued waits out
 * the step in progress; one behind queued tokens gets its first token at
 * the end of the step computing its own last token. */
static void test_step_clock(void **state)
{
    (void)state;
    const float k[SL_STEP_COST_N] = {0.001f, 0.029f, 0.001f, 0.006f, 0.0006f, 0.05f};
    sl_step_clock_t c = {0};
    sl_step_clock_now_t o;
    sl_time_t t0 = SL_MS(1000);
    assert_false(sl_step_clock_at(&c, k, t0, &o)); /* nothing known */
    sl_exec_load_t l = {.step_left_us = 4000, .decode_seqs = 32, .decode_ctx = 200000};
    sl_step_clock_heartbeat(&c, &l, t0); /* not reported: still nothing */
    assert_false(sl_step_clock_at(&c, k, t0, &o));
    l.has_step_clock = true;
    sl_step_clock_heartbeat(&c, &l, t0);
    assert_false(sl_step_clock_at(&c, NULL, t0, &o)); /* no costs: no steps to count */
    assert_true(sl_step_clock_at(&c, k, t0 + SL_MS(1), &o));
    assert_true(fabs(o.left_s - 0.003) < 1e-9 && o.tokens == 0);
    assert_true(sl_step_clock_at(&c, k, t0 + SL_MS(4), &o) && o.left_s == 0); /* a boundary */
    double step = 0.006 + 0.0006 + 0.05 * 0.2; /* 32 decoding, 200,000 tokens of context */
    sl_time_t t = t0 + SL_MS(4) + (sl_time_t)(2.25 * step * 1e9);
    assert_true(sl_step_clock_at(&c, k, t, &o) && fabs(o.left_s - 0.75 * step) < 1e-8);
    /* a result at t: a decode step ended then; one sequence of 1,000
     * tokens fewer decodes after it */
    sl_step_clock_completed(&c, k, 900, 100, t);
    assert_true(sl_step_clock_at(&c, k, t, &o) && o.left_s == 0 && o.seqs == 31);
    double step2 = 0.006 + 0.0006 * 31 / 32 + 0.05 * 0.199;
    assert_true(sl_step_clock_at(&c, k, t + SL_MS(2), &o));
    assert_true(fabs(o.left_s - (step2 - 0.002)) < 1e-8);
    /* a prompt of 5,000 tokens sent at t + 2 ms queues for the steps after
     * the one in progress: 2,016 tokens a step (32 decoding with it) */
    sl_step_clock_dispatched(&c, k, 5000, 5000, 5000.0 * 2500, t + SL_MS(2));
    assert_true(sl_step_clock_at(&c, k, t + SL_MS(2), &o));
    assert_true(o.tokens == 5000 && o.seqs == 32);
    sl_time_t b1 = t + (sl_time_t)(step2 * 1e9); /* the decode step's end */
    double dec = 0.006 + 0.0006 + 0.05 * 0.204;
    assert_true(sl_step_clock_at(&c, k, b1 + SL_US(1), &o)); /* its first chunk is in progress */
    assert_true(fabs(o.tokens - (5000 - 2016)) < 1e-9);
    double pairs1 = 5000.0 * 2500 * 2016 / 5000;
    double cost1 = 0.001 + 0.029 * 2.016 + 0.001 * pairs1 / 1e6 + dec;
    assert_true(fabs(o.left_s - (cost1 - 1e-6)) < 1e-8);
    /* a prompt of 100 tokens now lands behind the 2,984 left: its first
     * token ends the second step after this one (2,016 + 1,068), whose
     * fixed costs it shares, and the model predicts just that */
    sl_load_model_t *m = s_model();
    sl_lm_query_t q = {
        .prompt_tokens = 100, .running = 32, .kv_inflight = 204000, .step_cost = k, .clock = &o};
    sl_lm_pred_t p;
    sl_load_model_predict(m, 0, &q, b1 + SL_US(1), &p);
    double tokens = 2984 + 100, pairs = (5000.0 * 2500 - pairs1) + 100 * 50.0;
    double first = o.left_s + 0.029 * tokens / 1e3 + 0.001 * pairs / 1e6 + 2 * (0.001 + dec);
    assert_true(p.x[6] == 1 && p.x[7] == 0);
    assert_true(fabs(p.x[3] + p.prefill_s - first) < 1e-5);
    /* with nothing queued, it waits out the step in progress */
    sl_step_clock_now_t idle = {.left_s = 0.0042, .seqs = 16, .ctx = 200000};
    q.clock = &idle;
    sl_load_model_predict(m, 0, &q, b1, &p);
    assert_true(fabs(p.x[3] - 0.0042) < 1e-7 && p.x[6] == 0 && p.x[7] == 0);
    /* without a clock: the backlog, and half a decode step expected left */
    q.clock = NULL;
    q.running = 16;
    q.kv_inflight = 200000;
    sl_load_model_predict(m, 0, &q, b1, &p);
    assert_true(p.x[3] == 0);
    assert_true(fabs(p.x[7] - (0.006 + 0.0006 * 0.5 + 0.05 * 0.2) / 2) < 1e-6);
    /* the queue drains: after its steps the clock counts decode steps */
    assert_true(sl_step_clock_at(&c, k, b1 + SL_MS(1000), &o) && o.tokens == 0);
    /* an executor that steps 1,024 tokens (its hello): 1,000 for prompts
     * beside 24 decoding */
    sl_step_clock_t c2 = {.step_tokens = 1024};
    l.decode_seqs = 24;
    l.prompt_tokens = 2500;
    sl_step_clock_heartbeat(&c2, &l, t0);
    assert_true(sl_step_clock_at(&c2, k, t0 + SL_MS(4) + SL_US(1), &o));
    assert_true(o.budget == 1000 && o.tokens == 1500);
    sl_load_model_destroy(&m);
}

/* The fleet model's memory spans about the same time whatever the fleet's
 * size: after 3,000 completions, a burst of 128 of another shape (short
 * prompts dearer, long ones cheaper: no change of speed for the scales to
 * take) moves the fleet's prediction for a short prompt less when the
 * fleet has 256 executors (a memory of about 3,200 completions) than when
 * it has 16 (about 200). */
static void test_model_fleet_memory(void **state)
{
    (void)state;
    double moved[2];
    for (int k = 0; k < 2; k++) {
        sl_load_model_t *m = s_model();
        sl_load_model_fleet(m, k ? 256 : 16);
        sl_rand_t r;
        sl_rand_seed(&r, 31);
        double before = 0;
        for (int i = 0; i < 3128; i++) {
            sl_lm_query_t q;
            sl_lm_pred_t p;
            s_query(&r, &q);
            uint32_t x = (uint32_t)i % 8;
            sl_time_t now = (sl_time_t)(i + 1) * SL_MS(100000);
            sl_load_model_predict(m, x, &q, now, &p);
            double y = s_law(&q, 1.0);
            if (i >= 3000) /* the burst: short prompts dearer, long ones cheaper */
                y += 0.02 - 0.0025 * ((double)q.prompt_tokens - q.cached_tokens) / 1000;
            sl_load_model_observe(m, x, &p, y, -1.0, 0.01, now);
            if (i == 2999)
                before = sl_load_model_fleet_prefill(m, 500);
        }
        moved[k] = fabs(sl_load_model_fleet_prefill(m, 500) / before - 1);
        sl_load_model_destroy(&m);
    }
    /* the same stream (same seed) into both: 0.23 and 0.11 */
    assert_true(moved[0] > 0.15);
    assert_true(moved[1] < 0.6 * moved[0]);
}

/* An executor that slows down mid-run (thermal throttling, a noisy
 * neighbour) is found within a few of its jobs: its scale follows its
 * prefills at once, whichever of its models predicts it; and a new executor
 * is predicted from the fleet's experience from its first job. */
static void test_model_adapts_to_slowdown(void **state)
{
    sl_lm_cfg_t cfg = {.forget = 0.98, .prior_forget = 0.995, .p_init = 10};
    sl_load_model_t *m = NULL;
    assert_int_equal(sl_load_model_create(&cfg, 8, &m), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 23);
    for (int i = 0; i < 300; i++)
        for (uint32_t x = 0; x < 4; x++)
            s_train(m, x, &r, 1, 1.0);
    sl_lm_query_t q = {.prompt_tokens = 8000, .cached_tokens = 1000, .running = 8};
    sl_lm_pred_t p;
    sl_load_model_predict(m, 0, &q, 0, &p);
    assert_true(fabs(p.ttft_s - s_law(&q, 1.0)) < 0.1 * s_law(&q, 1.0));
    /* Executor 0 now runs at a third of its speed. */
    int jobs = 0;
    for (; jobs < 100; jobs++) {
        sl_load_model_predict(m, 0, &q, 0, &p);
        if (fabs(p.ttft_s - s_law(&q, 1.0 / 3)) < 0.15 * s_law(&q, 1.0 / 3))
            break;
        s_train(m, 0, &r, 1, 1.0 / 3);
    }
    assert_true(jobs < 20);
    /* The others are still predicted at full speed. */
    sl_load_model_predict(m, 1, &q, 0, &p);
    assert_true(fabs(p.ttft_s - s_law(&q, 1.0)) < 0.1 * s_law(&q, 1.0));
    /* An executor that never ran a job: the fleet's prediction. */
    sl_load_model_predict(m, 7, &q, 0, &p);
    assert_true(fabs(p.ttft_s - s_law(&q, 1.0)) < 0.25 * s_law(&q, 1.0));
    sl_load_model_destroy(&m);
}

/* Past a burst, an executor's model learns from at most one completion per
 * learn gap: a flood of completions in one instant is scored, not learned. */
static void test_model_learn_gap(void **state)
{
    sl_lm_cfg_t cfg = {.forget = 0.98, .prior_forget = 0.995, .p_init = 10, .learn_gap = SL_MS(10)};
    sl_load_model_t *m = NULL;
    assert_int_equal(sl_load_model_create(&cfg, 2, &m), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 23);
    sl_lm_query_t q = {.prompt_tokens = 8000, .cached_tokens = 0, .running = 0};
    sl_lm_pred_t p, before, after;
    /* The burst (64) learns the law. */
    for (int i = 0; i < 64; i++) {
        sl_lm_query_t x;
        s_query(&r, &x);
        sl_load_model_predict(m, 0, &x, SL_MS(1), &p);
        sl_load_model_observe(m, 0, &p, s_law(&x, 1.0), 0.0, 0.01, SL_MS(1));
    }
    sl_load_model_predict(m, 0, &q, SL_MS(1), &before);
    assert_true(fabs(before.prefill_s - s_law(&q, 1.0)) < 0.05 * s_law(&q, 1.0));
    /* A flood at the same instant from a four times slower law: scored
     * (the error counts them), not learned. */
    uint64_t scored = sl_load_model_samples(m);
    for (int i = 0; i < 500; i++) {
        sl_lm_query_t x;
        s_query(&r, &x);
        sl_load_model_predict(m, 0, &x, SL_MS(1), &p);
        sl_load_model_observe(m, 0, &p, s_law(&x, 0.25), 0.0, 0.01, SL_MS(1));
    }
    assert_int_equal(sl_load_model_samples(m), scored + 500);
    sl_load_model_predict(m, 0, &q, SL_MS(1), &after);
    assert_true(fabs(after.prefill_s - before.prefill_s) < 1e-9);
    /* Spread out in time they are learned again. */
    for (int i = 0; i < 200; i++) {
        sl_lm_query_t x;
        s_query(&r, &x);
        sl_time_t now = SL_MS(1) + (sl_time_t)(i + 1) * SL_MS(20);
        sl_load_model_predict(m, 0, &x, now, &p);
        sl_load_model_observe(m, 0, &p, s_law(&x, 0.25), 0.0, 0.01, now);
    }
    sl_load_model_predict(m, 0, &q, SL_MS(10000), &after);
    assert_true(after.prefill_s > 3.0 * before.prefill_s);
    sl_load_model_destroy(&m);
}

static void test_model_save_load(void **state)
{
    sl_load_model_t *m = s_model(), *m2 = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 3);
    s_train(m, 0, &r, 300, 1.0);
    char buf[8192];
    size_t len = 0;
    const char *why = NULL;
    /* Too small a buffer: the size needed, and nothing else. */
    assert_int_equal(sl_load_model_save(m, buf, 16, &len), SL_ERR_OVERFLOW);
    size_t need = len;
    assert_true(need > 16 && need < sizeof(buf));
    assert_int_equal(sl_load_model_save(m, buf, sizeof(buf), &len), SL_OK);
    assert_int_equal(len, need);
    assert_int_equal(strlen(buf), len);
    assert_int_equal(sl_load_model_save(m, buf, len, &len), SL_ERR_OVERFLOW); /* no room for NUL */
    assert_int_equal(sl_load_model_save(m, buf, len + 1, &len), SL_OK);
    const char *pos = buf;
    assert_int_equal(sl_load_model_load(m2, &pos, buf + len, &why), SL_OK);
    assert_ptr_equal(pos, buf + len - 1); /* all of it read, up to its last newline */
    assert_int_equal(sl_load_model_samples(m2), 300);
    /* The restored prior predicts a fresh executor as the trained one does. */
    sl_lm_query_t q = {.prompt_tokens = 5000, .cached_tokens = 0, .running = 0};
    sl_lm_pred_t a, b;
    sl_load_model_exec_reset(m, 3, 0);
    sl_load_model_predict(m, 3, &q, 0, &a);
    sl_load_model_predict(m2, 3, &q, 0, &b);
    assert_true(fabs(a.ttft_s - b.ttft_s) < 1e-6);
    /* Text that is not NUL-terminated ends where the caller says. */
    pos = buf;
    assert_int_equal(sl_load_model_load(m2, &pos, buf + len - 5, &why), SL_ERR_INVALID);
    assert_string_equal(why, "load model truncated or malformed");
    /* Bad text: wrong header, another version, truncated; the model is unchanged. */
    static const char bad_header[] = "not a model\n";
    pos = bad_header;
    assert_int_equal(sl_load_model_load(m2, &pos, bad_header + strlen(bad_header), &why),
                     SL_ERR_INVALID);
    assert_string_equal(why, "not a load model (bad header)");
    assert_ptr_equal(pos, bad_header);
    static const char other[] = "sluice-load-model 1 7 2\n";
    pos = other;
    assert_int_equal(sl_load_model_load(m2, &pos, other + strlen(other), &why), SL_ERR_INVALID);
    assert_non_null(strstr(why, "another version"));
    /* Models saved by versions 3 and 4 (four prefill features, the last the
     * jobs in flight / 32 where the decode terms now are): read, those
     * started afresh, the rest as saved: an idle executor (no decode
     * terms) is predicted as the old prior predicted it, 10 ms + 40 ms per
     * 1000 tokens + 2 ms per attention unit = 0.235 s for 5000 tokens. */
    assert_int_equal(sl_load_model_save(m, buf, sizeof(buf), &len), SL_OK);
    assert_non_null(strstr(buf, "sluice-load-model 5 9 2\n"));
    for (int v = 3; v <= 4; v++) {
        char old[1024];
        snprintf(old, sizeof(old),
                 "sluice-load-model %d 8 2\nscored 300 30 0.1\n"
                 "prior 0.01 0.04 0.002 0.5 1e-3 0 0 0 0 1e-3 0 0 0 0 1e-3 0 0 0 0 1e-3\n"
                 "prior_wait 0 0 0.1 5 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n"
                 "prior_tpot 0.007 0.002 1 0 0 1\nend\n",
                 v);
        sl_load_model_t *m3 = s_model();
        pos = old;
        assert_int_equal(sl_load_model_load(m3, &pos, old + strlen(old), &why), SL_OK);
        assert_int_equal(sl_load_model_samples(m3), 300);
        sl_load_model_predict(m3, 3, &q, 0, &b);
        assert_true(fabs(b.prefill_s - 0.235) < 1e-6);
        /* the old running coefficient (0.5) is not read as the decode one */
        sl_lm_query_t busy = q;
        busy.running = 1;
        sl_load_model_predict(m3, 3, &busy, 0, &b);
        assert_true(b.prefill_s < 0.235 + 0.01);
        sl_load_model_destroy(&m3);
    }
    static const char cut[] = "sluice-load-model 4 8 2\nscored 3 0.1 0.1\nprior 1 2\n";
    pos = cut;
    assert_int_equal(sl_load_model_load(m2, &pos, cut + strlen(cut), &why), SL_ERR_INVALID);
    assert_string_equal(why, "load model truncated or malformed");
    assert_int_equal(sl_load_model_samples(m2), 300);
    sl_load_model_destroy(&m);
    sl_load_model_destroy(&m2);
}

/* Executors that answer at once (the null backend) must not drive the
 * predictions, or the backlog clock built from them, out of range. */
static void test_model_bounded(void **state)
{
    sl_load_model_t *m = s_model();
    sl_rand_t r;
    sl_rand_seed(&r, 11);
    for (int i = 0; i < 2000; i++) {
        sl_lm_query_t q;
        sl_lm_pred_t p;
        s_query(&r, &q);
        q.kv_capacity = 1000;
        q.kv_inflight = sl_rand_below(&r, 5000);
        q.kv_need = q.prompt_tokens;
        sl_load_model_predict(m, 0, &q, SL_MS(i), &p);
        assert_true(isfinite(p.ttft_s) && p.ttft_s > 0 && p.ttft_s <= 3 * 3600.0);
        sl_load_model_dispatched(m, 0, &p, SL_MS(i));
        sl_load_model_observe(m, 0, &p, 1e-6 * (1 + i % 7), 0.0, 1e-7, SL_MS(i));
    }
    for (int i = 0; i < 100000; i++) {
        sl_lm_pred_t p = {.prefill_s = 3600, .valid = true};
        sl_load_model_dispatched(m, 1, &p, 0);
    }
    assert_true(sl_load_model_backlog_s(m, 1, 0) <= 24 * 3600.0 + 3600.0);
    assert_true(sl_load_model_backlog_s(m, 1, INT64_MAX / 2) == 0);
    sl_load_model_destroy(&m);
}

/* ---------------- policies through the core ---------------- */

typedef struct {
    uint32_t last_exec; /* executor of the last dispatch */
    int n_dispatch;     /* dispatches */
    int n_result;       /* results */
} rec_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    rec_t *r = arg;
    r->last_exec = e->index;
    r->n_dispatch++;
    return SL_OK;
}

static void s_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                     const sl_exec_t *e, const void *payload, const char *err)
{
    ((rec_t *)arg)->n_result++;
}

static const sl_core_io_t s_io = {.dispatch = s_dispatch, .result = s_result};

static sl_core_t *s_core(rec_t *r, const char *policy, bool admission, int n_exec)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(r, 0, sizeof(*r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s", policy);
    cfg.max_executors = 16;
    cfg.admission = admission;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    for (int i = 0; i < n_exec; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x%d", i);
        sl_exec_info_t info = {.name = name,
                               .slots = 8,
                               .backend = "sim",
                               .kv_blocks_total = 30000,
                               .kv_block_tokens = 16};
        uint32_t idx;
        assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
        assert_int_equal(idx, (uint32_t)i);
    }
    return core;
}

static sl_status_t s_submit(sl_core_t *core, const char *id, const uint64_t *h, uint32_t nh,
                            uint32_t prompt, sl_time_t now, sl_job_t **job_p, sl_busy_reason_t *why)
{
    sl_job_desc_t d = {.id = id,
                       .prompt_tokens = prompt,
                       .max_new_tokens = 100,
                       .block_hashes = h,
                       .n_block_hashes = nh,
                       .block_tokens = 512};
    sl_time_t retry = 0;
    return sl_core_job_submit(core, &d, NULL, now, job_p, why, &retry);
}

/* Every cache-aware policy sends a job to the executor caching its prefix
 * when the cluster is otherwise idle and equal. */
static void test_policies_prefix(void **state)
{
    static const char *const aware[] = {"learned", "kv-cost", "scorer", "cache-switch", NULL};
    uint64_t h[8] = {101, 102, 103, 104, 105, 106, 107, 108};
    for (int k = 0; aware[k]; k++) {
        rec_t r;
        sl_core_t *core = s_core(&r, aware[k], false, 4);
        assert_int_equal(sl_core_exec_kv_event(core, 2, h, 8, NULL, 0, false, 0), SL_OK);
        assert_int_equal(sl_core_exec_kv_event(core, 1, h, 2, NULL, 0, false, 0), SL_OK);
        sl_job_t *job;
        sl_busy_reason_t why;
        assert_int_equal(s_submit(core, "a", h, 8, 4096, SL_MS(1), &job, &why), SL_OK);
        assert_int_equal(r.last_exec, 2);
        assert_int_equal(job->exec->index, 2);
        assert_true(job->uncached_tokens < 4096);
        /* A KV event for an unknown executor is refused. */
        assert_int_equal(sl_core_exec_kv_event(core, 9, h, 1, NULL, 0, false, 0), SL_ERR_NOT_FOUND);
        sl_core_destroy(&core);
    }
}

static void test_policies_load(void **state)
{
    /* weighted: the executor with low measured utilization gets the job;
     * measured values win over the engine's busy fraction. */
    rec_t r;
    sl_core_t *core = s_core(&r, "weighted", false, 3);
    sl_exec_load_t busy = {.gpu_util = 0.9f,
                           .cpu_util = 0.2f,
                           .has_gpu_util = true,
                           .has_cpu_util = true,
                           .busy = 0.1f};
    sl_exec_load_t idle = {.gpu_util = 0.1f,
                           .cpu_util = 0.1f,
                           .has_gpu_util = true,
                           .has_cpu_util = true,
                           .busy = 0.9f};
    sl_core_exec_heartbeat(core, 0, &busy, SL_MS(1));
    sl_core_exec_heartbeat(core, 1, &idle, SL_MS(1));
    sl_core_exec_heartbeat(core, 2, &busy, SL_MS(1));
    sl_job_t *job;
    sl_busy_reason_t why;
    assert_int_equal(s_submit(core, "w", NULL, 0, 100, SL_MS(2), &job, &why), SL_OK);
    assert_int_equal(r.last_exec, 1);
    sl_core_destroy(&core);

    /* Nothing measured (no GPU, no /proc/stat): the busy fraction stands in
     * for both, so an executor stepping all the time is not taken for idle. */
    core = s_core(&r, "weighted", false, 3);
    sl_exec_load_t stepping = {.busy = 0.9f}, resting = {.busy = 0.1f};
    sl_core_exec_heartbeat(core, 0, &stepping, SL_MS(1));
    sl_core_exec_heartbeat(core, 1, &stepping, SL_MS(1));
    sl_core_exec_heartbeat(core, 2, &resting, SL_MS(1));
    assert_int_equal(s_submit(core, "w", NULL, 0, 100, SL_MS(2), &job, &why), SL_OK);
    assert_int_equal(r.last_exec, 2);
    sl_core_destroy(&core);

    /* CPU measured, GPU unknown (a CPU host): the weight is the lower of
     * 1/(cpu + 0.1) and 1/(busy + 0.1). */
    core = s_core(&r, "weighted", false, 3);
    sl_exec_load_t cpu_idle_engine_busy = {.cpu_util = 0.1f, .has_cpu_util = true, .busy = 0.9f};
    sl_exec_load_t both_low = {.cpu_util = 0.1f, .has_cpu_util = true, .busy = 0.2f};
    sl_exec_load_t cpu_busy = {.cpu_util = 0.9f, .has_cpu_util = true, .busy = 0.2f};
    sl_core_exec_heartbeat(core, 0, &cpu_idle_engine_busy, SL_MS(1));
    sl_core_exec_heartbeat(core, 1, &both_low, SL_MS(1));
    sl_core_exec_heartbeat(core, 2, &cpu_busy, SL_MS(1));
    assert_int_equal(s_submit(core, "w", NULL, 0, 100, SL_MS(2), &job, &why), SL_OK);
    assert_int_equal(r.last_exec, 1);
    sl_core_destroy(&core);

    /* session: the same session key sticks, a loaded home is left. */
    core = s_core(&r, "session", false, 4);
    sl_job_desc_t d = {
        .id = "s1", .session_key = "alice", .prompt_tokens = 10, .max_new_tokens = 10};
    sl_time_t retry;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &why, &retry), SL_OK);
    uint32_t home = r.last_exec;
    d.id = "s2";
    d.session_key = "bob";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &why, &retry), SL_OK);
    d.session_key = "alice";
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "a%d", i);
        d.id = id;
        assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &why, &retry), SL_OK);
        assert_int_equal(r.last_exec, home);
    }
    sl_core_destroy(&core);

    /* cache-switch: when load is imbalanced beyond both thresholds, the
     * least loaded wins over the cache. */
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "cache-switch");
    cfg.max_executors = 4;
    memset(&r, 0, sizeof(r));
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    uint32_t idx;
    sl_exec_info_t big = {.name = "big", .slots = 200, .backend = "sim"};
    sl_exec_info_t other = {.name = "other", .slots = 200, .backend = "sim"};
    assert_int_equal(sl_core_exec_join(core, &big, NULL, 0, &idx), SL_OK);
    uint64_t h[4] = {1, 2, 3, 4};
    sl_core_exec_kv_event(core, idx, h, 4, NULL, 0, false, 0);
    for (int i = 0; i < 100; i++) {
        char id[8];
        snprintf(id, sizeof(id), "f%d", i);
        assert_int_equal(s_submit(core, id, h, 4, 2048, 0, &job, &why), SL_OK);
        assert_int_equal(r.last_exec, idx);
    }
    assert_int_equal(sl_core_exec_join(core, &other, NULL, 0, &idx), SL_OK);
    assert_int_equal(s_submit(core, "g", h, 4, 2048, 0, &job, &why), SL_OK);
    assert_int_equal(r.last_exec, idx); /* 100 - 0 > 64 and 100 > 1.5 x 0 */
    sl_core_destroy(&core);
}

/* Every registered policy places a stream of jobs, with completions, and
 * the learned policy beats round-robin on predicted TTFT of a slow executor. */
static void test_policies_all(void **state)
{
    for (const char *const *name = sl_policy_names(); *name; name++) {
        rec_t r;
        sl_core_t *core = s_core(&r, *name, false, 4);
        sl_time_t now = 0;
        for (int i = 0; i < 200; i++) {
            char id[16];
            snprintf(id, sizeof(id), "j%d", i);
            uint64_t h[2] = {(uint64_t)(i % 7) + 1, (uint64_t)(i % 7) + 100};
            sl_job_t *job;
            sl_busy_reason_t why;
            now += SL_MS(10);
            assert_int_equal(s_submit(core, id, h, 2, 1024, now, &job, &why), SL_OK);
            assert_non_null(job->exec);
            sl_core_exec_kv_event(core, job->exec->index, h, 2, NULL, 0, false, now);
            sl_job_result_t res = {.status = SL_JOB_OK,
                                   .output_tokens = 100,
                                   .exec_ttft = SL_MS(40),
                                   .exec_end = SL_MS(500)};
            assert_int_equal(
                sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now + SL_MS(5)),
                SL_OK);
        }
        assert_int_equal(r.n_result, 200);
        assert_true(sl_load_model_samples(sl_core_load_model(core)) == 200);
        sl_core_destroy(&core);
    }
}

static void test_learned_avoids_slow(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "learned", false, 2);
    /* Teach the model: executor 0 takes 4x as long as executor 1. */
    sl_time_t now = 0;
    for (int i = 0; i < 120; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t%d", i);
        sl_job_t *job;
        sl_busy_reason_t why;
        now += SL_MS(5000);
        assert_int_equal(s_submit(core, id, NULL, 0, 4000, now, &job, &why), SL_OK);
        /* Force alternation by completing at once; the law decides the time. */
        double ttft = job->exec->index == 0 ? 0.6 : 0.15;
        sl_job_result_t res = {.status = SL_JOB_OK,
                               .output_tokens = 10,
                               .exec_ttft = (sl_time_t)(ttft * 1e9),
                               .exec_end = (sl_time_t)(ttft * 1e9) + SL_MS(50)};
        sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now);
    }
    /* Idle cluster: the fast executor is chosen. */
    sl_job_t *job;
    sl_busy_reason_t why;
    assert_int_equal(s_submit(core, "probe", NULL, 0, 4000, now + SL_MS(5000), &job, &why), SL_OK);
    assert_int_equal(job->exec->index, 1);
    sl_core_destroy(&core);
}

/* Exploration (explore_share): the learned policy sends a job to an
 * executor whose prediction is less certain than the best's, at most the
 * budgeted share of placements, and never a job whose TTFT deadline is
 * near; with the share at 0 it never does. */
static int s_explore_run(double share, sl_time_t ttft_deadline, uint64_t *explored)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(&r, 0, sizeof(r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "learned");
    cfg.max_executors = 4;
    cfg.explore_share = share;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    for (int i = 0; i < 2; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x%d", i);
        sl_exec_info_t info = {.name = name, .slots = 8, .backend = "sim"};
        uint32_t idx;
        assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    }
    /* Executor 0 is a fifth slower: the greedy choice is executor 1 once
     * the model has seen both, so placements on 0 are explorations. */
    sl_time_t now = 0;
    int on_slow = 0;
    for (int i = 0; i < 400; i++) {
        char id[16];
        snprintf(id, sizeof(id), "e%d", i);
        sl_job_desc_t d = {
            .id = id, .prompt_tokens = 4000, .max_new_tokens = 10, .ttft_deadline = ttft_deadline};
        sl_job_t *job;
        sl_busy_reason_t why;
        sl_time_t retry;
        now += SL_MS(5000);
        assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &job, &why, &retry), SL_OK);
        double ttft = job->exec->index == 0 ? 0.24 : 0.20;
        on_slow += i >= 100 && job->exec->index == 0;
        sl_job_result_t res = {.status = SL_JOB_OK,
                               .output_tokens = 10,
                               .exec_ttft = (sl_time_t)(ttft * 1e9),
                               .exec_end = (sl_time_t)(ttft * 1e9) + SL_MS(50)};
        sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now);
    }
    *explored = sl_core_counter(core, SL_CTR_EXPLORED);
    sl_core_destroy(&core);
    return on_slow;
}

static void test_learned_explores_within_budget(void **state)
{
    uint64_t explored;
    assert_int_equal(s_explore_run(0, 0, &explored), 0);
    assert_int_equal(explored, 0);
    int slow = s_explore_run(0.1, 0, &explored);
    assert_true(explored > 5);
    assert_true(explored <= 0.1 * 400 + 2); /* the budget and its burst */
    assert_true(slow > 5 && (uint64_t)slow <= explored);
    /* A 0.5 s TTFT budget is less than 3 x the slow executor's 0.24 s:
     * near enough to its deadline that no job explores. */
    assert_int_equal(s_explore_run(0.1, SL_MS(500), &explored), 0);
    assert_int_equal(explored, 0);
    /* A 2 s budget leaves room. */
    s_explore_run(0.1, SL_MS(2000), &explored);
    assert_true(explored > 5);
}

/* ---------------- admission ---------------- */

/* A core configuration with admission on over at most 4 executors, the
 * busy state following the instant utilization (the tests drive it). */
static void s_admission_cfg(sl_core_cfg_t *cfg, const char *policy)
{
    sl_core_cfg_default(cfg);
    snprintf(cfg->policy, sizeof(cfg->policy), "%s", policy);
    cfg->max_executors = 4;
    cfg->admission = true;
    cfg->busy_smooth_ms = 0;
}

static void test_admission_hysteresis(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(&r, 0, sizeof(r));
    s_admission_cfg(&cfg, "learned");
    cfg.busy_utilization = 0.8;
    cfg.busy_hysteresis = 0.3;
    cfg.admit_horizon_ms = 2000;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    /* Enough credits that every accepted job is dispatched and its predicted
     * prefill drains from the backlog as time passes. */
    sl_exec_info_t info = {.name = "x", .slots = 64, .backend = "sim"};
    uint32_t idx;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    sl_time_t now = SL_MS(1);
    sl_job_t *job;
    sl_busy_reason_t why = SL_BUSY_REASON_COUNT;
    int accepted = 0;
    sl_status_t st = SL_OK;
    for (int i = 0; i < 50 && st == SL_OK; i++) {
        char id[16];
        snprintf(id, sizeof(id), "o%d", i);
        st = s_submit(core, id, NULL, 0, 16000, now, &job, &why);
        accepted += st == SL_OK;
    }
    assert_int_equal(st, SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_OVERLOAD);
    assert_true(accepted >= 1);
    assert_true(sl_core_busy(core));
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_ENTERED), 1);
    /* Time passes: utilization falls below the threshold but not below the
     * hysteresis band, and the busy state holds. */
    while (sl_core_utilization(core, now) > 0.7) {
        now += SL_MS(10);
        assert_true(now < SL_MS(600000));
    }
    assert_int_equal(s_submit(core, "mid", NULL, 0, 100, now, &job, &why), SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_OVERLOAD);
    assert_true(sl_core_busy(core));
    /* Below the band: accepted again, and the state has ended. */
    while (sl_core_utilization(core, now) >= 0.5) {
        now += SL_MS(10);
        assert_true(now < SL_MS(600000));
    }
    assert_int_equal(s_submit(core, "low", NULL, 0, 100, now, &job, &why), SL_OK);
    assert_false(sl_core_busy(core));
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_ENTERED), 1);
    assert_true(sl_core_counter(core, SL_CTR_BUSY_OVERLOAD) >= 2);
    sl_core_destroy(&core);
}

static void test_admission_deadline_tenant_class(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(&r, 0, sizeof(r));
    s_admission_cfg(&cfg, "learned");
    cfg.tenant_rate = 1;
    cfg.tenant_burst = 2;
    /* Room for every job: the prefill backlog, not the share of places
     * taken, is what this test drives. */
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    sl_exec_info_t info = {.name = "x", .slots = 1000, .backend = "sim"};
    uint32_t idx;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    sl_job_t *job;
    sl_busy_reason_t why;
    sl_time_t retry = 0;
    /* A deadline no executor can meet: BUSY at once, with no retry-after. */
    sl_job_desc_t d = {.id = "dl",
                       .tenant = "a",
                       .prompt_tokens = 30000,
                       .max_new_tokens = 10,
                       .ttft_deadline = SL_MS(5)};
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(1), &job, &why, &retry), SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_DEADLINE);
    assert_int_equal(retry, 0);
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_DEADLINE), 1);
    /* Tenant bucket: burst 2 (one already spent above), then BUSY_TENANT;
     * another tenant is unaffected; after a second there is room again. */
    d.ttft_deadline = 0;
    d.prompt_tokens = 10;
    d.id = "t1";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(2), &job, &why, &retry), SL_OK);
    d.id = "t2";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(3), &job, &why, &retry), SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_TENANT);
    assert_true(retry > 0 && retry <= SL_MS(1000));
    d.tenant = "b";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(4), &job, &why, &retry), SL_OK);
    d.tenant = "a";
    d.id = "t3";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(1100), &job, &why, &retry), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_TENANT), 1);
    sl_core_destroy(&core);

    /* Interactive before batch: near the threshold batch work is refused
     * while interactive work is still accepted. */
    memset(&r, 0, sizeof(r));
    cfg.tenant_rate = 0;
    cfg.busy_hysteresis = 0.05;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    sl_time_t now = SL_MS(1);
    int i = 0;
    while (sl_core_utilization(core, now) < 0.74) {
        char id[16];
        snprintf(id, sizeof(id), "f%d", i++);
        sl_job_desc_t f = {.id = id, .prompt_tokens = 1000, .max_new_tokens = 10};
        assert_int_equal(sl_core_job_submit(core, &f, NULL, now, &job, &why, &retry), SL_OK);
        assert_true(i < 1000);
    }
    sl_job_desc_t bj = {
        .id = "batch", .prio = SL_PRIO_BATCH, .prompt_tokens = 10, .max_new_tokens = 10};
    sl_job_desc_t ij = {
        .id = "inter", .prio = SL_PRIO_INTERACTIVE, .prompt_tokens = 10, .max_new_tokens = 10};
    if (sl_core_utilization(core, now) < 0.8) {
        assert_int_equal(sl_core_job_submit(core, &bj, NULL, now, &job, &why, &retry), SL_ERR_BUSY);
        assert_int_equal(why, SL_BUSY_OVERLOAD);
        assert_int_equal(sl_core_job_submit(core, &ij, NULL, now, &job, &why, &retry), SL_OK);
    }
    sl_core_destroy(&core);
}

/* Decode-bound load: a full set of places (credits) is not overload (a
 * running batch is meant to be full); jobs waiting here for a place are,
 * in proportion to their predicted wait: the queue over the rate at which
 * places free up, against the horizon. And the busy state follows an
 * average, so one instant over the threshold does not refuse work while a
 * sustained one does. */
static void s_places_complete(sl_core_t *core, sl_job_t *job, sl_time_t now)
{
    sl_job_result_t res = {
        .status = SL_JOB_OK, .output_tokens = 4, .exec_ttft = SL_MS(5), .exec_end = SL_MS(40)};
    assert_non_null(job->exec);
    assert_int_equal(sl_core_job_complete(core, job->exec->index, job->seq, &res, NULL, now),
                     SL_OK);
}

static void test_admission_slots_and_smoothing(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(&r, 0, sizeof(r));
    s_admission_cfg(&cfg, "least-outstanding");
    cfg.admit_horizon_ms = 2000;
    cfg.done_ttl_ms = 0;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    sl_exec_info_t info = {.name = "x", .slots = 4, .backend = "sim"};
    uint32_t idx;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    sl_job_t *jobs[256];
    int n = 0, done = 0;
    sl_busy_reason_t why;
    sl_time_t retry;
    sl_time_t now = SL_MS(1);
    /* Tiny prompts: no prefill backlog to speak of. All four places taken
     * and nothing waiting: no load to refuse work for. */
    for (; n < 4; n++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", n);
        sl_job_desc_t d = {.id = id, .prompt_tokens = 8, .max_new_tokens = 4};
        assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &jobs[n], &why, &retry), SL_OK);
    }
    assert_true(sl_core_utilization(core, now) < 0.05);
    /* Three seconds of a place freeing and a job taking it every 100 ms:
     * the queue stays empty. */
    for (int i = 0; i < 30; i++) {
        now += SL_MS(100);
        s_places_complete(core, jobs[done++], now);
        char id[16];
        snprintf(id, sizeof(id), "w%d", i);
        sl_job_desc_t d = {.id = id, .prompt_tokens = 8, .max_new_tokens = 4};
        assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &jobs[n++], &why, &retry), SL_OK);
    }
    assert_true(sl_core_utilization(core, now) < 0.05);
    /* Then two arrive per place freed: the queue grows by one every 100 ms
     * and its wait (queue / ~10 places a second) passes 0.8 x 2 s at about
     * 16 queued. */
    sl_status_t st = SL_OK;
    int queued = 0;
    for (int i = 0; i < 60 && st == SL_OK; i++) {
        now += SL_MS(100);
        s_places_complete(core, jobs[done++], now);
        for (int k = 0; k < 2 && st == SL_OK; k++) {
            char id[16];
            snprintf(id, sizeof(id), "q%d_%d", i, k);
            sl_job_desc_t d = {.id = id, .prompt_tokens = 8, .max_new_tokens = 4};
            st = sl_core_job_submit(core, &d, NULL, now, &jobs[n], &why, &retry);
            if (st == SL_OK)
                n++;
        }
        queued = n - done - 4;
    }
    assert_int_equal(st, SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_OVERLOAD);
    assert_true(retry > 0);
    assert_true(queued >= 8);  /* a full batch with a short queue was not refused */
    assert_true(queued <= 30); /* a queue of seconds was */
    sl_core_destroy(&core);

    /* A 2 s average: the first refusal comes only once jobs have waited
     * for places for a while. Nothing frees a place here. */
    memset(&r, 0, sizeof(r));
    s_admission_cfg(&cfg, "least-outstanding");
    cfg.busy_smooth_ms = 2000;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    int accepted = 0;
    st = SL_OK;
    now = SL_MS(1);
    for (int i = 0; i < 400 && st == SL_OK; i++) {
        char id[16];
        snprintf(id, sizeof(id), "b%d", i);
        sl_job_desc_t b = {.id = id, .prompt_tokens = 8, .max_new_tokens = 4};
        sl_job_t *job;
        st = sl_core_job_submit(core, &b, NULL, now, &job, &why, &retry);
        accepted += st == SL_OK;
        now += SL_MS(20);
    }
    assert_int_equal(st, SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_OVERLOAD);
    assert_true(accepted > 6);   /* more than the instant rule lets in */
    assert_true(accepted < 400); /* but a sustained overload is refused */
    sl_core_destroy(&core);
}

/* ---------------- simulator ---------------- */

/* A small Mooncake-format trace with shared prefixes, built in memory. */
static sl_trace_t *s_trace(int n, uint64_t seed)
{
    sl_rand_t r;
    sl_rand_seed(&r, seed);
    size_t cap = (size_t)n * 400 + 64;
    char *text = malloc(cap);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int conv = (int)sl_rand_below(&r, 20);
        int blocks = 2 + (int)sl_rand_below(&r, 10);
        len += (size_t)snprintf(text + len, cap - len,
                                "{\"timestamp\": %d, \"input_length\": %d, \"output_length\": %d, "
                                "\"hash_ids\": [",
                                i * 150, blocks * 512 - 100, 20 + (int)sl_rand_below(&r, 100));
        for (int b = 0; b < blocks; b++)
            len += (size_t)snprintf(text + len, cap - len, "%s%d", b ? ", " : "", conv * 100 + b);
        len += (size_t)snprintf(text + len, cap - len, "]}\n");
    }
    sl_trace_t *t = NULL;
    assert_int_equal(sl_trace_parse(text, len, SL_TRACE_MOONCAKE, "test", &t), SL_OK);
    free(text);
    return t;
}

static void test_sim_deterministic(void **state)
{
    sl_trace_t *t = s_trace(300, 17);
    static const char *const policies[] = {"learned", "kv-cost", "p2c", "random", NULL};
    for (int k = 0; policies[k]; k++) {
        sl_sim_params_t p;
        sl_sim_params_default(&p);
        p.trace = t;
        p.executors = 4;
        p.policy = policies[k];
        p.seed = 7;
        sl_sim_report_t a, b;
        assert_int_equal(sl_sim_run(&p, &a), SL_OK);
        assert_int_equal(sl_sim_run(&p, &b), SL_OK);
        assert_int_equal(a.requests, 300);
        assert_int_equal(a.completed + a.busy + a.failed, 300);
        assert_int_equal(a.completed, b.completed);
        assert_int_equal(a.slo_met, b.slo_met);
        assert_int_equal(a.events, b.events);
        assert_true(a.p99_ttft_s == b.p99_ttft_s && a.mean_tpot_s == b.mean_tpot_s);
        assert_true(a.ttft_mape == b.ttft_mape && a.hit_rate == b.hit_rate);
        assert_memory_equal(a.ttft_us.bucket, b.ttft_us.bucket, sizeof(a.ttft_us.bucket));
        /* Shared prefixes are found through the index. */
        if (!strcmp(policies[k], "learned") || !strcmp(policies[k], "kv-cost"))
            assert_true(a.hit_rate > 0.2);
    }
    sl_trace_destroy(&t);
}

static void test_sim_failures(void **state)
{
    sl_trace_t *t = s_trace(300, 23);
    sl_sim_params_t p;
    sl_sim_params_default(&p);
    p.trace = t;
    p.executors = 4;
    p.fail_at_s = 10;
    p.fail_count = 2;
    p.fail_down_s = 5;
    sl_sim_report_t a, b;
    assert_int_equal(sl_sim_run(&p, &a), SL_OK);
    assert_int_equal(sl_sim_run(&p, &b), SL_OK);
    assert_int_equal(a.completed + a.busy + a.failed, 300);
    assert_true(a.completed > 250);
    assert_int_equal(a.events, b.events);
    assert_int_equal(a.slo_met, b.slo_met);
    sl_trace_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_match),
        cmocka_unit_test(test_index_bounded),
        cmocka_unit_test(test_prefix_index_crowded),
        cmocka_unit_test(test_model_converges),
        cmocka_unit_test(test_model_adapts_and_prior),
        cmocka_unit_test(test_model_split),
        cmocka_unit_test(test_model_step_remainder),
        cmocka_unit_test(test_model_stale),
        cmocka_unit_test(test_model_adapts_to_slowdown),
        cmocka_unit_test(test_model_fleet_memory),
        cmocka_unit_test(test_model_step_cost),
        cmocka_unit_test(test_step_clock),
        cmocka_unit_test(test_learned_explores_within_budget),
        cmocka_unit_test(test_model_learn_gap),
        cmocka_unit_test(test_model_save_load),
        cmocka_unit_test(test_model_bounded),
        cmocka_unit_test(test_policies_prefix),
        cmocka_unit_test(test_policies_load),
        cmocka_unit_test(test_policies_all),
        cmocka_unit_test(test_learned_avoids_slow),
        cmocka_unit_test(test_admission_hysteresis),
        cmocka_unit_test(test_admission_deadline_tenant_class),
        cmocka_unit_test(test_admission_slots_and_smoothing),
        cmocka_unit_test(test_sim_deterministic),
        cmocka_unit_test(test_sim_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
