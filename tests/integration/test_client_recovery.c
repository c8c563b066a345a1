/*
 * libsluice and the `sluice` command against the real daemons, where a
 * client must recover or give up cleanly:
 *  - the scheduler is SIGKILLed mid-job and restarted on the same endpoints
 *    while no executor is there: the client's resubmission is answered BUSY
 *    (no executor), retried with backoff, and the job completes once the
 *    executor rejoins (it hung for good before);
 *  - SIGINT to `sluice submit` cancels its job at the scheduler (and so on
 *    the executor) and exits 130; --wait-timeout-ms gives up with a message,
 *    cancels the job and exits 1;
 *  - a job that ends past its whole-job deadline is marked late in its
 *    result, counted in jobs_late, and `sluice submit` exits 1.
 * Jobs are made slow with the sim backend's decode step (100 ms a token).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/client.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cluster.h"
#include "common/sl_clock.h"
#include "tests/support/sl_test.h"

static const char *const s_sched_args[] = {"--log-level=warn", NULL};
/* 100 ms per decode step: a job of n output tokens takes about n / 10 s. */
static const char *const s_slow_exec[] = {"--backend=sim", "--sim-decode-base-us=100000",
                                          "--log-level=warn", NULL};

/* A scheduler and one slow executor under name (their slots kept in
 * *sched_p and *exec_p when asked for), registered; returns a client socket
 * for status probes. */
static void *s_slow_cluster(cl_t *c, const char *name, int *sched_p, int *exec_p)
{
    cl_init(c, name);
    int sched = cl_scheduler(c, s_sched_args);
    int exec = cl_executor(c, "slow", s_slow_exec);
    void *probe = cl_client(c);
    assert_int_equal(cl_wait_executors(c, probe, 1, 10000), 0);
    if (sched_p)
        *sched_p = sched;
    if (exec_p)
        *exec_p = exec;
    return probe;
}

static void test_scheduler_restart_mid_job(void **state)
{
    cl_t c;
    int sched, exec;
    void *probe = s_slow_cluster(&c, "recover", &sched, &exec);

    sl_client_cfg_t cfg;
    sl_client_cfg_default(&cfg);
    assert_true(strlen(c.client_ep) < sizeof(cfg.endpoint));
    memcpy(cfg.endpoint, c.client_ep, strlen(c.client_ep) + 1);
    assert_true(strlen(c.key_dir) < sizeof(cfg.key_dir));
    memcpy(cfg.key_dir, c.key_dir, strlen(c.key_dir) + 1);
    snprintf(cfg.key_name, sizeof(cfg.key_name), "client");
    cfg.ack_timeout_ms = 2000;
    cfg.backoff.base_ms = 100;
    cfg.backoff.cap_ms = 500;
    cfg.backoff.max_retries = 100; /* the retry-after (1 s) paces the retries */
    cfg.seed = 7;
    sl_client_t *client = NULL;
    assert_int_equal(sl_client_create(&cfg, &client), SL_OK);
    const uint32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    sl_job_spec_t job = {
        .id = "recover-1", .token_ids = prompt, .n_token_ids = 8, .max_new_tokens = 20};
    assert_int_equal(sl_client_submit_async(client, &job), SL_OK);
    sl_result_t *r = NULL;
    sl_time_t end = sl_clock_now() + SL_MS(10000);
    while (sl_client_pending(client) && sl_clock_now() < end &&
           cl_counter_or(probe, "jobs_dispatched") < 1)
        assert_int_equal(sl_client_poll(client, 50, &r), SL_ERR_TIMEOUT);
    assert_int_equal(sl_client_poll(client, 200, &r), SL_ERR_TIMEOUT); /* running, ~2 s */

    /* The executor is held still, so the restarted scheduler has none when
     * the client resubmits: its answer is BUSY (no executor). */
    cl_kill(&c, exec, SIGSTOP);
    cl_kill(&c, sched, SIGKILL);
    assert_true(cl_wait(&c, sched, 5000) >= 0);
    cl_scheduler(&c, s_sched_args); /* restarted on the same endpoints */
    sl_client_stats_t st;
    end = sl_clock_now() + SL_MS(15000);
    do {
        assert_int_equal(sl_client_poll(client, 50, &r), SL_ERR_TIMEOUT);
        sl_client_stats(client, &st);
    } while (st.busy < 1 && sl_clock_now() < end);
    assert_true(st.busy >= 1);
    assert_true(st.reconnects >= 1);

    /* The executor comes back, says hello to the new scheduler, and the
     * client's next retry is accepted and run. */
    cl_kill(&c, exec, SIGCONT);
    assert_int_equal(sl_client_poll(client, 30000, &r), SL_OK);
    assert_string_equal(r->job_id, "recover-1");
    assert_int_equal(r->status, SL_OK);
    assert_true(r->busy_count >= 1);
    assert_true(r->sends >= 3); /* the first, the resubmission, a retry */
    sl_result_destroy(&r);
    sl_client_destroy(&client);
    zmq_close(probe);
    cl_fini(&c);
}

/* Read the log of slot i (the command's stderr) into buf. */
static void s_read_log(const cl_t *c, int i, char *buf, size_t cap)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%d.log", c->dir, i);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
}

