/*
 * Integration tests with the real programs: a scheduler and executors as
 * child processes, a raw protocol client. Every job must be answered exactly
 * once, also when an executor is killed with SIGKILL mid-run, with single
 * Submits and with SubmitBatches (answered by ResultBatches); malformed,
 * truncated and oversized messages, and bad items of a batch, are refused
 * and counted while service goes on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "cluster.h"
#include "tests/support/sl_test.h"
#include "common/sl_clock.h"

typedef struct run {
    int n;            /* jobs */
    int window;       /* outstanding at most */
    int kill_after;   /* results after which to SIGKILL kill_slot (0 = never) */
    int kill_slot;    /* process slot to kill */
    int submit_batch; /* > 0: submit in SubmitBatches of up to this many jobs */
    int *results;     /* results per job */
    int accepted;     /* Accepted replies */
    int busy;         /* Busy replies */
    int ok;           /* results with status OK */
    int requeued;     /* results that took more than one attempt */
} run_t;

static int s_index(const char *id)
{
    return atoi(id + 1);
}

/* The Submit item of job k of a run. */
static void s_batch_add(sl_wire_batch_t *b, const char *id, int k)
{
    sl_job_desc_t j = cl_job(id, 64 + (uint32_t)(k % 7) * 64, 4 + (uint32_t)(k % 5), k & 1);
    assert_int_equal(sl_wire_submit_add(b, &j), SL_OK);
}

static void s_on_busy(void *sock, run_t *r, const sl_wire_busy_t *b)
{
    r->busy++;
    usleep(1000);
    cl_submit(sock, b->job_id, 64, 4, 0); /* same id: idempotent */
}

static void s_on_result(cl_t *c, run_t *r, const sl_wire_result_t *res, int *done, int *killed)
{
    int k = s_index(res->job_id);
    assert_true(k >= 0 && k < r->n);
    r->results[k]++;
    assert_int_equal(r->results[k], 1); /* exactly once */
    if (res->status == SL_JOB_OK)
        r->ok++;
    if (res->attempts > 1)
        r->requeued++;
    assert_true(res->has_timings);
    assert_int_equal(res->n_tokens, res->timings.output_tokens);
    (*done)++;
    if (r->kill_after && *done >= r->kill_after && !*killed) {
        cl_kill(c, r->kill_slot, SIGKILL);
        *killed = 1;
    }
}

static void s_run(cl_t *c, void *sock, run_t *r)
{
    char id[32];
    int sent = 0, done = 0, killed = 0;
    sl_wire_batch_t batch;
    sl_wire_batch_init(&batch, SL_WIRE_SUBMITS);
    r->results = calloc((size_t)r->n, sizeof(int));
    while (done < r->n) {
        while (sent < r->n && sent - done < r->window) {
            snprintf(id, sizeof(id), "j%d", sent);
            if (r->submit_batch > 0) {
                s_batch_add(&batch, id, sent);
                if (batch.n >= (uint32_t)r->submit_batch)
                    assert_int_equal(sl_wire_batch_send(sock, NULL, &batch, 0), SL_OK);
            } else {
                cl_submit(sock, id, 64 + (uint32_t)(sent % 7) * 64, 4 + (uint32_t)(sent % 5),
                          sent & 1);
            }
            sent++;
        }
        assert_int_equal(sl_wire_batch_send(sock, NULL, &batch, 0), SL_OK);
        cl_ev_t ev;
        assert_true(cl_next(sock, 30000, &ev)); /* no progress for 30 s is a failure */
        switch (ev.kind) {
        case CL_EV_ACCEPTED:
            r->accepted++;
            break;
        case CL_EV_BUSY:
            s_on_busy(sock, r, &ev.busy);
            break;
        case CL_EV_RESULT:
            s_on_result(c, r, &ev.result, &done, &killed);
            break;
        case CL_EV_STATUS:
            break; /* a late answer to a readiness poll (loaded host) */
        default:
            fail_msg("unexpected answer %d", (int)ev.kind);
        }
        cl_ev_free(&ev);
    }
    for (int k = 0; k < r->n; k++)
        assert_int_equal(r->results[k], 1);
    sl_wire_batch_fini(&batch);
    free(r->results);
}

