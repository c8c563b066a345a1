/*
 * sluice-bench qos: traffic classes under contention. One sending engine
 * runs a critical stream and a background stream to the same peer, both
 * trying to saturate the link, then the background stream alone. Every
 * second it prints the bytes and shares of each class against the link
 * capacity measured at the start of the run (sl_xport_link_probe: critical
 * puts alone, walking the region like the streams, median of short windows).
 *
 * Shares are taken from the engine's per-class byte counters, i.e. bytes
 * whose UCX operations completed, over whole one-second windows after a
 * warm-up of each phase (--warmup-ms, printed).
 */
#include <sluice/xport.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "transport/testing/sl_xport_harness.h"

typedef struct qos_cfg {
    char tls[SL_CFG_STR_MAX]; /* UCX_TLS */
    int both_s;               /* seconds with both streams */
    int alone_s;              /* seconds with background alone */
    int crit_kib;             /* critical transfer size */
    int bg_kib;               /* background transfer size */
    int window;               /* transfers in flight per stream */
    double probe_s;           /* link probe duration */
    int warmup_ms;            /* unmeasured start of each phase */
} qos_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_FIELD(qos_cfg_t, tls, "tls", "tcp", SL_CFG_STR, "UCX transports (UCX_TLS)"),
    SL_CFG_RANGE(qos_cfg_t, both_s, "both-seconds", "5", SL_CFG_INT, 1, 600,
                 "seconds with critical and background streams"),
    SL_CFG_RANGE(qos_cfg_t, alone_s, "alone-seconds", "3", SL_CFG_INT, 1, 600,
                 "seconds with the background stream alone"),
    SL_CFG_RANGE(qos_cfg_t, crit_kib, "critical-kib", "1024", SL_CFG_INT, 4, 65536,
                 "size of each critical transfer (KV blocks)"),
    SL_CFG_RANGE(qos_cfg_t, bg_kib, "background-kib", "4096", SL_CFG_INT, 4, 65536,
                 "size of each background transfer (weights, checkpoints)"),
    SL_CFG_RANGE(qos_cfg_t, window, "window", "64", SL_CFG_INT, 1, 1024,
                 "transfers each stream keeps posted"),
    SL_CFG_RANGE(qos_cfg_t, probe_s, "probe-seconds", "2", SL_CFG_DOUBLE, 0.1, 60,
                 "link capacity probe duration"),
    SL_CFG_RANGE(qos_cfg_t, warmup_ms, "warmup-ms", "1000", SL_CFG_INT, 0, 60000,
                 "unmeasured start of each phase (queues fill, windows open)"),
    SL_CFG_END,
};

#define S_REGION (64u << 20)

typedef struct stream {
    sl_xport_xfer_t x;    /* template transfer */
    sl_xport_block_t blk; /* its block */
    int inflight;         /* posted, not completed */
    int failed;           /* completed with an error */
    uint64_t next;        /* next offset */
    uint64_t span;        /* offsets cycle below this */
} stream_t;

static void s_cb(void *arg, sl_status_t st)
{
    stream_t *s = arg;
    s->inflight--;
    if (st != SL_OK)
        s->failed++;
}

static sl_status_t s_fill(sl_xport_t *xp, sl_xport_peer_t *conn, stream_t *s, int window)
{
    while (s->inflight < window) {
        s->blk.local_off = s->blk.remote_off = s->next;
        s->next = (s->next + s->blk.len) % s->span;
        sl_status_t st = sl_xport_post(xp, conn, &s->x);
        if (st != SL_OK)
            return st;
        s->inflight++;
    }
    return SL_OK;
}

