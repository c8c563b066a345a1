/*
 * Weights from a peer against the real daemons (ref backend, tiny model,
 * CPU): executor A reads a weight file and serves it; executor B, started
 * with --weights-from=peer, pulls the whole file from A over the transport
 * (its log names A and the file's size) and gives the same tokens as the
 * model loaded from the file in this process; with A gone, a third
 * executor finds no peer, reads the file, and gives the same tokens too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "cluster.h"
#include "tests/support/sl_test.h"
#include "common/sl_rand.h"
#include "executor/ref/sl_backend_ref.h"
#include "executor/ref/sl_model.h"

#define N_PROMPTS 4
#define MAX_NEW 8

static uint32_t s_prompts[N_PROMPTS][40];
static uint32_t s_expect[N_PROMPTS][MAX_NEW];

/* The weight file, and the tokens the model it holds gives for the prompts. */
static void s_make_weights(const char *path)
{
    sl_model_cfg_t mcfg;
    assert_int_equal(sl_model_preset("tiny", &mcfg), SL_OK);
    assert_int_equal(sl_model_write_synthetic(&mcfg, 5, path), SL_OK);
    sl_backend_params_t params = {
        .model = "tiny", .weights = path, .weight_format = "auto", .device = "cpu", .seed = 1};
    sl_model_opts_t opts;
    sl_model_t *model = NULL;
    assert_int_equal(sl_backend_ref_resolve(&params, &mcfg, &opts), SL_OK);
    assert_int_equal(sl_model_create(&mcfg, &opts, &model), SL_OK);
    sl_rand_t r;
    sl_rand_seed(&r, 11);
    for (int k = 0; k < N_PROMPTS; k++) {
        for (int i = 0; i < 40; i++)
            s_prompts[k][i] = (uint32_t)sl_rand_below(&r, mcfg.vocab);
        assert_int_equal(sl_model_generate(model, s_prompts[k], 40, MAX_NEW, s_expect[k], NULL),
                         SL_OK);
    }
    sl_model_destroy(&model);
}

/* Run the prompts (tag-k) and check every result's tokens; returns how
 * many ran on the executor named on. */
static int s_run(void *sock, const char *tag, const char *on)
{
    char id[32];
    for (int k = 0; k < N_PROMPTS; k++) {
        sl_wire_batch_t b;
        snprintf(id, sizeof(id), "%s-%d", tag, k);
        sl_job_desc_t j = {
            .id = id, .token_ids = s_prompts[k], .n_token_ids = 40, .max_new_tokens = MAX_NEW};
        sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
        assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
        assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
        sl_wire_batch_fini(&b);
    }
    int got = 0, there = 0;
    while (got < N_PROMPTS) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *res = &ev.result;
            int k = atoi(strrchr(res->job_id, '-') + 1);
            assert_int_equal(res->status, SL_JOB_OK);
            assert_int_equal(res->n_tokens, MAX_NEW);
            for (int i = 0; i < MAX_NEW; i++)
                assert_int_equal(res->tokens[i], s_expect[k][i]);
            there += strcmp(res->executor, on) == 0;
            got++;
        }
        cl_ev_free(&ev);
    }
    return there;
}

static void test_weights_from_peer(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "weights");
    char path[400], warg[450], want[128];
    snprintf(path, sizeof(path), "%s/tiny.safetensors", c.dir);
    s_make_weights(path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(warg, sizeof(warg), "--weights=%s", path);
    /* one slot each, so the prompts spread over both */
    const char *a_args[] = {"--backend=ref", "--device=cpu",        warg, "--data-plane=on",
                            "--slots=1",     "--weights-from=file", NULL};
    const char *b_args[] = {
        "--backend=ref",       "--device=cpu",     warg, "--data-plane=on", "--slots=1",
        "--weights-from=peer", "--log-level=info", NULL};
    cl_scheduler(&c, NULL);
    int a = cl_executor(&c, "wa", a_args);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 1, 30000), 0);
    int b = cl_executor(&c, "wb", b_args);
    assert_int_equal(cl_wait_executors(&c, sock, 2, 60000), 0);
    snprintf(want, sizeof(want), "pulled %lld bytes of tiny.safetensors from wa",
             (long long)sb.st_size);
    assert_true(cl_log_has(&c, b, want));
    int on_b = 0;
    for (int wave = 0; wave < 5 && on_b == 0; wave++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "w%d", wave);
        on_b += s_run(sock, tag, "wb");
    }
    assert_true(on_b > 0); /* B computed with the pulled weights, and matched */

    /* A is gone: a newcomer finds no peer and reads its file. */
    cl_kill(&c, a, SIGKILL);
    assert_true(cl_wait(&c, a, 5000) >= 0);
    cl_kill(&c, b, SIGTERM);
    assert_true(cl_wait(&c, b, 10000) >= 0);
    uint32_t alive = 1;
    for (int i = 0; i < 200 && alive; i++) { /* until the scheduler has let both go */
        sl_wire_msg_t *st = cl_status(sock, 2000);
        assert_non_null(st);
        alive = 0;
        for (uint32_t k = 0; k < cl_status_execs(st); k++)
            alive += cl_status_exec(st, k).alive;
        sl_wire_msg_free(&st);
        if (alive)
            usleep(100000);
    }
    assert_int_equal(alive, 0);
    int d = cl_executor(&c, "wd", b_args);
    for (int i = 0; i < 200 && !cl_log_has(&c, d, "registered with the scheduler"); i++)
        usleep(100000);
    assert_true(cl_log_has(&c, d, "no live executor serves tiny.safetensors"));
    assert_false(cl_log_has(&c, d, "pulled "));
    assert_int_equal(s_run(sock, "after", "wd"), N_PROMPTS);
    zmq_close(sock);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_from_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
