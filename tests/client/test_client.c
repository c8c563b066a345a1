/*
 * libsluice against a fake scheduler: a ROUTER socket on loopback served by
 * a thread that answers by a script (BUSY a number of times, then Accepted
 * and a Result; or silence for the first send), so retries, resends, result
 * delivery, streaming and status are checked through a real ZeroMQ socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/client.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/sl_clock.h"
#include "proto/sl_wire.h"

#define S_MAX_IDS 512

typedef struct fake {
    void *ctx;                      /* server's context */
    void *sock;                     /* ROUTER */
    char endpoint[128];             /* where it listens */
    pthread_t thread;               /* serving thread */
    atomic_int stop;                /* asks the thread to end */
    int busy_first;                 /* answer BUSY to the first n submits of an id */
    uint32_t retry_after_ms;        /* carried by each BUSY */
    int busy_reason;                /* carried by each BUSY (0 = overload) */
    int silent_first;               /* ignore the first submit of an id */
    int no_result;                  /* accept but never send a Result */
    int refuse;                     /* answer an Error naming the job (refused for good) */
    int anon_error;                 /* send an Error naming no job before answering */
    int dup_chunks;                 /* stream the tokens again and overlapping as well */
    char ids[S_MAX_IDS][130];       /* ids seen */
    int count[S_MAX_IDS];           /* submits received per id */
    sl_time_t first_ns[S_MAX_IDS];  /* receipt of the first submit */
    sl_time_t second_ns[S_MAX_IDS]; /* receipt of the second submit */
    int n_ids;                      /* entries used */
    atomic_int results;             /* Results sent */
    atomic_int cancels;             /* Cancels received */
    atomic_int batches;             /* SubmitBatch messages received */
    atomic_int batched;             /* submits that came in a SubmitBatch */
} fake_t;

/* Send b to who (a batch of answers). */
static void s_send(fake_t *f, const sl_wire_ident_t *who, sl_wire_batch_t *b)
{
    assert_int_equal(sl_wire_batch_send(f->sock, who, b, 0), SL_OK);
}

static void s_answer_submit(fake_t *f, const sl_wire_ident_t *who, const sl_job_desc_t *job)
{
    int i;
    for (i = 0; i < f->n_ids; i++)
        if (!strcmp(f->ids[i], job->id))
            break;
    if (i == f->n_ids) {
        assert_true(f->n_ids < S_MAX_IDS);
        snprintf(f->ids[i], sizeof(f->ids[i]), "%s", job->id);
        f->n_ids++;
    }
    int n = ++f->count[i];
    if (n == 1)
        f->first_ns[i] = sl_clock_now();
    if (n == 2)
        f->second_ns[i] = sl_clock_now();
    if (f->silent_first && n == 1)
        return;
    if (f->refuse || f->anon_error) {
        sl_wire_error_t e = {
            .code = f->refuse ? SL_ERR_NO_EXECUTOR : SL_ERR_MSG_RANGE,
            .message = f->refuse ? "prompt 4 + 16 new tokens exceed every executor's context "
                                   "(largest 8)"
                                 : "something else was wrong",
            .job_id = f->refuse ? job->id : "",
        };
        assert_int_equal(sl_wire_error_send(f->sock, who, &e, 0), SL_OK);
        if (f->refuse)
            return;
    }
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_RESULTS);
    if (n <= f->busy_first) {
        sl_wire_busy_t busy = {.job_id = job->id,
                               .retry_after_ms = f->retry_after_ms,
                               .reason = (sl_busy_reason_t)f->busy_reason,
                               .detail = "fake overload"};
        assert_int_equal(sl_wire_busy_add(&b, &busy), SL_OK);
        s_send(f, who, &b);
        sl_wire_batch_fini(&b);
        return;
    }
    assert_int_equal(sl_wire_accepted_add(&b, job->id), SL_OK);
    sl_wire_results_set_depth(&b, 3);
    s_send(f, who, &b);
    if (f->no_result) {
        sl_wire_batch_fini(&b);
        return;
    }
    uint32_t tokens[3] = {7, 8, 9};
    if (job->stream) {
        sl_wire_chunk_t ch = {.job_id = job->id, .offset = 0, .tokens = tokens, .n_tokens = 2};
        assert_int_equal(sl_wire_chunk_send(f->sock, who, &ch, 0), SL_OK);
        if (f->dup_chunks) { /* the same again, then one overlapping the end */
            assert_int_equal(sl_wire_chunk_send(f->sock, who, &ch, 0), SL_OK);
            sl_wire_chunk_t tail = {
                .job_id = job->id, .offset = 1, .tokens = tokens + 1, .n_tokens = 2};
            assert_int_equal(sl_wire_chunk_send(f->sock, who, &tail, 0), SL_OK);
        }
    }
    sl_wire_result_t res = {
        .job_id = job->id,
        .status = SL_JOB_OK,
        .tokens = tokens,
        .n_tokens = 3,
        .has_timings = true,
        .timings = {.queued_us = 10,
                    .ttft_us = 100,
                    .end_us = 300,
                    .prompt_tokens = job->prompt_tokens,
                    .output_tokens = 3},
        .executor = "fake-exec",
        .attempts = 1,
    };
    assert_int_equal(sl_wire_result_add(&b, &res), SL_OK);
    s_send(f, who, &b);
    sl_wire_batch_fini(&b);
    atomic_fetch_add(&f->results, 1);
}

