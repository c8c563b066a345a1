/*
 * The journal against the real daemons: a scheduler with --journal is
 * SIGKILLed once every job was acknowledged, while some run on a slow
 * executor and the rest wait in its queue; restarted on the same journal,
 * it restores them, the executor registers again and lists the jobs it
 * still runs, which are adopted (not run again), and the queued ones are
 * dispatched after the grace. The client (a DEALER with a fixed routing id,
 * as libsluice's) gets exactly one result per acknowledged job: none lost,
 * none twice. A resubmission of a finished id after a second restart gets
 * the journaled result, not a second run; a queued job submitted again
 * after the restart is the same job.
 *
 * Jobs are made slow with the sim backend's decode step (50 ms a token).
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

#define S_JOBS 8

/* 50 ms per decode step, two jobs at a time: a job of 80 tokens takes 4 s
 * (long enough for the restart to find the first two still running). */
static const char *const s_slow_exec[] = {"--backend=sim", "--sim-decode-base-us=50000",
                                          "--slots=2", "--log-level=warn", NULL};

/* A client socket with a fixed routing id: it keeps its identity when
 * ZeroMQ reconnects it to a restarted scheduler. */
static void *s_client(cl_t *c, const char *rid)
{
    void *s = zmq_socket(c->zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
    if (!c->insecure)
        cl_secure(s, &c->client_key, c); /* the scheduler runs with the test's keys */
    zmq_connect(s, c->client_ep);
    return s;
}

static int s_index(const char *id)
{
    int k = -1;
    if (sscanf(id, "journal-%d", &k) != 1 || k < 0 || k >= S_JOBS)
        return -1;
    return k;
}

static void test_crash_restore_adopt(void **state)
{
    (void)state;
    cl_t c;
    cl_init(&c, "journal");
    char jarg[400], grace[] = "--adopt-grace-ms=3000";
    snprintf(jarg, sizeof(jarg), "--journal=%s/sched.journal", c.dir);
    const char *sched_args[] = {jarg, grace, "--log-level=warn", NULL};
    int sched = cl_scheduler(&c, sched_args);
    cl_executor(&c, "slow", s_slow_exec);
    void *probe = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, probe, 1, 10000), 0);

    void *cli = s_client(&c, "journal-client");
    char id[32];
    for (int k = 0; k < S_JOBS; k++) {
        snprintf(id, sizeof(id), "journal-%d", k);
        cl_submit(cli, id, 8, 80, 0);
    }
    int accepted[S_JOBS] = {0}, results[S_JOBS] = {0}, n_acc = 0;
    sl_time_t end = sl_clock_now() + SL_MS(10000);
    while (n_acc < S_JOBS && sl_clock_now() < end) {
        cl_ev_t ev;
        if (!cl_next(cli, 200, &ev))
            continue;
        int k = s_index(ev.job_id);
        if (ev.kind == CL_EV_ACCEPTED && k >= 0 && !accepted[k]++)
            n_acc++;
        if (ev.kind == CL_EV_RESULT && k >= 0)
            results[k]++;
        cl_ev_free(&ev);
    }
    assert_int_equal(n_acc, S_JOBS);
    assert_int_equal(cl_wait_counter(probe, "jobs_dispatched", 2, 5000), 2);

    /* Two run, six wait: the scheduler dies with all eight acknowledged. */
    cl_kill(&c, sched, SIGKILL);
    assert_true(cl_wait(&c, sched, 5000) >= 0);
    sched = cl_scheduler(&c, sched_args);
    assert_int_equal(cl_wait_counter(probe, "jobs_restored", S_JOBS, 10000), S_JOBS);
    /* A queued job submitted again is the same job: Accepted again, one result. */
    cl_submit(cli, "journal-7", 8, 80, 0);
    bool reaccepted = false;

    /* Every job ends once at the client: the two running were adopted, the
     * queued ones run after the grace. */
    int n_res = 0;
    end = sl_clock_now() + SL_MS(60000);
    while (n_res < S_JOBS && sl_clock_now() < end) {
        cl_ev_t ev;
        if (!cl_next(cli, 200, &ev))
            continue;
        int k = s_index(ev.job_id);
        if (ev.kind == CL_EV_ACCEPTED && k == 7)
            reaccepted = true;
        if (ev.kind == CL_EV_RESULT && k >= 0) {
            assert_int_equal(ev.result.status, SL_OK);
            if (results[k]++ == 0)
                n_res++;
        }
        cl_ev_free(&ev);
    }
    /* A little longer: a second result of any job would come now. */
    end = sl_clock_now() + SL_MS(1500);
    while (sl_clock_now() < end) {
        cl_ev_t ev;
        if (!cl_next(cli, 100, &ev))
            continue;
        int k = s_index(ev.job_id);
        if (ev.kind == CL_EV_RESULT && k >= 0)
            results[k]++;
        cl_ev_free(&ev);
    }
    for (int k = 0; k < S_JOBS; k++)
        if (results[k] != 1)
            fail_msg("job journal-%d got %d results", k, results[k]);
    assert_true(reaccepted);
    assert_int_equal(cl_counter_or(probe, "jobs_duplicate"), 1);
    int64_t adopted = cl_counter_or(probe, "jobs_adopted");
    int64_t unclaimed = cl_counter_or(probe, "jobs_unclaimed");
    assert_int_equal(adopted, 2);
    assert_int_equal(adopted + unclaimed, S_JOBS);
    assert_int_equal(cl_counter_or(probe, "jobs_completed"), S_JOBS);

    /* Restarted once more: a resubmitted finished id gets its journaled
     * result, and nothing runs again. */
    cl_kill(&c, sched, SIGKILL);
    assert_true(cl_wait(&c, sched, 5000) >= 0);
    cl_scheduler(&c, sched_args);
    assert_int_equal(cl_wait_executors(&c, probe, 1, 10000), 0);
    cl_submit(cli, "journal-3", 8, 40, 0);
    bool got = false;
    end = sl_clock_now() + SL_MS(5000);
    while (!got && sl_clock_now() < end) {
        cl_ev_t ev;
        if (!cl_next(cli, 200, &ev))
            continue;
        if (ev.kind == CL_EV_RESULT && strcmp(ev.job_id, "journal-3") == 0) {
            assert_int_equal(ev.result.status, SL_OK);
            got = true;
        }
        cl_ev_free(&ev);
    }
    assert_true(got);
    assert_int_equal(cl_counter_or(probe, "jobs_dispatched"), 0);
    assert_int_equal(cl_counter_or(probe, "results_resent"), 1);
    zmq_close(cli);
    zmq_close(probe);
    cl_fini(&c);
}

/* A file that is not a journal: the scheduler refuses to start (exit 1,
 * a clear line), and leaves the file as it was. */
static void test_refuses_damaged(void **state)
{
    (void)state;
    cl_t c;
    cl_init(&c, "journal-bad");
    char path[300], jarg[400];
    snprintf(path, sizeof(path), "%s/bad.journal", c.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 512; i++)
        fputs("this is not an SQLite file, ", f);
    fclose(f);
    snprintf(jarg, sizeof(jarg), "--journal=%s", path);
    const char *sched_args[] = {jarg, "--log-level=warn", NULL};
    sl_test_expect_error("move it away to start without it");
    int sched = cl_scheduler(&c, sched_args);
    int rc = cl_wait(&c, sched, 10000);
    assert_true(rc != 0 && rc != -1);
    assert_true(cl_log_has(&c, sched, "move it away to start without it"));
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_restore_adopt),
        cmocka_unit_test(test_refuses_damaged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
