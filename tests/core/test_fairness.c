/*
 * Fairness and priorities in the core's queue (sl_core_fair.c), on a
 * simulated clock: deficit round robin between tenants, the starvation
 * bound of the batch band, per-tenant quotas and shedding under overload.
 * Each scenario is also run with the mechanism off, to show it is what
 * makes the difference.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/core/sl_core.h"
#include "tests/support/sl_test.h"

#define MAX_JOBS 8192

typedef struct {
    sl_time_t now;         /* the simulated clock */
    uint32_t exec;         /* the one executor's index */
    uint64_t running_seq;  /* the job it runs (0: idle) */
    sl_time_t running_end; /* when that job ends */
    sl_time_t service;     /* modelled service time of every job */
    int n_dispatch;        /* dispatches */
    char dispatched_tenant[MAX_JOBS][8];
    sl_time_t batch_wait_max;       /* longest queue wait of a dispatched batch job */
    int n_batch_dispatched;         /* batch jobs dispatched */
    sl_time_t light_ttft[MAX_JOBS]; /* TTFT of each finished job of tenant "light" */
    int n_light;
    int n_result;                 /* results delivered */
    int n_rejected;               /* ... of them REJECTED */
    char last_error[160];         /* the error of the last result */
    int n_shed;                   /* io->shed answers */
    char shed_id[64][16];         /* their job ids */
    sl_busy_reason_t shed_reason; /* the last one's reason */
    sl_time_t shed_retry;         /* and retry-after */
} sim_t;

static sl_status_t s_dispatch(void *arg, sl_exec_t *e, sl_job_t *job)
{
    sim_t *s = arg;
    if (s->n_dispatch < MAX_JOBS)
        snprintf(s->dispatched_tenant[s->n_dispatch], 8, "%s", job->tenant);
    s->n_dispatch++;
    s->running_seq = job->seq;
    s->running_end = s->now + s->service;
    if (job->prio == SL_PRIO_BATCH) {
        s->n_batch_dispatched++;
        if (s->now - job->submitted > s->batch_wait_max)
            s->batch_wait_max = s->now - job->submitted;
    }
    return SL_OK;
}

static void s_result(void *arg, sl_job_t *job, sl_job_status_t status, const sl_job_timings_t *t,
                     const sl_exec_t *e, const void *payload, const char *err)
{
    sim_t *s = arg;
    s->n_result++;
    if (status == SL_JOB_REJECTED)
        s->n_rejected++;
    snprintf(s->last_error, sizeof(s->last_error), "%s", err ? err : "");
    if (status == SL_JOB_OK && strcmp(job->tenant, "light") == 0 && s->n_light < MAX_JOBS)
        s->light_ttft[s->n_light++] = t->ttft;
}

static void s_shed(void *arg, sl_job_t *job, sl_busy_reason_t reason, sl_time_t retry_after)
{
    sim_t *s = arg;
    if (s->n_shed < 64)
        snprintf(s->shed_id[s->n_shed], 16, "%s", job->id);
    s->n_shed++;
    s->shed_reason = reason;
    s->shed_retry = retry_after;
}

static const sl_core_io_t s_io = {.dispatch = s_dispatch, .result = s_result, .shed = s_shed};
static const sl_core_io_t s_io_noshed = {.dispatch = s_dispatch, .result = s_result};

/* A core with one executor of one credit. */
static sl_core_t *s_core(sim_t *s, sl_core_cfg_t *cfg, const sl_core_io_t *io)
{
    sl_core_t *core = NULL;
    cfg->credits = 1;
    cfg->max_executors = 4;
    assert_int_equal(sl_core_create(cfg, io, s, &core), SL_OK);
    sl_exec_info_t info = {.name = "e0", .slots = 1, .backend = "sim"};
    assert_int_equal(sl_core_exec_join(core, &info, NULL, s->now, &s->exec), SL_OK);
    return core;
}

static sl_status_t s_submit(sim_t *s, sl_core_t *core, const char *id, const char *tenant,
                            sl_prio_t prio, sl_busy_reason_t *reason_p, sl_time_t *retry_p)
{
    sl_job_desc_t d = {
        .id = id, .tenant = tenant, .prio = prio, .prompt_tokens = 1000, .max_new_tokens = 100};
    sl_busy_reason_t reason = 0;
    sl_time_t retry = 0;
    sl_job_t *job = NULL;
    sl_status_t st = sl_core_job_submit(core, &d, NULL, s->now, &job, &reason, &retry);
    if (reason_p)
        *reason_p = reason;
    if (retry_p)
        *retry_p = retry;
    return st;
}

