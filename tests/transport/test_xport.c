/*
 * Transport tests over real UCX between two processes on this host (shared
 * memory: cma for RMA, posix for active messages; see docs/TRANSPORT.md).
 * Every transfer moves random bytes and is checked byte for byte by reading
 * the peer's region back over the harness socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "transport/testing/sl_xport_harness.h"

#define REGION (16u << 20)
#define PEER_SEED 1234

typedef struct fixture {
    sl_xport_t *xp;          /* our engine */
    uint8_t *buf;            /* our host region */
    sl_xport_mem_t *mem;     /* its registration */
    sl_xport_harness_t peer; /* a peer process with a host region */
    uint8_t *expect;         /* scratch: expected peer contents */
    uint8_t *got;            /* scratch: read-back */
} fixture_t;

typedef struct done {
    int n;          /* callbacks seen */
    int failed;     /* callbacks with an error */
    sl_status_t st; /* last error */
} done_t;

static void s_done_cb(void *arg, sl_status_t st)
{
    done_t *d = arg;
    d->n++;
    if (st != SL_OK) {
        d->failed++;
        d->st = st;
    }
}

static void s_wait_done(sl_xport_t *xp, done_t *d, int n)
{
    sl_time_t end = sl_clock_now() + SL_MS(30000);
    while (d->n < n) {
        sl_xport_progress(xp);
        assert_true(sl_clock_now() < end);
    }
}

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    sl_xport_cfg_t cfg;
    assert_non_null(f);
    sl_xport_cfg_defaults(&cfg);
    cfg.copy = sl_xport_harness_copy;
    cfg.stage_chunk_kib = 1024;
    cfg.stage_slots = 3;
    assert_int_equal(sl_xport_create(&cfg, &f->xp), SL_OK);
    assert_int_equal(posix_memalign((void **)&f->buf, 4096, REGION), 0);
    sl_xport_harness_fill(f->buf, REGION, 99);
    assert_int_equal(sl_xport_mem_register(f->xp, f->buf, REGION, SL_XPORT_MEM_HOST, &f->mem),
                     SL_OK);
    sl_xport_harness_opts_t o = {.region_len = REGION, .seed = PEER_SEED};
    assert_int_equal(sl_xport_harness_start(f->xp, f->mem, &o, &f->peer), SL_OK);
    f->expect = malloc(REGION);
    f->got = malloc(REGION);
    assert_non_null(f->expect);
    assert_non_null(f->got);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sl_xport_harness_stop(f->xp, &f->peer), 0);
    sl_xport_mem_deregister(f->xp, &f->mem);
    sl_xport_destroy(&f->xp);
    assert_null(f->xp);
    free(f->buf);
    free(f->expect);
    free(f->got);
    free(f);
    assert_int_equal(sl_log_error_count(), 0);
    return 0;
}

/* Read the peer's whole region into f->got. */
static void s_read_peer(fixture_t *f, sl_xport_harness_t *p)
{
    assert_int_equal(sl_xport_harness_read(p, 0, f->got, REGION), SL_OK);
}

static uint64_t s_notifs;

static void test_one_large_block(void **state)
{
    fixture_t *f = *state;
    done_t d = {0};
    sl_xport_block_t b = {4096, 1 << 20, 12u << 20};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = &b,
                         .nblocks = 1,
                         .notif = "large",
                         .notif_len = 5,
                         .cb = s_done_cb,
                         .cb_arg = &d};

    sl_xport_harness_fill(f->buf, REGION, 1);
    s_read_peer(f, &f->peer);
    memcpy(f->expect, f->got, REGION);
    memcpy(f->expect + b.remote_off, f->buf + b.local_off, b.len);
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->expect, REGION);

    /* and back: get a large block from the peer */
    sl_xport_block_t g = {1 << 20, 3u << 20, 10u << 20};
    x.op = SL_XPORT_GET;
    x.blocks = &g;
    x.notif = NULL;
    x.notif_len = 0;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    assert_int_equal(d.failed, 0);
    assert_memory_equal(f->buf + g.local_off, f->expect + g.remote_off, g.len);
}