static void s_answer_status(fake_t *f, const sl_wire_ident_t *who)
{
    sl_wire_exec_status_t e[2] = {
        {.name = "e0",
         .alive = true,
         .slots = 8,
         .inflight = 4,
         .has_load = true,
         .load = {.running_jobs = 4,
                  .busy = 0.75f,
                  .has_gpu_util = 1,
                  .gpu_util = 0.5f,
                  .cpu_util = 0.3f, /* not measured (has_cpu_util 0): must read as unknown */
                  .has_gpu_mem = 1,
                  .gpu_mem_used = 1ull << 30,
                  .gpu_mem_total = 80ull << 30}},
        {.name = "e1", .backend = "null"},
    };
    sl_wire_counter_t cnt = {.name = "jobs_accepted", .value = 42};
    sl_wire_status_t r = {.n_executors = 2,
                          .n_counters = 1,
                          .queued_interactive = 5,
                          .queued_batch = 6,
                          .inflight = 7,
                          .policy = "p2c"};
    assert_int_equal(sl_wire_status_reply_send(f->sock, who, &r, e, &cnt, 0), SL_OK);
}

static void *s_serve(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t item = {.socket = f->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, 20) <= 0)
            continue;
        sl_wire_ident_t who;
        sl_wire_msg_t *m = NULL;
        char err[256];
        if (sl_wire_recv(f->sock, 1, ZMQ_DONTWAIT, &sl_proto_limits_default, &who, &m, err,
                         sizeof(err)) != SL_OK)
            continue;
        sl_wire_kind_t kind = sl_wire_msg_kind(m);
        if (kind == SL_WIRE_SUBMITS) {
            atomic_fetch_add(&f->batches, 1);
            for (uint32_t k = 0; k < sl_wire_msg_count(m); k++) {
                sl_job_desc_t job;
                assert_int_equal(
                    sl_wire_submit_get(m, k, &sl_proto_limits_default, &job, err, sizeof(err)),
                    SL_OK);
                atomic_fetch_add(&f->batched, 1);
                s_answer_submit(f, &who, &job);
            }
        } else if (kind == SL_WIRE_STATUS_REQUEST) {
            s_answer_status(f, &who);
        } else if (kind == SL_WIRE_CANCEL) {
            atomic_fetch_add(&f->cancels, 1);
        }
        sl_wire_msg_free(&m);
    }
    return NULL;
}

