/*
 * sluice-bench kvmove: the KV-cache of a 4,096-token and of a 32,768-token
 * prompt moved between two processes, each holding one transport engine the
 * way two executors do, against ucx_perftest on the same transport and
 * message size in the same run; and the transport's part of a live
 * migration's pause.
 *
 * The KV pool of each side is paged: blocks of --block-tokens tokens of
 * --kv-bytes-per-token bytes, in a region allocated through UCX
 * (sl_xport_mem_alloc), so that a peer on the same host maps it. A move
 * goes as the product sends it: the source asks the destination to reserve
 * blocks, the destination pops them from its free list (shuffled at start,
 * released blocks go to its tail, so a reservation is scattered as a decode
 * executor's would be) and answers with their ids, the source posts one
 * critical-class transfer of all the prompt's blocks into those ids with a
 * notification after the data, and the destination, on the notification,
 * holds the KV. The source's prompt sits in its first blocks in order.
 *
 * Control messages are notifications, and a notification rides on a
 * transfer: a request is a 64-byte record put into the peer's mailbox (the
 * page after its pool), the reservation's block ids are put into the
 * source's mailbox (a notification holds 256 bytes, 60 ids), each followed
 * by its notification. The socketpair between the processes carries only
 * the set-up (addresses and keys) and, after each move, the destination's
 * report (when the notification arrived, on the monotonic clock both
 * processes share, and a hash of the blocks it received), outside anything
 * timed.
 *
 * Figures. KV bandwidth: bytes over the time from the post to the source's
 * completion callback (data landed, flushed, notification sent), after one
 * untimed warm-up move (the first move into a mapped peer pool faults the
 * mapping in page by page). Rounds: both prompts through the engines, the
 * same blocks copied inside this process (memcpy: what memory allows), then
 * ucx_perftest put_bw with the block as message size and as many messages
 * as the prompt has blocks (the destination sleeping then, so it takes no
 * core from the baseline). On shared memory that baseline puts one 256 KiB
 * buffer again and again, which stays in the caches: it measures the
 * caches, not a move of the KV's bytes. So there the ratio divides by
 * ucx_perftest moving the same bytes, the prompt as one message (distinct
 * memory, as the KV is), in rounds of their own after all moves
 * (--baseline; s_whole_baseline says why TCP keeps the block baseline).
 * --alloc=false registers program-allocated pools instead, to show what
 * the allocation changes, and SLUICE_XPORT_DIRECT_COPY=false moves with UCX's
 * put instead of the engine's streaming copy (sl_xport_copy.c).
 * Migration pause: from the source's decision to move a
 * sequence of 4,096 prompt and 256 generated tokens until the destination
 * has its KV and the notification, the reservation round trip included.
 * This is the transport's part only: stopping and resuming the sequence in
 * the executors is not measured here.
 *
 * Alternatives rejected: the transport's peer harness as the destination
 * (it registers application memory and reserves nothing; its socket
 * helpers and address exchange are used); timing the
 * destination's arrival over the socketpair (adds a socket hop to every
 * pause, where the shared clock adds none).
 */
#include <sluice/xport.h>

#include "transport/testing/sl_xport_harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "common/sl_cfg.h"
#include "common/sl_clock.h"
#include "common/sl_hist.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"

/* ucx_perftest put_bw at one message size, MiB/s or -1 (bench_xport.c). */
double sl_bench_perftest_bw(const char *tls, size_t size, long iters);

typedef struct kv_cfg {
    char tls[SL_CFG_STR_MAX];      /* UCX_TLS for the engines and ucx_perftest */
    int block_tokens;              /* tokens per KV block */
    int kv_bytes_per_token;        /* KV bytes of one token (all layers, K and V) */
    int rounds;                    /* rounds of (engines, ucx_perftest) */
    int migrations;                /* moved sequences timed for the pause */
    int timeout_ms;                /* longest wait for the peer's answer */
    bool spin;                     /* the destination busy-polls while moves run */
    bool alloc;                    /* pools allocated through UCX (else registered) */
    bool quick;                    /* small prompts and few rounds, for a test */
    char baseline[SL_CFG_STR_MAX]; /* auto, whole or block: what ratio divides by */
} kv_cfg_t;

