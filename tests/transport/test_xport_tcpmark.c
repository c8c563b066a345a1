/*
 * UCX's TCP sockets carry their class's IP TOS byte
 * (transport/sl_xport_tcpmark.c), over real UCX (UCX_TLS=tcp on lo) between
 * two engines in this process: after transfers in each class, every TCP
 * connection of the process is marked, both of its ends with the same
 * byte, and each class's byte is on its connections (getsockopt); then the
 * packets on lo (a packet socket, where the test may open one) carry those
 * bytes. A ZeroMQ pair marked with the daemons' default --tos shows the
 * control sockets' byte on both ends too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <sluice/xport.h>

#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_daemon_cfg.h"
#include "proto/sl_wire_mark.h"
#include "tests/support/sl_test.h"
#include "transport/sl_xport_int.h"

#define REGION (4u << 20)
#define MAX_CONN 256

/* One established TCP connection end of this process. */
typedef struct conn {
    uint16_t lport; /* local port */
    uint16_t pport; /* peer port */
    int tos;        /* its TOS byte */
} conn_t;

/* The process's established TCP sockets on IPv4 (listening ones left out). */
static unsigned s_conns(conn_t *out, unsigned cap)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) && n < cap) {
        int fd = atoi(e->d_name), v = 0;
        struct stat st;
        struct sockaddr_in a, b;
        socklen_t l = sizeof(v), la = sizeof(a), lb = sizeof(b);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) || !S_ISSOCK(st.st_mode))
            continue;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) || v != SOCK_STREAM)
            continue;
        if (getsockname(fd, (struct sockaddr *)&a, &la) || a.sin_family != AF_INET ||
            getpeername(fd, (struct sockaddr *)&b, &lb))
            continue;
        l = sizeof(v);
        assert_int_equal(getsockopt(fd, IPPROTO_IP, IP_TOS, &v, &l), 0);
        out[n].lport = ntohs(a.sin_port);
        out[n].pport = ntohs(b.sin_port);
        out[n].tos = v;
        n++;
    }
    closedir(d);
    return n;
}

typedef struct pair {
    sl_xport_t *a, *b;       /* two engines */
    uint8_t *abuf, *bbuf;    /* their regions */
    sl_xport_mem_t *am, *bm; /* registered */
    sl_xport_peer_t *ab;     /* a's peer b */
    sl_xport_peer_t *ba;     /* b's peer a (b's notifications and gets go nowhere) */
    uint32_t rkey;           /* b's region at a */
    int done, failed;        /* transfer completions */
    int notifs;              /* notifications b received */
    int pkt;                 /* packet socket on lo, or -1 */
    unsigned long pkts[256]; /* TCP payload packets seen per TOS byte */
    conn_t conns[MAX_CONN];  /* connection ends at the last look */
    unsigned nconns;         /* their number */
} pair_t;

static void s_done(void *arg, sl_status_t st)
{
    pair_t *p = arg;
    p->done++;
    p->failed += st != SL_OK;
}

static void s_notif(void *arg, const void *data, size_t len)
{
    (void)data;
    (void)len;
    ((pair_t *)arg)->notifs++;
}

/* Count the TOS byte of the TCP packets with payload on lo since last time,
 * for packets between two of the process's connection ends. */
static void s_sniff(pair_t *p)
{
    uint8_t buf[128];
    ssize_t r;
    if (p->pkt < 0)
        return;
    while ((r = recv(p->pkt, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC)) > 0) {
        const struct iphdr *ip = (const struct iphdr *)buf;
        if ((size_t)r < sizeof(*ip) + 20 || ip->protocol != IPPROTO_TCP)
            continue;
        size_t ihl = (size_t)ip->ihl * 4;
        const uint8_t *tcp = buf + ihl;
        size_t doff = (size_t)(tcp[12] >> 4) * 4;
        if ((size_t)ntohs(ip->tot_len) > ihl + doff) /* carries data, not a bare ACK */
            p->pkts[ip->tos]++;
    }
}

static void s_progress(pair_t *p, int ms)
{
    sl_time_t end = sl_clock_now() + SL_MS(ms);
    while (sl_clock_now() < end) {
        sl_xport_progress(p->a);
        sl_xport_progress(p->b);
        s_sniff(p);
    }
}

static void s_wait(pair_t *p, int n)
{
    sl_time_t end = sl_clock_now() + SL_MS(30000);
    while (p->done < n) {
        sl_xport_progress(p->a);
        sl_xport_progress(p->b);
        s_sniff(p);
        assert_true(sl_clock_now() < end);
    }
    assert_int_equal(p->failed, 0);
}

