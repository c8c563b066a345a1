/*
 * Log shipping against the real daemons: an executor with --log-ship on
 * ships its log lines and a trace record per finished job to the
 * scheduler's collector, which writes them under --collect-dir; a burst of
 * traces larger than the executor's ring is dropped and counted while
 * every job still finishes; a scheduler that is gone (killed, then started
 * again) does not hold the executor up, and shipping resumes with the new
 * one.
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
#include "common/sl_clock.h"
#include "tests/support/sl_test.h"

/* Lines of path that contain text (0 when it cannot be read). */
static int s_count_lines(const char *path, const char *text)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), fp))
        n += strstr(line, text) != NULL;
    fclose(fp);
    return n;
}

/* Wait up to timeout_ms for path to hold at least want lines containing text. */
static int s_wait_lines(const char *path, const char *text, int want, int timeout_ms)
{
    int n = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if ((n = s_count_lines(path, text)) >= want)
            return n;
        usleep(50000);
    }
    return n;
}

/* Submit n jobs named prefix-i and wait for all their results (all OK). */
static void s_run_jobs(void *sock, const char *prefix, int n, int timeout_ms)
{
    char id[64];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        cl_submit(sock, id, 32, 4, 0);
    }
    int results = 0;
    while (results < n) {
        cl_ev_t ev;
        assert_true(cl_next(sock, timeout_ms, &ev));
        if (ev.kind == CL_EV_RESULT) {
            assert_int_equal(ev.result.status, SL_JOB_OK);
            results++;
        }
        cl_ev_free(&ev);
    }
}

static void test_logship_lands_in_collector(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "logship");
    char collect[400], arg[450], path[500];
    snprintf(collect, sizeof(collect), "%s/collect", c.dir);
    snprintf(arg, sizeof(arg), "--collect-dir=%s", collect);
    const char *sched_args[] = {arg, NULL};
    const char *exec_args[] = {"--backend=sim", "--log-ship=on", "--log-level=info", NULL};
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 10000), 0);
    s_run_jobs(sock, "ship", 5, 10000);
    snprintf(path, sizeof(path), "%s/e1.trace", collect);
    assert_int_equal(s_wait_lines(path, "status=ok", 5, 5000), 5);
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof(want), "job=ship-%d seq=", i);
        assert_int_equal(s_count_lines(path, want), 1);
    }
    assert_int_equal(s_count_lines(path, "prompt=32 "), 5);
    snprintf(path, sizeof(path), "%s/e1.log", collect);
    assert_true(s_wait_lines(path, "registered with the scheduler", 1, 5000) >= 1);
    assert_true(s_count_lines(path, "log shipping to ") >= 1);
    assert_true(cl_status_counter(sock, "collect_lines") >= 6);
    assert_true(cl_status_counter(sock, "collect_bytes") > 0);
    assert_int_equal(cl_status_counter(sock, "collect_dropped"), 0);
    assert_int_equal(cl_status_counter(sock, "collect_ignored"), 0);
    zmq_close(sock);
    cl_fini(&c);
}

/* A 1 KiB ring shipped at 1 KiB/s: 300 jobs' traces (about 30 KB) overflow
 * it; the jobs finish all the same and the drops reach the collector. */
static void test_logship_burst_drops(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "logburst");
    char collect[400], arg[450], path[500];
    snprintf(collect, sizeof(collect), "%s/collect", c.dir);
    snprintf(arg, sizeof(arg), "--collect-dir=%s", collect);
    const char *sched_args[] = {arg, NULL};
    const char *exec_args[] = {"--backend=null",         "--log-ship=on",
                               "--log-ship-kib=1",       "--log-ship-batch-kib=2",
                               "--log-ship-max-kibps=1", NULL};
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 10000), 0);
    sl_time_t t0 = sl_clock_now();
    s_run_jobs(sock, "burst", 300, 10000);
    assert_true(sl_clock_now() - t0 < SL_MS(10000)); /* shipping did not pace the jobs */
    int64_t dropped = 0;
    for (int i = 0; i < 100 && (dropped = cl_status_counter(sock, "collect_dropped")) <= 0; i++)
        usleep(50000);
    assert_true(dropped > 0);
    snprintf(path, sizeof(path), "%s/e1.trace", collect);
    int shipped = s_wait_lines(path, "job=burst-", 1, 5000);
    assert_true(shipped >= 1);
    assert_true(shipped < 300); /* the ring held only the newest */
    zmq_close(sock);
    cl_fini(&c);
}

/* The scheduler is killed: the executor goes on (it does not block on
 * its shipping connection) and, once a new scheduler comes up at the same
 * endpoints, registers again, runs jobs, and their traces are collected. */
static void test_logship_collector_gone(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "loggone");
    char collect[400], arg[450], path[500];
    snprintf(collect, sizeof(collect), "%s/collect", c.dir);
    snprintf(arg, sizeof(arg), "--collect-dir=%s", collect);
    const char *sched_args[] = {arg, NULL};
    const char *exec_args[] = {"--backend=sim", "--log-ship=on", "--link-timeout-ms=300",
                               "--hello-retry-ms=100", NULL};
    int sched = cl_scheduler(&c, sched_args);
    int exec = cl_executor(&c, "e1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 10000), 0);
    s_run_jobs(sock, "before", 3, 10000);
    snprintf(path, sizeof(path), "%s/e1.trace", collect);
    assert_int_equal(s_wait_lines(path, "job=before-", 3, 5000), 3);
    zmq_close(sock);
    cl_kill(&c, sched, SIGKILL);
    assert_true(cl_wait(&c, sched, 5000) >= 0);
    sleep(1); /* the executor logs and finishes nothing meanwhile; it must stay up */
    assert_int_equal(kill(c.pids[exec], 0), 0);
    cl_scheduler(&c, sched_args);
    sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 15000), 0);
    s_run_jobs(sock, "after", 3, 10000);
    assert_int_equal(s_wait_lines(path, "job=after-", 3, 5000), 3);
    assert_int_equal(s_count_lines(path, "job=before-"), 3);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logship_lands_in_collector),
        cmocka_unit_test(test_logship_burst_drops),
        cmocka_unit_test(test_logship_collector_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