static const sl_cfg_field_t s_table[] = {
    SL_CFG_FIELD(kv_cfg_t, tls, "tls", "tcp", SL_CFG_STR,
                 "UCX transports for both engines and ucx_perftest (UCX_TLS), e.g. "
                 "posix,sysv,self"),
    SL_CFG_RANGE(kv_cfg_t, block_tokens, "block-tokens", "16", SL_CFG_INT, 1, 4096,
                 "tokens per KV block"),
    SL_CFG_RANGE(kv_cfg_t, kv_bytes_per_token, "kv-bytes-per-token", "16384", SL_CFG_INT, 64,
                 1 << 22,
                 "KV bytes per token; 16384 is a 1B-class model in bf16 (16 layers x K,V x 4 KV "
                 "heads x 64 dims x 2 bytes)"),
    SL_CFG_RANGE(kv_cfg_t, rounds, "rounds", "9", SL_CFG_INT, 1, 31,
                 "rounds of (both prompts moved, ucx_perftest); RESULT gives median ratios"),
    SL_CFG_RANGE(kv_cfg_t, migrations, "migrations", "21", SL_CFG_INT, 1, 1001,
                 "moved sequences (4,096 + 256 tokens) timed; the median pause is reported"),
    SL_CFG_RANGE(kv_cfg_t, timeout_ms, "timeout-ms", "60000", SL_CFG_INT, 100, 3600000,
                 "longest wait for the destination's answer before the run fails"),
    SL_CFG_FIELD(kv_cfg_t, alloc, "alloc", "true", SL_CFG_BOOL,
                 "pools allocated through UCX (sl_xport_mem_alloc); off: allocated by the "
                 "program and registered (sl_xport_mem_register), for comparison"),
    SL_CFG_FIELD(kv_cfg_t, spin, "spin", "false", SL_CFG_BOOL,
                 "the destination busy-polls during moves (as ucx_perftest's server does); off "
                 "(the default): it sleeps on its engine's descriptor, as an executor's event "
                 "loop does (on this 2-vCPU machine a spinning destination slowed the copy)"),
    SL_CFG_FIELD(kv_cfg_t, baseline, "baseline", "auto", SL_CFG_STR,
                 "what ratio divides by: whole (ucx_perftest with the prompt's bytes as one "
                 "message), block (block-size messages, one buffer again and again), auto "
                 "(whole on shared memory, block on a network transport)"),
    SL_CFG_FIELD(kv_cfg_t, quick, "quick", "false", SL_CFG_BOOL,
                 "prompts of 256 and 1,024 tokens, a 256 + 16 token sequence, 2 rounds, 4 "
                 "migrations (for a test; no figure to keep)"),
    SL_CFG_END,
};

/* ---- what the two sides say to each other ----------------------------- */

#define S_MAGIC 0x4b564d56u /* "KVMV" */

enum { MSG_RESERVE = 1, MSG_RESERVED, MSG_KV };

/* A control message: a notification, and the record put before it. */
typedef struct kv_msg {
    uint32_t magic;   /* S_MAGIC */
    uint32_t kind;    /* MSG_* */
    uint64_t seq;     /* the sequence it is about */
    uint32_t nblocks; /* blocks asked for, reserved (0: refused) or sent */
    uint32_t verify;  /* MSG_KV: the destination hashes what it got */
    uint64_t pad[5];  /* to 64 bytes, the record's size */
} kv_msg_t;

/* The destination's report after a move, over the socketpair. */
typedef struct kv_report {
    uint64_t seq;    /* the sequence */
    int64_t arrived; /* sl_clock_now() when the notification was handled */
    uint64_t hash;   /* hash of its blocks in reservation order (0 unless asked) */
} kv_report_t;

/* Socket commands from the source. */
enum { CMD_BUSY = 1, CMD_IDLE, CMD_EXIT };

/* Layout shared by both sides: pool, then the mailbox: the reply ids, then
 * the request slot (remote writes) and a scratch record (local). */
typedef struct kv_layout {
    uint64_t block;     /* bytes per block */
    uint32_t nblocks;   /* blocks in the pool */
    uint64_t pool;      /* bytes of the pool = mailbox offset */
    uint64_t req_off;   /* request slot */
    uint64_t local_off; /* scratch record this side puts from */
    uint64_t len;       /* bytes of the region */
} kv_layout_t;

static void s_layout(kv_layout_t *l, uint64_t block, uint32_t nblocks)
{
    uint64_t ids = ((uint64_t)nblocks * 4 + 4095) & ~(uint64_t)4095;
    l->block = block;
    l->nblocks = nblocks;
    l->pool = block * nblocks;
    l->req_off = l->pool + ids;
    l->local_off = l->req_off + 2048;
    l->len = l->req_off + 4096;
}

/* A 64-bit hash of len bytes, four lanes for speed. */
static uint64_t s_hash(uint64_t h, const uint8_t *p, uint64_t len)
{
    uint64_t a = h ^ 0x9e3779b97f4a7c15ull, b = h + 1, c = h + 2, d = h + 3;
    const uint64_t k = 0x100000001b3ull;
    for (uint64_t i = 0; i + 32 <= len; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = (a ^ w[0]) * k;
        b = (b ^ w[1]) * k;
        c = (c ^ w[2]) * k;
        d = (d ^ w[3]) * k;
    }
    for (uint64_t i = len & ~(uint64_t)31; i < len; i++)
        a = (a ^ p[i]) * k;
    return a ^ (b << 1) ^ (c << 2) ^ (d << 3) ^ len;
}

/* One side: engine, its allocated region, the connection to the other. */
typedef struct kv_side {
    sl_xport_t *xp;        /* engine */
    sl_xport_mem_t *mem;   /* its region, allocated by UCX */
    uint8_t *base;         /* the region's first byte */
    void *own;             /* the region when this program allocated it, else NULL */
    kv_layout_t lay;       /* its layout (the same on both sides) */
    sl_xport_peer_t *conn; /* connection to the other side */
    uint32_t rid;          /* the other side's region */
    kv_msg_t inbox[8];     /* notifications received, not yet handled */
    unsigned ninbox;       /* their number */
    unsigned dropped;      /* notifications that were not ours, or overflowed */
    int xfers;             /* transfers posted, not completed */
    int failed;            /* transfers completed with an error */
} kv_side_t;

