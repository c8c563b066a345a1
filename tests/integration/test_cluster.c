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
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit sub = SLUICE__SUBMIT__INIT;
    p.length = 64 + (uint32_t)(k % 7) * 64;
    j.id = (char *)id;
    j.prompt = &p;
    j.max_new_tokens = 4 + (uint32_t)(k % 5);
    j.priority = (k & 1) ? SLUICE__PRIORITY__PRIORITY_BATCH : SLUICE__PRIORITY__PRIORITY_INTERACTIVE;
    sub.job = &j;
    assert_int_equal(sl_wire_batch_add(b, 1, &sub.base), SL_OK);
}

static void s_on_busy(void *sock, run_t *r, const Sluice__Busy *b)
{
    r->busy++;
    usleep(1000);
    cl_submit(sock, b->job_id, 64, 4, 0); /* same id: idempotent */
}

static void s_on_result(cl_t *c, run_t *r, const Sluice__Result *res, int *done, int *killed)
{
    int k = s_index(res->job_id);
    assert_true(k >= 0 && k < r->n);
    r->results[k]++;
    assert_int_equal(r->results[k], 1); /* exactly once */
    if (res->status == SLUICE__RESULT_STATUS__RESULT_OK)
        r->ok++;
    if (res->attempts > 1)
        r->requeued++;
    assert_int_equal(res->n_tokens, res->timings->output_tokens);
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
    sl_wire_batch_init(&batch, SLUICE__ENVELOPE__BODY_SUBMITS);
    r->results = calloc((size_t)r->n, sizeof(int));
    while (done < r->n) {
        while (sent < r->n && sent - done < r->window) {
            snprintf(id, sizeof(id), "j%d", sent);
            if (r->submit_batch > 0) {
                s_batch_add(&batch, id, sent);
                if (batch.n >= (uint32_t)r->submit_batch)
                    assert_int_equal(sl_wire_batch_send(sock, NULL, 0, &batch, 0), SL_OK);
            } else {
                cl_submit(sock, id, 64 + (uint32_t)(sent % 7) * 64, 4 + (uint32_t)(sent % 5),
                          sent & 1);
            }
            sent++;
        }
        assert_int_equal(sl_wire_batch_send(sock, NULL, 0, &batch, 0), SL_OK);
        sl_msg_t *m = cl_recv(sock, 30000);
        assert_non_null(m); /* no progress for 30 s is a failure */
        switch (m->body_case) {
        case SLUICE__ENVELOPE__BODY_ACCEPTED:
            r->accepted++;
            break;
        case SLUICE__ENVELOPE__BODY_BUSY:
            s_on_busy(sock, r, m->busy);
            break;
        case SLUICE__ENVELOPE__BODY_RESULT:
            s_on_result(c, r, m->result, &done, &killed);
            break;
        case SLUICE__ENVELOPE__BODY_RESULTS: {
            const Sluice__ResultBatch *b = m->results;
            assert_true(r->submit_batch > 0);
            r->accepted += (int)b->n_accepted;
            for (size_t i = 0; i < b->n_busy; i++)
                s_on_busy(sock, r, b->busy[i]);
            for (size_t i = 0; i < b->n_results; i++)
                s_on_result(c, r, b->results[i], &done, &killed);
            break;
        }
        case SLUICE__ENVELOPE__BODY_STATUS_REPLY:
            break; /* a late answer to a readiness poll (loaded host) */
        default:
            fail_msg("unexpected %s", sl_proto_body_name(m->body_case));
        }
        sl_proto_free(&m);
    }
    for (int k = 0; k < r->n; k++)
        assert_int_equal(r->results[k], 1);
    sl_wire_batch_fini(&batch);
    free(r->results);
}

