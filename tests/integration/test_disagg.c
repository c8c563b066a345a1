/*
 * KV moving between real executors (ref backend, the tiny model on the
 * CPU) over UCX, TCP and shared memory:
 *  - disaggregated serving: a prefill executor computes each prompt and
 *    writes its KV into the blocks the decode executor reserved; every
 *    result equals the model run directly in this process (which is what
 *    aggregated serving gives: test_ref_cluster);
 *  - a prefill executor killed while KV moves: every job is answered exactly
 *    once, with the right tokens, and the decode executor's free blocks come
 *    back to where they started;
 *  - live migration: a streaming job whose executor drains moves, with its
 *    KV, to the other one and goes on there; its stream has no gap and no
 *    duplicate and its tokens equal an unmoved run's.
 * SLUICE_TEST_DEVICE (cpu by default) picks the executors' device, so the
 * same test checks CUDA executors on a machine with a GPU.
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
#include "common/sl_clock.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

#define N_DISAGG 50
#define MAX_NEW 16
/* Under the sanitizers compute is several times slower: shorter prompts
 * and the tiny model throughout (same checks). */
#ifdef SLUICE_SANITIZE
#define S_LEN_SCALE 3
#define S_MOVE_MODEL "tiny"
#else
#define S_LEN_SCALE 1
#define S_MOVE_MODEL "small"
#endif
#define MAX_PROMPT 448

static char s_dev_arg[64];
static const char *s_model = "tiny"; /* the model the next cluster serves */
static char s_model_arg[64];

static const char *s_device(void)
{
    const char *d = getenv("SLUICE_TEST_DEVICE");
    return d && d[0] ? d : "cpu";
}

/* The prompts and the tokens the model gives for them, run here. */
typedef struct s_set {
    uint32_t prompts[N_DISAGG][MAX_PROMPT];
    uint32_t lens[N_DISAGG];
    uint32_t expect[N_DISAGG][512];
    uint32_t max_new;
    int n;
} s_set_t;

static void s_make_set(s_set_t *set, int n, uint32_t min_len, uint32_t spread, uint32_t max_new,
                       uint64_t seed)
{
    sl_backend_params_t params = {
        .model = s_model, .weights = "", .weight_format = "auto", .device = s_device(), .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    sl_model_t *model = NULL;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, seed);
    set->n = n;
    set->max_new = max_new;
    for (int k = 0; k < n; k++) {
        set->lens[k] = min_len + (uint32_t)sl_rand_below(&r, spread);
        assert_true(set->lens[k] <= MAX_PROMPT);
        for (uint32_t i = 0; i < set->lens[k]; i++)
            set->prompts[k][i] = (uint32_t)sl_rand_below(&r, mcfg.vocab);
        assert_int_equal(
            sl_model_generate(model, set->prompts[k], set->lens[k], max_new, set->expect[k], NULL),
            SL_OK);
    }
    sl_model_destroy(&model);
}

static void s_submit(void *sock, const char *id, const uint32_t *toks, uint32_t n, uint32_t max_new,
                     bool stream)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = {
        .id = id, .token_ids = toks, .n_token_ids = n, .max_new_tokens = max_new, .stream = stream};
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
}

/* What a test does once some results have come. */
typedef void (*s_hook_t)(cl_t *c);

/* Collect the results of every job of set (ids "d<k>"): each exactly once,
 * OK, with the model's tokens; hook runs once after hook_after results. */
static void s_collect(cl_t *c, void *sock, const s_set_t *set, s_hook_t hook, int hook_after)
{
    int seen[N_DISAGG] = {0};
    int got = 0;
    if (hook && hook_after == 0)
        hook(c);
    while (got < set->n) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 120000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *res = &ev.result;
            int k = atoi(res->job_id + 1);
            assert_true(k >= 0 && k < set->n);
            if (res->status != SL_JOB_OK)
                fprintf(stderr, "job %s: status %d: %s\n", res->job_id, res->status, res->error);
            assert_int_equal(res->status, SL_JOB_OK);
            assert_int_equal(seen[k], 0); /* answered once */
            seen[k] = 1;
            assert_int_equal(res->n_tokens, set->max_new);
            for (uint32_t i = 0; i < set->max_new; i++) {
                if (res->tokens[i] != set->expect[k][i])
                    fprintf(stderr, "job %s (prompt %u, executor %s): token %u differs\n",
                            res->job_id, set->lens[k], res->executor, i);
                assert_int_equal(res->tokens[i], set->expect[k][i]);
            }
            got++;
            if (hook && got == hook_after)
                hook(c);
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
        }
        cl_ev_free(&ev);
    }
    /* nothing more comes: no job is answered twice */
    cl_ev_t ev;
    if (cl_next(sock, 300, &ev)) {
        assert_int_not_equal(ev.kind, CL_EV_RESULT);
        cl_ev_free(&ev);
    }
}