static void s_notif(void *arg, const void *data, size_t len)
{
    kv_side_t *s = arg;
    kv_msg_t m;
    if (len != sizeof(m)) {
        s->dropped++;
        return;
    }
    memcpy(&m, data, sizeof(m));
    if (m.magic != S_MAGIC || s->ninbox == sizeof(s->inbox) / sizeof(s->inbox[0])) {
        s->dropped++;
        return;
    }
    s->inbox[s->ninbox++] = m;
}

static void s_xfer_cb(void *arg, sl_status_t st)
{
    kv_side_t *s = arg;
    s->xfers--;
    if (st != SL_OK)
        s->failed++;
}

/* Create the engine and the region, then swap addresses and keys over fd. */
static sl_status_t s_side_open(kv_side_t *s, const kv_layout_t *lay, bool alloc, int fd,
                               char **argv)
{
    sl_xport_cfg_t cfg;
    void *base = NULL;
    sl_status_t ret;

    s->lay = *lay;
    /* engine knobs come from the SLUICE_XPORT_* environment */
    if ((ret = sl_cfg_load(sl_xport_cfg_table, &cfg, 1, argv, NULL, NULL)) != SL_OK ||
        (ret = sl_xport_create(&cfg, &s->xp)) != SL_OK)
        return ret;
    if (alloc) {
        ret = sl_xport_mem_alloc(s->xp, lay->len, SL_XPORT_MEM_HOST, &base, &s->mem);
    } else if (posix_memalign(&s->own, 4096, lay->len)) {
        s->own = NULL;
        ret = SL_ERR_NOMEM;
    } else {
        base = s->own;
        ret = sl_xport_mem_register(s->xp, base, lay->len, SL_XPORT_MEM_HOST, &s->mem);
    }
    if (ret != SL_OK)
        return ret;
    s->base = base;
    sl_xport_set_notif_handler(s->xp, s_notif, s);
    return sl_xport_harness_exchange(s->xp, s->mem, fd, 1u << 20, &s->conn, &s->rid);
}

static void s_side_close(kv_side_t *s)
{
    if (s->conn)
        sl_xport_disconnect(s->xp, &s->conn);
    sl_xport_mem_deregister(s->xp, &s->mem);
    sl_xport_destroy(&s->xp);
    free(s->own);
}

/* Send a control message: its record into the other side's request slot,
 * or, for a reservation's answer, the ids already in our scratch area into
 * the source's reply area; the notification after it. */
static sl_status_t s_send(kv_side_t *s, const kv_msg_t *m, const sl_xport_block_t *blk)
{
    sl_xport_block_t rec = {s->lay.local_off, s->lay.req_off, sizeof(*m)};
    if (!blk) {
        memcpy(s->base + s->lay.local_off, m, sizeof(*m));
        blk = &rec;
    }
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = s->mem,
                         .remote = s->rid,
                         .blocks = blk,
                         .nblocks = 1,
                         .notif = m,
                         .notif_len = sizeof(*m),
                         .cb = s_xfer_cb,
                         .cb_arg = s};
    sl_status_t ret = sl_xport_post(s->xp, s->conn, &x);
    if (ret == SL_OK)
        s->xfers++;
    return ret;
}

/* ---- the destination (a decode executor's side) ---------------------- */

typedef struct kv_dst {
    kv_side_t side;   /* engine and region */
    uint32_t *free_q; /* ring of free block ids */
    uint32_t head;    /* ring: first free id */
    uint32_t nfree;   /* ring: free ids */
    uint32_t *held;   /* the current reservation's ids, in order */
    uint32_t nheld;   /* their number */
    uint64_t seq;     /* the sequence they are reserved for */
} kv_dst_t;

/* Handle one message; -1 on a broken socket or transport. */
static int s_dst_handle(kv_dst_t *d, const kv_msg_t *m, int fd)
{
    kv_side_t *s = &d->side;
    const kv_layout_t *l = &s->lay;

    if (m->kind == MSG_RESERVE) {
        kv_msg_t r = {.magic = S_MAGIC, .kind = MSG_RESERVED, .seq = m->seq};
        /* a new reservation replaces a held one (the bench moves one at a time) */
        for (uint32_t i = 0; i < d->nheld; i++)
            d->free_q[(d->head + d->nfree++) % l->nblocks] = d->held[i];
        d->nheld = 0;
        if (m->nblocks > 0 && m->nblocks <= d->nfree) {
            for (uint32_t i = 0; i < m->nblocks; i++) {
                d->held[i] = d->free_q[d->head];
                memcpy(s->base + l->pool + 4 * (uint64_t)i, &d->held[i], 4);
                d->head = (d->head + 1) % l->nblocks;
                d->nfree--;
            }
            d->nheld = r.nblocks = m->nblocks;
            d->seq = m->seq;
        }
        sl_xport_block_t blk = {l->pool, l->pool, (uint64_t)(r.nblocks ? r.nblocks : 1) * 4};
        return s_send(s, &r, &blk) == SL_OK ? 0 : -1;
    }
    if (m->kind == MSG_KV) {
        kv_report_t rep = {.seq = m->seq, .arrived = sl_clock_now()};
        if (m->seq != d->seq || m->nblocks != d->nheld) {
            SL_ERROR("kvmove: KV of sequence %llu into blocks not reserved for it",
                     (unsigned long long)m->seq);
            return -1;
        }
        if (m->verify)
            for (uint32_t i = 0; i < d->nheld; i++)
                rep.hash = s_hash(rep.hash, s->base + (uint64_t)d->held[i] * l->block, l->block);
        /* the sequence is done here: its blocks go back to the tail */
        for (uint32_t i = 0; i < d->nheld; i++)
            d->free_q[(d->head + d->nfree++) % l->nblocks] = d->held[i];
        d->nheld = 0;
        return sl_xport_harness_write_all(fd, &rep, sizeof(rep));
    }
    return 0;
}

