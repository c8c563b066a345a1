/*
 * End to end with real compute: a scheduler and two `ref` executors (the
 * tiny model on the CPU) serve prompts given as token ids, some sharing
 * prefixes so the executors' prefix caches are used; every result must be
 * exactly the tokens of the same model run directly in this process.
 *
 * Prefix-aware placement of token prompts: the scheduler hashes each prompt
 * in the block size the executors advertise and matches it against the
 * blocks they reported caching, so a prompt sharing a long prefix with an
 * earlier one goes where that prefix is cached.
 *
 * Placement by what an executor can hold: the executors declare their
 * context in the hello, and a job longer than every one of them is refused
 * at submission with the reason, which `sluice submit` prints.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#include "cluster.h"
#include "tests/support/sl_test.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

#define N_JOBS 24
#define MAX_NEW 12

static void s_submit_tokens_new(void *sock, const char *id, const uint32_t *toks, uint32_t n,
                                uint32_t max_new)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = {.id = id, .token_ids = toks, .n_token_ids = n, .max_new_tokens = max_new};
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
}

static void s_submit_tokens(void *sock, const char *id, const uint32_t *toks, uint32_t n)
{
    s_submit_tokens_new(sock, id, toks, n, MAX_NEW);
}

static void test_ref_tokens_match_direct_run(void **state)
{
    /* the model the executors build from their defaults */
    sl_backend_params_t params = {
        .model = "tiny", .weights = "", .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    sl_model_t *model = NULL;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);

    static uint32_t prompts[N_JOBS][96];
    static uint32_t expect[N_JOBS][MAX_NEW];
    uint32_t lens[N_JOBS];
    sl_rand_t r;
    sl_rand_seed(&r, 7);
    uint32_t shared[64];
    for (int i = 0; i < 64; i++)
        shared[i] = (uint32_t)sl_rand_below(&r, mcfg.vocab);
    for (int k = 0; k < N_JOBS; k++) {
        lens[k] = 20 + (uint32_t)sl_rand_below(&r, 70);
        uint32_t pre = (k % 2) ? (lens[k] < 64 ? lens[k] - 4 : 64) : 0; /* half share a prefix */
        for (uint32_t i = 0; i < lens[k]; i++)
            prompts[k][i] = i < pre ? shared[i] : (uint32_t)sl_rand_below(&r, mcfg.vocab);
        assert_int_equal(sl_model_generate(model, prompts[k], lens[k], MAX_NEW, expect[k], NULL),
                         SL_OK);
    }
    sl_model_destroy(&model);

    static cl_t c;
    const char *sched_args[] = {"--log-level=warn", NULL};
    const char *exec_args[] = {"--backend=ref", "--model=tiny", "--device=cpu", "--log-level=warn",
                               NULL};
    cl_init(&c, "ref");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "r1", exec_args);
    cl_executor(&c, "r2", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 2, 20000), 0);
    char id[32];
    int got = 0, cached = 0, second_wave = 0;
    int seen[N_JOBS] = {0};
    /* two waves: the second finds the first wave's shared prefix cached */
    for (int k = 0; k < N_JOBS / 2; k++) {
        snprintf(id, sizeof(id), "r%d", k);
        s_submit_tokens(sock, id, prompts[k], lens[k]);
    }
    while (got < N_JOBS) {
        if (got == N_JOBS / 2 && !second_wave) {
            second_wave = 1;
            for (int k = N_JOBS / 2; k < N_JOBS; k++) {
                snprintf(id, sizeof(id), "r%d", k);
                s_submit_tokens(sock, id, prompts[k], lens[k]);
            }
        }
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *res = &ev.result;
            int k = atoi(res->job_id + 1);
            assert_int_equal(res->status, SL_JOB_OK);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
            assert_int_equal(res->n_tokens, MAX_NEW);
            for (int i = 0; i < MAX_NEW; i++)
                assert_int_equal(res->tokens[i], expect[k][i]);
            cached += res->timings.cached_tokens > 0;
            got++;
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
        }
        cl_ev_free(&ev);
    }
    assert_true(cached > 0); /* shared prefixes were served from the cache */
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    for (uint32_t i = 0; i < cl_status_execs(st); i++)
        assert_true(cl_status_exec(st, i).completed > 0); /* both served */
    sl_wire_msg_free(&st);
    zmq_close(sock);
    cl_fini(&c);
}

#define PX_ROUNDS 3    /* rounds, each with two fresh prefixes */
#define PX_BLOCKS 6    /* full KV blocks a follow-up shares with its first prompt */
#define PX_TAIL 10     /* tokens after the shared prefix */
#define PX_MAX_LEN 256 /* room for a prompt */

static cl_t s_px;       /* the prefix tests' cluster */
static void *s_px_sock; /* their client socket */

/* Runs after a prefix test even when it failed: an open socket would
 * otherwise hang the context's termination at exit. */
