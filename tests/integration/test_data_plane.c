/*
 * Executors that embed the transport (--data-plane on), with the real
 * programs. Two sim executors and a null one with a data plane and a sim one
 * without register with a real scheduler; its status reply says which have one and the size
 * of the KV region each registered, and jobs still run. Then
 * the test stands in as the scheduler (a ROUTER on the executor endpoint),
 * takes the engine address and packed key from an executor's hello, and,
 * as a third UCX engine over TCP, puts bytes at both ends of the executor's
 * registered region: the puts complete, so the region is really registered
 * and reachable; a put one byte past its end is refused before it is sent.
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

#include <sluice/xport.h>

#include "cluster.h"
#include "common/sl_clock.h"
#include "tests/support/sl_test.h"

/* 64 blocks x 16 tokens x 1,024 bytes: a 1 MiB region. */
#define S_REGION_BYTES (64u * 16u * 1024u)

static const char *const s_dp_args[] = {"--backend=sim",        "--data-plane=on",
                                        "--data-plane-tls=tcp", "--sim-kv-blocks=64",
                                        "--kv-block-tokens=16", "--kv-bytes-per-token=1024",
                                        "--log-level=info",     NULL};

/* Two sim executors and a null one with a data plane, and one without: the
 * status reply tells them apart, with the region size each registered; jobs
 * still run. */
static void test_status_shows_data_plane(void **state)
{
    (void)state;
    static cl_t c;
    const char *plain_args[] = {"--backend=sim", NULL};
    /* null declares no KV: its region is --kv-blocks x --kv-block-tokens x bytes */
    const char *null_args[] = {"--backend=null",      "--data-plane=on",          "--kv-blocks=32",
                               "--kv-block-tokens=8", "--kv-bytes-per-token=512", NULL};
    cl_init(&c, "dpstatus");
    cl_scheduler(&c, NULL);
    int a = cl_executor(&c, "dp-a", (const char *const *)s_dp_args);
    cl_executor(&c, "dp-b", (const char *const *)s_dp_args);
    cl_executor(&c, "plain", plain_args);
    cl_executor(&c, "dp-null", null_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 4, 15000), 0);
    sl_wire_msg_t *st = cl_status(cli, 2000);
    assert_non_null(st);
    assert_int_equal(cl_status_execs(st), 4);
    int with = 0;
    for (uint32_t i = 0; i < 4; i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        if (strcmp(e.name, "plain") == 0) {
            assert_false(e.data_plane);
            assert_int_equal(e.kv_region_bytes, 0);
        } else if (strcmp(e.name, "dp-null") == 0) {
            assert_true(e.data_plane);
            assert_int_equal(e.kv_region_bytes, 32u * 8u * 512u);
        } else {
            assert_true(e.data_plane);
            assert_int_equal(e.kv_region_bytes, S_REGION_BYTES);
            with++;
        }
    }
    assert_int_equal(with, 2);
    sl_wire_msg_free(&st);
    assert_true(cl_log_has(&c, a, "data plane: UCX_TLS tcp, address"));
    char want[64];
    snprintf(want, sizeof(want), "KV region %u bytes (stand-in", S_REGION_BYTES);
    assert_true(cl_log_has(&c, a, want));

    /* `sluice status` shows the region in its DATA_PLANE column */
    static char out[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice status --endpoint %s --wait-timeout-ms 10000 %s",
             sl_test_bin(), c.client_ep, c.client_keys);
    assert_int_equal(sl_test_run(cmd, out, sizeof(out)), 0);
    char *head = strstr(out, "DATA_PLANE KV_MOVED\n");
    char *row_a = strstr(out, "\ndp-a "), *row_plain = strstr(out, "\nplain ");
    char *end_a = row_a ? strchr(row_a + 1, '\n') : NULL;
    char *end_plain = row_plain ? strchr(row_plain + 1, '\n') : NULL;
    char *mib_a = row_a ? strstr(row_a, " 1.0MiB ") : NULL;
    if (!head || !end_a || !end_plain || !mib_a || mib_a > end_a ||
        strncmp(end_plain - 2, " -", 2) != 0)
        fail_msg("sluice status does not show the data plane:\n%s", out);

    /* the data plane changes nothing for jobs */
    for (int i = 0; i < 12; i++) {
        char id[32];
        snprintf(id, sizeof(id), "dp-job-%d", i);
        cl_submit(cli, id, 32, 4, 0);
    }
    int ok = 0;
    for (int tries = 0; tries < 200 && ok < 12; tries++) {
        cl_ev_t ev;
        if (!cl_next(cli, 100, &ev))
            continue;
        if (ev.kind == CL_EV_RESULT && ev.result.status == SL_JOB_OK)
            ok++;
        cl_ev_free(&ev);
    }
    assert_int_equal(ok, 12);
    zmq_close(cli);
    cl_fini(&c);
}