static fake_t *s_fake_start_at(const char *endpoint, int busy_first, uint32_t retry_after_ms,
                               int silent_first)
{
    fake_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->busy_first = busy_first;
    f->retry_after_ms = retry_after_ms;
    f->silent_first = silent_first;
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &linger, sizeof(linger));
    assert_int_equal(zmq_bind(f->sock, endpoint), 0);
    size_t len = sizeof(f->endpoint);
    assert_int_equal(zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &len), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, s_serve, f), 0);
    return f;
}

static fake_t *s_fake_start(int busy_first, uint32_t retry_after_ms, int silent_first)
{
    return s_fake_start_at("tcp://127.0.0.1:*", busy_first, retry_after_ms, silent_first);
}

static void s_fake_stop(fake_t **f_p)
{
    fake_t *f = *f_p;
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    free(f);
    *f_p = NULL;
}

static void s_cfg(sl_client_cfg_t *cfg, const fake_t *f)
{
    sl_client_cfg_default(cfg);
    cfg->insecure = true; /* the fake scheduler is plain text */
    snprintf(cfg->endpoint, sizeof(cfg->endpoint), "%s", f->endpoint);
    cfg->backoff.base_ms = 20;
    cfg->backoff.cap_ms = 100;
    cfg->wait_timeout_ms = 10000;
    cfg->ack_timeout_ms = 2000;
    cfg->seed = 1;
}

static const uint32_t s_prompt[4] = {1, 2, 3, 4};

static sl_job_spec_t s_job(const char *id)
{
    sl_job_spec_t job = {
        .id = id,
        .tenant = "t",
        .token_ids = s_prompt,
        .n_token_ids = 4,
        .max_new_tokens = 3,
    };
    return job;
}

/* BUSY, then Accepted and a Result: one retry after the backoff, one result. */
static void test_busy_then_result(void **state)
{
    fake_t *f = s_fake_start(1, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-busy-1");
    int marker = 5;
    job.user = &marker;
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_non_null(r);
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->result_status, SL_RESULT_OK);
    assert_string_equal(r->job_id, "job-busy-1");
    assert_int_equal(r->busy_count, 1);
    assert_int_equal(r->sends, 2);
    assert_int_equal(r->n_tokens, 3);
    assert_int_equal(r->tokens[2], 9);
    assert_int_equal(r->timings.ttft_us, 100);
    assert_int_equal(r->timings.prompt_tokens, 4);
    assert_int_equal(r->queue_depth, 3);
    assert_string_equal(r->executor, "fake-exec");
    assert_ptr_equal(r->user, &marker);
    assert_true(r->accept_ns >= r->submit_ns && r->end_ns >= r->accept_ns);
    /* The retry waited at least the first backoff window's low edge (20 ms). */
    assert_true(f->second_ns[0] - f->first_ns[0] >= SL_MS(19));
    assert_int_equal(sl_client_pending(c), 0);
    sl_client_stats_t st;
    sl_client_stats(c, &st);
    assert_int_equal(st.busy, 1);
    assert_int_equal(st.sends, 2);
    assert_int_equal(st.completed, 1);
    sl_result_destroy(&r);
    assert_null(r);
    sl_client_destroy(&c);
    assert_null(c);
    s_fake_stop(&f);
}

