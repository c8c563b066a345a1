/*
 * Regions allocated by UCX (sl_xport_mem_alloc) over real UCX between two
 * processes on this host, once over TCP and once over shared memory
 * (UCX_TLS=posix,sysv,self, where a peer maps such a region and a put is a
 * copy). Every transfer moves random bytes and is checked byte for byte: the
 * peer's region is read back over the harness socket, ours is read in place.
 * A second engine in this process checks whether the region's key can be
 * mapped, which is what decides the shared-memory path.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/sl_clock.h"
#include "common/sl_log.h"
#include "common/sl_rand.h"
#include "transport/sl_xport_int.h"
#include "transport/testing/sl_xport_harness.h"

#define REGION (8u << 20)
#define PEER_SEED 4321

typedef struct fixture {
    sl_xport_t *xp;          /* our engine */
    uint8_t *buf;            /* our region, allocated by UCX */
    sl_xport_mem_t *mem;     /* its handle */
    sl_xport_harness_t peer; /* a peer process with a registered host region */
    uint8_t *expect;         /* scratch: expected contents */
    uint8_t *got;            /* scratch: read-back */
    bool shm;                /* this group runs over shared memory */
    uint64_t notifs;         /* notifications the peer has been sent */
} fixture_t;

typedef struct done {
    int n;      /* callbacks seen */
    int failed; /* callbacks with an error */
} done_t;

static void s_done_cb(void *arg, sl_status_t st)
{
    done_t *d = arg;
    d->n++;
    if (st != SL_OK)
        d->failed++;
}

static void s_wait_done(sl_xport_t *xp, done_t *d, int n)
{
    sl_time_t end = sl_clock_now() + SL_MS(30000);
    while (d->n < n) {
        sl_xport_progress(xp);
        assert_true(sl_clock_now() < end);
    }
}

static int s_setup(bool shm, void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    sl_xport_cfg_t cfg;
    void *base = NULL;

    assert_non_null(f);
    f->shm = shm;
    /* the peer process inherits the setting */
    setenv("UCX_TLS", shm ? "posix,sysv,self" : "tcp", 1);
    sl_xport_cfg_defaults(&cfg);
    assert_int_equal(sl_xport_create(&cfg, &f->xp), SL_OK);
    assert_int_equal(sl_xport_mem_alloc(f->xp, REGION, SL_XPORT_MEM_HOST, &base, &f->mem), SL_OK);
    assert_non_null(base);
    assert_int_equal((uintptr_t)base % 4096, 0);
    f->buf = base;
    sl_xport_harness_fill(f->buf, REGION, 99);
    sl_xport_harness_opts_t o = {.region_len = REGION, .seed = PEER_SEED};
    assert_int_equal(sl_xport_harness_start(f->xp, f->mem, &o, &f->peer), SL_OK);
    f->expect = malloc(REGION);
    f->got = malloc(REGION);
    assert_non_null(f->expect);
    assert_non_null(f->got);
    *state = f;
    return 0;
}

static int s_setup_tcp(void **state)
{
    return s_setup(false, state);
}

static int s_setup_shm(void **state)
{
    return s_setup(true, state);
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(sl_xport_harness_stop(f->xp, &f->peer), 0);
    sl_xport_mem_deregister(f->xp, &f->mem);
    assert_null(f->mem);
    sl_xport_destroy(&f->xp);
    free(f->expect);
    free(f->got);
    free(f);
    assert_int_equal(sl_log_error_count(), 0);
    return 0;
}

/* n scattered blocks: sl_xport_harness_scatter over 65536-byte slots. */
static sl_xport_block_t *s_scatter(sl_rand_t *r, size_t n)
{
    sl_xport_block_t *b = sl_xport_harness_scatter(r, REGION, 65536, n, false);
    assert_non_null(b);
    return b;
}

static void test_bad_args(void **state)
{
    fixture_t *f = *state;
    void *base = (void *)&base;
    sl_xport_mem_t *m = (sl_xport_mem_t *)&m;

    assert_int_equal(sl_xport_mem_alloc(NULL, 4096, SL_XPORT_MEM_HOST, &base, &m), SL_ERR_INVALID);
    assert_int_equal(sl_xport_mem_alloc(f->xp, 0, SL_XPORT_MEM_HOST, &base, &m), SL_ERR_INVALID);
    assert_int_equal(sl_xport_mem_alloc(f->xp, 4096, SL_XPORT_MEM_HOST, NULL, &m), SL_ERR_INVALID);
    assert_int_equal(sl_xport_mem_alloc(f->xp, 4096, SL_XPORT_MEM_HOST, &base, NULL),
                     SL_ERR_INVALID);
    assert_int_equal(sl_xport_mem_alloc(f->xp, 4096, SL_XPORT_MEM_CUDA, &base, &m),
                     SL_ERR_UNSUPPORTED);
    assert_int_equal(sl_xport_mem_alloc(f->xp, 4096, (sl_xport_mem_type_t)7, &base, &m),
                     SL_ERR_INVALID);
    /* outputs are written only on success */
    assert_ptr_equal(base, (void *)&base);
    assert_ptr_equal(m, (sl_xport_mem_t *)&m);

    /* a block past the allocated length is refused, as for registered memory */
    sl_xport_block_t b = {REGION - 100, 0, 101};
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = &b,
                         .nblocks = 1};
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_ERR_MSG_RANGE);
}