/* n scattered blocks: sl_xport_harness_scatter over 4096-byte slots, at random offsets in them. */
static sl_xport_block_t *s_scatter(sl_rand_t *r, size_t n)
{
    sl_xport_block_t *b = sl_xport_harness_scatter(r, REGION, 4096, n, true);
    assert_non_null(b);
    return b;
}

static void test_thousands_of_scattered_blocks(void **state)
{
    fixture_t *f = *state;
    sl_rand_t r;
    done_t d = {0};
    size_t n = 3000;

    sl_rand_seed(&r, 7);
    sl_xport_block_t *b = s_scatter(&r, n);
    sl_xport_harness_fill(f->buf, REGION, 2);
    s_read_peer(f, &f->peer);
    memcpy(f->expect, f->got, REGION);
    for (size_t i = 0; i < n; i++)
        memcpy(f->expect + b[i].remote_off, f->buf + b[i].local_off, b[i].len);
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = b,
                         .nblocks = n,
                         .notif = "scatter",
                         .notif_len = 7,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->expect, REGION);

    /* gather a different scatter back */
    free(b);
    b = s_scatter(&r, n);
    x.op = SL_XPORT_GET;
    x.blocks = b;
    x.cls = SL_XPORT_BACKGROUND;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(f->buf + b[i].local_off, f->expect + b[i].remote_off, b[i].len);
    free(b);
}

static void test_many_concurrent_transfers(void **state)
{
    fixture_t *f = *state;
    done_t d = {0};
    enum { N = 128, LEN = 96 * 1024 + 17 };
    sl_xport_block_t b[N];
    sl_xport_stats_t s0, s1;
    uint64_t per_class[SL_XPORT_NCLASS] = {0};

    sl_xport_harness_fill(f->buf, REGION, 3);
    s_read_peer(f, &f->peer);
    memcpy(f->expect, f->got, REGION);
    sl_xport_stats(f->xp, &s0);
    for (int i = 0; i < N; i++) {
        b[i] = (sl_xport_block_t){(uint64_t)(N - 1 - i) * LEN, (uint64_t)i * LEN, LEN};
        memcpy(f->expect + b[i].remote_off, f->buf + b[i].local_off, LEN);
        sl_xport_class_t cls = i % 3 ? SL_XPORT_CRITICAL : SL_XPORT_BACKGROUND;
        sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                             .cls = cls,
                             .local = f->mem,
                             .remote = f->peer.rid,
                             .blocks = &b[i],
                             .nblocks = 1,
                             .notif = &i,
                             .notif_len = sizeof(i),
                             .cb = s_done_cb,
                             .cb_arg = &d};
        per_class[cls] += LEN;
        assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    }
    s_wait_done(f->xp, &d, N);
    assert_int_equal(d.failed, 0);
    s_notifs += N;
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, s_notifs), SL_OK);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->expect, REGION);
    sl_xport_stats(f->xp, &s1);
    assert_int_equal(s1.bytes[SL_XPORT_CRITICAL] - s0.bytes[SL_XPORT_CRITICAL],
                     per_class[SL_XPORT_CRITICAL]);
    assert_int_equal(s1.bytes[SL_XPORT_BACKGROUND] - s0.bytes[SL_XPORT_BACKGROUND],
                     per_class[SL_XPORT_BACKGROUND]);
    assert_int_equal(s1.xfers_ok - s0.xfers_ok, N);
}

static uint64_t s_local_notifs;

static void s_count_notif(void *arg, const void *data, size_t len)
{
    s_local_notifs++;
}

