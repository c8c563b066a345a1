/*
 * The GPU memory lanes (include/sluice/xport_gpu.h).
 *
 * Everywhere: the block-list check, the two blobs (round trip, every field
 * validated, single-byte corruptions and random junk never accepted unless
 * they decode to a valid record), the verbs knobs and the failure time they
 * imply, and both lanes' answers without a device (SL_ERR_UNSUPPORTED, with
 * the reason in the log).
 *
 * Where the device exists: the verbs lane over a loopback pair of queue
 * pairs on the first RDMA device (scattered writes of random bytes, the
 * immediate seen only after the data, a bad blob refused; host memory into
 * device memory registered through dma-buf where a GPU is there too), and
 * the CUDA IPC lane between this process and a peer process on one GPU
 * (this program re-executed with --ipc-peer): scattered puts into the
 * peer's region, which the peer checks, and gets out of it, checked here,
 * random bytes and odd sizes and alignments. Without the device these cases
 * skip and say why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sluice/xport_gpu.h>

#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_rand.h"

#ifdef SLUICE_XPORT_CUDA
#include <cuda_runtime.h>
#endif

extern char **environ;

/* The bytes of an image filled from seed. */
static void s_fill(uint8_t *p, size_t len, uint64_t seed)
{
    sl_rand_t r;
    sl_rand_seed(&r, seed);
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = sl_rand_u64(&r);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* ---- block lists -------------------------------------------------------- */

static void test_blocks_check(void **state)
{
    (void)state;
    sl_xport_block_t b[3] = {{0, 100, 50}, {4000, 0, 96}, {10, 900, 100}};
    uint64_t total = 0;
    assert_int_equal(sl_xport_blocks_check(b, 3, 4096, 1000, &total), SL_OK);
    assert_int_equal(total, 246);
    assert_int_equal(sl_xport_blocks_check(b, 0, 4096, 1000, NULL), SL_ERR_INVALID);
    assert_int_equal(sl_xport_blocks_check(NULL, 1, 4096, 1000, NULL), SL_ERR_INVALID);
    /* one byte past the local end, then past the remote end */
    assert_int_equal(sl_xport_blocks_check(b, 3, 4095, 1000, NULL), SL_ERR_MSG_RANGE);
    assert_int_equal(sl_xport_blocks_check(b, 3, 4096, 999, NULL), SL_ERR_MSG_RANGE);
    sl_xport_block_t zero = {0, 0, 0};
    assert_int_equal(sl_xport_blocks_check(&zero, 1, 4096, 1000, NULL), SL_ERR_INVALID);
    /* offsets and lengths that wrap around 2^64 */
    sl_xport_block_t wrap[] = {{UINT64_MAX, 0, 2}, {0, UINT64_MAX - 1, 4}, {8, 0, UINT64_MAX}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_xport_blocks_check(&wrap[i], 1, 4096, 4096, NULL), SL_ERR_MSG_RANGE);
    total = 7;
    assert_int_equal(sl_xport_blocks_check(&wrap[0], 1, 4096, 4096, &total), SL_ERR_MSG_RANGE);
    assert_int_equal(total, 7); /* outputs only on success */
}

/* ---- blobs -------------------------------------------------------------- */

static sl_xport_ipc_desc_t s_ipc_desc(sl_rand_t *r)
{
    sl_xport_ipc_desc_t d;
    for (int i = 0; i < SL_XPORT_IPC_HANDLE_LEN; i++)
        d.handle[i] = (uint8_t)sl_rand_u64(r);
    for (int i = 0; i < 16; i++)
        d.uuid[i] = (uint8_t)sl_rand_u64(r);
    d.offset = sl_rand_below(r, 1ull << 40);
    d.len = 1 + sl_rand_below(r, 1ull << 40);
    d.pid = 1 + (uint32_t)sl_rand_below(r, 1u << 22);
    return d;
}

static void s_ipc_equal(const sl_xport_ipc_desc_t *a, const sl_xport_ipc_desc_t *b)
{
    assert_memory_equal(a->handle, b->handle, sizeof(a->handle));
    assert_memory_equal(a->uuid, b->uuid, sizeof(a->uuid));
    assert_int_equal(a->offset, b->offset);
    assert_int_equal(a->len, b->len);
    assert_int_equal(a->pid, b->pid);
}

static void test_ipc_blob(void **state)
{
    (void)state;
    sl_rand_t r;
    sl_rand_seed(&r, 11);
    uint8_t buf[SL_XPORT_IPC_BLOB_LEN + 8];
    size_t len = 0;
    sl_xport_ipc_desc_t d = s_ipc_desc(&r), out;
    assert_int_equal(sl_xport_ipc_blob_encode(&d, buf, 10, &len), SL_ERR_INVALID);
    assert_int_equal(sl_xport_ipc_blob_encode(&d, buf, sizeof(buf), &len), SL_OK);
    assert_int_equal(len, SL_XPORT_IPC_BLOB_LEN);
    assert_int_equal(sl_xport_ipc_blob_decode(buf, len, &out), SL_OK);
    s_ipc_equal(&d, &out);

    /* length, magic, version, reserved bytes, each range */
    assert_int_equal(sl_xport_ipc_blob_decode(buf, len - 1, &out), SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_xport_ipc_blob_decode(buf, len + 1, &out), SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_xport_ipc_blob_decode(NULL, len, &out), SL_ERR_MSG_MALFORMED);
    uint8_t bad[SL_XPORT_IPC_BLOB_LEN];
    const struct {
        size_t at;
        uint8_t value;
        sl_status_t want;
    } cases[] = {
        {0, 'X', SL_ERR_MSG_MALFORMED}, {4, 2, SL_ERR_MSG_VERSION}, {6, 1, SL_ERR_MSG_MALFORMED},
        {13, 1, SL_ERR_MSG_MALFORMED},  {38, 1, SL_ERR_MSG_RANGE}, /* offset at 2^48 */
        {46, 2, SL_ERR_MSG_RANGE},                                 /* length over 2^48 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(bad, buf, len);
        bad[cases[i].at] = cases[i].value;
        assert_int_equal(sl_xport_ipc_blob_decode(bad, len, &out), cases[i].want);
    }
    sl_xport_ipc_desc_t z = d;
    z.len = 0;
    assert_int_equal(sl_xport_ipc_blob_encode(&z, bad, sizeof(bad), &len), SL_OK);
    assert_int_equal(sl_xport_ipc_blob_decode(bad, len, &out), SL_ERR_MSG_RANGE);
    z = d;
    z.pid = 0;
    assert_int_equal(sl_xport_ipc_blob_encode(&z, bad, sizeof(bad), &len), SL_OK);
    assert_int_equal(sl_xport_ipc_blob_decode(bad, len, &out), SL_ERR_MSG_RANGE);

    /* random junk: whatever decodes must be a valid record that encodes back
     * to the same bytes */
    unsigned accepted = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t junk[SL_XPORT_IPC_BLOB_LEN + 4];
        size_t jl = i % 3 ? SL_XPORT_IPC_BLOB_LEN : sl_rand_below(&r, sizeof(junk) + 1);
        for (size_t k = 0; k < sizeof(junk); k++)
            junk[k] = (uint8_t)sl_rand_u64(&r);
        if (i % 2) { /* a valid header, so the field checks are reached */
            memcpy(junk, buf, 16);
            junk[6] = junk[7] = junk[12] = junk[13] = junk[14] = junk[15] = 0;
        }
        memset(&out, 0xa5, sizeof(out));
        sl_status_t st = sl_xport_ipc_blob_decode(junk, jl, &out);
        if (st == SL_OK) {
            accepted++;
            assert_true(out.len > 0 && out.len <= (1ull << 48) && out.offset < (1ull << 48));
            assert_true(out.pid != 0);
            uint8_t again[SL_XPORT_IPC_BLOB_LEN];
            size_t al;
            assert_int_equal(sl_xport_ipc_blob_encode(&out, again, sizeof(again), &al), SL_OK);
            assert_memory_equal(again, junk, al);
        } else {
            assert_true(st == SL_ERR_MSG_MALFORMED || st == SL_ERR_MSG_VERSION ||
                        st == SL_ERR_MSG_RANGE);
        }
    }
    assert_true(accepted == 0 || accepted < 20000);
}

static sl_xport_verbs_desc_t s_verbs_desc(sl_rand_t *r)
{
    sl_xport_verbs_desc_t d;
    memset(&d, 0, sizeof(d));
    d.qpn = 1 + (uint32_t)sl_rand_below(r, 0xfffffe);
    d.psn = (uint32_t)sl_rand_below(r, 0x1000000);
    d.lid = (uint16_t)(1 + sl_rand_below(r, 0xbfff));
    d.mtu = (uint8_t)(1 + sl_rand_below(r, 5));
    for (int i = 0; i < 16; i++)
        d.gid[i] = (uint8_t)sl_rand_u64(r);
    d.addr = sl_rand_u64(r) >> 1;
    d.len = 1 + sl_rand_below(r, 1ull << 36);
    d.rkey = (uint32_t)sl_rand_u64(r);
    return d;
}

static void s_verbs_equal(const sl_xport_verbs_desc_t *a, const sl_xport_verbs_desc_t *b)
{
    assert_int_equal(a->qpn, b->qpn);
    assert_int_equal(a->psn, b->psn);
    assert_int_equal(a->lid, b->lid);
    assert_int_equal(a->mtu, b->mtu);
    assert_memory_equal(a->gid, b->gid, sizeof(a->gid));
    assert_int_equal(a->addr, b->addr);
    assert_int_equal(a->len, b->len);
    assert_int_equal(a->rkey, b->rkey);
}

static void test_verbs_blob(void **state)
{
    (void)state;
    sl_rand_t r;
    sl_rand_seed(&r, 12);
    uint8_t buf[SL_XPORT_VERBS_BLOB_LEN];
    size_t len = 0;
    sl_xport_verbs_desc_t d = s_verbs_desc(&r), out;
    assert_int_equal(sl_xport_verbs_blob_encode(&d, buf, sizeof(buf) - 1, &len), SL_ERR_INVALID);
    assert_int_equal(sl_xport_verbs_blob_encode(&d, buf, sizeof(buf), &len), SL_OK);
    assert_int_equal(len, SL_XPORT_VERBS_BLOB_LEN);
    assert_int_equal(sl_xport_verbs_blob_decode(buf, len, &out), SL_OK);
    s_verbs_equal(&d, &out);
    assert_int_equal(sl_xport_verbs_blob_decode(buf, len - 1, &out), SL_ERR_MSG_MALFORMED);

    /* each field's check, through an encoded record */
    for (int c = 0; c < 9; c++) {
        sl_xport_verbs_desc_t e = d;
        sl_status_t want = SL_ERR_MSG_RANGE;
        switch (c) {
        case 0:
            e.qpn = 0;
            break;
        case 1:
            e.qpn = 0x1000000;
            break;
        case 2:
            e.psn = 0x1000000;
            break;
        case 3:
            e.mtu = 0;
            break;
        case 4:
            e.mtu = 6;
            break;
        case 5:
            e.len = 0;
            break;
        case 6:
            e.addr = UINT64_MAX - 10, e.len = 12;
            break;
        case 7:
            e.lid = 0, memset(e.gid, 0, 16);
            break;
        case 8:
            e.addr = UINT64_MAX - 10, e.len = 11, want = SL_OK;
            break; /* ends at 2^64 */
        }
        uint8_t b[SL_XPORT_VERBS_BLOB_LEN];
        assert_int_equal(sl_xport_verbs_blob_encode(&e, b, sizeof(b), &len), SL_OK);
        assert_int_equal(sl_xport_verbs_blob_decode(b, len, &out), want);
    }
    /* magic, version, reserved bytes */
    const size_t at[] = {0, 4, 17, 19, 56, 63};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        uint8_t b[SL_XPORT_VERBS_BLOB_LEN];
        memcpy(b, buf, len);
        b[at[i]] ^= 0x40;
        assert_int_equal(sl_xport_verbs_blob_decode(b, len, &out),
                         at[i] == 4 ? SL_ERR_MSG_VERSION : SL_ERR_MSG_MALFORMED);
    }
    /* every single-byte change either decodes to what it says or is refused */
    for (size_t i = 0; i < len; i++) {
        uint8_t b[SL_XPORT_VERBS_BLOB_LEN];
        memcpy(b, buf, len);
        b[i] = (uint8_t)(b[i] + 1 + sl_rand_below(&r, 255));
        if (sl_xport_verbs_blob_decode(b, len, &out) == SL_OK) {
            uint8_t again[SL_XPORT_VERBS_BLOB_LEN];
            size_t al;
            assert_int_equal(sl_xport_verbs_blob_encode(&out, again, sizeof(again), &al), SL_OK);
            assert_memory_equal(again, b, len);
        }
    }
    /* random junk never crashes, and what decodes is in range */
    for (int i = 0; i < 20000; i++) {
        uint8_t junk[SL_XPORT_VERBS_BLOB_LEN];
        for (size_t k = 0; k < sizeof(junk); k++)
            junk[k] = (uint8_t)sl_rand_u64(&r);
        if (i % 2) {
            memcpy(junk, buf, 6);
            memset(junk + 17, 0, 3);
            memset(junk + 56, 0, 8);
        }
        if (sl_xport_verbs_blob_decode(junk, sizeof(junk), &out) == SL_OK)
            assert_true(out.qpn && out.qpn < 0x1000000 && out.psn < 0x1000000 && out.mtu >= 1 &&
                        out.mtu <= 5 && out.len && out.addr <= UINT64_MAX - out.len + 1);
    }
}

