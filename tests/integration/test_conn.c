/*
 * Connection diagnostics with the real programs: a second executor under a
 * name a live one holds is refused and exits 1 while the first keeps
 * serving; a restart under the same name right after a crash still takes
 * over; an executor started before its scheduler logs that it waits and
 * registers once, however many hellos it sent meanwhile, and logs the loss
 * of its scheduler when it happens; a second SIGTERM
 * stops an executor or a scheduler that is draining at once; a program on
 * the scheduler's other port is told which it wants.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "cluster.h"
#include "tests/support/sl_test.h"

/* Submit job id and wait for its Result; the executor that ran it is copied
 * into who. Returns the result status, or -1 when none came in time. */
static int s_run_job(void *sock, const char *id, char *who, size_t cap)
{
    cl_submit(sock, id, 16, 2, 0);
    for (int i = 0; i < 100; i++) {
        cl_ev_t ev;
        if (!cl_next(sock, 100, &ev))
            continue;
        if (ev.kind == CL_EV_RESULT && strcmp(ev.job_id, id) == 0) {
            int status = (int)ev.result.status;
            snprintf(who, cap, "%s", ev.result.executor);
            cl_ev_free(&ev);
            return status;
        }
        cl_ev_free(&ev);
    }
    return -1;
}

/* Two live executors named alike: the second is told the name is in use,
 * logs it at error level and exits 1; the first keeps its place and jobs. */