static void test_both_directions_at_once(void **state)
{
    fixture_t *f = *state;
    done_t d = {0};
    int st = -1;
    const uint64_t len = 6u << 20;
    sl_xport_block_t b = {0, 0, len};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = &b,
                         .nblocks = 1,
                         .notif = "fwd",
                         .notif_len = 3,
                         .cb = s_done_cb,
                         .cb_arg = &d};

    sl_xport_set_notif_handler(f->xp, s_count_notif, NULL);
    sl_xport_harness_fill(f->buf, REGION, 4);
    s_read_peer(f, &f->peer);
    memcpy(f->expect, f->got, REGION);
    memcpy(f->expect, f->buf, len);
    uint8_t *theirs = malloc(len);
    assert_non_null(theirs);
    memcpy(theirs, f->got + (8u << 20), len);
    /* the peer puts its [8 MiB, 14 MiB) into our [8 MiB, 14 MiB) while we put our [0, 6 MiB) */
    assert_int_equal(sl_xport_harness_put_back(&f->peer, 8u << 20, 8u << 20, len), SL_OK);
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_put_back_wait(f->xp, &f->peer, &st), SL_OK);
    assert_int_equal(st, SL_OK);
    sl_time_t end = sl_clock_now() + SL_MS(10000);
    while (s_local_notifs < 1) {
        sl_xport_progress(f->xp);
        assert_true(sl_clock_now() < end);
    }
    assert_memory_equal(f->buf + (8u << 20), theirs, len);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->expect, REGION);
    sl_xport_set_notif_handler(f->xp, NULL, NULL);
    free(theirs);
}

static void test_staging_pipeline(void **state)
{
    fixture_t *f = *state;
    done_t d = {0};
    sl_xport_harness_t sp;
    sl_xport_mem_t *dev = NULL;
    uint8_t *devbuf;
    sl_xport_stats_t s0, s1;
    /* 1 MiB chunks through 2 and 3 slots: several wraps, and lengths that
     * chunks do not divide */
    sl_xport_harness_opts_t o = {.region_len = REGION,
                                 .staged = true,
                                 .stage_chunk_kib = 1024,
                                 .stage_slots = 2,
                                 .seed = 55};

    assert_int_equal(posix_memalign((void **)&devbuf, 4096, REGION), 0);
    sl_xport_harness_fill(devbuf, REGION, 5);
    /* "device" memory moved by the memcpy copy step */
    assert_int_equal(sl_xport_mem_register(f->xp, devbuf, REGION, SL_XPORT_MEM_CUDA, &dev), SL_OK);
    assert_int_equal(sl_xport_harness_start(f->xp, dev, &o, &sp), SL_OK);
    sl_xport_stats(f->xp, &s0);

    /* staged -> staged: one block of 7 MiB + 333 bytes */
    sl_xport_block_t b1 = {12345, 777, (7u << 20) + 333};
    s_read_peer(f, &sp);
    memcpy(f->expect, f->got, REGION);
    memcpy(f->expect + b1.remote_off, devbuf + b1.local_off, b1.len);
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = dev,
                         .remote = sp.rid,
                         .blocks = &b1,
                         .nblocks = 1,
                         .notif = "staged",
                         .notif_len = 6,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, sp.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &sp, 1), SL_OK);
    s_read_peer(f, &sp);
    assert_memory_equal(f->got, f->expect, REGION);

    /* host -> staged: scattered blocks of odd sizes, some above one chunk */
    sl_xport_block_t b2[5] = {{0, 9u << 20, (1u << 20) + 1},
                              {3u << 20, 11u << 20, 3000},
                              {5u << 20, 12u << 20, (2u << 20) + 4095},
                              {(8u << 20) + 5, 15u << 20, 100},
                              {10u << 20, 1u << 19, 65537}};
    sl_xport_harness_fill(f->buf, REGION, 6);
    for (int i = 0; i < 5; i++)
        memcpy(f->expect + b2[i].remote_off, f->buf + b2[i].local_off, b2[i].len);
    x.local = f->mem;
    x.blocks = b2;
    x.nblocks = 5;
    x.cls = SL_XPORT_BACKGROUND;
    assert_int_equal(sl_xport_post(f->xp, sp.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &sp, 2), SL_OK);
    s_read_peer(f, &sp);
    assert_memory_equal(f->got, f->expect, REGION);

    /* staged -> host (the ordinary peer): 3 slots wrap around */
    sl_xport_block_t b3 = {1u << 20, 2u << 20, (9u << 20) + 7};
    s_read_peer(f, &f->peer);
    memcpy(f->expect, f->got, REGION);
    memcpy(f->expect + b3.remote_off, devbuf + b3.local_off, b3.len);
    x.local = dev;
    x.remote = f->peer.rid;
    x.blocks = &b3;
    x.nblocks = 1;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 3);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->expect, REGION);

    sl_xport_stats(f->xp, &s1);
    assert_int_equal(s1.staged_bytes - s0.staged_bytes,
                     b1.len + b2[0].len + b2[1].len + b2[2].len + b2[3].len + b2[4].len + b3.len);
    /* a staged get is refused, and no device pointer reaches UCX */
    x.op = SL_XPORT_GET;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_ERR_UNSUPPORTED);

    assert_int_equal(sl_xport_harness_stop(f->xp, &sp), 0);
    sl_xport_mem_deregister(f->xp, &dev);
    free(devbuf);
}