static void s_exec_args(const char **args, const char *role, const char *tls, char *role_arg,
                        char *tls_arg)
{
    snprintf(role_arg, 64, "--role=%s", role);
    snprintf(tls_arg, 64, "--data-plane-tls=%s", tls);
    snprintf(s_dev_arg, sizeof(s_dev_arg), "--device=%s", s_device());
    int n = 0;
    args[n++] = "--backend=ref";
    snprintf(s_model_arg, sizeof(s_model_arg), "--model=%s", s_model);
    args[n++] = s_model_arg;
    args[n++] = s_dev_arg;
    args[n++] = "--data-plane=on";
    args[n++] = tls_arg;
    args[n++] = role_arg;
    args[n++] = "--log-level=info";
    args[n] = NULL;
}

/* Wait until every one of n data-plane executors reached the others. */
static void s_wait_reached(void *sock, uint32_t n)
{
    for (int i = 0; i < 200; i++) {
        sl_wire_msg_t *st = cl_status(sock, 2000);
        uint32_t ok = 0;
        for (uint32_t e = 0; st && e < cl_status_execs(st); e++)
            ok += cl_status_exec(st, e).peers_reachable == n - 1;
        sl_wire_msg_free(&st);
        if (ok == n)
            return;
        usleep(50000);
    }
    fail_msg("the executors did not reach one another over the data plane");
}

static s_set_t s_set;

/* The prefill executor's transport engine counts the KV it pushed in the
 * critical class, as its heartbeats carry it to the status (at least the
 * KV bytes it reports sent; nothing in background). */
static void s_wait_critical_bytes(void *sock, const char *name)
{
    uint64_t crit = 0, sent = 0, bg = 1;
    for (int tries = 0; tries < 40 && (crit == 0 || crit < sent); tries++) {
        sl_wire_msg_t *st = cl_status(sock, 2000);
        assert_non_null(st);
        for (uint32_t e = 0; e < cl_status_execs(st); e++) {
            sl_wire_exec_status_t x = cl_status_exec(st, e);
            if (strcmp(x.name, name) == 0) {
                crit = x.load.kv.class_bytes[1];
                bg = x.load.kv.class_bytes[2];
                sent = x.load.kv.bytes_sent;
            }
        }
        sl_wire_msg_free(&st);
        if (crit == 0 || crit < sent)
            usleep(100000);
    }
    assert_true(sent > 0);
    assert_true(crit >= sent);
    assert_int_equal(bg, 0);
}

/* 50 prompts, a prefill and a decode executor: every job is split. */
static void s_disagg(const char *tls)
{
    s_make_set(&s_set, N_DISAGG, 20, 150 / S_LEN_SCALE, MAX_NEW, 11);
    static cl_t c;
    const char *pargs[10], *dargs[10];
    char r1[64], t1[64], r2[64], t2[64];
    s_exec_args(pargs, "prefill", tls, r1, t1);
    s_exec_args(dargs, "decode", tls, r2, t2);
    const char *sched_args[] = {"--log-level=info", NULL};
    cl_init(&c, "disagg");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "pre", pargs);
    int d = cl_executor(&c, "dec", dargs);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 2, 30000), 0);
    s_wait_reached(sock, 2);
    char id[32];
    for (int k = 0; k < s_set.n; k++) {
        snprintf(id, sizeof(id), "d%d", k);
        s_submit(sock, id, s_set.prompts[k], s_set.lens[k], MAX_NEW, false);
    }
    s_collect(&c, sock, &s_set, NULL, 0);
    assert_int_equal(cl_status_counter(sock, "kv_splits"), N_DISAGG);
    assert_int_equal(cl_status_counter(sock, "kv_handoffs"), N_DISAGG);
    assert_int_equal(cl_status_counter(sock, "kv_splits_failed"), 0);
    assert_true(cl_status_counter(sock, "kv_bytes_moved") > 0);
    assert_true(cl_log_has(&c, d, "the backend's pool"));
    s_wait_critical_bytes(sock, "pre");
    zmq_close(sock);
    cl_fini(&c);
}

static void test_disagg_tcp(void **state)
{
    (void)state;
    s_disagg("tcp");
}

static void test_disagg_shm(void **state)
{
    (void)state;
    s_disagg("posix,sysv,self");
}

/* The decode executor's free KV blocks, from the scheduler's status. */
static uint32_t s_free_blocks(void *sock, const char *name)
{
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    uint32_t v = UINT32_MAX;
    for (uint32_t e = 0; e < cl_status_execs(st); e++) {
        sl_wire_exec_status_t x = cl_status_exec(st, e);
        if (!strcmp(x.name, name))
            v = x.load.kv_blocks_free;
    }
    sl_wire_msg_free(&st);
    assert_int_not_equal(v, UINT32_MAX);
    return v;
}

