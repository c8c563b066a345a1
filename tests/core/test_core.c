/* Unit tests of the decision core, driven by a simulated clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_hash.h"
#include "scheduler/core/sl_core.h"
#include "scheduler/core/sl_policy_registry.h"
#include "tests/support/sl_test.h"

#define MAX_EV 4096

typedef struct {
    uint32_t exec[MAX_EV]; /* executor index of each dispatch */
    uint64_t seq[MAX_EV];  /* job seq of each dispatch */
    int n_dispatch;
    int n_result;
    int status[MAX_EV];
    char result_id[MAX_EV][32];
    int n_release;
    int n_lost;
    int fail_dispatch_to; /* executor index whose dispatch fails, -1 none */
    size_t big_receipt;   /* > 0: receipts of this many bytes, a pattern from the id */
    int n_late;           /* results marked late */
    int n_log;            /* lines the core logged */
    int log_level;        /* the last one's level */
    char log[512];        /* the last one */
    sl_core_t *core;      /* set by tests whose callbacks call back into the core */
    sl_status_t reentry;  /* what such a call returned */
} rec_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    rec_t *r = arg;
    if ((int)e->index == r->fail_dispatch_to)
        return SL_ERR_LINK;
    r->exec[r->n_dispatch] = e->index;
    r->seq[r->n_dispatch] = job->seq;
    r->n_dispatch++;
    return SL_OK;
}

static void s_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                     const sl_exec_t *e, const void *payload, const char *err)
{
    rec_t *r = arg;
    r->status[r->n_result] = status;
    snprintf(r->result_id[r->n_result], 32, "%s", job->id);
    r->n_result++;
    r->n_late += t->late;
    /* the receipt the core remembers with the id: "done:<id>" */
    static char receipt[64];
    static uint8_t big[1 << 20];
    if (r->big_receipt) {
        for (size_t i = 0; i < r->big_receipt; i++)
            big[i] = (uint8_t)(job->id[i % strlen(job->id)] + i);
        job->receipt = big;
        job->receipt_len = r->big_receipt;
        return;
    }
    job->receipt = receipt;
    job->receipt_len = (size_t)snprintf(receipt, sizeof(receipt), "done:%s", job->id);
}

/* The receipt remembered for a finished id, as a string ("" when none). */
static const char *s_receipt(sl_core_t *core, const char *id)
{
    static char buf[64];
    const void *p = NULL;
    size_t len = 0;
    if (!sl_core_done_find(core, id, &p, &len))
        return "";
    snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)p);
    return buf;
}

static void s_release(void *arg, sl_job_t *job)
{
    ((rec_t *)arg)->n_release++;
}

static void s_lost(void *arg, sl_exec_t *e, const char *why)
{
    ((rec_t *)arg)->n_lost++;
}

static void s_log(void *arg, sl_core_log_level_t level, const char *msg)
{
    rec_t *r = arg;
    r->n_log++;
    r->log_level = level;
    snprintf(r->log, sizeof(r->log), "%s", msg);
}

static const sl_core_io_t s_io = {.dispatch = s_dispatch,
                                  .result = s_result,
                                  .release = s_release,
                                  .exec_lost = s_lost,
                                  .log = s_log};

/* A fresh record and the default configuration with policy (NULL: the
 * default one). */
static void s_setup(rec_t *r, sl_core_cfg_t *cfg, const char *policy)
{
    memset(r, 0, sizeof(*r));
    r->fail_dispatch_to = -1;
    sl_core_cfg_default(cfg);
    if (policy)
        snprintf(cfg->policy, sizeof(cfg->policy), "%s", policy);
}

static sl_core_t *s_core(rec_t *r, const char *policy, int credits)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    s_setup(r, &cfg, policy);
    cfg.credits = credits;
    cfg.max_executors = 64;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    return core;
}

static uint32_t s_join(sl_core_t *core, const char *name, uint32_t slots, sl_time_t now)
{
    sl_exec_info_t info = {.name = name, .slots = slots, .backend = "sim"};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, now, &idx), SL_OK);
    return idx;
}

static sl_status_t s_submit(sl_core_t *core, const char *id, sl_prio_t prio, sl_time_t now,
                            sl_job_t **job_p)
{
    sl_job_desc_t d = {.id = id, .prio = prio, .prompt_tokens = 100, .max_new_tokens = 10};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    sl_status_t st = sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry);
    if (job_p)
        *job_p = job;
    return st;
}

static void s_complete(sl_core_t *core, rec_t *r, int k, sl_time_t now)
{
    sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 10, .exec_ttft = SL_MS(5)};
    assert_int_equal(sl_core_job_complete(core, r->exec[k], r->seq[k], &res, NULL, now), SL_OK);
}

static void test_late_binding(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", 2);
    char id[32];
    s_join(core, "a", 8, 0);
    s_join(core, "b", 8, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "j%d", i);
        assert_int_equal(s_submit(core, id, SL_PRIO_BATCH, SL_MS(i), NULL), SL_OK);
    }
    /* 2 executors x 2 credits: 4 placed, 6 wait in the scheduler */
    assert_int_equal(r.n_dispatch, 4);
    assert_int_equal(sl_core_queue_depth(core, SL_PRIO_BATCH), 6);
    assert_int_equal(sl_core_inflight(core), 4);
    s_complete(core, &r, 0, SL_MS(20));
    assert_int_equal(r.n_dispatch, 5);
    assert_int_equal(r.exec[4], r.exec[0]); /* the freed executor got the next job */
    assert_int_equal(sl_core_queue_depth(core, SL_PRIO_BATCH), 5);
    assert_int_equal(r.n_result, 1);
    sl_core_destroy(&core);
    assert_int_equal(r.n_release, 10);
    assert_null(core);
}

static void test_interactive_first(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 1);
    s_join(core, "a", 4, 0);
    assert_int_equal(s_submit(core, "b0", SL_PRIO_BATCH, 0, NULL), SL_OK);
    assert_int_equal(s_submit(core, "b1", SL_PRIO_BATCH, 1, NULL), SL_OK);
    assert_int_equal(s_submit(core, "i0", SL_PRIO_INTERACTIVE, 2, NULL), SL_OK);
    assert_int_equal(r.n_dispatch, 1);
    s_complete(core, &r, 0, 10);
    sl_job_t *i0 = sl_core_job_find(core, "i0");
    assert_int_equal(i0->state, SL_JOB_RUNNING);
    assert_int_equal(sl_core_job_find(core, "b1")->state, SL_JOB_QUEUED);
    sl_core_destroy(&core);
}

static void test_requeue_on_loss(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 2);
    sl_exec_load_t load = {0};
    char id[32];
    uint32_t a = s_join(core, "a", 4, 0);
    uint32_t b = s_join(core, "b", 4, 0);
    for (int i = 0; i < 6; i++) {
        snprintf(id, sizeof(id), "j%d", i);
        assert_int_equal(s_submit(core, id, SL_PRIO_INTERACTIVE, 0, NULL), SL_OK);
    }
    assert_int_equal(r.n_dispatch, 4);
    /* b keeps beating, a goes silent; 3 missed 100 ms heartbeats -> lost */
    for (sl_time_t t = SL_MS(100); t <= SL_MS(400); t += SL_MS(100)) {
        sl_core_exec_heartbeat(core, b, &load, t);
        sl_core_tick(core, t);
    }
    assert_int_equal(r.n_lost, 1);
    assert_null(sl_core_exec_get(core, a));
    assert_int_equal(sl_core_counter(core, SL_CTR_REQUEUED), 2);
    /* a's two jobs wait at the front for b's credits */
    int k_a = -1;
    for (int k = 0; k < r.n_dispatch; k++)
        if (r.exec[k] == a && k_a < 0)
            k_a = k;
    /* a late completion from the lost executor is stale */
    sl_job_result_t res = {.status = SL_JOB_OK};
    assert_int_equal(sl_core_job_complete(core, a, r.seq[k_a], &res, NULL, SL_MS(410)),
                     SL_ERR_NOT_FOUND);
    assert_int_equal(sl_core_counter(core, SL_CTR_STALE_COMPLETIONS), 1);
    /* drain everything through b: every job answered exactly once */
    for (int k = 0; k < r.n_dispatch; k++)
        if (r.exec[k] == b)
            s_complete(core, &r, k, SL_MS(500) + k);
    assert_int_equal(r.n_result, 6);
    for (int i = 0; i < 6; i++)
        for (int j = i + 1; j < 6; j++)
            assert_string_not_equal(r.result_id[i], r.result_id[j]);
    sl_core_destroy(&core);
}

