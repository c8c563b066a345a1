/*
 * Pipeline stages end to end in one process: the ref model's first half in
 * an engine (continuous batching, chunked prefill) whose backend hands every
 * step to the second half over UCX (tcp; two transport engines, the second
 * stage on a thread of its own as it would be in its own executor), against
 * one engine holding the whole model: 50 prompts give the same tokens. Then
 * the second stage stops answering: the first stage's steps time out and
 * every job fails once, none hangs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sluice/xport.h>

#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/sl_engine.h"
#include "executor/sl_exec_stage.h"
#include "tests/support/sl_test.h"

#define N_PROMPTS 50
#define MAX_NEW 12

typedef struct run {
    sl_engine_job_t jobs[N_PROMPTS];
    uint32_t prompts[N_PROMPTS][64];
    uint32_t out[N_PROMPTS][MAX_NEW];
    int done[N_PROMPTS]; /* completion reports per job */
    sl_engine_done_t how[N_PROMPTS];
    int n_done;
} run_t;

static void s_done(void *arg, sl_engine_job_t *job, sl_engine_done_t how, const char *error)
{
    (void)error;
    run_t *r = arg;
    size_t i = (size_t)(job - r->jobs);
    r->done[i]++;
    r->how[i] = how;
    r->n_done++;
}

static void s_params(sl_backend_params_t *p, uint32_t first, uint32_t count)
{
    memset(p, 0, sizeof(*p));
    p->model = "tiny";
    p->weights = "";
    p->weight_format = "fp32";
    p->device = "cpu";
    p->seed = 7;
    p->threads = 1;
    p->layer_first = first;
    p->layer_count = count;
}

/* An engine of the tests' shape on the ref backend with params p, its
 * completions counted in r. */
static sl_engine_t *s_engine(const sl_backend_params_t *p, run_t *r)
{
    sl_engine_cfg_t ec = {
        .max_batch = 8, .batch_wait_us = 1000, .chunk_tokens = 4, .step_tokens = 24};
    sl_engine_cb_t cb = {.done = s_done, .arg = r};
    sl_engine_t *e = NULL;
    assert_int_equal(sl_engine_create(&ec, &sl_backend_ref, p, &cb, &e), SL_OK);
    return e;
}

static void s_jobs(run_t *r, int n)
{
    memset(r, 0, sizeof(*r));
    sl_rand_t rng;
    sl_rand_seed(&rng, 99);
    for (int i = 0; i < n; i++) {
        sl_engine_job_t *j = &r->jobs[i];
        uint32_t len = 1 + (uint32_t)sl_rand_below(&rng, 60);
        for (uint32_t t = 0; t < len; t++)
            r->prompts[i][t] = (uint32_t)sl_rand_below(&rng, 512);
        j->seq.id = 1000 + (uint64_t)i;
        j->seq.prompt = r->prompts[i];
        j->seq.prompt_len = len;
        j->seq.max_new_tokens = 1 + (uint32_t)sl_rand_below(&rng, MAX_NEW);
        j->seq.out = r->out[i];
        j->seq.interactive = i % 3 == 0;
    }
}

/* Submit n jobs in waves and advance until all are done (or a deadline). */
static void s_drive(sl_engine_t *e, run_t *r, int n)
{
    sl_time_t t0 = sl_clock_now();
    int submitted = 0;
    while (r->n_done < n && sl_clock_now() - t0 < SL_MS(60000)) {
        for (int k = 0; k < 7 && submitted < n; k++)
            sl_engine_submit(e, &r->jobs[submitted++], sl_clock_now());
        sl_engine_advance(e, sl_clock_now());
    }
    assert_int_equal(r->n_done, n);
}

/* The second stage: its own engine and backend, served on its own thread. */
typedef struct later {
    sl_xport_t *xp;
    sl_exec_stage_t *stage;
    void *backend;
    atomic_int stop;
    atomic_int mute; /* stop answering (a stage lost) */
} later_t;

static sl_status_t s_run_later(void *arg, const sl_stage_step_t *step, const float *x_in,
                               float *x_out, uint32_t *next)
{
    return sl_backend_ref_stage_run(arg, step, x_in, x_out, next);
}

static void s_notif(void *arg, const void *data, size_t len)
{
    assert_true(sl_exec_stage_on_notif(arg, data, len));
}