/* Whether the status shows n live executors with a data plane, each with
 * `ok` peers reached and none unreachable. */
static int s_peers_are(void *cli, uint32_t n, uint32_t ok)
{
    sl_wire_msg_t *st = cl_status(cli, 2000);
    if (!st)
        return 0;
    uint32_t good = 0, live = 0;
    for (uint32_t i = 0; i < cl_status_execs(st); i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        if (!e.alive || !e.data_plane)
            continue;
        live++;
        good += e.peers_reachable == ok && e.peers_unreachable == 0;
    }
    sl_wire_msg_free(&st);
    return live == n && good == n;
}

/* Three executors with a data plane: the scheduler hands each the other two,
 * each reads from both peers' regions and reports them reached; one killed,
 * the other two drop it (not counted unreachable). */
static void test_peers_reach(void **state)
{
    (void)state;
    static cl_t c;
    const char *sched_args[] = {"--heartbeat-ms=100", "--missed-heartbeats=5", NULL};
    cl_init(&c, "dppeers");
    cl_scheduler(&c, sched_args);
    int a = cl_executor(&c, "pa", (const char *const *)s_dp_args);
    cl_executor(&c, "pb", (const char *const *)s_dp_args);
    int x = cl_executor(&c, "pc", (const char *const *)s_dp_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 3, 15000), 0);
    sl_time_t until = sl_clock_now() + SL_MS(10000);
    while (!s_peers_are(cli, 3, 2) && sl_clock_now() < until)
        usleep(50000);
    if (!s_peers_are(cli, 3, 2))
        fail_msg("the three executors do not each reach their two peers");
    assert_true(cl_log_has(&c, a, "data plane: peer "));

    /* `sluice status` shows 2 of 2 */
    static char out[1 << 14];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s/sluice status --endpoint %s --wait-timeout-ms 10000 %s",
             sl_test_bin(), c.client_ep, c.client_keys);
    assert_int_equal(sl_test_run(cmd, out, sizeof(out)), 0);
    char *row_a = strstr(out, "\npa ");
    char *end_a = row_a ? strchr(row_a + 1, '\n') : NULL;
    char *dp_a = row_a ? strstr(row_a, " 1.0MiB 2/2 0.0/0.0 res=0 refused=0 classes=") : NULL;
    if (!end_a || !dp_a || dp_a > end_a)
        fail_msg("sluice status does not show 2 of 2 peers:\n%s", out);

    cl_kill(&c, x, SIGKILL);
    until = sl_clock_now() + SL_MS(10000);
    while (!s_peers_are(cli, 2, 1) && sl_clock_now() < until)
        usleep(50000);
    if (!s_peers_are(cli, 2, 1))
        fail_msg("the two survivors do not each show one peer reached");
    zmq_close(cli);
    cl_fini(&c);
}

/* Whether the status shows executor `name` alive with `ok` peers reached and
 * `bad` unreachable. */
static int s_exec_peers(void *cli, const char *name, uint32_t ok, uint32_t bad)
{
    sl_wire_msg_t *st = cl_status(cli, 2000);
    int found = 0;
    for (uint32_t i = 0; st && i < cl_status_execs(st); i++) {
        sl_wire_exec_status_t e = cl_status_exec(st, i);
        found |= e.alive && strcmp(e.name, name) == 0 && e.peers_reachable == ok &&
                 e.peers_unreachable == bad;
    }
    sl_wire_msg_free(&st);
    return found;
}

/* An executor whose engine offers only shared memory and one that offers
 * only TCP share no transport: each reports the other unreachable. */