static void test_peer_killed_mid_transfer(void **state)
{
    fixture_t *f = *state;
    sl_xport_harness_t victim;
    done_t d = {0};
    sl_xport_harness_opts_t o = {.region_len = REGION, .seed = 77};
    sl_xport_block_t b = {0, 0, 4u << 20};
    int posted = 0, refused = 0;

    assert_int_equal(sl_xport_harness_start(f->xp, f->mem, &o, &victim), SL_OK);
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = victim.rid,
                         .blocks = &b,
                         .nblocks = 1,
                         .notif = "v",
                         .notif_len = 1,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    for (int i = 0; i < 4; i++, posted++)
        assert_int_equal(sl_xport_post(f->xp, victim.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    sl_xport_harness_kill(&victim);
    /* keep posting to the dead peer: every transfer either is refused at
     * once or completes with an error; none hangs */
    sl_time_t end = sl_clock_now() + SL_MS(20000);
    while (!sl_xport_peer_failed(victim.conn)) {
        sl_status_t st = sl_xport_post(f->xp, victim.conn, &x);
        if (st == SL_OK)
            posted++;
        else
            refused++;
        sl_xport_progress(f->xp);
        assert_true(sl_clock_now() < end);
        if (posted - d.n > 16)
            s_wait_done(f->xp, &d, posted - 8);
    }
    s_wait_done(f->xp, &d, posted);
    assert_true(d.failed > 0 || refused > 0);
    assert_int_equal(sl_xport_post(f->xp, victim.conn, &x), SL_ERR_PEER_LOST);
    sl_xport_disconnect(f->xp, &victim.conn);
    assert_null(victim.conn);

    /* the engine still serves the other peer */
    done_t d2 = {0};
    sl_xport_block_t b2 = {0, 0, 1u << 20};
    sl_xport_harness_fill(f->buf, 1u << 20, 8);
    x.remote = f->peer.rid;
    x.blocks = &b2;
    x.cb_arg = &d2;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d2, 1);
    assert_int_equal(d2.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, ++s_notifs), SL_OK);
    assert_int_equal(sl_xport_harness_read(&f->peer, 0, f->got, 1u << 20), SL_OK);
    assert_memory_equal(f->got, f->buf, 1u << 20);
}

