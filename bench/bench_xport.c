/*
 * sluice-bench xport: bandwidth and latency of critical puts through the
 * transport engine, block sizes 4 KiB to 16 MiB and lists of scattered
 * 16 KiB blocks, against ucx_perftest on the same transports and message
 * size in the same run.
 *
 * The peer is a forked process (forked before this process touches UCX)
 * that only drives its engine; addresses and keys go over a socketpair.
 * ucx_perftest runs as two child processes (server and client on loopback)
 * with the same UCX_TLS and with error handling on endpoints (-e), which is
 * what the engine uses, so both sides pick the same UCX lanes.
 *
 * The machine this runs on may be shared, so the run alternates: engine,
 * then ucx_perftest, for --rounds rounds, each against a fresh peer, and
 * RESULT gives the median of the per-round ratios (every round is printed).
 *
 * The peer helpers at the top are shared with bench_qos.c (declared there).
 */
#include <sluice/xport.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"

/* ---- peer process shared with bench_qos.c ----------------------------- */

struct sl_bench_peer {
    pid_t pid; /* peer process */
    int sock;  /* our end of the socketpair */
};

static int s_wr(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int s_rd(int fd, void *b, size_t n)
{
    char *p = b;
    while (n) {
        ssize_t k = read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int s_send_blob(int fd, const void *b, size_t n)
{
    uint64_t l = n;
    return s_wr(fd, &l, 8) || s_wr(fd, b, n) ? -1 : 0;
}

static void *s_recv_blob(int fd, size_t *n_p)
{
    uint64_t l;
    if (s_rd(fd, &l, 8) || l > (1u << 24))
        return NULL;
    void *b = malloc(l ? l : 1);
    if (b && s_rd(fd, b, l)) {
        free(b);
        return NULL;
    }
    *n_p = l;
    return b;
}

/* The peer: an engine with one region, driven until the socket closes;
 * busy-polling like ucx_perftest, or sleeping on the engine's descriptor. */
static int s_peer_main(int fd, size_t region_len, bool sleep)
{
    sl_xport_cfg_t cfg;
    sl_xport_t *xp = NULL;
    sl_xport_mem_t *mem = NULL;
    void *region = NULL, *key = NULL;
    const void *addr;
    size_t alen, klen;
    int rc = 1;

    char go;
    sl_log_set_component("bench-peer");
    /* idle until our turn, so waiting peers take no CPU from the run */
    if (s_rd(fd, &go, 1))
        return 1;
    if (posix_memalign(&region, 4096, region_len))
        return 1;
    memset(region, 0, region_len);
    sl_xport_cfg_defaults(&cfg);
    if (sl_xport_create(&cfg, &xp) != SL_OK)
        goto out;
    if (sl_xport_mem_register(xp, region, region_len, SL_XPORT_MEM_HOST, &mem) != SL_OK ||
        sl_xport_address(xp, &addr, &alen) != SL_OK ||
        sl_xport_mem_pack(xp, mem, &key, &klen) != SL_OK)
        goto out;
    if (s_send_blob(fd, addr, alen) || s_send_blob(fd, key, klen))
        goto out;
    for (unsigned i = 0;; i++) {
        sl_xport_progress(xp);
        if (sleep) {
            struct pollfd p[2] = {{fd, POLLIN, 0}, {sl_xport_fd(xp), POLLIN, 0}};
            if (sl_xport_arm(xp) == SL_OK && poll(p, 2, 100) > 0 && p[0].revents)
                break;
        } else if ((i & 255) == 0) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 0) > 0)
                break;
        }
    }
    rc = 0;
out:
    free(key);
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);
    free(region);
    return rc;
}

/* Fork a peer with a region of region_len bytes; it idles until
 * sl_bench_peer_connect(). Call before this process creates its engine. */
struct sl_bench_peer *sl_bench_peer_spawn(size_t region_len, bool sleep);
struct sl_bench_peer *sl_bench_peer_spawn(size_t region_len, bool sleep)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        SL_ERROR("bench: socketpair: %m");
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        SL_ERROR("bench: fork: %m");
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0) {
        close(sv[0]);
        _exit(s_peer_main(sv[1], region_len, sleep));
    }
    close(sv[1]);
    struct sl_bench_peer *p = calloc(1, sizeof(*p));
    if (!p) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(sv[0]);
        return NULL;
    }
    p->pid = pid;
    p->sock = sv[0];
    return p;
}