static void test_requeue_limit(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 1);
    s_join(core, "a", 1, 0);
    assert_int_equal(s_submit(core, "x", SL_PRIO_INTERACTIVE, 0, NULL), SL_OK);
    for (int i = 0; i < 3; i++) {
        sl_exec_t *e = sl_core_exec_get(core, r.exec[r.n_dispatch - 1]);
        assert_non_null(e);
        assert_int_equal(sl_core_exec_lost(core, e->index, "test", SL_MS(i)), SL_OK);
        if (i < 2)
            s_join(core, "a", 1, SL_MS(i));
    }
    assert_int_equal(r.n_result, 1);
    assert_int_equal(r.status[0], SL_JOB_FAILED);
    sl_core_destroy(&core);
}

static void test_dispatch_failure_loses_executor(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 1);
    uint32_t a = s_join(core, "a", 1, 0);
    r.fail_dispatch_to = (int)a;
    assert_int_equal(s_submit(core, "x", SL_PRIO_INTERACTIVE, 0, NULL), SL_OK);
    assert_int_equal(r.n_lost, 1);
    assert_int_equal(sl_core_queue_depth(core, SL_PRIO_INTERACTIVE), 1);
    r.fail_dispatch_to = -1;
    s_join(core, "b", 1, 1);
    assert_int_equal(r.n_dispatch, 1);
    sl_core_destroy(&core);
}

static void test_idempotent_submit(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "p2c", 4);
    sl_job_t *j1, *j2;
    s_join(core, "a", 4, 0);
    assert_int_equal(s_submit(core, "same", SL_PRIO_INTERACTIVE, 0, &j1), SL_OK);
    assert_int_equal(s_submit(core, "same", SL_PRIO_INTERACTIVE, 1, &j2), SL_ERR_EXISTS);
    assert_ptr_equal(j1, j2);
    assert_int_equal(r.n_dispatch, 1);
    assert_string_equal(s_receipt(core, "same"), "");
    s_complete(core, &r, 0, SL_MS(10));
    /* finished: the job is freed, its id and receipt remembered */
    assert_int_equal(r.n_release, 1);
    assert_null(sl_core_job_find(core, "same"));
    assert_string_equal(s_receipt(core, "same"), "done:same");
    assert_int_equal(s_submit(core, "same", SL_PRIO_INTERACTIVE, SL_MS(20), &j2), SL_ERR_EXISTS);
    assert_null(j2);
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(sl_core_job_cancel(core, "same", SL_MS(20)), SL_ERR_NOT_FOUND);
    /* after the done TTL (60 s) the id is forgotten */
    sl_exec_load_t load = {0};
    sl_core_exec_heartbeat(core, 0, &load, SL_MS(61000));
    sl_core_tick(core, SL_MS(30000));
    assert_string_equal(s_receipt(core, "same"), "done:same");
    sl_core_tick(core, SL_MS(61000));
    assert_string_equal(s_receipt(core, "same"), "");
    assert_int_equal(s_submit(core, "same", SL_PRIO_INTERACTIVE, SL_MS(61001), NULL), SL_OK);
    assert_int_equal(r.n_dispatch, 2);
    sl_core_destroy(&core);
}

static void test_done_bounded(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    char id[32];
    s_setup(&r, &cfg, NULL);
    cfg.done_max = 5;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    s_join(core, "a", 64, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof(id), "j%d", i);
        assert_int_equal(s_submit(core, id, SL_PRIO_BATCH, i, NULL), SL_OK);
        s_complete(core, &r, i, i + 1);
    }
    sl_core_tick(core, 20); /* well within the time to live */
    assert_string_equal(s_receipt(core, "j4"), "");
    assert_string_equal(s_receipt(core, "j5"), "done:j5");
    assert_string_equal(s_receipt(core, "j9"), "done:j9");
    assert_int_equal(r.n_release, 10); /* every job is freed at its result */
    /* a forgotten id is a new job */
    assert_int_equal(s_submit(core, "j4", SL_PRIO_BATCH, 21, NULL), SL_OK);
    assert_int_equal(s_submit(core, "j5", SL_PRIO_BATCH, 21, NULL), SL_ERR_EXISTS);
    sl_core_destroy(&core);
}

/* The finished-job log across many blocks: receipts of every size (one
 * larger than a block), kept whole, forgotten oldest first by time. */
static void test_done_log(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", 64);
    char id[32];
    s_join(core, "a", 64, 0);
    const int n = 3000;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "log%d", i);
        r.big_receipt = i == 1500 ? 600000 : (size_t)(i % 400) + 1;
        assert_int_equal(s_submit(core, id, SL_PRIO_BATCH, SL_MS(i), NULL), SL_OK);
        s_complete(core, &r, i, SL_MS(i) + 1);
    }
    assert_int_equal(r.n_release, n);
    /* every receipt reads back whole */
    for (int i = 0; i < n; i += 7) {
        snprintf(id, sizeof(id), "log%d", i);
        const void *p = NULL;
        size_t len = 0, want = i == 1500 ? 600000 : (size_t)(i % 400) + 1;
        assert_true(sl_core_done_find(core, id, &p, &len));
        assert_int_equal(len, want);
        for (size_t k = 0; k < len; k += 97)
            assert_int_equal(((const uint8_t *)p)[k], (uint8_t)(id[k % strlen(id)] + k));
    }
    /* 60 s time to live: at 61.5 s the first 1500 (finished before 1.5 s) are gone */
    sl_exec_load_t load = {0};
    sl_core_exec_heartbeat(core, 0, &load, SL_MS(61500));
    sl_core_tick(core, SL_MS(61500));
    for (int i = 0; i < n; i += 13) {
        snprintf(id, sizeof(id), "log%d", i);
        const void *p;
        size_t len;
        assert_int_equal(sl_core_done_find(core, id, &p, &len), i >= 1500);
    }
    /* a forgotten id runs again; a remembered one does not */
    assert_int_equal(s_submit(core, "log10", SL_PRIO_BATCH, SL_MS(61500), NULL), SL_OK);
    assert_int_equal(s_submit(core, "log2000", SL_PRIO_BATCH, SL_MS(61500), NULL), SL_ERR_EXISTS);
    /* all forgotten, then the log is reused */
    sl_core_exec_heartbeat(core, 0, &load, SL_MS(70000));
    sl_core_tick(core, SL_MS(70000));
    snprintf(id, sizeof(id), "log%d", n - 1);
    const void *p;
    size_t len;
    assert_false(sl_core_done_find(core, id, &p, &len));
    r.big_receipt = 0;
    assert_int_equal(s_submit(core, "again", SL_PRIO_BATCH, SL_MS(70000), NULL), SL_OK);
    s_complete(core, &r, r.n_dispatch - 1, SL_MS(70001));
    assert_string_equal(s_receipt(core, "again"), "done:again");
    sl_core_destroy(&core);
}