static void s_20k_jobs(int submit_batch)
{
    static cl_t c;
    const char *sched_args[] = {"--log-level=warn", NULL};
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
     * again, in the form it was asked in. */
    {
        cl_submit(sock, "j0", 64, 4, 0);
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_SUBMITS);
        s_batch_add(&b, "j1", 1);
        assert_int_equal(sl_wire_batch_send(sock, NULL, 0, &b, 0), SL_OK);
        sl_wire_batch_fini(&b);
        int single_acc = 0, single_res = 0, batch_acc = 0, batch_res = 0;
        while (single_acc + single_res + batch_acc + batch_res < 4) {
            sl_msg_t *m = cl_recv(sock, 10000);
            assert_non_null(m);
            if (m->body_case == SLUICE__ENVELOPE__BODY_ACCEPTED) {
                assert_string_equal(m->accepted->job_id, "j0");
                single_acc++;
            } else if (m->body_case == SLUICE__ENVELOPE__BODY_RESULT) {
                assert_string_equal(m->result->job_id, "j0");
                assert_int_equal(m->result->status, SLUICE__RESULT_STATUS__RESULT_OK);
                single_res++;
            } else if (m->body_case == SLUICE__ENVELOPE__BODY_RESULTS) {
                for (size_t i = 0; i < m->results->n_accepted; i++, batch_acc++)
                    assert_string_equal(m->results->accepted[i], "j1");
                for (size_t i = 0; i < m->results->n_results; i++, batch_res++) {
                    assert_string_equal(m->results->results[i]->job_id, "j1");
                    assert_int_equal(m->results->results[i]->status,
                                     SLUICE__RESULT_STATUS__RESULT_OK);
                }
            }
            sl_proto_free(&m);
        }
        assert_int_equal(single_acc + single_res + batch_acc + batch_res, 4);
        assert_int_equal(single_acc, 1);
        assert_int_equal(batch_res, 1);
    }
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_completed"), 20000);
    assert_int_equal(cl_counter(st, "results_resent"), 2);
    assert_int_equal(cl_counter(st, "executors_lost"), 0);
    /* all three executors did work */
    for (size_t i = 0; i < st->status_reply->n_executors; i++)
        assert_true(st->status_reply->executors[i]->completed > 1000);
    sl_proto_free(&st);
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
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "executors_lost"), 1);
    assert_true(cl_counter(st, "jobs_requeued") >= r.requeued);
    assert_int_equal(st->status_reply->n_executors, 2);
    sl_proto_free(&st);
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
        sl_msg_t *m = cl_recv(sock, 3000);
        if (!m)
            return 0;
        int code = m->body_case == SLUICE__ENVELOPE__BODY_ERROR ? m->error->code : 0;
        sl_proto_free(&m);
        if (code)
            return code;
    }
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
        Sluice__Prompt p = SLUICE__PROMPT__INIT;
        Sluice__Job j = SLUICE__JOB__INIT;
        Sluice__Submit s = SLUICE__SUBMIT__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        uint8_t buf[512];
        p.length = 10;
        j.id = "truncated-one";
        j.prompt = &p;
        j.max_new_tokens = 4;
        s.job = &j;
        env.version = SL_PROTO_VERSION;
        env.body_case = SLUICE__ENVELOPE__BODY_SUBMIT;
        env.submit = &s;
        size_t len = sluice__envelope__pack(&env, buf);
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
        Sluice__Prompt p = SLUICE__PROMPT__INIT;
        Sluice__Job j = SLUICE__JOB__INIT;
        Sluice__Submit s = SLUICE__SUBMIT__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        p.length = 10;
        j.id = "bad-prio";
        j.prompt = &p;
        j.max_new_tokens = 4;
        j.priority = (Sluice__Priority)7;
        s.job = &j;
        env.body_case = SLUICE__ENVELOPE__BODY_SUBMIT;
        env.submit = &s;
        sl_wire_send(sock, NULL, 0, &env, 0);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_RANGE);
    }
    {
        Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        sl_wire_send(sock, NULL, 0, &env, 0);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_UNEXPECTED);
    }

    /* a SubmitBatch with a bad item in the middle: that item alone gets an
     * Error, the other two are accepted and run; an empty batch and one over
     * --max-msg-batch are refused whole */
    {
        sl_wire_batch_t b;
        sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_SUBMITS);
        Sluice__Prompt p = SLUICE__PROMPT__INIT;
        Sluice__Job j = SLUICE__JOB__INIT;
        Sluice__Submit sub = SLUICE__SUBMIT__INIT;
        p.length = 10;
        j.prompt = &p;
        j.max_new_tokens = 4;
        sub.job = &j;
        j.id = "bb-0";
        assert_int_equal(sl_wire_batch_add(&b, 1, &sub.base), SL_OK);
        j.id = "bb-1";
        j.max_new_tokens = 0; /* bad */
        assert_int_equal(sl_wire_batch_add(&b, 1, &sub.base), SL_OK);
        j.id = "bb-2";
        j.max_new_tokens = 4;
        assert_int_equal(sl_wire_batch_add(&b, 1, &sub.base), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, 0, &b, 0), SL_OK);
        int errors = 0, accepted = 0, results = 0;
        while (errors < 1 || accepted < 2 || results < 2) {
            sl_msg_t *m = cl_recv(sock, 10000);
            assert_non_null(m);
            if (m->body_case == SLUICE__ENVELOPE__BODY_ERROR) {
                assert_int_equal(m->error->code, SL_ERR_MSG_RANGE);
                errors++;
            } else {
                assert_int_equal(m->body_case, SLUICE__ENVELOPE__BODY_RESULTS);
                for (size_t i = 0; i < m->results->n_accepted; i++)
                    assert_string_not_equal(m->results->accepted[i], "bb-1");
                for (size_t i = 0; i < m->results->n_results; i++) {
                    assert_string_not_equal(m->results->results[i]->job_id, "bb-1");
                    assert_int_equal(m->results->results[i]->status,
                                     SLUICE__RESULT_STATUS__RESULT_OK);
                }
                accepted += (int)m->results->n_accepted;
                results += (int)m->results->n_results;
                assert_int_equal(m->results->n_busy, 0);
            }
            sl_proto_free(&m);
        }
        assert_int_equal(errors, 1);
        /* empty */
        Sluice__SubmitBatch empty = SLUICE__SUBMIT_BATCH__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        env.body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
        env.submits = &empty;
        sl_wire_send(sock, NULL, 0, &env, 0);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_MALFORMED);
        /* over --max-msg-batch (1024) */
        for (int i = 0; i < 1025; i++)
            assert_int_equal(sl_wire_batch_add(&b, 1, &sub.base), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, 0, &b, 0), SL_OK);
        assert_int_equal(s_expect_error(sock), SL_ERR_MSG_TOO_BIG);
        sl_wire_batch_fini(&b);
    }

    /* executor socket: garbage, oversized, and a heartbeat from a stranger */
    void *rogue = zmq_socket(c.zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(rogue, ZMQ_LINGER, &zero, sizeof(zero));
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
        Sluice__Heartbeat hb = SLUICE__HEARTBEAT__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        env.body_case = SLUICE__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        sl_wire_send(rogue, NULL, 0, &env, 0);
        assert_int_equal(s_expect_error(rogue), SL_ERR_NOT_FOUND);
    }
    {
        Sluice__Completion comp = SLUICE__COMPLETION__INIT;
        Sluice__Result res = SLUICE__RESULT__INIT;
        sl_msg_t env = SLUICE__ENVELOPE__INIT;
        comp.job_seq = 12345;
        comp.result = &res;
        env.body_case = SLUICE__ENVELOPE__BODY_COMPLETION;
        env.completion = &comp;
        sl_wire_send(rogue, NULL, 0, &env, 0);
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
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "msgs_rejected_client"), 9);
    assert_int_equal(cl_counter(st, "msgs_rejected_executor"), 2);
    assert_int_equal(cl_counter(st, "msgs_unknown_executor"), 2);
    sl_proto_free(&st);
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
        sl_msg_t *m = cl_recv(sock, 20000);
        assert_non_null(m);
        if (m->body_case == SLUICE__ENVELOPE__BODY_RESULT) {
            assert_int_equal(m->result->status, SLUICE__RESULT_STATUS__RESULT_OK);
            assert_int_equal(m->result->attempts, 1);
            assert_true(m->result->timings->end_us > 1500000);
            results++;
        }
        sl_proto_free(&m);
    }
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "executors_lost"), 0);
    assert_int_equal(cl_counter(st, "executors_joined"), 1);
    sl_proto_free(&st);
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
        sl_msg_t *m = NULL;
        char err[256];
        if (sl_wire_recv(sock, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)) !=
            SL_OK)
            continue;
        if (m->body_case == SLUICE__ENVELOPE__BODY_COMPLETIONS ||
            m->body_case == SLUICE__ENVELOPE__BODY_COMPLETION)
            quiet_until = sl_clock_now() + SL_MS(timeout_ms);
        if (m->body_case == SLUICE__ENVELOPE__BODY_COMPLETIONS) {
            for (size_t i = 0; i < m->completions->n_completions; i++) {
                uint64_t seq = m->completions->completions[i]->job_seq;
                assert_true(seq < 256);
                seen[seq]++;
            }
        } else if (m->body_case == SLUICE__ENVELOPE__BODY_COMPLETION) {
            assert_true(m->completion->job_seq < 256);
            seen[m->completion->job_seq]++;
        }
        sl_proto_free(&m);
    }
}