static int s_px_teardown(void **state)
{
    if (s_px_sock)
        zmq_close(s_px_sock);
    s_px_sock = NULL;
    if (s_px.zctx)
        cl_fini(&s_px);
    return 0;
}

/* Submit prompts[0..n) in one SubmitBatch: the scheduler places them in one
 * loop turn, in this order, with no completion in between. */
static void s_submit_batch(void *sock, char (*ids)[32], uint32_t (*prompts)[PX_MAX_LEN],
                           uint32_t len, int n)
{
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_true(n <= 2);
    for (int i = 0; i < n; i++) {
        sl_job_desc_t j = {
            .id = ids[i], .token_ids = prompts[i], .n_token_ids = len, .max_new_tokens = 2};
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    }
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
}

/* Wait for the results of the n jobs ids; the executor that ran each and
 * the prompt tokens it found cached. */
static void s_collect(void *sock, char (*ids)[32], int n, char (*execs)[32], uint32_t *cached)
{
    int got = 0;
    int seen[2] = {0, 0};
    while (got < n) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        assert_int_not_equal(ev.kind, CL_EV_BUSY);
        if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *r = &ev.result;
            int i = 0;
            while (i < n && strcmp(ids[i], r->job_id) != 0)
                i++;
            assert_true(i < n);
            assert_int_equal(seen[i], 0);
            seen[i] = 1;
            assert_int_equal(r->status, SL_JOB_OK);
            snprintf(execs[i], 32, "%s", r->executor);
            cached[i] = r->has_timings ? r->timings.cached_tokens : 0;
            got++;
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
        }
        cl_ev_free(&ev);
    }
}

/*
 * Each round: two prompts with fresh prefixes go out together, so the
 * second is placed while the first runs and the two land on different
 * executors (asserted: both executors then hold a prefix). Then two
 * follow-ups, each sharing PX_BLOCKS full blocks with one of them, go out
 * together in the reverse order: the first follow-up's prefix is held by
 * the executor a load-only choice takes first among equals, so a policy
 * blind to prefixes sends at least one follow-up to the wrong executor in
 * every round. Each follow-up must run where its prefix is cached (the
 * executor named in its result, which also reports the cached tokens), and
 * the scheduler's counters must show the hashed prompts and every hit.
 * Nothing depends on timing: the KV events of a job reach the scheduler
 * before its completion, and the follow-ups are sent after the results.
 */