static void test_busy_reasons(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    sl_busy_reason_t reason = 0;
    sl_time_t retry = 0;
    sl_job_t *job;
    sl_job_desc_t d = {.id = "x", .prompt_tokens = 1, .max_new_tokens = 1};
    s_setup(&r, &cfg, NULL);
    cfg.queue_max = 2;
    cfg.credits = 1;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &reason, &retry), SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_NO_EXECUTOR);
    assert_int_equal(retry, SL_MS(1000));
    s_join(core, "a", 1, 0);
    assert_int_equal(s_submit(core, "1", SL_PRIO_BATCH, 0, NULL), SL_OK); /* dispatched */
    assert_int_equal(s_submit(core, "2", SL_PRIO_BATCH, 0, NULL), SL_OK);
    assert_int_equal(s_submit(core, "3", SL_PRIO_BATCH, 0, NULL), SL_OK);
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &reason, &retry), SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_QUEUE_FULL);
    sl_core_drain(core);
    d.id = "y";
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &reason, &retry), SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_DRAINING);
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_QUEUE_FULL), 1);
    assert_int_equal(sl_core_jobs_pending(core), 3);
    sl_core_destroy(&core);
}

static void test_expiry_and_cancel(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 1);
    sl_job_desc_t d = {.id = "late",
                       .prio = SL_PRIO_BATCH,
                       .prompt_tokens = 1,
                       .max_new_tokens = 1,
                       .deadline = SL_MS(50)};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job;
    sl_exec_load_t load = {0};
    uint32_t a = s_join(core, "a", 1, 0);
    assert_int_equal(s_submit(core, "run", SL_PRIO_BATCH, 0, NULL), SL_OK);
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 0, &job, &reason, &retry), SL_OK);
    assert_int_equal(s_submit(core, "gone", SL_PRIO_BATCH, 0, NULL), SL_OK);
    assert_int_equal(sl_core_job_cancel(core, "gone", SL_MS(1)), SL_OK);
    assert_int_equal(r.status[0], SL_JOB_CANCELED);
    sl_core_exec_heartbeat(core, a, &load, SL_MS(60));
    sl_core_tick(core, SL_MS(60));
    assert_int_equal(r.n_result, 2);
    assert_int_equal(r.status[1], SL_JOB_EXPIRED);
    assert_string_equal(r.result_id[1], "late");
    assert_int_equal(sl_core_job_cancel(core, "late", SL_MS(61)), SL_ERR_NOT_FOUND);
    sl_core_destroy(&core);
}

/* Each policy spreads N jobs over 4 equal executors; count the spread. */
static void s_spread(const char *policy, int counts[4])
{
    rec_t r;
    sl_core_t *core = s_core(&r, policy, 64);
    char id[32], name[8];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "e%d", i);
        s_join(core, name, 64, 0);
    }
    memset(counts, 0, 4 * sizeof(int));
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "j%d", i);
        assert_int_equal(s_submit(core, id, SL_PRIO_BATCH, i, NULL), SL_OK);
        /* complete every job placed on e0 at once: e0 looks idle */
        if (r.exec[r.n_dispatch - 1] == 0)
            s_complete(core, &r, r.n_dispatch - 1, i);
    }
    for (int k = 0; k < r.n_dispatch; k++)
        counts[r.exec[k]]++;
    sl_core_destroy(&core);
}

/* A policy from outside the registry (as a plugin is given): it answers
 * arg's index, which may be out of range. */
typedef struct fixed_policy {
    size_t answer;        /* index returned by place() */
    int placed, observed; /* calls seen */
    int joined;           /* executors that joined, net */
} fixed_policy_t;

static sl_status_t s_fixed_init(const sl_policy_params_t *p, void **state_p)
{
    *state_p = p->arg;
    return SL_OK;
}

static size_t s_fixed_place(void *state, sl_job_t *job, sl_exec_t *const *cands, size_t n,
                            sl_time_t now)
{
    (void)job, (void)cands, (void)n, (void)now;
    fixed_policy_t *f = state;
    f->placed++;
    return f->answer;
}

static void s_fixed_observe(void *state, const sl_job_t *job, const sl_exec_t *e,
                            const sl_job_result_t *res, sl_time_t now)
{
    (void)job, (void)e, (void)res, (void)now;
    ((fixed_policy_t *)state)->observed++;
}

static void s_fixed_change(void *state, sl_exec_t *e, bool joined)
{
    (void)e;
    ((fixed_policy_t *)state)->joined += joined ? 1 : -1;
}

static void s_fixed_fini(void *state)
{
    (void)state;
}

static const sl_policy_ops_t s_fixed_ops = {.name = "fixed",
                                            .api_version = SL_POLICY_API_VERSION,
                                            .init = s_fixed_init,
                                            .place = s_fixed_place,
                                            .observe = s_fixed_observe,
                                            .exec_change = s_fixed_change,
                                            .fini = s_fixed_fini};

/* cfg.policy_ops places; a choice out of range is counted and the
 * built-in named by cfg.policy (round-robin here) places that job. */
static void test_policy_ops_and_fallback(void **state)
{
    (void)state;
    for (int broken = 0; broken < 2; broken++) {
        fixed_policy_t f = {.answer = broken ? 99 : 2};
        rec_t r;
        sl_core_cfg_t cfg;
        sl_core_t *core = NULL;
        s_setup(&r, &cfg, "round-robin");
        cfg.policy_ops = &s_fixed_ops;
        cfg.policy_arg = &f;
        cfg.credits = 64;
        cfg.max_executors = 8;
        assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
        assert_string_equal(sl_core_policy_name(core), "fixed");
        for (int i = 0; i < 4; i++) {
            char name[8];
            snprintf(name, sizeof(name), "e%d", i);
            s_join(core, name, 64, 0);
        }
        assert_int_equal(f.joined, 4);
        for (int i = 0; i < 8; i++) {
            char id[16];
            snprintf(id, sizeof(id), "j%d", i);
            assert_int_equal(s_submit(core, id, SL_PRIO_BATCH, i, NULL), SL_OK);
        }
        assert_int_equal(r.n_dispatch, 8);
        assert_int_equal(f.placed, 8);
        int counts[4] = {0};
        for (int k = 0; k < r.n_dispatch; k++)
            counts[r.exec[k]]++;
        if (broken) {
            assert_int_equal(sl_core_counter(core, SL_CTR_POLICY_INVALID), 8);
            for (int i = 0; i < 4; i++)
                assert_int_equal(counts[i], 2); /* round-robin placed them */
        } else {
            assert_int_equal(sl_core_counter(core, SL_CTR_POLICY_INVALID), 0);
            assert_int_equal(counts[2], 8);
        }
        s_complete(core, &r, 0, 10);
        assert_int_equal(f.observed, 1);
        sl_core_destroy(&core);
    }
}

/* A sampling policy (learned) on a fleet larger than twice its sample is
 * offered a random sample of the free executors; when none of those can
 * take the job (here: one executor of 200 serves its model) every free
 * executor is offered, so the job is still placed at once. */
static void test_sampled_candidates(void **state)
{
    (void)state;
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    s_setup(&r, &cfg, "learned");
    cfg.max_executors = 256;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    static const char *const only[] = {"rare"};
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof(name), "e%d", i);
        sl_exec_info_t info = {.name = name, .slots = 4, .backend = "sim"};
        if (i == 137) {
            info.models = only;
            info.n_models = 1;
        } else {
            static const char *const common[] = {"common"};
            info.models = common;
            info.n_models = 1;
        }
        uint32_t idx = 0;
        assert_int_equal(sl_core_exec_join(core, &info, NULL, 0, &idx), SL_OK);
    }
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    for (int i = 0; i < 50; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c%d", i);
        sl_job_desc_t d = {.id = id, .model = "common", .prompt_tokens = 100, .max_new_tokens = 10};
        assert_int_equal(sl_core_job_submit(core, &d, NULL, i, &job, &reason, &retry), SL_OK);
    }
    assert_int_equal(r.n_dispatch, 50);
    for (int k = 0; k < r.n_dispatch; k++)
        assert_int_not_equal(r.exec[k], 137);
    sl_job_desc_t d = {
        .id = "rare-job", .model = "rare", .prompt_tokens = 100, .max_new_tokens = 10};
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 60, &job, &reason, &retry), SL_OK);
    assert_int_equal(r.n_dispatch, 51);
    assert_int_equal(r.exec[50], 137);
    sl_core_destroy(&core);
}

