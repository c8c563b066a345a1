/*
 * Pipeline stages in the core, on a simulated clock: jobs go only to a first
 * stage with a complete chain of reached stages; two first stages get
 * disjoint chains; a stage lost mid-job moves its first stage's jobs to a
 * new chain, each answered once; a chain whose last stage cannot reach the
 * first is none; a whole-model executor is placed on as before; a layer
 * range outside its model is refused.
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
    sl_job_t *dispatch_job[64];
    int n_cancel;
    int n_result;
    sl_job_status_t status[64];
    int n_plan;
    uint32_t plan_first[16];
    uint32_t plan[16][SL_STAGE_MAX];
    uint32_t plan_n[16];
} rec_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    rec_t *r = arg;
    r->dispatch_job[r->n_dispatch % 64] = job;
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
    (void)e, (void)job;
    ((rec_t *)arg)->n_cancel++;
}

static void s_plan(void *arg, sl_exec_t *first, const uint32_t *chain, uint32_t n)
{
    rec_t *r = arg;
    int k = r->n_plan++ % 16;
    r->plan_first[k] = first->index;
    r->plan_n[k] = n;
    memcpy(r->plan[k], chain, n * sizeof(*chain));
}

static const sl_core_io_t s_io = {
    .dispatch = s_dispatch, .result = s_result, .cancel = s_cancel, .stage_plan = s_plan};

static sl_core_t *s_core(rec_t *r)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(r, 0, sizeof(*r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s", "least-outstanding");
    cfg.max_executors = 16;
    cfg.kv_split = false;
    cfg.kv_fetch = false;
    cfg.kv_rebalance = false;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    return core;
}

/* A data-plane executor holding layers first..last of 8 (total 0: all). */
static uint32_t s_join(sl_core_t *core, const char *name, uint32_t first, uint32_t last,
                       uint32_t total)
{
    const char *models[1] = {"m"};
    sl_exec_info_t info = {.name = name,
                           .slots = 4,
                           .models = models,
                           .n_models = 1,
                           .backend = "ref",
                           .kv_blocks_total = 64,
                           .kv_block_tokens = 16,
                           .kv_region_bytes = 1u << 20,
                           .layer_first = first,
                           .layer_last = last,
                           .layers_total = total};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    return idx;
}

static void s_reach(sl_core_t *core, uint32_t a, uint32_t b)
{
    assert_int_equal(sl_core_exec_reach(core, a, b, true, 0), SL_OK);
    assert_int_equal(sl_core_exec_reach(core, b, a, true, 0), SL_OK);
}

static sl_job_t *s_submit(sl_core_t *core, const char *id, sl_time_t now)
{
    sl_job_desc_t d = {.id = id, .model = "m", .prompt_tokens = 20, .max_new_tokens = 8};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry), SL_OK);
    return job;
}

static void s_complete(sl_core_t *core, uint32_t exec, sl_job_t *job, sl_time_t now)
{
    sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 8};
    assert_int_equal(sl_core_job_complete(core, exec, job->seq, &res, NULL, now), SL_OK);
}

static void test_jobs_wait_for_a_chain(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a = s_join(core, "a", 0, 3, 8), b = s_join(core, "b", 4, 7, 8);
    sl_job_t *job = s_submit(core, "j1", 0);
    assert_int_equal(r.n_dispatch, 0); /* no stage reached another yet */
    assert_int_equal(r.n_plan, 0);
    s_reach(core, a, b);
    assert_int_equal(r.n_plan, 1);
    assert_int_equal(r.plan_first[0], a);
    assert_int_equal(r.plan_n[0], 2);
    assert_int_equal(r.plan[0][0], a);
    assert_int_equal(r.plan[0][1], b);
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(r.dispatch_exec[0], a);
    /* more jobs: never on the later stage */
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "k%d", i);
        s_submit(core, id, 1);
    }
    for (int i = 0; i < r.n_dispatch; i++)
        assert_int_equal(r.dispatch_exec[i], a);
    s_complete(core, a, job, 5);
    assert_int_equal(r.n_result, 1);
    sl_core_destroy(&core);
}