static void test_bad_input(void **state)
{
    fixture_t *f = *state;
    sl_xport_block_t b = {0, 0, 4096};
    char big[SL_XPORT_NOTIF_MAX + 1] = {0};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = &b,
                         .nblocks = 1};
    sl_xport_xfer_t y;
    sl_xport_peer_t *p = NULL;
    uint32_t id = 99;

    y = x;
    y.remote = 12345;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_NOT_FOUND);
    y = x;
    y.nblocks = 0;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_INVALID);
    sl_xport_block_t zero = {0, 0, 0};
    y = x;
    y.blocks = &zero;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_INVALID);
    sl_xport_block_t past_remote = {0, REGION - 100, 101};
    y = x;
    y.blocks = &past_remote;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_MSG_RANGE);
    sl_xport_block_t past_local = {REGION, 0, 1};
    y.blocks = &past_local;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_MSG_RANGE);
    sl_xport_block_t wrap = {UINT64_MAX - 10, 0, 100};
    y.blocks = &wrap;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_MSG_RANGE);
    y = x;
    y.cls = SL_XPORT_CONTROL;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_INVALID);
    y = x;
    y.notif = big;
    y.notif_len = sizeof(big);
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &y), SL_ERR_INVALID);

    /* malformed addresses and keys */
    uint8_t junk[64];
    memset(junk, 0xab, sizeof(junk));
    assert_int_equal(sl_xport_connect(f->xp, junk, sizeof(junk), &p), SL_ERR_MSG_MALFORMED);
    assert_null(p);
    assert_int_equal(sl_xport_rkey_import(f->xp, f->peer.conn, junk, sizeof(junk), &id),
                     SL_ERR_MSG_MALFORMED);
    void *key;
    size_t klen;
    assert_int_equal(sl_xport_mem_pack(f->xp, f->mem, &key, &klen), SL_OK);
    assert_int_equal(sl_xport_rkey_import(f->xp, f->peer.conn, key, klen - 1, &id),
                     SL_ERR_MSG_MALFORMED);
    assert_int_equal(id, 99);
    free(key);
    const void *addr;
    size_t alen;
    assert_int_equal(sl_xport_address(f->xp, &addr, &alen), SL_OK);
    assert_int_equal(sl_xport_connect(f->xp, addr, alen - 1, &p), SL_ERR_MSG_MALFORMED);
    assert_null(p);
    assert_int_equal(sl_xport_mem_register(f->xp, f->buf, 0, SL_XPORT_MEM_HOST, &f->mem),
                     SL_ERR_INVALID);
    assert_non_null(f->mem);
}

/* A critical transfer posted behind a large background one, with the link
 * capacity set low so the bucket paces background, finishes first: the
 * classes interleave by chunks instead of queueing whole transfers. No
 * speed is asserted, only the order. */
static void test_critical_overtakes_background(void **state)
{
    fixture_t *f = *state;
    done_t bg = {0}, crit = {0};
    sl_xport_stats_t s0, s1;
    sl_xport_block_t bb = {0, 0, 12u << 20}, cb = {12u << 20, 12u << 20, 4u << 20};
    sl_xport_xfer_t xb = {.op = SL_XPORT_PUT,
                          .cls = SL_XPORT_BACKGROUND,
                          .local = f->mem,
                          .remote = f->peer.rid,
                          .blocks = &bb,
                          .nblocks = 1,
                          .cb = s_done_cb,
                          .cb_arg = &bg};
    sl_xport_xfer_t xc = xb;

    xc.cls = SL_XPORT_CRITICAL;
    xc.blocks = &cb;
    xc.cb_arg = &crit;
    sl_xport_harness_fill(f->buf, REGION, 9);
    sl_xport_set_link_bps(f->xp, 50e6);
    sl_xport_stats(f->xp, &s0);
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &xb), SL_OK);
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &xc), SL_OK);
    s_wait_done(f->xp, &crit, 1);
    assert_int_equal(crit.failed, 0);
    assert_int_equal(bg.n, 0);
    sl_xport_stats(f->xp, &s1);
    assert_true(s1.bytes[SL_XPORT_BACKGROUND] - s0.bytes[SL_XPORT_BACKGROUND] < bb.len);
    sl_xport_set_link_bps(f->xp, 0);
    s_wait_done(f->xp, &bg, 1);
    assert_int_equal(bg.failed, 0);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->buf, REGION);
}