static void test_policies(void **state)
{
    int c[4];
    s_spread("round-robin", c);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c[i], 50); /* blind to load */
    s_spread("least-outstanding", c);
    assert_true(c[0] > 120); /* the idle executor takes most */
    s_spread("p2c", c);
    assert_true(c[0] > 70 && c[0] < 200);
    s_spread("random", c);
    for (int i = 0; i < 4; i++)
        assert_true(c[i] > 25 && c[i] < 80);
    assert_non_null(sl_policy_find("least-conn"));
    assert_null(sl_policy_find("nope"));
    /* The one table: every listed name finds a policy of that name, the
     * help text lists the same names in the same order, and the default
     * policy is one of them. */
    char text[512] = "";
    int n = 0;
    for (const char *const *name = sl_policy_names(); *name; name++, n++) {
        const sl_policy_ops_t *ops = sl_policy_find(*name);
        assert_non_null(ops);
        assert_string_equal(ops->name, *name);
        assert_int_equal(ops->api_version, SL_POLICY_API_VERSION);
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s%s", n ? ", " : "", *name);
    }
    assert_int_equal(n, 10);
    assert_string_equal(text, SL_POLICY_NAMES_TEXT);
    sl_core_cfg_t dcfg;
    sl_core_cfg_default(&dcfg);
    assert_non_null(sl_policy_find(dcfg.policy));
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    memset(&r, 0, sizeof(r));
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "nope");
    /* The core says why through its log callback, not on stderr. */
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_ERR_INVALID);
    assert_null(core);
    assert_int_equal(r.n_log, 1);
    assert_int_equal(r.log_level, SL_CORE_LOG_ERROR);
    assert_string_equal(r.log, "unknown placement policy 'nope'");
}

static void test_rejoin_replaces(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "round-robin", 2);
    s_join(core, "a", 2, 0);
    assert_int_equal(s_submit(core, "x", SL_PRIO_BATCH, 0, NULL), SL_OK);
    s_join(core, "a", 2, SL_MS(5)); /* restarted under the same name */
    assert_int_equal(r.n_lost, 1);
    assert_int_equal(sl_core_exec_count(core), 1);
    assert_int_equal(r.n_dispatch, 2); /* x was dispatched again */
    sl_core_destroy(&core);
}

static uint32_t s_join_kv(sl_core_t *core, const char *name, uint32_t block_tokens, sl_time_t now)
{
    sl_exec_info_t info = {.name = name,
                           .slots = 4,
                           .backend = "ref",
                           .kv_blocks_total = 1000,
                           .kv_block_tokens = block_tokens};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, now, &idx), SL_OK);
    return idx;
}

static sl_status_t s_submit_tokens(sl_core_t *core, const char *id, const uint32_t *tokens,
                                   uint32_t n, sl_time_t now, sl_job_t **job_p)
{
    sl_job_desc_t d = {.id = id,
                       .prio = SL_PRIO_INTERACTIVE,
                       .prompt_tokens = n,
                       .max_new_tokens = 4,
                       .token_ids = tokens,
                       .n_token_ids = n};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    sl_status_t st = sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry);
    if (job_p)
        *job_p = job;
    return st;
}

/* The block size prompts are hashed with follows the executors: the one
 * most of them advertise, ties to the smaller, none without KV. */
static void test_hash_block_size(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "least-outstanding", 0);
    assert_int_equal(sl_core_hash_block_tokens(core), 0);
    uint32_t tokens[100];
    for (uint32_t i = 0; i < 100; i++)
        tokens[i] = i * 7 + 3;
    sl_job_t *job = NULL;
    s_join_kv(core, "nokv", 0, 0);
    assert_int_equal(s_submit_tokens(core, "j0", tokens, 100, 0, &job), SL_OK);
    assert_int_equal(job->n_block_hashes, 0); /* no block size known: not hashed */
    s_join_kv(core, "a", 16, 0);
    assert_int_equal(sl_core_hash_block_tokens(core), 16);
    uint32_t c = s_join_kv(core, "c", 8, 0);
    assert_int_equal(sl_core_hash_block_tokens(core), 8); /* 1:1, the smaller */
    uint32_t b = s_join_kv(core, "b", 16, 0);
    assert_int_equal(sl_core_hash_block_tokens(core), 16);
    assert_int_equal(sl_core_exec_lost(core, b, "test", 1), SL_OK);
    assert_int_equal(sl_core_hash_block_tokens(core), 8);
    assert_int_equal(sl_core_exec_lost(core, c, "test", 1), SL_OK);
    assert_int_equal(sl_core_hash_block_tokens(core), 16);

    /* 100 tokens = 6 full blocks of 16, the same hashes the executors compute */
    uint64_t want[6];
    assert_int_equal(sl_hash_kv_blocks(tokens, 100, 16, want, 6), 6);
    assert_int_equal(s_submit_tokens(core, "j1", tokens, 100, 1, &job), SL_OK);
    assert_int_equal(job->n_block_hashes, 6);
    assert_int_equal(job->block_tokens, 16);
    assert_memory_equal(job->block_hashes, want, sizeof(want));
    assert_int_equal(sl_core_counter(core, SL_CTR_PROMPTS_HASHED), 1);
    /* shorter than a block: nothing to hash */
    assert_int_equal(s_submit_tokens(core, "j2", tokens, 15, 1, &job), SL_OK);
    assert_int_equal(job->n_block_hashes, 0);
    assert_int_equal(sl_core_counter(core, SL_CTR_PROMPTS_HASHED), 1);
    /* hashes the client sent win over token ids */
    uint64_t given[2] = {11, 22};
    sl_job_desc_t d = {.id = "j3",
                       .prompt_tokens = 100,
                       .max_new_tokens = 4,
                       .block_hashes = given,
                       .n_block_hashes = 2,
                       .block_tokens = 50,
                       .token_ids = tokens,
                       .n_token_ids = 100};
    sl_busy_reason_t reason;
    sl_time_t retry;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 1, &job, &reason, &retry), SL_OK);
    assert_int_equal(job->n_block_hashes, 2);
    assert_int_equal(job->block_tokens, 50);
    assert_true(job->block_hashes[0] == 11 && job->block_hashes[1] == 22);
    assert_int_equal(sl_core_counter(core, SL_CTR_PROMPTS_HASHED), 1);
    sl_core_destroy(&core);
}

/* A token prompt whose leading blocks one executor reported stored goes
 * there under every prefix-aware policy (the learned one through its
 * model's cached-token feature), though the other is first among equals. */
static void test_token_prompt_prefix_placement(void **state)
{
    static const char *const policies[] = {"cache-switch", "kv-cost", "learned"};
    uint32_t tokens[100];
    for (uint32_t i = 0; i < 100; i++)
        tokens[i] = i * 13 + 5;
    uint64_t h[6];
    assert_int_equal(sl_hash_kv_blocks(tokens, 100, 16, h, 6), 6);
    for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
        rec_t r;
        sl_core_t *core = s_core(&r, policies[p], 0);
        s_join_kv(core, "a", 16, 0);
        uint32_t b = s_join_kv(core, "b", 16, 0);
        assert_int_equal(sl_core_exec_kv_event(core, b, h, 5, NULL, 0, false, 0), SL_OK);
        assert_int_equal(s_submit_tokens(core, "q", tokens, 100, SL_MS(1), NULL), SL_OK);
        assert_int_equal(r.n_dispatch, 1);
        assert_int_equal(r.exec[0], b);
        assert_int_equal(sl_core_counter(core, SL_CTR_PREFIX_HIT_BLOCKS), 5);
        assert_int_equal(sl_core_counter(core, SL_CTR_PROMPTS_HASHED), 1);
        sl_core_destroy(&core);
    }
}