static void s_20k_jobs(int submit_batch)
{
    static cl_t c;
    /* Throughput and resubmission, not loss detection: 3 s of missed
     * heartbeats (not 300 ms), so that a host loaded by other tests does
     * not declare an executor lost in the middle of the 20,000 jobs. */
    const char *sched_args[] = {"--log-level=warn", "--missed-heartbeats=30", NULL};
    const char *exec_args[] = {"--backend=sim", "--sim-speed=200", "--log-level=warn", NULL};
    cl_init(&c, "20k");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    cl_executor(&c, "e2", exec_args);
    cl_executor(&c, "e3", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 3, 10000), 0);
    run_t r = {.n = 20000, .window = 2000, .submit_batch = submit_batch};
    s_run(&c, sock, &r);
    assert_int_equal(r.ok, 20000);
    /* A finished job submitted again gets Accepted and its cached Result
     * again, whether it comes alone or in a batch. */
    {
        cl_submit(sock, "j0", 64, 4, 0);
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        s_batch_add(&b, "j1", 1);
        assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
        sl_wire_batch_fini(&b);
        int acc[2] = {0, 0}, res[2] = {0, 0};
        while (acc[0] + acc[1] + res[0] + res[1] < 4) {
            cl_ev_t ev;
            assert_true(cl_next(sock, 10000, &ev));
            int k = strcmp(ev.job_id, "j1") == 0;
            if (!k)
                assert_string_equal(ev.job_id, "j0");
            if (ev.kind == CL_EV_ACCEPTED) {
                acc[k]++;
            } else if (ev.kind == CL_EV_RESULT) {
                assert_int_equal(ev.result.status, SL_JOB_OK);
                res[k]++;
            }
            cl_ev_free(&ev);
        }
        assert_int_equal(acc[0], 1);
        assert_int_equal(res[0], 1);
        assert_int_equal(acc[1], 1);
        assert_int_equal(res[1], 1);
    }
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_completed"), 20000);
    assert_int_equal(cl_counter(st, "results_resent"), 2);
    assert_int_equal(cl_counter(st, "executors_lost"), 0);
    /* all three executors did work */
    for (uint32_t i = 0; i < cl_status_execs(st); i++)
        assert_true(cl_status_exec(st, i).completed > 1000);
    sl_wire_msg_free(&st);
    zmq_close(sock);
    /* SIGTERM drains and exits cleanly */
    cl_kill(&c, 0, SIGTERM);
    assert_int_equal(cl_wait(&c, 0, 10000), 0);
    cl_fini(&c);
}

static void test_20k_jobs(void **state)
{
    s_20k_jobs(0);
}

static void test_20k_jobs_batched(void **state)
{
    s_20k_jobs(64);
}

static void s_executor_killed(int submit_batch)
{
    static cl_t c;
    /* the victim is noticed within 0.5 s; a survivor starved of the CPU for
     * less than that (a loaded 2-core CI host, ASan) is not taken for dead */
    const char *sched_args[] = {"--log-level=error", "--heartbeat-ms=100", "--missed-heartbeats=5",
                                NULL};
    const char *exec_args[] = {"--backend=sim", "--sim-speed=100", "--log-level=warn", NULL};
    cl_init(&c, "kill");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    int victim = cl_executor(&c, "e2", exec_args);
    cl_executor(&c, "e3", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 3, 10000), 0);
    run_t r = {.n = 20000,
               .window = 1500,
               .kill_after = 5000,
               .kill_slot = victim,
               .submit_batch = submit_batch};
    s_run(&c, sock, &r);
    assert_int_equal(r.ok, 20000);
    assert_true(r.requeued > 0); /* the victim had jobs in flight */
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "executors_lost"), 1);
    assert_true(cl_counter(st, "jobs_requeued") >= r.requeued);
    assert_int_equal(cl_status_execs(st), 2);
    sl_wire_msg_free(&st);
    zmq_close(sock);
    cl_fini(&c);
}