/* The peer puts scattered blocks of its region into ours (the direction a
 * decode executor's pool is written in); each arrives byte for byte. */
static void test_put_into_allocated(void **state)
{
    fixture_t *f = *state;
    sl_rand_t r;
    int st = -1;

    sl_rand_seed(&r, 11);
    sl_xport_harness_fill(f->got, REGION, PEER_SEED); /* the peer's region */
    sl_xport_harness_fill(f->buf, REGION, 5);
    memcpy(f->expect, f->buf, REGION);
    sl_xport_block_t *b = s_scatter(&r, 40);
    for (size_t i = 0; i < 40; i++) {
        /* put_back takes (peer offset, our offset, length) */
        assert_int_equal(
            sl_xport_harness_put_back(&f->peer, b[i].remote_off, b[i].local_off, b[i].len), SL_OK);
        assert_int_equal(sl_xport_harness_put_back_wait(f->xp, &f->peer, &st), SL_OK);
        assert_int_equal(st, SL_OK);
        memcpy(f->expect + b[i].local_off, f->got + b[i].remote_off, b[i].len);
    }
    assert_memory_equal(f->buf, f->expect, REGION);
    free(b);
}

/* Scattered puts from our region into the peer's, in both data classes, and
 * a get back into ours. */
static void test_put_and_get_from_allocated(void **state)
{
    fixture_t *f = *state;
    sl_rand_t r;
    done_t d = {0};

    sl_rand_seed(&r, 12);
    sl_xport_harness_fill(f->buf, REGION, 6);
    assert_int_equal(sl_xport_harness_read(&f->peer, 0, f->expect, REGION), SL_OK);
    sl_xport_block_t *b = s_scatter(&r, 100);
    for (size_t i = 0; i < 100; i++)
        memcpy(f->expect + b[i].remote_off, f->buf + b[i].local_off, b[i].len);
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = f->peer.rid,
                         .blocks = b,
                         .nblocks = 50,
                         .notif = "kv",
                         .notif_len = 2,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    x.cls = SL_XPORT_BACKGROUND;
    x.blocks = b + 50;
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    assert_int_equal(d.failed, 0);
    f->notifs += 2;
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &f->peer, f->notifs), SL_OK);
    assert_int_equal(sl_xport_harness_read(&f->peer, 0, f->got, REGION), SL_OK);
    assert_memory_equal(f->got, f->expect, REGION);

    /* get: the peer's blocks land in ours */
    sl_xport_block_t g = {1u << 20, 3u << 20, 2u << 20};
    x = (sl_xport_xfer_t){.op = SL_XPORT_GET,
                          .cls = SL_XPORT_CRITICAL,
                          .local = f->mem,
                          .remote = f->peer.rid,
                          .blocks = &g,
                          .nblocks = 1,
                          .cb = s_done_cb,
                          .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, f->peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 3);
    assert_int_equal(d.failed, 0);
    assert_memory_equal(f->buf + g.local_off, f->got + g.remote_off, g.len);
    free(b);
}

/* Whether another engine can map the critical key: on shared memory an
 * allocated region can be mapped (a store through the mapping shows in our
 * region) and a registered one cannot; over TCP neither can. */