static void test_verbs_knobs(void **state)
{
    (void)state;
    sl_xport_verbs_cfg_t cfg;
    assert_int_equal(sl_xport_verbs_cfg_defaults(&cfg), SL_OK);
    assert_string_equal(cfg.device, "");
    assert_int_equal(cfg.port, 1);
    assert_int_equal(cfg.ack_timeout, 14);
    assert_int_equal(cfg.retry_cnt, 7);
    /* 4.096 us x 2^14 x 8 tries: about 0.54 s before a silent peer fails a write */
    assert_int_equal(sl_xport_verbs_fail_ns(&cfg), 4096ll * 16384 * 8);
    cfg.ack_timeout = 10;
    cfg.retry_cnt = 0;
    assert_int_equal(sl_xport_verbs_fail_ns(&cfg), 4096ll * 1024);
}

/* ---- verbs lane on a device --------------------------------------------- */

static unsigned s_imms;            /* immediates received */
static uint32_t s_imm;             /* the last one */
static unsigned s_done;            /* completions */
static sl_status_t s_last;         /* the last completion's status */
static int s_order_bad;            /* an immediate came before its data */
static const uint8_t *s_expect_at; /* where the last block must have landed when the imm comes */
static uint8_t s_expect_byte;      /* its last byte */

static void s_on_imm(void *arg, uint32_t imm)
{
    (void)arg;
    s_imms++;
    s_imm = imm;
    if (s_expect_at && *s_expect_at != s_expect_byte)
        s_order_bad++;
}