static void test_duplicate_name_refused(void **state)
{
    (void)state;
    static cl_t c;
    const char *exec_args[] = {"--backend=null", NULL};
    char who[128];
    cl_init(&c, "dupname");
    cl_scheduler(&c, NULL);
    cl_executor(&c, "twin", exec_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    int second = cl_executor(&c, "twin", exec_args);
    sl_test_expect_error("name 'twin' is in use by a live executor");
    assert_int_equal(cl_wait(&c, second, 10000), 1);
    assert_true(cl_log_has(&c, second, "name 'twin' is in use by a live executor"));
    assert_int_equal(s_run_job(cli, "after-dup", who, sizeof(who)), SL_JOB_OK);
    assert_string_equal(who, "twin");
    assert_int_equal(cl_status_counter(cli, "executors_joined"), 1);
    assert_int_equal(cl_status_counter(cli, "executors_lost"), 0);
    assert_int_equal(cl_status_counter(cli, "executors_refused_name"), 1);
    zmq_close(cli);
    cl_fini(&c);
}

/* An executor killed and started again at once under its name: the new
 * process is not a duplicate (the old one falls silent) and takes over. */
static void test_restart_takes_over(void **state)
{
    (void)state;
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--hello-retry-ms=100", NULL};
    char who[128];
    cl_init(&c, "restart");
    cl_scheduler(&c, NULL);
    int first = cl_executor(&c, "phoenix", exec_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    cl_kill(&c, first, SIGKILL);
    assert_true(cl_wait(&c, first, 5000) >= 0);
    cl_executor(&c, "phoenix", exec_args);
    for (int i = 0; i < 100 && cl_status_counter(cli, "executors_joined") < 2; i++)
        usleep(100000);
    assert_int_equal(cl_status_counter(cli, "executors_joined"), 2);
    assert_int_equal(cl_status_counter(cli, "executors_lost"), 1);
    assert_int_equal(cl_status_counter(cli, "executors_refused_name"), 0);
    assert_int_equal(s_run_job(cli, "after-restart", who, sizeof(who)), SL_JOB_OK);
    assert_string_equal(who, "phoenix");
    zmq_close(cli);
    cl_fini(&c);
}

/* An executor started a second before its scheduler logs that it waits,
 * and the hellos it sent meanwhile make one registration, not one each. */
static void test_executor_before_scheduler(void **state)
{
    (void)state;
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--hello-retry-ms=100", "--wait-log-ms=300",
                               "--log-level=info", NULL};
    char who[128], want[400];
    cl_init(&c, "early");
    int x = cl_executor(&c, "early", exec_args);
    snprintf(want, sizeof(want), "waiting for the scheduler at %s", c.exec_ep);
    /* a loaded host takes most of a second to start the program */
    for (int i = 0; i < 100 && !cl_log_has(&c, x, want); i++)
        usleep(50000);
    assert_true(cl_log_has(&c, x, want));
    cl_scheduler(&c, NULL);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    usleep(300000); /* any hello still queued would be handled by now */
    assert_int_equal(cl_status_counter(cli, "executors_joined"), 1);
    assert_int_equal(cl_status_counter(cli, "executors_lost"), 0);
    assert_int_equal(s_run_job(cli, "after-wait", who, sizeof(who)), SL_JOB_OK);
    assert_string_equal(who, "early");
    zmq_close(cli);
    cl_fini(&c);
}

/* The scheduler dies under a registered executor: the executor logs the
 * loss when its connection drops, the reconnection when a new scheduler
 * comes, and registers there once. */
static void test_scheduler_lost(void **state)
{
    (void)state;
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--hello-retry-ms=100", "--log-level=info", NULL};
    char lost[400], back[400];
    cl_init(&c, "schedlost");
    int sched = cl_scheduler(&c, NULL);
    int x = cl_executor(&c, "stays", exec_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    zmq_close(cli);
    cl_kill(&c, sched, SIGKILL);
    assert_true(cl_wait(&c, sched, 5000) >= 0);
    snprintf(lost, sizeof(lost), "lost the scheduler at %s; waiting for it", c.exec_ep);
    for (int i = 0; i < 50 && !cl_log_has(&c, x, lost); i++)
        usleep(100000);
    assert_true(cl_log_has(&c, x, lost));
    cl_scheduler(&c, NULL);
    cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    snprintf(back, sizeof(back), "connected to the scheduler at %s again", c.exec_ep);
    assert_true(cl_log_has(&c, x, back));
    usleep(300000);
    assert_int_equal(cl_status_counter(cli, "executors_joined"), 1);
    assert_int_equal(cl_status_counter(cli, "executors_lost"), 0);
    zmq_close(cli);
    cl_fini(&c);
}

/* Stop signals: an idle executor's SIGTERM is an orderly leave, logged at
 * info by the scheduler; a busy one drains on the first SIGTERM and stops
 * at once on the second, its job requeued at its goodbye; a scheduler
 * draining a job no one can run stops at once on the second SIGTERM. */
static void test_second_sigterm(void **state)
{
    (void)state;
    static cl_t c;
    const char *sched_args[] = {"--log-level=info", NULL};
    const char *exec_args[] = {"--backend=sim", "--sim-speed=0.02", "--log-level=info", NULL};
    cl_init(&c, "sigterm");
    int sched = cl_scheduler(&c, sched_args);
    int idle = cl_executor(&c, "idle", exec_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    cl_kill(&c, idle, SIGTERM);
    assert_int_equal(cl_wait(&c, idle, 5000), 0);
    for (int i = 0; i < 50 && !cl_log_has(&c, sched, "executor idle left (said goodbye)"); i++)
        usleep(100000);
    assert_true(cl_log_has(&c, sched, " I scheduler"));
    assert_true(cl_log_has(&c, sched, "executor idle left (said goodbye)"));
    assert_false(cl_log_has(&c, sched, "executor idle lost"));

    int busy = cl_executor(&c, "busy", exec_args);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);
    cl_submit(cli, "long", 1000, 300, 0); /* 1.8 s of modelled H100 time, 50 times slower */
    uint32_t inflight = 0; /* as the executor's heartbeats report it: it has the job */
    for (int i = 0; i < 100 && inflight == 0; i++) {
        sl_wire_msg_t *st = cl_status(cli, 2000);
        assert_non_null(st);
        if (cl_status_execs(st) == 1) {
            sl_wire_exec_status_t e = cl_status_exec(st, 0);
            if (e.has_load)
                inflight = e.load.running_jobs + e.load.queued_jobs;
        }
        sl_wire_msg_free(&st);
        if (!inflight)
            usleep(50000);
    }
    assert_int_equal(inflight, 1);
    cl_kill(&c, busy, SIGTERM);
    usleep(300000);
    assert_int_equal(cl_wait(&c, busy, 0), -1); /* still draining */
    assert_true(cl_log_has(&c, busy, "stopping: finishing 1 jobs in flight"));
    cl_kill(&c, busy, SIGTERM);
    assert_int_equal(cl_wait(&c, busy, 3000), 0);
    assert_true(cl_log_has(&c, busy, "second stop signal: stopping now with 1 jobs in flight"));
    for (int i = 0; i < 50 && cl_status_counter(cli, "jobs_requeued") < 1; i++)
        usleep(100000);
    assert_int_equal(cl_status_counter(cli, "jobs_requeued"), 1);

    /* the requeued job has no executor: the scheduler's drain would wait */
    cl_kill(&c, sched, SIGTERM);
    usleep(300000);
    assert_int_equal(cl_wait(&c, sched, 0), -1);
    cl_kill(&c, sched, SIGTERM);
    assert_int_equal(cl_wait(&c, sched, 3000), 0);
    assert_true(cl_log_has(&c, sched, "second stop signal: stopping now with 1 jobs pending"));
    zmq_close(cli);
    cl_fini(&c);
}

/* A program on the scheduler's other port is told which one it wants: an
 * executor on the client port logs it at error level and exits 2; a client
 * on the executor port gets an Error naming the client endpoint. */
static void test_wrong_port(void **state)
{
    (void)state;
    static cl_t c;
    char se[320], want[400];
    cl_init(&c, "wrongport");
    /* Plain text: with keys, a handshake with the wrong port's domain fails
     * before any message (test_auth covers that), so no answer could say why. */
    const char *insecure[] = {"--insecure", NULL};
    cl_scheduler(&c, insecure);
    snprintf(se, sizeof(se), "--scheduler=%s", c.client_ep);
    const char *exec_args[] = {se, "--name=astray", "--backend=null", "--insecure", NULL};
    int x = cl_spawn(&c, "sluice-executor", exec_args);
    snprintf(want, sizeof(want),
             "this is the client port; executors connect to the executor endpoint (%s)", c.exec_ep);
    sl_test_expect_error(want);
    assert_int_equal(cl_wait(&c, x, 10000), 2);
    assert_true(cl_log_has(&c, x, want));

    void *astray = zmq_socket(c.zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(astray, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(astray, c.exec_ep), 0);
    assert_int_equal(sl_wire_status_request_send(astray, 0), SL_OK);
    sl_wire_msg_t *m = cl_recv(astray, 5000);
    assert_non_null(m);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_ERROR);
    sl_wire_error_t e;
    sl_wire_error_get(m, &e);
    assert_int_equal(e.code, SL_ERR_MSG_UNEXPECTED);
    snprintf(want, sizeof(want),
             "this is the executor port; clients connect to the client endpoint (%s)", c.client_ep);
    assert_string_equal(e.message, want);
    sl_wire_msg_free(&m);
    zmq_close(astray);

    void *cli = cl_client(&c);
    assert_true(cl_status_counter(cli, "msgs_wrong_port") >= 2); /* a hello, a status request */
    assert_int_equal(cl_status_counter(cli, "executors_joined"), 0);
    assert_int_equal(cl_status_counter(cli, "msgs_unknown_executor"), 0);
    zmq_close(cli);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicate_name_refused),
        cmocka_unit_test(test_restart_takes_over),
        cmocka_unit_test(test_executor_before_scheduler),
        cmocka_unit_test(test_scheduler_lost),
        cmocka_unit_test(test_second_sigterm),
        cmocka_unit_test(test_wrong_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
