/*
 * The delivered frontier of streamed output, in the core on a simulated
 * clock: each offset reaches the client once and in order (a duplicate, a
 * late chunk of a lost executor and a chunk past the frontier are dropped
 * and counted; an overlapping one is trimmed); a streaming job whose
 * executor is lost is dispatched again with the tokens its client has, and
 * its new executor's chunks go on after them; its first token's time
 * survives the loss; the bytes held return to 0 when jobs end.
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
    int n_dispatch;          /* dispatches */
    uint32_t last_exec;      /* executor of the last one */
    uint32_t last_resume;    /* resume tokens the last one carried */
    uint32_t last_attempt;   /* its attempt */
    uint32_t resumed[16];    /* the tokens it carried */
    int n_result;            /* results */
    sl_job_status_t status;  /* the last one's status */
    sl_job_timings_t timing; /* and timings */
    uint32_t attempts;       /* and attempts */
} rec_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    rec_t *r = arg;
    r->n_dispatch++;
    r->last_exec = e->index;
    r->last_resume = job->resume_tokens;
    r->last_attempt = job->attempts;
    assert_true(job->resume_tokens <= 16);
    if (job->resume_tokens)
        memcpy(r->resumed, job->delivered, job->resume_tokens * sizeof(uint32_t));
    return SL_OK;
}

static void s_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                     const sl_exec_t *e, const void *payload, const char *error)
{
    (void)e, (void)payload, (void)error;
    rec_t *r = arg;
    r->n_result++;
    r->status = status;
    r->timing = *t;
    r->attempts = job->attempts;
}

static const sl_core_io_t s_io = {.dispatch = s_dispatch, .result = s_result};

static sl_core_t *s_core(rec_t *r)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(r, 0, sizeof(*r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s", "least-outstanding");
    cfg.max_executors = 8;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    return core;
}

static uint32_t s_join(sl_core_t *core, const char *name, uint32_t slots)
{
    sl_exec_info_t info = {.name = name, .slots = slots, .backend = "ref"};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, SL_MS(1), &idx), SL_OK);
    return idx;
}

static sl_job_t *s_submit(sl_core_t *core, const char *id, uint32_t max_new, sl_time_t now)
{
    sl_job_desc_t d = {.id = id, .prompt_tokens = 20, .max_new_tokens = max_new, .stream = true};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry), SL_OK);
    return job;
}

/* A chunk of n tokens offset, offset+1, ... (token = 100 + its offset). */
static sl_status_t s_chunk(sl_core_t *core, uint32_t exec, const sl_job_t *job, uint32_t offset,
                           uint32_t n, sl_time_t now, uint32_t *skip, uint32_t *fwd)
{
    uint32_t toks[16];
    for (uint32_t i = 0; i < n; i++)
        toks[i] = 100 + offset + i;
    *skip = *fwd = 0;
    return sl_core_job_chunk(core, exec, job->seq, offset, toks, n, now, skip, fwd);
}