static void test_executor_killed(void **state)
{
    s_executor_killed(0);
}

static void test_executor_killed_batched(void **state)
{
    s_executor_killed(100);
}

static void s_send_raw(void *sock, const void *buf, size_t len)
{
    zmq_send(sock, buf, len, 0);
}

/* Wait for an Error reply; returns its code or 0 on timeout. */
static int s_expect_error(void *sock)
{
    for (;;) {
        sl_wire_msg_t *m = cl_recv(sock, 3000);
        if (!m)
            return 0;
        sl_wire_error_t e = {.code = SL_OK};
        if (sl_wire_msg_kind(m) == SL_WIRE_ERROR)
            sl_wire_error_get(m, &e);
        sl_wire_msg_free(&m);
        if (e.code)
            return e.code;
    }
}

/* The bytes a batch is sent as (read back through an inproc pair), so a
 * test can send them damaged. Returns their length. */
static size_t s_batch_bytes(void *zctx, sl_wire_batch_t *b, void *buf, size_t cap)
{
    void *in = zmq_socket(zctx, ZMQ_PAIR), *out = zmq_socket(zctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(in, "inproc://batch-bytes"), 0);
    assert_int_equal(zmq_connect(out, "inproc://batch-bytes"), 0);
    assert_int_equal(sl_wire_batch_send(out, NULL, b, 0), SL_OK);
    int n = zmq_recv(in, buf, cap, 0);
    assert_true(n > 0 && (size_t)n <= cap);
    zmq_close(out);
    zmq_close(in);
    return (size_t)n;
}