static void *s_later_main(void *arg)
{
    later_t *l = arg;
    while (!atomic_load(&l->stop)) {
        if (atomic_load(&l->mute)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        unsigned n = sl_xport_progress(l->xp);
        sl_exec_stage_progress(l->stage, sl_clock_now());
        if (n == 0 && sl_xport_arm(l->xp) == SL_OK) {
            struct pollfd p = {.fd = sl_xport_fd(l->xp), .events = POLLIN};
            poll(&p, 1, 1);
        }
    }
    return NULL;
}

/* The second stage's ring is the tail of a larger registered region (as
 * in the executor, where it follows the KV pool's blocks). */
#define S_POOL (3u << 20)
#define S_RING (1u << 20)

typedef struct chain {
    sl_xport_t *xp0, *xp1;
    sl_exec_stage_t *st0, *st1;
    sl_engine_t *e0, *e1;
    void *pool1;                /* the second stage's region */
    sl_xport_mem_t *pool1_mem;  /* its registration */
    sl_xport_peer_t *to0, *to1; /* connections: to the first stage, to the second */
    uint32_t r0, r1;            /* the first stage's ring, the second's region */
    later_t later;
    pthread_t thread;
    run_t run;
} chain_t;

/* Stage 0 of the chain is the first stage, stage 1 the second. */
static bool s_peer0(void *arg, uint32_t index, sl_xport_peer_t **conn_p, uint32_t *region_p,
                    uint64_t *off_p)
{
    chain_t *c = arg;
    if (index != 1)
        return false;
    *conn_p = c->to1, *region_p = c->r1, *off_p = S_POOL;
    return true;
}

static bool s_peer1(void *arg, uint32_t index, sl_xport_peer_t **conn_p, uint32_t *region_p,
                    uint64_t *off_p)
{
    chain_t *c = arg;
    if (index != 0)
        return false;
    *conn_p = c->to0, *region_p = c->r0, *off_p = 0;
    return true;
}

static void s_chain_up(chain_t *c, int64_t timeout_ms)
{
    memset(c, 0, sizeof(*c));
    setenv("UCX_TLS", "tcp", 1);
    sl_xport_cfg_t xc;
    assert_int_equal(sl_xport_cfg_defaults(&xc), SL_OK);
    assert_int_equal(sl_xport_create(&xc, &c->xp0), SL_OK);
    assert_int_equal(sl_xport_create(&xc, &c->xp1), SL_OK);
    /* the second stage: layers 1.. of tiny (2 layers), given no jobs */
    sl_backend_params_t p;
    s_params(&p, 1, 1);
    c->e1 = s_engine(&p, &c->run);
    c->later.backend = sl_engine_backend(c->e1);
    sl_exec_stage_cfg_t sc = {.ring_kib = 1024, .step_timeout_ms = timeout_ms};
    sl_backend_stage_info_t info;
    sl_backend_ref.stage_info(c->later.backend, &info);
    assert_int_equal(info.layer_first, 1);
    assert_int_equal(info.layers_total, 2);
    c->pool1 = calloc(1, S_POOL + S_RING);
    assert_non_null(c->pool1);
    assert_int_equal(
        sl_xport_mem_register(c->xp1, c->pool1, S_POOL + S_RING, SL_XPORT_MEM_HOST, &c->pool1_mem),
        SL_OK);
    sl_exec_stage_io_t io1 = {.run = s_run_later,
                              .arg = c->later.backend,
                              .width = info.width,
                              .last = true,
                              .ring = (char *)c->pool1 + S_POOL,
                              .ring_bytes = S_RING,
                              .peer = s_peer1,
                              .peer_arg = c};
    assert_int_equal(sl_exec_stage_create(&sc, c->xp1, &io1, &c->st1), SL_OK);
    sl_exec_stage_io_t io0 = {.width = 128, .first = true, .peer = s_peer0, .peer_arg = c};
    assert_int_equal(sl_exec_stage_create(&sc, c->xp0, &io0, &c->st0), SL_OK);
    const uint32_t chain[2] = {0, 1};
    assert_int_equal(sl_exec_stage_set_chain(c->st0, chain, 2), SL_OK);
    /* connect both ways; the first imports the region's key, the second the ring's */
    const void *a0, *a1, *k0;
    size_t l0, l1, kl0, kl1;
    void *k1;
    assert_int_equal(sl_xport_address(c->xp0, &a0, &l0), SL_OK);
    assert_int_equal(sl_xport_address(c->xp1, &a1, &l1), SL_OK);
    assert_int_equal(sl_xport_connect(c->xp0, a1, l1, &c->to1), SL_OK);
    assert_int_equal(sl_xport_connect(c->xp1, a0, l0, &c->to0), SL_OK);
    sl_exec_stage_ring_key(c->st0, &k0, &kl0);
    assert_int_equal(sl_xport_mem_pack(c->xp1, c->pool1_mem, &k1, &kl1), SL_OK);
    assert_int_equal(sl_xport_rkey_import(c->xp0, c->to1, k1, kl1, &c->r1), SL_OK);
    assert_int_equal(sl_xport_rkey_import(c->xp1, c->to0, k0, kl0, &c->r0), SL_OK);
    free(k1);
    sl_xport_set_notif_handler(c->xp0, s_notif, c->st0);
    sl_xport_set_notif_handler(c->xp1, s_notif, c->st1);
    /* the first stage: layer 0, its steps go round the chain */
    s_params(&p, 0, 1);
    p.stage = sl_exec_stage_hook(c->st0);
    c->e0 = s_engine(&p, &c->run);
    c->later.xp = c->xp1;
    c->later.stage = c->st1;
    assert_int_equal(pthread_create(&c->thread, NULL, s_later_main, &c->later), 0);
}

static void s_chain_down(chain_t *c)
{
    sl_engine_destroy(&c->e0);
    /* The second stage stops serving first: after that nothing more is put
     * into the first stage's ring. (Stopped after the first stage was
     * destroyed, it could still answer a step that had timed out, and
     * over tcp the answer was copied into the ring the first stage had
     * freed.) Then both engines deliver what is still in flight, the
     * first stage's last put among them (the second stage only notes its
     * notification), until they have been idle for a while. */
    atomic_store(&c->later.stop, 1);
    pthread_join(c->thread, NULL);
    sl_time_t until = sl_clock_now() + SL_MS(5000);
    for (int idle = 0; idle < 1000 && sl_clock_now() < until; idle++)
        if (sl_xport_progress(c->xp1) + sl_xport_progress(c->xp0) > 0)
            idle = 0;
    sl_exec_stage_destroy(&c->st0);
    sl_exec_stage_destroy(&c->st1);
    sl_xport_mem_deregister(c->xp1, &c->pool1_mem);
    free(c->pool1);
    sl_engine_destroy(&c->e1);
    sl_xport_destroy(&c->xp0);
    sl_xport_destroy(&c->xp1);
}

static void test_two_stages_equal_one(void **state)
{
    (void)state;
    /* the whole model, in one engine */
    static run_t whole;
    s_jobs(&whole, N_PROMPTS);
    sl_backend_params_t p;
    s_params(&p, 0, 0);
    sl_engine_t *e = s_engine(&p, &whole);
    s_drive(e, &whole, N_PROMPTS);
    sl_engine_destroy(&e);

    static chain_t c;
    s_chain_up(&c, 10000);
    s_jobs(&c.run, N_PROMPTS);
    s_drive(c.e0, &c.run, N_PROMPTS);
    int differ = 0;
    for (int i = 0; i < N_PROMPTS; i++) {
        assert_int_equal(whole.done[i], 1);
        assert_int_equal(c.run.done[i], 1);
        assert_int_equal(whole.how[i], SL_ENGINE_OK);
        assert_int_equal(c.run.how[i], SL_ENGINE_OK);
        assert_int_equal(c.run.jobs[i].seq.n_out, whole.jobs[i].seq.n_out);
        differ += memcmp(c.run.out[i], whole.out[i], whole.jobs[i].seq.n_out * 4) != 0;
    }
    assert_int_equal(differ, 0);
    sl_exec_stage_stats_t s0, s1;
    sl_exec_stage_stats(c.st0, &s0);
    sl_exec_stage_stats(c.st1, &s1);
    assert_true(s0.steps_sent > 0);
    assert_int_equal(s0.steps_failed, 0);
    assert_int_equal(s1.steps_run, s0.steps_sent);
    assert_int_equal(s1.notifs_refused + s0.notifs_refused, 0);
    s_chain_down(&c);
}

static void test_lost_stage_fails_jobs_once(void **state)
{
    (void)state;
    static chain_t c;
    s_chain_up(&c, 200);
    atomic_store(&c.later.mute, 1);
    s_jobs(&c.run, 5);
    sl_time_t t0 = sl_clock_now();
    s_drive(c.e0, &c.run, 5);
    assert_true(sl_clock_now() - t0 < SL_MS(10000));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(c.run.done[i], 1);
        assert_int_equal(c.run.how[i], SL_ENGINE_FAILED);
    }
    sl_exec_stage_stats_t s0;
    sl_exec_stage_stats(c.st0, &s0);
    assert_true(s0.steps_failed >= 1);
    atomic_store(&c.later.mute, 0);
    s_chain_down(&c);
}

