/*
 * The core's data plane on a simulated clock: splitting a job over a
 * prefill and a decode executor, its failures, moving a running job,
 * abandoned moves, and the prefix fetch decision.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "scheduler/core/sl_core.h"
#include "tests/support/sl_test.h"

typedef struct rec {
    int n_dispatch;
    uint32_t dispatch_exec[64];
    int n_cancel;
    uint32_t cancel_exec[64];
    int n_migrate;
    int n_result;
    sl_job_status_t status[64];
    int n_lost;
} rec_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    (void)job;
    rec_t *r = arg;
    r->dispatch_exec[r->n_dispatch++ % 64] = e->index;
    return SL_OK;
}

static void s_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                     const sl_exec_t *e, const void *payload, const char *error)
{
    (void)job, (void)t, (void)e, (void)payload, (void)error;
    rec_t *r = arg;
    r->status[r->n_result++ % 64] = status;
}

static void s_cancel(void *arg, sl_exec_t *e, sl_job_t *job)
{
    (void)job;
    rec_t *r = arg;
    r->cancel_exec[r->n_cancel++ % 64] = e->index;
}

static sl_status_t s_migrate(void *arg, sl_job_t *job)
{
    (void)job;
    ((rec_t *)arg)->n_migrate++;
    return SL_OK;
}

static void s_lost(void *arg, sl_exec_t *e, const char *why)
{
    (void)e, (void)why;
    ((rec_t *)arg)->n_lost++;
}

static const sl_core_io_t s_io = {.dispatch = s_dispatch,
                                  .result = s_result,
                                  .cancel = s_cancel,
                                  .exec_lost = s_lost,
                                  .migrate = s_migrate};

static sl_core_t *s_core_fetch(rec_t *r, const char *policy, bool split, bool fetch)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(r, 0, sizeof(*r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s", policy);
    cfg.max_executors = 16;
    cfg.kv_split = split;
    cfg.kv_fetch = fetch;
    cfg.kv_rebalance = false;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    return core;
}

static sl_core_t *s_core(rec_t *r, const char *policy, bool split)
{
    return s_core_fetch(r, policy, split, true);
}

/* A data-plane executor of role, 64 blocks of 16 tokens, 1 MiB of region. */
static uint32_t s_join(sl_core_t *core, const char *name, sl_exec_role_t role, sl_time_t now)
{
    sl_exec_info_t info = {.name = name,
                           .slots = 4,
                           .backend = "sim",
                           .kv_blocks_total = 64,
                           .kv_block_tokens = 16,
                           .role = role,
                           .kv_region_bytes = 1u << 20,
                           .kv_fetch_source = true};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, now, &idx), SL_OK);
    return idx;
}

static void s_reach_all(sl_core_t *core, uint32_t n, sl_time_t now)
{
    for (uint32_t a = 0; a < n; a++)
        for (uint32_t b = 0; b < n; b++)
            if (a != b)
                assert_int_equal(sl_core_exec_reach(core, a, b, true, now), SL_OK);
}

/* Two mixed data-plane executors, a and b, that reached each other. */
static void s_mixed_pair(sl_core_t *core, uint32_t *a_p, uint32_t *b_p)
{
    *a_p = s_join(core, "a", SL_ROLE_MIXED, 0);
    *b_p = s_join(core, "b", SL_ROLE_MIXED, 0);
    s_reach_all(core, 2, 0);
}

static void s_touch_all(sl_core_t *core, uint32_t n, sl_time_t now)
{
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(sl_core_exec_touch(core, i, now), SL_OK);
}

static sl_job_t *s_submit(sl_core_t *core, const char *id, const uint64_t *hashes, uint32_t n,
                          sl_time_t now)
{
    sl_job_desc_t d = {.id = id,
                       .prompt_tokens = 200,
                       .max_new_tokens = 20,
                       .block_hashes = hashes,
                       .n_block_hashes = n,
                       .block_tokens = 16};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry), SL_OK);
    return job;
}

static sl_job_result_t s_ok(void)
{
    return (sl_job_result_t){
        .status = SL_JOB_OK, .output_tokens = 20, .exec_ttft = SL_MS(5), .exec_end = SL_MS(50)};
}

/* A prefill-only and a decode-only executor: every job is split; the
 * prefill side holds a credit until its push lands, the decode side's
 * completion ends the job. */