static void s_dispatch_add(sl_wire_batch_t *b, uint64_t seq, uint32_t max_new)
{
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Dispatch d = SLUICE__DISPATCH__INIT;
    char id[32];
    snprintf(id, sizeof(id), "x%llu", (unsigned long long)seq);
    p.length = 16;
    j.id = id;
    j.prompt = &p;
    j.max_new_tokens = max_new;
    d.job = &j;
    d.job_seq = seq;
    d.attempt = 1;
    assert_int_equal(sl_wire_batch_add(b, 1, &d.base), SL_OK);
}

/* A real executor against a scripted scheduler: a DispatchBatch with a bad
 * item runs the others; a batch over --max-msg-batch is refused whole; a
 * single Dispatch still works. */
static void test_executor_dispatch_batch(void **state)
{
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--max-msg-batch=8", "--log-level=error", NULL};
    cl_init(&c, "xbatch");
    void *sched = zmq_socket(c.zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(sched, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(sched, c.exec_ep), 0);
    cl_executor(&c, "x1", exec_args);
    sl_wire_ident_t who;
    sl_msg_t *m = NULL;
    char err[256];
    for (;;) { /* its hello */
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, 10000), 1);
        assert_int_equal(sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, &who, &m, err,
                                      sizeof(err)),
                         SL_OK);
        int hello = m->body_case == SLUICE__ENVELOPE__BODY_HELLO;
        sl_proto_free(&m);
        if (hello)
            break;
    }
    Sluice__Welcome w = SLUICE__WELCOME__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    w.heartbeat_ms = 100;
    env.body_case = SLUICE__ENVELOPE__BODY_WELCOME;
    env.welcome = &w;
    assert_int_equal(sl_wire_send(sched, who.data, who.len, &env, 0), SL_OK);

    static int seen[256];
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SLUICE__ENVELOPE__BODY_DISPATCHES);
    s_dispatch_add(&b, 1, 2);
    s_dispatch_add(&b, 2, 0); /* bad: no new tokens */
    s_dispatch_add(&b, 3, 2);
    assert_int_equal(sl_wire_batch_send(sched, who.data, who.len, &b, 0), SL_OK);
    for (int i = 0; i < 9; i++) /* over --max-msg-batch */
        s_dispatch_add(&b, 10 + (uint64_t)i, 2);
    assert_int_equal(sl_wire_batch_send(sched, who.data, who.len, &b, 0), SL_OK);
    {
        Sluice__Prompt p = SLUICE__PROMPT__INIT;
        Sluice__Job j = SLUICE__JOB__INIT;
        Sluice__Dispatch d = SLUICE__DISPATCH__INIT;
        p.length = 16;
        j.id = "x100";
        j.prompt = &p;
        j.max_new_tokens = 2;
        d.job = &j;
        d.job_seq = 100;
        env.body_case = SLUICE__ENVELOPE__BODY_DISPATCH;
        env.dispatch = &d;
        assert_int_equal(sl_wire_send(sched, who.data, who.len, &env, 0), SL_OK);
    }
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
            sl_msg_t *m = cl_recv(sock, 10000);
            assert_non_null(m);
            if (m->body_case == SLUICE__ENVELOPE__BODY_RESULT) {
                const Sluice__Result *r = m->result;
                assert_string_equal(r->job_id, id);
                if (r->status == SLUICE__RESULT_STATUS__RESULT_OK) {
                    ok++;
                } else {
                    assert_int_equal(r->status, SLUICE__RESULT_STATUS__RESULT_FAILED);
                    assert_string_equal(r->executor, "bad");
                    if (!strstr(r->error, "injected failure"))
                        fail_msg("failure says \"%s\"", r->error);
                    failed++;
                    last_failure = k;
                }
                sl_proto_free(&m);
                break;
            }
            assert_int_equal(m->body_case, SLUICE__ENVELOPE__BODY_ACCEPTED);
            sl_proto_free(&m);
        }
    }
    print_message("failures %d (last at job %d), ok %d\n", failed, last_failure, ok);
    assert_int_equal(failed, 3); /* the third quarantines it */
    assert_int_equal(ok, 27);
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_failed"), 3);
    assert_int_equal(cl_counter(st, "jobs_completed"), 27);
    assert_int_equal(cl_counter(st, "executors_quarantined"), 1);
    for (size_t i = 0; i < st->status_reply->n_executors; i++) {
        const Sluice__ExecutorStatus *e = st->status_reply->executors[i];
        int bad = strcmp(e->name, "bad") == 0;
        assert_int_equal(e->quarantined, bad);
        assert_int_equal(e->failed, bad ? 3 : 0);
        if (bad)
            assert_int_equal(e->completed, 0);
    }
    sl_proto_free(&st);

    /* `sluice status` marks it */
    static char out[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice status --endpoint %s --wait-timeout-ms 10000",
             sl_test_bin(), c.client_ep);
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