static void test_key_maps_on_shared_memory(void **state)
{
    fixture_t *f = *state;
    sl_xport_cfg_t cfg;
    sl_xport_t *other = NULL;
    sl_xport_peer_t *conn = NULL;
    sl_xport_mem_t *reg = NULL;
    const void *addr;
    size_t alen, klen[2];
    void *key[2] = {NULL, NULL}, *plain = NULL;
    uint32_t rid[2];

    sl_xport_cfg_defaults(&cfg);
    assert_int_equal(sl_xport_create(&cfg, &other), SL_OK);
    assert_int_equal(posix_memalign(&plain, 4096, 1u << 20), 0);
    assert_int_equal(sl_xport_mem_register(f->xp, plain, 1u << 20, SL_XPORT_MEM_HOST, &reg), SL_OK);
    assert_int_equal(sl_xport_address(f->xp, &addr, &alen), SL_OK);
    assert_int_equal(sl_xport_connect(other, addr, alen, &conn), SL_OK);
    assert_int_equal(sl_xport_mem_pack(f->xp, f->mem, &key[0], &klen[0]), SL_OK);
    assert_int_equal(sl_xport_mem_pack(f->xp, reg, &key[1], &klen[1]), SL_OK);
    assert_int_equal(sl_xport_rkey_import(other, conn, key[0], klen[0], &rid[0]), SL_OK);
    assert_int_equal(sl_xport_rkey_import(other, conn, key[1], klen[1], &rid[1]), SL_OK);

    void *p = NULL;
    ucs_status_t st = ucp_rkey_ptr(conn->rkeys[rid[0]]->rkey[SL_XPORT_CRITICAL],
                                   (uint64_t)(uintptr_t)f->buf + 4096, &p);
    if (f->shm) {
        assert_int_equal(st, UCS_OK);
        assert_non_null(p);
        assert_ptr_not_equal(p, f->buf + 4096); /* a mapping of its own */
        memset(p, 0x5a, 64);
        for (int i = 0; i < 64; i++)
            assert_int_equal(f->buf[4096 + i], 0x5a);
    } else {
        assert_int_not_equal(st, UCS_OK);
    }
    st = ucp_rkey_ptr(conn->rkeys[rid[1]]->rkey[SL_XPORT_CRITICAL], (uint64_t)(uintptr_t)plain, &p);
    assert_int_not_equal(st, UCS_OK);

    free(key[0]);
    free(key[1]);
    sl_xport_disconnect(other, &conn);
    sl_xport_destroy(&other);
    sl_xport_mem_deregister(f->xp, &reg);
    free(plain);
}

/* The streaming copy (sl_xport_copy.c) against memcpy, for every head and
 * tail alignment of source and destination and sizes around its 64- and
 * 128-byte steps; the bytes around the destination stay untouched. */
static void test_copy_stream_alignments(void **state)
{
    (void)state;
    enum { MAXN = 1200, PAD = 256 };
    uint8_t *src = malloc(MAXN + PAD), *got = malloc(MAXN + 2 * PAD), *exp = malloc(MAXN + 2 * PAD);
    assert_non_null(src);
    assert_non_null(got);
    assert_non_null(exp);
    sl_xport_harness_fill(src, MAXN + PAD, 5);
    const size_t sizes[] = {0, 1, 15, 63, 64, 65, 127, 128, 129, 191, 255, 256, 1000, MAXN};
    for (size_t so = 0; so < 64; so += 7)
        for (size_t dof = 0; dof < 64; dof += 5)
            for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
                size_t n = sizes[k];
                memset(got, 0xee, MAXN + 2 * PAD);
                memset(exp, 0xee, MAXN + 2 * PAD);
                sl_xport_copy_stream(got + PAD + dof, src + so, n);
                memcpy(exp + PAD + dof, src + so, n);
                assert_memory_equal(got, exp, MAXN + 2 * PAD);
            }
    free(src);
    free(got);
    free(exp);
}

/* A put and a get between our allocated region and a second peer's
 * allocated region: on shared memory the peer's region is mapped here, so
 * the engine copies itself (direct_bytes counts every byte) and the bytes
 * are right; over TCP UCX moves them (direct_bytes stays 0). Blocks of odd
 * lengths at odd offsets. */
