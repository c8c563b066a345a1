/*
 * End to end with real compute: a scheduler and two `ref` executors (the
 * tiny model on the CPU) serve prompts given as token ids, some sharing
 * prefixes so the executors' prefix caches are used; every result must be
 * exactly the tokens of the same model run directly in this process.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cluster.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

#define N_JOBS 24
#define MAX_NEW 12

static void s_submit_tokens(void *sock, const char *id, const uint32_t *toks, uint32_t n)
{
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit s = SLUICE__SUBMIT__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    p.token_ids = (uint32_t *)toks;
    p.n_token_ids = n;
    j.id = (char *)id;
    j.prompt = &p;
    j.max_new_tokens = MAX_NEW;
    s.job = &j;
    env.body_case = SLUICE__ENVELOPE__BODY_SUBMIT;
    env.submit = &s;
    assert_int_equal(sl_wire_send(sock, NULL, 0, &env, 0), SL_OK);
}

static void test_ref_tokens_match_direct_run(void **state)
{
    /* the model the executors build from their defaults */
    sl_backend_params_t params = {.model = "tiny", .weights = "", .weight_format = "auto",
                                  .device = "cpu", .seed = 1};
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
    const char *exec_args[] = {"--backend=ref", "--model=tiny", "--device=cpu",
                               "--log-level=warn", NULL};
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
        sl_msg_t *m = cl_recv(sock, 60000);
        assert_non_null(m);
        if (m->body_case == SLUICE__ENVELOPE__BODY_RESULT) {
            int k = atoi(m->result->job_id + 1);
            assert_int_equal(m->result->status, SLUICE__RESULT_STATUS__RESULT_OK);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
            assert_int_equal(m->result->n_tokens, MAX_NEW);
            for (int i = 0; i < MAX_NEW; i++)
                assert_int_equal(m->result->tokens[i], expect[k][i]);
            cached += m->result->timings->cached_tokens > 0;
            got++;
        } else {
            assert_int_equal(m->body_case, SLUICE__ENVELOPE__BODY_ACCEPTED);
        }
        sl_proto_free(&m);
    }
    assert_true(cached > 0); /* shared prefixes were served from the cache */
    sl_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    for (size_t i = 0; i < st->status_reply->n_executors; i++)
        assert_true(st->status_reply->executors[i]->completed > 0); /* both served */
    sl_proto_free(&st);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_tokens_match_direct_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