static void test_frontier_across_a_loss(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a = s_join(core, "a", 1);
    sl_job_t *job = s_submit(core, "j", 8, SL_MS(10));
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(r.last_exec, a);
    assert_int_equal(r.last_resume, 0);
    uint32_t b = s_join(core, "b", 1);
    uint32_t skip, fwd;

    /* in order: forwarded whole */
    assert_int_equal(s_chunk(core, a, job, 0, 3, SL_MS(20), &skip, &fwd), SL_OK);
    assert_int_equal(skip, 0);
    assert_int_equal(fwd, 3);
    assert_true(sl_core_counter(core, SL_CTR_STREAM_BYTES) >= 3 * sizeof(uint32_t));
    assert_true(sl_core_counter(core, SL_CTR_STREAM_BYTES) <= 8 * sizeof(uint32_t));
    /* the same chunk again: a duplicate */
    assert_int_equal(s_chunk(core, a, job, 0, 3, SL_MS(21), &skip, &fwd), SL_ERR_EXISTS);
    assert_int_equal(fwd, 0);
    /* overlapping the frontier: only the new token */
    assert_int_equal(s_chunk(core, a, job, 2, 2, SL_MS(22), &skip, &fwd), SL_OK);
    assert_int_equal(skip, 1);
    assert_int_equal(fwd, 1);
    /* past the frontier: a gap, never forwarded, the frontier stays */
    assert_int_equal(s_chunk(core, a, job, 6, 1, SL_MS(23), &skip, &fwd), SL_ERR_INVALID);
    assert_int_equal(job->n_delivered, 4);
    /* from an executor that does not run it */
    assert_int_equal(s_chunk(core, b, job, 4, 1, SL_MS(24), &skip, &fwd), SL_ERR_NOT_FOUND);

    /* a is lost: the job goes to b with the 4 tokens its client has */
    assert_int_equal(sl_core_exec_lost(core, a, "killed", SL_MS(30)), SL_OK);
    assert_int_equal(r.n_dispatch, 2);
    assert_int_equal(r.last_exec, b);
    assert_int_equal(r.last_attempt, 2);
    assert_int_equal(r.last_resume, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(r.resumed[i], 100 + i);
    assert_int_equal(sl_core_counter(core, SL_CTR_JOBS_RESUMED), 1);
    /* a late chunk of the lost executor */
    assert_int_equal(s_chunk(core, a, job, 4, 2, SL_MS(31), &skip, &fwd), SL_ERR_NOT_FOUND);
    /* b restarting from an earlier offset would be a duplicate; b going on is forwarded */
    assert_int_equal(s_chunk(core, b, job, 0, 4, SL_MS(32), &skip, &fwd), SL_ERR_EXISTS);
    assert_int_equal(s_chunk(core, b, job, 4, 3, SL_MS(33), &skip, &fwd), SL_OK);
    assert_int_equal(skip, 0);
    assert_int_equal(fwd, 3);
    /* past max_new_tokens: refused */
    assert_int_equal(s_chunk(core, b, job, 7, 2, SL_MS(34), &skip, &fwd), SL_ERR_INVALID);
    assert_int_equal(s_chunk(core, b, job, 7, 1, SL_MS(35), &skip, &fwd), SL_OK);
    assert_int_equal(job->n_delivered, 8);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(job->delivered[i], 100 + i);

    assert_int_equal(sl_core_counter(core, SL_CTR_CHUNKS_STALE), 4);
    assert_int_equal(sl_core_counter(core, SL_CTR_CHUNKS_GAP), 2);

    sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 8, .exec_ttft = SL_MS(5)};
    assert_int_equal(sl_core_job_complete(core, b, job->seq, &res, NULL, SL_MS(40)), SL_OK);
    assert_int_equal(r.n_result, 1);
    assert_int_equal(r.status, SL_JOB_OK);
    assert_int_equal(r.attempts, 2);
    /* its first token reached the client in the first attempt */
    assert_int_equal(r.timing.ttft, SL_MS(10));
    assert_int_equal(sl_core_counter(core, SL_CTR_STREAM_BYTES), 0);
    sl_core_destroy(&core);
}

/* Jobs that never streamed are dispatched again from the start; a job
 * whose every token was delivered before the loss still goes out again
 * (its executor ends it at once); memory held by a job still running at
 * destroy is freed. */
static void test_unstreamed_and_complete(void **state)
{
    (void)state;
    rec_t r;
    sl_core_t *core = s_core(&r);
    uint32_t a = s_join(core, "a", 2);
    sl_job_t *quiet = s_submit(core, "quiet", 4, SL_MS(10));
    sl_job_t *full = s_submit(core, "full", 2, SL_MS(10));
    assert_int_equal(r.n_dispatch, 2);
    uint32_t skip, fwd;
    assert_int_equal(s_chunk(core, a, full, 0, 2, SL_MS(11), &skip, &fwd), SL_OK);
    uint32_t b = s_join(core, "b", 2);
    assert_int_equal(sl_core_exec_lost(core, a, "killed", SL_MS(20)), SL_OK);
    assert_int_equal(r.n_dispatch, 4);
    assert_int_equal(quiet->exec->index, b);
    assert_int_equal(quiet->resume_tokens, 0);
    assert_int_equal(full->resume_tokens, 2);
    assert_int_equal(sl_core_counter(core, SL_CTR_JOBS_RESUMED), 1);
    assert_true(sl_core_counter(core, SL_CTR_STREAM_BYTES) > 0);
    sl_core_destroy(&core);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frontier_across_a_loss),
        cmocka_unit_test(test_unstreamed_and_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