static void test_peers_unreachable(void **state)
{
    (void)state;
    static cl_t c;
    const char *shm_args[] = {"--backend=sim",
                              "--data-plane=on",
                              "--data-plane-tls=posix,sysv,self",
                              "--sim-kv-blocks=64",
                              "--kv-block-tokens=16",
                              "--kv-bytes-per-token=1024",
                              "--peer-check-timeout-ms=1000",
                              "--log-level=info",
                              NULL};
    /* each engine logs the failed endpoint creation at error level */
    sl_test_expect_errors("ucp_ep_create", 2, 2);
    cl_init(&c, "dpunreach");
    cl_scheduler(&c, NULL);
    cl_executor(&c, "tcp-a", (const char *const *)s_dp_args);
    int shm = cl_executor(&c, "shm-b", shm_args);
    void *cli = cl_client(&c);
    assert_int_equal(cl_wait_executors(&c, cli, 2, 15000), 0);
    sl_time_t until = sl_clock_now() + SL_MS(10000);
    while (!(s_exec_peers(cli, "tcp-a", 0, 1) && s_exec_peers(cli, "shm-b", 0, 1)) &&
           sl_clock_now() < until)
        usleep(50000);
    if (!s_exec_peers(cli, "tcp-a", 0, 1) || !s_exec_peers(cli, "shm-b", 0, 1))
        fail_msg("executors with no common transport do not report each other unreachable");
    assert_true(cl_log_has(&c, shm, "unreachable"));
    zmq_close(cli);
    cl_fini(&c);
}

static void s_done(void *arg, sl_status_t st)
{
    *(sl_status_t *)arg = st;
}

/* Put len bytes of src at remote offset off, then the notification
 * notif (notif_len bytes, none when 0); returns the completion status (or
 * the post's error). */
static sl_status_t s_put_notif(sl_xport_t *xp, sl_xport_peer_t *peer, sl_xport_mem_t *local,
                               uint32_t remote, uint64_t off, uint64_t len, const void *notif,
                               size_t notif_len)
{
    sl_status_t done = SL_ERR_AGAIN;
    sl_xport_block_t b = {.local_off = 0, .remote_off = off, .len = len};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = local,
                         .remote = remote,
                         .blocks = &b,
                         .nblocks = 1,
                         .notif = notif,
                         .notif_len = notif_len,
                         .cb = s_done,
                         .cb_arg = &done};
    sl_status_t st = sl_xport_post(xp, peer, &x);
    if (st != SL_OK)
        return st;
    /* the executor progresses its engine from its poll loop; allow it time */
    sl_time_t until = sl_clock_now() + SL_MS(20000);
    while (done == SL_ERR_AGAIN && sl_clock_now() < until)
        sl_xport_progress(xp);
    return done;
}

static sl_status_t s_put(sl_xport_t *xp, sl_xport_peer_t *peer, sl_xport_mem_t *local,
                         uint32_t remote, uint64_t off, uint64_t len)
{
    return s_put_notif(xp, peer, local, remote, off, len, NULL, 0);
}

/* The KV notification's header (docs/TRANSPORT.md, "KV moves"). */
typedef struct s_kv_notif {
    uint32_t magic, version;
    uint64_t job_seq, nonce;
    uint32_t first_block, n_blocks, n_out, streamed;
} s_kv_notif_t;

/* The test as the scheduler and as a peer engine: the executor's hello
 * carries an address and key that a put into its region completes with. */
