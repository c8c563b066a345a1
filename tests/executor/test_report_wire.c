/*
 * One translation of a finished job: the report sl_engine_job_report makes
 * is what the simulator hands to the scheduler's core, and what the
 * scheduler decodes from an executor's Completion is the same report, field
 * for field. An engine run with a job that ran, one the backend refused and
 * one canceled; each report goes through proto's typed completion over a
 * real ZeroMQ pair and comes back equal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "executor/sl_engine.h"
#include "executor/sl_report.h"
#include "executor/sl_sim_cfg.h"
#include "proto/sl_wire.h"

typedef struct {
    sl_engine_job_t ej;
    uint32_t out[64];
} job_t;

typedef struct {
    int n;
    uint64_t id[4];
    sl_result_report_t rep[4]; /* tokens point into the jobs */
    char error[4][96];         /* error texts, copied */
} reports_t;

static void s_done(void *arg, sl_engine_job_t *ej, sl_engine_done_t how, const char *err)
{
    reports_t *r = arg;
    assert_true(r->n < 4);
    r->id[r->n] = ej->seq.id;
    sl_engine_job_report(ej, how, err, &r->rep[r->n]);
    strncpy(r->error[r->n], r->rep[r->n].error, sizeof(r->error[0]) - 1);
    r->rep[r->n].error = r->error[r->n];
    r->n++;
}

static job_t *s_job(uint64_t id, uint32_t prompt, uint32_t out)
{
    job_t *j = calloc(1, sizeof(*j));
    j->ej.seq.id = id;
    j->ej.seq.interactive = 1;
    j->ej.seq.prompt_len = prompt;
    j->ej.seq.max_new_tokens = out;
    j->ej.seq.out = j->out;
    return j;
}

static void s_assert_same(const sl_result_report_t *a, const sl_result_report_t *b)
{
    assert_int_equal(a->res.status, b->res.status);
    assert_int_equal(a->res.output_tokens, b->res.output_tokens);
    assert_int_equal(a->res.cached_tokens, b->res.cached_tokens);
    assert_int_equal(a->res.exec_ttft, b->res.exec_ttft);
    assert_int_equal(a->res.exec_queue, b->res.exec_queue);
    assert_int_equal(a->res.has_exec_queue, b->res.has_exec_queue);
    assert_int_equal(a->res.exec_end, b->res.exec_end);
    assert_int_equal(a->prompt_tokens, b->prompt_tokens);
    assert_int_equal(a->n_tokens, b->n_tokens);
    if (a->n_tokens)
        assert_memory_equal(a->tokens, b->tokens, a->n_tokens * sizeof(uint32_t));
    assert_string_equal(a->error ? a->error : "", b->error ? b->error : "");
}

static void test_report_survives_the_wire(void **state)
{
    reports_t r;
    memset(&r, 0, sizeof(r));
    sl_engine_cfg_t cfg;
    sl_sim_cfg_t sim;
    sl_cfg_defaults(sl_engine_cfg_fields, &cfg);
    sl_cfg_defaults(sl_sim_cfg_fields, &sim);
    cfg.max_batch = 1; /* the third job waits behind the first, and is canceled there */
    sim.max_context = 512;
    sl_backend_params_t p = {.kv_block_tokens = 16, .sim = &sim};
    sl_engine_cb_t cb = {.done = s_done, .arg = &r};
    sl_engine_t *e = NULL;
    assert_int_equal(sl_engine_create(&cfg, sl_backend_find("sim"), &p, &cb, &e), SL_OK);
    job_t *ok = s_job(1, 448, 64), *bad = s_job(2, 512, 64), *gone = s_job(3, 64, 8);
    /* an odd start, so that no duration is a whole number of microseconds by chance */
    sl_time_t now = SL_MS(5) + 337;
    sl_engine_submit(e, &ok->ej, now);
    sl_engine_submit(e, &bad->ej, now);
    sl_engine_submit(e, &gone->ej, now);
    now = sl_engine_advance(e, now);
    assert_int_equal(sl_engine_cancel(e, 3, now + 123), SL_OK);
    while (sl_engine_jobs(e) > 0) {
        sl_time_t next = sl_engine_advance(e, now);
        if (next != INT64_MAX && next > now)
            now = next;
    }
    assert_int_equal(r.n, 3);

    void *ctx = zmq_ctx_new();
    void *tx = zmq_socket(ctx, ZMQ_PAIR), *rx = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(rx, "inproc://report"), 0);
    assert_int_equal(zmq_connect(tx, "inproc://report"), 0);
    sl_wire_batch_t b;
    sl_wire_batch_init(&b, SL_WIRE_COMPLETIONS);
    for (int i = 0; i < r.n; i++)
        assert_int_equal(sl_wire_completion_add(&b, 100 + r.id[i], &r.rep[i]), SL_OK);
    assert_int_equal(sl_wire_batch_send(tx, NULL, &b, 0), SL_OK);

    sl_wire_msg_t *msg = NULL;
    sl_wire_ident_t from;
    char err[160];
    sl_proto_limits_t lim = sl_proto_limits_default;
    assert_int_equal(sl_wire_recv(rx, 0, 0, &lim, &from, &msg, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(msg), SL_WIRE_COMPLETIONS);
    assert_int_equal(sl_wire_msg_count(msg), 3);
    int statuses = 0;
    for (uint32_t i = 0; i < 3; i++) {
        sl_wire_completion_t c;
        sl_wire_completion_get(msg, i, &c);
        assert_int_equal(c.job_seq, 100 + r.id[i]);
        s_assert_same(&r.rep[i], &c.report);
        statuses |= 1 << c.report.res.status;
    }
    /* the three endings were all there */
    assert_int_equal(statuses, (1 << SL_JOB_OK) | (1 << SL_JOB_FAILED) | (1 << SL_JOB_CANCELED));
    sl_wire_msg_free(&msg);
    sl_wire_batch_fini(&b);
    zmq_close(tx);
    zmq_close(rx);
    zmq_ctx_term(ctx);
    sl_engine_destroy(&e);
    free(ok);
    free(bad);
    free(gone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_survives_the_wire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