static uint32_t s_join_limits(sl_core_t *core, const char *name, uint32_t ctx, uint32_t vocab,
                              sl_time_t now)
{
    sl_exec_info_t info = {
        .name = name, .slots = 4, .backend = "ref", .max_context_tokens = ctx, .vocab_size = vocab};
    uint32_t idx = 0;
    assert_int_equal(sl_core_exec_join(core, &info, NULL, now, &idx), SL_OK);
    return idx;
}

static sl_status_t s_submit_len(sl_core_t *core, const char *id, uint32_t prompt, uint32_t out,
                                const uint32_t *ids, sl_time_t now, char *why, size_t why_len)
{
    sl_job_desc_t d = {.id = id,
                       .prompt_tokens = prompt,
                       .max_new_tokens = out,
                       .token_ids = ids,
                       .n_token_ids = ids ? prompt : 0};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    sl_status_t st = sl_core_job_submit(core, &d, NULL, now, &job, &reason, &retry);
    if (st == SL_ERR_NO_EXECUTOR)
        sl_core_job_misfit(core, &d, why, why_len);
    return st;
}

/* Executors declare their context and vocabulary; a job goes only where it
 * fits (whatever the policy would prefer), and one that fits no live
 * executor is refused at submission with the reason. */
static void test_placement_by_limits(void **state)
{
    rec_t r;
    char id[32], why[256] = "";
    sl_core_t *core = s_core(&r, "least-outstanding", 0);
    uint32_t small = s_join_limits(core, "small", 512, 1000, 0);
    uint32_t big = s_join_limits(core, "big", 4096, 0, 0);
    /* Too long for small: all four go to big, though small is idle. */
    for (int i = 0; i < 4; i++) {
        snprintf(id, sizeof(id), "long%d", i);
        assert_int_equal(s_submit_len(core, id, 512, 64, NULL, SL_MS(1), why, sizeof(why)), SL_OK);
        assert_int_equal(r.exec[r.n_dispatch - 1], big);
    }
    /* Fits both: the idle small one gets it. */
    assert_int_equal(s_submit_len(core, "short", 100, 10, NULL, SL_MS(1), why, sizeof(why)), SL_OK);
    assert_int_equal(r.exec[r.n_dispatch - 1], small);
    /* A token id past small's vocabulary waits for big (full) in the queue. */
    uint32_t ids[8] = {1, 2, 3, 1500, 4, 5, 6, 7};
    assert_int_equal(s_submit_len(core, "vocab", 8, 4, ids, SL_MS(1), why, sizeof(why)), SL_OK);
    assert_int_equal(r.n_dispatch, 5);
    s_complete(core, &r, 0, SL_MS(2)); /* a credit on big: the waiting one goes there */
    assert_int_equal(r.n_dispatch, 6);
    assert_int_equal(r.exec[5], big);
    /* Longer than every executor: refused, with the reason. */
    assert_int_equal(s_submit_len(core, "huge", 8000, 64, NULL, SL_MS(3), why, sizeof(why)),
                     SL_ERR_NO_EXECUTOR);
    assert_string_equal(why, "prompt 8000 + 64 new tokens exceed every executor's context "
                             "(largest 4096)");
    assert_null(sl_core_job_find(core, "huge"));
    /* Without big, small's limits are the cluster's: big's jobs that small
     * cannot hold end REJECTED instead of blocking the queue. */
    assert_int_equal(r.n_result, 1);
    assert_int_equal(sl_core_exec_lost(core, big, "test", SL_MS(4)), SL_OK);
    assert_int_equal(r.n_result, 5);
    for (int k = 1; k < 5; k++)
        assert_int_equal(r.status[k], SL_JOB_REJECTED);
    assert_int_equal(sl_core_jobs_pending(core), 1); /* "short", on small */
    assert_int_equal(s_submit_len(core, "long9", 512, 64, NULL, SL_MS(5), why, sizeof(why)),
                     SL_ERR_NO_EXECUTOR);
    assert_string_equal(why, "prompt 512 + 64 new tokens exceed every executor's context "
                             "(largest 512)");
    assert_int_equal(s_submit_len(core, "vocab2", 8, 4, ids, SL_MS(5), why, sizeof(why)),
                     SL_ERR_NO_EXECUTOR);
    assert_string_equal(why, "prompt token id 1500 is outside every executor's vocabulary "
                             "(largest 1000)");
    assert_int_equal(sl_core_counter(core, SL_CTR_REFUSED_NO_FIT), 3);
    /* An executor with no limits takes anything. */
    s_join_limits(core, "free", 0, 0, SL_MS(6));
    assert_int_equal(s_submit_len(core, "huge2", 8000, 64, NULL, SL_MS(6), why, sizeof(why)),
                     SL_OK);
    sl_core_destroy(&core);
}

/* One executor fails every job at once beside two healthy ones that take
 * 20 ms a job. Every policy sees the quarantine: after the first few
 * failures the bad executor gets nothing for quarantine_ms, its failures
 * are counted as failures (core counters and its own), and after the
 * quarantine it is tried again. Without quarantine least-outstanding sent
 * it most of the jobs (it always looked idle). */
static int s_failing_run(const char *policy, double quarantine_failures, rec_t *r, uint32_t *bad_p,
                         sl_core_t **core_p)
{
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    static sl_time_t at[MAX_EV];
    static bool done[MAX_EV];
    memset(r, 0, sizeof(*r));
    memset(at, 0, sizeof(at));
    memset(done, 0, sizeof(done));
    r->fail_dispatch_to = -1;
    sl_core_cfg_default(&cfg);
    snprintf(cfg.policy, sizeof(cfg.policy), "%s", policy);
    cfg.max_executors = 8;
    cfg.quarantine_failures = quarantine_failures;
    assert_int_equal(sl_core_create(&cfg, &s_io, r, &core), SL_OK);
    uint32_t bad = s_join(core, "bad", 4, 0);
    s_join(core, "good1", 4, 0);
    s_join(core, "good2", 4, 0);
    char id[32];
    int to_bad = 0;
    for (int step = 0; step < 400; step++) {
        sl_time_t now = SL_MS(1 + step * 5);
        snprintf(id, sizeof(id), "j%d", step);
        assert_int_equal(s_submit(core, id, SL_PRIO_INTERACTIVE, now, NULL), SL_OK);
        for (int k = 0; k < r->n_dispatch; k++) {
            if (done[k])
                continue;
            if (!at[k])
                at[k] = now;
            bool fail = r->exec[k] == bad;
            if (!fail && now - at[k] < SL_MS(20))
                continue;
            sl_job_result_t res = {.status = fail ? SL_JOB_FAILED : SL_JOB_OK,
                                   .output_tokens = fail ? 0 : 10,
                                   .exec_ttft = fail ? 0 : SL_MS(5)};
            done[k] = true;
            to_bad += fail;
            assert_int_equal(sl_core_job_complete(core, r->exec[k], r->seq[k], &res, NULL, now),
                             SL_OK);
        }
        if (step % 10 == 0) {
            for (uint32_t i = 0; i < 3; i++)
                sl_core_exec_touch(core, i, now);
            sl_core_tick(core, now);
        }
    }
    *bad_p = bad;
    *core_p = core;
    return to_bad;
}

