/*
 * Log-linear histogram. Values below 2^SUB_BITS map one-to-one; above, the
 * bucket is (exponent, top SUB_BITS bits of the mantissa). Sorting all samples
 * was rejected: benches record millions of values and need bounded memory.
 */
#include "common/sl_hist.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static unsigned s_index(uint64_t v)
{
    if (v < SL_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SL_HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) & (SL_HIST_SUB - 1);
    return (shift + 1) * SL_HIST_SUB + sub;
}

static uint64_t s_upper(unsigned idx)
{
    if (idx < SL_HIST_SUB)
        return idx;
    unsigned shift = idx / SL_HIST_SUB - 1;
    uint64_t sub = idx % SL_HIST_SUB;
    uint64_t base = (SL_HIST_SUB + sub) << shift;
    return base + ((1ull << shift) - 1);
}

void sl_hist_init(sl_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void sl_hist_record(sl_hist_t *h, uint64_t value)
{
    h->bucket[s_index(value)]++;
    h->count++;
    h->sum += (double)value;
    if (value > h->max)
        h->max = value;
    if (value < h->min)
        h->min = value;
}

uint64_t sl_hist_quantile(const sl_hist_t *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q <= 0)
        return h->min;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SL_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = s_upper(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double sl_hist_mean(const sl_hist_t *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}

void sl_hist_merge(sl_hist_t *dst, const sl_hist_t *src)
{
    for (unsigned i = 0; i < SL_HIST_BUCKETS; i++)
        dst->bucket[i] += src->bucket[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
    if (src->min < dst->min)
        dst->min = src->min;
}

static int s_double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double sl_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), s_double_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