static void test_split_by_roles(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", true);
    uint32_t p = s_join(core, "p", SL_ROLE_PREFILL, 0);
    uint32_t d = s_join(core, "d", SL_ROLE_DECODE, 0);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, 0);
    assert_int_equal(r.n_dispatch, 0); /* nobody reached the decode executor yet */
    s_reach_all(core, 2, SL_MS(1));
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(r.dispatch_exec[0], d);
    assert_int_equal(job->kv_mode, SL_KV_PUSH);
    assert_int_equal(job->kv_peer->index, p);
    assert_int_equal(sl_core_exec_get(core, p)->inflight, 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLITS), 1);
    sl_kv_sent_t sent = {
        .job_seq = job->seq, .ok = true, .bytes = 1 << 20, .blocks = 13, .xfer_us = 800};
    assert_int_equal(sl_core_kv_sent(core, p, &sent, SL_MS(10)), SL_OK);
    assert_int_equal(sl_core_exec_get(core, p)->inflight, 0);
    assert_int_equal(job->kv_mode, SL_KV_LOCAL);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_HANDOFFS), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_BYTES), 1 << 20);
    sl_job_result_t res = s_ok();
    assert_int_equal(sl_core_job_complete(core, d, job->seq, &res, NULL, SL_MS(60)), SL_OK);
    assert_int_equal(r.n_result, 1);
    assert_int_equal(r.status[0], SL_JOB_OK);
    /* the prediction of a transfer moved toward what was measured */
    assert_true(sl_core_kv_xfer_predict(core, 1 << 20) > 0);
    sl_core_destroy(&core);
}

/* The prefill executor is lost before its push landed: the job is
 * requeued (the decode side told to drop it) and goes to the other
 * prefill executor; the old attempt's CANCELED report is not its end. */
static void test_split_prefill_lost(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", true);
    uint32_t p1 = s_join(core, "p1", SL_ROLE_PREFILL, 0);
    uint32_t d = s_join(core, "d", SL_ROLE_DECODE, 0);
    s_reach_all(core, 2, 0);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, SL_MS(1));
    assert_int_equal(job->kv_peer->index, p1);
    uint32_t p2 = s_join(core, "p2", SL_ROLE_PREFILL, SL_MS(2));
    s_reach_all(core, 3, SL_MS(2));
    assert_int_equal(sl_core_exec_lost(core, p1, "killed", SL_MS(3)), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLIT_FAILED), 1);
    assert_true(r.n_cancel >= 1);
    assert_int_equal(r.cancel_exec[0], d);
    /* requeued and split again, now with p2 */
    assert_int_equal(job->state, SL_JOB_RUNNING);
    assert_int_equal(job->kv_peer->index, p2);
    assert_int_equal(job->exec->index, d);
    sl_job_result_t canceled = {.status = SL_JOB_CANCELED};
    assert_int_equal(sl_core_job_complete(core, d, job->seq, &canceled, NULL, SL_MS(4)),
                     SL_ERR_NOT_FOUND);
    assert_int_equal(r.n_result, 0);
    sl_kv_sent_t sent = {.job_seq = job->seq, .ok = true, .bytes = 4096, .blocks = 1};
    assert_int_equal(sl_core_kv_sent(core, p2, &sent, SL_MS(5)), SL_OK);
    sl_job_result_t res = s_ok();
    assert_int_equal(sl_core_job_complete(core, d, job->seq, &res, NULL, SL_MS(9)), SL_OK);
    assert_int_equal(r.n_result, 1);
    assert_int_equal(r.status[0], SL_JOB_OK);
    sl_core_destroy(&core);
}

/* A failed push requeues; a split that never hands off times out. */
static void test_split_push_failed_and_timeout(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", true);
    uint32_t p = s_join(core, "p", SL_ROLE_PREFILL, 0);
    s_join(core, "d", SL_ROLE_DECODE, 0);
    s_reach_all(core, 2, 0);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, SL_MS(1));
    sl_kv_sent_t fail = {.job_seq = job->seq, .ok = false, .error = "peer lost"};
    assert_int_equal(sl_core_kv_sent(core, p, &fail, SL_MS(2)), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLIT_FAILED), 1);
    assert_int_equal(job->state, SL_JOB_RUNNING); /* requeued and split again */
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLITS), 2);
    /* no handoff within kv_move_timeout_ms (10 s) after its prompt's
     * predicted end: requeued once more (not before) */
    s_touch_all(core, 2, SL_MS(2) + SL_MS(9999));
    sl_core_tick(core, SL_MS(2) + SL_MS(9999));
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLIT_FAILED), 1);
    s_touch_all(core, 2, SL_MS(2) + SL_MS(11000)); /* alive all along */
    sl_core_tick(core, SL_MS(2) + SL_MS(11000));
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_SPLIT_FAILED), 2);
    sl_core_destroy(&core);
}