static int s_setup(void **state)
{
    pair_t *p = calloc(1, sizeof(*p));
    sl_xport_cfg_t cfg;
    void *key;
    size_t len;
    const void *addr;

    assert_non_null(p);
    p->pkt = -1;
    setenv("UCX_TLS", "tcp", 1);
    unsetenv("UCX_NET_DEVICES");
    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    snprintf(cfg.net_devices, sizeof(cfg.net_devices), "lo");
    cfg.mark_interval_ms = 10;
    assert_int_equal(sl_xport_create(&cfg, &p->a), SL_OK);
    assert_int_equal(sl_xport_create(&cfg, &p->b), SL_OK);
    sl_xport_set_notif_handler(p->b, s_notif, p);
    p->abuf = calloc(1, REGION);
    p->bbuf = calloc(1, REGION);
    assert_non_null(p->abuf);
    assert_non_null(p->bbuf);
    assert_int_equal(sl_xport_mem_register(p->a, p->abuf, REGION, SL_XPORT_MEM_HOST, &p->am),
                     SL_OK);
    assert_int_equal(sl_xport_mem_register(p->b, p->bbuf, REGION, SL_XPORT_MEM_HOST, &p->bm),
                     SL_OK);
    assert_int_equal(sl_xport_address(p->b, &addr, &len), SL_OK);
    assert_int_equal(sl_xport_connect(p->a, addr, len, &p->ab), SL_OK);
    assert_int_equal(sl_xport_mem_pack(p->b, p->bm, &key, &len), SL_OK);
    assert_int_equal(sl_xport_rkey_import(p->a, p->ab, key, len, &p->rkey), SL_OK);
    free(key);
    *state = p;
    return 0;
}

static int s_teardown(void **state)
{
    pair_t *p = *state;
    if (p->pkt >= 0)
        close(p->pkt);
    sl_xport_destroy(&p->a);
    sl_xport_destroy(&p->b);
    free(p->abuf);
    free(p->bbuf);
    free(p);
    return 0;
}

/* Put the region a to b in class cls, with a notification (control). */
static void s_put(pair_t *p, sl_xport_class_t cls, int *posted)
{
    sl_xport_block_t blk = {0, 0, REGION};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = cls,
                         .local = p->am,
                         .remote = p->rkey,
                         .blocks = &blk,
                         .nblocks = 1,
                         .notif = "landed",
                         .notif_len = 6,
                         .cb = s_done,
                         .cb_arg = p};
    assert_int_equal(sl_xport_post(p->a, p->ab, &x), SL_OK);
    (*posted)++;
}

/* The connection end matching c's other end, or NULL. */
static const conn_t *s_other_end(const pair_t *p, const conn_t *c)
{
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i].lport == c->pport && p->conns[i].pport == c->lport)
            return &p->conns[i];
    return NULL;
}

/* After a transfer in each class: every connection end is marked with a
 * class's byte, both ends of a connection alike, and every class's byte is
 * on some connection. */
static void test_sockets_marked(void **state)
{
    pair_t *p = *state;
    int posted = 0;
    s_put(p, SL_XPORT_CRITICAL, &posted);
    s_put(p, SL_XPORT_BACKGROUND, &posted);
    s_wait(p, posted);
    s_progress(p, 100); /* scans find the sockets accepted from a */
    assert_int_equal(p->notifs, 2);

    p->nconns = s_conns(p->conns, MAX_CONN);
    print_message("  %u connection ends\n", p->nconns);
    assert_true(p->nconns >= 2 * SL_XPORT_NCLASS);
    int seen[256] = {0};
    for (unsigned i = 0; i < p->nconns; i++) {
        const conn_t *c = &p->conns[i], *o = s_other_end(p, c);
        print_message("  %u -> %u tos %d\n", c->lport, c->pport, c->tos);
        assert_true(c->tos == 184 || c->tos == 104 || c->tos == 32);
        assert_non_null(o); /* both ends are in this process */
        assert_int_equal(o->tos, c->tos);
        seen[c->tos]++;
    }
    assert_true(seen[184] >= 2);
    assert_true(seen[104] >= 2);
    assert_true(seen[32] >= 2);
    assert_true(p->a->mark.marked[SL_XPORT_CRITICAL] >= 1);
    assert_true(p->b->mark.marked[SL_XPORT_CRITICAL] >= 1); /* accepted by b, found by a scan */
}

/* The packets on lo carry the bytes: a critical and a background transfer
 * (with notifications on control) put TCP payload on the wire only under
 * the three class bytes, each present. Needs a packet socket (root). */