static void s_on_done(void *arg, sl_status_t st)
{
    (void)arg;
    s_done++;
    s_last = st;
}

static void test_verbs_loopback(void **state)
{
    (void)state;
    sl_xport_verbs_cfg_t cfg;
    sl_xport_verbs_cfg_defaults(&cfg);
    sl_xport_verbs_t *a = NULL, *b = NULL;
    sl_status_t st = sl_xport_verbs_open(&cfg, &a);
    if (st == SL_ERR_UNSUPPORTED) {
        fprintf(stderr, "test_xport_gpu: skipped: no usable RDMA device on this host "
                        "(the verbs lane is compiled; it runs where ibv_devices lists one)\n");
        skip();
    }
    assert_int_equal(st, SL_OK);
    assert_int_equal(sl_xport_verbs_open(&cfg, &b), SL_OK);
    fprintf(stderr, "test_xport_gpu: verbs loopback on %s\n", sl_xport_verbs_device_name(a));
    const size_t len = 8u << 20;
    uint8_t *src = malloc(len), *dst = malloc(len);
    assert_non_null(src);
    assert_non_null(dst);
    s_fill(src, len, 20);
    memset(dst, 0, len);
    sl_xport_verbs_mr_t *ma = NULL, *mb = NULL;
    assert_int_equal(sl_xport_verbs_reg(a, src, len, SL_XPORT_MEM_HOST, &ma), SL_OK);
    assert_int_equal(sl_xport_verbs_reg(b, dst, len, SL_XPORT_MEM_HOST, &mb), SL_OK);
    uint8_t ba[SL_XPORT_VERBS_BLOB_LEN], bb[SL_XPORT_VERBS_BLOB_LEN];
    size_t la, lb;
    assert_int_equal(sl_xport_verbs_local_blob(a, ma, ba, sizeof(ba), &la), SL_OK);
    assert_int_equal(sl_xport_verbs_local_blob(b, mb, bb, sizeof(bb), &lb), SL_OK);
    /* junk is refused before the queue pair is touched */
    uint8_t junk[SL_XPORT_VERBS_BLOB_LEN];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(sl_xport_verbs_connect(a, junk, sizeof(junk)), SL_ERR_MSG_MALFORMED);
    assert_int_equal(sl_xport_verbs_connect(a, bb, lb), SL_OK);
    assert_int_equal(sl_xport_verbs_connect(b, ba, la), SL_OK);
    assert_int_equal(sl_xport_verbs_connect(a, bb, lb), SL_ERR_EXISTS);
    sl_xport_verbs_set_imm_handler(b, s_on_imm, NULL);

    /* 1,000 scattered blocks in distinct 8 KiB slots, random sizes */
    sl_rand_t r;
    sl_rand_seed(&r, 21);
    enum { N = 1000, SLOT = 8192 };
    sl_xport_block_t *blk = calloc(N, sizeof(*blk));
    unsigned *perm = calloc(len / SLOT, sizeof(*perm));
    for (unsigned i = 0; i < len / SLOT; i++)
        perm[i] = i;
    for (unsigned i = len / SLOT - 1; i > 0; i--) {
        unsigned j = (unsigned)sl_rand_below(&r, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (unsigned i = 0; i < N; i++) {
        blk[i].local_off = (uint64_t)i * SLOT;
        blk[i].remote_off = (uint64_t)perm[i] * SLOT;
        blk[i].len = 1 + sl_rand_below(&r, SLOT);
    }
    s_expect_at = dst + blk[N - 1].remote_off + blk[N - 1].len - 1;
    s_expect_byte = src[blk[N - 1].local_off + blk[N - 1].len - 1];
    assert_int_equal(sl_xport_verbs_write_blocks(a, ma, blk, N, 0xfeed01, s_on_done, NULL), SL_OK);
    for (int spin = 0; (s_done < 1 || s_imms < 1) && spin < 50000000; spin++) {
        sl_xport_verbs_progress(a);
        sl_xport_verbs_progress(b);
    }
    assert_int_equal(s_done, 1);
    assert_int_equal(s_last, SL_OK);
    assert_int_equal(s_imms, 1);
    assert_int_equal(s_imm, 0xfeed01);
    assert_int_equal(s_order_bad, 0);
    for (unsigned i = 0; i < N; i++)
        assert_memory_equal(dst + blk[i].remote_off, src + blk[i].local_off, blk[i].len);
    /* a block past the peer's region is refused and nothing is posted */
    sl_xport_block_t past = {0, len - 10, 11};
    assert_int_equal(sl_xport_verbs_write_blocks(a, ma, &past, 1, 1, s_on_done, NULL),
                     SL_ERR_MSG_RANGE);
    assert_int_equal(s_done, 1);
    free(perm);
    free(blk);
    sl_xport_verbs_dereg(a, &ma);
    sl_xport_verbs_dereg(b, &mb);
    sl_xport_verbs_close(&a);
    sl_xport_verbs_close(&b);
    assert_null(a);
    free(src);
    free(dst);
}

/* Host memory written into device memory registered through dma-buf, on a
 * loopback pair: where both an RDMA device and a GPU exist. */
static void test_verbs_dmabuf(void **state)
{
    (void)state;
#ifndef SLUICE_XPORT_CUDA
    fprintf(stderr, "test_xport_gpu: skipped: built without CUDA\n");
    skip();
#else
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "test_xport_gpu: skipped: no GPU for the dma-buf registration\n");
        skip();
    }
    sl_xport_verbs_cfg_t cfg;
    sl_xport_verbs_cfg_defaults(&cfg);
    sl_xport_verbs_t *a = NULL, *b = NULL;
    if (sl_xport_verbs_open(&cfg, &a) == SL_ERR_UNSUPPORTED) {
        fprintf(stderr, "test_xport_gpu: skipped: no usable RDMA device for the dma-buf case\n");
        skip();
    }
    assert_non_null(a);
    assert_int_equal(sl_xport_verbs_open(&cfg, &b), SL_OK);
    const size_t len = 4u << 20;
    uint8_t *src = malloc(len), *back = malloc(len);
    void *dev = NULL;
    assert_int_equal(cudaMalloc(&dev, len), cudaSuccess);
    assert_int_equal(cudaMemset(dev, 0, len), cudaSuccess);
    s_fill(src, len, 22);
    sl_xport_verbs_mr_t *ma = NULL, *mb = NULL;
    assert_int_equal(sl_xport_verbs_reg(a, src, len, SL_XPORT_MEM_HOST, &ma), SL_OK);
    sl_status_t st = sl_xport_verbs_reg(b, dev, len, SL_XPORT_MEM_CUDA, &mb);
    if (st == SL_ERR_UNSUPPORTED) {
        fprintf(stderr, "test_xport_gpu: skipped: the driver or %s cannot register dma-bufs\n",
                sl_xport_verbs_device_name(b));
        sl_xport_verbs_dereg(a, &ma);
        sl_xport_verbs_close(&a);
        sl_xport_verbs_close(&b);
        cudaFree(dev);
        free(src);
        free(back);
        skip();
    }
    assert_int_equal(st, SL_OK);
    uint8_t ba[SL_XPORT_VERBS_BLOB_LEN], bb[SL_XPORT_VERBS_BLOB_LEN];
    size_t la, lb;
    assert_int_equal(sl_xport_verbs_local_blob(a, ma, ba, sizeof(ba), &la), SL_OK);
    assert_int_equal(sl_xport_verbs_local_blob(b, mb, bb, sizeof(bb), &lb), SL_OK);
    assert_int_equal(sl_xport_verbs_connect(a, bb, lb), SL_OK);
    assert_int_equal(sl_xport_verbs_connect(b, ba, la), SL_OK);
    s_imms = 0;
    s_done = 0;
    s_expect_at = NULL;
    sl_xport_verbs_set_imm_handler(b, s_on_imm, NULL);
    /* the two halves swapped, in 64 KiB blocks */
    enum { NB = 64 };
    sl_xport_block_t blk[NB];
    for (unsigned i = 0; i < NB; i++)
        blk[i] = (sl_xport_block_t){(uint64_t)i * (len / NB),
                                    ((uint64_t)i * (len / NB) + len / 2) % len, len / NB};
    assert_int_equal(sl_xport_verbs_write_blocks(a, ma, blk, NB, 7, s_on_done, NULL), SL_OK);
    for (int spin = 0; (s_done < 1 || s_imms < 1) && spin < 50000000; spin++) {
        sl_xport_verbs_progress(a);
        sl_xport_verbs_progress(b);
    }
    assert_int_equal(s_done, 1);
    assert_int_equal(s_last, SL_OK);
    assert_int_equal(s_imm, 7);
    assert_int_equal(cudaMemcpy(back, dev, len, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(back, src + len / 2, len / 2);
    assert_memory_equal(back + len / 2, src, len / 2);
    sl_xport_verbs_dereg(a, &ma);
    sl_xport_verbs_dereg(b, &mb);
    sl_xport_verbs_close(&a);
    sl_xport_verbs_close(&b);
    cudaFree(dev);
    free(src);
    free(back);
#endif
}

/* ---- CUDA IPC lane ------------------------------------------------------ */

#ifdef SLUICE_XPORT_CUDA
#define IPC_REGION (32u << 20)
#define IPC_SLOT (160u << 10) /* blocks live in distinct slots; over a 64 KiB piece */

/* The same block list in both processes: n blocks of random size and
 * alignment (16-byte aligned every other one) in distinct slots. */
static void s_blocks(sl_xport_block_t *b, size_t n, uint64_t seed)
{
    sl_rand_t r;
    sl_rand_seed(&r, seed);
    unsigned nslots = IPC_REGION / IPC_SLOT;
    unsigned perm_l[IPC_REGION / IPC_SLOT], perm_r[IPC_REGION / IPC_SLOT];
    for (unsigned i = 0; i < nslots; i++)
        perm_l[i] = perm_r[i] = i;
    for (unsigned i = nslots - 1; i > 0; i--) {
        unsigned j = (unsigned)sl_rand_below(&r, i + 1), t = perm_l[i];
        perm_l[i] = perm_l[j];
        perm_l[j] = t;
        j = (unsigned)sl_rand_below(&r, i + 1);
        t = perm_r[i];
        perm_r[i] = perm_r[j];
        perm_r[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        bool aligned = i % 2 == 0;
        uint64_t len = 1 + sl_rand_below(&r, IPC_SLOT - 64);
        uint64_t lo = sl_rand_below(&r, 32), ro = sl_rand_below(&r, 32);
        if (aligned)
            len = (len + 15) & ~15ull, lo = ro = 0;
        b[i].local_off = (uint64_t)perm_l[i] * IPC_SLOT + lo;
        b[i].remote_off = (uint64_t)perm_r[i] * IPC_SLOT + ro;
        b[i].len = len;
    }
}

enum { IPC_NPUT = 150, IPC_NGET = 120 };

/* The peer's region after the puts: seed 1, with the put blocks from the
 * parent's seed-2 region. */
static void s_peer_image(uint8_t *peer, uint8_t *scratch)
{
    s_fill(peer, IPC_REGION, 1);
    s_fill(scratch, IPC_REGION, 2);
    sl_xport_block_t b[IPC_NPUT];
    s_blocks(b, IPC_NPUT, 3);
    for (size_t i = 0; i < IPC_NPUT; i++)
        memcpy(peer + b[i].remote_off, scratch + b[i].local_off, b[i].len);
}

/* The peer process: export a seed-1 region, print the blob in hex, wait for
 * "check", compare with the expected image, print "ok" or "bad N". */
static int s_ipc_peer(void)
{
    uint8_t *host = malloc(IPC_REGION), *want = malloc(IPC_REGION), *tmp = malloc(IPC_REGION);
    void *dev = NULL;
    if (!host || !want || !tmp || cudaMalloc(&dev, IPC_REGION) != cudaSuccess)
        return 2;
    s_fill(host, IPC_REGION, 1);
    if (cudaMemcpy(dev, host, IPC_REGION, cudaMemcpyHostToDevice) != cudaSuccess)
        return 2;
    uint8_t blob[SL_XPORT_IPC_BLOB_LEN];
    size_t bl;
    if (sl_xport_ipc_export(dev, IPC_REGION, blob, sizeof(blob), &bl) != SL_OK)
        return 3;
    for (size_t i = 0; i < bl; i++)
        printf("%02x", blob[i]);
    printf("\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof(line), stdin) || strncmp(line, "check", 5))
        return 4;
    if (cudaMemcpy(host, dev, IPC_REGION, cudaMemcpyDeviceToHost) != cudaSuccess)
        return 5;
    s_peer_image(want, tmp);
    size_t bad = 0;
    for (size_t i = 0; i < IPC_REGION; i++)
        bad += host[i] != want[i];
    printf(bad ? "bad %zu\n" : "ok\n", bad);
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin)) /* parent closes after its gets */
        line[0] = 0;
    cudaFree(dev);
    free(host);
    free(want);
    free(tmp);
    return 0;
}

static unsigned s_ipc_done;
static sl_status_t s_ipc_st;

static void s_ipc_cb(void *arg, sl_status_t st)
{
    (void)arg;
    s_ipc_done++;
    if (st != SL_OK)
        s_ipc_st = st;
}
#endif

static void test_ipc_without_device(void **state)
{
    (void)state;
    /* a well-formed blob from another process */
    sl_rand_t r;
    sl_rand_seed(&r, 31);
    sl_xport_ipc_desc_t d = s_ipc_desc(&r);
    d.pid = (uint32_t)getpid() + 1;
    uint8_t blob[SL_XPORT_IPC_BLOB_LEN];
    size_t bl;
    assert_int_equal(sl_xport_ipc_blob_encode(&d, blob, sizeof(blob), &bl), SL_OK);
    sl_xport_ipc_t *ipc = NULL;
    /* junk and this process's own export are refused whatever the host has */
    assert_int_equal(sl_xport_ipc_open(blob, bl - 1, &ipc), SL_ERR_MSG_MALFORMED);
    d.pid = (uint32_t)getpid();
    uint8_t own[SL_XPORT_IPC_BLOB_LEN];
    assert_int_equal(sl_xport_ipc_blob_encode(&d, own, sizeof(own), &bl), SL_OK);
    assert_int_equal(sl_xport_ipc_open(own, bl, &ipc), SL_ERR_INVALID);
    assert_null(ipc);
    sl_xport_block_t b = {0, 0, 16};
    assert_int_equal(sl_xport_ipc_copy_blocks(NULL, SL_XPORT_PUT, blob, 16, &b, 1, NULL, NULL),
                     SL_ERR_INVALID);
    sl_xport_ipc_close(&ipc); /* NULL-safe */
#ifdef SLUICE_XPORT_CUDA
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0)
        skip(); /* test_ipc_two_processes covers the device */
#endif
    uint8_t host[64];
    assert_int_equal(sl_xport_ipc_export(host, sizeof(host), own, sizeof(own), &bl),
                     SL_ERR_UNSUPPORTED);
    assert_int_equal(sl_xport_ipc_open(blob, sizeof(blob), &ipc), SL_ERR_UNSUPPORTED);
    assert_null(ipc);
}

static void test_ipc_two_processes(void **state)
{
    (void)state;
#ifndef SLUICE_XPORT_CUDA
    fprintf(stderr, "test_xport_gpu: skipped: built without CUDA\n");
    skip();
#else
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "test_xport_gpu: skipped: no GPU (the CUDA IPC lane runs on one)\n");
        skip();
    }
    int to_child[2], from_child[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_child[1]);
    posix_spawn_file_actions_addclose(&fa, from_child[0]);
    char exe[] = "/proc/self/exe", arg[] = "--ipc-peer";
    char *argv[] = {exe, arg, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, exe, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(to_child[0]);
    close(from_child[1]);
    FILE *in = fdopen(from_child[0], "r"), *out = fdopen(to_child[1], "w");
    char line[512];
    assert_non_null(fgets(line, sizeof(line), in));
    uint8_t blob[SL_XPORT_IPC_BLOB_LEN];
    size_t bl = strlen(line) / 2;
    assert_int_equal(bl, SL_XPORT_IPC_BLOB_LEN);
    for (size_t i = 0; i < bl; i++) {
        unsigned v;
        assert_int_equal(sscanf(line + 2 * i, "%2x", &v), 1);
        blob[i] = (uint8_t)v;
    }
    sl_xport_ipc_t *ipc = NULL;
    assert_int_equal(sl_xport_ipc_open(blob, bl, &ipc), SL_OK);
    assert_int_equal(sl_xport_ipc_region_len(ipc), IPC_REGION);

    uint8_t *host = malloc(IPC_REGION), *want = malloc(IPC_REGION), *peer = malloc(IPC_REGION);
    void *dev = NULL;
    assert_int_equal(cudaMalloc(&dev, IPC_REGION), cudaSuccess);
    s_fill(host, IPC_REGION, 2);
    assert_int_equal(cudaMemcpy(dev, host, IPC_REGION, cudaMemcpyHostToDevice), cudaSuccess);

    /* puts in three lists, in flight together */
    sl_xport_block_t put[IPC_NPUT];
    s_blocks(put, IPC_NPUT, 3);
    size_t cut[4] = {0, 40, 41, IPC_NPUT};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_xport_ipc_copy_blocks(ipc, SL_XPORT_PUT, dev, IPC_REGION, put + cut[i],
                                                  cut[i + 1] - cut[i], s_ipc_cb, NULL),
                         SL_OK);
    sl_xport_block_t past = {0, IPC_REGION - 8, 9};
    assert_int_equal(
        sl_xport_ipc_copy_blocks(ipc, SL_XPORT_PUT, dev, IPC_REGION, &past, 1, s_ipc_cb, NULL),
        SL_ERR_MSG_RANGE);
    assert_int_equal(sl_xport_ipc_wait(ipc), SL_OK);
    assert_int_equal(s_ipc_done, 3);
    assert_int_equal(s_ipc_st, SL_OK);
    fprintf(out, "check\n");
    fflush(out);
    assert_non_null(fgets(line, sizeof(line), in));
    assert_string_equal(line, "ok\n");

    /* gets out of the peer's region, as it now is */
    sl_xport_block_t get[IPC_NGET];
    s_blocks(get, IPC_NGET, 4);
    assert_int_equal(
        sl_xport_ipc_copy_blocks(ipc, SL_XPORT_GET, dev, IPC_REGION, get, IPC_NGET, s_ipc_cb, NULL),
        SL_OK);
    while (s_ipc_done < 4)
        sl_xport_ipc_progress(ipc);
    assert_int_equal(s_ipc_st, SL_OK);
    assert_int_equal(cudaMemcpy(host, dev, IPC_REGION, cudaMemcpyDeviceToHost), cudaSuccess);
    s_peer_image(peer, want);
    s_fill(want, IPC_REGION, 2);
    for (size_t i = 0; i < IPC_NGET; i++)
        memcpy(want + get[i].local_off, peer + get[i].remote_off, get[i].len);
    assert_memory_equal(host, want, IPC_REGION);

    sl_xport_ipc_close(&ipc);
    assert_null(ipc);
    fclose(out);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fclose(in);
    cudaFree(dev);
    free(host);
    free(want);
    free(peer);
#endif
}

int main(int argc, char **argv)
{
#ifdef SLUICE_XPORT_CUDA
    if (argc > 1 && !strcmp(argv[1], "--ipc-peer"))
        return s_ipc_peer();
#else
    (void)argc;
    (void)argv;
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_check),       cmocka_unit_test(test_ipc_blob),
        cmocka_unit_test(test_verbs_blob),         cmocka_unit_test(test_verbs_knobs),
        cmocka_unit_test(test_verbs_loopback),     cmocka_unit_test(test_verbs_dmabuf),
        cmocka_unit_test(test_ipc_without_device), cmocka_unit_test(test_ipc_two_processes),
    };
    return cmocka_run_group_tests_name("xport_gpu", tests, NULL, NULL);
}