static void test_failing_executor_quarantined(void **state)
{
    static const char *const policies[] = {"least-outstanding", "round-robin", "p2c", "learned",
                                           "random"};
    static rec_t r;
    uint32_t bad;
    sl_core_t *core;
    /* The problem: without quarantine the failing one looks idlest. */
    int to_bad = s_failing_run("least-outstanding", 0, &r, &bad, &core);
    assert_true(to_bad > 200);
    assert_int_equal(sl_core_counter(core, SL_CTR_FAILED), to_bad);
    sl_core_destroy(&core);
    for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
        to_bad = s_failing_run(policies[p], 3, &r, &bad, &core);
        /* three failures quarantine it; at most its credits were out then */
        if (to_bad < 3 || to_bad > 3 + 3)
            fail_msg("%s: %d jobs went to the failing executor", policies[p], to_bad);
        sl_exec_t *e = sl_core_exec_get(core, bad);
        sl_time_t end = SL_MS(1 + 399 * 5);
        assert_true(sl_core_exec_quarantined(e, end));
        assert_int_equal(e->completed, 0);
        assert_int_equal(e->failed, (uint64_t)to_bad);
        assert_int_equal(sl_core_counter(core, SL_CTR_FAILED), to_bad);
        assert_int_equal(sl_core_counter(core, SL_CTR_COMPLETED) + to_bad + sl_core_inflight(core),
                         400);
        assert_int_equal(sl_core_counter(core, SL_CTR_QUARANTINED), 1);
        /* After quarantine_ms it is tried again. */
        sl_time_t later = end + SL_MS(30000);
        for (uint32_t i = 0; i < 3; i++)
            sl_core_exec_touch(core, i, later);
        sl_core_tick(core, later);
        assert_false(sl_core_exec_quarantined(e, later));
        int before = r.n_dispatch, got = 0;
        for (int i = 0; i < 6; i++) {
            char id[32];
            snprintf(id, sizeof(id), "again%d", i);
            assert_int_equal(s_submit(core, id, SL_PRIO_INTERACTIVE, later, NULL), SL_OK);
        }
        for (int k = before; k < r.n_dispatch; k++)
            got += r.exec[k] == bad;
        /* (the policies that look at load or take turns; the random and
         * learned ones may well prefer the others) */
        if (got == 0 && p < 2)
            fail_msg("%s: the executor got no job after its quarantine", policies[p]);
        sl_core_destroy(&core);
    }
}

/*
 * Whole-job deadlines. With admission, a job whose best predicted end
 * (TTFT + TPOT x its output tokens) misses its deadline is refused at once
 * with no retry-after (a retry would only come back later); a reachable one
 * is accepted. A job that runs anyway and ends past its deadline is marked
 * late in its result and counted; one that ends in time is not.
 */
static void test_deadline_whole_job(void **state)
{
    rec_t r;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    s_setup(&r, &cfg, "learned");
    cfg.admission = true;
    cfg.max_executors = 8;
    assert_int_equal(sl_core_create(&cfg, &s_io, &r, &core), SL_OK);
    s_join(core, "x", 64, 0);
    sl_job_t *job = NULL;
    sl_busy_reason_t why = SL_BUSY_OVERLOAD;
    sl_time_t retry = 12345;
    sl_job_desc_t d = {
        .id = "hopeless", .prompt_tokens = 100, .max_new_tokens = 4096, .deadline = SL_MS(10)};
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(1), &job, &why, &retry), SL_ERR_BUSY);
    assert_int_equal(why, SL_BUSY_DEADLINE);
    assert_int_equal(retry, 0);
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_DEADLINE), 1);
    assert_int_equal(r.n_dispatch, 0);
    d.id = "reachable";
    d.deadline = SL_MS(3600000);
    assert_int_equal(sl_core_job_submit(core, &d, NULL, SL_MS(2), &job, &why, &retry), SL_OK);
    assert_int_equal(r.n_dispatch, 1);
    sl_core_destroy(&core);

    /* Without admission both run: the one past its deadline is late. */
    core = s_core(&r, "least-outstanding", 0);
    s_join(core, "x", 8, 0);
    sl_job_desc_t late = {
        .id = "late", .prompt_tokens = 10, .max_new_tokens = 10, .deadline = SL_MS(100)};
    sl_job_desc_t ok = {
        .id = "in-time", .prompt_tokens = 10, .max_new_tokens = 10, .deadline = SL_MS(100)};
    assert_int_equal(sl_core_job_submit(core, &late, NULL, 0, &job, &why, &retry), SL_OK);
    assert_int_equal(sl_core_job_submit(core, &ok, NULL, 0, &job, &why, &retry), SL_OK);
    assert_int_equal(r.n_dispatch, 2);
    s_complete(core, &r, 1, SL_MS(50)); /* in time */
    assert_int_equal(r.n_late, 0);
    s_complete(core, &r, 0, SL_MS(1000)); /* 900 ms past its deadline */
    assert_int_equal(r.n_result, 2);
    assert_int_equal(r.status[1], SL_JOB_OK);
    assert_int_equal(r.n_late, 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_LATE), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_COMPLETED), 2);
    assert_string_equal(sl_core_counter_name(SL_CTR_LATE), "jobs_late");
    sl_core_destroy(&core);
}

/* A callback that calls back into the core is refused (SL_ERR_REENTERED),
 * counted and logged, and the core carries on unharmed: the operation that
 * ran the callback finishes, and the refused one can be made afterwards. */
static void s_result_reenters(void *arg, sl_job_t *job, sl_job_status_t status,
                              const sl_job_timings_t *t, const sl_exec_t *e, const void *payload,
                              const char *err)
{
    rec_t *r = arg;
    s_result(arg, job, status, t, e, payload, err);
    /* What an embedder that lost an executor on a failed send once did. */
    r->reentry = sl_core_exec_lost(r->core, 1, "dispatch failed", job->submitted);
}

static sl_status_t s_dispatch_reenters(void *arg, sl_exec_t *e, sl_job_t *job)
{
    rec_t *r = arg;
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *other = NULL;
    sl_job_desc_t d = {
        .id = "inner", .prio = SL_PRIO_INTERACTIVE, .prompt_tokens = 10, .max_new_tokens = 1};
    r->reentry = sl_core_job_submit(r->core, &d, NULL, job->submitted, &other, &reason, &retry);
    return s_dispatch(arg, e, job);
}

static void test_no_reentry(void **state)
{
    static rec_t r;
    sl_core_io_t io = s_io;
    io.result = s_result_reenters;
    sl_core_cfg_t cfg;
    sl_core_t *core = NULL;
    s_setup(&r, &cfg, "round-robin");
    cfg.max_executors = 4;
    assert_int_equal(sl_core_create(&cfg, &io, &r, &core), SL_OK);
    r.core = core;
    s_join(core, "a", 4, 0);
    s_join(core, "b", 4, 0);
    assert_int_equal(s_submit(core, "j0", SL_PRIO_INTERACTIVE, 0, NULL), SL_OK);
    assert_int_equal(r.n_dispatch, 1);
    s_complete(core, &r, 0, SL_MS(10));
    /* The result was delivered; the loss asked for inside it was refused. */
    assert_int_equal(r.n_result, 1);
    assert_int_equal(r.status[0], SL_JOB_OK);
    assert_int_equal(r.reentry, SL_ERR_REENTERED);
    assert_int_equal(sl_core_counter(core, SL_CTR_REENTRY_REFUSED), 1);
    assert_int_equal(r.log_level, SL_CORE_LOG_ERROR);
    assert_non_null(strstr(r.log, "sl_core_exec_lost called from inside"));
    assert_int_equal(sl_core_exec_count(core), 2);
    assert_int_equal(sl_core_jobs_pending(core), 0);
    /* Deferred until the call returned, the same request is served. */
    assert_int_equal(sl_core_exec_lost(core, 1, "dispatch failed", SL_MS(11)), SL_OK);
    assert_int_equal(sl_core_exec_count(core), 1);
    sl_core_destroy(&core);

    /* Likewise a submission from inside dispatch. */
    memset(&r, 0, sizeof(r));
    r.fail_dispatch_to = -1;
    io = s_io;
    io.dispatch = s_dispatch_reenters;
    assert_int_equal(sl_core_create(&cfg, &io, &r, &core), SL_OK);
    r.core = core;
    s_join(core, "a", 4, 0);
    assert_int_equal(s_submit(core, "outer", SL_PRIO_INTERACTIVE, 0, NULL), SL_OK);
    assert_int_equal(r.n_dispatch, 1);
    assert_int_equal(r.reentry, SL_ERR_REENTERED);
    assert_null(sl_core_job_find(core, "inner"));
    assert_non_null(sl_core_job_find(core, "outer"));
    assert_int_equal(sl_core_counter(core, SL_CTR_REENTRY_REFUSED), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_SUBMITTED), 1);
    sl_core_destroy(&core);
}