/* The link probe walks both regions block by block (a block sent again and
 * again would measure the caches, not the link), reports a rate, and
 * rejects what it cannot measure. */
static void test_link_probe(void **state)
{
    fixture_t *f = *state;
    const uint64_t len = 1u << 20;
    double bps = -1;

    sl_xport_harness_fill(f->buf, REGION, 21);
    assert_int_equal(sl_xport_link_probe(f->xp, f->peer.conn, f->mem, f->peer.rid, len, 0.3, &bps),
                     SL_OK);
    assert_true(bps > 0);
    s_read_peer(f, &f->peer);
    assert_memory_equal(f->got, f->buf, 2 * len);

    double before = bps;
    assert_int_equal(
        sl_xport_link_probe(f->xp, f->peer.conn, f->mem, f->peer.rid, REGION + 4096, 0.3, &bps),
        SL_ERR_MSG_RANGE);
    assert_int_equal(sl_xport_link_probe(f->xp, f->peer.conn, f->mem, 99, len, 0.3, &bps),
                     SL_ERR_INVALID);
    assert_int_equal(sl_xport_link_probe(f->xp, f->peer.conn, f->mem, f->peer.rid, 0, 0.3, &bps),
                     SL_ERR_INVALID);
    assert_true(bps == before);
    sl_xport_set_link_bps(f->xp, 0);
}

/* Engines that connect to this one and go away at once, mid-handshake on
 * the endpoints they never used, leave it well: UCX 1.13 aborts a process
 * whose endpoint fails with a handshake reply still queued, so each
 * disconnect waits for the handshake first (s_peer_settle). The engine
 * still moves data to its peer afterwards. */
static void test_peers_gone_at_once(void **state)
{
    fixture_t *f = *state;
    const void *addr;
    size_t alen;
    assert_int_equal(sl_xport_address(f->xp, &addr, &alen), SL_OK);
    sl_xport_cfg_t cfg;
    sl_xport_cfg_defaults(&cfg);
    for (int i = 0; i < 40; i++) {
        sl_xport_t *other = NULL;
        sl_xport_peer_t *p = NULL;
        assert_int_equal(sl_xport_create(&cfg, &other), SL_OK);
        assert_int_equal(sl_xport_connect(other, addr, alen, &p), SL_OK);
        /* its handshake requests go out (up to 0.8 ms), never answered */
        for (sl_time_t until = sl_clock_now() + SL_US(200 * (i % 5)); sl_clock_now() < until;)
            sl_xport_progress(other);
        sl_xport_disconnect(other, &p);
        sl_xport_destroy(&other);
        for (sl_time_t until = sl_clock_now() + SL_MS(5); sl_clock_now() < until;)
            sl_xport_progress(f->xp);
    }
    done_t d = {0};
    sl_xport_block_t b = {0, 0, 4096};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = &b,
                         .nblocks = 1,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
}

int main(int argc, char **argv)
{
    sl_xport_harness_main_maybe(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_one_large_block),
        cmocka_unit_test(test_thousands_of_scattered_blocks),
        cmocka_unit_test(test_many_concurrent_transfers),
        cmocka_unit_test(test_both_directions_at_once),
        cmocka_unit_test(test_critical_overtakes_background),
        cmocka_unit_test(test_link_probe),
        cmocka_unit_test(test_staging_pipeline),
        cmocka_unit_test(test_peers_gone_at_once),
        cmocka_unit_test(test_peer_killed_mid_transfer),
    };
    return cmocka_run_group_tests_name("transport", tests, s_setup, s_teardown);
}