static void test_cli_sigint_cancels(void **state)
{
    cl_t c;
    void *probe = s_slow_cluster(&c, "cli-int", NULL, NULL);
    char ep[340];
    snprintf(ep, sizeof(ep), "--endpoint=%s", c.client_ep);

    /* A 60 s job: SIGINT while it runs cancels it at the scheduler. */
    const char *args[] = {
        "submit", ep, "--max-new-tokens=600", "--id=cli-long", c.key_dir_arg, "--key-name=client",
        NULL};
    int cli = cl_spawn(&c, "sluice", args);
    assert_true(cl_wait_counter(probe, "jobs_dispatched", 1, 10000) >= 1);
    assert_int_equal(cl_counter_or(probe, "jobs_canceled"), 0);
    cl_kill(&c, cli, SIGINT);
    assert_int_equal(cl_wait(&c, cli, 10000), 130);
    assert_true(cl_wait_counter(probe, "jobs_canceled", 1, 5000) >= 1);
    char log[8192];
    s_read_log(&c, cli, log, sizeof(log));
    if (!strstr(log, "interrupted by SIGINT; canceling job cli-long"))
        fail_msg("sluice submit's stderr:\n%s", log);

    /* The overall timeout: gives up, cancels, exits 1 with the reason. */
    const char *args2[] = {"submit",
                           ep,
                           "--max-new-tokens=600",
                           "--id=cli-slow",
                           "--wait-timeout-ms=500",
                           c.key_dir_arg,
                           "--key-name=client",
                           NULL};
    cli = cl_spawn(&c, "sluice", args2);
    assert_int_equal(cl_wait(&c, cli, 15000), 1);
    assert_true(cl_wait_counter(probe, "jobs_canceled", 2, 5000) >= 2);
    s_read_log(&c, cli, log, sizeof(log));
    if (!strstr(log, "no result for job cli-slow within 500 ms (--wait-timeout-ms); canceling it"))
        fail_msg("sluice submit's stderr:\n%s", log);
    zmq_close(probe);
    cl_fini(&c);
}

/*
 * A job that ends past its whole-job deadline (100 ms; it takes about 1 s):
 * its result says late, the scheduler counts it in jobs_late, and
 * `sluice submit` says so and exits 1. One in time is not late.
 */
static void test_late_job(void **state)
{
    cl_t c;
    void *probe = s_slow_cluster(&c, "late", NULL, NULL);
    char ep[340];
    snprintf(ep, sizeof(ep), "--endpoint=%s", c.client_ep);

    const char *args[] = {"submit",
                          ep,
                          "--max-new-tokens=10",
                          "--deadline-ms=100",
                          "--id=late-cli",
                          c.key_dir_arg,
                          "--key-name=client",
                          NULL};
    int cli = cl_spawn(&c, "sluice", args);
    assert_int_equal(cl_wait(&c, cli, 20000), 1);
    assert_int_equal(cl_counter_or(probe, "jobs_late"), 1);
    assert_int_equal(cl_counter_or(probe, "jobs_completed"), 1);
    char log[8192];
    s_read_log(&c, cli, log, sizeof(log));
    if (!strstr(log, "sluice submit: job late-cli finished late: ") ||
        !strstr(log, "past its 100 ms deadline"))
        fail_msg("sluice submit's stderr:\n%s", log);

    /* Through libsluice: the result is OK, with its tokens, and late. */
    sl_client_cfg_t cfg;
    sl_client_cfg_default(&cfg);
    assert_true(strlen(c.client_ep) < sizeof(cfg.endpoint));
    memcpy(cfg.endpoint, c.client_ep, strlen(c.client_ep) + 1);
    assert_true(strlen(c.key_dir) < sizeof(cfg.key_dir));
    memcpy(cfg.key_dir, c.key_dir, strlen(c.key_dir) + 1);
    snprintf(cfg.key_name, sizeof(cfg.key_name), "client");
    cfg.wait_timeout_ms = 20000;
    sl_client_t *client = NULL;
    assert_int_equal(sl_client_create(&cfg, &client), SL_OK);
    const uint32_t prompt[4] = {1, 2, 3, 4};
    sl_job_spec_t job = {.id = "late-lib",
                         .token_ids = prompt,
                         .n_token_ids = 4,
                         .max_new_tokens = 10,
                         .deadline_ms = 100};
    sl_result_t *r = NULL;
    assert_int_equal(sl_client_submit(client, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_true(r->late);
    assert_int_equal(r->n_tokens, 10);
    assert_true(r->timings.end_us > 100000);
    sl_result_destroy(&r);
    /* In time: not late, and not counted. */
    job.id = "in-time";
    job.max_new_tokens = 2;
    job.deadline_ms = 60000;
    assert_int_equal(sl_client_submit(client, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_false(r->late);
    sl_result_destroy(&r);
    assert_int_equal(cl_counter_or(probe, "jobs_late"), 2);
    sl_client_destroy(&client);
    zmq_close(probe);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scheduler_restart_mid_job),
        cmocka_unit_test(test_cli_sigint_cancels),
        cmocka_unit_test(test_late_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
