/*
 * Copies into and out of a peer's memory mapped through shared memory.
 *
 * The idea. On shared memory UCX maps a peer's registered region into this
 * process (ucp_rkey_ptr gives the pointer) and its put is a copy into that
 * mapping, made in the transport's chunks (256 KiB) with ordinary cached
 * stores: every line written is first read for ownership and then evicted
 * again, since a prompt's KV (tens to hundreds of MiB) is far larger than
 * the caches and the reader is another process. The engine copies those
 * chunks itself instead, with streaming (non-temporal) stores that go to
 * memory without the read: the bandwidth of one large copy, chunk by chunk,
 * so the class scheduler still interleaves chunks as before. The stores are
 * fenced (sfence) before the copy returns, so the flush and the
 * notification that follow are ordered after the data as with UCX's put.
 * The source is prefetched half a page ahead of the loads: the hardware
 * prefetchers stop at each 4 KiB page's end (the next page may be anywhere
 * in physical memory), so without the hint every page starts with misses;
 * with it, 5 to 30% faster in one process and the short prompt of
 * sluice-bench kvmove past 0.8 of ucx_perftest (docs/BENCHMARKS.md).
 *
 * Alternatives rejected: UCX's own put (the chunked cached copy above);
 * larger chunks so that glibc's memcpy switches to streaming stores by
 * itself (coarser interleaving of classes, and the switch point is the
 * C library's, not ours); a copy thread (takes a core from the executor).
 */
#include "transport/sl_xport_int.h"

#include <string.h>

#if defined(__x86_64__) && defined(__SSE2__)
#include <immintrin.h>

/* How far ahead of the loads the source is prefetched: half a page. */
#define S_PREFETCH_AHEAD 2048

/* 64-byte lines: four 16-byte streaming stores (SSE2, every x86-64). */
static void s_lines_sse2(uint8_t *d, const uint8_t *s, size_t lines)
{
    for (; lines; lines--, d += 64, s += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + 48));
        _mm_stream_si128((__m128i *)(void *)d, a);
        _mm_stream_si128((__m128i *)(void *)(d + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + 48), e);
    }
}

/* Two lines at a time with 32-byte stores, where the CPU has AVX2. */
__attribute__((target("avx2"))) static void s_lines_avx2(uint8_t *d, const uint8_t *s, size_t lines)
{
    for (; lines >= 2; lines -= 2, d += 128, s += 128) {
        _mm_prefetch((const char *)s + S_PREFETCH_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)s + S_PREFETCH_AHEAD + 64, _MM_HINT_T0);
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)s);
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(s + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(s + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(const void *)(s + 96));
        _mm256_stream_si256((__m256i *)(void *)d, a);
        _mm256_stream_si256((__m256i *)(void *)(d + 32), b);
        _mm256_stream_si256((__m256i *)(void *)(d + 64), c);
        _mm256_stream_si256((__m256i *)(void *)(d + 96), e);
    }
    s_lines_sse2(d, s, lines);
}

void sl_xport_copy_stream(void *dst, const void *src, size_t n)
{
    static int avx2 = -1; /* decided once; a race only decides it twice */
    uint8_t *d = dst;
    const uint8_t *s = src;
    /* head: up to the destination's next 64-byte line */
    size_t head = (size_t)(-(uintptr_t)d & 63u);
    if (head > n)
        head = n;
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    if (avx2 < 0)
        avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    if (avx2)
        s_lines_avx2(d, s, n / 64);
    else
        s_lines_sse2(d, s, n / 64);
    memcpy(d + (n & ~(size_t)63), s + (n & ~(size_t)63), n & 63);
    _mm_sfence();
}
#else
void sl_xport_copy_stream(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}
#endif
