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
#include <netinet/tcp.h>
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
#include "transport/testing/sl_xport_harness.h"

#define REGION (4u << 20)
#define MAX_CONN 256

/* One established TCP connection end of this process. */
typedef struct conn {
    uint16_t lport; /* local port */
    uint16_t pport; /* peer port */
    int tos;        /* its TOS byte */
    char cc[16];    /* its TCP congestion control */
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
        l = sizeof(out[n].cc);
        memset(out[n].cc, 0, sizeof(out[n].cc));
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, out[n].cc, &l), 0);
        n++;
    }
    closedir(d);
    return n;
}

/* Packets on lo of a known set of connections. */
typedef struct sniff {
    int fd;                  /* packet socket on lo, or -1 */
    conn_t conns[MAX_CONN];  /* the connection ends whose packets count */
    unsigned nconns;         /* their number */
    unsigned long pkts[256]; /* their data packets per TOS byte */
    unsigned long wrong;     /* data packets whose byte is not their connection's */
} sniff_t;

typedef struct pair {
    sl_xport_t *a, *b;       /* two engines */
    uint8_t *abuf, *bbuf;    /* their regions */
    sl_xport_mem_t *am, *bm; /* registered */
    sl_xport_peer_t *ab;     /* a's peer b */
    sl_xport_peer_t *ba;     /* b's peer a (b's notifications and gets go nowhere) */
    uint32_t rkey;           /* b's region at a */
    int done, failed;        /* transfer completions */
    int notifs;              /* notifications b received */
    sniff_t sn;              /* packets and connections */
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

/* Open a packet socket on lo; false (and a message) where it cannot be. */
static bool s_sniff_open(sniff_t *sn)
{
    sn->fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
    if (sn->fd < 0) {
        print_message("  skipped: no packet socket (%s); getsockopt checked only\n",
                      strerror(errno));
        return false;
    }
    struct sockaddr_ll ll = {.sll_family = AF_PACKET,
                             .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = (int)if_nametoindex("lo")};
    int rcvbuf = 64 << 20; /* lo's packets are large: room for a burst */
    assert_true(ll.sll_ifindex > 0);
    assert_int_equal(bind(sn->fd, (struct sockaddr *)&ll, sizeof(ll)), 0);
    (void)setsockopt(sn->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
    return true;
}

/* Count the TOS bytes of the data packets on lo since last time that belong
 * to one of sn's connections (either direction: other programs' traffic on
 * lo is not counted), and those whose byte is not their connection's. */
static void s_sniff(sniff_t *sn)
{
    uint8_t buf[128];
    ssize_t r;
    if (sn->fd < 0)
        return;
    while ((r = recv(sn->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC)) > 0) {
        const struct iphdr *ip = (const struct iphdr *)buf;
        if ((size_t)r < sizeof(*ip) + 20 || ip->protocol != IPPROTO_TCP)
            continue;
        size_t ihl = (size_t)ip->ihl * 4;
        const uint8_t *tcp = buf + ihl;
        size_t doff = (size_t)(tcp[12] >> 4) * 4;
        uint16_t sport = (uint16_t)(tcp[0] << 8 | tcp[1]), dport = (uint16_t)(tcp[2] << 8 | tcp[3]);
        if ((size_t)ntohs(ip->tot_len) <= ihl + doff)
            continue; /* a bare ACK */
        for (unsigned i = 0; i < sn->nconns; i++) {
            const conn_t *c = &sn->conns[i];
            if ((c->lport == sport && c->pport == dport) ||
                (c->lport == dport && c->pport == sport)) {
                sn->pkts[ip->tos]++;
                sn->wrong += ip->tos != c->tos;
                break;
            }
        }
    }
}

static void s_progress(pair_t *p, int ms)
{
    sl_time_t end = sl_clock_now() + SL_MS(ms);
    while (sl_clock_now() < end) {
        sl_xport_progress(p->a);
        sl_xport_progress(p->b);
        s_sniff(&p->sn);
    }
}

static void s_wait(pair_t *p, int n)
{
    sl_time_t end = sl_clock_now() + SL_MS(30000);
    while (p->done < n) {
        sl_xport_progress(p->a);
        sl_xport_progress(p->b);
        s_sniff(&p->sn);
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
    p->sn.fd = -1;
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
    if (p->sn.fd >= 0)
        close(p->sn.fd);
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
static const conn_t *s_other_end(const sniff_t *sn, const conn_t *c)
{
    for (unsigned i = 0; i < sn->nconns; i++)
        if (sn->conns[i].lport == c->pport && sn->conns[i].pport == c->lport)
            return &sn->conns[i];
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

    sniff_t *sn = &p->sn;
    sn->nconns = s_conns(sn->conns, MAX_CONN);
    print_message("  %u connection ends\n", sn->nconns);
    assert_true(sn->nconns >= 2 * SL_XPORT_NCLASS);
    int seen[256] = {0};
    for (unsigned i = 0; i < sn->nconns; i++) {
        const conn_t *c = &sn->conns[i], *o = s_other_end(sn, c);
        print_message("  %u -> %u tos %d %s\n", c->lport, c->pport, c->tos, c->cc);
        assert_true(c->tos == 184 || c->tos == 104 || c->tos == 32);
        /* xport-tcp-congestion (cubic): set with the mark, where this
         * process may set it (root, or a host that allows it) */
        if (!p->a->mark.cc_refused && !p->b->mark.cc_refused)
            assert_string_equal(c->cc, "cubic");
        assert_non_null(o); /* both ends are in this process */
        assert_int_equal(o->tos, c->tos);
        seen[c->tos]++;
    }
    assert_true(seen[184] >= 2);
    assert_true(seen[104] >= 2);
    assert_true(seen[32] >= 2);
    assert_true(p->a->mark.marked[SL_XPORT_CRITICAL] >= 1);
    /* b's listening socket, and the connection it accepted, found by a scan */
    assert_true(p->b->mark.marked[SL_XPORT_CRITICAL] >= 2);
    assert_true(p->b->mark.scans > 0);
    if (p->a->mark.cc_refused || p->b->mark.cc_refused)
        print_message("  congestion control not checked: cubic refused (not root, and not in "
                      "net.ipv4.tcp_allowed_congestion_control)\n");
    else
        assert_true(p->a->mark.cc_set >= 1 && p->b->mark.cc_set >= 2);
}

/* The packets on lo carry the bytes: critical transfers (with
 * notifications on control) put TCP payload on the wire under critical's
 * and control's bytes alone, background transfers under background's and
 * control's. Needs a packet socket (root). */
static void test_packets_marked(void **state)
{
    pair_t *p = *state;
    int posted = 0;

    if (!s_sniff_open(&p->sn))
        return;
    /* the connections are made by a first transfer, then counted */
    s_put(p, SL_XPORT_CRITICAL, &posted);
    s_put(p, SL_XPORT_BACKGROUND, &posted);
    s_wait(p, posted);
    s_progress(p, 50);
    p->sn.nconns = s_conns(p->sn.conns, MAX_CONN);
    /* one class at a time: its data goes under its byte, the notifications
     * under control's */
    static const sl_xport_class_t cls[2] = {SL_XPORT_CRITICAL, SL_XPORT_BACKGROUND};
    static const int byte[2] = {104, 32};
    for (int r = 0; r < 2; r++) {
        const unsigned long *k = p->sn.pkts;
        memset(p->sn.pkts, 0, sizeof(p->sn.pkts));
        p->sn.wrong = 0;
        for (int i = 0; i < 4; i++)
            s_put(p, cls[r], &posted);
        s_wait(p, posted);
        s_progress(p, 50);
        print_message("  %s: data packets tos 184 %lu, 104 %lu, 32 %lu, not their "
                      "connection's %lu\n",
                      r ? "background" : "critical", k[184], k[104], k[32], p->sn.wrong);
        /* the idle class's connection carries UCX's keepalives only */
        assert_true(k[byte[r]] > 100);
        assert_true(k[byte[!r]] * 100 < k[byte[r]]);
        assert_true(k[184] > 0);
        for (int t = 0; t < 256; t++)
            if (t != 184 && t != 104 && t != 32)
                assert_int_equal(k[t], 0);
        assert_int_equal(p->sn.wrong, 0);
    }
}

/* The listening ports of this process's TCP sockets into ports; their number. */
static unsigned s_listen_ports(uint16_t *ports, unsigned cap)
{
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) && n < cap) {
        int fd = atoi(e->d_name), v = 0;
        struct stat st;
        struct sockaddr_in a;
        socklen_t l = sizeof(v), la = sizeof(a);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) || !S_ISSOCK(st.st_mode) ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || !v ||
            getsockname(fd, (struct sockaddr *)&a, &la) || a.sin_family != AF_INET)
            continue;
        ports[n++] = ntohs(a.sin_port);
    }
    closedir(d);
    return n;
}

