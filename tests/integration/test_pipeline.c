/*
 * Pipeline stages with the real programs: a scheduler, the ref `small`
 * model (8 layers) split over two executors (--layers 0-3 and 4-7, the data
 * plane on, UCX over tcp) that serve model "staged", and one executor
 * holding the whole model that serves model "whole". The same 50 prompts go
 * to both models: every result of the chain equals the single executor's,
 * the first stage ran the chain's jobs and the later stage none. Then a
 * spare later stage joins and the chain's later stage is killed with jobs
 * on the chain: each is answered once (it ends OK after its requeue to the
 * new chain, or FAILED when its step timed out first), none hangs, and the
 * jobs after that run on the new chain with the same tokens.
 *
 * On two hosts (test_pipeline_hosts.sh): SLUICE_PIPE_BIN_STAGE0 and
 * SLUICE_PIPE_BIN_STAGE1 name folders whose `sluice-executor` starts the
 * real one inside a host of the multi-host bed (its own network namespace,
 * a shaped link); the first stage runs in one host, the later stages in the
 * other, so the activations cross that link over TCP. The scheduler, the
 * whole-model executor and this client stay on this host (ipc endpoints).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "cluster.h"
#include "common/sl_rand.h"
#include "tests/support/sl_test.h"

#define N_PROMPTS 50
#define MAX_NEW 8

/* Start executor name, through the folder in env var `where` when it is set. */
static int s_executor(cl_t *c, const char *name, const char *const *args, const char *where)
{
    const char *dir = getenv(where), *bin = getenv("SLUICE_BIN");
    char saved[512];
    snprintf(saved, sizeof(saved), "%s", bin ? bin : "");
    if (dir && dir[0])
        setenv("SLUICE_BIN", dir, 1);
    int slot = cl_executor(c, name, args);
    if (dir && dir[0]) {
        if (saved[0])
            setenv("SLUICE_BIN", saved, 1);
        else
            unsetenv("SLUICE_BIN");
    }
    return slot;
}

static void s_submit(void *sock, const char *id, const char *model, const uint32_t *toks,
                     uint32_t n)
{
    sl_wire_batch_t b;
    sl_job_desc_t j = {
        .id = id, .model = model, .token_ids = toks, .n_token_ids = n, .max_new_tokens = MAX_NEW};
    sl_wire_batch_init(&b, SL_WIRE_SUBMITS);
    assert_int_equal(sl_wire_submit_add(&b, &j), SL_OK);
    assert_int_equal(sl_wire_batch_send(sock, NULL, &b, 0), SL_OK);
    sl_wire_batch_fini(&b);
}

#ifdef SLUICE_SANITIZE
#define S_MODEL "tiny" /* 2 layers: 0-0 and 1-1 */
#define S_FIRST "--layers=0-0"
#define S_LATER "--layers=1-1"
#define S_MISSED "--missed-heartbeats=25"
#else
#define S_MISSED "--missed-heartbeats=10"
#define S_MODEL "small"
#define S_FIRST "--layers=0-3"
#define S_LATER "--layers=4-7"
#endif