/* A running job moves: the destination holds a credit until the source's
 * push lands, then the job is the destination's. */
static void test_migrate(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", false);
    uint32_t a, b;
    s_mixed_pair(core, &a, &b);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, SL_MS(1));
    assert_int_equal(job->exec->index, a);
    assert_int_equal(sl_core_job_migrate(core, job->seq, b, SL_MS(2)), SL_OK);
    assert_int_equal(r.n_migrate, 1);
    assert_int_equal(job->kv_mode, SL_KV_MIGRATE);
    assert_int_equal(sl_core_exec_get(core, b)->inflight, 1);
    sl_kv_sent_t sent = {.job_seq = job->seq, .ok = true, .bytes = 8192, .pause_us = 700};
    assert_int_equal(sl_core_kv_sent(core, a, &sent, SL_MS(3)), SL_OK);
    assert_int_equal(job->exec->index, b);
    assert_int_equal(sl_core_exec_get(core, a)->inflight, 0);
    assert_int_equal(sl_core_exec_get(core, b)->inflight, 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_MIGRATIONS), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_PAUSE_US), 700);
    sl_job_result_t res = s_ok();
    /* the source's report is stale now; the destination's ends the job */
    assert_int_equal(sl_core_job_complete(core, a, job->seq, &res, NULL, SL_MS(4)),
                     SL_ERR_NOT_FOUND);
    assert_int_equal(sl_core_job_complete(core, b, job->seq, &res, NULL, SL_MS(5)), SL_OK);
    assert_int_equal(r.n_result, 1);
    sl_core_destroy(&core);
}

/* A move that times out is abandoned (the job stays); if the source then
 * says it pushed anyway, it let the job go: the job is requeued, not lost. */
static void test_migrate_abandoned(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", false);
    uint32_t a, b;
    s_mixed_pair(core, &a, &b);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, SL_MS(1));
    assert_int_equal(sl_core_job_migrate(core, job->seq, b, SL_MS(2)), SL_OK);
    s_touch_all(core, 2, SL_MS(2) + SL_MS(10001)); /* alive all along */
    sl_core_tick(core, SL_MS(2) + SL_MS(10001));
    assert_int_equal(job->kv_mode, SL_KV_LOCAL);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_MIGRATE_FAILED), 1);
    assert_int_equal(sl_core_exec_get(core, b)->inflight, 0);
    uint64_t requeued = sl_core_counter(core, SL_CTR_REQUEUED);
    sl_kv_sent_t sent = {.job_seq = job->seq, .ok = true};
    assert_int_equal(sl_core_kv_sent(core, a, &sent, SL_MS(10100)), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_REQUEUED), requeued + 1);
    assert_int_equal(job->state, SL_JOB_RUNNING); /* placed again */
    sl_core_destroy(&core);
}

/* A draining executor's running jobs move to another that its data plane
 * reaches; it gets no new jobs. */
static void test_drain_moves(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", false);
    uint32_t a, b;
    s_mixed_pair(core, &a, &b);
    sl_job_t *job = s_submit(core, "j1", NULL, 0, SL_MS(1));
    assert_int_equal(job->exec->index, a);
    assert_int_equal(sl_core_exec_drain(core, a, SL_MS(1000)), SL_OK);
    assert_int_equal(r.n_migrate, 1);
    assert_int_equal(job->kv_peer->index, b);
    sl_job_t *next = s_submit(core, "j2", NULL, 0, SL_MS(1000));
    assert_int_equal(next->exec->index, b);
    sl_core_destroy(&core);

    /* Drained right after the job started, before a move could land (its
     * first token not yet due): the job stays for now, and the first tick
     * after it becomes movable moves it, not a rebalancing period later
     * (by then a short job has often finished where it was). */
    core = s_core(&r, "round-robin", false);
    s_mixed_pair(core, &a, &b);
    job = s_submit(core, "j1", NULL, 0, SL_MS(1000));
    assert_int_equal(sl_core_exec_drain(core, a, SL_MS(1001)), SL_OK);
    assert_int_equal(r.n_migrate, 0);
    sl_time_t now = SL_MS(1001);
    while (r.n_migrate == 0 && now < SL_MS(3000)) {
        now += SL_MS(10);
        s_touch_all(core, 2, now);
        sl_core_tick(core, now);
    }
    assert_int_equal(r.n_migrate, 1);
    /* movable at dispatch + 2 x its predicted TTFT + 50 ms, moved within a
     * tick of that */
    double ready = 2.0 * job->pred.ttft_s + 0.05;
    assert_true((double)(now - SL_MS(1000)) / 1e9 <= ready + 0.010 + 1e-9);
    sl_core_destroy(&core);
}