/* The learned state goes to and comes from a buffer: saved text restores
 * into another core; bad text is refused with the reason logged and the
 * core unchanged; too small a buffer gets the size it needs. */
static void test_state_buffer(void **state)
{
    rec_t r, r2;
    sl_core_t *core = s_core(&r, "learned", 0), *core2 = s_core(&r2, "learned", 0);
    s_join(core, "a", 4, 0);
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "j%d", i);
        assert_int_equal(s_submit(core, id, SL_PRIO_INTERACTIVE, SL_MS(10 * i), NULL), SL_OK);
        s_complete(core, &r, r.n_dispatch - 1, SL_MS(10 * i + 5));
    }
    uint64_t learned = sl_load_model_samples(sl_core_load_model(core));
    assert_true(learned > 0);
    size_t len = 0;
    assert_int_equal(sl_core_state_save(core, NULL, 0, &len), SL_ERR_OVERFLOW);
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    size_t len2 = 0;
    assert_int_equal(sl_core_state_save(core, buf, len + 1, &len2), SL_OK);
    assert_int_equal(len2, len);
    assert_int_equal(strncmp(buf, "sluice-scheduler-state 1\n", 25), 0);
    assert_int_equal(sl_core_state_load(core2, buf, len), SL_OK);
    assert_int_equal(sl_load_model_samples(sl_core_load_model(core2)), learned);
    assert_int_equal(r2.n_log, 0);
    /* Another version, then cut short: refused, said why, nothing changed. */
    static const char v2[] = "sluice-scheduler-state 2\n";
    assert_int_equal(sl_core_state_load(core2, v2, strlen(v2)), SL_ERR_INVALID);
    assert_string_equal(r2.log, "learned state: version 2, this build reads version 1");
    assert_int_equal(sl_core_state_load(core2, buf, len / 2), SL_ERR_INVALID);
    assert_string_equal(r2.log, "learned state: load model truncated or malformed");
    assert_int_equal(sl_core_state_load(core2, "garbage", 7), SL_ERR_INVALID);
    assert_string_equal(r2.log, "learned state: not a scheduler state (bad header)");
    assert_int_equal(r2.log_level, SL_CORE_LOG_ERROR);
    assert_int_equal(sl_load_model_samples(sl_core_load_model(core2)), learned);
    free(buf);
    sl_core_destroy(&core);
    sl_core_destroy(&core2);
}

/* Placement marks are the core's own: a policy reads them through the
 * view's queries while it places, and they read as nothing outside. */
static void test_place_marks_private(void **state)
{
    rec_t r;
    sl_core_t *core = s_core(&r, "cache-switch", 0);
    uint32_t a = s_join(core, "a", 4, 0), b = s_join(core, "b", 4, 0);
    uint64_t hashes[8];
    for (int i = 0; i < 8; i++)
        hashes[i] = 1000 + (uint64_t)i;
    assert_int_equal(sl_core_exec_kv_event(core, b, hashes, 8, NULL, 0, false, 0), SL_OK);
    sl_job_desc_t d = {.id = "p",
                       .prio = SL_PRIO_INTERACTIVE,
                       .prompt_tokens = 128,
                       .max_new_tokens = 4,
                       .block_hashes = hashes,
                       .n_block_hashes = 8,
                       .block_tokens = 16};
    sl_busy_reason_t reason;
    sl_time_t retry;
    sl_job_t *job = NULL;
    assert_int_equal(sl_core_job_submit(core, &d, NULL, 1, &job, &reason, &retry), SL_OK);
    /* cache-switch read b's 8 hit blocks through sl_core_place_hit_blocks */
    assert_int_equal(r.exec[r.n_dispatch - 1], b);
    assert_int_equal(sl_core_counter(core, SL_CTR_PREFIX_HIT_BLOCKS), 8);
    size_t pos = 99;
    for (uint32_t i = 0; i < 2; i++) {
        sl_exec_t *e = sl_core_exec_get(core, i == 0 ? a : b);
        assert_int_equal(sl_core_place_hit_blocks(core)[e->index], 0);
        assert_false(sl_core_place_candidate(core, e, &pos));
    }
    assert_int_equal(pos, 99);
    sl_core_destroy(&core);
}

/* The placement tests below run on two executors a and b of two places
 * each: the core made from cfg (credits 2, at most 8 executors). */
static sl_core_t *s_core_two(rec_t *r, sl_core_cfg_t *cfg, uint32_t *a_p, uint32_t *b_p)
{
    sl_core_t *core = NULL;
    cfg->credits = 2;
    cfg->max_executors = 8;
    assert_int_equal(sl_core_create(cfg, &s_io, r, &core), SL_OK);
    *a_p = s_join(core, "a", 2, 0);
    *b_p = s_join(core, "b", 2, 0);
    return core;
}

/* Submit id: prompt tokens, 10 output tokens, a TTFT deadline (0 = none). */
static sl_status_t s_submit_ttft(sl_core_t *core, const char *id, uint32_t prompt,
                                 sl_time_t ttft_deadline, sl_time_t now, sl_busy_reason_t *reason_p)
{
    sl_job_desc_t d = {
        .id = id, .prompt_tokens = prompt, .max_new_tokens = 10, .ttft_deadline = ttft_deadline};
    sl_time_t retry;
    sl_job_t *job = NULL;
    return sl_core_job_submit(core, &d, NULL, now, &job, reason_p, &retry);
}

/* n short jobs through b, one every gap from now, each completing the one
 * before: b's departures make its expected wait for a place known. The
 * time of the last. */
static sl_time_t s_short_through(sl_core_t *core, rec_t *r, uint32_t b, int n, sl_time_t gap,
                                 sl_time_t now)
{
    sl_busy_reason_t reason;
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof(id), "s%d", i);
        now += gap;
        assert_int_equal(s_submit_ttft(core, id, 10, 0, now, &reason), SL_OK);
        assert_int_equal(r->exec[r->n_dispatch - 1], b);
        if (i >= 1)
            s_complete(core, r, r->n_dispatch - 2, now);
    }
    return now;
}

/* Holding a job for a better executor (place_hold): a is free but behind a
 * long prompt, b has no prefill backlog but every place taken by short
 * jobs leaving often. learned holds the next job at the head of the line
 * (placements_held) and places it on b when b frees a place; with
 * place_hold 0 it goes to a at once. */
static void test_place_hold(void **state)
{
    (void)state;
    for (int hold = 0; hold < 2; hold++) {
        rec_t r;
        sl_core_cfg_t cfg;
        uint32_t a, b;
        s_setup(&r, &cfg, "learned");
        cfg.place_hold = hold ? 0.5 : 0;
        sl_core_t *core = s_core_two(&r, &cfg, &a, &b);
        sl_busy_reason_t reason;
        assert_int_equal(s_submit_ttft(core, "big", 60000, 0, 0, &reason), SL_OK);
        assert_int_equal(r.exec[0], a); /* both idle: the first */
        sl_time_t now = s_short_through(core, &r, b, 12, SL_MS(10), 0);
        now += SL_MS(1);
        assert_int_equal(s_submit_ttft(core, "last", 10, 0, now, &reason), SL_OK);
        assert_int_equal(r.exec[r.n_dispatch - 1], b);
        /* now b holds two short jobs (full), a the long prompt (one place free) */
        assert_int_equal(sl_core_exec_get(core, b)->inflight, 2);
        int before = r.n_dispatch;
        now += SL_MS(1);
        assert_int_equal(s_submit_ttft(core, "w", 100, 0, now, &reason), SL_OK);
        if (!hold) {
            assert_int_equal(r.n_dispatch, before + 1);
            assert_int_equal(r.exec[before], a);
            assert_int_equal(sl_core_counter(core, SL_CTR_PLACE_HELD), 0);
            sl_core_destroy(&core);
            continue;
        }
        assert_int_equal(r.n_dispatch, before); /* held, not placed behind the long prompt */
        assert_true(sl_core_counter(core, SL_CTR_PLACE_HELD) >= 1);
        assert_int_equal(sl_core_queue_depth(core, SL_PRIO_INTERACTIVE), 1);
        now += SL_MS(10);
        s_complete(core, &r, before - 1, now); /* b frees a place */
        assert_int_equal(r.n_dispatch, before + 1);
        assert_int_equal(r.exec[before], b);
        sl_core_destroy(&core);
    }
}

