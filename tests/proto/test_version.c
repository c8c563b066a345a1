/*
 * The version rule against the real scheduler: a message of another
 * protocol version is refused with SL_ERR_MSG_VERSION on either port and
 * counted (msgs_wrong_version), and the scheduler goes on serving. The
 * version 1 messages are built here with protobuf-c, as a peer of that
 * version would send them (only proto/'s tests may).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <zmq.h>

#include "proto/sl_proto.h"
#include "tests/integration/cluster.h"
#include "tests/support/sl_test.h"

/* A version 1 message: a SubmitBatch of one job, or a hello. */
static size_t s_old_message(bool hello, uint8_t *buf)
{
    Sluice__Prompt p = SLUICE__PROMPT__INIT;
    Sluice__Job j = SLUICE__JOB__INIT;
    Sluice__Submit s = SLUICE__SUBMIT__INIT, *sp = &s;
    Sluice__SubmitBatch sb = SLUICE__SUBMIT_BATCH__INIT;
    Sluice__ExecutorHello h = SLUICE__EXECUTOR_HELLO__INIT;
    sl_msg_t env = SLUICE__ENVELOPE__INIT;
    p.length = 10;
    j.id = "old-1";
    j.prompt = &p;
    j.max_new_tokens = 2;
    s.job = &j;
    sb.submits = &sp;
    sb.n_submits = 1;
    h.name = "old-exec";
    h.slots = 4;
    env.version = 1;
    if (hello) {
        env.body_case = SLUICE__ENVELOPE__BODY_HELLO;
        env.hello = &h;
    } else {
        env.body_case = SLUICE__ENVELOPE__BODY_SUBMITS;
        env.submits = &sb;
    }
    return sluice__envelope__pack(&env, buf);
}

/* The Error that answers on sock within 5 s. */
static sl_wire_error_t s_error(void *sock, char *msg, size_t cap)
{
    sl_wire_msg_t *m = cl_recv(sock, 5000);
    assert_non_null(m);
    assert_int_equal(sl_wire_msg_kind(m), SL_WIRE_ERROR);
    sl_wire_error_t e;
    sl_wire_error_get(m, &e);
    snprintf(msg, cap, "%s", e.message);
    e.message = msg;
    e.job_id = "";
    sl_wire_msg_free(&m);
    return e;
}

static void test_other_version_refused(void **state)
{
    (void)state;
    static cl_t c;
    const char *exec_args[] = {"--backend=null", "--log-level=warn", NULL};
    uint8_t buf[512];
    char msg[256];
    cl_init(&c, "version");
    cl_scheduler(&c, NULL);
    cl_executor(&c, "e1", exec_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 1, 10000), 0);

    /* client port: a version 1 SubmitBatch */
    size_t len = s_old_message(false, buf);
    assert_int_equal(zmq_send(cli, buf, len, 0), (int)len);
    sl_wire_error_t e = s_error(cli, msg, sizeof(msg));
    assert_int_equal(e.code, SL_ERR_MSG_VERSION);
    assert_non_null(strstr(e.message, "protocol version 1 (expected 2)"));

    /* executor port: a version 1 hello */
    void *old = zmq_socket(c.zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(old, ZMQ_LINGER, &zero, sizeof(zero));
    cl_secure(old, &c.executor_key, &c);
    assert_int_equal(zmq_connect(old, c.exec_ep), 0);
    len = s_old_message(true, buf);
    assert_int_equal(zmq_send(old, buf, len, 0), (int)len);
    e = s_error(old, msg, sizeof(msg));
    assert_int_equal(e.code, SL_ERR_MSG_VERSION);
    assert_non_null(strstr(e.message, "protocol version 1 (expected 2)"));
    zmq_close(old);

    /* counted, and nothing else changed: the job still runs when sent right */
    cl_submit(cli, "new-1", 10, 2, 0);
    int done = 0;
    while (!done) {
        cl_ev_t ev;
        assert_true(cl_next(cli, 10000, &ev));
        if (ev.kind == CL_EV_RESULT) {
            assert_string_equal(ev.job_id, "new-1");
            assert_int_equal(ev.result.status, SL_JOB_OK);
            done = 1;
        }
        cl_ev_free(&ev);
    }
    sl_wire_msg_t *st = cl_status(cli, 2000);
    assert_non_null(st);
    assert_int_equal(cl_counter(st, "msgs_wrong_version"), 2);
    assert_int_equal(cl_counter(st, "msgs_rejected_client"), 1);
    assert_int_equal(cl_counter(st, "msgs_rejected_executor"), 1);
    assert_int_equal(cl_counter(st, "executors_joined"), 1);
    sl_wire_msg_free(&st);
    zmq_close(cli);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_other_version_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