static int s_pk_pre1;

static void *s_pk_sock;

/* pre1 dies with the prompts it holds being computed or their KV moving:
 * as soon as the first split is planned (40 prompts were given out, half
 * of them to it, each taking milliseconds to compute). */
static void s_kill_mid_transfer(cl_t *c)
{
    for (int i = 0; i < 2000 && cl_status_counter(s_pk_sock, "kv_splits") == 0; i++)
        usleep(1000);
    cl_kill(c, s_pk_pre1, SIGKILL);
}

/* Two prefill executors and a decode one; one prefill executor is killed
 * with KV moving: its jobs are requeued and answered once each. */
static void test_prefill_killed_mid_transfer(void **state)
{
    (void)state;
    s_make_set(&s_set, 40, 150, 100, MAX_NEW, 12);
    static cl_t c;
    const char *pargs[10], *dargs[10];
    char r1[64], t1[64], r2[64], t2[64];
    s_exec_args(pargs, "prefill", "tcp", r1, t1);
    s_exec_args(dargs, "decode", "tcp", r2, t2);
    const char *sched_args[] = {"--log-level=info", "--heartbeat-ms=50", "--missed-heartbeats=4",
                                NULL};
    cl_init(&c, "pkill");
    cl_scheduler(&c, sched_args);
    s_pk_pre1 = cl_executor(&c, "pre1", pargs);
    cl_executor(&c, "pre2", pargs);
    cl_executor(&c, "dec", dargs);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 3, 30000), 0);
    s_wait_reached(sock, 3);
    usleep(300000); /* a heartbeat with the decode executor's idle pool */
    uint32_t free0 = s_free_blocks(sock, "dec");
    char id[32];
    for (int k = 0; k < s_set.n; k++) {
        snprintf(id, sizeof(id), "d%d", k);
        s_submit(sock, id, s_set.prompts[k], s_set.lens[k], MAX_NEW, false);
    }
    s_pk_sock = cl_client(&c);
    s_collect(&c, sock, &s_set, s_kill_mid_transfer, 0);
    zmq_close(s_pk_sock);
    /* splits were cut by the kill and requeued; the others handed off */
    assert_true(cl_status_counter(sock, "kv_splits_failed") > 0);
    assert_true(cl_status_counter(sock, "kv_handoffs") > 0);
    /* every reservation is released (canceled ones after their grace) */
    uint32_t free1 = 0;
    for (int i = 0; i < 100 && (free1 = s_free_blocks(sock, "dec")) != free0; i++)
        usleep(50000);
    assert_int_equal(free1, free0);
    zmq_close(sock);
    cl_fini(&c);
}

/* A streaming job moves when its executor drains: the stream goes on from
 * the other executor with no gap and no duplicate, and the tokens equal an
 * unmoved run's. */
static void test_migration_on_drain(void **state)
{
    (void)state;
    static s_set_t one;
    s_model = S_MOVE_MODEL; /* long enough per token for the move to happen mid-stream */
    s_make_set(&one, 1, 40, 1, 400, 13);
    static cl_t c;
    const char *a1[10], *a2[10];
    char r1[64], t1[64], r2[64], t2[64];
    s_exec_args(a1, "mixed", "tcp", r1, t1);
    s_exec_args(a2, "mixed", "tcp", r2, t2);
    const char *sched_args[] = {"--log-level=info", "--kv-rebalance=off", NULL};
    cl_init(&c, "migrate");
    cl_scheduler(&c, sched_args);
    int x1 = cl_executor(&c, "m1", a1);
    int x2 = cl_executor(&c, "m2", a2);
    void *sock = cl_client(&c);
    void *ssock = cl_client(&c); /* status polls: they would swallow chunks on sock */
    assert_int_equal(cl_wait_executors(&c, sock, 2, 30000), 0);
    s_wait_reached(sock, 2);
    s_submit(sock, "d0", one.prompts[0], one.lens[0], one.max_new, true);
    uint32_t next = 0;
    int drained = -1;
    bool done = false;
    static uint32_t streamed[512];
    while (!done) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        if (ev.kind == CL_EV_CHUNK) {
            const sl_wire_chunk_t *ch = &ev.chunk;
            assert_int_equal(ch->offset, next); /* no gap, no duplicate */
            assert_true(ch->offset + ch->n_tokens <= one.max_new);
            memcpy(streamed + ch->offset, ch->tokens, ch->n_tokens * sizeof(uint32_t));
            next += ch->n_tokens;
            if (drained < 0) {
                /* the executor that runs it is the one that has it in flight */
                sl_wire_msg_t *st = cl_status(ssock, 2000);
                for (uint32_t e = 0; st && e < cl_status_execs(st); e++) {
                    sl_wire_exec_status_t x = cl_status_exec(st, e);
                    if (x.inflight > 0)
                        drained = !strcmp(x.name, "m1") ? x1 : x2;
                }
                sl_wire_msg_free(&st);
                assert_true(drained >= 0);
                cl_kill(&c, drained, SIGTERM);
            }
        } else if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *res = &ev.result;
            assert_int_equal(res->status, SL_JOB_OK);
            assert_int_equal(res->n_tokens, one.max_new);
            for (uint32_t i = 0; i < one.max_new; i++)
                assert_int_equal(res->tokens[i], one.expect[0][i]);
            done = true;
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
        }
        cl_ev_free(&ev);
    }
    assert_int_equal(next, one.max_new);
    for (uint32_t i = 0; i < one.max_new; i++)
        assert_int_equal(streamed[i], one.expect[0][i]);
    assert_int_equal(cl_status_counter(sock, "kv_migrations"), 1);
    assert_true(cl_log_has(&c, drained, "moved to executor"));
    zmq_close(ssock);
    zmq_close(sock);
    cl_fini(&c);
    s_model = "tiny";
}

