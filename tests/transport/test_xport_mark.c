/*
 * Marking a ZeroMQ socket with a traffic class's IP TOS byte: the class's
 * byte comes from the transport's configuration (sl_xport_class_tos), the
 * socket option is set by proto (sl_wire_sock_mark), and the two combine
 * without the transport linking ZeroMQ. Real ZeroMQ sockets; no UCX engine.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/xport.h>

#include <zmq.h>

#include "proto/sl_wire_mark.h"
#include "tests/support/sl_test.h"

static int s_tos(void *sock)
{
    int tos = -1;
    size_t len = sizeof(tos);
    assert_int_equal(zmq_getsockopt(sock, ZMQ_TOS, &tos, &len), 0);
    return tos;
}

/* The class table: the defaults are DSCP EF, AF31 and CS1; a changed knob
 * is what the class gets; an unknown class has none. */
static void test_class_tos(void **state)
{
    sl_xport_cfg_t cfg;
    (void)state;

    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    assert_int_equal(sl_xport_class_tos(&cfg, SL_XPORT_CONTROL), 184);
    assert_int_equal(sl_xport_class_tos(&cfg, SL_XPORT_CRITICAL), 104);
    assert_int_equal(sl_xport_class_tos(&cfg, SL_XPORT_BACKGROUND), 32);
    cfg.tos[SL_XPORT_CRITICAL] = 136;
    assert_int_equal(sl_xport_class_tos(&cfg, SL_XPORT_CRITICAL), 136);
    assert_int_equal(sl_xport_class_tos(&cfg, SL_XPORT_NCLASS), -1);
    assert_int_equal(sl_xport_class_tos(NULL, SL_XPORT_CONTROL), -1);
}

/* ZMQ_TOS is set per class on a real socket; bad values are refused and
 * leave the mark as it was. */
static void test_sock_mark(void **state)
{
    sl_xport_cfg_t cfg;
    void *ctx = zmq_ctx_new(), *sock;
    (void)state;

    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    assert_non_null(ctx);
    sock = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(sock);
    assert_int_equal(sl_wire_sock_mark(sock, sl_xport_class_tos(&cfg, SL_XPORT_CONTROL)), SL_OK);
    assert_int_equal(s_tos(sock), 184);
    assert_int_equal(sl_wire_sock_mark(sock, sl_xport_class_tos(&cfg, SL_XPORT_BACKGROUND)), SL_OK);
    assert_int_equal(s_tos(sock), 32);
    assert_int_equal(sl_wire_sock_mark(sock, sl_xport_class_tos(&cfg, SL_XPORT_NCLASS)),
                     SL_ERR_INVALID);
    assert_int_equal(sl_wire_sock_mark(sock, 256), SL_ERR_INVALID);
    assert_int_equal(sl_wire_sock_mark(sock, -5), SL_ERR_INVALID);
    assert_int_equal(s_tos(sock), 32);
    assert_int_equal(sl_wire_sock_mark(NULL, 184), SL_ERR_INVALID);
    assert_int_equal(sl_wire_sock_mark(sock, 0), SL_OK);
    assert_int_equal(s_tos(sock), 0);
    zmq_close(sock);

    /* a socket whose context is shutting down refuses the mark, and the
     * refusal is logged */
    sock = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(sock);
    assert_int_equal(zmq_ctx_shutdown(ctx), 0);
    int events;
    size_t len = sizeof(events);
    assert_int_equal(zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len), -1); /* sees the stop */
    sl_test_expect_error("ZMQ_TOS");
    assert_int_equal(sl_wire_sock_mark(sock, 184), SL_ERR_IO);
    zmq_close(sock);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_tos),
        cmocka_unit_test(test_sock_mark),
    };
    return cmocka_run_group_tests_name("xport_mark", tests, NULL, NULL);
}