static int s_dst_run(int fd, uint32_t nblocks, uint64_t block, bool spin, bool alloc, char **argv)
{
    kv_dst_t d = {0};
    kv_layout_t lay;
    bool busy = false;
    unsigned spins = 0;
    int rc = 1;
    sl_rand_t r;

    sl_log_set_component("kvmove-dst");
    s_layout(&lay, block, nblocks);
    d.free_q = malloc(nblocks * sizeof(*d.free_q));
    d.held = malloc(nblocks * sizeof(*d.held));
    if (!d.free_q || !d.held)
        goto out;
    /* a pool that has served a while: its free list in no order */
    sl_rand_seed(&r, 2026);
    for (uint32_t i = 0; i < nblocks; i++)
        d.free_q[i] = i;
    for (uint32_t i = nblocks - 1; i > 0; i--) {
        uint32_t j = (uint32_t)sl_rand_below(&r, i + 1), t = d.free_q[i];
        d.free_q[i] = d.free_q[j];
        d.free_q[j] = t;
    }
    d.nfree = nblocks;
    if (s_side_open(&d.side, &lay, alloc, fd, argv) != SL_OK)
        goto out;
    /* the pool's pages are touched once, as a running executor's are */
    memset(d.side.base, 0, lay.len);
    for (;;) {
        struct pollfd pfd[2] = {{fd, POLLIN, 0}, {sl_xport_fd(d.side.xp), POLLIN, 0}};
        int ret;
        sl_xport_progress(d.side.xp);
        for (unsigned i = 0; i < d.side.ninbox; i++)
            if (s_dst_handle(&d, &d.side.inbox[i], fd))
                goto out;
        d.side.ninbox = 0;
        if (d.side.failed)
            goto out;
        if (busy && spin) {
            /* as ucx_perftest's server: progress without pause, look at
             * the command socket once in a while */
            if ((++spins & 255) != 0)
                continue;
            ret = poll(pfd, 1, 0);
        } else if (busy) {
            /* as an executor's event loop: sleep on the engine and socket */
            ret = sl_xport_arm(d.side.xp) == SL_OK ? poll(pfd, 2, 100) : poll(pfd, 1, 0);
        } else {
            /* idle: sleep on the command socket (nothing moves then) */
            ret = poll(pfd, 1, 1000);
        }
        if (ret < 0 && errno != EINTR)
            goto out;
        if (!(pfd[0].revents & (POLLIN | POLLHUP)))
            continue;
        uint32_t cmd;
        if (sl_xport_harness_read_all(fd, &cmd, sizeof(cmd)))
            goto out;
        if (cmd == CMD_EXIT)
            break;
        busy = cmd == CMD_BUSY;
    }
    while (d.side.xfers > 0)
        sl_xport_progress(d.side.xp);
    rc = d.side.dropped ? 2 : 0;
    if (d.side.dropped)
        SL_ERROR("kvmove: %u notifications dropped", d.side.dropped);
out:
    s_side_close(&d.side);
    free(d.free_q);
    free(d.held);
    if (rc == 0 && sl_log_error_count())
        rc = 3;
    return rc;
}

/* ---- the source (a prefill executor's side) --------------------------- */

typedef struct kv_src {
    kv_side_t side;     /* engine and region */
    const kv_cfg_t *bc; /* options */
    pid_t pid;          /* the destination process */
    int fd;             /* our end of the socketpair */
    uint64_t seq;       /* last sequence number used */
    int checked;        /* moves whose hash matched */
    int moves;          /* moves started */
} kv_src_t;

static int s_cmd(kv_src_t *s, uint32_t cmd)
{
    return sl_xport_harness_write_all(s->fd, &cmd, sizeof(cmd));
}