/* Connect our engine to the peer and import its region. */
sl_status_t sl_bench_peer_connect(struct sl_bench_peer *p, sl_xport_t *xp,
                                  sl_xport_peer_t **conn_p, uint32_t *rid_p);
sl_status_t sl_bench_peer_connect(struct sl_bench_peer *p, sl_xport_t *xp,
                                  sl_xport_peer_t **conn_p, uint32_t *rid_p)
{
    size_t alen, klen;
    char go = 'g';
    if (s_wr(p->sock, &go, 1))
        return SL_ERR_IO;
    void *addr = s_recv_blob(p->sock, &alen), *key = NULL;
    sl_status_t st = SL_ERR_IO;
    if (addr && (key = s_recv_blob(p->sock, &klen)) &&
        (st = sl_xport_connect(xp, addr, alen, conn_p)) == SL_OK)
        st = sl_xport_rkey_import(xp, *conn_p, key, klen, rid_p);
    free(addr);
    free(key);
    return st;
}

/* Stop the peer and reap it. NULL-safe. */
void sl_bench_peer_stop(struct sl_bench_peer **p_p);
void sl_bench_peer_stop(struct sl_bench_peer **p_p)
{
    struct sl_bench_peer *p = *p_p;
    if (!p)
        return;
    char c = 'q';
    if (s_wr(p->sock, &c, 1))
        kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    close(p->sock);
    free(p);
    *p_p = NULL;
}

/* ---- ucx_perftest ------------------------------------------------------- */

/* Run ucx_perftest put_bw at one message size; MiB/s, or -1 on failure. */
double sl_bench_perftest_bw(const char *tls, size_t size, long iters);
double sl_bench_perftest_bw(const char *tls, size_t size, long iters)
{
    char cmd[512], line[512];
    double bw = -1;
    int port = 20000 + (int)(getpid() % 20000);

    /* the same UCX environment as the engine's (UCX_TLS, and the error
     * handling variables the engine may have set) is inherited */
    snprintf(cmd, sizeof(cmd),
             "UCX_TLS=%s ucx_perftest -p %d >/dev/null 2>&1 & srv=$!; sleep 0.5; "
             "UCX_TLS=%s timeout 120 ucx_perftest 127.0.0.1 -p %d -t ucp_put_bw -e -z -s %zu "
             "-n %ld -w %ld 2>&1; wait $srv",
             tls, port, tls, port, size, iters, iters / 10 + 1);
    FILE *f = popen(cmd, "r");
    if (!f) {
        SL_ERROR("bench: popen(ucx_perftest): %m");
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        double v[8];
        if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5]) == 6)
            bw = v[5]; /* overall bandwidth, MB/s in ucx_perftest's 2^20 units */
    }
    if (pclose(f) != 0 && bw < 0)
        SL_ERROR("bench: ucx_perftest failed (is ucx-utils installed?)");
    return bw;
}

/* ---- the benchmark ------------------------------------------------------ */

typedef struct bench_cfg {
    char tls[SL_CFG_STR_MAX]; /* UCX_TLS for the engines and ucx_perftest */
    double seconds;           /* time per bandwidth point */
    int window;               /* transfers in flight */
    int lat_iters;            /* latency samples per size */
    int rounds;               /* rounds of (engine, ucx_perftest); the median ratio is reported */
} bench_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_FIELD(bench_cfg_t, tls, "tls", "tcp", SL_CFG_STR,
                 "UCX transports for both the engine and ucx_perftest (UCX_TLS)"),
    SL_CFG_RANGE(bench_cfg_t, seconds, "seconds", "1", SL_CFG_DOUBLE, 0.05, 60,
                 "measuring time per bandwidth point"),
    SL_CFG_RANGE(bench_cfg_t, window, "window", "16", SL_CFG_INT, 1, 1024,
                 "transfers kept in flight for bandwidth"),
    SL_CFG_RANGE(bench_cfg_t, lat_iters, "lat-iters", "200", SL_CFG_INT, 10, 100000,
                 "latency samples per block size"),
    SL_CFG_RANGE(bench_cfg_t, rounds, "rounds", "3", SL_CFG_INT, 1, 15,
                 "rounds of engine then ucx_perftest; RESULT gives the median ratios"),
    SL_CFG_END,
};

#define S_REGION (64u << 20)

typedef struct run {
    sl_xport_t *xp;        /* engine */
    sl_xport_peer_t *conn; /* peer */
    sl_xport_mem_t *mem;   /* local region */
    uint32_t rid;          /* remote region */
    int inflight;          /* transfers posted, not completed */
    int failed;            /* transfers failed */
} run_t;