/* Two processes (the peer harness): our engine connects to the peer's and
 * the peer's to ours, each marks what it made and what it accepted. Every
 * connection end here carries a class's byte, those accepted from the
 * peer included, and the packets of these connections (the peer's sends as
 * well as ours) carry their connection's byte. */
static void test_two_processes(void **state)
{
    sl_xport_cfg_t cfg;
    sl_xport_t *xp = NULL;
    sl_xport_mem_t *mem = NULL;
    sl_xport_harness_t h;
    sl_xport_harness_opts_t o = {.region_len = REGION, .seed = 7};
    sniff_t *sn = calloc(1, sizeof(*sn));
    uint8_t *buf = calloc(1, REGION);
    int st = -1;
    (void)state;

    assert_non_null(sn);
    assert_non_null(buf);
    sn->fd = -1;
    setenv("UCX_TLS", "tcp", 1);
    setenv("UCX_NET_DEVICES", "lo", 1); /* the peer's engine too */
    assert_int_equal(sl_xport_cfg_defaults(&cfg), SL_OK);
    cfg.mark_interval_ms = 10;
    assert_int_equal(sl_xport_create(&cfg, &xp), SL_OK);
    assert_int_equal(sl_xport_mem_register(xp, buf, REGION, SL_XPORT_MEM_HOST, &mem), SL_OK);
    assert_int_equal(sl_xport_harness_start(xp, mem, &o, &h), SL_OK);
    bool sniffing = s_sniff_open(sn);

    /* rounds: ours in both data classes with notifications (control), the
     * peer's back to us; the second round is the one whose packets count */
    for (int round = 0; round < 2; round++) {
        int res[2] = {0, 0}; /* completions, failures (s_done's pair_t fields) */
        pair_t *cnt = calloc(1, sizeof(*cnt));
        assert_non_null(cnt);
        for (int c = SL_XPORT_CRITICAL; c <= SL_XPORT_BACKGROUND; c++) {
            sl_xport_block_t blk = {0, 0, REGION};
            sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                                 .cls = (sl_xport_class_t)c,
                                 .local = mem,
                                 .remote = h.rid,
                                 .blocks = &blk,
                                 .nblocks = 1,
                                 .notif = "x",
                                 .notif_len = 1,
                                 .cb = s_done,
                                 .cb_arg = cnt};
            assert_int_equal(sl_xport_post(xp, h.conn, &x), SL_OK);
        }
        sl_time_t limit = sl_clock_now() + SL_MS(30000);
        while (cnt->done < 2) {
            sl_xport_progress(xp);
            s_sniff(sn);
            assert_true(sl_clock_now() < limit);
        }
        res[0] = cnt->done;
        res[1] = cnt->failed;
        free(cnt);
        assert_int_equal(res[1], 0);
        assert_int_equal(sl_xport_harness_put_back(&h, 0, 0, REGION), SL_OK);
        assert_int_equal(sl_xport_harness_put_back_wait(xp, &h, &st), SL_OK);
        assert_int_equal(st, SL_OK);
        sl_time_t end = sl_clock_now() + SL_MS(100);
        while (sl_clock_now() < end) {
            sl_xport_progress(xp);
            s_sniff(sn);
        }
        if (round == 0) {
            sn->nconns = s_conns(sn->conns, MAX_CONN);
            memset(sn->pkts, 0, sizeof(sn->pkts));
            sn->wrong = 0;
        }
    }
    unsetenv("UCX_NET_DEVICES");

    uint16_t lports[64];
    unsigned nl = s_listen_ports(lports, 64), accepted = 0;
    assert_true(sn->nconns >= SL_XPORT_NCLASS);
    for (unsigned i = 0; i < sn->nconns; i++) {
        const conn_t *c = &sn->conns[i];
        print_message("  %u -> %u tos %d\n", c->lport, c->pport, c->tos);
        assert_true(c->tos == 184 || c->tos == 104 || c->tos == 32);
        for (unsigned j = 0; j < nl; j++)
            accepted += c->lport == lports[j];
    }
    /* UCX keeps one connection of each pair, ours or the peer's */
    print_message("  %u of %u connection ends accepted from the peer\n", accepted, sn->nconns);
    if (sniffing) {
        print_message("  data packets: tos 184 %lu, 104 %lu, 32 %lu, not their connection's %lu\n",
                      sn->pkts[184], sn->pkts[104], sn->pkts[32], sn->wrong);
        assert_true(sn->pkts[104] + sn->pkts[32] > 0);
        assert_int_equal(sn->wrong, 0);
        close(sn->fd);
    }
    assert_int_equal(sl_xport_harness_stop(xp, &h), 0);
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);
    free(buf);
    free(sn);
}