static void test_packets_marked(void **state)
{
    pair_t *p = *state;
    int posted = 0;

    p->pkt = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
    if (p->pkt < 0) {
        print_message("  skipped: no packet socket (%s); getsockopt checked only\n",
                      strerror(errno));
        return;
    }
    struct sockaddr_ll ll = {.sll_family = AF_PACKET,
                             .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = (int)if_nametoindex("lo")};
    int rcvbuf = 8 << 20;
    assert_true(ll.sll_ifindex > 0);
    assert_int_equal(bind(p->pkt, (struct sockaddr *)&ll, sizeof(ll)), 0);
    (void)setsockopt(p->pkt, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    /* packets of the connections set up before the capture started only */
    s_put(p, SL_XPORT_CRITICAL, &posted);
    s_wait(p, posted);
    s_progress(p, 50);
    memset(p->pkts, 0, sizeof(p->pkts));
    for (int i = 0; i < 4; i++) {
        s_put(p, SL_XPORT_CRITICAL, &posted);
        s_put(p, SL_XPORT_BACKGROUND, &posted);
    }
    s_wait(p, posted);
    s_progress(p, 50);
    unsigned long other = 0;
    for (int t = 0; t < 256; t++)
        if (t != 184 && t != 104 && t != 32)
            other += p->pkts[t];
    print_message("  data packets: tos 184 %lu, 104 %lu, 32 %lu, other %lu\n", p->pkts[184],
                  p->pkts[104], p->pkts[32], other);
    assert_true(p->pkts[104] > 0);
    assert_true(p->pkts[32] > 0);
    assert_true(p->pkts[184] > 0);
    assert_int_equal(other, 0);
}

/* Marking off (xport-mark-interval-ms=0): UCX's sockets stay at TOS 0, so
 * the marks above are the engine's doing. */
static void test_marking_off(void **state)
{
    sl_xport_cfg_t cfg;
    sl_xport_t *a = NULL, *b = NULL;
    sl_xport_peer_t *peer = NULL;
    const void *addr;
    size_t len;
    conn_t conns[MAX_CONN];
    (void)state;

    setenv("UCX_TLS", "tcp", 1);
    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    snprintf(cfg.net_devices, sizeof(cfg.net_devices), "lo");
    cfg.mark_interval_ms = 0;
    assert_int_equal(sl_xport_create(&cfg, &a), SL_OK);
    assert_int_equal(sl_xport_create(&cfg, &b), SL_OK);
    assert_int_equal(sl_xport_address(b, &addr, &len), SL_OK);
    assert_int_equal(sl_xport_connect(a, addr, len, &peer), SL_OK);
    sl_time_t end = sl_clock_now() + SL_MS(100);
    while (sl_clock_now() < end) {
        sl_xport_progress(a);
        sl_xport_progress(b);
    }
    unsigned n = s_conns(conns, MAX_CONN);
    assert_true(n > 0);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(conns[i].tos, 0);
    sl_xport_disconnect(a, &peer);
    sl_xport_destroy(&a);
    sl_xport_destroy(&b);
}

/* The daemons' control sockets: --tos defaults to the control class's byte,
 * and ZeroMQ puts it on both ends of a marked pair (the connecting socket
 * and the one the bound socket accepted). */
static void test_control_sockets(void **state)
{
    sl_daemon_cfg_t dcfg;
    sl_xport_cfg_t xcfg;
    conn_t conns[MAX_CONN];
    char ep[64];
    size_t eplen = sizeof(ep);
    (void)state;

    assert_int_equal(sl_cfg_defaults(sl_daemon_cfg_fields, &dcfg), SL_OK);
    assert_int_equal(sl_xport_cfg_defaults(&xcfg), SL_OK);
    assert_int_equal(dcfg.tos, 184);
    assert_int_equal(dcfg.tos, sl_xport_class_tos(&xcfg, SL_XPORT_CONTROL));

    void *ctx = zmq_ctx_new(), *r = zmq_socket(ctx, ZMQ_ROUTER), *d = zmq_socket(ctx, ZMQ_DEALER);
    assert_int_equal(sl_wire_sock_mark(r, dcfg.tos), SL_OK);
    assert_int_equal(sl_wire_sock_mark(d, dcfg.tos), SL_OK);
    assert_int_equal(zmq_bind(r, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, ep, &eplen), 0);
    assert_int_equal(zmq_connect(d, ep), 0);
    assert_int_equal(zmq_send(d, "hi", 2, 0), 2);
    char buf[16];
    assert_true(zmq_recv(r, buf, sizeof(buf), 0) > 0); /* identity */
    assert_int_equal(zmq_recv(r, buf, sizeof(buf), 0), 2);
    uint16_t port = (uint16_t)atoi(strrchr(ep, ':') + 1);
    unsigned n = s_conns(conns, MAX_CONN), ends = 0;
    for (unsigned i = 0; i < n; i++) {
        if (conns[i].lport != port && conns[i].pport != port)
            continue;
        assert_int_equal(conns[i].tos, 184);
        ends++;
    }
    assert_int_equal(ends, 2);
    zmq_close(d);
    zmq_close(r);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sockets_marked, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_packets_marked, s_setup, s_teardown),
        cmocka_unit_test(test_marking_off),
        cmocka_unit_test(test_control_sockets),
    };
    return cmocka_run_group_tests_name("xport_tcpmark", tests, NULL, NULL);
}