static void s_cb(void *arg, sl_status_t st)
{
    run_t *r = arg;
    r->inflight--;
    if (st != SL_OK)
        r->failed++;
}

/* Keep `window` transfers of `nblk` blocks of `bsz` bytes in flight for
 * `seconds`; return MiB/s of payload completed. */
static double s_bw(run_t *r, size_t bsz, size_t nblk, int window, double seconds)
{
    sl_xport_block_t *b = calloc(nblk, sizeof(*b));
    sl_rand_t rnd;
    size_t slots = S_REGION / bsz;
    uint64_t done0, done1;
    sl_xport_stats_t st;

    sl_rand_seed(&rnd, 42);
    if (!b)
        return -1;
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT, .cls = SL_XPORT_CRITICAL, .local = r->mem,
                         .remote = r->rid, .blocks = b, .nblocks = nblk, .cb = s_cb,
                         .cb_arg = r};
    /* warm up, then measure */
    sl_time_t t0 = 0, end = sl_clock_now() + (sl_time_t)(0.1 * 1e9);
    bool measuring = false;
    sl_xport_stats(r->xp, &st);
    done0 = st.bytes[SL_XPORT_CRITICAL];
    for (;;) {
        sl_time_t now = sl_clock_now();
        if (now >= end) {
            if (measuring)
                break;
            measuring = true;
            sl_xport_stats(r->xp, &st);
            done0 = st.bytes[SL_XPORT_CRITICAL];
            t0 = now;
            end = now + (sl_time_t)(seconds * 1e9);
        }
        while (r->inflight < window) {
            for (size_t i = 0; i < nblk; i++) {
                uint64_t ls = sl_rand_below(&rnd, slots), rs = sl_rand_below(&rnd, slots);
                b[i] = (sl_xport_block_t){ls * bsz, rs * bsz, bsz};
            }
            if (sl_xport_post(r->xp, r->conn, &x) != SL_OK) {
                free(b);
                return -1;
            }
            r->inflight++;
        }
        sl_xport_progress(r->xp);
    }
    sl_time_t t1 = sl_clock_now();
    sl_xport_stats(r->xp, &st);
    done1 = st.bytes[SL_XPORT_CRITICAL];
    while (r->inflight > 0)
        sl_xport_progress(r->xp);
    free(b);
    return (double)(done1 - done0) / (1 << 20) / ((double)(t1 - t0) / 1e9);
}

/* Median and p99 time of one put (with its flush) of bsz bytes, in us. */
static void s_lat(run_t *r, size_t bsz, int iters, double *p50, double *p99)
{
    sl_hist_t *h = malloc(sizeof(*h));
    sl_xport_block_t b = {0, 0, bsz};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT, .cls = SL_XPORT_CRITICAL, .local = r->mem,
                         .remote = r->rid, .blocks = &b, .nblocks = 1, .cb = s_cb, .cb_arg = r};
    if (!h)
        return;
    sl_hist_init(h);
    for (int i = 0; i < iters + 10; i++) {
        sl_time_t t0 = sl_clock_now();
        if (sl_xport_post(r->xp, r->conn, &x) != SL_OK)
            break;
        r->inflight++;
        while (r->inflight > 0)
            sl_xport_progress(r->xp);
        if (i >= 10)
            sl_hist_record(h, (uint64_t)(sl_clock_now() - t0));
    }
    *p50 = (double)sl_hist_quantile(h, 0.5) / 1e3;
    *p99 = (double)sl_hist_quantile(h, 0.99) / 1e3;
    free(h);
}