/* Progress until a message of kind for seq arrives; -1 on timeout or error. */
static int s_wait_msg(kv_src_t *s, uint32_t kind, uint64_t seq, kv_msg_t *out)
{
    sl_time_t end = sl_clock_now() + SL_MS(s->bc->timeout_ms);
    for (;;) {
        sl_xport_progress(s->side.xp);
        for (unsigned i = 0; i < s->side.ninbox; i++) {
            if (s->side.inbox[i].kind == kind && s->side.inbox[i].seq == seq) {
                *out = s->side.inbox[i];
                s->side.inbox[i] = s->side.inbox[--s->side.ninbox];
                return 0;
            }
        }
        if (s->side.failed || sl_clock_now() > end)
            return -1;
    }
}

/* Progress until the destination's report for seq; -1 on timeout or error. */
static int s_wait_report(kv_src_t *s, uint64_t seq, kv_report_t *rep)
{
    sl_time_t end = sl_clock_now() + SL_MS(s->bc->timeout_ms);
    for (;;) {
        struct pollfd pfd = {s->fd, POLLIN, 0};
        sl_xport_progress(s->side.xp);
        int n = poll(&pfd, 1, 0);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0)
            return sl_xport_harness_read_all(s->fd, rep, sizeof(*rep)) || rep->seq != seq ? -1 : 0;
        if (s->side.failed || sl_clock_now() > end)
            return -1;
    }
}

/* Ask for nblocks blocks for seq and wait for the ids (in our mailbox). */
static int s_reserve(kv_src_t *s, uint64_t seq, uint32_t nblocks)
{
    kv_msg_t m = {.magic = S_MAGIC, .kind = MSG_RESERVE, .seq = seq, .nblocks = nblocks}, r;
    if (s_send(&s->side, &m, NULL) != SL_OK || s_wait_msg(s, MSG_RESERVED, seq, &r))
        return -1;
    if (r.nblocks != nblocks) {
        SL_ERROR("kvmove: the destination reserved %u of %u blocks", r.nblocks, nblocks);
        return -1;
    }
    return 0;
}

/* Move the KV of a sequence of ntok tokens: reserve, then one transfer of
 * all its blocks with a notification after the data, then the report.
 * *xfer_ns: post to completion; *pause_ns: decision to the destination
 * holding KV and notification. Checks the hash of what arrived. */
static int s_move(kv_src_t *s, uint32_t ntok, sl_xport_block_t *blocks, sl_time_t *xfer_ns,
                  sl_time_t *pause_ns)
{
    const kv_layout_t *l = &s->side.lay;
    uint32_t n = (ntok + (uint32_t)s->bc->block_tokens - 1) / (uint32_t)s->bc->block_tokens;
    uint64_t seq = ++s->seq;
    s->moves++;
    kv_report_t rep;

    /* this sequence's own bytes, so that stale blocks cannot pass the check */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t stamp[2] = {seq, i};
        memcpy(s->side.base + (uint64_t)i * l->block, stamp, sizeof(stamp));
    }
    sl_time_t t0 = sl_clock_now();
    if (s_reserve(s, seq, n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id;
        memcpy(&id, s->side.base + l->pool + 4 * (uint64_t)i, 4);
        if (id >= l->nblocks) {
            SL_ERROR("kvmove: the destination answered block id %u of %u", id, l->nblocks);
            return -1;
        }
        blocks[i] = (sl_xport_block_t){(uint64_t)i * l->block, (uint64_t)id * l->block, l->block};
    }
    kv_msg_t m = {.magic = S_MAGIC, .kind = MSG_KV, .seq = seq, .nblocks = n, .verify = 1};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = s->side.mem,
                         .remote = s->side.rid,
                         .blocks = blocks,
                         .nblocks = n,
                         .notif = &m,
                         .notif_len = sizeof(m),
                         .cb = s_xfer_cb,
                         .cb_arg = &s->side};
    sl_time_t t1 = sl_clock_now();
    if (sl_xport_post(s->side.xp, s->side.conn, &x) != SL_OK)
        return -1;
    s->side.xfers++;
    while (s->side.xfers > 0)
        sl_xport_progress(s->side.xp);
    sl_time_t t2 = sl_clock_now();
    if (s->side.failed || s_wait_report(s, seq, &rep))
        return -1;
    uint64_t h = 0;
    for (uint32_t i = 0; i < n; i++)
        h = s_hash(h, s->side.base + (uint64_t)i * l->block, l->block);
    if (h != rep.hash) {
        SL_ERROR("kvmove: the KV of sequence %llu arrived damaged (hash %016llx, sent %016llx)",
                 (unsigned long long)seq, (unsigned long long)rep.hash, (unsigned long long)h);
        return -1;
    }
    s->checked++;
    *xfer_ns = t2 - t1;
    *pause_ns = (sl_time_t)rep.arrived - t0;
    return 0;
}