static void s_prefix_placement(const char *policy)
{
    sl_backend_params_t params = {
        .model = "tiny", .weights = "", .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    const uint32_t bt = mcfg.block_tokens, shared = PX_BLOCKS * bt, len = shared + PX_TAIL;
    assert_true(len <= PX_MAX_LEN && len + 2 <= mcfg.max_ctx);

    char pol[64];
    snprintf(pol, sizeof(pol), "--policy=%s", policy);
    const char *sched_args[] = {pol, "--log-level=warn", NULL};
    const char *exec_args[] = {"--backend=ref", "--model=tiny", "--device=cpu", "--log-level=warn",
                               NULL};
    cl_init(&s_px, "refpx");
    cl_scheduler(&s_px, sched_args);
    cl_executor(&s_px, "p1", exec_args);
    cl_executor(&s_px, "p2", exec_args);
    void *sock = s_px_sock = cl_client(&s_px);
    assert_int_equal(cl_wait_executors(&s_px, sock, 2, 20000), 0);

    sl_rand_t r;
    sl_rand_seed(&r, 11);
    static uint32_t first[2][PX_MAX_LEN], follow[2][PX_MAX_LEN], rev[2][PX_MAX_LEN];
    char ids[2][32], execs[2][32], holder[2][32];
    uint32_t cached[2];
    for (int round = 0; round < PX_ROUNDS; round++) {
        for (int k = 0; k < 2; k++) {
            for (uint32_t i = 0; i < len; i++) {
                first[k][i] = (uint32_t)sl_rand_below(&r, mcfg.vocab);
                follow[k][i] = i < shared ? first[k][i] : (uint32_t)sl_rand_below(&r, mcfg.vocab);
            }
            snprintf(ids[k], sizeof(ids[k]), "%s-%d-first%d", policy, round, k);
        }
        s_submit_batch(sock, ids, first, len, 2);
        s_collect(sock, ids, 2, holder, cached);
        assert_string_not_equal(holder[0], holder[1]);
        assert_int_equal(cached[0], 0);
        assert_int_equal(cached[1], 0);

        /* reverse order: follow-up 1 first, then follow-up 0 */
        memcpy(rev[0], follow[1], sizeof(rev[0]));
        memcpy(rev[1], follow[0], sizeof(rev[1]));
        snprintf(ids[0], sizeof(ids[0]), "%s-%d-follow1", policy, round);
        snprintf(ids[1], sizeof(ids[1]), "%s-%d-follow0", policy, round);
        s_submit_batch(sock, ids, rev, len, 2);
        s_collect(sock, ids, 2, execs, cached);
        assert_string_equal(execs[0], holder[1]);
        assert_string_equal(execs[1], holder[0]);
        assert_int_equal(cached[0], shared);
        assert_int_equal(cached[1], shared);
    }

    sl_wire_msg_t *st = cl_status(sock, 5000);
    assert_non_null(st);
    int64_t hashed = cl_counter(st, "prompts_hashed");
    int64_t hits = cl_counter(st, "prefix_hit_blocks");
    print_message("%s: prompts_hashed %lld, prefix_hit_blocks %lld\n", policy, (long long)hashed,
                  (long long)hits);
    assert_int_equal(hashed, PX_ROUNDS * 4);           /* every prompt has full blocks */
    assert_int_equal(hits, PX_ROUNDS * 2 * PX_BLOCKS); /* each follow-up, on its holder */
    sl_wire_msg_free(&st);
}

static void test_ref_prefix_placement_cache_switch(void **state)
{
    s_prefix_placement("cache-switch");
}

static void test_ref_prefix_placement_kv_cost(void **state)
{
    s_prefix_placement("kv-cost");
}

/* A job longer than every executor's context is refused at submission
 * with an Error naming it and saying why (before, it was accepted, failed
 * on the executor as "invalid argument", and the reason stayed in the
 * executor's log); a job that fits still runs; `sluice submit` prints the
 * reason and exits 1. */
static void test_ref_too_long_refused_at_submit(void **state)
{
    sl_backend_params_t params = {
        .model = "tiny", .weights = "", .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_cfg_t mcfg;
    sl_model_opts_t opts;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    static uint32_t toks[4096];
    assert_true(mcfg.max_ctx <= 4096);
    for (uint32_t i = 0; i < mcfg.max_ctx; i++)
        toks[i] = 1 + i % (mcfg.vocab - 1);

    static cl_t c;
    const char *sched_args[] = {"--log-level=warn", NULL};
    const char *exec_args[] = {"--backend=ref", "--model=tiny", "--device=cpu", "--log-level=warn",
                               NULL};
    cl_init(&c, "reffit");
    cl_scheduler(&c, sched_args);
    cl_executor(&c, "r1", exec_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 20000), 0);

    char want[160];
    snprintf(want, sizeof(want),
             "prompt %u + 64 new tokens exceed every executor's context "
             "(largest %u)",
             mcfg.max_ctx, mcfg.max_ctx);
    s_submit_tokens_new(sock, "long", toks, mcfg.max_ctx, 64);
    s_submit_tokens_new(sock, "fits", toks, 20, 4);
    int refused = 0, ok = 0;
    while (refused + ok < 2) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        if (ev.kind == CL_EV_ERROR) {
            assert_string_equal(ev.error.job_id, "long");
            assert_int_equal(ev.error.code, SL_ERR_NO_EXECUTOR);
            if (!strstr(ev.error.message, want))
                fail_msg("refusal says \"%s\", want \"%s\"", ev.error.message, want);
            refused++;
        } else if (ev.kind == CL_EV_RESULT) {
            assert_string_equal(ev.result.job_id, "fits");
            assert_int_equal(ev.result.status, SL_JOB_OK);
            ok++;
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
            assert_string_equal(ev.job_id, "fits");
        }
        cl_ev_free(&ev);
    }

    /* The CLI, as a user runs it: the reason, and a failing exit status. */
    static char out[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s/sluice submit --endpoint %s --wait-timeout-ms 20000 --prompt-tokens %u "
             "--max-new-tokens 64 %s 2>&1",
             sl_test_bin(), c.client_ep, mcfg.max_ctx, c.client_keys);
    int rc = sl_test_run(cmd, out, sizeof(out));
    /* the job's own line carries the reason, after one send (no timeout) */
    char line[256];
    snprintf(line, sizeof(line), ": no executor (%s)", want);
    if (rc != 1 || !strstr(out, line) || !strstr(out, "sends 1,"))
        fail_msg("sluice submit: exit %d, want 1 and \"%s\"; output:\n%s", rc, want, out);

    sl_wire_msg_t *st = cl_status(sock, 5000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "jobs_refused_no_fit"), 2);
    assert_int_equal(cl_counter(st, "jobs_failed"), 0);
    assert_int_equal(cl_counter(st, "jobs_completed"), 1);
    assert_int_equal(cl_status_execs(st), 1);
    assert_int_equal(cl_status_exec(st, 0).completed, 1);
    assert_int_equal(cl_status_exec(st, 0).failed, 0);
    sl_wire_msg_free(&st);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_tokens_match_direct_run),
        cmocka_unit_test(test_ref_too_long_refused_at_submit),
        cmocka_unit_test_teardown(test_ref_prefix_placement_cache_switch, s_px_teardown),
        cmocka_unit_test_teardown(test_ref_prefix_placement_kv_cost, s_px_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