static void test_put_into_executor_region(void **state)
{
    (void)state;
    static cl_t c;
    cl_init(&c, "dpput");
    void *sched = zmq_socket(c.zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(sched, ZMQ_LINGER, &zero, sizeof(zero));
    cl_secure(sched, &c.server_key, &c);
    assert_int_equal(zmq_bind(sched, c.exec_ep), 0);
    int x = cl_executor(&c, "dp-x", (const char *const *)s_dp_args);
    sl_wire_ident_t who;
    sl_wire_msg_t *m = NULL;
    char err[256];
    static uint8_t addr[8192], rkey[4096];
    size_t addr_len = 0, rkey_len = 0;
    uint64_t region = 0;
    for (;;) { /* its hello */
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        assert_int_equal(zmq_poll(&it, 1, 10000), 1);
        assert_int_equal(
            sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)), SL_OK);
        int hello = sl_wire_msg_kind(m) == SL_WIRE_HELLO;
        if (hello) {
            sl_wire_hello_t h;
            sl_wire_hello_get(m, &h);
            assert_true(h.xport_address_len > 0 && h.xport_address_len <= sizeof(addr));
            assert_true(h.kv_rkey_len > 0 && h.kv_rkey_len <= sizeof(rkey));
            memcpy(addr, h.xport_address, h.xport_address_len);
            memcpy(rkey, h.kv_rkey, h.kv_rkey_len);
            addr_len = h.xport_address_len;
            rkey_len = h.kv_rkey_len;
            region = h.info.kv_region_bytes;
        }
        sl_wire_msg_free(&m);
        if (hello)
            break;
    }
    sl_wire_welcome_t w = {.heartbeat_ms = 100};
    assert_int_equal(sl_wire_welcome_send(sched, &who, &w, 0), SL_OK);
    assert_int_equal(region, S_REGION_BYTES);

    setenv("UCX_TLS", "tcp", 1);
    sl_xport_cfg_t cfg;
    sl_xport_t *xp = NULL;
    sl_xport_peer_t *peer = NULL;
    sl_xport_mem_t *mem = NULL;
    uint32_t remote = 0;
    static uint8_t buf[64 * 1024];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_int_equal(sl_xport_mem_register(xp, buf, sizeof(buf), SL_XPORT_MEM_HOST, &mem), SL_OK);
    assert_int_equal(sl_xport_connect(xp, addr, addr_len, &peer), SL_OK);
    assert_int_equal(sl_xport_rkey_import(xp, peer, rkey, rkey_len, &remote), SL_OK);
    /* the region's first and last 64 KiB, then one byte past its end */
    assert_int_equal(s_put(xp, peer, mem, remote, 0, sizeof(buf)), SL_OK);
    assert_int_equal(s_put(xp, peer, mem, remote, region - sizeof(buf), sizeof(buf)), SL_OK);
    assert_int_equal(s_put(xp, peer, mem, remote, region - sizeof(buf) + 1, sizeof(buf)),
                     SL_ERR_MSG_RANGE);
    sl_xport_stats_t stats;
    sl_xport_stats(xp, &stats);
    assert_int_equal(stats.xfers_ok, 2);
    assert_int_equal(stats.bytes[SL_XPORT_CRITICAL], 2 * sizeof(buf));

    /* Junk after the data, and a well-formed notification for a job it
     * holds no reservation for: each is refused and counted, none harms it. */
    static uint8_t junk[SL_XPORT_NOTIF_MAX];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 131 + 17);
    struct {
        s_kv_notif_t h;
        uint32_t token;
    } forged = {{0x564b4c53u, 1, 12345, 7, 0, 1, 1, 0}, 3};
    assert_int_equal(s_put_notif(xp, peer, mem, remote, 0, 64, junk, 17), SL_OK);
    assert_int_equal(s_put_notif(xp, peer, mem, remote, 0, 64, junk, sizeof(junk)), SL_OK);
    assert_int_equal(s_put_notif(xp, peer, mem, remote, 0, 64, &forged, sizeof(forged)), SL_OK);
    uint64_t refused = 0;
    for (sl_time_t until = sl_clock_now() + SL_MS(10000); refused < 3 && sl_clock_now() < until;) {
        zmq_pollitem_t it = {.socket = sched, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 200) != 1)
            continue;
        assert_int_equal(
            sl_wire_recv(sched, 1, 0, &sl_proto_limits_default, &who, &m, err, sizeof(err)), SL_OK);
        if (sl_wire_msg_kind(m) == SL_WIRE_HEARTBEAT) {
            uint64_t seq;
            sl_exec_load_t load;
            sl_wire_heartbeat_get(m, &seq, &load);
            refused = load.kv.notifs_refused;
        }
        sl_wire_msg_free(&m);
    }
    assert_int_equal(refused, 3);
    assert_true(cl_log_has(&c, x, "refused a KV notification for job 12345"));
    sl_xport_disconnect(xp, &peer);
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);

    /* the executor is still well and stops cleanly */
    cl_kill(&c, x, SIGTERM);
    assert_int_equal(cl_wait(&c, x, 10000), 0);
    assert_true(cl_log_has(&c, x, "executor dp-x stopped"));
    zmq_close(sched);
    cl_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_shows_data_plane),
        cmocka_unit_test(test_peers_reach),
        cmocka_unit_test(test_peers_unreachable),
        cmocka_unit_test(test_put_into_executor_region),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