static void test_bad_messages(void **state)
{
    static cl_t c;
    const char *sched_args[] = {"--log-level=error", "--max-msg-bytes=65536", NULL};
    const char *exec_args[] = {"--backend=sim", "--sim-speed=1000", "--log-level=warn", NULL};
    cl_init(&c, "bad");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 10000), 0);

    /* client socket: garbage, a truncated valid message, an oversized one,
     * an oversized field, an out-of-range enum, a message clients may not send */
    s_send_raw(sock, "\xff\xff\xff\xff garbage", 13);
    assert_int_equal(s_expect_error(sock), SL_ERR_MSG_MALFORMED);
    {
        uint8_t buf[512];
        sl_wire_batch_t b;
        sl_job_desc_t j = cl_job("truncated-one", 10, 4, 0);
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        size_t len = s_batch_bytes(c.zctx, &b, buf, sizeof(buf));
        sl_wire_batch_fini(&b);
        s_send_raw(sock, buf, len - 3);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_MALFORMED);
    }
    {
        size_t big = 100000;
        char *junk = malloc(big);
        memset(junk, 0x41, big);
        s_send_raw(sock, junk, big);
        free(junk);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_TOO_BIG);
    }
    {
        char id[1000];
        memset(id, 'x', sizeof(id) - 1);
        id[sizeof(id) - 1] = '\0';
        cl_submit(sock, id, 10, 4, 0);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_TOO_BIG);
    }
    {
        sl_wire_batch_t b;
        sl_job_desc_t j = cl_job("bad-prio", 10, 4, 0);
        j.prio = (sl_prio_t)7;
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
        sl_wire_batch_fini(&b);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_RANGE);
    }
    {
        sl_exec_load_t load = {0};
        sl_wire_heartbeat_send(sock, 1, &load, 0);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_UNEXPECTED);
    }

    /* a SubmitBatch with a bad item in the middle: that item alone gets an
     * Error, the other two are accepted and run; one over --max-msg-batch
     * is refused whole (an empty one is proto's test: test_proto) */
    {
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        sl_job_desc_t j = cl_job("bb-0", 10, 4, 0);
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        j.id = "bb-1";
        j.max_new_tokens = 0; /* bad */
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        j.id = "bb-2";
        j.max_new_tokens = 4;
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
        int errors = 0, accepted = 0, results = 0;
        while (errors < 1 || accepted < 2 || results < 2) {
            cl_ev_t ev;
            assert_true(cl_next(sock, 10000, &ev));
            if (ev.kind == CL_EV_ERROR) {
                assert_int_equal(ev.error.code, SL_ERR_MSG_RANGE);
                errors++;
            } else {
                assert_string_not_equal(ev.job_id, "bb-1");
                if (ev.kind == CL_EV_RESULT)
                    assert_int_equal(ev.result.status, SL_JOB_OK);
                else
                    assert_int_equal(ev.kind, CL_EV_ACCEPTED);
                accepted += ev.kind == CL_EV_ACCEPTED;
                results += ev.kind == CL_EV_RESULT;
            }
            cl_ev_free(&ev);
        }
        assert_int_equal(errors, 1);
        /* over --max-msg-batch (1024) */
        for (int i = 0; i < 1025; i++)
            assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_TOO_BIG);
        sl_wire_batch_fini(&b);
    }

    /* executor socket: garbage, oversized, and a heartbeat from a stranger */
    void *rogue = zmq_socket(c.zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(rogue, ZMQ_LINGER, &zero, sizeof(zero));
    cl_secure(rogue, &c.executor_key, &c);
    zmq_connect(rogue, c.exec_ep);
    s_send_raw(rogue, "\x0a\xff\x01", 3);
    assert_int_equal(s_expect_error(rogue), SL_ERR_MSG_MALFORMED);
    {
        size_t big = 100000;
        char *junk = calloc(1, big);
        s_send_raw(rogue, junk, big);
        free(junk);
        assert_int_equal(s_expect_error(rogue), SL_ERR_MSG_TOO_BIG);
    }
    {
        sl_exec_load_t load = {0};
        sl_wire_heartbeat_send(rogue, 1, &load, 0);
        assert_int_equal(s_expect_error(rogue), SL_ERR_NOT_FOUND);
    }
    {
        sl_wire_batch_t b;
        sl_result_report_t rep = {.res = {.status = SL_JOB_OK}};
        sl_wire_batch_init(&b, SL_WIRE_COMPLETIONS);
        assert_int_equal(sl_wire_completion_add(&b, 12345, &rep), SL_OK);
        assert_int_equal(sl_wire_batch_send(rogue, NULL, &b, 0), SL_OK);
        sl_wire_batch_fini(&b);
        assert_int_equal(s_expect_error(rogue), SL_ERR_NOT_FOUND);
    }
    zmq_close(rogue);

    /* a client that vanishes with jobs outstanding does not disturb others */
    void *ghost = cl_client(&c);
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "ghost-%d", i);
        cl_submit(ghost, id, 100, 8, 0);
    }
    zmq_close(ghost);

    /* still serving */
    run_t r = {.n = 500, .window = 100};
    s_run(&c, sock, &r);
    assert_int_equal(r.ok, 500);
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "msgs_rejected_client"), 8);
    assert_int_equal(cl_counter(st, "msgs_rejected_executor"), 2);
    assert_int_equal(cl_counter(st, "msgs_unknown_executor"), 2);
    assert_int_equal(cl_counter(st, "msgs_wrong_version"), 0);
    sl_wire_msg_free(&st);
    zmq_close(sock);
    cl_kill(&c, 0, SIGTERM);
    assert_int_equal(cl_wait(&c, 0, 10000), 0);
    cl_fini(&c);
}

/* Jobs that run longer than the executor's link timeout: the scheduler says
 * nothing while they run, and that silence must not cost the executor its
 * registration (nor the jobs their first attempt). */
