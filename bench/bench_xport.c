/*
 * sluice-bench xport: bandwidth and latency of critical puts through the
 * transport engine, block sizes 4 KiB to 16 MiB and lists of scattered
 * 16 KiB blocks, against ucx_perftest on the same transports and message
 * size in the same run.
 *
 * The peer is a process of the transport's peer harness (this program
 * re-executed, transport/testing/sl_xport_harness.h) that only drives its
 * engine, busy-polling as ucx_perftest does; addresses and keys go over a
 * socketpair.
 * ucx_perftest runs as two child processes (server and client on loopback)
 * with the same UCX_TLS and with error handling on endpoints (-e), which is
 * what the engine uses, so both sides pick the same UCX lanes.
 *
 * The machine this runs on may be shared, so the run alternates: engine,
 * then ucx_perftest, for --rounds rounds, each against a fresh peer, and
 * RESULT gives the median of the per-round ratios (every round is printed).
 */
#include <sluice/xport.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "transport/testing/sl_xport_harness.h"

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
    sl_xport_t *xp;          /* engine */
    sl_xport_harness_t peer; /* peer process */
    sl_xport_peer_t *conn;   /* connection to it (peer.conn) */
    sl_xport_mem_t *mem;     /* local region */
    uint32_t rid;            /* remote region */
    int inflight;            /* transfers posted, not completed */
    int failed;              /* transfers failed */
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
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = r->mem,
                         .remote = r->rid,
                         .blocks = b,
                         .nblocks = nblk,
                         .cb = s_cb,
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
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = r->mem,
                         .remote = r->rid,
                         .blocks = &b,
                         .nblocks = 1,
                         .cb = s_cb,
                         .cb_arg = r};
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
    bool peer_up = false;
    double bw1[MAXR], bwl[MAXR], pf1[MAXR], pf16[MAXR], q1[MAXR], ql[MAXR];
    int rc = 1;
    int early;

    sl_xport_harness_main_maybe(argc, argv);
    early = sl_bench_cfg_main(s_table, &bc, argc, argv);

    if (early >= 0)
        return early;
    setenv("UCX_TLS", bc.tls, 1);
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
        /* a fresh peer each round, re-executing this program */
        sl_xport_harness_opts_t po = {.region_len = S_REGION,
                                      .seed = (uint64_t)i + 1,
                                      .busy_poll = true,
                                      .exec_arg = "xport"};
        if (sl_xport_harness_start(r.xp, r.mem, &po, &r.peer) != SL_OK) {
            fprintf(stderr, "sluice-bench xport: starting the peer failed\n");
            goto out;
        }
        peer_up = true;
        r.conn = r.peer.conn;
        r.rid = r.peer.rid;
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
        r.conn = NULL;
        peer_up = false;
        if (sl_xport_harness_stop(r.xp, &r.peer) != 0) {
            fprintf(stderr, "sluice-bench xport: the peer did not exit cleanly\n");
            goto out;
        }
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
    if (peer_up)
        sl_xport_harness_stop(r.xp, &r.peer);
    sl_xport_mem_deregister(r.xp, &r.mem);
    sl_xport_destroy(&r.xp);
    free(region);
    return rc;
}