int sl_bench_xport_main(int argc, char **argv)
{
    enum { MAXR = 15 };
    bench_cfg_t bc;
    sl_xport_cfg_t cfg;
    run_t r = {0};
    void *region = NULL;
    struct sl_bench_peer *peers[MAXR] = {NULL};
    double bw1[MAXR], bwl[MAXR], pf1[MAXR], pf16[MAXR], q1[MAXR], ql[MAXR];
    int rc = 1;
    int early = sl_bench_cfg_main(s_table, &bc, argc, argv);

    if (early >= 0)
        return early;
    setenv("UCX_TLS", bc.tls, 1);
    for (int i = 0; i < bc.rounds; i++)
        if (!(peers[i] = sl_bench_peer_spawn(S_REGION, false)))
            goto out;
    /* engine knobs come from the SLUICE_XPORT_* environment */
    if (sl_cfg_load(sl_xport_cfg_table, &cfg, 1, argv, NULL, NULL) != SL_OK)
        goto out;
    if (posix_memalign(&region, 4096, S_REGION))
        goto out;
    memset(region, 0xa5, S_REGION);
    if (sl_xport_create(&cfg, &r.xp) != SL_OK ||
        sl_xport_mem_register(r.xp, region, S_REGION, SL_XPORT_MEM_HOST, &r.mem) != SL_OK) {
        fprintf(stderr, "sluice-bench xport: engine setup failed\n");
        goto out;
    }

    printf("# sluice-bench xport: critical puts, UCX_TLS=%s, window %d, %.2f s per point, "
           "%d rounds\n",
           bc.tls, bc.window, bc.seconds, bc.rounds);
    for (int i = 0; i < bc.rounds; i++) {
        if (sl_bench_peer_connect(peers[i], r.xp, &r.conn, &r.rid) != SL_OK) {
            fprintf(stderr, "sluice-bench xport: connecting to the peer failed\n");
            goto out;
        }
        if (i == 0) {
            printf("%-10s %12s %12s %12s\n", "block", "MiB/s", "lat_p50_us", "lat_p99_us");
            for (size_t bsz = 4096; bsz <= (16u << 20); bsz *= 4) {
                double p50 = 0, p99 = 0;
                double bw = s_bw(&r, bsz, 1, bc.window, bc.seconds);
                s_lat(&r, bsz, bsz >= (4u << 20) ? bc.lat_iters / 4 : bc.lat_iters, &p50, &p99);
                if (bsz == (1u << 20))
                    bw1[i] = bw;
                printf("%-10zu %12.1f %12.1f %12.1f\n", bsz, bw, p50, p99);
            }
        } else {
            bw1[i] = s_bw(&r, 1u << 20, 1, bc.window, bc.seconds);
        }
        bwl[i] = s_bw(&r, 16384, 64, bc.window, bc.seconds);
        if (i == 0)
            printf("%-10s %12.1f   (lists of 64 scattered 16 KiB blocks, %d lists in flight)\n",
                   "16k-list", bwl[i], bc.window);
        if (r.failed) {
            fprintf(stderr, "sluice-bench xport: %d transfers failed\n", r.failed);
            goto out;
        }
        sl_xport_disconnect(r.xp, &r.conn);
        sl_bench_peer_stop(&peers[i]);
        pf1[i] = sl_bench_perftest_bw(bc.tls, 1u << 20, 2000);
        pf16[i] = sl_bench_perftest_bw(bc.tls, 16384, 50000);
        if (pf1[i] <= 0 || pf16[i] <= 0) {
            fprintf(stderr, "sluice-bench xport: ucx_perftest gave no result\n");
            goto out;
        }
        q1[i] = bw1[i] / pf1[i];
        ql[i] = bwl[i] / pf16[i];
        printf("# round %d: 1 MiB put %.1f MiB/s, ucx_perftest 1 MiB %.1f MiB/s (ratio %.3f); "
               "16k lists %.1f MiB/s, ucx_perftest 16 KiB %.1f MiB/s (ratio %.3f)\n",
               i + 1, bw1[i], pf1[i], q1[i], bwl[i], pf16[i], ql[i]);
        fflush(stdout);
    }
    printf("# ucx_perftest -t ucp_put_bw -e -z (server and client on 127.0.0.1), UCX_TLS=%s\n",
           bc.tls);
    size_t n = (size_t)bc.rounds;
    printf("RESULT bw_1m_mibs=%.1f perftest_1m_mibs=%.1f ratio_1m=%.3f bw_16k_list_mibs=%.1f "
           "perftest_16k_mibs=%.1f ratio_16k_list=%.3f rounds=%d tls=%s\n",
           sl_median(bw1, n), sl_median(pf1, n), sl_median(q1, n), sl_median(bwl, n),
           sl_median(pf16, n), sl_median(ql, n), bc.rounds, bc.tls);
    rc = 0;
out:
    sl_xport_disconnect(r.xp, &r.conn);
    for (int i = 0; i < bc.rounds && i < MAXR; i++)
        sl_bench_peer_stop(&peers[i]);
    sl_xport_mem_deregister(r.xp, &r.mem);
    sl_xport_destroy(&r.xp);
    free(region);
    return rc;
}