static int s_dst_start(kv_src_t *s, uint32_t nblocks, uint64_t block, const kv_layout_t *lay,
                       char **argv)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
        SL_ERROR("kvmove: socketpair: %m");
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        SL_ERROR("kvmove: fork: %m");
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        char fd[16], nb[16], bb[32], sp[4], al[4];
        int cfd = dup(sv[1]); /* without CLOEXEC */
        snprintf(fd, sizeof(fd), "%d", cfd);
        snprintf(nb, sizeof(nb), "%u", nblocks);
        snprintf(bb, sizeof(bb), "%llu", (unsigned long long)block);
        snprintf(sp, sizeof(sp), "%d", s->bc->spin ? 1 : 0);
        snprintf(al, sizeof(al), "%d", s->bc->alloc ? 1 : 0);
        char *args[] = {"sluice-bench", "kvmove", "--kv-peer", fd, nb, bb, sp, al, NULL};
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(sv[1]);
    s->pid = pid;
    s->fd = sv[0];
    if (s_side_open(&s->side, lay, s->bc->alloc, s->fd, argv) != SL_OK) {
        SL_ERROR("kvmove: setting up the engines failed");
        return -1;
    }
    return 0;
}

static int s_dst_stop(kv_src_t *s)
{
    int status = -1;
    if (s->pid <= 0)
        return 0;
    if (s->side.conn)
        sl_xport_disconnect(s->side.xp, &s->side.conn);
    if (s_cmd(s, CMD_EXIT))
        kill(s->pid, SIGKILL);
    close(s->fd);
    if (waitpid(s->pid, &status, 0) != s->pid)
        return -1;
    s->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define S_MAXR 31
/* bytes moved per prompt per round (a short prompt is moved up to 8 times) */
#define S_ROUND_BYTES (256ull << 20)

/* Whether ratio divides by ucx_perftest with the prompt as one message.
 * On shared memory the block-size baseline puts one buffer that stays in
 * the caches, so only the whole message moves the same bytes; on a network
 * transport the wire bounds both, and UCX 1.13's TCP put of one 64 MiB
 * message crawls (0.02 GB/s here), so the blocks are the fair baseline. */
static bool s_whole_baseline(const kv_cfg_t *bc)
{
    if (strcmp(bc->baseline, "whole") == 0)
        return true;
    if (strcmp(bc->baseline, "block") == 0)
        return false;
    static const char *const net[] = {"tcp", "rc", "ud", "dc", "ib", "all"};
    for (size_t i = 0; i < sizeof(net) / sizeof(net[0]); i++)
        if (strstr(bc->tls, net[i]))
            return false;
    return true;
}

int sl_bench_kvmove_main(int argc, char **argv)
{
    kv_cfg_t bc;
    kv_src_t s = {0};
    kv_layout_t lay;
    sl_xport_block_t *blocks = NULL;
    double kv[2][S_MAXR], pf[2][S_MAXR], pw[2][S_MAXR], qb[2][S_MAXR];
    double mc[2][S_MAXR], rw4[S_MAXR];
    uint8_t *scratch = NULL;
    double *pause = NULL;
    int rc = 1;

    if (argc >= 7 && !strcmp(argv[1], "--kv-peer"))
        exit(s_dst_run(atoi(argv[2]), (uint32_t)strtoul(argv[3], NULL, 0),
                       strtoull(argv[4], NULL, 0), atoi(argv[5]) != 0, atoi(argv[6]) != 0, argv));
    int early = sl_bench_cfg_main(s_table, &bc, argc, argv);
    if (early >= 0)
        return early;
    if (strcmp(bc.baseline, "auto") && strcmp(bc.baseline, "whole") &&
        strcmp(bc.baseline, "block")) {
        fprintf(stderr, "sluice-bench kvmove: --baseline must be auto, whole or block, not '%s'\n",
                bc.baseline);
        return 2;
    }
    if (bc.quick) {
        bc.rounds = bc.rounds < 2 ? bc.rounds : 2;
        bc.migrations = bc.migrations < 4 ? bc.migrations : 4;
    }
    const uint32_t prompt[2] = {bc.quick ? 256u : 4096u, bc.quick ? 1024u : 32768u};
    const uint32_t mig_tok = bc.quick ? 256 + 16 : 4096 + 256;
    const uint64_t block = (uint64_t)bc.block_tokens * (uint64_t)bc.kv_bytes_per_token;
    uint32_t nb[2], mig_nb = (mig_tok + (uint32_t)bc.block_tokens - 1) / (uint32_t)bc.block_tokens;
    for (int p = 0; p < 2; p++)
        nb[p] = (prompt[p] + (uint32_t)bc.block_tokens - 1) / (uint32_t)bc.block_tokens;
    /* each pool holds the long prompt, or the moved sequence if larger */
    uint32_t pool = nb[1] > mig_nb ? nb[1] : mig_nb;

    setenv("UCX_TLS", bc.tls, 1);
    s.bc = &bc;
    s_layout(&lay, block, pool);
    blocks = calloc(pool, sizeof(*blocks));
    /* the memcpy reference's target; not inherited by the forks that start
     * the destination and ucx_perftest, which would leave it copy-on-write */
    scratch = mmap(NULL, lay.pool, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (scratch == MAP_FAILED || madvise(scratch, lay.pool, MADV_DONTFORK)) {
        SL_ERROR("kvmove: mapping %llu bytes: %m", (unsigned long long)lay.pool);
        if (scratch != MAP_FAILED)
            munmap(scratch, lay.pool);
        scratch = NULL;
    }
    pause = calloc((size_t)bc.migrations, sizeof(*pause));
    if (!blocks || !pause || !scratch)
        goto out;
    if (s_dst_start(&s, pool, block, &lay, argv))
        goto out;
    memset(scratch, 1, lay.pool); /* its pages now, not in the first timed copy */
    /* the source's pool holds random KV, pages touched */
    {
        sl_rand_t r;
        sl_rand_seed(&r, 7);
        for (uint64_t i = 0; i + 8 <= lay.pool; i += 8) {
            uint64_t v = sl_rand_u64(&r);
            memcpy(s.side.base + i, &v, 8);
        }
    }
    printf("# sluice-bench kvmove: UCX_TLS=%s, blocks of %d tokens x %d B = %llu KiB, pools of "
           "%u blocks (%.0f MiB) %s on each side, %d rounds%s\n",
           bc.tls, bc.block_tokens, bc.kv_bytes_per_token, (unsigned long long)(block >> 10), pool,
           (double)lay.pool / (1 << 20),
           bc.alloc ? "allocated through UCX" : "allocated by the program and registered",
           bc.rounds, bc.quick ? " (quick)" : "");
    printf("# one critical transfer per prompt into a shuffled block table, notification after "
           "the data; GB/s = 10^9 bytes/s\n");
    /* warm-up, as ucx_perftest warms up: the first move maps the peer's
     * pool page by page (on shared memory that costs more than the copy) */
    if (s_cmd(&s, CMD_BUSY))
        goto out;
    {
        sl_time_t xfer, pz;
        if (s_move(&s, prompt[1], blocks, &xfer, &pz)) {
            fprintf(stderr, "sluice-bench kvmove: the warm-up move failed\n");
            goto out;
        }
        printf("# warm-up: one untimed move of the %u-token prompt: %.2f GB/s\n", prompt[1],
               (double)nb[1] * (double)block / (double)xfer);
    }
    bool whole_baseline = s_whole_baseline(&bc);
    printf("%-6s %-8s %7s %9s %10s %12s %12s %7s\n", "round", "prompt", "blocks", "MiB", "kv_GB/s",
           "memcpy_GB/s", "block_GB/s", "r_block");
    fflush(stdout);
    for (int i = 0; i < bc.rounds; i++) {
        if (s_cmd(&s, CMD_BUSY))
            goto out;
        for (int p = 0; p < 2; p++) {
            /* moves of this prompt in the round: at least S_ROUND_BYTES
             * moved, as ucx_perftest averages over its iterations; the
             * round's figure is their bytes over their summed times */
            uint64_t bytes = (uint64_t)nb[p] * block;
            int reps = bytes >= S_ROUND_BYTES ? 1 : (int)((S_ROUND_BYTES + bytes - 1) / bytes);
            reps = reps > 8 ? 8 : reps;
            sl_time_t sum = 0;
            for (int r = 0; r < reps; r++) {
                sl_time_t xfer, pz;
                if (s_move(&s, prompt[p], blocks, &xfer, &pz)) {
                    fprintf(stderr, "sluice-bench kvmove: moving the prompt's KV failed\n");
                    goto out;
                }
                sum += xfer;
            }
            kv[p][i] = (double)reps * (double)bytes / (double)sum; /* bytes/ns = GB/s */
        }
        /* the destination sleeps while ucx_perftest has the cores */
        if (s_cmd(&s, CMD_IDLE))
            goto out;
        /* the same blocks copied inside this process, into the last
         * reservation's scattered places: what memory lets a copy do */
        for (int p = 0; p < 2; p++) {
            sl_time_t t0 = sl_clock_now();
            for (uint32_t b = 0; b < nb[p]; b++)
                memcpy(scratch + blocks[b].remote_off, s.side.base + blocks[b].local_off, block);
            mc[p][i] = (double)nb[p] * (double)block / (double)(sl_clock_now() - t0);
        }
        /* The short prompt's whole-message baseline, in the round beside
         * the moves it is compared with (paired: this host's memory speed
         * drifts by a third from one half-minute to the next). Its 128 MiB
         * of fresh memory did not slow the copies after it; the long
         * prompt's GiB did, so that baseline comes after all moves. */
        if (whole_baseline) {
            double mibs = sl_bench_perftest_bw(bc.tls, (uint64_t)nb[0] * block, 8);
            if (mibs <= 0) {
                fprintf(stderr, "sluice-bench kvmove: ucx_perftest gave no result\n");
                goto out;
            }
            pw[0][i] = mibs * (1 << 20) / 1e9;
            rw4[i] = kv[0][i] / pw[0][i];
        }
        for (int p = 0; p < 2; p++) {
            /* the block size again and again (one buffer, in the caches) */
            double mibs = sl_bench_perftest_bw(bc.tls, block, (long)nb[p]);
            if (mibs <= 0) {
                fprintf(stderr, "sluice-bench kvmove: ucx_perftest gave no result\n");
                goto out;
            }
            pf[p][i] = mibs * (1 << 20) / 1e9;
            qb[p][i] = kv[p][i] / pf[p][i];
            printf("%-6d %-8u %7u %9.0f %10.2f %12.2f %12.2f %7.3f\n", i + 1, prompt[p], nb[p],
                   (double)nb[p] * (double)block / (1 << 20), kv[p][i], mc[p][i], pf[p][i],
                   qb[p][i]);
        }
        fflush(stdout);
    }
    if (s_cmd(&s, CMD_BUSY))
        goto out;
    for (int i = 0; i < bc.migrations; i++) {
        sl_time_t xfer, pz;
        if (s_move(&s, mig_tok, blocks, &xfer, &pz)) {
            fprintf(stderr, "sluice-bench kvmove: moving a sequence failed\n");
            goto out;
        }
        pause[i] = (double)pz / 1e6;
    }
    size_t n = (size_t)bc.rounds;
    bool whole = whole_baseline;
    /* The baseline: the same bytes as one message, in rounds of their own
     * after all moves. Run between the moves, its fresh GiB slowed every
     * copy measured after it (memcpy inside this process too) on the
     * virtual machine this was written on, so it comes last. */
    if (whole && s_cmd(&s, CMD_IDLE))
        goto out;
    if (whole)
        printf("%-6s %-8s %7s %9s %14s %10s\n", "round", "prompt", "blocks", "MiB", "perftest_GB/s",
               "kv/perf");
    for (int i = 0; whole && i < bc.rounds; i++)
        printf("%-6d %-8u %7u %9.0f %14.2f %10.3f\n", i + 1, prompt[0], nb[0],
               (double)nb[0] * (double)block / (1 << 20), pw[0][i], rw4[i]);
    for (int i = 0; whole && i < bc.rounds; i++)
        for (int p = 1; p < 2; p++) {
            uint64_t bytes = (uint64_t)nb[p] * block;
            double mibs = sl_bench_perftest_bw(bc.tls, bytes, bytes > (256u << 20) ? 2 : 8);
            if (mibs <= 0) {
                fprintf(stderr, "sluice-bench kvmove: ucx_perftest gave no result\n");
                goto out;
            }
            pw[p][i] = mibs * (1 << 20) / 1e9;
            printf("%-6d %-8u %7u %9.0f %14.2f\n", i + 1, prompt[p], nb[p],
                   (double)bytes / (1 << 20), pw[p][i]);
            fflush(stdout);
        }
    double b4 = sl_median(qb[0], n), b32 = sl_median(qb[1], n);
    double r4 = whole ? sl_median(rw4, n) : b4;
    double r32 = whole ? sl_median(kv[1], n) / sl_median(pw[1], n) : b32;
    double kv32 = sl_median(kv[1], n), pw32 = whole ? sl_median(pw[1], n) : sl_median(pf[1], n);
    double mp = sl_median(pause, (size_t)bc.migrations);
    printf("# migration (transport part only; the executors' stop and resume are not in it): "
           "%u + %u tokens, %u blocks (%.0f MiB), reserve round trip + transfer + notification, "
           "median of %d: %.2f ms\n",
           bc.quick ? 256u : 4096u, bc.quick ? 16u : 256u, mig_nb,
           (double)mig_nb * (double)block / (1 << 20), bc.migrations, mp);
    printf("# perftest: ucx_perftest -t ucp_put_bw -e -z (server and client on 127.0.0.1), "
           "UCX_TLS=%s; perftest_GB/s: -s <the prompt's bytes> (the same bytes as one message); "
           "block_GB/s: -s %llu, as many messages as the prompt has blocks (one buffer put "
           "again and again, which stays in the caches)\n",
           bc.tls, (unsigned long long)block);
    printf("# memcpy: the same blocks copied by one process into scattered places, median "
           "%.2f GB/s (%u-token prompt), %.2f GB/s (%u)\n",
           sl_median(mc[0], n), prompt[0], sl_median(mc[1], n), prompt[1]);
    printf("# kv intact: %d of %d moves, each checked by a 64-bit hash of every byte of its "
           "blocks\n",
           s.checked, s.moves);
    printf("# ratio is the smaller of ratio_4k and ratio_32k: %s; ratio_block_* against the "
           "block-size baseline; kv_gbps and perftest_gbps are the 32k prompt's medians\n",
           whole ? "ucx_perftest with the same bytes as one message; 4k: the median over the "
                   "rounds of kv over the perftest run in the same round; 32k: the median kv "
                   "over the median of perftest runs after all moves"
                 : "the median over the rounds of kv over ucx_perftest with block-size messages");
    printf("RESULT ratio=%.3f ratio_4k=%.3f ratio_32k=%.3f kv_gbps=%.2f perftest_gbps=%.2f "
           "migration_pause_ms=%.2f ratio_block_4k=%.3f ratio_block_32k=%.3f baseline=%s",
           r4 < r32 ? r4 : r32, r4, r32, kv32, pw32, mp, b4, b32, whole ? "whole" : "block");
    printf(" tls=%s\n", bc.tls);
    rc = 0;
out:
    if (s_dst_stop(&s) != 0 && rc == 0) {
        fprintf(stderr, "sluice-bench kvmove: the destination did not exit cleanly\n");
        rc = 1;
    }
    s_side_close(&s.side);
    free(blocks);
    free(pause);
    if (scratch)
        munmap(scratch, lay.pool);
    return rc;
}