/* A later stage checks each row's position against its sequence's KV: a
 * step whose position lies past the sequence's reservation (a torn or
 * forged message) is refused, not written outside the KV. */
static void test_stage_position_checked(void **state)
{
    (void)state;
    static run_t r;
    sl_backend_params_t p;
    s_params(&p, 1, 1);
    sl_engine_t *e = s_engine(&p, &r);
    void *b = sl_engine_backend(e);
    sl_backend_stage_info_t info;
    sl_backend_ref.stage_info(b, &info);
    static float x_in[128], x_out[128];
    assert_int_equal(info.width, 128); /* one row of the buffers */
    uint32_t next = 0, row_seq = 0, out_row = 0;
    sl_stage_seq_t seq = {.id = 7, .capacity = 16};
    for (int bad = 0; bad < 2; bad++) {
        uint32_t pos = bad ? 1000000 : 3;
        sl_stage_step_t st = {.n_rows = 1,
                              .n_seqs = 1,
                              .n_out = 1,
                              .seqs = &seq,
                              .row_seq = &row_seq,
                              .pos = &pos,
                              .out_rows = &out_row};
        assert_int_equal(sl_backend_ref_stage_run(b, &st, x_in, x_out, &next),
                         bad ? SL_ERR_INVALID : SL_OK);
    }
    sl_engine_destroy(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_stages_equal_one),
        cmocka_unit_test(test_lost_stage_fails_jobs_once),
        cmocka_unit_test(test_stage_position_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
