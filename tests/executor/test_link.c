/*
 * The executor's link against a fake scheduler (a ROUTER in the same
 * ZeroMQ context). Threaded: messages pass both ways unchanged, heartbeats
 * keep their pace while the engine thread posts nothing (a long step),
 * carry the last load posted with the CPU measured and the GPU unknown,
 * stop after the stall timeout and while not welcomed, and resume with a
 * post. Inline: the engine thread's socket is the DEALER and heartbeats go
 * out from sl_link_tick when due, and only then.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/sl_clock.h"
#include "executor/sl_link.h"

#define S_BEAT_MS 20   /* heartbeat interval */
#define S_STALL_MS 400 /* engine silence that stops heartbeats */

typedef struct {
    void *zctx;
    void *router; /* the fake scheduler */
    sl_link_t *link;
    sl_wire_ident_t exec; /* the executor's identity at the router */
} s_fix_t;

/* The next message at the router within timeout_ms (NULL when none). */
static sl_wire_msg_t *s_router_recv(s_fix_t *f, int timeout_ms)
{
    zmq_pollitem_t it = {f->router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    char err[256];
    sl_wire_msg_t *m = NULL;
    assert_int_equal(
        sl_wire_recv(f->router, 1, 0, &sl_proto_limits_default, &f->exec, &m, err, sizeof(err)),
        SL_OK);
    return m;
}

/* Heartbeats at the router during ms; the last one's load into *last. */
static int s_count_beats(s_fix_t *f, int ms, uint64_t *seq, sl_exec_load_t *last)
{
    int n = 0;
    sl_time_t until = sl_clock_now() + SL_MS(ms);
    for (sl_time_t now; (now = sl_clock_now()) < until;) {
        sl_wire_msg_t *m = s_router_recv(f, (int)((until - now) / SL_NS_PER_MS) + 1);
        if (!m)
            continue;
        assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_HEARTBEAT);
        uint64_t hseq;
        sl_exec_load_t load;
        sl_wire_heartbeat_get(m, &hseq, &load);
        assert_true(hseq > *seq); /* in order, none repeated */
        *seq = hseq;
        if (last)
            *last = load;
        n++;
        sl_wire_msg_free(&m);
    }
    return n;
}

/* A fake scheduler and a link to it; returns the engine thread's socket. */
static void *s_start(s_fix_t *f, bool threaded)
{
    memset(f, 0, sizeof(*f));
    f->zctx = zmq_ctx_new();
    assert_non_null(f->zctx);
    f->router = zmq_socket(f->zctx, ZMQ_ROUTER);
    const char *ep = "inproc://test-link-sched";
    assert_int_equal(zmq_bind(f->router, ep), 0);
    sl_link_cfg_t cfg = {
        .endpoint = ep,
        .link_timeout_ms = 3000,
        .max_msg_bytes = 1 << 20,
        .stall_timeout_ms = S_STALL_MS,
        .threaded = threaded,
        .hostload = {.proc_stat = "/proc/stat", .nvml_lib = "", .gpu_index = 0},
    };
    assert_int_equal(sl_link_create(f->zctx, &cfg, &f->link), SL_OK);
    return sl_link_pipe(f->link);
}

static void s_stop(s_fix_t *f)
{
    sl_link_destroy(&f->link);
    assert_null(f->link);
    sl_link_destroy(&f->link); /* NULL-safe */
    zmq_close(f->router);
    zmq_ctx_term(f->zctx);
}