/* A listening TCP socket on 127.0.0.1; its port into *port_p. */
static int s_listener(uint16_t *port_p)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port_p = ntohs(a.sin_port);
    return fd;
}

static int s_connect(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static int s_tos_of(int fd)
{
    int v = -1;
    socklen_t l = sizeof(v);
    assert_int_equal(getsockopt(fd, IPPROTO_IP, IP_TOS, &v, &l), 0);
    return v;
}

static void s_set_tos(int fd, int tos)
{
    assert_int_equal(setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos)), 0);
}

/* The marker alone on plain sockets standing in for UCX's: the rules, one
 * by one, with no UCX and no timer. */
static void test_marker_rules(void **state)
{
    const int tos[SL_XPORT_NCLASS] = {184, 104, 32};
    sl_xport_tcpmark_t *m = calloc(1, sizeof(*m));
    uint16_t lport, rport;
    (void)state;
    assert_non_null(m);
    sl_xport_tcpmark_init(m, tos);
    assert_false(sl_xport_tcpmark_active(m));

    /* a listener made while a worker of critical is created */
    sl_xport_tcpmark_begin(m);
    int lis = s_listener(&lport);
    assert_int_equal(sl_xport_tcpmark_end(m, SL_XPORT_CRITICAL), 1);
    assert_true(sl_xport_tcpmark_active(m));
    assert_int_equal(s_tos_of(lis), 104);

    /* a peer connects: the accepted end is critical's; found by a scan even
     * when it did not start with the listener's byte */
    int peer = s_connect(lport), acc = accept(lis, NULL, NULL);
    assert_true(acc >= 0);
    s_set_tos(acc, 0);
    s_set_tos(peer, 0);
    assert_int_equal(sl_xport_tcpmark_scan(m), 1);
    assert_int_equal(s_tos_of(acc), 104);
    assert_int_equal(s_tos_of(peer), 0);           /* its local port is no listener's: not ours */
    assert_int_equal(sl_xport_tcpmark_scan(m), 0); /* known sockets are not looked at again */

    /* a connection made during a connect on background's worker: marked,
     * and its peer's endpoint remembered, so a later connection to it is
     * background's too */
    int remote = s_listener(&rport);
    sl_xport_tcpmark_begin(m);
    int out = s_connect(rport);
    int zmq_like = socket(AF_INET, SOCK_STREAM, 0); /* another thread's, marked already */
    s_set_tos(zmq_like, 184 + 4);
    assert_int_equal(sl_xport_tcpmark_end(m, SL_XPORT_BACKGROUND), 1);
    assert_int_equal(s_tos_of(out), 32);
    assert_int_equal(s_tos_of(zmq_like), 188);
    int again = s_connect(rport);
    assert_int_equal(s_tos_of(again), 0);
    assert_int_equal(sl_xport_tcpmark_scan(m), 1);
    assert_int_equal(s_tos_of(again), 32);
    assert_int_equal(m->marked[SL_XPORT_CRITICAL], 2);
    assert_int_equal(m->marked[SL_XPORT_BACKGROUND], 2);

    /* a socket closed and its number reused is seen anew */
    close(acc);
    int peer2 = s_connect(lport);
    int acc2 = accept(lis, NULL, NULL);
    s_set_tos(acc2, 0);
    assert_int_equal(sl_xport_tcpmark_scan(m), 1);
    assert_int_equal(s_tos_of(acc2), 104);

    int fds[] = {lis, peer, remote, out, zmq_like, again, peer2, acc2};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close(fds[i]);
    sl_xport_tcpmark_fini(m);
    sl_xport_tcpmark_fini(NULL);
    free(m);
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

int main(int argc, char **argv)
{
    sl_xport_harness_main_maybe(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sockets_marked, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_packets_marked, s_setup, s_teardown),
        cmocka_unit_test(test_marker_rules),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_marking_off),
        cmocka_unit_test(test_control_sockets),
    };
    return cmocka_run_group_tests_name("xport_tcpmark", tests, NULL, NULL);
}