/* The executor ends its job when its service time is over. */
static void s_advance(sim_t *s, sl_core_t *core, sl_time_t to)
{
    while (s->running_seq && s->running_end <= to) {
        s->now = s->running_end;
        uint64_t seq = s->running_seq;
        s->running_seq = 0;
        sl_job_result_t res = {.status = SL_JOB_OK, .output_tokens = 1, .exec_ttft = s->service};
        assert_int_equal(sl_core_job_complete(core, s->exec, seq, &res, NULL, s->now), SL_OK);
    }
    s->now = to;
}

static int s_cmp_time(const void *a, const void *b)
{
    sl_time_t x = *(const sl_time_t *)a, y = *(const sl_time_t *)b;
    return x < y ? -1 : x > y;
}

/* The light tenant's p99 TTFT when a heavy tenant submits ten times its
 * jobs, more than the executor serves: 10 heavy jobs and 1 light job every
 * 50 ms for 2 s, 10 ms of service each (capacity 5 jobs per 50 ms). */
static sl_time_t s_light_p99(bool fair)
{
    sim_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.tenant_fair = fair;
    s->service = SL_MS(10);
    sl_core_t *core = s_core(s, &cfg, &s_io);
    char id[32];
    int n = 0;
    for (sl_time_t t = 0; t < SL_MS(2000); t += SL_MS(50)) {
        s_advance(s, core, t);
        for (int k = 0; k < 10; k++) {
            snprintf(id, sizeof(id), "h%d", n++);
            assert_int_equal(s_submit(s, core, id, "heavy", SL_PRIO_INTERACTIVE, NULL, NULL),
                             SL_OK);
        }
        snprintf(id, sizeof(id), "l%d", n++);
        assert_int_equal(s_submit(s, core, id, "light", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    }
    s_advance(s, core, SL_MS(100000)); /* everything runs to its end */
    assert_int_equal(s->n_light, 40);
    qsort(s->light_ttft, (size_t)s->n_light, sizeof(sl_time_t), s_cmp_time);
    sl_time_t p99 = s->light_ttft[(s->n_light * 99 + 99) / 100 - 1];
    sl_core_destroy(&core);
    free(s);
    return p99;
}

static void test_drr_protects_light_tenant(void **state)
{
    const sl_time_t slo = SL_MS(100);
    sl_time_t fair = s_light_p99(true), fifo = s_light_p99(false);
    /* Round robin: a light job (1,100 tokens) needs two turns of 1,024
     * tokens of credit, so it waits for the heavy job running and at most
     * the heavy jobs of those turns, then runs its 10 ms (50 ms here). */
    assert_true(fair <= slo);
    assert_true(fair <= SL_MS(50));
    /* First come, first served: it waits behind the heavy backlog. */
    assert_true(fifo > slo);
}

/* Weights: two backlogged tenants of weights 3 and 1 get 3:1 of the work. */
static void test_weights_share(void **state)
{
    sim_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    snprintf(cfg.tenant_weights, sizeof(cfg.tenant_weights), "a=3,b=1");
    s->service = SL_MS(10);
    sl_core_t *core = s_core(s, &cfg, &s_io);
    char id[32];
    for (int k = 0; k < 400; k++) {
        snprintf(id, sizeof(id), "a%d", k);
        assert_int_equal(s_submit(s, core, id, "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
        snprintf(id, sizeof(id), "b%d", k);
        assert_int_equal(s_submit(s, core, id, "b", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    }
    s_advance(s, core, SL_MS(10) * 200);
    int a = 0, b = 0;
    for (int k = 1; k <= 200; k++) /* the first went out at once, before b's first job */
        a += strcmp(s->dispatched_tenant[k], "a") == 0,
            b += strcmp(s->dispatched_tenant[k], "b") == 0;
    assert_int_equal(a + b, 200);
    assert_in_range(a, 145, 155);
    sl_core_destroy(&core);

    /* a malformed weight is refused at create */
    snprintf(cfg.tenant_weights, sizeof(cfg.tenant_weights), "a=3,b");
    assert_int_equal(sl_core_create(&cfg, &s_io, s, &core), SL_ERR_INVALID);
    snprintf(cfg.tenant_weights, sizeof(cfg.tenant_weights), "a=0");
    assert_int_equal(sl_core_create(&cfg, &s_io, s, &core), SL_ERR_INVALID);
    assert_null(core);
    free(s);
}

/* A steady interactive stream (one job per 5 ms, twice what the executor
 * serves) and one batch job every 100 ms for 3 s; returns the longest wait
 * of a batch job (dispatched, or still queued at the end). */
static sl_time_t s_batch_wait(int64_t bound_ms, int *dispatched_p)
{
    sim_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.starvation_bound_ms = bound_ms;
    s->service = SL_MS(10);
    sl_core_t *core = s_core(s, &cfg, &s_io);
    char id[32];
    int n = 0;
    sl_time_t first_batch = -1;
    for (sl_time_t t = 0; t < SL_MS(3000); t += SL_MS(5)) {
        s_advance(s, core, t);
        snprintf(id, sizeof(id), "i%d", n++);
        assert_int_equal(s_submit(s, core, id, "t", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
        if (t % SL_MS(100) == 0) {
            snprintf(id, sizeof(id), "b%d", n++);
            assert_int_equal(s_submit(s, core, id, "t", SL_PRIO_BATCH, NULL, NULL), SL_OK);
            if (first_batch < 0)
                first_batch = t;
        }
    }
    s_advance(s, core, SL_MS(3000));
    sl_time_t worst = s->batch_wait_max;
    if (sl_core_queue_depth(core, SL_PRIO_BATCH) > 0 && s->n_batch_dispatched == 0)
        worst = s->now - first_batch; /* the oldest has waited since the start */
    *dispatched_p = s->n_batch_dispatched;
    assert_int_equal(sl_core_counter(core, SL_CTR_PROMOTED), (uint64_t)s->n_batch_dispatched);
    sl_core_destroy(&core);
    free(s);
    return worst;
}

static void test_batch_starvation_bounded(void **state)
{
    int dispatched = 0;
    /* bound 500 ms: no batch job waits longer than it plus one dispatch
     * interval (the 10 ms service of the job running when it passes it) */
    sl_time_t worst = s_batch_wait(500, &dispatched);
    assert_true(worst > SL_MS(500));
    assert_true(worst <= SL_MS(500) + SL_MS(10));
    assert_true(dispatched >= 20);
    /* bound off: strict priority starves batch for the whole stream */
    worst = s_batch_wait(0, &dispatched);
    assert_int_equal(dispatched, 0);
    assert_true(worst >= SL_MS(2900));
}

static void test_tenant_quota(void **state)
{
    sim_t s = {0};
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.tenant_max_jobs = 3;
    s.service = SL_MS(10);
    sl_core_t *core = s_core(&s, &cfg, &s_io);
    sl_busy_reason_t reason = 0;
    sl_time_t retry = 0;
    /* one running and two queued: at its quota */
    assert_int_equal(s_submit(&s, core, "a1", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "a2", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "a3", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(sl_core_tenant_jobs(core, "a"), 3);
    assert_int_equal(s_submit(&s, core, "a4", "a", SL_PRIO_INTERACTIVE, &reason, &retry),
                     SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_TENANT);
    assert_int_equal(retry, SL_MS(cfg.busy_retry_ms));
    assert_int_equal(sl_core_counter(core, SL_CTR_TENANT_QUOTA), 1);
    assert_int_equal(sl_core_counter(core, SL_CTR_BUSY_TENANT), 1);
    /* another tenant is under its quota */
    assert_int_equal(s_submit(&s, core, "b1", "b", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(sl_core_tenant_jobs(core, "b"), 1);
    /* a job of a ends: a is under its quota again */
    s_advance(&s, core, SL_MS(10));
    assert_int_equal(sl_core_tenant_jobs(core, "a"), 2);
    assert_int_equal(s_submit(&s, core, "a4", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_TENANT_QUOTA), 1);
    /* a canceled job also leaves the count */
    assert_int_equal(sl_core_job_cancel(core, "a4", s.now), SL_OK);
    assert_int_equal(sl_core_tenant_jobs(core, "a"), 2);
    sl_core_destroy(&core);
}

static void test_shed_under_overload(void **state)
{
    sim_t s = {0};
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.queue_max = 4;
    cfg.overload_shed = true;
    s.service = SL_MS(10);
    sl_core_t *core = s_core(&s, &cfg, &s_io);
    sl_busy_reason_t reason = 0;
    assert_int_equal(s_submit(&s, core, "run", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "ab1", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "ab2", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "ai1", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "ai2", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    /* full: a batch newcomer ranks above no queued job (same tenant, band) */
    assert_int_equal(s_submit(&s, core, "ab3", "a", SL_PRIO_BATCH, &reason, NULL), SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_QUEUE_FULL);
    /* interactive newcomers shed the batch jobs first, newest first */
    assert_int_equal(s_submit(&s, core, "bi1", "b", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s.n_shed, 1);
    assert_string_equal(s.shed_id[0], "ab2");
    assert_int_equal(s.shed_reason, SL_BUSY_QUEUE_FULL);
    assert_int_equal(s.shed_retry, SL_MS(cfg.busy_retry_ms));
    assert_int_equal(s_submit(&s, core, "ai3", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s.n_shed, 2);
    assert_string_equal(s.shed_id[1], "ab1");
    assert_int_equal(sl_core_counter(core, SL_CTR_SHED_BATCH), 2);
    assert_int_equal(sl_core_queue_depth(core, SL_PRIO_BATCH), 0);
    /* same band: a holds 3 queued, b 1; b's newcomer sheds a's newest */
    assert_int_equal(s_submit(&s, core, "bi2", "b", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s.n_shed, 3);
    assert_string_equal(s.shed_id[2], "ai3");
    assert_int_equal(sl_core_counter(core, SL_CTR_SHED_INTERACTIVE), 1);
    /* now a and b hold 2 each: neither's newcomer ranks above the other */
    assert_int_equal(s_submit(&s, core, "ai4", "a", SL_PRIO_INTERACTIVE, &reason, NULL),
                     SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_QUEUE_FULL);
    assert_int_equal(s_submit(&s, core, "bi3", "b", SL_PRIO_INTERACTIVE, &reason, NULL),
                     SL_ERR_BUSY);
    /* a third tenant with nothing queued sheds from the most over its share */
    assert_int_equal(s_submit(&s, core, "ci1", "c", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s.n_shed, 4);
    assert_int_equal(s.n_result, 0); /* nobody answered twice, nothing else ended */
    /* a shed job's id is forgotten: its client may submit it again */
    assert_null(sl_core_job_find(core, "ab2"));
    assert_int_equal(sl_core_queue_depth(core, SL_PRIO_INTERACTIVE), 4);
    /* every job is answered: the 4 queued and the running one end, the 4
     * shed were answered BUSY */
    s_advance(&s, core, SL_MS(1000));
    assert_int_equal(s.n_result, 5);
    assert_int_equal(s.n_result + s.n_shed, 9);
    assert_int_equal(sl_core_jobs_pending(core), 0);
    sl_core_destroy(&core);
}

/* Without io->shed the shed job is answered by a REJECTED result naming the
 * retry-after; with shedding off the newcomer is refused as before. */
static void test_shed_answer_without_callback(void **state)
{
    sim_t s = {0};
    sl_core_cfg_t cfg;
    sl_core_cfg_default(&cfg);
    cfg.queue_max = 1;
    s.service = SL_MS(10);
    sl_core_t *core = s_core(&s, &cfg, &s_io_noshed);
    sl_busy_reason_t reason = 0;
    assert_int_equal(s_submit(&s, core, "run", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "b1", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "i1", "a", SL_PRIO_INTERACTIVE, &reason, NULL),
                     SL_ERR_BUSY);
    assert_int_equal(reason, SL_BUSY_QUEUE_FULL);
    sl_core_destroy(&core);
    assert_int_equal(s.n_result, 0);

    memset(&s, 0, sizeof(s));
    cfg.overload_shed = true;
    s.service = SL_MS(10);
    core = s_core(&s, &cfg, &s_io_noshed);
    assert_int_equal(s_submit(&s, core, "run", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "b1", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(s_submit(&s, core, "i1", "a", SL_PRIO_INTERACTIVE, NULL, NULL), SL_OK);
    assert_int_equal(s.n_result, 1);
    assert_int_equal(s.n_rejected, 1);
    assert_non_null(strstr(s.last_error, "retry after 1000 ms"));
    assert_int_equal(sl_core_counter(core, SL_CTR_SHED_BATCH), 1);
    /* resubmitting the shed id is a new job, not a duplicate */
    assert_int_equal(sl_core_job_cancel(core, "i1", s.now), SL_OK);
    assert_int_equal(s_submit(&s, core, "b1", "a", SL_PRIO_BATCH, NULL, NULL), SL_OK);
    assert_int_equal(sl_core_counter(core, SL_CTR_DUPLICATES), 0);
    sl_core_destroy(&core);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drr_protects_light_tenant),
        cmocka_unit_test(test_weights_share),
        cmocka_unit_test(test_batch_starvation_bounded),
        cmocka_unit_test(test_tenant_quota),
        cmocka_unit_test(test_shed_under_overload),
        cmocka_unit_test(test_shed_answer_without_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