/* Hello from the engine thread's socket to the router, welcome back. */
static void s_register(s_fix_t *f, void *pipe)
{
    sl_wire_hello_t h = {.info = {.name = "e1", .slots = 4}};
    assert_int_equal(sl_wire_hello_send(pipe, &h, 0), SL_OK);
    sl_wire_msg_t *m = s_router_recv(f, 5000);
    assert_non_null(m);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_HELLO);
    sl_wire_hello_get(m, &h);
    assert_string_equal(h.info.name, "e1");
    sl_wire_msg_free(&m);

    sl_wire_welcome_t w = {.heartbeat_ms = S_BEAT_MS, .executor_index = 3};
    assert_int_equal(sl_wire_welcome_send(f->router, &f->exec, &w, 0), SL_OK);
    zmq_pollitem_t it = {pipe, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
    char err[256];
    sl_wire_ident_t none;
    assert_int_equal(
        sl_wire_recv(pipe, 0, 0, &sl_proto_limits_default, &none, &m, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_WELCOME);
    sl_wire_welcome_get(m, &w);
    assert_int_equal(w.executor_index, 3);
    sl_wire_msg_free(&m);
}

static void test_link_heartbeats_while_engine_silent(void **state)
{
    s_fix_t f;
    void *pipe = s_start(&f, true);
    s_register(&f, pipe);

    /* Not welcomed yet: no heartbeats. */
    uint64_t seq = 0;
    assert_int_equal(s_count_beats(&f, 3 * S_BEAT_MS, &seq, NULL), 0);

    /* One post, then silence (the engine thread in a long step): heartbeats
     * go on at their interval with the posted load; 200 ms is ten intervals,
     * at least four are asked for so a loaded machine does not fail it. */
    sl_engine_load_t load = {0};
    load.running = 3;
    load.busy = 0.5f;
    sl_link_post(f.link, true, SL_MS(S_BEAT_MS), &load);
    sl_exec_load_t got;
    int n = s_count_beats(&f, 200, &seq, &got);
    print_message("%d heartbeats in 200 ms at %d ms\n", n, S_BEAT_MS);
    assert_true(n >= 4);
    assert_int_equal(got.running_jobs, 3);
    assert_true(got.busy == 0.5f);
    assert_true(got.has_cpu_util); /* measured by the link thread */
    assert_true(got.cpu_util >= 0.0f && got.cpu_util <= 1.0f);
    assert_false(got.has_gpu_util); /* no NVML asked for: unknown */
    assert_false(got.has_gpu_mem);

    /* Past the stall timeout the heartbeats stop... */
    sl_clock_sleep(SL_MS(S_STALL_MS));
    s_count_beats(&f, 2 * S_BEAT_MS, &seq, NULL); /* those sent before it */
    assert_int_equal(s_count_beats(&f, 5 * S_BEAT_MS, &seq, NULL), 0);
    /* ...and a post resumes them, with the new load. */
    load.running = 5;
    sl_link_post(f.link, true, SL_MS(S_BEAT_MS), &load);
    assert_true(s_count_beats(&f, 200, &seq, &got) >= 2);
    assert_int_equal(got.running_jobs, 5);

    /* Not welcomed any more: they stop at once. */
    sl_link_post(f.link, false, SL_MS(S_BEAT_MS), NULL);
    s_count_beats(&f, 2 * S_BEAT_MS, &seq, NULL);
    assert_int_equal(s_count_beats(&f, 5 * S_BEAT_MS, &seq, NULL), 0);

    s_stop(&f);
}

static void test_link_inline(void **state)
{
    s_fix_t f;
    void *pipe = s_start(&f, false);
    s_register(&f, pipe);
    sl_time_t now = sl_clock_now();
    assert_true(sl_link_tick(f.link, now) == INT64_MAX); /* not welcomed: none due */
    sl_engine_load_t load = {0};
    load.waiting = 7;
    sl_link_post(f.link, true, SL_MS(S_BEAT_MS), &load);
    /* The first one interval after the welcome; nothing goes out by itself. */
    sl_time_t due = sl_link_tick(f.link, sl_clock_now());
    assert_true(due > now && due <= sl_clock_now() + SL_MS(S_BEAT_MS));
    uint64_t seq = 0;
    assert_int_equal(s_count_beats(&f, 3 * S_BEAT_MS, &seq, NULL), 0);
    /* Due now: the tick sends it, with the posted load, and names the next. */
    now = sl_clock_now();
    sl_time_t next = sl_link_tick(f.link, now);
    assert_true(next > now && next <= now + SL_MS(S_BEAT_MS));
    sl_exec_load_t got;
    assert_int_equal(s_count_beats(&f, 100, &seq, &got), 1);
    assert_int_equal(got.queued_jobs, 7);
    assert_true(got.has_cpu_util);
    assert_false(got.has_gpu_util);
    /* Not due: nothing. */
    assert_true(sl_link_tick(f.link, next - 1) == next);
    assert_int_equal(s_count_beats(&f, 2 * S_BEAT_MS, &seq, NULL), 0);
    s_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_link_heartbeats_while_engine_silent),
        cmocka_unit_test(test_link_inline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