int sl_bench_qos_main(int argc, char **argv)
{
    qos_cfg_t qc;
    sl_xport_cfg_t cfg;
    sl_xport_t *xp = NULL;
    sl_xport_mem_t *mem = NULL;
    sl_xport_peer_t *conn = NULL;
    uint32_t rid = 0;
    void *region = NULL;
    sl_xport_harness_t peer = {0};
    bool peer_up = false;
    double cap = 0;
    int rc = 1;
    int early;

    sl_xport_harness_main_maybe(argc, argv);
    early = sl_bench_cfg_main(s_table, &qc, argc, argv);

    if (early >= 0)
        return early;
    setenv("UCX_TLS", qc.tls, 1);
    /* engine knobs come from the SLUICE_XPORT_* environment */
    if (sl_cfg_load(sl_xport_cfg_table, &cfg, 1, argv, NULL, NULL) != SL_OK)
        goto out;
    if (posix_memalign(&region, 4096, S_REGION))
        goto out;
    memset(region, 0x5a, S_REGION);
    if (sl_xport_create(&cfg, &xp) != SL_OK ||
        sl_xport_mem_register(xp, region, S_REGION, SL_XPORT_MEM_HOST, &mem) != SL_OK) {
        fprintf(stderr, "sluice-bench qos: engine setup failed\n");
        goto out;
    }
    /* the peer sleeps on its engine's descriptor between events, as a
     * daemon would (this program re-executed: the transport's peer harness) */
    sl_xport_harness_opts_t po = {.region_len = S_REGION, .seed = 1, .exec_arg = "qos"};
    if (sl_xport_harness_start(xp, mem, &po, &peer) != SL_OK) {
        fprintf(stderr, "sluice-bench qos: starting the peer failed\n");
        goto out;
    }
    peer_up = true;
    conn = peer.conn;
    rid = peer.rid;
    if (sl_xport_link_probe(xp, conn, mem, rid, 1u << 20, qc.probe_s, &cap) != SL_OK) {
        fprintf(stderr, "sluice-bench qos: link probe failed\n");
        goto out;
    }

    stream_t cs = {.blk = {0, 0, (uint64_t)qc.crit_kib << 10}};
    stream_t bs = {.blk = {0, 0, (uint64_t)qc.bg_kib << 10}};
    cs.x = (sl_xport_xfer_t){.op = SL_XPORT_PUT,
                             .cls = SL_XPORT_CRITICAL,
                             .local = mem,
                             .remote = rid,
                             .blocks = &cs.blk,
                             .nblocks = 1,
                             .cb = s_cb,
                             .cb_arg = &cs};
    bs.x = cs.x;
    bs.x.cls = SL_XPORT_BACKGROUND;
    bs.x.blocks = &bs.blk;
    bs.x.cb_arg = &bs;
    /* both streams walk the whole region, as the probe does, so that the
     * capacity and the streams move the same memory */
    cs.span = S_REGION - cs.blk.len;
    bs.span = S_REGION - bs.blk.len;

    printf("# sluice-bench qos: UCX_TLS=%s, link capacity %.1f MiB/s (critical 1 MiB puts over the "
           "region, %.1f s, median of %d ms windows), background share %.2f, chunk %d KiB, "
           "%d KiB in flight, warm-up %d ms per phase\n",
           qc.tls, cap / (1 << 20), qc.probe_s, cfg.probe_window_ms, cfg.bg_share, cfg.chunk_kib,
           cfg.inflight_kib, qc.warmup_ms);
    printf("%-6s %-10s %12s %12s %9s %9s %9s\n", "second", "phase", "crit_MiB", "bg_MiB",
           "crit_shr", "bg_shr", "link_util");

    double bg_share_max = 0, crit_share_min = 1, util_min = 1e9, bg_alone_max = 0;
    int second = 0;
    for (int phase = 0; phase < 2; phase++) {
        int secs = phase == 0 ? qc.both_s : qc.alone_s;
        sl_time_t t = sl_clock_now(), warm = t + SL_MS(qc.warmup_ms), mark = 0;
        sl_xport_stats_t s0, s1;
        int n = -1;
        while (n < secs) {
            if (phase == 0 && s_fill(xp, conn, &cs, qc.window) != SL_OK)
                goto out;
            if (s_fill(xp, conn, &bs, qc.window) != SL_OK)
                goto out;
            sl_xport_progress(xp);
            sl_time_t now = sl_clock_now();
            if (n < 0 && now >= warm) {
                n = 0;
                mark = now;
                sl_xport_stats(xp, &s0);
            } else if (n >= 0 && now >= mark + SL_NS_PER_S) {
                sl_xport_stats(xp, &s1);
                double dt = (double)(now - mark) / 1e9;
                double c = (double)(s1.bytes[SL_XPORT_CRITICAL] - s0.bytes[SL_XPORT_CRITICAL]) / dt;
                double b =
                    (double)(s1.bytes[SL_XPORT_BACKGROUND] - s0.bytes[SL_XPORT_BACKGROUND]) / dt;
                double tot = c + b > 0 ? c + b : 1;
                printf("%-6d %-10s %12.1f %12.1f %9.3f %9.3f %9.3f\n", ++second,
                       phase == 0 ? "both" : "bg-alone", c / (1 << 20), b / (1 << 20), c / tot,
                       b / tot, (c + b) / cap);
                fflush(stdout);
                if (phase == 0) {
                    if (b / tot > bg_share_max)
                        bg_share_max = b / tot;
                    if (c / tot < crit_share_min)
                        crit_share_min = c / tot;
                    if ((c + b) / cap < util_min)
                        util_min = (c + b) / cap;
                } else if (b / cap > bg_alone_max) {
                    bg_alone_max = b / cap;
                }
                s0 = s1;
                mark = now;
                n++;
            }
        }
        /* the critical stream stops: let its transfers finish */
        while (cs.inflight > 0)
            sl_xport_progress(xp);
    }
    while (bs.inflight > 0)
        sl_xport_progress(xp);
    if (cs.failed || bs.failed) {
        fprintf(stderr, "sluice-bench qos: %d transfers failed\n", cs.failed + bs.failed);
        goto out;
    }
    printf("RESULT capacity_mibs=%.1f bg_share_max=%.3f critical_share_min=%.3f "
           "link_util_min=%.3f bg_alone_share_max=%.3f tls=%s\n",
           cap / (1 << 20), bg_share_max, crit_share_min, util_min, bg_alone_max, qc.tls);
    rc = 0;
out:
    if (peer_up && sl_xport_harness_stop(xp, &peer) != 0 && rc == 0) {
        fprintf(stderr, "sluice-bench qos: the peer did not exit cleanly\n");
        rc = 1;
    }
    sl_xport_mem_deregister(xp, &mem);
    sl_xport_destroy(&xp);
    free(region);
    return rc;
}