/* Two mixed executors a and b that reached each other, a caching the 12
 * blocks 1000..1011; j0 goes to a and j1, whose prompt holds those blocks,
 * to b (round-robin). Returns j1. */
static sl_job_t *s_fetch_setup(sl_core_t *core, uint32_t *a_p, uint32_t *b_p)
{
    uint64_t hashes[12];
    for (int i = 0; i < 12; i++)
        hashes[i] = 1000 + (uint64_t)i;
    s_mixed_pair(core, a_p, b_p);
    assert_int_equal(sl_core_exec_kv_event(core, *a_p, hashes, 12, NULL, 0, false, 0), SL_OK);
    sl_job_t *first = s_submit(core, "j0", NULL, 0, SL_MS(1));
    assert_int_equal(first->exec->index, *a_p);
    sl_job_t *job = s_submit(core, "j1", hashes, 12, SL_MS(1));
    assert_int_equal(job->exec->index, *b_p);
    return job;
}

/* The job goes to an executor that lacks its prefix while a peer caches
 * it: the prefix is fetched when the transfer is predicted faster than
 * computing it, and counted. */
static void test_fetch_decision(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", false);
    uint32_t a, b;
    sl_job_t *job = s_fetch_setup(core, &a, &b);
    assert_int_equal(job->kv_mode, SL_KV_FETCH);
    assert_int_equal(job->kv_peer->index, a);
    assert_int_equal(job->kv_fetch_blocks, 12);
    assert_int_equal(sl_core_exec_get(core, a)->inflight, 1); /* a fetch takes no credit */
    sl_kv_sent_t sent = {.job_seq = job->seq, .ok = true, .bytes = 12 * 4096, .blocks = 12};
    assert_int_equal(sl_core_kv_sent(core, a, &sent, SL_MS(2)), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_FETCHES), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_BLOCKS_FETCHED), 12);
    assert_int_equal(job->kv_mode, SL_KV_LOCAL);
    sl_core_destroy(&core);

    /* with fetching off the same placement recomputes, and says so */
    core = s_core_fetch(&r, "round-robin", false, false);
    job = s_fetch_setup(core, &a, &b);
    assert_int_equal(job->kv_mode, SL_KV_LOCAL);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_BLOCKS_RECOMPUTED), 12);
    sl_core_destroy(&core);
}

/* A fetch that fails on the receiving side (no room for its blocks) is no
 * fault of the job: it is requeued without charging the attempt and placed
 * again without a move, its prompt computed where it runs. */
static void test_fetch_failed_runs_unmoved(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", false);
    uint32_t a, b;
    sl_job_t *job = s_fetch_setup(core, &a, &b);
    assert_int_equal(job->kv_mode, SL_KV_FETCH);
    assert_int_equal(job->attempts, 1);
    assert_int_equal(sl_core_kv_refused(core, b, job->seq, "no room", SL_MS(2)), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_FETCH_FAILED), 1);
    assert_int_equal(job->state, SL_JOB_RUNNING); /* placed again at once */
    assert_int_equal(job->kv_mode, SL_KV_LOCAL);
    assert_true(job->kv_no_move);
    assert_int_equal(job->attempts, 1); /* the failed move was not charged */
    assert_int_equal(sl_core_counter(core, SL_CTR_KV_FETCHES), 0);
    sl_core_destroy(&core);
}

/* A prefill or decode role without a data plane is refused. */
static void test_role_needs_data_plane(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", true);
    sl_exec_info_t info = {.name = "p", .slots = 4, .role = SL_ROLE_PREFILL};
    uint32_t idx;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_ERR_INVALID);
    sl_core_destroy(&core);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_by_roles),
        cmocka_unit_test(test_split_prefill_lost),
        cmocka_unit_test(test_split_push_failed_and_timeout),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_migrate_abandoned),
        cmocka_unit_test(test_drain_moves),
        cmocka_unit_test(test_fetch_decision),
        cmocka_unit_test(test_fetch_failed_runs_unmoved),
        cmocka_unit_test(test_role_needs_data_plane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