/* A job whose TTFT deadline is predicted lost at placement
 * (expire_predicted): a runs a long prompt, b's places are all taken by
 * short jobs with no backlog. A job with a 200 ms TTFT deadline passes the
 * submission check (b predicts it well within that, and no departure has
 * been seen, so no wait for b's place is known), but only a has a place,
 * seconds behind: the job is refused BUSY deadline at once, never
 * accepted. With expire_predicted 0, or without admission, it goes to a.
 * Then a job with the same deadline queued while no executor has a place
 * (admitted: b looks good) expires when a place frees on a, behind the
 * long prompt, answered at once and counted, instead of being dispatched
 * into a certain miss. */
static void test_expire_predicted(void **state)
{
    (void)state;
    sl_busy_reason_t reason;
    for (int mode = 0; mode < 3; mode++) { /* 0: on, 1: knob 0, 2: no admission */
        rec_t r;
        sl_core_cfg_t cfg;
        uint32_t a, b;
        s_setup(&r, &cfg, "learned");
        cfg.admission = mode != 2;
        cfg.expire_predicted = mode == 1 ? 0 : 1;
        sl_core_t *core = s_core_two(&r, &cfg, &a, &b);
        assert_int_equal(s_submit_ttft(core, "big", 40000, 0, 0, &reason), SL_OK);
        assert_int_equal(r.exec[0], a);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(s_submit_ttft(core, i ? "s1" : "s0", 10, 0, SL_MS(1), &reason), SL_OK);
            assert_int_equal(r.exec[r.n_dispatch - 1], b);
        }
        assert_int_equal(sl_core_exec_get(core, b)->inflight, 2);
        int before = r.n_dispatch;
        sl_status_t st = s_submit_ttft(core, "w1", 100, SL_MS(200), SL_MS(2), &reason);
        if (mode) {
            assert_int_equal(st, SL_OK);
            assert_int_equal(r.n_dispatch, before + 1);
            assert_int_equal(r.exec[before], a);
            assert_int_equal(sl_core_counter(core, SL_CTR_EXPIRED_PREDICTED), 0);
            sl_core_destroy(&core);
            continue;
        }
        assert_int_equal(st, SL_ERR_BUSY); /* never accepted */
        assert_int_equal(reason, SL_BUSY_DEADLINE);
        assert_int_equal(r.n_dispatch, before);
        assert_int_equal(r.n_result, 0);
        assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_DEADLINE), 1);
        assert_int_equal(sl_core_jobs_pending(core), 3);
        sl_core_destroy(&core);
    }
    /* queued, then expired where a place frees: round-robin fills a with a
     * short job and the long prompt after it, b with two short jobs */
    rec_t r;
    sl_core_cfg_t cfg;
    uint32_t a, b;
    s_setup(&r, &cfg, "round-robin");
    cfg.admission = true;
    sl_core_t *core = s_core_two(&r, &cfg, &a, &b);
    const char *ids[4] = {"a2", "s0", "big", "s1"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s_submit_ttft(core, ids[i], i == 2 ? 40000 : 10, 0, 0, &reason), SL_OK);
        assert_int_equal(r.exec[i], i % 2 ? b : a);
    }
    assert_int_equal(s_submit_ttft(core, "w2", 100, SL_MS(200), SL_MS(1), &reason),
                     SL_OK); /* admitted: it waits for a place */
    assert_int_equal(r.n_dispatch, 4);
    s_complete(core, &r, 0, SL_MS(2)); /* a2 ends: a frees a place, the long prompt ahead */
    assert_int_equal(r.n_dispatch, 4); /* w2 not dispatched behind it */
    assert_int_equal(r.n_result, 2);   /* a2's result, then w2's */
    assert_int_equal(r.status[1], SL_JOB_EXPIRED);
    assert_string_equal(r.result_id[1], "w2");
    assert_int_equal(sl_core_counter(core, SL_CTR_EXPIRED_PREDICTED), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_EXPIRED), 1);
    assert_int_equal(sl_core_jobs_pending(core), 3);
    sl_core_destroy(&core);
}

/* Admission judges an executor with every place taken by its prediction
 * plus the expected wait for a place there: b has no backlog but is full,
 * and its jobs leave one every 100 ms (its own share of the fleet's
 * departures: a wait for its place of about a second), so a job with a
 * 300 ms TTFT deadline is refused (a is over a second behind a long
 * prompt); when b has a free place the same job is admitted. */
static void test_admit_counts_place_wait(void **state)
{
    (void)state;
    for (int full = 0; full < 2; full++) {
        rec_t r;
        sl_core_cfg_t cfg;
        uint32_t a, b;
        s_setup(&r, &cfg, "learned");
        cfg.admission = true;
        sl_core_t *core = s_core_two(&r, &cfg, &a, &b);
        sl_busy_reason_t reason;
        assert_int_equal(s_submit_ttft(core, "big", 40000, 0, 0, &reason), SL_OK);
        assert_int_equal(r.exec[0], a);
        sl_time_t now = s_short_through(core, &r, b, 6, SL_MS(100), 0);
        if (full) {
            assert_int_equal(s_submit_ttft(core, "fill", 10, 0, now, &reason), SL_OK);
            assert_int_equal(r.exec[r.n_dispatch - 1], b);
        }
        assert_int_equal(sl_core_exec_get(core, b)->inflight, full ? 2 : 1);
        sl_status_t st = s_submit_ttft(core, "w", 100, SL_MS(300), now + SL_MS(1), &reason);
        if (full) {
            assert_int_equal(st, SL_ERR_BUSY);
            assert_int_equal(reason, SL_BUSY_DEADLINE);
        } else {
            assert_int_equal(st, SL_OK);
            assert_int_equal(r.exec[r.n_dispatch - 1], b);
        }
        sl_core_destroy(&core);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_whole_job),
        cmocka_unit_test(test_late_binding),
        cmocka_unit_test(test_interactive_first),
        cmocka_unit_test(test_requeue_on_loss),
        cmocka_unit_test(test_requeue_limit),
        cmocka_unit_test(test_dispatch_failure_loses_executor),
        cmocka_unit_test(test_idempotent_submit),
        cmocka_unit_test(test_busy_reasons),
        cmocka_unit_test(test_done_bounded),
        cmocka_unit_test(test_done_log),
        cmocka_unit_test(test_expiry_and_cancel),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_policy_ops_and_fallback),
        cmocka_unit_test(test_sampled_candidates),
        cmocka_unit_test(test_rejoin_replaces),
        cmocka_unit_test(test_hash_block_size),
        cmocka_unit_test(test_token_prompt_prefix_placement),
        cmocka_unit_test(test_placement_by_limits),
        cmocka_unit_test(test_failing_executor_quarantined),
        cmocka_unit_test(test_no_reentry),
        cmocka_unit_test(test_state_buffer),
        cmocka_unit_test(test_place_marks_private),
        cmocka_unit_test(test_place_hold),
        cmocka_unit_test(test_expire_predicted),
        cmocka_unit_test(test_admit_counts_place_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