static void test_long_jobs(void **state)
{
    static cl_t c;
    const char *sched_args[] = {"--log-level=warn", NULL};
    const char *exec_args[] = {"--backend=sim", "--link-timeout-ms=600", "--log-level=warn", NULL};
    cl_init(&c, "long");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "e1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 10000), 0);
    /* 1000 prompt tokens, 300 new: about 1.8 s of modelled H100 time each */
    cl_submit(sock, "long-0", 1000, 300, 0);
    cl_submit(sock, "long-1", 1000, 300, 0);
    int results = 0;
    while (results < 2) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 20000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            assert_int_equal(ev.result.status, SL_JOB_OK);
            assert_int_equal(ev.result.attempts, 1);
            assert_true(ev.result.timings.end_us > 1500000);
            results++;
        }
        cl_ev_free(&ev);
    }
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "executors_lost"), 0);
    assert_int_equal(cl_counter(st, "executors_joined"), 1);
    sl_wire_msg_free(&st);
    zmq_close(sock);
    cl_fini(&c);
}

/* Completions for job_seqs seen on a ROUTER socket (the scripted
 * scheduler) until timeout_ms pass without one; each seen[seq] counted
 * (seq < 256). */
static void s_collect_completions(void *sock, int *seen, int timeout_ms)
{
    sl_time_t quiet_until = sl_clock_now() + SL_MS(timeout_ms);
    while (sl_clock_now() < quiet_until) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        sl_wire_ident_t who;
        sl_wire_msg_t *m = NULL;
        char err[256];
        if (sl_wire_recv(sock, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)) != SL_OK)
            continue;
        if (sl_wire_msg_kind(m) == SL_WIRE_COMPLETIONS) {
            quiet_until = sl_clock_now() + SL_MS(timeout_ms);
            for (uint32_t i = 0; i < sl_wire_msg_count(m); i++) {
                sl_wire_completion_t comp;
                sl_wire_completion_get(m, i, &comp);
                assert_true(comp.job_seq < 256);
                seen[comp.job_seq]++;
            }
        }
        sl_wire_msg_free(&m);
    }
}

static void s_dispatch_add(sl_wire_batch_t *b, uint64_t seq, uint32_t max_new)
{
    char id[32];
    snprintf(id, sizeof(id), "x%llu", (unsigned long long)seq);
    sl_job_desc_t j = cl_job(id, 16, max_new, 0);
    assert_int_equal(sl_wire_dispatch_add(b, &j, seq, 1), SL_OK);
}

/* A real executor against a scripted scheduler: a DispatchBatch with a bad
 * item runs the others; a batch over --max-msg-batch is refused whole; a
 * batch of one works. */
static void test_executor_dispatch_batch(void **state)
{
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--max-msg-batch=8", "--log-level=error", NULL};
    cl_init(&c, "xbatch");
    void *sched = zmq_socket(c.zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(sched, ZMQ_LINGER, &zero, sizeof(zero));
    cl_secure(sched, &c.server_key, &c);
    assert_int_equal(zmq_bind(sched, c.exec_ep), 0);
    cl_executor(&c, "x1", exec_args);
    sl_wire_ident_t who;
    sl_wire_msg_t *m = NULL;
    char err[256];
    for (;;) { /* its hello */
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, 10000), 1);
        assert_int_equal(
            sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)), SL_OK);
        int hello = sl_wire_msg_kind(m) == SL_WIRE_HELLO;
        sl_wire_msg_free(&m);
        if (hello)
            break;
    }
    sl_wire_welcome_t w = {.heartbeat_ms = 100};
    assert_int_equal(sl_wire_welcome_send(sched, &who, &w, 0), SL_OK);

    static int seen[256];
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_DISPATCHES);
    s_dispatch_add(&b, 1, 2);
    s_dispatch_add(&b, 2, 0); /* bad: no new tokens */
    s_dispatch_add(&b, 3, 2);
    assert_int_equal(sl_wire_batch_send(sched, &who, &b, 0), SL_OK);
    for (int i = 0; i < 9; i++) /* over --max-msg-batch */
        s_dispatch_add(&b, 10 + (uint64_t)i, 2);
    assert_int_equal(sl_wire_batch_send(sched, &who, &b, 0), SL_OK);
    s_dispatch_add(&b, 100, 2);
    assert_int_equal(sl_wire_batch_send(sched, &who, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
    s_collect_completions(sched, seen, 1000);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 0);
    assert_int_equal(seen[3], 1);
    for (int i = 10; i < 19; i++)
        assert_int_equal(seen[i], 0);
    assert_int_equal(seen[100], 1);
    zmq_close(sched);
    cl_fini(&c);
}