/* Always BUSY: bounded retries, then SL_ERR_RETRIES with the reason. */
static void test_retries_exhausted(void **state)
{
    fake_t *f = s_fake_start(1000, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    cfg.backoff.base_ms = 5;
    cfg.backoff.max_retries = 3;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-always-busy");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_RETRIES);
    assert_int_equal(r->result_status, SL_RESULT_NONE);
    assert_int_equal(r->busy_count, 4);
    assert_int_equal(r->sends, 4);
    assert_non_null(strstr(r->error, "fake overload"));
    assert_non_null(strstr(r->error, "gave up after 3 retries"));
    sl_result_destroy(&r);
    /* With no retries configured BUSY is reported at once. */
    sl_client_destroy(&c);
    cfg.backoff.max_retries = 0;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    job.id = "job-no-retry";
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_BUSY);
    assert_int_equal(r->sends, 1);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* Two clients configured with the same seed, connected at once, are two
 * peers: each gets its own answer (their routing ids must differ). */
static void test_same_seed_clients(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *a = NULL, *b = NULL;
    sl_result_t *ra = NULL, *rb = NULL;
    s_cfg(&cfg, f);
    cfg.wait_timeout_ms = 3000;
    assert_int_equal(sl_client_create(&cfg, &a), SL_OK);
    assert_int_equal(sl_client_create(&cfg, &b), SL_OK);
    sl_job_spec_t ja = s_job("job-seed-a"), jb = s_job("job-seed-b");
    assert_int_equal(sl_client_submit(a, &ja, &ra), SL_OK);
    assert_int_equal(sl_client_submit(b, &jb, &rb), SL_OK);
    assert_int_equal(ra->status, SL_OK);
    assert_int_equal(rb->status, SL_OK);
    sl_result_destroy(&ra);
    sl_result_destroy(&rb);
    sl_client_destroy(&a);
    sl_client_destroy(&b);
    s_fake_stop(&f);
}

/* A retry-after longer than the backoff is the floor of the wait. */
static void test_retry_after(void **state)
{
    fake_t *f = s_fake_start(1, 150, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    cfg.backoff.base_ms = 1;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-retry-after");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_true(f->second_ns[0] - f->first_ns[0] >= SL_MS(149));
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* An unanswered Submit is resent after the ack timeout (same id, same job). */
static void test_resend_unanswered(void **state)
{
    fake_t *f = s_fake_start(0, 0, 1);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    cfg.ack_timeout_ms = 50;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-resend");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->sends, 2);
    assert_int_equal(f->count[0], 2);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* Nobody listening: the ack retries run out and the job ends in SL_ERR_TIMEOUT. */
static void test_no_scheduler(void **state)
{
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    sl_client_cfg_default(&cfg);
    cfg.insecure = true;
    snprintf(cfg.endpoint, sizeof(cfg.endpoint), "tcp://127.0.0.1:1");
    cfg.ack_timeout_ms = 20;
    cfg.ack_retries = 2;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-nobody");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_TIMEOUT);
    sl_result_destroy(&r);
    /* Status times out within wait-timeout-ms. */
    sl_client_destroy(&c);
    cfg.wait_timeout_ms = 50;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_cluster_status_t *st = NULL;
    assert_int_equal(sl_client_status(c, &st), SL_ERR_TIMEOUT);
    assert_null(st);
    sl_client_destroy(&c);
}

/* Many jobs in flight, completions collected by poll, each exactly once. */
static void test_async_many(void **state)
{
    enum { N = 300 };
    fake_t *f = s_fake_start(0, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    s_cfg(&cfg, f);
    cfg.max_inflight = N;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "async-%d", i);
        sl_job_spec_t job = s_job(ids[i]);
        job.user = (void *)(intptr_t)(i + 1);
        assert_int_equal(sl_client_submit_async(c, &job), SL_OK);
    }
    sl_job_spec_t extra = s_job("async-extra");
    assert_int_equal(sl_client_submit_async(c, &extra), SL_ERR_AGAIN); /* at max-inflight */
    sl_job_spec_t dup = s_job("async-0");
    assert_int_equal(sl_client_submit_async(c, &dup), SL_ERR_EXISTS);
    int fd = -1;
    assert_int_equal(sl_client_fd(c, &fd), SL_OK);
    assert_true(fd >= 0);
    static char seen[N];
    memset(seen, 0, sizeof(seen));
    for (int got = 0; got < N;) {
        sl_result_t *r = NULL;
        sl_status_t st = sl_client_poll(c, 5000, &r);
        assert_int_equal(st, SL_OK);
        int i = (int)(intptr_t)r->user - 1;
        assert_true(i >= 0 && i < N);
        assert_int_equal(seen[i], 0);
        assert_string_equal(r->job_id, ids[i]);
        assert_int_equal(r->status, SL_OK);
        seen[i] = 1;
        got++;
        sl_result_destroy(&r);
    }
    sl_result_t *r = NULL;
    assert_int_equal(sl_client_poll(c, 0, &r), SL_ERR_TIMEOUT);
    assert_int_equal(sl_client_pending(c), 0);
    assert_int_equal(sl_client_next_timeout_ms(c), -1);
    /* Submitted before the first poll: one full batch of 256, then the rest. */
    assert_int_equal(atomic_load(&f->batched), N);
    assert_int_equal(atomic_load(&f->batches), 2);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* Submits queued until a flush go as one SubmitBatch; a ResultBatch answers
 * them, and a bad item in it is counted and dropped while the others count. */
static void test_result_batch_bad_item(void **state)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    char ep[128];
    size_t len = sizeof(ep);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    assert_int_equal(zmq_bind(sock, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_client_cfg_default(&cfg);
    cfg.insecure = true;
    snprintf(cfg.endpoint, sizeof(cfg.endpoint), "%s", ep);
    cfg.seed = 1;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t a = s_job("rb-a"), b = s_job("rb-b");
    assert_int_equal(sl_client_submit_async(c, &a), SL_OK);
    assert_int_equal(sl_client_submit_async(c, &b), SL_OK);
    assert_int_equal(sl_client_next_timeout_ms(c), 0); /* queued, not sent */
    assert_int_equal(sl_client_flush(c), SL_OK);

    sl_wire_ident_t who;
    sl_wire_msg_t *m = NULL;
    char err[256];
    zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&item, 1, 5000), 1);
    assert_int_equal(sl_wire_recv(sock, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)),
                     SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_msg_count(m), 2);
    sl_job_desc_t jd;
    assert_int_equal(sl_wire_submit_get(m, 0, &sl_proto_limits_default, &jd, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(jd.id, "rb-a");
    assert_int_equal(sl_wire_submit_get(m, 1, &sl_proto_limits_default, &jd, err, sizeof(err)),
                     SL_OK);
    assert_string_equal(jd.id, "rb-b");
    sl_wire_msg_free(&m);

    /* Accepted for both; a good Result for a, a bad one (unknown status) for b. */
    sl_wire_result_t res[2] = {{.job_id = "rb-a", .executor = "e"},
                               {.job_id = "rb-b", .status = (sl_job_status_t)99}};
    sl_wire_batch_t batch;
    sl_wire_batch_init(&batch, SL_WIRE_RESULTS);
    assert_int_equal(sl_wire_accepted_add(&batch, "rb-a"), SL_OK);
    assert_int_equal(sl_wire_accepted_add(&batch, "rb-b"), SL_OK);
    assert_int_equal(sl_wire_result_add(&batch, &res[0]), SL_OK);
    assert_int_equal(sl_wire_result_add(&batch, &res[1]), SL_OK);
    sl_wire_results_set_depth(&batch, 9);
    assert_int_equal(sl_wire_batch_send(sock, &who, &batch, 0), SL_OK);
    sl_wire_batch_fini(&batch);

    sl_result_t *r = NULL;
    assert_int_equal(sl_client_poll(c, 5000, &r), SL_OK);
    assert_string_equal(r->job_id, "rb-a");
    assert_int_equal(r->status, SL_OK);
    assert_string_equal(r->executor, "e");
    assert_int_equal(r->queue_depth, 9);
    sl_result_destroy(&r);
    assert_int_equal(sl_client_poll(c, 50, &r), SL_ERR_TIMEOUT);
    assert_int_equal(sl_client_pending(c), 1); /* b: accepted, its result was dropped */
    sl_client_stats_t stats;
    sl_client_stats(c, &stats);
    assert_int_equal(stats.accepted, 2);
    assert_int_equal(stats.errors, 1);
    assert_int_equal(stats.sends, 2);
    sl_client_destroy(&c);
    zmq_close(sock);
    zmq_ctx_term(ctx);
}

static int s_chunks;
static void s_on_chunk(void *arg, const char *id, uint32_t offset, const uint32_t *tokens, size_t n)
{
    assert_string_equal(id, "job-stream");
    assert_int_equal(offset, 0);
    assert_int_equal(n, 2);
    assert_int_equal(tokens[0], 7);
    s_chunks++;
}

static void test_stream_and_status(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_client_set_chunk_cb(c, s_on_chunk, NULL);
    sl_job_spec_t job = s_job("job-stream");
    job.stream = true;
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(s_chunks, 1);
    assert_true(r->first_token_ns >= r->submit_ns);
    sl_result_destroy(&r);

    sl_cluster_status_t *st = NULL;
    assert_int_equal(sl_client_status(c, &st), SL_OK);
    assert_int_equal(st->n_executors, 2);
    assert_string_equal(st->executors[0].name, "e0");
    assert_int_equal(st->executors[0].running_jobs, 4);
    assert_true(st->executors[0].busy == 0.75f);
    assert_true(st->executors[0].has_gpu_util);
    assert_true(st->executors[0].gpu_util == 0.5f);
    assert_false(st->executors[0].has_cpu_util);
    assert_true(st->executors[0].cpu_util == 0.0f);
    assert_true(st->executors[0].has_gpu_mem);
    assert_int_equal(st->executors[0].gpu_mem_total, 80ull << 30);
    assert_false(st->executors[1].has_gpu_util); /* no load at all: unknown */
    assert_true(st->executors[0].alive);
    assert_string_equal(st->executors[1].backend, "null");
    assert_int_equal(st->n_counters, 1);
    assert_int_equal(st->counters[0].value, 42);
    assert_int_equal(st->queued_interactive, 5);
    assert_int_equal(st->queued_batch, 6);
    assert_int_equal(st->inflight, 7);
    assert_string_equal(st->policy, "p2c");
    sl_cluster_status_destroy(&st);
    assert_null(st);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

static uint32_t s_streamed[8]; /* tokens handed to s_on_chunk_once, by offset */
static uint32_t s_n_streamed;  /* the offset past the last of them */

static void s_on_chunk_once(void *arg, const char *id, uint32_t offset, const uint32_t *tokens,
                            size_t n)
{
    (void)arg, (void)id;
    assert_int_equal(offset, s_n_streamed); /* each offset once, in order */
    assert_true(offset + n <= 8);
    memcpy(s_streamed + offset, tokens, n * sizeof(*tokens));
    s_n_streamed = offset + (uint32_t)n;
}

/* Chunks that repeat offsets (not what a scheduler sends; a defence) reach
 * the callback once: a duplicate is dropped, an overlapping one trimmed. */
static void test_stream_offsets_once(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    f->dup_chunks = 1;
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_client_set_chunk_cb(c, s_on_chunk_once, NULL);
    sl_job_spec_t job = s_job("job-dup");
    job.stream = true;
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(s_n_streamed, 3);
    assert_int_equal(s_streamed[0], 7);
    assert_int_equal(s_streamed[1], 8);
    assert_int_equal(s_streamed[2], 9);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* An invalid job is refused before anything is sent. */
static void test_invalid_jobs(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-bad");
    job.max_new_tokens = 0;
    assert_int_equal(sl_client_submit_async(c, &job), SL_ERR_INVALID);
    assert_non_null(strstr(sl_client_last_error(c), "max_new_tokens"));
    job = s_job(NULL);
    assert_int_equal(sl_client_submit_async(c, &job), SL_ERR_INVALID);
    char long_id[200];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    job = s_job(long_id);
    assert_int_equal(sl_client_submit_async(c, &job), SL_ERR_INVALID);
    job = s_job("job-empty");
    job.n_token_ids = 0;
    job.token_ids = NULL;
    assert_int_equal(sl_client_submit_async(c, &job), SL_ERR_INVALID);
    assert_int_equal(sl_client_pending(c), 0);
    assert_int_equal(sl_client_cancel(c, "nope"), SL_ERR_NOT_FOUND);
    sl_client_destroy(&c);
    sl_client_destroy(&c); /* NULL-safe */
    sl_client_cfg_default(&cfg);
    cfg.max_inflight = 0;
    assert_int_equal(sl_client_create(&cfg, &c), SL_ERR_INVALID);
    assert_null(c);
    /* neither keys nor an explicit insecure: refused, naming both flags */
    sl_client_cfg_default(&cfg);
    assert_int_equal(sl_client_create(&cfg, &c), SL_ERR_INVALID);
    assert_null(c);
    /* a key directory without the pair */
    snprintf(cfg.key_dir, sizeof(cfg.key_dir), "/nonexistent-sluice-keys");
    assert_int_equal(sl_client_create(&cfg, &c), SL_ERR_INVALID);
    assert_null(c);
    s_fake_stop(&f);
}

/* Result timeout: an accepted job with no Result ends in SL_ERR_TIMEOUT and is canceled. */
static void test_result_timeout_and_reconnect(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    f->no_result = 1;
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    cfg.result_timeout_ms = 100;
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("job-lost");
    assert_int_equal(sl_client_submit_async(c, &job), SL_OK);
    /* Reconnect while pending: the job is resubmitted on the new socket. */
    sl_time_t t0 = sl_clock_now();
    while (f->count[0] < 1 && sl_clock_now() - t0 < SL_MS(5000))
        sl_client_poll(c, 10, &r);
    assert_int_equal(sl_client_reconnect(c), SL_OK);
    assert_int_equal(sl_client_poll(c, 5000, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_TIMEOUT);
    assert_true(r->accept_ns > 0);
    assert_int_equal(f->count[0], 2);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    t0 = sl_clock_now();
    while (atomic_load(&f->cancels) < 1 && sl_clock_now() - t0 < SL_MS(5000))
        sl_clock_sleep(SL_MS(5));
    assert_int_equal(atomic_load(&f->cancels), 1);
    s_fake_stop(&f);
}

/*
 * A job accepted by a fake scheduler that never answers it; that scheduler
 * stops and a new one starts on the same endpoint, answering BUSY busy times
 * (retry-after ra_ms) before it runs jobs. *c_p is the client; returns the
 * new fake.
 */
static fake_t *s_restart_mid_job(const char *id, int busy, uint32_t ra_ms, sl_client_t **c_p)
{
    fake_t *f = s_fake_start(0, 0, 0);
    f->no_result = 1;
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    char endpoint[128];
    snprintf(endpoint, sizeof(endpoint), "%s", f->endpoint);
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job(id);
    assert_int_equal(sl_client_submit_async(c, &job), SL_OK);
    sl_time_t t0 = sl_clock_now();
    while (f->count[0] < 1 && sl_clock_now() - t0 < SL_MS(5000))
        assert_int_equal(sl_client_poll(c, 10, &r), SL_ERR_TIMEOUT);
    assert_int_equal(sl_client_poll(c, 50, &r), SL_ERR_TIMEOUT); /* accepted, no result */
    s_fake_stop(&f);
    *c_p = c;
    return s_fake_start_at(endpoint, busy, ra_ms, 0);
}

/*
 * The scheduler restarts (without the job) while a job is accepted: when the
 * link comes back the client resubmits the pending id and gets its result.
 */
static void test_resubmit_after_restart(void **state)
{
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    fake_t *f = s_restart_mid_job("job-restart", 0, 0, &c);
    assert_int_equal(sl_client_poll(c, 10000, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_string_equal(r->job_id, "job-restart");
    assert_int_equal(r->sends, 2);
    sl_client_stats_t st;
    sl_client_stats(c, &st);
    assert_int_equal(st.reconnects, 1);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/*
 * The scheduler restarts while a job is accepted and answers the
 * resubmission BUSY (no executor has rejoined yet): the client backs off and
 * sends again instead of waiting for ever (it used to drop that BUSY as a
 * late answer to an accepted job, and hung).
 */
static void test_busy_after_restart_retried(void **state)
{
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    fake_t *f = s_restart_mid_job("job-restart-busy", 2, 30, &c); /* BUSY twice, then run it */
    assert_int_equal(sl_client_poll(c, 10000, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_string_equal(r->job_id, "job-restart-busy");
    assert_int_equal(r->busy_count, 2);
    assert_int_equal(r->sends, 4); /* the first, the resubmission, two retries */
    assert_int_equal(f->count[0], 3);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/*
 * A BUSY for a deadline the scheduler cannot meet, with no retry-after, is
 * not retried: the job completes at once with SL_ERR_BUSY and the reason.
 * With a retry-after (a scheduler from before) it is retried as any BUSY.
 */
static void test_deadline_busy_not_retried(void **state)
{
    fake_t *f = s_fake_start(3, 0, 0);
    f->busy_reason = SL_BUSY_DEADLINE;
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("hopeless");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_BUSY);
    assert_int_equal(r->busy_count, 1);
    assert_int_equal(r->sends, 1);
    if (!strstr(r->error, "not retried: the deadline cannot be met"))
        fail_msg("error: %s", r->error);
    sl_result_destroy(&r);
    assert_int_equal(f->count[0], 1);
    f->retry_after_ms = 10;
    job = s_job("hopeful");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    assert_int_equal(r->busy_count, 3);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* An Error naming a submitted job refuses it for good: the job ends at
 * once with the scheduler's code and reason, after one send (it used to
 * wait for its timeouts and resend). An Error naming no job ends nothing. */
static void test_refused_by_error(void **state)
{
    fake_t *f = s_fake_start(0, 0, 0);
    f->refuse = 1;
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_result_t *r = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    sl_job_spec_t job = s_job("too-long");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_ERR_NO_EXECUTOR);
    assert_string_equal(r->error, "prompt 4 + 16 new tokens exceed every executor's context "
                                  "(largest 8)");
    assert_int_equal(r->sends, 1);
    sl_result_destroy(&r);
    assert_int_equal(sl_client_pending(c), 0);
    f->refuse = 0;
    f->anon_error = 1;
    job = s_job("fine");
    assert_int_equal(sl_client_submit(c, &job, &r), SL_OK);
    assert_int_equal(r->status, SL_OK);
    sl_result_destroy(&r);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

/* Event-loop use: poll(2) on the client's descriptor, then drain with a zero timeout. */
static void test_fd_event_loop(void **state)
{
    enum { N = 50 };
    fake_t *f = s_fake_start(0, 0, 0);
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    s_cfg(&cfg, f);
    assert_int_equal(sl_client_create(&cfg, &c), SL_OK);
    int fd = -1;
    assert_int_equal(sl_client_fd(c, &fd), SL_OK);
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "fd-%d", i);
        sl_job_spec_t job = s_job(ids[i]);
        assert_int_equal(sl_client_submit_async(c, &job), SL_OK);
    }
    int got = 0;
    sl_time_t deadline = sl_clock_now() + SL_MS(10000);
    while (got < N && sl_clock_now() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int t = sl_client_next_timeout_ms(c);
        poll(&pfd, 1, t < 0 || t > 100 ? 100 : t);
        sl_result_t *r = NULL;
        while (sl_client_poll(c, 0, &r) == SL_OK) {
            assert_int_equal(r->status, SL_OK);
            got++;
            sl_result_destroy(&r);
        }
    }
    assert_int_equal(got, N);
    sl_client_destroy(&c);
    s_fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_then_result),
        cmocka_unit_test(test_retries_exhausted),
        cmocka_unit_test(test_same_seed_clients),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_resend_unanswered),
        cmocka_unit_test(test_no_scheduler),
        cmocka_unit_test(test_async_many),
        cmocka_unit_test(test_stream_and_status),
        cmocka_unit_test(test_stream_offsets_once),
        cmocka_unit_test(test_invalid_jobs),
        cmocka_unit_test(test_result_timeout_and_reconnect),
        cmocka_unit_test(test_resubmit_after_restart),
        cmocka_unit_test(test_busy_after_restart_retried),
        cmocka_unit_test(test_deadline_busy_not_retried),
        cmocka_unit_test(test_fd_event_loop),
        cmocka_unit_test(test_refused_by_error),
        cmocka_unit_test(test_result_batch_bad_item),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