static void test_two_stages_equal_one_executor(void **state)
{
    (void)state;
    static cl_t c;
    const char *sched_args[] = {"--log-level=warn", "--heartbeat-ms=200", S_MISSED, NULL};
    const char *stage0[] = {"--backend=ref",
                            "--model=" S_MODEL,
                            "--device=cpu",
                            "--threads=1",
                            "--models=staged",
                            "--data-plane=on",
                            "--data-plane-tls=tcp",
                            S_FIRST,
                            "--stage-step-timeout-ms=3000",
                            "--log-level=warn",
                            NULL};
    const char *stage1[] = {"--backend=ref",        "--model=" S_MODEL,
                            "--device=cpu",         "--threads=1",
                            "--models=staged",      "--data-plane=on",
                            "--data-plane-tls=tcp", S_LATER,
                            "--log-level=warn",     NULL};
    const char *whole[] = {"--backend=ref",
                           "--model=" S_MODEL,
                           "--device=cpu",
                           "--threads=1",
                           "--models=whole",
                           "--log-level=warn",
                           NULL};
    cl_init(&c, "pipe");
    cl_scheduler(&c, sched_args);
    int s0 = s_executor(&c, "stage0", stage0, "SLUICE_PIPE_BIN_STAGE0");
    int s1 = s_executor(&c, "stage1", stage1, "SLUICE_PIPE_BIN_STAGE1");
    cl_executor(&c, "whole", whole);
    void *sock = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, sock, 3, 30000), 0);

    static uint32_t prompts[N_PROMPTS][64];
    static uint32_t got[2][N_PROMPTS][MAX_NEW];
    static int seen[2][N_PROMPTS];
    uint32_t lens[N_PROMPTS];
    sl_rand_t r;
    sl_rand_seed(&r, 11);
    char id[32];
    for (int k = 0; k < N_PROMPTS; k++) {
        lens[k] = 1 + (uint32_t)sl_rand_below(&r, 60);
        for (uint32_t i = 0; i < lens[k]; i++)
            prompts[k][i] = (uint32_t)sl_rand_below(&r, 512);
    }
    /* the chain forms once the stages reached each other: a job for it
     * waits in the queue until then */
    for (int k = 0; k < N_PROMPTS; k++) {
        snprintf(id, sizeof(id), "s%d", k);
        s_submit(sock, id, "staged", prompts[k], lens[k]);
        snprintf(id, sizeof(id), "w%d", k);
        s_submit(sock, id, "whole", prompts[k], lens[k]);
    }
    int n = 0;
    while (n < 2 * N_PROMPTS) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 60000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            const sl_wire_result_t *res = &ev.result;
            int which = res->job_id[0] == 'w', k = atoi(res->job_id + 1);
            assert_int_equal(res->status, SL_JOB_OK);
            assert_int_equal(seen[which][k], 0);
            seen[which][k] = 1;
            assert_int_equal(res->n_tokens, MAX_NEW);
            memcpy(got[which][k], res->tokens, MAX_NEW * sizeof(uint32_t));
            n++;
        } else {
            assert_int_equal(ev.kind, CL_EV_ACCEPTED);
        }
        cl_ev_free(&ev);
    }
    int differ = 0;
    for (int k = 0; k < N_PROMPTS; k++)
        differ += memcmp(got[0][k], got[1][k], sizeof(got[0][k])) != 0;
    assert_int_equal(differ, 0);
    sl_wire_msg_t *st = cl_status(sock, 2000);
    assert_non_null(st);
    for (uint32_t i = 0; i < cl_status_execs(st); i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        if (!strcmp(e.name, "stage0")) /* (a requeue may run a job twice: at most) */
            assert_true(e.completed >= N_PROMPTS && e.completed <= 2 * N_PROMPTS);
        else if (strcmp(e.name, "whole") != 0)
            assert_int_equal(e.completed, 0); /* the later stage takes no jobs */
    }
    sl_wire_msg_free(&st);

    /* a spare later stage joins (a higher index: the chain keeps stage1) */
    s_executor(&c, "stage1b", stage1, "SLUICE_PIPE_BIN_STAGE1");
    assert_int_equal(cl_wait_executors(&c, sock, 4, 30000), 0);
    /* the spare and the first stage reached each other (and stage1) */
    bool reached = false;
    for (int i = 0; i < 600 && !reached; i++) {
        sl_wire_msg_t *m = cl_status(sock, 2000);
        assert_non_null(m);
        int ok = 0;
        for (uint32_t k = 0; k < cl_status_execs(m); k++) {
            sl_wire_exec_status_t e = cl_status_exec(m, k);
            ok +=
                (!strcmp(e.name, "stage0") || !strcmp(e.name, "stage1b")) && e.peers_reachable >= 2;
        }
        sl_wire_msg_free(&m);
        reached = ok == 2;
        if (!reached)
            zmq_poll(NULL, 0, 50);
    }
    assert_true(reached);
    /* the later stage dies with jobs on the chain: each is answered once */
    for (int k = 0; k < 6; k++) {
        snprintf(id, sizeof(id), "x%d", k);
        s_submit(sock, id, "staged", prompts[k], lens[k]);
    }
    cl_kill(&c, s1, SIGKILL);
    int answered[6] = {0}, done = 0;
    while (done < 6) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 30000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            int k = atoi(ev.result.job_id + 1);
            assert_int_equal(answered[k], 0);
            answered[k] = 1;
            assert_true(ev.result.status == SL_JOB_OK || ev.result.status == SL_JOB_FAILED);
            if (ev.result.status == SL_JOB_OK)
                assert_memory_equal(ev.result.tokens, got[1][k], MAX_NEW * sizeof(uint32_t));
            done++;
        }
        cl_ev_free(&ev);
    }
    /* once the scheduler has lost stage1, the chain runs through stage1b */
    int execs = 4;
    for (int i = 0; i < 200 && execs != 3; i++) {
        sl_wire_msg_t *m = cl_status(sock, 2000);
        assert_non_null(m);
        execs = (int)cl_status_execs(m);
        sl_wire_msg_free(&m);
        if (execs != 3)
            zmq_poll(NULL, 0, 50);
    }
    assert_int_equal(execs, 3);
    for (int k = 0; k < 6; k++) {
        snprintf(id, sizeof(id), "y%d", k);
        s_submit(sock, id, "staged", prompts[k], lens[k]);
    }
    done = 0;
    while (done < 6) {
        cl_ev_t ev;
        assert_true(cl_next(sock, 30000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            int k = atoi(ev.result.job_id + 1);
            assert_int_equal(ev.result.status, SL_JOB_OK);
            assert_memory_equal(ev.result.tokens, got[1][k], MAX_NEW * sizeof(uint32_t));
            done++;
        }
        cl_ev_free(&ev);
    }
    (void)s0;
    zmq_close(sock);
    /* the first stage reports its steps failing, the scheduler the lost stage */
    sl_test_expect_errors(NULL, 0, 100);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_stages_equal_one_executor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
