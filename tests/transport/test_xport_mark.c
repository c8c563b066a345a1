/*
 * Marking a ZeroMQ socket with a traffic class's IP TOS byte: the class's
 * byte comes from the transport's configuration (sl_xport_class_tos), the
 * socket option is set by proto (sl_wire_sock_mark), and the two combine
 * without the transport linking ZeroMQ. Real ZeroMQ sockets; no UCX engine.
 * The fabric marks (InfiniBand service level, RoCE traffic class) and the
 * NIC pinning reach each class's UCX configuration under the names UCX
 * reads (no RDMA device here, so they are checked in the configuration
 * only, against the names `ucx_info -c -f` lists).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/xport.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "proto/sl_wire_mark.h"
#include "transport/sl_xport_int.h"
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

/* What UCX will read for class cls of an engine with cfg: its
 * configuration printed, with the settings it keeps for its transports. */
static void s_ucx_config(const sl_xport_cfg_t *cfg, int cls, char *out, size_t cap)
{
    ucp_config_t *config;
    assert_int_equal(ucp_config_read(NULL, NULL, &config), UCS_OK);
    sl_xport_ucx_config(cfg, cls, config);
    FILE *f = fmemopen(out, cap, "w");
    assert_non_null(f);
    ucp_config_print(config, f, NULL, UCS_CONFIG_PRINT_CONFIG);
    fclose(f);
    out[cap - 1] = '\0';
    ucp_config_release(config);
}

/* True when text has line as a whole line. */
static bool s_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* Per-class service levels and traffic classes reach every verbs
 * transport's settings in that class's context, and nothing is set for a
 * class left at -1; UCX_NET_DEVICES is set when the knob names devices. */
static void test_fabric_marks(void **state)
{
    static const char *const tls[] = {"RC_VERBS", "RC_MLX5", "DC_MLX5", "UD_VERBS", "UD_MLX5"};
    static char out[1 << 16], info[1 << 18];
    sl_xport_cfg_t cfg;
    char line[96];
    (void)state;

    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    cfg.ib_sl[SL_XPORT_CONTROL] = 5;
    cfg.ib_sl[SL_XPORT_CRITICAL] = 3;
    cfg.roce_tc[SL_XPORT_CONTROL] = 184;
    cfg.roce_tc[SL_XPORT_CRITICAL] = 104;
    snprintf(cfg.net_devices, sizeof(cfg.net_devices), "mlx5_0:1,ens1");
    for (int c = 0; c < SL_XPORT_NCLASS; c++) {
        s_ucx_config(&cfg, c, out, sizeof(out));
        assert_true(s_has_line(out, "UCX_NET_DEVICES=mlx5_0:1,ens1"));
        for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
            snprintf(line, sizeof(line), "%s_SL=", tls[i]);
            if (cfg.ib_sl[c] < 0) {
                assert_null(strstr(out, line));
            } else {
                snprintf(line, sizeof(line), "%s_SL=%d", tls[i], cfg.ib_sl[c]);
                assert_true(s_has_line(out, line));
            }
            snprintf(line, sizeof(line), "%s_TRAFFIC_CLASS=", tls[i]);
            if (cfg.roce_tc[c] < 0) {
                assert_null(strstr(out, line));
            } else {
                snprintf(line, sizeof(line), "%s_TRAFFIC_CLASS=%d", tls[i], cfg.roce_tc[c]);
                assert_true(s_has_line(out, line));
            }
        }
    }
    /* empty: UCX's default devices (nothing set) */
    cfg.net_devices[0] = '\0';
    s_ucx_config(&cfg, SL_XPORT_CRITICAL, out, sizeof(out));
    if (!getenv("UCX_NET_DEVICES"))
        assert_true(s_has_line(out, "UCX_NET_DEVICES=all"));

    /* UCX 1.13 keeps any name it is given for later, so the names are
     * checked against the ones its transports read */
    int rc = sl_test_run("command -v ucx_info >/dev/null && ucx_info -c -f", info, sizeof(info));
    if (rc != 0) {
        print_message("  ucx_info not found: transport setting names not checked\n");
        return;
    }
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
        snprintf(line, sizeof(line), "\nUCX_%s_SL=", tls[i]);
        assert_non_null(strstr(info, line));
        snprintf(line, sizeof(line), "\nUCX_%s_TRAFFIC_CLASS=", tls[i]);
        assert_non_null(strstr(info, line));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_class_tos),
        cmocka_unit_test(test_sock_mark),
        cmocka_unit_test(test_fabric_marks),
    };
    return cmocka_run_group_tests_name("xport_mark", tests, NULL, NULL);
}