/* An executor whose backend fails every job at once (the sim backend's
 * fault injection) beside two healthy ones, jobs sent one at a time: it
 * always looks idle, and before quarantine least-outstanding sent it
 * nearly every job. Now its first three failures quarantine it, every
 * later job runs on the healthy ones, each failure carries the backend's
 * reason, and the counters and `sluice status` tell failures apart. */
static void test_failing_executor_quarantined(void **state)
{
    static cl_t c;
    const char *sched_args[] = {"--log-level=error", NULL};
    const char *good_args[] = {"--backend=sim", "--sim-speed=1000", "--log-level=warn", NULL};
    const char *bad_args[] = {"--backend=sim", "--sim-speed=1000", "--sim-fail-share=1",
                              "--log-level=warn", NULL};
    cl_init(&c, "quar");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "bad", bad_args);
    cl_executor(&c, "good1", good_args);
    cl_executor(&c, "good2", good_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 3, 10000), 0);
    int failed = 0, ok = 0, last_failure = -1;
    for (int k = 0; k < 30; k++) {
        char id[32];
        snprintf(id, sizeof(id), "q%d", k);
        cl_submit(sock, id, 100, 4, 0);
        for (;;) {
            cl_ev_t ev;
            assert_true(cl_next(sock, 10000, &ev));
            if (ev.kind == CL_EV_RESULT) {
                const sl_wire_result_t *r = &ev.result;
                assert_string_equal(r->job_id, id);
                if (r->status == SL_JOB_OK) {
                    ok++;
                } else {
                    assert_int_equal(r->status, SL_JOB_FAILED);
                    assert_string_equal(r->executor, "bad");
                    if (!strstr(r->error, "injected failure"))
                        fail_msg("failure says \"%s\"", r->error);
                    failed++;
                    last_failure = k;
                }
                cl_ev_free(&ev);
                break;
            }
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
            cl_ev_free(&ev);
        }
    }
    print_message("failures %d (last at job %d), ok %d\n", failed, last_failure, ok);
    assert_int_equal(failed, 3); /* the third quarantines it */
    assert_int_equal(ok, 27);
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_failed"), 3);
    assert_int_equal(cl_counter(st, "jobs_completed"), 27);
    assert_int_equal(cl_counter(st, "executors_quarantined"), 1);
    for (uint32_t i = 0; i < cl_status_execs(st); i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        int bad = strcmp(e.name, "bad") == 0;
        assert_int_equal(e.quarantined, bad);
        assert_int_equal(e.failed, bad ? 3 : 0);
        if (bad)
            assert_int_equal(e.completed, 0);
    }
    sl_wire_msg_free(&st);

    /* `sluice status` marks it */
    static char out[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice status --endpoint %s --wait-timeout-ms 10000 %s",
             sl_test_bin(), c.client_ep, c.client_keys);
    assert_int_equal(sl_test_run(cmd, out, sizeof(out)), 0);
    char *line = strstr(out, "\nbad ");
    if (!line || !strstr(line, " quar ") || !strstr(out, "executors_quarantined"))
        fail_msg("sluice status does not show the quarantine:\n%s", out);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_20k_jobs),
        cmocka_unit_test(test_20k_jobs_batched),
        cmocka_unit_test(test_executor_killed),
        cmocka_unit_test(test_executor_killed_batched),
        cmocka_unit_test(test_long_jobs),
        cmocka_unit_test(test_executor_dispatch_batch),
        cmocka_unit_test(test_failing_executor_quarantined),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