/* A prompt whose prefix the other executor caches: the blocks are pulled
 * from it instead of computed (round-robin puts the second prompt on the
 * executor that lacks them), and the tokens are the model's. */
static void test_prefix_fetch(void **state)
{
    (void)state;
    static s_set_t two;
    s_make_set(&two, 1, 420, 1, MAX_NEW, 14);
    /* the second prompt: the first's 400 leading tokens, then its own */
    two.n = 2;
    two.lens[1] = 430;
    memcpy(two.prompts[1], two.prompts[0], 400 * sizeof(uint32_t));
    sl_rand_t r;
    sl_rand_seed(&r, 99);
    for (uint32_t i = 400; i < two.lens[1]; i++)
        two.prompts[1][i] = (uint32_t)sl_rand_below(&r, 512);
    {
        sl_backend_params_t params = {.model = s_model,
                                      .weights = "",
                                      .weight_format = "auto",
                                      .device = s_device(),
                                      .seed = 1};
        sl_model_cfg_t mcfg;
        sl_model_opts_t opts;
        sl_model_t *model = NULL;
        assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
        assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);
        assert_int_equal(
            sl_model_generate(model, two.prompts[1], two.lens[1], MAX_NEW, two.expect[1], NULL),
            SL_OK);
        sl_model_destroy(&model);
    }
    static cl_t c;
    const char *a[10];
    char r1[64], t1[64];
    s_exec_args(a, "mixed", "tcp", r1, t1);
    const char *sched_args[] = {"--log-level=info", "--policy=round-robin", "--kv-split=off",
                                "--kv-rebalance=off", NULL};
    cl_init(&c, "fetch");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "f1", a);
    cl_executor(&c, "f2", a);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 2, 30000), 0);
    s_wait_reached(sock, 2);
    char id[32];
    for (int k = 0; k < 2; k++) {
        snprintf(id, sizeof(id), "d%d", k);
        s_submit(sock, id, two.prompts[k], two.lens[k], MAX_NEW, false);
        /* wait for it: the first's blocks are cached (and reported) before the second */
        int got = 0;
        while (!got) {
            cl_ev_t ev;
            assert_true(cl_next(sock, 60000, &ev));
            if (ev.kind == CL_EV_RESULT) {
                assert_int_equal(ev.result.status, SL_JOB_OK);
                assert_int_equal(ev.result.n_tokens, MAX_NEW);
                for (uint32_t i = 0; i < MAX_NEW; i++)
                    assert_int_equal(ev.result.tokens[i], two.expect[k][i]);
                if (k == 1) /* its prefix counted as cached: it came from the peer */
                    assert_true(ev.result.timings.cached_tokens >= 400 - 8);
                got = 1;
            }
            cl_ev_free(&ev);
        }
        usleep(300000);
    }
    assert_int_equal(cl_status_counter(sock, "kv_fetches"), 1);
    assert_true(cl_status_counter(sock, "kv_blocks_fetched") >= 49); /* 400 tokens in blocks of 8 */
    assert_int_equal(cl_status_counter(sock, "kv_fetches_failed"), 0);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disagg_tcp),
        cmocka_unit_test(test_disagg_shm),
        cmocka_unit_test(test_prefill_killed_mid_transfer),
        cmocka_unit_test(test_migration_on_drain),
        cmocka_unit_test(test_prefix_fetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