static void test_direct_copy(void **state)
{
    fixture_t *f = *state;
    sl_xport_harness_t peer;
    sl_xport_harness_opts_t o = {.region_len = REGION, .seed = 77, .alloc = true};
    sl_xport_stats_t st0, st1;
    done_t d = {0};

    assert_int_equal(sl_xport_harness_start(f->xp, f->mem, &o, &peer), SL_OK);
    sl_xport_harness_fill(f->buf, REGION, 8);
    assert_int_equal(sl_xport_harness_read(&peer, 0, f->expect, REGION), SL_OK);
    sl_xport_block_t b[3] = {
        {3, 4096 + 5, 300001}, {400000, 2u << 20, 77}, {500001, (3u << 20) + 7, 262147}};
    for (int i = 0; i < 3; i++)
        memcpy(f->expect + b[i].remote_off, f->buf + b[i].local_off, b[i].len);
    sl_xport_xfer_t x = {.op = SL_XPORT_PUT,
                         .cls = SL_XPORT_CRITICAL,
                         .local = f->mem,
                         .remote = peer.rid,
                         .blocks = b,
                         .nblocks = 3,
                         .notif = "kv",
                         .notif_len = 2,
                         .cb = s_done_cb,
                         .cb_arg = &d};
    sl_xport_stats(f->xp, &st0);
    assert_int_equal(sl_xport_post(f->xp, peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 1);
    assert_int_equal(d.failed, 0);
    assert_int_equal(sl_xport_harness_wait_notifs(f->xp, &peer, 1), SL_OK);
    assert_int_equal(sl_xport_harness_read(&peer, 0, f->got, REGION), SL_OK);
    assert_memory_equal(f->got, f->expect, REGION);

    /* get back into other places of our region */
    sl_xport_block_t g = {5u << 20, 4096 + 5, 300001};
    x = (sl_xport_xfer_t){.op = SL_XPORT_GET,
                          .cls = SL_XPORT_CRITICAL,
                          .local = f->mem,
                          .remote = peer.rid,
                          .blocks = &g,
                          .nblocks = 1,
                          .cb = s_done_cb,
                          .cb_arg = &d};
    assert_int_equal(sl_xport_post(f->xp, peer.conn, &x), SL_OK);
    s_wait_done(f->xp, &d, 2);
    assert_int_equal(d.failed, 0);
    assert_memory_equal(f->buf + g.local_off, f->got + g.remote_off, g.len);
    sl_xport_stats(f->xp, &st1);
    uint64_t moved = 300001 + 77 + 262147 + 300001;
    if (f->shm)
        assert_int_equal(st1.direct_bytes - st0.direct_bytes, moved);
    else
        assert_int_equal(st1.direct_bytes - st0.direct_bytes, 0);
    assert_int_equal(st1.bytes[SL_XPORT_CRITICAL] - st0.bytes[SL_XPORT_CRITICAL], moved);
    assert_int_equal(sl_xport_harness_stop(f->xp, &peer), 0);
}

static long s_rss_pages(void)
{
    long size = 0, rss = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%ld %ld", &size, &rss), 2);
    fclose(fp);
    return rss;
}

/* Deregistering an allocated region frees it: its pages are no longer
 * mapped, and allocating and touching many regions in turn does not grow
 * the process. */
static void test_deregister_frees(void **state)
{
    fixture_t *f = *state;
    unsigned char vec[1];
    void *base = NULL;
    sl_xport_mem_t *m = NULL;
    size_t len = 32u << 20;

#ifdef __SANITIZE_ADDRESS__
    /* Over TCP UCX takes the memory from the heap (posix_memalign, then
     * madvise for huge pages), and AddressSanitizer keeps freed heap memory
     * mapped in its quarantine: there LeakSanitizer is the check that it was
     * freed. Shared segments are unmapped whatever the allocator. */
    if (!f->shm)
        return;
#endif
    assert_int_equal(sl_xport_mem_alloc(f->xp, len, SL_XPORT_MEM_HOST, &base, &m), SL_OK);
    memset(base, 1, len);
    assert_int_equal(mincore(base, 4096, vec), 0);
    sl_xport_mem_deregister(f->xp, &m);
    assert_null(m);
    errno = 0;
    assert_int_equal(mincore(base, 4096, vec), -1);
    assert_int_equal(errno, ENOMEM);

    long rss0 = s_rss_pages(), page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < 24; i++) {
        assert_int_equal(sl_xport_mem_alloc(f->xp, len, SL_XPORT_MEM_HOST, &base, &m), SL_OK);
        memset(base, i, len);
        sl_xport_mem_deregister(f->xp, &m);
    }
    /* 24 x 32 MiB touched: kept, that would be 768 MiB more */
    assert_true((s_rss_pages() - rss0) * page < (long)(128u << 20));

    /* a region still allocated when the engine goes is freed with it */
    sl_xport_cfg_t cfg;
    sl_xport_t *other = NULL;
    sl_xport_cfg_defaults(&cfg);
    assert_int_equal(sl_xport_create(&cfg, &other), SL_OK);
    assert_int_equal(sl_xport_mem_alloc(other, len, SL_XPORT_MEM_HOST, &base, &m), SL_OK);
    memset(base, 2, len);
    sl_xport_destroy(&other);
    errno = 0;
    assert_int_equal(mincore(base, 4096, vec), -1);
    assert_int_equal(errno, ENOMEM);
}

int main(int argc, char **argv)
{
    sl_xport_harness_main_maybe(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_put_into_allocated),
        cmocka_unit_test(test_put_and_get_from_allocated),
        cmocka_unit_test(test_direct_copy),
        /* after every test that progresses our engine: the second engine
         * it makes in this process leaves a stale wire-up endpoint behind
         * in ours when it is destroyed */
        cmocka_unit_test(test_key_maps_on_shared_memory),
        cmocka_unit_test(test_deregister_frees),
    };
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_copy_stream_alignments),
    };
    int rc = cmocka_run_group_tests_name("copy", pure, NULL, NULL);
    rc |= cmocka_run_group_tests_name("alloc-tcp", tests, s_setup_tcp, s_teardown);
    rc |= cmocka_run_group_tests_name("alloc-shm", tests, s_setup_shm, s_teardown);
    return rc;
}