static void test_two_chains_are_disjoint(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a1 = s_join(core, "a1", 0, 3, 8), a2 = s_join(core, "a2", 0, 3, 8);
    uint32_t b1 = s_join(core, "b1", 4, 7, 8), b2 = s_join(core, "b2", 4, 7, 8);
    uint32_t all[4] = {a1, a2, b1, b2};
    for (int i = 0; i < 4; i++)
        for (int k = i + 1; k < 4; k++)
            s_reach(core, all[i], all[k]);
    sl_exec_t *e1 = sl_core_exec_get(core, a1), *e2 = sl_core_exec_get(core, a2);
    assert_int_equal(e1->stage_n, 2);
    assert_int_equal(e2->stage_n, 2);
    assert_int_not_equal(e1->stage_chain[1], e2->stage_chain[1]);
    /* jobs spread over both first stages (least loaded), none on b1 or b2 */
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof(id), "j%d", i);
        s_submit(core, id, i);
    }
    int on[2] = {0, 0};
    for (int i = 0; i < r.n_dispatch; i++) {
        assert_true(r.dispatch_exec[i] == a1 || r.dispatch_exec[i] == a2);
        on[r.dispatch_exec[i] == a2]++;
    }
    assert_int_equal(on[0], 3);
    assert_int_equal(on[1], 3);
    sl_core_destroy(&core);
}

static void test_lost_stage_moves_jobs_to_a_new_chain(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a = s_join(core, "a", 0, 1, 8), b = s_join(core, "b", 2, 7, 8);
    uint32_t c = s_join(core, "c", 2, 5, 8), d = s_join(core, "d", 6, 7, 8);
    uint32_t all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++)
        for (int k = i + 1; k < 4; k++)
            s_reach(core, all[i], all[k]);
    sl_exec_t *ea = sl_core_exec_get(core, a);
    assert_int_equal(ea->stage_n, 2); /* a -> b: the one with fewest uses, lowest index */
    assert_int_equal(ea->stage_chain[1], b);
    sl_job_t *jobs[3];
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "j%d", i);
        jobs[i] = s_submit(core, id, i);
    }
    assert_int_equal(r.n_dispatch, 3);
    /* b is lost: a's chain is a -> c -> d; its jobs start again on it */
    assert_int_equal(sl_core_exec_lost(core, b, "heartbeats missed", 10), SL_OK);
    assert_int_equal(ea->stage_n, 3);
    assert_int_equal(ea->stage_chain[1], c);
    assert_int_equal(ea->stage_chain[2], d);
    assert_int_equal(r.n_cancel, 3);
    assert_int_equal(r.n_dispatch, 6);
    assert_int_equal(r.n_result, 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jobs[i]->attempts, 2);
        s_complete(core, a, jobs[i], 20 + i);
    }
    assert_int_equal(r.n_result, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r.status[i], SL_JOB_OK);
    /* c is lost too: no chain, a takes no job */
    assert_int_equal(sl_core_exec_lost(core, c, "heartbeats missed", 30), SL_OK);
    assert_int_equal(ea->stage_n, 0);
    s_submit(core, "late", 31);
    assert_int_equal(r.n_dispatch, 6);
    sl_core_destroy(&core);
}

static void test_tokens_must_get_back(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a = s_join(core, "a", 0, 3, 8), b = s_join(core, "b", 4, 7, 8);
    assert_int_equal(sl_core_exec_reach(core, a, b, true, 0), SL_OK);
    assert_int_equal(sl_core_exec_get(core, a)->stage_n, 0); /* b does not reach a */
    assert_int_equal(sl_core_exec_reach(core, b, a, true, 0), SL_OK);
    assert_int_equal(sl_core_exec_get(core, a)->stage_n, 2);
    /* the path breaks: the chain goes */
    assert_int_equal(sl_core_exec_reach(core, a, b, false, 1), SL_OK);
    assert_int_equal(sl_core_exec_get(core, a)->stage_n, 0);
    assert_int_equal(r.n_plan, 2);
    assert_int_equal(r.plan_n[1], 0);
    sl_core_destroy(&core);
}

static void test_whole_model_and_bad_ranges(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t w = s_join(core, "whole", 0, 0, 0);
    s_join(core, "later", 4, 7, 8);
    s_submit(core, "j", 0);
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(r.dispatch_exec[0], w);
    const char *models[1] = {"m"};
    sl_exec_info_t info = {.name = "bad",
                           .slots = 4,
                           .models = models,
                           .n_models = 1,
                           .kv_region_bytes = 1u << 20,
                           .layer_first = 5,
                           .layer_last = 8,
                           .layers_total = 8};
    uint32_t idx;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_ERR_INVALID);
    sl_core_destroy(&core);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_wait_for_a_chain),
        cmocka_unit_test(test_two_chains_are_disjoint),
        cmocka_unit_test(test_lost_stage_moves_jobs_to_a_new_chain),
        cmocka_unit_test(test_tokens_must_get_back),
        cmocka_unit_test(test_whole_model_and_bad_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
